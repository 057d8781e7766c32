//! [`crate::DelegationStore`] on PostgreSQL: sub-delegations and what each institution answered.

use crate::{unix_millis, StoreError};
use async_trait::async_trait;
use domain::identifiers::CodiceFiscale;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::time::Duration;
use time::OffsetDateTime;

use super::*;

const DELEGATION_COLUMNS: &str =
    "id, grantor_cf, delegate_cf, delegate_name, scope, valid_from, valid_until, note, created_at, ended, ended_at";

fn delegation_row(r: &PgRow) -> Result<crate::DelegationRow, sqlx::Error> {
    Ok(crate::DelegationRow {
        id: r.try_get("id")?,
        grantor_cf: r.try_get("grantor_cf")?,
        delegate_cf: r.try_get("delegate_cf")?,
        delegate_name: r.try_get("delegate_name")?,
        scope: r.try_get("scope")?,
        valid_from: r.try_get("valid_from")?,
        valid_until: r.try_get("valid_until")?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
        ended: r.try_get("ended")?,
        ended_at: r.try_get("ended_at")?,
    })
}

/// Reads whole delegations for the rows given: their institutions in one query.
async fn delegations_of(
    conn: &mut PgConnection,
    rows: Vec<PgRow>,
) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
    let rows = rows.iter().map(delegation_row).collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(&rows.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let institutions = sqlx::query(
        "SELECT delegation_id, institution, state, reference, reason FROM delegation_institutions \
         WHERE delegation_id IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY institution",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(crate::DelegationInstitutionRow {
            delegation_id: r.try_get("delegation_id")?,
            institution: r.try_get("institution")?,
            state: r.try_get("state")?,
            reference: r.try_get("reference")?,
            reason: r.try_get("reason")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    crate::assemble_delegations(rows, institutions)
}

impl PostgresStore {
    /// Delegations whose `column` (`grantor_cf` or `delegate_cf`) is `who`, newest first.
    async fn delegations_by(
        &self,
        column: &'static str,
        who: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {DELEGATION_COLUMNS} FROM delegations WHERE {column} = $1 ORDER BY created_at DESC, id LIMIT 500"
        ))
        .bind(who.as_str())
        .fetch_all(&mut *conn)
        .await?;
        delegations_of(&mut conn, rows).await
    }
}

#[async_trait]
impl crate::DelegationStore for PostgresStore {
    async fn create_delegation(&self, d: &domain::delegation::Delegation) -> Result<(), StoreError> {
        crate::retry_contention(&self.contention, || self.create_delegation_once(d)).await
    }

    async fn delegation(
        &self,
        id: domain::delegation::DelegationId,
    ) -> Result<domain::delegation::Delegation, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = $1"))
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
        delegations_of(&mut conn, rows).await?.pop().ok_or(StoreError::NotFound)
    }

    async fn delegations_granted(
        &self,
        grantor: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        self.delegations_by("grantor_cf", grantor).await
    }

    async fn delegations_received(
        &self,
        delegate: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        self.delegations_by("delegate_cf", delegate).await
    }

    async fn end_delegation(
        &self,
        id: domain::delegation::DelegationId,
        ending: domain::delegation::Ending,
        now: OffsetDateTime,
    ) -> Result<domain::delegation::Delegation, StoreError> {
        crate::retry_contention(&self.contention, || self.end_delegation_once(id, ending, now)).await
    }

    async fn claim_delegation_notices(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<crate::DelegationNotice>, StoreError> {
        crate::retry_contention(&self.contention, || self.claim_delegation_notices_once(now, lease, limit)).await
    }

    async fn note_expiry(&self, id: domain::delegation::DelegationId) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE delegations SET expiry_recorded = 1 WHERE id = $1 AND expiry_recorded = 0")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_notice(
        &self,
        id: domain::delegation::DelegationId,
        institution: &str,
        kind: crate::NoticeKind,
        answer: &crate::NoticeAnswer,
    ) -> Result<(), StoreError> {
        let (state, reference, reason, notice, retry_at) = crate::notice_columns(kind, answer);
        // Only the notice that was claimed is settled: a revocation queued meanwhile stays.
        sqlx::query(
            "UPDATE delegation_institutions SET state = COALESCE($1, state), reference = COALESCE($2, reference), \
             reason = $3, notice = CASE WHEN notice = $4 THEN $5 ELSE notice END, \
             next_attempt_at = CASE WHEN notice = $4 THEN $6 ELSE next_attempt_at END, lease_until = NULL \
             WHERE delegation_id = $7 AND institution = $8",
        )
        .bind(state)
        .bind(reference)
        .bind(reason)
        .bind(kind.as_str())
        .bind(notice)
        .bind(retry_at)
        .bind(id.to_string())
        .bind(institution)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The transactions behind the trait's methods, each run again by [`crate::retry_contention`]
/// when it loses to a concurrent one.
impl PostgresStore {
    async fn create_delegation_once(&self, d: &domain::delegation::Delegation) -> Result<(), StoreError> {
        let scope = serde_json::to_string(&d.scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO delegations (id, grantor_cf, delegate_cf, scope, valid_from, valid_until, note, created_at, \
             delegate_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(d.id.to_string())
        .bind(d.grantor.as_str())
        .bind(d.delegate.as_str())
        .bind(scope)
        .bind(unix_millis(d.valid_from))
        .bind(unix_millis(d.valid_until))
        .bind(&d.note)
        .bind(unix_millis(d.created_at))
        .bind(&d.delegate_name)
        .execute(&mut *tx)
        .await?;
        for institution in &d.scope.institutions {
            sqlx::query(
                "INSERT INTO delegation_institutions (delegation_id, institution, state, notice) \
                 VALUES ($1, $2, 'pending', 'grant')",
            )
            .bind(d.id.to_string())
            .bind(institution)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn end_delegation_once(
        &self,
        id: domain::delegation::DelegationId,
        ending: domain::delegation::Ending,
        now: OffsetDateTime,
    ) -> Result<domain::delegation::Delegation, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ended: Option<Option<String>> =
            sqlx::query_scalar("SELECT ended FROM delegations WHERE id = $1 FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        match ended {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Err(StoreError::DelegationEnded),
            Some(None) => {}
        }
        sqlx::query("UPDATE delegations SET ended = $1, ended_at = $2 WHERE id = $3")
            .bind(ending.as_str())
            .bind(unix_millis(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE delegation_institutions SET notice = 'revoke', attempts = 0, next_attempt_at = NULL, \
             lease_until = NULL WHERE delegation_id = $1 AND state <> 'refused'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        crate::DelegationStore::delegation(self, id).await
    }

    async fn claim_delegation_notices_once(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<crate::DelegationNotice>, StoreError> {
        let now_ms = unix_millis(now);
        let until_ms = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "WITH due AS ( \
               SELECT delegation_id, institution FROM delegation_institutions \
               WHERE notice IS NOT NULL AND COALESCE(next_attempt_at, 0) <= $1 AND COALESCE(lease_until, 0) <= $1 \
               ORDER BY COALESCE(next_attempt_at, 0) LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE delegation_institutions d SET lease_until = $3, attempts = d.attempts + 1 FROM due \
             WHERE d.delegation_id = due.delegation_id AND d.institution = due.institution \
             RETURNING d.delegation_id, d.institution, d.notice, d.attempts::bigint AS attempts",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(until_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut notices = Vec::with_capacity(claimed.len());
        for r in &claimed {
            let id: String = r.try_get("delegation_id")?;
            let notice: String = r.try_get("notice")?;
            let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = $1"))
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?;
            let delegation = delegations_of(&mut tx, rows).await?.pop().ok_or(StoreError::NotFound)?;
            notices.push(crate::DelegationNotice {
                delegation,
                institution: r.try_get("institution")?,
                kind: crate::NoticeKind::parse(&notice)
                    .ok_or_else(|| StoreError::Corrupt(format!("notice {notice}")))?,
                attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            });
        }
        tx.commit().await?;
        Ok(notices)
    }
}
