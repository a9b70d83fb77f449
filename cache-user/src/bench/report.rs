//! A run's results: the JSON document `--json` writes, and the human summary.

use std::fmt;

use hdrhistogram::Histogram;
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
    /// `[percentile, µs]` pairs from 0 to 99.9999, evenly spread on the nines scale: see
    /// [`curve`]. Empty when nothing was measured.
    pub(crate) curve: Vec<[f64; 2]>,
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
            curve: curve(&rec.latency),
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

/// Steps within each nine of the latency curve, as the share of the tail left: 1 (the nine's
/// start), 0.7, 0.5, 0.4, 0.3, 0.2 — about evenly spaced on the log scale (0, 0.15, 0.3, 0.4, 0.5,
/// 0.7 of a nine), in tenths.
const CURVE_STEPS: [u32; 6] = [10, 7, 5, 4, 3, 2];
/// The curve runs through this many nines: to 99.9999%.
const CURVE_NINES: u32 = 6;

/// The latency at 37 percentiles, `[percentile, µs]`: 0, 30, 50, 60, 70, 80, 90, 93, 95, 96, 97,
/// 98, 99, 99.3, ... 99.9998, 99.9999. Each percentile is an exact decimal (it is computed in
/// millionths), so the JSON reads `99.93`, not `99.92999999999999`.
pub(crate) fn curve(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    const MILLION: u32 = 1_000_000;
    if h.is_empty() {
        return Vec::new();
    }
    let tails = (0..CURVE_NINES)
        .flat_map(|nine| CURVE_STEPS.map(|s| s * 10u32.pow(CURVE_NINES - 1 - nine)))
        .chain([1]);
    tails
        .map(|tail| {
            let q = MILLION - tail;
            let ns = h.value_at_quantile(f64::from(q) / f64::from(MILLION));
            [f64::from(q) / 10_000.0, ns as f64 / 1000.0]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_of_a_histogram() {
        // Latencies of 1..=100_000 µs, one each: the p-th percentile is about p * 1000 µs.
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3)
            .unwrap_or_else(|e| panic!("{e}"));
        for us in 1..=100_000u64 {
            h.record(us * 1000).unwrap_or_else(|e| panic!("{e}"));
        }
        let c = curve(&h);
        assert_eq!(c.len(), 37, "{c:?}");
        // Starts at the minimum, ends at 99.9999; the percentiles print as written.
        assert_eq!(c[0][0], 0.0);
        assert!((0.99..1.01).contains(&c[0][1]), "{c:?}");
        let ps: Vec<String> = c.iter().map(|p| p[0].to_string()).collect();
        assert_eq!(ps[..8], ["0", "30", "50", "60", "70", "80", "90", "93"]);
        assert_eq!(ps[ps.len() - 3..], ["99.9997", "99.9998", "99.9999"]);
        // Both coordinates rise; values are within the histogram's 3 significant digits.
        assert!(c
            .windows(2)
            .all(|w| w[0][0] < w[1][0] && w[0][1] <= w[1][1]));
        for [p, us] in &c[1..] {
            let want = p * 1000.0;
            assert!((us - want).abs() <= want * 0.002, "p{p}: {us} µs");
        }
        // Nothing measured, no curve.
        assert!(curve(&Histogram::<u64>::new(3).unwrap_or_else(|e| panic!("{e}"))).is_empty());
    }
}
