//! Submission and correction: one filing per recipient built from the catalog's payload
//! mapping ([`prepare_submission`], [`prepare_correction`]), and the practice's state from its
//! deliveries.

use serde_json::{Map, Value};
use time::{Date, OffsetDateTime};

use super::model::*;
use super::values::*;
use crate::catalog::{Catalog, FilingKind};
use crate::identifiers::CodiceFiscale;
use crate::validation::{FieldError, Reason};

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
