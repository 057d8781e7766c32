//! The help on every service and field.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::shared::*;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::view::{render, Tr};
use crate::AppState;
// ---- help ---------------------------------------------------------------------------------

#[derive(Debug)]
pub struct FieldHelp {
    anchor: String,
    label: String,
    hint: Option<String>,
    help: Option<String>,
}

#[derive(Debug)]
pub struct HelpSection {
    title: String,
    fields: Vec<FieldHelp>,
}

#[derive(Template)]
#[template(path = "help.html")]
struct HelpPage<'a> {
    tr: Tr<'a>,
    id: String,
    title: String,
    summary: String,
    help: String,
    recipients: Vec<String>,
    sections: Vec<HelpSection>,
}

/// `GET /aiuto/servizi/{id}`: the help on a service and on each of its fields, from the
/// catalog; each field's entry is the target of the form's "help on this field" link.
pub async fn help(State(app): State<AppState>, UserLang(lang): UserLang, Path(id): Path<String>) -> Response {
    let Some(service) = app.core.catalog.service(&id) else { return ApiError::NotFound.into_response() };
    let sections = sections(&app, service, lang)
        .into_iter()
        .map(|s| HelpSection {
            title: s.title,
            fields: s
                .fields
                .iter()
                .map(|f| FieldHelp {
                    anchor: format!("aiuto-{}", input_id(&f.spec.id)),
                    label: f.spec.label.get(lang).to_string(),
                    hint: f.spec.hint.as_ref().map(|h| h.get(lang).to_string()),
                    help: f.spec.help.as_ref().map(|h| h.get(lang).to_string()),
                })
                .collect(),
        })
        .collect();
    let recipients = service
        .recipients
        .iter()
        .map(|r| {
            let name = app.institution_name(&r.institution, lang);
            let filing = app.core.catalog.filing(r).map(|f| f.title.get(lang).to_string()).unwrap_or_default();
            format!("{name}: {filing}")
        })
        .collect();
    let page = HelpPage {
        tr: Tr::new(&app.translations, lang),
        id: service.id.clone(),
        title: service.title.get(lang).to_string(),
        summary: service.summary.get(lang).to_string(),
        help: service.help.get(lang).to_string(),
        recipients,
        sections,
    };
    render(&page, StatusCode::OK)
}
