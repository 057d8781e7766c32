//! Practices for business software: start a draft, read, save, submit, list, archive and
//! bring back, send one recipient again. Each handler parses the request, calls its use case
//! in [`app::practices`] and shapes the answer; it holds no rule of its own.
//!
//! - `GET|POST /api/v1/practices`, `GET|PUT /api/v1/practices/{id}`
//! - `POST /api/v1/practices/{id}/submit|archive|unarchive`
//! - `POST /api/v1/practices/{id}/deliveries/{institution}/resend`

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::practice::{Delivery, Practice, PracticeData, PracticeId, PracticeState};
use domain::Lang;
use serde::{Deserialize, Serialize};
use storage::PracticeQuery;

use crate::acting::Acting;
use crate::error::ApiError;
use crate::extract::{ApiJson, UserLang};
use crate::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemView {
    field: String,
    code: &'static str,
    pub message: String,
    /// The institution whose receivability rule refuses the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    institution: Option<String>,
}

impl ProblemView {
    pub fn field(&self) -> &str {
        &self.field
    }
}

/// What still stops a draft from being sent, said in `lang`.
pub fn draft_problems(app: &AppState, practice: &Practice, lang: Lang) -> Vec<ProblemView> {
    let service = app.core.catalog.service(&practice.service_id);
    app::practices::draft_problems(&app.core, practice)
        .into_iter()
        .map(|e| {
            let label = service.and_then(|s| s.field(&e.field)).map(|f| &f.spec.label);
            ProblemView {
                message: app.translations.reason(lang, label, &e.field, &e.reason),
                code: e.reason.code(),
                institution: match e.reason {
                    domain::validation::Reason::Receivability { institution, .. } => Some(institution),
                    _ => None,
                },
                field: e.field,
            }
        })
        .collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    institution: String,
    institution_name: String,
    filing: String,
    #[serde(flatten)]
    status: domain::delivery::DeliveryStatus,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: time::OffsetDateTime,
    /// When the institution last said something new (for `no_news`: since when it is silent).
    #[serde(with = "time::serde::rfc3339::option")]
    last_news_at: Option<time::OffsetDateTime>,
    /// Values the institution's answers carried (REA number, codice ditta, ...).
    values: std::collections::BTreeMap<String, String>,
    /// The institution's office competent for the practice, when it routes by territory.
    #[serde(skip_serializing_if = "Option::is_none")]
    office: Option<String>,
    /// For `waiting`: the recipient whose answer this filing waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    waits_for: Option<String>,
    payload: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PracticeView {
    #[serde(flatten)]
    practice: Practice,
    service_title: String,
    /// For drafts: what still stops the practice from being sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<ProblemView>>,
    /// For submitted practices: one delivery per recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    deliveries: Option<Vec<DeliveryView>>,
    /// For submitted practices: every event, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<storage::TimelineEntry>>,
}

pub fn practice_view(
    app: &AppState,
    practice: Practice,
    deliveries: Option<Vec<Delivery>>,
    lang: Lang,
) -> PracticeView {
    let service = app.core.catalog.service(&practice.service_id);
    let problems = (practice.state == PracticeState::Draft).then(|| draft_problems(app, &practice, lang));
    let deliveries = deliveries.map(|ds| {
        ds.into_iter()
            .map(|d| DeliveryView {
                institution_name: app
                    .core
                    .catalog
                    .institution(&d.institution)
                    .map(|i| i.name.get(lang).to_string())
                    .unwrap_or_else(|| d.institution.clone()),
                institution: d.institution,
                filing: d.filing_kind,
                status: d.status,
                attempts: d.attempts,
                updated_at: d.updated_at,
                last_news_at: d.last_news_at,
                values: d.values,
                office: d.office,
                waits_for: d.waits_for,
                payload: d.payload,
            })
            .collect()
    });
    PracticeView {
        service_title: service.map(|s| s.title.get(lang).to_string()).unwrap_or_else(|| practice.service_id.clone()),
        practice,
        problems,
        deliveries,
        timeline: None,
    }
}

/// A sent practice's view with its deliveries and timeline; a draft's with its problems.
pub(crate) fn followed_view(app: &AppState, followed: app::practices::Followed, lang: Lang) -> PracticeView {
    let sent = followed.practice.reference.is_some();
    let app::practices::Followed { practice, deliveries, timeline } = followed;
    let mut view = practice_view(app, practice, sent.then_some(deliveries), lang);
    view.timeline = sent.then_some(timeline);
    view
}

/// A practice id from a path; a malformed one names no practice.
pub(crate) fn parse_id(id: &str) -> Result<PracticeId, ApiError> {
    PracticeId::parse(id).ok_or(ApiError::NotFound)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPractice {
    service: String,
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    data: PracticeData,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftData {
    #[schema(value_type = std::collections::HashMap<String, String>)]
    data: PracticeData,
}

#[utoipa::path(
    post,
    path = "/practices",
    tag = "practices",
    operation_id = "createPractice",
    params(
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    request_body = NewPractice,
    responses(
        (status = 201, body = PracticeView, description = "The new draft", headers(("Location" = String, description = "The new practice's address"))),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 413, response = crate::openapi::ProblemAnswer),
        (status = 415, response = crate::openapi::ProblemAnswer),
        (status = 422, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/practices`: starts a draft for a service, with whatever data is ready.
pub async fn create_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    ApiJson(body): ApiJson<NewPractice>,
) -> Result<Response, ApiError> {
    let practice = app::practices::start_draft(&app.core, &principal, &body.service, body.data).await?;
    let location = format!("/api/v1/practices/{}", practice.id);
    let view = practice_view(&app, practice, None, lang);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/practices/{id}",
    tag = "practices",
    operation_id = "getPractice",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = PracticeView, description = "The practice; once sent, with one delivery per recipient and its timeline"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/practices/{id}`.
pub async fn get_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let followed = app::practices::follow(&app.core, &principal, parse_id(&id)?).await?;
    Ok(Json(followed_view(&app, followed, lang)))
}

#[utoipa::path(
    put,
    path = "/practices/{id}",
    tag = "practices",
    operation_id = "savePractice",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    request_body = DraftData,
    responses(
        (status = 200, body = PracticeView, description = "The draft as saved"),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 413, response = crate::openapi::ProblemAnswer),
        (status = 415, response = crate::openapi::ProblemAnswer),
        (status = 422, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `PUT /api/v1/practices/{id}`: replaces a draft's data.
pub async fn put_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DraftData>,
) -> Result<Json<PracticeView>, ApiError> {
    let updated = app::practices::save_draft(&app.core, &principal, parse_id(&id)?, &body.data).await?;
    Ok(Json(practice_view(&app, updated, None, lang)))
}

#[utoipa::path(
    post,
    path = "/practices/{id}/archive",
    tag = "practices",
    operation_id = "archivePractice",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = PracticeView, description = "The practice, archived"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/practices/{id}/archive`: puts a draft or a completed practice in the archive
/// (409 for one on its way).
pub async fn archive_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = app::practices::set_archived(&app.core, &principal, parse_id(&id)?, true).await?;
    Ok(Json(practice_view(&app, practice, None, lang)))
}

#[utoipa::path(
    post,
    path = "/practices/{id}/unarchive",
    tag = "practices",
    operation_id = "unarchivePractice",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = PracticeView, description = "The practice, back where it was"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/practices/{id}/unarchive`: brings an archived practice back to where it was.
pub async fn unarchive_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = app::practices::set_archived(&app.core, &principal, parse_id(&id)?, false).await?;
    Ok(Json(practice_view(&app, practice, None, lang)))
}

#[utoipa::path(
    post,
    path = "/practices/{id}/submit",
    tag = "practices",
    operation_id = "submitPractice",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = PracticeView, description = "The sent practice, with its reference number and one delivery per recipient"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 422, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/practices/{id}/submit`: validates everything, then assigns the reference
/// number and queues one filing per recipient.
pub async fn submit_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let (submitted, deliveries) = app::practices::submit(&app.core, &principal, parse_id(&id)?).await?;
    Ok(Json(practice_view(&app, submitted, Some(deliveries), lang)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    state: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PracticeList {
    practices: Vec<PracticeView>,
    limit: u32,
    offset: u32,
}

#[utoipa::path(
    get,
    path = "/practices",
    tag = "practices",
    operation_id = "listPractices",
    params(
        ListParams,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = PracticeList, description = "One page of the principal's practices"),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/practices?state=&limit=&offset=`: the holder's practices, newest change first.
pub async fn list_practices(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PracticeList>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadParameter(e.body_text()))?;
    let state = match params.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(PracticeState::parse(s).ok_or_else(|| {
            ApiError::BadParameter(format!(
                "state: `{s}` is not one of {}",
                PracticeState::ALL.map(PracticeState::as_str).join(", ")
            ))
        })?),
    };
    let number =
        |name: &str, v: Option<&str>, default: u32, max: u32| -> Result<u32, ApiError> {
            match v {
                None | Some("") => Ok(default),
                Some(v) => v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                    ApiError::BadParameter(format!("{name}: `{v}` is not a whole number from 0 to {max}"))
                }),
            }
        };
    let limit = number("limit", params.limit.as_deref(), 50, PracticeQuery::MAX_LIMIT)?.max(1);
    let offset = number("offset", params.offset.as_deref(), 0, 1_000_000)?;
    let practices = app::practices::list(&app.core, &principal, state, limit, offset).await?;
    let practices = practices.into_iter().map(|p| practice_view(&app, p, None, lang)).collect();
    Ok(Json(PracticeList { practices, limit, offset }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// New values for the fields the institution found at fault.
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    data: PracticeData,
}

#[utoipa::path(
    post,
    path = "/practices/{id}/deliveries/{institution}/resend",
    tag = "practices",
    operation_id = "resendDelivery",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        ("institution" = String, Path, description = "The recipient institution's id."),
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    request_body(content = Option<Correction>, description = "For a rejected filing: new values for the fields at fault. Empty for a failed one."),
    responses(
        (status = 200, body = PracticeView, description = "The practice, with the filing queued again"),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 415, response = crate::openapi::ProblemAnswer),
        (status = 422, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/practices/{id}/deliveries/{institution}/resend`: sends one recipient's filing
/// again, and no other. A failed delivery goes again unchanged; a rejected one goes again with
/// the corrections given for the fields at fault (body `{"data": {...}}`).
pub async fn resend_delivery(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path((id, institution)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PracticeView>, ApiError> {
    let id = parse_id(&id)?;
    let correction: Correction = if body.is_empty() {
        Correction::default()
    } else {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::WrongShape(e.to_string()),
            _ => ApiError::MalformedJson(e.to_string()),
        })?
    };
    app::practices::resend(&app.core, &principal, id, &institution, &correction.data).await?;
    let followed = app::practices::follow(&app.core, &principal, id).await?;
    Ok(Json(followed_view(&app, followed, lang)))
}
