//! What is known about a request before any handler runs: who sent it, its
//! id, and by when it must be answered. Built once at the edge of the gRPC
//! server and passed down.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::principal::{Principal, PrincipalKind};

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub principal: Arc<Principal>,
    pub request_id: Arc<str>,
    /// When the call is cut off: the caller's `grpc-timeout`, or
    /// `GRPC_DEFAULT_TIMEOUT` when that is sooner or the caller set none.
    pub deadline: Instant,
    /// The address the call came from: the connection's peer, or for the
    /// REST gateway in process, its caller's. Unknown for a remote
    /// gateway's callers, who all arrive from the gateway.
    pub peer: Option<IpAddr>,
}

/// Whom a caller's share of the service is counted against: the
/// authenticated principal (by kind, so that a token's `sub` never shares
/// with an API key of the same name), or, for the anonymous caller of a
/// service without authentication, the peer's address.
pub fn caller_key(principal: &Principal, peer: Option<IpAddr>) -> String {
    match (principal.kind, peer) {
        (PrincipalKind::Anonymous, Some(peer)) => format!("peer:{}", peer_group(peer)),
        (kind, _) => {
            let kind = kind.as_str();
            let mut key = String::with_capacity(kind.len() + 1 + principal.id.len());
            key.push_str(kind);
            key.push(':');
            key.push_str(&principal.id);
            key
        }
    }
}

/// The addresses counted as one peer: an IPv4 address, or an IPv6 /64
/// (what one host or site is usually given, so that it cannot multiply
/// its share by picking addresses).
pub fn peer_group(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

impl RequestContext {
    /// See [`caller_key`].
    pub fn caller_key(&self) -> String {
        caller_key(&self.principal, self.peer)
    }

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

/// Who made a change: a principal's id and roles, or a command of the
/// service itself (`system:seed`, `system:import`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    pub id: String,
    pub roles: Vec<String>,
}

impl Actor {
    /// The unauthenticated loopback caller (see
    /// [`Principal::anonymous`]).
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".to_owned(),
            roles: vec!["fleet_admin".to_owned()],
        }
    }

    /// A command of the service itself, such as `seed` or `import`.
    pub fn system(command: &str) -> Self {
        Self {
            id: format!("system:{command}"),
            roles: Vec::new(),
        }
    }
}

/// Who asked for a write, and in which request: what its events record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub actor: Actor,
    pub request_id: String,
}

impl Origin {
    pub fn new(actor: Actor, request_id: impl Into<String>) -> Self {
        Self {
            actor,
            request_id: request_id.into(),
        }
    }

    /// A command of the service itself (`seed`, `import`), one request id
    /// for the whole run.
    pub fn system(command: &str) -> Self {
        Self::new(
            Actor::system(command),
            format!("{command}-{}", uuid::Uuid::now_v7()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::Role;

    #[test]
    fn callers_are_principals_by_kind_or_anonymous_peers() {
        let peer = Some(IpAddr::from([127, 0, 0, 2]));
        let key = Principal::new("svc", PrincipalKind::ApiKey, [Role::Auditor]);
        let token = Principal::new("svc", PrincipalKind::Token, []);
        assert_eq!(caller_key(&key, peer), "api_key:svc");
        assert_ne!(caller_key(&key, peer), caller_key(&token, peer));
        assert_eq!(caller_key(&Principal::anonymous(), peer), "peer:127.0.0.2");
        assert_ne!(
            caller_key(&Principal::anonymous(), peer),
            caller_key(&Principal::anonymous(), Some(IpAddr::from([127, 0, 0, 1])))
        );
        assert_eq!(
            caller_key(&Principal::anonymous(), None),
            "anonymous:anonymous"
        );
    }
}
