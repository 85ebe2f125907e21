//! Domain values to protobuf messages. They take the values by value and
//! move their strings, since a page of fifty bookings would otherwise copy
//! hundreds of strings per response.

use chrono::{DateTime, Utc};

use crate::domain::{self, format_date};
use crate::proto::v1;

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn allocation(a: domain::Allocation) -> v1::Allocation {
    v1::Allocation {
        etag: a.etag().to_string(),
        allocation_date: format_date(a.date),
        create_time: Some(timestamp(a.create_time)),
        update_time: Some(timestamp(a.update_time)),
        id: a.id,
        employee_id: a.employee_id,
        vehicle_id: a.vehicle_id,
        driver_id: a.driver_id,
        purpose: a.purpose,
    }
}

pub fn employee(e: domain::Employee) -> v1::Employee {
    v1::Employee {
        etag: e.etag().to_string(),
        active: e.active,
        create_time: Some(timestamp(e.create_time)),
        update_time: Some(timestamp(e.update_time)),
        id: e.id,
        name: e.name,
        email: e.email,
        department: e.department,
    }
}

/// A driver; the licence number only when `licences` (the caller may read
/// them), else empty.
pub fn driver(d: domain::Driver, licences: bool) -> v1::Driver {
    v1::Driver {
        etag: d.etag().to_string(),
        active: d.active,
        create_time: Some(timestamp(d.create_time)),
        update_time: Some(timestamp(d.update_time)),
        id: d.id,
        name: d.name,
        phone: d.phone,
        license_number: if licences {
            d.license_number
        } else {
            String::new()
        },
    }
}

/// A vehicle with its driver (see [`driver`] for `licences`).
pub fn vehicle(v: domain::Vehicle, licences: bool) -> v1::Vehicle {
    v1::Vehicle {
        seats: i32::try_from(v.seats).unwrap_or(i32::MAX),
        driver_id: v.driver.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
        etag: v.etag().to_string(),
        retired: v.retired,
        create_time: Some(timestamp(v.create_time)),
        update_time: Some(timestamp(v.update_time)),
        driver: v.driver.map(|d| driver(d, licences)),
        id: v.id,
        registration: v.registration,
        make: v.make,
        model: v.model,
    }
}

pub fn block(b: domain::VehicleBlock) -> v1::VehicleBlock {
    v1::VehicleBlock {
        etag: b.etag().to_string(),
        start_date: format_date(b.start_date),
        end_date: format_date(b.end_date),
        create_time: Some(timestamp(b.create_time)),
        update_time: Some(timestamp(b.update_time)),
        id: b.id,
        vehicle_id: b.vehicle_id,
        reason: b.reason,
    }
}

/// Optional string filters: empty means "not filtered".
pub fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
