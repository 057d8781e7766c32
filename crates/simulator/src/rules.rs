//! The simulated institution's own checks on receipt, on the payload as it arrives.
//!
//! They are written here independently of the portal's catalog, as a real institution's are:
//! a rule the institution *publishes* is one the catalog declares too (the portal should never
//! send a filing that breaks it); an unpublished one only the institution can apply (its
//! classification tables, its registers), and the portal learns of it from the rejection.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One check on the value at a dotted payload path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub path: String,
    pub check: Check,
    /// The rule applies only when the value at this path is one of these.
    #[serde(default)]
    pub when: Option<(String, Vec<String>)>,
    pub message: String,
    /// Published by the institution (and so declared in the portal's catalog).
    #[serde(default)]
    pub published: bool,
}

/// What a rule asks of a value. Every check but `Required` applies only to a value present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Check {
    Required,
    MinLength {
        min: usize,
    },
    /// The whole value matches the regular expression.
    Pattern {
        pattern: String,
    },
    DiffersFrom {
        path: String,
    },
    /// A date (ISO) not earlier than the one at `path`.
    NotBefore {
        path: String,
    },
    /// The value contains one of the words (case-insensitive): a classification table.
    MentionsOneOf {
        words: Vec<String>,
    },
}

impl Rule {
    pub fn unpublished(path: &str, check: Check, message: &str) -> Self {
        Self { path: path.into(), check, when: None, message: message.into(), published: false }
    }

    pub fn published(path: &str, check: Check, message: &str) -> Self {
        Self { published: true, ..Self::unpublished(path, check, message) }
    }

    pub fn when(mut self, path: &str, values: &[&str]) -> Self {
        self.when = Some((path.into(), values.iter().map(|v| (*v).to_string()).collect()));
        self
    }

    fn is_broken(&self, payload: &Value) -> bool {
        let text = |path: &str| json_at(payload, path).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        if let Some((path, values)) = &self.when {
            if !text(path).is_some_and(|v| values.iter().any(|x| x == v)) {
                return false;
            }
        }
        let Some(value) = text(&self.path) else {
            return self.check == Check::Required;
        };
        match &self.check {
            Check::Required => false,
            Check::MinLength { min } => value.chars().count() < *min,
            // A rule that does not compile refuses everything: the operator sees it at once.
            Check::Pattern { pattern } => {
                !regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
            }
            Check::DiffersFrom { path } => text(path).is_some_and(|other| other.eq_ignore_ascii_case(value)),
            Check::NotBefore { path } => text(path).is_some_and(|other| value < other),
            Check::MentionsOneOf { words } => {
                let lower = value.to_lowercase();
                !words.iter().any(|w| lower.contains(&w.to_lowercase()))
            }
        }
    }
}

/// The rules `payload` breaks, as `{path, message, published}`.
pub fn broken(rules: &[Rule], payload: &Value) -> Vec<Value> {
    rules
        .iter()
        .filter(|rule| rule.is_broken(payload))
        .map(|rule| json!({ "path": rule.path, "message": rule.message, "published": rule.published }))
        .collect()
}

/// The value at a dotted path of a JSON payload.
pub(crate) fn json_at<'a>(payload: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(payload, |node, segment| node.get(segment))
}

/// The rules the demo's INAIL applies. The length is published (the catalog declares it); the
/// classification of the risk by the tariff's words is INAIL's own.
pub fn inail_rules() -> Vec<Rule> {
    let tariff = [
        "somministrazione",
        "alimenti",
        "bevande",
        "vendita",
        "commercio",
        "ufficio",
        "produzione",
        "costruzion",
        "edil",
        "trasport",
        "riparazion",
        "manutenzion",
        "pulizi",
        "consulenz",
        "artigian",
        "agricol",
        "magazzin",
        "laboratori",
        "installazion",
        "cucina",
        "ristorazion",
        "bar",
    ];
    vec![
        Rule::published(
            "lavorazioni.descrizione",
            Check::MinLength { min: 20 },
            "Descrizione delle lavorazioni insufficiente per classificare il rischio (almeno 20 caratteri)",
        ),
        Rule::unpublished(
            "lavorazioni.descrizione",
            Check::MentionsOneOf { words: tariff.iter().map(|w| (*w).to_string()).collect() },
            "Lavorazioni non riconducibili a una voce della tariffa dei premi: descrivere l'attività svolta",
        ),
    ]
}

/// The rules the demo's INPS applies, all published in the catalog.
pub fn inps_rules() -> Vec<Rule> {
    vec![
        Rule::published(
            "azienda.ateco",
            Check::Pattern { pattern: r"(45|46|47|55|56|79)\..*".into() },
            "Codice ATECO non compatibile con la gestione commercianti",
        )
        .when("gestione", &["commercianti"]),
        Rule::published(
            "azienda.ateco",
            Check::Pattern { pattern: r"(1[0-9]|2[0-9]|3[0-3]|4[1-3]|95|96)\..*".into() },
            "Codice ATECO non compatibile con la gestione artigiani",
        )
        .when("gestione", &["artigiani"]),
        Rule::published(
            "collaboratore.codice_fiscale",
            Check::DiffersFrom { path: "titolare.codice_fiscale".into() },
            "Il collaboratore familiare coincide con il titolare",
        ),
    ]
}

/// The rules the demo's Registro delle imprese applies, all published in the catalog.
pub fn registry_rules() -> Vec<Rule> {
    vec![
        Rule::published(
            "impresa.descrizione_attivita",
            Check::MinLength { min: 10 },
            "Descrizione dell'attività insufficiente per l'attribuzione del codice ATECO",
        ),
        Rule::published(
            "impresa.data_inizio_attivita",
            Check::NotBefore { path: "titolare.data_nascita".into() },
            "Data di inizio attività anteriore alla nascita del titolare",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_nested_payload_paths() {
        let payload = json!({"lavorazioni": {"descrizione": "Bar"}});
        assert_eq!(json_at(&payload, "lavorazioni.descrizione"), Some(&json!("Bar")));
        assert_eq!(json_at(&payload, "lavorazioni.addetti"), None);
    }

    #[test]
    fn inail_refuses_short_and_unclassifiable_descriptions() {
        let at = |d: &str| broken(&inail_rules(), &json!({"lavorazioni": {"descrizione": d}}));
        assert_eq!(at("Bar").len(), 1);
        assert_eq!(at("Bar")[0]["published"], true);
        let unclassified = at("Attività da definire in seguito");
        assert_eq!(unclassified.len(), 1);
        assert_eq!(unclassified[0]["published"], false);
        assert!(at("Somministrazione di alimenti e bevande").is_empty());
        assert!(broken(&inail_rules(), &json!({"ditta": {}})).is_empty(), "no description, no rule");
    }

    #[test]
    fn conditions_and_comparisons() {
        let traders = json!({"gestione": "commercianti", "azienda": {"ateco": "10.11.00"}});
        assert_eq!(broken(&inps_rules(), &traders).len(), 1);
        let crafts = json!({"gestione": "artigiani", "azienda": {"ateco": "10.11.00"}});
        assert!(broken(&inps_rules(), &crafts).is_empty());
        let same = json!({"titolare": {"codice_fiscale": "X"}, "collaboratore": {"codice_fiscale": "X"}});
        assert_eq!(broken(&inps_rules(), &same).len(), 1);
        let early = json!({"impresa": {"descrizione_attivita": "Bar e caffetteria", "data_inizio_attivita": "1979-01-01"},
                           "titolare": {"data_nascita": "1980-01-01"}});
        assert_eq!(broken(&registry_rules(), &early).len(), 1);
    }
}
