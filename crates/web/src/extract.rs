//! Extractors: the user's language, the authenticated smart-card holder, and JSON bodies that
//! fail as problem answers instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use domain::Lang;
use identity::{CardRefusal, Holder};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

tokio::task_local! {
    /// The query string of the request being answered, for the language switch's links.
    pub static REQUEST_QUERY: String;
}

/// The link that shows the current page in `lang`: the same query with `lang` set, so a
/// filter or a search survives the switch.
pub fn switch_href(lang: &str) -> String {
    let query = REQUEST_QUERY.try_with(Clone::clone).unwrap_or_default();
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("lang=")).collect();
    let lang_pair = format!("lang={lang}");
    pairs.push(&lang_pair);
    format!("?{}", pairs.join("&"))
}

/// The cookie that remembers the language chosen with the switch.
pub const LANG_COOKIE: &str = "__Host-sportello-lang";

/// The language a request chooses explicitly with `?lang=it|en`.
pub fn chosen_lang(uri: &axum::http::Uri) -> Option<Lang> {
    uri.query().and_then(|q| {
        q.split('&').find_map(|pair| match pair {
            "lang=en" => Some(Lang::En),
            "lang=it" => Some(Lang::It),
            _ => None,
        })
    })
}

fn remembered_lang(headers: &axum::http::HeaderMap) -> Option<Lang> {
    match crate::cookies::get(headers, LANG_COOKIE)?.as_str() {
        "en" => Some(Lang::En),
        "it" => Some(Lang::It),
        _ => None,
    }
}

/// The language of a request: `?lang=it|en` first, then the remembered choice, then
/// `Accept-Language`, else Italian.
pub fn request_lang<B>(request: &axum::http::Request<B>) -> Lang {
    lang_of(request.uri(), request.headers())
}

fn lang_of(uri: &axum::http::Uri, headers: &axum::http::HeaderMap) -> Lang {
    chosen_lang(uri).or_else(|| remembered_lang(headers)).unwrap_or_else(|| {
        headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map(Lang::negotiate).unwrap_or_default()
    })
}

/// The request's language, as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct UserLang(pub Lang);

impl<S: Send + Sync> FromRequestParts<S> for UserLang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(lang_of(&parts.uri, &parts.headers)))
    }
}

/// Who is on the other end of the TLS connection, as the listener found it. Inserted into
/// every request's extensions by the connection handler.
#[derive(Debug, Clone)]
pub enum PeerIdentity {
    /// No client certificate was presented.
    Anonymous,
    Card(Holder),
    /// A certificate that chains to a trusted certifier but is not an acceptable card.
    Refused(CardRefusal),
    /// A client sent the trusted proxy's certificate header itself.
    ForgedProxyHeader,
}

/// The authenticated smart-card holder; handlers that take it refuse anonymous requests.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Holder);

impl FromRequestParts<crate::AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &crate::AppState) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<PeerIdentity>() {
            Some(PeerIdentity::Card(holder)) => Ok(Self(holder.clone())),
            Some(PeerIdentity::Refused(refusal)) => {
                refused(app, refusal).await;
                Err(ApiError::CardRefused(refusal.clone()))
            }
            Some(PeerIdentity::ForgedProxyHeader) => Err(ApiError::ForgedProxyHeader),
            // In the demo only, a browser without a card may stand for the test card it chose.
            Some(PeerIdentity::Anonymous) | None if app.demo_cards.is_some() => {
                crate::sessions::demo_holder(app, &parts.method, &parts.headers).await.map(Self)
            }
            Some(PeerIdentity::Anonymous) | None => Err(ApiError::Unauthenticated),
        }
    }
}

/// Records a refused card in the audit trail (by reason and fingerprint: a refused card has
/// no trusted identity).
pub async fn refused(app: &crate::AppState, refusal: &CardRefusal) {
    let detail = serde_json::json!({ "reason": refusal.code() });
    app::audit::record(&app.core, "unidentified", "unidentified", "login_refused", detail).await;
}

/// A JSON body of type `T`. Wrong content type → 415; over the body limit → 413; not JSON →
/// 400; JSON of the wrong shape (unknown fields, wrong types) → 422.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(Self).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::WrongShape(e.to_string()),
            _ => ApiError::MalformedJson(e.to_string()),
        })
    }
}

/// The holder if a valid card was presented, for pages that anyone may see.
#[derive(Debug, Clone)]
pub struct MaybeHolder(pub Option<Holder>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeHolder {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(match parts.extensions.get::<PeerIdentity>() {
            Some(PeerIdentity::Card(holder)) => Some(holder.clone()),
            _ => None,
        }))
    }
}
