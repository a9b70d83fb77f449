//! What the pipeline asks of its host: requests for other shards and their answers, the
//! `flush_all` barrier (its `OK` only once every shard applied it), `stats` gathered from every
//! shard (and written from every shard's counters: [`Shared::write_stats`]), and clients woken
//! when a pool has bytes again.

use std::sync::{atomic::Ordering, Arc};

use cache_core::{
    pipeline::{Outgoing, Ticket},
    store::{slabs::ClassStats, Stats},
};

use super::{
    conn::ConnId,
    msg::{ConnRef, Msg, StatsPart},
    shard::Shard,
    Shared,
};

/// A `flush_all` waiting for other shards: how many have still to apply it.
pub(crate) type Barrier = usize;

/// `stats <args>` being gathered: the parts in so far.
#[derive(Debug)]
pub(crate) struct Gather {
    pub(crate) ticket: Ticket,
    pub(crate) args: Box<[u8]>,
    pub(crate) parts: Vec<StatsPart>,
}

impl Shard {
    fn me(&self, conn: ConnId) -> ConnRef {
        ConnRef {
            shard: self.id,
            conn,
        }
    }

    /// Carries the work client `id`'s last session call handed out.
    pub(crate) fn dispatch(&mut self, id: ConnId) {
        if self.outbox.is_empty() {
            return;
        }
        let from = self.me(id);
        let mut out = std::mem::take(&mut self.outbox);
        for o in out.drain(..) {
            match o {
                Outgoing::Exec { to, ticket, op } if self.router.is_some() => {
                    self.forward(id, to, ticket, op);
                }
                Outgoing::Exec { to, ticket, op } => {
                    self.shared.mailboxes[to].send(Msg::Exec { from, ticket, op });
                }
                Outgoing::Flush { ticket, delay } if self.router.is_some() => {
                    self.route_flush(id, ticket, delay);
                }
                Outgoing::Flush { ticket, delay } => {
                    for s in (0..self.n).filter(|&s| s != self.id) {
                        self.shared.mailboxes[s].send(Msg::Flush {
                            from,
                            ticket,
                            delay,
                        });
                    }
                    self.barriers.insert((id, ticket.seq), self.n - 1);
                }
                Outgoing::Stats { ticket, args } => self.stats(id, ticket, args),
            }
        }
        if self.outbox.is_empty() {
            self.outbox = out;
        }
    }

    fn stats(&mut self, id: ConnId, ticket: Ticket, args: Box<[u8]>) {
        if crate::stats::group(&args) == Some(crate::stats::Group::Reset) {
            for s in (0..self.n).filter(|&s| s != self.id) {
                self.shared.mailboxes[s].send(Msg::ResetStats);
            }
            self.reset_stats();
            return self.finish_host(id, ticket, cache_core::protocol::encode::RESET);
        }
        let from = self.me(id);
        for s in (0..self.n).filter(|&s| s != self.id) {
            self.shared.mailboxes[s].send(Msg::StatsReq { from, ticket });
        }
        let parts = vec![self.stats_part()];
        self.gathers.insert(
            (id, ticket.seq),
            Gather {
                ticket,
                args,
                parts,
            },
        );
        self.gathered(id, ticket.seq);
    }

    /// Answers a `stats` whose parts are all in.
    fn gathered(&mut self, id: ConnId, seq: u64) {
        let done = self
            .gathers
            .get(&(id, seq))
            .is_some_and(|g| g.parts.len() == self.n);
        if !done {
            return;
        }
        let Some(g) = self.gathers.remove(&(id, seq)) else {
            return;
        };
        let mut text = Vec::new();
        self.shared
            .write_stats(&g.args, &g.parts, self.now, &mut text);
        self.finish_host(id, g.ticket, &text);
    }

    fn finish_host(&mut self, id: ConnId, ticket: Ticket, bytes: &[u8]) {
        if let Some((c, mut cx)) = self.client(id) {
            c.session.complete(&mut cx, ticket, bytes);
        }
        self.resume(id);
    }

    /// Host work for a client that is gone.
    pub(crate) fn forget_host_work(&mut self, id: ConnId) {
        self.barriers.retain(|(c, _), _| *c != id);
        self.gathers.retain(|(c, _), _| *c != id);
    }

    /// This shard's counters for `stats`.
    pub(crate) fn stats_part(&self) -> StatsPart {
        let mut counters = self.counters;
        let r = self.core.worker.refusals();
        counters.bucket_refused = r.refused;
        counters.bucket_refused_noreply = r.refused_noreply;
        counters.reply_pool_lent = self.core.replies.lent() as u64;
        counters.input_pool_lent = self.core.input.lent() as u64;
        if let Some(f) = &self.router {
            counters.route = f.counters;
        }
        let store = self.core.worker.store();
        (store.stats(), store.slabs().class_stats(), counters)
    }

    pub(crate) fn reset_stats(&mut self) {
        self.core.worker.reset_stats();
        if let Some(f) = &mut self.router {
            f.counters = Default::default();
        }
        self.counters = Default::default();
        let shared = &self.shared;
        shared
            .total_conns
            .store(shared.curr_conns.load(Ordering::Relaxed), Ordering::Relaxed);
        shared.rejected_conns.store(0, Ordering::Relaxed);
        // XDP's counters are the node's, not a shard's: every shard's reset takes the same
        // baseline.
        if let Some(c) = &shared.xdp_counters {
            c.reset();
        }
    }

    pub(crate) fn handle_msg(&mut self, m: Msg) {
        let now = self.now;
        match m {
            Msg::Exec { from, ticket, op } => {
                let answer = self.core.worker.remote(&op, now);
                self.shared.mailboxes[from.shard].send(Msg::Answer {
                    to: from,
                    ticket,
                    answer,
                });
            }
            Msg::Answer { to, ticket, answer } => {
                if let Some((c, mut cx)) = self.client(to.conn) {
                    c.session.deliver(&mut cx, ticket, answer);
                }
                self.resume(to.conn);
            }
            Msg::Flush {
                from,
                ticket,
                delay,
            } => {
                self.core.worker.flush_all(delay, now, false);
                self.shared.mailboxes[from.shard].send(Msg::Flushed { to: from, ticket });
            }
            Msg::Flushed { to, ticket } => {
                let key = (to.conn, ticket.seq);
                let done = match self.barriers.get_mut(&key) {
                    Some(left) => {
                        *left -= 1;
                        *left == 0
                    }
                    None => false,
                };
                if done {
                    self.barriers.remove(&key);
                    self.finish_host(to.conn, ticket, &[]);
                }
            }
            Msg::StatsReq { from, ticket } => {
                let part = Box::new(self.stats_part());
                self.shared.mailboxes[from.shard].send(Msg::StatsPart {
                    to: from,
                    ticket,
                    part,
                });
            }
            Msg::StatsPart { to, ticket, part } => {
                if let Some(g) = self.gathers.get_mut(&(to.conn, ticket.seq)) {
                    g.parts.push(*part);
                    self.gathered(to.conn, ticket.seq);
                }
            }
            Msg::ResetStats => self.reset_stats(),
            Msg::Buckets(own) => self.apply_buckets(own),
        }
    }

    /// Moves to a newer bucket map (see `Worker::apply_map`).
    fn apply_buckets(&mut self, own: Arc<cache_core::bucket::Ownership>) {
        let epoch = own.epoch();
        let dropped = self.core.worker.apply_map(own, self.now);
        tracing::debug!(shard = self.id, epoch, dropped, "bucket map applied");
    }

    /// Clients the pools have bytes for again, first come first served.
    pub(crate) fn wake_waiters(&mut self) {
        for _ in 0..64 {
            let who = match self.core.replies.to_wake() {
                Some(w) => w,
                None => match self.core.input.to_wake() {
                    Some(w) => w,
                    None => return,
                },
            };
            let id = ConnId::from_token(who);
            match self.client(id) {
                Some((c, mut cx)) => {
                    c.session.pump(&mut cx);
                }
                None => {
                    // Gone without telling the pool (it forgets on close): drop it from the line.
                    self.core.replies.forget(who);
                    self.core.input.forget(who);
                }
            }
            self.resume(id);
        }
    }
}

impl Shared {
    /// `stats <args>` from every shard's counters.
    pub(crate) fn write_stats(
        &self,
        args: &[u8],
        parts: &[StatsPart],
        now: u32,
        out: &mut Vec<u8>,
    ) {
        if self.route.is_some() {
            return crate::cluster::route::write_stats(self, args, parts, now, out);
        }
        let mut total = Stats::default();
        let mut classes: Vec<ClassStats> = Vec::new();
        let (mut read, mut written, mut refused) = (0, 0, 0);
        let (mut bucket_refused, mut bucket_refused_noreply) = (0, 0);
        let mut engine = crate::stats::Engine::default();
        for (s, cls, counters) in parts {
            total.add(s);
            read += counters.bytes_read;
            written += counters.bytes_written;
            refused += counters.udp_refused;
            bucket_refused += counters.bucket_refused;
            bucket_refused_noreply += counters.bucket_refused_noreply;
            engine.listen_disabled_num += counters.listen_disabled;
            engine.conns_stall_closed += counters.stalled_closed;
            engine.udp_replies_dropped += counters.udp_dropped;
            engine.event_loop_max_us = engine.event_loop_max_us.max(counters.loop_max_us);
            engine.reply_pool_lent += counters.reply_pool_lent;
            engine.input_pool_lent += counters.input_pool_lent;
            if classes.len() < cls.len() {
                classes.resize(cls.len(), ClassStats::default());
            }
            for (sum, c) in classes.iter_mut().zip(cls) {
                sum.chunk_size = c.chunk_size;
                sum.chunks_per_page = c.chunks_per_page;
                sum.pages += c.pages;
                sum.used_chunks += c.used_chunks;
                sum.free_chunks += c.free_chunks;
                sum.evictions += c.evictions;
                sum.reclaimed += c.reclaimed;
                sum.pages_moved_out += c.pages_moved_out;
            }
        }
        let p = crate::stats::Process {
            pid: std::process::id(),
            started: self.started,
            threads: self.mailboxes.len(),
            max_connections: self.cfg.max_connections,
            curr_connections: self.curr_conns.load(Ordering::Relaxed),
            total_connections: self.total_conns.load(Ordering::Relaxed),
            rejected_connections: self.rejected_conns.load(Ordering::Relaxed),
            tcp_port: self.cfg.port,
            udp_port: self.cfg.udp_port,
            listen: self.cfg.listen.clone(),
            limit_maxbytes: (self.cfg.memory_mb as u64) << 20,
            item_max: self.cfg.item_max,
            growth_factor: self.cfg.growth_factor,
            evictions_on: true,
            bytes_read: read,
            bytes_written: written,
            udp_refused: refused,
            bucket_epoch: self.bucket_epoch.load(Ordering::Relaxed),
            buckets_owned: self.buckets_owned.load(Ordering::Relaxed),
            bucket_refused,
            bucket_refused_noreply,
            engine,
            xdp: self.xdp_stats(),
        };
        if !crate::stats::write(args, &p, &total, &classes, now, out) {
            out.extend_from_slice(b"ERROR\r\n");
        }
    }
}

impl Shared {
    /// The XDP counters summed over CPUs and the live HOT slots; empty without XDP.
    fn xdp_stats(&self) -> Vec<(&'static str, u64)> {
        let (Some(c), Some(t)) = (&self.xdp_counters, &self.hot) else {
            return Vec::new();
        };
        let mut v = c.read();
        v.push(("xdp_hot_slots", t.live_slots()));
        v
    }
}
