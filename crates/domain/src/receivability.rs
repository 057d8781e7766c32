//! Receivability rules ("condizioni di ricevibilità"): the checks an institution applies when a
//! filing reaches it, declared in the catalog with the institution's own message, so that the
//! portal refuses before sending what the institution would refuse on receipt.
//!
//! A rule is written under a filing kind:
//!
//! ```toml
//! [[filings.rules]]
//! field = "business.ateco"
//! pattern = "(45|46|47|55|56)\\..*"
//! when = { field = "inps.scheme", one_of = ["commercianti"] }
//! message.it = "Per la gestione commercianti serve un codice ATECO del commercio o del turismo"
//! message.en = "The traders' scheme needs an ATECO code of commerce or tourism"
//! ```
//!
//! `field` is one of the fields the filing's payload is made from (the institution sees no
//! other). Exactly one check per rule: `required`, `min_length`, `max_length`, `pattern` (the
//! whole value must match), `one_of`, `not_before` / `not_after` (an ISO date, or another field
//! holding a date), `at_least` / `at_most` (a number), `differs_from` (another field). A check
//! other than `required` applies only when the field has a value; `when` limits the rule to the
//! practices where another field has (`one_of`) or has not (`not_one_of`) one of some values.
//! Rules see the data in canonical form (dates ISO, amounts `1234.56`), after each field's own
//! checks passed.

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use std::collections::BTreeMap;

use crate::text::Text;

/// A practice's data by field id, in canonical form (the same map as `practice::PracticeData`;
/// named here so that this module stands below the catalog and the practice).
type PracticeData = BTreeMap<String, String>;

/// One rule of an institution for one field of a filing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub field: String,
    pub check: Check,
    pub when: Option<Condition>,
    /// The institution's own words for the refusal.
    pub message: Text,
}

/// What a rule asks of the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Check {
    Required,
    MinLength(usize),
    MaxLength(usize),
    Pattern(Pattern),
    OneOf(Vec<String>),
    NotBefore(Bound),
    NotAfter(Bound),
    /// In cents, so that integers and amounts compare alike.
    AtLeast(i64),
    AtMost(i64),
    DiffersFrom(String),
}

/// A date limit: a fixed date, or the date another field holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Date(String),
    Field(String),
}

/// The rule applies only when `field`'s value is (or, `negated`, is not) one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub field: String,
    pub values: Vec<String>,
    pub negated: bool,
}

/// A regular expression that must match a whole value; compared by its text.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Self { source: source.to_string(), regex })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl Rule {
    /// Whether the canonical `data` breaks this rule.
    pub fn is_broken(&self, data: &PracticeData) -> bool {
        if let Some(when) = &self.when {
            let value = data.get(&when.field).map(String::as_str).unwrap_or_default();
            if when.values.iter().any(|v| v == value) == when.negated {
                return false;
            }
        }
        let Some(value) = data.get(&self.field).filter(|v| !v.is_empty()) else {
            return self.check == Check::Required;
        };
        let other = |field: &str| data.get(field).filter(|v| !v.is_empty());
        match &self.check {
            Check::Required => false,
            Check::MinLength(min) => value.chars().count() < *min,
            Check::MaxLength(max) => value.chars().count() > *max,
            Check::Pattern(p) => !p.is_match(value),
            Check::OneOf(values) => !values.contains(value),
            // Canonical dates are ISO, which sort as text; a missing bound field breaks nothing.
            Check::NotBefore(bound) => bound_value(bound, &other).is_some_and(|b| value.as_str() < b),
            Check::NotAfter(bound) => bound_value(bound, &other).is_some_and(|b| value.as_str() > b),
            Check::AtLeast(min) => cents(value).is_some_and(|n| n < *min),
            Check::AtMost(max) => cents(value).is_some_and(|n| n > *max),
            Check::DiffersFrom(field) => other(field).is_some_and(|o| o == value),
        }
    }

    /// The fields the rule reads besides its own.
    fn other_fields(&self) -> impl Iterator<Item = &str> {
        let bound = match &self.check {
            Check::NotBefore(Bound::Field(f)) | Check::NotAfter(Bound::Field(f)) | Check::DiffersFrom(f) => Some(f),
            _ => None,
        };
        bound.into_iter().chain(self.when.as_ref().map(|w| &w.field)).map(String::as_str)
    }
}

fn bound_value<'a>(bound: &'a Bound, other: &impl Fn(&str) -> Option<&'a String>) -> Option<&'a str> {
    match bound {
        Bound::Date(d) => Some(d.as_str()),
        Bound::Field(f) => other(f).map(String::as_str),
    }
}

/// A canonical integer (`12`) or amount (`12.50`) in cents.
fn cents(value: &str) -> Option<i64> {
    let (units, fraction) = value.split_once('.').unwrap_or((value, ""));
    let fraction = format!("{fraction:0<2}");
    if fraction.len() != 2 {
        return None;
    }
    units.parse::<i64>().ok()?.checked_mul(100)?.checked_add(fraction.parse::<i64>().ok()?)
}

// ---- as written in the catalog --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    field: Spanned<String>,
    required: Option<bool>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Spanned<String>>,
    one_of: Option<Vec<String>>,
    not_before: Option<Spanned<String>>,
    not_after: Option<Spanned<String>>,
    at_least: Option<Spanned<String>>,
    at_most: Option<Spanned<String>>,
    differs_from: Option<Spanned<String>>,
    when: Option<Spanned<RawCondition>>,
    message: Spanned<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCondition {
    field: String,
    one_of: Option<Vec<String>>,
    not_one_of: Option<Vec<String>>,
}

/// Checks one rule as written; `fields` are the ids the filing's payload is made from.
/// Mistakes go to `report` with the offset they concern.
pub(crate) fn build(raw: &Spanned<RawRule>, fields: &[&str], report: &mut dyn FnMut(usize, String)) -> Option<Rule> {
    let r = raw.get_ref();
    let at = raw.span().start;
    let field = r.field.get_ref().clone();
    let mut ok = true;
    if !fields.contains(&field.as_str()) {
        report(r.field.span().start, format!("rule on `{field}`: the filing's payload is not made from that field"));
        ok = false;
    }
    let message = r.message.get_ref();
    if message.it.trim().is_empty() || message.en.trim().is_empty() {
        report(r.message.span().start, "a rule's message needs a non-empty Italian (it) and English (en) text".into());
        ok = false;
    }
    let checks = check_of(r, fields, &mut |offset, m| {
        ok = false;
        report(offset, m)
    });
    let check = match checks.len() {
        1 => checks.into_iter().next(),
        0 => {
            report(at, format!("rule on `{field}` has no check (required, min_length, max_length, pattern, one_of, not_before, not_after, at_least, at_most or differs_from)"));
            None
        }
        _ => {
            report(at, format!("rule on `{field}` has more than one check: write one rule per check"));
            None
        }
    };
    let when = r.when.as_ref().and_then(|w| condition(w, fields, report));
    if r.when.is_some() && when.is_none() {
        ok = false;
    }
    let rule = Rule { field, check: check?, when, message: message.clone() };
    if let Some(f) = rule.other_fields().find(|f| !fields.contains(f)) {
        report(at, format!("rule on `{}` reads `{f}`, which the filing's payload is not made from", rule.field));
        ok = false;
    }
    ok.then_some(rule)
}

/// Every check the rule writes (one is expected).
fn check_of(r: &RawRule, fields: &[&str], report: &mut dyn FnMut(usize, String)) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(required) = r.required {
        if required {
            checks.push(Check::Required);
        } else {
            report(r.field.span().start, "`required = false` is no rule: leave it out".into());
        }
    }
    checks.extend(r.min_length.map(Check::MinLength));
    checks.extend(r.max_length.map(Check::MaxLength));
    if let Some(p) = &r.pattern {
        match Pattern::new(p.get_ref()) {
            Ok(pattern) => checks.push(Check::Pattern(pattern)),
            Err(e) => report(p.span().start, format!("pattern `{}` is not a regular expression: {e}", p.get_ref())),
        }
    }
    if let Some(values) = &r.one_of {
        if values.is_empty() {
            report(r.field.span().start, "`one_of` needs at least one value".into());
        }
        checks.push(Check::OneOf(values.clone()));
    }
    for (raw, make) in [(&r.not_before, Check::NotBefore as fn(Bound) -> Check), (&r.not_after, Check::NotAfter)] {
        let Some(raw) = raw else { continue };
        let text = raw.get_ref();
        if crate::identifiers::parse_date(text).is_ok() && text.len() == 10 && text.as_bytes()[4] == b'-' {
            checks.push(make(Bound::Date(text.clone())));
        } else if fields.contains(&text.as_str()) {
            checks.push(make(Bound::Field(text.clone())));
        } else {
            report(
                raw.span().start,
                format!("`{text}` is neither an ISO date (YYYY-MM-DD) nor a field of the payload"),
            );
        }
    }
    for (raw, make) in [(&r.at_least, Check::AtLeast as fn(i64) -> Check), (&r.at_most, Check::AtMost)] {
        let Some(raw) = raw else { continue };
        match cents(raw.get_ref()) {
            Some(n) => checks.push(make(n)),
            None => report(raw.span().start, format!("`{}` is not a number like 12 or 1234.50", raw.get_ref())),
        }
    }
    if let Some(other) = &r.differs_from {
        checks.push(Check::DiffersFrom(other.get_ref().clone()));
    }
    checks
}

fn condition(raw: &Spanned<RawCondition>, fields: &[&str], report: &mut dyn FnMut(usize, String)) -> Option<Condition> {
    let w = raw.get_ref();
    let (values, negated) = match (&w.one_of, &w.not_one_of) {
        (Some(v), None) => (v.clone(), false),
        (None, Some(v)) => (v.clone(), true),
        _ => {
            report(raw.span().start, "`when` needs exactly one of `one_of` and `not_one_of`".into());
            return None;
        }
    };
    if !fields.contains(&w.field.as_str()) {
        report(raw.span().start, format!("`when` reads `{}`, which the filing's payload is not made from", w.field));
        return None;
    }
    Some(Condition { field: w.field.clone(), values, negated })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(check: Check) -> Rule {
        Rule { field: "a.x".into(), check, when: None, message: Text { it: "no".into(), en: "no".into() } }
    }

    fn data(pairs: &[(&str, &str)]) -> PracticeData {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn each_check_refuses_and_accepts() {
        let cases: Vec<(Check, &str, &str)> = vec![
            (Check::MinLength(5), "abcd", "abcde"),
            (Check::MaxLength(3), "abcd", "abc"),
            (Check::Pattern(Pattern::new("(45|46)\\..*").unwrap()), "56.30.00", "46.11.00"),
            (Check::OneOf(vec!["RM".into(), "MI".into()]), "TO", "MI"),
            (Check::NotBefore(Bound::Date("2020-01-01".into())), "2019-12-31", "2020-01-01"),
            (Check::NotAfter(Bound::Date("2020-01-01".into())), "2020-01-02", "2020-01-01"),
            (Check::AtLeast(150), "1.49", "1.50"),
            (Check::AtMost(1000), "11", "10"),
        ];
        for (check, bad, good) in cases {
            let r = rule(check.clone());
            assert!(r.is_broken(&data(&[("a.x", bad)])), "{check:?} accepted {bad}");
            assert!(!r.is_broken(&data(&[("a.x", good)])), "{check:?} refused {good}");
            assert!(!r.is_broken(&data(&[])), "{check:?} applied to an empty value");
        }
    }

    #[test]
    fn required_applies_to_empty_values_only() {
        let r = rule(Check::Required);
        assert!(r.is_broken(&data(&[])));
        assert!(r.is_broken(&data(&[("a.x", "")])));
        assert!(!r.is_broken(&data(&[("a.x", "v")])));
    }

    #[test]
    fn comparisons_between_fields() {
        let differs = rule(Check::DiffersFrom("a.y".into()));
        assert!(differs.is_broken(&data(&[("a.x", "K"), ("a.y", "K")])));
        assert!(!differs.is_broken(&data(&[("a.x", "K"), ("a.y", "J")])));
        assert!(!differs.is_broken(&data(&[("a.x", "K")])));
        let after = rule(Check::NotBefore(Bound::Field("a.y".into())));
        assert!(after.is_broken(&data(&[("a.x", "2020-01-01"), ("a.y", "2020-01-02")])));
        assert!(!after.is_broken(&data(&[("a.x", "2020-01-02"), ("a.y", "2020-01-02")])));
    }

    #[test]
    fn a_condition_limits_the_rule() {
        let mut r = rule(Check::Required);
        r.when = Some(Condition { field: "a.kind".into(), values: vec!["s".into()], negated: false });
        assert!(r.is_broken(&data(&[("a.kind", "s")])));
        assert!(!r.is_broken(&data(&[("a.kind", "t")])));
        assert!(!r.is_broken(&data(&[])));
        r.when = Some(Condition { field: "a.kind".into(), values: vec!["s".into()], negated: true });
        assert!(!r.is_broken(&data(&[("a.kind", "s")])));
        assert!(r.is_broken(&data(&[("a.kind", "t")])));
    }

    #[test]
    fn patterns_match_whole_values() {
        let p = Pattern::new("[0-9]{3}").unwrap();
        assert!(p.is_match("123"));
        assert!(!p.is_match("1234"));
        assert!(!p.is_match("x123"));
    }

    fn built(toml_text: &str) -> (Option<Rule>, Vec<String>) {
        #[derive(Deserialize)]
        struct Doc {
            rules: Vec<Spanned<RawRule>>,
        }
        let doc: Doc = toml::from_str(toml_text).unwrap();
        let mut problems = Vec::new();
        let rule = build(&doc.rules[0], &["a.x", "a.y"], &mut |_, m| problems.push(m));
        (rule, problems)
    }

    #[test]
    fn mistakes_in_a_rule_are_reported() {
        let message = "message = { it = \"no\", en = \"no\" }";
        let cases = [
            (format!("[[rules]]\nfield = \"a.z\"\nmin_length = 2\n{message}"), "payload is not made from"),
            (format!("[[rules]]\nfield = \"a.x\"\n{message}"), "has no check"),
            (format!("[[rules]]\nfield = \"a.x\"\nmin_length = 2\nmax_length = 3\n{message}"), "more than one check"),
            (format!("[[rules]]\nfield = \"a.x\"\npattern = \"(\"\n{message}"), "not a regular expression"),
            (format!("[[rules]]\nfield = \"a.x\"\nnot_before = \"yesterday\"\n{message}"), "neither an ISO date"),
            (format!("[[rules]]\nfield = \"a.x\"\nat_least = \"ten\"\n{message}"), "not a number"),
            (format!("[[rules]]\nfield = \"a.x\"\ndiffers_from = \"b.q\"\n{message}"), "reads `b.q`"),
            (
                format!("[[rules]]\nfield = \"a.x\"\nrequired = true\nwhen = {{ field = \"a.y\" }}\n{message}"),
                "exactly one of",
            ),
            (
                "[[rules]]\nfield = \"a.x\"\nrequired = true\nmessage = { it = \"\", en = \"no\" }".to_string(),
                "non-empty",
            ),
        ];
        for (text, expected) in cases {
            let (rule, problems) = built(&text);
            assert!(rule.is_none(), "{text} built a rule");
            assert!(problems.iter().any(|p| p.contains(expected)), "{text}: {problems:?}");
        }
        let (rule, problems) = built(&format!(
            "[[rules]]\nfield = \"a.x\"\nnot_before = \"a.y\"\nwhen = {{ field = \"a.y\", not_one_of = [\"\"] }}\n{message}"
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(rule.map(|r| r.check), Some(Check::NotBefore(Bound::Field("a.y".into()))));
    }
}
