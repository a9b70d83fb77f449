//! Whole-store sweeps: `flush_all`, dropping lost vbuckets, and the XDP HOT-copy log.

use super::{
    item::{self, Header, ITEM_HOT},
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
        let gen = self.gen;
        self.remove_where(&|h, _| h.gen != gen, now);
        self.flushes_since_sweep = 0;
    }

    /// Drops every item whose vbucket `lost` says this node no longer owns (a node that lost
    /// buckets must not serve them again if it later regains them). Returns the items dropped.
    pub fn drop_vbuckets(&mut self, lost: &dyn Fn(u16) -> bool, now: u32) -> usize {
        self.remove_where(&|_, hash| lost(crate::bucket::vbucket_of(hash)), now)
    }

    /// Removes every linked item (tombstones included) for which `doomed(header, hash)` holds.
    fn remove_where(&mut self, doomed: &dyn Fn(&Header, u64) -> bool, now: u32) -> usize {
        let mut found: Vec<(ItemId, u64)> = Vec::new();
        self.slabs.for_each(&mut |id, chunk| {
            let hash = khash(item::key(chunk));
            if doomed(&Header::read(chunk), hash) {
                found.push((id, hash));
            }
        });
        let n = found.len();
        for (id, hash) in found {
            self.remove(id, hash, now);
        }
        n
    }
}
