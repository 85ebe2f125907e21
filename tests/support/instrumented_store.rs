//! A store wrapper for tests: counts reads, and fails or holds calls on
//! request. Shared by the test binaries (`#[path]`-included).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::NaiveDate;
use tokio::sync::Notify;
use vehicle_allocation::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, Employee, HistoryCursor, HistoryFilter,
    NewAllocation, Page, PageRequest, UpdatedAllocation, Vehicle,
};
use vehicle_allocation::storage::{
    BookingStore, EventLog, FleetStore, Maintenance, Store, StoreError, StoreResult,
};

/// Holds calls until released.
#[derive(Default)]
pub struct Gate {
    pub entered: Notify,
    pub release: Notify,
}

impl Gate {
    async fn pass(&self) {
        self.entered.notify_one();
        self.release.notified().await;
    }
}

/// The switches and counters of an [`InstrumentedStore`].
#[derive(Default)]
pub struct Instruments {
    ping_fails: AtomicBool,
    hold_creates: Mutex<Option<Arc<Gate>>>,
    hold_reads: Mutex<Option<Arc<Gate>>>,
    reads: AtomicUsize,
    /// Pruning passes finished: calls that found less than their limit.
    prune_passes: AtomicUsize,
    pruned: Notify,
    /// How many of the newest sequences are not readable yet, as on a
    /// MongoDB replica catching up after a failover.
    readable_lag: AtomicUsize,
    /// A signal that never moves, handed out instead of the store's.
    muted_signal: Mutex<Option<tokio::sync::watch::Sender<u64>>>,
}

#[allow(dead_code)]
impl Instruments {
    /// Makes pings fail (or succeed again).
    pub fn fail_pings(&self, fail: bool) {
        self.ping_fails.store(fail, Ordering::SeqCst);
    }

    /// Makes the newest `lag` sequences taken but not readable yet.
    pub fn lag_readable_events(&self, lag: usize) {
        self.readable_lag.store(lag, Ordering::SeqCst);
    }

    /// Makes later subscribers to the event signal hear nothing, as a
    /// watcher does whose store lost a change.
    pub fn mute_event_signal(&self) {
        let (sender, _) = tokio::sync::watch::channel(0);
        *self.muted_signal.lock().unwrap() = Some(sender);
    }

    /// Makes creates wait until the returned gate is released.
    pub fn hold_creates(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.hold_creates.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }

    /// Makes cacheable reads wait until the returned gate is released.
    pub fn hold_reads(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.hold_reads.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }

    /// Waits until `n` pruning passes have finished.
    pub async fn pruning_passes(&self, n: usize) {
        loop {
            let notified = self.pruned.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.prune_passes.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    /// How many cacheable reads reached the store.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    async fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let gate = self.hold_reads.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.pass().await;
        }
    }
}

/// `inner`, instrumented.
pub struct InstrumentedStore {
    pub inner: Arc<dyn Store>,
    pub instruments: Arc<Instruments>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            instruments: Arc::new(Instruments::default()),
        }
    }
}

#[async_trait]
impl BookingStore for InstrumentedStore {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        let gate = self.instruments.hold_creates.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.pass().await;
        }
        self.inner.create_allocation(new).await
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        self.instruments.read().await;
        self.inner.get_allocation(id).await
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        self.inner.update_allocation(update).await
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        self.inner.delete_allocation(deletion).await
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        self.instruments.read().await;
        self.inner.list_allocation_history(filter, page).await
    }
}

#[async_trait]
impl FleetStore for InstrumentedStore {
    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        self.instruments.read().await;
        self.inner.get_employee(id).await
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        self.inner
            .list_employees(department, show_deactivated, page)
            .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<vehicle_allocation::domain::Driver> {
        self.instruments.read().await;
        self.inner.get_driver(id).await
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<vehicle_allocation::domain::Driver>> {
        self.inner.list_drivers(show_deactivated, page).await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        self.instruments.read().await;
        self.inner.get_vehicle(id, on).await
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.inner.list_vehicles(show_retired, on, page).await
    }

    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<vehicle_allocation::domain::VehicleBlock>> {
        self.inner.list_vehicle_blocks(vehicle_id, page).await
    }

    async fn apply_fleet(
        &self,
        requests: Vec<vehicle_allocation::domain::FleetRequest>,
    ) -> StoreResult<Vec<vehicle_allocation::domain::FleetOutcome>> {
        self.inner.apply_fleet(requests).await
    }

    async fn fleet_session(
        &self,
        pass: vehicle_allocation::storage::FleetPass,
    ) -> StoreResult<Box<dyn vehicle_allocation::storage::FleetSession>> {
        self.inner.fleet_session(pass).await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.instruments.read().await;
        self.inner.list_available_vehicles(date, page).await
    }
}

#[async_trait]
impl EventLog for InstrumentedStore {
    async fn list_events(
        &self,
        filter: &vehicle_allocation::domain::EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<vehicle_allocation::domain::Event>> {
        self.inner.list_events(filter, page).await
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        if let Some(muted) = self.instruments.muted_signal.lock().unwrap().as_ref() {
            return muted.subscribe();
        }
        self.inner.event_signal()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        let lag = self.instruments.readable_lag.load(Ordering::SeqCst) as u64;
        Ok(self
            .inner
            .latest_event_sequence()
            .await?
            .saturating_sub(lag))
    }

    async fn sequences_taken(&self) -> StoreResult<u64> {
        self.inner.sequences_taken().await
    }

    async fn prune_events(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<u64> {
        let pruned = self.inner.prune_events(before, limit).await;
        if matches!(pruned, Ok(n) if n < limit as u64) {
            self.instruments.prune_passes.fetch_add(1, Ordering::SeqCst);
            self.instruments.pruned.notify_waiters();
        }
        pruned
    }
}

#[async_trait]
impl Maintenance for InstrumentedStore {
    async fn ping(&self) -> StoreResult<()> {
        if self.instruments.ping_fails.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "test fault",
                std::io::Error::other("the store is switched off"),
            ));
        }
        self.inner.ping().await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.inner.is_empty().await
    }

    async fn page_token_key(
        &self,
        candidate: vehicle_allocation::domain::PageKey,
    ) -> StoreResult<vehicle_allocation::domain::PageKey> {
        self.inner.page_token_key(candidate).await
    }

    async fn reset(&self) -> StoreResult<()> {
        self.inner.reset().await
    }

    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        self.inner.insert_fleet(employees, vehicles).await
    }

    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        self.inner.insert_allocations(allocations).await
    }
}
