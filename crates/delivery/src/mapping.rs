//! Where an institution puts what the portal needs in its answers: status codes that mean
//! delivered, rejected or "try again", and JSON Pointers (RFC 6901, with `*` for every element
//! of an array or object) to the protocol number, the outcome, the reasons, the fields at fault
//! and any other value later filings use (the REA number, the codice ditta).
//!
//! One [`AnswerMap`] reads the answer to a filing, to a status request and to a callback alike,
//! so that an institution's own shapes are described once, by configuration.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A set of HTTP status codes: `422`, `"2xx"`, `"500-599"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    pub fn parse_spec(spec: &StatusSpec) -> Result<(u16, u16), String> {
        match spec {
            StatusSpec::Code(c) if (100..=599).contains(c) => Ok((*c, *c)),
            StatusSpec::Code(c) => Err(format!("`{c}` is not an HTTP status code")),
            StatusSpec::Text(t) => {
                let t = t.trim();
                if let Some(class) = t.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok()) {
                    if (1..=5).contains(&class) {
                        return Ok((class * 100, class * 100 + 99));
                    }
                }
                if let Some((a, b)) = t.split_once('-') {
                    if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                        if (100..=599).contains(&a) && (a..=599).contains(&b) {
                            return Ok((a, b));
                        }
                    }
                }
                Err(format!("`{t}` is not a status code, a class such as \"5xx\" or a range such as \"500-504\""))
            }
        }
    }

    pub fn from_ranges(ranges: Vec<(u16, u16)>) -> Self {
        Self(ranges)
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&status))
    }
}

/// A status code as written in a profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Text(String),
}

/// A JSON Pointer whose tokens may be `*` (every element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    source: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// `""` is the whole document; otherwise it starts with `/`.
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Ok(Self { source: String::new(), tokens: Vec::new() });
        }
        let Some(rest) = source.strip_prefix('/') else {
            return Err(format!(
                "`{source}` is not a JSON Pointer: it must start with `/` (for example `/protocollo`)"
            ));
        };
        let tokens = rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
        Ok(Self { source: source.to_string(), tokens })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every value the pointer reaches, in document order.
    pub fn select<'a>(&self, document: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![document];
        for token in &self.tokens {
            let mut next = Vec::new();
            for value in current {
                match (token.as_str(), value) {
                    ("*", Value::Array(items)) => next.extend(items.iter()),
                    ("*", Value::Object(map)) => next.extend(map.values()),
                    (t, Value::Array(items)) => next.extend(t.parse::<usize>().ok().and_then(|i| items.get(i))),
                    (t, Value::Object(map)) => next.extend(map.get(t)),
                    _ => {}
                }
            }
            current = next;
        }
        current
    }

    /// The values reached, as text (strings as they are, numbers and booleans written out);
    /// empty strings and nulls are left out.
    pub fn texts(&self, document: &Value) -> Vec<String> {
        self.select(document).into_iter().filter_map(scalar_text).filter(|t| !t.trim().is_empty()).collect()
    }

    /// The first value reached, as text.
    pub fn text(&self, document: &Value) -> Option<String> {
        self.texts(document).into_iter().next()
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How the outcome is written: where, and which words mean accepted, rejected or "still being
/// processed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeMap {
    pub at: Pointer,
    pub accepted: Vec<String>,
    pub rejected: Vec<String>,
    /// Words that mean "no outcome yet" (anything neither accepted nor rejected is read so too,
    /// but a word listed nowhere is logged).
    pub pending: Vec<String>,
}

/// What an answer (or a callback) says, read through an [`AnswerMap`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct News {
    pub protocol_number: Option<String>,
    /// `Some(true)` accepted, `Some(false)` rejected, `None` no outcome yet.
    pub accepted: Option<bool>,
    pub reasons: Vec<String>,
    /// Paths of the institution's own payload at fault, as it names them.
    pub paths: Vec<String>,
    /// Other values named by the profile (REA number, codice ditta, ...).
    pub values: BTreeMap<String, String>,
    /// An outcome word the profile does not list.
    pub unknown_outcome: Option<String>,
}

/// Where, in an institution's answer, each thing the portal needs is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMap {
    pub delivered: StatusSet,
    pub rejected: StatusSet,
    pub retry: StatusSet,
    pub protocol_number: Option<Pointer>,
    pub outcome: Option<OutcomeMap>,
    pub reasons: Option<Pointer>,
    pub fields: Option<Pointer>,
    pub values: BTreeMap<String, Pointer>,
}

impl Default for AnswerMap {
    fn default() -> Self {
        Self {
            delivered: StatusSet(vec![(200, 299)]),
            rejected: StatusSet(vec![(422, 422)]),
            retry: StatusSet(vec![(408, 409), (425, 425), (429, 429), (500, 599)]),
            protocol_number: None,
            outcome: None,
            reasons: None,
            fields: None,
            values: BTreeMap::new(),
        }
    }
}

impl AnswerMap {
    /// Reads what `document` says.
    pub fn read(&self, document: &Value) -> News {
        let mut news = News {
            protocol_number: self.protocol_number.as_ref().and_then(|p| p.text(document)),
            reasons: self.reasons.as_ref().map(|p| p.texts(document)).unwrap_or_default(),
            paths: self.fields.as_ref().map(|p| p.texts(document)).unwrap_or_default(),
            values: self.values.iter().filter_map(|(name, p)| Some((name.clone(), p.text(document)?))).collect(),
            ..News::default()
        };
        if let Some(outcome) = &self.outcome {
            if let Some(word) = outcome.at.text(document) {
                let is = |list: &[String]| list.iter().any(|w| w.eq_ignore_ascii_case(word.trim()));
                if is(&outcome.accepted) {
                    news.accepted = Some(true);
                } else if is(&outcome.rejected) {
                    news.accepted = Some(false);
                } else if !is(&outcome.pending) {
                    news.unknown_outcome = Some(word);
                }
            }
        }
        news
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointer(s: &str) -> Pointer {
        Pointer::parse(s).expect("pointer")
    }

    #[test]
    fn pointers_reach_nested_values_and_every_element_with_a_star() {
        let doc = json!({"esito": "RESPINTA", "rea": {"numero": 1234567}, "a/b": true,
                          "errori": [{"campo": "x", "descrizione": "d1"}, {"campo": "y"}]});
        assert_eq!(pointer("/rea/numero").text(&doc).as_deref(), Some("1234567"));
        assert_eq!(pointer("/errori/*/campo").texts(&doc), vec!["x", "y"]);
        assert_eq!(pointer("/errori/1/campo").texts(&doc), vec!["y"]);
        assert_eq!(pointer("/errori/*/descrizione").texts(&doc), vec!["d1"]);
        assert_eq!(pointer("/a~1b").text(&doc).as_deref(), Some("true"));
        assert!(pointer("/nowhere/*").texts(&doc).is_empty());
        assert!(Pointer::parse("esito").is_err());
    }

    #[test]
    fn status_sets_take_codes_classes_and_ranges() {
        let parse = |s: StatusSpec| StatusSet::parse_spec(&s);
        assert_eq!(parse(StatusSpec::Code(422)), Ok((422, 422)));
        assert_eq!(parse(StatusSpec::Text("5xx".into())), Ok((500, 599)));
        assert_eq!(parse(StatusSpec::Text("500-504".into())), Ok((500, 504)));
        assert!(parse(StatusSpec::Text("6xx".into())).is_err());
        assert!(parse(StatusSpec::Code(42)).is_err());
        assert!(parse(StatusSpec::Text("504-500".into())).is_err());
        let set = StatusSet::from_ranges(vec![(200, 299), (303, 303)]);
        assert!(set.contains(201) && set.contains(303) && !set.contains(302));
    }

    #[test]
    fn an_answer_map_reads_an_institutions_own_words() {
        let map = AnswerMap {
            protocol_number: Some(pointer("/protocollo")),
            outcome: Some(OutcomeMap {
                at: pointer("/esito"),
                accepted: vec!["ISCRITTA".into()],
                rejected: vec!["RESPINTA".into()],
                pending: vec!["IN_LAVORAZIONE".into()],
            }),
            reasons: Some(pointer("/errori/*/descrizione")),
            fields: Some(pointer("/errori/*/campo")),
            values: BTreeMap::from([("numero_rea".to_string(), pointer("/rea/numero"))]),
            ..AnswerMap::default()
        };
        let news = map.read(&json!({"protocollo": "RI-1", "esito": "iscritta", "rea": {"numero": "MI-1"}}));
        assert_eq!(news.protocol_number.as_deref(), Some("RI-1"));
        assert_eq!(news.accepted, Some(true));
        assert_eq!(news.values["numero_rea"], "MI-1");
        let news = map.read(&json!({"esito": "RESPINTA", "errori": [{"campo": "sede/cap", "descrizione": "CAP"}]}));
        assert_eq!(
            (news.accepted, news.paths, news.reasons),
            (Some(false), vec!["sede/cap".into()], vec!["CAP".into()])
        );
        let news = map.read(&json!({"esito": "IN_LAVORAZIONE"}));
        assert_eq!((news.accepted, news.unknown_outcome), (None, None));
        let news = map.read(&json!({"esito": "BOH"}));
        assert_eq!(news.unknown_outcome.as_deref(), Some("BOH"));
    }
}
