//! Asking an institution who may file there, and telling it of sub-delegations, as its profile
//! says (see [`crate::profile::services`]): the request is rendered from the profile, signed
//! like a filing's (with a PDND voucher when the institution is behind PDND, renewed once on
//! 401), and its answer read by the profile's map.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use domain::authorisation::Authorisation;

use super::InstitutionClient;
use crate::modi::Signer;
use crate::profile::{DelegationNotices, DelegationPolicy, Lookup, Operation};

/// What the portal tells an institution about a sub-delegation; the templates of a profile's
/// `[delegations]` see it as `delegation`.
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

/// The reference recorded when an institution takes no notices and the portal's own record
/// counts there (`policy = "portal_record"`).
pub const PORTAL_RECORD_PREFIX: &str = "portale:";

/// The reason recorded when an institution takes no sub-delegations (`policy = "grantor_only"`).
pub const GRANTOR_ONLY_REASON: &str =
    "L'ente non accetta subdeleghe: presso questo ente può operare solo il delegante.";

/// An answer: its status code and body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl InstitutionClient {
    /// Who `tax_code` may file for here: asked as the profile says, or the policy's answer
    /// when the institution offers no look-up. Never an error: what cannot be known now is
    /// [`Authorisation::Unknown`].
    pub async fn authorisations(&self, tax_code: &str, signer: &Signer) -> Authorisation {
        let lookup = match &self.channel.profile.authorisations {
            Lookup::NotOffered(policy) => return policy.answer_for(tax_code),
            Lookup::Asked(lookup) => lookup,
        };
        let context = json!({ "tax_code": tax_code, "institution": self.channel.institution });
        let answer = &lookup.operation.answer;
        let unknown = |reason: String| Authorisation::Unknown { reason };
        match self.call(&lookup.operation, &context, tax_code, None, signer).await {
            Ok(reply) if answer.delivered.contains(reply.status) => match lookup.grants(&answer.parse(&reply.body)) {
                Ok(grants) => Authorisation::Known { grants },
                Err(reason) => unknown(reason),
            },
            Ok(reply) => unknown(format!("HTTP {}", reply.status)),
            Err(reason) => unknown(reason),
        }
    }

    /// Registers a sub-delegation at the institution, for the grantor.
    pub async fn grant_delegation(&self, message: &DelegationMessage, signer: &Signer) -> DelegationResult {
        let grant = match &self.channel.profile.delegations {
            DelegationNotices::NotOffered(DelegationPolicy::PortalRecord) => {
                return DelegationResult::Active {
                    reference: format!("{PORTAL_RECORD_PREFIX}{}", message.delegation_id),
                }
            }
            DelegationNotices::NotOffered(DelegationPolicy::GrantorOnly) => {
                return DelegationResult::Refused { reason: GRANTOR_ONLY_REASON.into() }
            }
            DelegationNotices::Sent { grant, .. } => grant,
        };
        let context = json!({ "delegation": message, "institution": self.channel.institution });
        let reply = match self.call(grant, &context, &message.grantor, Some(&message.delegation_id), signer).await {
            Ok(reply) => reply,
            Err(reason) => return DelegationResult::Retry(reason),
        };
        let answer = &grant.answer;
        let news = answer.read(&reply.body);
        if answer.rejected.contains(reply.status) {
            let reason = news.reasons.join("; ");
            return DelegationResult::Refused {
                reason: if reason.is_empty() { format!("HTTP {}", reply.status) } else { reason },
            };
        }
        if !answer.delivered.contains(reply.status) {
            return DelegationResult::Retry(format!("HTTP {}", reply.status));
        }
        match news.protocol_number.filter(|r| !r.trim().is_empty()) {
            Some(reference) => DelegationResult::Active { reference },
            None => DelegationResult::Retry("registered without a reference".into()),
        }
    }

    /// Tells the institution a sub-delegation ended (revoked, renounced).
    pub async fn revoke_delegation(&self, message: &DelegationMessage, signer: &Signer) -> DelegationResult {
        let revoke = match &self.channel.profile.delegations {
            DelegationNotices::NotOffered(_) => return DelegationResult::Revoked,
            DelegationNotices::Sent { revoke, .. } => revoke,
        };
        let context = json!({ "delegation": message, "institution": self.channel.institution });
        match self.call(revoke, &context, &message.grantor, None, signer).await {
            Ok(reply) if revoke.answer.delivered.contains(reply.status) => DelegationResult::Revoked,
            Ok(reply) => DelegationResult::Retry(format!("HTTP {}", reply.status)),
            Err(reason) => DelegationResult::Retry(reason),
        }
    }

    /// Sends `op` rendered in `context`, signed for `who`; a PDND voucher refused with 401 is
    /// dropped and the request made once more with a new one.
    async fn call(
        &self,
        op: &Operation,
        context: &Value,
        who: &str,
        idempotency_key: Option<&str>,
        signer: &Signer,
    ) -> Result<Reply, String> {
        let rendered = self.channel.profile.render(op, context).map_err(|e| format!("profile: {e}"))?;
        let url = self.url_for(&rendered.target)?;
        let mut renewed = false;
        loop {
            let voucher = self.bearer().await.map_err(|e| e.to_string())?;
            let mut request = self.request(
                rendered.method.clone(),
                &url,
                &rendered.content_type,
                rendered.body.clone(),
                (who, None),
                signer,
                voucher.as_deref(),
            )?;
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            let response = request.send().await.map_err(|e| format!("cannot reach the institution: {e}"))?;
            let status = response.status().as_u16();
            if let (Some(source), Some(voucher), 401, false) = (&self.vouchers, &voucher, status, renewed) {
                source.drop_voucher(voucher);
                renewed = true;
                continue;
            }
            let body = response.bytes().await.map_err(|e| format!("unreadable answer: {e}"))?.to_vec();
            return Ok(Reply { status, body });
        }
    }
}
