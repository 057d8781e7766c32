//! SQLite adapter: the embedded default.
//!
//! WAL journal, `synchronous = FULL` (an accepted practice survives a power cut), a busy
//! timeout, foreign keys on, and `BEGIN IMMEDIATE` for every write transaction so that a
//! read-then-write never fails on a lock upgrade. Within one process all writes go through a
//! single connection, so writers wait in line rather than in SQLite's busy handler. SQLite has one writer at a time, so claiming
//! deliveries needs no row locks: the immediate transaction serialises workers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::delivery::{DeliveryEvent, DeliveryState, DeliveryStatus};
use domain::identifiers::CodiceFiscale;
use domain::practice::{
    Delivery, Practice, PracticeData, PracticeEvent, PracticeId, PracticeState, ReferenceNumber, Submission,
};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use crate::{
    data_json, event_kind, merged_values, plan_record, reference_year, rejection_json, unix_millis, update_detail,
    ClaimedDelivery, CurrentDelivery, DeliveryKey, DeliveryQueue, DeliveryRow, DeliveryUpdate, Migrations, PollItem,
    PollPace, PracticeQuery, PracticeRow, PracticeSearch, PracticeStore, Recorded, SearchPage, StoreError,
    TimelineEntry,
};

const MIGRATIONS: Migrations = &[
    (1, "practices", include_str!("../migrations/sqlite/0001_practices.sql")),
    (2, "deliveries", include_str!("../migrations/sqlite/0002_deliveries.sql")),
    (3, "sessions", include_str!("../migrations/sqlite/0003_sessions.sql")),
    (4, "search", include_str!("../migrations/sqlite/0004_search.sql")),
    (5, "audit", include_str!("../migrations/sqlite/0005_audit.sql")),
    (6, "delegations", include_str!("../migrations/sqlite/0006_delegations.sql")),
    (7, "delegation expiry", include_str!("../migrations/sqlite/0007_delegation_expiry.sql")),
    (8, "channel news", include_str!("../migrations/sqlite/0008_channel_news.sql")),
    (9, "delivery office", include_str!("../migrations/sqlite/0009_delivery_office.sql")),
    (10, "waiting filings", include_str!("../migrations/sqlite/0010_waiting_filings.sql")),
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
    /// One connection for every write: writers of this process queue here instead of
    /// busy-waiting on SQLite's lock; other processes still meet the busy timeout.
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Ok(Self { pool, writer })
    }

    /// The pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Commits per second on the disk holding `path`: `count` one-row transactions, each
/// `BEGIN IMMEDIATE … COMMIT` with the store's own settings. The reference figure for what
/// the portal's intake can reach on that disk (benchmarks only).
pub async fn measure_commit_rate(path: &Path, count: u32) -> Result<f64, StoreError> {
    let store = SqliteStore::open(path).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS commit_probe (n INTEGER NOT NULL)").execute(&store.writer).await?;
    let started = std::time::Instant::now();
    for n in 0..count {
        let mut tx = store.begin_write().await?;
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

/// Moves the practice if its deliveries now call for it (all failed, or all with an outcome).
async fn follow_deliveries(tx: &mut SqliteConnection, id: PracticeId, at: OffsetDateTime) -> Result<(), StoreError> {
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE practice_id = ?")
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let current: String =
        sqlx::query_scalar("SELECT state FROM practices WHERE id = ?").bind(id.to_string()).fetch_one(&mut *tx).await?;
    let Some((next, event)) = crate::practice_follows(&current, &states)? else {
        return Ok(());
    };
    sqlx::query("UPDATE practices SET state = ?, needs_resend = ?, updated_at = ? WHERE id = ?")
        .bind(next.as_str())
        .bind(i64::from(event == PracticeEvent::NoRecipientReached))
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

#[async_trait]
impl PracticeStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::Executor::execute(
            &mut *tx,
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_none() {
                tracing::info!(version, name, "applying SQLite migration");
                sqlx::Executor::execute(&mut *tx, *sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
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
            "INSERT INTO practices (id, owner_cf, actor_cf, service_id, state, data, reference, created_at, updated_at, \
             submitted_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL)",
        )
        .bind(p.id.to_string())
        .bind(p.owner.as_str())
        .bind(p.actor.as_str())
        .bind(&p.service_id)
        .bind(p.state.as_str())
        .bind(data_json(&p.data))
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn practice(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Practice, StoreError> {
        let row = sqlx::query(&format!("SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = ? AND owner_cf = ?"))
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
        sqlx::query("UPDATE practices SET data = ?, updated_at = ? WHERE id = ? AND state = 'draft'")
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
        let existing: Option<String> = sqlx::query_scalar("SELECT reference FROM practices WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        // Sent before and returned to the drafts: keep the reference number.
        let reference = match existing {
            Some(r) => r,
            None => {
                let year = reference_year(submission);
                let sequence: i64 = sqlx::query_scalar(
                    "INSERT INTO reference_counters (year, last) VALUES (?, 1) \
                     ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
                )
                .bind(year)
                .fetch_one(&mut *tx)
                .await?;
                ReferenceNumber { year, sequence: sequence.unsigned_abs() }.to_string()
            }
        };
        sqlx::query(
            "UPDATE practices SET state = 'in_progress', data = ?, reference = ?, needs_resend = 0, submitted_at = ?, \
             updated_at = ?, actor_cf = ? WHERE id = ? AND state = 'draft'",
        )
        .bind(data_json(&submission.data))
        .bind(&reference)
        .bind(submission.submitted_at)
        .bind(submission.submitted_at)
        .bind(submission.actor.as_str())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        for (position, filing) in submission.filings.iter().enumerate() {
            let payload = filing.payload.to_string();
            // A delivery sent before keeps its revision (same idempotency key) unless its
            // filing changed.
            sqlx::query(
                "INSERT INTO deliveries (practice_id, institution, position, filing_kind, state, payload, created_at, updated_at, \
                 actor_cf, office, waits_for, uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (practice_id, institution) DO UPDATE SET \
                   revision = CASE WHEN deliveries.payload = excluded.payload THEN deliveries.revision ELSE deliveries.revision + 1 END, \
                   payload = excluded.payload, state = excluded.state, attempts = 0, next_attempt_at = NULL, lease_until = NULL, \
                   last_error = NULL, rejection = NULL, updated_at = excluded.updated_at, actor_cf = excluded.actor_cf, \
                   office = excluded.office, status_url = NULL, news_at = NULL, polls = 0, \
                   waits_for = excluded.waits_for, uses = excluded.uses",
            )
            .bind(id.to_string())
            .bind(&filing.institution)
            .bind(position as i64)
            .bind(&filing.filing_kind)
            .bind(if filing.waits_for.is_some() { "waiting" } else { "queued" })
            .bind(payload)
            .bind(submission.submitted_at)
            .bind(submission.submitted_at)
            .bind(submission.actor.as_str())
            .bind(&filing.office)
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
             WHERE p.id = ? AND p.owner_cf = ? ORDER BY d.position"
        ))
        .bind(id.to_string())
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| delivery_row(r)?.into_delivery()).collect()
    }

    async fn list(&self, owner: &CodiceFiscale, query: &PracticeQuery) -> Result<Vec<Practice>, StoreError> {
        let (services, businesses, actor) = crate::ScopeFilter::params(query.scope.as_ref());
        let rows = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE owner_cf = ?1 AND (?2 IS NULL OR state = ?2) AND {} \
             ORDER BY updated_at DESC, id LIMIT ?6 OFFSET ?7",
            scope_clause(3)
        ))
        .bind(owner.as_str())
        .bind(query.state.map(PracticeState::as_str))
        .bind(services)
        .bind(businesses)
        .bind(actor)
        .bind(query.bounded_limit())
        .bind(i64::from(query.offset))
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
        let mine = format!("owner_cf = ?1 AND {}", scope_clause(2));
        let counts: Vec<(String, i64)> =
            mine!(sqlx::query_as(&format!("SELECT state, COUNT(*) FROM practices WHERE {mine} GROUP BY state")))
                .fetch_all(&self.pool)
                .await?;
        let to_resend: Vec<Option<String>> = mine!(sqlx::query_scalar(&format!(
            "SELECT reference FROM practices WHERE {mine} AND state = 'draft' AND needs_resend <> 0 \
             ORDER BY updated_at DESC, id LIMIT ?5"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        // The practices are filtered first, so that the scope's columns are theirs alone.
        let rows = mine!(sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS}, p.reference AS practice_reference FROM deliveries d \
             JOIN (SELECT id, reference, updated_at FROM practices WHERE {mine} \
                   AND state IN ('in_progress', 'completed')) p ON p.id = d.practice_id \
             WHERE d.state IN ({}) ORDER BY p.updated_at DESC, p.id, d.position LIMIT ?5",
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
        // One WHERE clause for the page and the count; `?n` numbers the parameters once.
        let filter = "owner_cf = ?1 \
             AND (?2 IS NULL OR reference = ?2 OR business_cf = ?2 OR business_name LIKE ?3 ESCAPE '\\' \
                  OR id IN (SELECT practice_id FROM deliveries WHERE protocol_number IN (?2, ?4))) \
             AND (?5 IS NULL OR service_id = ?5) AND (?6 IS NULL OR state = ?6) \
             AND (?7 IS NULL OR submitted_at >= ?7) AND (?8 IS NULL OR submitted_at < ?8) AND {SCOPE}";
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
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE {filter} ORDER BY {} LIMIT ?12 OFFSET ?13",
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
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!("SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = ? AND owner_cf = ?"))
            .bind(id.to_string())
            .bind(owner.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let practice = practice_row(&row)?.into_practice()?;
        let next = crate::archive_target(&practice, archive)?;
        sqlx::query("UPDATE practices SET state = ?, updated_at = ? WHERE id = ? AND state = ?")
            .bind(next.as_str())
            .bind(now)
            .bind(id.to_string())
            .bind(practice.state.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.practice(owner, id).await
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now_ms = unix_millis(now);
        let until_ms = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE deliveries SET lease_until = ?, fence = fence + 1, attempts = attempts + 1 \
             WHERE rowid IN (SELECT rowid FROM deliveries WHERE state = 'queued' \
               AND COALESCE(next_attempt_at, 0) <= ? AND COALESCE(lease_until, 0) <= ? \
               ORDER BY COALESCE(next_attempt_at, 0) LIMIT ?) \
             RETURNING practice_id, institution, fence, attempts, revision, filing_kind, payload, office",
        )
        .bind(until_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let practice_id: String = r.try_get("practice_id")?;
            let id = PracticeId::parse(&practice_id).ok_or_else(|| StoreError::Corrupt(format!("id {practice_id}")))?;
            let p = sqlx::query(
                "SELECT p.owner_cf, COALESCE(d.actor_cf, p.owner_cf) AS actor_cf, p.reference, p.service_id \
                 FROM practices p JOIN deliveries d ON d.practice_id = p.id WHERE p.id = ? AND d.institution = ?",
            )
            .bind(&practice_id)
            .bind(r.try_get::<String, _>("institution")?)
            .fetch_one(&mut *tx)
            .await?;
            let owner: String = p.try_get("owner_cf")?;
            let actor: String = p.try_get("actor_cf")?;
            let payload: String = r.try_get("payload")?;
            claimed.push(ClaimedDelivery {
                actor: CodiceFiscale::parse(&actor).map_err(|_| StoreError::Corrupt(format!("actor {actor}")))?,
                key: DeliveryKey { practice_id: id, institution: r.try_get("institution")? },
                fence: r.try_get("fence")?,
                attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                revision: u32::try_from(r.try_get::<i64, _>("revision")?).unwrap_or(0),
                filing_kind: r.try_get("filing_kind")?,
                payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                reference: p.try_get::<Option<String>, _>("reference")?.unwrap_or_default(),
                owner: CodiceFiscale::parse(&owner).map_err(|_| StoreError::Corrupt(format!("owner {owner}")))?,
                service_id: p.try_get("service_id")?,
                office: r.try_get("office")?,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn claim_for_poll(
        &self,
        institution: &str,
        now: OffsetDateTime,
        pace: PollPace,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let now_ms = unix_millis(now);
        let (first_ms, max_ms) = pace.millis();
        let mut tx = self.begin_write().await?;
        let keys = sqlx::query(
            "UPDATE deliveries SET next_attempt_at = ? + MIN(?, ? * (1 << MIN(polls, 20))), polls = polls + 1 \
             WHERE rowid IN (SELECT rowid FROM deliveries \
               WHERE institution = ? AND state IN ('delivered', 'taken_in_charge') \
               AND next_attempt_at IS NOT NULL AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) \
             RETURNING practice_id",
        )
        .bind(now_ms)
        .bind(max_ms)
        .bind(first_ms)
        .bind(institution)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut items = Vec::with_capacity(keys.len());
        for k in &keys {
            let practice_id: String = k.try_get("practice_id")?;
            let r = sqlx::query(&format!("{POLL_ITEM_SELECT} WHERE d.practice_id = ? AND d.institution = ?"))
                .bind(&practice_id)
                .bind(institution)
                .fetch_one(&mut *tx)
                .await?;
            items.push(poll_item(&r)?);
        }
        tx.commit().await?;
        Ok(items)
    }

    async fn silent_since(
        &self,
        institution: &str,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "{POLL_ITEM_SELECT} WHERE d.institution = ? AND d.state IN ('delivered', 'taken_in_charge') \
             AND d.news_at IS NOT NULL AND d.news_at <= ? ORDER BY d.news_at LIMIT ?"
        ))
        .bind(institution)
        .bind(unix_millis(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(poll_item).collect()
    }

    async fn record(&self, key: &DeliveryKey, update: &DeliveryUpdate) -> Result<Recorded, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS}, d.fence FROM deliveries d WHERE d.practice_id = ? AND d.institution = ?"
        ))
        .bind(key.practice_id.to_string())
        .bind(&key.institution)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        if let Some(message_id) = &update.message_id {
            let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM delivery_events WHERE message_id = ?")
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
            let news_at = plan.status.as_ref().filter(|_| update.is_news()).map(|_| unix_millis(update.at));
            sqlx::query(
                "UPDATE deliveries SET news_at = COALESCE(?, news_at), status_url = COALESCE(?, status_url), \
                 news_values = ? WHERE practice_id = ? AND institution = ?",
            )
            .bind(news_at)
            .bind(&update.status_url)
            .bind(merged_values(&current_values, update))
            .bind(key.practice_id.to_string())
            .bind(&key.institution)
            .execute(&mut *tx)
            .await?;
        }
        if plan.status.as_ref().is_some_and(|s| s.state == DeliveryState::Accepted) {
            release_dependants(&mut tx, key, update.at).await?;
        }
        if plan.release_lease {
            let retry = update.next_at.map(unix_millis);
            sqlx::query("UPDATE deliveries SET lease_until = NULL, next_attempt_at = ? WHERE practice_id = ? AND institution = ?")
                .bind(retry)
                .bind(key.practice_id.to_string())
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
        let mut tx = self.begin_write().await?;
        let practice_state = owned_state(&mut tx, owner, key.practice_id).await?;
        let practice_next =
            practice_state.apply(PracticeEvent::Resent).map_err(|_| StoreError::WrongState(practice_state))?;
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.practice_id = ? AND d.institution = ?"
        ))
        .bind(key.practice_id.to_string())
        .bind(&key.institution)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let status = delivery_row(&row)?.status()?;
        let event = if correction.is_some() { DeliveryEvent::ResendCorrected } else { DeliveryEvent::Resend };
        let next = match domain::delivery::apply(&status, &event) {
            Ok(domain::delivery::Applied::Changed(next)) => next,
            _ => return Err(StoreError::WrongDeliveryState(status.state)),
        };
        write_status(&mut tx, key, &next, now).await?;
        sqlx::query(
            "UPDATE deliveries SET attempts = 0, next_attempt_at = NULL, lease_until = NULL, polls = 0, \
             status_url = NULL, news_at = NULL WHERE practice_id = ? AND institution = ?",
        )
        .bind(key.practice_id.to_string())
        .bind(&key.institution)
        .execute(&mut *tx)
        .await?;
        if let Some((data, payload)) = correction {
            sqlx::query("UPDATE deliveries SET payload = ? WHERE practice_id = ? AND institution = ?")
                .bind(payload.to_string())
                .bind(key.practice_id.to_string())
                .bind(&key.institution)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE practices SET data = ? WHERE id = ?")
                .bind(data_json(data))
                .bind(key.practice_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE practices SET state = ?, needs_resend = 0, updated_at = ? WHERE id = ?")
            .bind(practice_next.as_str())
            .bind(now)
            .bind(key.practice_id.to_string())
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
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.practice_id = ? AND d.institution = ?"
        ))
        .bind(key.practice_id.to_string())
        .bind(&key.institution)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        delivery_row(&row)?.into_delivery()
    }

    async fn service_of(&self, id: PracticeId) -> Result<String, StoreError> {
        let service: Option<String> = sqlx::query_scalar("SELECT service_id FROM practices WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        service.ok_or(StoreError::NotFound)
    }

    async fn timeline(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.institution, e.at, e.kind, e.state, e.detail FROM delivery_events e \
             JOIN practices p ON p.id = e.practice_id WHERE p.id = ? AND p.owner_cf = ? ORDER BY e.id",
        )
        .bind(id.to_string())
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
impl crate::SessionStore for SqliteStore {
    async fn create_session(&self, session: &crate::SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, holder_cf, fingerprint, csrf_token, created_at, last_seen_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&session.id_hash)
        .bind(session.holder.as_str())
        .bind(&session.fingerprint)
        .bind(&session.csrf_token)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<crate::SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, holder_cf, fingerprint, csrf_token, created_at, last_seen_at FROM sessions WHERE id_hash = ?1",
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
        sqlx::query("UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2 AND last_seen_at < ?1")
            .bind(now_ms)
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?1").bind(id_hash).execute(&self.writer).await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl crate::audit::AuditLog for SqliteStore {
    async fn append_audit(
        &self,
        record: &crate::audit::NewAuditRecord,
    ) -> Result<crate::audit::AuditRecord, StoreError> {
        // The single writer and BEGIN IMMEDIATE serialise appends.
        let mut tx = self.begin_write().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&mut *tx).await?;
        let head = match head {
            Some(row) => Some(crate::audit::AuditHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? }),
            None => None,
        };
        let r = crate::audit::next_record(head.as_ref(), record);
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, actor, responsible, action, detail, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")
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
             WHERE seq > ? ORDER BY seq LIMIT ?",
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
             WHERE responsible = ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(responsible)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(audit_row(r)?)).collect()
    }
}

fn audit_row(r: &SqliteRow) -> Result<crate::audit::AuditRecord, sqlx::Error> {
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
        "(?{s} IS NULL OR (service_id IN (SELECT value FROM json_each(?{s})) \
          AND (business_cf IN (SELECT value FROM json_each(?{b})) OR (business_cf IS NULL AND actor_cf = ?{a}))))"
    )
}

const DELEGATION_COLUMNS: &str =
    "id, grantor_cf, delegate_cf, scope, valid_from, valid_until, note, created_at, ended, ended_at";

fn delegation_row(r: &SqliteRow) -> Result<crate::DelegationRow, sqlx::Error> {
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
    conn: &mut SqliteConnection,
    rows: Vec<SqliteRow>,
) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
    let rows = rows.iter().map(delegation_row).collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(&rows.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let institutions = sqlx::query(
        "SELECT delegation_id, institution, state, reference, reason FROM delegation_institutions \
         WHERE delegation_id IN (SELECT value FROM json_each(?)) ORDER BY institution",
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

impl SqliteStore {
    /// Delegations whose `column` (`grantor_cf` or `delegate_cf`) is `who`, newest first.
    async fn delegations_by(
        &self,
        column: &'static str,
        who: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {DELEGATION_COLUMNS} FROM delegations WHERE {column} = ? ORDER BY created_at DESC, id LIMIT 500"
        ))
        .bind(who.as_str())
        .fetch_all(&mut *conn)
        .await?;
        delegations_of(&mut conn, rows).await
    }
}

#[async_trait]
impl crate::DelegationStore for SqliteStore {
    async fn create_delegation(&self, d: &domain::delegation::Delegation) -> Result<(), StoreError> {
        let scope = serde_json::to_string(&d.scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO delegations (id, grantor_cf, delegate_cf, scope, valid_from, valid_until, note, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
                 VALUES (?, ?, 'pending', 'grant')",
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
        let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = ?"))
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
        let mut tx = self.begin_write().await?;
        let ended: Option<Option<String>> = sqlx::query_scalar("SELECT ended FROM delegations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        match ended {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Err(StoreError::DelegationEnded),
            Some(None) => {}
        }
        sqlx::query("UPDATE delegations SET ended = ?, ended_at = ? WHERE id = ?")
            .bind(ending.as_str())
            .bind(unix_millis(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE delegation_institutions SET notice = 'revoke', attempts = 0, next_attempt_at = NULL, \
             lease_until = NULL WHERE delegation_id = ? AND state <> 'refused'",
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
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE delegation_institutions SET lease_until = ?, attempts = attempts + 1 \
             WHERE rowid IN (SELECT rowid FROM delegation_institutions WHERE notice IS NOT NULL \
               AND COALESCE(next_attempt_at, 0) <= ? AND COALESCE(lease_until, 0) <= ? \
               ORDER BY COALESCE(next_attempt_at, 0) LIMIT ?) \
             RETURNING delegation_id, institution, notice, attempts",
        )
        .bind(until_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut notices = Vec::with_capacity(claimed.len());
        for r in &claimed {
            let id: String = r.try_get("delegation_id")?;
            let notice: String = r.try_get("notice")?;
            let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = ?"))
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
        let done = sqlx::query("UPDATE delegations SET expiry_recorded = 1 WHERE id = ? AND expiry_recorded = 0")
            .bind(id.to_string())
            .execute(&self.writer)
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
        let mut tx = self.begin_write().await?;
        // Only the notice that was claimed is settled: a revocation queued meanwhile stays.
        sqlx::query(
            "UPDATE delegation_institutions SET state = COALESCE(?, state), reference = COALESCE(?, reference), \
             reason = ?, notice = CASE WHEN notice = ? THEN ? ELSE notice END, \
             next_attempt_at = CASE WHEN notice = ? THEN ? ELSE next_attempt_at END, lease_until = NULL \
             WHERE delegation_id = ? AND institution = ?",
        )
        .bind(state)
        .bind(reference)
        .bind(reason)
        .bind(kind.as_str())
        .bind(notice)
        .bind(kind.as_str())
        .bind(retry_at)
        .bind(id.to_string())
        .bind(institution)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
