//! Step 4: check your answers, and send.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::catalog::{FieldKind, Service, ServiceField};
use domain::practice::{Practice, PracticeState};
use domain::validation::FieldError;
use domain::Lang;

use app::AppError;

use super::authorisation::{self, AuthorisationWarning};
use super::shared::*;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::{Desk, DeskForm, View};
use crate::view::{render, Tr};
use crate::AppState;
// ---- 4. check your answers and send -------------------------------------------------------

#[derive(Debug)]
pub struct AnswerRow {
    label: String,
    value: String,
    change_href: String,
}

#[derive(Debug)]
pub struct AnswerGroup {
    title: String,
    rows: Vec<AnswerRow>,
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage<'a> {
    tr: Tr<'a>,
    service: String,
    action: String,
    tasks_href: String,
    csrf: String,
    errors: Vec<ErrorLink>,
    /// Back from a send refused for authorisations (the warning says where).
    refused: bool,
    authorisation: AuthorisationWarning,
    groups: Vec<AnswerGroup>,
    needs_resend: bool,
    /// Each recipient institution, with the office competent for this practice.
    destinations: Vec<String>,
    /// What the user confirms by sending, and the error when it was not confirmed.
    declaration: String,
    declaration_error: Option<String>,
}

/// Where each filing of `service` goes with `data`: the institution and, when it routes by
/// territory, its competent office.
pub fn destinations(
    app: &AppState,
    service: &Service,
    data: &domain::practice::PracticeData,
    lang: Lang,
) -> Vec<String> {
    service
        .recipients
        .iter()
        .map(|r| {
            let name = app.institution_name(&r.institution, lang);
            let office = r
                .routing
                .as_ref()
                .and_then(|(routing, _)| routing.key_in(data).and_then(|(_, v)| routing.office_for(v)));
            match office {
                Some(o) => format!("{name}: {}", o.name.get(lang)),
                None => name,
            }
        })
        .collect()
}

/// The value as the user reads it: a choice by its label, a missing one as such.
fn shown_value(field: &ServiceField, value: Option<&String>, lang: Lang, tr: &Tr) -> String {
    match (value, &field.spec.kind) {
        (None, _) => tr.msg("review-missing"),
        (Some(v), FieldKind::Choice { options }) => {
            options.iter().find(|o| o.value == *v).map_or_else(|| v.clone(), |o| o.label.get(lang).to_string())
        }
        (Some(v), FieldKind::Date(_)) => domain::identifiers::display_date_value(v),
        (Some(v), _) => v.clone(),
    }
}

/// How the user arrived at check answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// To look (what is missing is shown, not an error).
    Looking,
    /// Redirected after a send refused for authorisations.
    Refused,
    /// A send refused for its data (answered 422).
    Invalid,
    /// A send without the declaration confirmed (answered 422).
    Undeclared,
}

/// The error summary's links: each to its field in its section, marked to come back here.
fn error_links(
    app: &AppState,
    practice: &Practice,
    service: &Service,
    errors: &[FieldError],
    lang: Lang,
) -> Vec<ErrorLink> {
    let all = sections(app, service, lang);
    let section_of =
        |field: &str| all.iter().find(|s| s.fields.iter().any(|f| f.spec.id == field)).map(|s| s.id.clone());
    errors
        .iter()
        .map(|e| ErrorLink {
            href: section_of(&e.field).map_or_else(
                || format!("/pratiche/{}/compila", practice.id),
                |s| {
                    format!(
                        "/pratiche/{}/sezioni/{s}?controlla=1&ritorno=riepilogo#{}",
                        practice.id,
                        input_id(&e.field)
                    )
                },
            ),
            message: error_message(app, service, e, lang),
        })
        .collect()
}

/// Every answer by section, each with its change link.
fn answer_groups(app: &AppState, practice: &Practice, service: &Service, tr: &Tr<'_>, lang: Lang) -> Vec<AnswerGroup> {
    sections(app, service, lang)
        .iter()
        .map(|s| AnswerGroup {
            title: s.title.clone(),
            rows: s
                .fields
                .iter()
                .map(|f| AnswerRow {
                    label: f.spec.label.get(lang).to_string(),
                    value: shown_value(f, practice.data.get(&f.spec.id), lang, tr),
                    change_href: format!(
                        "/pratiche/{}/sezioni/{}?ritorno=riepilogo#{}",
                        practice.id,
                        s.id,
                        input_id(&f.spec.id)
                    ),
                })
                .collect(),
        })
        .collect()
}

/// What the user declares by sending: to whom, in whose name.
fn declaration(
    app: &AppState,
    tr: &Tr<'_>,
    principal: &crate::acting::Principal,
    service: &Service,
    lang: Lang,
) -> String {
    let institutions =
        service.recipients.iter().map(|r| app.institution_name(&r.institution, lang)).collect::<Vec<_>>().join(", ");
    match &principal.delegation {
        None => tr.fmt(
            "review-declaration",
            &[
                ("institutions", institutions),
                ("name", principal.actor.display_name()),
                ("tax_code", principal.actor.tax_code.to_string()),
            ],
        ),
        Some(_) => tr.fmt(
            "review-declaration-delegated",
            &[("institutions", institutions), ("owner", principal.owner.to_string())],
        ),
    }
}

async fn review_page(
    view: View<'_>,
    practice: &Practice,
    service: &Service,
    errors: &[FieldError],
    arrival: Arrival,
) -> Response {
    let View { app, desk, principal, lang } = view;
    let tr = Tr::acting(&app.translations, lang, principal);
    let authorisation = authorisation::warning(app, &tr, lang, principal, practice).await;
    let mut links = error_links(app, practice, service, errors, lang);
    let declaration_error = (arrival == Arrival::Undeclared).then(|| tr.msg("review-declaration-missing"));
    if let Some(message) = &declaration_error {
        links.push(ErrorLink { href: "#dichiarazione".into(), message: message.clone() });
    }
    let page = ReviewPage {
        service: service.title.get(lang).to_string(),
        action: format!("/pratiche/{}/invia", practice.id),
        tasks_href: format!("/pratiche/{}/compila", practice.id),
        csrf: desk.csrf.clone(),
        errors: links,
        refused: arrival == Arrival::Refused,
        authorisation,
        groups: answer_groups(app, practice, service, &tr, lang),
        needs_resend: practice.needs_resend,
        destinations: destinations(app, service, &practice.data, lang),
        declaration: declaration(app, &tr, principal, service, lang),
        declaration_error,
        tr,
    };
    // Looking at what is still missing is not an error; a send refused for its data is.
    let status = match arrival {
        Arrival::Invalid | Arrival::Undeclared => StatusCode::UNPROCESSABLE_ENTITY,
        Arrival::Looking | Arrival::Refused => StatusCode::OK,
    };
    desk.finish(render(&page, status))
}

/// `GET /pratiche/{id}/riepilogo`: every answer with a link to change it, what still stops the
/// sending, and the send button.
pub async fn review(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path(id): Path<String>,
    query: Result<Query<ReviewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    if practice.state != PracticeState::Draft {
        return Ok(see_other(&format!("/pratiche/{}", practice.id)));
    }
    let today = app.core.today();
    let errors = domain::practice::validate_data(&service, &practice.data, today).err().unwrap_or_default();
    let arrival = if query.is_ok_and(|q| q.0.rifiutata.is_some()) { Arrival::Refused } else { Arrival::Looking };
    let view = View { app: &app, desk: &desk, principal: &principal, lang };
    Ok(review_page(view, &practice, &service, &errors, arrival).await)
}

#[derive(Debug, serde::Deserialize)]
pub struct ReviewQuery {
    /// Back from a send refused for authorisations.
    rifiutata: Option<String>,
}

/// The declaration's checkbox value.
const DECLARED: &str = "confermata";

/// `POST /pratiche/{id}/invia` (with `dichiarazione=confermata`): sends the practice; its
/// page then follows each recipient.
pub async fn send(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path(id): Path<String>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let desk = Desk::from_form(&form);
    let principal = form.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    let view = View { app: &app, desk: &desk, principal: &principal, lang };
    if practice.state == PracticeState::Draft && form.get("dichiarazione") != Some(DECLARED) {
        let errors =
            domain::practice::validate_data(&service, &practice.data, app.core.today()).err().unwrap_or_default();
        return Ok(review_page(view, &practice, &service, &errors, Arrival::Undeclared).await);
    }
    match app::practices::submit(&app.core, &principal, practice.id).await {
        Ok((submitted, _)) => Ok(see_other(&format!("/pratiche/{}?inviata=1", submitted.id))),
        // Sent meanwhile (a second click on "Invia"): its page says where it stands.
        Err(AppError::WrongState(state)) if state != PracticeState::Draft => {
            Ok(see_other(&format!("/pratiche/{}", practice.id)))
        }
        Err(AppError::Validation { errors, .. }) => {
            Ok(review_page(view, &practice, &service, &errors, Arrival::Invalid).await)
        }
        // Nothing was sent: back to check answers with a redirect, so that a reload does not
        // send the form again; the page names each institution and what to do there.
        Err(AppError::NotAuthorised { .. }) => {
            Ok(see_other(&format!("/pratiche/{}/riepilogo?rifiutata=1", practice.id)))
        }
        Err(e) => Err(e.into()),
    }
}
