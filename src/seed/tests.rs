use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn plan(employees: usize, vehicles: usize, allocations: usize) -> SeedPlan {
    SeedPlan {
        employees,
        vehicles,
        allocations,
        seed: 7,
    }
}

#[test]
fn the_same_seed_gives_the_same_data() {
    let plan = plan(50, 20, 2000);
    let policy = BookingPolicy::default();
    assert_eq!(generate_fleet(&plan, now()), generate_fleet(&plan, now()));
    assert_eq!(
        all_bookings(&plan, &policy, now()).unwrap(),
        all_bookings(&plan, &policy, now()).unwrap()
    );
    let other = SeedPlan { seed: 8, ..plan };
    assert_ne!(generate_fleet(&plan, now()), generate_fleet(&other, now()));
    // Only the date matters, not the time of day.
    let later = now() + chrono::Duration::hours(9);
    assert_eq!(
        all_bookings(&plan, &policy, now()).unwrap(),
        all_bookings(&plan, &policy, later).unwrap()
    );
}

#[test]
fn the_fleet_does_not_depend_on_the_number_of_bookings() {
    assert_eq!(
        generate_fleet(&plan(30, 10, 0), now()),
        generate_fleet(&plan(30, 10, 900), now())
    );
}

#[test]
fn fleet_values_are_unique_where_they_must_be() {
    let (employees, vehicles) = generate_fleet(&plan(2000, 1000, 0), now());
    let distinct = |values: Vec<&str>| values.iter().collect::<HashSet<_>>().len();
    assert_eq!(
        distinct(employees.iter().map(|e| e.email.as_str()).collect()),
        2000
    );
    assert_eq!(
        distinct(employees.iter().map(|e| e.id.as_str()).collect()),
        2000
    );
    assert_eq!(
        distinct(vehicles.iter().map(|v| v.registration.as_str()).collect()),
        1000
    );
    assert_eq!(
        distinct(
            vehicles
                .iter()
                .map(|v| v.driver.as_ref().unwrap().license_number.as_str())
                .collect()
        ),
        1000
    );
    assert_eq!(
        distinct(
            vehicles
                .iter()
                .map(|v| v.driver.as_ref().unwrap().id.as_str())
                .collect()
        ),
        1000
    );
    assert!(employees.iter().all(|e| e.email.ends_with("@example.com")));
    assert!(
        employees
            .iter()
            .all(|e| !e.name.is_empty() && !e.department.is_empty())
    );
}

#[test]
fn bookings_obey_every_rule_and_span_past_and_future() {
    let plan = plan(40, 15, 3000);
    let policy = BookingPolicy::default();
    let (employees, vehicles) = generate_fleet(&plan, now());
    let bookings = all_bookings(&plan, &policy, now()).unwrap();
    assert_eq!(bookings.len(), 3000);

    let window = policy.window(now());
    let mut vehicle_days = HashSet::new();
    let mut employee_days = HashSet::new();
    let drivers: std::collections::HashMap<_, _> = vehicles
        .iter()
        .map(|v| (v.id.as_str(), v.driver.as_ref().unwrap().id.as_str()))
        .collect();
    let employee_ids: HashSet<_> = employees.iter().map(|e| e.id.as_str()).collect();
    for b in &bookings {
        assert!(
            vehicle_days.insert((b.vehicle_id.clone(), b.date)),
            "vehicle twice: {b:?}"
        );
        assert!(
            employee_days.insert((b.employee_id.clone(), b.date)),
            "employee twice: {b:?}"
        );
        assert_eq!(drivers[b.vehicle_id.as_str()], b.driver_id);
        assert!(employee_ids.contains(b.employee_id.as_str()));
        assert!(b.date <= window.last, "beyond the window: {b:?}");
        assert!(b.create_time <= now() && b.create_time == b.update_time);
        assert!(b.purpose.chars().count() <= crate::domain::PURPOSE_MAX_CHARS);
        assert_eq!(b.version, 1);
    }
    let ids: HashSet<_> = bookings.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids.len(), bookings.len());
    let future = bookings.iter().filter(|b| b.date >= window.today).count();
    assert!(
        future > 0 && future < bookings.len() / 2,
        "{future} future bookings"
    );
}

#[test]
fn a_booking_needs_someone_to_book_and_something_to_book() {
    let err = all_bookings(&plan(0, 5, 10), &BookingPolicy::default(), now()).unwrap_err();
    assert!(matches!(err, SeedError::Plan(_)), "{err}");
    assert!(
        all_bookings(&plan(0, 0, 0), &BookingPolicy::default(), now())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_tight_fleet_spreads_bookings_over_more_days() {
    let plan = plan(5, 5, 10_000);
    let bookings = all_bookings(&plan, &BookingPolicy::default(), now()).unwrap();
    let per_day = bookings
        .iter()
        .fold(std::collections::HashMap::new(), |mut m, b| {
            *m.entry(b.date).or_insert(0) += 1;
            m
        });
    assert!(per_day.values().all(|&n| n <= 4), "at most 80% of 5 a day");
}

#[test]
fn the_fleet_is_made_at_the_seeds_clock() {
    let clock = crate::clock::ManualClock::new(now());
    let made = crate::clock::Clock::now(&clock);
    let (employees, vehicles) = generate_fleet(&plan(40, 15, 0), made);
    assert!(
        employees
            .iter()
            .all(|e| e.create_time == made && e.update_time == made)
    );
    for v in &vehicles {
        let driver = v.driver.as_ref().unwrap();
        assert!(v.create_time == made && v.update_time == made, "{v:?}");
        assert!(
            driver.create_time == made && driver.update_time == made,
            "{driver:?}"
        );
    }
}

#[test]
fn plates_and_phone_numbers_are_british() {
    // A plate as `KD19 XRT`; a mobile number as `07700 900123`.
    let plate = |p: &str| {
        let b = p.as_bytes();
        b.len() == 8
            && b[..2].iter().all(u8::is_ascii_uppercase)
            && b[2..4].iter().all(u8::is_ascii_digit)
            && b[4] == b' '
            && b[5..].iter().all(u8::is_ascii_uppercase)
    };
    let phone = |p: &str| {
        let b = p.as_bytes();
        b.len() == 12
            && p.starts_with("07")
            && b[5] == b' '
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 5 || c.is_ascii_digit())
    };
    let (_, vehicles) = generate_fleet(&plan(0, 500, 0), now());
    for v in &vehicles {
        assert!(plate(&v.registration), "{}", v.registration);
        let number = &v.driver.as_ref().unwrap().phone;
        assert!(phone(number), "{number}");
    }
}
