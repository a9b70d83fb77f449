//! A router shard's side of the pipeline: what sessions hand out as [`Outgoing::Exec`] goes to
//! the key's server over this shard's own pipelined connection to it (one per server per
//! thread, opened when first needed, opened again after it fails), and each reply comes back
//! as the [`Answer`] the session waits for.
//!
//! - A single-key request is sent as it arrived (its owned bytes); one in quiet mode is
//!   followed by `mn`, so the reply it may or may not get is framed ([`Expect::Quiet`]); a
//!   `noreply` one is answered at once with nothing.
//! - A multiget's keys for one server go as one `get`/`gets`/`gat`/`gats` of up to
//!   [`CHUNK_KEYS`] keys; the reply is split back into one answer per key by matching `VALUE`
//!   keys in order (memcached answers hits in request order). `lease-get` keys go one request
//!   each, since `NOT_FOUND_HOT` names no key.
//! - A request that cannot be answered (no connection, timeout, no server for the key) gets
//!   `SERVER_ERROR <why>`; a get's key counts as a miss, as mcrouter answers get errors.
//!
//! Rooms: `send.rs` (each `Exec` to its server, the gutter or the spool; `flush_all`),
//! `replies.rs` (backend events back to sessions, multiget chunks reassembled), `probe.rs`
//! (probing down servers, replaying their spooled deletes); this file the state they share.

use std::{collections::HashMap, sync::Arc, time::Instant};

use cache_core::{
    pipeline::{Answer, GetKind, Part, Ticket},
    protocol::Request,
};

use super::{gutter, spool, table::RouteTable};
use crate::engine::{outbound::OutError, ConnId, OutId, Shard};

/// Most keys of one multiget sent to one server in one request.
pub(crate) const CHUNK_KEYS: usize = 100;

/// What a reply is for.
#[derive(Debug)]
enum What {
    /// A single-key request; `quiet`: sent with `mn` after it.
    One {
        quiet: bool,
        get: bool,
        /// A delete's spool entry: spooled if no reply comes.
        spool: Option<Vec<u8>>,
        /// A first try at a bucket-map server: the request and its key's hash, to send again
        /// if the server refuses the key as not its bucket's.
        retry: Option<Box<(cache_core::protocol::Owned, u64)>>,
    },
    /// Keys `from..from + n` of a multiget part (the `i`th of them when sent one per request).
    Keys { group: u64, i: Option<u32> },
    /// One server's `flush_all`.
    Flush { group: u64 },
    /// A probe of a server that is down, on connection `out`.
    Probe { out: OutId },
    /// A spooled delete replayed on a probe's connection.
    Replay { group: u64, entry: Vec<u8> },
}

/// A server's spooled deletes being replayed.
#[derive(Debug)]
struct ReplayWait {
    dest: usize,
    out: OutId,
    left: usize,
    /// Entries not answered (or answered with an error): spooled again.
    failed: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Pending {
    conn: ConnId,
    ticket: Ticket,
    /// The destination it was sent to.
    dest: usize,
    what: What,
}

/// A multiget part's replies being gathered.
#[derive(Debug)]
struct Gather {
    conn: ConnId,
    ticket: Ticket,
    part: Part,
    from: u32,
    /// One reply per key when sent one per request (lease-get); else the one reply.
    replies: Vec<Option<Vec<u8>>>,
    left: usize,
    /// Sent one request a key (lease-get, or to the gutter): `replies` has one per key.
    per_key: bool,
}

/// A `flush_all` sent to every server.
#[derive(Debug)]
struct FlushWait {
    conn: ConnId,
    ticket: Ticket,
    left: usize,
    error: Option<String>,
}

/// Counters of one router shard (summed by `stats`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RouteCounters {
    /// Requests sent to servers (a multiget chunk counts once).
    pub(crate) sent: u64,
    /// Requests answered with an error: no connection, the server hung up, or no reply in time.
    pub(crate) errors: u64,
    pub(crate) timeouts: u64,
    /// Keys no server stands for (a bucket the map gives nobody).
    pub(crate) unroutable: u64,
    /// Keys of gets answered as misses because their server could not be asked.
    pub(crate) get_errors: u64,
    /// Connections to servers opened.
    pub(crate) connects: u64,
    /// Requests failed at once because their server is down (TKO).
    pub(crate) fast_fails: u64,
    /// Probes of down servers sent.
    pub(crate) probes: u64,
    /// Single-key requests sent to a gutter server because their own server is down.
    pub(crate) gutter: u64,
    /// Deletes written to the spool, and spooled deletes replayed (answered).
    pub(crate) spooled: u64,
    pub(crate) replayed: u64,
    /// Requests sent again to a key's new owner after a `not my vbucket` refusal.
    pub(crate) retries: u64,
}

/// A router shard's backend connections and the replies it waits for.
#[derive(Debug)]
pub(crate) struct Forward {
    pub(crate) table: Arc<RouteTable>,
    outs: Vec<Option<OutId>>,
    pending: HashMap<u64, Pending>,
    gathers: HashMap<u64, Gather>,
    flushes: HashMap<u64, FlushWait>,
    replays: HashMap<u64, ReplayWait>,
    next: u64,
    /// Answers made without a reply (noreply, errors), delivered from the event loop: a
    /// session is never called back from inside its own dispatch.
    ready: Vec<(ConnId, Ticket, Answer)>,
    /// Host work done (`flush_all`): its error, if any.
    host_done: Vec<(ConnId, Ticket, Option<String>)>,
    pub(crate) counters: RouteCounters,
}

impl Forward {
    pub(crate) fn new(table: Arc<RouteTable>) -> Forward {
        Forward {
            outs: vec![None; table.dests.len()],
            table,
            pending: HashMap::new(),
            gathers: HashMap::new(),
            flushes: HashMap::new(),
            replays: HashMap::new(),
            next: 1,
            ready: Vec::new(),
            host_done: Vec::new(),
            counters: RouteCounters::default(),
        }
    }

    fn token(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A token for a reply awaited from `dest`, remembered with what it is for.
    fn expect(&mut self, conn: ConnId, ticket: Ticket, dest: usize, what: What) -> u64 {
        let token = self.token();
        self.remember(token, conn, ticket, dest, what);
        token
    }

    /// Remembers what the reply awaited for `token` from `dest` is for.
    fn remember(&mut self, token: u64, conn: ConnId, ticket: Ticket, dest: usize, what: What) {
        let p = Pending {
            conn,
            ticket,
            dest,
            what,
        };
        self.pending.insert(token, p);
    }
}

/// The text of a multiget of `keys` of `part`.
fn keys_request(kind: GetKind, part: &Part, keys: &[u32], out: &mut Vec<u8>) {
    match kind {
        GetKind::Get { cas, touch: None } => {
            out.extend_from_slice(if cas { b"gets" } else { b"get" });
        }
        GetKind::Get {
            cas,
            touch: Some(t),
        } => {
            out.extend_from_slice(if cas { b"gats " } else { b"gat " });
            out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
        }
        GetKind::Lease => out.extend_from_slice(b"lease-get"),
    }
    for &i in keys {
        out.push(b' ');
        out.extend_from_slice(part.list.key(i as usize));
    }
    out.extend_from_slice(b"\r\n");
}

/// `SERVER_ERROR <why>`.
fn server_error(why: &str) -> Vec<u8> {
    format!("SERVER_ERROR {why}\r\n").into_bytes()
}

fn why(e: &OutError) -> String {
    match e {
        OutError::Connect(s) => format!("cannot connect: {s}"),
        OutError::Timeout => "timeout".into(),
        OutError::Closed(s) => format!("connection lost: {s}"),
    }
}

/// Whether a single-key request is a classic get (whose errors become misses).
fn classic_get(req: &Request<'_>) -> bool {
    matches!(req, Request::Get(_))
}

mod probe;
mod replies;
mod send;

impl Shard {
    /// This shard's connection to destination `d`, opened if there is none.
    pub(super) fn out_to(&mut self, d: usize) -> Result<OutId, String> {
        let Some(f) = self.router.as_mut() else {
            return Err("not a router".into());
        };
        if let Some(o) = f.outs[d] {
            return Ok(o);
        }
        let dest = &f.table.dests[d];
        let (addr, timeout) = (dest.addr, dest.timeout);
        match self.outbound.open(&mut self.ring, addr, timeout) {
            Ok(o) => {
                f.outs[d] = Some(o);
                f.counters.connects += 1;
                Ok(o)
            }
            Err(e) => Err(format!("cannot connect: {e:#}")),
        }
    }

    /// Queues `answer` for client `conn`'s session (delivered by [`Shard::route_events`]).
    pub(super) fn route_answer(&mut self, conn: ConnId, ticket: Ticket, answer: Answer) {
        if let Some(f) = self.router.as_mut() {
            f.ready.push((conn, ticket, answer));
        }
    }

    pub(super) fn finish_host_route(
        &mut self,
        conn: ConnId,
        ticket: Ticket,
        error: Option<String>,
    ) {
        if let Some(f) = self.router.as_mut() {
            f.host_done.push((conn, ticket, error));
        }
    }

    /// Fails requests past their deadline (every tick).
    pub(crate) fn route_tick(&mut self) {
        if self.router.is_none() {
            return;
        }
        self.probe_down();
        self.outbound
            .check_deadlines(&mut self.ring, Instant::now());
        self.route_events();
    }
}

/// Keys of `part` from `from` sent in one go.
pub(super) fn chunk(part: &Part, from: u32) -> usize {
    (part.keys.len() - from as usize).min(CHUNK_KEYS)
}

/// Every key of a chunk a miss.
pub(super) fn miss_all(from: u32, n: usize) -> Answer {
    Answer::Keys {
        bytes: Vec::new(),
        ends: vec![0; n],
        next: from + n as u32,
        over: None,
    }
}
