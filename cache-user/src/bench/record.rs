//! What a client thread records: an HDR histogram of latencies and counters, for the requests it
//! sent (or, open loop, was due to send) inside the measured window; and a few live counters the
//! progress line reads while the run goes on.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::reply::{Expect, Reply};

/// Latencies are recorded in nanoseconds, 3 significant digits, up to this many (clamped above).
const LATENCY_MAX_NS: u64 = 100_000_000_000;

/// Request and reply counts over the measured window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Counts {
    /// Replies received (every kind, errors included).
    pub(crate) ops: u64,
    pub(crate) gets: u64,
    /// Keys asked for by gets, and how many came back.
    pub(crate) get_keys: u64,
    pub(crate) hits: u64,
    pub(crate) sets: u64,
    pub(crate) deletes: u64,
    /// ERROR, CLIENT_ERROR, SERVER_ERROR replies.
    pub(crate) errors: u64,
    /// UDP requests whose reply did not arrive within the loss timeout (not in the histogram).
    pub(crate) udp_lost: u64,
    /// UDP datagrams for requests already given up on, or never sent.
    pub(crate) udp_late: u64,
    /// TCP requests still unanswered when the run ended and its drain time ran out.
    pub(crate) unanswered: u64,
}

impl Counts {
    fn add(&mut self, o: &Self) {
        self.ops += o.ops;
        self.gets += o.gets;
        self.get_keys += o.get_keys;
        self.hits += o.hits;
        self.sets += o.sets;
        self.deletes += o.deletes;
        self.errors += o.errors;
        self.udp_lost += o.udp_lost;
        self.udp_late += o.udp_late;
        self.unanswered += o.unanswered;
    }
}

/// One thread's measurements.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) latency: Histogram<u64>,
    pub(crate) counts: Counts,
    /// The same over the whole run, warm-up included (not the pre-population): what the
    /// progress line shows, and what a server's `stats` can be checked against.
    pub(crate) all: Counts,
    /// Requests started before this (warm-up) are not recorded.
    measure_from: Instant,
}

impl Recorder {
    pub(crate) fn new(measure_from: Instant) -> Self {
        // Bounds are constants that new_with_bounds accepts (low >= 1, high >= 2 * low, sigfig 3).
        let latency = Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds"));
        Self {
            latency,
            counts: Counts::default(),
            all: Counts::default(),
            measure_from,
        }
    }

    /// Whether a request started (or due) at `start` is measured.
    pub(crate) fn measures(&self, start: Instant) -> bool {
        start >= self.measure_from
    }

    /// Records the reply to a request of `expect` reading `keys` keys, started (or due) at `start`.
    pub(crate) fn reply(
        &mut self,
        start: Instant,
        now: Instant,
        expect: Expect,
        keys: u32,
        r: Reply,
    ) {
        tally(&mut self.all, expect, keys, r);
        if !self.measures(start) {
            return;
        }
        tally(&mut self.counts, expect, keys, r);
        let ns = now.saturating_duration_since(start).as_nanos();
        self.latency
            .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
    }

    /// Counts a UDP request given up on.
    pub(crate) fn lost(&mut self, start: Instant) {
        self.all.udp_lost += 1;
        if self.measures(start) {
            self.counts.udp_lost += 1;
        }
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.counts.add(&other.counts);
        self.all.add(&other.all);
    }
}

/// Counts one reply in `c`.
fn tally(c: &mut Counts, expect: Expect, keys: u32, r: Reply) {
    c.ops += 1;
    match expect {
        Expect::Get => {
            c.gets += 1;
            c.get_keys += u64::from(keys);
        }
        Expect::Store => c.sets += 1,
        Expect::Delete => c.deletes += 1,
    }
    match r {
        Reply::Values(n) => c.hits += u64::from(n),
        Reply::Error => c.errors += 1,
        Reply::Done | Reply::Refused => {}
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) p9999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Counters a client thread publishes for the progress line (everything, warm-up included).
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) ops: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) lost: AtomicU64,
}

impl Live {
    /// Adds what `rec` counts beyond `last` (replies, errors, lost), then remembers it in `last`.
    pub(crate) fn publish(&self, rec: &Recorder, last: &mut [u64; 3]) {
        let now = [rec.all.ops, rec.all.errors, rec.all.udp_lost];
        for ((atomic, n), l) in [&self.ops, &self.errors, &self.lost]
            .iter()
            .zip(now)
            .zip(*last)
        {
            if n != l {
                atomic.fetch_add(n - l, Ordering::Relaxed);
            }
        }
        *last = now;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn warm_up_is_counted_but_not_measured() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0 + Duration::from_secs(1));
        // A warm-up hit: in the whole-run counts only.
        rec.reply(t0, t0, Expect::Get, 2, Reply::Values(2));
        // A measured miss taking 5 ms, and a measured set refused with an error.
        let t1 = t0 + Duration::from_secs(2);
        rec.reply(
            t1,
            t1 + Duration::from_millis(5),
            Expect::Get,
            1,
            Reply::Values(0),
        );
        rec.reply(t1, t1, Expect::Store, 0, Reply::Error);
        // A UDP loss during warm-up.
        rec.lost(t0);
        let (c, all) = (rec.counts, rec.all);
        assert_eq!(
            (c.ops, c.gets, c.get_keys, c.hits, c.sets, c.errors),
            (2, 1, 1, 0, 1, 1)
        );
        assert_eq!(
            (all.ops, all.get_keys, all.hits, all.udp_lost),
            (3, 3, 2, 1)
        );
        assert_eq!(c.udp_lost, 0);
        assert_eq!(rec.latency.len(), 2);
        let p = Percentiles::of(&rec.latency);
        assert!((4_990.0..5_010.0).contains(&p.max), "{p:?}");
    }
}
