//! `decide` from made-up facts: one table per command with every refusal it
//! can give, then what each success writes.

use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::domain::allocation::{AllocationChanges, Etag};
use crate::domain::event::{EventKind, Snapshot};
use crate::domain::{Actor, BookingPolicy, BookingWindow, Origin};

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-04T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn window() -> BookingWindow {
    BookingPolicy::default().window(now())
}

fn origin() -> Origin {
    Origin::new(Actor::anonymous(), "req-1")
}

fn period(driver: &str, start: NaiveDate, end: Option<NaiveDate>) -> Assignment {
    Assignment {
        driver_id: driver.into(),
        start,
        end,
    }
}

fn employee(id: &str) -> Employee {
    Employee {
        id: id.into(),
        name: "E".into(),
        email: format!("{id}@x.org"),
        department: String::new(),
        active: true,
        create_time: now(),
        update_time: now(),
        version: 1,
    }
}

fn vehicle(id: &str) -> Vehicle {
    Vehicle {
        id: id.into(),
        registration: format!("R-{id}"),
        make: String::new(),
        model: String::new(),
        seats: 4,
        retired: false,
        create_time: now(),
        update_time: now(),
        version: 1,
        driver: None,
    }
}

fn block(from: NaiveDate, to: NaiveDate) -> VehicleBlock {
    VehicleBlock {
        id: "blk".into(),
        vehicle_id: "v".into(),
        start_date: from,
        end_date: to,
        reason: String::new(),
        create_time: now(),
        update_time: now(),
        version: 1,
    }
}

/// Booking `a1` of employee `e` with vehicle `v` (driven by `d1`) on the
/// 10th, in its third version.
fn booking() -> Allocation {
    Allocation {
        id: "a1".into(),
        employee_id: "e".into(),
        vehicle_id: "v".into(),
        driver_id: "d1".into(),
        date: day(10),
        purpose: "visit".into(),
        create_time: now(),
        update_time: now(),
        version: 3,
    }
}

/// A slot where everything may book: `v` is driven by `d1` until the 12th
/// and by `d2` from then on.
fn slot_facts() -> BookingFacts {
    BookingFacts {
        employee: Some(employee("e")),
        vehicle: Some((
            vehicle("v"),
            vec![
                period("d1", day(1), Some(day(12))),
                period("d2", day(12), None),
            ],
        )),
        ..BookingFacts::default()
    }
}

/// Each way a slot's facts refuse, as a tweak of [`slot_facts`]; a booking
/// that moves is held to the same list as a new one.
/// A row of a table: its name, what it changes, the reason expected.
type Row<T> = (&'static str, T, &'static str);

fn slot_refusals() -> Vec<Row<fn(&mut BookingFacts)>> {
    vec![
        (
            "no such employee",
            |f| f.employee = None,
            "EMPLOYEE_NOT_FOUND",
        ),
        ("no such vehicle", |f| f.vehicle = None, "VEHICLE_NOT_FOUND"),
        (
            "employee deactivated",
            |f| f.employee.as_mut().unwrap().active = false,
            "EMPLOYEE_DEACTIVATED",
        ),
        (
            "vehicle retired",
            |f| f.vehicle.as_mut().unwrap().0.retired = true,
            "VEHICLE_RETIRED",
        ),
        (
            "vehicle blocked that day",
            |f| f.block = Some(block(day(5), day(20))),
            "VEHICLE_OUT_OF_SERVICE",
        ),
        (
            "nobody drives it that day",
            |f| f.vehicle.as_mut().unwrap().1.clear(),
            "VEHICLE_HAS_NO_DRIVER",
        ),
        (
            "vehicle booked that day",
            |f| f.vehicle_holder = Some("a9".into()),
            "VEHICLE_ALREADY_BOOKED",
        ),
        (
            "employee booked that day",
            |f| f.employee_holder = Some("a8".into()),
            "EMPLOYEE_ALREADY_BOOKED",
        ),
    ]
}

fn new_booking(date: NaiveDate) -> NewAllocation {
    NewAllocation {
        id: "a1".into(),
        employee_id: "e".into(),
        vehicle_id: "v".into(),
        date,
        purpose: "visit".into(),
        now: now(),
        window: window(),
        idempotency_key: Some(IdempotencyKey::new("key-1".into(), "e", "v", date, "visit")),
        origin: origin(),
    }
}

fn reason(name: &str, command: &BookingCommand, facts: BookingFacts) -> &'static str {
    match decide(command, facts) {
        Ok(decision) => panic!("{name}: decided {decision:?}"),
        Err(e) => e.reason(),
    }
}

fn written(command: &BookingCommand, facts: BookingFacts) -> BookingWrite {
    match decide(command, facts) {
        Ok(BookingDecision::Write(write)) => *write,
        other => panic!("wrote nothing: {other:?}"),
    }
}

#[test]
fn a_create_is_refused_for_each_reason() {
    type Tweak = Box<dyn Fn(&mut NewAllocation, &mut BookingFacts)>;
    let fingerprint = new_booking(day(10)).idempotency_key.unwrap().fingerprint;
    let mut table: Vec<(&str, Tweak, &str)> = vec![
        (
            "key used for another booking",
            Box::new(move |_, f| f.earlier_key = Some(("a0".into(), fingerprint ^ 1))),
            "REQUEST_ID_REUSED",
        ),
        (
            "key's booking since cancelled",
            Box::new(move |_, f| f.earlier_key = Some(("a0".into(), fingerprint))),
            "ALLOCATION_NOT_FOUND",
        ),
        (
            "date before today",
            Box::new(|n, _| n.date = day(3)),
            "DATE_IN_PAST",
        ),
        (
            "date beyond the window",
            Box::new(|n, _| n.date = window().last.succ_opt().unwrap()),
            "DATE_TOO_FAR_AHEAD",
        ),
    ];
    for (name, tweak, expected) in slot_refusals() {
        table.push((name, Box::new(move |_, f| tweak(f)), expected));
    }
    for (name, tweak, expected) in table {
        let (mut new, mut facts) = (new_booking(day(10)), slot_facts());
        tweak(&mut new, &mut facts);
        let command = BookingCommand::Create(new);
        assert_eq!(reason(name, &command, facts), expected, "{name}");
    }
}

#[test]
fn a_create_writes_the_booking_with_that_days_driver_its_key_and_event() {
    for (date, driver) in [(day(10), "d1"), (day(12), "d2")] {
        let new = new_booking(date);
        let key = new.idempotency_key.clone().unwrap();
        let write = written(&BookingCommand::Create(new), slot_facts());
        let made = Allocation {
            date,
            driver_id: driver.into(),
            version: 1,
            ..booking()
        };
        assert_eq!(write.before, None);
        assert_eq!(write.after.as_ref(), Some(&made), "{date}");
        assert_eq!(write.key, Some((key, now())));
        assert_eq!(write.event.kind, EventKind::AllocationCreated);
        assert_eq!(write.event.resource, "allocations/a1");
        assert_eq!(write.event.request_id, "req-1");
        assert_eq!(write.event.before, None);
        assert_eq!(write.event.after, Some(Snapshot::Allocation(made)));
    }
    // Without a key, none is stored.
    let mut new = new_booking(day(10));
    new.idempotency_key = None;
    assert_eq!(
        written(&BookingCommand::Create(new), slot_facts()).key,
        None
    );
}

#[test]
fn a_retry_is_answered_with_the_booking_made_then_even_once_it_is_history() {
    let new = new_booking(day(3));
    let fingerprint = new.idempotency_key.as_ref().unwrap().fingerprint;
    let made = Allocation {
        date: day(3),
        ..booking()
    };
    let facts = BookingFacts {
        existing: Some(made.clone()),
        earlier_key: Some(("a1".into(), fingerprint)),
        ..BookingFacts::default()
    };
    assert_eq!(
        decide(&BookingCommand::Create(new), facts),
        Ok(BookingDecision::Replay(made))
    );
}

/// Booking `a1` moved to the 11th, sent with its etag.
fn move_to(date: NaiveDate) -> AllocationUpdate {
    AllocationUpdate {
        id: "a1".into(),
        changes: AllocationChanges {
            date: Some(date),
            ..AllocationChanges::default()
        },
        expected_etag: Some(Etag(3)),
        now: now(),
        window: window(),
        origin: origin(),
    }
}

#[test]
fn an_update_is_refused_for_each_reason() {
    type Tweak = Box<dyn Fn(&mut AllocationUpdate, &mut BookingFacts)>;
    let mut table: Vec<(&str, Tweak, &str)> = vec![
        (
            "no such booking",
            Box::new(|_, f| f.existing = None),
            "ALLOCATION_NOT_FOUND",
        ),
        (
            "booking is history",
            Box::new(|_, f| f.existing.as_mut().unwrap().date = day(3)),
            "ALLOCATION_IS_HISTORY",
        ),
        (
            "booking changed since read",
            Box::new(|u, _| u.expected_etag = Some(Etag(2))),
            "ETAG_MISMATCH",
        ),
        (
            "new date before today",
            Box::new(|u, _| u.changes.date = Some(day(3))),
            "DATE_IN_PAST",
        ),
        (
            "new date beyond the window",
            Box::new(|u, _| u.changes.date = Some(window().last.succ_opt().unwrap())),
            "DATE_TOO_FAR_AHEAD",
        ),
    ];
    for (name, tweak, expected) in slot_refusals() {
        table.push((name, Box::new(move |_, f| tweak(f)), expected));
    }
    for (name, tweak, expected) in table {
        let mut update = move_to(day(11));
        let mut facts = BookingFacts {
            existing: Some(booking()),
            ..slot_facts()
        };
        tweak(&mut update, &mut facts);
        let command = BookingCommand::Update(update);
        assert_eq!(reason(name, &command, facts), expected, "{name}");
    }
}

#[test]
fn an_update_that_moves_takes_the_new_days_driver_and_one_that_stays_keeps_its_own() {
    let facts = BookingFacts {
        existing: Some(booking()),
        ..slot_facts()
    };
    let write = written(&BookingCommand::Update(move_to(day(12))), facts);
    let moved = Allocation {
        date: day(12),
        driver_id: "d2".into(),
        version: 4,
        ..booking()
    };
    assert_eq!(write.before, Some(booking()));
    assert_eq!(write.after, Some(moved.clone()));
    assert_eq!(write.key, None);
    assert_eq!(write.event.kind, EventKind::AllocationUpdated);
    assert_eq!(write.event.before, Some(Snapshot::Allocation(booking())));
    assert_eq!(write.event.after, Some(Snapshot::Allocation(moved)));

    // A new purpose needs no slot: nothing else is read, and the driver the
    // booking carries stays, whoever drives that day now.
    let mut update = move_to(day(10));
    update.changes = AllocationChanges {
        purpose: Some("audit".into()),
        ..AllocationChanges::default()
    };
    let command = BookingCommand::Update(update);
    let facts = BookingFacts {
        existing: Some(booking()),
        ..BookingFacts::default()
    };
    assert_eq!(command.slot(&facts), None);
    let write = written(&command, facts);
    let after = write.after.unwrap();
    assert_eq!(
        (after.purpose.as_str(), after.driver_id.as_str()),
        ("audit", "d1")
    );
    assert_eq!((after.version, after.update_time), (4, now()));
}

fn cancel() -> AllocationDeletion {
    AllocationDeletion {
        id: "a1".into(),
        expected_etag: Some(Etag(3)),
        now: now(),
        window: window(),
        origin: origin(),
    }
}

#[test]
fn a_cancel_is_refused_for_each_reason() {
    type Tweak = fn(&mut AllocationDeletion, &mut BookingFacts);
    let table: Vec<(&str, Tweak, &str)> = vec![
        (
            "no such booking",
            |_, f| f.existing = None,
            "ALLOCATION_NOT_FOUND",
        ),
        (
            "booking is history",
            |_, f| f.existing.as_mut().unwrap().date = day(3),
            "ALLOCATION_IS_HISTORY",
        ),
        (
            "booking changed since read",
            |d, _| d.expected_etag = Some(Etag(4)),
            "ETAG_MISMATCH",
        ),
    ];
    for (name, tweak, expected) in table {
        let mut deletion = cancel();
        let mut facts = BookingFacts {
            existing: Some(booking()),
            ..BookingFacts::default()
        };
        tweak(&mut deletion, &mut facts);
        let command = BookingCommand::Cancel(deletion);
        assert_eq!(reason(name, &command, facts), expected, "{name}");
    }
}

#[test]
fn a_cancel_deletes_the_version_read_and_records_it() {
    for etag in [Some(Etag(3)), None] {
        let deletion = AllocationDeletion {
            expected_etag: etag,
            ..cancel()
        };
        let facts = BookingFacts {
            existing: Some(booking()),
            ..BookingFacts::default()
        };
        let write = written(&BookingCommand::Cancel(deletion), facts);
        assert_eq!((write.before, write.after), (Some(booking()), None));
        assert_eq!(write.event.kind, EventKind::AllocationCancelled);
        assert_eq!(write.event.before, Some(Snapshot::Allocation(booking())));
        assert_eq!(write.event.after, None);
    }
}
