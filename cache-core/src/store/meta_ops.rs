//! Meta commands and leases (memcached's `process_mget_command`, `process_mdelete_command`,
//! `process_marithmetic_command`) and mcrouter's `lease-get`/`lease-set` on the same mechanism.

use super::{
    item::{self, Header, ITEM_KEY_BINARY, ITEM_PLACEHOLDER, ITEM_STALE, ITEM_TOKEN_SENT},
    ops::{realtime, ArithOutcome, Mode, StoreOutcome, Write},
    shard::{item_floor, Key, Meta},
    slabs::ItemId,
    Store,
};
use crate::lease::{self, Grant};

/// What `mg` needs from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaGetArgs {
    /// `N<ttl>` (raw wire value).
    pub vivify: Option<i32>,
    /// `T<ttl>`.
    pub ttl: Option<i32>,
    /// `R<ttl>`.
    pub recache: Option<i32>,
    /// `u`: no LRU bump, no access marks.
    pub no_bump: bool,
    /// `E<version>`: CAS of a placeholder made by `N`.
    pub version: Option<u64>,
    pub key_binary: bool,
    /// `T` comes after `N` in the request: on a placeholder just made, the later one wins.
    pub ttl_after_vivify: bool,
}

/// An `mg` hit (possibly a placeholder it just created).
#[derive(Debug, Clone, Copy)]
pub struct MetaGetHit {
    pub id: ItemId,
    pub created: bool,
    pub grant: Grant,
    /// `h` and `l` report the item as it was before this request.
    pub fetched_before: bool,
    pub atime_before: u32,
    /// Exptime before `T`/`N` applied (the reply's `t` depends on flag order).
    pub exptime_before: u32,
}

/// How `md` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    Exists,
}

/// What `md` needs from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaDeleteArgs {
    pub cas: Option<u64>,
    /// `I`: mark stale instead of removing.
    pub invalidate: bool,
    /// `T<ttl>` with `I`.
    pub ttl: Option<i32>,
    /// `E<version>`: a versioned invalidation.
    pub version: Option<u64>,
    /// `x`: drop the value but keep the item.
    pub drop_value: bool,
}

/// How `lease-get` answered one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseGet {
    Hit(ItemId),
    /// The caller holds the lease: fill with this token. The item is the placeholder, or the
    /// stale item whose value may be served meanwhile.
    Lease(u64, ItemId),
    /// Another caller holds the lease.
    Hot,
    /// No memory for a placeholder: a plain miss.
    Miss,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// `mg`.
    pub fn meta_get(&mut self, key: Key<'_>, a: MetaGetArgs, now: u32) -> Option<MetaGetHit> {
        let ttl_set = a.ttl.is_some();
        let (live, mut found) = self.lookup(key, now);
        let mut created = false;
        if found.is_none() && a.vivify.is_some() {
            let floor = self.floor_of(live, key, now);
            let binary = if a.key_binary { ITEM_KEY_BINARY } else { 0 };
            // memcached links the stub with no TTL and sets N's TTL while replying.
            let m = Meta {
                exptime: 0,
                version: a.version.filter(|&v| v >= floor),
                iflag: ITEM_PLACEHOLDER | binary,
                floor,
                ..Meta::default()
            };
            if let Ok(id) = self.put(key, &[], &[], m, now) {
                found = Some(id);
                created = true;
            }
        }
        let Some(id) = found else {
            self.count_get(ttl_set, false);
            return None;
        };
        let h = Header::read(self.slabs.chunk(id));
        // memcached applies T and N in the order the flags came.
        let mut exptime = h.exptime;
        let ttl = a.ttl.map(|t| realtime(t, now));
        let viv = a.vivify.filter(|_| created).map(|n| realtime(n, now));
        let order = if a.ttl_after_vivify {
            [viv, ttl]
        } else {
            [ttl, viv]
        };
        for e in order.into_iter().flatten() {
            exptime = e;
        }
        let grant = lease::decide(
            h.iflag,
            created,
            exptime,
            a.recache.map(|r| realtime(r, now)),
        );
        if exptime != h.exptime {
            self.set_exptime(id, exptime);
        }
        if grant.won {
            self.stats.lease_grants += 1;
            let chunk = self.slabs.chunk_mut(id);
            item::write_iflag(chunk, item::read_iflag(chunk) | ITEM_TOKEN_SENT);
        } else if grant.held {
            self.stats.lease_hot_misses += 1;
        }
        if !a.no_bump {
            self.bump(id, now);
        }
        self.count_get(ttl_set, true);
        if !created {
            self.log_hit(id, key);
        }
        Some(MetaGetHit {
            id,
            created,
            grant,
            fetched_before: h.has(item::ITEM_FETCHED),
            atime_before: h.atime,
            exptime_before: if created { 0 } else { h.exptime },
        })
    }

    fn count_get(&mut self, ttl_set: bool, hit: bool) {
        if ttl_set {
            self.stats.cmd_touch += 1;
            if hit {
                self.stats.touch_hits += 1;
            } else {
                self.stats.touch_misses += 1;
            }
        } else {
            self.stats.cmd_get += 1;
            if hit {
                self.stats.get_hits += 1;
            } else {
                self.stats.get_misses += 1;
            }
        }
    }

    /// `md`.
    pub fn meta_delete(&mut self, key: Key<'_>, a: MetaDeleteArgs, now: u32) -> DeleteOutcome {
        let (live, found) = self.lookup(key, now);
        let Some(id) = found else {
            self.stats.delete_misses += 1;
            // A versioned invalidation of a key we do not hold still raises its floor.
            if let Some(v) = a.version {
                let floor = self.floor_of(live, key, now).max(v);
                self.tombstone(key, floor, now);
            }
            return DeleteOutcome::NotFound;
        };
        let h = Header::read(self.slabs.chunk(id));
        if a.cas.is_some_and(|c| c != h.cas) {
            self.stats.delete_misses += 1;
            return DeleteOutcome::Exists;
        }
        if a.invalidate && !a.drop_value && self.can_restamp(id, a.version) {
            self.mark_stale(id, a, now);
            return DeleteOutcome::Deleted;
        }
        if a.invalidate || a.drop_value {
            // Replacing the item below reports its HOT copy.
            let floor = item_floor(self.slabs.chunk(id)).max(a.version.unwrap_or(0));
            let mut exptime = h.exptime;
            if let (true, Some(t)) = (a.invalidate, a.ttl) {
                exptime = realtime(t, now);
            }
            let mut iflag = h.iflag & (ITEM_KEY_BINARY | ITEM_STALE | ITEM_TOKEN_SENT);
            if a.invalidate {
                // Stale, with a new CAS, and the next reader may win the recache token.
                iflag = (iflag | ITEM_STALE) & !ITEM_TOKEN_SENT;
            }
            let m = Meta {
                flags: h.flags,
                exptime,
                version: a.version,
                iflag,
                floor,
            };
            let mut value = std::mem::take(&mut self.scratch);
            value.clear();
            if !a.drop_value {
                value.extend_from_slice(item::value(self.slabs.chunk(id)));
            }
            let stored = self.put(key, &value, &[], m, now);
            self.scratch = value;
            if stored.is_err() {
                self.delete_item(id, key, a.version, now);
            }
            return DeleteOutcome::Deleted;
        }
        self.stats.delete_hits += 1;
        self.delete_item(id, key, a.version, now);
        DeleteOutcome::Deleted
    }

    /// Whether `id` can take a new CAS in place without losing its version floor.
    fn can_restamp(&self, id: ItemId, version: Option<u64>) -> bool {
        let chunk = self.slabs.chunk(id);
        let trailer = item::floor(chunk).unwrap_or(0);
        version.unwrap_or(0).max(trailer) >= item_floor(chunk)
    }

    /// `md … I` as memcached does it: the same item, marked stale, with a new CAS (or the
    /// invalidation's version), its token released and optionally a new TTL.
    fn mark_stale(&mut self, id: ItemId, a: MetaDeleteArgs, now: u32) {
        self.note_change(id);
        let cas = match a.version {
            Some(v) => v,
            None => self.next_cas(),
        };
        let chunk = self.slabs.chunk_mut(id);
        let mut f = (item::read_iflag(chunk) | ITEM_STALE) & !ITEM_TOKEN_SENT;
        f = if a.version.is_some() {
            f | item::ITEM_EXT_VERSION
        } else {
            f & !item::ITEM_EXT_VERSION
        };
        item::write_iflag(chunk, f);
        item::write_cas(chunk, cas);
        if let Some(t) = a.ttl {
            item::write_exptime(chunk, realtime(t, now));
        }
    }

    /// `ma`: arithmetic, creating the item from `initial` on a miss when `vivify` is given.
    /// Returns the outcome and whether the item was created.
    #[expect(clippy::too_many_arguments, reason = "one argument per ma flag")]
    pub fn meta_arith(
        &mut self,
        key: Key<'_>,
        incr: bool,
        delta: u64,
        cas: u64,
        vivify: Option<i32>,
        initial: u64,
        version: Option<u64>,
        now: u32,
    ) -> (ArithOutcome, bool) {
        match self.arith(key, incr, delta, cas, version, now) {
            ArithOutcome::NotFound if vivify.is_some() => {
                let mut digits = itoa::Buffer::new();
                let w = Write {
                    value: digits.format(initial).as_bytes(),
                    version,
                    ..Write::default()
                };
                match self.store(Mode::Add, key, w, now) {
                    (StoreOutcome::Stored, _) => match self.find_visible(key, now) {
                        Some(id) => (ArithOutcome::Value(initial, id), true),
                        None => (ArithOutcome::NoMemory, false),
                    },
                    (StoreOutcome::NoMemory, _) => (ArithOutcome::NoMemory, false),
                    _ => (ArithOutcome::NotFound, false),
                }
            }
            other => (other, false),
        }
    }

    /// One key of mcrouter's `lease-get`.
    pub fn lease_get(&mut self, key: Key<'_>, now: u32) -> LeaseGet {
        let lease_secs = self.cfg.lease_secs as i32;
        let a = MetaGetArgs {
            vivify: Some(lease_secs),
            ..MetaGetArgs::default()
        };
        let Some(hit) = self.meta_get(key, a, now) else {
            return LeaseGet::Miss;
        };
        let h = self.view(hit.id).header;
        let placeholder = h.has(ITEM_PLACEHOLDER);
        if hit.grant.won {
            return LeaseGet::Lease(h.cas, hit.id);
        }
        if hit.grant.held && (placeholder || hit.grant.stale) {
            return LeaseGet::Hot;
        }
        LeaseGet::Hit(hit.id)
    }

    /// mcrouter's `lease-set`: stores only if `token` is still the key's CAS.
    pub fn lease_set(&mut self, key: Key<'_>, token: u64, w: Write<'_>, now: u32) -> StoreOutcome {
        if token == 0 {
            return StoreOutcome::NotStored;
        }
        match self.store(Mode::Cas, key, Write { cas: token, ..w }, now).0 {
            StoreOutcome::Stored => StoreOutcome::Stored,
            StoreOutcome::NoMemory => StoreOutcome::NoMemory,
            _ => StoreOutcome::NotStored,
        }
    }

    /// The 1-based slab class holding `id`, as `me` reports it (`cls=`).
    pub fn class_of(&self, id: ItemId) -> u32 {
        let len = self.view(id).header.total_len();
        u32::from(self.slabs.class_for(len).unwrap_or(0)) + 1
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Store<B> {
    /// Looks `key` up without bumping it or counting a get (`me`, tests).
    pub fn peek(&mut self, key: Key<'_>, now: u32) -> Option<ItemId> {
        self.find_visible(key, now)
    }

    /// Sets an item's absolute exptime (meta `T`/`N` applied while replying).
    pub fn set_ttl(&mut self, id: ItemId, exptime: u32) {
        if self.view(id).header.exptime != exptime {
            self.set_exptime(id, exptime);
        }
    }
}
