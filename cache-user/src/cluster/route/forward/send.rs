//! Sending: each `Exec` to its server (or, while it is down, to the gutter or the spool), and
//! `flush_all` to every server.

use std::{sync::Arc, time::Instant};

use cache_core::{
    pipeline::{route::one_key, Answer, GetKind, Part, Remote, Ticket},
    protocol::reply::Expect,
};

use super::{replies::assemble, *};

impl Shard {
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
                    let retry = table.by_buckets(to).then_some(hash);
                    return self.send_one(conn, ticket, to, &req, None, retry);
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
                        self.send_one(conn, ticket, g, &req, body, None);
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

    /// Sends a single-key request (`body`, or its bytes as they arrived) to destination `to`;
    /// `retry` (its key's hash) on a first try at a bucket-map server, to be sent again to the
    /// key's new owner if refused (`replies.rs`).
    pub(super) fn send_one(
        &mut self,
        conn: ConnId,
        ticket: Ticket,
        to: usize,
        req: &cache_core::protocol::Owned,
        body: Option<Vec<u8>>,
        retry: Option<u64>,
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
                self.outbound.send(out, &bytes, None, 0, now);
                self.route_answer(conn, ticket, Answer::Done(Vec::new()));
            }
            Some(expect) => {
                let token = f.token();
                let what = What::One {
                    quiet,
                    get,
                    spool: spool::entry(&r),
                    retry: retry.map(|h| Box::new((req.clone(), h))),
                };
                let p = Pending {
                    conn,
                    ticket,
                    dest: to,
                    what,
                };
                f.pending.insert(token, p);
                self.outbound.send(out, &bytes, Some(expect), token, now);
            }
        }
    }

    /// Sends keys `from..` of `part` (one chunk): each key `j` to `dests[j]` (`None`: not
    /// reachable, answered as a miss). `per_key`: one request a key; else one for them all
    /// (every key then has the same destination).
    pub(super) fn send_keys(
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
                    self.outbound.send(out, &bytes, expect, token, now);
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
    pub(super) fn fail_exec(&mut self, conn: ConnId, ticket: Ticket, op: &Remote, why: &str) {
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
                        .send(out, &text, Some(Expect::Line), token, now);
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
}
