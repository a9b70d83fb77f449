//! A run's results: the JSON document `--json` writes, and the human summary.

use std::fmt;

use serde::Serialize;

use super::{
    args::Plan,
    cpu::Usage,
    record::{Counts, Percentiles, Recorder},
};

/// Everything a run measured, with the settings that produced it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) server: String,
    pub(crate) transport: &'static str,
    /// `closed` or `open`.
    pub(crate) loop_kind: &'static str,
    pub(crate) threads: usize,
    pub(crate) conns: usize,
    pub(crate) depth: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) keys: u64,
    pub(crate) key_size: usize,
    pub(crate) value_size: String,
    pub(crate) get_ratio: f64,
    pub(crate) delete_ratio: f64,
    pub(crate) multiget: usize,
    pub(crate) dist: String,
    pub(crate) seed: u64,
    /// Keys STORED by the pre-population, if it ran.
    pub(crate) populated: Option<u64>,
    pub(crate) warmup_s: f64,
    pub(crate) duration_s: f64,
    pub(crate) ops_per_sec: f64,
    /// Hits over keys asked for by gets.
    pub(crate) hit_rate: Option<f64>,
    pub(crate) counts: Counts,
    /// The same counts over the whole run, warm-up included (not the pre-population's sets).
    pub(crate) counts_all: Counts,
    pub(crate) latency_us: Percentiles,
    pub(crate) cpu: Option<Usage>,
    pub(crate) ops_per_server_cpu_s: Option<f64>,
    /// Where each client thread ran, e.g. `thread 0: cpu 0`.
    pub(crate) pinning: Vec<String>,
}

impl Report {
    pub(crate) fn new(
        plan: &Plan,
        rec: &Recorder,
        populated: Option<u64>,
        cpu: Option<Usage>,
        pinning: Vec<String>,
    ) -> Self {
        let w = &plan.workload;
        let c = rec.counts;
        let secs = plan.duration.as_secs_f64();
        let server_s = cpu.and_then(|u| u.server_s).filter(|&s| s > 0.0);
        Self {
            server: plan.udp.unwrap_or(plan.tcp).to_string(),
            transport: if plan.udp.is_some() { "udp" } else { "tcp" },
            loop_kind: if plan.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            threads: plan.threads,
            conns: plan.conns,
            depth: plan.depth,
            rate: plan.rate,
            keys: w.keys,
            key_size: w.key_size,
            value_size: w.value_size.to_string(),
            get_ratio: w.get_ratio,
            delete_ratio: w.delete_ratio,
            multiget: w.multiget,
            dist: w.dist.to_string(),
            seed: plan.seed,
            populated,
            warmup_s: plan.warmup.as_secs_f64(),
            duration_s: secs,
            ops_per_sec: c.ops as f64 / secs,
            hit_rate: (c.get_keys > 0).then(|| c.hits as f64 / c.get_keys as f64),
            counts: c,
            counts_all: rec.all,
            latency_us: Percentiles::of(&rec.latency),
            cpu,
            ops_per_server_cpu_s: server_s.map(|s| c.ops as f64 / s),
            pinning,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pace = match self.rate {
            Some(r) => format!("open loop at {r} ops/s (Poisson)"),
            None => format!("closed loop, depth {}", self.depth),
        };
        writeln!(
            f,
            "kcache bench: {} {}, {pace}, {} conns over {} threads",
            self.transport, self.server, self.conns, self.threads
        )?;
        let set = 1.0 - self.get_ratio - self.delete_ratio;
        writeln!(
            f,
            "  workload     {} keys of {} B, values {} B, get/set/delete {:.0}/{:.0}/{:.0}%, {}, \
             {} keys per get, seed {}",
            self.keys,
            self.key_size,
            self.value_size,
            self.get_ratio * 100.0,
            set * 100.0,
            self.delete_ratio * 100.0,
            self.dist,
            self.multiget,
            self.seed
        )?;
        if let Some(n) = self.populated {
            writeln!(
                f,
                "  populated    {n} keys stored, then {} s warm-up",
                self.warmup_s
            )?;
        }
        let pins = if self.pinning.is_empty() {
            "none".into()
        } else {
            self.pinning.join(", ")
        };
        writeln!(f, "  pinning      {pins}")?;
        let c = &self.counts;
        writeln!(
            f,
            "  throughput   {:.0} ops/s ({} replies in {} s)",
            self.ops_per_sec, c.ops, self.duration_s
        )?;
        if let Some(h) = self.hit_rate {
            writeln!(
                f,
                "  hit rate     {:.2}% of {} keys asked",
                h * 100.0,
                c.get_keys
            )?;
        }
        writeln!(
            f,
            "  errors       {} error replies, {} unanswered; UDP: {} lost, {} late datagrams",
            c.errors, c.unanswered, c.udp_lost, c.udp_late
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency µs   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}  \
             (mean {:.1})",
            l.p50, l.p90, l.p99, l.p999, l.p9999, l.max, l.mean
        )?;
        if let Some(u) = &self.cpu {
            let server = u.server_s.map_or("-".into(), |s| format!("{s:.2}"));
            writeln!(
                f,
                "  cpu s        server {server}, client {:.2}, everything else {:.2}, steal {:.2} \
                 (machine busy {:.2})",
                u.client_s, u.other_s, u.steal_s, u.machine_busy_s
            )?;
        }
        if let Some(o) = self.ops_per_server_cpu_s {
            writeln!(f, "  efficiency   {o:.0} ops per server CPU-second")?;
        }
        Ok(())
    }
}
