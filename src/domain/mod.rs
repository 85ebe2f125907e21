//! The booking domain: its types and its rules, with no I/O.
//!
//! The transport layer turns requests into these types, the storage backends
//! persist them, and both call the rules defined here, so every backend
//! enforces the same rules with the same messages.

pub mod access;
pub mod admin;
pub mod allocation;
pub mod booking;
pub mod calendar;
pub mod context;
pub mod error;
pub mod event;
pub mod fleet;
pub mod history;
pub mod page;
pub mod principal;

pub use admin::{FleetCommand, FleetEntity, FleetOutcome, FleetRequest};
pub use allocation::{
    Allocation, AllocationChanges, AllocationDeletion, AllocationUpdate, Etag, IdempotencyKey,
    NewAllocation, PURPOSE_MAX_CHARS, UpdatedAllocation,
};
pub use calendar::{BookingPolicy, BookingWindow, format_date, parse_date};
pub use context::{Actor, Origin};
pub use error::{DomainError, Resource, Violation, ViolationReason};
pub use event::{Event, EventFilter, EventKind, NewEvent, Snapshot};
pub use fleet::{Assignment, Driver, Employee, Vehicle, VehicleBlock};
pub use history::{HistoryCursor, HistoryFilter};
pub use page::{Page, PageKey, PageRequest, PageSize, PageToken};
