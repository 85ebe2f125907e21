//! Reading an import file into rows of text values by column name: CSV
//! with a header row, or JSON Lines, told apart by the file's extension.

use std::collections::BTreeMap;
use std::path::Path;

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

/// The rows of `text`, and the problems of its form (header, syntax).
pub fn rows(kind: Kind, file: &str, format: Format, text: &str) -> (Vec<Row>, Vec<Problem>) {
    // Spreadsheets often start a UTF-8 file with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Csv => csv_rows(kind, file, text),
        Format::JsonLines => json_rows(kind, file, text),
    }
}

fn csv_rows(kind: Kind, file: &str, text: &str) -> (Vec<Row>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(header) => header.iter().map(str::to_owned).collect(),
        Err(error) => {
            problems.push(Problem::new(file, 1, "", reason::MALFORMED_ROW, error));
            return (Vec::new(), problems);
        }
    };
    problems.extend(header_problems(kind, file, &header));
    if problems.iter().any(|p| p.reason == reason::MISSING_COLUMN) {
        // Every row would repeat it.
        return (Vec::new(), problems);
    }
    let lines = Lines::of(text);
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let from = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = lines.at(record.position().map_or(from, csv::Position::byte));
                if record.len() != header.len() {
                    problems.push(Problem::new(
                        file,
                        line,
                        "",
                        reason::MALFORMED_ROW,
                        format!(
                            "the row has {} values but the header names {} columns",
                            record.len(),
                            header.len()
                        ),
                    ));
                    continue;
                }
                // Spreadsheets leave rows of empty cells (`,,,`) at the end.
                if record.iter().all(str::is_empty) {
                    continue;
                }
                let values = header
                    .iter()
                    .zip(record.iter())
                    .filter(|(column, _)| kind.knows(column))
                    .map(|(column, value)| (column.clone(), value.to_owned()))
                    .collect();
                rows.push(Row { line, values });
            }
            Err(error) => {
                let line = lines.at(error.position().map_or(from, csv::Position::byte));
                problems.push(Problem::new(file, line, "", reason::MALFORMED_ROW, error));
                // The reader can't go on past broken text (invalid UTF-8).
                break;
            }
        }
    }
    (rows, problems)
}

/// Line numbers of byte offsets. The CSV reader's own line count is off
/// after blank lines and with CRLF line ends, so lines are counted here.
struct Lines<'a> {
    text: &'a [u8],
    /// The offset of every `\n`.
    ends: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn of(text: &'a str) -> Self {
        let text = text.as_bytes();
        let ends = text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(at, _)| at)
            .collect();
        Self { text, ends }
    }

    /// The line of the first character at or after `byte` that is not a
    /// line end: a record's position lies before the blank lines ahead of it.
    fn at(&self, byte: u64) -> usize {
        let mut at = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        while at < self.text.len() && matches!(self.text[at], b'\r' | b'\n') {
            at += 1;
        }
        1 + self.ends.partition_point(|end| *end < at)
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

fn json_rows(kind: Kind, file: &str, text: &str) -> (Vec<Row>, Vec<Problem>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (at, text) in text.lines().enumerate() {
        let line = at + 1;
        if text.trim().is_empty() {
            continue;
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
                continue;
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
        if good {
            rows.push(Row { line, values });
        }
    }
    (rows, problems)
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
