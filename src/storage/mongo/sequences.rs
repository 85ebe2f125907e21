//! Event sequences on MongoDB without a counter in every transaction.
//!
//! A writing transaction buffers its events and, as its last step before
//! committing, takes their sequences from the counter with one atomic
//! update outside the transaction (so no two transactions meet in a write
//! conflict there), then inserts them in the transaction. Sequences can
//! therefore commit out of order, and some never do (an aborted attempt,
//! a process that died): the writer stores a *void* for each sequence it
//! gave up, and a reader that finds a gap open for longer than any
//! transaction can live ([`GAP_GRACE`]) fills it with a void itself.
//!
//! Readers never pass a gap: they read up to the *watermark*, the highest
//! sequence below which every sequence holds an event or a void, found by
//! a majority read in a causally consistent session; each later read runs
//! after it (`afterClusterTime`), so it sees everything the watermark
//! counted. The proof is in `docs/architecture.md`, "Event sequences on
//! MongoDB".

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use mongodb::ClientSession;
use mongodb::bson::{Document, Timestamp, doc};
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{ReadConcern, ReturnDocument, WriteConcern};

use super::errors::{gone, malformed};
use super::{MongoStore, classify, collect_in, documents as d};
use crate::domain::NewEvent;
use crate::storage::{StoreError, StoreResult};

/// How long a gap may stay open before a reader fills it with a void:
/// longer than a transaction can live on the server
/// (`transactionLifetimeLimitSeconds`, 60 s by default) and than this
/// service's own attempts at one, so the sequence's writer is gone.
pub const GAP_GRACE: Duration = Duration::from_secs(90);

/// A gap open this long is not a live writer's: a process then checks
/// whether the stored watermark is past it.
const LINGERING: Duration = Duration::from_secs(1);

/// How long a reader waits for voids it fills, and the pause before it
/// tries again if they are not found.
const FILL_TIME: Duration = Duration::from_secs(5);
const FILL_RETRY: Duration = Duration::from_secs(10);

/// Sequences read per query when looking for the watermark, and queries
/// per look (a reader far behind moves on at the next one).
const SCAN_BATCH: i64 = 1_000;
const SCAN_ROUNDS: usize = 10;

/// The stored watermark is raised once per this many sequences: it only
/// spares a restarted process a long scan.
const PERSIST_EVERY: u64 = 1_000;

/// What this process knows of the event log's watermark.
#[derive(Debug, Default)]
pub(super) struct Watermark {
    /// The highest sequence at or below which none is missing.
    value: AtomicU64,
    /// Whether `value` was loaded from the store yet.
    loaded: AtomicBool,
    /// The gap above the watermark, and since when it was seen.
    gap: Mutex<GapWatch>,
    /// The cluster time of the newest read that moved the watermark (or of
    /// the newest change event): reads of events run after it.
    read_after: Mutex<Option<Timestamp>>,
}

impl Watermark {
    /// After a reset: `value`, found by a read at `time`.
    pub(super) fn reset(&self, value: u64, time: Option<Timestamp>) {
        if let Some(time) = time {
            self.read_after(time);
        }
        self.value.store(value, Ordering::Release);
        self.loaded.store(true, Ordering::Release);
        *self.gap.lock().unwrap_or_else(|e| e.into_inner()) = GapWatch::default();
    }

    /// Reads of events must run after `time`.
    pub(super) fn read_after(&self, time: Timestamp) {
        let mut after = self.read_after.lock().unwrap_or_else(|e| e.into_inner());
        if after.is_none_or(|t| t < time) {
            *after = Some(time);
        }
    }
}

/// The one gap a reader waits behind: fill it once it has been open for
/// the grace period.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct GapWatch {
    /// The first sequence present above the gap when it was first seen, and
    /// when: every missing sequence below it was taken before then.
    seen: Option<(u64, Instant)>,
}

impl GapWatch {
    /// Notes the gap from `gap.0` up to `gap.1` (the first sequence present
    /// above it), or none; the sequences to fill because they have been
    /// missing for `grace`: all of those below the first present when the
    /// gap was first seen, at once (a writer takes its sequences in one
    /// range; any that committed since is skipped by the fill).
    pub(super) fn overdue(
        &mut self,
        gap: Option<(u64, u64)>,
        now: Instant,
        grace: Duration,
    ) -> Option<Range<u64>> {
        match (gap, self.seen) {
            (None, _) => {
                self.seen = None;
                None
            }
            (Some((first, _)), Some((below, since))) if first < below => {
                (now.duration_since(since) >= grace).then_some(first..below)
            }
            (Some((_, present)), _) => {
                self.seen = Some((present, now));
                None
            }
        }
    }

    /// How long the gap watched has been open.
    pub(super) fn open_for(&self, now: Instant) -> Option<Duration> {
        self.seen
            .map(|(_, since)| now.saturating_duration_since(since))
    }

    /// A fill of the gap was tried at `now`: the next try waits `retry`.
    pub(super) fn tried(&mut self, now: Instant, grace: Duration, retry: Duration) {
        if let Some((_, since)) = &mut self.seen {
            *since = now.checked_sub(grace.saturating_sub(retry)).unwrap_or(now);
        }
    }
}

/// The sequences one attempt at a transaction took, to be given up if it
/// does not commit: [`Taken::keep`] once it has, [`Taken::give_up`] once
/// it cannot; dropped undecided (a request cancelled at its deadline, an
/// import abandoned), they are given up in the background.
pub(super) struct Taken {
    store: MongoStore,
    ranges: Vec<Range<u64>>,
}

impl Taken {
    pub(super) fn new(store: &MongoStore) -> Self {
        Self {
            store: store.clone(),
            ranges: Vec::new(),
        }
    }

    /// The transaction committed.
    pub(super) fn keep(mut self) {
        self.ranges.clear();
    }

    /// The transaction did not commit (or may not have).
    pub(super) async fn give_up(mut self) {
        let ranges = std::mem::take(&mut self.ranges);
        self.store.give_up(&ranges).await;
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if self.ranges.is_empty() {
            return;
        }
        let ranges = std::mem::take(&mut self.ranges);
        let store = self.store.clone();
        // With no runtime left (shutdown), readers fill the gap.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(runtime.spawn(async move { store.give_up(&ranges).await }));
        }
    }
}

impl MongoStore {
    /// Takes `count` sequences from the counter, outside any transaction,
    /// majority-acknowledged so that no failover can hand them out again.
    async fn take_sequences(&self, count: usize) -> Result<Range<u64>, MongoError> {
        let counter = self
            .settings
            .find_one_and_update(d::by_id(d::EVENT_SEQUENCE), d::take_sequences(count))
            .upsert(true)
            .return_document(ReturnDocument::After)
            .write_concern(WriteConcern::majority())
            .await?
            .ok_or_else(|| gone("taking event sequences"))?;
        let last = d::sequence_from(&counter).map_err(malformed)?;
        Ok(last + 1 - count as u64..last + 1)
    }

    /// Inserts `events` in the session's transaction with sequences taken
    /// now, recording them in `taken` before anything can fail.
    pub(super) async fn insert_events(
        &self,
        session: &mut ClientSession,
        events: &[NewEvent],
        taken: &mut Taken,
    ) -> Result<(), MongoError> {
        if events.is_empty() {
            return Ok(());
        }
        // Outside the transaction, a failure carries no transient label:
        // one worth retrying travels as UNAVAILABLE, which `run` retries.
        let sequences = self
            .take_sequences(events.len())
            .await
            .map_err(|error| MongoError::custom(classify("taking event sequences")(error)))?;
        taken.ranges.push(sequences.clone());
        let documents = events
            .iter()
            .zip(sequences)
            .map(|(event, sequence)| d::event_document(sequence, event))
            .collect::<Result<Vec<Document>, _>>()
            .map_err(malformed)?;
        self.events
            .insert_many(documents)
            .session(&mut *session)
            .await
            .map_err(|error| match super::errors::duplicate_key_message(&error) {
                // A reader filled the sequence, taking this writer for dead:
                // UNAVAILABLE, which `run` retries with new sequences.
                Some(_) => MongoError::custom(StoreError::unavailable(
                    "inserting events",
                    std::io::Error::other("their sequence was given up as a gap"),
                )),
                None => error,
            })?;
        Ok(())
    }

    /// Gives up sequences whose transaction did not commit: a void for
    /// each, unless its event is there (a commit whose outcome was not
    /// known). Failing, it leaves the gap to readers to fill.
    async fn give_up(&self, taken: &[Range<u64>]) {
        let now = Utc::now();
        let voids: Vec<Document> = taken
            .iter()
            .flat_map(|range| range.clone())
            .map(|sequence| d::void_document(sequence, now))
            .collect();
        if voids.is_empty() {
            return;
        }
        if let Err(error) = self.fill(voids).await {
            tracing::warn!(error = %error, "cannot give up event sequences; readers fill the gap later");
        }
    }

    /// Inserts voids; one whose sequence holds an event already is skipped.
    /// A void meeting a transaction that inserted its sequence waits for
    /// it to end: not for longer than [`FILL_TIME`], so that no reader
    /// stalls behind it (the next reader tries again).
    async fn fill(&self, voids: Vec<Document>) -> Result<(), MongoError> {
        let insert = self
            .events
            .insert_many(voids)
            .ordered(false)
            .write_concern(WriteConcern::majority());
        match tokio::time::timeout(FILL_TIME, insert).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if only_duplicates(&error) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => {
                tracing::warn!("filling event sequences timed out; trying again later");
                Ok(())
            }
        }
    }

    /// A causally consistent session whose reads run after every read
    /// that moved the watermark: it sees what they counted.
    pub(super) async fn reading_session(&self) -> StoreResult<ClientSession> {
        let mut session = self
            .client
            .start_session()
            .causal_consistency(true)
            .await
            .map_err(classify("starting a session"))?;
        self.read_after_watermark(&mut session);
        Ok(session)
    }

    fn read_after_watermark(&self, session: &mut ClientSession) {
        let after = *self
            .watermark
            .read_after
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(after) = after {
            session.advance_operation_time(after);
        }
    }

    /// The watermark, moved up as far as the events read in `session`
    /// allow, filling a gap that stayed open past [`GAP_GRACE`].
    pub(super) async fn watermark(&self, session: &mut ClientSession) -> StoreResult<u64> {
        self.advance_watermark(session)
            .await
            .map_err(classify("finding the events' watermark"))
    }

    async fn advance_watermark(&self, session: &mut ClientSession) -> Result<u64, MongoError> {
        if !self.watermark.loaded.load(Ordering::Acquire) {
            self.load_watermark(session).await?;
        }
        let start = self.watermark.value.load(Ordering::Acquire);
        // Whoever raised the watermark to `start` noted its read's time
        // first: reading after it, this session sees every sequence the
        // watermark counts, even on a new primary.
        self.read_after_watermark(session);
        let mut reached = start;
        let mut rounds = 0;
        let mut asked_stored = false;
        loop {
            if rounds == SCAN_ROUNDS {
                // Far behind (an idle process): the stored watermark, which
                // busy processes raise, may be further on. Read in this
                // session, after its writer's read.
                if asked_stored {
                    break;
                }
                asked_stored = true;
                rounds = 0;
                if let Some(stored) = self.stored_watermark(session).await? {
                    reached = reached.max(stored);
                }
                continue;
            }
            rounds += 1;
            let cursor = self
                .events
                .find(d::sequences_from(reached + 1))
                .projection(doc! { "_id": 1 })
                .sort(d::sequence_sort())
                .limit(SCAN_BATCH)
                .session(&mut *session)
                .await?;
            let sequences = collect_in(cursor, session)
                .await?
                .iter()
                .map(d::sequence_of)
                .collect::<Result<Vec<u64>, _>>()
                .map_err(malformed)?;
            let next = d::contiguous(reached, sequences.iter().copied());
            let gap = sequences
                .iter()
                .find(|&&present| present > next)
                .map(|&present| (next + 1, present));
            reached = next;
            if gap.is_none() && sequences.len() == SCAN_BATCH as usize {
                // The gap watched, if any, is further on.
                continue;
            }
            let lingering = self
                .watermark
                .gap
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .open_for(Instant::now())
                .is_some_and(|open| open >= LINGERING);
            if gap.is_some() && lingering && !asked_stored {
                // Pruned sequences, or a reset elsewhere, look like a gap to
                // a process far behind: the stored watermark covers them.
                // (A live writer's gap closes in milliseconds: not asked.)
                asked_stored = true;
                if let Some(stored) = self.stored_watermark(session).await?
                    && stored > reached
                {
                    reached = stored;
                    continue;
                }
            }
            let overdue = self
                .watermark
                .gap
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .overdue(gap, Instant::now(), GAP_GRACE);
            if let Some(missing) = overdue {
                tracing::warn!(
                    first = missing.start,
                    last = missing.end - 1,
                    "event sequences stayed missing past the grace period; filling them with voids"
                );
                let now = Utc::now();
                let voids = missing
                    .map(|sequence| d::void_document(sequence, now))
                    .collect();
                let filled = self.fill(voids).await;
                // One try per process at a time, and the read goes on with
                // what it has: the next read finds the voids, or tries
                // again after a pause.
                self.watermark
                    .gap
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .tried(Instant::now(), GAP_GRACE, FILL_RETRY);
                if let Err(error) = filled {
                    tracing::warn!(error = %error, "cannot fill the missing event sequences; trying again later");
                }
            }
            break;
        }
        if let Some(time) = session.operation_time() {
            self.watermark.read_after(time);
        }
        if reached > start {
            self.watermark.value.fetch_max(reached, Ordering::AcqRel);
            if reached / PERSIST_EVERY > start / PERSIST_EVERY
                && let Err(error) = self.raise_stored_watermark(reached).await
            {
                // Only a restart's head start is lost.
                tracing::warn!(error = %error, "cannot store the events' watermark");
            }
        }
        // Another read may have raised the watermark since `start`: this
        // session reads after that read too before it uses the bound.
        let bound = self.watermark.value.load(Ordering::Acquire).max(reached);
        self.read_after_watermark(session);
        Ok(bound)
    }

    /// The stored watermark, if any.
    async fn stored_watermark(
        &self,
        session: &mut ClientSession,
    ) -> Result<Option<u64>, MongoError> {
        self.settings
            .find_one(d::by_id(d::EVENT_WATERMARK))
            .session(&mut *session)
            .await?
            .map(|stored| d::sequence_from(&stored).map_err(malformed))
            .transpose()
    }

    async fn raise_stored_watermark(&self, value: u64) -> Result<(), MongoError> {
        self.settings
            .update_one(d::by_id(d::EVENT_WATERMARK), d::raise_watermark(value))
            .upsert(true)
            .await
            .map(drop)
    }

    /// Raises the stored watermark to `value`, a watermark this process
    /// found.
    pub(super) async fn persist_watermark(&self, value: u64) -> StoreResult<()> {
        self.raise_stored_watermark(value)
            .await
            .map_err(classify("raising the events' watermark"))
    }

    /// The stored watermark, or a first one: see [`Self::first_watermark`].
    /// Reads that use it run after this one, which came after its writer's.
    async fn load_watermark(&self, session: &mut ClientSession) -> Result<(), MongoError> {
        let value = match self.stored_watermark(session).await? {
            Some(stored) => stored,
            None => self.first_watermark(session).await?,
        };
        if let Some(time) = session.operation_time() {
            self.watermark.read_after(time);
        }
        self.watermark.value.fetch_max(value, Ordering::AcqRel);
        self.watermark.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// The watermark of a log that has none stored (a new store, or one
    /// written by a version that took sequences inside its transactions):
    /// the counter read at majority. Run at startup, before this process
    /// writes, and stored only if no other process stored one meanwhile
    /// (that one is taken instead): a process of this version writes only
    /// after one is stored, and the older version committed its sequences
    /// with its counter, so none below the counter at majority is in flight.
    /// Replicas of the older version must be stopped first: they cannot
    /// read the voids.
    async fn first_watermark(&self, session: &mut ClientSession) -> Result<u64, MongoError> {
        let counter = self.counter_at_majority(session).await?;
        let stored = self
            .settings
            .find_one_and_update(d::by_id(d::EVENT_WATERMARK), d::first_watermark(counter))
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await?
            .ok_or_else(|| gone("storing the first watermark"))?;
        d::sequence_from(&stored).map_err(malformed)
    }

    /// The event sequence counter's value, majority-committed.
    pub(super) async fn counter_at_majority(
        &self,
        session: &mut ClientSession,
    ) -> Result<u64, MongoError> {
        let counter = self
            .db
            .collection_with_options::<Document>(
                d::SETTINGS,
                mongodb::options::CollectionOptions::builder()
                    .read_concern(ReadConcern::majority())
                    .build(),
            )
            .find_one(d::by_id(d::EVENT_SEQUENCE))
            .session(&mut *session)
            .await?;
        counter
            .map(|c| d::sequence_from(&c).map_err(malformed))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Loads the watermark at startup, before this process writes (see
    /// [`Self::first_watermark`]).
    pub(super) async fn prepare_watermark(&self) -> StoreResult<()> {
        let mut session = self.reading_session().await?;
        self.load_watermark(&mut session)
            .await
            .map_err(classify("loading the events' watermark"))
    }

    /// After the events were dropped by a reset (no writes meanwhile):
    /// every sequence taken so far is passed.
    pub(super) async fn reset_watermark(&self) -> StoreResult<()> {
        let mut session = self.reading_session().await?;
        let counter = self
            .counter_at_majority(&mut session)
            .await
            .map_err(classify("reading the event sequence counter"))?;
        self.persist_watermark(counter).await?;
        self.watermark.reset(counter, session.operation_time());
        Ok(())
    }
}

/// Whether every failure of an unordered insert was a duplicate key.
fn only_duplicates(error: &MongoError) -> bool {
    match error.kind.as_ref() {
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().all(|e| e.code == 11000))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_filled_only_after_it_stayed_open_for_the_grace_period() {
        let grace = Duration::from_secs(90);
        let at = |secs: u64| Instant::now() + Duration::from_secs(secs);
        let start = at(0);
        let mut watch = GapWatch::default();
        assert_eq!(
            watch.overdue(Some((7, 12)), start, grace),
            None,
            "first seen"
        );
        assert_eq!(
            watch.overdue(Some((7, 20)), start + Duration::from_secs(89), grace),
            None
        );
        // The whole range missing when it was first seen, at once; not what
        // was taken after it was seen.
        assert_eq!(
            watch.overdue(Some((7, 20)), start + grace, grace),
            Some(7..12)
        );
        // 7 and 8 committed after all: 10 and 11 are as old, overdue too.
        assert_eq!(
            watch.overdue(Some((10, 20)), start + grace, grace),
            Some(10..12)
        );
        // Tried: not again before the retry pause.
        let retry = Duration::from_secs(10);
        watch.tried(start + grace, grace, retry);
        assert_eq!(
            watch.overdue(Some((10, 20)), start + grace + retry / 2, grace),
            None
        );
        assert_eq!(
            watch.overdue(Some((10, 20)), start + grace + retry, grace),
            Some(10..12)
        );
        // A gap past the range starts its own clock.
        let later = start + grace * 2;
        assert_eq!(watch.overdue(Some((14, 15)), later, grace), None);
        assert_eq!(
            watch.overdue(Some((14, 15)), later + Duration::from_secs(1), grace),
            None
        );
        assert_eq!(
            watch.overdue(Some((14, 16)), later + grace, grace),
            Some(14..15)
        );
        // No gap forgets the last one.
        assert_eq!(watch.overdue(None, later + grace * 2, grace), None);
        assert_eq!(
            watch.overdue(Some((14, 15)), later + grace * 3, grace),
            None
        );
    }

    /// An `insert_many` failure with these write error codes (and a write
    /// concern error, if `concern`), as the driver reports it.
    fn insert_failure(codes: &[i32], concern: bool) -> MongoError {
        let errors: Vec<_> = codes
            .iter()
            .enumerate()
            .map(|(index, code)| doc! { "index": index as i32, "code": code, "errmsg": "e" })
            .collect();
        let mut failure = doc! { "writeErrors": errors };
        if concern {
            failure.insert(
                "writeConcernError",
                doc! { "code": 64, "codeName": "WriteConcernFailed", "errmsg": "w" },
            );
        }
        MongoError::from(ErrorKind::InsertMany(
            mongodb::bson::from_document(failure).unwrap(),
        ))
    }

    #[test]
    fn a_fill_that_meets_only_committed_events_succeeded() {
        assert!(only_duplicates(&insert_failure(&[11000, 11000], false)));
        assert!(
            !only_duplicates(&insert_failure(&[11000, 91], false)),
            "another failure"
        );
        assert!(
            !only_duplicates(&insert_failure(&[11000], true)),
            "not known to be majority-written"
        );
        assert!(!only_duplicates(&MongoError::from(ErrorKind::Shutdown)));
    }

    #[test]
    fn reads_run_after_the_newest_time_seen() {
        let watermark = Watermark::default();
        watermark.read_after(Timestamp {
            time: 10,
            increment: 2,
        });
        watermark.read_after(Timestamp {
            time: 10,
            increment: 1,
        });
        assert_eq!(
            *watermark.read_after.lock().unwrap(),
            Some(Timestamp {
                time: 10,
                increment: 2
            })
        );
        watermark.reset(5, None);
        assert_eq!(watermark.value.load(Ordering::Acquire), 5);
        assert!(watermark.loaded.load(Ordering::Acquire));
    }
}
