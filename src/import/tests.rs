use crate::storage::prelude::*;
use std::path::{Path, PathBuf};

use chrono::TimeZone;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::domain::{BookingPolicy, FleetEntity, PageRequest};
use crate::storage::sqlite::SqliteStore;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn window() -> BookingWindow {
    BookingPolicy {
        time_zone: chrono_tz::UTC,
        max_days_ahead: 30,
    }
    .window(now())
}

/// A store holding one employee and one driver who drives one vehicle.
async fn store(dir: &Path) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    let files = files(
        dir,
        &[
            (
                "held-drivers.csv",
                "id,name,license_number\nd-held,Held Driver,L-HELD\n",
            ),
            (
                "held-vehicles.csv",
                "id,registration,seats,driver_id\nv-held,HELD 1,4,d-held\n",
            ),
            (
                "held-employees.csv",
                "id,name,email\ne-held,Held Employee,held@example.com\n",
            ),
        ],
    );
    import(&store, &files, now(), window(), false)
        .await
        .unwrap();
    store
}

/// Writes each (name, text) into `dir`; the files by kind, from the name.
fn files(dir: &Path, contents: &[(&str, &str)]) -> ImportFiles {
    let mut files = ImportFiles::default();
    for (name, text) in contents {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let slot = if name.contains("employees") {
            &mut files.employees
        } else if name.contains("drivers") {
            &mut files.drivers
        } else {
            &mut files.vehicles
        };
        *slot = Some(path);
    }
    files
}

fn path_of(files: &ImportFiles, kind: Kind) -> String {
    let path: &PathBuf = match kind {
        Kind::Drivers => files.drivers.as_ref(),
        Kind::Vehicles => files.vehicles.as_ref(),
        Kind::Employees => files.employees.as_ref(),
    }
    .unwrap();
    path.display().to_string()
}

/// A chunk's commands, with the bytes read when it was sent.
type Sent = (Vec<FleetCommand>, u64);

/// A session that answers every command as creating its entity, and
/// records the size of each chunk with the bytes `read` had counted when
/// it came.
struct Recorder {
    chunks: Arc<Mutex<Vec<Sent>>>,
    read: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Session for Recorder {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> Result<Vec<RowVerdict>, ImportError> {
        let commands: Vec<FleetCommand> = chunk.into_iter().map(|r| r.command).collect();
        let verdicts = commands
            .iter()
            .map(|c| Ok(RowOutcome::of(&created(c))))
            .collect();
        let read = self.read.load(Ordering::SeqCst);
        self.chunks.lock().unwrap().push((commands, read));
        Ok(verdicts)
    }

    async fn finish(self: Box<Self>) -> Result<(), ImportError> {
        Ok(())
    }
}

fn created(command: &FleetCommand) -> FleetOutcome {
    let entity = match command {
        FleetCommand::PutEmployee { employee, .. } => FleetEntity::Employee(employee.clone()),
        FleetCommand::PutDriver { driver, .. } => FleetEntity::Driver(driver.clone()),
        FleetCommand::PutVehicle { vehicle, .. } => FleetEntity::Vehicle(vehicle.clone()),
        other => panic!("an import sends no {other:?}"),
    };
    FleetOutcome {
        entity,
        changed: true,
        cancelled: Vec::new(),
        redriven: Vec::new(),
        vehicles_touched: Vec::new(),
        dates_touched: Vec::new(),
        before: None,
        timelines_changed: Vec::new(),
        erased: false,
    }
}

/// A reader that counts the bytes read from it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

/// What the first pass makes of one file's `text`, its rows answered as
/// created: the good rows' lines and commands, and the problems.
struct Checked {
    entries: Vec<(usize, FleetCommand)>,
    problems: Vec<Problem>,
    chunks: Vec<Sent>,
}

fn check_text(kind: Kind, file: &str, format: Format, text: &str, limits: Limits) -> Checked {
    let chunks = Arc::new(Mutex::new(Vec::new()));
    let read = Arc::new(AtomicU64::new(0));
    let mut session = Recorder {
        chunks: Arc::clone(&chunks),
        read: Arc::clone(&read),
    };
    let mut pass = Pass::new(now(), window(), limits);
    let source = Counting {
        inner: text.as_bytes(),
        read,
    };
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(Checker::default().check_source(
            &mut pass,
            &mut session,
            0,
            kind,
            file,
            format,
            source,
            &|_| {},
        ))
        .unwrap();
    let chunks = std::mem::take(&mut *chunks.lock().unwrap());
    let commands = chunks.iter().flat_map(|(c, _)| c.iter().cloned());
    let entries = pass
        .tally
        .rows
        .iter()
        .map(|r| r.line)
        .zip(commands)
        .collect();
    let sources = [(kind, file.to_owned(), format)];
    let reopen = |_| -> Option<Box<dyn std::io::Read>> {
        Some(Box::new(std::io::Cursor::new(text.as_bytes().to_vec())))
    };
    Checked {
        entries,
        problems: resolve_holders(&sources, &reopen, pass.found.shown),
        chunks,
    }
}

fn check_file(kind: Kind, file: &str, format: Format, text: &str, _now: DateTime<Utc>) -> Checked {
    check_text(kind, file, format, text, Limits::default())
}

/// Every id of each kind in the store, deactivated and retired ones too.
async fn everything(store: &dyn Store) -> (Vec<String>, Vec<String>, Vec<String>) {
    let page = || PageRequest {
        size: 1000,
        after: None,
    };
    let drivers = store.list_drivers(true, page()).await.unwrap();
    let vehicles = store
        .list_vehicles(true, window().today, page())
        .await
        .unwrap();
    let employees = store.list_employees(None, true, page()).await.unwrap();
    (
        drivers.items.into_iter().map(|d| d.id).collect(),
        vehicles.items.into_iter().map(|v| v.id).collect(),
        employees.items.into_iter().map(|e| e.id).collect(),
    )
}

#[tokio::test]
async fn every_bad_row_is_reported_with_file_line_column_and_reason_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let before = everything(&store).await;
    let files = files(
        dir.path(),
        &[
            (
                "drivers.csv",
                "id,name,phone,license_number\n\
                 d1,Dana Driver,+44 20 7946 0000,L-1\n\
                 d2,,12ab,L-2\n\
                 d3,Dee Driver,,L-1\n\
                 d4,Dot Driver,,L-HELD\n",
            ),
            (
                "vehicles.csv",
                "id,registration,make,model,seats,driver_id\n\
                 v1,AB12 CDE,Ford,Transit,8,d1\n\
                 v2,AB12 CDE,Ford,Focus,four,d9\n\
                 v3,XY99 ZZZ,,,4,d2\n\
                 v4,KL11 MNO,,,4,d-missing\n\
                 v5,HELD 1,,,4,\n\
                 v6,PQ22 RST,,,4,d1\n\
                 v7,UV33 WXY,,,4,d-held\n\
                 v8,ZZ11 AAA,,,4,d4\n\
                 ,,,,,\n",
            ),
            (
                "employees.jsonl",
                r#"{"id":"e1","name":"Ann","email":"ann@example.com","department":"Sales"}
{"id":"e2","name":"Bob","email":"bob@","department":"Sales"}
{"id":"e1","name":"Ann Again","email":"ann2@example.com"}
{"id":"e3","name":"Cy","email":"cy@example.com","dept":"x"}
not json

{"id":"e4","name":"Di","email":"held@example.com","department":["a"]}
{"id":"e5","name":"Ed","email":"held@example.com"}
{"id":"bad id","name":"Flo","email":"flo@example.com"}
{"id":"e6","name":"Gus","email":"gus@example.com","email":"gus@example.org"}
"#,
            ),
        ],
    );
    let drivers = path_of(&files, Kind::Drivers);
    let vehicles = path_of(&files, Kind::Vehicles);
    let employees = path_of(&files, Kind::Employees);

    let Err(ImportError::Rejected(Rejection { problems, total })) =
        import(&store, &files, now(), window(), false).await
    else {
        panic!("the import should be refused");
    };
    assert_eq!(total, problems.len());
    let report: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        [
            format!("{drivers}:3: name: FIELD_REQUIRED: name is required"),
            format!(
                "{drivers}:3: phone: INVALID_VALUE: phone \"12ab\" is not a phone number (digits, spaces, + ( ) - .)"
            ),
            format!(
                "{drivers}:4: license_number: LICENSE_NUMBER_TAKEN: license_number \"L-1\" is also on line 2 (driver \"d1\")"
            ),
            format!(
                "{drivers}:5: license_number: LICENSE_NUMBER_TAKEN: driver license_number \"L-HELD\" is already taken by driver \"d-held\""
            ),
            format!("{vehicles}:3: seats: INVALID_VALUE: seats \"four\" is not a whole number"),
            format!(
                "{vehicles}:3: registration: REGISTRATION_TAKEN: registration \"AB12 CDE\" is also on line 2 (vehicle \"v1\")"
            ),
            format!(
                "{vehicles}:4: driver_id: DRIVER_ROW_INVALID: driver \"d2\" is on line 3 of the drivers file, which has problems"
            ),
            format!(
                "{vehicles}:5: driver_id: DRIVER_NOT_FOUND: driver \"d-missing\" does not exist"
            ),
            format!("{vehicles}:6: driver_id: FIELD_REQUIRED: driver_id is required"),
            format!(
                "{vehicles}:7: driver_id: DRIVER_ALREADY_ASSIGNED: driver \"d1\" also drives vehicle \"v1\" on line 2; a driver drives one vehicle"
            ),
            format!(
                "{vehicles}:8: driver_id: DRIVER_ALREADY_ASSIGNED: driver \"d-held\" is already assigned to vehicle \"v-held\" on dates from 2026-03-02 on; assign that vehicle another driver first"
            ),
            format!(
                "{vehicles}:9: driver_id: DRIVER_ROW_INVALID: driver \"d4\" is on line 5 of the drivers file, which has problems"
            ),
            format!("{employees}:2: email: INVALID_VALUE: email \"bob@\" is not an e-mail address"),
            format!(
                "{employees}:3: id: DUPLICATE_ID: id \"e1\" is also on line 1; each id may appear once per file"
            ),
            format!(
                "{employees}:4: dept: UNKNOWN_COLUMN: \"dept\" is not a column of employees files; they have id, name, email (optional: department)"
            ),
            format!(
                "{employees}:5: MALFORMED_ROW: the line is not valid JSON: expected ident at line 1 column 2"
            ),
            format!(
                "{employees}:7: department: MALFORMED_ROW: department must be a string or a number"
            ),
            format!(
                "{employees}:8: email: EMAIL_TAKEN: employee email \"held@example.com\" is already taken by employee \"e-held\""
            ),
            format!(
                "{employees}:9: id: INVALID_VALUE: id \"bad id\" is not a valid id: use letters, digits, '-', '_' and '.'"
            ),
            format!("{employees}:10: email: MALFORMED_ROW: the line names \"email\" twice"),
        ]
    );
    assert_eq!(everything(&store).await, before, "nothing is written");

    // A dry run reports the same.
    let dry = import(&store, &files, now(), window(), true).await;
    assert!(
        matches!(&dry, Err(ImportError::Rejected(p)) if p.problems == problems),
        "{dry:?}"
    );
}

#[test]
fn a_header_without_a_required_column_is_reported_once_not_per_row() {
    let checked = check_file(
        Kind::Employees,
        "e.csv",
        Format::Csv,
        "id,name,emial\ne1,Ann,ann@example.com\ne2,Bob,bob@example.com\n",
        now(),
    );
    let report: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        [
            "e.csv:1: email: MISSING_COLUMN: the header has no \"email\" column; employees files need id, name, email (optional: department)",
            "e.csv:1: emial: UNKNOWN_COLUMN: \"emial\" is not a column of employees files; they have id, name, email (optional: department)",
        ]
    );
    assert!(checked.entries.is_empty());
}

#[test]
fn csv_rows_may_quote_commas_and_start_with_a_byte_order_mark_and_are_trimmed() {
    let checked = check_file(
        Kind::Vehicles,
        "v.csv",
        Format::Csv,
        "\u{feff}id,registration,make,model,seats,driver_id\r\n\
         v1, AB12 CDE ,\"Ford, Inc.\",Transit,8,d1\r\n\
         \r\n\
         v3,EF56 GHI,\"Multi\r\nline\",X,2,d3\r\n\
         v2,CD34 EFG,Ford\r\n",
        now(),
    );
    let report: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        ["v.csv:6: MALFORMED_ROW: the row has 3 values but the header names 6 columns"]
    );
    let [entry, multi] = &checked.entries[..] else {
        panic!("two good rows: {:?}", checked.entries.len());
    };
    assert_eq!(multi.0, 4, "a row starts on the line of its first value");
    let FleetCommand::PutVehicle {
        vehicle, driver_id, ..
    } = &entry.1
    else {
        panic!("a vehicle");
    };
    assert_eq!(
        (
            vehicle.registration.as_str(),
            vehicle.make.as_str(),
            driver_id.as_str()
        ),
        ("AB12 CDE", "Ford, Inc.", "d1")
    );
    assert_eq!(entry.0, 2);
}

const DRIVERS: &str = "id,name,phone,license_number\n\
                       d1,Dana Driver,+44 20 7946 0000,L-1\n\
                       d2,Dave Driver,,L-2\n";
const VEHICLES: &str = "id,registration,make,model,seats,driver_id\n\
                        v1,AB12 CDE,Ford,Transit,8,d1\n";
const EMPLOYEES: &str = "id,name,email,department\n\
                         e1,Ann,ann@example.com,Sales\n\
                         e2,Bob,bob@example.com,\n";

#[tokio::test]
async fn a_good_file_imported_twice_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let given = files(
        dir.path(),
        &[
            ("drivers.csv", DRIVERS),
            ("vehicles.csv", VEHICLES),
            ("employees.csv", EMPLOYEES),
        ],
    );
    let first = import(&store, &given, now(), window(), false)
        .await
        .unwrap();
    assert!(first.written);
    assert_eq!(
        first.summary(false),
        "drivers: 2 created, 0 updated, 0 unchanged\n\
         vehicles: 1 created, 0 updated, 0 unchanged\n\
         employees: 2 created, 0 updated, 0 unchanged\n"
    );
    let after_first = everything(&store).await;
    let ann = store.get_employee("e1").await.unwrap();
    assert_eq!(
        (
            ann.name.as_str(),
            ann.email.as_str(),
            ann.department.as_str()
        ),
        ("Ann", "ann@example.com", "Sales")
    );
    let v1 = store.get_vehicle("v1", window().today).await.unwrap();
    assert_eq!(v1.driver.map(|d| d.id), Some("d1".to_owned()));

    let second = import(&store, &given, now(), window(), false)
        .await
        .unwrap();
    assert!(!second.written);
    assert_eq!(
        second.summary(false),
        "drivers: 0 created, 0 updated, 2 unchanged\n\
         vehicles: 0 created, 0 updated, 1 unchanged\n\
         employees: 0 created, 0 updated, 2 unchanged\n"
    );
    assert_eq!(everything(&store).await, after_first);
    assert_eq!(store.get_employee("e1").await.unwrap(), ann, "same version");
}

#[tokio::test]
async fn a_changed_row_updates_its_entity_and_a_dry_run_says_so_writing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let given = files(
        dir.path(),
        &[("drivers.csv", DRIVERS), ("vehicles.csv", VEHICLES)],
    );
    import(&store, &given, now(), window(), false)
        .await
        .unwrap();
    let changed = files(
        dir.path(),
        &[
            (
                "drivers.csv",
                "id,name,phone,license_number\n\
                 d1,Dana Driver,+44 20 0000 0000,L-1\n\
                 d2,Dave Driver,,L-2\n\
                 d3,Dee Driver,,L-3\n",
            ),
            (
                "vehicles.csv",
                "id,registration,make,model,seats,driver_id\n\
                 v1,AB12 CDE,Ford,Transit,9,d2\n",
            ),
        ],
    );
    let drivers = path_of(&changed, Kind::Drivers);
    let vehicles = path_of(&changed, Kind::Vehicles);

    let dry = import(&store, &changed, now(), window(), true)
        .await
        .unwrap();
    assert!(!dry.written);
    assert_eq!(
        dry.plan(),
        format!(
            "update driver \"d1\" ({drivers}:2): phone\n\
             unchanged driver \"d2\" ({drivers}:3)\n\
             create driver \"d3\" ({drivers}:4)\n\
             update vehicle \"v1\" ({vehicles}:2): seats, driver_id\n"
        )
    );
    assert_eq!(
        dry.summary(true),
        "drivers: 1 to create, 1 to update, 1 unchanged\n\
         vehicles: 0 to create, 1 to update, 0 unchanged\n"
    );
    assert_eq!(
        store.get_driver("d1").await.unwrap().phone,
        "+44 20 7946 0000"
    );
    assert!(
        store.get_driver("d3").await.is_err(),
        "a dry run writes nothing"
    );

    let done = import(&store, &changed, now(), window(), false)
        .await
        .unwrap();
    assert!(done.written);
    assert_eq!(done.rows, dry.rows, "the write does what the dry run said");
    let d1 = store.get_driver("d1").await.unwrap();
    assert_eq!((d1.phone.as_str(), d1.version), ("+44 20 0000 0000", 2));
    let v1 = store.get_vehicle("v1", window().today).await.unwrap();
    assert_eq!(
        (v1.seats, v1.driver.map(|d| d.id)),
        (9, Some("d2".to_owned()))
    );
}

#[tokio::test]
async fn files_of_unknown_type_or_missing_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let xlsx = ImportFiles {
        employees: Some(dir.path().join("staff.xlsx")),
        ..ImportFiles::default()
    };
    let error = import(&store, &xlsx, now(), window(), false)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("staff.xlsx: can't tell its format"),
        "{error}"
    );
    let missing = ImportFiles {
        drivers: Some(dir.path().join("gone.csv")),
        ..ImportFiles::default()
    };
    let error = import(&store, &missing, now(), window(), false)
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with("cannot read ") && error.to_string().contains("gone.csv"),
        "{error}"
    );
    let latin1 = dir.path().join("latin1.csv");
    std::fs::write(
        &latin1,
        b"id,name,email\ne1,Ann,ann@example.com\ne2,Zo\xeb,zoe@example.com\n",
    )
    .unwrap();
    let not_utf8 = ImportFiles {
        employees: Some(latin1.clone()),
        ..ImportFiles::default()
    };
    let Err(ImportError::Rejected(Rejection { problems, .. })) =
        import(&store, &not_utf8, now(), window(), false).await
    else {
        panic!("a file that is not UTF-8 is refused");
    };
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!(
            "{}:3: MALFORMED_ROW: the file is not UTF-8 text (its first bad byte is on this line); save it as UTF-8",
            latin1.display()
        )]
    );
    let error = import(&store, &ImportFiles::default(), now(), window(), false)
        .await
        .unwrap_err();
    assert!(matches!(error, ImportError::NoFiles));
}

#[test]
fn a_json_line_that_is_not_an_object_is_reported_as_such() {
    let checked = check_file(
        Kind::Employees,
        "e.jsonl",
        Format::JsonLines,
        "[1, 2]\n5\n{\"id\": \"e1\", \"name\": \"Ann\", \"email\": \"ann@example.com\"}\n{\"id\": \n",
        now(),
    );
    let report: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        [
            "e.jsonl:1: MALFORMED_ROW: the line is not a JSON object",
            "e.jsonl:2: MALFORMED_ROW: the line is not a JSON object",
            "e.jsonl:4: MALFORMED_ROW: the line is not valid JSON: EOF while parsing a value at line 1 column 7",
        ]
    );
    assert_eq!(checked.entries.len(), 1);
}

#[test]
fn rows_reach_the_store_a_chunk_at_a_time_while_the_file_is_still_being_read() {
    let mut text = String::from("id,name,email\n");
    for n in 0..5000 {
        text += &format!("e{n:05},Employee {n:05},employee{n:05}@example.com\n");
    }
    let row = text.lines().nth(1).unwrap().len() as u64 + 1;
    let limits = Limits {
        chunk: 400,
        shown: 10,
    };
    let checked = check_text(Kind::Employees, "e.csv", Format::Csv, &text, limits);
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    let sizes: Vec<usize> = checked.chunks.iter().map(|(c, _)| c.len()).collect();
    assert_eq!(sizes, [[400; 12].as_slice(), &[200]].concat());
    // What was read when a chunk went: its rows, and no more than the
    // readers' buffers ahead (64 KiB, the CSV reader's 8 KiB): far from
    // the whole file until the end.
    let mut sent = 0;
    for (commands, read) in &checked.chunks {
        sent += commands.len() as u64;
        assert!(
            *read <= sent * row + 80 * 1024,
            "{read} bytes read with {sent} rows sent"
        );
    }
    assert!(checked.chunks[0].1 < text.len() as u64 / 2);
}

#[tokio::test]
async fn the_problems_and_a_dry_runs_plan_are_capped_and_the_rest_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let limits = Limits { chunk: 7, shown: 5 };
    let mut bad = String::from("id,name,email\n");
    for n in 0..30 {
        bad += &format!("e{n},Employee,not-an-address-{n}\n");
    }
    let given = files(dir.path(), &[("employees.csv", &bad)]);
    let Err(ImportError::Rejected(rejection)) =
        import_with(&store, &given, now(), window(), true, limits).await
    else {
        panic!("the import should be refused");
    };
    assert_eq!(rejection.total, 30);
    let lines: Vec<usize> = rejection.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6], "the first ones in full");

    let mut good = String::from("id,name,email\n");
    for n in 0..12 {
        good += &format!("e{n},Employee,e{n}@example.com\n");
    }
    let given = files(dir.path(), &[("employees.csv", &good)]);
    let dry = import_with(&store, &given, now(), window(), true, limits)
        .await
        .unwrap();
    assert_eq!((dry.rows.len(), dry.rows_not_shown), (5, 7));
    assert!(
        dry.plan().ends_with(
            "(employees.csv:6)\n… and 7 more row(s)\n"
                .replace("employees.csv", &path_of(&given, Kind::Employees))
                .as_str()
        ),
        "{}",
        dry.plan()
    );
    assert_eq!(
        dry.summary(true),
        "employees: 12 to create, 0 to update, 0 unchanged\n"
    );
    let done = import_with(&store, &given, now(), window(), false, limits)
        .await
        .unwrap();
    assert_eq!(done.counts(Kind::Employees), (12, 0, 0));
    assert_eq!(everything(&store).await.2.len(), 12);
}

#[test]
fn a_reread_file_is_told_apart_from_a_changed_one_and_long_rows_are_refused() {
    let fingerprint = |text: &str| {
        let mut rows = Rows::new(Kind::Employees, "e.csv", Format::Csv, text.as_bytes());
        rows.by_ref().for_each(drop);
        rows.fingerprint().unwrap()
    };
    let text = "id,name,email\ne1,Ann,ann@example.com\n";
    assert_eq!(fingerprint(text), fingerprint(text));
    assert_ne!(
        fingerprint(text),
        fingerprint(&text.replace("Ann,", "Anne,"))
    );

    // (The CSV reader's cap is felt a buffer's length late.)
    let long = "x".repeat(read::MAX_ROW_BYTES as usize + 100_000);
    let csv = format!("id,name,email\ne1,{long},a@example.com\ne2,Bob,b@example.com\n");
    let checked = check_text(
        Kind::Employees,
        "e.csv",
        Format::Csv,
        &csv,
        Limits::default(),
    );
    let report: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        [format!(
            "e.csv:2: MALFORMED_ROW: a row is longer than {} bytes",
            read::MAX_ROW_BYTES
        )]
    );
    let json = format!(
        "{{\"id\":\"e1\",\"name\":\"{long}\",\"email\":\"a@example.com\"}}\n{{\"id\":\"e2\",\"name\":\"Bob\",\"email\":\"b@example.com\"}}\n"
    );
    let checked = check_text(
        Kind::Employees,
        "e.jsonl",
        Format::JsonLines,
        &json,
        Limits::default(),
    );
    let report: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        [format!(
            "e.jsonl:1: MALFORMED_ROW: the line is longer than {} bytes",
            read::MAX_ROW_BYTES
        )]
    );
    assert_eq!(checked.entries.len(), 1, "the next line is read");
}
