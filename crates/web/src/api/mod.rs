//! The public JSON API, `/api/v1` (its OpenAPI document generated from the code, served at
//! `/api/v1/openapi.json`), one module per resource. Handlers parse input into domain types at
//! the edge, call the use case in [`app`] and shape the answer; they hold no rules of their
//! own, and every refusal is an [`crate::error::ApiError`].
//!
//! - [`services`]: the catalog and the holder's authorisations per service;
//! - [`practices`]: drafts, submission, resending, archive, lists;
//! - [`delegations`]: sub-delegations and the acts done on one's behalf;
//! - search, receipt, export and the events stream share their handlers with the pages
//!   ([`crate::search`], [`crate::receipt`], [`crate::follow`]).

pub mod delegations;
pub mod practices;
pub mod services;

use axum::Json;
use serde::Serialize;

use crate::extract::Authenticated;

pub use practices::{draft_problems, practice_view, PracticeView, ProblemView};
pub use services::{authorisations_for, ServiceAuthorisations, ServiceReadiness};

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Every route of the API, each registered with its description: a route cannot be served
/// without being in the document, nor documented without being served.
pub fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(services::list_services))
        .routes(routes!(services::get_service))
        .routes(routes!(services::service_authorisations))
        .routes(routes!(practices::list_practices, practices::create_practice))
        .routes(routes!(practices::get_practice, practices::put_practice))
        .routes(routes!(practices::submit_practice))
        .routes(routes!(practices::archive_practice))
        .routes(routes!(practices::unarchive_practice))
        .routes(routes!(practices::resend_delivery))
        .routes(routes!(crate::receipt::api))
        .routes(routes!(crate::follow::events))
        .routes(routes!(crate::search::api_search))
        .routes(routes!(crate::follow::export))
        .routes(routes!(delegations::list, delegations::grant))
        .routes(routes!(delegations::revoke))
        .routes(routes!(delegations::renounce))
        .routes(routes!(delegations::activity));
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .routes(routes!(crate::session_api::login, crate::session_api::show, crate::session_api::logout))
        .routes(routes!(crate::institutions::event))
        .routes(routes!(crate::institutions::filing_event))
}

/// The API's OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    tax_code: String,
    name: String,
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "session",
    operation_id = "me",
    responses(
        (status = 200, body = Me, description = "The card holder"),
        (status = 401, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/me`: who the card says you are.
pub async fn me(Authenticated(holder): Authenticated) -> Json<Me> {
    Json(Me { name: holder.display_name(), tax_code: holder.tax_code.to_string() })
}
