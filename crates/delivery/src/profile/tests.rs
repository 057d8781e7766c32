use super::*;
use domain::authorisation::{Grant, Role};
use serde_json::json;

fn context() -> Value {
    json!({
        "filing": {"id": "p1.registro-imprese.0", "reference": "SPT-2026-000001", "kind": "iscrizione",
                   "declarant": "DPRTNT80A01H501Y", "on_behalf_of": null, "callback_url": "https://portal/cb"},
        "payload": {"impresa": {"denominazione": "Bar \"Sport\" & <Figli>", "pec": "bar@pec.it"}},
        "envelope": {"filing_id": "p1.registro-imprese.0", "payload": {"a": 1}},
        "institution": "registro-imprese",
        "status_url": "/denunce/7/stato",
    })
}

fn profile(text: &str, templates: &[(&str, &str)]) -> Result<Profile, Vec<ProfileError>> {
    let templates = templates.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Profile::from_text("test.toml", text, &templates)
}

const BLOCK: &str = r#"pattern = "BLOCK_REST"
[submit]
path = "/pratiche/{{ filing.reference }}"
body = "ri.json"
[submit.answer]
protocol_number = "/protocollo"
outcome = "/esito"
accepted = ["ISCRITTA"]
rejected_outcomes = ["RESPINTA"]
"#;

#[test]
fn the_built_in_profile_sends_the_envelope_as_today() {
    let p = Profile::sportello().expect("built-in profile");
    assert_eq!(p.pattern, Pattern::NonblockPushRest);
    let r = p.render_submit(&context()).expect("render");
    assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/filings"));
    let body: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(body, context()["envelope"]);
    let status = p.render_status(&context()).expect("status").expect("render");
    assert_eq!((status.method.as_str(), status.target.as_str()), ("GET", "/filings/p1.registro-imprese.0"));
    let callback = p.callback.expect("callback");
    let news =
        callback.answer.read(json!({"accepted": false, "reasons": ["no"], "fields": ["a.b"]}).to_string().as_bytes());
    assert_eq!((news.accepted, news.paths), (Some(false), vec!["a.b".to_string()]));
}

#[test]
fn json_templates_escape_every_value() {
    let p = profile(BLOCK, &[("ri.json", r#"{"denominazione": {{ payload.impresa.denominazione }}, "assente": {{ payload.impresa.nessuno | default(none) }}}"#)])
        .expect("profile");
    let r = p.render_submit(&context()).expect("render");
    assert_eq!(r.target, "/pratiche/SPT-2026-000001");
    let body: Value = serde_json::from_slice(&r.body).expect("valid JSON");
    assert_eq!(body["denominazione"], "Bar \"Sport\" & <Figli>");
    assert_eq!(body["assente"], Value::Null);
}

#[test]
fn xml_templates_escape_markup() {
    let text = BLOCK.replace("body = \"ri.json\"", "body = \"ri.xml\"\ncontent_type = \"application/xml\"");
    let p = profile(&text, &[("ri.xml", "<d>{{ payload.impresa.denominazione }}</d>")]).expect("profile");
    let r = p.render_submit(&context()).expect("render");
    let body = String::from_utf8(r.body).expect("utf-8");
    assert!(body.contains("Bar &quot;Sport&quot; &amp; &lt;Figli&gt;"), "{body}");
}

#[test]
fn a_body_that_is_not_json_is_never_sent() {
    let p = profile(BLOCK, &[("ri.json", r#"{"pec": {{ payload.impresa.pec }} "#)]).expect("profile");
    let error = p.render_submit(&context()).expect_err("not JSON");
    assert!(error.contains("not JSON"), "{error}");
}

#[test]
fn mistakes_are_reported_with_line_and_column() {
    let text =
        "pattern = \"BLOCKING\"\n[submit]\npath = \"/x\"\n[submit.answer]\noutcome = \"esito\"\nretry = [\"6xx\"]\n";
    let errors = profile(text, &[]).expect_err("mistakes");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(shown.iter().any(|e| e.starts_with("test.toml:1:11: pattern `BLOCKING`")), "{shown:?}");
    assert!(shown.iter().any(|e| e.starts_with("test.toml:5:11:") && e.contains("JSON Pointer")), "{shown:?}");
    assert!(shown.iter().any(|e| e.starts_with("test.toml:6:9:") && e.contains("6xx")), "{shown:?}");

    let errors =
        profile("pattern = \"BLOCK_REST\"\n[submit]\npath = \"/x\"\ncolour = 1\n", &[]).expect_err("unknown key");
    assert_eq!((errors[0].line, errors[0].column), (4, 1), "{errors:?}");

    let pull = "pattern = \"NONBLOCK_PULL_REST\"\n[submit]\npath = \"/x\"\n";
    let errors = profile(pull, &[]).expect_err("pull without status");
    assert!(errors.iter().any(|e| e.message.contains("[status]")), "{errors:?}");

    let errors = profile(BLOCK, &[("ri.json", "{{ payload.x ")]).expect_err("template syntax");
    assert!(errors.iter().any(|e| e.file == "ri.json" && e.message.starts_with("template")), "{errors:?}");
}

#[test]
fn a_path_must_stay_under_the_channel_or_be_https() {
    let text = BLOCK.replace("/pratiche/{{ filing.reference }}", "{{ status_url }}x");
    let p = profile(&text, &[("ri.json", "{}")]).expect("profile");
    assert!(p.render_submit(&context()).is_ok());
    let mut ctx = context();
    ctx["status_url"] = json!("ftp://elsewhere/");
    assert!(p.render_submit(&ctx).is_err());
}

const INPS_XSD: &str = r#"<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:inps:domanda"
           xmlns="urn:inps:domanda" elementFormDefault="qualified">
  <xs:element name="domanda"><xs:complexType><xs:sequence>
    <xs:element name="denominazione"><xs:simpleType><xs:restriction base="xs:string">
      <xs:maxLength value="30"/></xs:restriction></xs:simpleType></xs:element>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>"#;

const XML_PUSH: &str = r#"pattern = "NONBLOCK_PUSH_REST"
[submit]
path = "/domande"
body = "inps.xml"
content_type = "application/xml"
schema = "inps.xsd"
[submit.answer]
format = "xml"
protocol_number = "/r:ricevuta/r:protocollo"
[callback]
filing_id = "/r:esito/@domanda"
[callback.answer]
format = "xml"
outcome = "/r:esito/@stato"
accepted = ["ACCOLTA"]
rejected_outcomes = ["RESPINTA"]
reasons = "//r:motivo"
fields = "//r:motivo/@campo"
[namespaces]
r = "urn:inps:esito"
"#;

#[test]
fn an_xml_body_that_does_not_follow_its_schema_is_never_sent() {
    let template = "<domanda xmlns=\"urn:inps:domanda\"><denominazione>{{ payload.impresa.denominazione }}</denominazione></domanda>";
    let p = profile(XML_PUSH, &[("inps.xml", template), ("inps.xsd", INPS_XSD)]).expect("profile");
    let r = p.render_submit(&context()).expect("valid XML");
    assert!(String::from_utf8_lossy(&r.body).contains("Bar &quot;Sport&quot; &amp; &lt;Figli&gt;"));
    let mut long = context();
    long["payload"]["impresa"]["denominazione"] = json!("Una denominazione di molto più di trenta caratteri");
    let error = p.render_submit(&long).expect_err("too long for the XSD");
    assert!(
        error.contains("does not follow inps.xsd")
            && error.contains("denominazione")
            && error.contains("nothing was sent"),
        "{error}"
    );
    let p = profile(XML_PUSH, &[("inps.xml", "<domanda>"), ("inps.xsd", INPS_XSD)]).expect("profile");
    assert!(p.render_submit(&context()).expect_err("malformed").contains("not well-formed"));
}

#[test]
fn xml_answers_and_callbacks_are_read_with_xpath() {
    let p = profile(XML_PUSH, &[("inps.xml", "<a/>"), ("inps.xsd", INPS_XSD)]).expect("profile");
    let news = p.submit.answer.read(br#"<ricevuta xmlns="urn:inps:esito"><protocollo>INPS-7</protocollo></ricevuta>"#);
    assert_eq!(news.protocol_number.as_deref(), Some("INPS-7"));
    let callback = p.callback.expect("callback");
    let body = br#"<esito xmlns="urn:inps:esito" domanda="p1.inps.0" stato="RESPINTA"><motivo campo="titolare/cf">errato</motivo></esito>"#;
    let answer = callback.answer.parse(body);
    assert_eq!(callback.filing_id.as_ref().and_then(|l| answer.text(l)).as_deref(), Some("p1.inps.0"));
    let news = callback.answer.read_answer(&answer);
    assert_eq!(
        (news.accepted, news.paths, news.reasons),
        (Some(false), vec!["titolare/cf".into()], vec!["errato".into()])
    );
}

#[test]
fn xml_profile_mistakes_are_reported_where_they_are() {
    let broken = XML_PUSH.replace("/r:ricevuta/r:protocollo", "/r:ricevuta[");
    let errors = profile(&broken, &[("inps.xml", "<a/>"), ("inps.xsd", INPS_XSD)]).expect_err("bad xpath");
    assert!(errors.iter().any(|e| e.line == 9 && e.message.contains("XPath")), "{errors:?}");
    let errors = profile(XML_PUSH, &[("inps.xml", "<a/>"), ("inps.xsd", "<xs:schema")]).expect_err("bad xsd");
    assert!(errors.iter().any(|e| e.file == "inps.xsd" && e.message.contains("schema")), "{errors:?}");
    let errors = profile(XML_PUSH, &[("inps.xml", "<a/>")]).expect_err("no xsd");
    assert!(errors.iter().any(|e| e.line == 6 && e.message.contains("inps.xsd")), "{errors:?}");
    let errors = profile(
        &XML_PUSH.replacen("format = \"xml\"", "format = \"yaml\"", 1),
        &[("inps.xml", "<a/>"), ("inps.xsd", INPS_XSD)],
    )
    .expect_err("bad format");
    assert!(errors.iter().any(|e| e.message.contains("format `yaml`")), "{errors:?}");
}

const INAIL_LOOKUP: &str = r#"
[authorisations]
path = "/abilitazioni/{{ tax_code }}"
business = "/abilitazioni/*/impresa"
role = "/abilitazioni/*/ruolo"
roles = { TITOLARE = "owner", INTERMEDIARIO = "intermediary" }
[authorisations.answer]
delivered = [200]
"#;

fn lookup_of(p: &Profile) -> &AuthorisationLookup {
    match &p.authorisations {
        Lookup::Asked(l) => l,
        Lookup::NotOffered(policy) => panic!("not offered: {policy:?}"),
    }
}

#[test]
fn a_profile_without_look_up_or_notices_uses_sportello_s_own() {
    let p = profile(BLOCK, &[("ri.json", "{}")]).expect("profile");
    let r = p.render_lookup(&json!({"tax_code": "RSSMRA80A01H501U"})).expect("asked").expect("render");
    assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/authorisations/RSSMRA80A01H501U"));
    let DelegationNotices::Sent { grant, revoke } = &p.delegations else { panic!("notices sent") };
    let delegation = json!({"delegation": {"delegation_id": "d-1", "grantor": "G", "businesses": ["X"]}});
    let g = p.render(grant, &delegation).expect("grant");
    assert_eq!((g.method.as_str(), g.target.as_str()), ("POST", "/delegations"));
    assert_eq!(serde_json::from_slice::<Value>(&g.body).expect("json"), delegation["delegation"]);
    let r = p.render(revoke, &delegation).expect("revoke");
    assert_eq!((r.method.as_str(), r.target.as_str()), ("DELETE", "/delegations/d-1"));
    let answer = lookup_of(&p)
        .operation
        .answer
        .parse(br#"{"businesses": [{"business": "00743110157", "role": "intermediary"}]}"#);
    let grants = lookup_of(&p).grants(&answer).expect("grants");
    assert_eq!(grants, vec![Grant { business: "00743110157".into(), role: Role::Intermediary }]);
}

#[test]
fn an_institution_s_own_look_up_reads_its_words_for_roles() {
    let p = profile(&format!("{BLOCK}{INAIL_LOOKUP}"), &[("ri.json", "{}")]).expect("profile");
    let lookup = lookup_of(&p);
    let r = p.render_lookup(&json!({"tax_code": "RSSMRA80A01H501U"})).expect("asked").expect("render");
    assert_eq!(r.target, "/abilitazioni/RSSMRA80A01H501U");
    let answer = lookup.operation.answer.parse(
        br#"{"abilitazioni": [{"impresa": "rssmra80a01h501u", "ruolo": "TITOLARE"},
                             {"impresa": "00743110157", "ruolo": "DELEGATO_SCONOSCIUTO"},
                             {"impresa": "01879020517", "ruolo": "INTERMEDIARIO"}]}"#,
    );
    let grants = lookup.grants(&answer).expect("grants");
    // An unknown role word grants nothing: refusing is the safe side.
    assert_eq!(
        grants,
        vec![
            Grant { business: "RSSMRA80A01H501U".into(), role: Role::Owner },
            Grant { business: "01879020517".into(), role: Role::Intermediary },
        ]
    );
    let uneven = lookup.operation.answer.parse(br#"{"abilitazioni": [{"impresa": "X"}]}"#);
    assert!(lookup.grants(&uneven).is_err(), "a business without its role is not read as a grant");
    assert!(lookup.grants(&crate::mapping::Answer::Unreadable).is_err());
}

#[test]
fn services_not_offered_carry_their_policy() {
    let text = format!(
        "{BLOCK}\n[authorisations]\noffered = false\npolicy = \"on_receipt\"\n\n[delegations]\noffered = false\npolicy = \"portal_record\"\n"
    );
    let p = profile(&text, &[("ri.json", "{}")]).expect("profile");
    assert!(matches!(p.authorisations, Lookup::NotOffered(domain::authorisation::NotOfferedPolicy::OnReceipt)));
    assert!(p.render_lookup(&json!({})).is_none());
    assert!(matches!(p.delegations, DelegationNotices::NotOffered(DelegationPolicy::PortalRecord)));
    let grantor_only = text.replace("portal_record", "grantor_only").replace("on_receipt", "own_business_only");
    let p = profile(&grantor_only, &[("ri.json", "{}")]).expect("profile");
    assert!(matches!(p.authorisations, Lookup::NotOffered(domain::authorisation::NotOfferedPolicy::OwnBusinessOnly)));
    assert!(matches!(p.delegations, DelegationNotices::NotOffered(DelegationPolicy::GrantorOnly)));
}

#[test]
fn look_up_and_notice_mistakes_are_reported_where_they_are() {
    let text = format!(
        "{BLOCK}\n[authorisations]\noffered = false\npolicy = \"sometimes\"\npath = \"/x\"\n\n[delegations.grant]\npath = \"/deleghe\"\nmethod = \"PATCH\"\n"
    );
    let errors = profile(&text, &[("ri.json", "{}")]).expect_err("mistakes");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).expect("line") + 1;
    let expect = |needle: &str, message: &str| {
        let prefix = format!("test.toml:{}:", line_of(needle));
        assert!(
            shown.iter().any(|s| s.starts_with(&prefix) && s.contains(message)),
            "{message} at {prefix}: {shown:#?}"
        );
    };
    expect("policy = \"sometimes\"", "policy `sometimes`: expected \"on_receipt\" or \"own_business_only\"");
    expect("path = \"/x\"", "a look-up that is not offered has no request");
    expect("method = \"PATCH\"", "method `PATCH`");
    assert!(shown.iter().any(|s| s.contains("needs both [delegations.grant] and [delegations.revoke]")), "{shown:#?}");
    let bad_role = format!("{BLOCK}{}", INAIL_LOOKUP.replace("\"intermediary\"", "\"boss\""));
    let errors = profile(&bad_role, &[("ri.json", "{}")]).expect_err("a role Sportello does not know");
    let line = bad_role.lines().position(|l| l.contains("\"boss\"")).expect("line") + 1;
    assert!(errors.iter().any(|e| e.line == line && e.message.contains("role `boss`")), "{errors:#?}");
    let no_business = format!("{BLOCK}\n[authorisations]\npath = \"/abilitazioni/{{{{ tax_code }}}}\"\n");
    let errors = profile(&no_business, &[("ri.json", "{}")]).expect_err("no business locator");
    assert!(errors.iter().any(|e| e.message.contains("needs a path and a business locator")), "{errors:#?}");
}
