//! Watching and pruning the events collection on MongoDB.
//!
//! One change stream per process follows the inserts into the events
//! collection, whichever replica wrote them, and tells watchers the newest
//! sequence; watchers then read the events themselves, in sequence order.
//! The stream starts with the first watcher and ends with the last, and
//! resumes from its resume token after an error.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::ClientSession;
use mongodb::bson::{Document, doc};
use mongodb::error::Error as MongoError;
use mongodb::options::ReturnDocument;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use super::errors::{gone, malformed};
use super::{MongoStore, classify, collect, decoded, documents as d};
use crate::domain::{Event, EventFilter, NewEvent, Page, PageRequest};
use crate::storage::{EventLog, StoreResult};

/// The pause before a failed change stream is opened again.
const REOPEN_PAUSE: Duration = Duration::from_secs(1);

impl MongoStore {
    /// A receiver of the newest event's sequence, starting the change
    /// stream if no watcher has it running.
    pub(super) fn subscribe_events(&self) -> watch::Receiver<u64> {
        let mut signal = self.event_signal.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = signal.as_ref()
            && !sender.is_closed()
        {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(0);
        *signal = Some(sender.clone());
        tokio::spawn(self.clone().follow_events(sender));
        receiver
    }

    /// Follows the inserted events until every receiver is gone.
    async fn follow_events(self, sender: watch::Sender<u64>) {
        let mut resume = None;
        loop {
            let opened = self
                .events
                .watch()
                .pipeline(d::inserted_events())
                .resume_after(resume.clone())
                .await;
            match opened {
                Ok(mut stream) => {
                    // Whatever was written while no stream was open: the
                    // counter says how far, and every watcher reads again.
                    match self.settings.find_one(d::by_id(d::EVENT_SEQUENCE)).await {
                        Ok(counter) => {
                            let newest =
                                counter.and_then(|c| d::sequence_from(&c).ok()).unwrap_or(0);
                            sender.send_modify(|seen| *seen = (*seen).max(newest));
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "cannot read the event sequence counter");
                            sender.send_modify(|_| ());
                        }
                    }
                    loop {
                        let next = tokio::select! {
                            () = sender.closed() => return,
                            next = stream.next() => next,
                        };
                        match next {
                            Some(Ok(change)) => {
                                resume = stream.resume_token();
                                let sequence = change
                                    .full_document
                                    .and_then(|event| event.get_i64("_id").ok());
                                if let Some(sequence) = sequence {
                                    sender.send_if_modified(|newest| {
                                        let newer = sequence as u64 > *newest;
                                        *newest = (*newest).max(sequence as u64);
                                        newer
                                    });
                                }
                            }
                            // The end of a stream is an invalidate (the
                            // collection dropped by a reset): nothing to
                            // resume, a fresh stream follows, and the counter
                            // read on opening covers the gap.
                            Some(Err(error)) => {
                                tracing::warn!(error = %error, "the events change stream failed; resuming it");
                                break;
                            }
                            None => {
                                resume = None;
                                break;
                            }
                        }
                    }
                }
                Err(error) => {
                    // The token may be past resuming (the oplog rolled
                    // over): the next attempt opens a fresh stream.
                    tracing::warn!(error = %error, "cannot open the events change stream; retrying");
                    resume = None;
                }
            }
            tokio::select! {
                () = sender.closed() => return,
                () = tokio::time::sleep(REOPEN_PAUSE) => {}
            }
        }
    }

    /// Deletes up to `limit` of the oldest events before `before`.
    pub(super) async fn prune_events_before(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<u64> {
        let cursor = self
            .events
            .find(d::events_before(before))
            .projection(doc! { "_id": 1 })
            .sort(doc! { "time": 1 })
            .limit(limit as i64)
            .await
            .map_err(classify("finding old events"))?;
        let ids: Vec<_> = collect(cursor, "finding old events")
            .await?
            .iter()
            .filter_map(|event: &Document| event.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .events
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map_err(classify("pruning events"))?;
        Ok(deleted.deleted_count)
    }
}

#[async_trait]
impl EventLog for MongoStore {
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<Event>> {
        let cursor = self
            .events
            .find(d::event_filter(filter, page.after))
            .sort(d::sequence_sort())
            .limit(page.size as i64 + 1)
            .await
            .map_err(classify("listing events"))?;
        let rows = collect(cursor, "listing events").await?;
        let rows = decoded(rows.iter().map(d::event_from).collect())?;
        Ok(Page::from_rows(rows, page.size, 0))
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.subscribe_events()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        // The counter every write transaction takes its sequences from: it
        // holds every replica's committed events, and no aborted ones.
        let counter = self
            .settings
            .find_one(d::by_id(d::EVENT_SEQUENCE))
            .await
            .map_err(classify("reading the event sequence counter"))?;
        match counter {
            Some(counter) => decoded(d::sequence_from(&counter)),
            None => Ok(0),
        }
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.prune_events_before(before, limit).await
    }
}

impl MongoStore {
    /// Appends `events` with the next sequences, taken from the counter in
    /// this transaction.
    pub(super) async fn append_events(
        &self,
        session: &mut ClientSession,
        events: &[NewEvent],
    ) -> Result<(), MongoError> {
        if events.is_empty() {
            return Ok(());
        }
        let counter = self
            .settings
            .find_one_and_update(d::by_id(d::EVENT_SEQUENCE), d::take_sequences(events.len()))
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await?
            .ok_or_else(|| gone("taking event sequences"))?;
        let last = d::sequence_from(&counter).map_err(malformed)?;
        let first = last + 1 - events.len() as u64;
        let documents = events
            .iter()
            .zip(first..)
            .map(|(event, sequence)| d::event_document(sequence, event))
            .collect::<Result<Vec<Document>, _>>()
            .map_err(malformed)?;
        self.events
            .insert_many(documents)
            .session(&mut *session)
            .await?;
        Ok(())
    }
}
