//! PostgreSQL adapter, for several portal and worker processes sharing one database.
//!
//! Migrations run under a transaction-scoped advisory lock, so processes starting together
//! apply each migration once. Reference numbers come from an upserted per-year counter row,
//! which PostgreSQL locks for the rest of the transaction: two processes never get the same
//! number. Workers claim deliveries with `FOR UPDATE SKIP LOCKED`, so two workers never take
//! the same delivery at the same time.
//!
//! **One lock order.** A transaction that changes a practice or any of its deliveries locks
//! the practice row first, then the delivery rows (submit, save, resend, record, release), so
//! that no two of them can wait on each other: PostgreSQL has nothing to report as a deadlock
//! under any mix of intake, workers, callbacks and resends. Claims lock delivery rows only,
//! with `SKIP LOCKED`, and so never wait. Should a transaction still lose to a serialization
//! failure or a deadlock, [`crate::retry_contention`] runs it again.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::delivery::{DeliveryState, DeliveryStatus};
use domain::identifiers::CodiceFiscale;
use domain::practice::{PracticeId, PracticeState};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::migrations::Migrations;
use crate::{rejection_json, DeliveryKey, DeliveryRow, PollItem, PracticeRow, StoreError};

const MIGRATIONS: Migrations = &[
    (1, "practices", include_str!("../../migrations/postgres/0001_practices.sql")),
    (2, "deliveries", include_str!("../../migrations/postgres/0002_deliveries.sql")),
    (3, "sessions", include_str!("../../migrations/postgres/0003_sessions.sql")),
    (4, "search", include_str!("../../migrations/postgres/0004_search.sql")),
    (5, "audit", include_str!("../../migrations/postgres/0005_audit.sql")),
    (6, "delegations", include_str!("../../migrations/postgres/0006_delegations.sql")),
    (7, "delegation expiry", include_str!("../../migrations/postgres/0007_delegation_expiry.sql")),
    (8, "channel news", include_str!("../../migrations/postgres/0008_channel_news.sql")),
    (9, "delivery office", include_str!("../../migrations/postgres/0009_delivery_office.sql")),
    (10, "waiting filings", include_str!("../../migrations/postgres/0010_waiting_filings.sql")),
    (11, "practice states", include_str!("../../migrations/postgres/0011_practice_states.sql")),
    (12, "delegate name", include_str!("../../migrations/postgres/0012_delegate_name.sql")),
    (13, "used tokens", include_str!("../../migrations/postgres/0013_used_tokens.sql")),
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
    /// Transactions run again because they lost to contention (0 when the lock order holds).
    contention: Arc<AtomicU64>,
    /// Practices changed by any process on the database, as heard by this one's listener.
    changes: broadcast::Sender<PracticeId>,
    /// Stops the listener when the last clone of the store goes.
    _listener: Arc<Listener>,
}

/// The task that listens on [`crate::NOTIFY_CHANNEL`]; aborted (its connection closed) on drop.
#[derive(Debug)]
struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forwards every notice on [`crate::NOTIFY_CHANNEL`] to `changes`, reconnecting when the
/// connection drops (notices sent meanwhile are lost: followers look again on their own
/// schedule).
async fn listen(pool: PgPool, changes: broadcast::Sender<PracticeId>) {
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(crate::NOTIFY_CHANNEL).await?;
            loop {
                let notice = listener.recv().await?;
                if let Some(id) = PracticeId::parse(notice.payload()) {
                    let _ = changes.send(id);
                }
            }
        };
        let result: Result<(), sqlx::Error> = listening.await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "change listener lost its connection; listening again in a second");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Announces, when the transaction commits, that practice `id` changed.
async fn announce(tx: &mut PgConnection, id: PracticeId) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(crate::NOTIFY_CHANNEL).bind(id.to_string()).execute(&mut *tx).await?;
    Ok(())
}

impl crate::ChangeFeed for PostgresStore {
    fn changes(&self) -> broadcast::Receiver<PracticeId> {
        self.changes.subscribe()
    }
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
        let changes = crate::changes::feed();
        let listener = Listener(tokio::spawn(listen(pool.clone(), changes.clone())));
        Ok(Self { pool, contention: Arc::new(AtomicU64::new(0)), changes, _listener: Arc::new(listener) })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many transactions of this store were run again after losing to a serialization
    /// failure or a deadlock.
    pub fn contention_retries(&self) -> u64 {
        self.contention.load(Ordering::Relaxed)
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

/// Locks the practice row `id`, whoever owns it (the worker's and callbacks' way in).
async fn lock_practice(tx: &mut PgConnection, id: PracticeId) -> Result<(), StoreError> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM practices WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound)
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

/// Moves the practice to where its deliveries now stand together ([`domain::practice::Progress`]).
async fn follow_deliveries(tx: &mut PgConnection, id: PracticeId, at: OffsetDateTime) -> Result<(), StoreError> {
    let current: String = sqlx::query_scalar("SELECT state FROM practices WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE practice_id = $1")
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?;
    let Some(next) = crate::practice_follows(&current, &states)? else {
        return Ok(());
    };
    sqlx::query("UPDATE practices SET state = $1, needs_resend = $2, updated_at = $3 WHERE id = $4")
        .bind(next.as_str())
        .bind(next == PracticeState::Draft)
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

/// Remembers `tokens` as used, after forgetting those past their time; `false` (and nothing
/// remembered once the transaction rolls back) when one of them is still remembered.
async fn first_use(tx: &mut PgConnection, tokens: &[crate::UsedToken], now_ms: i64) -> Result<bool, StoreError> {
    if tokens.is_empty() {
        return Ok(true);
    }
    sqlx::query("DELETE FROM used_tokens WHERE until_ms < $1").bind(now_ms).execute(&mut *tx).await?;
    for token in tokens {
        let inserted = sqlx::query(
            "INSERT INTO used_tokens (scope, jti, until_ms) VALUES ($1, $2, $3) ON CONFLICT (scope, jti) DO NOTHING",
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

mod audit_log;
mod delegations;
mod delivery;
mod practices;
mod sessions;

/// The sub-delegation filter with its three parameters numbered from `n`.
fn scope_clause(n: u8) -> String {
    let (s, b, a) = (n, n + 1, n + 2);
    format!(
        "(${s}::text IS NULL OR (service_id IN (SELECT jsonb_array_elements_text(${s}::jsonb)) \
          AND (business_cf IN (SELECT jsonb_array_elements_text(${b}::jsonb)) \
               OR (business_cf IS NULL AND actor_cf = ${a}::text))))"
    )
}
