//! The delivery side ([`DeliveryQueue`]): the outbox the worker drains, what the institutions
//! say, and the plan of each record both adapters follow.

use async_trait::async_trait;
use domain::delivery::{apply, Applied, DeliveryEvent, DeliveryState, DeliveryStatus, Rejection};
use domain::identifiers::CodiceFiscale;
use domain::practice::{Delivery, PracticeData, PracticeId};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::*;

/// Identifies one delivery: a practice and one of its recipient institutions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub practice_id: PracticeId,
    pub institution: String,
}

/// A delivery handed to a worker, with what it needs to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub key: DeliveryKey,
    /// Fencing token of this claim: results recorded with an older token are discarded.
    pub fence: i64,
    /// Attempts for the current revision, this one included.
    pub attempts: u32,
    pub revision: u32,
    pub filing_kind: String,
    pub payload: Value,
    pub reference: String,
    /// The holder who answers for the practice.
    pub owner: CodiceFiscale,
    /// Who sent it: the owner, or a collaborator acting on the owner's behalf.
    pub actor: CodiceFiscale,
    pub service_id: String,
    /// The institution's office competent for the practice, when it routes by territory.
    pub office: Option<String>,
}

/// A delivery whose institution is asked for news (it does not call back, or not yet), or
/// that has been silent for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollItem {
    pub key: DeliveryKey,
    pub revision: u32,
    pub owner: CodiceFiscale,
    pub service_id: String,
    pub reference: String,
    pub filing_kind: String,
    /// Where the institution said to ask (NONBLOCK_PULL_REST), if it did.
    pub status_url: Option<String>,
    pub office: Option<String>,
}

/// How often to ask an institution for news: `first` after the last request, doubling with each
/// request up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPace {
    pub first: std::time::Duration,
    pub max: std::time::Duration,
}

impl PollPace {
    pub(crate) fn millis(self) -> (i64, i64) {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        let first = ms(self.first);
        (first, ms(self.max).max(first))
    }
}

/// What recording an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Applied(DeliveryStatus),
    /// Nothing newer than what was known (late or repeated).
    Unchanged,
    /// This message id was already recorded.
    Duplicate,
    /// The worker's claim was superseded by a newer one; the result is discarded.
    LostLease,
    /// A token of the request (a ModI `jti`) was already used, here or by another process
    /// on the same database: a replay, refused whole.
    Replayed,
}

/// A ModI token (`jti`) a callback used, remembered by the store until `until_ms` (Unix
/// milliseconds) so that a replay to any portal process sharing the database is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedToken {
    /// Whose and which token: the institution and the header that carried it.
    pub scope: String,
    pub jti: String,
    pub until_ms: i64,
}

/// An event to record on a delivery.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub event: DeliveryEvent,
    pub at: OffsetDateTime,
    /// The worker's claim; `None` for callbacks and polls.
    pub fence: Option<i64>,
    /// The institution's message id, for callbacks: a repeated id is a duplicate.
    pub message_id: Option<String>,
    /// The revision the event is about; an older revision than the current one is stale.
    pub revision: Option<u32>,
    /// For worker results: when to look at the delivery again (the retry after a transient
    /// failure, or the first poll after a successful send to an institution that is polled).
    pub next_at: Option<OffsetDateTime>,
    /// Where to ask for news from now on (a NONBLOCK_PULL_REST answer's `Location`).
    pub status_url: Option<String>,
    /// Values the institution's answer carried, merged into the delivery's.
    pub values: std::collections::BTreeMap<String, String>,
    /// The answer as the institution signed it (`delivery::evidence::Evidence`), kept in the
    /// event's detail as `evidence`.
    pub evidence: Option<Value>,
    /// The tokens the institution's signed request used; any already used makes the whole
    /// update [`Recorded::Replayed`].
    pub tokens: Vec<UsedToken>,
}

impl DeliveryUpdate {
    pub fn new(event: DeliveryEvent, at: OffsetDateTime) -> Self {
        Self {
            event,
            at,
            fence: None,
            message_id: None,
            revision: None,
            next_at: None,
            status_url: None,
            values: std::collections::BTreeMap::new(),
            evidence: None,
            tokens: Vec::new(),
        }
    }

    /// Whether the event is something the institution said.
    pub(crate) fn is_news(&self) -> bool {
        matches!(
            self.event,
            DeliveryEvent::Sent { .. } | DeliveryEvent::TakenInCharge { .. } | DeliveryEvent::Outcome { .. }
        )
    }
}

/// What releasing a waiting filing writes: its payload with the values of the answer it waited
/// for, and the timeline's detail (which values, and any the answer did not carry).
pub(crate) fn release_plan(
    payload: &str,
    uses: &str,
    protocol: Option<&str>,
    values: &str,
) -> Result<(String, Value), StoreError> {
    let payload: Value = serde_json::from_str(payload).map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
    let uses: Vec<domain::catalog::AnswerMapping> =
        serde_json::from_str(uses).map_err(|e| StoreError::Corrupt(format!("uses: {e}")))?;
    let values: std::collections::BTreeMap<String, String> =
        serde_json::from_str(values).map_err(|e| StoreError::Corrupt(format!("values: {e}")))?;
    let (filled, missing) = domain::practice::fill_from_answer(&payload, &uses, protocol, &values);
    let taken: Vec<&str> = uses.iter().map(|u| u.value.as_str()).filter(|v| !missing.iter().any(|m| m == v)).collect();
    if !missing.is_empty() {
        tracing::warn!(?missing, "an answer did not carry values a waiting filing uses; sent without them");
    }
    Ok((filled.to_string(), serde_json::json!({ "values": taken, "missing": missing })))
}

/// The delivery's values with `update`'s merged in, as stored (a JSON object of text).
pub(crate) fn merged_values(current: &str, update: &DeliveryUpdate) -> String {
    let mut values: std::collections::BTreeMap<String, String> = serde_json::from_str(current).unwrap_or_default();
    values.extend(update.values.iter().map(|(k, v)| (k.clone(), v.clone())));
    serde_json::to_string(&values).unwrap_or_else(|_| "{}".to_string())
}

/// One line of a practice's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub institution: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `submitted`, `sent`, `taken_in_charge`, `outcome`, `transient_failure`, `failed`, ...
    pub kind: String,
    /// The delivery's state after the event.
    pub state: DeliveryState,
    pub detail: Value,
}

/// The delivery side of storage: the outbox the worker drains, and what the institutions say.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + std::fmt::Debug {
    /// Claims up to `limit` queued deliveries that are due and not leased, for `lease`. Each
    /// claim increments the delivery's fencing token and attempt count.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Deliveries of `institution` waiting for news (delivered or taken in charge) whose next
    /// check is due; each is rescheduled `interval` later as it is claimed.
    async fn claim_for_poll(
        &self,
        institution: &str,
        now: OffsetDateTime,
        pace: PollPace,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError>;

    /// Deliveries of `institution` waiting for news (delivered or taken in charge) whose last
    /// news is older than `cutoff`: the worker marks them `no_news`.
    async fn silent_since(
        &self,
        institution: &str,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError>;

    /// Applies an event to a delivery (domain rules decide), logs it in the timeline, and
    /// moves the practice when all its deliveries say so. `NotFound` for an unknown delivery.
    async fn record(&self, key: &DeliveryKey, update: &DeliveryUpdate) -> Result<Recorded, StoreError>;

    /// The user sends one delivery again: unchanged if it failed, or with the corrected
    /// practice data and payload if it was rejected. Other deliveries are not touched.
    async fn resend(
        &self,
        owner: &CodiceFiscale,
        key: &DeliveryKey,
        correction: Option<(&PracticeData, &Value)>,
        now: OffsetDateTime,
    ) -> Result<Delivery, StoreError>;

    /// The service of a practice, whoever owns it (for institution callbacks).
    async fn service_of(&self, id: PracticeId) -> Result<String, StoreError>;

    /// Every recorded event of the owner's practice, oldest first.
    async fn timeline(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<TimelineEntry>, StoreError>;
}

/// What an adapter writes after deciding on an event (shared by both adapters).
#[derive(Debug)]
pub(crate) struct RecordPlan {
    pub(crate) recorded: Recorded,
    /// The delivery's new status, when it changed.
    pub(crate) status: Option<DeliveryStatus>,
    /// The worker is done with its claim.
    pub(crate) release_lease: bool,
    /// Log a timeline entry (changes, every worker result and every institution message).
    pub(crate) log: bool,
}

/// The delivery as it stands, read inside the adapter's transaction.
#[derive(Debug)]
pub(crate) struct CurrentDelivery {
    pub(crate) status: DeliveryStatus,
    pub(crate) fence: i64,
}

pub(crate) fn plan_record(current: &CurrentDelivery, update: &DeliveryUpdate) -> RecordPlan {
    if update.fence.is_some_and(|f| f != current.fence) {
        return RecordPlan { recorded: Recorded::LostLease, status: None, release_lease: false, log: false };
    }
    let release_lease = update.fence.is_some();
    let stale = update.revision.is_some_and(|r| r < current.status.revision);
    let applied = if stale { Ok(Applied::Unchanged) } else { apply(&current.status, &update.event) };
    match applied {
        Ok(Applied::Changed(status)) => {
            RecordPlan { recorded: Recorded::Applied(status.clone()), status: Some(status), release_lease, log: true }
        }
        Ok(Applied::Unchanged) | Err(_) => {
            // Worker results and institution messages are part of the story even when they add
            // nothing new (an answer overtaken by a callback, a late outcome).
            let log = update.message_id.is_some() || update.fence.is_some();
            RecordPlan { recorded: Recorded::Unchanged, status: None, release_lease, log }
        }
    }
}

pub(crate) fn event_kind(event: &DeliveryEvent) -> &'static str {
    match event {
        DeliveryEvent::Sent { .. } => "sent",
        DeliveryEvent::TakenInCharge { .. } => "taken_in_charge",
        DeliveryEvent::Outcome { .. } => "outcome",
        DeliveryEvent::RejectedOnReceipt(_) => "rejected_on_receipt",
        DeliveryEvent::TransientFailure { .. } => "transient_failure",
        DeliveryEvent::Failed { .. } => "failed",
        DeliveryEvent::Resend => "resend",
        DeliveryEvent::ResendCorrected => "resend_corrected",
        DeliveryEvent::NoNews => "no_news",
        DeliveryEvent::Released => "released",
    }
}

/// What the timeline keeps of an update: the event's detail and the signed evidence.
pub(crate) fn update_detail(update: &DeliveryUpdate, recorded: &Recorded) -> Value {
    let mut detail = event_detail(&update.event, recorded);
    if let (Value::Object(map), Some(evidence)) = (&mut detail, &update.evidence) {
        map.insert("evidence".into(), evidence.clone());
    }
    detail
}

pub(crate) fn event_detail(event: &DeliveryEvent, recorded: &Recorded) -> Value {
    let mut detail = match event {
        DeliveryEvent::Sent { protocol_number } => {
            serde_json::json!({ "protocol_number": protocol_number })
        }
        DeliveryEvent::TakenInCharge { protocol_number } => {
            serde_json::json!({ "protocol_number": protocol_number })
        }
        DeliveryEvent::Outcome { accepted, protocol_number, rejection } => {
            serde_json::json!({ "accepted": accepted, "protocol_number": protocol_number, "rejection": rejection })
        }
        DeliveryEvent::RejectedOnReceipt(rejection) => {
            serde_json::json!({ "rejection": rejection })
        }
        DeliveryEvent::TransientFailure { reason } | DeliveryEvent::Failed { reason } => {
            serde_json::json!({ "reason": reason })
        }
        DeliveryEvent::Resend | DeliveryEvent::ResendCorrected | DeliveryEvent::NoNews | DeliveryEvent::Released => {
            serde_json::json!({})
        }
    };
    if let (Value::Object(map), Recorded::Unchanged) = (&mut detail, recorded) {
        map.insert("ignored".into(), Value::Bool(true));
    }
    detail
}

pub(crate) fn rejection_json(rejection: &Option<Rejection>) -> Option<String> {
    rejection.as_ref().and_then(|r| serde_json::to_string(r).ok())
}

/// A delivery row as both adapters read it.
pub(crate) struct DeliveryRow {
    pub(crate) office: Option<String>,
    pub(crate) waits_for: Option<String>,
    pub(crate) news_values: String,
    pub(crate) news_at: Option<i64>,
    pub(crate) institution: String,
    pub(crate) filing_kind: String,
    pub(crate) state: String,
    pub(crate) payload: String,
    pub(crate) updated_at: OffsetDateTime,
    pub(crate) attempts: i64,
    pub(crate) revision: i64,
    pub(crate) protocol_number: Option<String>,
    pub(crate) rejection: Option<String>,
    pub(crate) last_error: Option<String>,
}

impl DeliveryRow {
    pub(crate) fn status(&self) -> Result<DeliveryStatus, StoreError> {
        Ok(DeliveryStatus {
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery state `{}`", self.state)))?,
            protocol_number: self.protocol_number.clone(),
            rejection: match &self.rejection {
                Some(r) => Some(serde_json::from_str(r).map_err(|e| StoreError::Corrupt(format!("rejection: {e}")))?),
                None => None,
            },
            last_error: self.last_error.clone(),
            revision: u32::try_from(self.revision).map_err(|_| StoreError::Corrupt("revision".into()))?,
        })
    }

    pub(crate) fn into_delivery(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            status: self.status()?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| StoreError::Corrupt(format!("delivery payload: {e}")))?,
            institution: self.institution,
            filing_kind: self.filing_kind,
            updated_at: self.updated_at,
            last_news_at: self.news_at.map(from_millis).transpose()?,
            office: self.office,
            waits_for: self.waits_for,
            values: serde_json::from_str(&self.news_values)
                .map_err(|e| StoreError::Corrupt(format!("delivery values: {e}")))?,
        })
    }
}
