//! FleetService: employees, vehicles and availability.

use tonic::Code;
use vehicle_allocation::proto::v1::{
    GetEmployeeRequest, GetVehicleRequest, ListAvailableVehiclesRequest, ListEmployeesRequest,
    ListVehiclesRequest,
};

use crate::helpers::{assert_status, spawn_app, violated_fields};

#[tokio::test]
async fn employees_page_in_id_order_and_filter_by_department() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = fleet
            .list_employees(ListEmployeesRequest {
                page_size: 25,
                page_token: token.clone(),
                department: String::new(),
                show_deactivated: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, app.employees.len() as i64);
        ids.extend(page.employees.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        ids,
        app.employees
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>()
    );

    let department = app.employees[0].department.clone();
    let page = fleet
        .list_employees(ListEmployeesRequest {
            department: department.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let expected = app
        .employees
        .iter()
        .filter(|e| e.department == department)
        .count();
    assert_eq!(page.employees.len(), expected);
    assert!(page.employees.iter().all(|e| e.department == department));

    let employee = fleet
        .get_employee(GetEmployeeRequest {
            id: app.employee(2),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(employee.email, app.employees[2].email);
    let status = fleet
        .get_employee(GetEmployeeRequest { id: "emp-x".into() })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "EMPLOYEE_NOT_FOUND");
}

#[tokio::test]
async fn vehicles_come_with_their_drivers() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    let page = fleet
        .list_vehicles(ListVehiclesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.vehicles.len(), app.vehicles.len());
    assert_eq!(page.total_size, app.vehicles.len() as i64);
    let first = &page.vehicles[0];
    let driver = first.driver.as_ref().unwrap();
    assert_eq!(first.driver_id, driver.id);
    assert_eq!(
        driver.license_number,
        app.vehicles[0].driver.as_ref().unwrap().license_number
    );

    let vehicle = fleet
        .get_vehicle(GetVehicleRequest { id: app.vehicle(5) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vehicle.registration, app.vehicles[5].registration);
    assert_eq!(vehicle.driver.unwrap().id, app.driver_of(5));
    let status = fleet
        .get_vehicle(GetVehicleRequest { id: "veh-x".into() })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "VEHICLE_NOT_FOUND");
}

#[tokio::test]
async fn available_vehicles_leave_out_those_booked_that_day() {
    let app = spawn_app().await;
    app.book(0, 0, 2).await.unwrap();
    app.book(1, 10, 2).await.unwrap();
    app.book(2, 11, 3).await.unwrap();
    let page = app
        .fleet
        .clone()
        .list_available_vehicles(ListAvailableVehiclesRequest {
            date: app.day(2),
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.total_size, app.vehicles.len() as i64 - 2);
    let ids: Vec<_> = page.vehicles.iter().map(|v| v.id.clone()).collect();
    assert!(!ids.contains(&app.vehicle(0)) && !ids.contains(&app.vehicle(10)));
    assert!(ids.contains(&app.vehicle(11)));
}

#[tokio::test]
async fn availability_needs_a_bookable_date() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    for (date, reason) in [
        ("", "FIELD_REQUIRED"),
        ("2026/12/01", "INVALID_DATE"),
        (&app.day(-1) as &str, "DATE_IN_PAST"),
        (&app.day(400), "DATE_TOO_FAR_AHEAD"),
    ] {
        let status = fleet
            .list_available_vehicles(ListAvailableVehiclesRequest {
                date: date.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        let details = assert_status(&status, Code::InvalidArgument, reason);
        assert_eq!(violated_fields(&details), ["date"]);
    }
}

#[tokio::test]
async fn available_vehicle_tokens_are_bound_to_their_date() {
    let app = spawn_app().await;
    let mut fleet = app.fleet.clone();
    let first = fleet
        .list_available_vehicles(ListAvailableVehiclesRequest {
            date: app.day(1),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.vehicles.len(), 10);
    let status = fleet
        .list_available_vehicles(ListAvailableVehiclesRequest {
            date: app.day(2),
            page_size: 10,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "PAGE_TOKEN_MISMATCH");
}
