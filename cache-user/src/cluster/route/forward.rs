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

use std::{collections::HashMap, sync::Arc, time::Instant};

use cache_core::{
    pipeline::{route::one_key, Answer, GetKind, Part, Remote, Ticket},
    protocol::{
        reply::{values, Block, Expect, MN},
        Request,
    },
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

impl Shard {
    fn fwd(&mut self) -> Option<&mut Forward> {
        self.router.as_mut()
    }

    /// This shard's connection to destination `d`, opened if there is none.
    fn out_to(&mut self, d: usize) -> Result<OutId, String> {
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

    /// Carries one `Exec` of client `conn` to its server.
    pub(crate) fn forward(&mut self, conn: ConnId, to: usize, ticket: Ticket, op: Remote) {
        let unroutable = self.fwd().is_some_and(|f| to >= f.table.dests.len());
        if unroutable {
            if let Some(f) = self.fwd() {
                f.counters.unroutable += 1;
            }
            let answer = match op {
                Remote::One { .. } => Answer::Done(server_error("no server for this key")),
                Remote::Keys { part, from, .. } => miss_all(&part, from, chunk(&part, from)),
            };
            return self.route_answer(conn, ticket, answer);
        }
        let Some(table) = self.fwd().map(|f| Arc::clone(&f.table)) else {
            return;
        };
        let down = table.health.is_down(to);
        match op {
            Remote::One { req, hash, .. } => {
                if !down {
                    return self.send_one(conn, ticket, to, &req, None);
                }
                // Down: to the key's gutter server, a store's TTL capped; else failed at once.
                // A delete is spooled for the server either way.
                let r = req.request();
                if let Some(e) = spool::entry(&r) {
                    self.spool(to, &e);
                }
                let mut scratch = [0u8; 256];
                let gutter = one_key(&r, &mut scratch)
                    .and_then(|k| table.gutter_of(to, k, hash))
                    .filter(|&(g, _)| !table.health.is_down(g));
                match gutter {
                    Some((g, cap)) => {
                        let body = gutter::rewrite(&r, cap, self.now);
                        if let Some(f) = self.fwd() {
                            f.counters.gutter += 1;
                        }
                        self.send_one(conn, ticket, g, &req, body);
                    }
                    None => {
                        if let Some(f) = self.fwd() {
                            f.counters.fast_fails += 1;
                        }
                        let op = Remote::One {
                            req,
                            hash,
                            grant: 0,
                        };
                        self.fail_exec(conn, ticket, &op, "unavailable");
                    }
                }
            }
            Remote::Keys { part, from, .. } => {
                let n = chunk(&part, from);
                let positions = &part.keys[from as usize..from as usize + n];
                // Each key's server: `to`, or while it is down its gutter server (if any and up).
                let dests: Vec<Option<usize>> = if down {
                    positions
                        .iter()
                        .map(|&k| {
                            let (key, h) = (part.list.key(k as usize), part.list.hash(k as usize));
                            table
                                .gutter_of(to, key, h)
                                .map(|(g, _)| g)
                                .filter(|&g| !table.health.is_down(g))
                        })
                        .collect()
                } else {
                    vec![Some(to); n]
                };
                if down && dests.iter().all(Option::is_none) {
                    if let Some(f) = self.fwd() {
                        f.counters.fast_fails += 1;
                    }
                    let op = Remote::Keys {
                        part,
                        from,
                        grant: 0,
                    };
                    return self.fail_exec(conn, ticket, &op, "unavailable");
                }
                let per_key = down || part.kind == GetKind::Lease;
                self.send_keys(conn, ticket, part, from, &dests, per_key);
            }
        }
    }

    /// Sends a single-key request (`body`, or its bytes as they arrived) to destination `to`.
    fn send_one(
        &mut self,
        conn: ConnId,
        ticket: Ticket,
        to: usize,
        req: &cache_core::protocol::Owned,
        body: Option<Vec<u8>>,
    ) {
        let out = match self.out_to(to) {
            Ok(o) => o,
            Err(why) => {
                if let Some(e) = spool::entry(&req.request()) {
                    self.spool(to, &e);
                }
                let op = Remote::One {
                    req: req.clone(),
                    hash: 0,
                    grant: 0,
                };
                return self.fail_exec(conn, ticket, &op, &why);
            }
        };
        let now = Instant::now();
        let r = req.request();
        let quiet = Expect::is_quiet(&r);
        let get = classic_get(&r);
        let expect = if quiet {
            Some(Expect::Quiet)
        } else {
            Expect::of(&r)
        };
        let mut bytes = body.unwrap_or_else(|| req.raw().to_vec());
        if quiet {
            bytes.extend_from_slice(b"mn\r\n");
        }
        let Some(f) = self.router.as_mut() else {
            return;
        };
        f.counters.sent += 1;
        match expect {
            None => {
                self.outbound
                    .send(&mut self.ring, out, &bytes, None, 0, now);
                self.route_answer(conn, ticket, Answer::Done(Vec::new()));
            }
            Some(expect) => {
                let token = f.token();
                let what = What::One {
                    quiet,
                    get,
                    spool: spool::entry(&r),
                };
                let p = Pending {
                    conn,
                    ticket,
                    dest: to,
                    what,
                };
                f.pending.insert(token, p);
                self.outbound
                    .send(&mut self.ring, out, &bytes, Some(expect), token, now);
            }
        }
    }

    /// Sends keys `from..` of `part` (one chunk): each key `j` to `dests[j]` (`None`: not
    /// reachable, answered as a miss). `per_key`: one request a key; else one for them all
    /// (every key then has the same destination).
    fn send_keys(
        &mut self,
        conn: ConnId,
        ticket: Ticket,
        part: Part,
        from: u32,
        dests: &[Option<usize>],
        per_key: bool,
    ) {
        let n = dests.len();
        let positions: Vec<u32> = part.keys[from as usize..from as usize + n].to_vec();
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let group = f.token();
        let mut sends = Vec::new();
        let slots = if per_key { n } else { 1 };
        let mut replies = vec![None; slots];
        let mut left = slots;
        if per_key {
            for (j, &k) in positions.iter().enumerate() {
                let Some(d) = dests[j] else {
                    f.counters.get_errors += 1;
                    replies[j] = Some(Vec::new());
                    left -= 1;
                    continue;
                };
                let mut text = Vec::new();
                keys_request(part.kind, &part, &[k], &mut text);
                let token = f.token();
                let what = What::Keys {
                    group,
                    i: Some(j as u32),
                };
                f.pending.insert(
                    token,
                    Pending {
                        conn,
                        ticket,
                        dest: d,
                        what,
                    },
                );
                sends.push((d, text, token, Some(j as u32)));
            }
        } else if let Some(Some(d)) = dests.first() {
            let mut text = Vec::new();
            keys_request(part.kind, &part, &positions, &mut text);
            let token = f.token();
            let what = What::Keys { group, i: None };
            f.pending.insert(
                token,
                Pending {
                    conn,
                    ticket,
                    dest: *d,
                    what,
                },
            );
            sends.push((*d, text, token, None));
        }
        f.counters.sent += sends.len() as u64;
        let g = Gather {
            conn,
            ticket,
            part,
            from,
            replies,
            left,
            per_key,
        };
        if left == 0 {
            let (answer, errors) = assemble(&g);
            f.counters.get_errors += errors;
            return self.route_answer(conn, ticket, answer);
        }
        f.gathers.insert(group, g);
        let now = Instant::now();
        for (d, bytes, token, slot) in sends {
            match self.out_to(d) {
                Ok(out) => {
                    let expect = Some(Expect::Values);
                    self.outbound
                        .send(&mut self.ring, out, &bytes, expect, token, now);
                }
                Err(why) => {
                    if let Some(f) = self.fwd() {
                        f.pending.remove(&token);
                        f.counters.errors += 1;
                    }
                    self.keys_reply(group, slot, Err(why));
                }
            }
        }
    }

    /// An `Exec` that could not be sent: its error answer.
    fn fail_exec(&mut self, conn: ConnId, ticket: Ticket, op: &Remote, why: &str) {
        if let Some(f) = self.fwd() {
            f.counters.errors += 1;
        }
        let answer = match op {
            // A `noreply` request gets nothing, even when it could not be sent.
            Remote::One { req, .. } if Expect::of(&req.request()).is_none() => {
                Answer::Done(Vec::new())
            }
            Remote::One { req, .. } if classic_get(&req.request()) => {
                Answer::Done(b"END\r\n".to_vec())
            }
            Remote::One { .. } => Answer::Done(server_error(why)),
            Remote::Keys { part, from, .. } => {
                let n = chunk(part, *from);
                if let Some(f) = self.fwd() {
                    f.counters.get_errors += n as u64;
                }
                miss_all(part, *from, n)
            }
        };
        self.route_answer(conn, ticket, answer);
    }

    /// `flush_all [delay]` to every server; the client's `OK` once all took it.
    pub(crate) fn route_flush(&mut self, conn: ConnId, ticket: Ticket, delay: i32) {
        let n = self.fwd().map_or(0, |f| f.table.dests.len());
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let group = f.token();
        f.flushes.insert(
            group,
            FlushWait {
                conn,
                ticket,
                left: n,
                error: None,
            },
        );
        let text = format!("flush_all {delay}\r\n").into_bytes();
        let now = Instant::now();
        for d in 0..n {
            let Some(f) = self.router.as_mut() else {
                return;
            };
            let token = f.token();
            let what = What::Flush { group };
            f.pending.insert(
                token,
                Pending {
                    conn,
                    ticket,
                    dest: d,
                    what,
                },
            );
            match self.out_to(d) {
                Ok(out) => {
                    self.outbound
                        .send(&mut self.ring, out, &text, Some(Expect::Line), token, now);
                }
                Err(why) => {
                    if let Some(f) = self.router.as_mut() {
                        f.pending.remove(&token);
                    }
                    self.flush_step(group, Err(why));
                }
            }
        }
    }

    /// Replies that came in on this shard's backend connections, to their sessions.
    pub(crate) fn route_events(&mut self) {
        loop {
            let events = self.outbound.take_events();
            let Some(f) = self.router.as_mut() else {
                return;
            };
            let ready = std::mem::take(&mut f.ready);
            let done = std::mem::take(&mut f.host_done);
            if events.is_empty() && ready.is_empty() && done.is_empty() {
                return;
            }
            for (conn, ticket, answer) in ready {
                if let Some((c, mut cx)) = self.client(conn) {
                    c.session.deliver(&mut cx, ticket, answer);
                }
                self.resume(conn);
            }
            for (conn, ticket, error) in done {
                if let Some((c, mut cx)) = self.client(conn) {
                    match error {
                        None => c.session.complete(&mut cx, ticket, b""),
                        Some(e) => {
                            let text = format!("{e}\r\n");
                            c.session.complete_instead(&mut cx, ticket, text.as_bytes())
                        }
                    };
                }
                self.resume(conn);
            }
            for e in events {
                let Some(f) = self.router.as_mut() else {
                    return;
                };
                if e.reply.is_err() {
                    // The connection is closed: the next request opens another.
                    for o in f.outs.iter_mut().filter(|o| **o == Some(e.out)) {
                        *o = None;
                    }
                }
                let Some(p) = f.pending.remove(&e.token) else {
                    continue;
                };
                if let What::Probe { out } = p.what {
                    let up = matches!(&e.reply, Ok(b) if b.starts_with(b"VERSION "));
                    self.probe_answered(p.dest, out, up);
                    continue;
                }
                if let What::Replay { group, entry } = p.what {
                    self.replay_answered(group, entry, &e.reply);
                    continue;
                }
                let now = f.table.now_ms();
                let health = &f.table.health;
                match &e.reply {
                    Ok(_) => health.ok(p.dest),
                    Err(OutError::Connect(why)) => {
                        if health.unreachable(p.dest, now) {
                            tracing::warn!(server = %f.table.dests[p.dest].addr, "down (hard TKO): {why}");
                        }
                    }
                    Err(err) => {
                        if health.failed(p.dest, now) {
                            tracing::warn!(server = %f.table.dests[p.dest].addr, "down (soft TKO): {}", why(err));
                        }
                    }
                }
                let reply = e.reply.map_err(|err| {
                    f.counters.errors += 1;
                    if err == OutError::Timeout {
                        f.counters.timeouts += 1;
                    }
                    why(&err)
                });
                match p.what {
                    What::One { quiet, get, spool } => {
                        if let (Err(_), Some(entry)) = (&reply, &spool) {
                            f.counters.spooled += 1;
                            if let Err(e) = f.table.spool.append(p.dest, entry) {
                                tracing::error!("spooling a delete: {e:#}");
                            }
                        }
                        let answer = match reply {
                            Ok(mut bytes) => {
                                if quiet {
                                    bytes.truncate(bytes.len().saturating_sub(MN.len()));
                                }
                                bytes
                            }
                            Err(_) if get => {
                                f.counters.get_errors += 1;
                                b"END\r\n".to_vec()
                            }
                            Err(why) => server_error(&why),
                        };
                        self.route_answer(p.conn, p.ticket, Answer::Done(answer));
                    }
                    What::Keys { group, i } => self.keys_reply(group, i, reply),
                    What::Probe { .. } | What::Replay { .. } => {}
                    What::Flush { group } => {
                        let took = reply.and_then(|b| {
                            if b.starts_with(b"OK") {
                                Ok(())
                            } else {
                                Err(String::from_utf8_lossy(&b).trim().to_owned())
                            }
                        });
                        self.flush_step(group, took);
                    }
                }
            }
        }
    }

    fn keys_reply(&mut self, group: u64, i: Option<u32>, reply: Result<Vec<u8>, String>) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let Some(g) = f.gathers.get_mut(&group) else {
            return;
        };
        let slot = i.unwrap_or(0) as usize;
        if let Some(r) = g.replies.get_mut(slot) {
            if r.is_none() {
                g.left -= 1;
            }
            *r = Some(reply.unwrap_or_default());
        }
        if g.left > 0 {
            return;
        }
        let Some(g) = f.gathers.remove(&group) else {
            return;
        };
        let (answer, errors) = assemble(&g);
        f.counters.get_errors += errors;
        self.route_answer(g.conn, g.ticket, answer);
    }

    fn flush_step(&mut self, group: u64, reply: Result<(), String>) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let Some(w) = f.flushes.get_mut(&group) else {
            return;
        };
        w.left = w.left.saturating_sub(1);
        if let Err(why) = reply {
            w.error.get_or_insert(why);
        }
        if w.left > 0 {
            return;
        }
        let Some(w) = f.flushes.remove(&group) else {
            return;
        };
        match w.error {
            None => self.finish_host_route(w.conn, w.ticket, None),
            Some(why) => {
                let text = format!("SERVER_ERROR flush_all did not reach every server: {why}");
                self.finish_host_route(w.conn, w.ticket, Some(text));
            }
        }
    }

    /// Queues `answer` for client `conn`'s session (delivered by [`Shard::route_events`]).
    fn route_answer(&mut self, conn: ConnId, ticket: Ticket, answer: Answer) {
        if let Some(f) = self.router.as_mut() {
            f.ready.push((conn, ticket, answer));
        }
    }

    fn finish_host_route(&mut self, conn: ConnId, ticket: Ticket, error: Option<String>) {
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

impl Shard {
    /// Spools `entry` (a delete) for destination `d`.
    fn spool(&mut self, d: usize, entry: &[u8]) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        f.counters.spooled += 1;
        if let Err(e) = f.table.spool.append(d, entry) {
            tracing::error!(server = %f.table.dests[d].addr, "spooling a delete: {e:#}");
        }
    }

    /// A probe of `d` came back: if it answered, its spooled deletes are replayed on the probe's
    /// connection before it counts as up (`spool.rs`).
    fn probe_answered(&mut self, d: usize, out: OutId, up: bool) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let table = Arc::clone(&f.table);
        let entries = if up {
            table.spool.take(d).unwrap_or_else(|e| {
                tracing::error!(server = %table.dests[d].addr, "reading the spool: {e:#}");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        if !up || entries.is_empty() {
            table.health.probed(d, up, table.now_ms());
            if up {
                tracing::info!(server = %table.dests[d].addr, "up again (probe answered)");
            }
            return self.outbound.close(&mut self.ring, out);
        }
        let group = f.token();
        f.replays.insert(
            group,
            ReplayWait {
                dest: d,
                out,
                left: entries.len(),
                failed: Vec::new(),
            },
        );
        let now = Instant::now();
        for entry in entries {
            let Some(f) = self.router.as_mut() else {
                return;
            };
            let token = f.token();
            let expect = if entry.starts_with(b"md ") {
                Expect::Meta
            } else {
                Expect::Line
            };
            self.outbound
                .send(&mut self.ring, out, &entry, Some(expect), token, now);
            let Some(f) = self.router.as_mut() else {
                return;
            };
            let pending = Pending {
                conn: ConnId::from_token(u64::MAX),
                ticket: Ticket { seq: 0, part: 0 },
                dest: d,
                what: What::Replay { group, entry },
            };
            f.pending.insert(token, pending);
        }
    }

    /// One replayed delete's reply; once all are in, the server is up (or, if any failed, they
    /// are spooled again and the next probe waits).
    fn replay_answered(&mut self, group: u64, entry: Vec<u8>, reply: &Result<Vec<u8>, OutError>) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let Some(w) = f.replays.get_mut(&group) else {
            return;
        };
        let took = matches!(reply, Ok(b) if !is_error_line(b));
        if took {
            f.counters.replayed += 1;
        } else {
            w.failed.push(entry);
        }
        w.left -= 1;
        if w.left > 0 {
            return;
        }
        let Some(w) = f.replays.remove(&group) else {
            return;
        };
        let table = Arc::clone(&f.table);
        let ok = w.failed.is_empty();
        for e in &w.failed {
            if let Err(err) = table.spool.append(w.dest, e) {
                tracing::error!(server = %table.dests[w.dest].addr, "spooling again: {err:#}");
            }
        }
        table.health.probed(w.dest, ok, table.now_ms());
        if ok {
            tracing::info!(server = %table.dests[w.dest].addr, "up again (spooled deletes replayed)");
        }
        self.outbound.close(&mut self.ring, w.out);
    }

    /// Probes the down servers whose probe is due and that no other thread probes: `version`
    /// on a connection of its own (`health.rs`).
    fn probe_down(&mut self) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let table = Arc::clone(&f.table);
        let now = table.now_ms();
        for d in 0..table.health.len() {
            if !table.health.claim_probe(d, now) {
                continue;
            }
            let dest = &table.dests[d];
            let Ok(out) = self.outbound.open(&mut self.ring, dest.addr, dest.timeout) else {
                table.health.probed(d, false, now);
                continue;
            };
            let Some(f) = self.router.as_mut() else {
                return;
            };
            f.counters.probes += 1;
            let token = f.token();
            let pending = Pending {
                conn: ConnId::from_token(u64::MAX),
                ticket: Ticket { seq: 0, part: 0 },
                dest: d,
                what: What::Probe { out },
            };
            f.pending.insert(token, pending);
            let (bytes, expect) = (b"version\r\n", Some(Expect::Line));
            self.outbound
                .send(&mut self.ring, out, bytes, expect, token, Instant::now());
        }
    }
}

/// Whether a reply is an error line (a replayed delete it does not count as done).
fn is_error_line(b: &[u8]) -> bool {
    b.starts_with(b"ERROR") || b.starts_with(b"CLIENT_ERROR") || b.starts_with(b"SERVER_ERROR")
}

/// Keys of `part` from `from` sent in one go.
fn chunk(part: &Part, from: u32) -> usize {
    (part.keys.len() - from as usize).min(CHUNK_KEYS)
}

/// Every key of a chunk a miss.
fn miss_all(_part: &Part, from: u32, n: usize) -> Answer {
    Answer::Keys {
        bytes: Vec::new(),
        ends: vec![0; n],
        next: from + n as u32,
        over: None,
    }
}

/// A chunk's answer from its replies, and how many keys were errors (answered as misses).
fn assemble(g: &Gather) -> (Answer, u64) {
    let keys = &g.part.keys;
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    let mut errors = 0u64;
    if g.per_key {
        // One reply per key: its blocks (one at most) are the key's answer.
        for r in &g.replies {
            match r.as_deref().and_then(values) {
                Some(blocks) => {
                    for b in blocks {
                        match b {
                            Block::Value { text, .. } | Block::Hot(text) => {
                                bytes.extend_from_slice(text)
                            }
                            Block::Error(_) => errors += 1,
                        }
                    }
                }
                None => errors += 1,
            }
            ends.push(bytes.len() as u32);
        }
    } else {
        let n = chunk(&g.part, g.from);
        let reply = g.replies.first().cloned().flatten().unwrap_or_default();
        let blocks = values(&reply).unwrap_or_else(|| {
            errors = n as u64;
            Vec::new()
        });
        let mut it = blocks.iter().peekable();
        for j in 0..n {
            let want = g.part.list.key(keys[g.from as usize + j] as usize);
            match it.peek() {
                Some(Block::Value { key, text }) if *key == want => {
                    bytes.extend_from_slice(text);
                    it.next();
                }
                Some(Block::Error(_)) => errors += 1,
                _ => {}
            }
            ends.push(bytes.len() as u32);
        }
    }
    let count = ends.len() as u32;
    (
        Answer::Keys {
            bytes,
            ends,
            next: g.from + count,
            over: None,
        },
        errors,
    )
}
