//! The storage contract: every adapter must pass the same tests.
//!
//! Each test runs on SQLite (a temporary file) and on PostgreSQL (a schema of its own in the
//! database named by `SPORTELLO_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Without a reachable PostgreSQL the PostgreSQL
//! half is skipped with a message, except under `CI=true`, where it fails.

#![allow(clippy::expect_used, clippy::unwrap_used)] // Tests may fail loudly.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use domain::delivery::{DeliveryEvent, DeliveryState, Rejection};
use domain::identifiers::CodiceFiscale;
use domain::practice::{Filing, Practice, PracticeData, PracticeId, PracticeState, Submission};
use sqlx::postgres::PgConnectOptions;
use std::time::Duration;
use storage::postgres::PostgresStore;
use storage::sqlite::SqliteStore;
use storage::{
    DeliveryKey, DeliveryUpdate, PollPace, PracticeQuery, PracticeSearch, PracticeStore, Recorded, ScopeFilter,
    SessionRecord, SortKey, Store, StoreError, UsedToken,
};
use time::macros::datetime;
use time::OffsetDateTime;

/// A store under test, and what must outlive it.
struct Backend {
    store: Arc<dyn Store>,
    /// Raw SQL on the same database, for tampering tests.
    raw: Raw,
    /// A second, independent connection pool on the same database (another "process").
    other: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    cleanup: Option<(sqlx::PgPool, String)>,
    /// Transactions both stores ran again after losing to contention (always 0 on SQLite).
    contention: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Whether `other` hears the changes `store` makes (PostgreSQL's NOTIFY; SQLite's feed
    /// is one process's own).
    shared_feed: bool,
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Backend {
    /// Runs SQL behind the store's back (the same text on both backends).
    async fn tamper(&self, sql: &str) {
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Raw::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .expect(sql);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((pool, schema)) = self.cleanup.take() {
            // Best effort: a leftover schema in a test database harms nothing.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await;
                    });
                }
            })
            .join();
        }
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("contract.db");
    let store = SqliteStore::open(&path).await.expect("open sqlite");
    store.migrate().await.expect("migrate");
    let other = SqliteStore::open(&path).await.expect("open sqlite again");
    other.migrate().await.expect("migrate again is a no-op");
    let raw = Raw::Sqlite(store.pool().clone());
    Backend {
        store: Arc::new(store),
        other: Arc::new(other),
        raw,
        _dir: Some(dir),
        cleanup: None,
        contention: Box::new(|| 0),
        shared_feed: false,
    }
}

fn postgres_url() -> String {
    std::env::var("SPORTELLO_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static SCHEMA_COUNTER: AtomicU64 = AtomicU64::new(0);

async fn postgres() -> Option<Backend> {
    let url = postgres_url();
    let admin = match sqlx::PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL at {url} is required under CI: {e}")
        }
        Err(e) => {
            eprintln!("skipping the PostgreSQL half: {url} unreachable ({e})");
            return None;
        }
    };
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let schema = format!(
        "contract_{}_{}_{}",
        std::process::id(),
        nanos.rem_euclid(1_000_000_000),
        SCHEMA_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("create schema");
    let options = || url.parse::<PgConnectOptions>().expect("postgres url").options([("search_path", schema.as_str())]);
    let store = PostgresStore::connect_with(options()).await.expect("connect");
    let other = PostgresStore::connect_with(options()).await.expect("connect again");
    // Two processes starting together both migrate; the advisory lock serialises them.
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    a.expect("migrate");
    b.expect("migrate concurrently");
    let raw = Raw::Postgres(store.pool().clone());
    let (a, b) = (store.clone(), other.clone());
    Some(Backend {
        store: Arc::new(store),
        other: Arc::new(other),
        raw,
        _dir: None,
        cleanup: Some((admin, schema)),
        contention: Box::new(move || a.contention_retries() + b.contention_retries()),
        shared_feed: true,
    })
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::sqlite().await).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(backend) = super::postgres().await { super::$name(backend).await }
            })*
        }
    };
}

contract!(
    draft_round_trip,
    drafts_are_private_to_their_owner,
    updating_a_draft_replaces_its_data,
    submit_writes_reference_and_deliveries_atomically,
    submitted_practice_is_frozen,
    concurrent_submissions_get_distinct_references,
    racing_submits_of_one_practice_have_one_winner,
    listing_filters_by_state_and_pages,
    claims_are_leased_and_fenced,
    concurrent_workers_never_share_a_delivery,
    answers_and_callbacks_in_any_order,
    retries_wait_until_due,
    no_recipient_reached_returns_to_drafts,
    resend_touches_one_recipient_only,
    a_rejection_or_a_failure_is_the_practices_state_until_mended,
    silent_institutions_are_polled_on_schedule,
    status_addresses_values_and_silence_are_kept,
    waiting_filings_are_held_until_the_first_is_accepted_and_take_its_values,
    nobody_reached_when_the_first_failed_and_the_others_wait,
    sessions_live_until_they_expire_or_end,
    a_card_keeps_a_bounded_number_of_sessions,
    search_by_every_key_with_pages_and_order,
    archive_and_bring_back,
    audit_chain_detects_every_tampering,
    delegations_and_their_notices,
    a_collaborator_sees_only_what_the_delegation_covers,
    the_desk_summary_counts_every_state_and_lists_what_needs_the_owner,
    an_edited_migration_already_applied_is_refused,
    committed_changes_are_announced_and_refused_ones_are_not,
    a_used_token_is_refused_by_every_process_until_its_time_is_over,
    portals_workers_callbacks_and_resends_interleave_without_deadlock_or_lost_update,
);

const NOW: OffsetDateTime = datetime!(2026-11-27 10:00 UTC);

fn holder() -> CodiceFiscale {
    CodiceFiscale::parse("RSSMRA45C12F205C").expect("valid")
}

fn stranger() -> CodiceFiscale {
    CodiceFiscale::parse("BNCSFN85T58G702W").expect("valid")
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(1);

fn draft(owner: &CodiceFiscale, data: &[(&str, &str)]) -> Practice {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes[8..].copy_from_slice(&(OffsetDateTime::now_utc().unix_timestamp_nanos() as u64).to_be_bytes());
    Practice {
        id: PracticeId::from_random_bytes(bytes),
        owner: owner.clone(),
        actor: owner.clone(),
        service_id: "avvio-ditta-individuale".into(),
        state: PracticeState::Draft,
        data: data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        reference: None,
        needs_resend: false,
        created_at: NOW,
        updated_at: NOW,
        submitted_at: None,
    }
}

fn submission(data: &[(&str, &str)]) -> Submission {
    let data: PracticeData = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Submission {
        filings: ["registro-imprese", "inps", "inail"]
            .into_iter()
            .map(|institution| Filing {
                office: None,
                waits_for: None,
                uses: Vec::new(),
                institution: institution.into(),
                filing_kind: format!("{institution}-filing"),
                payload: serde_json::json!({ "for": institution, "name": data.get("business.name") }),
            })
            .collect(),
        data,
        submitted_at: NOW + time::Duration::minutes(5),
        actor: holder(),
    }
}

async fn draft_round_trip(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma"), ("seat.cap", "00184")]);
    b.store.create_draft(&p).await.expect("create");
    let read = b.store.practice(&holder(), p.id).await.expect("read");
    assert_eq!(read, p);
    // Another pool sees the committed row.
    assert_eq!(b.other.practice(&holder(), p.id).await.expect("read elsewhere"), p);
}

async fn drafts_are_private_to_their_owner(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    assert!(matches!(b.store.practice(&stranger(), p.id).await, Err(StoreError::NotFound)));
    let data = PracticeData::from([("business.name".to_string(), "Mine now".to_string())]);
    assert!(matches!(b.store.update_draft(&stranger(), p.id, &data, NOW).await, Err(StoreError::NotFound)));
    assert!(matches!(b.store.submit(&stranger(), p.id, &submission(&[])).await, Err(StoreError::NotFound)));
    assert!(b.store.deliveries(&stranger(), p.id).await.expect("deliveries").is_empty());
    assert!(b.store.list(&stranger(), &PracticeQuery::default()).await.expect("list").is_empty());
    assert_eq!(b.store.practice(&holder(), p.id).await.expect("unchanged").data, p.data);
}

async fn updating_a_draft_replaces_its_data(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma"), ("seat.cap", "00184")]);
    b.store.create_draft(&p).await.expect("create");
    let later = NOW + time::Duration::hours(1);
    let data = PracticeData::from([("business.name".to_string(), "Bar Milano".to_string())]);
    let updated = b.store.update_draft(&holder(), p.id, &data, later).await.expect("update");
    assert_eq!(updated.data, data);
    assert_eq!(updated.updated_at, later);
    assert_eq!(updated.created_at, NOW);
    assert_eq!(updated.state, PracticeState::Draft);
}

async fn submit_writes_reference_and_deliveries_atomically(b: Backend) {
    let p = draft(&holder(), &[("business.name", " Bar Roma ")]);
    b.store.create_draft(&p).await.expect("create");
    let s = submission(&[("business.name", "Bar Roma")]);
    let submitted = b.store.submit(&holder(), p.id, &s).await.expect("submit");
    assert_eq!(submitted.state, PracticeState::InProgress);
    assert_eq!(submitted.data, s.data, "the canonical data replaces the draft's");
    assert_eq!(submitted.submitted_at, Some(s.submitted_at));
    let reference = submitted.reference.expect("reference number");
    assert_eq!(reference.year, 2026);
    assert!(reference.to_string().starts_with("SPT-2026-"));
    let deliveries = b.store.deliveries(&holder(), p.id).await.expect("deliveries");
    let recipients: Vec<&str> = deliveries.iter().map(|d| d.institution.as_str()).collect();
    assert_eq!(recipients, ["registro-imprese", "inps", "inail"], "in the service's order");
    assert!(deliveries.iter().all(|d| d.state() == DeliveryState::Queued));
    assert_eq!(deliveries[1].payload, serde_json::json!({"for": "inps", "name": "Bar Roma"}));
}

async fn submitted_practice_is_frozen(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    let first = b.store.submit(&holder(), p.id, &submission(&[("business.name", "Bar Roma")])).await.expect("submit");
    let again = b.store.submit(&holder(), p.id, &submission(&[("business.name", "Other")])).await;
    assert!(matches!(again, Err(StoreError::WrongState(PracticeState::InProgress))), "{again:?}");
    let data = PracticeData::from([("business.name".to_string(), "Changed".to_string())]);
    let edit = b.store.update_draft(&holder(), p.id, &data, NOW).await;
    assert!(matches!(edit, Err(StoreError::WrongState(PracticeState::InProgress))), "{edit:?}");
    let now = b.store.practice(&holder(), p.id).await.expect("read");
    assert_eq!(now, first, "nothing changed");
    assert_eq!(b.store.deliveries(&holder(), p.id).await.expect("deliveries").len(), 3, "no extra deliveries");
}

async fn concurrent_submissions_get_distinct_references(b: Backend) {
    let mut ids = Vec::new();
    for i in 0..16 {
        let p = draft(&holder(), &[("business.name", &format!("Bar {i}"))]);
        b.store.create_draft(&p).await.expect("create");
        ids.push(p.id);
    }
    // Half submitted through one pool, half through the other, all at once.
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let store = if i % 2 == 0 { b.store.clone() } else { b.other.clone() };
            let id = *id;
            tokio::spawn(async move { store.submit(&holder(), id, &submission(&[])).await })
        })
        .collect();
    let mut references = BTreeSet::new();
    for t in tasks {
        let practice = t.await.expect("task").expect("submit");
        references.insert(practice.reference.expect("reference").to_string());
    }
    assert_eq!(references.len(), ids.len(), "every reference is unique: {references:?}");
}

async fn racing_submits_of_one_practice_have_one_winner(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    let (owner, s) = (holder(), submission(&[]));
    let (one, two) = tokio::join!(b.store.submit(&owner, p.id, &s), b.other.submit(&owner, p.id, &s));
    let wins = [one.is_ok(), two.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(wins, 1, "{one:?} / {two:?}");
    let loser = if one.is_ok() { two } else { one };
    assert!(matches!(loser, Err(StoreError::WrongState(PracticeState::InProgress))), "{loser:?}");
    assert_eq!(b.store.deliveries(&holder(), p.id).await.expect("deliveries").len(), 3);
}

async fn listing_filters_by_state_and_pages(b: Backend) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut p = draft(&holder(), &[("business.name", &format!("Bar {i}"))]);
        p.updated_at = NOW + time::Duration::seconds(i);
        b.store.create_draft(&p).await.expect("create");
        ids.push(p.id);
    }
    b.store.create_draft(&draft(&stranger(), &[])).await.expect("create other's");
    b.store.submit(&holder(), ids[0], &submission(&[])).await.expect("submit");

    let all = b.store.list(&holder(), &PracticeQuery::default()).await.expect("list");
    assert_eq!(all.len(), 5);
    let drafts = b
        .store
        .list(&holder(), &PracticeQuery { state: Some(PracticeState::Draft), ..Default::default() })
        .await
        .expect("list drafts");
    let names: Vec<&str> = drafts.iter().map(|p| p.data["business.name"].as_str()).collect();
    assert_eq!(names, ["Bar 4", "Bar 3", "Bar 2", "Bar 1"], "most recently changed first");
    let in_progress = b
        .store
        .list(&holder(), &PracticeQuery { state: Some(PracticeState::InProgress), ..Default::default() })
        .await
        .expect("list in progress");
    assert_eq!(in_progress.iter().map(|p| p.id).collect::<Vec<_>>(), [ids[0]]);
    let page = b
        .store
        .list(&holder(), &PracticeQuery { state: Some(PracticeState::Draft), limit: 2, offset: 2, scope: None })
        .await
        .expect("page");
    assert_eq!(page.iter().map(|p| p.data["business.name"].as_str()).collect::<Vec<_>>(), ["Bar 2", "Bar 1"]);
}

/// A submitted practice of `holder()` with three queued deliveries.
async fn submitted(b: &Backend) -> PracticeId {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    b.store.submit(&holder(), p.id, &submission(&[("business.name", "Bar Roma")])).await.expect("submit");
    p.id
}

fn key(id: PracticeId, institution: &str) -> DeliveryKey {
    DeliveryKey { practice_id: id, institution: institution.into() }
}

async fn state_of(b: &Backend, id: PracticeId, institution: &str) -> DeliveryState {
    let ds = b.store.deliveries(&holder(), id).await.expect("deliveries");
    ds.iter().find(|d| d.institution == institution).map(|d| d.state()).expect("delivery")
}

const LEASE: Duration = Duration::from_secs(30);

async fn claims_are_leased_and_fenced(b: Backend) {
    let id = submitted(&b).await;
    let first = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|c| c.attempts == 1 && c.reference.starts_with("SPT-") && c.owner == holder()));
    assert!(b.store.claim_due(NOW, LEASE, 10).await.expect("claim").is_empty(), "leased");
    // The lease runs out (the worker died): another worker claims again, with a new fence.
    let later = NOW + time::Duration::seconds(31);
    let second = b.other.claim_due(later, LEASE, 10).await.expect("claim");
    assert_eq!(second.len(), 3);
    let old = first.iter().find(|c| c.key.institution == "inps").expect("inps");
    let new = second.iter().find(|c| c.key.institution == "inps").expect("inps");
    assert!(new.fence > old.fence);
    assert_eq!(new.attempts, 2);
    let mut stale = DeliveryUpdate::new(DeliveryEvent::Sent { protocol_number: None }, later);
    stale.fence = Some(old.fence);
    assert_eq!(b.store.record(&old.key, &stale).await.expect("record"), Recorded::LostLease);
    assert_eq!(state_of(&b, id, "inps").await, DeliveryState::Queued, "the old worker changed nothing");
    let mut fresh = DeliveryUpdate::new(DeliveryEvent::Sent { protocol_number: Some("INPS-1".into()) }, later);
    fresh.fence = Some(new.fence);
    assert!(matches!(b.store.record(&new.key, &fresh).await.expect("record"), Recorded::Applied(_)));
    assert_eq!(state_of(&b, id, "inps").await, DeliveryState::TakenInCharge);
}

async fn concurrent_workers_never_share_a_delivery(b: Backend) {
    for _ in 0..8 {
        submitted(&b).await;
    }
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let store = if worker % 2 == 0 { b.store.clone() } else { b.other.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..10 {
                let claimed = store.claim_due(NOW, LEASE, 3).await.expect("claim");
                mine.extend(claimed.into_iter().map(|c| (c.key.practice_id, c.key.institution)));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 24, "every delivery claimed");
    assert_eq!(unique.len(), 24, "none claimed twice");
}

async fn answers_and_callbacks_in_any_order(b: Backend) {
    let id = submitted(&b).await;
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    // INAIL calls back "taken in charge" before the worker records its answer.
    let mut callback = DeliveryUpdate::new(DeliveryEvent::TakenInCharge { protocol_number: "INAIL-7".into() }, NOW);
    callback.message_id = Some("inail-msg-1".into());
    let evidence = serde_json::json!({ "content_type": "application/json", "body": "e30=", "digest": "SHA-256=x", "signature": "a.b.c" });
    callback.evidence = Some(evidence.clone());
    assert!(matches!(b.store.record(&key(id, "inail"), &callback).await.expect("callback"), Recorded::Applied(_)));
    assert_eq!(b.other.record(&key(id, "inail"), &callback).await.expect("again"), Recorded::Duplicate);
    let inail = claimed.iter().find(|c| c.key.institution == "inail").expect("inail");
    let mut answer = DeliveryUpdate::new(DeliveryEvent::Sent { protocol_number: None }, NOW);
    answer.fence = Some(inail.fence);
    assert_eq!(b.store.record(&inail.key, &answer).await.expect("answer"), Recorded::Unchanged);
    assert_eq!(state_of(&b, id, "inail").await, DeliveryState::TakenInCharge, "not overwritten by the earlier state");
    // The lease was released all the same: nothing left to claim for INAIL.
    assert!(b
        .store
        .claim_due(NOW + time::Duration::hours(1), LEASE, 10)
        .await
        .expect("claim")
        .iter()
        .all(|c| c.key.institution != "inail"));

    // Outcomes for everyone complete the practice.
    for (n, institution) in ["registro-imprese", "inps", "inail"].iter().enumerate() {
        let mut outcome = DeliveryUpdate::new(
            DeliveryEvent::Outcome { accepted: true, protocol_number: Some(format!("P-{n}")), rejection: None },
            NOW,
        );
        outcome.message_id = Some(format!("outcome-{n}-{id}"));
        b.store.record(&key(id, institution), &outcome).await.expect("outcome");
    }
    let practice = b.store.practice(&holder(), id).await.expect("practice");
    assert_eq!(practice.state, PracticeState::Completed);
    let ds = b.store.deliveries(&holder(), id).await.expect("deliveries");
    assert_eq!(
        ds.iter().find(|d| d.institution == "inail").and_then(|d| d.status.protocol_number.clone()).as_deref(),
        Some("INAIL-7")
    );
    let timeline = b.store.timeline(&holder(), id).await.expect("timeline");
    let taken = timeline.iter().find(|e| e.kind == "taken_in_charge" && e.institution == "inail").expect("taken");
    assert_eq!(taken.detail["evidence"], evidence, "the signed answer is kept exactly with its event");
    assert!(b.store.timeline(&stranger(), id).await.expect("timeline").is_empty());
    let unknown = key(PracticeId::from_random_bytes([9; 16]), "inps");
    assert!(matches!(b.store.record(&unknown, &callback).await, Err(StoreError::NotFound)));
}

async fn retries_wait_until_due(b: Backend) {
    let id = submitted(&b).await;
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    for c in &claimed {
        let mut failure =
            DeliveryUpdate::new(DeliveryEvent::TransientFailure { reason: "connection refused".into() }, NOW);
        failure.fence = Some(c.fence);
        failure.next_at = Some(NOW + time::Duration::seconds(60));
        b.store.record(&c.key, &failure).await.expect("record");
    }
    assert!(b.store.claim_due(NOW + time::Duration::seconds(59), LEASE, 10).await.expect("claim").is_empty());
    let again = b.store.claim_due(NOW + time::Duration::seconds(60), LEASE, 10).await.expect("claim");
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|c| c.attempts == 2));
    let ds = b.store.deliveries(&holder(), id).await.expect("deliveries");
    assert!(ds.iter().all(|d| d.status.last_error.as_deref() == Some("connection refused")));
}

async fn no_recipient_reached_returns_to_drafts(b: Backend) {
    let id = submitted(&b).await;
    let reference = b.store.practice(&holder(), id).await.expect("p").reference;
    for c in b.store.claim_due(NOW, LEASE, 10).await.expect("claim") {
        let mut failed = DeliveryUpdate::new(DeliveryEvent::Failed { reason: "down".into() }, NOW);
        failed.fence = Some(c.fence);
        b.store.record(&c.key, &failed).await.expect("record");
    }
    let practice = b.store.practice(&holder(), id).await.expect("practice");
    assert_eq!(practice.state, PracticeState::Draft);
    assert!(practice.needs_resend, "marked to be sent again");
    // Sent again: same reference, deliveries queued again with the same revision.
    let again = b.store.submit(&holder(), id, &submission(&[("business.name", "Bar Roma")])).await.expect("resubmit");
    assert_eq!(again.reference, reference);
    assert!(!again.needs_resend);
    let ds = b.store.deliveries(&holder(), id).await.expect("deliveries");
    assert_eq!(ds.len(), 3);
    assert!(ds.iter().all(|d| d.state() == DeliveryState::Queued && d.status.revision == 0 && d.attempts == 0));
}

async fn resend_touches_one_recipient_only(b: Backend) {
    let id = submitted(&b).await;
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    for c in &claimed {
        let event = match c.key.institution.as_str() {
            "inps" => DeliveryEvent::Failed { reason: "503".into() },
            "inail" => DeliveryEvent::RejectedOnReceipt(Rejection {
                reasons: vec!["descrizione mancante".into()],
                fields: vec!["inail.work_processes".into()],
            }),
            _ => DeliveryEvent::Sent { protocol_number: Some("RI-1".into()) },
        };
        let mut update = DeliveryUpdate::new(event, NOW);
        update.fence = Some(c.fence);
        b.store.record(&c.key, &update).await.expect("record");
    }
    // Only a failed or rejected recipient may be sent again.
    assert!(matches!(
        b.store.resend(&holder(), &key(id, "registro-imprese"), None, NOW).await,
        Err(StoreError::WrongDeliveryState(DeliveryState::TakenInCharge))
    ));
    assert!(matches!(b.store.resend(&stranger(), &key(id, "inps"), None, NOW).await, Err(StoreError::NotFound)));
    let inps = b.store.resend(&holder(), &key(id, "inps"), None, NOW).await.expect("resend");
    assert_eq!((inps.state(), inps.status.revision, inps.attempts), (DeliveryState::Queued, 0, 0));
    let data = PracticeData::from([
        ("business.name".to_string(), "Bar Roma".to_string()),
        ("inail.work_processes".to_string(), "Bar".to_string()),
    ]);
    let payload = serde_json::json!({"lavorazioni": {"descrizione": "Bar"}});
    let inail = b.store.resend(&holder(), &key(id, "inail"), Some((&data, &payload)), NOW).await.expect("corrected");
    assert_eq!((inail.state(), inail.status.revision), (DeliveryState::Queued, 1));
    assert_eq!(inail.payload, payload);
    assert_eq!(b.store.practice(&holder(), id).await.expect("p").data, data);
    // Only the two resent deliveries are due; the other is untouched.
    let due: BTreeSet<String> =
        b.store.claim_due(NOW, LEASE, 10).await.expect("claim").into_iter().map(|c| c.key.institution).collect();
    assert_eq!(due, BTreeSet::from(["inps".to_string(), "inail".to_string()]));
    assert_eq!(state_of(&b, id, "registro-imprese").await, DeliveryState::TakenInCharge);
    // A late outcome about the rejected revision changes nothing.
    let mut late =
        DeliveryUpdate::new(DeliveryEvent::Outcome { accepted: false, protocol_number: None, rejection: None }, NOW);
    late.revision = Some(0);
    late.message_id = Some(format!("late-{id}"));
    assert_eq!(b.store.record(&key(id, "inail"), &late).await.expect("late"), Recorded::Unchanged);
    assert_eq!(state_of(&b, id, "inail").await, DeliveryState::Queued);
}

async fn a_rejection_or_a_failure_is_the_practices_state_until_mended(b: Backend) {
    let outcome = |accepted: bool, n: &str| {
        let rejection = (!accepted).then(|| Rejection {
            reasons: vec!["descrizione mancante".into()],
            fields: vec!["inail.work_processes".into()],
        });
        let protocol_number = accepted.then(|| format!("P-{n}"));
        let mut update = DeliveryUpdate::new(DeliveryEvent::Outcome { accepted, protocol_number, rejection }, NOW);
        update.message_id = Some(format!("outcome-{n}"));
        update
    };
    let store = &b.store;
    let state = |id| async move { store.practice(&holder(), id).await.expect("read").state };
    let id = submitted(&b).await;
    b.store.record(&key(id, "registro-imprese"), &outcome(true, &format!("ri-{id}"))).await.expect("ri");
    b.store.record(&key(id, "inail"), &outcome(false, &format!("inail-{id}"))).await.expect("inail");
    assert_eq!(state(id).await, PracticeState::ToCorrect, "a rejection is named while others are on their way");
    b.store.record(&key(id, "inps"), &outcome(true, &format!("inps-{id}"))).await.expect("inps");
    assert_eq!(state(id).await, PracticeState::ToCorrect, "never completed with a rejection");
    let listed = PracticeQuery { state: Some(PracticeState::ToCorrect), limit: 50, ..Default::default() };
    assert!(b.store.list(&holder(), &listed).await.expect("list").iter().any(|p| p.id == id));
    let search = PracticeSearch { state: Some(PracticeState::ToCorrect), ..Default::default() };
    assert!(b.store.search(&holder(), &search).await.expect("search").practices.iter().any(|p| p.id == id));
    // Given up and brought back, it still says what it needs.
    b.store.set_archived(&holder(), id, true, NOW).await.expect("archive");
    assert_eq!(b.store.set_archived(&holder(), id, false, NOW).await.expect("back").state, PracticeState::ToCorrect);
    // Corrected and sent again: on its way, then completed when accepted.
    let data = PracticeData::from([("inail.work_processes".to_string(), "Bar".to_string())]);
    let payload = serde_json::json!({"lavorazioni": {"descrizione": "Bar"}});
    b.store.resend(&holder(), &key(id, "inail"), Some((&data, &payload)), NOW).await.expect("corrected");
    assert_eq!(state(id).await, PracticeState::InProgress);
    let mut accepted = outcome(true, &format!("inail-again-{id}"));
    accepted.revision = Some(1);
    b.store.record(&key(id, "inail"), &accepted).await.expect("accepted");
    assert_eq!(state(id).await, PracticeState::Completed);

    // A failure while another institution answers: to be sent again, then on its way.
    let id = submitted(&b).await;
    for c in b.store.claim_due(NOW, LEASE, 10).await.expect("claim").into_iter().filter(|c| c.key.practice_id == id) {
        let event = match c.key.institution.as_str() {
            "inps" => DeliveryEvent::Failed { reason: "503".into() },
            _ => DeliveryEvent::Sent { protocol_number: None },
        };
        let mut update = DeliveryUpdate::new(event, NOW);
        update.fence = Some(c.fence);
        b.store.record(&c.key, &update).await.expect("record");
    }
    assert_eq!(state(id).await, PracticeState::ToResend);
    b.store.resend(&holder(), &key(id, "inps"), None, NOW).await.expect("resend");
    assert_eq!(state(id).await, PracticeState::InProgress);
}

async fn silent_institutions_are_polled_on_schedule(b: Backend) {
    let id = submitted(&b).await;
    let first_poll = NOW + time::Duration::seconds(10);
    for c in b.store.claim_due(NOW, LEASE, 10).await.expect("claim") {
        let mut sent = DeliveryUpdate::new(DeliveryEvent::Sent { protocol_number: None }, NOW);
        sent.fence = Some(c.fence);
        // INPS is polled; the others call back.
        sent.next_at = (c.key.institution == "inps").then_some(first_poll);
        b.store.record(&c.key, &sent).await.expect("record");
    }
    let pace = PollPace { first: Duration::from_secs(30), max: Duration::from_secs(100) };
    assert!(b.store.claim_for_poll("inps", NOW, pace, 10).await.expect("poll").is_empty(), "not yet");
    let due = b.store.claim_for_poll("inps", first_poll, pace, 10).await.expect("poll");
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].key.practice_id, due[0].revision, &due[0].owner), (id, 0, &holder()));
    assert!(b.other.claim_for_poll("inps", first_poll, pace, 10).await.expect("poll").is_empty(), "rescheduled");
    assert!(b.store.claim_for_poll("inail", first_poll, pace, 10).await.expect("poll").is_empty(), "not polled");
    let later = first_poll + time::Duration::seconds(30);
    assert_eq!(b.store.claim_for_poll("inps", later, pace, 10).await.expect("poll").len(), 1, "polled again");
    // The pace backs off: 30 s, then 60 s, then at most 100 s.
    let sooner = later + time::Duration::seconds(59);
    assert!(b.store.claim_for_poll("inps", sooner, pace, 10).await.expect("poll").is_empty(), "backed off");
    let third = later + time::Duration::seconds(60);
    assert_eq!(b.store.claim_for_poll("inps", third, pace, 10).await.expect("poll").len(), 1, "third");
    assert!(b
        .store
        .claim_for_poll("inps", third + time::Duration::seconds(99), pace, 10)
        .await
        .expect("poll")
        .is_empty());
    let fourth = third + time::Duration::seconds(100);
    assert_eq!(b.store.claim_for_poll("inps", fourth, pace, 10).await.expect("poll").len(), 1, "capped");
    // Once the outcome is known, polling stops.
    let outcome = DeliveryUpdate::new(
        DeliveryEvent::Outcome { accepted: true, protocol_number: Some("P".into()), rejection: None },
        fourth,
    );
    b.store.record(&key(id, "inps"), &outcome).await.expect("outcome");
    let much_later = fourth + time::Duration::hours(1);
    assert!(b.store.claim_for_poll("inps", much_later, pace, 10).await.expect("poll").is_empty());
}

async fn status_addresses_values_and_silence_are_kept(b: Backend) {
    let id = submitted(&b).await;
    for c in b.store.claim_due(NOW, LEASE, 10).await.expect("claim") {
        let mut sent = DeliveryUpdate::new(DeliveryEvent::Sent { protocol_number: None }, NOW);
        sent.fence = Some(c.fence);
        sent.next_at = Some(NOW + time::Duration::seconds(5));
        if c.key.institution == "inps" {
            sent.status_url = Some("/denunce/7/stato".into());
            sent.values.insert("codice_ditta".into(), "123".into());
        }
        b.store.record(&c.key, &sent).await.expect("record");
    }
    let pace = PollPace { first: Duration::from_secs(5), max: Duration::from_secs(5) };
    let due = b.other.claim_for_poll("inps", NOW + time::Duration::seconds(5), pace, 10).await.expect("poll");
    assert_eq!(due[0].status_url.as_deref(), Some("/denunce/7/stato"));
    assert!(due[0].reference.starts_with("SPT-"), "{:?}", due[0]);
    // A later answer adds values, never loses earlier ones.
    let mut taken = DeliveryUpdate::new(
        DeliveryEvent::TakenInCharge { protocol_number: "P1".into() },
        NOW + time::Duration::seconds(6),
    );
    taken.values.insert("pat".into(), "9".into());
    b.store.record(&key(id, "inps"), &taken).await.expect("taken");
    let deliveries = b.other.deliveries(&holder(), id).await.expect("deliveries");
    let inps = deliveries.iter().find(|d| d.institution == "inps").expect("inps");
    assert_eq!(inps.values.get("codice_ditta").map(String::as_str), Some("123"));
    assert_eq!(inps.values.get("pat").map(String::as_str), Some("9"));
    assert_eq!(inps.last_news_at, Some(NOW + time::Duration::seconds(6)));

    // Silence: INAIL's last news was at NOW, INPS's a little later.
    let cutoff = NOW + time::Duration::seconds(1);
    let silent = b.store.silent_since("inail", cutoff, 10).await.expect("silent");
    assert_eq!(silent.len(), 1);
    assert!(b.store.silent_since("inps", cutoff, 10).await.expect("silent").is_empty(), "INPS spoke later");
    let no_news = DeliveryUpdate::new(DeliveryEvent::NoNews, cutoff);
    assert!(matches!(b.store.record(&key(id, "inail"), &no_news).await.expect("no news"), Recorded::Applied(_)));
    assert!(b.store.silent_since("inail", cutoff, 10).await.expect("silent").is_empty(), "marked once");
    let practice = b.other.practice(&holder(), id).await.expect("practice");
    assert_eq!(practice.state, PracticeState::ToResend, "no news is not an outcome: the user is asked to resend");
    // Resent: queued again with the same revision; late news from before still counts.
    let resent = b.store.resend(&holder(), &key(id, "inail"), None, cutoff).await.expect("resend");
    assert_eq!((resent.state(), resent.status.revision, resent.last_news_at), (DeliveryState::Queued, 0, None));
}

async fn waiting_filings_are_held_until_the_first_is_accepted_and_take_its_values(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    let mut submission = submission(&[("business.name", "Bar Roma")]);
    let uses = |target: &str, value: &str| domain::catalog::AnswerMapping {
        target: target.into(),
        institution: "registro-imprese".into(),
        value: value.into(),
    };
    for f in submission.filings.iter_mut().filter(|f| f.institution != "registro-imprese") {
        f.waits_for = Some("registro-imprese".into());
        f.uses = vec![uses("impresa.rea", "numero_rea"), uses("impresa.protocollo_ri", "protocol_number")];
    }
    b.store.submit(&holder(), p.id, &submission).await.expect("submit");
    let id = p.id;
    assert_eq!(state_of(&b, id, "inps").await, DeliveryState::Waiting);
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|c| c.key.institution.as_str()).collect::<Vec<_>>(),
        ["registro-imprese"],
        "only the first"
    );
    // Rejected: the others stay held.
    let rejection = Rejection { reasons: vec!["PEC".into()], fields: vec!["business.pec".into()] };
    let mut rejected = DeliveryUpdate::new(DeliveryEvent::RejectedOnReceipt(rejection), NOW);
    rejected.fence = Some(claimed[0].fence);
    b.store.record(&key(id, "registro-imprese"), &rejected).await.expect("rejected");
    assert_eq!(state_of(&b, id, "inail").await, DeliveryState::Waiting, "held");
    let practice = b.other.practice(&holder(), id).await.expect("practice");
    assert_eq!(practice.state, PracticeState::ToCorrect, "a rejection to correct, not a return to drafts");
    // Corrected and accepted, with the REA number: the others go, with it in their payload.
    let data: PracticeData = [("business.name".to_string(), "Bar Roma".to_string())].into_iter().collect();
    let corrected = serde_json::json!({"for": "registro-imprese", "pec": "ok"});
    b.store.resend(&holder(), &key(id, "registro-imprese"), Some((&data, &corrected)), NOW).await.expect("resend");
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let mut accepted = DeliveryUpdate::new(
        DeliveryEvent::Outcome { accepted: true, protocol_number: Some("RI-1".into()), rejection: None },
        NOW,
    );
    accepted.fence = Some(claimed[0].fence);
    accepted.values.insert("numero_rea".into(), "RM-1234567".into());
    b.store.record(&key(id, "registro-imprese"), &accepted).await.expect("accepted");
    let mut released = b.other.claim_due(NOW, LEASE, 10).await.expect("claim");
    released.sort_by(|a, b| a.key.institution.cmp(&b.key.institution));
    assert_eq!(released.iter().map(|c| c.key.institution.as_str()).collect::<Vec<_>>(), ["inail", "inps"]);
    for r in &released {
        assert_eq!(r.payload["impresa"]["rea"], "RM-1234567", "{:?}", r.payload);
        assert_eq!(r.payload["impresa"]["protocollo_ri"], "RI-1");
        assert_eq!(r.payload["for"], r.key.institution, "the rest of the payload kept");
    }
    let timeline = b.store.timeline(&holder(), id).await.expect("timeline");
    assert_eq!(timeline.iter().filter(|e| e.kind == "released").count(), 2);
}

async fn nobody_reached_when_the_first_failed_and_the_others_wait(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    let mut submission = submission(&[("business.name", "Bar Roma")]);
    for f in submission.filings.iter_mut().filter(|f| f.institution != "registro-imprese") {
        f.waits_for = Some("registro-imprese".into());
    }
    b.store.submit(&holder(), p.id, &submission).await.expect("submit");
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    let mut failed = DeliveryUpdate::new(DeliveryEvent::Failed { reason: "down".into() }, NOW);
    failed.fence = Some(claimed[0].fence);
    b.store.record(&key(p.id, "registro-imprese"), &failed).await.expect("failed");
    let practice = b.other.practice(&holder(), p.id).await.expect("practice");
    assert_eq!((practice.state, practice.needs_resend), (PracticeState::Draft, true), "back to the drafts");
    // Sent again from the drafts: the others wait again.
    b.store.submit(&holder(), p.id, &submission).await.expect("submit again");
    assert_eq!(state_of(&b, p.id, "inps").await, DeliveryState::Waiting);
    assert_eq!(state_of(&b, p.id, "registro-imprese").await, DeliveryState::Queued);
}

async fn sessions_live_until_they_expire_or_end(b: Backend) {
    let session = SessionRecord {
        id_hash: "ab".repeat(32),
        holder: holder(),
        fingerprint: "cd".repeat(32),
        csrf_token: "token".into(),
        created_at: 1_000,
        last_seen_at: 1_000,
    };
    b.store.create_session(&session).await.expect("create");
    assert_eq!(b.other.session(&session.id_hash).await.expect("read"), Some(session.clone()), "shared by processes");
    b.store.touch_session(&session.id_hash, 5_000).await.expect("touch");
    b.store.touch_session(&session.id_hash, 4_000).await.expect("an older touch");
    assert_eq!(b.store.session(&session.id_hash).await.expect("read").map(|s| s.last_seen_at), Some(5_000));
    // Idle since before 5 000? No. Created before 2 000? Yes: gone.
    assert_eq!(b.store.delete_expired_sessions(4_000, 500).await.expect("sweep"), 0);
    assert_eq!(b.store.delete_expired_sessions(4_000, 2_000).await.expect("sweep"), 1);
    assert_eq!(b.store.session(&session.id_hash).await.expect("read"), None);
    b.store.create_session(&session).await.expect("create again");
    b.store.delete_session(&session.id_hash).await.expect("logout");
    assert_eq!(b.store.session(&session.id_hash).await.expect("read"), None);
}

async fn a_card_keeps_a_bounded_number_of_sessions(b: Backend) {
    let session = |n: i64, fingerprint: &str| SessionRecord {
        id_hash: format!("{n:064x}"),
        holder: holder(),
        fingerprint: fingerprint.into(),
        csrf_token: "token".into(),
        created_at: 1_000 + n,
        last_seen_at: 1_000 + n,
    };
    let other_card = session(100, &"ef".repeat(32));
    b.store.create_session(&other_card).await.expect("another card");
    // A client that never keeps its cookie: a new session each time, the same card.
    let opened = storage::SESSIONS_PER_CARD + 5;
    for n in 0..opened {
        b.store.create_session(&session(n, &"cd".repeat(32))).await.expect("create");
    }
    let mut live = Vec::new();
    for n in 0..opened {
        if b.store.session(&session(n, "").id_hash).await.expect("read").is_some() {
            live.push(n);
        }
    }
    assert_eq!(live, (opened - storage::SESSIONS_PER_CARD..opened).collect::<Vec<_>>(), "the newest only");
    assert!(b.store.session(&other_card.id_hash).await.expect("read").is_some(), "another card's session stays");
    // The one just opened stays even when the others were opened at the same millisecond.
    let mut same_time = session(999, &"cd".repeat(32));
    same_time.created_at = 1_000 + opened - 1;
    b.store.create_session(&same_time).await.expect("create");
    assert!(b.store.session(&same_time.id_hash).await.expect("read").is_some(), "the new session stays");
}

async fn search_by_every_key_with_pages_and_order(b: Backend) {
    // Three practices of the holder: two sent (one with a protocol number), one draft.
    let mut ids = Vec::new();
    for (i, (name, cf)) in [("Bar Roma", "RSSMRA45C12F205C"), ("Forno 100% Bio", "00743110157"), ("Bar Milano", "")]
        .into_iter()
        .enumerate()
    {
        let mut p = draft(&holder(), &[("business.name", name), ("business.tax_code", cf)]);
        p.updated_at = NOW + time::Duration::seconds(i as i64);
        b.store.create_draft(&p).await.expect("create");
        ids.push(p.id);
    }
    let mut other = draft(&stranger(), &[("business.name", "Bar Roma")]);
    other.service_id = "chiusura".into();
    b.store.create_draft(&other).await.expect("create other's");
    for id in &ids[..2] {
        let practice = b.store.practice(&holder(), *id).await.expect("read");
        let data: Vec<(&str, &str)> = practice.data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        b.store.submit(&holder(), *id, &submission(&data)).await.expect("submit");
    }
    let sent = DeliveryUpdate::new(DeliveryEvent::Sent { protocol_number: Some("INPS-2026-0000042".into()) }, NOW);
    b.store.record(&key(ids[1], "inps"), &sent).await.expect("record");
    let reference = b.store.practice(&holder(), ids[0]).await.expect("read").reference.expect("sent").to_string();

    let find = |search: PracticeSearch| {
        let store = b.store.clone();
        async move { store.search(&holder(), &search).await.expect("search") }
    };
    let text = |t: &str| PracticeSearch { text: Some(t.into()), ..Default::default() };
    let ids_of = |page: &storage::SearchPage| page.practices.iter().map(|p| p.id).collect::<Vec<_>>();

    assert_eq!(ids_of(&find(text(&reference)).await), [ids[0]], "by reference");
    assert_eq!(ids_of(&find(text(&reference.to_lowercase())).await), [ids[0]], "reference in any case");
    assert_eq!(ids_of(&find(text("INPS-2026-0000042")).await), [ids[1]], "by protocol number");
    assert_eq!(ids_of(&find(text("inps-2026-00")).await), [ids[1]], "by the start of a protocol number");
    let start = &reference[..reference.len() - 2];
    assert!(ids_of(&find(text(start)).await).contains(&ids[0]), "by the start of a reference number");
    assert_eq!(find(text("SPT-")).await.total, 2, "every sent practice's reference starts so");
    assert!(find(text("PT-")).await.practices.is_empty(), "a reference matches from its start only");
    assert_eq!(ids_of(&find(text("rssmra45c12f205c")).await), [ids[0]], "by business codice fiscale");
    assert_eq!(ids_of(&find(text("00743110157")).await), [ids[1]], "by company code");
    let bars = find(text(" bar ")).await;
    assert_eq!(bars.total, 2, "by part of the name, never another owner's");
    assert_eq!(ids_of(&find(text("100%")).await), [ids[1]], "LIKE wildcards are literal");
    assert!(find(text("_")).await.practices.is_empty(), "a lone _ matches only an underscore");
    assert!(find(text("nessuna")).await.practices.is_empty());
    assert_eq!(ids_of(&find(text("AR MIL")).await), [ids[2]], "a part inside the name, in any case");
    assert_eq!(find(text("ba")).await.total, 2, "a part shorter than a trigram");
    // A renamed business is found by its new name only (the name index follows the data).
    let renamed = PracticeData::from([
        ("business.name".to_string(), "Osteria Nuova".to_string()),
        ("business.tax_code".to_string(), String::new()),
    ]);
    b.store.update_draft(&holder(), ids[2], &renamed, NOW).await.expect("rename");
    assert!(find(text("milano")).await.practices.is_empty(), "the old name is forgotten");
    assert_eq!(ids_of(&find(text("osteria nuo")).await), [ids[2]], "the new name is found");

    let drafts = find(PracticeSearch { state: Some(PracticeState::Draft), ..Default::default() }).await;
    assert_eq!(ids_of(&drafts), [ids[2]]);
    let none = find(PracticeSearch { service: Some("chiusura".into()), ..Default::default() }).await;
    assert_eq!(none.total, 0, "the other owner's service is not found");
    let in_range = PracticeSearch {
        submitted_from: Some(NOW),
        submitted_before: Some(NOW + time::Duration::hours(1)),
        ..Default::default()
    };
    assert_eq!(find(in_range).await.total, 2, "sent within the range; drafts have no date of sending");
    let later = PracticeSearch { submitted_from: Some(NOW + time::Duration::hours(1)), ..Default::default() };
    assert_eq!(find(later).await.total, 0);

    // Pages of one, by reference ascending: the two sent ones in order, the draft last.
    let mut seen = Vec::new();
    for offset in 0..3 {
        let page = find(PracticeSearch { sort: SortKey::Reference, limit: 1, offset, ..Default::default() }).await;
        assert_eq!(page.total, 3);
        seen.extend(ids_of(&page));
    }
    assert_eq!(seen, [ids[0], ids[1], ids[2]]);
    let newest = find(PracticeSearch { descending: true, ..Default::default() }).await;
    assert_eq!(newest.practices.len(), 3);
    assert!(newest.practices.windows(2).all(|w| w[0].updated_at >= w[1].updated_at));
}

async fn archive_and_bring_back(b: Backend) {
    let d = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&d).await.expect("create");
    let later = NOW + time::Duration::hours(1);
    let archived = b.store.set_archived(&holder(), d.id, true, later).await.expect("archive draft");
    assert_eq!((archived.state, archived.updated_at), (PracticeState::Archived, later));
    assert!(matches!(b.store.set_archived(&stranger(), d.id, false, later).await, Err(StoreError::NotFound)));
    let back = b.store.set_archived(&holder(), d.id, false, later).await.expect("bring back");
    assert_eq!(back.state, PracticeState::Draft, "never sent: back to the drafts");

    // In progress: cannot be archived until it is completed.
    let id = submitted(&b).await;
    let refused = b.store.set_archived(&holder(), id, true, later).await;
    assert!(matches!(refused, Err(StoreError::WrongState(PracticeState::InProgress))), "{refused:?}");
    for institution in ["registro-imprese", "inps", "inail"] {
        let outcome = DeliveryEvent::Outcome {
            accepted: true,
            protocol_number: Some(format!("{institution}-1")),
            rejection: None,
        };
        b.store.record(&key(id, institution), &DeliveryUpdate::new(outcome, NOW)).await.expect("outcome");
    }
    assert_eq!(b.store.practice(&holder(), id).await.expect("read").state, PracticeState::Completed);
    b.store.set_archived(&holder(), id, true, later).await.expect("archive completed");
    let twice = b.store.set_archived(&holder(), id, true, later).await;
    assert!(matches!(twice, Err(StoreError::WrongState(PracticeState::Archived))), "{twice:?}");
    let back = b.store.set_archived(&holder(), id, false, later).await.expect("bring back");
    assert_eq!(back.state, PracticeState::Completed, "sent: back to the completed");
}

async fn audit_chain_detects_every_tampering(b: Backend) {
    use storage::audit::{verify, Broken, NewAuditRecord};
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Ok(0), "an empty log holds");
    let act = |n: i64| NewAuditRecord {
        at: NOW + time::Duration::seconds(n),
        actor: "BNCSFN85T58G702W".into(),
        responsible: "RSSMRA45C12F205C".into(),
        action: "draft_saved".into(),
        detail: serde_json::json!({ "n": n, "text": "caffè «Roma»" }),
    };
    // Appends from two pools at once still make one chain.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = if n % 2 == 0 { b.store.clone() } else { b.other.clone() };
            let record = act(n);
            tokio::spawn(async move { store.append_audit(&record).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("append");
    }
    b.store.append_audit(&act(20)).await.expect("append");
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Ok(9));
    let mine = b.store.audit_for("RSSMRA45C12F205C", 3).await.expect("for");
    assert_eq!(mine.iter().map(|r| r.seq).collect::<Vec<_>>(), [9, 8, 7], "newest first");

    // Edited in place.
    b.tamper("UPDATE audit_log SET actor = 'XXXXXX00X00X000X' WHERE seq = 4").await;
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Err(Broken::Edited { seq: 4 }));
    b.tamper("UPDATE audit_log SET actor = 'BNCSFN85T58G702W' WHERE seq = 4").await;
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Ok(9), "restored");

    // Reordered: two records swap places.
    b.tamper("UPDATE audit_log SET seq = -2 WHERE seq = 2").await;
    b.tamper("UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    b.tamper("UPDATE audit_log SET seq = 3 WHERE seq = -2").await;
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Err(Broken::Edited { seq: 2 }));
    b.tamper("UPDATE audit_log SET seq = -2 WHERE seq = 2").await;
    b.tamper("UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    b.tamper("UPDATE audit_log SET seq = 3 WHERE seq = -2").await;
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Ok(9), "restored");

    // Deleted in the middle, and at the end.
    b.tamper("DELETE FROM audit_log WHERE seq = 9").await;
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Err(Broken::Head { last: 8, head: 9 }));
    b.tamper("DELETE FROM audit_log WHERE seq = 5").await;
    assert_eq!(verify(b.store.as_ref()).await.expect("verify"), Err(Broken::Gap { seq: 6, expected: 5 }));
}

async fn delegations_and_their_notices(b: Backend) {
    use domain::delegation::{Delegation, DelegationId, Ending, InstitutionState, Scope};
    use storage::{NoticeAnswer, NoticeKind};
    let d = Delegation {
        id: DelegationId::from_random_bytes([ID_COUNTER.fetch_add(1, Ordering::Relaxed) as u8; 16]),
        grantor: holder(),
        delegate: stranger(),
        delegate_name: "Stefania Bianco".into(),
        scope: Scope {
            institutions: ["inps".to_string(), "inail".to_string()].into(),
            businesses: ["00743110157".to_string()].into(),
            services: ["collaboratore-familiare".to_string()].into(),
        },
        valid_from: NOW,
        valid_until: NOW + time::Duration::days(30),
        note: "pratiche INPS dello studio".into(),
        created_at: NOW,
        ended: None,
        institutions: [
            ("inail".to_string(), InstitutionState::Pending),
            ("inps".to_string(), InstitutionState::Pending),
        ]
        .into(),
    };
    b.store.create_delegation(&d).await.expect("create");
    assert_eq!(b.store.delegation(d.id).await.expect("read"), d);
    assert_eq!(b.store.delegations_granted(&holder()).await.expect("granted"), std::slice::from_ref(&d));
    assert_eq!(b.store.delegations_received(&stranger()).await.expect("received"), std::slice::from_ref(&d));
    assert!(b.store.delegations_granted(&stranger()).await.expect("none").is_empty());

    // One grant notice per institution, leased: a second claim gets nothing.
    let lease = Duration::from_secs(30);
    let notices = b.store.claim_delegation_notices(NOW, lease, 10).await.expect("claim");
    assert_eq!(notices.len(), 2);
    assert!(notices.iter().all(|n| n.kind == NoticeKind::Grant && n.attempts == 1));
    assert!(b.other.claim_delegation_notices(NOW, lease, 10).await.expect("claim again").is_empty());
    let active = NoticeAnswer::Active { reference: "INPS-DEL-1".into() };
    b.store.record_notice(d.id, "inps", NoticeKind::Grant, &active).await.expect("record");
    let retry = NoticeAnswer::Retry { at: NOW + time::Duration::seconds(10), reason: "503".into() };
    b.store.record_notice(d.id, "inail", NoticeKind::Grant, &retry).await.expect("record");
    assert!(b.store.claim_delegation_notices(NOW, lease, 10).await.expect("not yet").is_empty());
    let again = b.store.claim_delegation_notices(NOW + time::Duration::seconds(10), lease, 10).await.expect("claim");
    assert_eq!((again.len(), again[0].institution.as_str(), again[0].attempts), (1, "inail", 2));
    let refused = NoticeAnswer::Refused { reason: "delegante non autorizzato".into() };
    b.store.record_notice(d.id, "inail", NoticeKind::Grant, &refused).await.expect("record");
    let read = b.store.delegation(d.id).await.expect("read");
    assert_eq!(read.institutions["inps"], InstitutionState::Active { reference: "INPS-DEL-1".into() });
    assert_eq!(read.institutions["inail"], InstitutionState::Refused { reason: "delegante non autorizzato".into() });

    // Revoked: only where it was not refused is the revocation told.
    let later = NOW + time::Duration::days(1);
    let ended = b.store.end_delegation(d.id, Ending::Revoked, later).await.expect("revoke");
    assert_eq!(ended.ended.map(|e| e.0), Some(Ending::Revoked));
    let twice = b.store.end_delegation(d.id, Ending::Renounced, later).await;
    assert!(matches!(twice, Err(StoreError::DelegationEnded)), "{twice:?}");
    let revocations = b.store.claim_delegation_notices(later, lease, 10).await.expect("claim");
    assert_eq!(revocations.len(), 1);
    assert_eq!((revocations[0].institution.as_str(), revocations[0].kind), ("inps", NoticeKind::Revoke));
    b.store.record_notice(d.id, "inps", NoticeKind::Revoke, &NoticeAnswer::Revoked).await.expect("record");
    assert_eq!(b.store.delegation(d.id).await.expect("read").institutions["inps"], InstitutionState::Revoked);
    assert!(b.store.claim_delegation_notices(later, lease, 10).await.expect("nothing left").is_empty());
    assert!(b.store.note_expiry(d.id).await.expect("note"), "the first to notice records the expiry");
    assert!(!b.other.note_expiry(d.id).await.expect("note again"), "once only");
    let unknown = DelegationId::from_random_bytes([0xee; 16]);
    assert!(matches!(b.store.delegation(unknown).await, Err(StoreError::NotFound)));
}

async fn a_collaborator_sees_only_what_the_delegation_covers(b: Backend) {
    let make = |service: &str, business: Option<&str>, actor: CodiceFiscale| {
        let mut p = draft(&holder(), &[("business.name", "Bar")]);
        p.service_id = service.into();
        if let Some(business) = business {
            p.data.insert("business.tax_code".into(), business.into());
        }
        p.actor = actor;
        p
    };
    let covered = make("avvio-ditta-individuale", Some("00743110157"), holder());
    let other_service = make("cessazione-impresa", Some("00743110157"), holder());
    let other_business = make("avvio-ditta-individuale", Some("01879020517"), holder());
    let collaborators_draft = make("avvio-ditta-individuale", None, stranger());
    let grantors_draft = make("avvio-ditta-individuale", None, holder());
    for p in [&covered, &other_service, &other_business, &collaborators_draft, &grantors_draft] {
        b.store.create_draft(p).await.expect("create");
    }
    let scope = ScopeFilter {
        services: vec!["avvio-ditta-individuale".into()],
        businesses: vec!["00743110157".into()],
        actor: stranger().to_string(),
    };
    let listed = b
        .store
        .list(&holder(), &PracticeQuery { scope: Some(scope.clone()), ..Default::default() })
        .await
        .expect("list");
    let mut ids: Vec<_> = listed.iter().map(|p| p.id).collect();
    ids.sort();
    let mut expected = vec![covered.id, collaborators_draft.id];
    expected.sort();
    assert_eq!(ids, expected);
    let found =
        b.store.search(&holder(), &PracticeSearch { scope: Some(scope), ..Default::default() }).await.expect("search");
    assert_eq!(found.total, 2);
    assert_eq!(b.store.list(&holder(), &PracticeQuery::default()).await.expect("all").len(), 5, "the grantor sees all");
    assert_eq!(b.store.practice(&holder(), collaborators_draft.id).await.expect("read").actor, stranger());
    // A delegation covering nothing shows nothing, not everything (the filter fails closed).
    let nothing = ScopeFilter { services: vec![], businesses: vec![], actor: stranger().to_string() };
    let query = PracticeQuery { scope: Some(nothing.clone()), ..Default::default() };
    assert!(b.store.list(&holder(), &query).await.expect("list").is_empty());
    let search = PracticeSearch { scope: Some(nothing), ..Default::default() };
    assert_eq!(b.store.search(&holder(), &search).await.expect("search").total, 0);
}

async fn the_desk_summary_counts_every_state_and_lists_what_needs_the_owner(b: Backend) {
    let fail = |c: &storage::ClaimedDelivery| {
        let mut failed = DeliveryUpdate::new(DeliveryEvent::Failed { reason: "down".into() }, NOW);
        failed.fence = Some(c.fence);
        failed
    };
    // Nobody reached: back to the drafts, to be sent again.
    let unreached = submitted(&b).await;
    for c in b.store.claim_due(NOW, LEASE, 10).await.expect("claim") {
        b.store.record(&c.key, &fail(&c)).await.expect("record");
    }
    // One recipient failed, the others still on their way.
    let partly = submitted(&b).await;
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    let inps = claimed.iter().find(|c| c.key.practice_id == partly && c.key.institution == "inps").expect("inps");
    b.store.record(&inps.key, &fail(inps)).await.expect("record");
    b.store.create_draft(&draft(&holder(), &[])).await.expect("a plain draft");
    b.store.create_draft(&draft(&stranger(), &[])).await.expect("someone else's");

    let summary = b.store.desk_summary(&holder(), None, 50).await.expect("summary");
    assert_eq!((summary.count(PracticeState::Draft), summary.count(PracticeState::InProgress)), (2, 0));
    // A failure the owner must act on names the practice's state, even with others on their way.
    assert_eq!((summary.count(PracticeState::ToResend), summary.count(PracticeState::Completed)), (1, 0));
    let store = &b.store;
    let reference = |id| async move { store.practice(&holder(), id).await.expect("p").reference.expect("ref") };
    assert_eq!(summary.to_resend, vec![(unreached, reference(unreached).await.to_string())]);
    assert_eq!(summary.attention.len(), 1, "{:?}", summary.attention);
    let (practice, of, delivery) = &summary.attention[0];
    assert_eq!(*practice, partly);
    assert_eq!((of.as_str(), delivery.institution.as_str()), (reference(partly).await.to_string().as_str(), "inps"));
    assert_eq!(delivery.state(), DeliveryState::Failed);
    // Bounded, and a delegation covering nothing sees nothing.
    assert!(b.store.desk_summary(&holder(), None, 0).await.expect("summary").attention.is_empty());
    let nothing = ScopeFilter { services: vec![], businesses: vec![], actor: stranger().to_string() };
    let scoped = b.store.desk_summary(&holder(), Some(&nothing), 50).await.expect("summary");
    assert!(scoped.counts.is_empty() && scoped.attention.is_empty() && scoped.to_resend.is_empty());
}

async fn an_edited_migration_already_applied_is_refused(b: Backend) {
    // Recorded before checksums were kept: filled in, and the store opens.
    b.tamper("UPDATE schema_migrations SET checksum = NULL WHERE version = 2").await;
    b.other.migrate().await.expect("a missing checksum is filled");
    b.other.migrate().await.expect("and then matches");
    // The text applied is not the text this build carries (as if 0003 had been edited).
    b.tamper("UPDATE schema_migrations SET checksum = 'e3b0c44298fc1c149afbf4c8996fb924' WHERE version = 3").await;
    let refused = b.other.migrate().await;
    assert!(
        matches!(&refused, Err(e @ StoreError::MigrationChanged { version: 3, .. }) if e.to_string().contains("sessions")),
        "{refused:?}"
    );
}

/// Two portals and two workers on one database: intake, claims, workers' answers, callbacks
/// and the user's resends of the same deliveries, all at once. Any deadlock (even one the
/// store would retry) or lost update fails the test.
async fn portals_workers_callbacks_and_resends_interleave_without_deadlock_or_lost_update(b: Backend) {
    const PRACTICES: usize = 8;
    const ROUNDS: usize = 12;
    let mut intake = Vec::new();
    for n in 0..PRACTICES {
        let portal = if n % 2 == 0 { b.store.clone() } else { b.other.clone() };
        intake.push(tokio::spawn(async move {
            let p = draft(&holder(), &[("business.name", "Bar Roma")]);
            portal.create_draft(&p).await.expect("create");
            portal.submit(&holder(), p.id, &submission(&[("business.name", "Bar Roma")])).await.expect("submit");
            p.id
        }));
    }
    let mut ids = Vec::new();
    for t in intake {
        ids.push(t.await.expect("intake"));
    }
    let failed = || DeliveryEvent::Failed { reason: "503".into() };
    let mut tasks = Vec::new();
    // Workers: claim what is due and answer it (INPS fails, so that the user resends it).
    for worker in 0..2 {
        let store = if worker == 0 { b.store.clone() } else { b.other.clone() };
        tasks.push(tokio::spawn(async move {
            let mut answered = 0usize;
            for _ in 0..ROUNDS * 2 {
                for c in store.claim_due(NOW, Duration::ZERO, 8).await.expect("claim") {
                    let event = if c.key.institution == "inps" {
                        failed()
                    } else {
                        DeliveryEvent::Sent { protocol_number: Some(format!("P-{}", c.key.practice_id)) }
                    };
                    let mut update = DeliveryUpdate::new(event, NOW);
                    update.fence = Some(c.fence);
                    if !matches!(store.record(&c.key, &update).await.expect("worker's answer"), Recorded::LostLease) {
                        answered += 1;
                    }
                }
                tokio::task::yield_now().await;
            }
            (answered, 0usize)
        }));
    }
    // Each practice: the user resends INPS on one portal while INPS's callbacks reach the other.
    for (n, id) in ids.iter().copied().enumerate() {
        let (portal, callbacks) =
            if n % 2 == 0 { (b.store.clone(), b.other.clone()) } else { (b.other.clone(), b.store.clone()) };
        tasks.push(tokio::spawn(async move {
            let mut resent = 0usize;
            for _ in 0..ROUNDS {
                match portal.resend(&holder(), &key(id, "inps"), None, NOW).await {
                    Ok(_) => resent += 1,
                    Err(StoreError::WrongDeliveryState(_) | StoreError::WrongState(_)) => {}
                    Err(e) => panic!("resend: {e}"),
                }
            }
            (0, resent)
        }));
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let mut news =
                    DeliveryUpdate::new(DeliveryEvent::TakenInCharge { protocol_number: format!("INPS-{round}") }, NOW);
                news.message_id = Some(format!("inps-{id}-{round}"));
                callbacks.record(&key(id, "inps"), &news).await.expect("callback");
            }
            (0, 0)
        }));
    }
    let (mut answered, mut resent) = (0, 0);
    for t in tasks {
        let (a, r) = t.await.expect("no transaction failed");
        answered += a;
        resent += r;
    }
    // Registro Imprese and INAIL at least (INPS may hear from its callback before any worker).
    assert!(answered >= PRACTICES * 2, "every first delivery answered ({answered})");
    assert_eq!((b.contention)(), 0, "a transaction lost to a deadlock or a serialization failure");
    // Nothing lost: every resend is in the timeline, and every practice agrees with its deliveries.
    let mut resends_logged = 0;
    for id in &ids {
        let timeline = b.store.timeline(&holder(), *id).await.expect("timeline");
        resends_logged += timeline.iter().filter(|e| e.kind == "resend").count();
        let practice = b.store.practice(&holder(), *id).await.expect("practice");
        let states: Vec<DeliveryState> =
            b.store.deliveries(&holder(), *id).await.expect("deliveries").iter().map(|d| d.state()).collect();
        let progress = domain::practice::Progress::of(&states).expect("deliveries");
        let moved = practice.state.apply(domain::practice::PracticeEvent::Progressed(progress));
        assert!(
            moved.map_or(true, |next| next == practice.state),
            "practice {id} is {:?} but its deliveries stand at {states:?}",
            practice.state
        );
    }
    assert_eq!(resends_logged, resent, "every resend accepted was recorded");
}

async fn a_used_token_is_refused_by_every_process_until_its_time_is_over(b: Backend) {
    let id = submitted(&b).await;
    let until_ms = storage::unix_millis(NOW) + 60_000;
    let token = |jti: &str| UsedToken { scope: "inps:agid-jwt-signature".into(), jti: jti.into(), until_ms };
    let news = |message: &str, at: OffsetDateTime, tokens: Vec<UsedToken>| {
        let mut update = DeliveryUpdate::new(DeliveryEvent::TakenInCharge { protocol_number: "INPS-1".into() }, at);
        update.message_id = Some(format!("{message}-{id}"));
        update.tokens = tokens;
        update
    };
    let first = news("m1", NOW, vec![token("a"), token("b")]);
    assert!(matches!(b.store.record(&key(id, "inps"), &first).await.expect("first"), Recorded::Applied(_)));
    // Another process, one token in common: refused whole, the new token not kept either.
    let replay = news("m2", NOW, vec![token("c"), token("b")]);
    assert_eq!(b.other.record(&key(id, "inps"), &replay).await.expect("replay"), Recorded::Replayed);
    let fresh = news("m3", NOW, vec![token("c")]);
    assert!(!matches!(b.other.record(&key(id, "inps"), &fresh).await.expect("fresh"), Recorded::Replayed));
    assert_eq!(
        b.store.timeline(&holder(), id).await.expect("timeline").iter().filter(|e| e.kind == "taken_in_charge").count(),
        2
    );
    // Past its time the token is forgotten (the signature's own time check refuses it then).
    let later = NOW + time::Duration::minutes(2);
    let after = news("m4", later, vec![token("a")]);
    assert_ne!(b.store.record(&key(id, "inps"), &after).await.expect("after"), Recorded::Replayed);
}

async fn committed_changes_are_announced_and_refused_ones_are_not(b: Backend) {
    use tokio::sync::broadcast::Receiver;
    // PostgreSQL's notices are the whole database's: other tests' practices go by too.
    async fn hears(rx: &mut Receiver<PracticeId>, id: PracticeId) {
        let wait = async { while rx.recv().await.expect("feed") != id {} };
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("announced");
    }
    let mut here = b.store.changes();
    let mut elsewhere = b.other.changes();
    let id = submitted(&b).await;
    hears(&mut here, id).await;
    if b.shared_feed {
        hears(&mut elsewhere, id).await;
    }
    // An answer that moves a delivery is announced; a refused resend is not.
    let claimed = b.store.claim_due(NOW, LEASE, 10).await.expect("claim");
    let inps = claimed.iter().find(|c| c.key.institution == "inps" && c.key.practice_id == id).expect("inps");
    let mut update = DeliveryUpdate::new(DeliveryEvent::Sent { protocol_number: Some("INPS-9".into()) }, NOW);
    update.fence = Some(inps.fence);
    b.store.record(&inps.key, &update).await.expect("record");
    hears(&mut here, id).await;
    assert!(b.store.resend(&holder(), &key(id, "inps"), None, NOW).await.is_err(), "nothing to resend");
    // A later committed change marks the end: announcements arrive in commit order, so
    // whatever the refused resend had announced would come before it.
    let marker = submitted(&b).await;
    let drain = async {
        let mut heard = Vec::new();
        loop {
            match here.recv().await.expect("feed") {
                next if next == marker => break heard,
                next => heard.push(next),
            }
        }
    };
    let heard = tokio::time::timeout(Duration::from_secs(5), drain).await.expect("marker announced");
    assert!(!heard.contains(&id), "a refused change is not announced");
}
