//! Memory pressure: allocation with eviction, page moves, and the bookkeeping for every item
//! that leaves memory (floors to the filter, HOT copies reported, stats).

use super::{
    item::{self, Header, ITEM_TOMBSTONE},
    shard::{item_floor, report_hot},
    slabs::{AllocError, ItemId, Removal},
    Stats, Store,
};
use crate::{bucket::khash, version::FloorFilter};

/// The store's books, borrowed field by field so they can be kept while the slabs are busy
/// removing items (inside an allocation's callback, for instance).
pub(super) struct Books<'a> {
    pub stats: &'a mut Stats,
    pub floors: &'a mut FloorFilter,
    pub hot_log: &'a mut Vec<u8>,
    pub removals: &'a mut Option<Vec<(Removal, Vec<u8>)>>,
    pub tombstone_secs: u32,
}

/// The books of `$store`, leaving its slabs free to borrow.
macro_rules! books {
    ($store:expr) => {
        $crate::store::evict::Books {
            stats: &mut $store.stats,
            floors: &mut $store.floors,
            hot_log: &mut $store.hot_log,
            removals: &mut $store.removal_log,
            tombstone_secs: $store.cfg.tombstone_secs,
        }
    };
}
pub(super) use books;

impl Books<'_> {
    /// Accounts for the item in `chunk` leaving memory, while its bytes are still intact:
    /// `why` is `None` when a command removed it. A HOT copy is reported; a floor goes to the
    /// filter (a tombstone's until its window ends, an item's for one tombstone window, see
    /// crate::version); bytes, tombstones and eviction counters follow.
    pub(super) fn settle(
        &mut self,
        why: Option<Removal>,
        chunk: &[u8],
        hash: Option<u64>,
        now: u32,
    ) {
        report_hot(self.hot_log, chunk);
        let h = Header::read(chunk);
        let key = item::key(chunk);
        let hash = || hash.unwrap_or_else(|| khash(key));
        if h.has(ITEM_TOMBSTONE) {
            self.stats.tombstones -= 1;
            if h.exptime > now {
                self.floors.record(hash(), h.cas, h.exptime, now);
            }
            return;
        }
        let floor = item_floor(chunk);
        if floor > 0 {
            self.floors
                .record(hash(), floor, now + self.tombstone_secs, now);
        }
        self.stats.bytes -= h.total_len() as u64;
        let Some(why) = why else { return };
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
        if let Some(log) = self.removals.as_mut() {
            log.push((why, key.to_vec()));
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// Moves a page between classes (memcached's `slabs reassign`).
    pub fn reassign(&mut self, src: u8, dst: u8, now: u32) -> Result<(), &'static str> {
        let mut books = books!(self);
        self.slabs.reassign(src, dst, &mut |why, chunk| {
            books.settle(Some(why), chunk, None, now)
        })
    }

    /// One automatic page-balancing step; call about once a second.
    pub fn rebalance(&mut self, now: u32) -> Option<(u8, u8)> {
        let mut books = books!(self);
        self.slabs
            .rebalance(&mut |why, chunk| books.settle(Some(why), chunk, None, now))
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

    /// Allocates a chunk for `len` bytes, evicting as needed.
    pub(super) fn alloc(&mut self, len: usize, now: u32) -> Result<ItemId, AllocError> {
        let (gen, oldest) = (self.gen, self.oldest_live);
        let dead = |h: &Header| Self::is_dead(h, now, gen, oldest);
        let mut books = books!(self);
        self.slabs.alloc(len, &dead, &mut |why, chunk| {
            books.settle(Some(why), chunk, None, now)
        })
    }
}
