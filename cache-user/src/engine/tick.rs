//! The periodic work, on a timeout of 100 ms (every `Promoter::TICK`, 5 ms, with XDP on): the
//! coherence hook's scan (XDP's HOT slots, a slice a call: `fastpath`'s `promote/scan.rs`), once
//! a second the slab rebalancer and the stalled-reader rule, and the longest event-loop turn for
//! `stats`. Under XDP load a shard's loop would otherwise sleep (its gets never reach it) and the
//! scan fall behind.
//!
//! The stalled-reader rule: while clients wait for the shard's reply pool, a client with replies
//! waiting to be sent that has read nothing for `reply_stall_secs` is closed (and counted in
//! `conns_stall_closed`): clients that stop reading hold pool bytes, or queue for them ahead of
//! clients that read, and would otherwise keep the pool from those for good. A client that reads,
//! however slowly, or has nothing waiting for it, is never closed by this rule.

use std::time::{Duration, Instant};

use io_uring::{opcode, types::Timespec};

use super::{conn::Kind, ring::Op, shard::Shard};
use crate::fastpath::promote::Promoter;

/// How often the tick runs without XDP.
const TICK: Duration = Duration::from_millis(100);
/// How often a router's tick runs: backend deadlines are checked this often.
const ROUTE_TICK: Duration = Duration::from_millis(10);

impl Shard {
    pub(crate) fn arm_tick(&mut self) {
        let every = if self.router.is_some() {
            ROUTE_TICK
        } else if self.shared.hot.is_some() {
            Promoter::TICK
        } else {
            TICK
        };
        let ts = Box::new(Timespec::from(every));
        let e = opcode::Timeout::new(&*ts).build();
        self.ring.submit(e, Op::Tick(ts));
    }

    /// The tick's timeout fired.
    pub(crate) fn ticked(&mut self) {
        if self.stopping {
            return;
        }
        self.arm_tick();
        let second = self.now != self.last_second;
        self.last_second = self.now;
        self.core.worker.tick(self.now, second);
        if second {
            self.close_stalled();
        }
        self.route_tick();
    }

    /// Closes clients holding borrowed reply bytes that read nothing for too long while
    /// others wait (see the module docs).
    fn close_stalled(&mut self) {
        let secs = self.shared.cfg.reply_stall_secs;
        if secs == 0 || !self.core.replies.has_waiters() {
            return;
        }
        let now = self.now;
        let stalled: Vec<_> = self
            .conns
            .ids()
            .into_iter()
            .filter(|&id| {
                self.conns.get_mut(id).is_some_and(|c| {
                    let waiting = c.session.held() > 0;
                    matches!(&c.kind, Kind::Stream(s) if waiting && now.saturating_sub(s.last_sent) >= secs)
                })
            })
            .collect();
        for id in stalled {
            self.counters.stalled_closed += 1;
            tracing::info!(
                shard = self.id,
                "closing a client that read nothing for {secs} s while holding reply memory \
                 others wait for"
            );
            self.begin_close(id, "stalled reader");
            self.try_finish(id);
        }
    }

    /// An outbound operation completed: on a router, its replies go to their sessions.
    pub(crate) fn outbound_done(&mut self, op: crate::engine::outbound::OutOp, res: i32) {
        self.outbound.complete(&mut self.ring, op, res);
        if self.router.is_some() {
            self.route_events();
        } else {
            // A cache node opens no outbound connection of its own yet: nothing waits for these.
            drop(self.outbound.take_events());
        }
    }

    /// Records how long the turn that began at `start` took.
    pub(crate) fn note_turn(&mut self, start: Instant) {
        let us = start.elapsed().as_micros() as u64;
        if us > self.counters.loop_max_us {
            self.counters.loop_max_us = us;
        }
    }
}
