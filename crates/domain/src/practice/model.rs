//! The practice, its identifiers and states, and a recipient's delivery.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::delivery::{DeliveryState, DeliveryStatus};
use crate::identifiers::CodiceFiscale;

/// Identifier of a practice (random UUID, assigned at creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct PracticeId(pub Uuid);

impl PracticeId {
    /// Builds an id from 16 random bytes (a version-4 UUID).
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().map(Self)
    }
}

impl fmt::Display for PracticeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The portal's reference number, given at sending, for information only
/// ("numero di riferimento"): `SPT-<year>-<7-digit sequence>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReferenceNumber {
    pub year: i32,
    pub sequence: u64,
}

impl ReferenceNumber {
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SPT-")?;
        let (year, seq) = rest.split_once('-')?;
        if year.len() != 4 || seq.len() < 7 || !seq.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(Self { year: year.parse().ok()?, sequence: seq.parse().ok()? })
    }
}

impl fmt::Display for ReferenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SPT-{:04}-{:07}", self.year, self.sequence)
    }
}

impl Serialize for ReferenceNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// State of a practice as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PracticeState {
    /// "In bozza": saved, editable, not sent.
    Draft,
    /// "In corso": sent; recipients are working through their deliveries.
    InProgress,
    /// "Da correggere": an institution rejected its filing; the user corrects it and sends it
    /// again to that institution alone.
    ToCorrect,
    /// "Da inviare di nuovo": a filing could not be delivered, or its institution said nothing
    /// within the deadline; the user sends it again.
    ToResend,
    /// "Completata": every recipient accepted its filing.
    Completed,
    /// Put aside by the user; can be brought back.
    Archived,
}

impl PracticeState {
    pub const ALL: [PracticeState; 6] =
        [Self::Draft, Self::InProgress, Self::ToCorrect, Self::ToResend, Self::Completed, Self::Archived];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::InProgress => "in_progress",
            Self::ToCorrect => "to_correct",
            Self::ToResend => "to_resend",
            Self::Completed => "completed",
            Self::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state after `event`, or why the event is not allowed now.
    pub fn apply(self, event: PracticeEvent) -> Result<PracticeState, IllegalTransition> {
        use PracticeEvent as E;
        use PracticeState as S;
        let next = match (self, event) {
            (S::Draft, E::Submit) => S::InProgress,
            (S::InProgress | S::ToCorrect | S::ToResend | S::Completed, E::Progressed(progress)) => progress.state(),
            // A failed or corrected filing sent again to its recipient alone.
            (S::InProgress | S::ToCorrect | S::ToResend, E::Resent) => S::InProgress,
            (S::Draft | S::ToCorrect | S::ToResend | S::Completed, E::Archive) => S::Archived,
            (S::Archived, E::Unarchive(None)) => S::Draft,
            (S::Archived, E::Unarchive(Some(progress))) => progress.state(),
            (from, event) => return Err(IllegalTransition { from, event }),
        };
        Ok(next)
    }

    /// Whether the data may still be changed.
    pub fn is_editable(self) -> bool {
        self == Self::Draft
    }

    /// Whether the user has something to do before the practice can complete.
    pub fn needs_the_user(self) -> bool {
        matches!(self, Self::ToCorrect | Self::ToResend)
    }
}

/// Where a sent practice's deliveries stand, taken together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Recipients are still working through their deliveries, and none needs the user.
    Working,
    /// No recipient could be reached for technical reasons: back to the drafts, to be sent again.
    NobodyReached,
    /// At least one institution rejected its filing.
    Rejected,
    /// At least one filing failed or is without news (and none was rejected).
    Undelivered,
    /// Every recipient accepted.
    AllAccepted,
}

impl Progress {
    /// The progress of deliveries that stand as `states`; `None` for a practice without any.
    pub fn of(states: &[DeliveryState]) -> Option<Progress> {
        use DeliveryState as D;
        if states.is_empty() {
            return None;
        }
        let progress = if states.iter().all(|s| matches!(s, D::Failed | D::Waiting)) && states.contains(&D::Failed) {
            // Those that wait can only wait for one that failed: nobody was reached.
            Progress::NobodyReached
        } else if states.contains(&D::Rejected) {
            Progress::Rejected
        } else if states.iter().any(|s| matches!(s, D::Failed | D::NoNews)) {
            Progress::Undelivered
        } else if states.iter().all(|s| *s == D::Accepted) {
            Progress::AllAccepted
        } else {
            Progress::Working
        };
        Some(progress)
    }

    /// The practice's state for this progress.
    pub fn state(self) -> PracticeState {
        match self {
            Self::Working => PracticeState::InProgress,
            Self::NobodyReached => PracticeState::Draft,
            Self::Rejected => PracticeState::ToCorrect,
            Self::Undelivered => PracticeState::ToResend,
            Self::AllAccepted => PracticeState::Completed,
        }
    }
}

/// Something that happens to a practice as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PracticeEvent {
    Submit,
    /// One of its deliveries moved; the practice follows where they stand together.
    Progressed(Progress),
    Resent,
    Archive,
    /// Brought back from the archive: `None` if it was never sent, else where its deliveries stand.
    Unarchive(Option<Progress>),
}

/// An event that the practice's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a practice in state {from:?} does not allow {event:?}")]
pub struct IllegalTransition {
    pub from: PracticeState,
    pub event: PracticeEvent,
}

/// The data typed into a practice: field id → value, as text.
pub type PracticeData = BTreeMap<String, String>;

/// A stored practice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Practice {
    pub id: PracticeId,
    /// The smart-card holder who owns the practice and answers for it.
    #[schema(value_type = String)]
    pub owner: CodiceFiscale,
    /// Who last acted on it: the owner, or a collaborator acting under a sub-delegation.
    #[schema(value_type = String)]
    pub actor: CodiceFiscale,
    pub service_id: String,
    pub state: PracticeState,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub data: PracticeData,
    #[schema(value_type = Option<String>)]
    pub reference: Option<ReferenceNumber>,
    /// Sent, but no recipient could be reached: back in the drafts, to be sent again.
    pub needs_resend: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub submitted_at: Option<OffsetDateTime>,
}

/// One recipient's filing and where its delivery stands ("destinatario").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub institution: String,
    pub filing_kind: String,
    #[serde(flatten)]
    pub status: DeliveryStatus,
    /// Attempts to send the current revision so far.
    pub attempts: u32,
    /// The filing as it is sent: built at submission from the catalog mapping.
    pub payload: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the institution last said something new about this filing.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_news_at: Option<OffsetDateTime>,
    /// Values its answers carried that other filings may use (REA number, codice ditta, ...).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub values: std::collections::BTreeMap<String, String>,
    /// The office of the institution the filing went to, when it routes by territory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office: Option<String>,
    /// The recipient whose answer this filing waits for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
}

impl Delivery {
    pub fn state(&self) -> DeliveryState {
        self.status.state
    }
}
