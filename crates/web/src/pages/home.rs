//! The desk's home ("la mia scrivania"), the catalog, the practices' list by state, the
//! accessibility statement, and the stylesheet and enhancing script.

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::delivery::DeliveryState;
use domain::practice::PracticeState;
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
    actions: Vec<String>,
    drafts: u64,
    in_progress: u64,
    completed: u64,
}

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
    for reference in &summary.to_resend {
        actions.push(app.translations.message(lang, "desk-action-resend-all", &[("reference", reference.clone())]));
    }
    for (reference, d) in &summary.attention {
        let id = match d.state() {
            DeliveryState::Failed => "desk-action-failed",
            DeliveryState::Rejected => "desk-action-rejected",
            DeliveryState::NoNews => "desk-action-no-news",
            _ => continue,
        };
        let institution =
            app.core.catalog.institution(&d.institution).map(|i| i.name.get(lang).to_string()).unwrap_or_default();
        let since = d.last_news_at.map(domain::italian_display).unwrap_or_default();
        let args = [("reference", reference.clone()), ("institution", institution), ("since", since)];
        actions.push(app.translations.message(lang, id, &args));
    }
    let greeting = app.translations.message(
        lang,
        "desk-greeting",
        &[("name", holder.display_name()), ("tax_code", holder.tax_code.to_string())],
    );
    render(
        &HomePage {
            tr,
            greeting,
            actions,
            drafts: summary.count(PracticeState::Draft),
            in_progress: summary.count(PracticeState::InProgress),
            completed: summary.count(PracticeState::Completed),
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
    service: String,
    state: String,
    needs_resend: bool,
    updated: String,
}

#[derive(Template)]
#[template(path = "practices.html")]
struct PracticesPage<'a> {
    tr: Tr<'a>,
    title: String,
    tabs: Vec<Tab>,
    rows: Vec<PracticeRow>,
}

#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    stato: Option<String>,
}

/// `GET /pratiche?stato=draft|in_progress|completed|archived`: the holder's practices in one
/// state, most recently changed first.
pub async fn practices(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let tr = Tr::acting(&app.translations, lang, &principal);
    let state = query
        .ok()
        .and_then(|q| q.0.stato.as_deref().and_then(PracticeState::parse))
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
            label: tr.msg(&format!("practices-tab-{}", s.as_str())),
            href: format!("/pratiche?stato={}", s.as_str()),
            current: *s == state,
        })
        .collect();
    let rows = list
        .into_iter()
        .map(|p| PracticeRow {
            id: p.id.to_string(),
            href: format!("/pratiche/{}", p.id),
            reference: p.reference.as_ref().map_or_else(|| tr.msg("practices-no-reference"), ToString::to_string),
            service: app
                .core
                .catalog
                .service(&p.service_id)
                .map_or_else(|| p.service_id.clone(), |s| s.title.get(lang).to_string()),
            state: tr.msg(&format!("state-{}", p.state.as_str())),
            needs_resend: p.needs_resend,
            updated: domain::italian_display(p.updated_at),
        })
        .collect();
    let title = tr.msg(&format!("practices-tab-{}", state.as_str()));
    render(&PracticesPage { tr, title, tabs, rows }, StatusCode::OK)
}
