//! The allocation path: free list, bump cursor, fresh and stolen pages, then the CLOCK hand.
//!
//! The hand of a class walks every handed-out chunk of every page the class owns, in page-list
//! order, and wraps. Free chunks (klen 0) are skipped: the free list already serves them. An item
//! with `ITEM_REF` set gets a second chance; the bit is set again by the store when the item is
//! read, so only items left alone for a whole turn are evicted.

use super::{item, AllocError, Header, ItemId, Removal, Slabs, NIL};
use crate::bucket::khash;

/// Where a free chunk keeps the id of the next one: right after the header, inside the smallest
/// chunk (32 bytes).
const NEXT_AT: usize = item::HEADER_LEN;

impl<B: AsRef<[u8]> + AsMut<[u8]>> Slabs<B> {
    /// `alloc` once the class is known.
    pub(super) fn alloc_in(
        &mut self,
        class: usize,
        dead: &dyn Fn(&Header) -> bool,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Result<ItemId, AllocError> {
        if let Some(id) = self.pop_free(class) {
            return Ok(id);
        }
        if let Some(id) = self.bump(class) {
            return Ok(id);
        }
        if (self.fresh as usize) < self.page_class.len() {
            let page = self.fresh;
            self.fresh += 1;
            self.adopt_page(class, page);
            return self.bump(class).ok_or(AllocError::OutOfMemory);
        }
        if self.classes[class].pages.is_empty() {
            return match self.steal_page(class, on_remove) {
                Some(()) => self.bump(class).ok_or(AllocError::OutOfMemory),
                None => Err(AllocError::OutOfMemory),
            };
        }
        self.sweep(class, dead, on_remove)
    }

    /// Puts chunk `id` of `class` at the head of its free list.
    pub(super) fn push_free(&mut self, class: usize, id: ItemId) {
        let c = &mut self.classes[class];
        let next = c.free_head;
        c.free_head = id;
        c.free_len += 1;
        write_next(self.mem.as_mut(), id, next);
    }

    fn pop_free(&mut self, class: usize) -> Option<ItemId> {
        let c = &mut self.classes[class];
        if c.free_len == 0 {
            return None;
        }
        let id = c.free_head;
        c.free_head = read_next(self.mem.as_ref(), id);
        c.free_len -= 1;
        c.used += 1;
        Some(id)
    }

    /// The next never-used chunk of the class's newest page.
    fn bump(&mut self, class: usize) -> Option<ItemId> {
        let c = &mut self.classes[class];
        let &page = c.pages.last()?;
        if c.bump >= c.per_page {
            return None;
        }
        let at = page as usize * self.page_size + c.bump as usize * c.size as usize;
        c.bump += 1;
        c.used += 1;
        // The page may hold anything from its last owner; the chunk must read as free.
        item::write_klen(&mut self.mem.as_mut()[at..], 0);
        Some((at / 8) as ItemId)
    }

    /// Turns the hand until a chunk comes free: dead items are reclaimed, referenced ones lose
    /// their bit, the first other one is evicted.
    fn sweep(
        &mut self,
        class: usize,
        dead: &dyn Fn(&Header) -> bool,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Result<ItemId, AllocError> {
        let pages = self.classes[class].pages.len();
        if pages == 0 {
            return Err(AllocError::OutOfMemory);
        }
        let per_page = self.classes[class].per_page as usize;
        let touched = (pages - 1) * per_page + self.classes[class].bump as usize;
        let size = self.classes[class].size as usize;
        // Two turns: the first may only clear reference bits, the second then finds a victim
        // unless every chunk is free or outstanding.
        let mut budget = 2 * touched;
        while budget > 0 {
            let c = &mut self.classes[class];
            let slot = c.hand_slot as usize;
            let limit = if slot + 1 == pages {
                c.bump
            } else {
                c.per_page
            };
            if c.hand_chunk >= limit {
                c.hand_slot = ((slot + 1) % pages) as u32;
                c.hand_chunk = 0;
                continue;
            }
            let at = c.pages[slot] as usize * self.page_size + c.hand_chunk as usize * size;
            c.hand_chunk += 1;
            budget -= 1;
            let mem = self.mem.as_mut();
            let chunk = &mut mem[at..at + size];
            if item::read_klen(chunk) == 0 {
                continue;
            }
            let header = Header::read(chunk);
            let why = if dead(&header) {
                Removal::Reclaimed
            } else if header.has(item::ITEM_REF) {
                item::write_iflag(chunk, header.iflag & !item::ITEM_REF);
                continue;
            } else {
                Removal::Evicted
            };
            let id = (at / 8) as ItemId;
            if !self.remove_item(id, at, size, why, on_remove) {
                // Written but not linked yet: it belongs to an outstanding allocation.
                continue;
            }
            let c = &mut self.classes[class];
            match why {
                Removal::Reclaimed => c.reclaimed += 1,
                _ => c.evictions += 1,
            }
            item::write_klen(&mut self.mem.as_mut()[at..], 0);
            return Ok(id);
        }
        Err(AllocError::OutOfMemory)
    }

    /// Unlinks the item in the chunk at byte `at` and shows it to `on_remove`, bytes intact.
    /// False if the index does not hold it. Leaves the chunk's bytes and counters alone.
    pub(super) fn remove_item(
        &mut self,
        id: ItemId,
        at: usize,
        size: usize,
        why: Removal,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> bool {
        let chunk = &self.mem.as_ref()[at..at + size];
        if !self.index.remove(id, khash(item::key(chunk))) {
            return false;
        }
        on_remove(why, chunk);
        true
    }
}

pub(super) fn read_next(mem: &[u8], id: ItemId) -> ItemId {
    let at = id as usize * 8 + NEXT_AT;
    let mut next = [0u8; 4];
    next.copy_from_slice(&mem[at..at + 4]);
    u32::from_le_bytes(next)
}

/// Marks chunk `id` free and links it to `next`.
pub(super) fn write_next(mem: &mut [u8], id: ItemId, next: ItemId) {
    let at = id as usize * 8;
    item::write_klen(&mut mem[at..], 0);
    mem[at + NEXT_AT..at + NEXT_AT + 4].copy_from_slice(&next.to_le_bytes());
}

const _: () = assert!(NEXT_AT + 4 <= super::classes::MIN_CHUNK && NIL == u32::MAX);

#[cfg(test)]
mod tests {
    use super::{
        super::model::{fill, keys, put, tiny, Log, TestResult},
        *,
    };

    /// One 64 KiB page holds 1024 chunks of class 1; `k{i}` with a 20-byte value lands there.
    const PER_PAGE: usize = 1024;

    #[test]
    fn evicts_in_hand_order_when_full() -> TestResult {
        let mut s = tiny(1)?;
        let mut log = Log::new();
        fill(&mut s, "k", PER_PAGE, 20, 0, 0, &mut log)?;
        assert!(log.is_empty());
        fill(&mut s, "n", 3, 20, 0, 0, &mut log)?;
        // The hand starts at the page's first chunk; keys are still readable when reported.
        assert_eq!(keys(&log, Removal::Evicted), ["k0", "k1", "k2"]);
        assert_eq!(log.len(), 3);
        let stats = s.class_stats()[1];
        assert_eq!(
            (stats.evictions, stats.used_chunks, stats.free_chunks),
            (3, 1024, 0)
        );
        assert_eq!(s.len(), PER_PAGE);
        assert_eq!(s.find(b"k0", khash(b"k0")), None);
        assert!(s.find(b"n2", khash(b"n2")).is_some());
        Ok(())
    }

    #[test]
    fn referenced_items_get_a_second_chance() -> TestResult {
        let mut s = tiny(1)?;
        let mut log = Log::new();
        // Even items were read recently, odd ones not.
        for i in 0..PER_PAGE {
            let iflag = if i % 2 == 0 { item::ITEM_REF } else { 0 };
            put(&mut s, format!("k{i}").as_bytes(), 20, 0, iflag, &mut log)?;
        }
        fill(&mut s, "n", PER_PAGE / 2, 20, 0, 0, &mut log)?;
        // One turn of the hand takes exactly the unreferenced half.
        let odd: Vec<String> = (0..PER_PAGE)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("k{i}"))
            .collect();
        assert_eq!(keys(&log, Removal::Evicted), odd);
        let k0 = s.find(b"k0", khash(b"k0")).ok_or("k0 was referenced")?;
        // Passing cleared the bit, so the next turn takes k0 after all.
        assert_eq!(item::read_iflag(s.chunk(k0)) & item::ITEM_REF, 0);
        log.clear();
        put(&mut s, b"m", 20, 0, 0, &mut log)?;
        assert_eq!(keys(&log, Removal::Evicted), ["k0"]);
        Ok(())
    }

    #[test]
    fn dead_items_are_reclaimed_before_any_eviction() -> TestResult {
        let mut s = tiny(1)?;
        let mut log = Log::new();
        // Every item is referenced; every fourth one has expired (exptime 1, see `expired`).
        for i in 0..PER_PAGE {
            let exptime = if i % 4 == 0 { 1 } else { 0 };
            put(
                &mut s,
                format!("k{i}").as_bytes(),
                20,
                exptime,
                item::ITEM_REF,
                &mut log,
            )?;
        }
        fill(&mut s, "n", PER_PAGE / 4, 20, 0, 0, &mut log)?;
        // The dead quarter goes first, reference bit or not, and nothing live is touched.
        let dead: Vec<String> = (0..PER_PAGE).step_by(4).map(|i| format!("k{i}")).collect();
        assert_eq!(keys(&log, Removal::Reclaimed), dead);
        assert_eq!(log.len(), PER_PAGE / 4);
        let stats = s.class_stats()[1];
        assert_eq!((stats.reclaimed, stats.evictions), (256, 0));
        // Only once no dead item is left does the hand evict.
        log.clear();
        put(&mut s, b"m", 20, 0, 0, &mut log)?;
        assert_eq!(log.first().map(|(why, _)| *why), Some(Removal::Evicted));
        Ok(())
    }

    #[test]
    fn outstanding_chunks_are_never_taken() -> TestResult {
        let mut s = tiny(1)?;
        let never = |_: &Header| false;
        let mut log = Log::new();
        let mut on_remove = |why, chunk: &[u8]| log.push((why, item::key(chunk).to_vec()));
        // Allocate the whole page without linking; half the chunks even have a header written.
        for i in 0..PER_PAGE {
            let id = s.alloc(60, &never, &mut on_remove)?;
            if i % 2 == 0 {
                Header {
                    klen: 1,
                    vlen: 20,
                    ..Header::default()
                }
                .write(s.chunk_mut(id));
            }
        }
        // Two turns of the hand find nothing it may take.
        assert_eq!(
            s.alloc(60, &never, &mut on_remove),
            Err(AllocError::OutOfMemory)
        );
        assert!(log.is_empty());
        Ok(())
    }
}
