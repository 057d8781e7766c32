//! A practice's events as a stream (server-sent events), for business software and for the
//! live practice page alike (`GET /api/v1/practices/{id}/events`, `GET /pratiche/{id}/eventi`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::delivery::DeliveryState;
use domain::practice::{PracticeId, PracticeState};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::acting::{Acting, Principal};
use crate::error::ApiError;
use crate::AppState;

/// What the live page follows: the practice's state and each recipient's.
#[derive(Debug, PartialEq, Serialize)]
struct LiveState {
    state: PracticeState,
    recipients: Vec<(String, DeliveryState, Option<String>, u32)>,
}

async fn live_state(app: &AppState, principal: &Principal, id: PracticeId) -> Option<LiveState> {
    let (practice, deliveries) = app::practices::with_deliveries(&app.core, principal, id).await.ok()?;
    Some(LiveState {
        state: practice.state,
        recipients: deliveries
            .into_iter()
            .map(|d| (d.institution, d.status.state, d.status.protocol_number, d.status.revision))
            .collect(),
    })
}

/// How long a stream waits for an announced change before it looks at the store anyway (a
/// delegation revoked meanwhile ends the stream; a notice lost is made good), and how long one
/// stream lasts (the browser's EventSource reconnects by itself).
const LIVE_FALLBACK: Duration = Duration::from_secs(10);
const LIVE_FOR: Duration = Duration::from_secs(30 * 60);

/// Waits until practice `id` is announced as changed (or the feed lagged, or `LIVE_FALLBACK`
/// passed): time to look at the store again.
async fn until_changed(changes: &mut broadcast::Receiver<PracticeId>, id: PracticeId) {
    let wait = async {
        loop {
            match changes.recv().await {
                Ok(changed) if changed != id => continue,
                // This practice, a lag (it may have been among those missed), or a closed feed.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    let _ = tokio::time::timeout(LIVE_FALLBACK, wait).await;
}

#[utoipa::path(
    get,
    path = "/practices/{id}/events",
    tag = "practices",
    operation_id = "practiceEvents",
    params(
        ("id" = String, Path, description = "The practice's id; a malformed id answers 404."),
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "Server-sent events: an `update` event now and whenever the practice's or a recipient's state changes; its data is the JSON of the states. The stream ends after 30 minutes or when the principal may no longer follow the practice."),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /pratiche/{id}/eventi`: an `update` event now and whenever a recipient's state changes.
pub async fn events(
    State(app): State<AppState>,
    Acting(principal): Acting,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let id = PracticeId::parse(&id).ok_or(ApiError::NotFound)?;
    principal.practice(&app.core, id).await?;
    let selector = crate::acting::selector(&headers);
    let holder = principal.actor.clone();
    let changes = app.core.store.changes();
    let until = tokio::time::Instant::now() + LIVE_FOR;
    let stream = futures_util::stream::unfold((app, None::<LiveState>, changes), move |(app, last, mut changes)| {
        let (holder, selector) = (holder.clone(), selector.clone());
        async move {
            loop {
                if last.is_some() {
                    until_changed(&mut changes, id).await;
                }
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                // Who may follow is checked at every look: a delegation revoked meanwhile
                // ends the stream.
                let principal = Principal::resolve(&app.core, holder.clone(), selector.as_ref()).await.ok()?;
                let now = live_state(&app, &principal, id).await?;
                if last.as_ref() != Some(&now) {
                    let data = serde_json::to_string(&now).unwrap_or_default();
                    let event: Result<Event, Infallible> = Ok(Event::default().event("update").data(data));
                    return Some((event, (app, Some(now), changes)));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
