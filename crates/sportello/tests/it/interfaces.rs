//! Institutions that keep their own interfaces, reached through channel profiles: the Registro
//! Imprese over BLOCK_REST with its own JSON, INAIL over NONBLOCK_PULL_REST, INPS with
//! Sportello's own callbacks; deadlines so that no filing waits forever; simulators that keep
//! their ledger across a restart.

use std::sync::Arc;
use std::time::Duration;

use delivery::channels::Channel;
use delivery::client::{FilingEnvelope, InstitutionClient, SendResult};
use delivery::modi::Signer;
use delivery::profile::Profile;
use identity::test_pki::TestPki;
use reqwest::StatusCode;
use serde_json::{json, Value};
use simulator::{Behaviour, Interface, SimSettings};

use crate::api::complete_start_data;
use crate::delivery::{all_in, quick_behaviour, states, with_long_description, world_with, Options};

pub(crate) fn delivery<'a>(p: &'a Value, institution: &str) -> &'a Value {
    p["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["institution"] == institution))
        .unwrap_or_else(|| panic!("no delivery to {institution}: {p:#}"))
}

fn own_interfaces() -> Options {
    Options { own_interfaces: true, poll: Some(Duration::from_millis(50)), ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_interfaces_give_three_protocol_numbers_and_their_values() {
    let mut w = world_with(own_interfaces()).await;
    let id = w.submit(with_long_description()).await;
    let p = w.wait_for(&id, "all accepted", |p| all_in(p, "accepted") && p["state"] == "completed").await;
    for institution in ["registro-imprese", "inps", "inail"] {
        let d = delivery(&p, institution);
        assert!(d["protocol_number"].as_str().is_some_and(|n| !n.is_empty()), "{institution}: {d:#}");
    }
    // BLOCK_REST: the outcome and the REA number came in the answer.
    let ri = delivery(&p, "registro-imprese");
    assert_eq!(ri["values"]["ufficio_rea"], "RM", "{ri:#}");
    assert!(ri["values"]["numero_rea"].as_str().is_some_and(|n| n.len() == 7), "{ri:#}");
    // NONBLOCK_PULL_REST: asked until the outcome, which carried the codice ditta.
    let inail = delivery(&p, "inail");
    assert!(inail["values"]["codice_ditta"].as_str().is_some(), "{inail:#}");
    let taken = w.sims["inail"].received();
    assert_eq!(taken.len(), 1);
    assert!(taken[0].polls > 2, "answered 'in lavorazione' twice, then the outcome: {} polls", taken[0].polls);
    // The Registro Imprese read its own shape: the payload under `dati`, the declarant named.
    let registered = w.sims["registro-imprese"].received();
    assert_eq!(registered[0].payload["impresa"]["denominazione"], "Bar Centrale di Mario Rossi");
    assert_eq!(registered[0].declarant, crate::api::HOLDER);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_rejection_holds_the_others_until_corrected_then_its_rea_number_flows_into_them() {
    let mut w = world_with(own_interfaces()).await;
    w.sims["inail"].set_behaviour(Behaviour { rules: simulator::inail_rules(), ..quick_behaviour() });
    let pec_rule = simulator::Rule::unpublished(
        "impresa.pec",
        simulator::Check::MinLength { min: 18 },
        "Indirizzo PEC non presente nell'indice INI-PEC",
    );
    w.sims["registro-imprese"].set_behaviour(Behaviour { rules: vec![pec_rule], ..quick_behaviour() });
    let mut data = complete_start_data();
    data["inail.work_processes"] = json!("Attività da definire in seguito");
    data["business.pec"] = json!("a@pec.it");
    let id = w.submit(data).await;
    // The Registro Imprese refuses on receipt (BLOCK_REST 422): INPS and INAIL wait for it.
    let p = w
        .wait_for(&id, "RI rejected, the others held", |p| {
            let s = states(p);
            s["registro-imprese"] == "rejected" && s["inail"] == "waiting" && s["inps"] == "waiting"
        })
        .await;
    let ri = delivery(&p, "registro-imprese");
    assert_eq!(ri["rejection"]["fields"], json!(["business.pec"]), "BLOCK_REST 422 mapped back: {ri:#}");
    assert_eq!(ri["rejection"]["reasons"][0], "Indirizzo PEC non presente nell'indice INI-PEC");
    assert_eq!(delivery(&p, "inps")["waits_for"], "registro-imprese");
    assert!(w.sims["inps"].received().is_empty() && w.sims["inail"].received().is_empty(), "nothing sent to them");
    let page =
        w.client().get(w.url(&format!("/pratiche/{id}"))).send().await.expect("page").text().await.expect("html");
    assert!(page.contains("in attesa di Registro delle imprese"), "{page}");

    let resend = |institution: &str, data: Value| {
        let url = w.url(&format!("/api/v1/practices/{id}/deliveries/{institution}/resend"));
        let client = w.client();
        async move { client.post(url).json(&json!({ "data": data })).send().await.expect("resend") }
    };
    let r = resend("registro-imprese", json!({"business.pec": "bar.centrale@pec.example.it"})).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    // Corrected and registered: INPS and INAIL go, with the REA number and the registry's
    // protocol number in their payloads; INAIL's own outcome (pull) then rejects a short
    // description, mapped back to its catalog field.
    let p = w
        .wait_for(&id, "RI and INPS accepted, INAIL rejected", |p| {
            let s = states(p);
            s["registro-imprese"] == "accepted" && s["inps"] == "accepted" && s["inail"] == "rejected"
        })
        .await;
    let rea = delivery(&p, "registro-imprese")["values"]["numero_rea"].as_str().expect("REA number").to_string();
    let ri_protocol = delivery(&p, "registro-imprese")["protocol_number"].as_str().expect("protocol").to_string();
    assert_eq!(w.sims["inps"].received()[0].payload["azienda"]["rea"]["numero"], rea.as_str());
    assert_eq!(w.sims["inps"].received()[0].payload["azienda"]["rea"]["ufficio"], "RM");
    assert_eq!(w.sims["inps"].received()[0].payload["azienda"]["protocollo_registro_imprese"], ri_protocol.as_str());
    assert_eq!(w.sims["inail"].received()[0].payload["ditta"]["rea"]["numero"], rea.as_str());
    let inail = delivery(&p, "inail");
    assert_eq!(inail["rejection"]["fields"], json!(["inail.work_processes"]), "outcome mapped back: {inail:#}");
    assert!(inail["protocol_number"].as_str().is_some(), "a pull institution registers, then rejects");
    let r = resend("inail", json!({"inail.work_processes": "Somministrazione di alimenti e bevande al banco"})).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    let p = w.wait_for(&id, "all accepted", |p| all_in(p, "accepted")).await;
    assert_eq!(delivery(&p, "inail")["revision"], 1);
    assert_eq!(w.sims["inail"].received()[1].payload["ditta"]["rea"]["numero"], rea.as_str(), "kept in the correction");
    assert_eq!(w.sims["registro-imprese"].count_of(&id), 1, "the refused revision was never registered");
    assert_eq!(w.sims["inail"].count_of(&format!("{id}.inail.1")), 1, "the corrected one once");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_callback_institution_is_asked_then_marked_no_news_and_resent() {
    let mut w = world_with(Options {
        callback_deadline: Some(Duration::from_millis(300)),
        no_news_after: Some(Duration::from_millis(1500)),
        ..Options::default()
    })
    .await;
    for sim in w.sims.values() {
        sim.set_behaviour(Behaviour { callbacks: false, ..quick_behaviour() });
    }
    // INPS takes the filing but then cannot be asked: its status service is down.
    let id = w.submit(with_long_description()).await;
    w.wait_for(&id, "INPS delivered", |p| states(p)["inps"] == "delivered").await;
    let behaviour = w.sims["inps"].behaviour();
    w.sims["inps"].set_behaviour(Behaviour { down: true, ..behaviour.clone() });
    // The others never call back either, but answer when asked past the deadline.
    let p = w
        .wait_for(&id, "others asked, INPS no news", |p| {
            let s = states(p);
            s["registro-imprese"] == "accepted" && s["inail"] == "accepted" && s["inps"] == "no_news"
        })
        .await;
    assert!(delivery(&p, "inps")["last_news_at"].as_str().is_some(), "the date of the last news is kept");
    assert_eq!(p["state"], "to_resend", "no news is not an outcome: the user is asked to send again");
    // The page says so, with the date, and offers to send it again.
    let page = w
        .client()
        .get(w.url(&format!("/pratiche/{id}")))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Nessuna notizia da"), "{page}");
    assert!(page.contains(&format!("/pratiche/{id}/destinatari/inps/reinvia")), "resend offered");
    // Sent again: same idempotency key, so INPS answers as the first time and registers once.
    w.sims["inps"].set_behaviour(behaviour);
    let r = w
        .client()
        .post(w.url(&format!("/api/v1/practices/{id}/deliveries/inps/resend")))
        .json(&json!({}))
        .send()
        .await
        .expect("resend");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    w.wait_for(&id, "INPS accepted", |p| all_in(p, "accepted")).await;
    assert_eq!(w.sims["inps"].count_of(&id), 1, "processed once");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_simulator_keeps_its_ledger_and_processes_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp");
    let pki = TestPki::generate("Ledger test CA").expect("pki");
    let portal = pki.client("sportello").expect("portal");
    let institution = pki.server(&["127.0.0.1"]).expect("institution");
    let clock: Arc<dyn domain::Clock> = Arc::new(web::SystemClock);
    let random: Arc<dyn domain::Randomness> = Arc::new(web::SystemRandomness::default());
    let start = |ledger: std::path::PathBuf| {
        let settings = SimSettings {
            institution: "registro-imprese".into(),
            register: "CCIAA-RM-RI".into(),
            portal_id: "sportello".into(),
            portal_cert_pem: portal.cert_pem.clone(),
            portal_ca_pem: pki.ca.cert_pem.clone(),
            cert_pem: institution.cert_pem.clone(),
            key_pem: institution.key_pem.clone(),
            behaviour: Behaviour::default(),
            interface: Interface::RegistroBlock,
            ledger_path: Some(ledger),
            pdnd_cert_pem: None,
            clock: clock.clone(),
            random: random.clone(),
        };
        async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
            simulator::start(listener, settings).await.expect("simulator")
        }
    };
    let signer =
        Signer::new("sportello", &portal.key_pem, &portal.cert_pem, clock.clone(), random.clone()).expect("signer");
    let profile =
        Profile::load(&sportello::simulated::repository_channels_dir().join("registro-imprese.toml")).expect("profile");
    let envelope = FilingEnvelope {
        filing_id: "00000000-0000-4000-8000-000000000001.registro-imprese.0".into(),
        reference: "SPT-2026-000001".into(),
        practice_id: "00000000-0000-4000-8000-000000000001".into(),
        filing_kind: "iscrizione-ditta-individuale".into(),
        declarant: crate::api::HOLDER.into(),
        on_behalf_of: None,
        callback_url: String::new(),
        office: None,
        payload: json!({"impresa": {"denominazione": "Bar"}, "sede": {"provincia": "RM"}}),
    };
    let context = delivery::worker::template_context(&envelope, "registro-imprese", None);
    let ledger = dir.path().join("registro-imprese.json");
    let send = |addr: std::net::SocketAddr| {
        let mut channel =
            Channel::sportello("registro-imprese", &format!("https://{addr}"), &pki.ca.cert_pem, &institution.cert_pem)
                .expect("channel");
        channel.profile = Arc::new(profile.clone());
        let client = InstitutionClient::new(Arc::new(channel), &portal.cert_pem, &portal.key_pem).expect("client");
        let (envelope, context, signer) = (&envelope, &context, &signer);
        async move { client.send(envelope, context, "", signer).await }
    };
    let first = start(ledger.clone()).await;
    let SendResult::Taken { news: before, .. } = send(first.addr).await else { panic!("not taken") };
    assert_eq!(before.accepted, Some(true));
    // The same institution started again from its ledger (the first one is left running: a
    // simulator has no stop, and a second process on the same file is the harder case).
    let second = start(ledger).await;
    assert_eq!(second.received().len(), 1, "it remembers what it processed");
    let SendResult::Taken { news: again, .. } = send(second.addr).await else { panic!("not taken") };
    assert_eq!(again.protocol_number, before.protocol_number, "the first answer again");
    assert_eq!(again.values, before.values);
    assert_eq!(second.received().len(), 1, "not processed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milan_and_rome_go_to_their_chambers_and_an_unrouted_value_is_refused_before_sending() {
    let mut w = world_with(own_interfaces()).await;
    let milan_chamber = "registro-imprese/cciaa-milano-monza-brianza-lodi";
    let mut milan = with_long_description();
    milan["seat.province"] = json!("MI");
    milan["seat.cap"] = json!("20121");
    milan["seat.municipality"] = json!("Milano");
    let in_milan = w.submit(milan).await;
    let in_rome = w.submit(with_long_description()).await;
    let p = w.wait_for(&in_milan, "Milan accepted", |p| all_in(p, "accepted")).await;
    let ri = delivery(&p, "registro-imprese");
    assert_eq!(ri["office"], "cciaa-milano-monza-brianza-lodi", "{ri:#}");
    assert_eq!(ri["values"]["ufficio_rea"], "MI");
    assert!(ri["protocol_number"].as_str().is_some_and(|n| n.starts_with("CCIAA-MI-RI-")), "{ri:#}");
    let p = w.wait_for(&in_rome, "Rome accepted", |p| all_in(p, "accepted")).await;
    assert_eq!(delivery(&p, "registro-imprese")["office"], "cciaa-roma");
    assert_eq!(w.sims[milan_chamber].count_of(&in_milan), 1);
    assert_eq!(w.sims[milan_chamber].count_of(&in_rome), 0, "Rome's filing never went to Milan");
    assert_eq!(w.sims["registro-imprese"].count_of(&in_milan), 0, "Milan's never went to Rome");
    assert_eq!(w.sims["registro-imprese"].count_of(&in_rome), 1);
    // The check-answers page names the office before anything is sent.
    let mut draft = with_long_description();
    draft["seat.province"] = json!("LO");
    let r = w
        .client()
        .post(w.url("/api/v1/practices"))
        .json(&json!({"service": "avvio-ditta-individuale", "data": draft}))
        .send()
        .await
        .expect("create");
    let id = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let page = w.client().get(w.url(&format!("/pratiche/{id}/riepilogo"))).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(html.contains("Camera di commercio di Milano Monza Brianza Lodi"), "{html}");

    // A closure whose REA number names no province: refused as typed, naming the field and
    // the institution, and nothing is stored or sent.
    let r = w
        .client()
        .post(w.url("/api/v1/practices"))
        .json(&json!({"service": "cessazione-impresa", "data": {"business.rea_number": "ZZ-1234567"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = r.json().await.expect("json");
    let error = problem["errors"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["field"] == "business.rea_number"))
        .unwrap_or_else(|| panic!("{problem:#}"));
    assert_eq!(error["code"], "no-office", "{error:#}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("Registro delle imprese")), "{error:#}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signed_answer_is_kept_exported_and_verified_offline_and_one_byte_changed_fails() {
    use base64::Engine;
    let mut w = world_with(own_interfaces()).await;
    let id = w.submit(with_long_description()).await;
    w.wait_for(&id, "all accepted", |p| all_in(p, "accepted")).await;
    let export: Value = w
        .client()
        .get(w.url(&format!("/pratiche/esporta?pratica={id}")))
        .send()
        .await
        .expect("export")
        .json()
        .await
        .expect("json");
    // Kept with the event that carried it: the BLOCK_REST answer, INAIL's polled outcome,
    // INPS's two XML callbacks.
    let timeline = export["practices"][0]["timeline"].as_array().expect("timeline").clone();
    let signed = |institution: &str| {
        timeline.iter().filter(|e| e["institution"] == institution && e["detail"].get("evidence").is_some()).count()
    };
    assert!(signed("registro-imprese") >= 1 && signed("inail") >= 1 && signed("inps") >= 2, "{timeline:#?}");

    let dir = tempfile::tempdir().expect("temp");
    for (institution, cert) in &w.institution_certs {
        std::fs::write(dir.path().join(format!("{institution}.pem")), &cert.cert_pem).expect("cert");
    }
    let file = dir.path().join("export.json");
    let verify = |export: &Value| {
        std::fs::write(&file, serde_json::to_vec_pretty(export).expect("json")).expect("write");
        let out = std::process::Command::new(crate::cli::binary())
            .args(["receipt", "verify"])
            .arg(&file)
            .arg("--certificates")
            .arg(dir.path())
            .output()
            .expect("run");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, report) = verify(&export);
    assert!(ok, "{report}");
    assert!(report.contains("signed by inps") && report.contains("signed by registro-imprese"), "{report}");
    assert!(report.contains(" 0 failed"), "{report}");

    // One byte of one kept answer changed: the verification names it and fails.
    let mut tampered = export.clone();
    let entry = tampered["practices"][0]["timeline"]
        .as_array_mut()
        .and_then(|t| t.iter_mut().find(|e| e["institution"] == "inps" && e["detail"].get("evidence").is_some()))
        .expect("an INPS answer");
    let engine = base64::engine::general_purpose::STANDARD;
    let mut body = engine.decode(entry["detail"]["evidence"]["body"].as_str().expect("body")).expect("base64");
    let at = body.len() / 2;
    body[at] ^= 0x01;
    entry["detail"]["evidence"]["body"] = json!(engine.encode(&body));
    let (ok, report) = verify(&tampered);
    assert!(!ok, "{report}");
    assert!(report.contains("FAILED") && report.contains("was changed"), "{report}");
    assert!(report.contains(" 1 failed"), "only that one: {report}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisations_are_asked_as_each_profile_says_and_the_registry_checks_on_receipt() {
    let mut w = world_with(own_interfaces()).await;
    // The registry offers no look-up and knows nothing of the holder.
    w.sims["registro-imprese"].set_behaviour(Behaviour { authorisations: Default::default(), ..quick_behaviour() });
    let checklist: Value = w
        .client()
        .get(w.url("/api/v1/services/avvio-ditta-individuale/authorisations"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let recipient = |id: &str| {
        checklist["recipients"].as_array().and_then(|rs| rs.iter().find(|r| r["institution"] == id)).cloned()
    };
    // INAIL's own words (TITOLARE) read as a role; INPS asked behind PDND, with a voucher.
    let inail = recipient("inail").expect("inail");
    assert_eq!((inail["status"].as_str(), inail["grants"][0]["role"].as_str()), (Some("known"), Some("owner")));
    assert_eq!(recipient("inps").expect("inps")["status"], "known", "{checklist:#}");
    let pdnd = w.pdnd.as_ref().expect("INPS is behind PDND");
    let client = sportello::bench::https_client(&pdnd.ca_pem, None).expect("client");
    let issued: Vec<Value> = client
        .get(pdnd.token_url.replace("/token.oauth2", "/_sim/vouchers"))
        .send()
        .await
        .expect("vouchers")
        .json()
        .await
        .expect("json");
    assert_eq!(issued.len(), 1, "the look-up presented a voucher");
    let registry = recipient("registro-imprese").expect("registry");
    assert_eq!((registry["status"].as_str(), registry["policy"].as_str()), (Some("not_offered"), Some("on_receipt")));
    assert_eq!(checklist["complete"], true, "nothing the portal can check is missing: {checklist:#}");
    let page = w.client().get(w.url("/servizi/avvio-ditta-individuale")).send().await.expect("page");
    let page = page.text().await.expect("html");
    assert!(page.contains("Verificata dall&#39;ente alla ricezione della pratica"), "{page}");

    // Sent; the registry refuses on receipt, naming the business (no field is at fault); the
    // others wait for it.
    let id = w.submit(with_long_description()).await;
    let p = w
        .wait_for(&id, "RI rejected, the others held", |p| {
            let s = states(p);
            s["registro-imprese"] == "rejected" && s["inps"] == "waiting" && s["inail"] == "waiting"
        })
        .await;
    let ri = delivery(&p, "registro-imprese");
    assert_eq!(ri["rejection"]["fields"], json!([]), "{ri:#}");
    let reason = ri["rejection"]["reasons"][0].as_str().unwrap_or_default();
    assert!(reason.contains("non risulta abilitato") && reason.contains(crate::api::HOLDER), "{ri:#}");
    // Once the chamber records the authorisation, the same filing is sent again and goes.
    w.sims["registro-imprese"].set_behaviour(quick_behaviour());
    let r = w
        .client()
        .post(w.url(&format!("/api/v1/practices/{id}/deliveries/registro-imprese/resend")))
        .json(&json!({ "data": {} }))
        .send()
        .await
        .expect("resend");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    w.wait_for(&id, "all accepted", |p| all_in(p, "accepted")).await;
    w.stop().await;
}
