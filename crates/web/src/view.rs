//! Drawing pages: the translations as templates use them ([`Tr`]), rendering a template,
//! names beside codes, and the error page with the middleware that draws every refusal as
//! one for a browser ([`render_problems`]). It imports no handler.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use domain::Lang;

use crate::error::ApiError;
use crate::i18n::Translations;

/// Translations as templates use them.
#[derive(Debug)]
pub struct Tr<'a> {
    t: &'a Translations,
    lang: Lang,
    /// "Acting on behalf of …", shown on every page under a delegation.
    acting: Option<String>,
}

impl<'a> Tr<'a> {
    pub fn new(t: &'a Translations, lang: Lang) -> Self {
        Self { t, lang, acting: None }
    }

    /// The same, with the banner of a principal acting under a delegation.
    pub fn acting(t: &'a Translations, lang: Lang, principal: &crate::acting::Principal) -> Self {
        let acting = principal
            .delegation
            .as_ref()
            .map(|d| t.message(lang, "acting-banner", &[("grantor", d.grantor.to_string())]));
        Self { t, lang, acting }
    }

    /// The current page in another language (see `extract::switch_href`).
    pub fn switch_href(&self, lang: &str) -> String {
        crate::extract::switch_href(lang)
    }

    pub fn banner(&self) -> Option<&str> {
        self.acting.as_deref()
    }

    /// A message with arguments.
    pub fn fmt(&self, id: &str, args: &[(&str, String)]) -> String {
        self.t.message(self.lang, id, args)
    }

    /// The hint of a date field: the format, with `example` as an example.
    pub fn date_hint(&self, example: time::Date) -> String {
        self.fmt("form-date-format", &[("example", domain::identifiers::display_date(example))])
    }

    pub fn msg(&self, id: &str) -> String {
        self.t.message(self.lang, id, &[])
    }

    pub fn lang(&self) -> &'static str {
        self.lang.code()
    }
}

pub(crate) fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response.headers_mut().insert(header::CONTENT_LANGUAGE, HeaderValue::from_static("it, en"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            ApiError::Internal.into_response()
        }
    }
}

/// A business as pages name it: "name (code)", or whichever of the two is known.
pub fn business_label(name: Option<&str>, code: Option<&str>) -> String {
    match (name.filter(|n| !n.is_empty()), code.filter(|c| !c.is_empty())) {
        (Some(name), Some(code)) => format!("{name} ({code})"),
        (Some(one), None) | (None, Some(one)) => one.to_string(),
        (None, None) => String::new(),
    }
}

/// The business a practice's data names.
pub fn practice_business(data: &domain::practice::PracticeData) -> String {
    business_label(data.get("business.name").map(String::as_str), data.get("business.tax_code").map(String::as_str))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    tr: Tr<'a>,
    title: &'a str,
    detail: &'a str,
    messages: Vec<String>,
}

/// A failure as a page (see `error::ApiError::to_page`).
pub fn error_page(
    t: &Translations,
    lang: Lang,
    status: StatusCode,
    title: &str,
    detail: &str,
    messages: Vec<String>,
) -> Response {
    render(&ErrorPage { tr: Tr::new(t, lang), title, detail, messages }, status)
}

/// Whether a failure should be answered as a page: a browser asking for HTML outside the
/// machine-facing paths (the API, institution callbacks, sessions).
fn wants_page<B>(request: &axum::http::Request<B>) -> bool {
    let path = request.uri().path();
    let machine = ["/api/", "/institutions/", "/session"].iter().any(|prefix| path.starts_with(prefix));
    let html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    html && !machine
}

/// Middleware: turns a response that carries an [`ApiError`] (see [`crate::error`]) into its answer in the request's
/// language: problem+json, or a page for a browser on the portal's pages.
pub async fn render_problems(
    axum::extract::State(translations): axum::extract::State<std::sync::Arc<Translations>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let lang = crate::extract::request_lang(&request);
    let page = wants_page(&request);
    let response = next.run(request).await;
    match response.extensions().get::<std::sync::Arc<ApiError>>() {
        Some(error) if page => error.to_page(&translations, lang, |status, title, detail, messages| {
            error_page(&translations, lang, status, title, detail, messages)
        }),
        Some(error) => error.to_response(&translations, lang),
        None => response,
    }
}
