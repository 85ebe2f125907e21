//! What MongoDB errors mean for the service.

use mongodb::error::{Error, ErrorKind, WriteFailure};

use crate::storage::StoreError;

/// MongoDB's code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// Server codes that mean "not now": elections, shutdowns, overload.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Turns a driver error into a storage error: failures to reach a usable
/// server are worth retrying (UNAVAILABLE), anything else is a bug.
pub fn classify(context: &str, error: Error) -> StoreError {
    let transient = match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        _ => {
            error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
                || error.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        }
    };
    if transient {
        StoreError::unavailable(context, error)
    } else {
        StoreError::internal(context, error)
    }
}

/// The message of a duplicate-key error, if `error` is one.
pub fn duplicate_key_message(error: &Error) -> Option<&str> {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => {
            Some(&e.message)
        }
        ErrorKind::Command(e) if e.code == DUPLICATE_KEY => Some(&e.message),
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()?
            .iter()
            .find(|w| w.code == DUPLICATE_KEY)
            .map(|w| w.message.as_str()),
        _ => None,
    }
}

/// The index named in a duplicate-key message, such as
/// `E11000 duplicate key error collection: db.allocations index: vehicle_date_unique dup key: { ... }`.
pub fn index_name(message: &str) -> Option<&str> {
    let rest = &message[message.find("index: ")? + "index: ".len()..];
    let name = rest.split_whitespace().next()?;
    (!name.is_empty()).then_some(name)
}

/// Which document of an `insert_many` broke a unique index.
pub fn duplicate_key_position(error: &Error) -> Option<usize> {
    match error.kind.as_ref() {
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()?
            .iter()
            .find(|w| w.code == DUPLICATE_KEY)
            .map(|w| w.index),
        _ => None,
    }
}

/// Refusals and decoding failures travel through the transaction as the
/// driver's custom errors, which abort it.
pub(super) fn malformed(m: super::documents::Malformed) -> Error {
    Error::custom(StoreError::internal("decoding a MongoDB document", m))
}

/// A document read in the transaction was not there to write.
pub(super) fn gone(context: &str) -> Error {
    Error::custom(StoreError::internal(
        context.to_owned(),
        std::io::Error::other("the document changed inside the transaction"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_read_from_a_duplicate_key_message() {
        let message = "E11000 duplicate key error collection: vehicle_allocation.allocations \
                       index: vehicle_date_unique dup key: { vehicle_id: \"veh-0001\", \
                       allocation_date: new Date(1796256000000) }";
        assert_eq!(index_name(message), Some("vehicle_date_unique"));
        assert_eq!(
            index_name(
                "E11000 duplicate key error collection: db.idempotency_keys index: _id_ dup key: { _id: \"r\" }"
            ),
            Some("_id_")
        );
        assert_eq!(index_name("something else entirely"), None);
    }

    #[test]
    fn unreachable_servers_are_unavailable_and_the_rest_internal() {
        let io = Error::from(ErrorKind::Io(std::sync::Arc::new(std::io::Error::other(
            "reset",
        ))));
        assert!(matches!(classify("x", io), StoreError::Unavailable { .. }));
        let closing = Error::from(ErrorKind::Shutdown);
        assert!(matches!(
            classify("x", closing),
            StoreError::Unavailable { .. }
        ));
        let bug = Error::custom("unexpected");
        assert!(matches!(classify("x", bug), StoreError::Internal { .. }));
    }
}
