//! Fleet administration on MongoDB: each batch of commands in one
//! transaction, each command decided by the domain from facts read in that
//! transaction.
//!
//! Snapshot isolation alone would let two transactions decide from facts
//! the other one changes (a block created while a booking is made in it).
//! So every transaction writes each vehicle, employee and driver document
//! whose facts it decided from, if only to bump its write count
//! ([`d::claim`]): of two such transactions the second to write fails with a
//! write conflict and is retried by the driver, against the new facts.

use mongodb::ClientSession;
use mongodb::bson::Document;
use mongodb::error::Error as MongoError;
use mongodb::options::{ReadConcern, WriteConcern};

use super::{MongoStore, classify, collect_in, documents as d, raised_in_transaction};
use crate::domain::admin::{self, FactQuery, Facts, FleetWrite};
use crate::domain::{Allocation, DomainError, FleetOutcome, FleetRequest};
use crate::storage::{FleetPass, FleetSession, Verdicts};
use crate::storage::{StoreError, StoreResult};

/// Refusals and decoding failures travel through the transaction as the
/// driver's custom errors, which abort it.
pub(super) fn malformed(m: d::Malformed) -> MongoError {
    MongoError::custom(StoreError::internal("decoding a MongoDB document", m))
}

/// A document read in the transaction was not there to write.
pub(super) fn gone(context: &str) -> MongoError {
    MongoError::custom(StoreError::internal(
        context.to_owned(),
        std::io::Error::other("the document changed inside the transaction"),
    ))
}

impl MongoStore {
    pub(super) async fn apply_fleet_batch(
        &self,
        requests: Vec<FleetRequest>,
    ) -> StoreResult<Vec<FleetOutcome>> {
        self.writable()?;
        let mut session = self.session().await?;
        let result = session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .write_concern(WriteConcern::majority())
            .and_run((self.clone(), requests), |session, (store, requests)| {
                Box::pin(async move {
                    let mut outcomes = Vec::with_capacity(requests.len());
                    for request in requests.iter() {
                        let query = request.command.needs(request.window.today);
                        let facts = store.read_facts(session, &query).await?;
                        let (write, outcome) =
                            admin::decide(request, facts).map_err(MongoError::custom)?;
                        store.claim(session, &query).await?;
                        store.apply_write(session, &write).await?;
                        store.append_events(session, &write.events).await?;
                        outcomes.push(outcome);
                    }
                    Ok(outcomes)
                })
            })
            .await;
        result.map_err(|error| {
            raised_in_transaction(&error)
                .unwrap_or_else(|| super::errors::classify("changing the fleet", error))
        })
    }

    /// A session of fleet commands in one transaction, kept open across
    /// chunks (see [`FleetSession`]). The driver's retry of a whole
    /// transaction needs every command at once, so an apply whose commit
    /// meets a write conflict fails with a storage error instead: run the
    /// import again.
    pub(super) async fn open_fleet_session(
        &self,
        pass: FleetPass,
    ) -> StoreResult<Box<dyn FleetSession>> {
        self.writable()?;
        let mut session = self.session().await?;
        let start = session
            .start_transaction()
            .read_concern(ReadConcern::snapshot());
        let started = match pass {
            FleetPass::Check => start.await,
            FleetPass::Apply => start.write_concern(WriteConcern::majority()).await,
        };
        started.map_err(classify("starting a transaction"))?;
        Ok(Box::new(MongoFleetSession {
            store: self.clone(),
            session,
            pass,
            failed: false,
        }))
    }

    /// Decides one command in the session's transaction: a refusal is
    /// `Ok(Err)`; on a check, nothing is claimed and no event is appended
    /// (a check must not take sequences: the counter would hold up every
    /// writer until it ends).
    async fn decide_in(
        &self,
        session: &mut ClientSession,
        pass: FleetPass,
        request: &FleetRequest,
    ) -> Result<Result<FleetOutcome, DomainError>, MongoError> {
        let query = request.command.needs(request.window.today);
        let facts = self.read_facts(session, &query).await?;
        let (write, outcome) = match admin::decide(request, facts) {
            Ok(decided) => decided,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if pass == FleetPass::Apply {
            self.claim(session, &query).await?;
        }
        self.apply_write(session, &write).await?;
        if pass == FleetPass::Apply {
            self.append_events(session, &write.events).await?;
        }
        Ok(Ok(outcome))
    }

    async fn read_facts(
        &self,
        session: &mut ClientSession,
        query: &FactQuery,
    ) -> Result<Facts, MongoError> {
        let mut facts = Facts::default();
        if let Some(id) = &query.employee {
            let found = self
                .employees
                .find_one(d::by_id(id))
                .session(&mut *session)
                .await?;
            facts.employee = found
                .map(|doc| d::employee_from(&doc))
                .transpose()
                .map_err(malformed)?;
        }
        if let Some(id) = &query.driver {
            let found = self
                .drivers
                .find_one(d::by_id(id))
                .session(&mut *session)
                .await?;
            facts.driver = found
                .map(|doc| d::driver_from(&doc))
                .transpose()
                .map_err(malformed)?;
        }
        if let Some(id) = &query.vehicle {
            let found = self
                .vehicles
                .find_one(d::by_id(id))
                .session(&mut *session)
                .await?;
            if let Some(doc) = found {
                let vehicle = d::vehicle_row_from(&doc).map_err(malformed)?;
                let timeline = d::timeline_from(&doc).map_err(malformed)?;
                facts.vehicle = Some((vehicle, timeline));
            }
        }
        if let Some(id) = &query.block {
            let found = self
                .blocks
                .find_one(d::by_id(id))
                .session(&mut *session)
                .await?;
            facts.block = found
                .map(|doc| d::block_from(&doc))
                .transpose()
                .map_err(malformed)?;
        }
        for unique in &query.unique {
            let (collection, filter) = d::unique_holder(unique);
            let holder = self
                .db
                .collection::<Document>(collection)
                .find_one(filter)
                .session(&mut *session)
                .await?;
            if let Some(holder) = holder {
                let id = d::id_of(collection, &holder).map_err(malformed)?;
                facts.taken.push((unique.clone(), id));
            }
        }
        if let Some(bookings) = &query.bookings {
            let cursor = self
                .allocations
                .find(d::bookings_filter(bookings))
                .sort(d::bookings_sort())
                .session(&mut *session)
                .await?;
            let documents = collect_in(cursor, session).await?;
            facts.bookings = documents
                .iter()
                .map(d::allocation_from)
                .collect::<Result<Vec<Allocation>, _>>()
                .map_err(malformed)?;
        }
        if let Some(driver_id) = &query.driver_timelines {
            let cursor = self
                .vehicles
                .find(d::driver_vehicles(driver_id))
                .sort(d::id_sort())
                .session(&mut *session)
                .await?;
            for doc in collect_in(cursor, session).await? {
                let id = d::id_of(d::VEHICLES, &doc).map_err(malformed)?;
                let timeline = d::timeline_from(&doc).map_err(malformed)?;
                facts.driver_timelines.push((id, timeline));
            }
        }
        Ok(facts)
    }

    /// Writes to every document whose facts the decision read (see the
    /// module documentation).
    async fn claim(
        &self,
        session: &mut ClientSession,
        query: &FactQuery,
    ) -> Result<(), MongoError> {
        for (collection, id) in [
            (&self.employees, &query.employee),
            (&self.drivers, &query.driver),
            (&self.vehicles, &query.vehicle),
        ] {
            if let Some(id) = id {
                collection
                    .update_one(d::by_id(id), d::claim())
                    .session(&mut *session)
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply_write(
        &self,
        session: &mut ClientSession,
        write: &FleetWrite,
    ) -> Result<(), MongoError> {
        if let Some(e) = &write.employee {
            self.employees
                .replace_one(d::by_id(&e.id), d::employee_document(e))
                .upsert(true)
                .session(&mut *session)
                .await?;
        }
        if let Some(driver) = &write.driver {
            self.drivers
                .replace_one(d::by_id(&driver.id), d::driver_document(driver))
                .upsert(true)
                .session(&mut *session)
                .await?;
        }
        if let Some(v) = &write.vehicle {
            let timeline = write
                .timelines
                .iter()
                .find(|(id, _)| *id == v.id)
                .map(|(_, t)| t.as_slice());
            let updated = self
                .vehicles
                .update_one(d::by_id(&v.id), d::vehicle_update(v))
                .session(&mut *session)
                .await?;
            if updated.matched_count == 0 {
                self.vehicles
                    .insert_one(d::vehicle_document(v, timeline.unwrap_or_default()))
                    .session(&mut *session)
                    .await?;
            }
        }
        for (vehicle_id, timeline) in &write.timelines {
            self.vehicles
                .update_one(d::by_id(vehicle_id), d::timeline_update(timeline))
                .session(&mut *session)
                .await?;
        }
        if let Some(block) = &write.insert_block {
            self.blocks
                .insert_one(d::block_document(block))
                .session(&mut *session)
                .await?;
        }
        if let Some(id) = &write.delete_block {
            self.blocks
                .delete_one(d::by_id(id))
                .session(&mut *session)
                .await?;
        }
        for booking in &write.cancel {
            let deleted = self
                .allocations
                .delete_one(d::version_guard(&booking.id, booking.version))
                .session(&mut *session)
                .await?;
            if deleted.deleted_count != 1 {
                return Err(gone("cancelling a booking"));
            }
        }
        for (before, after) in &write.redrive {
            let updated = self
                .allocations
                .update_one(
                    d::version_guard(&before.id, before.version),
                    d::redrive_update(after),
                )
                .session(&mut *session)
                .await?;
            if updated.matched_count != 1 {
                return Err(gone("changing a booking's driver"));
            }
        }
        if let Some(erasure) = &write.erase {
            for (filter, update) in d::erase_snapshots(erasure) {
                self.events
                    .update_many(filter, update)
                    .session(&mut *session)
                    .await?;
            }
        }
        Ok(())
    }
}

/// See [`MongoStore::open_fleet_session`]. Dropped unfinished, the driver
/// aborts its transaction.
struct MongoFleetSession {
    store: MongoStore,
    session: ClientSession,
    pass: FleetPass,
    /// A failed chunk ends the session: its transaction is aborted.
    failed: bool,
}

fn session_over() -> StoreError {
    StoreError::internal(
        "running a fleet session",
        std::io::Error::other("an earlier chunk failed; the transaction was aborted"),
    )
}

#[async_trait::async_trait]
impl FleetSession for MongoFleetSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> StoreResult<Verdicts> {
        if self.failed {
            return Err(session_over());
        }
        let mut verdicts = Vec::with_capacity(chunk.len());
        for request in &chunk {
            let decided = self
                .store
                .decide_in(&mut self.session, self.pass, request)
                .await;
            let failure = match decided {
                Ok(Err(refusal)) if self.pass == FleetPass::Apply => StoreError::Rejected(refusal),
                Ok(verdict) => {
                    verdicts.push(verdict);
                    continue;
                }
                Err(error) => raised_in_transaction(&error)
                    .unwrap_or_else(|| super::errors::classify("changing the fleet", error)),
            };
            self.failed = true;
            let _ = self.session.abort_transaction().await;
            return Err(failure);
        }
        Ok(verdicts)
    }

    async fn finish(mut self: Box<Self>) -> StoreResult<()> {
        if self.failed {
            return Err(session_over());
        }
        match self.pass {
            FleetPass::Check => {
                // Nothing of a check is kept; an abort that fails leaves the
                // transaction to time out on the server, writing nothing either.
                let _ = self.session.abort_transaction().await;
                Ok(())
            }
            FleetPass::Apply => {
                let mut tries = 0;
                loop {
                    match self.session.commit_transaction().await {
                        Ok(()) => return Ok(()),
                        // A commit may be retried when its result is unknown.
                        Err(error)
                            if tries < 3
                                && error.contains_label(
                                    mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT,
                                ) =>
                        {
                            tries += 1;
                        }
                        Err(error) => {
                            return Err(super::errors::classify("committing fleet changes", error));
                        }
                    }
                }
            }
        }
    }
}
