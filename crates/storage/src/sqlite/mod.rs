//! SQLite adapter: the embedded default.
//!
//! WAL journal, `synchronous = FULL` (an accepted practice survives a power cut), a busy
//! timeout, foreign keys on, and `BEGIN IMMEDIATE` for every write transaction so that a
//! read-then-write never fails on a lock upgrade. Within one process all writes go through a
//! single connection, so writers wait in line rather than in SQLite's busy handler. SQLite has one writer at a time, so claiming
//! deliveries needs no row locks: the immediate transaction serialises workers.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use domain::delivery::{DeliveryState, DeliveryStatus};
use domain::identifiers::CodiceFiscale;
use domain::practice::{PracticeId, PracticeState};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use crate::migrations::Migrations;
use crate::{rejection_json, DeliveryKey, DeliveryRow, PollItem, PracticeRow, StoreError};

const MIGRATIONS: Migrations = &[
    (1, "practices", include_str!("../../migrations/sqlite/0001_practices.sql")),
    (2, "deliveries", include_str!("../../migrations/sqlite/0002_deliveries.sql")),
    (3, "sessions", include_str!("../../migrations/sqlite/0003_sessions.sql")),
    (4, "search", include_str!("../../migrations/sqlite/0004_search.sql")),
    (5, "audit", include_str!("../../migrations/sqlite/0005_audit.sql")),
    (6, "delegations", include_str!("../../migrations/sqlite/0006_delegations.sql")),
    (7, "delegation expiry", include_str!("../../migrations/sqlite/0007_delegation_expiry.sql")),
    (8, "channel news", include_str!("../../migrations/sqlite/0008_channel_news.sql")),
    (9, "delivery office", include_str!("../../migrations/sqlite/0009_delivery_office.sql")),
    (10, "waiting filings", include_str!("../../migrations/sqlite/0010_waiting_filings.sql")),
    (11, "practice states", include_str!("../../migrations/sqlite/0011_practice_states.sql")),
    (12, "delegate name", include_str!("../../migrations/sqlite/0012_delegate_name.sql")),
    (13, "used tokens", include_str!("../../migrations/sqlite/0013_used_tokens.sql")),
    (14, "protocol search", include_str!("../../migrations/sqlite/0014_protocol_search.sql")),
    (15, "name trigrams", include_str!("../../migrations/sqlite/0015_name_trigrams.sql")),
];

const PRACTICE_COLUMNS: &str = "id, owner_cf, COALESCE(actor_cf, owner_cf) AS actor_cf, service_id, state, data, \
     reference, needs_resend, created_at, updated_at, submitted_at";

/// The columns of a [`PollItem`], from a delivery `d` and its practice `p`.
const POLL_ITEM_SELECT: &str =
    "SELECT d.practice_id, d.institution, d.revision, p.owner_cf, p.service_id, p.reference, \
     d.filing_kind, d.status_url, d.office FROM deliveries d JOIN practices p ON p.id = d.practice_id";

const DELIVERY_COLUMNS: &str = "d.institution, d.filing_kind, d.state, d.payload, d.updated_at, d.attempts, \
     d.revision, d.protocol_number, d.rejection, d.last_error, d.news_values, d.news_at, d.office, d.waits_for";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers (WAL lets them run beside the writer).
    pool: SqlitePool,
    /// One connection for every write, shared by group commit: writers of this process queue
    /// here instead of busy-waiting on SQLite's lock; other processes still meet the busy
    /// timeout.
    writer: Arc<GroupWriter>,
    /// Practices changed by this process ([`crate::ChangeFeed`]).
    changes: tokio::sync::broadcast::Sender<PracticeId>,
}

/// The store's settings for the file at `path`.
fn connect_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = connect_options(path)?;
        let writer = GroupWriter::new(sqlx::ConnectOptions::connect(&options).await?);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Ok(Self { pool, writer, changes: crate::changes::feed() })
    }

    /// Announces a committed change of practice `id` to this process's followers.
    fn changed(&self, id: PracticeId) {
        // Nobody following is fine.
        let _ = self.changes.send(id);
    }

    /// Write batches committed by this store so far (group commit: fewer than the writes).
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Runs `job` as one write of the current group-commit batch ([`group_commit`]); answers
    /// once the batch is durable.
    async fn write<T>(
        &self,
        job: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.writer.write(job).await
    }
}

/// Commits per second on the disk holding `path`: `count` one-row transactions, each
/// `BEGIN IMMEDIATE … COMMIT` with the store's own settings. The reference figure for what
/// the portal's intake can reach on that disk (benchmarks only).
pub async fn measure_commit_rate(path: &Path, count: u32) -> Result<f64, StoreError> {
    let mut conn = sqlx::ConnectOptions::connect(&connect_options(path)?).await?;
    sqlx::Executor::execute(&mut conn, "CREATE TABLE IF NOT EXISTS commit_probe (n INTEGER NOT NULL)").await?;
    let started = std::time::Instant::now();
    for n in 0..count {
        let mut tx = sqlx::Connection::begin_with(&mut conn, "BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO commit_probe (n) VALUES (?)").bind(i64::from(n)).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64().max(f64::EPSILON))
}

fn practice_row(row: &SqliteRow) -> Result<PracticeRow, sqlx::Error> {
    Ok(PracticeRow {
        id: row.try_get("id")?,
        owner_cf: row.try_get("owner_cf")?,
        actor_cf: row.try_get("actor_cf")?,
        service_id: row.try_get("service_id")?,
        state: row.try_get("state")?,
        data: row.try_get("data")?,
        reference: row.try_get("reference")?,
        needs_resend: row.try_get::<i64, _>("needs_resend")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        submitted_at: row.try_get("submitted_at")?,
    })
}

fn delivery_row(r: &SqliteRow) -> Result<DeliveryRow, sqlx::Error> {
    Ok(DeliveryRow {
        institution: r.try_get("institution")?,
        filing_kind: r.try_get("filing_kind")?,
        state: r.try_get("state")?,
        payload: r.try_get("payload")?,
        updated_at: r.try_get("updated_at")?,
        attempts: r.try_get("attempts")?,
        revision: r.try_get("revision")?,
        protocol_number: r.try_get("protocol_number")?,
        rejection: r.try_get("rejection")?,
        last_error: r.try_get("last_error")?,
        news_values: r.try_get("news_values")?,
        news_at: r.try_get("news_at")?,
        office: r.try_get("office")?,
        waits_for: r.try_get("waits_for")?,
    })
}

/// Queues the filings that waited for `key`'s answer, now accepted, with its values in their
/// payload.
async fn release_dependants(
    tx: &mut SqliteConnection,
    key: &DeliveryKey,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let first =
        sqlx::query("SELECT protocol_number, news_values FROM deliveries WHERE practice_id = ? AND institution = ?")
            .bind(key.practice_id.to_string())
            .bind(&key.institution)
            .fetch_one(&mut *tx)
            .await?;
    let protocol: Option<String> = first.try_get("protocol_number")?;
    let values: String = first.try_get("news_values")?;
    let waiting = sqlx::query(
        "SELECT institution, payload, uses FROM deliveries WHERE practice_id = ? AND waits_for = ? AND state = 'waiting'",
    )
    .bind(key.practice_id.to_string())
    .bind(&key.institution)
    .fetch_all(&mut *tx)
    .await?;
    for row in &waiting {
        let dependant = DeliveryKey { practice_id: key.practice_id, institution: row.try_get("institution")? };
        let (payload, detail) = crate::release_plan(
            &row.try_get::<String, _>("payload")?,
            &row.try_get::<String, _>("uses")?,
            protocol.as_deref(),
            &values,
        )?;
        sqlx::query(
            "UPDATE deliveries SET state = 'queued', payload = ?, attempts = 0, next_attempt_at = NULL, lease_until = NULL, \
             updated_at = ? WHERE practice_id = ? AND institution = ?",
        )
        .bind(payload)
        .bind(at)
        .bind(key.practice_id.to_string())
        .bind(&dependant.institution)
        .execute(&mut *tx)
        .await?;
        log_event(tx, &dependant, at, "released", DeliveryState::Queued, &detail, None).await?;
    }
    Ok(())
}

/// A polled or silent delivery from a row with practice_id, institution, revision, owner_cf,
/// service_id, reference, filing_kind and status_url.
fn poll_item(r: &SqliteRow) -> Result<PollItem, StoreError> {
    let practice_id: String = r.try_get("practice_id")?;
    let owner: String = r.try_get("owner_cf")?;
    Ok(PollItem {
        key: DeliveryKey {
            practice_id: PracticeId::parse(&practice_id)
                .ok_or_else(|| StoreError::Corrupt(format!("id {practice_id}")))?,
            institution: r.try_get("institution")?,
        },
        revision: u32::try_from(r.try_get::<i64, _>("revision")?).unwrap_or(0),
        owner: CodiceFiscale::parse(&owner).map_err(|_| StoreError::Corrupt(format!("owner {owner}")))?,
        service_id: r.try_get("service_id")?,
        reference: r.try_get::<Option<String>, _>("reference")?.unwrap_or_default(),
        filing_kind: r.try_get("filing_kind")?,
        status_url: r.try_get("status_url")?,
        office: r.try_get("office")?,
    })
}

/// The current state of a practice owned by `owner`, inside a transaction.
async fn owned_state(
    tx: &mut SqliteConnection,
    owner: &CodiceFiscale,
    id: PracticeId,
) -> Result<PracticeState, StoreError> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM practices WHERE id = ? AND owner_cf = ?")
        .bind(id.to_string())
        .bind(owner.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let state = state.ok_or(StoreError::NotFound)?;
    PracticeState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("practice {id}: state `{state}`")))
}

async fn log_event(
    tx: &mut SqliteConnection,
    key: &DeliveryKey,
    at: OffsetDateTime,
    kind: &str,
    state: DeliveryState,
    detail: &Value,
    message_id: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO delivery_events (practice_id, institution, at, kind, state, detail, message_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(key.practice_id.to_string())
    .bind(&key.institution)
    .bind(at)
    .bind(kind)
    .bind(state.as_str())
    .bind(detail.to_string())
    .bind(message_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves the practice to where its deliveries now stand together ([`domain::practice::Progress`]).
async fn follow_deliveries(tx: &mut SqliteConnection, id: PracticeId, at: OffsetDateTime) -> Result<(), StoreError> {
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE practice_id = ?")
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let current: String =
        sqlx::query_scalar("SELECT state FROM practices WHERE id = ?").bind(id.to_string()).fetch_one(&mut *tx).await?;
    let Some(next) = crate::practice_follows(&current, &states)? else {
        return Ok(());
    };
    sqlx::query("UPDATE practices SET state = ?, needs_resend = ?, updated_at = ? WHERE id = ?")
        .bind(next.as_str())
        .bind(i64::from(next == PracticeState::Draft))
        .bind(at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn write_status(
    tx: &mut SqliteConnection,
    key: &DeliveryKey,
    status: &DeliveryStatus,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET state = ?, protocol_number = ?, rejection = ?, last_error = ?, revision = ?, \
         updated_at = ? WHERE practice_id = ? AND institution = ?",
    )
    .bind(status.state.as_str())
    .bind(&status.protocol_number)
    .bind(rejection_json(&status.rejection))
    .bind(&status.last_error)
    .bind(i64::from(status.revision))
    .bind(at)
    .bind(key.practice_id.to_string())
    .bind(&key.institution)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Remembers `tokens` as used, after forgetting those past their time; `false` (and nothing
/// remembered once the transaction rolls back) when one of them is still remembered.
async fn first_use(tx: &mut SqliteConnection, tokens: &[crate::UsedToken], now_ms: i64) -> Result<bool, StoreError> {
    if tokens.is_empty() {
        return Ok(true);
    }
    sqlx::query("DELETE FROM used_tokens WHERE until_ms < ?").bind(now_ms).execute(&mut *tx).await?;
    // Looked up before any is kept: a refused update must leave nothing behind, and under
    // group commit its savepoint is kept unless it fails.
    for token in tokens {
        let seen: Option<i64> = sqlx::query_scalar("SELECT 1 FROM used_tokens WHERE scope = ? AND jti = ?")
            .bind(&token.scope)
            .bind(&token.jti)
            .fetch_optional(&mut *tx)
            .await?;
        if seen.is_some() {
            return Ok(false);
        }
    }
    for token in tokens {
        let inserted = sqlx::query(
            "INSERT INTO used_tokens (scope, jti, until_ms) VALUES (?, ?, ?) ON CONFLICT (scope, jti) DO NOTHING",
        )
        .bind(&token.scope)
        .bind(&token.jti)
        .bind(token.until_ms)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

impl crate::ChangeFeed for SqliteStore {
    fn changes(&self) -> tokio::sync::broadcast::Receiver<PracticeId> {
        self.changes.subscribe()
    }
}

mod audit_log;
mod group_commit;
use group_commit::GroupWriter;
mod delegations;
mod delivery;
mod practices;
mod search;
mod sessions;

/// The sub-delegation filter with its three parameters numbered from `n`.
fn scope_clause(n: u8) -> String {
    let (s, b, a) = (n, n + 1, n + 2);
    format!(
        "(?{s} IS NULL OR (service_id IN (SELECT value FROM json_each(?{s})) \
          AND (business_cf IN (SELECT value FROM json_each(?{b})) OR (business_cf IS NULL AND actor_cf = ?{a}))))"
    )
}
