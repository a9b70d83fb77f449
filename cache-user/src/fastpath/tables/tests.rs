use cache_core::{abi::serving, hot::encode};

use super::*;

const ALL: Owner = Owner {
    shard: 0,
    shards: 1,
};

/// A hash in set `set` whose tag puts it on shard `vbucket % shards` with `vbucket`.
fn hash(set: u32, vbucket: u32, salt: u32) -> u64 {
    (u64::from((vbucket << 18) | salt) << 32) | u64::from(set)
}

fn text(key: &[u8], value: &[u8], cas: u64) -> HotText {
    let mut t = HotText::new();
    assert!(encode(key, 0, value, cas, &mut t));
    t
}

fn put(t: &HotTables, key: &[u8], h: u64, value: &[u8], owner: Owner) -> (bool, Vec<u8>) {
    let txt = text(key, value, 1);
    let f = Fill {
        key,
        hash: h,
        text: &txt,
        flags: 0,
        version: 1,
        expires_ns: 0,
        flushes: t.flush_count(),
    };
    let mut evicted = Vec::new();
    let ok = t.write(&f, owner, |_, _| true, &mut evicted);
    (ok, evicted)
}

fn tables() -> HotTables {
    HotTables::anon(16, 8).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn fill_find_invalidate() {
    let t = tables();
    assert_eq!(t.masks(), (3, 1));
    let h = hash(1, 0, 1);
    assert_eq!(put(&t, b"k", h, b"v", ALL), (true, vec![]));
    let mut txt = Vec::new();
    let e = t
        .find(b"k", h, &mut txt)
        .unwrap_or_else(|| panic!("not found"));
    assert_eq!(txt, b"VALUE k 0 1 1\r\nv\r\n");
    assert!(!e.slot.large && (4..8).contains(&e.slot.index));
    assert_eq!((e.version, e.epoch), (1, 1));
    assert_eq!(t.live_slots(), 1);
    // Rewriting the same key uses the same way.
    assert!(put(&t, b"k", h, b"w", ALL).0);
    assert_eq!(t.find(b"k", h, &mut txt).map(|e| e.slot), Some(e.slot));
    assert_eq!(t.live_slots(), 1);
    // Another key of the same tag is not invalidated by this one.
    assert!(put(&t, b"j", h, b"v", ALL).0);
    t.invalidate(b"k", h);
    assert!(t.find(b"k", h, &mut txt).is_none());
    assert!(t.find(b"j", h, &mut txt).is_some());
    assert_eq!(t.live_slots(), 1);
}

#[test]
fn a_key_moves_tables_when_its_text_grows() {
    let t = tables();
    let h = hash(0, 0, 9);
    assert!(put(&t, b"k", h, b"small", ALL).0);
    assert!(put(&t, b"k", h, &[b'x'; 400], ALL).0);
    let mut txt = Vec::new();
    let e = t.find(b"k", h, &mut txt).unwrap_or_else(|| panic!("gone"));
    // Only the large copy is left.
    assert!(e.slot.large);
    assert_eq!(t.live_slots(), 1);
}

#[test]
fn choose_way() {
    let t = tables();
    let me = Owner {
        shard: 0,
        shards: 2,
    };
    let other = Owner {
        shard: 1,
        shards: 2,
    };
    // Fill set 2: two keys of shard 0 (even vbuckets), two of shard 1.
    for (k, vb) in [(b"a", 0), (b"b", 1), (b"c", 2), (b"d", 3)] {
        let owner = if vb % 2 == 0 { me } else { other };
        assert_eq!(put(&t, k, hash(2, vb, 0), b"v", owner), (true, vec![]));
    }
    t.small.hits(8).store(10, Ordering::Relaxed); // a
    t.small.hits(10).store(3, Ordering::Relaxed); // c
    t.small.hits(9).store(0, Ordering::Relaxed); // b (shard 1's: never our victim)
                                                 // A full set: the victim is shard 0's way with the fewest hits, if admitted.
    let txt = text(b"e", b"v", 1);
    let f = Fill {
        key: b"e",
        hash: hash(2, 4, 0),
        text: &txt,
        flags: 0,
        version: 1,
        expires_ns: 0,
        flushes: t.flush_count(),
    };
    let mut ev = Vec::new();
    let mut asked = None;
    assert!(!t.write(
        &f,
        me,
        |vh, hits| {
            asked = Some((vh, hits));
            false
        },
        &mut ev
    ));
    assert_eq!(asked, Some((khash(b"c"), 3)));
    assert!(t.write(&f, me, |_, _| true, &mut ev));
    assert_eq!(ev, b"c");
    let mut buf = Vec::new();
    assert!(t.find(b"c", hash(2, 2, 0), &mut buf).is_none());
    // Shard 1 may only take its own ways: with none admitted it writes nothing.
    let txt_f = text(b"f", b"v", 1);
    let f1 = Fill {
        key: b"f",
        hash: hash(2, 5, 0),
        ..f
    };
    let f1 = Fill { text: &txt_f, ..f1 };
    let mut asked = None;
    assert!(!t.write(
        &f1,
        other,
        |vh, _| {
            asked = Some(vh);
            false
        },
        &mut ev
    ));
    assert_eq!(asked, Some(khash(b"b")));
    // An expired way of ours goes before any victim, without asking.
    let txt2 = text(b"a", b"v", 1);
    let expired = Fill {
        key: b"a",
        hash: hash(2, 0, 0),
        text: &txt2,
        flags: 0,
        version: 2,
        expires_ns: 1,
        flushes: t.flush_count(),
    };
    assert!(t.write(&expired, me, |_, _| panic!("asked"), &mut ev));
    assert!(ev.is_empty(), "same key: nothing displaced");
    let txt_g = text(b"g", b"v", 1);
    let g = Fill {
        key: b"g",
        hash: hash(2, 6, 0),
        text: &txt_g,
        ..f
    };
    assert!(t.write(&g, me, |_, _| panic!("asked"), &mut ev));
    assert_eq!(ev, b"a");
}

#[test]
fn a_held_way_is_skipped() {
    let t = tables();
    let h = hash(3, 0, 0);
    // Another writer holds way 12 (the first of set 3): the write takes the next one.
    let v = t.small.claim_wait(12);
    assert!(put(&t, b"k", h, b"v", ALL).0);
    let mut buf = Vec::new();
    assert_eq!(t.find(b"k", h, &mut buf).map(|e| e.slot.index), Some(13));
    t.small.release(12, v);
}

/// Whether XDP would serve `key`, by its rule: a live copy whose `epoch` is the serving value
/// it computes from the config's epoch (`epoch` here) and `HOT_GEN` (the word `flush` bumps).
fn servable(t: &HotTables, epoch: u32, key: &[u8], h: u64) -> bool {
    let mut buf = Vec::new();
    let e = t.find(key, h, &mut buf);
    e.is_some_and(|e| e.epoch == serving(epoch, t.flush_count()))
}

#[test]
fn flush_makes_every_slot_unservable_at_once() {
    let t = tables();
    let keys: Vec<(String, u64)> = (0..6u32)
        .map(|i| (format!("k{i}"), hash(i % 4, 0, i)))
        .collect();
    for (k, h) in &keys {
        assert!(put(&t, k.as_bytes(), *h, b"v", ALL).0);
    }
    assert!(keys.iter().all(|(k, h)| servable(&t, 1, k.as_bytes(), *h)));
    let before = t.flush_count();
    assert!(!t.flushed_since(before));
    t.flush(1000);
    assert!(t.flushed_since(before));
    // No slot was touched: all six are still there, live, and none is servable.
    assert_eq!(t.live_slots(), 6);
    let mut buf = Vec::new();
    assert!(keys
        .iter()
        .all(|(k, h)| t.find(k.as_bytes(), *h, &mut buf).is_some()));
    assert!(keys.iter().all(|(k, h)| !servable(&t, 1, k.as_bytes(), *h)));
    // A delayed flush holds promotions until its time.
    assert!(t.quiet(999) && !t.quiet(1000));
    // A fill after the flush is servable, over the flushed copy of its key.
    assert!(put(&t, b"k0", keys[0].1, b"w", ALL).0);
    assert!(servable(&t, 1, b"k0", keys[0].1));
    assert_eq!(t.live_slots(), 6);
    // Once XDP's config moves to a newer bucket map, the same holds for the epoch's part.
    t.set_epoch(2);
    assert!(!servable(&t, 2, b"k0", keys[0].1));
    assert!(put(&t, b"k0", keys[0].1, b"x", ALL).0);
    assert!(servable(&t, 2, b"k0", keys[0].1));
}

#[test]
fn flushed_ways_are_free_to_take() {
    let t = tables();
    // Fill set 2 with this shard's keys, then flush.
    for (k, salt) in [(b"a", 0), (b"b", 1), (b"c", 2), (b"d", 3)] {
        assert!(put(&t, k, hash(2, 0, salt), b"v", ALL).0);
    }
    t.flush(0);
    // A new key takes a flushed way as a dead one: no victim to weigh, the old key displaced.
    let txt = text(b"e", b"v", 1);
    let f = Fill {
        key: b"e",
        hash: hash(2, 0, 9),
        text: &txt,
        flags: 0,
        version: 1,
        expires_ns: 0,
        flushes: t.flush_count(),
    };
    let mut ev = Vec::new();
    assert!(t.write(&f, ALL, |_, _| panic!("asked to admit"), &mut ev));
    assert_eq!(ev, b"a");
    assert!(servable(&t, 1, b"e", hash(2, 0, 9)));
}

#[test]
fn a_fill_a_flush_overtook_is_never_servable() {
    let t = tables();
    let h = hash(1, 0, 0);
    // A promotion takes its token and reads its item; a flush comes; then it writes the slot.
    let token = t.flush_count();
    t.flush(0);
    let txt = text(b"k", b"old", 1);
    let f = Fill {
        key: b"k",
        hash: h,
        text: &txt,
        flags: 0,
        version: 1,
        expires_ns: 0,
        flushes: token,
    };
    let mut ev = Vec::new();
    assert!(t.write(&f, ALL, |_, _| true, &mut ev));
    // Written, yet unservable from the first instant; the promoter's check sees the flush.
    let mut buf = Vec::new();
    assert!(t.find(b"k", h, &mut buf).is_some());
    assert!(!servable(&t, 1, b"k", h));
    assert!(t.flushed_since(token));
}

#[test]
fn scan_and_demote() {
    let t = tables();
    let h = hash(1, 0, 0);
    assert!(put(&t, b"k", h, b"v", ALL).0);
    let mut buf = Vec::new();
    let e = t.find(b"k", h, &mut buf).unwrap_or_else(|| panic!("gone"));
    assert_eq!(t.total_slots(), 24);
    assert_eq!(t.slot_at(e.slot.index), e.slot);
    assert_eq!(
        t.slot_at(17),
        SlotRef {
            large: true,
            index: 1
        }
    );
    assert_eq!(t.glance(e.slot), (SLOT_LIVE, hot_tag(h)));
    t.small.hits(e.slot.index).store(4, Ordering::Relaxed);
    assert_eq!(t.take_hits(e.slot), 4);
    assert_eq!(t.take_hits(e.slot), 0);
    let s = t.read(e.slot).unwrap_or_else(|| panic!("busy"));
    // A demotion with a stale read loses to the rewrite in between.
    assert!(put(&t, b"k", h, b"w", ALL).0);
    assert!(!t.demote(e.slot, &s));
    let s = t.read(e.slot).unwrap_or_else(|| panic!("busy"));
    assert!(t.demote(e.slot, &s));
    assert_eq!(t.live_slots(), 0);
}
