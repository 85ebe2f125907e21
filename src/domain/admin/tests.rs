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
