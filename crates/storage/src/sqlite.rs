//! SQLite adapter: the embedded default.
//!
//! WAL journal, `synchronous = FULL` (an accepted practice survives a power cut), a busy
//! timeout, foreign keys on, and `BEGIN IMMEDIATE` for every write transaction so that a
//! read-then-write never fails on a lock upgrade.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::identifiers::CodiceFiscale;
use domain::practice::{
    Delivery, Practice, PracticeData, PracticeId, PracticeState, ReferenceNumber, Submission,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;

use crate::{
    data_json, reference_year, DeliveryRow, Migrations, PracticeQuery, PracticeRow, PracticeStore,
    StoreError,
};

const MIGRATIONS: Migrations = &[(
    1,
    "practices",
    include_str!("../migrations/sqlite/0001_practices.sql"),
)];

const PRACTICE_COLUMNS: &str =
    "id, owner_cf, service_id, state, data, reference, created_at, updated_at, submitted_at";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn practice_row(row: &SqliteRow) -> Result<PracticeRow, sqlx::Error> {
    Ok(PracticeRow {
        id: row.try_get("id")?,
        owner_cf: row.try_get("owner_cf")?,
        service_id: row.try_get("service_id")?,
        state: row.try_get("state")?,
        data: row.try_get("data")?,
        reference: row.try_get("reference")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        submitted_at: row.try_get("submitted_at")?,
    })
}

/// The current state of a practice owned by `owner`, inside a transaction.
async fn owned_state(
    tx: &mut sqlx::SqliteConnection,
    owner: &CodiceFiscale,
    id: PracticeId,
) -> Result<PracticeState, StoreError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM practices WHERE id = ? AND owner_cf = ?")
            .bind(id.to_string())
            .bind(owner.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let state = state.ok_or(StoreError::NotFound)?;
    PracticeState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("practice {id}: state `{state}`")))
}

#[async_trait]
impl PracticeStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::Executor::execute(&mut *tx, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",).await?;
        for (version, name, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_none() {
                tracing::info!(version, name, "applying SQLite migration");
                sqlx::Executor::execute(&mut *tx, *sql).await?;
                sqlx::query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                )
                .bind(version)
                .bind(name)
                .bind(OffsetDateTime::now_utc())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_draft(&self, p: &Practice) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO practices (id, owner_cf, service_id, state, data, reference, created_at, updated_at, submitted_at) \
             VALUES (?, ?, ?, ?, ?, NULL, ?, ?, NULL)",
        )
        .bind(p.id.to_string())
        .bind(p.owner.as_str())
        .bind(&p.service_id)
        .bind(p.state.as_str())
        .bind(data_json(&p.data))
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn practice(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
    ) -> Result<Practice, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = ? AND owner_cf = ?"
        ))
        .bind(id.to_string())
        .bind(owner.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        practice_row(&row)?.into_practice()
    }

    async fn update_draft(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        data: &PracticeData,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError> {
        let mut tx = self.begin_write().await?;
        let state = owned_state(&mut tx, owner, id).await?;
        if !state.is_editable() {
            return Err(StoreError::WrongState(state));
        }
        sqlx::query(
            "UPDATE practices SET data = ?, updated_at = ? WHERE id = ? AND state = 'draft'",
        )
        .bind(data_json(data))
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.practice(owner, id).await
    }

    async fn submit(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        submission: &Submission,
    ) -> Result<Practice, StoreError> {
        let mut tx = self.begin_write().await?;
        let state = owned_state(&mut tx, owner, id).await?;
        if state != PracticeState::Draft {
            return Err(StoreError::WrongState(state));
        }
        let year = reference_year(submission);
        let sequence: i64 = sqlx::query_scalar(
            "INSERT INTO reference_counters (year, last) VALUES (?, 1) \
             ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
        )
        .bind(year)
        .fetch_one(&mut *tx)
        .await?;
        let reference = ReferenceNumber {
            year,
            sequence: sequence.unsigned_abs(),
        };
        sqlx::query(
            "UPDATE practices SET state = 'in_progress', data = ?, reference = ?, submitted_at = ?, updated_at = ? \
             WHERE id = ? AND state = 'draft'",
        )
        .bind(data_json(&submission.data))
        .bind(reference.to_string())
        .bind(submission.submitted_at)
        .bind(submission.submitted_at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        for (position, filing) in submission.filings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO deliveries (practice_id, institution, position, filing_kind, state, payload, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            )
            .bind(id.to_string())
            .bind(&filing.institution)
            .bind(position as i64)
            .bind(&filing.filing_kind)
            .bind(filing.payload.to_string())
            .bind(submission.submitted_at)
            .bind(submission.submitted_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.practice(owner, id).await
    }

    async fn deliveries(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.institution, d.filing_kind, d.state, d.payload, d.updated_at FROM deliveries d \
             JOIN practices p ON p.id = d.practice_id WHERE p.id = ? AND p.owner_cf = ? ORDER BY d.position",
        )
        .bind(id.to_string())
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                DeliveryRow {
                    institution: r.try_get("institution")?,
                    filing_kind: r.try_get("filing_kind")?,
                    state: r.try_get("state")?,
                    payload: r.try_get("payload")?,
                    updated_at: r.try_get("updated_at")?,
                }
                .into_delivery()
            })
            .collect()
    }

    async fn list(
        &self,
        owner: &CodiceFiscale,
        query: &PracticeQuery,
    ) -> Result<Vec<Practice>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE owner_cf = ? AND (? IS NULL OR state = ?) \
             ORDER BY updated_at DESC, id LIMIT ? OFFSET ?"
        ))
        .bind(owner.as_str())
        .bind(query.state.map(PracticeState::as_str))
        .bind(query.state.map(PracticeState::as_str))
        .bind(query.bounded_limit())
        .bind(i64::from(query.offset))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| practice_row(r)?.into_practice())
            .collect()
    }
}
