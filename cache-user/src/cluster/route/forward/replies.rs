//! Replies: backend events to the sessions waiting for them, multiget chunks put back
//! together in key order, `flush_all`'s barrier.

use std::sync::Arc;

use cache_core::{
    pipeline::{route::one_key, Answer, Placer},
    protocol::reply::{values, Block, MN},
};

/// How a kcache node refuses a key whose bucket it does not own.
const NOT_MY_VBUCKET: &[u8] = b"SERVER_ERROR not my vbucket";

use super::*;

impl Shard {
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
                    What::One {
                        quiet,
                        get,
                        spool,
                        retry,
                    } => {
                        let refused = matches!(&reply, Ok(b) if b.starts_with(NOT_MY_VBUCKET));
                        if let (true, Some(again)) = (refused, retry) {
                            let (req, hash) = *again;
                            let table = Arc::clone(&f.table);
                            table.reload_map(p.dest);
                            let mut scratch = [0u8; 256];
                            let r = req.request();
                            let to = one_key(&r, &mut scratch).map(|k| table.place(k, hash));
                            if let Some(to) = to.filter(|&t| t != p.dest) {
                                f.counters.retries += 1;
                                self.send_one(p.conn, p.ticket, to, &req, None, None);
                                continue;
                            }
                        }
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

    pub(super) fn keys_reply(
        &mut self,
        group: u64,
        i: Option<u32>,
        reply: Result<Vec<u8>, String>,
    ) {
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

    pub(super) fn flush_step(&mut self, group: u64, reply: Result<(), String>) {
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
}

/// A chunk's answer from its replies, and how many keys were errors (answered as misses).
pub(super) fn assemble(g: &Gather) -> (Answer, u64) {
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
        let reply = g
            .replies
            .first()
            .and_then(|r| r.as_deref())
            .unwrap_or_default();
        let blocks = values(reply).unwrap_or_else(|| {
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
