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
mod changes;
mod delegations;
mod delivery;
mod errors;
mod migrations;
pub mod postgres;
mod practices;
mod sessions;
pub mod sqlite;

use std::sync::Arc;

use time::OffsetDateTime;

pub use changes::{ChangeFeed, FEED_CAPACITY, NOTIFY_CHANNEL};
pub use delegations::*;
pub use delivery::*;
pub use errors::{retry_contention, StoreError, CONTENTION_ATTEMPTS};
pub use practices::*;
pub use sessions::*;

/// The whole storage port.
pub trait Store: PracticeStore + DeliveryQueue + SessionStore + DelegationStore + audit::AuditLog + ChangeFeed {}

impl<T: PracticeStore + DeliveryQueue + SessionStore + DelegationStore + audit::AuditLog + ChangeFeed> Store for T {}

pub(crate) fn from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| StoreError::Corrupt(format!("time {ms}")))
}

/// Unix milliseconds: how stores keep queue times, sessions, delegations and audit times.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;
    use domain::practice::PracticeState;

    #[test]
    fn an_unreadable_state_stops_the_practice_from_moving_instead_of_being_skipped() {
        let states = |s: &[&str]| s.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        let moved = practice_follows("in_progress", &states(&["accepted", "rejected"])).expect("readable");
        assert_eq!(moved, Some(PracticeState::ToCorrect));
        // Without the unreadable row the others would all have outcomes: it must not be dropped.
        let corrupt = practice_follows("in_progress", &states(&["accepted", "lost-in-migration"]));
        assert!(matches!(corrupt, Err(StoreError::Corrupt(m)) if m.contains("lost-in-migration")));
        assert!(matches!(practice_follows("??", &states(&["accepted"])), Err(StoreError::Corrupt(_))));
        assert_eq!(practice_follows("in_progress", &states(&["accepted", "delivered"])).expect("readable"), None);
        assert_eq!(practice_follows("to_correct", &states(&["accepted", "rejected"])).expect("readable"), None);
        let corrected = practice_follows("in_progress", &states(&["accepted", "accepted"])).expect("readable");
        assert_eq!(corrected, Some(PracticeState::Completed));
    }
}
