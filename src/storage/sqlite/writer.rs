//! The single writer, with group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous = FULL` each
//! commit waits for the disk (about 1 ms here). One transaction per request
//! would cap throughput at the disk's flush rate. Instead, one thread owns the
//! write connection and runs every write request that is waiting as one
//! transaction, each request inside its own savepoint:
//!
//! - a request that fails (a rule refuses it) is rolled back to its savepoint
//!   and leaves nothing behind, without disturbing the others;
//! - all requests of a batch are answered only after the batch's COMMIT has
//!   reached the disk, so an acknowledged write is durable; if the COMMIT
//!   fails, every request of the batch is answered with that failure;
//! - requests run one after another on one connection, so each one decides
//!   from facts that include the writes of those before it, exactly as it
//!   would in a transaction of its own.
//!
//! Batches form by themselves: while one batch is being flushed, new requests
//! queue up and become the next batch. Under light load a batch holds one
//! request and nothing waits for company.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::storage::{StoreError, StoreResult};

/// The most requests one transaction holds; bounds the latency that a batch
/// adds to its first request.
const MAX_BATCH: usize = 256;

/// Requests that may wait for the writer before senders are slowed down.
const QUEUE_DEPTH: usize = 4096;

/// A handle to the writer thread; dropping every handle stops the thread
/// once the queued requests are done.
#[derive(Debug)]
pub struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
    /// Why the last batch failed for a storage reason (full disk, read-only
    /// file, I/O error); `None` once a batch has written again.
    failure: Arc<Mutex<Option<String>>>,
    /// Fault injection: every batch fails as on a full disk.
    full_disk: Arc<std::sync::atomic::AtomicBool>,
    /// The thread, joined by [`Writer::stop`].
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, and the checkpointer on
    /// `checkpoints` (another connection to the same database); `events` is
    /// told the newest event's sequence after each commit.
    pub fn spawn(
        conn: Connection,
        checkpoints: Connection,
        events: watch::Sender<u64>,
    ) -> std::io::Result<Self> {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let failure = Arc::new(Mutex::new(None));
        let full_disk = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (failed, full) = (Arc::clone(&failure), Arc::clone(&full_disk));
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_while_woken(&checkpoints, &woken))?;
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                run(&conn, requests, &failed, &full, &events, &wake);
                // The checkpointer's connection closes before the writer's.
                drop(wake);
                let _ = checkpointer.join();
                drop(conn);
            })?;
        Ok(Self {
            queue,
            failure,
            full_disk,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Lets the queued writes finish, then waits until the thread has
    /// closed its connection (and checkpointed the WAL): only then may
    /// another store open the data directory.
    pub fn stop(&mut self) {
        // A closed queue ends the thread once it is empty.
        let (closed, _) = mpsc::channel(1);
        self.queue = closed;
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// See [`super::SqliteStore::inject_full_disk`].
    pub fn inject_full_disk(&self, on: bool) {
        self.full_disk
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Why writes are failing for a storage reason, if they are: health
    /// reports NOT_SERVING until a write succeeds again.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `work` inside a write transaction and returns its result once the
    /// transaction is durable. If `work` fails, its writes are rolled back.
    pub async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(work, false).await
    }

    /// Runs `work` on the writer's connection between batches, alone and
    /// outside any transaction: it begins and ends its own. A request as
    /// long as an import's session runs so: in a batch, its savepoint would
    /// keep every page it changes in memory (`temp_store`), and the
    /// requests batched with it would wait for it. The future does not
    /// borrow the writer, to be spawned.
    pub fn write_alone<T, F>(
        &self,
        work: F,
    ) -> impl std::future::Future<Output = StoreResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(work, true)
    }

    fn submit<T, F>(
        &self,
        work: F,
        alone: bool,
    ) -> impl std::future::Future<Output = StoreResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let queue = self.queue.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            let job = Box::new(Pending {
                work: Some(work),
                outcome: None,
                reply,
                alone,
            });
            queue.send(job).await.map_err(|_| writer_stopped())?;
            // Not held while waiting: a stopping writer waits for its queue.
            drop(queue);
            answer.await.map_err(|_| writer_stopped())?
        }
    }

    /// Whether the writer thread is still running.
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }
}

fn writer_stopped() -> StoreError {
    StoreError::unavailable(
        "the SQLite writer has stopped",
        std::io::Error::other("writer thread exited"),
    )
}

/// One write request, type-erased so that requests with different results
/// share a queue.
trait Job: Send {
    /// Runs the request; `true` when its writes are to be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// The storage failure (not a rule's refusal) the request ran into.
    fn storage_failure(&self) -> Option<String>;

    /// Whether it runs alone, in transactions of its own (see
    /// [`Writer::write_alone`]).
    fn alone(&self) -> bool;

    /// Answers the request once the batch has committed (or failed to).
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
    alone: bool,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A bug in one request must not take the writer, and every request
        // after it, down with it.
        let outcome = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(StoreError::internal(
                "a write request panicked",
                std::io::Error::other("panic in write request"),
            ))
        });
        let keep = outcome.is_ok();
        self.outcome = Some(outcome);
        keep
    }

    fn storage_failure(&self) -> Option<String> {
        match &self.outcome {
            Some(Err(error @ StoreError::Unavailable { .. })) => {
                Some(crate::storage::error_chain(error))
            }
            _ => None,
        }
    }

    fn alone(&self) -> bool {
        self.alone
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.outcome, commit) {
            (Some(Ok(_)), Err(failed)) | (None, Err(failed)) => Err(failed),
            (Some(outcome), _) => outcome,
            (None, Ok(())) => Err(StoreError::internal(
                "a write request was never run",
                std::io::Error::other("job skipped"),
            )),
        };
        // The caller may have gone away; its write stands regardless.
        let _ = self.reply.send(answer);
    }
}

fn run(
    conn: &Connection,
    mut requests: mpsc::Receiver<Box<dyn Job>>,
    failure: &Mutex<Option<String>>,
    full_disk: &std::sync::atomic::AtomicBool,
    events: &watch::Sender<u64>,
    checkpoint: &std::sync::mpsc::SyncSender<()>,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut indexed = super::events::indexed_upto(conn).unwrap_or(0);
    // A request to run alone, met while a batch was gathering.
    let mut held: Option<Box<dyn Job>> = None;
    while let Some(first) = held.take().or_else(|| requests.blocking_recv()) {
        let alone = first.alone();
        batch.push(first);
        while !alone && batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) if next.alone() => {
                    held = Some(next);
                    break;
                }
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        crate::metrics::writer_batch(batch.len(), requests.len());
        let (commit, kept_changes) = if alone {
            run_alone(conn, batch[0].as_mut())
        } else {
            run_batch(
                conn,
                &mut batch,
                full_disk.load(std::sync::atomic::Ordering::SeqCst),
            )
        };
        if let Err(error) = &commit {
            tracing::error!(error = %error, batch = batch.len(), "SQLite write batch failed");
        }
        // A failed commit, or a request that could not write, says writes
        // fail; a committed batch that changed rows says they work again (a
        // commit that changed nothing proves nothing: it writes nothing).
        let failed = match &commit {
            Err(error) => Some(crate::storage::error_chain(error)),
            Ok(()) => batch.iter().find_map(|job| job.storage_failure()),
        };
        let wrote = commit.is_ok() && kept_changes > 0;
        let mut state = failure.lock().unwrap_or_else(|e| e.into_inner());
        if failed.is_some() || wrote {
            if failed.is_some() && state.is_none() {
                tracing::error!(error = ?failed, "SQLite writes fail for a storage reason; reporting NOT_SERVING");
            }
            *state = failed;
        }
        drop(state);
        // Before the answers: a writer that reads back its own event
        // through a watch finds it signalled.
        let mut latest = None;
        if wrote {
            // Wakes the checkpointer unless it is awake already.
            let _ = checkpoint.try_send(());
            match super::events::latest_sequence(conn) {
                Ok(newest) => {
                    events.send_if_modified(|seen| std::mem::replace(seen, newest) != newest);
                    latest = Some(newest);
                }
                Err(error) => {
                    tracing::error!(error = %error, "reading the newest event's sequence")
                }
            }
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
        // After the answers, which need not wait for it.
        if latest.is_some_and(|latest| latest >= indexed + super::events::SUBJECT_BATCH) {
            match index_subjects(conn) {
                Ok(upto) => indexed = upto,
                Err(error) => {
                    tracing::error!(error = %error, "indexing the events' subjects failed; retrying after the next write")
                }
            }
        }
    }
}

/// The most events whose subjects one transaction indexes: they are
/// sorted in memory, and a bulk import appends a million.
const SUBJECT_SLICE: u64 = 64 * 1024;

/// Indexes the subjects of the events not indexed yet, a slice at a time,
/// each in a transaction of its own.
fn index_subjects(conn: &Connection) -> StoreResult<u64> {
    loop {
        let indexed = (|| -> StoreResult<(u64, bool)> {
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            let indexed = super::events::index_subjects(conn, SUBJECT_SLICE)?;
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(indexed)
        })();
        match indexed {
            Ok((upto, true)) => return Ok(upto),
            Ok((_, false)) => {}
            Err(error) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                return Err(error);
            }
        }
    }
}

/// The least time between two background checkpoints: each syncs the
/// database file, and a sync per commit would compete with the commits'.
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Copies committed pages from the WAL into the database file, off the
/// writer's thread, each time the writer says it committed (at most every
/// [`CHECKPOINT_PAUSE`]). The writer's own automatic checkpoint then finds
/// little left to copy: it stays only to let the WAL start over from its
/// beginning, which needs every page copied while no commit runs.
fn checkpoint_while_woken(conn: &Connection, woken: &std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    // Whether the last checkpoint left frames behind (a reader was in the
    // way): then it is tried again after a while, not only at the next
    // commit, which may never come.
    let mut behind = false;
    loop {
        let woke = if behind {
            woken.recv_timeout(CHECKPOINT_RETRY)
        } else {
            woken.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        if woke == Err(RecvTimeoutError::Disconnected) {
            return;
        }
        // A checkpoint that finds a reader in the way copies what it can.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            Ok((frames, copied)) => behind = copied < frames,
            Err(error) => {
                tracing::warn!(%error, "background checkpoint failed; the writer's own will copy the pages");
                behind = true;
            }
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// How soon a checkpoint that left frames behind is tried again.
const CHECKPOINT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a request that begins and ends its own transactions; one it left
/// open is rolled back.
fn run_alone(conn: &Connection, job: &mut dyn Job) -> (Result<(), StoreError>, u64) {
    let before = conn.total_changes();
    let kept = job.run(conn);
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let kept_changes = if kept {
        conn.total_changes() - before
    } else {
        0
    };
    (Ok(()), kept_changes)
}

fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    full_disk: bool,
) -> (Result<(), StoreError>, u64) {
    let mut kept_changes = 0;
    let result = (|| -> rusqlite::Result<()> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        for job in batch.iter_mut() {
            conn.prepare_cached("SAVEPOINT request")?.execute([])?;
            let before = conn.total_changes();
            if job.run(conn) {
                kept_changes += conn.total_changes() - before;
            } else {
                conn.prepare_cached("ROLLBACK TO request")?.execute([])?;
            }
            conn.prepare_cached("RELEASE request")?.execute([])?;
        }
        // Injected where a real full disk fails: at the commit, after
        // every request has written.
        if full_disk {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full (injected)".into()),
            ));
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    })();
    let result = result.map_err(|error| {
        if !conn.is_autocommit() {
            // Leave no half-done batch behind; if even this fails the
            // connection is unusable and the next BEGIN reports it.
            let _ = conn.execute_batch("ROLLBACK");
        }
        super::errors::classify("committing a write batch", error)
    });
    (result, kept_changes)
}
