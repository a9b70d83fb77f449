//! `mg … l h` over real seconds (issue 10's exchange), against a live server: the table with an
//! injected clock is `cache-core/tests/access.rs`; this one also covers the engine's clock.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use kcache_tests::{show, testbed::stats, Config, Conn, Server, Target};

/// After `ms` and 2.5 s, `mg … l` counts the seconds since the set and `h` says not fetched; 0.2 s
/// later the first fetch has marked it fetched but left its time alone (memcached 1.6.18's
/// replies, in `cache-core/tests/access.rs`'s `issue_exchange` case).
#[test]
fn last_access_after_a_pause() -> Result<()> {
    let server = Server::start(Target::from_env(), &Config::default().threads(1))?;
    let mut conn = server.connect()?;
    // A loaded machine can push a step across a second boundary; such a run proves nothing, so
    // it is tried again on a new key.
    for attempt in 0..3 {
        let key = format!("la_test{attempt}");
        let tick = next_tick(&mut conn)?;
        thread::sleep(Duration::from_millis(50));
        expect(&mut conn, &format!("ms {key} 2 T100\r\nxx\r\n"), "HD\r\n")?;
        thread::sleep(Duration::from_millis(2500));
        let first = conn.call(format!("mg {key} s t l h\r\n").as_bytes())?;
        thread::sleep(Duration::from_millis(200));
        let second = conn.call(format!("mg {key} s t l h\r\n").as_bytes())?;
        if tick.elapsed() >= Duration::from_millis(2950) {
            continue;
        }
        ensure!(
            first == b"HD s2 t98 l2 h0\r\n",
            "{}: first mg {}; server log:\n{}",
            server.target(),
            show(&first, 100),
            server.log()
        );
        ensure!(
            second == b"HD s2 t98 l2 h1\r\n",
            "{}: second mg {}; server log:\n{}",
            server.target(),
            show(&second, 100),
            server.log()
        );
        return Ok(());
    }
    bail!("every attempt slipped past a second boundary: the machine is too loaded to tell")
}

fn expect(conn: &mut Conn, request: &str, want: &str) -> Result<()> {
    let got = conn.call(request.as_bytes())?;
    ensure!(got == want.as_bytes(), "{request:?}: {}", show(&got, 100));
    Ok(())
}

/// Waits until the server's clock (`stats` `time`) moves on to its next second, and returns the
/// moment it was seen to, so the steps after it land at known points of the server's seconds.
fn next_tick(conn: &mut Conn) -> Result<Instant> {
    let time = |conn: &mut Conn| -> Result<u64> {
        stats(conn)?
            .get("time")
            .copied()
            .context("no `time` in stats")
    };
    let start = time(conn)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while time(conn)? == start {
        ensure!(Instant::now() < deadline, "stats time stuck at {start}");
        thread::sleep(Duration::from_millis(5));
    }
    Ok(Instant::now())
}
