//! `import`: employees, drivers and vehicles from an organisation's own
//! files.
//!
//! Every row is checked before anything is written: its form here (the
//! same checks as the API's), its place in the file (duplicates), and its
//! place among the stored data by the store itself, which decides every
//! row's command in a transaction it then rolls back. Only when every row
//! is good are all of them applied, in one transaction, as upserts by id:
//! running the same files again changes nothing.

mod read;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::admin::{DriverInput, EmployeeInput, VehicleInput};
use crate::domain::error::{Echo, Resource, Violation, ViolationReason, Violations};
use crate::domain::{BookingWindow, DomainError, FleetCommand, FleetOutcome, FleetRequest, Origin};
use crate::progress::DelayedProgress;
use crate::storage::{Store, StoreError};

pub use read::Format;

/// The reasons of problems only an import has; the others are the API's.
pub mod reason {
    /// The header lacks a required column.
    pub const MISSING_COLUMN: &str = "MISSING_COLUMN";
    /// A column (or JSON key) that the kind of file does not have.
    pub const UNKNOWN_COLUMN: &str = "UNKNOWN_COLUMN";
    /// A row that can't be read: bad CSV or JSON, the wrong number of values.
    pub const MALFORMED_ROW: &str = "MALFORMED_ROW";
    /// An id that an earlier row of the file has.
    pub const DUPLICATE_ID: &str = "DUPLICATE_ID";
    /// A vehicle whose driver's row, in the drivers file, has problems.
    pub const DRIVER_ROW_INVALID: &str = "DRIVER_ROW_INVALID";
}

/// What a file holds. Files are imported in this order, so that vehicles
/// can name the drivers of the same import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Drivers,
    Vehicles,
    Employees,
}

impl Kind {
    /// The columns every file of this kind must have.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Self::Drivers => &["id", "name", "license_number"],
            Self::Vehicles => &["id", "registration", "seats", "driver_id"],
            Self::Employees => &["id", "name", "email"],
        }
    }

    /// The columns a file may leave out (empty values then).
    pub fn optional(self) -> &'static [&'static str] {
        match self {
            Self::Drivers => &["phone"],
            Self::Vehicles => &["make", "model"],
            Self::Employees => &["department"],
        }
    }

    /// The columns whose values must differ from row to row.
    fn unique(self) -> &'static [&'static str] {
        match self {
            Self::Drivers => &["id", "license_number"],
            Self::Vehicles => &["id", "registration", "driver_id"],
            Self::Employees => &["id", "email"],
        }
    }

    fn knows(self, column: &str) -> bool {
        self.required().contains(&column) || self.optional().contains(&column)
    }

    /// `drivers`, `vehicles`, `employees`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Drivers => "drivers",
            Self::Vehicles => "vehicles",
            Self::Employees => "employees",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Drivers => "driver",
            Self::Vehicles => "vehicle",
            Self::Employees => "employee",
        }
    }

    fn describe_columns(self) -> String {
        format!(
            "{} (optional: {})",
            self.required().join(", "),
            self.optional().join(", ")
        )
    }
}

/// One thing wrong with a file: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    /// The column, when the problem is one value's.
    pub column: String,
    /// A reason of [`reason`] or of the API's catalogue.
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn new(
        file: &str,
        line: usize,
        column: &str,
        reason: &'static str,
        message: impl ToString,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column: column.to_owned(),
            reason,
            message: message.to_string(),
        }
    }

    fn violation(file: &str, line: usize, violation: Violation) -> Self {
        Self::new(
            file,
            line,
            &violation.field,
            violation.reason.as_str(),
            violation.description,
        )
    }
}

impl fmt::Display for Problem {
    /// `file:line: column: REASON: message`, like a compiler's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if !self.column.is_empty() {
            write!(f, "{}: ", self.column)?;
        }
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The files to import; any of them may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportFiles {
    pub employees: Option<PathBuf>,
    pub drivers: Option<PathBuf>,
    pub vehicles: Option<PathBuf>,
}

impl ImportFiles {
    /// The files given, in import order.
    fn sources(&self) -> Vec<(Kind, &Path)> {
        [
            (Kind::Drivers, &self.drivers),
            (Kind::Vehicles, &self.vehicles),
            (Kind::Employees, &self.employees),
        ]
        .into_iter()
        .filter_map(|(kind, path)| path.as_deref().map(|p| (kind, p)))
        .collect()
    }
}

/// What an import does to one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create,
    /// The fields that change.
    Update(Vec<&'static str>),
    Unchanged,
}

/// What an import does with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub kind: Kind,
    pub id: String,
    pub file: String,
    pub line: usize,
    pub change: Change,
    /// Bookings from today on that now carry the vehicle's new driver.
    pub bookings_redriven: usize,
}

/// What an import did, or would do on a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Row by row, in import order.
    pub rows: Vec<RowChange>,
    /// The kinds of file imported.
    pub kinds: Vec<Kind>,
    /// Whether anything was written (not on a dry run, nor when every row
    /// was unchanged).
    pub written: bool,
}

impl ImportReport {
    /// Created, updated and unchanged rows of `kind`.
    pub fn counts(&self, kind: Kind) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for row in self.rows.iter().filter(|r| r.kind == kind) {
            match row.change {
                Change::Create => counts.0 += 1,
                Change::Update(_) => counts.1 += 1,
                Change::Unchanged => counts.2 += 1,
            }
        }
        counts
    }

    /// One line per row, for a dry run: what would happen to it.
    pub fn plan(&self) -> String {
        let mut text = String::new();
        for row in &self.rows {
            let what = match &row.change {
                Change::Create => "create",
                Change::Update(_) => "update",
                Change::Unchanged => "unchanged",
            };
            text += &format!(
                "{what} {} {:?} ({}:{})",
                row.kind.noun(),
                row.id,
                row.file,
                row.line
            );
            if let Change::Update(fields) = &row.change {
                text += &format!(": {}", fields.join(", "));
            }
            if row.bookings_redriven > 0 {
                text += &format!(
                    "; {} booking(s) from today on get the new driver",
                    row.bookings_redriven
                );
            }
            text.push('\n');
        }
        text
    }

    /// One line per kind of file: `drivers: 1 created, 2 updated, 3
    /// unchanged` (`to create`, `to update` on a dry run).
    pub fn summary(&self, dry_run: bool) -> String {
        let (create, update) = if dry_run {
            ("to create", "to update")
        } else {
            ("created", "updated")
        };
        self.kinds
            .iter()
            .map(|kind| {
                let (c, u, n) = self.counts(*kind);
                format!(
                    "{}: {c} {create}, {u} {update}, {n} unchanged\n",
                    kind.plural()
                )
            })
            .collect()
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("nothing to import: name a file with --employees, --drivers or --vehicles")]
    NoFiles,

    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path}: can't tell its format from its name; name CSV files *.csv and JSON Lines files *.jsonl or *.ndjson"
    )]
    Format { path: String },

    /// Every problem found, in file and line order.
    #[error("{} problem(s) in the files; nothing was written", .0.len())]
    Rejected(Vec<Problem>),

    /// The check passed but the store changed before the write.
    #[error("the stored data changed during the import: {0}; nothing was written, run it again")]
    Raced(DomainError),

    #[error(transparent)]
    Store(StoreError),
}

/// One good row, ready to apply.
struct Entry {
    kind: Kind,
    file: String,
    line: usize,
    id: String,
    command: FleetCommand,
}

/// Imports `files` into `store`: checks every row, then (unless `dry_run`)
/// writes all of them in one transaction. `now` stamps what is written;
/// `window.today` is when a vehicle's new driver takes over.
pub async fn import(
    store: &dyn Store,
    files: &ImportFiles,
    now: DateTime<Utc>,
    window: BookingWindow,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let sources = files.sources();
    if sources.is_empty() {
        return Err(ImportError::NoFiles);
    }
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut bad_drivers = HashMap::new();
    for (kind, path) in &sources {
        let file = path.display().to_string();
        let format = Format::of(path).ok_or_else(|| ImportError::Format { path: file.clone() })?;
        let bytes = std::fs::read(path).map_err(|source| ImportError::Read {
            path: file.clone(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
                problems.push(Problem::new(
                    &file,
                    line,
                    "",
                    reason::MALFORMED_ROW,
                    "the file is not UTF-8 text (its first bad byte is on this line); save it as UTF-8",
                ));
                continue;
            }
        };
        let checked = check_file(*kind, &file, format, &text, now, &bad_drivers);
        if *kind == Kind::Drivers {
            bad_drivers = checked.bad_ids;
        }
        entries.extend(checked.entries);
        problems.extend(checked.problems);
    }

    let origin = Origin::system("import");
    let requests: Vec<FleetRequest> = entries
        .iter()
        .map(|entry| FleetRequest {
            command: entry.command.clone(),
            now,
            window,
            origin: origin.clone(),
        })
        .collect();
    let bar = DelayedProgress::new("checking rows", requests.len() as u64);
    let progress = {
        let bar = bar.clone();
        Arc::new(move |done: usize| bar.set(done as u64))
    };
    let checked = store.check_fleet(requests.clone(), progress).await;
    bar.finish();
    let checked = checked.map_err(ImportError::Store)?;
    let mut outcomes = Vec::with_capacity(checked.len());
    // Drivers the store refused: their vehicles are not told "not found".
    let mut refused_drivers = bad_drivers;
    for (entry, result) in entries.iter().zip(checked) {
        match result {
            Ok(outcome) => outcomes.push(outcome),
            Err(refusal) => {
                if let FleetCommand::PutDriver { driver, .. } = &entry.command {
                    refused_drivers.insert(driver.id.clone(), entry.line);
                }
                problems.push(match &refusal {
                    DomainError::NotFound {
                        resource: Resource::Driver,
                        id,
                    } if refused_drivers.contains_key(id) => {
                        driver_row_invalid(&entry.file, entry.line, id, refused_drivers[id])
                    }
                    _ => Problem::new(
                        &entry.file,
                        entry.line,
                        &column_of(&refusal),
                        refusal.reason(),
                        &refusal,
                    ),
                });
            }
        }
    }
    if !problems.is_empty() {
        // Files in import order, then lines; a line's problems as found.
        let order: HashMap<String, usize> = sources
            .iter()
            .enumerate()
            .map(|(at, (_, path))| (path.display().to_string(), at))
            .collect();
        problems.sort_by_key(|p| (order.get(&p.file).copied(), p.line));
        return Err(ImportError::Rejected(problems));
    }

    let kinds = sources.iter().map(|(kind, _)| *kind).collect();
    let anything = outcomes.iter().any(|o| o.changed);
    if dry_run || !anything {
        return Ok(report(&entries, &outcomes, kinds, false));
    }
    let spinner = DelayedProgress::spinner("writing in one transaction");
    let applied = store.apply_fleet(requests).await;
    spinner.finish();
    let outcomes = applied.map_err(|error| match error {
        StoreError::Rejected(refusal) => ImportError::Raced(refusal),
        other => ImportError::Store(other),
    })?;
    Ok(report(&entries, &outcomes, kinds, true))
}

/// What checking one file found.
struct CheckedFile {
    entries: Vec<Entry>,
    problems: Vec<Problem>,
    /// The ids of rows with problems, with their lines.
    bad_ids: HashMap<String, usize>,
}

/// Checks the form of every row of one file and its duplicates.
/// `bad_drivers` are the drivers file's rows with problems, which the
/// vehicles naming them can't be checked against.
fn check_file(
    kind: Kind,
    file: &str,
    format: Format,
    text: &str,
    now: DateTime<Utc>,
    bad_drivers: &HashMap<String, usize>,
) -> CheckedFile {
    let (rows, mut problems) = read::rows(kind, file, format, text);
    let mut bad_lines: HashSet<usize> = problems.iter().map(|p| p.line).collect();
    let mut entries = Vec::new();
    let mut bad_ids = HashMap::new();
    // Per unique column: value -> (line, id) of the first row holding it.
    let mut seen: HashMap<&'static str, HashMap<String, (usize, String)>> = HashMap::new();
    for row in &rows {
        let mut violations = Violations::new();
        let command = command_of(kind, row, now, &mut violations);
        let mut row_problems: Vec<Problem> = violations
            .into_vec()
            .into_iter()
            .map(|v| Problem::violation(file, row.line, v))
            .collect();
        for column in kind.unique() {
            let value = row.get(column);
            if value.is_empty() {
                continue;
            }
            let earlier = seen.entry(column).or_default();
            if let Some((line, holder)) = earlier.get(value) {
                row_problems.push(duplicate(
                    kind, file, row.line, column, value, *line, holder,
                ));
            } else {
                earlier.insert(value.to_owned(), (row.line, row.get("id").to_owned()));
            }
        }
        if kind == Kind::Vehicles
            && let Some(line) = bad_drivers.get(row.get("driver_id"))
        {
            row_problems.push(driver_row_invalid(
                file,
                row.line,
                row.get("driver_id"),
                *line,
            ));
        }
        if !row_problems.is_empty() {
            bad_lines.insert(row.line);
        }
        problems.extend(row_problems);
        match command {
            Some(command) if !bad_lines.contains(&row.line) => entries.push(Entry {
                kind,
                file: file.to_owned(),
                line: row.line,
                id: row.get("id").to_owned(),
                command,
            }),
            _ => {
                bad_ids.insert(row.get("id").to_owned(), row.line);
            }
        }
    }
    CheckedFile {
        entries,
        problems,
        bad_ids,
    }
}

/// The command a row stands for, when its form is good.
fn command_of(
    kind: Kind,
    row: &read::Row,
    now: DateTime<Utc>,
    violations: &mut Violations,
) -> Option<FleetCommand> {
    let text = |column: &str| row.get(column).to_owned();
    match kind {
        Kind::Employees => EmployeeInput {
            id: text("id"),
            name: text("name"),
            email: text("email"),
            department: text("department"),
        }
        .check("", now, violations)
        .map(|employee| FleetCommand::PutEmployee {
            employee,
            upsert: true,
        }),
        Kind::Drivers => DriverInput {
            id: text("id"),
            name: text("name"),
            phone: text("phone"),
            license_number: text("license_number"),
        }
        .check("", now, violations)
        .map(|driver| FleetCommand::PutDriver {
            driver,
            upsert: true,
        }),
        Kind::Vehicles => {
            let seats = whole_number("seats", row.get("seats"), violations);
            let input = VehicleInput {
                id: text("id"),
                registration: text("registration"),
                make: text("make"),
                model: text("model"),
                seats: seats.unwrap_or_default(),
                driver_id: text("driver_id"),
            };
            let checked = input.check("", now, violations);
            let (vehicle, driver_id) = checked.filter(|_| seats.is_some())?;
            Some(FleetCommand::PutVehicle {
                vehicle,
                driver_id,
                upsert: true,
            })
        }
    }
}

fn whole_number(column: &str, value: &str, violations: &mut Violations) -> Option<i64> {
    if value.is_empty() {
        violations.push(Violation::required(column));
        return None;
    }
    let parsed = value.parse().ok();
    if parsed.is_none() {
        violations.push(Violation::new(
            column,
            ViolationReason::InvalidValue,
            format!("{column} {:?} is not a whole number", Echo(value)),
        ));
    }
    parsed
}

fn driver_row_invalid(file: &str, line: usize, driver_id: &str, driver_line: usize) -> Problem {
    Problem::new(
        file,
        line,
        "driver_id",
        reason::DRIVER_ROW_INVALID,
        format!(
            "driver {:?} is on line {driver_line} of the drivers file, which has problems",
            Echo(driver_id)
        ),
    )
}

fn duplicate(
    kind: Kind,
    file: &str,
    line: usize,
    column: &'static str,
    value: &str,
    first_line: usize,
    holder: &str,
) -> Problem {
    let (reason, message) = match column {
        "id" => (
            reason::DUPLICATE_ID,
            format!(
                "id {:?} is also on line {first_line}; each id may appear once per file",
                Echo(value)
            ),
        ),
        "driver_id" => (
            "DRIVER_ALREADY_ASSIGNED",
            format!(
                "driver {:?} also drives vehicle {:?} on line {first_line}; a driver drives one vehicle",
                Echo(value),
                Echo(holder)
            ),
        ),
        _ => {
            let reason = match column {
                "email" => "EMAIL_TAKEN",
                "registration" => "REGISTRATION_TAKEN",
                _ => "LICENSE_NUMBER_TAKEN",
            };
            (
                reason,
                format!(
                    "{column} {:?} is also on line {first_line} ({} {:?})",
                    Echo(value),
                    kind.noun(),
                    Echo(holder)
                ),
            )
        }
    };
    Problem::new(file, line, column, reason, message)
}

/// The column a refusal is about.
fn column_of(refusal: &DomainError) -> String {
    match refusal {
        DomainError::Taken { field, .. } => (*field).to_owned(),
        DomainError::NotFound {
            resource: Resource::Driver,
            ..
        }
        | DomainError::Inactive {
            resource: Resource::Driver,
            ..
        }
        | DomainError::DriverAlreadyAssigned { .. } => "driver_id".to_owned(),
        DomainError::Invalid(violations) => violations
            .first()
            .map(|v| v.field.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn report(
    entries: &[Entry],
    outcomes: &[FleetOutcome],
    kinds: Vec<Kind>,
    written: bool,
) -> ImportReport {
    let rows = entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| RowChange {
            kind: entry.kind,
            id: entry.id.clone(),
            file: entry.file.clone(),
            line: entry.line,
            change: change_of(outcome),
            bookings_redriven: outcome.redriven.len(),
        })
        .collect();
    ImportReport {
        rows,
        kinds,
        written,
    }
}

fn change_of(outcome: &FleetOutcome) -> Change {
    match &outcome.before {
        _ if !outcome.changed => Change::Unchanged,
        None => Change::Create,
        Some(before) => {
            let mut fields = outcome.entity.changed_fields(before);
            if !outcome.timelines_changed.is_empty() {
                fields.push("driver_id");
            }
            Change::Update(fields)
        }
    }
}
