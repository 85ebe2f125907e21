//! Fleet administration, end to end over gRPC and REST: every call, each
//! refusal, and the conflicting-bookings policy both ways.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use vehicle_allocation::domain::access::Role;
use vehicle_allocation::proto::v1::{
    self, AssignDriverRequest, CreateDriverRequest, CreateEmployeeRequest,
    CreateVehicleBlockRequest, CreateVehicleRequest, DeactivateDriverRequest,
    DeactivateEmployeeRequest, DeleteVehicleBlockRequest, EraseEmployeeRequest, GetEmployeeRequest,
    GetVehicleRequest, ListAllocationHistoryRequest, ListAvailableVehiclesRequest,
    ListEmployeesRequest, ListVehicleBlocksRequest, ListVehiclesRequest, ReactivateEmployeeRequest,
    ReactivateVehicleRequest, RetireVehicleRequest, UpdateEmployeeRequest, UpdateVehicleRequest,
};

use crate::helpers::{AppOptions, Cred, TestApp, assert_status, spawn_app, spawn_app_with};
use crate::identity::{hs256_auth, token};

fn metadata(details: &tonic_types::ErrorDetails, key: &str) -> String {
    details.error_info().unwrap().metadata[key].clone()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn new_driver(app: &TestApp, id: &str) -> v1::Driver {
    app.fleet
        .clone()
        .create_driver(CreateDriverRequest {
            driver: Some(v1::Driver {
                id: id.into(),
                name: format!("Driver {id}"),
                phone: "+44 20 7946 0000".into(),
                license_number: format!("LIC-{id}"),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn employees_are_created_changed_deactivated_and_reactivated() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    let create = |id: &str, email: &str| CreateEmployeeRequest {
        employee: Some(v1::Employee {
            id: id.into(),
            name: "Ada Lovelace".into(),
            email: email.into(),
            department: "Engineering".into(),
            ..Default::default()
        }),
    };
    let ada = fleet
        .create_employee(create("hr-1815", "ada@example.org"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ada.id.as_str(), ada.active, ada.etag.as_str()),
        ("hr-1815", true, "1")
    );
    let assigned = fleet
        .create_employee(create("", "other@example.org"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(assigned.id.len(), 36, "a UUID: {}", assigned.id);

    let taken = fleet
        .create_employee(create("hr-1816", &app.employees[0].email))
        .await
        .unwrap_err();
    let details = assert_status(&taken, Code::AlreadyExists, "EMAIL_TAKEN");
    assert_eq!(metadata(&details, "holder_id"), app.employee(0));
    let again = fleet
        .create_employee(create("hr-1815", "third@example.org"))
        .await
        .unwrap_err();
    assert_status(&again, Code::AlreadyExists, "EMPLOYEE_ALREADY_EXISTS");
    let bad = fleet
        .create_employee(CreateEmployeeRequest {
            employee: Some(v1::Employee {
                id: "has space".into(),
                email: "not-an-address".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    let details = assert_status(&bad, Code::InvalidArgument, "INVALID_VALUE");
    assert_eq!(
        crate::helpers::violated_fields(&details),
        ["employee.id", "employee.name", "employee.email"]
    );

    let update = |etag: &str| UpdateEmployeeRequest {
        employee: Some(v1::Employee {
            id: "hr-1815".into(),
            department: "Research".into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: mask(&["department"]),
    };
    let stale = fleet.update_employee(update("9")).await.unwrap_err();
    assert_status(&stale, Code::Aborted, "ETAG_MISMATCH");
    let moved = fleet
        .update_employee(update("1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (moved.department.as_str(), moved.etag.as_str()),
        ("Research", "2")
    );
    assert_eq!(moved.name, "Ada Lovelace", "fields outside the mask stay");

    // Deactivation: refused while bookings stand in the way, then with them
    // cancelled.
    let booked = app.book(0, 4, 2).await.unwrap();
    let deactivate = |cancel| DeactivateEmployeeRequest {
        id: app.employee(0),
        cancel_conflicting_bookings: cancel,
    };
    let refused = fleet
        .deactivate_employee(deactivate(false))
        .await
        .unwrap_err();
    let details = assert_status(&refused, Code::FailedPrecondition, "HAS_FUTURE_BOOKINGS");
    assert_eq!(metadata(&details, "allocation_ids"), booked.id);
    assert_eq!(metadata(&details, "total"), "1");
    let done = fleet
        .deactivate_employee(deactivate(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.cancelled_allocations, vec![booked]);
    assert!(!done.employee.unwrap().active);
    let refused = app.book(0, 4, 3).await.unwrap_err();
    assert_status(&refused, Code::FailedPrecondition, "EMPLOYEE_DEACTIVATED");

    let list = |show| ListEmployeesRequest {
        page_size: 500,
        show_deactivated: show,
        ..Default::default()
    };
    let active = fleet
        .list_employees(list(false))
        .await
        .unwrap()
        .into_inner();
    assert!(active.employees.iter().all(|e| e.id != app.employee(0)));
    let everyone = fleet.list_employees(list(true)).await.unwrap().into_inner();
    assert_eq!(everyone.total_size, active.total_size + 1);

    fleet
        .reactivate_employee(ReactivateEmployeeRequest {
            id: app.employee(0),
        })
        .await
        .unwrap();
    app.book(0, 4, 3).await.unwrap();
}

#[tokio::test]
async fn a_driver_reassignment_is_seen_in_the_history_of_both_drivers() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    let old = app.driver_of(0);
    new_driver(&app, "drv-relief").await;
    let early = app.book(1, 0, 1).await.unwrap();
    let late = app.book(2, 0, 5).await.unwrap();

    let assign = |vehicle: String, driver: &str, day: i64| AssignDriverRequest {
        vehicle_id: vehicle,
        driver_id: driver.into(),
        effective_date: app.day(day),
    };
    let done = fleet
        .assign_driver(assign(app.vehicle(0), "drv-relief", 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.reassigned_allocations.len(), 1);
    assert_eq!(done.reassigned_allocations[0].id, late.id);
    assert_eq!(done.reassigned_allocations[0].driver_id, "drv-relief");
    let vehicle = done.vehicle.unwrap();
    assert_eq!(vehicle.driver_id, old, "today it is still the old driver");
    assert_eq!(vehicle.etag, "2");

    let history = |driver: &str| ListAllocationHistoryRequest {
        driver_id: driver.into(),
        ..Default::default()
    };
    let ids = |page: v1::ListAllocationHistoryResponse| -> Vec<String> {
        page.allocations.into_iter().map(|a| a.id).collect()
    };
    let mut allocations = app.allocations.clone();
    let relief = allocations
        .list_allocation_history(history("drv-relief"))
        .await
        .unwrap();
    assert_eq!(ids(relief.into_inner()), vec![late.id.clone()]);
    let before = allocations
        .list_allocation_history(history(&old))
        .await
        .unwrap();
    assert_eq!(ids(before.into_inner()), vec![early.id.clone()]);

    // Availability shows who drives on the day asked about.
    let day = |d: i64| ListAvailableVehiclesRequest {
        date: app.day(d),
        page_size: 500,
        ..Default::default()
    };
    let on_4 = fleet
        .list_available_vehicles(day(4))
        .await
        .unwrap()
        .into_inner();
    let vehicle_0 = on_4
        .vehicles
        .iter()
        .find(|v| v.id == app.vehicle(0))
        .unwrap();
    assert_eq!(vehicle_0.driver_id, "drv-relief");

    let busy = fleet
        .assign_driver(assign(app.vehicle(1), "drv-relief", 6))
        .await
        .unwrap_err();
    let details = assert_status(&busy, Code::AlreadyExists, "DRIVER_ALREADY_ASSIGNED");
    assert_eq!(metadata(&details, "vehicle_id"), app.vehicle(0));
    let past = fleet
        .assign_driver(assign(app.vehicle(0), "drv-relief", -1))
        .await
        .unwrap_err();
    assert_status(&past, Code::InvalidArgument, "DATE_IN_PAST");
}

#[tokio::test]
async fn a_block_is_seen_by_availability_and_by_create() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    let booked = app.book(3, 3, 4).await.unwrap();
    let create = |cancel| CreateVehicleBlockRequest {
        vehicle_id: app.vehicle(3),
        block: Some(v1::VehicleBlock {
            start_date: app.day(3),
            end_date: app.day(5),
            reason: "Annual servicing".into(),
            ..Default::default()
        }),
        cancel_conflicting_bookings: cancel,
    };
    let refused = fleet.create_vehicle_block(create(false)).await.unwrap_err();
    assert_status(&refused, Code::FailedPrecondition, "HAS_FUTURE_BOOKINGS");
    let backwards = CreateVehicleBlockRequest {
        vehicle_id: app.vehicle(3),
        block: Some(v1::VehicleBlock {
            start_date: app.day(5),
            end_date: app.day(3),
            ..Default::default()
        }),
        cancel_conflicting_bookings: false,
    };
    let bad = fleet.create_vehicle_block(backwards).await.unwrap_err();
    assert_status(&bad, Code::InvalidArgument, "INVALID_DATE_RANGE");

    let free_on = |d: i64| {
        let mut fleet = app.fleet.clone();
        let date = app.day(d);
        async move {
            let page = fleet
                .list_available_vehicles(ListAvailableVehiclesRequest {
                    date,
                    page_size: 500,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            page.vehicles.into_iter().map(|v| v.id).collect::<Vec<_>>()
        }
    };
    // Read (and cache) availability before the block: the block must
    // invalidate it.
    assert!(!free_on(4).await.contains(&app.vehicle(3)));
    assert!(free_on(5).await.contains(&app.vehicle(3)));

    let done = fleet
        .create_vehicle_block(create(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.cancelled_allocations, vec![booked]);
    let block = done.block.unwrap();
    assert_eq!(block.vehicle_id, app.vehicle(3));
    assert!(!free_on(5).await.contains(&app.vehicle(3)));
    assert!(free_on(6).await.contains(&app.vehicle(3)));

    let refused = app.book(4, 3, 5).await.unwrap_err();
    let details = assert_status(&refused, Code::FailedPrecondition, "VEHICLE_OUT_OF_SERVICE");
    assert_eq!(metadata(&details, "block_id"), block.id);

    let listed = fleet
        .list_vehicle_blocks(ListVehicleBlocksRequest {
            vehicle_id: app.vehicle(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.blocks, vec![block.clone()]);
    let deleted = fleet
        .delete_vehicle_block(DeleteVehicleBlockRequest {
            vehicle_id: app.vehicle(3),
            block_id: block.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted, block);
    assert!(free_on(5).await.contains(&app.vehicle(3)));
    app.book(4, 3, 5).await.unwrap();
}

#[tokio::test]
async fn vehicles_are_created_changed_retired_and_reactivated() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    new_driver(&app, "drv-new").await;
    let create = |registration: &str, driver: &str| CreateVehicleRequest {
        vehicle: Some(v1::Vehicle {
            id: "veh-new".into(),
            registration: registration.into(),
            make: "Ford".into(),
            model: "Transit".into(),
            seats: 8,
            driver_id: driver.into(),
            ..Default::default()
        }),
    };
    let taken = fleet
        .create_vehicle(create(&app.vehicles[0].registration, "drv-new"))
        .await
        .unwrap_err();
    assert_status(&taken, Code::AlreadyExists, "REGISTRATION_TAKEN");
    let busy = fleet
        .create_vehicle(create("NEW 001", &app.driver_of(1)))
        .await
        .unwrap_err();
    assert_status(&busy, Code::AlreadyExists, "DRIVER_ALREADY_ASSIGNED");
    let created = fleet
        .create_vehicle(create("NEW 001", "drv-new"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.driver.as_ref().unwrap().id, "drv-new");
    assert_eq!(
        created.driver.unwrap().license_number,
        "LIC-drv-new",
        "fleet admins read licence numbers"
    );

    let seats = fleet
        .update_vehicle(UpdateVehicleRequest {
            vehicle: Some(v1::Vehicle {
                id: "veh-new".into(),
                seats: 101,
                ..Default::default()
            }),
            update_mask: mask(&["seats"]),
        })
        .await
        .unwrap_err();
    assert_status(&seats, Code::InvalidArgument, "INVALID_VALUE");
    let changed = fleet
        .update_vehicle(UpdateVehicleRequest {
            vehicle: Some(v1::Vehicle {
                id: "veh-new".into(),
                seats: 6,
                etag: created.etag.clone(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (changed.seats, changed.registration.as_str()),
        (6, "NEW 001")
    );

    let booked = app.book(0, 6, 2).await.unwrap();
    let retire = |cancel| RetireVehicleRequest {
        id: app.vehicle(6),
        cancel_conflicting_bookings: cancel,
    };
    let refused = fleet.retire_vehicle(retire(false)).await.unwrap_err();
    assert_status(&refused, Code::FailedPrecondition, "HAS_FUTURE_BOOKINGS");
    let done = fleet
        .retire_vehicle(retire(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.cancelled_allocations, vec![booked]);
    let retired = done.vehicle.unwrap();
    assert!(retired.retired);
    assert!(retired.driver.is_none(), "its driver is free from today");
    let refused = app.book(1, 6, 3).await.unwrap_err();
    assert_status(&refused, Code::FailedPrecondition, "VEHICLE_RETIRED");

    let list = |show| ListVehiclesRequest {
        page_size: 500,
        show_retired: show,
        ..Default::default()
    };
    let listed = fleet.list_vehicles(list(false)).await.unwrap().into_inner();
    assert!(listed.vehicles.iter().all(|v| v.id != app.vehicle(6)));
    let all = fleet.list_vehicles(list(true)).await.unwrap().into_inner();
    assert_eq!(all.total_size, listed.total_size + 1);

    fleet
        .reactivate_vehicle(ReactivateVehicleRequest { id: app.vehicle(6) })
        .await
        .unwrap();
    let refused = app.book(1, 6, 3).await.unwrap_err();
    assert_status(&refused, Code::FailedPrecondition, "VEHICLE_HAS_NO_DRIVER");
    fleet
        .assign_driver(AssignDriverRequest {
            vehicle_id: app.vehicle(6),
            driver_id: app.driver_of(6),
            effective_date: String::new(),
        })
        .await
        .unwrap();
    app.book(1, 6, 3).await.unwrap();

    // Deactivating a driver leaves the vehicle without one.
    fleet
        .deactivate_driver(DeactivateDriverRequest {
            id: "drv-new".into(),
            cancel_conflicting_bookings: false,
        })
        .await
        .unwrap();
    let vehicle = fleet
        .get_vehicle(GetVehicleRequest {
            id: "veh-new".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vehicle.driver_id, "");
}

#[tokio::test]
async fn only_fleet_admins_change_the_fleet() {
    let app = spawn_app_with(AppOptions {
        auth: hs256_auth(),
        ..AppOptions::default()
    })
    .await;
    let agent = Cred::Bearer(token("emp-00001", &[Role::BookingAgent], app.clock_now()));
    let admin = Cred::Bearer(token("emp-00002", &[Role::FleetAdmin], app.clock_now()));
    let request = |cred: &Cred| {
        cred.grpc(CreateEmployeeRequest {
            employee: Some(v1::Employee {
                id: "hr-1".into(),
                name: "N".into(),
                email: "n@example.org".into(),
                ..Default::default()
            }),
        })
    };
    let denied = app
        .fleet
        .clone()
        .create_employee(request(&agent))
        .await
        .unwrap_err();
    let details = assert_status(&denied, Code::PermissionDenied, "ROLE_REQUIRED");
    assert_eq!(metadata(&details, "role"), "fleet_admin");
    app.fleet
        .clone()
        .create_employee(request(&admin))
        .await
        .unwrap();
    let (status, _, body) = app
        .send(agent.rest(app.http.post(app.url("/api/vehicles/veh-0001:retire"))))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["reason"], "ROLE_REQUIRED");
}

#[tokio::test]
async fn rest_manages_the_fleet_with_etags_and_custom_methods() {
    let app = spawn_app().await;
    let http = &app.http;

    // Employees.
    let (status, headers, body) = app
        .send(http.post(app.url("/api/employees")).json(&json!({
            "id": "hr-77", "name": "Grace Hopper", "email": "grace@example.org",
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["location"], "/api/employees/hr-77");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(body["active"], true);
    let (status, _, body) = app
        .send(
            http.patch(app.url("/api/employees/hr-77"))
                .header("if-match", "\"5\"")
                .json(&json!({"department": "Navy"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["reason"], "ETAG_MISMATCH");
    let (status, headers, body) = app
        .send(
            http.patch(app.url("/api/employees/hr-77"))
                .header("if-match", "\"1\"")
                .json(&json!({"department": "Navy"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["department"].as_str(),
            headers["etag"].to_str().unwrap()
        ),
        (Some("Navy"), "\"2\"")
    );
    let (status, _, body) = app
        .send(
            http.patch(app.url("/api/employees/hr-77"))
                .json(&json!({"email": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field_violations"][0]["field"], "email");

    let booked = app.book(9, 9, 2).await.unwrap();
    let deactivate = format!("/api/employees/{}:deactivate", app.employee(9));
    let (status, _, body) = app.send(http.post(app.url(&deactivate))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "HAS_FUTURE_BOOKINGS");
    assert_eq!(
        body["error"]["metadata"]["allocation_ids"],
        booked.id.as_str()
    );
    let (status, _, body) = app
        .send(http.post(app.url(&format!("{deactivate}?cancel_conflicting_bookings=true"))))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cancelled_allocations"][0]["id"], booked.id.as_str());
    assert_eq!(body["employee"]["active"], false);
    let reactivate = format!("/api/employees/{}:reactivate", app.employee(9));
    let (status, _, body) = app.send(http.post(app.url(&reactivate))).await;
    assert_eq!(
        (status, &body["active"]),
        (StatusCode::OK, &Value::Bool(true))
    );
    let (status, _, body) = app
        .send(http.post(app.url("/api/employees/hr-77:explode")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["reason"], "NO_SUCH_PATH");

    // Drivers.
    let (status, _, body) = app
        .send(http.post(app.url("/api/drivers")).json(&json!({
            "id": "drv-77", "name": "Ayrton", "phone": "+55 11 5555 0000", "license_number": "BR-77",
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = app
        .send(
            http.patch(app.url("/api/drivers/drv-77"))
                .json(&json!({"phone": "+55 11 5555 0001"})),
        )
        .await;
    assert_eq!(
        (status, body["phone"].as_str()),
        (StatusCode::OK, Some("+55 11 5555 0001"))
    );
    let (status, _, body) = app
        .send(http.get(app.url("/api/drivers?page_size=500")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_size"], app.vehicles.len() as i64 + 1);
    let (status, _, body) = app.send(http.get(app.url("/api/drivers/drv-77"))).await;
    assert_eq!(
        (status, body["license_number"].as_str()),
        (StatusCode::OK, Some("BR-77"))
    );

    // Vehicles, the driver assignment and blocks.
    let (status, headers, body) = app
        .send(http.post(app.url("/api/vehicles")).json(&json!({
            "id": "veh-77", "registration": "F1 77", "make": "McLaren", "model": "MP4/4",
            "seats": 0, "driver_id": "drv-77",
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["location"], "/api/vehicles/veh-77");
    assert_eq!(body["driver"]["id"], "drv-77");
    let (status, _, body) = app
        .send(
            http.patch(app.url("/api/vehicles/veh-77"))
                .json(&json!({"seats": 1})),
        )
        .await;
    assert_eq!((status, body["seats"].as_i64()), (StatusCode::OK, Some(1)));
    // An update's body takes the fields its mask may name, and no others:
    // the driver changes through its own call.
    for (method, path, body, refused) in [
        (
            "PATCH",
            "/api/vehicles/veh-77",
            json!({"driver_id": "drv-1"}),
            "driver_id",
        ),
        (
            "PATCH",
            "/api/vehicles/veh-77",
            json!({"retired": true}),
            "retired",
        ),
        ("POST", "/api/vehicles", json!({"etag": "1"}), "etag"),
        (
            "PATCH",
            "/api/employees/emp-77",
            json!({"active": false}),
            "active",
        ),
    ] {
        let request = http.request(method.parse().unwrap(), app.url(path));
        let (status, _, answer) = app.send(request.json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["reason"], "UNKNOWN_FIELD", "{answer}");
        assert_eq!(answer["error"]["field_violations"][0]["field"], refused);
    }
    // A read by id takes no query parameters and ignores a query string.
    let (status, _, body) = app
        .send(http.get(app.url("/api/vehicles/veh-77?cache=1")))
        .await;
    assert_eq!((status, body["seats"].as_i64()), (StatusCode::OK, Some(1)));
    let (status, _, body) = app
        .send(
            http.put(app.url(&format!("/api/vehicles/{}/driver", app.vehicle(9))))
                .json(&json!({"driver_id": "drv-77", "effective_date": app.day(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["reason"], "DRIVER_ALREADY_ASSIGNED");
    assert_eq!(body["error"]["metadata"]["vehicle_id"], "veh-77");

    let blocks = "/api/vehicles/veh-77/blocks";
    let (status, headers, body) = app
        .send(http.post(app.url(blocks)).json(&json!({
            "start_date": app.day(2), "end_date": app.day(3), "reason": "Engine",
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let block_id = body["block"]["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("{blocks}/{block_id}").as_str());
    let (status, _, body) = app
        .send(http.post(app.url("/api/allocations")).json(&json!({
            "employee_id": app.employee(1), "vehicle_id": "veh-77", "allocation_date": app.day(2),
        })))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "VEHICLE_OUT_OF_SERVICE");
    let (status, _, body) = app.send(http.get(app.url(blocks))).await;
    assert_eq!(
        (status, body["total_size"].as_i64()),
        (StatusCode::OK, Some(1))
    );
    let (status, _, _) = app
        .send(http.delete(app.url(&format!("{blocks}/{block_id}"))))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, _, body) = app
        .send(http.post(app.url("/api/vehicles/veh-77:retire")))
        .await;
    assert_eq!(
        (status, &body["vehicle"]["retired"]),
        (StatusCode::OK, &Value::Bool(true))
    );
    let (status, _, body) = app
        .send(http.get(app.url("/api/vehicles?show_retired=true&page_size=500")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_size"], app.vehicles.len() as i64 + 1);
    let (status, _, body) = app
        .send(http.post(app.url("/api/vehicles/veh-77:reactivate")))
        .await;
    assert_eq!(
        (status, &body["retired"]),
        (StatusCode::OK, &Value::Bool(false))
    );
    let (status, _, body) = app
        .send(http.post(app.url("/api/drivers/drv-77:deactivate")))
        .await;
    assert_eq!(
        (status, &body["driver"]["active"]),
        (StatusCode::OK, &Value::Bool(false))
    );

    // A custom method takes POST alone.
    let (status, headers, _) = app
        .send(http.delete(app.url("/api/vehicles/veh-77:retire")))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    let (status, headers, _) = app.send(http.delete(app.url("/api/vehicles/veh-77"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET,HEAD,PATCH");

    // The document describes every call.
    let openapi = app.openapi().await;
    for (path, method) in [
        ("/api/employees", "post"),
        ("/api/employees/{id}", "patch"),
        ("/api/employees/{id}:deactivate", "post"),
        ("/api/employees/{id}:reactivate", "post"),
        ("/api/drivers", "get"),
        ("/api/drivers", "post"),
        ("/api/drivers/{id}", "get"),
        ("/api/drivers/{id}", "patch"),
        ("/api/drivers/{id}:deactivate", "post"),
        ("/api/vehicles", "post"),
        ("/api/vehicles/{id}", "patch"),
        ("/api/vehicles/{id}:retire", "post"),
        ("/api/vehicles/{id}:reactivate", "post"),
        ("/api/vehicles/{id}/driver", "put"),
        ("/api/vehicles/{id}/blocks", "get"),
        ("/api/vehicles/{id}/blocks", "post"),
        ("/api/vehicles/{id}/blocks/{block_id}", "delete"),
    ] {
        assert!(
            openapi["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let reasons =
        openapi["paths"]["/api/vehicles/{id}:retire"]["post"]["responses"]["400"].to_string();
    assert!(reasons.contains("HAS_FUTURE_BOOKINGS"), "{reasons}");
}

#[tokio::test]
async fn only_fleet_admins_erase_an_employee_over_grpc_and_rest() {
    let app = spawn_app_with(AppOptions {
        auth: hs256_auth(),
        ..AppOptions::default()
    })
    .await;
    let admin = Cred::Bearer(token("emp-00002", &[Role::FleetAdmin], app.clock_now()));
    let (name, email) = ("Henrietta Ravensworth", "h.ravensworth@example.org");
    app.fleet
        .clone()
        .create_employee(admin.grpc(CreateEmployeeRequest {
            employee: Some(v1::Employee {
                id: "hr-erase".into(),
                name: name.into(),
                email: email.into(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap();
    let booked = app
        .create(v1::Allocation {
            employee_id: "hr-erase".into(),
            vehicle_id: app.vehicle(1),
            allocation_date: app.day(2),
            ..Default::default()
        })
        .await
        .unwrap();
    let erase = |cred: &Cred, cancel| {
        cred.grpc(EraseEmployeeRequest {
            id: "hr-erase".into(),
            cancel_conflicting_bookings: cancel,
        })
    };
    for role in [Role::Employee, Role::BookingAgent, Role::Auditor] {
        let cred = Cred::Bearer(token("hr-erase", &[role], app.clock_now()));
        let denied = app
            .fleet
            .clone()
            .erase_employee(erase(&cred, true))
            .await
            .unwrap_err();
        let details = assert_status(&denied, Code::PermissionDenied, "ROLE_REQUIRED");
        assert_eq!(metadata(&details, "role"), "fleet_admin");
        let (status, _, body) = app
            .send(cred.rest(app.http.post(app.url("/api/employees/hr-erase:erase"))))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
        assert_eq!(body["error"]["reason"], "ROLE_REQUIRED");
    }

    let refused = app
        .fleet
        .clone()
        .erase_employee(erase(&admin, false))
        .await
        .unwrap_err();
    let details = assert_status(&refused, Code::FailedPrecondition, "HAS_FUTURE_BOOKINGS");
    assert_eq!(metadata(&details, "allocation_ids"), booked.id);

    let (status, _, body) = app
        .send(
            admin.rest(
                app.http.post(
                    app.url("/api/employees/hr-erase:erase?cancel_conflicting_bookings=true"),
                ),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pseudonym = vehicle_allocation::domain::admin::Erasure::of("hr-erase");
    assert_eq!(body["employee"]["name"], pseudonym.name.as_str());
    assert_eq!(body["employee"]["email"], pseudonym.email.as_str());
    assert_eq!(body["employee"]["active"], false);
    assert_eq!(body["cancelled_allocations"][0]["id"], booked.id.as_str());

    // Again over gRPC: nothing changes.
    let again = app
        .fleet
        .clone()
        .erase_employee(erase(&admin, false))
        .await
        .unwrap()
        .into_inner();
    let employee = again.employee.unwrap();
    assert_eq!(employee.etag, body["employee"]["etag"].as_str().unwrap());
    assert!(again.cancelled_allocations.is_empty());
    let read = app
        .fleet
        .clone()
        .get_employee(admin.grpc(GetEmployeeRequest {
            id: "hr-erase".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, employee);

    // The events say erased, and none holds the name or e-mail.
    let events = app.events_after(&admin, 0).await.unwrap();
    let erased: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "employee.erased")
        .collect();
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0].resource, "employees/hr-erase");
    assert!(erased[0].before.is_none());
    let all = format!("{events:?}");
    assert!(!all.contains(name) && !all.contains(email), "{all}");
    assert!(all.contains(&pseudonym.email));
}
