//! `AllocationService`: decode and validate, call the store, encode.

use tonic::{Request, Response, Status};

use super::convert::{self, non_empty};
use super::{ServiceContext, allow, context};
use crate::domain::access::{
    Action, authorize, history_scope, reads_every_booking, shown_conflict,
};
use crate::domain::allocation::{validate_id, validate_purpose};
use crate::domain::context::RequestContext;
use crate::domain::error::Violations;
use crate::domain::page::ListKind;
use crate::domain::{
    AllocationChanges, AllocationDeletion, AllocationUpdate, DomainError, Etag, HistoryCursor,
    HistoryFilter, IdempotencyKey, NewAllocation, PageRequest, PageSize, PageToken, Violation,
    parse_date,
};
use crate::proto::v1::{
    self, CreateAllocationRequest, DeleteAllocationRequest, GetAllocationRequest,
    ListAllocationHistoryRequest, ListAllocationHistoryResponse, UpdateAllocationRequest,
    allocation_service_server::AllocationService,
};
use crate::storage::StoreError;

/// The fields an update may change, in `update_mask` spelling.
pub(super) const UPDATABLE: [&str; 3] = ["vehicle_id", "allocation_date", "purpose"];

/// The `AllocationService` implementation.
pub struct AllocationApi {
    ctx: ServiceContext,
}

impl AllocationApi {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}

impl AllocationApi {
    /// Lets the caller act on booking `id`: at once when their role may act
    /// on anyone's, else after reading whose it is.
    async fn check_owner(
        &self,
        caller: &RequestContext,
        id: &str,
        action: impl for<'a> Fn(Option<&'a str>) -> Action<'a>,
    ) -> Result<(), Status> {
        if authorize(&caller.principal, action(None)).is_ok() {
            return Ok(());
        }
        let owner = match self.ctx.store.get_allocation(id).await {
            Ok(found) => Some(found.employee_id),
            Err(error) if is_not_found(&error) => None,
            Err(error) => return Err(error.into()),
        };
        allow(caller, action(owner.as_deref()))
    }
}

impl AllocationApi {
    /// A refused booking write as the caller may see it: a conflict names
    /// the booking in the way only to a caller who may read it.
    async fn refusal(&self, caller: &RequestContext, error: StoreError) -> Status {
        let StoreError::Rejected(rule) = error else {
            return error.into();
        };
        let Some(holder) = rule.conflicting_booking().filter(|id| !id.is_empty()) else {
            return rule.into();
        };
        if reads_every_booking(&caller.principal) {
            return rule.into();
        }
        // Cancelled meanwhile, or unreadable: whose it was is unknown, so
        // its id is withheld.
        let owner = self
            .ctx
            .store
            .get_allocation(holder)
            .await
            .ok()
            .map(|found| found.employee_id);
        shown_conflict(&caller.principal, rule, owner.as_deref()).into()
    }
}

fn is_not_found(error: &StoreError) -> bool {
    matches!(error, StoreError::Rejected(DomainError::NotFound { .. }))
}

#[tonic::async_trait]
impl AllocationService for AllocationApi {
    async fn create_allocation(
        &self,
        request: Request<CreateAllocationRequest>,
    ) -> Result<Response<v1::Allocation>, Status> {
        let caller = context(&request)?;
        let new = decode_create(&self.ctx, &caller, request.into_inner())?;
        allow(
            &caller,
            Action::CreateBooking {
                employee_id: &new.employee_id,
            },
        )?;
        let created = match self.ctx.store.create_allocation(new).await {
            Ok(created) => created,
            Err(error) => return Err(self.refusal(&caller, error).await),
        };
        Ok(Response::new(convert::allocation(created)))
    }

    async fn get_allocation(
        &self,
        request: Request<GetAllocationRequest>,
    ) -> Result<Response<v1::Allocation>, Status> {
        let caller = context(&request)?;
        let id = request.into_inner().id;
        validate_id("id", &id).map_err(DomainError::invalid)?;
        match self.ctx.store.get_allocation(&id).await {
            Ok(found) => {
                let owner = Some(found.employee_id.as_str());
                allow(&caller, Action::ReadBooking { owner })?;
                Ok(Response::new(convert::allocation(found)))
            }
            // Someone else's booking or none: the same answer to an
            // employee, so ids can't be probed.
            Err(error) => {
                if is_not_found(&error) {
                    allow(&caller, Action::ReadBooking { owner: None })?;
                }
                Err(error.into())
            }
        }
    }

    async fn update_allocation(
        &self,
        request: Request<UpdateAllocationRequest>,
    ) -> Result<Response<v1::Allocation>, Status> {
        let caller = context(&request)?;
        let update = decode_update(&self.ctx, &caller, request.into_inner())?;
        self.check_owner(&caller, &update.id, |owner| Action::ChangeBooking { owner })
            .await?;
        let updated = match self.ctx.store.update_allocation(update).await {
            Ok(updated) => updated,
            Err(error) => return Err(self.refusal(&caller, error).await),
        };
        Ok(Response::new(convert::allocation(updated.after)))
    }

    async fn delete_allocation(
        &self,
        request: Request<DeleteAllocationRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = context(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        violations.check(validate_id("id", &request.id));
        let expected_etag =
            non_empty(request.etag).and_then(|etag| violations.check(Etag::parse("etag", &etag)));
        violations.finish(|| ())?;
        self.check_owner(&caller, &request.id, |owner| Action::CancelBooking {
            owner,
        })
        .await?;
        let now = self.ctx.now();
        let deletion = AllocationDeletion {
            id: request.id,
            expected_etag,
            now,
            window: self.ctx.window(now),
            origin: caller.origin(),
        };
        self.ctx.store.delete_allocation(deletion).await?;
        Ok(Response::new(()))
    }

    async fn list_allocation_history(
        &self,
        request: Request<ListAllocationHistoryRequest>,
    ) -> Result<Response<ListAllocationHistoryResponse>, Status> {
        let caller = context(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        // Filters become cache keys: ids are held to the length of an id.
        let mut id = |field: &str, value: String| {
            non_empty(value).and_then(|v| violations.check(validate_id(field, &v)).map(|()| v))
        };
        let (employee_id, vehicle_id, driver_id) = (
            id("employee_id", request.employee_id),
            id("vehicle_id", request.vehicle_id),
            id("driver_id", request.driver_id),
        );
        let mut date = |field: &str, value: String| {
            non_empty(value).and_then(|v| violations.check(parse_date(field, &v)))
        };
        let filter = HistoryFilter {
            start_date: date("start_date", request.start_date),
            end_date: date("end_date", request.end_date),
            employee_id,
            vehicle_id,
            driver_id,
        };
        let size = violations.check(PageSize::from_request("page_size", request.page_size));
        let (filter, size) = violations.finish(|| (filter, size))?;
        filter.validate()?;
        let filter = HistoryFilter {
            employee_id: history_scope(&caller.principal, filter.employee_id)
                .map_err(DomainError::from)?,
            ..filter
        };
        let size = size.map_or(0, PageSize::get);

        let key = self.ctx.page_key().await?;
        let tokens = PageToken::for_query(
            &key,
            ListKind::AllocationHistory,
            &filter.fingerprint_parts(),
        );
        let after = tokens.decode::<HistoryCursor>("page_token", &request.page_token)?;
        let page = self
            .ctx
            .store
            .list_allocation_history(&filter, PageRequest { size, after })
            .await?;

        let next_page_token = match page.items.last() {
            Some(last) if page.has_more => tokens.encode(&HistoryCursor::after(last)),
            _ => String::new(),
        };
        Ok(Response::new(ListAllocationHistoryResponse {
            allocations: page.items.into_iter().map(convert::allocation).collect(),
            next_page_token,
            total_size: page.total_size as i64,
        }))
    }
}

fn decode_create(
    ctx: &ServiceContext,
    caller: &RequestContext,
    request: CreateAllocationRequest,
) -> Result<NewAllocation, DomainError> {
    let a = request.allocation.unwrap_or_default();
    let mut violations = Violations::new();
    violations.check(validate_id("allocation.employee_id", &a.employee_id));
    violations.check(validate_id("allocation.vehicle_id", &a.vehicle_id));
    let date = if a.allocation_date.is_empty() {
        violations.push(Violation::required("allocation.allocation_date"));
        None
    } else {
        violations.check(parse_date("allocation.allocation_date", &a.allocation_date))
    };
    violations.check(validate_purpose("allocation.purpose", &a.purpose));
    if !request.request_id.is_empty() {
        violations.check(validate_id("request_id", &request.request_id));
    }
    let date = violations.finish(|| date.expect("a date when there are no violations"))?;

    let now = ctx.now();
    let idempotency_key = non_empty(request.request_id).map(|request_id| {
        IdempotencyKey::new(request_id, &a.employee_id, &a.vehicle_id, date, &a.purpose)
    });
    Ok(NewAllocation {
        id: new_id(now),
        employee_id: a.employee_id,
        vehicle_id: a.vehicle_id,
        date,
        purpose: a.purpose,
        now,
        window: ctx.window(now),
        idempotency_key,
        origin: caller.origin(),
    })
}

/// A new, time-ordered id: UUIDv7 keeps recent bookings close together in
/// the id index.
pub(super) fn new_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        now.timestamp().max(0) as u64,
        now.timestamp_subsec_nanos(),
    );
    uuid::Uuid::new_v7(ts).to_string()
}

fn decode_update(
    ctx: &ServiceContext,
    caller: &RequestContext,
    request: UpdateAllocationRequest,
) -> Result<AllocationUpdate, DomainError> {
    let a = request.allocation.unwrap_or_default();
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    let mut violations = Violations::new();
    violations.check(validate_id("allocation.id", &a.id));
    let expected_etag = non_empty(a.etag.clone())
        .and_then(|etag| violations.check(Etag::parse("allocation.etag", &etag)));

    let set = [
        !a.vehicle_id.is_empty(),
        !a.allocation_date.is_empty(),
        !a.purpose.is_empty(),
    ];
    let fields = super::mask::fields("allocation", &paths, &UPDATABLE, &set, &mut violations);

    let mut changes = AllocationChanges::default();
    for field in fields {
        match field {
            "vehicle_id" => {
                changes.vehicle_id = violations
                    .check(validate_id("allocation.vehicle_id", &a.vehicle_id))
                    .map(|()| a.vehicle_id.clone());
            }
            "allocation_date" => {
                changes.date = if a.allocation_date.is_empty() {
                    violations.push(Violation::required("allocation.allocation_date"));
                    None
                } else {
                    violations.check(parse_date("allocation.allocation_date", &a.allocation_date))
                };
            }
            _ => {
                changes.purpose = violations
                    .check(validate_purpose("allocation.purpose", &a.purpose))
                    .map(|()| a.purpose.clone());
            }
        }
    }
    violations.finish(|| ())?;

    let now = ctx.now();
    Ok(AllocationUpdate {
        id: a.id,
        changes,
        expected_etag,
        now,
        window: ctx.window(now),
        origin: caller.origin(),
    })
}
