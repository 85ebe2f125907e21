//! The write steps of [`crate::storage::steps`] on MongoDB: each read and
//! write in the session's transaction, and [`run`], which runs a
//! transaction with a bounded number of attempts.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mongodb::ClientSession;
use mongodb::error::Error as MongoError;

use super::MongoStore;
use super::errors::{retry_commit, retry_transaction};
use super::sequences::Taken;
use crate::domain::admin::{FactQuery, Facts, FleetWrite};
use crate::domain::booking::{BookingFacts, BookingWrite, Slot};
use crate::domain::{Allocation, DomainError, NewEvent};
use crate::storage::steps::Transaction;

/// A session inside its transaction, and the store's collections.
pub(super) struct MongoTransaction<'a> {
    pub store: &'a MongoStore,
    pub session: &'a mut ClientSession,
    /// The events decided so far: they take their sequences as the
    /// transaction's last step (see [`super::sequences`]).
    pub events: &'a mut Vec<NewEvent>,
}

impl Transaction for MongoTransaction<'_> {
    type Error = MongoError;

    /// A refusal aborts the transaction as the driver's custom error, which
    /// [`super::raised_in_transaction`] turns back into the refusal.
    fn refused(refusal: DomainError) -> MongoError {
        MongoError::custom(refusal)
    }

    async fn booking(&mut self, id: &str) -> Result<Option<Allocation>, MongoError> {
        self.store.booking(self.session, id).await
    }

    async fn idempotency_key(
        &mut self,
        request_id: &str,
        live_after: DateTime<Utc>,
    ) -> Result<Option<(String, u64)>, MongoError> {
        self.store
            .idempotency_key(self.session, request_id, live_after)
            .await
    }

    async fn slot(&mut self, slot: &Slot, facts: &mut BookingFacts) -> Result<(), MongoError> {
        self.store.read_slot(self.session, slot, facts).await
    }

    async fn apply_booking(&mut self, write: &BookingWrite) -> Result<(), MongoError> {
        self.store.apply_booking(self.session, write).await
    }

    async fn fleet_facts(&mut self, query: &FactQuery) -> Result<Facts, MongoError> {
        self.store.read_facts(self.session, query).await
    }

    async fn claim(&mut self, query: &FactQuery) -> Result<(), MongoError> {
        self.store.claim(self.session, query).await
    }

    async fn apply_fleet(&mut self, write: &FleetWrite) -> Result<(), MongoError> {
        self.store.apply_write(self.session, write).await
    }

    async fn append_events(&mut self, events: &[NewEvent]) -> Result<(), MongoError> {
        self.events.extend_from_slice(events);
        Ok(())
    }
}

/// Attempts at a transaction that meets transient errors (write
/// conflicts, an election), and the time they may take together: then the
/// caller is answered UNAVAILABLE with RetryInfo, well within the request
/// deadline, instead of the driver's two minutes of retries.
const MAX_ATTEMPTS: u32 = 6;
const MAX_TIME: Duration = Duration::from_secs(10);
/// Commits retried after an unknown outcome, per attempt.
const MAX_COMMITS: u32 = 3;

/// The pause before attempt `attempt` (2, 3, ...): growing, with jitter so
/// that writers that conflicted do not meet again.
fn backoff(attempt: u32) -> Duration {
    let base = 5u64 << attempt.min(6);
    // A fresh `RandomState` is seeded randomly: jitter without a generator.
    let jitter =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), attempt)
            % (base + 1);
    Duration::from_millis(base + jitter)
}

/// What a transaction's body returns.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Runs `body` in a transaction (snapshot reads, majority writes, on the
/// primary), then inserts the events it decided with their sequences, and
/// commits. A transient error aborts the attempt and starts another, up to
/// [`MAX_ATTEMPTS`]; an unknown commit outcome is retried as a commit.
/// Every attempt that does not commit gives its sequences up. The number
/// of attempts is recorded per `operation`.
pub(super) async fn run<R, C>(
    store: &MongoStore,
    operation: &'static str,
    mut context: C,
    mut body: impl for<'b> FnMut(
        MongoTransaction<'b>,
        &'b mut C,
    ) -> BoxFuture<'b, Result<R, MongoError>>,
) -> Result<R, MongoError> {
    let mut session = store.client.start_session().await?;
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut events = Vec::new();
        let mut taken = Taken::new(store);
        let outcome = async {
            session
                .start_transaction()
                .with_options(super::transaction_options())
                .await?;
            let decided = body(
                MongoTransaction {
                    store,
                    session: &mut session,
                    events: &mut events,
                },
                &mut context,
            )
            .await;
            let decided = match decided {
                Ok(decided) => store
                    .insert_events(&mut session, &events, &mut taken)
                    .await
                    .map(|()| decided),
                Err(error) => Err(error),
            };
            let decided = match decided {
                Ok(decided) => decided,
                Err(error) => {
                    // Already aborted by the server, or not started: either
                    // way nothing of it commits.
                    let _ = session.abort_transaction().await;
                    return Err(error);
                }
            };
            let mut commits = 0;
            loop {
                commits += 1;
                match session.commit_transaction().await {
                    Ok(()) => return Ok(decided),
                    Err(error)
                        if commits < MAX_COMMITS
                            && retry_commit(&error)
                            && !max_time_expired(&error) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        .await;
        let error = match outcome {
            Ok(decided) => {
                taken.keep();
                crate::metrics::mongo_transaction_attempts(operation, attempts);
                return Ok(decided);
            }
            Err(error) => error,
        };
        taken.give_up().await;
        let pause = backoff(attempts + 1);
        if (retry_transaction(&error) || unavailable(&error))
            && attempts < MAX_ATTEMPTS
            && started.elapsed() + pause < MAX_TIME
        {
            tokio::time::sleep(pause).await;
            continue;
        }
        crate::metrics::mongo_transaction_attempts(operation, attempts);
        return Err(error);
    }
}

/// A failure raised as UNAVAILABLE outside the transaction's commands
/// (taking the event sequences): worth another attempt too.
fn unavailable(error: &MongoError) -> bool {
    matches!(
        error.get_custom::<crate::storage::StoreError>(),
        Some(crate::storage::StoreError::Unavailable { .. })
    )
}

/// MaxTimeMSExpired (50): a commit that ran out of time is not retried.
fn max_time_expired(error: &MongoError) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    const MAX_TIME_MS_EXPIRED: i32 = 50;
    match error.kind.as_ref() {
        ErrorKind::Command(command) => command.code == MAX_TIME_MS_EXPIRED,
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => {
            concern.code == MAX_TIME_MS_EXPIRED
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_failure_is_retried_and_a_commit_out_of_time_is_not() {
        use mongodb::bson::doc;
        use mongodb::error::ErrorKind;
        let raised = |error: crate::storage::StoreError| MongoError::custom(error);
        let io = || std::io::Error::other("x");
        assert!(unavailable(&raised(
            crate::storage::StoreError::unavailable("taking", io())
        )));
        assert!(!unavailable(&raised(crate::storage::StoreError::internal(
            "decoding",
            io()
        ))));
        assert!(!unavailable(&MongoError::custom(
            crate::domain::DomainError::not_found(crate::domain::Resource::Vehicle, "v1")
        )));
        let command = |code: i32| {
            MongoError::from(ErrorKind::Command(
                mongodb::bson::from_document(doc! { "code": code, "codeName": "n", "errmsg": "m" })
                    .unwrap(),
            ))
        };
        assert!(max_time_expired(&command(50)));
        assert!(!max_time_expired(&command(112)));
    }

    #[test]
    fn pauses_grow_and_stay_within_the_time_allowed() {
        for attempt in 2..=MAX_ATTEMPTS {
            let pause = backoff(attempt);
            let base = Duration::from_millis(5 << attempt);
            assert!(pause >= base && pause <= base * 2, "{attempt}: {pause:?}");
        }
        let worst: Duration = (2..=MAX_ATTEMPTS)
            .map(|a| Duration::from_millis(10 << a))
            .sum();
        assert!(worst < MAX_TIME, "the attempts fit the time: {worst:?}");
        assert!(backoff(40) <= Duration::from_millis(640), "capped");
    }
}
