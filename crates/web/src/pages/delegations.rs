//! The pages of sub-delegation ("subdeleghe"): grant, the list of sub-delegates with each
//! institution's outcome, revoke, renounce, act on behalf of a grantor, and the acts done on
//! the grantor's behalf (from the audit trail).
//!
//! - `GET /deleghe`: delegations granted (with per institution: pending, active with the
//!   institution's reference, refused with the reason, revoked, expired) and received;
//! - `GET /deleghe/nuova`, `POST /deleghe`: grant, checked by
//!   [`domain::delegation::check_grant`] against the grantor's own authorisations as the
//!   institutions give them (so nothing held by delegation can be handed on); a holder acting
//!   on behalf of someone cannot grant at all;
//! - `POST /deleghe/{id}/revoca` (grantor), `POST /deleghe/{id}/rinuncia` (collaborator): end it
//!   now; the institutions are told through the delivery channels;
//! - `POST /deleghe/{id}/usa`, `POST /deleghe/smetti`: act on behalf of the grantor, or stop
//!   (the `__Host-sportello-delega` cookie, re-checked on every request: see [`crate::acting`]);
//! - `GET /deleghe/attivita`: what was done on the holder's behalf.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use domain::delegation::{Delegation, GrantError, GrantRequest, InstitutionState, Scope};
use domain::text::Text;
use domain::Lang;

use crate::acting::{Selector, ACTING_COOKIE};
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::{Desk, DeskForm};
use crate::pages::compile::ErrorLink;
use crate::view::{render, Tr};
use crate::AppState;

fn day(t: time::OffsetDateTime) -> String {
    domain::identifiers::display_date(domain::italian_date(t))
}

#[derive(Debug)]
pub struct Outcome {
    institution: String,
    /// pending, active, refused, revoked, expired
    state: String,
    class: &'static str,
    detail: String,
}

#[derive(Debug)]
pub struct DelegationRow {
    id: String,
    other: String,
    businesses: String,
    services: String,
    validity: String,
    standing: String,
    note: String,
    outcomes: Vec<Outcome>,
    /// Whether it can still be ended (revoke / renounce).
    open: bool,
    /// Whether it can be used now (valid today).
    usable: bool,
    in_use: bool,
}

/// The collaborator by name beside the code, when the grantor gave the name.
fn delegate_label(d: &Delegation) -> String {
    crate::view::business_label(Some(d.delegate_name.as_str()), Some(d.delegate.as_str()))
}

fn row(app: &AppState, d: &Delegation, other: String, lang: Lang, in_use: bool) -> DelegationRow {
    let now = app.core.clock.now();
    let tr = Tr::new(&app.translations, lang);
    let outcomes = d
        .scope
        .institutions
        .iter()
        .map(|i| {
            let state = d.state_at(i, now);
            let detail = match d.institutions.get(i) {
                Some(InstitutionState::Active { reference })
                    if state == "active" && reference.starts_with(delivery::client::PORTAL_RECORD_PREFIX) =>
                {
                    tr.msg("delegation-portal-record")
                }
                Some(InstitutionState::Active { reference }) if state == "active" => {
                    tr.fmt("delegation-reference", &[("reference", reference.clone())])
                }
                Some(InstitutionState::Refused { reason }) => reason.clone(),
                _ => String::new(),
            };
            Outcome {
                institution: app.institution_name(i, lang),
                class: match state {
                    "active" => "tag-ok",
                    "pending" | "revoking" => "tag-unknown",
                    _ => "tag-missing",
                },
                state: tr.msg(&format!("delegation-state-{state}")),
                detail,
            }
        })
        .collect();
    let standing = d.standing(now);
    DelegationRow {
        id: d.id.to_string(),
        other,
        businesses: d.scope.businesses.iter().cloned().collect::<Vec<_>>().join(", "),
        services: d.scope.services.iter().map(|s| app.core.service_title(s, lang)).collect::<Vec<_>>().join(", "),
        validity: tr.fmt(
            "delegation-validity",
            &[("from", day(d.valid_from)), ("until", day(d.valid_until - time::Duration::seconds(1)))],
        ),
        standing: tr.msg(&format!("delegation-standing-{}", standing.as_str().replace('_', "-"))),
        note: d.note.clone(),
        outcomes,
        open: matches!(standing, domain::delegation::Standing::Valid | domain::delegation::Standing::NotYetValid),
        usable: standing == domain::delegation::Standing::Valid,
        in_use,
    }
}

#[derive(Template)]
#[template(path = "delegations.html")]
struct DelegationsPage<'a> {
    tr: Tr<'a>,
    csrf: String,
    notice: Option<String>,
    granted: Vec<DelegationRow>,
    received: Vec<DelegationRow>,
    acting: bool,
}

#[derive(Debug, serde::Deserialize)]
pub struct Notice {
    esito: Option<String>,
}

/// `GET /deleghe`: the delegations the holder granted and received.
pub async fn list(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    headers: axum::http::HeaderMap,
    query: Result<Query<Notice>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (granted, received) = app::delegations::granted_and_received(&app.core, &desk.holder).await?;
    let in_use = crate::acting::selector(&headers).map(|s| s.id().to_string());
    let tr = Tr::new(&app.translations, lang);
    let notice = query
        .ok()
        .and_then(|q| q.0.esito)
        .filter(|e| ["concessa", "revocata", "rinunciata", "in-uso", "terminato"].contains(&e.as_str()))
        .map(|e| tr.msg(&format!("delegation-notice-{e}")));
    let page = DelegationsPage {
        csrf: desk.csrf.clone(),
        notice,
        granted: granted.iter().map(|d| row(&app, d, delegate_label(d), lang, false)).collect(),
        received: received
            .iter()
            .map(|d| {
                let holds = d.standing(app.core.clock.now()) == domain::delegation::Standing::Valid;
                row(&app, d, d.grantor.to_string(), lang, holds && in_use.as_deref() == Some(&d.id.to_string()))
            })
            .collect(),
        acting: in_use.is_some(),
        tr,
    };
    Ok(desk.finish(render(&page, StatusCode::OK)))
}

#[derive(Debug)]
pub struct Checkbox {
    value: String,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "delegation_new.html")]
struct NewPage<'a> {
    tr: Tr<'a>,
    csrf: String,
    errors: Vec<ErrorLink>,
    /// Why the holder cannot grant at all (acting on behalf of someone, or no authorisation).
    blocked: Option<String>,
    delegate_name: String,
    delegate: String,
    institutions: Vec<Checkbox>,
    businesses: Vec<Checkbox>,
    services: Vec<Checkbox>,
    from: String,
    until: String,
    note: String,
    max_days: i64,
    date_hint: String,
}

/// What the form had, to show it again.
/// The grant form as sent (`ente`, `impresa`, `servizio` repeat).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct GrantForm {
    nome: String,
    delegato: String,
    ente: Vec<String>,
    impresa: Vec<String>,
    servizio: Vec<String>,
    dal: String,
    al: String,
    nota: String,
}

#[derive(Debug, Default)]
struct Typed {
    delegate_name: String,
    delegate: String,
    institutions: BTreeSet<String>,
    businesses: BTreeSet<String>,
    services: BTreeSet<String>,
    from: String,
    until: String,
    note: String,
}

fn new_page(
    app: &AppState,
    desk: &Desk,
    lang: Lang,
    own: &Own,
    typed: &Typed,
    errors: Vec<ErrorLink>,
    blocked: Option<String>,
) -> Response {
    let tr = Tr::new(&app.translations, lang);
    let institutions = app
        .core
        .catalog
        .institutions
        .iter()
        .filter(|i| own.answers.get(&i.id).and_then(domain::authorisation::Authorisation::allows_any) == Some(true))
        .map(|i| Checkbox {
            value: i.id.clone(),
            label: i.name.get(lang).to_string(),
            checked: typed.institutions.contains(&i.id),
        })
        .collect();
    let mut codes = BTreeSet::new();
    for answer in own.answers.values() {
        codes.extend(answer.grants().iter().map(|g| g.business.trim().to_uppercase()));
    }
    let businesses = codes
        .into_iter()
        .map(|c| Checkbox {
            checked: typed.businesses.contains(&c),
            label: crate::view::business_label(own.names.get(&c).map(String::as_str), Some(&c)),
            value: c,
        })
        .collect();
    let services = app
        .core
        .catalog
        .services
        .iter()
        .map(|s| Checkbox {
            value: s.id.clone(),
            label: s.title.get(lang).to_string(),
            checked: typed.services.contains(&s.id),
        })
        .collect();
    let status = if errors.is_empty() && blocked.is_none() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    // The summary lists the errors in the order of the fields on the page.
    let mut errors = errors;
    errors.sort_by_key(|e| FIELD_ORDER.iter().position(|a| *a == e.href).unwrap_or(FIELD_ORDER.len()));
    let page = NewPage {
        csrf: desk.csrf.clone(),
        errors,
        blocked,
        delegate_name: typed.delegate_name.clone(),
        delegate: typed.delegate.clone(),
        institutions,
        businesses,
        services,
        // An ISO date typed is understood, and shown back as Italians write it.
        from: domain::identifiers::display_date_value(&typed.from),
        until: domain::identifiers::display_date_value(&typed.until),
        note: typed.note.clone(),
        max_days: app.core.delegation_policy.max_days,
        date_hint: tr.date_hint(app.core.today()),
        tr,
    };
    desk.finish(render(&page, status))
}

/// What the grant form offers: the grantor's own authorisations at every institution, as the
/// institutions give them, and the names of the businesses from the practices sent.
struct Own {
    answers: BTreeMap<String, domain::authorisation::Authorisation>,
    names: BTreeMap<String, String>,
}

async fn own_answers(app: &AppState, holder: &identity::Holder) -> Own {
    let answers = app::authorisations::of_holder(&app.core, &holder.tax_code).await.unwrap_or_default();
    let own = crate::acting::Principal::own(holder.clone());
    let names = app::practices::known_businesses(&app.core, &own)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, name)| !name.trim().is_empty())
        .collect();
    Own { answers, names }
}

/// A holder acting on behalf of someone cannot grant: what one holds by delegation is not
/// one's own to hand on. (A delegation that no longer holds blocks too: it is refused.)
async fn acting_blocks(
    app: &AppState,
    lang: Lang,
    holder: &identity::Holder,
    selector: Option<&Selector>,
) -> Option<String> {
    match crate::acting::Principal::resolve(&app.core, holder.clone(), selector).await {
        Ok(p) if p.delegation.is_none() => None,
        _ => Some(app.translations.message(lang, "delegation-no-redelegation", &[])),
    }
}

/// `GET /deleghe/nuova`: the grant form.
pub async fn new(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    headers: axum::http::HeaderMap,
) -> Response {
    let answers = own_answers(&app, &desk.holder).await;
    let today = app.core.today();
    let typed = Typed { from: domain::identifiers::display_date(today), ..Typed::default() };
    let blocked = acting_blocks(&app, lang, &desk.holder, crate::acting::selector(&headers).as_ref()).await;
    new_page(&app, &desk, lang, &answers, &typed, Vec::new(), blocked)
}

/// A refusal of the grant, linked to the form's field it is about.
/// The grant form's fields, as the page shows them.
const FIELD_ORDER: [&str; 8] = [
    "#delega-nome",
    "#delega-delegato",
    "#delega-enti",
    "#delega-imprese",
    "#delega-servizi",
    "#delega-dal",
    "#delega-al",
    "#delega-nota",
];

impl NewPage<'_> {
    /// The messages about the field at `anchor`, shown beside it.
    fn error_at(&self, anchor: &str) -> Option<String> {
        let messages: Vec<&str> = self.errors.iter().filter(|e| e.href == anchor).map(|e| e.message.as_str()).collect();
        (!messages.is_empty()).then(|| messages.join(" "))
    }
}

fn grant_error(app: &AppState, lang: Lang, e: &GrantError, names: &BTreeMap<String, Text>) -> ErrorLink {
    let (field, message) = crate::error::grant_problem(&app.translations, lang, e, names);
    let href = match field {
        "delegate" => "#delega-delegato",
        "delegate_name" => "#delega-nome",
        "institutions" => "#delega-enti",
        "businesses" => "#delega-imprese",
        "services" => "#delega-servizi",
        "valid_from" => "#delega-dal",
        "valid_until" => "#delega-al",
        _ => "#delega-nota",
    };
    ErrorLink { href: href.to_string(), message }
}

/// `POST /deleghe`: grants a sub-delegation.
pub async fn grant(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let desk = Desk::from_form(&form);
    let sent: GrantForm = form.typed()?;
    let typed = Typed {
        delegate_name: sent.nome.trim().to_string(),
        delegate: sent.delegato.trim().to_uppercase(),
        institutions: sent.ente.into_iter().collect(),
        businesses: sent.impresa.iter().map(|b| b.trim().to_uppercase()).collect(),
        services: sent.servizio.into_iter().collect(),
        from: sent.dal.trim().to_string(),
        until: sent.al.trim().to_string(),
        note: sent.nota.trim().to_string(),
    };
    let answers = own_answers(&app, &form.holder).await;
    // Only on one's own account (a delegation that no longer holds blocks too).
    let principal = match form.principal(&app).await {
        Ok(principal) => app::delegations::may_grant(&app.core, &principal).await.ok().map(|()| principal),
        Err(_) => None,
    };
    let Some(principal) = principal else {
        let blocked = app.translations.message(lang, "delegation-no-redelegation", &[]);
        return Ok(new_page(&app, &desk, lang, &answers, &typed, Vec::new(), Some(blocked)));
    };
    let mut errors = Vec::new();
    // A date left empty is asked for; one that cannot be read is named as such.
    let parse = |value: &str, anchor: &str, which: &str, errors: &mut Vec<ErrorLink>| {
        let id = match domain::identifiers::parse_date(value) {
            Ok(d) => return Some(d),
            Err(_) if value.is_empty() => format!("delegation-error-{which}-required"),
            Err(_) => format!("delegation-error-{which}-format"),
        };
        errors.push(ErrorLink { href: anchor.to_string(), message: app.translations.message(lang, &id, &[]) });
        None
    };
    // The desk asks for the collaborator's name, so that every page can show it.
    if typed.delegate_name.is_empty() {
        let message = app.translations.message(lang, "delegation-error-name-missing", &[]);
        errors.push(ErrorLink { href: "#delega-nome".into(), message });
    }
    let from = parse(&typed.from, "#delega-dal", "from", &mut errors);
    let until = parse(&typed.until, "#delega-al", "until", &mut errors);
    let today = app.core.today();
    let request = GrantRequest {
        delegate: typed.delegate.clone(),
        delegate_name: typed.delegate_name.clone(),
        scope: Scope {
            institutions: typed.institutions.clone(),
            businesses: typed.businesses.clone(),
            services: typed.services.clone(),
        },
        // Dates that cannot be read are reported above; the other choices are checked all
        // the same, so every mistake shows at once.
        valid_from: from.unwrap_or(today),
        valid_to: until.unwrap_or(today),
        note: typed.note.clone(),
    };
    let outcome = if from.is_none() || until.is_none() {
        app::delegations::check(&app.core, &form.holder, &request).await.map(|()| None)
    } else {
        app::delegations::grant(&app.core, &principal, request).await.map(Some)
    };
    match outcome {
        Ok(Some(_)) => return Ok(Redirect::to("/deleghe?esito=concessa").into_response()),
        Ok(None) => {}
        Err(app::AppError::GrantRefused { errors: refused, names }) => {
            errors.extend(refused.iter().map(|e| grant_error(&app, lang, e, &names)));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(new_page(&app, &desk, lang, &answers, &typed, errors, None))
}

fn acting_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    crate::cookies::set(ACTING_COOKIE, value, crate::cookies::Kind::Credential, max_age)
}

/// `POST /deleghe/{id}/revoca`: the grantor ends a delegation now, after confirming it
/// (`conferma=si`; without it, the page that asks).
pub async fn revoke(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    Path(id): Path<String>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    // Revoking cannot be undone: the first press asks, the confirmation revokes.
    if form.get("conferma") != Some(CONFIRMED) {
        let d = app::delegations::granted(&app.core, &form.holder, &id).await?;
        let desk = Desk::from_form(&form);
        let tr = Tr::new(&app.translations, lang);
        let page = RevokePage {
            action: format!("/deleghe/{}/revoca", d.id),
            csrf: desk.csrf.clone(),
            delegate: delegate_label(&d),
            confirmed: CONFIRMED,
            tr,
        };
        return Ok(desk.finish(render(&page, StatusCode::OK)));
    }
    app::delegations::revoke(&app.core, &form.holder, &id).await?;
    Ok(Redirect::to("/deleghe?esito=revocata").into_response())
}

/// The value of the revocation's confirmation.
const CONFIRMED: &str = "si";

#[derive(Template)]
#[template(path = "delegation_revoke.html")]
struct RevokePage<'a> {
    tr: Tr<'a>,
    action: String,
    csrf: String,
    delegate: String,
    confirmed: &'static str,
}

/// `POST /deleghe/{id}/rinuncia`: the collaborator gives a delegation up.
pub async fn renounce(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    app::delegations::renounce(&app.core, &form.holder, &id).await?;
    let mut response = Redirect::to("/deleghe?esito=rinunciata").into_response();
    if let Some(cookie) = acting_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /deleghe/{id}/usa`: act on behalf of the grantor from now on (until stopped).
pub async fn use_delegation(
    State(app): State<AppState>,
    Path(id): Path<String>,
    form: DeskForm,
) -> Result<Response, ApiError> {
    let principal = app::delegations::start_acting(&app.core, form.holder.clone(), &id).await?;
    let d = principal.delegation.ok_or(ApiError::Internal)?;
    let mut response = Redirect::to("/").into_response();
    let max_age = app.sessions.absolute.as_secs();
    if let Some(cookie) = acting_cookie(&d.id.to_string(), max_age) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /deleghe/smetti`: act for oneself again.
pub async fn stop_using(form: DeskForm) -> Result<Response, ApiError> {
    let _ = form;
    let mut response = Redirect::to("/deleghe?esito=terminato").into_response();
    if let Some(cookie) = acting_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(Debug)]
pub struct ActRow {
    at: String,
    actor: String,
    action: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "delegation_activity.html")]
struct ActivityPage<'a> {
    tr: Tr<'a>,
    rows: Vec<ActRow>,
}

/// `GET /deleghe/attivita`: the acts the holder answers for, newest first, marking those done
/// by collaborators.
pub async fn activity(State(app): State<AppState>, UserLang(lang): UserLang, desk: Desk) -> Result<Response, ApiError> {
    let records = app::delegations::activity(&app.core, &desk.holder, crate::api::delegations::ACTIVITY_LIMIT).await?;
    let tr = Tr::new(&app.translations, lang);
    // Practices by their reference number and business, never by internal id.
    let mut practices: BTreeMap<String, String> = BTreeMap::new();
    for id in records.iter().filter_map(|r| r.detail.get("practice").and_then(|v| v.as_str())) {
        if practices.contains_key(id) {
            continue;
        }
        let Some(parsed) = domain::practice::PracticeId::parse(id) else { continue };
        if let Ok(p) = app.core.store.practice(&desk.holder.tax_code, parsed).await {
            let reference = p.reference.as_ref().map_or_else(|| tr.msg("practices-no-reference"), ToString::to_string);
            let business = crate::view::practice_business(&p.data);
            let shown = if business.is_empty() { reference } else { format!("{reference}, {business}") };
            practices.insert(id.to_string(), shown);
        }
    }
    let rows = records
        .into_iter()
        .map(|r| {
            let at = domain::italian_display(r.at);
            // Every act listed is one the holder answers for: done by the holder or for him.
            let actor =
                if r.actor == desk.holder.tax_code.as_str() { tr.msg("activity-yourself") } else { r.actor.clone() };
            let action_id = format!("activity-{}", r.action.replace('_', "-"));
            let action =
                if app.translations.has_message(lang, &action_id) { tr.msg(&action_id) } else { r.action.clone() };
            let detail = ["reference", "practice", "delegation", "institution"]
                .iter()
                .filter_map(|k| {
                    let label = tr.msg(&format!("activity-key-{k}"));
                    let value = r.detail.get(*k).and_then(|v| v.as_str())?;
                    let shown = match *k {
                        "practice" => practices.get(value).map_or(value, String::as_str),
                        _ => value,
                    };
                    // A reference already shown as the practice's is not repeated.
                    let repeated = *k == "reference" && r.detail.get("practice").is_some();
                    (!repeated).then(|| format!("{label}: {shown}"))
                })
                .collect::<Vec<_>>()
                .join(", ");
            ActRow { at, actor, action, detail }
        })
        .collect();
    Ok(desk.finish(render(&ActivityPage { tr, rows }, StatusCode::OK)))
}
