//! What the desk's pages need beyond the API: a browser session behind every page that has a
//! form, and forms that prove they came from it.
//!
//! - [`Desk`] (pages, GET): the holder and the session's CSRF token to put in every form. A
//!   holder with a card who has no live session gets a new one on the spot (the card is the
//!   authentication; the session only carries the token); a demo browser must have chosen a
//!   card at `/demo/cards`.
//! - [`DeskForm`] (forms, POST): the holder, the submitted fields, and a refusal unless the
//!   form carries the session's token in [`CSRF_FIELD`]. Together with the cross-site guard
//!   in `lib.rs`, a page elsewhere cannot make a card holder's browser change anything.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use identity::Holder;

use crate::error::ApiError;
use crate::extract::PeerIdentity;
use crate::{sessions, AppState};

/// What a desk page is rendered with: the application, the page's desk (its session and
/// token), who it acts for, and the language.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub app: &'a AppState,
    pub desk: &'a Desk,
    pub principal: &'a crate::acting::Principal,
    pub lang: domain::Lang,
}

/// The hidden field every desk form carries.
pub const CSRF_FIELD: &str = "_csrf";

/// A page's holder, with the session's CSRF token for its forms.
#[derive(Debug, Clone)]
pub struct Desk {
    pub holder: Holder,
    pub csrf: String,
    /// Set when the session was opened by this request.
    cookie: Option<HeaderValue>,
    /// The delegation the browser chose to act under, unchecked (see [`Desk::principal`]).
    selector: Option<crate::acting::Selector>,
}

impl Desk {
    /// The desk of a form's sender, to answer with a page (the session already exists).
    pub fn from_form(form: &DeskForm) -> Self {
        Self { holder: form.holder.clone(), csrf: form.csrf.clone(), cookie: None, selector: form.selector.clone() }
    }

    /// Who this page acts for, checked now against the store (a revoked delegation is
    /// refused at once).
    pub async fn principal(&self, app: &AppState) -> Result<crate::acting::Principal, ApiError> {
        Ok(crate::acting::Principal::resolve(&app.core, self.holder.clone(), self.selector.as_ref()).await?)
    }

    /// Adds the new session's cookie, if this request opened one.
    pub fn finish(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie.clone());
        }
        response
    }
}

impl FromRequestParts<AppState> for Desk {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let selector = crate::acting::selector(&parts.headers);
        match parts.extensions.get::<PeerIdentity>().cloned() {
            Some(PeerIdentity::Card(holder)) => match sessions::current(app, &parts.headers, &holder).await {
                Ok(session) => Ok(Self { holder, csrf: session.csrf_token, cookie: None, selector }),
                Err(ApiError::SessionExpired) => {
                    let (cookie, session) = sessions::open(app, &holder, &parts.headers).await?;
                    Ok(Self { holder, csrf: session.csrf_token, cookie: Some(cookie), selector })
                }
                Err(e) => Err(e),
            },
            Some(PeerIdentity::Refused(refusal)) => {
                crate::extract::refused(app, &refusal).await;
                Err(ApiError::CardRefused(refusal))
            }
            Some(PeerIdentity::ForgedProxyHeader) => Err(ApiError::ForgedProxyHeader),
            Some(PeerIdentity::Anonymous) | None if app.demo_cards.is_some() => {
                let (holder, session) = sessions::demo_session(app, &parts.headers).await?;
                Ok(Self { holder, csrf: session.csrf_token, cookie: None, selector })
            }
            Some(PeerIdentity::Anonymous) | None => Err(ApiError::Unauthenticated),
        }
    }
}

/// A submitted desk form: the holder and its fields, in order (a name may repeat).
#[derive(Debug, Clone)]
pub struct DeskForm {
    pub holder: Holder,
    pub fields: Vec<(String, String)>,
    /// The session's token, for the forms of a page rendered in answer.
    csrf: String,
    selector: Option<crate::acting::Selector>,
}

impl DeskForm {
    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Who this form acts for, checked now against the store.
    pub async fn principal(&self, app: &AppState) -> Result<crate::acting::Principal, ApiError> {
        Ok(crate::acting::Principal::resolve(&app.core, self.holder.clone(), self.selector.as_ref()).await?)
    }

    /// The form decoded into its type (`serde_html_form`: a repeated name fills a `Vec`); the
    /// session's token and fields the type does not name are ignored. Forms whose fields come
    /// from the catalog (a section's answers) are read with [`DeskForm::get`] instead.
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let encoded = serde_html_form::to_string(&self.fields).map_err(|_| ApiError::Internal)?;
        serde_html_form::from_str(&encoded).map_err(|e| ApiError::BadParameter(e.to_string()))
    }
}

impl FromRequest<AppState> for DeskForm {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let selector = crate::acting::selector(&parts.headers);
        let (holder, session) = match parts.extensions.get::<PeerIdentity>().cloned() {
            Some(PeerIdentity::Card(holder)) => {
                // Forms come from pages, which opened the session: without one the page is
                // stale (or forged), and the user is asked to reload it.
                let session = sessions::current(app, &parts.headers, &holder).await?;
                (holder, session)
            }
            Some(PeerIdentity::Anonymous) | None if app.demo_cards.is_some() => {
                sessions::demo_session(app, &parts.headers).await?
            }
            _ => {
                // The same refusals as any page.
                Desk::from_request_parts(&mut parts, app).await?;
                return Err(ApiError::Unauthenticated);
            }
        };
        let request = Request::from_parts(parts, body);
        let axum::Form(fields) =
            axum::Form::<Vec<(String, String)>>::from_request(request, app).await.map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    ApiError::UnsupportedMediaType
                } else if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    ApiError::BadParameter(rejection.body_text())
                }
            })?;
        let form = Self { holder, fields, csrf: session.csrf_token.clone(), selector };
        if !sessions::form_token_matches(form.get(CSRF_FIELD), &session) {
            tracing::warn!(holder = %form.holder.tax_code, "form without the session's token refused");
            return Err(ApiError::CsrfToken);
        }
        Ok(form)
    }
}
