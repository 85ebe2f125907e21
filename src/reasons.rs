//! The catalogue of error reasons: every `ErrorInfo.reason` the service
//! answers with, its gRPC code, its HTTP status and what it means. The
//! domain, the gRPC layer and the gateway name reasons from here, and the
//! OpenAPI document is written from it, so a reason is described once.

use http::StatusCode;
use tonic::Code;

/// One reason an error can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    /// As in `ErrorInfo.reason` and the REST body's `reason`.
    pub name: &'static str,
    pub code: Code,
    /// The HTTP status when it is not the one grpc-gateway maps `code` to.
    http: Option<u16>,
    /// What it means, for the API documentation.
    pub doc: &'static str,
}

impl Reason {
    /// The HTTP status a REST caller sees.
    pub fn http(&self) -> StatusCode {
        match self.http {
            Some(status) => StatusCode::from_u16(status).expect("a valid status"),
            None => http_status(self.code),
        }
    }
}

macro_rules! catalogue {
    ($($name:ident: $code:ident $(($http:literal))?, $doc:literal;)*) => {
        $(
            #[doc = $doc]
            pub const $name: Reason = Reason {
                name: stringify!($name),
                code: Code::$code,
                http: catalogue!(@http $($http)?),
                doc: $doc,
            };
        )*
        /// Every reason, in the order they are documented.
        pub const ALL: &[Reason] = &[$($name),*];
    };
    (@http) => { None };
    (@http $http:literal) => { Some($http) };
}

catalogue! {
    // Bad input.
    FIELD_REQUIRED: InvalidArgument, "A required field is empty.";
    INVALID_DATE: InvalidArgument, "A date is not a real calendar date in YYYY-MM-DD form.";
    DATE_IN_PAST: InvalidArgument, "The booking date lies before today (in ORG_TIMEZONE).";
    DATE_TOO_FAR_AHEAD: InvalidArgument, "The booking date lies beyond today + MAX_DAYS_AHEAD.";
    INVALID_DATE_RANGE: InvalidArgument, "start_date is after end_date.";
    FIELD_TOO_LONG: InvalidArgument, "A text field is longer than allowed, or a list (the events' kind filter, an update_mask) has more entries than allowed.";
    INVALID_PAGE_SIZE: InvalidArgument, "page_size is negative.";
    INVALID_PAGE_TOKEN: InvalidArgument, "page_token was not issued by this service.";
    PAGE_TOKEN_MISMATCH: InvalidArgument, "page_token was issued for other filters.";
    UNKNOWN_FIELD_PATH: InvalidArgument, "An update_mask path is not an updatable field.";
    NOTHING_TO_UPDATE: InvalidArgument, "The update names no field to change.";
    INVALID_ETAG: InvalidArgument, "The etag (If-Match) is not one this service issues.";
    REQUEST_ID_REUSED: InvalidArgument, "The request_id (Idempotency-Key) was used for a different booking.";
    INVALID_VALUE: InvalidArgument, "A value is not of the accepted form: an e-mail address, a phone number, an id of letters, digits, '-', '_' and '.', seats from 0 to 100.";
    MALFORMED_JSON: InvalidArgument, "The request body is not valid JSON.";
    MISSING_BODY: InvalidArgument, "The request needs a JSON object as its body.";
    UNKNOWN_FIELD: InvalidArgument, "The body or query names a field the API does not have.";
    INVALID_FIELD: InvalidArgument, "A field has the wrong type or shape.";
    UNREADABLE_BODY: InvalidArgument, "The request body could not be read.";
    // UNIMPLEMENTED, as for METHOD_NOT_ALLOWED: the request is well formed
    // but asks for something this API does not support (another media
    // type), which is not bad input (INVALID_ARGUMENT).
    UNSUPPORTED_MEDIA_TYPE: Unimplemented (415), "The body is not sent as application/json.";
    BODY_TOO_LARGE: ResourceExhausted (413), "The body is larger than 64 KiB.";
    BAD_REQUEST: InvalidArgument, "The HTTP request is malformed.";
    MALFORMED_REQUEST: InvalidArgument, "The gRPC request message cannot be decoded: not protobuf of the method's request type, or a string field that is not UTF-8.";
    MESSAGE_TOO_LARGE: ResourceExhausted, "The gRPC request message is larger than the server accepts (4 MiB).";
    URI_TOO_LONG: InvalidArgument (414), "The request line's path and query are longer than 8 KiB.";
    HEADERS_TOO_LARGE: InvalidArgument (431), "The request's headers are larger than 32 KiB, or more than 100.";
    // Missing things.
    ALLOCATION_NOT_FOUND: NotFound, "No such booking (or the booking an Idempotency-Key made has since been cancelled).";
    EMPLOYEE_NOT_FOUND: NotFound, "No such employee.";
    VEHICLE_NOT_FOUND: NotFound, "No such vehicle.";
    DRIVER_NOT_FOUND: NotFound, "No such driver.";
    VEHICLE_BLOCK_NOT_FOUND: NotFound, "No such out-of-service block on that vehicle.";
    NO_SUCH_PATH: NotFound, "The gateway serves no such path.";
    METHOD_NOT_ALLOWED: Unimplemented (405), "The path does not take this method; Allow lists those it does.";
    // Rules.
    VEHICLE_ALREADY_BOOKED: AlreadyExists, "The vehicle is booked that day; metadata.allocation_id names the booking when the caller may read it (an employee is not told a colleague's).";
    EMPLOYEE_ALREADY_BOOKED: AlreadyExists, "The employee holds a booking that day; metadata.allocation_id names it when the caller may read it.";
    ALLOCATION_IS_HISTORY: FailedPrecondition, "The booking's date has passed: it is read-only.";
    ETAG_MISMATCH: Aborted, "The booking (or employee, driver, vehicle) changed since it was read; metadata.current_etag is the etag to read again.";
    EMPLOYEE_ALREADY_EXISTS: AlreadyExists, "An employee with that id exists.";
    DRIVER_ALREADY_EXISTS: AlreadyExists, "A driver with that id exists.";
    VEHICLE_ALREADY_EXISTS: AlreadyExists, "A vehicle with that id exists.";
    EMAIL_TAKEN: AlreadyExists, "Another employee has that e-mail; metadata.holder_id names them.";
    REGISTRATION_TAKEN: AlreadyExists, "Another vehicle has that registration; metadata.holder_id names it.";
    LICENSE_NUMBER_TAKEN: AlreadyExists, "Another driver has that licence number; metadata.holder_id names them.";
    DRIVER_ALREADY_ASSIGNED: AlreadyExists, "The driver drives another vehicle on some of those dates; metadata.vehicle_id names it.";
    HAS_FUTURE_BOOKINGS: FailedPrecondition, "Bookings from today on stand in the way; metadata.allocation_ids lists the first ten, metadata.total counts them, and ListAllocationHistory with that employee_id, driver_id or vehicle_id and start_date today lists them all. Retry with cancel_conflicting_bookings to cancel them.";
    VEHICLE_OUT_OF_SERVICE: FailedPrecondition, "The vehicle is out of service that day; metadata.block_id names the block.";
    EMPLOYEE_DEACTIVATED: FailedPrecondition, "The employee is deactivated.";
    DRIVER_DEACTIVATED: FailedPrecondition, "The driver is deactivated.";
    VEHICLE_RETIRED: FailedPrecondition, "The vehicle is retired.";
    VEHICLE_HAS_NO_DRIVER: FailedPrecondition, "Nobody drives the vehicle that day; assign a driver first.";
    VEHICLE_BLOCK_IS_HISTORY: FailedPrecondition, "The block has ended: it is read-only.";
    WATCH_TOO_SLOW: Aborted, "The event stream's subscriber took nothing for HTTP_IDLE_TIMEOUT while messages waited, and the stream was ended; resume with metadata.resume_token.";
    // Who may call.
    CREDENTIALS_MISSING: Unauthenticated, "No bearer token, API key or client certificate.";
    TOKEN_EXPIRED: Unauthenticated, "The bearer token has expired.";
    TOKEN_INVALID: Unauthenticated, "The bearer token is not valid (signature, algorithm, issuer, audience, claims).";
    API_KEY_INVALID: Unauthenticated, "The API key is not known.";
    NOT_OWNER: PermissionDenied, "An employee acting on a booking that is not theirs.";
    ROLE_REQUIRED: PermissionDenied, "The caller's roles do not allow this call; metadata.roles names those that would.";
    RATE_LIMITED: ResourceExhausted, "Too many requests, or failed authentications, from this caller; Retry-After says when to come back.";
    OVERLOADED: ResourceExhausted (503), "The server holds as many requests as it takes at once (MAX_IN_FLIGHT_REQUESTS), or as many of this caller's as one caller may (MAX_IN_FLIGHT_PER_CALLER); retry after a short, random pause.";
    IMPORT_RUNNING: ResourceExhausted, "Another import is running on the service (ImportFleet takes one at a time); retry when it has ended.";
    TOO_MANY_STREAMS: ResourceExhausted, "The caller has as many event streams open as one caller may (MAX_WATCH_STREAMS_PER_CALLER), or the server as many as it takes (MAX_WATCH_STREAMS); close one, or retry after the delay in RetryInfo.";
    // The service itself.
    STORE_UNAVAILABLE: Unavailable, "The service cannot reach its store; retry later.";
    UPSTREAM_UNAVAILABLE: Unavailable, "The gateway cannot reach the gRPC service; retry later.";
    TIMEOUT: DeadlineExceeded, "The request took longer than allowed.";
    INTERNAL: Internal, "An internal error; it is logged with its cause.";
}

/// The reason called `name`.
pub fn find(name: &str) -> Option<&'static Reason> {
    ALL.iter().find(|r| r.name == name)
}

/// The HTTP status for a gRPC code, as grpc-gateway maps them.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What any call can answer with: the caller's credentials and share, the
/// service's state, and transport-level refusals of the message.
pub const EVERY_CALL: &[Reason] = &[
    CREDENTIALS_MISSING,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    API_KEY_INVALID,
    RATE_LIMITED,
    OVERLOADED,
    STORE_UNAVAILABLE,
    TIMEOUT,
    INTERNAL,
    MALFORMED_REQUEST,
    MESSAGE_TOO_LARGE,
];

/// The gRPC path of a `vehicle_allocation.v1` method.
macro_rules! path {
    ($service:literal, $method:literal) => {
        concat!("/vehicle_allocation.v1.", $service, "/", $method)
    };
}

/// What each call can answer with besides [`EVERY_CALL`], keyed by its
/// gRPC path: the one list the REST documentation writes its error
/// responses from, and that the gRPC edge holds every answer to (in debug
/// builds, so the test suites check it).
pub const CALLS: &[(&str, &[Reason])] = &[
    (
        path!("AllocationService", "CreateAllocation"),
        &[
            FIELD_REQUIRED,
            INVALID_DATE,
            DATE_IN_PAST,
            DATE_TOO_FAR_AHEAD,
            FIELD_TOO_LONG,
            REQUEST_ID_REUSED,
            EMPLOYEE_NOT_FOUND,
            VEHICLE_NOT_FOUND,
            ALLOCATION_NOT_FOUND,
            VEHICLE_ALREADY_BOOKED,
            EMPLOYEE_ALREADY_BOOKED,
            EMPLOYEE_DEACTIVATED,
            VEHICLE_RETIRED,
            VEHICLE_OUT_OF_SERVICE,
            VEHICLE_HAS_NO_DRIVER,
            NOT_OWNER,
            ROLE_REQUIRED,
        ],
    ),
    (
        path!("AllocationService", "GetAllocation"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            ALLOCATION_NOT_FOUND,
            NOT_OWNER,
            ROLE_REQUIRED,
        ],
    ),
    (
        path!("AllocationService", "UpdateAllocation"),
        &[
            FIELD_REQUIRED,
            INVALID_DATE,
            DATE_IN_PAST,
            DATE_TOO_FAR_AHEAD,
            FIELD_TOO_LONG,
            UNKNOWN_FIELD_PATH,
            NOTHING_TO_UPDATE,
            INVALID_ETAG,
            ALLOCATION_NOT_FOUND,
            VEHICLE_NOT_FOUND,
            VEHICLE_ALREADY_BOOKED,
            EMPLOYEE_ALREADY_BOOKED,
            EMPLOYEE_DEACTIVATED,
            VEHICLE_RETIRED,
            VEHICLE_OUT_OF_SERVICE,
            VEHICLE_HAS_NO_DRIVER,
            ALLOCATION_IS_HISTORY,
            ETAG_MISMATCH,
            NOT_OWNER,
            ROLE_REQUIRED,
        ],
    ),
    (
        path!("AllocationService", "DeleteAllocation"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            INVALID_ETAG,
            ALLOCATION_NOT_FOUND,
            ALLOCATION_IS_HISTORY,
            ETAG_MISMATCH,
            NOT_OWNER,
            ROLE_REQUIRED,
        ],
    ),
    (
        path!("AllocationService", "ListAllocationHistory"),
        &[
            INVALID_DATE,
            INVALID_DATE_RANGE,
            FIELD_TOO_LONG,
            NOT_OWNER,
            ROLE_REQUIRED,
            INVALID_PAGE_SIZE,
            INVALID_PAGE_TOKEN,
            PAGE_TOKEN_MISMATCH,
        ],
    ),
    (
        path!("FleetService", "ListEmployees"),
        &[
            FIELD_TOO_LONG,
            ROLE_REQUIRED,
            INVALID_PAGE_SIZE,
            INVALID_PAGE_TOKEN,
            PAGE_TOKEN_MISMATCH,
        ],
    ),
    (
        path!("FleetService", "GetEmployee"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            EMPLOYEE_NOT_FOUND,
            ROLE_REQUIRED,
        ],
    ),
    (path!("FleetService", "CreateEmployee"), CREATE_ENTITY),
    (path!("FleetService", "UpdateEmployee"), UPDATE_ENTITY),
    (
        path!("FleetService", "DeactivateEmployee"),
        DEACTIVATE_ENTITY,
    ),
    (
        path!("FleetService", "ReactivateEmployee"),
        REACTIVATE_ENTITY,
    ),
    (path!("FleetService", "EraseEmployee"), DEACTIVATE_ENTITY),
    (
        path!("FleetService", "ListDrivers"),
        &[
            ROLE_REQUIRED,
            INVALID_PAGE_SIZE,
            INVALID_PAGE_TOKEN,
            PAGE_TOKEN_MISMATCH,
        ],
    ),
    (
        path!("FleetService", "GetDriver"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            DRIVER_NOT_FOUND,
            ROLE_REQUIRED,
        ],
    ),
    (path!("FleetService", "CreateDriver"), CREATE_ENTITY),
    (path!("FleetService", "UpdateDriver"), UPDATE_ENTITY),
    (path!("FleetService", "DeactivateDriver"), DEACTIVATE_ENTITY),
    (
        path!("FleetService", "ListVehicles"),
        &[
            ROLE_REQUIRED,
            INVALID_PAGE_SIZE,
            INVALID_PAGE_TOKEN,
            PAGE_TOKEN_MISMATCH,
        ],
    ),
    (
        path!("FleetService", "GetVehicle"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            VEHICLE_NOT_FOUND,
            ROLE_REQUIRED,
        ],
    ),
    (path!("FleetService", "CreateVehicle"), CREATE_ENTITY),
    (path!("FleetService", "UpdateVehicle"), UPDATE_ENTITY),
    (path!("FleetService", "RetireVehicle"), DEACTIVATE_ENTITY),
    (
        path!("FleetService", "ReactivateVehicle"),
        REACTIVATE_ENTITY,
    ),
    (
        path!("FleetService", "AssignDriver"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            INVALID_DATE,
            DATE_IN_PAST,
            VEHICLE_NOT_FOUND,
            DRIVER_NOT_FOUND,
            VEHICLE_RETIRED,
            DRIVER_DEACTIVATED,
            DRIVER_ALREADY_ASSIGNED,
            ROLE_REQUIRED,
        ],
    ),
    (
        path!("FleetService", "CreateVehicleBlock"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            INVALID_DATE,
            DATE_IN_PAST,
            INVALID_DATE_RANGE,
            VEHICLE_NOT_FOUND,
            HAS_FUTURE_BOOKINGS,
            ROLE_REQUIRED,
        ],
    ),
    (
        path!("FleetService", "ListVehicleBlocks"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            VEHICLE_NOT_FOUND,
            ROLE_REQUIRED,
            INVALID_PAGE_SIZE,
            INVALID_PAGE_TOKEN,
            PAGE_TOKEN_MISMATCH,
        ],
    ),
    (
        path!("FleetService", "DeleteVehicleBlock"),
        &[
            FIELD_REQUIRED,
            FIELD_TOO_LONG,
            VEHICLE_NOT_FOUND,
            VEHICLE_BLOCK_NOT_FOUND,
            VEHICLE_BLOCK_IS_HISTORY,
            ROLE_REQUIRED,
        ],
    ),
    (
        path!("FleetService", "ListAvailableVehicles"),
        &[
            FIELD_REQUIRED,
            INVALID_DATE,
            DATE_IN_PAST,
            DATE_TOO_FAR_AHEAD,
            ROLE_REQUIRED,
            INVALID_PAGE_SIZE,
            INVALID_PAGE_TOKEN,
            PAGE_TOKEN_MISMATCH,
        ],
    ),
    (
        path!("EventService", "ListEvents"),
        &[
            FIELD_TOO_LONG,
            INVALID_VALUE,
            NOT_OWNER,
            ROLE_REQUIRED,
            INVALID_PAGE_SIZE,
            INVALID_PAGE_TOKEN,
            PAGE_TOKEN_MISMATCH,
        ],
    ),
    (
        path!("EventService", "WatchEvents"),
        &[
            FIELD_TOO_LONG,
            INVALID_VALUE,
            NOT_OWNER,
            ROLE_REQUIRED,
            WATCH_TOO_SLOW,
            TOO_MANY_STREAMS,
        ],
    ),
];

/// Creating an employee, a driver or a vehicle.
const CREATE_ENTITY: &[Reason] = &[
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    INVALID_VALUE,
    EMPLOYEE_ALREADY_EXISTS,
    DRIVER_ALREADY_EXISTS,
    VEHICLE_ALREADY_EXISTS,
    EMAIL_TAKEN,
    REGISTRATION_TAKEN,
    LICENSE_NUMBER_TAKEN,
    DRIVER_NOT_FOUND,
    DRIVER_DEACTIVATED,
    DRIVER_ALREADY_ASSIGNED,
    ROLE_REQUIRED,
];

/// Changing one.
const UPDATE_ENTITY: &[Reason] = &[
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    INVALID_VALUE,
    UNKNOWN_FIELD_PATH,
    NOTHING_TO_UPDATE,
    INVALID_ETAG,
    ETAG_MISMATCH,
    EMPLOYEE_NOT_FOUND,
    DRIVER_NOT_FOUND,
    VEHICLE_NOT_FOUND,
    EMAIL_TAKEN,
    REGISTRATION_TAKEN,
    LICENSE_NUMBER_TAKEN,
    ROLE_REQUIRED,
];

/// Deactivating, retiring or erasing one.
const DEACTIVATE_ENTITY: &[Reason] = &[
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    EMPLOYEE_NOT_FOUND,
    DRIVER_NOT_FOUND,
    VEHICLE_NOT_FOUND,
    HAS_FUTURE_BOOKINGS,
    ROLE_REQUIRED,
];

/// Bringing one back.
const REACTIVATE_ENTITY: &[Reason] = &[
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    EMPLOYEE_NOT_FOUND,
    VEHICLE_NOT_FOUND,
    ROLE_REQUIRED,
];

/// What the call at gRPC `path` can answer with besides [`EVERY_CALL`];
/// `None` for a call this table does not own (health, reflection, import).
pub fn of_call(path: &str) -> Option<&'static [Reason]> {
    CALLS
        .iter()
        .find(|(call, _)| *call == path)
        .map(|(_, reasons)| *reasons)
}

/// Whether the call at gRPC `path` may answer with the reason `name`.
pub fn answers(path: &str, name: &str) -> bool {
    match of_call(path) {
        Some(reasons) => reasons.iter().chain(EVERY_CALL).any(|r| r.name == name),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_shouted() {
        let mut names: Vec<_> = ALL.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for name in names {
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn http_statuses_follow_the_code_unless_http_says_otherwise() {
        assert_eq!(VEHICLE_ALREADY_BOOKED.http(), StatusCode::CONFLICT);
        assert_eq!(ALLOCATION_IS_HISTORY.http(), StatusCode::BAD_REQUEST);
        assert_eq!(BODY_TOO_LARGE.http(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(METHOD_NOT_ALLOWED.http(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(RATE_LIMITED.http(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(find("TOKEN_EXPIRED"), Some(&TOKEN_EXPIRED));
        assert_eq!(find("NOPE"), None);
    }
}
