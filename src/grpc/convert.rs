//! Domain values to protobuf messages.

use chrono::{DateTime, Utc};

use crate::domain::{self, format_date};
use crate::proto::v1;

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn allocation(a: &domain::Allocation) -> v1::Allocation {
    v1::Allocation {
        id: a.id.clone(),
        employee_id: a.employee_id.clone(),
        vehicle_id: a.vehicle_id.clone(),
        driver_id: a.driver_id.clone(),
        allocation_date: format_date(a.date),
        purpose: a.purpose.clone(),
        create_time: Some(timestamp(a.create_time)),
        update_time: Some(timestamp(a.update_time)),
        etag: a.etag().to_string(),
    }
}

pub fn employee(e: &domain::Employee) -> v1::Employee {
    v1::Employee {
        id: e.id.clone(),
        name: e.name.clone(),
        email: e.email.clone(),
        department: e.department.clone(),
    }
}

pub fn vehicle(v: &domain::Vehicle) -> v1::Vehicle {
    let d = &v.driver;
    v1::Vehicle {
        id: v.id.clone(),
        registration: v.registration.clone(),
        make: v.make.clone(),
        model: v.model.clone(),
        seats: i32::try_from(v.seats).unwrap_or(i32::MAX),
        driver_id: d.id.clone(),
        driver: Some(v1::Driver {
            id: d.id.clone(),
            name: d.name.clone(),
            phone: d.phone.clone(),
            license_number: d.license_number.clone(),
        }),
    }
}

/// Optional string filters: empty means "not filtered".
pub fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
