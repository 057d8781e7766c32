//! The API over real HTTPS: the portal is started through `sportello::start` (what the binary
//! runs) on 127.0.0.1 port 0, and called with test smart cards as TLS client certificates.

use std::path::PathBuf;
use std::time::Duration;

use identity::test_pki::{CardSpec, Issued, TestPki};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sportello::{Running, Settings};
use web::tls::TlsMaterial;

pub const HOLDER: &str = "RSSMRA45C12F205C";
const OTHER_HOLDER: &str = "BNCSFN85T58G702W";

/// A running portal and what the tests need to talk to it.
pub(crate) struct TestApp {
    running: Option<Running>,
    base: String,
    pub(crate) ca_pem: String,
    pub(crate) holder: Issued,
    pub(crate) other: Issued,
    /// Trusted issuer, invalid codice fiscale in the CN.
    bad_tax_code: Issued,
    /// Trusted issuer, no smart-card certificate policy.
    no_policy: Issued,
    pub(crate) settings: Settings,
    _dir: tempfile::TempDir,
}

fn catalog_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../catalog")
}

async fn spawn_app_with(database_url: Option<String>) -> TestApp {
    spawn_app_full(database_url, Default::default(), false).await
}

/// A clock the test moves: the portal reads it everywhere (sessions, certificates, tokens).
#[derive(Debug)]
pub(crate) struct MovableClock(std::sync::Mutex<time::OffsetDateTime>);

impl MovableClock {
    pub(crate) fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self(std::sync::Mutex::new(time::OffsetDateTime::now_utc())))
    }

    pub(crate) fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock");
        *now += by;
    }
}

impl domain::Clock for MovableClock {
    fn now(&self) -> time::OffsetDateTime {
        *self.0.lock().expect("clock")
    }
}

async fn spawn_app_full(
    database_url: Option<String>,
    sessions: web::sessions::SessionPolicy,
    with_card_chooser: bool,
) -> TestApp {
    spawn_app_at(database_url, sessions, with_card_chooser, std::sync::Arc::new(web::SystemClock)).await
}

async fn spawn_app_at(
    database_url: Option<String>,
    sessions: web::sessions::SessionPolicy,
    with_card_chooser: bool,
    clock: std::sync::Arc<dyn domain::Clock>,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate("API test CA").expect("pki");
    let server = pki.server(&["localhost", "127.0.0.1"]).expect("server cert");
    let holder = pki.card(&CardSpec::new("Mario", "Rossi", HOLDER)).expect("card");
    let other = pki.card(&CardSpec::new("Stefania", "Bianco", OTHER_HOLDER)).expect("card");
    let bad_tax_code = pki.card(&CardSpec::new("Volpe", "Dora", "FOXDRA26C24H872A")).expect("card");
    let mut spec = CardSpec::new("Mario", "Rossi", HOLDER);
    spec.policies = vec!["1.2.3.4".into()];
    let no_policy = pki.card(&spec).expect("card");
    let rogue_cert = TestPki::generate("Rogue chooser CA")
        .and_then(|rogue| rogue.card(&CardSpec::new("Mario", "Rossi", HOLDER)))
        .expect("rogue card")
        .cert_pem;
    let database_url = database_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("api.db").display()));
    let tls = TlsMaterial::new(server.cert_pem.clone(), server.key_pem.clone(), pki.ca.cert_pem.clone());
    // No institutions: filings stay queued, which is what these tests look at.
    let settings = Settings {
        sessions,
        demo_cards: with_card_chooser.then(|| {
            let card = |slug: &str, cert_pem: &str| web::demo_cards::DemoCard {
                slug: slug.into(),
                label: format!("Carta {slug}"),
                cert_pem: cert_pem.into(),
            };
            vec![card("rossi", &holder.cert_pem), card("falsa", &bad_tax_code.cert_pem), card("estranea", &rogue_cert)]
        }),
        clock,
        ..Settings::new("127.0.0.1:0".parse().expect("addr"), database_url, catalog_dir(), tls)
    };
    let running = sportello::start(&settings).await.expect("portal starts");
    TestApp {
        base: format!("https://localhost:{}", running.addr.port()),
        running: Some(running),
        ca_pem: pki.ca.cert_pem.clone(),
        holder,
        other,
        bad_tax_code,
        no_policy,
        settings,
        _dir: dir,
    }
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(None).await
}

/// An HTTPS client trusting `ca_pem` and presenting `card`, if any.
pub fn client_with(ca_pem: &str, card: Option<&Issued>) -> reqwest::Client {
    sportello::bench::https_client(ca_pem, card).expect("client")
}

impl TestApp {
    pub(crate) fn client(&self) -> reqwest::Client {
        client_with(&self.ca_pem, Some(&self.holder))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        let running = sportello::start(&self.settings).await.expect("restart");
        self.base = format!("https://localhost:{}", running.addr.port());
        self.running = Some(running);
    }

    pub(crate) async fn create(&self, client: &reqwest::Client, body: Value) -> (StatusCode, Value) {
        let r = client.post(self.url("/api/v1/practices")).json(&body).send().await.expect("send");
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
}

/// The data of a complete "avvio-ditta-individuale", as a user types it.
pub fn complete_start_data() -> Value {
    json!({
        "business.name": "Bar Centrale di Mario Rossi",
        "business.tax_code": HOLDER,
        "business.pec": "bar.centrale@pec.it",
        "business.ateco": "56.30.00",
        "business.start_date": today_plus_days(5),
        "owner.given_name": "Mario",
        "owner.surname": "Rossi",
        "owner.tax_code": HOLDER,
        "owner.birth_date": "12/03/1945",
        "owner.birth_place": "Milano",
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
        "inail.yearly_wages": "24.000,00"
    })
}

fn today_plus_days(days: i64) -> String {
    let d = domain::italian_date(time::OffsetDateTime::now_utc()) + time::Duration::days(days);
    format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year())
}

fn split_data(full: &Value, keep: &[&str]) -> (Value, Value) {
    let (mut first, mut rest) = (serde_json::Map::new(), serde_json::Map::new());
    for (k, v) in full.as_object().expect("object") {
        if keep.contains(&k.as_str()) {
            first.insert(k.clone(), v.clone());
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    (Value::Object(first), Value::Object(rest))
}

/// The whole journey: catalog, draft with partial data, completion, submission, persistence.
async fn happy_path(app: &mut TestApp) {
    let client = app.client();
    let services: Value =
        client.get(app.url("/api/v1/services")).send().await.expect("send").json().await.expect("json");
    let ids: Vec<&str> =
        services["services"].as_array().expect("list").iter().filter_map(|s| s["id"].as_str()).collect();
    assert!(ids.contains(&"avvio-ditta-individuale"), "{ids:?}");

    let full = complete_start_data();
    let (partial, _) = split_data(&full, &["business.name", "owner.tax_code"]);
    let (status, draft) = app.create(&client, json!({"service": "avvio-ditta-individuale", "data": partial})).await;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    assert_eq!(draft["state"], "draft");
    assert!(draft["reference"].is_null());
    let problems = draft["problems"].as_array().expect("problems of a draft");
    assert!(problems.iter().any(|p| p["field"] == "seat.cap" && p["code"] == "required"), "{problems:?}");
    let id = draft["id"].as_str().expect("id").to_string();

    // Complete it.
    let r =
        client.put(app.url(&format!("/api/v1/practices/{id}"))).json(&json!({"data": full})).send().await.expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let completed: Value = r.json().await.expect("json");
    assert_eq!(completed["problems"], json!([]), "{completed}");

    // It survives a restart.
    app.restart().await;
    let client = app.client();
    let read: Value =
        client.get(app.url(&format!("/api/v1/practices/{id}"))).send().await.expect("get").json().await.expect("json");
    assert_eq!(read["data"]["business.name"], "Bar Centrale di Mario Rossi");

    // Submit: a reference number and one queued filing per recipient.
    let r = client.post(app.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK);
    let sent: Value = r.json().await.expect("json");
    assert_eq!(sent["state"], "in_progress");
    let reference = sent["reference"].as_str().expect("reference");
    assert!(reference.starts_with("SPT-") && reference.len() == "SPT-2026-0000001".len(), "{reference}");
    let deliveries = sent["deliveries"].as_array().expect("deliveries");
    let recipients: Vec<&str> = deliveries.iter().filter_map(|d| d["institution"].as_str()).collect();
    assert_eq!(recipients, ["registro-imprese", "inps", "inail"]);
    assert_eq!(deliveries[0]["state"], "queued");
    // INPS and INAIL take the REA number from the Registro Imprese's answer: they wait for it.
    assert!(deliveries[1..].iter().all(|d| d["state"] == "waiting" && d["waits_for"] == "registro-imprese"));
    assert_eq!(deliveries[2]["payload"]["lavorazioni"]["retribuzioni_presunte"], "24000.00");
    assert_eq!(deliveries[1]["payload"]["titolare"]["codice_fiscale"], HOLDER);

    // Submitting again is refused, and nothing changes.
    let r = client.post(app.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit again");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let listed: Value = client
        .get(app.url("/api/v1/practices?state=in_progress"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let practices = listed["practices"].as_array().expect("practices");
    assert_eq!(practices.len(), 1);
    assert_eq!(practices[0]["reference"], reference);

    // Still all there after another restart.
    app.restart().await;
    let read: Value = app
        .client()
        .get(app.url(&format!("/api/v1/practices/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(read["reference"], reference);
    assert_eq!(read["deliveries"].as_array().map(Vec::len), Some(3));
    app.stop().await;
}

#[tokio::test]
async fn happy_path_on_sqlite() {
    let mut app = spawn_app().await;
    happy_path(&mut app).await;
}

#[tokio::test]
async fn happy_path_on_postgres() {
    let url = std::env::var("SPORTELLO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = match sqlx::PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL at {url} is required under CI: {e}")
        }
        Err(e) => {
            eprintln!("skipping: PostgreSQL at {url} unreachable ({e})");
            return;
        }
    };
    let schema = format!(
        "api_{}_{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_007
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut app = spawn_app_with(Some(format!("{url}{separator}options=-c%20search_path%3D{schema}"))).await;
    happy_path(&mut app).await;
    let stored: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.deliveries"))
        .fetch_one(&admin)
        .await
        .expect("count");
    assert_eq!(stored, 3, "the deliveries are in PostgreSQL");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.expect("drop");
}

#[tokio::test]
async fn invalid_codice_fiscale_is_refused_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let client = app.client();
    let (status, problem) = app
        .create(&client, json!({"service": "variazione-sede-attivita", "data": {"owner.tax_code": "FOXDRA26C24H872A"}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["field"], "owner.tax_code");
    assert_eq!(errors[0]["code"], "person-tax-code-check-character");
    let message = errors[0]["message"].as_str().expect("message");
    assert!(message.starts_with("Codice fiscale:") && message.contains("carattere"), "{message}");

    // The same in English on request.
    let r = client
        .post(app.url("/api/v1/practices"))
        .header("accept-language", "en-GB,en;q=0.8")
        .json(&json!({"service": "variazione-sede-attivita", "data": {"owner.tax_code": "FOXDRA26C24H872A"}}))
        .send()
        .await
        .expect("send");
    let problem: Value = r.json().await.expect("json");
    let message = problem["errors"][0]["message"].as_str().expect("message");
    assert!(message.starts_with("Tax code (codice fiscale):") && message.contains("check"), "{message}");

    let listed: Value =
        client.get(app.url("/api/v1/practices")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed["practices"], json!([]), "nothing stored");
}

#[tokio::test]
async fn submitting_an_incomplete_practice_lists_every_missing_field() {
    let app = spawn_app().await;
    let client = app.client();
    let (_, draft) = app.create(&client, json!({"service": "collaboratore-familiare", "data": {}})).await;
    let id = draft["id"].as_str().expect("id");
    let r = client.post(app.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = r.json().await.expect("json");
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert!(fields.contains(&"business.name") && fields.contains(&"inps.collaborator_tax_code"), "{fields:?}");
    let read: Value =
        client.get(app.url(&format!("/api/v1/practices/{id}"))).send().await.expect("get").json().await.expect("json");
    assert_eq!(read["state"], "draft", "still a draft");
    assert!(read["reference"].is_null());
}

#[tokio::test]
async fn malformed_and_misshapen_requests_get_problem_answers() {
    let app = spawn_app().await;
    let client = app.client();
    let post = |body: &'static str, content_type: &'static str| {
        client.post(app.url("/api/v1/practices")).header("content-type", content_type).body(body).send()
    };
    let cases: [(&str, &str, StatusCode, &str); 6] = [
        ("{\"service\": ", "application/json", StatusCode::BAD_REQUEST, "malformed-json"),
        (
            "{\"service\": \"avvio-ditta-individuale\", \"colour\": 1}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong-shape",
        ),
        (
            "{\"service\": \"avvio-ditta-individuale\", \"data\": {\"business.name\": 42}}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong-shape",
        ),
        (
            "{\"service\": \"avvio-ditta-individuale\"}",
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        ("{\"service\": \"no-such-service\"}", "application/json", StatusCode::UNPROCESSABLE_ENTITY, "unknown-service"),
        (
            "{\"service\": \"avvio-ditta-individuale\", \"data\": {\"seat.colour\": \"blu\"}}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
    ];
    for (body, content_type, status, kind) in cases {
        let r = post(body, content_type).await.expect("send");
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{body}");
        let problem: Value = r.json().await.expect("problem json");
        assert_eq!(problem["type"], format!("/problems/{kind}"), "{body}");
        assert!(!problem["detail"].as_str().unwrap_or_default().is_empty(), "{body}");
    }
    let huge = json!({"service": "avvio-ditta-individuale", "data": {"business.name": "x".repeat(100_000)}});
    let r = client.post(app.url("/api/v1/practices")).json(&huge).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = client.get(app.url("/api/v1/practices?state=lost")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client.get(app.url("/api/v1/practices?limit=-1")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client.delete(app.url("/api/v1/services")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = client.get(app.url("/api/v1/nowhere")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let listed: Value =
        client.get(app.url("/api/v1/practices")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed["practices"], json!([]), "nothing stored");
}

#[tokio::test]
async fn another_holder_sees_nothing() {
    let app = spawn_app().await;
    let owner = app.client();
    let (_, draft) =
        app.create(&owner, json!({"service": "avvio-ditta-individuale", "data": {"business.name": "Mio"}})).await;
    let id = draft["id"].as_str().expect("id");
    let stranger = client_with(&app.ca_pem, Some(&app.other));
    let me: Value = stranger.get(app.url("/api/v1/me")).send().await.expect("me").json().await.expect("json");
    assert_eq!(me["tax_code"], OTHER_HOLDER);
    for r in [
        stranger.get(app.url(&format!("/api/v1/practices/{id}"))).send().await.expect("get"),
        stranger.put(app.url(&format!("/api/v1/practices/{id}"))).json(&json!({"data": {}})).send().await.expect("put"),
        stranger.post(app.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit"),
        stranger.get(app.url("/api/v1/practices/not-a-uuid")).send().await.expect("get"),
    ] {
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = r.text().await.expect("body");
        assert!(!body.contains("Mio"), "{body}");
    }
    let listed: Value =
        stranger.get(app.url("/api/v1/practices")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed["practices"], json!([]));
    let read: Value =
        owner.get(app.url(&format!("/api/v1/practices/{id}"))).send().await.expect("get").json().await.expect("json");
    assert_eq!(read["data"], json!({"business.name": "Mio"}), "unchanged");
}

#[tokio::test]
async fn cards_are_required_and_checked() {
    let app = spawn_app().await;
    // No card: the connection works, the API says who is needed.
    let anonymous = client_with(&app.ca_pem, None);
    let r = anonymous.get(app.url("/health")).send().await.expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    let r = anonymous.get(app.url("/api/v1/practices")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/unauthenticated");

    // Cards from the trusted certifier that are not acceptable smart cards.
    for (card, code) in [(&app.bad_tax_code, "invalid-tax-code"), (&app.no_policy, "no-accepted-policy")] {
        let r = client_with(&app.ca_pem, Some(card)).get(app.url("/api/v1/practices")).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{code}");
        let problem: Value = r.json().await.expect("json");
        assert_eq!(problem["type"], "/problems/card-refused", "{code}");
        assert!(!problem["detail"].as_str().unwrap_or_default().is_empty());
    }

    // A card from an untrusted certifier never gets past the handshake.
    let rogue = TestPki::generate("Rogue CA").expect("pki");
    let rogue_card = rogue.card(&CardSpec::new("Mario", "Rossi", HOLDER)).expect("card");
    let client = client_with(&app.ca_pem, Some(&rogue_card));
    assert!(client.get(app.url("/api/v1/practices")).send().await.is_err(), "handshake refused");
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = spawn_app().await;
    let spec: Value =
        app.client().get(app.url("/api/v1/openapi.json")).send().await.expect("get").json().await.expect("json");
    assert_eq!(spec["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
    let paths = spec["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/services", &["get"][..]),
        ("/api/v1/services/{id}", &["get"]),
        ("/api/v1/services/{id}/authorisations", &["get"]),
        ("/api/v1/practices", &["get", "post"]),
        ("/api/v1/practices/{id}", &["get", "put"]),
        ("/api/v1/practices/{id}/submit", &["post"]),
        ("/api/v1/search", &["get"]),
        ("/api/v1/export", &["get"]),
        ("/api/v1/delegations", &["get", "post"]),
        ("/api/v1/practices/{id}/events", &["get"]),
        ("/api/v1/activity", &["get"]),
        ("/api/v1/delegations/{id}/revoke", &["post"]),
        ("/api/v1/delegations/{id}/renounce", &["post"]),
        ("/api/v1/practices/{id}/receipt", &["get"]),
        ("/api/v1/practices/{id}/archive", &["post"]),
        ("/api/v1/practices/{id}/unarchive", &["post"]),
        ("/api/v1/me", &["get"]),
        ("/api/v1/practices/{id}/deliveries/{institution}/resend", &["post"]),
        ("/institutions/v1/{institution}/events", &["post"]),
        ("/session", &["get", "post", "delete"]),
    ] {
        for m in methods {
            assert!(paths.get(path).and_then(|p| p.get(m)).is_some(), "{m} {path} is not documented");
        }
    }
}

#[tokio::test]
async fn a_cross_site_post_is_refused() {
    let app = spawn_app().await;
    let client = app.client();
    let (_, draft) =
        app.create(&client, json!({"service": "avvio-ditta-individuale", "data": complete_start_data()})).await;
    let id = draft["id"].as_str().expect("id");
    // A page on another site makes the browser (which holds the card) post to the portal; a
    // sandboxed or privacy-stripped origin (`null`) counts only with Sec-Fetch-Site: same-origin.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
    ] {
        let mut request = client.post(app.url(&format!("/api/v1/practices/{id}/submit")));
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let r = request.send().await.expect("send");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/cross-site");
    }
    let read: Value =
        client.get(app.url(&format!("/api/v1/practices/{id}"))).send().await.expect("get").json().await.expect("json");
    assert_eq!(read["state"], "draft", "nothing happened");
    // The portal's own pages (same origin, even with `Origin: null` under the no-referrer
    // policy) and non-browser clients are fine.
    let r = client
        .put(app.url(&format!("/api/v1/practices/{id}")))
        .header("sec-fetch-site", "same-origin")
        .header("origin", "null")
        .json(&json!({"data": complete_start_data()}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let origin = format!("https://localhost:{}", app.running.as_ref().map(|r| r.addr.port()).unwrap_or_default());
    let r = client
        .post(app.url(&format!("/api/v1/practices/{id}/submit")))
        .header("sec-fetch-site", "same-origin")
        .header("origin", origin)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}

fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-sportello-session="))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn sessions_resist_fixation_and_end_on_logout() {
    let app = spawn_app().await;
    let client = app.client();
    // A cookie planted before login is worth nothing, and is replaced at login.
    let planted = "__Host-sportello-session=planted";
    let r = client.get(app.url("/session")).header("cookie", planted).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.post(app.url("/session")).header("cookie", planted).send().await.expect("login");
    assert_eq!(r.status(), StatusCode::CREATED);
    let set = session_cookie(&r).expect("a session cookie");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = cookie_value(&set);
    assert_ne!(cookie, planted);
    let login: Value = r.json().await.expect("json");
    let csrf = login["csrf_token"].as_str().expect("token").to_string();
    assert_eq!(csrf.len(), 64);
    let r = client.get(app.url("/session")).header("cookie", &cookie).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    // Logging in again makes yet another id and ends the previous session.
    let again = client.post(app.url("/session")).header("cookie", &cookie).send().await.expect("login");
    let newer = cookie_value(&session_cookie(&again).expect("cookie"));
    assert_ne!(newer, cookie);
    let r = client.get(app.url("/session")).header("cookie", &cookie).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the old id is dead");
    let csrf = again.json::<Value>().await.expect("json")["csrf_token"].as_str().expect("token").to_string();
    // The session works only with the card it was opened with.
    let stranger = client_with(&app.ca_pem, Some(&app.other));
    let r = stranger.get(app.url("/session")).header("cookie", &newer).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Logout needs the CSRF token.
    let r = client.delete(app.url("/session")).header("cookie", &newer).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .delete(app.url("/session"))
        .header("cookie", &newer)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = client.get(app.url("/session")).header("cookie", &newer).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn idle_sessions_expire() {
    // Time is moved, not waited for: 20 idle minutes of 30 keep the session, 31 more end it.
    let policy =
        web::sessions::SessionPolicy { idle: Duration::from_secs(30 * 60), absolute: Duration::from_secs(8 * 3600) };
    let clock = MovableClock::new();
    let app = spawn_app_at(None, policy, false, clock.clone()).await;
    let client = app.client();
    let r = client.post(app.url("/session")).send().await.expect("login");
    let cookie = cookie_value(&session_cookie(&r).expect("cookie"));
    clock.advance(Duration::from_secs(20 * 60));
    let status = |cookie: String| {
        let request = client.get(app.url("/session")).header("cookie", cookie);
        async move { request.send().await.expect("send") }
    };
    assert_eq!(status(cookie.clone()).await.status(), StatusCode::OK, "used after 20 minutes: still open");
    clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(status(cookie.clone()).await.status(), StatusCode::OK, "each use starts the idle time again");
    clock.advance(Duration::from_secs(31 * 60));
    let r = status(cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/session-expired");
}

#[tokio::test]
async fn session_activity_is_written_at_most_every_30_seconds() {
    // A page view within 30 s of the last one written is a read: with a one-minute idle
    // timeout, a use 20 s after login does not restart it, one 30 s after does.
    let policy = web::sessions::SessionPolicy { idle: Duration::from_secs(60), absolute: Duration::from_secs(3600) };
    let clock = MovableClock::new();
    let app = spawn_app_at(None, policy, false, clock.clone()).await;
    let client = app.client();
    let status = |cookie: String| {
        let request = client.get(app.url("/session")).header("cookie", cookie);
        async move { request.send().await.expect("send").status() }
    };
    let r = client.post(app.url("/session")).send().await.expect("login");
    let quick = cookie_value(&session_cookie(&r).expect("cookie"));
    let r = client.post(app.url("/session")).send().await.expect("login");
    let spaced = cookie_value(&session_cookie(&r).expect("cookie"));
    clock.advance(Duration::from_secs(20));
    assert_eq!(status(quick.clone()).await, StatusCode::OK, "used 20 s after login");
    clock.advance(Duration::from_secs(10));
    assert_eq!(status(spaced.clone()).await, StatusCode::OK, "used 30 s after login: written down");
    clock.advance(Duration::from_secs(35));
    assert_eq!(status(quick).await, StatusCode::UNAUTHORIZED, "65 s after the last use written down");
    assert_eq!(status(spaced).await, StatusCode::OK, "35 s after its last use");
}

#[tokio::test]
async fn the_demo_card_chooser_logs_in_through_the_same_checks() {
    let app = spawn_app_full(None, Default::default(), true).await;
    let browser = client_with(&app.ca_pem, None);
    let page = browser.get(app.url("/demo/cards")).send().await.expect("get");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("lang=\"it\"") && html.contains("Carta rossi"),
        "{html}"
    );

    // A card from an untrusted certifier, or one with an invalid codice fiscale, is refused.
    for slug in ["estranea", "falsa"] {
        let r = browser.post(app.url("/demo/cards")).form(&[("card", slug)]).send().await.expect("post");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{slug}");
        assert!(session_cookie(&r).is_none(), "{slug}: no session");
        assert!(r.text().await.expect("html").contains("role=\"alert\""), "{slug}");
    }
    let r = browser.post(app.url("/demo/cards")).form(&[("other", "x")]).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "no card chosen: the page again, with the error");
    assert!(r.text().await.expect("html").contains("role=\"alert\""));
    let r = browser.post(app.url("/demo/cards")).form(&[("card", "rossi")]).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = cookie_value(&session_cookie(&r).expect("session"));
    // The browser, without any card, now acts as the chosen holder.
    let me: Value = browser
        .get(app.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["tax_code"], HOLDER);
    // Changes need the session's CSRF token.
    let create = || {
        browser
            .post(app.url("/api/v1/practices"))
            .header("cookie", &cookie)
            .json(&json!({"service": "avvio-ditta-individuale", "data": {}}))
    };
    let r = create().send().await.expect("create");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/csrf-token");
    let session: Value = browser
        .get(app.url("/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let token = session["csrf_token"].as_str().expect("token").to_string();
    let r = create().header("x-csrf-token", &token).send().await.expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    // Without the session, nothing.
    assert_eq!(browser.get(app.url("/api/v1/me")).send().await.expect("me").status(), StatusCode::UNAUTHORIZED);

    // Outside the demo the chooser does not exist.
    let plain = spawn_app().await;
    let r = client_with(&plain.ca_pem, None).get(plain.url("/demo/cards")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_speak_italian_first_and_work_without_javascript() {
    let app = spawn_app().await;
    let anonymous = client_with(&app.ca_pem, None);
    let r = anonymous.get(app.url("/")).send().await.expect("home");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the desk needs a card");
    let html = r.text().await.expect("html");
    assert!(html.contains("<html lang=\"it\">") && html.contains("Accedi con la smart card"), "{html}");

    let holder = app.client();
    let (_, draft) = app.create(&holder, json!({"service": "avvio-ditta-individuale", "data": {}})).await;
    assert!(draft["id"].is_string());
    let html = holder.get(app.url("/")).send().await.expect("home").text().await.expect("html");
    assert_eq!(html.matches("<h1>").count(), 1, "one h1");
    assert!(html.contains("La mia scrivania") && html.contains("href=\"#contenuto\""), "{html}");
    assert!(html.contains("<span class=\"count\">1</span> in bozza"), "{html}");
    // The one script is external (the CSP forbids inline ones) and only enhances.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("<script src=\"/static/sportello.js\" defer></script>"), "{html}");

    let html = anonymous.get(app.url("/servizi?lang=en")).send().await.expect("services").text().await.expect("html");
    assert!(html.contains("<html lang=\"en\">") && html.contains("Starting a business"), "{html}");
    let html = anonymous.get(app.url("/accessibilita")).send().await.expect("statement").text().await.expect("html");
    assert!(html.contains("Dichiarazione di accessibilità") && html.contains("mailto:"), "{html}");
    let r = anonymous.get(app.url("/static/sportello.css")).send().await.expect("css");
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn practice_pages_list_and_detail_only_the_holders_own() {
    let app = spawn_app().await;
    let holder = app.client();
    let (_, draft) =
        app.create(&holder, json!({"service": "avvio-ditta-individuale", "data": {"business.name": "Bar Roma"}})).await;
    let id = draft["id"].as_str().expect("id");
    let list = holder.get(app.url("/pratiche?stato=draft")).send().await.expect("list").text().await.expect("html");
    assert!(list.contains(&format!("href=\"/pratiche/{id}\"")) && list.contains("aria-current=\"page\""), "{list}");
    let r = holder.get(app.url(&format!("/pratiche/{id}"))).send().await.expect("detail");
    assert_eq!(r.status(), StatusCode::OK);
    let detail = r.text().await.expect("html");
    assert!(detail.contains("Da completare prima dell&#39;invio"), "{detail}");
    assert!(detail.contains("Codice fiscale dell&#39;impresa: campo obbligatorio."), "{detail}");
    let stranger = client_with(&app.ca_pem, Some(&app.other));
    let r = stranger.get(app.url(&format!("/pratiche/{id}"))).send().await.expect("detail");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A browser gets the failure as a page; the API keeps problem+json.
    let r =
        stranger.get(app.url(&format!("/pratiche/{id}"))).header("accept", "text/html").send().await.expect("detail");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.expect("html");
    assert!(page.contains("<h1>Non trovato</h1>") && page.contains("role=\"alert\""), "{page}");
    let r = stranger
        .get(app.url(&format!("/api/v1/practices/{id}")))
        .header("accept", "text/html")
        .send()
        .await
        .expect("api");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let list = stranger.get(app.url("/pratiche?stato=draft")).send().await.expect("list").text().await.expect("html");
    assert!(!list.contains(id) && !list.contains("Bar Roma"), "{list}");
}

#[tokio::test]
async fn archive_and_bring_back_through_the_api_as_on_the_desk() {
    let app = spawn_app().await;
    let client = app.client();
    let (_, draft) =
        app.create(&client, json!({"service": "avvio-ditta-individuale", "data": {"business.name": "Bar"}})).await;
    let id = draft["id"].as_str().expect("id").to_string();
    let act = |what: &str, id: &str| client.post(app.url(&format!("/api/v1/practices/{id}/{what}"))).send();
    let r = act("archive", &id).await.expect("archive");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["state"], "archived");
    let listed: Value =
        client.get(app.url("/api/v1/practices?state=archived")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed["practices"][0]["id"], id.as_str(), "{listed}");
    // Someone else, a made-up id, a malformed one: not found, and nothing changes.
    let stranger = client_with(&app.ca_pem, Some(&app.other));
    for (who, target) in
        [(&stranger, id.clone()), (&client, "0b6f3f0e-8f1a-4c2e-9d4b-2a7c5e1f9a30".to_string()), (&client, "x".into())]
    {
        let r = who.post(app.url(&format!("/api/v1/practices/{target}/unarchive"))).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/not-found");
    }
    let r = act("unarchive", &id).await.expect("unarchive");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["state"], "draft", "back where it was");
    // A practice on its way to the institutions cannot be archived.
    let (_, sent) =
        app.create(&client, json!({"service": "avvio-ditta-individuale", "data": complete_start_data()})).await;
    let sent_id = sent["id"].as_str().expect("id").to_string();
    let r = client.post(app.url(&format!("/api/v1/practices/{sent_id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    let r = act("archive", &sent_id).await.expect("archive");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/wrong-state");
}

#[tokio::test]
async fn the_desk_s_search_through_the_api_with_the_same_checks() {
    let app = spawn_app().await;
    let client = app.client();
    for name in ["Bar Roma", "Pizzeria Napoli"] {
        let (status, _) =
            app.create(&client, json!({"service": "avvio-ditta-individuale", "data": {"business.name": name}})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let search = |who: &reqwest::Client, query: &str| who.get(app.url(&format!("/api/v1/search?{query}"))).send();
    let found: Value = search(&client, "testo=roma").await.expect("search").json().await.expect("json");
    assert_eq!(
        (found["total"].as_u64(), found["page"].as_u64(), found["per_page"].as_u64()),
        (Some(1), Some(1), Some(20))
    );
    assert_eq!(found["practices"][0]["data"]["business.name"], "Bar Roma", "{found}");
    let all: Value = search(&client, "stato=draft&ordina=updated&verso=asc&pagina=9")
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!((all["total"].as_u64(), all["page"].as_u64()), (Some(2), Some(1)), "past the end: the last page");
    // Someone else finds nothing of it.
    let stranger = client_with(&app.ca_pem, Some(&app.other));
    let theirs: Value = search(&stranger, "testo=roma").await.expect("search").json().await.expect("json");
    assert_eq!(theirs["total"], 0);
    // What cannot be understood is named, in the user's language, as on the page.
    for (query, words) in [
        ("dal=31/02/2026", "data non è valida"),
        ("dal=10/03/2026&al=01/03/2026", "non può precedere"),
        ("servizio=nessuno", "Servizio: «nessuno»"),
        ("stato=perso&lang=en", "is not one of the choices"),
    ] {
        let r = search(&client, query).await.expect("search");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let problem: Value = r.json().await.expect("json");
        assert_eq!(problem["type"], "/problems/bad-parameter");
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains(words)), "{query}: {problem}");
    }
}

#[tokio::test]
async fn the_receipt_as_json_says_what_the_printed_one_says() {
    let app = spawn_app().await;
    let client = app.client();
    let (_, draft) =
        app.create(&client, json!({"service": "avvio-ditta-individuale", "data": complete_start_data()})).await;
    let id = draft["id"].as_str().expect("id").to_string();
    let receipt = |who: &reqwest::Client| who.get(app.url(&format!("/api/v1/practices/{id}/receipt"))).send();
    let r = receipt(&client).await.expect("receipt");
    assert_eq!(r.status(), StatusCode::CONFLICT, "a draft has no receipt yet");
    let r = client.post(app.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK);
    let sent: Value = r.json().await.expect("json");
    let json: Value = receipt(&client).await.expect("receipt").json().await.expect("json");
    assert_eq!(json["reference"], sent["reference"]);
    assert_eq!((json["owner"].as_str(), json["actor"].as_str()), (Some(HOLDER), Some(HOLDER)));
    let filings = json["filings"].as_array().expect("filings");
    assert_eq!(filings.len(), 3, "{json}");
    assert!(filings
        .iter()
        .all(|f| f["protocol_number"].is_null() && f["payload_sha256"].as_str().map(str::len) == Some(64)));
    // The printed receipt carries the same digests.
    let page = client.get(app.url(&format!("/pratiche/{id}/ricevuta"))).header("accept", "text/html").send().await;
    let page = page.expect("page").text().await.expect("html");
    let data_digest = json["data_sha256"].as_str().expect("digest");
    assert!(page.contains(data_digest), "{page}");
    assert!(filings.iter().all(|f| page.contains(f["payload_sha256"].as_str().unwrap_or("?"))));
    let stranger = client_with(&app.ca_pem, Some(&app.other));
    assert_eq!(receipt(&stranger).await.expect("receipt").status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_export_through_the_api_holds_the_chosen_practices() {
    let app = spawn_app().await;
    let client = app.client();
    let mut ids = Vec::new();
    for name in ["Bar Roma", "Pizzeria Napoli"] {
        let (_, p) =
            app.create(&client, json!({"service": "avvio-ditta-individuale", "data": {"business.name": name}})).await;
        ids.push(p["id"].as_str().expect("id").to_string());
    }
    let url = format!("/api/v1/export?practice={}&practice={}&practice={}", ids[0], ids[1], ids[0]);
    let r = client.get(app.url(&url)).send().await.expect("export");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("content-disposition").is_some_and(|v| v.to_str().unwrap_or("").contains("attachment")));
    let export: Value = r.json().await.expect("json");
    assert_eq!(export["holder"], HOLDER);
    assert_eq!(export["practices"].as_array().map(Vec::len), Some(2), "each once: {export}");
    let r = client.get(app.url("/api/v1/export")).send().await.expect("export");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "nothing chosen");
    let stranger = client_with(&app.ca_pem, Some(&app.other));
    let r = stranger.get(app.url(&format!("/api/v1/export?practice={}", ids[0]))).send().await.expect("export");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "another holder's practice");
}

/// Past its limit of requests in flight the portal answers 503 at once (problem+json,
/// Retry-After, the security headers) instead of queueing, and serves again once they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_answered_503_at_once_and_passes() {
    let mut app = spawn_app().await;
    app.settings.max_in_flight = 2;
    app.restart().await;
    let client = app.client();
    let health = app.url("/health");
    assert_eq!(client.get(&health).send().await.expect("health").status(), StatusCode::OK);
    // Another process holds SQLite's write lock: two drafts wait for it, filling the limit.
    let db = app.settings.database_url.trim_start_matches("sqlite://").to_string();
    let mut lock =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite:{db}")).await.expect("raw connection");
    sqlx::Executor::execute(&mut lock, "BEGIN IMMEDIATE").await.expect("lock");
    let mut drafts = Vec::new();
    for _ in 0..2 {
        let (client, url) = (client.clone(), app.url("/api/v1/practices"));
        let body = json!({"service": "avvio-ditta-individuale", "data": {}});
        drafts.push(tokio::spawn(async move { client.post(url).json(&body).send().await.expect("create").status() }));
    }
    let started = std::time::Instant::now();
    let refused = loop {
        let r = client.get(&health).send().await.expect("health");
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(4), "the limit was never reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    assert!(refused.headers()["content-type"].to_str().expect("type").starts_with("application/problem+json"));
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["status"], 503);
    assert_eq!(problem["title"], "Troppe richieste in questo momento");
    // The lock goes: the waiting drafts are taken, and the portal serves again.
    sqlx::Executor::execute(&mut lock, "ROLLBACK").await.expect("unlock");
    for draft in drafts {
        assert_eq!(draft.await.expect("task"), StatusCode::CREATED, "accepted work is not lost");
    }
    assert_eq!(client.get(&health).send().await.expect("health").status(), StatusCode::OK);
    app.stop().await;
}
