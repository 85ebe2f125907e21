//! The JSON of fleet administration: bodies to create and change
//! employees, drivers, vehicles and blocks, and the answers of the calls
//! that cancel or move bookings on the way.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::json::{AllocationJson, DriverJson, EmployeeJson, VehicleJson, present, rfc3339};
use crate::proto::v1;

/// Collects the fields present in a PATCH body: their names form the
/// update mask.
#[derive(Default)]
struct Mask(Vec<String>);

impl Mask {
    /// The value of a field that was sent (`null` counts as empty).
    fn take<T: Default>(&mut self, name: &str, value: Option<Option<T>>) -> T {
        match value {
            Some(v) => {
                self.0.push(name.to_owned());
                v.unwrap_or_default()
            }
            None => T::default(),
        }
    }
}

/// An employee to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "hr-10442", "name": "Ada Lovelace",
    "email": "ada.lovelace@example.com", "department": "Engineering"}))]
pub struct NewEmployeeJson {
    /// The HR system's id (letters, digits, `-`, `_`, `.`); assigned when
    /// absent.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    #[serde(default)]
    #[schema(required = true)]
    pub email: String,
    #[serde(default)]
    pub department: String,
}

impl From<NewEmployeeJson> for v1::Employee {
    fn from(e: NewEmployeeJson) -> Self {
        Self {
            id: e.id,
            name: e.name,
            email: e.email,
            department: e.department,
            ..Default::default()
        }
    }
}

/// Changes to an employee: the fields present are changed.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"department": "Finance"}))]
pub struct EmployeeChangesJson {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub department: Option<Option<String>>,
}

impl EmployeeChangesJson {
    pub fn into_update(self, id: String, etag: String) -> v1::UpdateEmployeeRequest {
        let mut mask = Mask::default();
        let employee = v1::Employee {
            id,
            etag,
            name: mask.take("name", self.name),
            email: mask.take("email", self.email),
            department: mask.take("department", self.department),
            ..Default::default()
        };
        v1::UpdateEmployeeRequest {
            employee: Some(employee),
            update_mask: Some(prost_types::FieldMask { paths: mask.0 }),
        }
    }
}

/// A driver to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "drv-new-01", "name": "Corine Becker",
    "phone": "+44 20 7946 0000", "license_number": "BECKE751224C99AB"}))]
pub struct NewDriverJson {
    /// Assigned when absent.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    #[schema(required = true)]
    pub license_number: String,
}

impl From<NewDriverJson> for v1::Driver {
    fn from(d: NewDriverJson) -> Self {
        Self {
            id: d.id,
            name: d.name,
            phone: d.phone,
            license_number: d.license_number,
            ..Default::default()
        }
    }
}

/// Changes to a driver: the fields present are changed.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+44 20 7946 0001"}))]
pub struct DriverChangesJson {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub license_number: Option<Option<String>>,
}

impl DriverChangesJson {
    pub fn into_update(self, id: String, etag: String) -> v1::UpdateDriverRequest {
        let mut mask = Mask::default();
        let driver = v1::Driver {
            id,
            etag,
            name: mask.take("name", self.name),
            phone: mask.take("phone", self.phone),
            license_number: mask.take("license_number", self.license_number),
            ..Default::default()
        };
        v1::UpdateDriverRequest {
            driver: Some(driver),
            update_mask: Some(prost_types::FieldMask { paths: mask.0 }),
        }
    }
}

/// A vehicle to add, with the driver who drives it from today.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"registration": "KD26 XRT", "make": "Ford", "model": "Transit",
    "seats": 8, "driver_id": "drv-new-01"}))]
pub struct NewVehicleJson {
    /// Assigned when absent.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    #[schema(required = true)]
    pub registration: String,
    #[serde(default)]
    pub make: String,
    #[serde(default)]
    pub model: String,
    /// Passenger seats, driver excluded: 0 to 100.
    #[serde(default)]
    pub seats: i32,
    /// An active driver who drives no other vehicle from today (the
    /// example's is the driver the `POST /api/drivers` example adds).
    #[serde(default)]
    #[schema(required = true)]
    pub driver_id: String,
}

impl From<NewVehicleJson> for v1::Vehicle {
    fn from(v: NewVehicleJson) -> Self {
        Self {
            id: v.id,
            registration: v.registration,
            make: v.make,
            model: v.model,
            seats: v.seats,
            driver_id: v.driver_id,
            ..Default::default()
        }
    }
}

/// Changes to a vehicle: the fields present are changed. Its driver
/// changes with `PUT /api/vehicles/{id}/driver`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"registration": "KD26 XRU"}))]
pub struct VehicleChangesJson {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub registration: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub make: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>)]
    pub seats: Option<Option<i32>>,
}

impl VehicleChangesJson {
    pub fn into_update(self, id: String, etag: String) -> v1::UpdateVehicleRequest {
        let mut mask = Mask::default();
        let vehicle = v1::Vehicle {
            id,
            etag,
            registration: mask.take("registration", self.registration),
            make: mask.take("make", self.make),
            model: mask.take("model", self.model),
            seats: mask.take("seats", self.seats),
            ..Default::default()
        };
        v1::UpdateVehicleRequest {
            vehicle: Some(vehicle),
            update_mask: Some(prost_types::FieldMask { paths: mask.0 }),
        }
    }
}

/// Who drives the vehicle, from when.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"driver_id": "drv-new-01", "effective_date": "2099-01-31"}))]
pub struct DriverAssignmentJson {
    /// An active driver who drives no other vehicle from `effective_date`
    /// (the example's is the driver the `POST /api/drivers` example adds).
    #[serde(default)]
    #[schema(required = true)]
    pub driver_id: String,
    /// Today or later, "YYYY-MM-DD"; today when absent.
    #[serde(default)]
    #[schema(format = Date)]
    pub effective_date: String,
}

/// An out-of-service period to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"start_date": "2099-01-31", "end_date": "2099-02-06",
    "reason": "Annual servicing"}))]
pub struct NewBlockJson {
    /// First day out of service, today or later.
    #[serde(default)]
    #[schema(required = true, format = Date)]
    pub start_date: String,
    /// Last day out of service.
    #[serde(default)]
    #[schema(required = true, format = Date)]
    pub end_date: String,
    /// At most 500 characters.
    #[serde(default)]
    pub reason: String,
}

/// An out-of-service period.
#[derive(Debug, Serialize, ToSchema)]
pub struct VehicleBlockJson {
    pub id: String,
    pub vehicle_id: String,
    #[schema(format = Date)]
    pub start_date: String,
    #[schema(format = Date)]
    pub end_date: String,
    pub reason: String,
    #[schema(format = DateTime)]
    pub create_time: String,
    #[schema(format = DateTime)]
    pub update_time: String,
    pub etag: String,
}

impl From<v1::VehicleBlock> for VehicleBlockJson {
    fn from(b: v1::VehicleBlock) -> Self {
        Self {
            id: b.id,
            vehicle_id: b.vehicle_id,
            start_date: b.start_date,
            end_date: b.end_date,
            reason: b.reason,
            create_time: rfc3339(b.create_time),
            update_time: rfc3339(b.update_time),
            etag: b.etag,
        }
    }
}

/// One page of a vehicle's blocks.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockPageJson {
    pub blocks: Vec<VehicleBlockJson>,
    pub next_page_token: String,
    pub total_size: i64,
}

/// One page of drivers.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriverPageJson {
    pub drivers: Vec<DriverJson>,
    pub next_page_token: String,
    pub total_size: i64,
}

/// Which drivers to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DriversQuery {
    /// Include deactivated drivers.
    pub show_deactivated: Option<bool>,
    /// Rows per page: default 50; values above 500 are lowered to 500.
    #[param(minimum = 0)]
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Whether bookings in the way are cancelled or refuse the change.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// Cancel the bookings from today on that stand in the way (and return
    /// them) instead of failing with HAS_FUTURE_BOOKINGS.
    pub cancel_conflicting_bookings: Option<bool>,
}

/// An employee deactivated, with the bookings cancelled on the way.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeactivatedEmployeeJson {
    pub employee: EmployeeJson,
    pub cancelled_allocations: Vec<AllocationJson>,
}

/// An employee erased (pseudonymised and deactivated), with the bookings
/// cancelled on the way.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedEmployeeJson {
    pub employee: EmployeeJson,
    pub cancelled_allocations: Vec<AllocationJson>,
}

/// A driver deactivated, with the bookings cancelled on the way.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeactivatedDriverJson {
    pub driver: DriverJson,
    pub cancelled_allocations: Vec<AllocationJson>,
}

/// A vehicle retired, with the bookings cancelled on the way.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetiredVehicleJson {
    pub vehicle: VehicleJson,
    pub cancelled_allocations: Vec<AllocationJson>,
}

/// A vehicle with its new driver, and the bookings that now carry them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssignedDriverJson {
    pub vehicle: VehicleJson,
    pub reassigned_allocations: Vec<AllocationJson>,
}

/// A block added, with the bookings cancelled on the way.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedBlockJson {
    pub block: VehicleBlockJson,
    pub cancelled_allocations: Vec<AllocationJson>,
}

/// Booking messages as JSON.
pub fn allocations(list: Vec<v1::Allocation>) -> Vec<AllocationJson> {
    list.into_iter().map(AllocationJson::from).collect()
}
