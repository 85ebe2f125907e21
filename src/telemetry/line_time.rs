//! The time at the start of a log line, as tracing-subscriber's default
//! `SystemTime` writes it (`2026-12-06T03:36:05.123456Z`), with the date and
//! time of day formatted once a second per thread rather than field by field
//! on every line: with a line per request, that formatting was a visible
//! share of a cached read's CPU.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineTime;

impl FormatTime for LineTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since_epoch) => write_time(w, since_epoch),
            // A clock set before 1970: the default formatter copes.
            Err(_) => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// Writes the instant `since_epoch` after 1970-01-01T00:00:00Z.
fn write_time(w: &mut impl fmt::Write, since_epoch: Duration) -> fmt::Result {
    thread_local! {
        /// The second last formatted, and its text up to the seconds.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != seconds {
            text.clear();
            let at = i64::try_from(seconds)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            write!(text, "{}", at.format("%Y-%m-%dT%H:%M:%S"))?;
            *second = seconds;
        }
        w.write_str(text)
    })?;
    let mut micros = since_epoch.subsec_micros();
    let mut tail = *b".000000Z";
    for digit in tail[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    w.write_str(std::str::from_utf8(&tail).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(since_epoch: Duration) -> String {
        let mut out = String::new();
        write_time(&mut out, since_epoch).unwrap();
        out
    }

    #[test]
    fn times_read_as_rfc3339_with_microseconds_in_utc() {
        // Repeats and returns to a second: the cached text must follow.
        for (seconds, nanos) in [
            (1_796_528_165, 123_456_789),
            (1_796_528_165, 999_999_999),
            (1_796_528_166, 0),
            (0, 1_000),
            (1_796_528_165, 5_000),
            (253_402_300_799, 999_999_000),
        ] {
            let at = chrono::DateTime::from_timestamp(seconds as i64, nanos).unwrap();
            assert_eq!(
                formatted(Duration::new(seconds, nanos)),
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
        }
        assert_eq!(
            formatted(Duration::new(1_796_528_165, 42_000)),
            "2026-12-06T03:36:05.000042Z"
        );
    }
}
