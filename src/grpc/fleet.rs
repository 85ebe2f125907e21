//! `FleetService`: employees, drivers, vehicles, their administration and
//! availability.

use std::sync::Arc;

use chrono::NaiveDate;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::allocation::new_id;
use super::convert::{self, non_empty};
use super::status::with_reason;
use super::{ServiceContext, allow, context, mask};
use crate::domain::access::{Action, authorize};
use crate::domain::admin::{
    self, DriverChanges, DriverInput, EmployeeChanges, EmployeeInput, VehicleChanges, VehicleInput,
    field,
};
use crate::domain::allocation::validate_id;
use crate::domain::context::RequestContext;
use crate::domain::error::Violations;
use crate::domain::page::ListKind;
use crate::domain::{
    DomainError, Etag, FleetCommand, FleetEntity, FleetOutcome, FleetRequest, PageKey, PageRequest,
    PageSize, PageToken, Violation, parse_date,
};
use crate::proto::v1::{
    self, AssignDriverRequest, AssignDriverResponse, CreateDriverRequest, CreateEmployeeRequest,
    CreateVehicleBlockRequest, CreateVehicleBlockResponse, CreateVehicleRequest,
    DeactivateDriverRequest, DeactivateDriverResponse, DeactivateEmployeeRequest,
    DeactivateEmployeeResponse, DeleteVehicleBlockRequest, EraseEmployeeRequest,
    EraseEmployeeResponse, GetDriverRequest, GetEmployeeRequest, GetVehicleRequest,
    ImportFleetRequest, ImportFleetResponse, ListAvailableVehiclesRequest,
    ListAvailableVehiclesResponse, ListDriversRequest, ListDriversResponse, ListEmployeesRequest,
    ListEmployeesResponse, ListVehicleBlocksRequest, ListVehicleBlocksResponse,
    ListVehiclesRequest, ListVehiclesResponse, ReactivateEmployeeRequest, ReactivateVehicleRequest,
    RetireVehicleRequest, RetireVehicleResponse, UpdateDriverRequest, UpdateEmployeeRequest,
    UpdateVehicleRequest, fleet_service_server::FleetService,
};
use crate::reasons;

/// Rows one `ImportFleet` message may carry.
pub const IMPORT_ROWS_MAX: usize = 1000;

/// How long an `ImportFleet` stream may leave the service waiting (for its
/// next message, or to take an answer) before its pass is ended and rolled
/// back: the pass holds the store's writer.
pub const IMPORT_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Rows one `ImportFleet` pass may carry in all: a pass is one transaction,
/// whose pages stay in the WAL until it ends.
pub const IMPORT_PASS_ROWS_MAX: usize = 1_000_000;

/// How long a pass may hold the writer: a minute, and a millisecond more
/// for each row sent (an import runs at thousands of rows a second), so
/// that a caller trickling rows cannot hold every other write for long.
fn pass_allowance(rows: usize) -> std::time::Duration {
    std::time::Duration::from_secs(60) + std::time::Duration::from_millis(rows as u64)
}

pub(super) const EMPLOYEE_FIELDS: [&str; 3] = ["name", "email", "department"];
pub(super) const DRIVER_FIELDS: [&str; 3] = ["name", "phone", "license_number"];
pub(super) const VEHICLE_FIELDS: [&str; 4] = ["registration", "make", "model", "seats"];

/// The `FleetService` implementation.
pub struct FleetApi {
    ctx: ServiceContext,
    /// One `ImportFleet` pass at a time: each holds a store transaction.
    imports: Arc<tokio::sync::Semaphore>,
}

impl FleetApi {
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            ctx,
            imports: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    fn today(&self) -> NaiveDate {
        self.ctx.window(self.ctx.now()).today
    }

    /// Applies one fleet command.
    async fn run(
        &self,
        caller: &RequestContext,
        command: FleetCommand,
    ) -> Result<FleetOutcome, Status> {
        let now = self.ctx.now();
        let request = FleetRequest {
            command,
            now,
            window: self.ctx.window(now),
            origin: caller.origin(),
        };
        let mut outcomes = self.ctx.store.apply_fleet(vec![request]).await?;
        outcomes.pop().ok_or_else(|| {
            crate::storage::StoreError::internal(
                "changing the fleet",
                std::io::Error::other("the store returned no outcome"),
            )
            .into()
        })
    }

    /// The vehicle as it is now, with today's driver (commands return it
    /// without one).
    async fn vehicle_now(&self, outcome: &FleetOutcome) -> Result<v1::Vehicle, Status> {
        let FleetEntity::Vehicle(vehicle) = &outcome.entity else {
            return Err(unexpected(outcome));
        };
        let vehicle = self
            .ctx
            .store
            .get_vehicle(&vehicle.id, self.today())
            .await?;
        Ok(convert::vehicle(vehicle, true))
    }
}

fn unexpected(outcome: &FleetOutcome) -> Status {
    crate::storage::StoreError::internal(
        "changing the fleet",
        std::io::Error::other(format!("unexpected outcome {:?}", outcome.entity)),
    )
    .into()
}

fn employee_of(outcome: FleetOutcome) -> Result<v1::Employee, Status> {
    match outcome.entity {
        FleetEntity::Employee(e) => Ok(convert::employee(e)),
        _ => Err(unexpected(&outcome)),
    }
}

fn driver_of(outcome: FleetOutcome) -> Result<v1::Driver, Status> {
    match outcome.entity {
        FleetEntity::Driver(d) => Ok(convert::driver(d, true)),
        _ => Err(unexpected(&outcome)),
    }
}

fn block_of(outcome: FleetOutcome) -> Result<v1::VehicleBlock, Status> {
    match outcome.entity {
        FleetEntity::Block(b) => Ok(convert::block(b)),
        _ => Err(unexpected(&outcome)),
    }
}

fn cancelled(outcome: &FleetOutcome) -> Vec<v1::Allocation> {
    outcome
        .cancelled
        .iter()
        .cloned()
        .map(convert::allocation)
        .collect()
}

/// Lets only fleet administrators through.
fn fleet_admin<T>(request: &Request<T>) -> Result<RequestContext, Status> {
    let caller = context(request)?;
    allow(&caller, Action::ChangeFleet)?;
    Ok(caller)
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

fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// A required id from a request.
fn required_id(field: &str, id: &str) -> Result<(), Status> {
    validate_id(field, id).map_err(|v| DomainError::invalid(v).into())
}

/// An etag, when the caller sent one.
fn etag(field: &str, value: &str, violations: &mut Violations) -> Option<Etag> {
    non_empty(value.to_owned()).and_then(|etag| violations.check(Etag::parse(field, &etag)))
}

/// A required date.
fn date(field: &str, value: &str, violations: &mut Violations) -> Option<NaiveDate> {
    if value.is_empty() {
        violations.push(Violation::required(field));
        None
    } else {
        violations.check(parse_date(field, value))
    }
}

/// The id the caller gave, or a new one.
fn given_or_new(id: String, ctx: &ServiceContext) -> String {
    if id.is_empty() { new_id(ctx.now()) } else { id }
}

/// A text field of an update: checked when it is in the mask.
fn change(
    fields: &[&str],
    name: &str,
    value: &str,
    check: impl FnOnce(&str, &str) -> Result<(), Violation>,
    prefix: &str,
    violations: &mut Violations,
) -> Option<String> {
    if !fields.contains(&name) {
        return None;
    }
    violations
        .check(check(&field(prefix, name), value))
        .map(|()| value.to_owned())
}

fn decode_employee_update(request: UpdateEmployeeRequest) -> Result<FleetCommand, DomainError> {
    let e = request.employee.unwrap_or_default();
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    let mut violations = Violations::new();
    violations.check(validate_id("employee.id", &e.id));
    let etag = etag("employee.etag", &e.etag, &mut violations);
    let set = [
        !e.name.is_empty(),
        !e.email.is_empty(),
        !e.department.is_empty(),
    ];
    let fields = mask::fields("employee", &paths, &EMPLOYEE_FIELDS, &set, &mut violations);
    let p = "employee";
    let changes = EmployeeChanges {
        name: change(
            &fields,
            "name",
            &e.name,
            admin::employee_name,
            p,
            &mut violations,
        ),
        email: change(
            &fields,
            "email",
            &e.email,
            admin::employee_email,
            p,
            &mut violations,
        ),
        department: change(
            &fields,
            "department",
            &e.department,
            admin::employee_department,
            p,
            &mut violations,
        ),
    };
    violations.finish(|| FleetCommand::UpdateEmployee {
        id: e.id,
        changes,
        etag,
    })
}

fn decode_driver_update(request: UpdateDriverRequest) -> Result<FleetCommand, DomainError> {
    let d = request.driver.unwrap_or_default();
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    let mut violations = Violations::new();
    violations.check(validate_id("driver.id", &d.id));
    let etag = etag("driver.etag", &d.etag, &mut violations);
    let set = [
        !d.name.is_empty(),
        !d.phone.is_empty(),
        !d.license_number.is_empty(),
    ];
    let fields = mask::fields("driver", &paths, &DRIVER_FIELDS, &set, &mut violations);
    let p = "driver";
    let changes = DriverChanges {
        name: change(
            &fields,
            "name",
            &d.name,
            admin::driver_name,
            p,
            &mut violations,
        ),
        phone: change(
            &fields,
            "phone",
            &d.phone,
            admin::driver_phone,
            p,
            &mut violations,
        ),
        license_number: change(
            &fields,
            "license_number",
            &d.license_number,
            admin::driver_license_number,
            p,
            &mut violations,
        ),
    };
    violations.finish(|| FleetCommand::UpdateDriver {
        id: d.id,
        changes,
        etag,
    })
}

fn decode_vehicle_update(request: UpdateVehicleRequest) -> Result<FleetCommand, DomainError> {
    let v = request.vehicle.unwrap_or_default();
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    let mut violations = Violations::new();
    violations.check(validate_id("vehicle.id", &v.id));
    let etag = etag("vehicle.etag", &v.etag, &mut violations);
    let set = [
        !v.registration.is_empty(),
        !v.make.is_empty(),
        !v.model.is_empty(),
        v.seats != 0,
    ];
    let fields = mask::fields("vehicle", &paths, &VEHICLE_FIELDS, &set, &mut violations);
    let p = "vehicle";
    let changes = VehicleChanges {
        registration: change(
            &fields,
            "registration",
            &v.registration,
            admin::vehicle_registration,
            p,
            &mut violations,
        ),
        make: change(
            &fields,
            "make",
            &v.make,
            admin::vehicle_make,
            p,
            &mut violations,
        ),
        model: change(
            &fields,
            "model",
            &v.model,
            admin::vehicle_model,
            p,
            &mut violations,
        ),
        seats: if fields.contains(&"seats") {
            violations.check(admin::seats(&field(p, "seats"), i64::from(v.seats)))
        } else {
            None
        },
    };
    violations.finish(|| FleetCommand::UpdateVehicle {
        id: v.id,
        changes,
        etag,
    })
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    type ImportFleetStream =
        tokio_stream::wrappers::ReceiverStream<Result<ImportFleetResponse, Status>>;

    async fn import_fleet(
        &self,
        request: Request<tonic::Streaming<ImportFleetRequest>>,
    ) -> Result<Response<Self::ImportFleetStream>, Status> {
        let caller = fleet_admin(&request)?;
        let Ok(permit) = Arc::clone(&self.imports).try_acquire_owned() else {
            return Err(with_reason(
                reasons::IMPORT_RUNNING,
                "another import is running; retry when it has ended",
            ));
        };
        let input = request.into_inner();
        let (answers, answered) = tokio::sync::mpsc::channel(1);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let last = import_pass(&ctx, &caller, input, &answers, IMPORT_IDLE).await;
            // Free before the last answer, so that the caller's next pass
            // (the apply after the check) finds no import running.
            drop(permit);
            let last = last.map(|answer| ImportFleetResponse {
                answer: Some(answer),
            });
            let _ = tokio::time::timeout(IMPORT_IDLE, answers.send(last)).await;
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            answered,
        )))
    }

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
            &[filter, flag(request.show_deactivated)],
            request.page_size,
            &request.page_token,
        )?;
        let page = self
            .ctx
            .store
            .list_employees(department.as_deref(), request.show_deactivated, page)
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
        required_id("id", &id)?;
        let employee = self.ctx.store.get_employee(&id).await?;
        Ok(Response::new(convert::employee(employee)))
    }

    async fn create_employee(
        &self,
        request: Request<CreateEmployeeRequest>,
    ) -> Result<Response<v1::Employee>, Status> {
        let caller = fleet_admin(&request)?;
        let e = request.into_inner().employee.unwrap_or_default();
        let input = EmployeeInput {
            id: given_or_new(e.id, &self.ctx),
            name: e.name,
            email: e.email,
            department: e.department,
        };
        let mut violations = Violations::new();
        let employee = input.check("employee", self.ctx.now(), &mut violations);
        let employee = violations.finish(|| employee.expect("checked"))?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::PutEmployee {
                    employee,
                    upsert: false,
                },
            )
            .await?;
        Ok(Response::new(employee_of(outcome)?))
    }

    async fn update_employee(
        &self,
        request: Request<UpdateEmployeeRequest>,
    ) -> Result<Response<v1::Employee>, Status> {
        let caller = fleet_admin(&request)?;
        let command = decode_employee_update(request.into_inner())?;
        Ok(Response::new(employee_of(
            self.run(&caller, command).await?,
        )?))
    }

    async fn deactivate_employee(
        &self,
        request: Request<DeactivateEmployeeRequest>,
    ) -> Result<Response<DeactivateEmployeeResponse>, Status> {
        let caller = fleet_admin(&request)?;
        let request = request.into_inner();
        required_id("id", &request.id)?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::SetEmployeeActive {
                    id: request.id,
                    active: false,
                    cancel_conflicting: request.cancel_conflicting_bookings,
                },
            )
            .await?;
        Ok(Response::new(DeactivateEmployeeResponse {
            cancelled_allocations: cancelled(&outcome),
            employee: Some(employee_of(outcome)?),
        }))
    }

    async fn erase_employee(
        &self,
        request: Request<EraseEmployeeRequest>,
    ) -> Result<Response<EraseEmployeeResponse>, Status> {
        let caller = fleet_admin(&request)?;
        let request = request.into_inner();
        required_id("id", &request.id)?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::EraseEmployee {
                    id: request.id,
                    cancel_conflicting: request.cancel_conflicting_bookings,
                },
            )
            .await?;
        Ok(Response::new(EraseEmployeeResponse {
            cancelled_allocations: cancelled(&outcome),
            employee: Some(employee_of(outcome)?),
        }))
    }

    async fn reactivate_employee(
        &self,
        request: Request<ReactivateEmployeeRequest>,
    ) -> Result<Response<v1::Employee>, Status> {
        let caller = fleet_admin(&request)?;
        let id = request.into_inner().id;
        required_id("id", &id)?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::SetEmployeeActive {
                    id,
                    active: true,
                    cancel_conflicting: false,
                },
            )
            .await?;
        Ok(Response::new(employee_of(outcome)?))
    }

    async fn list_drivers(
        &self,
        request: Request<ListDriversRequest>,
    ) -> Result<Response<ListDriversResponse>, Status> {
        let licences = directory_reader(&context(&request)?)?;
        let request = request.into_inner();
        let (tokens, page) = id_page(
            &self.ctx.page_key().await?,
            ListKind::Drivers,
            &[flag(request.show_deactivated)],
            request.page_size,
            &request.page_token,
        )?;
        let page = self
            .ctx
            .store
            .list_drivers(request.show_deactivated, page)
            .await?;
        Ok(Response::new(ListDriversResponse {
            next_page_token: next_token(
                &tokens,
                page.has_more,
                page.items.last().map(|d| d.id.as_str()),
            ),
            drivers: page
                .items
                .into_iter()
                .map(|d| convert::driver(d, licences))
                .collect(),
            total_size: page.total_size as i64,
        }))
    }

    async fn get_driver(
        &self,
        request: Request<GetDriverRequest>,
    ) -> Result<Response<v1::Driver>, Status> {
        let licences = directory_reader(&context(&request)?)?;
        let id = request.into_inner().id;
        required_id("id", &id)?;
        let driver = self.ctx.store.get_driver(&id).await?;
        Ok(Response::new(convert::driver(driver, licences)))
    }

    async fn create_driver(
        &self,
        request: Request<CreateDriverRequest>,
    ) -> Result<Response<v1::Driver>, Status> {
        let caller = fleet_admin(&request)?;
        let d = request.into_inner().driver.unwrap_or_default();
        let input = DriverInput {
            id: given_or_new(d.id, &self.ctx),
            name: d.name,
            phone: d.phone,
            license_number: d.license_number,
        };
        let mut violations = Violations::new();
        let driver = input.check("driver", self.ctx.now(), &mut violations);
        let driver = violations.finish(|| driver.expect("checked"))?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::PutDriver {
                    driver,
                    upsert: false,
                },
            )
            .await?;
        Ok(Response::new(driver_of(outcome)?))
    }

    async fn update_driver(
        &self,
        request: Request<UpdateDriverRequest>,
    ) -> Result<Response<v1::Driver>, Status> {
        let caller = fleet_admin(&request)?;
        let command = decode_driver_update(request.into_inner())?;
        Ok(Response::new(driver_of(self.run(&caller, command).await?)?))
    }

    async fn deactivate_driver(
        &self,
        request: Request<DeactivateDriverRequest>,
    ) -> Result<Response<DeactivateDriverResponse>, Status> {
        let caller = fleet_admin(&request)?;
        let request = request.into_inner();
        required_id("id", &request.id)?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::DeactivateDriver {
                    id: request.id,
                    cancel_conflicting: request.cancel_conflicting_bookings,
                },
            )
            .await?;
        Ok(Response::new(DeactivateDriverResponse {
            cancelled_allocations: cancelled(&outcome),
            driver: Some(driver_of(outcome)?),
        }))
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
            &[flag(request.show_retired)],
            request.page_size,
            &request.page_token,
        )?;
        let page = self
            .ctx
            .store
            .list_vehicles(request.show_retired, self.today(), page)
            .await?;
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
        required_id("id", &id)?;
        let vehicle = self.ctx.store.get_vehicle(&id, self.today()).await?;
        Ok(Response::new(convert::vehicle(vehicle, licences)))
    }

    async fn create_vehicle(
        &self,
        request: Request<CreateVehicleRequest>,
    ) -> Result<Response<v1::Vehicle>, Status> {
        let caller = fleet_admin(&request)?;
        let v = request.into_inner().vehicle.unwrap_or_default();
        let input = VehicleInput {
            id: given_or_new(v.id, &self.ctx),
            registration: v.registration,
            make: v.make,
            model: v.model,
            seats: i64::from(v.seats),
            driver_id: v.driver_id,
        };
        let mut violations = Violations::new();
        let checked = input.check("vehicle", self.ctx.now(), &mut violations);
        let (vehicle, driver_id) = violations.finish(|| checked.expect("checked"))?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::PutVehicle {
                    vehicle,
                    driver_id,
                    upsert: false,
                },
            )
            .await?;
        Ok(Response::new(self.vehicle_now(&outcome).await?))
    }

    async fn update_vehicle(
        &self,
        request: Request<UpdateVehicleRequest>,
    ) -> Result<Response<v1::Vehicle>, Status> {
        let caller = fleet_admin(&request)?;
        let command = decode_vehicle_update(request.into_inner())?;
        let outcome = self.run(&caller, command).await?;
        Ok(Response::new(self.vehicle_now(&outcome).await?))
    }

    async fn retire_vehicle(
        &self,
        request: Request<RetireVehicleRequest>,
    ) -> Result<Response<RetireVehicleResponse>, Status> {
        let caller = fleet_admin(&request)?;
        let request = request.into_inner();
        required_id("id", &request.id)?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::SetVehicleRetired {
                    id: request.id,
                    retired: true,
                    cancel_conflicting: request.cancel_conflicting_bookings,
                },
            )
            .await?;
        Ok(Response::new(RetireVehicleResponse {
            vehicle: Some(self.vehicle_now(&outcome).await?),
            cancelled_allocations: cancelled(&outcome),
        }))
    }

    async fn reactivate_vehicle(
        &self,
        request: Request<ReactivateVehicleRequest>,
    ) -> Result<Response<v1::Vehicle>, Status> {
        let caller = fleet_admin(&request)?;
        let id = request.into_inner().id;
        required_id("id", &id)?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::SetVehicleRetired {
                    id,
                    retired: false,
                    cancel_conflicting: false,
                },
            )
            .await?;
        Ok(Response::new(self.vehicle_now(&outcome).await?))
    }

    async fn assign_driver(
        &self,
        request: Request<AssignDriverRequest>,
    ) -> Result<Response<AssignDriverResponse>, Status> {
        let caller = fleet_admin(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check(validate_id("vehicle_id", &request.vehicle_id));
        violations.check(validate_id("driver_id", &request.driver_id));
        let effective = if request.effective_date.is_empty() {
            Some(self.today())
        } else {
            violations.check(parse_date("effective_date", &request.effective_date))
        };
        let effective_date = violations.finish(|| effective.expect("checked"))?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::AssignDriver {
                    vehicle_id: request.vehicle_id,
                    driver_id: request.driver_id,
                    effective_date,
                },
            )
            .await?;
        Ok(Response::new(AssignDriverResponse {
            vehicle: Some(self.vehicle_now(&outcome).await?),
            reassigned_allocations: outcome
                .redriven
                .into_iter()
                .map(|(_, after)| convert::allocation(after))
                .collect(),
        }))
    }

    async fn create_vehicle_block(
        &self,
        request: Request<CreateVehicleBlockRequest>,
    ) -> Result<Response<CreateVehicleBlockResponse>, Status> {
        let caller = fleet_admin(&request)?;
        let request = request.into_inner();
        let b = request.block.unwrap_or_default();
        let mut violations = Violations::new();
        violations.check(validate_id("vehicle_id", &request.vehicle_id));
        let start = date("block.start_date", &b.start_date, &mut violations);
        let end = date("block.end_date", &b.end_date, &mut violations);
        let dates = admin::block("block", start, end, &b.reason, &mut violations);
        let dates = violations.finish(|| dates.expect("checked"))?;
        let now = self.ctx.now();
        let block = admin::new_block(new_id(now), request.vehicle_id, dates, b.reason, now);
        let outcome = self
            .run(
                &caller,
                FleetCommand::CreateBlock {
                    block,
                    cancel_conflicting: request.cancel_conflicting_bookings,
                },
            )
            .await?;
        Ok(Response::new(CreateVehicleBlockResponse {
            cancelled_allocations: cancelled(&outcome),
            block: Some(block_of(outcome)?),
        }))
    }

    async fn list_vehicle_blocks(
        &self,
        request: Request<ListVehicleBlocksRequest>,
    ) -> Result<Response<ListVehicleBlocksResponse>, Status> {
        allow(&context(&request)?, Action::ReadDirectory)?;
        let request = request.into_inner();
        required_id("vehicle_id", &request.vehicle_id)?;
        let (tokens, page) = id_page(
            &self.ctx.page_key().await?,
            ListKind::VehicleBlocks,
            &[request.vehicle_id.as_str()],
            request.page_size,
            &request.page_token,
        )?;
        let page = self
            .ctx
            .store
            .list_vehicle_blocks(&request.vehicle_id, page)
            .await?;
        Ok(Response::new(ListVehicleBlocksResponse {
            next_page_token: next_token(
                &tokens,
                page.has_more,
                page.items.last().map(|b| b.id.as_str()),
            ),
            blocks: page.items.into_iter().map(convert::block).collect(),
            total_size: page.total_size as i64,
        }))
    }

    async fn delete_vehicle_block(
        &self,
        request: Request<DeleteVehicleBlockRequest>,
    ) -> Result<Response<v1::VehicleBlock>, Status> {
        let caller = fleet_admin(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check(validate_id("vehicle_id", &request.vehicle_id));
        violations.check(validate_id("block_id", &request.block_id));
        violations.finish(|| ())?;
        let outcome = self
            .run(
                &caller,
                FleetCommand::DeleteBlock {
                    vehicle_id: request.vehicle_id,
                    block_id: request.block_id,
                },
            )
            .await?;
        Ok(Response::new(block_of(outcome)?))
    }

    async fn list_available_vehicles(
        &self,
        request: Request<ListAvailableVehiclesRequest>,
    ) -> Result<Response<ListAvailableVehiclesResponse>, Status> {
        let licences = directory_reader(&context(&request)?)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let date = date("date", &request.date, &mut violations).and_then(|date| {
            let window = self.ctx.window(self.ctx.now());
            violations.check(window.check("date", date)).map(|()| date)
        });
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

/// Runs one `ImportFleet` pass: the store's fleet session, fed the rows of
/// `input` chunk by chunk, each answered with its verdicts, until `finish`.
/// Anything else (an error, a stream that ends or stays silent for `idle`)
/// drops the session unfinished, which writes nothing. Returns the last
/// answer (finished, or an apply's refusal), the session ended.
pub async fn import_pass<S>(
    ctx: &ServiceContext,
    caller: &RequestContext,
    mut input: S,
    answers: &tokio::sync::mpsc::Sender<Result<ImportFleetResponse, Status>>,
    idle: std::time::Duration,
) -> Result<v1::import_fleet_response::Answer, Status>
where
    S: tokio_stream::Stream<Item = Result<ImportFleetRequest, Status>> + Unpin,
{
    use crate::import::{Refusal, RowOutcome};
    use crate::storage::{FleetPass, StoreError};
    use v1::import_fleet_request::Step;
    use v1::import_fleet_response::Answer;

    let silent = || {
        with_reason(
            reasons::TIMEOUT,
            &format!(
                "the import stream was silent for {}s; nothing was written",
                idle.as_secs_f64()
            ),
        )
    };
    let out_of_order = |what: &str| {
        Status::from(DomainError::Invalid(vec![Violation::new(
            "step",
            crate::domain::ViolationReason::InvalidValue,
            what,
        )]))
    };
    let started = tokio::time::Instant::now();
    let mut sent = 0usize;
    let too_slow = |sent: usize| {
        with_reason(
            reasons::TIMEOUT,
            &format!(
                "the import pass held the store for {} s with {sent} rows sent; send rows faster, or fewer; nothing was written",
                pass_allowance(sent).as_secs()
            ),
        )
    };
    let mut next = async |sent: usize| {
        let by = (started + pass_allowance(sent)).min(tokio::time::Instant::now() + idle);
        match tokio::time::timeout_at(by, input.next()).await {
            Err(_) if tokio::time::Instant::now() >= started + pass_allowance(sent) => {
                Err(too_slow(sent))
            }
            Err(_) => Err(silent()),
            Ok(None) => Err(out_of_order(
                "the stream ended before finish; nothing was written",
            )),
            Ok(Some(message)) => message.map(|m| m.step),
        }
    };
    let pass = match next(0).await? {
        Some(Step::Start(pass)) => match v1::ImportPass::try_from(pass) {
            Ok(v1::ImportPass::Check) => FleetPass::Check,
            Ok(v1::ImportPass::Apply) => FleetPass::Apply,
            _ => {
                return Err(out_of_order(
                    "start must be IMPORT_PASS_CHECK or IMPORT_PASS_APPLY",
                ));
            }
        },
        _ => return Err(out_of_order("the first message must be start")),
    };
    let mut session = ctx.store.fleet_session(pass).await?;
    let answer = async |answer: Answer| {
        let message = Ok(ImportFleetResponse {
            answer: Some(answer),
        });
        match tokio::time::timeout(idle, answers.send(message)).await {
            Ok(Ok(())) => Ok(()),
            // The caller went away: nobody to tell.
            Ok(Err(_)) => Err(Status::cancelled("the caller went away")),
            Err(_) => Err(silent()),
        }
    };
    loop {
        let rows = match next(sent).await? {
            Some(Step::Rows(rows)) => rows.rows,
            Some(Step::Finish(_)) => break,
            _ => return Err(out_of_order("after start come rows, then finish")),
        };
        if rows.is_empty() {
            return Err(out_of_order("rows must hold at least one row"));
        }
        sent += rows.len();
        if sent > IMPORT_PASS_ROWS_MAX {
            return Err(Status::from(DomainError::Invalid(vec![Violation::new(
                "rows",
                crate::domain::ViolationReason::TooLong,
                format!("rows: at most {IMPORT_PASS_ROWS_MAX} in one import; split the files"),
            )])));
        }
        if rows.len() > IMPORT_ROWS_MAX {
            return Err(Status::from(DomainError::Invalid(vec![Violation::new(
                "rows",
                crate::domain::ViolationReason::TooLong,
                format!(
                    "rows: at most {IMPORT_ROWS_MAX} a message, not {}",
                    rows.len()
                ),
            )])));
        }
        let now = ctx.now();
        let window = ctx.window(now);
        // Rows whose form is bad are refused here; the others go to the
        // store, their verdicts put back in the rows' order.
        let mut verdicts: Vec<Option<v1::ImportVerdict>> = Vec::with_capacity(rows.len());
        let mut requests = Vec::with_capacity(rows.len());
        for row in rows {
            let mut violations = Violations::new();
            match import_command(row, now, &mut violations) {
                Some(command) => {
                    verdicts.push(None);
                    requests.push(FleetRequest {
                        command,
                        now,
                        window,
                        origin: caller.origin(),
                    });
                }
                None => {
                    let refusal = Refusal::of(&DomainError::Invalid(violations.into_vec()));
                    if pass == FleetPass::Apply {
                        return Ok(Answer::Refused(import_refusal(refusal)));
                    }
                    verdicts.push(Some(v1::ImportVerdict {
                        verdict: Some(v1::import_verdict::Verdict::Refusal(import_refusal(
                            refusal,
                        ))),
                    }));
                }
            }
        }
        let decided = match session.run(requests).await {
            Ok(decided) => decided,
            Err(StoreError::Rejected(refusal)) => {
                return Ok(Answer::Refused(import_refusal(Refusal::of(&refusal))));
            }
            Err(error) => return Err(error.into()),
        };
        let mut decided = decided.into_iter();
        let verdicts = verdicts
            .into_iter()
            .map(|verdict| {
                verdict.unwrap_or_else(|| {
                    let verdict = match decided.next() {
                        Some(Ok(outcome)) => {
                            let outcome = RowOutcome::of(&outcome);
                            v1::import_verdict::Verdict::Change(v1::ImportRowChange {
                                changed: outcome.changed,
                                created: outcome.change == crate::import::Change::Create,
                                fields: match outcome.change {
                                    crate::import::Change::Update(fields) => {
                                        fields.iter().map(|f| (*f).to_owned()).collect()
                                    }
                                    _ => Vec::new(),
                                },
                                bookings_redriven: outcome.redriven as u32,
                            })
                        }
                        Some(Err(refusal)) => v1::import_verdict::Verdict::Refusal(import_refusal(
                            Refusal::of(&refusal),
                        )),
                        None => v1::import_verdict::Verdict::Refusal(v1::ImportRowRefusal {
                            reason: reasons::INTERNAL.name.to_owned(),
                            message: "internal error".to_owned(),
                            ..Default::default()
                        }),
                    };
                    v1::ImportVerdict {
                        verdict: Some(verdict),
                    }
                })
            })
            .collect();
        answer(Answer::Verdicts(v1::ImportVerdicts { verdicts })).await?;
    }
    match session.finish().await {
        Ok(()) => Ok(Answer::Finished(v1::ImportFinished {})),
        Err(StoreError::Rejected(refusal)) => {
            Ok(Answer::Refused(import_refusal(Refusal::of(&refusal))))
        }
        Err(error) => Err(error.into()),
    }
}

fn import_refusal(refusal: crate::import::Refusal) -> v1::ImportRowRefusal {
    v1::ImportRowRefusal {
        reason: refusal.reason,
        field: refusal.column,
        message: refusal.message,
        missing_driver_id: refusal.missing_driver.unwrap_or_default(),
    }
}

/// The command an imported row stands for, checked by the rules of the
/// matching Create call (a caller's rows are not trusted for having been
/// checked where they were read).
fn import_command(
    row: v1::ImportRow,
    now: chrono::DateTime<chrono::Utc>,
    violations: &mut Violations,
) -> Option<FleetCommand> {
    use v1::import_row::Entity;
    match row.entity {
        Some(Entity::Employee(e)) => EmployeeInput {
            id: e.id,
            name: e.name,
            email: e.email,
            department: e.department,
        }
        .check("", now, violations)
        .map(|employee| FleetCommand::PutEmployee {
            employee,
            upsert: true,
        }),
        Some(Entity::Driver(d)) => DriverInput {
            id: d.id,
            name: d.name,
            phone: d.phone,
            license_number: d.license_number,
        }
        .check("", now, violations)
        .map(|driver| FleetCommand::PutDriver {
            driver,
            upsert: true,
        }),
        Some(Entity::Vehicle(v)) => VehicleInput {
            id: v.id,
            registration: v.registration,
            make: v.make,
            model: v.model,
            seats: v.seats,
            driver_id: v.driver_id,
        }
        .check("", now, violations)
        .map(|(vehicle, driver_id)| FleetCommand::PutVehicle {
            vehicle,
            driver_id,
            upsert: true,
        }),
        None => {
            violations.push(Violation::required("entity"));
            None
        }
    }
}
