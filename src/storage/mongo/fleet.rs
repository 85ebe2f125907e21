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

use async_trait::async_trait;
use chrono::NaiveDate;
use mongodb::ClientSession;
use mongodb::bson::Document;
use mongodb::error::Error as MongoError;
use std::time::Duration;

use super::errors::{gone, malformed, retry_commit, retry_transaction};
use super::sequences::Taken;
use super::transaction::MongoTransaction;
use super::transaction_options;
use super::{MongoStore, classify, collect_in, documents as d, raised_in_transaction};
use super::{collect, decoded};
use crate::domain::admin::{FactQuery, Facts, FleetWrite};
use crate::domain::{Allocation, FleetOutcome, FleetRequest, NewEvent};
use crate::domain::{
    DomainError, Driver, Employee, Page, PageRequest, Resource, Vehicle, VehicleBlock,
};
use crate::storage::FleetStore;
use crate::storage::steps;
use crate::storage::{FleetPass, FleetSession, Verdicts};
use crate::storage::{StoreError, StoreResult};

impl MongoStore {
    pub(super) async fn apply_fleet_batch(
        &self,
        requests: Vec<FleetRequest>,
    ) -> StoreResult<Vec<FleetOutcome>> {
        self.writable()?;
        super::transaction::run(self, "fleet", requests, |mut tx, requests| {
            Box::pin(async move { steps::apply_fleet(&mut tx, requests).await })
        })
        .await
        .map_err(|error| {
            raised_in_transaction(&error)
                .unwrap_or_else(|| super::errors::classify("changing the fleet", error))
        })
    }

    /// A session of fleet commands in one transaction, kept open across
    /// chunks (see [`FleetSession`]). The driver's retry of a whole
    /// transaction needs every command at once, so an apply whose commit
    /// meets a write conflict fails with a storage error instead: run the
    /// import again. A check keeps its chunks and replays them instead
    /// (see [`MongoFleetSession::run`]).
    pub(super) async fn open_fleet_session(
        &self,
        pass: FleetPass,
    ) -> StoreResult<Box<dyn FleetSession>> {
        self.writable()?;
        let mut session = self.session().await?;
        session
            .start_transaction()
            .with_options(transaction_options())
            .await
            .map_err(classify("starting a transaction"))?;
        Ok(Box::new(MongoFleetSession {
            store: self.clone(),
            session,
            pass,
            checked: Vec::new(),
            failed: false,
            events: Vec::new(),
        }))
    }

    pub(super) async fn read_facts(
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
    pub(super) async fn claim(
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

    /// Writes what a command decided (not its events).
    pub(super) async fn apply_write(
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
    /// The chunks a check has run, to replay in a new transaction when its
    /// transaction has to be retried (bounded by the import's size limit).
    checked: Vec<FleetRequest>,
    /// A failed chunk ends the session: its transaction is aborted.
    failed: bool,
    /// The events an apply decided: they take their sequences when it
    /// finishes, just before the commit, so that the change feed does not
    /// wait behind an open session.
    events: Vec<NewEvent>,
}

/// Tries of one check chunk, the first included, before UNAVAILABLE.
const CHECK_ATTEMPTS: u32 = 5;

/// Whether a chunk whose `attempt`-th try (from 1) failed with `error` is
/// tried again, and after what pause: on a check, while the transaction
/// may be retried (a write conflict with a concurrent booking, an
/// election). An apply is not: its earlier chunks' outcomes are answered
/// already and must not be decided again.
fn check_retry(pass: FleetPass, attempt: u32, error: &MongoError) -> Option<Duration> {
    (pass == FleetPass::Check && attempt < CHECK_ATTEMPTS && retry_transaction(error))
        .then(|| Duration::from_millis(10 << attempt.min(8)))
}

fn session_over() -> StoreError {
    StoreError::internal(
        "running a fleet session",
        std::io::Error::other("an earlier chunk failed; the transaction was aborted"),
    )
}

impl MongoFleetSession {
    /// Runs `chunk` in the session's transaction; with `fresh`, in a new
    /// transaction after replaying the chunks checked before it.
    async fn attempt(
        &mut self,
        chunk: &[FleetRequest],
        fresh: bool,
    ) -> Result<Verdicts, MongoError> {
        if fresh {
            self.session
                .start_transaction()
                .with_options(transaction_options())
                .await?;
        }
        let mut tx = MongoTransaction {
            store: &self.store,
            session: &mut self.session,
            events: &mut self.events,
        };
        if fresh {
            // Their verdicts were answered already; only their effects count.
            steps::fleet_chunk(&mut tx, &self.checked, self.pass).await?;
        }
        steps::fleet_chunk(&mut tx, chunk, self.pass).await
    }
}

#[async_trait::async_trait]
impl FleetSession for MongoFleetSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> StoreResult<Verdicts> {
        if self.failed {
            return Err(session_over());
        }
        let mut attempt = 1;
        let error = loop {
            match self.attempt(&chunk, attempt > 1).await {
                Ok(verdicts) => {
                    if self.pass == FleetPass::Check {
                        self.checked.extend(chunk);
                    }
                    return Ok(verdicts);
                }
                Err(error) => {
                    let _ = self.session.abort_transaction().await;
                    match check_retry(self.pass, attempt, &error) {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => break error,
                    }
                    attempt += 1;
                }
            }
        };
        self.failed = true;
        Err(raised_in_transaction(&error)
            .unwrap_or_else(|| super::errors::classify("changing the fleet", error)))
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
                let mut taken = Taken::new(&self.store);
                let events = std::mem::take(&mut self.events);
                if let Err(error) = self
                    .store
                    .insert_events(&mut self.session, &events, &mut taken)
                    .await
                {
                    let _ = self.session.abort_transaction().await;
                    taken.give_up().await;
                    return Err(raised_in_transaction(&error).unwrap_or_else(|| {
                        super::errors::classify("inserting fleet events", error)
                    }));
                }
                let mut tries = 0;
                loop {
                    match self.session.commit_transaction().await {
                        Ok(()) => {
                            taken.keep();
                            return Ok(());
                        }
                        // A commit may be retried when its result is unknown.
                        Err(error) if tries < 3 && retry_commit(&error) => {
                            tries += 1;
                        }
                        Err(error) => {
                            taken.give_up().await;
                            return Err(super::errors::classify("committing fleet changes", error));
                        }
                    }
                }
            }
        }
    }
}

impl MongoStore {
    async fn vehicles_page(
        &self,
        pipeline: Vec<Document>,
        size: usize,
        total: u64,
    ) -> StoreResult<Page<Vehicle>> {
        let cursor = self
            .vehicles
            .aggregate(pipeline)
            .await
            .map_err(classify("listing vehicles"))?;
        let rows = collect(cursor, "listing vehicles")
            .await?
            .iter()
            .map(d::vehicle_from)
            .collect::<Result<Vec<_>, _>>();
        Ok(Page::from_rows(decoded(rows)?, size, total))
    }
}

#[async_trait]
impl FleetStore for MongoStore {
    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        let found = self
            .employees
            .find_one(d::by_id(id))
            .await
            .map_err(classify("reading an employee"))?
            .ok_or_else(|| DomainError::not_found(Resource::Employee, id))?;
        decoded(d::employee_from(&found))
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        self.find_page(
            &self.employees,
            d::employees_filter(department, show_deactivated, page.after.as_deref()),
            d::employees_filter(department, show_deactivated, None),
            d::id_sort(),
            page.size,
            d::employee_from,
            "listing employees",
        )
        .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<Driver> {
        let found = self
            .drivers
            .find_one(d::by_id(id))
            .await
            .map_err(classify("reading a driver"))?
            .ok_or_else(|| DomainError::not_found(Resource::Driver, id))?;
        decoded(d::driver_from(&found))
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>> {
        self.find_page(
            &self.drivers,
            d::drivers_filter(show_deactivated, page.after.as_deref()),
            d::drivers_filter(show_deactivated, None),
            d::id_sort(),
            page.size,
            d::driver_from,
            "listing drivers",
        )
        .await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        let page = self
            .vehicles_page(d::vehicles_pipeline(d::by_id(id), on, 1), 1, 1)
            .await?;
        page.items
            .into_iter()
            .next()
            .ok_or_else(|| DomainError::not_found(Resource::Vehicle, id).into())
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        let total = self
            .count(&self.vehicles, d::vehicles_filter(show_retired, None))
            .await?;
        let pipeline = d::vehicles_pipeline(
            d::vehicles_filter(show_retired, page.after.as_deref()),
            on,
            page.size as i64 + 1,
        );
        self.vehicles_page(pipeline, page.size, total).await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        let total = async {
            let cursor = self
                .vehicles
                .aggregate(d::available_count_pipeline(date))
                .await
                .map_err(classify("counting available vehicles"))?;
            let counted = collect(cursor, "counting available vehicles").await?;
            Ok::<_, StoreError>(match counted.first() {
                Some(doc) => decoded(d::count_from(doc))?,
                None => 0,
            })
        };
        let pipeline =
            d::available_vehicles_pipeline(date, page.after.as_deref(), page.size as i64 + 1);
        let (total, page) = tokio::try_join!(total, self.vehicles_page(pipeline, page.size, 0))?;
        Ok(Page {
            total_size: total,
            ..page
        })
    }

    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<VehicleBlock>> {
        let vehicle = self
            .vehicles
            .find_one(d::by_id(vehicle_id))
            .await
            .map_err(classify("reading a vehicle"))?;
        if vehicle.is_none() {
            return Err(DomainError::not_found(Resource::Vehicle, vehicle_id).into());
        }
        self.find_page(
            &self.blocks,
            d::blocks_filter(vehicle_id, page.after.as_deref()),
            d::blocks_filter(vehicle_id, None),
            d::id_sort(),
            page.size,
            d::block_from,
            "listing blocks",
        )
        .await
    }

    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>> {
        self.apply_fleet_batch(requests).await
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        self.open_fleet_session(pass).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mongo::errors::tests::labelled;

    #[test]
    fn a_check_is_retried_a_few_times_with_growing_pauses() {
        let conflict = labelled(mongodb::error::TRANSIENT_TRANSACTION_ERROR);
        let pauses: Vec<Duration> = (1..=CHECK_ATTEMPTS)
            .map_while(|attempt| check_retry(FleetPass::Check, attempt, &conflict))
            .collect();
        assert_eq!(pauses.len() as u32, CHECK_ATTEMPTS - 1, "then UNAVAILABLE");
        assert!(pauses.windows(2).all(|w| w[0] < w[1]), "{pauses:?}");
        assert!(pauses.iter().sum::<Duration>() < Duration::from_secs(1));
    }

    #[test]
    fn only_a_check_and_only_a_transient_transaction_error_is_retried() {
        let conflict = labelled(mongodb::error::TRANSIENT_TRANSACTION_ERROR);
        assert!(check_retry(FleetPass::Apply, 1, &conflict).is_none());
        let commit = labelled(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT);
        assert!(check_retry(FleetPass::Check, 1, &commit).is_none());
        let refusal = MongoError::custom("refused");
        assert!(check_retry(FleetPass::Check, 1, &refusal).is_none());
    }
}
