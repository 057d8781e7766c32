//! The practices' port ([`PracticeStore`]): queries, search, the desk's counts, the scope of a
//! sub-delegation, and the rows both adapters read.

use async_trait::async_trait;
use domain::delivery::DeliveryState;
use domain::identifiers::CodiceFiscale;
use domain::practice::{
    Delivery, Practice, PracticeData, PracticeEvent, PracticeId, PracticeState, ReferenceNumber, Submission,
};
use time::OffsetDateTime;

use crate::*;

/// The practice's next state once its deliveries changed, from the states as stored (shared
/// by both adapters). `None`: the practice stays as it is. A state that cannot be read is an
/// error, never skipped: a practice must not complete because one of its rows was ignored.
/// Delivery states as stored; one the domain does not know stops the caller instead of being skipped.
fn delivery_states_of(stored: &[String]) -> Result<Vec<DeliveryState>, StoreError> {
    stored
        .iter()
        .map(|s| DeliveryState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("delivery state `{s}`"))))
        .collect()
}

pub(crate) fn practice_follows(current: &str, delivery_states: &[String]) -> Result<Option<PracticeState>, StoreError> {
    let states = delivery_states_of(delivery_states)?;
    let Some(progress) = domain::practice::Progress::of(&states) else { return Ok(None) };
    let current =
        PracticeState::parse(current).ok_or_else(|| StoreError::Corrupt(format!("practice state `{current}`")))?;
    // A transition the practice's state does not allow (archived, say) changes nothing.
    Ok(current.apply(PracticeEvent::Progressed(progress)).ok().filter(|next| *next != current))
}

/// What a collaborator acting under a sub-delegation sees of the grantor's practices: those
/// of the delegated services and businesses, and the collaborator's own drafts that do not
/// name a business yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeFilter {
    pub services: Vec<String>,
    pub businesses: Vec<String>,
    pub actor: String,
}

impl ScopeFilter {
    /// (services, businesses, actor) as bound parameters: JSON arrays and text.
    pub(crate) fn params(scope: Option<&ScopeFilter>) -> (Option<String>, Option<String>, Option<String>) {
        match scope {
            None => (None, None, None),
            // Fails closed: a list that could not be written as JSON matches nothing (an
            // absent parameter would mean "no filter").
            Some(s) => (
                Some(serde_json::to_string(&s.services).unwrap_or_else(|_| "[]".into())),
                Some(
                    serde_json::to_string(&s.businesses.iter().map(|b| b.to_uppercase()).collect::<Vec<_>>())
                        .unwrap_or_else(|_| "[]".into()),
                ),
                Some(s.actor.clone()),
            ),
        }
    }
}

/// The desk's home: counts per state and what needs the owner (see
/// [`PracticeStore::desk_summary`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeskSummary {
    /// Practices per state; a state with none is absent.
    pub counts: Vec<(PracticeState, u64)>,
    /// Drafts back from sending because no institution was reached, with their reference numbers.
    pub to_resend: Vec<(PracticeId, String)>,
    /// Deliveries failed, rejected or without news, with their practice's id and reference number.
    pub attention: Vec<(PracticeId, String, Delivery)>,
}

impl DeskSummary {
    pub fn count(&self, state: PracticeState) -> u64 {
        self.counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)
    }

    /// The summary from what both adapters read: each state must be one the domain knows.
    pub(crate) fn from_rows(
        counts: Vec<(String, i64)>,
        to_resend: Vec<(String, Option<String>)>,
        attention: Vec<(String, String, Delivery)>,
    ) -> Result<Self, StoreError> {
        let practice_id =
            |id: String| PracticeId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("practice id `{id}`")));
        let attention = attention
            .into_iter()
            .map(|(id, reference, delivery)| Ok((practice_id(id)?, reference, delivery)))
            .collect::<Result<_, StoreError>>()?;
        let to_resend = to_resend
            .into_iter()
            .filter_map(|(id, reference)| reference.map(|r| (id, r)))
            .map(|(id, reference)| Ok((practice_id(id)?, reference)))
            .collect::<Result<_, StoreError>>()?;
        let counts = counts
            .into_iter()
            .map(|(state, n)| {
                let state = PracticeState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("practice state `{state}`")))?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { counts, to_resend, attention })
    }
}

/// The delivery states the desk's home asks the owner to act on.
pub(crate) const NEEDS_THE_OWNER: &str = "'failed', 'rejected', 'no_news'";

/// Which practices to list.
#[derive(Debug, Clone, Default)]
pub struct PracticeQuery {
    pub state: Option<PracticeState>,
    /// Only those within a sub-delegation.
    pub scope: Option<ScopeFilter>,
    /// At most this many (capped at 200).
    pub limit: u32,
    pub offset: u32,
}

impl PracticeQuery {
    pub const MAX_LIMIT: u32 = 200;

    pub(crate) fn bounded_limit(&self) -> i64 {
        i64::from(if self.limit == 0 { 50 } else { self.limit.min(Self::MAX_LIMIT) })
    }
}

/// How search results are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Last change (the default).
    #[default]
    Updated,
    /// Date of sending; drafts never sent come last.
    Submitted,
    Reference,
    Service,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [Self::Updated, Self::Submitted, Self::Reference, Self::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Submitted => "submitted",
            Self::Reference => "reference",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The column it sorts on (the same name in both adapters).
    pub(crate) fn column(self) -> &'static str {
        match self {
            Self::Updated => "updated_at",
            Self::Submitted => "submitted_at",
            Self::Reference => "reference",
            Self::Service => "service_id",
        }
    }
}

/// A search among one owner's practices ("ricerca"). Every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct PracticeSearch {
    /// A reference number, a protocol number, a business codice fiscale (all exact, any
    /// case), or part of a business name (any case).
    pub text: Option<String>,
    pub service: Option<String>,
    pub state: Option<PracticeState>,
    /// Sent at or after this instant.
    pub submitted_from: Option<OffsetDateTime>,
    /// Sent before this instant.
    pub submitted_before: Option<OffsetDateTime>,
    pub sort: SortKey,
    pub descending: bool,
    /// Only those within a sub-delegation.
    pub scope: Option<ScopeFilter>,
    /// At most this many (capped at 200).
    pub limit: u32,
    pub offset: u32,
}

impl PracticeSearch {
    pub(crate) fn bounded_limit(&self) -> i64 {
        i64::from(if self.limit == 0 { 20 } else { self.limit.min(PracticeQuery::MAX_LIMIT) })
    }

    /// `ORDER BY` for the chosen sort: never-sent practices last, then the newest change, then
    /// the id, so pages never overlap.
    pub(crate) fn order_by(&self) -> String {
        let direction = if self.descending { "DESC" } else { "ASC" };
        let column = self.sort.column();
        match self.sort {
            // Never empty: the plain order lets the (owner_cf, updated_at) index give the page
            // without sorting the holder's practices.
            SortKey::Updated => format!("updated_at {direction}, id"),
            SortKey::Service => format!("{column} {direction}, updated_at DESC, id"),
            SortKey::Submitted | SortKey::Reference => {
                format!("({column} IS NULL), {column} {direction}, updated_at DESC, id")
            }
        }
    }

    /// The text as typed (trimmed), its upper-case form for the exact codes, and a `LIKE`
    /// pattern (escaped with a backslash) for the business name.
    /// The free text as the queries use it: upper-cased for codes compared whole, a
    /// lower-case `%part%` for names, and an upper-case `start%` for reference and protocol
    /// numbers typed in part ("SPT-2026-4", "INAIL-AOO1-2026"), with `%`, `_` and `\\` escaped.
    pub(crate) fn text_terms(&self) -> Option<(String, String, String)> {
        let text = self.text.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
        let escape = |s: String| -> String {
            s.chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect()
        };
        let upper = text.to_uppercase();
        Some((upper.clone(), format!("%{}%", escape(text.to_lowercase())), format!("{}%", escape(upper))))
    }
}

/// One page of search results, and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub practices: Vec<Practice>,
    pub total: u64,
}

/// Persistence of practices and their deliveries.
#[async_trait]
pub trait PracticeStore: Send + Sync + std::fmt::Debug {
    /// Brings the schema up to date. Safe to run from several processes at once.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Stores a new draft.
    async fn create_draft(&self, practice: &Practice) -> Result<(), StoreError>;

    /// The practice, if it exists and belongs to `owner`.
    async fn practice(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Practice, StoreError>;

    /// Replaces a draft's data. `WrongState` when the practice is no longer a draft.
    async fn update_draft(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        data: &PracticeData,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError>;

    /// Turns a draft into a submitted practice: canonical data, a new reference number and one
    /// queued delivery per filing, atomically. `WrongState` when it is no longer a draft.
    async fn submit(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        submission: &Submission,
    ) -> Result<Practice, StoreError>;

    /// The practice's deliveries, in the order its service lists the recipients.
    async fn deliveries(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<Delivery>, StoreError>;

    /// The owner's practices, most recently changed first.
    async fn list(&self, owner: &CodiceFiscale, query: &PracticeQuery) -> Result<Vec<Practice>, StoreError>;

    /// The owner's practices matching `search`, one page of them, with the total count.
    async fn search(&self, owner: &CodiceFiscale, search: &PracticeSearch) -> Result<SearchPage, StoreError>;

    /// What the desk's home shows, in three queries however many practices there are: the
    /// count of practices in each state, and at most `limit` of the drafts to send again and
    /// of the deliveries that need the owner, most recently changed first.
    async fn desk_summary(
        &self,
        owner: &CodiceFiscale,
        scope: Option<&ScopeFilter>,
        limit: u32,
    ) -> Result<DeskSummary, StoreError>;

    /// Archives a draft or a sent practice whose deliveries have all ended (`archive`), or
    /// brings an archived one back (to the drafts if it was never sent, else to where its
    /// deliveries stand). The domain decides what is legal; `WrongState` otherwise.
    async fn set_archived(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        archive: bool,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError>;
}

/// The state a practice moves to when archived or brought back, if the domain allows it.
pub(crate) fn archive_target(
    practice: &Practice,
    archive: bool,
    delivery_states: &[String],
) -> Result<PracticeState, StoreError> {
    let event = if archive {
        PracticeEvent::Archive
    } else {
        PracticeEvent::Unarchive(domain::practice::Progress::of(&delivery_states_of(delivery_states)?))
    };
    practice.state.apply(event).map_err(|_| StoreError::WrongState(practice.state))
}

/// A practice row as both adapters read it (ids and JSON as text).
pub(crate) struct PracticeRow {
    pub(crate) id: String,
    pub(crate) owner_cf: String,
    pub(crate) actor_cf: String,
    pub(crate) service_id: String,
    pub(crate) state: String,
    pub(crate) data: String,
    pub(crate) reference: Option<String>,
    pub(crate) needs_resend: bool,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
    pub(crate) submitted_at: Option<OffsetDateTime>,
}

impl PracticeRow {
    pub(crate) fn into_practice(self) -> Result<Practice, StoreError> {
        let corrupt = |what: &str, value: &str| StoreError::Corrupt(format!("practice {}: {what} `{value}`", self.id));
        Ok(Practice {
            id: PracticeId::parse(&self.id).ok_or_else(|| corrupt("id", &self.id))?,
            owner: CodiceFiscale::parse(&self.owner_cf).map_err(|_| corrupt("owner", &self.owner_cf))?,
            actor: CodiceFiscale::parse(&self.actor_cf).map_err(|_| corrupt("actor", &self.actor_cf))?,
            state: PracticeState::parse(&self.state).ok_or_else(|| corrupt("state", &self.state))?,
            data: serde_json::from_str(&self.data).map_err(|_| corrupt("data", "not a JSON object of strings"))?,
            reference: match &self.reference {
                Some(r) => Some(ReferenceNumber::parse(r).ok_or_else(|| corrupt("reference", r))?),
                None => None,
            },
            service_id: self.service_id,
            needs_resend: self.needs_resend,
            created_at: self.created_at,
            updated_at: self.updated_at,
            submitted_at: self.submitted_at,
        })
    }
}

pub(crate) fn data_json(data: &PracticeData) -> String {
    // A map of strings always serialises.
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_string())
}

/// The year a submission's reference number belongs to: the Italian calendar year.
pub(crate) fn reference_year(submission: &Submission) -> i32 {
    domain::italian_date(submission.submitted_at).year()
}
