//! [`crate::PracticeStore`] on PostgreSQL: drafts, submission, reading, search, archive.

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
impl PracticeStore for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        sqlx::Executor::execute(
            &mut *tx,
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL); \
             ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT",
        )
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let recorded: Option<Option<String>> =
                sqlx::query_scalar("SELECT checksum FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            match crate::migrations::step(*version, name, sql, recorded)? {
                Step::Done => {}
                Step::Fill(checksum) => {
                    sqlx::query("UPDATE schema_migrations SET checksum = $1 WHERE version = $2")
                        .bind(checksum)
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                }
                Step::Apply(checksum) => {
                    tracing::info!(version, name, "applying PostgreSQL migration");
                    sqlx::Executor::execute(&mut *tx, *sql).await?;
                    sqlx::query(
                        "INSERT INTO schema_migrations (version, name, applied_at, checksum) VALUES ($1, $2, now(), $3)",
                    )
                    .bind(version)
                    .bind(name)
                    .bind(checksum)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_draft(&self, p: &Practice) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO practices (id, owner_cf, service_id, state, data, reference, created_at, updated_at, submitted_at, \
             actor_cf) VALUES ($1, $2, $3, $4, $5::jsonb, NULL, $6, $7, NULL, $8)",
        )
        .bind(p.id.0)
        .bind(p.owner.as_str())
        .bind(&p.service_id)
        .bind(p.state.as_str())
        .bind(data_json(&p.data))
        .bind(p.created_at)
        .bind(p.updated_at)
        .bind(p.actor.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn practice(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Practice, StoreError> {
        let row = sqlx::query(&format!("SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = $1 AND owner_cf = $2"))
            .bind(id.0)
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
        crate::retry_contention(&self.contention, || self.update_draft_once(owner, id, data, now)).await
    }

    async fn submit(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        submission: &Submission,
    ) -> Result<Practice, StoreError> {
        crate::retry_contention(&self.contention, || self.submit_once(owner, id, submission)).await
    }

    async fn deliveries(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN practices p ON p.id = d.practice_id \
             WHERE p.id = $1 AND p.owner_cf = $2 ORDER BY d.position"
        ))
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| delivery_row(r)?.into_delivery()).collect()
    }

    async fn list(&self, owner: &CodiceFiscale, query: &PracticeQuery) -> Result<Vec<Practice>, StoreError> {
        let (services, businesses, actor) = crate::ScopeFilter::params(query.scope.as_ref());
        let rows = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE owner_cf = $1 AND ($2::text IS NULL OR state = $2) \
             AND {} ORDER BY updated_at DESC, id LIMIT $3 OFFSET $4",
            scope_clause(5)
        ))
        .bind(owner.as_str())
        .bind(query.state.map(PracticeState::as_str))
        .bind(query.bounded_limit())
        .bind(i64::from(query.offset))
        .bind(services)
        .bind(businesses)
        .bind(actor)
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
        let mine = format!("owner_cf = $1 AND {}", scope_clause(2));
        let counts: Vec<(String, i64)> =
            mine!(sqlx::query_as(&format!("SELECT state, COUNT(*) FROM practices WHERE {mine} GROUP BY state")))
                .fetch_all(&self.pool)
                .await?;
        let to_resend: Vec<(String, Option<String>)> = mine!(sqlx::query_as(&format!(
            "SELECT id::text, reference FROM practices WHERE {mine} AND state = 'draft' AND needs_resend \
             ORDER BY updated_at DESC, id LIMIT $5"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        // The practices are filtered first, so that the scope's columns are theirs alone.
        let rows = mine!(sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS}, p.id::text AS attention_practice, p.reference AS practice_reference FROM deliveries d \
             JOIN (SELECT id, reference, updated_at FROM practices WHERE {mine} \
                   AND state IN ('in_progress', 'to_correct', 'to_resend')) p ON p.id = d.practice_id \
             WHERE d.state IN ({}) ORDER BY p.updated_at DESC, p.id, d.position LIMIT $5",
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
        // One WHERE clause for the page and the count.
        let filter = "owner_cf = $1 \
             AND ($2::text IS NULL OR reference LIKE $4 ESCAPE '\\' OR business_cf = $2 OR business_name LIKE $3 ESCAPE '\\' \
                  OR id IN (SELECT practice_id FROM deliveries WHERE upper(protocol_number) LIKE $4 ESCAPE '\\')) \
             AND ($5::text IS NULL OR service_id = $5) AND ($6::text IS NULL OR state = $6) \
             AND ($7::timestamptz IS NULL OR submitted_at >= $7) AND ($8::timestamptz IS NULL OR submitted_at < $8) \
             AND {SCOPE}";
        let filter = filter.replace("{SCOPE}", &scope_clause(9));
        let (services, businesses, actor) = crate::ScopeFilter::params(search.scope.as_ref());
        let terms = search.text_terms();
        macro_rules! bind_filter {
            ($query:expr) => {
                $query
                    .bind(owner.as_str())
                    .bind(terms.as_ref().map(|t| t.0.clone()))
                    .bind(terms.as_ref().map(|t| t.1.clone()))
                    .bind(terms.as_ref().map(|t| t.2.clone()))
                    .bind(search.service.as_deref())
                    .bind(search.state.map(PracticeState::as_str))
                    .bind(search.submitted_from)
                    .bind(search.submitted_before)
                    .bind(services.clone())
                    .bind(businesses.clone())
                    .bind(actor.clone())
            };
        }
        let total: i64 = bind_filter!(sqlx::query_scalar(&format!("SELECT count(*) FROM practices WHERE {filter}")))
            .fetch_one(&self.pool)
            .await?;
        let rows = bind_filter!(sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE {filter} ORDER BY {} LIMIT $12 OFFSET $13",
            search.order_by()
        )))
        .bind(search.bounded_limit())
        .bind(i64::from(search.offset))
        .fetch_all(&self.pool)
        .await?;
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
        crate::retry_contention(&self.contention, || self.set_archived_once(owner, id, archive, now)).await
    }
}

/// The transactions behind the trait's methods, each run again by [`crate::retry_contention`]
/// when it loses to a concurrent one.
impl PostgresStore {
    async fn update_draft_once(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        data: &PracticeData,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state = lock_owned(&mut tx, owner, id).await?;
        if !state.is_editable() {
            return Err(StoreError::WrongState(state));
        }
        sqlx::query("UPDATE practices SET data = $1::jsonb, updated_at = $2 WHERE id = $3 AND state = 'draft'")
            .bind(data_json(data))
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.practice(owner, id).await
    }

    async fn submit_once(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        submission: &Submission,
    ) -> Result<Practice, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state = lock_owned(&mut tx, owner, id).await?;
        if state != PracticeState::Draft {
            return Err(StoreError::WrongState(state));
        }
        let existing: Option<String> =
            sqlx::query_scalar("SELECT reference FROM practices WHERE id = $1").bind(id.0).fetch_one(&mut *tx).await?;
        // Sent before and returned to the drafts: keep the reference number.
        let reference = match existing {
            Some(r) => r,
            None => {
                let year = reference_year(submission);
                let sequence: i64 = sqlx::query_scalar(
                    "INSERT INTO reference_counters (year, last) VALUES ($1, 1) \
                     ON CONFLICT (year) DO UPDATE SET last = reference_counters.last + 1 RETURNING last",
                )
                .bind(year)
                .fetch_one(&mut *tx)
                .await?;
                ReferenceNumber { year, sequence: sequence.unsigned_abs() }.to_string()
            }
        };
        sqlx::query(
            "UPDATE practices SET state = 'in_progress', data = $1::jsonb, reference = $2, needs_resend = FALSE, \
             submitted_at = $3, updated_at = $3, actor_cf = $5 WHERE id = $4 AND state = 'draft'",
        )
        .bind(data_json(&submission.data))
        .bind(&reference)
        .bind(submission.submitted_at)
        .bind(id.0)
        .bind(submission.actor.as_str())
        .execute(&mut *tx)
        .await?;
        for (position, filing) in submission.filings.iter().enumerate() {
            // A delivery sent before keeps its revision (same idempotency key) unless its
            // filing changed.
            sqlx::query(
                "INSERT INTO deliveries (practice_id, institution, position, filing_kind, state, payload, created_at, updated_at, \
                 actor_cf, office, waits_for, uses) VALUES ($1, $2, $3, $4, $9, $5::jsonb, $6, $6, $7, $8, $10, $11) \
                 ON CONFLICT (practice_id, institution) DO UPDATE SET \
                   revision = CASE WHEN deliveries.payload = excluded.payload THEN deliveries.revision ELSE deliveries.revision + 1 END, \
                   payload = excluded.payload, state = excluded.state, attempts = 0, next_attempt_at = NULL, lease_until = NULL, \
                   last_error = NULL, rejection = NULL, updated_at = excluded.updated_at, actor_cf = excluded.actor_cf, \
                   office = excluded.office, status_url = NULL, news_at = NULL, polls = 0, \
                   waits_for = excluded.waits_for, uses = excluded.uses",
            )
            .bind(id.0)
            .bind(&filing.institution)
            .bind(i32::try_from(position).unwrap_or(i32::MAX))
            .bind(&filing.filing_kind)
            .bind(filing.payload.to_string())
            .bind(submission.submitted_at)
            .bind(submission.actor.as_str())
            .bind(&filing.office)
            .bind(if filing.waits_for.is_some() { "waiting" } else { "queued" })
            .bind(&filing.waits_for)
            .bind(serde_json::to_string(&filing.uses).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
            let key = DeliveryKey { practice_id: id, institution: filing.institution.clone() };
            let detail = serde_json::json!({ "reference": reference });
            log_event(&mut tx, &key, submission.submitted_at, "submitted", DeliveryState::Queued, &detail, None)
                .await?;
        }
        announce(&mut tx, id).await?;
        tx.commit().await?;
        self.practice(owner, id).await
    }

    async fn set_archived_once(
        &self,
        owner: &CodiceFiscale,
        id: PracticeId,
        archive: bool,
        now: OffsetDateTime,
    ) -> Result<Practice, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = $1 AND owner_cf = $2 FOR UPDATE"
        ))
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let practice = practice_row(&row)?.into_practice()?;
        let delivery_states: Vec<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE practice_id = $1")
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await?;
        let next = crate::archive_target(&practice, archive, &delivery_states)?;
        sqlx::query("UPDATE practices SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(next.as_str())
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        announce(&mut tx, id).await?;
        tx.commit().await?;
        self.practice(owner, id).await
    }
}
