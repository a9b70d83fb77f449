//! Memory a client can make the server hold (issue 10): replies asked for and not read, and
//! values sent halfway. Each case runs against the target with its resident peak (`VmHWM`) held
//! to `-m` plus the overhead the README documents, while another client is served; and against
//! memcached 1.6 in the same test, whose peak is printed for reference (memcached allocates
//! its `-m` lazily, kcache maps and locks it at start, so the bound is on what comes on top).
//!
//! The overhead, for these tests' two threads: the fixed part (binary, receive rings, io_uring,
//! the key index pre-sized for `-m`, allocator slack) measured at 45–60 MiB, both pools (16 MiB
//! each by default), and 48 KiB per connection slot in use.

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use kcache_tests::{show, Config, Server, Target};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

const MIB: u64 = 1 << 10;
/// The fixed part of the overhead, KiB (see the top of the file).
const FIXED_KIB: u64 = 64 * MIB;
/// Both pools at their defaults.
const POOLS_KIB: u64 = 32 * MIB;
/// Per connection slot in use.
const PER_CONN_KIB: u64 = 48;
/// A liveness bound for the other client, not a benchmark.
const SERVED_WITHIN: Duration = Duration::from_secs(4);

fn bound_kib(memory_mb: u64, conns: u64) -> u64 {
    memory_mb * MIB + FIXED_KIB + POOLS_KIB + conns * PER_CONN_KIB
}

fn raise_open_files(want: u64) -> Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= want {
        return Ok(());
    }
    ensure!(hard >= want, "RLIMIT_NOFILE hard limit {hard} < {want}");
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).context("setrlimit(RLIMIT_NOFILE)")
}

/// Another client stores and reads back a small value, in time.
fn served(server: &Server) -> Result<()> {
    let start = Instant::now();
    let mut c = server.connect()?;
    c.set_timeout(SERVED_WITHIN)?;
    ensure!(c.call(b"set other 0 0 2\r\nok\r\n")? == b"STORED\r\n");
    let got = c.call(b"get other\r\n")?;
    ensure!(
        got == b"VALUE other 0 2\r\nok\r\nEND\r\n",
        "{}",
        show(&got, 100)
    );
    ensure!(
        start.elapsed() < SERVED_WITHIN,
        "served after {:?}",
        start.elapsed()
    );
    Ok(())
}

/// Stores one 1 MB value under `big`.
fn store_big(server: &Server) -> Result<Vec<u8>> {
    let value: Vec<u8> = (0..1_000_000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut c = server.connect()?;
    let mut req = b"set big 0 0 1000000\r\n".to_vec();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    let reply = c.call(&req)?;
    ensure!(reply == b"STORED\r\n", "{}", show(&reply, 100));
    Ok(value)
}

/// `conns` connections each send `get` naming the 1 MB key 1500 times (a 6 KB request for
/// 1.5 GB of replies) and read nothing. Returns the peak, KiB, with the connections open.
fn giant_multigets(target: Target, memory_mb: u32, conns: usize) -> Result<u64> {
    let server = Server::start(
        target,
        &Config::default().memory_mb(memory_mb).max_conns(4000),
    )?;
    let value = store_big(&server)?;
    let line = format!("get{}\r\n", " big".repeat(1500));
    let mut idle = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut s = TcpStream::connect(server.addr())?;
        s.write_all(line.as_bytes())?;
        idle.push(s);
    }
    // Let the server produce whatever it will.
    thread::sleep(Duration::from_secs(2));
    served(&server)?;
    let peak = server.peak_rss_kib()?;
    eprintln!(
        "{target}: {conns} giant multigets at -m {memory_mb}: peak {} MiB",
        peak / MIB
    );
    if conns > 2 {
        // With a hundred clients that read nothing holding the pool, one that starts reading
        // waits for `reply_stall_secs` to close them: checked with one and two.
        return Ok(peak);
    }
    // A reader gets every copy, whole, then END.
    let mut reader = idle.pop().context("no connection")?;
    reader.set_read_timeout(Some(Duration::from_secs(30)))?;
    let block = [&b"VALUE big 0 1000000\r\n"[..], &value, b"\r\n"].concat();
    let mut buf = vec![0u8; 1 << 20];
    let (mut copies, mut at, mut pending) = (0, 0, Vec::new());
    while copies < 1500 {
        let n = reader.read(&mut buf)?;
        ensure!(n > 0, "the server hung up after {copies} copies");
        pending.extend_from_slice(&buf[..n]);
        while pending.len() - at >= block.len() {
            ensure!(
                pending[at..at + block.len()] == block[..],
                "copy {copies} differs"
            );
            at += block.len();
            copies += 1;
        }
        if at > 16 << 20 {
            pending.drain(..at);
            at = 0;
        }
    }
    let mut end = pending[at..].to_vec();
    while end.len() < 5 {
        let n = reader.read(&mut buf)?;
        ensure!(n > 0, "no END");
        end.extend_from_slice(&buf[..n]);
    }
    ensure!(end == b"END\r\n", "after the copies: {}", show(&end, 100));
    Ok(peak)
}

/// `conns` connections each send a set's line and all but `missing` bytes of its `size`-byte
/// value, then stall. Returns the peak, KiB, and how many sets were refused at once.
fn stalled_values(
    target: Target,
    memory_mb: u32,
    conns: usize,
    size: usize,
) -> Result<(u64, usize)> {
    raise_open_files(2 * conns as u64 + 512)?;
    let server = Server::start(
        target,
        &Config::default().memory_mb(memory_mb).max_conns(4000),
    )?;
    let part = vec![b'p'; size - 1000];
    let mut stalled = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut s = TcpStream::connect(server.addr())?;
        s.write_all(format!("set p{i} 0 0 {size}\r\n").as_bytes())?;
        s.write_all(&part)?;
        stalled.push(s);
    }
    thread::sleep(Duration::from_millis(500));
    served(&server)?;
    let peak = server.peak_rss_kib()?;
    // Refused ones were told so; the rest wait for their last bytes.
    let mut refused = 0;
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_millis(5)))?;
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf) {
            let reply = &buf[..n];
            ensure!(
                reply == b"SERVER_ERROR out of memory storing object\r\n",
                "{}",
                show(reply, 64)
            );
            refused += 1;
        }
    }
    // Finishing them: refused ones swallow the rest, waiting ones store.
    for (i, s) in stalled.iter_mut().enumerate().take(20) {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&vec![b'q'; 1000])?;
        s.write_all(format!("\r\nget p{i}\r\n").as_bytes())?;
    }
    eprintln!(
        "{target}: {conns} stalled {size}-byte values at -m {memory_mb}: peak {} MiB, {refused} \
         refused",
        peak / MIB
    );
    Ok((peak, refused))
}

#[test]
fn replies_asked_for_and_not_read_stay_within_the_budget() -> Result<()> {
    let target = Target::from_env();
    for conns in [1, 2, 100] {
        let peak = giant_multigets(target, 256, conns)?;
        if target == Target::Kcache {
            let bound = bound_kib(256, conns as u64 + 2);
            ensure!(
                peak <= bound,
                "{conns} connections: peak {peak} KiB > {bound} KiB"
            );
        }
    }
    if target == Target::Kcache {
        for conns in [1, 100] {
            giant_multigets(Target::Memcached, 256, conns)?;
        }
    }
    Ok(())
}

#[test]
fn values_sent_halfway_stay_within_the_budget() -> Result<()> {
    let target = Target::from_env();
    for (conns, size) in [(300, 1_000_000), (2000, 200_000)] {
        let (peak, refused) = stalled_values(target, 64, conns, size)?;
        if target == Target::Kcache {
            let bound = bound_kib(64, conns as u64 + 2);
            ensure!(
                peak <= bound,
                "{conns} stalled values: peak {peak} KiB > {bound} KiB"
            );
            ensure!(
                refused > 0,
                "no value was refused: the budget was never reached"
            );
        }
    }
    if target == Target::Kcache {
        stalled_values(Target::Memcached, 64, 300, 1_000_000)?;
        stalled_values(Target::Memcached, 64, 2000, 200_000)?;
    }
    Ok(())
}

/// The same budget over UDP: a reply bigger than `udp_reply_max` is refused before it is made.
#[test]
fn a_udp_reply_is_capped_before_it_is_made() -> Result<()> {
    if Target::from_env().skips_kcache_only("udp_reply_max") {
        return Ok(());
    }
    let server = Server::start(Target::Kcache, &Config::default().memory_mb(64).udp())?;
    store_big(&server)?;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut dgram = vec![0, 1, 0, 0, 0, 1, 0, 0];
    dgram.extend_from_slice(format!("get{}\r\n", " big".repeat(300)).as_bytes());
    sock.send_to(&dgram, server.udp_addr()?)?;
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf)?;
    ensure!(
        &buf[8..n] == b"SERVER_ERROR reply too large for UDP\r\n",
        "{}",
        show(&buf[8..n], 100)
    );
    let peak = server.peak_rss_kib()?;
    ensure!(peak <= bound_kib(64, 2), "peak {peak} KiB");
    served(&server)
}
