//! The steps of every write, once for every backend: read the facts inside
//! the backend's transaction, let the domain decide, apply what it decided
//! together with its events.
//!
//! A backend implements [`Transaction`] in its own query language (the
//! reads and the writes) and runs these functions inside its transaction;
//! what to read, in which order, and what a dry run skips are decided here.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};

use super::{FleetPass, Verdicts};
use crate::domain::admin::{self, FactQuery, Facts, FleetWrite};
use crate::domain::booking::{self, BookingCommand, BookingDecision, BookingFacts, BookingWrite};
use crate::domain::booking::{Slot, Subject};
use crate::domain::{Allocation, DomainError, FleetOutcome, FleetRequest, NewEvent};

/// One open write transaction of a backend: the reads the decisions need
/// and the writes they make. Everything happens in the one transaction, so
/// that what was decided from the facts still holds when it is written.
pub(crate) trait Transaction {
    /// The backend's error, which a refusal must be able to travel in (on
    /// MongoDB it aborts the transaction).
    type Error;

    /// A refusal as the backend's error.
    fn refused(refusal: DomainError) -> Self::Error;

    /// One booking by id.
    async fn booking(&mut self, id: &str) -> Result<Option<Allocation>, Self::Error>;

    /// The booking id and request fingerprint stored under an idempotency
    /// key after `live_after`.
    async fn idempotency_key(
        &mut self,
        request_id: &str,
        live_after: DateTime<Utc>,
    ) -> Result<Option<(String, u64)>, Self::Error>;

    /// The facts of the slot a booking would take, into `facts`: its
    /// employee, its vehicle with the driver timeline, the block covering
    /// the date, and the bookings holding the vehicle or the employee that
    /// day other than `slot.except`.
    async fn slot(&mut self, slot: &Slot, facts: &mut BookingFacts) -> Result<(), Self::Error>;

    /// Writes a decided booking change (not its event).
    async fn apply_booking(&mut self, write: &BookingWrite) -> Result<(), Self::Error>;

    /// What a fleet command needs to be decided.
    async fn fleet_facts(&mut self, query: &FactQuery) -> Result<Facts, Self::Error>;

    /// Makes the facts a fleet command was decided from conflict with any
    /// concurrent transaction that decides from them too, where the
    /// backend's isolation does not already (MongoDB writes to each
    /// document; SQLite has one writer and does nothing).
    async fn claim(&mut self, query: &FactQuery) -> Result<(), Self::Error>;

    /// Writes a decided fleet change (not its events).
    async fn apply_fleet(&mut self, write: &FleetWrite) -> Result<(), Self::Error>;

    /// Appends events with the next sequences.
    async fn append_events(&mut self, events: &[NewEvent]) -> Result<(), Self::Error>;
}

/// Decides and writes a change to a booking with its event.
pub(crate) async fn write_booking<T: Transaction>(
    tx: &mut T,
    command: &BookingCommand,
) -> Result<BookingDecision, T::Error> {
    let mut facts = BookingFacts::default();
    match command.subject() {
        Subject::Booking(id) => facts.existing = tx.booking(id).await?,
        Subject::Key {
            request_id,
            live_after,
        } => {
            if let Some((allocation_id, fingerprint)) =
                tx.idempotency_key(request_id, live_after).await?
            {
                facts.existing = tx.booking(&allocation_id).await?;
                facts.earlier_key = Some((allocation_id, fingerprint));
            }
        }
        Subject::Nothing => {}
    }
    if let Some(slot) = command.slot(&facts) {
        tx.slot(&slot, &mut facts).await?;
    }
    let decision = booking::decide(command, facts).map_err(T::refused)?;
    if let BookingDecision::Write(write) = &decision {
        tx.apply_booking(write).await?;
        tx.append_events(std::slice::from_ref(&write.event)).await?;
    }
    Ok(decision)
}

/// Decides one fleet command from the facts as the commands before it in
/// the transaction left them, and writes it: its outcome, or why it was
/// refused (nothing written then). A [`FleetPass::Check`] writes the change
/// so that later commands see it, but claims nothing and takes no event
/// sequences: its transaction is rolled back, and on MongoDB a sequence
/// taken would hold up every other writer until then.
pub(crate) async fn fleet_command<T: Transaction>(
    tx: &mut T,
    request: &FleetRequest,
    pass: FleetPass,
) -> Result<Result<FleetOutcome, DomainError>, T::Error> {
    let query = request.command.needs(request.window.today);
    let facts = tx.fleet_facts(&query).await?;
    let (write, outcome) = match admin::decide(request, facts) {
        Ok(decided) => decided,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if pass == FleetPass::Apply {
        tx.claim(&query).await?;
    }
    tx.apply_fleet(&write).await?;
    if pass == FleetPass::Apply {
        tx.append_events(&write.events).await?;
    }
    Ok(Ok(outcome))
}

/// Decides a chunk of fleet commands in order (see [`fleet_command`]). On
/// [`FleetPass::Apply`] the first refusal fails the chunk, as the
/// backend's error: the transaction must not commit.
pub(crate) async fn fleet_chunk<T: Transaction>(
    tx: &mut T,
    chunk: &[FleetRequest],
    pass: FleetPass,
) -> Result<Verdicts, T::Error> {
    let mut verdicts = Vec::with_capacity(chunk.len());
    for request in chunk {
        match fleet_command(tx, request, pass).await? {
            Err(refusal) if pass == FleetPass::Apply => return Err(T::refused(refusal)),
            verdict => verdicts.push(verdict),
        }
    }
    Ok(verdicts)
}

/// Applies fleet commands in order, all of them or, at the first refusal,
/// none (the error aborts the transaction).
pub(crate) async fn apply_fleet<T: Transaction>(
    tx: &mut T,
    requests: &[FleetRequest],
) -> Result<Vec<FleetOutcome>, T::Error> {
    let verdicts = fleet_chunk(tx, requests, FleetPass::Apply).await?;
    Ok(verdicts.into_iter().flatten().collect())
}

/// The output of a future that never waits: a backend whose transaction is
/// synchronous (SQLite, on its writer thread) runs the steps with it.
///
/// # Panics
/// If the future waits, which a synchronous backend's never does.
pub(crate) fn without_waiting<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a synchronous transaction waited"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_that_does_not_wait_gives_its_output() {
        assert_eq!(without_waiting(async { 7 }), 7);
    }

    #[test]
    #[should_panic(expected = "a synchronous transaction waited")]
    fn a_future_that_waits_is_a_bug() {
        without_waiting(std::future::pending::<()>());
    }
}
