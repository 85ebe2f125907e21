//! Bookings and their events on MongoDB: each change in one transaction
//! that reads the facts, lets [`crate::domain::booking`] decide, and writes
//! the decision with its event.
//!
//! Every transaction writes the documents whose facts it decided from (the
//! slot's employee and vehicle, claimed as in [`super::fleet`], the booking
//! itself, its idempotency key), so of two concurrent writers deciding
//! from the same facts the second meets a write conflict, and is run again
//! against the new facts ([`super::transaction::run`]). The domain then
//! names the booking in the way; the unique indexes are a backstop.

use async_trait::async_trait;
use mongodb::ClientSession;
use mongodb::error::Error as MongoError;

use super::errors::{gone, malformed};
use super::{MongoStore, documents as d, raised_in_transaction};
use super::{classify, decoded};
use crate::domain::allocation::allocation_not_found;
use crate::domain::booking::{BookingCommand, BookingDecision, BookingFacts, BookingWrite, Slot};
use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, HistoryCursor, HistoryFilter, NewAllocation,
    Page, PageRequest, UpdatedAllocation,
};
use crate::storage::StoreResult;
use crate::storage::steps;
use crate::storage::{BookingStore, Decided as _};

impl MongoStore {
    /// Decides and writes a change to a booking in one transaction.
    pub(super) async fn write_booking(
        &self,
        command: BookingCommand,
    ) -> StoreResult<BookingDecision> {
        self.writable()?;
        // `run` with owned context: capturing references trips a compiler
        // bug (rust-lang/rust#96865) that makes the future not provably
        // `Send`.
        super::transaction::run(self, "booking", command, |mut tx, command| {
            Box::pin(async move { steps::write_booking(&mut tx, command).await })
        })
        .await
        .map_err(|error| {
            raised_in_transaction(&error)
                .unwrap_or_else(|| super::errors::classify("writing an allocation", error))
        })
    }

    /// One booking by id.
    pub(super) async fn booking(
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

    /// The booking id and fingerprint stored under `request_id` after
    /// `live_after`.
    pub(super) async fn idempotency_key(
        &self,
        session: &mut ClientSession,
        request_id: &str,
        live_after: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<(String, u64)>, MongoError> {
        self.keys
            .find_one(d::idempotency_key_since(request_id, live_after))
            .session(&mut *session)
            .await?
            .map(|earlier| d::idempotency_from(&earlier))
            .transpose()
            .map_err(malformed)
    }

    /// Reads (and claims) the facts of the slot a booking would take.
    pub(super) async fn read_slot(
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

    /// Writes a decided change: the booking and its key.
    pub(super) async fn apply_booking(
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
        Ok(())
    }
}

impl MongoStore {
    async fn find_allocation(&self, id: &str) -> StoreResult<Option<Allocation>> {
        let found = self
            .allocations
            .find_one(d::by_id(id))
            .await
            .map_err(classify("reading an allocation"))?;
        match found {
            Some(document) => decoded(d::allocation_from(&document)).map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl BookingStore for MongoStore {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        self.write_booking(BookingCommand::Create(new))
            .await?
            .created()
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        self.find_allocation(id)
            .await?
            .ok_or_else(|| allocation_not_found(id).into())
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        self.write_booking(BookingCommand::Update(update))
            .await?
            .updated()
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        self.write_booking(BookingCommand::Cancel(deletion))
            .await?
            .cancelled()
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        self.find_page(
            &self.allocations,
            d::history_filter(filter, page.after.as_ref()),
            d::history_filter(filter, None),
            d::history_sort(),
            page.size,
            d::allocation_from,
            "listing history",
        )
        .await
    }
}
