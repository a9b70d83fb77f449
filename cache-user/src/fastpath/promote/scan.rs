//! The scan of the HOT tables, spread over time. A pass visits every slot of both tables once
//! (numbered by `HotTables::slot_at`, from a cursor that wraps) and takes about [`PASS_NS`]; each
//! [`Promoter::tick`] visits only the slots that have come due since the previous call, at most
//! [`SLICE_MAX`]. So a shard never stops for a whole pass (measured before this: 10-30 ms every
//! second with 90k live slots on this VM), and the per-slot rules keep their meaning per pass:
//! a slot's hits are taken once a pass, its idle count moves once a pass, and a dead slot
//! (expired, of an old epoch, or filled before a `flush_all`) is emptied within a pass.
//!
//! Under XDP load a shard's loop is mostly asleep (its gets never reach it), so the engine's
//! tick calls this every [`Promoter::TICK`] (`engine/tick.rs`), each call visiting about a
//! thousand slots of the default tables.

use std::{sync::Arc, time::Duration};

use cache_core::{
    abi::SLOT_LIVE,
    store::{Key, Store},
};

use super::{clock, HotTables, Promoter, IDLE_PERIODS};

/// How long a pass over every slot takes.
const PASS_NS: u64 = 1_000_000_000;
/// Most slots one call visits: after a long gap (a slow turn, a stopped process) the scan falls
/// behind rather than catching up in one stall. About 15 ms of the default tables' pace.
const SLICE_MAX: u32 = 4096;

impl Promoter {
    /// How often the engine must call [`Promoter::tick`] at least (its timer), so a pass keeps
    /// its pace when nothing else wakes the shard.
    pub(crate) const TICK: Duration = Duration::from_millis(5);

    /// Visits the slots due since the last call (see the module docs). Cheap when none are:
    /// call it as often as convenient (every loop turn), and at least every [`Promoter::TICK`].
    pub(crate) fn tick<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, store: &mut Store<B>, now: u32) {
        let now_ns = clock::monotonic_ns();
        let n = self.pace.due(now_ns, self.tables.total_slots());
        if n > 0 {
            self.scan(store, now, now_ns, n);
        }
    }

    /// Visits the next `n` slots (at most one pass' worth), `now` being Unix seconds and
    /// `now_ns` CLOCK_MONOTONIC.
    pub(super) fn scan<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        store: &mut Store<B>,
        now: u32,
        now_ns: u64,
        n: u32,
    ) {
        let t = Arc::clone(&self.tables);
        let total = t.total_slots();
        let serving = t.serving();
        for _ in 0..n.min(total) {
            let slot = self.cursor;
            self.cursor += 1;
            if self.cursor == total {
                self.cursor = 0;
                self.passes += 1;
            }
            self.visit(store, &t, slot, serving, now, now_ns);
        }
        // `hot_served` may have found an item expired and removed it.
        self.invalidate(store);
    }

    /// One slot's turn in a pass: skip it unless it is live and this shard's; take its hits;
    /// refresh a served item; demote it if dead or idle for [`IDLE_PERIODS`] passes.
    fn visit<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        store: &mut Store<B>,
        t: &HotTables,
        slot: u32,
        serving: u32,
        now: u32,
        now_ns: u64,
    ) {
        let r = t.slot_at(slot);
        let (state, tag) = t.glance(r);
        if state != SLOT_LIVE || !self.owner.owns_tag(tag) {
            return;
        }
        let Some(s) = t.read(r) else { return };
        if s.state != SLOT_LIVE || !self.owner.owns_tag(s.tag) {
            return;
        }
        let n = slot as usize;
        if s.seq != self.seen[n] {
            // Refilled since the last visit: a fresh start.
            self.seen[n] = s.seq;
            self.idle[n] = 0;
        }
        let hits = t.take_hits(r);
        let key = Key::new(s.key());
        if hits > 0 {
            self.tracker.add(key.hash, hits);
        }
        let dead = s.epoch != serving || (s.expires_ns != 0 && s.expires_ns <= now_ns);
        if hits > 0 && !dead {
            self.idle[n] = 0;
            store.hot_served(key, now);
            return;
        }
        self.idle[n] = self.idle[n].saturating_add(1);
        if (dead || self.idle[n] >= IDLE_PERIODS) && t.demote(r, &s) {
            store.unmark_hot(key, now);
            self.demoted += 1;
        }
    }
}

/// The scan's pace: visits accrue at `total` slots per [`PASS_NS`] of CLOCK_MONOTONIC, in
/// slot-nanoseconds so no fraction is lost between calls; at most [`SLICE_MAX`] are owed.
#[derive(Debug)]
pub(super) struct Pace {
    last_ns: u64,
    owed: u64,
}

impl Pace {
    pub(super) fn new(now_ns: u64) -> Pace {
        Pace {
            last_ns: now_ns,
            owed: 0,
        }
    }

    /// Slots to visit now, of `total`.
    pub(super) fn due(&mut self, now_ns: u64, total: u32) -> u32 {
        // At most a pass of time counts, so the product stays far inside u64.
        let elapsed = now_ns.saturating_sub(self.last_ns).min(PASS_NS);
        self.last_ns = self.last_ns.max(now_ns);
        let cap = u64::from(SLICE_MAX) * PASS_NS;
        self.owed = (self.owed + elapsed * u64::from(total)).min(cap);
        let n = self.owed / PASS_NS;
        self.owed -= n * PASS_NS;
        n as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace() {
        let ms = 1_000_000;
        // (calls, ns between them, slots in all, slots visited over all the calls)
        let cases = [
            // Every 5 ms over the default tables: a pass a second, nothing lost to rounding.
            (200, 5 * ms, 270_336, 270_336),
            // Every loop turn of a busy shard (7 µs): the same pace, a slot or two per call.
            (10_000, 7_000, 270_336, 18_923),
            // Tiny tables called often: fractions carry over until a whole slot is due.
            (1_000, ms, 24, 24),
            // A call after 10 s asleep visits one slice, not a pass.
            (1, 10_000 * ms, 270_336, u64::from(SLICE_MAX)),
        ];
        for (calls, gap, total, want) in cases {
            let mut p = Pace::new(1_000);
            let mut got = 0u64;
            for i in 1..=calls {
                let n = p.due(1_000 + i * gap, total);
                assert!(n <= SLICE_MAX, "{n} in one call");
                got += u64::from(n);
            }
            assert_eq!(got, want, "{calls} calls {gap} ns apart over {total} slots");
        }
        // A clock read that went backwards (another CPU's) owes nothing and loses nothing.
        let mut p = Pace::new(10 * ms);
        assert_eq!(p.due(5 * ms, 1000), 0);
        assert_eq!(p.due(11 * ms, 1000), 1);
    }
}
