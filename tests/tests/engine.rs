//! The engine across shards, live: `flush_all` answers only once every shard applied it, and a
//! connection's pipelined requests for keys of different shards (computed with the server's
//! placement) take effect and answer in order.

use std::time::Duration;

use anyhow::{ensure, Result};
use cache_core::pipeline::route::shard_of;
use kcache_tests::{reply::ReplyKind, show, Config, Conn, Server, Target};

const SHARDS: usize = 2;

/// `n` keys on each shard, computed.
fn keys(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for shard in 0..SHARDS {
        out.extend(
            (0..)
                .map(|i| format!("fk{i}"))
                .filter(|k| shard_of(k.as_bytes(), SHARDS) == shard)
                .take(n),
        );
    }
    out
}

#[test]
fn a_request_after_flush_alls_ok_sees_no_older_item() -> Result<()> {
    let server = Server::start(
        Target::from_env(),
        &Config::default().threads(SHARDS as u32),
    )?;
    let keys = keys(8);
    let mut writer = server.connect()?;
    // Readers on several connections, so some land on the other shard than the writer's.
    let mut readers: Vec<Conn> = (0..4).map(|_| server.connect()).collect::<Result<_>>()?;
    let get = format!("get {}\r\n", keys.join(" "));
    for round in 0..300 {
        let mut sets = String::new();
        for k in &keys {
            sets.push_str(&format!("set {k} 0 0 1 noreply\r\nx\r\n"));
        }
        writer.send(sets.as_bytes())?;
        ensure!(writer.call(b"mn\r\n")? == b"MN\r\n");
        ensure!(writer.call(b"flush_all\r\n")? == b"OK\r\n", "round {round}");
        // Sent after the OK arrived: must miss everywhere.
        let n = readers.len();
        let r = &mut readers[round % n];
        r.send(get.as_bytes())?;
        let reply = r.read_reply(ReplyKind::Retrieval)?;
        ensure!(reply == b"END\r\n", "round {round}: {}", show(&reply, 200));
    }
    Ok(())
}

#[test]
fn a_pipeline_over_both_shards_answers_in_order() -> Result<()> {
    let server = Server::start(
        Target::from_env(),
        &Config::default().threads(SHARDS as u32),
    )?;
    let keys = keys(4);
    let mut c = server.connect()?;
    c.set_timeout(Duration::from_secs(10))?;
    let (mut script, mut want) = (String::new(), String::new());
    for round in 0..200 {
        for k in &keys {
            let v = format!("{round}");
            match round % 5 {
                0 => {
                    script.push_str(&format!("set {k} 0 0 {}\r\n{v}\r\n", v.len()));
                    want.push_str("STORED\r\n");
                }
                1 => {
                    script.push_str(&format!("delete {k}\r\n"));
                    want.push_str("DELETED\r\n");
                }
                2 => {
                    script.push_str(&format!("incr {k} 1\r\n"));
                    want.push_str("NOT_FOUND\r\n");
                }
                3 => {
                    script.push_str(&format!("set {k} 0 0 1\r\n7\r\nincr {k} 2\r\n"));
                    want.push_str("STORED\r\n9\r\n");
                }
                _ => {
                    script.push_str(&format!("get {k}\r\n"));
                    want.push_str(&format!("VALUE {k} 0 1\r\n9\r\nEND\r\n"));
                }
            }
        }
        // One multiget of every key, across both shards, in request order.
        script.push_str(&format!("get {}\r\n", keys.join(" ")));
        for k in &keys {
            match round % 5 {
                1 | 2 => {}
                0 => {
                    let v = format!("{round}");
                    want.push_str(&format!("VALUE {k} 0 {}\r\n{v}\r\n", v.len()));
                }
                _ => want.push_str(&format!("VALUE {k} 0 1\r\n9\r\n")),
            }
        }
        want.push_str("END\r\n");
    }
    c.send(script.as_bytes())?;
    let mut got = Vec::new();
    while got.len() < want.len() {
        let part = c.read_reply(ReplyKind::Line)?;
        ensure!(!part.is_empty(), "the server stopped answering");
        got.extend_from_slice(&part);
    }
    ensure!(
        got == want.as_bytes(),
        "replies out of order:\n  got:  {}\n  want: {}",
        show(&got, 400),
        show(want.as_bytes(), 400)
    );
    Ok(())
}
