//! What changed, told to those who follow it: the delivery workers (new deliveries to send)
//! and the live practice pages (a state or a protocol number to show), instead of each of
//! them asking the store over and over.
//!
//! Every committed transaction that moves a practice or one of its deliveries (a submission,
//! an answer recorded, a resend, an archive) announces the practice's id. SQLite announces it
//! in-process once the commit returned; PostgreSQL with `NOTIFY` inside the transaction, so
//! that every process listening on the database hears it exactly when it is committed (and
//! never if it is rolled back). Followers receive from a bounded broadcast channel: one that
//! falls behind gets [`tokio::sync::broadcast::error::RecvError::Lagged`] and must look at
//! the store again, as it must after its own fallback interval (a notice lost while a
//! PostgreSQL listener reconnected is found that way).

use domain::practice::PracticeId;
use tokio::sync::broadcast;

/// How many announcements a slow follower may fall behind before it is told it lagged.
pub const FEED_CAPACITY: usize = 1024;

/// The PostgreSQL channel the announcements travel on.
pub const NOTIFY_CHANNEL: &str = "sportello_changes";

/// Followers subscribe here.
pub trait ChangeFeed: Send + Sync {
    /// Ids of the practices that changed from now on.
    fn changes(&self) -> broadcast::Receiver<PracticeId>;
}

/// A new feed (its sender; receivers come from [`broadcast::Sender::subscribe`]).
pub(crate) fn feed() -> broadcast::Sender<PracticeId> {
    broadcast::channel(FEED_CAPACITY).0
}
