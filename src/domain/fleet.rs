//! The people and vehicles that bookings refer to. Serializable, like
//! bookings, so that caches can hold them.

use chrono::{DateTime, NaiveDate, Utc};

use super::allocation::Etag;
use super::error::DomainError;

/// A member of staff who can book vehicles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Employee {
    pub id: String,
    pub name: String,
    pub email: String,
    pub department: String,
    /// A deactivated employee can't book and is left out of lists unless
    /// asked for; their history stays.
    pub active: bool,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// Starts at 1 and grows by one on every change; the etag.
    pub version: u64,
}

/// The person who drives a vehicle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Driver {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub license_number: String,
    /// A deactivated driver drives no vehicle from the day of deactivation.
    pub active: bool,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub version: u64,
}

/// A company vehicle, with its driver on the day it was read for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vehicle {
    pub id: String,
    pub registration: String,
    pub make: String,
    pub model: String,
    /// Passenger seats, driver excluded.
    pub seats: u32,
    /// A retired vehicle can't be booked and is left out of lists unless
    /// asked for.
    pub retired: bool,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub version: u64,
    /// Who drives it on the day it was read for; `None` when nobody is
    /// assigned that day (then it can't be booked).
    pub driver: Option<Driver>,
}

/// A period in which a vehicle is out of service: not available and not
/// bookable from `start_date` to `end_date`, both included.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VehicleBlock {
    pub id: String,
    pub vehicle_id: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// Why, for people (servicing, repair...); may be empty.
    pub reason: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub version: u64,
}

impl VehicleBlock {
    /// Whether the block covers `date`.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.start_date <= date && date <= self.end_date
    }
}

/// One period of a vehicle's driver timeline: `driver_id` drives it from
/// `start` on, up to but not including `end` (open-ended when `None`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    pub driver_id: String,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

impl Assignment {
    /// Whether the period covers `date`.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.start <= date && self.end.is_none_or(|end| date < end)
    }

    /// Whether the period covers any date from `date` on.
    pub fn reaches(&self, date: NaiveDate) -> bool {
        self.end.is_none_or(|end| end > date)
    }
}

/// The first day of the timeline of vehicles that existed before driver
/// timelines did (and of seeded ones): their driver has always driven them.
pub fn timeline_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

/// The timeline of a seeded vehicle: its driver has driven it since ever.
/// A vehicle is seeded with a driver (and the driver with it); one without
/// is refused, as a booking of it could never be made.
pub fn seeded_timeline(vehicle: &Vehicle) -> Result<Vec<Assignment>, DomainError> {
    let driver = vehicle
        .driver
        .as_ref()
        .ok_or_else(|| DomainError::NoDriver {
            vehicle_id: vehicle.id.clone(),
            date: timeline_start(),
        })?;
    Ok(vec![Assignment {
        driver_id: driver.id.clone(),
        start: timeline_start(),
        end: None,
    }])
}

/// The driver of the timeline `periods` on `date`.
pub fn driver_on(periods: &[Assignment], date: NaiveDate) -> Option<&str> {
    periods
        .iter()
        .find(|p| p.covers(date))
        .map(|p| p.driver_id.as_str())
}

/// Why a vehicle can't be booked on a date, in the order [`bookable`]
/// finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbookable<'a> {
    Retired,
    /// Out of service under this block.
    OutOfService(&'a VehicleBlock),
    NoDriver,
    Booked,
}

/// The one definition of a bookable vehicle: on `date`, `vehicle` (with
/// its `timeline`) can be booked when it is not retired, no block covers
/// the date (`block` is the one that does, if any), someone drives it that
/// day, and it is not `booked` already. Returns who drives it. Every store
/// query that filters or counts bookable vehicles is held to this by the
/// storage conformance suite.
pub fn bookable<'a>(
    vehicle: &Vehicle,
    timeline: &'a [Assignment],
    block: Option<&'a VehicleBlock>,
    booked: bool,
    date: NaiveDate,
) -> Result<&'a str, Unbookable<'a>> {
    if vehicle.retired {
        return Err(Unbookable::Retired);
    }
    if let Some(block) = block {
        return Err(Unbookable::OutOfService(block));
    }
    let driver = driver_on(timeline, date).ok_or(Unbookable::NoDriver)?;
    if booked {
        return Err(Unbookable::Booked);
    }
    Ok(driver)
}

/// `periods` with nobody driving from `from` on: periods that start then or
/// later go, the one running over `from` ends there.
pub fn end_timeline(periods: &[Assignment], from: NaiveDate) -> Vec<Assignment> {
    periods
        .iter()
        .filter(|p| p.start < from)
        .map(|p| Assignment {
            end: Some(p.end.map_or(from, |end| end.min(from))),
            ..p.clone()
        })
        .collect()
}

/// `periods` with `driver_id` driving from `from` on.
pub fn assign_from(periods: &[Assignment], driver_id: &str, from: NaiveDate) -> Vec<Assignment> {
    let mut timeline = end_timeline(periods, from);
    timeline.push(Assignment {
        driver_id: driver_id.to_owned(),
        start: from,
        end: None,
    });
    timeline
}

macro_rules! etag {
    ($($t:ty),*) => {$(
        impl $t {
            /// The current etag.
            pub fn etag(&self) -> Etag {
                Etag(self.version)
            }
        }
    )*};
}
etag!(Employee, Driver, Vehicle, VehicleBlock);

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    fn period(driver: &str, start: NaiveDate, end: Option<NaiveDate>) -> Assignment {
        Assignment {
            driver_id: driver.into(),
            start,
            end,
        }
    }

    #[test]
    fn a_seeded_vehicle_has_had_its_driver_since_ever_and_needs_one() {
        let driver = Driver {
            id: "d1".into(),
            name: "D".into(),
            phone: String::new(),
            license_number: "L1".into(),
            active: true,
            create_time: DateTime::UNIX_EPOCH,
            update_time: DateTime::UNIX_EPOCH,
            version: 1,
        };
        let mut vehicle = Vehicle {
            id: "v1".into(),
            registration: "R1".into(),
            make: String::new(),
            model: String::new(),
            seats: 4,
            retired: false,
            driver: Some(driver),
            create_time: DateTime::UNIX_EPOCH,
            update_time: DateTime::UNIX_EPOCH,
            version: 1,
        };
        let timeline = seeded_timeline(&vehicle).unwrap();
        assert_eq!(timeline, vec![period("d1", timeline_start(), None)]);
        vehicle.driver = None;
        assert_eq!(
            seeded_timeline(&vehicle).unwrap_err(),
            DomainError::NoDriver {
                vehicle_id: "v1".into(),
                date: timeline_start(),
            }
        );
    }

    #[test]
    fn a_new_driver_takes_over_from_the_effective_date_and_later_plans_go() {
        let timeline = vec![
            period("d1", timeline_start(), Some(day(10))),
            period("d2", day(10), Some(day(20))),
            period("d3", day(20), None),
        ];
        let next = assign_from(&timeline, "d4", day(15));
        assert_eq!(
            next,
            vec![
                period("d1", timeline_start(), Some(day(10))),
                period("d2", day(10), Some(day(15))),
                period("d4", day(15), None),
            ]
        );
        assert_eq!(driver_on(&next, day(14)), Some("d2"));
        assert_eq!(driver_on(&next, day(15)), Some("d4"));
        assert_eq!(driver_on(&next, day(9)), Some("d1"));
        // A change on the first day of a period replaces that period.
        let same_day = assign_from(&next, "d5", day(15));
        assert_eq!(same_day.last(), Some(&period("d5", day(15), None)));
        assert_eq!(same_day.len(), 3);
    }

    #[test]
    fn ending_a_timeline_leaves_the_vehicle_without_a_driver() {
        let timeline = vec![period("d1", timeline_start(), None)];
        let ended = end_timeline(&timeline, day(5));
        assert_eq!(ended, vec![period("d1", timeline_start(), Some(day(5)))]);
        assert_eq!(driver_on(&ended, day(4)), Some("d1"));
        assert_eq!(driver_on(&ended, day(5)), None);
        assert!(ended[0].reaches(day(4)) && !ended[0].reaches(day(5)));
    }

    fn vehicle(retired: bool) -> Vehicle {
        let at = DateTime::UNIX_EPOCH;
        Vehicle {
            id: "v".into(),
            registration: "R".into(),
            make: String::new(),
            model: String::new(),
            seats: 4,
            retired,
            create_time: at,
            update_time: at,
            version: 1,
            driver: None,
        }
    }

    fn block(start: NaiveDate, end: NaiveDate) -> VehicleBlock {
        VehicleBlock {
            id: "b".into(),
            vehicle_id: "v".into(),
            start_date: start,
            end_date: end,
            reason: String::new(),
            create_time: DateTime::UNIX_EPOCH,
            update_time: DateTime::UNIX_EPOCH,
            version: 1,
        }
    }

    #[test]
    fn a_vehicle_is_bookable_when_nothing_holds_it_back_and_the_first_reason_wins() {
        // d1 drives up to the 10th, nobody on the 10th and 11th (the 11th is
        // also out of service), d2 from the 12th.
        let timeline = vec![
            period("d1", timeline_start(), Some(day(10))),
            period("d2", day(12), None),
        ];
        let servicing = block(day(5), day(6));
        let repair = block(day(11), day(11));
        let blocks = [servicing.clone(), repair.clone()];
        let covering = |date| blocks.iter().find(|b| b.covers(date));
        // Name, retired, date, booked, verdict.
        type Case<'a> = (
            &'a str,
            bool,
            NaiveDate,
            bool,
            Result<&'a str, Unbookable<'a>>,
        );
        let cases: &[Case] = &[
            ("driven and free", false, day(4), false, Ok("d1")),
            ("last day of a period", false, day(9), false, Ok("d1")),
            (
                "a period ends at midnight",
                false,
                day(10),
                false,
                Err(Unbookable::NoDriver),
            ),
            (
                "blocked in the gap: the block first",
                false,
                day(11),
                false,
                Err(Unbookable::OutOfService(&repair)),
            ),
            ("first day of the next", false, day(12), false, Ok("d2")),
            ("booked", false, day(12), true, Err(Unbookable::Booked)),
            (
                "first day of a block",
                false,
                day(5),
                false,
                Err(Unbookable::OutOfService(&servicing)),
            ),
            (
                "last day of a block",
                false,
                day(6),
                true,
                Err(Unbookable::OutOfService(&servicing)),
            ),
            ("retired", true, day(4), false, Err(Unbookable::Retired)),
            (
                "retired and blocked",
                true,
                day(5),
                true,
                Err(Unbookable::Retired),
            ),
            (
                "no driver and booked",
                false,
                day(10),
                true,
                Err(Unbookable::NoDriver),
            ),
        ];
        for (name, retired, date, booked, expected) in cases {
            let got = bookable(
                &vehicle(*retired),
                &timeline,
                covering(*date),
                *booked,
                *date,
            );
            assert_eq!(&got, expected, "{name}");
        }
        assert_eq!(
            bookable(&vehicle(false), &[], None, false, day(4)),
            Err(Unbookable::NoDriver),
            "an empty timeline"
        );
    }
}
