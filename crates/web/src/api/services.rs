//! The catalog for business software: the services with their fields and help, and before
//! anything is typed whether the card holder may file at each institution a service involves.
//!
//! - `GET /api/v1/services`, `GET /api/v1/services/{id}`
//! - `GET /api/v1/services/{id}/authorisations`

use axum::extract::{Path, State};
use axum::Json;
use domain::catalog::{Catalog, FieldKind, Section, Service};
use domain::Lang;
use serde::Serialize;

pub use app::authorisations::ServiceReadiness;

use crate::error::ApiError;
use crate::extract::{Authenticated, UserLang};
use crate::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecipientView {
    institution: String,
    institution_name: String,
    filing: String,
    filing_title: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OptionView {
    value: String,
    label: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldView {
    id: String,
    label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    required: bool,
    max_length: usize,
    /// `common` or the recipient institution whose filing needs it.
    section: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    options: Vec<OptionView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceView {
    id: String,
    life_event: String,
    life_event_title: String,
    title: String,
    summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
    recipients: Vec<RecipientView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<FieldView>>,
    /// For a holder with a card: whether the holder may file at every recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorisation: Option<ServiceReadiness>,
}

fn kind_name(kind: &FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::LongText => "long_text",
        FieldKind::PersonTaxCode { .. } => "person_tax_code",
        FieldKind::BusinessTaxCode => "business_tax_code",
        FieldKind::VatNumber => "vat_number",
        FieldKind::Email => "email",
        FieldKind::Ateco => "ateco",
        FieldKind::Cap => "cap",
        FieldKind::Province => "province",
        FieldKind::Date(_) => "date",
        FieldKind::Integer { .. } => "integer",
        FieldKind::Amount { .. } => "amount",
        FieldKind::Choice { .. } => "choice",
    }
}

fn service_view(catalog: &Catalog, service: &Service, lang: Lang, detailed: bool) -> ServiceView {
    let life_event_title = catalog
        .life_events
        .iter()
        .find(|e| e.id == service.life_event)
        .map(|e| e.title.get(lang).to_string())
        .unwrap_or_default();
    let recipients = service
        .recipients
        .iter()
        .map(|r| RecipientView {
            institution: r.institution.clone(),
            institution_name: catalog
                .institution(&r.institution)
                .map(|i| i.name.get(lang).to_string())
                .unwrap_or_default(),
            filing: r.filing.clone(),
            filing_title: catalog.filing(r).map(|f| f.title.get(lang).to_string()).unwrap_or_default(),
        })
        .collect();
    let fields = detailed.then(|| {
        service
            .fields
            .iter()
            .map(|f| FieldView {
                id: f.spec.id.clone(),
                label: f.spec.label.get(lang).to_string(),
                hint: f.spec.hint.as_ref().map(|h| h.get(lang).to_string()),
                help: f.spec.help.as_ref().map(|h| h.get(lang).to_string()),
                kind: kind_name(&f.spec.kind),
                required: f.spec.required,
                max_length: f.spec.max_length,
                section: match &f.section {
                    Section::Common(_) => "common".to_string(),
                    Section::Recipient(institution) => institution.clone(),
                },
                options: match &f.spec.kind {
                    FieldKind::Choice { options } => options
                        .iter()
                        .map(|o| OptionView { value: o.value.clone(), label: o.label.get(lang).to_string() })
                        .collect(),
                    _ => Vec::new(),
                },
            })
            .collect()
    });
    ServiceView {
        id: service.id.clone(),
        life_event: service.life_event.clone(),
        life_event_title,
        title: service.title.get(lang).to_string(),
        summary: service.summary.get(lang).to_string(),
        help: detailed.then(|| service.help.get(lang).to_string()),
        recipients,
        fields,
        authorisation: None,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceList {
    services: Vec<ServiceView>,
}

#[utoipa::path(
    get,
    path = "/services",
    tag = "catalog",
    operation_id = "listServices",
    security((), ("smartCard" = [])),
    params(
        crate::openapi::LangParam,
    ),
    responses(
        (status = 200, body = ServiceList, description = "The catalog, grouped by life event; with a card, whether the holder can complete each service"),
        (status = 401, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/services`: the catalog, grouped by life event in catalog order. With a card,
/// each service says whether the holder can complete it (authorisations at every recipient).
pub async fn list_services(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    crate::extract::MaybeHolder(holder): crate::extract::MaybeHolder,
) -> Json<ServiceList> {
    let catalog = &app.core.catalog;
    let answers = match &holder {
        Some(holder) => app::authorisations::of_holder(&app.core, &holder.tax_code).await,
        None => None,
    };
    let mut services = Vec::new();
    for event in &catalog.life_events {
        for s in catalog.services.iter().filter(|s| s.life_event == event.id) {
            let mut view = service_view(catalog, s, lang, false);
            view.authorisation = answers.as_ref().map(|answers| ServiceReadiness::of(s, answers));
            services.push(view);
        }
    }
    Json(ServiceList { services })
}

#[utoipa::path(
    get,
    path = "/services/{id}",
    tag = "catalog",
    operation_id = "getService",
    security(()),
    params(
        ("id" = String, Path, description = "The service's id in the catalog."),
        crate::openapi::LangParam,
    ),
    responses(
        (status = 200, body = ServiceView, description = "The service with its fields and help"),
        (status = 404, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/services/{id}`: one service with its fields and help.
pub async fn get_service(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path(id): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    let service = app.core.catalog.service(&id).ok_or(ApiError::NotFound)?;
    Ok(Json(service_view(&app.core.catalog, service, lang, true)))
}

/// One recipient of a service, and whether the holder may file there.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecipientAuthorisation {
    institution: String,
    institution_name: String,
    #[serde(flatten)]
    authorisation: domain::authorisation::Authorisation,
    /// How to obtain the authorisation where it is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    how_to_obtain: Option<String>,
}

impl RecipientAuthorisation {
    pub fn institution(&self) -> &str {
        &self.institution
    }

    pub fn institution_name(&self) -> &str {
        &self.institution_name
    }

    pub fn authorisation(&self) -> &domain::authorisation::Authorisation {
        &self.authorisation
    }

    pub fn how_to_obtain(&self) -> Option<&str> {
        self.how_to_obtain.as_deref()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceAuthorisations {
    service: String,
    holder: String,
    /// `true` when the holder may file for some business at every recipient, `false` when
    /// some recipient says no, `null` when some recipient could not be asked (or
    /// authorisations are not checked here).
    complete: Option<bool>,
    pub recipients: Vec<RecipientAuthorisation>,
}

impl ServiceAuthorisations {
    pub fn complete(&self) -> Option<bool> {
        self.complete
    }
}

/// The holder's answer at each recipient of `service`, with names and help in `lang`.
pub async fn authorisations_for(
    app: &AppState,
    service: &Service,
    holder: &domain::identifiers::CodiceFiscale,
    lang: Lang,
) -> ServiceAuthorisations {
    let answers = app::authorisations::for_service(&app.core, service, holder).await;
    let complete = ServiceReadiness::of(service, &answers.iter().cloned().collect()).complete;
    let recipients = answers
        .into_iter()
        .map(|(institution, authorisation)| {
            let allowed = authorisation.allows_any();
            let known = app.core.catalog.institution(&institution);
            RecipientAuthorisation {
                institution_name: known.map(|i| i.name.get(lang).to_string()).unwrap_or_else(|| institution.clone()),
                how_to_obtain: (allowed != Some(true))
                    .then(|| known.map(|i| i.authorisation_help.get(lang).to_string()))
                    .flatten(),
                institution,
                authorisation,
            }
        })
        .collect();
    ServiceAuthorisations { service: service.id.clone(), holder: holder.to_string(), complete, recipients }
}

#[utoipa::path(
    get,
    path = "/services/{id}/authorisations",
    tag = "catalog",
    operation_id = "serviceAuthorisations",
    params(
        ("id" = String, Path, description = "The service's id in the catalog."),
        crate::openapi::LangParam,
    ),
    responses(
        (status = 200, body = ServiceAuthorisations, description = "The holder's answer at each recipient institution"),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 404, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/services/{id}/authorisations`: before anything is typed, whether the holder
/// may operate online at each institution the service involves, and for which businesses.
pub async fn service_authorisations(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Authenticated(holder): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ServiceAuthorisations>, ApiError> {
    let service = app.core.catalog.service(&id).ok_or(ApiError::NotFound)?;
    Ok(Json(authorisations_for(&app, service, &holder.tax_code, lang).await))
}
