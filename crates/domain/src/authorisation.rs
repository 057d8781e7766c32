//! Authorisations to operate online at an institution ("abilitazioni").
//!
//! Each institution says, for a person's codice fiscale, for which businesses that person may
//! file there and in which role. The portal asks before a procedure starts (to show a
//! checklist per recipient) and again at submission, where a missing or unknown authorisation
//! stops the practice before anything is sent.

use serde::{Deserialize, Serialize};

/// How a person acts for a business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// "Titolare".
    Owner,
    /// "Legale rappresentante".
    LegalRepresentative,
    /// "Intermediario" (an accountant, a trade association).
    Intermediary,
}

/// One business a person may act for at an institution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The business's codice fiscale (16 characters) or partita IVA (11 digits).
    pub business: String,
    pub role: Role,
}

/// What is known of a person's authorisation at one institution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Authorisation {
    /// The institution answered; the list may be empty.
    Known { grants: Vec<Grant> },
    /// The institution could not be asked right now.
    Unknown { reason: String },
}

impl Authorisation {
    /// Whether the person may act for `business` there; `None` when it cannot be known now.
    pub fn allows(&self, business: &str) -> Option<bool> {
        match self {
            Self::Known { grants } => Some(grants.iter().any(|g| g.business.eq_ignore_ascii_case(business.trim()))),
            Self::Unknown { .. } => None,
        }
    }

    /// Whether the person may act for some business there; `None` when unknown.
    pub fn allows_any(&self) -> Option<bool> {
        match self {
            Self::Known { grants } => Some(!grants.is_empty()),
            Self::Unknown { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_only_listed_businesses() {
        let a =
            Authorisation::Known { grants: vec![Grant { business: "00743110157".into(), role: Role::Intermediary }] };
        assert_eq!(a.allows("00743110157"), Some(true));
        assert_eq!(a.allows("01879020517"), Some(false));
        assert_eq!(a.allows_any(), Some(true));
        assert_eq!(Authorisation::Known { grants: vec![] }.allows_any(), Some(false));
        let unknown = Authorisation::Unknown { reason: "timeout".into() };
        assert_eq!(unknown.allows("00743110157"), None);
    }
}
