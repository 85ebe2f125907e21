//! Concurrent misses for one key in one process compute it once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;

/// Runs one computation per key at a time; callers that arrive while it
/// runs wait for its result instead of starting their own.
#[derive(Debug)]
pub struct SingleFlight<V> {
    in_flight: Mutex<HashMap<String, watch::Receiver<Option<V>>>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

/// Removes a key from the in-flight map when its computation ends, however
/// it ends (a cancelled leader must not leave waiters hanging).
struct Leader<'a, V> {
    flights: &'a SingleFlight<V>,
    key: String,
}

impl<V> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        self.flights
            .in_flight
            .lock()
            .expect("single-flight lock poisoned")
            .remove(&self.key);
    }
}

impl<V: Clone> SingleFlight<V> {
    /// The result of `compute` for `key`, computed once for all callers
    /// that ask while it runs. If the computing caller goes away, a waiting
    /// one computes instead.
    pub async fn run<F, Fut>(&self, key: &str, compute: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let waiting = {
            let mut in_flight = self.in_flight.lock().expect("single-flight lock poisoned");
            match in_flight.get(key) {
                Some(receiver) => Ok(receiver.clone()),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    in_flight.insert(key.to_owned(), receiver);
                    Err(sender)
                }
            }
        };
        match waiting {
            Ok(mut receiver) => {
                if let Ok(done) = receiver.wait_for(Option::is_some).await {
                    return done.clone().expect("waited for a value");
                }
                // The leader was cancelled: compute it ourselves.
                compute().await
            }
            Err(sender) => {
                let _leader = Leader {
                    flights: self,
                    key: key.to_owned(),
                };
                let value = compute().await;
                let _ = sender.send(Some(value.clone()));
                value
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    use tokio::sync::Notify;

    use super::*;

    /// Polls `caller` once and says whether it is still waiting. One poll
    /// runs `run` up to its first await: past the in-flight map, so a
    /// caller that returns pending has joined (or started) a flight. A real
    /// synchronisation point, where yielding to the scheduler is a guess.
    async fn parked<F: Future + Unpin>(caller: &mut F) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *caller).poll(cx).is_pending())).await
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_computation() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let started = Arc::new(Notify::new());
        let leader = {
            let (flights, runs, release, started) = (
                flights.clone(),
                runs.clone(),
                release.clone(),
                started.clone(),
            );
            tokio::spawn(async move {
                flights
                    .run("k", || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        started.notify_one();
                        release.notified().await;
                        7
                    })
                    .await
            })
        };
        started.notified().await;
        let mut followers = Vec::new();
        for _ in 0..10 {
            let mut follower = Box::pin(flights.run("k", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                0
            }));
            // Parked on the leader's channel before the leader finishes.
            assert!(parked(&mut follower).await);
            followers.push(follower);
        }
        release.notify_one();
        assert_eq!(leader.await.unwrap(), 7);
        for follower in followers {
            assert_eq!(follower.await, 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let started = Arc::new(Notify::new());
        let leader = {
            let (flights, started) = (flights.clone(), started.clone());
            tokio::spawn(async move {
                flights
                    .run("k", || async {
                        started.notify_one();
                        std::future::pending::<u32>().await
                    })
                    .await
            })
        };
        started.notified().await;
        let mut follower = Box::pin(flights.run("k", || async { 9 }));
        // Waiting on the leader, not computing on its own, when it goes.
        assert!(parked(&mut follower).await);
        leader.abort();
        assert_eq!(follower.await, 9);
        assert!(leader.await.unwrap_err().is_cancelled());
    }
}
