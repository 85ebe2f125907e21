//! Fake bookings that obey every rule.
//!
//! Bookings are spread evenly over a run of consecutive days that ends
//! `FUTURE_DAYS` after today, so most are history and some lie ahead. Each day
//! draws distinct vehicles and distinct employees, so no vehicle is booked
//! twice on a date and no employee holds two bookings on one. The run is made
//! long enough that no day is filled past `MAX_DAY_FILL` of the fleet.

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use fake::Fake;
use fake::faker::address::en::CityName;
use fake::faker::company::en::CompanyName;
use rand::RngExt;
use rand::rngs::ChaCha8Rng;

use crate::domain::{Allocation, BookingWindow, Employee, Vehicle};

/// Days after today that get bookings (capped by the booking window).
const FUTURE_DAYS: u64 = 60;
/// The shortest run of days, so that even small data sets span a year.
const MIN_DAYS: u64 = 365;
/// The largest share of the fleet booked on any one day.
const MAX_DAY_FILL: f64 = 0.8;

const PURPOSES: &[&str] = &[
    "Client meeting at {company}",
    "Site inspection in {city}",
    "Equipment delivery to {company}",
    "Training day in {city}",
    "Airport transfer",
    "Customer demo for {company}",
    "Trade fair in {city}",
    "Team offsite in {city}",
    "Supplier audit at {company}",
    "",
];

/// Produces the bookings day by day, oldest first.
pub struct BookingGenerator {
    rng: ChaCha8Rng,
    yesterday: NaiveDate,
    employees: Vec<String>,
    /// Vehicle ids with their drivers.
    vehicles: Vec<(String, String)>,
    first_day: NaiveDate,
    days: u64,
    next_day: u64,
    per_day: usize,
    extra_days: u64,
    remaining: usize,
}

impl BookingGenerator {
    /// Plans `count` bookings around `window.today`.
    pub fn new(
        rng: ChaCha8Rng,
        count: usize,
        employees: &[Employee],
        vehicles: &[Vehicle],
        window: BookingWindow,
    ) -> Result<Self, String> {
        let capacity = employees.len().min(vehicles.len());
        if count > 0 && capacity == 0 {
            return Err("bookings need at least one employee and one vehicle".into());
        }
        let future = (window.last - window.today)
            .num_days()
            .clamp(0, FUTURE_DAYS as i64) as u64;
        let needed = (count as f64 / (capacity.max(1) as f64 * MAX_DAY_FILL)).ceil() as u64;
        let days = needed.max(MIN_DAYS).max(future + 1);
        let first_day = window
            .today
            .checked_add_days(Days::new(future))
            .and_then(|last| last.checked_sub_days(Days::new(days - 1)))
            .ok_or("the bookings would reach beyond the calendar")?;
        Ok(Self {
            rng,
            yesterday: window.today - Days::new(1),
            employees: employees.iter().map(|e| e.id.clone()).collect(),
            vehicles: vehicles
                .iter()
                .filter_map(|v| Some((v.id.clone(), v.driver.as_ref()?.id.clone())))
                .collect(),
            first_day,
            days,
            next_day: 0,
            per_day: count / days as usize,
            extra_days: (count % days as usize) as u64,
            remaining: count,
        })
    }

    /// How many bookings are still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The next whole days of bookings, at least `at_least` bookings unless
    /// fewer remain; `None` when done.
    pub fn next_batch(&mut self, at_least: usize) -> Option<Vec<Allocation>> {
        let mut batch = Vec::with_capacity(at_least + self.per_day + 1);
        while batch.len() < at_least && self.next_day < self.days {
            let day = self.next_day;
            self.next_day += 1;
            let count = self.per_day + usize::from(day < self.extra_days);
            let date = self.first_day + Days::new(day);
            self.book_day(date, count, &mut batch);
        }
        self.remaining -= batch.len();
        (!batch.is_empty()).then_some(batch)
    }

    fn book_day(&mut self, date: NaiveDate, count: usize, out: &mut Vec<Allocation>) {
        // Partial Fisher-Yates: the first `count` entries become a uniform
        // sample without repeats.
        for i in 0..count {
            let j = self.rng.random_range(i..self.vehicles.len());
            self.vehicles.swap(i, j);
            let k = self.rng.random_range(i..self.employees.len());
            self.employees.swap(i, k);
        }
        for i in 0..count {
            let created = self.created_at(date);
            let mut id_bytes = [0u8; 10];
            self.rng.fill(&mut id_bytes);
            let id = uuid::Builder::from_unix_timestamp_millis(
                created.timestamp_millis() as u64,
                &id_bytes,
            )
            .into_uuid()
            .to_string();
            let purpose = self.purpose();
            let (vehicle_id, driver_id) = self.vehicles[i].clone();
            out.push(Allocation {
                id,
                employee_id: self.employees[i].clone(),
                vehicle_id,
                driver_id,
                date,
                purpose,
                create_time: created,
                update_time: created,
                version: 1,
            });
        }
    }

    /// Booked one to thirty days ahead of the date, during office hours, and
    /// no later than yesterday, so the result depends on today's date but not
    /// on the time of day the seed runs.
    fn created_at(&mut self, date: NaiveDate) -> DateTime<Utc> {
        let days_ahead = self.rng.random_range(1..=30);
        let seconds = self.rng.random_range(8 * 3600..18 * 3600);
        let day = (date - Days::new(days_ahead)).min(self.yesterday);
        day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc() + Duration::seconds(seconds)
    }

    fn purpose(&mut self) -> String {
        let template = PURPOSES[self.rng.random_range(0..PURPOSES.len())];
        if template.contains("{company}") {
            let company: String = CompanyName().fake_with_rng(&mut self.rng);
            template.replace("{company}", &company)
        } else if template.contains("{city}") {
            let city: String = CityName().fake_with_rng(&mut self.rng);
            template.replace("{city}", &city)
        } else {
            template.to_owned()
        }
    }
}
