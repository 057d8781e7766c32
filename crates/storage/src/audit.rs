//! The audit trail ("registro degli accessi e delle operazioni"): every act appended to a
//! hash-chained log.
//!
//! Each record carries the SHA-256 of the previous record (`prev_hash`) and its own hash over
//! its sequence number, time, actor, responsible person, action, detail and `prev_hash`; the
//! first record's `prev_hash` is 64 zeros. A separate one-row table (`audit_head`) keeps the
//! last sequence number and hash, written in the same transaction as each record, so even the
//! deletion of the newest record shows. [`verify`] walks the chain and names the first record
//! that does not hold: an edited row (its hash no longer matches), a deleted one (a gap in the
//! sequence or a broken link), rows swapped (broken links), or a head that disagrees.
//!
//! The detail is stored as the exact JSON text that was hashed (never re-serialised by the
//! database), and times as unix milliseconds, so both adapters hash the same bytes.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::StoreError;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An act to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditRecord {
    pub at: OffsetDateTime,
    /// Who acted (codice fiscale, `institution:<id>`, or `system`).
    pub actor: String,
    /// Who answers for the act: the actor, or the grantor of the delegation the actor used.
    pub responsible: String,
    /// `login`, `login_refused`, `draft_saved`, `submitted`, `resent`, `callback`, ...
    pub action: String,
    pub detail: Value,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub actor: String,
    pub responsible: String,
    pub action: String,
    /// The detail's JSON text, exactly as hashed.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The last record, as `audit_head` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

fn unit(field: &str) -> String {
    // Length-prefixed, so no choice of values can make two records hash alike.
    format!("{}:{field}", field.len())
}

/// The hash of a record with these contents.
pub fn record_hash(
    seq: i64,
    at_ms: i64,
    actor: &str,
    responsible: &str,
    action: &str,
    detail: &str,
    prev: &str,
) -> String {
    let text = [
        unit(&seq.to_string()),
        unit(&at_ms.to_string()),
        unit(actor),
        unit(responsible),
        unit(action),
        unit(detail),
        unit(prev),
    ]
    .join("|");
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// The record that follows `head` (or starts the chain).
pub fn next_record(head: Option<&AuditHead>, new: &NewAuditRecord) -> AuditRecord {
    let (seq, prev_hash) = match head {
        Some(h) => (h.seq + 1, h.hash.clone()),
        None => (1, GENESIS.to_string()),
    };
    let detail = new.detail.to_string();
    let at_ms = crate::unix_millis(new.at);
    let hash = record_hash(seq, at_ms, &new.actor, &new.responsible, &new.action, &detail, &prev_hash);
    AuditRecord {
        seq,
        at_ms,
        actor: new.actor.clone(),
        responsible: new.responsible.clone(),
        action: new.action.clone(),
        detail,
        prev_hash,
        hash,
    }
}

/// Where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("record {seq}: its contents do not match its hash (edited)")]
    Edited { seq: i64 },
    #[error("record {seq}: expected sequence number {expected} (a record is missing or out of place)")]
    Gap { seq: i64, expected: i64 },
    #[error("record {seq}: it does not follow the record before it (removed, inserted or reordered)")]
    Unlinked { seq: i64 },
    #[error(
        "the chain ends at record {last} but the head records {head} (records removed at the end or the head altered)"
    )]
    Head { last: i64, head: i64 },
}

impl Broken {
    /// The first record that does not hold.
    pub fn seq(&self) -> i64 {
        match self {
            Self::Edited { seq } | Self::Gap { seq, .. } | Self::Unlinked { seq } => *seq,
            Self::Head { last, .. } => *last,
        }
    }
}

/// Checks records in the order the log stores them, page by page.
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<AuditHead>,
    checked: u64,
}

impl Verifier {
    /// The next record in storage order.
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), Broken> {
        let (expected_seq, expected_prev) = match &self.last {
            Some(h) => (h.seq + 1, h.hash.as_str()),
            None => (1, GENESIS),
        };
        if r.seq != expected_seq {
            return Err(Broken::Gap { seq: r.seq, expected: expected_seq });
        }
        if record_hash(r.seq, r.at_ms, &r.actor, &r.responsible, &r.action, &r.detail, &r.prev_hash) != r.hash {
            return Err(Broken::Edited { seq: r.seq });
        }
        if r.prev_hash != expected_prev {
            return Err(Broken::Unlinked { seq: r.seq });
        }
        self.last = Some(AuditHead { seq: r.seq, hash: r.hash.clone() });
        self.checked += 1;
        Ok(())
    }

    /// After the last record: the head must name it. Returns how many records hold.
    pub fn finish(self, head: Option<&AuditHead>) -> Result<u64, Broken> {
        let last = self.last.as_ref().map_or(0, |h| h.seq);
        match (head, &self.last) {
            (None, None) => Ok(0),
            (Some(h), Some(l)) if h == l => Ok(self.checked),
            (h, _) => Err(Broken::Head { last, head: h.map_or(0, |h| h.seq) }),
        }
    }
}

/// The audit trail's port.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Appends a record after the current head, atomically with the head.
    async fn append_audit(&self, record: &NewAuditRecord) -> Result<AuditRecord, StoreError>;

    /// Records with `seq > after`, in storage order (by `seq`), at most `limit`.
    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// The head, if any record was ever appended.
    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError>;

    /// The acts a person answers for (newest first), at most `limit`.
    async fn audit_for(&self, responsible: &str, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Walks the whole log in pages: the number of records that hold, or the first that does not.
pub async fn verify(log: &dyn AuditLog) -> Result<Result<u64, Broken>, StoreError> {
    // The head is read first: records appended while verifying come after it and are ignored.
    let head = log.audit_head().await?;
    let mut verifier = Verifier::default();
    let mut after = 0;
    loop {
        let page = log.audit_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            if head.as_ref().is_some_and(|h| r.seq > h.seq) {
                // Appended after the head was read: not part of this check.
                return Ok(verifier.finish(head.as_ref()));
            }
            if let Err(broken) = verifier.check(r) {
                return Ok(Err(broken));
            }
        }
    }
    Ok(verifier.finish(head.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let head = out.last().map(|r| AuditHead { seq: r.seq, hash: r.hash.clone() });
            let new = NewAuditRecord {
                at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i as i64),
                actor: "RSSMRA45C12F205C".into(),
                responsible: "RSSMRA45C12F205C".into(),
                action: "login".into(),
                detail: serde_json::json!({ "n": i }),
            };
            out.push(next_record(head.as_ref(), &new));
        }
        out
    }

    fn check(records: &[AuditRecord], head: Option<&AuditHead>) -> Result<u64, Broken> {
        let mut v = Verifier::default();
        for r in records {
            v.check(r)?;
        }
        v.finish(head)
    }

    fn head_of(records: &[AuditRecord]) -> AuditHead {
        let last = records.last().expect("records");
        AuditHead { seq: last.seq, hash: last.hash.clone() }
    }

    #[test]
    fn an_intact_chain_holds() {
        let records = chain(5);
        assert_eq!(check(&records, Some(&head_of(&records))), Ok(5));
        assert_eq!(check(&[], None), Ok(0));
    }

    #[test]
    fn every_kind_of_tampering_names_the_first_broken_record() {
        let records = chain(5);
        let head = head_of(&records);

        let mut edited = records.clone();
        edited[2].detail = "{\"n\":99}".into();
        assert_eq!(check(&edited, Some(&head)), Err(Broken::Edited { seq: 3 }));

        let mut deleted = records.clone();
        deleted.remove(1);
        assert_eq!(check(&deleted, Some(&head)), Err(Broken::Gap { seq: 3, expected: 2 }));

        // Swapped contents, sequence numbers left in place.
        let mut swapped = records.clone();
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = AuditRecord { seq: 2, ..b };
        swapped[2] = AuditRecord { seq: 3, ..a };
        assert_eq!(check(&swapped, Some(&head)), Err(Broken::Edited { seq: 2 }));

        let truncated = &records[..4];
        assert_eq!(check(truncated, Some(&head)), Err(Broken::Head { last: 4, head: 5 }));

        // A record rewritten with a fresh hash still breaks the link to the next one.
        let mut rehashed = records.clone();
        rehashed[2].detail = "{\"n\":99}".into();
        let r = &rehashed[2];
        rehashed[2].hash = record_hash(r.seq, r.at_ms, &r.actor, &r.responsible, &r.action, &r.detail, &r.prev_hash);
        assert_eq!(check(&rehashed, Some(&head)), Err(Broken::Unlinked { seq: 4 }));
    }
}
