//! Failed authentications, per peer address (an IPv6 peer by its /64).
//! Each wrong credential takes a token of the peer's bucket
//! (`AUTH_FAILURES_PER_SECOND`, a burst of ten times that); while a peer's
//! bucket is empty, a token it presents that would need a signature check
//! is answered RATE_LIMITED unchecked, so that replaying bad tokens costs
//! it time and the service no signature checks. API keys (a lookup) and
//! tokens verified lately are still taken, so callers sharing an address
//! with a guesser (behind a NAT or proxy) are not locked out.
//!
//! The refusals are logged at most [`LINES_PER_SECOND`] per peer; the next
//! line a peer gets says how many were left out, so a flood of bad
//! credentials costs the disk a few lines a second, not one per call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Refusal;

/// Log lines of refused credentials per peer and second.
pub const LINES_PER_SECOND: u32 = 5;

/// Peers remembered at most; past that, those neither blocked nor seen in
/// the last second are forgotten.
const MAX_PEERS: usize = 10_000;

/// Failed authentications a peer may have per second (and ten times that
/// at once) before it is refused unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub per_second: NonZeroU32,
}

impl Default for FailureLimit {
    fn default() -> Self {
        Self {
            per_second: NonZeroU32::new(10).expect("not zero"),
        }
    }
}

impl FailureLimit {
    fn burst(self) -> f64 {
        f64::from(self.per_second.get()) * 10.0
    }
}

/// One peer's bucket and log budget.
#[derive(Debug)]
struct Peer {
    tokens: f64,
    refilled: DateTime<Utc>,
    blocked_until: Option<DateTime<Utc>>,
    /// The second the log budget is counted in, lines logged in it, and
    /// refusals not logged since the last line.
    second: i64,
    lines: u32,
    suppressed: u64,
}

/// A refusal's log line: refusals of the peer not logged since its last
/// line, and whether it is blocked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    suppressed: u64,
    blocked: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct AuthFailures {
    limit: FailureLimit,
    peers: Mutex<HashMap<Option<IpAddr>, Peer>>,
    /// Peers blocked now or lately: while 0, a call need not look.
    blocked: AtomicUsize,
}

impl AuthFailures {
    pub fn new(limit: FailureLimit) -> Self {
        Self {
            limit,
            peers: Mutex::new(HashMap::new()),
            blocked: AtomicUsize::new(0),
        }
    }

    /// How long `peer` must wait before its credentials are checked again;
    /// `None` when they may be checked now.
    pub fn blocked(&self, peer: Option<IpAddr>, now: DateTime<Utc>) -> Option<Duration> {
        if self.blocked.load(Ordering::Acquire) == 0 {
            return None;
        }
        let peer = peer.map(crate::domain::context::peer_group);
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let record = peers.get_mut(&peer)?;
        let until = record.blocked_until?;
        if until > now {
            return (until - now).to_std().ok();
        }
        record.blocked_until = None;
        self.blocked.fetch_sub(1, Ordering::AcqRel);
        None
    }

    /// Counts `refusal` against `peer`, and logs it unless the peer has had
    /// its lines this second.
    pub fn failed(&self, peer: Option<IpAddr>, refusal: &Refusal, now: DateTime<Utc>) {
        let Some(line) = self.count(peer, refusal, now) else {
            return;
        };
        tracing::info!(
            reason = refusal.error.reason().name,
            why = %crate::domain::error::clip(&refusal.why, 200),
            peer = peer.map(tracing::field::display),
            suppressed = line.suppressed,
            blocked = line.blocked,
            request_id = crate::telemetry::request_id(),
            "refused credentials"
        );
    }

    /// Counts `refusal` against `peer`; the line to log, if the peer has
    /// not had its lines this second.
    fn count(&self, peer: Option<IpAddr>, refusal: &Refusal, now: DateTime<Utc>) -> Option<Line> {
        let peer = peer.map(crate::domain::context::peer_group);
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            let second = now.timestamp();
            let mut unblocked = 0;
            peers.retain(|_, p| {
                let blocked = p.blocked_until.is_some_and(|until| until > now);
                if p.blocked_until.is_some() && !blocked {
                    unblocked += 1;
                }
                blocked || p.second >= second - 1
            });
            self.blocked.fetch_sub(unblocked, Ordering::AcqRel);
            if peers.len() >= MAX_PEERS {
                // Every peer blocked or seen this second: a flood from more
                // addresses than are remembered. Start over rather than
                // scan on every failure.
                let blocked = peers.values().filter(|p| p.blocked_until.is_some()).count();
                self.blocked.fetch_sub(blocked, Ordering::AcqRel);
                peers.clear();
            }
        }
        let burst = self.limit.burst();
        let record = peers.entry(peer).or_insert(Peer {
            tokens: burst,
            refilled: now,
            blocked_until: None,
            second: now.timestamp(),
            lines: 0,
            suppressed: 0,
        });
        let rate = f64::from(self.limit.per_second.get());
        let elapsed = (now - record.refilled).to_std().unwrap_or_default();
        record.tokens = (record.tokens + elapsed.as_secs_f64() * rate).min(burst);
        record.refilled = now;
        if refusal.is_guess() {
            record.tokens -= 1.0;
        }
        if record.tokens < 0.0 && record.blocked_until.is_none() {
            // Until the bucket holds a token again.
            let wait = Duration::from_secs_f64(-record.tokens / rate);
            record.blocked_until = chrono::Duration::from_std(wait).ok().map(|w| now + w);
            self.blocked.fetch_add(1, Ordering::AcqRel);
        }
        if record.second != now.timestamp() {
            record.second = now.timestamp();
            record.lines = 0;
        }
        if record.lines >= LINES_PER_SECOND {
            record.suppressed += 1;
            return None;
        }
        record.lines += 1;
        Some(Line {
            suppressed: std::mem::take(&mut record.suppressed),
            blocked: record.blocked_until.is_some(),
        })
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.peers.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthError;

    fn refusal() -> Refusal {
        Refusal::new(AuthError::TokenInvalid, "bad signature")
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn a_peer_that_fails_past_its_burst_waits_and_others_do_not() {
        let failures = AuthFailures::new(FailureLimit {
            per_second: NonZeroU32::new(2).unwrap(),
        });
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        for _ in 0..20 {
            assert_eq!(failures.blocked(a, at(0)), None);
            failures.failed(a, &refusal(), at(0));
        }
        assert_eq!(failures.blocked(a, at(0)), None, "the burst is 20");
        failures.failed(a, &refusal(), at(0));
        assert_eq!(failures.blocked(a, at(0)), Some(Duration::from_millis(500)));
        assert_eq!(failures.blocked(b, at(0)), None, "per peer");
        assert_eq!(failures.blocked(a, at(499)), Some(Duration::from_millis(1)));
        assert_eq!(failures.blocked(a, at(500)), None, "a token has come back");
        failures.failed(a, &refusal(), at(500));
        assert!(
            failures.blocked(a, at(500)).is_some(),
            "and is used up again"
        );
    }

    #[test]
    fn a_flood_of_refusals_logs_a_few_lines_a_second_and_counts_the_rest() {
        let failures = AuthFailures::new(FailureLimit::default());
        let peer = Some(IpAddr::from([10, 0, 0, 9]));
        let lines: Vec<Line> = (0..100)
            .filter_map(|_| failures.count(peer, &refusal(), at(0)))
            .collect();
        let first = Line {
            suppressed: 0,
            blocked: false,
        };
        assert_eq!(lines, vec![first; LINES_PER_SECOND as usize]);
        let next = failures.count(peer, &refusal(), at(1_000)).unwrap();
        assert_eq!(next.suppressed, 100 - u64::from(LINES_PER_SECOND));
        assert!(!next.blocked, "a burst of a hundred, and a second's refill");
    }

    #[test]
    fn memory_is_bounded_by_the_peers_of_the_last_second() {
        let failures = AuthFailures::new(FailureLimit::default());
        for i in 0..MAX_PEERS as u32 {
            failures.failed(Some(IpAddr::from(i.to_be_bytes())), &refusal(), at(0));
        }
        assert_eq!(failures.remembered(), MAX_PEERS);
        failures.failed(Some(IpAddr::from([255, 0, 0, 0])), &refusal(), at(5_000));
        assert_eq!(failures.remembered(), 1);
    }
}
