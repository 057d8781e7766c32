//! The demo's card chooser: for a browser without a test card imported, a page to pick one of
//! the demo's cards. The chosen certificate goes through the very same checks as one presented
//! in the TLS handshake (chain to the trusted certifier, validity, revocation, card profile);
//! if it passes, the browser gets a session that stands for that card.
//!
//! Only `sportello demo` turns it on, and it answers loopback clients only. Everywhere else
//! these routes answer 404.

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use identity::card::holder_from_der;
use identity::CardProfile;
use serde::Deserialize;

use crate::error::ApiError;
use crate::tls::TlsHandle;
use crate::AppState;

/// One card the chooser offers.
#[derive(Debug, Clone)]
pub struct DemoCard {
    pub slug: String,
    /// Who the card belongs to and what it shows, for the page.
    pub label: String,
    pub cert_pem: String,
}

/// What the chooser needs: the cards, and the listener's own checks.
#[derive(Debug)]
pub struct DemoCards {
    pub cards: Vec<DemoCard>,
    pub tls: Arc<TlsHandle>,
    pub profile: CardProfile,
}

/// Sessions opened here carry this mark before the card's fingerprint: they stand for a card
/// the browser does not present, and cannot be used by a browser that presents one.
pub const SESSION_MARK: &str = "demo:";

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"it\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} - Sportello (demo)</title>\n\
         </head>\n<body>\n<main>\n{}\n</main>\n</body>\n</html>\n",
        escape(title),
        body
    )
}

fn chooser(demo: &DemoCards, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Scegli una carta di prova</h1>\n");
    if let Some(error) = error {
        body.push_str(&format!(
            "<div role=\"alert\">\n<h2>La carta scelta non è accettata</h2>\n<p>{}</p>\n</div>\n",
            escape(error)
        ));
    }
    body.push_str(
        "<p>Solo per la dimostrazione: al posto della smart card nel lettore, il portale usa il certificato \
         della carta scelta e lo controlla come farebbe con la carta vera. \
         <span lang=\"en\">Demo only: pick a test card instead of one in a reader.</span></p>\n\
         <form method=\"post\" action=\"/demo/cards\">\n<fieldset>\n<legend>Carte di prova</legend>\n",
    );
    for (i, card) in demo.cards.iter().enumerate() {
        body.push_str(&format!(
            "<div><input type=\"radio\" id=\"card-{i}\" name=\"card\" value=\"{}\"{}><label for=\"card-{i}\">{}</label></div>\n",
            escape(&card.slug),
            if i == 0 { " checked" } else { "" },
            escape(&card.label)
        ));
    }
    body.push_str("</fieldset>\n<button type=\"submit\">Accedi con questa carta</button>\n</form>");
    page("Scegli una carta di prova", &body)
}

fn enabled(app: &AppState, peer: &ConnectInfo<std::net::SocketAddr>) -> Result<Arc<DemoCards>, ApiError> {
    match &app.demo_cards {
        Some(demo) if peer.0.ip().is_loopback() => Ok(demo.clone()),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /demo/cards`.
pub async fn show(
    State(app): State<AppState>,
    peer: ConnectInfo<std::net::SocketAddr>,
) -> Result<Html<String>, ApiError> {
    let demo = enabled(&app, &peer)?;
    Ok(Html(chooser(&demo, None)))
}

#[derive(Debug, Deserialize)]
pub struct Choice {
    /// Missing when nothing was chosen: then it is an unknown card, like any other.
    #[serde(default)]
    card: String,
}

/// `POST /demo/cards`: checks the chosen card and opens a session for it.
pub async fn choose(
    State(app): State<AppState>,
    peer: ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(choice): Form<Choice>,
) -> Result<Response, ApiError> {
    let demo = enabled(&app, &peer)?;
    let Some(card) = demo.cards.iter().find(|c| c.slug == choice.card) else {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(chooser(&demo, Some("Carta sconosciuta.")))).into_response());
    };
    let der = rustls_pemfile::certs(&mut card.cert_pem.as_bytes()).next().and_then(Result::ok);
    let (Some(der), Some(state)) = (der, demo.tls.current()) else {
        return Err(ApiError::Internal);
    };
    // The same checks as a certificate presented in the handshake.
    if let Err(e) = state.verifier.verify_client_cert(&der, &[], rustls::pki_types::UnixTime::now()) {
        tracing::info!(card = %card.slug, error = %e, "demo card refused");
        let message = format!("Il certificato non supera i controlli ({e}).");
        return Ok((StatusCode::UNAUTHORIZED, Html(chooser(&demo, Some(&message)))).into_response());
    }
    let holder = match holder_from_der(der.as_ref(), &demo.profile, app.clock.now()) {
        Ok(holder) => holder,
        Err(refusal) => {
            tracing::info!(card = %card.slug, reason = refusal.code(), "demo card refused");
            let message = app.translations.message(domain::Lang::It, &format!("card-{}", refusal.code()), &[]);
            return Ok((StatusCode::UNAUTHORIZED, Html(chooser(&demo, Some(&message)))).into_response());
        }
    };
    let marked = identity::Holder { fingerprint: format!("{SESSION_MARK}{}", holder.fingerprint), ..holder.clone() };
    let (cookie, _) = crate::sessions::open(&app, &marked, &headers).await?;
    let body = format!(
        "<h1>Accesso effettuato</h1>\n<p>Questo browser ora agisce come <strong>{}</strong> ({}), \
         come se avesse presentato la sua carta.</p>\n\
         <ul>\n<li><a href=\"/\">La mia scrivania</a></li>\n<li><a href=\"/servizi\">Servizi integrati</a></li>\n\
         <li><a href=\"/api/v1/practices\">Le mie pratiche (JSON)</a></li>\n\
         <li><a href=\"/api/v1/openapi.json\">Descrizione dell'API</a></li>\n</ul>",
        escape(&holder.display_name()),
        escape(holder.tax_code.as_str())
    );
    let mut response = Html(page("Accesso effettuato", &body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
