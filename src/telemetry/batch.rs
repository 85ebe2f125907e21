//! Log lines gathered into batches on their way to `tracing-appender`.
//!
//! `tracing-appender` sends each line through a channel to its thread: an
//! allocation per line, freed on that other thread, and a wake-up, a write
//! and a flush per line whenever the thread keeps up. On this project's
//! 2-core machine that cost more CPU than formatting the line (the
//! telemetry issue's closing note has the figures). Here a line is only
//! appended to a buffer; the buffer goes to the appender as one message
//! when the next line would not fit, and at the latest after
//! [`Batches::new`]'s interval, from a thread of its own. The appender
//! still does the writing, off the request path, and still drops lines
//! rather than wait when its queue is full.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for their batch to be handed on, and where it goes.
struct Pending<W> {
    lines: Vec<u8>,
    out: W,
}

struct Shared<W> {
    pending: Mutex<Pending<W>>,
    /// The most a batch holds before it is handed on.
    capacity: usize,
}

/// Set when the ticker must hand on what is left and stop.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    signal: Condvar,
}

impl<W: std::io::Write> Shared<W> {
    fn append(&self, line: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.lines.len() + line.len() > self.capacity {
            hand_on(&mut pending);
            if line.len() >= self.capacity {
                // Goes on by itself: the buffer never grows past a batch.
                let _ = pending.out.write_all(line);
                return;
            }
        }
        pending.lines.extend_from_slice(line);
    }

    fn hand_on(&self) {
        hand_on(&mut self.pending.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

fn hand_on<W: std::io::Write>(pending: &mut Pending<W>) {
    if !pending.lines.is_empty() {
        // The appender never blocks: a full queue drops the batch.
        let _ = pending.out.write_all(&pending.lines);
        pending.lines.clear();
    }
}

/// A [`MakeWriter`] whose lines reach `W` in batches.
pub struct Batches<W> {
    shared: Arc<Shared<W>>,
}

/// Hands the last batch on, and stops the ticker, when dropped.
pub struct BatchGuard {
    stop: Arc<Stop>,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        *self
            .stop
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.signal.notify_all();
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

impl<W: std::io::Write + Send + 'static> Batches<W> {
    /// Batches of up to `capacity` bytes (a longer line goes on by itself)
    /// handed on to `out` when the next line would not fit, or by the
    /// ticker every `interval`.
    pub fn new(out: W, capacity: usize, interval: Duration) -> (Self, BatchGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(capacity),
                out,
            }),
            capacity,
        });
        let stop = Arc::new(Stop::default());
        let (ticking, told) = (Arc::clone(&shared), Arc::clone(&stop));
        let ticker = std::thread::Builder::new()
            .name("log-batches".into())
            .spawn(move || {
                let mut stop = told.stopped.lock().unwrap_or_else(PoisonError::into_inner);
                let mut next = Instant::now() + interval;
                while !*stop {
                    let now = Instant::now();
                    if now >= next {
                        ticking.hand_on();
                        next = now + interval;
                    }
                    // A spurious wake-up only goes round again.
                    stop = told
                        .signal
                        .wait_timeout(stop, next.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                // What was logged since the last hand-on.
                ticking.hand_on();
            })
            .expect("a thread for the log batches");
        let guard = BatchGuard {
            stop,
            ticker: Some(ticker),
        };
        (Self { shared }, guard)
    }
}

/// One line's writer: `tracing-subscriber` writes each formatted line
/// with a single `write_all`, so a line is never split between batches.
pub struct LineWriter<'a, W> {
    shared: &'a Shared<W>,
}

impl<W: std::io::Write> std::io::Write for LineWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: std::io::Write + 'static> MakeWriter<'a> for Batches<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::mpsc;

    use super::*;

    /// Each write it receives, sent on.
    struct Sink(mpsc::Sender<Vec<u8>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const LONG: Duration = Duration::from_secs(3600);

    fn write<W: std::io::Write + 'static>(batches: &Batches<W>, line: &str) {
        batches.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_are_handed_on_whole_and_in_order_once_a_batch_is_full() {
        let (tx, rx) = mpsc::channel();
        let (batches, _guard) = Batches::new(Sink(tx), 10, LONG);
        write(&batches, "one\n");
        write(&batches, "two\n");
        assert!(rx.try_recv().is_err(), "handed on before the batch is full");
        // It does not fit: the batch goes on without it.
        write(&batches, "three\n");
        assert_eq!(rx.try_recv().unwrap(), b"one\ntwo\n");
        assert!(rx.try_recv().is_err());
        // A line longer than a batch goes on at once, whole, after the
        // lines before it.
        write(&batches, "a line longer than a batch\n");
        assert_eq!(rx.try_recv().unwrap(), b"three\n");
        assert_eq!(rx.try_recv().unwrap(), b"a line longer than a batch\n");
        assert!(rx.try_recv().is_err());
        write(&batches, "four\n");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_partial_batch_is_handed_on_by_the_ticker() {
        let (tx, rx) = mpsc::channel();
        let (batches, _guard) = Batches::new(Sink(tx), 1 << 20, Duration::from_millis(10));
        write(&batches, "alone\n");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            b"alone\n"
        );
    }

    /// Output that never returns, as stderr does when its reader stalls.
    struct Stalled;

    impl std::io::Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            loop {
                std::thread::park();
            }
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_never_holds_up_a_line() {
        let (appender, _writing) = super::super::appender(Stalled, 4);
        let (batches, guard) = Batches::new(appender, 100, LONG);
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            // Far more batches than the appender's queue holds.
            for _ in 0..10_000 {
                write(&batches, "a line of some forty bytes, give or take\n");
            }
            drop(guard);
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("logging waited for the stalled output");
    }

    #[test]
    fn dropping_the_guard_hands_on_the_rest() {
        let (tx, rx) = mpsc::channel();
        let (batches, guard) = Batches::new(Sink(tx), 1 << 20, LONG);
        write(&batches, "last words\n");
        assert!(rx.try_recv().is_err());
        drop(guard);
        assert_eq!(rx.try_recv().unwrap(), b"last words\n");
        drop(batches);
    }
}
