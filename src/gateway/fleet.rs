//! `/api/employees` and `/api/vehicles`.

use axum::Json;
use axum::extract::{Extension, State};

use super::Upstream;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::json::{
    AvailableQuery, EmployeeJson, EmployeePageJson, EmployeesQuery, VehicleJson, VehiclePageJson,
    VehiclesQuery,
};
use super::middleware::RequestId;
use crate::proto::v1::{
    GetEmployeeRequest, GetVehicleRequest, ListAvailableVehiclesRequest, ListEmployeesRequest,
    ListVehiclesRequest,
};

/// List employees in id order, optionally of one department.
#[utoipa::path(
    get, path = "/api/employees", tag = "fleet", operation_id = "listEmployees",
    params(EmployeesQuery),
    responses(
        (status = 200, description = "One page of employees.", body = EmployeePageJson),
    )
)]
pub async fn list_employees(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiQuery(query): ApiQuery<EmployeesQuery>,
) -> Result<Json<EmployeePageJson>, ApiError> {
    let request = ListEmployeesRequest {
        department: query.department.unwrap_or_default(),
        show_deactivated: query.show_deactivated.unwrap_or_default(),
        page_size: query.page_size.unwrap_or_default(),
        page_token: query.page_token.unwrap_or_default(),
    };
    let page = upstream
        .fleet
        .clone()
        .list_employees(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(EmployeePageJson {
        employees: page.employees.into_iter().map(EmployeeJson::from).collect(),
        next_page_token: page.next_page_token,
        total_size: page.total_size,
    }))
}

/// Read one employee.
#[utoipa::path(
    get, path = "/api/employees/{id}", tag = "fleet", operation_id = "getEmployee",
    params(("id" = String, Path, example = "emp-00042", description = "The employee's id, e.g. emp-00042.")),
    responses(
        (status = 200, description = "The employee.", body = EmployeeJson),
    )
)]
pub async fn get_employee(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(employee_id): ApiPath<String>,
) -> Result<Json<EmployeeJson>, ApiError> {
    let employee = upstream
        .fleet
        .clone()
        .get_employee(id.grpc(GetEmployeeRequest { id: employee_id }))
        .await?
        .into_inner();
    Ok(Json(employee.into()))
}

/// List vehicles in id order, each with its driver.
#[utoipa::path(
    get, path = "/api/vehicles", tag = "fleet", operation_id = "listVehicles",
    params(VehiclesQuery),
    responses(
        (status = 200, description = "One page of vehicles.", body = VehiclePageJson),
    )
)]
pub async fn list_vehicles(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiQuery(query): ApiQuery<VehiclesQuery>,
) -> Result<Json<VehiclePageJson>, ApiError> {
    let request = ListVehiclesRequest {
        show_retired: query.show_retired.unwrap_or_default(),
        page_size: query.page_size.unwrap_or_default(),
        page_token: query.page_token.unwrap_or_default(),
    };
    let page = upstream
        .fleet
        .clone()
        .list_vehicles(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(VehiclePageJson {
        vehicles: page.vehicles.into_iter().map(VehicleJson::from).collect(),
        next_page_token: page.next_page_token,
        total_size: page.total_size,
    }))
}

/// Read one vehicle, with its driver.
#[utoipa::path(
    get, path = "/api/vehicles/{id}", tag = "fleet", operation_id = "getVehicle",
    params(("id" = String, Path, example = "veh-0007", description = "The vehicle's id, e.g. veh-0007.")),
    responses(
        (status = 200, description = "The vehicle.", body = VehicleJson),
    )
)]
pub async fn get_vehicle(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiPath(vehicle_id): ApiPath<String>,
) -> Result<Json<VehicleJson>, ApiError> {
    let vehicle = upstream
        .fleet
        .clone()
        .get_vehicle(id.grpc(GetVehicleRequest { id: vehicle_id }))
        .await?
        .into_inner();
    Ok(Json(vehicle.into()))
}

/// List the vehicles not booked on a day that can be booked.
#[utoipa::path(
    get, path = "/api/vehicles/available", tag = "fleet", operation_id = "listAvailableVehicles",
    params(AvailableQuery),
    responses(
        (status = 200, description = "One page of free vehicles.", body = VehiclePageJson),
    )
)]
pub async fn list_available_vehicles(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiQuery(query): ApiQuery<AvailableQuery>,
) -> Result<Json<VehiclePageJson>, ApiError> {
    let request = ListAvailableVehiclesRequest {
        date: query.date.unwrap_or_default(),
        page_size: query.page_size.unwrap_or_default(),
        page_token: query.page_token.unwrap_or_default(),
    };
    let page = upstream
        .fleet
        .clone()
        .list_available_vehicles(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(VehiclePageJson {
        vehicles: page.vehicles.into_iter().map(VehicleJson::from).collect(),
        next_page_token: page.next_page_token,
        total_size: page.total_size,
    }))
}
