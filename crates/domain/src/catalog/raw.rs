//! The catalog's files as written: TOML shapes with the place of each value, checked by
//! `build`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::receivability::RawRule;
use crate::routing::RawRouting;
use crate::text::Text;
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDictionary {
    #[serde(default)]
    pub(super) life_events: Vec<RawLifeEvent>,
    #[serde(default)]
    pub(super) fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLifeEvent {
    pub(super) id: Spanned<String>,
    pub(super) title: Spanned<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOption {
    pub(super) value: String,
    pub(super) label: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub(super) id: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) label: Spanned<Text>,
    pub(super) hint: Option<Text>,
    pub(super) help: Option<Text>,
    pub(super) required: Option<bool>,
    pub(super) max_length: Option<usize>,
    pub(super) min: Option<i64>,
    pub(super) max: Option<i64>,
    pub(super) not_future: Option<bool>,
    pub(super) min_date: Option<Spanned<String>>,
    pub(super) min_days_from_today: Option<i64>,
    pub(super) max_days_from_today: Option<i64>,
    pub(super) options: Option<Spanned<Vec<RawOption>>>,
    pub(super) birth_date_field: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstitution {
    pub(super) id: Spanned<String>,
    pub(super) name: Spanned<Text>,
    pub(super) authorisation_help: Spanned<Text>,
    /// Where the institution explains how to obtain it (an https address).
    #[serde(default)]
    pub(super) authorisation_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) filings: Vec<Spanned<RawFiling>>,
    pub(super) routing: Option<RawRouting>,
    #[serde(default)]
    pub(super) provides: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFiling {
    pub(super) id: Spanned<String>,
    pub(super) title: Spanned<Text>,
    #[serde(default)]
    pub(super) fields: Vec<Spanned<RawField>>,
    #[serde(default)]
    pub(super) payload: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Payload target → `<institution>.<value>` from that institution's answer.
    #[serde(default)]
    pub(super) answers: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub(super) rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServices {
    #[serde(default)]
    pub(super) services: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) id: Spanned<String>,
    pub(super) life_event: Spanned<String>,
    pub(super) title: Spanned<Text>,
    pub(super) summary: Spanned<Text>,
    pub(super) help: Spanned<Text>,
    pub(super) common_fields: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) optional_fields: Vec<Spanned<String>>,
    /// `{ field = "owner.tax_code", from = "business.tax_code" }`: never asked, copied.
    #[serde(default)]
    pub(super) derived: Vec<Spanned<RawDerivation>>,
    pub(super) recipients: Spanned<Vec<RawRecipient>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDerivation {
    pub(super) field: String,
    pub(super) from: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecipient {
    pub(super) institution: String,
    pub(super) filing: String,
}
