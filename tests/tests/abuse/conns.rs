//! Connection counts: many at once, and past `-c`.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use kcache_tests::{conn::is_closed, show, Config, Conn, Server, Target};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

const MANY: usize = 2000;
/// Bound on opening them all (a listen backlog overflow costs a 1 s SYN retry, no more).
const CONNECTING: Duration = Duration::from_secs(60);

#[test]
fn two_thousand_concurrent_connections_are_served() -> Result<()> {
    // The test holds MANY sockets; the server inherits the limit too.
    raise_open_files(2 * MANY as u64 + 512)?;
    let server = Server::start(Target::from_env(), &Config::default().max_conns(4000))?;
    let mut conns = Vec::with_capacity(MANY);
    let start = Instant::now();
    for i in 0..MANY {
        conns.push(
            server
                .connect()
                .with_context(|| format!("connection {i}"))?,
        );
        ensure!(
            start.elapsed() < CONNECTING,
            "{i} connections after {CONNECTING:?}"
        );
    }
    // All open at once: every connection stores its own key, then every one reads it back.
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(format!("set conn{i} {i} 0 {}\r\nvalue-{i}\r\n", 6 + digits(i)).as_bytes())?;
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let reply = conn
            .read_line()
            .with_context(|| format!("set on connection {i}"))?;
        ensure!(
            reply == b"STORED\r\n",
            "connection {i}: {}",
            show(&reply, 100)
        );
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(format!("get conn{i}\r\n").as_bytes())?;
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let reply = conn
            .read_reply(kcache_tests::reply::ReplyKind::Retrieval)
            .with_context(|| format!("get on connection {i}"))?;
        let want = format!(
            "VALUE conn{i} {i} {}\r\nvalue-{i}\r\nEND\r\n",
            6 + digits(i)
        );
        ensure!(
            reply == want.as_bytes(),
            "connection {i}: {}",
            show(&reply, 100)
        );
    }
    Ok(())
}

/// Over `-c 50`, a new connection gets the refusal line and is closed; those admitted keep
/// working, and closing one admits a new one. kcache admits exactly 50 client connections;
/// memcached counts its own descriptors (listeners, thread pipes) against `-c` and admits fewer.
#[test]
fn connections_over_the_limit_are_refused() -> Result<()> {
    let target = Target::from_env();
    let server = Server::start(target, &Config::default().max_conns(50).threads(1))?;
    let refusal = target.too_many_connections();
    let mut admitted: Vec<Conn> = Vec::new();
    let mut refused = 0;
    for i in 1..=60 {
        let mut conn = server.connect()?;
        match admit(&mut conn, refusal).with_context(|| format!("connection {i}"))? {
            true if refused == 0 => admitted.push(conn),
            true => bail!("connection {i} admitted after {refused} refusals"),
            false => refused += 1,
        }
    }
    let want = match target {
        Target::Kcache => 50..=50,
        Target::Memcached => 1..=49,
    };
    ensure!(
        want.contains(&admitted.len()),
        "{} admitted, {refused} refused; want {want:?} admitted",
        admitted.len()
    );
    for (i, conn) in admitted.iter_mut().enumerate() {
        let set = format!("set still{i} 0 0 2\r\nok\r\n");
        conn.expect(set.as_bytes(), b"STORED\r\n")
            .with_context(|| format!("admitted connection {i} after the refusals"))?;
    }
    // A closed connection frees its slot, once the server has seen the close.
    drop(admitted.pop());
    let start = Instant::now();
    loop {
        let mut conn = server.connect()?;
        if admit(&mut conn, refusal)? {
            break;
        }
        if start.elapsed() > Duration::from_secs(5) {
            bail!(
                "no connection admitted 5 s after one of {} closed",
                admitted.len() + 1
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Sends `version` on a new connection: true if it is answered, false if the connection got
/// `refusal` and was closed; an error otherwise.
fn admit(conn: &mut Conn, refusal: &[u8]) -> Result<bool> {
    conn.send(b"version\r\n")?;
    let line = match conn.read_line() {
        Ok(line) => line,
        Err(e) if is_closed(&e) => bail!("closed without a refusal line"),
        Err(e) => return Err(e),
    };
    if line.starts_with(b"VERSION ") {
        return Ok(true);
    }
    ensure!(
        line == refusal,
        "want {} got {}",
        show(refusal, 80),
        show(&line, 200)
    );
    let rest = conn.read_to_eof()?;
    ensure!(rest.is_empty(), "after the refusal: {}", show(&rest, 200));
    Ok(false)
}

/// Raises this process's soft RLIMIT_NOFILE to at least `want`, failing if the hard limit is
/// lower.
fn raise_open_files(want: u64) -> Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= want {
        return Ok(());
    }
    ensure!(
        hard >= want,
        "RLIMIT_NOFILE hard limit {hard} < {want}: raise it (ulimit -Hn) to run this test"
    );
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).context("setrlimit(RLIMIT_NOFILE)")
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}
