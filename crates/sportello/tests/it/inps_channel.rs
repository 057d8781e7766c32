//! INPS as the demo has it: behind a simulated PDND (vouchers), XML filings to its published
//! schema, XML answers and signed XML callbacks read with XPath (see `channels/inps.toml`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use simulator::Behaviour;

use crate::delivery::{all_in, quick_behaviour, states, with_long_description, world_with, Options};
use crate::interfaces::delivery;

/// The vouchers the simulated PDND has issued, asked over HTTPS with PDND's own CA.
async fn vouchers_issued(w: &crate::delivery::World) -> Vec<Value> {
    let pdnd = w.pdnd.as_ref().expect("INPS is behind PDND");
    let url = pdnd.token_url.replace("/token.oauth2", "/_sim/vouchers");
    let client = sportello::bench::https_client(&pdnd.ca_pem, None).expect("client");
    client.get(url).send().await.expect("vouchers").json().await.expect("json")
}

async fn accepted_everywhere(w: &crate::delivery::World) -> String {
    let id = w.submit(with_long_description()).await;
    w.wait_for(&id, "all accepted", |p| all_in(p, "accepted")).await;
    id
}

/// Submits a practice, waits until INPS failed and the others were accepted; returns the
/// practice and INPS's last error.
async fn inps_failed_alone(w: &crate::delivery::World) -> (Value, String) {
    let id = w.submit(with_long_description()).await;
    let p = w
        .wait_for(&id, "INPS failed, the others accepted", |p| {
            let s = states(p);
            s["inps"] == "failed" && s["registro-imprese"] == "accepted" && s["inail"] == "accepted"
        })
        .await;
    let error = delivery(&p, "inps")["last_error"].as_str().unwrap_or_default().to_string();
    (p, error)
}

fn own_interfaces(channels_dir: Option<std::path::PathBuf>) -> Options {
    Options { own_interfaces: true, poll: Some(Duration::from_millis(50)), channels_dir, ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inps_takes_xml_and_its_xml_rejection_is_mapped_to_the_field_and_corrected() {
    let mut w = world_with(own_interfaces(None)).await;
    let pec_rule = simulator::Rule::unpublished(
        "azienda.pec",
        simulator::Check::MinLength { min: 25 },
        "PEC <non> registrata & non valida",
    );
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
    let (_, error) = inps_failed_alone(&w).await;
    assert!(error.contains("does not follow inps.xsd") && error.contains("nothing was sent"), "{error}");
    assert!(error.contains("dichiarante"), "libxml2 names the element expected: {error}");
    assert!(w.sims["inps"].received().is_empty(), "nothing reached INPS");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdnd_voucher_is_reused_until_near_expiry_then_renewed_and_a_revoked_one_replaced() {
    let options = Options { voucher_lifetime: Some(Duration::from_secs(6)), ..own_interfaces(None) };
    let mut w = world_with(options).await;
    accepted_everywhere(&w).await;
    accepted_everywhere(&w).await;
    let issued = vouchers_issued(&w).await;
    assert_eq!(issued.len(), 1, "one voucher for both filings and every status request: {issued:#?}");
    assert_eq!(issued[0]["purpose_id"], "purpose-inps-filings");
    assert_eq!(issued[0]["audience"], "inps");
    // Renewed a fifth of its life before it expires (here: a second before).
    tokio::time::sleep(Duration::from_millis(5200)).await;
    accepted_everywhere(&w).await;
    let issued = vouchers_issued(&w).await;
    assert_eq!(issued.len(), 2, "renewed near expiry: {issued:#?}");
    // INPS stops honouring the current voucher: the 401 drops it, a new one is asked, the
    // filing goes, once.
    let current = issued[1]["jti"].as_str().expect("jti").to_string();
    let behaviour = w.sims["inps"].behaviour();
    w.sims["inps"].set_behaviour(Behaviour { revoked_vouchers: vec![current], ..behaviour });
    let id = accepted_everywhere(&w).await;
    assert_eq!(vouchers_issued(&w).await.len(), 3, "renewed after the institution refused it");
    assert_eq!(w.sims["inps"].count_of(&id), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purpose_pdnd_refuses_fails_the_filing_with_pdnd_s_reason() {
    // INPS's look-up is not offered here (only for one's own business), so that the refusal
    // falls on the filing itself; otherwise the look-up, behind the same purpose, would be
    // "cannot be known" and nothing would be sent.
    let profiles = crate::delivery::profiles_with(
        "inps.toml",
        "[authorisations]\noffered = false\npolicy = \"own_business_only\"\n",
    );
    let options = Options {
        pdnd_purpose: Some("purpose-never-approved".into()),
        ..own_interfaces(Some(profiles.path().to_path_buf()))
    };
    let mut w = world_with(options).await;
    let (p, error) = inps_failed_alone(&w).await;
    assert!(
        error.contains("PDND refused the voucher: unauthorized_client")
            && error.contains("purpose-never-approved is not active"),
        "{error}"
    );
    assert_eq!(delivery(&p, "inps")["attempts"], 1, "a refusal is not retried");
    assert!(w.sims["inps"].received().is_empty(), "nothing reached INPS");
    assert!(vouchers_issued(&w).await.is_empty());
    w.stop().await;
}
