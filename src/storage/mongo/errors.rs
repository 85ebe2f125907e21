//! What MongoDB errors mean for the service.

use mongodb::error::{
    Error, ErrorKind, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};

use crate::storage::StoreError;

/// MongoDB's code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// What a standalone server answers to a transaction.
const ILLEGAL_OPERATION: i32 = 20;

/// Labels with which the server or the driver says "try again": they win
/// over the code, which may be one this list does not know.
const RETRY_LABELS: &[&str] = &[
    TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
    RETRYABLE_WRITE_ERROR,
];

/// Server codes that mean "not now": elections, shutdowns, overload,
/// conflicts with other transactions.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    24,    // LockTimeout
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    246,   // SnapshotUnavailable
    251,   // NoSuchTransaction
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13388, // StaleConfig
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Why transactions fail on a standalone server, said plainly.
pub(super) const NOT_A_REPLICA_SET: &str =
    "MongoDB is not a replica set member; transactions need one";

/// What a driver error means for the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// Worth retrying: UNAVAILABLE, with RetryInfo.
    Transient,
    /// The deployment cannot run transactions (a standalone server).
    NotReplicaSet,
    /// Anything else: a bug, or a state no retry mends.
    Internal,
}

/// The meaning of an error of `kind` whose labels `labelled` tells: labels
/// first, whatever the code, then the kind and code. Apart from [`Error`]
/// because only the driver can put labels on a command error.
fn meaning(kind: &ErrorKind, labelled: impl Fn(&str) -> bool) -> Meaning {
    if RETRY_LABELS.iter().any(|label| labelled(label)) {
        return Meaning::Transient;
    }
    match kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown
        | ErrorKind::Write(WriteFailure::WriteConcernError(_)) => Meaning::Transient,
        ErrorKind::Command(e) if TRANSIENT_CODES.contains(&e.code) => Meaning::Transient,
        ErrorKind::Write(WriteFailure::WriteError(e)) if TRANSIENT_CODES.contains(&e.code) => {
            Meaning::Transient
        }
        ErrorKind::Command(e) if e.code == ILLEGAL_OPERATION && standalone_refusal(&e.message) => {
            Meaning::NotReplicaSet
        }
        // The driver's own refusal, once it has seen the deployment.
        ErrorKind::Transaction { message, .. }
            if message.contains("not supported by this deployment") =>
        {
            Meaning::NotReplicaSet
        }
        ErrorKind::SessionsNotSupported => Meaning::NotReplicaSet,
        _ => Meaning::Internal,
    }
}

/// Whether an IllegalOperation says the server is no replica set member,
/// e.g. "Transaction numbers are only allowed on a replica set member or
/// mongos".
fn standalone_refusal(message: &str) -> bool {
    message.contains("replica set") || message.contains("Transaction numbers")
}

/// Turns a driver error into a storage error: failures to reach a usable
/// server, and conflicts, are worth retrying (UNAVAILABLE); anything else
/// is a bug, or a deployment that cannot work (named as such).
pub fn classify(context: &str, error: Error) -> StoreError {
    match meaning(&error.kind, |label| error.contains_label(label)) {
        Meaning::Transient => StoreError::unavailable(context, error),
        Meaning::NotReplicaSet => {
            StoreError::internal(format!("{context}: {NOT_A_REPLICA_SET}"), error)
        }
        Meaning::Internal => StoreError::internal(context, error),
    }
}

/// Whether the whole transaction may be run again (the server or driver
/// labelled the error `TransientTransactionError`).
pub(super) fn retry_transaction(error: &Error) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR)
}

/// Whether the commit may be sent again: its outcome is unknown
/// (`UnknownTransactionCommitResult`).
pub(super) fn retry_commit(error: &Error) -> bool {
    error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
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
pub(super) mod tests {
    use mongodb::bson::doc;

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

    /// A server's error reply, as the driver decodes it into a command error.
    fn command(code: i32, name: &str, message: &str) -> ErrorKind {
        ErrorKind::Command(
            mongodb::bson::from_document(
                doc! { "code": code, "codeName": name, "errmsg": message },
            )
            .unwrap(),
        )
    }

    /// A write concern error (the one error shape whose labels a caller
    /// can give the driver: it copies them onto the error).
    fn write_concern(labels: &[&str]) -> Error {
        let error = mongodb::bson::from_document(doc! {
            "code": 64,
            "codeName": "WriteConcernFailed",
            "errmsg": "waiting for replication timed out",
            "errorLabels": labels,
        })
        .unwrap();
        Error::from(ErrorKind::Write(WriteFailure::WriteConcernError(error)))
    }

    /// A driver error carrying `label`.
    pub(crate) fn labelled(label: &str) -> Error {
        write_concern(&[label])
    }

    fn labels(names: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |label| names.contains(&label)
    }

    #[test]
    fn labels_win_over_an_unknown_code() {
        let unknown = command(9999, "SomethingNew", "new in a later server");
        for label in RETRY_LABELS {
            let has = |l: &str| l == *label;
            assert_eq!(meaning(&unknown, has), Meaning::Transient, "{label}");
        }
        assert_eq!(meaning(&unknown, labels(&[])), Meaning::Internal);
        // Even a code that is a bug without them.
        let bad_value = command(2, "BadValue", "whatever");
        assert_eq!(
            meaning(&bad_value, labels(&[TRANSIENT_TRANSACTION_ERROR])),
            Meaning::Transient
        );
        assert_eq!(meaning(&bad_value, labels(&[])), Meaning::Internal);
        // A label that says nothing about retrying changes nothing.
        assert_eq!(
            meaning(&unknown, labels(&["NoWritesPerformed"])),
            Meaning::Internal
        );
    }

    #[test]
    fn conflicts_and_elections_are_transient_without_labels() {
        for (code, name) in [
            (112, "WriteConflict"),
            (251, "NoSuchTransaction"),
            (24, "LockTimeout"),
            (246, "SnapshotUnavailable"),
            (134, "ReadConcernMajorityNotAvailableYet"),
            (50, "MaxTimeMSExpired"),
            (13388, "StaleConfig"),
            (189, "PrimarySteppedDown"),
            (10107, "NotWritablePrimary"),
        ] {
            let error = Error::from(command(code, name, "not now"));
            assert!(
                matches!(classify("x", error), StoreError::Unavailable { .. }),
                "{name}"
            );
        }
        let write_conflict: mongodb::error::WriteError =
            mongodb::bson::from_document(doc! { "code": 112, "errmsg": "conflict" }).unwrap();
        let error = Error::from(ErrorKind::Write(WriteFailure::WriteError(write_conflict)));
        assert!(matches!(
            classify("x", error),
            StoreError::Unavailable { .. }
        ));
    }

    #[test]
    fn write_concern_errors_are_transient() {
        assert!(matches!(
            classify("x", write_concern(&[])),
            StoreError::Unavailable { .. }
        ));
    }

    #[test]
    fn an_unknown_code_without_labels_and_a_duplicate_key_are_internal() {
        let unknown = Error::from(command(9999, "SomethingNew", "?"));
        assert!(matches!(
            classify("x", unknown),
            StoreError::Internal { .. }
        ));
        let duplicate: mongodb::error::WriteError = mongodb::bson::from_document(
            doc! { "code": DUPLICATE_KEY, "errmsg": "E11000 duplicate key error" },
        )
        .unwrap();
        let error = Error::from(ErrorKind::Write(WriteFailure::WriteError(duplicate)));
        assert!(matches!(classify("x", error), StoreError::Internal { .. }));
    }

    #[test]
    fn a_standalone_server_is_named_as_the_cause() {
        let refused = Error::from(command(
            ILLEGAL_OPERATION,
            "IllegalOperation",
            "Transaction numbers are only allowed on a replica set member or mongos",
        ));
        let error = classify("creating a booking", refused);
        assert!(matches!(error, StoreError::Internal { .. }));
        assert!(error.to_string().contains(NOT_A_REPLICA_SET), "{error}");
        // Another illegal operation is a plain bug.
        let other = Error::from(command(ILLEGAL_OPERATION, "IllegalOperation", "no"));
        let error = classify("x", other);
        assert!(!error.to_string().contains(NOT_A_REPLICA_SET), "{error}");
        assert_eq!(
            meaning(&ErrorKind::SessionsNotSupported, labels(&[])),
            Meaning::NotReplicaSet
        );
    }

    #[test]
    fn the_runner_retries_by_label() {
        let transient = write_concern(&[TRANSIENT_TRANSACTION_ERROR]);
        assert!(retry_transaction(&transient));
        assert!(!retry_commit(&transient));
        let unknown_commit = write_concern(&[UNKNOWN_TRANSACTION_COMMIT_RESULT]);
        assert!(retry_commit(&unknown_commit));
        assert!(!retry_transaction(&unknown_commit));
        // A conflict's code alone is not the label: the runner goes by labels.
        let conflict = Error::from(command(112, "WriteConflict", "conflict"));
        assert!(!retry_transaction(&conflict));
        assert!(!retry_commit(&conflict));
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
