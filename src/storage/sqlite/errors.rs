//! SQLite's errors as storage errors.

use rusqlite::ErrorCode;

use crate::storage::{StoreError, StoreResult};

/// Turns a SQLite error into a storage error: failures of the environment
/// (busy, I/O, full disk) are worth retrying, anything else is a bug.
pub fn classify(context: &str, error: rusqlite::Error) -> StoreError {
    let transient = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::ReadOnly
        )
    );
    let error = without_sql(error);
    if transient {
        StoreError::unavailable(context, error)
    } else {
        StoreError::internal(context, error)
    }
}

/// The error without the statement SQLite refused, which its text would
/// repeat: a statement can be as long as a caller's filter made it, and
/// logs show what went wrong, not the query.
fn without_sql(error: rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqlInputError {
            error, msg, offset, ..
        } => rusqlite::Error::SqliteFailure(error, Some(format!("{msg} at offset {offset}"))),
        other => other,
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        classify("SQLite", error)
    }
}

/// Fails unless a guarded write changed exactly one row.
pub(super) fn expect_one(rows: usize, context: &str) -> StoreResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::internal(
            context.to_owned(),
            std::io::Error::other(format!("{rows} rows changed, expected 1")),
        ))
    }
}
