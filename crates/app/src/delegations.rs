//! Sub-delegation ("subdelega"): a holder lets a collaborator with a smart card act on his or
//! her behalf, for chosen institutions, businesses and services, for a while, and stays
//! responsible. Grant, the lists granted and received, revoke (grantor), renounce
//! (collaborator), start acting on behalf, and the acts done on one's behalf.
//!
//! A grant is checked by [`domain::delegation::check_grant`] against the grantor's own
//! authorisations as the institutions give them, so nothing held by delegation is handed on;
//! the institutions are told by the worker through their channels.

use std::collections::BTreeMap;

use domain::delegation::{check_grant, Delegation, DelegationId, Ending, GrantError, GrantRequest, InstitutionState};
use domain::text::Text;
use identity::Holder;

use crate::{AppError, Core, Principal};

/// The request in its canonical form, whichever door it came by: codes trimmed and upper-case,
/// the note trimmed.
fn canonical(request: GrantRequest) -> GrantRequest {
    let upper = |code: &str| code.trim().to_uppercase();
    let mut scope = request.scope;
    scope.businesses = scope.businesses.iter().map(|b| upper(b)).collect();
    let note = request.note.trim().to_string();
    // One space between words: the name as it will be shown.
    let delegate_name = request.delegate_name.split_whitespace().collect::<Vec<_>>().join(" ");
    GrantRequest { delegate: upper(&request.delegate), scope, note, delegate_name, ..request }
}

/// Refuses (and records) a grant by someone acting on behalf of another: what one holds by
/// delegation is not one's own to hand on.
pub async fn may_grant(core: &Core, principal: &Principal) -> Result<(), AppError> {
    if principal.delegation.is_none() {
        return Ok(());
    }
    crate::audit::holder_act(core, &principal.actor, "refused_redelegation", serde_json::json!({})).await;
    Err(AppError::NoRedelegation)
}

/// Checks a request against the grantor's own authorisations and the rules of a grant:
/// every reason at once ([`AppError::GrantRefused`]), with the names the reasons mention.
pub async fn check(core: &Core, grantor: &Holder, request: &GrantRequest) -> Result<(), AppError> {
    let answers = crate::authorisations::of_holder(core, &grantor.tax_code).await.unwrap_or_default();
    let max_days = core.delegation_policy.max_days;
    let errors = check_grant(&grantor.tax_code, request, &answers, &core.catalog, max_days, core.today());
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::GrantRefused { names: names(core, &errors), errors })
    }
}

/// The catalog's names of the institutions and services `errors` mention.
fn names(core: &Core, errors: &[GrantError]) -> BTreeMap<String, Text> {
    errors
        .iter()
        .filter_map(|e| match e {
            GrantError::Institution(i) => core.catalog.institution(i).map(|k| (i.clone(), k.name.clone())),
            GrantError::Service(s) => core.catalog.service(s).map(|k| (s.clone(), k.title.clone())),
            _ => None,
        })
        .collect()
}

/// The principal grants a sub-delegation on his or her own account (someone acting on behalf
/// of another may not: [`AppError::NoRedelegation`], recorded).
pub async fn grant(core: &Core, principal: &Principal, request: GrantRequest) -> Result<Delegation, AppError> {
    may_grant(core, principal).await?;
    let request = canonical(request);
    check(core, &principal.actor, &request).await?;
    let delegate = domain::identifiers::CodiceFiscale::parse(&request.delegate).map_err(|_| AppError::Internal)?;
    let next_day = request.valid_to.next_day().ok_or(AppError::Internal)?;
    let delegation = Delegation {
        id: DelegationId::from_random_bytes(core.random_id_bytes()?),
        grantor: principal.actor.tax_code.clone(),
        delegate,
        delegate_name: request.delegate_name,
        institutions: request.scope.institutions.iter().map(|i| (i.clone(), InstitutionState::Pending)).collect(),
        scope: request.scope,
        valid_from: domain::italian_day_start(request.valid_from),
        valid_until: domain::italian_day_start(next_day),
        note: request.note,
        created_at: core.clock.now(),
        ended: None,
    };
    core.store.create_delegation(&delegation).await?;
    tracing::info!(delegation = %delegation.id, grantor = %delegation.grantor, delegate = %delegation.delegate, "delegation granted");
    let day = |at: time::OffsetDateTime| domain::identifiers::display_date(domain::italian_date(at));
    let detail = serde_json::json!({
        "delegation": delegation.id.to_string(),
        "delegate": delegation.delegate.to_string(),
        "scope": delegation.scope,
        "valid_from": day(delegation.valid_from),
        "valid_until": day(delegation.valid_until - time::Duration::seconds(1)),
    });
    crate::audit::holder_act(core, &principal.actor, "delegation_granted", detail).await;
    Ok(delegation)
}

/// What `holder` granted and received, newest first; an expiry first seen here is recorded.
pub async fn granted_and_received(
    core: &Core,
    holder: &Holder,
) -> Result<(Vec<Delegation>, Vec<Delegation>), AppError> {
    let granted = core.store.delegations_granted(&holder.tax_code).await?;
    let received = core.store.delegations_received(&holder.tax_code).await?;
    for d in granted.iter().chain(received.iter()) {
        crate::principal::observe_expiry(core, d).await;
    }
    Ok((granted, received))
}

/// Delegation `id` as stored ("not found" for an id that names none).
pub async fn load(core: &Core, id: &str) -> Result<Delegation, AppError> {
    let id = DelegationId::parse(id).ok_or(AppError::NotFound)?;
    Ok(core.store.delegation(id).await?)
}

/// The grantor `holder` ends delegation `id` now (anyone else: not found), recorded.
pub async fn revoke(core: &Core, holder: &Holder, id: &str) -> Result<Delegation, AppError> {
    let d = granted(core, holder, id).await?;
    let ended = core.store.end_delegation(d.id, Ending::Revoked, core.clock.now()).await?;
    tracing::info!(delegation = %ended.id, "delegation revoked");
    let detail = serde_json::json!({ "delegation": ended.id.to_string(), "delegate": ended.delegate.to_string() });
    crate::audit::holder_act(core, holder, "delegation_revoked", detail).await;
    Ok(ended)
}

/// Delegation `id` as granted by `holder` (anyone else's: not found).
pub async fn granted(core: &Core, holder: &Holder, id: &str) -> Result<Delegation, AppError> {
    let d = load(core, id).await?;
    if d.grantor != holder.tax_code {
        return Err(AppError::NotFound);
    }
    Ok(d)
}

/// The collaborator `holder` gives delegation `id` up (anyone else: not found), recorded.
pub async fn renounce(core: &Core, holder: &Holder, id: &str) -> Result<Delegation, AppError> {
    let d = load(core, id).await?;
    if d.delegate != holder.tax_code {
        return Err(AppError::NotFound);
    }
    let ended = core.store.end_delegation(d.id, Ending::Renounced, core.clock.now()).await?;
    let detail = serde_json::json!({ "delegation": ended.id.to_string() });
    crate::audit::record(core, ended.delegate.as_str(), ended.grantor.as_str(), "delegation_renounced", detail).await;
    Ok(ended)
}

/// `holder` starts acting on behalf of the grantor of delegation `id`: the same checks as
/// every request acting under it, and a record that it began.
pub async fn start_acting(core: &Core, holder: Holder, id: &str) -> Result<Principal, AppError> {
    let d = load(core, id).await?;
    let principal = Principal::resolve(core, holder, Some(&crate::Selector::Explicit(d.id.to_string()))).await?;
    principal.audit(core, "acting_started", serde_json::json!({})).await;
    Ok(principal)
}

/// One act someone answers for, as the audit trail keeps it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Act {
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// Who acted: the holder, or a collaborator under a sub-delegation.
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// The latest acts (at most `limit`) that `holder` answers for, newest first, whoever did them.
pub async fn activity(core: &Core, holder: &Holder, limit: u32) -> Result<Vec<Act>, AppError> {
    let records = core.store.audit_for(holder.tax_code.as_str(), limit).await?;
    Ok(records
        .into_iter()
        .map(|r| Act {
            at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            actor: r.actor,
            action: r.action,
            detail: serde_json::from_str(&r.detail).unwrap_or_default(),
        })
        .collect())
}
