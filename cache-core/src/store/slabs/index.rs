//! The key index: a hashbrown table of [`ItemId`]s whose keys live in the arena.
//!
//! A bucket holds only the 4-byte id (plus hashbrown's control byte). Lookups compare the key
//! bytes in the item's chunk; the hash is not stored, so when the table grows it is recomputed
//! from those bytes with [`khash`], the same hash the caller passes in.

use hashbrown::HashTable;

use super::ItemId;
use crate::{bucket::khash, store::item};

#[derive(Debug)]
pub(super) struct Index {
    table: HashTable<ItemId>,
}

impl Index {
    pub(super) fn with_capacity(capacity: usize) -> Index {
        Index {
            table: HashTable::with_capacity(capacity),
        }
    }

    /// The id whose key equals `key`.
    #[inline]
    pub(super) fn find(&self, mem: &[u8], key: &[u8], hash: u64) -> Option<ItemId> {
        self.table.find(hash, |&id| key_at(mem, id) == key).copied()
    }

    /// Adds `id`, whose key is already written in `mem` and not yet in the table.
    pub(super) fn insert(&mut self, mem: &[u8], id: ItemId, hash: u64) {
        self.table
            .insert_unique(hash, id, |&other| khash(key_at(mem, other)));
    }

    /// Drops `id`; false if it was not there (an allocated chunk not linked yet).
    pub(super) fn remove(&mut self, id: ItemId, hash: u64) -> bool {
        // Matching on the id rather than the key needs no arena reads and cannot hit another item.
        match self.table.find_entry(hash, |&other| other == id) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Points the entry of `old` at `new` (same key); adds `new` if `old` was not there.
    pub(super) fn replace(&mut self, mem: &[u8], old: ItemId, new: ItemId, hash: u64) {
        match self.table.find_mut(hash, |&other| other == old) {
            Some(slot) => *slot = new,
            None => self.insert(mem, new, hash),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Heap bytes of the table: buckets, control bytes and hashbrown's group padding.
    pub(super) fn bytes(&self) -> usize {
        self.table.allocation_size()
    }
}

/// The key of the item at `id`. Ids in the table always name chunks inside the arena.
#[inline]
fn key_at(mem: &[u8], id: ItemId) -> &[u8] {
    item::key(&mem[id as usize * 8..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::item::{Header, HEADER_LEN};

    /// An arena of 64-byte chunks holding `keys` in order; chunk i has id i * 8.
    fn arena(keys: &[&[u8]]) -> Vec<u8> {
        let mut mem = vec![0u8; keys.len() * 64];
        for (i, k) in keys.iter().enumerate() {
            let chunk = &mut mem[i * 64..(i + 1) * 64];
            Header {
                klen: k.len() as u8,
                ..Header::default()
            }
            .write(chunk);
            chunk[HEADER_LEN..HEADER_LEN + k.len()].copy_from_slice(k);
        }
        mem
    }

    #[test]
    fn find_insert_remove_replace() {
        let mem = arena(&[b"a", b"bb", b"a"]);
        let mut ix = Index::with_capacity(0);
        ix.insert(&mem, 0, khash(b"a"));
        ix.insert(&mem, 8, khash(b"bb"));
        let cases: [(&[u8], Option<ItemId>); 3] = [
            // A key present in the table.
            (b"a", Some(0)),
            // Another key present.
            (b"bb", Some(8)),
            // A prefix of a present key is a different key.
            (b"b", None),
        ];
        for (key, want) in cases {
            assert_eq!(ix.find(&mem, key, khash(key)), want, "{key:?}");
        }
        // Replacing moves the key to the second copy of "a".
        ix.replace(&mem, 0, 16, khash(b"a"));
        assert_eq!(ix.find(&mem, b"a", khash(b"a")), Some(16));
        // Removing by the stale id finds nothing; by the live id it goes.
        assert!(!ix.remove(0, khash(b"a")));
        assert!(ix.remove(16, khash(b"a")));
        assert_eq!(ix.find(&mem, b"a", khash(b"a")), None);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn growth_rehashes_from_the_arena() {
        let keys: Vec<Vec<u8>> = (0..5000).map(|i| format!("key:{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mem = arena(&refs);
        let mut ix = Index::with_capacity(4);
        let small = ix.bytes();
        for (i, k) in refs.iter().enumerate() {
            ix.insert(&mem, i as ItemId * 8, khash(k));
        }
        // Every key is still found after many resizes, and the table reports its growth.
        for (i, k) in refs.iter().enumerate() {
            assert_eq!(ix.find(&mem, k, khash(k)), Some(i as ItemId * 8));
        }
        assert!(ix.bytes() > small + 5000 * 4);
    }
}
