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
use crate::domain::error::clip_bytes;
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
                let sent = sent_violations(violations);
                // The fields at fault, each once, the first few.
                let mut fields: Vec<String> = Vec::new();
                for v in violations {
                    if fields.len() == SENT_VIOLATIONS {
                        break;
                    }
                    let field = clip_bytes(&v.field, FIELD_BYTES);
                    if !fields.iter().any(|f| *f == field) {
                        fields.push(field.into_owned());
                    }
                }
                let mut info = metadata(&[("fields", &fields.join(","))]);
                if sent.len() < violations.len() {
                    info.insert("violations".to_owned(), violations.len().to_string());
                }
                details.set_bad_request(sent);
                info
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
                let mut info = metadata(&[
                    ("vehicle_id", vehicle_id),
                    ("allocation_date", &date.to_string()),
                ]);
                conflicting_booking(&mut details, &mut info, allocation_id, &error);
                info
            }
            DomainError::EmployeeAlreadyBooked {
                employee_id,
                date,
                allocation_id,
            } => {
                let mut info = metadata(&[
                    ("employee_id", employee_id),
                    ("allocation_date", &date.to_string()),
                ]);
                conflicting_booking(&mut details, &mut info, allocation_id, &error);
                info
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
                let name = format!("{}/{id}", resource.collection());
                // The first few only, whatever the domain passed: the
                // whole list is a ListAllocationHistory away.
                let listed: Vec<&str> = allocation_ids
                    .iter()
                    .take(DomainError::MAX_LISTED)
                    .map(String::as_str)
                    .collect();
                metadata(&[
                    ("resource", &name),
                    ("allocation_ids", &listed.join(",")),
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
        bounded(
            code_of(&error),
            error.reason(),
            &error.to_string(),
            details,
            info,
        )
    }
}

/// The most bytes an error's `grpc-*` trailers take, whatever the data:
/// gRPC clients refuse a header list past their limit (grpcio 16 KiB,
/// grpc-java 8 KiB) and report RESOURCE_EXHAUSTED in place of the error.
/// Under 4 KiB with room for the other headers of a trailers-only answer.
pub const TRAILER_BUDGET: usize = 3584;

/// The most bytes of a status message: it is sent twice, percent-encoded in
/// `grpc-message` and in the details.
const MESSAGE_BYTES: usize = 360;

/// The most field violations sent, and the most bytes of their fields and
/// descriptions together (the first is always sent); `metadata.violations`
/// counts them all when some are left out.
pub const SENT_VIOLATIONS: usize = 10;
const VIOLATION_BYTES: usize = 800;
const FIELD_BYTES: usize = 64;
const DESCRIPTION_BYTES: usize = 360;

/// The violations a status carries: the first few, each cut short.
fn sent_violations(violations: &[crate::domain::Violation]) -> Vec<FieldViolation> {
    let mut sent = Vec::new();
    let mut bytes = 0;
    for v in violations.iter().take(SENT_VIOLATIONS) {
        let field = clip_bytes(&v.field, FIELD_BYTES);
        let description = clip_bytes(&v.description, DESCRIPTION_BYTES);
        bytes += field.len() + description.len();
        if !sent.is_empty() && bytes > VIOLATION_BYTES {
            break;
        }
        sent.push(FieldViolation::new(field, description));
    }
    sent
}

/// Names the booking a conflict is with, unless it was withheld (empty).
fn conflicting_booking(
    details: &mut ErrorDetails,
    info: &mut HashMap<String, String>,
    allocation_id: &str,
    error: &DomainError,
) {
    if !allocation_id.is_empty() {
        details.set_resource_info("allocation", allocation_id, "", error.to_string());
        info.insert("allocation_id".to_owned(), allocation_id.to_owned());
    }
}

/// The status, its message cut to [`MESSAGE_BYTES`]; should its trailers
/// still exceed [`TRAILER_BUDGET`], only the `ErrorInfo` is kept, its
/// values cut short.
fn bounded(
    code: Code,
    reason: &str,
    message: &str,
    mut details: ErrorDetails,
    info: HashMap<String, String>,
) -> Status {
    details.set_error_info(reason, ERROR_DOMAIN, info.clone());
    let status = Status::with_error_details(code, clip_bytes(message, MESSAGE_BYTES), details);
    if trailer_bytes(&status) <= TRAILER_BUDGET {
        return status;
    }
    let info: HashMap<String, String> = info
        .into_iter()
        .map(|(key, value)| (key, clip_bytes(&value, 64).into_owned()))
        .collect();
    Status::with_error_details(
        code,
        clip_bytes(message, MESSAGE_BYTES / 2),
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, info),
    )
}

/// The bytes of the `grpc-*` headers `status` is sent as (names and
/// values, as tonic writes them).
pub fn trailer_bytes(status: &Status) -> usize {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        return usize::MAX;
    }
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
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

    /// The bytes of every header `status` is sent with, as tonic sends it.
    fn sent_bytes(status: Status) -> usize {
        let response = status.into_http::<()>();
        response
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum()
    }

    /// An id of the longest length allowed.
    fn long_id(n: usize) -> String {
        format!("{n:0>128}")
    }

    #[test]
    fn many_bookings_in_the_way_fit_a_clients_header_limit_and_the_first_ten_are_named() {
        for resource in [Resource::Vehicle, Resource::Employee, Resource::Driver] {
            let status = Status::from(DomainError::HasFutureBookings {
                resource,
                id: long_id(0),
                // More than the domain passes: the status caps them itself.
                allocation_ids: (1..=1000).map(long_id).collect(),
                total: 1000,
            });
            let details = status.get_error_details();
            let info = details.error_info().unwrap();
            assert_eq!(info.reason, "HAS_FUTURE_BOOKINGS");
            let listed: Vec<_> = info.metadata["allocation_ids"].split(',').collect();
            assert_eq!(listed, (1..=10).map(long_id).collect::<Vec<_>>());
            assert_eq!(info.metadata["total"], "1000");
            assert!(status.message().contains("ListAllocationHistory"));
            let bytes = sent_bytes(status);
            assert!(bytes < 4096, "{resource:?}: {bytes} bytes of headers");
        }
    }

    #[test]
    fn ten_thousand_violations_fit_and_are_counted() {
        // Each echoes the caller's value at its longest and costliest to
        // encode (the message is percent-encoded).
        let violations: Vec<Violation> = (0..10_000)
            .map(|i| {
                let field = format!("update_mask.paths[{i}]");
                let description = format!(
                    "update_mask path {:?} cannot be updated; the updatable fields are vehicle_id, allocation_date, purpose",
                    crate::domain::error::Echo(&"é\" ".repeat(1000))
                );
                Violation::new(
                    field,
                    crate::domain::ViolationReason::InvalidValue,
                    description,
                )
            })
            .collect();
        let status = Status::from(DomainError::Invalid(violations));
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "INVALID_VALUE");
        assert_eq!(info.metadata["violations"], "10000");
        let sent = details.bad_request().unwrap().field_violations.len();
        assert!((1..=SENT_VIOLATIONS).contains(&sent), "{sent}");
        assert!(status.message().len() <= MESSAGE_BYTES);
        let bytes = sent_bytes(status);
        assert!(bytes < 4096, "{bytes} bytes of headers");
    }

    /// Whatever the data, every error stays under the budget: each string
    /// of every variant 100,000 characters of the worst kind to encode.
    #[test]
    fn every_error_with_huge_values_stays_under_the_trailer_budget() {
        use crate::domain::access::{Denied, Role};
        let huge = "é\"%".repeat(100_000);
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let errors = [
            DomainError::invalid(Violation::new(
                huge.clone(),
                crate::domain::ViolationReason::TooLong,
                huge.clone(),
            )),
            DomainError::not_found(Resource::Vehicle, huge.clone()),
            DomainError::IdempotentAllocationDeleted {
                request_id: huge.clone(),
                allocation_id: huge.clone(),
            },
            DomainError::VehicleAlreadyBooked {
                vehicle_id: huge.clone(),
                date,
                allocation_id: huge.clone(),
            },
            DomainError::EmployeeAlreadyBooked {
                employee_id: huge.clone(),
                date,
                allocation_id: huge.clone(),
            },
            DomainError::AllocationIsHistory {
                id: huge.clone(),
                date,
                today: date,
            },
            DomainError::EtagMismatch {
                resource: Resource::Allocation,
                id: huge.clone(),
                expected: huge.clone(),
                current: huge.clone(),
            },
            DomainError::Taken {
                resource: Resource::Employee,
                field: "email",
                value: huge.clone(),
                holder_id: huge.clone(),
            },
            DomainError::DriverAlreadyAssigned {
                driver_id: huge.clone(),
                vehicle_id: huge.clone(),
                from: date,
            },
            DomainError::HasFutureBookings {
                resource: Resource::Vehicle,
                id: huge.clone(),
                allocation_ids: vec![huge.clone(); 1000],
                total: 1000,
            },
            DomainError::VehicleOutOfService {
                vehicle_id: huge.clone(),
                date,
                block_id: huge.clone(),
                start_date: date,
                end_date: date,
            },
            DomainError::Inactive {
                resource: Resource::Driver,
                id: huge.clone(),
            },
            DomainError::NoDriver {
                vehicle_id: huge.clone(),
                date,
            },
            DomainError::BlockIsHistory {
                id: huge.clone(),
                end_date: date,
                today: date,
            },
            DomainError::PermissionDenied(Denied::RoleRequired(&[
                Role::Employee,
                Role::BookingAgent,
                Role::Auditor,
                Role::FleetAdmin,
            ])),
        ];
        for error in errors {
            let reason = error.reason();
            let status = Status::from(error);
            assert_eq!(
                status.get_error_details().error_info().unwrap().reason,
                reason
            );
            let bytes = trailer_bytes(&status);
            assert!(bytes <= TRAILER_BUDGET, "{reason}: {bytes} bytes");
        }
    }

    #[test]
    fn a_conflict_whose_booking_is_withheld_names_none() {
        let status = Status::from(
            DomainError::VehicleAlreadyBooked {
                vehicle_id: "veh-1".into(),
                date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                allocation_id: "a-9".into(),
            }
            .without_booking(),
        );
        let details = status.get_error_details();
        assert!(
            !details
                .error_info()
                .unwrap()
                .metadata
                .contains_key("allocation_id")
        );
        assert!(details.resource_info().is_none());
        assert_eq!(
            status.message(),
            "vehicle \"veh-1\" is already booked on 2026-12-01"
        );
    }

    #[test]
    fn a_storage_failure_with_a_huge_message_is_logged_cut_short() {
        let error = StoreError::internal(
            "reading",
            std::io::Error::other(format!("near {}: syntax error", "?, ".repeat(500_000))),
        );
        let logged = error_chain(&error);
        assert!(
            logged.starts_with("storage failure: reading: near ?, "),
            "{logged}"
        );
        assert!(
            logged.len() <= crate::storage::ERROR_TEXT_BYTES,
            "{}",
            logged.len()
        );
        assert!(logged.ends_with('…'));
    }
}
