//! The in-process cache: moka, bounded by size, for a single replica. It
//! keeps values themselves, so a hit costs no decoding.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{CacheBackend, CacheError, Fill, Found, Payload, Stored};

/// The generation tokens kept at most, in bytes of names and tokens, half
/// in each segment: a caller choosing what is looked up must not grow the
/// map without bound.
const MAX_GENERATION_BYTES: u64 = 8 << 20;
const SEGMENT_BYTES: u64 = MAX_GENERATION_BYTES / 2;

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

/// The generation tokens: maps under a lock rather than a second moka
/// cache, whose lookups (recording reads for eviction, housekeeping, the
/// clock) cost each hit more than its entry's own. A token dropped early
/// costs misses, never a stale hit, since its replacement is a fresh random
/// token that no entry carries; but every entry depends on a few tokens
/// (`epoch`, a date's, the fleet's), so those must stay. Two segments keep
/// the ones in use: tokens are set in `current`, and when it is full it
/// becomes `previous`, whose tokens still count and move back to `current`
/// when used; the segment before is dropped, with the tokens not used since.
#[derive(Default)]
struct Tokens {
    current: HashMap<String, String, Hasher>,
    previous: HashMap<String, String, Hasher>,
    /// Bytes of the names and tokens in `current`.
    bytes: u64,
}

/// Tokens dropped to make room, freed once the lock is let go (declared
/// before its guard, so dropped after it).
type Dropped = HashMap<String, String, Hasher>;

impl Tokens {
    /// Makes room in `current` for `more` bytes, turning the segments if
    /// they would not fit (never for an empty `current`: a token larger
    /// than a segment would otherwise drop both).
    fn reserve(&mut self, more: u64, dropped: &mut Vec<Dropped>) {
        if self.bytes > 0 && self.bytes + more > SEGMENT_BYTES {
            // Sized as the last one: it fills again without regrowing.
            let fresh = HashMap::with_capacity_and_hasher(self.current.len(), Hasher::default());
            let full = std::mem::replace(&mut self.current, fresh);
            dropped.push(std::mem::replace(&mut self.previous, full));
            self.bytes = 0;
        }
    }

    /// Sets `name`'s token in `current`.
    fn set(&mut self, name: &str, token: &str, dropped: &mut Vec<Dropped>) {
        let size = (name.len() + token.len()) as u64;
        if let Some(old) = self.current.remove(name) {
            self.bytes -= (name.len() + old.len()) as u64;
        }
        self.reserve(size, dropped);
        self.current.insert(name.to_owned(), token.to_owned());
        self.bytes += size;
    }

    /// `name`'s token, moved back to `current` if it was in `previous`.
    fn used(&mut self, name: &str, dropped: &mut Vec<Dropped>) -> Option<String> {
        if let Some(token) = self.current.get(name) {
            return Some(token.clone());
        }
        let token = self.previous.remove(name)?;
        self.set(name, &token, dropped);
        Some(token)
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
        let (tokens, in_previous) = {
            let tokens = self.tokens();
            let mut in_previous = false;
            let found = generations
                .iter()
                .map(|name| match tokens.current.get(name) {
                    Some(token) => Some(token.clone()),
                    None => {
                        let token = tokens.previous.get(name).cloned();
                        in_previous |= token.is_some();
                        token
                    }
                });
            (found.collect::<Vec<_>>(), in_previous)
        };
        if in_previous {
            // Rare: once per turn of the segments for a token in use.
            let mut dropped = Vec::new();
            let mut tokens = self.tokens_mut();
            for name in generations {
                tokens.used(name, &mut dropped);
            }
        }
        let entry = self.entries.get(key).await.map(|(stored, _)| stored);
        Ok(Found { tokens, entry })
    }

    async fn adopt(&self, generations: &[String], fresh: &str) -> Result<Vec<String>, CacheError> {
        let mut dropped = Vec::new();
        let mut tokens = self.tokens_mut();
        Ok(generations
            .iter()
            .map(|name| {
                tokens.used(name, &mut dropped).unwrap_or_else(|| {
                    tokens.set(name, fresh, &mut dropped);
                    fresh.to_owned()
                })
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
        let mut dropped = Vec::new();
        let mut tokens = self.tokens_mut();
        for name in generations {
            tokens.set(name, token, &mut dropped);
        }
        Ok(())
    }

    async fn forget(&self, keys: &[String]) -> Result<(), CacheError> {
        for key in keys {
            self.entries.invalidate(key).await;
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

    /// The bytes of `current`, counted afresh and as kept, and of both.
    fn token_bytes(cache: &MemoryBackend) -> (u64, u64, u64) {
        let tokens = cache.tokens();
        let bytes = |map: &HashMap<String, String, Hasher>| {
            map.iter()
                .map(|(name, token)| (name.len() + token.len()) as u64)
                .sum::<u64>()
        };
        let current = bytes(&tokens.current);
        (current, tokens.bytes, current + bytes(&tokens.previous))
    }

    /// Enough tokens of other names to turn the segments once.
    async fn flood(cache: &MemoryBackend, round: usize) {
        let name = |i: usize| format!("g:employee:{round}:{i}:{}", "e".repeat(100_000));
        for i in 0..(SEGMENT_BYTES as usize / 100_000 + 1) {
            cache.bump(&[name(i)], "x").await.unwrap();
        }
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
            let (current, kept, both) = token_bytes(&cache);
            assert!(current <= SEGMENT_BYTES, "{current} bytes in the segment");
            assert!(both <= MAX_GENERATION_BYTES, "{both} bytes kept");
            assert_eq!(current, kept);
        }
        // Tokens replaced by longer and shorter ones are counted as they are.
        let gens = vec!["g:vehicle:1".to_owned(), "g:vehicle:2".to_owned()];
        cache.bump(&gens, "a").await.unwrap();
        cache.bump(&gens[..1], "a-much-longer-token").await.unwrap();
        cache.adopt(&gens, "zz").await.unwrap();
        cache.bump(&gens, "b").await.unwrap();
        let (current, kept, _) = token_bytes(&cache);
        assert_eq!(current, kept);
        // A name bumped while in `previous`, and one moved back from it.
        flood(&cache, 0).await;
        cache.bump(&gens[..1], "c").await.unwrap();
        assert_eq!(cache.adopt(&gens[1..], "fresh").await.unwrap(), ["b"]);
        let (current, kept, both) = token_bytes(&cache);
        assert_eq!(current, kept);
        assert!(both <= MAX_GENERATION_BYTES);
        let found = cache.read(&gens, "page").await.unwrap();
        assert_eq!(found.tokens, [Some("c".into()), Some("b".into())]);
    }

    #[tokio::test]
    async fn tokens_in_use_outlive_any_number_of_turns() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        let epoch = vec!["g:epoch".to_owned()];
        let changed = vec!["g:date:2026-12-07".to_owned()];
        assert_eq!(cache.adopt(&epoch, "e1").await.unwrap(), ["e1"]);
        cache.bump(&changed, "d1").await.unwrap();
        for round in 0..5 {
            flood(&cache, round).await;
            // Read once per turn: that keeps it.
            let found = cache.read(&epoch, "page").await.unwrap();
            assert_eq!(found.tokens, vec![Some("e1".to_owned())], "turn {round}");
            // Adopted or bumped once per turn: that keeps it too.
            assert_eq!(cache.adopt(&changed, "fresh").await.unwrap(), ["d1"]);
        }
    }

    #[tokio::test]
    async fn tokens_not_used_for_two_turns_come_back_fresh() {
        let cache = MemoryBackend::new(1 << 20, Duration::from_secs(60));
        let gens = vec!["g:vehicle:1".to_owned()];
        assert_eq!(cache.adopt(&gens, "t1").await.unwrap(), ["t1"]);
        cache.fill("page", "t1", fill(7)).await.unwrap();
        flood(&cache, 0).await;
        flood(&cache, 1).await;
        let found = cache.read(&gens, "page").await.unwrap();
        assert_eq!(found.tokens, vec![None], "dropped to make room");
        // The entry is still there, made under a token that no longer is:
        // the token adopted now is the caller's fresh one, so the entry's
        // stamp no longer matches and it is not served.
        assert_eq!(found.entry.unwrap().stamp, "t1");
        assert_eq!(cache.adopt(&gens, "t2").await.unwrap(), ["t2"]);
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
