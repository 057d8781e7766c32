//! Where an institution puts what the portal needs in its answers: status codes that mean
//! delivered, rejected or "try again", and [`Locator`]s — JSON Pointers (RFC 6901, with `*` for
//! every element of an array or object) in JSON answers, XPath 1.0 in XML answers — to the
//! protocol number, the outcome, the reasons, the fields at fault and any other value later
//! filings use (the REA number, the codice ditta).
//!
//! One [`AnswerMap`] reads the answer to a filing, to a status request and to a callback alike,
//! so that an institution's own shapes are described once, by configuration.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::xml::{self, Namespaces};

/// How an institution writes its answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Json,
    Xml,
}

/// Where a value is in an answer: a JSON Pointer or an XPath, by the answer's [`Format`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    Json(Pointer),
    XPath(String),
}

impl Locator {
    /// A locator for an answer in `format`, or why `source` is not one.
    pub fn parse(format: Format, source: &str) -> Result<Self, String> {
        match format {
            Format::Json => Pointer::parse(source).map(Self::Json),
            Format::Xml if xml::is_xpath(source) => Ok(Self::XPath(source.to_string())),
            Format::Xml => Err(format!("`{source}` is not an XPath 1.0 expression")),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Json(p) => p.as_str(),
            Self::XPath(x) => x,
        }
    }
}

/// An answer's body, parsed once for its format; every locator is then read from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Json(Value),
    /// The values each XPath of the map selected.
    Xml(BTreeMap<String, Vec<String>>),
    /// A body that is not what the format says (or empty): nothing is found in it.
    Unreadable,
}

impl Answer {
    /// Every text `locator` reaches.
    pub fn texts(&self, locator: &Locator) -> Vec<String> {
        match (self, locator) {
            (Self::Json(document), Locator::Json(p)) => p.texts(document),
            (Self::Xml(selected), Locator::XPath(x)) => selected.get(x).cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The first text `locator` reaches.
    pub fn text(&self, locator: &Locator) -> Option<String> {
        self.texts(locator).into_iter().next()
    }
}

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
    pub at: Locator,
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
    /// The answer as the institution signed it, when it did.
    pub evidence: Option<crate::evidence::Evidence>,
}

/// Where, in an institution's answer, each thing the portal needs is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMap {
    pub format: Format,
    /// XML answers: the prefixes their XPaths use.
    pub namespaces: Namespaces,
    pub delivered: StatusSet,
    pub rejected: StatusSet,
    pub retry: StatusSet,
    pub protocol_number: Option<Locator>,
    pub outcome: Option<OutcomeMap>,
    pub reasons: Option<Locator>,
    pub fields: Option<Locator>,
    pub values: BTreeMap<String, Locator>,
    /// Locators read besides these (a callback's filing id and message id).
    pub extra: Vec<Locator>,
}

impl Default for AnswerMap {
    fn default() -> Self {
        Self {
            format: Format::Json,
            namespaces: Namespaces::new(),
            delivered: StatusSet(vec![(200, 299)]),
            rejected: StatusSet(vec![(422, 422)]),
            retry: StatusSet(vec![(408, 409), (425, 425), (429, 429), (500, 599)]),
            protocol_number: None,
            outcome: None,
            reasons: None,
            fields: None,
            values: BTreeMap::new(),
            extra: Vec::new(),
        }
    }
}

impl AnswerMap {
    /// Every locator of the map.
    fn locators(&self) -> impl Iterator<Item = &Locator> {
        [&self.protocol_number, &self.reasons, &self.fields]
            .into_iter()
            .flatten()
            .chain(self.outcome.as_ref().map(|o| &o.at))
            .chain(self.values.values())
            .chain(self.extra.iter())
    }

    /// Parses `body` as the map's format says, reading every XPath of the map at once.
    pub fn parse(&self, body: &[u8]) -> Answer {
        match self.format {
            Format::Json => serde_json::from_slice(body).map(Answer::Json).unwrap_or(Answer::Unreadable),
            Format::Xml => {
                let Ok(text) = std::str::from_utf8(body) else { return Answer::Unreadable };
                let expressions: Vec<&str> = self.locators().map(Locator::as_str).collect();
                match xml::select(text, &self.namespaces, &expressions) {
                    Ok(found) => Answer::Xml(expressions.iter().map(|e| e.to_string()).zip(found).collect()),
                    Err(e) => {
                        tracing::debug!(error = %e, "an XML answer that cannot be read");
                        Answer::Unreadable
                    }
                }
            }
        }
    }

    /// Reads what a body says.
    pub fn read(&self, body: &[u8]) -> News {
        self.read_answer(&self.parse(body))
    }

    /// Reads what a parsed answer says.
    pub fn read_answer(&self, answer: &Answer) -> News {
        let mut news = News {
            protocol_number: self.protocol_number.as_ref().and_then(|p| answer.text(p)),
            reasons: self.reasons.as_ref().map(|p| answer.texts(p)).unwrap_or_default(),
            paths: self.fields.as_ref().map(|p| answer.texts(p)).unwrap_or_default(),
            values: self.values.iter().filter_map(|(name, p)| Some((name.clone(), answer.text(p)?))).collect(),
            ..News::default()
        };
        if let Some(outcome) = &self.outcome {
            if let Some(word) = answer.text(&outcome.at) {
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

    fn json(s: &str) -> Locator {
        Locator::Json(pointer(s))
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
            protocol_number: Some(json("/protocollo")),
            outcome: Some(OutcomeMap {
                at: json("/esito"),
                accepted: vec!["ISCRITTA".into()],
                rejected: vec!["RESPINTA".into()],
                pending: vec!["IN_LAVORAZIONE".into()],
            }),
            reasons: Some(json("/errori/*/descrizione")),
            fields: Some(json("/errori/*/campo")),
            values: BTreeMap::from([("numero_rea".to_string(), json("/rea/numero"))]),
            ..AnswerMap::default()
        };
        let read = |v: Value| map.read(v.to_string().as_bytes());
        let news = read(json!({"protocollo": "RI-1", "esito": "iscritta", "rea": {"numero": "MI-1"}}));
        assert_eq!(news.protocol_number.as_deref(), Some("RI-1"));
        assert_eq!(news.accepted, Some(true));
        assert_eq!(news.values["numero_rea"], "MI-1");
        let news = read(json!({"esito": "RESPINTA", "errori": [{"campo": "sede/cap", "descrizione": "CAP"}]}));
        assert_eq!(
            (news.accepted, news.paths, news.reasons),
            (Some(false), vec!["sede/cap".into()], vec!["CAP".into()])
        );
        let news = read(json!({"esito": "IN_LAVORAZIONE"}));
        assert_eq!((news.accepted, news.unknown_outcome), (None, None));
        let news = read(json!({"esito": "BOH"}));
        assert_eq!(news.unknown_outcome.as_deref(), Some("BOH"));
        assert_eq!(map.read(b"<not json>"), News::default());
    }

    #[test]
    fn an_xml_answer_is_read_with_xpath() {
        let x = |s: &str| Locator::parse(Format::Xml, s).expect("xpath");
        let map = AnswerMap {
            format: Format::Xml,
            namespaces: Namespaces::from([("e".to_string(), "urn:inps:esito".to_string())]),
            protocol_number: Some(x("/e:esito/e:protocollo")),
            outcome: Some(OutcomeMap {
                at: x("/e:esito/@stato"),
                accepted: vec!["ACCOLTA".into()],
                rejected: vec!["RESPINTA".into()],
                pending: vec![],
            }),
            reasons: Some(x("//e:motivo")),
            fields: Some(x("//e:motivo/@campo")),
            ..AnswerMap::default()
        };
        let news = map.read(
            br#"<esito xmlns="urn:inps:esito" stato="RESPINTA"><protocollo>INPS-1</protocollo>
                <motivo campo="/domanda/titolare/codice_fiscale">codice fiscale errato</motivo></esito>"#,
        );
        assert_eq!(news.protocol_number.as_deref(), Some("INPS-1"));
        assert_eq!(news.accepted, Some(false));
        assert_eq!(news.paths, vec!["/domanda/titolare/codice_fiscale"]);
        assert_eq!(news.reasons, vec!["codice fiscale errato"]);
        assert_eq!(map.read(b"{\"json\": true}"), News::default());
        assert!(Locator::parse(Format::Xml, "/e:esito[").is_err());
    }
}
