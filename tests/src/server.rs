//! Starting a server on a free loopback port, knowing when it is ready, and stopping it.
//!
//! Ready means the server's own process holds a listening TCP socket on its port (and, with UDP
//! on, a bound UDP socket): found through `/proc/net/{tcp,udp}` and `/proc/<pid>/fd`, without
//! opening a connection that would count against `-c` or show in `stats`.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, UdpSocket},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU16, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{conn::Conn, kcache, target::Target, tools};

/// How long a server may take to listen.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The server's log kept for failure messages; more is read and dropped.
const LOG_CAP: usize = 1 << 20;
/// Ports are taken from here: below Linux's ephemeral range (32768..61000), so no client socket
/// of this or another test holds one.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Server flags; `None` leaves the server's default.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub threads: Option<u32>,
    pub memory_mb: Option<u32>,
    pub max_conns: Option<u32>,
    /// `-I` in memcached's syntax (`1m`, `512k`, bytes).
    pub item_size: Option<String>,
    /// Listen on UDP too (on the TCP port's number).
    pub udp: bool,
    /// memcached only: no LRU maintainer and crawler threads. They take short references on
    /// items, and whether `incr`/`decr` rewrite a value in place (space-padded) or replace it
    /// depends on the item's reference count, so with them running two memcached processes fed
    /// the same requests can store different bytes.
    pub quiet_background: bool,
    /// A command (and its arguments) that runs the server, exec'ing it, such as `prlimit
    /// --nofile=64:64`; empty runs it directly.
    pub wrap: Vec<String>,
    /// More arguments for the server, after the others (kcache: `--bucket-map`, `--node-id`).
    pub extra: Vec<String>,
}

impl Config {
    pub fn threads(mut self, n: u32) -> Config {
        self.threads = Some(n);
        self
    }

    pub fn memory_mb(mut self, mb: u32) -> Config {
        self.memory_mb = Some(mb);
        self
    }

    pub fn max_conns(mut self, n: u32) -> Config {
        self.max_conns = Some(n);
        self
    }

    pub fn item_size(mut self, size: &str) -> Config {
        self.item_size = Some(size.to_owned());
        self
    }

    pub fn udp(mut self) -> Config {
        self.udp = true;
        self
    }

    /// Runs the server under `wrap` (see the field).
    pub fn wrapped(mut self, wrap: &[&str]) -> Config {
        self.wrap = wrap.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn quiet_background(mut self) -> Config {
        self.quiet_background = true;
        self
    }

    /// The flags common to kcache's `serve` and memcached.
    fn args(&self, port: u16) -> Vec<String> {
        let udp = if self.udp { port } else { 0 };
        let mut args = vec![
            "-p".into(),
            port.to_string(),
            "-U".into(),
            udp.to_string(),
            "-l".into(),
            "127.0.0.1".into(),
        ];
        let optional = [
            ("-t", self.threads.map(|n| n.to_string())),
            ("-m", self.memory_mb.map(|n| n.to_string())),
            ("-c", self.max_conns.map(|n| n.to_string())),
            ("-I", self.item_size.clone()),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                args.extend([flag.to_owned(), value]);
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

type Log = Arc<Mutex<Vec<u8>>>;

/// A running server process, killed on drop.
#[derive(Debug)]
pub struct Server {
    target: Target,
    child: Child,
    port: u16,
    udp: bool,
    log: Log,
}

impl Server {
    /// Starts `target` with `config` on a free port and waits until it listens.
    pub fn start(target: Target, config: &Config) -> Result<Server> {
        Server::start_free(target, config.udp, |port| command(target, config, port))
    }

    /// Starts `target` with `config` on `port` (one that was just freed, say) and waits until
    /// it listens.
    pub fn start_on(target: Target, config: &Config, port: u16) -> Result<Server> {
        let mut server = spawn(target, command(target, config, port)?, port, config.udp)?;
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts `kcache route --config <config> -t <threads>` on a free port and waits until it
    /// listens (a router's `Target` is kcache's).
    pub fn start_router(config: &Path, threads: u32) -> Result<Server> {
        let program = kcache::bin()?;
        Server::start_free(Target::Kcache, false, |port| {
            let mut cmd = Command::new(&program);
            cmd.arg("route").arg("--config").arg(config).args([
                "-p",
                &port.to_string(),
                "-t",
                &threads.to_string(),
            ]);
            Ok(cmd)
        })
    }

    /// Starts the command `make` gives for a free port and waits until it listens there; if
    /// someone took the port between the check and the bind, tries another (three in all).
    fn start_free(
        target: Target,
        udp: bool,
        make: impl Fn(u16) -> Result<Command>,
    ) -> Result<Server> {
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut server = spawn(target, make(port)?, port, udp)?;
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) if server.log().to_ascii_lowercase().contains("in use") => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no attempt made")))
    }

    /// Starts `program args` (which must listen on TCP `port` of 127.0.0.1) and waits until it
    /// does: for servers the tests run beside kcache, such as nutcracker.
    pub fn start_program(program: &Path, args: &[String], port: u16) -> Result<Server> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let mut server = spawn(Target::Memcached, cmd, port, false)?;
        server.wait_ready()?;
        Ok(server)
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// The TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The UDP address; fails if the server was started without UDP.
    pub fn udp_addr(&self) -> Result<SocketAddr> {
        if !self.udp {
            bail!("the server was started without UDP (Config::udp)");
        }
        Ok(self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new TCP connection.
    pub fn connect(&self) -> Result<Conn> {
        Conn::connect(self.addr())
    }

    /// What the server wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        String::from_utf8_lossy(&log).into_owned()
    }

    /// Fails, with the server's log, if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait().context("polling the server")? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited with {status}; its log:\n{}",
                self.target,
                self.log()
            ),
        }
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.pid()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("sending {signal}"))
    }

    /// Waits up to `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("polling the server")? {
                return Ok(status);
            }
            if start.elapsed() > limit {
                bail!(
                    "{} still running {limit:?} later; its log:\n{}",
                    self.target,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory (`VmRSS`) in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the server has had (`VmHWM`, the kernel's high-water mark) in
    /// KiB: a peak no sampling can miss.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in {path}"))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_running()?;
            let tcp = owns_socket(self.pid(), "tcp", self.port)?;
            let udp = !self.udp || owns_socket(self.pid(), "udp", self.port)?;
            if tcp && udp {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "{} did not listen on 127.0.0.1:{} (tcp {tcp}, udp {udp}) within \
                     {READY_TIMEOUT:?}; its log:\n{}",
                    self.target,
                    self.port,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Fails only if it already exited; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command that runs `target` with `config` on `port`.
fn command(target: Target, config: &Config, port: u16) -> Result<Command> {
    let (program, mut leading) = match target {
        Target::Kcache => (kcache::bin()?, vec!["serve".to_owned()]),
        Target::Memcached => (tools::require("memcached")?, Vec::new()),
    };
    if target == Target::Memcached && nix::unistd::geteuid().is_root() {
        // memcached refuses to run as root without `-u`.
        leading.extend(["-u".to_owned(), "root".to_owned()]);
    }
    if target == Target::Memcached && config.quiet_background {
        leading.extend([
            "-o".to_owned(),
            "no_lru_crawler,no_lru_maintainer".to_owned(),
        ]);
    }
    let mut cmd = match config.wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&program);
            c
        }
        None => Command::new(&program),
    };
    cmd.args(&leading).args(config.args(port));
    Ok(cmd)
}

fn spawn(target: Target, mut cmd: Command, port: u16, udp: bool) -> Result<Server> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {target}: {cmd:?}"))?;
    let log = Log::default();
    capture(child.stdout.take(), &log);
    capture(child.stderr.take(), &log);
    Ok(Server {
        target,
        child,
        port,
        udp,
        log,
    })
}

/// Copies a pipe into `log` until it closes, so the server never blocks on a full pipe.
fn capture(pipe: Option<impl Read + Send + 'static>, log: &Log) {
    let Some(mut pipe) = pipe else { return };
    let log = Arc::clone(log);
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut log) = log.lock() {
                let room = LOG_CAP.saturating_sub(log.len());
                log.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    });
}

/// A port on 127.0.0.1 free for both TCP and UDP right now.
pub fn free_port() -> Result<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = PORTS.end - PORTS.start;
    // Spread processes apart so parallel test binaries rarely probe the same ports.
    let base = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let step = NEXT.fetch_add(7, Ordering::Relaxed);
        let port = PORTS.start + (base.wrapping_add(step) % span);
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return Ok(port);
        }
    }
    bail!("no free port in {PORTS:?}")
}

/// True if process `pid` holds a socket bound to 127.0.0.1:`port` in `/proc/net/<proto>`
/// (listening, for TCP).
fn owns_socket(pid: u32, proto: &str, port: u16) -> Result<bool> {
    let table = std::fs::read_to_string(format!("/proc/net/{proto}"))
        .with_context(|| format!("reading /proc/net/{proto}"))?;
    let local = format!("0100007F:{port:04X}");
    // TCP_LISTEN is 0A; an unconnected UDP socket shows as TCP_CLOSE, 07.
    let state = if proto == "tcp" { "0A" } else { "07" };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == local && f[3] == state).then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if inodes.is_empty() {
        return Ok(false);
    }
    let fds = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(fds) => fds,
        // The process may be exiting; the caller's next poll says so.
        Err(_) => return Ok(false),
    };
    Ok(fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|link| inodes.iter().any(|i| Path::new(i) == link.as_path()))
    }))
}
