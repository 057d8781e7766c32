//! Acting for oneself or, under a sub-delegation, for the grantor ("per conto di").
//!
//! A [`Principal`] is who a request acts for: the card holder (the `actor`) and the person
//! whose practices are touched and who answers for them (the `owner`, the grantor under a
//! delegation). The delegation is chosen by the browser's `__Host-sportello-delega` cookie (set
//! on the delegations page) or, for API clients, the `X-Sportello-Delegation` header; either is
//! only a selector: on **every** request the delegation is read from the store again and must
//! name the card holder as delegate and hold now, so a revocation or an expiry refuses the very
//! next request, even in an open session.
//!
//! Under a delegation, the practices within reach are the grantor's for the delegated services
//! and businesses (and the collaborator's own drafts that name no business yet); every act is
//! checked against the delegation ([`domain::delegation::Delegation::allows`]); anything else
//! answers "not found" or "out of scope" and changes nothing.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use domain::delegation::{Delegation, DelegationId, OutOfScope};
use domain::identifiers::CodiceFiscale;
use domain::practice::{Practice, PracticeId};
use identity::Holder;

use crate::error::ApiError;
use crate::AppState;

pub use crate::cookies::ACTING_COOKIE;
pub const ACTING_HEADER: &str = "x-sportello-delegation";

/// Sub-delegation settings.
#[derive(Debug, Clone)]
pub struct DelegationPolicy {
    /// Longest validity of a grant, in days.
    pub max_days: i64,
    /// Institutions that let collaborators act on the portal's own record, before they confirm.
    pub trusted: BTreeSet<String>,
}

impl Default for DelegationPolicy {
    fn default() -> Self {
        Self { max_days: 365, trusted: BTreeSet::new() }
    }
}

/// The delegation a request asks to act under, and how it asked (see [`Principal::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Asked for explicitly (the API header): naming no delegation of the holder is an error.
    Explicit(String),
    /// Left in the browser (the cookie): naming no delegation of the holder is ignored.
    Cookie(String),
}

impl Selector {
    /// The API header first, then the browser's cookie.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        if let Some(v) = headers.get(ACTING_HEADER).and_then(|v| v.to_str().ok()) {
            return Some(Self::Explicit(v.trim().to_string()));
        }
        crate::cookies::get(headers, ACTING_COOKIE).filter(|v| !v.is_empty()).map(Self::Cookie)
    }

    /// The delegation id it names, unchecked.
    pub fn id(&self) -> &str {
        match self {
            Self::Explicit(id) | Self::Cookie(id) => id,
        }
    }
}

/// Writes "delegation expired" to the audit trail the first time anyone notices that a
/// delegation has run out (expiry needs no act, so it is recorded when first seen).
pub async fn observe_expiry(app: &AppState, d: &Delegation) {
    if d.standing(app.clock.now()) != domain::delegation::Standing::Expired {
        return;
    }
    match app.store.note_expiry(d.id).await {
        Ok(true) => {
            let detail = serde_json::json!({
                "delegation": d.id.to_string(),
                "delegate": d.delegate.to_string(),
                "valid_until": d.valid_until.unix_timestamp(),
            });
            crate::audit::record(app, "system", d.grantor.as_str(), "delegation_expired", detail).await;
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "could not note a delegation's expiry"),
    }
}

/// Who a request acts for.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The card holder.
    pub actor: Holder,
    /// Whose practices: the actor's own, or the grantor's.
    pub owner: CodiceFiscale,
    pub delegation: Option<Delegation>,
}

impl Principal {
    /// Acting for oneself.
    pub fn own(holder: Holder) -> Self {
        Self { owner: holder.tax_code.clone(), actor: holder, delegation: None }
    }

    /// Resolves the selector: the delegation must exist, name the holder as delegate and hold
    /// now. Asked for explicitly (API header), a delegation that is not the holder's is "not
    /// found". Left in the browser (cookie) by someone else's card or tampered with, it is
    /// ignored: the holder acts for himself or herself. Ended, it is refused either way.
    pub async fn resolve(app: &AppState, holder: Holder, selector: Option<&Selector>) -> Result<Self, ApiError> {
        let Some(selector) = selector.filter(|s| !s.id().is_empty()) else { return Ok(Self::own(holder)) };
        let lenient = matches!(selector, Selector::Cookie(_));
        let found = match DelegationId::parse(selector.id()) {
            Some(id) => match app.store.delegation(id).await {
                Ok(d) => Some(d).filter(|d| d.delegate == holder.tax_code),
                Err(storage::StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let delegation = match found {
            Some(d) => d,
            None if lenient => return Ok(Self::own(holder)),
            None => return Err(ApiError::NotFound),
        };
        let id = delegation.id;
        let standing = delegation.standing(app.clock.now());
        observe_expiry(app, &delegation).await;
        if standing != domain::delegation::Standing::Valid {
            tracing::info!(delegation = %id, holder = %holder.tax_code, ?standing, "acting under a delegation refused");
            crate::audit::record(
                app,
                holder.tax_code.as_str(),
                delegation.grantor.as_str(),
                "refused_out_of_scope",
                serde_json::json!({ "delegation": id.to_string(), "standing": standing.as_str() }),
            )
            .await;
            return Err(ApiError::OutOfScope(OutOfScope::NotValid(standing)));
        }
        Ok(Self { owner: delegation.grantor.clone(), actor: holder, delegation: Some(delegation) })
    }

    /// For store queries: what a collaborator may see.
    pub fn scope_filter(&self) -> Option<storage::ScopeFilter> {
        self.delegation.as_ref().map(|d| storage::ScopeFilter {
            services: d.scope.services.iter().cloned().collect(),
            businesses: d.scope.businesses.iter().cloned().collect(),
            actor: self.actor.tax_code.to_string(),
        })
    }

    /// Whether a practice of the owner is within reach.
    pub fn sees(&self, practice: &Practice) -> bool {
        let Some(d) = &self.delegation else { return true };
        if !d.scope.services.contains(&practice.service_id) {
            return false;
        }
        match practice.data.get("business.tax_code").map(|b| b.trim().to_uppercase()).filter(|b| !b.is_empty()) {
            Some(business) => d.scope.businesses.contains(&business),
            None => practice.actor == self.actor.tax_code,
        }
    }

    /// The owner's practice, if within reach; otherwise "not found" (nothing leaks).
    pub async fn practice(&self, app: &AppState, id: PracticeId) -> Result<Practice, ApiError> {
        let practice = app.store.practice(&self.owner, id).await?;
        if self.sees(&practice) {
            Ok(practice)
        } else {
            Err(ApiError::NotFound)
        }
    }

    /// Refuses an act for `service` and `business` outside the delegation (or before an
    /// institution accepted it), recording the refusal.
    pub async fn check(&self, app: &AppState, service: &str, business: Option<&str>) -> Result<(), ApiError> {
        let Some(d) = &self.delegation else { return Ok(()) };
        let trusted = |institution: &str| app.delegation_policy.trusted.contains(institution);
        match d.allows(app.clock.now(), &app.catalog, service, business, &trusted) {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.audit(
                    app,
                    "refused_out_of_scope",
                    serde_json::json!({ "delegation": d.id.to_string(), "service": service, "business": business, "reason": reason.to_string() }),
                )
                .await;
                Err(ApiError::OutOfScope(reason))
            }
        }
    }

    /// Records an act: the actor acted, the owner answers for it.
    pub async fn audit(&self, app: &AppState, action: &str, mut detail: serde_json::Value) {
        if let (Some(d), serde_json::Value::Object(map)) = (&self.delegation, &mut detail) {
            map.insert("delegation".into(), serde_json::Value::String(d.id.to_string()));
        }
        crate::audit::record(app, self.actor.tax_code.as_str(), self.owner.as_str(), action, detail).await;
    }
}

/// Who an API request acts for: the card holder, or under the sub-delegation named by
/// `X-Sportello-Delegation` the grantor (see [`crate::acting`]).
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
        let selector = Selector::from_headers(&parts.headers);
        Principal::resolve(app, holder, selector.as_ref()).await.map(Self)
    }
}
