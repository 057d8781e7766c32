//! Who a request acts for: oneself or, under a sub-delegation, the grantor ("per conto di").
//!
//! A [`Principal`] is the card holder (the `actor`) and the person whose practices are touched
//! and who answers for them (the `owner`, the grantor under a delegation). The delegation is
//! chosen by a [`Selector`] (the browser's cookie, the API's `X-Sportello-Delegation` header);
//! it is only a selector: on **every** request the delegation is read from the store again and
//! must name the card holder as delegate and hold now, so a revocation or an expiry refuses the
//! very next request, even in an open session.
//!
//! Under a delegation, the practices within reach are the grantor's for the delegated services
//! and businesses (and the collaborator's own drafts that name no business yet); every act is
//! checked against the delegation ([`domain::delegation::Delegation::allows`]); anything else
//! answers "not found" or "out of scope" and changes nothing.

use std::collections::BTreeSet;

use domain::delegation::{Delegation, DelegationId, OutOfScope};
use domain::identifiers::CodiceFiscale;
use domain::practice::{Practice, PracticeId};
use identity::Holder;

use crate::{AppError, Core};

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
    /// Asked for explicitly (the API's header, a page's button): naming no delegation of the
    /// holder is an error.
    Explicit(String),
    /// Remembered by the browser (a cookie): naming no delegation of the holder is ignored.
    Remembered(String),
}

impl Selector {
    /// The delegation id it names, unchecked.
    pub fn id(&self) -> &str {
        match self {
            Self::Explicit(id) | Self::Remembered(id) => id,
        }
    }
}

/// Writes "delegation expired" to the audit trail the first time anyone notices that a
/// delegation has run out (expiry needs no act, so it is recorded when first seen).
pub async fn observe_expiry(core: &Core, d: &Delegation) {
    if d.standing(core.clock.now()) != domain::delegation::Standing::Expired {
        return;
    }
    match core.store.note_expiry(d.id).await {
        Ok(true) => {
            let detail = serde_json::json!({
                "delegation": d.id.to_string(),
                "delegate": d.delegate.to_string(),
                "valid_until": d.valid_until.unix_timestamp(),
            });
            crate::audit::record(core, "system", d.grantor.as_str(), "delegation_expired", detail).await;
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
    pub async fn resolve(core: &Core, holder: Holder, selector: Option<&Selector>) -> Result<Self, AppError> {
        let Some(selector) = selector.filter(|s| !s.id().is_empty()) else { return Ok(Self::own(holder)) };
        let lenient = matches!(selector, Selector::Remembered(_));
        let found = match DelegationId::parse(selector.id()) {
            Some(id) => match core.store.delegation(id).await {
                Ok(d) => Some(d).filter(|d| d.delegate == holder.tax_code),
                Err(storage::StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let delegation = match found {
            Some(d) => d,
            None if lenient => return Ok(Self::own(holder)),
            None => return Err(AppError::NotFound),
        };
        let id = delegation.id;
        let standing = delegation.standing(core.clock.now());
        observe_expiry(core, &delegation).await;
        if standing != domain::delegation::Standing::Valid {
            tracing::info!(delegation = %id, holder = %holder.tax_code, ?standing, "acting under a delegation refused");
            crate::audit::record(
                core,
                holder.tax_code.as_str(),
                delegation.grantor.as_str(),
                "refused_out_of_scope",
                serde_json::json!({ "delegation": id.to_string(), "standing": standing.as_str() }),
            )
            .await;
            return Err(AppError::OutOfScope(OutOfScope::NotValid(standing)));
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
    pub async fn practice(&self, core: &Core, id: PracticeId) -> Result<Practice, AppError> {
        let practice = core.store.practice(&self.owner, id).await?;
        if self.sees(&practice) {
            Ok(practice)
        } else {
            Err(AppError::NotFound)
        }
    }

    /// Refuses an act for `service` and `business` outside the delegation (or before an
    /// institution accepted it), recording the refusal.
    pub async fn check(&self, core: &Core, service: &str, business: Option<&str>) -> Result<(), AppError> {
        let Some(d) = &self.delegation else { return Ok(()) };
        let trusted = |institution: &str| core.delegation_policy.trusted.contains(institution);
        match d.allows(core.clock.now(), &core.catalog, service, business, &trusted) {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.audit(
                    core,
                    "refused_out_of_scope",
                    serde_json::json!({ "delegation": d.id.to_string(), "service": service, "business": business, "reason": reason.to_string() }),
                )
                .await;
                Err(AppError::OutOfScope(reason))
            }
        }
    }

    /// Refuses an act on `practice` outside the delegation (see [`Principal::check`]).
    pub async fn check_practice(&self, core: &Core, practice: &Practice) -> Result<(), AppError> {
        self.check(core, &practice.service_id, practice.data.get("business.tax_code").map(String::as_str)).await
    }

    /// Records an act: the actor acted, the owner answers for it.
    pub async fn audit(&self, core: &Core, action: &str, mut detail: serde_json::Value) {
        if let (Some(d), serde_json::Value::Object(map)) = (&self.delegation, &mut detail) {
            map.insert("delegation".into(), serde_json::Value::String(d.id.to_string()));
        }
        crate::audit::record(core, self.actor.tax_code.as_str(), self.owner.as_str(), action, detail).await;
    }
}
