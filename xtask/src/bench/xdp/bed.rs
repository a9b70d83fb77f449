//! The XDP scenario's servers: one at a time in the test bed's server namespace, listening on
//! its veth address (TCP and UDP on one port), killed when dropped; and the test bed itself,
//! taken down when its guard drops, on errors too.
//!
//! xtask stays in the host namespace, where 10.77.0.1 is unreachable, so `stats` goes through
//! `ip netns exec kc-srv memcstat` (libmemcached-tools, which the bench installs anyway).

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use crate::{
    bench::{BenchArgs, OUT_DIR},
    testbed,
};

/// The servers side by side, in the order of the first repeat.
pub(super) const SERVERS: [&str; 3] = ["memcached", "kcache", "kcache+xdp"];

/// A server in the server namespace.
#[derive(Debug)]
pub(super) struct BedServer {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) port: u16,
}

impl BedServer {
    /// Starts server `name` (one of [`SERVERS`]) on `port` for TCP and UDP, its output in
    /// `target/bench/xdp-<name>.log`, and waits until it answers `stats`. It runs as `a` says:
    /// on `a.server_cpus` with `a.threads` worker threads and `a.memory_mb` MB.
    pub(super) fn start(
        name: &'static str,
        kcache: &Path,
        a: &BenchArgs,
        port: u16,
    ) -> Result<Self> {
        let p = port.to_string();
        let (t, m) = (a.threads.to_string(), a.memory_mb.to_string());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", testbed::SERVER.netns, "taskset", "-c"])
            .arg(&a.server_cpus);
        match name {
            "memcached" => {
                cmd.args(["memcached", "-u", "root", "-l", testbed::SERVER.ipv4])
                    .args(["-p", &p, "-U", &p, "-t", &t, "-m", &m]);
            }
            _ => {
                cmd.arg(kcache)
                    .args(["serve", "-l", testbed::SERVER.ipv4, "--log", "warn"])
                    .args(["-p", &p, "-U", &p, "-t", &t, "-m", &m]);
                if name == "kcache+xdp" {
                    cmd.args(["--xdp", testbed::SERVER.iface]);
                }
            }
        }
        let log = Path::new(OUT_DIR).join(format!("xdp-{}.log", name.replace('+', "-")));
        let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        println!("+ {cmd:?}");
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let mut server = Self { name, child, port };
        server.wait_ready(&log)?;
        Ok(server)
    }

    /// Waits until the process is the server itself (`ip netns exec` and `taskset` exec it, so
    /// the pid the client reads CPU time from is the server's) and it answers `stats`.
    fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let want = if self.name == "memcached" {
            "memcached"
        } else {
            "kcache"
        };
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status}; see {}", self.name, log.display());
            }
            let comm =
                fs::read_to_string(format!("/proc/{}/comm", self.child.id())).unwrap_or_default();
            if comm.trim() == want && self.stats().is_ok() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} not answering stats on {}:{} after 15 s; see {}",
                self.name,
                testbed::SERVER.ipv4,
                self.port,
                log.display()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `lines` (each a request answered by one line, such as `stats reset` → `RESET`) over
    /// one TCP connection from the server's namespace, through bash's `/dev/tcp`, and checks
    /// each answer.
    pub(super) fn say(&self, lines: &[(&str, &str)]) -> Result<()> {
        let mut script = format!(
            "exec 3<>/dev/tcp/{}/{} || exit 1\n",
            testbed::SERVER.ipv4,
            self.port
        );
        for (req, want) in lines {
            script.push_str(&format!(
                "printf '%s\\r\\n' '{req}' >&3; IFS= read -r -t 5 l <&3 || exit 2; \
                 [ \"$l\" = $'{want}\\r' ] || {{ echo \"{req}: $l\" >&2; exit 3; }}\n"
            ));
        }
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                testbed::SERVER.netns,
                "bash",
                "-c",
                &script,
            ])
            .output()
            .context("running bash in the server namespace")?;
        ensure!(
            out.status.success(),
            "{} on {}:{} exited with {}: {}",
            self.name,
            testbed::SERVER.ipv4,
            self.port,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// The numeric `stats` counters, by name.
    pub(super) fn stats(&self) -> Result<BTreeMap<String, u64>> {
        let server = format!("--servers={}:{}", testbed::SERVER.ipv4, self.port);
        let out = Command::new("ip")
            .args(["netns", "exec", testbed::SERVER.netns, "memcstat", &server])
            .output()
            .context("running memcstat in the server namespace")?;
        ensure!(
            out.status.success(),
            "memcstat {server} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let stats = parse_memcstat(&String::from_utf8_lossy(&out.stdout));
        ensure!(
            stats.contains_key("pid"),
            "memcstat {server} printed no stats"
        );
        Ok(stats)
    }
}

impl Drop for BedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// memcstat's `\tname: value` lines, the numeric ones.
fn parse_memcstat(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The test bed, up while this lives.
#[derive(Debug)]
pub(super) struct Bed;

impl Bed {
    /// Brings the test bed up (the pass program on the client's veth attached with `kcache`).
    pub(super) fn up(kcache: &Path) -> Result<Self> {
        // Down first if `up` fails half way: the guard only exists once it succeeded.
        testbed::up(kcache).inspect_err(|_| {
            let _ = testbed::down();
        })?;
        Ok(Self)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Err(e) = testbed::down() {
            eprintln!("taking the test bed down: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memcstat() {
        let text = "Server: 10.77.0.1 (11500)\n\tpid: 42\n\tversion: 1.6.18\n\
                    \trusage_user: 0.5\n\txdp_hit_keys: 1234\n";
        let s = parse_memcstat(text);
        // Counters kept; the version and fractional seconds are not integers.
        assert_eq!(s.get("pid"), Some(&42));
        assert_eq!(s.get("xdp_hit_keys"), Some(&1234));
        assert_eq!(s.len(), 2, "{s:?}");
    }
}
