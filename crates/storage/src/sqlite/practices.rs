//! [`crate::PracticeStore`] on SQLite: drafts, submission, reading, search, archive.

use crate::{
    data_json, reference_year, DeliveryKey, PracticeQuery, PracticeSearch, PracticeStore, SearchPage, StoreError,
};
use async_trait::async_trait;
use domain::delivery::DeliveryState;
use domain::identifiers::CodiceFiscale;
use domain::practice::{Delivery, Practice, PracticeData, PracticeId, PracticeState, ReferenceNumber, Submission};
use sqlx::Row;
use time::OffsetDateTime;

use super::*;
use crate::migrations::Step;

#[async_trait]
impl PracticeStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // Foreign keys are off while the migrations run (a pragma that a transaction cannot
        // change), so that a table can be rebuilt, as SQLite's own procedure for ALTER TABLE
        // says; they are checked before the commit and turned on again whatever happened.
        self.writer
            .exclusive(async |conn| {
                sqlx::Executor::execute(&mut *conn, "PRAGMA foreign_keys = OFF").await?;
                let applied = apply_migrations(conn).await;
                let restored = sqlx::Executor::execute(&mut *conn, "PRAGMA foreign_keys = ON").await;
                applied?;
                restored?;
                Ok(())
            })
            .await
    }

    async fn create_draft(&self, p: &Practice) -> Result<(), StoreError> {
        self.write(async |tx| {
            sqlx::query(
                "INSERT INTO practices (id, owner_cf, actor_cf, service_id, state, data, reference, created_at, updated_at, \
                 submitted_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL)",
            )
            .bind(p.id.to_string())
            .bind(p.owner.as_str())
            .bind(p.actor.as_str())
            .bind(&p.service_id)
            .bind(p.state.as_str())
            .bind(data_json(&p.data))
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn practice(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Practice, StoreError> {
        let row = sqlx::query(&format!("SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = ? AND owner_cf = ?"))
            .bind(id.to_string())
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        practice_row(&row)?.into_practice()
    }

    async fn update_draft(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        data: &PracticeData,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError> {
        self.write(async |tx| {
            let state = owned_state(&mut *tx, owner, id).await?;
            if !state.is_editable() {
                return Err(StoreError::WrongState(state));
            }
            sqlx::query("UPDATE practices SET data = ?, updated_at = ? WHERE id = ? AND state = 'draft'")
                .bind(data_json(data))
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await?;
        self.practice(owner, id).await
    }

    async fn submit(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        submission: &Submission,
    ) -> Result<Practice, StoreError> {
        self.write(async |tx| {
            let state = owned_state(&mut *tx, owner, id).await?;
            if state != PracticeState::Draft {
                return Err(StoreError::WrongState(state));
            }
            let existing: Option<String> = sqlx::query_scalar("SELECT reference FROM practices WHERE id = ?")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            // Sent before and returned to the drafts: keep the reference number.
            let reference = match existing {
                Some(r) => r,
                None => {
                    let year = reference_year(submission);
                    let sequence: i64 = sqlx::query_scalar(
                        "INSERT INTO reference_counters (year, last) VALUES (?, 1) \
                         ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
                    )
                    .bind(year)
                    .fetch_one(&mut *tx)
                    .await?;
                    ReferenceNumber { year, sequence: sequence.unsigned_abs() }.to_string()
                }
            };
            sqlx::query(
                "UPDATE practices SET state = 'in_progress', data = ?, reference = ?, needs_resend = 0, submitted_at = ?, \
                 updated_at = ?, actor_cf = ? WHERE id = ? AND state = 'draft'",
            )
            .bind(data_json(&submission.data))
            .bind(&reference)
            .bind(submission.submitted_at)
            .bind(submission.submitted_at)
            .bind(submission.actor.as_str())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
            for (position, filing) in submission.filings.iter().enumerate() {
                let payload = filing.payload.to_string();
                // A delivery sent before keeps its revision (same idempotency key) unless its
                // filing changed.
                sqlx::query(
                    "INSERT INTO deliveries (practice_id, institution, position, filing_kind, state, payload, created_at, updated_at, \
                     actor_cf, office, waits_for, uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (practice_id, institution) DO UPDATE SET \
                       revision = CASE WHEN deliveries.payload = excluded.payload THEN deliveries.revision ELSE deliveries.revision + 1 END, \
                       payload = excluded.payload, state = excluded.state, attempts = 0, next_attempt_at = NULL, lease_until = NULL, \
                       last_error = NULL, rejection = NULL, updated_at = excluded.updated_at, actor_cf = excluded.actor_cf, \
                       office = excluded.office, status_url = NULL, news_at = NULL, polls = 0, \
                       waits_for = excluded.waits_for, uses = excluded.uses",
                )
                .bind(id.to_string())
                .bind(&filing.institution)
                .bind(position as i64)
                .bind(&filing.filing_kind)
                .bind(if filing.waits_for.is_some() { "waiting" } else { "queued" })
                .bind(payload)
                .bind(submission.submitted_at)
                .bind(submission.submitted_at)
                .bind(submission.actor.as_str())
                .bind(&filing.office)
                .bind(&filing.waits_for)
                .bind(serde_json::to_string(&filing.uses).unwrap_or_else(|_| "[]".into()))
                .execute(&mut *tx)
                .await?;
                let key = DeliveryKey { practice_id: id, institution: filing.institution.clone() };
                let detail = serde_json::json!({ "reference": reference });
                log_event(&mut *tx, &key, submission.submitted_at, "submitted", DeliveryState::Queued, &detail, None)
                    .await?;
            }
            Ok(())
        })
        .await?;
        self.changed(id);
        self.practice(owner, id).await
    }

    async fn deliveries(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN practices p ON p.id = d.practice_id \
             WHERE p.id = ? AND p.owner_cf = ? ORDER BY d.position"
        ))
        .bind(id.to_string())
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| delivery_row(r)?.into_delivery()).collect()
    }

    async fn list(&self, owner: &CodiceFiscale, query: &PracticeQuery) -> Result<Vec<Practice>, StoreError> {
        let (services, businesses, actor) = crate::ScopeFilter::params(query.scope.as_ref());
        let rows = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE owner_cf = ?1 AND (?2 IS NULL OR state = ?2) AND {} \
             ORDER BY updated_at DESC, id LIMIT ?6 OFFSET ?7",
            scope_clause(3)
        ))
        .bind(owner.as_str())
        .bind(query.state.map(PracticeState::as_str))
        .bind(services)
        .bind(businesses)
        .bind(actor)
        .bind(query.bounded_limit())
        .bind(i64::from(query.offset))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| practice_row(r)?.into_practice()).collect()
    }

    async fn desk_summary(
        &self,
        owner: &CodiceFiscale,
        scope: Option<&crate::ScopeFilter>,
        limit: u32,
    ) -> Result<crate::DeskSummary, StoreError> {
        let (services, businesses, actor) = crate::ScopeFilter::params(scope);
        // Every query is confined to the owner's practices within the scope: parameters 1 to 4.
        macro_rules! mine {
            ($query:expr) => {
                $query.bind(owner.as_str()).bind(services.clone()).bind(businesses.clone()).bind(actor.clone())
            };
        }
        let mine = format!("owner_cf = ?1 AND {}", scope_clause(2));
        let counts: Vec<(String, i64)> =
            mine!(sqlx::query_as(&format!("SELECT state, COUNT(*) FROM practices WHERE {mine} GROUP BY state")))
                .fetch_all(&self.pool)
                .await?;
        let to_resend: Vec<(String, Option<String>)> = mine!(sqlx::query_as(&format!(
            "SELECT id, reference FROM practices WHERE {mine} AND state = 'draft' AND needs_resend <> 0 \
             ORDER BY updated_at DESC, id LIMIT ?5"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        // The practices are filtered first, so that the scope's columns are theirs alone.
        let rows = mine!(sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS}, p.id AS attention_practice, p.reference AS practice_reference FROM deliveries d \
             JOIN (SELECT id, reference, updated_at FROM practices WHERE {mine} \
                   AND state IN ('in_progress', 'to_correct', 'to_resend')) p ON p.id = d.practice_id \
             WHERE d.state IN ({}) ORDER BY p.updated_at DESC, p.id, d.position LIMIT ?5",
            crate::NEEDS_THE_OWNER
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let attention = rows
            .iter()
            .map(|r| {
                let reference: Option<String> = r.try_get("practice_reference")?;
                let id: String = r.try_get("attention_practice")?;
                Ok((id, reference.unwrap_or_default(), delivery_row(r)?.into_delivery()?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        crate::DeskSummary::from_rows(counts, to_resend, attention)
    }

    async fn search(&self, owner: &CodiceFiscale, search: &PracticeSearch) -> Result<SearchPage, StoreError> {
        let mut count = sqlx::QueryBuilder::new("SELECT count(*) FROM practices");
        super::search::push_filter(&mut count, owner.as_str(), search);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let mut page = sqlx::QueryBuilder::new(format!("SELECT {PRACTICE_COLUMNS} FROM practices"));
        super::search::push_filter(&mut page, owner.as_str(), search);
        page.push(format!(" ORDER BY {} LIMIT ", search.order_by()))
            .push_bind(search.bounded_limit())
            .push(" OFFSET ")
            .push_bind(i64::from(search.offset));
        let rows = page.build().fetch_all(&self.pool).await?;
        let practices = rows.iter().map(|r| practice_row(r)?.into_practice()).collect::<Result<_, _>>()?;
        Ok(SearchPage { practices, total: total.unsigned_abs() })
    }

    async fn set_archived(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        archive: bool,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError> {
        self.write(async |tx| {
            let row = sqlx::query(&format!("SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = ? AND owner_cf = ?"))
                .bind(id.to_string())
                .bind(owner.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let practice = practice_row(&row)?.into_practice()?;
            let delivery_states: Vec<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE practice_id = ?")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await?;
            let next = crate::archive_target(&practice, archive, &delivery_states)?;
            sqlx::query("UPDATE practices SET state = ?, updated_at = ? WHERE id = ? AND state = ?")
                .bind(next.as_str())
                .bind(now)
                .bind(id.to_string())
                .bind(practice.state.as_str())
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await?;
        self.changed(id);
        self.practice(owner, id).await
    }
}

/// Applies the migrations not applied yet, in one transaction.
async fn apply_migrations(conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    sqlx::Executor::execute(
        &mut *tx,
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         applied_at TEXT NOT NULL, checksum TEXT)",
    )
    .await?;
    let has_checksum: bool =
        sqlx::query_scalar("SELECT count(*) > 0 FROM pragma_table_info('schema_migrations') WHERE name = 'checksum'")
            .fetch_one(&mut *tx)
            .await?;
    if !has_checksum {
        sqlx::Executor::execute(&mut *tx, "ALTER TABLE schema_migrations ADD COLUMN checksum TEXT").await?;
    }
    for (version, name, sql) in MIGRATIONS {
        let recorded: Option<Option<String>> =
            sqlx::query_scalar("SELECT checksum FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        match crate::migrations::step(*version, name, sql, recorded)? {
            Step::Done => {}
            Step::Fill(checksum) => {
                sqlx::query("UPDATE schema_migrations SET checksum = ? WHERE version = ?")
                    .bind(checksum)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
            Step::Apply(checksum) => {
                tracing::info!(version, name, "applying SQLite migration");
                sqlx::Executor::execute(&mut *tx, *sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at, checksum) VALUES (?, ?, ?, ?)")
                    .bind(version)
                    .bind(name)
                    .bind(OffsetDateTime::now_utc())
                    .bind(checksum)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    let broken: Vec<sqlx::sqlite::SqliteRow> = sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut *tx).await?;
    if !broken.is_empty() {
        return Err(StoreError::Corrupt(format!("{} rows break a foreign key after the migrations", broken.len())));
    }
    tx.commit().await?;
    Ok(())
}
