//! Migrations and their checksums, shared by both adapters.
//!
//! Each backend lists its migrations as (version, name, SQL) and records each one applied in
//! `schema_migrations` with the SHA-256 of its text. At every start the store compares the
//! recorded checksum of each applied migration with the text this build carries and refuses to
//! open ([`StoreError::MigrationChanged`]) when they differ: a migration is never edited once
//! released, a change is a new migration. Rows written before checksums existed (NULL) are
//! filled with the current text's checksum on the first start that knows them.

use crate::StoreError;

/// Ordered list of (version, name, SQL) for a backend.
pub(crate) type Migrations = &'static [(i64, &'static str, &'static str)];

/// Hex SHA-256 of a migration's text, with line endings normalised (a checkout on Windows
/// must not look like an edit).
pub(crate) fn checksum(sql: &str) -> String {
    let text = sql.replace("\r\n", "\n");
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// What to do with one migration, given what the database recorded for its version.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not applied yet: run it and record it with this checksum.
    Apply(String),
    /// Applied before checksums were kept: record this one.
    Fill(String),
    /// Applied, and the same text.
    Done,
}

/// `recorded`: `None` if the version was never applied, `Some(None)` if applied without a
/// checksum, `Some(Some(c))` if applied with checksum `c`.
pub(crate) fn step(version: i64, name: &str, sql: &str, recorded: Option<Option<String>>) -> Result<Step, StoreError> {
    let expected = checksum(sql);
    match recorded {
        None => Ok(Step::Apply(expected)),
        Some(None) => Ok(Step::Fill(expected)),
        Some(Some(stored)) if stored == expected => Ok(Step::Done),
        Some(Some(stored)) => Err(StoreError::MigrationChanged { version, name: name.to_string(), stored, expected }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_migration_must_keep_its_text() {
        let sql = "CREATE TABLE t (a INTEGER);\n";
        let sum = checksum(sql);
        assert_eq!(sum.len(), 64);
        assert_eq!(step(1, "t", sql, None).ok(), Some(Step::Apply(sum.clone())));
        assert_eq!(step(1, "t", sql, Some(None)).ok(), Some(Step::Fill(sum.clone())));
        assert_eq!(step(1, "t", sql, Some(Some(sum.clone()))).ok(), Some(Step::Done));
        assert_eq!(step(1, "t", "CREATE TABLE t (a INTEGER);\r\n", Some(Some(sum.clone()))).ok(), Some(Step::Done));
        let edited = step(1, "t", "CREATE TABLE t (a TEXT);\n", Some(Some(sum)));
        assert!(
            matches!(&edited, Err(e @ StoreError::MigrationChanged { version: 1, .. }) if e.to_string().contains("(t) was changed")),
            "{edited:?}"
        );
    }
}
