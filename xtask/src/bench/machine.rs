//! The host as a benchmark machine: what it is (CPUs, model, kernel, date), and whether it is
//! idle enough to measure on.

use std::{
    fs,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

/// What the run was measured on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    /// UTC, e.g. `2026-11-22T03:10:00Z`.
    pub(crate) date: String,
    pub(crate) memcached: String,
}

impl Machine {
    pub(crate) fn read() -> Result<Self> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim())
            })
            .unwrap_or("unknown")
            .to_owned();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading the kernel release")?
            .trim()
            .to_owned();
        Ok(Self {
            cpus,
            cpu_model,
            kernel,
            date: output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])?,
            memcached: output("memcached", &["-V"])?,
        })
    }
}

/// A command's trimmed stdout.
fn output(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd} {args:?} exited with {}",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// How long a run waited for the machine to quiet down, and how busy it was when it started.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Idle {
    pub(crate) waited_s: f64,
    /// Busy CPU over the last second before the run, in percent of all CPUs.
    pub(crate) busy_pct: f64,
    /// Whether it got below the threshold, or the wait gave up.
    pub(crate) reached: bool,
}

impl std::fmt::Display for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machine {:.1}% busy after {:.0} s of waiting{}",
            self.busy_pct,
            self.waited_s,
            if self.reached {
                ""
            } else {
                " (gave up waiting: NOT idle)"
            }
        )
    }
}

/// Waits until the machine's busy CPU over one second is below `below_pct` percent, or `max`.
pub(crate) fn wait_idle(below_pct: f64, max: Duration) -> Result<Idle> {
    let start = Instant::now();
    let mut before = stat()?;
    loop {
        thread::sleep(Duration::from_secs(1));
        let now = stat()?;
        let total = (now.1 - before.1).max(1) as f64;
        let busy_pct = (now.0 - before.0) as f64 * 100.0 / total;
        let reached = busy_pct < below_pct;
        if reached || start.elapsed() >= max {
            return Ok(Idle {
                waited_s: start.elapsed().as_secs_f64(),
                busy_pct,
                reached,
            });
        }
        before = now;
    }
}

/// `(busy, total)` ticks over all CPUs from /proc/stat; busy is user + nice + system + irq +
/// softirq + steal, total adds idle and iowait.
fn stat() -> Result<(u64, u64)> {
    parse_stat(&proc_stat()?).context("no cpu line in /proc/stat")
}

/// The softirq column of /proc/stat's `cpu` line, in USER_HZ ticks (100 a second).
pub(crate) fn softirq_ticks() -> Result<u64> {
    let cpu = cpu_line(&proc_stat()?).context("no cpu line in /proc/stat")?;
    Ok(cpu.get(6).copied().unwrap_or(0))
}

fn proc_stat() -> Result<String> {
    fs::read_to_string("/proc/stat").context("reading /proc/stat")
}

fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let f = cpu_line(stat)?;
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, busy + get(3) + get(4)))
}

/// The tick columns of the `cpu` line (all CPUs): user nice system idle iowait irq softirq ...
fn cpu_line(stat: &str) -> Option<Vec<u64>> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .map_while(|v| v.parse().ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(parse_stat(stat), Some((25, 1032)));
        // The softirq column, as the XDP scenario reads it.
        assert_eq!(cpu_line(stat).map(|c| c[6]), Some(3));
        assert_eq!(parse_stat("intr 1 2 3\n"), None);
    }
}
