use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use cache_core::abi::{SmallSlot, SLOT_LIVE, SMALL_TEXT};

use super::*;

fn table(slots: u32) -> Table<SMALL_TEXT> {
    let r = Region::anon(slots as usize * std::mem::size_of::<SmallSlot>());
    match Table::new(r.unwrap_or_else(|e| panic!("{e}")), slots) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn data(text: &[u8], version: u64) -> SlotData<'_> {
    SlotData {
        state: SLOT_LIVE,
        tag: 7,
        epoch: 1,
        expires_ns: 0,
        version,
        flags: 3,
        key_len: 1,
        lens: [text.len() as u16, 0, 0],
        sums: [0; 3],
        text,
    }
}

#[test]
fn sizes_are_checked() {
    // Not a power of two, fewer than a set, or more than the memory holds.
    for slots in [12, 2] {
        assert!(Table::<SMALL_TEXT>::new(
            Region::anon(1 << 16).unwrap_or_else(|e| panic!("{e}")),
            slots
        )
        .is_err());
    }
    let small = Region::anon(4096).unwrap_or_else(|e| panic!("{e}"));
    assert!(Table::<SMALL_TEXT>::new(small, 64).is_err());
}

#[test]
fn write_then_read() {
    let t = table(16);
    assert_eq!(t.set_mask(), 3);
    assert_eq!(t.set_of(0x1_0000_0006), 8..12);
    let s = t.read(5, None).unwrap_or_else(|| panic!("fresh slot busy"));
    assert_eq!((s.seq, s.state), (0, SLOT_EMPTY));
    assert!(t.claim(5, s.seq));
    // Held: readers see it busy, and a second claim at the old or new value fails.
    assert!(t.read(5, None).is_none());
    assert!(!t.claim(5, 0));
    assert!(!t.claim(5, 1));
    t.store(5, &data(b"VALUE k 3 1\r\nx\r\n", 9), true);
    t.release(5, 0);
    let mut text = Vec::new();
    let s = t.read(5, Some(&mut text)).unwrap_or_else(|| panic!("busy"));
    assert_eq!((s.seq, s.state, s.version, s.flags), (2, SLOT_LIVE, 9, 3));
    assert_eq!(s.key(), b"k");
    assert_eq!(text, b"VALUE k 3 1\r\nx\r\n");
    // A claim with a stale seq (another writer got there first) fails.
    assert!(!t.claim(5, 0));
}

#[test]
fn shorter_text_zeroes_the_rest() {
    let t = table(4);
    let v = t.claim_wait(0);
    t.store(0, &data(b"VALUE k 0 3\r\nabc\r\n", 1), true);
    t.release(0, v);
    let v = t.claim_wait(0);
    t.store(0, &data(b"VALUE k 0 1", 2), false);
    t.release(0, v);
    let mut text = Vec::new();
    let _ = t.read(0, Some(&mut text));
    assert_eq!(text, b"VALUE k 0 1");
    // The layout's promise: zeros after the text.
    let p = t.slot(0);
    // SAFETY: reading an in-bounds field of a slot nobody writes now.
    let whole = unsafe { (*p).text };
    assert!(whole[text.len()..].iter().all(|&b| b == 0));
}

#[test]
fn hits_reset_only_for_a_new_key() {
    let t = table(4);
    t.hits(1).store(5, Ordering::Relaxed);
    let v = t.claim_wait(1);
    t.store(1, &data(b"x", 1), false);
    t.release(1, v);
    assert_eq!(t.hits(1).load(Ordering::Relaxed), 5);
    let v = t.claim_wait(1);
    t.store(1, &data(b"x", 1), true);
    t.release(1, v);
    assert_eq!(t.hits(1).load(Ordering::Relaxed), 0);
}

#[test]
fn readers_never_see_a_torn_slot() {
    // One writer alternates two self-consistent contents (version n, text all one byte derived
    // from n); readers check every read they accept is one of them, whole.
    let t = Arc::new(table(4));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (t, stop, seen) = (Arc::clone(&t), Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                let mut text = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    // (Before the first write the slot is empty: nothing to check.)
                    if let Some(s) = t.read(2, Some(&mut text)).filter(|s| s.state == SLOT_LIVE) {
                        let fill = b'a' + (s.version % 26) as u8;
                        assert!(
                            text.iter().all(|&b| b == fill),
                            "torn read at {}",
                            s.version
                        );
                        assert_eq!(text.len(), 100 + (s.version % 2) as usize * 50);
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // At least 20k writes, and on until the readers have checked 1000 reads (or 10 s passed:
    // a starved machine must not hang the test).
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while n < 20_000 || (seen.load(Ordering::Relaxed) < 1000 && start.elapsed().as_secs() < 10) {
        n += 1;
        let buf = vec![b'a' + (n % 26) as u8; 100 + (n % 2) as usize * 50];
        let v = t.claim_wait(2);
        t.store(2, &data(&buf, n), false);
        t.release(2, v);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap_or_else(|_| panic!("reader panicked"));
    }
    assert!(seen.load(Ordering::Relaxed) > 0, "no read completed");
}

#[test]
fn concurrent_claims_have_one_winner() {
    // Many threads race to claim the same even seq: exactly one wins each round.
    let t = Arc::new(table(4));
    for round in 0..200u32 {
        let v = round * 2;
        let wins: usize = (0..4)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || usize::from(t.claim(3, v)))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum();
        assert_eq!(wins, 1, "round {round}");
        t.release(3, v);
    }
}
