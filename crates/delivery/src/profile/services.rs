//! The two services an institution offers besides its filing intake, as its profile describes
//! them: who may file there ("abilitazioni") and sub-delegations ("subdeleghe").
//!
//! ```toml
//! [authorisations]                  # asked before a procedure starts and at submission
//! method = "GET"
//! path = "/abilitazioni/{{ tax_code }}"
//! business = "/abilitazioni/*/impresa"   # locators, read in pairs by position
//! role = "/abilitazioni/*/ruolo"
//! roles = { TITOLARE = "owner", LEGALE_RAPPRESENTANTE = "legal_representative",
//!           INTERMEDIARIO = "intermediary" }   # the institution's words; absent: Sportello's
//! [authorisations.answer]
//! delivered = [200]                 # any other status: "cannot be known now"
//!
//! # …or, for an institution that cannot be asked:
//! [authorisations]
//! offered = false
//! policy = "on_receipt"             # it checks when the filing arrives: anyone may send
//!                                   # or "own_business_only": only for the person's own business
//!
//! [delegations.grant]               # telling it of a sub-delegation granted
//! method = "POST"
//! path = "/deleghe"
//! body = "inail-delega.json"        # sees `delegation` (delegation_id, grantor, delegate,
//!                                   #   businesses, services, valid_from, valid_until)
//! [delegations.grant.answer]
//! delivered = ["2xx"]               # registered: its reference at `protocol_number`
//! rejected = [422]                  # refused, with `reasons`
//! protocol_number = "/riferimento"
//! reasons = "/motivo"
//! [delegations.revoke]              # telling it the sub-delegation ended
//! method = "DELETE"
//! path = "/deleghe/{{ delegation.delegation_id }}"
//! [delegations.revoke.answer]
//! delivered = ["2xx", 404]          # gone, or never there: it no longer holds
//!
//! # …or, for an institution that takes no notices:
//! [delegations]
//! offered = false
//! policy = "portal_record"          # collaborators act there on the portal's own record
//!                                   # or "grantor_only": only the grantor may file there
//! ```
//!
//! A profile without these sections uses Sportello's own interface for them
//! (`GET /authorisations/{tax_code}`, `POST /delegations`, `DELETE /delegations/{id}`).

use std::collections::BTreeMap;

use domain::authorisation::{Grant, NotOfferedPolicy, Role};
use serde::Deserialize;
use toml::Spanned;

use super::{Compiler, Operation, RawAnswer, RawOperation};
use crate::mapping::{Answer, Locator};

/// How the portal learns who may file at an institution.
#[derive(Debug, Clone)]
pub enum Lookup {
    Asked(Box<AuthorisationLookup>),
    NotOffered(NotOfferedPolicy),
}

/// A request whose answer lists the businesses a person may file for, and in which role.
#[derive(Debug, Clone)]
pub struct AuthorisationLookup {
    pub operation: Operation,
    business: Locator,
    role: Option<Locator>,
    /// The institution's words for roles; empty: Sportello's own (`owner`, …).
    roles: BTreeMap<String, Role>,
}

impl AuthorisationLookup {
    /// The grants in an answer; `Err` when the answer cannot be read as the profile says.
    pub fn grants(&self, answer: &Answer) -> Result<Vec<Grant>, String> {
        if *answer == Answer::Unreadable {
            return Err("unreadable answer".into());
        }
        let businesses = answer.texts(&self.business);
        let roles = match &self.role {
            Some(at) => answer.texts(at),
            None => vec!["intermediary".to_string(); businesses.len()],
        };
        if roles.len() != businesses.len() {
            return Err(format!("{} businesses but {} roles in the answer", businesses.len(), roles.len()));
        }
        let mut grants = Vec::with_capacity(businesses.len());
        for (business, word) in businesses.into_iter().zip(roles) {
            match self.role_of(word.trim()) {
                Some(role) => grants.push(Grant { business: business.trim().to_uppercase(), role }),
                // A role the profile does not know grants nothing: refusing is the safe side.
                None => tracing::warn!(%word, "a role word the profile does not list"),
            }
        }
        Ok(grants)
    }

    fn role_of(&self, word: &str) -> Option<Role> {
        if self.roles.is_empty() {
            return serde_json::from_value(serde_json::Value::String(word.to_string())).ok();
        }
        self.roles.get(word).copied()
    }
}

/// What the portal does when a sub-delegation is granted or ends.
#[derive(Debug, Clone)]
pub enum DelegationNotices {
    Sent { grant: Box<Operation>, revoke: Box<Operation> },
    NotOffered(DelegationPolicy),
}

/// For an institution that takes no notice of sub-delegations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationPolicy {
    /// Collaborators act there on the portal's own record of the sub-delegation.
    PortalRecord,
    /// Only the grantor may file there: a sub-delegation is refused for it.
    GrantorOnly,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLookup {
    offered: Option<Spanned<bool>>,
    policy: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    business: Option<Spanned<String>>,
    role: Option<Spanned<String>>,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    answer: RawAnswer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelegations {
    offered: Option<Spanned<bool>>,
    policy: Option<Spanned<String>>,
    grant: Option<RawOperation>,
    revoke: Option<RawOperation>,
}

impl RawDelegations {
    /// The operations whose templates must be loaded.
    pub(super) fn operations(&self) -> impl Iterator<Item = &RawOperation> {
        self.grant.iter().chain(self.revoke.iter())
    }
}

impl Compiler<'_> {
    pub(super) fn lookup(&mut self, raw: &RawLookup, section: std::ops::Range<usize>) -> Lookup {
        if raw.offered.as_ref().is_some_and(|o| !*o.get_ref()) {
            let asked = [&raw.method, &raw.path, &raw.business, &raw.role].into_iter().flatten().next();
            if let Some(field) = asked {
                self.error(field.span(), "a look-up that is not offered has no request".into());
            }
            return match &raw.policy {
                None => {
                    let span = raw.offered.as_ref().map_or(section, Spanned::span);
                    self.error(span, "offered = false needs a policy: \"on_receipt\" or \"own_business_only\"".into());
                    Lookup::NotOffered(NotOfferedPolicy::OwnBusinessOnly)
                }
                Some(p) => Lookup::NotOffered(NotOfferedPolicy::parse(p.get_ref()).unwrap_or_else(|| {
                    let message = format!("policy `{}`: expected \"on_receipt\" or \"own_business_only\"", p.get_ref());
                    self.error(p.span(), message);
                    NotOfferedPolicy::OwnBusinessOnly
                })),
            };
        }
        if let Some(p) = &raw.policy {
            self.error(p.span(), "a policy is for a look-up that is not offered (offered = false)".into());
        }
        let (Some(path), Some(business)) = (&raw.path, &raw.business) else {
            self.error(section, "[authorisations] needs a path and a business locator, or offered = false".into());
            return Lookup::NotOffered(NotOfferedPolicy::OwnBusinessOnly);
        };
        let op = RawOperation {
            method: raw.method.clone(),
            path: path.clone(),
            body: None,
            content_type: None,
            schema: None,
            answer: RawAnswer {
                format: raw.answer.format.clone(),
                delivered: raw.answer.delivered.clone(),
                ..RawAnswer::default()
            },
        };
        let mut operation = self.operation("authorisations", &op);
        let format = operation.answer.format;
        let business = self.locator(format, business);
        let role = raw.role.as_ref().and_then(|r| self.locator(format, r));
        let mut roles = BTreeMap::new();
        for (word, role) in &raw.roles {
            match serde_json::from_value::<Role>(serde_json::Value::String(role.get_ref().clone())) {
                Ok(r) => {
                    roles.insert(word.clone(), r);
                }
                Err(_) => self.error(
                    role.span(),
                    format!("role `{}`: expected owner, legal_representative or intermediary", role.get_ref()),
                ),
            }
        }
        operation.answer.extra.extend(business.iter().chain(&role).cloned());
        match business {
            Some(business) => Lookup::Asked(Box::new(AuthorisationLookup { operation, business, role, roles })),
            None => Lookup::NotOffered(NotOfferedPolicy::OwnBusinessOnly),
        }
    }

    pub(super) fn delegations(&mut self, raw: &RawDelegations, section: std::ops::Range<usize>) -> DelegationNotices {
        if raw.offered.as_ref().is_some_and(|o| !*o.get_ref()) {
            if raw.grant.is_some() || raw.revoke.is_some() {
                self.error(section.clone(), "notices that are not offered have no [grant] or [revoke]".into());
            }
            let policy = match raw.policy.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
                Some(("portal_record", _)) => DelegationPolicy::PortalRecord,
                Some(("grantor_only", _)) => DelegationPolicy::GrantorOnly,
                Some((other, span)) => {
                    self.error(span, format!("policy `{other}`: expected \"portal_record\" or \"grantor_only\""));
                    DelegationPolicy::GrantorOnly
                }
                None => {
                    self.error(section, "offered = false needs a policy: \"portal_record\" or \"grantor_only\"".into());
                    DelegationPolicy::GrantorOnly
                }
            };
            return DelegationNotices::NotOffered(policy);
        }
        if let Some(p) = &raw.policy {
            self.error(p.span(), "a policy is for notices that are not offered (offered = false)".into());
        }
        match (&raw.grant, &raw.revoke) {
            (Some(grant), Some(revoke)) => DelegationNotices::Sent {
                grant: Box::new(self.operation("delegations.grant", grant)),
                revoke: Box::new(self.operation("delegations.revoke", revoke)),
            },
            (grant, revoke) => {
                // The one given is still checked, so that all its mistakes show at once.
                for (which, op) in [("delegations.grant", grant), ("delegations.revoke", revoke)] {
                    if let Some(op) = op {
                        self.operation(which, op);
                    }
                }
                self.error(
                    section,
                    "[delegations] needs both [delegations.grant] and [delegations.revoke], or offered = false".into(),
                );
                DelegationNotices::NotOffered(DelegationPolicy::GrantorOnly)
            }
        }
    }
}
