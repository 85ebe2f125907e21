//! A small pool of read-only connections.
//!
//! WAL lets any number of readers run beside the writer, each on a snapshot of
//! the last commit. Reads are blocking calls, so they run on tokio's blocking
//! threads; the pool bounds how many run at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::storage::{StoreError, StoreResult};

/// Read-only connections, each used by one read at a time. Clones share
/// the connections.
#[derive(Debug, Clone)]
pub struct ReadPool {
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// A pool of `connections`.
    pub fn new(connections: Vec<Connection>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(connections.len())),
            idle: Arc::new(Mutex::new(connections)),
        }
    }

    /// Runs `work` on an idle connection inside one read transaction, so that
    /// a page and its total are read from the same snapshot.
    pub async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::unavailable("the read pool is closed", PoolClosed))?;
        let idle = Arc::clone(&self.idle);
        // The connection goes back to the pool inside the blocking task, so a
        // caller that gives up waiting cannot lose it.
        let task = tokio::task::spawn_blocking(move || {
            let conn = idle
                .lock()
                .expect("read pool lock poisoned")
                .pop()
                .expect("a permit guarantees an idle connection");
            let result = catch_unwind(AssertUnwindSafe(|| in_read_transaction(&conn, work)))
                .unwrap_or_else(|_| {
                    Err(StoreError::internal(
                        "a read panicked",
                        std::io::Error::other("panic in read"),
                    ))
                });
            idle.lock().expect("read pool lock poisoned").push(conn);
            drop(permit);
            result
        });
        task.await
            .map_err(|e| StoreError::internal("a read task failed", e))?
    }
}

fn in_read_transaction<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let tx = conn
        .unchecked_transaction()
        .map_err(|e| super::errors::classify("starting a read", e))?;
    let result = work(&tx);
    // A read-only transaction has nothing to commit; ending it releases the
    // snapshot so the WAL can be checkpointed.
    let _ = tx.finish();
    result
}

#[derive(Debug, thiserror::Error)]
#[error("read pool closed")]
struct PoolClosed;
