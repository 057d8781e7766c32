//! [`Catalog::from_sources`]: the files parsed, then every cross-reference checked, each
//! mistake reported where it stands (file, line, column), all of them at once.

use toml::Spanned;

use super::fields::{build_field, check_birth_date_links};
use super::model::{
    AnswerMapping, Catalog, CatalogError, FieldKind, FieldSpec, FilingKind, Institution, LifeEvent, PayloadMapping,
    Source, SourceKind,
};
use super::raw::{RawDictionary, RawFiling, RawInstitution, RawServices};
use super::report::{is_segment, is_target_path, parse_toml, Reporter};
use super::services::{build_service, Known};

fn whole_catalog(message: String) -> CatalogError {
    CatalogError { file: "catalog".into(), line: 0, column: 0, message }
}

impl Catalog {
    /// Parses and checks a catalog. Every mistake found is returned, not only the first.
    pub fn from_sources(sources: &[Source]) -> Result<Catalog, Vec<CatalogError>> {
        let mut errors = Vec::new();
        let dictionaries: Vec<&Source> = sources.iter().filter(|s| s.kind == SourceKind::Dictionary).collect();
        let [dict_source] = dictionaries[..] else {
            let found = dictionaries.len();
            return Err(vec![whole_catalog(format!("exactly one dictionary file is needed, found {found}"))]);
        };
        // Syntax and shape first: cross-references are checked only when every file parsed,
        // so that one typo does not bury itself under the mistakes it causes elsewhere.
        let raw_dictionary = parse_toml::<RawDictionary>(dict_source, &mut errors);
        let of_kind = |kind| sources.iter().filter(move |s: &&Source| s.kind == kind);
        let raw_institutions: Vec<(&Source, Option<RawInstitution>)> =
            of_kind(SourceKind::Institution).map(|s| (s, parse_toml(s, &mut errors))).collect();
        let raw_services: Vec<(&Source, Option<RawServices>)> =
            of_kind(SourceKind::Services).map(|s| (s, parse_toml(s, &mut errors))).collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let (life_events, dictionary) = match &raw_dictionary {
            Some(raw) => build_dictionary(raw, &mut Reporter { source: dict_source, errors: &mut errors }),
            None => (Vec::new(), Vec::new()),
        };
        let mut institutions: Vec<Institution> = Vec::new();
        for (source, raw) in &raw_institutions {
            let Some(raw) = raw else { continue };
            let mut r = Reporter { source, errors: &mut errors };
            if let Some(institution) = build_institution(raw, &dictionary, &institutions, &mut r) {
                institutions.push(institution);
            }
        }
        let known = Known { dictionary: &dictionary, life_events: &life_events, institutions: &institutions };
        let mut services = Vec::new();
        for (source, raw) in &raw_services {
            let Some(raw) = raw else { continue };
            let mut r = Reporter { source, errors: &mut errors };
            for rs in &raw.services {
                if let Some(service) = build_service(rs, &known, &services, &mut r) {
                    services.push(service);
                }
            }
        }
        if errors.is_empty() && services.is_empty() {
            errors.push(whole_catalog("the catalog has no services".into()));
        }
        if errors.is_empty() {
            Ok(Catalog { life_events, dictionary, institutions, services })
        } else {
            Err(errors)
        }
    }
}

/// The life events and the common fields.
fn build_dictionary(raw: &RawDictionary, r: &mut Reporter<'_>) -> (Vec<LifeEvent>, Vec<FieldSpec>) {
    let mut life_events: Vec<LifeEvent> = Vec::new();
    for e in &raw.life_events {
        if !is_segment(e.id.get_ref()) {
            r.at(
                e.id.span().start,
                format!("life event id `{}` must be lower case letters, digits and -", e.id.get_ref()),
            );
        }
        if life_events.iter().any(|l| &l.id == e.id.get_ref()) {
            r.at(e.id.span().start, format!("life event `{}` is defined twice", e.id.get_ref()));
        }
        r.text(&e.title, "title");
        life_events.push(LifeEvent { id: e.id.get_ref().clone(), title: e.title.get_ref().clone() });
    }
    let mut dictionary: Vec<FieldSpec> = Vec::new();
    let mut with_offsets = Vec::new();
    for f in &raw.fields {
        let Some(spec) = build_field(f, r) else { continue };
        if dictionary.iter().any(|d| d.id == spec.id) {
            r.at(f.get_ref().id.span().start, format!("field `{}` is defined twice", spec.id));
            continue;
        }
        with_offsets.push((spec.clone(), f.span().start));
        dictionary.push(spec);
    }
    check_birth_date_links(&with_offsets, &[], r);
    (life_events, dictionary)
}

/// One institution with its filing kinds; `None` (reported) for one defined twice.
fn build_institution(
    raw: &RawInstitution,
    dictionary: &[FieldSpec],
    institutions: &[Institution],
    r: &mut Reporter<'_>,
) -> Option<Institution> {
    let id = raw.id.get_ref().clone();
    let at = raw.id.span().start;
    if !is_segment(&id) {
        r.at(at, format!("institution id `{id}` must be lower case letters, digits and -"));
    }
    if institutions.iter().any(|i| i.id == id) {
        r.at(at, format!("institution `{id}` is defined twice"));
        return None;
    }
    if dictionary.iter().any(|f| f.id.split('.').next() == Some(id.as_str())) {
        r.at(at, format!("institution id `{id}` clashes with the dictionary group of the same name"));
    }
    r.text(&raw.name, "name");
    r.text(&raw.authorisation_help, "authorisation_help");
    if let Some(url) = &raw.authorisation_url {
        let address = url.get_ref();
        let host = address.strip_prefix("https://").map(|rest| rest.split('/').next().unwrap_or_default());
        if !host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace)) {
            r.at(url.span().start, format!("authorisation_url `{address}` must be an https address"));
        }
    }
    let mut filings: Vec<FilingKind> = Vec::new();
    for rf in &raw.filings {
        if let Some(filing) = build_filing(rf, &id, dictionary, &filings, r) {
            filings.push(filing);
        }
    }
    if filings.is_empty() {
        r.at(at, format!("institution `{id}` has no filing kinds"));
    }
    let routing = raw.routing.as_ref().and_then(|rt| {
        let province = |f: &str| dictionary.iter().find(|d| d.id == f).map(|d| d.kind == FieldKind::Province);
        crate::routing::build(rt, province, &mut |offset, message| r.at(offset, message))
    });
    Some(Institution {
        id,
        name: raw.name.get_ref().clone(),
        authorisation_help: raw.authorisation_help.get_ref().clone(),
        authorisation_url: raw.authorisation_url.as_ref().map(|u| u.get_ref().clone()),
        filings,
        routing,
        provides: raw.provides.clone(),
    })
}

/// The filing's own fields: each `<institution>.<name>`, none twice.
fn filing_fields(f: &RawFiling, institution: &str, dictionary: &[FieldSpec], r: &mut Reporter<'_>) -> Vec<FieldSpec> {
    let mut fields: Vec<FieldSpec> = Vec::new();
    let mut with_offsets = Vec::new();
    for raw_field in &f.fields {
        let Some(spec) = build_field(raw_field, r) else { continue };
        let at = raw_field.get_ref().id.span().start;
        if !spec.id.starts_with(&format!("{institution}.")) {
            r.at(at, format!("field `{}` of institution `{institution}` must start with `{institution}.`", spec.id));
        }
        if fields.iter().any(|x| x.id == spec.id) {
            r.at(at, format!("field `{}` is defined twice", spec.id));
            continue;
        }
        with_offsets.push((spec.clone(), raw_field.span().start));
        fields.push(spec);
    }
    check_birth_date_links(&with_offsets, dictionary, r);
    fields
}

/// Which field fills which part of the filing sent.
fn payload(
    rf: &Spanned<RawFiling>,
    fields: &[FieldSpec],
    dictionary: &[FieldSpec],
    r: &mut Reporter<'_>,
) -> Vec<PayloadMapping> {
    let f = rf.get_ref();
    let filing_id = f.id.get_ref();
    let mut payload = Vec::new();
    for (target, src) in &f.payload {
        let (target_text, source_text) = (target.get_ref(), src.get_ref());
        if !is_target_path(target_text) {
            let message = format!("payload target `{target_text}` must be a dotted path of letters, digits and _");
            r.at(target.span().start, message);
        }
        if !dictionary.iter().chain(fields).any(|d| &d.id == source_text) {
            let message = format!(
                "payload source `{source_text}` is neither a dictionary field nor a field of filing `{filing_id}`"
            );
            r.at(src.span().start, message);
        }
        payload.push(PayloadMapping { target: target_text.to_string(), source: source_text.to_string() });
    }
    for a in &payload {
        if let Some(b) = payload.iter().find(|b| b.target.starts_with(&format!("{}.", a.target))) {
            let message = format!("payload target `{}` is both a value and the parent of `{}`", a.target, b.target);
            r.at(rf.span().start, message);
        }
    }
    if payload.is_empty() {
        r.at(rf.span().start, format!("filing `{filing_id}` has an empty payload mapping"));
    }
    payload
}

/// Parts of the filing filled from another recipient's answer (`<institution>.<value>`).
fn answers(f: &RawFiling, payload: &[PayloadMapping], r: &mut Reporter<'_>) -> Vec<AnswerMapping> {
    let mut answers = Vec::new();
    for (target, src) in &f.answers {
        let (target, source) = (target, src.get_ref());
        match source.split_once('.') {
            Some((institution, value)) if is_target_path(target.get_ref()) => answers.push(AnswerMapping {
                target: target.get_ref().clone(),
                institution: institution.to_string(),
                value: value.to_string(),
            }),
            _ => r.at(
                src.span().start,
                format!(
                    "answer `{source}` for `{}` must be `<institution>.<value>`, e.g. `registro-imprese.numero_rea`",
                    target.get_ref()
                ),
            ),
        }
        if payload.iter().any(|p| &p.target == target.get_ref()) {
            let message =
                format!("payload target `{}` is filled both from a field and from an answer", target.get_ref());
            r.at(target.span().start, message);
        }
    }
    answers
}

/// One filing kind of `institution`; `None` (reported) for one defined twice.
fn build_filing(
    rf: &Spanned<RawFiling>,
    institution: &str,
    dictionary: &[FieldSpec],
    filings: &[FilingKind],
    r: &mut Reporter<'_>,
) -> Option<FilingKind> {
    let f = rf.get_ref();
    let filing_id = f.id.get_ref().clone();
    if !is_segment(&filing_id) {
        r.at(f.id.span().start, format!("filing id `{filing_id}` must be lower case letters, digits and -"));
    }
    if filings.iter().any(|x| x.id == filing_id) {
        r.at(f.id.span().start, format!("filing `{filing_id}` is defined twice in `{institution}`"));
        return None;
    }
    r.text(&f.title, "title");
    let fields = filing_fields(f, institution, dictionary, r);
    let payload = payload(rf, &fields, dictionary, r);
    let answers = answers(f, &payload, r);
    let sources: Vec<&str> = payload.iter().map(|p| p.source.as_str()).collect();
    let rules = f
        .rules
        .iter()
        .filter_map(|raw| crate::receivability::build(raw, &sources, &mut |offset, m| r.at(offset, m)))
        .collect();
    Some(FilingKind { id: filing_id, title: f.title.get_ref().clone(), fields, payload, answers, rules })
}
