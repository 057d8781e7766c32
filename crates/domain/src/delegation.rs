//! Sub-delegation ("subdelega"): a holder authorised at some institutions lets a collaborator,
//! who logs in with his or her own card, act for chosen businesses and services there, for a
//! time. The grantor stays responsible: every act records both.
//!
//! Rules:
//! - nobody hands on more than he or she holds: the institutions, businesses and services of a
//!   grant are subsets of what the institutions say the grantor may do ([`check_grant`]);
//! - what a collaborator holds by delegation is not an authorisation of his or her own and
//!   cannot be delegated again (the grant is checked against the grantor's own answers from
//!   the institutions, and a holder acting on behalf of someone cannot grant at all);
//! - validity has a start, an end, and a maximum length set in configuration;
//! - each institution involved is told, and answers: the delegation is pending, active (with
//!   the institution's reference) or refused there; revoked or renounced it ends at once
//!   everywhere, and expired it ends by itself ([`Delegation::allows`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::authorisation::Authorisation;
use crate::catalog::Catalog;
use crate::identifiers::CodiceFiscale;

/// A delegation's id (a random UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DelegationId(pub uuid::Uuid);

impl DelegationId {
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }
}

impl fmt::Display for DelegationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for DelegationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a delegation covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    pub institutions: BTreeSet<String>,
    /// Business codes (codice fiscale of the business), upper case.
    pub businesses: BTreeSet<String>,
    /// Service ids of the catalog.
    pub services: BTreeSet<String>,
}

/// Where a delegation stands at one institution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstitutionState {
    /// Communicated (or about to be); no answer yet.
    Pending,
    Active {
        reference: String,
    },
    Refused {
        reason: String,
    },
    /// The revocation was communicated.
    Revoked,
}

/// How a delegation ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// By the grantor.
    Revoked,
    /// By the collaborator.
    Renounced,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Renounced => "renounced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "revoked" => Some(Self::Revoked),
            "renounced" => Some(Self::Renounced),
            _ => None,
        }
    }
}

/// A sub-delegation ("subdelega").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delegation {
    #[schema(value_type = String)]
    pub id: DelegationId,
    /// Who grants, and stays responsible ("delegante").
    #[schema(value_type = String)]
    pub grantor: CodiceFiscale,
    /// The collaborator ("delegato").
    #[schema(value_type = String)]
    pub delegate: CodiceFiscale,
    /// The collaborator's name as the grantor gave it (empty when not given), shown beside
    /// the code.
    pub delegate_name: String,
    pub scope: Scope,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    /// The first instant it no longer holds.
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
    pub note: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub ended: Option<(Ending, i64)>,
    /// One per institution of the scope.
    pub institutions: BTreeMap<String, InstitutionState>,
}

/// Where a delegation stands as a whole, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    NotYetValid,
    Valid,
    Expired,
    Revoked,
    Renounced,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotYetValid => "not_yet_valid",
            Self::Valid => "valid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Renounced => "renounced",
        }
    }
}

/// Why an act on behalf of the grantor is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfScope {
    #[error("the delegation is {0:?}")]
    NotValid(Standing),
    #[error("institution {0} is not in the delegation")]
    Institution(String),
    #[error("institution {0} has not accepted the delegation")]
    NotActiveAt(String),
    #[error("business {0} is not in the delegation")]
    Business(String),
    #[error("service {0} is not in the delegation")]
    Service(String),
}

impl Delegation {
    pub fn standing(&self, now: OffsetDateTime) -> Standing {
        match self.ended {
            Some((Ending::Revoked, _)) => Standing::Revoked,
            Some((Ending::Renounced, _)) => Standing::Renounced,
            None if now < self.valid_from => Standing::NotYetValid,
            None if now >= self.valid_until => Standing::Expired,
            None => Standing::Valid,
        }
    }

    /// What the list of sub-delegates shows for one institution: `pending`, `active`,
    /// `refused`, `revoking` (ended here, the institution not told yet), `revoked` or
    /// `expired`.
    pub fn state_at(&self, institution: &str, now: OffsetDateTime) -> &'static str {
        let standing = self.standing(now);
        match (self.institutions.get(institution), standing) {
            (Some(InstitutionState::Refused { .. }), _) => "refused",
            (Some(InstitutionState::Revoked), _) => "revoked",
            (_, Standing::Revoked | Standing::Renounced) => "revoking",
            (_, Standing::Expired) => "expired",
            (Some(InstitutionState::Active { .. }), _) => "active",
            _ => "pending",
        }
    }

    /// Whether the collaborator may act, now, for `business` with `service`. Every recipient
    /// of the service must be in the scope and have accepted the delegation, unless the
    /// configuration says that institution trusts the portal's own record
    /// (`trusts_portal(institution)`). `business` is `None` while a draft does not name one.
    pub fn allows(
        &self,
        now: OffsetDateTime,
        catalog: &Catalog,
        service: &str,
        business: Option<&str>,
        trusts_portal: &dyn Fn(&str) -> bool,
    ) -> Result<(), OutOfScope> {
        let standing = self.standing(now);
        if standing != Standing::Valid {
            return Err(OutOfScope::NotValid(standing));
        }
        if !self.scope.services.contains(service) {
            return Err(OutOfScope::Service(service.to_string()));
        }
        if let Some(business) = business.map(|b| b.trim().to_uppercase()).filter(|b| !b.is_empty()) {
            if !self.scope.businesses.contains(&business) {
                return Err(OutOfScope::Business(business));
            }
        }
        if let Some(service) = catalog.service(service) {
            for r in &service.recipients {
                if !self.scope.institutions.contains(&r.institution) {
                    return Err(OutOfScope::Institution(r.institution.clone()));
                }
                let active = matches!(self.institutions.get(&r.institution), Some(InstitutionState::Active { .. }));
                if !active && !trusts_portal(&r.institution) {
                    return Err(OutOfScope::NotActiveAt(r.institution.clone()));
                }
            }
        }
        Ok(())
    }
}

/// What a grantor asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub delegate: String,
    /// The collaborator's name (optional: the desk asks for it, the API may leave it out).
    pub delegate_name: String,
    pub scope: Scope,
    pub valid_from: time::Date,
    /// The last day it holds (inclusive).
    pub valid_to: time::Date,
    pub note: String,
}

/// Why a grant is refused, by form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantError {
    /// The collaborator's codice fiscale is not valid, or is the grantor's own.
    Delegate(&'static str),
    /// Nothing chosen in `field` (`institutions`, `businesses`, `services`).
    Empty(&'static str),
    /// The grantor is not authorised at this institution (or it cannot be known now).
    Institution(String),
    /// The grantor may not file for this business at every chosen institution.
    Business(String),
    /// The service involves an institution that is not chosen, or does not exist.
    Service(String),
    /// Starts in the past (`from-past`) or ends before it starts (`to-before-from`).
    Dates(&'static str, i64),
    /// Lasts longer than `max_days`: `latest` is the last day it could hold.
    TooLong {
        max_days: i64,
        latest: time::Date,
    },
    NoteTooLong(usize),
    /// The collaborator's name is longer than [`NAME_MAX`] or holds hidden characters.
    DelegateName(&'static str),
    /// The note holds control characters or invisible direction marks, which could make it
    /// read otherwise than it is stored.
    NoteCharacters,
}

/// Longest note, in characters.
pub const NOTE_MAX: usize = 500;

/// Longest collaborator's name, in characters.
pub const NAME_MAX: usize = 100;

/// Checks a grant against what the institutions say the grantor holds (`answers`, by
/// institution: the grantor's own authorisations, never delegated ones).
pub fn check_grant(
    grantor: &CodiceFiscale,
    request: &GrantRequest,
    answers: &BTreeMap<String, Authorisation>,
    catalog: &Catalog,
    max_days: i64,
    today: time::Date,
) -> Vec<GrantError> {
    let mut errors = Vec::new();
    match CodiceFiscale::parse(&request.delegate) {
        Err(_) => errors.push(GrantError::Delegate("invalid")),
        Ok(cf) if cf == *grantor => errors.push(GrantError::Delegate("self")),
        Ok(_) => {}
    }
    let scope = &request.scope;
    for (field, empty) in [
        ("institutions", scope.institutions.is_empty()),
        ("businesses", scope.businesses.is_empty()),
        ("services", scope.services.is_empty()),
    ] {
        if empty {
            errors.push(GrantError::Empty(field));
        }
    }
    for institution in &scope.institutions {
        if answers.get(institution).and_then(Authorisation::allows_any) != Some(true) {
            errors.push(GrantError::Institution(institution.clone()));
        }
    }
    for business in &scope.businesses {
        let everywhere =
            scope.institutions.iter().all(|i| answers.get(i).and_then(|a| a.allows(business)) == Some(true));
        if !everywhere {
            errors.push(GrantError::Business(business.clone()));
        }
    }
    for service in &scope.services {
        let covered = catalog
            .service(service)
            .is_some_and(|s| s.recipients.iter().all(|r| scope.institutions.contains(&r.institution)));
        if !covered {
            errors.push(GrantError::Service(service.clone()));
        }
    }
    if request.valid_from < today {
        errors.push(GrantError::Dates("from-past", max_days));
    }
    if request.valid_to < request.valid_from {
        errors.push(GrantError::Dates("to-before-from", max_days));
    } else if (request.valid_to - request.valid_from).whole_days() + 1 > max_days {
        let latest = request.valid_from.saturating_add(time::Duration::days(max_days - 1));
        errors.push(GrantError::TooLong { max_days, latest });
    }
    if request.note.chars().count() > NOTE_MAX {
        errors.push(GrantError::NoteTooLong(NOTE_MAX));
    }
    let hidden = |c: char| {
        (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if request.note.chars().any(hidden) {
        errors.push(GrantError::NoteCharacters);
    }
    if request.delegate_name.chars().count() > NAME_MAX {
        errors.push(GrantError::DelegateName("too-long"));
    } else if request.delegate_name.chars().any(|c| hidden(c) || c.is_control()) {
        errors.push(GrantError::DelegateName("characters"));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorisation::{Grant, Role};
    use time::macros::{date, datetime};

    fn catalog() -> Catalog {
        crate::catalog::tests::shipped()
    }

    const BUSINESS: &str = "00743110157";

    fn answers(institutions: &[&str]) -> BTreeMap<String, Authorisation> {
        institutions
            .iter()
            .map(|i| {
                let grants = vec![Grant { business: BUSINESS.into(), role: Role::Owner }];
                (i.to_string(), Authorisation::Known { grants })
            })
            .collect()
    }

    fn grantor() -> CodiceFiscale {
        CodiceFiscale::parse("RSSMRA45C12F205C").expect("valid")
    }

    fn request(institutions: &[&str], services: &[&str]) -> GrantRequest {
        GrantRequest {
            delegate: "BNCSFN85T58G702W".into(),
            delegate_name: "Stefania Bianco".into(),
            scope: Scope {
                institutions: institutions.iter().map(|s| s.to_string()).collect(),
                businesses: [BUSINESS.to_string()].into(),
                services: services.iter().map(|s| s.to_string()).collect(),
            },
            valid_from: date!(2026 - 11 - 27),
            valid_to: date!(2027 - 11 - 26),
            note: String::new(),
        }
    }

    #[test]
    fn a_grant_within_what_the_grantor_holds_is_accepted() {
        let all = ["inps", "inail", "registro-imprese"];
        let errors = check_grant(
            &grantor(),
            &request(&all, &["avvio-ditta-individuale"]),
            &answers(&all),
            &catalog(),
            365,
            date!(2026 - 11 - 27),
        );
        assert_eq!(errors, []);
    }

    #[test]
    fn nobody_hands_on_more_than_he_or_she_holds() {
        let catalog = catalog();
        let today = date!(2026 - 11 - 27);
        // Not authorised at INAIL.
        let errors = check_grant(
            &grantor(),
            &request(&["inps", "inail"], &["collaboratore-familiare"]),
            &answers(&["inps"]),
            &catalog,
            365,
            today,
        );
        assert_eq!(errors, [GrantError::Institution("inail".into()), GrantError::Business(BUSINESS.into())]);
        // Another business.
        let mut other = request(&["inps"], &["collaboratore-familiare"]);
        other.scope.businesses.insert("01879020517".into());
        let errors = check_grant(&grantor(), &other, &answers(&["inps"]), &catalog, 365, today);
        assert_eq!(errors, [GrantError::Business("01879020517".into())]);
        // A service that reaches an institution not chosen.
        let errors = check_grant(
            &grantor(),
            &request(&["inps"], &["avvio-ditta-individuale"]),
            &answers(&["inps"]),
            &catalog,
            365,
            today,
        );
        assert_eq!(errors, [GrantError::Service("avvio-ditta-individuale".into())]);
        // Too long, to oneself.
        let mut long = request(&["inps"], &["collaboratore-familiare"]);
        long.delegate = "RSSMRA45C12F205C".into();
        long.valid_to = date!(2028 - 01 - 01);
        let errors = check_grant(&grantor(), &long, &answers(&["inps"]), &catalog, 365, today);
        let latest = long.valid_from + time::Duration::days(364);
        assert_eq!(errors, [GrantError::Delegate("self"), GrantError::TooLong { max_days: 365, latest }]);
        // A note that would read otherwise than it is stored; line breaks are fine.
        let mut note = request(&["inps"], &["collaboratore-familiare"]);
        note.note = "Per la sede\nnuova".into();
        assert!(check_grant(&grantor(), &note, &answers(&["inps"]), &catalog, 365, today).is_empty());
        for hidden in ["fino al 31\u{202E}21", "campo\u{0007}", "a\u{200B}b"] {
            note.note = hidden.into();
            let errors = check_grant(&grantor(), &note, &answers(&["inps"]), &catalog, 365, today);
            assert_eq!(errors, [GrantError::NoteCharacters], "{hidden:?}");
        }
    }

    fn delegation() -> Delegation {
        Delegation {
            id: DelegationId::from_random_bytes([7; 16]),
            grantor: grantor(),
            delegate: CodiceFiscale::parse("BNCSFN85T58G702W").expect("valid"),
            delegate_name: "Stefania Bianco".into(),
            scope: request(&["inps"], &["collaboratore-familiare"]).scope,
            valid_from: datetime!(2026-11-27 0:00 UTC),
            valid_until: datetime!(2026-12-27 0:00 UTC),
            note: String::new(),
            created_at: datetime!(2026-11-27 0:00 UTC),
            ended: None,
            institutions: [("inps".to_string(), InstitutionState::Active { reference: "INPS-D-1".into() })].into(),
        }
    }

    #[test]
    fn acting_beyond_scope_or_time_is_refused() {
        let catalog = catalog();
        let d = delegation();
        let now = datetime!(2026-12-01 10:00 UTC);
        let never = |_: &str| false;
        assert_eq!(d.allows(now, &catalog, "collaboratore-familiare", Some(BUSINESS), &never), Ok(()));
        assert_eq!(
            d.allows(now, &catalog, "collaboratore-familiare", None, &never),
            Ok(()),
            "a draft without business"
        );
        assert_eq!(
            d.allows(now, &catalog, "avvio-ditta-individuale", Some(BUSINESS), &never),
            Err(OutOfScope::Service("avvio-ditta-individuale".into()))
        );
        assert_eq!(
            d.allows(now, &catalog, "collaboratore-familiare", Some("01879020517"), &never),
            Err(OutOfScope::Business("01879020517".into()))
        );
        let before = datetime!(2026-11-26 22:00 UTC);
        assert_eq!(
            d.allows(before, &catalog, "collaboratore-familiare", Some(BUSINESS), &never),
            Err(OutOfScope::NotValid(Standing::NotYetValid))
        );
        let after = datetime!(2026-12-27 0:00 UTC);
        assert_eq!(
            d.allows(after, &catalog, "collaboratore-familiare", Some(BUSINESS), &never),
            Err(OutOfScope::NotValid(Standing::Expired))
        );
        assert_eq!(d.state_at("inps", after), "expired");
        let mut revoked = d.clone();
        revoked.ended = Some((Ending::Revoked, 0));
        assert_eq!(
            revoked.allows(now, &catalog, "collaboratore-familiare", Some(BUSINESS), &never),
            Err(OutOfScope::NotValid(Standing::Revoked))
        );
        let mut pending = d.clone();
        pending.institutions.insert("inps".into(), InstitutionState::Pending);
        assert_eq!(
            pending.allows(now, &catalog, "collaboratore-familiare", Some(BUSINESS), &never),
            Err(OutOfScope::NotActiveAt("inps".into()))
        );
        assert_eq!(pending.allows(now, &catalog, "collaboratore-familiare", Some(BUSINESS), &|_| true), Ok(()));
        assert_eq!(pending.state_at("inps", now), "pending");
    }
}
