//! What a holder keeps, for business software: the receipt with its digests
//! (`GET /api/v1/practices/{id}/receipt`) and the export of chosen practices
//! (`GET /api/v1/export`, also the desk's `/pratiche/esporta`).

use app::records::Receipt;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Serialize;

use crate::acting::Acting;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::AppState;

#[utoipa::path(
    get,
    path = "/practices/{id}/receipt",
    tag = "practices",
    operation_id = "receipt",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = app::records::Receipt, description = "The receipt's facts with the digests of what was sent"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/practices/{id}/receipt`.
pub async fn receipt(
    State(app): State<AppState>,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let id = crate::api::practices::parse_id(&id)?;
    Ok(Json(app::records::receipt(&app.core, &principal, id).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Export {
    note: String,
    #[serde(with = "time::serde::rfc3339")]
    exported_at: time::OffsetDateTime,
    holder: String,
    practices: Vec<app::records::ExportedPractice>,
}

#[utoipa::path(
    get,
    path = "/export",
    tag = "practices",
    operation_id = "export",
    params(
        ("practice" = Vec<String>, Query, description = "The practices to export (their ids), repeated; at most 200."),
        ("format" = Option<String>, Query, description = "`json` (the default) or `csv`: one row per filing, semicolon-separated, for a spreadsheet."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = Export, description = "A JSON file to keep, or with `format=csv` a CSV file (Content-Disposition: attachment)"),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /pratiche/esporta?pratica=ID&pratica=ID…` (and for business software `GET
/// /api/v1/export?practice=ID&practice=ID…`, the same handler): the chosen practices, with
/// their data, filings, protocol numbers, digests, signed answers and timeline, as a JSON file
/// to keep.
pub async fn export(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let param = |names: &[&str]| pairs.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.as_str());
    let mut ids: Vec<&str> = Vec::new();
    for id in pairs.iter().filter(|(k, _)| k == "pratica" || k == "practice").map(|(_, v)| v.as_str()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        // From the desk's lists: back to the list, where the error is shown beside the choices.
        if let Some(back) = param(&["ritorno"]).and_then(return_path) {
            let sep = if back.contains('?') { '&' } else { '?' };
            return Ok(Redirect::to(&format!("{back}{sep}esportazione=nessuna")).into_response());
        }
        return Err(ApiError::BadParameter(app.translations.message(lang, "export-none-chosen", &[])));
    }
    let csv = match param(&["formato", "format"]) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            let detail = app.translations.message(lang, "export-bad-format", &[("format", other.to_string())]);
            return Err(ApiError::BadParameter(detail));
        }
    };
    if ids.len() > app::records::EXPORT_MAX {
        let max = app::records::EXPORT_MAX.to_string();
        return Err(ApiError::BadParameter(app.translations.message(lang, "export-too-many", &[("max", max)])));
    }
    let ids = ids.into_iter().map(crate::api::practices::parse_id).collect::<Result<Vec<_>, _>>()?;
    let practices = app::records::export(&app.core, &principal, &ids).await?;
    let now = app.core.clock.now();
    if csv {
        let tr = crate::view::Tr::new(&app.translations, lang);
        let body = crate::api::csv::export(&app, &tr, lang, &practices);
        let filename = format!("sportello-pratiche-{}.csv", domain::italian_date(now));
        return Ok(attachment("text/csv; charset=utf-8", body.into_bytes(), &filename));
    }
    let export = Export {
        note: app.translations.message(lang, "export-note", &[]),
        exported_at: now,
        holder: principal.owner.to_string(),
        practices,
    };
    let body = serde_json::to_vec_pretty(&export).map_err(|_| ApiError::Internal)?;
    let filename = format!("sportello-pratiche-{}.json", domain::italian_date(now));
    Ok(attachment("application/json", body, &filename))
}

/// A file to keep.
fn attachment(content_type: &'static str, body: Vec<u8>, filename: &str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// Where the desk's export form came from, when it is one of the desk's own lists (never
/// another site, nor a path that could be read as one).
fn return_path(back: &str) -> Option<&str> {
    let local = back.starts_with("/ricerca") || back.starts_with("/pratiche");
    let plain = !back.contains("//") && !back.contains('\\') && back.chars().all(|c| c.is_ascii_graphic());
    (local && plain && back.len() <= 1024).then_some(back)
}
