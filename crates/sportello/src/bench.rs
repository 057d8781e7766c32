//! `sportello bench`: submits practices with three recipients over the real HTTPS API against
//! the simulated institutions, and reports intake, delivery throughput and the time from
//! submission to the last protocol number, next to the raw SQLite commit rate of the same disk.
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

/// An HTTPS client trusting `ca_pem` and presenting `card` (if any); `localhost` is 127.0.0.1.
pub fn https_client(ca_pem: &str, card: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
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
        write!(f, "raw SQLite commits, same disk:  {:.1} commits/s", self.sqlite_commits_per_second)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the benchmark with `practices` practices, `concurrency` at a time.
pub async fn run(practices: usize, concurrency: usize, catalog_dir: &std::path::Path) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let sqlite_commits_per_second = storage::sqlite::measure_commit_rate(&dir.path().join("probe.db"), 300).await?;

    let pki = TestPki::generate("Sportello bench CA")?;
    let server = pki.server(&["localhost", "127.0.0.1"])?;
    let holder = pki.card(&CardSpec::new("Utente", "DiProva", "DPRTNT80A01H501Y"))?;
    let portal = pki.client("sportello")?;
    let clock: Arc<dyn domain::Clock> = Arc::new(web::SystemClock);
    let random: Arc<dyn domain::Randomness> = Arc::new(web::SystemRandomness::default());
    let cf = "DPRTNT80A01H501Y";
    let mut specs = Vec::new();
    for (id, register) in crate::demo::DEMO_INSTITUTIONS {
        let cert = pki.server(&["127.0.0.1"])?;
        let mut behaviour = simulator::Behaviour { callback_delay_ms: 0, ..simulator::Behaviour::default() };
        simulator::grant(&mut behaviour.authorisations, cf, &[cf], domain::authorisation::Role::Owner);
        specs.push(SimSpec {
            id: id.into(),
            register: register.into(),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            behaviour,
        });
    }
    let identity = PortalIdentity {
        portal_id: "sportello".into(),
        cert_pem: portal.cert_pem.clone(),
        key_pem: portal.key_pem.clone(),
        ca_pem: pki.ca.cert_pem.clone(),
    };
    let tuning = ChannelTuning {
        timeout: Duration::from_secs(10),
        retry: domain::delivery::RetryPolicy::default(),
        poll_interval: None,
    };
    let (_sims, channels) = start_simulated(specs, &identity, tuning, clock, random).await?;
    let tls = TlsMaterial::new(server.cert_pem.clone(), server.key_pem.clone(), pki.ca.cert_pem.clone());
    let database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let settings = Settings {
        channels: Some(channels),
        run_worker: true,
        worker: WorkerSettings { batch: 32, idle: Duration::from_millis(10), ..WorkerSettings::default() },
        ..Settings::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), database_url, catalog_dir.to_path_buf(), tls)
    };
    let running = crate::start(&settings).await?;
    let base = format!("https://localhost:{}", running.addr.port());
    let client = https_client(&pki.ca.cert_pem, Some(&holder))?;
    let data = bench_data();

    // Intake: create and submit, `concurrency` at a time.
    let started = Instant::now();
    let started_utc = time::OffsetDateTime::now_utc();
    let mut submitted: Vec<(String, Instant)> = Vec::with_capacity(practices);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..practices {
        let permit = semaphore.clone().acquire_owned().await?;
        let (client, base, data) = (client.clone(), base.clone(), data.clone());
        tasks.spawn(async move {
            let _permit = permit;
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
            anyhow::Ok((id, Instant::now()))
        });
    }
    while let Some(done) = tasks.join_next().await {
        submitted.push(done??);
    }
    let intake = started.elapsed();

    // Wait for every protocol number, then read each practice's own timeline.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut latencies = Vec::with_capacity(practices);
    let mut last_protocol = started_utc;
    for (id, submitted_at) in &submitted {
        loop {
            let p: Value = client.get(format!("{base}/api/v1/practices/{id}")).send().await?.json().await?;
            let protocols = p["deliveries"]
                .as_array()
                .map_or(0, |ds| ds.iter().filter(|d| d["protocol_number"].is_string()).count());
            if protocols == 3 {
                // The last protocol number's arrival, from the practice's own timeline.
                let submitted_ts = p["submitted_at"].as_str().and_then(parse_ts);
                let last_ts = p["timeline"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["kind"] == "taken_in_charge" || e["kind"] == "sent")
                    .filter_map(|e| e["at"].as_str().and_then(parse_ts))
                    .max();
                let latency = match (submitted_ts, last_ts) {
                    (Some(s), Some(l)) if l >= s => (l - s).unsigned_abs(),
                    _ => submitted_at.elapsed(),
                };
                last_protocol = last_protocol.max(last_ts.unwrap_or_else(time::OffsetDateTime::now_utc));
                latencies.push(latency);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "practice {id} did not get its protocol numbers in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let all_done = (last_protocol - started_utc).unsigned_abs();
    running.stop().await;
    latencies.sort();
    Ok(Report {
        practices,
        concurrency,
        intake_per_second: practices as f64 / intake.as_secs_f64().max(f64::EPSILON),
        deliveries_per_second: (3 * practices) as f64 / all_done.as_secs_f64().max(f64::EPSILON),
        latency_p50: percentile(&latencies, 50.0),
        latency_p99: percentile(&latencies, 99.0),
        latency_max: latencies.last().copied().unwrap_or_default(),
        sqlite_commits_per_second,
    })
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
