//! The generator against fake servers on loopback: open-loop latency shows a server's pause,
//! replies split across reads and datagrams are put together, lost datagrams are counted.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread,
    time::Duration,
};

use super::{
    args::Plan,
    execute,
    report::Report,
    workload::{KeyDist, ValueSize, Workload},
};

/// 100% single-key gets over 1000 keys, no pre-population, no warm-up.
fn plan(tcp: SocketAddr, udp: Option<SocketAddr>, rate: Option<f64>, secs: f64) -> Plan {
    let size = ValueSize { min: 8, max: 8 };
    let workload = Workload::new(1000, 16, size, (1.0, 0.0), 1, KeyDist::Uniform)
        .unwrap_or_else(|e| panic!("{e}"));
    Plan {
        tcp,
        udp,
        udp_timeout: Duration::from_millis(50),
        threads: 1,
        conns: 2,
        depth: 2,
        rate,
        cpus: Vec::new(),
        duration: Duration::from_secs_f64(secs),
        warmup: Duration::ZERO,
        populate: false,
        workload,
        seed: 1,
        server_pid: None,
        progress: false,
    }
}

fn run(plan: &Plan) -> Report {
    execute(plan).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A TCP server answering each `get` line with `reply`, written `chunk` bytes at a time; before
/// answering a connection's request number `pause_at` it sleeps once for `pause`.
fn tcp_server(reply: &'static [u8], chunk: usize, pause_at: u64, pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            thread::spawn(move || serve(stream, reply, chunk, (pause_at, pause)));
        }
    });
    addr
}

fn serve(mut s: TcpStream, reply: &[u8], chunk: usize, (pause_at, pause): (u64, Duration)) {
    let (mut buf, mut pending, mut n) = (vec![0; 4096], Vec::new(), 0u64);
    while let Ok(got @ 1..) = s.read(&mut buf) {
        pending.extend_from_slice(&buf[..got]);
        let mut out = Vec::new();
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            pending.drain(..=nl);
            n += 1;
            if n == pause_at {
                thread::sleep(pause);
            }
            out.extend_from_slice(reply);
        }
        for piece in out.chunks(chunk) {
            if s.write_all(piece).is_err() {
                return;
            }
        }
    }
}

#[test]
fn open_loop_latency_shows_a_stall() {
    // 1000 gets/s for 2 s; the server stalls 200 ms once, 0.5 s in. About 200 requests fall due
    // during the stall and each waits for its end, so more than 1% of all requests are at least
    // 100 ms late: p99 must show it. A closed loop would have sent just one request meanwhile.
    let addr = tcp_server(b"END\r\n", 1 << 20, 500, Duration::from_millis(200));
    let r = run(&plan(addr, None, Some(1000.0), 2.0));
    assert!(r.counts.ops > 1500, "{r}");
    assert!(r.latency_us.p99 >= 100_000.0, "{r}");
    assert!(r.latency_us.max >= 180_000.0, "{r}");
    assert_eq!((r.counts.errors, r.counts.unanswered), (0, 0), "{r}");
}

#[test]
fn closed_loop_hides_the_same_stall() {
    // The contrast: the same stall seen by a closed loop is one slow request among thousands.
    let addr = tcp_server(b"END\r\n", 1 << 20, 500, Duration::from_millis(200));
    let r = run(&plan(addr, None, None, 1.0));
    assert!(r.latency_us.max >= 180_000.0, "{r}");
    assert!(r.latency_us.p99 < 100_000.0, "{r}");
}

#[test]
fn replies_split_across_reads() {
    // Every reply is a hit written 7 bytes at a time, so VALUE lines, data and END straddle
    // reads; every get must still come back as one hit.
    let reply = b"VALUE key:000000000001 0 10\r\n0123456789\r\nEND\r\n";
    let addr = tcp_server(reply, 7, 0, Duration::ZERO);
    let r = run(&plan(addr, None, None, 0.5));
    assert!(r.counts.gets > 100, "{r}");
    assert_eq!(r.counts.hits, r.counts.gets, "{r}");
    assert_eq!(r.hit_rate, Some(1.0));
    assert_eq!((r.counts.errors, r.counts.unanswered), (0, 0), "{r}");
}

/// A UDP server dropping every 10th request and answering the others with a 2000-byte hit in
/// two datagrams, the second one first.
fn udp_server() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = sock.local_addr().unwrap_or_else(|e| panic!("{e}"));
    thread::spawn(move || {
        let mut text = b"VALUE key:000000000001 0 2000\r\n".to_vec();
        text.extend(std::iter::repeat_n(b'v', 2000));
        text.extend_from_slice(b"\r\nEND\r\n");
        let (first, second) = text.split_at(1400);
        let (mut buf, mut n) = ([0u8; 2048], 0u64);
        while let Ok((len, from)) = sock.recv_from(&mut buf) {
            n += 1;
            if len < 8 || n % 10 == 0 {
                continue;
            }
            for (seq, part) in [(1u8, second), (0, first)] {
                let mut d = vec![buf[0], buf[1], 0, seq, 0, 2, 0, 0];
                d.extend_from_slice(part);
                let _ = sock.send_to(&d, from);
            }
        }
    });
    addr
}

#[test]
fn udp_losses_are_counted() {
    let udp = udp_server();
    // The TCP address is not used: no pre-population.
    let r = run(&plan(udp, Some(udp), None, 1.0));
    let c = r.counts;
    // Every 10th request is lost, to within the requests in flight at the edges.
    let sent = c.ops + c.udp_lost;
    assert!(c.udp_lost > 0, "{r}");
    assert!(c.udp_lost.abs_diff(sent / 10) <= 4, "{r}");
    // The others came back in two datagrams each, out of order, and were put together.
    assert_eq!(c.hits, c.ops, "{r}");
    assert_eq!(c.errors, 0, "{r}");
    // Losses are not latencies: nothing waited anywhere near the 50 ms timeout.
    assert!(r.latency_us.max < 50_000.0, "{r}");
}
