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

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use domain::identifiers::CodiceFiscale;
use domain::practice::{
    Delivery, DeliveryState, Practice, PracticeData, PracticeId, PracticeState, ReferenceNumber,
    Submission,
};
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
    /// A stored row could not be read back into the domain.
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    #[error("database URL not understood: {0}")]
    BadUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Which practices to list.
#[derive(Debug, Clone, Default)]
pub struct PracticeQuery {
    pub state: Option<PracticeState>,
    /// At most this many (capped at 200).
    pub limit: u32,
    pub offset: u32,
}

impl PracticeQuery {
    pub const MAX_LIMIT: u32 = 200;

    fn bounded_limit(&self) -> i64 {
        i64::from(if self.limit == 0 {
            50
        } else {
            self.limit.min(Self::MAX_LIMIT)
        })
    }
}

/// Persistence of practices and their deliveries.
#[async_trait]
pub trait PracticeStore: Send + Sync + std::fmt::Debug {
    /// Brings the schema up to date. Safe to run from several processes at once.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Stores a new draft.
    async fn create_draft(&self, practice: &Practice) -> Result<(), StoreError>;

    /// The practice, if it exists and belongs to `owner`.
    async fn practice(&self, owner: &CodiceFiscale, id: PracticeId)
        -> Result<Practice, StoreError>;

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
    async fn deliveries(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// The owner's practices, most recently changed first.
    async fn list(
        &self,
        owner: &CodiceFiscale,
        query: &PracticeQuery,
    ) -> Result<Vec<Practice>, StoreError>;
}

/// Opens the store that `url` names: `postgres://…` or `postgresql://…` for PostgreSQL;
/// `sqlite://PATH`, `sqlite:PATH` or a plain file path for SQLite (created if missing).
pub async fn connect(url: &str) -> Result<Arc<dyn PracticeStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url).await?))
    } else {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        Ok(Arc::new(
            sqlite::SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    }
}

/// A practice row as both adapters read it (ids and JSON as text).
struct PracticeRow {
    id: String,
    owner_cf: String,
    service_id: String,
    state: String,
    data: String,
    reference: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    submitted_at: Option<OffsetDateTime>,
}

impl PracticeRow {
    fn into_practice(self) -> Result<Practice, StoreError> {
        let corrupt = |what: &str, value: &str| {
            StoreError::Corrupt(format!("practice {}: {what} `{value}`", self.id))
        };
        Ok(Practice {
            id: PracticeId::parse(&self.id).ok_or_else(|| corrupt("id", &self.id))?,
            owner: CodiceFiscale::parse(&self.owner_cf)
                .map_err(|_| corrupt("owner", &self.owner_cf))?,
            state: PracticeState::parse(&self.state)
                .ok_or_else(|| corrupt("state", &self.state))?,
            data: serde_json::from_str(&self.data)
                .map_err(|_| corrupt("data", "not a JSON object of strings"))?,
            reference: match &self.reference {
                Some(r) => Some(ReferenceNumber::parse(r).ok_or_else(|| corrupt("reference", r))?),
                None => None,
            },
            service_id: self.service_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            submitted_at: self.submitted_at,
        })
    }
}

/// A delivery row as both adapters read it.
struct DeliveryRow {
    institution: String,
    filing_kind: String,
    state: String,
    payload: String,
    updated_at: OffsetDateTime,
}

impl DeliveryRow {
    fn into_delivery(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery state `{}`", self.state)))?,
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| StoreError::Corrupt(format!("delivery payload: {e}")))?,
            institution: self.institution,
            filing_kind: self.filing_kind,
            updated_at: self.updated_at,
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
