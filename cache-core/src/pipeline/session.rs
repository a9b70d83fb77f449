//! One client's byte stream through the pipeline: parse what has arrived, run each request here
//! or hand it to the shard that stores its key, and put the replies out in request order within
//! the connection's budget.
//!
//! The host (the engine, or a test harness) moves bytes and messages; everything about requests
//! happens here, the same code whoever drives it. A call takes a [`Cx`]: this shard's [`Core`],
//! the time, the connection's token, and a list the session appends [`Outgoing`] work to, which
//! the host delivers (another shard's answer comes back through [`Session::deliver`], the host's
//! own through [`Session::complete`]).
//!
//! A request that cannot get the room its reply needs is left in the input (nothing of it has
//! run), and input stops until there is room: the host stops reading and feeds the same bytes
//! again after [`Session::sent`] or a pool wake-up says it may. A multiget of this shard's keys
//! that stops half-way remembers how many keys it answered and skips them when it is fed again.

use super::{
    budget::{Account, Limits, Pool, Short, REPLY_SLACK},
    hazard::Hazards,
    multi::{Multi, Step},
    queue::{Entry, One, OneState, Queue, Slot},
    remote::{Answer, GetKind, KeyList, Remote},
    route::{route, Route},
    worker::{Coherence, Ran, Worker},
};
use crate::{
    bucket::khash,
    exec::Action,
    protocol::{encode, ErrorReply, Owned, ParseError, Parser, Request},
};

/// What a request whose reply carries no item may write, at most.
const SMALL: usize = REPLY_SLACK;

/// Everything of one shard that its connections' sessions share.
#[derive(Debug)]
pub struct Core<B, H> {
    pub worker: Worker<B, H>,
    pub parser: Parser,
    pub limits: Limits,
    /// Reply bytes lent to connections beyond their allowance.
    pub replies: Pool,
    /// Input bytes lent to partial requests beyond their allowance.
    pub input: Pool,
    /// This shard, of `shards`.
    pub id: usize,
    pub shards: usize,
    /// Where keys live: this node's shards, or a router's destinations.
    pub place: super::place::Place,
}

/// One call's context.
#[derive(Debug)]
pub struct Cx<'c, B, H> {
    pub core: &'c mut Core<B, H>,
    /// Unix seconds.
    pub now: u32,
    /// The connection's token (what pools queue and wake).
    pub who: u64,
    /// Work for the host, appended to.
    pub out: &'c mut Vec<Outgoing>,
}

/// Which reply (and which part of it) an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub seq: u64,
    pub part: u32,
}

/// Work the session hands the host.
#[derive(Debug)]
pub enum Outgoing {
    /// Run `op` on shard `to`, and deliver its answer with `ticket`.
    Exec {
        to: usize,
        ticket: Ticket,
        op: Remote,
    },
    /// `flush_all` was applied here: apply it on every other shard, then complete `ticket`
    /// (with no bytes: the session writes the `OK`).
    Flush { ticket: Ticket, delay: i32 },
    /// `stats <args>`: complete `ticket` with the formatted reply.
    Stats { ticket: Ticket, args: Box<[u8]> },
}

/// What [`Session::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Input used; the rest must be kept and fed again with more appended.
    pub consumed: usize,
    /// Keep receiving. False while the session waits for room (feed again once
    /// [`Session::sent`] or [`Session::pump`] says so) or is closing.
    pub read: bool,
    /// Hang up once the output is sent.
    pub close: bool,
}

/// Per-connection pipeline state.
#[derive(Debug, Default)]
pub struct Session {
    datagram: bool,
    /// Bytes of a refused data block still to discard.
    swallow: usize,
    /// The whole size of the partial request at the front of the input, once known.
    expect: Option<usize>,
    /// Keys already answered of the multiget at the front of the input.
    skip: usize,
    /// Input-pool bytes the partial request holds.
    input_borrowed: usize,
    acct: Account,
    out: Vec<u8>,
    queue: Queue,
    /// Why the request at the front of the input waits.
    stall: Option<Stall>,
    /// Keys of reads not finished, which later writes wait for.
    hazards: Hazards,
    close: bool,
    /// A datagram's reply passed its cap: it is answered with an error instead.
    failed: bool,
}

/// Why input waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// For this much room.
    Room(usize),
    /// For a read of the same key to finish.
    Hazard,
}

/// What a session's code needs of a call besides the session: its account and cap with it.
pub(super) struct Env<'e, 'c, B, H> {
    pub cx: &'e mut Cx<'c, B, H>,
    pub acct: &'e mut Account,
    pub cap: usize,
}

impl<'e, 'c, B, H> Env<'e, 'c, B, H> {
    pub(super) fn new(acct: &'e mut Account, cap: usize, cx: &'e mut Cx<'c, B, H>) -> Self {
        Env { cx, acct, cap }
    }

    fn free(&self) -> usize {
        self.cx.core.limits.reply_free
    }

    pub(super) fn room(&self) -> usize {
        let (free, pool) = (self.free(), &self.cx.core.replies);
        self.acct.room(free, self.cap, pool, self.cx.who)
    }

    pub(super) fn take(&mut self, n: usize) -> Result<(), Short> {
        let free = self.free();
        let (pool, who) = (&mut self.cx.core.replies, self.cx.who);
        self.acct.take(n, free, self.cap, pool, who)
    }

    pub(super) fn settle(&mut self, reserved: usize, actual: usize) {
        let free = self.free();
        self.acct
            .settle(reserved, actual, free, &mut self.cx.core.replies);
    }

    pub(super) fn give(&mut self, n: usize) {
        let free = self.free();
        self.acct.give(n, free, &mut self.cx.core.replies);
    }

    /// Counts `n` bytes that are already made and cannot wait (the host's `stats` text).
    pub(super) fn force(&mut self, n: usize) {
        if self.take(n).is_err() {
            self.acct.force(n);
        }
    }

    /// Registers to be woken when `n` bytes may be taken (with the pool, if that is what
    /// lacks); returns what lacks.
    pub(super) fn wait(&mut self, n: usize) -> Option<Short> {
        match self.take(n) {
            Ok(()) => {
                self.settle(n, 0);
                None
            }
            Err(short) => Some(short),
        }
    }
}

impl Session {
    /// A session for a stream connection.
    pub fn new() -> Session {
        Session::default()
    }

    /// A session for one datagram's requests: its replies are capped at
    /// [`Limits::datagram_max`] (past that, the datagram is answered with an error).
    pub fn datagram() -> Session {
        Session {
            datagram: true,
            ..Session::default()
        }
    }

    /// The connection's reply cap.
    fn cap(&self, l: &Limits) -> usize {
        if self.datagram {
            l.datagram_max
        } else {
            l.reply_max
        }
    }

    fn room<B, H>(&mut self, cx: &mut Cx<'_, B, H>) -> usize {
        let cap = self.cap(&cx.core.limits);
        Env::new(&mut self.acct, cap, cx).room()
    }

    fn take<B, H>(&mut self, cx: &mut Cx<'_, B, H>, n: usize) -> Result<(), Short> {
        let cap = self.cap(&cx.core.limits);
        Env::new(&mut self.acct, cap, cx).take(n)
    }

    fn settle<B, H>(&mut self, cx: &mut Cx<'_, B, H>, reserved: usize, actual: usize) {
        let cap = self.cap(&cx.core.limits);
        Env::new(&mut self.acct, cap, cx).settle(reserved, actual);
    }

    fn give<B, H>(&mut self, cx: &mut Cx<'_, B, H>, n: usize) {
        let cap = self.cap(&cx.core.limits);
        Env::new(&mut self.acct, cap, cx).give(n);
    }

    fn force<B, H>(&mut self, cx: &mut Cx<'_, B, H>, n: usize) {
        let cap = self.cap(&cx.core.limits);
        Env::new(&mut self.acct, cap, cx).force(n);
    }

    /// Where a reply made here now goes: the output, or behind the pending entries.
    fn buf(&mut self) -> &mut Vec<u8> {
        if self.queue.is_empty() {
            &mut self.out
        } else {
            self.queue.tail_buf()
        }
    }
}

#[path = "session/feed.rs"]
mod feed;
#[path = "session/input.rs"]
mod input;
#[path = "session/reply.rs"]
mod reply;

/// The base of a request's owned copy: its bytes, without a refused block's first bytes.
fn copy_base<'a>(req: &Request<'_>, raw: &'a [u8]) -> &'a [u8] {
    if matches!(req, Request::Refused { .. }) {
        let line = memchr::memchr(b'\n', raw).map_or(raw.len(), |i| i + 1);
        return &raw[..line];
    }
    raw
}

/// Whether `req`'s reply can carry an item's value.
fn returns_value(req: &Request<'_>) -> bool {
    match req {
        Request::Get(_) | Request::LeaseGet(_) => true,
        Request::MetaGet(m) => m.flags.has(b'v'),
        _ => false,
    }
}

/// How the keys of a multi-key read are read, and its keys.
fn read_kind<'a>(req: &Request<'a>) -> Option<(GetKind, crate::protocol::Keys<'a>)> {
    match req {
        Request::Get(g) => Some((
            GetKind::Get {
                cas: g.cas,
                touch: g.touch,
            },
            g.keys,
        )),
        Request::LeaseGet(k) => Some((GetKind::Lease, *k)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "session/tests.rs"]
mod tests;
