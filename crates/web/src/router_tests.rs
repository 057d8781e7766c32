//! The HTTP mapping in process: the whole router, driven with `tower::ServiceExt::oneshot`, a
//! peer identity inserted as the TLS listener would, a real SQLite store in a temporary
//! folder and the repository's catalog. The end-to-end tests over TLS are in
//! `crates/sportello/tests/it`; these look at what each answer says, with snapshots of the
//! problem+json answers.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use domain::catalog::{Catalog, Source, SourceKind};
use serde_json::Value;
use tower::ServiceExt;

use crate::extract::PeerIdentity;
use crate::{AppState, SystemClock, SystemRandomness};

const HOLDER: &str = "RSSMRA45C12F205C";

fn catalog() -> Catalog {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
    let read = |path: &Path, kind| Source {
        path: path.display().to_string(),
        kind,
        text: std::fs::read_to_string(path).expect("catalog file"),
    };
    let mut sources = vec![read(&dir.join("dictionary.toml"), SourceKind::Dictionary)];
    for (folder, kind) in [("institutions", SourceKind::Institution), ("services", SourceKind::Services)] {
        let mut files: Vec<_> =
            std::fs::read_dir(dir.join(folder)).expect("folder").flatten().map(|e| e.path()).collect();
        files.sort();
        sources.extend(files.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")).map(|p| read(p, kind)));
    }
    Catalog::from_sources(&sources).expect("the shipped catalog")
}

/// The router over a fresh store; the folder lives as long as the router is used.
async fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp");
    let store = storage::sqlite::SqliteStore::open(&dir.path().join("router.db")).await.expect("store");
    storage::PracticeStore::migrate(&store).await.expect("migrate");
    let core = app::Core {
        store: Arc::new(store),
        catalog: Arc::new(catalog()),
        clock: Arc::new(SystemClock),
        random: Arc::new(SystemRandomness::default()),
        authorisations: None,
        delegation_policy: Arc::new(app::DelegationPolicy { max_days: 365, trusted: Default::default() }),
    };
    let state = AppState {
        core,
        translations: Arc::new(crate::i18n::Translations::load().expect("translations")),
        callbacks: Arc::new(Default::default()),
        sessions: Default::default(),
        demo_cards: None,
        admission: Default::default(),
    };
    (crate::router(state), dir)
}

fn card() -> PeerIdentity {
    PeerIdentity::Card(identity::Holder {
        tax_code: domain::identifiers::CodiceFiscale::parse(HOLDER).expect("valid"),
        given_name: Some("Mario".into()),
        surname: Some("Rossi".into()),
        fingerprint: "ab".repeat(32),
    })
}

/// Sends `request` as `peer` and returns the status, the content type and the body as JSON
/// (`Null` when it is not JSON).
async fn send(
    router: &axum::Router,
    mut request: Request<Body>,
    peer: Option<PeerIdentity>,
) -> (StatusCode, String, Value) {
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, content_type, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json")
}

#[tokio::test]
async fn the_catalog_is_public_and_practices_need_a_card() {
    let (router, _dir) = app().await;
    let (status, content_type, body) = send(&router, get("/api/v1/services"), Some(card())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let ids: Vec<&str> =
        body["services"].as_array().expect("services").iter().filter_map(|s| s["id"].as_str()).collect();
    assert!(ids.contains(&"avvio-ditta-individuale"), "{ids:?}");
    let (status, _, _) = send(&router, get("/api/v1/services"), Some(PeerIdentity::Anonymous)).await;
    assert_eq!(status, StatusCode::OK, "the catalog is public");
    let (status, content_type, problem) = send(&router, get("/api/v1/practices"), Some(PeerIdentity::Anonymous)).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::UNAUTHORIZED, "application/problem+json"));
    insta::assert_snapshot!("unauthenticated_it", pretty(&problem));
}

#[tokio::test]
async fn bad_bodies_are_named_and_change_nothing() {
    let (router, _dir) = app().await;
    let (status, _, problem) = send(&router, post_json("/api/v1/practices", "{\"service\": "), Some(card())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "/problems/malformed-json");
    let mut wrong_type = post_json("/api/v1/practices", "{}");
    wrong_type.headers_mut().insert(header::CONTENT_TYPE, "text/plain".parse().expect("value"));
    let (status, _, problem) = send(&router, wrong_type, Some(card())).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("/problems/unsupported-media-type"))
    );
    let mut english = post_json("/api/v1/practices", r#"{"service": "nessun-servizio", "data": {}}"#);
    english.headers_mut().insert(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9".parse().expect("value"));
    let (status, _, problem) = send(&router, english, Some(card())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_snapshot!("unknown_service_en", pretty(&problem));
    let (_, _, listed) = send(&router, get("/api/v1/practices"), Some(card())).await;
    assert_eq!(listed["practices"], Value::Array(vec![]), "nothing was created: {listed}");
}

#[tokio::test]
async fn another_holder_s_practice_is_not_found_and_says_nothing_of_it() {
    let (router, _dir) = app().await;
    let (status, _, created) = send(
        &router,
        post_json("/api/v1/practices", r#"{"service": "avvio-ditta-individuale", "data": {"business.name": "Bar"}}"#),
        Some(card()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let other = PeerIdentity::Card(identity::Holder {
        tax_code: domain::identifiers::CodiceFiscale::parse("BNCSFN85T58G702W").expect("valid"),
        given_name: None,
        surname: None,
        fingerprint: "cd".repeat(32),
    });
    let (status, _, problem) = send(&router, get(&format!("/api/v1/practices/{id}")), Some(other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!pretty(&problem).contains(&id), "the answer does not echo the id: {problem}");
    insta::assert_snapshot!("not_found_it", pretty(&problem));
    let (status, _, _) = send(&router, get("/api/v1/nessuna-rotta"), Some(card())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The paths the router serves (as its `Debug` lists them) that belong to the API: under
/// `/api/v1`, the institutions' callbacks and the session.
fn served_api_paths(router: &axum::Router) -> std::collections::BTreeSet<String> {
    let shown = format!("{router:?}");
    shown
        .split('"')
        .filter(|token| ["/api/v1/", "/institutions/", "/session"].iter().any(|p| token.starts_with(p)))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_document_describes_every_route_of_the_api_and_each_is_served() {
    let (router, _dir) = app().await;
    let document = serde_json::to_value(crate::routes::document()).expect("json");
    let paths = document["paths"].as_object().expect("paths");
    // Every API route of the router is in the document (the document itself aside).
    let served = served_api_paths(&router);
    assert!(served.len() > 15, "the router's paths are readable: {served:?}");
    for path in &served {
        assert!(path == "/api/v1/openapi.json" || paths.contains_key(path), "{path} is served but not documented");
    }
    // Every documented operation reaches a route (not the fallback), whatever it answers.
    let marked = router.route_layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let mut response = next.run(request).await;
            response.headers_mut().insert("x-routed", axum::http::HeaderValue::from_static("1"));
            response
        },
    ));
    let mut operations = 0;
    for (path, item) in paths {
        let uri = path.replace(['{', '}'], "");
        for method in item.as_object().expect("path item").keys() {
            let method = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let mut request = Request::builder().method(method.clone()).uri(&uri).body(Body::empty()).expect("request");
            request.extensions_mut().insert(card());
            let response = marked.clone().oneshot(request).await.expect("infallible");
            assert!(response.headers().contains_key("x-routed"), "{method} {path} is documented but not served");
            operations += 1;
        }
    }
    assert!(operations >= served.len(), "{operations} operations");
}

/// A page as the card holder sees it, with what changes from run to run (ids, tokens, dates,
/// times, reference numbers) replaced by placeholders.
async fn page(router: &axum::Router, uri: &str) -> (StatusCode, String) {
    let mut request = get(uri);
    request.extensions_mut().insert(card());
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22).await.expect("body");
    let html = String::from_utf8_lossy(&body).to_string();
    let redactions = [
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[id]"),
        (r#"name="_csrf" value="[^"]*""#, r#"name="_csrf" value="[csrf]""#),
        (r"\b\d{2}/\d{2}/\d{4}\b", "[date]"),
        (r"\b\d{4}-\d{2}-\d{2}\b", "[date]"),
        (r"\b\d{2}:\d{2}\b", "[time]"),
    ];
    let html = redactions.iter().fold(html, |html, (pattern, with)| {
        regex::Regex::new(pattern).expect("pattern").replace_all(&html, *with).into_owned()
    });
    (status, html)
}

/// The main pages, as a holder with a draft sees them: every change of their markup shows in
/// review.
#[tokio::test]
async fn the_main_pages_as_snapshots() {
    let (router, _dir) = app().await;
    let body = r#"{"service": "avvio-ditta-individuale", "data": {"business.name": "Bar Centrale", "business.tax_code": "RSSMRA45C12F205C"}}"#;
    let (status, _, created) = send(&router, post_json("/api/v1/practices", body), Some(card())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    for (name, uri) in [
        ("page_home", "/".to_string()),
        ("page_services", "/servizi".to_string()),
        ("page_service", "/servizi/avvio-ditta-individuale".to_string()),
        ("page_practices", "/pratiche?stato=draft".to_string()),
        ("page_tasks", format!("/pratiche/{id}/compila")),
        ("page_section", format!("/pratiche/{id}/sezioni/seat")),
        ("page_review", format!("/pratiche/{id}/riepilogo")),
        ("page_search", "/ricerca?testo=centrale".to_string()),
        ("page_delegations", "/deleghe".to_string()),
    ] {
        let (status, html) = page(&router, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {html}");
        assert!(html.starts_with("<!DOCTYPE html>"), "{uri}");
        insta::assert_snapshot!(name, html);
    }
}
