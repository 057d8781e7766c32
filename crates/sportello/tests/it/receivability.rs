//! Receivability: the rules each institution applies on receipt are declared in the catalog and
//! checked by the portal before sending; the simulated institutions apply their own copy. Over
//! a run of practices with random (valid) data, no institution refuses a filing for a rule the
//! portal could have checked.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use simulator::Behaviour;

use crate::api::complete_start_data;
use crate::delivery::{quick_behaviour, world_with, Options, World};

const PRACTICES: usize = 200;

/// A small deterministic generator (xorshift), so that a failing run can be repeated.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

fn date_in(days: i64) -> String {
    let d = domain::italian_date(time::OffsetDateTime::now_utc()) + time::Duration::days(days);
    format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year())
}

/// Valid data for every field's own checks, mixing values each institution takes and refuses.
fn random_data(dice: &mut Dice, n: usize) -> Value {
    let mut data = complete_start_data();
    data["business.name"] = json!(format!("Impresa di prova numero {n}"));
    // Mostly an ATECO code of the scheme chosen, sometimes not.
    let (ateco, scheme) = match dice.pick(&["trade", "craft", "any"]) {
        "trade" => {
            (dice.pick(&["56.30.00", "47.11.10", "46.90.00", "79.11.00", "55.10.00", "45.20.10"]), "commercianti")
        }
        "craft" => (dice.pick(&["10.71.10", "43.21.01", "95.11.00", "96.02.01", "33.12.10", "41.20.00"]), "artigiani"),
        _ => (dice.pick(&["56.30.00", "10.71.10", "62.01.00", "01.11.10"]), dice.pick(&["artigiani", "commercianti"])),
    };
    data["business.ateco"] = json!(ateco);
    data["business.start_date"] = json!(date_in(dice.below(120) - 30));
    data["inps.scheme"] = json!(scheme);
    data["staff.employees"] = json!(dice.below(6).to_string());
    data["registro-imprese.activity_description"] = json!(dice.pick(&[
        "Caffè",
        "Bar e caffetteria",
        "Panificio artigianale",
        "Impianti elettrici",
        "Officina",
        "Riparazione di biciclette",
    ]));
    data["inail.work_processes"] = json!(dice.pick(&[
        "Lavori vari",
        "Somministrazione di alimenti e bevande al banco",
        "Attività da definire in seguito",
        "Installazione di impianti elettrici civili",
        "Riparazione di computer e telefoni",
        "Lavori diversi presso i clienti",
        "Produzione di pane e dolci in laboratorio",
    ]));
    data
}

fn own_interfaces() -> Options {
    Options { own_interfaces: true, poll: Some(Duration::from_millis(50)), ..Options::default() }
}

/// Creates and submits a practice: `Ok(id)` when sent, `Err((id, problems))` when refused
/// with 422.
async fn try_submit(w: &World, data: Value) -> Result<String, (String, Vec<Value>)> {
    let client = w.client();
    let id = w.create(data).await;
    let r = client.post(w.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    match r.status() {
        StatusCode::OK => Ok(id),
        StatusCode::UNPROCESSABLE_ENTITY => {
            let problem: Value = r.json().await.expect("problem");
            Err((id, problem["errors"].as_array().cloned().unwrap_or_default()))
        }
        other => panic!("submit answered {other}: {}", r.text().await.unwrap_or_default()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn institutions_never_refuse_for_a_rule_the_portal_checks() {
    let mut w = world_with(own_interfaces()).await;
    let rules = [
        ("registro-imprese", simulator::registry_rules()),
        ("inps", simulator::inps_rules()),
        ("inail", simulator::inail_rules()),
    ];
    for (id, rules) in rules {
        w.sims[id].set_behaviour(Behaviour { rules, ..quick_behaviour() });
    }
    let mut dice = Dice(0x5eed_2026_1202);
    let (mut sent, mut refused) = (Vec::new(), BTreeSet::new());
    let mut refusals_by_institution = BTreeSet::new();
    for n in 0..PRACTICES {
        match try_submit(&w, random_data(&mut dice, n)).await {
            Ok(id) => sent.push(id),
            Err((_, problems)) => {
                assert!(!problems.is_empty());
                for p in &problems {
                    assert_eq!(p["code"], "receivability", "only the institutions' rules refuse: {p:#}");
                    assert!(p["message"].as_str().is_some_and(|m| m.contains("non riceverebbe")), "{p:#}");
                    refusals_by_institution.insert(p["institution"].as_str().expect("institution").to_string());
                }
                refused.insert(n);
            }
        }
    }

    // Every sent practice reaches an outcome at every institution.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut open: Vec<String> = sent.clone();
    while !open.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in open {
            let p = w.practice(&id).await;
            let done = p["deliveries"]
                .as_array()
                .is_some_and(|ds| ds.iter().all(|d| d["state"] == "accepted" || d["state"] == "rejected"));
            if !done {
                still.push(id);
            }
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut by_published = Vec::new();
    let mut by_own = 0;
    for (institution, sim) in &w.sims {
        for filing in sim.received().iter().chain(sim.refused().iter()) {
            for reason in &filing.reasons {
                if reason["published"] == true {
                    by_published.push(format!("{institution} {}: {reason}", filing.filing_id));
                } else {
                    by_own += 1;
                }
            }
        }
    }
    assert!(by_published.is_empty(), "refused for rules the portal checks: {by_published:#?}");
    assert!(open.is_empty(), "{} practices without every outcome, e.g. {}", open.len(), open[0]);
    println!("{PRACTICES} practices: {} sent, {} refused before sending, {by_own} refusals by rules only the institutions know", sent.len(), refused.len());
    assert!(sent.len() > PRACTICES / 5, "most random practices are receivable: {} sent", sent.len());
    assert!(refused.len() > PRACTICES / 5, "the random data breaks the rules often: {} refused", refused.len());
    let expected: BTreeSet<String> = ["registro-imprese", "inps", "inail"].map(String::from).into();
    assert_eq!(refusals_by_institution, expected, "each institution's rules refuse some");
    assert!(by_own > 0, "the simulators really check: INAIL's tariff refused some");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_and_the_api_name_the_institution_and_the_field() {
    let mut w = world_with(own_interfaces()).await;
    let mut data = complete_start_data();
    data["inail.work_processes"] = json!("Bar");
    data["inps.scheme"] = json!("artigiani");
    let (id, err) = try_submit(&w, data).await.expect_err("refused before sending");
    let fields: BTreeSet<(String, String)> = err
        .iter()
        .map(|p| (p["field"].as_str().unwrap_or("").to_string(), p["institution"].as_str().unwrap_or("").to_string()))
        .collect();
    let expected: BTreeSet<(String, String)> =
        [("inail.work_processes", "inail"), ("business.ateco", "inps")].map(|(a, b)| (a.into(), b.into())).into();
    assert_eq!(fields, expected, "{err:#?}");
    let inail = err.iter().find(|p| p["institution"] == "inail").expect("inail");
    assert_eq!(
        inail["message"],
        "Descrizione delle lavorazioni: INAIL - Istituto Nazionale Assicurazione Infortuni sul Lavoro non riceverebbe la pratica: Descrizione delle lavorazioni insufficiente per classificare il rischio: servono almeno 20 caratteri."
    );
    for sim in w.sims.values() {
        assert!(sim.received().is_empty() && sim.refused().is_empty(), "nothing was sent");
    }
    // The draft says the same, and so does "Controlla e invia".
    let p = w.practice(&id).await;
    assert_eq!(p["state"], "draft");
    let problems = p["problems"].as_array().expect("problems");
    assert!(problems.iter().all(|p| p["code"] == "receivability") && problems.len() == 2, "{p:#}");
    let html = w.client().get(w.url(&format!("/pratiche/{id}/riepilogo"))).send().await.expect("page");
    let html = html.text().await.expect("html");
    assert!(html.contains("non riceverebbe la pratica"), "{html}");
    assert!(html.contains("il codice ATECO deve iniziare con un numero da 10 a 33"), "{html}");
    w.stop().await;
}
