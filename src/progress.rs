//! Progress bars for long command-line jobs (seed, import).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar appears only when a job takes longer than this.
const DELAY: Duration = Duration::from_millis(500);

/// A progress bar that stays hidden for the first moment, so quick runs print
/// nothing; `indicatif` itself stays silent when stderr is not a terminal.
/// Cheap to clone and to advance from another thread.
#[derive(Clone)]
pub struct DelayedProgress {
    bar: ProgressBar,
    started: Instant,
}

impl DelayedProgress {
    /// A bar of `total` steps, labelled `what` (e.g. "seeding bookings").
    pub fn new(what: &str, total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} ({{eta}} left)"
            ))
            .expect("valid template"),
        );
        Self {
            bar,
            started: Instant::now(),
        }
    }

    /// A bar of `total` bytes, labelled `what`.
    pub fn bytes(what: &str, total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{bytes}}/{{total_bytes}} ({{eta}} left)"
            ))
            .expect("valid template"),
        );
        Self {
            bar,
            started: Instant::now(),
        }
    }

    /// The steps done so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// A spinner for a step that can't count its progress, labelled
    /// `what`; it turns while the step runs.
    pub fn spinner(what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(&format!("{what} {{spinner}} {{elapsed}}"))
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        let spinner = Self {
            bar,
            started: Instant::now(),
        };
        // Shown from the moment the step outlasts the delay, without being
        // told of progress.
        let shown = spinner.clone();
        std::thread::spawn(move || {
            std::thread::sleep(DELAY);
            if !shown.bar.is_finished() {
                shown.reveal();
            }
        });
        spinner
    }

    fn reveal(&self) {
        if self.bar.is_hidden() && self.started.elapsed() > DELAY {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// `by` more steps are done.
    pub fn advance(&self, by: u64) {
        self.reveal();
        self.bar.inc(by);
    }

    /// `done` steps are done in all.
    pub fn set(&self, done: u64) {
        self.reveal();
        self.bar.set_position(done);
    }

    /// Takes the bar off the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
