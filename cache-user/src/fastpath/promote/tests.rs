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
        let t = Arc::new(HotTables::anon(64, 16).unwrap_or_else(|e| panic!("{e}")));
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

    /// The HOT copy of `key`: its text and version.
    fn hot(&self, key: &str) -> Option<(String, u64)> {
        let mut text = Vec::new();
        let e = self
            .p
            .tables()
            .find(key.as_bytes(), khash(key.as_bytes()), &mut text)?;
        Some((String::from_utf8_lossy(&text).into_owned(), e.version))
    }
}

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
        // XDP answers "busy" between scans.
        assert!(!busy.large);
        r.p.tables().add_hits_for_test(busy, 1);
        r.p.tick(&mut r.store, now);
        // IDLE_PERIODS idle scans demote "idle"; "busy" stays.
        assert_eq!(r.hot("idle").is_some(), i + 1 < idle as usize, "scan {i}");
        assert!(r.hot("busy").is_some());
    }
    // XDP's hits count toward "busy"'s popularity (4 gets in user space before, 1 per scan).
    assert!(r.p.tracker.estimate(khash(b"busy")) >= 2 + idle);
    assert_eq!(r.p.demoted, 1);
    // Demoted: the store may promote it again.
    r.get("idle", now() + 5);
    r.get("idle", now() + 5);
    assert!(r.hot("idle").is_some());
}
