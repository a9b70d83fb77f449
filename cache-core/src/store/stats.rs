//! Counters one store keeps; the engine sums them over shards for `stats`.

/// Per-store counters, named as in memcached's `stats` where one exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub cmd_get: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub cmd_set: u64,
    pub cmd_touch: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    pub cmd_flush: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub store_too_large: u64,
    pub store_no_memory: u64,
    pub evictions: u64,
    pub evicted_unfetched: u64,
    pub reclaimed: u64,
    pub slab_reassign_evictions: u64,
    pub curr_items: u64,
    pub total_items: u64,
    /// Bytes of live items (headers, keys, values), as memcached's `bytes`.
    pub bytes: u64,
    /// Tombstones holding version floors (not counted in `curr_items`).
    pub tombstones: u64,
    /// Lease/recache tokens handed out (`W`, `LVALUE`).
    pub lease_grants: u64,
    /// Callers told another holds the token (`Z`, `NOT_FOUND_HOT`).
    pub lease_hot_misses: u64,
    /// Versioned writes refused because a newer version was known (see [`crate::version`]).
    pub stale_fills_refused: u64,
    /// Heap bytes of the key index, as memcached's `hash_bytes` are its hash table's. A gauge:
    /// `Store::stats` reads it off the index, like `curr_items`; the store's own copy stays 0.
    pub hash_bytes: u64,
}

impl Stats {
    /// `stats reset`: zeroes the counters, keeps what describes the current contents.
    pub fn reset_counters(&mut self) {
        *self = Stats {
            bytes: self.bytes,
            tombstones: self.tombstones,
            ..Stats::default()
        };
    }

    /// Adds `other` into `self` (for summing shards).
    pub fn add(&mut self, o: &Stats) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        sum!(
            cmd_get,
            get_hits,
            get_misses,
            get_expired,
            get_flushed,
            cmd_set,
            cmd_touch,
            touch_hits,
            touch_misses,
            cmd_flush,
            delete_hits,
            delete_misses,
            incr_hits,
            incr_misses,
            decr_hits,
            decr_misses,
            cas_hits,
            cas_misses,
            cas_badval,
            store_too_large,
            store_no_memory,
            evictions,
            evicted_unfetched,
            reclaimed,
            slab_reassign_evictions,
            curr_items,
            total_items,
            bytes,
            tombstones,
            lease_grants,
            lease_hot_misses,
            stale_fills_refused,
            hash_bytes
        );
    }
}
