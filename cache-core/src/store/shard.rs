//! The store of one shard: slab memory plus CAS counter, flush state, floors and statistics. The
//! per-command methods live in `ops.rs` and `meta_ops.rs`; this file holds what they share.

use super::{
    evict::books,
    item::{self, Header, ITEM_EXT_VERSION, ITEM_FLOOR, ITEM_HOT, ITEM_REF, ITEM_TOMBSTONE},
    slabs::{AllocError, ItemId, Removal, SlabConfig, SlabError, Slabs},
    Stats,
};
use crate::{bucket::khash, version::FloorFilter};

/// Settings of one store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub page_size: usize,
    pub min_chunk: usize,
    pub growth_factor: f64,
    /// Initial index capacity (entries).
    pub index_capacity: usize,
    /// Largest item (header + key + value), memcached's `-I`.
    pub item_max: usize,
    /// CAS values are `cas_offset + n * cas_stride` for n = 1, 2, ...: shards of one node use
    /// distinct offsets so a CAS is unique node-wide. (0, 1) counts like memcached.
    pub cas_offset: u64,
    pub cas_stride: u64,
    /// How long a tombstone keeps a key's version floor (see [`crate::version`]).
    pub tombstone_secs: u32,
    /// Slots of the floor filter.
    pub floor_slots: usize,
    /// Lease period for mcrouter's `lease-get` (meta `N` carries its own).
    pub lease_secs: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            page_size: 1 << 20,
            min_chunk: 32,
            growth_factor: 1.08,
            index_capacity: 1024,
            item_max: 1 << 20,
            cas_offset: 0,
            cas_stride: 1,
            tombstone_secs: 10,
            floor_slots: 4096,
            lease_secs: 10,
        }
    }
}

/// A key and its kcache hash, computed once per request.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub bytes: &'a [u8],
    pub hash: u64,
}

impl<'a> Key<'a> {
    pub fn new(bytes: &'a [u8]) -> Key<'a> {
        Key {
            bytes,
            hash: khash(bytes),
        }
    }
}

/// What a new item gets besides its key and value.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Meta {
    pub flags: u32,
    pub exptime: u32,
    /// `Some` for an external version (`E`), else the counter supplies the CAS.
    pub version: Option<u64>,
    pub iflag: u16,
    /// Floor to carry in the trailer (0 = none).
    pub floor: u64,
}

/// One store per shard. Not thread-safe by design: a shard thread owns it.
#[derive(Debug)]
pub struct Store<B> {
    pub(super) slabs: Slabs<B>,
    pub(super) cfg: StoreConfig,
    pub(super) cas_seq: u64,
    pub(super) gen: u8,
    pub(super) flushes_since_sweep: u8,
    pub(super) oldest_live: u32,
    pub(super) floors: FloorFilter,
    pub(super) stats: Stats,
    pub(super) scratch: Vec<u8>,
    pub(super) hot_log: Vec<u8>,
    /// Keys of get hits on items not yet HOT, while promotion is on (see `log_hits`).
    pub(super) hit_log: Option<Vec<u8>>,
    pub(super) removal_log: Option<Vec<(Removal, Vec<u8>)>>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// A store over `mem` (the caller pins it; see `cache-user`).
    pub fn new(mem: B, cfg: StoreConfig) -> Result<Store<B>, SlabError> {
        let slabs = Slabs::new(
            mem,
            SlabConfig {
                page_size: cfg.page_size.max(cfg.item_max),
                min_chunk: cfg.min_chunk,
                growth_factor: cfg.growth_factor,
                index_capacity: cfg.index_capacity,
            },
        )?;
        Ok(Store {
            slabs,
            floors: FloorFilter::new(cfg.floor_slots),
            cfg,
            cas_seq: 0,
            gen: 0,
            flushes_since_sweep: 0,
            oldest_live: 0,
            stats: Stats::default(),
            scratch: Vec::new(),
            hot_log: Vec::new(),
            hit_log: None,
            removal_log: None,
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.curr_items = self.slabs.len() as u64 - s.tombstones;
        s.hash_bytes = self.slabs.index_bytes() as u64;
        s
    }

    /// `stats reset` for this store.
    pub fn reset_stats(&mut self) {
        self.stats.reset_counters();
    }

    pub fn slabs(&self) -> &Slabs<B> {
        &self.slabs
    }

    pub(super) fn next_cas(&mut self) -> u64 {
        self.cas_seq += 1;
        self.cfg
            .cas_offset
            .wrapping_add(self.cas_seq.wrapping_mul(self.cfg.cas_stride))
    }

    /// Reports the HOT copy of an item about to change in place and clears its HOT mark: the
    /// copy is dropped before the change's reply, so the item may be promoted again later.
    pub(super) fn note_change(&mut self, id: ItemId) {
        report_hot(&mut self.hot_log, self.slabs.chunk(id));
        let chunk = self.slabs.chunk_mut(id);
        let f = item::read_iflag(chunk);
        if f & ITEM_HOT != 0 {
            item::write_iflag(chunk, f & !ITEM_HOT);
        }
    }

    pub(super) fn is_dead(h: &Header, now: u32, gen: u8, oldest_live: u32) -> bool {
        (h.exptime != 0 && h.exptime <= now)
            || h.gen != gen
            || (oldest_live != 0 && oldest_live <= now && h.atime <= oldest_live)
    }

    /// The linked item for `key` (tombstones included), after lazily removing it if it expired
    /// or was flushed.
    pub(super) fn find_live(&mut self, key: Key<'_>, now: u32) -> Option<ItemId> {
        let id = self.slabs.find(key.bytes, key.hash)?;
        let h = Header::read(self.slabs.chunk(id));
        if Self::is_dead(&h, now, self.gen, self.oldest_live) {
            if h.has(ITEM_TOMBSTONE) {
                // Not a get: tombstones are invisible.
            } else if h.exptime != 0 && h.exptime <= now {
                self.stats.get_expired += 1;
            } else {
                self.stats.get_flushed += 1;
            }
            self.remove(id, key.hash, now);
            return None;
        }
        Some(id)
    }

    /// The floor in force for `key`: from its item (or tombstone), else from the filter.
    pub(super) fn floor_of(&self, id: Option<ItemId>, key: Key<'_>, now: u32) -> u64 {
        match id {
            Some(id) => item_floor(self.slabs.chunk(id)),
            None => self.floors.floor(key.hash, now),
        }
    }

    /// Unlinks and frees a linked item or tombstone, settling its books (see `Books::settle`).
    pub(super) fn remove(&mut self, id: ItemId, hash: u64, now: u32) {
        books!(self).settle(None, self.slabs.chunk(id), Some(hash), now);
        self.slabs.unlink(id, hash);
    }

    /// Writes a new item for `key` and links it in place of whatever the key has now.
    /// `value` is `head` followed by `tail`.
    pub(super) fn put(
        &mut self,
        key: Key<'_>,
        head: &[u8],
        tail: &[u8],
        m: Meta,
        now: u32,
    ) -> Result<ItemId, AllocError> {
        let vlen = head.len() + tail.len();
        let floor_trailer = m.floor > m.version.unwrap_or(0);
        let len = item::item_len(key.bytes.len(), vlen, floor_trailer);
        let id = self.alloc(len, now)?;
        let cas = match m.version {
            Some(v) => v,
            None => self.next_cas(),
        };
        let mut iflag = m.iflag & !(ITEM_FLOOR | ITEM_EXT_VERSION | ITEM_HOT);
        if m.version.is_some() {
            iflag |= ITEM_EXT_VERSION;
        }
        if floor_trailer {
            iflag |= ITEM_FLOOR;
        }
        let h = Header {
            cas,
            exptime: m.exptime,
            atime: now,
            flags: m.flags,
            vlen: vlen as u32,
            klen: key.bytes.len() as u8,
            iflag,
            gen: self.gen,
        };
        let chunk = self.slabs.chunk_mut(id);
        h.write(chunk);
        let k = item::HEADER_LEN;
        chunk[k..k + key.bytes.len()].copy_from_slice(key.bytes);
        let v = k + key.bytes.len();
        chunk[v..v + head.len()].copy_from_slice(head);
        chunk[v + head.len()..v + vlen].copy_from_slice(tail);
        if floor_trailer {
            item::write_floor(chunk, m.floor);
        }
        self.link_new(key, id, iflag & ITEM_TOMBSTONE != 0, h.total_len());
        Ok(id)
    }

    fn link_new(&mut self, key: Key<'_>, id: ItemId, tombstone: bool, len: usize) {
        match self.slabs.find(key.bytes, key.hash) {
            Some(old) => {
                let oc = self.slabs.chunk(old);
                report_hot(&mut self.hot_log, oc);
                let oh = Header::read(oc);
                if oh.has(ITEM_TOMBSTONE) {
                    self.stats.tombstones -= 1;
                } else {
                    self.stats.bytes -= oh.total_len() as u64;
                }
                self.slabs.replace(old, id, key.hash);
            }
            None => self.slabs.link(id, key.hash),
        }
        if tombstone {
            self.stats.tombstones += 1;
        } else {
            self.stats.bytes += len as u64;
            self.stats.total_items += 1;
        }
    }

    /// Leaves a tombstone holding `floor` for the tombstone window, replacing the key's item.
    /// Without memory for it the floor goes to the filter instead (still safe).
    pub(super) fn tombstone(&mut self, key: Key<'_>, floor: u64, now: u32) {
        let m = Meta {
            exptime: now + self.cfg.tombstone_secs,
            version: Some(floor),
            iflag: ITEM_TOMBSTONE,
            ..Meta::default()
        };
        if self.put(key, &[], &[], m, now).is_err() {
            if let Some(id) = self.slabs.find(key.bytes, key.hash) {
                self.remove(id, key.hash, now);
            }
            self.floors
                .record(key.hash, floor, now + self.cfg.tombstone_secs, now);
        }
    }

    /// Records a fetch as memcached 1.6.18's `do_item_bump` does: the first fetch only marks the
    /// item fetched, a later one also moves its last-access time to `now` (and both set the
    /// CLOCK reference bit). Writes only what changed, so a hot item's header line is not
    /// dirtied on every read.
    pub(super) fn bump(&mut self, id: ItemId, now: u32) {
        let chunk = self.slabs.chunk_mut(id);
        let f = item::read_iflag(chunk);
        let want = f | ITEM_REF | item::ITEM_FETCHED;
        if want != f {
            item::write_iflag(chunk, want);
        }
        if f & item::ITEM_FETCHED != 0 && item::read_atime(chunk) != now {
            item::write_atime(chunk, now);
        }
    }

    /// An LRU bump without counting a fetch (memcached's `do_item_update`: `add` on an existing
    /// key, an in-place `incr`), which moves the last-access time to `now`.
    pub(super) fn bump_lru(&mut self, id: ItemId, now: u32) {
        let chunk = self.slabs.chunk_mut(id);
        let f = item::read_iflag(chunk);
        if f & ITEM_REF == 0 {
            item::write_iflag(chunk, f | ITEM_REF);
        }
        if item::read_atime(chunk) != now {
            item::write_atime(chunk, now);
        }
    }
}

/// The floor an item carries: its external version and/or its trailer.
pub(super) fn item_floor(chunk: &[u8]) -> u64 {
    let h = Header::read(chunk);
    let own = if h.has(ITEM_EXT_VERSION) { h.cas } else { 0 };
    own.max(item::floor(chunk).unwrap_or(0))
}

/// Notes that the item in `chunk` is about to change or vanish: if a copy of it may sit in the
/// XDP HOT map, its key goes on the log drained by `drain_hot_invalidations`.
pub(super) fn report_hot(hot_log: &mut Vec<u8>, chunk: &[u8]) {
    if item::read_iflag(chunk) & ITEM_HOT != 0 {
        let k = item::key(chunk);
        hot_log.push(k.len() as u8);
        hot_log.extend_from_slice(k);
    }
}
