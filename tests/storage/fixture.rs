//! A small fleet loaded into every store under test, and helpers to make and
//! inspect bookings.

use chrono::{DateTime, Days, Duration, NaiveDate, SubsecRound, Utc};
use vehicle_allocation::domain::{
    Actor, Allocation, AllocationChanges, AllocationDeletion, AllocationUpdate, BookingPolicy,
    BookingWindow, DomainError, Driver, Employee, Etag, FleetCommand, FleetOutcome, FleetRequest,
    IdempotencyKey, NewAllocation, Origin, Vehicle,
};
use vehicle_allocation::seed::{self, SeedPlan};
use vehicle_allocation::storage::{Store, StoreError, StoreResult};

/// The fleet every case starts from, and the moment the cases run at.
pub struct Fixture {
    pub employees: Vec<Employee>,
    pub vehicles: Vec<Vehicle>,
    pub now: DateTime<Utc>,
    pub policy: BookingPolicy,
}

impl Fixture {
    pub const PLAN: SeedPlan = SeedPlan {
        employees: 60,
        vehicles: 45,
        allocations: 0,
        seed: 11,
    };

    pub async fn load(store: &dyn Store) -> Self {
        // The real time, not a fixed one: MongoDB's TTL monitor expires
        // idempotency keys by the server's clock.
        let now = Utc::now().trunc_subsecs(3);
        let (employees, vehicles) = seed::generate_fleet(&Self::PLAN, now);
        store
            .insert_fleet(employees.clone(), vehicles.clone())
            .await
            .expect("load the fleet");
        Self {
            employees,
            vehicles,
            now,
            policy: BookingPolicy::default(),
        }
    }

    pub fn window(&self) -> BookingWindow {
        self.policy.window(self.now)
    }

    /// Today plus `days` (negative for the past).
    pub fn day(&self, days: i64) -> NaiveDate {
        let today = self.window().today;
        if days >= 0 {
            today + Days::new(days as u64)
        } else {
            today - Days::new(days.unsigned_abs())
        }
    }

    pub fn employee(&self, i: usize) -> &str {
        &self.employees[i].id
    }

    pub fn vehicle(&self, i: usize) -> &str {
        &self.vehicles[i].id
    }

    pub fn driver_of(&self, i: usize) -> &str {
        &self.vehicles[i]
            .driver
            .as_ref()
            .expect("a seeded driver")
            .id
    }

    /// A request to book vehicle `v` for employee `e` on `date`.
    pub fn booking(&self, e: usize, v: usize, date: NaiveDate) -> NewAllocation {
        NewAllocation {
            id: uuid::Uuid::now_v7().to_string(),
            employee_id: self.employee(e).to_owned(),
            vehicle_id: self.vehicle(v).to_owned(),
            date,
            purpose: format!("trip {e}-{v}"),
            now: self.now,
            window: self.window(),
            idempotency_key: None,
            origin: self.origin(),
        }
    }

    /// Who the cases' writes come from, as their events record.
    pub fn origin(&self) -> Origin {
        Origin::new(
            Actor {
                id: "conformance".into(),
                roles: vec!["fleet_admin".into()],
            },
            "case-request",
        )
    }

    /// The same request made idempotent with `request_id`.
    pub fn keyed(&self, mut new: NewAllocation, request_id: &str) -> NewAllocation {
        new.idempotency_key = Some(IdempotencyKey::new(
            request_id.to_owned(),
            &new.employee_id,
            &new.vehicle_id,
            new.date,
            &new.purpose,
        ));
        new
    }

    /// A stored booking as written directly (e.g. history), bypassing the
    /// window.
    pub fn stored(&self, e: usize, v: usize, date: NaiveDate) -> Allocation {
        let new = self.booking(e, v, date);
        new.into_allocation(self.driver_of(v).to_owned())
    }

    pub fn update(
        &self,
        id: &str,
        changes: AllocationChanges,
        etag: Option<Etag>,
    ) -> AllocationUpdate {
        AllocationUpdate {
            id: id.to_owned(),
            changes,
            expected_etag: etag,
            now: self.now + Duration::minutes(5),
            window: self.window(),
            origin: self.origin(),
        }
    }

    pub fn deletion(&self, id: &str, etag: Option<Etag>) -> AllocationDeletion {
        AllocationDeletion {
            id: id.to_owned(),
            expected_etag: etag,
            now: self.now + Duration::minutes(10),
            window: self.window(),
            origin: self.origin(),
        }
    }
}

impl Fixture {
    /// `command` as made now.
    pub fn admin(&self, command: FleetCommand) -> FleetRequest {
        FleetRequest {
            command,
            now: self.now + Duration::minutes(1),
            window: self.window(),
            origin: self.origin(),
        }
    }

    /// Applies one fleet command.
    pub async fn apply(
        &self,
        store: &dyn Store,
        command: FleetCommand,
    ) -> StoreResult<FleetOutcome> {
        let mut outcomes = store.apply_fleet(vec![self.admin(command)]).await?;
        Ok(outcomes.pop().expect("one outcome per command"))
    }

    /// A new employee.
    pub fn new_employee(&self, id: &str, email: &str) -> Employee {
        Employee {
            id: id.into(),
            name: format!("Employee {id}"),
            email: email.into(),
            department: "Fleet".into(),
            active: true,
            create_time: self.now,
            update_time: self.now,
            version: 1,
        }
    }

    /// A new driver.
    pub fn new_driver(&self, id: &str, licence: &str) -> Driver {
        Driver {
            id: id.into(),
            name: format!("Driver {id}"),
            phone: "+44 20 7946 0000".into(),
            license_number: licence.into(),
            active: true,
            create_time: self.now,
            update_time: self.now,
            version: 1,
        }
    }

    /// A new vehicle (its driver is given apart).
    pub fn new_vehicle(&self, id: &str, registration: &str) -> Vehicle {
        Vehicle {
            id: id.into(),
            registration: registration.into(),
            make: "Ford".into(),
            model: "Transit".into(),
            seats: 8,
            retired: false,
            create_time: self.now,
            update_time: self.now,
            version: 1,
            driver: None,
        }
    }
}

/// The rule that refused `result`; panics on success or another failure.
pub fn refused<T: std::fmt::Debug>(result: StoreResult<T>) -> DomainError {
    match result {
        Err(StoreError::Rejected(rule)) => rule,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
