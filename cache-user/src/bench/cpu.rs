//! CPU time over the measured window, from /proc: the whole machine's busy time (`/proc/stat`),
//! the server's (`/proc/<pid>/stat` utime + stime, all its threads) and the client's own, so a
//! run can report ops per server CPU-second and how much CPU everything else took meanwhile.
//!
//! The machine's busy time is wall time × CPUs minus idle and iowait, not the sum of the user,
//! system and softirq columns: on a tickless kernel idle and iowait are measured exactly while
//! the busy columns are sampled at each tick, and under a ping-pong load of 50 µs naps the
//! samples come out short of what the processes themselves were charged. iowait is idle time
//! too: a thread asleep in `io_uring_enter` with requests in flight is counted there.

use std::{fs, time::Instant};

use anyhow::{Context, Result};
use serde::Serialize;

/// A reading of the counters, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    at: Instant,
    cpus: usize,
    /// idle + iowait over all CPUs.
    idle: u64,
    steal: u64,
    server: Option<u64>,
    client: u64,
}

/// CPU seconds spent between two samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Usage {
    pub(crate) machine_busy_s: f64,
    /// Time the hypervisor gave our vCPUs to someone else (part of the busy time).
    pub(crate) steal_s: f64,
    pub(crate) server_s: Option<f64>,
    pub(crate) client_s: f64,
    /// Busy time neither the server nor this client accounts for: other processes, kernel
    /// threads, and interrupt work not charged to a process.
    pub(crate) other_s: f64,
}

impl Sample {
    /// Reads the counters; `server` is the server's pid, if it runs on this machine.
    pub(crate) fn take(server: Option<u32>) -> Result<Self> {
        let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let (idle, steal, cpus) = machine(&stat).context("no cpu line in /proc/stat")?;
        let server = match server {
            Some(pid) => Some(process(pid)?),
            None => None,
        };
        let client = process(std::process::id())?;
        Ok(Self {
            at: Instant::now(),
            cpus,
            idle,
            steal,
            server,
            client,
        })
    }

    /// What was used from `self` to `later`.
    pub(crate) fn until(&self, later: &Self) -> Usage {
        let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / ticks_per_second();
        let wall = later.at.saturating_duration_since(self.at).as_secs_f64();
        let busy = (wall * later.cpus as f64 - secs(self.idle, later.idle)).max(0.0);
        let server = self.server.zip(later.server).map(|(a, b)| secs(a, b));
        let client = secs(self.client, later.client);
        Usage {
            machine_busy_s: busy,
            steal_s: secs(self.steal, later.steal),
            server_s: server,
            client_s: client,
            other_s: (busy - server.unwrap_or(0.0) - client).max(0.0),
        }
    }
}

/// `(idle + iowait, steal)` ticks from the aggregate `cpu` line of /proc/stat, and the number of
/// CPUs (`cpuN` lines).
fn machine(stat: &str) -> Option<(u64, u64, usize)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map_while(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = f.get(3)? + f.get(4)?;
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    Some((idle, f.get(7).copied().unwrap_or(0), cpus.max(1)))
}

/// utime + stime of process `pid`, all threads, in ticks.
pub(crate) fn process(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    process_ticks(&stat).with_context(|| format!("parsing {path}"))
}

fn process_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: fields resume after the
    // last ')'. utime and stime are fields 14 and 15, so 11 and 12 after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a configuration value; it has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        // idle + iowait, steal, and one cpuN line.
        assert_eq!(machine(stat), Some((1007, 4, 1)));
        // A command name with spaces and a ')' in it.
        let pid = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 99 1 1";
        assert_eq!(process_ticks(pid), Some(280));
        // This process can read itself.
        assert!(process(std::process::id()).is_ok());
    }
}
