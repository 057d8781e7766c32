//! Crash safety: the portal process (with its worker) dies at the worst moments and is started
//! again; every filing still reaches its institution, and each institution processes it
//! exactly once (the simulators count).
//!
//! `SPORTELLO_CRASH_AT` makes the process abort at a precise point (after the submission is
//! committed and the delivery claimed, but before sending; or after the institution answered,
//! before the answer is recorded): an abort leaves the database exactly as a `kill -9` there
//! would. A third test sends a real SIGKILL while filings are in flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use identity::test_pki::{CardSpec, Issued, TestPki};
use reqwest::StatusCode;
use serde_json::{json, Value};
use simulator::{Behaviour, SimHandle};
use sportello::simulated::{start_simulated, ChannelTuning, PortalIdentity, SimSpec};

use crate::api::{client_with, complete_start_data, HOLDER};

const INSTITUTIONS: [(&str, &str); 3] =
    [("registro-imprese", "CCIAA-RM-RI"), ("inps", "INPS-AOO1"), ("inail", "INAIL-AOO1")];

struct Stage {
    dir: tempfile::TempDir,
    port: u16,
    ca_pem: String,
    holder: Issued,
    sims: BTreeMap<String, SimHandle>,
    child: Option<Child>,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

async fn stage(behaviour: Behaviour) -> Stage {
    let dir = tempfile::tempdir().expect("temp");
    let pki = TestPki::generate("Crash test CA").expect("pki");
    let server = pki.server(&["localhost", "127.0.0.1"]).expect("server");
    let portal = pki.client("sportello").expect("portal");
    let holder = pki.card(&CardSpec::new("Mario", "Rossi", HOLDER)).expect("card");
    let d = dir.path();
    write(d, "ca.pem", &pki.ca.cert_pem);
    write(d, "server.pem", &server.cert_pem);
    write(d, "server-key.pem", &server.key_pem);
    write(d, "portal.pem", &portal.cert_pem);
    write(d, "portal-key.pem", &portal.key_pem);
    let port = free_port();
    let mut channels = format!(
        "portal_id = \"sportello\"\ncallback_base_url = \"https://127.0.0.1:{port}\"\ncertificate = \"portal.pem\"\nkey = \"portal-key.pem\"\n"
    );
    let specs = INSTITUTIONS
        .iter()
        .map(|(id, register)| {
            let cert = pki.server(&["127.0.0.1"]).expect("cert");
            SimSpec::sportello(id, register, &cert.cert_pem, &cert.key_pem, behaviour.clone())
        })
        .collect();
    let identity = PortalIdentity {
        portal_id: "sportello".into(),
        cert_pem: portal.cert_pem.clone(),
        key_pem: portal.key_pem.clone(),
        ca_pem: pki.ca.cert_pem.clone(),
    };
    let tuning = ChannelTuning::new(Duration::from_secs(3), Default::default());
    let (sims, started) = start_simulated(
        specs,
        &identity,
        tuning,
        Arc::new(web::SystemClock),
        Arc::new(web::SystemRandomness::default()),
    )
    .await
    .expect("simulators");
    // The portal runs as another process: its channels go in a file.
    for (id, channel) in &started.institutions {
        write(d, &format!("{id}.pem"), &channel.certificate_pem);
        channels.push_str(&format!(
            "\n[institutions.{id}]\nbase_url = \"{}\"\nca = \"ca.pem\"\ncertificate = \"{id}.pem\"\ntimeout_ms = 3000\nmax_attempts = 20\nbase_delay_ms = 100\nmax_delay_ms = 500\n",
            channel.base_url
        ));
    }
    write(d, "channels.toml", &channels);
    Stage { dir, port, ca_pem: pki.ca.cert_pem.clone(), holder, sims, child: None }
}

impl Stage {
    fn base(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Starts `sportello serve` as a child process, optionally set to crash.
    async fn start(&mut self, crash_at: Option<&str>) {
        let d = self.dir.path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sportello"));
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--database-url")
            .arg(format!("sqlite://{}", d.join("crash.db").display()))
            .arg("--catalog")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../catalog"))
            .arg("--tls-cert")
            .arg(d.join("server.pem"))
            .arg("--tls-key")
            .arg(d.join("server-key.pem"))
            .arg("--client-ca")
            .arg(d.join("ca.pem"))
            .arg("--channels")
            .arg(d.join("channels.toml"))
            .env("SPORTELLO_WORKER_LEASE_MS", "1000")
            .env("SPORTELLO_LOG", "warn")
            .env_remove("SPORTELLO_CRASH_AT")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(point) = crash_at {
            command.env("SPORTELLO_CRASH_AT", point);
        }
        self.child = Some(command.spawn().expect("spawn portal"));
        let client = client_with(&self.ca_pem, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base())).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the portal did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the child to die by itself (the crash point).
    async fn wait_for_crash(&mut self) {
        let mut child = self.child.take().expect("child");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                assert!(!status.success(), "the portal was meant to crash");
                return;
            }
            assert!(Instant::now() < deadline, "the portal did not crash");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    async fn submit(&self) -> String {
        let client = client_with(&self.ca_pem, Some(&self.holder));
        let mut data = complete_start_data();
        data["inail.work_processes"] = json!("Somministrazione di alimenti e bevande al banco");
        let r = client
            .post(format!("{}/api/v1/practices", self.base()))
            .json(&json!({"service": "avvio-ditta-individuale", "data": data}))
            .send()
            .await
            .expect("create");
        let id = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        let r = client.post(format!("{}/api/v1/practices/{id}/submit", self.base())).send().await;
        // The worker wakes at the commit: a crash point right after it may end the process
        // before it answers. What was committed stands (the tests find it delivered after
        // the restart); an answer that came must be a success.
        if let Ok(r) = r {
            assert_eq!(r.status(), StatusCode::OK);
        }
        id
    }

    async fn wait_all_accepted(&self, id: &str) {
        let client = client_with(&self.ca_pem, Some(&self.holder));
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let p: Value = client
                .get(format!("{}/api/v1/practices/{id}", self.base()))
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            let done = p["deliveries"]
                .as_array()
                .is_some_and(|ds| ds.len() == 3 && ds.iter().all(|d| d["state"] == "accepted"));
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "not all accepted: {p:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn assert_each_processed_once(&self, id: &str) {
        for (institution, sim) in &self.sims {
            assert_eq!(sim.count_of(id), 1, "{institution} must have processed the filing exactly once");
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn quick() -> Behaviour {
    // The test holder may file for the business of the practices (its own).
    let mut b = Behaviour { callback_delay_ms: 50, ..Behaviour::default() };
    simulator::grant(&mut b.authorisations, HOLDER, &[HOLDER], domain::authorisation::Role::Owner);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_commit_and_send() {
    let mut s = stage(quick()).await;
    s.start(Some("before-send")).await;
    let id = s.submit().await;
    s.wait_for_crash().await;
    assert!(s.sims.values().all(|sim| sim.count_of(&id) == 0), "nothing was sent before the crash");
    s.start(None).await;
    s.wait_all_accepted(&id).await;
    s.assert_each_processed_once(&id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_send_and_recording_the_answer() {
    let mut s = stage(quick()).await;
    s.start(Some("after-send")).await;
    let id = s.submit().await;
    s.wait_for_crash().await;
    let reached: usize = s.sims.values().map(|sim| sim.count_of(&id)).sum();
    assert!(reached >= 1, "at least one institution got the filing before the crash");
    s.start(None).await;
    s.wait_all_accepted(&id).await;
    s.assert_each_processed_once(&id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_filings_are_in_flight() {
    // Slow institutions: the filings are on the wire when the process is killed.
    let mut s = stage(Behaviour { delay_ms: 600, ..quick() }).await;
    s.start(None).await;
    let id = s.submit().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill_9();
    s.start(None).await;
    s.wait_all_accepted(&id).await;
    s.assert_each_processed_once(&id);
}

/// Group commit under SIGKILL: many drafts and submissions in flight share SQLite commits when
/// the process is killed. Every write that was answered is there after the crash, and no
/// write that was not answered is there in part (a practice is a draft without deliveries, or
/// submitted with all three and their events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_group_commits() {
    let mut s = stage(Behaviour { delay_ms: 2_000, ..quick() }).await;
    s.start(None).await;
    let answered_submits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..24 {
        let (client, base, count) = (client_with(&s.ca_pem, Some(&s.holder)), s.base(), answered_submits.clone());
        writers.push(tokio::spawn(async move {
            let (mut created, mut submitted) = (Vec::new(), Vec::new());
            for _ in 0..20 {
                let mut data = complete_start_data();
                data["inail.work_processes"] = json!("Somministrazione di alimenti e bevande al banco");
                let body = json!({"service": "avvio-ditta-individuale", "data": data});
                let Ok(r) = client.post(format!("{base}/api/v1/practices")).json(&body).send().await else { break };
                let Ok(v) = r.json::<Value>().await else { break };
                let Some(id) = v["id"].as_str().map(str::to_string) else { break };
                created.push(id.clone());
                let Ok(r) = client.post(format!("{base}/api/v1/practices/{id}/submit")).send().await else { break };
                if r.status() != StatusCode::OK {
                    break;
                }
                submitted.push(id);
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            (created, submitted)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered_submits.load(std::sync::atomic::Ordering::Relaxed) < 30 {
        assert!(Instant::now() < deadline, "the submissions did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill_9();
    let (mut created, mut submitted) = (Vec::new(), Vec::new());
    for w in writers {
        let (c, sub) = w.await.expect("writer");
        created.extend(c);
        submitted.extend(sub);
    }
    let url = format!("sqlite://{}", s.dir.path().join("crash.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.expect("open the database after the crash");
    let rows: Vec<(String, String, Option<String>, i64, i64)> = sqlx::query_as(
        "SELECT p.id, p.state, p.reference, \
           (SELECT count(*) FROM deliveries d WHERE d.practice_id = p.id), \
           (SELECT count(*) FROM delivery_events e WHERE e.practice_id = p.id AND e.kind = 'submitted') \
         FROM practices p",
    )
    .fetch_all(&db)
    .await
    .expect("practices");
    let stored: BTreeMap<String, (String, Option<String>, i64, i64)> =
        rows.into_iter().map(|(id, state, reference, d, e)| (id, (state, reference, d, e))).collect();
    for id in &created {
        assert!(stored.contains_key(id), "draft {id} was answered 201 and is lost");
    }
    for id in &submitted {
        let (state, reference, deliveries, _) = &stored[id];
        assert!(
            state != "draft" && reference.is_some() && *deliveries == 3,
            "submission {id} answered but not durable"
        );
    }
    for (id, (state, reference, deliveries, events)) in &stored {
        let whole_draft = state == "draft" && reference.is_none() && *deliveries == 0 && *events == 0;
        let whole_submission = reference.is_some() && *deliveries == 3 && *events == 3;
        assert!(whole_draft || whole_submission, "{id} is half-applied: {state} {reference:?} {deliveries} {events}");
    }
    assert!(stored.len() >= created.len(), "unanswered drafts may be there whole, never answered ones missing");
    eprintln!(
        "group commit under kill -9: {} drafts and {} submissions answered, {} practices stored",
        created.len(),
        submitted.len(),
        stored.len()
    );
}
