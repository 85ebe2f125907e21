//! Fleet administration, on every backend: the rules of the fleet commands,
//! and what they do to bookings, availability and lookups.

use std::sync::Arc;

use vehicle_allocation::domain::admin::{EmployeeChanges, VehicleChanges};
use vehicle_allocation::domain::{
    AllocationChanges, DomainError, Etag, FleetCommand, FleetEntity, HistoryFilter, PageRequest,
    Resource,
};
use vehicle_allocation::storage::{FleetPass, Store, StoreError, StoreResult};

use crate::fixture::{Fixture, refused};

type Shared = Arc<dyn Store>;

fn all() -> PageRequest<String> {
    PageRequest {
        size: 500,
        after: None,
    }
}

async fn available(store: &Shared, fx: &Fixture, day: i64) -> Vec<String> {
    let page = store
        .list_available_vehicles(fx.day(day), all())
        .await
        .unwrap();
    assert_eq!(
        page.total_size,
        page.items.len() as u64,
        "total on day {day}"
    );
    page.items.into_iter().map(|v| v.id).collect()
}

async fn history_ids(store: &Shared, filter: HistoryFilter) -> Vec<String> {
    let page = store
        .list_allocation_history(
            &filter,
            PageRequest {
                size: 500,
                after: None,
            },
        )
        .await
        .unwrap();
    page.items.into_iter().map(|a| a.id).collect()
}

pub async fn fleet_entities_are_created_and_changed_with_etags_and_unique_values(
    store: &Shared,
    fx: &Fixture,
) {
    let hired = fx.new_employee("hr-1001", "new.hire@example.org");
    let outcome = fx
        .apply(
            store.as_ref(),
            FleetCommand::PutEmployee {
                employee: hired.clone(),
                upsert: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.entity, FleetEntity::Employee(hired.clone()));
    assert!(outcome.changed);
    assert_eq!(store.get_employee("hr-1001").await.unwrap(), hired);

    let again = FleetCommand::PutEmployee {
        employee: hired.clone(),
        upsert: false,
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), again).await).reason(),
        "EMPLOYEE_ALREADY_EXISTS"
    );
    let mut twin = fx.new_employee("hr-1002", &fx.employees[0].email);
    twin.name = "Twin".into();
    let taken = refused(
        fx.apply(
            store.as_ref(),
            FleetCommand::PutEmployee {
                employee: twin,
                upsert: false,
            },
        )
        .await,
    );
    assert_eq!(
        taken,
        DomainError::Taken {
            resource: Resource::Employee,
            field: "email",
            value: fx.employees[0].email.clone(),
            holder_id: fx.employee(0).to_owned(),
        }
    );

    let rename = |etag| FleetCommand::UpdateEmployee {
        id: "hr-1001".into(),
        changes: EmployeeChanges {
            name: Some("Renamed".into()),
            ..Default::default()
        },
        etag,
    };
    let stale = refused(fx.apply(store.as_ref(), rename(Some(Etag(7)))).await);
    assert_eq!(stale.reason(), "ETAG_MISMATCH");
    let renamed = fx
        .apply(store.as_ref(), rename(Some(hired.etag())))
        .await
        .unwrap();
    let FleetEntity::Employee(renamed) = renamed.entity else {
        panic!("an employee")
    };
    assert_eq!(renamed.name, "Renamed");
    assert_eq!(renamed.version, 2);
    assert_eq!(store.get_employee("hr-1001").await.unwrap(), renamed);
    // The same change again changes nothing, not even the etag.
    let same = fx.apply(store.as_ref(), rename(None)).await.unwrap();
    assert!(!same.changed);
    assert_eq!(store.get_employee("hr-1001").await.unwrap().version, 2);

    let plate = fx.vehicles[1].registration.clone();
    let clash = FleetCommand::UpdateVehicle {
        id: fx.vehicle(0).into(),
        changes: VehicleChanges {
            registration: Some(plate),
            ..Default::default()
        },
        etag: None,
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), clash).await).reason(),
        "REGISTRATION_TAKEN"
    );
    let licence = fx.vehicles[2]
        .driver
        .as_ref()
        .unwrap()
        .license_number
        .clone();
    let clash = FleetCommand::PutDriver {
        driver: fx.new_driver("drv-new", &licence),
        upsert: false,
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), clash).await).reason(),
        "LICENSE_NUMBER_TAKEN"
    );
}

pub async fn a_batch_of_fleet_commands_is_all_or_nothing_and_upserts_are_idempotent(
    store: &Shared,
    fx: &Fixture,
) {
    let first = fx.new_employee("imp-1", "one@example.org");
    let second = fx.new_employee("imp-2", "one@example.org");
    let batch = vec![
        fx.admin(FleetCommand::PutEmployee {
            employee: first.clone(),
            upsert: true,
        }),
        fx.admin(FleetCommand::PutEmployee {
            employee: second,
            upsert: true,
        }),
    ];
    assert_eq!(
        refused(store.apply_fleet(batch).await).reason(),
        "EMAIL_TAKEN"
    );
    assert_eq!(
        refused(store.get_employee("imp-1").await).reason(),
        "EMPLOYEE_NOT_FOUND",
        "the batch's first command was rolled back"
    );

    let load = || {
        vec![
            fx.admin(FleetCommand::PutDriver {
                driver: fx.new_driver("imp-d", "LIC-IMP"),
                upsert: true,
            }),
            fx.admin(FleetCommand::PutVehicle {
                vehicle: fx.new_vehicle("imp-v", "IMP 001"),
                driver_id: "imp-d".into(),
                upsert: true,
            }),
            fx.admin(FleetCommand::PutEmployee {
                employee: first.clone(),
                upsert: true,
            }),
        ]
    };
    let outcomes = store.apply_fleet(load()).await.unwrap();
    assert!(outcomes.iter().all(|o| o.changed));
    let vehicle = store.get_vehicle("imp-v", fx.day(0)).await.unwrap();
    assert_eq!(vehicle.driver.unwrap().id, "imp-d");
    let outcomes = store.apply_fleet(load()).await.unwrap();
    assert!(outcomes.iter().all(|o| !o.changed), "{outcomes:?}");
    assert_eq!(
        store.get_vehicle("imp-v", fx.day(0)).await.unwrap().version,
        1
    );
}

pub async fn checking_a_batch_decides_each_command_and_writes_nothing(
    store: &Shared,
    fx: &Fixture,
) {
    let batch = [
        fx.admin(FleetCommand::PutDriver {
            driver: fx.new_driver("chk-d", "LIC-CHK"),
            upsert: true,
        }),
        // Refused: the licence is another driver's.
        fx.admin(FleetCommand::PutDriver {
            driver: fx.new_driver("chk-d2", "LIC-CHK"),
            upsert: true,
        }),
        // Decided with the first command made: its driver exists.
        fx.admin(FleetCommand::PutVehicle {
            vehicle: fx.new_vehicle("chk-v", "CHK 001"),
            driver_id: "chk-d".into(),
            upsert: true,
        }),
        // Decided without the refused one: its driver does not.
        fx.admin(FleetCommand::PutVehicle {
            vehicle: fx.new_vehicle("chk-v2", "CHK 002"),
            driver_id: "chk-d2".into(),
            upsert: true,
        }),
        // An update of what is stored.
        fx.admin(FleetCommand::PutEmployee {
            employee: {
                let mut e = store.get_employee(fx.employee(0)).await.unwrap();
                e.name = "Renamed".into();
                e
            },
            upsert: true,
        }),
    ];
    // In chunks of one session: later chunks see what earlier ones did.
    let mut session = store.fleet_session(FleetPass::Check).await.unwrap();
    let mut checked = Vec::new();
    for chunk in [&batch[..1], &batch[1..3], &batch[3..]] {
        checked.extend(session.run(chunk.to_vec()).await.unwrap());
    }
    session.finish().await.unwrap();
    let verdicts: Vec<Result<(bool, bool), &str>> = checked
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|o| (o.changed, o.created()))
                .map_err(DomainError::reason)
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            Ok((true, true)),
            Err("LICENSE_NUMBER_TAKEN"),
            Ok((true, true)),
            Err("DRIVER_NOT_FOUND"),
            Ok((true, false)),
        ]
    );
    let Ok(renamed) = &checked[4] else {
        unreachable!()
    };
    let before = renamed.before.as_ref().expect("it was stored");
    assert_eq!(renamed.entity.changed_fields(before), ["name"]);

    assert_eq!(
        refused(store.get_driver("chk-d").await).reason(),
        "DRIVER_NOT_FOUND",
        "a check writes nothing"
    );
    assert_eq!(
        refused(store.get_vehicle("chk-v", fx.day(0)).await).reason(),
        "VEHICLE_NOT_FOUND"
    );
    assert_ne!(
        store.get_employee(fx.employee(0)).await.unwrap().name,
        "Renamed"
    );
    // And it leaves the store as writable as before.
    let made = store.apply_fleet(batch[..1].to_vec()).await.unwrap();
    assert!(made[0].created());
}

pub async fn deactivating_an_employee_refuses_or_cancels_their_future_bookings(
    store: &Shared,
    fx: &Fixture,
) {
    let past = fx.stored(5, 5, fx.day(-3));
    store.insert_allocations(vec![past.clone()]).await.unwrap();
    let soon = store
        .create_allocation(fx.booking(5, 6, fx.day(1)))
        .await
        .unwrap();
    let later = store
        .create_allocation(fx.booking(5, 7, fx.day(9)))
        .await
        .unwrap();
    let deactivate = |cancel| FleetCommand::SetEmployeeActive {
        id: fx.employee(5).into(),
        active: false,
        cancel_conflicting: cancel,
    };
    let refusal = refused(fx.apply(store.as_ref(), deactivate(false)).await);
    assert_eq!(
        refusal,
        DomainError::HasFutureBookings {
            resource: Resource::Employee,
            id: fx.employee(5).into(),
            allocation_ids: vec![soon.id.clone(), later.id.clone()],
            total: 2,
        }
    );
    assert!(store.get_employee(fx.employee(5)).await.unwrap().active);

    let done = fx.apply(store.as_ref(), deactivate(true)).await.unwrap();
    assert_eq!(done.cancelled, vec![soon.clone(), later.clone()]);
    assert_eq!(
        refused(store.get_allocation(&soon.id).await).reason(),
        "ALLOCATION_NOT_FOUND"
    );
    assert_eq!(
        store.get_allocation(&past.id).await.unwrap(),
        past,
        "history stays"
    );
    assert!(!store.get_employee(fx.employee(5)).await.unwrap().active);
    assert!(
        available(store, fx, 1)
            .await
            .contains(&fx.vehicle(6).to_owned())
    );

    assert_eq!(
        refused(store.create_allocation(fx.booking(5, 6, fx.day(2))).await).reason(),
        "EMPLOYEE_DEACTIVATED"
    );
    let listed = store.list_employees(None, false, all()).await.unwrap();
    assert_eq!(listed.total_size, fx.employees.len() as u64 - 1);
    assert!(listed.items.iter().all(|e| e.id != fx.employee(5)));
    let everyone = store.list_employees(None, true, all()).await.unwrap();
    assert_eq!(everyone.total_size, fx.employees.len() as u64);

    fx.apply(
        store.as_ref(),
        FleetCommand::SetEmployeeActive {
            id: fx.employee(5).into(),
            active: true,
            cancel_conflicting: false,
        },
    )
    .await
    .unwrap();
    store
        .create_allocation(fx.booking(5, 6, fx.day(2)))
        .await
        .unwrap();
}

pub async fn a_driver_reassignment_changes_bookings_from_its_effective_date_only(
    store: &Shared,
    fx: &Fixture,
) {
    let old = fx.driver_of(0).to_owned();
    let past = fx.stored(1, 0, fx.day(-2));
    store.insert_allocations(vec![past.clone()]).await.unwrap();
    let before = store
        .create_allocation(fx.booking(1, 0, fx.day(1)))
        .await
        .unwrap();
    let after = store
        .create_allocation(fx.booking(2, 0, fx.day(5)))
        .await
        .unwrap();
    fx.apply(
        store.as_ref(),
        FleetCommand::PutDriver {
            driver: fx.new_driver("drv-relief", "LIC-RELIEF"),
            upsert: false,
        },
    )
    .await
    .unwrap();
    let assign = |date| FleetCommand::AssignDriver {
        vehicle_id: fx.vehicle(0).into(),
        driver_id: "drv-relief".into(),
        effective_date: date,
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), assign(fx.day(-1))).await).reason(),
        "DATE_IN_PAST"
    );
    let done = fx.apply(store.as_ref(), assign(fx.day(3))).await.unwrap();
    assert_eq!(done.redriven.len(), 1);
    assert_eq!(done.redriven[0].0, after);
    assert_eq!(done.redriven[0].1.driver_id, "drv-relief");

    assert_eq!(
        store.get_allocation(&before.id).await.unwrap().driver_id,
        old
    );
    let moved = store.get_allocation(&after.id).await.unwrap();
    assert_eq!(moved.driver_id, "drv-relief");
    assert_eq!(moved.version, 2, "a changed driver changes the etag");
    assert_eq!(store.get_allocation(&past.id).await.unwrap(), past);

    let by = |driver: &str| HistoryFilter {
        driver_id: Some(driver.to_owned()),
        ..Default::default()
    };
    assert_eq!(
        history_ids(store, by("drv-relief")).await,
        vec![after.id.clone()]
    );
    assert_eq!(
        history_ids(store, by(&old)).await,
        vec![before.id.clone(), past.id.clone()]
    );

    let driver_on = |v: vehicle_allocation::domain::Vehicle| v.driver.map(|d| d.id);
    let vehicle = fx.vehicle(0);
    assert_eq!(
        driver_on(store.get_vehicle(vehicle, fx.day(2)).await.unwrap()),
        Some(old.clone())
    );
    assert_eq!(
        driver_on(store.get_vehicle(vehicle, fx.day(3)).await.unwrap()),
        Some("drv-relief".into())
    );
    let later = store
        .create_allocation(fx.booking(3, 0, fx.day(7)))
        .await
        .unwrap();
    assert_eq!(later.driver_id, "drv-relief");
    // Moving a booking across the effective date changes its driver too.
    let moved_back = store
        .update_allocation(fx.update(
            &later.id,
            AllocationChanges {
                date: Some(fx.day(2)),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap();
    assert_eq!(moved_back.after.driver_id, old);
}

pub async fn one_driver_drives_one_vehicle_a_day(store: &Shared, fx: &Fixture) {
    let busy = fx.driver_of(0).to_owned();
    let assign = |vehicle: &str, driver: &str, day| FleetCommand::AssignDriver {
        vehicle_id: vehicle.into(),
        driver_id: driver.into(),
        effective_date: fx.day(day),
    };
    let refusal = refused(
        fx.apply(store.as_ref(), assign(fx.vehicle(1), &busy, 4))
            .await,
    );
    assert_eq!(
        refusal,
        DomainError::DriverAlreadyAssigned {
            driver_id: busy.clone(),
            vehicle_id: fx.vehicle(0).into(),
            from: fx.day(4),
        }
    );
    let create = FleetCommand::PutVehicle {
        vehicle: fx.new_vehicle("veh-new", "NEW 001"),
        driver_id: busy.clone(),
        upsert: false,
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), create).await).reason(),
        "DRIVER_ALREADY_ASSIGNED"
    );
    // Once vehicle 0 has another driver from day 4, the driver is free
    // from then on.
    fx.apply(
        store.as_ref(),
        FleetCommand::PutDriver {
            driver: fx.new_driver("drv-cover", "LIC-COVER"),
            upsert: false,
        },
    )
    .await
    .unwrap();
    fx.apply(store.as_ref(), assign(fx.vehicle(0), "drv-cover", 4))
        .await
        .unwrap();
    assert_eq!(
        refused(
            fx.apply(store.as_ref(), assign(fx.vehicle(1), &busy, 3))
                .await
        )
        .reason(),
        "DRIVER_ALREADY_ASSIGNED"
    );
    fx.apply(store.as_ref(), assign(fx.vehicle(1), &busy, 4))
        .await
        .unwrap();
    let on = |v: usize, day| {
        let store = Arc::clone(store);
        let id = fx.vehicle(v).to_owned();
        let date = fx.day(day);
        async move {
            store
                .get_vehicle(&id, date)
                .await
                .unwrap()
                .driver
                .unwrap()
                .id
        }
    };
    assert_eq!(on(0, 3).await, busy);
    assert_eq!(on(0, 4).await, "drv-cover");
    assert_eq!(on(1, 4).await, busy);
}

pub async fn deactivating_a_driver_leaves_their_vehicle_without_one(store: &Shared, fx: &Fixture) {
    let driver = fx.driver_of(8).to_owned();
    let booked = store
        .create_allocation(fx.booking(8, 8, fx.day(2)))
        .await
        .unwrap();
    let deactivate = |cancel| FleetCommand::DeactivateDriver {
        id: driver.clone(),
        cancel_conflicting: cancel,
    };
    let refusal = refused(fx.apply(store.as_ref(), deactivate(false)).await);
    assert_eq!(refusal.reason(), "HAS_FUTURE_BOOKINGS");
    let done = fx.apply(store.as_ref(), deactivate(true)).await.unwrap();
    assert_eq!(done.cancelled, vec![booked]);
    assert!(!store.get_driver(&driver).await.unwrap().active);
    assert_eq!(
        store
            .get_vehicle(fx.vehicle(8), fx.day(0))
            .await
            .unwrap()
            .driver,
        None
    );
    assert!(
        !available(store, fx, 2)
            .await
            .contains(&fx.vehicle(8).to_owned())
    );
    assert_eq!(
        refused(store.create_allocation(fx.booking(9, 8, fx.day(3))).await).reason(),
        "VEHICLE_HAS_NO_DRIVER"
    );
    let listed = store.list_drivers(false, all()).await.unwrap();
    assert_eq!(listed.total_size, fx.vehicles.len() as u64 - 1);
    let assign = FleetCommand::AssignDriver {
        vehicle_id: fx.vehicle(8).into(),
        driver_id: driver.clone(),
        effective_date: fx.day(0),
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), assign).await).reason(),
        "DRIVER_DEACTIVATED"
    );
}

pub async fn retiring_a_vehicle_hides_it_and_frees_its_driver(store: &Shared, fx: &Fixture) {
    let booked = store
        .create_allocation(fx.booking(10, 10, fx.day(4)))
        .await
        .unwrap();
    let retire = |cancel| FleetCommand::SetVehicleRetired {
        id: fx.vehicle(10).into(),
        retired: true,
        cancel_conflicting: cancel,
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), retire(false)).await),
        DomainError::HasFutureBookings {
            resource: Resource::Vehicle,
            id: fx.vehicle(10).into(),
            allocation_ids: vec![booked.id.clone()],
            total: 1,
        }
    );
    let done = fx.apply(store.as_ref(), retire(true)).await.unwrap();
    assert_eq!(done.cancelled, vec![booked]);
    assert!(
        !available(store, fx, 4)
            .await
            .contains(&fx.vehicle(10).to_owned())
    );
    assert_eq!(
        refused(store.create_allocation(fx.booking(11, 10, fx.day(5))).await).reason(),
        "VEHICLE_RETIRED"
    );
    let listed = store.list_vehicles(false, fx.day(0), all()).await.unwrap();
    assert_eq!(listed.total_size, fx.vehicles.len() as u64 - 1);
    let with_retired = store.list_vehicles(true, fx.day(0), all()).await.unwrap();
    assert_eq!(with_retired.total_size, fx.vehicles.len() as u64);
    let retired = store.get_vehicle(fx.vehicle(10), fx.day(0)).await.unwrap();
    assert!(retired.retired);
    assert_eq!(retired.driver, None, "its driver is free from today");

    // Its driver can take over another vehicle today.
    let driver = fx.driver_of(10).to_owned();
    fx.apply(
        store.as_ref(),
        FleetCommand::DeactivateDriver {
            id: fx.driver_of(11).into(),
            cancel_conflicting: false,
        },
    )
    .await
    .unwrap();
    fx.apply(
        store.as_ref(),
        FleetCommand::AssignDriver {
            vehicle_id: fx.vehicle(11).into(),
            driver_id: driver,
            effective_date: fx.day(0),
        },
    )
    .await
    .unwrap();

    // Back in the fleet, it needs a driver before it can be booked.
    fx.apply(
        store.as_ref(),
        FleetCommand::SetVehicleRetired {
            id: fx.vehicle(10).into(),
            retired: false,
            cancel_conflicting: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        refused(store.create_allocation(fx.booking(12, 10, fx.day(5))).await).reason(),
        "VEHICLE_HAS_NO_DRIVER"
    );

    // Retired by a writer whose today is already tomorrow (midnight), the
    // vehicle still has its driver today: a reader still on today neither
    // lists nor counts it.
    let mut at_midnight = fx.admin(FleetCommand::SetVehicleRetired {
        id: fx.vehicle(13).into(),
        retired: true,
        cancel_conflicting: true,
    });
    at_midnight.window.today = fx.day(1);
    store.apply_fleet(vec![at_midnight]).await.unwrap();
    assert!(
        !available(store, fx, 0)
            .await
            .contains(&fx.vehicle(13).to_owned())
    );
}

pub async fn blocks_take_a_vehicle_out_of_service(store: &Shared, fx: &Fixture) {
    let booked = store
        .create_allocation(fx.booking(20, 20, fx.day(4)))
        .await
        .unwrap();
    let elsewhere = store
        .create_allocation(fx.booking(21, 21, fx.day(3)))
        .await
        .unwrap();
    let block = vehicle_allocation::domain::admin::new_block(
        "blk-1".into(),
        fx.vehicle(20).into(),
        (fx.day(3), fx.day(5)),
        "Servicing".into(),
        fx.now,
    );
    let create = |cancel| FleetCommand::CreateBlock {
        block: block.clone(),
        cancel_conflicting: cancel,
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), create(false)).await),
        DomainError::HasFutureBookings {
            resource: Resource::Vehicle,
            id: fx.vehicle(20).into(),
            allocation_ids: vec![booked.id.clone()],
            total: 1,
        }
    );
    let free_before = available(store, fx, 3).await;
    let done = fx.apply(store.as_ref(), create(true)).await.unwrap();
    assert_eq!(done.cancelled, vec![booked]);
    assert_eq!(done.dates_touched, vec![fx.day(3), fx.day(4), fx.day(5)]);
    assert_eq!(
        store.get_allocation(&elsewhere.id).await.unwrap(),
        elsewhere
    );

    let free = available(store, fx, 3).await;
    assert!(!free.contains(&fx.vehicle(20).to_owned()));
    assert_eq!(free.len(), free_before.len() - 1);
    assert!(
        available(store, fx, 6)
            .await
            .contains(&fx.vehicle(20).to_owned())
    );
    assert_eq!(
        refused(store.create_allocation(fx.booking(22, 20, fx.day(5))).await),
        DomainError::VehicleOutOfService {
            vehicle_id: fx.vehicle(20).into(),
            date: fx.day(5),
            block_id: "blk-1".into(),
            start_date: fx.day(3),
            end_date: fx.day(5),
        }
    );
    let outside = store
        .create_allocation(fx.booking(22, 20, fx.day(6)))
        .await
        .unwrap();
    let into_block = fx.update(
        &outside.id,
        AllocationChanges {
            date: Some(fx.day(5)),
            ..Default::default()
        },
        None,
    );
    assert_eq!(
        refused(store.update_allocation(into_block).await).reason(),
        "VEHICLE_OUT_OF_SERVICE"
    );

    let blocks = store
        .list_vehicle_blocks(fx.vehicle(20), all())
        .await
        .unwrap();
    assert_eq!(blocks.items, vec![block.clone()]);
    assert_eq!(
        refused(store.list_vehicle_blocks("veh-none", all()).await).reason(),
        "VEHICLE_NOT_FOUND"
    );
    let wrong_vehicle = FleetCommand::DeleteBlock {
        vehicle_id: fx.vehicle(21).into(),
        block_id: "blk-1".into(),
    };
    assert_eq!(
        refused(fx.apply(store.as_ref(), wrong_vehicle).await).reason(),
        "VEHICLE_BLOCK_NOT_FOUND"
    );
    fx.apply(
        store.as_ref(),
        FleetCommand::DeleteBlock {
            vehicle_id: fx.vehicle(20).into(),
            block_id: "blk-1".into(),
        },
    )
    .await
    .unwrap();
    store
        .create_allocation(fx.booking(22, 20, fx.day(5)))
        .await
        .unwrap();
    assert!(
        store
            .list_vehicle_blocks(fx.vehicle(20), all())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn an_applied_session_writes_its_chunks_all_or_nothing(store: &Shared, fx: &Fixture) {
    let driver = |n: usize| {
        fx.admin(FleetCommand::PutDriver {
            driver: fx.new_driver(&format!("ses-d{n}"), &format!("LIC-SES-{n}")),
            upsert: true,
        })
    };
    // Refused in the second chunk: the licence is the first chunk's.
    let mut session = store.fleet_session(FleetPass::Apply).await.unwrap();
    let first = session.run(vec![driver(1), driver(2)]).await.unwrap();
    assert!(first.iter().all(|v| v.as_ref().is_ok_and(|o| o.created())));
    let mut taken = driver(3);
    if let FleetCommand::PutDriver { driver, .. } = &mut taken.command {
        driver.license_number = "LIC-SES-1".into();
    }
    let refused = session.run(vec![taken]).await.unwrap_err();
    assert!(matches!(refused, StoreError::Rejected(_)), "{refused:?}");
    assert!(session.finish().await.is_err(), "a refused session is over");
    assert_eq!(
        refused_reason(store.get_driver("ses-d1").await),
        "DRIVER_NOT_FOUND",
        "nothing of a refused session is written"
    );

    // Dropped unfinished, it writes nothing either.
    let mut session = store.fleet_session(FleetPass::Apply).await.unwrap();
    session.run(vec![driver(1)]).await.unwrap();
    drop(session);
    // A write after it waits for the store to be done with it.
    store.apply_fleet(vec![driver(4)]).await.unwrap();
    assert_eq!(
        refused_reason(store.get_driver("ses-d1").await),
        "DRIVER_NOT_FOUND"
    );

    // Finished, every chunk is written, and the store writes on.
    let mut session = store.fleet_session(FleetPass::Apply).await.unwrap();
    session.run(vec![driver(1)]).await.unwrap();
    session.run(vec![driver(2)]).await.unwrap();
    session.finish().await.unwrap();
    for id in ["ses-d1", "ses-d2"] {
        assert_eq!(store.get_driver(id).await.unwrap().id, id);
    }
    let made = store.apply_fleet(vec![driver(3)]).await.unwrap();
    assert!(made[0].created());
}

fn refused_reason<T: std::fmt::Debug>(result: StoreResult<T>) -> &'static str {
    refused(result).reason()
}
