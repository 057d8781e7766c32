//! The practice ("pratica"): one user's procedure for one integrated service, and its
//! lifecycle from draft to submission.
//!
//! The rules live here so that no handler can bypass them: [`PracticeState::apply`] refuses an
//! illegal transition, [`check_draft`] says what a draft may hold, and [`prepare_submission`]
//! validates every field and builds one filing per recipient from the catalog's payload mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::catalog::{Catalog, FieldKind, FieldSpec, FilingKind, Service};
use crate::delivery::{DeliveryState, DeliveryStatus};
use crate::identifiers::{
    iso_date, parse_ateco, parse_cap, parse_date, parse_email, parse_province, BusinessTaxCode, CodiceFiscale,
    PartitaIva,
};
use crate::validation::{FieldError, Reason};

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
    /// Every recipient has given its outcome.
    Completed,
    /// Put aside by the user; can be brought back.
    Archived,
}

impl PracticeState {
    pub const ALL: [PracticeState; 4] = [Self::Draft, Self::InProgress, Self::Completed, Self::Archived];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::InProgress => "in_progress",
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
            (S::InProgress, E::AllOutcomesKnown) => S::Completed,
            // Not delivered to any recipient for technical reasons: back to the drafts.
            (S::InProgress, E::NoRecipientReached) => S::Draft,
            // A failed or corrected filing sent again to its recipient alone.
            (S::InProgress | S::Completed, E::Resent) => S::InProgress,
            (S::Draft | S::Completed, E::Archive) => S::Archived,
            (S::Archived, E::Unarchive { was_submitted: true }) => S::Completed,
            (S::Archived, E::Unarchive { was_submitted: false }) => S::Draft,
            (from, event) => return Err(IllegalTransition { from, event }),
        };
        Ok(next)
    }

    /// Whether the data may still be changed.
    pub fn is_editable(self) -> bool {
        self == Self::Draft
    }
}

/// Something that happens to a practice as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PracticeEvent {
    Submit,
    AllOutcomesKnown,
    NoRecipientReached,
    Resent,
    Archive,
    Unarchive { was_submitted: bool },
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

/// Control characters (but line breaks and tabs in long texts), and the invisible or
/// direction-changing characters and replacement marks that make a value read differently
/// from what it holds.
fn has_control_chars(value: &str, multiline: bool) -> bool {
    value.chars().any(|c| {
        (c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
            || matches!(c, '\u{FEFF}' | '\u{FFFD}')
    })
}

/// What a draft may hold: only the service's fields, and every value given must be valid.
/// Missing values are fine: a draft is saved to be completed later ("salva in bozza"); so is a
/// value an institution would refuse on receipt, which stays among the draft's problems.
pub fn check_draft(service: &Service, data: &PracticeData, today: Date) -> Vec<FieldError> {
    match validate_data(service, data, today) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .filter(|e| !matches!(e.reason, Reason::Required | Reason::Receivability { .. }))
            .collect(),
    }
}

/// Parses an amount in euro: `1234.56`, `1234,56` or `1.234,56`; returns cents.
fn parse_amount_cents(input: &str) -> Option<i64> {
    let s: String = input.trim().trim_end_matches('€').trim().chars().filter(|c| !c.is_whitespace()).collect();
    let normalised = if s.contains(',') { s.replace('.', "").replacen(',', ".", 1) } else { s };
    let (units, cents) = match normalised.split_once('.') {
        Some((u, c)) if (1..=2).contains(&c.len()) => (u.to_string(), format!("{c:0<2}")),
        Some(_) => return None,
        None => (normalised, "00".to_string()),
    };
    if units.is_empty() || !units.bytes().all(|c| c.is_ascii_digit()) || !cents.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    units.parse::<i64>().ok()?.checked_mul(100)?.checked_add(cents.parse::<i64>().ok()?)
}

/// Checks one non-empty value against its field and returns it in canonical form.
pub fn check_value(field: &FieldSpec, value: &str, today: Date) -> Result<String, Reason> {
    let value = value.trim();
    if value.chars().count() > field.max_length {
        return Err(Reason::TooLong { max: field.max_length });
    }
    if has_control_chars(value, matches!(field.kind, FieldKind::LongText)) {
        return Err(Reason::ControlCharacters);
    }
    match &field.kind {
        FieldKind::Text | FieldKind::LongText => Ok(value.to_string()),
        FieldKind::PersonTaxCode { .. } => CodiceFiscale::parse(value).map(|c| c.to_string()),
        FieldKind::BusinessTaxCode => BusinessTaxCode::parse(value).map(|c| c.to_string()),
        FieldKind::VatNumber => PartitaIva::parse(value).map(|c| c.to_string()),
        FieldKind::Email => parse_email(value),
        FieldKind::Ateco => parse_ateco(value),
        FieldKind::Cap => parse_cap(value),
        FieldKind::Province => parse_province(value),
        FieldKind::Date(rule) => {
            let date = parse_date(value)?;
            if rule.not_future && date > today {
                return Err(Reason::DateInFuture);
            }
            let mut earliest = rule.min_date.as_deref().and_then(|d| parse_date(d).ok());
            if let Some(days) = rule.min_days_from_today {
                let relative = today.checked_add(Duration::days(days));
                earliest = earliest.max(relative);
            }
            if let Some(min) = earliest.filter(|min| date < *min) {
                return Err(Reason::DateTooEarly { min: iso_date(min) });
            }
            if let Some(max) = rule.max_days_from_today.and_then(|d| today.checked_add(Duration::days(d))) {
                if date > max {
                    return Err(Reason::DateTooLate { max: iso_date(max) });
                }
            }
            Ok(iso_date(date))
        }
        FieldKind::Integer { min, max } => {
            let n: i64 = value.parse().map_err(|_| Reason::IntegerFormat)?;
            check_range(n, *min, *max, 1)?;
            Ok(n.to_string())
        }
        FieldKind::Amount { min, max } => {
            let cents = parse_amount_cents(value).ok_or(Reason::AmountFormat)?;
            check_range(cents, *min, *max, 100)?;
            Ok(format!("{}.{:02}", cents / 100, cents % 100))
        }
        FieldKind::Choice { options } => {
            options.iter().find(|o| o.value == value).map(|o| o.value.clone()).ok_or_else(|| Reason::NotAnOption {
                options: options.iter().map(|o| o.value.as_str()).collect::<Vec<_>>().join(", "),
            })
        }
    }
}

/// Range check where `scale` converts the catalog's units to the value's (100 for cents).
fn check_range(n: i64, min: Option<i64>, max: Option<i64>, scale: i64) -> Result<(), Reason> {
    if let Some(min) = min.filter(|m| n < m.saturating_mul(scale)) {
        return Err(Reason::NumberTooSmall { min });
    }
    if let Some(max) = max.filter(|m| n > m.saturating_mul(scale)) {
        return Err(Reason::NumberTooLarge { max });
    }
    Ok(())
}

/// Validates every field of a service: unknown fields, required ones, each value's rules and
/// the links between fields. Returns the data in canonical form (empty values dropped).
pub fn validate_data(service: &Service, data: &PracticeData, today: Date) -> Result<PracticeData, Vec<FieldError>> {
    let mut errors: Vec<FieldError> =
        data.keys().filter(|k| service.field(k).is_none()).map(|k| FieldError::new(k, Reason::UnknownField)).collect();
    let mut clean = PracticeData::new();
    for field in &service.fields {
        let raw = data.get(&field.spec.id).map(|v| v.trim()).unwrap_or_default();
        if raw.is_empty() {
            if field.spec.required {
                errors.push(FieldError::new(&field.spec.id, Reason::Required));
            }
            continue;
        }
        match check_value(&field.spec, raw, today) {
            Ok(v) => {
                clean.insert(field.spec.id.clone(), v);
            }
            Err(reason) => errors.push(FieldError::new(&field.spec.id, reason)),
        }
    }
    // A filing is never sent to an arbitrary office: the value that routes it must have one.
    for recipient in &service.recipients {
        let Some((routing, name)) = &recipient.routing else { continue };
        let Some((field, value)) = routing.key_in(&clean) else { continue };
        if routing.office_for(value).is_none() && !errors.iter().any(|e| e.field == field) {
            errors.push(FieldError::new(field, Reason::NoOffice { institution: name.it.clone() }));
        }
    }
    // What each institution would refuse on receipt, on values that passed their own checks.
    let faulted: BTreeSet<String> = errors.iter().map(|e| e.field.clone()).collect();
    for recipient in &service.recipients {
        for rule in recipient.rules.iter().filter(|rule| !faulted.contains(&rule.field)) {
            if rule.is_broken(&clean) {
                let reason = Reason::Receivability {
                    institution: recipient.institution.clone(),
                    name: recipient.name.clone(),
                    message: rule.message.clone(),
                };
                errors.push(FieldError::new(&rule.field, reason));
            }
        }
    }
    // A person's codice fiscale must encode the birth date given with it.
    for field in &service.fields {
        if let FieldKind::PersonTaxCode { birth_date_field: Some(link) } = &field.spec.kind {
            let cf = clean.get(&field.spec.id).and_then(|v| CodiceFiscale::parse(v).ok());
            let born = clean.get(link).and_then(|v| parse_date(v).ok());
            if let (Some(cf), Some(born)) = (cf, born) {
                if !cf.matches_birth_date(born) {
                    errors.push(FieldError::new(&field.spec.id, Reason::PersonTaxCodeBirthMismatch));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(clean)
    } else {
        Err(errors)
    }
}

/// Builds a filing's payload from canonical data through the filing kind's mapping: each
/// target path gets the source field's value; absent optional values are left out.
pub fn build_payload(filing: &FilingKind, data: &PracticeData) -> Value {
    let mut root = Map::new();
    for mapping in &filing.payload {
        if let Some(value) = data.get(&mapping.source) {
            insert_at(&mut root, &mapping.target, value.clone());
        }
    }
    Value::Object(root)
}

/// `payload` with the values another recipient's answer gave (`uses`), and the values the
/// answer did not carry (left out of the payload).
pub fn fill_from_answer(
    payload: &Value,
    uses: &[crate::catalog::AnswerMapping],
    protocol_number: Option<&str>,
    values: &std::collections::BTreeMap<String, String>,
) -> (Value, Vec<String>) {
    let mut root = match payload {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut missing = Vec::new();
    for u in uses {
        let value = if u.value == "protocol_number" {
            protocol_number.map(str::to_string)
        } else {
            values.get(&u.value).cloned()
        };
        match value {
            Some(v) => insert_at(&mut root, &u.target, v),
            None => missing.push(u.value.clone()),
        }
    }
    (Value::Object(root), missing)
}

/// Puts `value` at the dotted `target` of `root`, making the objects on the way.
fn insert_at(root: &mut Map<String, Value>, target: &str, value: String) {
    let mut node = root;
    let mut segments = target.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            node.insert(segment.to_string(), Value::String(value));
            return;
        }
        let child = node.entry(segment.to_string()).or_insert_with(|| Value::Object(Map::new()));
        match child {
            Value::Object(map) => node = map,
            // The catalog check forbids a target that is both a value and a parent.
            _ => return,
        }
    }
}

/// One filing ready to be queued for a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filing {
    pub institution: String,
    pub filing_kind: String,
    pub payload: Value,
    /// The institution's office competent for this practice, when it routes by territory.
    pub office: Option<String>,
    /// The recipient whose answer this filing waits for, and the values it takes from it.
    pub waits_for: Option<String>,
    pub uses: Vec<crate::catalog::AnswerMapping>,
}

/// Everything the store needs to write a submission in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The data in canonical form, replacing what the draft held.
    pub data: PracticeData,
    pub filings: Vec<Filing>,
    pub submitted_at: OffsetDateTime,
    /// Who sends it: the owner unless a collaborator acts on the owner's behalf.
    pub actor: CodiceFiscale,
}

/// Why a practice cannot be submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("{} field(s) are not valid", .0.len())]
    Invalid(Vec<FieldError>),
    #[error("the practice's service `{0}` is no longer in the catalog")]
    UnknownService(String),
}

/// Applies corrections to the fields at fault of a rejected filing and rebuilds that filing.
/// Only fields in `at_fault` may change; the whole practice is validated again. Returns the
/// practice's new canonical data and the filing's new payload.
pub fn prepare_correction(
    practice: &Practice,
    catalog: &Catalog,
    institution: &str,
    at_fault: &[String],
    corrections: &PracticeData,
    sent_payload: &Value,
    today: Date,
) -> Result<(PracticeData, Value), SubmitError> {
    let service = catalog
        .service(&practice.service_id)
        .ok_or_else(|| SubmitError::UnknownService(practice.service_id.clone()))?;
    let not_at_fault: Vec<FieldError> =
        corrections.keys().filter(|k| !at_fault.contains(k)).map(|k| FieldError::new(k, Reason::NotAtFault)).collect();
    if !not_at_fault.is_empty() {
        return Err(SubmitError::Invalid(not_at_fault));
    }
    let mut data = practice.data.clone();
    data.extend(corrections.iter().map(|(k, v)| (k.clone(), v.clone())));
    let data = validate_data(service, &data, today).map_err(SubmitError::Invalid)?;
    // Sending the faulted data again unchanged would only be refused again.
    let unchanged = !at_fault.is_empty() && at_fault.iter().all(|f| data.get(f) == practice.data.get(f));
    if unchanged {
        return Err(SubmitError::Invalid(at_fault.iter().map(|f| FieldError::new(f, Reason::NotCorrected)).collect()));
    }
    let recipient = service
        .recipients
        .iter()
        .find(|r| r.institution == institution)
        .ok_or_else(|| SubmitError::UnknownService(service.id.clone()))?;
    let filing = catalog.filing(recipient).ok_or_else(|| SubmitError::UnknownService(service.id.clone()))?;
    // Values another institution's answer gave stay as they were sent.
    let mut payload = build_payload(filing, &data);
    if let Value::Object(root) = &mut payload {
        for u in &filing.answers {
            let pointer = format!("/{}", u.target.replace('.', "/"));
            if let Some(value) = sent_payload.pointer(&pointer).and_then(Value::as_str) {
                insert_at(root, &u.target, value.to_string());
            }
        }
    }
    Ok((data, payload))
}

/// Checks that `practice` may be submitted now and builds its filings, one per recipient.
pub fn prepare_submission(
    practice: &Practice,
    catalog: &Catalog,
    now: OffsetDateTime,
) -> Result<Submission, SubmitError> {
    practice.state.apply(PracticeEvent::Submit)?;
    let service = catalog
        .service(&practice.service_id)
        .ok_or_else(|| SubmitError::UnknownService(practice.service_id.clone()))?;
    let data = validate_data(service, &practice.data, crate::italian_date(now)).map_err(SubmitError::Invalid)?;
    let mut filings = Vec::with_capacity(service.recipients.len());
    for recipient in &service.recipients {
        let filing = catalog.filing(recipient).ok_or_else(|| SubmitError::UnknownService(service.id.clone()))?;
        let office = recipient
            .routing
            .as_ref()
            .and_then(|(routing, _)| routing.key_in(&data).and_then(|(_, v)| routing.office_for(v)))
            .map(|o| o.id.clone());
        filings.push(Filing {
            institution: recipient.institution.clone(),
            filing_kind: recipient.filing.clone(),
            payload: build_payload(filing, &data),
            office,
            waits_for: recipient.waits_for.clone(),
            uses: filing.answers.clone(),
        });
    }
    Ok(Submission { data, filings, submitted_at: now, actor: practice.owner.clone() })
}

/// What the practice as a whole becomes once its deliveries stand as `states`, if anything.
pub fn practice_event_for(states: &[DeliveryState]) -> Option<PracticeEvent> {
    if states.is_empty() {
        None
    } else if states.iter().all(|s| matches!(s, DeliveryState::Failed | DeliveryState::Waiting))
        && states.contains(&DeliveryState::Failed)
    {
        // Those that wait can only wait for one that failed: nobody was reached.
        // Not delivered to any recipient: back to the drafts, to be sent again.
        Some(PracticeEvent::NoRecipientReached)
    } else if states.iter().all(|s| s.is_outcome()) {
        Some(PracticeEvent::AllOutcomesKnown)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ChoiceOption, DateRule, PayloadMapping, Text};
    use time::macros::date;

    fn text(s: &str) -> Text {
        Text { it: s.into(), en: s.into() }
    }

    fn spec(id: &str, kind: FieldKind) -> FieldSpec {
        FieldSpec { id: id.into(), label: text(id), hint: None, help: None, kind, required: true, max_length: 200 }
    }

    #[test]
    fn state_machine_allows_only_the_lifecycle() {
        use PracticeEvent as E;
        use PracticeState as S;
        assert_eq!(S::Draft.apply(E::Submit), Ok(S::InProgress));
        assert_eq!(S::InProgress.apply(E::AllOutcomesKnown), Ok(S::Completed));
        assert_eq!(S::InProgress.apply(E::NoRecipientReached), Ok(S::Draft));
        assert_eq!(S::Completed.apply(E::Resent), Ok(S::InProgress));
        assert!(S::Draft.apply(E::Resent).is_err());
        assert_eq!(S::Completed.apply(E::Archive), Ok(S::Archived));
        assert_eq!(S::Archived.apply(E::Unarchive { was_submitted: true }), Ok(S::Completed));
        assert_eq!(S::Archived.apply(E::Unarchive { was_submitted: false }), Ok(S::Draft));
        for illegal in [
            (S::InProgress, E::Submit),
            (S::Completed, E::Submit),
            (S::Archived, E::Submit),
            (S::Draft, E::AllOutcomesKnown),
            (S::InProgress, E::Archive),
            (S::Draft, E::Unarchive { was_submitted: false }),
        ] {
            assert!(illegal.0.apply(illegal.1).is_err(), "{illegal:?}");
        }
    }

    #[test]
    fn reference_numbers_round_trip() {
        let r = ReferenceNumber { year: 2026, sequence: 42 };
        assert_eq!(r.to_string(), "SPT-2026-0000042");
        assert_eq!(ReferenceNumber::parse("SPT-2026-0000042"), Some(r));
        assert_eq!(ReferenceNumber::parse("SPT-2026-42"), None);
    }

    #[test]
    fn values_are_checked_and_normalised() {
        let today = date!(2026 - 11 - 27);
        let cf = spec("owner.tax_code", FieldKind::PersonTaxCode { birth_date_field: None });
        assert_eq!(check_value(&cf, " rssmra45c12f205c", today), Ok("RSSMRA45C12F205C".into()));
        assert_eq!(check_value(&cf, "FOXDRA26C24H872A", today), Err(Reason::PersonTaxCodeCheckCharacter));

        let born = spec("owner.birth_date", FieldKind::Date(DateRule { not_future: true, ..DateRule::default() }));
        assert_eq!(check_value(&born, "28/11/2026", today), Err(Reason::DateInFuture));
        assert_eq!(check_value(&born, "12/03/1945", today), Ok("1945-03-12".into()));

        let start = spec(
            "business.start_date",
            FieldKind::Date(DateRule {
                min_days_from_today: Some(-30),
                max_days_from_today: Some(90),
                ..DateRule::default()
            }),
        );
        assert_eq!(check_value(&start, "2026-10-27", today), Err(Reason::DateTooEarly { min: "2026-10-28".into() }));
        assert_eq!(check_value(&start, "2027-02-26", today), Err(Reason::DateTooLate { max: "2027-02-25".into() }));
        assert_eq!(check_value(&start, "2026-12-01", today), Ok("2026-12-01".into()));

        let wages = spec("inail.wages", FieldKind::Amount { min: Some(0), max: Some(1_000_000) });
        assert_eq!(check_value(&wages, "1.234,5", today), Ok("1234.50".into()));
        assert_eq!(check_value(&wages, "1234.56 €", today), Ok("1234.56".into()));
        assert_eq!(check_value(&wages, "1.234", today), Err(Reason::AmountFormat));
        assert_eq!(check_value(&wages, "2000000", today), Err(Reason::NumberTooLarge { max: 1_000_000 }));

        let employees = spec("inail.employees", FieldKind::Integer { min: Some(0), max: Some(9999) });
        assert_eq!(check_value(&employees, "-1", today), Err(Reason::NumberTooSmall { min: 0 }));
        assert_eq!(check_value(&employees, "tre", today), Err(Reason::IntegerFormat));

        let scheme = spec(
            "inps.scheme",
            FieldKind::Choice { options: vec![ChoiceOption { value: "artigiani".into(), label: text("Artigiani") }] },
        );
        assert_eq!(check_value(&scheme, "artigiani", today), Ok("artigiani".into()));
        assert!(matches!(check_value(&scheme, "pirati", today), Err(Reason::NotAnOption { .. })));

        let name = spec("business.name", FieldKind::Text);
        assert_eq!(check_value(&name, "Bar\u{0007}", today), Err(Reason::ControlCharacters));
        for hidden in ["Bar\u{202E}moR", "Bar\u{200B}", "Bar\u{FFFD}\u{FFFD}", "\u{FEFF}Bar"] {
            assert_eq!(check_value(&name, hidden, today), Err(Reason::ControlCharacters), "{hidden:?}");
        }
        assert_eq!(check_value(&name, "Caffè «Roma» – l'Aquila", today), Ok("Caffè «Roma» – l'Aquila".into()));
    }

    #[test]
    fn drafts_may_be_incomplete_but_not_wrong() {
        let catalog = crate::catalog::tests::shipped();
        let service = catalog.service("avvio-ditta-individuale").expect("service");
        let today = date!(2026 - 11 - 27);
        let data = |pairs: &[(&str, &str)]| -> PracticeData {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(check_draft(service, &data(&[("business.name", "Bar Roma")]), today), vec![]);
        assert_eq!(
            check_draft(service, &data(&[("owner.tax_code", "FOXDRA26C24H872A"), ("seat.colour", "blu")]), today),
            vec![
                FieldError::new("seat.colour", Reason::UnknownField),
                FieldError::new("owner.tax_code", Reason::PersonTaxCodeCheckCharacter),
            ]
        );
        assert_eq!(
            check_draft(
                service,
                &data(&[("owner.tax_code", "RSSMRA45C12F205C"), ("owner.birth_date", "13/03/1945")]),
                today
            ),
            vec![FieldError::new("owner.tax_code", Reason::PersonTaxCodeBirthMismatch)]
        );
    }

    #[test]
    fn a_complete_practice_becomes_one_filing_per_recipient() {
        let catalog = crate::catalog::tests::shipped();
        let now = time::macros::datetime!(2026-11-27 10:00 UTC);
        let mut practice = Practice {
            id: PracticeId::from_random_bytes([7; 16]),
            owner: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
            actor: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
            service_id: "avvio-ditta-individuale".into(),
            state: PracticeState::Draft,
            data: crate::catalog::tests::complete_start_data(),
            reference: None,
            needs_resend: false,
            created_at: now,
            updated_at: now,
            submitted_at: None,
        };
        let submission = prepare_submission(&practice, &catalog, now).expect("valid");
        let recipients: Vec<&str> = submission.filings.iter().map(|f| f.institution.as_str()).collect();
        assert_eq!(recipients, ["registro-imprese", "inps", "inail"]);
        // Typed once, present in every filing; normalised on the way.
        for filing in &submission.filings {
            let text = filing.payload.to_string();
            assert!(text.contains("RSSMRA45C12F205C"), "{text}");
        }
        assert_eq!(submission.filings[2].payload["lavorazioni"]["retribuzioni_presunte"], "24000.00");
        assert_eq!(submission.data["seat.province"], "RM");

        practice.data.remove("inail.work_processes");
        match prepare_submission(&practice, &catalog, now) {
            Err(SubmitError::Invalid(errors)) => {
                assert_eq!(errors, vec![FieldError::new("inail.work_processes", Reason::Required)]);
            }
            other => panic!("{other:?}"),
        }
        practice.state = PracticeState::InProgress;
        assert!(matches!(prepare_submission(&practice, &catalog, now), Err(SubmitError::Illegal(_))));
    }

    #[test]
    fn a_correction_changes_only_the_faulted_fields_and_must_change_them() {
        let catalog = crate::catalog::tests::shipped();
        let now = time::macros::datetime!(2026-11-27 10:00 UTC);
        let today = crate::italian_date(now);
        let draft = Practice {
            id: PracticeId::from_random_bytes([8; 16]),
            owner: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
            actor: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
            service_id: "avvio-ditta-individuale".into(),
            state: PracticeState::Draft,
            data: crate::catalog::tests::complete_start_data(),
            reference: None,
            needs_resend: false,
            created_at: now,
            updated_at: now,
            submitted_at: None,
        };
        let sent = Practice { data: prepare_submission(&draft, &catalog, now).expect("valid").data, ..draft };
        let at_fault = vec!["inail.work_processes".to_string()];
        let correct = |corrections: &[(&str, &str)]| {
            let corrections: PracticeData = corrections.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            prepare_correction(&sent, &catalog, "inail", &at_fault, &corrections, &Value::Null, today)
        };
        let unchanged = sent.data["inail.work_processes"].clone();
        for attempt in [vec![], vec![("inail.work_processes", unchanged.as_str())]] {
            match correct(&attempt) {
                Err(SubmitError::Invalid(errors)) => {
                    assert_eq!(errors, vec![FieldError::new("inail.work_processes", Reason::NotCorrected)]);
                }
                other => panic!("{other:?}"),
            }
        }
        match correct(&[("business.name", "Altro")]) {
            Err(SubmitError::Invalid(errors)) => {
                assert_eq!(errors, vec![FieldError::new("business.name", Reason::NotAtFault)]);
            }
            other => panic!("{other:?}"),
        }
        let (data, payload) =
            correct(&[("inail.work_processes", "Somministrazione al banco e ai tavoli")]).expect("ok");
        assert_eq!(data["inail.work_processes"], "Somministrazione al banco e ai tavoli");
        assert!(payload.to_string().contains("Somministrazione al banco e ai tavoli"));
    }

    #[test]
    fn payload_follows_the_mapping() {
        let filing = FilingKind {
            id: "x".into(),
            title: text("x"),
            fields: vec![],
            payload: vec![
                PayloadMapping { target: "impresa.denominazione".into(), source: "business.name".into() },
                PayloadMapping { target: "impresa.sede.cap".into(), source: "seat.cap".into() },
                PayloadMapping { target: "note".into(), source: "business.note".into() },
            ],
            answers: vec![],
            rules: vec![],
        };
        let data: PracticeData =
            [("business.name".to_string(), "Bar Roma".to_string()), ("seat.cap".to_string(), "00184".to_string())]
                .into();
        assert_eq!(
            build_payload(&filing, &data),
            serde_json::json!({"impresa": {"denominazione": "Bar Roma", "sede": {"cap": "00184"}}})
        );
    }

    // Receivability rules of the shipped catalog (the rules themselves: `receivability`).
    #[test]
    fn the_shipped_catalog_refuses_before_sending_what_an_institution_would() {
        use crate::catalog::tests::{complete_start_data, shipped};
        use crate::validation::Reason;
        let catalog = shipped();
        let service = catalog.service("avvio-ditta-individuale").expect("service");
        let today = time::macros::date!(2026 - 12 - 01);
        assert!(validate_data(service, &complete_start_data(), today).is_ok());
        let mut data = complete_start_data();
        data.insert("inail.work_processes".into(), "Bar".into());
        data.insert("inps.scheme".into(), "artigiani".into());
        let errors = validate_data(service, &data, today).expect_err("refused");
        let refused: Vec<(&str, &str)> = errors
            .iter()
            .filter_map(|e| match &e.reason {
                Reason::Receivability { institution, .. } => Some((e.field.as_str(), institution.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(refused, [("business.ateco", "inps"), ("inail.work_processes", "inail")], "{errors:?}");
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn a_catalog_rule_mistake_names_file_line_and_column() {
        let mut sources = crate::catalog::tests::shipped_sources();
        let inail = sources.iter_mut().find(|s| s.path == "institutions/inail.toml").expect("inail");
        inail.text = inail.text.replacen("min_length = 20", "min_length = 20\npattern = \"[a-z\"", 1);
        let line = inail.text.lines().position(|l| l.starts_with("pattern = ")).expect("line") + 1;
        let errors = crate::catalog::Catalog::from_sources(&sources).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].file.as_str(), errors[0].line, errors[0].column), ("institutions/inail.toml", line, 11));
        assert!(errors[0].message.contains("not a regular expression"), "{errors:?}");
    }

    #[test]
    fn practice_follows_its_deliveries() {
        use crate::delivery::DeliveryState as S;
        assert_eq!(practice_event_for(&[S::Failed, S::Failed, S::Failed]), Some(PracticeEvent::NoRecipientReached));
        assert_eq!(practice_event_for(&[S::Failed, S::TakenInCharge, S::Failed]), None);
        assert_eq!(practice_event_for(&[S::Accepted, S::Rejected]), Some(PracticeEvent::AllOutcomesKnown));
        assert_eq!(practice_event_for(&[S::Accepted, S::Failed]), None);
        assert_eq!(practice_event_for(&[S::NoNews, S::Accepted]), None, "no news is not an outcome");
        assert_eq!(practice_event_for(&[S::Failed, S::Waiting]), Some(PracticeEvent::NoRecipientReached));
        assert_eq!(practice_event_for(&[S::Rejected, S::Waiting]), None, "held until corrected");
        assert_eq!(practice_event_for(&[S::Waiting, S::Waiting]), None);
    }
}
