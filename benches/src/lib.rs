//! Inputs shared by the benches in `benches/`: keys of realistic size, a filled store, a shuffled
//! access order. Everything is deterministic so two runs measure the same work.
//!
//! - `protocol`: parsing and encoding of single requests and replies.
//! - `store`: hits, misses and overwrites against a 1M-item working set, with and without the
//!   protocol in front.
//! - `memory`: bytes per item of that working set, against memcached's item layout.
//! - `paths`: every other per-request path through the pipeline ([`Line`]) (meta get, 24-key multiget,
//!   lease-get, set, noreply set, delete), UDP framing and the routing hash.

use std::sync::Arc;

use cache_core::{
    bucket::{BucketMap, Ownership},
    pipeline::{Core, Cx, Limits, Outgoing, Pool, Session, Worker},
    protocol::Parser,
    store::{slabs::SlabError, Key, Mode, Store, StoreConfig, StoreOutcome, Write},
};
use rand::{rngs::SmallRng, seq::SliceRandom, SeedableRng};

/// The `now` every bench runs at (Unix seconds); items never expire.
pub const NOW: u32 = 1_700_000_000;
/// Working-set size of the store benches.
pub const ITEMS: usize = 1_000_000;
/// Key length: `key:` and 12 digits.
pub const KEY_LEN: usize = 16;
/// Value length of every stored item.
pub const VALUE_LEN: usize = 32;
/// A value of [`VALUE_LEN`] bytes that looks like a short serialized record.
pub const VALUE: &[u8; VALUE_LEN] = b"{\"id\":1234567,\"ok\":true,\"n\":42}\n";

/// The `i`th key of the working set: `key:000000000042`.
pub fn key(i: usize) -> [u8; KEY_LEN] {
    numbered(*b"key:000000000000", i)
}

/// The `i`th key that is never stored: `miss:00000000042`.
pub fn miss_key(i: usize) -> [u8; KEY_LEN] {
    numbered(*b"miss:00000000000", i)
}

/// `template` with its trailing zeros replaced by `i` in decimal (wrapping past its width).
fn numbered(mut template: [u8; KEY_LEN], mut i: usize) -> [u8; KEY_LEN] {
    for b in template.iter_mut().rev().take_while(|b| **b == b'0') {
        *b = b'0' + (i % 10) as u8;
        i /= 10;
    }
    template
}

/// `0..n` in a fixed random order, so lookups miss the CPU caches as a real workload would.
pub fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut SmallRng::seed_from_u64(0x6b63_6163_6865));
    order
}

/// A store over `arena_bytes` of fresh memory holding keys `0..items`, each with [`VALUE`].
/// Fails if the arena is too small for the config or any item could not be stored.
pub fn filled_store(
    items: usize,
    arena_bytes: usize,
    cfg: StoreConfig,
) -> Result<Store<Vec<u8>>, FillError> {
    let mut store = Store::new(vec![0u8; arena_bytes], cfg).map_err(FillError::Arena)?;
    for i in 0..items {
        let k = key(i);
        let w = Write {
            value: VALUE,
            ..Write::default()
        };
        let (outcome, _) = store.store(Mode::Set, Key::new(&k), w, NOW);
        if outcome != StoreOutcome::Stored {
            return Err(FillError::Refused(i, outcome));
        }
    }
    let evicted = store.stats().evictions;
    if evicted != 0 {
        return Err(FillError::Evicted(evicted));
    }
    Ok(store)
}

/// Why [`filled_store`] failed.
#[derive(Debug)]
pub enum FillError {
    Arena(SlabError),
    Refused(usize, StoreOutcome),
    /// The arena was too small: the working set would not be all in memory.
    Evicted(u64),
}

impl std::fmt::Display for FillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FillError::Arena(e) => write!(f, "arena: {e}"),
            FillError::Refused(i, o) => write!(f, "item {i} was not stored: {o:?}"),
            FillError::Evicted(n) => write!(f, "{n} items were evicted while filling"),
        }
    }
}

impl std::error::Error for FillError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        // (made, expected)
        let cases: [([u8; KEY_LEN], &[u8; KEY_LEN]); 4] = [
            // The first key.
            (key(0), b"key:000000000000"),
            // Digits fill from the right.
            (key(1_000_042), b"key:000001000042"),
            // Miss keys share no prefix with stored keys.
            (miss_key(7), b"miss:00000000007"),
            // Too many digits wrap instead of growing the key.
            (miss_key(123_456_789_012), b"miss:23456789012"),
        ];
        for (made, want) in cases {
            assert_eq!(&made, want);
        }
    }

    #[test]
    fn shuffle_is_a_fixed_permutation() {
        let a = shuffled(1000);
        // Same order every run.
        assert_eq!(a, shuffled(1000));
        // Every index once.
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().copied().eq(0..1000));
        // Actually shuffled.
        assert_ne!(a[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn fill_small() -> Result<(), FillError> {
        let store = filled_store(100, 1 << 20, StoreConfig::default())?;
        assert_eq!(store.stats().curr_items, 100);
        Ok(())
    }
}

/// One connection through the engine's request pipeline on a one-shard core: a request in, its
/// reply out, as the server runs it (parse, budget, worker, ordered output), without sockets.
#[derive(Debug)]
pub struct Line {
    pub core: Core<Vec<u8>, ()>,
    session: Session,
    outgoing: Vec<Outgoing>,
    reply: Vec<u8>,
}

impl Line {
    /// A connection to a shard holding `store`.
    pub fn new(store: Store<Vec<u8>>) -> Line {
        let own = BucketMap::new_single(0).map(|map| Arc::new(Ownership::new(map, 0)));
        let Ok(own) = own else {
            panic!("the single-node bucket map")
        };
        let item_max = store.config().item_max;
        Line {
            core: Core {
                worker: Worker::new(store, (), own),
                parser: Parser::new(),
                limits: Limits::new(item_max, 1 << 20),
                replies: Pool::new(16 << 20),
                input: Pool::new(16 << 20),
                id: 0,
                shards: 1,
                place: cache_core::pipeline::Place::Shards,
            },
            session: Session::new(),
            outgoing: Vec::new(),
            reply: Vec::with_capacity(8192),
        }
    }

    /// Runs `req` (whole requests) and returns the replies, as sent.
    pub fn request(&mut self, req: &[u8]) -> &[u8] {
        let mut cx = Cx {
            core: &mut self.core,
            now: NOW,
            who: 0,
            out: &mut self.outgoing,
        };
        let fed = self.session.feed(&mut cx, req);
        debug_assert_eq!(fed.consumed, req.len());
        self.reply.clear();
        self.session.take_output(&mut self.reply);
        let n = self.reply.len();
        self.session.sent(&mut cx, n);
        &self.reply
    }

    /// The store, to check.
    pub fn store(&self) -> &Store<Vec<u8>> {
        self.core.worker.store()
    }
}
