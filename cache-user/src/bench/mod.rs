//! `kcache bench`: a load generator for memcached's text protocol over TCP and UDP.
//!
//! The main thread sets every key (unless told not to), opens the connections, deals them out to
//! the client threads and then only watches: it prints a progress line each second on long runs
//! and reads CPU counters when the measured window opens and closes. Each client thread runs the
//! [`driver`] loop over its own connections and keeps its own HDR histogram; they are merged at
//! the end.

use std::{
    fs,
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use rand::{rngs::SmallRng, SeedableRng};

pub(crate) use self::args::{BenchArgs, BENCH_AFTER_HELP};
use self::{
    args::Plan,
    cpu::Sample,
    driver::{Endpoint, Job, Pacing, Poisson, Window},
    record::{Live, Recorder},
    report::Report,
    tcp::TcpConn,
    udp::UdpConn,
};

mod args;
mod cpu;
mod driver;
pub(crate) mod herd;
pub(crate) mod plot;
mod record;
mod reply;
mod report;
mod tcp;
mod udp;
mod workload;
mod zipf;

#[cfg(test)]
mod tests;

/// How long TCP replies still in flight at the end are waited for.
const TCP_DRAIN: Duration = Duration::from_secs(2);

/// Runs `kcache bench` and prints (and maybe writes) the report.
pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    let plan = Plan::new(args)?;
    let report = execute(&plan)?;
    print!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let curve: Vec<(f64, f64)> = report.curve.iter().map(|&[p, us]| (p, us)).collect();
        let title = format!(
            "{} {}: latency by percentile",
            report.server, report.transport
        );
        plot::percentile_curve(&title, &[(&report.server, &curve)], path)?;
    }
    Ok(())
}

/// Pre-populates, runs the load and returns what was measured.
pub(crate) fn execute(plan: &Plan) -> Result<Report> {
    let w = &plan.workload;
    let populated = if plan.populate {
        let mut rng = SmallRng::seed_from_u64(plan.seed ^ 0x5eed);
        let stored = tcp::populate(plan.tcp, w, &mut rng).context("pre-populating")?;
        if stored < w.keys {
            eprintln!("kcache bench: only {stored} of {} keys were STORED", w.keys);
        }
        Some(stored)
    } else {
        None
    };
    // Fail on a bad --server-pid now rather than after the run.
    Sample::take(plan.server_pid)?;
    let per_thread =
        |t: usize| plan.conns / plan.threads + usize::from(t < plan.conns % plan.threads);
    let lives: Vec<Live> = (0..plan.threads).map(|_| Live::default()).collect();
    let (rec, cpu, pinning) = match plan.udp {
        Some(addr) => {
            let conns = (0..plan.threads)
                .map(|t| {
                    (0..per_thread(t))
                        .map(|_| UdpConn::connect(addr, plan.udp_timeout))
                        .collect()
                })
                .collect::<Result<Vec<Vec<_>>>>()?;
            load(plan, conns, &lives, plan.udp_timeout)?
        }
        None => {
            let conns = (0..plan.threads)
                .map(|t| {
                    (0..per_thread(t))
                        .map(|_| TcpConn::connect(plan.tcp))
                        .collect()
                })
                .collect::<Result<Vec<Vec<_>>>>()?;
            load(plan, conns, &lives, TCP_DRAIN)?
        }
    };
    Ok(Report::new(plan, &rec, populated, cpu, pinning))
}

/// Runs one client thread per element of `conns` and watches them; returns the merged record,
/// the CPU used in the measured window and where each thread was pinned.
fn load<E: Endpoint + Send>(
    plan: &Plan,
    conns: Vec<Vec<E>>,
    lives: &[Live],
    drain: Duration,
) -> Result<(Recorder, Option<cpu::Usage>, Vec<String>)> {
    let start = Instant::now();
    let window = Window {
        start,
        measure_from: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
    };
    thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(t, mut conns)| {
                let live = &lives[t];
                s.spawn(move || {
                    let pinned = pin(plan, t);
                    let seed = plan
                        .seed
                        .wrapping_add(t as u64)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let pacing = match plan.rate {
                        Some(r) => Pacing::Open(Poisson::new(r / plan.threads as f64, seed ^ 1)),
                        None => Pacing::Closed { depth: plan.depth },
                    };
                    let rng = SmallRng::seed_from_u64(seed);
                    let job = Job {
                        workload: &plan.workload,
                        rng,
                        pacing,
                        window,
                        drain,
                        live,
                    };
                    driver::drive(&mut conns, job).map(|rec| (rec, pinned))
                })
            })
            .collect();
        let cpu = watch(plan, &window, lives, || {
            handles.iter().all(|h| h.is_finished())
        })?;
        let mut merged = Recorder::new(window.measure_from);
        let mut pinning = Vec::new();
        for (t, h) in handles.into_iter().enumerate() {
            let (rec, pinned) = h
                .join()
                .map_err(|_| anyhow!("client thread {t} panicked"))?
                .with_context(|| format!("client thread {t}"))?;
            merged.merge(&rec);
            pinning.extend(pinned);
        }
        Ok((merged, cpu, pinning))
    })
}

/// Pins client thread `t` as `--cpus` asks; says where it went.
fn pin(plan: &Plan, t: usize) -> Option<String> {
    let cpu = *plan.cpus.get(t % plan.cpus.len().max(1))?;
    Some(
        if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            format!("thread {t}: cpu {cpu}")
        } else {
            format!("thread {t}: pinning to cpu {cpu} FAILED")
        },
    )
}

/// Prints progress and samples CPU counters at the window's edges until `done()`.
fn watch(
    plan: &Plan,
    win: &Window,
    lives: &[Live],
    done: impl Fn() -> bool,
) -> Result<Option<cpu::Usage>> {
    let (mut first, mut last) = (None, None);
    let mut tick = win.start + Duration::from_secs(1);
    let mut ops_before = 0;
    loop {
        let now = Instant::now();
        if first.is_none() && now >= win.measure_from {
            first = Some(Sample::take(plan.server_pid)?);
        }
        if last.is_none() && now >= win.end {
            last = Some(Sample::take(plan.server_pid)?);
        }
        if done() {
            break;
        }
        if now >= tick {
            if plan.progress {
                let sum = |f: fn(&Live) -> u64| lives.iter().map(f).sum::<u64>();
                let ops = sum(|l| l.ops.load(Ordering::Relaxed));
                let phase = if now < win.measure_from {
                    "warm-up"
                } else {
                    "measuring"
                };
                eprintln!(
                    "[{:>4} s] {phase:9} {:>9} ops/s  errors {}  udp lost {}",
                    (now - win.start).as_secs(),
                    ops - ops_before,
                    sum(|l| l.errors.load(Ordering::Relaxed)),
                    sum(|l| l.lost.load(Ordering::Relaxed)),
                );
                ops_before = ops;
            }
            tick += Duration::from_secs(1);
        }
        let mut wake = tick.min(now + Duration::from_millis(50));
        for (edge, seen) in [
            (win.measure_from, first.is_some()),
            (win.end, last.is_some()),
        ] {
            if !seen {
                wake = wake.min(edge);
            }
        }
        thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    Ok(first.zip(last).map(|(a, b)| a.until(&b)))
}
