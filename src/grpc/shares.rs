//! Slots counted per caller, so that no caller can hold more than its share
//! of something the whole service has a fixed amount of: requests in flight
//! (`MAX_IN_FLIGHT_PER_CALLER`) and open event streams
//! (`MAX_WATCH_STREAMS_PER_CALLER`, within `MAX_WATCH_STREAMS`).
//!
//! A caller is named by [`crate::domain::context::caller_key`]. Only callers
//! holding slots have an entry, so memory follows what is in use, not how
//! many callers were ever seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

type Shard = Mutex<HashMap<Box<str>, usize, foldhash::fast::RandomState>>;

/// Independent locks, so that calls of different callers rarely meet.
const SHARDS: usize = 16;

/// See the module documentation.
pub struct CallerSlots {
    per_caller: usize,
    total: usize,
    taken: AtomicUsize,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// The caller holds `per_caller` slots already.
    Caller,
    /// Every slot of the service is taken.
    Total,
}

/// A slot, given back when dropped.
pub struct Slot {
    owner: Arc<CallerSlots>,
    key: String,
}

impl CallerSlots {
    /// `per_caller` slots for each caller, and `total` for all of them.
    pub fn new(per_caller: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_caller: per_caller.max(1),
            total: total.max(1),
            taken: AtomicUsize::new(0),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        })
    }

    fn shard(&self, key: &str) -> &Shard {
        use std::hash::BuildHasher as _;
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// A slot for `key`, unless it holds its share already or every slot is
    /// taken.
    pub fn take(self: &Arc<Self>, key: String) -> Result<Slot, NoSlot> {
        if self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(NoSlot::Total);
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.get_mut(key.as_str()) {
            Some(held) if *held >= self.per_caller => {
                drop(shard);
                self.taken.fetch_sub(1, Ordering::AcqRel);
                return Err(NoSlot::Caller);
            }
            Some(held) => *held += 1,
            None => {
                shard.insert(key.as_str().into(), 1);
            }
        }
        drop(shard);
        Ok(Slot {
            owner: Arc::clone(self),
            key,
        })
    }

    /// Slots taken, over every caller.
    #[cfg(test)]
    fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Slots `key` holds.
    #[cfg(test)]
    fn held_by(&self, key: &str) -> usize {
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.get(key).copied().unwrap_or(0)
    }

    /// Callers holding slots.
    #[cfg(test)]
    fn callers(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut shard = self
            .owner
            .shard(&self.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(held) = shard.get_mut(self.key.as_str()) {
            *held -= 1;
            if *held == 0 {
                shard.remove(self.key.as_str());
            }
        }
        drop(shard);
        self.owner.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_share_and_no_more_while_others_still_get_theirs() {
        let slots = CallerSlots::new(2, 5);
        let a1 = slots.take("a".into()).unwrap();
        let _a2 = slots.take("a".into()).unwrap();
        assert_eq!(slots.take("a".into()).err(), Some(NoSlot::Caller));
        assert_eq!(slots.held_by("a"), 2);
        let _b1 = slots.take("b".into()).unwrap();
        let _b2 = slots.take("b".into()).unwrap();
        assert_eq!(slots.taken(), 4);
        drop(a1);
        let _a3 = slots
            .take("a".into())
            .expect("a slot given back is free again");
        let _c1 = slots.take("c".into()).unwrap();
        assert_eq!(slots.take("d".into()).err(), Some(NoSlot::Total));
        assert_eq!(slots.taken(), 5, "a refusal holds nothing");
    }

    #[test]
    fn callers_without_slots_leave_no_entry() {
        let slots = CallerSlots::new(3, 100);
        let held: Vec<_> = (0..50)
            .map(|i| slots.take(format!("c{i}")).unwrap())
            .collect();
        assert_eq!(slots.callers(), 50);
        drop(held);
        assert_eq!(slots.callers(), 0);
        assert_eq!(slots.taken(), 0);
    }
}
