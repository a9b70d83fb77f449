//! More connections than the server has file descriptors: accepting backs off instead of
//! spinning on a listener that keeps failing with EMFILE, counts `listen_disabled_num`, and
//! the server serves again once connections close.

use std::{
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use kcache_tests::{testbed::stats, Config, Server, Target};

/// The server's descriptor limit in this test.
const NOFILE: u32 = 64;
/// Connections opened: well past it.
const CONNS: usize = 150;
/// Over this share of one CPU while it waits, the server is spinning.
const BUSY: f64 = 0.2;

/// User + system CPU seconds the process has used (`/proc/PID/stat` fields 14 and 15).
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").context("a /proc stat line")?.1;
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

#[test]
fn running_out_of_descriptors_backs_off_and_recovers() -> Result<()> {
    // memcached refuses to start when it cannot raise the limit to -c.
    if Target::from_env().skips_kcache_only("starting with fewer descriptors than -c") {
        return Ok(());
    }
    let target = Target::Kcache;
    // A hard limit under -c that the server may not raise (no CAP_SYS_RESOURCE, even as root),
    // as on a host configured short of descriptors: it says so in its log and runs.
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let wrap = [
        "prlimit",
        &nofile,
        "setpriv",
        "--bounding-set",
        "-sys_resource",
        "--",
    ];
    let server = Server::start(target, &Config::default().max_conns(1000).wrapped(&wrap))?;
    ensure!(
        server.log().contains("RLIMIT_NOFILE"),
        "the server did not say it is short of descriptors:\n{}",
        server.log()
    );
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        // The kernel completes the handshake from the listen backlog even when the server
        // cannot accept: these connect.
        conns.push(TcpStream::connect(server.addr())?);
    }
    for c in &mut conns {
        use std::io::Write;
        c.write_all(b"version\r\n")?;
    }
    // Some are accepted and answered, the rest wait in the backlog; meanwhile the server must
    // not spin.
    thread::sleep(Duration::from_millis(300));
    let before = cpu_secs(server.pid())?;
    let start = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let busy = (cpu_secs(server.pid())? - before) / start.elapsed().as_secs_f64();
    eprintln!("{target}: out of descriptors, {busy:.3} CPU while waiting");
    ensure!(
        busy < BUSY,
        "{target} used {busy:.2} CPU while out of descriptors: it spins"
    );
    // The accepted ones were answered; the rest wait in the backlog. All stay open until the
    // count is made (a close frees a descriptor).
    let mut waiting = Vec::new();
    let mut done = Vec::new();
    for mut c in conns {
        use std::io::Read;
        c.set_read_timeout(Some(Duration::from_millis(20)))?;
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            Ok(n) if buf[..n].starts_with(b"VERSION ") => done.push(c),
            Ok(n) => bail!("{:?}", &buf[..n]),
            Err(_) => waiting.push(c),
        }
    }
    let answered = done.len();
    drop(done);
    ensure!(
        answered < CONNS && !waiting.is_empty(),
        "all {CONNS} connections were accepted under a limit of {NOFILE} descriptors"
    );
    // The answered ones close, descriptors come back: every waiting connection is then served.
    let still = waiting.len();
    // Each closes once answered, making room for the next.
    for (i, mut c) in waiting.into_iter().enumerate() {
        use std::io::Read;
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0u8; 64];
        let n = c
            .read(&mut buf)
            .with_context(|| format!("waiting connection {i}: no reply"))?;
        ensure!(
            buf[..n].starts_with(b"VERSION "),
            "connection {i}: {:?}",
            &buf[..n]
        );
    }
    eprintln!("{answered} answered at once, {still} after others closed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let disabled = loop {
        match server.connect().and_then(|mut c| stats(&mut c)) {
            Ok(s) => break s.get("listen_disabled_num").copied().unwrap_or(0),
            Err(e) if Instant::now() < deadline => {
                eprintln!("not served yet: {e:#}");
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => bail!("the server did not serve again: {e:#}"),
        }
    };
    ensure!(disabled > 0, "listen_disabled_num is {disabled}");
    Ok(())
}
