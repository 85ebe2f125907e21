//! The gRPC transport: decodes and validates requests into domain types,
//! calls the store, and maps every error to a `tonic::Status` in one place
//! ([`status`]).

mod allocation;
mod convert;
pub mod edge;
pub mod events;
mod fleet;
pub mod mask;
pub mod metered;
mod outbox;
pub mod shares;
pub mod status;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use crate::clock::Clock;
use crate::domain::access::{Action, authorize};
use crate::domain::context::RequestContext;
use crate::domain::{BookingPolicy, BookingWindow, DomainError, PageKey};
use crate::storage::Store;

pub use allocation::AllocationApi;
pub use edge::{EdgeLayer, REQUEST_ID_HEADER, is_usable_request_id, new_request_id};
pub use events::EventApi;
pub use fleet::FleetApi;
pub use metered::GrpcMetricsLayer;

/// What every handler needs: the store, the clock, the booking policy and
/// the key page tokens are signed with.
#[derive(Clone)]
pub struct ServiceContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub policy: BookingPolicy,
    /// Set from `PAGE_TOKEN_KEY`, or read from the store on first use (so a
    /// store that is down at startup delays only the lists).
    pub page_key: Arc<tokio::sync::OnceCell<PageKey>>,
}

impl ServiceContext {
    /// The current instant, cut to milliseconds, the precision every backend
    /// stores, so that what a write returns equals what a read returns later.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(3)
    }

    /// The key page tokens are signed with.
    pub async fn page_key(&self) -> Result<PageKey, crate::storage::StoreError> {
        self.page_key
            .get_or_try_init(|| async {
                let mut candidate = [0u8; PageKey::LEN];
                getrandom::fill(&mut candidate).map_err(|error| {
                    crate::storage::StoreError::internal(
                        "making a page-token key",
                        std::io::Error::other(error.to_string()),
                    )
                })?;
                self.store.page_token_key(PageKey::new(candidate)).await
            })
            .await
            .copied()
    }

    /// The dates that can be booked at `now`.
    pub fn window(&self, now: DateTime<Utc>) -> BookingWindow {
        self.policy.window(now)
    }
}

/// The context the edge built for this request. Its absence means the
/// request did not pass the edge: refused, never served anonymously.
pub fn context<T>(request: &tonic::Request<T>) -> Result<RequestContext, tonic::Status> {
    request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .ok_or_else(|| {
            let missing = crate::auth::AuthError::CredentialsMissing;
            status::with_reason(missing.reason(), &missing.to_string())
        })
}

/// `Ok` if the caller may do `action`; PERMISSION_DENIED otherwise.
pub fn allow(ctx: &RequestContext, action: Action<'_>) -> Result<(), tonic::Status> {
    authorize(&ctx.principal, action).map_err(|denied| DomainError::from(denied).into())
}
