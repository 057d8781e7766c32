//! [`crate::DelegationStore`] on SQLite: sub-delegations and what each institution answered.

use crate::{unix_millis, StoreError};
use async_trait::async_trait;
use domain::identifiers::CodiceFiscale;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::time::Duration;
use time::OffsetDateTime;

use super::*;

const DELEGATION_COLUMNS: &str =
    "id, grantor_cf, delegate_cf, delegate_name, scope, valid_from, valid_until, note, created_at, ended, ended_at";

fn delegation_row(r: &SqliteRow) -> Result<crate::DelegationRow, sqlx::Error> {
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
    conn: &mut SqliteConnection,
    rows: Vec<SqliteRow>,
) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
    let rows = rows.iter().map(delegation_row).collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(&rows.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let institutions = sqlx::query(
        "SELECT delegation_id, institution, state, reference, reason FROM delegation_institutions \
         WHERE delegation_id IN (SELECT value FROM json_each(?)) ORDER BY institution",
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

impl SqliteStore {
    /// Delegations whose `column` (`grantor_cf` or `delegate_cf`) is `who`, newest first.
    async fn delegations_by(
        &self,
        column: &'static str,
        who: &CodiceFiscale,
    ) -> Result<Vec<domain::delegation::Delegation>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {DELEGATION_COLUMNS} FROM delegations WHERE {column} = ? ORDER BY created_at DESC, id LIMIT 500"
        ))
        .bind(who.as_str())
        .fetch_all(&mut *conn)
        .await?;
        delegations_of(&mut conn, rows).await
    }
}

#[async_trait]
impl crate::DelegationStore for SqliteStore {
    async fn create_delegation(&self, d: &domain::delegation::Delegation) -> Result<(), StoreError> {
        let scope = serde_json::to_string(&d.scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(async |tx| {
            sqlx::query(
                "INSERT INTO delegations (id, grantor_cf, delegate_cf, scope, valid_from, valid_until, note, created_at, \
                 delegate_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                     VALUES (?, ?, 'pending', 'grant')",
                )
                .bind(d.id.to_string())
                .bind(institution)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
        .await
    }

    async fn delegation(
        &self,
        id: domain::delegation::DelegationId,
    ) -> Result<domain::delegation::Delegation, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = ?"))
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
        self.write(async |tx| {
            let ended: Option<Option<String>> = sqlx::query_scalar("SELECT ended FROM delegations WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            match ended {
                None => return Err(StoreError::NotFound),
                Some(Some(_)) => return Err(StoreError::DelegationEnded),
                Some(None) => {}
            }
            sqlx::query("UPDATE delegations SET ended = ?, ended_at = ? WHERE id = ?")
                .bind(ending.as_str())
                .bind(unix_millis(now))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE delegation_institutions SET notice = 'revoke', attempts = 0, next_attempt_at = NULL, \
                 lease_until = NULL WHERE delegation_id = ? AND state <> 'refused'",
            )
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await?;
        self.delegation(id).await
    }

    async fn claim_delegation_notices(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<crate::DelegationNotice>, StoreError> {
        let now_ms = unix_millis(now);
        let until_ms = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.write(async |tx| {
            let claimed = sqlx::query(
                "UPDATE delegation_institutions SET lease_until = ?, attempts = attempts + 1 \
                 WHERE rowid IN (SELECT rowid FROM delegation_institutions WHERE notice IS NOT NULL \
                   AND COALESCE(next_attempt_at, 0) <= ? AND COALESCE(lease_until, 0) <= ? \
                   ORDER BY COALESCE(next_attempt_at, 0) LIMIT ?) \
                 RETURNING delegation_id, institution, notice, attempts",
            )
            .bind(until_ms)
            .bind(now_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            let mut notices = Vec::with_capacity(claimed.len());
            for r in &claimed {
                let id: String = r.try_get("delegation_id")?;
                let notice: String = r.try_get("notice")?;
                let rows = sqlx::query(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations WHERE id = ?"))
                    .bind(&id)
                    .fetch_all(&mut *tx)
                    .await?;
                let delegation = delegations_of(&mut *tx, rows).await?.pop().ok_or(StoreError::NotFound)?;
                notices.push(crate::DelegationNotice {
                    delegation,
                    institution: r.try_get("institution")?,
                    kind: crate::NoticeKind::parse(&notice)
                        .ok_or_else(|| StoreError::Corrupt(format!("notice {notice}")))?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                });
            }
            Ok(notices)
        })
        .await
    }

    async fn note_expiry(&self, id: domain::delegation::DelegationId) -> Result<bool, StoreError> {
        let done = self
            .write(async |tx| {
                Ok(sqlx::query("UPDATE delegations SET expiry_recorded = 1 WHERE id = ? AND expiry_recorded = 0")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?)
            })
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
        self.write(async |tx| {
            // Only the notice that was claimed is settled: a revocation queued meanwhile stays.
            sqlx::query(
                "UPDATE delegation_institutions SET state = COALESCE(?, state), reference = COALESCE(?, reference), \
                 reason = ?, notice = CASE WHEN notice = ? THEN ? ELSE notice END, \
                 next_attempt_at = CASE WHEN notice = ? THEN ? ELSE next_attempt_at END, lease_until = NULL \
                 WHERE delegation_id = ? AND institution = ?",
            )
            .bind(state)
            .bind(reference)
            .bind(reason)
            .bind(kind.as_str())
            .bind(notice)
            .bind(kind.as_str())
            .bind(retry_at)
            .bind(id.to_string())
            .bind(institution)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }
}
