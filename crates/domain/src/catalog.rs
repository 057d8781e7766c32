//! The catalog of integrated services, loaded from declarative TOML files.
//!
//! A catalog is made of:
//! - a **dictionary** of common fields (`business.*`, `owner.*`, `seat.*`, ...) typed once per
//!   practice, and the life events that group services;
//! - **institutions**, each with the filing kinds it receives: the filing's own fields and a
//!   payload mapping that says which field fills which part of the filing sent;
//! - **services** ("servizi integrati"): a life event, the common fields collected, and one filing
//!   per recipient institution.
//!
//! [`Catalog::from_sources`] parses the texts and checks every cross-reference; each mistake is
//! reported with file, line and column. Reading the files is the caller's job (no I/O here).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::receivability::{RawRule, Rule};
use crate::routing::{RawRouting, Routing};

pub use crate::text::Text;

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
}

impl Service {
    pub fn field(&self, id: &str) -> Option<&ServiceField> {
        self.fields.iter().find(|f| f.spec.id == id)
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

// ---- raw shapes, as written in the files -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDictionary {
    #[serde(default)]
    life_events: Vec<RawLifeEvent>,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifeEvent {
    id: Spanned<String>,
    title: Spanned<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    value: String,
    label: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    id: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    label: Spanned<Text>,
    hint: Option<Text>,
    help: Option<Text>,
    required: Option<bool>,
    max_length: Option<usize>,
    min: Option<i64>,
    max: Option<i64>,
    not_future: Option<bool>,
    min_date: Option<Spanned<String>>,
    min_days_from_today: Option<i64>,
    max_days_from_today: Option<i64>,
    options: Option<Spanned<Vec<RawOption>>>,
    birth_date_field: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstitution {
    id: Spanned<String>,
    name: Spanned<Text>,
    authorisation_help: Spanned<Text>,
    #[serde(default)]
    filings: Vec<Spanned<RawFiling>>,
    routing: Option<RawRouting>,
    #[serde(default)]
    provides: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiling {
    id: Spanned<String>,
    title: Spanned<Text>,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
    #[serde(default)]
    payload: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Payload target → `<institution>.<value>` from that institution's answer.
    #[serde(default)]
    answers: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServices {
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    id: Spanned<String>,
    life_event: Spanned<String>,
    title: Spanned<Text>,
    summary: Spanned<Text>,
    help: Spanned<Text>,
    common_fields: Vec<Spanned<String>>,
    #[serde(default)]
    optional_fields: Vec<Spanned<String>>,
    recipients: Spanned<Vec<RawRecipient>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipient {
    institution: String,
    filing: String,
}

// ---- checking ------------------------------------------------------------------------------

/// Sets which recipient each filing waits for, from the answers its filing uses; returns the
/// mistakes: an institution that is not a recipient of the service, a value it does not
/// provide, answers from two institutions, a circle of waits.
fn link_answers(service: &str, recipients: &mut [Recipient], institutions: &[Institution]) -> Vec<String> {
    let mut problems = Vec::new();
    let ids: Vec<String> = recipients.iter().map(|r| r.institution.clone()).collect();
    for recipient in recipients.iter_mut() {
        let filing =
            institutions.iter().find(|i| i.id == recipient.institution).and_then(|i| i.filing(&recipient.filing));
        let Some(filing) = filing else { continue };
        let mut from: BTreeSet<&str> = BTreeSet::new();
        for a in &filing.answers {
            from.insert(a.institution.as_str());
            let other = institutions.iter().find(|i| i.id == a.institution).filter(|_| ids.contains(&a.institution));
            let Some(other) = other else {
                problems.push(format!(
                    "service `{service}`: the filing for `{}` uses `{}.{}`, but `{}` is not a recipient of the service",
                    recipient.institution, a.institution, a.value, a.institution
                ));
                continue;
            };
            if a.value != "protocol_number" && !other.provides.contains(&a.value) {
                let provided: String = other.provides.iter().map(|p| format!(", {p}")).collect();
                problems.push(format!(
                    "service `{service}`: `{}` does not provide `{}` (it provides protocol_number{provided})",
                    a.institution, a.value
                ));
            }
        }
        if from.len() > 1 {
            problems.push(format!(
                "service `{service}`: the filing for `{}` waits for more than one institution",
                recipient.institution
            ));
        }
        recipient.waits_for = from.into_iter().next().map(str::to_string);
    }
    for start in recipients.iter() {
        let mut at = start.waits_for.clone();
        for _ in 0..recipients.len() {
            let Some(next) = at else { break };
            if next == start.institution {
                problems
                    .push(format!("service `{service}`: `{}` waits, through others, for itself", start.institution));
                break;
            }
            at = recipients.iter().find(|r| r.institution == next).and_then(|r| r.waits_for.clone());
        }
    }
    problems
}

/// Collects errors against the file being read.
struct Reporter<'a> {
    source: &'a Source,
    errors: &'a mut Vec<CatalogError>,
}

impl Reporter<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = crate::line_column(&self.source.text, offset);
        self.errors.push(CatalogError { file: self.source.path.clone(), line, column, message: message.into() });
    }

    fn text(&mut self, text: &Spanned<Text>, what: &str) {
        if text.get_ref().it.trim().is_empty() || text.get_ref().en.trim().is_empty() {
            self.at(text.span().start, format!("{what} needs a non-empty Italian (it) and English (en) text"));
        }
    }
}

fn is_segment(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A dotted id of at least two segments: `group.name`.
fn is_field_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2 && parts.iter().all(|p| is_segment(p))
}

/// A dotted target path in a filing payload: segments of letters, digits and `_`.
fn is_target_path(s: &str) -> bool {
    s.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

fn build_field(raw: &Spanned<RawField>, r: &mut Reporter<'_>) -> Option<FieldSpec> {
    let f = raw.get_ref();
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
    let type_name = f.kind.get_ref().as_str();
    let numeric = matches!(type_name, "integer" | "amount");
    if !numeric && (f.min.is_some() || f.max.is_some()) {
        r.at(raw.span().start, format!("field `{id}`: min and max apply to integer and amount fields only"));
        ok = false;
    }
    let date_options = f.not_future.is_some()
        || f.min_date.is_some()
        || f.min_days_from_today.is_some()
        || f.max_days_from_today.is_some();
    if type_name != "date" && date_options {
        r.at(raw.span().start, format!("field `{id}`: date rules apply to date fields only"));
        ok = false;
    }
    if type_name != "choice" && f.options.is_some() {
        r.at(raw.span().start, format!("field `{id}`: options apply to choice fields only"));
        ok = false;
    }
    if type_name != "person_tax_code" && f.birth_date_field.is_some() {
        r.at(raw.span().start, format!("field `{id}`: birth_date_field applies to person_tax_code fields only"));
        ok = false;
    }
    let kind = match type_name {
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
        "date" => {
            let min_date = f.min_date.as_ref().and_then(|d| match crate::identifiers::parse_date(d.get_ref()) {
                Ok(date) => Some(crate::identifiers::iso_date(date)),
                Err(_) => {
                    r.at(
                        d.span().start,
                        format!("field `{id}`: min_date `{}` is not a date (YYYY-MM-DD)", d.get_ref()),
                    );
                    ok = false;
                    None
                }
            });
            FieldKind::Date(DateRule {
                not_future: f.not_future.unwrap_or(false),
                min_date,
                min_days_from_today: f.min_days_from_today,
                max_days_from_today: f.max_days_from_today,
            })
        }
        "integer" => FieldKind::Integer { min: f.min, max: f.max },
        "amount" => FieldKind::Amount { min: f.min, max: f.max },
        "choice" => {
            let options: Vec<ChoiceOption> = f
                .options
                .as_ref()
                .map(|o| {
                    o.get_ref()
                        .iter()
                        .map(|o| ChoiceOption { value: o.value.clone(), label: o.label.clone() })
                        .collect()
                })
                .unwrap_or_default();
            let distinct: BTreeSet<&str> = options.iter().map(|o| o.value.as_str()).collect();
            if options.is_empty() || distinct.len() != options.len() || distinct.contains("") {
                r.at(raw.span().start, format!("field `{id}`: a choice needs options with distinct, non-empty values"));
                ok = false;
            }
            FieldKind::Choice { options }
        }
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
    };
    let default_max = if matches!(kind, FieldKind::LongText) { 2000 } else { 200 };
    let max_length = f.max_length.unwrap_or(default_max);
    if max_length == 0 || max_length > 10_000 {
        r.at(raw.span().start, format!("field `{id}`: max_length must be between 1 and 10000"));
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

fn parse_toml<'de, T: Deserialize<'de>>(source: &'de Source, errors: &mut Vec<CatalogError>) -> Option<T> {
    match toml::from_str::<T>(&source.text) {
        Ok(v) => Some(v),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let mut r = Reporter { source, errors };
            r.at(offset, e.message().trim().to_string());
            None
        }
    }
}

/// Checks that each person_tax_code's birth_date_field names a date field among `own` or
/// `also_visible` (the dictionary, for a filing's fields).
fn check_birth_date_links(own: &[(FieldSpec, usize)], also_visible: &[FieldSpec], r: &mut Reporter<'_>) {
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

impl Catalog {
    /// Parses and checks a catalog. Every mistake found is returned, not only the first.
    pub fn from_sources(sources: &[Source]) -> Result<Catalog, Vec<CatalogError>> {
        let mut errors = Vec::new();
        let dictionaries: Vec<&Source> = sources.iter().filter(|s| s.kind == SourceKind::Dictionary).collect();
        if dictionaries.len() != 1 {
            errors.push(CatalogError {
                file: "catalog".into(),
                line: 0,
                column: 0,
                message: format!("exactly one dictionary file is needed, found {}", dictionaries.len()),
            });
            return Err(errors);
        }

        // Syntax and shape first: cross-references are checked only when every file parsed,
        // so that one typo does not bury itself under the mistakes it causes elsewhere.
        let dict_source = dictionaries[0];
        let raw_dictionary = parse_toml::<RawDictionary>(dict_source, &mut errors);
        let raw_institutions: Vec<(&Source, Option<RawInstitution>)> = sources
            .iter()
            .filter(|s| s.kind == SourceKind::Institution)
            .map(|s| (s, parse_toml::<RawInstitution>(s, &mut errors)))
            .collect();
        let raw_services: Vec<(&Source, Option<RawServices>)> = sources
            .iter()
            .filter(|s| s.kind == SourceKind::Services)
            .map(|s| (s, parse_toml::<RawServices>(s, &mut errors)))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }

        // Dictionary: life events and common fields.
        let mut life_events = Vec::new();
        let mut dictionary = Vec::new();
        if let Some(raw) = raw_dictionary {
            let mut r = Reporter { source: dict_source, errors: &mut errors };
            for e in &raw.life_events {
                if !is_segment(e.id.get_ref()) {
                    r.at(
                        e.id.span().start,
                        format!("life event id `{}` must be lower case letters, digits and -", e.id.get_ref()),
                    );
                }
                if life_events.iter().any(|l: &LifeEvent| &l.id == e.id.get_ref()) {
                    r.at(e.id.span().start, format!("life event `{}` is defined twice", e.id.get_ref()));
                }
                r.text(&e.title, "title");
                life_events.push(LifeEvent { id: e.id.get_ref().clone(), title: e.title.get_ref().clone() });
            }
            let mut with_offsets = Vec::new();
            for f in &raw.fields {
                if let Some(spec) = build_field(f, &mut r) {
                    if dictionary.iter().any(|d: &FieldSpec| d.id == spec.id) {
                        r.at(f.get_ref().id.span().start, format!("field `{}` is defined twice", spec.id));
                        continue;
                    }
                    with_offsets.push((spec.clone(), f.span().start));
                    dictionary.push(spec);
                }
            }
            check_birth_date_links(&with_offsets, &[], &mut r);
        }
        let dictionary_groups: BTreeSet<String> =
            dictionary.iter().filter_map(|f| f.id.split('.').next().map(str::to_string)).collect();

        // Institutions.
        let mut institutions: Vec<Institution> = Vec::new();
        for (source, raw) in raw_institutions {
            let Some(raw) = raw else { continue };
            let mut r = Reporter { source, errors: &mut errors };
            let id = raw.id.get_ref().clone();
            if !is_segment(&id) {
                r.at(raw.id.span().start, format!("institution id `{id}` must be lower case letters, digits and -"));
            }
            if institutions.iter().any(|i| i.id == id) {
                r.at(raw.id.span().start, format!("institution `{id}` is defined twice"));
                continue;
            }
            if dictionary_groups.contains(&id) {
                r.at(
                    raw.id.span().start,
                    format!("institution id `{id}` clashes with the dictionary group of the same name"),
                );
            }
            r.text(&raw.name, "name");
            r.text(&raw.authorisation_help, "authorisation_help");
            let mut filings: Vec<FilingKind> = Vec::new();
            for rf in &raw.filings {
                let f = rf.get_ref();
                let filing_id = f.id.get_ref().clone();
                if !is_segment(&filing_id) {
                    r.at(
                        f.id.span().start,
                        format!("filing id `{filing_id}` must be lower case letters, digits and -"),
                    );
                }
                if filings.iter().any(|x| x.id == filing_id) {
                    r.at(f.id.span().start, format!("filing `{filing_id}` is defined twice in `{id}`"));
                    continue;
                }
                r.text(&f.title, "title");
                let mut fields: Vec<FieldSpec> = Vec::new();
                let mut with_offsets = Vec::new();
                for raw_field in &f.fields {
                    let Some(spec) = build_field(raw_field, &mut r) else {
                        continue;
                    };
                    if !spec.id.starts_with(&format!("{id}.")) {
                        r.at(
                            raw_field.get_ref().id.span().start,
                            format!("field `{}` of institution `{id}` must start with `{id}.`", spec.id),
                        );
                    }
                    if fields.iter().any(|x| x.id == spec.id) {
                        r.at(raw_field.get_ref().id.span().start, format!("field `{}` is defined twice", spec.id));
                        continue;
                    }
                    with_offsets.push((spec.clone(), raw_field.span().start));
                    fields.push(spec);
                }
                check_birth_date_links(&with_offsets, &dictionary, &mut r);

                let mut payload = Vec::new();
                for (target, src) in &f.payload {
                    let (target_text, source_text) = (target.get_ref(), src.get_ref());
                    if !is_target_path(target_text) {
                        r.at(
                            target.span().start,
                            format!("payload target `{target_text}` must be a dotted path of letters, digits and _"),
                        );
                    }
                    let known =
                        dictionary.iter().any(|d| &d.id == source_text) || fields.iter().any(|x| &x.id == source_text);
                    if !known {
                        r.at(src.span().start, format!("payload source `{source_text}` is neither a dictionary field nor a field of filing `{filing_id}`"));
                    }
                    payload.push(PayloadMapping { target: target_text.clone(), source: source_text.clone() });
                }
                for a in &payload {
                    if let Some(b) = payload.iter().find(|b| b.target.starts_with(&format!("{}.", a.target))) {
                        r.at(
                            rf.span().start,
                            format!("payload target `{}` is both a value and the parent of `{}`", a.target, b.target),
                        );
                    }
                }
                if payload.is_empty() {
                    r.at(rf.span().start, format!("filing `{filing_id}` has an empty payload mapping"));
                }
                let mut answers = Vec::new();
                for (target, src) in &f.answers {
                    let source = src.get_ref();
                    match source.split_once('.') {
                        Some((institution, value)) if is_target_path(target.get_ref()) => answers.push(AnswerMapping {
                            target: target.get_ref().clone(),
                            institution: institution.to_string(),
                            value: value.to_string(),
                        }),
                        _ => r.at(
                            src.span().start,
                            format!("answer `{source}` for `{}` must be `<institution>.<value>`, e.g. `registro-imprese.numero_rea`", target.get_ref()),
                        ),
                    }
                    if payload.iter().any(|p| &p.target == target.get_ref()) {
                        r.at(
                            target.span().start,
                            format!(
                                "payload target `{}` is filled both from a field and from an answer",
                                target.get_ref()
                            ),
                        );
                    }
                }
                let sources: Vec<&str> = payload.iter().map(|p| p.source.as_str()).collect();
                let rules = f
                    .rules
                    .iter()
                    .filter_map(|raw| crate::receivability::build(raw, &sources, &mut |offset, m| r.at(offset, m)))
                    .collect();
                filings.push(FilingKind {
                    id: filing_id,
                    title: f.title.get_ref().clone(),
                    fields,
                    payload,
                    answers,
                    rules,
                });
            }
            if filings.is_empty() {
                r.at(raw.id.span().start, format!("institution `{id}` has no filing kinds"));
            }
            let routing = raw.routing.as_ref().and_then(|rt| {
                let province = |f: &str| dictionary.iter().find(|d| d.id == f).map(|d| d.kind == FieldKind::Province);
                crate::routing::build(rt, province, &mut |offset, message| r.at(offset, message))
            });
            institutions.push(Institution {
                id,
                name: raw.name.get_ref().clone(),
                authorisation_help: raw.authorisation_help.get_ref().clone(),
                filings,
                routing,
                provides: raw.provides.clone(),
            });
        }

        // Services.
        let mut services: Vec<Service> = Vec::new();
        for (source, raw) in raw_services {
            let Some(raw) = raw else { continue };
            let mut r = Reporter { source, errors: &mut errors };
            for rs in &raw.services {
                let s = rs.get_ref();
                let id = s.id.get_ref().clone();
                if !is_segment(&id) {
                    r.at(s.id.span().start, format!("service id `{id}` must be lower case letters, digits and -"));
                }
                if services.iter().any(|x| x.id == id) {
                    r.at(s.id.span().start, format!("service `{id}` is defined twice"));
                    continue;
                }
                if !life_events.iter().any(|e| &e.id == s.life_event.get_ref()) {
                    r.at(
                        s.life_event.span().start,
                        format!("service `{id}`: unknown life event `{}`", s.life_event.get_ref()),
                    );
                }
                r.text(&s.title, "title");
                r.text(&s.summary, "summary");
                r.text(&s.help, "help");

                // Common fields: exact ids or `group.*`, in dictionary order.
                let mut chosen: BTreeSet<&str> = BTreeSet::new();
                for pattern in &s.common_fields {
                    let p = pattern.get_ref();
                    let matched: Vec<&FieldSpec> = match p.strip_suffix(".*") {
                        Some(group) => dictionary.iter().filter(|d| d.id.starts_with(&format!("{group}."))).collect(),
                        None => dictionary.iter().filter(|d| &d.id == p).collect(),
                    };
                    if matched.is_empty() {
                        r.at(pattern.span().start, format!("service `{id}`: `{p}` matches no dictionary field"));
                    }
                    chosen.extend(matched.iter().map(|d| d.id.as_str()));
                }
                let mut fields: Vec<ServiceField> = dictionary
                    .iter()
                    .filter(|d| chosen.contains(d.id.as_str()))
                    .map(|d| ServiceField {
                        spec: d.clone(),
                        section: Section::Common(d.id.split('.').next().unwrap_or_default().to_string()),
                    })
                    .collect();

                let mut recipients = Vec::new();
                for rr in s.recipients.get_ref() {
                    let mut recipient = Recipient {
                        institution: rr.institution.clone(),
                        name: Text { it: String::new(), en: String::new() },
                        filing: rr.filing.clone(),
                        rules: Vec::new(),
                        routing: None,
                        waits_for: None,
                    };
                    let Some(institution) = institutions.iter().find(|i| i.id == rr.institution) else {
                        r.at(
                            s.recipients.span().start,
                            format!("service `{id}`: unknown institution `{}`", rr.institution),
                        );
                        continue;
                    };
                    let Some(filing) = institution.filing(&rr.filing) else {
                        r.at(
                            s.recipients.span().start,
                            format!("service `{id}`: institution `{}` has no filing `{}`", rr.institution, rr.filing),
                        );
                        continue;
                    };
                    recipient.name = institution.name.clone();
                    recipient.rules = filing.rules.clone();
                    if recipients.iter().any(|x: &Recipient| x.institution == rr.institution) {
                        r.at(
                            s.recipients.span().start,
                            format!(
                                "service `{id}`: institution `{}` is a recipient twice (one filing per institution)",
                                rr.institution
                            ),
                        );
                        continue;
                    }
                    if let Some(routing) = &institution.routing {
                        if !routing.fields.iter().any(|f| chosen.contains(f.as_str())) {
                            r.at(
                                s.recipients.span().start,
                                format!(
                                    "service `{id}`: institution `{}` is routed by {}, none of which the service collects",
                                    rr.institution,
                                    routing.fields.join(" or ")
                                ),
                            );
                        }
                        recipient.routing = Some((routing.clone(), institution.name.clone()));
                    }
                    for m in &filing.payload {
                        let common = dictionary.iter().any(|d| d.id == m.source);
                        if common && !chosen.contains(m.source.as_str()) {
                            r.at(
                                s.common_fields.first().map_or(rs.span().start, |p| p.span().start),
                                format!(
                                    "service `{id}`: filing `{}/{}` needs `{}`, which common_fields does not collect",
                                    rr.institution, rr.filing, m.source
                                ),
                            );
                        }
                    }
                    fields.extend(filing.fields.iter().map(|f| ServiceField {
                        spec: f.clone(),
                        section: Section::Recipient(rr.institution.clone()),
                    }));
                    recipients.push(recipient);
                }
                if s.recipients.get_ref().is_empty() {
                    r.at(s.recipients.span().start, format!("service `{id}` has no recipients"));
                }
                for message in link_answers(&id, &mut recipients, &institutions) {
                    r.at(s.recipients.span().start, message);
                }
                for optional in &s.optional_fields {
                    match fields.iter_mut().find(|f| &f.spec.id == optional.get_ref()) {
                        Some(f) => f.spec.required = false,
                        None => r.at(
                            optional.span().start,
                            format!("service `{id}`: optional field `{}` is not among its fields", optional.get_ref()),
                        ),
                    }
                }
                services.push(Service {
                    id,
                    life_event: s.life_event.get_ref().clone(),
                    title: s.title.get_ref().clone(),
                    summary: s.summary.get_ref().clone(),
                    help: s.help.get_ref().clone(),
                    recipients,
                    fields,
                });
            }
        }
        if errors.is_empty() && services.is_empty() {
            errors.push(CatalogError {
                file: "catalog".into(),
                line: 0,
                column: 0,
                message: "the catalog has no services".into(),
            });
        }
        if errors.is_empty() {
            Ok(Catalog { life_events, dictionary, institutions, services })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The catalog shipped in the repository, embedded at compile time.
    pub(crate) fn shipped_sources() -> Vec<Source> {
        let s = |path: &str, kind, text: &str| Source { path: path.into(), kind, text: text.into() };
        vec![
            s("dictionary.toml", SourceKind::Dictionary, include_str!("../../../catalog/dictionary.toml")),
            s(
                "institutions/inps.toml",
                SourceKind::Institution,
                include_str!("../../../catalog/institutions/inps.toml"),
            ),
            s(
                "institutions/inail.toml",
                SourceKind::Institution,
                include_str!("../../../catalog/institutions/inail.toml"),
            ),
            s(
                "institutions/registro-imprese.toml",
                SourceKind::Institution,
                include_str!("../../../catalog/institutions/registro-imprese.toml"),
            ),
            s("services/services.toml", SourceKind::Services, include_str!("../../../catalog/services/services.toml")),
        ]
    }

    pub(crate) fn shipped() -> Catalog {
        match Catalog::from_sources(&shipped_sources()) {
            Ok(c) => c,
            Err(errors) => panic!("shipped catalog is broken: {errors:#?}"),
        }
    }

    /// A complete, valid "avvio-ditta-individuale" as a user would type it.
    pub(crate) fn complete_start_data() -> BTreeMap<String, String> {
        [
            ("business.name", "Bar Centrale di Mario Rossi"),
            ("business.tax_code", "RSSMRA45C12F205C"),
            ("business.pec", "bar.centrale@pec.it"),
            ("business.ateco", "56.30.00"),
            ("business.start_date", "01/12/2026"),
            ("owner.given_name", "Mario"),
            ("owner.surname", "Rossi"),
            ("owner.tax_code", "rssmra45c12f205c"),
            ("owner.birth_date", "12/03/1945"),
            ("owner.birth_place", "Milano"),
            ("owner.residence", "Via Roma 1, 00184 Roma"),
            ("seat.street", "Via Nazionale"),
            ("seat.number", "10"),
            ("seat.cap", "00184"),
            ("seat.municipality", "Roma"),
            ("seat.province", "rm"),
            ("staff.employees", "0"),
            ("registro-imprese.activity_description", "Bar e caffetteria"),
            ("inps.scheme", "commercianti"),
            ("inps.family_collaborators", "0"),
            ("inail.work_processes", "Somministrazione di alimenti e bevande al banco"),
            ("inail.yearly_wages", "24.000,00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn shipped_catalog_is_complete() {
        let c = shipped();
        let recipients = |id: &str| -> Vec<String> {
            c.service(id).map(|s| s.recipients.iter().map(|r| r.institution.clone()).collect()).unwrap_or_default()
        };
        assert_eq!(recipients("avvio-ditta-individuale"), ["registro-imprese", "inps", "inail"]);
        assert_eq!(recipients("variazione-sede-attivita"), ["registro-imprese", "inps", "inail"]);
        assert_eq!(recipients("cessazione-impresa"), ["registro-imprese", "inps", "inail"]);
        assert_eq!(recipients("assunzione-primo-dipendente"), ["inps", "inail"]);
        assert_eq!(recipients("collaboratore-familiare"), ["inps"]);
        let start = c.service("avvio-ditta-individuale").expect("service");
        // Common data first, then each recipient's section.
        assert_eq!(start.fields[0].section, Section::Common("business".into()));
        assert!(start
            .fields
            .iter()
            .any(|f| f.spec.id == "inail.work_processes" && f.section == Section::Recipient("inail".into())));
        assert!(!start.field("business.vat_number").expect("field").spec.required);
    }

    fn with_replaced(path: &str, from: &str, to: &str) -> Vec<Source> {
        let mut sources = shipped_sources();
        for s in &mut sources {
            if s.path == path {
                assert!(s.text.contains(from), "fixture text not found: {from}");
                s.text = s.text.replacen(from, to, 1);
            }
        }
        sources
    }

    fn errors_of(sources: &[Source]) -> Vec<String> {
        Catalog::from_sources(sources).err().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let errors = errors_of(&with_replaced("institutions/inps.toml", "id = \"inps\"", "id = \"inps"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("institutions/inps.toml:2:"), "{errors:?}");
    }

    #[test]
    fn unknown_payload_source_is_reported_where_it_stands() {
        let errors = errors_of(&with_replaced(
            "institutions/inail.toml",
            "\"lavorazioni.descrizione\" = \"inail.work_processes\"",
            "\"lavorazioni.descrizione\" = \"inail.work_process\"",
        ));
        assert!(errors.iter().any(|e| e.contains("payload source `inail.work_process`")), "{errors:?}");
        let line = include_str!("../../../catalog/institutions/inail.toml")
            .lines()
            .position(|l| l.contains("\"lavorazioni.descrizione\" = \"inail.work_processes\""))
            .map(|i| i + 1);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("institutions/inail.toml:{}:", line.unwrap_or(0)))),
            "{errors:?}"
        );
    }

    #[test]
    fn cross_reference_mistakes_are_all_reported() {
        let mut sources = with_replaced("services/services.toml", "life_event = \"chiusura\"", "life_event = \"fine\"");
        if let Some(s) = sources.iter_mut().find(|s| s.path == "services/services.toml") {
            s.text = s.text.replacen("filing = \"cessazione\"", "filing = \"chiusura\"", 1);
            s.text = s.text.replacen("\"business.start_date\", \"owner.*\"", "\"owner.*\"", 1);
        }
        let errors = errors_of(&sources);
        assert!(errors.iter().any(|e| e.contains("unknown life event `fine`")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("has no filing `chiusura`")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("needs `business.start_date`")), "{errors:?}");
    }

    #[test]
    fn bad_field_definitions_are_refused() {
        let errors = errors_of(&with_replaced("dictionary.toml", "type = \"cap\"", "type = \"zip\""));
        assert!(errors.iter().any(|e| e.contains("unknown type `zip`")), "{errors:?}");
        let errors = errors_of(&with_replaced("dictionary.toml", "label.en = \"Surname\"", "label.en = \"\""));
        assert!(errors.iter().any(|e| e.contains("non-empty Italian (it) and English (en)")), "{errors:?}");
        let errors =
            errors_of(&with_replaced("dictionary.toml", "max_length = 80\n", "max_length = 80\ncolour = \"red\"\n"));
        assert!(errors.iter().any(|e| e.contains("unknown field `colour`")), "{errors:?}");
    }
}
