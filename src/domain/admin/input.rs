//! The form of fleet input, checked the same way for gRPC, REST and import:
//! each check names the field (`employee.email`, or the import's column).

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::allocation::{ID_MAX_CHARS, validate_id};
use crate::domain::error::{Echo, Violation, ViolationReason, Violations};
use crate::domain::fleet::{Driver, Employee, Vehicle, VehicleBlock};

pub const NAME_MAX_CHARS: usize = 200;
pub const EMAIL_MAX_CHARS: usize = 254;
pub const PHONE_MAX_CHARS: usize = 32;
pub const CODE_MAX_CHARS: usize = 64;
pub const REGISTRATION_MAX_CHARS: usize = 32;
pub const REASON_MAX_CHARS: usize = 500;
pub const MAX_SEATS: u32 = 100;

/// `prefix.name`, or `name` alone without a prefix.
pub fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn too_long(field: &str, value: &str, max: usize) -> Option<Violation> {
    let chars = value.chars().count();
    (chars > max).then(|| {
        Violation::new(
            field,
            ViolationReason::TooLong,
            format!("{field} is {chars} characters long; at most {max} are allowed"),
        )
    })
}

fn invalid(field: &str, value: &str, expected: &str) -> Violation {
    Violation::new(
        field,
        ViolationReason::InvalidValue,
        format!("{field} {:?} is not {expected}", Echo(value)),
    )
}

/// Required text of at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<(), Violation> {
    if value.trim().is_empty() {
        return Err(Violation::required(field));
    }
    optional_text(field, value, max)
}

/// Optional text of at most `max` characters.
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<(), Violation> {
    too_long(field, value, max).map_or(Ok(()), Err)
}

/// An id a caller chooses: it appears in REST paths, so letters, digits
/// and `-`, `_`, `.` only.
pub fn chosen_id(field: &str, value: &str) -> Result<(), Violation> {
    validate_id(field, value)?;
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err(invalid(
            field,
            value,
            "a valid id: use letters, digits, '-', '_' and '.'",
        ))
    }
}

/// A plausible e-mail address: one `@`, something before it, a dotted
/// domain after it, no spaces.
pub fn email(field: &str, value: &str) -> Result<(), Violation> {
    if value.is_empty() {
        return Err(Violation::required(field));
    }
    if let Some(v) = too_long(field, value, EMAIL_MAX_CHARS) {
        return Err(v);
    }
    let ok = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    let reserved = value
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(super::ERASED_DOMAIN));
    if reserved {
        // Taken in advance, an erased employee's address would make their
        // erasure fail.
        return Err(Violation::new(
            field,
            ViolationReason::InvalidValue,
            format!(
                "{field} is under {}, which is kept for erased employees",
                super::ERASED_DOMAIN
            ),
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(invalid(field, value, "an e-mail address"))
    }
}

/// An optional phone number: digits, spaces and `+ ( ) - .`.
pub fn phone(field: &str, value: &str) -> Result<(), Violation> {
    if let Some(v) = too_long(field, value, PHONE_MAX_CHARS) {
        return Err(v);
    }
    let ok = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '(' | ')' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            value,
            "a phone number (digits, spaces, + ( ) - .)",
        ))
    }
}

/// Passenger seats: 0 to [`MAX_SEATS`].
pub fn seats(field: &str, value: i64) -> Result<u32, Violation> {
    u32::try_from(value)
        .ok()
        .filter(|s| *s <= MAX_SEATS)
        .ok_or_else(|| {
            Violation::new(
                field,
                ViolationReason::InvalidValue,
                format!("{field} is {value}; it must be 0 to {MAX_SEATS}"),
            )
        })
}

// Each field's form, one function each: create, import and update check a
// field with the same function, so that its limit is written once.

pub fn employee_name(field: &str, value: &str) -> Result<(), Violation> {
    required_text(field, value, NAME_MAX_CHARS)
}

pub fn employee_email(field: &str, value: &str) -> Result<(), Violation> {
    email(field, value)
}

pub fn employee_department(field: &str, value: &str) -> Result<(), Violation> {
    optional_text(field, value, ID_MAX_CHARS)
}

pub fn driver_name(field: &str, value: &str) -> Result<(), Violation> {
    required_text(field, value, NAME_MAX_CHARS)
}

pub fn driver_phone(field: &str, value: &str) -> Result<(), Violation> {
    phone(field, value)
}

pub fn driver_license_number(field: &str, value: &str) -> Result<(), Violation> {
    required_text(field, value, CODE_MAX_CHARS)
}

pub fn vehicle_registration(field: &str, value: &str) -> Result<(), Violation> {
    required_text(field, value, REGISTRATION_MAX_CHARS)
}

pub fn vehicle_make(field: &str, value: &str) -> Result<(), Violation> {
    optional_text(field, value, CODE_MAX_CHARS)
}

pub fn vehicle_model(field: &str, value: &str) -> Result<(), Violation> {
    optional_text(field, value, CODE_MAX_CHARS)
}

/// A new employee as given; `id` is the caller's or an assigned one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmployeeInput {
    pub id: String,
    pub name: String,
    pub email: String,
    pub department: String,
}

impl EmployeeInput {
    /// Checks every field into `violations`; the employee when all pass.
    pub fn check(
        self,
        prefix: &str,
        now: DateTime<Utc>,
        violations: &mut Violations,
    ) -> Option<Employee> {
        let before = violations.len();
        violations.check(chosen_id(&field(prefix, "id"), &self.id));
        violations.check(employee_name(&field(prefix, "name"), &self.name));
        violations.check(employee_email(&field(prefix, "email"), &self.email));
        violations.check(employee_department(
            &field(prefix, "department"),
            &self.department,
        ));
        (violations.len() == before).then_some(Employee {
            id: self.id,
            name: self.name,
            email: self.email,
            department: self.department,
            active: true,
            create_time: now,
            update_time: now,
            version: 1,
        })
    }
}

/// A new driver as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverInput {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub license_number: String,
}

impl DriverInput {
    pub fn check(
        self,
        prefix: &str,
        now: DateTime<Utc>,
        violations: &mut Violations,
    ) -> Option<Driver> {
        let before = violations.len();
        violations.check(chosen_id(&field(prefix, "id"), &self.id));
        violations.check(driver_name(&field(prefix, "name"), &self.name));
        violations.check(driver_phone(&field(prefix, "phone"), &self.phone));
        violations.check(driver_license_number(
            &field(prefix, "license_number"),
            &self.license_number,
        ));
        (violations.len() == before).then_some(Driver {
            id: self.id,
            name: self.name,
            phone: self.phone,
            license_number: self.license_number,
            active: true,
            create_time: now,
            update_time: now,
            version: 1,
        })
    }
}

/// A new vehicle as given, with the driver who drives it from today.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VehicleInput {
    pub id: String,
    pub registration: String,
    pub make: String,
    pub model: String,
    pub seats: i64,
    pub driver_id: String,
}

impl VehicleInput {
    /// The vehicle and its driver's id when every field passes.
    pub fn check(
        self,
        prefix: &str,
        now: DateTime<Utc>,
        violations: &mut Violations,
    ) -> Option<(Vehicle, String)> {
        let before = violations.len();
        violations.check(chosen_id(&field(prefix, "id"), &self.id));
        violations.check(vehicle_registration(
            &field(prefix, "registration"),
            &self.registration,
        ));
        violations.check(vehicle_make(&field(prefix, "make"), &self.make));
        violations.check(vehicle_model(&field(prefix, "model"), &self.model));
        let seats = violations.check(seats(&field(prefix, "seats"), self.seats));
        violations.check(validate_id(&field(prefix, "driver_id"), &self.driver_id));
        let seats = seats?;
        (violations.len() == before).then_some({
            (
                Vehicle {
                    id: self.id,
                    registration: self.registration,
                    make: self.make,
                    model: self.model,
                    seats,
                    retired: false,
                    create_time: now,
                    update_time: now,
                    version: 1,
                    driver: None,
                },
                self.driver_id,
            )
        })
    }
}

/// A new block's dates and reason, checked for form (the dates against
/// today when the command is decided).
pub fn block(
    prefix: &str,
    start_date: Option<NaiveDate>,
    end_date: Option<NaiveDate>,
    reason: &str,
    violations: &mut Violations,
) -> Option<(NaiveDate, NaiveDate)> {
    violations.check(optional_text(
        &field(prefix, "reason"),
        reason,
        REASON_MAX_CHARS,
    ));
    let (start, end) = (start_date?, end_date?);
    if end < start {
        violations.push(Violation::new(
            field(prefix, "end_date"),
            ViolationReason::InvalidDateRange,
            format!(
                "{} {end} is before {} {start}",
                field(prefix, "end_date"),
                field(prefix, "start_date")
            ),
        ));
        return None;
    }
    Some((start, end))
}

/// A block as stored, once its form is checked.
pub fn new_block(
    id: String,
    vehicle_id: String,
    (start_date, end_date): (NaiveDate, NaiveDate),
    reason: String,
    now: DateTime<Utc>,
) -> VehicleBlock {
    VehicleBlock {
        id,
        vehicle_id,
        start_date,
        end_date,
        reason,
        create_time: now,
        update_time: now,
        version: 1,
    }
}
