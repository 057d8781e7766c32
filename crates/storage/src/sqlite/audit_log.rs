//! [`crate::audit::AuditLog`] on SQLite: the hash-chained audit trail.

use crate::StoreError;
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::*;

#[async_trait]
impl crate::audit::AuditLog for SqliteStore {
    async fn append_audit(
        &self,
        record: &crate::audit::NewAuditRecord,
    ) -> Result<crate::audit::AuditRecord, StoreError> {
        // The single writer and BEGIN IMMEDIATE serialise appends.
        self.write(async |tx| {
            let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&mut *tx).await?;
            let head = match head {
                Some(row) => Some(crate::audit::AuditHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? }),
                None => None,
            };
            let r = crate::audit::next_record(head.as_ref(), record);
            sqlx::query(
                "INSERT INTO audit_log (seq, at_ms, actor, responsible, action, detail, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
            sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")
                .bind(r.seq)
                .bind(&r.hash)
                .execute(&mut *tx)
                .await?;
            Ok(r)
        })
        .await
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, responsible, action, detail, prev_hash, hash FROM audit_log \
             WHERE seq > ? ORDER BY seq LIMIT ?",
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
             WHERE responsible = ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(responsible)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(audit_row(r)?)).collect()
    }
}

fn audit_row(r: &SqliteRow) -> Result<crate::audit::AuditRecord, sqlx::Error> {
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
