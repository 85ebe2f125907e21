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
pub mod remote;
pub mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::domain::admin::{DriverInput, EmployeeInput, VehicleInput};
use crate::domain::error::{Echo, Resource, Violation, ViolationReason, Violations};
use crate::domain::{BookingWindow, DomainError, FleetCommand, FleetOutcome, FleetRequest, Origin};
use crate::progress::DelayedProgress;
use crate::storage::{FleetPass, Store, StoreError};

pub use read::Format;
use read::{Fingerprint, Item, Rows};
pub use session::{Refusal, RowOutcome, RowVerdict, Session, Sessions, StoreSessions};

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
    pub reason: String,
    pub message: String,
}

impl Problem {
    fn new(file: &str, line: usize, column: &str, reason: &str, message: impl ToString) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column: column.to_owned(),
            reason: reason.to_owned(),
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

/// How much of an import is held at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rows read, checked and sent to the store at a time.
    pub chunk: usize,
    /// Problems, and rows of a dry run's plan, reported in full; the ones
    /// after them are counted.
    pub shown: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            chunk: 1000,
            shown: 10_000,
        }
    }
}

/// What an import did, or would do on a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Row by row, in import order: the first [`Limits::shown`].
    pub rows: Vec<RowChange>,
    /// The rows after those.
    pub rows_not_shown: usize,
    /// The kinds of file imported.
    pub kinds: Vec<Kind>,
    /// Whether anything was written (not on a dry run, nor when every row
    /// was unchanged).
    pub written: bool,
    /// Created, updated and unchanged rows by kind.
    counts: Vec<(Kind, [usize; 3])>,
}

impl ImportReport {
    /// Created, updated and unchanged rows of `kind`.
    pub fn counts(&self, kind: Kind) -> (usize, usize, usize) {
        let [c, u, n] = self
            .counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or([0; 3], |(_, counts)| *counts);
        (c, u, n)
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
        if self.rows_not_shown > 0 {
            text += &format!("… and {} more row(s)\n", self.rows_not_shown);
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

/// The problems of refused files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// In file and line order: the first [`Limits::shown`].
    pub problems: Vec<Problem>,
    /// How many there are in all.
    pub total: usize,
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

    #[error("{} problem(s) in the files; nothing was written", .0.total)]
    Rejected(Rejection),

    /// The check passed but the store changed before the write.
    #[error("the stored data changed during the import: {0}; nothing was written, run it again")]
    Raced(Refusal),

    /// The file read for the write was not the one checked.
    #[error("{path} changed during the import; nothing was written, run it again")]
    Changed { path: String },

    #[error(transparent)]
    Store(StoreError),

    /// A running service's answer to an import sent to it.
    #[error("{0}")]
    Server(String),
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
    import_with(store, files, now, window, dry_run, Limits::default()).await
}

/// [`import`], holding what `limits` allow.
///
/// The files are read twice, a chunk of rows at a time, instead of held:
/// once to check every row (the store deciding each in one transaction it
/// rolls back at the end), and, when all are good, again to write them in
/// one transaction. Between the reads a file must not change: each read's
/// fingerprint must match, or nothing is written.
pub async fn import_with(
    store: &dyn Store,
    files: &ImportFiles,
    now: DateTime<Utc>,
    window: BookingWindow,
    dry_run: bool,
    limits: Limits,
) -> Result<ImportReport, ImportError> {
    import_through(&StoreSessions(store), files, now, window, dry_run, limits).await
}

/// [`import_with`], its rows decided by the sessions of `sessions`: a
/// store's here, or a running service's.
pub async fn import_through(
    sessions: &dyn Sessions,
    files: &ImportFiles,
    now: DateTime<Utc>,
    window: BookingWindow,
    dry_run: bool,
    limits: Limits,
) -> Result<ImportReport, ImportError> {
    let sources = files.sources();
    if sources.is_empty() {
        return Err(ImportError::NoFiles);
    }
    let mut formats = Vec::new();
    for (_, path) in &sources {
        let path_text = path.display().to_string();
        formats.push(Format::of(path).ok_or(ImportError::Format { path: path_text })?);
    }
    let limits = Limits {
        chunk: limits.chunk.max(1),
        ..limits
    };
    let total_bytes = sources
        .iter()
        .map(|(_, path)| std::fs::metadata(path).map_or(0, |m| m.len()))
        .sum();
    let mut pass = Pass::new(now, window, limits);
    let kinds: Vec<Kind> = sources.iter().map(|(kind, _)| *kind).collect();

    let bar = DelayedProgress::bytes("checking rows", total_bytes);
    let mut session = sessions.open(FleetPass::Check).await?;
    let mut fingerprints = Vec::new();
    let mut checker = Checker::default();
    for (at, ((kind, path), format)) in sources.iter().zip(&formats).enumerate() {
        let fingerprint = checker
            .check_path(&mut pass, session.as_mut(), at, *kind, path, *format, &bar)
            .await?;
        fingerprints.push(fingerprint);
    }
    session.finish().await?;
    bar.finish();
    drop(checker);

    if pass.found.total > 0 {
        let named: Vec<(Kind, String, Format)> = sources
            .iter()
            .zip(&formats)
            .map(|((kind, path), format)| (*kind, path.display().to_string(), *format))
            .collect();
        let reopen = |at: usize| -> Option<Box<dyn std::io::Read>> {
            let file = std::fs::File::open(sources[at].1).ok()?;
            Some(Box::new(file))
        };
        let problems = resolve_holders(&named, &reopen, pass.found.shown);
        return Err(ImportError::Rejected(Rejection {
            problems,
            total: pass.found.total,
        }));
    }
    if dry_run || !pass.tally.anything {
        return Ok(pass.tally.report(kinds, false));
    }

    let bar = DelayedProgress::bytes("writing rows in one transaction", total_bytes);
    let mut pass = Pass::new(now, window, limits);
    let mut session = sessions.open(FleetPass::Apply).await?;
    for (((kind, path), format), checked) in sources.iter().zip(&formats).zip(fingerprints) {
        let file = path.display().to_string();
        let mut rows = Rows::new(*kind, &file, *format, open(path)?);
        let mut chunk = Chunk::default();
        let base = bar.position();
        while let Some(item) = rows.next() {
            let Item::Row(row) = item else {
                return Err(ImportError::Changed { path: file });
            };
            let mut violations = Violations::new();
            let Some(command) = command_of(*kind, &row, now, &mut violations) else {
                return Err(ImportError::Changed { path: file });
            };
            chunk.push(&pass, row.line, row.get("id"), command);
            if chunk.rows >= limits.chunk {
                pass.apply(session.as_mut(), *kind, &file, &mut chunk)
                    .await?;
                bar.set(base + rows.bytes_read());
            }
        }
        pass.apply(session.as_mut(), *kind, &file, &mut chunk)
            .await?;
        if rows.fingerprint().is_none() || rows.fingerprint() != checked {
            return Err(ImportError::Changed { path: file });
        }
    }
    let committed = session.finish().await;
    bar.finish();
    committed?;
    Ok(pass.tally.report(kinds, true))
}

fn open(path: &Path) -> Result<std::fs::File, ImportError> {
    std::fs::File::open(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// What one pass over the files gathers: the problems and what the rows
/// do, in bounded memory.
struct Pass {
    now: DateTime<Utc>,
    window: BookingWindow,
    origin: Origin,
    limits: Limits,
    found: Found,
    tally: Tally,
}

impl Pass {
    fn new(now: DateTime<Utc>, window: BookingWindow, limits: Limits) -> Self {
        Self {
            now,
            window,
            origin: Origin::system("import"),
            limits,
            found: Found::new(limits.shown),
            tally: Tally::new(limits.shown),
        }
    }

    fn request(&self, command: FleetCommand) -> FleetRequest {
        FleetRequest {
            command,
            now: self.now,
            window: self.window,
            origin: self.origin.clone(),
        }
    }

    /// Writes a chunk's rows in the apply session.
    async fn apply(
        &mut self,
        session: &mut dyn Session,
        kind: Kind,
        file: &str,
        chunk: &mut Chunk,
    ) -> Result<(), ImportError> {
        let requests = std::mem::take(&mut chunk.requests);
        chunk.rows = 0;
        if requests.is_empty() {
            return Ok(());
        }
        let verdicts = session.run(requests).await?;
        for ((line, id), verdict) in chunk.entries.drain(..).zip(verdicts) {
            let outcome = verdict.map_err(ImportError::Raced)?;
            self.tally.add(kind, file, line, id, &outcome);
        }
        Ok(())
    }
}

/// The rows read since the last chunk was sent: the good ones' commands,
/// and the problems of all.
#[derive(Default)]
struct Chunk {
    /// Rows read, good or not.
    rows: usize,
    /// The line and id of each request's row.
    entries: Vec<(usize, String)>,
    requests: Vec<FleetRequest>,
    problems: Vec<Finding>,
}

impl Chunk {
    fn push(&mut self, pass: &Pass, line: usize, id: &str, command: FleetCommand) {
        self.rows += 1;
        self.entries.push((line, id.to_owned()));
        self.requests.push(pass.request(command));
    }
}

/// A problem, or one whose message names a row not held any more (the
/// first of two rows with one value): that row's id is read again when
/// the problem is reported.
#[derive(Debug)]
enum Finding {
    Ready(Problem),
    Duplicate {
        /// The file's place among the sources.
        source: usize,
        kind: Kind,
        file: String,
        line: usize,
        column: &'static str,
        value: String,
        first_line: usize,
    },
}

impl Finding {
    fn line(&self) -> usize {
        match self {
            Self::Ready(problem) => problem.line,
            Self::Duplicate { line, .. } => *line,
        }
    }
}

/// The problems found: the first `shown` in full, and how many in all.
struct Found {
    shown: Vec<Finding>,
    limit: usize,
    total: usize,
}

impl Found {
    fn new(limit: usize) -> Self {
        Self {
            shown: Vec::new(),
            limit,
            total: 0,
        }
    }

    fn push(&mut self, finding: Finding) {
        self.total += 1;
        if self.shown.len() < self.limit {
            self.shown.push(finding);
        }
    }
}

/// What the rows do: counts by kind, the first `shown` rows in full.
struct Tally {
    counts: Vec<(Kind, [usize; 3])>,
    rows: Vec<RowChange>,
    limit: usize,
    not_shown: usize,
    anything: bool,
}

impl Tally {
    fn new(limit: usize) -> Self {
        Self {
            counts: Vec::new(),
            rows: Vec::new(),
            limit,
            not_shown: 0,
            anything: false,
        }
    }

    fn add(&mut self, kind: Kind, file: &str, line: usize, id: String, outcome: &RowOutcome) {
        let change = outcome.change.clone();
        self.anything |= outcome.changed;
        let at = match self.counts.iter().position(|(k, _)| *k == kind) {
            Some(at) => at,
            None => {
                self.counts.push((kind, [0; 3]));
                self.counts.len() - 1
            }
        };
        let slot = match change {
            Change::Create => 0,
            Change::Update(_) => 1,
            Change::Unchanged => 2,
        };
        self.counts[at].1[slot] += 1;
        if self.rows.len() < self.limit {
            self.rows.push(RowChange {
                kind,
                id,
                file: file.to_owned(),
                line,
                change,
                bookings_redriven: outcome.redriven,
            });
        } else {
            self.not_shown += 1;
        }
    }

    fn report(self, kinds: Vec<Kind>, written: bool) -> ImportReport {
        ImportReport {
            rows: self.rows,
            rows_not_shown: self.not_shown,
            kinds,
            written,
            counts: self.counts,
        }
    }
}

/// A 96-bit digest of a value: the checks across rows keep these instead
/// of the values (16 bytes a row and column with its line). Two of a
/// million values share one with odds of about 10⁻¹⁷.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest([u32; 3]);

impl std::hash::Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Already random: its first half is its hash.
        state.write_u64(u64::from(self.0[0]) | (u64::from(self.0[1]) << 32));
    }
}

/// Passes a [`Digest`]'s hash through.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Lines by the digests of values.
type Lines = HashMap<Digest, u32, std::hash::BuildHasherDefault<PassThrough>>;

fn line_u32(line: usize) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

/// The first pass's state across files.
#[derive(Default)]
struct Checker {
    keys: (RandomState, RandomState),
    /// The drivers file's rows with problems of form, by id.
    bad_drivers: Lines,
    /// Those and the drivers the store refused: their vehicles are not told
    /// "not found".
    refused_drivers: Lines,
}

impl Checker {
    fn digest(&self, value: &str) -> Digest {
        let a = self.keys.0.hash_one(value);
        let b = self.keys.1.hash_one(value);
        Digest([a as u32, (a >> 32) as u32, b as u32])
    }

    /// Checks one file: its bytes, then its rows a chunk at a time.
    #[allow(clippy::too_many_arguments)]
    async fn check_path(
        &mut self,
        pass: &mut Pass,
        session: &mut dyn Session,
        source: usize,
        kind: Kind,
        path: &Path,
        format: Format,
        bar: &DelayedProgress,
    ) -> Result<Option<Fingerprint>, ImportError> {
        let file = path.display().to_string();
        let bad_byte = read::first_bad_utf8(open(path)?).map_err(|source| ImportError::Read {
            path: file.clone(),
            source,
        })?;
        if let Some(line) = bad_byte {
            pass.found.push(Finding::Ready(Problem::new(
                &file,
                line,
                "",
                reason::MALFORMED_ROW,
                "the file is not UTF-8 text (its first bad byte is on this line); save it as UTF-8",
            )));
            return Ok(None);
        }
        let base = bar.position();
        let progress = |read: u64| bar.set(base + read);
        self.check_source(
            pass,
            session,
            source,
            kind,
            &file,
            format,
            open(path)?,
            &progress,
        )
        .await
    }

    /// Checks the rows of `reader`, sending each chunk of good ones to
    /// `session`; holds one chunk at a time.
    #[allow(clippy::too_many_arguments)]
    async fn check_source(
        &mut self,
        pass: &mut Pass,
        session: &mut dyn Session,
        source: usize,
        kind: Kind,
        file: &str,
        format: Format,
        reader: impl std::io::Read,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Option<Fingerprint>, ImportError> {
        let mut rows = Rows::new(kind, file, format, reader);
        // Per unique column: the line of the first row holding each value.
        let mut seen: Vec<(&'static str, Lines)> = kind
            .unique()
            .iter()
            .map(|c| (*c, Lines::default()))
            .collect();
        let mut bad_ids = Lines::default();
        let mut chunk = Chunk::default();
        // The line of the reader's last problem: its row is not good.
        let mut bad_line = 0;
        while let Some(item) = rows.next() {
            match item {
                Item::Problem(problem) => {
                    bad_line = problem.line;
                    chunk.problems.push(Finding::Ready(problem));
                }
                Item::Row(row) => {
                    let bad = self.check_row(
                        pass, &mut chunk, &mut seen, source, kind, file, &row, bad_line,
                    );
                    if bad {
                        bad_ids.insert(self.digest(row.get("id")), line_u32(row.line));
                    }
                }
            }
            if chunk.rows >= pass.limits.chunk || chunk.problems.len() >= pass.limits.chunk {
                self.check_chunk(pass, session, kind, file, &mut chunk)
                    .await?;
                progress(rows.bytes_read());
            }
        }
        self.check_chunk(pass, session, kind, file, &mut chunk)
            .await?;
        progress(rows.bytes_read());
        if kind == Kind::Drivers {
            for (id, line) in &bad_ids {
                self.refused_drivers.entry(*id).or_insert(*line);
            }
            self.bad_drivers = bad_ids;
        }
        Ok(rows.fingerprint())
    }

    /// Checks one row's form and its values against the rows before it;
    /// `true` when it has problems.
    #[allow(clippy::too_many_arguments)]
    fn check_row(
        &self,
        pass: &Pass,
        chunk: &mut Chunk,
        seen: &mut [(&'static str, Lines)],
        source: usize,
        kind: Kind,
        file: &str,
        row: &read::Row,
        bad_line: usize,
    ) -> bool {
        let mut violations = Violations::new();
        let command = command_of(kind, row, pass.now, &mut violations);
        let before = chunk.problems.len();
        chunk.problems.extend(
            violations
                .into_vec()
                .into_iter()
                .map(|v| Finding::Ready(Problem::violation(file, row.line, v))),
        );
        for (column, lines) in seen.iter_mut() {
            let value = row.get(column);
            if value.is_empty() {
                continue;
            }
            let digest = self.digest(value);
            let Some(first_line) = lines.get(&digest) else {
                lines.insert(digest, line_u32(row.line));
                continue;
            };
            let first_line = *first_line as usize;
            chunk.problems.push(if *column == "id" {
                Finding::Ready(duplicate(
                    kind, file, row.line, column, value, first_line, "",
                ))
            } else {
                Finding::Duplicate {
                    source,
                    kind,
                    file: file.to_owned(),
                    line: row.line,
                    column,
                    value: value.to_owned(),
                    first_line,
                }
            });
        }
        if kind == Kind::Vehicles
            && let Some(line) = self.bad_drivers.get(&self.digest(row.get("driver_id")))
        {
            chunk.problems.push(Finding::Ready(driver_row_invalid(
                file,
                row.line,
                row.get("driver_id"),
                *line as usize,
            )));
        }
        let bad = bad_line == row.line || chunk.problems.len() > before;
        match command {
            Some(command) if !bad => {
                chunk.push(pass, row.line, row.get("id"), command);
                false
            }
            _ => {
                chunk.rows += 1;
                true
            }
        }
    }

    /// Has the store decide a chunk's good rows, then reports the chunk's
    /// problems in line order.
    async fn check_chunk(
        &mut self,
        pass: &mut Pass,
        session: &mut dyn Session,
        kind: Kind,
        file: &str,
        chunk: &mut Chunk,
    ) -> Result<(), ImportError> {
        let requests = std::mem::take(&mut chunk.requests);
        if !requests.is_empty() {
            let verdicts = session.run(requests).await?;
            for ((line, id), verdict) in chunk.entries.drain(..).zip(verdicts) {
                let refusal = match verdict {
                    Ok(outcome) => {
                        pass.tally.add(kind, file, line, id, &outcome);
                        continue;
                    }
                    Err(refusal) => refusal,
                };
                if kind == Kind::Drivers {
                    self.refused_drivers
                        .insert(self.digest(&id), line_u32(line));
                }
                let problem = match &refusal.missing_driver {
                    Some(id) if self.refused_drivers.contains_key(&self.digest(id)) => {
                        let driver_line = self.refused_drivers[&self.digest(id)] as usize;
                        driver_row_invalid(file, line, id, driver_line)
                    }
                    _ => Problem::new(
                        file,
                        line,
                        &refusal.column,
                        &refusal.reason,
                        &refusal.message,
                    ),
                };
                chunk.problems.push(Finding::Ready(problem));
            }
        }
        chunk.entries.clear();
        chunk.rows = 0;
        // A line's problems as found; the store's come after the form's.
        chunk.problems.sort_by_key(Finding::line);
        for finding in chunk.problems.drain(..) {
            pass.found.push(finding);
        }
        Ok(())
    }
}

/// Renders the problems, reading again the ids of the rows a duplicate's
/// message names.
fn resolve_holders(
    sources: &[(Kind, String, Format)],
    reopen: &dyn Fn(usize) -> Option<Box<dyn std::io::Read>>,
    found: Vec<Finding>,
) -> Vec<Problem> {
    let mut wanted: Vec<std::collections::BTreeMap<usize, String>> =
        vec![Default::default(); sources.len()];
    for finding in &found {
        if let Finding::Duplicate {
            source, first_line, ..
        } = finding
        {
            wanted[*source].insert(*first_line, String::new());
        }
    }
    for (at, lines) in wanted.iter_mut().enumerate() {
        if lines.is_empty() {
            continue;
        }
        let (kind, file, format) = &sources[at];
        let Some(reader) = reopen(at) else {
            continue;
        };
        for item in Rows::new(*kind, file, *format, reader) {
            if let Item::Row(row) = item
                && let Some(id) = lines.get_mut(&row.line)
            {
                row.get("id").clone_into(id);
            }
        }
    }
    found
        .into_iter()
        .map(|finding| match finding {
            Finding::Ready(problem) => problem,
            Finding::Duplicate {
                source,
                kind,
                file,
                line,
                column,
                value,
                first_line,
            } => {
                let holder = wanted[source].get(&first_line).map_or("", String::as_str);
                duplicate(kind, &file, line, column, &value, first_line, holder)
            }
        })
        .collect()
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
