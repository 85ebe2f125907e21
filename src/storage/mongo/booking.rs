//! Bookings and their events on MongoDB: each change in one transaction
//! that reads the facts, lets [`crate::domain::booking`] decide, and writes
//! the decision with its event.
//!
//! Every transaction writes the documents whose facts it decided from (the
//! slot's employee and vehicle, claimed as in [`super::fleet`], the booking
//! itself) and the event sequence counter, so of two concurrent writers the
//! second meets a write conflict, which the driver retries against the new
//! facts. The domain then names the booking in the way; the unique indexes
//! are a backstop.

use mongodb::ClientSession;
use mongodb::bson::Document;
use mongodb::error::Error as MongoError;
use mongodb::options::{ReadConcern, ReturnDocument, WriteConcern};

use super::fleet::{gone, malformed};
use super::{MongoStore, documents as d, raised_in_transaction};
use crate::domain::NewEvent;
use crate::domain::booking::{
    self, BookingCommand, BookingDecision, BookingFacts, BookingWrite, Slot, Subject,
};
use crate::storage::StoreResult;

impl MongoStore {
    /// Decides and writes a change to a booking in one transaction.
    pub(super) async fn write_booking(
        &self,
        command: BookingCommand,
    ) -> StoreResult<BookingDecision> {
        self.writable()?;
        let mut session = self.session().await?;
        session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .write_concern(WriteConcern::majority())
            // `and_run` with owned context rather than `and_run2`: the
            // latter trips a compiler bug (rust-lang/rust#96865) that makes
            // the future not provably `Send`.
            .and_run((self.clone(), command), |session, (store, command)| {
                Box::pin(async move { store.booking_in(session, command).await })
            })
            .await
            .map_err(|error| {
                raised_in_transaction(&error)
                    .unwrap_or_else(|| super::errors::classify("writing an allocation", error))
            })
    }

    async fn booking_in(
        &self,
        session: &mut ClientSession,
        command: &BookingCommand,
    ) -> Result<BookingDecision, MongoError> {
        let mut facts = BookingFacts::default();
        match command.subject() {
            Subject::Booking(id) => facts.existing = self.booking(session, id).await?,
            Subject::Key {
                request_id,
                live_after,
            } => {
                let earlier = self
                    .keys
                    .find_one(d::idempotency_key_since(request_id, live_after))
                    .session(&mut *session)
                    .await?;
                if let Some(earlier) = earlier {
                    let (allocation_id, fingerprint) =
                        d::idempotency_from(&earlier).map_err(malformed)?;
                    facts.existing = self.booking(session, &allocation_id).await?;
                    facts.earlier_key = Some((allocation_id, fingerprint));
                }
            }
            Subject::Nothing => {}
        }
        if let Some(slot) = command.slot(&facts) {
            self.read_slot(session, &slot, &mut facts).await?;
        }
        let decision = booking::decide(command, facts).map_err(MongoError::custom)?;
        if let BookingDecision::Write(write) = &decision {
            self.apply_booking(session, write).await?;
        }
        Ok(decision)
    }

    async fn booking(
        &self,
        session: &mut ClientSession,
        id: &str,
    ) -> Result<Option<crate::domain::Allocation>, MongoError> {
        self.allocations
            .find_one(d::by_id(id))
            .session(&mut *session)
            .await?
            .map(|doc| d::allocation_from(&doc))
            .transpose()
            .map_err(malformed)
    }

    /// Reads (and claims) the facts of the slot a booking would take.
    async fn read_slot(
        &self,
        session: &mut ClientSession,
        slot: &Slot,
        facts: &mut BookingFacts,
    ) -> Result<(), MongoError> {
        let employee = self
            .employees
            .find_one_and_update(d::by_id(&slot.employee_id), d::claim())
            .session(&mut *session)
            .await?;
        facts.employee = employee
            .map(|e| d::employee_from(&e))
            .transpose()
            .map_err(malformed)?;
        let vehicle = self
            .vehicles
            .find_one_and_update(d::by_id(&slot.vehicle_id), d::claim())
            .session(&mut *session)
            .await?;
        if let Some(vehicle) = vehicle {
            facts.vehicle = Some((
                d::vehicle_row_from(&vehicle).map_err(malformed)?,
                d::timeline_from(&vehicle).map_err(malformed)?,
            ));
        }
        facts.block = self
            .blocks
            .find_one(d::block_on(&slot.vehicle_id, slot.date))
            .session(&mut *session)
            .await?
            .map(|b| d::block_from(&b))
            .transpose()
            .map_err(malformed)?;
        let except = slot.except.as_deref();
        for (field, value, holder) in [
            ("vehicle_id", &slot.vehicle_id, &mut facts.vehicle_holder),
            ("employee_id", &slot.employee_id, &mut facts.employee_holder),
        ] {
            let found = self
                .allocations
                .find_one(d::slot_taken(field, value, slot.date, except))
                .session(&mut *session)
                .await?;
            *holder = found
                .map(|doc| d::id_of(d::ALLOCATIONS, &doc))
                .transpose()
                .map_err(malformed)?;
        }
        Ok(())
    }

    async fn apply_booking(
        &self,
        session: &mut ClientSession,
        write: &BookingWrite,
    ) -> Result<(), MongoError> {
        match (&write.before, &write.after) {
            (None, Some(after)) => {
                self.allocations
                    .insert_one(d::allocation_document(after))
                    .session(&mut *session)
                    .await?;
            }
            (Some(before), Some(after)) => {
                let updated = self
                    .allocations
                    .update_one(
                        d::version_guard(&before.id, before.version),
                        d::allocation_update(after),
                    )
                    .session(&mut *session)
                    .await?;
                if updated.matched_count != 1 {
                    return Err(gone("updating an allocation"));
                }
            }
            (Some(before), None) => {
                let deleted = self
                    .allocations
                    .delete_one(d::version_guard(&before.id, before.version))
                    .session(&mut *session)
                    .await?;
                if deleted.deleted_count != 1 {
                    return Err(gone("cancelling an allocation"));
                }
            }
            (None, None) => {}
        }
        if let (Some((key, at)), Some(after)) = (&write.key, &write.after) {
            // Replaces an expired key that the TTL monitor has not removed yet.
            self.keys
                .replace_one(
                    d::by_id(&key.request_id),
                    d::idempotency_document(key, &after.id, *at),
                )
                .upsert(true)
                .session(&mut *session)
                .await?;
        }
        self.append_events(session, std::slice::from_ref(&write.event))
            .await
    }

    /// Appends `events` with the next sequences, taken from the counter in
    /// this transaction.
    pub(super) async fn append_events(
        &self,
        session: &mut ClientSession,
        events: &[NewEvent],
    ) -> Result<(), MongoError> {
        if events.is_empty() {
            return Ok(());
        }
        let counter = self
            .settings
            .find_one_and_update(d::by_id(d::EVENT_SEQUENCE), d::take_sequences(events.len()))
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await?
            .ok_or_else(|| gone("taking event sequences"))?;
        let last = d::sequence_from(&counter).map_err(malformed)?;
        let first = last + 1 - events.len() as u64;
        let documents = events
            .iter()
            .zip(first..)
            .map(|(event, sequence)| d::event_document(sequence, event))
            .collect::<Result<Vec<Document>, _>>()
            .map_err(malformed)?;
        self.events
            .insert_many(documents)
            .session(&mut *session)
            .await?;
        Ok(())
    }
}
