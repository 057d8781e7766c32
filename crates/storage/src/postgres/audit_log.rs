//! [`crate::audit::AuditLog`] on PostgreSQL: the hash-chained audit trail.

use crate::StoreError;
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::*;

/// Key of the advisory lock that serialises audit appends ("audit" in ASCII).
const AUDIT_LOCK: i64 = 0x61_75_64_69_74;

#[async_trait]
impl crate::audit::AuditLog for PostgresStore {
    async fn append_audit(
        &self,
        record: &crate::audit::NewAuditRecord,
    ) -> Result<crate::audit::AuditRecord, StoreError> {
        crate::retry_contention(&self.contention, || self.append_audit_once(record)).await
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, responsible, action, detail, prev_hash, hash FROM audit_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(audit_row(r)?)).collect()
    }

    async fn audit_head(&self) -> Result<Option<crate::audit::AuditHead>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(row) => Some(crate::audit::AuditHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? }),
            None => None,
        })
    }

    async fn audit_for(&self, responsible: &str, limit: u32) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, responsible, action, detail, prev_hash, hash FROM audit_log \
             WHERE responsible = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(responsible)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(audit_row(r)?)).collect()
    }
}

fn audit_row(r: &PgRow) -> Result<crate::audit::AuditRecord, sqlx::Error> {
    Ok(crate::audit::AuditRecord {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at_ms")?,
        actor: r.try_get("actor")?,
        responsible: r.try_get("responsible")?,
        action: r.try_get("action")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// The transactions behind the trait's methods, each run again by [`crate::retry_contention`]
/// when it loses to a concurrent one.
impl PostgresStore {
    async fn append_audit_once(
        &self,
        record: &crate::audit::NewAuditRecord,
    ) -> Result<crate::audit::AuditRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One append at a time across every process: each needs the previous hash.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut *tx).await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&mut *tx).await?;
        let head = match head {
            Some(row) => Some(crate::audit::AuditHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? }),
            None => None,
        };
        let r = crate::audit::next_record(head.as_ref(), record);
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, actor, responsible, action, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.seq)
        .bind(r.at_ms)
        .bind(&r.actor)
        .bind(&r.responsible)
        .bind(&r.action)
        .bind(&r.detail)
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash")
            .bind(r.seq)
            .bind(&r.hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r)
    }
}
