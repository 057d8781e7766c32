//! PostgreSQL adapter, for several portal and worker processes sharing one database.
//!
//! Migrations run under a transaction-scoped advisory lock, so processes starting together
//! apply each migration once. Reference numbers come from an upserted per-year counter row,
//! which PostgreSQL locks for the rest of the transaction: two processes never get the same
//! number. Workers claim deliveries with `FOR UPDATE SKIP LOCKED`, so two workers never take
//! the same delivery at the same time, and every change to a delivery locks its row first.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::delivery::{DeliveryEvent, DeliveryState, DeliveryStatus};
use domain::identifiers::CodiceFiscale;
use domain::practice::{
    Delivery, Practice, PracticeData, PracticeEvent, PracticeId, PracticeState, ReferenceNumber, Submission,
};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;

use crate::{
    data_json, event_kind, plan_record, reference_year, rejection_json, unix_millis, update_detail, ClaimedDelivery,
    CurrentDelivery, DeliveryKey, DeliveryQueue, DeliveryRow, DeliveryUpdate, Migrations, PollItem, PollPace,
    PracticeQuery, PracticeRow, PracticeSearch, PracticeStore, Recorded, SearchPage, StoreError, TimelineEntry,
};

const MIGRATIONS: Migrations = &[
    (1, "practices", include_str!("../migrations/postgres/0001_practices.sql")),
    (2, "deliveries", include_str!("../migrations/postgres/0002_deliveries.sql")),
    (3, "sessions", include_str!("../migrations/postgres/0003_sessions.sql")),
    (4, "search", include_str!("../migrations/postgres/0004_search.sql")),
    (5, "audit", include_str!("../migrations/postgres/0005_audit.sql")),
    (6, "delegations", include_str!("../migrations/postgres/0006_delegations.sql")),
    (7, "delegation expiry", include_str!("../migrations/postgres/0007_delegation_expiry.sql")),
    (8, "channel news", include_str!("../migrations/postgres/0008_channel_news.sql")),
    (9, "delivery office", include_str!("../migrations/postgres/0009_delivery_office.sql")),
    (10, "waiting filings", include_str!("../migrations/postgres/0010_waiting_filings.sql")),
];

const PRACTICE_COLUMNS: &str = "id::text AS id, owner_cf, COALESCE(actor_cf, owner_cf) AS actor_cf, service_id, state, data::text AS data, reference, \
     needs_resend, created_at, updated_at, submitted_at";

const DELIVERY_COLUMNS: &str = "d.institution, d.filing_kind, d.state, d.payload::text AS payload, d.updated_at, \
     d.attempts::bigint AS attempts, d.revision::bigint AS revision, d.protocol_number, d.rejection::text AS rejection, \
     d.last_error, d.news_values, d.news_at, d.office, d.waits_for";

/// The columns of a [`PollItem`], from a delivery `d` and its practice `p`.
const POLL_ITEM_SELECT: &str = "SELECT d.practice_id::text AS practice_id, d.institution, d.revision::bigint AS revision, \
     p.owner_cf, p.service_id, p.reference, d.filing_kind, d.status_url, d.office FROM deliveries d JOIN practices p ON p.id = d.practice_id";

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
            .acquire_timeout(Duration::from_secs(10))
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
        actor_cf: row.try_get("actor_cf")?,
        service_id: row.try_get("service_id")?,
        state: row.try_get("state")?,
        data: row.try_get("data")?,
        reference: row.try_get("reference")?,
        needs_resend: row.try_get("needs_resend")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        submitted_at: row.try_get("submitted_at")?,
    })
}

fn delivery_row(r: &PgRow) -> Result<DeliveryRow, sqlx::Error> {
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
async fn release_dependants(tx: &mut PgConnection, key: &DeliveryKey, at: OffsetDateTime) -> Result<(), StoreError> {
    let first =
        sqlx::query("SELECT protocol_number, news_values FROM deliveries WHERE practice_id = $1 AND institution = $2")
            .bind(key.practice_id.0)
            .bind(&key.institution)
            .fetch_one(&mut *tx)
            .await?;
    let protocol: Option<String> = first.try_get("protocol_number")?;
    let values: String = first.try_get("news_values")?;
    let waiting = sqlx::query(
        "SELECT institution, payload::text AS payload, uses FROM deliveries \
         WHERE practice_id = $1 AND waits_for = $2 AND state = 'waiting' ORDER BY position FOR UPDATE",
    )
    .bind(key.practice_id.0)
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
            "UPDATE deliveries SET state = 'queued', payload = $1::jsonb, attempts = 0, next_attempt_at = NULL, \
             lease_until = NULL, updated_at = $2 WHERE practice_id = $3 AND institution = $4",
        )
        .bind(payload)
        .bind(at)
        .bind(key.practice_id.0)
        .bind(&dependant.institution)
        .execute(&mut *tx)
        .await?;
        log_event(tx, &dependant, at, "released", DeliveryState::Queued, &detail, None).await?;
    }
    Ok(())
}

/// A polled or silent delivery from a [`POLL_ITEM_SELECT`] row.
fn poll_item(r: &PgRow) -> Result<PollItem, StoreError> {
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

/// Locks the practice row owned by `owner` and returns its state.
async fn lock_owned(tx: &mut PgConnection, owner: &CodiceFiscale, id: PracticeId) -> Result<PracticeState, StoreError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM practices WHERE id = $1 AND owner_cf = $2 FOR UPDATE")
            .bind(id.0)
            .bind(owner.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let state = state.ok_or(StoreError::NotFound)?;
    PracticeState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("practice {id}: state `{state}`")))
}

async fn log_event(
    tx: &mut PgConnection,
    key: &DeliveryKey,
    at: OffsetDateTime,
    kind: &str,
    state: DeliveryState,
    detail: &Value,
    message_id: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO delivery_events (practice_id, institution, at, kind, state, detail, message_id) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
    )
    .bind(key.practice_id.0)
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

/// Moves the practice if its deliveries now call for it (all failed, or all with an outcome).
async fn follow_deliveries(tx: &mut PgConnection, id: PracticeId, at: OffsetDateTime) -> Result<(), StoreError> {
    let current: String = sqlx::query_scalar("SELECT state FROM practices WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE practice_id = $1")
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?;
    let Some((next, event)) = crate::practice_follows(&current, &states)? else {
        return Ok(());
    };
    sqlx::query("UPDATE practices SET state = $1, needs_resend = $2, updated_at = $3 WHERE id = $4")
        .bind(next.as_str())
        .bind(event == PracticeEvent::NoRecipientReached)
        .bind(at)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn write_status(
    tx: &mut PgConnection,
    key: &DeliveryKey,
    status: &DeliveryStatus,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET state = $1, protocol_number = $2, rejection = $3::jsonb, last_error = $4, revision = $5, \
         updated_at = $6 WHERE practice_id = $7 AND institution = $8",
    )
    .bind(status.state.as_str())
    .bind(&status.protocol_number)
    .bind(rejection_json(&status.rejection))
    .bind(&status.last_error)
    .bind(i32::try_from(status.revision).unwrap_or(i32::MAX))
    .bind(at)
    .bind(key.practice_id.0)
    .bind(&key.institution)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn locked_delivery(tx: &mut PgConnection, key: &DeliveryKey) -> Result<PgRow, StoreError> {
    sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS}, d.fence FROM deliveries d WHERE d.practice_id = $1 AND d.institution = $2 FOR UPDATE"
    ))
    .bind(key.practice_id.0)
    .bind(&key.institution)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)
}

#[async_trait]
impl PracticeStore for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        sqlx::Executor::execute(
            &mut *tx,
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
        )
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
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
            "INSERT INTO practices (id, owner_cf, service_id, state, data, reference, created_at, updated_at, submitted_at, \
             actor_cf) VALUES ($1, $2, $3, $4, $5::jsonb, NULL, $6, $7, NULL, $8)",
        )
        .bind(p.id.0)
        .bind(p.owner.as_str())
        .bind(&p.service_id)
        .bind(p.state.as_str())
        .bind(data_json(&p.data))
        .bind(p.created_at)
        .bind(p.updated_at)
        .bind(p.actor.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn practice(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Practice, StoreError> {
        let row = sqlx::query(&format!("SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = $1 AND owner_cf = $2"))
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
        let existing: Option<String> =
            sqlx::query_scalar("SELECT reference FROM practices WHERE id = $1").bind(id.0).fetch_one(&mut *tx).await?;
        // Sent before and returned to the drafts: keep the reference number.
        let reference = match existing {
            Some(r) => r,
            None => {
                let year = reference_year(submission);
                let sequence: i64 = sqlx::query_scalar(
                    "INSERT INTO reference_counters (year, last) VALUES ($1, 1) \
                     ON CONFLICT (year) DO UPDATE SET last = reference_counters.last + 1 RETURNING last",
                )
                .bind(year)
                .fetch_one(&mut *tx)
                .await?;
                ReferenceNumber { year, sequence: sequence.unsigned_abs() }.to_string()
            }
        };
        sqlx::query(
            "UPDATE practices SET state = 'in_progress', data = $1::jsonb, reference = $2, needs_resend = FALSE, \
             submitted_at = $3, updated_at = $3, actor_cf = $5 WHERE id = $4 AND state = 'draft'",
        )
        .bind(data_json(&submission.data))
        .bind(&reference)
        .bind(submission.submitted_at)
        .bind(id.0)
        .bind(submission.actor.as_str())
        .execute(&mut *tx)
        .await?;
        for (position, filing) in submission.filings.iter().enumerate() {
            // A delivery sent before keeps its revision (same idempotency key) unless its
            // filing changed.
            sqlx::query(
                "INSERT INTO deliveries (practice_id, institution, position, filing_kind, state, payload, created_at, updated_at, \
                 actor_cf, office, waits_for, uses) VALUES ($1, $2, $3, $4, $9, $5::jsonb, $6, $6, $7, $8, $10, $11) \
                 ON CONFLICT (practice_id, institution) DO UPDATE SET \
                   revision = CASE WHEN deliveries.payload = excluded.payload THEN deliveries.revision ELSE deliveries.revision + 1 END, \
                   payload = excluded.payload, state = excluded.state, attempts = 0, next_attempt_at = NULL, lease_until = NULL, \
                   last_error = NULL, rejection = NULL, updated_at = excluded.updated_at, actor_cf = excluded.actor_cf, \
                   office = excluded.office, status_url = NULL, news_at = NULL, polls = 0, \
                   waits_for = excluded.waits_for, uses = excluded.uses",
            )
            .bind(id.0)
            .bind(&filing.institution)
            .bind(i32::try_from(position).unwrap_or(i32::MAX))
            .bind(&filing.filing_kind)
            .bind(filing.payload.to_string())
            .bind(submission.submitted_at)
            .bind(submission.actor.as_str())
            .bind(&filing.office)
            .bind(if filing.waits_for.is_some() { "waiting" } else { "queued" })
            .bind(&filing.waits_for)
            .bind(serde_json::to_string(&filing.uses).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
            let key = DeliveryKey { practice_id: id, institution: filing.institution.clone() };
            let detail = serde_json::json!({ "reference": reference });
            log_event(&mut tx, &key, submission.submitted_at, "submitted", DeliveryState::Queued, &detail, None)
                .await?;
        }
        tx.commit().await?;
        self.practice(owner, id).await
    }

    async fn deliveries(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN practices p ON p.id = d.practice_id \
             WHERE p.id = $1 AND p.owner_cf = $2 ORDER BY d.position"
        ))
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| delivery_row(r)?.into_delivery()).collect()
    }

    async fn list(&self, owner: &CodiceFiscale, query: &PracticeQuery) -> Result<Vec<Practice>, StoreError> {
        let (services, businesses, actor) = crate::ScopeFilter::params(query.scope.as_ref());
        let rows = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE owner_cf = $1 AND ($2::text IS NULL OR state = $2) \
             AND {} ORDER BY updated_at DESC, id LIMIT $3 OFFSET $4",
            scope_clause(5)
        ))
        .bind(owner.as_str())
        .bind(query.state.map(PracticeState::as_str))
        .bind(query.bounded_limit())
        .bind(i64::from(query.offset))
        .bind(services)
        .bind(businesses)
        .bind(actor)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| practice_row(r)?.into_practice()).collect()
    }

    async fn desk_summary(
        &self,
        owner: &CodiceFiscale,
        scope: Option<&crate::ScopeFilter>,
        limit: u32,
    ) -> Result<crate::DeskSummary, StoreError> {
        let (services, businesses, actor) = crate::ScopeFilter::params(scope);
        // Every query is confined to the owner's practices within the scope: parameters 1 to 4.
        macro_rules! mine {
            ($query:expr) => {
                $query.bind(owner.as_str()).bind(services.clone()).bind(businesses.clone()).bind(actor.clone())
            };
        }
        let mine = format!("owner_cf = $1 AND {}", scope_clause(2));
        let counts: Vec<(String, i64)> =
            mine!(sqlx::query_as(&format!("SELECT state, COUNT(*) FROM practices WHERE {mine} GROUP BY state")))
                .fetch_all(&self.pool)
                .await?;
        let to_resend: Vec<Option<String>> = mine!(sqlx::query_scalar(&format!(
            "SELECT reference FROM practices WHERE {mine} AND state = 'draft' AND needs_resend \
             ORDER BY updated_at DESC, id LIMIT $5"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        // The practices are filtered first, so that the scope's columns are theirs alone.
        let rows = mine!(sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS}, p.reference AS practice_reference FROM deliveries d \
             JOIN (SELECT id, reference, updated_at FROM practices WHERE {mine} \
                   AND state IN ('in_progress', 'completed')) p ON p.id = d.practice_id \
             WHERE d.state IN ({}) ORDER BY p.updated_at DESC, p.id, d.position LIMIT $5",
            crate::NEEDS_THE_OWNER
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let attention = rows
            .iter()
            .map(|r| {
                let reference: Option<String> = r.try_get("practice_reference")?;
                Ok((reference.unwrap_or_default(), delivery_row(r)?.into_delivery()?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        crate::DeskSummary::from_rows(counts, to_resend, attention)
    }

    async fn search(&self, owner: &CodiceFiscale, search: &PracticeSearch) -> Result<SearchPage, StoreError> {
        // One WHERE clause for the page and the count.
        let filter = "owner_cf = $1 \
             AND ($2::text IS NULL OR reference = $2 OR business_cf = $2 OR business_name LIKE $3 ESCAPE '\\' \
                  OR id IN (SELECT practice_id FROM deliveries WHERE protocol_number IN ($2, $4))) \
             AND ($5::text IS NULL OR service_id = $5) AND ($6::text IS NULL OR state = $6) \
             AND ($7::timestamptz IS NULL OR submitted_at >= $7) AND ($8::timestamptz IS NULL OR submitted_at < $8) \
             AND {SCOPE}";
        let filter = filter.replace("{SCOPE}", &scope_clause(9));
        let (services, businesses, actor) = crate::ScopeFilter::params(search.scope.as_ref());
        let terms = search.text_terms();
        let raw = search.text.as_deref().map(str::trim);
        macro_rules! bind_filter {
            ($query:expr) => {
                $query
                    .bind(owner.as_str())
                    .bind(terms.as_ref().map(|t| t.0.clone()))
                    .bind(terms.as_ref().map(|t| t.1.clone()))
                    .bind(raw)
                    .bind(search.service.as_deref())
                    .bind(search.state.map(PracticeState::as_str))
                    .bind(search.submitted_from)
                    .bind(search.submitted_before)
                    .bind(services.clone())
                    .bind(businesses.clone())
                    .bind(actor.clone())
            };
        }
        let total: i64 = bind_filter!(sqlx::query_scalar(&format!("SELECT count(*) FROM practices WHERE {filter}")))
            .fetch_one(&self.pool)
            .await?;
        let rows = bind_filter!(sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE {filter} ORDER BY {} LIMIT $12 OFFSET $13",
            search.order_by()
        )))
        .bind(search.bounded_limit())
        .bind(i64::from(search.offset))
        .fetch_all(&self.pool)
        .await?;
        let practices = rows.iter().map(|r| practice_row(r)?.into_practice()).collect::<Result<_, _>>()?;
        Ok(SearchPage { practices, total: total.unsigned_abs() })
    }

    async fn set_archived(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        archive: bool,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = $1 AND owner_cf = $2 FOR UPDATE"
        ))
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let practice = practice_row(&row)?.into_practice()?;
        let next = crate::archive_target(&practice, archive)?;
        sqlx::query("UPDATE practices SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(next.as_str())
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.practice(owner, id).await
    }
}

#[async_trait]
impl DeliveryQueue for PostgresStore {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let until = now + lease;
        let rows = sqlx::query(
            "WITH due AS ( \
               SELECT practice_id, institution FROM deliveries \
               WHERE state = 'queued' AND COALESCE(next_attempt_at, '-infinity') <= $1 \
                 AND COALESCE(lease_until, '-infinity') <= $1 \
               ORDER BY COALESCE(next_attempt_at, '-infinity') LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET lease_until = $3, fence = d.fence + 1, attempts = d.attempts + 1 \
             FROM due, practices p \
             WHERE d.practice_id = due.practice_id AND d.institution = due.institution AND p.id = d.practice_id \
             RETURNING d.practice_id::text AS practice_id, d.institution, d.fence, d.attempts::bigint AS attempts, \
               d.revision::bigint AS revision, d.filing_kind, d.payload::text AS payload, p.owner_cf, COALESCE(d.actor_cf, p.owner_cf) AS actor_cf, \
               p.reference, p.service_id, d.office",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let practice_id: String = r.try_get("practice_id")?;
                let owner: String = r.try_get("owner_cf")?;
                let actor: String = r.try_get("actor_cf")?;
                let payload: String = r.try_get("payload")?;
                Ok(ClaimedDelivery {
                    actor: CodiceFiscale::parse(&actor).map_err(|_| StoreError::Corrupt(format!("actor {actor}")))?,
                    key: DeliveryKey {
                        practice_id: PracticeId::parse(&practice_id)
                            .ok_or_else(|| StoreError::Corrupt(format!("id {practice_id}")))?,
                        institution: r.try_get("institution")?,
                    },
                    fence: r.try_get("fence")?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    revision: u32::try_from(r.try_get::<i64, _>("revision")?).unwrap_or(0),
                    filing_kind: r.try_get("filing_kind")?,
                    payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    reference: r.try_get::<Option<String>, _>("reference")?.unwrap_or_default(),
                    owner: CodiceFiscale::parse(&owner).map_err(|_| StoreError::Corrupt(format!("owner {owner}")))?,
                    service_id: r.try_get("service_id")?,
                    office: r.try_get("office")?,
                })
            })
            .collect()
    }

    async fn claim_for_poll(
        &self,
        institution: &str,
        now: OffsetDateTime,
        pace: PollPace,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let (first_ms, max_ms) = pace.millis();
        let rows = sqlx::query(&format!(
            "WITH due AS ( \
               SELECT practice_id, institution FROM deliveries \
               WHERE institution = $1 AND state IN ('delivered', 'taken_in_charge') \
                 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $2 \
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE deliveries d SET polls = d.polls + 1, next_attempt_at = $2 + make_interval(secs => \
                 LEAST($5::bigint, $4::bigint * (1::bigint << LEAST(d.polls, 20)))::double precision / 1000.0) \
               FROM due WHERE d.practice_id = due.practice_id AND d.institution = due.institution \
               RETURNING d.practice_id, d.institution) \
             {} JOIN claimed c ON c.practice_id = d.practice_id AND c.institution = d.institution",
            POLL_ITEM_SELECT
        ))
        .bind(institution)
        .bind(now)
        .bind(i64::from(limit))
        .bind(first_ms)
        .bind(max_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(poll_item).collect()
    }

    async fn silent_since(
        &self,
        institution: &str,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "{POLL_ITEM_SELECT} WHERE d.institution = $1 AND d.state IN ('delivered', 'taken_in_charge') \
             AND d.news_at IS NOT NULL AND d.news_at <= $2 ORDER BY d.news_at LIMIT $3"
        ))
        .bind(institution)
        .bind(crate::unix_millis(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(poll_item).collect()
    }

    async fn record(&self, key: &DeliveryKey, update: &DeliveryUpdate) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = locked_delivery(&mut tx, key).await?;
        if let Some(message_id) = &update.message_id {
            let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM delivery_events WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(&mut *tx)
                .await?;
            if seen.is_some() {
                return Ok(Recorded::Duplicate);
            }
        }
        let current = CurrentDelivery { status: delivery_row(&row)?.status()?, fence: row.try_get("fence")? };
        let plan = plan_record(&current, update);
        if let Some(status) = &plan.status {
            write_status(&mut tx, key, status, update.at).await?;
        }
        if plan.recorded != Recorded::LostLease && (update.is_news() || update.status_url.is_some()) {
            let current_values: String = row.try_get("news_values")?;
            let news_at = plan.status.as_ref().filter(|_| update.is_news()).map(|_| crate::unix_millis(update.at));
            sqlx::query(
                "UPDATE deliveries SET news_at = COALESCE($1, news_at), status_url = COALESCE($2, status_url), \
                 news_values = $3 WHERE practice_id = $4 AND institution = $5",
            )
            .bind(news_at)
            .bind(&update.status_url)
            .bind(crate::merged_values(&current_values, update))
            .bind(key.practice_id.0)
            .bind(&key.institution)
            .execute(&mut *tx)
            .await?;
        }
        if plan.status.as_ref().is_some_and(|s| s.state == DeliveryState::Accepted) {
            release_dependants(&mut tx, key, update.at).await?;
        }
        if plan.release_lease {
            let retry = update.next_at;
            sqlx::query(
                "UPDATE deliveries SET lease_until = NULL, next_attempt_at = $1 WHERE practice_id = $2 AND institution = $3",
            )
            .bind(retry)
            .bind(key.practice_id.0)
            .bind(&key.institution)
            .execute(&mut *tx)
            .await?;
        }
        if plan.log {
            let state = plan.status.as_ref().map_or(current.status.state, |s| s.state);
            let detail = update_detail(update, &plan.recorded);
            log_event(&mut tx, key, update.at, event_kind(&update.event), state, &detail, update.message_id.as_deref())
                .await?;
        }
        if plan.status.is_some() {
            follow_deliveries(&mut tx, key.practice_id, update.at).await?;
        }
        tx.commit().await?;
        Ok(plan.recorded)
    }

    async fn resend(
        &self,
        owner: &CodiceFiscale,
        key: &DeliveryKey,
        correction: Option<(&PracticeData, &Value)>,
        now: OffsetDateTime,
    ) -> Result<Delivery, StoreError> {
        let mut tx = self.pool.begin().await?;
        let practice_state = lock_owned(&mut tx, owner, key.practice_id).await?;
        let practice_next =
            practice_state.apply(PracticeEvent::Resent).map_err(|_| StoreError::WrongState(practice_state))?;
        let row = locked_delivery(&mut tx, key).await?;
        let status = delivery_row(&row)?.status()?;
        let event = if correction.is_some() { DeliveryEvent::ResendCorrected } else { DeliveryEvent::Resend };
        let next = match domain::delivery::apply(&status, &event) {
            Ok(domain::delivery::Applied::Changed(next)) => next,
            _ => return Err(StoreError::WrongDeliveryState(status.state)),
        };
        write_status(&mut tx, key, &next, now).await?;
        sqlx::query(
            "UPDATE deliveries SET attempts = 0, next_attempt_at = NULL, lease_until = NULL, polls = 0, \
             status_url = NULL, news_at = NULL WHERE practice_id = $1 AND institution = $2",
        )
        .bind(key.practice_id.0)
        .bind(&key.institution)
        .execute(&mut *tx)
        .await?;
        if let Some((data, payload)) = correction {
            sqlx::query("UPDATE deliveries SET payload = $1::jsonb WHERE practice_id = $2 AND institution = $3")
                .bind(payload.to_string())
                .bind(key.practice_id.0)
                .bind(&key.institution)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE practices SET data = $1::jsonb WHERE id = $2")
                .bind(data_json(data))
                .bind(key.practice_id.0)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE practices SET state = $1, needs_resend = FALSE, updated_at = $2 WHERE id = $3")
            .bind(practice_next.as_str())
            .bind(now)
            .bind(key.practice_id.0)
            .execute(&mut *tx)
            .await?;
        log_event(
            &mut tx,
            key,
            now,
            event_kind(&event),
            next.state,
            &serde_json::json!({ "revision": next.revision }),
            None,
        )
        .await?;
        let row = locked_delivery(&mut tx, key).await?;
        tx.commit().await?;
        delivery_row(&row)?.into_delivery()
    }

    async fn service_of(&self, id: PracticeId) -> Result<String, StoreError> {
        let service: Option<String> = sqlx::query_scalar("SELECT service_id FROM practices WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        service.ok_or(StoreError::NotFound)
    }

    async fn timeline(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.institution, e.at, e.kind, e.state, e.detail::text AS detail FROM delivery_events e \
             JOIN practices p ON p.id = e.practice_id WHERE p.id = $1 AND p.owner_cf = $2 ORDER BY e.id",
        )
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                let detail: String = r.try_get("detail")?;
                Ok(TimelineEntry {
                    institution: r.try_get("institution")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    state: DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?,
                    detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl crate::SessionStore for PostgresStore {
    async fn create_session(&self, session: &crate::SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, holder_cf, fingerprint, csrf_token, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.id_hash)
        .bind(session.holder.as_str())
        .bind(&session.fingerprint)
        .bind(&session.csrf_token)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<crate::SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, holder_cf, fingerprint, csrf_token, created_at, last_seen_at FROM sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            crate::session_record(
                r.try_get("id_hash")?,
                r.try_get("holder_cf")?,
                r.try_get("fingerprint")?,
                r.try_get("csrf_token")?,
                r.try_get("created_at")?,
                r.try_get("last_seen_at")?,
            )
        })
        .transpose()
    }

    async fn touch_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $1")
            .bind(now_ms)
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Key of the advisory lock that serialises audit appends ("audit" in ASCII).
const AUDIT_LOCK: i64 = 0x61_75_64_69_74;

#[async_trait]
impl crate::audit::AuditLog for PostgresStore {
    async fn append_audit(
        &self,
        record: &crate::audit::NewAuditRecord,
    ) -> Result<crate::audit::AuditRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One append at a time across every process: each needs the previous hash.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut *tx).await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&mut *tx).await?;
        let head = match head {
            Some(row) => Some(crate::audit::AuditHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? }),
            None => None,
        };
        let r = crate::audit::next_record(head.as_ref(), record);
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, actor, responsible, action, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.seq)
        .bind(r.at_ms)
        .bind(&r.actor)
        .bind(&r.responsible)
        .bind(&r.action)
        .bind(&r.detail)
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash")
            .bind(r.seq)
            .bind(&r.hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, responsible, action, detail, prev_hash, hash FROM audit_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(audit_row(r)?)).collect()
    }

    async fn audit_head(&self) -> Result<Option<crate::audit::AuditHead>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(row) => Some(crate::audit::AuditHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? }),
            None => None,
        })
    }

    async fn audit_for(&self, responsible: &str, limit: u32) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, responsible, action, detail, prev_hash, hash FROM audit_log \
             WHERE responsible = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(responsible)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(audit_row(r)?)).collect()
    }
}

fn audit_row(r: &PgRow) -> Result<crate::audit::AuditRecord, sqlx::Error> {
    Ok(crate::audit::AuditRecord {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at_ms")?,
        actor: r.try_get("actor")?,
        responsible: r.try_get("responsible")?,
        action: r.try_get("action")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// The sub-delegation filter with its three parameters numbered from `n`.
fn scope_clause(n: u8) -> String {
    let (s, b, a) = (n, n + 1, n + 2);
    format!(
        "(${s}::text IS NULL OR (service_id IN (SELECT jsonb_array_elements_text(${s}::jsonb)) \
          AND (business_cf IN (SELECT jsonb_array_elements_text(${b}::jsonb)) \
               OR (business_cf IS NULL AND actor_cf = ${a}::text))))"
    )
}

const DELEGATION_COLUMNS: &str =
    "id, grantor_cf, delegate_cf, scope, valid_from, valid_until, note, created_at, ended, ended_at";

fn delegation_row(r: &PgRow) -> Result<crate::DelegationRow, sqlx::Error> {
    Ok(crate::DelegationRow {
        id: r.try_get("id")?,
        grantor_cf: r.try_get("grantor_cf")?,
        delegate_cf: r.try_get("delegate_cf")?,
        scope: r.try_get("scope")?,
        valid_from: r.try_get("valid_from")?,
        valid_until: r.try_get("valid_until")?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
        ended: r.try_get("ended")?,
        ended_at: r.try_get("ended_at")?,
    })
}

/// Reads whole delegations for the rows given: their institutions in one query.
async fn delegations_of(
    conn: &mut PgConnection,
    rows: Vec<PgRow>,
) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
    let rows = rows.iter().map(delegation_row).collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(&rows.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let institutions = sqlx::query(
        "SELECT delegation_id, institution, state, reference, reason FROM delegation_institutions \
         WHERE delegation_id IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY institution",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(crate::DelegationInstitutionRow {
            delegation_id: r.try_get("delegation_id")?,
            institution: r.try_get("institution")?,
            state: r.try_get("state")?,
            reference: r.try_get("reference")?,
            reason: r.try_get("reason")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    crate::assemble_delegations(rows, institutions)
}

impl PostgresStore {
    /// Delegations whose `column` (`grantor_cf` or `delegate_cf`) is `who`, newest first.
    async fn delegations_by(
        &self,
        column: &'static str,
        who: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {DELEGATION_COLUMNS} FROM delegations WHERE {column} = $1 ORDER BY created_at DESC, id LIMIT 500"
        ))
        .bind(who.as_str())
        .fetch_all(&mut *conn)
        .await?;
        delegations_of(&mut conn, rows).await
    }
}

#[async_trait]
impl crate::DelegationStore for PostgresStore {
    async fn create_delegation(&self, d: &domain::delegation::Delegation) -> Result<(), StoreError> {
        let scope = serde_json::to_string(&d.scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO delegations (id, grantor_cf, delegate_cf, scope, valid_from, valid_until, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(d.id.to_string())
        .bind(d.grantor.as_str())
        .bind(d.delegate.as_str())
        .bind(scope)
        .bind(unix_millis(d.valid_from))
        .bind(unix_millis(d.valid_until))
        .bind(&d.note)
        .bind(unix_millis(d.created_at))
        .execute(&mut *tx)
        .await?;
        for institution in &d.scope.institutions {
            sqlx::query(
                "INSERT INTO delegation_institutions (delegation_id, institution, state, notice) \
                 VALUES ($1, $2, 'pending', 'grant')",
            )
            .bind(d.id.to_string())
            .bind(institution)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delegation(
        &self,
        id: domain::delegation::DelegationId,
    ) -> Result<domain::delegation::Delegation, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = $1"))
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
        delegations_of(&mut conn, rows).await?.pop().ok_or(StoreError::NotFound)
    }

    async fn delegations_granted(
        &self,
        grantor: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        self.delegations_by("grantor_cf", grantor).await
    }

    async fn delegations_received(
        &self,
        delegate: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        self.delegations_by("delegate_cf", delegate).await
    }

    async fn end_delegation(
        &self,
        id: domain::delegation::DelegationId,
        ending: domain::delegation::Ending,
        now: OffsetDateTime,
    ) -> Result<domain::delegation::Delegation, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ended: Option<Option<String>> =
            sqlx::query_scalar("SELECT ended FROM delegations WHERE id = $1 FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        match ended {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Err(StoreError::DelegationEnded),
            Some(None) => {}
        }
        sqlx::query("UPDATE delegations SET ended = $1, ended_at = $2 WHERE id = $3")
            .bind(ending.as_str())
            .bind(unix_millis(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE delegation_institutions SET notice = 'revoke', attempts = 0, next_attempt_at = NULL, \
             lease_until = NULL WHERE delegation_id = $1 AND state <> 'refused'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.delegation(id).await
    }

    async fn claim_delegation_notices(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<crate::DelegationNotice>, StoreError> {
        let now_ms = unix_millis(now);
        let until_ms = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "WITH due AS ( \
               SELECT delegation_id, institution FROM delegation_institutions \
               WHERE notice IS NOT NULL AND COALESCE(next_attempt_at, 0) <= $1 AND COALESCE(lease_until, 0) <= $1 \
               ORDER BY COALESCE(next_attempt_at, 0) LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE delegation_institutions d SET lease_until = $3, attempts = d.attempts + 1 FROM due \
             WHERE d.delegation_id = due.delegation_id AND d.institution = due.institution \
             RETURNING d.delegation_id, d.institution, d.notice, d.attempts::bigint AS attempts",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(until_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut notices = Vec::with_capacity(claimed.len());
        for r in &claimed {
            let id: String = r.try_get("delegation_id")?;
            let notice: String = r.try_get("notice")?;
            let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = $1"))
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?;
            let delegation = delegations_of(&mut tx, rows).await?.pop().ok_or(StoreError::NotFound)?;
            notices.push(crate::DelegationNotice {
                delegation,
                institution: r.try_get("institution")?,
                kind: crate::NoticeKind::parse(&notice)
                    .ok_or_else(|| StoreError::Corrupt(format!("notice {notice}")))?,
                attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            });
        }
        tx.commit().await?;
        Ok(notices)
    }

    async fn note_expiry(&self, id: domain::delegation::DelegationId) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE delegations SET expiry_recorded = 1 WHERE id = $1 AND expiry_recorded = 0")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_notice(
        &self,
        id: domain::delegation::DelegationId,
        institution: &str,
        kind: crate::NoticeKind,
        answer: &crate::NoticeAnswer,
    ) -> Result<(), StoreError> {
        let (state, reference, reason, notice, retry_at) = crate::notice_columns(kind, answer);
        // Only the notice that was claimed is settled: a revocation queued meanwhile stays.
        sqlx::query(
            "UPDATE delegation_institutions SET state = COALESCE($1, state), reference = COALESCE($2, reference), \
             reason = $3, notice = CASE WHEN notice = $4 THEN $5 ELSE notice END, \
             next_attempt_at = CASE WHEN notice = $4 THEN $6 ELSE next_attempt_at END, lease_until = NULL \
             WHERE delegation_id = $7 AND institution = $8",
        )
        .bind(state)
        .bind(reference)
        .bind(reason)
        .bind(kind.as_str())
        .bind(notice)
        .bind(retry_at)
        .bind(id.to_string())
        .bind(institution)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
