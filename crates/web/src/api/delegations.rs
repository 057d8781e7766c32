//! Sub-delegations for business software, through the desk's own use cases
//! ([`app::delegations`]): grant, the delegations granted and received with each institution's
//! answer, ending one (revoke as grantor, renounce as collaborator), and the acts done on one's
//! behalf. Acting on behalf goes with the `X-Sportello-Delegation` header on any other route.
//!
//! - `GET /api/v1/delegations`, `POST /api/v1/delegations` (grant)
//! - `POST /api/v1/delegations/{id}/revoke`, `POST /api/v1/delegations/{id}/renounce`
//! - `GET /api/v1/activity`: the acts done by anyone the card holder answers for (the page
//!   `/deleghe/attivita`), newest first, at most 200

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::delegation::{Delegation, GrantRequest, Scope, Standing};
use serde::{Deserialize, Serialize};

use crate::acting::Acting;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated};
use crate::AppState;

/// A delegation as the API shows it: the domain's record, where it stands now and, per
/// institution, its answer (`pending`, `active`, `refused`, `revoking`, `revoked`, `expired`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DelegationView {
    #[serde(flatten)]
    pub delegation: Delegation,
    pub standing: Standing,
    pub states: std::collections::BTreeMap<String, &'static str>,
}

fn view(app: &AppState, delegation: Delegation) -> DelegationView {
    let now = app.core.clock.now();
    let states = delegation.scope.institutions.iter().map(|i| (i.clone(), delegation.state_at(i, now))).collect();
    DelegationView { standing: delegation.standing(now), states, delegation }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delegations {
    pub granted: Vec<DelegationView>,
    pub received: Vec<DelegationView>,
}

#[utoipa::path(
    get,
    path = "/delegations",
    tag = "delegations",
    operation_id = "listDelegations",
    responses(
        (status = 200, body = Delegations, description = "The delegations granted and received, each with its institutions' answers"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/delegations`: what the card holder granted and received.
pub async fn list(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
) -> Result<Json<Delegations>, ApiError> {
    let (granted, received) = app::delegations::granted_and_received(&app.core, &holder).await?;
    Ok(Json(Delegations {
        granted: granted.into_iter().map(|d| view(&app, d)).collect(),
        received: received.into_iter().map(|d| view(&app, d)).collect(),
    }))
}

/// What `POST /api/v1/delegations` takes: the collaborator, what the delegation covers, and
/// the first and last day it holds (`YYYY-MM-DD`, Italian days).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDelegation {
    delegate: String,
    /// The collaborator's name, shown beside the codice fiscale (optional).
    #[serde(default)]
    delegate_name: String,
    institutions: BTreeSet<String>,
    businesses: BTreeSet<String>,
    services: BTreeSet<String>,
    valid_from: String,
    valid_until: String,
    #[serde(default)]
    note: String,
}

fn parse_day(field: &str, value: &str) -> Result<time::Date, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value.trim(), &format)
        .map_err(|_| ApiError::BadParameter(format!("{field}: `{value}` is not a date as YYYY-MM-DD")))
}

#[utoipa::path(
    post,
    path = "/delegations",
    tag = "delegations",
    operation_id = "grantDelegation",
    params(
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    request_body = NewDelegation,
    responses(
        (status = 201, body = DelegationView, description = "The delegation granted; each institution is told by the worker", headers(("Location" = String, description = "The delegation's address"))),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 415, response = crate::openapi::ProblemAnswer),
        (status = 422, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/delegations`: the card holder grants a sub-delegation on his or her own
/// account (201 with its location). Every reason a grant does not hold is listed by field.
pub async fn grant(
    State(app): State<AppState>,
    Acting(principal): Acting,
    ApiJson(body): ApiJson<NewDelegation>,
) -> Result<Response, ApiError> {
    let canonical = |set: BTreeSet<String>| set.into_iter().map(|b| b.trim().to_uppercase()).collect();
    let request = GrantRequest {
        delegate: body.delegate.trim().to_uppercase(),
        delegate_name: body.delegate_name,
        scope: Scope {
            institutions: body.institutions,
            businesses: canonical(body.businesses),
            services: body.services,
        },
        valid_from: parse_day("valid_from", &body.valid_from)?,
        valid_to: parse_day("valid_until", &body.valid_until)?,
        note: body.note.trim().to_string(),
    };
    let granted = app::delegations::grant(&app.core, &principal, request).await?;
    let location = format!("/api/v1/delegations/{}", granted.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view(&app, granted))).into_response())
}

#[utoipa::path(
    post,
    path = "/delegations/{id}/revoke",
    tag = "delegations",
    operation_id = "revokeDelegation",
    params(
        ("id" = String, Path, description = "The delegation's id; a malformed id answers 404."),
    ),
    responses(
        (status = 200, body = DelegationView, description = "The delegation, revoked"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/delegations/{id}/revoke`: the grantor ends it now.
pub async fn revoke(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DelegationView>, ApiError> {
    Ok(Json(view(&app, app::delegations::revoke(&app.core, &holder, &id).await?)))
}

#[utoipa::path(
    post,
    path = "/delegations/{id}/renounce",
    tag = "delegations",
    operation_id = "renounceDelegation",
    params(
        ("id" = String, Path, description = "The delegation's id; a malformed id answers 404."),
    ),
    responses(
        (status = 200, body = DelegationView, description = "The delegation, renounced"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 409, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /api/v1/delegations/{id}/renounce`: the collaborator gives it up.
pub async fn renounce(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DelegationView>, ApiError> {
    Ok(Json(view(&app, app::delegations::renounce(&app.core, &holder, &id).await?)))
}

/// How many acts `GET /api/v1/activity` and the page show.
pub const ACTIVITY_LIMIT: u32 = 200;

#[utoipa::path(
    get,
    path = "/activity",
    tag = "delegations",
    operation_id = "activity",
    responses(
        (status = 200, body = Vec<app::delegations::Act>, description = "The latest 200 acts, newest first"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/activity`: the latest 200 acts the card holder answers for.
pub async fn activity(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
) -> Result<Json<Vec<app::delegations::Act>>, ApiError> {
    Ok(Json(app::delegations::activity(&app.core, &holder, ACTIVITY_LIMIT).await?))
}
