//! Admission: a bound on the requests the portal works on at once.
//!
//! Each request takes a permit before it reaches a handler and gives it back when the handler
//! has answered (a live event stream gives it back once its headers are sent: streams are
//! bounded elsewhere). With every permit taken the request is not queued: it is answered at
//! once `503` with `Retry-After` ([`ApiError::Overloaded`], problem+json or the error page), so
//! neither memory nor waiting time grows with the load. Waits further in (the database's
//! writer, the pool) are bounded by their own timeouts and answered `503` the same way.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// How many requests the portal works on at once by default.
pub const DEFAULT_IN_FLIGHT: usize = 256;

/// The permits of one portal process.
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(DEFAULT_IN_FLIGHT)
    }
}

impl Admission {
    /// At most `limit` requests at once (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self { permits: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Requests being worked on now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

/// The middleware: a permit, or 503 at once.
pub async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    let Ok(_permit) = admission.permits.clone().try_acquire_owned() else {
        tracing::warn!(limit = admission.limit, path = %request.uri().path(), "overloaded: request refused");
        return ApiError::Overloaded.into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn past_the_limit_a_request_is_answered_503_at_once_and_served_again_after() {
        let release = Arc::new(tokio::sync::Notify::new());
        let admission = Admission::new(2);
        let held = release.clone();
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let held = held.clone();
                    async move {
                        held.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .layer(axum::middleware::from_fn_with_state(admission.clone(), admit));
        let slow = || app.clone().oneshot(Request::get("/slow").body(Body::empty()).expect("request"));
        let (a, b) = (tokio::spawn(slow()), tokio::spawn(slow()));
        while admission.in_flight() < 2 {
            tokio::task::yield_now().await;
        }
        let refused = app.clone().oneshot(Request::get("/fast").body(Body::empty()).expect("request")).await;
        let refused = refused.expect("answer");
        assert_eq!(refused.status(), 503);
        let error = refused.extensions().get::<Arc<ApiError>>().map(|e| e.as_ref().clone());
        assert!(matches!(error, Some(ApiError::Overloaded)), "rendered (with Retry-After) by the problems' layer");
        release.notify_waiters();
        for held in [a, b] {
            assert_eq!(held.await.expect("task").expect("answer").status(), 200);
        }
        assert_eq!(admission.in_flight(), 0, "every permit given back");
        let served = app.oneshot(Request::get("/fast").body(Body::empty()).expect("request")).await;
        assert_eq!(served.expect("answer").status(), 200);
    }
}
