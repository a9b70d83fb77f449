//! A shard's store, with everything that must happen around every request run against it.
//!
//! [`Worker`] owns the store and is the only way to change it: every entry point checks the
//! bucket map where it applies, runs the store, and then calls the [`Coherence`] hook before it
//! returns — so the HOT copies a request changed are gone before its reply bytes can be queued
//! anywhere (invariant 1 by structure, not by a call repeated at each site).

use std::sync::Arc;

use super::{
    budget::REPLY_SLACK,
    remote::{Answer, GetKind, Part, Remote},
};
use crate::{
    bucket::{Ownership, RefusalCounts, Verdict},
    exec::{self, Action},
    protocol::{encode, Request},
    store::{Bounded, Key, Store},
};

/// What must follow every change to a store, before the change's reply leaves: on a cache node
/// with XDP, dropping the HOT copies the store reported and promoting hot keys.
pub trait Coherence<B> {
    /// After a request (or a batch of store work) and before any reply it produced is queued.
    fn after(&mut self, store: &mut Store<B>, now: u32);
    /// A `flush_all [delay]` was taken on this shard, before any shard's store applies it.
    fn flush_taken(&mut self, _delay: i32, _now: u32) {}
    /// This shard's store applies a `flush_all`.
    fn flush_applied(&mut self) {}
    /// Periodic work (promotion scans and the like), called often with the time.
    fn tick(&mut self, _store: &mut Store<B>, _now: u32) {}
}

/// No HOT tables: nothing to keep coherent.
impl<B> Coherence<B> for () {
    fn after(&mut self, _store: &mut Store<B>, _now: u32) {}
}

/// How [`Worker::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// It ran; its reply is in `out`.
    Done(Action),
    /// It did not run: its reply would need this many bytes, more than the limit.
    Over(usize),
}

/// How one key of a multi-key read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Produced {
    /// Its reply (none for a miss) is in `out`: this many bytes.
    Done(usize),
    /// Not read: its reply would need this many bytes.
    Over(usize),
}

/// The reply bound of a `VALUE` block of this key and value, CAS included.
fn value_bound(klen: usize, vlen: usize) -> usize {
    klen + vlen + 64
}

/// What [`Worker::read`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Read {
    /// Keys read (hits and misses).
    pub count: usize,
    /// Bytes of replies written.
    pub bytes: usize,
    /// The next key's reply needs this many bytes, more than was left: it was not read.
    pub over: Option<usize>,
}

/// One shard's store, its view of the bucket map and its coherence hook.
#[derive(Debug)]
pub struct Worker<B, H> {
    store: Store<B>,
    hook: H,
    own: Arc<Ownership>,
    refusals: RefusalCounts,
    /// Any value reply fits this many bytes.
    largest: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, H: Coherence<B>> Worker<B, H> {
    pub fn new(store: Store<B>, hook: H, own: Arc<Ownership>) -> Worker<B, H> {
        let largest = store.config().item_max + REPLY_SLACK;
        Worker {
            store,
            hook,
            own,
            refusals: RefusalCounts::default(),
            largest,
        }
    }

    /// The store, to read (stats, scans). Changing it goes through the methods below.
    pub fn store(&self) -> &Store<B> {
        &self.store
    }

    pub fn hook(&self) -> &H {
        &self.hook
    }

    pub fn own(&self) -> &Arc<Ownership> {
        &self.own
    }

    /// Bytes any one reply fits in.
    pub fn largest(&self) -> usize {
        self.largest
    }

    pub fn refusals(&self) -> RefusalCounts {
        self.refusals
    }

    /// Refuses `req` if the map does not give this node its key(s); the refusal (if any) is in
    /// `out`. `hash` is the one key's hash, for single-key requests.
    pub fn refuse(&mut self, req: &Request<'_>, hash: Option<u64>, out: &mut Vec<u8>) -> bool {
        let v = self.own.verdict(req, hash);
        v.answer(&mut self.refusals, out);
        v != Verdict::Run
    }

    /// Runs one request whose reply may take at most `limit` bytes (a request that cannot
    /// return an item always fits [`REPLY_SLACK`]); `hash` is its key's hash when it names one.
    pub fn run(
        &mut self,
        req: &Request<'_>,
        hash: Option<u64>,
        now: u32,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Ran {
        if self.refuse(req, hash, out) {
            return Ran::Done(Action::Done);
        }
        // A one-key get: its bounded read is one lookup, not a look and then a read.
        if let (Request::Get(g), Some(hash)) = (req, hash) {
            if let Some(key) = g.keys.iter().next() {
                let kind = GetKind::Get {
                    cas: g.cas,
                    touch: g.touch,
                };
                let room = limit.saturating_sub(encode::END.len());
                let r = self.read(kind, &mut std::iter::once((key, hash)), now, room, out);
                return match r.over {
                    Some(need) => Ran::Over(need + encode::END.len()),
                    None => {
                        out.extend_from_slice(encode::END);
                        Ran::Done(Action::Done)
                    }
                };
            }
        }
        if let Some(need) = self.over(req, hash, now, limit) {
            return Ran::Over(need);
        }
        let action = exec::execute_hashed(&mut self.store, req, hash, now, out);
        self.hook.after(&mut self.store, now);
        Ran::Done(action)
    }

    /// The bytes `req`'s reply could need when that is more than `limit`: it returns an item's
    /// value and the item is there and big enough.
    fn over(
        &mut self,
        req: &Request<'_>,
        hash: Option<u64>,
        now: u32,
        limit: usize,
    ) -> Option<usize> {
        if limit >= self.largest {
            return None;
        }
        let mut scratch = [0u8; 256];
        let key = match req {
            Request::Get(g) => g.keys.iter().next()?,
            Request::MetaGet(m) if m.flags.has(b'v') => m.flags.decode_key(m.key, &mut scratch),
            Request::LeaseGet(k) => k.iter().next()?,
            _ => return None,
        };
        let key = exec::key(key, hash);
        let id = self.store.peek(key, now)?;
        let v = self.store.view(id);
        let need = v.key.len() + v.value.len() + REPLY_SLACK;
        (need > limit).then_some(need)
    }

    /// Reads `keys` (each with its hash) in order while each one's reply fits what is left of
    /// `limit`, appending the replies to `out`; stops at the first that does not fit, which is
    /// not read at all. The caller checked the bucket map for the whole read (a key the map no
    /// longer gives this node is left out, as a miss).
    pub fn read(
        &mut self,
        kind: GetKind,
        keys: &mut dyn Iterator<Item = (&[u8], u64)>,
        now: u32,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Read {
        let mut r = Read::default();
        for (key, hash) in keys {
            match self.key(kind, key, hash, now, limit.saturating_sub(r.bytes), out) {
                Produced::Done(n) => {
                    r.count += 1;
                    r.bytes += n;
                }
                Produced::Over(need) => {
                    r.over = Some(need);
                    break;
                }
            }
        }
        self.hook.after(&mut self.store, now);
        r
    }

    /// One key of a multi-key read, if its reply fits `limit` bytes (see [`Worker::read`];
    /// the caller runs the hook).
    fn key(
        &mut self,
        kind: GetKind,
        key: &[u8],
        hash: u64,
        now: u32,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Produced {
        if !self.own.keep(hash) {
            return Produced::Done(0);
        }
        let before = out.len();
        let k = Key { bytes: key, hash };
        match kind {
            GetKind::Get { cas, touch } => {
                let fits = &mut |v: &crate::store::ItemView<'_>| {
                    value_bound(v.key.len(), v.value.len()) <= limit
                };
                match self.store.get_bounded(k, touch, now, fits) {
                    Bounded::Hit(id) => {
                        let it = self.store.view(id);
                        let cas = cas.then_some(it.header.cas);
                        encode::value(out, it.key, it.header.flags, it.value, cas);
                    }
                    Bounded::Miss => {}
                    Bounded::Over(id) => {
                        let v = self.store.view(id);
                        return Produced::Over(value_bound(v.key.len(), v.value.len()));
                    }
                }
            }
            GetKind::Lease => {
                if limit < self.largest {
                    if let Some(id) = self.store.peek(k, now) {
                        let need = value_bound(key.len(), self.store.view(id).value.len());
                        if need > limit {
                            return Produced::Over(need);
                        }
                    }
                }
                exec::lease_key(&mut self.store, key, now, out);
            }
        }
        Produced::Done(out.len() - before)
    }

    /// Runs what another shard asked for.
    pub fn remote(&mut self, op: &Remote, now: u32) -> Answer {
        match op {
            Remote::One { req, hash, grant } => {
                let mut out = Vec::new();
                match self.run(&req.request(), Some(*hash), now, *grant, &mut out) {
                    Ran::Done(_) => Answer::Done(out),
                    Ran::Over(need) => Answer::Over(need),
                }
            }
            Remote::Keys { part, from, grant } => self.keys(part, *from, *grant, now),
        }
    }

    fn keys(&mut self, part: &Part, from: u32, grant: usize, now: u32) -> Answer {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut next = from;
        let mut over = None;
        for &i in part.keys.iter().skip(from as usize) {
            let i = i as usize;
            let (key, hash) = (part.list.key(i), part.list.hash(i));
            let limit = grant.saturating_sub(bytes.len());
            match self.key(part.kind, key, hash, now, limit, &mut bytes) {
                Produced::Done(_) => {
                    ends.push(bytes.len() as u32);
                    next += 1;
                }
                Produced::Over(need) => {
                    over = Some(need);
                    break;
                }
            }
        }
        self.hook.after(&mut self.store, now);
        Answer::Keys {
            bytes,
            ends,
            next,
            over,
        }
    }

    /// `flush_all [delay]` on this shard's store; `taken` on the shard whose client sent it
    /// (which counts the command, and runs before every other shard's part).
    pub fn flush_all(&mut self, delay: i32, now: u32, taken: bool) {
        if taken {
            self.hook.flush_taken(delay, now);
            self.store.flush_all(delay, now);
        } else {
            self.store.apply_flush(delay, now);
        }
        self.hook.flush_applied();
        self.hook.after(&mut self.store, now);
    }

    /// Moves to a newer bucket map: from here on keys are checked against it, and the items of
    /// buckets it takes away go now (their HOT copies with them), so a bucket regained later
    /// starts empty rather than with values it missed writes to. Returns the items dropped.
    pub fn apply_map(&mut self, own: Arc<Ownership>, now: u32) -> usize {
        let old = std::mem::replace(&mut self.own, own);
        let new = &self.own;
        let lost = |vb: u16| old.owns_vbucket(vb) && !new.owns_vbucket(vb);
        let dropped = self.store.drop_vbuckets(&lost, now);
        self.hook.after(&mut self.store, now);
        dropped
    }

    /// Periodic work: the hook's (promotion scans), then, when `rebalance`, the slab
    /// rebalancer (about once a second). Returns the page move it made, if any.
    pub fn tick(&mut self, now: u32, rebalance: bool) -> Option<(u8, u8)> {
        self.hook.tick(&mut self.store, now);
        let moved = if rebalance {
            self.store.rebalance(now)
        } else {
            None
        };
        self.hook.after(&mut self.store, now);
        moved
    }

    /// From now on the store reports what leaves it without a client asking (tests).
    pub fn record_removals(&mut self) {
        self.store.record_removals();
    }

    /// What left the store since the last call, with why (see [`Store::take_removals`]).
    pub fn take_removals(&mut self) -> Vec<(crate::store::slabs::Removal, Vec<u8>)> {
        self.store.take_removals()
    }

    /// `stats reset` for this shard.
    pub fn reset_stats(&mut self) {
        self.store.reset_stats();
        self.refusals = RefusalCounts::default();
    }
}
