//! The gRPC transport: decodes and validates requests into domain types,
//! calls the store, and maps every error to a `tonic::Status` in one place
//! ([`status`]).

mod allocation;
mod convert;
mod fleet;
mod request_log;
pub mod status;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use crate::clock::Clock;
use crate::domain::{BookingPolicy, BookingWindow};
use crate::storage::Store;

pub use allocation::AllocationApi;
pub use fleet::FleetApi;
pub use request_log::{REQUEST_ID_HEADER, RequestLogLayer, is_usable_request_id, new_request_id};

/// What every handler needs: the store, the clock and the booking policy.
#[derive(Clone)]
pub struct ServiceContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub policy: BookingPolicy,
}

impl ServiceContext {
    /// The current instant, cut to milliseconds, the precision every backend
    /// stores, so that what a write returns equals what a read returns later.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(3)
    }

    /// The dates that can be booked at `now`.
    pub fn window(&self, now: DateTime<Utc>) -> BookingWindow {
        self.policy.window(now)
    }
}
