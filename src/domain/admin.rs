//! Fleet and people administration: every change to employees, drivers,
//! vehicles, driver assignments and out-of-service blocks is decided here.
//!
//! A backend applies a [`FleetCommand`] in three steps inside one
//! transaction: it reads the [`Facts`] that [`FleetCommand::needs`] names,
//! [`decide`] turns command and facts into a [`FleetWrite`] (or refuses), and
//! the backend writes exactly that. The rules are written once, here; the
//! backends only read and write.

use chrono::{DateTime, NaiveDate, Utc};

mod input;
pub use input::*;

use super::allocation::{Allocation, Etag, check_etag};
use super::calendar::BookingWindow;
use super::context::Origin;
use super::error::{DomainError, Resource};
use super::event::{EventKind, NewEvent, Snapshot};
use super::fleet::{
    Assignment, Driver, Employee, Unbookable, Vehicle, VehicleBlock, assign_from, bookable,
    driver_on, end_timeline,
};

/// The fields of an employee an update may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmployeeChanges {
    pub name: Option<String>,
    pub email: Option<String>,
    pub department: Option<String>,
}

/// The fields of a driver an update may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverChanges {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub license_number: Option<String>,
}

/// The fields of a vehicle an update may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VehicleChanges {
    pub registration: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub seats: Option<u32>,
}

/// A change to the fleet or the staff, already validated for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetCommand {
    /// Adds an employee; `upsert` (import) updates one that exists instead.
    PutEmployee {
        employee: Employee,
        upsert: bool,
    },
    UpdateEmployee {
        id: String,
        changes: EmployeeChanges,
        etag: Option<Etag>,
    },
    SetEmployeeActive {
        id: String,
        active: bool,
        cancel_conflicting: bool,
    },
    /// Replaces the employee's name and e-mail by a pseudonym wherever they
    /// are stored (an erasure request), and deactivates them; their future
    /// bookings refuse it, or are cancelled, as on deactivation.
    EraseEmployee {
        id: String,
        cancel_conflicting: bool,
    },
    PutDriver {
        driver: Driver,
        upsert: bool,
    },
    UpdateDriver {
        id: String,
        changes: DriverChanges,
        etag: Option<Etag>,
    },
    DeactivateDriver {
        id: String,
        cancel_conflicting: bool,
    },
    /// Adds a vehicle driven by `driver_id` from today; `upsert` (import)
    /// updates one that exists instead, reassigning it from today if its
    /// driver differs.
    PutVehicle {
        vehicle: Vehicle,
        driver_id: String,
        upsert: bool,
    },
    UpdateVehicle {
        id: String,
        changes: VehicleChanges,
        etag: Option<Etag>,
    },
    SetVehicleRetired {
        id: String,
        retired: bool,
        cancel_conflicting: bool,
    },
    AssignDriver {
        vehicle_id: String,
        driver_id: String,
        effective_date: NaiveDate,
    },
    CreateBlock {
        block: VehicleBlock,
        cancel_conflicting: bool,
    },
    DeleteBlock {
        vehicle_id: String,
        block_id: String,
    },
}

/// A command with when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRequest {
    pub command: FleetCommand,
    pub now: DateTime<Utc>,
    pub window: BookingWindow,
    /// Who asks, for the events.
    pub origin: Origin,
}

/// A value that must be unique among its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unique {
    EmployeeEmail(String),
    VehicleRegistration(String),
    DriverLicence(String),
}

/// Whose bookings a change must look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingOwner {
    Employee(String),
    Vehicle(String),
    Driver(String),
}

/// The bookings of `owner` from `from` to `to` (included; open when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingQuery {
    pub owner: BookingOwner,
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
}

/// What a backend must read before [`decide`] can decide a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactQuery {
    pub employee: Option<String>,
    pub driver: Option<String>,
    /// The vehicle with its driver timeline.
    pub vehicle: Option<String>,
    pub block: Option<String>,
    /// Which of these values are held, and by whom.
    pub unique: Vec<Unique>,
    pub bookings: Option<BookingQuery>,
    /// The timelines of every vehicle that names this driver.
    pub driver_timelines: Option<String>,
}

/// What the backend read for a [`FactQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub employee: Option<Employee>,
    pub driver: Option<Driver>,
    /// The vehicle (its `driver` is not read) and its timeline.
    pub vehicle: Option<(Vehicle, Vec<Assignment>)>,
    pub block: Option<VehicleBlock>,
    /// Each value of `unique` that is held, with the holder's id.
    pub taken: Vec<(Unique, String)>,
    /// The bookings asked for, in date order.
    pub bookings: Vec<Allocation>,
    /// Vehicle id and timeline of each vehicle naming the driver.
    pub driver_timelines: Vec<(String, Vec<Assignment>)>,
}

/// The domain of erased employees' addresses: no one may be given one.
pub const ERASED_DOMAIN: &str = "erased.invalid";

/// The pseudonym that replaces an erased employee's personal fields: the
/// same for the same id on every backend and every run, and it says nothing
/// about the person. The e-mail is under the reserved `.invalid` domain
/// (RFC 2606), so it is well-formed, unique and reaches nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub employee_id: String,
    pub name: String,
    pub email: String,
}

impl Erasure {
    /// The erasure of employee `id`.
    pub fn of(id: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("erased employee:{id}").as_bytes());
        let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            employee_id: id.to_owned(),
            name: format!("erased-{tag}"),
            email: format!("erased-{tag}@{ERASED_DOMAIN}"),
        }
    }

    /// The resource of the employee's own events, the only ones whose
    /// snapshots hold their name and e-mail (a booking's holds the id).
    pub fn resource(&self) -> String {
        format!("employees/{}", self.employee_id)
    }

    /// `employee` with the pseudonym in place of its name and e-mail.
    pub fn apply(&self, mut employee: Employee) -> Employee {
        self.name.clone_into(&mut employee.name);
        self.email.clone_into(&mut employee.email);
        employee
    }
}

/// What a decided command writes, all in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetWrite {
    /// Inserted or replaced, by id.
    pub employee: Option<Employee>,
    pub driver: Option<Driver>,
    /// The vehicle's own fields (not its driver).
    pub vehicle: Option<Vehicle>,
    /// A vehicle's whole new timeline.
    pub timelines: Vec<(String, Vec<Assignment>)>,
    pub insert_block: Option<VehicleBlock>,
    pub delete_block: Option<String>,
    /// Bookings to delete, each only in the version read.
    pub cancel: Vec<Allocation>,
    /// Bookings whose driver changes: before and after.
    pub redrive: Vec<(Allocation, Allocation)>,
    /// One per entity changed: the command's own, then its bookings'.
    pub events: Vec<NewEvent>,
    /// The employee whose stored event snapshots get the pseudonym (before
    /// `events` are appended).
    pub erase: Option<Erasure>,
}

impl FleetWrite {
    /// Whether there is nothing to write (the command changed nothing).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The entity a command returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEntity {
    Employee(Employee),
    Driver(Driver),
    Vehicle(Vehicle),
    Block(VehicleBlock),
}

impl FleetEntity {
    /// The names of the fields in which `self` differs from `before`
    /// (timestamps and version aside); none for entities of two kinds.
    pub fn changed_fields(&self, before: &FleetEntity) -> Vec<&'static str> {
        fn diff(pairs: &[(&'static str, bool)]) -> Vec<&'static str> {
            pairs
                .iter()
                .filter(|(_, differs)| *differs)
                .map(|(name, _)| *name)
                .collect()
        }
        match (self, before) {
            (Self::Employee(a), Self::Employee(b)) => diff(&[
                ("name", a.name != b.name),
                ("email", a.email != b.email),
                ("department", a.department != b.department),
                ("active", a.active != b.active),
            ]),
            (Self::Driver(a), Self::Driver(b)) => diff(&[
                ("name", a.name != b.name),
                ("phone", a.phone != b.phone),
                ("license_number", a.license_number != b.license_number),
                ("active", a.active != b.active),
            ]),
            (Self::Vehicle(a), Self::Vehicle(b)) => diff(&[
                ("registration", a.registration != b.registration),
                ("make", a.make != b.make),
                ("model", a.model != b.model),
                ("seats", a.seats != b.seats),
                ("retired", a.retired != b.retired),
            ]),
            (Self::Block(a), Self::Block(b)) => diff(&[
                ("start_date", a.start_date != b.start_date),
                ("end_date", a.end_date != b.end_date),
                ("reason", a.reason != b.reason),
            ]),
            _ => Vec::new(),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOutcome {
    /// The entity as it is now (a deleted block as it was).
    pub entity: FleetEntity,
    /// Whether anything was written (an import of unchanged rows writes
    /// nothing).
    pub changed: bool,
    /// Bookings cancelled on the way.
    pub cancelled: Vec<Allocation>,
    /// Bookings whose driver changed: before and after.
    pub redriven: Vec<(Allocation, Allocation)>,
    /// Vehicles whose lookups the command changed (a driver's details show
    /// in their vehicles).
    pub vehicles_touched: Vec<String>,
    /// The bookable dates whose availability a block changed (bookings
    /// cancelled and vehicles changed are told apart).
    pub dates_touched: Vec<NaiveDate>,
    /// The entity as it was before; `None` when the command created it.
    pub before: Option<FleetEntity>,
    /// Vehicles whose driver timeline the command rewrote.
    pub timelines_changed: Vec<String>,
    /// Whether an employee's personal fields were erased (caches must drop
    /// their copies, not just stop serving them).
    pub erased: bool,
}

impl FleetOutcome {
    /// Whether the command created its entity.
    pub fn created(&self) -> bool {
        self.changed && self.before.is_none()
    }
}

impl FleetCommand {
    /// The facts [`decide`] needs for this command at `today`.
    pub fn needs(&self, today: NaiveDate) -> FactQuery {
        let mut q = FactQuery::default();
        match self {
            Self::PutEmployee { employee, .. } => {
                q.employee = Some(employee.id.clone());
                q.unique = vec![Unique::EmployeeEmail(employee.email.clone())];
            }
            Self::UpdateEmployee { id, changes, .. } => {
                q.employee = Some(id.clone());
                q.unique = changes
                    .email
                    .iter()
                    .map(|e| Unique::EmployeeEmail(e.clone()))
                    .collect();
            }
            Self::EraseEmployee { id, .. } => {
                q.employee = Some(id.clone());
                // A pseudonym that collides with a stored e-mail is refused
                // by name rather than by the unique index.
                q.unique = vec![Unique::EmployeeEmail(Erasure::of(id).email)];
                q.bookings = Some(BookingQuery {
                    owner: BookingOwner::Employee(id.clone()),
                    from: today,
                    to: None,
                });
            }
            Self::SetEmployeeActive { id, active, .. } => {
                q.employee = Some(id.clone());
                if !active {
                    q.bookings = Some(BookingQuery {
                        owner: BookingOwner::Employee(id.clone()),
                        from: today,
                        to: None,
                    });
                }
            }
            Self::PutDriver { driver, .. } => {
                q.driver = Some(driver.id.clone());
                q.unique = vec![Unique::DriverLicence(driver.license_number.clone())];
                q.driver_timelines = Some(driver.id.clone());
            }
            Self::UpdateDriver { id, changes, .. } => {
                q.driver = Some(id.clone());
                q.unique = changes
                    .license_number
                    .iter()
                    .map(|l| Unique::DriverLicence(l.clone()))
                    .collect();
                q.driver_timelines = Some(id.clone());
            }
            Self::DeactivateDriver { id, .. } => {
                q.driver = Some(id.clone());
                q.bookings = Some(BookingQuery {
                    owner: BookingOwner::Driver(id.clone()),
                    from: today,
                    to: None,
                });
                q.driver_timelines = Some(id.clone());
            }
            Self::PutVehicle {
                vehicle, driver_id, ..
            } => {
                q.vehicle = Some(vehicle.id.clone());
                q.driver = Some(driver_id.clone());
                q.unique = vec![Unique::VehicleRegistration(vehicle.registration.clone())];
                q.driver_timelines = Some(driver_id.clone());
                q.bookings = Some(BookingQuery {
                    owner: BookingOwner::Vehicle(vehicle.id.clone()),
                    from: today,
                    to: None,
                });
            }
            Self::UpdateVehicle { id, changes, .. } => {
                q.vehicle = Some(id.clone());
                q.unique = changes
                    .registration
                    .iter()
                    .map(|r| Unique::VehicleRegistration(r.clone()))
                    .collect();
            }
            Self::SetVehicleRetired { id, retired, .. } => {
                q.vehicle = Some(id.clone());
                if *retired {
                    q.bookings = Some(BookingQuery {
                        owner: BookingOwner::Vehicle(id.clone()),
                        from: today,
                        to: None,
                    });
                }
            }
            Self::AssignDriver {
                vehicle_id,
                driver_id,
                effective_date,
            } => {
                q.vehicle = Some(vehicle_id.clone());
                q.driver = Some(driver_id.clone());
                q.driver_timelines = Some(driver_id.clone());
                q.bookings = Some(BookingQuery {
                    owner: BookingOwner::Vehicle(vehicle_id.clone()),
                    from: *effective_date.max(&today),
                    to: None,
                });
            }
            Self::CreateBlock { block, .. } => {
                q.vehicle = Some(block.vehicle_id.clone());
                q.block = Some(block.id.clone());
                q.bookings = Some(BookingQuery {
                    owner: BookingOwner::Vehicle(block.vehicle_id.clone()),
                    from: block.start_date.max(today),
                    to: Some(block.end_date),
                });
            }
            Self::DeleteBlock {
                vehicle_id,
                block_id,
            } => {
                q.vehicle = Some(vehicle_id.clone());
                q.block = Some(block_id.clone());
            }
        }
        q
    }
}

/// Decides `request` from `facts`: what to write, and what to answer.
pub fn decide(
    request: &FleetRequest,
    facts: Facts,
) -> Result<(FleetWrite, FleetOutcome), DomainError> {
    use FleetCommand as C;
    let before = match &request.command {
        C::PutEmployee { .. }
        | C::UpdateEmployee { .. }
        | C::SetEmployeeActive { .. }
        | C::EraseEmployee { .. } => facts.employee.clone().map(FleetEntity::Employee),
        C::PutDriver { .. } | C::UpdateDriver { .. } | C::DeactivateDriver { .. } => {
            facts.driver.clone().map(FleetEntity::Driver)
        }
        C::PutVehicle { .. }
        | C::UpdateVehicle { .. }
        | C::SetVehicleRetired { .. }
        | C::AssignDriver { .. } => facts
            .vehicle
            .as_ref()
            .map(|(v, _)| FleetEntity::Vehicle(v.clone())),
        C::CreateBlock { .. } | C::DeleteBlock { .. } => {
            facts.block.clone().map(FleetEntity::Block)
        }
    };
    let (mut write, mut outcome) = decide_fields(request, facts)?;
    outcome.before = before;
    outcome.timelines_changed = write.timelines.iter().map(|(id, _)| id.clone()).collect();
    outcome.erased = write.erase.is_some();
    if outcome.changed {
        write.events = events(request, &write, &outcome);
    }
    Ok((write, outcome))
}

/// The events of a decided command that changes something.
fn events(request: &FleetRequest, write: &FleetWrite, outcome: &FleetOutcome) -> Vec<NewEvent> {
    let snapshot = |entity: &FleetEntity| match entity {
        FleetEntity::Employee(e) => Snapshot::Employee(e.clone()),
        FleetEntity::Driver(d) => Snapshot::Driver(d.clone()),
        FleetEntity::Vehicle(v) => Snapshot::Vehicle(v.clone()),
        FleetEntity::Block(b) => Snapshot::VehicleBlock(b.clone()),
    };
    let created = outcome.before.is_none();
    let erased = write.erase.is_some();
    let kind = match &outcome.entity {
        FleetEntity::Employee(_) if erased => EventKind::EmployeeErased,
        FleetEntity::Employee(_) if created => EventKind::EmployeeCreated,
        FleetEntity::Employee(_) => EventKind::EmployeeUpdated,
        FleetEntity::Driver(_) if created => EventKind::DriverCreated,
        FleetEntity::Driver(_) => EventKind::DriverUpdated,
        FleetEntity::Vehicle(_) if created => EventKind::VehicleCreated,
        FleetEntity::Vehicle(_) => EventKind::VehicleUpdated,
        FleetEntity::Block(_) if write.delete_block.is_some() => EventKind::VehicleBlockDeleted,
        FleetEntity::Block(_) => EventKind::VehicleBlockCreated,
    };
    let (before, after) = match kind {
        EventKind::VehicleBlockDeleted => (Some(snapshot(&outcome.entity)), None),
        // The before would hold what was erased.
        EventKind::EmployeeErased => (None, Some(snapshot(&outcome.entity))),
        _ => (
            outcome.before.as_ref().map(snapshot),
            Some(snapshot(&outcome.entity)),
        ),
    };
    let (at, origin) = (request.now, &request.origin);
    let mut events = vec![NewEvent::new(kind, before, after, at, origin)];
    events.extend(
        write
            .cancel
            .iter()
            .map(|booking| NewEvent::allocation(Some(booking), None, at, origin)),
    );
    events.extend(
        write
            .redrive
            .iter()
            .map(|(before, after)| NewEvent::allocation(Some(before), Some(after), at, origin)),
    );
    events
}

fn decide_fields(
    request: &FleetRequest,
    facts: Facts,
) -> Result<(FleetWrite, FleetOutcome), DomainError> {
    let now = request.now;
    let today = request.window.today;
    let mut write = FleetWrite::default();
    let outcome = |entity: FleetEntity, write: &FleetWrite| FleetOutcome {
        entity,
        changed: !write.is_empty(),
        cancelled: write.cancel.clone(),
        redriven: write.redrive.clone(),
        vehicles_touched: Vec::new(),
        dates_touched: Vec::new(),
        before: None,
        timelines_changed: Vec::new(),
        erased: false,
    };
    check_taken(&facts.taken, self_ids(&request.command))?;
    match &request.command {
        FleetCommand::PutEmployee { employee, upsert } => {
            let before = facts.employee;
            let entity = match before.clone() {
                None => employee.clone(),
                Some(existing) if *upsert => {
                    let changes = EmployeeChanges {
                        name: Some(employee.name.clone()),
                        email: Some(employee.email.clone()),
                        department: Some(employee.department.clone()),
                    };
                    apply_employee(existing, &changes, now)
                }
                Some(existing) => return Err(taken(Resource::Employee, "id", &existing.id)),
            };
            write.employee = changed(&entity, before.as_ref());
            Ok((
                write.clone(),
                outcome(FleetEntity::Employee(entity), &write),
            ))
        }
        FleetCommand::UpdateEmployee { id, changes, etag } => {
            let existing = require(Resource::Employee, id, facts.employee)?;
            check_etag(Resource::Employee, id, *etag, existing.etag())?;
            let entity = apply_employee(existing.clone(), changes, now);
            write.employee = changed(&entity, Some(&existing));
            Ok((
                write.clone(),
                outcome(FleetEntity::Employee(entity), &write),
            ))
        }
        FleetCommand::SetEmployeeActive {
            id,
            active,
            cancel_conflicting,
        } => {
            let existing = require(Resource::Employee, id, facts.employee)?;
            if !active {
                write.cancel =
                    conflicting(Resource::Employee, id, facts.bookings, *cancel_conflicting)?;
            }
            let mut entity = existing.clone();
            if entity.active != *active {
                entity.active = *active;
                touch(&mut entity.update_time, &mut entity.version, now);
                write.employee = Some(entity.clone());
            }
            Ok((
                write.clone(),
                outcome(FleetEntity::Employee(entity), &write),
            ))
        }
        FleetCommand::EraseEmployee {
            id,
            cancel_conflicting,
        } => {
            let existing = require(Resource::Employee, id, facts.employee)?;
            write.cancel =
                conflicting(Resource::Employee, id, facts.bookings, *cancel_conflicting)?;
            let erasure = Erasure::of(id);
            let mut entity = erasure.apply(existing.clone());
            entity.active = false;
            // Erased already (and not changed since): nothing to write, and
            // no second event.
            if entity != existing {
                touch(&mut entity.update_time, &mut entity.version, now);
                write.employee = Some(entity.clone());
                write.erase = Some(erasure);
            }
            Ok((
                write.clone(),
                outcome(FleetEntity::Employee(entity), &write),
            ))
        }
        FleetCommand::PutDriver { driver, upsert } => {
            let before = facts.driver;
            let entity = match before.clone() {
                None => driver.clone(),
                Some(existing) if *upsert => {
                    let changes = DriverChanges {
                        name: Some(driver.name.clone()),
                        phone: Some(driver.phone.clone()),
                        license_number: Some(driver.license_number.clone()),
                    };
                    apply_driver(existing, &changes, now)
                }
                Some(existing) => return Err(taken(Resource::Driver, "id", &existing.id)),
            };
            write.driver = changed(&entity, before.as_ref());
            let mut done = outcome(FleetEntity::Driver(entity), &write);
            if write.driver.is_some() {
                done.vehicles_touched = timeline_vehicles(&facts.driver_timelines);
            }
            Ok((write, done))
        }
        FleetCommand::UpdateDriver { id, changes, etag } => {
            let existing = require(Resource::Driver, id, facts.driver)?;
            check_etag(Resource::Driver, id, *etag, existing.etag())?;
            let entity = apply_driver(existing.clone(), changes, now);
            write.driver = changed(&entity, Some(&existing));
            let mut done = outcome(FleetEntity::Driver(entity), &write);
            if write.driver.is_some() {
                done.vehicles_touched = timeline_vehicles(&facts.driver_timelines);
            }
            Ok((write, done))
        }
        FleetCommand::DeactivateDriver {
            id,
            cancel_conflicting,
        } => {
            let existing = require(Resource::Driver, id, facts.driver)?;
            write.cancel = conflicting(Resource::Driver, id, facts.bookings, *cancel_conflicting)?;
            let mut touched = Vec::new();
            for (vehicle_id, timeline) in &facts.driver_timelines {
                let ended = end_driver(timeline, id, today);
                if ended != *timeline {
                    touched.push(vehicle_id.clone());
                    write.timelines.push((vehicle_id.clone(), ended));
                }
            }
            let mut entity = existing;
            if entity.active {
                entity.active = false;
                touch(&mut entity.update_time, &mut entity.version, now);
                write.driver = Some(entity.clone());
            }
            let mut done = outcome(FleetEntity::Driver(entity), &write);
            done.vehicles_touched = timeline_vehicles(&facts.driver_timelines);
            Ok((write, done))
        }
        FleetCommand::PutVehicle {
            vehicle,
            driver_id,
            upsert,
        } => {
            let driver = require(Resource::Driver, driver_id, facts.driver)?;
            let (entity, timeline) = match facts.vehicle {
                None => {
                    write.vehicle = Some(vehicle.clone());
                    (vehicle.clone(), Vec::new())
                }
                Some((existing, timeline)) if *upsert => {
                    let changes = VehicleChanges {
                        registration: Some(vehicle.registration.clone()),
                        make: Some(vehicle.make.clone()),
                        model: Some(vehicle.model.clone()),
                        seats: Some(vehicle.seats),
                    };
                    let after = apply_vehicle(existing.clone(), &changes, now);
                    write.vehicle = changed(&after, Some(&existing));
                    (after, timeline)
                }
                Some((existing, _)) => return Err(taken(Resource::Vehicle, "id", &existing.id)),
            };
            // A retired vehicle keeps no driver; an import leaves it so.
            let reassign = !entity.retired
                && (driver_on(&timeline, today) != Some(driver_id.as_str())
                    || timeline_ends(&timeline));
            if reassign {
                if !driver.active {
                    return Err(inactive(Resource::Driver, &driver.id));
                }
                check_driver_free(&driver.id, &entity.id, today, &facts.driver_timelines)?;
                write.timelines =
                    vec![(entity.id.clone(), assign_from(&timeline, &driver.id, today))];
                write.redrive = redrive(&facts.bookings, &driver.id, now);
            }
            let mut done = outcome(FleetEntity::Vehicle(entity.clone()), &write);
            done.vehicles_touched = vec![entity.id.clone()];
            Ok((write, done))
        }
        FleetCommand::UpdateVehicle { id, changes, etag } => {
            let (existing, _) = require(Resource::Vehicle, id, facts.vehicle)?;
            check_etag(Resource::Vehicle, id, *etag, existing.etag())?;
            let entity = apply_vehicle(existing.clone(), changes, now);
            write.vehicle = changed(&entity, Some(&existing));
            let mut done = outcome(FleetEntity::Vehicle(entity), &write);
            done.vehicles_touched = vec![id.clone()];
            Ok((write, done))
        }
        FleetCommand::SetVehicleRetired {
            id,
            retired,
            cancel_conflicting,
        } => {
            let (existing, timeline) = require(Resource::Vehicle, id, facts.vehicle)?;
            let mut entity = existing;
            if *retired {
                write.cancel =
                    conflicting(Resource::Vehicle, id, facts.bookings, *cancel_conflicting)?;
                // Its driver is free to drive another vehicle from today.
                let ended = end_timeline(&timeline, today);
                if ended != timeline {
                    write.timelines.push((id.clone(), ended));
                }
            }
            if entity.retired != *retired {
                entity.retired = *retired;
                touch(&mut entity.update_time, &mut entity.version, now);
                write.vehicle = Some(entity.clone());
            }
            let mut done = outcome(FleetEntity::Vehicle(entity), &write);
            done.vehicles_touched = vec![id.clone()];
            Ok((write, done))
        }
        FleetCommand::AssignDriver {
            vehicle_id,
            driver_id,
            effective_date,
        } => {
            let (vehicle, timeline) = require(Resource::Vehicle, vehicle_id, facts.vehicle)?;
            let driver = require(Resource::Driver, driver_id, facts.driver)?;
            request
                .window
                .check_not_past("effective_date", *effective_date)
                .map_err(DomainError::invalid)?;
            if vehicle.retired {
                return Err(inactive(Resource::Vehicle, vehicle_id));
            }
            if !driver.active {
                return Err(inactive(Resource::Driver, driver_id));
            }
            check_driver_free(
                driver_id,
                vehicle_id,
                *effective_date,
                &facts.driver_timelines,
            )?;
            let next = assign_from(&timeline, driver_id, *effective_date);
            if !same_driving(&timeline, &next, *effective_date) {
                write.timelines = vec![(vehicle_id.clone(), next)];
                write.redrive = redrive(&facts.bookings, driver_id, now);
            }
            let mut entity = vehicle;
            if !write.is_empty() {
                touch(&mut entity.update_time, &mut entity.version, now);
                write.vehicle = Some(entity.clone());
            }
            let mut done = outcome(FleetEntity::Vehicle(entity), &write);
            done.vehicles_touched = vec![vehicle_id.clone()];
            Ok((write, done))
        }
        FleetCommand::CreateBlock {
            block,
            cancel_conflicting,
        } => {
            require(Resource::Vehicle, &block.vehicle_id, facts.vehicle)?;
            if facts.block.is_some() {
                return Err(taken(Resource::VehicleBlock, "id", &block.id));
            }
            request
                .window
                .check_not_past("block.start_date", block.start_date)
                .map_err(DomainError::invalid)?;
            write.cancel = conflicting(
                Resource::Vehicle,
                &block.vehicle_id,
                facts.bookings,
                *cancel_conflicting,
            )?;
            write.insert_block = Some(block.clone());
            let mut done = outcome(FleetEntity::Block(block.clone()), &write);
            done.dates_touched = bookable_days(&request.window, block);
            Ok((write, done))
        }
        FleetCommand::DeleteBlock {
            vehicle_id,
            block_id,
        } => {
            require(Resource::Vehicle, vehicle_id, facts.vehicle)?;
            let block = facts
                .block
                .filter(|b| b.vehicle_id == *vehicle_id)
                .ok_or_else(|| DomainError::not_found(Resource::VehicleBlock, block_id))?;
            if block.end_date < today {
                return Err(DomainError::BlockIsHistory {
                    id: block.id,
                    end_date: block.end_date,
                    today,
                });
            }
            write.delete_block = Some(block.id.clone());
            let mut done = outcome(FleetEntity::Block(block.clone()), &write);
            done.dates_touched = bookable_days(&request.window, &block);
            Ok((write, done))
        }
    }
}

/// The days of `block` that can be booked now: only those can have cached
/// availability.
fn bookable_days(window: &BookingWindow, block: &VehicleBlock) -> Vec<NaiveDate> {
    let first = block.start_date.max(window.today);
    let last = block.end_date.min(window.last);
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// Checks a booking can be made for `employee` with `vehicle` (and its
/// `timeline`) on `date`, given the `block` covering that date if any;
/// returns the driver the booking carries.
pub fn check_bookable(
    employee: &Employee,
    vehicle: &Vehicle,
    timeline: &[Assignment],
    block: Option<&VehicleBlock>,
    date: NaiveDate,
) -> Result<String, DomainError> {
    if !employee.active {
        return Err(inactive(Resource::Employee, &employee.id));
    }
    // Whether the slot is taken is the caller's to check (its refusal
    // names the booking that holds it), so `Booked` never comes back.
    match bookable(vehicle, timeline, block, false, date) {
        Ok(driver) => Ok(driver.to_owned()),
        Err(Unbookable::Retired) => Err(inactive(Resource::Vehicle, &vehicle.id)),
        Err(Unbookable::OutOfService(block)) => Err(DomainError::VehicleOutOfService {
            vehicle_id: vehicle.id.clone(),
            date,
            block_id: block.id.clone(),
            start_date: block.start_date,
            end_date: block.end_date,
        }),
        Err(Unbookable::NoDriver | Unbookable::Booked) => Err(DomainError::NoDriver {
            vehicle_id: vehicle.id.clone(),
            date,
        }),
    }
}

/// The ids the command itself holds, which are not conflicts with itself.
fn self_ids(command: &FleetCommand) -> Option<&str> {
    match command {
        FleetCommand::PutEmployee { employee, .. } => Some(&employee.id),
        FleetCommand::UpdateEmployee { id, .. } | FleetCommand::UpdateDriver { id, .. } => Some(id),
        FleetCommand::UpdateVehicle { id, .. } | FleetCommand::EraseEmployee { id, .. } => Some(id),
        FleetCommand::PutDriver { driver, .. } => Some(&driver.id),
        FleetCommand::PutVehicle { vehicle, .. } => Some(&vehicle.id),
        _ => None,
    }
}

fn check_taken(taken: &[(Unique, String)], own: Option<&str>) -> Result<(), DomainError> {
    for (value, holder) in taken {
        if Some(holder.as_str()) == own {
            continue;
        }
        let (resource, field, value) = match value {
            Unique::EmployeeEmail(v) => (Resource::Employee, "email", v),
            Unique::VehicleRegistration(v) => (Resource::Vehicle, "registration", v),
            Unique::DriverLicence(v) => (Resource::Driver, "license_number", v),
        };
        return Err(DomainError::Taken {
            resource,
            field,
            value: value.clone(),
            holder_id: holder.clone(),
        });
    }
    Ok(())
}

fn taken(resource: Resource, field: &'static str, id: &str) -> DomainError {
    DomainError::Taken {
        resource,
        field,
        value: id.to_owned(),
        holder_id: id.to_owned(),
    }
}

fn inactive(resource: Resource, id: &str) -> DomainError {
    DomainError::Inactive {
        resource,
        id: id.to_owned(),
    }
}

fn require<T>(resource: Resource, id: &str, found: Option<T>) -> Result<T, DomainError> {
    found.ok_or_else(|| DomainError::not_found(resource, id))
}

/// The bookings in the way, to cancel when the caller asked for that.
fn conflicting(
    resource: Resource,
    id: &str,
    bookings: Vec<Allocation>,
    cancel: bool,
) -> Result<Vec<Allocation>, DomainError> {
    if bookings.is_empty() || cancel {
        return Ok(bookings);
    }
    Err(DomainError::HasFutureBookings {
        resource,
        id: id.to_owned(),
        total: bookings.len(),
        allocation_ids: bookings
            .iter()
            .take(DomainError::MAX_LISTED)
            .map(|b| b.id.clone())
            .collect(),
    })
}

/// `Some(after)` when it differs from `before` (a new entity always does).
fn changed<T: Clone + PartialEq>(after: &T, before: Option<&T>) -> Option<T> {
    (before != Some(after)).then(|| after.clone())
}

fn touch(update_time: &mut DateTime<Utc>, version: &mut u64, now: DateTime<Utc>) {
    *update_time = now;
    *version += 1;
}

fn apply_employee(mut e: Employee, changes: &EmployeeChanges, now: DateTime<Utc>) -> Employee {
    let before = e.clone();
    set(&mut e.name, &changes.name);
    set(&mut e.email, &changes.email);
    set(&mut e.department, &changes.department);
    if e != before {
        touch(&mut e.update_time, &mut e.version, now);
    }
    e
}

fn apply_driver(mut d: Driver, changes: &DriverChanges, now: DateTime<Utc>) -> Driver {
    let before = d.clone();
    set(&mut d.name, &changes.name);
    set(&mut d.phone, &changes.phone);
    set(&mut d.license_number, &changes.license_number);
    if d != before {
        touch(&mut d.update_time, &mut d.version, now);
    }
    d
}

fn apply_vehicle(mut v: Vehicle, changes: &VehicleChanges, now: DateTime<Utc>) -> Vehicle {
    let before = v.clone();
    set(&mut v.registration, &changes.registration);
    set(&mut v.make, &changes.make);
    set(&mut v.model, &changes.model);
    if let Some(seats) = changes.seats {
        v.seats = seats;
    }
    if v != before {
        touch(&mut v.update_time, &mut v.version, now);
    }
    v
}

fn set(field: &mut String, value: &Option<String>) {
    if let Some(value) = value {
        value.clone_into(field);
    }
}

fn timeline_vehicles(timelines: &[(String, Vec<Assignment>)]) -> Vec<String> {
    timelines.iter().map(|(id, _)| id.clone()).collect()
}

/// Whether the timeline has nobody driving from some date on.
fn timeline_ends(timeline: &[Assignment]) -> bool {
    timeline.last().is_none_or(|p| p.end.is_some())
}

/// `timeline` with `driver_id` driving none of its dates from `from` on.
fn end_driver(timeline: &[Assignment], driver_id: &str, from: NaiveDate) -> Vec<Assignment> {
    timeline
        .iter()
        .filter(|p| !(p.driver_id == driver_id && p.start >= from))
        .map(|p| {
            if p.driver_id == driver_id && p.reaches(from) {
                Assignment {
                    end: Some(from),
                    ..p.clone()
                }
            } else {
                p.clone()
            }
        })
        .collect()
}

/// Refuses when `driver_id` drives a vehicle other than `vehicle_id` on a
/// date from `from` on.
fn check_driver_free(
    driver_id: &str,
    vehicle_id: &str,
    from: NaiveDate,
    timelines: &[(String, Vec<Assignment>)],
) -> Result<(), DomainError> {
    for (other, timeline) in timelines {
        if other == vehicle_id {
            continue;
        }
        if let Some(p) = timeline
            .iter()
            .find(|p| p.driver_id == driver_id && p.reaches(from))
        {
            return Err(DomainError::DriverAlreadyAssigned {
                driver_id: driver_id.to_owned(),
                vehicle_id: other.clone(),
                from: p.start.max(from),
            });
        }
    }
    Ok(())
}

/// Whether two timelines name the same drivers on every date from `from`.
fn same_driving(a: &[Assignment], b: &[Assignment], from: NaiveDate) -> bool {
    let tail = |t: &[Assignment]| -> Vec<(String, NaiveDate, Option<NaiveDate>)> {
        let mut merged: Vec<(String, NaiveDate, Option<NaiveDate>)> = Vec::new();
        for p in t.iter().filter(|p| p.reaches(from)) {
            let start = p.start.max(from);
            match merged.last_mut() {
                Some(last) if last.0 == p.driver_id && last.2 == Some(start) => last.2 = p.end,
                _ => merged.push((p.driver_id.clone(), start, p.end)),
            }
        }
        merged
    };
    tail(a) == tail(b)
}

/// The bookings of `bookings` that another driver carries, now carrying
/// `driver_id`.
fn redrive(
    bookings: &[Allocation],
    driver_id: &str,
    now: DateTime<Utc>,
) -> Vec<(Allocation, Allocation)> {
    bookings
        .iter()
        .filter(|b| b.driver_id != driver_id)
        .map(|b| {
            let mut after = b.clone();
            after.driver_id = driver_id.to_owned();
            after.update_time = now;
            after.version += 1;
            (b.clone(), after)
        })
        .collect()
}

#[cfg(test)]
mod tests;
