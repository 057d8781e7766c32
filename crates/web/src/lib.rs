//! Sportello's HTTPS front: adapters over the use cases of [`app`].
//!
//! - [`tls`]: the rustls listener that asks every client for a smart-card certificate, reads
//!   the holder once per connection and hands it to each request;
//! - [`api`]: the JSON API, one module per resource; [`routes`] registers its routes with
//!   their OpenAPI descriptions; [`institutions`]: the callbacks institutions make;
//! - [`pages`]: the desk's pages, one module per part of the desk; [`view`]: drawing them;
//! - [`error`]: how every failure is answered (problem+json, or the error page);
//! - [`extract`]: language, authenticated holder, JSON bodies; [`forms`]: the desk's forms
//!   and sessions; [`i18n`]: Italian and English.
//!
//! [`router`] wires it together over an [`AppState`] whose parts are all injected (the use
//! cases' core with its store, catalog, clock and randomness), so tests run the very same
//! router.

pub mod acting;
pub mod admission;
pub mod api;
pub mod cookies;
pub mod demo_cards;
pub mod error;
pub mod extract;
pub mod forms;
pub mod i18n;
pub mod institutions;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod session_api;
pub mod sessions;
pub mod tls;
pub mod view;

#[cfg(test)]
mod router_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use domain::{Clock, Randomness, RandomnessUnavailable};

use crate::error::ApiError;
use crate::i18n::Translations;

/// Everything handlers need, injected: the use cases' [`app::Core`] and what only the web
/// front has (messages, callback verifiers, sessions, the demo's card chooser).
#[derive(Debug, Clone)]
pub struct AppState {
    pub core: app::Core,
    pub translations: Arc<Translations>,
    /// Verifiers of institutions' callbacks, by institution id.
    pub callbacks: Arc<BTreeMap<String, institutions::CallbackChannel>>,
    pub sessions: sessions::SessionPolicy,
    /// The demo's card chooser, on in `sportello demo` only.
    pub demo_cards: Option<Arc<demo_cards::DemoCards>>,
    /// How many requests this process works on at once.
    pub admission: admission::Admission,
}

impl AppState {
    /// An institution's name in `lang` (its id when the catalog does not know it).
    pub fn institution_name(&self, id: &str, lang: domain::Lang) -> String {
        self.core.institution_name(id, lang)
    }
}

pub use app::sha256_hex;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// The operating system's random generator.
#[derive(Debug)]
pub struct SystemRandomness(ring::rand::SystemRandom);

impl Default for SystemRandomness {
    fn default() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Randomness for SystemRandomness {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomnessUnavailable> {
        ring::rand::SecureRandom::fill(&self.0, dest).map_err(|_| RandomnessUnavailable)
    }
}

/// `GET /api/v1/openapi.json`: the document generated from the code ([`openapi`]).
async fn serve_openapi(document: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Headers on every answer: no framing, no sniffing, HTTPS only, nothing cached.
async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Remembers the language chosen with the switch (`?lang=`) for the following pages.
async fn remember_language(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let chosen = extract::chosen_lang(request.uri());
    let query = request.uri().query().unwrap_or_default().to_string();
    let mut response = extract::REQUEST_QUERY.scope(query, next.run(request)).await;
    if let Some(lang) = chosen {
        let a_year = 365 * 24 * 3600;
        if let Some(value) = cookies::set(extract::LANG_COOKIE, lang.code(), cookies::Kind::Preference, a_year) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Refuses state-changing requests that a browser marks as coming from another site: a
/// browser sends the smart card's certificate with any request to the portal, so a page
/// elsewhere must not be able to make it submit or resend a practice. Clients that are not
/// browsers (curl, institutions) send neither header and are not affected; institution
/// callbacks are authenticated by their ModI signature instead.
async fn cross_site_guard(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::Method;
    let safe = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || request.uri().path().starts_with("/institutions/") {
        return next.run(request).await;
    }
    let headers = request.headers();
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross_site = matches!(fetch_site, Some(site) if site != "same-origin" && site != "none");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = match origin {
        None => false,
        // Under `Referrer-Policy: no-referrer` browsers send `Origin: null` with their own
        // forms; `Sec-Fetch-Site` then says whether the form was the portal's.
        Some("null") => fetch_site != Some("same-origin"),
        Some(origin) => {
            host.is_none_or(|host| origin != format!("https://{host}") && origin != format!("http://{host}"))
        }
    };
    if cross_site || foreign_origin {
        tracing::warn!(origin = ?origin, fetch_site = ?fetch_site, path = %request.uri().path(), "cross-site request refused");
        return ApiError::CrossSite.into_response();
    }
    next.run(request).await
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let translations = state.translations.clone();
    let admission = state.admission.clone();
    let (api, document) = routes::api().split_for_parts();
    let document = axum::body::Bytes::from(document.to_pretty_json().unwrap_or_default());
    api.route("/api/v1/openapi.json", get(move || serve_openapi(document.clone())))
        .route("/demo/cards", get(demo_cards::show).post(demo_cards::choose))
        .route("/", get(pages::home::home))
        .route("/servizi", get(pages::home::services))
        .route("/servizi/{id}", get(pages::compile::service))
        .route("/aiuto/servizi/{id}", get(pages::compile::help))
        .route("/pratiche", get(pages::home::practices).post(pages::compile::start))
        .route("/pratiche/esporta", get(api::records::export))
        .route("/pratiche/{id}", get(pages::practice::practice))
        .route("/pratiche/{id}/eventi", get(api::events::events))
        .route("/pratiche/{id}/ricevuta", get(pages::receipt::page))
        .route("/pratiche/{id}/ricevuta.pdf", get(pages::receipt::pdf))
        .route("/pratiche/{id}/archivia", post(pages::practice::archive))
        .route("/pratiche/{id}/ripristina", post(pages::practice::unarchive))
        .route("/pratiche/{id}/destinatari/{institution}/reinvia", post(pages::practice::resend))
        .route("/pratiche/{id}/compila", get(pages::compile::tasks))
        .route("/pratiche/{id}/sezioni/{section}", get(pages::compile::section).post(pages::compile::save_section))
        .route("/pratiche/{id}/riepilogo", get(pages::compile::review))
        .route("/pratiche/{id}/invia", post(pages::compile::send))
        .route("/ricerca", get(pages::search::search))
        .route("/deleghe", get(pages::delegations::list).post(pages::delegations::grant))
        .route("/deleghe/nuova", get(pages::delegations::new))
        .route("/deleghe/attivita", get(pages::delegations::activity))
        .route("/deleghe/smetti", post(pages::delegations::stop_using))
        .route("/deleghe/{id}/revoca", post(pages::delegations::revoke))
        .route("/deleghe/{id}/rinuncia", post(pages::delegations::renounce))
        .route("/deleghe/{id}/usa", post(pages::delegations::use_delegation))
        .route("/accessibilita", get(pages::home::accessibility))
        .route("/static/sportello.css", get(pages::home::stylesheet))
        .route("/static/sportello.js", get(pages::home::script))
        .route("/static/favicon.svg", get(pages::home::favicon))
        .route("/favicon.ico", get(pages::home::favicon))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(error::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(admission, admission::admit))
        .layer(axum::middleware::from_fn(cross_site_guard))
        .layer(axum::middleware::from_fn_with_state(translations, view::render_problems))
        .layer(axum::middleware::from_fn(remember_language))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}
