//! The storage error policy, in one place.
//!
//! Every failure of a store is a [`StoreError`]; database errors are classified once, here,
//! when they leave sqlx (`From<sqlx::Error>`), so that callers decide on the class, never on
//! a driver's code:
//! - **unavailable** (the database cannot be reached, refuses connections, is out of room or
//!   stays busy past its timeout): nothing was changed and the request may be repeated; the
//!   portal answers 503 with `Retry-After`;
//! - **contention** (PostgreSQL's serialization failure `40001` or deadlock `40P01`): the
//!   transaction was rolled back whole; [`retry_contention`] runs it again inside the store, and
//!   only contention that persists past its attempts reaches the caller (as 503);
//! - **corrupt** (a stored row that cannot be decoded into the domain): a bug or a damaged
//!   database, answered 500 and logged with what could not be read; never silently skipped;
//! - **database** (anything else: a broken query, a violated constraint): a bug, answered 500
//!   and logged.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use domain::delivery::DeliveryState;
use domain::practice::PracticeState;

/// How many times a transaction that lost to contention is run in all.
pub const CONTENTION_ATTEMPTS: u32 = 5;

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
    /// The database cannot be reached or is too busy now; nothing was changed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The transaction lost to a concurrent one (serialization failure or deadlock) every
    /// time it was tried; nothing was changed.
    #[error("database contention: {0}")]
    Contention(String),
    /// A migration already applied to this database is not the one this build carries: the
    /// schema and the code would disagree, so the store refuses to open.
    #[error(
        "migration {version} ({name}) was changed after it was applied to this database \
         (stored checksum {stored}, this build's {expected}); restore the original file or add a new migration"
    )]
    MigrationChanged { version: i64, name: String, stored: String, expected: String },
    /// Any other database failure: a broken query or a violated constraint (a bug).
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Protocol(_) => {
                Self::Unavailable(e.to_string())
            }
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::TypeNotFound { .. } => Self::Corrupt(e.to_string()),
            E::Database(ref db) => match db.code().as_deref().map(|code| {
                let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
                if sqlite {
                    classify_sqlite(code)
                } else {
                    classify_sqlstate(code)
                }
            }) {
                Some(Class::Contention) => Self::Contention(e.to_string()),
                Some(Class::Unavailable) => Self::Unavailable(e.to_string()),
                _ => Self::Database(e),
            },
            other => Self::Database(other),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Contention,
    Unavailable,
    Bug,
}

/// The class of an SQLite result code (an extended code keeps its primary code in the low
/// byte): SQLITE_BUSY 5, SQLITE_LOCKED 6, SQLITE_NOMEM 7, SQLITE_IOERR 10, SQLITE_FULL 13 and
/// SQLITE_CANTOPEN 14 pass; anything else is a bug.
fn classify_sqlite(code: &str) -> Class {
    match code.parse::<u32>().map(|n| n & 0xff) {
        Ok(5 | 6 | 7 | 10 | 13 | 14) => Class::Unavailable,
        _ => Class::Bug,
    }
}

/// The class of a PostgreSQL SQLSTATE.
fn classify_sqlstate(code: &str) -> Class {
    match code {
        "40001" | "40P01" => Class::Contention,
        // Connection exceptions (08), insufficient resources (53), operator intervention
        // (57: shutdown, cannot connect now), system errors (58).
        _ if ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class)) => Class::Unavailable,
        _ => Class::Bug,
    }
}

impl StoreError {
    /// Whether running the same transaction again may succeed.
    pub fn is_contention(&self) -> bool {
        matches!(self, Self::Contention(_))
    }
}

/// Runs `transaction` until it does not lose to contention, at most
/// [`CONTENTION_ATTEMPTS`] times, counting each lost run in `lost`. Each run must be a whole
/// transaction of its own (a lost one was rolled back by the database), so running it again
/// changes nothing twice.
pub async fn retry_contention<T, F, Fut>(lost: &AtomicU64, mut transaction: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match transaction().await {
            Err(e) if e.is_contention() && attempt < CONTENTION_ATTEMPTS => {
                lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, attempt, "transaction lost to contention; running it again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_codes_fall_into_the_classes_callers_act_on() {
        assert_eq!(classify_sqlstate("40001"), Class::Contention, "serialization failure");
        assert_eq!(classify_sqlstate("40P01"), Class::Contention, "deadlock");
        assert_eq!(classify_sqlstate("57P01"), Class::Unavailable, "admin shutdown");
        assert_eq!(classify_sqlstate("08006"), Class::Unavailable, "connection failure");
        assert_eq!(classify_sqlstate("53300"), Class::Unavailable, "too many connections");
        assert_eq!(classify_sqlstate("23505"), Class::Bug, "unique violation");
        assert_eq!(classify_sqlstate("42601"), Class::Bug, "syntax error");
        assert_eq!(classify_sqlite("5"), Class::Unavailable, "SQLITE_BUSY");
        assert_eq!(classify_sqlite("517"), Class::Unavailable, "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(classify_sqlite("13"), Class::Unavailable, "SQLITE_FULL");
        assert_eq!(classify_sqlite("2067"), Class::Bug, "SQLITE_CONSTRAINT_UNIQUE");
    }

    #[test]
    fn connection_failures_are_unavailable_and_decoding_failures_corrupt() {
        assert!(matches!(StoreError::from(sqlx::Error::PoolTimedOut), StoreError::Unavailable(_)));
        assert!(matches!(StoreError::from(sqlx::Error::ColumnNotFound("state".into())), StoreError::Corrupt(_)));
        assert!(matches!(StoreError::from(sqlx::Error::RowNotFound), StoreError::Database(_)));
    }

    #[tokio::test]
    async fn contention_is_retried_until_it_passes_and_then_given_up() {
        let lost = AtomicU64::new(0);
        let mut runs = 0;
        let passed = retry_contention(&lost, || {
            runs += 1;
            let lost = runs < 3;
            async move {
                if lost {
                    Err(StoreError::Contention("40P01".into()))
                } else {
                    Ok(runs)
                }
            }
        })
        .await;
        assert_eq!(passed.ok(), Some(3));
        assert_eq!(lost.load(Ordering::Relaxed), 2, "each lost run is counted");
        let mut runs = 0;
        let given_up: Result<(), _> = retry_contention(&lost, || {
            runs += 1;
            async { Err(StoreError::Contention("40001".into())) }
        })
        .await;
        assert!(given_up.is_err_and(|e| e.is_contention()));
        assert_eq!(runs, CONTENTION_ATTEMPTS);
        let mut runs = 0;
        let other: Result<(), _> = retry_contention(&lost, || {
            runs += 1;
            async { Err(StoreError::NotFound) }
        })
        .await;
        assert!(matches!(other, Err(StoreError::NotFound)));
        assert_eq!(runs, 1, "only contention is retried");
    }
}
