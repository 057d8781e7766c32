//! The error policy of the HTTP API, in one place.
//!
//! - Every failure a handler can meet is an [`ApiError`] variant; handlers return
//!   `Result<_, ApiError>` and never build error responses themselves. An `ApiError` turned
//!   into a response only carries itself; the [`render_problems`] middleware, which knows the
//!   user's language, writes the answer.
//! - Every error answer is RFC 7807 `application/problem+json` (a page with the same title and
//!   details for a browser asking for HTML outside the API) with `type`, `title`, `status`,
//!   `detail` in the user's language, and for validation failures `errors`: one entry per field
//!   with its id, label, reason code and message.
//! - Input mistakes are 4xx and change nothing. A database that cannot be reached is 503 with
//!   `Retry-After`: the user's data is safe and the request may be repeated. Only a genuine bug
//!   (stored data that cannot be read back) is a 500; its details go to the log, never to the
//!   client.
//! - Nothing here panics, whatever the input.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use app::AppError;
use domain::catalog::Service;
use domain::delegation::GrantError;
use domain::practice::PracticeState;
use domain::text::Text;
use domain::validation::{FieldError, Reason};
use domain::Lang;
use serde::Serialize;
use storage::StoreError;

use crate::i18n::Translations;

/// Maximum size of a request body, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A failure, as the API reports it.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No client certificate was presented.
    Unauthenticated,
    /// A client sent the header only a trusted proxy may send.
    ForgedProxyHeader,
    /// A state-changing request a browser says comes from another site.
    CrossSite,
    /// No valid session: never opened, ended, expired, or opened with another card.
    SessionExpired,
    /// The session's CSRF token is missing or wrong.
    CsrfToken,
    /// An institution's request whose ModI signature does not hold.
    BadSignature(String),
    /// A certificate was presented but is not an acceptable smart card.
    CardRefused(identity::CardRefusal),
    NotFound,
    MethodNotAllowed,
    UnknownService(String),
    /// Fields that failed validation; the service gives labels to name them.
    Validation {
        errors: Vec<FieldError>,
        service: Option<Box<Service>>,
    },
    WrongState(PracticeState),
    /// The holder may not file for this business at these institutions (or it cannot be
    /// known now): nothing was sent.
    NotAuthorised {
        business: String,
        institutions: Vec<app::InstitutionRefusal>,
    },
    WrongDeliveryState(domain::delivery::DeliveryState),
    /// An act on behalf of a grantor outside the sub-delegation (or after it ended).
    OutOfScope(domain::delegation::OutOfScope),
    /// The sub-delegation had already ended.
    DelegationEnded,
    /// Someone acting on behalf of a grantor tried to grant a delegation.
    NoRedelegation,
    /// A grant that does not hold; every reason, with the names they mention.
    GrantRefused {
        errors: Vec<GrantError>,
        names: BTreeMap<String, Text>,
    },
    MalformedJson(String),
    WrongShape(String),
    UnsupportedMediaType,
    TooLarge,
    BadParameter(String),
    Unavailable,
    /// More requests at once than the portal takes ([`crate::admission`]): nothing was done.
    Overloaded,
    Internal,
}

/// The application layer's refusals, as the API answers them: the one place where a use
/// case's error becomes HTTP.
impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound => Self::NotFound,
            AppError::UnknownService(s) => Self::UnknownService(s),
            AppError::Validation { errors, service } => Self::Validation { errors, service },
            AppError::WrongState(state) => Self::WrongState(state),
            AppError::WrongDeliveryState(state) => Self::WrongDeliveryState(state),
            AppError::NotAuthorised { business, institutions } => Self::NotAuthorised { business, institutions },
            AppError::OutOfScope(reason) => Self::OutOfScope(reason),
            AppError::DelegationEnded => Self::DelegationEnded,
            AppError::NoRedelegation => Self::NoRedelegation,
            AppError::GrantRefused { errors, names } => Self::GrantRefused { errors, names },
            AppError::BadInput(why) => Self::BadParameter(why),
            AppError::Replayed => Self::BadSignature("a token of this request was already used (replay)".into()),
            AppError::Unavailable => Self::Unavailable,
            AppError::Internal => Self::Internal,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        AppError::from(e).into()
    }
}

/// One institution that stops a submission, in the answer's language.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
struct InstitutionProblem {
    institution: String,
    name: String,
    /// `not_authorised` or `unknown`.
    status: &'static str,
    /// How to obtain the authorisation, from the catalog.
    help: String,
}

/// The field of a grant (as the API names it) that `error` is about, and its message in
/// `lang`; `names` gives the catalog's names of the institutions and services mentioned.
pub fn grant_problem(
    t: &Translations,
    lang: Lang,
    error: &GrantError,
    names: &BTreeMap<String, Text>,
) -> (&'static str, String) {
    let name = |id: &str| names.get(id).map_or_else(|| id.to_string(), |n| n.get(lang).to_string());
    match error {
        GrantError::Delegate(why) => ("delegate", t.message(lang, &format!("delegation-error-delegate-{why}"), &[])),
        GrantError::Empty(field) => (field, t.message(lang, &format!("delegation-error-empty-{field}"), &[])),
        GrantError::Institution(i) => {
            ("institutions", t.message(lang, "delegation-error-institution", &[("institution", name(i))]))
        }
        GrantError::Business(b) => {
            ("businesses", t.message(lang, "delegation-error-business", &[("business", b.clone())]))
        }
        GrantError::Service(s) => ("services", t.message(lang, "delegation-error-service", &[("service", name(s))])),
        GrantError::Dates(why, max) => (
            if *why == "from-past" { "valid_from" } else { "valid_until" },
            t.message(lang, &format!("delegation-error-{why}"), &[("max", max.to_string())]),
        ),
        GrantError::TooLong { max_days, latest } => {
            let latest = format!("{:02}/{:02}/{}", latest.day(), u8::from(latest.month()), latest.year());
            let args = [("max", max_days.to_string()), ("latest", latest)];
            ("valid_until", t.message(lang, "delegation-error-too-long", &args))
        }
        GrantError::NoteTooLong(max) => ("note", t.message(lang, "delegation-error-note", &[("max", max.to_string())])),
        GrantError::NoteCharacters => ("note", t.message(lang, "delegation-error-note-characters", &[])),
        GrantError::DelegateName(why) => (
            "delegate_name",
            t.message(
                lang,
                &format!("delegation-error-name-{why}"),
                &[("max", domain::delegation::NAME_MAX.to_string())],
            ),
        ),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ProblemField {
    field: String,
    label: Option<String>,
    code: &'static str,
    message: String,
    /// The institution whose receivability rule refuses the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    institution: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ProblemField>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    institutions: Vec<InstitutionProblem>,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::CardRefused(_) | Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Self::ForgedProxyHeader | Self::CrossSite | Self::CsrfToken => StatusCode::FORBIDDEN,
            Self::SessionExpired => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnknownService(_) | Self::Validation { .. } | Self::WrongShape(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::WrongState(_) | Self::WrongDeliveryState(_) => StatusCode::CONFLICT,
            Self::NotAuthorised { .. } | Self::OutOfScope(_) => StatusCode::FORBIDDEN,
            Self::DelegationEnded => StatusCode::CONFLICT,
            Self::NoRedelegation => StatusCode::FORBIDDEN,
            Self::GrantRefused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) | Self::BadParameter(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Message id of the title; the detail is `<id>-detail` unless given directly.
    fn slug(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::CardRefused(_) => "card-refused",
            Self::BadSignature(_) => "bad-signature",
            Self::ForgedProxyHeader => "forged-proxy-header",
            Self::CrossSite => "cross-site",
            Self::SessionExpired => "session-expired",
            Self::CsrfToken => "csrf-token",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::UnknownService(_) => "unknown-service",
            Self::Validation { .. } => "validation",
            Self::WrongState(_) => "wrong-state",
            Self::NotAuthorised { .. } => "not-authorised",
            Self::WrongDeliveryState(_) => "wrong-delivery-state",
            Self::OutOfScope(_) => "out-of-scope",
            Self::DelegationEnded => "delegation-ended",
            Self::NoRedelegation => "no-redelegation",
            Self::GrantRefused { .. } => "grant-refused",
            Self::MalformedJson(_) => "malformed-json",
            Self::WrongShape(_) => "wrong-shape",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::TooLarge => "too-large",
            Self::BadParameter(_) => "bad-parameter",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }

    /// The problem+json answer in `lang`.
    /// The problem+json answer in `lang`.
    pub fn to_response(&self, t: &Translations, lang: Lang) -> Response {
        let problem = self.problem(t, lang);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        self.finish(response, lang)
    }

    /// The same answer as a page, for a browser on the portal's pages: `page` renders the
    /// status, title, detail and the fields' messages (the pages' layer does, so that this
    /// module stays below every handler).
    pub fn to_page(
        &self,
        t: &Translations,
        lang: Lang,
        page: impl FnOnce(StatusCode, &str, &str, Vec<String>) -> Response,
    ) -> Response {
        let problem = self.problem(t, lang);
        let messages = problem.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>();
        let response = page(self.status(), &problem.title, &problem.detail, messages);
        self.finish(response, lang)
    }

    fn finish(&self, mut response: Response, lang: Lang) -> Response {
        let status = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Overload passes in a moment; an unreachable database may take longer.
            let seconds = if matches!(self, Self::Overloaded) { "1" } else { "5" };
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            // No HTTP auth scheme applies: the credential is the TLS client certificate.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("TLS-client-certificate"));
        }
        if let Self::OutOfScope(domain::delegation::OutOfScope::NotValid(_)) = self {
            // The delegation no longer holds: this refusal is the last answer given under it;
            // the browser acts for its own holder from the next request.
            if let Some(value) = crate::cookies::clear(crate::cookies::ACTING_COOKIE) {
                headers.append(header::SET_COOKIE, value);
            }
        }
        response
    }

    /// The problem's detail in `lang`, naming what the variant carries.
    fn detail(&self, t: &Translations, lang: Lang) -> String {
        let detail_id = format!("problem-{}-detail", self.slug());
        match self {
            Self::CardRefused(refusal) => t.message(lang, &format!("card-{}", refusal.code()), &[]),
            Self::BadParameter(reason) | Self::BadSignature(reason) => reason.clone(),
            Self::WrongState(state) => {
                let state_name = t.message(lang, &format!("state-{}", state.as_str()), &[]);
                t.message(lang, &detail_id, &[("state", state_name)])
            }
            Self::NotAuthorised { business, institutions } => {
                let names = institutions.iter().map(|i| i.name.get(lang)).collect::<Vec<_>>().join(", ");
                t.message(lang, &detail_id, &[("business", business.clone()), ("institutions", names)])
            }
            Self::WrongDeliveryState(state) => {
                let state_name = t.message(lang, &format!("delivery-state-{}", state.as_str()), &[]);
                t.message(lang, &detail_id, &[("state", state_name)])
            }
            Self::MalformedJson(e) | Self::WrongShape(e) => t.message(lang, &detail_id, &[("error", e.clone())]),
            Self::TooLarge => t.message(lang, &detail_id, &[("limit", BODY_LIMIT.to_string())]),
            Self::OutOfScope(reason) => {
                use domain::delegation::OutOfScope as O;
                match reason {
                    O::NotValid(standing) => {
                        t.message(lang, &format!("scope-{}", standing.as_str().replace('_', "-")), &[])
                    }
                    O::Institution(i) => t.message(lang, "scope-institution", &[("institution", i.clone())]),
                    O::NotActiveAt(i) => t.message(lang, "scope-not-active", &[("institution", i.clone())]),
                    O::Business(b) => t.message(lang, "scope-business", &[("business", b.clone())]),
                    O::Service(s) => t.message(lang, "scope-service", &[("service", s.clone())]),
                }
            }
            Self::UnknownService(s) => t.message(lang, &detail_id, &[("service", s.clone())]),
            _ => t.message(lang, &detail_id, &[]),
        }
    }

    /// One entry per field at fault, with its label and message in `lang`.
    fn fields(&self, t: &Translations, lang: Lang) -> Vec<ProblemField> {
        match self {
            Self::Validation { errors, service } => errors
                .iter()
                .map(|e| {
                    let label = service.as_ref().and_then(|s| s.field(&e.field)).map(|f| &f.spec.label);
                    ProblemField {
                        field: e.field.clone(),
                        label: label.map(|l| l.get(lang).to_string()),
                        code: e.reason.code(),
                        message: t.reason(lang, label, &e.field, &e.reason),
                        institution: match &e.reason {
                            Reason::Receivability { institution, .. } => Some(institution.clone()),
                            _ => None,
                        },
                    }
                })
                .collect(),
            Self::GrantRefused { errors, names } => errors
                .iter()
                .map(|e| {
                    let (field, message) = grant_problem(t, lang, e, names);
                    ProblemField {
                        field: field.to_string(),
                        label: None,
                        code: grant_code(e),
                        message,
                        institution: None,
                    }
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn problem(&self, t: &Translations, lang: Lang) -> Problem {
        let slug = self.slug();
        let detail = self.detail(t, lang);
        let errors = self.fields(t, lang);
        Problem {
            kind: format!("/problems/{slug}"),
            title: t.message(lang, &format!("problem-{slug}"), &[]),
            status: self.status().as_u16(),
            detail,
            errors,
            institutions: match self {
                Self::NotAuthorised { institutions, .. } => institutions
                    .iter()
                    .map(|i| InstitutionProblem {
                        institution: i.institution.clone(),
                        name: i.name.get(lang).to_string(),
                        status: i.status,
                        help: i.help.get(lang).to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

/// The reason code of a grant refusal, as `errors[].code` says it.
fn grant_code(error: &GrantError) -> &'static str {
    match error {
        GrantError::Delegate("self") => "delegate_self",
        GrantError::Delegate(_) => "invalid_tax_code",
        GrantError::Empty(_) => "required",
        GrantError::Institution(_) => "not_authorised",
        GrantError::Business(_) => "not_authorised_for_business",
        GrantError::Service(_) => "institution_not_chosen",
        GrantError::Dates("from-past", _) => "in_the_past",
        GrantError::Dates("to-before-from", _) => "before_start",
        GrantError::Dates(_, _) | GrantError::TooLong { .. } => "too_long",
        GrantError::NoteTooLong(_) | GrantError::DelegateName("too-long") => "too_long",
        GrantError::NoteCharacters | GrantError::DelegateName(_) => "characters",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(std::sync::Arc::new(self));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::delegation::OutOfScope;
    use domain::delivery::DeliveryState;
    use serde_json::Value;

    /// Every variant, with the status and problem type it must answer.
    fn every_error() -> Vec<(ApiError, u16, &'static str)> {
        let field = FieldError { field: "owner.tax_code".into(), reason: Reason::Required };
        vec![
            (ApiError::Unauthenticated, 401, "unauthenticated"),
            (ApiError::ForgedProxyHeader, 403, "forged-proxy-header"),
            (ApiError::CrossSite, 403, "cross-site"),
            (ApiError::SessionExpired, 401, "session-expired"),
            (ApiError::CsrfToken, 403, "csrf-token"),
            (ApiError::BadSignature("jwt expired".into()), 401, "bad-signature"),
            (ApiError::CardRefused(identity::CardRefusal::Expired), 401, "card-refused"),
            (ApiError::NotFound, 404, "not-found"),
            (ApiError::MethodNotAllowed, 405, "method-not-allowed"),
            (ApiError::UnknownService("nessuno".into()), 422, "unknown-service"),
            (ApiError::Validation { errors: vec![field], service: None }, 422, "validation"),
            (ApiError::WrongState(PracticeState::Completed), 409, "wrong-state"),
            (ApiError::NotAuthorised { business: "00743110157".into(), institutions: vec![] }, 403, "not-authorised"),
            (ApiError::WrongDeliveryState(DeliveryState::Accepted), 409, "wrong-delivery-state"),
            (ApiError::OutOfScope(OutOfScope::Service("cessazione-impresa".into())), 403, "out-of-scope"),
            (ApiError::DelegationEnded, 409, "delegation-ended"),
            (ApiError::NoRedelegation, 403, "no-redelegation"),
            (
                ApiError::GrantRefused { errors: vec![GrantError::Empty("services")], names: BTreeMap::new() },
                422,
                "grant-refused",
            ),
            (ApiError::MalformedJson("expected value".into()), 400, "malformed-json"),
            (ApiError::WrongShape("missing field `data`".into()), 422, "wrong-shape"),
            (ApiError::UnsupportedMediaType, 415, "unsupported-media-type"),
            (ApiError::TooLarge, 413, "too-large"),
            (ApiError::BadParameter("page: not a number".into()), 400, "bad-parameter"),
            (ApiError::Unavailable, 503, "unavailable"),
            (ApiError::Overloaded, 503, "overloaded"),
            (ApiError::Internal, 500, "internal"),
        ]
    }

    #[tokio::test]
    async fn every_error_maps_to_its_status_and_a_problem_in_both_languages() {
        let t = Translations::load().expect("translations");
        for (error, status, slug) in every_error() {
            for lang in [Lang::It, Lang::En] {
                let response = error.to_response(&t, lang);
                assert_eq!(response.status().as_u16(), status, "{error:?}");
                let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                assert_eq!(content_type, Some("application/problem+json"), "{error:?}");
                let retry = response.headers().get(header::RETRY_AFTER).is_some();
                assert_eq!(retry, status == 503, "Retry-After only when the request may simply be repeated");
                let body = axum::body::to_bytes(response.into_body(), BODY_LIMIT).await.expect("body");
                let problem: Value = serde_json::from_slice(&body).expect("problem+json");
                assert_eq!(problem["type"], format!("/problems/{slug}"), "{error:?}");
                assert_eq!(problem["status"], status);
                for part in ["title", "detail"] {
                    let text = problem[part].as_str().unwrap_or_default();
                    assert!(!text.is_empty() && !text.starts_with("problem-"), "{slug} {part} in {lang:?}: {text}");
                    assert!(!text.contains('{'), "unresolved placeholder in {slug} {part}: {text}");
                }
            }
        }
    }

    #[test]
    fn store_errors_map_to_answers_that_leak_nothing() {
        let mapped = |e: StoreError| ApiError::from(e).status().as_u16();
        assert_eq!(mapped(StoreError::NotFound), 404);
        assert_eq!(mapped(StoreError::WrongState(PracticeState::Draft)), 409);
        assert_eq!(mapped(StoreError::WrongDeliveryState(DeliveryState::Queued)), 409);
        assert_eq!(mapped(StoreError::DelegationEnded), 409);
        assert_eq!(mapped(StoreError::from(sqlx::Error::PoolTimedOut)), 503, "the data is safe: try again");
        assert_eq!(mapped(StoreError::Corrupt("delivery state `x`".into())), 500);
        assert_eq!(mapped(StoreError::BadUrl("postgres://secret@host".into())), 500);
        let t = Translations::load().expect("translations");
        let problem = ApiError::from(StoreError::Corrupt("delivery state `x`".into())).problem(&t, Lang::It);
        assert!(!problem.detail.contains("delivery state"), "internals stay in the log: {}", problem.detail);
    }

    /// The one mapping from the application layer's refusals to HTTP: every variant.
    #[test]
    fn every_refusal_of_a_use_case_maps_to_one_status() {
        use domain::text::Text;
        let refusal = app::InstitutionRefusal {
            institution: "inail".into(),
            name: Text::same("INAIL"),
            status: "not_authorised",
            help: Text::default(),
            url: None,
        };
        let cases: Vec<(AppError, u16)> = vec![
            (AppError::NotFound, 404),
            (AppError::UnknownService("x".into()), 422),
            (AppError::Validation { errors: vec![], service: None }, 422),
            (AppError::WrongState(PracticeState::InProgress), 409),
            (AppError::WrongDeliveryState(DeliveryState::Queued), 409),
            (AppError::NotAuthorised { business: "00743110157".into(), institutions: vec![refusal] }, 403),
            (AppError::OutOfScope(OutOfScope::Business("00743110157".into())), 403),
            (AppError::DelegationEnded, 409),
            (AppError::NoRedelegation, 403),
            (AppError::GrantRefused { errors: vec![GrantError::NoteCharacters], names: BTreeMap::new() }, 422),
            (AppError::BadInput("practice: at most 200".into()), 400),
            (AppError::Unavailable, 503),
            (AppError::Internal, 500),
        ];
        for (refusal, status) in cases {
            let shown = format!("{refusal:?}");
            assert_eq!(ApiError::from(refusal).status().as_u16(), status, "{shown}");
        }
    }

    #[test]
    fn a_refused_grant_lists_each_field_with_its_message() {
        let t = Translations::load().expect("translations");
        let names = BTreeMap::from([("inail".to_string(), Text { it: "INAIL (it)".into(), en: "INAIL (en)".into() })]);
        let errors = vec![
            GrantError::Delegate("self"),
            GrantError::Institution("inail".into()),
            GrantError::TooLong { max_days: 365, latest: time::macros::date!(2027 - 12 - 01) },
        ];
        let problem = ApiError::GrantRefused { errors, names }.problem(&t, Lang::En);
        let fields: Vec<_> = problem.errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            [("delegate", "delegate_self"), ("institutions", "not_authorised"), ("valid_until", "too_long")]
        );
        assert!(problem.errors[1].message.contains("INAIL (en)"), "{}", problem.errors[1].message);
        assert!(problem.errors[2].message.contains("365"), "{}", problem.errors[2].message);
        assert!(
            problem.errors[2].message.contains("01/12/2027"),
            "the latest day allowed: {}",
            problem.errors[2].message
        );
    }
}
