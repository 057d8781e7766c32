//! Wiring: reads the catalog files, opens the store, builds the TLS listener and starts the
//! portal. The `sportello` binary is a thin command-line layer over this library, and the
//! integration tests start the portal through the very same [`start`].

#[cfg(feature = "demo")]
pub mod bench;
pub mod catalog_files;
pub mod channels_check;
#[cfg(feature = "demo")]
pub mod demo;
pub mod receipt;
#[cfg(feature = "demo")]
pub mod simulated;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use delivery::channels::Channels;
use delivery::modi::Verifier;
use delivery::worker::{Worker, WorkerSettings};
use domain::catalog::Catalog;
use domain::{Clock, Randomness};
use identity::CardProfile;
use std::collections::BTreeMap;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use web::tls::{PeerCheck, TlsMaterial};
use web::{AppState, SystemClock, SystemRandomness};

/// How long an institution's answer about a person's authorisations is reused.
pub const AUTHORISATION_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `sqlite://PATH`, a file path, or `postgres://…`.
    pub database_url: String,
    pub catalog_dir: PathBuf,
    pub tls: TlsMaterial,
    pub card_profile: CardProfile,
    /// TLS here (`Direct`), or plain HTTP behind a trusted TLS-terminating proxy.
    pub front: web::tls::Front,
    /// Browser session timeouts.
    pub sessions: web::sessions::SessionPolicy,
    /// The demo's card chooser (`sportello demo` only; it answers loopback clients only).
    pub demo_cards: Option<Vec<web::demo_cards::DemoCard>>,
    /// How to reach the institutions. Without it nothing is delivered (deliveries stay queued)
    /// and no callback is accepted. An empty `callback_base_url` means this portal's own
    /// address.
    pub channels: Option<Channels>,
    /// Run the delivery worker inside this process.
    pub run_worker: bool,
    /// Where the certifiers' CRLs are: file paths or `http(s)://` URLs, PEM or DER. Read at
    /// start and every `crl_refresh`, replacing `tls.crl_pems`; new connections use the new
    /// lists at once, without a restart.
    pub crl_sources: Vec<String>,
    pub crl_refresh: std::time::Duration,
    pub worker: WorkerSettings,
    /// Longest validity of a sub-delegation, in days.
    pub delegation_max_days: i64,
    /// The time every part of the portal reads (sessions, certificates, deadlines, ModI
    /// tokens); tests move it instead of sleeping.
    pub clock: Arc<dyn Clock>,
    /// Where identifiers, tokens and jitter come from.
    pub random: Arc<dyn domain::Randomness>,
    /// Requests worked on at once; past it the portal answers 503 with Retry-After.
    pub max_in_flight: usize,
    /// A store opened already, used instead of opening `database_url` (the benchmark keeps a
    /// handle on it to read its commit counter).
    pub store: Option<Arc<dyn storage::Store>>,
}

impl Settings {
    /// Settings with every option left out: TLS in this process, the default card profile and
    /// session timeouts, no institutions (nothing is delivered), no CRL sources, no demo
    /// chooser. Callers set what they need with struct update syntax.
    pub fn new(listen: SocketAddr, database_url: String, catalog_dir: PathBuf, tls: TlsMaterial) -> Self {
        Self {
            listen,
            database_url,
            catalog_dir,
            tls,
            card_profile: CardProfile::default(),
            front: web::tls::Front::Direct,
            sessions: web::sessions::SessionPolicy::default(),
            demo_cards: None,
            channels: None,
            run_worker: false,
            worker: WorkerSettings::default(),
            crl_sources: Vec::new(),
            crl_refresh: std::time::Duration::from_secs(300),
            delegation_max_days: 365,
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandomness::default()),
            max_in_flight: web::admission::DEFAULT_IN_FLIGHT,
            store: None,
        }
    }
}

/// A portal that is running.
#[derive(Debug)]
pub struct Running {
    /// Where it listens (the real port when 0 was asked).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    worker_stop: watch::Sender<bool>,
    worker: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting connections and waits for open requests to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.worker_stop.send(true);
        let _ = (&mut self.task).await;
        if let Some(worker) = self.worker.take() {
            let _ = worker.await;
        }
    }

    /// Waits until the portal stops by itself (it does not, unless the task fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Loads the catalog, opens and migrates the store, binds the listener and starts serving
/// (and delivering, with `run_worker`).
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let catalog = Arc::new(catalog_files::load_dir(&settings.catalog_dir)?);
    let store = match &settings.store {
        Some(store) => store.clone(),
        None => storage::connect(&settings.database_url)
            .await
            .with_context(|| format!("opening the database {}", redact(&settings.database_url)))?,
    };
    store.migrate().await.context("migrating the database")?;
    let clock = settings.clock.clone();
    let mut material = settings.tls.clone();
    if !settings.crl_sources.is_empty() {
        material.crl_pems = fetch_crls(&settings.crl_sources).await?;
    }
    let tls = web::tls::TlsHandle::new(web::tls::server_config(&material, clock.now()).context("setting up TLS")?);
    let random = settings.random.clone();
    let listener =
        TcpListener::bind(settings.listen).await.with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;

    let channels = settings.channels.clone().map(|mut c| {
        if c.callback_base_url.is_empty() {
            c.callback_base_url = format!("https://{addr}");
        }
        c
    });
    let callbacks = callback_verifiers(channels.as_ref(), &catalog, &clock)?;
    let (worker_stop, worker_stopped) = watch::channel(false);
    if !settings.crl_sources.is_empty() {
        tokio::spawn(reload_crls(
            tls.clone(),
            material,
            settings.crl_sources.clone(),
            settings.crl_refresh,
            clock.clone(),
            worker_stopped.clone(),
        ));
    }
    let (worker, authorisations) =
        start_worker(settings, channels.as_ref(), &store, &catalog, (&clock, &random), worker_stopped)?;
    let demo_cards = settings.demo_cards.clone().map(|cards| {
        Arc::new(web::demo_cards::DemoCards { cards, tls: tls.clone(), profile: settings.card_profile.clone() })
    });
    let delegation_policy = app::DelegationPolicy {
        max_days: settings.delegation_max_days,
        trusted: channels.as_ref().map(trusted_institutions).unwrap_or_default(),
    };
    let core = app::Core {
        store,
        catalog,
        clock: clock.clone(),
        random,
        authorisations,
        delegation_policy: Arc::new(delegation_policy),
    };
    let state = AppState {
        core,
        demo_cards,
        sessions: settings.sessions,
        translations: Arc::new(web::i18n::Translations::load().map_err(anyhow::Error::msg)?),
        callbacks: Arc::new(callbacks),
        admission: web::admission::Admission::new(settings.max_in_flight),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let peer_check = PeerCheck { profile: settings.card_profile.clone(), clock };
    let app = web::router(state);
    let task = tokio::spawn(web::tls::serve(listener, tls, settings.front.clone(), peer_check, app, async {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, "portal listening");
    Ok(Running { addr, stop: Some(stop), task, worker_stop, worker })
}

/// The verifiers of each institution's callbacks, by institution.
fn callback_verifiers(
    channels: Option<&Channels>,
    catalog: &Catalog,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<BTreeMap<String, web::institutions::CallbackChannel>> {
    let mut callbacks = BTreeMap::new();
    let Some(channels) = channels else {
        tracing::warn!("no delivery channels configured: filings stay queued and callbacks are refused");
        return Ok(callbacks);
    };
    channels.require(catalog.institutions.iter().map(|i| i.id.as_str()))?;
    for (id, channel) in &channels.institutions {
        let verifier = Verifier::new(&channels.portal_id, &channel.certificate_pem, clock.clone())
            .with_context(|| format!("certificate of institution {id}"))?
            // Every process on the database must refuse a replay: the store remembers the tokens.
            .replays_checked_by_caller();
        callbacks.insert(id.clone(), web::institutions::CallbackChannel { verifier, profile: channel.profile.clone() });
    }
    Ok(callbacks)
}

/// The institutions whose notices let collaborators act on the portal's own record.
fn trusted_institutions(channels: &Channels) -> std::collections::BTreeSet<String> {
    channels.institutions.values().filter(|ch| ch.trusts_portal_record()).map(|ch| ch.institution.clone()).collect()
}

type Authorisations = Option<Arc<delivery::authorisation::AuthorisationService>>;

/// The worker in this process (when it runs here), and the authorisation look-ups: sharing
/// the worker's clients and PDND vouchers when it runs here, with clients of their own when not.
fn start_worker(
    settings: &Settings,
    channels: Option<&Channels>,
    store: &Arc<dyn storage::Store>,
    catalog: &Arc<Catalog>,
    (clock, random): (&Arc<dyn Clock>, &Arc<dyn Randomness>),
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Option<tokio::task::JoinHandle<()>>, Authorisations)> {
    let Some(channels) = channels else { return Ok((None, None)) };
    if !settings.run_worker {
        let service = delivery::authorisation::AuthorisationService::new(
            channels,
            clock.clone(),
            random.clone(),
            AUTHORISATION_TTL,
        )?;
        return Ok((None, Some(Arc::new(service))));
    }
    let queue: Arc<dyn storage::DeliveryQueue> = store.clone();
    let delegations: Arc<dyn storage::DelegationStore> = store.clone();
    let feed: Arc<dyn storage::ChangeFeed> = store.clone();
    let worker = Worker::new(queue, catalog.clone(), channels, clock.clone(), random.clone(), settings.worker.clone())?
        .with_delegations(delegations)
        .with_changes(feed);
    let (clients, signer) = worker.clients();
    let service =
        delivery::authorisation::AuthorisationService::with_clients(clients, signer, clock.clone(), AUTHORISATION_TTL);
    Ok((Some(tokio::spawn(worker.run(stopped))), Some(Arc::new(service))))
}

/// Reads each CRL source (a file or an `http(s)://` URL); DER lists are turned into PEM.
async fn fetch_crls(sources: &[String]) -> anyhow::Result<Vec<String>> {
    use base64::Engine;
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let mut pems = Vec::with_capacity(sources.len());
    for source in sources {
        let bytes = if source.starts_with("https://") || source.starts_with("http://") {
            client.get(source).send().await?.error_for_status()?.bytes().await?.to_vec()
        } else {
            std::fs::read(source).with_context(|| format!("reading {source}"))?
        };
        let pem = if bytes.starts_with(b"-----BEGIN") {
            String::from_utf8(bytes).with_context(|| format!("{source}: not text"))?
        } else {
            let body = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
            format!("-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n", lines.join("\n"))
        };
        pems.push(pem);
    }
    Ok(pems)
}

/// Re-reads the CRLs every `every` and swaps the TLS configuration; a source that cannot be
/// read or parsed keeps the previous configuration (and is logged), so a bad download never
/// opens the door to revoked cards.
async fn reload_crls(
    tls: Arc<web::tls::TlsHandle>,
    mut material: TlsMaterial,
    sources: Vec<String>,
    every: std::time::Duration,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let rebuilt = match fetch_crls(&sources).await {
            Ok(pems) => {
                material.crl_pems = pems;
                web::tls::server_config(&material, clock.now()).map_err(anyhow::Error::from)
            }
            Err(e) => Err(e),
        };
        match rebuilt {
            Ok(config) => {
                tls.replace(config);
                tracing::info!(sources = sources.len(), "CRLs reloaded");
            }
            Err(e) => tracing::error!(error = %e, "CRL reload failed; keeping the previous lists"),
        }
    }
}

/// Runs only the delivery worker (`sportello worker`), until `shutdown` completes.
pub async fn run_worker(
    database_url: &str,
    catalog_dir: &std::path::Path,
    channels: &Channels,
    settings: WorkerSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let catalog = Arc::new(catalog_files::load_dir(catalog_dir)?);
    let store = storage::connect(database_url).await?;
    store.migrate().await?;
    let queue: Arc<dyn storage::DeliveryQueue> = store.clone();
    let delegations: Arc<dyn storage::DelegationStore> = store.clone();
    let feed: Arc<dyn storage::ChangeFeed> = store;
    let worker =
        Worker::new(queue, catalog, channels, Arc::new(SystemClock), Arc::new(SystemRandomness::default()), settings)?
            .with_delegations(delegations)
            .with_changes(feed);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(worker.run(stopped));
    shutdown.await;
    let _ = stop.send(true);
    let _ = task.await;
    Ok(())
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sportello-data/sportello.db"), "sportello-data/sportello.db");
    }
}
