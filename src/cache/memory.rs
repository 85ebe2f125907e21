//! The in-process cache: moka, bounded by size, for a single replica. It
//! keeps values themselves, so a hit costs no decoding.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{CacheBackend, CacheError, Fill, Found, Payload, Stored};

/// The generation tokens kept at most, in bytes of names and tokens: a
/// caller choosing what is looked up must not grow the map without bound.
const MAX_GENERATION_BYTES: u64 = 8 << 20;

/// Keys are hashed with foldhash, seeded per process, rather than SipHash:
/// a hit looks up three keys. Callers choose ids in keys, and foldhash
/// resists flooding less than SipHash; both maps are bounded, so a flood
/// could cost evictions and misses, never memory.
type Hasher = foldhash::fast::RandomState;

/// Entries and generation tokens in this process's memory.
#[derive(Clone)]
pub struct MemoryBackend {
    entries: Cache<String, (Stored, u32), Hasher>,
    generations: std::sync::Arc<RwLock<Tokens>>,
}

/// The generation tokens: a map under a lock rather than a second moka
/// cache, whose lookups (recording reads for eviction, housekeeping, the
/// clock) cost each hit more than its entry's own. Tokens need neither
/// expiry nor eviction order: one dropped early costs misses, never a
/// stale hit, since its replacement is a fresh random token that no entry
/// carries. So past its byte budget the map is simply emptied.
#[derive(Default)]
struct Tokens {
    map: HashMap<String, String, Hasher>,
    /// Bytes of the names and tokens in `map`.
    bytes: u64,
}

impl Tokens {
    /// Makes room for `more` bytes, emptying the map if they would not fit.
    fn reserve(&mut self, more: u64) {
        if self.bytes + more > MAX_GENERATION_BYTES {
            self.map.clear();
            self.bytes = 0;
        }
    }

    fn set(&mut self, name: &str, token: &str) {
        let size = (name.len() + token.len()) as u64;
        match self.map.get_mut(name) {
            Some(old) => {
                self.bytes = self.bytes - old.len() as u64 + token.len() as u64;
                token.clone_into(old);
            }
            None => {
                self.map.insert(name.to_owned(), token.to_owned());
                self.bytes += size;
            }
        }
    }
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
            generations: Default::default(),
        }
    }

    // Nothing is left half-changed under the lock by a panic (a failed
    // allocation aborts), so a poisoned lock is used as it is.
    fn tokens(&self) -> std::sync::RwLockReadGuard<'_, Tokens> {
        self.generations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn tokens_mut(&self) -> std::sync::RwLockWriteGuard<'_, Tokens> {
        self.generations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl CacheBackend for MemoryBackend {
    async fn read(&self, generations: &[String], key: &str) -> Result<Found, CacheError> {
        let tokens = {
            let map = &self.tokens().map;
            generations
                .iter()
                .map(|name| map.get(name).cloned())
                .collect()
        };
        let entry = self.entries.get(key).await.map(|(stored, _)| stored);
        Ok(Found { tokens, entry })
    }

    async fn adopt(&self, generations: &[String], fresh: &str) -> Result<Vec<String>, CacheError> {
        let mut tokens = self.tokens_mut();
        // As if every one were missing: after emptying, every one is.
        let size = generations.iter().map(|name| name.len() + fresh.len());
        tokens.reserve(size.sum::<usize>() as u64);
        Ok(generations
            .iter()
            .map(|name| match tokens.map.get(name) {
                Some(token) => token.clone(),
                None => {
                    tokens.set(name, fresh);
                    fresh.to_owned()
                }
            })
            .collect())
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
        let mut tokens = self.tokens_mut();
        let size = generations.iter().map(|name| name.len() + token.len());
        tokens.reserve(size.sum::<usize>() as u64);
        for name in generations {
            tokens.set(name, token);
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
    fn entries_live_the_ttl() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        assert_eq!(
            cache.entries.policy().time_to_live(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(cache.entries.policy().max_capacity(), Some(1 << 20));
    }

    /// The bytes the map holds, counted afresh, and as it keeps count.
    fn token_bytes(cache: &MemoryBackend) -> (u64, u64) {
        let tokens = cache.tokens();
        let counted = tokens
            .map
            .iter()
            .map(|(name, token)| name.len() + token.len());
        (counted.sum::<usize>() as u64, tokens.bytes)
    }

    #[tokio::test]
    async fn generation_tokens_are_bounded_by_bytes() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        for i in 0..2_000 {
            let name = format!("g:employee:{i}:{}", "e".repeat(10_000));
            if i % 2 == 0 {
                cache.bump(&[name], "token").await.unwrap();
            } else {
                cache.adopt(&[name], "fresh").await.unwrap();
            }
            let (bytes, kept) = token_bytes(&cache);
            assert!(bytes <= MAX_GENERATION_BYTES, "{bytes} bytes kept");
            assert_eq!(bytes, kept);
        }
        // Tokens replaced by longer and shorter ones are counted as they are.
        let gens = vec!["g:vehicle:1".to_owned(), "g:vehicle:2".to_owned()];
        cache.bump(&gens, "a").await.unwrap();
        cache.bump(&gens[..1], "a-much-longer-token").await.unwrap();
        cache.adopt(&gens, "zz").await.unwrap();
        cache.bump(&gens, "b").await.unwrap();
        let (bytes, kept) = token_bytes(&cache);
        assert_eq!(bytes, kept);
    }

    #[tokio::test]
    async fn tokens_dropped_for_room_come_back_fresh() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        let gens = vec!["g:vehicle:1".to_owned()];
        assert_eq!(cache.adopt(&gens, "t1").await.unwrap(), ["t1"]);
        let big = "e".repeat(MAX_GENERATION_BYTES as usize / 2);
        cache.bump(&[format!("{big}1")], "x").await.unwrap();
        cache.bump(&[format!("{big}2")], "x").await.unwrap();
        let found = cache.read(&gens, "page").await.unwrap();
        assert_eq!(found.tokens, vec![None], "emptied to make room");
        assert_eq!(
            cache.adopt(&gens, "t2").await.unwrap(),
            ["t2"],
            "a fresh token, which no entry carries"
        );
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
