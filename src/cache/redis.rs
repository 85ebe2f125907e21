//! The shared cache: Redis (7 or later: `SET ... NX GET`), through a bb8
//! pool of multiplexed connections. A read is one `MGET`.
//!
//! Redis is an optimisation, never a dependency: every call has a short
//! time limit, and after a failure Redis is left alone for a moment (the
//! caller serves from the store meanwhile). The degradation is logged once,
//! and so is the recovery. Broken connections are dropped from the pool and
//! replaced on demand, so the pool reconnects by itself when Redis returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bb8_redis::RedisConnectionManager;
use bb8_redis::bb8::{ManageConnection, Pool};
use redis::aio::MultiplexedConnection;
use redis::{RedisError, RedisResult};

use super::{CacheBackend, CacheError, Fill, Found, Payload, Stored, generation_ttl};

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// A `redis://` URL; may carry a password, so it is never logged.
    pub url: String,
    /// Connections in the pool, at most.
    pub pool_size: u32,
    /// The time limit of every call, connecting included.
    pub timeout: Duration,
    /// How long Redis is left alone after a failure.
    pub retry_backoff: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 2,
            timeout: Duration::from_millis(50),
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// A pooled connection that remembers whether it failed, so the pool drops
/// it instead of handing it out again (bb8-redis alone cannot tell). The
/// flag is shared with the clones that calls use after handing the pooled
/// connection back.
pub struct TrackedConnection {
    connection: MultiplexedConnection,
    broken: Arc<AtomicBool>,
}

/// bb8-redis's manager, plus the broken flag.
struct Manager(RedisConnectionManager);

impl ManageConnection for Manager {
    type Connection = TrackedConnection;
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        Ok(TrackedConnection {
            connection: self.0.connect().await?,
            broken: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.connection).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.broken.load(Ordering::Relaxed)
    }
}

/// Remembers failures: logs the first and the recovery, and keeps callers
/// away from Redis for the backoff.
#[derive(Debug)]
struct Breaker {
    degraded: AtomicBool,
    retry_at: Mutex<Option<Instant>>,
    backoff: Duration,
}

impl Breaker {
    fn allows(&self) -> bool {
        let retry_at = *self.retry_at.lock().expect("breaker lock poisoned");
        retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        if !self.degraded.swap(true, Ordering::SeqCst) {
            crate::metrics::cache_degraded(NAME, true);
            tracing::warn!(%error, request_id = crate::telemetry::request_id(), "Redis unavailable; serving from the store until it is back");
        }
        *self.retry_at.lock().expect("breaker lock poisoned") = Some(Instant::now() + self.backoff);
    }

    fn succeeded(&self) {
        if self.degraded.swap(false, Ordering::SeqCst) {
            crate::metrics::cache_degraded(NAME, false);
            tracing::info!(
                request_id = crate::telemetry::request_id(),
                "Redis available again; caching resumed"
            );
        }
    }
}

/// The `backend` label of this cache.
const NAME: &str = "redis";

/// The Redis cache backend.
pub struct RedisBackend {
    pool: Pool<Manager>,
    prefix: String,
    timeout: Duration,
    entry_ttl_secs: u64,
    generation_ttl_secs: u64,
    breaker: Breaker,
}

impl RedisBackend {
    /// A backend for `config`, with keys under `prefix` and entries living
    /// `ttl`. Connects lazily.
    pub fn new(config: &RedisConfig, prefix: &str, ttl: Duration) -> Result<Self, CacheError> {
        let manager = RedisConnectionManager::new(config.url.as_str())
            .map_err(|e| CacheError::Unavailable(format!("invalid REDIS_URL: {e}")))?;
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(config.timeout)
            .retry_connection(false)
            // A PING per checkout would double the round trips; broken
            // connections are flagged by `run` instead.
            .test_on_check_out(false)
            .build_unchecked(Manager(manager));
        crate::metrics::cache_degraded(NAME, false);
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            timeout: config.timeout,
            entry_ttl_secs: ttl.as_secs().max(1),
            generation_ttl_secs: generation_ttl(ttl).as_secs().max(1),
            breaker: Breaker {
                degraded: AtomicBool::new(false),
                retry_at: Mutex::new(None),
                backoff: config.retry_backoff,
            },
        })
    }

    fn generation_key(&self, name: &str) -> String {
        format!("{}:gen:{name}", self.prefix)
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}:entry:{key}", self.prefix)
    }

    /// Runs `op` on a pooled connection within the time limit, keeping the
    /// breaker and the pool informed, and times it as `operation`.
    async fn run<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        // Calls the breaker turns away are not timed: only those that
        // went for Redis, connecting included.
        if !self.breaker.allows() {
            return Err(CacheError::Unavailable(
                "backing off after a failure".into(),
            ));
        }
        let started = Instant::now();
        let result = self.run_untimed(op).await;
        crate::metrics::redis_call(operation, started.elapsed());
        result
    }

    async fn run_untimed<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let started = Instant::now();
        // A multiplexed connection carries many calls at once: take a clone
        // and hand the pooled one straight back, so that concurrent calls
        // share (and pipeline on) a few connections instead of queueing for
        // one each.
        let (connection, broken) = match tokio::time::timeout(self.timeout, self.pool.get()).await {
            Ok(Ok(pooled)) => (pooled.connection.clone(), Arc::clone(&pooled.broken)),
            Ok(Err(error)) => return Err(self.failed(CacheError::Unavailable(error.to_string()))),
            Err(_) => return Err(self.failed(CacheError::Timeout(self.timeout))),
        };
        let remaining = self.timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, op(connection)).await {
            Ok(Ok(value)) => {
                self.breaker.succeeded();
                Ok(value)
            }
            Ok(Err(error)) => {
                if error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_unrecoverable_error()
                {
                    broken.store(true, Ordering::Relaxed);
                }
                Err(self.failed(CacheError::Unavailable(error.to_string())))
            }
            Err(_) => {
                // A connection that did not answer in time is not trusted again.
                broken.store(true, Ordering::Relaxed);
                Err(self.failed(CacheError::Timeout(self.timeout)))
            }
        }
    }

    fn failed(&self, error: CacheError) -> CacheError {
        self.breaker.failed(&error);
        error
    }
}

/// An entry as Redis keeps it: its stamp, a newline, then the JSON.
fn encode_entry(stamp: &str, json: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(stamp.len() + 1 + json.len());
    bytes.extend_from_slice(stamp.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(json);
    bytes
}

fn decode_entry(mut bytes: Vec<u8>) -> Option<Stored> {
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let json = bytes.split_off(newline + 1);
    bytes.pop();
    Some(Stored {
        stamp: String::from_utf8(bytes).ok()?,
        payload: Payload::Bytes(json),
    })
}

#[async_trait]
impl CacheBackend for RedisBackend {
    /// One `MGET` of the tokens and the entry: a plain read, no script.
    async fn read(&self, generations: &[String], key: &str) -> Result<Found, CacheError> {
        let mut command = redis::cmd("MGET");
        for generation in generations {
            command.arg(self.generation_key(generation));
        }
        command.arg(self.entry_key(key));
        let mut values: Vec<Option<Vec<u8>>> = self
            .run("read", |mut connection| async move {
                command.query_async(&mut connection).await
            })
            .await?;
        let entry = values.pop().flatten().and_then(decode_entry);
        let tokens = values
            .into_iter()
            .map(|token| token.and_then(|t| String::from_utf8(t).ok()))
            .collect();
        Ok(Found { tokens, entry })
    }

    /// `SET token NX GET`: sets the token only where there is none, and
    /// returns the one that was there, so that racing callers agree.
    async fn adopt(&self, generations: &[String], fresh: &str) -> Result<Vec<String>, CacheError> {
        let mut pipe = redis::pipe();
        for generation in generations {
            pipe.cmd("SET")
                .arg(self.generation_key(generation))
                .arg(fresh)
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(self.generation_ttl_secs);
        }
        let earlier: Vec<Option<String>> = self
            .run("adopt", |mut connection| async move {
                pipe.query_async(&mut connection).await
            })
            .await?;
        Ok(earlier
            .into_iter()
            .map(|token| token.unwrap_or_else(|| fresh.to_owned()))
            .collect())
    }

    async fn fill(&self, key: &str, stamp: &str, fill: Fill<'_>) -> Result<(), CacheError> {
        let Some(json) = (fill.serialize)() else {
            return Ok(());
        };
        let (key, ttl) = (self.entry_key(key), self.entry_ttl_secs);
        let value = encode_entry(stamp, &json);
        self.run("fill", |mut connection| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(&mut connection)
                .await
        })
        .await
    }

    async fn bump(&self, generations: &[String], token: &str) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for generation in generations {
            pipe.cmd("SET")
                .arg(self.generation_key(generation))
                .arg(token)
                .arg("EX")
                .arg(self.generation_ttl_secs)
                .ignore();
        }
        self.run("bump", |mut connection| async move {
            pipe.query_async::<()>(&mut connection).await
        })
        .await
    }

    async fn forget(&self, keys: &[String]) -> Result<(), CacheError> {
        let mut command = redis::cmd("DEL");
        for key in keys {
            command.arg(self.entry_key(key));
        }
        self.run("forget", |mut connection| async move {
            command.query_async::<()>(&mut connection).await
        })
        .await
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusHandle;

    use super::*;

    #[test]
    fn an_entry_carries_its_stamp_before_the_json() {
        let bytes = encode_entry("t1.t2", br#"{"id":"a\nb"}"#);
        assert_eq!(bytes, b"t1.t2\n{\"id\":\"a\\nb\"}");
        let stored = decode_entry(bytes).unwrap();
        assert_eq!(stored.stamp, "t1.t2");
        let Payload::Bytes(json) = stored.payload else {
            panic!("bytes")
        };
        assert_eq!(json, br#"{"id":"a\nb"}"#);
        assert!(decode_entry(b"no newline".to_vec()).is_none());
    }

    /// The value of `series` (name and labels) in a scrape, if shown.
    fn scraped(handle: &PrometheusHandle, series: &str) -> Option<f64> {
        crate::metrics::tests::sample(&crate::metrics::render(handle), series)
    }

    /// The count of Redis reads timed so far.
    fn reads_timed(handle: &PrometheusHandle) -> f64 {
        let series =
            "vehicle_allocation_cache_redis_call_duration_seconds_count{operation=\"read\"}";
        scraped(handle, series).unwrap_or(0.0)
    }

    fn degraded(handle: &PrometheusHandle) -> Option<f64> {
        scraped(
            handle,
            "vehicle_allocation_cache_degraded{backend=\"redis\"}",
        )
    }

    // The turn is held for the whole test, on the test's own runtime.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_silent_redis_degrades_the_cache_and_only_calls_reaching_it_are_timed() {
        let _turn = crate::metrics::tests::scrape_turn();
        let handle = crate::metrics::install();
        // A "server" that accepts connections and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = RedisConfig {
            url: format!("redis://{}", silent.local_addr().unwrap()),
            timeout: Duration::from_millis(50),
            retry_backoff: Duration::from_secs(3600),
            ..RedisConfig::default()
        };
        let cache = RedisBackend::new(&config, "test", Duration::from_secs(60)).unwrap();
        assert_eq!(degraded(&handle), Some(0.0));
        let before = reads_timed(&handle);
        let gens = ["g:epoch".to_owned()];
        assert!(cache.read(&gens, "k").await.is_err(), "no answer in time");
        // The breaker turns the next ones away without asking Redis.
        for _ in 0..3 {
            let error = cache.read(&gens, "k").await.unwrap_err().to_string();
            assert!(error.contains("backing off"), "{error}");
        }
        assert_eq!(reads_timed(&handle) - before, 1.0);
        assert_eq!(degraded(&handle), Some(1.0));
    }
}
