//! The public JSON API, `/api/v1` (its OpenAPI document generated from the code, served at
//! `/api/v1/openapi.json`), one module per resource. Handlers parse input into domain types at
//! the edge, call the use case in [`app`] and shape the answer; they hold no rules of their
//! own, and every refusal is an [`crate::error::ApiError`].
//!
//! - [`services`]: the catalog and the holder's authorisations per service;
//! - [`practices`]: drafts, submission, resending, archive, lists;
//! - [`delegations`]: sub-delegations and the acts done on one's behalf;
//! - [`search`]: the desk's search (and the query the search page reads too);
//! - [`records`]: the receipt and the export (the desk's export link uses it as well);
//! - [`events`]: a practice's events as a stream (the live practice page follows it too).

pub mod csv;
pub mod delegations;
pub mod events;
pub mod practices;
pub mod records;
pub mod search;
pub mod services;

use axum::Json;
use serde::Serialize;

use crate::extract::Authenticated;

pub use practices::{draft_problems, practice_view, PracticeView, ProblemView};
pub use services::{authorisations_for, ServiceAuthorisations, ServiceReadiness};

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
