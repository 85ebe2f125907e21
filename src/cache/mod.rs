//! Cache backends: Redis through a bb8 pool when `REDIS_URL` is set, and an
//! in-process cache (moka) otherwise.
//!
//! Backends are deliberately dumb: they hold bytes under keys, and
//! *generation tokens*, one per namespace (a vehicle, an employee, a date,
//! ...). What is cached, under which generations, and how writes invalidate
//! it is decided in one place, [`crate::storage::cached`], which also
//! explains why no stale read is possible.

mod memory;
mod redis;
mod singleflight;

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

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The entry's full key: its base and the current generation tokens,
    /// under which a miss is filled.
    pub key: String,
    /// The entry, if present.
    pub value: Option<Vec<u8>>,
}

/// A key-value cache with generation tokens. Entries live for the cache's
/// TTL, generation tokens for twice that (see [`generation_ttl`]).
#[async_trait]
pub trait CacheBackend: Send + Sync + 'static {
    /// Reads the current token of each of `generations` (giving a missing
    /// one the fresh token `fresh`, atomically, so that every caller agrees
    /// on it), then the entry `base:token.token...`. One round trip.
    async fn lookup(
        &self,
        generations: &[String],
        base: &str,
        fresh: &str,
    ) -> Result<Lookup, CacheError>;

    /// Stores `value` under `key`.
    async fn fill(&self, key: &str, value: Vec<u8>) -> Result<(), CacheError>;

    /// Gives each of `generations` the new token `token`: every entry keyed
    /// with an older token is unreachable from then on.
    async fn bump(&self, generations: &[String], token: &str) -> Result<(), CacheError>;
}

/// How long a generation token lives after it was last set.
///
/// Longer than any entry: an entry made under a token expires before the
/// token can, so when a token has expired and a fresh one is drawn, no entry
/// of the old one is left to be confused with anything.
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
            memory_bytes: 32 * 1024 * 1024,
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
