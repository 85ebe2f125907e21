use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::domain::BookingPolicy;
use crate::domain::error::{ViolationReason, Violations};

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-04T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn request(command: FleetCommand) -> FleetRequest {
    FleetRequest {
        command,
        now: now(),
        window: BookingPolicy::default().window(now()),
        origin: crate::domain::Origin::new(crate::domain::Actor::anonymous(), "req-1"),
    }
}

fn period(driver: &str, start: NaiveDate, end: Option<NaiveDate>) -> Assignment {
    Assignment {
        driver_id: driver.into(),
        start,
        end,
    }
}

fn vehicle(id: &str) -> Vehicle {
    Vehicle {
        id: id.into(),
        registration: "R".into(),
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

fn employee(active: bool) -> Employee {
    Employee {
        id: "e".into(),
        name: "E".into(),
        email: "e@x.org".into(),
        department: String::new(),
        active,
        create_time: now(),
        update_time: now(),
        version: 1,
    }
}

#[test]
fn a_booking_is_refused_for_the_first_reason_that_applies() {
    let timeline = [period("d1", day(1), None)];
    let block = new_block(
        "b".into(),
        "v".into(),
        (day(5), day(6)),
        String::new(),
        now(),
    );
    let ok = check_bookable(&employee(true), &vehicle("v"), &timeline, None, day(5));
    assert_eq!(ok, Ok("d1".into()));
    let reason = |e: &Employee, v: &Vehicle, t: &[Assignment], b: Option<&VehicleBlock>| {
        check_bookable(e, v, t, b, day(5)).unwrap_err().reason()
    };
    let mut retired = vehicle("v");
    retired.retired = true;
    assert_eq!(
        reason(&employee(false), &retired, &[], Some(&block)),
        "EMPLOYEE_DEACTIVATED"
    );
    assert_eq!(
        reason(&employee(true), &retired, &[], Some(&block)),
        "VEHICLE_RETIRED"
    );
    assert_eq!(
        reason(&employee(true), &vehicle("v"), &[], Some(&block)),
        "VEHICLE_OUT_OF_SERVICE"
    );
    assert_eq!(
        reason(&employee(true), &vehicle("v"), &[], None),
        "VEHICLE_HAS_NO_DRIVER"
    );
}

#[test]
fn reassigning_the_driver_already_driving_changes_nothing() {
    let timeline = vec![period("d1", day(1), None)];
    let facts = Facts {
        vehicle: Some((vehicle("v"), timeline)),
        driver: Some(Driver {
            id: "d1".into(),
            name: "D".into(),
            phone: String::new(),
            license_number: "L".into(),
            active: true,
            create_time: now(),
            update_time: now(),
            version: 1,
        }),
        ..Default::default()
    };
    let (write, outcome) = decide(
        &request(FleetCommand::AssignDriver {
            vehicle_id: "v".into(),
            driver_id: "d1".into(),
            effective_date: day(10),
        }),
        facts,
    )
    .unwrap();
    assert!(write.is_empty());
    assert!(!outcome.changed);
}

fn booking_of_e(id: &str, date: NaiveDate) -> Allocation {
    Allocation {
        id: id.into(),
        employee_id: "e".into(),
        vehicle_id: "v".into(),
        driver_id: "d1".into(),
        date,
        purpose: String::new(),
        create_time: now(),
        update_time: now(),
        version: 1,
    }
}

fn erase(cancel_conflicting: bool) -> FleetRequest {
    request(FleetCommand::EraseEmployee {
        id: "e".into(),
        cancel_conflicting,
    })
}

#[test]
fn the_pseudonym_is_stable_per_id_and_says_nothing_of_the_person() {
    let erasure = Erasure::of("e");
    assert_eq!(erasure, Erasure::of("e"));
    assert_ne!(erasure.name, Erasure::of("f").name);
    assert_ne!(erasure.email, Erasure::of("f").email);
    let tag = erasure.name.strip_prefix("erased-").unwrap();
    assert_eq!(tag.len(), 16);
    assert!(tag.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(erasure.email, format!("erased-{tag}@erased.invalid"));
    assert_eq!(erasure.resource(), "employees/e");
    // A well-formed address, but one no one may be given: taken in
    // advance, it would make the erasure fail.
    let refused = email("email", &erasure.email).unwrap_err();
    assert!(
        refused.description.contains("erased.invalid"),
        "{refused:?}"
    );
    assert!(email("email", "x@Erased.Invalid").is_err());
    assert_eq!(email("email", "x@erased.invalid.example"), Ok(()));
    assert_eq!(required_text("name", &erasure.name, 200), Ok(()));
}

#[test]
fn erasing_pseudonymises_deactivates_and_records_no_personal_data() {
    let facts = Facts {
        employee: Some(Employee {
            department: "Sales".into(),
            ..employee(true)
        }),
        ..Default::default()
    };
    let (write, outcome) = decide(&erase(false), facts).unwrap();
    let erasure = Erasure::of("e");
    let erased = write.employee.clone().unwrap();
    assert_eq!(
        (&*erased.name, &*erased.email),
        (&*erasure.name, &*erasure.email)
    );
    assert!(!erased.active);
    assert_eq!(
        erased.department, "Sales",
        "the department is not the person's"
    );
    assert_eq!((erased.version, erased.update_time), (2, now()));
    assert_eq!(write.erase, Some(erasure));
    assert!(outcome.erased && outcome.changed);
    let [event] = &write.events[..] else {
        panic!("one event: {:?}", write.events)
    };
    assert_eq!(event.kind, EventKind::EmployeeErased);
    assert_eq!(event.resource, "employees/e");
    assert_eq!(event.employee_id(), Some("e"));
    assert_eq!(event.before, None);
    assert_eq!(event.after, Some(Snapshot::Employee(erased)));
    let text = format!("{event:?}");
    assert!(
        !text.contains("e@x.org") && !text.contains("\"E\""),
        "{text}"
    );
}

#[test]
fn erasing_refuses_or_cancels_future_bookings_like_deactivating() {
    let facts = || Facts {
        employee: Some(employee(true)),
        bookings: vec![booking_of_e("a1", day(5)), booking_of_e("a2", day(9))],
        ..Default::default()
    };
    assert_eq!(
        decide(&erase(false), facts()).unwrap_err().reason(),
        "HAS_FUTURE_BOOKINGS"
    );
    let (write, outcome) = decide(&erase(true), facts()).unwrap();
    assert_eq!(write.cancel.len(), 2);
    assert_eq!(outcome.cancelled.len(), 2);
    let kinds: Vec<EventKind> = write.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::EmployeeErased,
            EventKind::AllocationCancelled,
            EventKind::AllocationCancelled
        ]
    );
    assert_eq!(
        FleetCommand::EraseEmployee {
            id: "e".into(),
            cancel_conflicting: false
        }
        .needs(day(4))
        .bookings,
        Some(BookingQuery {
            owner: BookingOwner::Employee("e".into()),
            from: day(4),
            to: None,
        })
    );
}

#[test]
fn erasing_an_erased_employee_changes_nothing() {
    let (write, _) = decide(
        &erase(false),
        Facts {
            employee: Some(employee(true)),
            ..Default::default()
        },
    )
    .unwrap();
    let erased = write.employee.unwrap();
    let again = Facts {
        employee: Some(erased.clone()),
        // Its own pseudonym is held by itself.
        taken: vec![(Unique::EmployeeEmail(erased.email.clone()), "e".into())],
        ..Default::default()
    };
    let (write, outcome) = decide(&erase(false), again).unwrap();
    assert!(write.is_empty(), "{write:?}");
    assert!(!outcome.changed && !outcome.erased);
    assert_eq!(outcome.entity, FleetEntity::Employee(erased));
}

#[test]
fn a_pseudonym_held_by_another_employee_is_refused_by_name() {
    let facts = Facts {
        employee: Some(employee(true)),
        taken: vec![(
            Unique::EmployeeEmail(Erasure::of("e").email),
            "other".into(),
        )],
        ..Default::default()
    };
    assert_eq!(
        decide(&erase(false), facts).unwrap_err().reason(),
        "EMAIL_TAKEN"
    );
    assert_eq!(
        decide(&erase(false), Facts::default())
            .unwrap_err()
            .reason(),
        "EMPLOYEE_NOT_FOUND"
    );
}

#[test]
fn deactivating_a_driver_ends_only_their_periods_from_today() {
    let timeline = vec![
        period("d1", day(1), Some(day(6))),
        period("d2", day(6), Some(day(9))),
        period("d1", day(9), None),
    ];
    assert_eq!(
        end_driver(&timeline, "d1", day(4)),
        vec![
            period("d1", day(1), Some(day(4))),
            period("d2", day(6), Some(day(9))),
        ]
    );
}

#[test]
fn a_block_invalidates_only_its_bookable_days() {
    let window = BookingPolicy::default().window(now());
    let block = new_block(
        "b".into(),
        "v".into(),
        (day(1), day(6)),
        String::new(),
        now(),
    );
    assert_eq!(bookable_days(&window, &block), vec![day(4), day(5), day(6)]);
    let far = new_block(
        "b".into(),
        "v".into(),
        (window.last, window.last + chrono::Days::new(400)),
        String::new(),
        now(),
    );
    assert_eq!(bookable_days(&window, &far), vec![window.last]);
}

#[test]
fn input_names_every_bad_field() {
    let mut violations = Violations::new();
    let bad = EmployeeInput {
        id: "has/slash".into(),
        name: " ".into(),
        email: "no-at-sign".into(),
        department: "x".repeat(200),
    };
    assert!(bad.check("employee", now(), &mut violations).is_none());
    let error = violations.finish(|| ()).unwrap_err();
    let DomainError::Invalid(found) = error else {
        panic!("invalid")
    };
    let fields: Vec<(&str, ViolationReason)> =
        found.iter().map(|v| (v.field.as_str(), v.reason)).collect();
    assert_eq!(
        fields,
        vec![
            ("employee.id", ViolationReason::InvalidValue),
            ("employee.name", ViolationReason::Required),
            ("employee.email", ViolationReason::InvalidValue),
            ("employee.department", ViolationReason::TooLong),
        ]
    );
    for good in ["a@b.co", "first.last+tag@example.org"] {
        assert!(email("e", good).is_ok(), "{good}");
    }
    for bad in ["@b.co", "a@b", "a@.co", "a b@c.de", "a@b@c.de", "a@b.co."] {
        assert!(email("e", bad).is_err(), "{bad}");
    }
    assert!(phone("p", "+44 (20) 7946-0000").is_ok());
    assert!(phone("p", "call me").is_err());
    assert_eq!(seats("s", 100), Ok(100));
    assert!(seats("s", 101).is_err() && seats("s", -1).is_err());
}

// `decide` from made-up facts: one table per command with every refusal it
// can give, then one table of what each success writes.

fn driver(id: &str, active: bool) -> Driver {
    Driver {
        id: id.into(),
        name: "D".into(),
        phone: String::new(),
        license_number: format!("L-{id}"),
        active,
        create_time: now(),
        update_time: now(),
        version: 1,
    }
}

fn block_of_v(id: &str, from: NaiveDate, to: NaiveDate) -> VehicleBlock {
    new_block(id.into(), "v".into(), (from, to), String::new(), now())
}

/// `v` driven by `d1` from the 1st on.
fn driven_v() -> (Vehicle, Vec<Assignment>) {
    (vehicle("v"), vec![period("d1", day(1), None)])
}

fn holds(value: Unique, holder: &str) -> Vec<(Unique, String)> {
    vec![(value, holder.into())]
}

fn refusals(table: Vec<(&str, FleetCommand, Facts, &str)>) {
    for (name, command, facts, expected) in table {
        match decide(&request(command), facts) {
            Ok((write, _)) => panic!("{name}: decided {write:?}"),
            Err(e) => assert_eq!(e.reason(), expected, "{name}: {e}"),
        }
    }
}

#[test]
fn adding_or_changing_an_employee_is_refused_for_each_reason() {
    let put = |upsert| FleetCommand::PutEmployee {
        employee: employee(true),
        upsert,
    };
    let update = |etag| FleetCommand::UpdateEmployee {
        id: "e".into(),
        changes: EmployeeChanges {
            email: Some("new@x.org".into()),
            ..EmployeeChanges::default()
        },
        etag,
    };
    let existing = || Facts {
        employee: Some(employee(true)),
        ..Facts::default()
    };
    refusals(vec![
        (
            "id taken",
            put(false),
            existing(),
            "EMPLOYEE_ALREADY_EXISTS",
        ),
        (
            "e-mail taken",
            put(false),
            Facts {
                taken: holds(Unique::EmployeeEmail("e@x.org".into()), "f"),
                ..Facts::default()
            },
            "EMAIL_TAKEN",
        ),
        (
            "e-mail taken, on import",
            put(true),
            Facts {
                taken: holds(Unique::EmployeeEmail("e@x.org".into()), "f"),
                ..existing()
            },
            "EMAIL_TAKEN",
        ),
        (
            "no such employee to update",
            update(None),
            Facts::default(),
            "EMPLOYEE_NOT_FOUND",
        ),
        (
            "employee changed since read",
            update(Some(Etag(2))),
            existing(),
            "ETAG_MISMATCH",
        ),
        (
            "new e-mail taken",
            update(Some(Etag(1))),
            Facts {
                taken: holds(Unique::EmployeeEmail("new@x.org".into()), "f"),
                ..existing()
            },
            "EMAIL_TAKEN",
        ),
    ]);
}

#[test]
fn deactivating_or_erasing_an_employee_is_refused_for_each_reason() {
    let deactivate = |cancel_conflicting| FleetCommand::SetEmployeeActive {
        id: "e".into(),
        active: false,
        cancel_conflicting,
    };
    let booked = || Facts {
        employee: Some(employee(true)),
        bookings: vec![booking_of_e("a1", day(5))],
        ..Facts::default()
    };
    refusals(vec![
        (
            "no such employee to deactivate",
            deactivate(true),
            Facts::default(),
            "EMPLOYEE_NOT_FOUND",
        ),
        (
            "no such employee to reactivate",
            FleetCommand::SetEmployeeActive {
                id: "e".into(),
                active: true,
                cancel_conflicting: false,
            },
            Facts::default(),
            "EMPLOYEE_NOT_FOUND",
        ),
        (
            "future bookings in the way",
            deactivate(false),
            booked(),
            "HAS_FUTURE_BOOKINGS",
        ),
        (
            "no such employee to erase",
            erase(true).command,
            Facts::default(),
            "EMPLOYEE_NOT_FOUND",
        ),
        (
            "future bookings in the way of the erasure",
            erase(false).command,
            booked(),
            "HAS_FUTURE_BOOKINGS",
        ),
        (
            "pseudonym held by another",
            erase(true).command,
            Facts {
                taken: holds(Unique::EmployeeEmail(Erasure::of("e").email), "f"),
                ..booked()
            },
            "EMAIL_TAKEN",
        ),
    ]);
}

#[test]
fn adding_changing_or_deactivating_a_driver_is_refused_for_each_reason() {
    let put = |upsert| FleetCommand::PutDriver {
        driver: driver("d1", true),
        upsert,
    };
    let update = |etag| FleetCommand::UpdateDriver {
        id: "d1".into(),
        changes: DriverChanges {
            license_number: Some("L-new".into()),
            ..DriverChanges::default()
        },
        etag,
    };
    let deactivate = |cancel_conflicting| FleetCommand::DeactivateDriver {
        id: "d1".into(),
        cancel_conflicting,
    };
    let existing = || Facts {
        driver: Some(driver("d1", true)),
        ..Facts::default()
    };
    refusals(vec![
        ("id taken", put(false), existing(), "DRIVER_ALREADY_EXISTS"),
        (
            "licence taken",
            put(false),
            Facts {
                taken: holds(Unique::DriverLicence("L-d1".into()), "d2"),
                ..Facts::default()
            },
            "LICENSE_NUMBER_TAKEN",
        ),
        (
            "no such driver to update",
            update(None),
            Facts::default(),
            "DRIVER_NOT_FOUND",
        ),
        (
            "driver changed since read",
            update(Some(Etag(5))),
            existing(),
            "ETAG_MISMATCH",
        ),
        (
            "new licence taken",
            update(None),
            Facts {
                taken: holds(Unique::DriverLicence("L-new".into()), "d2"),
                ..existing()
            },
            "LICENSE_NUMBER_TAKEN",
        ),
        (
            "no such driver to deactivate",
            deactivate(true),
            Facts::default(),
            "DRIVER_NOT_FOUND",
        ),
        (
            "future bookings in the way",
            deactivate(false),
            Facts {
                bookings: vec![booking_of_e("a1", day(5))],
                ..existing()
            },
            "HAS_FUTURE_BOOKINGS",
        ),
    ]);
}

#[test]
fn adding_changing_or_retiring_a_vehicle_is_refused_for_each_reason() {
    let put = |upsert| FleetCommand::PutVehicle {
        vehicle: vehicle("v"),
        driver_id: "d1".into(),
        upsert,
    };
    let update = |etag| FleetCommand::UpdateVehicle {
        id: "v".into(),
        changes: VehicleChanges {
            registration: Some("R-new".into()),
            ..VehicleChanges::default()
        },
        etag,
    };
    let retire = |cancel_conflicting| FleetCommand::SetVehicleRetired {
        id: "v".into(),
        retired: true,
        cancel_conflicting,
    };
    let with_driver = |active| Facts {
        driver: Some(driver("d1", active)),
        ..Facts::default()
    };
    refusals(vec![
        (
            "no such driver",
            put(false),
            Facts::default(),
            "DRIVER_NOT_FOUND",
        ),
        (
            "id taken",
            put(false),
            Facts {
                vehicle: Some(driven_v()),
                ..with_driver(true)
            },
            "VEHICLE_ALREADY_EXISTS",
        ),
        (
            "registration taken",
            put(false),
            Facts {
                taken: holds(Unique::VehicleRegistration("R".into()), "w"),
                ..with_driver(true)
            },
            "REGISTRATION_TAKEN",
        ),
        (
            "driver deactivated",
            put(false),
            with_driver(false),
            "DRIVER_DEACTIVATED",
        ),
        (
            "driver drives another vehicle",
            put(false),
            Facts {
                driver_timelines: vec![("w".into(), vec![period("d1", day(1), None)])],
                ..with_driver(true)
            },
            "DRIVER_ALREADY_ASSIGNED",
        ),
        (
            "driver deactivated, on import of a vehicle driven by another",
            put(true),
            Facts {
                vehicle: Some((vehicle("v"), vec![period("d2", day(1), None)])),
                ..with_driver(false)
            },
            "DRIVER_DEACTIVATED",
        ),
        (
            "no such vehicle to update",
            update(None),
            Facts::default(),
            "VEHICLE_NOT_FOUND",
        ),
        (
            "vehicle changed since read",
            update(Some(Etag(2))),
            Facts {
                vehicle: Some(driven_v()),
                ..Facts::default()
            },
            "ETAG_MISMATCH",
        ),
        (
            "new registration taken",
            update(None),
            Facts {
                vehicle: Some(driven_v()),
                taken: holds(Unique::VehicleRegistration("R-new".into()), "w"),
                ..Facts::default()
            },
            "REGISTRATION_TAKEN",
        ),
        (
            "no such vehicle to retire",
            retire(true),
            Facts::default(),
            "VEHICLE_NOT_FOUND",
        ),
        (
            "future bookings in the way",
            retire(false),
            Facts {
                vehicle: Some(driven_v()),
                bookings: vec![booking_of_e("a1", day(5))],
                ..Facts::default()
            },
            "HAS_FUTURE_BOOKINGS",
        ),
    ]);
}

#[test]
fn assigning_a_driver_is_refused_for_each_reason() {
    let assign = |from| FleetCommand::AssignDriver {
        vehicle_id: "v".into(),
        driver_id: "d2".into(),
        effective_date: from,
    };
    let facts = || Facts {
        vehicle: Some(driven_v()),
        driver: Some(driver("d2", true)),
        ..Facts::default()
    };
    let mut retired = driven_v();
    retired.0.retired = true;
    refusals(vec![
        (
            "no such vehicle",
            assign(day(10)),
            Facts {
                vehicle: None,
                ..facts()
            },
            "VEHICLE_NOT_FOUND",
        ),
        (
            "no such driver",
            assign(day(10)),
            Facts {
                driver: None,
                ..facts()
            },
            "DRIVER_NOT_FOUND",
        ),
        ("from a past date", assign(day(3)), facts(), "DATE_IN_PAST"),
        (
            "vehicle retired",
            assign(day(10)),
            Facts {
                vehicle: Some(retired),
                ..facts()
            },
            "VEHICLE_RETIRED",
        ),
        (
            "driver deactivated",
            assign(day(10)),
            Facts {
                driver: Some(driver("d2", false)),
                ..facts()
            },
            "DRIVER_DEACTIVATED",
        ),
        (
            "driver drives another vehicle then",
            assign(day(10)),
            Facts {
                driver_timelines: vec![("w".into(), vec![period("d2", day(1), Some(day(11)))])],
                ..facts()
            },
            "DRIVER_ALREADY_ASSIGNED",
        ),
    ]);
}

#[test]
fn adding_or_deleting_a_block_is_refused_for_each_reason() {
    let create = |from, cancel_conflicting| FleetCommand::CreateBlock {
        block: block_of_v("b", from, day(12)),
        cancel_conflicting,
    };
    let delete = || FleetCommand::DeleteBlock {
        vehicle_id: "v".into(),
        block_id: "b".into(),
    };
    let with_v = || Facts {
        vehicle: Some(driven_v()),
        ..Facts::default()
    };
    let mut elsewhere = block_of_v("b", day(5), day(12));
    elsewhere.vehicle_id = "w".into();
    refusals(vec![
        (
            "no such vehicle",
            create(day(5), true),
            Facts::default(),
            "VEHICLE_NOT_FOUND",
        ),
        (
            // What the catalogue answers for any id taken but an employee's
            // or a driver's.
            "block id taken",
            create(day(5), true),
            Facts {
                block: Some(block_of_v("b", day(20), day(21))),
                ..with_v()
            },
            "VEHICLE_ALREADY_EXISTS",
        ),
        (
            "starting in the past",
            create(day(3), true),
            with_v(),
            "DATE_IN_PAST",
        ),
        (
            "future bookings in the way",
            create(day(5), false),
            Facts {
                bookings: vec![booking_of_e("a1", day(6))],
                ..with_v()
            },
            "HAS_FUTURE_BOOKINGS",
        ),
        (
            "no such vehicle to delete from",
            delete(),
            Facts {
                block: Some(block_of_v("b", day(5), day(12))),
                ..Facts::default()
            },
            "VEHICLE_NOT_FOUND",
        ),
        (
            "no such block",
            delete(),
            with_v(),
            "VEHICLE_BLOCK_NOT_FOUND",
        ),
        (
            "block of another vehicle",
            delete(),
            Facts {
                block: Some(elsewhere),
                ..with_v()
            },
            "VEHICLE_BLOCK_NOT_FOUND",
        ),
        (
            "block ended",
            delete(),
            Facts {
                block: Some(block_of_v("b", day(1), day(3))),
                ..with_v()
            },
            "VEHICLE_BLOCK_IS_HISTORY",
        ),
    ]);
}

/// The parts of a write that are set, by name.
fn written(write: &FleetWrite) -> Vec<&'static str> {
    let parts = [
        ("employee", write.employee.is_some()),
        ("driver", write.driver.is_some()),
        ("vehicle", write.vehicle.is_some()),
        ("timelines", !write.timelines.is_empty()),
        ("insert_block", write.insert_block.is_some()),
        ("delete_block", write.delete_block.is_some()),
        ("cancel", !write.cancel.is_empty()),
        ("redrive", !write.redrive.is_empty()),
        ("erase", write.erase.is_some()),
    ];
    parts
        .iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect()
}

/// A command, its facts, the parts of the write set and the events' kinds.
type Success = (
    &'static str,
    FleetCommand,
    Facts,
    &'static [&'static str],
    &'static [EventKind],
);

#[test]
fn each_command_writes_its_changes_with_one_event_each() {
    use EventKind as K;
    let booked = vec![booking_of_e("a1", day(5)), booking_of_e("a2", day(11))];
    let renamed = Employee {
        name: "New".into(),
        ..employee(true)
    };
    let table: Vec<Success> = vec![
        (
            "add an employee",
            FleetCommand::PutEmployee {
                employee: employee(true),
                upsert: false,
            },
            Facts::default(),
            &["employee"],
            &[K::EmployeeCreated],
        ),
        (
            "import a changed employee",
            FleetCommand::PutEmployee {
                employee: renamed.clone(),
                upsert: true,
            },
            Facts {
                employee: Some(employee(true)),
                // Its own address is no conflict.
                taken: holds(Unique::EmployeeEmail("e@x.org".into()), "e"),
                ..Facts::default()
            },
            &["employee"],
            &[K::EmployeeUpdated],
        ),
        (
            "import an unchanged employee",
            FleetCommand::PutEmployee {
                employee: employee(true),
                upsert: true,
            },
            Facts {
                employee: Some(employee(true)),
                ..Facts::default()
            },
            &[],
            &[],
        ),
        (
            "rename an employee",
            FleetCommand::UpdateEmployee {
                id: "e".into(),
                changes: EmployeeChanges {
                    name: Some("New".into()),
                    ..EmployeeChanges::default()
                },
                etag: Some(Etag(1)),
            },
            Facts {
                employee: Some(employee(true)),
                ..Facts::default()
            },
            &["employee"],
            &[K::EmployeeUpdated],
        ),
        (
            "deactivate an employee, cancelling their bookings",
            FleetCommand::SetEmployeeActive {
                id: "e".into(),
                active: false,
                cancel_conflicting: true,
            },
            Facts {
                employee: Some(employee(true)),
                bookings: booked.clone(),
                ..Facts::default()
            },
            &["employee", "cancel"],
            &[
                K::EmployeeUpdated,
                K::AllocationCancelled,
                K::AllocationCancelled,
            ],
        ),
        (
            "reactivate an active employee",
            FleetCommand::SetEmployeeActive {
                id: "e".into(),
                active: true,
                cancel_conflicting: false,
            },
            Facts {
                employee: Some(employee(true)),
                ..Facts::default()
            },
            &[],
            &[],
        ),
        (
            "erase an employee",
            erase(false).command,
            Facts {
                employee: Some(employee(true)),
                ..Facts::default()
            },
            &["employee", "erase"],
            &[K::EmployeeErased],
        ),
        (
            "add a driver",
            FleetCommand::PutDriver {
                driver: driver("d1", true),
                upsert: false,
            },
            Facts::default(),
            &["driver"],
            &[K::DriverCreated],
        ),
        (
            "change a driver's licence",
            FleetCommand::UpdateDriver {
                id: "d1".into(),
                changes: DriverChanges {
                    license_number: Some("L-new".into()),
                    ..DriverChanges::default()
                },
                etag: None,
            },
            Facts {
                driver: Some(driver("d1", true)),
                ..Facts::default()
            },
            &["driver"],
            &[K::DriverUpdated],
        ),
        (
            "deactivate a driver, cancelling their bookings",
            FleetCommand::DeactivateDriver {
                id: "d1".into(),
                cancel_conflicting: true,
            },
            Facts {
                driver: Some(driver("d1", true)),
                bookings: booked.clone(),
                driver_timelines: vec![("v".into(), driven_v().1)],
                ..Facts::default()
            },
            &["driver", "timelines", "cancel"],
            &[
                K::DriverUpdated,
                K::AllocationCancelled,
                K::AllocationCancelled,
            ],
        ),
        (
            "add a vehicle",
            FleetCommand::PutVehicle {
                vehicle: vehicle("v"),
                driver_id: "d1".into(),
                upsert: false,
            },
            Facts {
                driver: Some(driver("d1", true)),
                ..Facts::default()
            },
            &["vehicle", "timelines"],
            &[K::VehicleCreated],
        ),
        (
            "import a vehicle now driven by another, redriving its bookings",
            FleetCommand::PutVehicle {
                vehicle: vehicle("v"),
                driver_id: "d2".into(),
                upsert: true,
            },
            Facts {
                vehicle: Some(driven_v()),
                driver: Some(driver("d2", true)),
                bookings: booked.clone(),
                ..Facts::default()
            },
            &["timelines", "redrive"],
            &[
                K::VehicleUpdated,
                K::AllocationUpdated,
                K::AllocationUpdated,
            ],
        ),
        (
            "change a vehicle's registration",
            FleetCommand::UpdateVehicle {
                id: "v".into(),
                changes: VehicleChanges {
                    registration: Some("R-new".into()),
                    ..VehicleChanges::default()
                },
                etag: Some(Etag(1)),
            },
            Facts {
                vehicle: Some(driven_v()),
                ..Facts::default()
            },
            &["vehicle"],
            &[K::VehicleUpdated],
        ),
        (
            "retire a vehicle, cancelling its bookings",
            FleetCommand::SetVehicleRetired {
                id: "v".into(),
                retired: true,
                cancel_conflicting: true,
            },
            Facts {
                vehicle: Some(driven_v()),
                bookings: booked.clone(),
                ..Facts::default()
            },
            &["vehicle", "timelines", "cancel"],
            &[
                K::VehicleUpdated,
                K::AllocationCancelled,
                K::AllocationCancelled,
            ],
        ),
        (
            "assign another driver, redriving the bookings from then",
            FleetCommand::AssignDriver {
                vehicle_id: "v".into(),
                driver_id: "d2".into(),
                effective_date: day(10),
            },
            Facts {
                vehicle: Some(driven_v()),
                driver: Some(driver("d2", true)),
                bookings: vec![booking_of_e("a2", day(11))],
                ..Facts::default()
            },
            &["vehicle", "timelines", "redrive"],
            &[K::VehicleUpdated, K::AllocationUpdated],
        ),
        (
            "block a vehicle, cancelling its bookings",
            FleetCommand::CreateBlock {
                block: block_of_v("b", day(5), day(12)),
                cancel_conflicting: true,
            },
            Facts {
                vehicle: Some(driven_v()),
                bookings: booked.clone(),
                ..Facts::default()
            },
            &["insert_block", "cancel"],
            &[
                K::VehicleBlockCreated,
                K::AllocationCancelled,
                K::AllocationCancelled,
            ],
        ),
        (
            "delete a block",
            FleetCommand::DeleteBlock {
                vehicle_id: "v".into(),
                block_id: "b".into(),
            },
            Facts {
                vehicle: Some(driven_v()),
                block: Some(block_of_v("b", day(1), day(12))),
                ..Facts::default()
            },
            &["delete_block"],
            &[K::VehicleBlockDeleted],
        ),
    ];
    for (name, command, facts, parts, kinds) in table {
        let (write, outcome) =
            decide(&request(command), facts).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        assert_eq!(written(&write), parts, "{name}");
        let events: Vec<EventKind> = write.events.iter().map(|e| e.kind).collect();
        assert_eq!(events, kinds, "{name}");
        assert_eq!(outcome.changed, !parts.is_empty(), "{name}");
        assert_eq!(outcome.cancelled, write.cancel, "{name}");
        assert_eq!(outcome.redriven, write.redrive, "{name}");
        for event in &write.events {
            assert_eq!((event.time, event.request_id.as_str()), (now(), "req-1"));
        }
    }
}

#[test]
fn writes_carry_the_new_versions_timelines_and_drivers() {
    // A new driver from the 10th: the old one's period ends there, and the
    // booking of the 11th is carried by the new one, in its next version.
    let (write, outcome) = decide(
        &request(FleetCommand::AssignDriver {
            vehicle_id: "v".into(),
            driver_id: "d2".into(),
            effective_date: day(10),
        }),
        Facts {
            vehicle: Some(driven_v()),
            driver: Some(driver("d2", true)),
            bookings: vec![booking_of_e("a2", day(11))],
            ..Facts::default()
        },
    )
    .unwrap();
    assert_eq!(
        write.timelines,
        vec![(
            "v".to_owned(),
            vec![
                period("d1", day(1), Some(day(10))),
                period("d2", day(10), None)
            ]
        )]
    );
    let (before, after) = &write.redrive[0];
    assert_eq!(
        (before.driver_id.as_str(), after.driver_id.as_str()),
        ("d1", "d2")
    );
    assert_eq!((after.version, after.update_time), (2, now()));
    let vehicle = write.vehicle.unwrap();
    assert_eq!(vehicle.version, 2);
    assert_eq!(outcome.timelines_changed, vec!["v".to_owned()]);
    assert_eq!(outcome.vehicles_touched, vec!["v".to_owned()]);

    // Retiring ends the vehicle's timeline today, so its driver is free.
    let (write, _) = decide(
        &request(FleetCommand::SetVehicleRetired {
            id: "v".into(),
            retired: true,
            cancel_conflicting: false,
        }),
        Facts {
            vehicle: Some(driven_v()),
            ..Facts::default()
        },
    )
    .unwrap();
    assert_eq!(
        write.timelines,
        vec![("v".to_owned(), vec![period("d1", day(1), Some(day(4)))])]
    );
    assert!(write.vehicle.unwrap().retired);
}
