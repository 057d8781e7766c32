//! `sportello bench-search`: one million practices in a fresh SQLite store, the desk's
//! searches timed in the store, then the desk's pages served over HTTPS from that store under
//! load, beside the minimal HTTPS handler (see [`super::references`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use identity::test_pki::{CardSpec, TestPki};
use web::tls::TlsMaterial;

use super::references::{self, Load};
use crate::Settings;

/// What the search benchmark measured.
#[derive(Debug)]
pub struct SearchReport {
    pub practices: usize,
    pub owner_practices: usize,
    pub fill: Duration,
    /// (what was searched, results in all, median time, slowest time).
    pub searches: Vec<(String, u64, Duration, Duration)>,
    /// The desk's home: median time of its summary, and of the reference taken in the same run
    /// (the former way: up to 200 practices per state listed, then one query per practice).
    pub home: (Duration, Duration),
    /// The desk's pages served from this store under load, and the minimal handler beside.
    pub pages: Vec<(String, Load)>,
    pub minimal: Load,
}

impl std::fmt::Display for SearchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "search among {} practices (SQLite; the searching holder owns {}), filled in {:.1} s",
            self.practices,
            self.owner_practices,
            self.fill.as_secs_f64()
        )?;
        for (what, total, median, max) in &self.searches {
            writeln!(
                f,
                "  {what:<52} {total:>6} found   median {:>7.2} ms   max {:>7.2} ms",
                median.as_secs_f64() * 1000.0,
                max.as_secs_f64() * 1000.0
            )?;
        }
        let (summary, former) = self.home;
        writeln!(
            f,
            "  desk home summary: median {:.2} ms; former per-practice reads {:.2} ms (ratio {:.1}x)",
            summary.as_secs_f64() * 1000.0,
            former.as_secs_f64() * 1000.0,
            former.as_secs_f64() / summary.as_secs_f64().max(1e-9)
        )?;
        writeln!(f, "pages for that holder over HTTPS, {} connections:", super::PAGE_CONNECTIONS)?;
        writeln!(f, "  {:<40} {}", "minimal HTTPS handler (reference)", self.minimal)?;
        for (page, load) in &self.pages {
            let ratio = load.per_second / self.minimal.per_second.max(f64::EPSILON);
            writeln!(f, "  {page:<40} {load}   {ratio:.2}x of the reference")?;
        }
        Ok(())
    }
}

/// Median times of the desk home's summary and of the former way of reading it, for `holder`.
async fn time_home(
    store: &storage::sqlite::SqliteStore,
    holder: &domain::identifiers::CodiceFiscale,
    rounds: usize,
) -> anyhow::Result<(Duration, Duration)> {
    use domain::practice::PracticeState;
    use storage::{PracticeQuery, PracticeStore};
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (mut summary, mut former) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        store.desk_summary(holder, None, 50).await?;
        summary.push(t.elapsed());
        let t = Instant::now();
        for state in [PracticeState::Draft, PracticeState::InProgress, PracticeState::Completed] {
            let query = PracticeQuery { state: Some(state), limit: PracticeQuery::MAX_LIMIT, ..Default::default() };
            for practice in store.list(holder, &query).await? {
                store.deliveries(holder, practice.id).await?;
            }
        }
        former.push(t.elapsed());
    }
    Ok((median(summary), median(former)))
}

/// Fills a fresh SQLite store with `total` sent practices (each with one delivery and its
/// protocol number) spread over many holders, one of whom owns `total / 100`, then times the
/// desk's searches for that holder, each repeated `rounds` times.
pub async fn search(total: usize, rounds: usize, catalog_dir: &std::path::Path) -> anyhow::Result<SearchReport> {
    use storage::{PracticeSearch, PracticeStore, SortKey};
    let dir = tempfile::tempdir()?;
    let store = storage::sqlite::SqliteStore::open(&dir.path().join("search.db")).await?;
    store.migrate().await?;
    let owner = "DPRTNT80A01H501Y";
    let total_i64 = i64::try_from(total)?;
    let started = Instant::now();
    // Every 100th practice is the searching holder's; the others belong to 10 000 others.
    // Dates: one practice every 30 seconds from 1 January 2026.
    let fill = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1) \
        INSERT INTO practices (id, owner_cf, service_id, state, data, reference, created_at, updated_at, submitted_at) \
        SELECT printf('%08x-0000-4000-8000-%012x', i, i), \
               CASE WHEN i % 100 = 0 THEN ?2 ELSE printf('OWNER%05d', i % 10000) END, \
               CASE i % 3 WHEN 0 THEN 'avvio-ditta-individuale' WHEN 1 THEN 'variazione-sede-attivita' ELSE 'cessazione-impresa' END, \
               CASE WHEN i % 7 = 0 THEN 'archived' ELSE 'completed' END, \
               json_object('business.name', 'Impresa ' || i || ' di prova', 'business.tax_code', printf('%011d', i)), \
               printf('SPT-2026-%07d', i), \
               strftime('%Y-%m-%dT%H:%M:%SZ', 1767225600 + i * 30, 'unixepoch'), \
               strftime('%Y-%m-%dT%H:%M:%SZ', 1767225600 + i * 30 + 60, 'unixepoch'), \
               strftime('%Y-%m-%dT%H:%M:%SZ', 1767225600 + i * 30, 'unixepoch') \
        FROM n";
    sqlx::query(fill).bind(total_i64).bind(owner).execute(store.pool()).await?;
    let deliveries =
        "INSERT INTO deliveries (practice_id, institution, position, filing_kind, state, payload, created_at, \
        updated_at, protocol_number) \
        SELECT id, 'inps', 0, 'iscrizione', 'accepted', '{}', created_at, updated_at, \
               'INPS-AOO1-2026-' || substr(reference, 10) FROM practices";
    sqlx::query(deliveries).execute(store.pool()).await?;
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    let fill = started.elapsed();

    let holder = domain::identifiers::CodiceFiscale::parse(owner).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mine = |i: usize| i - i % 100; // a practice of the searching holder
    let day = |d: u8| time::Date::from_calendar_date(2026, time::Month::January, d).map(domain::italian_day_start);
    let cases: Vec<(String, PracticeSearch)> = vec![
        ("everything, newest change first (page 1)".into(), PracticeSearch::default()),
        ("everything, page 250 (offset 4980)".into(), PracticeSearch { offset: 4980, ..Default::default() }),
        (
            "by reference number".into(),
            PracticeSearch { text: Some(format!("SPT-2026-{:07}", mine(total / 2))), ..Default::default() },
        ),
        (
            "by protocol number".into(),
            PracticeSearch { text: Some(format!("INPS-AOO1-2026-{:07}", mine(total / 3))), ..Default::default() },
        ),
        (
            "by business codice fiscale".into(),
            PracticeSearch { text: Some(format!("{:011}", mine(total / 4))), ..Default::default() },
        ),
        ("by part of the business name".into(), PracticeSearch { text: Some("4200 di".into()), ..Default::default() }),
        (
            "by service and state, sorted by reference".into(),
            PracticeSearch {
                service: Some("avvio-ditta-individuale".into()),
                state: Some(domain::practice::PracticeState::Archived),
                sort: SortKey::Reference,
                ..Default::default()
            },
        ),
        (
            "sent between 2 and 9 January".into(),
            PracticeSearch { submitted_from: day(2).ok(), submitted_before: day(10).ok(), ..Default::default() },
        ),
    ];
    let mut searches = Vec::new();
    for (what, mut query) in cases {
        query.limit = 20;
        query.descending = query.sort != SortKey::Reference;
        let mut times = Vec::with_capacity(rounds);
        let mut found = 0;
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            found = store.search(&holder, &query).await?.total;
            times.push(t.elapsed());
        }
        times.sort();
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        searches.push((what, found, median, max));
    }
    let home = time_home(&store, &holder, rounds).await?;
    let reference = format!("SPT-2026-{:07}", mine(total / 2));
    let (pages, minimal) = serve_pages(&dir, store, catalog_dir, &reference).await?;
    Ok(SearchReport { practices: total, owner_practices: total.div_ceil(100), fill, searches, home, pages, minimal })
}

/// Serves the desk from the filled store and loads its pages for the searching holder (its
/// first practice, and a search by `reference`), then the minimal handler the same way.
async fn serve_pages(
    dir: &tempfile::TempDir,
    store: storage::sqlite::SqliteStore,
    catalog_dir: &std::path::Path,
    reference: &str,
) -> anyhow::Result<(Vec<(String, Load)>, Load)> {
    let pki = TestPki::generate("Sportello bench CA")?;
    let server = pki.server(&["localhost", "127.0.0.1"])?;
    let holder = pki.card(&CardSpec::new("Utente", "DiProva", "DPRTNT80A01H501Y"))?;
    let tls = TlsMaterial::new(server.cert_pem.clone(), server.key_pem.clone(), pki.ca.cert_pem.clone());
    let settings = Settings {
        store: Some(Arc::new(store)),
        ..Settings::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            format!("sqlite://{}", dir.path().join("search.db").display()),
            catalog_dir.to_path_buf(),
            tls.clone(),
        )
    };
    let running = crate::start(&settings).await?;
    let base = format!("https://localhost:{}", running.addr.port());
    // The holder's first practice (the fill's ids: practice i is `%08x-0000-4000-8000-%012x`).
    let first = "00000000-0000-4000-8000-000000000000";
    let loaded = references::desk_pages_beside_minimal(&pki, &holder, &tls, &base, (first, reference)).await;
    running.stop().await;
    loaded
}
