//! The OpenAPI 3.1 document of the API, generated from the code: each handler's
//! `#[utoipa::path]` and the `ToSchema` of the very types that serialise its answers (the
//! router registers each API route with its description, see [`crate::routes`]). Served at
//! `/api/v1/openapi.json`; its snapshot (`snapshots/web__routes__tests__document.snap`)
//! shows every change of the document in review.
//!
//! This module holds what is shared by the operations: the document's header, the security
//! schemes, the problem answer and the common parameters. It imports no handler.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sportello API",
        version = "1.0.0",
        description = "One-stop shop for business filings: integrated services that send one filing per institution \
(INPS, INAIL, Registro Imprese, ...) from data typed once.

Authentication: every call under /api/v1 except the catalog needs a smart-card (CNS) client certificate presented in \
the TLS handshake. The holder's codice fiscale is read from the certificate; each practice belongs to its holder, and \
another holder's practice answers 404. Under a sub-delegation, `X-Sportello-Delegation` acts on behalf of the grantor.

Errors are RFC 7807 `application/problem+json`, in Italian or English (`lang` or Accept-Language). Validation \
failures list every field at fault in `errors`. Request bodies are at most 64 KiB.

Delivery: after submission the portal sends one ModI-signed filing per recipient institution, retries technical \
failures with backoff, and records each institution's answers. A practice counts as started at an institution only \
once its protocol number is known."
    ),
    servers((url = "/")),
    security(("smartCard" = [])),
    components(schemas(Problem), responses(ProblemAnswer)),
    modifiers(&SecuritySchemes),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The smart card (mutual TLS) for holders, ModI signatures for institutions.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "smartCard",
            SecurityScheme::MutualTls {
                description: Some(
                    "A CNS smart-card certificate (codice fiscale in the CN as `CF/card.hash`, or serialNumber \
`TINIT-CF`) from an accepted certifier."
                        .into(),
                ),
                extensions: None,
            },
        );
        let modi = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "AgID ModI ID_AUTH_REST_02 with INTEGRITY_REST_01 and AUDIT_REST_01 headers, ES256, signed by the \
institution",
            ))
            .build();
        components.add_security_scheme("modi", SecurityScheme::Http(modi));
    }
}

/// Every refusal: an RFC 7807 problem (`application/problem+json`).
#[derive(Debug)]
pub struct ProblemAnswer;

impl<'s> utoipa::ToResponse<'s> for ProblemAnswer {
    fn response() -> (&'s str, RefOr<Response>) {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        let response = ResponseBuilder::new()
            .description(
                "An RFC 7807 problem: 400 unreadable JSON or parameter, 401 no or refused smart card, 403 not \
authorised or out of a delegation's scope, 404 not found (or not yours), 409 wrong state, 413 body over 64 KiB, 415 not \
JSON, 422 invalid data (fields listed in `errors`), 503 database unavailable or too many requests at once (with Retry-After).",
            )
            .content("application/problem+json", content)
            .build();
        ("Problem", response.into())
    }
}

/// The language of texts and messages (`it`, `en`); otherwise Accept-Language, else Italian.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes a parameter that `extract::UserLang` reads.
pub struct LangParam {
    /// `it` or `en`: the language of texts and messages; otherwise Accept-Language, else Italian.
    #[param(pattern = "^(it|en)$")]
    lang: Option<String>,
}

/// Acting on behalf of a grantor.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Describes the header that `acting::Acting` reads.
pub struct DelegationHeader {
    /// Act on behalf of a grantor under this sub-delegation (its id). It must name the card holder as
    /// collaborator and hold now; the practices reached are the grantor's within its services and
    /// businesses, and every act is checked against it (403 `/problems/out-of-scope` otherwise).
    #[param(rename = "X-Sportello-Delegation", format = Uuid)]
    x_sportello_delegation: Option<String>,
}
