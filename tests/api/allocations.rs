//! Create, get, update and delete, with every rule and its status.

use chrono::Duration;
use prost_types::{FieldMask, Timestamp};
use tonic::Code;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, DeleteAllocationRequest, GetAllocationRequest,
    UpdateAllocationRequest,
};

use crate::helpers::{
    AppOptions, TestApp, assert_status, spawn_app, spawn_app_with, violated_fields,
};

async fn get(app: &TestApp, id: &str) -> Result<v1::Allocation, tonic::Status> {
    app.allocations
        .clone()
        .get_allocation(GetAllocationRequest { id: id.into() })
        .await
        .map(tonic::Response::into_inner)
}

async fn update(
    app: &TestApp,
    allocation: v1::Allocation,
    paths: &[&str],
) -> Result<v1::Allocation, tonic::Status> {
    app.allocations
        .clone()
        .update_allocation(UpdateAllocationRequest {
            allocation: Some(allocation),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn delete(app: &TestApp, id: &str, etag: &str) -> Result<(), tonic::Status> {
    app.allocations
        .clone()
        .delete_allocation(DeleteAllocationRequest {
            id: id.into(),
            etag: etag.into(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn create_books_the_vehicle_with_its_driver_and_get_returns_it() {
    let app = spawn_app().await;
    let created = app
        .create(v1::Allocation {
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(1),
            allocation_date: app.day(3),
            purpose: "Client visit".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!created.id.is_empty());
    assert_eq!(created.employee_id, app.employee(0));
    assert_eq!(created.vehicle_id, app.vehicle(1));
    assert_eq!(created.driver_id, app.driver_of(1));
    assert_eq!(created.allocation_date, app.day(3));
    assert_eq!(created.purpose, "Client visit");
    assert_eq!(created.etag, "1");
    let expected_time = Timestamp {
        seconds: crate::helpers::start_time().timestamp(),
        nanos: 0,
    };
    assert_eq!(created.create_time, Some(expected_time));
    assert_eq!(created.update_time, created.create_time);
    assert_eq!(get(&app, &created.id).await.unwrap(), created);
}

#[tokio::test]
async fn output_only_fields_sent_by_the_client_are_ignored() {
    let app = spawn_app().await;
    let created = app
        .create(v1::Allocation {
            id: "my-own-id".into(),
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(1),
            driver_id: "drv-forged".into(),
            allocation_date: app.day(1),
            etag: "77".into(),
            create_time: Some(Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_ne!(created.id, "my-own-id");
    assert_eq!(created.driver_id, app.driver_of(1));
    assert_eq!(created.etag, "1");
    assert_ne!(created.create_time.unwrap().seconds, 1);
}

#[tokio::test]
async fn create_lists_every_missing_or_malformed_field() {
    let app = spawn_app().await;
    let status = app.create(v1::Allocation::default()).await.unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "FIELD_REQUIRED");
    assert_eq!(
        violated_fields(&details),
        [
            "allocation.employee_id",
            "allocation.vehicle_id",
            "allocation.allocation_date"
        ]
    );
    assert!(
        status
            .message()
            .contains("allocation.employee_id is required")
    );

    let status = app
        .allocations
        .clone()
        .create_allocation(CreateAllocationRequest::default())
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "FIELD_REQUIRED");

    for bad in ["2026-13-01", "01/12/2026", "tomorrow", "2026-12-1"] {
        let status = app
            .create(v1::Allocation {
                employee_id: app.employee(0),
                vehicle_id: app.vehicle(0),
                allocation_date: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        let details = assert_status(&status, Code::InvalidArgument, "INVALID_DATE");
        assert_eq!(violated_fields(&details), ["allocation.allocation_date"]);
        assert!(status.message().contains("YYYY-MM-DD"), "{status:?}");
    }

    let status = app
        .create(v1::Allocation {
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(0),
            allocation_date: app.day(1),
            purpose: "x".repeat(501),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "FIELD_TOO_LONG");
    assert_eq!(violated_fields(&details), ["allocation.purpose"]);
}

#[tokio::test]
async fn create_refuses_dates_outside_the_booking_window() {
    let app = spawn_app().await;
    let status = app.book(0, 0, -1).await.unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "DATE_IN_PAST");
    assert_eq!(violated_fields(&details), ["allocation.allocation_date"]);

    let status = app.book(0, 0, 91).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, "DATE_TOO_FAR_AHEAD");
    assert!(status.message().contains(&app.day(90)), "{status:?}");

    app.book(0, 0, 0).await.unwrap();
    app.book(0, 0, 90).await.unwrap();
}

#[tokio::test]
async fn max_days_ahead_is_configurable() {
    let mut options = AppOptions::default();
    options.policy.max_days_ahead = 7;
    let app = spawn_app_with(options).await;
    assert_status(
        &app.book(0, 0, 8).await.unwrap_err(),
        Code::InvalidArgument,
        "DATE_TOO_FAR_AHEAD",
    );
    app.book(0, 0, 7).await.unwrap();
}

#[tokio::test]
async fn today_is_reckoned_in_the_organisation_time_zone() {
    // 23:30 UTC on the 26th is already the 27th in Tokyo.
    let mut options = AppOptions::default();
    options.policy.time_zone = chrono_tz::Asia::Tokyo;
    options.now = crate::helpers::start_time() + Duration::minutes(13 * 60 + 30);
    let app = spawn_app_with(options).await;
    assert_eq!(app.day(0), "2026-11-27");
    let status = app
        .create(v1::Allocation {
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(0),
            allocation_date: "2026-11-26".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "DATE_IN_PAST");
    app.book(0, 0, 0).await.unwrap();
}

#[tokio::test]
async fn unknown_employee_or_vehicle_is_not_found_naming_which() {
    let app = spawn_app().await;
    let mut allocation = v1::Allocation {
        employee_id: "emp-99999".into(),
        vehicle_id: app.vehicle(0),
        allocation_date: app.day(1),
        ..Default::default()
    };
    let status = app.create(allocation.clone()).await.unwrap_err();
    let details = assert_status(&status, Code::NotFound, "EMPLOYEE_NOT_FOUND");
    assert_eq!(status.message(), "employee \"emp-99999\" does not exist");
    assert_eq!(details.resource_info().unwrap().resource_name, "emp-99999");

    allocation.employee_id = app.employee(0);
    allocation.vehicle_id = "veh-9999".into();
    let status = app.create(allocation).await.unwrap_err();
    assert_status(&status, Code::NotFound, "VEHICLE_NOT_FOUND");
    assert_eq!(status.message(), "vehicle \"veh-9999\" does not exist");
}

#[tokio::test]
async fn a_vehicle_booked_that_date_is_already_exists_naming_the_booking() {
    let app = spawn_app().await;
    let first = app.book(0, 4, 2).await.unwrap();
    let status = app.book(1, 4, 2).await.unwrap_err();
    let details = assert_status(&status, Code::AlreadyExists, "VEHICLE_ALREADY_BOOKED");
    let info = details.error_info().unwrap();
    assert_eq!(info.metadata["allocation_id"], first.id);
    assert_eq!(info.metadata["vehicle_id"], app.vehicle(4));
    assert_eq!(info.metadata["allocation_date"], app.day(2));
    assert!(status.message().contains(&first.id), "{status:?}");
    assert_eq!(details.resource_info().unwrap().resource_name, first.id);
}

#[tokio::test]
async fn an_employee_holding_a_booking_that_date_is_already_exists() {
    let app = spawn_app().await;
    let first = app.book(3, 0, 5).await.unwrap();
    let status = app.book(3, 1, 5).await.unwrap_err();
    let details = assert_status(&status, Code::AlreadyExists, "EMPLOYEE_ALREADY_BOOKED");
    assert_eq!(
        details.error_info().unwrap().metadata["allocation_id"],
        first.id
    );
    assert!(status.message().contains(&first.id));
}

#[tokio::test]
async fn get_needs_an_id_and_an_unknown_one_is_not_found() {
    let app = spawn_app().await;
    let status = get(&app, "").await.unwrap_err();
    assert_eq!(
        violated_fields(&assert_status(
            &status,
            Code::InvalidArgument,
            "FIELD_REQUIRED"
        )),
        ["id"]
    );
    let status = get(&app, "nope").await.unwrap_err();
    assert_status(&status, Code::NotFound, "ALLOCATION_NOT_FOUND");
}

#[tokio::test]
async fn update_changes_the_fields_in_the_mask_and_the_etag() {
    let app = spawn_app().await;
    let created = app.book(0, 0, 1).await.unwrap();
    let updated = update(
        &app,
        v1::Allocation {
            id: created.id.clone(),
            etag: created.etag.clone(),
            allocation_date: app.day(4),
            purpose: "ignored: not in the mask".into(),
            ..Default::default()
        },
        &["allocation_date"],
    )
    .await
    .unwrap();
    assert_eq!(updated.allocation_date, app.day(4));
    assert_eq!(updated.purpose, created.purpose);
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.create_time, created.create_time);
    assert_eq!(get(&app, &created.id).await.unwrap(), updated);

    // A purpose in the mask but empty clears it.
    let cleared = update(
        &app,
        v1::Allocation {
            id: created.id.clone(),
            ..Default::default()
        },
        &["purpose"],
    )
    .await
    .unwrap();
    assert_eq!(cleared.purpose, "");
}

#[tokio::test]
async fn an_empty_mask_updates_every_updatable_field_that_is_set() {
    let app = spawn_app().await;
    let created = app.book(0, 0, 1).await.unwrap();
    let updated = update(
        &app,
        v1::Allocation {
            id: created.id.clone(),
            vehicle_id: app.vehicle(7),
            purpose: "New plan".into(),
            ..Default::default()
        },
        &[],
    )
    .await
    .unwrap();
    assert_eq!(updated.vehicle_id, app.vehicle(7));
    assert_eq!(
        updated.driver_id,
        app.driver_of(7),
        "the driver follows the vehicle"
    );
    assert_eq!(updated.purpose, "New plan");
    assert_eq!(updated.allocation_date, created.allocation_date);

    let status = update(
        &app,
        v1::Allocation {
            id: created.id.clone(),
            ..Default::default()
        },
        &[],
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "NOTHING_TO_UPDATE");
    assert_eq!(violated_fields(&details), ["update_mask"]);
}

#[tokio::test]
async fn update_refuses_paths_it_cannot_update() {
    let app = spawn_app().await;
    let created = app.book(0, 0, 1).await.unwrap();
    for path in [
        "driver_id",
        "employee_id",
        "id",
        "etag",
        "create_time",
        "colour",
    ] {
        let status = update(
            &app,
            v1::Allocation {
                id: created.id.clone(),
                ..Default::default()
            },
            &[path],
        )
        .await
        .unwrap_err();
        let details = assert_status(&status, Code::InvalidArgument, "UNKNOWN_FIELD_PATH");
        assert_eq!(violated_fields(&details), ["update_mask.paths"]);
        assert!(status.message().contains(path), "{status:?}");
    }
    let status = update(
        &app,
        v1::Allocation {
            id: created.id.clone(),
            vehicle_id: String::new(),
            ..Default::default()
        },
        &["vehicle_id"],
    )
    .await
    .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "FIELD_REQUIRED");
    assert_eq!(get(&app, &created.id).await.unwrap(), created);
}

#[tokio::test]
async fn a_new_date_or_vehicle_is_checked_like_a_create() {
    let app = spawn_app().await;
    let mine = app.book(0, 0, 1).await.unwrap();
    let theirs = app.book(1, 1, 1).await.unwrap();
    let change = |allocation: v1::Allocation| v1::Allocation {
        id: mine.id.clone(),
        ..allocation
    };

    let status = update(
        &app,
        change(v1::Allocation {
            vehicle_id: app.vehicle(1),
            ..Default::default()
        }),
        &["vehicle_id"],
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::AlreadyExists, "VEHICLE_ALREADY_BOOKED");
    assert_eq!(
        details.error_info().unwrap().metadata["allocation_id"],
        theirs.id
    );

    let status = update(
        &app,
        change(v1::Allocation {
            vehicle_id: "veh-none".into(),
            ..Default::default()
        }),
        &["vehicle_id"],
    )
    .await
    .unwrap_err();
    assert_status(&status, Code::NotFound, "VEHICLE_NOT_FOUND");

    let status = update(
        &app,
        change(v1::Allocation {
            allocation_date: app.day(-2),
            ..Default::default()
        }),
        &["allocation_date"],
    )
    .await
    .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "DATE_IN_PAST");

    let status = update(
        &app,
        change(v1::Allocation {
            allocation_date: "someday".into(),
            ..Default::default()
        }),
        &["allocation_date"],
    )
    .await
    .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "INVALID_DATE");

    assert_eq!(
        get(&app, &mine.id).await.unwrap(),
        mine,
        "nothing half-written"
    );
}

#[tokio::test]
async fn a_booking_becomes_read_only_history_once_its_date_has_passed() {
    let app = spawn_app().await;
    let booking = app.book(0, 0, 0).await.unwrap();
    app.clock.advance(Duration::days(1));

    let status = update(
        &app,
        v1::Allocation {
            id: booking.id.clone(),
            purpose: "too late".into(),
            ..Default::default()
        },
        &["purpose"],
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::FailedPrecondition, "ALLOCATION_IS_HISTORY");
    let violation = &details.precondition_failure().unwrap().violations[0];
    assert_eq!(violation.subject, format!("allocations/{}", booking.id));
    assert!(status.message().contains("history"), "{status:?}");

    let status = delete(&app, &booking.id, "").await.unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "ALLOCATION_IS_HISTORY");
    assert_eq!(
        get(&app, &booking.id).await.unwrap(),
        booking,
        "still readable"
    );
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_a_malformed_one_invalid() {
    let app = spawn_app().await;
    let v1 = app.book(0, 0, 1).await.unwrap();
    let v2 = update(
        &app,
        v1::Allocation {
            id: v1.id.clone(),
            etag: v1.etag.clone(),
            purpose: "second".into(),
            ..Default::default()
        },
        &["purpose"],
    )
    .await
    .unwrap();

    let status = update(
        &app,
        v1::Allocation {
            id: v1.id.clone(),
            etag: v1.etag.clone(),
            purpose: "lost update".into(),
            ..Default::default()
        },
        &["purpose"],
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(
        details.error_info().unwrap().metadata["current_etag"],
        v2.etag
    );

    let status = delete(&app, &v1.id, &v1.etag).await.unwrap_err();
    assert_status(&status, Code::Aborted, "ETAG_MISMATCH");

    let status = delete(&app, &v1.id, "W/\"x\"").await.unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "INVALID_ETAG");
    assert_eq!(violated_fields(&details), ["etag"]);

    assert_eq!(get(&app, &v1.id).await.unwrap(), v2);
    delete(&app, &v1.id, &v2.etag).await.unwrap();
}

#[tokio::test]
async fn delete_cancels_the_booking_and_frees_the_vehicle() {
    let app = spawn_app().await;
    let booking = app.book(0, 0, 1).await.unwrap();
    delete(&app, &booking.id, "").await.unwrap();
    assert_status(
        &get(&app, &booking.id).await.unwrap_err(),
        Code::NotFound,
        "ALLOCATION_NOT_FOUND",
    );
    assert_status(
        &delete(&app, &booking.id, "").await.unwrap_err(),
        Code::NotFound,
        "ALLOCATION_NOT_FOUND",
    );
    app.book(1, 0, 1).await.unwrap();

    let status = delete(&app, "", "").await.unwrap_err();
    assert_eq!(
        violated_fields(&assert_status(
            &status,
            Code::InvalidArgument,
            "FIELD_REQUIRED"
        )),
        ["id"]
    );
}
