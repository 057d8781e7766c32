use super::*;
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
    let news = callback.answer.read(&json!({"accepted": false, "reasons": ["no"], "fields": ["a.b"]}));
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
