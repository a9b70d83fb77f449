//! Slab memory and the key index: where items live, how space is found, and what gets evicted.
//!
//! ```text
//!  arena (memory the caller hands in)                                   tail
//!  +------------+------------+------------+------------+-- .. --+------------+------+
//!  | page 0     | page 1     | page 2     | page 3     |        | page n-1   |unused|
//!  | class 7    | class 0    | class 7    | fresh      |        | fresh      |      |
//!  +------------+------------+------------+------------+-- .. --+------------+------+
//!
//!  one page of class c: floor(page_size / size_c) chunks from the page start, then slack
//!  +---------+---------+---------+---------+---------+---------+-------+
//!  | item    | free    | item    | item    | unused  | unused  | slack |
//!  +---------+---------+---------+---------+---------+---------+-------+
//!                                          ^ bump: the class's newest page only
//!
//!  free chunk:  bytes 0..24 stale | klen = 0 | 25..28 stale | next free ItemId, u32 LE | ...
//!               (u32::MAX ends the list)       byte 24                      bytes 28..32
//! ```
//!
//! - An [`ItemId`] is the chunk's byte offset divided by 8, so a `u32` reaches 32 GiB; pages past
//!   that are left unused.
//! - Item memory only ever comes from the arena; the heap holds the page table, each class's page
//!   list and counters, and the index (`index.rs`).
//! - A page handed to a class is not written: the class's bump cursor walks its newest page, and
//!   everything past the cursor counts as never used, so walkers stop there and stale bytes from
//!   the page's previous owner are never read as items.
//! - Each class has its own CLOCK hand (`clock.rs`); pages move between classes on starvation,
//!   `slabs reassign` and [`Slabs::rebalance`] (`pages.rs`).
//!
//! At most one allocation may be outstanding (allocated but neither linked, replaced into place
//! nor freed) when `alloc`, `reassign` or `rebalance` runs: a page move would take its chunk.

mod classes;
mod clock;
mod index;
#[cfg(test)]
mod model;
mod pages;

use std::fmt;

use self::{
    classes::{Class, NO_CLASS},
    index::Index,
};
use super::item::{self, Header};

/// Location of an item: its chunk's byte offset in the arena divided by 8.
pub type ItemId = u32;

/// Ends a free list.
const NIL: ItemId = u32::MAX;

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
pub struct Slabs<B> {
    mem: B,
    page_size: usize,
    /// `page_size / 8`: the page of an id is `id / page_words`.
    page_words: u32,
    /// Chunk size of each page's class (0 while no class owns it), read by `chunk` on every hit.
    page_chunk: Vec<u32>,
    /// Owning class of each page, or `NO_CLASS`.
    page_class: Vec<u8>,
    /// Pages below this have been given to some class; the rest are fresh.
    fresh: u32,
    sizes: Vec<u32>,
    classes: Vec<Class>,
    index: Index,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Slabs<B> {
    /// Cuts `mem` into pages and computes the classes. Never allocates item memory outside `mem`.
    pub fn new(mem: B, cfg: SlabConfig) -> Result<Self, SlabError> {
        let sizes = classes::chunk_sizes(&cfg)?;
        let len = mem.as_ref().len();
        // Ids are offsets / 8 in a u32 (u32::MAX reserved for NIL): cap the arena at 32 GiB.
        let reachable = u64::from(NIL) * 8 / cfg.page_size as u64;
        let pages = (len / cfg.page_size).min(reachable as usize);
        if pages == 0 {
            return Err(SlabError::ArenaTooSmall(len));
        }
        Ok(Slabs {
            mem,
            page_size: cfg.page_size,
            page_words: (cfg.page_size / 8) as u32,
            page_chunk: vec![0; pages],
            page_class: vec![NO_CLASS; pages],
            fresh: 0,
            classes: sizes
                .iter()
                .map(|&size| Class::new(size, cfg.page_size))
                .collect(),
            sizes,
            index: Index::with_capacity(cfg.index_capacity),
        })
    }

    /// Chunk size of every class, smallest first. Class ids are indexes into this list.
    pub fn class_sizes(&self) -> &[u32] {
        &self.sizes
    }

    /// The class id that fits an item of `len` bytes, or `None` if larger than a page.
    pub fn class_for(&self, len: usize) -> Option<u8> {
        let class = self.sizes.partition_point(|&size| (size as usize) < len);
        // At most 255 classes, so an in-range index fits a u8.
        (class < self.sizes.len()).then_some(class as u8)
    }

    /// Looks `key` up. `hash` is `crate::bucket::khash(key)`.
    #[inline]
    pub fn find(&self, key: &[u8], hash: u64) -> Option<ItemId> {
        self.index.find(self.mem.as_ref(), key, hash)
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
        let class = self.class_for(len).ok_or(AllocError::TooLarge)?;
        self.alloc_in(class as usize, dead, on_remove)
    }

    /// Puts an allocated, fully written item into the index. The key must not be present.
    pub fn link(&mut self, id: ItemId, hash: u64) {
        self.index.insert(self.mem.as_ref(), id, hash);
    }

    /// Swaps `new` into the index in place of `old` (same key) and frees `old`'s chunk.
    pub fn replace(&mut self, old: ItemId, new: ItemId, hash: u64) {
        self.index.replace(self.mem.as_ref(), old, new, hash);
        self.free(old);
    }

    /// Removes a linked item from the index and frees its chunk.
    pub fn unlink(&mut self, id: ItemId, hash: u64) {
        self.index.remove(id, hash);
        self.free(id);
    }

    /// Frees a chunk that was allocated but never linked.
    pub fn free(&mut self, id: ItemId) {
        let Some(&class) = self.page_class.get((id / self.page_words) as usize) else {
            return;
        };
        let Some(c) = self.classes.get_mut(class as usize) else {
            return;
        };
        // Saturating: a chunk whose page moved while it was outstanding is not counted twice.
        c.used = c.used.saturating_sub(1);
        self.push_free(class as usize, id);
    }

    /// The whole chunk of `id` (its class's chunk size), starting at the header.
    #[inline]
    pub fn chunk(&self, id: ItemId) -> &[u8] {
        let (start, end) = self.span(id);
        self.mem.as_ref().get(start..end).unwrap_or_default()
    }

    /// The whole chunk of `id`, mutable.
    #[inline]
    pub fn chunk_mut(&mut self, id: ItemId) -> &mut [u8] {
        let (start, end) = self.span(id);
        self.mem.as_mut().get_mut(start..end).unwrap_or_default()
    }

    /// Moves one page from `src` to `dst` (memcached's `slabs reassign`): every item on it is
    /// removed (shown to `on_remove` as [`Removal::PageMoved`]).
    pub fn reassign(
        &mut self,
        src: u8,
        dst: u8,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Result<(), &'static str> {
        self.reassign_page(src, dst, on_remove)
    }

    /// One step of automatic balancing, meant to be called about once a second: if some class
    /// evicted since the last call while another evicted nothing and owns more than one page,
    /// move one page from the idle class with the most pages to the class that evicted most.
    /// Returns the `(src, dst)` moved, if any.
    pub fn rebalance(&mut self, on_remove: &mut dyn FnMut(Removal, &[u8])) -> Option<(u8, u8)> {
        self.rebalance_step(on_remove)
    }

    /// Per-class figures, indexed by class id.
    pub fn class_stats(&self) -> Vec<ClassStats> {
        self.classes
            .iter()
            .map(|c| {
                let pages = c.pages.len() as u32;
                ClassStats {
                    chunk_size: c.size,
                    chunks_per_page: c.per_page,
                    pages,
                    used_chunks: c.used,
                    // The free list plus the bump page's never-used tail.
                    free_chunks: (u64::from(pages) * u64::from(c.per_page)).saturating_sub(c.used),
                    evictions: c.evictions,
                    reclaimed: c.reclaimed,
                    pages_moved_out: c.moved_out,
                }
            })
            .collect()
    }

    /// Number of linked items.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Arena size in bytes.
    pub fn arena_bytes(&self) -> usize {
        self.mem.as_ref().len()
    }

    /// Heap bytes held by the index (for memory accounting).
    pub fn index_bytes(&self) -> usize {
        self.index.bytes()
    }

    /// Visits every linked item (for `flush_all` sweeps and tests); order unspecified.
    pub fn for_each(&self, f: &mut dyn FnMut(ItemId, &[u8])) {
        let mem = self.mem.as_ref();
        for (class, c) in self.classes.iter().enumerate() {
            for slot in 0..c.pages.len() {
                let (start, limit) = self.walk_bounds(class, slot);
                let size = c.size as usize;
                for at in (start..).step_by(size).take(limit as usize) {
                    let chunk = &mem[at..at + size];
                    if item::read_klen(chunk) != 0 {
                        f((at / 8) as ItemId, chunk);
                    }
                }
            }
        }
    }

    /// Byte range of the chunk `id`; empty for an id on a page no class owns.
    #[inline]
    fn span(&self, id: ItemId) -> (usize, usize) {
        let size = self
            .page_chunk
            .get((id / self.page_words) as usize)
            .copied()
            .unwrap_or(0);
        let start = id as usize * 8;
        (start, start + size as usize)
    }

    /// Byte offset of the page in `slot` of `class`, and how many of its chunks have ever been
    /// handed out (all of them except on the bump page).
    fn walk_bounds(&self, class: usize, slot: usize) -> (usize, u32) {
        let c = &self.classes[class];
        let start = c.pages[slot] as usize * self.page_size;
        let limit = if slot + 1 == c.pages.len() {
            c.bump
        } else {
            c.per_page
        };
        (start, limit)
    }
}

impl<B> fmt::Debug for Slabs<B> {
    // The arena itself is far too big to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slabs")
            .field("page_size", &self.page_size)
            .field("pages", &self.page_class.len())
            .field("fresh", &self.fresh)
            .field("classes", &self.sizes.len())
            .field("items", &self.index.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{model::*, *};
    use crate::bucket::khash;

    #[test]
    fn alloc_link_find_unlink() -> TestResult {
        let mut s = tiny(4)?;
        let mut log = Log::new();
        let id = put(&mut s, b"alpha", 20, 0, 0, &mut log)?;
        // The item's chunk is its class's whole chunk and holds what was written.
        assert_eq!(s.chunk(id).len(), 64);
        assert_eq!(item::key(s.chunk(id)), b"alpha");
        assert_eq!(s.find(b"alpha", khash(b"alpha")), Some(id));
        assert_eq!(s.find(b"alphb", khash(b"alphb")), None);
        assert_eq!((s.len(), s.class_stats()[1].used_chunks), (1, 1));
        // A fresh allocation reads as free until the caller writes it.
        let spare = s.alloc(40, &never, &mut |_, _| {})?;
        assert_eq!(item::read_klen(s.chunk(spare)), 0);
        s.free(spare);
        s.unlink(id, khash(b"alpha"));
        assert_eq!(s.find(b"alpha", khash(b"alpha")), None);
        assert!(s.is_empty());
        assert_eq!(s.class_stats()[1].used_chunks, 0);
        assert_eq!(s.class_stats()[1].free_chunks, 1024);
        // Nothing was evicted on the way.
        assert!(log.is_empty());
        Ok(())
    }

    #[test]
    fn replace_swaps_and_frees() -> TestResult {
        let mut s = tiny(4)?;
        let mut log = Log::new();
        let old = put(&mut s, b"k", 10, 0, 0, &mut log)?;
        // A bigger value moves the key to another class and frees the old chunk.
        let new = put(&mut s, b"k", 100, 0, 0, &mut log)?;
        assert_ne!(old, new);
        assert_eq!(s.find(b"k", khash(b"k")), Some(new));
        assert_eq!(s.chunk(new).len(), 256);
        assert_eq!(s.len(), 1);
        let stats = s.class_stats();
        assert_eq!((stats[1].used_chunks, stats[3].used_chunks), (0, 1));
        Ok(())
    }

    #[test]
    fn free_list_reuse() -> TestResult {
        let mut s = tiny(4)?;
        let mut log = Log::new();
        let a = s.alloc(40, &never, &mut |_, _| {})?;
        let b = put(&mut s, b"b", 8, 0, 0, &mut log)?;
        // A freed chunk is the next one handed out, ahead of the page's unused rest.
        s.free(a);
        assert_eq!(s.alloc(40, &never, &mut |_, _| {})?, a);
        // An unlinked item's chunk likewise, most recently freed first.
        s.unlink(b, khash(b"b"));
        s.free(a);
        assert_eq!(s.alloc(40, &never, &mut |_, _| {})?, a);
        assert_eq!(s.alloc(40, &never, &mut |_, _| {})?, b);
        // Then the bump cursor carries on after b.
        assert_eq!(s.alloc(40, &never, &mut |_, _| {})?, b + 8);
        Ok(())
    }

    #[test]
    fn too_large() -> TestResult {
        let mut s = tiny(1)?;
        let cases = [
            // One byte over a page.
            (64 * 1024 + 1, Err(AllocError::TooLarge)),
            // A whole page fits, alone in the page class.
            (64 * 1024, Ok(0)),
        ];
        for (len, want) in cases {
            assert_eq!(s.alloc(len, &never, &mut |_, _| {}), want, "len {len}");
        }
        Ok(())
    }

    #[test]
    fn chunk_of_a_page_nobody_owns_is_empty() -> TestResult {
        let s = tiny(2)?;
        // Page 1 is still fresh, so no class says how big its chunks are.
        assert!(s.chunk(64 * 1024 / 8).is_empty());
        Ok(())
    }
}
