//! Memory per item on live servers: memcached 1.6 and kcache side by side, each filled with N
//! items of 16-byte keys (`key:` and the zero-padded index, the keys `kcache bench` uses) and
//! 32-byte values.
//!
//! For each N each server runs alone and fresh, one thread (`-t 1`) on the last CPU, and both get
//! the same `-m`: 160 B per item plus 64 MiB, room for memcached's 120-byte chunks and kcache's
//! 80-byte ones with plenty to spare. Four connections each pipeline `set <key> 0 0 32 noreply` for
//! a quarter of the keys, then `version`, whose reply says the server has read them all. At the
//! end `evictions` must be 0, `curr_items` N and the first and last keys must read back. Before
//! the "before" figures the same connections send 2M `touch` misses (68 MB, nothing stored), so
//! memory that traffic alone faults in (kcache's 4 MiB receive-buffer ring, memcached's read
//! buffers) counts on both sides of every difference instead of as items.
//!
//! The two servers take memory in different ways, so one method cannot serve both:
//!
//! - **rss** (memcached): resident memory after the load minus before it, summed over
//!   `/proc/PID/smaps`. memcached mallocs 1 MiB slab pages as its classes need them and doubles
//!   its hash table whenever items exceed 1.5 per bucket, so the difference is what N items cost
//!   it, malloc's and the kernel's rounding included. The doubling runs at most once a second on
//!   a background thread, so right after a fast load the table lags (at 10M items it was still at
//!   2^22 buckets, 2.4 items per bucket); every figure is taken once it has caught up
//!   (`hash_power_level` holds the items at 1.5 per bucket at most, `hash_is_expanding` 0), as it
//!   would on any server left running. The method says nothing for kcache, which maps and
//!   `mlock`s its whole `-m` arena at start-up: its RSS is `-m` whatever the arena holds.
//! - **stats** (both: the like-for-like pair): what the server says it holds for its items,
//!   `total_malloced` of `stats slabs` (slab pages handed to classes, whole 1 MiB pages, the last
//!   one part-filled on both) plus `hash_bytes` of `stats` (memcached's array of bucket pointers,
//!   kcache's index). Neither counts connection buffers, threads or allocator overhead; the rss
//!   row shows how little those add for memcached.
//! - **rss outside the arena** (kcache): the kernel's check of kcache's stats figure. Resident
//!   memory outside the `mlock`ed mappings (the arena; VmFlags `lo`) after minus before, plus
//!   `total_malloced` for the arena pages that hold items. The index's control bytes are written
//!   when it is allocated at start-up, so they count in "before" and this row comes out one byte
//!   per index bucket below the stats row.
//!
//! kcache sizes its index at start-up for `-m / 128` items and grows it only past that, so its
//! `hash_bytes` depends on `-m` as well as on N. At 1M and 10M items the `-m` above pre-sizes it
//! to just what N items grow it to anyway (2^21 and 2^24 buckets of 5 bytes); at small N, where
//! the 64 MiB base dominates `-m`, it holds more than N needs (5 MiB at 100k items instead of
//! 0.6 MiB), as it would on a real server with that `-m`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    ops::Range,
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::Serialize;

use super::{
    server::{self, Server},
    OUT_DIR,
};

/// Key length, as the bench's `--key-size 16`: `key:` and 12 digits.
const KEY_LEN: usize = 16;
const KEY_PREFIX: &str = "key:";
/// Every item's value.
const VALUE: [u8; 32] = [b'v'; 32];
/// Loading connections, and `set`s per write on each.
const CONNS: u64 = 4;
const BATCH: u64 = 2048;
/// Requests (`touch` misses, 34 bytes each) sent before measuring "before".
const WARM_UP: u64 = 2_000_000;
/// `-m` per item, and on top.
const MB_PER_ITEM: u64 = 160;
const MB_BASE: u64 = 64;
/// How long a loading connection or the settling may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// The methods, as labelled in the rows (see the module docs).
const RSS: &str = "rss: resident after - before";
const STATS: &str = "stats: total_malloced + hash_bytes";
const HEAP: &str = "rss outside the arena: after - before, + total_malloced";

/// One server's memory for N items by one method.
#[derive(Debug, Clone, Serialize)]
pub(super) struct MemoryRow {
    pub(super) server: &'static str,
    pub(super) items: u64,
    pub(super) method: &'static str,
    pub(super) bytes_total: u64,
    pub(super) bytes_per_item: f64,
    /// The server's `-m`, the same for both.
    pub(super) memory_mb: u64,
    /// Whole-process resident bytes before and after the load.
    pub(super) rss_before: u64,
    pub(super) rss_after: u64,
    /// Resident bytes of `mlock`ed mappings after the load: kcache's arena, 0 for memcached.
    pub(super) locked_after: u64,
    /// `stats slabs` total_malloced and `stats` hash_bytes after the load.
    pub(super) total_malloced: u64,
    pub(super) hash_bytes: u64,
    /// Seconds from the first `set` to the last `version` reply.
    pub(super) load_s: f64,
}

/// Fills each server with each of `items` keys in turn and measures its memory (module docs).
/// Rows come per N, memcached's before kcache's.
pub(super) fn run(kcache_bin: &str, items: &[u64]) -> Result<Vec<MemoryRow>> {
    fs::create_dir_all(OUT_DIR).with_context(|| format!("creating {OUT_DIR}"))?;
    let last_cpu = thread::available_parallelism().map_or(0, |n| n.get() - 1);
    let cpus = last_cpu.to_string();
    let mut rows = Vec::new();
    for &n in items {
        let room = 10u64.pow((KEY_LEN - KEY_PREFIX.len()) as u32);
        ensure!(
            (1..=room).contains(&n),
            "{n} items: 1 to {room} fit {KEY_LEN}-byte keys"
        );
        let mb = memory_mb(n);
        // Each server is killed when dropped, on errors too.
        let memcached = server::memcached(&cpus, 1, mb as usize)?;
        let m = measure(&memcached, n)?;
        drop(memcached);
        rows.extend(memory_rows(Kind::Memcached, n, mb, &m));
        let kcache = server::kcache_at(kcache_bin, &cpus, 1, mb as usize)?;
        let m = measure(&kcache, n)?;
        drop(kcache);
        rows.extend(memory_rows(Kind::Kcache, n, mb, &m));
    }
    Ok(rows)
}

/// The rows as a markdown table.
pub(super) fn markdown(rows: &[MemoryRow]) -> String {
    let mut md = String::from(
        "| items | server | method | bytes | bytes per item | RSS before → after MiB | -m MiB |\n\
         |---:|---|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.1} → {:.1} | {} |",
            r.items,
            r.server,
            r.method,
            r.bytes_total,
            r.bytes_per_item,
            mib(r.rss_before),
            mib(r.rss_after),
            r.memory_mb
        );
    }
    // The like-for-like pair: the stats method, which both servers have.
    let stats = |server: &str, n: u64| {
        rows.iter()
            .find(|r| r.server == server && r.items == n && r.method.starts_with("stats"))
            .map(|r| r.bytes_per_item)
    };
    let mut counts: Vec<u64> = rows.iter().map(|r| r.items).collect();
    counts.dedup();
    for n in counts {
        if let (Some(k), Some(m)) = (stats("kcache", n), stats("memcached", n)) {
            let _ = writeln!(
                md,
                "| {n} | **kcache / memcached** | stats | | **{:.2}×** | | |",
                k / m
            );
        }
    }
    md
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memcached,
    Kcache,
}

/// What one server measured for N items.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    before: Resident,
    after: Resident,
    total_malloced: u64,
    hash_bytes: u64,
    load_s: f64,
}

/// Resident bytes of a process, in all and in `mlock`ed mappings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Resident {
    total: u64,
    locked: u64,
}

/// `-m` in MiB for `n` items.
fn memory_mb(n: u64) -> u64 {
    (n * MB_PER_ITEM).div_ceil(1 << 20) + MB_BASE
}

/// Loads `n` items into a fresh `server` and takes its figures.
fn measure(server: &Server, n: u64) -> Result<Measured> {
    // Stats answer once the server's threads run (kcache's arena is mapped and locked by then).
    server.stats()?;
    // Fault in what traffic alone takes (receive buffers), so "before" holds it too.
    pipeline(server, WARM_UP, push_touch)?;
    ensure!(
        figure(&server.stats()?, "curr_items")? == 0,
        "{} is not empty",
        server.name
    );
    let pid = server.child.id();
    let before = resident(pid)?;
    let started = Instant::now();
    pipeline(server, n, push_set)?;
    let load_s = started.elapsed().as_secs_f64();
    let stats = settle(server, n)?;
    ensure!(
        figure(&stats, "evictions")? == 0,
        "{} evicted items; give it more memory",
        server.name
    );
    read_back(server, &[0, n - 1])?;
    let after = resident(pid)?;
    let total_malloced = figure(&server.stats_group("slabs")?, "total_malloced")?;
    let hash_bytes = figure(&stats, "hash_bytes")?;
    println!(
        "memory: {} with {n} items: loaded in {load_s:.1} s; RSS {:.1} -> {:.1} MiB; \
         total_malloced {:.1} MiB; hash_bytes {:.1} MiB",
        server.name,
        mib(before.total),
        mib(after.total),
        mib(total_malloced),
        mib(hash_bytes)
    );
    Ok(Measured {
        before,
        after,
        total_malloced,
        hash_bytes,
        load_s,
    })
}

/// The rows of one server's measurement (module docs).
fn memory_rows(kind: Kind, n: u64, memory_mb: u64, m: &Measured) -> Vec<MemoryRow> {
    let outside = |r: Resident| r.total.saturating_sub(r.locked);
    let stats = m.total_malloced + m.hash_bytes;
    let (server, methods) = match kind {
        Kind::Memcached => (
            "memcached",
            vec![
                (RSS, m.after.total.saturating_sub(m.before.total)),
                (STATS, stats),
            ],
        ),
        Kind::Kcache => (
            "kcache",
            vec![
                (STATS, stats),
                (
                    HEAP,
                    outside(m.after).saturating_sub(outside(m.before)) + m.total_malloced,
                ),
            ],
        ),
    };
    methods
        .into_iter()
        .map(|(method, bytes_total)| MemoryRow {
            server,
            items: n,
            method,
            bytes_total,
            bytes_per_item: bytes_total as f64 / n as f64,
            memory_mb,
            rss_before: m.before.total,
            rss_after: m.after.total,
            locked_after: m.after.locked,
            total_malloced: m.total_malloced,
            hash_bytes: m.hash_bytes,
            load_s: m.load_s,
        })
        .collect()
}

/// Sends `line` for keys `0..n` over [`CONNS`] connections, each its own contiguous share.
fn pipeline(server: &Server, n: u64, line: fn(&mut Vec<u8>, u64)) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], server.tcp));
    let shares: Vec<Range<u64>> = (0..CONNS)
        .map(|c| n * c / CONNS..n * (c + 1) / CONNS)
        .collect();
    thread::scope(|s| {
        let loaders: Vec<_> = shares
            .into_iter()
            .map(|keys| s.spawn(move || pipeline_share(addr, keys, line)))
            .collect();
        loaders
            .into_iter()
            .try_for_each(|l| l.join().map_err(|_| anyhow!("a sending thread panicked"))?)
    })
    .with_context(|| format!("sending {n} requests to {}", server.name))
}

/// Pipelines `line` (a `noreply` request) for `keys`, then `version`, and waits for its reply;
/// anything else the server says on the way is an error.
fn pipeline_share(addr: SocketAddr, keys: Range<u64>, line: fn(&mut Vec<u8>, u64)) -> Result<()> {
    let mut conn = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let mut replies = conn.try_clone()?;
    replies.set_read_timeout(Some(PATIENCE))?;
    thread::scope(|s| {
        // Read all along, so an error reply can never fill the socket and stall the server.
        let reader = s.spawn(move || read_until_version(&mut replies));
        let sent = send(&mut conn, keys, line);
        if sent.is_err() {
            // Unblocks the reader.
            let _ = conn.shutdown(Shutdown::Both);
        }
        let text = reader
            .join()
            .map_err(|_| anyhow!("the reply reader panicked"))?;
        sent?;
        let text = text?;
        ensure!(
            text.starts_with(b"VERSION "),
            "unexpected reply to noreply requests: {:?}",
            String::from_utf8_lossy(text.split(|&b| b == b'\n').next().unwrap_or_default())
        );
        Ok(())
    })
}

fn send(conn: &mut TcpStream, keys: Range<u64>, line: fn(&mut Vec<u8>, u64)) -> Result<()> {
    let mut buf = Vec::new();
    let mut next = keys.start;
    while next < keys.end {
        let end = keys.end.min(next + BATCH);
        buf.clear();
        for i in next..end {
            line(&mut buf, i);
        }
        conn.write_all(&buf).context("sending requests")?;
        next = end;
    }
    conn.write_all(b"version\r\n").context("sending version")?;
    Ok(())
}

/// Everything the server sends up to and including its `VERSION ..` line.
fn read_until_version(conn: &mut TcpStream) -> Result<Vec<u8>> {
    let (mut text, mut chunk) = (Vec::new(), [0u8; 4096]);
    loop {
        let n = conn.read(&mut chunk).context("reading replies")?;
        ensure!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&text)
        );
        text.extend_from_slice(&chunk[..n]);
        if let Some(at) = find(&text, b"VERSION ") {
            if find(&text[at..], b"\r\n").is_some() {
                return Ok(text);
            }
        }
    }
}

/// Waits until [`settled`]; the final `stats`.
fn settle(server: &Server, n: u64) -> Result<BTreeMap<String, u64>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = server.stats()?;
        if settled(&stats, n) {
            return Ok(stats);
        }
        if Instant::now() > deadline {
            bail!(
                "{} not settled after {} s: curr_items {:?} of {n}, hash_power_level {:?}, \
                 hash_is_expanding {:?}",
                server.name,
                PATIENCE.as_secs(),
                stats.get("curr_items"),
                stats.get("hash_power_level"),
                stats.get("hash_is_expanding"),
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// All `n` items are in, and memcached's hash table has caught up with them: its clock checks
/// once a second whether items exceed 1.5 per bucket and if so a background thread doubles the
/// table, so right after a fast load it lags for a few seconds. kcache's index grows as it
/// inserts and has neither field.
fn settled(stats: &BTreeMap<String, u64>, n: u64) -> bool {
    let items = stats.get("curr_items").copied();
    let expanding = stats.get("hash_is_expanding").copied().unwrap_or(0);
    let grown = stats
        .get("hash_power_level")
        .is_none_or(|&p| n <= 3u64.checked_shl(p as u32).unwrap_or(u64::MAX) / 2);
    items == Some(n) && expanding == 0 && grown
}

/// Gets each of `keys` and checks it holds [`VALUE`].
fn read_back(server: &Server, keys: &[u64]) -> Result<()> {
    let mut conn = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], server.tcp)))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (mut ask, mut want) = (Vec::new(), Vec::new());
    for &i in keys {
        ask.extend_from_slice(b"get ");
        push_key(&mut ask, i);
        ask.extend_from_slice(b"\r\n");
        want.extend_from_slice(b"VALUE ");
        push_key(&mut want, i);
        want.extend_from_slice(format!(" 0 {}\r\n", VALUE.len()).as_bytes());
        want.extend_from_slice(&VALUE);
        want.extend_from_slice(b"\r\nEND\r\n");
    }
    conn.write_all(&ask)?;
    let mut got = vec![0; want.len()];
    conn.read_exact(&mut got)
        .with_context(|| format!("reading keys back from {}", server.name))?;
    ensure!(
        got == want,
        "{} read back {:?}, not {:?}",
        server.name,
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    Ok(())
}

/// Appends `set <key i> 0 0 32 noreply` and the value.
fn push_set(out: &mut Vec<u8>, i: u64) {
    out.extend_from_slice(b"set ");
    push_key(out, i);
    let _ = write!(out, " 0 0 {} noreply\r\n", VALUE.len());
    out.extend_from_slice(&VALUE);
    out.extend_from_slice(b"\r\n");
}

/// Appends `touch <key i> 0 noreply`: a miss on an empty server, so it stores nothing.
fn push_touch(out: &mut Vec<u8>, i: u64) {
    out.extend_from_slice(b"touch ");
    push_key(out, i);
    out.extend_from_slice(b" 0 noreply\r\n");
}

/// Appends key `i`: `key:` and `i` zero-padded to [`KEY_LEN`] bytes, as `kcache bench` does.
fn push_key(out: &mut Vec<u8>, i: u64) {
    let digits = KEY_LEN - KEY_PREFIX.len();
    let _ = write!(out, "{KEY_PREFIX}{i:0digits$}");
}

/// Resident bytes of process `pid`, from its smaps.
fn resident(pid: u32) -> Result<Resident> {
    let path = format!("/proc/{pid}/smaps");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_smaps(&text))
}

/// Sums each mapping's `Rss:`, and apart those whose `VmFlags:` has `lo` (locked). In each
/// mapping's block `Rss:` comes before `VmFlags:`.
fn parse_smaps(text: &str) -> Resident {
    let (mut r, mut rss) = (Resident::default(), 0);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            rss = kib * 1024;
            r.total += rss;
        } else if let Some(flags) = line.strip_prefix("VmFlags:") {
            if flags.split_whitespace().any(|f| f == "lo") {
                r.locked += rss;
            }
            rss = 0;
        }
    }
    r
}

/// A numeric field of a `stats` reply, which must be there.
fn figure(stats: &BTreeMap<String, u64>, name: &str) -> Result<u64> {
    stats
        .get(name)
        .copied()
        .ok_or_else(|| anyhow!("no `{name}` in the stats reply"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a21000 r-xp 00000000 08:01 123 /usr/bin/memcached
Size:                132 kB
Rss:                 128 kB
Locked:                0 kB
VmFlags: rd ex mr mw me sd
7f0000000000-7f0040000000 rw-p 00000000 00:00 0
Size:            1048576 kB
Rss:             1048576 kB
AnonHugePages:   1046528 kB
Locked:          1048576 kB
VmFlags: rd wr mr mw me lo ac sd hg
7f0040000000-7f0040100000 rw-p 00000000 00:00 0 [heap]
Size:               1024 kB
Rss:                 512 kB
VmFlags: rd wr mr mw me ac sd
";

    #[test]
    fn smaps_sums_resident_and_locked() {
        // Three mappings; only the one flagged `lo` (not `lock`-like substrings) counts as locked.
        assert_eq!(
            parse_smaps(SMAPS),
            Resident {
                total: (128 + 1048576 + 512) * 1024,
                locked: 1048576 * 1024,
            }
        );
        // No mappings (a process gone): nothing resident.
        assert_eq!(parse_smaps(""), Resident::default());
    }

    #[test]
    fn keys_and_sets_are_the_benchs() {
        let cases: [(u64, &str); 3] = [
            // The first key, all padding.
            (0, "key:000000000000"),
            // A 10M-item run's last key.
            (9_999_999, "key:000009999999"),
            // The largest index that fits 16 bytes.
            (999_999_999_999, "key:999999999999"),
        ];
        for (i, want) in cases {
            let mut k = Vec::new();
            push_key(&mut k, i);
            assert_eq!(String::from_utf8_lossy(&k), want);
        }
        let mut touch = Vec::new();
        push_touch(&mut touch, 7);
        assert_eq!(touch, b"touch key:000000000007 0 noreply\r\n");
        let mut set = Vec::new();
        push_set(&mut set, 7);
        let want = format!(
            "set key:000000000007 0 0 32 noreply\r\n{}\r\n",
            "v".repeat(32)
        );
        assert_eq!(String::from_utf8_lossy(&set), want);
    }

    #[test]
    fn memory_fits_both_servers() {
        let cases: [(u64, u64); 3] = [
            // One item: the base alone, plus a MiB.
            (1, 65),
            // 1M items: 152.6 MiB rounded up, plus the base.
            (1_000_000, 217),
            // 10M items.
            (10_000_000, 1590),
        ];
        for (n, want) in cases {
            assert_eq!(memory_mb(n), want, "{n} items");
        }
    }

    #[test]
    fn rows_per_method() {
        let m = Measured {
            before: Resident {
                total: 210 << 20,
                locked: 200 << 20,
            },
            after: Resident {
                total: 230 << 20,
                locked: 200 << 20,
            },
            total_malloced: 80 << 20,
            hash_bytes: 8 << 20,
            load_s: 1.5,
        };
        let n = 1 << 20;
        let got: Vec<_> = [Kind::Memcached, Kind::Kcache]
            .into_iter()
            .flat_map(|k| memory_rows(k, n, 300, &m))
            .map(|r| (r.server, r.method, r.bytes_total, r.bytes_per_item))
            .collect();
        assert_eq!(
            got,
            [
                // memcached: RSS grew by 20 MiB, so 20 bytes per item.
                ("memcached", RSS, 20 << 20, 20.0),
                // Slab pages and hash table: 88 MiB.
                ("memcached", STATS, 88 << 20, 88.0),
                ("kcache", STATS, 88 << 20, 88.0),
                // Outside the 200 MiB locked arena 20 MiB grew, plus 80 MiB of slab pages.
                ("kcache", HEAP, 100 << 20, 100.0),
            ]
        );
    }

    #[test]
    fn settled_once_memcacheds_table_caught_up() {
        let stats = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
        };
        let n = 10_000_000;
        let cases = [
            // kcache: all items in, no hash-table fields.
            (stats(&[("curr_items", n)]), true),
            // Items still arriving.
            (stats(&[("curr_items", n - 1)]), false),
            // memcached right after the load: 2^22 buckets for 10M items is 2.4 per bucket.
            (
                stats(&[
                    ("curr_items", n),
                    ("hash_power_level", 22),
                    ("hash_is_expanding", 0),
                ]),
                false,
            ),
            // Doubling to 2^23 under way.
            (
                stats(&[
                    ("curr_items", n),
                    ("hash_power_level", 23),
                    ("hash_is_expanding", 1),
                ]),
                false,
            ),
            // Caught up: 1.2 items per bucket.
            (
                stats(&[
                    ("curr_items", n),
                    ("hash_power_level", 23),
                    ("hash_is_expanding", 0),
                ]),
                true,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(settled(&s, n), want, "{s:?}");
        }
    }

    #[test]
    fn markdown_has_a_line_per_row() {
        let rows = memory_rows(Kind::Memcached, 1000, 65, &Measured::default());
        let md = markdown(&rows);
        assert_eq!(md.lines().count(), 2 + rows.len());
        assert!(md.contains("| 1000 | memcached | rss: resident after - before | 0 | 0.0 |"));
    }
}
