//! One field's definition, as the dictionary or a filing gives it, checked.

use std::collections::BTreeSet;

use toml::Spanned;

use super::model::{ChoiceOption, DateRule, FieldKind, FieldSpec};
use super::raw::RawField;
use super::report::{is_field_id, Reporter};

/// The field's type name, with the options that only some types take checked against it.
/// Returns whether every option given fits the type.
fn options_fit_the_type(f: &RawField, id: &str, offset: usize, r: &mut Reporter<'_>) -> bool {
    let type_name = f.kind.get_ref().as_str();
    let date_options = f.not_future.is_some()
        || f.min_date.is_some()
        || f.min_days_from_today.is_some()
        || f.max_days_from_today.is_some();
    let misfits = [
        (
            !matches!(type_name, "integer" | "amount") && (f.min.is_some() || f.max.is_some()),
            "min and max apply to integer and amount fields only",
        ),
        (type_name != "date" && date_options, "date rules apply to date fields only"),
        (type_name != "choice" && f.options.is_some(), "options apply to choice fields only"),
        (
            type_name != "person_tax_code" && f.birth_date_field.is_some(),
            "birth_date_field applies to person_tax_code fields only",
        ),
    ];
    let mut ok = true;
    for (misfit, message) in misfits {
        if misfit {
            r.at(offset, format!("field `{id}`: {message}"));
            ok = false;
        }
    }
    ok
}

fn date_rule(f: &RawField, id: &str, r: &mut Reporter<'_>, ok: &mut bool) -> DateRule {
    let min_date = f.min_date.as_ref().and_then(|d| match crate::identifiers::parse_date(d.get_ref()) {
        Ok(date) => Some(crate::identifiers::iso_date(date)),
        Err(_) => {
            r.at(d.span().start, format!("field `{id}`: min_date `{}` is not a date (YYYY-MM-DD)", d.get_ref()));
            *ok = false;
            None
        }
    });
    DateRule {
        not_future: f.not_future.unwrap_or(false),
        min_date,
        min_days_from_today: f.min_days_from_today,
        max_days_from_today: f.max_days_from_today,
    }
}

fn choice(f: &RawField, id: &str, offset: usize, r: &mut Reporter<'_>, ok: &mut bool) -> FieldKind {
    let options: Vec<ChoiceOption> = f
        .options
        .as_ref()
        .map(|o| o.get_ref().iter().map(|o| ChoiceOption { value: o.value.clone(), label: o.label.clone() }).collect())
        .unwrap_or_default();
    let distinct: BTreeSet<&str> = options.iter().map(|o| o.value.as_str()).collect();
    if options.is_empty() || distinct.len() != options.len() || distinct.contains("") {
        r.at(offset, format!("field `{id}`: a choice needs options with distinct, non-empty values"));
        *ok = false;
    }
    FieldKind::Choice { options }
}

/// The kind a type name means, or `None` (reported) for a type nobody knows.
fn kind(f: &RawField, id: &str, offset: usize, r: &mut Reporter<'_>, ok: &mut bool) -> Option<FieldKind> {
    Some(match f.kind.get_ref().as_str() {
        "text" => FieldKind::Text,
        "long_text" => FieldKind::LongText,
        "person_tax_code" => {
            FieldKind::PersonTaxCode { birth_date_field: f.birth_date_field.as_ref().map(|s| s.get_ref().clone()) }
        }
        "business_tax_code" => FieldKind::BusinessTaxCode,
        "vat_number" => FieldKind::VatNumber,
        "email" => FieldKind::Email,
        "ateco" => FieldKind::Ateco,
        "cap" => FieldKind::Cap,
        "province" => FieldKind::Province,
        "date" => FieldKind::Date(date_rule(f, id, r, ok)),
        "integer" => FieldKind::Integer { min: f.min, max: f.max },
        "amount" => FieldKind::Amount { min: f.min, max: f.max },
        "choice" => choice(f, id, offset, r, ok),
        other => {
            r.at(
                f.kind.span().start,
                format!(
                    "field `{id}`: unknown type `{other}` (known: text, long_text, person_tax_code, business_tax_code, \
                     vat_number, email, ateco, cap, province, date, integer, amount, choice)"
                ),
            );
            return None;
        }
    })
}

/// The field, or `None` when its definition has a mistake (reported).
pub(super) fn build_field(raw: &Spanned<RawField>, r: &mut Reporter<'_>) -> Option<FieldSpec> {
    let f = raw.get_ref();
    let offset = raw.span().start;
    let id = f.id.get_ref().clone();
    let mut ok = true;
    if !is_field_id(&id) {
        r.at(
            f.id.span().start,
            format!("field id `{id}` must be `group.name` in lower case (letters, digits, _ and -)"),
        );
        ok = false;
    }
    r.text(&f.label, "label");
    ok &= options_fit_the_type(f, &id, offset, r);
    let kind = kind(f, &id, offset, r, &mut ok)?;
    let default_max = if matches!(kind, FieldKind::LongText) { 2000 } else { 200 };
    let max_length = f.max_length.unwrap_or(default_max);
    if max_length == 0 || max_length > 10_000 {
        r.at(offset, format!("field `{id}`: max_length must be between 1 and 10000"));
        ok = false;
    }
    ok.then(|| FieldSpec {
        id,
        label: f.label.get_ref().clone(),
        hint: f.hint.clone(),
        help: f.help.clone(),
        kind,
        required: f.required.unwrap_or(true),
        max_length,
    })
}

/// Checks that each person_tax_code's birth_date_field names a date field among `own` or
/// `also_visible` (the dictionary, for a filing's fields).
pub(super) fn check_birth_date_links(own: &[(FieldSpec, usize)], also_visible: &[FieldSpec], r: &mut Reporter<'_>) {
    for (spec, offset) in own {
        if let FieldKind::PersonTaxCode { birth_date_field: Some(link) } = &spec.kind {
            let is_date = own
                .iter()
                .map(|(f, _)| f)
                .chain(also_visible)
                .any(|f| &f.id == link && matches!(f.kind, FieldKind::Date(_)));
            if !is_date {
                r.at(*offset, format!("field `{}`: birth_date_field `{link}` is not a known date field", spec.id));
            }
        }
    }
}
