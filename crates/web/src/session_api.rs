//! The session routes: `POST /session` (log in with the card), `GET /session`, `DELETE
//! /session` (log out). The rules are in [`crate::sessions`].

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::sessions::{current, open, set_cookie, token_matches, SessionView};
use crate::AppState;

#[utoipa::path(
    post,
    path = "/session",
    tag = "session",
    operation_id = "login",
    responses(
        (status = 201, body = crate::sessions::SessionView, description = "Logged in: the cookie __Host-sportello-session is set (Secure, HttpOnly, SameSite=Strict)"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `POST /session`: logs in with the card presented, always with a new session id.
pub async fn login(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (cookie, record) = open(&app, &holder, &headers).await?;
    let view = SessionView {
        tax_code: holder.tax_code.to_string(),
        name: holder.display_name(),
        csrf_token: record.csrf_token,
        idle_timeout_secs: app.sessions.idle.as_secs(),
        absolute_timeout_secs: app.sessions.absolute.as_secs(),
    };
    let mut response = (axum::http::StatusCode::CREATED, Json(view)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/session",
    tag = "session",
    operation_id = "currentSession",
    responses(
        (status = 200, body = crate::sessions::SessionView, description = "The session, still valid"),
        (status = 401, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /session`: the current session, if still valid.
pub async fn show(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    let session = current(&app, &headers, &holder).await?;
    Ok(Json(SessionView {
        tax_code: holder.tax_code.to_string(),
        name: holder.display_name(),
        csrf_token: session.csrf_token,
        idle_timeout_secs: app.sessions.idle.as_secs(),
        absolute_timeout_secs: app.sessions.absolute.as_secs(),
    }))
}

#[utoipa::path(
    delete,
    path = "/session",
    tag = "session",
    operation_id = "logout",
    params(
        ("X-CSRF-Token" = String, Header, description = "The session's CSRF token."),
    ),
    responses(
        (status = 204, description = "Logged out; the cookie is cleared"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `DELETE /session`: logs out; needs the session's CSRF token.
pub async fn logout(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = current(&app, &headers, &holder).await?;
    if !token_matches(&headers, &session.csrf_token) {
        return Err(ApiError::CsrfToken);
    }
    app.core.store.delete_session(&session.id_hash).await?;
    tracing::info!(holder = %holder.tax_code, "logout");
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = set_cookie("", Duration::ZERO) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
