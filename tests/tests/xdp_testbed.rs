//! kcache with its XDP program on a veth test bed (server and client in namespaces this test
//! makes): hits answered in XDP (its counters rise, the engine's do not), misses by the engine,
//! strangers dropped, every kind of write seen at once by the next UDP read, and a stale-read
//! hunt of over a million reads. Needs root; fails loudly without it.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use anyhow::{ensure, Context, Result};
use kcache_tests::{
    show,
    testbed::{delta, stats, udp_get, until_hot, Testbed},
    udp::{reassemble, Udp},
    Conn,
};

const WAIT: Duration = kcache_tests::testbed::UDP_WAIT;

#[test]
fn hits_in_xdp_misses_in_engine_strangers_dropped() -> Result<()> {
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
        Ok(())
    })?;
    r.with_context(|| format!("server log:\n{}", server.log()))
}

/// XDP answers only packets to the address the server listens on (`-l`): a get to another
/// address of the server's veth, or over IPv6 to a server listening on IPv4, goes up unchanged
/// (and, with no socket there, gets no answer at all, as without XDP).
#[test]
fn only_the_listen_address_is_answered() -> Result<()> {
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

/// Writers over TCP keep changing and deleting a few hot keys; readers over UDP (through XDP
/// whenever the key is hot) check that no read returns a value older than one already
/// acknowledged when the read was sent. At least a million reads.
#[test]
fn no_stale_reads_under_writes() -> Result<()> {
    const KEYS: usize = 4;
    const READS: u64 = 1_000_000;
    let bed = Testbed::up(13)?;
    let server = bed.serve(11313, &["--xdp", &bed.server_if])?;
    let (addr, client) = (server.addr, bed.client_v4);
    // acked[k]: the version of the last write acknowledged for key k (a delete is a version
    // too: any value older than it is stale afterwards).
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        bed.in_client(move || {
            thread::spawn(move || -> Result<u64> {
                let mut tcp = Conn::connect(addr)?;
                let mut version = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (k, a) in acked.iter().enumerate() {
                        version += 1;
                        if version % 5 == 0 {
                            tcp.expect(format!("delete s{k}\r\n").as_bytes(), b"DELETED\r\n")?;
                        } else {
                            let v = format!("{version:020}");
                            tcp.expect(
                                format!("set s{k} 0 0 20\r\n{v}\r\n").as_bytes(),
                                b"STORED\r\n",
                            )?;
                        }
                        a.store(version, Ordering::SeqCst);
                    }
                    // Let reads promote the keys between writes, so XDP answers many of them.
                    thread::sleep(Duration::from_micros(200));
                }
                Ok(version)
            })
        })?
    };
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let acked = acked.clone();
            bed.in_client(move || {
                thread::spawn(move || -> Result<(u64, u64)> {
                    let mut udp = Udp::connect_from(SocketAddr::new(client.into(), 0), addr)?;
                    let (mut reads, mut stale) = (0u64, 0u64);
                    let mut k = r;
                    while reads < READS / 2 {
                        k = (k + 1) % KEYS;
                        let floor = acked[k].load(Ordering::SeqCst);
                        let Ok(d) = udp.request(format!("get s{k}\r\n").as_bytes(), WAIT) else {
                            continue; // a lost datagram: not a read
                        };
                        let reply = reassemble(&d)?;
                        reads += 1;
                        if reply == b"END\r\n" {
                            continue; // deleted (or not yet written): never stale
                        }
                        let text = String::from_utf8_lossy(&reply);
                        let v: u64 = text
                            .lines()
                            .nth(1)
                            .and_then(|l| l.parse().ok())
                            .with_context(|| format!("odd reply {text:?}"))?;
                        if v < floor {
                            stale += 1;
                            eprintln!("stale: s{k} read {v} after {floor} was acknowledged");
                        }
                    }
                    Ok((reads, stale))
                })
            })
        })
        .collect::<Result<_>>()?;
    let mut total = (0, 0);
    for h in readers {
        let (reads, stale) = h.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
        total = (total.0 + reads, total.1 + stale);
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let xdp_hits = bed.in_client(move || -> Result<u64> {
        let mut tcp = Conn::connect(addr)?;
        Ok(stats(&mut tcp)?.get("xdp_hit").copied().unwrap_or(0))
    })??;
    println!(
        "stale-read hunt: {} reads ({xdp_hits} answered in XDP), {writes} writes, {} stale",
        total.0, total.1
    );
    ensure!(total.0 >= READS, "only {} reads", total.0);
    ensure!(
        total.1 == 0,
        "{} stale reads; server log:\n{}",
        total.1,
        server.log()
    );
    ensure!(
        xdp_hits > READS / 10,
        "XDP answered only {xdp_hits} reads: the test did not exercise it"
    );
    Ok(())
}
