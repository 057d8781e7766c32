//! Starting simulated institutions together with the delivery channels that reach them: the
//! demo, the benchmark and the tests all set up the same three this way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use delivery::channels::{Channel, Channels};
use delivery::profile::Profile;
use domain::delivery::RetryPolicy;
use simulator::{Behaviour, Interface, SimHandle, SimSettings};

/// One simulated institution to start.
#[derive(Debug, Clone)]
pub struct SimSpec {
    /// Its id in the catalog.
    pub id: String,
    /// Code of its protocol register.
    pub register: String,
    /// Its TLS server and signing certificate and key.
    pub cert_pem: String,
    pub key_pem: String,
    pub behaviour: Behaviour,
    /// The interface it speaks, and the channel profile (a file) the portal speaks it with;
    /// `None`: Sportello's own.
    pub interface: Interface,
    pub profile: Option<PathBuf>,
    /// Where it keeps its ledger across restarts.
    pub ledger_path: Option<PathBuf>,
    /// For a second simulator of an institution: the office it stands for (it gets its own
    /// address on the first one's channel, and the handle `<id>/<office>`).
    pub office: Option<String>,
}

impl SimSpec {
    /// A simulator speaking Sportello's own interface.
    pub fn sportello(id: &str, register: &str, cert_pem: &str, key_pem: &str, behaviour: Behaviour) -> Self {
        Self {
            id: id.to_string(),
            register: register.to_string(),
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            behaviour,
            interface: Interface::Sportello,
            profile: None,
            ledger_path: None,
            office: None,
        }
    }

    /// The same simulator speaking the interface of its kind that the demo gives it (see
    /// [`demo_interface`]), with the profile from `channels_dir`.
    pub fn with_own_interface(mut self, channels_dir: &std::path::Path) -> Self {
        if let Some((interface, profile)) = demo_interface(&self.id) {
            self.interface = interface;
            self.profile = Some(channels_dir.join(profile));
        }
        self
    }
}

/// The interfaces of the demo's institutions: the Registro Imprese over BLOCK_REST, INAIL over
/// NONBLOCK_PULL_REST, INPS over NONBLOCK_PUSH_REST with XML to its published schema.
pub fn demo_interface(institution: &str) -> Option<(Interface, &'static str)> {
    match institution {
        "registro-imprese" => Some((Interface::RegistroBlock, "registro-imprese.toml")),
        "inail" => Some((Interface::InailPull, "inail.toml")),
        "inps" => Some((Interface::InpsXml, "inps.toml")),
        _ => None,
    }
}

/// The folder of the repository's channel profiles, for the tests and the benchmark.
pub fn repository_channels_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../channels")
}

/// The portal's side of the connection.
#[derive(Debug, Clone)]
pub struct PortalIdentity {
    pub portal_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA of the portal's server certificate (and of the institutions' certificates).
    pub ca_pem: String,
}

/// How the portal's channels to the simulators behave.
#[derive(Debug, Clone, Copy)]
pub struct ChannelTuning {
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub poll_interval: Option<Duration>,
    /// Overrides of the profiles' deadlines.
    pub callback_deadline: Option<Duration>,
    pub no_news_after: Option<Duration>,
    /// How long the simulated PDND's vouchers last (default 600 s, as PDND's example).
    pub voucher_lifetime: Option<Duration>,
}

impl ChannelTuning {
    pub fn new(timeout: Duration, retry: RetryPolicy) -> Self {
        Self {
            timeout,
            retry,
            poll_interval: None,
            callback_deadline: None,
            no_news_after: None,
            voucher_lifetime: None,
        }
    }
}

/// The simulated PDND's client registration of the portal.
pub const PDND_CLIENT_ID: &str = "sportello-demo-client";
pub const PDND_KID: &str = "sportello-pdnd-key-1";
pub const PDND_ASSERTION_AUDIENCE: &str = "auth.pdnd-sim.local/client-assertion";

/// The purpose the portal uses an institution's e-service for, on the simulated PDND.
pub fn pdnd_purpose(institution: &str) -> String {
    format!("purpose-{institution}-filings")
}

/// A simulated PDND for the institutions whose profile asks for vouchers, with a CA and a
/// certificate of its own; the portal is registered with its own key as the client, with one
/// active purpose per such institution. Returns its certificate (the institutions check
/// vouchers with it) and the channel settings.
async fn start_pdnd(
    institutions: &[String],
    portal: &PortalIdentity,
    tuning: ChannelTuning,
    clock: Arc<dyn domain::Clock>,
    random: Arc<dyn domain::Randomness>,
) -> anyhow::Result<(String, delivery::pdnd::PdndSettings)> {
    let (ca_pem, server) = {
        let pki = identity::test_pki::TestPki::generate("Simulated PDND CA")?;
        let server = pki.server(&["127.0.0.1"])?;
        (pki.ca.cert_pem.clone(), server)
    };
    let purposes = institutions.iter().map(|id| (pdnd_purpose(id), id.clone())).collect();
    let client = simulator::pdnd::PdndClient { cert_pem: portal.cert_pem.clone(), kid: PDND_KID.into(), purposes };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let handle = simulator::pdnd::start(
        listener,
        simulator::pdnd::PdndSettings {
            cert_pem: server.cert_pem.clone(),
            key_pem: server.key_pem.clone(),
            assertion_audience: PDND_ASSERTION_AUDIENCE.into(),
            clients: BTreeMap::from([(PDND_CLIENT_ID.to_string(), client)]),
            voucher_lifetime: tuning.voucher_lifetime.unwrap_or(Duration::from_secs(600)),
            clock,
            random,
        },
    )
    .await?;
    let settings = delivery::pdnd::PdndSettings {
        token_url: handle.token_url(),
        client_id: PDND_CLIENT_ID.into(),
        purpose_id: String::new(),
        assertion_audience: PDND_ASSERTION_AUDIENCE.into(),
        kid: PDND_KID.into(),
        ca_pem,
        key_pem: portal.key_pem.clone(),
    };
    Ok((server.cert_pem, settings))
}

fn load_profile(path: &std::path::Path) -> anyhow::Result<Profile> {
    let profile = Profile::load(path)
        .map_err(|errors| anyhow::anyhow!(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")));
    profile.with_context(|| format!("profile {}", path.display()))
}

/// Starts the simulator of one spec on a port of its own.
async fn start_one(
    spec: &SimSpec,
    portal: &PortalIdentity,
    pdnd_cert_pem: Option<String>,
    (clock, random): (&Arc<dyn domain::Clock>, &Arc<dyn domain::Randomness>),
) -> anyhow::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let settings = SimSettings {
        institution: spec.id.clone(),
        register: spec.register.clone(),
        portal_id: portal.portal_id.clone(),
        portal_cert_pem: portal.cert_pem.clone(),
        portal_ca_pem: portal.ca_pem.clone(),
        cert_pem: spec.cert_pem.clone(),
        key_pem: spec.key_pem.clone(),
        behaviour: spec.behaviour.clone(),
        interface: spec.interface,
        ledger_path: spec.ledger_path.clone(),
        pdnd_cert_pem,
        clock: clock.clone(),
        random: random.clone(),
    };
    Ok(simulator::start(listener, settings).await?)
}

/// Starts each simulator on a loopback port; returns them with the channels reaching them (the
/// callback address left empty: `start` fills in the portal's own).
pub async fn start_simulated(
    specs: Vec<SimSpec>,
    portal: &PortalIdentity,
    tuning: ChannelTuning,
    clock: Arc<dyn domain::Clock>,
    random: Arc<dyn domain::Randomness>,
) -> anyhow::Result<(BTreeMap<String, SimHandle>, Channels)> {
    let mut handles = BTreeMap::new();
    let mut institutions: BTreeMap<String, Arc<Channel>> = BTreeMap::new();
    let mut profiles = BTreeMap::new();
    for spec in &specs {
        if let Some(path) = &spec.profile {
            profiles.insert(spec.id.clone(), Arc::new(load_profile(path)?));
        }
    }
    let behind_pdnd: Vec<String> = profiles
        .iter()
        .filter(|(_, p)| p.security == delivery::profile::Security::Pdnd)
        .map(|(id, _)| id.clone())
        .collect();
    let pdnd = match behind_pdnd.is_empty() {
        true => None,
        false => Some(start_pdnd(&behind_pdnd, portal, tuning, clock.clone(), random.clone()).await?),
    };
    for spec in specs {
        let pdnd_cert_pem = pdnd.as_ref().filter(|_| behind_pdnd.contains(&spec.id)).map(|(cert, _)| cert.clone());
        let handle = start_one(&spec, portal, pdnd_cert_pem, (&clock, &random)).await?;
        let address = format!("https://{}", handle.addr);
        // Another office of an institution already started: its own address on that channel.
        if let (Some(office), Some(channel)) = (&spec.office, institutions.get_mut(&spec.id)) {
            let endpoint = delivery::channels::OfficeEndpoint {
                base_url: address,
                ca_pem: portal.ca_pem.clone(),
                certificate_pem: spec.cert_pem.clone(),
                audience: spec.id.clone(),
            };
            Arc::make_mut(channel).offices.insert(office.clone(), endpoint);
            handles.insert(format!("{}/{office}", spec.id), handle);
            continue;
        }
        let mut channel = Channel::sportello(&spec.id, &address, &portal.ca_pem, &spec.cert_pem)?;
        if let Some(profile) = profiles.get(&spec.id) {
            channel.profile = profile.clone();
        }
        if let (Some((_, settings)), true) = (&pdnd, behind_pdnd.contains(&spec.id)) {
            channel.pdnd =
                Some(delivery::pdnd::PdndSettings { purpose_id: pdnd_purpose(&spec.id), ..settings.clone() });
        }
        channel.timeout = tuning.timeout;
        channel.retry = tuning.retry;
        channel.poll_interval = tuning.poll_interval;
        channel.callback_deadline = tuning.callback_deadline;
        channel.no_news_after = tuning.no_news_after;
        institutions.insert(spec.id.clone(), Arc::new(channel));
        handles.insert(spec.id, handle);
    }
    let channels = Channels {
        portal_id: portal.portal_id.clone(),
        callback_base_url: String::new(),
        certificate_pem: portal.cert_pem.clone(),
        key_pem: portal.key_pem.clone(),
        institutions,
    };
    Ok((handles, channels))
}
