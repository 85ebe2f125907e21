//! The in-process cache: moka, bounded by size, for a single replica. It
//! keeps values themselves, so a hit costs no decoding.

use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{CacheBackend, CacheError, Fill, Found, Payload, Stored, generation_ttl};

/// The generation tokens kept at most, in bytes of names and tokens: a
/// caller choosing what is looked up must not grow the map without bound.
const MAX_GENERATION_BYTES: u64 = 8 << 20;

/// Keys are hashed with foldhash, seeded per process, rather than SipHash:
/// a hit looks up three keys. Callers choose ids in keys, and foldhash
/// resists flooding less than SipHash; both caches are bounded, so a
/// flood could cost evictions and misses, never memory.
type Hasher = foldhash::fast::RandomState;

/// Entries and generation tokens in this process's memory.
#[derive(Clone)]
pub struct MemoryBackend {
    entries: Cache<String, (Stored, u32), Hasher>,
    generations: Cache<String, String, Hasher>,
}

impl MemoryBackend {
    /// A cache of about `max_bytes` of entries, each living `ttl`.
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, (_, weight): &(Stored, u32)| {
                    weight.saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
                })
                .time_to_live(ttl)
                .build_with_hasher(Hasher::default()),
            // Bounded too: a token evicted early costs a miss, never a
            // stale hit, since its replacement is a fresh random one.
            generations: Cache::builder()
                .max_capacity(MAX_GENERATION_BYTES)
                .weigher(|name: &String, token: &String| {
                    u32::try_from(name.len() + token.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(generation_ttl(ttl))
                .build_with_hasher(Hasher::default()),
        }
    }
}

#[async_trait]
impl CacheBackend for MemoryBackend {
    async fn read(&self, generations: &[String], key: &str) -> Result<Found, CacheError> {
        let mut tokens = Vec::with_capacity(generations.len());
        for generation in generations {
            tokens.push(self.generations.get(generation).await);
        }
        let entry = self.entries.get(key).await.map(|(stored, _)| stored);
        Ok(Found { tokens, entry })
    }

    async fn adopt(&self, generations: &[String], fresh: &str) -> Result<Vec<String>, CacheError> {
        let mut tokens = Vec::with_capacity(generations.len());
        for generation in generations {
            tokens.push(
                self.generations
                    .get_with_by_ref(generation, async { fresh.to_owned() })
                    .await,
            );
        }
        Ok(tokens)
    }

    async fn fill(&self, key: &str, stamp: &str, fill: Fill<'_>) -> Result<(), CacheError> {
        let stored = Stored {
            stamp: stamp.to_owned(),
            payload: Payload::Value(fill.value),
        };
        self.entries
            .insert(key.to_owned(), (stored, fill.weight))
            .await;
        Ok(())
    }

    async fn bump(&self, generations: &[String], token: &str) -> Result<(), CacheError> {
        for generation in generations {
            self.generations
                .insert(generation.clone(), token.to_owned())
                .await;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn fill(value: u32) -> Fill<'static> {
        Fill {
            value: Arc::new(value),
            serialize: &|| None,
            weight: 4,
        }
    }

    #[test]
    fn entries_live_the_ttl_and_tokens_twice_that() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        assert_eq!(
            cache.entries.policy().time_to_live(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(cache.entries.policy().max_capacity(), Some(1 << 20));
        assert_eq!(
            cache.generations.policy().time_to_live(),
            Some(Duration::from_secs(120))
        );
    }

    #[tokio::test]
    async fn generation_tokens_are_bounded_by_bytes() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        for i in 0..2_000 {
            let name = format!("g:employee:{i}:{}", "e".repeat(10_000));
            cache.bump(&[name], "token").await.unwrap();
        }
        cache.generations.run_pending_tasks().await;
        let bytes: u64 = cache
            .generations
            .iter()
            .map(|(name, token)| (name.len() + token.len()) as u64)
            .sum();
        assert!(bytes <= MAX_GENERATION_BYTES, "{bytes} bytes kept");
    }

    #[tokio::test]
    async fn tokens_are_adopted_once_and_entries_keep_their_stamp() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        let gens = vec!["g:vehicle:1".to_owned()];
        let found = cache.read(&gens, "page").await.unwrap();
        assert_eq!(found.tokens, vec![None]);
        assert!(found.entry.is_none());
        assert_eq!(cache.adopt(&gens, "t1").await.unwrap(), ["t1"]);
        assert_eq!(
            cache.adopt(&gens, "t9").await.unwrap(),
            ["t1"],
            "the first token sticks"
        );
        cache.fill("page", "t1", fill(7)).await.unwrap();
        let found = cache.read(&gens, "page").await.unwrap();
        assert_eq!(found.tokens, vec![Some("t1".to_owned())]);
        let entry = found.entry.unwrap();
        assert_eq!(entry.stamp, "t1");
        let Payload::Value(value) = entry.payload else {
            panic!("a value")
        };
        assert_eq!(value.downcast_ref::<u32>(), Some(&7));

        cache.bump(&gens, "t2").await.unwrap();
        let found = cache.read(&gens, "page").await.unwrap();
        assert_eq!(found.tokens, vec![Some("t2".to_owned())]);
        assert_eq!(
            found.entry.unwrap().stamp,
            "t1",
            "the old entry is still there, but stale"
        );
    }
}
