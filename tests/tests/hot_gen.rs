//! `HOT_GEN`, the `flush_all` count the XDP program adds to the bucket-map epoch: a HOT slot is
//! served only while its `epoch` equals that sum (`cache_abi::serving`), so a flush — one add to
//! the mapped word — stops every older slot at once, with nothing cleared. Runs the program
//! under `BPF_PROG_TEST_RUN`; needs `cargo xtask ebpf`, and root: skipped without it.

use anyhow::{ensure, Context, Result};
use aya::maps::{Array, MapData};
use cache_abi::{counter::XDP_MISS, serving, BucketEntry};
use kcache_tests::{
    show, skip,
    xdp::{
        frame::{self, Shape},
        Prog, XDP_PASS, XDP_TX,
    },
};

const PORT: u16 = 11313;

/// What user space's `HotTables::flush` does, through the map rather than its mapping.
fn set_flushes(p: &mut Prog, n: u32) -> Result<()> {
    let map = p.ebpf.map_mut("HOT_GEN").context("no HOT_GEN map")?;
    let mut a: Array<&mut MapData, u32> = Array::try_from(map)?;
    a.set(0, n, 0)?;
    Ok(())
}

/// The reply XDP sends for `get k` (`None` if the packet went up), and whether a miss was the
/// reason it went up.
fn get_k(p: &Prog) -> Result<(Option<Vec<u8>>, bool)> {
    let pkt = frame::request(Shape::default(), PORT, &frame::payload(7, b"get k\r\n"));
    let misses = p.counters()?[XDP_MISS as usize];
    let r = p.run(&pkt, 1)?;
    let missed = p.counters()?[XDP_MISS as usize] == misses + 1;
    match r.action {
        XDP_TX => {
            let a = frame::answer(&r.out).map_err(anyhow::Error::msg)?;
            Ok((Some(a.payload[8..].to_vec()), missed))
        }
        XDP_PASS => Ok((None, missed)),
        other => anyhow::bail!("action {other}"),
    }
}

#[test]
fn a_flush_count_bump_stops_every_older_slot_at_once() -> Result<()> {
    if skip::unless_root("BPF_PROG_TEST_RUN")? {
        return Ok(());
    }
    let mut p = Prog::load(PORT, &[])?;
    // (what happens, HOT_GEN, config epoch, the value filled then (None: no fill), the value
    // served (None: a miss))
    let cases = [
        ("filled before any flush", 0, 1, Some("a"), Some("a")),
        ("a flush: the same slot, untouched", 1, 1, None, None),
        ("filled after it, as epoch + 1", 1, 1, Some("b"), Some("b")),
        ("a newer bucket map, same count", 1, 2, None, None),
        ("two more flushes under it", 3, 2, Some("c"), Some("c")),
    ];
    for (what, flushes, epoch, fill, served) in cases {
        let want = served.map(|v| format!("VALUE k 0 1\r\n{v}\r\nEND\r\n").into_bytes());
        set_flushes(&mut p, flushes)?;
        let mut cfg = p.config;
        cfg.epoch = epoch;
        p.set_config(cfg)?;
        p.set_buckets(|_| BucketEntry { owner: 0, epoch })?;
        if let Some(v) = fill {
            let value = serving(epoch, flushes);
            p.put_with(b"k", 0, v.as_bytes(), 1, |h| h.epoch = value)?;
        }
        let (got, missed) = get_k(&p)?;
        ensure!(
            got == want,
            "{what}: got {:?}",
            got.as_deref().map(|g| show(g, 80))
        );
        ensure!(
            got.is_some() || missed,
            "{what}: went up, but not as a miss"
        );
    }
    Ok(())
}
