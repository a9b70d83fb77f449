//! The servers under test: started on free loopback ports with their output in
//! `target/bench/<name>.log`, killed when dropped.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use super::{KCACHE, OUT_DIR};

/// A server under test: its name, its process, and where it listens.
#[derive(Debug)]
pub(super) struct Server {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) tcp: u16,
    pub(super) udp: u16,
}

impl Server {
    /// The numeric `stats` counters, by name.
    pub(super) fn stats(&self) -> Result<BTreeMap<String, u64>> {
        self.stats_group("")
    }

    /// The numeric figures of `stats <group>` (`""` for plain `stats`), by name.
    pub(super) fn stats_group(&self, group: &str) -> Result<BTreeMap<String, u64>> {
        let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.tcp)))
            .with_context(|| format!("connecting to {} for stats", self.name))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let ask = if group.is_empty() {
            "stats\r\n".to_owned()
        } else {
            format!("stats {group}\r\n")
        };
        s.write_all(ask.as_bytes())?;
        let (mut text, mut chunk) = (Vec::new(), [0u8; 4096]);
        while !text.ends_with(b"END\r\n") {
            let n = s
                .read(&mut chunk)
                .with_context(|| format!("reading {} stats", self.name))?;
            ensure!(n > 0, "{} closed the connection during stats", self.name);
            text.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| {
                let mut w = l.strip_prefix("STAT ")?.split_whitespace();
                Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// memcached on free loopback ports, confined to `cpus`.
pub(super) fn memcached(cpus: &str, threads: usize, memory_mb: usize) -> Result<Server> {
    let (tcp, udp) = (free_port(false)?, free_port(true)?);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus, "memcached", "-u", "root", "-l", "127.0.0.1"])
        .args(["-p", &tcp.to_string(), "-U", &udp.to_string()])
        .args(["-t", &threads.to_string(), "-m", &memory_mb.to_string()]);
    spawn("memcached", cmd, tcp, udp)
}

/// kcache (the release build) on free loopback ports, confined to `cpus`.
pub(super) fn kcache(cpus: &str, threads: usize, memory_mb: usize) -> Result<Server> {
    kcache_at(KCACHE, cpus, threads, memory_mb)
}

/// kcache from the binary `bin` on free loopback ports, confined to `cpus`.
pub(super) fn kcache_at(bin: &str, cpus: &str, threads: usize, memory_mb: usize) -> Result<Server> {
    let (tcp, udp) = (free_port(false)?, free_port(true)?);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus, bin, "serve", "-l", "127.0.0.1", "--log", "warn"])
        .args(["-p", &tcp.to_string(), "-U", &udp.to_string()])
        .args(["-t", &threads.to_string(), "-m", &memory_mb.to_string()]);
    spawn("kcache", cmd, tcp, udp)
}

/// Starts a server with its output in `target/bench/<name>.log` and waits until it accepts.
fn spawn(name: &'static str, mut cmd: Command, tcp: u16, udp: u16) -> Result<Server> {
    let log = Path::new(OUT_DIR).join(format!("{name}.log"));
    let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut server = Server {
        name,
        child,
        tcp,
        udp,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], tcp));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = server.child.try_wait()? {
            bail!("{name} exited with {status}; see {}", log.display());
        }
        ensure!(
            Instant::now() < deadline,
            "{name} not listening on {addr} after 10 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

/// A loopback port free at the time of asking.
fn free_port(udp: bool) -> Result<u16> {
    let port = if udp {
        UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()
    } else {
        TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
    };
    Ok(port)
}
