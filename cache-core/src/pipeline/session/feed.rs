//! Input: parsing, running or sending each request, and the budget of a partial request.

use super::*;
use crate::pipeline::hazard::mutates;

/// `flush_all` on a router whose configuration does not send it on.
const FLUSH_OFF: &[u8] = b"SERVER_ERROR flush_all is disabled on this router\r\n";

/// What became of one parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Went {
    /// Ran or was handed on: consume its bytes.
    On,
    /// Waits for room: leave its bytes in the input.
    Stay,
}

impl Session {
    /// Runs every whole request at the front of `input` that the connection has room for.
    pub fn feed<B, H>(&mut self, cx: &mut Cx<'_, B, H>, input: &[u8]) -> Fed
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let mut at = 0;
        while !self.close && !self.failed {
            if self.swallow > 0 {
                let n = self.swallow.min(input.len() - at);
                self.swallow -= n;
                at += n;
            }
            if at == input.len() || self.swallow > 0 || self.stalled() {
                break;
            }
            let rest = &input[at..];
            if self.expect.is_some_and(|t| rest.len() < t) {
                break;
            }
            match cx.core.parser.parse(rest) {
                Ok(p) => {
                    let raw = &rest[..p.consumed.min(rest.len())];
                    if self.run(cx, &p.request, raw) == Went::Stay {
                        break;
                    }
                    self.expect = None;
                    self.skip = 0;
                    at += self.advance(p.consumed, rest.len());
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Invalid(bad)) => {
                    if let Some(reply) = bad.reply {
                        if self.local_reply(cx, &mut |out| reply.write(out)) == Went::Stay {
                            break;
                        }
                    }
                    self.expect = None;
                    at += self.advance(bad.consumed, rest.len());
                    if bad.close {
                        self.close = true;
                    }
                }
            }
        }
        self.hold_input(cx, input, &mut at);
        self.drain(cx);
        Fed {
            consumed: at,
            read: self.may_read(),
            close: self.close,
        }
    }

    /// Bytes of the input to consume for a request of `consumed` bytes with `avail` here.
    pub(super) fn advance(&mut self, consumed: usize, avail: usize) -> usize {
        if consumed > avail {
            self.swallow = consumed - avail;
            avail
        } else {
            consumed
        }
    }

    pub(super) fn stalled(&self) -> bool {
        self.stall.is_some() || self.queue.wants() > 0
    }

    pub(super) fn run<B, H>(&mut self, cx: &mut Cx<'_, B, H>, req: &Request<'_>, raw: &[u8]) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let route = route(req);
        if self.hazards.blocks(req, route) {
            self.stall = Some(Stall::Hazard);
            return Went::Stay;
        }
        match route {
            Route::Stats => {
                let args = match req {
                    Request::Stats(a) => *a,
                    _ => &[],
                };
                self.host(cx, b"", |ticket| Outgoing::Stats {
                    ticket,
                    args: args.into(),
                })
            }
            Route::Flush => {
                let (delay, noreply) = match *req {
                    Request::FlushAll { delay, noreply } => (delay, noreply),
                    _ => (0, false),
                };
                let tail: &'static [u8] = if noreply { b"" } else { encode::OK };
                if !cx.core.flush_allowed() {
                    let tail: &'static [u8] = if noreply { b"" } else { FLUSH_OFF };
                    return self.local_reply(cx, &mut |out| out.extend_from_slice(tail));
                }
                if cx.core.alone() {
                    if self.room(cx) < SMALL {
                        return self.wait(cx, SMALL);
                    }
                    cx.core.worker.flush_all(delay, cx.now, true);
                    return self.local_reply(cx, &mut |out| out.extend_from_slice(tail));
                }
                // Applied here first, then on every other shard; the reply waits for them all.
                let went = self.host(cx, tail, |ticket| Outgoing::Flush { ticket, delay });
                if went == Went::On {
                    cx.core.worker.flush_all(delay, cx.now, true);
                }
                went
            }
            Route::Keys => self.keys(cx, req),
            Route::Key(hash) => match cx.core.target(req, hash) {
                Some(to) => self.send(cx, req, raw, hash, to),
                None => self.local(cx, req, Some(hash)),
            },
            Route::Here => self.local(cx, req, None),
        }
    }

    /// A reply the host makes: queued, with `SMALL` bytes counted for it.
    fn host<B, H>(
        &mut self,
        cx: &mut Cx<'_, B, H>,
        tail: &'static [u8],
        work: impl FnOnce(Ticket) -> Outgoing,
    ) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if self.take(cx, SMALL).is_err() {
            return self.wait(cx, SMALL);
        }
        let seq = self.queue.push(Slot::Host {
            done: None,
            tail,
            held: SMALL,
        });
        cx.out.push(work(Ticket { seq, part: 0 }));
        Went::On
    }

    /// A reply without an item, made here (an error line, `flush_all`'s `OK` on one shard).
    fn local_reply<B, H>(
        &mut self,
        cx: &mut Cx<'_, B, H>,
        write: &mut dyn FnMut(&mut Vec<u8>),
    ) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if self.room(cx) < SMALL {
            return self.wait(cx, SMALL);
        }
        let buf = self.buf();
        let before = buf.len();
        write(buf);
        let n = buf.len() - before;
        self.force(cx, n);
        Went::On
    }

    /// A request for this shard.
    fn local<B, H>(&mut self, cx: &mut Cx<'_, B, H>, req: &Request<'_>, hash: Option<u64>) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if matches!(req, Request::Quit) {
            self.close = true;
            return Went::On;
        }
        let room = self.room(cx);
        if room < SMALL {
            return self.wait(cx, SMALL);
        }
        let buf = self.buf();
        let before = buf.len();
        match cx.core.worker.run(req, hash, cx.now, room, buf) {
            Ran::Done(action) => {
                let n = buf.len() - before;
                // Within `room` (a lease miss aside, counted all the same).
                self.force(cx, n);
                if action == Action::Close {
                    self.close = true;
                }
                Went::On
            }
            Ran::Over(need) => self.wait(cx, need),
        }
    }

    /// A single-key request for another place (shard or destination), `shard`.
    fn send<B, H>(
        &mut self,
        cx: &mut Cx<'_, B, H>,
        req: &Request<'_>,
        raw: &[u8],
        hash: u64,
        shard: usize,
    ) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let reads = returns_value(req);
        let owned = Owned::new(req, copy_base(req, raw));
        let grant = if reads {
            cx.core.limits.grant.max(SMALL)
        } else {
            SMALL
        };
        let copy = owned.len();
        if self.take(cx, copy + grant).is_err() {
            return self.wait(cx, copy + grant);
        }
        // A read that may have to be asked again holds its key against later writes.
        let hazard = (reads && grant < cx.core.worker.largest()).then(|| mutates(req));
        if let Some(changes) = hazard {
            self.hazards.add(hash, changes);
        }
        let seq = self.queue.push(Slot::One(Box::new(One {
            shard,
            hash,
            req: reads.then(|| owned.clone()),
            copy,
            hazard,
            state: OneState::Flight(grant),
        })));
        cx.out.push(Outgoing::Exec {
            to: shard,
            ticket: Ticket { seq, part: 0 },
            op: Remote::One {
                req: owned,
                hash,
                grant,
            },
        });
        Went::On
    }

    /// A read of several keys: this shard's keys answered here for as long as they come first,
    /// the rest as a [`Multi`] once another shard's key turns up.
    fn keys<B, H>(&mut self, cx: &mut Cx<'_, B, H>, req: &Request<'_>) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let Some((kind, keys)) = read_kind(req) else {
            return Went::On;
        };
        let now = cx.now;
        // `SMALL` covers `END` or a refusal.
        if self.take(cx, SMALL).is_err() {
            return self.wait(cx, SMALL);
        }
        let skip = self.skip;
        let buf = self.buf();
        let before = buf.len();
        if skip == 0 && cx.core.worker.refuse(req, None, buf) {
            let n = buf.len() - before;
            self.settle(cx, SMALL, n);
            return Went::On;
        }
        // This shard's keys, up to the first of another shard.
        let mut remote = false;
        let room = self.room(cx);
        let core = &mut *cx.core;
        let (alone, me, shards) = (core.alone(), core.here(), core.shards);
        let place = &core.place;
        let mut local = keys.iter().skip(skip).map_while(|k| {
            let hash = khash(k);
            let here = alone || place.part_of(shards, k, hash) == me;
            remote |= !here;
            here.then_some((k, hash))
        });
        let buf = self.buf();
        let r = core.worker.read(kind, &mut local, now, room, buf);
        let at = skip + r.count;
        // Within `room` (a lease miss aside, counted all the same).
        self.force(cx, r.bytes);
        if let Some(need) = r.over {
            self.settle(cx, SMALL, 0);
            self.skip = at;
            return self.wait(cx, need);
        }
        if remote {
            return self.split(cx, kind, &keys, at);
        }
        self.buf().extend_from_slice(encode::END);
        self.settle(cx, SMALL, encode::END.len());
        Went::On
    }

    /// Keys `at..` of a read, the first of them another shard's: queued as a [`Multi`]. The
    /// `SMALL` bytes taken for the read keep `END`'s share.
    fn split<B, H>(
        &mut self,
        cx: &mut Cx<'_, B, H>,
        kind: GetKind,
        keys: &crate::protocol::Keys<'_>,
        at: usize,
    ) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let (me, parts) = (cx.core.here(), cx.core.parts());
        let core = &*cx.core;
        let list = KeyList::new(keys, at, &|k, h| core.part_of(k, h));
        let bytes = list.bytes();
        if self.take(cx, bytes).is_err() {
            self.settle(cx, SMALL, 0);
            self.skip = at;
            return self.wait(cx, bytes + SMALL);
        }
        self.settle(cx, SMALL, encode::END.len());
        let m = Box::new(Multi::new(kind, list, me, parts));
        // Its keys are read over time: later writes of them wait (see `hazard`).
        let changes = m.changes();
        for i in 0..m.keys().len() {
            self.hazards.add(m.keys().hash(i), changes);
        }
        let seq = self.queue.push(Slot::Multi { m, done: false });
        self.skip = 0;
        self.step_multi(cx, seq, true);
        Went::On
    }

    /// Input stops until `n` bytes of room can be taken (registered with the pool if that is
    /// what lacks). A datagram, which cannot drain, gives up instead.
    fn wait<B, H>(&mut self, cx: &mut Cx<'_, B, H>, n: usize) -> Went
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let cap = self.cap(&cx.core.limits);
        let short = Env::new(&mut self.acct, cap, cx).wait(n);
        if self.datagram && short == Some(Short::Drain) {
            self.fail(cx);
            return Went::On;
        }
        self.stall = Some(Stall::Room(n));
        Went::Stay
    }
}
