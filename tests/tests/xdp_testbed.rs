//! kcache with its XDP program on a veth test bed (server and client in namespaces this test
//! makes): hits answered in XDP (its counters rise, the engine's do not), misses by the engine,
//! strangers dropped, every kind of write seen at once by the next UDP read, and a stale-read
//! hunt of over a million reads. Needs root: skipped without it, except in CI, where it fails.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use kcache_tests::{
    hunt, show, skip,
    testbed::{delta, stats, udp_get, until_hot, Testbed},
    udp::{reassemble, Udp},
    Conn,
};

const WAIT: Duration = kcache_tests::testbed::UDP_WAIT;
/// Longest a stale-read hunt may take before it fails (a healthy one takes seconds here).
const HUNT_DEADLINE: Duration = Duration::from_secs(300);

#[test]
fn hits_in_xdp_misses_in_engine_strangers_dropped() -> Result<()> {
    if skip::unless_root("the XDP test bed")? {
        return Ok(());
    }
    let bed = Testbed::up(11)?;
    let server = bed.serve(11311, &["--xdp", &bed.server_if])?;
    let (addr, client, outsider) = (server.addr, bed.client_v4, bed.outsider_v4);
    let r = bed.in_client(move || -> Result<()> {
        let mut tcp = Conn::connect(addr)?;
        tcp.expect(b"set hot 7 0 5\r\nhello\r\n", b"STORED\r\n")?;
        let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
        let want = b"VALUE hot 7 5\r\nhello\r\nEND\r\n";
        until_hot(&mut udp, &mut tcp, "hot", want)?;
        // Hits: XDP's counter counts every one, the engine sees none of them (it reads none of
        // their bytes), and memcached's get counters count them all, per key.
        let before = stats(&mut tcp)?;
        ensure!(
            before.get("xdp_native") == Some(&1),
            "XDP is not in native (driver) mode on the veth"
        );
        for _ in 0..1000 {
            let got = udp_get(&mut udp, "hot")?;
            ensure!(got == want, "{}", show(&got, 200));
        }
        // A two-key get answered in XDP is two gets and two hits.
        let two = b"VALUE hot 7 5\r\nhello\r\nVALUE hot 7 5\r\nhello\r\nEND\r\n";
        let d = udp.request(b"get hot hot\r\n", WAIT)?;
        ensure!(reassemble(&d)? == two, "get hot hot");
        let after = stats(&mut tcp)?;
        let moved = |k: &str| delta(&before, &after, k);
        // (stat, moved by: 1001 requests of 1002 keys in XDP, nothing in the engine)
        for (k, want) in [
            ("xdp_hit", 1001),
            ("xdp_hit_keys", 1002),
            ("cmd_get", 1002),
            ("get_hits", 1002),
            ("get_misses", 0),
        ] {
            ensure!(moved(k) == want, "{k} moved {}, not {want}", moved(k));
        }
        ensure!(
            moved("bytes_read") < 1000,
            "the engine read {} bytes: XDP's hits reached it",
            moved("bytes_read")
        );
        // A miss goes up to the engine: one get, one miss, nothing from XDP.
        ensure!(udp_get(&mut udp, "absent")? == b"END\r\n");
        // A get with a missing key goes up whole: the engine counts both keys, XDP neither.
        let d = udp.request(b"get hot absent\r\n", WAIT)?;
        ensure!(reassemble(&d)? == want, "get hot absent");
        // A TCP get is the engine's alone.
        tcp.expect(b"get hot\r\n", want)?;
        let later = stats(&mut tcp)?;
        let moved = |k: &str| delta(&after, &later, k);
        // cmd_get = the engine's gets (1 + 2 + 1 keys) + XDP's hit keys (none here).
        for (k, want) in [
            ("xdp_miss", 2),
            ("xdp_hit", 0),
            ("xdp_hit_keys", 0),
            ("cmd_get", 4),
            ("get_hits", 2),
            ("get_misses", 2),
        ] {
            ensure!(moved(k) == want, "{k} moved {}, not {want}", moved(k));
        }
        // A source outside the allowlist gets nothing, and XDP counts the drop.
        let mut stranger = Udp::connect_from(SocketAddr::new(outsider.into(), 0), addr)?;
        stranger.send_raw(&kcache_tests::udp::frame(9, 0, 1, b"get hot\r\n"))?;
        ensure!(stranger.recv(WAIT)?.is_none(), "a stranger got an answer");
        let last = stats(&mut tcp)?;
        ensure!(
            delta(&later, &last, "xdp_drop_not_allowed") == 1,
            "drop not counted"
        );
        let _ = &mut stranger;
        // `stats reset` zeroes XDP's counters with the engine's: gets count from there.
        ensure!(tcp.call(b"stats reset\r\n")? == b"RESET\r\n");
        let got = udp_get(&mut udp, "hot")?;
        ensure!(got == want, "{}", show(&got, 200));
        let reset = stats(&mut tcp)?;
        for k in ["xdp_hit", "xdp_hit_keys", "cmd_get", "get_hits"] {
            let v = reset.get(k).copied().unwrap_or(0);
            ensure!(v <= 1, "{k} is {v} after stats reset and one get");
        }
        Ok(())
    })?;
    r.with_context(|| format!("server log:\n{}", server.log()))
}

/// XDP answers only packets to the address the server listens on (`-l`): a get to another
/// address of the server's veth, or over IPv6 to a server listening on IPv4, goes up unchanged
/// (and, with no socket there, gets no answer at all, as without XDP).
#[test]
fn only_the_listen_address_is_answered() -> Result<()> {
    if skip::unless_root("the XDP test bed")? {
        return Ok(());
    }
    let bed = Testbed::up(14)?;
    // A second IPv4 address on the server's veth, which the server does not listen on.
    let other = std::net::Ipv4Addr::new(10, 99, 14, 3);
    bed.add_server_addr(&format!("{other}/24"))?;
    let listen = bed.server_v4.to_string();
    let server = bed.serve_on(&listen, 11314, &["--xdp", &bed.server_if])?;
    let (addr, client, server_v6) = (server.addr, bed.client_v4, bed.server_v6);
    let client_v6: std::net::IpAddr = "fd99:14::2".parse()?;
    let r = bed.in_client(move || -> Result<()> {
        let mut tcp = Conn::connect(addr)?;
        tcp.expect(b"set hot 1 0 2\r\nhi\r\n", b"STORED\r\n")?;
        let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
        until_hot(&mut udp, &mut tcp, "hot", b"VALUE hot 1 2\r\nhi\r\nEND\r\n")?;
        // (destination, what it is)
        let cases = [
            (
                SocketAddr::new(client.into(), 0),
                SocketAddr::new(other.into(), addr.port()),
                "another IPv4 address of the server",
            ),
            (
                SocketAddr::new(client_v6, 0),
                SocketAddr::new(server_v6, addr.port()),
                "the server's IPv6 address (it listens on IPv4 only)",
            ),
        ];
        for (from, to, what) in cases {
            let before = stats(&mut tcp)?;
            let s = Udp::connect_from(from, to)?;
            s.send_raw(&kcache_tests::udp::frame(7, 0, 1, b"get hot\r\n"))?;
            // No socket listens there: nothing comes back (or the kernel's port unreachable).
            ensure!(
                !matches!(s.recv(WAIT), Ok(Some(_))),
                "{what}: answered, though the server does not listen there"
            );
            let after = stats(&mut tcp)?;
            for (k, want) in [("xdp_pass_not_dest", 1), ("xdp_hit", 0)] {
                ensure!(
                    delta(&before, &after, k) == want,
                    "{what}: {k} moved {}",
                    delta(&before, &after, k)
                );
            }
        }
        // The listen address itself is still answered in XDP.
        let before = stats(&mut tcp)?;
        ensure!(udp_get(&mut udp, "hot")? == b"VALUE hot 1 2\r\nhi\r\nEND\r\n");
        ensure!(delta(&before, &stats(&mut tcp)?, "xdp_hit") == 1);
        Ok(())
    })?;
    r.with_context(|| format!("server log:\n{}", server.log()))
}

/// Every kind of write, made over TCP to a key XDP is answering, is seen by the very next UDP
/// get (the HOT entry is gone before the write's reply is sent).
#[test]
fn every_write_invalidates_before_its_reply() -> Result<()> {
    if skip::unless_root("the XDP test bed")? {
        return Ok(());
    }
    let bed = Testbed::up(12)?;
    let server = bed.serve(11312, &["--xdp", &bed.server_if])?;
    let (addr, client) = (server.addr, bed.client_v4);
    let r = bed.in_client(move || -> Result<()> {
        let mut tcp = Conn::connect(addr)?;
        let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
        // (write, its reply, the value a get must then see; None = a miss)
        let cases: [(&[u8], &[u8], Option<&str>); 14] = [
            (b"set k 0 0 2\r\n10\r\n", b"STORED\r\n", Some("10")),
            (b"replace k 0 0 2\r\n11\r\n", b"STORED\r\n", Some("11")),
            (b"append k 0 0 1\r\n2\r\n", b"STORED\r\n", Some("112")),
            (b"prepend k 0 0 1\r\n3\r\n", b"STORED\r\n", Some("3112")),
            (b"incr k 5\r\n", b"3117\r\n", Some("3117")),
            (b"decr k 17\r\n", b"3100\r\n", Some("3100")),
            (b"touch k 1\r\n", b"TOUCHED\r\n", None),
            (b"set k 0 0 1\r\n5\r\n", b"STORED\r\n", Some("5")),
            (b"ms k 1 T0\r\n6\r\n", b"HD\r\n", Some("6")),
            (b"ma k D3\r\n", b"HD\r\n", Some("9")),
            (b"delete k\r\n", b"DELETED\r\n", None),
            (b"add k 0 0 1\r\n7\r\n", b"STORED\r\n", Some("7")),
            (b"md k\r\n", b"HD\r\n", None),
            (b"set k 0 0 1\r\n8\r\n", b"STORED\r\n", Some("8")),
        ];
        for (write, reply, then) in cases {
            // Make the current value hot first (when there is one).
            let current = udp_get(&mut udp, "k")?;
            if current != b"END\r\n" {
                until_hot(&mut udp, &mut tcp, "k", &current)?;
            }
            tcp.expect(write, reply)?;
            if write.starts_with(b"touch") {
                // Expiry in 1 s: XDP must stop serving it by then (it checks the expiry itself).
                thread::sleep(Duration::from_millis(2100));
            }
            let got = udp_get(&mut udp, "k")?;
            let want = match then {
                Some(v) => format!("VALUE k 0 {}\r\n{v}\r\nEND\r\n", v.len()).into_bytes(),
                None => b"END\r\n".to_vec(),
            };
            ensure!(
                got == want,
                "after {}: {}",
                show(write, 40),
                show(&got, 200)
            );
        }
        // flush_all empties what XDP holds too.
        until_hot(&mut udp, &mut tcp, "k", b"VALUE k 0 1\r\n8\r\nEND\r\n")?;
        tcp.expect(b"flush_all\r\n", b"OK\r\n")?;
        ensure!(
            udp_get(&mut udp, "k")? == b"END\r\n",
            "flush_all left k in XDP"
        );
        Ok(())
    })?;
    r.with_context(|| format!("server log:\n{}", server.log()))
}

/// The stale-read hunt (`kcache_tests::hunt`): a writer over TCP keeps setting and deleting
/// four hot keys while readers over UDP (through XDP whenever the key is hot) check that no
/// read returns a value older than one already acknowledged when the read was sent, nor a miss
/// of a key whose set was acknowledged. At least a million reads.
#[test]
fn no_stale_reads_under_writes() -> Result<()> {
    if skip::unless_root("the XDP test bed")? {
        return Ok(());
    }
    const READS: u64 = 1_000_000;
    let bed = Testbed::up(13)?;
    let mut server = bed.serve(11313, &["--xdp", &bed.server_if])?;
    let addr = server.addr;
    let found = hunt::run(&bed, &mut server, READS, HUNT_DEADLINE, |_, _| Ok(()))
        .with_context(|| format!("server log:\n{}", server.log()))?;
    let s = bed.in_client(move || -> Result<_> { stats(&mut Conn::connect(addr)?) })??;
    let stat = |k: &str| s.get(k).copied().unwrap_or(0);
    println!(
        "stale-read hunt: {} reads ({} answered in XDP), {} misses after an acknowledged set \
         (each explained by a delete in flight), {} writes, {} stale",
        found.reads,
        stat("xdp_hit"),
        found.misses_checked,
        found.writes,
        found.stale
    );
    ensure!(
        found.stale == 0,
        "{} stale reads; server log:\n{}",
        found.stale,
        server.log()
    );
    ensure!(
        stat("xdp_hit") > READS / 10,
        "XDP answered only {} reads: the test did not exercise it",
        stat("xdp_hit")
    );
    // The premise of counting misses: nothing was evicted.
    for k in ["evictions", "slab_reassign_evictions"] {
        ensure!(
            stat(k) == 0,
            "{k} {}: the hunt's keys were evicted",
            stat(k)
        );
    }
    Ok(())
}

/// The hunt fails, and soon, when the server dies under it (not a hang): here it is killed
/// after 20 000 reads.
#[test]
fn stale_read_hunt_fails_on_a_dead_server() -> Result<()> {
    if skip::unless_root("the XDP test bed")? {
        return Ok(());
    }
    let bed = Testbed::up(15)?;
    let mut server = bed.serve(11315, &["--xdp", &bed.server_if])?;
    let start = Instant::now();
    let mut killed = None;
    let got = hunt::run(&bed, &mut server, 1_000_000, HUNT_DEADLINE, |s, reads| {
        if reads >= 20_000 && killed.is_none() {
            s.kill()?;
            killed = Some(Instant::now());
        }
        Ok(())
    });
    let killed = killed.context("the hunt ended before the server was killed")?;
    let err = match got {
        Ok(f) => bail!("the hunt succeeded against a dead server: {f:?}"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(err.contains("kcache exited"), "unexpected failure: {err}");
    // Within a few request timeouts of the death, far inside the deadline.
    ensure!(
        killed.elapsed() < Duration::from_secs(15),
        "the hunt took {:?} to notice the dead server: {err}",
        killed.elapsed()
    );
    println!(
        "dead server: the hunt failed {:?} after the kill ({:?} in all): {err}",
        killed.elapsed(),
        start.elapsed()
    );
    Ok(())
}
