use cache_core::store::{Mode, StoreConfig, Write};

use super::*;

/// Now on the wall clock: expiry is converted with the real clocks.
fn now() -> u32 {
    (clock::realtime_ns() / 1_000_000_000) as u32
}

struct Rig {
    store: Store<Vec<u8>>,
    p: Promoter,
}

impl Rig {
    fn new() -> Rig {
        let mut store = match Store::new(vec![0u8; 4 << 20], StoreConfig::default()) {
            Ok(s) => s,
            Err(e) => panic!("store: {e}"),
        };
        store.log_hits(true);
        let t = HotTables::anon(SMALL_SLOTS, LARGE_SLOTS).unwrap_or_else(|e| panic!("{e}"));
        let t = Arc::new(t);
        let owner = Owner {
            shard: 0,
            shards: 1,
        };
        Rig {
            store,
            p: Promoter::new(t, owner),
        }
    }

    fn set(&mut self, key: &str, value: &str, exptime: u32) {
        self.set_at(key, value, exptime, now());
    }

    fn set_at(&mut self, key: &str, value: &str, exptime: u32, now: u32) {
        let w = Write {
            value: value.as_bytes(),
            exptime,
            ..Write::default()
        };
        self.store
            .store(Mode::Set, Key::new(key.as_bytes()), w, now);
        self.p.after_request(&mut self.store, now);
    }

    fn get(&mut self, key: &str, now: u32) {
        self.store.get(Key::new(key.as_bytes()), None, now);
        self.p.after_request(&mut self.store, now);
    }

    /// The HOT copy of `key` XDP would serve (its `epoch` is the serving value XDP computes
    /// from the config's epoch and `HOT_GEN`): its text and version.
    fn hot(&self, key: &str) -> Option<(String, u64)> {
        let mut text = Vec::new();
        let t = self.p.tables();
        let e = t.find(key.as_bytes(), khash(key.as_bytes()), &mut text)?;
        (e.epoch == t.serving()).then(|| (String::from_utf8_lossy(&text).into_owned(), e.version))
    }

    /// Whether any slot holds `key`, servable or not (not yet emptied).
    fn held(&self, key: &str) -> bool {
        let mut text = Vec::new();
        let b = key.as_bytes();
        self.p.tables().find(b, khash(b), &mut text).is_some()
    }

    /// Sets and gets `key` until it is promoted.
    fn promote(&mut self, key: &str, now: u32) {
        self.set_at(key, "v", 0, now);
        self.get(key, now);
        self.get(key, now);
        assert!(self.hot(key).is_some(), "{key} not promoted");
    }

    /// The slot number (`HotTables::slot_at`'s) holding `key`.
    fn slot_of(&self, key: &str) -> u32 {
        let mut text = Vec::new();
        let b = key.as_bytes();
        let e = self.p.tables().find(b, khash(b), &mut text);
        let s = e.unwrap_or_else(|| panic!("{key} not held")).slot;
        if s.large {
            SMALL_SLOTS + s.index
        } else {
            s.index
        }
    }

    /// One whole pass of the scan at `now`, in one call.
    fn pass(&mut self, now: u32) {
        let total = self.p.tables().total_slots();
        self.p
            .scan(&mut self.store, now, clock::monotonic_ns(), total);
    }
}

/// The rig's table sizes.
const SMALL_SLOTS: u32 = 64;
const LARGE_SLOTS: u32 = 16;

#[test]
fn promoted_on_the_second_get_and_dropped_on_a_write() {
    let mut r = Rig::new();
    r.set("k", "v1", 0);
    r.get("k", now());
    assert_eq!(r.hot("k"), None, "one get is not enough");
    r.get("k", now());
    let (text, version) = r.hot("k").unwrap_or_else(|| panic!("not promoted"));
    assert_eq!(text, format!("VALUE k 0 2 {version}\r\nv1\r\n"));
    assert_eq!(r.p.promoted, 1);
    // Already HOT: further gets are not logged, nothing is written again.
    r.get("k", now());
    assert_eq!(r.p.promoted, 1);
    // A write drops the copy before its reply; the new value is promoted afresh later.
    r.set("k", "v2", 0);
    assert_eq!(r.hot("k"), None);
    r.get("k", now());
    assert!(r.hot("k").is_some_and(|(t, _)| t.ends_with("v2\r\n")));
}

#[test]
fn not_promoted() {
    // (why, setup, key)
    let mut r = Rig::new();
    // Expires within a second.
    r.set("short", "v", now() + 1);
    // Marked stale by a meta invalidation.
    r.set("stale", "v", 0);
    let args = cache_core::store::MetaDeleteArgs {
        invalidate: true,
        ..Default::default()
    };
    r.store.meta_delete(Key::new(b"stale"), args, now());
    r.p.after_request(&mut r.store, now());
    for k in ["short", "stale", "missing"] {
        for _ in 0..3 {
            r.get(k, now());
        }
        assert_eq!(r.hot(k), None, "{k} promoted");
    }
    // A longer TTL is fine, and carried as a monotonic deadline.
    r.set("ttl", "v", now() + 100);
    r.get("ttl", now());
    r.get("ttl", now());
    let mut text = Vec::new();
    let e = r.p.tables().find(b"ttl", khash(b"ttl"), &mut text);
    assert!(e.is_some_and(|e| e.expires_ns > clock::monotonic_ns()));
}

#[test]
fn flushes_stop_promotion_until_applied_and_due() {
    let mut r = Rig::new();
    r.set("k", "v", 0);
    // Another shard took a flush_all this shard has not applied yet: no promotion.
    r.p.tables().flush(0);
    for _ in 0..3 {
        r.get("k", now());
    }
    assert_eq!(r.hot("k"), None);
    r.p.flush_applied();
    r.get("k", now());
    assert!(r.hot("k").is_some());
    // A delayed flush (`flush_all 10`) clears the tables and keeps them empty until its time.
    let t0 = now();
    r.p.tables().flush(t0 + 10);
    r.store.apply_flush(10, t0);
    r.p.flush_applied();
    assert_eq!(r.hot("k"), None);
    r.set_at("j", "v", 0, t0 + 5);
    r.get("j", t0 + 5);
    r.get("j", t0 + 5);
    assert_eq!(r.hot("j"), None);
    // After it, items written since are promoted again.
    r.set_at("j", "v", 0, t0 + 10);
    r.get("j", t0 + 10);
    assert!(r.hot("j").is_some());
}

#[test]
fn idle_slots_are_demoted_and_served_ones_refresh_the_store() {
    let mut r = Rig::new();
    r.set("idle", "v", 0);
    r.set("busy", "v", 0);
    for k in ["idle", "busy", "idle", "busy"] {
        r.get(k, now());
    }
    assert!(r.hot("idle").is_some() && r.hot("busy").is_some());
    let mut text = Vec::new();
    let busy = r.p.tables().find(b"busy", khash(b"busy"), &mut text);
    let busy = busy.unwrap_or_else(|| panic!("busy gone")).slot;
    let idle = u32::from(super::IDLE_PERIODS);
    for (i, now) in (now() + 1..now() + 2 + idle).enumerate() {
        // XDP answers "busy" between passes.
        assert!(!busy.large);
        r.p.tables().add_hits_for_test(busy, 1);
        r.pass(now);
        // IDLE_PERIODS idle passes demote "idle"; "busy" stays.
        assert_eq!(r.hot("idle").is_some(), i + 1 < idle as usize, "pass {i}");
        assert!(r.hot("busy").is_some());
    }
    // XDP's hits count toward "busy"'s popularity (4 gets in user space before, 1 per pass).
    assert!(r.p.tracker.estimate(khash(b"busy")) >= 2 + idle);
    assert_eq!(r.p.demoted, 1);
    // Demoted: the store may promote it again.
    r.get("idle", now() + 5);
    r.get("idle", now() + 5);
    assert!(r.hot("idle").is_some());
}

#[test]
fn a_pass_visits_every_slot_once_whatever_the_slices() {
    let mut r = Rig::new();
    let t0 = now();
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    for k in &keys {
        r.promote(k, t0);
    }
    let total = r.p.tables().total_slots();
    // IDLE_PERIODS - 1 passes in slices of uneven sizes that straddle pass boundaries (and
    // a slice larger than a pass counts as one pass): no slot has been idle long enough.
    let slices = [1, 7, 13, 30, 3, 55, 2, 200];
    let want = u64::from(super::IDLE_PERIODS - 1) * u64::from(total);
    let (mut visited, mut i) = (0u64, 0);
    while visited < want {
        let n = slices[i % slices.len()].min(want - visited) as u32;
        r.p.scan(&mut r.store, t0, clock::monotonic_ns(), n);
        visited += u64::from(n.min(total));
        i += 1;
    }
    assert_eq!(r.p.passes, u64::from(super::IDLE_PERIODS - 1));
    assert_eq!(r.p.cursor, 0);
    assert!(keys.iter().all(|k| r.hot(k).is_some()));
    assert_eq!(r.p.demoted, 0);
    // Part of one more pass: exactly the keys in the slots it reached go, each on its 30th
    // idle visit, none twice and none skipped.
    let part = r.slot_of(&keys[7]) + 1;
    let reached: Vec<bool> = keys.iter().map(|k| r.slot_of(k) < part).collect();
    r.p.scan(&mut r.store, t0, clock::monotonic_ns(), part);
    for (k, reached) in keys.iter().zip(reached) {
        assert_eq!(r.hot(k).is_none(), reached, "{k}");
    }
    // The rest of the pass takes the others.
    r.p.scan(&mut r.store, t0, clock::monotonic_ns(), total - part);
    assert!(keys.iter().all(|k| !r.held(k)));
    assert_eq!(r.p.demoted, keys.len() as u64);
    assert_eq!(r.p.tables().live_slots(), 0);
}

#[test]
fn dead_slots_are_demoted_within_a_pass() {
    // (why, what makes every slot unservable at once)
    type Kill = fn(&mut Rig);
    let cases: [(&str, Kill); 2] = [
        // Another shard took a flush_all, which this shard's store has not applied yet (the
        // items stay: a delayed flush leaves them live until its time).
        ("flush_all", |r| {
            r.p.tables().flush(0);
            r.p.flush_applied();
        }),
        ("a newer bucket map", |r| r.p.tables().set_epoch(2)),
    ];
    for (why, kill) in cases {
        let mut r = Rig::new();
        let t0 = now();
        let keys = ["a", "b", "c"];
        for k in keys {
            r.promote(k, t0);
        }
        kill(&mut r);
        assert!(
            keys.iter().all(|k| r.hot(k).is_none() && r.held(k)),
            "{why}"
        );
        // One pass empties each on its first visit, hits or not (XDP served none of them).
        let hit = r.slot_of("b");
        r.p.tables().add_hits_for_test(r.p.tables().slot_at(hit), 5);
        r.pass(t0);
        assert!(keys.iter().all(|k| !r.held(k)), "{why}");
        assert_eq!(r.p.demoted, keys.len() as u64, "{why}");
        assert_eq!(r.p.tables().live_slots(), 0, "{why}");
        // The store was told: the items may be promoted again, under the serving value now.
        for k in keys {
            r.get(k, t0);
            assert!(r.hot(k).is_some(), "{why}: {k} not promoted again");
        }
    }
}

#[test]
fn expired_slots_are_demoted_within_a_pass() {
    let mut r = Rig::new();
    let t0 = now();
    r.promote("forever", t0);
    r.set_at("ttl", "v", t0 + 100, t0);
    r.get("ttl", t0);
    r.get("ttl", t0);
    assert!(r.hot("ttl").is_some());
    // A pass 200 s later (by XDP's clock): the slot past its expiry goes, the other stays.
    let total = r.p.tables().total_slots();
    let later = clock::monotonic_ns() + 200 * 1_000_000_000;
    r.p.scan(&mut r.store, t0, later, total);
    assert!(!r.held("ttl"));
    assert!(r.hot("forever").is_some());
    assert_eq!(r.p.demoted, 1);
}

#[test]
fn a_promotion_a_flush_overtook_undoes_itself() {
    let mut r = Rig::new();
    let t0 = now();
    r.set_at("k", "old", 0, t0);
    r.get("k", t0);
    // The next get would promote "k". Its token is taken, then another shard's flush_all
    // bumps HOT_GEN before the promotion reads the item and writes the slot.
    let token = r.p.tables().flush_count();
    r.p.tables().flush(0);
    r.p.tracker.touch(khash(b"k"));
    r.p.promote_as_of(&mut r.store, Key::new(b"k"), t0, token);
    // It did write a slot: one way went through two claims (the fill, then the undo).
    let t = Arc::clone(r.p.tables());
    let seqs: u32 = (0..t.total_slots())
        .filter_map(|n| t.read(t.slot_at(n)))
        .map(|s| s.seq)
        .sum();
    assert_eq!(seqs, 4);
    // Undone: no slot holds it (servable or not), it is not counted, and the store may
    // promote it again once this shard has applied the flush.
    assert!(!r.held("k"));
    assert_eq!(r.p.promoted, 0);
    r.p.flush_applied();
    r.set_at("k", "new", 0, t0);
    r.get("k", t0);
    assert!(r.hot("k").is_some_and(|(t, _)| t.ends_with("new\r\n")));
}
