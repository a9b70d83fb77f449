//! Oversize and hostile input: memcached's replies (recorded from memcached 1.6.18) or a close,
//! never a crash or harm to other connections.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kcache_tests::{conn::is_closed, show, Config, Conn, Server, Target};
use rand::{rngs::SmallRng, seq::SliceRandom, Rng, SeedableRng};

#[test]
fn oversize_keys_and_values_get_memcached_replies() -> Result<()> {
    let mut server = Server::start(Target::from_env(), &Config::default().item_size("2m"))?;
    let k250 = "a".repeat(250);
    let k251 = "a".repeat(251);
    let data = |n: usize| "x".repeat(n);
    let cases: Vec<(String, &[u8])> = vec![
        // Keys: 250 bytes is the limit.
        (
            format!("get {k251}\r\n"),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            format!("get a {k251} b\r\n"),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (format!("get {k250}\r\n"), b"END\r\n"),
        (
            format!("mg {k251} v\r\n"),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        // A refused key leaves the data line to be read as a command.
        (
            format!("set {k251} 0 0 3\r\nabc\r\n"),
            b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        (
            format!("ms {k251} 3\r\nabc\r\n"),
            b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        // Values: under -I 2m, 1.5 MB fits and 2.5 MB does not; the refused data is swallowed.
        (
            format!("set big 0 0 1500000\r\n{}\r\n", data(1_500_000)),
            b"STORED\r\n",
        ),
        (
            format!("set big 0 0 2500000\r\n{}\r\n", data(2_500_000)),
            b"SERVER_ERROR object too large for cache\r\n",
        ),
        // The failed set removed the old value.
        ("get big\r\n".into(), b"END\r\n"),
        (
            format!("ms big 2500000\r\n{}\r\n", data(2_500_000)),
            b"SERVER_ERROR object too large for cache\r\n",
        ),
        // Lengths that are no lengths.
        (
            "set k 0 0 -1\r\n".into(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            "set k 0 0 abc\r\n".into(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            "set k 0 0 2147483647\r\n".into(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        // A get line may be long: 2000 keys.
        (format!("get{}\r\n", " k".repeat(2000)), b"END\r\n"),
        // Control bytes.
        ("\x00\x01\x02\r\n".into(), b"ERROR\r\n"),
    ];
    let mut bystander = server.connect()?;
    for (i, (request, want)) in cases.iter().enumerate() {
        let mut conn = server.connect()?;
        conn.expect(request.as_bytes(), want)
            .with_context(|| format!("case {i}; server log:\n{}", server.log()))?;
        check_bystander(&mut server, &mut bystander, i)?;
    }
    Ok(())
}

/// A megabyte without a newline: memcached closes the connection once a line passes its limit
/// (2048 bytes, unless it starts with `get `); a server may instead answer an error. Either way
/// the connection ends when the client stops sending, and nothing else is sent.
#[test]
fn an_endless_line_is_refused() -> Result<()> {
    let mut server = Server::start(Target::from_env(), &Config::default())?;
    let mut bystander = server.connect()?;
    for prefix in ["", "get ", "set k 0 0 1 ", "mg k "] {
        let mut conn = server.connect()?;
        let mut line = prefix.as_bytes().to_vec();
        line.resize(1 << 20, b'x');
        let replies = send_then_close(&mut conn, &line)?;
        only_errors(&replies).with_context(|| format!("line starting {prefix:?}"))?;
        check_bystander(&mut server, &mut bystander, 0)?;
    }
    Ok(())
}

/// Seeded garbage: command words with junk arguments, random bytes, stray line ends. Each
/// round is sent on a fresh connection, which is then closed by the client; the server must
/// close its side, stay up, and keep serving a bystander.
#[test]
fn seeded_garbage_harms_nobody() -> Result<()> {
    let mut server = Server::start(Target::from_env(), &Config::default())?;
    let mut bystander = server.connect()?;
    for seed in 0..64 {
        let garbage = garbage(seed);
        let mut conn = server.connect()?;
        send_then_close(&mut conn, &garbage)
            .with_context(|| format!("seed {seed}: {}", show(&garbage, 400)))?;
        check_bystander(&mut server, &mut bystander, seed as usize)?;
    }
    Ok(())
}

/// Up to 8 KiB of garbage for `seed`.
fn garbage(seed: u64) -> Vec<u8> {
    // No flush_all, shutdown, cache_memlimit or watch: garbage must not change what the
    // bystander sees, only whether the server survives.
    const WORDS: &[&str] = &[
        "get",
        "gets",
        "gat",
        "set",
        "add",
        "cas",
        "append",
        "incr",
        "decr",
        "touch",
        "delete",
        "mg",
        "ms",
        "md",
        "ma",
        "mn",
        "me",
        "lease-get",
        "lease-set",
        "version",
        "verbosity",
        "stats",
        "noreply",
        "quit",
    ];
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let len = rng.gen_range(1..8192);
    while out.len() < len {
        match rng.gen_range(0..10) {
            0..=2 => out.extend_from_slice(WORDS.choose(&mut rng).unwrap_or(&"get").as_bytes()),
            3 => out.extend_from_slice(rng.gen::<i64>().to_string().as_bytes()),
            4 => out.extend_from_slice(rng.gen_range(0..100u32).to_string().as_bytes()),
            5 => out.push(b' '),
            6 => out.extend_from_slice(b"\r\n"),
            7 => out.push(*b"\r\n\0\t".choose(&mut rng).unwrap_or(&b'\n')),
            8 => out.extend((0..rng.gen_range(1..40)).map(|_| rng.gen::<u8>())),
            _ => out.extend((0..rng.gen_range(1..12)).map(|_| rng.gen_range(b'!'..=b'~'))),
        }
    }
    out
}

/// Sends `bytes` (the server may close partway), closes the sending side, and reads until the
/// server closes; returns what it sent back.
fn send_then_close(conn: &mut Conn, bytes: &[u8]) -> Result<Vec<u8>> {
    match conn.send(bytes) {
        Err(e) if is_closed(&e) => {}
        other => other?,
    }
    // Fails only if the server already closed, which the read below sees too.
    let _ = conn.shutdown_send();
    conn.set_timeout(Duration::from_secs(5))?;
    conn.read_to_eof()
}

/// Fails unless every line of `replies` is an error line.
fn only_errors(replies: &[u8]) -> Result<()> {
    for line in replies.split_inclusive(|&b| b == b'\n') {
        let error = [&b"ERROR"[..], b"CLIENT_ERROR ", b"SERVER_ERROR "]
            .iter()
            .any(|p| line.starts_with(p));
        ensure!(error, "a reply that is not an error: {}", show(line, 200));
    }
    Ok(())
}

/// The server is up and `bystander`, connected all along, still gets its answers.
fn check_bystander(server: &mut Server, bystander: &mut Conn, round: usize) -> Result<()> {
    server.check_running()?;
    let set = format!(
        "set bystander 0 0 {}\r\n{round}\r\n",
        round.to_string().len()
    );
    bystander.expect(set.as_bytes(), b"STORED\r\n")?;
    let want = format!(
        "VALUE bystander 0 {}\r\n{round}\r\nEND\r\n",
        round.to_string().len()
    );
    bystander.expect(b"get bystander\r\n", want.as_bytes())?;
    // And a new connection is accepted.
    server.connect()?.expect(b"mn\r\n", b"MN\r\n")
}
