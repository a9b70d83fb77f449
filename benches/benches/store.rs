//! One store holding a 1M-item working set (16-byte keys, 32-byte values), all in memory: hits and
//! misses in random order, overwrites, and a hit through the whole protocol path. Keys are hashed
//! inside the timed loop, as every request must. Filling the store is not timed.

use std::{hint::black_box, time::Duration};

use cache_core::store::{Key, Mode, Store, StoreConfig, Write};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kcache_benches::{filled_store, key, miss_key, shuffled, Line, ITEMS, NOW, VALUE};

/// Room for every item without eviction: ~80-byte chunks x 1M is 80 MB; pages are 1 MiB.
const ARENA: usize = 256 << 20;

fn store(c: &mut Criterion) {
    let cfg = StoreConfig {
        index_capacity: 1 << 21,
        ..StoreConfig::default()
    };
    let mut store = match filled_store(ITEMS, ARENA, cfg) {
        Ok(s) => s,
        Err(e) => panic!("filling the bench store: {e}"),
    };
    let order = shuffled(ITEMS);
    let hits: Vec<[u8; 16]> = order.iter().map(|&i| key(i)).collect();
    let misses: Vec<[u8; 16]> = order.iter().map(|&i| miss_key(i)).collect();

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    let mut keys = hits.iter().cycle();
    g.bench_function("get_hit/1M", |b| {
        b.iter(|| {
            let k = keys.next().map_or(&[][..], |k| &k[..]);
            store.get(Key::new(black_box(k)), None, NOW)
        })
    });

    let mut keys = misses.iter().cycle();
    g.bench_function("get_miss/1M", |b| {
        b.iter(|| {
            let k = keys.next().map_or(&[][..], |k| &k[..]);
            store.get(Key::new(black_box(k)), None, NOW)
        })
    });

    let mut keys = hits.iter().cycle();
    g.bench_function("set/1M", |b| {
        b.iter(|| {
            let k = keys.next().map_or(&[][..], |k| &k[..]);
            let w = Write {
                value: black_box(VALUE),
                ..Write::default()
            };
            store.store(Mode::Set, Key::new(black_box(k)), w, NOW)
        })
    });
    g.finish();
    check(&store, "store");

    exec(c, store, &hits);
}

/// `get <key>\r\n` parsed, executed and answered (`VALUE … END`) through the engine's request
/// pipeline (one connection on a one-shard core).
fn exec(c: &mut Criterion, store: Store<Vec<u8>>, hits: &[[u8; 16]]) {
    let requests: Vec<Vec<u8>> = hits
        .iter()
        .map(|k| [&b"get "[..], k, b"\r\n"].concat())
        .collect();
    let mut line = Line::new(store);
    let mut out = Vec::new();

    let mut g = c.benchmark_group("exec");
    g.throughput(Throughput::Elements(1));
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut reqs = requests.iter().cycle();
    let mut last = None;
    g.bench_function("get_hit/1M", |b| {
        b.iter(|| {
            let req = reqs.next().map_or(&[][..], |r| &r[..]);
            last = Some(req);
            black_box(line.request(black_box(req)).len())
        })
    });
    g.finish();
    if let Some(req) = last {
        out = line.request(req).to_vec();
    }
    // The last request (if the bench was not filtered out) was a whole hit:
    // `VALUE <key> 0 32\r\n<32 bytes>\r\nEND\r\n`.
    if let Some(key) = out.get(6..22) {
        let want = [&b"VALUE "[..], key, b" 0 32\r\n", VALUE, b"\r\nEND\r\n"].concat();
        assert_eq!(out, want, "last reply: {:?}", String::from_utf8_lossy(&out));
    }
    check(line.store(), "exec");
}

/// The working set must still be whole after a bench, or its numbers measured something else.
fn check(store: &Store<Vec<u8>>, what: &str) {
    let s = store.stats();
    assert_eq!(
        (s.curr_items, s.evictions),
        (ITEMS as u64, 0),
        "{what}: working set changed"
    );
}

criterion_group!(benches, store);
criterion_main!(benches);
