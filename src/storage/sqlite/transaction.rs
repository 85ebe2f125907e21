//! The write steps of [`crate::storage::steps`] on SQLite: each read and
//! write in the writer's open transaction, synchronously.

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::{bookings, events, fleet};
use crate::domain::admin::{FactQuery, Facts, FleetWrite};
use crate::domain::booking::{BookingCommand, BookingDecision, BookingFacts, BookingWrite, Slot};
use crate::domain::{Allocation, DomainError, FleetOutcome, FleetRequest, NewEvent};
use crate::storage::steps::{self, Transaction, without_waiting};
use crate::storage::{StoreError, StoreResult};

/// The writer's connection, inside its transaction.
pub(super) struct SqliteTransaction<'c>(pub &'c Connection);

/// Decides and writes a change to a booking with its event.
pub(super) fn write_booking(
    conn: &Connection,
    command: &BookingCommand,
) -> StoreResult<BookingDecision> {
    without_waiting(steps::write_booking(&mut SqliteTransaction(conn), command))
}

/// Decides and writes fleet commands in order, all or none.
pub(super) fn apply_fleet(
    conn: &Connection,
    requests: &[FleetRequest],
) -> StoreResult<Vec<FleetOutcome>> {
    without_waiting(steps::apply_fleet(&mut SqliteTransaction(conn), requests))
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
        bookings::read_slot(self.0, slot, facts)
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
