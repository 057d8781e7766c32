//! Starting simulated institutions together with the delivery channels that reach them: the
//! demo, the benchmark and the tests all set up the same three this way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use delivery::channels::{Channel, Channels};
use domain::delivery::RetryPolicy;
use simulator::{Behaviour, SimHandle, SimSettings};

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
    let mut institutions = BTreeMap::new();
    for spec in specs {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let handle = simulator::start(
            listener,
            SimSettings {
                institution: spec.id.clone(),
                register: spec.register,
                portal_id: portal.portal_id.clone(),
                portal_cert_pem: portal.cert_pem.clone(),
                portal_ca_pem: portal.ca_pem.clone(),
                cert_pem: spec.cert_pem.clone(),
                key_pem: spec.key_pem,
                behaviour: spec.behaviour,
                clock: clock.clone(),
                random: random.clone(),
            },
        )
        .await?;
        institutions.insert(
            spec.id.clone(),
            Arc::new(Channel {
                institution: spec.id.clone(),
                base_url: format!("https://{}", handle.addr),
                audience: spec.id.clone(),
                ca_pem: portal.ca_pem.clone(),
                certificate_pem: spec.cert_pem,
                timeout: tuning.timeout,
                retry: tuning.retry,
                poll_interval: tuning.poll_interval,
                trusts_portal_delegations: false,
            }),
        );
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
