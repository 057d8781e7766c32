//! The desk's search for business software (`GET /api/v1/search`), and the query both the
//! API and the page (`/ricerca`) read: parsed into a [`storage::PracticeSearch`], every
//! mistake named by its field in the user's language.

use axum::extract::{Query, State};
use domain::practice::PracticeState;
use domain::Lang;
use storage::{PracticeSearch, SortKey};

use crate::acting::Acting;
use crate::error::ApiError;
use crate::extract::UserLang;
use crate::view::Tr;
use crate::AppState;

/// Results on one page.
pub const PAGE_SIZE: u32 = 20;

/// Longest search text, in characters.
const TEXT_MAX: usize = 200;

/// The query string, as typed: nothing here is trusted.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    pub(crate) testo: Option<String>,
    pub(crate) servizio: Option<String>,
    pub(crate) stato: Option<String>,
    pub(crate) dal: Option<String>,
    pub(crate) al: Option<String>,
    pub(crate) ordina: Option<String>,
    pub(crate) verso: Option<String>,
    pub(crate) pagina: Option<String>,
}

impl SearchQuery {
    pub(crate) fn is_empty(&self) -> bool {
        [&self.testo, &self.servizio, &self.stato, &self.dal, &self.al]
            .iter()
            .all(|v| v.as_deref().is_none_or(|v| v.trim().is_empty()))
    }

    /// The query string for the same search with another sort or page.
    pub(crate) fn href(&self, sort: SortKey, descending: bool, page: u32) -> String {
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
    Acting(principal): Acting,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<SearchResults>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadParameter(e.body_text()))?;
    let Checked { search, page } = check(&app, lang, &query).map_err(|problems| {
        ApiError::BadParameter(problems.into_iter().map(|(_, message)| message).collect::<Vec<_>>().join(" "))
    })?;
    let (found, page, pages) = app::practices::search(&app.core, &principal, search, page, PAGE_SIZE).await?;
    let practices =
        found.practices.into_iter().map(|p| crate::api::practice_view(&app, p, None, lang)).collect::<Vec<_>>();
    Ok(axum::Json(SearchResults { total: found.total, page, pages, per_page: PAGE_SIZE, practices }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded_but_for_unreserved_characters() {
        assert_eq!(super::encode("Bar & Figli/è"), "Bar%20%26%20Figli%2F%C3%A8");
        assert_eq!(super::encode("SPT-2026_000001.a~"), "SPT-2026_000001.a~");
    }
}
