//! The rules hold when many clients race for the same slot.

use std::collections::HashSet;

use tonic::Code;
use tonic_types::StatusExt;
use vehicle_allocation::proto::v1::{self, CreateAllocationRequest};

use crate::helpers::spawn_app;

async fn race(
    app: &crate::helpers::TestApp,
    requests: Vec<v1::Allocation>,
) -> (Vec<v1::Allocation>, Vec<tonic::Status>) {
    let calls: Vec<_> = requests
        .into_iter()
        .map(|allocation| {
            let mut client = app.allocations.clone();
            tokio::spawn(async move {
                client
                    .create_allocation(CreateAllocationRequest {
                        allocation: Some(allocation),
                        request_id: String::new(),
                    })
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(response) => won.push(response.into_inner()),
            Err(status) => lost.push(status),
        }
    }
    (won, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_48_parallel_bookings_of_one_vehicle_exactly_one_succeeds() {
    let app = spawn_app().await;
    let requests = (0..48)
        .map(|e| v1::Allocation {
            employee_id: app.employee(e),
            vehicle_id: app.vehicle(3),
            allocation_date: app.day(4),
            ..Default::default()
        })
        .collect();
    let (won, lost) = race(&app, requests).await;
    assert_eq!(won.len(), 1, "exactly one booking");
    assert_eq!(lost.len(), 47);
    let named: HashSet<_> = lost
        .iter()
        .map(|status| {
            assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, "VEHICLE_ALREADY_BOOKED");
            info.metadata["allocation_id"].clone()
        })
        .collect();
    assert_eq!(
        named,
        HashSet::from([won[0].id.clone()]),
        "every loser names the winner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_40_parallel_bookings_by_one_employee_exactly_one_succeeds() {
    let app = spawn_app().await;
    let requests = (0..40)
        .map(|v| v1::Allocation {
            employee_id: app.employee(9),
            vehicle_id: app.vehicle(v),
            allocation_date: app.day(6),
            ..Default::default()
        })
        .collect();
    let (won, lost) = race(&app, requests).await;
    assert_eq!(won.len(), 1);
    assert!(lost.iter().all(|s| s.code() == Code::AlreadyExists
        && s.get_error_details().error_info().unwrap().reason == "EMPLOYEE_ALREADY_BOOKED"));
}
