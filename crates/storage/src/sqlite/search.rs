//! The desk's search on SQLite. The WHERE clause is built from the conditions actually given
//! (no `? IS NULL OR …` placeholders), so that the planner sees each for what it is: a date
//! range on `practices_by_submission`, a service on `practices_by_service`, the page in the
//! order of `practices_by_update`. The free text reads the protocol numbers from a range of
//! `deliveries_by_protocol_upper` (migration 0014), but the reference, codice fiscale and name
//! from each of the holder's practices in turn (a substring of a name needs a trigram index:
//! not done, see docs/PERFORMANCE.md; an index on the generated columns is not used as a
//! covering one by SQLite 3.46, measured).

use sqlx::{QueryBuilder, Sqlite};

use crate::{PracticeSearch, ScopeFilter};

/// Appends ` WHERE …` for `search` among `owner`'s practices.
pub(super) fn push_filter(query: &mut QueryBuilder<'static, Sqlite>, owner: &str, search: &PracticeSearch) {
    query.push(" WHERE owner_cf = ").push_bind(owner.to_string());
    if let Some((upper, name, prefix)) = search.text_terms() {
        query
            .push(" AND (reference LIKE ")
            .push_bind(prefix.clone())
            .push(" ESCAPE '\\' OR business_cf = ")
            .push_bind(upper.clone())
            .push(" OR business_name LIKE ")
            .push_bind(name)
            // Protocol numbers starting with the text: a range of deliveries_by_protocol_upper.
            .push(" ESCAPE '\\' OR id IN (SELECT practice_id FROM deliveries WHERE upper(protocol_number) >= ")
            .push_bind(upper.clone())
            .push(" AND upper(protocol_number) < ")
            .push_bind(format!("{upper}\u{10FFFF}"))
            .push(" AND upper(protocol_number) LIKE ")
            .push_bind(prefix)
            .push(" ESCAPE '\\'))");
    }
    if let Some(service) = &search.service {
        query.push(" AND service_id = ").push_bind(service.clone());
    }
    if let Some(state) = search.state {
        query.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(from) = search.submitted_from {
        query.push(" AND submitted_at >= ").push_bind(from);
    }
    if let Some(before) = search.submitted_before {
        query.push(" AND submitted_at < ").push_bind(before);
    }
    if search.scope.is_some() {
        let (services, businesses, actor) = ScopeFilter::params(search.scope.as_ref());
        query
            .push(" AND service_id IN (SELECT value FROM json_each(")
            .push_bind(services)
            .push(")) AND (business_cf IN (SELECT value FROM json_each(")
            .push_bind(businesses)
            .push(")) OR (business_cf IS NULL AND actor_cf = ")
            .push_bind(actor)
            .push("))");
    }
}
