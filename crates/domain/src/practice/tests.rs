use super::*;

use serde_json::Value;

use crate::catalog::{ChoiceOption, DateRule, FieldKind, FieldSpec, FilingKind, PayloadMapping, Text};
use crate::identifiers::CodiceFiscale;
use crate::validation::{FieldError, Reason};
use time::macros::date;

fn text(s: &str) -> Text {
    Text { it: s.into(), en: s.into() }
}

fn spec(id: &str, kind: FieldKind) -> FieldSpec {
    FieldSpec { id: id.into(), label: text(id), hint: None, help: None, kind, required: true, max_length: 200 }
}

#[test]
fn state_machine_allows_only_the_lifecycle() {
    use PracticeEvent as E;
    use PracticeState as S;
    use Progress as P;
    assert_eq!(S::Draft.apply(E::Submit), Ok(S::InProgress));
    assert_eq!(S::InProgress.apply(E::Progressed(P::AllAccepted)), Ok(S::Completed));
    assert_eq!(S::InProgress.apply(E::Progressed(P::Rejected)), Ok(S::ToCorrect));
    assert_eq!(S::InProgress.apply(E::Progressed(P::Undelivered)), Ok(S::ToResend));
    assert_eq!(S::InProgress.apply(E::Progressed(P::NobodyReached)), Ok(S::Draft));
    assert_eq!(S::ToCorrect.apply(E::Resent), Ok(S::InProgress));
    assert_eq!(S::ToResend.apply(E::Resent), Ok(S::InProgress));
    assert_eq!(S::ToCorrect.apply(E::Progressed(P::AllAccepted)), Ok(S::Completed), "corrected and accepted");
    assert!(S::Draft.apply(E::Resent).is_err());
    assert!(S::Completed.apply(E::Resent).is_err(), "nothing left to send again");
    assert_eq!(S::Completed.apply(E::Archive), Ok(S::Archived));
    assert_eq!(S::ToCorrect.apply(E::Archive), Ok(S::Archived), "a rejection may be given up");
    assert_eq!(S::Archived.apply(E::Unarchive(Some(P::AllAccepted))), Ok(S::Completed));
    assert_eq!(S::Archived.apply(E::Unarchive(Some(P::Rejected))), Ok(S::ToCorrect), "still to correct");
    assert_eq!(S::Archived.apply(E::Unarchive(None)), Ok(S::Draft));
    for illegal in [
        (S::InProgress, E::Submit),
        (S::Completed, E::Submit),
        (S::ToCorrect, E::Submit),
        (S::Archived, E::Submit),
        (S::Draft, E::Progressed(P::AllAccepted)),
        (S::Archived, E::Progressed(P::Rejected)),
        (S::InProgress, E::Archive),
        (S::Draft, E::Unarchive(None)),
    ] {
        assert!(illegal.0.apply(illegal.1).is_err(), "{illegal:?}");
    }
    assert!(S::ToCorrect.needs_the_user() && S::ToResend.needs_the_user() && !S::Completed.needs_the_user());
}

#[test]
fn reference_numbers_round_trip() {
    let r = ReferenceNumber { year: 2026, sequence: 42 };
    assert_eq!(r.to_string(), "SPT-2026-0000042");
    assert_eq!(ReferenceNumber::parse("SPT-2026-0000042"), Some(r));
    assert_eq!(ReferenceNumber::parse("SPT-2026-42"), None);
}

#[test]
fn values_are_checked_and_normalised() {
    let today = date!(2026 - 11 - 27);
    let cf = spec("owner.tax_code", FieldKind::PersonTaxCode { birth_date_field: None });
    assert_eq!(check_value(&cf, " rssmra45c12f205c", today), Ok("RSSMRA45C12F205C".into()));
    assert_eq!(check_value(&cf, "FOXDRA26C24H872A", today), Err(Reason::PersonTaxCodeCheckCharacter));

    let born = spec("owner.birth_date", FieldKind::Date(DateRule { not_future: true, ..DateRule::default() }));
    assert_eq!(check_value(&born, "28/11/2026", today), Err(Reason::DateInFuture));
    assert_eq!(check_value(&born, "12/03/1945", today), Ok("1945-03-12".into()));

    let start = spec(
        "business.start_date",
        FieldKind::Date(DateRule {
            min_days_from_today: Some(-30),
            max_days_from_today: Some(90),
            ..DateRule::default()
        }),
    );
    assert_eq!(check_value(&start, "2026-10-27", today), Err(Reason::DateTooEarly { min: "2026-10-28".into() }));
    assert_eq!(check_value(&start, "2027-02-26", today), Err(Reason::DateTooLate { max: "2027-02-25".into() }));
    assert_eq!(check_value(&start, "2026-12-01", today), Ok("2026-12-01".into()));

    let wages = spec("inail.wages", FieldKind::Amount { min: Some(0), max: Some(1_000_000) });
    assert_eq!(check_value(&wages, "1.234,5", today), Ok("1234.50".into()));
    assert_eq!(check_value(&wages, "1234.56 €", today), Ok("1234.56".into()));
    assert_eq!(check_value(&wages, "1.234", today), Err(Reason::AmountFormat));
    assert_eq!(check_value(&wages, "2000000", today), Err(Reason::NumberTooLarge { max: 1_000_000 }));

    let employees = spec("inail.employees", FieldKind::Integer { min: Some(0), max: Some(9999) });
    assert_eq!(check_value(&employees, "-1", today), Err(Reason::NumberTooSmall { min: 0 }));
    assert_eq!(check_value(&employees, "tre", today), Err(Reason::IntegerFormat));

    let scheme = spec(
        "inps.scheme",
        FieldKind::Choice { options: vec![ChoiceOption { value: "artigiani".into(), label: text("Artigiani") }] },
    );
    assert_eq!(check_value(&scheme, "artigiani", today), Ok("artigiani".into()));
    assert!(matches!(check_value(&scheme, "pirati", today), Err(Reason::NotAnOption { .. })));

    let name = spec("business.name", FieldKind::Text);
    assert_eq!(check_value(&name, "Bar\u{0007}", today), Err(Reason::ControlCharacters));
    for hidden in ["Bar\u{202E}moR", "Bar\u{200B}", "Bar\u{FFFD}\u{FFFD}", "\u{FEFF}Bar"] {
        assert_eq!(check_value(&name, hidden, today), Err(Reason::ControlCharacters), "{hidden:?}");
    }
    assert_eq!(check_value(&name, "Caffè «Roma» – l'Aquila", today), Ok("Caffè «Roma» – l'Aquila".into()));
}

#[test]
fn drafts_may_be_incomplete_but_not_wrong() {
    let catalog = crate::catalog::tests::shipped();
    let service = catalog.service("avvio-ditta-individuale").expect("service");
    let today = date!(2026 - 11 - 27);
    let data = |pairs: &[(&str, &str)]| -> PracticeData {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert_eq!(check_draft(service, &data(&[("business.name", "Bar Roma")]), today), vec![]);
    assert_eq!(
        check_draft(service, &data(&[("owner.tax_code", "FOXDRA26C24H872A"), ("seat.colour", "blu")]), today),
        vec![
            FieldError::new("seat.colour", Reason::UnknownField),
            // The owner's code is derived from the business's here: reported where it is typed.
            FieldError::new("business.tax_code", Reason::PersonTaxCodeCheckCharacter),
        ]
    );
    assert_eq!(
        check_draft(
            service,
            &data(&[("owner.tax_code", "RSSMRA45C12F205C"), ("owner.birth_date", "13/03/1945")]),
            today
        ),
        vec![FieldError::new("business.tax_code", Reason::PersonTaxCodeBirthMismatch)]
    );
}

#[test]
fn a_complete_practice_becomes_one_filing_per_recipient() {
    let catalog = crate::catalog::tests::shipped();
    let now = time::macros::datetime!(2026-11-27 10:00 UTC);
    let mut practice = Practice {
        id: PracticeId::from_random_bytes([7; 16]),
        owner: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
        actor: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
        service_id: "avvio-ditta-individuale".into(),
        state: PracticeState::Draft,
        data: crate::catalog::tests::complete_start_data(),
        reference: None,
        needs_resend: false,
        created_at: now,
        updated_at: now,
        submitted_at: None,
    };
    let submission = prepare_submission(&practice, &catalog, now).expect("valid");
    let recipients: Vec<&str> = submission.filings.iter().map(|f| f.institution.as_str()).collect();
    assert_eq!(recipients, ["registro-imprese", "inps", "inail"]);
    // Typed once, present in every filing; normalised on the way.
    for filing in &submission.filings {
        let text = filing.payload.to_string();
        assert!(text.contains("RSSMRA45C12F205C"), "{text}");
    }
    assert_eq!(submission.filings[2].payload["lavorazioni"]["retribuzioni_presunte"], "24000.00");
    assert_eq!(submission.data["seat.province"], "RM");

    practice.data.remove("inail.work_processes");
    match prepare_submission(&practice, &catalog, now) {
        Err(SubmitError::Invalid(errors)) => {
            assert_eq!(errors, vec![FieldError::new("inail.work_processes", Reason::Required)]);
        }
        other => panic!("{other:?}"),
    }
    practice.state = PracticeState::InProgress;
    assert!(matches!(prepare_submission(&practice, &catalog, now), Err(SubmitError::Illegal(_))));
}

#[test]
fn a_correction_changes_only_the_faulted_fields_and_must_change_them() {
    let catalog = crate::catalog::tests::shipped();
    let now = time::macros::datetime!(2026-11-27 10:00 UTC);
    let today = crate::italian_date(now);
    let draft = Practice {
        id: PracticeId::from_random_bytes([8; 16]),
        owner: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
        actor: CodiceFiscale::parse("RSSMRA45C12F205C").expect("cf"),
        service_id: "avvio-ditta-individuale".into(),
        state: PracticeState::Draft,
        data: crate::catalog::tests::complete_start_data(),
        reference: None,
        needs_resend: false,
        created_at: now,
        updated_at: now,
        submitted_at: None,
    };
    let sent = Practice { data: prepare_submission(&draft, &catalog, now).expect("valid").data, ..draft };
    let at_fault = vec!["inail.work_processes".to_string()];
    let correct = |corrections: &[(&str, &str)]| {
        let corrections: PracticeData = corrections.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        prepare_correction(&sent, &catalog, "inail", &at_fault, &corrections, &Value::Null, today)
    };
    let unchanged = sent.data["inail.work_processes"].clone();
    for attempt in [vec![], vec![("inail.work_processes", unchanged.as_str())]] {
        match correct(&attempt) {
            Err(SubmitError::Invalid(errors)) => {
                assert_eq!(errors, vec![FieldError::new("inail.work_processes", Reason::NotCorrected)]);
            }
            other => panic!("{other:?}"),
        }
    }
    match correct(&[("business.name", "Altro")]) {
        Err(SubmitError::Invalid(errors)) => {
            assert_eq!(errors, vec![FieldError::new("business.name", Reason::NotAtFault)]);
        }
        other => panic!("{other:?}"),
    }
    let (data, payload) = correct(&[("inail.work_processes", "Somministrazione al banco e ai tavoli")]).expect("ok");
    assert_eq!(data["inail.work_processes"], "Somministrazione al banco e ai tavoli");
    assert!(payload.to_string().contains("Somministrazione al banco e ai tavoli"));
}

#[test]
fn payload_follows_the_mapping() {
    let filing = FilingKind {
        id: "x".into(),
        title: text("x"),
        fields: vec![],
        payload: vec![
            PayloadMapping { target: "impresa.denominazione".into(), source: "business.name".into() },
            PayloadMapping { target: "impresa.sede.cap".into(), source: "seat.cap".into() },
            PayloadMapping { target: "note".into(), source: "business.note".into() },
        ],
        answers: vec![],
        rules: vec![],
    };
    let data: PracticeData =
        [("business.name".to_string(), "Bar Roma".to_string()), ("seat.cap".to_string(), "00184".to_string())].into();
    assert_eq!(
        build_payload(&filing, &data),
        serde_json::json!({"impresa": {"denominazione": "Bar Roma", "sede": {"cap": "00184"}}})
    );
}

// Receivability rules of the shipped catalog (the rules themselves: `receivability`).
#[test]
fn the_shipped_catalog_refuses_before_sending_what_an_institution_would() {
    use crate::catalog::tests::{complete_start_data, shipped};
    use crate::validation::Reason;
    let catalog = shipped();
    let service = catalog.service("avvio-ditta-individuale").expect("service");
    let today = time::macros::date!(2026 - 12 - 01);
    assert!(validate_data(service, &complete_start_data(), today).is_ok());
    let mut data = complete_start_data();
    data.insert("inail.work_processes".into(), "Bar".into());
    data.insert("inps.scheme".into(), "artigiani".into());
    let errors = validate_data(service, &data, today).expect_err("refused");
    let refused: Vec<(&str, &str)> = errors
        .iter()
        .filter_map(|e| match &e.reason {
            Reason::Receivability { institution, .. } => Some((e.field.as_str(), institution.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [("business.ateco", "inps"), ("inail.work_processes", "inail")], "{errors:?}");
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn a_catalog_rule_mistake_names_file_line_and_column() {
    let mut sources = crate::catalog::tests::shipped_sources();
    let inail = sources.iter_mut().find(|s| s.path == "institutions/inail.toml").expect("inail");
    inail.text = inail.text.replacen("min_length = 20", "min_length = 20\npattern = \"[a-z\"", 1);
    let line = inail.text.lines().position(|l| l.starts_with("pattern = ")).expect("line") + 1;
    let errors = crate::catalog::Catalog::from_sources(&sources).expect_err("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].file.as_str(), errors[0].line, errors[0].column), ("institutions/inail.toml", line, 11));
    assert!(errors[0].message.contains("not a regular expression"), "{errors:?}");
}

#[test]
fn practice_follows_its_deliveries() {
    use crate::delivery::DeliveryState as S;
    use Progress as P;
    assert_eq!(Progress::of(&[]), None);
    assert_eq!(Progress::of(&[S::Failed, S::Failed, S::Failed]), Some(P::NobodyReached));
    assert_eq!(Progress::of(&[S::Failed, S::Waiting]), Some(P::NobodyReached));
    assert_eq!(Progress::of(&[S::Failed, S::TakenInCharge, S::Failed]), Some(P::Undelivered), "a failure is told");
    assert_eq!(Progress::of(&[S::Accepted, S::Rejected]), Some(P::Rejected), "not completed");
    assert_eq!(Progress::of(&[S::Rejected, S::Delivered]), Some(P::Rejected), "told as soon as it comes");
    assert_eq!(Progress::of(&[S::Rejected, S::Failed]), Some(P::Rejected), "the correction comes first");
    assert_eq!(Progress::of(&[S::Accepted, S::Failed]), Some(P::Undelivered));
    assert_eq!(Progress::of(&[S::NoNews, S::Accepted]), Some(P::Undelivered), "no news is not an outcome");
    assert_eq!(Progress::of(&[S::Rejected, S::Waiting]), Some(P::Rejected), "held until corrected");
    assert_eq!(Progress::of(&[S::Waiting, S::Waiting]), Some(P::Working));
    assert_eq!(Progress::of(&[S::Accepted, S::TakenInCharge]), Some(P::Working));
    assert_eq!(Progress::of(&[S::Accepted, S::Accepted]), Some(P::AllAccepted));
}

#[test]
fn a_derived_field_takes_its_source_and_is_checked_where_it_is_typed() {
    let catalog = crate::catalog::tests::shipped();
    let start = catalog.service("avvio-ditta-individuale").expect("service");
    assert_eq!(start.derived_from("owner.tax_code"), Some("business.tax_code"));
    let mut data = PracticeData::from([("business.tax_code".to_string(), "X".to_string())]);
    start.derive(&mut data);
    assert_eq!(data.get("owner.tax_code").map(String::as_str), Some("X"));
    // An older client sending only the derived field: kept, as the source.
    let mut older = PracticeData::from([("owner.tax_code".to_string(), "Y".to_string())]);
    start.derive(&mut older);
    assert_eq!(older.get("business.tax_code").map(String::as_str), Some("Y"));
    // A company's 11-digit code is no person's: the error is on the field typed.
    let company = PracticeData::from([("business.tax_code".to_string(), "00743110157".to_string())]);
    let today = time::macros::date!(2026 - 12 - 01);
    let errors = crate::practice::validate_data(start, &company, today).expect_err("incomplete");
    assert!(errors.iter().all(|e| e.field != "owner.tax_code"), "{errors:?}");
    assert!(errors.iter().any(|e| e.field == "business.tax_code"), "{errors:?}");
}
