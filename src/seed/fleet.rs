//! Fake employees, vehicles and drivers.

use std::collections::HashSet;

use fake::Fake;
use fake::faker::name::en::{FirstName, LastName, Name};
use fake::faker::phone_number::en::CellNumber;
use rand::RngExt;
use rand::rngs::ChaCha8Rng;

use crate::domain::{Driver, Employee, Vehicle};

const EMAIL_DOMAIN: &str = "example.com";

/// The create and update time of generated entities: the epoch, as for
/// entities stored before they had times, so that generation stays a pure
/// function of the plan.
const SEEDED_AT: chrono::DateTime<chrono::Utc> = chrono::DateTime::UNIX_EPOCH;

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

/// `count` employees with unique emails.
pub fn employees(rng: &mut ChaCha8Rng, count: usize) -> Vec<Employee> {
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
                create_time: SEEDED_AT,
                update_time: SEEDED_AT,
                version: 1,
            }
        })
        .collect()
}

/// `count` vehicles, each with its own driver, with unique plates and
/// licence numbers.
pub fn vehicles(rng: &mut ChaCha8Rng, count: usize) -> Vec<Vehicle> {
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
                create_time: SEEDED_AT,
                update_time: SEEDED_AT,
                version: 1,
                driver: Some(Driver {
                    id: driver_id(n),
                    name: Name().fake_with_rng(rng),
                    phone: CellNumber().fake_with_rng(rng),
                    license_number,
                    active: true,
                    create_time: SEEDED_AT,
                    update_time: SEEDED_AT,
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
