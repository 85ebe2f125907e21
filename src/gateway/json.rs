//! The REST API's JSON: request and response bodies, query parameters, and
//! their conversions to and from the gRPC messages. Field names are the
//! proto's, in snake_case.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::proto::v1;

/// A booking.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "01a21a50-a9c3-7207-becc-cc45f2634d1f",
    "employee_id": "emp-00042",
    "vehicle_id": "veh-0007",
    "driver_id": "drv-0007",
    "allocation_date": "2099-01-08",
    "purpose": "Client visit",
    "create_time": "2099-01-01T09:30:00.123Z",
    "update_time": "2099-01-01T09:30:00.123Z",
    "etag": "1"
}))]
pub struct AllocationJson {
    pub id: String,
    pub employee_id: String,
    pub vehicle_id: String,
    /// The vehicle's driver, recorded at booking and when the vehicle changes.
    pub driver_id: String,
    /// The booked day, in the organisation's time zone.
    #[schema(format = Date)]
    pub allocation_date: String,
    pub purpose: String,
    #[schema(format = DateTime)]
    pub create_time: String,
    #[schema(format = DateTime)]
    pub update_time: String,
    /// Changes on every update; also sent as the `ETag` header.
    pub etag: String,
}

pub(super) fn rfc3339(timestamp: Option<prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl From<v1::Allocation> for AllocationJson {
    fn from(a: v1::Allocation) -> Self {
        Self {
            id: a.id,
            employee_id: a.employee_id,
            vehicle_id: a.vehicle_id,
            driver_id: a.driver_id,
            allocation_date: a.allocation_date,
            purpose: a.purpose,
            create_time: rfc3339(a.create_time),
            update_time: rfc3339(a.update_time),
            etag: a.etag,
        }
    }
}

/// A booking to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "employee_id": "emp-00042",
    "vehicle_id": "veh-0007",
    "allocation_date": "2099-01-08",
    "purpose": "Client visit"
}))]
pub struct NewAllocationJson {
    #[serde(default)]
    #[schema(required = true)]
    pub employee_id: String,
    #[serde(default)]
    #[schema(required = true)]
    pub vehicle_id: String,
    /// From today to today + MAX_DAYS_AHEAD, "YYYY-MM-DD".
    #[serde(default)]
    #[schema(required = true, format = Date)]
    pub allocation_date: String,
    /// At most 500 characters.
    #[serde(default)]
    pub purpose: String,
}

impl From<NewAllocationJson> for v1::Allocation {
    fn from(a: NewAllocationJson) -> Self {
        Self {
            employee_id: a.employee_id,
            vehicle_id: a.vehicle_id,
            allocation_date: a.allocation_date,
            purpose: a.purpose,
            ..Default::default()
        }
    }
}

/// Changes to a booking: the fields present are changed, the others kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"allocation_date": "2099-01-08", "purpose": "Board meeting"}))]
pub struct AllocationChangesJson {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub vehicle_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Date)]
    pub allocation_date: Option<Option<String>>,
    /// `null` or `""` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub purpose: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl AllocationChangesJson {
    /// The allocation to send and its update mask: the fields present.
    pub fn into_update(self, id: String, etag: String) -> (v1::Allocation, Vec<String>) {
        let mut mask = Vec::new();
        let mut take = |name: &str, value: Option<Option<String>>| {
            value.map(|v| {
                mask.push(name.to_owned());
                v.unwrap_or_default()
            })
        };
        let allocation = v1::Allocation {
            id,
            etag,
            vehicle_id: take("vehicle_id", self.vehicle_id).unwrap_or_default(),
            allocation_date: take("allocation_date", self.allocation_date).unwrap_or_default(),
            purpose: take("purpose", self.purpose).unwrap_or_default(),
            ..Default::default()
        };
        (allocation, mask)
    }
}

/// One page of bookings.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllocationPageJson {
    pub allocations: Vec<AllocationJson>,
    /// Pass as `page_token`, with the same filters, for the next page;
    /// empty on the last page.
    pub next_page_token: String,
    /// How many bookings match, on all pages.
    pub total_size: i64,
}

/// Filters of the history report; all that are given must match.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub employee_id: Option<String>,
    pub vehicle_id: Option<String>,
    pub driver_id: Option<String>,
    /// First day included, "YYYY-MM-DD".
    #[param(format = Date)]
    pub start_date: Option<String>,
    /// Last day included, "YYYY-MM-DD".
    #[param(format = Date)]
    pub end_date: Option<String>,
    /// Rows per page: default 50; values above 500 are lowered to 500.
    #[param(minimum = 0)]
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl From<HistoryQuery> for v1::ListAllocationHistoryRequest {
    fn from(q: HistoryQuery) -> Self {
        Self {
            employee_id: q.employee_id.unwrap_or_default(),
            vehicle_id: q.vehicle_id.unwrap_or_default(),
            driver_id: q.driver_id.unwrap_or_default(),
            start_date: q.start_date.unwrap_or_default(),
            end_date: q.end_date.unwrap_or_default(),
            page_size: q.page_size.unwrap_or_default(),
            page_token: q.page_token.unwrap_or_default(),
        }
    }
}

/// A member of staff.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "emp-00042", "name": "Joel Hodkiewicz",
    "email": "joel.hodkiewicz@example.com", "department": "Sales", "active": true,
    "create_time": "2099-01-01T09:30:00.123Z", "update_time": "2099-01-01T09:30:00.123Z",
    "etag": "1"}))]
pub struct EmployeeJson {
    pub id: String,
    pub name: String,
    pub email: String,
    pub department: String,
    /// False once deactivated: then they can't book.
    pub active: bool,
    #[schema(format = DateTime)]
    pub create_time: String,
    #[schema(format = DateTime)]
    pub update_time: String,
    /// Changes on every change; also sent as the `ETag` header.
    pub etag: String,
}

impl From<v1::Employee> for EmployeeJson {
    fn from(e: v1::Employee) -> Self {
        Self {
            id: e.id,
            name: e.name,
            email: e.email,
            department: e.department,
            active: e.active,
            create_time: rfc3339(e.create_time),
            update_time: rfc3339(e.update_time),
            etag: e.etag,
        }
    }
}

/// One page of employees.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmployeePageJson {
    pub employees: Vec<EmployeeJson>,
    pub next_page_token: String,
    pub total_size: i64,
}

/// Which employees to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EmployeesQuery {
    /// Only employees of this department.
    pub department: Option<String>,
    /// Include deactivated employees.
    pub show_deactivated: Option<bool>,
    /// Rows per page: default 50; values above 500 are lowered to 500.
    #[param(minimum = 0)]
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A driver.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriverJson {
    pub id: String,
    pub name: String,
    /// Work phone, so a booker can reach the driver.
    pub phone: String,
    /// Shown only to `fleet_admin` and `auditor` callers; absent for others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_number: Option<String>,
    /// False once deactivated: then they drive no vehicle.
    pub active: bool,
    #[schema(format = DateTime)]
    pub create_time: String,
    #[schema(format = DateTime)]
    pub update_time: String,
    pub etag: String,
}

impl From<v1::Driver> for DriverJson {
    fn from(d: v1::Driver) -> Self {
        Self {
            id: d.id,
            name: d.name,
            phone: d.phone,
            license_number: (!d.license_number.is_empty()).then_some(d.license_number),
            active: d.active,
            create_time: rfc3339(d.create_time),
            update_time: rfc3339(d.update_time),
            etag: d.etag,
        }
    }
}

/// A company vehicle with its driver.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "veh-0007", "registration": "KD19 XRT", "make": "Toyota",
    "model": "Corolla", "seats": 4, "driver_id": "drv-0007",
    "driver": {"id": "drv-0007", "name": "Corine Becker", "phone": "(129) 974-4431",
               "license_number": "DL91214855", "active": true,
               "create_time": "2099-01-01T09:30:00.123Z",
               "update_time": "2099-01-01T09:30:00.123Z", "etag": "1"},
    "retired": false, "create_time": "2099-01-01T09:30:00.123Z",
    "update_time": "2099-01-01T09:30:00.123Z", "etag": "1"}))]
pub struct VehicleJson {
    pub id: String,
    pub registration: String,
    pub make: String,
    pub model: String,
    /// Passenger seats, driver excluded.
    pub seats: i32,
    /// Who drives it on the day read for (today; on availability, the day
    /// asked about); empty when nobody does.
    pub driver_id: String,
    pub driver: Option<DriverJson>,
    /// True once retired: then it can't be booked.
    pub retired: bool,
    #[schema(format = DateTime)]
    pub create_time: String,
    #[schema(format = DateTime)]
    pub update_time: String,
    /// Changes on every change, driver assignments included.
    pub etag: String,
}

impl From<v1::Vehicle> for VehicleJson {
    fn from(v: v1::Vehicle) -> Self {
        Self {
            id: v.id,
            registration: v.registration,
            make: v.make,
            model: v.model,
            seats: v.seats,
            driver_id: v.driver_id,
            driver: v.driver.map(DriverJson::from),
            retired: v.retired,
            create_time: rfc3339(v.create_time),
            update_time: rfc3339(v.update_time),
            etag: v.etag,
        }
    }
}

/// One page of vehicles.
#[derive(Debug, Serialize, ToSchema)]
pub struct VehiclePageJson {
    pub vehicles: Vec<VehicleJson>,
    pub next_page_token: String,
    pub total_size: i64,
}

/// A page of a list in id order.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page: default 50; values above 500 are lowered to 500.
    #[param(minimum = 0)]
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Which vehicles to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VehiclesQuery {
    /// Include retired vehicles.
    pub show_retired: Option<bool>,
    /// Rows per page: default 50; values above 500 are lowered to 500.
    #[param(minimum = 0)]
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Which day to look at.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AvailableQuery {
    /// Required: a day that can be booked, "YYYY-MM-DD".
    #[param(format = Date, required = true)]
    pub date: Option<String>,
    /// Rows per page: default 50; values above 500 are lowered to 500.
    #[param(minimum = 0)]
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page, for the same date.
    pub page_token: Option<String>,
}

/// The process is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct LivenessJson {
    #[schema(example = "ok")]
    pub status: String,
}

/// Whether both gRPC services can serve.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "SERVING", "services": {
    "vehicle_allocation.v1.AllocationService": "SERVING",
    "vehicle_allocation.v1.FleetService": "SERVING"}}))]
pub struct ReadinessJson {
    /// `SERVING` when every service is.
    pub status: String,
    /// Each service's gRPC health status.
    pub services: BTreeMap<String, String>,
}
