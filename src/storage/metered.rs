//! A [`Store`] that times every operation of the store behind it, by
//! backend and operation, and counts those that fail for a storage reason.
//! It also counts the bookings created, changed and cancelled, by calls
//! and by fleet commands, here alone: its answers are durable writes.
//! It sits right on the backend, under the cache, so a cache hit is not a
//! store operation. Each operation is a (debug) span, which traces carry.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use tracing::Instrument as _;

use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, Driver, Employee, Event, EventFilter,
    FleetOutcome, FleetRequest, HistoryCursor, HistoryFilter, NewAllocation, Page, PageKey,
    PageRequest, UpdatedAllocation, Vehicle, VehicleBlock,
};
use crate::storage::{BookingStore, EventLog, FleetStore, Maintenance};
use crate::storage::{FleetPass, FleetSession, Store, StoreError, StoreResult, Verdicts};

/// See the module documentation.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    backend: &'static str,
}

impl MeteredStore {
    /// `inner`, whose operations are recorded under `backend` ("sqlite",
    /// "mongodb").
    pub fn new(inner: Arc<dyn Store>, backend: &'static str) -> Self {
        Self { inner, backend }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        timed(self.backend, operation, work).await
    }
}

/// Runs `work` as one store operation: timed under `backend` and
/// `operation`, a span, and counted when it fails for a storage reason.
async fn timed<T>(
    backend: &'static str,
    operation: &'static str,
    work: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let started = Instant::now();
    let span = tracing::debug_span!("store", backend, operation);
    let result = work.instrument(span).await;
    let failed = matches!(
        result,
        Err(StoreError::Unavailable { .. } | StoreError::Internal { .. })
    );
    crate::metrics::store_operation(backend, operation, started.elapsed(), failed);
    result
}

/// The bookings fleet outcomes cancelled and gave another driver.
fn bookings_changed<'a>(outcomes: impl IntoIterator<Item = &'a FleetOutcome>) -> (usize, usize) {
    outcomes.into_iter().fold((0, 0), |(c, r), o| {
        (c + o.cancelled.len(), r + o.redriven.len())
    })
}

fn count_bookings(cancelled: usize, redriven: usize) {
    for _ in 0..cancelled {
        crate::metrics::booking_cancelled();
    }
    for _ in 0..redriven {
        crate::metrics::booking_changed();
    }
}

/// A fleet session whose chunks are timed like single calls, and whose
/// applied bookings count once it has committed.
struct MeteredSession {
    inner: Box<dyn FleetSession>,
    backend: &'static str,
    pass: FleetPass,
    cancelled: usize,
    redriven: usize,
}

#[async_trait]
impl FleetSession for MeteredSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> StoreResult<Verdicts> {
        let operation = match self.pass {
            FleetPass::Check => "check_fleet",
            FleetPass::Apply => "apply_fleet",
        };
        let verdicts = timed(self.backend, operation, self.inner.run(chunk)).await?;
        if self.pass == FleetPass::Apply {
            let (cancelled, redriven) = bookings_changed(verdicts.iter().flatten());
            self.cancelled += cancelled;
            self.redriven += redriven;
        }
        Ok(verdicts)
    }

    async fn finish(self: Box<Self>) -> StoreResult<()> {
        let Self {
            inner,
            backend,
            cancelled,
            redriven,
            ..
        } = *self;
        timed(backend, "finish_fleet_session", inner.finish()).await?;
        count_bookings(cancelled, redriven);
        Ok(())
    }
}

#[async_trait]
impl BookingStore for MeteredStore {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        let id = new.id.clone();
        let made = self
            .timed("create_allocation", self.inner.create_allocation(new))
            .await?;
        // A retry answers the booking an earlier request made, under that
        // request's id.
        if made.id == id {
            crate::metrics::booking_created();
        }
        Ok(made)
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        self.timed("get_allocation", self.inner.get_allocation(id))
            .await
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        let updated = self
            .timed("update_allocation", self.inner.update_allocation(update))
            .await?;
        crate::metrics::booking_changed();
        Ok(updated)
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        let cancelled = self
            .timed("delete_allocation", self.inner.delete_allocation(deletion))
            .await?;
        crate::metrics::booking_cancelled();
        Ok(cancelled)
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        self.timed(
            "list_allocation_history",
            self.inner.list_allocation_history(filter, page),
        )
        .await
    }
}

#[async_trait]
impl FleetStore for MeteredStore {
    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        self.timed("get_employee", self.inner.get_employee(id))
            .await
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        self.timed(
            "list_employees",
            self.inner
                .list_employees(department, show_deactivated, page),
        )
        .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<Driver> {
        self.timed("get_driver", self.inner.get_driver(id)).await
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>> {
        self.timed(
            "list_drivers",
            self.inner.list_drivers(show_deactivated, page),
        )
        .await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        self.timed("get_vehicle", self.inner.get_vehicle(id, on))
            .await
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.timed(
            "list_vehicles",
            self.inner.list_vehicles(show_retired, on, page),
        )
        .await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.timed(
            "list_available_vehicles",
            self.inner.list_available_vehicles(date, page),
        )
        .await
    }

    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<VehicleBlock>> {
        self.timed(
            "list_vehicle_blocks",
            self.inner.list_vehicle_blocks(vehicle_id, page),
        )
        .await
    }

    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>> {
        let outcomes = self
            .timed("apply_fleet", self.inner.apply_fleet(requests))
            .await?;
        // Bookings a fleet change cancelled or gave another driver count
        // like those the booking calls change (see `update_allocation`).
        let (cancelled, redriven) = bookings_changed(&outcomes);
        count_bookings(cancelled, redriven);
        Ok(outcomes)
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        let inner = self
            .timed("fleet_session", self.inner.fleet_session(pass))
            .await?;
        Ok(Box::new(MeteredSession {
            inner,
            backend: self.backend,
            pass,
            cancelled: 0,
            redriven: 0,
        }))
    }
}

#[async_trait]
impl EventLog for MeteredStore {
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<Event>> {
        self.timed("list_events", self.inner.list_events(filter, page))
            .await
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.event_signal()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        self.timed("latest_event_sequence", self.inner.latest_event_sequence())
            .await
    }

    async fn sequences_taken(&self) -> StoreResult<u64> {
        self.timed("sequences_taken", self.inner.sequences_taken())
            .await
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.timed("prune_events", self.inner.prune_events(before, limit))
            .await
    }
}

#[async_trait]
impl Maintenance for MeteredStore {
    async fn ping(&self) -> StoreResult<()> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.timed("is_empty", self.inner.is_empty()).await
    }

    async fn reset(&self) -> StoreResult<()> {
        self.timed("reset", self.inner.reset()).await
    }

    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        self.timed("insert_fleet", self.inner.insert_fleet(employees, vehicles))
            .await
    }

    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        self.timed(
            "insert_allocations",
            self.inner.insert_allocations(allocations),
        )
        .await
    }

    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey> {
        self.timed("page_token_key", self.inner.page_token_key(candidate))
            .await
    }
}
