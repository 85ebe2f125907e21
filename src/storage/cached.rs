//! The cache in front of a store: reads through, invalidation on writes.
//!
//! # What is cached
//!
//! `get_allocation`, history pages, available-vehicle pages, and the
//! employee and vehicle lookups; each entry for at most the cache TTL. Only
//! answers are cached, never refusals, and the cache never decides a rule:
//! writes, and the reads they make to check existence and uniqueness, go to
//! the store.
//!
//! # Generations
//!
//! Every entry depends on `epoch` (bumped by seeding and resets) and on
//! more *generations*:
//!
//! | entry                     | generations                                  |
//! |---------------------------|----------------------------------------------|
//! | allocation by id          | `alloc:<id>`                                 |
//! | history page              | `employee:<id>`, `vehicle:<id>` or `driver:<id>` when the filter names one (in that order), else `history` |
//! | available vehicles on `d` | `date:<d>` and `fleet:vehicles`              |
//! | employee, driver          | `fleet:employee:<id>`, `fleet:driver:<id>`   |
//! | vehicle (on a day)        | `fleet:vehicle:<id>`                         |
//!
//! Fleet changes bump the lookups of what they changed (a driver's change
//! also those of the vehicles they drive), `fleet:vehicles` when a vehicle
//! or driver changed, the `date` of each bookable day a block covers, and
//! everything of the bookings they cancelled or gave another driver.
//!
//! Each generation has a current random *token*. An entry is stored with a
//! *stamp*: the tokens of its generations as the filling reader saw them
//! before reading the store. An entry is served only while its stamp equals
//! the current tokens.
//!
//! After a write commits, and before it is acknowledged, every generation it
//! may have changed gets a new token: for each booking before and after the
//! write, its `alloc` (unless it is new: nothing is cached for it yet),
//! `employee`, `vehicle`, `driver` and `date` generations, and `history`. A write whose outcome is unknown (the store
//! failed mid-way) bumps `epoch`, which retires everything.
//!
//! # Why no read returns data older than an acknowledged write
//!
//! A read fetches the tokens and the entry together (one `MGET` in Redis).
//! Take a write W acknowledged at time `a`, and a read R that starts after
//! `a`. W gave its generations new tokens before `a`, so R sees those tokens,
//! or later ones, and serves only an entry stamped with them. Such an entry
//! was filled by a reader that saw those tokens before reading the store,
//! hence read the store after W's bump, hence after W committed. So R either
//! misses and reads the store, or hits an entry at least as new as W.
//!
//! The race that breaks naive invalidation (`DEL key` after writing) is
//! covered: reader R1 sees token `t1` and reads the store; W commits and
//! bumps to `t2`; R1 then fills its old value stamped `t1`. Its stamp is not
//! the current token, so nobody is served it; the next reader replaces it.
//!
//! Tokens are random, never counters: a token that expired (or that Redis
//! evicted) is replaced by a fresh one that no entry carries, so losing a
//! token can cost a miss, never a stale hit. A missing token is set with
//! `SET NX GET`, so racing readers agree on it.
//!
//! # When Redis fails
//!
//! Reads fall back to the store; nothing fails for the client. A bump that
//! cannot be delivered is kept and retried before this process uses the
//! cache again, so this replica never reads past its own writes. Another
//! replica that still reaches Redis while this one cannot may serve entries
//! older than such a write, for at most the TTL: the guarantee above holds
//! for writers that can reach Redis.

use std::any::Any;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use crate::cache::{CacheBackend, Fill, Payload, SingleFlight};
use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, Driver, Employee, FleetEntity, FleetOutcome,
    FleetRequest, HistoryCursor, HistoryFilter, NewAllocation, Page, PageKey, PageRequest,
    UpdatedAllocation, Vehicle, VehicleBlock,
};
use crate::metrics::{CacheCounters, CacheKind, CacheResult};
use crate::storage::{BookingStore, FleetStore, Maintenance};
use crate::storage::{FleetPass, FleetSession, Store, StoreError, StoreResult, Verdicts};

/// The generation every entry depends on.
const EPOCH: &str = "epoch";

/// The most generations a write bumps one by one; more, and it bumps the
/// epoch.
const MAX_BUMPED: usize = 1000;

/// Hit, miss and error counts since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Cache calls that failed (the store answered instead).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

type Shared = StoreResult<Arc<dyn Any + Send + Sync>>;

/// A [`Store`] with a cache in front of its reads.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<dyn CacheBackend>,
    flights: SingleFlight<Shared>,
    /// Generations whose bump could not be delivered yet (shared with
    /// fleet sessions, which invalidate when they end).
    pending: Arc<Mutex<BTreeSet<String>>>,
    counters: Arc<Counters>,
    metrics: CacheCounters,
}

fn token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The generations a write to `bookings` may have changed.
fn touched(bookings: &[&Allocation]) -> Vec<String> {
    let mut generations = BTreeSet::from(["history".to_owned()]);
    for b in bookings {
        generations.insert(format!("alloc:{}", b.id));
        generations.insert(format!("employee:{}", b.employee_id));
        generations.insert(format!("vehicle:{}", b.vehicle_id));
        generations.insert(format!("driver:{}", b.driver_id));
        generations.insert(format!("date:{}", b.date));
    }
    generations.into_iter().collect()
}

/// The generation of every vehicle as listed (availability pages): any
/// change to a vehicle or a driver bumps it.
const FLEET_VEHICLES: &str = "fleet:vehicles";

/// The generations fleet changes may have changed.
fn fleet_touched<'a>(outcomes: impl IntoIterator<Item = &'a FleetOutcome>) -> Vec<String> {
    let mut generations = BTreeSet::new();
    for outcome in outcomes.into_iter().filter(|o| o.changed) {
        match &outcome.entity {
            FleetEntity::Employee(e) => {
                generations.insert(format!("fleet:employee:{}", e.id));
            }
            FleetEntity::Driver(d) => {
                generations.insert(format!("fleet:driver:{}", d.id));
                generations.insert(FLEET_VEHICLES.to_owned());
            }
            FleetEntity::Vehicle(_) => {
                generations.insert(FLEET_VEHICLES.to_owned());
            }
            FleetEntity::Block(_) => {}
        }
        for v in &outcome.vehicles_touched {
            generations.insert(format!("fleet:vehicle:{v}"));
        }
        for d in &outcome.dates_touched {
            generations.insert(format!("date:{d}"));
        }
        let bookings: Vec<&Allocation> = outcome
            .cancelled
            .iter()
            .chain(outcome.redriven.iter().flat_map(|(b, a)| [b, a]))
            .collect();
        if !bookings.is_empty() {
            generations.extend(touched(&bookings));
        }
    }
    generations.into_iter().collect()
}

/// What fleet outcomes invalidate: a bulk import would bump one key per
/// row, more than one Redis round trip should carry, so past
/// [`MAX_BUMPED`] it retires everything instead.
fn fleet_invalidation(outcomes: &[FleetOutcome]) -> Vec<String> {
    let touched = fleet_touched(outcomes);
    if touched.len() > MAX_BUMPED {
        vec![EPOCH.to_owned()]
    } else {
        touched
    }
}

/// The one generation a history page depends on besides the epoch.
fn history_generation(filter: &HistoryFilter) -> String {
    if let Some(id) = &filter.employee_id {
        format!("employee:{id}")
    } else if let Some(id) = &filter.vehicle_id {
        format!("vehicle:{id}")
    } else if let Some(id) = &filter.driver_id {
        format!("driver:{id}")
    } else {
        "history".to_owned()
    }
}

/// An unambiguous text for entry keys (ids may hold any character).
fn key_text(parts: &impl Serialize) -> String {
    serde_json::to_string(parts).expect("plain values serialize")
}

/// See [`CachedStore::flush_pending`].
async fn flush_pending(
    cache: &dyn CacheBackend,
    pending: &Mutex<BTreeSet<String>>,
    counters: &Counters,
) -> bool {
    let waiting: Vec<String> = {
        let pending = pending.lock().expect("pending lock poisoned");
        if pending.is_empty() {
            return true;
        }
        pending.iter().cloned().collect()
    };
    if cache.bump(&waiting, &token()).await.is_err() {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let mut pending = pending.lock().expect("pending lock poisoned");
    for generation in &waiting {
        pending.remove(generation);
    }
    pending.is_empty()
}

/// See [`CachedStore::invalidate`].
async fn invalidate(
    cache: &dyn CacheBackend,
    pending: &Mutex<BTreeSet<String>>,
    counters: &Counters,
    generations: Vec<String>,
) {
    pending
        .lock()
        .expect("pending lock poisoned")
        .extend(generations);
    flush_pending(cache, pending, counters).await;
}

/// A fleet session behind the cache: gathers what its chunks touch (at
/// most [`MAX_BUMPED`] generations, then the epoch) and invalidates it
/// once the session has committed.
struct CachedSession {
    inner: Box<dyn FleetSession>,
    pass: FleetPass,
    cache: Arc<dyn CacheBackend>,
    pending: Arc<Mutex<BTreeSet<String>>>,
    counters: Arc<Counters>,
    touched: BTreeSet<String>,
}

#[async_trait]
impl FleetSession for CachedSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> StoreResult<Verdicts> {
        let verdicts = self.inner.run(chunk).await?;
        if self.pass == FleetPass::Apply && !self.touched.contains(EPOCH) {
            self.touched
                .extend(fleet_touched(verdicts.iter().flatten()));
            if self.touched.len() > MAX_BUMPED {
                self.touched = BTreeSet::from([EPOCH.to_owned()]);
            }
        }
        Ok(verdicts)
    }

    async fn finish(self: Box<Self>) -> StoreResult<()> {
        let Self {
            inner,
            pass,
            cache,
            pending,
            counters,
            touched,
        } = *self;
        let finished = inner.finish().await;
        let generations = match &finished {
            _ if pass == FleetPass::Check => return finished,
            Ok(()) => touched.into_iter().collect(),
            Err(StoreError::Rejected(_)) => return finished,
            // Whether it committed is unknown.
            Err(_) => vec![EPOCH.to_owned()],
        };
        invalidate(cache.as_ref(), &pending, &counters, generations).await;
        finished
    }
}

impl CachedStore {
    /// `inner` with `cache` in front of it.
    pub fn new(inner: Arc<dyn Store>, cache: Arc<dyn CacheBackend>) -> Self {
        Self {
            inner,
            metrics: CacheCounters::new(cache.name()),
            cache,
            flights: SingleFlight::default(),
            pending: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Hit, miss and error counts since start.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }

    /// Logs the counts of each `interval` that saw traffic, until the store
    /// is dropped.
    pub fn log_stats_every(self: &Arc<Self>, interval: Duration) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            let mut last = CacheStats::default();
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else { return };
                let now = store.stats();
                let (hits, misses, errors) = (
                    now.hits - last.hits,
                    now.misses - last.misses,
                    now.errors - last.errors,
                );
                if hits + misses + errors > 0 {
                    let ratio = hits as f64 / (hits + misses).max(1) as f64;
                    tracing::info!(hits, misses, errors, hit_ratio = %format!("{ratio:.3}"), "cache");
                }
                last = now;
            }
        });
    }

    fn error(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Delivers bumps that failed before; `false` while that is impossible,
    /// in which case the cache must not be read.
    async fn flush_pending(&self) -> bool {
        flush_pending(self.cache.as_ref(), &self.pending, &self.counters).await
    }

    /// How many invalidations could not be delivered yet (Redis was
    /// unreachable); they go with the next write or read.
    pub fn undelivered(&self) -> usize {
        self.pending.lock().expect("pending lock poisoned").len()
    }

    /// Retires every entry that depends on `generations`, together with
    /// any earlier bumps still waiting; what cannot be delivered now waits
    /// for the next call.
    async fn invalidate(&self, generations: Vec<String>) {
        invalidate(
            self.cache.as_ref(),
            &self.pending,
            &self.counters,
            generations,
        )
        .await;
    }

    /// Invalidates after a write: what it touched, or everything when its
    /// outcome is unknown.
    async fn after_write<T>(
        &self,
        result: &StoreResult<T>,
        touched: impl FnOnce(&T) -> Vec<String>,
    ) {
        match result {
            Ok(value) => self.invalidate(touched(value)).await,
            Err(StoreError::Rejected(_)) => {}
            Err(_) => self.invalidate(vec![EPOCH.to_owned()]).await,
        }
    }

    /// Deletes the cached lookups of erased employees: the bump before made
    /// them unservable, this removes what they held. (A read that began
    /// before the erasure may still store its copy after this; it is never
    /// served, and expires within the TTL.)
    async fn forget_erased(&self, outcomes: &[FleetOutcome]) {
        let keys: Vec<String> = outcomes
            .iter()
            .filter(|o| o.erased)
            .filter_map(|o| match &o.entity {
                FleetEntity::Employee(e) => Some(["employee:", &e.id].concat()),
                _ => None,
            })
            .collect();
        if !keys.is_empty() && self.cache.forget(&keys).await.is_err() {
            self.error();
            tracing::warn!(
                "could not delete the cached copies of an erased employee; they are not served and expire within the cache TTL"
            );
        }
    }

    /// Reads through the cache: `read` runs on a miss, once per key however
    /// many callers miss at the same time.
    async fn cached<T, F, Fut>(
        &self,
        kind: CacheKind,
        generations: Vec<String>,
        key: String,
        read: F,
    ) -> StoreResult<T>
    where
        T: Serialize + DeserializeOwned + Weigh + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        if !self.flush_pending().await {
            self.metrics.record(kind, CacheResult::Bypass);
            return read().await;
        }
        let generations: Vec<String> = std::iter::once(EPOCH.to_owned())
            .chain(generations)
            .collect();
        let span = tracing::debug_span!("cache", backend = self.cache.name(), operation = "read");
        let Ok(found) = self.cache.read(&generations, &key).instrument(span).await else {
            self.error();
            self.metrics.record(kind, CacheResult::Error);
            return read().await;
        };
        let tokens = if found.tokens.iter().all(Option::is_some) {
            found.tokens.into_iter().flatten().collect()
        } else {
            match self.cache.adopt(&generations, &token()).await {
                Ok(tokens) => tokens,
                Err(_) => {
                    self.error();
                    self.metrics.record(kind, CacheResult::Error);
                    return read().await;
                }
            }
        };
        if let Some(entry) = found.entry.filter(|entry| stamped(&entry.stamp, &tokens)) {
            match decode::<T>(entry.payload) {
                Some(value) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    self.metrics.record(kind, CacheResult::Hit);
                    return Ok(value);
                }
                None => {
                    tracing::warn!(
                        %key,
                        request_id = crate::telemetry::request_id(),
                        "unreadable cache entry; reading the store"
                    );
                    self.error();
                }
            }
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.metrics.record(kind, CacheResult::Miss);
        let stamp = tokens.join(".");
        let flight = format!("{key}@{stamp}");
        let shared = self
            .flights
            .run(&flight, || async {
                let value = Arc::new(read().await?);
                let serialize = || match serde_json::to_vec(value.as_ref()) {
                    Ok(bytes) => Some(bytes),
                    Err(error) => {
                        tracing::error!(
                            %error,
                            request_id = crate::telemetry::request_id(),
                            "cannot serialize a cache entry"
                        );
                        None
                    }
                };
                let fill = Fill {
                    value: Arc::clone(&value) as Arc<dyn Any + Send + Sync>,
                    serialize: &serialize,
                    weight: value.weigh(),
                };
                if self.cache.fill(&key, &stamp, fill).await.is_err() {
                    self.error();
                }
                Ok(value as Arc<dyn Any + Send + Sync>)
            })
            .await?;
        Ok(shared
            .downcast_ref::<T>()
            .expect("one key, one type")
            .clone())
    }
}

/// Whether `stamp` is `tokens` joined by dots, as an entry made under them
/// is stamped; without joining them, as every hit asks.
fn stamped(stamp: &str, tokens: &[String]) -> bool {
    let mut rest = stamp;
    for (i, token) in tokens.iter().enumerate() {
        let after_dot = if i == 0 {
            Some(rest)
        } else {
            rest.strip_prefix('.')
        };
        match after_dot.and_then(|r| r.strip_prefix(token.as_str())) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// A cached payload as a value of `T`.
fn decode<T: DeserializeOwned + Clone + 'static>(payload: Payload) -> Option<T> {
    match payload {
        Payload::Value(value) => value.downcast_ref::<T>().cloned(),
        Payload::Bytes(bytes) => serde_json::from_slice(&bytes).ok(),
    }
}

/// Roughly how many bytes a cached value holds, for the in-process cache's
/// size limit.
pub trait Weigh {
    fn weigh(&self) -> u32;
}

impl Weigh for Allocation {
    fn weigh(&self) -> u32 {
        let text = self.id.len()
            + self.employee_id.len()
            + self.vehicle_id.len()
            + self.driver_id.len()
            + self.purpose.len();
        (std::mem::size_of::<Self>() + text) as u32
    }
}

impl Weigh for Employee {
    fn weigh(&self) -> u32 {
        let text = self.id.len() + self.name.len() + self.email.len() + self.department.len();
        (std::mem::size_of::<Self>() + text) as u32
    }
}

impl Weigh for Driver {
    fn weigh(&self) -> u32 {
        let text = self.id.len() + self.name.len() + self.phone.len() + self.license_number.len();
        (std::mem::size_of::<Self>() + text) as u32
    }
}

impl Weigh for Vehicle {
    fn weigh(&self) -> u32 {
        let text = self.id.len() + self.registration.len() + self.make.len() + self.model.len();
        let driver = self.driver.as_ref().map_or(0, Weigh::weigh);
        (std::mem::size_of::<Self>() + text) as u32 + driver
    }
}

impl<T: Weigh> Weigh for Page<T> {
    fn weigh(&self) -> u32 {
        self.items
            .iter()
            .map(Weigh::weigh)
            .fold(std::mem::size_of::<Self>() as u32, u32::saturating_add)
    }
}

#[async_trait]
impl BookingStore for CachedStore {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        let result = self.inner.create_allocation(new).await;
        // A new booking has no entry of its own yet (refusals are not
        // cached), so its `alloc` generation is left alone: one token less
        // per create.
        self.after_write(&result, |a| {
            let mut generations = touched(&[a]);
            generations.retain(|g| !g.starts_with("alloc:"));
            generations
        })
        .await;
        result
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        self.cached(
            CacheKind::Allocation,
            // Joined rather than formatted: every read pays for its keys.
            vec![["alloc:", id].concat()],
            ["allocation:", id].concat(),
            || self.inner.get_allocation(id),
        )
        .await
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        let result = self.inner.update_allocation(update).await;
        self.after_write(&result, |u| touched(&[&u.before, &u.after]))
            .await;
        result
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        let result = self.inner.delete_allocation(deletion).await;
        self.after_write(&result, |a| touched(&[a])).await;
        result
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        let base = format!(
            "history:{}",
            key_text(&(
                filter.fingerprint_parts(),
                page.after.as_ref().map(|c| (c.date, &c.id)),
                page.size
            ))
        );
        self.cached(
            CacheKind::History,
            vec![history_generation(filter)],
            base,
            || self.inner.list_allocation_history(filter, page.clone()),
        )
        .await
    }
}

#[async_trait]
impl FleetStore for CachedStore {
    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        self.cached(
            CacheKind::Employee,
            vec![["fleet:employee:", id].concat()],
            ["employee:", id].concat(),
            || self.inner.get_employee(id),
        )
        .await
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        self.inner
            .list_employees(department, show_deactivated, page)
            .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<Driver> {
        self.cached(
            CacheKind::Driver,
            vec![["fleet:driver:", id].concat()],
            ["driver:", id].concat(),
            || self.inner.get_driver(id),
        )
        .await
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>> {
        self.inner.list_drivers(show_deactivated, page).await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        // The driver depends on the day, so the day is in the key; a new
        // day starts a new entry.
        self.cached(
            CacheKind::Vehicle,
            vec![["fleet:vehicle:", id].concat()],
            format!("vehicle:{}", key_text(&(id, on))),
            || self.inner.get_vehicle(id, on),
        )
        .await
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.inner.list_vehicles(show_retired, on, page).await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        let base = format!("available:{}", key_text(&(date, &page.after, page.size)));
        self.cached(
            CacheKind::AvailableVehicles,
            vec![format!("date:{date}"), FLEET_VEHICLES.to_owned()],
            base,
            || self.inner.list_available_vehicles(date, page.clone()),
        )
        .await
    }

    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<VehicleBlock>> {
        self.inner.list_vehicle_blocks(vehicle_id, page).await
    }

    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>> {
        let result = self.inner.apply_fleet(requests).await;
        self.after_write(&result, |outcomes| fleet_invalidation(outcomes))
            .await;
        if let Ok(outcomes) = &result {
            self.forget_erased(outcomes).await;
        }
        result
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        let inner = self.inner.fleet_session(pass).await?;
        Ok(Box::new(CachedSession {
            inner,
            pass,
            cache: Arc::clone(&self.cache),
            pending: Arc::clone(&self.pending),
            counters: Arc::clone(&self.counters),
            touched: BTreeSet::new(),
        }))
    }
}

#[async_trait]
impl Maintenance for CachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.inner.is_empty().await
    }

    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey> {
        self.inner.page_token_key(candidate).await
    }

    async fn reset(&self) -> StoreResult<()> {
        let result = self.inner.reset().await;
        self.invalidate(vec![EPOCH.to_owned()]).await;
        result
    }

    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        let result = self.inner.insert_fleet(employees, vehicles).await;
        self.invalidate(vec![EPOCH.to_owned()]).await;
        result
    }

    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        let result = self.inner.insert_allocations(allocations).await;
        self.invalidate(vec![EPOCH.to_owned()]).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::cache::MemoryBackend;
    use crate::storage::sqlite::SqliteStore;

    #[test]
    fn an_entry_is_stamped_with_exactly_its_tokens_joined() {
        let tokens = |t: &[&str]| t.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        for (stamp, given) in [
            ("a.b", &["a", "b"][..]),
            ("a.b", &["a"][..]),
            ("a.b", &["a", "b", "c"][..]),
            ("a.bc", &["a", "b"][..]),
            ("ab", &["a", "b"][..]),
            ("a..b", &["a", "", "b"][..]),
            ("a.b.c", &["a.b", "c"][..]),
            ("a.b.c", &["a", "b.c"][..]),
            ("", &[][..]),
            ("", &[""][..]),
            ("x", &[][..]),
            (".", &["", ""][..]),
        ] {
            let given = tokens(given);
            assert_eq!(
                stamped(stamp, &given),
                stamp == given.join("."),
                "{stamp:?} {given:?}"
            );
        }
    }

    fn booking(id: &str, employee: &str, vehicle: &str, day: &str) -> Allocation {
        Allocation {
            id: id.into(),
            employee_id: employee.into(),
            vehicle_id: vehicle.into(),
            driver_id: vehicle.replace("veh", "drv"),
            date: day.parse().unwrap(),
            purpose: String::new(),
            create_time: chrono::DateTime::UNIX_EPOCH,
            update_time: chrono::DateTime::UNIX_EPOCH,
            version: 1,
        }
    }

    fn employee_outcome(n: usize) -> FleetOutcome {
        FleetOutcome {
            entity: FleetEntity::Employee(Employee {
                id: format!("e{n}"),
                name: String::new(),
                email: String::new(),
                department: String::new(),
                active: true,
                create_time: chrono::DateTime::UNIX_EPOCH,
                update_time: chrono::DateTime::UNIX_EPOCH,
                version: 1,
            }),
            changed: true,
            cancelled: Vec::new(),
            redriven: Vec::new(),
            vehicles_touched: Vec::new(),
            dates_touched: Vec::new(),
            before: None,
            timelines_changed: Vec::new(),
            erased: false,
        }
    }

    #[test]
    fn a_bulk_fleet_write_retires_everything_instead_of_a_key_per_row() {
        let few: Vec<FleetOutcome> = (0..MAX_BUMPED).map(employee_outcome).collect();
        assert_eq!(fleet_invalidation(&few).len(), MAX_BUMPED);
        assert_eq!(
            fleet_invalidation(&few[..2]),
            ["fleet:employee:e0", "fleet:employee:e1"]
        );
        let many: Vec<FleetOutcome> = (0..=MAX_BUMPED).map(employee_outcome).collect();
        assert_eq!(fleet_invalidation(&many), [EPOCH]);
    }

    #[test]
    fn a_write_touches_every_generation_of_the_bookings_before_and_after() {
        let before = booking("a1", "emp-1", "veh-1", "2026-12-01");
        let after = booking("a1", "emp-1", "veh-2", "2026-12-02");
        assert_eq!(
            touched(&[&before, &after]),
            [
                "alloc:a1",
                "date:2026-12-01",
                "date:2026-12-02",
                "driver:drv-1",
                "driver:drv-2",
                "employee:emp-1",
                "history",
                "vehicle:veh-1",
                "vehicle:veh-2",
            ]
        );
    }

    #[test]
    fn a_history_page_depends_on_its_most_specific_filter() {
        let by = |e: Option<&str>, v: Option<&str>, d: Option<&str>| HistoryFilter {
            employee_id: e.map(Into::into),
            vehicle_id: v.map(Into::into),
            driver_id: d.map(Into::into),
            ..Default::default()
        };
        assert_eq!(
            history_generation(&by(Some("e"), Some("v"), None)),
            "employee:e"
        );
        assert_eq!(
            history_generation(&by(None, Some("v"), Some("d"))),
            "vehicle:v"
        );
        assert_eq!(history_generation(&by(None, None, Some("d"))), "driver:d");
        assert_eq!(history_generation(&HistoryFilter::default()), "history");
    }

    /// Log lines, each sent to the test as it is written.
    struct Lines(mpsc::UnboundedSender<String>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn next_cache_line(lines: &mut mpsc::UnboundedReceiver<String>) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.recv())
                .await
                .expect("a cache line within 10 s")
                .expect("the subscriber is alive");
            if line.contains(" cache ") {
                return line;
            }
        }
    }

    #[tokio::test]
    async fn the_counts_of_each_busy_interval_are_logged() {
        let (sender, mut lines) = mpsc::unbounded_channel();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Lines(sender.clone()))
            .finish();
        // This runtime has one thread, so the logging task runs under it too.
        let _logging = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CachedStore::new(
            Arc::new(SqliteStore::open(dir.path()).unwrap()),
            Arc::new(MemoryBackend::new(1 << 20, Duration::from_secs(60))),
        ));

        // Refusals are counted as misses, and not cached.
        for _ in 0..2 {
            assert!(store.get_employee("nobody").await.is_err());
        }
        store.log_stats_every(Duration::from_millis(10));
        let line = next_cache_line(&mut lines).await;
        assert!(
            line.contains("hits=0 misses=2 errors=0 hit_ratio=0.000"),
            "{line}"
        );

        // Each line counts its own interval, not everything since start.
        assert!(store.get_employee("nobody").await.is_err());
        let line = next_cache_line(&mut lines).await;
        assert!(line.contains("hits=0 misses=1 errors=0"), "{line}");
    }
}
