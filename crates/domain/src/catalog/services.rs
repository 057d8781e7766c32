//! An integrated service ("servizio integrato"), checked against the dictionary and the
//! institutions: its common fields, one filing per recipient, the answers one filing waits for.

use std::collections::BTreeSet;

use toml::Spanned;

use super::model::{Derivation, FieldSpec, Institution, LifeEvent, Recipient, Section, Service, ServiceField};
use super::raw::{RawDerivation, RawRecipient, RawService};
use super::report::{is_segment, Reporter};

/// What a service is checked against.
pub(super) struct Known<'k> {
    pub(super) dictionary: &'k [FieldSpec],
    pub(super) life_events: &'k [LifeEvent],
    pub(super) institutions: &'k [Institution],
}

/// The dictionary fields a service's `common_fields` choose (exact ids or `group.*`).
fn common_fields<'d>(
    raw: &RawService,
    id: &str,
    dictionary: &'d [FieldSpec],
    r: &mut Reporter<'_>,
) -> BTreeSet<&'d str> {
    let mut chosen: BTreeSet<&str> = BTreeSet::new();
    for pattern in &raw.common_fields {
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
    chosen
}

/// One recipient of service `id`, with the fields its filing adds; `None` (reported) when the
/// institution or its filing does not exist or is a recipient already.
fn recipient(
    raw: &RawService,
    rr: &RawRecipient,
    (id, offset): (&str, usize),
    chosen: &BTreeSet<&str>,
    known: &Known<'_>,
    (recipients, r): (&[Recipient], &mut Reporter<'_>),
) -> Option<(Recipient, Vec<ServiceField>)> {
    let at = raw.recipients.span().start;
    let Some(institution) = known.institutions.iter().find(|i| i.id == rr.institution) else {
        r.at(at, format!("service `{id}`: unknown institution `{}`", rr.institution));
        return None;
    };
    let Some(filing) = institution.filing(&rr.filing) else {
        r.at(at, format!("service `{id}`: institution `{}` has no filing `{}`", rr.institution, rr.filing));
        return None;
    };
    if recipients.iter().any(|x| x.institution == rr.institution) {
        let message = format!(
            "service `{id}`: institution `{}` is a recipient twice (one filing per institution)",
            rr.institution
        );
        r.at(at, message);
        return None;
    }
    let mut routing = None;
    if let Some(by) = &institution.routing {
        if !by.fields.iter().any(|f| chosen.contains(f.as_str())) {
            let message = format!(
                "service `{id}`: institution `{}` is routed by {}, none of which the service collects",
                rr.institution,
                by.fields.join(" or ")
            );
            r.at(at, message);
        }
        routing = Some((by.clone(), institution.name.clone()));
    }
    for m in &filing.payload {
        if known.dictionary.iter().any(|d| d.id == m.source) && !chosen.contains(m.source.as_str()) {
            let message = format!(
                "service `{id}`: filing `{}/{}` needs `{}`, which common_fields does not collect",
                rr.institution, rr.filing, m.source
            );
            r.at(raw.common_fields.first().map_or(offset, |p| p.span().start), message);
        }
    }
    let fields = filing
        .fields
        .iter()
        .map(|f| ServiceField { spec: f.clone(), section: Section::Recipient(rr.institution.clone()) })
        .collect();
    let recipient = Recipient {
        institution: rr.institution.clone(),
        name: institution.name.clone(),
        filing: rr.filing.clone(),
        rules: filing.rules.clone(),
        routing,
        waits_for: None,
    };
    Some((recipient, fields))
}

/// The service, checked; `None` (reported) for one defined twice.
pub(super) fn build_service(
    rs: &Spanned<RawService>,
    known: &Known<'_>,
    services: &[Service],
    r: &mut Reporter<'_>,
) -> Option<Service> {
    let s = rs.get_ref();
    let id = s.id.get_ref().clone();
    if !is_segment(&id) {
        r.at(s.id.span().start, format!("service id `{id}` must be lower case letters, digits and -"));
    }
    if services.iter().any(|x| x.id == id) {
        r.at(s.id.span().start, format!("service `{id}` is defined twice"));
        return None;
    }
    if !known.life_events.iter().any(|e| &e.id == s.life_event.get_ref()) {
        r.at(s.life_event.span().start, format!("service `{id}`: unknown life event `{}`", s.life_event.get_ref()));
    }
    r.text(&s.title, "title");
    r.text(&s.summary, "summary");
    r.text(&s.help, "help");
    // Common fields in dictionary order, then each recipient's own.
    let chosen = common_fields(s, &id, known.dictionary, r);
    let mut fields: Vec<ServiceField> = known
        .dictionary
        .iter()
        .filter(|d| chosen.contains(d.id.as_str()))
        .map(|d| ServiceField {
            spec: d.clone(),
            section: Section::Common(d.id.split('.').next().unwrap_or_default().to_string()),
        })
        .collect();
    let mut recipients = Vec::new();
    for rr in s.recipients.get_ref() {
        if let Some((recipient, own)) = recipient(s, rr, (&id, rs.span().start), &chosen, known, (&recipients, r)) {
            fields.extend(own);
            recipients.push(recipient);
        }
    }
    if s.recipients.get_ref().is_empty() {
        r.at(s.recipients.span().start, format!("service `{id}` has no recipients"));
    }
    for message in link_answers(&id, &mut recipients, known.institutions) {
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
    let derived = derivations(&id, &s.derived, &fields, r);
    Some(Service {
        id,
        life_event: s.life_event.get_ref().clone(),
        title: s.title.get_ref().clone(),
        summary: s.summary.get_ref().clone(),
        help: s.help.get_ref().clone(),
        recipients,
        fields,
        derived,
    })
}

/// The service's derived fields, each checked: both fields of the service, distinct, the
/// source asked (not derived itself), the field derived once.
fn derivations(
    id: &str,
    raw: &[Spanned<RawDerivation>],
    fields: &[ServiceField],
    r: &mut Reporter<'_>,
) -> Vec<Derivation> {
    let mut derived: Vec<Derivation> = Vec::new();
    for d in raw {
        let (at, RawDerivation { field, from }) = (d.span().start, d.get_ref());
        let known = |f: &str| fields.iter().any(|x| x.spec.id == f);
        let problem = if !known(field) || !known(from) {
            Some(format!("service `{id}`: derived `{field}` from `{from}`: both must be fields of the service"))
        } else if field == from {
            Some(format!("service `{id}`: `{field}` cannot be derived from itself"))
        } else if derived.iter().any(|x| &x.field == field) {
            Some(format!("service `{id}`: `{field}` is derived twice"))
        } else if raw.iter().any(|x| &x.get_ref().field == from) {
            Some(format!("service `{id}`: `{from}` is derived itself, so `{field}` cannot take its value"))
        } else {
            None
        };
        match problem {
            Some(message) => r.at(at, message),
            None => derived.push(Derivation { field: field.clone(), from: from.clone() }),
        }
    }
    derived
}

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
