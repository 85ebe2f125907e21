//! What is known about a request before any handler runs: who sent it, its
//! id, and by when it must be answered. Built once at the edge of the gRPC
//! server and passed down.

use std::sync::Arc;
use std::time::Instant;

use super::access::Principal;
use super::event::{Actor, Origin};

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub principal: Arc<Principal>,
    pub request_id: Arc<str>,
    /// When the call is cut off: the caller's `grpc-timeout`, or
    /// `GRPC_DEFAULT_TIMEOUT` when that is sooner or the caller set none.
    pub deadline: Instant,
}

impl RequestContext {
    /// Who asks and in which request, as the events of its writes record.
    pub fn origin(&self) -> Origin {
        let actor = Actor {
            id: self.principal.id.clone(),
            roles: self
                .principal
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        };
        Origin::new(actor, self.request_id.as_ref())
    }
}
