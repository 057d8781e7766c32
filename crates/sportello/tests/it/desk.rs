//! The desk's pages as a browser without JavaScript uses them: forms posted with the session's
//! token, answers read as HTML. (The browser suite in `tests/browser` drives a real Chromium
//! through the same journeys with institutions answering.)

use reqwest::StatusCode;
use serde_json::Value;

use crate::api::{complete_start_data, spawn_app, TestApp, HOLDER};

/// A browser: a card, plus the cookies the portal sets (session, delegation in use).
pub(crate) struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
    pub(crate) cookie: Option<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self::with(app.url(""), &app.ca_pem, Some(&app.holder))
    }

    /// A browser at `base` presenting `card`; it follows redirects itself, keeping cookies.
    pub(crate) fn with(base: String, ca_pem: &str, card: Option<&identity::test_pki::Issued>) -> Self {
        let client = sportello::bench::https_client_with(ca_pem, card, false).expect("client");
        Self { base, client, cookies: Default::default(), cookie: None }
    }

    /// Sends, then follows redirects (as GET), keeping every cookie set on the way.
    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> (StatusCode, String, String) {
        for _ in 0..5 {
            if let Some(c) = self.cookie_header() {
                request = request.header("cookie", c);
            }
            let r = request.send().await.expect("send");
            self.keep_cookie(&r);
            let location = r.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_string);
            match location {
                Some(to) if r.status().is_redirection() => {
                    request = self.client.get(format!("{}{to}", self.base)).header("accept", "text/html");
                }
                _ => {
                    let at = r.url().path().to_string() + &r.url().query().map(|q| format!("?{q}")).unwrap_or_default();
                    return (r.status(), at, r.text().await.expect("html"));
                }
            }
        }
        panic!("too many redirects")
    }

    fn keep_cookie(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().expect("ascii");
            let Some((name, value)) = v.split(';').next().and_then(|pair| pair.split_once('=')) else { continue };
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
            if name == "__Host-sportello-session" {
                self.cookie = Some(format!("{name}={value}"));
            }
        }
    }

    /// Plants a cookie, as another card's use of the same browser (or a user) would leave it.
    pub(crate) fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_string(), value.to_string());
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty())
            .then(|| self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
    }

    /// Starts an empty "avvio-ditta-individuale" draft from its service page; returns the
    /// draft's id and the session's form token.
    async fn start_sole_trader(&mut self) -> (String, String) {
        let (_, _, page) = self.get("/servizi/avvio-ditta-individuale").await;
        let token = csrf(&page);
        let fields = [("_csrf", token.as_str()), ("servizio", "avvio-ditta-individuale"), ("impresa", "")];
        let (_, at, _) = self.post("/pratiche", &fields).await;
        (at.trim_start_matches("/pratiche/").trim_end_matches("/compila").to_string(), token)
    }

    pub(crate) async fn get(&mut self, path: &str) -> (StatusCode, String, String) {
        let request = self.client.get(format!("{}{path}", self.base)).header("accept", "text/html");
        self.send(request).await
    }

    /// Posts a form; redirects are followed, so this answers with the page reached.
    pub(crate) async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String, String) {
        let request = self.client.post(format!("{}{path}", self.base)).header("accept", "text/html").form(fields);
        self.send(request).await
    }
}

/// The session's token, as the page's forms carry it.
pub(crate) fn csrf(html: &str) -> String {
    let start = html.find("name=\"_csrf\" value=\"").expect("a form with the token") + 20;
    html[start..start + 64].to_string()
}

async fn api_practice(app: &TestApp, id: &str) -> Value {
    app.client().get(app.url(&format!("/api/v1/practices/{id}"))).send().await.expect("get").json().await.expect("json")
}

#[tokio::test]
async fn a_practice_is_compiled_saved_checked_and_sent_from_the_pages() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let (status, _, page) = browser.get("/servizi/avvio-ditta-individuale").await;
    assert_eq!(status, StatusCode::OK);
    assert!(browser.cookie.is_some(), "a page with forms opens a session for the card");
    let token = csrf(&page);

    // Without the session's token nothing starts.
    let (status, _, _) = browser.post("/pratiche", &[("servizio", "avvio-ditta-individuale")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let list: Value =
        app.client().get(app.url("/api/v1/practices")).send().await.expect("list").json().await.expect("json");
    assert_eq!(list["practices"].as_array().expect("list").len(), 0, "nothing was created");

    let (status, at, page) =
        browser.post("/pratiche", &[("_csrf", &token), ("servizio", "avvio-ditta-individuale"), ("impresa", "")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(at.ends_with("/compila"), "{at}");
    let id = at.trim_start_matches("/pratiche/").trim_end_matches("/compila").to_string();
    assert!(page.contains("Controlla e invia") && page.contains("Da completare"), "{page}");

    // An invalid value: the summary links to the field, the message sits beside it, the typed
    // values come back, and nothing is saved.
    let section = format!("/pratiche/{id}/sezioni/seat");
    let (status, _, page) = browser
        .post(
            &section,
            &[("_csrf", &token), ("seat.street", "Via Nazionale"), ("seat.cap", "123"), ("azione", "continua")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("<a href=\"#campo-seat-cap\">CAP: il CAP deve avere 5 cifre.</a>"), "{page}");
    assert!(page.contains("id=\"campo-seat-cap-errore\"") && page.contains("aria-invalid=\"true\""), "{page}");
    assert!(page.contains("value=\"Via Nazionale\""), "{page}");
    assert!(api_practice(&app, &id).await["data"].get("seat.street").is_none(), "nothing saved");

    // Autosave (the script's request) saves valid values and refuses invalid ones silently.
    let (status, _, _) =
        browser.post(&section, &[("_csrf", &token), ("seat.cap", "12"), ("azione", "autosalva")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) =
        browser.post(&section, &[("_csrf", &token), ("seat.street", "Via Nazionale"), ("azione", "autosalva")]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api_practice(&app, &id).await["data"]["seat.street"], "Via Nazionale");

    // "Save as draft and leave" leaves the journey for the drafts, which say so.
    let (_, at, page) = browser.post(&section, &[("_csrf", &token), ("seat.cap", "00184"), ("azione", "bozza")]).await;
    assert!(at.ends_with(&format!("/pratiche?stato=draft&salvata={id}")) && page.contains("Bozza salvata"), "{at}");

    // Every section in turn; the last one leads to "check your answers".
    let data = complete_start_data();
    let data = data.as_object().expect("object");
    for group in ["business", "owner", "seat", "staff", "registro-imprese", "inps", "inail"] {
        let mut fields: Vec<(&str, &str)> = vec![("_csrf", &token), ("azione", "continua")];
        fields.extend(
            data.iter()
                .filter(|(k, _)| k.starts_with(&format!("{group}.")))
                .map(|(k, v)| (k.as_str(), v.as_str().expect("text"))),
        );
        let (status, at, page) = browser.post(&format!("/pratiche/{id}/sezioni/{group}"), &fields).await;
        assert_eq!(status, StatusCode::OK, "{group}: {page}");
        if group == "inail" {
            assert!(at.ends_with("/riepilogo"), "{at}");
            assert!(!page.contains("error-summary") && page.contains("Bar Centrale di Mario Rossi"), "{page}");
            assert!(page.contains("Commercianti") || page.contains("commercianti"), "choices by their label");
        }
    }

    // Sending asks for the declaration first: without it nothing is sent.
    let (status, at, page) = browser.post(&format!("/pratiche/{id}/invia"), &[("_csrf", &token)]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{at}");
    assert!(page.contains("<a href=\"#dichiarazione\">Dichiarazione: conferma la dichiarazione"), "{page}");
    assert_eq!(api_practice(&app, &id).await["state"], "draft", "nothing was sent");
    let declared = [("_csrf", token.as_str()), ("dichiarazione", "confermata")];
    let (status, at, page) = browser.post(&format!("/pratiche/{id}/invia"), &declared).await;
    assert_eq!(status, StatusCode::OK);
    assert!(at.ends_with("?inviata=1"), "{at}");
    // The confirmation says what happens next, and that outcomes reach the business's PEC.
    assert!(page.contains("Che cosa succede ora") && page.contains("(PEC) dell&#39;impresa: "), "{page}");
    let practice = api_practice(&app, &id).await;
    let reference = practice["reference"].as_str().expect("sent").to_string();
    assert!(page.contains(&format!("Il numero di riferimento è {reference}")), "{page}");
    let waiting = "class=\"protocol\" data-label=\"Numero di protocollo\">in attesa";
    assert_eq!(page.matches(waiting).count(), 3, "three recipients waiting: {page}");
    assert!(page.contains(&format!("data-events=\"/pratiche/{id}/eventi\"")), "live updates offered");

    // The receipt carries the digest of the data sent.
    let (status, _, receipt) = browser.get(&format!("/pratiche/{id}/ricevuta")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(receipt.contains(&format!("Mario Rossi ({HOLDER})")), "the declarant by name: {receipt}");
    assert!(
        receipt.contains("Impronta digitale dei dati inviati") && !receipt.contains("Impronta SHA-256"),
        "{receipt}"
    );
    // The same receipt as a PDF file to keep.
    let r = app.client().get(app.url(&format!("/pratiche/{id}/ricevuta.pdf"))).send().await.expect("pdf");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.expect("pdf");
    assert!(pdf.starts_with(b"%PDF-1.4") && pdf.ends_with(b"%%EOF\n"));
    let sent = api_practice(&app, &id).await["reference"].as_str().unwrap_or_default().to_string();
    let title = format!("Ricevuta della pratica {sent}");
    assert!(pdf.windows(title.len()).any(|w| w == title.as_bytes()), "the reference is in the PDF");
    let r = app.client().get(app.url("/pratiche/nessuna/ricevuta.pdf")).send().await.expect("pdf");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let canonical = serde_json::to_string(&practice["data"]).expect("json");
    let digest: String = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(receipt.contains(&digest) && receipt.contains(&reference), "{receipt}");

    // Search by reference, by part of the name; a bad date is named, not guessed.
    let (_, _, found) = browser.get(&format!("/ricerca?testo={}", reference.to_lowercase())).await;
    assert!(found.contains("Pratiche trovate: 1") && found.contains(&format!("href=\"/pratiche/{id}\"")), "{found}");
    let (_, _, found) = browser.get("/ricerca?testo=centrale&ordina=reference&verso=asc").await;
    assert!(found.contains("Pratiche trovate: 1") && found.contains("aria-sort=\"ascending\""), "{found}");
    assert!(
        found.contains("href=\"?testo=centrale&#38;ordina=reference&#38;verso=asc&#38;lang=en\""),
        "the switch keeps the search"
    );
    let (status, _, page) = browser.get("/ricerca?dal=31/02/2026").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Inviata dal: la data non è valida"), "{page}");
    let (status, _, page) = browser.get("/ricerca?dal=01/01/0000").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a year the store cannot hold is a bad date, not an outage");
    assert!(page.contains("Inviata dal: la data non è valida"), "{page}");
    let (status, _, page) = browser.get("/ricerca?dal=02/12/2026&al=01/12/2026").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("non può precedere"), "{page}");
    let (status, _, page) = browser.get(&format!("/ricerca?testo={}", "a".repeat(5000))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("al massimo 200 caratteri"), "{page}");
    let (status, _, page) = browser.get("/ricerca?testo=centrale&pagina=7").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("pagina 1 di 1") && page.contains(&format!("href=\"/pratiche/{id}\"")), "{page}");

    // The export holds the data and the receipt's digest, with the note about records.
    let export: Value = app
        .client()
        .get(app.url(&format!("/pratiche/esporta?pratica={id}")))
        .send()
        .await
        .expect("export")
        .json()
        .await
        .expect("json");
    assert_eq!(export["practices"][0]["reference"], reference.as_str());
    assert_eq!(export["practices"][0]["data_sha256"], digest.as_str());
    assert!(export["note"].as_str().expect("note").contains("non sostituisce"));
    // The same as CSV for a spreadsheet: one row per filing, the protocol numbers' column.
    let r =
        app.client().get(app.url(&format!("/pratiche/esporta?pratica={id}&formato=csv"))).send().await.expect("csv");
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.expect("csv");
    assert!(csv.starts_with("\u{feff}Numero di riferimento;Servizio;"), "{csv}");
    assert_eq!(csv.lines().count(), 4, "a header and three filings: {csv}");
    assert!(csv.contains(&format!("{reference};Avvio di una ditta individuale;Bar Centrale")), "{csv}");
    let r =
        app.client().get(app.url(&format!("/pratiche/esporta?pratica={id}&formato=pdf"))).send().await.expect("bad");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Nothing chosen: back on the search page, the error beside the choices.
    let (status, at, page) = browser.get("/pratiche/esporta?ritorno=%2Fricerca%3Ftesto%3Dcentrale&formato=json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(at.starts_with("/ricerca?testo=centrale&esportazione=nessuna"), "{at}");
    assert!(page.contains("<a href=\"#tabella-risultati\">Scegli almeno una pratica da esportare.</a>"), "{page}");
    assert!(
        page.contains(&format!("href=\"/pratiche/esporta?pratica={id}&#38;formato=csv\"")),
        "export the whole page: {page}"
    );
    // Never sent elsewhere.
    let (_, at, _) = browser.get("/pratiche/esporta?ritorno=%2F%2Fevil.example%2Fricerca").await;
    assert!(at.starts_with("/pratiche/esporta"), "{at}");
    // An empty search says what to type; the start of a reference number finds it.
    let (_, _, page) = browser.get("/ricerca?testo=&servizio=&stato=&dal=&al=").await;
    assert!(page.contains("Scrivi un numero di riferimento o di protocollo"), "{page}");
    let (_, _, found) = browser.get(&format!("/ricerca?testo={}", &reference[..reference.len() - 3])).await;
    assert!(found.contains(&format!("href=\"/pratiche/{id}\"")), "{found}");

    // A practice in progress cannot be archived.
    let (status, _, _) = browser.post(&format!("/pratiche/{id}/archivia"), &[("_csrf", &token)]).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_new_practice_is_prefilled_from_the_business_last_one_and_drafts_can_be_archived() {
    let app = spawn_app().await;
    let holder = app.client();
    // Mario Rossi's own sole-trader business: its codice fiscale is his.
    let data = complete_start_data();
    let (_, first) = app.create(&holder, serde_json::json!({"service": "avvio-ditta-individuale", "data": data})).await;
    let first_id = first["id"].as_str().expect("id");
    let r = holder.post(app.url(&format!("/api/v1/practices/{first_id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK);

    // A draft never sent, for a business typed by mistake: not offered, nor used to prefill.
    let typo = serde_json::json!({"business.tax_code": "VRDGPP80A01H501U", "business.name": "Prova a caso"});
    app.create(&holder, serde_json::json!({"service": "avvio-ditta-individuale", "data": typo})).await;
    let mut browser = Browser::new(&app);
    let (_, _, page) = browser.get("/servizi/variazione-sede-attivita").await;
    assert!(!page.contains("VRDGPP80A01H501U") && !page.contains("Prova a caso"), "only sent businesses: {page}");
    assert!(
        page.contains(&format!("<option value=\"{HOLDER}\">Bar Centrale di Mario Rossi ({HOLDER})</option>")),
        "{page}"
    );
    let token = csrf(&page);
    // Only the holder's own businesses may be chosen.
    let (status, _, _) = browser
        .post("/pratiche", &[("_csrf", &token), ("servizio", "variazione-sede-attivita"), ("impresa", "01879020517")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, at, _) = browser
        .post("/pratiche", &[("_csrf", &token), ("servizio", "variazione-sede-attivita"), ("impresa", HOLDER)])
        .await;
    let id = at.trim_start_matches("/pratiche/").trim_end_matches("/compila").to_string();
    let draft = api_practice(&app, &id).await;
    assert_eq!(draft["data"]["business.name"], "Bar Centrale di Mario Rossi", "common data carried over");
    assert_eq!(draft["data"]["business.tax_code"], HOLDER);
    assert!(draft["data"].get("business.start_date").is_none(), "the event's date is not carried over");
    assert!(draft["data"].get("inail.work_processes").is_none(), "recipients' own data is not carried over");

    let (_, _, page) = browser.post(&format!("/pratiche/{id}/archivia"), &[("_csrf", &token)]).await;
    assert!(page.contains("<span class=\"tag\">archiviata"), "{page}");
    let (_, _, page) = browser.post(&format!("/pratiche/{id}/ripristina"), &[("_csrf", &token)]).await;
    assert!(page.contains("<span class=\"tag\">in bozza") || page.contains("Continua la compilazione"), "{page}");
    assert_eq!(api_practice(&app, &id).await["state"], "draft");
}

#[tokio::test]
async fn acts_are_audited_and_audit_verify_names_a_tampered_record() {
    let app = spawn_app().await;
    let holder = app.client();
    let (_, draft) = app
        .create(&holder, serde_json::json!({"service": "avvio-ditta-individuale", "data": complete_start_data()}))
        .await;
    let id = draft["id"].as_str().expect("id");
    let r = holder.post(app.url(&format!("/api/v1/practices/{id}/submit"))).send().await.expect("submit");
    assert_eq!(r.status(), StatusCode::OK);
    let mut browser = Browser::new(&app);
    browser.get("/ricerca").await; // opens a session: a login

    let url = app.settings.database_url.clone();
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sportello"))
            .args(["audit", "verify", "--database-url", &url])
            .output()
            .expect("run")
    };
    let out = verify();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit trail intact: 3 records"), "{out:?}");

    let export = std::process::Command::new(env!("CARGO_BIN_EXE_sportello"))
        .args(["audit", "export", "--database-url", &url])
        .output()
        .expect("run");
    let lines: Vec<Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    let actions: Vec<&str> = lines.iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions, ["draft_created", "submitted", "login"]);
    assert_eq!(lines[1]["actor"], crate::api::HOLDER);

    let path = url.trim_start_matches("sqlite://");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{path}")).await.expect("open");
    sqlx::query("UPDATE audit_log SET detail = '{}' WHERE seq = 2").execute(&pool).await.expect("tamper");
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken at record 2"), "{out:?}");
}

#[tokio::test]
async fn a_change_from_check_answers_returns_there_after_saving() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let (id, token) = browser.start_sole_trader().await;
    // Check answers links each answer to its section, marked to come back.
    let (_, _, review) = browser.get(&format!("/pratiche/{id}/riepilogo")).await;
    let change = format!("/pratiche/{id}/sezioni/seat?ritorno=riepilogo#campo-seat-cap");
    assert!(review.contains(&format!("href=\"{change}\"")), "{review}");
    let (status, _, section) = browser.get(change.split('#').next().unwrap_or_default()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(section.contains("<input type=\"hidden\" name=\"ritorno\" value=\"riepilogo\">"), "{section}");
    // Saved from there: back to check answers; an invalid value keeps the way back.
    let section_path = format!("/pratiche/{id}/sezioni/seat");
    let seat = [
        ("seat.street", "Via Nazionale"),
        ("seat.number", "10"),
        ("seat.municipality", "Roma"),
        ("seat.province", "RM"),
    ];
    let fields = [("_csrf", token.as_str()), ("ritorno", "riepilogo"), ("azione", "continua")];
    let (status, _, page) =
        browser.post(&section_path, &[fields.as_slice(), &seat, &[("seat.cap", "123")]].concat()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("name=\"ritorno\" value=\"riepilogo\""), "{page}");
    let (status, at, _) =
        browser.post(&section_path, &[fields.as_slice(), &seat, &[("seat.cap", "00184")]].concat()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(at.ends_with(&format!("/pratiche/{id}/riepilogo")), "{at}");
    // Without the mark, the next section follows as before.
    let plain = [("_csrf", token.as_str()), ("azione", "continua"), ("seat.cap", "00184")];
    let (_, at, _) = browser.post(&section_path, &[plain.as_slice(), &seat].concat()).await;
    assert!(at.ends_with(&format!("/pratiche/{id}/sezioni/staff")), "{at}");
}

#[tokio::test]
async fn continuing_stops_on_the_page_with_its_missing_answers_and_a_draft_leaves_as_it_is() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let (id, token) = browser.start_sole_trader().await;
    let section = format!("/pratiche/{id}/sezioni/seat");
    // Valid but incomplete: saved, yet "Salva e continua" stays with what is missing.
    let typed = [("_csrf", token.as_str()), ("seat.street", "Via Nazionale"), ("seat.cap", "00184")];
    let (status, at, page) = browser.post(&section, &[typed.as_slice(), &[("azione", "continua")]].concat()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{at}");
    assert!(at.ends_with(&section), "{at}");
    assert!(page.contains("href=\"#campo-seat-municipality\""), "the summary links the missing field: {page}");
    assert!(page.contains("id=\"campo-seat-province-errore\""), "the message sits beside it: {page}");
    assert!(!page.contains("#campo-business-name"), "only this page's answers: {page}");
    let data = api_practice(&app, &id).await["data"].clone();
    assert_eq!((data["seat.street"].as_str(), data["seat.cap"].as_str()), (Some("Via Nazionale"), Some("00184")));
    // An institution's own limit is checked on its page too (INAIL: at least 20 characters).
    let inail = format!("/pratiche/{id}/sezioni/inail");
    let (status, _, page) = browser
        .post(&inail, &[("_csrf", token.as_str()), ("inail.work_processes", "Bar"), ("azione", "continua")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("servono almeno 20 caratteri"), "{page}");
    assert!(page.contains("Infortuni sul Lavoro chiede almeno 20 caratteri."), "the hint says it first: {page}");
    // A date typed as ISO is understood, stored as ISO and shown back as dd/mm/yyyy.
    let owner = format!("/pratiche/{id}/sezioni/owner");
    let birth = [("_csrf", token.as_str()), ("owner.birth_date", "1980-01-31"), ("azione", "bozza")];
    browser.post(&owner, &birth).await;
    assert_eq!(api_practice(&app, &id).await["data"]["owner.birth_date"], "1980-01-31");
    let (_, _, page) = browser.get(&owner).await;
    assert!(page.contains("value=\"31/01/1980\""), "{page}");
    assert_eq!(page.matches("gg/mm/aaaa").count(), 1, "the format is given once: {page}");
    assert!(page.contains("ad esempio 15/03/1980"), "a plausible birth date as example: {page}");
    let (_, _, review) = browser.get(&format!("/pratiche/{id}/riepilogo")).await;
    assert!(review.contains("<dd>31/01/1980</dd>"), "{review}");
    // "Salva come bozza ed esci" keeps the draft as it is and leaves for the drafts.
    let (status, at, page) = browser.post(&section, &[typed.as_slice(), &[("azione", "bozza")]].concat()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(at.ends_with(&format!("/pratiche?stato=draft&salvata={id}")), "{at}");
    assert!(page.contains("Bozza salvata") && page.contains("Dati da completare"), "{page}");
}
