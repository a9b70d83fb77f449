//! Whether each server is up, as every router thread sees it (shared, lock-free), after
//! mcrouter's TKO ("technical knock-out"):
//!
//! - **soft TKO** after `tko_timeouts` consecutive failed requests (no reply in time, or the
//!   connection lost); a reply in between resets the count;
//! - **hard TKO** at once when a connection cannot be made (refused, unreachable);
//! - while a server is down its requests fail at once (`SERVER_ERROR unavailable`, gets as
//!   misses) instead of waiting out timeouts, and no key moves to another server;
//! - one thread at a time probes it (`version` on a connection of its own), first after
//!   `probe_ms`, then backing off ×1.5 up to `probe_max_ms`; only a probe's answer brings the
//!   server back.
//!
//! Times are milliseconds on a clock the caller passes in, so this is tested without waiting.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

const UP: u8 = 0;
const SOFT: u8 = 1;
const HARD: u8 = 2;

/// A server's state, for `stats servers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Up,
    SoftTko,
    HardTko,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Up => "up",
            State::SoftTko => "soft_tko",
            State::HardTko => "hard_tko",
        }
    }
}

/// TKO and probe settings of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) tko_timeouts: u32,
    pub(crate) probe_ms: u64,
    pub(crate) probe_max_ms: u64,
}

#[derive(Debug, Default)]
struct Dest {
    state: AtomicU8,
    failures: AtomicU32,
    /// A thread is probing it.
    probing: AtomicBool,
    next_probe: AtomicU64,
    backoff: AtomicU64,
    soft_tkos: AtomicU64,
    hard_tkos: AtomicU64,
}

/// Every destination's health.
#[derive(Debug)]
pub(crate) struct Health {
    dests: Box<[Dest]>,
    rules: Box<[Rules]>,
}

impl Health {
    /// Health for destinations with these rules (one per destination), all up.
    pub(crate) fn new(rules: Vec<Rules>) -> Health {
        Health {
            dests: rules.iter().map(|_| Dest::default()).collect(),
            rules: rules.into_boxed_slice(),
        }
    }

    pub(crate) fn state(&self, d: usize) -> State {
        match self.dests.get(d).map(|x| x.state.load(Ordering::Acquire)) {
            Some(SOFT) => State::SoftTko,
            Some(HARD) => State::HardTko,
            _ => State::Up,
        }
    }

    pub(crate) fn is_down(&self, d: usize) -> bool {
        self.state(d) != State::Up
    }

    /// A reply came from `d`.
    pub(crate) fn ok(&self, d: usize) {
        if let Some(x) = self.dests.get(d) {
            if x.failures.load(Ordering::Relaxed) != 0 {
                x.failures.store(0, Ordering::Relaxed);
            }
        }
    }

    /// A request to `d` got no reply (timeout, connection lost). Returns whether this made it
    /// soft-TKO'd.
    pub(crate) fn failed(&self, d: usize, now_ms: u64) -> bool {
        let (Some(x), Some(r)) = (self.dests.get(d), self.rules.get(d)) else {
            return false;
        };
        let n = x.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= r.tko_timeouts && self.down(d, SOFT, now_ms)
    }

    /// A connection to `d` could not be made. Returns whether this made it hard-TKO'd.
    pub(crate) fn unreachable(&self, d: usize, now_ms: u64) -> bool {
        self.down(d, HARD, now_ms)
    }

    fn down(&self, d: usize, to: u8, now_ms: u64) -> bool {
        let (Some(x), Some(r)) = (self.dests.get(d), self.rules.get(d)) else {
            return false;
        };
        if x.state
            .compare_exchange(UP, to, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Already down; a soft TKO seen to be unreachable becomes hard.
            if to == HARD {
                let _ = x
                    .state
                    .compare_exchange(SOFT, HARD, Ordering::AcqRel, Ordering::Acquire);
            }
            return false;
        }
        x.backoff.store(r.probe_ms, Ordering::Relaxed);
        x.next_probe.store(now_ms + r.probe_ms, Ordering::Release);
        if to == SOFT {
            &x.soft_tkos
        } else {
            &x.hard_tkos
        }
        .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether the caller should probe `d` now; if so it owns the probe until [`Health::probed`].
    pub(crate) fn claim_probe(&self, d: usize, now_ms: u64) -> bool {
        let Some(x) = self.dests.get(d) else {
            return false;
        };
        self.is_down(d)
            && now_ms >= x.next_probe.load(Ordering::Acquire)
            && x.probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The claimed probe of `d` ended: answered (`up`), or not, when the next waits longer.
    pub(crate) fn probed(&self, d: usize, up: bool, now_ms: u64) {
        let (Some(x), Some(r)) = (self.dests.get(d), self.rules.get(d)) else {
            return;
        };
        if up {
            x.failures.store(0, Ordering::Relaxed);
            x.state.store(UP, Ordering::Release);
        } else {
            let b = x.backoff.load(Ordering::Relaxed).max(1);
            let next = (b + b / 2).min(r.probe_max_ms.max(r.probe_ms));
            x.backoff.store(next, Ordering::Relaxed);
            x.next_probe.store(now_ms + next, Ordering::Release);
        }
        x.probing.store(false, Ordering::Release);
    }

    /// Soft and hard TKOs of `d` so far.
    pub(crate) fn tkos(&self, d: usize) -> (u64, u64) {
        self.dests.get(d).map_or((0, 0), |x| {
            (
                x.soft_tkos.load(Ordering::Relaxed),
                x.hard_tkos.load(Ordering::Relaxed),
            )
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.dests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        tko_timeouts: 3,
        probe_ms: 100,
        probe_max_ms: 300,
    };

    #[test]
    fn consecutive_failures_make_a_soft_tko_and_a_reply_resets_them() {
        let h = Health::new(vec![RULES; 2]);
        assert!(!h.failed(0, 0) && !h.failed(0, 0));
        h.ok(0);
        assert!(!h.failed(0, 0) && !h.failed(0, 0));
        assert_eq!(h.state(0), State::Up);
        assert!(h.failed(0, 5));
        assert_eq!((h.state(0), h.state(1)), (State::SoftTko, State::Up));
        // Unreachable while soft: hard, counted once as soft.
        assert!(!h.unreachable(0, 6));
        assert_eq!((h.state(0), h.tkos(0)), (State::HardTko, (1, 0)));
    }

    #[test]
    fn one_prober_at_a_time_backing_off_and_only_a_probe_brings_it_back() {
        let h = Health::new(vec![RULES]);
        assert!(h.unreachable(0, 1000));
        assert!(!h.claim_probe(0, 1050), "before probe_ms");
        assert!(h.claim_probe(0, 1100));
        assert!(!h.claim_probe(0, 1100), "a second prober");
        // Failed: the next probe 150 ms on, then 225, then capped at 300.
        h.probed(0, false, 1100);
        assert!(!h.claim_probe(0, 1249) && h.claim_probe(0, 1250));
        h.probed(0, false, 1250);
        assert!(!h.claim_probe(0, 1474) && h.claim_probe(0, 1475));
        h.probed(0, false, 1475);
        assert!(!h.claim_probe(0, 1774) && h.claim_probe(0, 1775));
        h.probed(0, false, 1775);
        assert!(!h.claim_probe(0, 2074) && h.claim_probe(0, 2075));
        // A reply to a request does not bring it back; a probe's answer does.
        h.ok(0);
        assert!(h.is_down(0));
        h.probed(0, true, 1900);
        assert_eq!((h.state(0), h.tkos(0)), (State::Up, (0, 1)));
        assert!(!h.claim_probe(0, 5000), "nothing to probe");
    }
}
