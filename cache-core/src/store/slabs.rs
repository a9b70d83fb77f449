//! Slab memory and the key index: where items live, how space is found, and what gets evicted.
//!
//! INTERFACE PINNED — implementation to be filled in (see the doc comment on each item).

use super::item::Header;

/// Location of an item: its chunk's byte offset in the arena divided by 8.
pub type ItemId = u32;

/// Memory layout settings.
#[derive(Debug, Clone)]
pub struct SlabConfig {
    /// Page size in bytes (1 MiB by default). The arena is cut into whole pages; a page belongs to
    /// one class at a time and can move between classes.
    pub page_size: usize,
    /// Smallest chunk size (bytes, multiple of 8).
    pub min_chunk: usize,
    /// Each class's chunk is `max(prev + 8, round_up_8(prev * growth_factor))`; the last class is
    /// exactly one page.
    pub growth_factor: f64,
    /// Initial capacity of the key index (entries); it may grow past this.
    pub index_capacity: usize,
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("item larger than a page")]
    TooLarge,
    #[error("no memory could be freed for this size")]
    OutOfMemory,
}

/// Why the arena could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    #[error("arena of {0} bytes is smaller than one page")]
    ArenaTooSmall(usize),
    #[error("bad slab config: {0}")]
    BadConfig(&'static str),
}

/// Why an item left memory without a client asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Evicted by the CLOCK hand to make room.
    Evicted,
    /// Reclaimed because the `dead` predicate said it was expired or flushed.
    Reclaimed,
    /// Dropped because its page moved to another class.
    PageMoved,
}

/// Per-class figures for `stats slabs` / `stats items`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub chunk_size: u32,
    pub chunks_per_page: u32,
    pub pages: u32,
    pub used_chunks: u64,
    pub free_chunks: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    /// Pages taken from this class by [`Slabs::rebalance`] / starvation.
    pub pages_moved_out: u64,
}

/// The arena, its slab classes and the hashbrown index from key to [`ItemId`].
#[derive(Debug)]
pub struct Slabs<B> {
    _mem: B,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Slabs<B> {
    /// Cuts `mem` into pages and computes the classes. Never allocates item memory outside `mem`.
    pub fn new(mem: B, cfg: SlabConfig) -> Result<Self, SlabError> {
        let _ = cfg;
        Ok(Slabs { _mem: mem })
    }

    /// Chunk size of every class, smallest first. Class ids are indexes into this list.
    pub fn class_sizes(&self) -> &[u32] {
        &[]
    }

    /// The class id that fits an item of `len` bytes, or `None` if larger than a page.
    pub fn class_for(&self, len: usize) -> Option<u8> {
        let _ = len;
        None
    }

    /// Looks `key` up. `hash` is `crate::bucket::khash(key)`.
    pub fn find(&self, key: &[u8], hash: u64) -> Option<ItemId> {
        let _ = (key, hash);
        None
    }

    /// Finds a free chunk that holds `len` bytes. Order: the class's free list, untouched space of
    /// its newest page, a never-used page, a page taken from another class if this class owns no
    /// page at all, then the CLOCK hand over this class's chunks: a chunk whose item is `dead`
    /// is reclaimed at once, one with `ITEM_REF` set has the bit cleared and is passed over, the
    /// first other one is evicted (at most two turns of the hand). Every item removed on the way
    /// is unlinked from the index and shown to `on_remove` while its bytes are still intact.
    ///
    /// The returned chunk is not linked; its `klen` is still 0. The caller writes the header and
    /// key, then calls [`Slabs::link`], [`Slabs::replace`] or [`Slabs::free`].
    pub fn alloc(
        &mut self,
        len: usize,
        dead: &dyn Fn(&Header) -> bool,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Result<ItemId, AllocError> {
        let _ = (len, dead, on_remove);
        Err(AllocError::OutOfMemory)
    }

    /// Puts an allocated, fully written item into the index. The key must not be present.
    pub fn link(&mut self, id: ItemId, hash: u64) {
        let _ = (id, hash);
    }

    /// Swaps `new` into the index in place of `old` (same key) and frees `old`'s chunk.
    pub fn replace(&mut self, old: ItemId, new: ItemId, hash: u64) {
        let _ = (old, new, hash);
    }

    /// Removes a linked item from the index and frees its chunk.
    pub fn unlink(&mut self, id: ItemId, hash: u64) {
        let _ = (id, hash);
    }

    /// Frees a chunk that was allocated but never linked.
    pub fn free(&mut self, id: ItemId) {
        let _ = id;
    }

    /// The whole chunk of `id` (its class's chunk size), starting at the header.
    pub fn chunk(&self, id: ItemId) -> &[u8] {
        let _ = id;
        &[]
    }

    /// The whole chunk of `id`, mutable.
    pub fn chunk_mut(&mut self, id: ItemId) -> &mut [u8] {
        let _ = id;
        &mut []
    }

    /// Moves one page from `src` to `dst` (memcached's `slabs reassign`): every item on it is
    /// removed (shown to `on_remove` as [`Removal::PageMoved`]).
    pub fn reassign(
        &mut self,
        src: u8,
        dst: u8,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Result<(), &'static str> {
        let _ = (src, dst, on_remove);
        Err("unimplemented")
    }

    /// One step of automatic balancing, meant to be called about once a second: if some class
    /// evicted since the last call while another evicted nothing and owns more than one page,
    /// move one page from the idle class with the most pages to the class that evicted most.
    /// Returns the `(src, dst)` moved, if any.
    pub fn rebalance(&mut self, on_remove: &mut dyn FnMut(Removal, &[u8])) -> Option<(u8, u8)> {
        let _ = on_remove;
        None
    }

    /// Per-class figures, indexed by class id.
    pub fn class_stats(&self) -> Vec<ClassStats> {
        Vec::new()
    }

    /// Number of linked items.
    pub fn len(&self) -> usize {
        0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Arena size in bytes.
    pub fn arena_bytes(&self) -> usize {
        0
    }

    /// Heap bytes held by the index (for memory accounting).
    pub fn index_bytes(&self) -> usize {
        0
    }

    /// Visits every linked item (for `flush_all` sweeps and tests); order unspecified.
    pub fn for_each(&self, f: &mut dyn FnMut(ItemId, &[u8])) {
        let _ = f;
    }
}
