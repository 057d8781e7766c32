//! Sub-delegations for business software: the delegations granted and received, with each
//! institution's answer, and ending one (revoke as grantor, renounce as collaborator). The
//! rules are the desk's own ([`crate::delegations`]); acting on behalf goes with the
//! `X-Sportello-Delegation` header on any other route.
//!
//! - `GET /api/v1/delegations`
//! - `POST /api/v1/delegations/{id}/revoke`, `POST /api/v1/delegations/{id}/renounce`
//! - `GET /api/v1/activity`: the acts done by anyone the card holder answers for (the page
//!   `/deleghe/attivita`), newest first, at most 200

use axum::extract::{Path, State};
use axum::Json;
use domain::delegation::{Delegation, Standing};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::AppState;

/// A delegation as the API shows it: the domain's record, where it stands now and, per
/// institution, its answer (`pending`, `active`, `refused`, `revoking`, `revoked`, `expired`).
#[derive(Debug, Serialize)]
pub struct DelegationView {
    #[serde(flatten)]
    pub delegation: Delegation,
    pub standing: Standing,
    pub states: std::collections::BTreeMap<String, &'static str>,
}

fn view(app: &AppState, delegation: Delegation) -> DelegationView {
    let now = app.clock.now();
    let states = delegation.scope.institutions.iter().map(|i| (i.clone(), delegation.state_at(i, now))).collect();
    DelegationView { standing: delegation.standing(now), states, delegation }
}

#[derive(Debug, Serialize)]
pub struct Delegations {
    pub granted: Vec<DelegationView>,
    pub received: Vec<DelegationView>,
}

/// `GET /api/v1/delegations`: what the card holder granted and received.
pub async fn list(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
) -> Result<Json<Delegations>, ApiError> {
    let granted = app.store.delegations_granted(&holder.tax_code).await?;
    let received = app.store.delegations_received(&holder.tax_code).await?;
    for d in granted.iter().chain(received.iter()) {
        crate::acting::observe_expiry(&app, d).await;
    }
    Ok(Json(Delegations {
        granted: granted.into_iter().map(|d| view(&app, d)).collect(),
        received: received.into_iter().map(|d| view(&app, d)).collect(),
    }))
}

/// `POST /api/v1/delegations/{id}/revoke`: the grantor ends it now.
pub async fn revoke(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DelegationView>, ApiError> {
    Ok(Json(view(&app, crate::delegations::revoke_as(&app, &holder, &id).await?)))
}

/// `POST /api/v1/delegations/{id}/renounce`: the collaborator gives it up.
pub async fn renounce(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DelegationView>, ApiError> {
    Ok(Json(view(&app, crate::delegations::renounce_as(&app, &holder, &id).await?)))
}

/// One act the card holder answers for, as the audit trail keeps it.
#[derive(Debug, Serialize)]
pub struct Act {
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// Who acted: the holder, or a collaborator under a sub-delegation.
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// `GET /api/v1/activity`: the latest 200 acts the card holder answers for.
pub async fn activity(
    State(app): State<AppState>,
    Authenticated(holder): Authenticated,
) -> Result<Json<Vec<Act>>, ApiError> {
    let records = app.store.audit_for(holder.tax_code.as_str(), 200).await?;
    let acts = records
        .into_iter()
        .map(|r| Act {
            at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            actor: r.actor,
            action: r.action,
            detail: serde_json::from_str(&r.detail).unwrap_or_default(),
        })
        .collect();
    Ok(Json(acts))
}
