use cache_core::hot::encode;

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

#[test]
fn flush_clears_and_quiets() {
    let t = tables();
    for i in 0..6u32 {
        assert!(put(&t, format!("k{i}").as_bytes(), hash(i % 4, 0, i), b"v", ALL).0);
    }
    assert_eq!(t.live_slots(), 6);
    let before = t.flush_count();
    assert!(!t.flushed_since(before));
    t.flush(1000);
    assert!(t.flushed_since(before));
    assert_eq!(t.live_slots(), 0);
    assert!(t.quiet(999) && !t.quiet(1000));
    let mut buf = Vec::new();
    assert!(t.find(b"k0", hash(0, 0, 0), &mut buf).is_none());
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
