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
