//! Calendar dates and the booking window.
//!
//! A booking is for a calendar day in the organisation's time zone, not for an
//! instant, so "today" depends on `ORG_TIMEZONE`: at 23:30 UTC it is already
//! tomorrow in Tokyo.

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;

use super::error::{Echo, Violation, ViolationReason};

/// Parses a strict `YYYY-MM-DD` date; `field` names the field in the error.
///
/// Strict means exactly ten characters: `2026-1-5` and `2026-01-05T00:00` are
/// refused rather than guessed at.
pub fn parse_date(field: &str, value: &str) -> Result<NaiveDate, Violation> {
    let bytes = value.as_bytes();
    let well_formed = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    let parsed = well_formed
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten();
    parsed.ok_or_else(|| {
        Violation::new(
            field,
            ViolationReason::InvalidDate,
            format!(
                "{field} must be a calendar date in the form YYYY-MM-DD, got {:?}",
                Echo(value)
            ),
        )
    })
}

/// Formats a date as `YYYY-MM-DD`. Every booking a read returns passes
/// here, so the four-digit years are written directly rather than through
/// chrono's format-string interpreter; other years (signed) go through it.
pub fn format_date(date: NaiveDate) -> String {
    let year = date.year();
    if !(0..=9999).contains(&year) {
        return date.format("%Y-%m-%d").to_string();
    }
    let digit = |n: u32| b'0' + (n % 10) as u8;
    let year = year as u32;
    let (month, day) = (date.month(), date.day());
    let text = [
        digit(year / 1000),
        digit(year / 100),
        digit(year / 10),
        digit(year),
        b'-',
        digit(month / 10),
        digit(month),
        b'-',
        digit(day / 10),
        digit(day),
    ];
    String::from_utf8_lossy(&text).into_owned()
}

/// The organisation's booking rules that depend on the calendar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BookingPolicy {
    /// The time zone in which "today" is reckoned.
    pub time_zone: Tz,
    /// How many days after today a booking may be made for.
    pub max_days_ahead: u32,
}

impl Default for BookingPolicy {
    fn default() -> Self {
        Self {
            time_zone: Tz::UTC,
            max_days_ahead: 90,
        }
    }
}

impl BookingPolicy {
    /// The calendar date at `now` in the organisation's time zone.
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.time_zone).date_naive()
    }

    /// The dates that can be booked at `now`.
    pub fn window(&self, now: DateTime<Utc>) -> BookingWindow {
        let today = self.today(now);
        let last = today
            .checked_add_days(Days::new(u64::from(self.max_days_ahead)))
            .unwrap_or(NaiveDate::MAX);
        BookingWindow { today, last }
    }
}

/// The dates that can be booked at one moment: from today to `last`, both
/// included. Dates before `today` are history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingWindow {
    /// Today in the organisation's time zone.
    pub today: NaiveDate,
    /// The last date that can be booked.
    pub last: NaiveDate,
}

impl BookingWindow {
    /// Checks that `date`, given in `field`, can be booked.
    pub fn check(&self, field: &str, date: NaiveDate) -> Result<(), Violation> {
        if date < self.today {
            Err(Violation::new(
                field,
                ViolationReason::DateInPast,
                format!(
                    "{field} {date} is in the past; bookings can be made from {} to {}",
                    self.today, self.last
                ),
            ))
        } else if date > self.last {
            Err(Violation::new(
                field,
                ViolationReason::DateTooFarAhead,
                format!(
                    "{field} {date} is too far ahead; bookings can be made from {} to {}",
                    self.today, self.last
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// Checks that `date`, given in `field`, is not before today (for
    /// changes that take effect on a date, which may lie beyond the booking
    /// horizon).
    pub fn check_not_past(&self, field: &str, date: NaiveDate) -> Result<(), Violation> {
        if date < self.today {
            Err(Violation::new(
                field,
                ViolationReason::DateInPast,
                format!("{field} {date} is in the past; today is {}", self.today),
            ))
        } else {
            Ok(())
        }
    }

    /// Whether a booking on `date` is history, and so read-only.
    pub fn is_history(&self, date: NaiveDate) -> bool {
        date < self.today
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn dates_format_as_chrono_formats_them() {
        let mut days = vec![NaiveDate::MIN, NaiveDate::MAX];
        for year in [-1, 0, 1, 9, 10, 99, 100, 999, 1000, 1999, 2026, 9999, 10000] {
            for (month, day) in [(1, 1), (2, 28), (9, 30), (10, 9), (12, 31)] {
                days.push(NaiveDate::from_ymd_opt(year, month, day).unwrap());
            }
        }
        for day in days {
            assert_eq!(format_date(day), day.format("%Y-%m-%d").to_string());
            if (0..=9999).contains(&day.year()) {
                assert_eq!(parse_date("d", &format_date(day)), Ok(day));
            }
        }
        assert_eq!(format_date(date("2026-02-08")), "2026-02-08");
    }

    #[test]
    fn parse_date_accepts_only_strict_calendar_dates() {
        assert_eq!(parse_date("d", "2026-02-28"), Ok(date("2026-02-28")));
        for bad in [
            "",
            "2026-2-28",
            "2026-02-30",
            "2026-13-01",
            "26-02-28",
            "2026/02/28",
            "2026-02-28T00:00:00Z",
            " 2026-02-28",
            "２０２６-02-28",
        ] {
            let err = parse_date("allocation.allocation_date", bad).unwrap_err();
            assert_eq!(err.reason, ViolationReason::InvalidDate, "{bad:?}");
            assert_eq!(err.field, "allocation.allocation_date");
        }
    }

    #[test]
    fn today_is_taken_in_the_organisation_time_zone() {
        let tokyo = BookingPolicy {
            time_zone: "Asia/Tokyo".parse().unwrap(),
            max_days_ahead: 90,
        };
        let now = at("2026-11-26T23:30:00Z");
        assert_eq!(BookingPolicy::default().today(now), date("2026-11-26"));
        assert_eq!(tokyo.today(now), date("2026-11-27"));
    }

    #[test]
    fn window_runs_from_today_to_max_days_ahead() {
        let policy = BookingPolicy {
            time_zone: Tz::UTC,
            max_days_ahead: 90,
        };
        let window = policy.window(at("2026-11-26T12:00:00Z"));
        assert_eq!(window.today, date("2026-11-26"));
        assert_eq!(window.last, date("2027-02-24"));

        let field = "allocation.allocation_date";
        assert!(window.check(field, date("2026-11-26")).is_ok());
        assert!(window.check(field, date("2027-02-24")).is_ok());

        let past = window.check(field, date("2026-11-25")).unwrap_err();
        assert_eq!(past.reason, ViolationReason::DateInPast);
        assert_eq!(
            past.description,
            "allocation.allocation_date 2026-11-25 is in the past; bookings can be made from 2026-11-26 to 2027-02-24"
        );
        let far = window.check(field, date("2027-02-25")).unwrap_err();
        assert_eq!(far.reason, ViolationReason::DateTooFarAhead);
    }

    #[test]
    fn only_dates_before_today_are_history() {
        let window = BookingPolicy::default().window(at("2026-11-26T00:00:00Z"));
        assert!(window.is_history(date("2026-11-25")));
        assert!(!window.is_history(date("2026-11-26")));
    }

    #[test]
    fn zero_days_ahead_allows_only_today() {
        let policy = BookingPolicy {
            time_zone: Tz::UTC,
            max_days_ahead: 0,
        };
        let window = policy.window(at("2026-11-26T08:00:00Z"));
        assert!(window.check("d", date("2026-11-26")).is_ok());
        assert!(window.check("d", date("2026-11-27")).is_err());
    }
}
