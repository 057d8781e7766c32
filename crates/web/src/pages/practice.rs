//! Following a practice after sending it ("pratiche in corso"): its page, what the user can do
//! there, the receipt, live updates and the export for the office's own records.
//!
//! - `GET /pratiche/{id}`: each recipient's state, protocol number and outcome; a failed
//!   recipient highlighted with "send again to this institution"; a rejection with the fields
//!   at fault, editable, resent to that institution alone; the timeline; archive/bring back.
//! - `POST /pratiche/{id}/destinatari/{institution}/reinvia`, `POST /pratiche/{id}/archivia`,
//!   `POST /pratiche/{id}/ripristina`: the actions, as forms with the session's token.
//! - `GET /pratiche/{id}/eventi`: server-sent events, one whenever a recipient's state
//!   changes; `static/sportello.js` then refreshes the page's regions in place. Without
//!   JavaScript a reload shows the same.
//! - The receipt is in [`crate::receipt`].
//! - `GET /pratiche/esporta?pratica=…`: chosen practices (data, deliveries, receipt, timeline)
//!   as one JSON file.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use domain::catalog::Service;
use domain::delivery::DeliveryState;
use domain::practice::{Delivery, Practice, PracticeData, PracticeId, PracticeState};
use domain::validation::FieldError;
use domain::Lang;

use crate::acting::Principal;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::{Desk, DeskForm, View};
use crate::pages::compile::{ErrorLink, FieldInput};
use crate::view::{render, Tr};
use crate::AppState;

pub use app::records::{data_digest, payload_digest};

/// The digest of one filing's payload, as queued for the institution.
fn state_class(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Accepted | DeliveryState::TakenInCharge => "tag-ok",
        DeliveryState::Failed | DeliveryState::Rejected | DeliveryState::NoNews => "tag-missing",
        _ => "tag-unknown",
    }
}

/// A correction form for a rejected recipient: its fields at fault.
#[derive(Debug)]
pub struct CorrectionForm {
    action: String,
    button: String,
    errors: Vec<ErrorLink>,
    fields: Vec<FieldInput>,
}

#[derive(Debug)]
pub struct RecipientRow {
    id: String,
    institution: String,
    state: String,
    class: &'static str,
    protocol: String,
    notes: Vec<String>,
    /// The last technical error, untranslated (shown apart, for support).
    technical: Option<String>,
    /// "Send again to this institution" (failed).
    resend: Option<(String, String)>,
    /// The fields at fault, editable (rejected).
    correction: Option<CorrectionForm>,
    /// The office the filing went to, when the institution routes by territory.
    office: Option<String>,
}

/// The fields a rejection names that the service does not collect (an institution's own
/// rule on data the portal does not send): they cannot be corrected here.
fn uncorrectable(service: Option<&Service>, rejection: &domain::delivery::Rejection) -> Vec<String> {
    rejection.fields.iter().filter(|f| service.and_then(|s| s.field(f)).is_none()).cloned().collect()
}

/// What still stops a draft, each item linking to its field in its section.
fn draft_problem_links(app: &AppState, practice: &Practice, service: &Service, lang: Lang) -> Vec<AttentionItem> {
    let sections = crate::pages::compile::sections(app, service, lang);
    crate::api::draft_problems(app, practice, lang)
        .into_iter()
        .map(|p| {
            let section = sections.iter().find(|s| s.fields.iter().any(|f| f.spec.id == p.field()));
            let href = section.map_or_else(
                || format!("/pratiche/{}/compila", practice.id),
                |s| {
                    let field = crate::pages::compile::input_id(p.field());
                    format!("/pratiche/{}/sezioni/{}?controlla=1#{field}", practice.id, s.id)
                },
            );
            AttentionItem { text: p.message, href }
        })
        .collect()
}

/// One thing the user must do, and the link to where it is done.
#[derive(Debug)]
pub struct AttentionItem {
    text: String,
    href: String,
}

/// What the recipients ask of the user: a correction for each rejection, a resend for each
/// failure or silence, each linking to its form on the page.
fn attention_items(
    app: &AppState,
    tr: &Tr<'_>,
    lang: Lang,
    service: Option<&Service>,
    deliveries: &[Delivery],
) -> Vec<AttentionItem> {
    deliveries
        .iter()
        .filter_map(|d| {
            let institution = app.institution_name(&d.institution, lang);
            let (key, href) = match d.state() {
                DeliveryState::Rejected => {
                    // The form when something can be corrected, else the row that says why not.
                    let correctable =
                        d.status.rejection.as_ref().is_some_and(|r| uncorrectable(service, r).len() < r.fields.len());
                    let anchor = if correctable { "correzione" } else { "destinatario" };
                    ("practice-attention-rejected", format!("#{anchor}-{}", d.institution))
                }
                DeliveryState::Failed => ("practice-attention-failed", format!("#destinatario-{}", d.institution)),
                DeliveryState::NoNews => ("practice-attention-no-news", format!("#destinatario-{}", d.institution)),
                _ => return None,
            };
            let reasons = d.status.rejection.as_ref().map(|r| r.reasons.join("; ")).unwrap_or_default();
            let key = if key == "practice-attention-rejected" && reasons.is_empty() {
                "practice-attention-rejected-plain"
            } else {
                key
            };
            Some(AttentionItem { text: tr.fmt(key, &[("institution", institution), ("reasons", reasons)]), href })
        })
        .collect()
}

#[derive(Debug)]
pub struct TimelineRow {
    at: String,
    institution: String,
    what: String,
}

#[derive(Template)]
#[template(path = "practice.html")]
struct PracticePage<'a> {
    tr: Tr<'a>,
    id: String,
    csrf: String,
    service: String,
    reference: Option<String>,
    state: String,
    updated: String,
    submitted: Option<String>,
    notice: Option<String>,
    /// Just sent: what happens next, and when.
    next_steps: Vec<String>,
    /// The state needs the user ("da correggere", "da inviare di nuovo"): drawn as a problem.
    state_attention: bool,
    draft: bool,
    needs_resend: bool,
    /// What the user must do about a rejected, failed or silent recipient, first on the page.
    attention: Vec<AttentionItem>,
    /// What a draft still lacks, each linking to its field.
    problems: Vec<AttentionItem>,
    recipients: Vec<RecipientRow>,
    timeline: Vec<TimelineRow>,
    live: bool,
    /// `archivia` or `ripristina`, when allowed.
    archive_action: Option<(String, String)>,
}

#[derive(Debug, serde::Deserialize)]
pub struct PracticeNotice {
    inviata: Option<String>,
    reinviata: Option<String>,
}

/// Errors to show in one recipient's correction form after a refused resend.
struct Refused<'e> {
    institution: &'e str,
    errors: &'e [FieldError],
    /// What the user typed, shown again.
    typed: &'e PracticeData,
}

pub(crate) async fn load(
    app: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(Practice, Vec<Delivery>), ApiError> {
    let id = PracticeId::parse(id).ok_or(ApiError::NotFound)?;
    Ok(app::practices::with_deliveries(&app.core, principal, id).await?)
}

/// What each recipient's row is drawn from.
struct RowContext<'a> {
    app: &'a AppState,
    tr: &'a Tr<'a>,
    lang: Lang,
    practice: &'a Practice,
    service: Option<&'a Service>,
    refused: Option<&'a Refused<'a>>,
}

/// A rejected filing's correction form: the fields at fault with what was typed, and the
/// errors of a correction refused.
fn correction_form(
    cx: &RowContext<'_>,
    d: &Delivery,
    rejection: &domain::delivery::Rejection,
    name: &str,
) -> Option<CorrectionForm> {
    let errors = cx.refused.filter(|r| r.institution == d.institution).map_or(&[][..], |r| r.errors);
    let mut links = Vec::new();
    let fields = rejection
        .fields
        .iter()
        .filter_map(|f| cx.service.and_then(|s| s.field(f).map(|sf| (s, sf))))
        .map(|(s, sf)| {
            let typed = cx.refused.filter(|r| r.institution == d.institution).map(|r| r.typed);
            let value = typed
                .and_then(|t| t.get(&sf.spec.id))
                .or_else(|| cx.practice.data.get(&sf.spec.id))
                .map_or("", String::as_str);
            let mut input = FieldInput::new(cx.app, s, sf, value, cx.lang);
            input.html_id = format!("{}-{}", input.html_id, d.institution);
            if let Some(e) = errors.iter().find(|e| e.field == sf.spec.id) {
                let message = cx.app.translations.reason(cx.lang, Some(&sf.spec.label), &e.field, &e.reason);
                links.push(ErrorLink { href: format!("#{}", input.html_id), message: message.clone() });
                input.error = Some(message);
            }
            input
        })
        .collect::<Vec<_>>();
    for e in errors.iter().filter(|e| !rejection.fields.contains(&e.field)) {
        let label = cx.service.and_then(|s| s.field(&e.field)).map(|f| &f.spec.label);
        links.push(ErrorLink {
            href: format!("#destinatario-{}", d.institution),
            message: cx.app.translations.reason(cx.lang, label, &e.field, &e.reason),
        });
    }
    (!fields.is_empty()).then(|| CorrectionForm {
        action: format!("/pratiche/{}/destinatari/{}/reinvia", cx.practice.id, d.institution),
        button: cx.tr.fmt("practice-correct-resend", &[("institution", name.to_string())]),
        errors: links,
        fields,
    })
}

/// One recipient's row: its state, protocol number, notes, and what the user can do.
fn recipient_row(cx: &RowContext<'_>, d: &Delivery) -> RecipientRow {
    let name = cx.app.institution_name(&d.institution, cx.lang);
    let mut notes = Vec::new();
    let mut correction = None;
    if let Some(rejection) = d.status.rejection.as_ref().filter(|_| d.state() == DeliveryState::Rejected) {
        notes.extend(rejection.reasons.iter().cloned());
        correction = correction_form(cx, d, rejection, &name);
        // Never a dead end: what the form cannot offer is said, with what to do.
        let outside = uncorrectable(cx.service, rejection);
        if !outside.is_empty() {
            let args = [("institution", name.clone()), ("fields", outside.join(", "))];
            notes.push(cx.tr.fmt("practice-rejection-uncorrectable", &args));
        }
    }
    // The institution's or the network's own words stay available, marked as such.
    let technical = d.status.last_error.clone();
    if d.state() == DeliveryState::Failed {
        notes.push(cx.tr.msg("practice-failed-note"));
    }
    if d.state() == DeliveryState::NoNews {
        let since = d.last_news_at.map(domain::italian_display).unwrap_or_default();
        notes.push(cx.tr.fmt("practice-no-news-note", &[("institution", name.clone()), ("since", since)]));
    }
    let resend = matches!(d.state(), DeliveryState::Failed | DeliveryState::NoNews).then(|| {
        (
            format!("/pratiche/{}/destinatari/{}/reinvia", cx.practice.id, d.institution),
            cx.tr.fmt("practice-resend", &[("institution", name.clone())]),
        )
    });
    let office = d.office.as_ref().map(|o| {
        cx.app
            .core
            .catalog
            .institution(&d.institution)
            .and_then(|i| i.routing.as_ref())
            .and_then(|r| r.office(o))
            .map_or_else(|| o.clone(), |office| office.name.get(cx.lang).to_string())
    });
    RecipientRow {
        office,
        id: d.institution.clone(),
        institution: name,
        state: match (&d.waits_for, d.state()) {
            (Some(first), DeliveryState::Waiting) => {
                cx.tr.fmt("delivery-state-waiting-for", &[("institution", cx.app.institution_name(first, cx.lang))])
            }
            (_, state) => cx.tr.msg(&format!("delivery-state-{}", state.as_str())),
        },
        class: state_class(d.state()),
        protocol: d.status.protocol_number.clone().unwrap_or_else(|| match d.state() {
            DeliveryState::Failed | DeliveryState::Rejected => "—".to_string(),
            _ => cx.tr.msg("practice-protocol-waiting"),
        }),
        notes,
        technical,
        resend,
        correction,
    }
}

/// What happens after sending ("che cosa succede ora"): deliveries and protocol numbers, the
/// outcomes, the business's PEC, and what a problem would look like.
fn next_steps(tr: &Tr<'_>, practice: &Practice) -> Vec<String> {
    let pec = match practice.data.get("business.pec").filter(|p| !p.trim().is_empty()) {
        Some(pec) => tr.fmt("practice-next-pec", &[("pec", pec.clone())]),
        None => tr.msg("practice-next-pec-none"),
    };
    vec![tr.msg("practice-next-delivery"), tr.msg("practice-next-outcome"), pec, tr.msg("practice-next-problem")]
}

/// A notice at the top of the practice's page, after an action.
enum Notice {
    /// Just sent (the confirmation): the reference number and what happens next.
    Sent(String),
    Other(String),
}

async fn practice_page(
    view: View<'_>,
    (practice, deliveries): (Practice, Vec<Delivery>),
    notice: Option<Notice>,
    refused: Option<Refused<'_>>,
) -> Result<Response, ApiError> {
    let sent_now = matches!(notice, Some(Notice::Sent(_)));
    let notice = notice.map(|n| match n {
        Notice::Sent(text) | Notice::Other(text) => text,
    });
    let View { app, desk, principal, lang } = view;
    let tr = Tr::acting(&app.translations, lang, principal);
    let service: Option<&Service> = app.core.catalog.service(&practice.service_id);
    let timeline = app::practices::timeline(&app.core, principal, &practice).await?;
    let problems = match (practice.state, service) {
        (PracticeState::Draft, Some(service)) => draft_problem_links(app, &practice, service, lang),
        _ => Vec::new(),
    };
    let cx = RowContext { app, tr: &tr, lang, practice: &practice, service, refused: refused.as_ref() };
    let recipients = deliveries.iter().map(|d| recipient_row(&cx, d)).collect();
    let timeline = timeline
        .iter()
        .map(|e| TimelineRow {
            at: domain::italian_display(e.at),
            institution: app.institution_name(&e.institution, lang),
            what: tr.msg(&format!("event-{}", e.kind)),
        })
        .collect();
    let archive_action = match practice.state {
        PracticeState::Draft | PracticeState::ToCorrect | PracticeState::ToResend | PracticeState::Completed => {
            Some(("archivia".to_string(), tr.msg("practice-archive")))
        }
        PracticeState::Archived => Some(("ripristina".to_string(), tr.msg("practice-unarchive"))),
        PracticeState::InProgress => None,
    };
    let attention = match practice.state {
        PracticeState::Draft | PracticeState::Archived => Vec::new(),
        _ => attention_items(app, &tr, lang, service, &deliveries),
    };
    let next_steps = if sent_now { next_steps(&tr, &practice) } else { Vec::new() };
    let page = PracticePage {
        next_steps,
        id: practice.id.to_string(),
        csrf: desk.csrf.clone(),
        service: service.map_or_else(|| practice.service_id.clone(), |s| s.title.get(lang).to_string()),
        reference: practice.reference.as_ref().map(ToString::to_string),
        state: tr.msg(&format!("state-{}", practice.state.as_str())),
        updated: domain::italian_display(practice.updated_at),
        submitted: practice.submitted_at.map(domain::italian_display),
        notice,
        state_attention: practice.state.needs_the_user(),
        draft: practice.state == PracticeState::Draft,
        attention,
        needs_resend: practice.needs_resend,
        problems,
        recipients,
        timeline,
        // Recipients may still answer while the user has something to correct or resend.
        live: matches!(practice.state, PracticeState::InProgress | PracticeState::ToCorrect | PracticeState::ToResend),
        archive_action,
        tr,
    };
    let status = if refused.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(desk.finish(render(&page, status)))
}

/// `GET /pratiche/{id}`: one practice.
pub async fn practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path(id): Path<String>,
    query: Result<Query<PracticeNotice>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let loaded = load(&app, &principal, &id).await?;
    let tr = Tr::new(&app.translations, lang);
    let notice = match query {
        Ok(Query(PracticeNotice { inviata: Some(_), .. })) => loaded
            .0
            .reference
            .as_ref()
            .map(|r| Notice::Sent(tr.fmt("practice-notice-sent", &[("reference", r.to_string())]))),
        Ok(Query(PracticeNotice { reinviata: Some(institution), .. })) => {
            loaded.1.iter().any(|d| d.institution == institution).then(|| {
                Notice::Other(
                    tr.fmt("practice-notice-resent", &[("institution", app.institution_name(&institution, lang))]),
                )
            })
        }
        _ => None,
    };
    practice_page(View { app: &app, desk: &desk, principal: &principal, lang }, loaded, notice, None).await
}

/// `POST /pratiche/{id}/destinatari/{institution}/reinvia`: a failed recipient sent again
/// unchanged, or a rejected one with the corrected fields at fault; no other recipient moves.
pub async fn resend(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path((id, institution)): Path<(String, String)>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let desk = Desk::from_form(&form);
    let principal = form.principal(&app).await?;
    let (practice, deliveries) = load(&app, &principal, &id).await?;
    let service = app.core.catalog.service(&practice.service_id);
    // Only the service's fields are corrections; the token and buttons are not.
    let corrections: PracticeData = form
        .fields
        .iter()
        .filter(|(k, _)| service.is_some_and(|s| s.field(k).is_some()))
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect();
    match app::practices::resend(&app.core, &principal, practice.id, &institution, &corrections).await {
        Ok(()) => Ok(Redirect::to(&format!("/pratiche/{}?reinviata={institution}", practice.id)).into_response()),
        Err(app::AppError::Validation { errors, .. }) => {
            let refused = Refused { institution: &institution, errors: &errors, typed: &corrections };
            let view = View { app: &app, desk: &desk, principal: &principal, lang };
            practice_page(view, (practice, deliveries), None, Some(refused)).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn set_archived(app: &AppState, form: &DeskForm, id: &str, archive: bool) -> Result<Response, ApiError> {
    let id = PracticeId::parse(id).ok_or(ApiError::NotFound)?;
    let principal = form.principal(app).await?;
    let practice = app::practices::set_archived(&app.core, &principal, id, archive).await?;
    Ok(Redirect::to(&format!("/pratiche/{}", practice.id)).into_response())
}

/// `POST /pratiche/{id}/archivia`: archives a draft or a completed practice.
pub async fn archive(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    set_archived(&app, &form, &id, true).await
}

/// `POST /pratiche/{id}/ripristina`: brings an archived practice back.
pub async fn unarchive(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    set_archived(&app, &form, &id, false).await
}
