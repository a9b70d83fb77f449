//! The XDP program's cost per packet, from the `cost_per_hit` kernel test (tests/xdp_prog.rs):
//! `BPF_PROG_TEST_RUN` over a prepared hit and miss, the kernel's BPF run-time stats
//! (`run_time_ns / run_cnt`), minus the same figure for the do-nothing program. It runs twice
//! per test: with no source allowlist, and with one (a server's default, so the packet's source
//! is checked too). Run `COST_RUNS` times; medians.

use std::{process::Stdio, time::Duration};

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::super::{machine, table::middle, BenchArgs};
use crate::step;

pub(super) const COST_RUNS: usize = 3;
/// The command, as the page quotes it.
pub(super) const COST_COMMAND: &str =
    "cargo test -p kcache-tests --test xdp_prog cost_per_hit -- --nocapture";

/// One run of the test: ns per hit and per miss, without and with the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Cost {
    pub(super) hit_ns: f64,
    pub(super) miss_ns: f64,
    pub(super) allow_hit_ns: Option<f64>,
    pub(super) allow_miss_ns: Option<f64>,
}

/// The runs and the test's own explanation of its figure (the parenthesis of its line).
#[derive(Debug, Clone, Serialize)]
pub(super) struct Costs {
    pub(super) runs: Vec<Cost>,
    pub(super) how: String,
}

impl Costs {
    /// The median of one figure over the runs that have it.
    pub(super) fn median(&self, f: fn(&Cost) -> Option<f64>) -> Option<f64> {
        middle(self.runs.iter().filter_map(f))
    }
}

/// Runs the test `COST_RUNS` times (as root, with the XDP object already built), each on an
/// idle machine as `a` defines it.
pub(super) fn measure(a: &BenchArgs) -> Result<Costs> {
    let mut runs = Vec::new();
    let mut how = String::new();
    for i in 0..COST_RUNS {
        let args: Vec<&str> = COST_COMMAND.split_whitespace().skip(1).collect();
        let name = format!("xdp cost per hit (run {} of {COST_RUNS})", i + 1);
        step::header(&name);
        machine::wait_idle(a.idle_below, Duration::from_secs(a.idle_wait))?;
        let out = step::cargo_cmd(&args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {COST_COMMAND}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        ensure!(
            out.status.success(),
            "{COST_COMMAND} exited with {} (it needs root and the object from cargo xtask ebpf)",
            out.status
        );
        let (cost, said) = parse(&text).with_context(|| {
            format!("no `xdp cost per hit` line in the output of {COST_COMMAND}")
        })?;
        runs.push(cost);
        how = said;
    }
    Ok(Costs { runs, how })
}

/// The figures of the test's lines:
/// `xdp cost per hit: X ns, per miss: Y ns (how)` and
/// `with the source allowlist on: xdp cost per hit: X ns, per miss: Y ns`.
fn parse(text: &str) -> Option<(Cost, String)> {
    let pair = |line: &str| -> Option<(f64, f64, String)> {
        let rest = line.split("xdp cost per hit: ").nth(1)?;
        let (hit, rest) = rest.split_once(" ns, per miss: ")?;
        let (miss, rest) = rest.split_once(" ns")?;
        let how = rest
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .to_owned();
        Some((hit.trim().parse().ok()?, miss.trim().parse().ok()?, how))
    };
    let mut plain = None;
    let mut allow = None;
    for line in text.lines() {
        if line.starts_with("with the source allowlist on:") {
            allow = pair(line);
        } else if line.starts_with("xdp cost per hit:") {
            plain = pair(line);
        }
    }
    let (hit_ns, miss_ns, how) = plain?;
    Some((
        Cost {
            hit_ns,
            miss_ns,
            allow_hit_ns: allow.as_ref().map(|a| a.0),
            allow_miss_ns: allow.as_ref().map(|a| a.1),
        },
        how,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tests_lines() {
        let text = "running 1 test\n\
            xdp cost per hit: 156.0 ns, per miss: 82.7 ns (BPF run-time stats over 50000 runs, \
            minus 36.7 ns measured for the do-nothing program)\n\
            with the source allowlist on: xdp cost per hit: 170.7 ns, per miss: 99.6 ns\n\
            test cost_per_hit ... ok\n";
        let (c, how) = parse(text).unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(
            c,
            Cost {
                hit_ns: 156.0,
                miss_ns: 82.7,
                allow_hit_ns: Some(170.7),
                allow_miss_ns: Some(99.6)
            }
        );
        assert!(
            how.starts_with("BPF run-time stats over 50000 runs"),
            "{how}"
        );
        // Without the allowlist line the plain figures still count.
        let (c, _) = parse("xdp cost per hit: 1.5 ns, per miss: 2 ns (x)\n")
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!((c.hit_ns, c.allow_hit_ns), (1.5, None));
        // No line at all (the test skipped or failed before printing).
        assert_eq!(parse("test cost_per_hit ... ok\n"), None);
    }
}
