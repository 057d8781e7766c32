//! Step 1, the service and the start: whether the holder may file at each recipient, and a new
//! draft, prefilled from the chosen business's last practice.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::practice::PracticeData;

use crate::acting::Principal;

use super::shared::*;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::{Desk, DeskForm};
use crate::view::{render, Tr};
use crate::AppState;
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

/// For a holder: each recipient with the holder's authorisation there, the warning the page
/// opens with (if any), and the businesses the holder can start a practice for.
async fn holder_checks(
    app: &AppState,
    tr: &Tr<'_>,
    lang: domain::Lang,
    service: &domain::catalog::Service,
    principal: &Principal,
) -> Result<(Vec<RecipientCheck>, Option<String>, Vec<BusinessChoice>), ApiError> {
    let answers = crate::api::authorisations_for(app, service, &principal.owner, lang).await;
    let checks = answers
        .recipients
        .iter()
        .map(|r| {
            let (class, status) = authorisation_tag(tr, r.authorisation());
            let filing = service
                .recipients
                .iter()
                .find(|x| x.institution == r.institution())
                .and_then(|x| app.core.catalog.filing(x))
                .map(|f| f.title.get(lang).to_string())
                .unwrap_or_default();
            RecipientCheck {
                institution: r.institution_name().to_string(),
                filing,
                class,
                status,
                how_to_obtain: r.how_to_obtain().map(str::to_string),
            }
        })
        .collect();
    let outside = principal.delegation.as_ref().is_some_and(|d| !d.scope.services.contains(&service.id));
    let warning = match answers.complete() {
        _ if outside => Some(tr.msg("service-warning-out-of-scope")),
        Some(false) => Some(tr.msg("service-warning-missing")),
        None => Some(tr.msg("service-warning-unknown")),
        Some(true) => None,
    };
    let businesses = app::practices::known_businesses(&app.core, principal)
        .await?
        .into_iter()
        .map(|(code, name)| BusinessChoice {
            label: crate::view::business_label(Some(&name), Some(&code)),
            value: code,
        })
        .collect();
    Ok((checks, warning, businesses))
}

/// Without a card: the recipients, and nothing about authorisations.
fn anonymous_checks(app: &AppState, lang: domain::Lang, service: &domain::catalog::Service) -> Vec<RecipientCheck> {
    service
        .recipients
        .iter()
        .map(|r| RecipientCheck {
            institution: app.institution_name(&r.institution, lang),
            filing: app.core.catalog.filing(r).map(|f| f.title.get(lang).to_string()).unwrap_or_default(),
            class: "",
            status: String::new(),
            how_to_obtain: None,
        })
        .collect()
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
    let (checks, warning, businesses) = match &principal {
        Some(principal) => match holder_checks(&app, &tr, lang, service, principal).await {
            Ok(found) => found,
            Err(e) => return e.into_response(),
        },
        None => (anonymous_checks(&app, lang, service), None, Vec::new()),
    };
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

/// The start form as sent.
#[derive(Debug, serde::Deserialize)]
struct StartForm {
    #[serde(default)]
    servizio: String,
    /// The business chosen from the menu; empty for a new one.
    impresa: Option<String>,
}

/// `POST /pratiche` (form: `servizio`, `impresa`): starts a draft, prefilled for a business
/// the holder chose, and opens its task list.
pub async fn start(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let sent: StartForm = form.typed()?;
    let service = app.core.catalog.service(&sent.servizio).ok_or(ApiError::UnknownService(sent.servizio.clone()))?;
    let principal = form.principal(&app).await?;
    let data = match sent.impresa.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        Some(business) => {
            let known = app::practices::known_businesses(&app.core, &principal).await?;
            if !known.iter().any(|(code, _)| code.eq_ignore_ascii_case(business)) {
                let business: String = business.chars().filter(|c| !c.is_control()).take(20).collect();
                let message = app.translations.message(lang, "service-business-not-yours", &[("business", business)]);
                return Err(ApiError::BadParameter(message));
            }
            app::practices::prefill(&app.core, &principal, service, &business.to_uppercase()).await?
        }
        None => PracticeData::new(),
    };
    let practice = app::practices::start_draft(&app.core, &principal, &service.id, data).await?;
    Ok(see_other(&format!("/pratiche/{}/compila", practice.id)))
}
