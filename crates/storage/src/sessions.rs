//! The browser sessions' port ([`SessionStore`]).

use async_trait::async_trait;
use domain::identifiers::CodiceFiscale;

use crate::*;

/// A browser session as stored: the id itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session id, hex.
    pub id_hash: String,
    pub holder: CodiceFiscale,
    /// The card's certificate fingerprint: the session only works with that card.
    pub fingerprint: String,
    pub csrf_token: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// Most sessions one card (holder and certificate) keeps at once: opening one more ends its
/// oldest, so that a client that never keeps its cookie cannot fill the table with a new
/// session per request.
pub const SESSIONS_PER_CARD: i64 = 8;

/// The oldest sessions of the card that just opened `$new` (placeholders `$1` holder, `$2`
/// fingerprint, `$3` the new session's hash, `$4` [`SESSIONS_PER_CARD`] − 1): the same text for
/// both backends, `?N` on SQLite.
pub(crate) const TRIM_SESSIONS: &str = "DELETE FROM sessions WHERE holder_cf = $1 AND fingerprint = $2 \
     AND id_hash <> $3 AND id_hash NOT IN (SELECT id_hash FROM sessions WHERE holder_cf = $1 \
     AND fingerprint = $2 AND id_hash <> $3 ORDER BY created_at DESC, id_hash LIMIT $4)";

/// Browser sessions, shared by every portal process on the same database.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session; the card's oldest beyond [`SESSIONS_PER_CARD`] end in the same
    /// transaction.
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity (for the idle timeout).
    async fn touch_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Removes sessions idle since `idle_before` or created before `created_before`.
    async fn delete_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError>;
}

pub(crate) fn session_record(
    id_hash: String,
    holder: String,
    fingerprint: String,
    csrf_token: String,
    created_at: i64,
    last_seen_at: i64,
) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        holder: CodiceFiscale::parse(&holder).map_err(|_| StoreError::Corrupt(format!("session holder {holder}")))?,
        id_hash,
        fingerprint,
        csrf_token,
        created_at,
        last_seen_at,
    })
}
