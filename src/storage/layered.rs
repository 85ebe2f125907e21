//! A store assembled by concern: a decorator implements the concerns it
//! changes and takes the place of those alone; the others come from the
//! store beneath it, forwarded here once for every decorator.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{
    BookingStore, EventLog, FleetPass, FleetSession, FleetStore, Maintenance, Store, StoreResult,
};
use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, Driver, Employee, Event, EventFilter,
    FleetOutcome, FleetRequest, HistoryCursor, HistoryFilter, NewAllocation, Page, PageKey,
    PageRequest, UpdatedAllocation, Vehicle, VehicleBlock,
};

/// One implementation of each concern.
#[derive(Clone)]
pub struct Layered {
    pub bookings: Arc<dyn BookingStore>,
    pub fleet: Arc<dyn FleetStore>,
    pub events: Arc<dyn EventLog>,
    pub maintenance: Arc<dyn Maintenance>,
}

impl Layered {
    /// Every concern from `store`, for a decorator to replace some of.
    pub fn of(store: Arc<dyn Store>) -> Self {
        Self {
            bookings: store.clone(),
            fleet: store.clone(),
            events: store.clone(),
            maintenance: store,
        }
    }
}

#[async_trait]
impl BookingStore for Layered {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        self.bookings.create_allocation(new).await
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        self.bookings.get_allocation(id).await
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        self.bookings.update_allocation(update).await
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        self.bookings.delete_allocation(deletion).await
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        self.bookings.list_allocation_history(filter, page).await
    }
}

#[async_trait]
impl FleetStore for Layered {
    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        self.fleet.get_employee(id).await
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        self.fleet
            .list_employees(department, show_deactivated, page)
            .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<Driver> {
        self.fleet.get_driver(id).await
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>> {
        self.fleet.list_drivers(show_deactivated, page).await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        self.fleet.get_vehicle(id, on).await
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.fleet.list_vehicles(show_retired, on, page).await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.fleet.list_available_vehicles(date, page).await
    }

    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<VehicleBlock>> {
        self.fleet.list_vehicle_blocks(vehicle_id, page).await
    }

    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>> {
        self.fleet.apply_fleet(requests).await
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        self.fleet.fleet_session(pass).await
    }
}

#[async_trait]
impl EventLog for Layered {
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<Event>> {
        self.events.list_events(filter, page).await
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.event_signal()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        self.events.latest_event_sequence().await
    }

    async fn sequences_taken(&self) -> StoreResult<u64> {
        self.events.sequences_taken().await
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.events.prune_events(before, limit).await
    }
}

#[async_trait]
impl Maintenance for Layered {
    async fn ping(&self) -> StoreResult<()> {
        self.maintenance.ping().await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.maintenance.is_empty().await
    }

    async fn reset(&self) -> StoreResult<()> {
        self.maintenance.reset().await
    }

    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        self.maintenance.insert_fleet(employees, vehicles).await
    }

    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        self.maintenance.insert_allocations(allocations).await
    }

    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey> {
        self.maintenance.page_token_key(candidate).await
    }
}
