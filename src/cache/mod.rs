//! Cache backends: Redis through a bb8 pool when `REDIS_URL` is set, and an
//! in-process cache (moka) otherwise.
//!
//! Backends are deliberately dumb: they hold *entries*, each stamped with
//! the generation tokens it was made under, and the current *token* of each
//! generation (a vehicle, an employee, a date, ...). What is cached, under
//! which generations, and how writes invalidate it is decided in one place,
//! [`crate::storage::cached`], which also explains why no stale read is
//! possible.

mod memory;
mod redis;
mod singleflight;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryBackend;
pub use self::redis::{RedisBackend, RedisConfig};
pub use singleflight::SingleFlight;

/// Why a cache call failed; the caller then serves from the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    #[error("cache timed out after {0:?}")]
    Timeout(Duration),
}

/// A cached value as a backend keeps it.
#[derive(Clone)]
pub enum Payload {
    /// Serialized (JSON), as Redis keeps it.
    Bytes(Vec<u8>),
    /// The value itself, as the in-process cache keeps it: no decoding.
    Value(Arc<dyn Any + Send + Sync>),
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Self::Value(_) => f.write_str("Value(..)"),
        }
    }
}

/// An entry, and the generation tokens it was made under.
#[derive(Debug, Clone)]
pub struct Stored {
    pub stamp: String,
    pub payload: Payload,
}

/// What one read found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The current token of each generation asked for; `None` when it has
    /// none yet (or it expired).
    pub tokens: Vec<Option<String>>,
    /// The entry under the key, whatever its stamp.
    pub entry: Option<Stored>,
}

/// What a fill stores: the value, and its serialized form for backends
/// that keep bytes (made only if such a backend asks).
pub struct Fill<'a> {
    pub value: Arc<dyn Any + Send + Sync>,
    pub serialize: &'a (dyn Fn() -> Option<Vec<u8>> + Send + Sync),
    /// Roughly how many bytes the value holds, for size limits.
    pub weight: u32,
}

/// A cache of stamped entries and generation tokens. Entries live for the
/// cache's TTL; tokens for twice that in Redis (see [`generation_ttl`]),
/// and in process while in use (see `memory::Tokens`).
#[async_trait]
pub trait CacheBackend: Send + Sync + 'static {
    /// The current tokens of `generations` and the entry under `key`, in one
    /// round trip.
    async fn read(&self, generations: &[String], key: &str) -> Result<Found, CacheError>;

    /// Gives each of `generations` that has no token the token `fresh`,
    /// unless another caller got there first, and returns the tokens in
    /// force afterwards, so that every caller agrees on them.
    async fn adopt(&self, generations: &[String], fresh: &str) -> Result<Vec<String>, CacheError>;

    /// Stores an entry under `key`, made under `stamp`.
    async fn fill(&self, key: &str, stamp: &str, fill: Fill<'_>) -> Result<(), CacheError>;

    /// Gives each of `generations` the new token `token`: every entry made
    /// under an older one is stale from then on.
    async fn bump(&self, generations: &[String], token: &str) -> Result<(), CacheError>;

    /// Deletes the entries under `keys`. A bump only stops an entry being
    /// served; an erasure must not leave the erased data stored either.
    async fn forget(&self, keys: &[String]) -> Result<(), CacheError>;

    /// The `backend` label of its metrics.
    fn name(&self) -> &'static str;
}

/// How long a generation token lives after it was last set. Any length is
/// safe (an expired token is replaced by a fresh random one, which no entry
/// carries); longer than an entry saves needless misses.
pub fn generation_ttl(entry_ttl: Duration) -> Duration {
    entry_ttl * 2
}

/// Which cache, and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Redis, or in-process when `None`.
    pub redis: Option<RedisConfig>,
    /// How long an entry lives at most; zero turns caching off.
    pub ttl: Duration,
    /// Prefix of every key, so that several deployments (or test runs) can
    /// share one Redis without seeing each other's keys.
    pub prefix: String,
    /// The in-process cache's size limit, in bytes.
    pub memory_bytes: u64,
    /// How often hit, miss and error counts are logged.
    pub stats_interval: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis: None,
            ttl: Duration::from_secs(300),
            prefix: "vehicle-allocation:v1".into(),
            memory_bytes: 16 * 1024 * 1024,
            stats_interval: Duration::from_secs(60),
        }
    }
}

/// The configured backend; `None` when caching is off. Building a Redis
/// backend does not connect: connections are made on use, and remade after
/// failures.
pub fn open(config: &CacheConfig) -> Result<Option<Arc<dyn CacheBackend>>, CacheError> {
    if config.ttl.is_zero() {
        return Ok(None);
    }
    Ok(Some(match &config.redis {
        Some(redis) => Arc::new(RedisBackend::new(redis, &config.prefix, config.ttl)?),
        None => Arc::new(MemoryBackend::new(config.memory_bytes, config.ttl)),
    }))
}
