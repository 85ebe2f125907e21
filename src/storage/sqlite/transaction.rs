//! The write steps of [`crate::storage::steps`] on SQLite: each read and
//! write in the writer's open transaction, synchronously.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio::sync::mpsc;

use super::{SqliteStore, bookings, events, fleet};
use crate::domain::admin::{FactQuery, Facts, FleetWrite};
use crate::domain::booking::SlotRule;
use crate::domain::booking::{BookingCommand, BookingDecision, BookingFacts, BookingWrite, Slot};
use crate::domain::{Allocation, DomainError, FleetOutcome, FleetRequest, NewEvent};
use crate::storage::steps::{self, Transaction, without_waiting};
use crate::storage::{FleetPass, FleetSession, Verdicts};
use crate::storage::{StoreError, StoreResult};

/// The writer's connection, inside its transaction.
pub(super) struct SqliteTransaction<'c>(pub &'c Connection);

impl SqliteStore {
    /// Decides and writes a change to a booking with its event, in the
    /// writer's next batch.
    pub(super) async fn write_booking(
        &self,
        command: BookingCommand,
    ) -> StoreResult<BookingDecision> {
        self.writer
            .write(move |conn| {
                without_waiting(steps::write_booking(&mut SqliteTransaction(conn), &command))
            })
            .await
    }

    /// Decides and writes fleet commands in order, all or none.
    pub(super) async fn apply_fleet_batch(
        &self,
        requests: Vec<FleetRequest>,
    ) -> StoreResult<Vec<FleetOutcome>> {
        self.writer
            .write(move |conn| {
                without_waiting(steps::apply_fleet(&mut SqliteTransaction(conn), &requests))
            })
            .await
    }

    /// A fleet session on the writer's thread (see [`run_session`]).
    pub(super) fn open_fleet_session(&self, pass: FleetPass) -> Box<dyn FleetSession> {
        // One chunk each way at a time: the memory a session holds.
        let (chunks, mut received) = mpsc::channel(1);
        let (answer, answers) = mpsc::channel(1);
        let done = tokio::spawn(
            self.writer
                .write_alone(move |conn| run_session(conn, pass, &mut received, &answer)),
        );
        Box::new(SqliteFleetSession {
            chunks,
            answers,
            done: Some(done),
        })
    }
}

impl Transaction for SqliteTransaction<'_> {
    type Error = StoreError;

    fn refused(refusal: DomainError) -> StoreError {
        refusal.into()
    }

    async fn booking(&mut self, id: &str) -> StoreResult<Option<Allocation>> {
        bookings::find_allocation(self.0, id)
    }

    async fn idempotency_key(
        &mut self,
        request_id: &str,
        live_after: DateTime<Utc>,
    ) -> StoreResult<Option<(String, u64)>> {
        bookings::idempotency_key(self.0, request_id, live_after)
    }

    async fn slot(&mut self, slot: &Slot, facts: &mut BookingFacts) -> StoreResult<()> {
        read_slot(self.0, slot, facts)
    }

    async fn apply_booking(&mut self, write: &BookingWrite) -> StoreResult<()> {
        bookings::apply_booking(self.0, write)
    }

    async fn fleet_facts(&mut self, query: &FactQuery) -> StoreResult<Facts> {
        fleet::read_facts(self.0, query)
    }

    /// One writer at a time: nothing can change the facts meanwhile.
    async fn claim(&mut self, _query: &FactQuery) -> StoreResult<()> {
        Ok(())
    }

    async fn apply_fleet(&mut self, write: &FleetWrite) -> StoreResult<()> {
        fleet::apply_write(self.0, write)
    }

    async fn append_events(&mut self, new: &[NewEvent]) -> StoreResult<()> {
        events::append(self.0, new)
    }
}

/// Reads the facts of a slot a booking would take.
fn read_slot(conn: &Connection, slot: &Slot, facts: &mut BookingFacts) -> StoreResult<()> {
    facts.employee = fleet::find_employee(conn, &slot.employee_id)?;
    if let Some(vehicle) = fleet::find_vehicle(conn, &slot.vehicle_id, slot.date)? {
        let timeline = fleet::timeline(conn, &slot.vehicle_id)?;
        facts.vehicle = Some((vehicle, timeline));
    }
    facts.block = fleet::block_on(conn, &slot.vehicle_id, slot.date)?;
    facts.vehicle_holder = bookings::slot_holder(conn, SlotRule::Vehicle, slot)?;
    facts.employee_holder = bookings::slot_holder(conn, SlotRule::Employee, slot)?;
    Ok(())
}

/// What a fleet session's caller sends the writer.
pub enum SessionMessage {
    Chunk(Vec<FleetRequest>),
    /// Ends the session: a check is rolled back, an apply kept.
    Finish,
}

/// A fleet session, run on the writer's thread alone, in a transaction of
/// its own: decides the chunks as they come and answers each, until told
/// to finish. A check is rolled back; so is an apply that fails, or whose
/// caller goes away unfinished. Without a savepoint around it, what it
/// changes beyond the page cache spills to the WAL instead of memory.
pub fn run_session(
    conn: &Connection,
    pass: FleetPass,
    chunks: &mut mpsc::Receiver<SessionMessage>,
    answers: &mpsc::Sender<StoreResult<Verdicts>>,
) -> StoreResult<()> {
    // The page cache for bulk loads is large; a session's is bounded too.
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |row| row.get(0))?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{SESSION_CACHE_KIB}"))?;
    let ran = run_in_transaction(conn, pass, chunks, answers);
    conn.execute_batch(&format!("PRAGMA cache_size = {cache}"))?;
    ran
}

/// The page cache of a fleet session's transaction: what it changes
/// beyond it spills to the WAL.
const SESSION_CACHE_KIB: u32 = 32 * 1024;

fn run_in_transaction(
    conn: &Connection,
    pass: FleetPass,
    chunks: &mut mpsc::Receiver<SessionMessage>,
    answers: &mpsc::Sender<StoreResult<Verdicts>>,
) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let served = serve(conn, chunks, answers, |conn, chunk| {
        let mut tx = SqliteTransaction(conn);
        without_waiting(steps::fleet_chunk(&mut tx, chunk, pass))
    });
    match (pass, served) {
        (FleetPass::Apply, Ok(())) => Ok(conn.execute_batch("COMMIT")?),
        (_, served) => {
            conn.execute_batch("ROLLBACK")?;
            served
        }
    }
}

fn serve(
    conn: &Connection,
    chunks: &mut mpsc::Receiver<SessionMessage>,
    answers: &mpsc::Sender<StoreResult<Verdicts>>,
    decide: impl Fn(&Connection, &[FleetRequest]) -> StoreResult<Verdicts>,
) -> StoreResult<()> {
    loop {
        match chunks.blocking_recv() {
            Some(SessionMessage::Chunk(chunk)) => {
                let decided = decide(conn, &chunk);
                let failed = decided.as_ref().err().cloned();
                if answers.blocking_send(decided).is_err() {
                    return Err(abandoned());
                }
                if let Some(error) = failed {
                    return Err(error);
                }
            }
            Some(SessionMessage::Finish) => return Ok(()),
            None => return Err(abandoned()),
        }
    }
}

fn abandoned() -> StoreError {
    StoreError::internal(
        "running a fleet session",
        std::io::Error::other("the session was dropped unfinished"),
    )
}

/// A fleet session: a request on the writer's thread that takes chunks
/// through `chunks` and answers through `answers` (see
/// [`run_session`]).
struct SqliteFleetSession {
    chunks: mpsc::Sender<SessionMessage>,
    answers: mpsc::Receiver<StoreResult<Verdicts>>,
    /// The request's end: once the transaction is committed (or not).
    done: Option<tokio::task::JoinHandle<StoreResult<()>>>,
}

impl SqliteFleetSession {
    /// Why the request ended early.
    async fn ended(&mut self) -> StoreError {
        match self.done.take() {
            Some(done) => match done.await {
                Ok(Err(error)) => error,
                Ok(Ok(())) => session_failed("the session ended early"),
                Err(_) => session_failed("the session's task failed"),
            },
            None => session_failed("the session has ended"),
        }
    }
}

fn session_failed(why: &str) -> StoreError {
    StoreError::internal(
        "running a fleet session",
        std::io::Error::other(why.to_owned()),
    )
}

#[async_trait]
impl FleetSession for SqliteFleetSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> StoreResult<Verdicts> {
        if self
            .chunks
            .send(SessionMessage::Chunk(chunk))
            .await
            .is_err()
        {
            return Err(self.ended().await);
        }
        match self.answers.recv().await {
            Some(answer) => answer,
            None => Err(self.ended().await),
        }
    }

    async fn finish(mut self: Box<Self>) -> StoreResult<()> {
        let _ = self.chunks.send(SessionMessage::Finish).await;
        match self.done.take() {
            Some(done) => done
                .await
                .unwrap_or_else(|_| Err(session_failed("the session's task failed"))),
            None => Err(session_failed("the session has ended")),
        }
    }
}
