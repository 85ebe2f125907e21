//! `FleetService`: employees, vehicles and their availability.

use tonic::{Request, Response, Status};

use super::convert::{self, non_empty};
use super::{ServiceContext, allow, context};
use crate::domain::access::{Action, authorize};
use crate::domain::allocation::validate_id;
use crate::domain::context::RequestContext;
use crate::domain::error::Violations;
use crate::domain::page::ListKind;
use crate::domain::{
    DomainError, PageKey, PageRequest, PageSize, PageToken, Violation, parse_date,
};
use crate::proto::v1::{
    self, GetEmployeeRequest, GetVehicleRequest, ListAvailableVehiclesRequest,
    ListAvailableVehiclesResponse, ListEmployeesRequest, ListEmployeesResponse,
    ListVehiclesRequest, ListVehiclesResponse, fleet_service_server::FleetService,
};

/// The `FleetService` implementation.
pub struct FleetApi {
    ctx: ServiceContext,
}

impl FleetApi {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}

/// A page request for a list in id order, bound to `filters`.
fn id_page(
    key: &PageKey,
    kind: ListKind,
    filters: &[&str],
    page_size: i32,
    page_token: &str,
) -> Result<(PageToken, PageRequest<String>), DomainError> {
    let size = PageSize::from_request("page_size", page_size).map_err(DomainError::invalid)?;
    let tokens = PageToken::for_query(key, kind, filters);
    let after = tokens.decode::<String>("page_token", page_token)?;
    Ok((
        tokens,
        PageRequest {
            size: size.get(),
            after,
        },
    ))
}

/// Lets the caller read the directory; `Ok(true)` if licence numbers too.
fn directory_reader(caller: &RequestContext) -> Result<bool, Status> {
    allow(caller, Action::ReadDirectory)?;
    Ok(authorize(&caller.principal, Action::ReadLicences).is_ok())
}

/// The token for the page after `last`, if there is one.
fn next_token(tokens: &PageToken, has_more: bool, last: Option<&str>) -> String {
    match last {
        Some(id) if has_more => tokens.encode(&id.to_owned()),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    async fn list_employees(
        &self,
        request: Request<ListEmployeesRequest>,
    ) -> Result<Response<ListEmployeesResponse>, Status> {
        allow(&context(&request)?, Action::ReadDirectory)?;
        let request = request.into_inner();
        let department = non_empty(request.department);
        if let Some(department) = &department {
            validate_id("department", department).map_err(DomainError::invalid)?;
        }
        let filter = department.as_deref().unwrap_or("");
        let (tokens, page) = id_page(
            &self.ctx.page_key().await?,
            ListKind::Employees,
            &[filter],
            request.page_size,
            &request.page_token,
        )?;
        let page = self
            .ctx
            .store
            .list_employees(department.as_deref(), page)
            .await?;
        Ok(Response::new(ListEmployeesResponse {
            next_page_token: next_token(
                &tokens,
                page.has_more,
                page.items.last().map(|e| e.id.as_str()),
            ),
            employees: page.items.into_iter().map(convert::employee).collect(),
            total_size: page.total_size as i64,
        }))
    }

    async fn get_employee(
        &self,
        request: Request<GetEmployeeRequest>,
    ) -> Result<Response<v1::Employee>, Status> {
        allow(&context(&request)?, Action::ReadDirectory)?;
        let id = request.into_inner().id;
        validate_id("id", &id).map_err(DomainError::invalid)?;
        let employee = self.ctx.store.get_employee(&id).await?;
        Ok(Response::new(convert::employee(employee)))
    }

    async fn list_vehicles(
        &self,
        request: Request<ListVehiclesRequest>,
    ) -> Result<Response<ListVehiclesResponse>, Status> {
        let licences = directory_reader(&context(&request)?)?;
        let request = request.into_inner();
        let (tokens, page) = id_page(
            &self.ctx.page_key().await?,
            ListKind::Vehicles,
            &[],
            request.page_size,
            &request.page_token,
        )?;
        let page = self.ctx.store.list_vehicles(page).await?;
        Ok(Response::new(ListVehiclesResponse {
            next_page_token: next_token(
                &tokens,
                page.has_more,
                page.items.last().map(|v| v.id.as_str()),
            ),
            vehicles: page
                .items
                .into_iter()
                .map(|v| convert::vehicle(v, licences))
                .collect(),
            total_size: page.total_size as i64,
        }))
    }

    async fn get_vehicle(
        &self,
        request: Request<GetVehicleRequest>,
    ) -> Result<Response<v1::Vehicle>, Status> {
        let licences = directory_reader(&context(&request)?)?;
        let id = request.into_inner().id;
        validate_id("id", &id).map_err(DomainError::invalid)?;
        let vehicle = self.ctx.store.get_vehicle(&id).await?;
        Ok(Response::new(convert::vehicle(vehicle, licences)))
    }

    async fn list_available_vehicles(
        &self,
        request: Request<ListAvailableVehiclesRequest>,
    ) -> Result<Response<ListAvailableVehiclesResponse>, Status> {
        let licences = directory_reader(&context(&request)?)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let date = if request.date.is_empty() {
            violations.push(Violation::required("date"));
            None
        } else {
            violations
                .check(parse_date("date", &request.date))
                .and_then(|date| {
                    let window = self.ctx.window(self.ctx.now());
                    violations.check(window.check("date", date)).map(|()| date)
                })
        };
        violations.check(PageSize::from_request("page_size", request.page_size));
        let date = violations.finish(|| date.expect("a date when there are no violations"))?;

        let (tokens, page) = id_page(
            &self.ctx.page_key().await?,
            ListKind::AvailableVehicles,
            &[request.date.as_str()],
            request.page_size,
            &request.page_token,
        )?;
        let page = self.ctx.store.list_available_vehicles(date, page).await?;
        Ok(Response::new(ListAvailableVehiclesResponse {
            next_page_token: next_token(
                &tokens,
                page.has_more,
                page.items.last().map(|v| v.id.as_str()),
            ),
            vehicles: page
                .items
                .into_iter()
                .map(|v| convert::vehicle(v, licences))
                .collect(),
            total_size: page.total_size as i64,
        }))
    }
}
