//! Fleet administration over REST: `fleet_admin` callers create and change
//! employees, drivers, vehicles and out-of-service blocks. Each handler maps
//! onto one `FleetService` call; the rules are the service's.
//!
//! Custom methods (`POST /api/employees/{id}:deactivate`) share their path
//! with `/api/employees/{id}` up to the colon, which the router can't tell
//! apart, so one handler per resource reads the verb after the last colon
//! (ids never hold one) and calls the documented handler for it.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::Upstream;
use super::admin_json::{
    AssignedDriverJson, BlockPageJson, CancelQuery, CreatedBlockJson, DeactivatedDriverJson,
    DeactivatedEmployeeJson, DriverAssignmentJson, DriverChangesJson, DriverPageJson, DriversQuery,
    EmployeeChangesJson, ErasedEmployeeJson, NewBlockJson, NewDriverJson, NewEmployeeJson,
    NewVehicleJson, RetiredVehicleJson, VehicleBlockJson, VehicleChangesJson, allocations,
};
use super::allocations::{etag_header, if_match};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::json::{DriverJson, EmployeeJson, PageQuery, VehicleJson};
use super::middleware::RequestId;
use crate::domain::error::Echo;
use crate::proto::v1;
use crate::reasons;

/// The custom methods, for the OpenAPI document (the router reaches them
/// through the per-resource dispatchers below).
#[derive(OpenApi)]
#[openapi(paths(
    deactivate_employee,
    reactivate_employee,
    erase_employee,
    deactivate_driver,
    retire_vehicle,
    reactivate_vehicle
))]
pub struct CustomMethods;

/// A created or changed entity: its JSON, `ETag`, and `Location` when new.
fn entity<T: serde::Serialize>(
    created: Option<String>,
    etag: &str,
    body: T,
) -> Result<Response, ApiError> {
    let etag = etag_header(etag);
    match created {
        Some(location) => {
            let location = HeaderValue::from_str(&location)
                .map_err(|_| ApiError::new(reasons::INTERNAL, "internal error"))?;
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location), (header::ETAG, etag)],
                Json(body),
            )
                .into_response())
        }
        None => Ok(([(header::ETAG, etag)], Json(body)).into_response()),
    }
}

/// Splits `id:verb`; a missing or unknown verb is a path the gateway does
/// not serve.
fn custom_method<'a>(
    collection: &str,
    target: &'a str,
    verbs: &[&str],
) -> Result<(String, &'a str), ApiError> {
    let known = |verb: &str| verbs.contains(&verb);
    match target.rsplit_once(':') {
        Some((id, verb)) if known(verb) => Ok((id.to_owned(), verb)),
        _ => Err(ApiError::new(
            reasons::NO_SUCH_PATH,
            format!(
                "there is no POST /api/{collection}/{}; the actions are {}",
                Echo(target),
                verbs
                    .iter()
                    .map(|v| format!("POST /api/{collection}/{{id}}:{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn cancel(query: &CancelQuery) -> bool {
    query.cancel_conflicting_bookings.unwrap_or_default()
}

// ---------------------------------------------------------------- employees

/// Add an employee.
///
/// The id may be given (the HR system's); otherwise one is assigned.
#[utoipa::path(
    post, path = "/api/employees", tag = "fleet administration", operation_id = "createEmployee",
    request_body = NewEmployeeJson,
    responses(
        (status = 201, description = "Added.", body = EmployeeJson, headers(
            ("Location" = String, description = "The employee's URL."),
            ("ETag" = String, description = "The employee's etag, quoted."))),
    )
)]
pub async fn create_employee(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiJson(body): ApiJson<NewEmployeeJson>,
) -> Result<Response, ApiError> {
    let request = v1::CreateEmployeeRequest {
        employee: Some(body.into()),
    };
    let created = upstream
        .fleet
        .clone()
        .create_employee(id.grpc(request))
        .await?
        .into_inner();
    let location = format!("/api/employees/{}", created.id);
    entity(
        Some(location),
        &created.etag.clone(),
        EmployeeJson::from(created),
    )
}

/// Change an employee's name, e-mail or department: the fields present.
#[utoipa::path(
    patch, path = "/api/employees/{id}", tag = "fleet administration", operation_id = "updateEmployee",
    params(
        ("id" = String, Path, example = "emp-00042", description = "The employee's id."),
        ("If-Match" = Option<String>, Header,
         description = "The etag last read; the change fails with 409 (ETAG_MISMATCH) if the employee changed since.")),
    request_body = EmployeeChangesJson,
    responses(
        (status = 200, description = "Changed.", body = EmployeeJson, headers(
            ("ETag" = String, description = "The employee's new etag, quoted."))),
    )
)]
pub async fn update_employee(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(employee_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EmployeeChangesJson>,
) -> Result<Response, ApiError> {
    let request = body.into_update(employee_id, if_match(&headers)?);
    let updated = upstream
        .fleet
        .clone()
        .update_employee(id.grpc(request))
        .await?
        .into_inner();
    entity(None, &updated.etag.clone(), EmployeeJson::from(updated))
}

/// `POST /api/employees/{id}:{verb}`.
pub async fn employee_action(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(target): ApiPath<String>,
    ApiQuery(query): ApiQuery<CancelQuery>,
) -> Result<Response, ApiError> {
    let (employee_id, verb) =
        custom_method("employees", &target, &["deactivate", "reactivate", "erase"])?;
    match verb {
        "deactivate" => deactivate_employee(upstream, id, employee_id, query).await,
        "erase" => erase_employee(upstream, id, employee_id, query).await,
        _ => reactivate_employee(upstream, id, employee_id).await,
    }
}

/// Deactivate an employee.
///
/// They can no longer book and are left out of the list unless
/// `show_deactivated`; their history stays. Their bookings from today on
/// refuse the change (HAS_FUTURE_BOOKINGS), or are cancelled with
/// `cancel_conflicting_bookings=true`.
#[utoipa::path(
    post, path = "/api/employees/{id}:deactivate", tag = "fleet administration",
    operation_id = "deactivateEmployee",
    params(("id" = String, Path, description = "The employee's id."), CancelQuery),
    responses(
        (status = 200, description = "Deactivated.", body = DeactivatedEmployeeJson),
    )
)]
async fn deactivate_employee(
    upstream: Upstream,
    id: RequestId,
    employee_id: String,
    query: CancelQuery,
) -> Result<Response, ApiError> {
    let request = v1::DeactivateEmployeeRequest {
        id: employee_id,
        cancel_conflicting_bookings: cancel(&query),
    };
    let done = upstream
        .fleet
        .clone()
        .deactivate_employee(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(DeactivatedEmployeeJson {
        employee: done.employee.unwrap_or_default().into(),
        cancelled_allocations: allocations(done.cancelled_allocations),
    })
    .into_response())
}

/// Erase an employee's personal data (an erasure request, GDPR Art. 17).
///
/// Their name and e-mail are replaced with a pseudonym (`erased-<hex>`,
/// `erased-<hex>@erased.invalid`) in their record and in every stored
/// event, and they are deactivated; an `employee.erased` event is appended.
/// Their id, department and bookings stay. Their bookings from today on
/// refuse the change (HAS_FUTURE_BOOKINGS), or are cancelled with
/// `cancel_conflicting_bookings=true`. Erasing again changes nothing.
#[utoipa::path(
    post, path = "/api/employees/{id}:erase", tag = "fleet administration",
    operation_id = "eraseEmployee",
    params(("id" = String, Path, description = "The employee's id."), CancelQuery),
    responses(
        (status = 200, description = "Erased.", body = ErasedEmployeeJson),
    )
)]
async fn erase_employee(
    upstream: Upstream,
    id: RequestId,
    employee_id: String,
    query: CancelQuery,
) -> Result<Response, ApiError> {
    let request = v1::EraseEmployeeRequest {
        id: employee_id,
        cancel_conflicting_bookings: cancel(&query),
    };
    let done = upstream
        .fleet
        .clone()
        .erase_employee(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(ErasedEmployeeJson {
        employee: done.employee.unwrap_or_default().into(),
        cancelled_allocations: allocations(done.cancelled_allocations),
    })
    .into_response())
}

/// Let a deactivated employee book again.
#[utoipa::path(
    post, path = "/api/employees/{id}:reactivate", tag = "fleet administration",
    operation_id = "reactivateEmployee",
    params(("id" = String, Path, description = "The employee's id.")),
    responses(
        (status = 200, description = "Active again.", body = EmployeeJson),
    )
)]
async fn reactivate_employee(
    upstream: Upstream,
    id: RequestId,
    employee_id: String,
) -> Result<Response, ApiError> {
    let request = v1::ReactivateEmployeeRequest { id: employee_id };
    let employee = upstream
        .fleet
        .clone()
        .reactivate_employee(id.grpc(request))
        .await?
        .into_inner();
    entity(None, &employee.etag.clone(), EmployeeJson::from(employee))
}

// ------------------------------------------------------------------ drivers

/// List active drivers in id order.
#[utoipa::path(
    get, path = "/api/drivers", tag = "fleet", operation_id = "listDrivers",
    params(DriversQuery),
    responses(
        (status = 200, description = "One page of drivers.", body = DriverPageJson),
    )
)]
pub async fn list_drivers(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiQuery(query): ApiQuery<DriversQuery>,
) -> Result<Json<DriverPageJson>, ApiError> {
    let request = v1::ListDriversRequest {
        show_deactivated: query.show_deactivated.unwrap_or_default(),
        page_size: query.page_size.unwrap_or_default(),
        page_token: query.page_token.unwrap_or_default(),
    };
    let page = upstream
        .fleet
        .clone()
        .list_drivers(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(DriverPageJson {
        drivers: page.drivers.into_iter().map(DriverJson::from).collect(),
        next_page_token: page.next_page_token,
        total_size: page.total_size,
    }))
}

/// Read one driver.
#[utoipa::path(
    get, path = "/api/drivers/{id}", tag = "fleet", operation_id = "getDriver",
    params(("id" = String, Path, example = "drv-0007", description = "The driver's id, e.g. drv-0007.")),
    responses(
        (status = 200, description = "The driver.", body = DriverJson),
    )
)]
pub async fn get_driver(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(driver_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let driver = upstream
        .fleet
        .clone()
        .get_driver(id.grpc(v1::GetDriverRequest { id: driver_id }))
        .await?
        .into_inner();
    entity(None, &driver.etag.clone(), DriverJson::from(driver))
}

/// Add a driver; assign them a vehicle with `PUT /api/vehicles/{id}/driver`.
#[utoipa::path(
    post, path = "/api/drivers", tag = "fleet administration", operation_id = "createDriver",
    request_body = NewDriverJson,
    responses(
        (status = 201, description = "Added.", body = DriverJson, headers(
            ("Location" = String, description = "The driver's URL."),
            ("ETag" = String, description = "The driver's etag, quoted."))),
    )
)]
pub async fn create_driver(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiJson(body): ApiJson<NewDriverJson>,
) -> Result<Response, ApiError> {
    let request = v1::CreateDriverRequest {
        driver: Some(body.into()),
    };
    let created = upstream
        .fleet
        .clone()
        .create_driver(id.grpc(request))
        .await?
        .into_inner();
    let location = format!("/api/drivers/{}", created.id);
    entity(
        Some(location),
        &created.etag.clone(),
        DriverJson::from(created),
    )
}

/// Change a driver's name, phone or licence number: the fields present.
#[utoipa::path(
    patch, path = "/api/drivers/{id}", tag = "fleet administration", operation_id = "updateDriver",
    params(
        ("id" = String, Path, example = "drv-0007", description = "The driver's id."),
        ("If-Match" = Option<String>, Header,
         description = "The etag last read; the change fails with 409 (ETAG_MISMATCH) if the driver changed since.")),
    request_body = DriverChangesJson,
    responses(
        (status = 200, description = "Changed.", body = DriverJson, headers(
            ("ETag" = String, description = "The driver's new etag, quoted."))),
    )
)]
pub async fn update_driver(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(driver_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DriverChangesJson>,
) -> Result<Response, ApiError> {
    let request = body.into_update(driver_id, if_match(&headers)?);
    let updated = upstream
        .fleet
        .clone()
        .update_driver(id.grpc(request))
        .await?
        .into_inner();
    entity(None, &updated.etag.clone(), DriverJson::from(updated))
}

/// `POST /api/drivers/{id}:{verb}`.
pub async fn driver_action(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(target): ApiPath<String>,
    ApiQuery(query): ApiQuery<CancelQuery>,
) -> Result<Response, ApiError> {
    let (driver_id, _) = custom_method("drivers", &target, &["deactivate"])?;
    deactivate_driver(upstream, id, driver_id, query).await
}

/// Deactivate a driver.
///
/// From today they drive no vehicle: the vehicles they drove have no driver
/// (and can't be booked) until one is assigned. The bookings they drive from
/// today on refuse the change (HAS_FUTURE_BOOKINGS), or are cancelled with
/// `cancel_conflicting_bookings=true`.
#[utoipa::path(
    post, path = "/api/drivers/{id}:deactivate", tag = "fleet administration",
    operation_id = "deactivateDriver",
    params(("id" = String, Path, description = "The driver's id."), CancelQuery),
    responses(
        (status = 200, description = "Deactivated.", body = DeactivatedDriverJson),
    )
)]
async fn deactivate_driver(
    upstream: Upstream,
    id: RequestId,
    driver_id: String,
    query: CancelQuery,
) -> Result<Response, ApiError> {
    let request = v1::DeactivateDriverRequest {
        id: driver_id,
        cancel_conflicting_bookings: cancel(&query),
    };
    let done = upstream
        .fleet
        .clone()
        .deactivate_driver(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(DeactivatedDriverJson {
        driver: done.driver.unwrap_or_default().into(),
        cancelled_allocations: allocations(done.cancelled_allocations),
    })
    .into_response())
}

// ----------------------------------------------------------------- vehicles

/// Add a vehicle, driven by `driver_id` from today.
#[utoipa::path(
    post, path = "/api/vehicles", tag = "fleet administration", operation_id = "createVehicle",
    request_body = NewVehicleJson,
    responses(
        (status = 201, description = "Added.", body = VehicleJson, headers(
            ("Location" = String, description = "The vehicle's URL."),
            ("ETag" = String, description = "The vehicle's etag, quoted."))),
    )
)]
pub async fn create_vehicle(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiJson(body): ApiJson<NewVehicleJson>,
) -> Result<Response, ApiError> {
    let request = v1::CreateVehicleRequest {
        vehicle: Some(body.into()),
    };
    let created = upstream
        .fleet
        .clone()
        .create_vehicle(id.grpc(request))
        .await?
        .into_inner();
    let location = format!("/api/vehicles/{}", created.id);
    entity(
        Some(location),
        &created.etag.clone(),
        VehicleJson::from(created),
    )
}

/// Change a vehicle's registration, make, model or seats: the fields
/// present.
#[utoipa::path(
    patch, path = "/api/vehicles/{id}", tag = "fleet administration", operation_id = "updateVehicle",
    params(
        ("id" = String, Path, example = "veh-0007", description = "The vehicle's id."),
        ("If-Match" = Option<String>, Header,
         description = "The etag last read; the change fails with 409 (ETAG_MISMATCH) if the vehicle changed since.")),
    request_body = VehicleChangesJson,
    responses(
        (status = 200, description = "Changed.", body = VehicleJson, headers(
            ("ETag" = String, description = "The vehicle's new etag, quoted."))),
    )
)]
pub async fn update_vehicle(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(vehicle_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<VehicleChangesJson>,
) -> Result<Response, ApiError> {
    let request = body.into_update(vehicle_id, if_match(&headers)?);
    let updated = upstream
        .fleet
        .clone()
        .update_vehicle(id.grpc(request))
        .await?
        .into_inner();
    entity(None, &updated.etag.clone(), VehicleJson::from(updated))
}

/// `POST /api/vehicles/{id}:{verb}`.
pub async fn vehicle_action(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(target): ApiPath<String>,
    ApiQuery(query): ApiQuery<CancelQuery>,
) -> Result<Response, ApiError> {
    let (vehicle_id, verb) = custom_method("vehicles", &target, &["retire", "reactivate"])?;
    match verb {
        "retire" => retire_vehicle(upstream, id, vehicle_id, query).await,
        _ => reactivate_vehicle(upstream, id, vehicle_id).await,
    }
}

/// Retire a vehicle.
///
/// It can't be booked and is left out of lists and availability unless
/// `show_retired`; its driver is free from today. Its bookings from today on
/// refuse the change (HAS_FUTURE_BOOKINGS), or are cancelled with
/// `cancel_conflicting_bookings=true`.
#[utoipa::path(
    post, path = "/api/vehicles/{id}:retire", tag = "fleet administration",
    operation_id = "retireVehicle",
    params(("id" = String, Path, description = "The vehicle's id."), CancelQuery),
    responses(
        (status = 200, description = "Retired.", body = RetiredVehicleJson),
    )
)]
async fn retire_vehicle(
    upstream: Upstream,
    id: RequestId,
    vehicle_id: String,
    query: CancelQuery,
) -> Result<Response, ApiError> {
    let request = v1::RetireVehicleRequest {
        id: vehicle_id,
        cancel_conflicting_bookings: cancel(&query),
    };
    let done = upstream
        .fleet
        .clone()
        .retire_vehicle(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(RetiredVehicleJson {
        vehicle: done.vehicle.unwrap_or_default().into(),
        cancelled_allocations: allocations(done.cancelled_allocations),
    })
    .into_response())
}

/// Put a retired vehicle back in the fleet, without a driver: assign one
/// before it can be booked.
#[utoipa::path(
    post, path = "/api/vehicles/{id}:reactivate", tag = "fleet administration",
    operation_id = "reactivateVehicle",
    params(("id" = String, Path, description = "The vehicle's id.")),
    responses(
        (status = 200, description = "Back in the fleet.", body = VehicleJson),
    )
)]
async fn reactivate_vehicle(
    upstream: Upstream,
    id: RequestId,
    vehicle_id: String,
) -> Result<Response, ApiError> {
    let request = v1::ReactivateVehicleRequest { id: vehicle_id };
    let vehicle = upstream
        .fleet
        .clone()
        .reactivate_vehicle(id.grpc(request))
        .await?
        .into_inner();
    entity(None, &vehicle.etag.clone(), VehicleJson::from(vehicle))
}

/// Make a driver the vehicle's driver from a date on.
///
/// Bookings from `effective_date` carry the new driver; earlier ones keep
/// theirs. A driver drives one vehicle a day: 409 (DRIVER_ALREADY_ASSIGNED)
/// names the other vehicle.
#[utoipa::path(
    put, path = "/api/vehicles/{id}/driver", tag = "fleet administration",
    operation_id = "assignDriver",
    params(("id" = String, Path, example = "veh-0007", description = "The vehicle's id.")),
    request_body = DriverAssignmentJson,
    responses(
        (status = 200, description = "Assigned.", body = AssignedDriverJson),
    )
)]
pub async fn assign_driver(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(vehicle_id): ApiPath<String>,
    ApiJson(body): ApiJson<DriverAssignmentJson>,
) -> Result<Json<AssignedDriverJson>, ApiError> {
    let request = v1::AssignDriverRequest {
        vehicle_id,
        driver_id: body.driver_id,
        effective_date: body.effective_date,
    };
    let done = upstream
        .fleet
        .clone()
        .assign_driver(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(AssignedDriverJson {
        vehicle: done.vehicle.unwrap_or_default().into(),
        reassigned_allocations: allocations(done.reassigned_allocations),
    }))
}

/// List a vehicle's out-of-service blocks, in creation order.
#[utoipa::path(
    get, path = "/api/vehicles/{id}/blocks", tag = "fleet", operation_id = "listVehicleBlocks",
    params(("id" = String, Path, description = "The vehicle's id."), PageQuery),
    responses(
        (status = 200, description = "One page of blocks.", body = BlockPageJson),
    )
)]
pub async fn list_vehicle_blocks(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(vehicle_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<BlockPageJson>, ApiError> {
    let request = v1::ListVehicleBlocksRequest {
        vehicle_id,
        page_size: query.page_size.unwrap_or_default(),
        page_token: query.page_token.unwrap_or_default(),
    };
    let page = upstream
        .fleet
        .clone()
        .list_vehicle_blocks(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(BlockPageJson {
        blocks: page
            .blocks
            .into_iter()
            .map(VehicleBlockJson::from)
            .collect(),
        next_page_token: page.next_page_token,
        total_size: page.total_size,
    }))
}

/// Take a vehicle out of service from `start_date` to `end_date`.
///
/// It is not available and can't be booked on those days (400,
/// VEHICLE_OUT_OF_SERVICE). Its bookings on them refuse the block
/// (HAS_FUTURE_BOOKINGS), or are cancelled with
/// `cancel_conflicting_bookings=true`.
#[utoipa::path(
    post, path = "/api/vehicles/{id}/blocks", tag = "fleet administration",
    operation_id = "createVehicleBlock",
    params(("id" = String, Path, example = "veh-0042", description = "The vehicle's id."), CancelQuery),
    request_body = NewBlockJson,
    responses(
        (status = 201, description = "Added.", body = CreatedBlockJson, headers(
            ("Location" = String, description = "The block's URL."))),
    )
)]
pub async fn create_vehicle_block(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(vehicle_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CancelQuery>,
    ApiJson(body): ApiJson<NewBlockJson>,
) -> Result<Response, ApiError> {
    let request = v1::CreateVehicleBlockRequest {
        vehicle_id,
        block: Some(v1::VehicleBlock {
            start_date: body.start_date,
            end_date: body.end_date,
            reason: body.reason,
            ..Default::default()
        }),
        cancel_conflicting_bookings: cancel(&query),
    };
    let done = upstream
        .fleet
        .clone()
        .create_vehicle_block(id.grpc(request))
        .await?
        .into_inner();
    let block = done.block.unwrap_or_default();
    let location = format!("/api/vehicles/{}/blocks/{}", block.vehicle_id, block.id);
    let location = HeaderValue::from_str(&location)
        .map_err(|_| ApiError::new(reasons::INTERNAL, "internal error"))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CreatedBlockJson {
            block: block.into(),
            cancelled_allocations: allocations(done.cancelled_allocations),
        }),
    )
        .into_response())
}

/// Delete a block that has not ended yet.
#[utoipa::path(
    delete, path = "/api/vehicles/{id}/blocks/{block_id}", tag = "fleet administration",
    operation_id = "deleteVehicleBlock",
    params(
        ("id" = String, Path, description = "The vehicle's id."),
        ("block_id" = String, Path, description = "The block's id.")),
    responses(
        (status = 204, description = "Deleted."),
    )
)]
pub async fn delete_vehicle_block(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath((vehicle_id, block_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let request = v1::DeleteVehicleBlockRequest {
        vehicle_id,
        block_id,
    };
    upstream
        .fleet
        .clone()
        .delete_vehicle_block(id.grpc(request))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
