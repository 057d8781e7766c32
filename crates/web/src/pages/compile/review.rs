//! Step 4: check your answers, and send.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::catalog::{FieldKind, Service, ServiceField};
use domain::practice::{Practice, PracticeState};
use domain::validation::FieldError;
use domain::Lang;

use app::AppError;

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
    refusal: Vec<String>,
    groups: Vec<AnswerGroup>,
    needs_resend: bool,
    /// Each recipient institution, with the office competent for this practice.
    destinations: Vec<String>,
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
        (Some(v), _) => v.clone(),
    }
}

fn review_page(
    view: View<'_>,
    practice: &Practice,
    service: &Service,
    errors: &[FieldError],
    refusal: Vec<String>,
    sent: bool,
) -> Response {
    let View { app, desk, principal, lang } = view;
    let tr = Tr::acting(&app.translations, lang, principal);
    let all = sections(app, service, lang);
    let section_of = |field: &str| all.iter().find(|s| s.fields.iter().any(|f| f.spec.id == field)).map(|s| &s.id);
    let links = errors
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
        .collect();
    let groups = all
        .iter()
        .map(|s| AnswerGroup {
            title: s.title.clone(),
            rows: s
                .fields
                .iter()
                .map(|f| AnswerRow {
                    label: f.spec.label.get(lang).to_string(),
                    value: shown_value(f, practice.data.get(&f.spec.id), lang, &tr),
                    change_href: format!(
                        "/pratiche/{}/sezioni/{}?ritorno=riepilogo#{}",
                        practice.id,
                        s.id,
                        input_id(&f.spec.id)
                    ),
                })
                .collect(),
        })
        .collect();
    let page = ReviewPage {
        service: service.title.get(lang).to_string(),
        action: format!("/pratiche/{}/invia", practice.id),
        tasks_href: format!("/pratiche/{}/compila", practice.id),
        csrf: desk.csrf.clone(),
        errors: links,
        refusal,
        groups,
        needs_resend: practice.needs_resend,
        destinations: destinations(app, service, &practice.data, lang),
        tr,
    };
    // Looking at what is still missing is not an error; a refused send is.
    let status = if page.refusal.is_empty() && (page.errors.is_empty() || !sent) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
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
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    if practice.state != PracticeState::Draft {
        return Ok(see_other(&format!("/pratiche/{}", practice.id)));
    }
    let today = app.core.today();
    let errors = domain::practice::validate_data(&service, &practice.data, today).err().unwrap_or_default();
    let view = View { app: &app, desk: &desk, principal: &principal, lang };
    Ok(review_page(view, &practice, &service, &errors, Vec::new(), false))
}

/// `POST /pratiche/{id}/invia`: sends the practice; its page then follows each recipient.
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
    match app::practices::submit(&app.core, &principal, practice.id).await {
        Ok((submitted, _)) => Ok(see_other(&format!("/pratiche/{}?inviata=1", submitted.id))),
        // Sent meanwhile (a second click on "Invia"): its page says where it stands.
        Err(AppError::WrongState(PracticeState::InProgress | PracticeState::Completed)) => {
            Ok(see_other(&format!("/pratiche/{}", practice.id)))
        }
        Err(AppError::Validation { errors, .. }) => {
            Ok(review_page(view, &practice, &service, &errors, Vec::new(), true))
        }
        Err(AppError::NotAuthorised { business, institutions }) => {
            let tr = Tr::new(&app.translations, lang);
            let refusal = institutions
                .iter()
                .map(|i| {
                    let id = if i.status == "unknown" { "review-refused-unknown" } else { "review-refused-missing" };
                    tr.fmt(
                        id,
                        &[
                            ("institution", i.name.get(lang).to_string()),
                            ("business", business.clone()),
                            ("help", i.help.get(lang).to_string()),
                        ],
                    )
                })
                .collect();
            Ok(review_page(view, &practice, &service, &[], refusal, true))
        }
        Err(e) => Err(e.into()),
    }
}
