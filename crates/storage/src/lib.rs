//! The storage port and its two adapters.
//!
//! [`PracticeStore`] is what the rest of Sportello knows about persistence. Two adapters
//! implement it with SQL of their own (no `Any` driver): [`sqlite::SqliteStore`], the embedded
//! default, and [`postgres::PostgresStore`]. One contract suite (`tests/contract.rs`) runs
//! against both. [`connect`] picks the adapter from the database URL.
//!
//! Invariants every adapter keeps:
//! - a practice is only visible to its owner: a lookup by another codice fiscale is `NotFound`;
//! - state changes are compare-and-set on the current state, so two requests racing on one
//!   practice cannot both win (the domain decides what is legal; the store makes it atomic);
//! - a submission writes the canonical data, a fresh reference number and one delivery per
//!   recipient in a single transaction.

pub mod audit;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use domain::delegation::{Delegation, DelegationId, Ending, InstitutionState};
use domain::delivery::{apply, Applied, DeliveryEvent, DeliveryState, DeliveryStatus, Rejection};
use domain::identifiers::CodiceFiscale;
use domain::practice::{
    Delivery, Practice, PracticeData, PracticeEvent, PracticeId, PracticeState, ReferenceNumber, Submission,
};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// Why a storage operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such practice for this owner.
    #[error("no such practice")]
    NotFound,
    /// The practice is not in the state the change needs (someone else got there first).
    #[error("the practice is {0:?}")]
    WrongState(PracticeState),
    /// The delivery is not in a state that allows the change.
    #[error("the delivery is {0:?}")]
    WrongDeliveryState(DeliveryState),
    /// A stored row could not be read back into the domain.
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The delegation has already ended (revoked or renounced).
    #[error("the delegation has already ended")]
    DelegationEnded,
    #[error("database URL not understood: {0}")]
    BadUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The practice's next state once its deliveries changed, from the states as stored (shared
/// by both adapters). `None`: the practice stays as it is. A state that cannot be read is an
/// error, never skipped: a practice must not complete because one of its rows was ignored.
fn practice_follows(
    current: &str,
    delivery_states: &[String],
) -> Result<Option<(PracticeState, domain::practice::PracticeEvent)>, StoreError> {
    let states = delivery_states
        .iter()
        .map(|s| DeliveryState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("delivery state `{s}`"))))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(event) = domain::practice::practice_event_for(&states) else { return Ok(None) };
    let current =
        PracticeState::parse(current).ok_or_else(|| StoreError::Corrupt(format!("practice state `{current}`")))?;
    // A transition the practice's state does not allow (already completed, say) changes nothing.
    Ok(current.apply(event).ok().map(|next| (next, event)))
}

/// What a collaborator acting under a sub-delegation sees of the grantor's practices: those
/// of the delegated services and businesses, and the collaborator's own drafts that do not
/// name a business yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeFilter {
    pub services: Vec<String>,
    pub businesses: Vec<String>,
    pub actor: String,
}

impl ScopeFilter {
    /// (services, businesses, actor) as bound parameters: JSON arrays and text.
    fn params(scope: Option<&ScopeFilter>) -> (Option<String>, Option<String>, Option<String>) {
        match scope {
            None => (None, None, None),
            // Fails closed: a list that could not be written as JSON matches nothing (an
            // absent parameter would mean "no filter").
            Some(s) => (
                Some(serde_json::to_string(&s.services).unwrap_or_else(|_| "[]".into())),
                Some(
                    serde_json::to_string(&s.businesses.iter().map(|b| b.to_uppercase()).collect::<Vec<_>>())
                        .unwrap_or_else(|_| "[]".into()),
                ),
                Some(s.actor.clone()),
            ),
        }
    }
}

/// The desk's home: counts per state and what needs the owner (see
/// [`PracticeStore::desk_summary`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeskSummary {
    /// Practices per state; a state with none is absent.
    pub counts: Vec<(PracticeState, u64)>,
    /// Reference numbers of drafts back from sending because no institution was reached.
    pub to_resend: Vec<String>,
    /// Deliveries failed, rejected or without news, with their practice's reference number.
    pub attention: Vec<(String, Delivery)>,
}

impl DeskSummary {
    pub fn count(&self, state: PracticeState) -> u64 {
        self.counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)
    }

    /// The summary from what both adapters read: each state must be one the domain knows.
    fn from_rows(
        counts: Vec<(String, i64)>,
        to_resend: Vec<Option<String>>,
        attention: Vec<(String, Delivery)>,
    ) -> Result<Self, StoreError> {
        let counts = counts
            .into_iter()
            .map(|(state, n)| {
                let state = PracticeState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("practice state `{state}`")))?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { counts, to_resend: to_resend.into_iter().flatten().collect(), attention })
    }
}

/// The delivery states the desk's home asks the owner to act on.
const NEEDS_THE_OWNER: &str = "'failed', 'rejected', 'no_news'";

/// Which practices to list.
#[derive(Debug, Clone, Default)]
pub struct PracticeQuery {
    pub state: Option<PracticeState>,
    /// Only those within a sub-delegation.
    pub scope: Option<ScopeFilter>,
    /// At most this many (capped at 200).
    pub limit: u32,
    pub offset: u32,
}

impl PracticeQuery {
    pub const MAX_LIMIT: u32 = 200;

    fn bounded_limit(&self) -> i64 {
        i64::from(if self.limit == 0 { 50 } else { self.limit.min(Self::MAX_LIMIT) })
    }
}

/// How search results are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Last change (the default).
    #[default]
    Updated,
    /// Date of sending; drafts never sent come last.
    Submitted,
    Reference,
    Service,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [Self::Updated, Self::Submitted, Self::Reference, Self::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Submitted => "submitted",
            Self::Reference => "reference",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The column it sorts on (the same name in both adapters).
    fn column(self) -> &'static str {
        match self {
            Self::Updated => "updated_at",
            Self::Submitted => "submitted_at",
            Self::Reference => "reference",
            Self::Service => "service_id",
        }
    }
}

/// A search among one owner's practices ("ricerca"). Every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct PracticeSearch {
    /// A reference number, a protocol number, a business codice fiscale (all exact, any
    /// case), or part of a business name (any case).
    pub text: Option<String>,
    pub service: Option<String>,
    pub state: Option<PracticeState>,
    /// Sent at or after this instant.
    pub submitted_from: Option<OffsetDateTime>,
    /// Sent before this instant.
    pub submitted_before: Option<OffsetDateTime>,
    pub sort: SortKey,
    pub descending: bool,
    /// Only those within a sub-delegation.
    pub scope: Option<ScopeFilter>,
    /// At most this many (capped at 200).
    pub limit: u32,
    pub offset: u32,
}

impl PracticeSearch {
    fn bounded_limit(&self) -> i64 {
        i64::from(if self.limit == 0 { 20 } else { self.limit.min(PracticeQuery::MAX_LIMIT) })
    }

    /// `ORDER BY` for the chosen sort: never-sent practices last, then the newest change, then
    /// the id, so pages never overlap.
    fn order_by(&self) -> String {
        let direction = if self.descending { "DESC" } else { "ASC" };
        let column = self.sort.column();
        format!("({column} IS NULL), {column} {direction}, updated_at DESC, id")
    }

    /// The text as typed (trimmed), its upper-case form for the exact codes, and a `LIKE`
    /// pattern (escaped with a backslash) for the business name.
    fn text_terms(&self) -> Option<(String, String)> {
        let text = self.text.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
        let escaped: String = text
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        Some((text.to_uppercase(), format!("%{escaped}%")))
    }
}

/// One page of search results, and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub practices: Vec<Practice>,
    pub total: u64,
}

/// Persistence of practices and their deliveries.
#[async_trait]
pub trait PracticeStore: Send + Sync + std::fmt::Debug {
    /// Brings the schema up to date. Safe to run from several processes at once.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Stores a new draft.
    async fn create_draft(&self, practice: &Practice) -> Result<(), StoreError>;

    /// The practice, if it exists and belongs to `owner`.
    async fn practice(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Practice, StoreError>;

    /// Replaces a draft's data. `WrongState` when the practice is no longer a draft.
    async fn update_draft(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        data: &PracticeData,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError>;

    /// Turns a draft into a submitted practice: canonical data, a new reference number and one
    /// queued delivery per filing, atomically. `WrongState` when it is no longer a draft.
    async fn submit(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        submission: &Submission,
    ) -> Result<Practice, StoreError>;

    /// The practice's deliveries, in the order its service lists the recipients.
    async fn deliveries(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<Delivery>, StoreError>;

    /// The owner's practices, most recently changed first.
    async fn list(&self, owner: &CodiceFiscale, query: &PracticeQuery) -> Result<Vec<Practice>, StoreError>;

    /// The owner's practices matching `search`, one page of them, with the total count.
    async fn search(&self, owner: &CodiceFiscale, search: &PracticeSearch) -> Result<SearchPage, StoreError>;

    /// What the desk's home shows, in three queries however many practices there are: the
    /// count of practices in each state, and at most `limit` of the drafts to send again and
    /// of the deliveries that need the owner, most recently changed first.
    async fn desk_summary(
        &self,
        owner: &CodiceFiscale,
        scope: Option<&ScopeFilter>,
        limit: u32,
    ) -> Result<DeskSummary, StoreError>;

    /// Archives a draft or a completed practice (`archive`), or brings an archived one back
    /// (to the drafts if it was never sent, else to the completed). The domain decides what
    /// is legal; `WrongState` otherwise.
    async fn set_archived(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        archive: bool,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError>;
}

/// The state a practice moves to when archived or brought back, if the domain allows it.
fn archive_target(practice: &Practice, archive: bool) -> Result<PracticeState, StoreError> {
    let event = if archive {
        PracticeEvent::Archive
    } else {
        PracticeEvent::Unarchive { was_submitted: practice.reference.is_some() }
    };
    practice.state.apply(event).map_err(|_| StoreError::WrongState(practice.state))
}

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
    fn millis(self) -> (i64, i64) {
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
        }
    }

    /// Whether the event is something the institution said.
    fn is_news(&self) -> bool {
        matches!(
            self.event,
            DeliveryEvent::Sent { .. } | DeliveryEvent::TakenInCharge { .. } | DeliveryEvent::Outcome { .. }
        )
    }
}

/// What releasing a waiting filing writes: its payload with the values of the answer it waited
/// for, and the timeline's detail (which values, and any the answer did not carry).
fn release_plan(
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
fn merged_values(current: &str, update: &DeliveryUpdate) -> String {
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

/// A browser session as stored: the id itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session id, hex.
    pub id_hash: String,
    pub holder: CodiceFiscale,
    /// The card's certificate fingerprint: the session only works with that card.
    pub fingerprint: String,
    pub csrf_token: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// Browser sessions, shared by every portal process on the same database.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity (for the idle timeout).
    async fn touch_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Removes sessions idle since `idle_before` or created before `created_before`.
    async fn delete_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError>;
}

/// What must still be told to an institution about a delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Grant,
    Revoke,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "grant" => Some(Self::Grant),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }
}

/// A delegation notice handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationNotice {
    pub delegation: Delegation,
    pub institution: String,
    pub kind: NoticeKind,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// What became of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeAnswer {
    /// The institution registered the delegation (grant).
    Active { reference: String },
    /// The institution refused it (grant).
    Refused { reason: String },
    /// The institution took note of the revocation.
    Revoked,
    /// Try again at this time (the institution could not be reached).
    Retry { at: OffsetDateTime, reason: String },
}

/// Sub-delegations ("subdeleghe") and what each institution answered.
#[async_trait]
pub trait DelegationStore: Send + Sync + std::fmt::Debug {
    /// Stores a new delegation: every institution of its scope pending, with a grant notice
    /// to send.
    async fn create_delegation(&self, delegation: &Delegation) -> Result<(), StoreError>;

    async fn delegation(&self, id: DelegationId) -> Result<Delegation, StoreError>;

    /// Granted by `grantor`, newest first.
    async fn delegations_granted(&self, grantor: &CodiceFiscale) -> Result<Vec<Delegation>, StoreError>;

    /// Received by `delegate`, newest first.
    async fn delegations_received(&self, delegate: &CodiceFiscale) -> Result<Vec<Delegation>, StoreError>;

    /// Ends a delegation now (revoked or renounced); every institution that did not refuse it
    /// gets a revocation notice. `DelegationEnded` when it had already ended.
    async fn end_delegation(
        &self,
        id: DelegationId,
        ending: Ending,
        now: OffsetDateTime,
    ) -> Result<Delegation, StoreError>;

    /// Marks the expiry of a delegation as recorded; `true` the first time only, so the
    /// audit trail gets one record per expiry whoever notices it first.
    async fn note_expiry(&self, id: DelegationId) -> Result<bool, StoreError>;

    /// Claims up to `limit` notices that are due and not leased, for `lease`.
    async fn claim_delegation_notices(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<DelegationNotice>, StoreError>;

    /// Records what became of a notice of `kind`. A grant answer that arrives after the
    /// delegation ended is kept (the reference), and the revocation still goes out.
    async fn record_notice(
        &self,
        id: DelegationId,
        institution: &str,
        kind: NoticeKind,
        answer: &NoticeAnswer,
    ) -> Result<(), StoreError>;
}

/// The whole storage port.
pub trait Store: PracticeStore + DeliveryQueue + SessionStore + DelegationStore + audit::AuditLog {}

impl<T: PracticeStore + DeliveryQueue + SessionStore + DelegationStore + audit::AuditLog> Store for T {}

/// A delegation as both adapters read it (times in unix milliseconds).
struct DelegationRow {
    id: String,
    grantor_cf: String,
    delegate_cf: String,
    scope: String,
    valid_from: i64,
    valid_until: i64,
    note: String,
    created_at: i64,
    ended: Option<String>,
    ended_at: Option<i64>,
}

/// One institution's answer as both adapters read it.
struct DelegationInstitutionRow {
    delegation_id: String,
    institution: String,
    state: String,
    reference: Option<String>,
    reason: Option<String>,
}

fn from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| StoreError::Corrupt(format!("time {ms}")))
}

/// Unix milliseconds: how stores keep queue times, sessions, delegations and audit times.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Whole delegations from their rows and the institution rows of all of them (read in one
/// query), in the order of `rows`.
fn assemble_delegations(
    rows: Vec<DelegationRow>,
    institutions: Vec<DelegationInstitutionRow>,
) -> Result<Vec<Delegation>, StoreError> {
    let mut by_delegation: std::collections::HashMap<String, Vec<DelegationInstitutionRow>> =
        std::collections::HashMap::new();
    for i in institutions {
        by_delegation.entry(i.delegation_id.clone()).or_default().push(i);
    }
    rows.into_iter()
        .map(|d| {
            let mine = by_delegation.remove(&d.id).unwrap_or_default();
            d.into_delegation(mine)
        })
        .collect()
}

impl DelegationRow {
    fn into_delegation(self, institutions: Vec<DelegationInstitutionRow>) -> Result<Delegation, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("delegation {}: {what}", self.id));
        let institutions = institutions
            .into_iter()
            .map(|r| {
                let state = match r.state.as_str() {
                    "pending" => InstitutionState::Pending,
                    "active" => InstitutionState::Active { reference: r.reference.unwrap_or_default() },
                    "refused" => InstitutionState::Refused { reason: r.reason.unwrap_or_default() },
                    "revoked" => InstitutionState::Revoked,
                    other => return Err(corrupt(&format!("state {other}"))),
                };
                Ok((r.institution, state))
            })
            .collect::<Result<_, _>>()?;
        Ok(Delegation {
            id: DelegationId::parse(&self.id).ok_or_else(|| corrupt("id"))?,
            grantor: CodiceFiscale::parse(&self.grantor_cf).map_err(|_| corrupt("grantor"))?,
            delegate: CodiceFiscale::parse(&self.delegate_cf).map_err(|_| corrupt("delegate"))?,
            scope: serde_json::from_str(&self.scope).map_err(|_| corrupt("scope"))?,
            valid_from: from_millis(self.valid_from)?,
            valid_until: from_millis(self.valid_until)?,
            note: self.note,
            created_at: from_millis(self.created_at)?,
            ended: match (self.ended.as_deref().and_then(Ending::parse), self.ended_at) {
                (Some(ending), Some(at)) => Some((ending, at)),
                _ => None,
            },
            institutions,
        })
    }
}

/// A notice's answer as columns: (state, reference, reason, notice still to send, retry at).
type NoticeColumns = (Option<&'static str>, Option<String>, Option<String>, Option<&'static str>, Option<i64>);

fn notice_columns(kind: NoticeKind, answer: &NoticeAnswer) -> NoticeColumns {
    match answer {
        NoticeAnswer::Active { reference } => (Some("active"), Some(reference.clone()), None, None, None),
        NoticeAnswer::Refused { reason } => (Some("refused"), None, Some(reason.clone()), None, None),
        NoticeAnswer::Revoked => (Some("revoked"), None, None, None, None),
        NoticeAnswer::Retry { at, reason } => {
            (None, None, Some(reason.clone()), Some(kind.as_str()), Some(unix_millis(*at)))
        }
    }
}

/// What an adapter writes after deciding on an event (shared by both adapters).
#[derive(Debug)]
struct RecordPlan {
    recorded: Recorded,
    /// The delivery's new status, when it changed.
    status: Option<DeliveryStatus>,
    /// The worker is done with its claim.
    release_lease: bool,
    /// Log a timeline entry (changes, every worker result and every institution message).
    log: bool,
}

/// The delivery as it stands, read inside the adapter's transaction.
#[derive(Debug)]
struct CurrentDelivery {
    status: DeliveryStatus,
    fence: i64,
}

fn plan_record(current: &CurrentDelivery, update: &DeliveryUpdate) -> RecordPlan {
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

fn event_kind(event: &DeliveryEvent) -> &'static str {
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
fn update_detail(update: &DeliveryUpdate, recorded: &Recorded) -> Value {
    let mut detail = event_detail(&update.event, recorded);
    if let (Value::Object(map), Some(evidence)) = (&mut detail, &update.evidence) {
        map.insert("evidence".into(), evidence.clone());
    }
    detail
}

fn event_detail(event: &DeliveryEvent, recorded: &Recorded) -> Value {
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

fn rejection_json(rejection: &Option<Rejection>) -> Option<String> {
    rejection.as_ref().and_then(|r| serde_json::to_string(r).ok())
}

/// Opens the store that `url` names: `postgres://…` or `postgresql://…` for PostgreSQL;
/// `sqlite://PATH`, `sqlite:PATH` or a plain file path for SQLite (created if missing).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url).await?))
    } else {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        Ok(Arc::new(sqlite::SqliteStore::open(std::path::Path::new(path)).await?))
    }
}

fn session_record(
    id_hash: String,
    holder: String,
    fingerprint: String,
    csrf_token: String,
    created_at: i64,
    last_seen_at: i64,
) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        holder: CodiceFiscale::parse(&holder).map_err(|_| StoreError::Corrupt(format!("session holder {holder}")))?,
        id_hash,
        fingerprint,
        csrf_token,
        created_at,
        last_seen_at,
    })
}

/// A practice row as both adapters read it (ids and JSON as text).
struct PracticeRow {
    id: String,
    owner_cf: String,
    actor_cf: String,
    service_id: String,
    state: String,
    data: String,
    reference: Option<String>,
    needs_resend: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    submitted_at: Option<OffsetDateTime>,
}

impl PracticeRow {
    fn into_practice(self) -> Result<Practice, StoreError> {
        let corrupt = |what: &str, value: &str| StoreError::Corrupt(format!("practice {}: {what} `{value}`", self.id));
        Ok(Practice {
            id: PracticeId::parse(&self.id).ok_or_else(|| corrupt("id", &self.id))?,
            owner: CodiceFiscale::parse(&self.owner_cf).map_err(|_| corrupt("owner", &self.owner_cf))?,
            actor: CodiceFiscale::parse(&self.actor_cf).map_err(|_| corrupt("actor", &self.actor_cf))?,
            state: PracticeState::parse(&self.state).ok_or_else(|| corrupt("state", &self.state))?,
            data: serde_json::from_str(&self.data).map_err(|_| corrupt("data", "not a JSON object of strings"))?,
            reference: match &self.reference {
                Some(r) => Some(ReferenceNumber::parse(r).ok_or_else(|| corrupt("reference", r))?),
                None => None,
            },
            service_id: self.service_id,
            needs_resend: self.needs_resend,
            created_at: self.created_at,
            updated_at: self.updated_at,
            submitted_at: self.submitted_at,
        })
    }
}

/// A delivery row as both adapters read it.
struct DeliveryRow {
    office: Option<String>,
    waits_for: Option<String>,
    news_values: String,
    news_at: Option<i64>,
    institution: String,
    filing_kind: String,
    state: String,
    payload: String,
    updated_at: OffsetDateTime,
    attempts: i64,
    revision: i64,
    protocol_number: Option<String>,
    rejection: Option<String>,
    last_error: Option<String>,
}

impl DeliveryRow {
    fn status(&self) -> Result<DeliveryStatus, StoreError> {
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

    fn into_delivery(self) -> Result<Delivery, StoreError> {
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

fn data_json(data: &PracticeData) -> String {
    // A map of strings always serialises.
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_string())
}

/// The year a submission's reference number belongs to: the Italian calendar year.
fn reference_year(submission: &Submission) -> i32 {
    domain::italian_date(submission.submitted_at).year()
}

/// Ordered list of (version, name, SQL) for a backend.
type Migrations = &'static [(i64, &'static str, &'static str)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_state_stops_the_practice_from_moving_instead_of_being_skipped() {
        let states = |s: &[&str]| s.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        let moved = practice_follows("in_progress", &states(&["accepted", "rejected"])).expect("readable");
        assert_eq!(moved.map(|(next, _)| next), Some(PracticeState::Completed));
        // Without the unreadable row the others would all have outcomes: it must not be dropped.
        let corrupt = practice_follows("in_progress", &states(&["accepted", "lost-in-migration"]));
        assert!(matches!(corrupt, Err(StoreError::Corrupt(m)) if m.contains("lost-in-migration")));
        assert!(matches!(practice_follows("??", &states(&["accepted"])), Err(StoreError::Corrupt(_))));
        assert_eq!(practice_follows("in_progress", &states(&["accepted", "delivered"])).expect("readable"), None);
    }
}
