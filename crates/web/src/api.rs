//! The public JSON API, `/api/v1` (described in `openapi.json`, served at
//! `/api/v1/openapi.json`).
//!
//! Handlers parse input into domain types at the edge, ask the domain what is allowed, and let
//! the store make it durable. They hold no rules of their own.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::catalog::{Catalog, FieldKind, Section, Service};
use domain::practice::{
    check_draft, prepare_correction, prepare_submission, validate_data, Delivery, Practice, PracticeData, PracticeId,
    PracticeState, SubmitError,
};
use domain::Lang;
use serde::{Deserialize, Serialize};
use storage::PracticeQuery;

use crate::acting::Acting;
use crate::acting::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, UserLang};
use crate::AppState;

// ---- services ----------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct RecipientView {
    institution: String,
    institution_name: String,
    filing: String,
    filing_title: String,
}

#[derive(Debug, Serialize)]
pub struct OptionView {
    value: String,
    label: String,
}

#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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

/// Whether a holder can complete a service, as far as authorisations go.
#[derive(Debug, Serialize)]
pub struct ServiceReadiness {
    /// `false` when some recipient says no; `null` when some could not be asked.
    pub complete: Option<bool>,
    /// Recipients where the holder may file for no business.
    missing: Vec<String>,
    /// Recipients that could not be asked.
    unknown: Vec<String>,
}

impl ServiceReadiness {
    /// From the holder's answers, by institution.
    pub fn of(service: &Service, answers: &BTreeMap<String, domain::authorisation::Authorisation>) -> Self {
        let allowed = |r: &&domain::catalog::Recipient| answers.get(&r.institution).and_then(|a| a.allows_any());
        let ids = |keep: &dyn Fn(Option<bool>) -> bool| -> Vec<String> {
            service.recipients.iter().filter(|r| keep(allowed(r))).map(|r| r.institution.clone()).collect()
        };
        let missing = ids(&|a| a == Some(false));
        let unknown = ids(&|a| a.is_none());
        let complete = if !missing.is_empty() {
            Some(false)
        } else if !unknown.is_empty() {
            None
        } else {
            Some(true)
        };
        Self { complete, missing, unknown }
    }
}

/// The holder's authorisations at every institution of the catalog (cached), or `None` when
/// this portal does not check them.
pub async fn holder_authorisations(
    app: &AppState,
    holder: &domain::identifiers::CodiceFiscale,
) -> Option<BTreeMap<String, domain::authorisation::Authorisation>> {
    let checker = app.authorisations.as_ref()?;
    let all: Vec<String> = app.catalog.institutions.iter().map(|i| i.id.clone()).collect();
    Some(checker.check_all(&all, holder.as_str()).await.into_iter().collect())
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

#[derive(Debug, Serialize)]
pub struct ServiceList {
    services: Vec<ServiceView>,
}

/// `GET /api/v1/services`: the catalog, grouped by life event in catalog order. With a card,
/// each service says whether the holder can complete it (authorisations at every recipient).
pub async fn list_services(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    crate::extract::MaybeHolder(holder): crate::extract::MaybeHolder,
) -> Json<ServiceList> {
    let catalog = &app.catalog;
    let answers = match &holder {
        Some(holder) => holder_authorisations(&app, &holder.tax_code).await,
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

/// `GET /api/v1/services/{id}`: one service with its fields and help.
pub async fn get_service(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path(id): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    let service = app.catalog.service(&id).ok_or(ApiError::NotFound)?;
    Ok(Json(service_view(&app.catalog, service, lang, true)))
}

// ---- practices ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ProblemView {
    field: String,
    code: &'static str,
    pub message: String,
    /// The institution whose receivability rule refuses the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    institution: Option<String>,
}

impl ProblemView {
    pub fn field(&self) -> &str {
        &self.field
    }
}

/// What still stops a draft from being sent, said in `lang`.
pub fn draft_problems(app: &AppState, practice: &Practice, lang: Lang) -> Vec<ProblemView> {
    let Some(service) = app.catalog.service(&practice.service_id) else { return Vec::new() };
    let today = domain::italian_date(app.clock.now());
    validate_data(service, &practice.data, today)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let label = service.field(&e.field).map(|f| &f.spec.label);
            ProblemView {
                message: app.translations.reason(lang, label, &e.field, &e.reason),
                code: e.reason.code(),
                institution: match e.reason {
                    domain::validation::Reason::Receivability { institution, .. } => Some(institution),
                    _ => None,
                },
                field: e.field,
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct DeliveryView {
    institution: String,
    institution_name: String,
    filing: String,
    #[serde(flatten)]
    status: domain::delivery::DeliveryStatus,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: time::OffsetDateTime,
    /// When the institution last said something new (for `no_news`: since when it is silent).
    #[serde(with = "time::serde::rfc3339::option")]
    last_news_at: Option<time::OffsetDateTime>,
    /// Values the institution's answers carried (REA number, codice ditta, ...).
    values: std::collections::BTreeMap<String, String>,
    /// The institution's office competent for the practice, when it routes by territory.
    #[serde(skip_serializing_if = "Option::is_none")]
    office: Option<String>,
    /// For `waiting`: the recipient whose answer this filing waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    waits_for: Option<String>,
    payload: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct PracticeView {
    #[serde(flatten)]
    practice: Practice,
    service_title: String,
    /// For drafts: what still stops the practice from being sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<ProblemView>>,
    /// For submitted practices: one delivery per recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    deliveries: Option<Vec<DeliveryView>>,
    /// For submitted practices: every event, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<storage::TimelineEntry>>,
}

pub(crate) fn practice_view(
    app: &AppState,
    practice: Practice,
    deliveries: Option<Vec<Delivery>>,
    lang: Lang,
) -> PracticeView {
    let service = app.catalog.service(&practice.service_id);
    let problems = (practice.state == PracticeState::Draft).then(|| draft_problems(app, &practice, lang));
    let deliveries = deliveries.map(|ds| {
        ds.into_iter()
            .map(|d| DeliveryView {
                institution_name: app
                    .catalog
                    .institution(&d.institution)
                    .map(|i| i.name.get(lang).to_string())
                    .unwrap_or_else(|| d.institution.clone()),
                institution: d.institution,
                filing: d.filing_kind,
                status: d.status,
                attempts: d.attempts,
                updated_at: d.updated_at,
                last_news_at: d.last_news_at,
                values: d.values,
                office: d.office,
                waits_for: d.waits_for,
                payload: d.payload,
            })
            .collect()
    });
    PracticeView {
        service_title: service.map(|s| s.title.get(lang).to_string()).unwrap_or_else(|| practice.service_id.clone()),
        practice,
        problems,
        deliveries,
        timeline: None,
    }
}

fn parse_id(id: &str) -> Result<PracticeId, ApiError> {
    // A malformed id names no practice.
    PracticeId::parse(id).ok_or(ApiError::NotFound)
}

fn service_of<'a>(app: &'a AppState, practice: &Practice) -> Result<&'a Service, ApiError> {
    app.catalog.service(&practice.service_id).ok_or_else(|| ApiError::UnknownService(practice.service_id.clone()))
}

fn check_draft_data(app: &AppState, service: &Service, data: &PracticeData) -> Result<(), ApiError> {
    let errors = check_draft(service, data, domain::italian_date(app.clock.now()));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation { errors, service: Some(Box::new(service.clone())) })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPractice {
    service: String,
    #[serde(default)]
    data: PracticeData,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftData {
    data: PracticeData,
}

/// Starts a draft of `service_id` for the principal with whatever data is ready (none of it
/// invalid, none outside a delegation). Shared by the API and the desk's pages.
pub async fn start_draft(
    app: &AppState,
    principal: &Principal,
    service_id: &str,
    data: PracticeData,
) -> Result<Practice, ApiError> {
    let service = app.catalog.service(service_id).ok_or_else(|| ApiError::UnknownService(service_id.to_string()))?;
    check_draft_data(app, service, &data)?;
    principal.check(app, &service.id, data.get("business.tax_code").map(String::as_str)).await?;
    let mut bytes = [0u8; 16];
    app.random.fill(&mut bytes).map_err(|_| ApiError::Internal)?;
    let now = app.clock.now();
    let practice = Practice {
        id: PracticeId::from_random_bytes(bytes),
        owner: principal.owner.clone(),
        actor: principal.actor.tax_code.clone(),
        service_id: service.id.clone(),
        state: PracticeState::Draft,
        data,
        reference: None,
        needs_resend: false,
        created_at: now,
        updated_at: now,
        submitted_at: None,
    };
    app.store.create_draft(&practice).await?;
    tracing::info!(practice = %practice.id, service = %practice.service_id, actor = %principal.actor.tax_code, "draft created");
    let detail = serde_json::json!({ "practice": practice.id.to_string(), "service": practice.service_id });
    principal.audit(app, "draft_created", detail).await;
    Ok(practice)
}

/// `POST /api/v1/practices`: starts a draft for a service, with whatever data is ready.
pub async fn create_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    ApiJson(body): ApiJson<NewPractice>,
) -> Result<Response, ApiError> {
    let practice = start_draft(&app, &principal, &body.service, body.data).await?;
    let location = format!("/api/v1/practices/{}", practice.id);
    let view = practice_view(&app, practice, None, lang);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view)).into_response())
}

/// `GET /api/v1/practices/{id}`.
pub async fn get_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let id = parse_id(&id)?;
    let practice = principal.practice(&app, id).await?;
    let sent = practice.reference.is_some();
    let (practice, deliveries) = if sent {
        let deliveries = app.store.deliveries(&principal.owner, id).await?;
        // The practice's state changes in the same transaction as the delivery that moves it:
        // read after its deliveries, it is never older than they are.
        (principal.practice(&app, id).await?, Some(deliveries))
    } else {
        (practice, None)
    };
    let mut view = practice_view(&app, practice, deliveries, lang);
    if sent {
        view.timeline = Some(app.store.timeline(&principal.owner, id).await?);
    }
    Ok(Json(view))
}

/// Replaces a draft's data (none of it invalid). Shared by the API and the desk's pages.
pub async fn save_draft(
    app: &AppState,
    principal: &Principal,
    id: PracticeId,
    data: &PracticeData,
) -> Result<Practice, ApiError> {
    let practice = principal.practice(app, id).await?;
    if !practice.state.is_editable() {
        return Err(ApiError::WrongState(practice.state));
    }
    check_draft_data(app, service_of(app, &practice)?, data)?;
    principal.check(app, &practice.service_id, data.get("business.tax_code").map(String::as_str)).await?;
    let updated = app.store.update_draft(&principal.owner, id, data, app.clock.now()).await?;
    tracing::info!(practice = %id, actor = %principal.actor.tax_code, "draft saved");
    let detail = serde_json::json!({ "practice": id.to_string(), "fields": data.len() });
    principal.audit(app, "draft_saved", detail).await;
    Ok(updated)
}

/// `PUT /api/v1/practices/{id}`: replaces a draft's data.
pub async fn put_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DraftData>,
) -> Result<Json<PracticeView>, ApiError> {
    let updated = save_draft(&app, &principal, parse_id(&id)?, &body.data).await?;
    Ok(Json(practice_view(&app, updated, None, lang)))
}

/// Validates everything, checks the holder's authorisations at every recipient, then assigns
/// the reference number and queues one filing per recipient. Shared by the API and the pages.
pub async fn submit(
    app: &AppState,
    principal: &Principal,
    id: PracticeId,
    lang: Lang,
) -> Result<(Practice, Vec<Delivery>), ApiError> {
    let practice = principal.practice(app, id).await?;
    let mut submission = prepare_submission(&practice, &app.catalog, app.clock.now()).map_err(|e| match e {
        SubmitError::Illegal(t) => ApiError::WrongState(t.from),
        SubmitError::Invalid(errors) => {
            ApiError::Validation { errors, service: app.catalog.service(&practice.service_id).cloned().map(Box::new) }
        }
        SubmitError::UnknownService(s) => ApiError::UnknownService(s),
    })?;
    let business = submission.data.get("business.tax_code");
    principal.check(app, &practice.service_id, business.map(String::as_str)).await?;
    // The grantor's own authorisations: a delegation never adds to them.
    check_authorised(app, &principal.owner, &practice.service_id, business, lang).await?;
    submission.actor = principal.actor.tax_code.clone();
    let submitted = app.store.submit(&principal.owner, id, &submission).await?;
    let deliveries = app.store.deliveries(&principal.owner, id).await?;
    tracing::info!(
        practice = %id,
        reference = ?submitted.reference.as_ref().map(ToString::to_string),
        recipients = deliveries.len(),
        actor = %principal.actor.tax_code,
        "practice submitted"
    );
    let detail = serde_json::json!({
        "practice": id.to_string(),
        "reference": submitted.reference.as_ref().map(ToString::to_string),
        "recipients": deliveries.iter().map(|d| d.institution.clone()).collect::<Vec<_>>(),
        "data_sha256": data_digest(&submitted.data),
    });
    principal.audit(app, "submitted", detail).await;
    Ok((submitted, deliveries))
}

/// Archives a draft or a completed practice, or brings an archived one back: within the
/// principal's reach and scope, recorded in the audit trail. The desk's page and the API both
/// do it through here.
pub async fn set_archived(
    app: &AppState,
    principal: &Principal,
    id: PracticeId,
    archive: bool,
) -> Result<Practice, ApiError> {
    let practice = principal.practice(app, id).await?;
    principal.check(app, &practice.service_id, practice.data.get("business.tax_code").map(String::as_str)).await?;
    let practice = app.store.set_archived(&principal.owner, id, archive, app.clock.now()).await?;
    tracing::info!(practice = %id, actor = %principal.actor.tax_code, archive, "archive changed");
    let action = if archive { "archived" } else { "unarchived" };
    principal.audit(app, action, serde_json::json!({ "practice": id.to_string() })).await;
    Ok(practice)
}

/// `POST /api/v1/practices/{id}/archive`: puts a draft or a completed practice in the archive
/// (409 for one on its way).
pub async fn archive_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = set_archived(&app, &principal, parse_id(&id)?, true).await?;
    Ok(Json(practice_view(&app, practice, None, lang)))
}

/// `POST /api/v1/practices/{id}/unarchive`: brings an archived practice back to where it was.
pub async fn unarchive_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = set_archived(&app, &principal, parse_id(&id)?, false).await?;
    Ok(Json(practice_view(&app, practice, None, lang)))
}

/// `POST /api/v1/practices/{id}/submit`: validates everything, then assigns the reference
/// number and queues one filing per recipient.
pub async fn submit_practice(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path(id): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let (submitted, deliveries) = submit(&app, &principal, parse_id(&id)?, lang).await?;
    Ok(Json(practice_view(&app, submitted, Some(deliveries), lang)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    state: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PracticeList {
    practices: Vec<PracticeView>,
    limit: u32,
    offset: u32,
}

/// `GET /api/v1/practices?state=&limit=&offset=`: the holder's practices, newest change first.
pub async fn list_practices(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PracticeList>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadParameter(e.body_text()))?;
    let state = match params.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(PracticeState::parse(s).ok_or_else(|| {
            ApiError::BadParameter(format!(
                "state: `{s}` is not one of {}",
                PracticeState::ALL.map(PracticeState::as_str).join(", ")
            ))
        })?),
    };
    let number =
        |name: &str, v: Option<&str>, default: u32, max: u32| -> Result<u32, ApiError> {
            match v {
                None | Some("") => Ok(default),
                Some(v) => v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                    ApiError::BadParameter(format!("{name}: `{v}` is not a whole number from 0 to {max}"))
                }),
            }
        };
    let limit = number("limit", params.limit.as_deref(), 50, PracticeQuery::MAX_LIMIT)?.max(1);
    let offset = number("offset", params.offset.as_deref(), 0, 1_000_000)?;
    let query = PracticeQuery { state, limit, offset, scope: principal.scope_filter() };
    let practices = app.store.list(&principal.owner, &query).await?;
    let practices = practices.into_iter().map(|p| practice_view(&app, p, None, lang)).collect();
    Ok(Json(PracticeList { practices, limit, offset }))
}

#[derive(Debug, Serialize)]
pub struct Me {
    tax_code: String,
    name: String,
}

/// `GET /api/v1/me`: who the card says you are.
pub async fn me(Authenticated(holder): Authenticated) -> Json<Me> {
    Json(Me { name: holder.display_name(), tax_code: holder.tax_code.to_string() })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// New values for the fields the institution found at fault.
    #[serde(default)]
    data: PracticeData,
}

/// Sends one recipient's filing again: a failed one unchanged (no corrections allowed), a
/// rejected one with `corrections` to the fields at fault only. Shared by the API and the pages.
pub async fn resend(
    app: &AppState,
    principal: &Principal,
    id: PracticeId,
    institution: &str,
    corrections: &PracticeData,
) -> Result<(), ApiError> {
    let practice = principal.practice(app, id).await?;
    principal.check(app, &practice.service_id, practice.data.get("business.tax_code").map(String::as_str)).await?;
    let deliveries = app.store.deliveries(&principal.owner, id).await?;
    let delivery = deliveries.iter().find(|d| d.institution == institution).ok_or(ApiError::NotFound)?;
    let key = storage::DeliveryKey { practice_id: id, institution: institution.to_string() };
    let now = app.clock.now();
    match delivery.state() {
        domain::delivery::DeliveryState::Failed | domain::delivery::DeliveryState::NoNews => {
            if !corrections.is_empty() {
                let errors = corrections
                    .keys()
                    .map(|k| domain::validation::FieldError::new(k, domain::validation::Reason::NotAtFault))
                    .collect();
                return Err(ApiError::Validation {
                    errors,
                    service: service_of(app, &practice).ok().cloned().map(Box::new),
                });
            }
            app.store.resend(&principal.owner, &key, None, now).await?;
        }
        domain::delivery::DeliveryState::Rejected => {
            let at_fault = delivery.status.rejection.as_ref().map(|r| r.fields.clone()).unwrap_or_default();
            let today = domain::italian_date(now);
            let (data, payload) = prepare_correction(
                &practice,
                &app.catalog,
                institution,
                &at_fault,
                corrections,
                &delivery.payload,
                today,
            )
            .map_err(|e| match e {
                SubmitError::Invalid(errors) => ApiError::Validation {
                    errors,
                    service: app.catalog.service(&practice.service_id).cloned().map(Box::new),
                },
                SubmitError::Illegal(t) => ApiError::WrongState(t.from),
                SubmitError::UnknownService(s) => ApiError::UnknownService(s),
            })?;
            app.store.resend(&principal.owner, &key, Some((&data, &payload)), now).await?;
        }
        other => return Err(ApiError::WrongDeliveryState(other)),
    }
    tracing::info!(practice = %id, %institution, actor = %principal.actor.tax_code, "delivery sent again");
    let detail = serde_json::json!({
        "practice": id.to_string(),
        "institution": institution,
        "corrected_fields": corrections.keys().collect::<Vec<_>>(),
    });
    principal.audit(app, "resent", detail).await;
    Ok(())
}

/// `POST /api/v1/practices/{id}/deliveries/{institution}/resend`: sends one recipient's filing
/// again, and no other. A failed delivery goes again unchanged; a rejected one goes again with
/// the corrections given for the fields at fault (body `{"data": {...}}`).
pub async fn resend_delivery(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Acting(principal): Acting,
    Path((id, institution)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PracticeView>, ApiError> {
    let id = parse_id(&id)?;
    let correction: Correction = if body.is_empty() {
        Correction::default()
    } else {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::WrongShape(e.to_string()),
            _ => ApiError::MalformedJson(e.to_string()),
        })?
    };
    resend(&app, &principal, id, &institution, &correction.data).await?;
    let practice = principal.practice(&app, id).await?;
    let deliveries = app.store.deliveries(&principal.owner, id).await?;
    let mut view = practice_view(&app, practice, Some(deliveries), lang);
    view.timeline = Some(app.store.timeline(&principal.owner, id).await?);
    Ok(Json(view))
}

// ---- authorisations ------------------------------------------------------------------------

/// One recipient of a service, and whether the holder may file there.
#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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

pub async fn authorisations_for(
    app: &AppState,
    service: &Service,
    holder: &domain::identifiers::CodiceFiscale,
    lang: Lang,
) -> ServiceAuthorisations {
    let institutions: Vec<String> = service.recipients.iter().map(|r| r.institution.clone()).collect();
    let answers = match &app.authorisations {
        Some(checker) => checker.check_all(&institutions, holder.as_str()).await,
        None => institutions
            .iter()
            .map(|i| {
                let reason = "authorisations are not checked by this portal".to_string();
                (i.clone(), domain::authorisation::Authorisation::Unknown { reason })
            })
            .collect(),
    };
    let complete = ServiceReadiness::of(service, &answers.iter().cloned().collect()).complete;
    let recipients = answers
        .into_iter()
        .map(|(institution, authorisation)| {
            let allowed = authorisation.allows_any();
            let known = app.catalog.institution(&institution);
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

/// `GET /api/v1/services/{id}/authorisations`: before anything is typed, whether the holder
/// may operate online at each institution the service involves, and for which businesses.
pub async fn service_authorisations(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Authenticated(holder): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ServiceAuthorisations>, ApiError> {
    let service = app.catalog.service(&id).ok_or(ApiError::NotFound)?;
    Ok(Json(authorisations_for(&app, service, &holder.tax_code, lang).await))
}

/// Refuses a submission unless the holder may file for the practice's business at every
/// recipient (when authorisations are checked here).
async fn check_authorised(
    app: &AppState,
    holder: &domain::identifiers::CodiceFiscale,
    service_id: &str,
    business: Option<&String>,
    lang: Lang,
) -> Result<(), ApiError> {
    let (Some(checker), Some(service)) = (&app.authorisations, app.catalog.service(service_id)) else {
        return Ok(());
    };
    let institutions: Vec<String> = service.recipients.iter().map(|r| r.institution.clone()).collect();
    let answers = checker.check_all(&institutions, holder.as_str()).await;
    let missing: Vec<crate::error::InstitutionProblem> = answers
        .into_iter()
        .filter_map(|(institution, answer)| {
            let allowed = match business {
                Some(b) => answer.allows(b),
                None => answer.allows_any(),
            };
            let status = match allowed {
                Some(true) => return None,
                Some(false) => "not_authorised",
                None => "unknown",
            };
            let known = app.catalog.institution(&institution);
            Some(crate::error::InstitutionProblem {
                name: known.map(|i| i.name.get(lang).to_string()).unwrap_or_else(|| institution.clone()),
                help: known.map(|i| i.authorisation_help.get(lang).to_string()).unwrap_or_default(),
                institution,
                status,
            })
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        tracing::info!(%holder, business = ?business, refused = missing.len(), "submission refused: authorisation");
        Err(ApiError::NotAuthorised { business: business.cloned().unwrap_or_default(), institutions: missing })
    }
}

/// The digest of a practice's data: SHA-256 of its JSON with keys in order (the data is a
/// sorted map, so the same data always gives the same digest).
pub fn data_digest(data: &domain::practice::PracticeData) -> String {
    crate::sha256_hex(serde_json::to_string(data).unwrap_or_default().as_bytes())
}
