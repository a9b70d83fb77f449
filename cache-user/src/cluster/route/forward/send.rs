//! Sending: each `Exec` to its server (or, while it is down, to the gutter or the spool), and
//! `flush_all` to every server.

use std::{sync::Arc, time::Instant};

use cache_core::{
    pipeline::{route::one_key, Answer, GetKind, Part, Remote, Ticket},
    protocol::{reply::Expect, Owned, Request},
};

use super::{replies::assemble, *};

impl Shard {
    /// Carries one `Exec` of client `conn` to its server.
    pub(crate) fn forward(&mut self, conn: ConnId, to: usize, ticket: Ticket, op: Remote) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        if to >= f.table.dests.len() {
            f.counters.unroutable += 1;
            let answer = match op {
                Remote::One { .. } => Answer::Done(server_error("no server for this key")),
                Remote::Keys { part, from, .. } => miss_all(from, chunk(&part, from)),
            };
            return self.route_answer(conn, ticket, answer);
        }
        if !f.table.health.is_down(to) {
            let buckets = f.table.by_buckets(to);
            return match op {
                Remote::One { req, hash, .. } => {
                    self.send_one(conn, ticket, to, &req, None, buckets.then_some(hash));
                }
                Remote::Keys { part, from, .. } => {
                    self.send_keys(conn, ticket, to, part, from, None)
                }
            };
        }
        // Down: each key to its gutter server (a store's TTL capped), else failed at once.
        let table = Arc::clone(&f.table);
        let gutter_of = |key: &[u8], hash: u64| {
            table
                .gutter_of(to, key, hash)
                .filter(|&(g, _)| !table.health.is_down(g))
        };
        match op {
            Remote::One { req, hash, .. } => {
                let r = req.request();
                let mut scratch = [0u8; 256];
                match one_key(&r, &mut scratch).and_then(|k| gutter_of(k, hash)) {
                    Some((g, cap)) => {
                        // The server misses a delete the gutter takes: it is spooled for it.
                        if let Some(e) = spool::entry(&r) {
                            self.spool(to, &e);
                        }
                        f_count(self, |c| c.gutter += 1);
                        let body = gutter::rewrite(&r, cap, self.now);
                        self.send_one(conn, ticket, g, &req, body, None);
                    }
                    None => {
                        f_count(self, |c| c.fast_fails += 1);
                        self.fail_one(conn, ticket, to, &r, "unavailable");
                    }
                }
            }
            Remote::Keys { part, from, .. } => {
                let n = chunk(&part, from);
                let each: Vec<Option<usize>> = part.keys[from as usize..from as usize + n]
                    .iter()
                    .map(|&k| {
                        let k = k as usize;
                        gutter_of(part.list.key(k), part.list.hash(k)).map(|(g, _)| g)
                    })
                    .collect();
                if each.iter().all(Option::is_none) {
                    f_count(self, |c| c.fast_fails += 1);
                    return self.fail_keys(conn, ticket, &part, from);
                }
                self.send_keys(conn, ticket, to, part, from, Some(each));
            }
        }
    }

    /// Sends `parts` to destination `d` over this shard's connection to it, the first awaiting
    /// a reply of `expect` for `token`. If no connection can be had the token is forgotten.
    fn send_to(
        &mut self,
        d: usize,
        parts: &[&[u8]],
        expect: Option<Expect>,
        token: u64,
    ) -> Result<(), String> {
        let out = match self.out_to(d) {
            Ok(o) => o,
            Err(why) => {
                if let Some(f) = self.router.as_mut() {
                    f.pending.remove(&token);
                }
                return Err(why);
            }
        };
        let now = Instant::now();
        let mut expect = expect;
        for p in parts {
            self.outbound.send(out, p, expect.take(), token, now);
        }
        Ok(())
    }

    /// Sends a single-key request (`body`, or its bytes as they arrived) to destination `to`;
    /// `retry` (its key's hash) on a first try at a bucket-map server, to be sent again to the
    /// key's new owner if refused (`replies.rs`). A quiet meta request is followed by `mn`.
    pub(super) fn send_one(
        &mut self,
        conn: ConnId,
        ticket: Ticket,
        to: usize,
        req: &Owned,
        body: Option<Vec<u8>>,
        retry: Option<u64>,
    ) {
        let r = req.request();
        let quiet = Expect::is_quiet(&r);
        let expect = if quiet {
            Some(Expect::Quiet)
        } else {
            Expect::of(&r)
        };
        let bytes = body.as_deref().unwrap_or(req.raw());
        let parts: &[&[u8]] = if quiet { &[bytes, b"mn\r\n"] } else { &[bytes] };
        let Some(f) = self.router.as_mut() else {
            return;
        };
        f.counters.sent += 1;
        let token = match expect {
            None => 0,
            Some(_) => {
                let what = What::One {
                    quiet,
                    get: classic_get(&r),
                    spool: spool::entry(&r),
                    retry: retry.map(|h| Box::new((req.clone(), h))),
                };
                f.expect(conn, ticket, to, what)
            }
        };
        match self.send_to(to, parts, expect, token) {
            Err(why) => self.fail_one(conn, ticket, to, &r, &why),
            Ok(()) if expect.is_none() => {
                self.route_answer(conn, ticket, Answer::Done(Vec::new()));
            }
            Ok(()) => {}
        }
    }

    /// Sends keys `from..` of `part` (one chunk). Without `each`, all to `to` in one request
    /// (one a key for `lease-get`); with it, key `j` alone to `each[j]` (`None`: a miss).
    fn send_keys(
        &mut self,
        conn: ConnId,
        ticket: Ticket,
        to: usize,
        part: Part,
        from: u32,
        each: Option<Vec<Option<usize>>>,
    ) {
        let n = chunk(&part, from);
        let per_key = each.is_some() || part.kind == GetKind::Lease;
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let group = f.token();
        let slots = if per_key { n } else { 1 };
        let mut g = Gather {
            conn,
            ticket,
            part,
            from,
            replies: vec![None; slots],
            left: slots,
            per_key,
        };
        let mut sends = Vec::with_capacity(slots);
        for slot in 0..slots {
            let Some(d) = each.as_ref().map_or(Some(to), |e| e[slot]) else {
                f.counters.get_errors += 1;
                g.replies[slot] = Some(Vec::new());
                g.left -= 1;
                continue;
            };
            let at = from as usize + if per_key { slot } else { 0 };
            let keys = &g.part.keys[at..at + if per_key { 1 } else { n }];
            let mut text = Vec::new();
            keys_request(g.part.kind, &g.part, keys, &mut text);
            let i = per_key.then_some(slot as u32);
            let token = f.expect(conn, ticket, d, What::Keys { group, i });
            sends.push((d, text, token, i));
        }
        f.counters.sent += sends.len() as u64;
        if g.left == 0 {
            let (answer, errors) = assemble(&g);
            f.counters.get_errors += errors;
            return self.route_answer(conn, ticket, answer);
        }
        f.gathers.insert(group, g);
        for (d, text, token, i) in sends {
            if let Err(why) = self.send_to(d, &[&text], Some(Expect::Values), token) {
                f_count(self, |c| c.errors += 1);
                self.keys_reply(group, i, Err(why));
            }
        }
    }

    /// A single-key request that did not reach `to`: a delete is spooled for it, and the
    /// client gets nothing (`noreply`), a miss (a get, as mcrouter answers) or `SERVER_ERROR`.
    pub(super) fn fail_one(
        &mut self,
        conn: ConnId,
        ticket: Ticket,
        to: usize,
        req: &Request<'_>,
        why: &str,
    ) {
        if let Some(e) = spool::entry(req) {
            self.spool(to, &e);
        }
        f_count(self, |c| c.errors += 1);
        let answer = if Expect::of(req).is_none() {
            Vec::new()
        } else if classic_get(req) {
            b"END\r\n".to_vec()
        } else {
            server_error(why)
        };
        self.route_answer(conn, ticket, Answer::Done(answer));
    }

    /// A multiget chunk whose keys reach no server: all misses.
    fn fail_keys(&mut self, conn: ConnId, ticket: Ticket, part: &Part, from: u32) {
        let n = chunk(part, from);
        f_count(self, |c| {
            c.errors += 1;
            c.get_errors += n as u64;
        });
        self.route_answer(conn, ticket, miss_all(from, n));
    }

    /// `flush_all [delay]` to every server; the client's `OK` once all took it.
    pub(crate) fn route_flush(&mut self, conn: ConnId, ticket: Ticket, delay: i32) {
        let Some(f) = self.router.as_mut() else {
            return;
        };
        let n = f.table.dests.len();
        let group = f.token();
        let wait = FlushWait {
            conn,
            ticket,
            left: n,
            error: None,
        };
        f.flushes.insert(group, wait);
        let text = format!("flush_all {delay}\r\n").into_bytes();
        for d in 0..n {
            let Some(f) = self.router.as_mut() else {
                return;
            };
            let token = f.expect(conn, ticket, d, What::Flush { group });
            if let Err(why) = self.send_to(d, &[&text], Some(Expect::Line), token) {
                self.flush_step(group, Err(why));
            }
        }
    }
}

/// Counts on this shard's router counters.
fn f_count(shard: &mut Shard, count: impl FnOnce(&mut RouteCounters)) {
    if let Some(f) = shard.router.as_mut() {
        count(&mut f.counters);
    }
}
