//! The write steps of [`crate::storage::steps`] on MongoDB: each read and
//! write in the session's transaction.

use chrono::{DateTime, Utc};
use mongodb::ClientSession;
use mongodb::error::Error as MongoError;

use super::MongoStore;
use crate::domain::admin::{FactQuery, Facts, FleetWrite};
use crate::domain::booking::{BookingFacts, BookingWrite, Slot};
use crate::domain::{Allocation, DomainError, NewEvent};
use crate::storage::steps::Transaction;

/// A session inside its transaction, and the store's collections.
pub(super) struct MongoTransaction<'a> {
    pub store: &'a MongoStore,
    pub session: &'a mut ClientSession,
}

impl Transaction for MongoTransaction<'_> {
    type Error = MongoError;

    /// A refusal aborts the transaction as the driver's custom error, which
    /// [`super::raised_in_transaction`] turns back into the refusal.
    fn refused(refusal: DomainError) -> MongoError {
        MongoError::custom(refusal)
    }

    async fn booking(&mut self, id: &str) -> Result<Option<Allocation>, MongoError> {
        self.store.booking(self.session, id).await
    }

    async fn idempotency_key(
        &mut self,
        request_id: &str,
        live_after: DateTime<Utc>,
    ) -> Result<Option<(String, u64)>, MongoError> {
        self.store
            .idempotency_key(self.session, request_id, live_after)
            .await
    }

    async fn slot(&mut self, slot: &Slot, facts: &mut BookingFacts) -> Result<(), MongoError> {
        self.store.read_slot(self.session, slot, facts).await
    }

    async fn apply_booking(&mut self, write: &BookingWrite) -> Result<(), MongoError> {
        self.store.apply_booking(self.session, write).await
    }

    async fn fleet_facts(&mut self, query: &FactQuery) -> Result<Facts, MongoError> {
        self.store.read_facts(self.session, query).await
    }

    async fn claim(&mut self, query: &FactQuery) -> Result<(), MongoError> {
        self.store.claim(self.session, query).await
    }

    async fn apply_fleet(&mut self, write: &FleetWrite) -> Result<(), MongoError> {
        self.store.apply_write(self.session, write).await
    }

    async fn append_events(&mut self, events: &[NewEvent]) -> Result<(), MongoError> {
        self.store.append_events(self.session, events).await
    }
}
