//! The ways a request can break a rule.
//!
//! Each variant carries what a client needs to act on it: the field at fault,
//! or the booking it conflicts with. The transport layers turn these into
//! gRPC statuses and HTTP responses; nothing here knows about either.

use chrono::NaiveDate;

use super::principal::Role;

/// The most characters of a caller's value an error message repeats: a
/// long value would swell the message (and the `grpc-message` header, which
/// some clients refuse past a few KiB) without telling the caller more.
pub const ECHO_CHARS: usize = 64;

/// A caller's value as error messages show it: cut to [`ECHO_CHARS`]
/// characters with an ellipsis. `{:?}` quotes it.
#[derive(Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl Echo<'_> {
    fn clipped(&self) -> std::borrow::Cow<'_, str> {
        clip(self.0, ECHO_CHARS)
    }
}

/// `text` cut to `max` characters, with an ellipsis when it was longer.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

/// `text` cut to at most `max` bytes (ellipsis included) on a character
/// boundary: for headers and logs, whose limits are in bytes.
pub fn clip_bytes(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

impl std::fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.clipped())
    }
}

impl std::fmt::Debug for Echo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.clipped())
    }
}

/// Why a field was rejected; becomes the machine-readable `reason` of the
/// error, so clients can branch on it without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationReason {
    /// A required field is empty.
    Required,
    /// A date is not a real calendar date in `YYYY-MM-DD` form.
    InvalidDate,
    /// A booking date lies before today.
    DateInPast,
    /// A booking date lies beyond the booking horizon.
    DateTooFarAhead,
    /// `start_date` is after `end_date`.
    InvalidDateRange,
    /// A text field is longer than allowed.
    TooLong,
    /// `page_size` is negative.
    InvalidPageSize,
    /// `page_token` was not issued by this service.
    InvalidPageToken,
    /// `page_token` was issued for a request with other filters.
    PageTokenMismatch,
    /// An `update_mask` path that is not an updatable field.
    UnknownFieldPath,
    /// An update that names no field to change.
    NothingToUpdate,
    /// An etag that this service never issues.
    InvalidEtag,
    /// A `request_id` reused for a different booking.
    RequestIdReused,
    /// A value not of the accepted form: an e-mail address, a phone number,
    /// an id's characters, a number out of range.
    InvalidValue,
}

impl ViolationReason {
    /// The reason as it appears in `google.rpc.ErrorInfo.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "FIELD_REQUIRED",
            Self::InvalidDate => "INVALID_DATE",
            Self::DateInPast => "DATE_IN_PAST",
            Self::DateTooFarAhead => "DATE_TOO_FAR_AHEAD",
            Self::InvalidDateRange => "INVALID_DATE_RANGE",
            Self::TooLong => "FIELD_TOO_LONG",
            Self::InvalidPageSize => "INVALID_PAGE_SIZE",
            Self::InvalidPageToken => "INVALID_PAGE_TOKEN",
            Self::PageTokenMismatch => "PAGE_TOKEN_MISMATCH",
            Self::UnknownFieldPath => "UNKNOWN_FIELD_PATH",
            Self::NothingToUpdate => "NOTHING_TO_UPDATE",
            Self::InvalidEtag => "INVALID_ETAG",
            Self::RequestIdReused => "REQUEST_ID_REUSED",
            Self::InvalidValue => "INVALID_VALUE",
        }
    }
}

/// One rejected field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's path in the request, e.g. `allocation.allocation_date`.
    pub field: String,
    /// Why it was rejected.
    pub reason: ViolationReason,
    /// A sentence for humans that names the field and what would be accepted.
    pub description: String,
}

impl Violation {
    /// A violation of `field` for `reason`.
    pub fn new(
        field: impl Into<String>,
        reason: ViolationReason,
        description: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            reason,
            description: description.into(),
        }
    }

    /// `field` is required but empty.
    pub fn required(field: &str) -> Self {
        Self::new(
            field,
            ViolationReason::Required,
            format!("{field} is required"),
        )
    }
}

/// The kinds of things a request can name by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Allocation,
    Employee,
    Vehicle,
    Driver,
    VehicleBlock,
}

impl Resource {
    /// Lower-case name used in messages ("vehicle").
    pub fn name(self) -> &'static str {
        match self {
            Self::Allocation => "allocation",
            Self::Employee => "employee",
            Self::Vehicle => "vehicle",
            Self::Driver => "driver",
            Self::VehicleBlock => "vehicle block",
        }
    }

    /// The collection in resource names (`vehicles/{id}`).
    pub fn collection(self) -> &'static str {
        match self {
            Self::Allocation => "allocations",
            Self::Employee => "employees",
            Self::Vehicle => "vehicles",
            Self::Driver => "drivers",
            Self::VehicleBlock => "blocks",
        }
    }

    /// Machine-readable reason for "not found" (`VEHICLE_NOT_FOUND`).
    pub fn not_found_reason(self) -> &'static str {
        match self {
            Self::Allocation => "ALLOCATION_NOT_FOUND",
            Self::Employee => "EMPLOYEE_NOT_FOUND",
            Self::Vehicle => "VEHICLE_NOT_FOUND",
            Self::Driver => "DRIVER_NOT_FOUND",
            Self::VehicleBlock => "VEHICLE_BLOCK_NOT_FOUND",
        }
    }
}

/// A request that the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// One or more fields are malformed or out of range.
    #[error("{}", describe_violations(.0))]
    Invalid(Vec<Violation>),

    /// The request names something that does not exist.
    #[error("{} {:?} does not exist", .resource.name(), Echo(.id))]
    NotFound { resource: Resource, id: String },

    /// The vehicle is already booked on that date. `allocation_id` is empty
    /// when the caller may not know it (see [`super::access::shown_conflict`]).
    #[error("vehicle {vehicle_id:?} is already booked on {date}{}", by_allocation(.allocation_id))]
    VehicleAlreadyBooked {
        vehicle_id: String,
        date: NaiveDate,
        allocation_id: String,
    },

    /// The employee already holds a booking on that date; `allocation_id`
    /// as for [`DomainError::VehicleAlreadyBooked`].
    #[error(
        "employee {employee_id:?} already holds {} on {date}; an employee can hold one booking per date", holding(.allocation_id)
    )]
    EmployeeAlreadyBooked {
        employee_id: String,
        date: NaiveDate,
        allocation_id: String,
    },

    /// The booking's date has passed: it is history and read-only.
    #[error(
        "allocation {id:?} is history: its date {date} is before today ({today}), so it can no longer be changed or deleted"
    )]
    AllocationIsHistory {
        id: String,
        date: NaiveDate,
        today: NaiveDate,
    },

    /// The client's etag is not the current one: someone else changed the
    /// booking (or employee, vehicle, driver) since the client read it.
    #[error(
        "{} {id:?} has changed since it was read: etag {expected:?} is stale, the current etag is {current:?}; read it again and retry", .resource.name()
    )]
    EtagMismatch {
        resource: Resource,
        id: String,
        expected: String,
        current: String,
    },

    /// An id, e-mail, registration or licence number that is already
    /// another's.
    #[error("{} {field} {:?} is already taken by {} {holder_id:?}", .resource.name(), Echo(.value), .resource.name())]
    Taken {
        resource: Resource,
        /// `id`, `email`, `registration` or `license_number`.
        field: &'static str,
        value: String,
        holder_id: String,
    },

    /// The driver already drives another vehicle on some date from `from`.
    #[error(
        "driver {driver_id:?} is already assigned to vehicle {vehicle_id:?} on dates from {from} on; assign that vehicle another driver first"
    )]
    DriverAlreadyAssigned {
        driver_id: String,
        vehicle_id: String,
        from: chrono::NaiveDate,
    },

    /// Bookings from today on stand in the way of the change. The message
    /// names none of them (the details list the first few): the full list
    /// is a history query away.
    #[error(
        "{} {id:?} has {total} booking(s) from today on; ListAllocationHistory with its {}_id and start_date today lists them; cancel them, or retry with cancel_conflicting_bookings",
        .resource.name(), .resource.name()
    )]
    HasFutureBookings {
        resource: Resource,
        id: String,
        /// The first [`DomainError::MAX_LISTED`] of them.
        allocation_ids: Vec<String>,
        total: usize,
    },

    /// The vehicle is out of service on the date.
    #[error(
        "vehicle {vehicle_id:?} is out of service on {date}: block {block_id:?} runs from {start_date} to {end_date}"
    )]
    VehicleOutOfService {
        vehicle_id: String,
        date: NaiveDate,
        block_id: String,
        start_date: NaiveDate,
        end_date: NaiveDate,
    },

    /// The employee is deactivated, the vehicle retired or the driver
    /// deactivated, and the request needs it active.
    #[error("{} {id:?} is {}", .resource.name(), inactive_word(*.resource))]
    Inactive { resource: Resource, id: String },

    /// Nobody is assigned to drive the vehicle on the date.
    #[error("vehicle {vehicle_id:?} has no driver on {date}; assign one with AssignDriver")]
    NoDriver { vehicle_id: String, date: NaiveDate },

    /// The block has ended: it is history and read-only.
    #[error(
        "vehicle block {id:?} ended on {end_date}, before today ({today}); it is history and can't be deleted"
    )]
    BlockIsHistory {
        id: String,
        end_date: NaiveDate,
        today: NaiveDate,
    },

    /// The caller may not do this (see [`super::access`]).
    #[error("permission denied: {0}")]
    PermissionDenied(Denied),

    /// The idempotency key names a booking that has since been deleted.
    #[error(
        "request_id {request_id:?} created allocation {allocation_id:?}, which has since been deleted"
    )]
    IdempotentAllocationDeleted {
        request_id: String,
        allocation_id: String,
    },
}

impl From<Denied> for DomainError {
    fn from(denied: Denied) -> Self {
        Self::PermissionDenied(denied)
    }
}

impl DomainError {
    /// A single invalid field.
    pub fn invalid(violation: Violation) -> Self {
        Self::Invalid(vec![violation])
    }

    /// `resource` `id` does not exist.
    pub fn not_found(resource: Resource, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            id: id.into(),
        }
    }

    /// The machine-readable reason, as in `google.rpc.ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(violations) => violations
                .first()
                .map_or("INVALID_ARGUMENT", |v| v.reason.as_str()),
            Self::NotFound { resource, .. } => resource.not_found_reason(),
            Self::VehicleAlreadyBooked { .. } => "VEHICLE_ALREADY_BOOKED",
            Self::EmployeeAlreadyBooked { .. } => "EMPLOYEE_ALREADY_BOOKED",
            Self::AllocationIsHistory { .. } => "ALLOCATION_IS_HISTORY",
            Self::EtagMismatch { .. } => "ETAG_MISMATCH",
            Self::Taken {
                resource, field, ..
            } => match (*field, resource) {
                ("email", _) => "EMAIL_TAKEN",
                ("registration", _) => "REGISTRATION_TAKEN",
                ("license_number", _) => "LICENSE_NUMBER_TAKEN",
                (_, Resource::Employee) => "EMPLOYEE_ALREADY_EXISTS",
                (_, Resource::Driver) => "DRIVER_ALREADY_EXISTS",
                (_, _) => "VEHICLE_ALREADY_EXISTS",
            },
            Self::DriverAlreadyAssigned { .. } => "DRIVER_ALREADY_ASSIGNED",
            Self::HasFutureBookings { .. } => "HAS_FUTURE_BOOKINGS",
            Self::VehicleOutOfService { .. } => "VEHICLE_OUT_OF_SERVICE",
            Self::Inactive { resource, .. } => match resource {
                Resource::Employee => "EMPLOYEE_DEACTIVATED",
                Resource::Driver => "DRIVER_DEACTIVATED",
                _ => "VEHICLE_RETIRED",
            },
            Self::NoDriver { .. } => "VEHICLE_HAS_NO_DRIVER",
            Self::BlockIsHistory { .. } => "VEHICLE_BLOCK_IS_HISTORY",
            Self::IdempotentAllocationDeleted { .. } => "ALLOCATION_NOT_FOUND",
            Self::PermissionDenied(denied) => denied.reason(),
        }
    }
}

impl DomainError {
    /// How many affected booking ids a refusal lists: every error's
    /// trailers must fit the few KiB gRPC clients take.
    pub const MAX_LISTED: usize = 10;

    /// The booking a conflict names, if it is one that does.
    pub fn conflicting_booking(&self) -> Option<&str> {
        match self {
            Self::VehicleAlreadyBooked { allocation_id, .. }
            | Self::EmployeeAlreadyBooked { allocation_id, .. } => Some(allocation_id),
            _ => None,
        }
    }

    /// The same conflict without the booking's id.
    pub fn without_booking(self) -> Self {
        match self {
            Self::VehicleAlreadyBooked {
                vehicle_id, date, ..
            } => Self::VehicleAlreadyBooked {
                vehicle_id,
                date,
                allocation_id: String::new(),
            },
            Self::EmployeeAlreadyBooked {
                employee_id, date, ..
            } => Self::EmployeeAlreadyBooked {
                employee_id,
                date,
                allocation_id: String::new(),
            },
            other => other,
        }
    }
}

fn by_allocation(id: &str) -> String {
    if id.is_empty() {
        String::new()
    } else {
        format!(" by allocation {id:?}")
    }
}

fn holding(id: &str) -> String {
    if id.is_empty() {
        "a booking".to_owned()
    } else {
        format!("allocation {id:?}")
    }
}

fn inactive_word(resource: Resource) -> &'static str {
    match resource {
        Resource::Vehicle => "retired; reactivate it first",
        _ => "deactivated; reactivate them first",
    }
}

/// The most violations a message describes; the rest are counted.
pub const DESCRIBED_VIOLATIONS: usize = 3;

fn describe_violations(violations: &[Violation]) -> String {
    match violations {
        [] => "invalid request".to_owned(),
        [one] => one.description.clone(),
        many => {
            let mut text = many
                .iter()
                .take(DESCRIBED_VIOLATIONS)
                .map(|v| v.description.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if many.len() > DESCRIBED_VIOLATIONS {
                text.push_str(&format!("; and {} more", many.len() - DESCRIBED_VIOLATIONS));
            }
            text
        }
    }
}

/// Collects violations so that a request with several bad fields is answered
/// with all of them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many violations are recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The violations recorded, in order.
    pub fn into_vec(self) -> Vec<Violation> {
        self.0
    }

    /// Records `violation`.
    pub fn push(&mut self, violation: Violation) {
        self.0.push(violation);
    }

    /// Unwraps `result`, recording its violation; `None` when it failed.
    pub fn check<T>(&mut self, result: Result<T, Violation>) -> Option<T> {
        result.map_err(|v| self.push(v)).ok()
    }

    /// `Ok(value)` when nothing was recorded, else every violation.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, DomainError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(DomainError::Invalid(self.0))
        }
    }
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The caller may act on their own bookings only, and this one is not
    /// theirs (or does not exist: the answer is the same, so ids can't be
    /// probed).
    NotOwner,
    /// The action needs one of these roles, which the caller lacks.
    RoleRequired(&'static [Role]),
}

impl Denied {
    /// The machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotOwner => "NOT_OWNER",
            Self::RoleRequired(_) => "ROLE_REQUIRED",
        }
    }

    /// The roles that would do, comma-separated (`metadata.roles`).
    pub fn roles_text(&self) -> String {
        match self {
            Self::NotOwner => String::new(),
            Self::RoleRequired(roles) => roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotOwner => f.write_str(
                "the caller may act only on their own bookings, and this is not one of them",
            ),
            Self::RoleRequired(roles) if roles.len() == 1 => {
                write!(f, "this call needs the role {}", roles[0])
            }
            Self::RoleRequired(_) => {
                write!(f, "this call needs one of the roles {}", self.roles_text())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn echoed_values_are_cut_to_64_characters() {
        use super::Echo;
        let long = "é".repeat(5000);
        let shown = format!("{:?}", Echo(&long));
        assert_eq!(shown, format!("\"{}…\"", "é".repeat(64)));
        assert_eq!(format!("{}", Echo("2026-13-01")), "2026-13-01");
        assert_eq!(Echo(&"x".repeat(64)).to_string(), "x".repeat(64));
    }

    use super::*;

    #[test]
    fn several_violations_are_all_described_and_the_first_gives_the_reason() {
        let mut violations = Violations::new();
        violations.push(Violation::required("allocation.employee_id"));
        violations.push(Violation::required("allocation.vehicle_id"));
        let err = violations.finish(|| ()).unwrap_err();
        assert_eq!(err.reason(), "FIELD_REQUIRED");
        assert_eq!(
            err.to_string(),
            "allocation.employee_id is required; allocation.vehicle_id is required"
        );
    }

    #[test]
    fn a_message_describes_the_first_violations_and_counts_the_rest() {
        let violations = (0..10_000)
            .map(|i| Violation::required(&format!("f{i}")))
            .collect();
        assert_eq!(
            DomainError::Invalid(violations).to_string(),
            "f0 is required; f1 is required; f2 is required; and 9997 more"
        );
    }

    #[test]
    fn text_is_clipped_to_bytes_on_a_character_boundary() {
        assert_eq!(clip_bytes("abc", 3), "abc");
        assert_eq!(clip_bytes("abcdef", 5), "ab…");
        // "é" is two bytes: never cut in half.
        let text = "é".repeat(10);
        let clipped = clip_bytes(&text, 8);
        assert_eq!(clipped, "éé…");
        assert!(clipped.len() <= 8);
    }

    #[test]
    fn conflicts_name_the_conflicting_booking() {
        let err = DomainError::VehicleAlreadyBooked {
            vehicle_id: "veh-0001".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            allocation_id: "a-1".into(),
        };
        assert_eq!(err.reason(), "VEHICLE_ALREADY_BOOKED");
        assert!(err.to_string().contains("\"a-1\""), "{err}");
    }
}
