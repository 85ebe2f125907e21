//! The filters of the history report, and its sort order.

use chrono::NaiveDate;

use super::allocation::Allocation;
use super::error::{DomainError, Violation, ViolationReason};
use super::page::CursorKey;

/// Which bookings the history report lists; every filter that is set must
/// match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HistoryFilter {
    pub employee_id: Option<String>,
    pub vehicle_id: Option<String>,
    pub driver_id: Option<String>,
    /// First date included.
    pub start_date: Option<NaiveDate>,
    /// Last date included.
    pub end_date: Option<NaiveDate>,
}

impl HistoryFilter {
    /// Checks that the date range is not inverted.
    pub fn validate(&self) -> Result<(), DomainError> {
        match (self.start_date, self.end_date) {
            (Some(start), Some(end)) if start > end => Err(DomainError::invalid(Violation::new(
                "start_date",
                ViolationReason::InvalidDateRange,
                format!("start_date {start} is after end_date {end}"),
            ))),
            _ => Ok(()),
        }
    }

    /// Whether `allocation` passes every filter.
    pub fn matches(&self, allocation: &Allocation) -> bool {
        fn eq(filter: &Option<String>, value: &str) -> bool {
            filter.as_deref().is_none_or(|f| f == value)
        }
        eq(&self.employee_id, &allocation.employee_id)
            && eq(&self.vehicle_id, &allocation.vehicle_id)
            && eq(&self.driver_id, &allocation.driver_id)
            && self.start_date.is_none_or(|d| allocation.date >= d)
            && self.end_date.is_none_or(|d| allocation.date <= d)
    }

    /// The last date a page continuing after `after` can hold: the end date
    /// or the cursor's, whichever is earlier. Backends bound their date
    /// range by this one value, since given two upper bounds an index range
    /// is narrowed by one only, and a deep page would scan every row between
    /// the end date and the cursor.
    pub fn last_date(&self, after: Option<&HistoryCursor>) -> Option<NaiveDate> {
        match (self.end_date, after.map(|c| c.date)) {
            (Some(end), Some(cursor)) => Some(end.min(cursor)),
            (end, cursor) => end.or(cursor),
        }
    }

    /// The filter's fields in a fixed order, to bind page tokens to it.
    pub fn fingerprint_parts(&self) -> [String; 5] {
        let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        [
            self.employee_id.clone().unwrap_or_default(),
            self.vehicle_id.clone().unwrap_or_default(),
            self.driver_id.clone().unwrap_or_default(),
            date(self.start_date),
            date(self.end_date),
        ]
    }
}

/// A position in the history order: newest date first, then id descending.
/// A page continues strictly after its cursor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryCursor {
    pub date: NaiveDate,
    pub id: String,
}

impl HistoryCursor {
    /// The cursor just after `allocation`.
    pub fn after(allocation: &Allocation) -> Self {
        Self {
            date: allocation.date,
            id: allocation.id.clone(),
        }
    }
}

/// The history continues after a date and id.
impl CursorKey for HistoryCursor {
    fn write(&self, out: &mut Vec<u8>) {
        let days = self.date.to_epoch_days();
        out.extend_from_slice(&days.to_be_bytes());
        out.extend_from_slice(self.id.as_bytes());
    }

    fn read(bytes: &[u8]) -> Option<Self> {
        let (days, id) = bytes.split_first_chunk::<4>()?;
        Some(Self {
            date: NaiveDate::from_epoch_days(i32::from_be_bytes(*days))?,
            id: String::from_utf8(id.to_vec()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn an_inverted_range_is_refused() {
        let filter = HistoryFilter {
            start_date: Some(date("2026-12-02")),
            end_date: Some(date("2026-12-01")),
            ..Default::default()
        };
        let err = filter.validate().unwrap_err();
        assert_eq!(err.reason(), "INVALID_DATE_RANGE");
        assert_eq!(
            err.to_string(),
            "start_date 2026-12-02 is after end_date 2026-12-01"
        );

        let one_day = HistoryFilter {
            start_date: Some(date("2026-12-01")),
            end_date: Some(date("2026-12-01")),
            ..Default::default()
        };
        assert!(one_day.validate().is_ok());
    }

    #[test]
    fn a_page_ends_at_the_end_date_or_the_cursor_whichever_is_earlier() {
        let cursor = |d: &str| HistoryCursor {
            date: date(d),
            id: "m".into(),
        };
        let until = |d: Option<&str>| HistoryFilter {
            end_date: d.map(date),
            ..Default::default()
        };
        assert_eq!(until(None).last_date(None), None);
        assert_eq!(
            until(Some("2026-12-10")).last_date(None),
            Some(date("2026-12-10"))
        );
        assert_eq!(
            until(None).last_date(Some(&cursor("2026-12-05"))),
            Some(date("2026-12-05"))
        );
        assert_eq!(
            until(Some("2026-12-10")).last_date(Some(&cursor("2026-12-05"))),
            Some(date("2026-12-05"))
        );
        assert_eq!(
            until(Some("2026-12-03")).last_date(Some(&cursor("2026-12-05"))),
            Some(date("2026-12-03"))
        );
    }
}
