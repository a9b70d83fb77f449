//! Classic commands, one method each, with memcached 1.6's semantics (`do_store_item`,
//! `do_add_delta`, `item_touch`, `process_delete_command`, `flush_all`).

use super::{
    item::{
        self, Header, ITEM_EXT_VERSION, ITEM_FLOOR, ITEM_STALE, ITEM_TOKEN_SENT, ITEM_TOMBSTONE,
    },
    shard::{item_floor, Key, Meta},
    slabs::{AllocError, ItemId},
    Store,
};
use crate::{protocol::token::strtoull, version};

/// memcached's `REALTIME_MAXDELTA`: larger exptimes are absolute Unix times.
pub const REALTIME_MAXDELTA: i32 = 60 * 60 * 24 * 30;

/// An exptime from the wire as absolute Unix seconds (0 = never), memcached's
/// `realtime(EXPTIME_TO_POSITIVE_TIME(e))`: up to 30 days is relative, more is absolute,
/// negative is already expired.
pub fn realtime(e: i32, now: u32) -> u32 {
    if e == 0 {
        0
    } else if e < 0 {
        1
    } else if e > REALTIME_MAXDELTA {
        e as u32
    } else {
        now.wrapping_add(e as u32)
    }
}

/// How a storage command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    /// No memory could be found (`SERVER_ERROR out of memory storing object`).
    NoMemory,
}

/// The six storage modes (classic commands and `ms M<mode>`): the protocol's own.
pub use crate::protocol::StoreCmd as Mode;

/// Everything a storage command may carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Write<'a> {
    pub value: &'a [u8],
    pub flags: u32,
    /// Absolute exptime (see [`realtime`]).
    pub exptime: u32,
    /// CAS to compare (0 = none).
    pub cas: u64,
    /// `ms … I`: a CAS older than the item's stores the value but marks it stale.
    pub set_stale: bool,
    /// `E<version>`: client-supplied version.
    pub version: Option<u64>,
    /// `ms … b`: the key was base64.
    pub key_binary: bool,
    /// `ms … N<ttl>` in append/prepend mode: create on miss with this exptime.
    pub vivify: Option<u32>,
}

/// How [`Store::get_bounded`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounded {
    /// The item to encode; the get was counted and applied.
    Hit(ItemId),
    Miss,
    /// The item is there but its reply would not fit: nothing happened.
    Over(ItemId),
}

/// How `incr`/`decr` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value; the item is `id`.
    Value(u64, ItemId),
    NotFound,
    NonNumeric,
    /// `ma … C<cas>` did not match.
    Exists,
    NoMemory,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// One key of `get`/`gets` (`touch` = None) or `gat`/`gats`. Returns the item to encode.
    pub fn get(&mut self, key: Key<'_>, touch: Option<i32>, now: u32) -> Option<ItemId> {
        match self.get_bounded(key, touch, now, &mut |_| true) {
            Bounded::Hit(id) => Some(id),
            Bounded::Miss | Bounded::Over(_) => None,
        }
    }

    /// [`Store::get`] for a caller with room for a reply of limited size: `fits` sees the item
    /// first, and when it says no the get does not happen at all (nothing counted, bumped or
    /// touched), so the caller can ask again once it has room.
    pub fn get_bounded(
        &mut self,
        key: Key<'_>,
        touch: Option<i32>,
        now: u32,
        fits: &mut dyn FnMut(&ItemView<'_>) -> bool,
    ) -> Bounded {
        let id = self.find_visible(key, now);
        if let Some(id) = id {
            if !fits(&self.view(id)) {
                return Bounded::Over(id);
            }
        }
        match touch {
            None => {
                self.stats.cmd_get += 1;
                match id {
                    Some(_) => self.stats.get_hits += 1,
                    None => self.stats.get_misses += 1,
                }
            }
            Some(_) => {
                self.stats.cmd_touch += 1;
                match id {
                    Some(_) => self.stats.touch_hits += 1,
                    None => self.stats.touch_misses += 1,
                }
            }
        }
        let Some(id) = id else {
            return Bounded::Miss;
        };
        self.bump(id, now);
        match touch {
            Some(e) => self.set_exptime(id, realtime(e, now)),
            None => self.log_hit(id, key),
        }
        Bounded::Hit(id)
    }

    /// The live, non-tombstone item for `key`.
    pub(super) fn find_visible(&mut self, key: Key<'_>, now: u32) -> Option<ItemId> {
        self.lookup(key, now).1
    }

    /// One lookup for writers: the key's live entry (a tombstone included, for its floor) and
    /// its visible item (never a tombstone).
    pub(super) fn lookup(&mut self, key: Key<'_>, now: u32) -> (Option<ItemId>, Option<ItemId>) {
        let live = self.find_live(key, now);
        let visible =
            live.filter(|&id| item::read_iflag(self.slabs.chunk(id)) & ITEM_TOMBSTONE == 0);
        (live, visible)
    }

    pub(super) fn set_exptime(&mut self, id: ItemId, exptime: u32) {
        // A HOT copy carries its own expiry: it must go before the TTL changes.
        self.note_change(id);
        item::write_exptime(self.slabs.chunk_mut(id), exptime);
    }

    /// `set`, `add`, `replace`, `append`, `prepend`, `cas` and the `ms` modes
    /// (memcached's `do_store_item`). Returns the outcome and the stored item's CAS.
    pub fn store(
        &mut self,
        mode: Mode,
        key: Key<'_>,
        w: Write<'_>,
        now: u32,
    ) -> (StoreOutcome, u64) {
        self.stats.cmd_set += 1;
        let (live, old) = self.lookup(key, now);
        let floor = self.floor_of(live, key, now);
        if !version::admits(w.version, floor) {
            self.stats.stale_fills_refused += 1;
            return (StoreOutcome::NotStored, 0);
        }
        let binary = if w.key_binary {
            item::ITEM_KEY_BINARY
        } else {
            0
        };
        let fresh = Meta {
            flags: w.flags,
            exptime: w.exptime,
            version: w.version,
            iflag: binary,
            floor,
        };
        let Some(old) = old else {
            if w.cas != 0 && mode == Mode::Cas {
                self.stats.cas_misses += 1;
                return (StoreOutcome::NotFound, 0);
            }
            return match (mode, w.vivify) {
                (Mode::Add | Mode::Set, _) => self.finish(key, w.value, &[], fresh, now),
                (Mode::Append | Mode::Prepend, Some(exptime)) => {
                    self.finish(key, w.value, &[], Meta { exptime, ..fresh }, now)
                }
                (Mode::Cas, _) => {
                    self.stats.cas_misses += 1;
                    (StoreOutcome::NotFound, 0)
                }
                _ => (StoreOutcome::NotStored, 0),
            };
        };
        let h = Header::read(self.slabs.chunk(old));
        let cas_match = w.cas != 0 && w.cas == h.cas;
        let cas_stale = w.cas != 0 && !cas_match && w.set_stale && w.cas < h.cas;
        match mode {
            Mode::Add => {
                self.bump_lru(old, now);
                (StoreOutcome::NotStored, 0)
            }
            Mode::Cas if cas_match => {
                self.stats.cas_hits += 1;
                self.finish(key, w.value, &[], fresh, now)
            }
            Mode::Cas if cas_stale => {
                // Replace the value but keep the TTL, stay stale, keep the token holder.
                self.stats.cas_hits += 1;
                let keep = h.iflag & ITEM_TOKEN_SENT;
                let m = Meta {
                    exptime: h.exptime,
                    iflag: binary | ITEM_STALE | keep,
                    ..fresh
                };
                self.finish(key, w.value, &[], m, now)
            }
            Mode::Cas => {
                self.stats.cas_badval += 1;
                (StoreOutcome::Exists, 0)
            }
            Mode::Append | Mode::Prepend => {
                if w.cas != 0 && !cas_match {
                    return (StoreOutcome::Exists, 0);
                }
                // The old value is copied out first: allocating may evict it.
                let mut old_value = std::mem::take(&mut self.scratch);
                old_value.clear();
                old_value.extend_from_slice(item::value(self.slabs.chunk(old)));
                // The joined item is new: like memcached's, it does not keep the old one's
                // binary-key mark (meta `k` then echoes the key decoded).
                let m = Meta {
                    flags: h.flags,
                    exptime: h.exptime,
                    version: w.version,
                    iflag: 0,
                    floor,
                };
                let (head, tail) = if mode == Mode::Append {
                    (&old_value[..], w.value)
                } else {
                    (w.value, &old_value[..])
                };
                let r = match self.put(key, head, tail, m, now) {
                    Ok(id) => (StoreOutcome::Stored, item::read_cas(self.slabs.chunk(id))),
                    // memcached answers NOT_STORED when the joined item cannot be allocated.
                    Err(_) => (StoreOutcome::NotStored, 0),
                };
                self.scratch = old_value;
                r
            }
            Mode::Replace | Mode::Set => self.finish(key, w.value, &[], fresh, now),
        }
    }

    fn finish(
        &mut self,
        key: Key<'_>,
        head: &[u8],
        tail: &[u8],
        m: Meta,
        now: u32,
    ) -> (StoreOutcome, u64) {
        match self.put(key, head, tail, m, now) {
            Ok(id) => (StoreOutcome::Stored, item::read_cas(self.slabs.chunk(id))),
            Err(AllocError::TooLarge | AllocError::OutOfMemory) => {
                self.stats.store_no_memory += 1;
                (StoreOutcome::NoMemory, 0)
            }
        }
    }

    /// Drops `key` after a refused write so no stale copy stays (memcached does this when a
    /// `set` or `ms` cannot be stored).
    pub fn drop_key(&mut self, key: Key<'_>, now: u32) {
        if let Some(id) = self.find_visible(key, now) {
            self.delete_item(id, key, None, now);
        }
    }

    /// `incr`/`decr` and `ma` (memcached's `do_add_delta`). `cas` 0 = no compare; `version`
    /// becomes the new CAS if given.
    pub fn arith(
        &mut self,
        key: Key<'_>,
        incr: bool,
        delta: u64,
        cas: u64,
        version: Option<u64>,
        now: u32,
    ) -> ArithOutcome {
        let Some(id) = self.find_visible(key, now) else {
            if incr {
                self.stats.incr_misses += 1;
            } else {
                self.stats.decr_misses += 1;
            }
            return ArithOutcome::NotFound;
        };
        let chunk = self.slabs.chunk(id);
        let h = Header::read(chunk);
        let data = item::value(chunk);
        if data.is_empty() {
            return ArithOutcome::NonNumeric;
        }
        if cas != 0 && h.cas != cas {
            return ArithOutcome::Exists;
        }
        let Some(v) = strtoull(data) else {
            return ArithOutcome::NonNumeric;
        };
        let v = if incr {
            v.wrapping_add(delta)
        } else {
            v.saturating_sub(delta)
        };
        if incr {
            self.stats.incr_hits += 1;
        } else {
            self.stats.decr_hits += 1;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(v).as_bytes();
        let floor = item_floor(chunk);
        let versioned = h.iflag & (ITEM_EXT_VERSION | ITEM_FLOOR) != 0 || version.is_some();
        if digits.len() <= data.len() && !versioned {
            // In place, space-padded like memcached, with a new CAS.
            self.note_change(id);
            let cas = self.next_cas();
            let chunk = self.slabs.chunk_mut(id);
            let start = item::HEADER_LEN + h.klen as usize;
            let val = &mut chunk[start..start + h.vlen as usize];
            val[..digits.len()].copy_from_slice(digits);
            val[digits.len()..].fill(b' ');
            item::write_cas(chunk, cas);
            self.bump_lru(id, now);
            return ArithOutcome::Value(v, id);
        }
        // A new item, as in memcached: no binary-key mark carried over.
        let m = Meta {
            flags: h.flags,
            exptime: h.exptime,
            version,
            iflag: 0,
            floor,
        };
        match self.put(key, digits, &[], m, now) {
            Ok(id) => ArithOutcome::Value(v, id),
            Err(_) => ArithOutcome::NoMemory,
        }
    }

    /// `touch`: new exptime for an existing item.
    pub fn touch(&mut self, key: Key<'_>, exptime: i32, now: u32) -> bool {
        self.stats.cmd_touch += 1;
        match self.find_visible(key, now) {
            Some(id) => {
                self.stats.touch_hits += 1;
                self.bump(id, now);
                self.set_exptime(id, realtime(exptime, now));
                true
            }
            None => {
                self.stats.touch_misses += 1;
                false
            }
        }
    }

    /// `delete`.
    pub fn delete(&mut self, key: Key<'_>, now: u32) -> bool {
        match self.find_visible(key, now) {
            Some(id) => {
                self.stats.delete_hits += 1;
                self.delete_item(id, key, None, now);
                true
            }
            None => {
                self.stats.delete_misses += 1;
                false
            }
        }
    }

    /// Removes an item; if the key has a version floor (or `version` raises one), a tombstone
    /// keeps it (see [`crate::version`]).
    pub(super) fn delete_item(&mut self, id: ItemId, key: Key<'_>, version: Option<u64>, now: u32) {
        let floor = item_floor(self.slabs.chunk(id)).max(version.unwrap_or(0));
        if floor > 0 {
            // The tombstone replaces the item, which reports its HOT copy.
            self.tombstone(key, floor, now);
        } else {
            self.remove(id, key.hash, now);
        }
    }

    /// `flush_all [delay]`.
    pub fn flush_all(&mut self, delay: i32, now: u32) {
        self.stats.cmd_flush += 1;
        self.apply_flush(delay, now);
    }

    /// The effect of `flush_all` without counting a command (another shard took it).
    pub fn apply_flush(&mut self, delay: i32, now: u32) {
        let new_oldest = if delay > 0 { realtime(delay, now) } else { now };
        self.flush(new_oldest.wrapping_sub(1), now);
    }

    /// A read-only view of a linked item.
    pub fn view(&self, id: ItemId) -> ItemView<'_> {
        let chunk = self.slabs.chunk(id);
        ItemView {
            header: Header::read(chunk),
            key: item::key(chunk),
            value: item::value(chunk),
        }
    }
}

/// A linked item as commands see it.
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    pub header: Header,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// Counts a write refused as too large (the parser refused it; the store keeps the stat).
    pub fn note_too_large(&mut self) {
        self.stats.store_too_large += 1;
    }
}
