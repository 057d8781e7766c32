//! [`crate::DeliveryQueue`] on PostgreSQL: the outbox the worker claims, and what the institutions say.

use crate::{
    data_json, event_kind, plan_record, update_detail, ClaimedDelivery, CurrentDelivery, DeliveryKey, DeliveryQueue,
    DeliveryUpdate, PollItem, PollPace, Recorded, StoreError, TimelineEntry,
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
impl DeliveryQueue for PostgresStore {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let until = now + lease;
        let rows = sqlx::query(
            "WITH due AS ( \
               SELECT practice_id, institution FROM deliveries \
               WHERE state = 'queued' AND COALESCE(next_attempt_at, '-infinity') <= $1 \
                 AND COALESCE(lease_until, '-infinity') <= $1 \
               ORDER BY COALESCE(next_attempt_at, '-infinity') LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET lease_until = $3, fence = d.fence + 1, attempts = d.attempts + 1 \
             FROM due, practices p \
             WHERE d.practice_id = due.practice_id AND d.institution = due.institution AND p.id = d.practice_id \
             RETURNING d.practice_id::text AS practice_id, d.institution, d.fence, d.attempts::bigint AS attempts, \
               d.revision::bigint AS revision, d.filing_kind, d.payload::text AS payload, p.owner_cf, COALESCE(d.actor_cf, p.owner_cf) AS actor_cf, \
               p.reference, p.service_id, d.office",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let practice_id: String = r.try_get("practice_id")?;
                let owner: String = r.try_get("owner_cf")?;
                let actor: String = r.try_get("actor_cf")?;
                let payload: String = r.try_get("payload")?;
                Ok(ClaimedDelivery {
                    actor: CodiceFiscale::parse(&actor).map_err(|_| StoreError::Corrupt(format!("actor {actor}")))?,
                    key: DeliveryKey {
                        practice_id: PracticeId::parse(&practice_id)
                            .ok_or_else(|| StoreError::Corrupt(format!("id {practice_id}")))?,
                        institution: r.try_get("institution")?,
                    },
                    fence: r.try_get("fence")?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    revision: u32::try_from(r.try_get::<i64, _>("revision")?).unwrap_or(0),
                    filing_kind: r.try_get("filing_kind")?,
                    payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    reference: r.try_get::<Option<String>, _>("reference")?.unwrap_or_default(),
                    owner: CodiceFiscale::parse(&owner).map_err(|_| StoreError::Corrupt(format!("owner {owner}")))?,
                    service_id: r.try_get("service_id")?,
                    office: r.try_get("office")?,
                })
            })
            .collect()
    }

    async fn claim_for_poll(
        &self,
        institution: &str,
        now: OffsetDateTime,
        pace: PollPace,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let (first_ms, max_ms) = pace.millis();
        let rows = sqlx::query(&format!(
            "WITH due AS ( \
               SELECT practice_id, institution FROM deliveries \
               WHERE institution = $1 AND state IN ('delivered', 'taken_in_charge') \
                 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $2 \
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE deliveries d SET polls = d.polls + 1, next_attempt_at = $2 + make_interval(secs => \
                 LEAST($5::bigint, $4::bigint * (1::bigint << LEAST(d.polls, 20)))::double precision / 1000.0) \
               FROM due WHERE d.practice_id = due.practice_id AND d.institution = due.institution \
               RETURNING d.practice_id, d.institution) \
             {} JOIN claimed c ON c.practice_id = d.practice_id AND c.institution = d.institution",
            POLL_ITEM_SELECT
        ))
        .bind(institution)
        .bind(now)
        .bind(i64::from(limit))
        .bind(first_ms)
        .bind(max_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(poll_item).collect()
    }

    async fn silent_since(
        &self,
        institution: &str,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PollItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "{POLL_ITEM_SELECT} WHERE d.institution = $1 AND d.state IN ('delivered', 'taken_in_charge') \
             AND d.news_at IS NOT NULL AND d.news_at <= $2 ORDER BY d.news_at LIMIT $3"
        ))
        .bind(institution)
        .bind(crate::unix_millis(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(poll_item).collect()
    }

    async fn record(&self, key: &DeliveryKey, update: &DeliveryUpdate) -> Result<Recorded, StoreError> {
        crate::retry_contention(&self.contention, || self.record_once(key, update)).await
    }

    async fn resend(
        &self,
        owner: &CodiceFiscale,
        key: &DeliveryKey,
        correction: Option<(&PracticeData, &Value)>,
        now: OffsetDateTime,
    ) -> Result<Delivery, StoreError> {
        crate::retry_contention(&self.contention, || self.resend_once(owner, key, correction, now)).await
    }

    async fn service_of(&self, id: PracticeId) -> Result<String, StoreError> {
        let service: Option<String> = sqlx::query_scalar("SELECT service_id FROM practices WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        service.ok_or(StoreError::NotFound)
    }

    async fn timeline(&self, owner: &CodiceFiscale, id: PracticeId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.institution, e.at, e.kind, e.state, e.detail::text AS detail FROM delivery_events e \
             JOIN practices p ON p.id = e.practice_id WHERE p.id = $1 AND p.owner_cf = $2 ORDER BY e.id",
        )
        .bind(id.0)
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

/// The transactions behind the trait's methods, each run again by [`crate::retry_contention`]
/// when it loses to a concurrent one.
impl PostgresStore {
    async fn record_once(&self, key: &DeliveryKey, update: &DeliveryUpdate) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The practice first, then its delivery: the lock order of every transaction here.
        lock_practice(&mut tx, key.practice_id).await?;
        let row = locked_delivery(&mut tx, key).await?;
        if !first_use(&mut tx, &update.tokens, crate::unix_millis(update.at)).await? {
            return Ok(Recorded::Replayed);
        }
        if let Some(message_id) = &update.message_id {
            let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM delivery_events WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(&mut *tx)
                .await?;
            if seen.is_some() {
                return Ok(Recorded::Duplicate);
            }
        }
        let current = CurrentDelivery { status: delivery_row(&row)?.status()?, fence: row.try_get("fence")? };
        let plan = plan_record(&current, update);
        if let Some(status) = &plan.status {
            write_status(&mut tx, key, status, update.at).await?;
        }
        if plan.recorded != Recorded::LostLease && (update.is_news() || update.status_url.is_some()) {
            let current_values: String = row.try_get("news_values")?;
            let news_at = plan.status.as_ref().filter(|_| update.is_news()).map(|_| crate::unix_millis(update.at));
            sqlx::query(
                "UPDATE deliveries SET news_at = COALESCE($1, news_at), status_url = COALESCE($2, status_url), \
                 news_values = $3 WHERE practice_id = $4 AND institution = $5",
            )
            .bind(news_at)
            .bind(&update.status_url)
            .bind(crate::merged_values(&current_values, update))
            .bind(key.practice_id.0)
            .bind(&key.institution)
            .execute(&mut *tx)
            .await?;
        }
        if plan.status.as_ref().is_some_and(|s| s.state == DeliveryState::Accepted) {
            release_dependants(&mut tx, key, update.at).await?;
        }
        if plan.release_lease {
            let retry = update.next_at;
            sqlx::query(
                "UPDATE deliveries SET lease_until = NULL, next_attempt_at = $1 WHERE practice_id = $2 AND institution = $3",
            )
            .bind(retry)
            .bind(key.practice_id.0)
            .bind(&key.institution)
            .execute(&mut *tx)
            .await?;
        }
        if plan.log {
            let state = plan.status.as_ref().map_or(current.status.state, |s| s.state);
            let detail = update_detail(update, &plan.recorded);
            log_event(&mut tx, key, update.at, event_kind(&update.event), state, &detail, update.message_id.as_deref())
                .await?;
        }
        if plan.status.is_some() {
            follow_deliveries(&mut tx, key.practice_id, update.at).await?;
            announce(&mut tx, key.practice_id).await?;
        }
        tx.commit().await?;
        Ok(plan.recorded)
    }

    async fn resend_once(
        &self,
        owner: &CodiceFiscale,
        key: &DeliveryKey,
        correction: Option<(&PracticeData, &Value)>,
        now: OffsetDateTime,
    ) -> Result<Delivery, StoreError> {
        let mut tx = self.pool.begin().await?;
        let practice_state = lock_owned(&mut tx, owner, key.practice_id).await?;
        let practice_next =
            practice_state.apply(PracticeEvent::Resent).map_err(|_| StoreError::WrongState(practice_state))?;
        let row = locked_delivery(&mut tx, key).await?;
        let status = delivery_row(&row)?.status()?;
        let event = if correction.is_some() { DeliveryEvent::ResendCorrected } else { DeliveryEvent::Resend };
        let next = match domain::delivery::apply(&status, &event) {
            Ok(domain::delivery::Applied::Changed(next)) => next,
            _ => return Err(StoreError::WrongDeliveryState(status.state)),
        };
        write_status(&mut tx, key, &next, now).await?;
        sqlx::query(
            "UPDATE deliveries SET attempts = 0, next_attempt_at = NULL, lease_until = NULL, polls = 0, \
             status_url = NULL, news_at = NULL WHERE practice_id = $1 AND institution = $2",
        )
        .bind(key.practice_id.0)
        .bind(&key.institution)
        .execute(&mut *tx)
        .await?;
        if let Some((data, payload)) = correction {
            sqlx::query("UPDATE deliveries SET payload = $1::jsonb WHERE practice_id = $2 AND institution = $3")
                .bind(payload.to_string())
                .bind(key.practice_id.0)
                .bind(&key.institution)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE practices SET data = $1::jsonb WHERE id = $2")
                .bind(data_json(data))
                .bind(key.practice_id.0)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE practices SET state = $1, needs_resend = FALSE, updated_at = $2 WHERE id = $3")
            .bind(practice_next.as_str())
            .bind(now)
            .bind(key.practice_id.0)
            .execute(&mut *tx)
            .await?;
        // Another recipient may still wait for a correction of its own.
        super::follow_deliveries(&mut tx, key.practice_id, now).await?;
        log_event(
            &mut tx,
            key,
            now,
            event_kind(&event),
            next.state,
            &serde_json::json!({ "revision": next.revision }),
            None,
        )
        .await?;
        let row = locked_delivery(&mut tx, key).await?;
        announce(&mut tx, key.practice_id).await?;
        tx.commit().await?;
        delivery_row(&row)?.into_delivery()
    }
}
