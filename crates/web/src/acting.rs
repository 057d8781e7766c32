//! Acting for oneself or, under a sub-delegation, for the grantor ("per conto di"): the rules
//! are the application layer's ([`app::principal`]); this module reads the selector a request
//! carries (the `X-Sportello-Delegation` header of business software, or the browser's
//! `__Host-sportello-delega` cookie set on the delegations page) and resolves it on every
//! request.

use axum::http::HeaderMap;

pub use crate::cookies::ACTING_COOKIE;
pub use app::principal::{observe_expiry, DelegationPolicy, Principal, Selector};

use crate::error::ApiError;
use crate::AppState;

pub const ACTING_HEADER: &str = "x-sportello-delegation";

/// The delegation a request asks to act under: the API header first, then the browser's
/// cookie.
pub fn selector(headers: &HeaderMap) -> Option<Selector> {
    if let Some(v) = headers.get(ACTING_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(Selector::Explicit(v.trim().to_string()));
    }
    crate::cookies::get(headers, ACTING_COOKIE).filter(|v| !v.is_empty()).map(Selector::Remembered)
}

/// Who an API request acts for: the card holder, or under the sub-delegation named by
/// `X-Sportello-Delegation` (or the browser's cookie) the grantor.
#[derive(Debug, Clone)]
pub struct Acting(pub Principal);

impl axum::extract::FromRequestParts<AppState> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let crate::extract::Authenticated(holder) =
            <crate::extract::Authenticated as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                parts, app,
            )
            .await?;
        let selector = selector(&parts.headers);
        Ok(Self(Principal::resolve(&app.core, holder, selector.as_ref()).await?))
    }
}
