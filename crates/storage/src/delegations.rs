//! The sub-delegations' port ([`DelegationStore`]): the delegations, their notices to each
//! institution and the answers.

use async_trait::async_trait;
use domain::delegation::{Delegation, DelegationId, Ending, InstitutionState};
use domain::identifiers::CodiceFiscale;
use time::OffsetDateTime;

use crate::*;

/// What must still be told to an institution about a delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Grant,
    Revoke,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "grant" => Some(Self::Grant),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }
}

/// A delegation notice handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationNotice {
    pub delegation: Delegation,
    pub institution: String,
    pub kind: NoticeKind,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// What became of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeAnswer {
    /// The institution registered the delegation (grant).
    Active { reference: String },
    /// The institution refused it (grant).
    Refused { reason: String },
    /// The institution took note of the revocation.
    Revoked,
    /// Try again at this time (the institution could not be reached).
    Retry { at: OffsetDateTime, reason: String },
}

/// Sub-delegations ("subdeleghe") and what each institution answered.
#[async_trait]
pub trait DelegationStore: Send + Sync + std::fmt::Debug {
    /// Stores a new delegation: every institution of its scope pending, with a grant notice
    /// to send.
    async fn create_delegation(&self, delegation: &Delegation) -> Result<(), StoreError>;

    async fn delegation(&self, id: DelegationId) -> Result<Delegation, StoreError>;

    /// Granted by `grantor`, newest first.
    async fn delegations_granted(&self, grantor: &CodiceFiscale) -> Result<Vec<Delegation>, StoreError>;

    /// Received by `delegate`, newest first.
    async fn delegations_received(&self, delegate: &CodiceFiscale) -> Result<Vec<Delegation>, StoreError>;

    /// Ends a delegation now (revoked or renounced); every institution that did not refuse it
    /// gets a revocation notice. `DelegationEnded` when it had already ended.
    async fn end_delegation(
        &self,
        id: DelegationId,
        ending: Ending,
        now: OffsetDateTime,
    ) -> Result<Delegation, StoreError>;

    /// Marks the expiry of a delegation as recorded; `true` the first time only, so the
    /// audit trail gets one record per expiry whoever notices it first.
    async fn note_expiry(&self, id: DelegationId) -> Result<bool, StoreError>;

    /// Claims up to `limit` notices that are due and not leased, for `lease`.
    async fn claim_delegation_notices(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<DelegationNotice>, StoreError>;

    /// Records what became of a notice of `kind`. A grant answer that arrives after the
    /// delegation ended is kept (the reference), and the revocation still goes out.
    async fn record_notice(
        &self,
        id: DelegationId,
        institution: &str,
        kind: NoticeKind,
        answer: &NoticeAnswer,
    ) -> Result<(), StoreError>;
}

/// A delegation as both adapters read it (times in unix milliseconds).
pub(crate) struct DelegationRow {
    pub(crate) id: String,
    pub(crate) grantor_cf: String,
    pub(crate) delegate_cf: String,
    pub(crate) delegate_name: String,
    pub(crate) scope: String,
    pub(crate) valid_from: i64,
    pub(crate) valid_until: i64,
    pub(crate) note: String,
    pub(crate) created_at: i64,
    pub(crate) ended: Option<String>,
    pub(crate) ended_at: Option<i64>,
}

/// One institution's answer as both adapters read it.
pub(crate) struct DelegationInstitutionRow {
    pub(crate) delegation_id: String,
    pub(crate) institution: String,
    pub(crate) state: String,
    pub(crate) reference: Option<String>,
    pub(crate) reason: Option<String>,
}

/// Whole delegations from their rows and the institution rows of all of them (read in one
/// query), in the order of `rows`.
pub(crate) fn assemble_delegations(
    rows: Vec<DelegationRow>,
    institutions: Vec<DelegationInstitutionRow>,
) -> Result<Vec<Delegation>, StoreError> {
    let mut by_delegation: std::collections::HashMap<String, Vec<DelegationInstitutionRow>> =
        std::collections::HashMap::new();
    for i in institutions {
        by_delegation.entry(i.delegation_id.clone()).or_default().push(i);
    }
    rows.into_iter()
        .map(|d| {
            let mine = by_delegation.remove(&d.id).unwrap_or_default();
            d.into_delegation(mine)
        })
        .collect()
}

impl DelegationRow {
    pub(crate) fn into_delegation(self, institutions: Vec<DelegationInstitutionRow>) -> Result<Delegation, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("delegation {}: {what}", self.id));
        let institutions = institutions
            .into_iter()
            .map(|r| {
                let state = match r.state.as_str() {
                    "pending" => InstitutionState::Pending,
                    "active" => InstitutionState::Active { reference: r.reference.unwrap_or_default() },
                    "refused" => InstitutionState::Refused { reason: r.reason.unwrap_or_default() },
                    "revoked" => InstitutionState::Revoked,
                    other => return Err(corrupt(&format!("state {other}"))),
                };
                Ok((r.institution, state))
            })
            .collect::<Result<_, _>>()?;
        Ok(Delegation {
            id: DelegationId::parse(&self.id).ok_or_else(|| corrupt("id"))?,
            grantor: CodiceFiscale::parse(&self.grantor_cf).map_err(|_| corrupt("grantor"))?,
            delegate: CodiceFiscale::parse(&self.delegate_cf).map_err(|_| corrupt("delegate"))?,
            delegate_name: self.delegate_name,
            scope: serde_json::from_str(&self.scope).map_err(|_| corrupt("scope"))?,
            valid_from: from_millis(self.valid_from)?,
            valid_until: from_millis(self.valid_until)?,
            note: self.note,
            created_at: from_millis(self.created_at)?,
            ended: match (self.ended.as_deref().and_then(Ending::parse), self.ended_at) {
                (Some(ending), Some(at)) => Some((ending, at)),
                _ => None,
            },
            institutions,
        })
    }
}

/// A notice's answer as columns: (state, reference, reason, notice still to send, retry at).
pub(crate) type NoticeColumns =
    (Option<&'static str>, Option<String>, Option<String>, Option<&'static str>, Option<i64>);

pub(crate) fn notice_columns(kind: NoticeKind, answer: &NoticeAnswer) -> NoticeColumns {
    match answer {
        NoticeAnswer::Active { reference } => (Some("active"), Some(reference.clone()), None, None, None),
        NoticeAnswer::Refused { reason } => (Some("refused"), None, Some(reason.clone()), None, None),
        NoticeAnswer::Revoked => (Some("revoked"), None, None, None, None),
        NoticeAnswer::Retry { at, reason } => {
            (None, None, Some(reason.clone()), Some(kind.as_str()), Some(unix_millis(*at)))
        }
    }
}
