//! A profile file as written, before it is checked (see [`super::Profile`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::services::{RawDelegations, RawLookup};
use crate::mapping::StatusSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) pattern: Spanned<String>,
    pub(super) security: Option<Spanned<String>>,
    pub(super) submit: RawOperation,
    pub(super) status: Option<RawOperation>,
    pub(super) callback: Option<RawCallback>,
    pub(super) authorisations: Option<Spanned<RawLookup>>,
    pub(super) delegations: Option<Spanned<RawDelegations>>,
    #[serde(default)]
    pub(super) news: RawNews,
    #[serde(default)]
    pub(super) fields: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) namespaces: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperation {
    pub(super) method: Option<Spanned<String>>,
    pub(super) path: Spanned<String>,
    pub(super) body: Option<Spanned<String>>,
    pub(super) content_type: Option<String>,
    pub(super) schema: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) answer: RawAnswer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnswer {
    pub(super) format: Option<Spanned<String>>,
    pub(super) delivered: Option<Spanned<Vec<StatusSpec>>>,
    pub(super) rejected: Option<Spanned<Vec<StatusSpec>>>,
    pub(super) retry: Option<Spanned<Vec<StatusSpec>>>,
    pub(super) protocol_number: Option<Spanned<String>>,
    pub(super) outcome: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) accepted: Vec<String>,
    #[serde(default)]
    pub(super) rejected_outcomes: Vec<String>,
    #[serde(default)]
    pub(super) pending: Vec<String>,
    pub(super) reasons: Option<Spanned<String>>,
    pub(super) fields: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) values: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallback {
    pub(super) filing_id: Option<Spanned<String>>,
    pub(super) message_id: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) answer: RawAnswer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNews {
    pub(super) poll_interval_ms: Option<u64>,
    pub(super) max_poll_interval_ms: Option<u64>,
    pub(super) callback_deadline_ms: Option<u64>,
    pub(super) no_news_after_ms: Option<u64>,
}
