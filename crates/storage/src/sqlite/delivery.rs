//! [`crate::DeliveryQueue`] on SQLite: the outbox the worker claims, and what the institutions say.

use crate::{
    data_json, event_kind, merged_values, plan_record, unix_millis, update_detail, ClaimedDelivery, CurrentDelivery,
    DeliveryKey, DeliveryQueue, DeliveryUpdate, PollItem, PollPace, Recorded, StoreError, TimelineEntry,
};
use async_trait::async_trait;
use domain::delivery::{DeliveryEvent, DeliveryState};
use domain::identifiers::CodiceFiscale;
use domain::practice::{Delivery, PracticeData, PracticeEvent, PracticeId};
use serde_json::Value;
use sqlx::Row;
use std::time::Duration;
use time::OffsetDateTime;

use super::*;

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now_ms = unix_millis(now);
        let until_ms = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.write(async |tx| {
            let rows = sqlx::query(
                "UPDATE deliveries SET lease_until = ?, fence = fence + 1, attempts = attempts + 1 \
                 WHERE rowid IN (SELECT rowid FROM deliveries WHERE state = 'queued' \
                   AND COALESCE(next_attempt_at, 0) <= ? AND COALESCE(lease_until, 0) <= ? \
                   ORDER BY COALESCE(next_attempt_at, 0) LIMIT ?) \
                 RETURNING practice_id, institution, fence, attempts, revision, filing_kind, payload, office",
            )
            .bind(until_ms)
            .bind(now_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for r in &rows {
                let practice_id: String = r.try_get("practice_id")?;
                let id =
                    PracticeId::parse(&practice_id).ok_or_else(|| StoreError::Corrupt(format!("id {practice_id}")))?;
                let p = sqlx::query(
                    "SELECT p.owner_cf, COALESCE(d.actor_cf, p.owner_cf) AS actor_cf, p.reference, p.service_id \
                     FROM practices p JOIN deliveries d ON d.practice_id = p.id WHERE p.id = ? AND d.institution = ?",
                )
                .bind(&practice_id)
                .bind(r.try_get::<String, _>("institution")?)
                .fetch_one(&mut *tx)
                .await?;
                let owner: String = p.try_get("owner_cf")?;
                let actor: String = p.try_get("actor_cf")?;
                let payload: String = r.try_get("payload")?;
                claimed.push(ClaimedDelivery {
                    actor: CodiceFiscale::parse(&actor).map_err(|_| StoreError::Corrupt(format!("actor {actor}")))?,
                    key: DeliveryKey { practice_id: id, institution: r.try_get("institution")? },
                    fence: r.try_get("fence")?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    revision: u32::try_from(r.try_get::<i64, _>("revision")?).unwrap_or(0),
                    filing_kind: r.try_get("filing_kind")?,
                    payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    reference: p.try_get::<Option<String>, _>("reference")?.unwrap_or_default(),
                    owner: CodiceFiscale::parse(&owner).map_err(|_| StoreError::Corrupt(format!("owner {owner}")))?,
                    service_id: p.try_get("service_id")?,
                    office: r.try_get("office")?,
                });
            }
            Ok(claimed)
        })
        .await
    }

    async fn claim_for_poll(
        &self,
        institution: &str,
        now: OffsetDateTime,
        pace: PollPace,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let now_ms = unix_millis(now);
        let (first_ms, max_ms) = pace.millis();
        self.write(async |tx| {
            let keys = sqlx::query(
                "UPDATE deliveries SET next_attempt_at = ? + MIN(?, ? * (1 << MIN(polls, 20))), polls = polls + 1 \
                 WHERE rowid IN (SELECT rowid FROM deliveries \
                   WHERE institution = ? AND state IN ('delivered', 'taken_in_charge') \
                   AND next_attempt_at IS NOT NULL AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) \
                 RETURNING practice_id",
            )
            .bind(now_ms)
            .bind(max_ms)
            .bind(first_ms)
            .bind(institution)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            let mut items = Vec::with_capacity(keys.len());
            for k in &keys {
                let practice_id: String = k.try_get("practice_id")?;
                let r = sqlx::query(&format!("{POLL_ITEM_SELECT} WHERE d.practice_id = ? AND d.institution = ?"))
                    .bind(&practice_id)
                    .bind(institution)
                    .fetch_one(&mut *tx)
                    .await?;
                items.push(poll_item(&r)?);
            }
            Ok(items)
        })
        .await
    }

    async fn silent_since(
        &self,
        institution: &str,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "{POLL_ITEM_SELECT} WHERE d.institution = ? AND d.state IN ('delivered', 'taken_in_charge') \
             AND d.news_at IS NOT NULL AND d.news_at <= ? ORDER BY d.news_at LIMIT ?"
        ))
        .bind(institution)
        .bind(unix_millis(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(poll_item).collect()
    }

    async fn record(&self, key: &DeliveryKey, update: &DeliveryUpdate) -> Result<Recorded, StoreError> {
        let (recorded, changed) = self.write(async |tx| {
            let row = sqlx::query(&format!(
                "SELECT {DELIVERY_COLUMNS}, d.fence FROM deliveries d WHERE d.practice_id = ? AND d.institution = ?"
            ))
            .bind(key.practice_id.to_string())
            .bind(&key.institution)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            if !super::first_use(&mut *tx, &update.tokens, crate::unix_millis(update.at)).await? {
                return Ok((Recorded::Replayed, false));
            }
            if let Some(message_id) = &update.message_id {
                let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM delivery_events WHERE message_id = ?")
                    .bind(message_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if seen.is_some() {
                    return Ok((Recorded::Duplicate, false));
                }
            }
            let current = CurrentDelivery { status: delivery_row(&row)?.status()?, fence: row.try_get("fence")? };
            let plan = plan_record(&current, update);
            if let Some(status) = &plan.status {
                write_status(&mut *tx, key, status, update.at).await?;
            }
            if plan.recorded != Recorded::LostLease && (update.is_news() || update.status_url.is_some()) {
                let current_values: String = row.try_get("news_values")?;
                let news_at = plan.status.as_ref().filter(|_| update.is_news()).map(|_| unix_millis(update.at));
                sqlx::query(
                    "UPDATE deliveries SET news_at = COALESCE(?, news_at), status_url = COALESCE(?, status_url), \
                     news_values = ? WHERE practice_id = ? AND institution = ?",
                )
                .bind(news_at)
                .bind(&update.status_url)
                .bind(merged_values(&current_values, update))
                .bind(key.practice_id.to_string())
                .bind(&key.institution)
                .execute(&mut *tx)
                .await?;
            }
            if plan.status.as_ref().is_some_and(|s| s.state == DeliveryState::Accepted) {
                release_dependants(&mut *tx, key, update.at).await?;
            }
            if plan.release_lease {
                let retry = update.next_at.map(unix_millis);
                sqlx::query("UPDATE deliveries SET lease_until = NULL, next_attempt_at = ? WHERE practice_id = ? AND institution = ?")
                    .bind(retry)
                    .bind(key.practice_id.to_string())
                    .bind(&key.institution)
                    .execute(&mut *tx)
                    .await?;
            }
            if plan.log {
                let state = plan.status.as_ref().map_or(current.status.state, |s| s.state);
                let detail = update_detail(update, &plan.recorded);
                log_event(&mut *tx, key, update.at, event_kind(&update.event), state, &detail, update.message_id.as_deref())
                    .await?;
            }
            if plan.status.is_some() {
                follow_deliveries(&mut *tx, key.practice_id, update.at).await?;
            }
            Ok((plan.recorded, plan.status.is_some()))
        })
        .await?;
        if changed {
            self.changed(key.practice_id);
        }
        Ok(recorded)
    }

    async fn resend(
        &self,
        owner: &CodiceFiscale,
        key: &DeliveryKey,
        correction: Option<(&PracticeData, &Value)>,
        now: OffsetDateTime,
    ) -> Result<Delivery, StoreError> {
        let row = self
            .write(async |tx| {
                let practice_state = owned_state(&mut *tx, owner, key.practice_id).await?;
                let practice_next =
                    practice_state.apply(PracticeEvent::Resent).map_err(|_| StoreError::WrongState(practice_state))?;
                let row = sqlx::query(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.practice_id = ? AND d.institution = ?"
                ))
                .bind(key.practice_id.to_string())
                .bind(&key.institution)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
                let status = delivery_row(&row)?.status()?;
                let event = if correction.is_some() { DeliveryEvent::ResendCorrected } else { DeliveryEvent::Resend };
                let next = match domain::delivery::apply(&status, &event) {
                    Ok(domain::delivery::Applied::Changed(next)) => next,
                    _ => return Err(StoreError::WrongDeliveryState(status.state)),
                };
                write_status(&mut *tx, key, &next, now).await?;
                sqlx::query(
                    "UPDATE deliveries SET attempts = 0, next_attempt_at = NULL, lease_until = NULL, polls = 0, \
                 status_url = NULL, news_at = NULL WHERE practice_id = ? AND institution = ?",
                )
                .bind(key.practice_id.to_string())
                .bind(&key.institution)
                .execute(&mut *tx)
                .await?;
                if let Some((data, payload)) = correction {
                    sqlx::query("UPDATE deliveries SET payload = ? WHERE practice_id = ? AND institution = ?")
                        .bind(payload.to_string())
                        .bind(key.practice_id.to_string())
                        .bind(&key.institution)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE practices SET data = ? WHERE id = ?")
                        .bind(data_json(data))
                        .bind(key.practice_id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("UPDATE practices SET state = ?, needs_resend = 0, updated_at = ? WHERE id = ?")
                    .bind(practice_next.as_str())
                    .bind(now)
                    .bind(key.practice_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                // Another recipient may still wait for a correction of its own.
                super::follow_deliveries(&mut *tx, key.practice_id, now).await?;
                log_event(
                    &mut *tx,
                    key,
                    now,
                    event_kind(&event),
                    next.state,
                    &serde_json::json!({ "revision": next.revision }),
                    None,
                )
                .await?;
                let row = sqlx::query(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.practice_id = ? AND d.institution = ?"
                ))
                .bind(key.practice_id.to_string())
                .bind(&key.institution)
                .fetch_one(&mut *tx)
                .await?;
                Ok(row)
            })
            .await?;
        self.changed(key.practice_id);
        delivery_row(&row)?.into_delivery()
    }

    async fn service_of(&self, id: PracticeId) -> Result<String, StoreError> {
        let service: Option<String> = sqlx::query_scalar("SELECT service_id FROM practices WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        service.ok_or(StoreError::NotFound)
    }

    async fn timeline(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.institution, e.at, e.kind, e.state, e.detail FROM delivery_events e \
             JOIN practices p ON p.id = e.practice_id WHERE p.id = ? AND p.owner_cf = ? ORDER BY e.id",
        )
        .bind(id.to_string())
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                let detail: String = r.try_get("detail")?;
                Ok(TimelineEntry {
                    institution: r.try_get("institution")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    state: DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?,
                    detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}
