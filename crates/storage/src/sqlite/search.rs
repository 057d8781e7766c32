//! The desk's search on SQLite. The WHERE clause is built from the conditions actually given
//! (no `? IS NULL OR …` placeholders), so that the planner sees each for what it is: a date
//! range on `practices_by_submission`, a service on `practices_by_service`, the page in the
//! order of `practices_by_update`. The free text takes its candidates from indexes (see
//! [`push_text`]): references and protocol numbers by range (`deliveries_by_protocol_upper`,
//! migration 0014), the codice fiscale from `practices_by_business`, a part of a name from the
//! trigram index `practice_names` (FTS5, migration 0015), and checks only those.

use sqlx::{QueryBuilder, Sqlite};

use crate::{PracticeSearch, ScopeFilter};

/// Appends ` WHERE …` for `search` among `owner`'s practices.
pub(super) fn push_filter(query: &mut QueryBuilder<'static, Sqlite>, owner: &str, search: &PracticeSearch) {
    query.push(" WHERE owner_cf = ").push_bind(owner.to_string());
    if let Some(terms) = search.text_terms() {
        push_text(query, owner, search.text.as_deref().unwrap_or_default().trim(), terms);
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

/// The free text: candidates from indexes (a range of references, the holder's codice fiscale,
/// a range of protocol numbers, the name trigrams), each then checked against the practice
/// with the exact rules (reference and protocol number start with the text, the codice
/// fiscale is it, the name contains it).
fn push_text(query: &mut QueryBuilder<'static, Sqlite>, owner: &str, typed: &str, terms: (String, String, String)) {
    let (upper, name, prefix) = terms;
    let after = format!("{upper}\u{10FFFF}");
    // References are the portal's own, upper-case: the range is their prefix.
    query.push(" AND rowid IN (SELECT rowid FROM practices WHERE reference >= ");
    query.push_bind(upper.clone()).push(" AND reference < ").push_bind(after.clone());
    query.push(" UNION SELECT rowid FROM practices WHERE owner_cf = ").push_bind(owner.to_string());
    query.push(" AND business_cf = ").push_bind(upper.clone());
    query.push(" UNION SELECT p.rowid FROM deliveries d JOIN practices p ON p.id = d.practice_id");
    query.push(" WHERE upper(d.protocol_number) >= ").push_bind(upper.clone());
    query.push(" AND upper(d.protocol_number) < ").push_bind(after.clone());
    if uses_trigrams(typed) {
        query.push(" UNION SELECT rowid FROM practice_names WHERE name LIKE ");
        query.push_bind(format!("%{}%", typed.to_lowercase()));
    } else {
        // Too short for a trigram, or with LIKE's own characters: the holder's names in turn.
        query.push(" UNION SELECT rowid FROM practices WHERE owner_cf = ").push_bind(owner.to_string());
        query.push(" AND business_name LIKE ").push_bind(name.clone()).push(" ESCAPE '\\'");
    }
    query.push(") AND (reference LIKE ").push_bind(prefix.clone());
    query.push(" ESCAPE '\\' OR business_cf = ").push_bind(upper.clone());
    query.push(" OR business_name LIKE ").push_bind(name).push(" ESCAPE '\\'");
    query.push(" OR id IN (SELECT practice_id FROM deliveries WHERE upper(protocol_number) >= ").push_bind(upper);
    query.push(" AND upper(protocol_number) < ").push_bind(after);
    query.push(" AND upper(protocol_number) LIKE ").push_bind(prefix).push(" ESCAPE '\\'))");
}

/// Whether the trigram index can answer `typed` as a name part: three characters at least
/// (a trigram), none of them one LIKE reads as a wildcard or an escape.
fn uses_trigrams(typed: &str) -> bool {
    typed.chars().count() >= 3 && !typed.contains(['%', '_', '\\'])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_trigram_index_answers_names_of_three_plain_characters_or_more() {
        assert!(super::uses_trigrams("Bar"));
        assert!(super::uses_trigrams("4200 di"));
        assert!(!super::uses_trigrams("Ba"), "shorter than a trigram");
        assert!(!super::uses_trigrams("50%"), "a LIKE wildcard");
        assert!(!super::uses_trigrams("a_b"), "a LIKE wildcard");
        assert!(!super::uses_trigrams("a\\b"), "an escape");
    }
}
