//! `sportello bench`: submits practices with three recipients over the real HTTPS API against
//! the simulated institutions, and reports intake, delivery throughput and the time from
//! submission to the last protocol number, next to the raw SQLite commit rate of the same disk;
//! and, per institution, the time to its protocol number and to its outcome through its own
//! kind of channel (with `--interfaces own`, the demo's: BLOCK_REST, NONBLOCK_PULL_REST, and
//! NONBLOCK_PUSH_REST with XML behind PDND; with `sportello`, Sportello's own for all).
//!
//! Everything runs on loopback in one process (portal, worker, three simulators), with a fresh
//! SQLite database in a temporary folder; request loops are bounded by the number of practices.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use delivery::worker::WorkerSettings;
use identity::test_pki::{CardSpec, Issued, TestPki};
use serde_json::{json, Value};
use web::tls::TlsMaterial;

use crate::simulated::{start_simulated, ChannelTuning, PortalIdentity, SimSpec};
use crate::Settings;

pub mod references;
mod search;

pub use search::{search, SearchReport};

/// ModI exchanges one filing costs through Sportello's own interface: the filing itself and
/// its two callbacks (taken in charge, outcome), each signed by one side and verified by the
/// other.
pub const EXCHANGES_PER_FILING: f64 = 3.0;

/// An HTTPS client trusting `ca_pem` and presenting `card` (if any); `localhost` is 127.0.0.1.
pub fn https_client(ca_pem: &str, card: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
    https_client_with(ca_pem, card, true)
}

/// The same, choosing whether redirects are followed (a browser-like test keeps the cookies
/// each redirect sets, so it follows them itself).
pub fn https_client_with(
    ca_pem: &str,
    card: Option<&Issued>,
    follow_redirects: bool,
) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match card {
        Some(card) => {
            let certs = rustls_pemfile::certs(&mut card.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pemfile::private_key(&mut card.key_pem.as_bytes())?.context("no key in the card")?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .redirect(if follow_redirects {
            reqwest::redirect::Policy::default()
        } else {
            reqwest::redirect::Policy::none()
        })
        .build()?)
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub practices: usize,
    pub concurrency: usize,
    pub intake_per_second: f64,
    pub deliveries_per_second: f64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    pub sqlite_commits_per_second: f64,
    /// The store's commits (group commit batches) during the run, per practice.
    pub commits_per_practice: f64,
    /// ModI exchanges per second on this machine, and the filings per second they allow.
    pub modi_exchanges_per_second: f64,
    /// Practices submitted at half the peak rate: (rate, p50, p99 submit → last protocol).
    pub half_load: (f64, Duration, Duration),
    /// The desk's pages under load, beside the minimal HTTPS handler, over `page_connections`.
    pub pages: Vec<(String, references::Load)>,
    pub minimal: references::Load,
    pub page_connections: usize,
    /// Peak resident memory of the whole benchmark process (portal, worker, simulators, client).
    pub peak_rss_mb: Option<f64>,
    /// Per institution: its channel's kind, and the time from submission to its protocol
    /// number and to its outcome.
    pub per_channel: Vec<ChannelFigures>,
}

/// What one institution's channel took.
#[derive(Debug, Clone)]
pub struct ChannelFigures {
    pub institution: String,
    pub kind: String,
    pub protocol_p50: Duration,
    pub protocol_p99: Duration,
    pub outcome_p50: Duration,
    pub outcome_p99: Duration,
}

/// The kind of a channel, as the benchmark reports it.
fn channel_kind(channel: &delivery::channels::Channel) -> String {
    let profile = &channel.profile;
    let mut kind = profile.pattern.as_str().to_string();
    if profile.submit.content_type.contains("xml") {
        kind.push_str(", XML");
    }
    if profile.security == delivery::profile::Security::Pdnd {
        kind.push_str(", PDND voucher");
    }
    kind.push_str(&format!(" ({})", profile.name.rsplit('/').next().unwrap_or_default()));
    kind
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "practices submitted:            {} ({} at a time, 3 recipients each)",
            self.practices, self.concurrency
        )?;
        writeln!(f, "intake (create + submit):       {:.1} practices/s", self.intake_per_second)?;
        writeln!(f, "deliveries to protocol number:  {:.1} filings/s", self.deliveries_per_second)?;
        writeln!(
            f,
            "submit → last protocol number:  p50 {} ms, p99 {} ms, max {} ms",
            self.latency_p50.as_millis(),
            self.latency_p99.as_millis(),
            self.latency_max.as_millis()
        )?;
        writeln!(
            f,
            "raw SQLite commits, same disk:  {:.1} commits/s (intake {:.2}x of it); {:.1} store commits per practice",
            self.sqlite_commits_per_second,
            self.intake_per_second / self.sqlite_commits_per_second.max(f64::EPSILON),
            self.commits_per_practice
        )?;
        let bound = self.modi_exchanges_per_second / EXCHANGES_PER_FILING;
        writeln!(
            f,
            "signature bound:                {:.0} ModI exchanges/s → {:.0} filings/s (delivered {:.2}x of it)",
            self.modi_exchanges_per_second,
            bound,
            self.deliveries_per_second / bound.max(f64::EPSILON)
        )?;
        let (rate, p50, p99) = self.half_load;
        writeln!(
            f,
            "at half the peak ({rate:.1} practices/s): submit → last protocol p50 {} ms, p99 {} ms",
            p50.as_millis(),
            p99.as_millis()
        )?;
        writeln!(f, "pages, {} connections:", self.page_connections)?;
        writeln!(f, "  {:<40} {}", "minimal HTTPS handler (reference)", self.minimal)?;
        for (page, load) in &self.pages {
            let ratio = load.per_second / self.minimal.per_second.max(f64::EPSILON);
            writeln!(f, "  {page:<40} {load}   {ratio:.2}x of the reference")?;
        }
        if let Some(mb) = self.peak_rss_mb {
            writeln!(f, "peak RSS of the benchmark process (everything in it): {mb:.0} MB")?;
        }
        writeln!(f, "per channel (from submission; p50 / p99):")?;
        for c in &self.per_channel {
            writeln!(
                f,
                "  {:<17} {:<58} protocol {:>6} / {:>6} ms, outcome {:>6} / {:>6} ms",
                c.institution,
                c.kind,
                c.protocol_p50.as_millis(),
                c.protocol_p99.as_millis(),
                c.outcome_p50.as_millis(),
                c.outcome_p99.as_millis()
            )?;
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The three demo institutions, each authorising the bench's holder for its own business and
/// answering at once.
fn bench_specs(pki: &TestPki, catalog_dir: &std::path::Path, own_interfaces: bool) -> anyhow::Result<Vec<SimSpec>> {
    let cf = "DPRTNT80A01H501Y";
    let mut specs = Vec::new();
    for (id, register) in crate::demo::DEMO_INSTITUTIONS {
        let cert = pki.server(&["127.0.0.1"])?;
        // A pull institution answers at the first status request.
        let mut behaviour =
            simulator::Behaviour { callback_delay_ms: 0, pending_polls: 0, ..simulator::Behaviour::default() };
        simulator::grant(&mut behaviour.authorisations, cf, &[cf], domain::authorisation::Role::Owner);
        let spec = SimSpec::sportello(id, register, &cert.cert_pem, &cert.key_pem, behaviour);
        specs.push(match own_interfaces {
            true => spec.with_own_interface(&catalog_dir.parent().unwrap_or(catalog_dir).join("channels")),
            false => spec,
        });
    }
    Ok(specs)
}

/// Creates and submits one practice; its id with the instant its submission was answered.
async fn submit_one(client: reqwest::Client, base: String, data: Value) -> anyhow::Result<(String, Instant)> {
    let created: Value = client
        .post(format!("{base}/api/v1/practices"))
        .json(&json!({"service": "avvio-ditta-individuale", "data": data}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().context("no id")?.to_string();
    client.post(format!("{base}/api/v1/practices/{id}/submit")).send().await?.error_for_status()?;
    Ok((id, Instant::now()))
}

/// Creates and submits `practices` practices, `concurrency` at a time.
async fn submit_all(
    client: &reqwest::Client,
    base: &str,
    data: &Value,
    practices: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut submitted: Vec<(String, Instant)> = Vec::with_capacity(practices);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..practices {
        let permit = semaphore.clone().acquire_owned().await?;
        let one = submit_one(client.clone(), base.to_string(), data.clone());
        tasks.spawn(async move {
            let _permit = permit;
            one.await
        });
    }
    while let Some(done) = tasks.join_next().await {
        submitted.push(done??);
    }
    Ok(submitted)
}

/// Starts one submission every `1 / rate` seconds, `practices` in all, whatever the answers'
/// pace (an open-loop load, as users arrive).
async fn submit_paced(
    client: &reqwest::Client,
    base: &str,
    data: &Value,
    practices: usize,
    rate: f64,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..practices {
        ticks.tick().await;
        tasks.spawn(submit_one(client.clone(), base.to_string(), data.clone()));
    }
    let mut submitted = Vec::with_capacity(practices);
    while let Some(done) = tasks.join_next().await {
        submitted.push(done??);
    }
    Ok(submitted)
}

/// Each channel's latencies to the protocol number and to the outcome.
fn channel_figures(
    kinds: Vec<(String, String)>,
    by_channel: &mut std::collections::BTreeMap<String, (Vec<Duration>, Vec<Duration>)>,
) -> Vec<ChannelFigures> {
    kinds
        .into_iter()
        .map(|(institution, kind)| {
            let (mut protocol, mut outcome) = by_channel.remove(&institution).unwrap_or_default();
            protocol.sort();
            outcome.sort();
            ChannelFigures {
                institution,
                kind,
                protocol_p50: percentile(&protocol, 50.0),
                protocol_p99: percentile(&protocol, 99.0),
                outcome_p50: percentile(&outcome, 50.0),
                outcome_p99: percentile(&outcome, 99.0),
            }
        })
        .collect()
}

/// The portal under test, with what the benchmark needs to reach and observe it.
struct Rig {
    pki: TestPki,
    holder: Issued,
    tls: TlsMaterial,
    store: storage::sqlite::SqliteStore,
    running: crate::Running,
    base: String,
    kinds: Vec<(String, String)>,
    _sims: std::collections::BTreeMap<String, simulator::SimHandle>,
}

/// Starts three simulated institutions and a portal with its worker on a fresh SQLite store
/// in `dir`.
async fn rig(dir: &std::path::Path, catalog_dir: &std::path::Path, own_interfaces: bool) -> anyhow::Result<Rig> {
    let pki = TestPki::generate("Sportello bench CA")?;
    let server = pki.server(&["localhost", "127.0.0.1"])?;
    let holder = pki.card(&CardSpec::new("Utente", "DiProva", "DPRTNT80A01H501Y"))?;
    let portal = pki.client("sportello")?;
    let clock: Arc<dyn domain::Clock> = Arc::new(web::SystemClock);
    let random: Arc<dyn domain::Randomness> = Arc::new(web::SystemRandomness::default());
    let specs = bench_specs(&pki, catalog_dir, own_interfaces)?;
    let identity = PortalIdentity {
        portal_id: "sportello".into(),
        cert_pem: portal.cert_pem.clone(),
        key_pem: portal.key_pem.clone(),
        ca_pem: pki.ca.cert_pem.clone(),
    };
    let mut tuning = ChannelTuning::new(Duration::from_secs(10), domain::delivery::RetryPolicy::default());
    // Asked every 200 ms rather than at INAIL's real pace (1 s, then backing off).
    tuning.poll_interval = own_interfaces.then_some(Duration::from_millis(200));
    let (sims, channels) = start_simulated(specs, &identity, tuning, clock, random).await?;
    let kinds = channels.institutions.iter().map(|(id, c)| (id.clone(), channel_kind(c))).collect();
    let tls = TlsMaterial::new(server.cert_pem.clone(), server.key_pem.clone(), pki.ca.cert_pem.clone());
    let path = dir.join("bench.db");
    let store = storage::sqlite::SqliteStore::open(&path).await?;
    let settings = Settings {
        channels: Some(channels),
        run_worker: true,
        worker: WorkerSettings { batch: 32, idle: Duration::from_millis(10), ..WorkerSettings::default() },
        store: Some(Arc::new(store.clone())),
        ..Settings::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            format!("sqlite://{}", path.display()),
            catalog_dir.to_path_buf(),
            tls.clone(),
        )
    };
    let running = crate::start(&settings).await?;
    let base = format!("https://localhost:{}", running.addr.port());
    Ok(Rig { pki, holder, tls, store, running, base, kinds, _sims: sims })
}

/// Connections the page loads use, and requests per page.
pub(crate) const PAGE_CONNECTIONS: usize = 16;
pub(crate) const PAGE_REQUESTS: usize = 2_000;

/// Runs the benchmark with `practices` practices, `concurrency` at a time.
pub async fn run(
    practices: usize,
    concurrency: usize,
    catalog_dir: &std::path::Path,
    own_interfaces: bool,
) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let sqlite_commits_per_second = storage::sqlite::measure_commit_rate(&dir.path().join("probe.db"), 300).await?;
    let rig = rig(dir.path(), catalog_dir, own_interfaces).await?;
    let modi_exchanges_per_second = references::modi_exchanges_per_second(&rig.pki, 1_000)?;
    let client = https_client(&rig.pki.ca.cert_pem, Some(&rig.holder))?;
    let data = bench_data();

    // Peak: create and submit, `concurrency` at a time, then wait for every protocol number.
    let commits_before = rig.store.commits();
    let started = Instant::now();
    let started_utc = time::OffsetDateTime::now_utc();
    let submitted = submit_all(&client, &rig.base, &data, practices, concurrency).await?;
    let intake = started.elapsed();
    let Waited { mut latencies, mut by_channel, last_protocol } =
        wait_for_outcomes(&client, &rig.base, &submitted, started_utc).await?;
    let commits = rig.store.commits() - commits_before;
    let all_done = (last_protocol - started_utc).unsigned_abs();
    latencies.sort();
    let intake_per_second = practices as f64 / intake.as_secs_f64().max(f64::EPSILON);
    let deliveries_per_second = (3 * practices) as f64 / all_done.as_secs_f64().max(f64::EPSILON);

    // Half the peak: the rate at which practices were fully delivered, halved.
    let rate = (deliveries_per_second / 3.0).min(intake_per_second) / 2.0;
    let half = submit_paced(&client, &rig.base, &data, (practices / 4).max(20), rate).await?;
    let mut half_latencies =
        wait_for_outcomes(&client, &rig.base, &half, time::OffsetDateTime::now_utc()).await?.latencies;
    half_latencies.sort();

    // The desk's pages beside the minimal handler, on the store the run filled.
    let (id, _) = submitted.first().context("no practice submitted")?;
    let practice: Value = client.get(format!("{}/api/v1/practices/{id}", rig.base)).send().await?.json().await?;
    let reference = practice["reference"].as_str().context("no reference")?.to_string();
    let pages =
        references::desk_pages_beside_minimal(&rig.pki, &rig.holder, &rig.tls, &rig.base, (id, &reference)).await;
    rig.running.stop().await;
    let (pages, minimal) = pages?;
    Ok(Report {
        practices,
        concurrency,
        intake_per_second,
        deliveries_per_second,
        latency_p50: percentile(&latencies, 50.0),
        latency_p99: percentile(&latencies, 99.0),
        latency_max: latencies.last().copied().unwrap_or_default(),
        sqlite_commits_per_second,
        commits_per_practice: commits as f64 / practices as f64,
        modi_exchanges_per_second,
        half_load: (rate, percentile(&half_latencies, 50.0), percentile(&half_latencies, 99.0)),
        pages,
        minimal,
        page_connections: PAGE_CONNECTIONS,
        peak_rss_mb: peak_rss_mb(),
        per_channel: channel_figures(rig.kinds, &mut by_channel),
    })
}

/// The process's peak resident set (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// What the wait for every outcome read from the practices' timelines.
struct Waited {
    /// Per practice, submission → its last protocol number.
    latencies: Vec<Duration>,
    /// Per institution, submission → its protocol number, and → its outcome.
    by_channel: std::collections::BTreeMap<String, (Vec<Duration>, Vec<Duration>)>,
    /// When the last protocol number of the run arrived.
    last_protocol: time::OffsetDateTime,
}

/// Waits (up to ten minutes) until every practice has three accepted recipients, then reads
/// each one's own timeline.
async fn wait_for_outcomes(
    client: &reqwest::Client,
    base: &str,
    submitted: &[(String, Instant)],
    started_utc: time::OffsetDateTime,
) -> anyhow::Result<Waited> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut waited = Waited {
        latencies: Vec::with_capacity(submitted.len()),
        by_channel: Default::default(),
        last_protocol: started_utc,
    };
    for (id, submitted_at) in submitted {
        loop {
            let p: Value = client.get(format!("{base}/api/v1/practices/{id}")).send().await?.json().await?;
            let decided =
                p["deliveries"].as_array().map_or(0, |ds| ds.iter().filter(|d| d["state"] == "accepted").count());
            if decided == 3 {
                channel_times(&p, &mut waited.by_channel);
                // The last protocol number's arrival, from the practice's own timeline.
                let submitted_ts = p["submitted_at"].as_str().and_then(parse_ts);
                let last_ts = protocol_arrivals(&p).into_values().max();
                let latency = match (submitted_ts, last_ts) {
                    (Some(s), Some(l)) if l >= s => (l - s).unsigned_abs(),
                    _ => submitted_at.elapsed(),
                };
                waited.last_protocol = waited.last_protocol.max(last_ts.unwrap_or_else(time::OffsetDateTime::now_utc));
                waited.latencies.push(latency);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "practice {id} did not get its protocol numbers in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(waited)
}

/// When each institution's protocol number first arrived (whatever event carried it: an
/// answer, a callback, a polled outcome).
fn protocol_arrivals(p: &Value) -> std::collections::BTreeMap<String, time::OffsetDateTime> {
    let mut first = std::collections::BTreeMap::new();
    for e in p["timeline"].as_array().into_iter().flatten() {
        let (Some(institution), Some(at)) = (e["institution"].as_str(), e["at"].as_str().and_then(parse_ts)) else {
            continue;
        };
        if e["detail"]["protocol_number"].is_string() {
            first.entry(institution.to_string()).or_insert(at);
        }
    }
    first
}

/// Adds, per institution, the times from the practice's submission to the first event that
/// carried its protocol number and to its outcome.
fn channel_times(p: &Value, into: &mut std::collections::BTreeMap<String, (Vec<Duration>, Vec<Duration>)>) {
    let Some(submitted) = p["submitted_at"].as_str().and_then(parse_ts) else { return };
    let timeline = p["timeline"].as_array().cloned().unwrap_or_default();
    let since = |e: &Value| e["at"].as_str().and_then(parse_ts).map(|at| (at - submitted).unsigned_abs());
    for d in p["deliveries"].as_array().into_iter().flatten() {
        let Some(institution) = d["institution"].as_str() else { continue };
        let events = || timeline.iter().filter(move |e| e["institution"] == institution);
        let protocol = protocol_arrivals(p).get(institution).map(|at| (*at - submitted).unsigned_abs());
        let outcome = events().filter(|e| e["kind"] == "outcome").find_map(since);
        let entry = into.entry(institution.to_string()).or_default();
        entry.0.extend(protocol);
        entry.1.extend(outcome);
    }
}

fn parse_ts(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn bench_data() -> Value {
    let today = domain::italian_date(time::OffsetDateTime::now_utc());
    json!({
        "business.name": "Bar Centrale di Utente DiProva",
        "business.tax_code": "DPRTNT80A01H501Y",
        "business.pec": "bar.centrale@pec.it",
        "business.ateco": "56.30.00",
        "business.start_date": format!("{:02}/{:02}/{}", today.day(), u8::from(today.month()), today.year()),
        "owner.given_name": "Utente",
        "owner.surname": "DiProva",
        "owner.tax_code": "DPRTNT80A01H501Y",
        "owner.birth_date": "01/01/1980",
        "owner.birth_place": "Roma",
        "owner.residence": "Via Roma 1, 00184 Roma",
        "seat.street": "Via Nazionale",
        "seat.number": "10",
        "seat.cap": "00184",
        "seat.municipality": "Roma",
        "seat.province": "RM",
        "staff.employees": "0",
        "registro-imprese.activity_description": "Bar e caffetteria",
        "inps.scheme": "commercianti",
        "inps.family_collaborators": "0",
        "inail.work_processes": "Somministrazione di alimenti e bevande al banco",
        "inail.yearly_wages": "0"
    })
}
