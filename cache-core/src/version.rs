//! Versions: why an old fill can never overwrite a newer write.
//!
//! # The rule
//!
//! Every item has a version, which is its CAS: the store's counter for ordinary writes, or a
//! number the client supplies with the meta `E<version>` flag (a database row version, a
//! replication LSN, a commit timestamp: anything that grows when the source of truth changes).
//!
//! For each key the store remembers a **floor**: the highest client-supplied version it has seen
//! for that key, through writes and deletes alike. Then:
//!
//! 1. A write that carries `E<v>` with `v < floor` is refused (`NS` / `NOT_STORED`).
//! 2. A write without `E` is always accepted (plain `set` keeps working) and carries the floor
//!    forward, so rule 1 still holds after it.
//! 3. A delete that carries `E<v>` (an invalidation) raises the floor to `v` and leaves a
//!    **tombstone**: an invisible item that holds the floor for a configurable window
//!    ([`crate::store::StoreConfig::tombstone_secs`]). Any delete of an item with a floor does
//!    the same, so the floor outlives the value.
//! 4. When a tombstone or an item with a floor leaves memory early (evicted, expired, its page
//!    moved) its floor goes into a [`FloorFilter`]: a small fixed table indexed by key hash that
//!    keeps the highest floor per slot until the window ends. A versioned write on a key the
//!    store does not hold checks that slot. A collision can only raise a floor, so it can cause a
//!    needless refusal (one more cache miss) but never admit a stale value.
//!
//! # The race this closes (the x=42 / x=43 example in Meta's consistency article)
//!
//! A reader misses `x`, reads `x=42` (version 42) from the database and is slow to fill. Meanwhile
//! a writer commits `x=43` (version 43) and the invalidation `md x E43` reaches the cache first.
//! Without versions the late `ms x … E42` would install 42 forever (or until the TTL). Here the
//! invalidation left a tombstone with floor 43, so the fill is refused by rule 1 and the next
//! reader fills 43. If the invalidation arrives as a write (`ms x … E43`), the item itself holds
//! the floor and the same rule applies.
//!
//! Leases ([`crate::lease`]) close the other half: an unversioned fill must present the lease
//! token, which any delete or newer write voids.

/// A fixed-size, lossy memory of floors whose tombstones left early.
#[derive(Debug, Clone)]
pub struct FloorFilter {
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    floor: u64,
    until: u32,
}

impl FloorFilter {
    /// A filter of `slots` entries (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> FloorFilter {
        FloorFilter {
            slots: vec![Slot::default(); slots.max(1).next_power_of_two()],
        }
    }

    fn slot(&self, hash: u64) -> usize {
        // The low bits: the index uses the high ones, the vbucket the top 14.
        (hash as usize) & (self.slots.len() - 1)
    }

    /// Remembers `floor` for the key with `hash` until `until` (Unix seconds).
    pub fn record(&mut self, hash: u64, floor: u64, until: u32, now: u32) {
        let i = self.slot(hash);
        let s = &mut self.slots[i];
        if s.until <= now {
            *s = Slot { floor, until };
        } else {
            s.floor = s.floor.max(floor);
            s.until = s.until.max(until);
        }
    }

    /// The floor still in force for `hash`, or 0.
    pub fn floor(&self, hash: u64, now: u32) -> u64 {
        let s = self.slots[self.slot(hash)];
        if s.until > now {
            s.floor
        } else {
            0
        }
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }
}

/// Rule 1: may a write carrying `version` replace a key whose floor is `floor`?
pub fn admits(version: Option<u64>, floor: u64) -> bool {
    match version {
        Some(v) => v >= floor,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission() {
        // (version carried, floor, admitted)
        let cases = [
            (None, 0, true),       // unversioned, no floor
            (None, 43, true),      // unversioned writes always land (rule 2)
            (Some(42), 43, false), // older than the floor: the stale fill
            (Some(43), 43, true),  // the same version: idempotent refill
            (Some(44), 43, true),  // newer
        ];
        for (v, f, want) in cases {
            assert_eq!(admits(v, f), want, "{v:?} vs {f}");
        }
    }

    #[test]
    fn filter_keeps_the_highest_floor_until_the_window_ends() {
        let mut f = FloorFilter::new(8);
        f.record(5, 43, 110, 100);
        f.record(5 + 8, 40, 105, 100); // same slot, lower floor: the floor stays 43
        assert_eq!(f.floor(5, 100), 43);
        assert_eq!(f.floor(13, 104), 43); // the collision sees it too (safe direction)
        assert_eq!(f.floor(5, 110), 0); // window over
        f.record(5, 7, 200, 150); // an expired slot is overwritten, not maxed
        assert_eq!(f.floor(5, 150), 7);
        assert_eq!(f.floor(6, 150), 0); // other slots untouched
    }
}
