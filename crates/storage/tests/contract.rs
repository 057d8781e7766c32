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

use domain::identifiers::CodiceFiscale;
use domain::practice::{Filing, Practice, PracticeData, PracticeId, PracticeState, Submission};
use sqlx::postgres::PgConnectOptions;
use storage::postgres::PostgresStore;
use storage::sqlite::SqliteStore;
use storage::{PracticeQuery, PracticeStore, StoreError};
use time::macros::datetime;
use time::OffsetDateTime;

/// A store under test, and what must outlive it.
struct Backend {
    store: Arc<dyn PracticeStore>,
    /// A second, independent connection pool on the same database (another "process").
    other: Arc<dyn PracticeStore>,
    _dir: Option<tempfile::TempDir>,
    cleanup: Option<(sqlx::PgPool, String)>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((pool, schema)) = self.cleanup.take() {
            // Best effort: a leftover schema in a test database harms nothing.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&pool)
                            .await;
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
    Backend {
        store: Arc::new(store),
        other: Arc::new(other),
        _dir: Some(dir),
        cleanup: None,
    }
}

fn postgres_url() -> String {
    std::env::var("SPORTELLO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
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
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create schema");
    let options = || {
        url.parse::<PgConnectOptions>()
            .expect("postgres url")
            .options([("search_path", schema.as_str())])
    };
    let store = PostgresStore::connect_with(options())
        .await
        .expect("connect");
    let other = PostgresStore::connect_with(options())
        .await
        .expect("connect again");
    // Two processes starting together both migrate; the advisory lock serialises them.
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    a.expect("migrate");
    b.expect("migrate concurrently");
    Some(Backend {
        store: Arc::new(store),
        other: Arc::new(other),
        _dir: None,
        cleanup: Some((admin, schema)),
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
    bytes[8..]
        .copy_from_slice(&(OffsetDateTime::now_utc().unix_timestamp_nanos() as u64).to_be_bytes());
    Practice {
        id: PracticeId::from_random_bytes(bytes),
        owner: owner.clone(),
        service_id: "avvio-ditta-individuale".into(),
        state: PracticeState::Draft,
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        reference: None,
        created_at: NOW,
        updated_at: NOW,
        submitted_at: None,
    }
}

fn submission(data: &[(&str, &str)]) -> Submission {
    let data: PracticeData = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Submission {
        filings: ["registro-imprese", "inps", "inail"]
            .into_iter()
            .map(|institution| Filing {
                institution: institution.into(),
                filing_kind: format!("{institution}-filing"),
                payload: serde_json::json!({ "for": institution, "name": data.get("business.name") }),
            })
            .collect(),
        data,
        submitted_at: NOW + time::Duration::minutes(5),
    }
}

async fn draft_round_trip(b: Backend) {
    let p = draft(
        &holder(),
        &[("business.name", "Bar Roma"), ("seat.cap", "00184")],
    );
    b.store.create_draft(&p).await.expect("create");
    let read = b.store.practice(&holder(), p.id).await.expect("read");
    assert_eq!(read, p);
    // Another pool sees the committed row.
    assert_eq!(
        b.other
            .practice(&holder(), p.id)
            .await
            .expect("read elsewhere"),
        p
    );
}

async fn drafts_are_private_to_their_owner(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    assert!(matches!(
        b.store.practice(&stranger(), p.id).await,
        Err(StoreError::NotFound)
    ));
    let data = PracticeData::from([("business.name".to_string(), "Mine now".to_string())]);
    assert!(matches!(
        b.store.update_draft(&stranger(), p.id, &data, NOW).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        b.store.submit(&stranger(), p.id, &submission(&[])).await,
        Err(StoreError::NotFound)
    ));
    assert!(b
        .store
        .deliveries(&stranger(), p.id)
        .await
        .expect("deliveries")
        .is_empty());
    assert!(b
        .store
        .list(&stranger(), &PracticeQuery::default())
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        b.store
            .practice(&holder(), p.id)
            .await
            .expect("unchanged")
            .data,
        p.data
    );
}

async fn updating_a_draft_replaces_its_data(b: Backend) {
    let p = draft(
        &holder(),
        &[("business.name", "Bar Roma"), ("seat.cap", "00184")],
    );
    b.store.create_draft(&p).await.expect("create");
    let later = NOW + time::Duration::hours(1);
    let data = PracticeData::from([("business.name".to_string(), "Bar Milano".to_string())]);
    let updated = b
        .store
        .update_draft(&holder(), p.id, &data, later)
        .await
        .expect("update");
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
    assert_eq!(
        submitted.data, s.data,
        "the canonical data replaces the draft's"
    );
    assert_eq!(submitted.submitted_at, Some(s.submitted_at));
    let reference = submitted.reference.expect("reference number");
    assert_eq!(reference.year, 2026);
    assert!(reference.to_string().starts_with("SPT-2026-"));
    let deliveries = b
        .store
        .deliveries(&holder(), p.id)
        .await
        .expect("deliveries");
    let recipients: Vec<&str> = deliveries.iter().map(|d| d.institution.as_str()).collect();
    assert_eq!(
        recipients,
        ["registro-imprese", "inps", "inail"],
        "in the service's order"
    );
    assert!(deliveries
        .iter()
        .all(|d| d.state == domain::practice::DeliveryState::Queued));
    assert_eq!(
        deliveries[1].payload,
        serde_json::json!({"for": "inps", "name": "Bar Roma"})
    );
}

async fn submitted_practice_is_frozen(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    let first = b
        .store
        .submit(
            &holder(),
            p.id,
            &submission(&[("business.name", "Bar Roma")]),
        )
        .await
        .expect("submit");
    let again = b
        .store
        .submit(&holder(), p.id, &submission(&[("business.name", "Other")]))
        .await;
    assert!(
        matches!(
            again,
            Err(StoreError::WrongState(PracticeState::InProgress))
        ),
        "{again:?}"
    );
    let data = PracticeData::from([("business.name".to_string(), "Changed".to_string())]);
    let edit = b.store.update_draft(&holder(), p.id, &data, NOW).await;
    assert!(
        matches!(edit, Err(StoreError::WrongState(PracticeState::InProgress))),
        "{edit:?}"
    );
    let now = b.store.practice(&holder(), p.id).await.expect("read");
    assert_eq!(now, first, "nothing changed");
    assert_eq!(
        b.store
            .deliveries(&holder(), p.id)
            .await
            .expect("deliveries")
            .len(),
        3,
        "no extra deliveries"
    );
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
            let store = if i % 2 == 0 {
                b.store.clone()
            } else {
                b.other.clone()
            };
            let id = *id;
            tokio::spawn(async move { store.submit(&holder(), id, &submission(&[])).await })
        })
        .collect();
    let mut references = BTreeSet::new();
    for t in tasks {
        let practice = t.await.expect("task").expect("submit");
        references.insert(practice.reference.expect("reference").to_string());
    }
    assert_eq!(
        references.len(),
        ids.len(),
        "every reference is unique: {references:?}"
    );
}

async fn racing_submits_of_one_practice_have_one_winner(b: Backend) {
    let p = draft(&holder(), &[("business.name", "Bar Roma")]);
    b.store.create_draft(&p).await.expect("create");
    let (owner, s) = (holder(), submission(&[]));
    let (one, two) = tokio::join!(
        b.store.submit(&owner, p.id, &s),
        b.other.submit(&owner, p.id, &s)
    );
    let wins = [one.is_ok(), two.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(wins, 1, "{one:?} / {two:?}");
    let loser = if one.is_ok() { two } else { one };
    assert!(
        matches!(
            loser,
            Err(StoreError::WrongState(PracticeState::InProgress))
        ),
        "{loser:?}"
    );
    assert_eq!(
        b.store
            .deliveries(&holder(), p.id)
            .await
            .expect("deliveries")
            .len(),
        3
    );
}

async fn listing_filters_by_state_and_pages(b: Backend) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut p = draft(&holder(), &[("business.name", &format!("Bar {i}"))]);
        p.updated_at = NOW + time::Duration::seconds(i);
        b.store.create_draft(&p).await.expect("create");
        ids.push(p.id);
    }
    b.store
        .create_draft(&draft(&stranger(), &[]))
        .await
        .expect("create other's");
    b.store
        .submit(&holder(), ids[0], &submission(&[]))
        .await
        .expect("submit");

    let all = b
        .store
        .list(&holder(), &PracticeQuery::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 5);
    let drafts = b
        .store
        .list(
            &holder(),
            &PracticeQuery {
                state: Some(PracticeState::Draft),
                ..Default::default()
            },
        )
        .await
        .expect("list drafts");
    let names: Vec<&str> = drafts
        .iter()
        .map(|p| p.data["business.name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Bar 4", "Bar 3", "Bar 2", "Bar 1"],
        "most recently changed first"
    );
    let in_progress = b
        .store
        .list(
            &holder(),
            &PracticeQuery {
                state: Some(PracticeState::InProgress),
                ..Default::default()
            },
        )
        .await
        .expect("list in progress");
    assert_eq!(
        in_progress.iter().map(|p| p.id).collect::<Vec<_>>(),
        [ids[0]]
    );
    let page = b
        .store
        .list(
            &holder(),
            &PracticeQuery {
                state: Some(PracticeState::Draft),
                limit: 2,
                offset: 2,
            },
        )
        .await
        .expect("page");
    assert_eq!(
        page.iter()
            .map(|p| p.data["business.name"].as_str())
            .collect::<Vec<_>>(),
        ["Bar 2", "Bar 1"]
    );
}
