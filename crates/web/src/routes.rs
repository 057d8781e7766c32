//! The API's routes, each registered with its OpenAPI description (utoipa-axum), and the
//! document they make. Above every handler module: [`crate::router`] mounts these beside the
//! pages.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Every route of the API, each registered with its description: a route cannot be served
/// without being in the document, nor documented without being served.
pub fn api() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(crate::api::me))
        .routes(routes!(crate::api::services::list_services))
        .routes(routes!(crate::api::services::get_service))
        .routes(routes!(crate::api::services::service_authorisations))
        .routes(routes!(crate::api::practices::list_practices, crate::api::practices::create_practice))
        .routes(routes!(crate::api::practices::get_practice, crate::api::practices::put_practice))
        .routes(routes!(crate::api::practices::submit_practice))
        .routes(routes!(crate::api::practices::archive_practice))
        .routes(routes!(crate::api::practices::unarchive_practice))
        .routes(routes!(crate::api::practices::resend_delivery))
        .routes(routes!(crate::api::records::receipt))
        .routes(routes!(crate::api::events::events))
        .routes(routes!(crate::api::search::api_search))
        .routes(routes!(crate::api::records::export))
        .routes(routes!(crate::api::delegations::list, crate::api::delegations::grant))
        .routes(routes!(crate::api::delegations::revoke))
        .routes(routes!(crate::api::delegations::renounce))
        .routes(routes!(crate::api::delegations::activity));
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .routes(routes!(crate::session_api::login, crate::session_api::show, crate::session_api::logout))
        .routes(routes!(crate::institutions::event))
        .routes(routes!(crate::institutions::filing_event))
}

/// The API's OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

#[cfg(test)]
mod tests {
    /// Every change of the document shows in review.
    #[test]
    fn document() {
        let document = super::document().to_pretty_json().expect("json");
        insta::assert_snapshot!(document);
    }
}
