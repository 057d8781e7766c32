//! One core, two doors: the same journey through the desk's pages and through the JSON API
//! reaches the same results, and the acts added to the API (granting a delegation, the
//! practice's events as a stream) answer as the desk does.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api::{client_with, complete_start_data, HOLDER};
use crate::delivery::world;
use crate::desk::{csrf, Browser};

const COLLABORATOR: &str = "BNCSFN85T58G702W";

/// An Italian day `offset` days from today, as the API takes it (`YYYY-MM-DD`).
fn iso_day(offset: i64) -> String {
    (domain::italian_date(time::OffsetDateTime::now_utc()) + time::Duration::days(offset)).to_string()
}

/// Fills and sends "avvio-ditta-individuale" through the pages, as a user would; returns the
/// practice's id.
async fn send_through_the_pages(browser: &mut Browser) -> String {
    let (status, _, page) = browser.get("/servizi/avvio-ditta-individuale").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let token = csrf(&page);
    let (_, at, _) =
        browser.post("/pratiche", &[("_csrf", &token), ("servizio", "avvio-ditta-individuale"), ("impresa", "")]).await;
    let id = at.trim_start_matches("/pratiche/").trim_end_matches("/compila").to_string();
    let data = complete_start_data();
    let data = data.as_object().expect("object");
    for group in ["business", "owner", "seat", "staff", "registro-imprese", "inps", "inail"] {
        let mut fields: Vec<(&str, &str)> = vec![("_csrf", &token), ("azione", "continua")];
        fields.extend(
            data.iter()
                .filter(|(k, _)| k.starts_with(&format!("{group}.")))
                .map(|(k, v)| (k.as_str(), v.as_str().expect("text"))),
        );
        let (status, _, page) = browser.post(&format!("/pratiche/{id}/sezioni/{group}"), &fields).await;
        assert_eq!(status, StatusCode::OK, "{group}: {page}");
    }
    let declared = [("_csrf", token.as_str()), ("dichiarazione", "confermata")];
    let (status, at, page) = browser.post(&format!("/pratiche/{id}/invia"), &declared).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(at.ends_with("?inviata=1"), "{at}");
    id
}

/// What must be the same whichever door a practice came in by.
fn outcome(practice: &Value, receipt: &Value) -> Value {
    let deliveries: Vec<Value> = practice["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| json!([d["institution"], d["filing"], d["state"], d["protocol_number"].is_string()]))
        .collect();
    let filings: Vec<Value> = receipt["filings"]
        .as_array()
        .expect("filings")
        .iter()
        .map(|f| json!([f["institution"], f["filing_kind"]]))
        .collect();
    json!({
        "state": practice["state"],
        "service": practice["service_id"],
        "owner": practice["owner"],
        "actor": practice["actor"],
        "data": practice["data"],
        "deliveries": deliveries,
        "data_sha256": receipt["data_sha256"],
        "filings": filings,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_pages_reach_the_same_results_for_the_same_journey() {
    let mut w = world().await;
    let mut browser = Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    let by_pages = send_through_the_pages(&mut browser).await;
    let by_api = w.submit(complete_start_data()).await;
    let client = w.client();
    let mut outcomes = Vec::new();
    for id in [&by_pages, &by_api] {
        // Completed once every protocol number is in; the outcomes may still be on their way.
        let decided = |p: &Value| {
            p["state"] == "completed"
                && p["deliveries"].as_array().is_some_and(|ds| ds.iter().all(|d| d["state"] == "accepted"))
        };
        let done = w.wait_for(id, "completed and accepted everywhere", decided).await;
        let receipt: Value = client
            .get(w.url(&format!("/api/v1/practices/{id}/receipt")))
            .send()
            .await
            .expect("receipt")
            .json()
            .await
            .expect("json");
        outcomes.push(outcome(&done, &receipt));
    }
    assert_eq!(outcomes[0], outcomes[1], "the same data, filings and outcomes by either door");
    assert_eq!(outcomes[0]["deliveries"].as_array().map(Vec::len), Some(3));

    // Both are found by both searches, and both acts are in the holder's activity.
    let found: Value =
        client.get(w.url("/api/v1/search?testo=centrale")).send().await.expect("search").json().await.expect("json");
    assert_eq!(found["total"], 2, "{found}");
    let (_, _, page) = browser.get("/ricerca?testo=centrale").await;
    assert!(page.contains("Pratiche trovate: 2"), "{page}");
    let acts: Value = client.get(w.url("/api/v1/activity")).send().await.expect("acts").json().await.expect("json");
    let submitted: Vec<&Value> =
        acts.as_array().expect("acts").iter().filter(|a| a["action"] == "submitted" && a["actor"] == HOLDER).collect();
    assert_eq!(submitted.len(), 2, "{acts}");

    // The practice's events as a stream, for business software: the state now, at once.
    let mut stream = client
        .get(w.url(&format!("/api/v1/practices/{by_api}/events")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream"),
        "a server-sent events stream"
    );
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.expect("in time").expect("chunk");
    let first = String::from_utf8_lossy(&first.expect("a first event")).to_string();
    assert!(first.contains("event: update") && first.contains("\"completed\""), "{first}");
    // Another holder's practice, or no practice: not found, nothing leaked.
    let stranger = client_with(&w.ca_pem, Some(&w.stranger));
    for path in [format!("/api/v1/practices/{by_api}/events"), "/api/v1/practices/nessuna/events".to_string()] {
        let r = stranger.get(w.url(&path)).send().await.expect("events");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!r.text().await.expect("body").contains(&by_api), "nothing leaked");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_is_granted_through_the_api_with_the_desk_s_checks() {
    let mut w = world().await;
    let owner = w.client();
    let grant = |who: &reqwest::Client, body: Value, delegation: Option<&str>| {
        let mut request = who.post(w.url("/api/v1/delegations")).json(&body);
        if let Some(id) = delegation {
            request = request.header("x-sportello-delegation", id);
        }
        request.send()
    };
    let listed = || async {
        let r = owner.get(w.url("/api/v1/delegations")).send().await.expect("list");
        r.json::<Value>().await.expect("json")["granted"].as_array().expect("granted").len()
    };

    // Every reason at once, by field; nothing is granted.
    let bad = json!({
        "delegate": "RSSMRA45C12F205X",
        "institutions": [],
        "businesses": [],
        "services": ["cessazione-impresa"],
        "valid_from": iso_day(-1),
        "valid_until": iso_day(400),
    });
    let r = grant(&owner, bad, None).await.expect("grant");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/grant-refused");
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    for field in ["delegate", "institutions", "businesses", "services", "valid_from", "valid_until"] {
        assert!(fields.contains(&field), "{field} is named: {problem}");
    }
    assert!(problem["errors"].to_string().contains("Codice fiscale del collaboratore"), "in Italian first: {problem}");
    // A date in another format, a field the API does not know: 4xx naming it.
    let mut body = json!({
        "delegate": COLLABORATOR,
        "institutions": ["inps", "inail", "registro-imprese"],
        "businesses": [HOLDER.to_lowercase()],
        "services": ["avvio-ditta-individuale"],
        "valid_from": "01/01/2027",
        "valid_until": iso_day(30),
        "note": "pratiche dello studio",
    });
    let r = grant(&owner, body.clone(), None).await.expect("grant");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.expect("json")["detail"].as_str().is_some_and(|d| d.contains("valid_from")));
    let mut unknown = body.clone();
    unknown["valid_to"] = json!(iso_day(30));
    let r = grant(&owner, unknown, None).await.expect("grant");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json::<Value>().await.expect("json")["detail"].as_str().is_some_and(|d| d.contains("valid_to")));
    assert_eq!(listed().await, 0, "nothing was granted");

    // Granted: 201 with its location, the business in its canonical form, each institution
    // told, and on the desk's page too.
    body["valid_from"] = json!(iso_day(0));
    let r = grant(&owner, body.clone(), None).await.expect("grant");
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
    let granted: Value = r.json().await.expect("json");
    let id = granted["id"].as_str().expect("id").to_string();
    assert_eq!(location, Some(format!("/api/v1/delegations/{id}")));
    assert_eq!((granted["delegate"].as_str(), granted["standing"].as_str()), (Some(COLLABORATOR), Some("valid")));
    assert_eq!(granted["scope"]["businesses"], json!([HOLDER]), "stored upper-case: {granted}");
    assert_eq!(listed().await, 1);
    let mut desk = Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    let (_, _, page) = desk.get("/deleghe").await;
    assert!(page.contains(&id) && page.contains(COLLABORATOR), "{page}");

    // What one holds by delegation is not one's own to hand on.
    let collaborator = client_with(&w.ca_pem, Some(&w.collaborator));
    let mut onward = body.clone();
    onward["delegate"] = json!("VRDGPP80A01H501U");
    let r = grant(&collaborator, onward.clone(), Some(&id)).await.expect("grant");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/no-redelegation");
    // Another holder naming this delegation learns nothing.
    let stranger = client_with(&w.ca_pem, Some(&w.stranger));
    let r = grant(&stranger, onward.clone(), Some(&id)).await.expect("grant");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Revoked: acting under it is refused.
    let r = owner.post(w.url(&format!("/api/v1/delegations/{id}/revoke"))).send().await.expect("revoke");
    assert_eq!(r.status(), StatusCode::OK);
    let r = grant(&collaborator, onward, Some(&id)).await.expect("grant");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/out-of-scope");
    let acts: Value = owner.get(w.url("/api/v1/activity")).send().await.expect("acts").json().await.expect("json");
    assert!(acts.as_array().expect("acts").iter().any(|a| a["action"] == "delegation_granted"), "{acts}");
    w.stop().await;
}

/// Every route that acts for someone, with another holder's ids and under a delegation that
/// held and then was revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_s_acts_refuse_another_holder_s_ids_and_a_revoked_delegation() {
    let mut w = world().await;
    let owner = w.client();
    let draft = w.create(json!({"business.name": "Bar Centrale", "business.tax_code": HOLDER})).await;
    let sent = w.submit(complete_start_data()).await;
    w.wait_for(&sent, "completed", |p| p["state"] == "completed").await;
    let body = json!({
        "delegate": COLLABORATOR,
        "institutions": ["inps", "inail", "registro-imprese"],
        "businesses": [HOLDER],
        "services": ["avvio-ditta-individuale"],
        "valid_from": iso_day(0),
        "valid_until": iso_day(30),
    });
    let r = owner.post(w.url("/api/v1/delegations")).json(&body).send().await.expect("grant");
    assert_eq!(r.status(), StatusCode::CREATED);
    let delegation = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    // Acting needs each institution's acceptance: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed: Value =
            owner.get(w.url("/api/v1/delegations")).send().await.expect("list").json().await.expect("json");
        let states = &listed["granted"][0]["states"];
        if ["inps", "inail", "registro-imprese"].iter().all(|i| states[i] == "active") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "institutions never accepted: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let draft_data = json!({"data": {"business.name": "Bar Centrale", "business.tax_code": HOLDER}});
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/v1/practices/{draft}"), None),
        ("PUT", format!("/api/v1/practices/{draft}"), Some(draft_data)),
        ("POST", format!("/api/v1/practices/{draft}/archive"), None),
        ("POST", format!("/api/v1/practices/{draft}/unarchive"), None),
        ("POST", format!("/api/v1/practices/{draft}/submit"), None),
        ("GET", format!("/api/v1/practices/{sent}/receipt"), None),
        ("GET", format!("/api/v1/practices/{sent}/events"), None),
        ("POST", format!("/api/v1/practices/{sent}/deliveries/inps/resend"), None),
        ("GET", format!("/api/v1/export?practice={sent}"), None),
        ("GET", "/api/v1/search?testo=centrale".to_string(), None),
        ("GET", "/api/v1/practices".to_string(), None),
    ];
    let call = |who: &reqwest::Client, method: &str, path: &str, body: &Option<Value>, acting: bool| {
        let mut request = who.request(method.parse().expect("method"), w.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if acting {
            request = request.header("x-sportello-delegation", &delegation);
        }
        request.send()
    };
    // Under the delegation every act reaches its practice (whatever its state allows).
    let collaborator = client_with(&w.ca_pem, Some(&w.collaborator));
    for (method, path, body) in &routes {
        let r = call(&collaborator, method, path, body, true).await.expect("send");
        let status = r.status();
        assert!(status != StatusCode::NOT_FOUND && status != StatusCode::FORBIDDEN, "{method} {path}: {status}");
    }
    // Another holder's ids: not found, and nothing of them in the answer.
    let stranger = client_with(&w.ca_pem, Some(&w.stranger));
    for (method, path, body) in routes.iter().filter(|(_, p, _)| p.contains(&draft) || p.contains(&sent)) {
        let r = call(&stranger, method, path, body, false).await.expect("send");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let text = r.text().await.expect("body");
        assert!(!text.contains(&draft) && !text.contains(&sent) && !text.contains("Centrale"), "{path}: {text}");
    }
    // Revoked: every act under it is refused, and says why.
    let r = owner.post(w.url(&format!("/api/v1/delegations/{delegation}/revoke"))).send().await.expect("revoke");
    assert_eq!(r.status(), StatusCode::OK);
    for (method, path, body) in &routes {
        let r = call(&collaborator, method, path, body, true).await.expect("send");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/out-of-scope", "{method} {path}");
    }
    w.stop().await;
}

/// A day `offset` days from today as the desk's forms show it (`gg/mm/aaaa`).
fn desk_day(offset: i64) -> String {
    let d = domain::italian_date(time::OffsetDateTime::now_utc()) + time::Duration::days(offset);
    format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_form_asks_for_an_empty_end_date_and_names_the_latest_allowed() {
    let mut w = world().await;
    let mut grantor = Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    let (_, _, page) = grantor.get("/deleghe/nuova").await;
    let token = csrf(&page);
    let today = desk_day(0);
    let form = |until: &str| {
        vec![
            ("_csrf".to_string(), token.clone()),
            ("nome".to_string(), "Stefania Bianco".to_string()),
            ("delegato".to_string(), COLLABORATOR.to_string()),
            ("ente".to_string(), "inps".to_string()),
            ("impresa".to_string(), HOLDER.to_string()),
            ("servizio".to_string(), "collaboratore-familiare".to_string()),
            ("dal".to_string(), today.clone()),
            ("al".to_string(), until.to_string()),
        ]
    };
    for (until, expected) in [
        ("", "Valida fino al: indica fino a quando vale la delega".to_string()),
        ("31/02/2027", "Valida fino al: la data non è valida".to_string()),
        (desk_day(400).as_str(), format!("l&#39;ultima data possibile è {}", desk_day(364))),
    ] {
        let fields = form(until);
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, _, page) = grantor.post("/deleghe", &pairs).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
        assert!(page.contains(&expected), "{until:?}: {expected} not in {page}");
        assert!(page.contains("href=\"#delega-al\""), "the error links to the end date");
        assert!(
            page.contains("id=\"delega-al-errore\"") && page.contains("aria-invalid=\"true\""),
            "beside the field: {page}"
        );
    }
    // Several errors: beside each field, and in the summary in the order of the page.
    let pairs = [("_csrf", token.as_str()), ("nome", ""), ("delegato", "XX"), ("dal", "31/02/2027"), ("al", "")];
    let (status, _, page) = grantor.post("/deleghe", &pairs).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let order: Vec<usize> = [
        "href=\"#delega-nome\"",
        "href=\"#delega-delegato\"",
        "href=\"#delega-enti\"",
        "href=\"#delega-dal\"",
        "href=\"#delega-al\"",
    ]
    .iter()
    .map(|link| page.find(link).unwrap_or_else(|| panic!("{link} in {page}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "page order: {order:?}");
    assert!(page.contains("id=\"delega-delegato-errore\"") && page.contains("id=\"delega-dal-errore\""), "{page}");
    let listed: Value =
        w.client().get(w.url("/api/v1/delegations")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed["granted"], json!([]), "nothing was granted");
    w.stop().await;
}
