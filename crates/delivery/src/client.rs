//! One call to an institution, and what its answer means.
//!
//! Filings are written and their answers read by the channel's [`crate::profile::Profile`];
//! with Sportello's own profile:
//!
//! | answer | meaning |
//! |---|---|
//! | 2xx | delivered; a protocol number (and, for BLOCK_REST, an outcome) in the body is taken at once |
//! | 422 with reasons or fields | rejected on receipt, with the institution's names of the fields at fault |
//! | 408, 409, 425, 429, 5xx, no connection, timeout | transient: retried (same idempotency key) |
//! | anything else | failed: retrying the same request cannot help |
//!
//! Authorisation look-ups and delegation notices follow the profile too (see [`services`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channels::Channel;
use crate::evidence::Evidence;
use crate::mapping::{Answer, News};
use crate::modi::Signer;
use crate::pdnd::{VoucherError, VoucherSource};

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
    /// The institution's office competent for the practice, when it routes by territory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office: Option<String>,
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
    /// Taken: what the answer said (a protocol number, for BLOCK_REST the outcome too), and
    /// where to ask for news (NONBLOCK_PULL_REST's `Location`).
    Taken {
        news: News,
        status_url: Option<String>,
    },
    /// Refused on receipt, with the reasons and the institution's names of the fields at fault.
    Rejected {
        reasons: Vec<String>,
        paths: Vec<String>,
        /// The refusal as the institution signed it, when it did.
        evidence: Option<Evidence>,
    },
    Permanent(String),
    Transient(String),
    /// The profile could not make the request (a template, an address): nothing was sent.
    Misconfigured(String),
}

/// Why a filing's request could not be made: nothing left the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsent {
    /// The profile cannot make it (a template, an address): an operator must mend the profile.
    Misconfigured(String),
    /// It may be made later (the signing key, for one).
    Transient(String),
}

impl std::fmt::Display for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsent::Misconfigured(why) | Unsent::Transient(why) => f.write_str(why),
        }
    }
}

/// What an institution says when asked about a filing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResult {
    /// Nothing new: still being processed.
    Pending,
    News(News),
    /// The question could not be answered now (network, 5xx, unknown filing); ask again later.
    Unanswered(String),
}

/// An HTTPS client for one institution.
#[derive(Debug, Clone)]
pub struct InstitutionClient {
    channel: Arc<Channel>,
    http: reqwest::Client,
    /// For an institution behind PDND: where its vouchers come from.
    vouchers: Option<Arc<VoucherSource>>,
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
            // Every request is signed for one use (jti): a 303 is followed by a new request.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(channel.timeout)
            .connect_timeout(channel.timeout)
            .build()
            .map_err(|e| err(e.to_string()))?;
        Ok(Self { channel, http, vouchers: None })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The same client presenting PDND vouchers from `source` (see [`crate::pdnd`]).
    pub fn with_vouchers(mut self, source: Arc<VoucherSource>) -> Self {
        self.vouchers = Some(source);
        self
    }

    /// The voucher to present, if the institution is behind PDND.
    pub(crate) async fn bearer(&self) -> Result<Option<String>, VoucherError> {
        match &self.vouchers {
            Some(source) => source.voucher().await.map(Some),
            None => Ok(None),
        }
    }

    /// Resolves a rendered target under the channel's address; an absolute address must be
    /// the channel's own (a signed request never goes elsewhere).
    pub(crate) fn url_for(&self, target: &str) -> Result<String, String> {
        if target.starts_with('/') {
            return Ok(format!("{}{target}", self.channel.base_url));
        }
        if target.starts_with(&format!("{}/", self.channel.base_url)) {
            return Ok(target.to_string());
        }
        Err(format!("`{target}` is not under the channel's address {}", self.channel.base_url))
    }

    /// A signed request for `rendered`. With a PDND `voucher`, it is the `Authorization` in
    /// place of the ModI authentication token; the integrity and audit headers stay.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        who: (&str, Option<&str>),
        signer: &Signer,
        voucher: Option<&str>,
    ) -> Result<reqwest::RequestBuilder, String> {
        let headers = signer
            .sign_on_behalf(&self.channel.audience, &body, content_type, who.0, who.1)
            .map_err(|e| format!("cannot sign the request: {e}"))?;
        let mut request = self.http.request(method, url).header("content-type", content_type);
        if !body.is_empty() {
            request = request.body(body);
        }
        for (name, value) in headers {
            match (name, voucher) {
                ("authorization", Some(voucher)) => request = request.header(name, format!("Bearer {voucher}")),
                _ => request = request.header(name, value),
            }
        }
        Ok(request)
    }

    /// Asks the institution where a filing stands, with the profile's status request (a 303
    /// is followed once to the result). `context` is the template context of the filing.
    pub async fn poll(&self, context: &Value, declarant: &str, signer: &Signer) -> PollResult {
        let profile = &self.channel.profile;
        let Some(op) = &profile.status else {
            return PollResult::Unanswered("the profile has no status request".into());
        };
        let rendered = match profile.render_status(context) {
            Some(Ok(r)) => r,
            Some(Err(e)) => return PollResult::Unanswered(format!("profile: {e}")),
            None => return PollResult::Unanswered("the profile has no status request".into()),
        };
        let mut url = match self.url_for(&rendered.target) {
            Ok(u) => u,
            Err(e) => return PollResult::Unanswered(e),
        };
        for _hop in 0..2 {
            let voucher = match self.bearer().await {
                Ok(v) => v,
                Err(e) => return PollResult::Unanswered(e.to_string()),
            };
            let request = match self.request(
                rendered.method.clone(),
                &url,
                &rendered.content_type,
                rendered.body.clone(),
                (declarant, None),
                signer,
                voucher.as_deref(),
            ) {
                Ok(r) => r,
                Err(e) => return PollResult::Unanswered(e),
            };
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => return PollResult::Unanswered(format!("cannot reach the institution: {e}")),
            };
            let status = response.status();
            if let (Some(source), Some(voucher), reqwest::StatusCode::UNAUTHORIZED) = (&self.vouchers, &voucher, status)
            {
                source.drop_voucher(voucher);
            }
            if status == reqwest::StatusCode::SEE_OTHER {
                let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
                match location.map(|l| self.url_for(&l)) {
                    Some(Ok(next)) => {
                        url = next;
                        continue;
                    }
                    Some(Err(e)) => return PollResult::Unanswered(e),
                    None => return PollResult::Unanswered("303 without Location".into()),
                }
            }
            if !op.answer.delivered.contains(status.as_u16()) {
                return PollResult::Unanswered(format!("HTTP {status}"));
            }
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            let answer = op.answer.parse(&body);
            if answer == Answer::Unreadable {
                return PollResult::Unanswered("unreadable answer".into());
            }
            let mut news = op.answer.read_answer(&answer);
            news.evidence = Evidence::from_message(&headers, &body);
            if let Some(word) = &news.unknown_outcome {
                tracing::warn!(institution = %self.channel.institution, %word, "an outcome word the profile does not list");
            }
            return if news.accepted.is_none() && news.protocol_number.is_none() {
                PollResult::Pending
            } else {
                PollResult::News(news)
            };
        }
        PollResult::Unanswered("too many redirects".into())
    }

    /// The signed request that sends a filing, as the channel's profile writes it (also what
    /// `sportello channels check --dry-run` prints). `Err` is the result to record instead.
    pub fn submit_request(
        &self,
        envelope: &FilingEnvelope,
        context: &Value,
        reply_to: &str,
        signer: &Signer,
        voucher: Option<&str>,
    ) -> Result<reqwest::Request, Unsent> {
        let rendered = self.channel.profile.render_submit(context).map_err(Unsent::Misconfigured)?;
        let url = self.url_for(&rendered.target).map_err(Unsent::Misconfigured)?;
        let who = (envelope.declarant.as_str(), envelope.on_behalf_of.as_deref());
        let mut request = self
            .request(rendered.method, &url, &rendered.content_type, rendered.body, who, signer, voucher)
            .map_err(Unsent::Transient)?
            .header("idempotency-key", &envelope.filing_id);
        if self.channel.profile.pattern == crate::profile::Pattern::NonblockPushRest {
            request = request.header("x-replyto", reply_to);
        }
        request.build().map_err(|e| Unsent::Misconfigured(format!("the request cannot be made: {e}")))
    }

    /// Sends a filing as the channel's profile writes it, signed, with its idempotency key.
    /// `context` is the template context (see [`crate::profile`]); `reply_to` the address a
    /// NONBLOCK_PUSH_REST institution calls back.
    pub async fn send(
        &self,
        envelope: &FilingEnvelope,
        context: &Value,
        reply_to: &str,
        signer: &Signer,
    ) -> SendResult {
        let profile = &self.channel.profile;
        let mut renewed = false;
        let response = loop {
            let voucher = match self.bearer().await {
                Ok(v) => v,
                Err(VoucherError::Refused(why)) => {
                    return SendResult::Permanent(format!("PDND refused the voucher: {why}"))
                }
                Err(VoucherError::Key(why)) => return SendResult::Misconfigured(format!("PDND client key: {why}")),
                Err(e @ VoucherError::Unavailable(_)) => return SendResult::Transient(e.to_string()),
            };
            let request = match self.submit_request(envelope, context, reply_to, signer, voucher.as_deref()) {
                Ok(r) => r,
                Err(Unsent::Misconfigured(why)) => return SendResult::Misconfigured(why),
                Err(Unsent::Transient(why)) => return SendResult::Transient(why),
            };
            let response = match self.http.execute(request).await {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    return SendResult::Transient(
                        "no answer in time: outcome unknown, will retry with the same key".into(),
                    )
                }
                Err(e) => return SendResult::Transient(format!("cannot reach the institution: {e}")),
            };
            // A voucher refused by the institution (revoked, expired early): asked again once.
            match (&self.vouchers, voucher) {
                (Some(source), Some(voucher)) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    source.drop_voucher(&voucher);
                    if renewed {
                        break response;
                    }
                    renewed = true;
                }
                _ => break response,
            }
        };
        let status = response.status();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        let mut result = read_answer(&profile.submit.answer, status, location, &String::from_utf8_lossy(&body));
        let signed = Evidence::from_message(&headers, &body);
        match &mut result {
            SendResult::Taken { news, .. } => news.evidence = signed,
            SendResult::Rejected { evidence, .. } => *evidence = signed,
            _ => {}
        }
        result
    }
}

/// What the answer to a filing means, by the profile's answer map.
fn read_answer(
    map: &crate::mapping::AnswerMap,
    status: reqwest::StatusCode,
    location: Option<String>,
    text: &str,
) -> SendResult {
    let answer = map.parse(text.as_bytes());
    let code = status.as_u16();
    if map.rejected.contains(code) {
        let news = map.read_answer(&answer);
        if !news.reasons.is_empty() || !news.paths.is_empty() {
            return SendResult::Rejected { reasons: news.reasons, paths: news.paths, evidence: None };
        }
    }
    if map.delivered.contains(code) {
        return SendResult::Taken { news: map.read_answer(&answer), status_url: location };
    }
    // A problem+json's own words, when the institution gives them; else the start of the body.
    let problem = serde_json::from_str::<Value>(text).ok();
    let summary = ["/detail", "/title", "/message"]
        .iter()
        .find_map(|p| problem.as_ref()?.pointer(p).and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect());
    if map.retry.contains(code) {
        SendResult::Transient(format!("HTTP {status}: {summary}"))
    } else {
        SendResult::Permanent(format!("HTTP {status}: {summary}"))
    }
}

mod services;
pub use services::{DelegationMessage, DelegationResult, GRANTOR_ONLY_REASON, PORTAL_RECORD_PREFIX};
