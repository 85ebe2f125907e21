//! The binary as a newcomer runs it: `seed`, `serve --demo`, bad settings.

use std::path::Path;
use std::process::{Command, Output};

use vehicle_allocation::domain::{HistoryFilter, PageRequest};
use vehicle_allocation::proto::v1::{ListAllocationHistoryRequest, ListEmployeesRequest};
use vehicle_allocation::storage::Store;
use vehicle_allocation::storage::sqlite::SqliteStore;

use crate::helpers::{AppOptions, spawn_app_with};

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vehicle-allocation"));
    command.args(args).env("RUST_LOG", "warn");
    for (key, value) in envs {
        command.env(key, value);
    }
    // A developer's .env must not leak into the test.
    command.current_dir(std::env::temp_dir());
    command.output().expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn seed_into(dir: &Path, extra: &[&str]) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "seed",
        "--data-dir",
        dir,
        "--employees",
        "40",
        "--vehicles",
        "15",
        "--allocations",
        "700",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    run(&args, &[])
}

async fn everything(dir: &Path) -> Vec<String> {
    let store = SqliteStore::open(dir).unwrap();
    let history = store
        .list_allocation_history(
            &HistoryFilter::default(),
            PageRequest {
                size: 10_000,
                after: None,
            },
        )
        .await
        .unwrap();
    let employees = store
        .list_employees(
            None,
            PageRequest {
                size: 10_000,
                after: None,
            },
        )
        .await
        .unwrap();
    let vehicles = store
        .list_vehicles(PageRequest {
            size: 10_000,
            after: None,
        })
        .await
        .unwrap();
    history
        .items
        .iter()
        .map(|a| format!("{a:?}"))
        .chain(employees.items.iter().map(|e| format!("{e:?}")))
        .chain(vehicles.items.iter().map(|v| format!("{v:?}")))
        .collect()
}

#[tokio::test]
async fn seed_fills_an_empty_store_refuses_a_full_one_and_resets_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let first = seed_into(dir.path(), &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout)
            .contains("seeded 40 employees, 15 vehicles with their drivers and 700 bookings"),
        "{}",
        text(&first.stdout)
    );

    let again = seed_into(dir.path(), &[]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--reset"),
        "{}",
        text(&again.stderr)
    );

    let reset = seed_into(dir.path(), &["--reset"]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert_eq!(everything(dir.path()).await.len(), 700 + 40 + 15);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert!(seed_into(a.path(), &[]).status.success());
    assert!(seed_into(b.path(), &[]).status.success());
    let (left, right) = (everything(a.path()).await, everything(b.path()).await);
    assert_eq!(left.len(), 755);
    assert_eq!(left, right);
}

#[test]
fn a_bad_setting_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    for (key, value, flag) in [
        (
            "ORG_TIMEZONE",
            "Mars/Olympus",
            "--org-timezone <ORG_TIMEZONE>",
        ),
        (
            "MAX_DAYS_AHEAD",
            "many",
            "--max-days-ahead <MAX_DAYS_AHEAD>",
        ),
        ("GRPC_ADDR", "localhost", "--grpc-addr <GRPC_ADDR>"),
        ("LOG_FORMAT", "xml", "--log-format <LOG_FORMAT>"),
    ] {
        let output = run(&["serve", "--data-dir", dir], &[(key, value)]);
        assert!(!output.status.success(), "{key}={value} was accepted");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{key}: {stderr}"
        );
    }
}

#[tokio::test]
async fn serve_demo_seeds_an_empty_store() {
    let app = spawn_app_with(AppOptions {
        fleet: false,
        demo: true,
        ..AppOptions::default()
    })
    .await;
    let history = app
        .allocations
        .clone()
        .list_allocation_history(ListAllocationHistoryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.total_size, 5000);
    let employees = app
        .fleet
        .clone()
        .list_employees(ListEmployeesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(employees.total_size, 1000);
    // Demo data can be booked against at once.
    let free = app
        .fleet
        .clone()
        .list_available_vehicles(
            vehicle_allocation::proto::v1::ListAvailableVehiclesRequest {
                date: app.day(1),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert!(free.total_size > 0 && free.total_size < 300);

    // A second start on the same data leaves it alone.
    let data_dir = app.stop().await;
    let again = spawn_app_with(AppOptions {
        fleet: false,
        demo: true,
        data_dir: Some(data_dir),
        ..AppOptions::default()
    })
    .await;
    let history = again
        .allocations
        .clone()
        .list_allocation_history(ListAllocationHistoryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.total_size, 5000);
}
