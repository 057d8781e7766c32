//! What a holder keeps of a practice: the receipt ("ricevuta") with the digests of what was
//! sent, and the export of chosen practices with their filings, answers and events.

use domain::delivery::DeliveryState;
use domain::practice::{Delivery, Practice, PracticeData, PracticeId, PracticeState};
use serde::Serialize;

use crate::{AppError, Core, Principal};

pub use crate::digests::{data_digest, payload_digest};

/// The receipt's facts, the same on the page and in the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    pub practice: String,
    pub reference: String,
    pub service: String,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: time::OffsetDateTime,
    /// Who answers for the practice, and who sent it (a collaborator under a sub-delegation).
    pub owner: String,
    pub actor: String,
    /// SHA-256 of the data sent (its JSON with keys in order).
    pub data_sha256: String,
    pub filings: Vec<ReceiptFiling>,
}

/// One recipient's filing on the receipt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReceiptFiling {
    pub institution: String,
    pub filing_kind: String,
    pub state: DeliveryState,
    /// Present once the institution gave it: only then has the procedure started there.
    pub protocol_number: Option<String>,
    /// SHA-256 of the filing's payload as queued for the institution.
    pub payload_sha256: String,
}

/// The receipt of `practice`, or "wrong state" for one never sent.
pub fn receipt_of(practice: &Practice, deliveries: &[Delivery]) -> Result<Receipt, AppError> {
    let (Some(reference), Some(submitted_at)) = (&practice.reference, practice.submitted_at) else {
        return Err(AppError::WrongState(practice.state));
    };
    Ok(Receipt {
        practice: practice.id.to_string(),
        reference: reference.to_string(),
        service: practice.service_id.clone(),
        submitted_at,
        owner: practice.owner.to_string(),
        actor: practice.actor.to_string(),
        data_sha256: data_digest(&practice.data),
        filings: deliveries
            .iter()
            .map(|d| ReceiptFiling {
                institution: d.institution.clone(),
                filing_kind: d.filing_kind.clone(),
                state: d.state(),
                protocol_number: d.status.protocol_number.clone(),
                payload_sha256: payload_digest(&d.payload),
            })
            .collect(),
    })
}

/// The receipt of the principal's practice `id`.
pub async fn receipt(core: &Core, principal: &Principal, id: PracticeId) -> Result<Receipt, AppError> {
    let (practice, deliveries) = crate::practices::with_deliveries(core, principal, id).await?;
    receipt_of(&practice, &deliveries)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportedDelivery {
    pub institution: String,
    pub filing: String,
    pub state: DeliveryState,
    pub protocol_number: Option<String>,
    pub payload_sha256: String,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportedPractice {
    pub reference: Option<String>,
    pub service: String,
    pub state: PracticeState,
    #[serde(with = "time::serde::rfc3339::option")]
    pub submitted_at: Option<time::OffsetDateTime>,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub data: PracticeData,
    pub data_sha256: String,
    pub deliveries: Vec<ExportedDelivery>,
    pub timeline: Vec<storage::TimelineEntry>,
}

/// At most this many practices in one export.
pub const EXPORT_MAX: usize = 200;

/// The chosen practices (each within reach, or the whole export is "not found"), with their
/// data, filings, protocol numbers, digests, signed answers and timeline; recorded.
pub async fn export(core: &Core, principal: &Principal, ids: &[PracticeId]) -> Result<Vec<ExportedPractice>, AppError> {
    if ids.len() > EXPORT_MAX {
        return Err(AppError::BadInput(format!("practice: at most {EXPORT_MAX}")));
    }
    let mut practices = Vec::new();
    for &id in ids {
        let practice = principal.practice(core, id).await?;
        let deliveries = core.store.deliveries(&principal.owner, id).await?;
        let timeline = core.store.timeline(&principal.owner, id).await?;
        practices.push(ExportedPractice {
            reference: practice.reference.as_ref().map(ToString::to_string),
            service: practice.service_id.clone(),
            state: practice.state,
            submitted_at: practice.submitted_at,
            data_sha256: data_digest(&practice.data),
            data: practice.data,
            deliveries: deliveries
                .into_iter()
                .map(|d| ExportedDelivery {
                    payload_sha256: payload_digest(&d.payload),
                    state: d.status.state,
                    protocol_number: d.status.protocol_number,
                    institution: d.institution,
                    filing: d.filing_kind,
                    payload: d.payload,
                })
                .collect(),
            timeline,
        });
    }
    tracing::info!(actor = %principal.actor.tax_code, count = practices.len(), "practices exported");
    let references: Vec<_> = practices.iter().map(|p| p.reference.clone()).collect();
    principal.audit(core, "exported", serde_json::json!({ "references": references })).await;
    Ok(practices)
}
