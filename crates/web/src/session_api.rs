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
