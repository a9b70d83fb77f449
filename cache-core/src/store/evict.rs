//! Memory pressure: allocation with eviction, page moves, and the bookkeeping for every item
//! that leaves without a client asking (floors to the filter, HOT copies reported, stats).

use super::{
    item::{self, Header, ITEM_HOT, ITEM_TOMBSTONE},
    shard::item_floor,
    slabs::{AllocError, ItemId, Removal},
    Store,
};
use crate::bucket::khash;

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// Moves a page between classes (memcached's `slabs reassign`).
    pub fn reassign(&mut self, src: u8, dst: u8, now: u32) -> Result<(), &'static str> {
        let mut removed = std::mem::take(&mut self.removal_scratch);
        removed.clear();
        let r = self.slabs.reassign(src, dst, &mut |why, chunk| {
            Self::log_removal(&mut removed, why, chunk);
        });
        self.absorb_removals(&removed, now);
        self.removal_scratch = removed;
        r
    }

    /// One automatic page-balancing step; call about once a second.
    pub fn rebalance(&mut self, now: u32) -> Option<(u8, u8)> {
        let mut removed = std::mem::take(&mut self.removal_scratch);
        removed.clear();
        let r = self
            .slabs
            .rebalance(&mut |why, chunk| Self::log_removal(&mut removed, why, chunk));
        self.absorb_removals(&removed, now);
        self.removal_scratch = removed;
        r
    }

    /// Starts recording every key that leaves memory without a client asking (tests, tracing).
    pub fn record_removals(&mut self) {
        self.removal_log = Some(Vec::new());
    }

    /// Takes the recorded removals.
    pub fn take_removals(&mut self) -> Vec<(Removal, Vec<u8>)> {
        self.removal_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Allocates a chunk for `len` bytes, evicting as needed; removals update floors, stats
    /// and the HOT log.
    pub(super) fn alloc(&mut self, len: usize, now: u32) -> Result<ItemId, AllocError> {
        let (gen, oldest) = (self.gen, self.oldest_live);
        let mut removed = std::mem::take(&mut self.removal_scratch);
        removed.clear();
        let dead = |h: &Header| Self::is_dead(h, now, gen, oldest);
        let r = self.slabs.alloc(len, &dead, &mut |why, chunk| {
            Self::log_removal(&mut removed, why, chunk);
        });
        self.absorb_removals(&removed, now);
        self.removal_scratch = removed;
        r
    }

    /// Serializes a removed item's essentials: why, header, key (the bytes die right after).
    pub(super) fn log_removal(out: &mut Vec<u8>, why: Removal, chunk: &[u8]) {
        out.push(match why {
            Removal::Evicted => 0,
            Removal::Reclaimed => 1,
            Removal::PageMoved => 2,
        });
        let floor = item_floor(chunk);
        out.extend_from_slice(&floor.to_le_bytes());
        out.extend_from_slice(&chunk[..item::HEADER_LEN]);
        out.extend_from_slice(item::key(chunk));
    }

    fn absorb_removals(&mut self, log: &[u8], now: u32) {
        let mut at = 0;
        while at < log.len() {
            let why = match log[at] {
                0 => Removal::Evicted,
                1 => Removal::Reclaimed,
                _ => Removal::PageMoved,
            };
            let mut f = [0u8; 8];
            f.copy_from_slice(&log[at + 1..at + 9]);
            let floor = u64::from_le_bytes(f);
            let hdr = &log[at + 9..at + 9 + item::HEADER_LEN];
            let h = Header::read(hdr);
            let kstart = at + 9 + item::HEADER_LEN;
            let key = &log[kstart..kstart + h.klen as usize];
            at = kstart + h.klen as usize;
            let hash = khash(key);
            if h.has(ITEM_HOT) {
                self.hot_log.push(key.len() as u8);
                self.hot_log.extend_from_slice(key);
            }
            if floor > 0 {
                self.floors
                    .record(hash, floor, now + self.cfg.tombstone_secs, now);
            }
            if h.has(ITEM_TOMBSTONE) {
                self.stats.tombstones -= 1;
            } else {
                self.stats.bytes -= h.total_len() as u64;
                match why {
                    Removal::Evicted => {
                        self.stats.evictions += 1;
                        if !h.has(item::ITEM_FETCHED) {
                            self.stats.evicted_unfetched += 1;
                        }
                    }
                    Removal::Reclaimed => self.stats.reclaimed += 1,
                    Removal::PageMoved => self.stats.slab_reassign_evictions += 1,
                }
            }
            if let Some(log) = self.removal_log.as_mut() {
                if !h.has(ITEM_TOMBSTONE) {
                    log.push((why, key.to_vec()));
                }
            }
        }
    }
}
