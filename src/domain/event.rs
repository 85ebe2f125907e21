//! The audit trail: one event for every change a write makes, appended in
//! the write's own transaction, and the filters it is read with.
//!
//! Events are built here, from the decisions of [`super::booking`] and
//! [`super::admin`], so that every backend records the same events for the
//! same changes.

use chrono::{DateTime, Utc};

use super::allocation::Allocation;
use super::context::{Actor, Origin};
use super::fleet::{Driver, Employee, Vehicle, VehicleBlock};

/// What happened to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    AllocationCreated,
    AllocationUpdated,
    AllocationCancelled,
    EmployeeCreated,
    EmployeeUpdated,
    /// An employee's name and e-mail were replaced by a pseudonym (an
    /// erasure request): its `after` is the pseudonymised employee.
    EmployeeErased,
    DriverCreated,
    DriverUpdated,
    VehicleCreated,
    VehicleUpdated,
    VehicleBlockCreated,
    VehicleBlockDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        Self::AllocationCreated,
        Self::AllocationUpdated,
        Self::AllocationCancelled,
        Self::EmployeeCreated,
        Self::EmployeeUpdated,
        Self::EmployeeErased,
        Self::DriverCreated,
        Self::DriverUpdated,
        Self::VehicleCreated,
        Self::VehicleUpdated,
        Self::VehicleBlockCreated,
        Self::VehicleBlockDeleted,
    ];

    /// The kind's name in events and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllocationCreated => "allocation.created",
            Self::AllocationUpdated => "allocation.updated",
            Self::AllocationCancelled => "allocation.cancelled",
            Self::EmployeeCreated => "employee.created",
            Self::EmployeeUpdated => "employee.updated",
            Self::EmployeeErased => "employee.erased",
            Self::DriverCreated => "driver.created",
            Self::DriverUpdated => "driver.updated",
            Self::VehicleCreated => "vehicle.created",
            Self::VehicleUpdated => "vehicle.updated",
            Self::VehicleBlockCreated => "vehicle_block.created",
            Self::VehicleBlockDeleted => "vehicle_block.deleted",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the event is about a booking.
    pub fn is_booking(self) -> bool {
        matches!(
            self,
            Self::AllocationCreated | Self::AllocationUpdated | Self::AllocationCancelled
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource as it was before or after a change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Snapshot {
    Allocation(Allocation),
    Employee(Employee),
    Driver(Driver),
    Vehicle(Vehicle),
    VehicleBlock(VehicleBlock),
}

impl Snapshot {
    /// The resource name, such as `allocations/{id}`.
    pub fn resource(&self) -> String {
        match self {
            Self::Allocation(a) => format!("allocations/{}", a.id),
            Self::Employee(e) => format!("employees/{}", e.id),
            Self::Driver(d) => format!("drivers/{}", d.id),
            Self::Vehicle(v) => format!("vehicles/{}", v.id),
            Self::VehicleBlock(b) => format!("vehicles/{}/blocks/{}", b.vehicle_id, b.id),
        }
    }

    /// The employee the resource belongs to, if any.
    fn employee_id(&self) -> Option<&str> {
        match self {
            Self::Allocation(a) => Some(&a.employee_id),
            Self::Employee(e) => Some(&e.id),
            _ => None,
        }
    }

    /// The vehicle the resource is or concerns, if any.
    fn vehicle_id(&self) -> Option<&str> {
        match self {
            Self::Allocation(a) => Some(&a.vehicle_id),
            Self::Vehicle(v) => Some(&v.id),
            Self::VehicleBlock(b) => Some(&b.vehicle_id),
            _ => None,
        }
    }
}

/// An event before it is stored (and given its sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: EventKind,
    /// `allocations/{id}`, `vehicles/{id}`...
    pub resource: String,
    pub time: DateTime<Utc>,
    pub actor: Actor,
    pub request_id: String,
    /// Empty on create.
    pub before: Option<Snapshot>,
    /// Empty on cancel and delete.
    pub after: Option<Snapshot>,
}

impl NewEvent {
    /// The event of a change from `before` to `after` (one of them at
    /// least), made at `time` by `origin`.
    pub fn new(
        kind: EventKind,
        before: Option<Snapshot>,
        after: Option<Snapshot>,
        time: DateTime<Utc>,
        origin: &Origin,
    ) -> Self {
        let resource = after
            .as_ref()
            .or(before.as_ref())
            .map(Snapshot::resource)
            .unwrap_or_default();
        Self {
            kind,
            resource,
            time,
            actor: origin.actor.clone(),
            request_id: origin.request_id.clone(),
            before,
            after,
        }
    }

    /// The event of a booking's change: created, updated or cancelled
    /// depending on which of `before` and `after` there are.
    pub fn allocation(
        before: Option<&Allocation>,
        after: Option<&Allocation>,
        time: DateTime<Utc>,
        origin: &Origin,
    ) -> Self {
        let kind = match (before, after) {
            (None, _) => EventKind::AllocationCreated,
            (Some(_), Some(_)) => EventKind::AllocationUpdated,
            (Some(_), None) => EventKind::AllocationCancelled,
        };
        Self::new(
            kind,
            before.cloned().map(Snapshot::Allocation),
            after.cloned().map(Snapshot::Allocation),
            time,
            origin,
        )
    }

    /// The employee the event concerns (a booking's, or the employee
    /// changed), for filters and for employees reading their own.
    pub fn employee_id(&self) -> Option<&str> {
        self.after
            .as_ref()
            .and_then(Snapshot::employee_id)
            .or_else(|| self.before.as_ref().and_then(Snapshot::employee_id))
    }

    /// The vehicles the event concerns: a booking moved to another vehicle
    /// concerns both.
    pub fn vehicle_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = [&self.before, &self.after]
            .into_iter()
            .filter_map(|s| s.as_ref().and_then(Snapshot::vehicle_id))
            .collect();
        ids.dedup();
        ids
    }
}

/// The events of a seeding batch of employees and vehicles (with their
/// drivers): each one created, by `origin`, when it says it was.
pub fn seeded_fleet(
    employees: &[Employee],
    vehicles: &[Vehicle],
    origin: &Origin,
) -> Vec<NewEvent> {
    let created =
        |kind, snapshot: Snapshot, at| NewEvent::new(kind, None, Some(snapshot), at, origin);
    let mut events: Vec<NewEvent> = employees
        .iter()
        .map(|e| {
            created(
                EventKind::EmployeeCreated,
                Snapshot::Employee(e.clone()),
                e.create_time,
            )
        })
        .collect();
    for v in vehicles {
        if let Some(d) = &v.driver {
            events.push(created(
                EventKind::DriverCreated,
                Snapshot::Driver(d.clone()),
                d.create_time,
            ));
        }
        events.push(created(
            EventKind::VehicleCreated,
            Snapshot::Vehicle(v.clone()),
            v.create_time,
        ));
    }
    events
}

/// The events of a seeding batch of bookings.
pub fn seeded_bookings(allocations: &[Allocation], origin: &Origin) -> Vec<NewEvent> {
    allocations
        .iter()
        .map(|a| NewEvent::allocation(None, Some(a), a.create_time, origin))
        .collect()
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Strictly increasing per store, with no gaps that readers can see.
    pub sequence: u64,
    pub event: NewEvent,
}

/// Which events a query or a watch wants. Every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub resource: Option<String>,
    pub employee_id: Option<String>,
    pub vehicle_id: Option<String>,
    pub actor: Option<String>,
    /// Any of these kinds; all kinds when empty.
    pub kinds: Vec<EventKind>,
    /// From this instant on, included.
    pub start_time: Option<DateTime<Utc>>,
    /// Before this instant, excluded.
    pub end_time: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// Whether `event` passes the filter (for events delivered live, which
    /// no query has filtered).
    pub fn matches(&self, event: &NewEvent) -> bool {
        self.resource.as_ref().is_none_or(|r| *r == event.resource)
            && self
                .employee_id
                .as_deref()
                .is_none_or(|id| event.employee_id() == Some(id))
            && self
                .vehicle_id
                .as_deref()
                .is_none_or(|id| event.vehicle_ids().contains(&id))
            && self.actor.as_ref().is_none_or(|a| *a == event.actor.id)
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.start_time.is_none_or(|t| event.time >= t)
            && self.end_time.is_none_or(|t| event.time < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn booking(vehicle: &str) -> Allocation {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        Allocation {
            id: "a1".into(),
            employee_id: "e1".into(),
            vehicle_id: vehicle.into(),
            driver_id: "d1".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
            purpose: String::new(),
            create_time: at,
            update_time: at,
            version: 1,
        }
    }

    #[test]
    fn a_booking_event_is_named_by_what_changed() {
        let origin = Origin::new(Actor::anonymous(), "r1");
        let (a, b) = (booking("v1"), booking("v2"));
        let at = a.create_time;
        let created = NewEvent::allocation(None, Some(&a), at, &origin);
        let moved = NewEvent::allocation(Some(&a), Some(&b), at, &origin);
        let cancelled = NewEvent::allocation(Some(&b), None, at, &origin);
        assert_eq!(created.kind, EventKind::AllocationCreated);
        assert_eq!(moved.kind, EventKind::AllocationUpdated);
        assert_eq!(cancelled.kind, EventKind::AllocationCancelled);
        assert_eq!(cancelled.resource, "allocations/a1");
        assert_eq!(moved.vehicle_ids(), ["v1", "v2"]);
        assert_eq!(created.vehicle_ids(), ["v1"]);
        assert_eq!(cancelled.employee_id(), Some("e1"));
        assert_eq!(created.actor.id, "anonymous");
        assert_eq!(created.actor.roles, ["fleet_admin"]);
        assert_eq!(created.request_id, "r1");
    }

    #[test]
    fn a_filter_matches_each_field_and_the_time_range_half_open() {
        let origin = Origin::new(Actor::system("seed"), "r1");
        let a = booking("v1");
        let event = NewEvent::allocation(None, Some(&a), a.create_time, &origin);
        let pass = |f: EventFilter| f.matches(&event);
        assert!(pass(EventFilter::default()));
        assert!(pass(EventFilter {
            vehicle_id: Some("v1".into()),
            employee_id: Some("e1".into()),
            actor: Some("system:seed".into()),
            kinds: vec![EventKind::AllocationCreated, EventKind::AllocationCancelled],
            resource: Some("allocations/a1".into()),
            start_time: Some(a.create_time),
            ..Default::default()
        }));
        assert!(!pass(EventFilter {
            end_time: Some(a.create_time),
            ..Default::default()
        }));
        assert!(!pass(EventFilter {
            vehicle_id: Some("v2".into()),
            ..Default::default()
        }));
        assert!(!pass(EventFilter {
            kinds: vec![EventKind::AllocationUpdated],
            ..Default::default()
        }));
        assert!(!pass(EventFilter {
            actor: Some("anonymous".into()),
            ..Default::default()
        }));
    }

    #[test]
    fn kinds_parse_back_from_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("allocation.deleted"), None);
    }
}
