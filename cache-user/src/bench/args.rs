//! `kcache bench` flags, and the checked [`Plan`] they turn into.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

use super::workload::{KeyDist, ValueSize, Workload};

pub(crate) const BENCH_AFTER_HELP: &str = "\
Closed loop (the default): every connection keeps --depth requests in flight. Open loop
(--rate): requests are due at Poisson arrival times and latency runs from the time each was
due, so a stalled server shows in the percentiles (an open-loop thread polls without sleeping
when its next send is under 1 ms away, so it keeps its CPU busy). Keys are `key:` and a
zero-padded index, --key-size bytes in all. All keys are set first unless --no-populate; then
--warmup seconds of traffic are not measured. With --server-pid, the server's CPU time over the
run is read from /proc and ops per server CPU-second are reported.";

/// `kcache bench` flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// Server address (TCP; UDP uses the same host)
    #[arg(
        short = 's',
        long,
        default_value = "127.0.0.1:11211",
        value_name = "HOST:PORT"
    )]
    pub(crate) server: String,
    /// Send requests over UDP (the pre-population still uses TCP)
    #[arg(long)]
    pub(crate) udp: bool,
    /// UDP port [default: the TCP port]
    #[arg(short = 'U', long, value_name = "PORT")]
    pub(crate) udp_port: Option<u16>,
    /// A UDP request not answered within this many milliseconds counts as lost
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub(crate) udp_timeout_ms: u64,
    /// Client threads; connections are dealt out among them
    #[arg(short = 't', long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// TCP connections (or UDP sockets), in all
    #[arg(short = 'c', long, default_value_t = 8)]
    pub(crate) conns: usize,
    /// Requests in flight per connection (closed loop)
    #[arg(short = 'd', long, default_value_t = 1)]
    pub(crate) depth: usize,
    /// Open loop at this many requests per second in all (Poisson arrivals)
    #[arg(short = 'r', long, value_name = "OPS")]
    pub(crate) rate: Option<f64>,
    /// Pin client thread i to the i-th of these CPUs (cycling), e.g. `0,1` or `0-3`
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    pub(crate) cpus: Option<CpuList>,
    /// Measured seconds
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub(crate) duration: f64,
    /// Seconds of traffic before measuring
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub(crate) warmup: f64,
    /// Don't set every key before the warm-up
    #[arg(long)]
    pub(crate) no_populate: bool,
    /// Number of distinct keys
    #[arg(long, default_value_t = 100_000)]
    pub(crate) keys: u64,
    /// Bytes per key
    #[arg(long, default_value_t = 16)]
    pub(crate) key_size: usize,
    /// Bytes per value: N, or MIN-MAX for sizes uniform in that range
    #[arg(long, default_value = "32")]
    pub(crate) value_size: ValueSize,
    /// Fraction of requests that are gets
    #[arg(long, default_value_t = 0.9)]
    pub(crate) get_ratio: f64,
    /// Fraction of requests that are deletes (the rest are sets)
    #[arg(long, default_value_t = 0.0)]
    pub(crate) delete_ratio: f64,
    /// Key popularity: uniform or zipf:<s>, e.g. zipf:0.99
    #[arg(long, default_value = "uniform")]
    pub(crate) dist: KeyDist,
    /// Keys per get request
    #[arg(long, default_value_t = 1)]
    pub(crate) multiget: usize,
    /// Seed for keys, mix and arrival times
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Pid of the server, to report its CPU time (it must run on this machine)
    #[arg(long, value_name = "PID")]
    pub(crate) server_pid: Option<u32>,
    /// Also write the results as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Also draw the latency percentile curve as SVG to this file
    #[arg(long, value_name = "FILE")]
    pub(crate) plot: Option<PathBuf>,
    /// No progress line, even on long runs
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
}

/// CPU numbers, in the order threads are given them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuList(pub(crate) Vec<usize>);

/// Parses `0,1`, `0-3` or a mix like `0,2-3`.
fn cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let num = |t: &str| t.trim().parse::<usize>().map_err(|e| format!("{t:?}: {e}"));
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(num(a)?..=num(b)?),
            None => cpus.push(num(part)?),
        }
    }
    if cpus.is_empty() {
        return Err("no CPUs".into());
    }
    Ok(CpuList(cpus))
}

/// A checked run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) tcp: SocketAddr,
    /// Where UDP requests go, in UDP mode.
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) udp_timeout: Duration,
    pub(crate) threads: usize,
    pub(crate) conns: usize,
    pub(crate) depth: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) cpus: Vec<usize>,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) populate: bool,
    pub(crate) workload: Workload,
    pub(crate) seed: u64,
    pub(crate) server_pid: Option<u32>,
    pub(crate) progress: bool,
}

/// The first address `server` (`HOST:PORT`) resolves to.
pub(crate) fn resolve(server: &str) -> Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("resolving {server}"))?
        .next()
        .with_context(|| format!("{server} has no address"))
}

impl Plan {
    pub(crate) fn new(a: &BenchArgs) -> Result<Self> {
        let tcp = resolve(&a.server)?;
        let udp = a
            .udp
            .then(|| SocketAddr::new(tcp.ip(), a.udp_port.unwrap_or(tcp.port())));
        ensure!(a.threads >= 1, "--threads must be at least 1");
        ensure!(
            a.conns >= a.threads,
            "--conns ({}) must be at least --threads ({})",
            a.conns,
            a.threads
        );
        ensure!(a.depth >= 1, "--depth must be at least 1");
        if let Some(r) = a.rate {
            ensure!(r.is_finite() && r > 0.0, "--rate must be positive");
        }
        let secs = |what: &str, s: f64| -> Result<Duration> {
            Duration::try_from_secs_f64(s).with_context(|| format!("{what} {s}"))
        };
        let duration = secs("--duration", a.duration)?;
        if duration.is_zero() {
            bail!("--duration must be positive");
        }
        let workload = Workload::new(
            a.keys,
            a.key_size,
            a.value_size,
            (a.get_ratio, a.delete_ratio),
            a.multiget,
            a.dist,
        )
        .map_err(anyhow::Error::msg)?;
        let warmup = secs("--warmup", a.warmup)?;
        Ok(Self {
            tcp,
            udp,
            udp_timeout: Duration::from_millis(a.udp_timeout_ms.max(1)),
            threads: a.threads,
            conns: a.conns,
            depth: a.depth,
            rate: a.rate,
            cpus: a.cpus.clone().map(|c| c.0).unwrap_or_default(),
            duration,
            warmup,
            populate: !a.no_populate,
            workload,
            seed: a.seed,
            server_pid: a.server_pid,
            progress: !a.quiet && (duration + warmup) > Duration::from_secs(5),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan> {
        let cli = Cli::try_parse_from(["bench"].iter().chain(args))?;
        Plan::new(&cli.bench)
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0,1"), Ok(CpuList(vec![0, 1])));
        assert_eq!(cpu_list("0,2-4"), Ok(CpuList(vec![0, 2, 3, 4])));
        assert!(cpu_list("x").is_err());
        assert!(cpu_list("").is_err());
    }

    #[test]
    fn flags() {
        // Defaults: TCP closed loop, 8 connections of depth 1 on one thread, 100k keys.
        let p = plan(&[]).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((p.threads, p.conns, p.depth, p.rate), (1, 8, 1, None));
        assert_eq!((p.udp, p.workload.keys, p.populate), (None, 100_000, true));
        // Every flag.
        let p = plan(&[
            "-s",
            "127.0.0.1:7",
            "--udp",
            "-U",
            "9",
            "--threads",
            "2",
            "--conns",
            "4",
            "--depth",
            "3",
            "--rate",
            "500",
            "--cpus",
            "0,1",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--no-populate",
            "--keys",
            "50",
            "--key-size",
            "10",
            "--value-size",
            "1-9",
            "--get-ratio",
            "0.5",
            "--delete-ratio",
            "0.25",
            "--dist",
            "zipf:1.1",
            "--multiget",
            "24",
            "--seed",
            "3",
            "--server-pid",
            "1",
            "--udp-timeout-ms",
            "20",
            "-q",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(p.udp.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9"));
        assert_eq!(
            (p.threads, p.conns, p.depth, p.rate),
            (2, 4, 3, Some(500.0))
        );
        assert_eq!((p.cpus, p.populate, p.progress), (vec![0, 1], false, false));
        assert_eq!(
            (p.workload.multiget, p.workload.dist),
            (24, KeyDist::Zipf(1.1))
        );
        assert_eq!(p.udp_timeout, Duration::from_millis(20));
        // Refused: fewer connections than threads, a zero depth, a negative rate.
        for bad in [
            &["--threads", "3", "--conns", "2"][..],
            &["--depth", "0"],
            &["--rate", "-1"],
        ] {
            assert!(plan(bad).is_err(), "{bad:?}");
        }
    }
}
