//! Bookings, and the rules for making, changing and cancelling them.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::calendar::BookingWindow;
use super::context::Origin;
use super::error::{DomainError, Echo, Resource, Violation, ViolationReason};

/// The longest purpose accepted, in characters.
pub const PURPOSE_MAX_CHARS: usize = 500;

/// The longest id or `request_id` accepted, in characters.
pub const ID_MAX_CHARS: usize = 128;

/// How long a `request_id` is remembered; a retry within this window returns
/// the booking the first call made.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);

/// One vehicle booked for one employee on one calendar day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    pub id: String,
    pub employee_id: String,
    pub vehicle_id: String,
    /// The vehicle's driver when the booking was made or its vehicle changed.
    pub driver_id: String,
    pub date: NaiveDate,
    /// Free text; empty when not given.
    pub purpose: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// Starts at 1 and grows by one on every update; the etag is made from it.
    pub version: u64,
}

impl Allocation {
    /// The booking's current etag.
    pub fn etag(&self) -> Etag {
        Etag(self.version)
    }
}

/// Identifies one version of a booking, for optimistic concurrency: an update
/// or delete that carries an etag only succeeds on that version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Etag(pub u64);

impl Etag {
    /// Parses an etag that a client sent back in `field`.
    pub fn parse(field: &str, value: &str) -> Result<Self, Violation> {
        value
            .parse::<u64>()
            .ok()
            .filter(|v| *v > 0 && !value.starts_with('+') && !value.starts_with('0'))
            .map(Etag)
            .ok_or_else(|| {
                Violation::new(
                    field,
                    ViolationReason::InvalidEtag,
                    format!(
                        "{field} {:?} is not an etag this service issued; use the etag of the allocation as last read",
                        Echo(value)
                    ),
                )
            })
    }
}

impl std::fmt::Display for Etag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Checks that `resource` `id` is still at the version the caller read,
/// when they sent its etag: one check for bookings and the fleet alike.
pub fn check_etag(
    resource: Resource,
    id: &str,
    expected: Option<Etag>,
    current: Etag,
) -> Result<(), DomainError> {
    match expected {
        Some(expected) if expected != current => Err(DomainError::EtagMismatch {
            resource,
            id: id.to_owned(),
            expected: expected.to_string(),
            current: current.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A request to book, already validated for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAllocation {
    /// The id the booking gets if it is made.
    pub id: String,
    pub employee_id: String,
    pub vehicle_id: String,
    pub date: NaiveDate,
    pub purpose: String,
    /// When the request arrived (milliseconds precision, which every backend
    /// stores exactly).
    pub now: DateTime<Utc>,
    /// The dates that can be booked at `now`.
    pub window: BookingWindow,
    /// Makes the request idempotent when set.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who asks, for the event.
    pub origin: Origin,
}

impl NewAllocation {
    /// Checks the booking date against the window.
    ///
    /// Backends call this after looking up the idempotency key, so a retry of
    /// a booking made just before midnight still returns it the next day.
    pub fn check_window(&self) -> Result<(), DomainError> {
        self.window
            .check("allocation.allocation_date", self.date)
            .map_err(DomainError::invalid)
    }

    /// The booking as stored, once the vehicle's driver is known.
    pub fn into_allocation(self, driver_id: String) -> Allocation {
        Allocation {
            id: self.id,
            employee_id: self.employee_id,
            vehicle_id: self.vehicle_id,
            driver_id,
            date: self.date,
            purpose: self.purpose,
            create_time: self.now,
            update_time: self.now,
            version: 1,
        }
    }
}

/// A client-chosen key that makes a create idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub request_id: String,
    /// A digest of what was asked for, to tell a retry from a different
    /// request that reuses the key.
    pub fingerprint: u64,
}

impl IdempotencyKey {
    /// The key for a create of `employee_id`, `vehicle_id`, `date`, `purpose`.
    pub fn new(
        request_id: String,
        employee_id: &str,
        vehicle_id: &str,
        date: NaiveDate,
        purpose: &str,
    ) -> Self {
        let date = date.to_string();
        let fingerprint = super::page::fingerprint(&[
            employee_id.as_bytes(),
            vehicle_id.as_bytes(),
            date.as_bytes(),
            purpose.as_bytes(),
        ]);
        Self {
            request_id,
            fingerprint,
        }
    }

    /// The instant before which a stored key has expired.
    pub fn expired_before(now: DateTime<Utc>) -> DateTime<Utc> {
        now - IDEMPOTENCY_WINDOW
    }

    /// Checks that a stored key with `stored_fingerprint` was made by the
    /// same request, not by a different one reusing the key.
    pub fn check_same_request(&self, stored_fingerprint: u64) -> Result<(), DomainError> {
        if stored_fingerprint == self.fingerprint {
            Ok(())
        } else {
            Err(DomainError::invalid(Violation::new(
                "request_id",
                ViolationReason::RequestIdReused,
                format!(
                    "request_id {:?} was already used for a different booking; use a new request_id for a new booking",
                    self.request_id
                ),
            )))
        }
    }
}

/// The fields an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationChanges {
    pub vehicle_id: Option<String>,
    pub date: Option<NaiveDate>,
    pub purpose: Option<String>,
}

/// A request to change a booking, already validated for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationUpdate {
    pub id: String,
    pub changes: AllocationChanges,
    /// When set, the update only applies to this version.
    pub expected_etag: Option<Etag>,
    pub now: DateTime<Utc>,
    pub window: BookingWindow,
    /// Who asks, for the event.
    pub origin: Origin,
}

impl AllocationUpdate {
    /// Checks the update against the booking as it is now: it must not be
    /// history, the etag must match, and a new date or vehicle must be
    /// bookable, exactly as for a create.
    pub fn check(&self, existing: &Allocation) -> Result<(), DomainError> {
        check_mutable(existing, self.expected_etag, &self.window)?;
        if self.changes.date.is_some() || self.changes.vehicle_id.is_some() {
            let date = self.changes.date.unwrap_or(existing.date);
            self.window
                .check("allocation.allocation_date", date)
                .map_err(DomainError::invalid)?;
        }
        Ok(())
    }

    /// Whether the booking's vehicle changes.
    pub fn changes_vehicle(&self, existing: &Allocation) -> bool {
        self.changes
            .vehicle_id
            .as_ref()
            .is_some_and(|v| *v != existing.vehicle_id)
    }

    /// Whether the booking moves to another vehicle or date, so the vehicle
    /// must be bookable there and its driver that day looked up again.
    pub fn moves(&self, existing: &Allocation) -> bool {
        self.changes_vehicle(existing) || self.changes.date.is_some_and(|d| d != existing.date)
    }

    /// The vehicle and date the booking has after the update.
    pub fn target<'a>(&'a self, existing: &'a Allocation) -> (&'a str, NaiveDate) {
        (
            self.changes
                .vehicle_id
                .as_deref()
                .unwrap_or(&existing.vehicle_id),
            self.changes.date.unwrap_or(existing.date),
        )
    }

    /// The booking after the update; `driver_id` is the driver on the new
    /// vehicle or date when the booking [moves](Self::moves).
    pub fn apply(&self, existing: &Allocation, driver_id: Option<String>) -> Allocation {
        let changes = &self.changes;
        Allocation {
            id: existing.id.clone(),
            employee_id: existing.employee_id.clone(),
            vehicle_id: changes
                .vehicle_id
                .clone()
                .unwrap_or_else(|| existing.vehicle_id.clone()),
            driver_id: driver_id.unwrap_or_else(|| existing.driver_id.clone()),
            date: changes.date.unwrap_or(existing.date),
            purpose: changes
                .purpose
                .clone()
                .unwrap_or_else(|| existing.purpose.clone()),
            create_time: existing.create_time,
            update_time: self.now,
            version: existing.version + 1,
        }
    }
}

/// A booking before and after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatedAllocation {
    pub before: Allocation,
    pub after: Allocation,
}

/// A request to cancel a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationDeletion {
    pub id: String,
    /// When set, the delete only applies to this version.
    pub expected_etag: Option<Etag>,
    /// When the request arrived: the event's time.
    pub now: DateTime<Utc>,
    pub window: BookingWindow,
    /// Who asks, for the event.
    pub origin: Origin,
}

impl AllocationDeletion {
    /// Checks the booking can be cancelled: not history, etag matching.
    pub fn check(&self, existing: &Allocation) -> Result<(), DomainError> {
        check_mutable(existing, self.expected_etag, &self.window)
    }
}

/// A booking can change only while it is not history, and only in the version
/// the client last read when it sends an etag.
fn check_mutable(
    existing: &Allocation,
    expected_etag: Option<Etag>,
    window: &BookingWindow,
) -> Result<(), DomainError> {
    if window.is_history(existing.date) {
        return Err(DomainError::AllocationIsHistory {
            id: existing.id.clone(),
            date: existing.date,
            today: window.today,
        });
    }
    check_etag(
        Resource::Allocation,
        &existing.id,
        expected_etag,
        existing.etag(),
    )
}

/// Checks a required id field: present and not absurdly long.
pub fn validate_id(field: &str, value: &str) -> Result<(), Violation> {
    if value.is_empty() {
        Err(Violation::required(field))
    } else {
        validate_max_chars(field, value, ID_MAX_CHARS)
    }
}

/// Checks a booking purpose.
pub fn validate_purpose(field: &str, value: &str) -> Result<(), Violation> {
    validate_max_chars(field, value, PURPOSE_MAX_CHARS)
}

fn validate_max_chars(field: &str, value: &str, max: usize) -> Result<(), Violation> {
    let chars = value.chars().count();
    if chars > max {
        Err(Violation::new(
            field,
            ViolationReason::TooLong,
            format!("{field} is {chars} characters long; at most {max} are allowed"),
        ))
    } else {
        Ok(())
    }
}

/// The `NOT_FOUND` error for a missing booking.
pub fn allocation_not_found(id: &str) -> DomainError {
    DomainError::not_found(Resource::Allocation, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BookingPolicy;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn window() -> BookingWindow {
        BookingPolicy::default().window(now())
    }

    fn booking(on: &str) -> Allocation {
        Allocation {
            id: "a-1".into(),
            employee_id: "emp-1".into(),
            vehicle_id: "veh-1".into(),
            driver_id: "drv-1".into(),
            date: date(on),
            purpose: "Client visit".into(),
            create_time: now(),
            update_time: now(),
            version: 3,
        }
    }

    fn update(changes: AllocationChanges, etag: Option<u64>) -> AllocationUpdate {
        AllocationUpdate {
            id: "a-1".into(),
            changes,
            expected_etag: etag.map(Etag),
            now: now(),
            window: window(),
            origin: Origin::new(super::super::context::Actor::anonymous(), "req-1"),
        }
    }

    #[test]
    fn etags_parse_only_in_the_form_issued() {
        assert_eq!(Etag::parse("etag", "17"), Ok(Etag(17)));
        assert_eq!(Etag(17).to_string(), "17");
        for bad in [
            "",
            "0",
            "017",
            "+17",
            "-1",
            "abc",
            "\"17\"",
            "99999999999999999999",
        ] {
            let err = Etag::parse("etag", bad).unwrap_err();
            assert_eq!(err.reason, ViolationReason::InvalidEtag, "{bad:?}");
        }
    }

    #[test]
    fn history_is_read_only() {
        let past = booking("2026-11-25");
        let err = update(AllocationChanges::default(), None)
            .check(&past)
            .unwrap_err();
        assert_eq!(err.reason(), "ALLOCATION_IS_HISTORY");
        let deletion = AllocationDeletion {
            id: "a-1".into(),
            expected_etag: None,
            now: now(),
            window: window(),
            origin: Origin::new(super::super::context::Actor::anonymous(), "req-1"),
        };
        assert_eq!(
            deletion.check(&past).unwrap_err().reason(),
            "ALLOCATION_IS_HISTORY"
        );
        assert!(deletion.check(&booking("2026-11-26")).is_ok());
    }

    #[test]
    fn a_stale_etag_is_refused_and_the_current_one_accepted() {
        let current = booking("2026-12-01");
        let purpose = AllocationChanges {
            purpose: Some("x".into()),
            ..Default::default()
        };
        assert!(update(purpose.clone(), Some(3)).check(&current).is_ok());
        assert!(update(purpose.clone(), None).check(&current).is_ok());
        let err = update(purpose, Some(2)).check(&current).unwrap_err();
        assert_eq!(
            err,
            DomainError::EtagMismatch {
                resource: Resource::Allocation,
                id: "a-1".into(),
                expected: "2".into(),
                current: "3".into()
            }
        );
    }

    #[test]
    fn a_new_date_or_vehicle_must_be_bookable() {
        let current = booking("2026-12-01");
        let too_far = AllocationChanges {
            date: Some(date("2027-06-01")),
            ..Default::default()
        };
        assert_eq!(
            update(too_far, None).check(&current).unwrap_err().reason(),
            "DATE_TOO_FAR_AHEAD"
        );
        let past = AllocationChanges {
            date: Some(date("2026-11-20")),
            ..Default::default()
        };
        assert_eq!(
            update(past, None).check(&current).unwrap_err().reason(),
            "DATE_IN_PAST"
        );
    }

    #[test]
    fn apply_changes_only_the_named_fields_and_bumps_the_version() {
        let current = booking("2026-12-01");
        let changes = AllocationChanges {
            vehicle_id: Some("veh-2".into()),
            ..Default::default()
        };
        let upd = update(changes, None);
        assert!(upd.changes_vehicle(&current));
        let after = upd.apply(&current, Some("drv-2".into()));
        assert_eq!(after.vehicle_id, "veh-2");
        assert_eq!(after.driver_id, "drv-2");
        assert_eq!(after.date, current.date);
        assert_eq!(after.purpose, current.purpose);
        assert_eq!(after.version, 4);
        assert_ne!(after.etag(), current.etag());
    }

    #[test]
    fn idempotency_keys_tell_a_retry_from_a_different_request() {
        let d = date("2026-12-01");
        let key = IdempotencyKey::new("r-1".into(), "emp-1", "veh-1", d, "");
        let same = IdempotencyKey::new("r-1".into(), "emp-1", "veh-1", d, "");
        let other = IdempotencyKey::new("r-1".into(), "emp-1", "veh-2", d, "");
        assert!(key.check_same_request(same.fingerprint).is_ok());
        assert_eq!(
            key.check_same_request(other.fingerprint)
                .unwrap_err()
                .reason(),
            "REQUEST_ID_REUSED"
        );
    }

    #[test]
    fn purpose_is_limited_in_characters_not_bytes() {
        assert!(validate_purpose("p", &"é".repeat(500)).is_ok());
        let err = validate_purpose("p", &"é".repeat(501)).unwrap_err();
        assert_eq!(err.reason, ViolationReason::TooLong);
    }

    #[test]
    fn ids_are_required() {
        assert_eq!(
            validate_id("allocation.employee_id", "")
                .unwrap_err()
                .reason,
            ViolationReason::Required
        );
        assert!(validate_id("allocation.employee_id", "emp-1").is_ok());
    }
}
