//! The desk's home ("la mia scrivania"), the catalog, the practices' list by state, the
//! accessibility statement, and the stylesheet and enhancing script.

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::delivery::DeliveryState;
use domain::practice::PracticeState;
use domain::Lang;
use storage::PracticeQuery;

use crate::acting::Acting;
use crate::error::ApiError;
use crate::extract::{MaybeHolder, UserLang};
use crate::view::{render, Tr};
use crate::AppState;

/// The enhancing script (live updates, autosave); pages work without it.
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/sportello.js"),
    )
        .into_response()
}

/// The stylesheet.
pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/sportello.css"),
    )
        .into_response()
}

/// `GET /static/favicon.svg` (and `/favicon.ico`, which browsers ask for by themselves).
pub async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "public, max-age=86400")],
        include_str!("../../static/favicon.svg"),
    )
        .into_response()
}

#[derive(Debug)]
pub struct ServiceCard {
    id: String,
    title: String,
    summary: String,
    help: String,
    recipients: String,
    readiness: Option<String>,
    readiness_class: &'static str,
}

#[derive(Debug)]
pub struct EventGroup {
    id: String,
    title: String,
    services: Vec<ServiceCard>,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage<'a> {
    tr: Tr<'a>,
    groups: Vec<EventGroup>,
}

/// `GET /servizi`: the catalog, grouped by life event, with what the holder can complete.
pub async fn services(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    MaybeHolder(holder): MaybeHolder,
    headers: axum::http::HeaderMap,
) -> Response {
    // Under a delegation: the grantor's authorisations, and the banner.
    let principal = match holder {
        Some(holder) => {
            match crate::acting::Principal::resolve(&app.core, holder, crate::acting::selector(&headers).as_ref()).await
            {
                Ok(p) => Some(p),
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
        None => None,
    };
    let tr = match &principal {
        Some(p) => Tr::acting(&app.translations, lang, p),
        None => Tr::new(&app.translations, lang),
    };
    let answers = match &principal {
        Some(p) => app::authorisations::of_holder(&app.core, &p.owner).await,
        None => None,
    };
    let groups = app
        .core
        .catalog
        .life_events
        .iter()
        .map(|event| EventGroup {
            id: format!("evento-{}", event.id),
            title: event.title.get(lang).to_string(),
            services: app
                .core
                .catalog
                .services
                .iter()
                .filter(|s| s.life_event == event.id)
                .map(|s| {
                    let recipients = s
                        .recipients
                        .iter()
                        .filter_map(|r| {
                            app.core.catalog.institution(&r.institution).map(|i| i.name.get(lang).to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let readiness = answers.as_ref().map(|a| app::authorisations::ServiceReadiness::of(s, a).complete);
                    let outside = principal
                        .as_ref()
                        .and_then(|p| p.delegation.as_ref())
                        .is_some_and(|d| !d.scope.services.contains(&s.id));
                    let (readiness, readiness_class) = match readiness {
                        _ if outside => (Some(tr.msg("services-out-of-scope")), "tag-missing"),
                        None => (None, ""),
                        Some(Some(false)) => (Some(tr.msg("services-missing")), "tag-missing"),
                        Some(None) => (Some(tr.msg("services-unknown")), "tag-unknown"),
                        Some(Some(true)) => (Some(tr.msg("services-ready")), "tag-ok"),
                    };
                    ServiceCard {
                        id: s.id.clone(),
                        title: s.title.get(lang).to_string(),
                        summary: s.summary.get(lang).to_string(),
                        help: s.help.get(lang).to_string(),
                        recipients,
                        readiness,
                        readiness_class,
                    }
                })
                .collect(),
        })
        .collect();
    render(&ServicesPage { tr, groups }, StatusCode::OK)
}

#[derive(Template)]
#[template(path = "accessibility.html")]
struct AccessibilityPage<'a> {
    tr: Tr<'a>,
}

/// `GET /accessibilita`: the accessibility statement, with the feedback channel.
pub async fn accessibility(State(app): State<AppState>, UserLang(lang): UserLang) -> Response {
    render(&AccessibilityPage { tr: Tr::new(&app.translations, lang) }, StatusCode::OK)
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    tr: Tr<'a>,
    greeting: String,
    /// What needs the holder, each with the link to where it is done.
    actions: Vec<(String, String)>,
    /// How many practices are in each state, each linking to their list.
    counts: Vec<StateCount>,
}

/// One state's count on the desk's home.
#[derive(Debug)]
struct StateCount {
    count: u64,
    label: String,
    href: String,
    /// The state needs the holder ("da correggere", "da inviare di nuovo").
    attention: bool,
}

/// The states counted on the desk's home, with their labels (archived ones are listed apart).
const COUNTED: [(PracticeState, &str); 5] = [
    (PracticeState::Draft, "desk-drafts"),
    (PracticeState::ToCorrect, "desk-to-correct"),
    (PracticeState::ToResend, "desk-to-resend"),
    (PracticeState::InProgress, "desk-in-progress"),
    (PracticeState::Completed, "desk-completed"),
];

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    tr: Tr<'a>,
    refusal: Option<String>,
    demo: bool,
}

/// How many of each kind of action the home lists at most (the full lists are a click away).
const HOME_ACTIONS: u32 = 50;

/// `GET /`: the desk's home for a holder with a card (or a demo session); how to log in for
/// anyone else.
pub async fn home(State(app): State<AppState>, UserLang(lang): UserLang, acting: Result<Acting, ApiError>) -> Response {
    let tr = Tr::new(&app.translations, lang);
    let principal = match acting {
        Ok(Acting(principal)) => principal,
        Err(error @ (ApiError::OutOfScope(_) | ApiError::NotFound)) => return error.into_response(),
        Err(error) => {
            let refusal = match error {
                ApiError::CardRefused(refusal) => Some(tr.msg(&format!("card-{}", refusal.code()))),
                ApiError::SessionExpired => Some(tr.msg("problem-session-expired-detail")),
                _ => None,
            };
            let page = LoginPage { refusal, demo: app.demo_cards.is_some(), tr };
            return render(&page, StatusCode::UNAUTHORIZED);
        }
    };
    let tr = Tr::acting(&app.translations, lang, &principal);
    let holder = principal.actor.clone();
    let summary = match app::practices::desk_summary(&app.core, &principal, HOME_ACTIONS).await {
        Ok(summary) => summary,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut actions = Vec::new();
    for (id, reference) in &summary.to_resend {
        let text = app.translations.message(lang, "desk-action-resend-all", &[("reference", reference.clone())]);
        actions.push((text, format!("/pratiche/{id}")));
    }
    for (practice, reference, d) in &summary.attention {
        let (message, anchor) = match d.state() {
            DeliveryState::Failed => ("desk-action-failed", "destinatario"),
            DeliveryState::Rejected => ("desk-action-rejected", "correzione"),
            DeliveryState::NoNews => ("desk-action-no-news", "destinatario"),
            _ => continue,
        };
        let institution =
            app.core.catalog.institution(&d.institution).map(|i| i.name.get(lang).to_string()).unwrap_or_default();
        let since = d.last_news_at.map(domain::italian_display).unwrap_or_default();
        let args = [("reference", reference.clone()), ("institution", institution), ("since", since)];
        let href = format!("/pratiche/{practice}#{anchor}-{}", d.institution);
        actions.push((app.translations.message(lang, message, &args), href));
    }
    let greeting = app.translations.message(
        lang,
        "desk-greeting",
        &[
            ("name", holder.display_name()),
            ("tax_code", holder.tax_code.to_string()),
            ("sex", if holder.tax_code.is_female() { "female" } else { "other" }.to_string()),
        ],
    );
    render(
        &HomePage {
            tr,
            greeting,
            actions,
            counts: COUNTED
                .iter()
                .map(|(state, label)| StateCount {
                    count: summary.count(*state),
                    label: app.translations.message(lang, label, &[]),
                    href: format!("/pratiche?stato={}", state.as_str()),
                    attention: state.needs_the_user(),
                })
                .collect(),
        },
        StatusCode::OK,
    )
}

#[derive(Debug)]
pub struct Tab {
    label: String,
    href: String,
    current: bool,
}

#[derive(Debug)]
pub struct PracticeRow {
    id: String,
    href: String,
    reference: String,
    /// The business's name and codice fiscale, as typed so far.
    business: String,
    service: String,
    state: String,
    needs_resend: bool,
    created: String,
    updated: String,
    /// For a draft: how many answers are still missing or wrong before it can be sent.
    missing: Option<String>,
}

#[derive(Template)]
#[template(path = "practices.html")]
struct PracticesPage<'a> {
    tr: Tr<'a>,
    title: String,
    tabs: Vec<Tab>,
    rows: Vec<PracticeRow>,
    /// The list shows drafts: their creation date and what is missing have columns.
    drafts: bool,
    /// Arrived from "Salva come bozza ed esci".
    saved: bool,
    errors: Vec<crate::pages::compile::ErrorLink>,
    export: crate::pages::search::ExportChoices,
}

/// The tab `/pratiche` opens on without a choice: the first that holds practices, in the
/// order of what most needs the holder.
const OPENING_ORDER: [PracticeState; 6] = [
    PracticeState::ToCorrect,
    PracticeState::ToResend,
    PracticeState::Draft,
    PracticeState::InProgress,
    PracticeState::Completed,
    PracticeState::Archived,
];

#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    stato: Option<String>,
    /// The draft just saved with "Salva come bozza ed esci".
    salvata: Option<String>,
}

/// `GET /pratiche?stato=draft|in_progress|completed|archived`: the holder's practices in one
/// state, most recently changed first.
pub async fn practices(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    notice: Result<axum::extract::Query<crate::pages::search::ExportNotice>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let none_chosen = crate::pages::search::ExportNotice::none_chosen(&notice);
    let tr = Tr::acting(&app.translations, lang, &principal);
    let summary = match app::practices::desk_summary(&app.core, &principal, 0).await {
        Ok(summary) => summary,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let query = query.ok().map(|q| q.0);
    let saved = query.as_ref().and_then(|q| q.salvata.as_deref()).and_then(domain::practice::PracticeId::parse);
    let state = query
        .and_then(|q| q.stato.as_deref().and_then(PracticeState::parse))
        .or_else(|| OPENING_ORDER.into_iter().find(|s| summary.count(*s) > 0))
        .unwrap_or(PracticeState::InProgress);
    let list = app
        .core
        .store
        .list(
            &principal.owner,
            &PracticeQuery {
                state: Some(state),
                limit: PracticeQuery::MAX_LIMIT,
                offset: 0,
                scope: principal.scope_filter(),
            },
        )
        .await;
    let list = match list {
        Ok(list) => list,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tabs = PracticeState::ALL
        .iter()
        .map(|s| Tab {
            label: format!("{} ({})", tr.msg(&format!("practices-tab-{}", s.as_str())), summary.count(*s)),
            href: format!("/pratiche?stato={}", s.as_str()),
            current: *s == state,
        })
        .collect();
    let rows: Vec<PracticeRow> = list.into_iter().map(|p| practice_row(&app, &tr, lang, p)).collect();
    let title = tr.msg(&format!("practices-tab-{}", state.as_str()));
    // The notice only for a draft of this holder's that the list shows.
    let saved = saved.is_some_and(|id| state == PracticeState::Draft && rows.iter().any(|r| r.id == id.to_string()));
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let back = format!("/pratiche?stato={}", state.as_str());
    let export = crate::pages::search::ExportChoices::new(&tr, back, &ids, none_chosen);
    let errors = export
        .error
        .iter()
        .map(|message| crate::pages::compile::ErrorLink { href: "#tabella-pratiche".into(), message: message.clone() })
        .collect();
    let drafts = state == PracticeState::Draft;
    render(&PracticesPage { tr, title, tabs, rows, drafts, saved, errors, export }, StatusCode::OK)
}

/// One practice in a list: enough to tell two drafts of the same service apart.
fn practice_row(app: &AppState, tr: &Tr<'_>, lang: Lang, p: domain::practice::Practice) -> PracticeRow {
    let business = Some(crate::view::practice_business(&p.data))
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| tr.msg("practices-no-business"));
    let missing = (p.state == PracticeState::Draft).then(|| {
        let problems = crate::api::draft_problems(app, &p, lang).len();
        if problems == 0 {
            tr.msg("practices-ready")
        } else {
            tr.fmt("practices-missing", &[("count", problems.to_string())])
        }
    });
    PracticeRow {
        id: p.id.to_string(),
        href: format!("/pratiche/{}", p.id),
        reference: p.reference.as_ref().map_or_else(|| tr.msg("practices-no-reference"), ToString::to_string),
        business,
        service: app
            .core
            .catalog
            .service(&p.service_id)
            .map_or_else(|| p.service_id.clone(), |s| s.title.get(lang).to_string()),
        state: tr.msg(&format!("state-{}", p.state.as_str())),
        needs_resend: p.needs_resend,
        created: domain::italian_display(p.created_at),
        updated: domain::italian_display(p.updated_at),
        missing,
    }
}
