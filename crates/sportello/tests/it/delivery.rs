//! Delivery end to end over real HTTPS: the portal (with its worker) and three simulated
//! institutions, each on its own loopback port.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery::modi::Signer;
use delivery::worker::WorkerSettings;
use domain::delivery::RetryPolicy;
use identity::test_pki::{CardSpec, Issued, TestPki};
use reqwest::StatusCode;
use serde_json::{json, Value};
use simulator::{Behaviour, SimHandle};
use sportello::simulated::{start_simulated, ChannelTuning, PortalIdentity, SimSpec};
use sportello::{Running, Settings};
use web::tls::TlsMaterial;

use crate::api::{client_with, complete_start_data, HOLDER};

const INSTITUTIONS: [(&str, &str); 3] =
    [("registro-imprese", "CCIAA-RM-RI"), ("inps", "INPS-AOO1"), ("inail", "INAIL-AOO1")];

pub(crate) struct World {
    running: Option<Running>,
    pub(crate) base: String,
    pub(crate) ca_pem: String,
    pub(crate) holder: Issued,
    /// A collaborator of the holder (Stefania Bianco), and someone unrelated.
    pub(crate) collaborator: Issued,
    pub(crate) stranger: Issued,
    portal: Issued,
    pub(crate) institution_certs: BTreeMap<String, Issued>,
    pub(crate) sims: BTreeMap<String, SimHandle>,
    /// The portal's PDND settings for INPS, when INPS is behind the simulated PDND.
    pub(crate) pdnd: Option<delivery::pdnd::PdndSettings>,
    /// What the portal was started with (another portal process can share its database).
    settings: Settings,
    _dir: tempfile::TempDir,
}

pub(crate) fn quick_behaviour() -> Behaviour {
    // The test holder may file for the business of the practices (its own).
    let mut b = Behaviour { callback_delay_ms: 30, ..Behaviour::default() };
    simulator::grant(&mut b.authorisations, HOLDER, &[HOLDER], domain::authorisation::Role::Owner);
    b
}

/// The repository's channel profiles in a folder of the test's, with `text` added to `file`.
pub(crate) fn profiles_with(file: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp");
    for entry in std::fs::read_dir(sportello::simulated::repository_channels_dir()).expect("channels") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let profile = dir.path().join(file);
    let shipped = std::fs::read_to_string(&profile).expect("profile");
    std::fs::write(&profile, format!("{shipped}\n{text}")).expect("write");
    dir
}

pub(crate) async fn world() -> World {
    world_with(Options::default()).await
}

/// How a test world differs from the plain one.
#[derive(Debug, Default, Clone)]
pub(crate) struct Options {
    /// The channels poll the institutions at this pace.
    pub(crate) poll: Option<Duration>,
    /// The institutions speak the demo's interfaces (Registro Imprese BLOCK_REST, INAIL
    /// NONBLOCK_PULL_REST, INPS XML) instead of Sportello's own.
    pub(crate) own_interfaces: bool,
    pub(crate) callback_deadline: Option<Duration>,
    pub(crate) no_news_after: Option<Duration>,
    /// The simulators keep their ledgers in this folder.
    pub(crate) ledgers: Option<std::path::PathBuf>,
    /// With `own_interfaces`: the profiles' folder (default: the repository's `channels/`).
    pub(crate) channels_dir: Option<std::path::PathBuf>,
    /// How long the simulated PDND's vouchers last.
    pub(crate) voucher_lifetime: Option<Duration>,
    /// The purpose the portal names to PDND for INPS, instead of the active one.
    pub(crate) pdnd_purpose: Option<String>,
    /// The worker's pause when nothing is due and nothing was announced (default 20 ms).
    pub(crate) idle: Option<Duration>,
}

pub(crate) async fn world_with(options: Options) -> World {
    let dir = tempfile::tempdir().expect("temp");
    let pki = TestPki::generate("Delivery test CA").expect("pki");
    let server = pki.server(&["localhost", "127.0.0.1"]).expect("server");
    let holder = pki.card(&CardSpec::new("Mario", "Rossi", HOLDER)).expect("card");
    let collaborator = pki.card(&CardSpec::new("Stefania", "Bianco", "BNCSFN85T58G702W")).expect("card");
    let stranger = pki.card(&CardSpec::new("Giuseppe", "Verdi", "VRDGPP80A01H501U")).expect("card");
    let portal = pki.client("sportello").expect("portal cert");
    let mut specs = Vec::new();
    let mut certs = BTreeMap::new();
    for (id, register) in INSTITUTIONS {
        let cert = pki.server(&["127.0.0.1"]).expect("institution cert");
        let mut spec = SimSpec::sportello(id, register, &cert.cert_pem, &cert.key_pem, quick_behaviour());
        if options.own_interfaces {
            let profiles = options.channels_dir.clone().unwrap_or_else(sportello::simulated::repository_channels_dir);
            spec = spec.with_own_interface(&profiles);
        }
        spec.ledger_path = options.ledgers.as_ref().map(|d| d.join(format!("{id}.json")));
        if options.own_interfaces && id == "registro-imprese" {
            // The chamber of Milano Monza Brianza Lodi has an address of its own.
            let mut milan = spec.clone();
            milan.register = "CCIAA-MI-RI".into();
            milan.office = Some("cciaa-milano-monza-brianza-lodi".into());
            specs.push(spec);
            specs.push(milan);
        } else {
            specs.push(spec);
        }
        certs.insert(id.to_string(), cert);
    }
    let identity = PortalIdentity {
        portal_id: "sportello".into(),
        cert_pem: portal.cert_pem.clone(),
        key_pem: portal.key_pem.clone(),
        ca_pem: pki.ca.cert_pem.clone(),
    };
    let mut tuning = ChannelTuning::new(
        Duration::from_secs(5),
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_millis(200) },
    );
    tuning.poll_interval = options.poll;
    tuning.callback_deadline = options.callback_deadline;
    tuning.no_news_after = options.no_news_after;
    tuning.voucher_lifetime = options.voucher_lifetime;
    let (sims, mut channels) = start_simulated(
        specs,
        &identity,
        tuning,
        Arc::new(web::SystemClock),
        Arc::new(web::SystemRandomness::default()),
    )
    .await
    .expect("simulators");
    let pdnd = channels.get("inps").and_then(|c| c.pdnd.clone());
    if let (Some(purpose), Some(inps)) = (&options.pdnd_purpose, channels.institutions.get_mut("inps")) {
        if let Some(settings) = Arc::make_mut(inps).pdnd.as_mut() {
            settings.purpose_id = purpose.clone();
        }
    }
    let tls = TlsMaterial::new(server.cert_pem.clone(), server.key_pem.clone(), pki.ca.cert_pem.clone());
    let database_url = format!("sqlite://{}", dir.path().join("delivery.db").display());
    let catalog = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
    let settings = Settings {
        channels: Some(channels),
        run_worker: true,
        worker: WorkerSettings { idle: options.idle.unwrap_or(Duration::from_millis(20)), ..WorkerSettings::default() },
        ..Settings::new("127.0.0.1:0".parse().expect("addr"), database_url, catalog, tls)
    };
    let running = sportello::start(&settings).await.expect("portal");
    World {
        base: format!("https://localhost:{}", running.addr.port()),
        running: Some(running),
        ca_pem: pki.ca.cert_pem.clone(),
        holder,
        collaborator,
        stranger,
        portal,
        institution_certs: certs,
        sims,
        pdnd,
        settings,
        _dir: dir,
    }
}

impl World {
    pub(crate) fn client(&self) -> reqwest::Client {
        client_with(&self.ca_pem, Some(&self.holder))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a draft "avvio-ditta-individuale"; returns its id.
    pub(crate) async fn create(&self, data: Value) -> String {
        let r = self
            .client()
            .post(self.url("/api/v1/practices"))
            .json(&json!({"service": "avvio-ditta-individuale", "data": data}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string()
    }

    /// Creates and submits a complete "avvio-ditta-individuale"; returns its id.
    pub(crate) async fn submit(&self, data: Value) -> String {
        let client = self.client();
        let id = self.create(data).await;
        let r = client.post(self.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
        id
    }

    pub(crate) async fn practice(&self, id: &str) -> Value {
        self.client()
            .get(self.url(&format!("/api/v1/practices/{id}")))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    /// Polls the practice until `done` holds (at most 20 s).
    pub(crate) async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let p = self.practice(id).await;
            if done(&p) {
                return p;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {p:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signer_for(&self, institution: &str) -> Signer {
        let cert = &self.institution_certs[institution];
        Signer::new(
            institution,
            &cert.key_pem,
            &cert.cert_pem,
            Arc::new(web::SystemClock),
            Arc::new(web::SystemRandomness::default()),
        )
        .expect("signer")
    }

    /// Posts an institution event, signed by `signer`.
    async fn callback(&self, institution: &str, signer: &Signer, event: &Value) -> reqwest::Response {
        let body = event.to_string().into_bytes();
        let headers = signer.sign("sportello", &body, "application/json", HOLDER).expect("sign");
        self.post_signed(&self.base, institution, &headers, body).await
    }

    /// Posts an institution event, signed by `signer`, to the portal at `base`.
    async fn callback_to(&self, base: &str, institution: &str, signer: &Signer, event: &Value) -> reqwest::Response {
        let body = event.to_string().into_bytes();
        let headers = signer.sign("sportello", &body, "application/json", HOLDER).expect("sign");
        self.post_signed(base, institution, &headers, body).await
    }

    /// Posts an institution event with headers already signed, to the portal at `base`.
    async fn post_signed(
        &self,
        base: &str,
        institution: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = client_with(&self.ca_pem, None).post(format!("{base}/institutions/v1/{institution}/events"));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.body(body).send().await.expect("callback")
    }

    /// Another portal process on the same database, without a worker.
    async fn second_portal(&self) -> Running {
        let settings = Settings { run_worker: false, ..self.settings.clone() };
        sportello::start(&settings).await.expect("second portal")
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

pub(crate) fn states(p: &Value) -> BTreeMap<String, String> {
    p["deliveries"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["institution"].as_str().unwrap_or_default().to_string(),
                        d["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn all_in(p: &Value, state: &str) -> bool {
    let s = states(p);
    s.len() == 3 && s.values().all(|v| v == state)
}

pub(crate) fn with_long_description() -> Value {
    let mut data = complete_start_data();
    data["inail.work_processes"] = json!("Somministrazione di alimenti e bevande al banco");
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_institutions_give_three_protocol_numbers() {
    let mut w = world().await;
    let id = w.submit(with_long_description()).await;
    let p = w.wait_for(&id, "three accepted outcomes", |p| all_in(p, "accepted")).await;
    assert_eq!(p["state"], "completed");
    for (institution, register) in INSTITUTIONS {
        let d = p["deliveries"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["institution"] == institution))
            .expect("delivery");
        let protocol = d["protocol_number"].as_str().expect("protocol number");
        assert!(protocol.starts_with(register), "{protocol}");
        assert_eq!(protocol.len(), register.len() + "-2026-0000001".len(), "{protocol}");
        assert_eq!(w.sims[institution].count_of(&id), 1, "{institution} processed it once");
    }
    // The timeline tells each recipient's story.
    let kinds: Vec<&str> =
        p["timeline"].as_array().expect("timeline").iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["submitted", "sent", "taken_in_charge", "outcome"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    // Every filing carried the common data typed once.
    for sim in w.sims.values() {
        let received = sim.received();
        assert!(received[0].payload.to_string().contains(HOLDER));
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_institution_down_then_resent_to_it_alone() {
    let mut w = world().await;
    w.sims["inps"].set_behaviour(Behaviour { down: true, ..quick_behaviour() });
    let id = w.submit(with_long_description()).await;
    let p = w
        .wait_for(&id, "INPS failed, the others accepted", |p| {
            let s = states(p);
            s.get("inps").map(String::as_str) == Some("failed")
                && s.get("inail").map(String::as_str) == Some("accepted")
                && s.get("registro-imprese").map(String::as_str) == Some("accepted")
        })
        .await;
    assert_eq!(p["state"], "to_resend", "a failed recipient is the user's to send again");
    let inps = p["deliveries"].as_array().and_then(|ds| ds.iter().find(|d| d["institution"] == "inps")).expect("inps");
    assert!(inps["last_error"].as_str().unwrap_or_default().contains("503"), "{inps}");
    assert_eq!(inps["attempts"], 3);

    w.sims["inps"].set_behaviour(quick_behaviour());
    let r =
        w.client().post(w.url(&format!("/api/v1/practices/{id}/deliveries/inps/resend"))).send().await.expect("resend");
    assert_eq!(r.status(), StatusCode::OK);
    let p = w.wait_for(&id, "INPS accepted after the resend", |p| all_in(p, "accepted")).await;
    assert_eq!(p["state"], "completed");
    assert_eq!(w.sims["inps"].count_of(&id), 1);
    assert_eq!(w.sims["inail"].count_of(&id), 1, "no extra request to INAIL");
    assert_eq!(w.sims["registro-imprese"].count_of(&id), 1, "no extra request to the Registro Imprese");
    // Only a failed or rejected recipient can be sent again.
    let r = w
        .client()
        .post(w.url(&format!("/api/v1/practices/{id}/deliveries/inail/resend")))
        .send()
        .await
        .expect("resend");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_reachable_returns_the_practice_to_the_drafts() {
    let mut w = world().await;
    for sim in w.sims.values() {
        sim.set_behaviour(Behaviour { down: true, ..quick_behaviour() });
    }
    let id = w.submit(with_long_description()).await;
    let p = w.wait_for(&id, "back in the drafts", |p| p["state"] == "draft").await;
    assert_eq!(p["needs_resend"], true, "marked to be sent again");
    let reference = p["reference"].as_str().expect("reference kept").to_string();
    let s = states(&p);
    assert_eq!(
        (s["registro-imprese"].as_str(), s["inps"].as_str(), s["inail"].as_str()),
        ("failed", "waiting", "waiting")
    );
    // Sent again once the institutions are back: same reference, three protocol numbers.
    for sim in w.sims.values() {
        sim.set_behaviour(quick_behaviour());
    }
    let r = w.client().post(w.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK);
    let p = w.wait_for(&id, "accepted everywhere", |p| all_in(p, "accepted")).await;
    assert_eq!(p["reference"], reference);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_filing_is_corrected_and_resent_alone() {
    let mut w = world().await;
    w.sims["inail"].set_behaviour(Behaviour { rules: simulator::inail_rules(), ..quick_behaviour() });
    let mut data = complete_start_data();
    data["inail.work_processes"] = json!("Attività da definire in seguito");
    let id = w.submit(data).await;
    let p = w
        .wait_for(&id, "INAIL rejected, others accepted", |p| {
            let s = states(p);
            s.get("inail").map(String::as_str) == Some("rejected")
                && s.values().filter(|v| *v == "accepted").count() == 2
        })
        .await;
    let inail =
        p["deliveries"].as_array().and_then(|ds| ds.iter().find(|d| d["institution"] == "inail")).expect("inail");
    assert_eq!(inail["rejection"]["fields"], json!(["inail.work_processes"]), "mapped back to the catalog field");
    assert_eq!(p["state"], "to_correct", "a rejected practice is never called completed");
    let listed: Value = w
        .client()
        .get(w.url("/api/v1/practices?state=to_correct"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(listed.to_string().contains(&id), "listed among those to correct: {listed}");
    // Only the fields at fault may be corrected.
    let r = w
        .client()
        .post(w.url(&format!("/api/v1/practices/{id}/deliveries/inail/resend")))
        .json(&json!({"data": {"business.name": "Altro nome"}}))
        .send()
        .await
        .expect("resend");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = w
        .client()
        .post(w.url(&format!("/api/v1/practices/{id}/deliveries/inail/resend")))
        .json(&json!({"data": {"inail.work_processes": "Somministrazione di alimenti e bevande al banco"}}))
        .send()
        .await
        .expect("resend");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    let p = w.wait_for(&id, "INAIL accepted", |p| all_in(p, "accepted")).await;
    assert_eq!(p["state"], "completed", "completed once corrected and accepted");
    assert_eq!(p["data"]["inail.work_processes"], "Somministrazione di alimenti e bevande al banco");
    let inail =
        p["deliveries"].as_array().and_then(|ds| ds.iter().find(|d| d["institution"] == "inail")).expect("inail");
    assert_eq!(inail["revision"], 1);
    assert_eq!(w.sims["inail"].count_of(&id), 1, "the rejected revision was never processed");
    assert_eq!(w.sims["inps"].count_of(&id), 1);
    assert_eq!(w.sims["registro-imprese"].count_of(&id), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_authenticated_deduplicated_and_order_safe() {
    let mut w = world().await;
    // The Registro Imprese calls back (INPS and INAIL wait for its answer); they do not.
    for id in ["inps", "inail"] {
        w.sims[id].set_behaviour(Behaviour { callbacks: false, ..quick_behaviour() });
    }
    let id = w.submit(with_long_description()).await;
    w.wait_for(&id, "delivered everywhere", |p| {
        let s = states(p);
        s["registro-imprese"] == "accepted" && s["inps"] == "delivered" && s["inail"] == "delivered"
    })
    .await;
    let filing = format!("{id}.inps.0");
    let inps = w.signer_for("inps");

    // Forged: signed by INAIL's key on INPS's path.
    let forged =
        json!({"message_id": "f1", "filing_id": filing, "event": "taken_in_charge", "protocol_number": "FAKE"});
    let r = w.callback("inps", &w.signer_for("inail"), &forged).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Out of order: the outcome first, then "taken in charge".
    let outcome = json!({"message_id": "m2", "filing_id": filing, "event": "outcome", "accepted": true, "protocol_number": "INPS-AOO1-2026-0000042"});
    let r = w.callback("inps", &inps, &outcome).await;
    assert_eq!(r.json::<Value>().await.expect("json")["result"], "applied");
    let taken = json!({"message_id": "m1", "filing_id": filing, "event": "taken_in_charge", "protocol_number": "INPS-AOO1-2026-0000042"});
    let r = w.callback("inps", &inps, &taken).await;
    assert_eq!(
        r.json::<Value>().await.expect("json")["result"],
        "unchanged",
        "an earlier state never overwrites a later one"
    );
    // Duplicated message.
    let r = w.callback("inps", &inps, &outcome).await;
    assert_eq!(r.json::<Value>().await.expect("json")["result"], "duplicate");
    // Unknown practice.
    let unknown = json!({"message_id": "m9", "filing_id": "00000000-0000-4000-8000-000000000000.inps.0", "event": "outcome", "accepted": true});
    let r = w.callback("inps", &inps, &unknown).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Unknown institution path.
    let r = w.callback("agenzia-entrate", &inps, &taken).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let p = w.practice(&id).await;
    assert_eq!(states(&p)["inps"], "accepted");
    assert_eq!(states(&p)["inail"], "delivered", "the others untouched");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_wakes_the_worker_and_the_live_stream_without_polling() {
    // The worker's fallback look is a minute away: only the announcement can wake it.
    let mut w = world_with(Options { idle: Some(Duration::from_secs(60)), ..Options::default() }).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // The worker's first look is done.
    let id = w.create(with_long_description()).await;
    let mut stream = w.client().get(w.url(&format!("/api/v1/practices/{id}/events"))).send().await.expect("stream");
    let first = stream.chunk().await.expect("chunk").expect("first update");
    assert!(String::from_utf8_lossy(&first).contains("\"draft\""), "the draft's state first");
    let started = Instant::now();
    let r = w.client().post(w.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK);
    // The stream tells each change as it happens, up to the three protocol numbers.
    let mut seen = String::new();
    while seen.matches("\"accepted\"").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await;
        let chunk = chunk.expect("an update within seconds, not a minute").expect("read").expect("open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        seen = seen.rsplit("event: update").next().unwrap_or_default().to_string();
    }
    assert!(started.elapsed() < Duration::from_secs(5), "delivered at once, not at the worker's next look");
    drop(stream);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_callback_is_refused_by_another_portal_process() {
    let mut w = world().await;
    for id in ["inps", "inail"] {
        w.sims[id].set_behaviour(Behaviour { callbacks: false, ..quick_behaviour() });
    }
    let id = w.submit(with_long_description()).await;
    w.wait_for(&id, "INPS delivered", |p| states(p)["inps"] == "delivered").await;
    let second = w.second_portal().await;
    let second_base = format!("https://localhost:{}", second.addr.port());
    let inps = w.signer_for("inps");
    let event = json!({"message_id": "r1", "filing_id": format!("{id}.inps.0"), "event": "taken_in_charge", "protocol_number": "INPS-AOO1-2026-0000077"});
    let body = event.to_string().into_bytes();
    let headers = inps.sign("sportello", &body, "application/json", HOLDER).expect("sign");
    let r = w.post_signed(&w.base, "inps", &headers, body.clone()).await;
    assert_eq!(r.json::<Value>().await.expect("json")["result"], "applied");
    // The very same signed request to the other process: a replay, refused.
    let r = w.post_signed(&second_base, "inps", &headers, body.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = r.json().await.expect("problem");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("replay")), "{problem:#}");
    let r = w.post_signed(&w.base, "inps", &headers, body).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "and by the first one");
    // The same message signed anew is no replay: a duplicate, taken and ignored.
    let r = w.callback_to(&second_base, "inps", &inps, &event).await;
    assert_eq!(r.json::<Value>().await.expect("json")["result"], "duplicate");
    assert_eq!(states(&w.practice(&id).await)["inps"], "taken_in_charge");
    second.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_a_broken_signature() {
    let mut w = world().await;
    let portal = Signer::new(
        "sportello",
        &w.portal.key_pem,
        &w.portal.cert_pem,
        Arc::new(web::SystemClock),
        Arc::new(web::SystemRandomness::default()),
    )
    .expect("signer");
    let body = br#"{"filing_id":"x"}"#;
    let headers = portal.sign("inps", body, "application/json", HOLDER).expect("sign");
    let client = client_with(&w.ca_pem, None);
    let mut request = client.post(format!("https://{}/filings", w.sims["inps"].addr)).header("idempotency-key", "x");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    // The body was changed after signing.
    let r = request.body(&br#"{"filing_id":"y"}"#[..]).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(w.sims["inps"].received().is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn institutions_that_never_call_back_are_polled() {
    let mut w = world_with(Options { poll: Some(Duration::from_millis(100)), ..Options::default() }).await;
    for sim in w.sims.values() {
        sim.set_behaviour(Behaviour { callbacks: false, ..quick_behaviour() });
    }
    let id = w.submit(with_long_description()).await;
    // The practice and its deliveries are read one after the other: wait for both.
    let p = w.wait_for(&id, "outcomes learnt by polling", |p| all_in(p, "accepted") && p["state"] == "completed").await;
    let protocols: Vec<&str> =
        p["deliveries"].as_array().expect("deliveries").iter().filter_map(|d| d["protocol_number"].as_str()).collect();
    assert_eq!(protocols.len(), 3, "{p:#}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_of_data_the_service_does_not_collect_is_explained_not_a_dead_end() {
    let mut w = world().await;
    // INAIL's own rule on something the portal never sends.
    let rule =
        simulator::Rule::unpublished("lavorazioni.turni", simulator::Check::Required, "Turni di lavoro non indicati");
    w.sims["inail"].set_behaviour(Behaviour { rules: vec![rule], ..quick_behaviour() });
    let id = w.submit(with_long_description()).await;
    let p = w.wait_for(&id, "INAIL rejected", |p| states(p).get("inail").map(String::as_str) == Some("rejected")).await;
    assert_eq!(p["state"], "to_correct");
    let page =
        w.client().get(w.url(&format!("/pratiche/{id}"))).send().await.expect("page").text().await.expect("html");
    assert!(page.contains("Turni di lavoro non indicati"), "the institution's words: {page}");
    assert!(page.contains("non si possono correggere qui") && page.contains("lavorazioni.turni"), "{page}");
    assert!(page.contains("href=\"#destinatario-inail\""), "the item leads to the row that explains: {page}");
    assert!(!page.contains("id=\"correzione-inail\""), "no empty correction form: {page}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_not_authorised_at_inail_cannot_submit_to_inail() {
    let mut w = world().await;
    // INAIL knows nothing of the holder; INPS and the Registro Imprese do.
    w.sims["inail"].set_behaviour(Behaviour { authorisations: Default::default(), ..quick_behaviour() });
    let client = w.client();
    let checklist: Value = client
        .get(w.url("/api/v1/services/avvio-ditta-individuale/authorisations"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(checklist["complete"], false, "{checklist:#}");
    let by_institution = |id: &str| {
        checklist["recipients"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["institution"] == id))
            .cloned()
            .expect("recipient")
    };
    assert_eq!(by_institution("inps")["status"], "known");
    assert_eq!(by_institution("inps")["grants"][0]["business"], HOLDER);
    assert_eq!(by_institution("inail")["grants"], json!([]));
    assert!(by_institution("inail")["how_to_obtain"].as_str().unwrap_or_default().contains("INAIL"));
    // The catalog marks what the holder can and cannot complete.
    let catalog: Value = client.get(w.url("/api/v1/services")).send().await.expect("get").json().await.expect("json");
    let readiness = |id: &str| {
        catalog["services"]
            .as_array()
            .and_then(|ss| ss.iter().find(|s| s["id"] == id))
            .map(|s| s["authorisation"].clone())
    };
    assert_eq!(readiness("avvio-ditta-individuale").expect("service")["missing"], json!(["inail"]));
    assert_eq!(readiness("collaboratore-familiare").expect("service")["complete"], true, "INPS only");

    // Submitting is refused, naming INAIL, and nothing is sent anywhere.
    let created: Value = client
        .post(w.url("/api/v1/practices"))
        .json(&json!({"service": "avvio-ditta-individuale", "data": with_long_description()}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id");
    let r = client.post(w.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/not-authorised");
    assert_eq!(problem["institutions"].as_array().map(Vec::len), Some(1));
    assert_eq!(problem["institutions"][0]["institution"], "inail");
    assert_eq!(problem["institutions"][0]["status"], "not_authorised");
    let p = w.practice(id).await;
    assert_eq!(p["state"], "draft");
    assert!(p["reference"].is_null());

    // The desk's journey keeps saying so, naming INAIL, what to do and where, and that the
    // draft is kept; check answers offers no "Invia".
    let mut browser = crate::desk::Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    for page in [format!("/pratiche/{id}/compila"), format!("/pratiche/{id}/sezioni/inail")] {
        let (status, _, html) = browser.get(&page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(html.contains("Non puoi ancora inviare questa pratica"), "{page}: {html}");
        assert!(
            html.contains(
                "INAIL - Istituto Nazionale Assicurazione Infortuni sul Lavoro: non risulti ancora abilitato"
            ),
            "{html}"
        );
        assert!(html.contains("href=\"https://www.inail.it\""), "{html}");
        assert!(html.contains("la bozza resta salvata"), "{html}");
        assert!(
            !html.contains("INPS - Istituto Nazionale della Previdenza Sociale: non risulti"),
            "INPS says yes: {html}"
        );
    }
    let (_, _, review) = browser.get(&format!("/pratiche/{id}/riepilogo")).await;
    assert!(review.contains("Non puoi ancora inviare questa pratica"), "{review}");
    assert!(!review.contains("Invia la pratica</button>"), "no send button: {review}");
    // Sent all the same (a form kept open): refused with a redirect, so a reload sends nothing.
    let token = crate::desk::csrf(&browser.get(&format!("/pratiche/{id}/sezioni/inail")).await.2);
    let declared = [("_csrf", token.as_str()), ("dichiarazione", "confermata")];
    let (status, at, page) = browser.post(&format!("/pratiche/{id}/invia"), &declared).await;
    assert_eq!(status, StatusCode::OK);
    assert!(at.ends_with(&format!("/pratiche/{id}/riepilogo?rifiutata=1")), "redirected: {at}");
    assert!(page.contains("La pratica non è stata inviata") && page.contains("non risulti ancora abilitato"), "{page}");
    assert_eq!(w.practice(id).await["state"], "draft");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(w.sims.values().all(|s| s.count_of(id) == 0), "nothing sent");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorisation_service_down_is_unknown_and_blocks_only_its_institution() {
    let mut w = world().await;
    w.sims["inail"].set_behaviour(Behaviour { authorisations_down: true, ..quick_behaviour() });
    let client = w.client();
    let checklist: Value = client
        .get(w.url("/api/v1/services/avvio-ditta-individuale/authorisations"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(checklist["complete"].is_null(), "unknown: {checklist:#}");
    let statuses: BTreeMap<String, String> = checklist["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| {
            (
                r["institution"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(statuses["inail"], "unknown");
    assert_eq!(statuses["inps"], "known");
    assert_eq!(statuses["registro-imprese"], "known");

    // A practice involving INAIL is refused; one for INPS alone goes through.
    let created: Value = client
        .post(w.url("/api/v1/practices"))
        .json(&json!({"service": "avvio-ditta-individuale", "data": with_long_description()}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let r = client
        .post(w.url(&format!("/api/v1/practices/{}/submit", created["id"].as_str().expect("id"))))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["institutions"][0]["status"], "unknown");

    let family = json!({
        "business.name": "Bar Centrale", "business.tax_code": HOLDER, "business.pec": "bar@pec.it",
        "business.event_date": complete_start_data()["business.start_date"].clone(),
        "owner.given_name": "Mario", "owner.surname": "Rossi", "owner.tax_code": HOLDER,
        "inps.collaborator_given_name": "Anna", "inps.collaborator_surname": "Rossi",
        "inps.collaborator_tax_code": "BNCSFN85T58G702W", "inps.collaborator_relationship": "coniuge"
    });
    let created: Value = client
        .post(w.url("/api/v1/practices"))
        .json(&json!({"service": "collaboratore-familiare", "data": family}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let r = client.post(w.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    w.wait_for(&id, "INPS accepted", |p| states(p).get("inps").map(String::as_str) == Some("accepted")).await;
    w.stop().await;
}
