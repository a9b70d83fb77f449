//! An open-loop rate sweep: `kcache bench --rate R` against one server at rising rates until it
//! saturates, for the throughput-vs-latency plot.
//!
//! Open loop, latency runs from each request's due time, so past the server's capacity the queue
//! (and p99 with it) grows for as long as the run lasts, and replies fall behind the schedule.
//! Either shows saturation: fewer than 95% of the offered requests answered per second, or a p99
//! over 10 ms. The point that crossed the line is kept as the sweep's last: it is where the curve
//! turns up.

use std::{fs, path::Path, process::Command};

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::step;

/// Answering less than this share of the offered rate means the server fell behind.
const KEEPS_UP: f64 = 0.95;
/// A p99 above this many µs means requests are queueing.
const P99_LIMIT_US: f64 = 10_000.0;

/// One rate of a sweep, from its `kcache bench --json` report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub(super) struct SweepPoint {
    /// Requests per second offered (`--rate`).
    pub(super) offered: f64,
    /// Replies per second measured.
    pub(super) achieved: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    /// Replies per second of the server's CPU time (NaN when the report has none).
    #[serde(default = "nan")]
    pub(super) ops_per_cpu_s: f64,
    /// Error replies, lost UDP requests and TCP requests left unanswered.
    pub(super) failed: u64,
    /// This rate crossed a saturation line; the sweep stopped here.
    pub(super) saturated: bool,
}

impl SweepPoint {
    /// The point of a run offered `offered` requests per second that wrote `report`.
    pub(super) fn of(offered: f64, report: &Value) -> Result<Self> {
        let num = |ptr: &str| {
            report
                .pointer(ptr)
                .and_then(Value::as_f64)
                .with_context(|| format!("the report has no {ptr}"))
        };
        let count = |k: &str| {
            report
                .pointer(&format!("/counts/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let (achieved, p99_us) = (num("/ops_per_sec")?, num("/latency_us/p99")?);
        Ok(Self {
            offered,
            achieved,
            p50_us: num("/latency_us/p50")?,
            p99_us,
            p999_us: num("/latency_us/p999")?,
            ops_per_cpu_s: num("/ops_per_server_cpu_s").unwrap_or(f64::NAN),
            failed: count("errors") + count("udp_lost") + count("unanswered"),
            saturated: achieved < KEEPS_UP * offered || p99_us > P99_LIMIT_US,
        })
    }
}

/// `steps` rates rising evenly to `max_guess` requests per second, whole numbers: 5 steps to
/// 100000 are 20000, 40000, ... 100000. Pick `max_guess` above the expected capacity (a
/// closed-loop pipelined run's throughput, say): the sweep stops where the server saturates.
pub(super) fn rates(max_guess: f64, steps: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (1..=steps)
        .map(|i| (max_guess * i as f64 / steps as f64).round())
        .filter(|&r| r >= 1.0)
        .collect();
    out.dedup();
    out
}

/// Runs `kcache bench` at each of `rates` in turn until one saturates the server, and returns
/// the points so far, the saturated one last. A rate that looks saturated is run once more before
/// the sweep stops: on a shared machine another process's burst looks just like saturation, and
/// the second run's point is the one kept either way.
///
/// `bench` gives the command of one run with everything but `--rate` and `--json`, which this
/// adds: `taskset`, the server and its pid, pinning, duration and workload flags, as `run_one`
/// in bench.rs builds them (it may also wait for an idle machine before returning). The reports
/// are kept as `<out>/sweep-<label>-<rate>.json` (`-again.json` for a second run).
pub(super) fn run_sweep(
    label: &str,
    rates: &[f64],
    out: &Path,
    mut bench: impl FnMut() -> Result<Command>,
) -> Result<Vec<SweepPoint>> {
    ensure!(!rates.is_empty(), "a sweep of {label} without rates");
    let mut points = Vec::new();
    for &rate in rates {
        let mut point = run_point(label, rate, "", out, &mut bench)?;
        if point.saturated {
            point = run_point(label, rate, "-again", out, &mut bench)?;
        }
        points.push(point);
        if point.saturated {
            return Ok(points);
        }
    }
    println!(
        "sweep {label}: not saturated at {:.0} ops/s; a higher max_guess would find the knee",
        rates[rates.len() - 1]
    );
    Ok(points)
}

/// One run of a sweep at `rate`, its report at `<out>/sweep-<label>-<rate><suffix>.json`.
fn run_point(
    label: &str,
    rate: f64,
    suffix: &str,
    out: &Path,
    bench: &mut impl FnMut() -> Result<Command>,
) -> Result<SweepPoint> {
    let json = out.join(format!("sweep-{label}-{rate:.0}{suffix}.json"));
    let mut cmd = bench()?;
    cmd.args(["--rate", &rate.to_string(), "--json"]).arg(&json);
    step::run(
        &format!("sweep {label} at {rate:.0} ops/s{suffix}"),
        &mut cmd,
    )?;
    let point = SweepPoint::of(rate, &read_report(&json)?)
        .with_context(|| format!("reading {}", json.display()))?;
    println!(
        "sweep {label}: offered {rate:.0}, answered {:.0} ops/s, p50 {:.1} µs, p99 {:.1} µs, {} \
         failed{}",
        point.achieved,
        point.p50_us,
        point.p99_us,
        point.failed,
        if point.saturated { ": saturated" } else { "" }
    );
    Ok(point)
}

fn read_report(json: &Path) -> Result<Value> {
    let text = fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))
}

/// Each offered rate's medians over several sweeps of one server (a rate only some sweeps
/// reached counts those); saturated if any run at that rate was.
pub(super) fn medians(sweeps: &[Vec<SweepPoint>]) -> Vec<SweepPoint> {
    let mut rates: Vec<f64> = sweeps.iter().flatten().map(|p| p.offered).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    rates
        .into_iter()
        .map(|rate| {
            let at: Vec<&SweepPoint> = sweeps
                .iter()
                .flatten()
                .filter(|p| p.offered == rate)
                .collect();
            let of = |f: fn(&SweepPoint) -> f64| {
                super::table::middle(at.iter().map(|p| f(p))).unwrap_or(f64::NAN)
            };
            SweepPoint {
                offered: rate,
                achieved: of(|p| p.achieved),
                p50_us: of(|p| p.p50_us),
                p99_us: of(|p| p.p99_us),
                p999_us: of(|p| p.p999_us),
                ops_per_cpu_s: of(|p| p.ops_per_cpu_s),
                failed: at.iter().map(|p| p.failed).max().unwrap_or(0),
                saturated: at.iter().any(|p| p.saturated),
            }
        })
        .collect()
}

/// The sweeps side by side: one row per offered rate, each server's achieved rate, latency and
/// ops per server CPU-second, then the last two servers' CPU ratio (kcache / memcached).
pub(super) fn markdown(series: &[(&str, Vec<SweepPoint>)]) -> String {
    let mut md = String::from("| offered ops/s |");
    for (name, _) in series {
        md.push_str(&format!(
            " {name} ops/s | p50 µs | p99 µs | p99.9 µs | ops per CPU-s |"
        ));
    }
    let ratio = match series {
        [.., (a, _), (b, _)] => Some(format!("{b} / {a} per CPU-s")),
        _ => None,
    };
    if let Some(r) = &ratio {
        md.push_str(&format!(" {r} |"));
    }
    md.push_str("\n|---:|");
    md.push_str(&"---:|---:|---:|---:|---:|".repeat(series.len()));
    if ratio.is_some() {
        md.push_str("---:|");
    }
    md.push('\n');
    let mut rates: Vec<f64> = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.offered))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    for rate in rates {
        md.push_str(&format!("| {rate:.0} |"));
        for (_, points) in series {
            match points.iter().find(|p| p.offered == rate) {
                Some(p) => md.push_str(&format!(
                    " {:.0}{} | {:.1} | {:.1} | {:.1} | {:.0} |",
                    p.achieved,
                    if p.saturated { " (saturated)" } else { "" },
                    p.p50_us,
                    p.p99_us,
                    p.p999_us,
                    p.ops_per_cpu_s
                )),
                None => md.push_str(" — | — | — | — | — |"),
            }
        }
        if ratio.is_some() {
            let at = |i: usize| {
                series[i]
                    .1
                    .iter()
                    .find(|p| p.offered == rate)
                    .map(|p| p.ops_per_cpu_s)
            };
            match (at(series.len() - 2), at(series.len() - 1)) {
                (Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                    md.push_str(&format!(" **{:.2}×** |", b / a));
                }
                _ => md.push_str(" — |"),
            }
        }
        md.push('\n');
    }
    md
}

fn nan() -> f64 {
    f64::NAN
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rate_steps() {
        // Even steps to the guess.
        assert_eq!(
            rates(100_000.0, 5),
            [20_000.0, 40_000.0, 60_000.0, 80_000.0, 100_000.0]
        );
        // Whole requests per second.
        assert_eq!(rates(1000.0, 3), [333.0, 667.0, 1000.0]);
        // Rates under one request per second are dropped, repeats kept once.
        assert_eq!(rates(2.0, 4), [1.0, 2.0]);
        assert!(rates(100.0, 0).is_empty());
    }

    fn report(ops: f64, p99: f64) -> Value {
        json!({
            "ops_per_sec": ops,
            "latency_us": {"p50": 30.0, "p99": p99, "p999": p99 * 2.0},
            "counts": {"errors": 1, "udp_lost": 2, "unanswered": 0},
        })
    }

    #[test]
    fn medians_and_the_table() {
        let pt = |offered: f64, p99_us: f64, cpu: f64| SweepPoint {
            offered,
            achieved: offered,
            p50_us: 10.0,
            p99_us,
            p999_us: p99_us,
            ops_per_cpu_s: cpu,
            failed: 0,
            saturated: p99_us > 10_000.0,
        };
        // Per-rate medians over three sweeps; the rate only one sweep reached keeps its point.
        let m = medians(&[
            vec![pt(1e5, 100.0, 1e5), pt(2e5, 20_000.0, 1e5)],
            vec![pt(1e5, 300.0, 3e5)],
            vec![pt(1e5, 200.0, 2e5)],
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].p99_us, m[0].ops_per_cpu_s, m[0].saturated),
            (200.0, 2e5, false)
        );
        assert!(m[1].saturated);
        let md = markdown(&[
            ("memcached", m.clone()),
            ("kcache", vec![pt(1e5, 50.0, 5e5)]),
        ]);
        assert!(md.contains("| kcache / memcached per CPU-s |"), "{md}");
        // 5e5 / 2e5 at 100k; nothing to compare at 200k.
        assert!(md.contains("| 100000 | 100000 | 10.0 | 200.0 | 200.0 | 200000 | 100000 | 10.0 | 50.0 | 50.0 | 500000 | **2.50×** |"), "{md}");
        assert!(
            md.contains("(saturated)") && md.contains(" — | — |"),
            "{md}"
        );
    }

    #[test]
    fn saturation() {
        // Keeping up: 96% answered, p99 well under 10 ms.
        let p = SweepPoint::of(1000.0, &report(960.0, 200.0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.achieved, p.p50_us, p.p99_us, p.p999_us),
            (960.0, 30.0, 200.0, 400.0)
        );
        assert_eq!((p.failed, p.saturated), (3, false));
        // Falling behind: 94% answered.
        let p = SweepPoint::of(1000.0, &report(940.0, 200.0)).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.saturated);
        // Queueing: everything answered, but p99 over 10 ms.
        let p = SweepPoint::of(1000.0, &report(1000.0, 10_001.0));
        assert!(p.unwrap_or_else(|e| panic!("{e}")).saturated);
        // A report without latencies is refused.
        assert!(SweepPoint::of(1000.0, &json!({"ops_per_sec": 1.0})).is_err());
    }

    /// A stand-in for `kcache bench` run as `sh -c SCRIPT sh --rate R --json FILE`, answering
    /// min(R, 3000) ops/s; at `flaky` ops/s it answers half the rate, on the first try only.
    fn fake_sweep(out: &Path, flaky: u32) -> (Vec<(f64, f64)>, usize) {
        let script = format!(
            r#"a=$2; [ "$a" -gt 3000 ] && a=3000
            dip="$(dirname "$4")/dipped"
            if [ "$2" = {flaky} ] && [ ! -e "$dip" ]; then touch "$dip"; a=$(($2 / 2)); fi
            printf '{{"ops_per_sec": %s, "latency_us": {{"p50": 1, "p99": 2, "p999": 3}}}}' "$a" > "$4""#
        );
        let mut made = 0;
        let points = run_sweep("fake", &rates(5000.0, 5), out, || {
            made += 1;
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &script, "sh"]);
            Ok(cmd)
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        (
            points.iter().map(|p| (p.offered, p.achieved)).collect(),
            made,
        )
    }

    #[test]
    fn sweep_stops_at_saturation() {
        let out = std::env::temp_dir().join(format!("kcache-sweep-{}", std::process::id()));
        // Saturated at 4000 (75% answered) twice: the sweep stops there, after five runs.
        fs::create_dir_all(out.join("a")).unwrap_or_else(|e| panic!("{e}"));
        let (seen, made) = fake_sweep(&out.join("a"), 0);
        assert_eq!(
            seen,
            [
                (1000.0, 1000.0),
                (2000.0, 2000.0),
                (3000.0, 3000.0),
                (4000.0, 3000.0)
            ]
        );
        assert_eq!(made, 5);
        // A one-off dip at 2000 is run again and the sweep goes on with the second run.
        fs::create_dir_all(out.join("b")).unwrap_or_else(|e| panic!("{e}"));
        let (seen, made) = fake_sweep(&out.join("b"), 2000);
        assert_eq!(seen[1], (2000.0, 2000.0));
        assert_eq!((seen.len(), made), (4, 6));
        let _ = fs::remove_dir_all(&out);
    }
}
