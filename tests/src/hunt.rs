//! The stale-read hunt on a test bed: a writer over TCP keeps setting and deleting a few keys,
//! readers over UDP (through XDP whenever a key is hot) check that no read returns a value
//! older than a write acknowledged before the read was sent.
//!
//! A read is stale if it returns
//! - a value older than the last acknowledged write of its key (a delete counts: anything
//!   before it is stale afterwards), or
//! - nothing (`END`) although the last acknowledged write of its key was a set and no delete of
//!   the key had even been sent by the time the reply came back. Sets carry no expiry, and the
//!   keys cannot be evicted at their size ([`no_eviction_possible`]), so nothing else can make
//!   such a key miss.
//!
//! The hunt fails instead of hanging: it stops with an error when the server exits, when the
//! writer fails, when a reader's requests go unanswered [`LOST_IN_A_ROW`] times in a row, or at
//! a deadline.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use cache_core::store::item::item_len;

use crate::{
    testbed::{BedServer, Testbed, SERVER_MEMORY_MB, SERVER_THREADS, UDP_WAIT},
    udp::{reassemble, Udp},
    Conn,
};

/// Keys the writer changes (`s0`..).
pub const KEYS: usize = 4;
/// Bytes of each value: the write's version, zero-padded.
const VALUE_LEN: usize = 20;
/// Requests in a row a reader may see go unanswered before it calls the server dead (each waits
/// up to `UDP_WAIT`; a live server on the test bed loses the odd datagram, never this many).
pub const LOST_IN_A_ROW: u32 = 40;

/// What a hunt found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    /// Reads answered.
    pub reads: u64,
    /// Of those, misses of a key whose last acknowledged write was a set, each explained by a
    /// delete sent while the read was out (a miss without one is stale).
    pub misses_checked: u64,
    /// Stale reads (see the module docs).
    pub stale: u64,
    /// Writes acknowledged.
    pub writes: u64,
}

/// The writer's record, shared with the readers.
#[derive(Debug)]
struct Log {
    /// Per key: the version of its last acknowledged write (0 = none yet). Version `v` is a
    /// delete if `is_delete(v)`, else a set of the value `v`.
    acked: Vec<AtomicU64>,
    /// Per key: the version of the last delete sent (stored before it is sent).
    delete_sent: Vec<AtomicU64>,
    /// Set when the hunt must end: done, or something failed.
    stop: AtomicBool,
    /// Reads so far, over all readers.
    reads: AtomicU64,
}

fn is_delete(version: u64) -> bool {
    version % 5 == 0
}

/// Fails unless the hunt's keys cannot be evicted on a test-bed server (`SERVER_MEMORY_MB` over
/// `SERVER_THREADS` shards, 1 MiB slab pages): each shard must have a page for every class the
/// keys' items and tombstones can use, and each page must hold every such item at once.
pub fn no_eviction_possible() -> Result<()> {
    const PAGE: usize = 1 << 20;
    let pages = (SERVER_MEMORY_MB << 20) / SERVER_THREADS / PAGE;
    // Largest item of a key: `sN`, the value, and a version floor trailer.
    let item = item_len(2, VALUE_LEN, true);
    // A class's chunk is below the item times the largest growth factor (4), and never above a
    // kilobyte for items this small.
    let chunk = (item * 4).max(1024);
    // At once, per key: its value, and a replaced item or tombstone not yet reused.
    let live = 2 * KEYS;
    // Values and tombstones may sit in two classes; each needs one page at most.
    let per_page = PAGE / chunk;
    ensure!(
        live <= per_page && 2 <= pages,
        "the hunt's {live} items of {item} B (chunks up to {chunk} B) could be evicted from a \
         {pages}-page shard"
    );
    Ok(())
}

/// Runs the hunt against `server` on `bed` until `reads` reads are answered, for at most
/// `deadline`; `during` is called every 50 ms with the server and the reads so far (a test
/// kills the server from it).
pub fn run(
    bed: &Testbed,
    server: &mut BedServer,
    reads: u64,
    deadline: Duration,
    mut during: impl FnMut(&mut BedServer, u64) -> Result<()>,
) -> Result<Found> {
    no_eviction_possible()?;
    let (addr, client) = (server.addr, bed.client_v4);
    let log = Arc::new(Log {
        acked: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
        delete_sent: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        reads: AtomicU64::new(0),
    });
    let writer = {
        let log = log.clone();
        bed.in_client(move || thread::spawn(move || stop_on_error(&log, write(addr, &log))))?
    };
    let readers: Vec<JoinHandle<Result<Found>>> = (0..2)
        .map(|r| {
            let log = log.clone();
            bed.in_client(move || {
                thread::spawn(move || {
                    let got = read(client, addr, &log, r, reads / 2);
                    stop_on_error(&log, got)
                })
            })
        })
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let mut failure = None;
    while !readers.iter().all(JoinHandle::is_finished) {
        if let Some(status) = server.exited()? {
            failure = Some(anyhow!("kcache exited ({status}) during the hunt"));
            break;
        }
        if start.elapsed() > deadline {
            failure = Some(anyhow!(
                "the hunt did not finish within {deadline:?} ({} reads)",
                log.reads.load(Ordering::Relaxed)
            ));
            break;
        }
        during(server, log.reads.load(Ordering::Relaxed))?;
        thread::sleep(Duration::from_millis(50));
    }
    log.stop.store(true, Ordering::SeqCst);
    // Every thread now ends within one request (`UDP_WAIT`) or a TCP timeout.
    let mut found = Found::default();
    let mut errors = Vec::new();
    for h in readers {
        match h.join().map_err(|_| anyhow!("reader panicked"))? {
            Ok(f) => {
                found.reads += f.reads;
                found.misses_checked += f.misses_checked;
                found.stale += f.stale;
            }
            Err(e) => errors.push(e),
        }
    }
    match writer.join().map_err(|_| anyhow!("writer panicked"))? {
        Ok(w) => found.writes = w,
        Err(e) => errors.push(e),
    }
    if let Some(f) = failure {
        let threads: String = errors.iter().map(|e| format!("\n  then: {e:#}")).collect();
        bail!("stale-read hunt failed: {f:#}{threads}");
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(e.context("stale-read hunt failed"));
    }
    ensure!(
        found.reads >= reads,
        "the hunt stopped after {} of {reads} reads",
        found.reads
    );
    Ok(found)
}

/// Passes `r` on, stopping the hunt first if it is an error.
fn stop_on_error<T>(log: &Log, r: Result<T>) -> Result<T> {
    if r.is_err() {
        log.stop.store(true, Ordering::SeqCst);
    }
    r
}

/// The writer: sets and deletes the keys in turn until told to stop; returns the writes made.
fn write(addr: SocketAddr, log: &Log) -> Result<u64> {
    let mut tcp = Conn::connect(addr)?;
    let mut version = 0u64;
    while !log.stop.load(Ordering::SeqCst) {
        for k in 0..KEYS {
            version += 1;
            if is_delete(version) {
                log.delete_sent[k].store(version, Ordering::SeqCst);
                tcp.expect(format!("delete s{k}\r\n").as_bytes(), b"DELETED\r\n")?;
            } else {
                let v = format!("{version:0VALUE_LEN$}");
                tcp.expect(
                    format!("set s{k} 0 0 {VALUE_LEN}\r\n{v}\r\n").as_bytes(),
                    b"STORED\r\n",
                )?;
            }
            log.acked[k].store(version, Ordering::SeqCst);
        }
        // Let reads promote the keys between writes, so XDP answers many of them.
        thread::sleep(Duration::from_micros(200));
    }
    Ok(version)
}

/// What one read says, given the key's last acknowledged version when it was sent (`floor`),
/// the last delete of the key sent by the time its reply came (`deleted`), and the value read
/// (`None` for a miss).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Fresh,
    /// A miss of a key whose last acknowledged write was a set, explained by a later delete.
    MissChecked,
    Stale(String),
}

fn verdict(floor: u64, deleted: u64, value: Option<u64>) -> Verdict {
    match value {
        Some(v) if v < floor => Verdict::Stale(format!("read {v} after {floor} was acknowledged")),
        Some(_) => Verdict::Fresh,
        // Not written yet, or deleted last: a miss is right.
        None if floor == 0 || is_delete(floor) => Verdict::Fresh,
        None if deleted > floor => Verdict::MissChecked,
        None => Verdict::Stale(format!(
            "missed though set {floor} was acknowledged and no later delete was sent"
        )),
    }
}

/// Reader `r`: `want` reads over UDP from `client`, each checked (see the module docs).
fn read(
    client: std::net::Ipv4Addr,
    addr: SocketAddr,
    log: &Log,
    r: usize,
    want: u64,
) -> Result<Found> {
    let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
    let mut found = Found::default();
    let mut lost = 0u32;
    let mut k = r;
    while found.reads < want && !log.stop.load(Ordering::SeqCst) {
        k = (k + 1) % KEYS;
        let floor = log.acked[k].load(Ordering::SeqCst);
        let d = match udp.request(format!("get s{k}\r\n").as_bytes(), UDP_WAIT) {
            Ok(d) => d,
            Err(e) => {
                // A lost datagram is not a read; many in a row are a dead server.
                lost += 1;
                if lost >= LOST_IN_A_ROW {
                    return Err(e.context(format!(
                        "reader {r}: {lost} requests in a row unanswered after {} reads",
                        found.reads
                    )));
                }
                continue;
            }
        };
        lost = 0;
        let reply = reassemble(&d)?;
        found.reads += 1;
        log.reads.fetch_add(1, Ordering::Relaxed);
        let value = if reply == b"END\r\n" {
            None
        } else {
            let text = String::from_utf8_lossy(&reply);
            let v: u64 = text
                .lines()
                .nth(1)
                .and_then(|l| l.parse().ok())
                .with_context(|| format!("odd reply {text:?}"))?;
            Some(v)
        };
        // Read only now: a delete sent while the request was out may explain a miss.
        let deleted = log.delete_sent[k].load(Ordering::SeqCst);
        let v = verdict(floor, deleted, value);
        found.misses_checked += u64::from(v == Verdict::MissChecked);
        if let Verdict::Stale(why) = v {
            found.stale += 1;
            if found.stale <= 10 {
                eprintln!("stale: s{k} {why}");
            }
        }
    }
    if found.reads < want && !log.stop.load(Ordering::SeqCst) {
        bail!("reader {r} stopped early");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_bed_cannot_evict_the_keys() {
        // The premise of counting misses as stale holds for the test bed's -m and -t.
        if let Err(e) = no_eviction_possible() {
            panic!("{e:#}");
        }
        // Every fifth version is a delete, the rest are sets.
        assert!(is_delete(5) && is_delete(10) && !is_delete(1) && !is_delete(4));
    }

    #[test]
    fn verdicts() {
        let stale = |v: &Verdict| matches!(v, Verdict::Stale(_));
        // (floor, last delete sent, value read, stale)
        let cases = [
            // A value at or past the floor is fresh, one below it stale.
            (7, 0, Some(7), false),
            (7, 0, Some(9), false),
            (7, 0, Some(6), true),
            // Below a delete's version: stale too.
            (10, 10, Some(9), true),
            // Misses: before any write, or after an acknowledged delete, are right.
            (0, 0, None, false),
            (10, 10, None, false),
            // After an acknowledged set: right only if a later delete was sent meanwhile ...
            (11, 15, None, false),
            // ... and stale if none was (or only an older one).
            (11, 0, None, true),
            (11, 10, None, true),
        ];
        for (floor, deleted, value, want) in cases {
            let v = verdict(floor, deleted, value);
            assert_eq!(stale(&v), want, "{floor} {deleted} {value:?}: {v:?}");
        }
        assert_eq!(verdict(11, 15, None), Verdict::MissChecked);
    }
}
