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

use crate::compile::ErrorLink;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::forms::Desk;
use crate::pages::{render, Tr};
use crate::AppState;

/// Results on one page.
pub const PAGE_SIZE: u32 = 20;

/// Longest search text, in characters.
const TEXT_MAX: usize = 200;

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
}

/// The query string, as typed: nothing here is trusted.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    testo: Option<String>,
    servizio: Option<String>,
    stato: Option<String>,
    dal: Option<String>,
    al: Option<String>,
    ordina: Option<String>,
    verso: Option<String>,
    pagina: Option<String>,
}

impl SearchQuery {
    fn is_empty(&self) -> bool {
        [&self.testo, &self.servizio, &self.stato, &self.dal, &self.al]
            .iter()
            .all(|v| v.as_deref().is_none_or(|v| v.trim().is_empty()))
    }

    /// The query string for the same search with another sort or page.
    fn href(&self, sort: SortKey, descending: bool, page: u32) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (name, value) in [
            ("testo", &self.testo),
            ("servizio", &self.servizio),
            ("stato", &self.stato),
            ("dal", &self.dal),
            ("al", &self.al),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                pairs.push((name, v.to_string()));
            }
        }
        pairs.push(("ordina", sort.as_str().to_string()));
        pairs.push(("verso", if descending { "desc" } else { "asc" }.to_string()));
        pairs.push(("pagina", page.to_string()));
        let encoded: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        format!("/ricerca?{}", encoded.join("&"))
    }
}

/// Percent-encoding for a query value: everything but the unreserved characters (RFC 3986).
fn encode(value: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(value, RESERVED).to_string()
}

/// A date typed in the form (`gg/mm/aaaa` or ISO), or a message saying why not.
fn parse_day(app: &AppState, lang: Lang, label: &str, value: Option<&str>) -> Result<Option<time::Date>, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => domain::identifiers::parse_date(v)
            .ok()
            // Dates of sending: nothing before 1900 or after 9999 can match, or be stored.
            .filter(|d| (1900..=9999).contains(&d.year()))
            .map(Some)
            .ok_or_else(|| app.translations.message(lang, "search-bad-date", &[("field", label.to_string())])),
    }
}

/// A search as asked, once checked: the store's query (20 to a page, no scope yet) and the
/// page asked for.
pub(crate) struct Checked {
    pub search: PracticeSearch,
    pub page: u32,
}

/// Checks what a search asks, for the page and the API alike: every problem comes with the
/// name of its field (`testo`, `dal`, `al`, `servizio`, `stato`) and a message in `lang`.
pub(crate) fn check(app: &AppState, lang: Lang, query: &SearchQuery) -> Result<Checked, Vec<(&'static str, String)>> {
    let tr = Tr::new(&app.translations, lang);
    let mut errors = Vec::new();
    let from = parse_day(app, lang, &tr.msg("search-from"), query.dal.as_deref());
    let until = parse_day(app, lang, &tr.msg("search-until"), query.al.as_deref());
    if query.testo.as_deref().is_some_and(|t| t.chars().count() > TEXT_MAX) {
        errors.push(("testo", tr.fmt("search-text-too-long", &[("max", TEXT_MAX.to_string())])));
    }
    if let Err(message) = &from {
        errors.push(("dal", message.clone()));
    }
    match (&from, &until) {
        (_, Err(message)) => errors.push(("al", message.clone())),
        (Ok(Some(f)), Ok(Some(u))) if u < f => errors.push(("al", tr.msg("search-until-before-from"))),
        _ => {}
    }
    let service = query.servizio.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = service.filter(|s| app.core.catalog.service(s).is_none()) {
        let args = [("field", tr.msg("practices-service")), ("value", s.to_string())];
        errors.push(("servizio", tr.fmt("search-bad-choice", &args)));
    }
    let state = query.stato.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = state.filter(|s| PracticeState::parse(s).is_none()) {
        let args = [("field", tr.msg("practices-state")), ("value", s.to_string())];
        errors.push(("stato", tr.fmt("search-bad-choice", &args)));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let sort = query.ordina.as_deref().and_then(SortKey::parse).unwrap_or_default();
    let descending =
        query.verso.as_deref().map_or(sort == SortKey::Updated || sort == SortKey::Submitted, |v| v != "asc");
    let page = query.pagina.as_deref().and_then(|p| p.parse::<u32>().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let (from, until) = (from.ok().flatten(), until.ok().flatten());
    let search = PracticeSearch {
        text: query.testo.clone(),
        service: service.map(str::to_string),
        state: state.and_then(PracticeState::parse),
        submitted_from: from.map(domain::italian_day_start),
        submitted_before: until.and_then(|d| d.next_day()).map(domain::italian_day_start),
        sort,
        descending,
        limit: PAGE_SIZE,
        offset: 0,
        scope: None,
    };
    Ok(Checked { search, page })
}

/// One page of what `search` finds within the principal's reach (see
/// [`app::practices::search`]).
async fn run(
    app: &AppState,
    principal: &crate::acting::Principal,
    search: PracticeSearch,
    page: u32,
) -> Result<(storage::SearchPage, u32, u32), ApiError> {
    Ok(app::practices::search(&app.core, principal, search, page, PAGE_SIZE).await?)
}

/// What `GET /api/v1/search` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub total: u64,
    pub page: u32,
    pub pages: u32,
    pub per_page: u32,
    pub practices: Vec<crate::api::PracticeView>,
}

#[utoipa::path(
    get,
    path = "/search",
    tag = "practices",
    operation_id = "search",
    params(
        SearchQuery,
        crate::openapi::LangParam,
        crate::openapi::DelegationHeader,
    ),
    responses(
        (status = 200, body = SearchResults, description = "One page (20) of what the search finds"),
        (status = 400, response = crate::openapi::ProblemAnswer),
        (status = 401, response = crate::openapi::ProblemAnswer),
        (status = 403, response = crate::openapi::ProblemAnswer),
        (status = 503, response = crate::openapi::ProblemAnswer),
    ),
)]
/// `GET /api/v1/search?testo=&servizio=&stato=&dal=&al=&ordina=&verso=&pagina=`: the desk's
/// search (the same parameters and checks as `/ricerca`), 20 to a page. A parameter that
/// cannot be understood is a 400 whose detail names the field, in the user's language.
pub async fn api_search(
    State(app): State<AppState>,
    UserLang(lang): UserLang,
    crate::acting::Acting(principal): crate::acting::Acting,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<SearchResults>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadParameter(e.body_text()))?;
    let Checked { search, page } = check(&app, lang, &query).map_err(|problems| {
        ApiError::BadParameter(problems.into_iter().map(|(_, message)| message).collect::<Vec<_>>().join(" "))
    })?;
    let (found, page, pages) = run(&app, &principal, search, page).await?;
    let practices =
        found.practices.into_iter().map(|p| crate::api::practice_view(&app, p, None, lang)).collect::<Vec<_>>();
    Ok(axum::Json(SearchResults { total: found.total, page, pages, per_page: PAGE_SIZE, practices }))
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
        business: crate::pages::practice_business(&p.data),
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
) -> Result<Response, ApiError> {
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
        let (found, shown, last_page) = run(&app, &principal, search, page).await?;
        page = shown;
        summary = tr.fmt(
            "search-summary",
            &[("total", found.total.to_string()), ("page", page.to_string()), ("pages", last_page.to_string())],
        );
        rows = found.practices.iter().map(|p| result_row(&app, &tr, lang, p)).collect();
        columns = sort_columns(&query, &tr, sort, descending);
        pages = page_links(&query, &tr, (sort, descending), page, last_page);
    }
    let (services, states) = choices(&app, &tr, lang, service, state);
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = SearchPage {
        text: query.testo.clone().unwrap_or_default(),
        from: query.dal.clone().unwrap_or_default(),
        until: query.al.clone().unwrap_or_default(),
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
        tr,
    };
    Ok(desk.finish(render(&page, status)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded_but_for_unreserved_characters() {
        assert_eq!(super::encode("Bar & Figli/è"), "Bar%20%26%20Figli%2F%C3%A8");
        assert_eq!(super::encode("SPT-2026_000001.a~"), "SPT-2026_000001.a~");
    }
}
