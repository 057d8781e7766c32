//! One call to an institution, and what its answer means.
//!
//! | answer | meaning |
//! |---|---|
//! | 2xx | delivered; a protocol number in the body is taken at once |
//! | 422 with `errors` | rejected on receipt, with the payload paths at fault |
//! | 408, 409, 425, 429, 5xx, no connection, timeout | transient: retried (same idempotency key) |
//! | other 4xx | failed: retrying the same request cannot help |

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use domain::authorisation::Grant;

use crate::channels::Channel;
use crate::modi::Signer;

/// What the portal sends to an institution for one filing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilingEnvelope {
    /// `<practice id>.<institution>.<revision>`; also the request's `Idempotency-Key`.
    pub filing_id: String,
    /// The portal's reference number, for information.
    pub reference: String,
    pub practice_id: String,
    pub filing_kind: String,
    /// Codice fiscale of the person who sent the practice.
    pub declarant: String,
    /// The person responsible, when the declarant acted for him or her under a
    /// sub-delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Where the institution posts "taken in charge" and the outcome.
    pub callback_url: String,
    pub payload: Value,
}

/// Builds and parses filing ids.
pub fn filing_id(practice_id: &str, institution: &str, revision: u32) -> String {
    format!("{practice_id}.{institution}.{revision}")
}

/// `(practice id, institution, revision)` of a filing id.
pub fn parse_filing_id(id: &str) -> Option<(String, String, u32)> {
    let mut parts = id.splitn(3, '.');
    let practice = parts.next()?.to_string();
    let institution = parts.next()?.to_string();
    let revision = parts.next()?.parse().ok()?;
    Some((practice, institution, revision))
}

/// The institution's answer to a filing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    Sent { protocol_number: Option<String> },
    Rejected { reasons: Vec<String>, paths: Vec<String> },
    Permanent(String),
    Transient(String),
}

#[derive(Debug, Deserialize)]
struct Accepted {
    protocol_number: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProblemError {
    path: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<ProblemError>,
}

/// What an institution says when asked about a filing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResult {
    /// Nothing new.
    Pending,
    TakenInCharge {
        protocol_number: String,
    },
    Outcome {
        accepted: bool,
        protocol_number: Option<String>,
        reasons: Vec<String>,
        paths: Vec<String>,
    },
    /// The question could not be answered now (network, 5xx, unknown filing); ask again later.
    Unanswered(String),
}

#[derive(Debug, Deserialize)]
struct FilingState {
    protocol_number: Option<String>,
    /// `accepted`, `rejected`, or absent while pending.
    outcome: Option<String>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
}

/// An HTTPS client for one institution.
#[derive(Debug, Clone)]
pub struct InstitutionClient {
    channel: Arc<Channel>,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("client for {institution}: {message}")]
pub struct ClientError {
    institution: String,
    message: String,
}

fn certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes()).filter_map(Result::ok).collect()
}

impl InstitutionClient {
    /// TLS trusting only the channel's CA, presenting the portal's certificate.
    pub fn new(channel: Arc<Channel>, portal_cert_pem: &str, portal_key_pem: &str) -> Result<Self, ClientError> {
        let err = |message: String| ClientError { institution: channel.institution.clone(), message };
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs(&channel.ca_pem) {
            roots.add(ca).map_err(|e| err(e.to_string()))?;
        }
        let key = rustls_pemfile::private_key(&mut portal_key_pem.as_bytes())
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err("no portal key".into()))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs(portal_cert_pem), key)
            .map_err(|e| err(e.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(channel.timeout)
            .connect_timeout(channel.timeout)
            .build()
            .map_err(|e| err(e.to_string()))?;
        Ok(Self { channel, http })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Asks the institution for which businesses `tax_code` may file there
    /// (`GET /authorisations/{tax_code}`, signed).
    pub async fn authorisations(&self, tax_code: &str, signer: &Signer) -> Result<Vec<Grant>, String> {
        let headers =
            signer.sign(&self.channel.audience, b"", "application/json", tax_code).map_err(|e| e.to_string())?;
        let mut request = self.http.get(format!("{}/authorisations/{tax_code}", self.channel.base_url));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach the institution: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        #[derive(Deserialize)]
        struct Answer {
            businesses: Vec<Grant>,
        }
        response.json::<Answer>().await.map(|a| a.businesses).map_err(|e| format!("unreadable answer: {e}"))
    }

    /// Asks the institution where a filing stands (`GET /filings/{id}`, signed).
    pub async fn poll(&self, filing_id: &str, declarant: &str, signer: &Signer) -> PollResult {
        let headers = match signer.sign(&self.channel.audience, b"", "application/json", declarant) {
            Ok(h) => h,
            Err(e) => return PollResult::Unanswered(format!("cannot sign the request: {e}")),
        };
        let mut request = self.http.get(format!("{}/filings/{filing_id}", self.channel.base_url));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return PollResult::Unanswered(format!("cannot reach the institution: {e}")),
        };
        if !response.status().is_success() {
            return PollResult::Unanswered(format!("HTTP {}", response.status()));
        }
        let Ok(state) = response.json::<FilingState>().await else {
            return PollResult::Unanswered("unreadable answer".into());
        };
        let protocol_number = state.protocol_number.filter(|p| !p.trim().is_empty());
        match (state.outcome.as_deref(), protocol_number) {
            (Some(outcome @ ("accepted" | "rejected")), protocol_number) => PollResult::Outcome {
                accepted: outcome == "accepted",
                protocol_number,
                reasons: state.reasons,
                paths: state.fields,
            },
            (_, Some(protocol_number)) => PollResult::TakenInCharge { protocol_number },
            _ => PollResult::Pending,
        }
    }

    /// Sends a filing, signed, with its idempotency key.
    pub async fn send(&self, envelope: &FilingEnvelope, signer: &Signer) -> SendResult {
        let body = match serde_json::to_vec(envelope) {
            Ok(b) => b,
            Err(e) => return SendResult::Permanent(format!("cannot encode the filing: {e}")),
        };
        let on_behalf_of = envelope.on_behalf_of.as_deref();
        let headers = match signer.sign_on_behalf(
            &self.channel.audience,
            &body,
            "application/json",
            &envelope.declarant,
            on_behalf_of,
        ) {
            Ok(h) => h,
            Err(e) => return SendResult::Transient(format!("cannot sign the request: {e}")),
        };
        let mut request = self
            .http
            .post(format!("{}/filings", self.channel.base_url))
            .header("idempotency-key", &envelope.filing_id)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return SendResult::Transient("no answer in time: outcome unknown, will retry with the same key".into())
            }
            Err(e) => return SendResult::Transient(format!("cannot reach the institution: {e}")),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            let protocol_number = serde_json::from_str::<Accepted>(&text).ok().and_then(|a| a.protocol_number);
            return SendResult::Sent { protocol_number: protocol_number.filter(|p| !p.trim().is_empty()) };
        }
        let problem = serde_json::from_str::<Problem>(&text).ok();
        let summary = problem
            .as_ref()
            .and_then(|p| p.detail.clone().or_else(|| p.title.clone()))
            .unwrap_or_else(|| text.chars().take(200).collect());
        match status.as_u16() {
            422 if problem.as_ref().is_some_and(|p| !p.errors.is_empty()) => {
                let errors = problem.map(|p| p.errors).unwrap_or_default();
                SendResult::Rejected {
                    reasons: errors.iter().filter_map(|e| e.message.clone()).collect(),
                    paths: errors.iter().filter_map(|e| e.path.clone()).collect(),
                }
            }
            408 | 409 | 425 | 429 | 500..=599 => SendResult::Transient(format!("HTTP {status}: {summary}")),
            _ => SendResult::Permanent(format!("HTTP {status}: {summary}")),
        }
    }
}

/// What the portal tells an institution about a sub-delegation (`POST /delegations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationMessage {
    pub delegation_id: String,
    /// Who grants and stays responsible.
    pub grantor: String,
    /// The collaborator.
    pub delegate: String,
    pub businesses: Vec<String>,
    pub services: Vec<String>,
    /// RFC 3339.
    pub valid_from: String,
    pub valid_until: String,
}

/// An institution's answer about a delegation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegationResult {
    Active {
        reference: String,
    },
    Refused {
        reason: String,
    },
    Revoked,
    /// No answer that settles it (network, 5xx, a malformed answer): try again later.
    Retry(String),
}

#[derive(Debug, Deserialize)]
struct DelegationAnswer {
    status: String,
    reference: Option<String>,
    reason: Option<String>,
}

impl InstitutionClient {
    /// Registers a sub-delegation at the institution (signed by the portal for the grantor).
    pub async fn grant_delegation(&self, message: &DelegationMessage, signer: &Signer) -> DelegationResult {
        let body = match serde_json::to_vec(message) {
            Ok(b) => b,
            Err(e) => return DelegationResult::Retry(format!("cannot encode: {e}")),
        };
        let headers = match signer.sign(&self.channel.audience, &body, "application/json", &message.grantor) {
            Ok(h) => h,
            Err(e) => return DelegationResult::Retry(format!("cannot sign the request: {e}")),
        };
        let mut request = self
            .http
            .post(format!("{}/delegations", self.channel.base_url))
            .header("idempotency-key", &message.delegation_id)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return DelegationResult::Retry(format!("cannot reach the institution: {e}")),
        };
        let status = response.status();
        let answer = response.json::<DelegationAnswer>().await.ok();
        match (status.as_u16(), answer) {
            (200..=299, Some(a)) if a.status == "active" => match a.reference.filter(|r| !r.trim().is_empty()) {
                Some(reference) => DelegationResult::Active { reference },
                None => DelegationResult::Retry("active without a reference".into()),
            },
            (400..=499, Some(a)) if a.status == "refused" => {
                DelegationResult::Refused { reason: a.reason.unwrap_or_else(|| format!("HTTP {status}")) }
            }
            (code, _) => DelegationResult::Retry(format!("HTTP {code}")),
        }
    }

    /// Tells the institution a sub-delegation ended (revoked, renounced).
    pub async fn revoke_delegation(&self, delegation_id: &str, grantor: &str, signer: &Signer) -> DelegationResult {
        let headers = match signer.sign(&self.channel.audience, b"", "application/json", grantor) {
            Ok(h) => h,
            Err(e) => return DelegationResult::Retry(format!("cannot sign the request: {e}")),
        };
        let mut request = self.http.delete(format!("{}/delegations/{delegation_id}", self.channel.base_url));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            // Gone already, or never registered: either way it no longer holds there.
            Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => DelegationResult::Revoked,
            Ok(r) => DelegationResult::Retry(format!("HTTP {}", r.status())),
            Err(e) => DelegationResult::Retry(format!("cannot reach the institution: {e}")),
        }
    }
}
