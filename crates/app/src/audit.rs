//! Recording acts in the audit trail (`storage::audit`): who acted, who answers for it, what,
//! and on what. Recording follows the act: an act that happened is never undone because its
//! record could not be written; the failure is logged as an error for the operator instead.

use serde_json::Value;

use crate::Core;

/// Appends one act. `actor` acted; `responsible` answers for it (the same person unless the
/// actor used a delegation).
pub async fn record(core: &Core, actor: &str, responsible: &str, action: &str, detail: Value) {
    let record = storage::audit::NewAuditRecord {
        at: core.clock.now(),
        actor: actor.to_string(),
        responsible: responsible.to_string(),
        action: action.to_string(),
        detail,
    };
    if let Err(e) = core.store.append_audit(&record).await {
        tracing::error!(error = %e, action, actor, "audit record not written");
    }
}

/// An act of a holder on his or her own account.
pub async fn holder_act(core: &Core, holder: &identity::Holder, action: &str, detail: Value) {
    let cf = holder.tax_code.to_string();
    record(core, &cf, &cf, action, detail).await;
}
