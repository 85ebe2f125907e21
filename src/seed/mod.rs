//! Realistic fake data for demos, tests and benchmarks.
//!
//! The same seed gives the same data on the same day: names, ids, plates,
//! bookings and their timestamps all come from one seeded generator, and the
//! dates are laid out around "today" so that the demo always has bookings
//! ahead as well as history behind. The fleet is made at the seed's clock.

mod bookings;
pub mod fleet;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use crate::domain::{Allocation, BookingPolicy, Employee, Vehicle};
use crate::progress::DelayedProgress;
use crate::storage::{Store, StoreError};

pub use bookings::BookingGenerator;

/// Bookings written per store call: large enough to amortise a commit,
/// small enough to keep memory flat and the progress bar moving.
const BATCH: usize = 10_000;

/// How much data to make, and from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedPlan {
    pub employees: usize,
    pub vehicles: usize,
    pub allocations: usize,
    pub seed: u64,
}

impl Default for SeedPlan {
    /// The demo data set.
    fn default() -> Self {
        Self {
            employees: 1000,
            vehicles: 300,
            allocations: 5000,
            seed: 42,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub employees: usize,
    pub vehicles: usize,
    pub allocations: usize,
}

/// Why seeding stopped.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the store already holds data; pass --reset to delete it and seed again")]
    NotEmpty,
    #[error("cannot seed: {0}")]
    Plan(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The employees and vehicles of `plan`, made at `now` (the seed's clock):
/// their times and their events' times are those of the seed.
pub fn generate_fleet(plan: &SeedPlan, now: DateTime<Utc>) -> (Vec<Employee>, Vec<Vehicle>) {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let employees = fleet::employees(&mut rng, plan.employees, now);
    let vehicles = fleet::vehicles(&mut rng, plan.vehicles, now);
    (employees, vehicles)
}

/// The bookings of `plan` for a fleet made by [`generate_fleet`]. They come
/// from a stream of their own, so the fleet does not depend on how many
/// bookings are asked for.
pub fn booking_generator(
    plan: &SeedPlan,
    employees: &[Employee],
    vehicles: &[Vehicle],
    policy: &BookingPolicy,
    now: DateTime<Utc>,
) -> Result<BookingGenerator, SeedError> {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    rng.set_stream(1);
    BookingGenerator::new(
        rng,
        plan.allocations,
        employees,
        vehicles,
        policy.window(now),
    )
    .map_err(SeedError::Plan)
}

/// Fills `store` with the data of `plan`.
///
/// Refuses a store that holds data unless `reset`, which deletes it first.
/// Shows a progress bar on a terminal when it takes more than a moment.
pub async fn seed(
    store: &dyn Store,
    plan: &SeedPlan,
    policy: &BookingPolicy,
    now: DateTime<Utc>,
    reset: bool,
) -> Result<SeedReport, SeedError> {
    if reset {
        store.reset().await?;
    } else if !store.is_empty().await? {
        return Err(SeedError::NotEmpty);
    }
    let (employees, vehicles) = generate_fleet(plan, now);
    let mut bookings = booking_generator(plan, &employees, &vehicles, policy, now)?;
    let report = SeedReport {
        employees: employees.len(),
        vehicles: vehicles.len(),
        allocations: bookings.remaining(),
    };
    store.insert_fleet(employees, vehicles).await?;

    let progress = DelayedProgress::new("seeding bookings", report.allocations as u64);
    // Generate the next batch while the store writes the last one.
    let mut next = bookings.next_batch(BATCH);
    while let Some(batch) = next {
        let written = batch.len() as u64;
        let write = store.insert_allocations(batch);
        let generate = async { bookings.next_batch(BATCH) };
        let (written_ok, following) = tokio::join!(write, generate);
        written_ok?;
        progress.advance(written);
        next = following;
    }
    progress.finish();
    Ok(report)
}

/// Every booking of `plan`, in memory; for tests and comparisons between
/// backends.
pub fn all_bookings(
    plan: &SeedPlan,
    policy: &BookingPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<Allocation>, SeedError> {
    let (employees, vehicles) = generate_fleet(plan, now);
    let mut bookings = booking_generator(plan, &employees, &vehicles, policy, now)?;
    let mut all = Vec::with_capacity(bookings.remaining());
    while let Some(batch) = bookings.next_batch(BATCH) {
        all.extend(batch);
    }
    Ok(all)
}

#[cfg(test)]
mod tests;
