//! [`crate::SessionStore`] on PostgreSQL: the browser sessions.

use crate::StoreError;
use async_trait::async_trait;
use sqlx::Row;

use super::*;

#[async_trait]
impl crate::SessionStore for PostgresStore {
    async fn create_session(&self, session: &crate::SessionRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, holder_cf, fingerprint, csrf_token, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.id_hash)
        .bind(session.holder.as_str())
        .bind(&session.fingerprint)
        .bind(&session.csrf_token)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(crate::TRIM_SESSIONS)
            .bind(session.holder.as_str())
            .bind(&session.fingerprint)
            .bind(&session.id_hash)
            .bind(crate::SESSIONS_PER_CARD - 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<crate::SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, holder_cf, fingerprint, csrf_token, created_at, last_seen_at FROM sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            crate::session_record(
                r.try_get("id_hash")?,
                r.try_get("holder_cf")?,
                r.try_get("fingerprint")?,
                r.try_get("csrf_token")?,
                r.try_get("created_at")?,
                r.try_get("last_seen_at")?,
            )
        })
        .transpose()
    }

    async fn touch_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $1")
            .bind(now_ms)
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
