//! Steps 2 and 3: the task list, and one section's fields (every save a draft save).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::catalog::Service;
use domain::practice::{Practice, PracticeState};
use domain::validation::FieldError;

use app::AppError;

use super::authorisation::{self, AuthorisationWarning};
use super::shared::*;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::{Desk, DeskForm, View};
use crate::view::{render, Tr};
use crate::AppState;
// ---- 2. the task list ---------------------------------------------------------------------

#[derive(Debug)]
pub struct Task {
    title: String,
    href: String,
    done: bool,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage<'a> {
    tr: Tr<'a>,
    service: String,
    help_href: String,
    reference: Option<String>,
    tasks: Vec<Task>,
    review_href: String,
    ready: bool,
    needs_resend: bool,
    authorisation: AuthorisationWarning,
}

/// `GET /pratiche/{id}/compila`: the task list of a draft.
pub async fn tasks(
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
    let problems = crate::api::draft_problems(&app, &practice, lang);
    let tasks: Vec<Task> = sections(&app, &service, lang)
        .into_iter()
        .map(|s| Task {
            done: !s.fields.iter().any(|f| problems.iter().any(|p| p.field() == f.spec.id)),
            href: format!("/pratiche/{}/sezioni/{}", practice.id, s.id),
            title: s.title,
        })
        .collect();
    let tr = Tr::acting(&app.translations, lang, &principal);
    let authorisation = authorisation::warning(&app, &tr, lang, &principal, &practice).await;
    let page = TasksPage {
        authorisation,
        tr,
        service: service.title.get(lang).to_string(),
        help_href: format!("/aiuto/servizi/{}", service.id),
        reference: practice.reference.as_ref().map(ToString::to_string),
        ready: tasks.iter().all(|t| t.done),
        tasks,
        review_href: format!("/pratiche/{}/riepilogo", practice.id),
        needs_resend: practice.needs_resend,
    };
    Ok(desk.finish(render(&page, StatusCode::OK)))
}

// ---- 3. one section -----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "section.html")]
struct SectionPage<'a> {
    tr: Tr<'a>,
    service: String,
    title: String,
    step: String,
    action: String,
    tasks_href: String,
    csrf: String,
    errors: Vec<ErrorLink>,
    fields: Vec<FieldInput>,
    /// "Saved at {time}", the time filled in by the script.
    saved_text: String,
    /// Saving goes back to "check your answers".
    back_to_review: bool,
    authorisation: AuthorisationWarning,
}

#[derive(Debug, serde::Deserialize)]
pub struct SectionQuery {
    controlla: Option<String>,
    /// `riepilogo` when the user came from "check your answers" to change an answer: saving
    /// goes back there (the GOV.UK pattern).
    ritorno: Option<String>,
}

/// Where "save and continue" leads from a section opened to change an answer.
const BACK_TO_REVIEW: &str = "riepilogo";

/// What a section page shows besides the values: the errors, whether they come from a save
/// (answered 422), and whether saving goes back to "check your answers".
#[derive(Debug, Clone, Copy)]
struct Shown<'e> {
    errors: &'e [FieldError],
    saving: bool,
    back_to_review: bool,
}

async fn section_page(
    view: View<'_>,
    practice: &Practice,
    service: &Service,
    section_id: &str,
    values: &BTreeMap<String, String>,
    shown: Shown<'_>,
) -> Result<Response, ApiError> {
    let Shown { errors, saving, back_to_review } = shown;
    let View { app, desk, principal, lang } = view;
    let all = sections(app, service, lang);
    let position = all.iter().position(|s| s.id == section_id).ok_or(ApiError::NotFound)?;
    let section = &all[position];
    let tr = Tr::acting(&app.translations, lang, principal);
    let authorisation = authorisation::warning(app, &tr, lang, principal, practice).await;
    let mut links = Vec::new();
    let fields = section
        .fields
        .iter()
        .map(|f| {
            let mut input = FieldInput::new(app, service, f, values.get(&f.spec.id).map_or("", String::as_str), lang);
            if let Some(error) = errors.iter().find(|e| e.field == f.spec.id) {
                let message = error_message(app, service, error, lang);
                links.push(ErrorLink { href: format!("#{}", input.html_id), message: message.clone() });
                input.error = Some(message);
            }
            input
        })
        .collect();
    // Errors about fields of other sections (a cross-field rule) are listed too.
    for error in errors.iter().filter(|e| !section.fields.iter().any(|f| f.spec.id == e.field)) {
        links.push(ErrorLink {
            href: format!("/pratiche/{}/riepilogo", practice.id),
            message: error_message(app, service, error, lang),
        });
    }
    let page = SectionPage {
        service: service.title.get(lang).to_string(),
        title: section.title.clone(),
        saved_text: tr.fmt("form-autosaved", &[("time", "{time}".to_string())]),
        step: tr.fmt("form-step", &[("n", (position + 1).to_string()), ("total", all.len().to_string())]),
        action: format!("/pratiche/{}/sezioni/{}", practice.id, section.id),
        tasks_href: format!("/pratiche/{}/compila", practice.id),
        csrf: desk.csrf.clone(),
        errors: links,
        fields,
        back_to_review,
        authorisation,
        tr,
    };
    let status = if errors.is_empty() || !saving { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(desk.finish(render(&page, status)))
}

/// `GET /pratiche/{id}/sezioni/{section}`: one section's fields, with the values saved; with
/// `?controlla=1`, what is still wrong or missing in it.
pub async fn section(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path((id, section_id)): Path<(String, String)>,
    query: Result<Query<SectionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    if practice.state != PracticeState::Draft {
        return Ok(see_other(&format!("/pratiche/{}", practice.id)));
    }
    let query = query.map(|q| q.0).ok();
    let back_to_review = query.as_ref().and_then(|q| q.ritorno.as_deref()) == Some(BACK_TO_REVIEW);
    let errors = if query.is_some_and(|q| q.controlla.is_some()) {
        let today = app.core.today();
        domain::practice::validate_data(&service, &practice.data, today).err().unwrap_or_default()
    } else {
        Vec::new()
    };
    let view = View { app: &app, desk: &desk, principal: &principal, lang };
    let shown = Shown { errors: &errors, saving: false, back_to_review };
    section_page(view, &practice, &service, &section_id, &practice.data, shown).await
}

/// `POST /pratiche/{id}/sezioni/{section}` (the section's fields and `azione`: `continua`,
/// `bozza`, or `autosalva` from the enhancing script): saves the draft if no value is invalid.
/// "Salva e continua" then stops on this page while any of its answers is missing or would be
/// refused by an institution (what was typed stays saved); "Salva come bozza ed esci" leaves
/// for the drafts with the draft as it is.
pub async fn save_section(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path((id, section_id)): Path<(String, String)>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let desk = Desk::from_form(&form);
    let principal = form.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    let all = sections(&app, &service, lang);
    let position = all.iter().position(|s| s.id == section_id).ok_or(ApiError::NotFound)?;
    let mut data = practice.data.clone();
    for field in &all[position].fields {
        match form.get(&field.spec.id).map(str::trim) {
            Some(value) if !value.is_empty() => {
                data.insert(field.spec.id.clone(), value.to_string());
            }
            _ => {
                data.remove(&field.spec.id);
            }
        }
        // What this page asks stands for the fields derived from it (cleared with it).
        for derived in service.derived_of(&field.spec.id) {
            data.remove(derived);
        }
    }
    let action = form.get("azione").unwrap_or("continua");
    let back_to_review = form.get("ritorno") == Some(BACK_TO_REVIEW);
    let saved = match app::practices::save_draft(&app.core, &principal, practice.id, &data).await {
        Ok(saved) => saved,
        Err(AppError::Validation { errors, .. }) if action == "autosalva" => {
            tracing::debug!(practice = %practice.id, errors = errors.len(), "autosave skipped: invalid values");
            return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
        }
        Err(AppError::Validation { errors, .. }) => {
            let view = View { app: &app, desk: &desk, principal: &principal, lang };
            let shown = Shown { errors: &errors, saving: true, back_to_review };
            return section_page(view, &practice, &service, &section_id, &data, shown).await;
        }
        Err(e) => return Err(e.into()),
    };
    if action == "continua" {
        let mine = |field: &str| all[position].fields.iter().any(|f| f.spec.id == field);
        let left: Vec<FieldError> =
            app::practices::draft_problems(&app.core, &saved).into_iter().filter(|e| mine(&e.field)).collect();
        if !left.is_empty() {
            let view = View { app: &app, desk: &desk, principal: &principal, lang };
            let shown = Shown { errors: &left, saving: true, back_to_review };
            return section_page(view, &saved, &service, &section_id, &saved.data, shown).await;
        }
    }
    Ok(match action {
        "autosalva" => StatusCode::NO_CONTENT.into_response(),
        "bozza" => see_other(&format!("/pratiche?stato=draft&salvata={}", practice.id)),
        _ if back_to_review => see_other(&format!("/pratiche/{}/riepilogo", practice.id)),
        _ => match all.get(position + 1) {
            Some(next) => see_other(&format!("/pratiche/{}/sezioni/{}", practice.id, next.id)),
            None => see_other(&format!("/pratiche/{}/riepilogo", practice.id)),
        },
    })
}
