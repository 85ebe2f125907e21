//! Fake employees, vehicles and drivers.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use fake::Fake;
use fake::faker::name::en::{FirstName, LastName, Name};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;

use crate::domain::{Driver, Employee, Vehicle};

const EMAIL_DOMAIN: &str = "example.com";

const DEPARTMENTS: &[&str] = &[
    "Customer Support",
    "Engineering",
    "Facilities",
    "Finance",
    "Human Resources",
    "Legal",
    "Marketing",
    "Operations",
    "Procurement",
    "Sales",
];

/// A company fleet: make, model and passenger seats (driver excluded).
const MODELS: &[(&str, &str, u32)] = &[
    ("Toyota", "Corolla", 4),
    ("Toyota", "Camry", 4),
    ("Toyota", "RAV4", 4),
    ("Toyota", "HiAce", 11),
    ("Ford", "Focus", 4),
    ("Ford", "Transit", 8),
    ("Ford", "Ranger", 4),
    ("Volkswagen", "Golf", 4),
    ("Volkswagen", "Passat", 4),
    ("Volkswagen", "Transporter", 8),
    ("Skoda", "Octavia", 4),
    ("Hyundai", "Tucson", 4),
    ("Kia", "Sportage", 4),
    ("Kia", "Carnival", 7),
    ("Nissan", "Leaf", 4),
    ("Tesla", "Model 3", 4),
    ("Tesla", "Model Y", 4),
    ("Mercedes-Benz", "Vito", 7),
    ("Renault", "Trafic", 8),
    ("Peugeot", "308", 4),
    ("Volvo", "XC60", 4),
];

/// Letters used on plates (no I, O, Q or Z, which read as digits).
const PLATE_LETTERS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXY";

/// The id of the `n`th employee (from 1).
pub fn employee_id(n: usize) -> String {
    format!("emp-{n:05}")
}

/// The id of the `n`th vehicle (from 1).
pub fn vehicle_id(n: usize) -> String {
    format!("veh-{n:04}")
}

/// The id of the driver of the `n`th vehicle (from 1).
pub fn driver_id(n: usize) -> String {
    format!("drv-{n:04}")
}

/// `count` employees with unique emails, made at `now`.
pub fn employees(rng: &mut ChaCha8Rng, count: usize, now: DateTime<Utc>) -> Vec<Employee> {
    let mut emails = HashSet::with_capacity(count);
    (1..=count)
        .map(|n| {
            let first: String = FirstName().fake_with_rng(rng);
            let last: String = LastName().fake_with_rng(rng);
            let local = format!("{}.{}", email_part(&first), email_part(&last));
            let email = (1..)
                .map(|i| match i {
                    1 => format!("{local}@{EMAIL_DOMAIN}"),
                    i => format!("{local}{i}@{EMAIL_DOMAIN}"),
                })
                .find(|email| !emails.contains(email))
                .expect("some suffix is free");
            emails.insert(email.clone());
            Employee {
                id: employee_id(n),
                name: format!("{first} {last}"),
                email,
                department: DEPARTMENTS[rng.random_range(0..DEPARTMENTS.len())].to_owned(),
                active: true,
                create_time: now,
                update_time: now,
                version: 1,
            }
        })
        .collect()
}

/// `count` vehicles, each with its own driver, with unique plates and
/// licence numbers, made at `now`.
pub fn vehicles(rng: &mut ChaCha8Rng, count: usize, now: DateTime<Utc>) -> Vec<Vehicle> {
    let mut plates = HashSet::with_capacity(count);
    let mut licences = HashSet::with_capacity(count);
    (1..=count)
        .map(|n| {
            let (make, model, seats) = MODELS[rng.random_range(0..MODELS.len())];
            let registration = unique(&mut plates, || plate(rng));
            let license_number = unique(&mut licences, || {
                format!("DL{:08}", rng.random_range(0..100_000_000u32))
            });
            Vehicle {
                id: vehicle_id(n),
                registration,
                make: make.to_owned(),
                model: model.to_owned(),
                seats,
                retired: false,
                create_time: now,
                update_time: now,
                version: 1,
                driver: Some(Driver {
                    id: driver_id(n),
                    name: Name().fake_with_rng(rng),
                    phone: phone(rng),
                    license_number,
                    active: true,
                    create_time: now,
                    update_time: now,
                    version: 1,
                }),
            }
        })
        .collect()
}

/// A plate in the British style, e.g. `KD19 XRT`.
fn plate(rng: &mut ChaCha8Rng) -> String {
    let mut letter = || char::from(PLATE_LETTERS[rng.random_range(0..PLATE_LETTERS.len())]);
    let (a, b) = (letter(), letter());
    let (c, d, e) = (letter(), letter(), letter());
    format!("{a}{b}{:02} {c}{d}{e}", rng.random_range(10..=25u32))
}

/// A British mobile number from Ofcom's range for drama, `07700 900000` to
/// `07700 900999`: one locale with the plates, and no real person's number
/// (as `example.com` for the emails).
fn phone(rng: &mut ChaCha8Rng) -> String {
    format!("07700 900{:03}", rng.random_range(0..1000u32))
}

fn unique(seen: &mut HashSet<String>, mut make: impl FnMut() -> String) -> String {
    loop {
        let candidate = make();
        if seen.insert(candidate.clone()) {
            return candidate;
        }
    }
}

fn email_part(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}
