//! The documents of fleet administration: employees, drivers and vehicles
//! with their state and versions, a vehicle's driver timeline (embedded in
//! the vehicle, so that it changes atomically with it), and out-of-service
//! blocks.
//!
//! Documents written before fleet administration lack the new fields; they
//! read as active, version 1, created at the epoch, and a vehicle without a
//! timeline is driven by its `driver_id` since ever.

use chrono::{DateTime, NaiveDate, Utc};
use mongodb::bson::{Bson, Document, doc};

use super::{
    ALLOCATIONS, DRIVERS, EMPLOYEES, Malformed, VEHICLES, after_id, date, id_sort, instant,
    read_date, read_int, read_str,
};
use crate::domain::admin::{BookingOwner, BookingQuery, Unique};
use crate::domain::fleet::timeline_start;
use crate::domain::{Assignment, Driver, Employee, Vehicle, VehicleBlock};

pub const VEHICLE_BLOCKS: &str = "vehicle_blocks";

fn read_bool_or(doc: &Document, key: &str, default: bool) -> bool {
    doc.get_bool(key).unwrap_or(default)
}

fn read_version(collection: &'static str, doc: &Document) -> Result<u64, Malformed> {
    match doc.get("version") {
        None => Ok(1),
        Some(_) => u64::try_from(read_int(collection, doc, "version")?)
            .map_err(|e| Malformed::new(collection, e)),
    }
}

fn read_instant_or_epoch(
    collection: &'static str,
    doc: &Document,
    key: &str,
) -> Result<DateTime<Utc>, Malformed> {
    match doc.get(key) {
        None => Ok(DateTime::UNIX_EPOCH),
        Some(Bson::DateTime(at)) => DateTime::from_timestamp_millis(at.timestamp_millis())
            .ok_or_else(|| Malformed::new(collection, format!("{key} out of range"))),
        Some(other) => Err(Malformed::new(
            collection,
            format!("{key}: expected a date, got {other:?}"),
        )),
    }
}

/// An employee as stored.
pub fn employee_document(e: &Employee) -> Document {
    doc! {
        "_id": &e.id,
        "name": &e.name,
        "email": &e.email,
        "department": &e.department,
        "active": e.active,
        "create_time": instant(e.create_time),
        "update_time": instant(e.update_time),
        "version": e.version as i64,
    }
}

/// An employee from its stored document.
pub fn employee_from(doc: &Document) -> Result<Employee, Malformed> {
    const C: &str = EMPLOYEES;
    Ok(Employee {
        id: read_str(C, doc, "_id")?,
        name: read_str(C, doc, "name")?,
        email: read_str(C, doc, "email")?,
        department: read_str(C, doc, "department")?,
        active: read_bool_or(doc, "active", true),
        create_time: read_instant_or_epoch(C, doc, "create_time")?,
        update_time: read_instant_or_epoch(C, doc, "update_time")?,
        version: read_version(C, doc)?,
    })
}

/// A driver as stored.
pub fn driver_document(d: &Driver) -> Document {
    doc! {
        "_id": &d.id,
        "name": &d.name,
        "phone": &d.phone,
        "license_number": &d.license_number,
        "active": d.active,
        "create_time": instant(d.create_time),
        "update_time": instant(d.update_time),
        "version": d.version as i64,
    }
}

/// A driver from its stored document.
pub fn driver_from(doc: &Document) -> Result<Driver, Malformed> {
    const C: &str = DRIVERS;
    Ok(Driver {
        id: read_str(C, doc, "_id")?,
        name: read_str(C, doc, "name")?,
        phone: read_str(C, doc, "phone")?,
        license_number: read_str(C, doc, "license_number")?,
        active: read_bool_or(doc, "active", true),
        create_time: read_instant_or_epoch(C, doc, "create_time")?,
        update_time: read_instant_or_epoch(C, doc, "update_time")?,
        version: read_version(C, doc)?,
    })
}

fn assignment_document(a: &Assignment) -> Document {
    doc! {
        "driver_id": &a.driver_id,
        "start": date(a.start),
        "end": a.end.map_or(Bson::Null, |end| Bson::DateTime(date(end))),
    }
}

/// The vehicle's own fields as stored, without its timeline.
fn vehicle_fields(v: &Vehicle) -> Document {
    doc! {
        "registration": &v.registration,
        "make": &v.make,
        "model": &v.model,
        "seats": i64::from(v.seats),
        "retired": v.retired,
        "create_time": instant(v.create_time),
        "update_time": instant(v.update_time),
        "version": v.version as i64,
    }
}

/// A new vehicle as stored, with its timeline; `driver_id` is the last
/// period's driver, for readers of the older shape.
pub fn vehicle_document(v: &Vehicle, timeline: &[Assignment]) -> Document {
    let mut document = doc! { "_id": &v.id };
    document.extend(vehicle_fields(v));
    document.extend(timeline_fields(timeline));
    document
}

fn timeline_fields(timeline: &[Assignment]) -> Document {
    let mut fields = doc! {
        "assignments": timeline.iter().map(assignment_document).collect::<Vec<_>>(),
    };
    if let Some(last) = timeline.last() {
        fields.insert("driver_id", &last.driver_id);
    }
    fields
}

/// The update that sets a vehicle's own fields, and bumps its write count.
pub fn vehicle_update(v: &Vehicle) -> Document {
    doc! { "$set": vehicle_fields(v), "$inc": { "writes": 1 } }
}

/// The update that replaces a vehicle's timeline, and bumps its write count.
pub fn timeline_update(timeline: &[Assignment]) -> Document {
    doc! { "$set": timeline_fields(timeline), "$inc": { "writes": 1 } }
}

/// The update that only bumps a document's write count: inside a
/// transaction, it makes a concurrent transaction that writes the same
/// document fail and retry, so two transactions can't each decide from
/// facts the other is changing.
pub fn claim() -> Document {
    doc! { "$inc": { "writes": 1 } }
}

/// The timeline of a stored vehicle.
pub fn timeline_from(doc: &Document) -> Result<Vec<Assignment>, Malformed> {
    const C: &str = VEHICLES;
    let Ok(periods) = doc.get_array("assignments") else {
        // The older shape: one driver, since ever.
        return Ok(vec![Assignment {
            driver_id: read_str(C, doc, "driver_id")?,
            start: timeline_start(),
            end: None,
        }]);
    };
    periods
        .iter()
        .map(|p| {
            let p = p
                .as_document()
                .ok_or_else(|| Malformed::new(C, "assignments: expected documents"))?;
            let end = match p.get("end") {
                None | Some(Bson::Null) => None,
                Some(_) => Some(read_date(C, p, "end")?),
            };
            Ok(Assignment {
                driver_id: read_str(C, p, "driver_id")?,
                start: read_date(C, p, "start")?,
                end,
            })
        })
        .collect()
}

/// A vehicle's own fields from its stored document (no driver).
pub fn vehicle_row_from(doc: &Document) -> Result<Vehicle, Malformed> {
    const C: &str = VEHICLES;
    let seats = read_int(C, doc, "seats")?;
    Ok(Vehicle {
        id: read_str(C, doc, "_id")?,
        registration: read_str(C, doc, "registration")?,
        make: read_str(C, doc, "make")?,
        model: read_str(C, doc, "model")?,
        seats: u32::try_from(seats).map_err(|e| Malformed::new(C, e))?,
        retired: read_bool_or(doc, "retired", false),
        create_time: read_instant_or_epoch(C, doc, "create_time")?,
        update_time: read_instant_or_epoch(C, doc, "update_time")?,
        version: read_version(C, doc)?,
        driver: None,
    })
}

/// A vehicle from a document of [`vehicles_pipeline`]: its driver on the
/// day, if any, joined in as the array `driver`.
pub fn vehicle_from(doc: &Document) -> Result<Vehicle, Malformed> {
    let mut vehicle = vehicle_row_from(doc)?;
    vehicle.driver = match doc.get_array("driver").ok().and_then(|a| a.first()) {
        Some(Bson::Document(driver)) => Some(driver_from(driver)?),
        _ => None,
    };
    Ok(vehicle)
}

/// The stages that add the driver of `day` as `driver` (an array of zero
/// or one), dropping the timeline.
fn join_driver_on(day: NaiveDate) -> Vec<Document> {
    vec![
        doc! { "$addFields": { "on_duty": current_period(day) } },
        doc! { "$lookup": { "from": DRIVERS, "localField": "on_duty.driver_id", "foreignField": "_id", "as": "driver" } },
        doc! { "$project": { "assignments": 0, "on_duty": 0, "writes": 0 } },
    ]
}

/// The expression for the timeline period that covers `day` (missing when
/// none does); a vehicle of the older shape has one period since ever.
fn current_period(day: NaiveDate) -> Document {
    let day = date(day);
    doc! {
        "$first": {
            "$filter": {
                "input": { "$ifNull": [
                    "$assignments",
                    [{ "driver_id": "$driver_id", "start": date(timeline_start()), "end": Bson::Null }],
                ] },
                "as": "p",
                "cond": { "$and": [
                    { "$lte": ["$$p.start", day] },
                    { "$or": [{ "$eq": ["$$p.end", Bson::Null] }, { "$gt": ["$$p.end", day] }] },
                ] },
            },
        },
    }
}

/// Vehicles matching `filter`, in id order, at most `limit`, with their
/// drivers on `day`.
pub fn vehicles_pipeline(filter: Document, day: NaiveDate, limit: i64) -> Vec<Document> {
    let mut pipeline = vec![
        doc! { "$match": filter },
        doc! { "$sort": id_sort() },
        doc! { "$limit": limit },
    ];
    pipeline.extend(join_driver_on(day));
    pipeline
}

/// Vehicles (retired ones only with `show_retired`) after an id.
pub fn vehicles_filter(show_retired: bool, after: Option<&str>) -> Document {
    let mut query = after_id(after);
    if !show_retired {
        query.insert("retired", doc! { "$ne": true });
    }
    query
}

/// The stages that keep the vehicles that can be booked on `day`: not
/// retired, with a driver, not out of service, not booked. Each lookup goes
/// through an index.
fn bookable_on(day: NaiveDate) -> Vec<Document> {
    let on = date(day);
    vec![
        doc! { "$match": { "retired": { "$ne": true } } },
        doc! { "$lookup": {
            "from": ALLOCATIONS,
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
            "from": VEHICLE_BLOCKS,
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
        doc! { "$addFields": { "on_duty": current_period(day) } },
        doc! { "$match": { "on_duty": { "$exists": true, "$ne": Bson::Null } } },
        doc! { "$project": { "booked": 0, "blocked": 0 } },
    ]
}

/// Vehicles that can be booked on `day`, after an id, at most `limit`,
/// with their drivers that day.
pub fn available_vehicles_pipeline(
    day: NaiveDate,
    after: Option<&str>,
    limit: i64,
) -> Vec<Document> {
    let mut pipeline = vec![
        doc! { "$match": after_id(after) },
        doc! { "$sort": id_sort() },
    ];
    pipeline.extend(bookable_on(day));
    pipeline.push(doc! { "$limit": limit });
    pipeline.extend(join_driver_on(day));
    pipeline
}

/// How many vehicles can be booked on `day`, as one document `{ n }`.
pub fn available_count_pipeline(day: NaiveDate) -> Vec<Document> {
    let mut pipeline = bookable_on(day);
    pipeline.push(doc! { "$count": "n" });
    pipeline
}

/// The number a `$count` stage wrote.
pub fn count_from(doc: &Document) -> Result<u64, Malformed> {
    u64::try_from(read_int(VEHICLES, doc, "n")?).map_err(|e| Malformed::new(VEHICLES, e))
}

/// Employees of `department` (all when `None`; deactivated ones only with
/// `show_deactivated`), after an id.
pub fn employees_filter(
    department: Option<&str>,
    show_deactivated: bool,
    after: Option<&str>,
) -> Document {
    let mut query = after_id(after);
    if let Some(department) = department {
        query.insert("department", department);
    }
    if !show_deactivated {
        query.insert("active", doc! { "$ne": false });
    }
    query
}

/// Drivers (deactivated ones only with `show_deactivated`), after an id.
pub fn drivers_filter(show_deactivated: bool, after: Option<&str>) -> Document {
    let mut query = after_id(after);
    if !show_deactivated {
        query.insert("active", doc! { "$ne": false });
    }
    query
}

/// A block as stored.
pub fn block_document(b: &VehicleBlock) -> Document {
    doc! {
        "_id": &b.id,
        "vehicle_id": &b.vehicle_id,
        "start_date": date(b.start_date),
        "end_date": date(b.end_date),
        "reason": &b.reason,
        "create_time": instant(b.create_time),
        "update_time": instant(b.update_time),
        "version": b.version as i64,
    }
}

pub fn block_from(doc: &Document) -> Result<VehicleBlock, Malformed> {
    const C: &str = VEHICLE_BLOCKS;
    Ok(VehicleBlock {
        id: read_str(C, doc, "_id")?,
        vehicle_id: read_str(C, doc, "vehicle_id")?,
        start_date: read_date(C, doc, "start_date")?,
        end_date: read_date(C, doc, "end_date")?,
        reason: read_str(C, doc, "reason")?,
        create_time: read_instant_or_epoch(C, doc, "create_time")?,
        update_time: read_instant_or_epoch(C, doc, "update_time")?,
        version: read_version(C, doc)?,
    })
}

/// The blocks of a vehicle, after an id.
pub fn blocks_filter(vehicle_id: &str, after: Option<&str>) -> Document {
    let mut query = after_id(after);
    query.insert("vehicle_id", vehicle_id);
    query
}

/// The block covering `day` for a vehicle.
pub fn block_on(vehicle_id: &str, day: NaiveDate) -> Document {
    doc! {
        "vehicle_id": vehicle_id,
        "end_date": { "$gte": date(day) },
        "start_date": { "$lte": date(day) },
    }
}

/// The collection and filter that find the holder of a unique value.
pub fn unique_holder(unique: &Unique) -> (&'static str, Document) {
    match unique {
        Unique::EmployeeEmail(v) => (EMPLOYEES, doc! { "email": v }),
        Unique::VehicleRegistration(v) => (VEHICLES, doc! { "registration": v }),
        Unique::DriverLicence(v) => (DRIVERS, doc! { "license_number": v }),
    }
}

/// The bookings a fleet command must look at, in date order.
pub fn bookings_filter(query: &BookingQuery) -> Document {
    let (field, id) = match &query.owner {
        BookingOwner::Employee(id) => ("employee_id", id),
        BookingOwner::Vehicle(id) => ("vehicle_id", id),
        BookingOwner::Driver(id) => ("driver_id", id),
    };
    let mut range = doc! { "$gte": date(query.from) };
    if let Some(to) = query.to {
        range.insert("$lte", date(to));
    }
    doc! { field: id, "allocation_date": range }
}

/// Date order for [`bookings_filter`].
pub fn bookings_sort() -> Document {
    doc! { "allocation_date": 1, "_id": 1 }
}

/// Vehicles whose timeline names `driver_id` (or, in the older shape, whose
/// driver it is).
pub fn driver_vehicles(driver_id: &str) -> Document {
    doc! { "$or": [
        { "assignments.driver_id": driver_id },
        { "assignments": { "$exists": false }, "driver_id": driver_id },
    ] }
}

/// The update that gives a booking another driver, guarded by its version.
pub fn redrive_update(after: &crate::domain::Allocation) -> Document {
    doc! {
        "$set": {
            "driver_id": &after.driver_id,
            "update_time": instant(after.update_time),
            "version": after.version as i64,
        }
    }
}
