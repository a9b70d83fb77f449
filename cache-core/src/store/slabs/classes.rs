//! Slab classes: the chunk sizes pages are cut into.
//!
//! Sizes grow geometrically from `min_chunk` by `growth_factor` (at least 8 bytes a step, always a
//! multiple of 8 so every chunk, and so every [`ItemId`], stays 8-byte aligned)
//! until the next one would pass half a page; one last class holds a whole page, so any item up
//! to a page fits somewhere.

use super::{ItemId, SlabConfig, SlabError, NIL};
use crate::store::item::HEADER_LEN;

/// Smallest page accepted: smaller pages make page moves too fine-grained to matter.
pub(super) const MIN_PAGE: usize = 64 * 1024;
/// Largest page accepted: chunk sizes and chunks per page are kept as `u32`.
pub(super) const MAX_PAGE: usize = 1 << 30;
/// Class ids are `u8`, and [`NO_CLASS`] marks a page nobody owns yet.
pub(super) const MAX_CLASSES: usize = 255;
/// Owner of a page no class has taken yet.
pub(super) const NO_CLASS: u8 = u8::MAX;
/// A chunk must hold a header plus a one-byte key; a free chunk keeps its next-free link right
/// after the header, so this is also the room the free list needs.
pub(super) const MIN_CHUNK: usize = round_up_8(HEADER_LEN + 1);

/// One slab class: its pages, free list, bump cursor, CLOCK hand and counters.
#[derive(Debug, Clone)]
pub(super) struct Class {
    pub(super) size: u32,
    pub(super) per_page: u32,
    /// Page numbers in the order the class got them; the last one is the bump page.
    pub(super) pages: Vec<u32>,
    /// Next never-used chunk of the last page; `per_page` when there is none (or no page).
    pub(super) bump: u32,
    pub(super) free_head: ItemId,
    pub(super) free_len: u64,
    /// Chunks handed out by `alloc` and not freed since: linked items plus outstanding ones.
    pub(super) used: u64,
    /// CLOCK hand: index into `pages`, then chunk number within that page.
    pub(super) hand_slot: u32,
    pub(super) hand_chunk: u32,
    pub(super) evictions: u64,
    /// `evictions` at the previous [`Slabs::rebalance`](super::Slabs::rebalance).
    pub(super) evictions_seen: u64,
    pub(super) reclaimed: u64,
    pub(super) moved_out: u64,
}

impl Class {
    pub(super) fn new(size: u32, page_size: usize) -> Class {
        // Page sizes are at most MAX_PAGE (2^30), so they fit a u32.
        let per_page = page_size as u32 / size;
        Class {
            size,
            per_page,
            pages: Vec::new(),
            bump: per_page,
            free_head: NIL,
            free_len: 0,
            used: 0,
            hand_slot: 0,
            hand_chunk: 0,
            evictions: 0,
            evictions_seen: 0,
            reclaimed: 0,
            moved_out: 0,
        }
    }
}

/// Checks `cfg` and returns every class's chunk size, smallest first.
pub(super) fn chunk_sizes(cfg: &SlabConfig) -> Result<Vec<u32>, SlabError> {
    let page = cfg.page_size;
    if page % 8 != 0 {
        return Err(SlabError::BadConfig("page_size must be a multiple of 8"));
    }
    if !(MIN_PAGE..=MAX_PAGE).contains(&page) {
        return Err(SlabError::BadConfig(
            "page_size must be between 64 KiB and 1 GiB",
        ));
    }
    if cfg.min_chunk % 8 != 0 {
        return Err(SlabError::BadConfig("min_chunk must be a multiple of 8"));
    }
    if cfg.min_chunk < MIN_CHUNK {
        return Err(SlabError::BadConfig("min_chunk must be at least 32"));
    }
    if cfg.min_chunk > page / 2 {
        return Err(SlabError::BadConfig(
            "min_chunk must be at most half a page",
        ));
    }
    // Written as a negated range so NaN is refused too.
    if !(cfg.growth_factor > 1.0 && cfg.growth_factor < 4.0) {
        return Err(SlabError::BadConfig(
            "growth_factor must be above 1 and below 4",
        ));
    }
    let mut sizes = vec![cfg.min_chunk];
    let mut prev = cfg.min_chunk;
    loop {
        // Sizes stay below 2^30, so the f64 product is exact enough and the cast cannot wrap.
        let grown = round_up_8((prev as f64 * cfg.growth_factor).ceil() as usize);
        let next = grown.max(prev + 8);
        if next > page / 2 {
            break;
        }
        sizes.push(next);
        prev = next;
        // Checked inside the loop so a tiny factor fails fast instead of building a long list.
        if sizes.len() >= MAX_CLASSES {
            return Err(SlabError::BadConfig(
                "growth_factor makes more than 255 classes",
            ));
        }
    }
    sizes.push(page);
    // Every size is at most MAX_PAGE (2^30), so these conversions are lossless.
    Ok(sizes.into_iter().map(|s| s as u32).collect())
}

const fn round_up_8(n: usize) -> usize {
    (n + 7) & !7
}

#[cfg(test)]
mod tests {
    use super::{
        super::{model::*, Slabs},
        *,
    };

    fn cfg(page_size: usize, min_chunk: usize, growth_factor: f64) -> SlabConfig {
        SlabConfig {
            page_size,
            min_chunk,
            growth_factor,
            index_capacity: 0,
        }
    }

    #[test]
    fn default_classes() {
        let sizes = chunk_sizes(&cfg(1 << 20, 32, 1.08)).unwrap_or_default();
        // The first steps are the +8 floor; 104 * 1.08 = 112.3 is the first geometric step.
        assert_eq!(sizes[..11], [32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 120]);
        // The last class is exactly one page, the one before it at most half a page.
        assert_eq!(sizes.last().copied(), Some(1 << 20));
        assert!(sizes[sizes.len() - 2] <= 1 << 19);
        // Strictly increasing multiples of 8, and few enough for a u8 id.
        assert!(sizes.windows(2).all(|w| w[0] < w[1]));
        assert!(sizes.iter().all(|s| s % 8 == 0));
        assert!(sizes.len() <= MAX_CLASSES, "{} classes", sizes.len());
    }

    #[test]
    fn bad_configs() {
        let cases: [(SlabConfig, &str); 9] = [
            // Page not a multiple of 8.
            (
                cfg((1 << 20) + 4, 32, 1.08),
                "page_size must be a multiple of 8",
            ),
            // Page below 64 KiB.
            (
                cfg(32 * 1024, 32, 1.08),
                "page_size must be between 64 KiB and 1 GiB",
            ),
            // Chunk not a multiple of 8.
            (cfg(1 << 20, 36, 1.08), "min_chunk must be a multiple of 8"),
            // Chunk too small for a header and a one-byte key.
            (cfg(1 << 20, 24, 1.08), "min_chunk must be at least 32"),
            // Chunk bigger than half a page leaves no geometric classes.
            (
                cfg(1 << 16, 40 * 1024, 1.08),
                "min_chunk must be at most half a page",
            ),
            // Factor 1 would never grow on its own.
            (
                cfg(1 << 20, 32, 1.0),
                "growth_factor must be above 1 and below 4",
            ),
            // Factor 4 or more is refused.
            (
                cfg(1 << 20, 32, 4.0),
                "growth_factor must be above 1 and below 4",
            ),
            // NaN is refused rather than looping.
            (
                cfg(1 << 20, 32, f64::NAN),
                "growth_factor must be above 1 and below 4",
            ),
            // A factor so small that the class count overflows a u8.
            (
                cfg(1 << 20, 32, 1.01),
                "growth_factor makes more than 255 classes",
            ),
        ];
        for (c, why) in cases {
            assert_eq!(chunk_sizes(&c), Err(SlabError::BadConfig(why)), "{c:?}");
        }
    }

    #[test]
    fn big_factor_gives_few_classes() {
        // 64 KiB pages doubling from 32: 32..32768 is 11 classes, plus the page class.
        let sizes = chunk_sizes(&cfg(1 << 16, 32, 2.0)).unwrap_or_default();
        assert_eq!(sizes.len(), 12);
        assert_eq!(sizes[10], 32 * 1024);
        assert_eq!(sizes[11], 64 * 1024);
    }

    #[test]
    fn class_for_boundaries() -> TestResult {
        let s = tiny(1)?;
        let cases: [(usize, Option<u8>); 8] = [
            // Nothing is smaller than the smallest class.
            (0, Some(0)),
            // Exactly the smallest chunk.
            (32, Some(0)),
            // One byte more needs the next class.
            (33, Some(1)),
            // Exactly the second chunk.
            (64, Some(1)),
            // Just past the largest geometric class goes to the page class.
            (32 * 1024 + 1, Some(11)),
            // Exactly one page.
            (64 * 1024, Some(11)),
            // More than a page fits nowhere.
            (64 * 1024 + 1, None),
            // Absurd sizes too.
            (usize::MAX, None),
        ];
        for (len, want) in cases {
            assert_eq!(s.class_for(len), want, "len {len}");
        }
        assert_eq!(s.class_sizes().len(), 12);
        Ok(())
    }

    #[test]
    fn new_refuses_small_arenas() {
        let cfg = SlabConfig {
            page_size: 1 << 16,
            min_chunk: 32,
            growth_factor: 2.0,
            index_capacity: 0,
        };
        let cases = [
            // Empty arena.
            (0, Err(SlabError::ArenaTooSmall(0))),
            // One byte short of a page.
            ((1 << 16) - 1, Err(SlabError::ArenaTooSmall((1 << 16) - 1))),
            // One page and a tail: the tail is simply unused.
            ((1 << 16) + 100, Ok((1 << 16) + 100)),
        ];
        for (len, want) in cases {
            let got = Slabs::new(vec![0u8; len], cfg.clone()).map(|s| s.arena_bytes());
            assert_eq!(got, want, "arena of {len}");
        }
    }
}
