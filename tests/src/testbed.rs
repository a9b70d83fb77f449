//! A test bed of the test's own: two network namespaces (server, client) joined by a veth pair,
//! made for one test and removed when it ends, with kcache serving in the server namespace and
//! the test's sockets opened in the client namespace.
//!
//! Each test picks its own `net` number n, so tests can run side by side:
//!
//! ```text
//!  namespace kt<n>s (server)              namespace kt<n>c (client)
//!  veth kt<n>s0: 10.99.n.1/24, fd99:n::1  veth kt<n>c0: 10.99.n.2/24, fd99:n::2
//!                                                      10.98.n.2/32 (outside the allowlist)
//! ```
//!
//! Native `XDP_TX` on a veth is delivered only if the peer runs an XDP program too, so the
//! client end gets kcache's pass-through program (`kcache xdp-pass`). Traffic never leaves the
//! two namespaces. Needs root: tests check it first with `skip::unless_root`, and `up` fails
//! loudly without it.

use std::{
    fs::File,
    io::Read,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::{kcache, Conn};

/// The server's item memory (`-m`) and threads (`-t`) in [`Testbed::serve`]: tests that reason
/// about eviction compute from these.
pub const SERVER_MEMORY_MB: usize = 64;
pub const SERVER_THREADS: usize = 2;

/// One test's namespaces.
#[derive(Debug)]
pub struct Testbed {
    pub server_ns: String,
    pub client_ns: String,
    pub server_if: String,
    pub client_if: String,
    pub server_v4: Ipv4Addr,
    pub client_v4: Ipv4Addr,
    /// A client address outside the server's subnet (and so its default allowlist).
    pub outsider_v4: Ipv4Addr,
    pub server_v6: IpAddr,
    pass_pin: PathBuf,
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            out.status
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

impl Testbed {
    /// Makes test bed number `net` (1..=250), replacing a stale one of the same number.
    pub fn up(net: u8) -> Result<Testbed> {
        crate::xdp::require_root()?;
        let (s, c) = (format!("kt{net}s"), format!("kt{net}c"));
        let bed = Testbed {
            server_if: format!("{s}0"),
            client_if: format!("{c}0"),
            server_v4: Ipv4Addr::new(10, 99, net, 1),
            client_v4: Ipv4Addr::new(10, 99, net, 2),
            outsider_v4: Ipv4Addr::new(10, 98, net, 2),
            server_v6: format!("fd99:{net}::1").parse()?,
            pass_pin: PathBuf::from(format!("/sys/fs/bpf/kcache-pass-{c}-{c}0")),
            server_ns: s,
            client_ns: c,
        };
        bed.remove();
        let (s, c) = (&bed.server_ns, &bed.client_ns);
        ip(&["netns", "add", s])?;
        ip(&["netns", "add", c])?;
        ip(&[
            "link",
            "add",
            &bed.server_if,
            "netns",
            s,
            "type",
            "veth",
            "peer",
            "name",
            &bed.client_if,
            "netns",
            c,
        ])?;
        let v4 = |a: Ipv4Addr| format!("{a}/24");
        for (ns, ifc, a4, a6) in [
            (
                s,
                &bed.server_if,
                v4(bed.server_v4),
                format!("fd99:{net}::1/64"),
            ),
            (
                c,
                &bed.client_if,
                v4(bed.client_v4),
                format!("fd99:{net}::2/64"),
            ),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &a4, "dev", ifc])?;
            ip(&["-n", ns, "addr", "add", &a6, "dev", ifc, "nodad"])?;
            ip(&["-n", ns, "link", "set", ifc, "up"])?;
        }
        ip(&[
            "-n",
            c,
            "addr",
            "add",
            &format!("{}/32", bed.outsider_v4),
            "dev",
            &bed.client_if,
        ])?;
        // The server must be able to answer the outsider if anything let it through, so that a
        // missing answer shows the drop and not a routing failure.
        ip(&[
            "-n",
            s,
            "route",
            "add",
            &format!("{}/32", bed.outsider_v4),
            "dev",
            &bed.server_if,
        ])?;
        run(Command::new(kcache::bin()?)
            .args(["xdp-pass", "--netns", c, "--iface", &bed.client_if, "--pin"])
            .arg(&bed.pass_pin))
        .context("attaching kcache_pass to the client veth")?;
        Ok(bed)
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.pass_pin);
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Runs `f` on a thread inside the client namespace: sockets it opens stay in that
    /// namespace wherever they are used afterwards.
    pub fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let ns =
            File::open(format!("/run/netns/{}", self.client_ns)).context("opening the netns")?;
        thread::spawn(move || setns(&ns, CloneFlags::CLONE_NEWNET).map(|()| f()))
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?
            .context("entering the client namespace")
    }

    /// Starts `kcache serve` in the server namespace on TCP and UDP `port`, listening on all
    /// addresses, with `extra` flags, and waits until a client can connect.
    pub fn serve(&self, port: u16, extra: &[&str]) -> Result<BedServer> {
        self.serve_on("0.0.0.0", port, extra)
    }

    /// Adds `cidr` (like `10.99.14.3/24`) to the server's veth.
    pub fn add_server_addr(&self, cidr: &str) -> Result<()> {
        let v6 = cidr.contains(':');
        let mut args = vec![
            "-n",
            &self.server_ns,
            "addr",
            "add",
            cidr,
            "dev",
            &self.server_if,
        ];
        if v6 {
            args.push("nodad");
        }
        ip(&args)
    }

    /// [`Testbed::serve`] listening on `listen` (`-l`) only; clients reach it at `server_v4`
    /// whatever `listen` is, so `listen` must include that address.
    pub fn serve_on(&self, listen: &str, port: u16, extra: &[&str]) -> Result<BedServer> {
        let log = std::env::temp_dir().join(format!("kcache-{}-{port}.log", self.server_ns));
        let out = File::create(&log).context("creating the server log")?;
        let p = port.to_string();
        let (m, t) = (SERVER_MEMORY_MB.to_string(), SERVER_THREADS.to_string());
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns])
            .arg(kcache::bin()?)
            .args([
                "serve", "-p", &p, "-U", &p, "-l", listen, "-t", &t, "-m", &m,
            ])
            .args(extra)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting kcache in the server namespace")?;
        let mut server = BedServer {
            child,
            log,
            addr: SocketAddr::new(self.server_v4.into(), port),
        };
        let addr = server.addr;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.in_client(move || Conn::connect(addr).is_ok())? {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "kcache exited ({status}) before listening:\n{}",
                    server.log()
                );
            }
            if Instant::now() > deadline {
                bail!("kcache did not listen within 15 s:\n{}", server.log());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.remove();
    }
}

/// kcache running in a test bed's server namespace; stopped (SIGTERM) when dropped.
#[derive(Debug)]
pub struct BedServer {
    child: Child,
    log: PathBuf,
    /// TCP and UDP address, as clients in the client namespace reach it.
    pub addr: SocketAddr,
}

impl BedServer {
    /// The server's output so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The server's exit status, if it has exited.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Kills the server at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Stops the server with SIGTERM and waits (5 s) for it to exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        // `ip netns exec` execs kcache, so the child is kcache itself.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("kcache did not stop within 5 s of SIGTERM:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BedServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}

/// `stats` as name → value (numeric stats only).
pub fn stats(conn: &mut Conn) -> Result<std::collections::HashMap<String, u64>> {
    let reply = conn.call(b"stats\r\n")?;
    let text = String::from_utf8_lossy(&reply);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("STAT")).then_some(())?;
            let name = w.next()?;
            let v = w.next()?.parse().ok()?;
            Some((name.to_owned(), v))
        })
        .collect())
}

/// How long a UDP request may wait for its answer on a test bed.
pub const UDP_WAIT: Duration = Duration::from_millis(500);

/// `get <key>` over UDP, the reply reassembled.
pub fn udp_get(udp: &mut crate::udp::Udp, key: &str) -> Result<Vec<u8>> {
    let d = udp.request(format!("get {key}\r\n").as_bytes(), UDP_WAIT)?;
    crate::udp::reassemble(&d)
}

/// How much stat `k` grew from `a` to `b`.
pub fn delta(
    a: &std::collections::HashMap<String, u64>,
    b: &std::collections::HashMap<String, u64>,
    k: &str,
) -> u64 {
    b.get(k).copied().unwrap_or(0) - a.get(k).copied().unwrap_or(0)
}

/// Gets `key` over UDP (checking the reply is `want`) until XDP answers it (its `xdp_hit`
/// moves), for at most 5 s.
pub fn until_hot(udp: &mut crate::udp::Udp, tcp: &mut Conn, key: &str, want: &[u8]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = stats(tcp)?;
        let got = udp_get(udp, key)?;
        anyhow::ensure!(got == want, "get {key}: {}", crate::show(&got, 200));
        if delta(&before, &stats(tcp)?, "xdp_hit") == 1 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{key} was never answered by XDP");
        }
        thread::sleep(Duration::from_millis(10));
    }
}
