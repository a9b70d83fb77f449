//! Page moves: a page leaves one class, every item on it is dropped, and another class adopts it.
//!
//! Three things move pages: a class with no page at all when the arena has no fresh page left
//! (starvation, inside `alloc`), `slabs reassign`, and [`Slabs::rebalance`], which hands pages
//! from classes that stopped evicting to the ones that evict most.

use super::{
    clock::{read_next, write_next},
    item, ItemId, Removal, Slabs, NIL,
};

impl<B: AsRef<[u8]> + AsMut<[u8]>> Slabs<B> {
    /// Makes `page` the newest page of `class`, its chunks all unused.
    pub(super) fn adopt_page(&mut self, class: usize, page: u32) {
        // Only the newest page may hold never-used chunks, so the old one's rest goes on the free
        // list first (highest first, so they still come out in address order).
        let c = &self.classes[class];
        let (size, bump, per_page) = (c.size as usize, c.bump, c.per_page);
        if let Some(&last) = c.pages.last() {
            let base = last as usize * self.page_size;
            for n in (bump..per_page).rev() {
                let id = ((base + n as usize * size) / 8) as ItemId;
                self.push_free(class, id);
            }
        }
        let c = &mut self.classes[class];
        c.pages.push(page);
        c.bump = 0;
        self.page_chunk[page as usize] = c.size;
        // Class ids are below 255 (see `classes::MAX_CLASSES`).
        self.page_class[page as usize] = class as u8;
    }

    /// Gives a starving class a page: from a class holding no live item if there is one (its
    /// pages cost nothing to take), else from the class with the most pages (ties: highest id).
    pub(super) fn steal_page(
        &mut self,
        dst: usize,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Option<()> {
        let (src, _) = self
            .classes
            .iter()
            .enumerate()
            .filter(|&(id, c)| id != dst && !c.pages.is_empty())
            .map(|(id, c)| (id, (c.used == 0, c.pages.len(), id)))
            .max_by_key(|&(_, rank)| rank)?;
        self.move_page(src, dst, on_remove);
        Some(())
    }

    pub(super) fn reassign_page(
        &mut self,
        src: u8,
        dst: u8,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Result<(), &'static str> {
        let (src, dst) = (src as usize, dst as usize);
        if src >= self.classes.len() || dst >= self.classes.len() {
            return Err("BADCLASS invalid src or dst class id");
        }
        if src == dst {
            return Err("SAME src and dst class are identical");
        }
        if self.classes[src].pages.len() <= 1 {
            return Err("NOSPARE source class has no spare pages");
        }
        self.move_page(src, dst, on_remove);
        Ok(())
    }

    pub(super) fn rebalance_step(
        &mut self,
        on_remove: &mut dyn FnMut(Removal, &[u8]),
    ) -> Option<(u8, u8)> {
        let mut dst: Option<(usize, u64)> = None;
        let mut src: Option<(usize, usize)> = None;
        for (id, c) in self.classes.iter_mut().enumerate() {
            let evicted = c.evictions - c.evictions_seen;
            c.evictions_seen = c.evictions;
            if evicted > 0 {
                if dst.is_none_or(|(_, most)| evicted > most) {
                    dst = Some((id, evicted));
                }
            } else {
                // An idle class gives up a page if it has a spare one, or holds nothing at all;
                // empty classes go first.
                let rank = usize::from(c.used == 0) * 1_000_000 + c.pages.len();
                let spare = c.pages.len() > 1 || (c.used == 0 && !c.pages.is_empty());
                if spare && src.is_none_or(|(_, best)| rank >= best) {
                    src = Some((id, rank));
                }
            }
        }
        let ((src, _), (dst, _)) = (src?, dst?);
        self.move_page(src, dst, on_remove);
        // Both ids index `classes`, which has at most 255 entries.
        Some((src as u8, dst as u8))
    }

    /// Takes one page from `src` (not the one under its hand, if it has another), drops every
    /// item on it and gives it to `dst`.
    fn move_page(&mut self, src: usize, dst: usize, on_remove: &mut dyn FnMut(Removal, &[u8])) {
        let c = &self.classes[src];
        let count = c.pages.len();
        let slot = if count > 1 {
            (c.hand_slot as usize + 1) % count
        } else {
            0
        };
        let (start, limit) = self.walk_bounds(src, slot);
        let size = c.size as usize;
        for at in (start..).step_by(size).take(limit as usize) {
            if item::read_klen(&self.mem.as_ref()[at..]) != 0 {
                // Not in the index means outstanding; nothing to unlink or report then.
                self.remove_item((at / 8) as ItemId, at, size, Removal::PageMoved, on_remove);
            }
        }
        let lo = (start / 8) as ItemId;
        let dropped_free = self.drop_free_range(src, lo, lo + self.page_words);
        let c = &mut self.classes[src];
        let page = c.pages.remove(slot);
        c.used = c
            .used
            .saturating_sub(u64::from(limit).saturating_sub(dropped_free));
        c.moved_out += 1;
        if slot == c.pages.len() {
            // The bump page left; every page still owned was handed out in full.
            c.bump = c.per_page;
        }
        if c.hand_slot as usize > slot {
            c.hand_slot -= 1;
        } else if c.hand_slot as usize == slot {
            c.hand_chunk = 0;
        }
        if c.hand_slot as usize >= c.pages.len() {
            c.hand_slot = 0;
            c.hand_chunk = 0;
        }
        self.adopt_page(dst, page);
    }

    /// Unthreads every chunk with an id in `lo..hi` from the free list of `class`; returns how
    /// many there were.
    fn drop_free_range(&mut self, class: usize, lo: ItemId, hi: ItemId) -> u64 {
        let c = &mut self.classes[class];
        let mem = self.mem.as_mut();
        let (mut head, mut tail) = (NIL, NIL);
        let mut dropped = 0;
        let mut cur = c.free_head;
        // Bounded by the list length so a scribbled link cannot loop forever.
        for _ in 0..c.free_len {
            let next = read_next(mem, cur);
            if (lo..hi).contains(&cur) {
                dropped += 1;
            } else {
                if tail == NIL {
                    head = cur;
                } else {
                    write_next(mem, tail, cur);
                }
                tail = cur;
            }
            cur = next;
        }
        if tail != NIL {
            write_next(mem, tail, NIL);
        }
        c.free_head = head;
        c.free_len -= dropped;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::model::{fill, keys, tiny, Log, TestResult},
        *,
    };
    use crate::bucket::khash;

    /// Chunks of class 1 (64 bytes) in a 64 KiB page; `k{i}` with a 20-byte value lands there.
    const PER_PAGE: usize = 1024;

    #[test]
    fn a_starving_class_takes_a_page() -> TestResult {
        let mut s = tiny(4)?;
        let mut log = Log::new();
        // Class 1 takes all four pages.
        fill(&mut s, "k", 4 * PER_PAGE, 20, 0, 0, &mut log)?;
        // Class 3 (256 bytes) has no page and none is fresh: it takes class 1's second page
        // (the one after the hand), whose items all go as one batch.
        fill(&mut s, "big", 1, 200, 0, 0, &mut log)?;
        let gone: Vec<String> = (PER_PAGE..2 * PER_PAGE).map(|i| format!("k{i}")).collect();
        assert_eq!(keys(&log, Removal::PageMoved), gone);
        assert_eq!(log.len(), PER_PAGE);
        let stats = s.class_stats();
        assert_eq!(
            (
                stats[1].pages,
                stats[1].pages_moved_out,
                stats[1].used_chunks
            ),
            (3, 1, 3072)
        );
        assert_eq!((stats[3].pages, stats[3].used_chunks), (1, 1));
        assert_eq!(s.len(), 3 * PER_PAGE + 1);
        assert!(s.find(b"k0", khash(b"k0")).is_some());
        assert!(s.find(b"k3071", khash(b"k3071")).is_some());
        Ok(())
    }

    #[test]
    fn steal_from_single_page_classes() -> TestResult {
        let mut s = tiny(2)?;
        let mut log = Log::new();
        fill(&mut s, "a", 10, 20, 0, 0, &mut log)?;
        fill(&mut s, "b", 10, 60, 0, 0, &mut log)?;
        // No class has a spare page; the tie goes to the highest id, class 2.
        fill(&mut s, "c", 1, 200, 0, 0, &mut log)?;
        assert_eq!(keys(&log, Removal::PageMoved).len(), 10);
        assert!(keys(&log, Removal::PageMoved)
            .iter()
            .all(|k| k.starts_with('b')));
        let pages: Vec<u32> = s.class_stats().iter().map(|c| c.pages).collect();
        assert_eq!(pages[..4], [0, 1, 0, 1]);
        // Class 2 starves in turn and takes the page back from the new highest id with a page.
        log.clear();
        fill(&mut s, "b", 1, 60, 0, 0, &mut log)?;
        assert_eq!(keys(&log, Removal::PageMoved), ["c0"]);
        Ok(())
    }

    #[test]
    fn reassign_errors() -> TestResult {
        let mut s = tiny(4)?;
        let mut log = Log::new();
        fill(&mut s, "k", PER_PAGE + 1, 20, 0, 0, &mut log)?;
        fill(&mut s, "b", 1, 60, 0, 0, &mut log)?;
        let mut on_remove = |_: Removal, _: &[u8]| {};
        let cases = [
            // No class 12 in a 12-class table.
            ((12, 1), Err("BADCLASS invalid src or dst class id")),
            // Nor 200 as a destination.
            ((1, 200), Err("BADCLASS invalid src or dst class id")),
            // A class cannot give a page to itself.
            ((1, 1), Err("SAME src and dst class are identical")),
            // Class 2 owns a single page, which it needs.
            ((2, 1), Err("NOSPARE source class has no spare pages")),
            // Class 5 owns nothing.
            ((5, 1), Err("NOSPARE source class has no spare pages")),
        ];
        for ((src, dst), want) in cases {
            assert_eq!(s.reassign(src, dst, &mut on_remove), want, "{src} -> {dst}");
        }
        assert_eq!(s.len(), PER_PAGE + 2);
        Ok(())
    }

    #[test]
    fn reassign_moves_a_page_and_its_free_chunks() -> TestResult {
        // Three pages: two for class 1, one for class 2, none left fresh.
        let mut s = tiny(3)?;
        let mut log = Log::new();
        let ids = fill(&mut s, "k", 2 * PER_PAGE, 20, 0, 0, &mut log)?;
        // Free chunks on both pages: only the ones on the moved page may leave the free list.
        for i in [5, PER_PAGE + 5, PER_PAGE + 6] {
            s.unlink(ids[i], khash(format!("k{i}").as_bytes()));
        }
        // Class 2 has one item on a page it has barely started.
        fill(&mut s, "b", 1, 60, 0, 0, &mut log)?;
        s.reassign(1, 2, &mut |why, chunk| {
            log.push((why, item::key(chunk).to_vec()))
        })?;
        assert_eq!(keys(&log, Removal::PageMoved).len(), PER_PAGE - 2);
        let stats = s.class_stats();
        assert_eq!(
            (stats[1].pages, stats[1].used_chunks, stats[1].free_chunks),
            (1, 1023, 1)
        );
        assert_eq!(
            (stats[2].pages, stats[2].used_chunks, stats[2].free_chunks),
            (2, 1, 1023)
        );
        // Class 1 gets k5's chunk back, then must evict: the moved page is out of its reach.
        log.clear();
        assert_eq!(fill(&mut s, "n", 2, 20, 0, 0, &mut log)?[0], ids[5]);
        assert_eq!(keys(&log, Removal::Evicted), ["k0"]);
        // Class 2 fills both pages, its first page's unused rest included, before evicting.
        log.clear();
        fill(&mut s, "c", 2 * 512 - 1, 60, 0, 0, &mut log)?;
        assert!(log.is_empty());
        fill(&mut s, "d", 1, 60, 0, 0, &mut log)?;
        assert_eq!(keys(&log, Removal::Evicted), ["b0"]);
        Ok(())
    }

    #[test]
    fn rebalance_feeds_the_evicting_class() -> TestResult {
        let mut s = tiny(4)?;
        let mut moved = 0;
        let mut on_remove = |why, _: &[u8]| {
            assert_eq!(why, Removal::PageMoved);
            moved += 1;
        };
        // Class 1 takes three pages and then sits idle; class 3 gets the last one.
        let _ = fill(&mut s, "k", 3 * PER_PAGE, 20, 0, 0, &mut Log::new())?;
        let _ = fill(&mut s, "big", 256, 200, 0, 0, &mut Log::new())?;
        // Nobody evicted yet: nothing to do.
        assert_eq!(s.rebalance(&mut on_remove), None);
        let _ = fill(&mut s, "more", 10, 200, 0, 0, &mut Log::new())?;
        // Class 3 evicted, class 1 did not and has pages to spare.
        assert_eq!(s.rebalance(&mut on_remove), Some((1, 3)));
        // The evictions were counted at the last call: quiet again.
        assert_eq!(s.rebalance(&mut on_remove), None);
        assert_eq!(moved, PER_PAGE);
        let stats = s.class_stats();
        assert_eq!(
            (stats[1].pages, stats[3].pages, stats[1].pages_moved_out),
            (2, 2, 1)
        );
        Ok(())
    }
}
