//! Versions: the fill/invalidate race from Meta's consistency article (x=42 arriving after
//! x=43) can never leave a stale value, whatever order the messages arrive in and however
//! memory pressure moves things.

mod common;

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use cache_core::{
    pipeline::{
        sim::{Config, Sim},
        Coherence,
    },
    store::{Key, Store, StoreConfig},
};
use common::Harness;

#[test]
fn stale_fill_after_versioned_invalidation_is_refused() {
    let mut h = Harness::small();
    h.script(&[
        // the reader missed and is slowly filling x=42 (version 42); the writer committed 43
        // and its invalidation reaches the cache first
        ("md x E43\r\n", "NF\r\n"),
        // the late fill carries the old version: refused
        ("ms x 2 E42\r\n42\r\n", "NS\r\n"),
        ("mg x v\r\n", "EN\r\n"),
        // the next reader fills the current version
        ("ms x 2 E43\r\n43\r\n", "HD\r\n"),
        ("mg x v c\r\n", "VA 2 c43\r\n43\r\n"),
    ]);
    assert_eq!(h.worker().store().stats().stale_fills_refused, 1);
}

#[test]
fn stale_fill_after_newer_write_is_refused() {
    let mut h = Harness::small();
    h.script(&[
        // the invalidation comes as the new value itself
        ("ms x 2 E43\r\n43\r\n", "HD\r\n"),
        ("ms x 2 E42\r\n42\r\n", "NS\r\n"),
        ("mg x v\r\n", "VA 2\r\n43\r\n"),
        // refilling the same version is allowed (idempotent), newer always wins
        ("ms x 2 E43\r\n43\r\n", "HD\r\n"),
        ("ms x 2 E44\r\n44\r\n", "HD\r\n"),
        ("mg x v c\r\n", "VA 2 c44\r\n44\r\n"),
    ]);
}

#[test]
fn unversioned_writes_carry_the_floor() {
    let mut h = Harness::small();
    h.script(&[
        ("md x E43\r\n", "NF\r\n"),
        // a plain set always lands (memcached semantics) ...
        ("set x 0 0 1\r\np\r\n", "STORED\r\n"),
        // ... but the old fill is still refused afterwards
        ("ms x 2 E42\r\n42\r\n", "NS\r\n"),
        // as it is after a plain delete of that item
        ("delete x\r\n", "DELETED\r\n"),
        ("ms x 2 E42\r\n42\r\n", "NS\r\n"),
        ("ms x 2 E43\r\n43\r\n", "HD\r\n"),
    ]);
}

#[test]
fn versioned_stale_marking_and_leases_compose() {
    let mut h = Harness::small();
    h.script(&[
        ("ms x 2 E42\r\n42\r\n", "HD\r\n"),
        // invalidate-and-keep-serving at version 43: readers see X, one gets the token
        ("md x I E43\r\n", "HD\r\n"),
        ("mg x v c\r\n", "VA 2 c43 X W\r\n42\r\n"),
        // a fill that read the database before the write is refused by version
        ("ms x 2 C43 E42\r\n42\r\n", "NS\r\n"),
        ("ms x 2 C43 E43\r\n43\r\n", "HD\r\n"),
        ("mg x v\r\n", "VA 2\r\n43\r\n"),
    ]);
}

#[test]
fn tombstones_last_one_window() {
    let mut h = Harness::small();
    let window = h.worker().store().config().tombstone_secs;
    h.script(&[("md x E43\r\n", "NF\r\n")]);
    h.now += window - 1;
    h.script(&[("ms x 2 E42\r\n42\r\n", "NS\r\n")]);
    h.now += 1;
    // the window is over: an old version may fill again (documented trade-off)
    h.script(&[("ms x 2 E42\r\n42\r\n", "HD\r\n")]);
    assert_eq!(h.worker().store().stats().tombstones, 0);
}

#[test]
fn tombstones_are_invisible_to_readers() {
    let mut h = Harness::small();
    h.script(&[
        ("md x E7\r\n", "NF\r\n"),
        ("get x\r\n", "END\r\n"),
        ("mg x v\r\n", "EN\r\n"),
        ("gets x\r\n", "END\r\n"),
        ("incr x 1\r\n", "NOT_FOUND\r\n"),
        ("touch x 10\r\n", "NOT_FOUND\r\n"),
        ("delete x\r\n", "NOT_FOUND\r\n"),
        ("add x 0 0 1\r\na\r\n", "STORED\r\n"),
        ("get x\r\n", "VALUE x 0 1\r\na\r\nEND\r\n"),
    ]);
    assert_eq!(h.worker().store().stats().curr_items, 1);
}

#[test]
fn floors_survive_eviction_of_their_tombstones() {
    // A tiny arena: two 64 KiB pages. Tombstones for 50 keys, then a flood of other writes that
    // evicts everything. Every stale fill must still be refused (the floor filter holds them).
    let cfg = StoreConfig {
        page_size: 64 << 10,
        item_max: 64 << 10,
        ..StoreConfig::default()
    };
    let mut h = Harness::new(2 * (64 << 10), cfg);
    h.worker().record_removals();
    for i in 0..50 {
        assert_eq!(h.send(&format!("md k{i:05} E{}\r\n", 1000 + i)), "NF\r\n");
    }
    // Items of the tombstones' own size class, so the CLOCK hand sweeps over them.
    for i in 0..20_000 {
        let r = h.send(&format!("set f{i:05} 0 0 0\r\n\r\n"));
        assert_eq!(r, "STORED\r\n");
    }
    // Evicted by the CLOCK hand, or dropped with a page another class took (keys that share a
    // filter slot with an evicted tombstone inherit its floor and land one class up).
    let st = h.worker().store().stats();
    assert!(
        st.evictions + st.slab_reassign_evictions > 10_000,
        "the flood must evict: {st:?}"
    );
    assert_eq!(
        h.worker().store().stats().tombstones,
        0,
        "every tombstone was evicted"
    );
    for i in 0..50 {
        let stale = h.send(&format!("ms k{i:05} 1 E{}\r\ns\r\n", 999 + i));
        assert_eq!(
            stale, "NS\r\n",
            "key{i}: stale fill admitted after eviction"
        );
        let fresh = h.send(&format!("ms k{i:05} 1 E{}\r\nf\r\n", 1000 + i));
        assert_eq!(fresh, "HD\r\n", "key{i}: current version refused");
    }
}

/// A coherence hook that keeps `k` HOT whenever asked and records every invalidation the store
/// reports, as the engine's XDP promoter would.
#[derive(Debug, Default)]
struct Watch {
    mark: Rc<Cell<bool>>,
    seen: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl Coherence<Vec<u8>> for Watch {
    fn after(&mut self, store: &mut Store<Vec<u8>>, now: u32) {
        store.drain_hot_invalidations(|k| self.seen.borrow_mut().push(k.to_vec()));
        if self.mark.replace(false) {
            assert!(
                store.mark_hot(Key::new(b"k"), now),
                "k is not there to mark"
            );
        }
    }
}

#[test]
fn hot_copies_are_invalidated_by_every_mutation() {
    let mutations = [
        "set k 0 0 1\r\ny\r\n",
        "append k 0 0 1\r\ny\r\n",
        "prepend k 0 0 1\r\ny\r\n",
        "replace k 0 0 1\r\ny\r\n",
        "cas k 0 0 1 1\r\ny\r\n",
        "incr k 1\r\n",
        "touch k 10\r\n",
        "gat 10 k\r\n",
        "delete k\r\n",
        "mg k T5\r\n",
        "ms k 1\r\ny\r\n",
        "md k I\r\n",
        "md k\r\n",
        "ma k\r\n",
        "flush_all\r\n",
    ];
    // Through the pipeline's worker, which calls the hook after every request: the
    // invalidation is reported by the time the mutation's reply exists.
    let run = |script: &[&str], then: &str| {
        let watch = Watch::default();
        let (mark, seen) = (Rc::clone(&watch.mark), Rc::clone(&watch.seen));
        let cfg = Config {
            shards: 1,
            ..Config::default()
        };
        let mut slot = Some(watch);
        let mut sim = Sim::with_hooks(&cfg, 1_700_000_000, |_| slot.take().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let c = sim.connect(0);
        sim.send(c, b"set k 0 0 1\r\n1\r\n");
        sim.run();
        mark.set(true);
        sim.send(c, b"mn\r\n");
        sim.run();
        seen.borrow_mut().clear();
        for m in script {
            sim.send(c, m.as_bytes());
            sim.run();
        }
        let got = seen.borrow().clone();
        let _ = sim.take_read(c);
        (got, then.to_owned())
    };
    for m in mutations {
        // flush_all kills items lazily: the invalidation shows when the item is next touched
        let script: &[&str] = if m.starts_with("flush_all") {
            &[m, "get k\r\n"]
        } else {
            &[m]
        };
        let (seen, _) = run(script, m);
        assert_eq!(
            seen,
            vec![b"k".to_vec()],
            "{m:?} did not invalidate the HOT copy"
        );
    }
    // reads never invalidate
    let (seen, _) = run(&["get k\r\nmg k v\r\ngets k\r\n"], "reads");
    assert!(seen.is_empty(), "{seen:?}");
}
