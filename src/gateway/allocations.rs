//! `/api/allocations`: book, read, change, cancel, and the history report.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Upstream;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::json::{
    AllocationChangesJson, AllocationJson, AllocationPageJson, HistoryQuery, NewAllocationJson,
};
use super::middleware::RequestId;
use crate::proto::v1::{
    CreateAllocationRequest, DeleteAllocationRequest, GetAllocationRequest,
    ListAllocationHistoryRequest, UpdateAllocationRequest,
};
use crate::reasons;

/// The header that makes a create idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `ETag` header for a booking's etag: the same value, quoted.
pub(super) fn etag_header(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The etag named by `If-Match`, unquoted; empty when absent or `*`.
pub(super) fn if_match(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(String::new());
    };
    let invalid = || {
        ApiError::invalid_field(
            reasons::INVALID_ETAG,
            "If-Match",
            "If-Match must be one etag as returned in the ETag header, e.g. \"3\"",
        )
    };
    let value = value.to_str().map_err(|_| invalid())?.trim();
    if value == "*" {
        return Ok(String::new());
    }
    if value.contains(',') || value.starts_with("W/") {
        return Err(invalid());
    }
    Ok(value.trim_matches('"').to_owned())
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<String, ApiError> {
    headers.get(name).map_or(Ok(String::new()), |value| {
        value.to_str().map(str::to_owned).map_err(|_| {
            ApiError::invalid_field(
                reasons::INVALID_FIELD,
                name,
                format!("{name} must be visible ASCII"),
            )
        })
    })
}

/// Book a vehicle for an employee on one day.
///
/// The booking's driver is the vehicle's driver. With an `Idempotency-Key`
/// header, repeating the request within 24 hours returns the first booking
/// instead of booking again.
#[utoipa::path(
    post, path = "/api/allocations", tag = "allocations", operation_id = "createAllocation",
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Makes the request safe to retry: the same key again returns the booking the first request made.")),
    request_body = NewAllocationJson,
    responses(
        (status = 201, description = "Booked.", body = AllocationJson, headers(
            ("Location" = String, description = "The booking's URL."),
            ("ETag" = String, description = "The booking's etag, quoted."))),
    )
)]
pub async fn create_allocation(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewAllocationJson>,
) -> Result<Response, ApiError> {
    let request = CreateAllocationRequest {
        allocation: Some(body.into()),
        request_id: header_text(&headers, IDEMPOTENCY_KEY)?,
    };
    let created = upstream
        .allocations
        .clone()
        .create_allocation(id.grpc(request))
        .await?
        .into_inner();
    let location = HeaderValue::from_str(&format!("/api/allocations/{}", created.id))
        .map_err(|_| ApiError::new(reasons::INTERNAL, "internal error"))?;
    let etag = etag_header(&created.etag);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location), (header::ETAG, etag)],
        Json(AllocationJson::from(created)),
    )
        .into_response())
}

/// Read one booking.
#[utoipa::path(
    get, path = "/api/allocations/{id}", tag = "allocations", operation_id = "getAllocation",
    params(("id" = String, Path, description = "The booking's id.")),
    responses(
        (status = 200, description = "The booking.", body = AllocationJson, headers(
            ("ETag" = String, description = "The booking's etag, quoted."))),
    )
)]
pub async fn get_allocation(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(allocation_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let found = upstream
        .allocations
        .clone()
        .get_allocation(id.grpc(GetAllocationRequest { id: allocation_id }))
        .await?
        .into_inner();
    let etag = etag_header(&found.etag);
    Ok(([(header::ETAG, etag)], Json(AllocationJson::from(found))).into_response())
}

/// Change a booking's vehicle, date or purpose.
///
/// Only the fields present in the body change. A new date or vehicle is
/// checked exactly like a new booking; a new vehicle brings its driver.
/// Bookings whose date has passed are history and cannot change.
#[utoipa::path(
    put, path = "/api/allocations/{id}", tag = "allocations", operation_id = "updateAllocation",
    params(
        ("id" = String, Path, description = "The booking's id."),
        ("If-Match" = Option<String>, Header,
         description = "The etag last read; the change fails with 409 (ETAG_MISMATCH) if the booking changed since.")),
    request_body = AllocationChangesJson,
    responses(
        (status = 200, description = "Changed.", body = AllocationJson, headers(
            ("ETag" = String, description = "The booking's new etag, quoted."))),
    )
)]
pub async fn update_allocation(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(allocation_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AllocationChangesJson>,
) -> Result<Response, ApiError> {
    let (allocation, paths) = body.into_update(allocation_id, if_match(&headers)?);
    let request = UpdateAllocationRequest {
        allocation: Some(allocation),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    let updated = upstream
        .allocations
        .clone()
        .update_allocation(id.grpc(request))
        .await?
        .into_inner();
    let etag = etag_header(&updated.etag);
    Ok(([(header::ETAG, etag)], Json(AllocationJson::from(updated))).into_response())
}

/// Cancel a booking that is not yet history.
#[utoipa::path(
    delete, path = "/api/allocations/{id}", tag = "allocations", operation_id = "deleteAllocation",
    params(
        ("id" = String, Path, description = "The booking's id."),
        ("If-Match" = Option<String>, Header,
         description = "The etag last read; the delete fails with 409 (ETAG_MISMATCH) if the booking changed since.")),
    responses(
        (status = 204, description = "Cancelled."),
    )
)]
pub async fn delete_allocation(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(allocation_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let request = DeleteAllocationRequest {
        id: allocation_id,
        etag: if_match(&headers)?,
    };
    upstream
        .allocations
        .clone()
        .delete_allocation(id.grpc(request))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The history report: bookings newest first, with filters.
///
/// Sorted by date, then id, both descending. Page with `page_token`; a token
/// only works with the filters it was issued for.
#[utoipa::path(
    get, path = "/api/allocations/history", tag = "allocations", operation_id = "listAllocationHistory",
    params(HistoryQuery),
    responses(
        (status = 200, description = "One page of bookings.", body = AllocationPageJson),
    )
)]
pub async fn list_allocation_history(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<AllocationPageJson>, ApiError> {
    let request = ListAllocationHistoryRequest::from(query);
    let page = upstream
        .allocations
        .clone()
        .list_allocation_history(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(AllocationPageJson {
        allocations: page
            .allocations
            .into_iter()
            .map(AllocationJson::from)
            .collect(),
        next_page_token: page.next_page_token,
        total_size: page.total_size,
    }))
}
