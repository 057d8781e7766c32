//! Search among the holder's practices ("ricerca"): by reference, protocol number, business
//! codice fiscale or name, service, state and date of sending; sorted by any column, 20 to a
//! page. The store does the work with indexes (see docs/PERFORMANCE.md); this page parses
//! the query string into a [`storage::PracticeSearch`], saying in the user's language what it
//! could not understand, and lets the user export the practices found.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::practice::PracticeState;
use domain::Lang;
use storage::{PracticeSearch, SortKey};

use crate::api::search::{check, Checked, SearchQuery, PAGE_SIZE};
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::Desk;
use crate::pages::compile::ErrorLink;
use crate::view::{render, Tr};
use crate::AppState;

#[derive(Debug)]
pub struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Debug)]
pub struct Column {
    label: String,
    href: Option<String>,
    /// `ascending`/`descending` on the column results are sorted by.
    aria_sort: Option<&'static str>,
}

#[derive(Debug)]
pub struct ResultRow {
    id: String,
    reference: String,
    service: String,
    business: String,
    state: String,
    submitted: String,
    updated: String,
}

#[derive(Debug)]
pub struct PageLink {
    label: String,
    /// `None` for the current page.
    href: Option<String>,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage<'a> {
    tr: Tr<'a>,
    text: String,
    from: String,
    until: String,
    services: Vec<Choice>,
    states: Vec<Choice>,
    errors: Vec<ErrorLink>,
    text_error: Option<String>,
    from_error: Option<String>,
    until_error: Option<String>,
    searched: bool,
    summary: String,
    columns: Vec<Column>,
    rows: Vec<ResultRow>,
    pages: Vec<PageLink>,
    date_hint: String,
    /// The export's choices: where to come back, the error when none was chosen, and the
    /// links exporting the whole page.
    export: ExportChoices,
}

/// What the export form of a list of practices needs.
#[derive(Debug, Default)]
pub struct ExportChoices {
    pub return_to: String,
    pub error: Option<String>,
    pub all_json: String,
    pub all_csv: String,
}

impl ExportChoices {
    /// For a list shown at `return_to` with these practices' ids.
    pub fn new(tr: &Tr<'_>, return_to: String, ids: &[&str], none_chosen: bool) -> Self {
        let chosen: String = ids.iter().map(|id| format!("pratica={id}&")).collect();
        Self {
            return_to,
            error: none_chosen.then(|| tr.msg("export-none-chosen")),
            all_json: format!("/pratiche/esporta?{chosen}formato=json"),
            all_csv: format!("/pratiche/esporta?{chosen}formato=csv"),
        }
    }
}

/// `?esportazione=nessuna`: back from an export with nothing chosen.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ExportNotice {
    esportazione: Option<String>,
}

impl ExportNotice {
    pub fn none_chosen(query: &Result<Query<Self>, axum::extract::rejection::QueryRejection>) -> bool {
        query.as_ref().is_ok_and(|q| q.0.esportazione.as_deref() == Some("nessuna"))
    }
}

/// One practice found, as a row of the results.
fn result_row(app: &AppState, tr: &Tr<'_>, lang: Lang, p: &domain::practice::Practice) -> ResultRow {
    ResultRow {
        id: p.id.to_string(),
        reference: p.reference.as_ref().map_or_else(|| tr.msg("practices-no-reference"), ToString::to_string),
        service: app
            .core
            .catalog
            .service(&p.service_id)
            .map_or_else(|| p.service_id.clone(), |s| s.title.get(lang).to_string()),
        business: crate::view::practice_business(&p.data),
        state: tr.msg(&format!("state-{}", p.state.as_str())),
        submitted: p.submitted_at.map(domain::italian_display).unwrap_or_default(),
        updated: domain::italian_display(p.updated_at),
    }
}

/// The results' columns; the sortable ones link to the same search sorted by them.
fn sort_columns(query: &SearchQuery, tr: &Tr<'_>, sort: SortKey, descending: bool) -> Vec<Column> {
    let sortable = |key: SortKey, label: &str| {
        let current = key == sort;
        Column {
            label: label.to_string(),
            href: Some(query.href(
                key,
                if current { !descending } else { key != SortKey::Reference && key != SortKey::Service },
                1,
            )),
            aria_sort: current.then_some(if descending { "descending" } else { "ascending" }),
        }
    };
    vec![
        sortable(SortKey::Reference, &tr.msg("practices-reference")),
        sortable(SortKey::Service, &tr.msg("practices-service")),
        Column { label: tr.msg("receipt-business"), href: None, aria_sort: None },
        Column { label: tr.msg("practices-state"), href: None, aria_sort: None },
        sortable(SortKey::Submitted, &tr.msg("practice-submitted")),
        sortable(SortKey::Updated, &tr.msg("practices-updated")),
    ]
}

/// Previous, nearby and next pages of the results.
fn page_links(
    query: &SearchQuery,
    tr: &Tr<'_>,
    (sort, descending): (SortKey, bool),
    page: u32,
    last_page: u32,
) -> Vec<PageLink> {
    let mut pages = Vec::new();
    if last_page > 1 {
        let link =
            |n: u32, label: String| PageLink { label, href: (n != page).then(|| query.href(sort, descending, n)) };
        if page > 1 {
            pages.push(link(page - 1, tr.msg("search-previous")));
        }
        let window = page.saturating_sub(2).max(1)..=(page + 2).min(last_page);
        for n in window {
            pages.push(link(n, n.to_string()));
        }
        if page < last_page {
            pages.push(link(page + 1, tr.msg("search-next")));
        }
    }
    pages
}

/// The service and state menus, with the chosen ones selected.
fn choices(
    app: &AppState,
    tr: &Tr<'_>,
    lang: Lang,
    service: Option<&str>,
    state: Option<&str>,
) -> (Vec<Choice>, Vec<Choice>) {
    let services = app
        .core
        .catalog
        .services
        .iter()
        .map(|s| Choice {
            selected: Some(s.id.as_str()) == service,
            value: s.id.clone(),
            label: s.title.get(lang).to_string(),
        })
        .collect();
    let states = PracticeState::ALL
        .iter()
        .map(|s| Choice {
            selected: Some(s.as_str()) == state,
            value: s.as_str().to_string(),
            label: tr.msg(&format!("state-{}", s.as_str())),
        })
        .collect();
    (services, states)
}

/// `GET /ricerca`: the search form, and with any filter the practices found.
pub async fn search(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    desk: Desk,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
    notice: Result<Query<ExportNotice>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let none_chosen = ExportNotice::none_chosen(&notice);
    let submitted_empty = query.as_ref().is_ok_and(|q| q.0.testo.is_some() && q.0.is_empty());
    let query = query.map(|q| q.0).unwrap_or_default();
    let principal = desk.principal(&app).await?;
    let tr = Tr::acting(&app.translations, lang, &principal);
    let checked = check(&app, lang, &query);
    let checked_problems = checked.as_ref().err().cloned().unwrap_or_default();
    let errors: Vec<ErrorLink> = checked_problems
        .iter()
        .map(|(field, message)| ErrorLink { href: format!("#ricerca-{field}"), message: message.clone() })
        .collect();
    let service = query.servizio.as_deref().filter(|s| !s.is_empty());
    let state = query.stato.as_deref().filter(|s| !s.is_empty());
    let (search, mut page) = match checked {
        Ok(Checked { search, page }) => (search, page),
        Err(_) => (PracticeSearch::default(), 1),
    };
    let (sort, descending) = (search.sort, search.descending);
    let field_error = |field: &str| {
        let problems = checked_problems.iter().find(|(f, _)| *f == field);
        problems.map(|(_, message)| message.clone())
    };
    let (text_error, from_error, until_error) = (field_error("testo"), field_error("dal"), field_error("al"));
    let searched = !query.is_empty() && errors.is_empty();
    let mut rows = Vec::new();
    let mut pages = Vec::new();
    let mut summary = String::new();
    let mut columns = Vec::new();
    if searched {
        let (found, shown, last_page) = app::practices::search(&app.core, &principal, search, page, PAGE_SIZE).await?;
        page = shown;
        summary = tr.fmt(
            "search-summary",
            &[("total", found.total.to_string()), ("page", page.to_string()), ("pages", last_page.to_string())],
        );
        rows = found.practices.iter().map(|p| result_row(&app, &tr, lang, p)).collect();
        columns = sort_columns(&query, &tr, sort, descending);
        pages = page_links(&query, &tr, (sort, descending), page, last_page);
    }
    if submitted_empty {
        // "Cerca" with nothing typed or chosen: say what to type rather than nothing.
        summary = tr.msg("search-empty");
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let export = ExportChoices::new(&tr, query.href(sort, descending, page), &ids, none_chosen);
    // The search's own errors make the answer 422; the export's, shown after a redirect, do not.
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let mut errors = errors;
    if let Some(message) = &export.error {
        errors.push(ErrorLink { href: "#tabella-risultati".into(), message: message.clone() });
    }
    let (services, states) = choices(&app, &tr, lang, service, state);
    let page = SearchPage {
        text: query.testo.clone().unwrap_or_default(),
        // An ISO date typed is understood, and shown back as Italians write it.
        from: query.dal.as_deref().map(domain::identifiers::display_date_value).unwrap_or_default(),
        until: query.al.as_deref().map(domain::identifiers::display_date_value).unwrap_or_default(),
        date_hint: tr.date_hint(app.core.today()),
        services,
        states,
        errors,
        text_error,
        from_error,
        until_error,
        searched,
        summary,
        columns,
        rows,
        pages,
        export,
        tr,
    };
    Ok(desk.finish(render(&page, status)))
}
