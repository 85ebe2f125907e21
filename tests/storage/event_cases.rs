//! The audit trail: what every backend records for every write, and how it
//! is read back.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use vehicle_allocation::domain::admin::{EmployeeChanges, Erasure};
use vehicle_allocation::domain::{
    AllocationChanges, DomainError, Etag, Event, EventFilter, EventKind, FleetCommand, FleetEntity,
    PageRequest, Resource, Snapshot,
};
use vehicle_allocation::storage::Store;

use crate::fixture::{Fixture, refused};

type Shared = Arc<dyn Store>;

/// Every event after `after`, a page of `size` at a time.
pub async fn events_after(
    store: &Shared,
    filter: &EventFilter,
    after: u64,
    size: usize,
) -> Vec<Event> {
    let mut all = Vec::new();
    let mut after = Some(after);
    loop {
        let page = store
            .list_events(filter, PageRequest { size, after })
            .await
            .unwrap();
        assert!(page.items.len() <= size);
        all.extend(page.items.iter().cloned());
        if !page.has_more {
            return all;
        }
        after = page.items.last().map(|e| e.sequence);
    }
}

/// The newest sequence now stored (0 when none).
async fn newest(store: &Shared) -> u64 {
    events_after(store, &EventFilter::default(), 0, 500)
        .await
        .last()
        .map_or(0, |e| e.sequence)
}

/// Waits until the store signals `sequence` (on MongoDB the signal comes
/// through a change stream, a moment after the commit).
async fn signalled(store: &Shared, sequence: u64) {
    let mut signal = store.event_signal();
    tokio::time::timeout(
        StdDuration::from_secs(10),
        signal.wait_for(|s| *s >= sequence),
    )
    .await
    .expect("the event is signalled")
    .unwrap();
}

fn allocation(snapshot: &Option<Snapshot>) -> &vehicle_allocation::domain::Allocation {
    match snapshot {
        Some(Snapshot::Allocation(a)) => a,
        other => panic!("expected a booking snapshot, found {other:?}"),
    }
}

pub async fn every_booking_write_appends_one_event_and_a_refusal_none(
    store: &Shared,
    fx: &Fixture,
) {
    let start = newest(store).await;
    let new = fx.keyed(fx.booking(0, 0, fx.day(1)), "req-events");
    let created = store.create_allocation(new.clone()).await.unwrap();
    // Refused, and replayed: nothing is written, no event.
    refused(store.create_allocation(fx.booking(1, 0, fx.day(1))).await);
    assert_eq!(store.create_allocation(new).await.unwrap(), created);
    refused(
        store
            .update_allocation(fx.update(&created.id, AllocationChanges::default(), Some(Etag(9))))
            .await,
    );
    let moved = store
        .update_allocation(fx.update(
            &created.id,
            AllocationChanges {
                vehicle_id: Some(fx.vehicle(1).to_owned()),
                ..Default::default()
            },
            Some(created.etag()),
        ))
        .await
        .unwrap();
    let cancelled = store
        .delete_allocation(fx.deletion(&created.id, None))
        .await
        .unwrap();
    refused(
        store
            .delete_allocation(fx.deletion(&created.id, None))
            .await,
    );

    let events = events_after(store, &EventFilter::default(), start, 100).await;
    let kinds: Vec<_> = events.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::AllocationCreated,
            EventKind::AllocationUpdated,
            EventKind::AllocationCancelled
        ]
    );
    let sequences: Vec<_> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [start + 1, start + 2, start + 3], "no gaps");
    let [create, update, cancel] = [&events[0].event, &events[1].event, &events[2].event];
    assert_eq!(create.before, None);
    assert_eq!(allocation(&create.after), &created);
    assert_eq!(allocation(&update.before), &created);
    assert_eq!(allocation(&update.after), &moved.after);
    assert_eq!(allocation(&cancel.before), &cancelled);
    assert_eq!(cancel.after, None);
    for event in [create, update, cancel] {
        assert_eq!(event.resource, format!("allocations/{}", created.id));
        assert_eq!(event.actor, fx.origin().actor);
        assert_eq!(event.request_id, "case-request");
    }
    assert_eq!(create.time, fx.now);
    assert_eq!(update.time, moved.after.update_time);
    assert!(cancel.time > update.time);
    signalled(store, start + 3).await;
}

pub async fn seeding_records_every_entity_by_system_seed(store: &Shared, fx: &Fixture) {
    let events = events_after(store, &EventFilter::default(), 0, 500).await;
    let count = |kind: EventKind| events.iter().filter(|e| e.event.kind == kind).count();
    assert_eq!(count(EventKind::EmployeeCreated), fx.employees.len());
    assert_eq!(count(EventKind::VehicleCreated), fx.vehicles.len());
    assert_eq!(count(EventKind::DriverCreated), fx.vehicles.len());
    assert_eq!(events.len(), fx.employees.len() + 2 * fx.vehicles.len());
    assert!(events.iter().all(|e| e.event.actor.id == "system:seed"));
    assert!(events.iter().all(|e| e.event.before.is_none()));
    let past = fx.stored(0, 0, fx.day(-2));
    store.insert_allocations(vec![past.clone()]).await.unwrap();
    let last = events_after(
        store,
        &EventFilter::default(),
        events.last().unwrap().sequence,
        10,
    )
    .await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].event.kind, EventKind::AllocationCreated);
    assert_eq!(last[0].event.after, Some(Snapshot::Allocation(past)));
    // A refused batch records nothing.
    refused(
        store
            .insert_allocations(vec![fx.stored(1, 0, fx.day(-2))])
            .await,
    );
    assert_eq!(newest(store).await, last[0].sequence);
}

pub async fn fleet_writes_append_their_events_and_their_bookings(store: &Shared, fx: &Fixture) {
    let booked = store
        .create_allocation(fx.booking(2, 4, fx.day(3)))
        .await
        .unwrap();
    let start = newest(store).await;
    // Refused (a booking stands in the way): no event.
    refused(
        store
            .apply_fleet(vec![fx.admin(FleetCommand::SetVehicleRetired {
                id: fx.vehicle(4).to_owned(),
                retired: true,
                cancel_conflicting: false,
            })])
            .await,
    );
    assert_eq!(newest(store).await, start);
    store
        .apply_fleet(vec![fx.admin(FleetCommand::SetVehicleRetired {
            id: fx.vehicle(4).to_owned(),
            retired: true,
            cancel_conflicting: true,
        })])
        .await
        .unwrap();
    let events = events_after(store, &EventFilter::default(), start, 100).await;
    let kinds: Vec<_> = events.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::VehicleUpdated, EventKind::AllocationCancelled]
    );
    let retired = &events[0].event;
    assert_eq!(retired.resource, format!("vehicles/{}", fx.vehicle(4)));
    match (&retired.before, &retired.after) {
        (Some(Snapshot::Vehicle(before)), Some(Snapshot::Vehicle(after))) => {
            assert!(!before.retired);
            assert!(after.retired);
        }
        other => panic!("expected vehicle snapshots, found {other:?}"),
    }
    assert_eq!(allocation(&events[1].event.before), &booked);
    assert_eq!(events[1].event.after, None);
    assert_eq!(events[1].event.request_id, retired.request_id);
    assert_eq!(events[1].sequence, events[0].sequence + 1);
}

pub async fn events_filter_by_each_field_and_page_in_sequence_order(store: &Shared, fx: &Fixture) {
    let start = newest(store).await;
    let mut made = Vec::new();
    for (e, v) in [(0, 0), (1, 1), (0, 2), (2, 1)] {
        made.push(
            store
                .create_allocation(fx.booking(e, v, fx.day(1 + made.len() as i64)))
                .await
                .unwrap(),
        );
    }
    // Moves booking 0 from vehicle 0 to vehicle 3: it concerns both.
    store
        .update_allocation(fx.update(
            &made[0].id,
            AllocationChanges {
                vehicle_id: Some(fx.vehicle(3).to_owned()),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap();
    let all = events_after(store, &EventFilter::default(), start, 100).await;
    assert_eq!(all.len(), 5);
    // Every page size gives the same events in the same order.
    for size in [1, 2, 3, 5] {
        assert_eq!(
            events_after(store, &EventFilter::default(), start, size).await,
            all
        );
    }
    let sequences = |filter: EventFilter| {
        let store = Arc::clone(store);
        async move {
            events_after(&store, &filter, start, 2)
                .await
                .iter()
                .map(|e| e.sequence - start)
                .collect::<Vec<_>>()
        }
    };
    let employee = |i: usize| Some(fx.employee(i).to_owned());
    let vehicle = |i: usize| Some(fx.vehicle(i).to_owned());
    assert_eq!(
        sequences(EventFilter {
            employee_id: employee(0),
            ..Default::default()
        })
        .await,
        [1, 3, 5]
    );
    assert_eq!(
        sequences(EventFilter {
            vehicle_id: vehicle(0),
            ..Default::default()
        })
        .await,
        [1, 5]
    );
    assert_eq!(
        sequences(EventFilter {
            vehicle_id: vehicle(3),
            ..Default::default()
        })
        .await,
        [5]
    );
    assert_eq!(
        sequences(EventFilter {
            vehicle_id: vehicle(1),
            ..Default::default()
        })
        .await,
        [2, 4]
    );
    assert_eq!(
        sequences(EventFilter {
            resource: Some(format!("allocations/{}", made[0].id)),
            ..Default::default()
        })
        .await,
        [1, 5]
    );
    assert_eq!(
        sequences(EventFilter {
            kinds: vec![EventKind::AllocationUpdated],
            ..Default::default()
        })
        .await,
        [5]
    );
    assert_eq!(
        sequences(EventFilter {
            actor: Some("someone-else".into()),
            ..Default::default()
        })
        .await,
        Vec::<u64>::new()
    );
    assert_eq!(
        sequences(EventFilter {
            actor: Some(fx.origin().actor.id),
            employee_id: employee(1),
            ..Default::default()
        })
        .await,
        [2]
    );
    // Creates at `now`, the update five minutes later; the end excluded.
    assert_eq!(
        sequences(EventFilter {
            start_time: Some(fx.now + Duration::minutes(1)),
            ..Default::default()
        })
        .await,
        [5]
    );
    assert_eq!(
        sequences(EventFilter {
            end_time: Some(fx.now + Duration::minutes(5)),
            ..Default::default()
        })
        .await,
        [1, 2, 3, 4]
    );
}

pub async fn pruning_deletes_old_events_and_sequences_never_go_back(store: &Shared, fx: &Fixture) {
    let start = newest(store).await;
    // The fleet's own events (seeded at `now`) go first.
    let after_seeding = fx.now + Duration::milliseconds(1);
    while store.prune_events(after_seeding, 100).await.unwrap() > 0 {}
    assert_eq!(
        events_after(store, &EventFilter::default(), 0, 10).await,
        []
    );
    let created = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    store
        .create_allocation(fx.booking(1, 1, fx.day(1)))
        .await
        .unwrap();
    store
        .update_allocation(fx.update(&created.id, AllocationChanges::default(), None))
        .await
        .unwrap();
    // The two creates are older than a minute after `now`; one at a time.
    let cutoff = fx.now + Duration::minutes(1);
    assert_eq!(store.prune_events(cutoff, 1).await.unwrap(), 1);
    assert_eq!(store.prune_events(cutoff, 10).await.unwrap(), 1);
    assert_eq!(store.prune_events(cutoff, 10).await.unwrap(), 0);
    let left = events_after(store, &EventFilter::default(), 0, 100).await;
    assert_eq!(
        left.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [start + 3]
    );
    // Everything pruned: the next event still follows the last one.
    assert_eq!(
        store
            .prune_events(fx.now + Duration::days(1), 10)
            .await
            .unwrap(),
        1
    );
    store
        .delete_allocation(fx.deletion(&created.id, None))
        .await
        .unwrap();
    let left = events_after(store, &EventFilter::default(), 0, 100).await;
    assert_eq!(
        left.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [start + 4]
    );
}

/// An erasure request: afterwards the employee's name and every e-mail they
/// had are in no table (collection) at all, read from under the store.
pub async fn erasing_an_employee_leaves_their_name_and_email_in_no_table(
    store: &Shared,
    fx: &Fixture,
) {
    const ID: &str = "emp-erase";
    const NAME: &str = "Zofia Quillfeather";
    const OLD_EMAIL: &str = "zofia.q@old.example";
    const EMAIL: &str = "z.quillfeather@corp.example";
    let mut employee = fx.new_employee(ID, OLD_EMAIL);
    employee.name = NAME.into();
    fx.apply(
        store.as_ref(),
        FleetCommand::PutEmployee {
            employee,
            upsert: false,
        },
    )
    .await
    .unwrap();
    // Before and after snapshots with both e-mails.
    fx.apply(
        store.as_ref(),
        FleetCommand::UpdateEmployee {
            id: ID.into(),
            changes: EmployeeChanges {
                email: Some(EMAIL.into()),
                department: Some("Research".into()),
                ..Default::default()
            },
            etag: None,
        },
    )
    .await
    .unwrap();
    let mut past = fx.stored(0, 8, fx.day(-4));
    past.employee_id = ID.into();
    store.insert_allocations(vec![past.clone()]).await.unwrap();
    let mut new = fx.booking(0, 9, fx.day(2));
    new.employee_id = ID.into();
    let future = store.create_allocation(new).await.unwrap();
    let erase = |cancel| FleetCommand::EraseEmployee {
        id: ID.into(),
        cancel_conflicting: cancel,
    };
    let start = newest(store).await;
    assert_eq!(
        refused(fx.apply(store.as_ref(), erase(false)).await),
        DomainError::HasFutureBookings {
            resource: Resource::Employee,
            id: ID.into(),
            allocation_ids: vec![future.id.clone()],
            total: 1,
        }
    );
    assert_eq!(
        store.get_employee(ID).await.unwrap().name,
        NAME,
        "refused whole"
    );
    assert_eq!(newest(store).await, start);

    let done = fx.apply(store.as_ref(), erase(true)).await.unwrap();
    let pseudonym = Erasure::of(ID);
    let FleetEntity::Employee(erased) = &done.entity else {
        panic!("an employee: {:?}", done.entity)
    };
    assert_eq!(
        (&erased.name, &erased.email),
        (&pseudonym.name, &pseudonym.email)
    );
    assert!(!erased.active);
    assert_eq!(erased.department, "Research");
    assert_eq!(done.cancelled, vec![future.clone()]);
    assert_eq!(&store.get_employee(ID).await.unwrap(), erased);
    assert_eq!(
        store.get_allocation(&past.id).await.unwrap(),
        past,
        "history keeps the id"
    );

    // The employee's own events: rewritten in place, and the erasure's
    // holds no before.
    let own = EventFilter {
        resource: Some(format!("employees/{ID}")),
        ..Default::default()
    };
    let events = events_after(store, &own, 0, 100).await;
    let kinds: Vec<_> = events.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::EmployeeCreated,
            EventKind::EmployeeUpdated,
            EventKind::EmployeeErased
        ]
    );
    for e in &events {
        for snapshot in [&e.event.before, &e.event.after].into_iter().flatten() {
            let Snapshot::Employee(s) = snapshot else {
                panic!("an employee snapshot: {snapshot:?}")
            };
            assert_eq!((&s.name, &s.email), (&pseudonym.name, &pseudonym.email));
        }
    }
    let last = &events[2].event;
    assert_eq!(last.before, None);
    assert_eq!(last.after, Some(Snapshot::Employee(erased.clone())));
    let after_erasure = events_after(store, &EventFilter::default(), start, 100).await;
    let kinds: Vec<_> = after_erasure.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::EmployeeErased, EventKind::AllocationCancelled]
    );

    // Every value of every table or collection.
    let stored = crate::stored_text().await;
    for (table, text) in &stored {
        let text = text.to_lowercase();
        for personal in [NAME, "quillfeather", OLD_EMAIL, EMAIL] {
            assert!(
                !text.contains(&personal.to_lowercase()),
                "{personal:?} is still in {table}: {text}"
            );
        }
    }
    // The scan read the employee and the events: it can see a pseudonym.
    for place in ["employees", "events"] {
        assert!(
            stored
                .iter()
                .any(|(table, text)| table == place && text.contains(&pseudonym.email)),
            "the pseudonym is in {place}"
        );
    }

    // Again: nothing changes, no event.
    let end = newest(store).await;
    let again = fx.apply(store.as_ref(), erase(false)).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.entity, done.entity);
    assert_eq!(newest(store).await, end);
}

pub async fn positions_past_every_sequence_list_nothing_and_the_newest_is_read_back(
    store: &Shared,
    fx: &Fixture,
) {
    let created = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    store
        .update_allocation(fx.update(&created.id, AllocationChanges::default(), None))
        .await
        .unwrap();
    let newest = newest(store).await;
    assert_eq!(store.latest_event_sequence().await.unwrap(), newest);
    // Pruned events still count: sequences never go back.
    while store
        .prune_events(fx.now + Duration::days(1), 100)
        .await
        .unwrap()
        > 0
    {}
    assert_eq!(store.latest_event_sequence().await.unwrap(), newest);
    store
        .delete_allocation(fx.deletion(&created.id, None))
        .await
        .unwrap();
    assert_eq!(store.latest_event_sequence().await.unwrap(), newest + 1);
    // Beyond i64::MAX is past every event, not a negative position before
    // them all.
    let employee = EventFilter {
        employee_id: Some(fx.employee(0).into()),
        ..EventFilter::default()
    };
    for filter in [EventFilter::default(), employee] {
        for after in [newest + 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            let page = store
                .list_events(
                    &filter,
                    PageRequest {
                        size: 10,
                        after: Some(after),
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.items, [], "after {after}");
        }
    }
}

/// Twenty writers at once, some competing for the same vehicle, while two
/// readers follow the log: one paging on from the last event it read, one
/// moving its position up to every signalled sequence as a watch does.
/// Neither may pass an event that commits later: each must end up having
/// read every event, in order. (On MongoDB sequences are taken outside the
/// transactions, so they can commit out of order.)
pub async fn readers_never_pass_an_event_that_commits_later(store: &Shared, fx: &Fixture) {
    const WRITERS: usize = 20;
    const DAYS: i64 = 4;
    let start = store.latest_event_sequence().await.unwrap();
    let done = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = |follow_signal: bool| {
        let store = Arc::clone(store);
        let finished = Arc::clone(&finished);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut signal = store.event_signal();
            let mut position = start;
            let mut read = Vec::new();
            loop {
                let last_round = finished.load(std::sync::atomic::Ordering::SeqCst);
                let committed = *signal.borrow_and_update();
                let events = events_after(&store, &EventFilter::default(), position, 7).await;
                if let Some(last) = events.last() {
                    position = last.sequence;
                }
                read.extend(events.into_iter().map(|e| e.sequence));
                if follow_signal {
                    position = position.max(committed);
                }
                if last_round {
                    return read;
                }
                tokio::select! {
                    _ = signal.changed() => {}
                    () = done.notified() => {}
                    () = tokio::time::sleep(StdDuration::from_millis(5)) => {}
                }
            }
        })
    };
    let readers = [reader(false), reader(true)];
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(store);
            let bookings: Vec<_> = (1..=DAYS)
                .map(|day| fx.booking(w, w, fx.day(day)))
                // Two writers want each of these vehicles on the same day.
                .chain([fx.booking(w + WRITERS, w / 2, fx.day(DAYS + 1))])
                .collect();
            tokio::spawn(async move {
                let mut created = 0;
                for booking in bookings {
                    match store.create_allocation(booking).await {
                        Ok(_) => created += 1,
                        Err(error) => {
                            refused::<()>(Err(error));
                        }
                    }
                }
                created
            })
        })
        .collect();
    let mut created = 0;
    for writer in writers {
        created += writer.await.unwrap();
    }
    // The last events are signalled (on MongoDB through the change
    // stream) before the readers take their last round.
    let newest = store.latest_event_sequence().await.unwrap();
    signalled(store, newest).await;
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    done.notify_waiters();
    let all: Vec<u64> = events_after(store, &EventFilter::default(), start, 100)
        .await
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(all.len(), created, "one event per booking made");
    assert!(created >= WRITERS, "most bookings are made: {created}");
    for reader in readers {
        assert_eq!(reader.await.unwrap(), all, "every event, in order, once");
    }
}
