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

    /// Drops the HOT mark of `key`'s item (its copy left the HOT map without a change to the
    /// item: demoted or replaced), so it may be promoted again. Returns whether it was marked.
    pub fn unmark_hot(&mut self, key: Key<'_>, now: u32) -> bool {
        let Some(id) = self.find_live(key, now) else {
            return false;
        };
        let chunk = self.slabs.chunk_mut(id);
        let f = item::read_iflag(chunk);
        item::write_iflag(chunk, f & !ITEM_HOT);
        f & ITEM_HOT != 0
    }

    /// Counts gets XDP answered from `key`'s HOT copy as an access (CLOCK reference bit, fetched
    /// mark, access time), so the store does not evict the hottest items because their gets
    /// never reached it. Returns whether the item is still here.
    pub fn hot_served(&mut self, key: Key<'_>, now: u32) -> bool {
        match self.find_visible(key, now) {
            Some(id) => {
                self.bump(id, now);
                true
            }
            None => false,
        }
    }

    /// Starts (`true`) or stops logging get hits for promotion; see [`Store::drain_hits`].
    pub fn log_hits(&mut self, on: bool) {
        self.hit_log = on.then(Vec::new);
    }

    /// Hands the key of every `get`/`gets`/`mg` hit since the last call on an item not marked
    /// HOT to `f`, oldest first, and forgets them.
    pub fn drain_hits(&mut self, mut f: impl FnMut(Key<'_>)) {
        let Some(log) = self.hit_log.as_mut() else {
            return;
        };
        logged_keys(log).for_each(&mut f);
        log.clear();
    }

    /// Logs a get hit on `id` (found for `key`) if hits are logged and the item is not HOT.
    pub(super) fn log_hit(&mut self, id: ItemId, key: Key<'_>) {
        if let Some(log) = self.hit_log.as_mut().filter(|_| key.bytes.len() <= 250) {
            if item::read_iflag(self.slabs.chunk(id)) & ITEM_HOT == 0 {
                log_key(log, key);
            }
        }
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

/// Appends `key` (at most 255 bytes) to a key log: `hash (8, LE) | len (1) | key`, back to
/// back, so a drain hands keys on with the hash they were logged with.
pub fn log_key(log: &mut Vec<u8>, key: Key<'_>) {
    log.extend_from_slice(&key.hash.to_le_bytes());
    log.push(key.bytes.len() as u8);
    log.extend_from_slice(key.bytes);
}

/// The keys [`log_key`] appended to `log`, oldest first.
pub fn logged_keys(log: &[u8]) -> impl Iterator<Item = Key<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = log.get(at..at + 9)?;
        let mut h = [0u8; 8];
        h.copy_from_slice(&head[..8]);
        let end = (at + 9 + usize::from(head[8])).min(log.len());
        let bytes = &log[at + 9..end];
        at = end;
        Some(Key {
            bytes,
            hash: u64::from_le_bytes(h),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Mode, StoreConfig, Write};

    const NOW: u32 = 1_700_000_000;

    fn store() -> Store<Vec<u8>> {
        match Store::new(vec![0u8; 4 << 20], StoreConfig::default()) {
            Ok(s) => s,
            Err(e) => panic!("store: {e}"),
        }
    }

    fn set(s: &mut Store<Vec<u8>>, key: &[u8], value: &[u8]) {
        let w = Write {
            value,
            ..Write::default()
        };
        s.store(Mode::Set, Key::new(key), w, NOW);
    }

    fn hits(s: &mut Store<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        s.drain_hits(|k| {
            assert_eq!(k.hash, khash(k.bytes));
            seen.push(k.bytes.to_vec());
        });
        seen
    }

    #[test]
    fn hit_log() {
        let mut s = store();
        set(&mut s, b"a", b"1");
        // Off by default: nothing is logged.
        s.get(Key::new(b"a"), None, NOW);
        assert!(hits(&mut s).is_empty());
        s.log_hits(true);
        // Hits are logged with their hash; misses and gat are not.
        s.get(Key::new(b"a"), None, NOW);
        s.get(Key::new(b"zz"), None, NOW);
        s.get(Key::new(b"a"), Some(100), NOW);
        assert_eq!(hits(&mut s), vec![b"a".to_vec()]);
        // Drained once.
        assert!(hits(&mut s).is_empty());
        // A HOT item is not logged again.
        assert!(s.mark_hot(Key::new(b"a"), NOW));
        s.get(Key::new(b"a"), None, NOW);
        assert!(hits(&mut s).is_empty());
        // Unmarked, it is.
        assert!(s.unmark_hot(Key::new(b"a"), NOW));
        s.get(Key::new(b"a"), None, NOW);
        assert_eq!(hits(&mut s), vec![b"a".to_vec()]);
    }

    #[test]
    fn change_in_place_clears_the_mark() {
        let mut s = store();
        set(&mut s, b"a", b"1");
        assert!(s.mark_hot(Key::new(b"a"), NOW));
        // touch changes the item in place: reported once, and no longer HOT afterwards.
        assert!(s.touch(Key::new(b"a"), 100, NOW));
        let mut n = 0;
        s.drain_hot_invalidations(|_| n += 1);
        assert_eq!(n, 1);
        assert!(!s.unmark_hot(Key::new(b"a"), NOW));
        // hot_served bumps a present item and reports a missing one.
        assert!(s.hot_served(Key::new(b"a"), NOW));
        assert!(!s.hot_served(Key::new(b"b"), NOW));
    }
}
