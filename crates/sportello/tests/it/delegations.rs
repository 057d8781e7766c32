//! Sub-delegation end to end: the grantor's pages, the institutions' answers through the
//! delivery channels (simulated institutions), a collaborator acting with his or her own card,
//! and everything outside the delegation refused.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api::{client_with, complete_start_data, HOLDER};
use crate::delivery::{world, World};
use crate::desk::{csrf, Browser};

const COLLABORATOR: &str = "BNCSFN85T58G702W";

fn day(offset: i64) -> String {
    let d = domain::italian_date(time::OffsetDateTime::now_utc()) + time::Duration::days(offset);
    format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year())
}

/// The grantor grants `services` for the holder's own business at every institution, from
/// `from` days from today; returns the delegation id.
async fn grant(w: &World, grantor: &mut Browser, services: &[&str], from: i64) -> String {
    let (status, _, page) = grantor.get("/deleghe/nuova").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let token = csrf(&page);
    let (from, until) = (day(from), day(from + 30));
    let mut fields = vec![
        ("_csrf", token.as_str()),
        ("nome", "Stefania Bianco"),
        ("delegato", COLLABORATOR),
        ("ente", "inps"),
        ("ente", "inail"),
        ("ente", "registro-imprese"),
        ("impresa", HOLDER),
        ("dal", from.as_str()),
        ("al", until.as_str()),
        ("nota", "pratiche dello studio"),
    ];
    fields.extend(services.iter().map(|s| ("servizio", *s)));
    let (status, at, page) = grantor.post("/deleghe", &fields).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(at.ends_with("/deleghe?esito=concessa"), "{at}");
    let _ = w;
    let start = page.find("/deleghe/").expect("a delegation on the page");
    let candidates: Vec<&str> =
        page[start..].split("/deleghe/").filter_map(|s| s.split('/').next()).filter(|s| s.len() == 36).collect();
    candidates.first().expect("delegation id").to_string()
}

/// Waits until the grantor's page shows `n` institutions with `state` for the delegation.
async fn wait_for_outcomes(grantor: &mut Browser, state: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, page) = grantor.get("/deleghe").await;
        if page.matches(&format!(">{state}</span>")).count() >= n {
            return page;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {n} × {state}: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn acting_client(w: &World) -> reqwest::Client {
    client_with(&w.ca_pem, Some(&w.collaborator))
}

#[tokio::test]
async fn a_collaborator_acts_within_the_delegation_and_no_further() {
    let w = world().await;
    let mut grantor = Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    let id = grant(&w, &mut grantor, &["avvio-ditta-individuale"], 0).await;
    let page = wait_for_outcomes(&mut grantor, "attiva", 3).await;
    assert!(page.contains("riferimento dell&#39;ente INPS-AOO1-DEL-00001"), "{page}");
    for (institution, sim) in &w.sims {
        let listed: Value = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client")
            .get(format!("https://{}/_sim/delegations", sim.addr))
            .send()
            .await
            .expect("sim")
            .json()
            .await
            .expect("json");
        assert_eq!(listed["delegations"][&id]["delegate"], COLLABORATOR, "{institution}: {listed}");
    }

    // The collaborator, with his or her own card, acts for the grantor (API: header).
    let api = acting_client(&w);
    let as_delegate = |r: reqwest::RequestBuilder| r.header("x-sportello-delegation", &id);
    let r = as_delegate(api.post(w.url("/api/v1/practices")))
        .json(&json!({"service": "avvio-ditta-individuale", "data": complete_start_data()}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let practice: Value = r.json().await.expect("json");
    let practice_id = practice["id"].as_str().expect("id").to_string();
    assert_eq!((practice["owner"].as_str(), practice["actor"].as_str()), (Some(HOLDER), Some(COLLABORATOR)));
    let r =
        as_delegate(api.post(w.url(&format!("/api/v1/practices/{practice_id}/submit")))).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    // The grantor sees it, made on his behalf; the filings name both people.
    let done = w
        .wait_for(&practice_id, "three protocol numbers", |p| {
            p["deliveries"].as_array().is_some_and(|ds| ds.iter().all(|d| d["protocol_number"].is_string()))
        })
        .await;
    assert_eq!(done["actor"], COLLABORATOR);
    let received = w.sims["inps"].received();
    let filing = received.last().expect("a filing at INPS");
    assert_eq!((filing.declarant.as_str(), filing.on_behalf_of.as_deref()), (COLLABORATOR, Some(HOLDER)));

    // Outside the delegation: another service, another business.
    for (service, business) in [("cessazione-impresa", HOLDER), ("avvio-ditta-individuale", "00743110157")] {
        let mut data = complete_start_data();
        data["business.tax_code"] = Value::from(business);
        let r = as_delegate(api.post(w.url("/api/v1/practices")))
            .json(&json!({"service": service, "data": {"business.tax_code": business}}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{service} {business}");
        let problem: Value = r.json().await.expect("problem");
        assert_eq!(problem["type"], "/problems/out-of-scope");
    }

    // What one holds by delegation cannot be delegated again.
    let mut collaborator = Browser::with(w.url(""), &w.ca_pem, Some(&w.collaborator));
    let (_, _, page) = collaborator.get("/deleghe").await;
    let token = csrf(&page);
    let (_, at, _) = collaborator.post(&format!("/deleghe/{id}/usa"), &[("_csrf", &token)]).await;
    assert_eq!(at, "/", "acting from now on");
    let (_, _, home) = collaborator.get("/").await;
    assert!(home.contains(&format!("Stai operando per conto di {HOLDER}")), "{home}");
    let (status, _, page) = collaborator.get("/deleghe/nuova").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("non può essere delegato"), "{page}");
    let fields = [("_csrf", token.as_str()), ("delegato", "VRDGPP80A01H501U"), ("ente", "inps"), ("impresa", HOLDER)];
    let (status, _, page) = collaborator.post("/deleghe", &fields).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    // Nor in the collaborator's own name: the institutions do not authorise him or her.
    let (_, _, _) = collaborator.post("/deleghe/smetti", &[("_csrf", &token)]).await;
    let (_, _, page) = collaborator.get("/deleghe/nuova").await;
    assert!(page.contains("non hai nulla da delegare"), "{page}");
    let (_, _, _) = collaborator.post(&format!("/deleghe/{id}/usa"), &[("_csrf", &token)]).await;

    // The grantor reads the acts done on his behalf.
    let (_, _, activity) = grantor.get("/deleghe/attivita").await;
    assert!(activity.contains(COLLABORATOR) && activity.contains("pratica inviata"), "{activity}");
    assert!(activity.contains("atto rifiutato: fuori dalla delega"), "{activity}");
    // Practices by reference number and business, never by internal id.
    assert!(!activity.contains(&practice_id.to_string()), "no internal id: {activity}");
    assert!(activity.contains("pratica: SPT-"), "{activity}");

    // Revoked in the middle of the collaborator's session: the next request is refused, and a
    // live stream she holds open ends.
    let mut stream = as_delegate(api.get(w.url(&format!("/pratiche/{practice_id}/eventi")))).send().await.expect("sse");
    assert_eq!(stream.status(), StatusCode::OK);
    let first = stream.chunk().await.expect("chunk").expect("a first event");
    assert!(String::from_utf8_lossy(&first).contains("event: update"));
    let (_, _, page) = grantor.get("/deleghe").await;
    // Revoking asks first; nothing ends until confirmed.
    let (status, at, ask) = grantor.post(&format!("/deleghe/{id}/revoca"), &[("_csrf", &csrf(&page))]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        ask.contains(&format!("Revocare la delega a Stefania Bianco ({COLLABORATOR})?"))
            && ask.contains("non si può annullare"),
        "{at}: {ask}"
    );
    assert!(as_delegate(api.get(w.url("/api/v1/practices"))).send().await.expect("still").status().is_success());
    let confirm = [("_csrf", csrf(&ask)), ("conferma", "si".to_string())];
    let confirm: Vec<(&str, &str)> = confirm.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, at, _) = grantor.post(&format!("/deleghe/{id}/revoca"), &confirm).await;
    assert!(at.ends_with("esito=revocata"), "{at}");
    let ended =
        tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the live stream ends once the delegation is revoked");
    let (status, _, page) = collaborator.get(&format!("/pratiche/{practice_id}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("revocata"), "{page}");
    let r = as_delegate(api.get(w.url("/api/v1/practices"))).send().await.expect("list");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    wait_for_outcomes(&mut grantor, "revocata", 3).await;
    let r = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
        .get(format!("https://{}/_sim/delegations", w.sims["inail"].addr))
        .send()
        .await
        .expect("sim");
    let listed: Value = r.json().await.expect("json");
    assert_eq!(listed["delegations"][&id]["revoked"], true, "the institution was told: {listed}");

    // Anyone else, with every identifier of it, gets "not found" and learns nothing.
    let stranger = client_with(&w.ca_pem, Some(&w.stranger));
    let reference = done["reference"].as_str().expect("reference").to_string();
    for path in [
        format!("/api/v1/practices/{practice_id}"),
        format!("/pratiche/{practice_id}"),
        format!("/pratiche/{practice_id}/ricevuta"),
        format!("/pratiche/{practice_id}/eventi"),
        format!("/pratiche/{practice_id}/compila"),
        format!("/pratiche/esporta?pratica={practice_id}"),
    ] {
        for with_header in [false, true] {
            let mut request = stranger.get(w.url(&path));
            if with_header {
                request = request.header("x-sportello-delegation", &id);
            }
            let r = request.send().await.expect("get");
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path} (delegation header: {with_header})");
            let body = r.text().await.expect("body");
            assert!(
                !body.contains(&reference) && !body.contains("Bar Centrale") && !body.contains(HOLDER),
                "{path}: {body}"
            );
        }
    }
    let r = stranger.get(w.url(&format!("/ricerca?testo={reference}"))).send().await.expect("search");
    let body = r.text().await.expect("body");
    assert!(body.contains("Pratiche trovate: 0") && !body.contains(&practice_id), "{body}");
    let mut outsider = Browser::with(w.url(""), &w.ca_pem, Some(&w.stranger));
    // A delegation cookie left in the same browser by another card (or made up) is ignored:
    // the holder simply acts for himself.
    for planted in [id.as_str(), "garbage"] {
        outsider.set_cookie("__Host-sportello-delega", planted);
        let (status, _, home) = outsider.get("/").await;
        assert_eq!(status, StatusCode::OK, "{planted}: {home}");
        assert!(!home.contains("Stai operando per conto"), "{home}");
    }
    let (_, _, page) = outsider.get("/servizi/avvio-ditta-individuale").await;
    let token = csrf(&page);
    for action in ["revoca", "rinuncia", "usa"] {
        let (status, _, body) = outsider.post(&format!("/deleghe/{id}/{action}"), &[("_csrf", &token)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {body}");
    }
    for path in ["archivia", "ripristina", "invia", "sezioni/business", "destinatari/inps/reinvia"] {
        let (status, _, body) = outsider.post(&format!("/pratiche/{practice_id}/{path}"), &[("_csrf", &token)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.contains(&reference) && !body.contains("Bar Centrale"), "{path}: {body}");
    }
    let api_calls = [
        stranger.put(w.url(&format!("/api/v1/practices/{practice_id}"))).json(&json!({"data": {}})),
        stranger.post(w.url(&format!("/api/v1/practices/{practice_id}/submit"))),
        stranger.post(w.url(&format!("/api/v1/practices/{practice_id}/deliveries/inps/resend"))),
    ];
    for request in api_calls {
        let r = request.send().await.expect("send");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{}", r.url());
    }
}

#[tokio::test]
async fn a_delegation_holds_only_from_its_start_and_where_the_institution_accepts_it() {
    let w = world().await;
    let mut grantor = Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    // Starting in two days: not valid yet.
    let later = grant(&w, &mut grantor, &["collaboratore-familiare"], 2).await;
    let api = acting_client(&w);
    let r = api.get(w.url("/api/v1/practices")).header("x-sportello-delegation", &later).send().await.expect("list");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let problem: Value = r.json().await.expect("problem");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("non è ancora valida")), "{problem}");

    // A grant the portal accepts but an institution refuses: the grantor's authorisation at
    // INAIL went away between the form and the institution's check.
    let (_, _, page) = grantor.get("/deleghe/nuova").await; // the portal asks now (and caches)
    let mut behaviour = w.sims["inail"].behaviour();
    behaviour.authorisations.clear();
    w.sims["inail"].set_behaviour(behaviour);
    let token = csrf(&page);
    let (from, until) = (day(0), day(10));
    let fields = [
        ("_csrf", token.as_str()),
        ("nome", "Stefania Bianco"),
        ("delegato", COLLABORATOR),
        ("ente", "inps"),
        ("ente", "inail"),
        ("ente", "registro-imprese"),
        ("impresa", HOLDER),
        ("servizio", "avvio-ditta-individuale"),
        ("dal", from.as_str()),
        ("al", until.as_str()),
    ];
    let (status, _, _) = grantor.post("/deleghe", &fields).await;
    assert_eq!(status, StatusCode::OK);
    // Every institution has answered both delegations (the earlier one's answers may land on
    // either side of the change at INAIL, so only the new one is looked at).
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (_, _, page) = grantor.get("/deleghe").await;
        if !page.contains(">in attesa</span>") {
            break page;
        }
        assert!(Instant::now() < deadline, "timed out waiting for every answer: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = page
        .split("/deleghe/")
        .filter_map(|s| s.split('/').next())
        .find(|s| s.len() == 36 && *s != later)
        .expect("the new delegation")
        .to_string();
    let start = page.find(&format!("aria-labelledby=\"concessa-{id}\"")).expect("the new delegation's card");
    let card = &page[start..start + page[start..].find("</article>").expect("end of card")];
    assert_eq!(card.matches(">attiva</span>").count(), 2, "{card}");
    assert_eq!(card.matches(">rifiutata</span>").count(), 1, "{card}");
    assert!(card.contains("Il delegante non risulta abilitato presso l&#39;ente per l&#39;impresa"), "{card}");
    // INAIL refused: a service that files at INAIL is out of scope there.
    let r = api
        .post(w.url("/api/v1/practices"))
        .header("x-sportello-delegation", &id)
        .json(&json!({"service": "avvio-ditta-individuale", "data": {}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let problem: Value = r.json().await.expect("problem");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("inail")), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_notices_go_in_each_institution_s_own_shape_or_the_portal_s_record_holds() {
    // The registry takes no notices of sub-delegations.
    let profiles = crate::delivery::profiles_with(
        "registro-imprese.toml",
        "[delegations]\noffered = false\npolicy = \"portal_record\"\n",
    );
    let options = crate::delivery::Options {
        own_interfaces: true,
        poll: Some(Duration::from_millis(50)),
        channels_dir: Some(profiles.path().to_path_buf()),
        ..crate::delivery::Options::default()
    };
    let mut w = crate::delivery::world_with(options).await;
    let mut grantor = Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    let id = grant(&w, &mut grantor, &["avvio-ditta-individuale"], 0).await;
    let page = wait_for_outcomes(&mut grantor, "attiva", 3).await;
    // INAIL took its own shape (POST /deleghe) and answered with its own reference; INPS, behind
    // PDND, Sportello's; the registry was not told, and the portal's record holds there.
    let listed = |sim: &simulator::SimHandle| {
        let url = format!("https://{}/_sim/delegations", sim.addr);
        async move {
            let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().expect("client");
            client.get(url).send().await.expect("sim").json::<Value>().await.expect("json")
        }
    };
    let at_inail = listed(&w.sims["inail"]).await;
    assert_eq!(at_inail["delegations"][&id]["delegate"], COLLABORATOR, "{at_inail}");
    assert_eq!(at_inail["delegations"][&id]["businesses"], json!([HOLDER]), "{at_inail}");
    let reference = at_inail["delegations"][&id]["reference"].as_str().expect("INAIL's reference").to_string();
    assert!(page.contains(&format!("riferimento dell&#39;ente {reference}")), "{page}");
    assert!(listed(&w.sims["inps"]).await["delegations"][&id].is_object(), "INPS told");
    assert!(listed(&w.sims["registro-imprese"]).await["delegations"][&id].is_null(), "the registry is not told");
    assert!(page.contains("vale la registrazione del portale"), "{page}");

    // The collaborator acts, the registry included (it trusts the portal's record).
    let api = acting_client(&w);
    let r = api
        .post(w.url("/api/v1/practices"))
        .header("x-sportello-delegation", &id)
        .json(&json!({"service": "avvio-ditta-individuale", "data": crate::delivery::with_long_description()}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());

    // Revoked: INAIL is told in its own words (DELETE /deleghe/{id}).
    let (_, _, page) = grantor.get("/deleghe").await;
    let confirmed = [("_csrf", csrf(&page)), ("conferma", "si".to_string())];
    let confirmed: Vec<(&str, &str)> = confirmed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, at, _) = grantor.post(&format!("/deleghe/{id}/revoca"), &confirmed).await;
    assert!(at.ends_with("esito=revocata"), "{at}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while listed(&w.sims["inail"]).await["delegations"][&id]["revoked"] != true {
        assert!(Instant::now() < deadline, "INAIL never told of the revocation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegations_through_the_api_as_on_the_desk() {
    let mut w = world().await;
    let mut grantor = Browser::with(w.url(""), &w.ca_pem, Some(&w.holder));
    let id = grant(&w, &mut grantor, &["avvio-ditta-individuale"], 0).await;
    wait_for_outcomes(&mut grantor, "attiva", 3).await;
    let owner = client_with(&w.ca_pem, Some(&w.holder));
    let listed: Value = owner.get(w.url("/api/v1/delegations")).send().await.expect("list").json().await.expect("json");
    let granted = &listed["granted"][0];
    assert_eq!((granted["id"].as_str(), granted["delegate"].as_str()), (Some(id.as_str()), Some(COLLABORATOR)));
    assert_eq!(granted["standing"], "valid", "{granted}");
    assert_eq!(granted["states"]["inps"], "active", "each institution's answer: {granted}");
    let collaborator = acting_client(&w);
    let received: Value =
        collaborator.get(w.url("/api/v1/delegations")).send().await.expect("list").json().await.expect("json");
    assert_eq!(received["received"][0]["id"], id.as_str());
    // Only the grantor revokes, only the collaborator renounces; anyone else learns nothing.
    let end = |who: &reqwest::Client, what: &str| who.post(w.url(&format!("/api/v1/delegations/{id}/{what}"))).send();
    let stranger = client_with(&w.ca_pem, Some(&w.stranger));
    for (who, what) in [(&stranger, "revoke"), (&stranger, "renounce"), (&collaborator, "revoke"), (&owner, "renounce")]
    {
        assert_eq!(end(who, what).await.expect("send").status(), StatusCode::NOT_FOUND, "{what}");
    }
    // The grantor sees what the collaborator did on his behalf, naming the collaborator.
    let r = collaborator
        .post(w.url("/api/v1/practices"))
        .header("x-sportello-delegation", &id)
        .json(&json!({"service": "avvio-ditta-individuale", "data": {"business.name": "Bar"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let acts: Value = owner.get(w.url("/api/v1/activity")).send().await.expect("acts").json().await.expect("json");
    let by_collaborator = acts.as_array().expect("acts").iter().find(|a| a["actor"] == COLLABORATOR);
    assert!(by_collaborator.is_some_and(|a| a["detail"]["delegation"] == id.as_str()), "{acts}");
    let r = end(&collaborator, "renounce").await.expect("renounce");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["standing"], "renounced");
    let r = end(&owner, "revoke").await.expect("revoke");
    assert_eq!(r.status(), StatusCode::CONFLICT, "already ended");
    // Acting under it is refused from now on.
    let r =
        collaborator.get(w.url("/api/v1/practices")).header("x-sportello-delegation", &id).send().await.expect("list");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    w.stop().await;
}
