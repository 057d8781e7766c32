//! Browser sessions ("sessione"): after logging in with the card, a browser holds a session
//! cookie, so that pages can keep state between requests and carry a CSRF token.
//!
//! - The id is 256 random bits, sent only as `__Host-sportello-session` (Secure, HttpOnly,
//!   SameSite=Strict, Path=/); the database keeps its SHA-256 only, so a copy of the database
//!   opens no session. Sessions are shared by every portal process on the database.
//! - Logging in always makes a new id (a cookie planted before login is worthless) and ends
//!   the session the browser held before.
//! - A session works only with the card it was opened with (certificate fingerprint), and ends
//!   after `idle` without requests or `absolute` after login, whichever comes first. The last
//!   request is written down at most every [`TOUCH_EVERY_MS`] (so `idle` is kept to within
//!   30 s), not at every page view. One card keeps at most [`storage::SESSIONS_PER_CARD`]
//!   sessions: opening one more ends its oldest (a client that drops its cookie cannot grow
//!   the table one session per request).
//! - Ending a session (logout) needs its CSRF token in `X-CSRF-Token`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use serde::Serialize;
use storage::{unix_millis, SessionRecord};

use crate::error::ApiError;
use crate::AppState;

pub const COOKIE: &str = "__Host-sportello-session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Sessions opened by the demo's card chooser carry this mark before the card's fingerprint:
/// they stand for a card the browser does not present, and cannot be used by a browser that
/// presents one.
pub const SESSION_MARK: &str = "demo:";

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub absolute: Duration,
}

impl SessionPolicy {
    /// (idle, absolute) in milliseconds.
    fn limits_ms(&self) -> (i64, i64) {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        (ms(self.idle), ms(self.absolute))
    }
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self { idle: Duration::from_secs(30 * 60), absolute: Duration::from_secs(8 * 3600) }
    }
}

fn hash(id: &str) -> String {
    crate::sha256_hex(id.as_bytes())
}

fn random_hex(app: &AppState) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    app.core.random.fill(&mut bytes).map_err(|_| ApiError::Internal)?;
    Ok(hex::encode(bytes))
}

/// Compares two secrets without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Whether the request carries the session's CSRF token.
pub(crate) fn token_matches(headers: &HeaderMap, expected: &str) -> bool {
    let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    token.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()))
}

/// The session id a request carries, if any.
fn cookie_id(headers: &HeaderMap) -> Option<String> {
    crate::cookies::get(headers, COOKIE)
}

pub(crate) fn set_cookie(value: &str, max_age: Duration) -> Option<HeaderValue> {
    crate::cookies::set(COOKIE, value, crate::cookies::Kind::Credential, max_age.as_secs())
}

/// What a page learns about its session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub tax_code: String,
    pub name: String,
    pub csrf_token: String,
    pub idle_timeout_secs: u64,
    pub absolute_timeout_secs: u64,
}

/// The session a request's cookie names, if it exists and is within both timeouts (an
/// expired one is deleted); with the current time in milliseconds.
async fn live_session(app: &AppState, headers: &HeaderMap) -> Result<(SessionRecord, i64), ApiError> {
    let id = cookie_id(headers).ok_or(ApiError::SessionExpired)?;
    let session = app.core.store.session(&hash(&id)).await?.ok_or(ApiError::SessionExpired)?;
    let now = unix_millis(app.core.clock.now());
    let (idle, absolute) = app.sessions.limits_ms();
    if now - session.last_seen_at > idle || now - session.created_at > absolute {
        app.core.store.delete_session(&session.id_hash).await?;
        tracing::info!(holder = %session.holder, "session expired");
        return Err(ApiError::SessionExpired);
    }
    Ok((session, now))
}

/// The valid session of a request: same card, within both timeouts. Records the activity.
pub async fn current(
    app: &AppState,
    headers: &HeaderMap,
    holder: &identity::Holder,
) -> Result<SessionRecord, ApiError> {
    let (session, now) = live_session(app, headers).await?;
    if session.fingerprint != holder.fingerprint || session.holder != holder.tax_code {
        tracing::warn!(holder = %holder.tax_code, "session presented with another card");
        return Err(ApiError::SessionExpired);
    }
    touch(app, &session, now).await?;
    Ok(session)
}

/// A session's activity is written down at most this often: a page view is a read, not a
/// durable write each time, and the idle timeout is measured to within this much.
pub const TOUCH_EVERY_MS: i64 = 30_000;

/// Records that `session` was used at `now`, unless that was recorded less than
/// [`TOUCH_EVERY_MS`] ago.
async fn touch(app: &AppState, session: &SessionRecord, now: i64) -> Result<(), ApiError> {
    if now - session.last_seen_at >= TOUCH_EVERY_MS {
        app.core.store.touch_session(&session.id_hash, now).await?;
    }
    Ok(())
}

/// Opens a new session for `holder` (ending the one the browser held before); returns the
/// cookie to set and the stored record.
pub async fn open(
    app: &AppState,
    holder: &identity::Holder,
    headers: &HeaderMap,
) -> Result<(HeaderValue, SessionRecord), ApiError> {
    // Whatever session the browser held before ends here: no fixation.
    if let Some(old) = cookie_id(headers) {
        app.core.store.delete_session(&hash(&old)).await?;
    }
    let id = random_hex(app)?;
    let now = unix_millis(app.core.clock.now());
    let record = SessionRecord {
        id_hash: hash(&id),
        holder: holder.tax_code.clone(),
        fingerprint: holder.fingerprint.clone(),
        csrf_token: random_hex(app)?,
        created_at: now,
        last_seen_at: now,
    };
    app.core.store.create_session(&record).await?;
    // Sweep expired sessions at each login.
    let (idle, absolute) = app.sessions.limits_ms();
    app.core.store.delete_expired_sessions(now.saturating_sub(idle), now.saturating_sub(absolute)).await?;
    tracing::info!(holder = %holder.tax_code, fingerprint = %holder.fingerprint, "login");
    app::audit::holder_act(&app.core, holder, "login", serde_json::json!({ "card": holder.fingerprint })).await;
    let cookie = set_cookie(&id, app.sessions.absolute).ok_or(ApiError::Internal)?;
    Ok((cookie, record))
}

/// The holder a demo card-chooser session stands for (no card presented), with the session,
/// if still valid. Records the activity.
pub async fn demo_session(app: &AppState, headers: &HeaderMap) -> Result<(identity::Holder, SessionRecord), ApiError> {
    if cookie_id(headers).is_none() {
        return Err(ApiError::Unauthenticated);
    }
    let (session, now) = live_session(app, headers).await?;
    if !session.fingerprint.starts_with(SESSION_MARK) {
        return Err(ApiError::Unauthenticated);
    }
    touch(app, &session, now).await?;
    let holder = identity::Holder {
        tax_code: session.holder.clone(),
        given_name: None,
        surname: None,
        fingerprint: session.fingerprint.clone(),
    };
    Ok((holder, session))
}

/// The holder a demo session stands for, for the API: a request that changes something must
/// carry the session's CSRF token in `X-CSRF-Token` (pages' forms carry it as a field).
pub async fn demo_holder(
    app: &AppState,
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Result<identity::Holder, ApiError> {
    let (holder, session) = demo_session(app, headers).await?;
    let changes = !matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS);
    if changes && !token_matches(headers, &session.csrf_token) {
        return Err(ApiError::CsrfToken);
    }
    Ok(holder)
}

/// Whether `token` (from a form) is the session's CSRF token.
pub fn form_token_matches(token: Option<&str>, session: &SessionRecord) -> bool {
    token.is_some_and(|t| constant_time_eq(t.as_bytes(), session.csrf_token.as_bytes()))
}
