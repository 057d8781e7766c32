//! The references `sportello bench` measures in the same run as the portal, so that its
//! figures read as ratios to what this machine can do at all:
//! - the **signature bound**: ModI exchanges per second (the three ES256 tokens of one request
//!   signed by one side and verified by the other, with the real [`delivery::modi`] code);
//! - a **minimal HTTPS handler** with client certificates, served by the same TLS stack
//!   ([`web::tls::serve`], the same card checks) and loaded like the desk's pages;
//! - a **load** of one page: a fixed number of connections, each sending its share of a fixed
//!   number of requests one after another (bounded, loopback only), timed one by one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use delivery::modi::{Signer, Verifier};
use identity::test_pki::TestPki;
use web::tls::{Front, PeerCheck, TlsMaterial};

/// Throughput and latencies of one page under load.
#[derive(Debug, Clone)]
pub struct Load {
    pub requests: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>8.0} requests/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            self.per_second,
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0
        )
    }
}

/// ModI exchanges (sign the three headers of a request, verify them) per second, over
/// `rounds` exchanges.
pub fn modi_exchanges_per_second(pki: &TestPki, rounds: usize) -> anyhow::Result<f64> {
    let sender = pki.client("bench-signer")?;
    let clock: Arc<dyn domain::Clock> = Arc::new(web::SystemClock);
    let random: Arc<dyn domain::Randomness> = Arc::new(web::SystemRandomness::default());
    let signer = Signer::new("bench-signer", &sender.key_pem, &sender.cert_pem, clock.clone(), random)?;
    let verifier =
        Verifier::new("https://institution.example/filings", &sender.cert_pem, clock)?.replays_checked_by_caller();
    let body = br#"{"filing":"iscrizione","data":{"business.name":"Bar Roma"}}"#;
    let started = Instant::now();
    for _ in 0..rounds.max(1) {
        let headers =
            signer.sign("https://institution.example/filings", body, "application/json", "DPRTNT80A01H501Y")?;
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(name, value.parse().context("header value")?);
        }
        verifier.verify(&map, body)?;
    }
    Ok(rounds.max(1) as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON))
}

/// A running minimal HTTPS handler; stops when dropped.
#[derive(Debug)]
pub struct Minimal {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Minimal {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a handler answering `ok` on loopback behind the portal's own TLS set-up (client
/// certificate required and checked against the card profile).
pub async fn start_minimal(material: &TlsMaterial) -> anyhow::Result<Minimal> {
    let clock: Arc<dyn domain::Clock> = Arc::new(web::SystemClock);
    let tls = web::tls::TlsHandle::new(web::tls::server_config(material, clock.now())?);
    let listener = tokio::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let peer_check = PeerCheck { profile: identity::card::CardProfile::default(), clock };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(web::tls::serve(listener, tls, Front::Direct, peer_check, app, async {
        let _ = stopped.await;
    }));
    Ok(Minimal { port, stop: Some(stop) })
}

/// Sends `requests` GETs of `url` over `connections` connections at once (each connection
/// sends its share one after another) with `cookie`; every answer must be a success.
pub async fn load(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    connections: usize,
    requests: usize,
) -> anyhow::Result<Load> {
    let connections = connections.clamp(1, 256);
    let per_connection = requests.div_ceil(connections).max(1);
    let (url, cookie): (Arc<str>, Option<Arc<str>>) = (url.into(), cookie.map(Into::into));
    let once = move |client: reqwest::Client| timed_get(client, url.clone(), cookie.clone());
    // One round first, so that every connection is open before the clock starts.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..connections {
        warm.spawn(once(client.clone()));
    }
    while let Some(done) = warm.join_next().await {
        done??;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, once) = (client.clone(), once.clone());
        tasks.spawn(async move {
            let mut times = Vec::with_capacity(per_connection);
            for _ in 0..per_connection {
                times.push(once(client.clone()).await?);
            }
            anyhow::Ok(times)
        });
    }
    let mut times = Vec::with_capacity(per_connection * connections);
    while let Some(done) = tasks.join_next().await {
        times.extend(done??);
    }
    let elapsed = started.elapsed();
    times.sort();
    Ok(Load {
        requests: times.len(),
        per_second: times.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: super::percentile(&times, 50.0),
        p99: super::percentile(&times, 99.0),
    })
}

/// One GET, timed; anything but a success is an error.
async fn timed_get(client: reqwest::Client, url: Arc<str>, cookie: Option<Arc<str>>) -> anyhow::Result<Duration> {
    let mut request = client.get(&*url).header("accept", "text/html");
    if let Some(cookie) = &cookie {
        request = request.header("cookie", &**cookie);
    }
    let started = Instant::now();
    let answer = request.send().await?;
    anyhow::ensure!(answer.status().is_success(), "{url} answered {}", answer.status());
    answer.bytes().await?;
    Ok(started.elapsed())
}

/// The session cookie the portal sets for `card` on its first desk page (the list), as a
/// browser keeps it: without it every desk page would open a new session (a login).
pub async fn session_cookie(
    ca_pem: &str,
    card: &identity::test_pki::Issued,
    base: &str,
) -> anyhow::Result<Option<String>> {
    let client = super::https_client_with(ca_pem, Some(card), false)?;
    let answer = client.get(format!("{base}/pratiche")).header("accept", "text/html").send().await?;
    let cookies: Vec<String> = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect();
    anyhow::ensure!(answer.status().is_success(), "the practices list answered {}", answer.status());
    Ok((!cookies.is_empty()).then(|| cookies.join("; ")))
}

/// The desk's pages under load for `holder` (home, list, the practice `id`, a search by its
/// `reference`), with its session cookie as a browser keeps it, then the minimal handler on
/// the same TLS material the same way: the figures and their reference.
pub async fn desk_pages_beside_minimal(
    pki: &TestPki,
    holder: &identity::test_pki::Issued,
    tls: &TlsMaterial,
    base: &str,
    practice: (&str, &str),
) -> anyhow::Result<(Vec<(String, Load)>, Load)> {
    let (connections, requests) = (super::PAGE_CONNECTIONS, super::PAGE_REQUESTS);
    let client = super::https_client(&pki.ca.cert_pem, Some(holder))?;
    let cookie = session_cookie(&pki.ca.cert_pem, holder, base).await?;
    let (id, reference) = practice;
    let pages = [
        ("home (/)".to_string(), format!("{base}/")),
        ("practices list (/pratiche)".to_string(), format!("{base}/pratiche")),
        ("practice page (/pratiche/{id})".to_string(), format!("{base}/pratiche/{id}")),
        ("search by reference (/ricerca)".to_string(), format!("{base}/ricerca?testo={reference}")),
    ];
    let mut loads = Vec::with_capacity(pages.len());
    for (name, url) in pages {
        loads.push((name, load(&client, &url, cookie.as_deref(), connections, requests).await?));
    }
    let minimal_server = start_minimal(tls).await?;
    let minimal_url = format!("https://localhost:{}/", minimal_server.port);
    let minimal = load(&client, &minimal_url, None, connections, requests).await?;
    Ok((loads, minimal))
}
