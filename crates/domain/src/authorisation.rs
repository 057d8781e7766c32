//! Authorisations to operate online at an institution ("abilitazioni").
//!
//! Each institution says, for a person's codice fiscale, for which businesses that person may
//! file there and in which role. The portal asks before a procedure starts (to show a
//! checklist per recipient) and again at submission, where a missing or unknown authorisation
//! stops the practice before anything is sent.

use serde::{Deserialize, Serialize};

/// How a person acts for a business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    /// The business's codice fiscale (16 characters) or partita IVA (11 digits).
    pub business: String,
    pub role: Role,
}

/// What is known of a person's authorisation at one institution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Authorisation {
    /// The institution answered; the list may be empty.
    Known { grants: Vec<Grant> },
    /// The institution could not be asked right now.
    Unknown { reason: String },
    /// The institution offers no look-up; the portal applies the configured `policy`, and
    /// `grants` are what that policy allows (the person's own business, or none listed).
    NotOffered { policy: NotOfferedPolicy, grants: Vec<Grant> },
}

/// What the portal does for an institution that cannot be asked who may file there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotOfferedPolicy {
    /// The institution checks when the filing arrives; a refusal comes back as a rejection
    /// naming the reason. Anyone may send.
    OnReceipt,
    /// Only for the business whose codice fiscale is the person's own (a sole trader filing
    /// for himself); anything else is refused before sending.
    OwnBusinessOnly,
}

impl NotOfferedPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on_receipt" => Some(Self::OnReceipt),
            "own_business_only" => Some(Self::OwnBusinessOnly),
            _ => None,
        }
    }

    /// What the policy allows `holder`.
    pub fn answer_for(self, holder: &str) -> Authorisation {
        let grants = match self {
            Self::OnReceipt => Vec::new(),
            Self::OwnBusinessOnly => vec![Grant { business: holder.trim().to_uppercase(), role: Role::Owner }],
        };
        Authorisation::NotOffered { policy: self, grants }
    }
}

impl Authorisation {
    /// Whether the person may act for `business` there; `None` when it cannot be known now.
    pub fn allows(&self, business: &str) -> Option<bool> {
        match self {
            Self::Known { grants } | Self::NotOffered { policy: NotOfferedPolicy::OwnBusinessOnly, grants } => {
                Some(grants.iter().any(|g| g.business.eq_ignore_ascii_case(business.trim())))
            }
            Self::NotOffered { policy: NotOfferedPolicy::OnReceipt, .. } => Some(true),
            Self::Unknown { .. } => None,
        }
    }

    /// The businesses known to be allowed (none for an unknown answer or a check on receipt).
    pub fn grants(&self) -> &[Grant] {
        match self {
            Self::Known { grants } | Self::NotOffered { grants, .. } => grants,
            Self::Unknown { .. } => &[],
        }
    }

    /// Whether the person may act for some business there; `None` when unknown.
    pub fn allows_any(&self) -> Option<bool> {
        match self {
            Self::Known { grants } => Some(!grants.is_empty()),
            Self::NotOffered { .. } => Some(true),
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

    #[test]
    fn not_offered_follows_its_policy() {
        let on_receipt = NotOfferedPolicy::OnReceipt.answer_for("RSSMRA80A01H501U");
        assert_eq!(on_receipt.allows("00743110157"), Some(true));
        assert_eq!(on_receipt.allows_any(), Some(true));
        assert!(on_receipt.grants().is_empty());
        let own = NotOfferedPolicy::OwnBusinessOnly.answer_for("rssmra80a01h501u");
        assert_eq!(own.allows("RSSMRA80A01H501U"), Some(true));
        assert_eq!(own.allows("00743110157"), Some(false));
        assert_eq!(own.allows_any(), Some(true));
        assert_eq!(NotOfferedPolicy::parse("own_business_only"), Some(NotOfferedPolicy::OwnBusinessOnly));
        assert_eq!(NotOfferedPolicy::parse("whatever"), None);
    }
}
