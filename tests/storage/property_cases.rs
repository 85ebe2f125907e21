//! Bookable vehicles and drivers on a date, on every backend, held to the
//! domain's one definition of each ([`fleet::bookable`],
//! [`fleet::driver_on`]): random fleets built through the store's own fleet
//! commands (made on days around today), with bookings seeded as stored data
//! has them, the ones the fleet rules would refuse today included (a
//! vehicle retired, blocked or left without a driver from midnight, after
//! it was booked for that day). Every day is read back through the lists,
//! in small pages, and the lookups, and compared with what the domain
//! computes from the same facts.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{Days, Duration, NaiveDate};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use vehicle_allocation::domain::admin::new_block;
use vehicle_allocation::domain::fleet::{
    self, Assignment, assign_from, driver_on, end_timeline, timeline_start,
};
use vehicle_allocation::domain::{
    Allocation, FleetCommand, FleetRequest, PageRequest, Vehicle, VehicleBlock,
};
use vehicle_allocation::storage::{Store, StoreError};

use crate::fixture::Fixture;

type Shared = Arc<dyn Store>;

/// Random fleets, one per seed.
const SEEDS: u64 = 24;
/// Days read back: today and the ones after it.
const DAYS: i64 = 8;
/// Fleet commands are made on days from this many before today on.
const PAST: i64 = 3;
/// Small, so that every list spans pages.
const PAGE: usize = 4;

/// A vehicle as the case built it: its retired flag and driver timeline.
struct Modelled {
    vehicle: Vehicle,
    timeline: Vec<Assignment>,
}

/// The facts the case wrote, as the domain sees them.
#[derive(Default)]
struct Model {
    vehicles: BTreeMap<String, Modelled>,
    drivers: Vec<String>,
    blocks: Vec<VehicleBlock>,
    bookings: Vec<Allocation>,
}

impl Model {
    /// The domain's verdict on every vehicle on `date`: who drives it, and
    /// whether it can be booked.
    fn on(&self, date: NaiveDate) -> Vec<(String, Option<String>, bool)> {
        self.vehicles
            .iter()
            .map(|(id, m)| {
                let block = self
                    .blocks
                    .iter()
                    .find(|b| b.vehicle_id == *id && b.covers(date));
                let booked = self
                    .bookings
                    .iter()
                    .any(|b| b.vehicle_id == *id && b.date == date);
                let bookable = fleet::bookable(&m.vehicle, &m.timeline, block, booked, date);
                let driver = driver_on(&m.timeline, date).map(str::to_owned);
                (id.clone(), driver, bookable.is_ok())
            })
            .collect()
    }
}

pub async fn random_fleets_list_and_count_what_the_domain_calls_bookable(
    store: &Shared,
    fx: &Fixture,
) {
    for seed in 0..SEEDS {
        store.reset().await.expect("reset");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let model = build(store, fx, &mut rng, seed).await;
        for k in 0..DAYS {
            check_day(store, &model, fx.day(k), &format!("seed {seed}, today+{k}")).await;
        }
    }
}

/// A request made `day` days from today (negative: before).
fn made_on(fx: &Fixture, day: i64, command: FleetCommand) -> FleetRequest {
    let now = fx.now + Duration::days(day);
    FleetRequest {
        command,
        now,
        window: fx.policy.window(now),
        origin: fx.origin(),
    }
}

fn plus(date: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        date + Days::new(days as u64)
    } else {
        date - Days::new(days.unsigned_abs())
    }
}

/// Writes a random fleet through `store` and returns what it holds.
async fn build(store: &Shared, fx: &Fixture, rng: &mut ChaCha8Rng, seed: u64) -> Model {
    let mut model = Model::default();
    let vehicles = rng.random_range(6..=15usize);
    let spare = rng.random_range(2..=4usize);

    let employees: Vec<_> = (0..16)
        .map(|i| fx.new_employee(&format!("e{i:02}"), &format!("e{i:02}@example.org")))
        .collect();
    let mut fleet = Vec::new();
    for i in 0..vehicles {
        let driver = fx.new_driver(&format!("d{i:02}"), &format!("L{seed}-{i:02}"));
        let mut vehicle = fx.new_vehicle(&format!("v{i:02}"), &format!("R{seed}-{i:02}"));
        model.drivers.push(driver.id.clone());
        model.vehicles.insert(
            vehicle.id.clone(),
            Modelled {
                vehicle: vehicle.clone(),
                timeline: vec![Assignment {
                    driver_id: driver.id.clone(),
                    start: timeline_start(),
                    end: None,
                }],
            },
        );
        vehicle.driver = Some(driver);
        fleet.push(vehicle);
    }
    store
        .insert_fleet(employees.clone(), fleet)
        .await
        .expect("seed the fleet");
    let mut spares = Vec::new();
    for i in vehicles..vehicles + spare {
        let driver = fx.new_driver(&format!("d{i:02}"), &format!("L{seed}-{i:02}"));
        model.drivers.push(driver.id.clone());
        spares.push(made_on(
            fx,
            -PAST,
            FleetCommand::PutDriver {
                driver,
                upsert: false,
            },
        ));
    }
    store.apply_fleet(spares).await.expect("add spare drivers");

    // In some fleets a vehicle is added and retired on one day, then put
    // back in service: it has no timeline at all.
    if rng.random_bool(0.5) {
        let day = rng.random_range(-PAST..DAYS - 1);
        let id = "v99".to_owned();
        let steps = [
            (
                day,
                FleetCommand::PutVehicle {
                    vehicle: fx.new_vehicle(&id, &format!("R{seed}-99")),
                    driver_id: model.drivers[vehicles].clone(),
                    upsert: false,
                },
            ),
            (
                day,
                FleetCommand::SetVehicleRetired {
                    id: id.clone(),
                    retired: true,
                    cancel_conflicting: true,
                },
            ),
            (
                day + 1,
                FleetCommand::SetVehicleRetired {
                    id,
                    retired: false,
                    cancel_conflicting: true,
                },
            ),
        ];
        for (day, command) in steps {
            store
                .apply_fleet(vec![made_on(fx, day, command.clone())])
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {command:?} failed: {e}"));
            follow(&mut model, &command, fx.day(day));
        }
    }

    // Fleet commands on days in order, from before today to the last day
    // read back; each is decided by the store, and the model follows what
    // it accepted.
    let mut days: Vec<i64> = (0..vehicles * 2)
        .map(|_| rng.random_range(-PAST..DAYS))
        .collect();
    days.sort_unstable();
    let ids: Vec<String> = model.vehicles.keys().cloned().collect();
    for (n, day) in days.into_iter().enumerate() {
        let today = fx.day(day);
        let vehicle_id = ids[rng.random_range(0..ids.len())].clone();
        let command = match rng.random_range(0..10) {
            0..4 => FleetCommand::AssignDriver {
                vehicle_id: vehicle_id.clone(),
                driver_id: model.drivers[rng.random_range(0..model.drivers.len())].clone(),
                effective_date: plus(today, rng.random_range(0..3)),
            },
            4..6 => FleetCommand::SetVehicleRetired {
                id: vehicle_id.clone(),
                retired: true,
                cancel_conflicting: true,
            },
            6 => FleetCommand::SetVehicleRetired {
                id: vehicle_id.clone(),
                retired: false,
                cancel_conflicting: true,
            },
            7 if !model.blocks.is_empty() => {
                let block = &model.blocks[rng.random_range(0..model.blocks.len())];
                FleetCommand::DeleteBlock {
                    vehicle_id: block.vehicle_id.clone(),
                    block_id: block.id.clone(),
                }
            }
            _ => {
                let start = plus(today, rng.random_range(0..4));
                let end = plus(start, rng.random_range(0..3));
                FleetCommand::CreateBlock {
                    block: new_block(
                        format!("b{n:02}"),
                        vehicle_id.clone(),
                        (start, end),
                        "servicing".into(),
                        fx.now,
                    ),
                    cancel_conflicting: true,
                }
            }
        };
        match store
            .apply_fleet(vec![made_on(fx, day, command.clone())])
            .await
        {
            Ok(_) => follow(&mut model, &command, today),
            Err(StoreError::Rejected(_)) => {}
            Err(other) => panic!("seed {seed}: {command:?} failed: {other}"),
        }
    }

    // Bookings from yesterday on, as stored data may hold them: on any
    // vehicle, whatever its state that day, each with its own employee and
    // a driver of its own that day.
    for k in -1..DAYS {
        let date = fx.day(k);
        let mut drivers_used = HashSet::new();
        let mut employee = 0;
        for (id, m) in &model.vehicles {
            if !rng.random_bool(0.45) {
                continue;
            }
            let driver = driver_on(&m.timeline, date)
                .filter(|d| !drivers_used.contains(*d))
                .map(str::to_owned)
                .or_else(|| {
                    let free: Vec<_> = model
                        .drivers
                        .iter()
                        .filter(|d| !drivers_used.contains(d.as_str()))
                        .collect();
                    (!free.is_empty()).then(|| free[rng.random_range(0..free.len())].clone())
                });
            let Some(driver) = driver else { continue };
            drivers_used.insert(driver.clone());
            model.bookings.push(Allocation {
                id: format!("a{seed}-{k}-{id}"),
                employee_id: employees[employee].id.clone(),
                vehicle_id: id.clone(),
                driver_id: driver,
                date,
                purpose: "trip".into(),
                create_time: fx.now,
                update_time: fx.now,
                version: 1,
            });
            employee += 1;
        }
    }
    store
        .insert_allocations(model.bookings.clone())
        .await
        .expect("seed the bookings");
    model
}

/// What an accepted command did to the facts, by the domain's functions.
fn follow(model: &mut Model, command: &FleetCommand, today: NaiveDate) {
    match command {
        FleetCommand::AssignDriver {
            vehicle_id,
            driver_id,
            effective_date,
        } => {
            let m = model.vehicles.get_mut(vehicle_id).expect("a vehicle");
            m.timeline = assign_from(&m.timeline, driver_id, *effective_date);
        }
        FleetCommand::SetVehicleRetired { id, retired, .. } => {
            let m = model.vehicles.get_mut(id).expect("a vehicle");
            if *retired {
                m.timeline = end_timeline(&m.timeline, today);
            }
            m.vehicle.retired = *retired;
        }
        FleetCommand::PutVehicle {
            vehicle, driver_id, ..
        } => {
            let timeline = assign_from(&[], driver_id, today);
            let vehicle = vehicle.clone();
            model
                .vehicles
                .insert(vehicle.id.clone(), Modelled { vehicle, timeline });
        }
        FleetCommand::CreateBlock { block, .. } => model.blocks.push(block.clone()),
        FleetCommand::DeleteBlock { block_id, .. } => model.blocks.retain(|b| b.id != *block_id),
        other => unreachable!("not made by the case: {other:?}"),
    }
}

/// Reads `date` back through every list and lookup that restates the
/// domain's definitions, and compares.
async fn check_day(store: &Shared, model: &Model, date: NaiveDate, case: &str) {
    let verdicts = model.on(date);
    let bookable: Vec<(String, Option<String>)> = verdicts
        .iter()
        .filter(|(_, _, bookable)| *bookable)
        .map(|(id, driver, _)| (id.clone(), driver.clone()))
        .collect();
    let (got, totals) = walk(|after| store.list_available_vehicles(date, after)).await;
    assert_eq!(
        got, bookable,
        "{case}: available vehicles and their drivers"
    );
    assert!(
        totals.iter().all(|t| *t == bookable.len() as u64),
        "{case}: available total_size {totals:?}, expected {} (the rows: {bookable:?})",
        bookable.len()
    );

    for show_retired in [true, false] {
        let expected: Vec<(String, Option<String>)> = verdicts
            .iter()
            .filter(|(id, _, _)| show_retired || !model.vehicles[id].vehicle.retired)
            .map(|(id, driver, _)| (id.clone(), driver.clone()))
            .collect();
        let (got, totals) = walk(|after| store.list_vehicles(show_retired, date, after)).await;
        assert_eq!(
            got, expected,
            "{case}: vehicles (retired too: {show_retired}) and their drivers"
        );
        assert!(
            totals.iter().all(|t| *t == expected.len() as u64),
            "{case}: vehicles total_size {totals:?}, expected {}",
            expected.len()
        );
    }

    for (id, driver, _) in &verdicts {
        let vehicle = store.get_vehicle(id, date).await.expect("get the vehicle");
        assert_eq!(
            vehicle.driver.map(|d| d.id),
            *driver,
            "{case}: the driver of {id}"
        );
        assert_eq!(
            vehicle.retired, model.vehicles[id].vehicle.retired,
            "{case}: {id} retired"
        );
    }
}

/// Every page of a vehicle list: ids with drivers, and each page's total.
async fn walk<F, Fut>(mut page: F) -> (Vec<(String, Option<String>)>, Vec<u64>)
where
    F: FnMut(PageRequest<String>) -> Fut,
    Fut: std::future::Future<
            Output = vehicle_allocation::storage::StoreResult<
                vehicle_allocation::domain::Page<Vehicle>,
            >,
        >,
{
    let (mut rows, mut totals) = (Vec::new(), Vec::new());
    let mut after = None;
    loop {
        let got = page(PageRequest {
            size: PAGE,
            after: after.clone(),
        })
        .await
        .expect("list a page");
        totals.push(got.total_size);
        after = got.items.last().map(|v| v.id.clone());
        rows.extend(
            got.items
                .into_iter()
                .map(|v| (v.id, v.driver.map(|d| d.id))),
        );
        if !got.has_more {
            return (rows, totals);
        }
    }
}
