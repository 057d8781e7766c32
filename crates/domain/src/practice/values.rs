//! What a draft may hold ([`check_draft`]) and what a practice must hold to be sent
//! ([`validate_data`]): every field's rules, in the catalog's terms.

use std::collections::BTreeSet;

use time::{Date, Duration};

use super::model::*;
use crate::catalog::{FieldKind, FieldSpec, Service};
use crate::identifiers::{
    iso_date, parse_ateco, parse_cap, parse_date, parse_email, parse_province, BusinessTaxCode, CodiceFiscale,
    PartitaIva,
};
use crate::validation::{FieldError, Reason};

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
/// Derived fields take their source's value first; what is wrong with one is reported on
/// the field the user typed.
pub fn validate_data(service: &Service, data: &PracticeData, today: Date) -> Result<PracticeData, Vec<FieldError>> {
    let mut derived = data.clone();
    service.derive(&mut derived);
    validate_derived(service, &derived, today).map_err(|errors| {
        let mut reported: Vec<FieldError> = Vec::with_capacity(errors.len());
        let (mapped, own): (Vec<FieldError>, Vec<FieldError>) =
            errors.into_iter().partition(|e| service.derived_from(&e.field).is_some());
        reported.extend(own);
        for mut e in mapped {
            e.field = service.derived_from(&e.field).unwrap_or_default().to_string();
            // One message per field typed: its own problem first.
            if !reported.iter().any(|r| r.field == e.field) {
                reported.push(e);
            }
        }
        reported
    })
}

fn validate_derived(service: &Service, data: &PracticeData, today: Date) -> Result<PracticeData, Vec<FieldError>> {
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
