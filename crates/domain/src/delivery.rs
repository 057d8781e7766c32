//! One recipient's delivery ("consegna"): how the filing for one institution goes from queued
//! to that institution's outcome, and what the practice as a whole becomes meanwhile.
//!
//! ```text
//!   queued ──sent (2xx)──▶ delivered ──taken in charge (protocol)──▶ taken_in_charge ──outcome──▶ accepted
//!     │  ╲                     ╲___________________outcome______________________________________▶ rejected
//!     │   ╲__4xx validation answer________________________________________________________________▶ rejected
//!     └──technical failure, retries exhausted / other 4xx──▶ failed
//!   failed ──resend──▶ queued          rejected ──corrected and resent──▶ queued (new revision)
//!   delivered / taken_in_charge ──no news past the channel's deadline──▶ no_news ──resend──▶ queued
//!   no_news ──late news from the institution──▶ delivered / taken_in_charge / outcome
//!   waiting (for another recipient's answer) ──that recipient accepted──▶ queued
//! ```
//!
//! Answers and callbacks can arrive late, twice or out of order. [`apply`] never lets an
//! earlier state overwrite a later one and treats a repeated event as no change. A practice
//! "counts as started" at an institution only once its protocol number is known.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::FilingKind;

/// Where one recipient's filing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be sent, or to be tried again ("in attesa di invio").
    Queued,
    /// The institution's system accepted the filing; no protocol number yet ("consegnata").
    Delivered,
    /// The institution registered the filing and gave its protocol number ("presa in carico").
    TakenInCharge,
    /// Final outcome: accepted ("accolta").
    Accepted,
    /// Final outcome: rejected, with reasons and the fields at fault ("respinta").
    Rejected,
    /// Could not be delivered for technical reasons; may be sent again ("non consegnata").
    Failed,
    /// Delivered, but the institution has said nothing within the channel's deadline, neither
    /// by callback nor when asked ("nessuna notizia"). May be sent again (same revision, same
    /// idempotency key: the institution answers as the first time); late news still counts.
    NoNews,
    /// Not sent yet: its filing uses values from another recipient's answer, which has not
    /// come, or was a rejection or a failure ("in attesa di …").
    Waiting,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 8] = [
        Self::Queued,
        Self::Delivered,
        Self::TakenInCharge,
        Self::Accepted,
        Self::Rejected,
        Self::Failed,
        Self::NoNews,
        Self::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::TakenInCharge => "taken_in_charge",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::NoNews => "no_news",
            Self::Waiting => "waiting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// How far along the institution's own process the filing is; later never yields to earlier.
    fn progress(self) -> u8 {
        match self {
            Self::Queued | Self::Failed | Self::NoNews | Self::Waiting => 0,
            Self::Delivered => 1,
            Self::TakenInCharge => 2,
            Self::Accepted | Self::Rejected => 3,
        }
    }

    /// An outcome is known: nothing more will come from the institution for this revision.
    pub fn is_outcome(self) -> bool {
        matches!(self, Self::Accepted | Self::Rejected)
    }
}

/// Why an institution refused a filing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejection {
    /// The institution's words.
    pub reasons: Vec<String>,
    /// The catalog fields at fault (already mapped back from the filing's payload paths).
    pub fields: Vec<String>,
}

/// What is known of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryStatus {
    pub state: DeliveryState,
    /// The institution's protocol number ("numero di protocollo"), once given.
    pub protocol_number: Option<String>,
    pub rejection: Option<Rejection>,
    /// The last technical problem, for failed deliveries and retries.
    pub last_error: Option<String>,
    /// Incremented when a corrected filing is resent: a new revision is a new request to the
    /// institution (new idempotency key); a retry of the same revision reuses the key.
    pub revision: u32,
}

impl DeliveryStatus {
    pub fn queued() -> Self {
        Self { state: DeliveryState::Queued, protocol_number: None, rejection: None, last_error: None, revision: 0 }
    }
}

/// Something that happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// The institution's system accepted the filing (2xx), possibly already with its protocol.
    Sent { protocol_number: Option<String> },
    /// The institution took the filing in charge and gave its protocol number.
    TakenInCharge { protocol_number: String },
    /// The institution's final outcome.
    Outcome { accepted: bool, protocol_number: Option<String>, rejection: Option<Rejection> },
    /// The institution refused the filing on receipt (4xx validation answer).
    RejectedOnReceipt(Rejection),
    /// A technical failure that will be retried: the delivery stays queued.
    TransientFailure { reason: String },
    /// A technical failure not worth retrying (other 4xx), or retries exhausted.
    Failed { reason: String },
    /// The user sends a failed filing again, unchanged.
    Resend,
    /// The user corrected a rejected filing and sends it again.
    ResendCorrected,
    /// The institution has given no news within the channel's deadline.
    NoNews,
    /// The recipient this one waits for accepted: its values are in the payload, send it.
    Released,
}

/// The event does not fit the delivery's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a delivery in state {from:?} does not allow {event}")]
pub struct IllegalDeliveryTransition {
    pub from: DeliveryState,
    pub event: &'static str,
}

/// The result of an event on a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed(DeliveryStatus),
    /// A repeated or stale event (it says nothing newer than what is known).
    Unchanged,
}

/// Moves `next` forward to `to` (never back), taking the protocol number if it is the first;
/// whether anything changed. A failed or silent delivery moves on with any news.
fn advance(next: &mut DeliveryStatus, from: DeliveryState, to: DeliveryState, protocol: Option<&String>) -> bool {
    let mut changed = false;
    if let Some(p) = protocol {
        if next.protocol_number.is_none() {
            next.protocol_number = Some(p.clone());
            changed = true;
        }
    }
    let stalled = matches!(from, DeliveryState::Failed | DeliveryState::NoNews);
    if to.progress() > from.progress() || (stalled && to.progress() > 0) {
        next.state = to;
        next.last_error = None;
        changed = true;
    }
    changed
}

/// A filing that waits for another recipient's answer: nothing is sent, so nothing can come
/// from the institution; only the release counts.
fn while_waiting(current: &DeliveryStatus, event: &DeliveryEvent) -> Result<Applied, IllegalDeliveryTransition> {
    let illegal = |event: &'static str| Err(IllegalDeliveryTransition { from: current.state, event });
    match event {
        DeliveryEvent::Released => {
            Ok(Applied::Changed(DeliveryStatus { state: DeliveryState::Queued, ..current.clone() }))
        }
        DeliveryEvent::Resend => illegal("resend"),
        DeliveryEvent::ResendCorrected => illegal("resend corrected"),
        _ => Ok(Applied::Unchanged),
    }
}

/// The delivery after `event`. Institution events that arrive after a later state are
/// `Unchanged`; user events in the wrong state are refused.
pub fn apply(current: &DeliveryStatus, event: &DeliveryEvent) -> Result<Applied, IllegalDeliveryTransition> {
    use DeliveryState as S;
    let mut next = current.clone();
    let from = current.state;
    let illegal = |event: &'static str| Err(IllegalDeliveryTransition { from, event });
    if from == S::Waiting {
        return while_waiting(current, event);
    }
    let changed = match event {
        DeliveryEvent::Sent { protocol_number } => {
            let to = if protocol_number.is_some() { S::TakenInCharge } else { S::Delivered };
            advance(&mut next, from, to, protocol_number.as_ref())
        }
        DeliveryEvent::TakenInCharge { protocol_number } => {
            advance(&mut next, from, S::TakenInCharge, Some(protocol_number))
        }
        DeliveryEvent::Outcome { accepted, protocol_number, rejection } => {
            if from.is_outcome() {
                false
            } else {
                advance(&mut next, from, if *accepted { S::Accepted } else { S::Rejected }, protocol_number.as_ref());
                next.rejection = if *accepted { None } else { Some(rejection.clone().unwrap_or_default()) };
                true
            }
        }
        DeliveryEvent::RejectedOnReceipt(rejection) => match from {
            S::Queued => {
                next.state = S::Rejected;
                next.rejection = Some(rejection.clone());
                next.last_error = None;
                true
            }
            _ => false,
        },
        DeliveryEvent::TransientFailure { reason } => match from {
            S::Queued => {
                next.last_error = Some(reason.clone());
                next != *current
            }
            _ => false,
        },
        DeliveryEvent::Failed { reason } => match from {
            S::Queued => {
                next.state = S::Failed;
                next.last_error = Some(reason.clone());
                true
            }
            _ => false,
        },
        DeliveryEvent::Released => false,
        DeliveryEvent::NoNews => match from {
            S::Delivered | S::TakenInCharge => {
                next.state = S::NoNews;
                true
            }
            _ => false,
        },
        DeliveryEvent::Resend => match from {
            S::Failed | S::NoNews => {
                next.state = S::Queued;
                true
            }
            _ => return illegal("resend"),
        },
        DeliveryEvent::ResendCorrected => match from {
            S::Rejected => {
                next = DeliveryStatus { revision: current.revision + 1, ..DeliveryStatus::queued() };
                true
            }
            _ => return illegal("resend corrected"),
        },
    };
    Ok(if changed { Applied::Changed(next) } else { Applied::Unchanged })
}

/// Maps payload paths an institution names (e.g. `lavorazioni.descrizione`) back to the
/// catalog fields that fill them; unknown paths are kept as they are.
pub fn fields_at_fault(filing: &FilingKind, payload_paths: &[String]) -> Vec<String> {
    let mut fields: Vec<String> = payload_paths
        .iter()
        .map(|path| {
            filing.payload.iter().find(|m| &m.target == path).map_or_else(|| path.clone(), |m| m.source.clone())
        })
        .collect();
    fields.dedup();
    fields
}

/// How often and how long to retry a technical failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 6, base_delay: Duration::from_secs(2), max_delay: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// After `attempts` failed attempts: wait this long before the next, or `None` to give up.
    /// `jitter` in `[0, 1)` spreads retries between half and all of the exponential delay.
    pub fn next_delay(&self, attempts: u32, jitter: f64) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(30);
        let full = self.base_delay.saturating_mul(1u32 << exponent).min(self.max_delay);
        Some(full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState as S;

    fn status(state: S) -> DeliveryStatus {
        DeliveryStatus { state, ..DeliveryStatus::queued() }
    }

    fn changed(current: &DeliveryStatus, event: DeliveryEvent) -> DeliveryStatus {
        match apply(current, &event) {
            Ok(Applied::Changed(next)) => next,
            other => panic!("{event:?} on {current:?}: {other:?}"),
        }
    }

    #[test]
    fn the_normal_path() {
        let s = changed(&DeliveryStatus::queued(), DeliveryEvent::Sent { protocol_number: None });
        assert_eq!(s.state, S::Delivered);
        let s = changed(&s, DeliveryEvent::TakenInCharge { protocol_number: "INPS-2026-0000001".into() });
        assert_eq!((s.state, s.protocol_number.as_deref()), (S::TakenInCharge, Some("INPS-2026-0000001")));
        let s = changed(&s, DeliveryEvent::Outcome { accepted: true, protocol_number: None, rejection: None });
        assert_eq!(s.state, S::Accepted);
        assert_eq!(s.protocol_number.as_deref(), Some("INPS-2026-0000001"));
    }

    #[test]
    fn late_and_repeated_events_change_nothing() {
        let taken = DeliveryStatus { protocol_number: Some("P1".into()), ..status(S::TakenInCharge) };
        assert_eq!(apply(&taken, &DeliveryEvent::Sent { protocol_number: None }), Ok(Applied::Unchanged));
        assert_eq!(
            apply(&taken, &DeliveryEvent::TakenInCharge { protocol_number: "P1".into() }),
            Ok(Applied::Unchanged)
        );
        let accepted = DeliveryStatus { state: S::Accepted, ..taken.clone() };
        for late in [
            DeliveryEvent::TakenInCharge { protocol_number: "P1".into() },
            DeliveryEvent::Outcome { accepted: false, protocol_number: None, rejection: None },
            DeliveryEvent::Sent { protocol_number: Some("P1".into()) },
            DeliveryEvent::TransientFailure { reason: "timeout".into() },
        ] {
            assert_eq!(apply(&accepted, &late), Ok(Applied::Unchanged), "{late:?}");
        }
        // A protocol number never changes once given.
        let s = changed(
            &taken,
            DeliveryEvent::Outcome { accepted: true, protocol_number: Some("P2".into()), rejection: None },
        );
        assert_eq!(s.protocol_number.as_deref(), Some("P1"));
    }

    #[test]
    fn callbacks_may_overtake_the_answer() {
        // The institution called back before the worker recorded its answer.
        let s = changed(&DeliveryStatus::queued(), DeliveryEvent::TakenInCharge { protocol_number: "P9".into() });
        assert_eq!(s.state, S::TakenInCharge);
        assert_eq!(apply(&s, &DeliveryEvent::Sent { protocol_number: None }), Ok(Applied::Unchanged));
    }

    #[test]
    fn failures_and_resends() {
        let q = DeliveryStatus::queued();
        let s = changed(&q, DeliveryEvent::TransientFailure { reason: "connection refused".into() });
        assert_eq!((s.state, s.last_error.as_deref()), (S::Queued, Some("connection refused")));
        let failed = changed(&s, DeliveryEvent::Failed { reason: "5 attempts".into() });
        assert_eq!(failed.state, S::Failed);
        let again = changed(&failed, DeliveryEvent::Resend);
        assert_eq!((again.state, again.revision), (S::Queued, 0), "same revision: same idempotency key");
        assert!(apply(&status(S::Delivered), &DeliveryEvent::Resend).is_err());
        assert!(apply(&status(S::Accepted), &DeliveryEvent::ResendCorrected).is_err());

        let rejected = changed(
            &q,
            DeliveryEvent::RejectedOnReceipt(Rejection {
                reasons: vec!["manca".into()],
                fields: vec!["inail.work_processes".into()],
            }),
        );
        assert_eq!(rejected.state, S::Rejected);
        let corrected = changed(&rejected, DeliveryEvent::ResendCorrected);
        assert_eq!((corrected.state, corrected.revision, corrected.rejection), (S::Queued, 1, None));
    }

    #[test]
    fn silence_past_the_deadline_is_no_news_and_late_news_still_counts() {
        let taken = DeliveryStatus { protocol_number: Some("P1".into()), ..status(S::TakenInCharge) };
        let silent = changed(&taken, DeliveryEvent::NoNews);
        assert_eq!((silent.state, silent.protocol_number.as_deref()), (S::NoNews, Some("P1")));
        assert_eq!(apply(&silent, &DeliveryEvent::NoNews), Ok(Applied::Unchanged));
        for not_silent in [S::Queued, S::Accepted, S::Rejected, S::Failed] {
            assert_eq!(apply(&status(not_silent), &DeliveryEvent::NoNews), Ok(Applied::Unchanged), "{not_silent:?}");
        }
        let late = changed(
            &silent,
            DeliveryEvent::Outcome { accepted: true, protocol_number: Some("P1".into()), rejection: None },
        );
        assert_eq!(late.state, S::Accepted);
        let again = changed(&silent, DeliveryEvent::Resend);
        assert_eq!((again.state, again.revision), (S::Queued, 0), "same idempotency key");
    }

    #[test]
    fn a_waiting_filing_takes_nothing_but_its_release() {
        let waiting = status(S::Waiting);
        for event in [
            DeliveryEvent::Sent { protocol_number: None },
            DeliveryEvent::Outcome { accepted: true, protocol_number: None, rejection: None },
            DeliveryEvent::NoNews,
            DeliveryEvent::Failed { reason: "x".into() },
        ] {
            assert_eq!(apply(&waiting, &event), Ok(Applied::Unchanged), "{event:?}");
        }
        assert!(apply(&waiting, &DeliveryEvent::Resend).is_err());
        assert_eq!(changed(&waiting, DeliveryEvent::Released).state, S::Queued);
        assert_eq!(apply(&DeliveryStatus::queued(), &DeliveryEvent::Released), Ok(Applied::Unchanged));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops() {
        let p = RetryPolicy { max_attempts: 4, base_delay: Duration::from_secs(2), max_delay: Duration::from_secs(5) };
        assert_eq!(p.next_delay(1, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(p.next_delay(2, 0.999_999).map(|d| d.as_secs()), Some(3));
        assert_eq!(p.next_delay(3, 0.0), Some(Duration::from_millis(2500)), "capped at max_delay");
        assert_eq!(p.next_delay(4, 0.5), None);
    }
}
