//! Watching, listing and pruning the events collection on MongoDB.
//!
//! Every read of events stops at the watermark (see [`super::sequences`]):
//! no reader passes a sequence that may still commit. One change stream
//! per process follows the inserts into the events collection, whichever
//! replica wrote them; each change moves the watermark on, read after the
//! change's cluster time, and the watermark is what watchers are told, so
//! a watcher is never told of a sequence it cannot read yet. The stream
//! starts with the first watcher and ends with the last, and resumes from
//! its resume token after an error; a change it misses is read by the
//! watchers' catch-up on their heartbeat.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{Document, doc};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use super::{MongoStore, classify, collect, collect_in, decoded, documents as d};
use crate::domain::{Event, EventFilter, Page, PageRequest};
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
                    // Whatever was written while no stream was open.
                    self.signal_watermark(&sender, None).await;
                    loop {
                        let next = tokio::select! {
                            () = sender.closed() => return,
                            next = stream.next() => next,
                        };
                        let next = match next {
                            Some(Ok(change)) => {
                                // Changes already received move the
                                // watermark once, not once each.
                                let mut time = change.cluster_time;
                                let ended = loop {
                                    match tokio::time::timeout(Duration::ZERO, stream.next()).await
                                    {
                                        Ok(Some(Ok(more))) => time = time.max(more.cluster_time),
                                        Ok(ended) => break Some(ended),
                                        Err(_) => break None,
                                    }
                                };
                                resume = stream.resume_token();
                                self.signal_watermark(&sender, time).await;
                                match ended {
                                    Some(ended) => ended,
                                    None => continue,
                                }
                            }
                            other => other,
                        };
                        match next {
                            Some(Ok(_)) => unreachable!("changes are handled above"),
                            // The end of a stream is an invalidate (the
                            // collection dropped by a reset): nothing to
                            // resume, a fresh stream follows, and the
                            // watermark read on opening covers the gap.
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

    /// Moves the watermark on, reading after `time` (a change's cluster
    /// time), and tells the watchers if it moved; with no `time` (a stream
    /// just opened), tells them in any case.
    async fn signal_watermark(
        &self,
        sender: &watch::Sender<u64>,
        time: Option<mongodb::bson::Timestamp>,
    ) {
        if let Some(time) = time {
            self.watermark.read_after(time);
        }
        let watermark = match self.reading_session().await {
            Ok(mut session) => self.watermark(&mut session).await,
            Err(error) => Err(error),
        };
        match watermark {
            // Watchers wake when there is more to read: a change behind a
            // gap moves nothing.
            Ok(watermark) if time.is_some() => {
                sender.send_if_modified(|seen| {
                    let moved = watermark > *seen;
                    *seen = (*seen).max(watermark);
                    moved
                });
            }
            // A stream (re)opened: whatever was missed, every watcher reads.
            Ok(watermark) => sender.send_modify(|seen| *seen = (*seen).max(watermark)),
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the events' watermark");
                sender.send_modify(|_| ());
            }
        }
    }

    /// Deletes up to `limit` of the oldest events before `before`.
    pub(super) async fn prune_events_before(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<u64> {
        let mut session = self.reading_session().await?;
        let watermark = self.watermark(&mut session).await?;
        // A process that starts later must not take the pruned sequences
        // for a gap: the stored watermark covers them first.
        self.persist_watermark(watermark).await?;
        let cursor = self
            .events
            .find(d::events_before(before, watermark))
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
        let mut session = self.reading_session().await?;
        let watermark = self.watermark(&mut session).await?;
        let cursor = self
            .events
            .find(d::event_filter(filter, page.after, watermark))
            .sort(d::sequence_sort())
            .limit(page.size as i64 + 1)
            .session(&mut session)
            .await
            .map_err(classify("listing events"))?;
        let rows = collect_in(cursor, &mut session)
            .await
            .map_err(classify("listing events"))?;
        let rows = decoded(rows.iter().map(d::event_from).collect())?;
        Ok(Page::from_rows(rows, page.size, 0))
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.subscribe_events()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        // Every sequence up to the watermark is readable, on every replica
        // that reads after this one.
        let mut session = self.reading_session().await?;
        self.watermark(&mut session).await
    }

    async fn sequences_taken(&self) -> StoreResult<u64> {
        let mut session = self.reading_session().await?;
        self.counter_at_majority(&mut session)
            .await
            .map_err(classify("reading the event sequence counter"))
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.prune_events_before(before, limit).await
    }
}
