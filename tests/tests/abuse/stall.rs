//! Stalled clients: half a data block, half a command line, and a silent connection must not
//! hold up another client (`-t 1`, so they share the one worker).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use kcache_tests::{Config, Server, Target};

/// A liveness bound, not a benchmark: 1000 round trips take well under a second on loopback.
const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn stalled_clients_block_nobody() -> Result<()> {
    let server = Server::start(Target::from_env(), &Config::default().threads(1))?;
    let mut half_data = server.connect()?;
    half_data.send(b"set stalled 0 0 10\r\nabc")?;
    let mut half_line = server.connect()?;
    half_line.send(b"get stall")?;
    let _silent = server.connect()?;
    let mut active = server.connect()?;
    let start = Instant::now();
    for i in 0..1000 {
        let value = format!("value-{i}");
        let set = format!("set live{} 0 0 {}\r\n{value}\r\n", i % 10, value.len());
        ensure!(active.call(set.as_bytes())? == b"STORED\r\n", "set {i}");
        let get = format!("get live{}\r\n", i % 10);
        let want = format!(
            "VALUE live{} 0 {}\r\n{value}\r\nEND\r\n",
            i % 10,
            value.len()
        );
        ensure!(active.call(get.as_bytes())? == want.as_bytes(), "get {i}");
    }
    let took = start.elapsed();
    ensure!(
        took < LIMIT,
        "1000 set/get pairs took {took:?} beside stalled clients"
    );
    // The stalled clients were waited for, not dropped: they finish their commands.
    half_data.send(b"defghij\r\n")?;
    ensure!(half_data.read_line()? == b"STORED\r\n");
    half_line.send(b"ed\r\n")?;
    let reply = half_line.read_reply(kcache_tests::reply::ReplyKind::Retrieval)?;
    ensure!(reply == b"VALUE stalled 0 10\r\nabcdefghij\r\nEND\r\n");
    Ok(())
}

/// A client that pipelines far more replies than it reads: the server stops reading from it
/// (backpressure) instead of buffering without bound, serves everyone else meanwhile, and once
/// the client reads, every reply arrives, complete and in order. Two threads, so half of each
/// multiget comes from the other shard.
#[test]
fn a_client_that_does_not_read_gets_every_reply_later() -> Result<()> {
    use std::io::{Read, Write};

    let server = Server::start(Target::from_env(), &Config::default().threads(2))?;
    let value = vec![b'v'; 1000];
    let mut setup = server.connect()?;
    for key in ["a", "b"] {
        let set = [
            format!("set {key} 0 0 1000\r\n").as_bytes(),
            &value,
            b"\r\n",
        ]
        .concat();
        ensure!(setup.call(&set)? == b"STORED\r\n");
    }
    // About 40 MB of replies, requested before reading any of them.
    const N: usize = 20_000;
    let mut requests = b"get a b\r\n".repeat(N);
    requests.extend_from_slice(b"mn\r\n");
    let mut slow = std::net::TcpStream::connect(server.addr())?;
    slow.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut writer = slow.try_clone()?;
    let sender = std::thread::spawn(move || writer.write_all(&requests));
    std::thread::sleep(Duration::from_millis(500));
    // Someone else is served while `slow` is stalled.
    let mut other = server.connect()?;
    let want = [&b"VALUE a 0 1000\r\n"[..], &value, b"\r\nEND\r\n"].concat();
    ensure!(other.call(b"get a\r\n")? == want, "bystander not served");
    // Now read everything.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while !got.ends_with(b"MN\r\n") {
        let n = slow.read(&mut buf)?;
        ensure!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    ensure!(
        sender.join().is_ok_and(|r| r.is_ok()),
        "sending the requests failed"
    );
    let one = [
        &b"VALUE a 0 1000\r\n"[..],
        &value,
        b"\r\nVALUE b 0 1000\r\n",
        &value,
        b"\r\nEND\r\n",
    ]
    .concat();
    let mut expected = one.repeat(N);
    expected.extend_from_slice(b"MN\r\n");
    ensure!(
        got.len() == expected.len(),
        "{} reply bytes, want {}",
        got.len(),
        expected.len()
    );
    ensure!(got == expected, "replies out of order or corrupted");
    Ok(())
}
