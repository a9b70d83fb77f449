//! A multi-key read whose keys live on several shards: answered in key order, key by key, with
//! each other shard's keys asked for in chunks that fit the connection's room.
//!
//! Every remote shard's keys are asked for at once when the read starts (so the shards work in
//! parallel), each chunk within a grant of bytes. The reply is then written in key order: a key
//! of this shard is read when its turn comes; another shard's key is taken from that shard's
//! last answer, and when that answer is used up the next chunk is asked for. So what the read
//! holds at any time is its emitted bytes not yet sent plus one answer per shard, all counted.

use std::sync::Arc;

use super::{
    budget::REPLY_SLACK,
    remote::{Answer, GetKind, KeyList, Part, Remote},
    session::{Env, Outgoing, Ticket},
    worker::Coherence,
};
use crate::protocol::encode;

/// No shard's keys in this read.
const NONE: u16 = u16::MAX;

/// One other shard's share of the read.
#[derive(Debug)]
struct Share {
    shard: usize,
    keys: Arc<[u32]>,
    /// The last answer, for positions `from..from + ends.len()` of `keys`.
    bytes: Vec<u8>,
    ends: Vec<u32>,
    from: u32,
    /// Positions written out so far.
    done: u32,
    /// Bytes granted to a request in flight.
    flight: Option<usize>,
    /// The key at the next position to ask needs this many bytes.
    over: Option<usize>,
}

impl Share {
    fn answered(&self) -> u32 {
        self.from + self.ends.len() as u32
    }
}

/// What a step of the read came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Every key is written, and `END`.
    Done,
    /// Waiting for another shard's answer.
    Pending,
    /// Waiting for room of this many bytes.
    Want(usize),
}

#[derive(Debug)]
pub(super) struct Multi {
    kind: GetKind,
    list: Arc<KeyList>,
    /// The next key to write.
    next: usize,
    /// Written, in key order, not yet moved to the connection's output.
    pub(super) buf: Vec<u8>,
    shares: Vec<Share>,
    /// Shard → index in `shares`.
    share_of: Vec<u16>,
    /// Bytes counted for the key list itself.
    pub(super) list_bytes: usize,
}

impl Multi {
    /// A read of `list` (whose bytes the caller has counted as `list_bytes`, with `END`).
    pub(super) fn new(kind: GetKind, list: KeyList, me: usize, shards: usize) -> Multi {
        let mut share_of = vec![NONE; shards];
        let mut keys: Vec<Vec<u32>> = Vec::new();
        let mut owners = Vec::new();
        for i in 0..list.len() {
            let s = list.shard(i);
            if s == me {
                continue;
            }
            if share_of[s] == NONE {
                share_of[s] = keys.len() as u16;
                keys.push(Vec::new());
                owners.push(s);
            }
            keys[usize::from(share_of[s])].push(i as u32);
        }
        let shares = owners
            .into_iter()
            .zip(keys)
            .map(|(shard, keys)| Share {
                shard,
                keys: keys.into(),
                bytes: Vec::new(),
                ends: Vec::new(),
                from: 0,
                done: 0,
                flight: None,
                over: None,
            })
            .collect();
        let list_bytes = list.bytes();
        Multi {
            kind,
            list: Arc::new(list),
            next: 0,
            buf: Vec::new(),
            shares,
            share_of,
            list_bytes,
        }
    }

    /// The keys read.
    pub(super) fn keys(&self) -> &Arc<KeyList> {
        &self.list
    }

    /// Whether reading the keys changes them (`gat`, `lease-get`).
    pub(super) fn changes(&self) -> bool {
        !matches!(self.kind, GetKind::Get { touch: None, .. })
    }

    /// Asks every other shard for its first chunk, splitting the room between them.
    pub(super) fn start<B, H>(&mut self, seq: u64, env: &mut Env<'_, '_, B, H>)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let n = self.shares.len().max(1);
        for i in 0..self.shares.len() {
            let room = env.room() / n;
            let keys = self.shares[i].keys.len();
            let grant = room.min(env.cx.core.limits.grant.saturating_mul(keys));
            if grant >= REPLY_SLACK {
                self.ask(i, grant, seq, env);
            }
        }
    }

    /// Asks share `i` for its keys from its next position, within `grant` bytes (counted).
    fn ask<B, H>(&mut self, i: usize, grant: usize, seq: u64, env: &mut Env<'_, '_, B, H>) -> bool
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        if env.take(grant).is_err() {
            return false;
        }
        let s = &mut self.shares[i];
        s.flight = Some(grant);
        s.over = None;
        let op = Remote::Keys {
            part: Part {
                kind: self.kind,
                list: Arc::clone(&self.list),
                keys: Arc::clone(&s.keys),
            },
            from: s.answered(),
            grant,
        };
        env.cx.out.push(Outgoing::Exec {
            to: s.shard,
            ticket: Ticket {
                seq,
                part: i as u32,
            },
            op,
        });
        true
    }

    /// Share `part`'s answer came. Returns false for an answer this read did not ask for.
    pub(super) fn answer<B, H>(&mut self, part: u32, a: Answer, env: &mut Env<'_, '_, B, H>) -> bool
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let Some(s) = self.shares.get_mut(part as usize) else {
            return false;
        };
        let Some(grant) = s.flight.take() else {
            return false;
        };
        match a {
            Answer::Keys {
                bytes,
                ends,
                next,
                over,
            } => {
                env.settle(grant, bytes.len().min(grant));
                // A backend's answer (on a router) is not held to the grant: count it all.
                if bytes.len() > grant {
                    env.force(bytes.len() - grant);
                }
                debug_assert_eq!(next, s.answered() + ends.len() as u32);
                s.from = s.answered();
                s.bytes = bytes;
                s.ends = ends;
                s.over = over;
            }
            // Not an answer to a `Keys` request; count nothing and ask again.
            Answer::Done(_) | Answer::Over(_) => env.settle(grant, 0),
        }
        true
    }

    /// Writes keys in order as far as it can.
    pub(super) fn step<B, H>(&mut self, seq: u64, env: &mut Env<'_, '_, B, H>) -> Step
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        let me = env.cx.core.here();
        while self.next < self.list.len() {
            let i = self.next;
            let shard = self.list.shard(i);
            if shard == me {
                // This shard's keys from here, in one read.
                let room = env.room();
                let now = env.cx.now;
                let list = &self.list;
                let mut local = (i..list.len())
                    .take_while(|&j| list.shard(j) == me)
                    .map(|j| (list.key(j), list.hash(j)));
                let w = &mut env.cx.core.worker;
                let r = w.read(self.kind, &mut local, now, room, &mut self.buf);
                // Within `room` (a lease miss aside, counted all the same).
                env.force(r.bytes);
                self.next += r.count;
                if let Some(need) = r.over {
                    return self.want(need, env);
                }
                continue;
            }
            let at = usize::from(self.share_of[shard]);
            let s = &mut self.shares[at];
            if s.done < s.answered() {
                let k = (s.done - s.from) as usize;
                let start = if k == 0 { 0 } else { s.ends[k - 1] as usize };
                let end = s.ends[k] as usize;
                self.buf.extend_from_slice(&s.bytes[start..end]);
                s.done += 1;
                self.next += 1;
                if s.done == s.answered() {
                    s.bytes = Vec::new();
                    s.ends.clear();
                    s.from = s.done;
                }
                continue;
            }
            if s.flight.is_some() {
                return Step::Pending;
            }
            let need = s.over.unwrap_or(0).max(REPLY_SLACK);
            let grant = env.room().min(env.cx.core.limits.grant.max(need)).max(need);
            if !self.ask(at, grant, seq, env) {
                return self.want(grant, env);
            }
            return Step::Pending;
        }
        // `END`, counted when the read was queued.
        self.buf.extend_from_slice(encode::END);
        Step::Done
    }

    /// Waits for `need` bytes of room (registered with the pool when that is what lacks).
    fn want<B, H>(&mut self, need: usize, env: &mut Env<'_, '_, B, H>) -> Step
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
        H: Coherence<B>,
    {
        env.wait(need);
        Step::Want(need)
    }

    /// Whether some shard's answer is still on its way.
    pub(super) fn in_flight(&self) -> bool {
        self.shares.iter().any(|s| s.flight.is_some())
    }

    /// Bytes still counted for the read once it is done or dropped: the key list and any
    /// answers it holds.
    pub(super) fn held(&self) -> usize {
        let unread = |s: &Share| {
            let used = match (s.done - s.from) as usize {
                0 => 0,
                k => s.ends[k - 1] as usize,
            };
            s.bytes.len() - used + s.flight.unwrap_or(0)
        };
        self.list_bytes + self.shares.iter().map(unread).sum::<usize>()
    }
}
