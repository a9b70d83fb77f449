//! Per-shard promotion and demotion: which of a shard's items get a HOT copy, and when it goes.
//!
//! Sans-IO decisions come from `cache_core::hot` ([`Tracker`], [`admit`]); this file decides
//! when to ask. After every request a shard runs against its store, [`Promoter::after_request`]
//! first drops the HOT copies the store reported changed (before the reply is queued: see the
//! module docs of `fastpath`), then counts the request's get hits in the tracker and promotes
//! the keys [`admit`] lets in. [`Promoter::tick`] walks the slots holding this shard's keys, a
//! slice at a time (`scan.rs`: a whole pass takes about a second, and no call stalls the event
//! loop): it takes XDP's hit counts and adds them to the tracker (so a key's estimate counts all
//! its gets, in XDP or not, and a promotion must beat the victim on the same scale), refreshes
//! the store's LRU for items XDP served (their gets never reached the store), and demotes slots
//! expired, unservable (old epoch, or filled before a `flush_all`), or idle for
//! [`IDLE_PERIODS`] passes.
//!
//! Slots are not demoted quickly for want of hits: the tail of a hot set (under Zipf 0.99 over
//! a million keys, the 70 000th key is fetched about once every five seconds at 200k gets/s)
//! would be demoted and promoted again over and over, each time sending its gets to user space.
//! Admission replaces cold entries when hotter keys need the room.

use std::sync::Arc;

use cache_core::{
    bucket::khash,
    hot::{admit, encode, HotText, Tracker, TrackerConfig, Victim},
    store::{
        item::{ITEM_HOT, ITEM_PLACEHOLDER, ITEM_STALE, ITEM_TOKEN_SENT, ITEM_TOMBSTONE},
        log_key, logged_keys, Key, Store,
    },
};

use self::scan::Pace;
use super::{clock, Fill, HotTables, Owner};

mod scan;

/// Passes of the scan (about a second each) without a hit after which a slot is demoted.
const IDLE_PERIODS: u8 = 30;
/// Items with less life left than this (seconds) are not promoted.
const MIN_TTL_SECS: u32 = 1;
/// Item flags that keep an item out of XDP: leases, tombstones, stale values.
const NOT_SERVABLE: u16 =
    ITEM_HOT | ITEM_STALE | ITEM_PLACEHOLDER | ITEM_TOKEN_SENT | ITEM_TOMBSTONE;

/// One shard's promotion state.
#[derive(Debug)]
pub(crate) struct Promoter {
    tables: Arc<HotTables>,
    owner: Owner,
    tracker: Tracker,
    text: Box<HotText>,
    /// Keys to consider this request, as a key log (`log_key`).
    candidates: Vec<u8>,
    /// The key a write displaced.
    evicted: Vec<u8>,
    /// `flush_all`s this shard's store has applied (wrapping, as `HOT_GEN`); promotions wait
    /// while the tables have seen more (a flush on its way here), see the module docs of
    /// `fastpath`.
    flushes_applied: u32,
    /// Per slot (numbered by `HotTables::slot_at`): `seq` at the last visit, and idle passes.
    seen: Vec<u32>,
    idle: Vec<u8>,
    /// The next slot the scan visits, the passes it has completed, and its pace.
    cursor: u32,
    passes: u64,
    pace: Pace,
    /// Promotions made and slots demoted, for logs and tests.
    pub(crate) promoted: u64,
    pub(crate) demoted: u64,
}

impl Promoter {
    pub(crate) fn new(tables: Arc<HotTables>, owner: Owner) -> Promoter {
        let n = tables.total_slots() as usize;
        Promoter {
            flushes_applied: tables.flush_count(),
            tables,
            owner,
            tracker: Tracker::new(TrackerConfig::default()),
            text: Box::new(HotText::new()),
            candidates: Vec::new(),
            evicted: Vec::new(),
            seen: vec![0; n],
            idle: vec![0; n],
            cursor: 0,
            passes: 0,
            pace: Pace::new(clock::monotonic_ns()),
            promoted: 0,
            demoted: 0,
        }
    }

    pub(crate) fn tables(&self) -> &Arc<HotTables> {
        &self.tables
    }

    /// Drops the HOT copies `store` reported. Must run after every request against the store
    /// and before that request's reply is queued or handed to another shard.
    pub(crate) fn invalidate<B: AsRef<[u8]> + AsMut<[u8]>>(&self, store: &mut Store<B>) {
        let t = &self.tables;
        store.drain_hot_invalidations(|k| t.invalidate(k, khash(k)));
    }

    /// [`Promoter::invalidate`], then promotions for the request's get hits.
    pub(crate) fn after_request<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        store: &mut Store<B>,
        now: u32,
    ) {
        self.invalidate(store);
        let (tracker, cands) = (&mut self.tracker, &mut self.candidates);
        store.drain_hits(|k| {
            // The cheapest admission (a small text into a free way) bounds every other.
            if admit(tracker.touch(k.hash), 0, None) {
                log_key(cands, k);
            }
        });
        if self.candidates.is_empty() {
            return;
        }
        let cands = std::mem::take(&mut self.candidates);
        for key in logged_keys(&cands) {
            self.promote(store, key, now);
        }
        self.candidates = cands;
        self.candidates.clear();
        // A re-check above may have removed an item that expired meanwhile.
        self.invalidate(store);
    }

    /// `flush_all` arrived here: this shard's store applies it now (the caller does).
    pub(crate) fn flush_applied(&mut self) {
        self.flushes_applied += 1;
    }

    /// Copies `key`'s item into the HOT tables if it may be served from there and wins a slot;
    /// then re-reads it and undoes the copy if the item moved meanwhile.
    fn promote<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        store: &mut Store<B>,
        key: Key<'_>,
        now: u32,
    ) {
        let flushes = self.tables.flush_count();
        if self.tables.quiet(now) || flushes != self.flushes_applied {
            return;
        }
        self.promote_as_of(store, key, now, flushes);
    }

    /// The rest of [`Promoter::promote`], `flushes` being `HOT_GEN` as read before the item was
    /// (a flush may have overtaken it since: tests pass such a token).
    fn promote_as_of<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        store: &mut Store<B>,
        key: Key<'_>,
        now: u32,
        flushes: u32,
    ) {
        let t = Arc::clone(&self.tables);
        let Some(id) = store.peek(key, now) else {
            return;
        };
        let it = store.view(id);
        let h = it.header;
        if h.iflag & NOT_SERVABLE != 0 || (h.exptime != 0 && h.exptime <= now + MIN_TTL_SECS) {
            return;
        }
        let Some(expires_ns) = clock::expires_ns(h.exptime) else {
            return;
        };
        if !encode(it.key, h.flags, it.value, h.cas, &mut self.text) {
            return;
        }
        let est = self.tracker.estimate(key.hash);
        let len = self.text.len();
        if !admit(est, len, None) {
            return;
        }
        let fill = Fill {
            key: key.bytes,
            hash: key.hash,
            text: &self.text,
            flags: h.flags,
            version: h.cas,
            expires_ns,
            flushes,
        };
        let tracker = &self.tracker;
        let written = t.write_scored(
            &fill,
            self.owner,
            |victim_hash, hits| hits.max(tracker.estimate(victim_hash)),
            |victim_hash, hits| {
                let estimate = tracker.estimate(victim_hash);
                admit(est, len, Some(Victim { hits, estimate }))
            },
            &mut self.evicted,
        );
        if !written {
            return;
        }
        store.mark_hot(key, now);
        if !self.evicted.is_empty() {
            store.unmark_hot(Key::new(&self.evicted), now);
        }
        // The item is this shard's and nothing else ran on this thread since it was read, but
        // check anyway. A flush another shard began meanwhile left the slot unservable (it
        // carries `flushes`); give its way back and let the item be promoted again later.
        let current = store.peek(key, now).map(|id| store.view(id).header.cas);
        if current != Some(h.cas) || t.flushed_since(flushes) {
            t.invalidate(key.bytes, key.hash);
            store.unmark_hot(key, now);
            return;
        }
        self.promoted += 1;
    }
}

#[cfg(test)]
mod tests;
