//! Group commit: the writes of one process share SQLite transactions, and so their fsyncs.
//!
//! SQLite has one writer, and with `synchronous = FULL` every commit waits for the disk. Each
//! write here is a *job* run on the one writer connection inside a `SAVEPOINT` of the batch
//! open now (opened with `BEGIN IMMEDIATE` by the first job to find none):
//! - a job that fails is rolled back to its savepoint alone and answered its error at once
//!   (it changed nothing);
//! - a job that succeeds is not answered yet: it queues again for the connection, behind the
//!   jobs that arrived meanwhile (the lock is fair), and the first job of a batch to get the
//!   connection back with its batch still open commits it, for everyone in it;
//! - each job is answered once the batch's `COMMIT` returned: its result if the commit held,
//!   the commit's error if not (SQLite then rolled the whole batch back: nothing of it stays).
//!
//! So under load one commit serves every write that queued during the previous one, and a
//! lone write costs what it cost before (its own transaction). A caller that goes away while
//! its job waits for the commit leaves the batch open for the next caller, or for the flusher
//! that commits any batch left open past [`FLUSH_AFTER`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{Executor, SqliteConnection};
use tokio::sync::Mutex;

use crate::StoreError;

/// Most jobs in one batch (a long batch delays its first answers).
const MAX_JOBS: usize = 512;

/// A batch left open this long without anyone to commit it is committed by the flusher.
pub(super) const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// How one batch ended: `None` committed, `Some(why)` rolled back.
type Outcome = Arc<OnceLock<Option<String>>>;

struct Batch {
    id: u64,
    jobs: usize,
    opened: Instant,
    outcome: Outcome,
}

struct State {
    conn: SqliteConnection,
    open: Option<Batch>,
    next_id: u64,
    /// A job's savepoint is open: set while it runs, so that the next caller can undo the
    /// work of one whose caller was cancelled half-way (its future dropped mid-job).
    in_job: bool,
}

/// The one writer connection of a store, shared by group commit.
pub(super) struct GroupWriter {
    state: Mutex<State>,
    /// Batches committed so far (benchmarks report commits per practice).
    commits: AtomicU64,
}

impl std::fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter").finish_non_exhaustive()
    }
}

impl GroupWriter {
    pub(super) fn new(conn: SqliteConnection) -> Arc<Self> {
        let state = Mutex::new(State { conn, open: None, next_id: 1, in_job: false });
        let writer = Arc::new(Self { state, commits: AtomicU64::new(0) });
        tokio::spawn(flush_forgotten(Arc::downgrade(&writer)));
        writer
    }

    /// Runs `job` in the open batch and answers once the batch is durable.
    pub(super) async fn write<T>(
        &self,
        job: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (batch, outcome, result) = {
            let mut state = self.state.lock().await;
            undo_cancelled_job(&mut state).await;
            if state.open.as_ref().is_some_and(|b| b.jobs >= MAX_JOBS) {
                commit(&mut state, &self.commits).await;
            }
            let (batch, outcome) = open_batch(&mut state).await?;
            if let Err(e) = state.conn.execute("SAVEPOINT job").await {
                abandon(&mut state, &e.to_string()).await;
                return Err(e.into());
            }
            state.in_job = true;
            let result = job(&mut state.conn).await;
            state.in_job = false;
            let closed = match &result {
                Ok(_) => state.conn.execute("RELEASE job").await.map(|_| ()),
                Err(_) => match state.conn.execute("ROLLBACK TO job").await {
                    Ok(_) => state.conn.execute("RELEASE job").await.map(|_| ()),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = closed {
                // The connection cannot tell what it holds: nothing of this batch is kept.
                abandon(&mut state, &e.to_string()).await;
                return Err(e.into());
            }
            if let Some(open) = state.open.as_mut() {
                open.jobs += 1;
            }
            (batch, outcome, result)
        };
        // A failed job changed nothing: its answer needs no commit.
        let value = result?;
        {
            let mut state = self.state.lock().await;
            if state.open.as_ref().is_some_and(|b| b.id == batch) {
                commit(&mut state, &self.commits).await;
            }
        }
        match outcome.get() {
            Some(None) => Ok(value),
            Some(Some(why)) => Err(StoreError::Unavailable(format!("the batch was not committed: {why}"))),
            None => Err(StoreError::Unavailable("the batch was left undecided".into())),
        }
    }

    /// Batches committed so far.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` on the connection outside any batch (the open one is committed first): for
    /// migrations, which change pragmas a transaction cannot.
    pub(super) async fn exclusive<T>(
        &self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.state.lock().await;
        undo_cancelled_job(&mut state).await;
        if state.open.is_some() {
            commit(&mut state, &self.commits).await;
        }
        work(&mut state.conn).await
    }
}

/// The batch open now, opening one (`BEGIN IMMEDIATE`) if there is none.
async fn open_batch(state: &mut State) -> Result<(u64, Outcome), StoreError> {
    if let Some(open) = &state.open {
        return Ok((open.id, open.outcome.clone()));
    }
    state.conn.execute("BEGIN IMMEDIATE").await?;
    let id = state.next_id;
    state.next_id += 1;
    let outcome = Outcome::default();
    state.open = Some(Batch { id, jobs: 0, opened: Instant::now(), outcome: outcome.clone() });
    Ok((id, outcome))
}

/// Commits the open batch and tells its jobs how it went.
async fn commit(state: &mut State, commits: &AtomicU64) {
    let Some(batch) = state.open.take() else { return };
    match state.conn.execute("COMMIT").await {
        Ok(_) => {
            commits.fetch_add(1, Ordering::Relaxed);
            let _ = batch.outcome.set(None);
        }
        Err(e) => {
            tracing::error!(error = %e, jobs = batch.jobs, "group commit failed; the batch was rolled back");
            // SQLite may have rolled back by itself already; make sure.
            let _ = state.conn.execute("ROLLBACK").await;
            let _ = batch.outcome.set(Some(e.to_string()));
        }
    }
}

/// Undoes what a job whose caller was cancelled mid-way left in its savepoint (the rest of
/// the batch stays).
async fn undo_cancelled_job(state: &mut State) {
    if !state.in_job {
        return;
    }
    state.in_job = false;
    let undone = match state.conn.execute("ROLLBACK TO job").await {
        Ok(_) => state.conn.execute("RELEASE job").await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = undone {
        abandon(state, &format!("a cancelled write could not be undone: {e}")).await;
    }
}

/// Rolls the open batch back whole.
async fn abandon(state: &mut State, why: &str) {
    let Some(batch) = state.open.take() else { return };
    tracing::error!(%why, jobs = batch.jobs, "write batch abandoned and rolled back");
    let _ = state.conn.execute("ROLLBACK").await;
    let _ = batch.outcome.set(Some(why.to_string()));
}

/// Commits a batch whose jobs all went away before committing it (their callers were
/// cancelled), until the writer is dropped.
async fn flush_forgotten(writer: std::sync::Weak<GroupWriter>) {
    loop {
        tokio::time::sleep(FLUSH_AFTER).await;
        let Some(writer) = writer.upgrade() else { return };
        let Ok(mut state) = writer.state.try_lock() else { continue };
        undo_cancelled_job(&mut state).await;
        if state.open.as_ref().is_some_and(|b| b.opened.elapsed() >= FLUSH_AFTER) {
            tracing::warn!("committing a write batch its callers left");
            commit(&mut state, &writer.commits).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    async fn writer(dir: &tempfile::TempDir) -> (Arc<GroupWriter>, sqlx::SqlitePool) {
        let options = super::super::connect_options(&dir.path().join("group.db")).expect("options");
        let conn = sqlx::ConnectOptions::connect(&options).await.expect("connect");
        let writer = GroupWriter::new(conn);
        writer
            .exclusive(async |c| Ok(c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)").await.map(|_| ())?))
            .await
            .expect("table");
        (writer, sqlx::sqlite::SqlitePoolOptions::new().connect_with(options).await.expect("readers"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_a_failed_one_is_undone_alone() {
        let dir = tempfile::tempdir().expect("temp");
        let (writer, readers) = writer(&dir).await;
        let before = writer.commits();
        let mut jobs = Vec::new();
        for n in 0..200i64 {
            let writer = writer.clone();
            jobs.push(tokio::spawn(async move {
                writer
                    .write(async |c| {
                        sqlx::query("INSERT INTO t (n) VALUES (?)").bind(n).execute(&mut *c).await?;
                        if n % 10 == 7 {
                            // Wrote, then refused: none of it may stay.
                            sqlx::query("INSERT INTO t (n) VALUES (?)").bind(n + 10_000).execute(&mut *c).await?;
                            return Err(StoreError::NotFound);
                        }
                        Ok(n)
                    })
                    .await
            }));
        }
        let mut answered = Vec::new();
        for job in jobs {
            if let Ok(n) = job.await.expect("task") {
                answered.push(n);
            }
        }
        assert_eq!(answered.len(), 180, "every write but the refused ones answered");
        let stored: Vec<i64> =
            sqlx::query_scalar("SELECT n FROM t ORDER BY n").fetch_all(&readers).await.expect("read");
        answered.sort_unstable();
        assert_eq!(stored, answered, "exactly the answered writes are stored, nothing of the refused ones");
        let commits = writer.commits() - before;
        assert!(commits < 180, "{commits} commits for 180 writes: they were grouped");
    }

    #[tokio::test]
    async fn a_lone_write_is_committed_at_once() {
        let dir = tempfile::tempdir().expect("temp");
        let (writer, readers) = writer(&dir).await;
        let n = writer
            .write(async |c| Ok(sqlx::query("INSERT INTO t (n) VALUES (1)").execute(&mut *c).await?.rows_affected()))
            .await
            .expect("write");
        assert_eq!(n, 1);
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&readers).await.expect("read");
        assert_eq!(count, 1, "visible to other connections once answered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_cancelled_half_way_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp");
        let (writer, readers) = writer(&dir).await;
        let cancelled = writer.write(async |c| {
            sqlx::query("INSERT INTO t (n) VALUES (1)").execute(&mut *c).await?;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        assert!(tokio::time::timeout(Duration::from_millis(100), cancelled).await.is_err(), "cancelled");
        writer
            .write(async |c| Ok(sqlx::query("INSERT INTO t (n) VALUES (2)").execute(&mut *c).await.map(|_| ())?))
            .await
            .expect("the next write");
        let stored: Vec<i64> = sqlx::query_scalar("SELECT n FROM t").fetch_all(&readers).await.expect("read");
        assert_eq!(stored, vec![2], "the cancelled write's row is not committed with the next one");
    }
}
