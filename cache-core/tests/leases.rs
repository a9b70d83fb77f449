//! Leases: one filler per lease period, fills voided by deletes and newer writes, stale items
//! handing out one recache token (memcached 1.6's meta form and mcrouter's lease commands).

mod common;

use common::Harness;

#[test]
fn memcached_lease_exchange() {
    // The exchange FACTS.md quotes from memcached 1.6.18, on a fresh server.
    let mut h = Harness::small();
    h.script(&[
        // first miss wins: a placeholder with CAS 1; `t` is read before N applies, as memcached
        ("mg foo v c t N30\r\n", "VA 0 c1 t-1 W\r\n\r\n"),
        // everyone else in the lease period is told someone else is filling
        ("mg foo v c t N30\r\n", "VA 0 c1 t30 Z\r\n\r\n"),
        // the winner fills with its token
        ("ms foo 3 C1\r\nbar\r\n", "HD\r\n"),
        // invalidate but keep serving: stale, new CAS, the next reader gets the recache token
        ("md foo I T30\r\n", "HD\r\n"),
        ("mg foo v c\r\n", "VA 3 c3 X W\r\nbar\r\n"),
        ("mg foo v c\r\n", "VA 3 c3 Z X\r\nbar\r\n"),
        // the recache fill clears the stale mark
        ("ms foo 3 C3\r\nnew\r\n", "HD\r\n"),
        ("mg foo v\r\n", "VA 3\r\nnew\r\n"),
    ]);
}

/// Counts replies carrying `W` for 1000 missers spread over `periods` lease periods.
fn herd(h: &mut Harness, lease: u32, periods: u32) -> (usize, usize) {
    let (mut wins, mut waits) = (0, 0);
    let start = h.now;
    for i in 0..1000u32 {
        h.now = start + i * lease * periods / 1000;
        let r = h.send(&format!("mg hot v c N{lease}\r\n"));
        let line = r.lines().next().unwrap_or("");
        if line.ends_with(" W") {
            wins += 1;
        } else if line.ends_with(" Z") {
            waits += 1;
        } else {
            panic!("unexpected reply {r:?}");
        }
    }
    (wins, waits)
}

#[test]
fn thousand_missers_one_winner_per_lease_period() {
    // Nobody fills: each lease period hands out exactly one token.
    for (lease, periods) in [(30, 1), (30, 3), (10, 7), (1, 50)] {
        let mut h = Harness::small();
        let (wins, waits) = herd(&mut h, lease, periods);
        assert_eq!(
            wins, periods as usize,
            "lease {lease}s over {periods} periods"
        );
        assert_eq!(wins + waits, 1000);
    }
}

#[test]
fn winner_fills_and_the_herd_then_hits() {
    let mut h = Harness::small();
    let first = h.send("mg k v c N30\r\n");
    assert_eq!(first, "VA 0 c1 W\r\n\r\n");
    for _ in 0..998 {
        assert_eq!(h.send("mg k v c N30\r\n"), "VA 0 c1 Z\r\n\r\n");
    }
    assert_eq!(h.send("ms k 5 C1\r\nvalue\r\n"), "HD\r\n");
    assert_eq!(h.send("mg k v N30\r\n"), "VA 5\r\nvalue\r\n");
    assert_eq!(h.worker().store().stats().lease_grants, 1);
    assert_eq!(h.worker().store().stats().lease_hot_misses, 998);
}

#[test]
fn fills_after_delete_or_newer_write_are_refused() {
    let mut h = Harness::small();
    h.script(&[
        ("mg k c N30\r\n", "HD c1 W\r\n"),
        // an invalidation arrives while the winner reads the database
        ("delete k\r\n", "DELETED\r\n"),
        // the late fill is refused: the placeholder and its token are gone
        ("ms k 3 C1\r\nold\r\n", "NF\r\n"),
        ("mg k v\r\n", "EN\r\n"),
        // a new lease, then a newer write lands first: the old token no longer matches
        ("mg k c N30\r\n", "HD c2 W\r\n"),
        ("set k 0 0 3\r\nnew\r\n", "STORED\r\n"),
        ("ms k 3 C2\r\nold\r\n", "EX\r\n"),
        ("get k\r\n", "VALUE k 0 3\r\nnew\r\nEND\r\n"),
        // meta delete voids a lease the same way
        ("md k\r\n", "HD\r\n"),
        ("mg k c N30\r\n", "HD c4 W\r\n"),
        ("md k\r\n", "HD\r\n"),
        ("ms k 3 C4\r\nold\r\n", "NF\r\n"),
    ]);
}

#[test]
fn early_recache_with_r() {
    let mut h = Harness::small();
    h.script(&[
        ("set k 0 100 1\r\nx\r\n", "STORED\r\n"),
        // plenty of TTL left: no token
        ("mg k R30 v\r\n", "VA 1\r\nx\r\n"),
    ]);
    h.now += 80; // 20 s left, under the 30 s threshold: exactly one caller wins
    h.script(&[
        ("mg k R30 v\r\n", "VA 1 W\r\nx\r\n"),
        ("mg k R30 v\r\n", "VA 1 Z\r\nx\r\n"),
    ]);
}

#[test]
fn mcrouter_lease_get_and_set() {
    let mut h = Harness::small();
    h.script(&[
        // miss: this caller gets the lease (token = placeholder CAS)
        ("lease-get k\r\n", "LVALUE k 1 0 0\r\n\r\nEND\r\n"),
        // hot miss for everyone else
        ("lease-get k\r\n", "NOT_FOUND_HOT\r\nEND\r\n"),
        // a wrong token is refused, the right one fills
        ("lease-set k 9 0 0 3\r\nbad\r\n", "NOT_STORED\r\n"),
        ("lease-set k 1 5 0 3\r\nval\r\n", "STORED\r\n"),
        ("lease-get k\r\n", "VALUE k 5 3\r\nval\r\nEND\r\n"),
        // a token voided by a delete
        ("delete k\r\n", "DELETED\r\n"),
        (
            "lease-get k other\r\n",
            "LVALUE k 3 0 0\r\n\r\nLVALUE other 4 0 0\r\n\r\nEND\r\n",
        ),
        ("delete k\r\n", "DELETED\r\n"),
        ("lease-set k 3 0 0 3\r\nold\r\n", "NOT_STORED\r\n"),
        ("lease-set other 4 0 0 1 noreply\r\nz\r\n", ""),
        ("get other\r\n", "VALUE other 0 1\r\nz\r\nEND\r\n"),
        // stale items: the winner gets the stale value with a token, the rest wait
        ("md other I\r\n", "HD\r\n"),
        ("lease-get other\r\n", "LVALUE other 6 0 1\r\nz\r\nEND\r\n"),
        ("lease-get other\r\n", "NOT_FOUND_HOT\r\nEND\r\n"),
        ("lease-set other 6 0 0 1\r\ny\r\n", "STORED\r\n"),
        ("lease-get other\r\n", "VALUE other 0 1\r\ny\r\nEND\r\n"),
    ]);
}

#[test]
fn lease_period_is_the_configured_one() {
    let mut h = Harness::small();
    assert_eq!(h.send("lease-get k\r\n"), "LVALUE k 1 0 0\r\n\r\nEND\r\n");
    h.now += h.worker().store().config().lease_secs - 1;
    assert_eq!(h.send("lease-get k\r\n"), "NOT_FOUND_HOT\r\nEND\r\n");
    h.now += 1; // the placeholder expired: a new lease
    assert_eq!(h.send("lease-get k\r\n"), "LVALUE k 2 0 0\r\n\r\nEND\r\n");
}
