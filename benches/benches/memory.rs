//! Bytes per item of a filled store, next to memcached 1.6's figure for the same items.
//!
//! Not a timing bench: it fills `KCACHE_MEM_ITEMS` items (default 1M) of 16-byte keys and
//! 32-byte values into a fresh store and prints one line per cache:
//!
//! ```text
//! bytes_per_item total=<chunk + index> chunk=<arena bytes in used chunks> index=<index heap> overhead=<total - 48>
//! ```
//!
//! Only chunks that hold items count, not the whole arena (which the operator sizes). memcached's
//! figure is computed from its item layout, not measured: its 48-byte item header, 8 more for the
//! CAS (on by default), key + 1 (NUL), value + 2 (`\r\n`), rounded up to its slab class (96 bytes,
//! then x1.25, 8-aligned), plus its hash table: one 8-byte bucket pointer per bucket, doubled
//! whenever items exceed 1.5 x buckets (from 2^16 buckets).

use std::process::ExitCode;

use cache_core::store::StoreConfig;
use kcache_benches::{filled_store, ITEMS, KEY_LEN, VALUE_LEN};

/// Key and value bytes a client asked to store: the floor no cache can go under.
const PAYLOAD: usize = KEY_LEN + VALUE_LEN;

fn main() -> ExitCode {
    let items = match std::env::var("KCACHE_MEM_ITEMS") {
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("KCACHE_MEM_ITEMS must be a positive integer, got {s:?}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => ITEMS,
    };
    // Chunks are ~80 bytes; twice that plus a few pages leaves room for every item.
    let arena = items * 160 + (16 << 20);
    // The default config: the index starts small and grows as a real fill makes it.
    let store = match filled_store(items, arena, StoreConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("filling {items} items: {e}");
            return ExitCode::FAILURE;
        }
    };
    let slabs = store.slabs();
    let classes = slabs.class_stats();
    let chunk_bytes: u64 = classes
        .iter()
        .map(|c| c.used_chunks * u64::from(c.chunk_size))
        .sum();
    let cfg = store.config();
    let page_size = cfg.page_size.max(cfg.item_max) as u64;
    let page_bytes: u64 = classes.iter().map(|c| u64::from(c.pages) * page_size).sum();
    let n = slabs.len() as f64;
    let ours = PerItem {
        chunk: chunk_bytes as f64 / n,
        index: slabs.index_bytes() as f64 / n,
    };
    let theirs = memcached(items);

    println!("items={} key={KEY_LEN} value={VALUE_LEN}", slabs.len());
    println!("kcache: {}", ours.line());
    println!(
        "kcache: chunk classes used: {}; arena in pages handed out: {:.2} B/item",
        classes
            .iter()
            .filter(|c| c.used_chunks > 0)
            .map(|c| format!("{}B x {}", c.chunk_size, c.used_chunks))
            .collect::<Vec<_>>()
            .join(", "),
        page_bytes as f64 / n,
    );
    println!(
        "memcached (computed from its item layout, not measured): {}",
        theirs.line()
    );
    println!(
        "ratio kcache/memcached: total={:.3} chunk={:.3} index={:.3}",
        ours.total() / theirs.total(),
        ours.chunk / theirs.chunk,
        ours.index / theirs.index,
    );
    ExitCode::SUCCESS
}

/// Memory per item, in bytes.
#[derive(Debug, Clone, Copy)]
struct PerItem {
    chunk: f64,
    index: f64,
}

impl PerItem {
    fn total(&self) -> f64 {
        self.chunk + self.index
    }

    fn line(&self) -> String {
        format!(
            "bytes_per_item total={:.2} chunk={:.2} index={:.2} overhead={:.2}",
            self.total(),
            self.chunk,
            self.index,
            self.total() - PAYLOAD as f64,
        )
    }
}

/// memcached 1.6's bytes per item for `items` items of this bench's shape (see the module docs).
fn memcached(items: usize) -> PerItem {
    const HEADER: usize = 48;
    const CAS: usize = 8;
    let need = HEADER + CAS + KEY_LEN + 1 + VALUE_LEN + 2;
    let mut class = 96usize;
    while class < need {
        class = (class as f64 * 1.25) as usize;
        class = class.div_ceil(8) * 8;
    }
    let mut buckets = 1usize << 16;
    while items > buckets * 3 / 2 {
        buckets *= 2;
    }
    PerItem {
        chunk: class as f64,
        index: (buckets * 8) as f64 / items as f64,
    }
}
