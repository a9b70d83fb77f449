//! Whole-store sweeps: `flush_all`, dropping lost vbuckets, and the XDP HOT-copy log.

use super::{
    item::{self, Header, ITEM_HOT, ITEM_TOMBSTONE},
    shard::Key,
    slabs::ItemId,
    Store,
};
use crate::bucket::khash;

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// Marks `key` as copied into the XDP HOT map; from now on every change to it is reported
    /// through [`Store::drain_hot_invalidations`] before the change's reply is produced.
    pub fn mark_hot(&mut self, key: Key<'_>, now: u32) -> bool {
        let Some(id) = self.find_live(key, now) else {
            return false;
        };
        let chunk = self.slabs.chunk_mut(id);
        let f = item::read_iflag(chunk);
        item::write_iflag(chunk, f | ITEM_HOT);
        true
    }

    /// Hands every key whose HOT copy must be dropped to `f`, oldest first, and forgets them.
    pub fn drain_hot_invalidations(&mut self, mut f: impl FnMut(&[u8])) {
        let mut at = 0;
        while at < self.hot_log.len() {
            let n = self.hot_log[at] as usize;
            f(&self.hot_log[at + 1..at + 1 + n]);
            at += 1 + n;
        }
        self.hot_log.clear();
    }

    /// `flush_all [delay]` with memcached's arithmetic (`realtime(delay) - 1`).
    pub(super) fn flush(&mut self, oldest_live: u32, now: u32) {
        self.oldest_live = oldest_live;
        if oldest_live <= now {
            // Immediate: a new generation kills every older item without touching it; memcached
            // also spends a CAS id here, which keeps CAS sequences identical.
            self.next_cas();
            self.gen = self.gen.wrapping_add(1);
            self.flushes_since_sweep += 1;
            if self.flushes_since_sweep >= 128 {
                self.sweep_generations(now);
            }
        }
    }

    /// Removes every item of an older generation so the 8-bit generation can wrap safely.
    fn sweep_generations(&mut self, now: u32) {
        let mut stale: Vec<(ItemId, u64)> = Vec::new();
        let gen = self.gen;
        self.slabs.for_each(&mut |id, chunk| {
            if Header::read(chunk).gen != gen {
                stale.push((id, khash(item::key(chunk))));
            }
        });
        for (id, hash) in stale {
            if item::read_iflag(self.slabs.chunk(id)) & ITEM_TOMBSTONE != 0 {
                self.stats.tombstones -= 1;
            }
            self.remove_quiet(id, hash, now);
        }
        self.flushes_since_sweep = 0;
    }

    /// Drops every item whose vbucket `lost` says this node no longer owns (a node that lost
    /// buckets must not serve them again if it later regains them). Returns the items dropped.
    pub fn drop_vbuckets(&mut self, lost: &dyn Fn(u16) -> bool, now: u32) -> usize {
        let mut doomed: Vec<(ItemId, u64)> = Vec::new();
        self.slabs.for_each(&mut |id, chunk| {
            let hash = khash(item::key(chunk));
            if lost(crate::bucket::vbucket_of(hash)) {
                doomed.push((id, hash));
            }
        });
        let n = doomed.len();
        for (id, hash) in doomed {
            if item::read_iflag(self.slabs.chunk(id)) & ITEM_TOMBSTONE != 0 {
                self.stats.tombstones -= 1;
            }
            self.remove_quiet(id, hash, now);
        }
        n
    }

    fn remove_quiet(&mut self, id: ItemId, hash: u64, now: u32) {
        let tomb = item::read_iflag(self.slabs.chunk(id)) & ITEM_TOMBSTONE != 0;
        if tomb {
            self.slabs.unlink(id, hash);
        } else {
            self.remove(id, hash, now);
        }
    }
}
