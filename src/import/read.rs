//! Reading an import file, row by row, into text values by column name:
//! CSV with a header row, or JSON Lines, told apart by the file's
//! extension.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::OnceLock;

use super::{Kind, Problem, reason};
use crate::domain::error::Echo;

/// One row of a file: its line and its values by column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: usize,
    pub values: BTreeMap<String, String>,
}

impl Row {
    /// The value of `column`, empty when absent.
    pub fn get(&self, column: &str) -> &str {
        self.values.get(column).map_or("", String::as_str)
    }
}

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    /// The format named by `path`'s extension.
    pub fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::JsonLines),
            _ => None,
        }
    }
}

/// The longest row read: past it a file is refused, so that one row never
/// takes more memory than this.
pub const MAX_ROW_BYTES: u64 = 1 << 20;

/// What reading a file yields, in line order: its rows, and the problems
/// of its form (header, syntax), each before the row of its line.
#[derive(Debug)]
pub enum Item {
    Row(Row),
    Problem(Problem),
}

/// What a file held when it was read to its end: to tell that a second
/// read saw the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    bytes: u64,
    digest: u64,
}

/// The keys of every fingerprint of this process.
fn fingerprint_keys() -> &'static RandomState {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
}

/// A file's rows, read one at a time: what is held is one row and the
/// readers' buffers, whatever the file's size.
pub struct Rows<R: Read> {
    kind: Kind,
    file: String,
    queue: VecDeque<Item>,
    state: State<R>,
    fingerprint: Option<Fingerprint>,
}

enum State<R: Read> {
    Csv {
        reader: csv::Reader<Tracked<BufReader<R>>>,
        header: Vec<String>,
        record: csv::StringRecord,
    },
    Json {
        reader: BufReader<Tracked<BufReader<R>>>,
        line: usize,
        text: Vec<u8>,
    },
    Done,
}

impl<R: Read> Rows<R> {
    /// Starts reading `source`, a file of `kind` named `file` (for
    /// problems) and written in `format`.
    pub fn new(kind: Kind, file: &str, format: Format, source: R) -> Self {
        let mut source = BufReader::with_capacity(1 << 16, source);
        // Spreadsheets often start a UTF-8 file with a byte-order mark.
        if source
            .fill_buf()
            .is_ok_and(|b| b.starts_with(b"\xef\xbb\xbf"))
        {
            source.consume(3);
        }
        let mut rows = Self {
            kind,
            file: file.to_owned(),
            queue: VecDeque::new(),
            state: State::Done,
            fingerprint: None,
        };
        rows.state = match format {
            Format::Csv => rows.csv_start(Tracked::new(source, true)),
            Format::JsonLines => State::Json {
                reader: BufReader::with_capacity(1 << 16, Tracked::new(source, false)),
                line: 0,
                text: Vec::new(),
            },
        };
        rows
    }

    /// What the file held, once it has been read to its end.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint
    }

    /// The bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        match &self.state {
            State::Csv { reader, .. } => reader.get_ref().offset,
            State::Json { reader, .. } => reader.get_ref().offset,
            State::Done => self.fingerprint.map_or(0, |f| f.bytes),
        }
    }

    fn csv_start(&mut self, source: Tracked<BufReader<R>>) -> State<R> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(source);
        let header: Vec<String> = match reader.headers() {
            Ok(header) => header.iter().map(str::to_owned).collect(),
            Err(error) => {
                let problem = Problem::new(&self.file, 1, "", reason::MALFORMED_ROW, error);
                self.queue.push_back(Item::Problem(problem));
                return State::Done;
            }
        };
        let problems = header_problems(self.kind, &self.file, &header);
        let missing = problems.iter().any(|p| p.reason == reason::MISSING_COLUMN);
        self.queue.extend(problems.into_iter().map(Item::Problem));
        if missing {
            // Every row would repeat it.
            return State::Done;
        }
        State::Csv {
            reader,
            header,
            record: csv::StringRecord::new(),
        }
    }

    /// Reads on until an item is queued or the file ends; `false` at its
    /// end.
    fn read_more(&mut self) -> bool {
        match &mut self.state {
            State::Done => false,
            State::Csv { .. } => {
                self.csv_record();
                true
            }
            State::Json { .. } => {
                self.json_line();
                true
            }
        }
    }

    /// Stops reading; the fingerprint is kept when the file was read to
    /// its end.
    fn end(&mut self, at_end: bool) {
        let tracked = match std::mem::replace(&mut self.state, State::Done) {
            State::Csv { reader, .. } => reader.into_inner(),
            State::Json { reader, .. } => reader.into_inner(),
            State::Done => return,
        };
        if at_end {
            self.fingerprint = Some(Fingerprint {
                bytes: tracked.offset,
                digest: tracked.digest.finish(),
            });
        }
    }

    fn csv_record(&mut self) {
        let State::Csv {
            reader,
            header,
            record,
        } = &mut self.state
        else {
            return;
        };
        let problem = |line, message: String| {
            Item::Problem(Problem::new(
                &self.file,
                line,
                "",
                reason::MALFORMED_ROW,
                message,
            ))
        };
        let from = reader.position().byte();
        reader.get_mut().row_from(from);
        let end = match reader.read_record(record) {
            Ok(false) => Some(true),
            Ok(true) => {
                let line = reader
                    .get_mut()
                    .line_at(record.position().map_or(from, csv::Position::byte));
                if record.len() != header.len() {
                    let message = format!(
                        "the row has {} values but the header names {} columns",
                        record.len(),
                        header.len()
                    );
                    self.queue.push_back(problem(line, message));
                } else if !record.iter().all(str::is_empty) {
                    // (Spreadsheets leave rows of empty cells, `,,,`, at
                    // the end: those are skipped.)
                    let kind = self.kind;
                    let values = header
                        .iter()
                        .zip(record.iter())
                        .filter(|(column, _)| kind.knows(column))
                        .map(|(column, value)| (column.clone(), value.to_owned()))
                        .collect();
                    self.queue.push_back(Item::Row(Row { line, values }));
                }
                None
            }
            Err(error) => {
                let line = reader
                    .get_mut()
                    .line_at(error.position().map_or(from, csv::Position::byte));
                self.queue.push_back(problem(line, error.to_string()));
                // The reader can't go on past broken text.
                Some(false)
            }
        };
        if let Some(at_end) = end {
            self.end(at_end);
        }
    }

    fn json_line(&mut self) {
        let State::Json { reader, line, text } = &mut self.state else {
            return;
        };
        let problem = |line, message: String| {
            Item::Problem(Problem::new(
                &self.file,
                line,
                "",
                reason::MALFORMED_ROW,
                message,
            ))
        };
        text.clear();
        *line += 1;
        let at = *line;
        let end = match reader
            .by_ref()
            .take(MAX_ROW_BYTES + 1)
            .read_until(b'\n', text)
        {
            Ok(0) => Some(true),
            Err(error) => {
                self.queue.push_back(problem(at, error.to_string()));
                Some(false)
            }
            Ok(_) if text.len() as u64 > MAX_ROW_BYTES => {
                let message = format!("the line is longer than {MAX_ROW_BYTES} bytes");
                self.queue.push_back(problem(at, message));
                // The rest of the line is read past, not kept.
                match skip_line(reader) {
                    Ok(()) => None,
                    Err(error) => {
                        self.queue.push_back(problem(at, error.to_string()));
                        Some(false)
                    }
                }
            }
            Ok(_) => {
                if text.last() == Some(&b'\n') {
                    text.pop();
                    if text.last() == Some(&b'\r') {
                        text.pop();
                    }
                }
                match std::str::from_utf8(text) {
                    Ok(line_text) => {
                        let (row, problems) = json_row(self.kind, &self.file, at, line_text);
                        self.queue.extend(problems.into_iter().map(Item::Problem));
                        self.queue.extend(row.map(Item::Row));
                    }
                    Err(_) => self
                        .queue
                        .push_back(problem(at, "the line is not UTF-8 text".to_owned())),
                }
                None
            }
        };
        if let Some(at_end) = end {
            self.end(at_end);
        }
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            if !self.read_more() {
                return None;
            }
        }
    }
}

/// Reads past the rest of a line without keeping it.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            reader.consume(end + 1);
            return Ok(());
        }
        let all = buffer.len();
        reader.consume(all);
    }
}

/// The line of the first byte of `source` that is not UTF-8, if any; read
/// a block at a time.
pub fn first_bad_utf8(source: impl Read) -> std::io::Result<Option<usize>> {
    let mut source = BufReader::with_capacity(1 << 16, source);
    let mut carry: Vec<u8> = Vec::new();
    let mut line = 1;
    let newlines = |bytes: &[u8]| bytes.iter().filter(|b| **b == b'\n').count();
    loop {
        let block = source.fill_buf()?;
        if block.is_empty() {
            // A character cut off by the end of the file.
            return Ok((!carry.is_empty()).then_some(line));
        }
        carry.extend_from_slice(block);
        let read = block.len();
        source.consume(read);
        match std::str::from_utf8(&carry) {
            Ok(_) => {
                line += newlines(&carry);
                carry.clear();
            }
            Err(error) => {
                let valid = error.valid_up_to();
                line += newlines(&carry[..valid]);
                if error.error_len().is_some() {
                    return Ok(Some(line));
                }
                // A character the next block completes.
                carry.drain(..valid);
            }
        }
    }
}

/// A reader that counts lines, fingerprints what it reads, and (for CSV)
/// refuses rows longer than [`MAX_ROW_BYTES`]. The CSV reader's own line
/// count is off after blank lines and with CRLF line ends, so lines are
/// counted here.
struct Tracked<R> {
    inner: R,
    /// Bytes read.
    offset: u64,
    newlines: u64,
    /// Whether the last byte read ended a line (or none was read).
    after_line_end: bool,
    /// The first byte of each line read ahead that is not a line end,
    /// with the newlines before it; dropped once asked past.
    starts: VecDeque<(u64, u64)>,
    /// Where the row being read starts, with `cap`.
    row_start: u64,
    cap: bool,
    digest: std::hash::DefaultHasher,
}

impl<R: Read> Tracked<R> {
    fn new(inner: R, cap: bool) -> Self {
        Self {
            inner,
            offset: 0,
            newlines: 0,
            after_line_end: true,
            starts: VecDeque::new(),
            row_start: 0,
            cap,
            digest: fingerprint_keys().build_hasher(),
        }
    }

    /// A row starts at `byte`.
    fn row_from(&mut self, byte: u64) {
        self.row_start = byte;
    }

    /// The line of the first character at or after `byte` (where a row
    /// starts) that is not a line end: a record's position lies before the
    /// blank lines ahead of it.
    fn line_at(&mut self, byte: u64) -> usize {
        while self.starts.front().is_some_and(|(at, _)| *at < byte) {
            self.starts.pop_front();
        }
        let before = self.starts.front().map_or(self.newlines, |(_, n)| *n);
        1 + usize::try_from(before).unwrap_or(usize::MAX)
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cap && self.offset.saturating_sub(self.row_start) > MAX_ROW_BYTES {
            return Err(std::io::Error::other(format!(
                "a row is longer than {MAX_ROW_BYTES} bytes"
            )));
        }
        let read = self.inner.read(buf)?;
        for (at, byte) in buf[..read].iter().enumerate() {
            match byte {
                b'\n' => {
                    self.newlines += 1;
                    self.after_line_end = true;
                }
                b'\r' => self.after_line_end = true,
                _ => {
                    if self.after_line_end {
                        self.starts
                            .push_back((self.offset + at as u64, self.newlines));
                    }
                    self.after_line_end = false;
                }
            }
        }
        self.digest.write(&buf[..read]);
        self.offset += read as u64;
        Ok(read)
    }
}

fn header_problems(kind: Kind, file: &str, header: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for column in kind.required() {
        if !header.iter().any(|c| c == column) {
            problems.push(Problem::new(
                file,
                1,
                column,
                reason::MISSING_COLUMN,
                format!(
                    "the header has no {column:?} column; {} files need {}",
                    kind.plural(),
                    kind.describe_columns()
                ),
            ));
        }
    }
    for (at, column) in header.iter().enumerate() {
        if !kind.knows(column) {
            problems.push(unknown_column(kind, file, 1, column));
        } else if header[..at].contains(column) {
            problems.push(Problem::new(
                file,
                1,
                column,
                reason::MALFORMED_ROW,
                format!("the header names column {column:?} twice"),
            ));
        }
    }
    problems
}

fn unknown_column(kind: Kind, file: &str, line: usize, column: &str) -> Problem {
    Problem::new(
        file,
        line,
        column,
        reason::UNKNOWN_COLUMN,
        format!(
            "{:?} is not a column of {} files; they have {}",
            Echo(column),
            kind.plural(),
            kind.describe_columns()
        ),
    )
}

/// The row of one line of JSON Lines (unless it has problems that leave
/// it out), and its problems.
fn json_row(kind: Kind, file: &str, line: usize, text: &str) -> (Option<Row>, Vec<Problem>) {
    let mut problems = Vec::new();
    if text.trim().is_empty() {
        return (None, problems);
    }
    let object = match serde_json::from_str::<JsonObject>(text) {
        Ok(JsonObject(object)) => object,
        Err(error) => {
            let message = if error.classify() == serde_json::error::Category::Data {
                "the line is not a JSON object".to_owned()
            } else {
                format!("the line is not valid JSON: {error}")
            };
            problems.push(Problem::new(file, line, "", reason::MALFORMED_ROW, message));
            return (None, problems);
        }
    };
    let mut values = BTreeMap::new();
    let mut good = true;
    for (column, value) in object {
        if values.contains_key(&column) {
            problems.push(Problem::new(
                file,
                line,
                &column,
                reason::MALFORMED_ROW,
                format!("the line names {column:?} twice"),
            ));
            good = false;
            continue;
        }
        if !kind.knows(&column) {
            // The row's other values are still checked.
            problems.push(unknown_column(kind, file, line, &column));
            continue;
        }
        let text = match value {
            serde_json::Value::String(s) => s.trim().to_owned(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Null => String::new(),
            _ => {
                problems.push(Problem::new(
                    file,
                    line,
                    &column,
                    reason::MALFORMED_ROW,
                    format!("{column} must be a string or a number"),
                ));
                good = false;
                continue;
            }
        };
        values.insert(column, text);
    }
    (good.then_some(Row { line, values }), problems)
}

/// A line of JSON Lines: an object's entries in order, repeated keys kept
/// (a map would keep the last of two values silently).
struct JsonObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;

        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(JsonObject(entries))
            }
        }

        deserializer.deserialize_map(Entries)
    }
}
