//! Output: answers coming back, replies moving to the output in order, bytes sent, room freed.

use std::sync::Arc;

use super::*;

impl Session {
    /// Another shard's answer to `ticket` came. Returns whether input may go on (see
    /// [`Fed::read`]).
    pub fn deliver<B, H>(&mut self, cx: &mut Cx<'_, B, H>, ticket: Ticket, answer: Answer) -> bool
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let cap = self.cap(&cx.core.limits);
        let Some(entry) = self.queue.get_mut(ticket.seq) else {
            return self.may_read();
        };
        match &mut entry.slot {
            Slot::One(one) => {
                let OneState::Flight(grant) = one.state else {
                    return self.may_read();
                };
                let mut env = Env::new(&mut self.acct, cap, cx);
                match answer {
                    Answer::Done(bytes) => {
                        env.settle(grant, bytes.len().min(grant));
                        if bytes.len() > grant {
                            env.force(bytes.len() - grant);
                        }
                        env.give(one.copy);
                        one.copy = 0;
                        one.req = None;
                        one.state = OneState::Done(bytes);
                        if let Some(changes) = one.hazard.take() {
                            let hash = one.hash;
                            self.clear_hazard(hash, changes);
                        }
                    }
                    Answer::Over(need) => {
                        env.settle(grant, 0);
                        one.state = OneState::Again;
                        self.queue.set_want(ticket.seq, Some(need));
                    }
                    Answer::Keys { .. } => {
                        env.settle(grant, 0);
                        one.state = OneState::Done(Vec::new());
                    }
                }
            }
            Slot::Multi { m, done } => {
                let mut env = Env::new(&mut self.acct, cap, cx);
                if m.answer(ticket.part, answer, &mut env) && !*done {
                    self.step_multi(cx, ticket.seq, false);
                }
            }
            _ => {}
        }
        self.pump(cx)
    }

    /// The host finished `ticket` (`stats` text, or `flush_all` applied everywhere).
    pub fn complete<B, H>(&mut self, cx: &mut Cx<'_, B, H>, ticket: Ticket, bytes: &[u8]) -> bool
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if let Some(Entry {
            slot: Slot::Host { done, .. },
            ..
        }) = self.queue.get_mut(ticket.seq)
        {
            if done.is_none() {
                *done = Some(bytes.to_vec());
                self.force(cx, bytes.len());
            }
        }
        self.pump(cx)
    }

    /// The host finished `ticket` with a reply of its own in place of the usual tail (a
    /// router's `flush_all` that some server did not take): written unless the request was
    /// `noreply` (its tail is empty).
    pub fn complete_instead<B, H>(
        &mut self,
        cx: &mut Cx<'_, B, H>,
        ticket: Ticket,
        bytes: &[u8],
    ) -> bool
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let mut quiet = false;
        if let Some(Entry {
            slot: Slot::Host {
                tail, done: None, ..
            },
            ..
        }) = self.queue.get_mut(ticket.seq)
        {
            quiet = tail.is_empty();
            *tail = b"";
        }
        self.complete(cx, ticket, if quiet { b"" } else { bytes })
    }

    /// The host sent `n` bytes of what it took with [`Session::take_output`]. Returns whether
    /// input may go on.
    pub fn sent<B, H>(&mut self, cx: &mut Cx<'_, B, H>, n: usize) -> bool
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        self.give(cx, n);
        self.pump(cx)
    }

    /// Retries what waits for room (after bytes were sent, or the pool woke this connection);
    /// returns whether input may go on: if so and input is buffered, feed it again.
    pub fn pump<B, H>(&mut self, cx: &mut Cx<'_, B, H>) -> bool
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if self.queue.wants() > 0 {
            for i in 0..self.queue.len() {
                let seq = self.queue.seq_at(i);
                match self.queue.at_mut(i) {
                    Some(Entry {
                        want: Some(_),
                        slot: Slot::Multi { .. },
                    }) => self.step_multi(cx, seq, false),
                    Some(Entry {
                        want: Some(need),
                        slot: Slot::One(_),
                    }) => {
                        let need = *need;
                        self.again(cx, seq, need);
                    }
                    _ => {}
                }
            }
        }
        if let Some(Stall::Room(n)) = self.stall {
            if self.room(cx) >= n {
                self.stall = None;
            } else {
                let cap = self.cap(&cx.core.limits);
                Env::new(&mut self.acct, cap, cx).wait(n);
            }
        }
        self.drain(cx);
        self.may_read()
    }

    /// Asks again for a single-key read whose answer needs `need` bytes, if there is room.
    fn again<B, H>(&mut self, cx: &mut Cx<'_, B, H>, seq: u64, need: usize)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if self.take(cx, need).is_err() {
            let cap = self.cap(&cx.core.limits);
            if Env::new(&mut self.acct, cap, cx).wait(need) == Some(Short::Drain) && self.datagram {
                self.fail(cx);
            }
            return;
        }
        let Some(Entry {
            slot: Slot::One(one),
            ..
        }) = self.queue.get_mut(seq)
        else {
            return;
        };
        let Some(req) = one.req.clone() else { return };
        one.state = OneState::Flight(need);
        cx.out.push(Outgoing::Exec {
            to: one.shard,
            ticket: Ticket { seq, part: 0 },
            op: Remote::One {
                req,
                hash: one.hash,
                grant: need,
            },
        });
        self.queue.set_want(seq, None);
    }

    /// Advances the multi-key read `seq` (asking every shard first when `start`).
    pub(super) fn step_multi<B, H>(&mut self, cx: &mut Cx<'_, B, H>, seq: u64, start: bool)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if self.failed {
            self.end_failed_multi(cx, seq);
            return;
        }
        let cap = self.cap(&cx.core.limits);
        let Some(Entry {
            slot: Slot::Multi { m, done },
            ..
        }) = self.queue.get_mut(seq)
        else {
            return;
        };
        let mut env = Env::new(&mut self.acct, cap, cx);
        if start {
            m.start(seq, &mut env);
        }
        let step = m.step(seq, &mut env);
        let want = match step {
            Step::Done => {
                *done = true;
                let (list, changes) = (Arc::clone(m.keys()), m.changes());
                for i in 0..list.len() {
                    self.clear_hazard(list.hash(i), changes);
                }
                None
            }
            Step::Pending => None,
            Step::Want(n) => Some(n),
        };
        let fail = self.datagram && want.is_some_and(|n| self.acct.held() + n > cap);
        self.queue.set_want(seq, want);
        if fail {
            self.fail(cx);
        }
    }

    /// Moves finished replies at the head of the queue to the output.
    pub(super) fn drain<B, H>(&mut self, cx: &mut Cx<'_, B, H>)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        while let Some(front) = self.queue.front_mut() {
            // (bytes, tail, finished, bytes to release, reservation held for the tail)
            let (bytes, tail, finished, release, reserved) = match &mut front.slot {
                Slot::Ready(b) => (std::mem::take(b), &b""[..], true, 0, 0),
                Slot::Gone => (Vec::new(), &b""[..], true, 0, 0),
                Slot::One(one) if matches!(one.state, OneState::Done(_)) => {
                    let OneState::Done(b) = &mut one.state else {
                        break;
                    };
                    (std::mem::take(b), &b""[..], true, 0, 0)
                }
                Slot::Multi { m, done } => {
                    let release = if *done { m.held() } else { 0 };
                    (std::mem::take(&mut m.buf), &b""[..], *done, release, 0)
                }
                Slot::Host {
                    done: Some(b),
                    tail,
                    held,
                } => (std::mem::take(b), *tail, true, 0, *held),
                _ => break,
            };
            if reserved > 0 {
                // The reservation becomes the tail's bytes.
                self.settle(cx, reserved, tail.len());
            }
            if self.failed {
                self.give(cx, bytes.len() + tail.len());
            } else if self.out.is_empty() && tail.is_empty() {
                self.out = bytes;
            } else {
                self.out.extend_from_slice(&bytes);
                self.out.extend_from_slice(tail);
            }
            if release > 0 {
                self.give(cx, release);
            }
            if !finished {
                break;
            }
            self.queue.pop();
        }
    }

    /// Gives up a datagram's reply: what is made is dropped and the datagram is answered with
    /// an error once its pending entries are in.
    pub(super) fn fail<B, H>(&mut self, cx: &mut Cx<'_, B, H>)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if self.failed {
            return;
        }
        self.failed = true;
        self.stall = None;
        let dropped = self.out.len();
        self.out.clear();
        self.give(cx, dropped);
        for i in 0..self.queue.len() {
            let seq = self.queue.seq_at(i);
            let release = match self.queue.at_mut(i).map(|e| &mut e.slot) {
                Some(s @ Slot::Ready(_)) => match std::mem::replace(s, Slot::Gone) {
                    Slot::Ready(b) => b.len(),
                    _ => 0,
                },
                Some(s @ Slot::One(_)) if s.again() => match std::mem::replace(s, Slot::Gone) {
                    Slot::One(one) => one.copy,
                    _ => 0,
                },
                Some(Slot::Multi { .. }) => {
                    self.end_failed_multi(cx, seq);
                    0
                }
                _ => 0,
            };
            self.give(cx, release);
            self.queue.set_want(seq, None);
        }
        ErrorReply::Server("reply too large for UDP").write(&mut self.out);
        let n = self.out.len();
        self.force(cx, n);
    }

    /// A multi-key read of a given-up datagram: ends once nothing of it is in flight.
    fn end_failed_multi<B, H>(&mut self, cx: &mut Cx<'_, B, H>, seq: u64)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        self.queue.set_want(seq, None);
        let Some(Entry {
            slot: Slot::Multi { m, done },
            ..
        }) = self.queue.get_mut(seq)
        else {
            return;
        };
        if *done || m.in_flight() {
            return;
        }
        *done = true;
        let dropped = m.buf.len();
        m.buf = Vec::new();
        self.give(cx, dropped);
    }

    /// A read of the key with this hash is done; a write waiting for it may go on.
    fn clear_hazard(&mut self, hash: u64, changes: bool) {
        self.hazards.remove(hash, changes);
        if self.stall == Some(Stall::Hazard) {
            self.stall = None;
        }
    }

    /// Whether input may go on.
    pub fn may_read(&self) -> bool {
        !self.close && !self.failed && !self.stalled()
    }

    /// Hands the output to the host to send (`into` must be empty: the buffers swap). Its bytes
    /// stay counted until [`Session::sent`] reports them gone.
    pub fn take_output(&mut self, into: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        into.clear();
        std::mem::swap(&mut self.out, into);
        true
    }

    /// Whether output is waiting to be taken.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether some reply is still being made (an answer or the host is awaited).
    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether a datagram's reply was given up for an error (see [`Session::datagram`]).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether the connection must hang up once its output is sent.
    pub fn closing(&self) -> bool {
        self.close
    }

    /// Bytes the connection holds (replies made and not sent, reservations, copies).
    pub fn held(&self) -> usize {
        self.acct.held()
    }

    /// Reply-pool bytes the connection borrows.
    pub fn borrowed(&self) -> usize {
        self.acct.borrowed()
    }

    /// The connection is gone: everything it held goes back to the pools. Answers still on
    /// their way for it must be dropped by the host.
    pub fn close<B, H>(&mut self, cx: &mut Cx<'_, B, H>) {
        self.acct.close(&mut cx.core.replies, cx.who);
        cx.core.input.give(self.input_borrowed);
        cx.core.input.forget(cx.who);
        self.input_borrowed = 0;
        self.queue = Queue::default();
        self.out = Vec::new();
        self.close = true;
    }
}
