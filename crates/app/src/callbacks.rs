//! An institution's answer arriving by callback ("esito"), once its signature was verified and
//! its document read through the institution's channel profile (by the web adapter): recorded
//! against the delivery it names, exactly once per message, and audited as the institution's
//! act.

use domain::catalog::FilingKind;
use domain::practice::PracticeId;
use storage::{DeliveryKey, DeliveryUpdate, Recorded};

use crate::{AppError, Core};

/// The filing kind `institution` received for practice `id`, from the catalog (to map the
/// paths a rejection names back to the catalog's fields); `None` when the catalog no longer
/// has it.
pub async fn filing_of<'c>(
    core: &'c Core,
    id: PracticeId,
    institution: &str,
) -> Result<Option<&'c FilingKind>, AppError> {
    let service = core.store.service_of(id).await?;
    Ok(core
        .catalog
        .service(&service)
        .and_then(|s| s.recipients.iter().find(|r| r.institution == institution))
        .and_then(|r| core.catalog.filing(r)))
}

/// Records the institution's news (`kind`, its message `message_id`) for one delivery;
/// answers what became of it: `applied`, `unchanged` (older than what is known) or
/// `duplicate` (the same message again, signed anew). A request whose signed tokens were
/// already used is refused ([`AppError::Replayed`]) whichever portal process took it first.
pub async fn record(
    core: &Core,
    key: &DeliveryKey,
    update: &DeliveryUpdate,
    (kind, message_id): (&str, &str),
) -> Result<&'static str, AppError> {
    let recorded = core.store.record(key, update).await?;
    let result = match recorded {
        Recorded::Applied(_) => "applied",
        Recorded::Unchanged | Recorded::LostLease => "unchanged",
        Recorded::Duplicate => "duplicate",
        Recorded::Replayed => {
            tracing::warn!(institution = %key.institution, practice = %key.practice_id, message = %message_id, "institution event replayed");
            return Err(AppError::Replayed);
        }
    };
    tracing::info!(institution = %key.institution, practice = %key.practice_id, message = %message_id, result, "institution event");
    let actor = format!("institution:{}", key.institution);
    let detail = serde_json::json!({
        "practice": key.practice_id.to_string(),
        "event": kind,
        "message_id": message_id,
        "result": result,
    });
    crate::audit::record(core, &actor, &actor, "callback", detail).await;
    Ok(result)
}
