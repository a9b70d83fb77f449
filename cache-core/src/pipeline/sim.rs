//! An in-memory host for the pipeline: several shards on one thread, clients that read as fast
//! or as slowly as a test says, and messages between shards delivered in a seeded order.
//!
//! It does what the engine does with threads and sockets — feed input, take output, carry
//! [`Outgoing`] work to other shards and answers back, gather `flush_all`'s barrier, wake
//! connections the pools serve — so tests and fuzz targets drive the engine's own request path
//! with as many shards as they like. Messages keep their order per (sender, receiver) pair, as
//! the engine's queues do; which pair goes next is the seed's choice.

use std::collections::VecDeque;

use super::{
    budget::{Limits, Pool},
    session::{Core, Cx, Outgoing, Session, Ticket},
    worker::{Coherence, Worker},
};
use crate::{
    bucket::{BucketMap, Ownership},
    protocol::Parser,
    store::{slabs::SlabError, Store, StoreConfig},
};

/// A client connection and the server's side of it.
#[derive(Debug)]
struct Conn {
    shard: usize,
    session: Session,
    /// Sent by the client, not yet used by the session.
    input: Vec<u8>,
    /// Taken from the session and not yet in the socket.
    sending: Vec<u8>,
    /// In the "socket": at most `window` bytes.
    socket: Vec<u8>,
    /// Read by the client.
    read: Vec<u8>,
    /// The client reads whatever arrives.
    reading: bool,
    closed: bool,
    /// One datagram's requests: answered all at once, then gone.
    datagram: bool,
    /// `flush_all` barriers: shards still to apply each.
    flushes: Vec<(Ticket, usize)>,
}

/// Settings of a simulated server.
#[derive(Debug, Clone)]
pub struct Config {
    pub shards: usize,
    /// Arena bytes per shard.
    pub arena: usize,
    pub store: StoreConfig,
    pub parser: Parser,
    pub limits: Limits,
    /// Pool sizes per shard.
    pub reply_pool: usize,
    pub input_pool: usize,
    /// Bytes the "socket" holds between the server and a client.
    pub window: usize,
    /// Picks the delivery order.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: 2,
            arena: 4 << 20,
            store: StoreConfig::default(),
            parser: Parser::new(),
            limits: Limits::default(),
            reply_pool: 8 << 20,
            input_pool: 8 << 20,
            window: 64 << 10,
            seed: 1,
        }
    }
}

/// The simulated server; `H` is each shard's coherence hook.
#[derive(Debug)]
pub struct Sim<H = ()> {
    cores: Vec<Core<Vec<u8>, H>>,
    /// Per receiving shard, per sending shard: messages in order.
    mail: Vec<Vec<VecDeque<Msg>>>,
    conns: Vec<Conn>,
    window: usize,
    rng: u64,
    now: u32,
    /// Answers `stats` (the engine formats every shard's counters).
    stats: fn(&[u8], &mut Vec<u8>),
}

fn no_stats(_args: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"END\r\n");
}

#[path = "sim/mail.rs"]
mod mail;

use self::mail::Msg;

impl Sim {
    pub fn new(cfg: &Config, now: u32) -> Result<Sim, SlabError> {
        Sim::with_hooks(cfg, now, |_| ())
    }
}

impl<H: Coherence<Vec<u8>>> Sim<H> {
    /// A server whose shard `i` runs with `hook(i)`.
    pub fn with_hooks(
        cfg: &Config,
        now: u32,
        mut hook: impl FnMut(usize) -> H,
    ) -> Result<Sim<H>, SlabError> {
        let n = cfg.shards.max(1);
        let mut cores = Vec::with_capacity(n);
        for id in 0..n {
            // Shards count CAS values apart, as the engine's do (one shard keeps the config's).
            let mut store_cfg = cfg.store.clone();
            if n > 1 {
                store_cfg.cas_offset = id as u64;
                store_cfg.cas_stride = n as u64;
            }
            let store = Store::new(vec![0u8; cfg.arena], store_cfg)?;
            let map = BucketMap::new_single(0).map_err(|_| SlabError::BadConfig("bucket map"))?;
            let own = std::sync::Arc::new(Ownership::new(map, 0));
            cores.push(Core {
                worker: Worker::new(store, hook(id), own),
                parser: cfg.parser.clone(),
                limits: cfg.limits,
                replies: Pool::new(cfg.reply_pool),
                input: Pool::new(cfg.input_pool),
                id,
                shards: n,
                place: super::Place::Shards,
            });
        }
        Ok(Sim {
            cores,
            mail: (0..n)
                .map(|_| (0..n).map(|_| VecDeque::new()).collect())
                .collect(),
            conns: Vec::new(),
            window: cfg.window,
            rng: cfg.seed | 1,
            now,
            stats: no_stats,
        })
    }

    /// Answers `stats` with `f` instead of a bare `END`.
    pub fn stats_with(&mut self, f: fn(&[u8], &mut Vec<u8>)) {
        self.stats = f;
    }

    pub fn shards(&self) -> usize {
        self.cores.len()
    }

    pub fn set_now(&mut self, now: u32) {
        self.now = now;
    }

    /// Shard `i`'s worker, for what tests look at or do between requests (removal reports,
    /// rebalancing).
    pub fn worker(&mut self, i: usize) -> &mut Worker<Vec<u8>, H> {
        &mut self.cores[i].worker
    }

    /// Shard `i`'s core, to check its pools.
    pub fn core(&self, i: usize) -> &Core<Vec<u8>, H> {
        &self.cores[i]
    }

    /// A new client connection accepted by `shard`.
    pub fn connect(&mut self, shard: usize) -> usize {
        self.open(shard, false)
    }

    /// A datagram received by `shard`: what is sent on it before the next [`Sim::run`] is its
    /// payload; its whole reply is read at once, and then it is gone.
    pub fn connect_datagram(&mut self, shard: usize) -> usize {
        self.open(shard, true)
    }

    fn open(&mut self, shard: usize, datagram: bool) -> usize {
        self.conns.push(Conn {
            shard: shard % self.cores.len(),
            session: if datagram {
                Session::datagram()
            } else {
                Session::new()
            },
            input: Vec::new(),
            sending: Vec::new(),
            socket: Vec::new(),
            read: Vec::new(),
            reading: true,
            closed: false,
            datagram,
            flushes: Vec::new(),
        });
        self.conns.len() - 1
    }

    /// Whether the client reads (a client that does not lets the socket fill).
    pub fn set_reading(&mut self, conn: usize, on: bool) {
        self.conns[conn].reading = on;
    }

    /// The client sends `bytes`; nothing runs until [`Sim::run`].
    pub fn send(&mut self, conn: usize, bytes: &[u8]) {
        self.conns[conn].input.extend_from_slice(bytes);
    }

    /// Everything the client has read so far, taken.
    pub fn take_read(&mut self, conn: usize) -> Vec<u8> {
        std::mem::take(&mut self.conns[conn].read)
    }

    /// Whether the server hung up on the client.
    pub fn closed(&self, conn: usize) -> bool {
        self.conns[conn].closed
    }

    /// Input the server has not used yet.
    pub fn unread_input(&self, conn: usize) -> usize {
        self.conns[conn].input.len()
    }

    /// Bytes the server holds for the connection (see [`Session::held`]).
    pub fn held(&self, conn: usize) -> usize {
        self.conns[conn].session.held()
    }

    /// Runs until nothing moves: input fed, messages delivered (in seeded order), output moved
    /// into sockets and read by clients that read.
    pub fn run(&mut self) {
        loop {
            let mut moved = false;
            for c in 0..self.conns.len() {
                moved |= self.service(c);
            }
            while let Some((to, from)) = self.pick() {
                if let Some(m) = self.mail[to][from].pop_front() {
                    self.handle(to, m);
                    moved = true;
                }
            }
            for s in 0..self.cores.len() {
                while let Some(who) = self.cores[s].replies.to_wake() {
                    let c = who as usize;
                    let now = self.now;
                    let (core, conn) = (&mut self.cores[s], &mut self.conns[c]);
                    let mut out = Vec::new();
                    let mut cx = Cx {
                        core,
                        now,
                        who,
                        out: &mut out,
                    };
                    conn.session.pump(&mut cx);
                    self.dispatch(s, c, out);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// A random non-empty (receiver, sender) queue.
    fn pick(&mut self) -> Option<(usize, usize)> {
        let n = self.cores.len();
        let busy: Vec<(usize, usize)> = (0..n)
            .flat_map(|t| (0..n).map(move |f| (t, f)))
            .filter(|&(t, f)| !self.mail[t][f].is_empty())
            .collect();
        if busy.is_empty() {
            return None;
        }
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Some(busy[(self.rng % busy.len() as u64) as usize])
    }

    /// Feeds a connection's input, moves its output; returns whether anything moved.
    fn service(&mut self, c: usize) -> bool {
        let s = self.conns[c].shard;
        let now = self.now;
        let mut moved = false;
        let mut out = Vec::new();
        {
            let (core, conn) = (&mut self.cores[s], &mut self.conns[c]);
            if conn.closed {
                // The client still reads what the server sent before hanging up.
                if conn.reading && !conn.socket.is_empty() {
                    conn.read.append(&mut conn.socket);
                    return true;
                }
                return false;
            }
            let mut cx = Cx {
                core,
                now,
                who: c as u64,
                out: &mut out,
            };
            if conn.datagram {
                if !conn.input.is_empty() {
                    let input = std::mem::take(&mut conn.input);
                    conn.session.feed(&mut cx, &input);
                    moved = true;
                }
                if !conn.session.pending() && conn.session.has_output() {
                    let mut reply = Vec::new();
                    conn.session.take_output(&mut reply);
                    conn.session.sent(&mut cx, reply.len());
                    conn.read = reply;
                    conn.session.close(&mut cx);
                    conn.closed = true;
                    moved = true;
                }
            } else if conn.reading && !conn.socket.is_empty() {
                conn.read.append(&mut conn.socket);
                moved = true;
            }
            if conn.sending.is_empty() && conn.session.take_output(&mut conn.sending) {
                moved = true;
            }
            // The "kernel" takes what fits; the rest waits, still counted by the session.
            let n = self
                .window
                .saturating_sub(conn.socket.len())
                .min(conn.sending.len());
            if n > 0 {
                conn.socket.extend_from_slice(&conn.sending[..n]);
                conn.sending.drain(..n);
                conn.session.sent(&mut cx, n);
                moved = true;
            }
            if !conn.input.is_empty() && conn.session.may_read() {
                let fed = conn.session.feed(&mut cx, &conn.input);
                if fed.consumed > 0 {
                    conn.input.drain(..fed.consumed);
                    moved = true;
                }
            }
            if conn.session.closing()
                && !conn.session.has_output()
                && !conn.session.pending()
                && conn.sending.is_empty()
            {
                conn.session.close(&mut cx);
                conn.closed = true;
                moved = true;
            }
        }
        moved |= !out.is_empty();
        self.dispatch(s, c, out);
        moved
    }
}
