//! An event stream's outbox: the messages its subscriber has not taken yet,
//! bounded in bytes rather than in messages, so that what a stalled
//! subscriber holds does not depend on how large events are.
//!
//! The watch that fills it waits for room; the outbox tells it how long the
//! subscriber has taken nothing while messages wait, so a stalled stream
//! can be ended, and ended with what the subscriber actually took: the
//! messages it never took are dropped with the stream's last message, not
//! kept until the connection goes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::time::Instant;

struct State<T> {
    queue: VecDeque<Queued<T>>,
    bytes: usize,
    /// No more messages will come.
    closed: bool,
    /// The subscriber went away.
    gone: bool,
    /// When the subscriber last took a message, or a message came to an
    /// empty outbox: a stall counts from there.
    since: Instant,
    /// The position of the last message taken.
    taken: u64,
    waker: Option<Waker>,
}

struct Queued<T> {
    item: T,
    bytes: usize,
    /// Where the subscriber stands once it has taken this message.
    position: Option<u64>,
}

struct Shared<T> {
    limit: usize,
    state: Mutex<State<T>>,
    /// Room was made, or the subscriber went away.
    changed: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An outbox of at most `limit` bytes, and the stream that empties it;
/// `position` is where the subscriber starts.
pub fn outbox<T>(limit: usize, position: u64) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        limit: limit.max(1),
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bytes: 0,
            closed: false,
            gone: false,
            since: Instant::now(),
            taken: position,
            waker: None,
        }),
        changed: Notify::new(),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No room: the subscriber has not taken enough yet.
    Full,
    /// The subscriber went away.
    Gone,
}

/// The watch's end.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` (`bytes` long, leaving the subscriber at `position`
    /// once taken) if there is room. A message larger than the whole
    /// outbox still goes into an empty one.
    pub fn try_send(&self, item: T, bytes: usize, position: u64) -> Result<(), Refused> {
        self.queue(item, bytes, position)
            .map_err(|(refused, _)| refused)
    }

    /// As [`Self::try_send`], giving a refused message back.
    fn queue(&self, item: T, bytes: usize, position: u64) -> Result<(), (Refused, T)> {
        let mut state = self.shared.lock();
        if state.gone {
            return Err((Refused::Gone, item));
        }
        if !state.queue.is_empty() && state.bytes + bytes > self.shared.limit {
            return Err((Refused::Full, item));
        }
        if state.queue.is_empty() {
            state.since = Instant::now();
        }
        state.bytes += bytes;
        state.queue.push_back(Queued {
            item,
            bytes,
            position: Some(position),
        });
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Waits until a message of `needed` bytes fits and the outbox is at
    /// most half full, so that a refill queues a good part of it. Ends with
    /// [`Refused::Full`] when the subscriber has taken nothing for `stall`
    /// while messages waited.
    pub async fn room(&self, needed: usize, stall: std::time::Duration) -> Result<(), Refused> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let since = {
                let state = self.shared.lock();
                if state.gone {
                    return Err(Refused::Gone);
                }
                let limit = self.shared.limit;
                if state.queue.is_empty()
                    || (state.bytes <= limit / 2 && state.bytes + needed <= limit)
                {
                    return Ok(());
                }
                state.since
            };
            if tokio::time::timeout_at(since + stall, changed)
                .await
                .is_err()
                && self.stalled(stall)
            {
                return Err(Refused::Full);
            }
        }
    }

    /// Whether messages have waited `stall` with none taken.
    pub fn stalled(&self, stall: std::time::Duration) -> bool {
        let state = self.shared.lock();
        !state.queue.is_empty() && state.since.elapsed() >= stall
    }

    /// The position of the last message the subscriber took.
    #[cfg(test)]
    fn taken(&self) -> u64 {
        self.shared.lock().taken
    }

    /// Ends the stream with `last`, after what is queued.
    pub fn finish(self, last: T) {
        self.shared.lock().queue.push_back(Queued {
            item: last,
            bytes: 0,
            position: None,
        });
        // Dropping `self` closes the outbox and wakes the subscriber.
    }

    /// Ends a stalled stream: what was never taken is dropped, and `last`
    /// is made from the position of what was, under the same lock, so the
    /// two agree. `Err(self)` if the subscriber took a message meanwhile.
    pub fn finish_stalled(
        self,
        stall: std::time::Duration,
        last: impl FnOnce(u64) -> T,
    ) -> Result<(), Self> {
        let mut state = self.shared.lock();
        if state.queue.is_empty() || state.since.elapsed() < stall {
            drop(state);
            return Err(self);
        }
        state.queue.clear();
        state.bytes = 0;
        let item = last(state.taken);
        state.queue.push_back(Queued {
            item,
            bytes: 0,
            position: None,
        });
        drop(state);
        Ok(())
    }

    /// Completes once the subscriber has gone away.
    pub async fn closed(&self) {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.shared.lock().gone {
                return;
            }
            changed.await;
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// The subscriber's end: a stream of what was queued, in order.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> tokio_stream::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(queued) => {
                state.bytes -= queued.bytes;
                if let Some(position) = queued.position {
                    state.taken = position;
                }
                state.since = Instant::now();
                drop(state);
                self.shared.changed.notify_waiters();
                Poll::Ready(Some(queued.item))
            }
            None if state.closed => Poll::Ready(None),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.gone = true;
        state.queue.clear();
        state.bytes = 0;
        drop(state);
        self.shared.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn it_holds_at_most_its_bytes_but_always_one_message() {
        let (sender, mut receiver) = outbox::<&str>(10, 0);
        assert_eq!(sender.try_send("a", 6, 1), Ok(()));
        assert_eq!(sender.try_send("b", 4, 2), Ok(()));
        assert_eq!(sender.try_send("c", 1, 3), Err(Refused::Full));
        assert_eq!(receiver.next().await, Some("a"));
        assert_eq!(sender.taken(), 1);
        assert_eq!(sender.try_send("c", 6, 3), Ok(()));
        assert_eq!(receiver.next().await, Some("b"));
        assert_eq!(receiver.next().await, Some("c"));
        assert_eq!(
            sender.try_send("huge", 50, 4),
            Ok(()),
            "into an empty outbox"
        );
        drop(receiver);
        assert_eq!(sender.try_send("d", 1, 5), Err(Refused::Gone));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_for_room_and_gives_up_on_a_stalled_subscriber() {
        let stall = Duration::from_secs(60);
        let (sender, mut receiver) = outbox::<u64>(10, 0);
        sender.try_send(1, 6, 1).unwrap();
        sender.try_send(2, 4, 2).unwrap();
        let waiting = tokio::spawn(async move {
            let room = sender.room(6, stall).await;
            (sender, room)
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(receiver.next().await, Some(1), "room made within the stall");
        let (sender, room) = waiting.await.unwrap();
        assert_eq!(room, Ok(()), "half empty");
        sender.try_send(3, 6, 3).unwrap();
        let started = Instant::now();
        assert_eq!(sender.room(6, stall).await, Err(Refused::Full));
        assert_eq!(started.elapsed(), stall, "a minute after the last take");
        assert!(sender.stalled(stall));
        assert_eq!(sender.taken(), 1);
        assert_eq!(receiver.next().await, Some(2));
        assert_eq!(sender.taken(), 2);
        tokio::time::sleep(stall).await;
        // Ended in place of what was not taken, at what was taken.
        assert!(sender.finish_stalled(stall, |taken| 90 + taken).is_ok());
        assert_eq!(receiver.next().await, Some(92));
        assert_eq!(receiver.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn room_is_room_for_the_message_that_did_not_fit() {
        let stall = Duration::from_secs(60);
        let (sender, mut receiver) = outbox::<u64>(10, 0);
        sender.try_send(1, 2, 1).unwrap();
        assert_eq!(sender.try_send(2, 9, 2), Err(Refused::Full));
        // Under half full, but 9 more bytes do not fit: no room yet, and
        // a subscriber taking nothing is a stall, not a spin.
        assert_eq!(sender.room(9, stall).await, Err(Refused::Full));
        assert_eq!(receiver.next().await, Some(1));
        assert_eq!(sender.room(9, stall).await, Ok(()));
        assert_eq!(sender.try_send(2, 9, 2), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_took_something_meanwhile_is_not_ended_as_stalled() {
        let stall = Duration::from_secs(60);
        let (sender, mut receiver) = outbox::<u64>(10, 0);
        sender.try_send(1, 2, 1).unwrap();
        sender.try_send(2, 2, 2).unwrap();
        tokio::time::sleep(stall).await;
        assert!(sender.stalled(stall));
        assert_eq!(receiver.next().await, Some(1));
        let sender = sender
            .finish_stalled(stall, |taken| 90 + taken)
            .expect_err("taken meanwhile");
        assert_eq!(sender.taken(), 1);
    }

    #[tokio::test]
    async fn finishing_keeps_the_queue_and_closed_sees_the_subscriber_go() {
        let (sender, mut receiver) = outbox::<u64>(100, 7);
        assert_eq!(sender.taken(), 7);
        sender.try_send(8, 1, 8).unwrap();
        sender.finish(0);
        assert_eq!(receiver.next().await, Some(8));
        assert_eq!(receiver.next().await, Some(0));
        assert_eq!(receiver.next().await, None);

        let (sender, receiver) = outbox::<u64>(100, 0);
        let closed = tokio::spawn(async move { sender.closed().await });
        tokio::task::yield_now().await;
        drop(receiver);
        closed.await.unwrap();
    }
}
