//! The demo's card chooser: for a browser without a test card imported, a page to pick one of
//! the demo's cards. The chosen certificate goes through the very same checks as one presented
//! in the TLS handshake (chain to the trusted certifier, validity, revocation, card profile);
//! if it passes, the browser gets a session that stands for that card.
//!
//! Only `sportello demo` turns it on, and it answers loopback clients only. Everywhere else
//! these routes answer 404.

use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
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

use crate::sessions::SESSION_MARK;

/// The chooser's page (askama escapes every value).
#[derive(Template)]
#[template(path = "demo_cards.html")]
struct ChooserPage<'a> {
    cards: &'a [DemoCard],
    error: Option<&'a str>,
}

/// The page after a card was accepted.
#[derive(Template)]
#[template(path = "demo_signed_in.html")]
struct SignedInPage {
    name: String,
    tax_code: String,
}

fn chooser(demo: &DemoCards, error: Option<&str>, status: StatusCode) -> Response {
    crate::view::render(&ChooserPage { cards: &demo.cards, error }, status)
}

fn enabled(app: &AppState, peer: &ConnectInfo<std::net::SocketAddr>) -> Result<Arc<DemoCards>, ApiError> {
    match &app.demo_cards {
        Some(demo) if peer.0.ip().is_loopback() => Ok(demo.clone()),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /demo/cards`.
pub async fn show(State(app): State<AppState>, peer: ConnectInfo<std::net::SocketAddr>) -> Result<Response, ApiError> {
    let demo = enabled(&app, &peer)?;
    Ok(chooser(&demo, None, StatusCode::OK))
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
        return Ok(chooser(&demo, Some("Carta sconosciuta."), StatusCode::UNPROCESSABLE_ENTITY));
    };
    let der = rustls_pemfile::certs(&mut card.cert_pem.as_bytes()).next().and_then(Result::ok);
    let (Some(der), Some(state)) = (der, demo.tls.current()) else {
        return Err(ApiError::Internal);
    };
    // The same checks as a certificate presented in the handshake.
    if let Err(e) = state.verifier.verify_client_cert(&der, &[], rustls::pki_types::UnixTime::now()) {
        tracing::info!(card = %card.slug, error = %e, "demo card refused");
        let message = format!("Il certificato non supera i controlli ({e}).");
        return Ok(chooser(&demo, Some(&message), StatusCode::UNAUTHORIZED));
    }
    let holder = match holder_from_der(der.as_ref(), &demo.profile, app.core.clock.now()) {
        Ok(holder) => holder,
        Err(refusal) => {
            tracing::info!(card = %card.slug, reason = refusal.code(), "demo card refused");
            let message = app.translations.message(domain::Lang::It, &format!("card-{}", refusal.code()), &[]);
            return Ok(chooser(&demo, Some(&message), StatusCode::UNAUTHORIZED));
        }
    };
    let marked = identity::Holder { fingerprint: format!("{SESSION_MARK}{}", holder.fingerprint), ..holder.clone() };
    let (cookie, _) = crate::sessions::open(&app, &marked, &headers).await?;
    let page = SignedInPage { name: holder.display_name(), tax_code: holder.tax_code.to_string() };
    let mut response = crate::view::render(&page, StatusCode::OK);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
