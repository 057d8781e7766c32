//! PostgreSQL adapter, for several portal processes sharing one database.
//!
//! Migrations run under a transaction-scoped advisory lock, so processes starting together
//! apply each migration once. Reference numbers come from an upserted per-year counter row,
//! which PostgreSQL locks for the rest of the transaction: two processes never get the same
//! number.

use async_trait::async_trait;
use domain::identifiers::CodiceFiscale;
use domain::practice::{
    Delivery, Practice, PracticeData, PracticeId, PracticeState, ReferenceNumber, Submission,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use std::str::FromStr;
use time::OffsetDateTime;

use crate::{
    data_json, reference_year, DeliveryRow, Migrations, PracticeQuery, PracticeRow, PracticeStore,
    StoreError,
};

const MIGRATIONS: Migrations = &[(
    1,
    "practices",
    include_str!("../migrations/postgres/0001_practices.sql"),
)];

const PRACTICE_COLUMNS: &str =
    "id::text AS id, owner_cf, service_id, state, data::text AS data, reference, created_at, updated_at, submitted_at";

/// Key of the advisory lock taken while migrating ("sportello" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x73_70_6f_72_74_65_6c;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with explicit options (tests use this to work in a schema of their own).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn practice_row(row: &PgRow) -> Result<PracticeRow, sqlx::Error> {
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

/// Locks the practice row owned by `owner` and returns its state.
async fn lock_owned(
    tx: &mut sqlx::PgConnection,
    owner: &CodiceFiscale,
    id: PracticeId,
) -> Result<PracticeState, StoreError> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM practices WHERE id = $1 AND owner_cf = $2 FOR UPDATE",
    )
    .bind(id.0)
    .bind(owner.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let state = state.ok_or(StoreError::NotFound)?;
    PracticeState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("practice {id}: state `{state}`")))
}

#[async_trait]
impl PracticeStore for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::Executor::execute(&mut *tx, "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",).await?;
        for (version, name, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_none() {
                tracing::info!(version, name, "applying PostgreSQL migration");
                sqlx::Executor::execute(&mut *tx, *sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())")
                    .bind(version)
                    .bind(name)
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
             VALUES ($1, $2, $3, $4, $5::jsonb, NULL, $6, $7, NULL)",
        )
        .bind(p.id.0)
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
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = $1 AND owner_cf = $2"
        ))
        .bind(id.0)
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
        let mut tx = self.pool.begin().await?;
        let state = lock_owned(&mut tx, owner, id).await?;
        if !state.is_editable() {
            return Err(StoreError::WrongState(state));
        }
        sqlx::query("UPDATE practices SET data = $1::jsonb, updated_at = $2 WHERE id = $3 AND state = 'draft'")
            .bind(data_json(data))
            .bind(now)
            .bind(id.0)
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
        let mut tx = self.pool.begin().await?;
        let state = lock_owned(&mut tx, owner, id).await?;
        if state != PracticeState::Draft {
            return Err(StoreError::WrongState(state));
        }
        let year = reference_year(submission);
        let sequence: i64 = sqlx::query_scalar(
            "INSERT INTO reference_counters (year, last) VALUES ($1, 1) \
             ON CONFLICT (year) DO UPDATE SET last = reference_counters.last + 1 RETURNING last",
        )
        .bind(year)
        .fetch_one(&mut *tx)
        .await?;
        let reference = ReferenceNumber {
            year,
            sequence: sequence.unsigned_abs(),
        };
        sqlx::query(
            "UPDATE practices SET state = 'in_progress', data = $1::jsonb, reference = $2, submitted_at = $3, \
             updated_at = $3 WHERE id = $4 AND state = 'draft'",
        )
        .bind(data_json(&submission.data))
        .bind(reference.to_string())
        .bind(submission.submitted_at)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        for (position, filing) in submission.filings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO deliveries (practice_id, institution, position, filing_kind, state, payload, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'queued', $5::jsonb, $6, $6)",
            )
            .bind(id.0)
            .bind(&filing.institution)
            .bind(position as i32)
            .bind(&filing.filing_kind)
            .bind(filing.payload.to_string())
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
            "SELECT d.institution, d.filing_kind, d.state, d.payload::text AS payload, d.updated_at FROM deliveries d \
             JOIN practices p ON p.id = d.practice_id WHERE p.id = $1 AND p.owner_cf = $2 ORDER BY d.position",
        )
        .bind(id.0)
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
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE owner_cf = $1 AND ($2::text IS NULL OR state = $2) \
             ORDER BY updated_at DESC, id LIMIT $3 OFFSET $4"
        ))
        .bind(owner.as_str())
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
