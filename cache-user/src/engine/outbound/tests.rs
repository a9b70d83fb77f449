//! Outbound connections on a real io_uring ring, against a live memcached and against servers
//! that misbehave (never answer, hang up, are not there).

use std::{
    io::Read,
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cache_core::protocol::reply::Expect;
use io_uring::{opcode, types::Timespec};

use super::*;
use crate::engine::ring::{Done, Op};

/// Runs the ring until `events` holds `n` events or `limit` passes; deadlines are checked every
/// 10 ms, as a shard's tick would.
fn drive(ring: &mut Ring, outs: &mut Outbounds, n: usize, limit: Duration) -> Vec<OutEvent> {
    let start = Instant::now();
    let mut events = Vec::new();
    let mut cqes = Vec::new();
    while events.len() < n && start.elapsed() < limit {
        outs.flush(ring);
        let ts = Box::new(Timespec::from(Duration::from_millis(10)));
        let e = opcode::Timeout::new(&*ts).build();
        ring.submit(e, Op::Tick(ts));
        ring.enter(1)
            .unwrap_or_else(|e| panic!("io_uring_enter: {e}"));
        ring.reap(&mut cqes);
        for cqe in cqes.drain(..) {
            if let Some(Done::Last(Op::Out(o))) = ring.complete(&cqe) {
                outs.complete(ring, o, cqe.result());
            }
        }
        outs.check_deadlines(ring, Instant::now());
        events.extend(outs.take_events());
    }
    events
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

/// A memcached 1.6 on a free loopback port, killed on drop.
struct Memcached(Child, SocketAddr);

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn memcached() -> Memcached {
    let port = free_port();
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let user = if root { "root" } else { "nobody" };
    let child = Command::new("memcached")
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-u",
            user,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting memcached ({e}): `cargo xtask test` installs Debian's memcached")
        });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "memcached never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Memcached(child, addr)
}

fn ring() -> Ring {
    Ring::new(256).unwrap_or_else(|e| panic!("{e:#}: io_uring is needed"))
}

#[test]
fn requests_pipeline_over_a_live_server_and_come_back_in_order() {
    let server = memcached();
    let mut ring = ring();
    let mut outs = Outbounds::default();
    let now = Instant::now();
    let out = outs
        .open(&mut ring, server.1, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Sent before the connection is up; 300 requests of three kinds in one pipeline, one of
    // them without a reply, and values that contain what ends a reply elsewhere.
    let mut want = Vec::new();
    for i in 0..100u64 {
        let value = format!("v{i}\r\nEND\r\n");
        let set = format!("set k{i} 0 0 {}\r\n{value}\r\n", value.len());
        outs.send(out, set.as_bytes(), Some(Expect::Line), 3 * i, now);
        want.push((3 * i, b"STORED\r\n".to_vec()));
        let noreply = format!("set n{i} 0 0 1 noreply\r\nx\r\n");
        outs.send(out, noreply.as_bytes(), None, 0, now);
        let get = format!("get k{i} n{i} nothing\r\n");
        outs.send(out, get.as_bytes(), Some(Expect::Values), 3 * i + 1, now);
        let reply = format!(
            "VALUE k{i} 0 {}\r\n{value}\r\nVALUE n{i} 0 1\r\nx\r\nEND\r\n",
            value.len()
        );
        want.push((3 * i + 1, reply.into_bytes()));
        let mg = format!("mg k{i} v s\r\n");
        outs.send(out, mg.as_bytes(), Some(Expect::Meta), 3 * i + 2, now);
        want.push((
            3 * i + 2,
            format!("VA {0} s{0}\r\n{value}\r\n", value.len()).into_bytes(),
        ));
    }
    let events = drive(&mut ring, &mut outs, want.len(), Duration::from_secs(10));
    let got: Vec<(u64, Vec<u8>)> = events
        .into_iter()
        .map(|e| (e.token, e.reply.unwrap_or_else(|why| panic!("{why:?}"))))
        .collect();
    assert_eq!(got, want);
    outs.close(&mut ring, out);
    drive(&mut ring, &mut outs, 1, Duration::from_millis(200));
    assert!(outs.is_empty(), "the closed connection was not freed");
}

#[test]
fn a_silent_server_times_out_and_a_missing_one_is_refused() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = silent.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let mut ring = ring();
    let mut outs = Outbounds::default();
    let now = Instant::now();
    let out = outs
        .open(&mut ring, addr, Duration::from_millis(200))
        .unwrap_or_else(|e| panic!("{e:#}"));
    outs.send(out, b"get a\r\n", Some(Expect::Values), 1, now);
    outs.send(out, b"get b\r\n", Some(Expect::Values), 2, now);
    let events = drive(&mut ring, &mut outs, 2, Duration::from_secs(5));
    let replies: Vec<_> = events.iter().map(|e| (e.token, e.reply.clone())).collect();
    assert_eq!(
        replies,
        vec![(1, Err(OutError::Timeout)), (2, Err(OutError::Timeout))]
    );
    assert!(now.elapsed() >= Duration::from_millis(200));
    // Nothing listens here any more.
    let gone: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let out = outs
        .open(&mut ring, gone, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    outs.send(out, b"version\r\n", Some(Expect::Line), 3, Instant::now());
    let events = drive(&mut ring, &mut outs, 1, Duration::from_secs(5));
    assert!(
        matches!(
            &events[..],
            [OutEvent {
                token: 3,
                reply: Err(OutError::Connect(_)),
                ..
            }]
        ),
        "{events:?}"
    );
    // A send on a closed connection fails at once.
    outs.send(out, b"version\r\n", Some(Expect::Line), 4, Instant::now());
    assert!(matches!(
        &outs.take_events()[..],
        [OutEvent {
            token: 4,
            reply: Err(OutError::Closed(_)),
            ..
        }]
    ));
    drive(&mut ring, &mut outs, 1, Duration::from_millis(100));
    assert!(outs.is_empty());
}

#[test]
fn a_server_that_hangs_up_fails_what_is_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    // Reads the first request and hangs up, without a word.
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
        }
    });
    let mut ring = ring();
    let mut outs = Outbounds::default();
    let out = outs
        .open(&mut ring, addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    outs.send(out, b"get a\r\n", Some(Expect::Values), 7, Instant::now());
    let events = drive(&mut ring, &mut outs, 1, Duration::from_secs(5));
    let _ = server.join();
    assert!(
        matches!(
            &events[..],
            [OutEvent {
                token: 7,
                reply: Err(OutError::Closed(_)),
                ..
            }]
        ),
        "{events:?}"
    );
}
