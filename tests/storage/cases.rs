//! The behaviour every storage backend must show, case by case.
//!
//! Each case gets a fresh store holding only the fixture's fleet. The
//! rules themselves are tested in `src/domain` (a table per command of
//! `booking::decide` and `admin::decide`); these cases test what a store
//! owns: that it reads the facts the rules need (the stored version, date,
//! key, slot holder), writes what was decided all or nothing, pages, and
//! keeps the rules under concurrency.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use vehicle_allocation::domain::{
    Allocation, AllocationChanges, DomainError, Etag, HistoryCursor, HistoryFilter, PageKey,
    PageRequest, Resource,
};
use vehicle_allocation::storage::Store;

pub use crate::event_cases::*;
use crate::fixture::{Fixture, refused};
pub use crate::fleet_cases::*;
pub use crate::property_cases::*;

/// Calls `$callback!($open; case, case, ...)` with every case below.
macro_rules! for_each_case {
    ($callback:ident, $open:path) => {
        crate::$callback!($open;
            create_records_the_vehicles_driver_and_reads_back,
            create_refuses_unknown_employees_and_vehicles,
            create_refuses_a_vehicle_already_booked_naming_the_booking,
            create_refuses_an_employee_already_booked_naming_the_booking,
            idempotent_create_returns_the_first_booking,
            idempotency_key_reused_for_another_booking_is_refused,
            idempotency_key_expires_after_its_window,
            idempotency_key_of_a_deleted_booking_says_so,
            update_changes_only_the_given_fields_and_the_etag,
            update_of_the_vehicle_records_its_driver,
            update_refuses_conflicts_and_leaves_the_booking_as_it_was,
            history_is_read_only,
            stale_etags_are_refused,
            unknown_ids_are_not_found,
            delete_frees_the_slot,
            history_filters_and_orders_like_a_reference_implementation,
            history_walk_with_writes_between_pages_never_skips_or_repeats,
            totals_follow_every_write,
            employees_are_listed_by_id_and_department,
            vehicles_are_listed_with_drivers_and_by_availability,
            concurrent_conflicting_creates_have_exactly_one_winner,
            seed_batches_breaking_a_rule_are_refused_whole,
            reset_empties_the_store,
            the_page_token_key_is_stored_once_and_kept,
            fleet_entities_are_created_and_changed_with_etags_and_unique_values,
            a_batch_of_fleet_commands_is_all_or_nothing_and_upserts_are_idempotent,
            checking_a_batch_decides_each_command_and_writes_nothing,
            an_applied_session_writes_its_chunks_all_or_nothing,
            deactivating_an_employee_refuses_or_cancels_their_future_bookings,
            a_driver_reassignment_changes_bookings_from_its_effective_date_only,
            one_driver_drives_one_vehicle_a_day,
            deactivating_a_driver_leaves_their_vehicle_without_one,
            retiring_a_vehicle_hides_it_and_frees_its_driver,
            blocks_take_a_vehicle_out_of_service,
            every_booking_write_appends_one_event_and_a_refusal_none,
            seeding_records_every_entity_by_system_seed,
            fleet_writes_append_their_events_and_their_bookings,
            events_filter_by_each_field_and_page_in_sequence_order,
            pruning_deletes_old_events_and_sequences_never_go_back,
            erasing_an_employee_leaves_their_name_and_email_in_no_table,
            positions_past_every_sequence_list_nothing_and_the_newest_is_read_back,
            readers_never_pass_an_event_that_commits_later,
            random_fleets_list_and_count_what_the_domain_calls_bookable,
        );
    };
}
pub(crate) use for_each_case;

type Shared = Arc<dyn Store>;

pub async fn create_records_the_vehicles_driver_and_reads_back(store: &Shared, fx: &Fixture) {
    let new = fx.booking(0, 3, fx.day(2));
    let created = store.create_allocation(new.clone()).await.unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.employee_id, fx.employee(0));
    assert_eq!(created.vehicle_id, fx.vehicle(3));
    assert_eq!(created.driver_id, fx.driver_of(3));
    assert_eq!(created.date, fx.day(2));
    assert_eq!(created.purpose, new.purpose);
    assert_eq!((created.create_time, created.update_time), (fx.now, fx.now));
    assert_eq!(created.version, 1);
    assert_eq!(store.get_allocation(&new.id).await.unwrap(), created);
}

pub async fn create_refuses_unknown_employees_and_vehicles(store: &Shared, fx: &Fixture) {
    let mut new = fx.booking(0, 0, fx.day(1));
    new.employee_id = "emp-nobody".into();
    assert_eq!(
        refused(store.create_allocation(new.clone()).await),
        DomainError::not_found(Resource::Employee, "emp-nobody")
    );
    new.vehicle_id = "veh-nothing".into();
    assert_eq!(
        refused(store.create_allocation(new.clone()).await),
        DomainError::not_found(Resource::Employee, "emp-nobody"),
        "the employee is named first when both are unknown"
    );
    new.employee_id = fx.employee(0).into();
    assert_eq!(
        refused(store.create_allocation(new.clone()).await),
        DomainError::not_found(Resource::Vehicle, "veh-nothing")
    );
    assert!(refused(store.get_allocation(&new.id).await).reason() == "ALLOCATION_NOT_FOUND");
}

pub async fn create_refuses_a_vehicle_already_booked_naming_the_booking(
    store: &Shared,
    fx: &Fixture,
) {
    let first = store
        .create_allocation(fx.booking(0, 5, fx.day(3)))
        .await
        .unwrap();
    let second = fx.booking(1, 5, fx.day(3));
    assert_eq!(
        refused(store.create_allocation(second.clone()).await),
        DomainError::VehicleAlreadyBooked {
            vehicle_id: fx.vehicle(5).into(),
            date: fx.day(3),
            allocation_id: first.id.clone(),
        }
    );
    assert!(
        store.get_allocation(&second.id).await.is_err(),
        "nothing written"
    );
    // Another day, or another vehicle, is fine.
    store
        .create_allocation(fx.booking(1, 5, fx.day(4)))
        .await
        .unwrap();
    store
        .create_allocation(fx.booking(2, 6, fx.day(3)))
        .await
        .unwrap();
}

pub async fn create_refuses_an_employee_already_booked_naming_the_booking(
    store: &Shared,
    fx: &Fixture,
) {
    let first = store
        .create_allocation(fx.booking(7, 1, fx.day(0)))
        .await
        .unwrap();
    assert_eq!(
        refused(store.create_allocation(fx.booking(7, 2, fx.day(0))).await),
        DomainError::EmployeeAlreadyBooked {
            employee_id: fx.employee(7).into(),
            date: fx.day(0),
            allocation_id: first.id,
        }
    );
}

pub async fn idempotent_create_returns_the_first_booking(store: &Shared, fx: &Fixture) {
    let request = fx.keyed(fx.booking(2, 2, fx.day(1)), "req-1");
    let first = store.create_allocation(request.clone()).await.unwrap();

    // A retry carries a new id and arrives later; it still gets the first.
    let mut retry = request.clone();
    retry.id = uuid::Uuid::now_v7().to_string();
    retry.now = fx.now + Duration::hours(23);
    assert_eq!(store.create_allocation(retry.clone()).await.unwrap(), first);

    // Even once the date has passed, so a retry across midnight still works.
    retry.window = fx.policy.window(fx.now + Duration::days(3));
    assert_eq!(store.create_allocation(retry).await.unwrap(), first);

    let page = store
        .list_allocation_history(
            &HistoryFilter::default(),
            PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total_size, 1, "no second booking");
}

pub async fn idempotency_key_reused_for_another_booking_is_refused(store: &Shared, fx: &Fixture) {
    store
        .create_allocation(fx.keyed(fx.booking(2, 2, fx.day(1)), "req-2"))
        .await
        .unwrap();
    let other = fx.keyed(fx.booking(3, 4, fx.day(1)), "req-2");
    assert_eq!(
        refused(store.create_allocation(other).await).reason(),
        "REQUEST_ID_REUSED"
    );
}

pub async fn idempotency_key_expires_after_its_window(store: &Shared, fx: &Fixture) {
    store
        .create_allocation(fx.keyed(fx.booking(2, 2, fx.day(3)), "req-3"))
        .await
        .unwrap();
    let mut later = fx.keyed(fx.booking(3, 4, fx.day(3)), "req-3");
    later.now = fx.now + Duration::hours(25);
    let second = store.create_allocation(later.clone()).await.unwrap();
    assert_eq!(second.id, later.id, "an expired key starts afresh");
}

pub async fn idempotency_key_of_a_deleted_booking_says_so(store: &Shared, fx: &Fixture) {
    let request = fx.keyed(fx.booking(2, 2, fx.day(1)), "req-4");
    let first = store.create_allocation(request.clone()).await.unwrap();
    store
        .delete_allocation(fx.deletion(&first.id, None))
        .await
        .unwrap();
    assert_eq!(
        refused(store.create_allocation(request).await),
        DomainError::IdempotentAllocationDeleted {
            request_id: "req-4".into(),
            allocation_id: first.id,
        }
    );
}

pub async fn update_changes_only_the_given_fields_and_the_etag(store: &Shared, fx: &Fixture) {
    let created = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    let changes = AllocationChanges {
        purpose: Some("Board meeting".into()),
        date: Some(fx.day(5)),
        ..Default::default()
    };
    let update = fx.update(&created.id, changes, Some(created.etag()));
    let updated = store.update_allocation(update.clone()).await.unwrap();
    assert_eq!(updated.before, created);
    let after = &updated.after;
    assert_eq!(after.purpose, "Board meeting");
    assert_eq!(after.date, fx.day(5));
    assert_eq!(
        (&after.vehicle_id, &after.driver_id),
        (&created.vehicle_id, &created.driver_id)
    );
    assert_eq!(after.create_time, created.create_time);
    assert_eq!(after.update_time, update.now);
    assert_ne!(after.etag(), created.etag());
    assert_eq!(&store.get_allocation(&created.id).await.unwrap(), after);

    // Clearing the purpose is an update like any other.
    let clear = AllocationChanges {
        purpose: Some(String::new()),
        ..Default::default()
    };
    let cleared = store
        .update_allocation(fx.update(&created.id, clear, Some(after.etag())))
        .await
        .unwrap();
    assert_eq!(cleared.after.purpose, "");
}

pub async fn update_of_the_vehicle_records_its_driver(store: &Shared, fx: &Fixture) {
    let created = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    let changes = AllocationChanges {
        vehicle_id: Some(fx.vehicle(9).into()),
        ..Default::default()
    };
    let updated = store
        .update_allocation(fx.update(&created.id, changes, None))
        .await
        .unwrap();
    assert_eq!(updated.after.vehicle_id, fx.vehicle(9));
    assert_eq!(updated.after.driver_id, fx.driver_of(9));
    // The old vehicle is free again that day.
    store
        .create_allocation(fx.booking(1, 0, fx.day(1)))
        .await
        .unwrap();
}

pub async fn update_refuses_conflicts_and_leaves_the_booking_as_it_was(
    store: &Shared,
    fx: &Fixture,
) {
    let mine = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    let theirs = store
        .create_allocation(fx.booking(1, 1, fx.day(1)))
        .await
        .unwrap();
    let mine_on_day_two = store
        .create_allocation(fx.booking(0, 2, fx.day(2)))
        .await
        .unwrap();

    let to_their_vehicle = AllocationChanges {
        vehicle_id: Some(fx.vehicle(1).into()),
        purpose: Some("changed".into()),
        ..Default::default()
    };
    assert_eq!(
        refused(
            store
                .update_allocation(fx.update(&mine.id, to_their_vehicle, None))
                .await
        ),
        DomainError::VehicleAlreadyBooked {
            vehicle_id: fx.vehicle(1).into(),
            date: fx.day(1),
            allocation_id: theirs.id.clone(),
        }
    );
    let to_a_day_i_am_busy = AllocationChanges {
        date: Some(fx.day(2)),
        ..Default::default()
    };
    assert_eq!(
        refused(
            store
                .update_allocation(fx.update(&mine.id, to_a_day_i_am_busy, None))
                .await
        ),
        DomainError::EmployeeAlreadyBooked {
            employee_id: fx.employee(0).into(),
            date: fx.day(2),
            allocation_id: mine_on_day_two.id,
        }
    );
    let to_nowhere = AllocationChanges {
        vehicle_id: Some("veh-missing".into()),
        ..Default::default()
    };
    assert_eq!(
        refused(
            store
                .update_allocation(fx.update(&mine.id, to_nowhere, None))
                .await
        ),
        DomainError::not_found(Resource::Vehicle, "veh-missing")
    );
    let too_far = AllocationChanges {
        date: Some(fx.day(fx.policy.max_days_ahead as i64 + 1)),
        ..Default::default()
    };
    assert_eq!(
        refused(
            store
                .update_allocation(fx.update(&mine.id, too_far, None))
                .await
        )
        .reason(),
        "DATE_TOO_FAR_AHEAD"
    );
    assert_eq!(
        store.get_allocation(&mine.id).await.unwrap(),
        mine,
        "unchanged"
    );
}

pub async fn history_is_read_only(store: &Shared, fx: &Fixture) {
    let past = fx.stored(0, 0, fx.day(-1));
    store.insert_allocations(vec![past.clone()]).await.unwrap();
    let changes = AllocationChanges {
        purpose: Some("rewrite history".into()),
        ..Default::default()
    };
    let err = refused(
        store
            .update_allocation(fx.update(&past.id, changes, None))
            .await,
    );
    assert_eq!(
        err,
        DomainError::AllocationIsHistory {
            id: past.id.clone(),
            date: fx.day(-1),
            today: fx.day(0),
        }
    );
    let err = refused(store.delete_allocation(fx.deletion(&past.id, None)).await);
    assert_eq!(err.reason(), "ALLOCATION_IS_HISTORY");
    assert_eq!(store.get_allocation(&past.id).await.unwrap(), past);

    // A booking for today is not history yet; tomorrow it is.
    let today = store
        .create_allocation(fx.booking(1, 1, fx.day(0)))
        .await
        .unwrap();
    let mut tomorrow = fx.deletion(&today.id, None);
    tomorrow.window = fx.policy.window(fx.now + Duration::days(1));
    assert_eq!(
        refused(store.delete_allocation(tomorrow).await).reason(),
        "ALLOCATION_IS_HISTORY"
    );
    store
        .delete_allocation(fx.deletion(&today.id, None))
        .await
        .unwrap();
}

pub async fn stale_etags_are_refused(store: &Shared, fx: &Fixture) {
    let created = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    let purpose = |p: &str| AllocationChanges {
        purpose: Some(p.into()),
        ..Default::default()
    };
    let v2 = store
        .update_allocation(fx.update(&created.id, purpose("v2"), Some(created.etag())))
        .await
        .unwrap()
        .after;
    let stale = refused(
        store
            .update_allocation(fx.update(&created.id, purpose("lost"), Some(created.etag())))
            .await,
    );
    assert_eq!(
        stale,
        DomainError::EtagMismatch {
            resource: vehicle_allocation::domain::Resource::Allocation,
            id: created.id.clone(),
            expected: created.etag().to_string(),
            current: v2.etag().to_string(),
        }
    );
    let stale_delete = refused(
        store
            .delete_allocation(fx.deletion(&created.id, Some(Etag(99))))
            .await,
    );
    assert_eq!(stale_delete.reason(), "ETAG_MISMATCH");
    assert_eq!(store.get_allocation(&created.id).await.unwrap(), v2);
    store
        .delete_allocation(fx.deletion(&created.id, Some(v2.etag())))
        .await
        .unwrap();
}

pub async fn unknown_ids_are_not_found(store: &Shared, fx: &Fixture) {
    let missing = DomainError::not_found(Resource::Allocation, "no-such-id");
    assert_eq!(refused(store.get_allocation("no-such-id").await), missing);
    let changes = AllocationChanges {
        purpose: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(
        refused(
            store
                .update_allocation(fx.update("no-such-id", changes, None))
                .await
        ),
        missing
    );
    assert_eq!(
        refused(
            store
                .delete_allocation(fx.deletion("no-such-id", None))
                .await
        ),
        missing
    );
    assert_eq!(
        refused(store.get_employee("emp-none").await),
        DomainError::not_found(Resource::Employee, "emp-none")
    );
    assert_eq!(
        refused(store.get_vehicle("veh-none", fx.day(0)).await),
        DomainError::not_found(Resource::Vehicle, "veh-none")
    );
}

pub async fn delete_frees_the_slot(store: &Shared, fx: &Fixture) {
    let created = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    let deleted = store
        .delete_allocation(fx.deletion(&created.id, None))
        .await
        .unwrap();
    assert_eq!(deleted, created);
    assert_eq!(
        refused(store.get_allocation(&created.id).await).reason(),
        "ALLOCATION_NOT_FOUND"
    );
    assert_eq!(
        refused(
            store
                .delete_allocation(fx.deletion(&created.id, None))
                .await
        )
        .reason(),
        "ALLOCATION_NOT_FOUND"
    );
    store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
}

/// Bookings of the seed generator for this fixture, written directly.
async fn seeded_bookings(store: &Shared, fx: &Fixture, count: usize) -> Vec<Allocation> {
    let plan = vehicle_allocation::seed::SeedPlan {
        allocations: count,
        ..Fixture::PLAN
    };
    let bookings = vehicle_allocation::seed::all_bookings(&plan, &fx.policy, fx.now).unwrap();
    store.insert_allocations(bookings.clone()).await.unwrap();
    bookings
}

/// Every page of history for `filter`, `size` rows at a time.
async fn walk(store: &Shared, filter: &HistoryFilter, size: usize) -> (Vec<Allocation>, u64) {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_allocation_history(filter, PageRequest { size, after })
            .await
            .unwrap();
        assert!(page.items.len() <= size);
        all.extend(page.items.iter().cloned());
        if !page.has_more {
            return (all, page.total_size);
        }
        after = page.items.last().map(HistoryCursor::after);
    }
}

fn newest_first(mut bookings: Vec<Allocation>) -> Vec<Allocation> {
    bookings.sort_by(|a, b| (b.date, &b.id).cmp(&(a.date, &a.id)));
    bookings
}

pub async fn history_filters_and_orders_like_a_reference_implementation(
    store: &Shared,
    fx: &Fixture,
) {
    let all = seeded_bookings(store, fx, 1500).await;
    let sample = &all[all.len() / 2];
    let filters = [
        HistoryFilter::default(),
        HistoryFilter {
            employee_id: Some(sample.employee_id.clone()),
            ..Default::default()
        },
        HistoryFilter {
            vehicle_id: Some(sample.vehicle_id.clone()),
            ..Default::default()
        },
        HistoryFilter {
            driver_id: Some(sample.driver_id.clone()),
            ..Default::default()
        },
        HistoryFilter {
            start_date: Some(fx.day(-30)),
            end_date: Some(fx.day(10)),
            ..Default::default()
        },
        HistoryFilter {
            end_date: Some(fx.day(-300)),
            ..Default::default()
        },
        HistoryFilter {
            employee_id: Some(sample.employee_id.clone()),
            start_date: Some(fx.day(-200)),
            ..Default::default()
        },
        HistoryFilter {
            employee_id: Some(sample.employee_id.clone()),
            vehicle_id: Some(sample.vehicle_id.clone()),
            driver_id: Some(sample.driver_id.clone()),
            start_date: Some(sample.date),
            end_date: Some(sample.date),
        },
        HistoryFilter {
            employee_id: Some("emp-nobody".into()),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let expected = newest_first(all.iter().filter(|a| filter.matches(a)).cloned().collect());
        for size in [1, 7, 500] {
            if size == 1 && expected.len() > 100 {
                continue;
            }
            let (got, total) = walk(store, filter, size).await;
            assert_eq!(total, expected.len() as u64, "total for {filter:?}");
            assert_eq!(got, expected, "rows for {filter:?} in pages of {size}");
        }
    }
}

pub async fn history_walk_with_writes_between_pages_never_skips_or_repeats(
    store: &Shared,
    fx: &Fixture,
) {
    let existing = seeded_bookings(store, fx, 400).await;
    let filter = HistoryFilter::default();
    let mut seen = Vec::new();
    let mut deleted = HashSet::new();
    let mut after: Option<HistoryCursor> = None;
    let mut round = 0;
    loop {
        let page = store
            .list_allocation_history(
                &filter,
                PageRequest {
                    size: 25,
                    after: after.clone(),
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|a| a.id.clone()));
        if !page.has_more {
            break;
        }
        after = page.items.last().map(HistoryCursor::after);
        // Between pages: new bookings ahead of and behind the cursor, and a
        // cancellation of one not yet seen.
        round += 1;
        let employee = 40 + round % 20;
        for (v, day) in [(40 + round % 5, 60 - round as i64), (round % 40, 1)] {
            let booking = fx.booking(employee, v, fx.day(day));
            let _ = store.create_allocation(booking).await;
        }
        if let Some(victim) = existing
            .iter()
            .filter(|a| a.date >= fx.day(0) && !seen.contains(&a.id) && !deleted.contains(&a.id))
            .nth(round % 3)
        {
            store
                .delete_allocation(fx.deletion(&victim.id, None))
                .await
                .unwrap();
            deleted.insert(victim.id.clone());
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row was served twice");
    for a in &existing {
        if !deleted.contains(&a.id) {
            assert!(unique.contains(&a.id), "skipped {a:?}");
        }
    }
    assert!(round > 10, "the walk spanned many pages");
}

pub async fn employees_are_listed_by_id_and_department(store: &Shared, fx: &Fixture) {
    let mut after = None;
    let mut ids = Vec::new();
    loop {
        let page = store
            .list_employees(None, false, PageRequest { size: 7, after })
            .await
            .unwrap();
        assert_eq!(page.total_size, fx.employees.len() as u64);
        ids.extend(page.items.iter().map(|e| e.id.clone()));
        if !page.has_more {
            break;
        }
        after = page.items.last().map(|e| e.id.clone());
    }
    let mut expected: Vec<_> = fx.employees.iter().map(|e| e.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);

    let department = fx.employees[0].department.clone();
    let members: Vec<_> = fx
        .employees
        .iter()
        .filter(|e| e.department == department)
        .cloned()
        .collect();
    let page = store
        .list_employees(
            Some(&department),
            false,
            PageRequest {
                size: 500,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items, members);
    assert_eq!(page.total_size, members.len() as u64);
    assert_eq!(
        store.get_employee(fx.employee(3)).await.unwrap(),
        fx.employees[3]
    );
}

pub async fn vehicles_are_listed_with_drivers_and_by_availability(store: &Shared, fx: &Fixture) {
    let page = store
        .list_vehicles(
            false,
            fx.day(0),
            PageRequest {
                size: 500,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items, fx.vehicles);
    assert_eq!(page.total_size, fx.vehicles.len() as u64);
    assert_eq!(
        store.get_vehicle(fx.vehicle(4), fx.day(0)).await.unwrap(),
        fx.vehicles[4]
    );

    for v in [0, 4, 44] {
        store
            .create_allocation(fx.booking(v, v, fx.day(6)))
            .await
            .unwrap();
    }
    store
        .create_allocation(fx.booking(1, 1, fx.day(7)))
        .await
        .unwrap();
    let mut free = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_available_vehicles(fx.day(6), PageRequest { size: 10, after })
            .await
            .unwrap();
        assert_eq!(page.total_size, fx.vehicles.len() as u64 - 3);
        free.extend(page.items.iter().map(|v| v.id.clone()));
        if !page.has_more {
            break;
        }
        after = page.items.last().map(|v| v.id.clone());
    }
    let expected: Vec<_> = fx
        .vehicles
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 4, 44].contains(i))
        .map(|(_, v)| v.id.clone())
        .collect();
    assert_eq!(free, expected);
}

pub async fn concurrent_conflicting_creates_have_exactly_one_winner(store: &Shared, fx: &Fixture) {
    let date = fx.day(9);
    let tasks: Vec<_> = (0..40)
        .map(|e| {
            let store = Arc::clone(store);
            let booking = fx.booking(e, 2, date);
            tokio::spawn(async move { store.create_allocation(booking).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut holders = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(allocation) => winners.push(allocation),
            Err(error) => match refused::<()>(Err(error)) {
                DomainError::VehicleAlreadyBooked { allocation_id, .. } => {
                    holders.insert(allocation_id);
                }
                other => panic!("unexpected {other:?}"),
            },
        }
    }
    assert_eq!(winners.len(), 1, "exactly one booking wins");
    assert_eq!(
        holders,
        HashSet::from([winners[0].id.clone()]),
        "losers name the winner"
    );
}

pub async fn seed_batches_breaking_a_rule_are_refused_whole(store: &Shared, fx: &Fixture) {
    let ok = fx.stored(0, 0, fx.day(-3));
    let clash = fx.stored(1, 0, fx.day(-3));
    let err = refused(store.insert_allocations(vec![ok.clone(), clash]).await);
    assert_eq!(err.reason(), "VEHICLE_ALREADY_BOOKED");
    assert_eq!(
        refused(store.get_allocation(&ok.id).await).reason(),
        "ALLOCATION_NOT_FOUND"
    );
}

pub async fn the_page_token_key_is_stored_once_and_kept(store: &Shared, _fx: &Fixture) {
    let first = PageKey::new([1; 32]);
    // Replicas starting together: every one gets the key that was stored.
    let racers: Vec<_> = (0..8u8)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.page_token_key(PageKey::new([i + 2; 32])).await })
        })
        .collect();
    let mut keys = Vec::new();
    for racer in racers {
        keys.push(racer.await.unwrap().unwrap());
    }
    let stored = keys[0];
    assert!(keys.iter().all(|key| *key == stored));
    assert_eq!(
        store.page_token_key(PageKey::new([9; 32])).await.unwrap(),
        stored
    );
    // Seeding with --reset keeps it, so tokens handed out stay valid.
    store.reset().await.unwrap();
    assert_eq!(store.page_token_key(first).await.unwrap(), stored);
}

pub async fn reset_empties_the_store(store: &Shared, fx: &Fixture) {
    assert!(!store.is_empty().await.unwrap());
    store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    store.reset().await.unwrap();
    assert!(store.is_empty().await.unwrap());
    store.ping().await.unwrap();
}

pub async fn totals_follow_every_write(store: &Shared, fx: &Fixture) {
    seeded_bookings(store, fx, 300).await;
    let range = |from: i64, to: i64| HistoryFilter {
        start_date: Some(fx.day(from)),
        end_date: Some(fx.day(to)),
        ..Default::default()
    };
    let total = |filter: HistoryFilter| async move {
        store
            .list_allocation_history(
                &filter,
                PageRequest {
                    size: 1,
                    after: None,
                },
            )
            .await
            .unwrap()
            .total_size
    };
    let free = |day: i64| async move {
        store
            .list_available_vehicles(
                fx.day(day),
                PageRequest {
                    size: 1,
                    after: None,
                },
            )
            .await
            .unwrap()
            .total_size
    };
    let (all, day_70, day_71) = (
        total(HistoryFilter::default()).await,
        total(range(70, 70)).await,
        total(range(71, 71)).await,
    );
    assert_eq!(all, 300);
    assert_eq!((day_70, day_71), (0, 0), "beyond the seeded days");
    assert_eq!(free(70).await, fx.vehicles.len() as u64);

    let booked = store
        .create_allocation(fx.booking(0, 0, fx.day(70)))
        .await
        .unwrap();
    assert_eq!(total(range(70, 70)).await, 1);
    assert_eq!(total(HistoryFilter::default()).await, 301);
    assert_eq!(free(70).await, fx.vehicles.len() as u64 - 1);

    let later = AllocationChanges {
        date: Some(fx.day(71)),
        ..Default::default()
    };
    store
        .update_allocation(fx.update(&booked.id, later, None))
        .await
        .unwrap();
    assert_eq!(
        (total(range(70, 70)).await, total(range(71, 71)).await),
        (0, 1)
    );
    assert_eq!(total(range(60, 80)).await, 1 + total(range(60, 69)).await);
    assert_eq!(free(70).await, fx.vehicles.len() as u64);
    assert_eq!(free(71).await, fx.vehicles.len() as u64 - 1);

    let purpose_only = AllocationChanges {
        purpose: Some("no move".into()),
        ..Default::default()
    };
    store
        .update_allocation(fx.update(&booked.id, purpose_only, None))
        .await
        .unwrap();
    assert_eq!(total(range(71, 71)).await, 1);

    store
        .delete_allocation(fx.deletion(&booked.id, None))
        .await
        .unwrap();
    assert_eq!(total(range(71, 71)).await, 0);
    assert_eq!(total(HistoryFilter::default()).await, 300);
    assert_eq!(free(71).await, fx.vehicles.len() as u64);

    store.reset().await.unwrap();
    assert_eq!(total(HistoryFilter::default()).await, 0);
}
