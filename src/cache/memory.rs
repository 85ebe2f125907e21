//! The in-process cache: moka, bounded by size, for a single replica.

use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{CacheBackend, CacheError, Lookup, generation_ttl};

/// Entries and generation tokens in this process's memory.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    entries: Cache<String, Vec<u8>>,
    /// Not bounded by size: evicting a token early could make an older
    /// entry reachable again. Tokens are small and expire.
    generations: Cache<String, String>,
}

impl MemoryBackend {
    /// A cache of at most `max_bytes` of entries, each living `ttl`.
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, value: &Vec<u8>| {
                    u32::try_from(key.len() + value.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            generations: Cache::builder().time_to_live(generation_ttl(ttl)).build(),
        }
    }
}

#[async_trait]
impl CacheBackend for MemoryBackend {
    async fn lookup(
        &self,
        generations: &[String],
        base: &str,
        fresh: &str,
    ) -> Result<Lookup, CacheError> {
        let mut key = format!("{base}:");
        for (i, generation) in generations.iter().enumerate() {
            let token = self
                .generations
                .get_with_by_ref(generation, async { fresh.to_owned() })
                .await;
            if i > 0 {
                key.push('.');
            }
            key.push_str(&token);
        }
        let value = self.entries.get(&key).await;
        Ok(Lookup { key, value })
    }

    async fn fill(&self, key: &str, value: Vec<u8>) -> Result<(), CacheError> {
        self.entries.insert(key.to_owned(), value).await;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_the_ttl_and_tokens_twice_that_without_a_size_limit() {
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
        assert_eq!(cache.generations.policy().max_capacity(), None);
    }

    #[tokio::test]
    async fn a_bump_makes_older_entries_unreachable() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        let gens = vec!["g:vehicle:1".to_owned()];
        let first = cache.lookup(&gens, "page", "t1").await.unwrap();
        assert_eq!(first.key, "page:t1");
        assert_eq!(first.value, None);
        cache.fill(&first.key, b"v1".to_vec()).await.unwrap();
        let hit = cache.lookup(&gens, "page", "t9").await.unwrap();
        assert_eq!(
            hit.value.as_deref(),
            Some(&b"v1"[..]),
            "the first token sticks"
        );

        cache.bump(&gens, "t2").await.unwrap();
        let after = cache.lookup(&gens, "page", "t9").await.unwrap();
        assert_eq!(after.key, "page:t2");
        assert_eq!(after.value, None);
    }
}
