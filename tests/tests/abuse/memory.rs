//! A write flood past the memory limit: resident memory stays within `-m` plus a fixed overhead.

use anyhow::{ensure, Result};
use kcache_tests::{reply::ReplyKind, show, Config, Server, Target};

const LIMIT_MB: u64 = 64;
/// Resident memory allowed beyond `-m`: code, thread stacks, the hash table, connection and
/// allocator slack. A placeholder until kcache's figure is measured (the issue asks for it to
/// be documented); memcached 1.6.18 peaks at about 70 MB resident in this test.
const OVERHEAD_MB: u64 = 48;
const VALUE: usize = 100 * 1024;
/// 500 MB of values in all.
const SETS: usize = 500 * 1024 * 1024 / VALUE;
/// Sets sent before reading their replies.
const BATCH: usize = 16;

#[test]
fn a_write_flood_stays_within_the_memory_limit() -> Result<()> {
    let server = Server::start(
        Target::from_env(),
        &Config::default().memory_mb(LIMIT_MB as u32),
    )?;
    let mut conn = server.connect()?;
    let value: Vec<u8> = (0..VALUE).map(|i| (i % 251) as u8).collect();
    let (mut stored, mut peak_kib) = (0, 0);
    for batch in 0..SETS / BATCH {
        let mut requests = Vec::with_capacity(BATCH * (VALUE + 40));
        for i in batch * BATCH..(batch + 1) * BATCH {
            requests.extend_from_slice(format!("set flood{i} 0 0 {VALUE}\r\n").as_bytes());
            requests.extend_from_slice(&value);
            requests.extend_from_slice(b"\r\n");
        }
        conn.send(&requests)?;
        for _ in 0..BATCH {
            let reply = conn.read_reply(ReplyKind::Line)?;
            match reply.as_slice() {
                b"STORED\r\n" => stored += 1,
                // memcached's answer when no memory can be freed for the item right now.
                b"SERVER_ERROR out of memory storing object\r\n" => {}
                other => anyhow::bail!("set in batch {batch}: {}", show(other, 200)),
            }
        }
        peak_kib = peak_kib.max(server.rss_kib()?);
    }
    let limit_kib = (LIMIT_MB + OVERHEAD_MB) * 1024;
    eprintln!(
        "{}: {stored} of {SETS} sets stored, peak resident {} MiB",
        server.target(),
        peak_kib / 1024
    );
    ensure!(
        peak_kib <= limit_kib,
        "resident memory peaked at {peak_kib} KiB, over {LIMIT_MB} MB + {OVERHEAD_MB} MB"
    );
    ensure!(stored > SETS / 2, "only {stored} of {SETS} sets stored");
    // Still answering, and holding the latest writes.
    let last = SETS - 1;
    let reply = conn.call(format!("get flood{last}\r\n").as_bytes())?;
    let mut want = format!("VALUE flood{last} 0 {VALUE}\r\n").into_bytes();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\nEND\r\n");
    ensure!(reply == want, "get flood{last}: {}", show(&reply, 100));
    conn.expect(b"mn\r\n", b"MN\r\n")
}
