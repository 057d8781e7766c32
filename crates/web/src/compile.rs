//! Compiling a practice in the browser ("compilazione"), and the help on every service and
//! field.
//!
//! The flow, all of it working without JavaScript:
//! 1. `GET /servizi/{id}`: the service, and before anything is typed whether the holder may
//!    file at each recipient; "start" (`POST /pratiche`) makes a draft, prefilled with the
//!    common data of the chosen business's last practice.
//! 2. `GET /pratiche/{id}/compila`: the task list: one section per group of common data, then
//!    one per recipient with fields of its own, each marked complete or not.
//! 3. `GET|POST /pratiche/{id}/sezioni/{section}`: one section's fields. Every save is a draft
//!    save: missing data is fine, an invalid value is not (an error summary at the top links
//!    to each field, the message sits beside it, and nothing is saved).
//! 4. `GET /pratiche/{id}/riepilogo`: "check your answers", then `POST /pratiche/{id}/invia`.
//!
//! The rules (what is valid, what may be sent, who may file) live in the domain and in
//! [`crate::api`]'s shared functions; this module only turns them into pages.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use domain::catalog::{FieldKind, Section, Service, ServiceField};
use domain::practice::{check_value, Practice, PracticeData, PracticeId, PracticeState};
use domain::validation::FieldError;
use domain::Lang;

use crate::acting::Principal;
use app::AppError;

use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::{Desk, DeskForm, View};
use crate::pages::{render, Tr};
use crate::AppState;

/// The HTML id of a field's input: `campo-` and the field id with dots as dashes.
pub fn input_id(field_id: &str) -> String {
    format!("campo-{}", field_id.replace('.', "-"))
}

/// One section of a service's form.
#[derive(Debug)]
pub struct FormSection<'s> {
    /// The dictionary group (`business`, `owner`, ...) or the recipient institution's id.
    pub id: String,
    pub title: String,
    pub fields: Vec<&'s ServiceField>,
}

/// The sections of a service, in the order they are compiled: common data by dictionary group
/// (in the catalog's field order), then each recipient's own fields.
pub fn sections<'s>(app: &AppState, service: &'s Service, lang: Lang) -> Vec<FormSection<'s>> {
    let mut out: Vec<FormSection<'s>> = Vec::new();
    for field in &service.fields {
        let id = match &field.section {
            Section::Common(group) | Section::Recipient(group) => group,
        };
        match out.iter_mut().find(|s| &s.id == id) {
            Some(section) => section.fields.push(field),
            None => out.push(FormSection {
                id: id.clone(),
                title: section_title(app, &field.section, lang),
                fields: vec![field],
            }),
        }
    }
    out
}

fn section_title(app: &AppState, section: &Section, lang: Lang) -> String {
    match section {
        Section::Common(group) => {
            let id = format!("section-{group}");
            if app.translations.has_message(lang, &id) {
                app.translations.message(lang, &id, &[])
            } else {
                // A group added to the catalog without a title of its own.
                app.translations.message(lang, "section-other", &[("group", group.clone())])
            }
        }
        Section::Recipient(institution) => {
            let name = app
                .core
                .catalog
                .institution(institution)
                .map_or_else(|| institution.clone(), |i| i.name.get(lang).into());
            app.translations.message(lang, "section-recipient", &[("institution", name)])
        }
    }
}

/// A field as a form shows it.
#[derive(Debug)]
pub struct FieldInput {
    pub name: String,
    pub html_id: String,
    pub label: String,
    pub hint: Option<String>,
    pub help_href: Option<String>,
    /// `text`, `textarea` or `select`.
    pub control: &'static str,
    pub inputmode: &'static str,
    /// `short` for codes and dates, else empty.
    pub width: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
    pub error: Option<String>,
    pub required: bool,
    pub max_length: usize,
}

impl FieldInput {
    pub fn new(app: &AppState, service: &Service, field: &ServiceField, value: &str, lang: Lang) -> Self {
        let spec = &field.spec;
        let (control, inputmode, width) = match &spec.kind {
            FieldKind::LongText => ("textarea", "", ""),
            FieldKind::Choice { .. } => ("select", "", ""),
            FieldKind::Cap | FieldKind::Integer { .. } => ("text", "numeric", "short"),
            FieldKind::Amount { .. } => ("text", "decimal", "short"),
            FieldKind::Email => ("text", "email", ""),
            FieldKind::Province | FieldKind::Date(_) | FieldKind::Ateco => ("text", "", "short"),
            FieldKind::PersonTaxCode { .. } | FieldKind::BusinessTaxCode | FieldKind::VatNumber => ("text", "", ""),
            FieldKind::Text => ("text", "", ""),
        };
        let mut hint = spec.hint.as_ref().map(|h| h.get(lang).to_string());
        if matches!(spec.kind, FieldKind::Date(_)) {
            let format = app.translations.message(lang, "form-date-format", &[]);
            hint = Some(hint.map_or_else(|| format.clone(), |h| format!("{h} {format}")));
        }
        Self {
            name: spec.id.clone(),
            html_id: input_id(&spec.id),
            label: spec.label.get(lang).to_string(),
            hint,
            help_href: spec
                .help
                .as_ref()
                .map(|_| format!("/aiuto/servizi/{}#aiuto-{}", service.id, input_id(&spec.id))),
            control,
            inputmode,
            width,
            value: value.to_string(),
            options: match &spec.kind {
                FieldKind::Choice { options } => {
                    options.iter().map(|o| (o.value.clone(), o.label.get(lang).to_string())).collect()
                }
                _ => Vec::new(),
            },
            error: None,
            required: spec.required,
            max_length: spec.max_length,
        }
    }

    /// `aria-describedby`: the hint and the error, when there are.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.hint.is_some() {
            ids.push(format!("{}-suggerimento", self.html_id));
        }
        if self.error.is_some() {
            ids.push(format!("{}-errore", self.html_id));
        }
        ids.join(" ")
    }
}

/// One entry of an error summary: a link to the field and what is wrong.
#[derive(Debug)]
pub struct ErrorLink {
    pub href: String,
    pub message: String,
}

fn error_message(app: &AppState, service: &Service, error: &FieldError, lang: Lang) -> String {
    let label = service.field(&error.field).map(|f| &f.spec.label);
    app.translations.reason(lang, label, &error.field, &error.reason)
}

/// Loads a practice within the principal's reach, and its service; a malformed id is a
/// missing practice.
async fn load(app: &AppState, principal: &Principal, id: &str) -> Result<(Practice, Service), ApiError> {
    let id = PracticeId::parse(id).ok_or(ApiError::NotFound)?;
    let practice = principal.practice(&app.core, id).await?;
    let service = app
        .core
        .catalog
        .service(&practice.service_id)
        .cloned()
        .ok_or_else(|| ApiError::UnknownService(practice.service_id.clone()))?;
    Ok((practice, service))
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

// ---- 1. the service and the start ---------------------------------------------------------

#[derive(Debug)]
pub struct RecipientCheck {
    institution: String,
    filing: String,
    /// `tag-ok`, `tag-missing` or `tag-unknown`.
    class: &'static str,
    status: String,
    how_to_obtain: Option<String>,
}

#[derive(Debug)]
pub struct BusinessChoice {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage<'a> {
    tr: Tr<'a>,
    id: String,
    title: String,
    summary: String,
    help: String,
    event: String,
    checks: Vec<RecipientCheck>,
    /// `None` for a visitor without a card: no start form.
    csrf: Option<String>,
    warning: Option<String>,
    businesses: Vec<BusinessChoice>,
}

async fn known_businesses(app: &AppState, principal: &Principal) -> Result<Vec<(String, String)>, ApiError> {
    Ok(app::practices::known_businesses(&app.core, principal).await?)
}

/// The tag shown beside a recipient of a service: authorised (for which businesses), not,
/// unknown now, or what applies where the institution cannot be asked.
fn authorisation_tag(tr: &Tr, answer: &domain::authorisation::Authorisation) -> (&'static str, String) {
    use domain::authorisation::{Authorisation, NotOfferedPolicy};
    let list = |grants: &[domain::authorisation::Grant]| {
        let businesses = grants.iter().map(|g| g.business.clone()).collect::<Vec<_>>().join(", ");
        tr.fmt("service-authorised-for", &[("businesses", businesses)])
    };
    match answer {
        Authorisation::Known { grants } if !grants.is_empty() => ("tag-ok", list(grants)),
        Authorisation::Known { .. } => ("tag-missing", tr.msg("service-not-authorised")),
        Authorisation::Unknown { .. } => ("tag-unknown", tr.msg("service-unknown")),
        Authorisation::NotOffered { policy: NotOfferedPolicy::OnReceipt, .. } => {
            ("tag-ok", tr.msg("service-checked-on-receipt"))
        }
        Authorisation::NotOffered { policy: NotOfferedPolicy::OwnBusinessOnly, grants } => {
            let businesses = grants.iter().map(|g| g.business.clone()).collect::<Vec<_>>().join(", ");
            ("tag-ok", tr.fmt("service-own-business-only", &[("business", businesses)]))
        }
    }
}

/// `GET /servizi/{id}`: one service, whether the holder may file at each recipient, and the
/// start form.
pub async fn service(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Result<Desk, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let Some(service) = app.core.catalog.service(&id) else { return ApiError::NotFound.into_response() };
    let principal = match &desk {
        Ok(desk) => match desk.principal(&app).await {
            Ok(p) => Some(p),
            Err(e) => return e.into_response(),
        },
        Err(_) => None,
    };
    let tr = match &principal {
        Some(p) => Tr::acting(&app.translations, lang, p),
        None => Tr::new(&app.translations, lang),
    };
    let event = app
        .core
        .catalog
        .life_events
        .iter()
        .find(|e| e.id == service.life_event)
        .map(|e| e.title.get(lang).to_string())
        .unwrap_or_default();
    let mut checks = Vec::new();
    let mut warning = None;
    let mut businesses = Vec::new();
    if let Some(principal) = &principal {
        let answers = crate::api::authorisations_for(&app, service, &principal.owner, lang).await;
        for r in &answers.recipients {
            let (class, status) = authorisation_tag(&tr, r.authorisation());
            let filing = service
                .recipients
                .iter()
                .find(|x| x.institution == r.institution())
                .and_then(|x| app.core.catalog.filing(x))
                .map(|f| f.title.get(lang).to_string())
                .unwrap_or_default();
            checks.push(RecipientCheck {
                institution: r.institution_name().to_string(),
                filing,
                class,
                status,
                how_to_obtain: r.how_to_obtain().map(str::to_string),
            });
        }
        let outside = principal.delegation.as_ref().is_some_and(|d| !d.scope.services.contains(&service.id));
        warning = match answers.complete() {
            _ if outside => Some(tr.msg("service-warning-out-of-scope")),
            Some(false) => Some(tr.msg("service-warning-missing")),
            None => Some(tr.msg("service-warning-unknown")),
            Some(true) => None,
        };
        match known_businesses(&app, principal).await {
            Ok(list) => {
                businesses = list
                    .into_iter()
                    .map(|(code, name)| BusinessChoice {
                        label: crate::pages::business_label(Some(&name), Some(&code)),
                        value: code,
                    })
                    .collect()
            }
            Err(e) => return e.into_response(),
        }
    } else {
        for r in &service.recipients {
            checks.push(RecipientCheck {
                institution: app
                    .core
                    .catalog
                    .institution(&r.institution)
                    .map_or_else(|| r.institution.clone(), |i| i.name.get(lang).to_string()),
                filing: app.core.catalog.filing(r).map(|f| f.title.get(lang).to_string()).unwrap_or_default(),
                class: "",
                status: String::new(),
                how_to_obtain: None,
            });
        }
    }
    let page = ServicePage {
        id: service.id.clone(),
        title: service.title.get(lang).to_string(),
        summary: service.summary.get(lang).to_string(),
        help: service.help.get(lang).to_string(),
        event,
        checks,
        csrf: desk.as_ref().ok().map(|d| d.csrf.clone()),
        warning,
        businesses,
        tr,
    };
    let response = render(&page, StatusCode::OK);
    match desk {
        Ok(desk) => desk.finish(response),
        Err(_) => response,
    }
}

/// The common data of the business's last practice that `service` uses and that is still
/// valid today. Dates tied to the event (a start or change date, bounded around today)
/// belong to that practice alone and are not carried over.
async fn prefill(
    app: &AppState,
    principal: &Principal,
    service: &Service,
    business: &str,
) -> Result<PracticeData, ApiError> {
    let search = storage::PracticeSearch {
        text: Some(business.to_string()),
        limit: 20,
        descending: true,
        scope: principal.scope_filter(),
        ..Default::default()
    };
    let found = app.core.store.search(&principal.owner, &search).await?;
    let last = found
        .practices
        .into_iter()
        .find(|p| p.data.get("business.tax_code").is_some_and(|c| c.trim().eq_ignore_ascii_case(business)));
    let mut data = PracticeData::new();
    data.insert("business.tax_code".into(), business.to_string());
    let today = domain::italian_date(app.core.clock.now());
    if let Some(last) = last {
        for field in service.fields.iter().filter(|f| matches!(f.section, Section::Common(_))) {
            let event_date = matches!(&field.spec.kind, FieldKind::Date(rule)
                if rule.min_days_from_today.is_some() || rule.max_days_from_today.is_some());
            if event_date {
                continue;
            }
            if let Some(value) = last.data.get(&field.spec.id).filter(|v| !v.trim().is_empty()) {
                if check_value(&field.spec, value, today).is_ok() {
                    data.insert(field.spec.id.clone(), value.clone());
                }
            }
        }
    }
    // Only what the service asks for.
    data.retain(|k, _| service.field(k).is_some());
    Ok(data)
}

/// `POST /pratiche` (form: `servizio`, `impresa`): starts a draft, prefilled for a business
/// the holder chose, and opens its task list.
pub async fn start(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let service_id = form.get("servizio").unwrap_or_default().to_string();
    let service = app.core.catalog.service(&service_id).ok_or(ApiError::UnknownService(service_id.clone()))?;
    let principal = form.principal(&app).await?;
    let data = match form.get("impresa").map(str::trim).filter(|b| !b.is_empty()) {
        Some(business) => {
            let known = known_businesses(&app, &principal).await?;
            if !known.iter().any(|(code, _)| code.eq_ignore_ascii_case(business)) {
                let business: String = business.chars().filter(|c| !c.is_control()).take(20).collect();
                let message = app.translations.message(lang, "service-business-not-yours", &[("business", business)]);
                return Err(ApiError::BadParameter(message));
            }
            prefill(&app, &principal, service, &business.to_uppercase()).await?
        }
        None => PracticeData::new(),
    };
    let practice = app::practices::start_draft(&app.core, &principal, &service.id, data).await?;
    Ok(see_other(&format!("/pratiche/{}/compila", practice.id)))
}

// ---- 2. the task list ---------------------------------------------------------------------

#[derive(Debug)]
pub struct Task {
    title: String,
    href: String,
    done: bool,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage<'a> {
    tr: Tr<'a>,
    service: String,
    help_href: String,
    reference: Option<String>,
    tasks: Vec<Task>,
    review_href: String,
    ready: bool,
    saved: bool,
    needs_resend: bool,
}

#[derive(Debug, serde::Deserialize)]
pub struct TasksQuery {
    salvata: Option<String>,
}

/// `GET /pratiche/{id}/compila`: the task list of a draft.
pub async fn tasks(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path(id): Path<String>,
    query: Result<Query<TasksQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    if practice.state != PracticeState::Draft {
        return Ok(see_other(&format!("/pratiche/{}", practice.id)));
    }
    let problems = crate::api::draft_problems(&app, &practice, lang);
    let tasks: Vec<Task> = sections(&app, &service, lang)
        .into_iter()
        .map(|s| Task {
            done: !s.fields.iter().any(|f| problems.iter().any(|p| p.field() == f.spec.id)),
            href: format!("/pratiche/{}/sezioni/{}", practice.id, s.id),
            title: s.title,
        })
        .collect();
    let page = TasksPage {
        tr: Tr::acting(&app.translations, lang, &principal),
        service: service.title.get(lang).to_string(),
        help_href: format!("/aiuto/servizi/{}", service.id),
        reference: practice.reference.as_ref().map(ToString::to_string),
        ready: tasks.iter().all(|t| t.done),
        tasks,
        review_href: format!("/pratiche/{}/riepilogo", practice.id),
        saved: query.is_ok_and(|q| q.0.salvata.is_some()),
        needs_resend: practice.needs_resend,
    };
    Ok(desk.finish(render(&page, StatusCode::OK)))
}

// ---- 3. one section -----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "section.html")]
struct SectionPage<'a> {
    tr: Tr<'a>,
    service: String,
    title: String,
    step: String,
    action: String,
    tasks_href: String,
    csrf: String,
    errors: Vec<ErrorLink>,
    fields: Vec<FieldInput>,
    /// "Saved at {time}", the time filled in by the script.
    saved_text: String,
}

#[derive(Debug, serde::Deserialize)]
pub struct SectionQuery {
    controlla: Option<String>,
}

fn section_page(
    view: View<'_>,
    practice: &Practice,
    service: &Service,
    section_id: &str,
    values: &BTreeMap<String, String>,
    errors: &[FieldError],
    saving: bool,
) -> Result<Response, ApiError> {
    let View { app, desk, principal, lang } = view;
    let all = sections(app, service, lang);
    let position = all.iter().position(|s| s.id == section_id).ok_or(ApiError::NotFound)?;
    let section = &all[position];
    let tr = Tr::acting(&app.translations, lang, principal);
    let mut links = Vec::new();
    let fields = section
        .fields
        .iter()
        .map(|f| {
            let mut input = FieldInput::new(app, service, f, values.get(&f.spec.id).map_or("", String::as_str), lang);
            if let Some(error) = errors.iter().find(|e| e.field == f.spec.id) {
                let message = error_message(app, service, error, lang);
                links.push(ErrorLink { href: format!("#{}", input.html_id), message: message.clone() });
                input.error = Some(message);
            }
            input
        })
        .collect();
    // Errors about fields of other sections (a cross-field rule) are listed too.
    for error in errors.iter().filter(|e| !section.fields.iter().any(|f| f.spec.id == e.field)) {
        links.push(ErrorLink {
            href: format!("/pratiche/{}/riepilogo", practice.id),
            message: error_message(app, service, error, lang),
        });
    }
    let page = SectionPage {
        service: service.title.get(lang).to_string(),
        title: section.title.clone(),
        saved_text: tr.fmt("form-autosaved", &[("time", "{time}".to_string())]),
        step: tr.fmt("form-step", &[("n", (position + 1).to_string()), ("total", all.len().to_string())]),
        action: format!("/pratiche/{}/sezioni/{}", practice.id, section.id),
        tasks_href: format!("/pratiche/{}/compila", practice.id),
        csrf: desk.csrf.clone(),
        errors: links,
        fields,
        tr,
    };
    let status = if errors.is_empty() || !saving { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(desk.finish(render(&page, status)))
}

/// `GET /pratiche/{id}/sezioni/{section}`: one section's fields, with the values saved; with
/// `?controlla=1`, what is still wrong or missing in it.
pub async fn section(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path((id, section_id)): Path<(String, String)>,
    query: Result<Query<SectionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    if practice.state != PracticeState::Draft {
        return Ok(see_other(&format!("/pratiche/{}", practice.id)));
    }
    let errors = if query.is_ok_and(|q| q.0.controlla.is_some()) {
        let today = domain::italian_date(app.core.clock.now());
        domain::practice::validate_data(&service, &practice.data, today).err().unwrap_or_default()
    } else {
        Vec::new()
    };
    let view = View { app: &app, desk: &desk, principal: &principal, lang };
    section_page(view, &practice, &service, &section_id, &practice.data, &errors, false)
}

/// `POST /pratiche/{id}/sezioni/{section}` (the section's fields and `azione`: `continua`,
/// `bozza`, or `autosalva` from the enhancing script): saves the draft if no value is invalid.
pub async fn save_section(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path((id, section_id)): Path<(String, String)>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let desk = Desk::from_form(&form);
    let principal = form.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    let all = sections(&app, &service, lang);
    let position = all.iter().position(|s| s.id == section_id).ok_or(ApiError::NotFound)?;
    let mut data = practice.data.clone();
    for field in &all[position].fields {
        match form.get(&field.spec.id).map(str::trim) {
            Some(value) if !value.is_empty() => {
                data.insert(field.spec.id.clone(), value.to_string());
            }
            _ => {
                data.remove(&field.spec.id);
            }
        }
    }
    let action = form.get("azione").unwrap_or("continua");
    match app::practices::save_draft(&app.core, &principal, practice.id, &data).await {
        Ok(_) => {}
        Err(AppError::Validation { errors, .. }) if action == "autosalva" => {
            tracing::debug!(practice = %practice.id, errors = errors.len(), "autosave skipped: invalid values");
            return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
        }
        Err(AppError::Validation { errors, .. }) => {
            let view = View { app: &app, desk: &desk, principal: &principal, lang };
            return section_page(view, &practice, &service, &section_id, &data, &errors, true);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(match action {
        "autosalva" => StatusCode::NO_CONTENT.into_response(),
        "bozza" => see_other(&format!("/pratiche/{}/compila?salvata=1", practice.id)),
        _ => match all.get(position + 1) {
            Some(next) => see_other(&format!("/pratiche/{}/sezioni/{}", practice.id, next.id)),
            None => see_other(&format!("/pratiche/{}/riepilogo", practice.id)),
        },
    })
}

// ---- 4. check your answers and send -------------------------------------------------------

#[derive(Debug)]
pub struct AnswerRow {
    label: String,
    value: String,
    change_href: String,
}

#[derive(Debug)]
pub struct AnswerGroup {
    title: String,
    rows: Vec<AnswerRow>,
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage<'a> {
    tr: Tr<'a>,
    service: String,
    action: String,
    tasks_href: String,
    csrf: String,
    errors: Vec<ErrorLink>,
    refusal: Vec<String>,
    groups: Vec<AnswerGroup>,
    needs_resend: bool,
    /// Each recipient institution, with the office competent for this practice.
    destinations: Vec<String>,
}

/// Where each filing of `service` goes with `data`: the institution and, when it routes by
/// territory, its competent office.
pub fn destinations(
    app: &AppState,
    service: &Service,
    data: &domain::practice::PracticeData,
    lang: Lang,
) -> Vec<String> {
    service
        .recipients
        .iter()
        .map(|r| {
            let name = app.institution_name(&r.institution, lang);
            let office = r
                .routing
                .as_ref()
                .and_then(|(routing, _)| routing.key_in(data).and_then(|(_, v)| routing.office_for(v)));
            match office {
                Some(o) => format!("{name}: {}", o.name.get(lang)),
                None => name,
            }
        })
        .collect()
}

/// The value as the user reads it: a choice by its label, a missing one as such.
fn shown_value(field: &ServiceField, value: Option<&String>, lang: Lang, tr: &Tr) -> String {
    match (value, &field.spec.kind) {
        (None, _) => tr.msg("review-missing"),
        (Some(v), FieldKind::Choice { options }) => {
            options.iter().find(|o| o.value == *v).map_or_else(|| v.clone(), |o| o.label.get(lang).to_string())
        }
        (Some(v), _) => v.clone(),
    }
}

fn review_page(
    view: View<'_>,
    practice: &Practice,
    service: &Service,
    errors: &[FieldError],
    refusal: Vec<String>,
    sent: bool,
) -> Response {
    let View { app, desk, principal, lang } = view;
    let tr = Tr::acting(&app.translations, lang, principal);
    let all = sections(app, service, lang);
    let section_of = |field: &str| all.iter().find(|s| s.fields.iter().any(|f| f.spec.id == field)).map(|s| &s.id);
    let links = errors
        .iter()
        .map(|e| ErrorLink {
            href: section_of(&e.field).map_or_else(
                || format!("/pratiche/{}/compila", practice.id),
                |s| format!("/pratiche/{}/sezioni/{s}?controlla=1#{}", practice.id, input_id(&e.field)),
            ),
            message: error_message(app, service, e, lang),
        })
        .collect();
    let groups = all
        .iter()
        .map(|s| AnswerGroup {
            title: s.title.clone(),
            rows: s
                .fields
                .iter()
                .map(|f| AnswerRow {
                    label: f.spec.label.get(lang).to_string(),
                    value: shown_value(f, practice.data.get(&f.spec.id), lang, &tr),
                    change_href: format!("/pratiche/{}/sezioni/{}#{}", practice.id, s.id, input_id(&f.spec.id)),
                })
                .collect(),
        })
        .collect();
    let page = ReviewPage {
        service: service.title.get(lang).to_string(),
        action: format!("/pratiche/{}/invia", practice.id),
        tasks_href: format!("/pratiche/{}/compila", practice.id),
        csrf: desk.csrf.clone(),
        errors: links,
        refusal,
        groups,
        needs_resend: practice.needs_resend,
        destinations: destinations(app, service, &practice.data, lang),
        tr,
    };
    // Looking at what is still missing is not an error; a refused send is.
    let status = if page.refusal.is_empty() && (page.errors.is_empty() || !sent) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    desk.finish(render(&page, status))
}

/// `GET /pratiche/{id}/riepilogo`: every answer with a link to change it, what still stops the
/// sending, and the send button.
pub async fn review(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let principal = desk.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    if practice.state != PracticeState::Draft {
        return Ok(see_other(&format!("/pratiche/{}", practice.id)));
    }
    let today = domain::italian_date(app.core.clock.now());
    let errors = domain::practice::validate_data(&service, &practice.data, today).err().unwrap_or_default();
    let view = View { app: &app, desk: &desk, principal: &principal, lang };
    Ok(review_page(view, &practice, &service, &errors, Vec::new(), false))
}

/// `POST /pratiche/{id}/invia`: sends the practice; its page then follows each recipient.
pub async fn send(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path(id): Path<String>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let desk = Desk::from_form(&form);
    let principal = form.principal(&app).await?;
    let (practice, service) = load(&app, &principal, &id).await?;
    let view = View { app: &app, desk: &desk, principal: &principal, lang };
    match app::practices::submit(&app.core, &principal, practice.id).await {
        Ok((submitted, _)) => Ok(see_other(&format!("/pratiche/{}?inviata=1", submitted.id))),
        // Sent meanwhile (a second click on "Invia"): its page says where it stands.
        Err(AppError::WrongState(PracticeState::InProgress | PracticeState::Completed)) => {
            Ok(see_other(&format!("/pratiche/{}", practice.id)))
        }
        Err(AppError::Validation { errors, .. }) => {
            Ok(review_page(view, &practice, &service, &errors, Vec::new(), true))
        }
        Err(AppError::NotAuthorised { business, institutions }) => {
            let tr = Tr::new(&app.translations, lang);
            let refusal = institutions
                .iter()
                .map(|i| {
                    let id = if i.status == "unknown" { "review-refused-unknown" } else { "review-refused-missing" };
                    tr.fmt(
                        id,
                        &[
                            ("institution", i.name.get(lang).to_string()),
                            ("business", business.clone()),
                            ("help", i.help.get(lang).to_string()),
                        ],
                    )
                })
                .collect();
            Ok(review_page(view, &practice, &service, &[], refusal, true))
        }
        Err(e) => Err(e.into()),
    }
}

// ---- help ---------------------------------------------------------------------------------

#[derive(Debug)]
pub struct FieldHelp {
    anchor: String,
    label: String,
    hint: Option<String>,
    help: Option<String>,
}

#[derive(Debug)]
pub struct HelpSection {
    title: String,
    fields: Vec<FieldHelp>,
}

#[derive(Template)]
#[template(path = "help.html")]
struct HelpPage<'a> {
    tr: Tr<'a>,
    id: String,
    title: String,
    summary: String,
    help: String,
    recipients: Vec<String>,
    sections: Vec<HelpSection>,
}

/// `GET /aiuto/servizi/{id}`: the help on a service and on each of its fields, from the
/// catalog; each field's entry is the target of the form's "help on this field" link.
pub async fn help(State(app): State<AppState>, UserLang(lang): UserLang, Path(id): Path<String>) -> Response {
    let Some(service) = app.core.catalog.service(&id) else { return ApiError::NotFound.into_response() };
    let sections = sections(&app, service, lang)
        .into_iter()
        .map(|s| HelpSection {
            title: s.title,
            fields: s
                .fields
                .iter()
                .map(|f| FieldHelp {
                    anchor: format!("aiuto-{}", input_id(&f.spec.id)),
                    label: f.spec.label.get(lang).to_string(),
                    hint: f.spec.hint.as_ref().map(|h| h.get(lang).to_string()),
                    help: f.spec.help.as_ref().map(|h| h.get(lang).to_string()),
                })
                .collect(),
        })
        .collect();
    let recipients = service
        .recipients
        .iter()
        .map(|r| {
            let name = app.institution_name(&r.institution, lang);
            let filing = app.core.catalog.filing(r).map(|f| f.title.get(lang).to_string()).unwrap_or_default();
            format!("{name}: {filing}")
        })
        .collect();
    let page = HelpPage {
        tr: Tr::new(&app.translations, lang),
        id: service.id.clone(),
        title: service.title.get(lang).to_string(),
        summary: service.summary.get(lang).to_string(),
        help: service.help.get(lang).to_string(),
        recipients,
        sections,
    };
    render(&page, StatusCode::OK)
}
