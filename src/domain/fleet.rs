//! The people and vehicles that bookings refer to. Serializable, like
//! bookings, so that caches can hold them.

/// A member of staff who can book vehicles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Employee {
    pub id: String,
    pub name: String,
    pub email: String,
    pub department: String,
}

/// The person who drives a vehicle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Driver {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub license_number: String,
}

/// A company vehicle with its pre-assigned driver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vehicle {
    pub id: String,
    pub registration: String,
    pub make: String,
    pub model: String,
    /// Passenger seats, driver excluded.
    pub seats: u32,
    pub driver: Driver,
}
