//! A checked catalog: the dictionary of common fields, the institutions with their filing
//! kinds, and the integrated services.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::receivability::Rule;
use crate::routing::Routing;
use crate::text::Text;

/// What kind of value a field holds, and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    LongText,
    /// A person's codice fiscale; optionally checked against a birth-date field.
    PersonTaxCode {
        birth_date_field: Option<String>,
    },
    /// A business's codice fiscale: 16 characters (sole trader) or 11 digits (company).
    BusinessTaxCode,
    VatNumber,
    Email,
    Ateco,
    Cap,
    Province,
    Date(DateRule),
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Euro amount; normalised to `1234.56`.
    Amount {
        min: Option<i64>,
        max: Option<i64>,
    },
    Choice {
        options: Vec<ChoiceOption>,
    },
}

/// Limits on a date, relative to today where given in days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DateRule {
    pub not_future: bool,
    /// Earliest accepted date, ISO.
    pub min_date: Option<String>,
    pub min_days_from_today: Option<i64>,
    pub max_days_from_today: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChoiceOption {
    pub value: String,
    pub label: Text,
}

/// One field: of the dictionary (common) or of a filing kind (own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldSpec {
    /// Dotted id, e.g. `owner.tax_code`, `inail.work_processes`.
    pub id: String,
    pub label: Text,
    pub hint: Option<Text>,
    pub help: Option<Text>,
    #[serde(flatten)]
    pub kind: FieldKind,
    pub required: bool,
    pub max_length: usize,
}

/// A group of services for one event in a business's life ("nascita", "variazione", ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifeEvent {
    pub id: String,
    pub title: Text,
}

/// One line of a payload mapping: `target` (dotted path in the filing JSON) takes the value of
/// the field `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadMapping {
    pub target: String,
    pub source: String,
}

/// A value of a filing's payload taken from another institution's answer: the protocol
/// number, or a value its channel reads from its answers (the REA number, the codice ditta).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerMapping {
    pub target: String,
    pub institution: String,
    /// `protocol_number`, or one of the institution's `provides`.
    pub value: String,
}

/// A kind of filing an institution receives ("adempimento").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilingKind {
    pub id: String,
    pub title: Text,
    pub fields: Vec<FieldSpec>,
    pub payload: Vec<PayloadMapping>,
    /// Values taken from another institution's answer: the filing waits for that answer.
    pub answers: Vec<AnswerMapping>,
    /// What the institution checks on receipt ("condizioni di ricevibilità").
    pub rules: Vec<Rule>,
}

/// An institution that receives filings ("ente").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Institution {
    pub id: String,
    pub name: Text,
    /// How to obtain the authorisation to file online there.
    pub authorisation_help: Text,
    /// The institution's own page on obtaining it (https).
    pub authorisation_url: Option<String>,
    pub filings: Vec<FilingKind>,
    /// Which office a filing goes to, when the institution has several ("competenza
    /// territoriale").
    pub routing: Option<Routing>,
    /// The values its answers carry that other filings may use (besides the protocol number).
    pub provides: Vec<String>,
}

impl Institution {
    pub fn filing(&self, id: &str) -> Option<&FilingKind> {
        self.filings.iter().find(|f| f.id == id)
    }
}

/// One recipient of a service: an institution and the filing it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub institution: String,
    /// The institution's name, for messages.
    pub name: Text,
    pub filing: String,
    /// The filing kind's receivability rules.
    pub rules: Vec<Rule>,
    /// The institution's routing to its offices, if it has one; with its name, for messages.
    pub routing: Option<(Routing, Text)>,
    /// The recipient whose answer this filing waits for (its filing uses values from it).
    pub waits_for: Option<String>,
}

/// Where a field of a service is shown: the common data, or one recipient's own section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Section {
    /// Common data, by dictionary group (`business`, `owner`, `seat`, ...).
    Common(String),
    /// Fields of the filing for this institution.
    Recipient(String),
}

/// A field as a service uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceField {
    #[serde(flatten)]
    pub spec: FieldSpec,
    pub section: Section,
}

/// An integrated service ("servizio integrato").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub id: String,
    pub life_event: String,
    pub title: Text,
    pub summary: Text,
    pub help: Text,
    pub recipients: Vec<Recipient>,
    /// Common fields first (dictionary order), then each recipient's own fields. `required`
    /// already reflects the service's `optional_fields`.
    pub fields: Vec<ServiceField>,
    /// Fields whose value is another's, never asked ("for a sole trader the business's codice
    /// fiscale is the owner's").
    pub derived: Vec<Derivation>,
}

/// A field of a service that takes the value of another of its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derivation {
    /// The field filled in, never shown in the forms.
    pub field: String,
    /// The field asked, whose value it takes.
    pub from: String,
}

impl Service {
    pub fn field(&self, id: &str) -> Option<&ServiceField> {
        self.fields.iter().find(|f| f.spec.id == id)
    }

    /// The field `id` takes its value from, when it is derived.
    pub fn derived_from(&self, id: &str) -> Option<&str> {
        self.derived.iter().find(|d| d.field == id).map(|d| d.from.as_str())
    }

    /// The fields that take their value from `id`.
    pub fn derived_of<'s>(&'s self, id: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.derived.iter().filter(move |d| d.from == id).map(|d| d.field.as_str())
    }

    /// Fills every derived field from its source, so the two never differ (`data` is a
    /// practice's data; the catalog does not depend on the practice module). A value sent for
    /// the derived field alone (an older client) becomes the source's, never dropped.
    pub fn derive(&self, data: &mut std::collections::BTreeMap<String, String>) {
        let given = |data: &std::collections::BTreeMap<String, String>, id: &str| {
            data.get(id).filter(|v| !v.trim().is_empty()).cloned()
        };
        for d in &self.derived {
            let value = given(data, &d.from).or_else(|| given(data, &d.field));
            match value {
                Some(value) => {
                    data.insert(d.from.clone(), value.clone());
                    data.insert(d.field.clone(), value);
                }
                None => {
                    data.remove(&d.field);
                }
            }
        }
    }
}

/// The whole catalog, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    pub life_events: Vec<LifeEvent>,
    pub dictionary: Vec<FieldSpec>,
    pub institutions: Vec<Institution>,
    pub services: Vec<Service>,
}

impl Catalog {
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    pub fn institution(&self, id: &str) -> Option<&Institution> {
        self.institutions.iter().find(|i| i.id == id)
    }

    pub fn filing(&self, recipient: &Recipient) -> Option<&FilingKind> {
        self.institution(&recipient.institution)?.filing(&recipient.filing)
    }
}

/// What kind of catalog file a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `dictionary.toml`: life events and common fields.
    Dictionary,
    /// `institutions/*.toml`: one institution per file.
    Institution,
    /// `services/*.toml`: any number of services.
    Services,
}

/// The text of one catalog file and the name to report errors against.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub kind: SourceKind,
    pub text: String,
}

/// A mistake in a catalog file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}
