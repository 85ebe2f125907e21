//! Series updated on every call, buffered per thread.
//!
//! The exporter keeps a counter in one atomic shared by every thread, and a
//! histogram's samples in one shared queue, and each update also bumps a
//! shared generation number. With calls served on every core, each update
//! moves those cache lines from core to core, a cost that grows with the
//! cores and that instruction counts do not show. Here a thread adds to a
//! buffer of its own, behind a lock that another thread takes only to
//! flush it. [`flush`] hands every buffer's counts and samples to the
//! exporter before `/metrics` is rendered and at each upkeep, so a scrape
//! sees every update made before it; a thread also hands a series' samples
//! on by itself once it holds [`BURST`] of them, in one go.
//!
//! A series is registered here by name and labels, once per process
//! whoever asks for it. It is shown from then on (at zero), as the
//! exporter's own series are, or, made with `on_first_use`, from its first
//! update: one per outcome, say, where most outcomes never happen.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Histogram, Key, Label, Level, Metadata};
use thread_local::ThreadLocal;

/// Samples a thread keeps of one series before handing them on itself.
const BURST: usize = 256;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A counter updated in per-thread buffers; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct LocalCounter(u32);

/// A histogram updated in per-thread buffers; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct LocalHistogram(u32);

/// A series and, from its first flush, the exporter's handle for it.
struct Series<H> {
    key: Key,
    handle: OnceLock<H>,
}

/// The series of one kind, each with an id: its place in `series`.
struct Table<H> {
    series: Vec<Series<H>>,
    ids: HashMap<Key, u32>,
}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Self {
            series: Vec::new(),
            ids: HashMap::new(),
        }
    }
}

impl<H> Table<H> {
    /// The id of `name` with `labels`, registered if new.
    fn register(&mut self, name: &'static str, labels: Vec<Label>) -> u32 {
        let key = Key::from_parts(name, labels);
        *self.ids.entry(key.clone()).or_insert_with(|| {
            self.series.push(Series {
                key,
                handle: OnceLock::new(),
            });
            u32::try_from(self.series.len() - 1).expect("fewer than 2^32 series")
        })
    }
}

#[derive(Default)]
struct Registry {
    counters: Table<Counter>,
    histograms: Table<Histogram>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(Default::default);

/// One thread's updates not yet handed on, by series id.
#[derive(Default)]
struct Shard {
    counts: Vec<u64>,
    samples: Vec<Vec<f64>>,
}

/// A cache line (two, as x86 prefetches in pairs) to each thread's shard:
/// neighbours in the thread-local table must not share one.
#[derive(Default)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

static SHARDS: ThreadLocal<Padded> = ThreadLocal::new();

fn registry() -> std::sync::RwLockReadGuard<'static, Registry> {
    REGISTRY.read().unwrap_or_else(PoisonError::into_inner)
}

fn registry_mut() -> std::sync::RwLockWriteGuard<'static, Registry> {
    REGISTRY.write().unwrap_or_else(PoisonError::into_inner)
}

/// This thread's shard, locked.
fn shard() -> std::sync::MutexGuard<'static, Shard> {
    SHARDS
        .get_or_default()
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Series<Counter> {
    fn counter(&self) -> &Counter {
        self.handle
            .get_or_init(|| metrics::with_recorder(|r| r.register_counter(&self.key, &METADATA)))
    }
}

impl Series<Histogram> {
    fn histogram(&self) -> &Histogram {
        self.handle
            .get_or_init(|| metrics::with_recorder(|r| r.register_histogram(&self.key, &METADATA)))
    }

    fn take(&self, samples: &mut Vec<f64>) {
        let histogram = self.histogram();
        for value in samples.drain(..) {
            histogram.record(value);
        }
    }
}

impl LocalCounter {
    /// The counter `name` with `labels`, shown from now: the same one for
    /// every caller.
    pub fn new(name: &'static str, labels: Vec<Label>) -> Self {
        let counter = Self::on_first_use(name, labels);
        if super::installed() {
            registry().counters.series[counter.0 as usize].counter();
        }
        counter
    }

    /// The counter `name` with `labels`, shown from its first update.
    pub fn on_first_use(name: &'static str, labels: Vec<Label>) -> Self {
        Self(registry_mut().counters.register(name, labels))
    }

    pub fn increment(self, n: u64) {
        // Off, as the facade is, until a recorder is installed.
        if !super::installed() {
            return;
        }
        let mut shard = shard();
        let id = self.0 as usize;
        if id >= shard.counts.len() {
            shard.counts.resize(id + 1, 0);
        }
        shard.counts[id] += n;
    }
}

impl LocalHistogram {
    /// The histogram `name` with `labels`, shown from now: the same one
    /// for every caller.
    pub fn new(name: &'static str, labels: Vec<Label>) -> Self {
        let id = registry_mut().histograms.register(name, labels);
        if super::installed() {
            registry().histograms.series[id as usize].histogram();
        }
        Self(id)
    }

    pub fn record(self, value: f64) {
        if !super::installed() {
            return;
        }
        let mut shard = shard();
        let id = self.0 as usize;
        if id >= shard.samples.len() {
            shard.samples.resize_with(id + 1, Vec::new);
        }
        let samples = &mut shard.samples[id];
        samples.push(value);
        if samples.len() >= BURST {
            registry().histograms.series[id].take(samples);
        }
    }
}

/// Hands every thread's buffered updates to the exporter.
pub fn flush() {
    for shard in SHARDS.iter() {
        let mut shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
        let registry = registry();
        for (id, count) in shard.counts.iter_mut().enumerate() {
            if *count > 0 {
                registry.counters.series[id]
                    .counter()
                    .increment(std::mem::take(count));
            }
        }
        for (id, samples) in shard.samples.iter_mut().enumerate() {
            if !samples.is_empty() {
                registry.histograms.series[id].take(samples);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::sample;

    fn label(value: &'static str) -> Vec<Label> {
        vec![Label::new("case", value)]
    }

    #[test]
    fn every_thread_s_updates_reach_the_next_scrape() {
        let _turn = crate::metrics::tests::scrape_turn();
        let handle = crate::metrics::install();
        let counter = LocalCounter::new("local_test_calls_total", label("threads"));
        let histogram = LocalHistogram::new("local_test_calls_seconds", label("threads"));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.increment(1);
                    }
                    // More than a burst: some go on by themselves.
                    for _ in 0..(BURST + 44) {
                        histogram.record(0.5);
                    }
                });
            }
        });
        let text = crate::metrics::render(&handle);
        assert_eq!(
            sample(&text, "local_test_calls_total{case=\"threads\"}"),
            Some(4000.0),
            "{text}"
        );
        let count = 4.0 * (BURST + 44) as f64;
        assert_eq!(
            sample(&text, "local_test_calls_seconds_count{case=\"threads\"}"),
            Some(count)
        );
        assert_eq!(
            sample(&text, "local_test_calls_seconds_sum{case=\"threads\"}"),
            Some(count * 0.5)
        );
        // Nothing is handed on twice.
        let again = crate::metrics::render(&handle);
        assert_eq!(
            sample(&again, "local_test_calls_total{case=\"threads\"}"),
            Some(4000.0)
        );
    }

    #[test]
    fn a_thread_hands_a_burst_of_samples_on_by_itself() {
        let _turn = crate::metrics::tests::scrape_turn();
        let handle = crate::metrics::install();
        let histogram = LocalHistogram::new("local_test_burst_seconds", label("burst"));
        std::thread::spawn(move || {
            for _ in 0..(BURST + 1) {
                histogram.record(1.0);
            }
        })
        .join()
        .unwrap();
        // Rendered without a flush: only the burst is there.
        let text = handle.render();
        assert_eq!(
            sample(&text, "local_test_burst_seconds_count{case=\"burst\"}"),
            Some(BURST as f64),
            "{text}"
        );
    }

    #[test]
    fn a_series_is_one_whoever_asks_for_it_and_shown_when_asked() {
        let _turn = crate::metrics::tests::scrape_turn();
        let handle = crate::metrics::install();
        let one = LocalCounter::on_first_use("local_test_shared_total", label("shared"));
        let other = LocalCounter::on_first_use("local_test_shared_total", label("shared"));
        let unused = LocalCounter::on_first_use("local_test_shared_total", label("unused"));
        let _zero = LocalCounter::new("local_test_shared_total", label("zero"));
        assert_eq!(one.0, other.0);
        assert_ne!(one.0, unused.0);
        one.increment(2);
        other.increment(3);
        let text = crate::metrics::render(&handle);
        assert_eq!(
            sample(&text, "local_test_shared_total{case=\"shared\"}"),
            Some(5.0)
        );
        assert!(!text.contains("case=\"unused\""), "{text}");
        assert_eq!(
            sample(&text, "local_test_shared_total{case=\"zero\"}"),
            Some(0.0)
        );
    }
}
