//! INPS as the demo has it: XML filings to its published schema, XML answers and signed XML
//! callbacks read with XPath (see `channels/inps.toml`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use simulator::Behaviour;

use crate::delivery::{all_in, quick_behaviour, states, with_long_description, world_with, Options};
use crate::interfaces::delivery;

fn own_interfaces(channels_dir: Option<std::path::PathBuf>) -> Options {
    Options { own_interfaces: true, poll: Some(Duration::from_millis(50)), channels_dir, ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inps_takes_xml_and_its_xml_rejection_is_mapped_to_the_field_and_corrected() {
    let mut w = world_with(own_interfaces(None)).await;
    let pec_rule = simulator::Rule {
        path: "azienda.pec".into(),
        min_length: 25,
        message: "PEC <non> registrata & non valida".into(),
    };
    w.sims["inps"].set_behaviour(Behaviour { rules: vec![pec_rule], ..quick_behaviour() });
    let id = w.submit(with_long_description()).await;
    let p = w
        .wait_for(&id, "INPS rejected in its XML outcome", |p| {
            let s = states(p);
            s["inps"] == "rejected" && s["registro-imprese"] == "accepted" && s["inail"] == "accepted"
        })
        .await;
    let inps = delivery(&p, "inps");
    assert!(inps["protocol_number"].as_str().is_some_and(|n| n.starts_with("INPS-")), "from the XML: {inps:#}");
    assert_eq!(inps["rejection"]["fields"], json!(["business.pec"]), "<motivo campo> mapped back: {inps:#}");
    assert_eq!(inps["rejection"]["reasons"][0], "PEC <non> registrata & non valida", "XML unescaped once");
    // INPS read the XML document it validated: the payload, the REA number from the registry.
    let taken = w.sims["inps"].received();
    assert_eq!(taken[0].payload["azienda"]["denominazione"], "Bar Centrale di Mario Rossi");
    assert!(taken[0].payload["azienda"]["rea"]["numero"].as_str().is_some_and(|n| n.len() == 7));
    assert_eq!(taken[0].declarant, crate::api::HOLDER);

    let url = w.url(&format!("/api/v1/practices/{id}/deliveries/inps/resend"));
    let r = w.client().post(url).json(&json!({"data": {"business.pec": "bar.centrale.roma@pec.example.it"}})).send();
    let r = r.await.expect("resend");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    let p = w.wait_for(&id, "all accepted", |p| all_in(p, "accepted")).await;
    assert_eq!(delivery(&p, "inps")["revision"], 1);
    assert_eq!(w.sims["inps"].received()[1].payload["azienda"]["pec"], "bar.centrale.roma@pec.example.it");
    assert_eq!(w.sims["inps"].count_of(&format!("{id}.inps.1")), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xml_filing_that_does_not_follow_the_schema_is_never_sent_and_the_operator_is_told() {
    // An integrator's mistake: the template leaves out an element the schema requires.
    let dir = tempfile::tempdir().expect("temp");
    for entry in std::fs::read_dir(sportello::simulated::repository_channels_dir()).expect("channels") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let template = dir.path().join("inps.xml");
    let text = std::fs::read_to_string(&template).expect("template");
    let broken: String = text.lines().filter(|l| !l.starts_with("<dichiarante>")).collect::<Vec<_>>().join("\n");
    assert_ne!(broken, text);
    std::fs::write(&template, broken).expect("write");

    let mut w = world_with(own_interfaces(Some(dir.path().to_path_buf()))).await;
    let id = w.submit(with_long_description()).await;
    let p = w
        .wait_for(&id, "INPS failed, the others accepted", |p| {
            let s = states(p);
            s["inps"] == "failed" && s["registro-imprese"] == "accepted" && s["inail"] == "accepted"
        })
        .await;
    let error = delivery(&p, "inps")["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("does not follow inps.xsd") && error.contains("nothing was sent"), "{error}");
    assert!(error.contains("dichiarante"), "libxml2 names the element expected: {error}");
    assert!(w.sims["inps"].received().is_empty(), "nothing reached INPS");
    w.stop().await;
}
