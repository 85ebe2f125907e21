//! The exact documents the MongoDB backend sends.

use chrono::{DateTime, NaiveDate, Utc};
use mongodb::bson::{Bson, doc};

use super::*;
use crate::domain::{Assignment, Driver, Employee, HistoryCursor, Vehicle, VehicleBlock};

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn bdate(s: &str) -> bson::DateTime {
    bson::DateTime::parse_rfc3339_str(s).unwrap()
}

fn booking() -> Allocation {
    Allocation {
        id: "01a2-b".into(),
        employee_id: "emp-00001".into(),
        vehicle_id: "veh-0002".into(),
        driver_id: "drv-0002".into(),
        date: day("2026-12-03"),
        purpose: "Client visit".into(),
        create_time: at("2026-11-26T09:30:00.123Z"),
        update_time: at("2026-11-27T10:00:00.456Z"),
        version: 3,
    }
}

#[test]
fn dates_are_stored_as_midnight_utc_and_instants_to_the_millisecond() {
    assert_eq!(date(day("2026-12-03")), bdate("2026-12-03T00:00:00Z"));
    assert_eq!(date(day("1969-12-31")), bdate("1969-12-31T00:00:00Z"));
    assert_eq!(
        instant(at("2026-11-26T09:30:00.123Z")),
        bdate("2026-11-26T09:30:00.123Z")
    );
}

#[test]
fn an_allocation_is_stored_field_by_field_and_reads_back() {
    let document = allocation_document(&booking());
    assert_eq!(
        document,
        doc! {
            "_id": "01a2-b",
            "employee_id": "emp-00001",
            "vehicle_id": "veh-0002",
            "driver_id": "drv-0002",
            "allocation_date": bdate("2026-12-03T00:00:00Z"),
            "purpose": "Client visit",
            "create_time": bdate("2026-11-26T09:30:00.123Z"),
            "update_time": bdate("2026-11-27T10:00:00.456Z"),
            "version": 3_i64,
        }
    );
    assert_eq!(allocation_from(&document).unwrap(), booking());

    let mut from_shell = document.clone();
    from_shell.insert("version", 3_i32);
    assert_eq!(
        allocation_from(&from_shell).unwrap().version,
        3,
        "32-bit integers read too"
    );
    from_shell.remove("driver_id");
    let err = allocation_from(&from_shell).unwrap_err();
    assert!(err.to_string().contains("driver_id"), "{err}");
}

#[test]
fn fleet_documents_keep_drivers_apart_and_join_them_back() {
    let t = at("2026-12-01T09:30:00.250Z");
    let driver = Driver {
        id: "drv-0002".into(),
        name: "Corine Becker".into(),
        phone: "(129) 974-4431".into(),
        license_number: "DL91214855".into(),
        active: true,
        create_time: t,
        update_time: t,
        version: 1,
    };
    let vehicle = Vehicle {
        id: "veh-0002".into(),
        registration: "VL24 WXJ".into(),
        make: "Renault".into(),
        model: "Trafic".into(),
        seats: 8,
        retired: false,
        create_time: t,
        update_time: t,
        version: 3,
        driver: Some(driver.clone()),
    };
    let timeline = vec![
        Assignment {
            driver_id: "drv-0001".into(),
            start: day("1970-01-01"),
            end: Some(day("2026-12-05")),
        },
        Assignment {
            driver_id: "drv-0002".into(),
            start: day("2026-12-05"),
            end: None,
        },
    ];
    let stored = vehicle_document(&vehicle, &timeline);
    assert_eq!(
        stored,
        doc! { "_id": "veh-0002", "registration": "VL24 WXJ", "make": "Renault",
        "model": "Trafic", "seats": 8_i64, "retired": false,
        "create_time": bdate("2026-12-01T09:30:00.250Z"),
        "update_time": bdate("2026-12-01T09:30:00.250Z"), "version": 3_i64,
        "assignments": [
            { "driver_id": "drv-0001", "start": bdate("1970-01-01T00:00:00Z"),
              "end": bdate("2026-12-05T00:00:00Z") },
            { "driver_id": "drv-0002", "start": bdate("2026-12-05T00:00:00Z"), "end": Bson::Null },
        ],
        "driver_id": "drv-0002" }
    );
    assert_eq!(timeline_from(&stored).unwrap(), timeline);
    assert_eq!(
        driver_document(&driver),
        doc! { "_id": "drv-0002", "name": "Corine Becker", "phone": "(129) 974-4431",
        "license_number": "DL91214855", "active": true,
        "create_time": bdate("2026-12-01T09:30:00.250Z"),
        "update_time": bdate("2026-12-01T09:30:00.250Z"), "version": 1_i64 }
    );
    let mut joined = stored.clone();
    joined.remove("assignments");
    joined.insert("driver", vec![Bson::Document(driver_document(&driver))]);
    assert_eq!(vehicle_from(&joined).unwrap(), vehicle);
    joined.insert("driver", Vec::<Bson>::new());
    assert_eq!(vehicle_from(&joined).unwrap().driver, None);

    let employee = Employee {
        id: "emp-00001".into(),
        name: "Joel Hodkiewicz".into(),
        email: "joel.hodkiewicz@example.com".into(),
        department: "Sales".into(),
        active: false,
        create_time: t,
        update_time: t,
        version: 2,
    };
    let document = employee_document(&employee);
    assert_eq!(
        document,
        doc! { "_id": "emp-00001", "name": "Joel Hodkiewicz",
        "email": "joel.hodkiewicz@example.com", "department": "Sales", "active": false,
        "create_time": bdate("2026-12-01T09:30:00.250Z"),
        "update_time": bdate("2026-12-01T09:30:00.250Z"), "version": 2_i64 }
    );
    assert_eq!(employee_from(&document).unwrap(), employee);
}

#[test]
fn documents_of_the_older_shape_read_as_active_and_driven_since_ever() {
    let old = doc! { "_id": "emp-1", "name": "A", "email": "a@x.org", "department": "" };
    let employee = employee_from(&old).unwrap();
    assert!(employee.active);
    assert_eq!(employee.version, 1);
    assert_eq!(employee.create_time, DateTime::UNIX_EPOCH);
    let vehicle = doc! { "_id": "veh-1", "registration": "R", "make": "", "model": "",
    "seats": 4, "driver_id": "drv-1" };
    assert!(!vehicle_row_from(&vehicle).unwrap().retired);
    assert_eq!(
        timeline_from(&vehicle).unwrap(),
        vec![Assignment {
            driver_id: "drv-1".into(),
            start: day("1970-01-01"),
            end: None
        }]
    );
    assert_eq!(
        driver_vehicles("drv-1"),
        doc! { "$or": [
            { "assignments.driver_id": "drv-1" },
            { "assignments": { "$exists": false }, "driver_id": "drv-1" },
        ] }
    );
}

#[test]
fn fleet_writes_claim_the_documents_they_decide_from() {
    assert_eq!(claim(), doc! { "$inc": { "writes": 1 } });
    let timeline = [Assignment {
        driver_id: "drv-9".into(),
        start: day("2026-12-04"),
        end: None,
    }];
    assert_eq!(
        timeline_update(&timeline),
        doc! { "$set": {
            "assignments": [{ "driver_id": "drv-9", "start": bdate("2026-12-04T00:00:00Z"), "end": Bson::Null }],
            "driver_id": "drv-9",
        }, "$inc": { "writes": 1 } }
    );
    let mut redriven = booking();
    redriven.driver_id = "drv-9".into();
    redriven.version = 2;
    assert_eq!(
        redrive_update(&redriven),
        doc! { "$set": { "driver_id": "drv-9",
        "update_time": instant(redriven.update_time), "version": 2_i64 } }
    );
}

#[test]
fn blocks_and_the_facts_of_fleet_commands() {
    use crate::domain::admin::{BookingOwner, BookingQuery, Unique};
    let t = at("2026-12-01T09:30:00Z");
    let block = VehicleBlock {
        id: "b-1".into(),
        vehicle_id: "veh-1".into(),
        start_date: day("2026-12-10"),
        end_date: day("2026-12-12"),
        reason: "Servicing".into(),
        create_time: t,
        update_time: t,
        version: 1,
    };
    let stored = block_document(&block);
    assert_eq!(
        stored,
        doc! { "_id": "b-1", "vehicle_id": "veh-1",
        "start_date": bdate("2026-12-10T00:00:00Z"), "end_date": bdate("2026-12-12T00:00:00Z"),
        "reason": "Servicing", "create_time": bdate("2026-12-01T09:30:00Z"),
        "update_time": bdate("2026-12-01T09:30:00Z"), "version": 1_i64 }
    );
    assert_eq!(block_from(&stored).unwrap(), block);
    assert_eq!(
        block_on("veh-1", day("2026-12-11")),
        doc! { "vehicle_id": "veh-1", "end_date": { "$gte": bdate("2026-12-11T00:00:00Z") },
        "start_date": { "$lte": bdate("2026-12-11T00:00:00Z") } }
    );
    assert_eq!(
        unique_holder(&Unique::VehicleRegistration("KD19 XRT".into())),
        ("vehicles", doc! { "registration": "KD19 XRT" })
    );
    assert_eq!(
        unique_holder(&Unique::EmployeeEmail("a@x.org".into())),
        ("employees", doc! { "email": "a@x.org" })
    );
    assert_eq!(
        bookings_filter(&BookingQuery {
            owner: BookingOwner::Driver("drv-1".into()),
            from: day("2026-12-04"),
            to: Some(day("2026-12-09")),
        }),
        doc! { "driver_id": "drv-1", "allocation_date": {
        "$gte": bdate("2026-12-04T00:00:00Z"), "$lte": bdate("2026-12-09T00:00:00Z") } }
    );
    assert_eq!(bookings_sort(), doc! { "allocation_date": 1, "_id": 1 });
    assert_eq!(count_from(&doc! { "n": 7 }).unwrap(), 7);
}

#[test]
fn idempotency_keys_carry_their_request_digest_and_age() {
    let key = IdempotencyKey {
        request_id: "req-1".into(),
        fingerprint: u64::MAX - 1,
    };
    assert_eq!(
        idempotency_document(&key, "01a2-b", at("2026-11-26T09:30:00Z")),
        doc! { "_id": "req-1", "allocation_id": "01a2-b", "fingerprint": -2_i64,
        "created_at": bdate("2026-11-26T09:30:00Z") }
    );
    assert_eq!(
        live_idempotency_key("req-1", at("2026-11-27T12:00:00Z")),
        doc! { "_id": "req-1", "created_at": { "$gte": bdate("2026-11-26T12:00:00Z") } }
    );
}

#[test]
fn guarded_writes_filter_on_the_version_and_set_only_what_an_update_changes() {
    assert_eq!(
        version_guard("01a2-b", 3),
        doc! { "_id": "01a2-b", "version": 3_i64 }
    );
    let mut after = booking();
    after.version = 4;
    assert_eq!(
        allocation_update(&after),
        doc! { "$set": {
            "vehicle_id": "veh-0002",
            "driver_id": "drv-0002",
            "allocation_date": bdate("2026-12-03T00:00:00Z"),
            "purpose": "Client visit",
            "update_time": bdate("2026-11-27T10:00:00.456Z"),
            "version": 4_i64,
        } }
    );
}

#[test]
fn history_filters_bind_only_what_is_set() {
    assert_eq!(history_filter(&HistoryFilter::default(), None), doc! {});
    let filter = HistoryFilter {
        employee_id: Some("emp-1".into()),
        vehicle_id: Some("veh-2".into()),
        driver_id: Some("drv-2".into()),
        start_date: Some(day("2026-11-01")),
        end_date: Some(day("2026-11-30")),
    };
    assert_eq!(
        history_filter(&filter, None),
        doc! {
            "employee_id": "emp-1",
            "vehicle_id": "veh-2",
            "driver_id": "drv-2",
            "allocation_date": {
                "$gte": bdate("2026-11-01T00:00:00Z"),
                "$lte": bdate("2026-11-30T00:00:00Z"),
            },
        }
    );
}

#[test]
fn a_history_cursor_narrows_the_date_range_and_breaks_ties_by_id() {
    let cursor = HistoryCursor {
        date: day("2026-11-20"),
        id: "m".into(),
    };
    let filter = HistoryFilter {
        vehicle_id: Some("veh-2".into()),
        end_date: Some(day("2026-11-30")),
        ..Default::default()
    };
    assert_eq!(
        history_filter(&filter, Some(&cursor)),
        doc! {
            "vehicle_id": "veh-2",
            "allocation_date": { "$lte": bdate("2026-11-20T00:00:00Z") },
            "$or": [
                { "allocation_date": { "$lt": bdate("2026-11-20T00:00:00Z") } },
                { "allocation_date": bdate("2026-11-20T00:00:00Z"), "_id": { "$lt": "m" } },
            ],
        }
    );
    // An end date before the cursor stays the bound.
    let earlier = HistoryFilter {
        end_date: Some(day("2026-11-10")),
        ..Default::default()
    };
    let query = history_filter(&earlier, Some(&cursor));
    assert_eq!(
        query.get_document("allocation_date").unwrap(),
        &doc! { "$lte": bdate("2026-11-10T00:00:00Z") }
    );
    assert_eq!(history_sort(), doc! { "allocation_date": -1, "_id": -1 });
}

#[test]
fn lists_in_id_order_continue_after_an_id() {
    assert_eq!(after_id(None), doc! {});
    assert_eq!(
        after_id(Some("veh-0010")),
        doc! { "_id": { "$gt": "veh-0010" } }
    );
    assert_eq!(
        employees_filter(Some("Sales"), false, Some("emp-00007")),
        doc! { "_id": { "$gt": "emp-00007" }, "department": "Sales", "active": { "$ne": false } }
    );
    assert_eq!(employees_filter(None, true, None), doc! {});
    assert_eq!(
        drivers_filter(false, None),
        doc! { "active": { "$ne": false } }
    );
    assert_eq!(
        vehicles_filter(false, Some("veh-1")),
        doc! { "_id": { "$gt": "veh-1" }, "retired": { "$ne": true } }
    );
    assert_eq!(blocks_filter("veh-1", None), doc! { "vehicle_id": "veh-1" });
    assert_eq!(id_sort(), doc! { "_id": 1 });
}

#[test]
fn vehicle_pipelines_join_the_driver_of_the_day_and_keep_bookable_vehicles() {
    let on = bdate("2026-12-03T00:00:00Z");
    let period = doc! { "$first": { "$filter": {
        "input": { "$ifNull": [
            "$assignments",
            [{ "driver_id": "$driver_id", "start": bdate("1970-01-01T00:00:00Z"), "end": Bson::Null }],
        ] },
        "as": "p",
        "cond": { "$and": [
            { "$lte": ["$$p.start", on] },
            { "$or": [{ "$eq": ["$$p.end", Bson::Null] }, { "$gt": ["$$p.end", on] }] },
        ] },
    } } };
    let join = [
        doc! { "$addFields": { "on_duty": period.clone() } },
        doc! { "$lookup": { "from": "drivers", "localField": "on_duty.driver_id", "foreignField": "_id", "as": "driver" } },
        doc! { "$project": { "assignments": 0, "on_duty": 0, "writes": 0 } },
    ];
    let mut expected = vec![
        doc! { "$match": { "_id": "veh-0001" } },
        doc! { "$sort": { "_id": 1 } },
        doc! { "$limit": 1_i64 },
    ];
    expected.extend(join.clone());
    assert_eq!(
        vehicles_pipeline(by_id("veh-0001"), day("2026-12-03"), 1),
        expected
    );

    let bookable = vec![
        doc! { "$match": { "retired": { "$ne": true } } },
        doc! { "$lookup": {
            "from": "allocations",
            "localField": "_id",
            "foreignField": "vehicle_id",
            "pipeline": [
                { "$match": { "allocation_date": on } },
                { "$limit": 1 },
                { "$project": { "_id": 1 } },
            ],
            "as": "booked",
        } },
        doc! { "$lookup": {
            "from": "vehicle_blocks",
            "localField": "_id",
            "foreignField": "vehicle_id",
            "pipeline": [
                { "$match": { "end_date": { "$gte": on }, "start_date": { "$lte": on } } },
                { "$limit": 1 },
                { "$project": { "_id": 1 } },
            ],
            "as": "blocked",
        } },
        doc! { "$match": { "booked": { "$size": 0 }, "blocked": { "$size": 0 } } },
        doc! { "$addFields": { "on_duty": period } },
        doc! { "$match": { "on_duty": { "$exists": true, "$ne": Bson::Null } } },
        doc! { "$project": { "booked": 0, "blocked": 0 } },
    ];
    let mut expected = vec![
        doc! { "$match": { "_id": { "$gt": "veh-0010" } } },
        doc! { "$sort": { "_id": 1 } },
    ];
    expected.extend(bookable.clone());
    expected.push(doc! { "$limit": 51_i64 });
    expected.extend(join);
    assert_eq!(
        available_vehicles_pipeline(day("2026-12-03"), Some("veh-0010"), 51),
        expected
    );
    let mut count = bookable;
    count.push(doc! { "$count": "n" });
    assert_eq!(available_count_pipeline(day("2026-12-03")), count);
}

#[test]
fn the_slot_holder_is_the_other_booking_under_the_rule_broken() {
    use crate::domain::booking::SlotRule;
    let wanted = booking();
    assert_eq!(
        slot_holder(SlotRule::Vehicle, &wanted),
        doc! { "vehicle_id": "veh-0002", "allocation_date": bdate("2026-12-03T00:00:00Z"),
        "_id": { "$ne": "01a2-b" } }
    );
    assert_eq!(
        slot_holder(SlotRule::Employee, &wanted),
        doc! { "employee_id": "emp-00001", "allocation_date": bdate("2026-12-03T00:00:00Z"),
        "_id": { "$ne": "01a2-b" } }
    );
}

#[test]
fn indexes_are_the_booking_rules_one_per_history_filter_and_a_ttl() {
    let described: Vec<(String, String, Document, bool, Option<u64>)> = indexes()
        .into_iter()
        .flat_map(|(collection, models)| {
            models.into_iter().map(move |model| {
                let options = model.options.unwrap_or_default();
                (
                    collection.to_owned(),
                    options.name.unwrap_or_default(),
                    model.keys,
                    options.unique.unwrap_or(false),
                    options.expire_after.map(|d| d.as_secs()),
                )
            })
        })
        .collect();
    let expected = vec![
        (
            "allocations",
            "vehicle_date_unique",
            doc! { "vehicle_id": 1, "allocation_date": 1 },
            true,
            None,
        ),
        (
            "allocations",
            "employee_date_unique",
            doc! { "employee_id": 1, "allocation_date": 1 },
            true,
            None,
        ),
        (
            "allocations",
            "driver_date_unique",
            doc! { "driver_id": 1, "allocation_date": 1 },
            true,
            None,
        ),
        (
            "allocations",
            "history_by_employee",
            doc! { "employee_id": 1, "allocation_date": -1, "_id": -1 },
            false,
            None,
        ),
        (
            "allocations",
            "history_by_vehicle",
            doc! { "vehicle_id": 1, "allocation_date": -1, "_id": -1 },
            false,
            None,
        ),
        (
            "allocations",
            "history_by_driver",
            doc! { "driver_id": 1, "allocation_date": -1, "_id": -1 },
            false,
            None,
        ),
        (
            "allocations",
            "history_by_date",
            doc! { "allocation_date": -1, "_id": -1 },
            false,
            None,
        ),
        ("employees", "email_unique", doc! { "email": 1 }, true, None),
        (
            "employees",
            "by_department",
            doc! { "department": 1, "_id": 1 },
            false,
            None,
        ),
        (
            "employees",
            "by_active",
            doc! { "active": 1, "_id": 1 },
            false,
            None,
        ),
        (
            "drivers",
            "license_number_unique",
            doc! { "license_number": 1 },
            true,
            None,
        ),
        (
            "drivers",
            "by_active",
            doc! { "active": 1, "_id": 1 },
            false,
            None,
        ),
        (
            "vehicles",
            "registration_unique",
            doc! { "registration": 1 },
            true,
            None,
        ),
        (
            "vehicles",
            "by_assigned_driver",
            doc! { "assignments.driver_id": 1 },
            false,
            None,
        ),
        (
            "vehicles",
            "by_driver",
            doc! { "driver_id": 1 },
            false,
            None,
        ),
        (
            "vehicle_blocks",
            "by_vehicle",
            doc! { "vehicle_id": 1, "end_date": 1 },
            false,
            None,
        ),
        (
            "events",
            "by_resource",
            doc! { "resource": 1, "_id": 1 },
            false,
            None,
        ),
        (
            "events",
            "by_employee",
            doc! { "employee_id": 1, "_id": 1 },
            false,
            None,
        ),
        (
            "events",
            "by_vehicle",
            doc! { "vehicle_ids": 1, "_id": 1 },
            false,
            None,
        ),
        ("events", "by_time", doc! { "time": 1 }, false, None),
        (
            "idempotency_keys",
            "expire_after_window",
            doc! { "created_at": 1 },
            false,
            Some(86_400),
        ),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(c, n, k, u, t)| (c.to_owned(), n.to_owned(), k, u, t))
        .collect();
    assert_eq!(described, expected);
}

#[test]
fn every_history_filter_has_an_index_that_serves_it_and_its_sort() {
    let history: Vec<Document> = indexes()
        .into_iter()
        .filter(|(c, _)| *c == ALLOCATIONS)
        .flat_map(|(_, models)| models.into_iter().map(|m| m.keys))
        .collect();
    let sort = history_sort();
    for field in ["employee_id", "vehicle_id", "driver_id"] {
        let mut keys = doc! { field: 1 };
        keys.extend(sort.clone());
        assert!(
            history.contains(&keys),
            "no index {keys} for the {field} filter"
        );
    }
    assert!(history.contains(&sort), "the date range filter");
    let _ = Bson::Null;
}

#[test]
fn stored_keys_and_vehicles_are_read_strictly() {
    let key = doc! { "_id": "req-1", "allocation_id": "01a2-b", "fingerprint": -2_i64 };
    assert_eq!(
        idempotency_from(&key).unwrap(),
        ("01a2-b".to_owned(), u64::MAX - 1)
    );
    assert!(idempotency_from(&doc! { "_id": "req-1", "fingerprint": 1_i64 }).is_err());
    assert!(timeline_from(&doc! { "_id": "veh-1" }).is_err());
    assert_eq!(id_of(ALLOCATIONS, &doc! { "_id": "a" }).unwrap(), "a");
}

#[test]
fn the_page_token_key_is_set_on_insert_only_and_read_back() {
    let update = page_key_upsert(&[7; 32]);
    assert_eq!(
        update,
        doc! { "$setOnInsert": { "value": bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![7; 32],
        } } }
    );
    let stored = doc! { "_id": PAGE_TOKEN_KEY, "value": bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: vec![7; 32],
    } };
    assert_eq!(page_key_from(&stored).unwrap(), vec![7; 32]);
    assert!(page_key_from(&doc! { "_id": PAGE_TOKEN_KEY, "value": "x" }).is_err());
}
