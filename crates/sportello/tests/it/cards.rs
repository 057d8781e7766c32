//! The smart-card matrix against the real TLS listener: which certificates get in, which are
//! stopped at the handshake, which are told why at the application, and CRL freshness and
//! reload.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use identity::test_pki::{CardSpec, Issued, TestPki};
use reqwest::StatusCode;
use serde_json::Value;
use sportello::{Running, Settings};
use time::OffsetDateTime;
use web::tls::TlsMaterial;

use crate::api::{client_with, HOLDER};

struct Portal {
    running: Running,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

async fn portal(pki: &TestPki, crl_pems: Vec<String>, crl_sources: Vec<String>, grace: Duration) -> Portal {
    portal_with(pki, crl_pems, crl_sources, grace, web::tls::Front::Direct).await
}

async fn portal_with(
    pki: &TestPki,
    crl_pems: Vec<String>,
    crl_sources: Vec<String>,
    grace: Duration,
    front: web::tls::Front,
) -> Portal {
    let dir = tempfile::tempdir().expect("temp");
    let server = pki.server(&["localhost", "127.0.0.1"]).expect("server");
    let tls = TlsMaterial {
        crl_pems,
        crl_grace: grace,
        ..TlsMaterial::new(server.cert_pem, server.key_pem, pki.ca.cert_pem.clone())
    };
    let database_url = format!("sqlite://{}", dir.path().join("cards.db").display());
    let catalog = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
    let settings = Settings {
        front,
        crl_sources,
        crl_refresh: Duration::from_millis(100),
        ..Settings::new("127.0.0.1:0".parse().expect("addr"), database_url, catalog, tls)
    };
    Portal { running: sportello::start(&settings).await.expect("start"), ca_pem: pki.ca.cert_pem.clone(), _dir: dir }
}

impl Portal {
    /// `Ok(status, body)` when the request got an answer, `Err` when TLS refused the card.
    async fn me(&self, card: Option<&Issued>) -> Result<(StatusCode, Value), reqwest::Error> {
        let url = format!("https://localhost:{}/api/v1/me", self.running.addr.port());
        let r = client_with(&self.ca_pem, card).get(url).send().await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

fn spec(change: impl FnOnce(&mut CardSpec)) -> CardSpec {
    let mut s = CardSpec::new("Mario", "Rossi", HOLDER);
    change(&mut s);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_matrix() {
    let pki = TestPki::generate("Matrix CA").expect("pki");
    let now = OffsetDateTime::now_utc();
    let valid = pki.card(&spec(|_| {})).expect("card");
    let revoked = pki.card(&spec(|_| {})).expect("card");
    let crl = pki
        .crl(std::slice::from_ref(&revoked.serial), now - time::Duration::minutes(1), now + time::Duration::days(1))
        .expect("crl");
    let p = portal(&pki, vec![crl], Vec::new(), Duration::from_secs(3600)).await;

    let (status, me) = p.me(Some(&valid)).await.expect("valid card answered");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["tax_code"], HOLDER);

    // Stopped at the handshake: never reach the application.
    let rogue = TestPki::generate("Rogue CA").expect("pki");
    let handshake_refused: [(&str, Issued); 5] = [
        (
            "expired",
            pki.card(&spec(|s| {
                s.not_before = now - time::Duration::days(400);
                s.not_after = now - time::Duration::days(1);
            }))
            .expect("card"),
        ),
        (
            "not yet valid",
            pki.card(&spec(|s| {
                s.not_before = now + time::Duration::days(1);
                s.not_after = now + time::Duration::days(400);
            }))
            .expect("card"),
        ),
        ("untrusted issuer", rogue.card(&spec(|_| {})).expect("card")),
        ("revoked", revoked),
        ("wrong extended key usage", pki.card(&spec(|s| s.client_auth = false)).expect("card")),
    ];
    for (what, card) in &handshake_refused {
        assert!(p.me(Some(card)).await.is_err(), "{what}: the handshake must fail");
    }

    // Trusted and valid, but not an acceptable smart card: told why, in a problem answer.
    let app_refused: [(&str, Issued, &str); 3] = [
        (
            "missing CNS policy",
            pki.card(&spec(|s| s.policies = vec!["1.2.3.4".into()])).expect("card"),
            "no-accepted-policy",
        ),
        (
            "malformed codice fiscale",
            pki.card(&spec(|s| s.tax_code = "FOXDRA26C24H872A".into())).expect("card"),
            "invalid-tax-code",
        ),
        (
            "missing codice fiscale",
            pki.card(&spec(|s| s.common_name = Some("Mario Rossi".into()))).expect("card"),
            "no-tax-code",
        ),
    ];
    for (what, card, _code) in &app_refused {
        let (status, problem) = p.me(Some(card)).await.expect("answered");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(problem["type"], "/problems/card-refused", "{what}");
    }
    let (status, problem) = p.me(None).await.expect("answered");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["type"], "/problems/unauthenticated");
    p.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_is_tolerated_for_its_grace_period_then_fails_closed() {
    let pki = TestPki::generate("Stale CA").expect("pki");
    let card = pki.card(&spec(|_| {})).expect("card");
    let now = OffsetDateTime::now_utc();
    // nextUpdate two hours ago.
    let stale = pki.crl(&[], now - time::Duration::days(1), now - time::Duration::hours(2)).expect("crl");

    let within_grace = portal(&pki, vec![stale.clone()], Vec::new(), Duration::from_secs(3 * 3600)).await;
    assert_eq!(within_grace.me(Some(&card)).await.expect("answered").0, StatusCode::OK);
    within_grace.running.stop().await;

    let beyond_grace = portal(&pki, vec![stale], Vec::new(), Duration::from_secs(3600)).await;
    assert!(beyond_grace.me(Some(&card)).await.is_err(), "fail closed");
    beyond_grace.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crls_are_reloaded_without_a_restart() {
    let pki = TestPki::generate("Reload CA").expect("pki");
    let card = pki.card(&spec(|_| {})).expect("card");
    let now = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().expect("temp");
    let crl_file = dir.path().join("crl.pem");
    let day = time::Duration::days(1);
    std::fs::write(&crl_file, pki.crl(&[], now - day, now + day).expect("crl")).expect("write");
    let p = portal(&pki, Vec::new(), vec![crl_file.display().to_string()], Duration::from_secs(3600)).await;
    assert_eq!(p.me(Some(&card)).await.expect("answered").0, StatusCode::OK);

    // The certifier revokes the card; the new list is picked up by the running portal.
    std::fs::write(&crl_file, pki.crl(std::slice::from_ref(&card.serial), now, now + day).expect("crl"))
        .expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.me(Some(&card)).await.is_ok() {
        assert!(Instant::now() < deadline, "the revoked card is still accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken download keeps the previous (revoking) list.
    std::fs::write(&crl_file, "not a CRL").expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(p.me(Some(&card)).await.is_err(), "still refused");
    p.running.stop().await;
}

/// nginx's `$ssl_client_escaped_cert`: the PEM, URL-encoded.
fn escaped(pem: &str) -> String {
    pem.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_only_the_proxy_may_vouch_for_a_card() {
    let pki = TestPki::generate("Proxy CA").expect("pki");
    let now = OffsetDateTime::now_utc();
    let valid = pki.card(&spec(|_| {})).expect("card");
    let revoked = pki.card(&spec(|_| {})).expect("card");
    let crl = pki
        .crl(std::slice::from_ref(&revoked.serial), now - time::Duration::minutes(1), now + time::Duration::days(1))
        .expect("crl");
    let proxy: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
    let p = portal_with(
        &pki,
        vec![crl],
        Vec::new(),
        Duration::from_secs(3600),
        web::tls::Front::BehindProxy { trusted: vec![proxy] },
    )
    .await;
    let url = format!("http://127.0.0.1:{}/api/v1/me", p.running.addr.port());
    let from_proxy = reqwest::Client::builder().local_address(proxy).build().expect("client");

    let r = from_proxy.get(&url).header("x-ssl-client-cert", escaped(&valid.cert_pem)).send().await.expect("answered");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["tax_code"], HOLDER);
    // The forwarded certificate goes through the same checks: a revoked card is refused.
    let r =
        from_proxy.get(&url).header("x-ssl-client-cert", escaped(&revoked.cert_pem)).send().await.expect("answered");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = from_proxy.get(&url).send().await.expect("answered");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no certificate forwarded");
    // Anyone else cannot even connect.
    let elsewhere = reqwest::Client::new();
    assert!(elsewhere.get(&url).header("x-ssl-client-cert", escaped(&valid.cert_pem)).send().await.is_err());
    p.running.stop().await;

    // On a direct TLS listener, a client sending the proxy's header is refused.
    let direct = portal(&pki, Vec::new(), Vec::new(), Duration::from_secs(3600)).await;
    let r = client_with(&direct.ca_pem, Some(&valid))
        .get(format!("https://localhost:{}/api/v1/me", direct.running.addr.port()))
        .header("x-ssl-client-cert", escaped(&revoked.cert_pem))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.expect("json")["type"], "/problems/forged-proxy-header");
    direct.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crls_are_fetched_from_a_url_in_der() {
    let pki = TestPki::generate("URL CA").expect("pki");
    let card = pki.card(&spec(|_| {})).expect("card");
    let now = OffsetDateTime::now_utc();
    let pem = pki.crl(std::slice::from_ref(&card.serial), now, now + time::Duration::days(1)).expect("crl");
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    // The certifier's distribution point, on loopback, serving DER as CAs do.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let url = format!("http://{}/ca.crl", listener.local_addr().expect("addr"));
    let body = der.contents.clone();
    let app = axum::Router::new().route("/ca.crl", axum::routing::get(move || async move { body.clone() }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let p = portal(&pki, Vec::new(), vec![url], Duration::from_secs(3600)).await;
    assert!(p.me(Some(&card)).await.is_err(), "revoked by the downloaded list");
    p.running.stop().await;
}
