//! Simulated institutions, for the demo and the tests: each behaves like the intake service of
//! INPS, INAIL or a Camera di commercio would.
//!
//! - verifies every ModI header of a filing and refuses a bad one with 401;
//! - deduplicates by `Idempotency-Key`: the same key and body get the first answer again, the
//!   same key with another body 422, a concurrent duplicate 409;
//! - assigns protocol numbers as a register does: progressive, 7 digits, restarting each year,
//!   with the register's code (`INPS-AOO1-2026-0000001`);
//! - calls the portal back, signed, with "taken in charge" and then the outcome;
//! - can be slow, fail a share of requests, be "down", and reject filings by field rules;
//! - records every filing it processed, so tests can count them (`GET /_sim/filings`);
//! - shows and takes its behaviour while it runs (`GET` and `PUT /_sim/behaviour`).

mod delegations;
mod inps_xml;
mod intake;

use intake::{filing_state, get_behaviour, list_delegations, list_received, receive_filing, set_behaviour};
mod interfaces;
pub mod pdnd;
mod rules;
mod serve;

pub(crate) use serve::{serve, server_tls};

pub use interfaces::Interface;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use rules::{inail_rules, inps_rules, registry_rules, Check, Rule};

use delivery::client::FilingEnvelope;
use delivery::modi::{Signer, Verifier};
use domain::authorisation::{Grant, Role};
use domain::{Clock, Randomness};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// How the simulated institution behaves; can be changed while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    /// The filing intake answers 503 (the authorisation service has its own switch).
    pub down: bool,
    /// Share of filings answered 503 (0 to 1).
    pub failure_rate: f64,
    /// Wait this long before answering a filing.
    pub delay_ms: u64,
    /// Give the protocol number in the answer instead of only in the callback.
    pub protocol_in_answer: bool,
    /// Call the portal back ("taken in charge", then the outcome).
    pub callbacks: bool,
    pub callback_delay_ms: u64,
    /// Reject on receipt (422) when a rule fails.
    pub rules: Vec<Rule>,
    /// Who may file online here, for which businesses: codice fiscale → grants. Anyone else
    /// may file for no business.
    pub authorisations: BTreeMap<String, Vec<Grant>>,
    /// The authorisation service answers 503.
    pub authorisations_down: bool,
    /// NONBLOCK_PULL_REST: status requests answered "in lavorazione" before the outcome.
    pub pending_polls: u32,
    /// Behind PDND: vouchers (by `jti`) refused from now on, as if revoked.
    pub revoked_vouchers: Vec<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            down: false,
            failure_rate: 0.0,
            delay_ms: 0,
            protocol_in_answer: false,
            callbacks: true,
            callback_delay_ms: 200,
            rules: Vec::new(),
            authorisations: BTreeMap::new(),
            authorisations_down: false,
            pending_polls: 2,
            revoked_vouchers: Vec::new(),
        }
    }
}

/// Grants `tax_code` the right to file for `businesses` as `role` (a helper for set-ups).
pub fn grant(authorisations: &mut BTreeMap<String, Vec<Grant>>, tax_code: &str, businesses: &[&str], role: Role) {
    authorisations
        .entry(tax_code.to_string())
        .or_default()
        .extend(businesses.iter().map(|b| Grant { business: (*b).to_string(), role }));
}

/// What one simulated institution needs.
pub struct SimSettings {
    pub institution: String,
    /// Code of the protocol register, e.g. `INPS-AOO1`.
    pub register: String,
    /// The portal's identity, to verify its ModI signatures.
    pub portal_id: String,
    pub portal_cert_pem: String,
    /// Trust for the portal's server certificate, for callbacks.
    pub portal_ca_pem: String,
    /// The institution's own key and certificate: TLS server and ModI signatures.
    pub cert_pem: String,
    pub key_pem: String,
    pub behaviour: Behaviour,
    /// The interface it speaks.
    pub interface: Interface,
    /// Where it keeps its ledger (what it processed, its register, its answers), so that a
    /// restarted simulator still knows; `None` keeps it in memory only.
    pub ledger_path: Option<PathBuf>,
    /// Behind PDND: the certificate PDND signs vouchers with. Filings and status requests must
    /// then carry a voucher for this institution (as `Authorization`) with the ModI integrity
    /// and audit headers; authorisation look-ups and delegation notices stay ModI-signed.
    pub pdnd_cert_pem: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Randomness>,
}

impl std::fmt::Debug for SimSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSettings").field("institution", &self.institution).finish_non_exhaustive()
    }
}

/// A filing the institution processed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub filing_id: String,
    /// Who sent it, and for whom (from the filing, checked against the ModI tracking token).
    pub declarant: String,
    pub on_behalf_of: Option<String>,
    pub filing_kind: String,
    pub reference: String,
    pub protocol_number: Option<String>,
    pub payload: Value,
    /// Its outcome (NONBLOCK_PULL_REST institutions decide after taking the filing).
    #[serde(default = "accepted_by_default")]
    pub accepted: bool,
    /// The rules it broke, `{path, message, published}`.
    #[serde(default)]
    pub reasons: Vec<Value>,
    /// Status requests about it so far.
    #[serde(default)]
    pub polls: u32,
}

impl Received {
    fn of(envelope: &FilingEnvelope, protocol_number: Option<String>, broken: Vec<Value>) -> Self {
        Self {
            filing_id: envelope.filing_id.clone(),
            declarant: envelope.declarant.clone(),
            on_behalf_of: envelope.on_behalf_of.clone(),
            filing_kind: envelope.filing_kind.clone(),
            reference: envelope.reference.clone(),
            protocol_number,
            payload: envelope.payload.clone(),
            accepted: broken.is_empty(),
            reasons: broken,
            polls: 0,
        }
    }
}

fn accepted_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Intake {
    /// Being processed by another request.
    InFlight { digest: String },
    Done {
        digest: String,
        status: u16,
        body: Value,
        #[serde(default)]
        location: Option<String>,
    },
}

/// A protocol register ("registro di protocollo"): numbers are progressive, at least seven
/// digits, and start again from 1 each year (DPR 445/2000 art. 57).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Register {
    year: i32,
    last: u64,
}

impl Register {
    fn next(&mut self, code: &str, year: i32) -> String {
        if self.year != year {
            self.year = year;
            self.last = 0;
        }
        self.last += 1;
        format!("{code}-{year}-{:07}", self.last)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    by_key: HashMap<String, Intake>,
    processed: Vec<Received>,
    /// Filings refused on receipt without being taken (a 4xx with the rules they broke).
    #[serde(default)]
    refused: Vec<Received>,
    register: Register,
    /// Sub-delegations registered here, by the portal's id.
    delegations: std::collections::BTreeMap<String, RegisteredDelegation>,
}

/// A sub-delegation as the institution keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredDelegation {
    pub reference: String,
    pub grantor: String,
    pub delegate: String,
    pub businesses: Vec<String>,
    pub revoked: bool,
}

struct Sim {
    settings: SimSettings,
    behaviour: Mutex<Behaviour>,
    ledger: Mutex<Ledger>,
    verifier: Verifier,
    voucher_check: Option<pdnd::VoucherCheck>,
    signer: Signer,
    callback_client: reqwest::Client,
}

/// A running simulated institution.
#[derive(Clone)]
pub struct SimHandle {
    pub addr: SocketAddr,
    sim: Arc<Sim>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Every filing processed (answered 2xx), in order.
    pub fn received(&self) -> Vec<Received> {
        self.sim.ledger.lock().map(|l| l.processed.clone()).unwrap_or_default()
    }

    /// Every filing refused on receipt, without a protocol number, in order.
    pub fn refused(&self) -> Vec<Received> {
        self.sim.ledger.lock().map(|l| l.refused.clone()).unwrap_or_default()
    }

    /// How many times a filing id was processed (1 at most, by idempotency).
    pub fn count_of(&self, filing_prefix: &str) -> usize {
        self.received().iter().filter(|r| r.filing_id.starts_with(filing_prefix)).count()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        if let Ok(mut b) = self.sim.behaviour.lock() {
            *b = behaviour;
        }
    }

    pub fn behaviour(&self) -> Behaviour {
        self.sim.behaviour.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator setup: {0}")]
    Setup(String),
}

fn problem(status: StatusCode, title: &str, errors: Value) -> Response {
    let body =
        json!({ "type": "about:blank", "title": title, "status": status.as_u16(), "detail": title, "errors": errors });
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/problem+json"));
    r
}

impl Sim {
    /// Writes the ledger to its file (answers still in flight are left out: a retry after a
    /// restart is processed afresh, as it was never answered).
    fn persist(&self, ledger: &Ledger) {
        let Some(path) = &self.settings.ledger_path else { return };
        let kept = Ledger {
            by_key: ledger
                .by_key
                .iter()
                .filter(|(_, i)| matches!(i, Intake::Done { .. }))
                .map(|(k, i)| (k.clone(), i.clone()))
                .collect(),
            processed: ledger.processed.clone(),
            refused: ledger.refused.clone(),
            register: Register { year: ledger.register.year, last: ledger.register.last },
            delegations: ledger.delegations.clone(),
        };
        let Ok(text) = serde_json::to_vec(&kept) else { return };
        let temporary = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path)) {
            tracing::error!(institution = %self.settings.institution, error = %e, "cannot write the ledger");
        }
    }

    /// A status request refused: the service is down, or the ModI signature does not hold.
    fn refuse_read(&self, headers: &HeaderMap) -> Option<Response> {
        if self.behaviour.lock().map(|b| b.down).unwrap_or(false) {
            return Some(problem(StatusCode::SERVICE_UNAVAILABLE, "Servizio non disponibile", json!([])));
        }
        self.authenticate(headers, b"").err().map(|e| problem(StatusCode::UNAUTHORIZED, &e, json!([])))
    }

    /// Who a filing or status request comes from: the ModI headers, or behind PDND the
    /// voucher and the ModI integrity and audit headers. The error is the 401's title.
    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> Result<delivery::modi::Verified, String> {
        match &self.voucher_check {
            None => self.verifier.verify(headers, body).map_err(|e| format!("ModI: {e}")),
            Some(check) => {
                let revoked = self.behaviour.lock().map(|b| b.revoked_vouchers.clone()).unwrap_or_default();
                check.check(headers, &revoked).map_err(|e| format!("PDND: {e}"))?;
                self.verifier.verify_integrity(headers, body).map_err(|e| format!("ModI: {e}"))
            }
        }
    }

    fn chance(&self) -> f64 {
        let mut b = [0u8; 4];
        match self.settings.random.fill(&mut b) {
            Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
            Err(_) => 1.0,
        }
    }

    fn next_protocol(&self, ledger: &mut Ledger) -> String {
        ledger.register.next(&self.settings.register, domain::italian_date(self.settings.clock.now()).year())
    }

    async fn callback(self: Arc<Self>, envelope: FilingEnvelope, protocol: String, accepted: bool) {
        let delay = Duration::from_millis(self.behaviour.lock().map(|b| b.callback_delay_ms).unwrap_or(200));
        let events = [
            json!({ "message_id": format!("{}:taken:{}", self.settings.institution, envelope.filing_id),
                    "filing_id": envelope.filing_id, "event": "taken_in_charge", "protocol_number": protocol }),
            json!({ "message_id": format!("{}:outcome:{}", self.settings.institution, envelope.filing_id),
                    "filing_id": envelope.filing_id, "event": "outcome", "protocol_number": protocol,
                    "accepted": accepted, "reasons": [], "fields": [] }),
        ];
        for event in events {
            tokio::time::sleep(delay).await;
            let body = event.to_string().into_bytes();
            self.post_signed(&envelope.callback_url, &envelope.declarant, body, "application/json").await;
        }
    }

    /// Posts a signed callback to the portal, trying up to five times; a 4xx is an answer too.
    async fn post_signed(&self, url: &str, declarant: &str, body: Vec<u8>, content_type: &str) {
        for attempt in 1..=5u32 {
            let Ok(headers) = self.signer.sign(&self.settings.portal_id, &body, content_type, declarant) else {
                return;
            };
            let mut request = self.callback_client.post(url).body(body.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() || r.status().is_client_error() => {
                    tracing::debug!(institution = %self.settings.institution, status = %r.status(), "callback delivered");
                    return;
                }
                other => {
                    tracing::debug!(institution = %self.settings.institution, attempt, ?other, "callback failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
            }
        }
    }
}

/// Starts a simulated institution on `listener` (HTTPS with `cert_pem`/`key_pem`).
pub async fn start(listener: TcpListener, settings: SimSettings) -> Result<SimHandle, SimError> {
    let setup = |e: &dyn std::fmt::Display| SimError::Setup(format!("{}: {e}", settings.institution));
    let verifier = Verifier::new(&settings.institution, &settings.portal_cert_pem, settings.clock.clone())
        .map_err(|e| setup(&e))?;
    let signer = Signer::new(
        &settings.institution,
        &settings.key_pem,
        &settings.cert_pem,
        settings.clock.clone(),
        settings.random.clone(),
    )
    .map_err(|e| setup(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut settings.portal_ca_pem.as_bytes()).filter_map(Result::ok) {
        roots.add(c).map_err(|e| setup(&e))?;
    }
    let client_tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let callback_client = reqwest::Client::builder()
        .use_preconfigured_tls(client_tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| setup(&e))?;
    let server_tls = server_tls(&settings.cert_pem, &settings.key_pem).map_err(|e| setup(&e))?;
    let addr = listener.local_addr().map_err(|e| setup(&e))?;
    let ledger = match &settings.ledger_path {
        Some(path) if path.exists() => {
            let text = std::fs::read(path).map_err(|e| setup(&e))?;
            serde_json::from_slice::<Ledger>(&text).map_err(|e| setup(&format!("ledger {}: {e}", path.display())))?
        }
        _ => Ledger::default(),
    };
    let interface = settings.interface;
    let voucher_check = match &settings.pdnd_cert_pem {
        Some(pem) => {
            Some(pdnd::VoucherCheck::new(pem, &settings.institution, settings.clock.clone()).map_err(|e| setup(&e))?)
        }
        None => None,
    };
    let sim = Arc::new(Sim {
        voucher_check,
        behaviour: Mutex::new(settings.behaviour.clone()),
        ledger: Mutex::new(ledger),
        verifier,
        signer,
        callback_client,
        settings,
    });
    let app = Router::new()
        .route(interface.intake_path(), post(receive_filing))
        .route("/filings/{id}", get(filing_state))
        .route("/denunce/{n}/stato", get(interfaces::pull_status))
        .route("/denunce/{n}/esito", get(interfaces::pull_outcome))
        .route("/domande/{id}/esito", get(inps_xml::outcome))
        .route("/authorisations/{tax_code}", get(delegations::authorisations))
        .route("/delegations", post(delegations::register_delegation))
        .route("/delegations/{id}", axum::routing::delete(delegations::revoke_delegation))
        .route("/abilitazioni/{tax_code}", get(delegations::authorisations))
        .route("/deleghe", post(delegations::register_delegation))
        .route("/deleghe/{id}", axum::routing::delete(delegations::revoke_delegation))
        .route("/_sim/delegations", get(list_delegations))
        .route("/_sim/filings", get(list_received))
        .route("/_sim/behaviour", get(get_behaviour).put(set_behaviour))
        .layer(axum::middleware::from_fn_with_state(sim.clone(), serve::sign_answers))
        .with_state(sim.clone());
    serve(listener, app, server_tls);
    Ok(SimHandle { addr, sim })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_numbers_are_progressive_and_restart_each_year() {
        let mut register = Register::default();
        assert_eq!(register.next("INPS-AOO1", 2026), "INPS-AOO1-2026-0000001");
        assert_eq!(register.next("INPS-AOO1", 2026), "INPS-AOO1-2026-0000002");
        assert_eq!(register.next("INPS-AOO1", 2027), "INPS-AOO1-2027-0000001");
    }
}
