//! The one place where errors become gRPC statuses.
//!
//! Every status carries a `google.rpc.ErrorInfo` whose `reason` clients can
//! branch on, plus the detail that fits: `BadRequest` field violations for bad
//! input, `ResourceInfo` for what was missing or in the way,
//! `PreconditionFailure` for history. Storage failures are logged here with
//! their cause and answered without internals.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::DomainError;
use crate::domain::access::Denied;
use crate::reasons::{self, Reason};
use crate::storage::StoreError;

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "vehicle-allocation";

/// The gRPC code for a rule violation: its reason's, in the catalogue.
pub fn code_of(error: &DomainError) -> Code {
    reasons::find(error.reason()).map_or(Code::Internal, |reason| reason.code)
}

impl From<DomainError> for Status {
    fn from(error: DomainError) -> Self {
        crate::metrics::refusal(error.reason());
        let mut details = ErrorDetails::new();
        let metadata = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let info = match &error {
            DomainError::Invalid(violations) => {
                details.set_bad_request(
                    violations
                        .iter()
                        .map(|v| FieldViolation::new(&v.field, &v.description))
                        .collect::<Vec<_>>(),
                );
                let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
                metadata(&[("fields", &fields.join(","))])
            }
            DomainError::NotFound { resource, id } => {
                details.set_resource_info(resource.name(), id, "", error.to_string());
                metadata(&[("resource", resource.name()), ("id", id)])
            }
            DomainError::IdempotentAllocationDeleted {
                request_id,
                allocation_id,
            } => {
                details.set_resource_info("allocation", allocation_id, "", error.to_string());
                metadata(&[("request_id", request_id), ("allocation_id", allocation_id)])
            }
            DomainError::VehicleAlreadyBooked {
                vehicle_id,
                date,
                allocation_id,
            } => {
                details.set_resource_info("allocation", allocation_id, "", error.to_string());
                metadata(&[
                    ("vehicle_id", vehicle_id),
                    ("allocation_date", &date.to_string()),
                    ("allocation_id", allocation_id),
                ])
            }
            DomainError::EmployeeAlreadyBooked {
                employee_id,
                date,
                allocation_id,
            } => {
                details.set_resource_info("allocation", allocation_id, "", error.to_string());
                metadata(&[
                    ("employee_id", employee_id),
                    ("allocation_date", &date.to_string()),
                    ("allocation_id", allocation_id),
                ])
            }
            DomainError::AllocationIsHistory { id, date, today } => {
                details.add_precondition_failure_violation(
                    "ALLOCATION_IS_HISTORY",
                    format!("allocations/{id}"),
                    error.to_string(),
                );
                metadata(&[
                    ("allocation_id", id),
                    ("allocation_date", &date.to_string()),
                    ("today", &today.to_string()),
                ])
            }
            DomainError::EtagMismatch {
                resource,
                id,
                expected,
                current,
            } => {
                let id_key = format!("{}_id", resource.name().replace(' ', "_"));
                metadata(&[
                    (id_key.as_str(), id),
                    ("etag", expected),
                    ("current_etag", current),
                ])
            }
            DomainError::Taken {
                resource,
                field,
                value,
                holder_id,
            } => {
                details.set_resource_info(resource.name(), holder_id, "", error.to_string());
                metadata(&[
                    ("field", field),
                    ("value", &crate::domain::error::clip(value, 64)),
                    ("holder_id", holder_id),
                ])
            }
            DomainError::DriverAlreadyAssigned {
                driver_id,
                vehicle_id,
                from,
            } => {
                details.set_resource_info("vehicle", vehicle_id, "", error.to_string());
                metadata(&[
                    ("driver_id", driver_id),
                    ("vehicle_id", vehicle_id),
                    ("from", &from.to_string()),
                ])
            }
            DomainError::HasFutureBookings {
                resource,
                id,
                allocation_ids,
                total,
            } => {
                for booking in allocation_ids {
                    details.add_precondition_failure_violation(
                        "HAS_FUTURE_BOOKINGS",
                        format!("allocations/{booking}"),
                        format!("booking {booking} stands in the way"),
                    );
                }
                metadata(&[
                    ("resource", &format!("{}/{id}", resource.collection())),
                    ("allocation_ids", &allocation_ids.join(",")),
                    ("total", &total.to_string()),
                ])
            }
            DomainError::VehicleOutOfService {
                vehicle_id,
                date,
                block_id,
                start_date,
                end_date,
            } => {
                details.add_precondition_failure_violation(
                    "VEHICLE_OUT_OF_SERVICE",
                    format!("vehicles/{vehicle_id}/blocks/{block_id}"),
                    error.to_string(),
                );
                metadata(&[
                    ("vehicle_id", vehicle_id),
                    ("allocation_date", &date.to_string()),
                    ("block_id", block_id),
                    ("start_date", &start_date.to_string()),
                    ("end_date", &end_date.to_string()),
                ])
            }
            DomainError::Inactive { resource, id } => {
                details.add_precondition_failure_violation(
                    error.reason(),
                    format!("{}/{id}", resource.collection()),
                    error.to_string(),
                );
                metadata(&[("resource", resource.name()), ("id", id)])
            }
            DomainError::NoDriver { vehicle_id, date } => {
                details.add_precondition_failure_violation(
                    "VEHICLE_HAS_NO_DRIVER",
                    format!("vehicles/{vehicle_id}"),
                    error.to_string(),
                );
                metadata(&[
                    ("vehicle_id", vehicle_id),
                    ("allocation_date", &date.to_string()),
                ])
            }
            DomainError::BlockIsHistory {
                id,
                end_date,
                today,
            } => metadata(&[
                ("block_id", id),
                ("end_date", &end_date.to_string()),
                ("today", &today.to_string()),
            ]),
            DomainError::PermissionDenied(denied) => match denied {
                Denied::NotOwner => HashMap::new(),
                Denied::RoleRequired(roles) => {
                    let mut info = metadata(&[("roles", &denied.roles_text())]);
                    if let [role] = roles {
                        info.insert("role".to_owned(), role.as_str().to_owned());
                    }
                    info
                }
            },
        };
        details.set_error_info(error.reason(), ERROR_DOMAIN, info);
        Status::with_error_details(code_of(&error), error.to_string(), details)
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(rule) => rule.into(),
            StoreError::Unavailable { .. } => {
                tracing::error!(
                    error = %error_chain(&error),
                    request_id = crate::telemetry::request_id(),
                    "storage unavailable"
                );
                with_reason(
                    reasons::STORE_UNAVAILABLE,
                    "the service cannot reach its store right now; retry later",
                )
            }
            StoreError::Internal { .. } => {
                tracing::error!(
                    error = %error_chain(&error),
                    request_id = crate::telemetry::request_id(),
                    "storage failure"
                );
                with_reason(reasons::INTERNAL, "internal error")
            }
        }
    }
}

/// A status with only an `ErrorInfo`, its code the reason's.
pub fn with_reason(reason: Reason, message: &str) -> Status {
    crate::metrics::refusal(reason.name);
    Status::with_error_details(
        reason.code,
        message,
        ErrorDetails::with_error_info(reason.name, ERROR_DOMAIN, HashMap::new()),
    )
}

/// A status for `reason` with `metadata` in its `ErrorInfo`.
pub fn with_reason_metadata(reason: Reason, message: &str, metadata: &[(&str, &str)]) -> Status {
    crate::metrics::refusal(reason.name);
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Status::with_error_details(
        reason.code,
        message,
        ErrorDetails::with_error_info(reason.name, ERROR_DOMAIN, metadata),
    )
}

/// A status for `reason` whose `RetryInfo` says when to come back; its
/// `ErrorInfo` says the same in whole seconds (`retry_after_seconds`).
pub fn with_retry(reason: Reason, message: &str, wait: std::time::Duration) -> Status {
    crate::metrics::refusal(reason.name);
    let mut details = ErrorDetails::with_error_info(
        reason.name,
        ERROR_DOMAIN,
        HashMap::from([(
            "retry_after_seconds".to_owned(),
            super::edge::retry_after_seconds(wait).to_string(),
        )]),
    );
    details.set_retry_info(Some(wait));
    Status::with_error_details(reason.code, message, details)
}

pub use crate::storage::error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Resource, Violation};
    use chrono::NaiveDate;

    #[test]
    fn conflicts_are_already_exists_with_reason_and_the_conflicting_booking() {
        let status = Status::from(DomainError::VehicleAlreadyBooked {
            vehicle_id: "veh-1".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            allocation_id: "a-9".into(),
        });
        assert_eq!(status.code(), Code::AlreadyExists);
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "VEHICLE_ALREADY_BOOKED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["allocation_id"], "a-9");
        assert_eq!(details.resource_info().unwrap().resource_name, "a-9");
    }

    #[test]
    fn bad_input_carries_every_field_violation() {
        let status = Status::from(DomainError::Invalid(vec![
            Violation::required("allocation.employee_id"),
            Violation::required("allocation.vehicle_id"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["allocation.employee_id", "allocation.vehicle_id"]);
        assert_eq!(details.error_info().unwrap().reason, "FIELD_REQUIRED");
    }

    #[test]
    fn storage_failures_reveal_nothing_internal() {
        let status = Status::from(StoreError::internal(
            "reading",
            std::io::Error::other("disk I/O error at /secret/path"),
        ));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "INTERNAL"
        );

        let status = Status::from(StoreError::unavailable("x", std::io::Error::other("busy")));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("busy"));
    }

    /// Every reason the domain gives is in the catalogue, so no rule is
    /// answered with the fallback code.
    #[test]
    fn every_domain_reason_is_in_the_catalogue() {
        use crate::domain::access::{Denied, Role};
        use crate::domain::{Resource, ViolationReason};
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let violations = [
            ViolationReason::Required,
            ViolationReason::InvalidDate,
            ViolationReason::DateInPast,
            ViolationReason::DateTooFarAhead,
            ViolationReason::InvalidDateRange,
            ViolationReason::TooLong,
            ViolationReason::InvalidPageSize,
            ViolationReason::InvalidPageToken,
            ViolationReason::PageTokenMismatch,
            ViolationReason::UnknownFieldPath,
            ViolationReason::NothingToUpdate,
            ViolationReason::InvalidEtag,
            ViolationReason::RequestIdReused,
            ViolationReason::InvalidValue,
        ];
        let mut errors: Vec<(DomainError, Code)> = violations
            .into_iter()
            .map(|reason| {
                (
                    DomainError::invalid(Violation::new("f", reason, "d")),
                    Code::InvalidArgument,
                )
            })
            .collect();
        for resource in [
            Resource::Allocation,
            Resource::Employee,
            Resource::Vehicle,
            Resource::Driver,
            Resource::VehicleBlock,
        ] {
            errors.push((DomainError::not_found(resource, "x"), Code::NotFound));
        }
        errors.extend([
            (
                DomainError::IdempotentAllocationDeleted {
                    request_id: "r".into(),
                    allocation_id: "a".into(),
                },
                Code::NotFound,
            ),
            (
                DomainError::VehicleAlreadyBooked {
                    vehicle_id: "v".into(),
                    date,
                    allocation_id: "a".into(),
                },
                Code::AlreadyExists,
            ),
            (
                DomainError::EmployeeAlreadyBooked {
                    employee_id: "e".into(),
                    date,
                    allocation_id: "a".into(),
                },
                Code::AlreadyExists,
            ),
            (
                DomainError::AllocationIsHistory {
                    id: "a".into(),
                    date,
                    today: date,
                },
                Code::FailedPrecondition,
            ),
            (
                DomainError::EtagMismatch {
                    resource: Resource::Allocation,
                    id: "a".into(),
                    expected: "1".into(),
                    current: "2".into(),
                },
                Code::Aborted,
            ),
            (
                DomainError::DriverAlreadyAssigned {
                    driver_id: "d".into(),
                    vehicle_id: "v".into(),
                    from: date,
                },
                Code::AlreadyExists,
            ),
            (
                DomainError::HasFutureBookings {
                    resource: Resource::Vehicle,
                    id: "v".into(),
                    allocation_ids: vec!["a".into()],
                    total: 1,
                },
                Code::FailedPrecondition,
            ),
            (
                DomainError::VehicleOutOfService {
                    vehicle_id: "v".into(),
                    date,
                    block_id: "b".into(),
                    start_date: date,
                    end_date: date,
                },
                Code::FailedPrecondition,
            ),
            (
                DomainError::NoDriver {
                    vehicle_id: "v".into(),
                    date,
                },
                Code::FailedPrecondition,
            ),
            (
                DomainError::BlockIsHistory {
                    id: "b".into(),
                    end_date: date,
                    today: date,
                },
                Code::FailedPrecondition,
            ),
            (
                DomainError::PermissionDenied(Denied::NotOwner),
                Code::PermissionDenied,
            ),
            (
                DomainError::PermissionDenied(Denied::RoleRequired(&[Role::FleetAdmin])),
                Code::PermissionDenied,
            ),
        ]);
        for resource in [Resource::Employee, Resource::Driver, Resource::Vehicle] {
            errors.push((
                DomainError::Inactive {
                    resource,
                    id: "x".into(),
                },
                Code::FailedPrecondition,
            ));
            for field in ["id", "email", "registration", "license_number"] {
                errors.push((
                    DomainError::Taken {
                        resource,
                        field,
                        value: "x".into(),
                        holder_id: "y".into(),
                    },
                    Code::AlreadyExists,
                ));
            }
        }
        for (error, code) in errors {
            let reason = reasons::find(error.reason()).unwrap_or_else(|| panic!("{error:?}"));
            assert_eq!(reason.code, code, "{error:?}");
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn not_found_names_the_resource() {
        let status = Status::from(DomainError::not_found(Resource::Employee, "emp-404"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "employee \"emp-404\" does not exist");
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "EMPLOYEE_NOT_FOUND");
    }
}
