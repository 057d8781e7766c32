use std::collections::BTreeMap;

use super::*;

/// The catalog shipped in the repository, embedded at compile time.
pub(crate) fn shipped_sources() -> Vec<Source> {
    let s = |path: &str, kind, text: &str| Source { path: path.into(), kind, text: text.into() };
    vec![
        s("dictionary.toml", SourceKind::Dictionary, include_str!("../../../../catalog/dictionary.toml")),
        s(
            "institutions/inps.toml",
            SourceKind::Institution,
            include_str!("../../../../catalog/institutions/inps.toml"),
        ),
        s(
            "institutions/inail.toml",
            SourceKind::Institution,
            include_str!("../../../../catalog/institutions/inail.toml"),
        ),
        s(
            "institutions/registro-imprese.toml",
            SourceKind::Institution,
            include_str!("../../../../catalog/institutions/registro-imprese.toml"),
        ),
        s("services/services.toml", SourceKind::Services, include_str!("../../../../catalog/services/services.toml")),
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
    let line = include_str!("../../../../catalog/institutions/inail.toml")
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

#[test]
fn an_authorisation_address_must_be_https() {
    let shipped = Catalog::from_sources(&shipped_sources()).expect("shipped catalog");
    let inps = shipped.institution("inps").expect("inps");
    assert_eq!(inps.authorisation_url.as_deref(), Some("https://www.inps.it"));
    let plain = "authorisation_url = \"http://www.inps.it\"";
    let errors =
        errors_of(&with_replaced("institutions/inps.toml", "authorisation_url = \"https://www.inps.it\"", plain));
    assert!(errors.iter().any(|e| e.contains("must be an https address")), "{errors:?}");
}

#[test]
fn a_derivation_must_hold() {
    let shipped = Catalog::from_sources(&shipped_sources()).expect("shipped catalog");
    let start = shipped.service("avvio-ditta-individuale").expect("service");
    assert_eq!(start.derived_from("owner.tax_code"), Some("business.tax_code"));
    // The catalog refuses a derivation that does not hold.
    let errors = errors_of(&with_replaced(
        "services/services.toml",
        "derived = [{ field = \"owner.tax_code\", from = \"business.tax_code\" }]",
        "derived = [{ field = \"owner.tax_code\", from = \"owner.tax_code\" }, { field = \"x.y\", from = \"business.name\" }]",
    ));
    assert!(errors.iter().any(|e| e.contains("cannot be derived from itself")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("both must be fields of the service")), "{errors:?}");
}

#[test]
fn every_field_an_institution_checks_is_collected_and_correctable() {
    let shipped = Catalog::from_sources(&shipped_sources()).expect("shipped catalog");
    for service in &shipped.services {
        for recipient in &service.recipients {
            for rule in &recipient.rules {
                assert!(
                    service.field(&rule.field).is_some(),
                    "{}: {} checks {}",
                    service.id,
                    recipient.institution,
                    rule.field
                );
            }
        }
    }
    // "Cambio della sede": INAIL's work processes are asked, so a rejection of them is correctable.
    let change = shipped.service("variazione-sede-attivita").expect("service");
    assert!(change.field("inail.work_processes").is_some());
    // A rule on a field the filing does not carry is refused.
    let checked = "[[filings.rules]]\nfield = \"business.rea_number\"\nrequired = true\nmessage.it = \"REA\"\nmessage.en = \"REA\"\n\n[[filings.rules]]\nfield = \"inail.work_processes\"";
    let errors = errors_of(&with_replaced(
        "institutions/inail.toml",
        "[[filings.rules]]\nfield = \"inail.work_processes\"",
        checked,
    ));
    // (a rule may only check what the filing carries, and a service must collect all of that)
    let refused = "rule on `business.rea_number`: the filing's payload is not made from that field";
    assert!(errors.iter().any(|e| e.contains(refused)), "{errors:?}");
}
