//! Store behaviour that needs time to pass: expiry rules, delayed flush_all, CAS sequences,
//! eviction inside a fixed arena.

mod common;

use std::sync::Arc;

use cache_core::{
    bucket::{BucketMap, Ownership},
    store::{realtime, Key, Mode, Store, StoreConfig, Write, REALTIME_MAXDELTA},
};
use common::Harness;

#[test]
fn exptime_rules() {
    let now = 1_700_000_000;
    // (wire exptime, absolute exptime)
    let cases = [
        (0, 0),                                                // never
        (1, now + 1),                                          // relative
        (REALTIME_MAXDELTA, now + REALTIME_MAXDELTA as u32),   // 30 days: still relative
        (REALTIME_MAXDELTA + 1, REALTIME_MAXDELTA as u32 + 1), // absolute (long past)
        (1_800_000_000, 1_800_000_000),                        // absolute, future
        (-1, 1),                                               // negative: already expired
    ];
    for (wire, abs) in cases {
        assert_eq!(realtime(wire, now), abs, "exptime {wire}");
    }
}

#[test]
fn items_expire_at_their_time() {
    let mut h = Harness::small();
    h.script(&[
        ("set a 0 2 1\r\nx\r\n", "STORED\r\n"),
        ("set b 0 -1 1\r\nx\r\n", "STORED\r\n"),
        ("set c 0 1800000000 1\r\nx\r\n", "STORED\r\n"),
        ("set d 0 1600000000 1\r\nx\r\n", "STORED\r\n"),
        (
            "get a b c d\r\n",
            "VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\nx\r\nEND\r\n",
        ),
    ]);
    h.now += 1;
    h.script(&[("get a\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n")]);
    h.now += 1; // exptime <= now: gone
    h.script(&[
        ("get a\r\n", "END\r\n"),
        ("touch a 10\r\n", "NOT_FOUND\r\n"),
    ]);
    assert_eq!(h.worker().store().stats().get_expired, 3);
}

#[test]
fn delayed_flush_all() {
    let mut h = Harness::small();
    h.script(&[
        ("set old 0 0 1\r\nx\r\n", "STORED\r\n"),
        ("flush_all 10\r\n", "OK\r\n"),
        ("get old\r\n", "VALUE old 0 1\r\nx\r\nEND\r\n"),
    ]);
    h.now += 5;
    h.script(&[("set mid 0 0 1\r\ny\r\n", "STORED\r\n")]);
    // memcached's arithmetic: items last touched at or before flush time + delay - 1 die then
    h.now += 4;
    h.script(&[("get old mid\r\n", "END\r\n")]);
    // (a write in that last second dies with them, as in memcached; one a second later lives)
    h.now += 1;
    h.script(&[("set new 0 0 1\r\nz\r\n", "STORED\r\n")]);
    h.now += 100;
    h.script(&[("get new\r\n", "VALUE new 0 1\r\nz\r\nEND\r\n")]);
}

#[test]
fn immediate_flush_spares_writes_in_the_same_second() {
    let mut h = Harness::small();
    h.script(&[
        ("set a 0 0 1\r\nx\r\n", "STORED\r\n"),
        ("flush_all\r\n", "OK\r\n"),
        ("set b 0 0 1\r\ny\r\n", "STORED\r\n"),
        ("get a b\r\n", "VALUE b 0 1\r\ny\r\nEND\r\n"),
    ]);
    // many flushes wrap the 8-bit generation safely
    for _ in 0..600 {
        h.send("set a 0 0 1\r\nx\r\n");
        assert_eq!(h.send("flush_all\r\n"), "OK\r\n");
        assert_eq!(h.send("get a b\r\n"), "END\r\n");
    }
}

#[test]
fn cas_stride_keeps_shards_apart() {
    // Shard 2 of 4: CAS values 2 + 4n, never colliding with another shard's.
    let cfg = StoreConfig {
        cas_offset: 2,
        cas_stride: 4,
        ..StoreConfig::default()
    };
    let mut h = Harness::new(8 << 20, cfg);
    h.script(&[
        ("set a 0 0 1\r\nx\r\n", "STORED\r\n"),
        ("set b 0 0 1\r\nx\r\n", "STORED\r\n"),
        (
            "gets a b\r\n",
            "VALUE a 0 1 6\r\nx\r\nVALUE b 0 1 10\r\nx\r\nEND\r\n",
        ),
    ]);
}

#[test]
fn the_arena_is_never_exceeded() {
    // 4 pages of 64 KiB; 10 MB of writes in mixed sizes must all land by evicting.
    let cfg = StoreConfig {
        page_size: 64 << 10,
        item_max: 64 << 10,
        ..StoreConfig::default()
    };
    // The store alone: its own API, no pipeline.
    let Ok(mut store) = Store::new(vec![0u8; 4 * (64 << 10)], cfg) else {
        panic!("store")
    };
    let now = 1_700_000_000;
    for i in 0..20_000u32 {
        let len = [10usize, 100, 1000, 5000][i as usize % 4];
        let value = vec![b'v'; len];
        let key = format!("key{i}");
        let w = Write {
            value: &value,
            ..Write::default()
        };
        let (r, _) = store.store(Mode::Set, Key::new(key.as_bytes()), w, now);
        assert_eq!(format!("{r:?}"), "Stored", "write {i} of {len} bytes");
    }
    let s = store.stats();
    assert!(s.evictions + s.slab_reassign_evictions > 15_000);
    assert!(s.bytes <= 4 * (64 << 10));
    assert_eq!(store.slabs().arena_bytes(), 4 * (64 << 10));
    // the newest of each size is still readable
    for i in 19_996..20_000u32 {
        let key = format!("key{i}");
        assert!(
            store.get(Key::new(key.as_bytes()), None, now).is_some(),
            "{key}"
        );
    }
}

#[test]
fn incr_decr_follow_memcached() {
    let mut h = Harness::small();
    h.script(&[
        ("set n 0 0 3\r\n100\r\n", "STORED\r\n"),
        // shorter result: padded in place, the length stays 3
        ("decr n 95\r\n", "5\r\n"),
        ("get n\r\n", "VALUE n 0 3\r\n5  \r\nEND\r\n"),
        // decr never goes below 0
        ("decr n 10\r\n", "0\r\n"),
        // incr wraps at 2^64
        ("set m 0 0 20\r\n18446744073709551615\r\n", "STORED\r\n"),
        ("incr m 1\r\n", "0\r\n"),
        // longer result: a new item of exactly the digits
        ("set w 0 0 1\r\n9\r\n", "STORED\r\n"),
        ("incr w 1\r\n", "10\r\n"),
        ("get w\r\n", "VALUE w 0 2\r\n10\r\nEND\r\n"),
        ("set x 0 0 2\r\nab\r\n", "STORED\r\n"),
        (
            "incr x 1\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
    ]);
}

#[test]
fn lost_vbuckets_are_dropped() {
    use cache_core::bucket::vbucket;
    let mut h = Harness::small();
    for i in 0..1000 {
        h.send(&format!("set k{i} 0 0 1\r\nx\r\n"));
    }
    // This node (0) loses the lower half of the buckets to node 1.
    let lost = |b: u16| b < 8192;
    let expected = (0..1000)
        .filter(|i| lost(vbucket(format!("k{i}").as_bytes())))
        .count();
    let map = BucketMap::from_text("epoch 2\nnode 0 8192-16383\nnode 1 0-8191\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let now = h.now;
    let dropped = h.worker().apply_map(Arc::new(Ownership::new(map, 0)), now);
    assert_eq!(dropped, expected);
    for i in 0..1000 {
        let key = format!("k{i}");
        let reply = h.send(&format!("mg {key}\r\n"));
        if lost(vbucket(key.as_bytes())) {
            assert!(
                reply.starts_with("SERVER_ERROR not my vbucket"),
                "{key}: {reply}"
            );
        } else {
            assert_eq!(reply, "HD\r\n", "{key}");
        }
    }
    assert_eq!(
        h.worker().store().stats().curr_items as usize,
        1000 - expected
    );
}
