//! `cargo xtask bench`: kcache and memcached 1.6 side by side on this machine.
//!
//! Both servers run for the whole bench with the same threads and memory, pinned to the same
//! CPUs (`taskset`; kcache then pins its workers inside that set). Each run waits for the machine
//! to be idle, drives one server with `kcache bench` pinned to the client CPUs, and takes the
//! client's JSON report, which carries the server's, the client's and everyone else's CPU time
//! over the measured window (from /proc). Every scenario runs on both servers, alternately, the
//! order flipped on every repeat; the table shows medians over the repeats.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use self::server::Server;
use crate::{ebpf, step, tools};

mod doc;
mod herd;
mod machine;
mod memory;
mod server;
mod sweep;
mod table;
mod xdp;

/// The load generator (and server), built in release by this command.
const KCACHE: &str = "target/release/kcache";
/// Results and server logs go here.
const OUT_DIR: &str = "target/bench";
/// The page a full run (every scenario) writes.
const DOC: &str = "docs/BENCHMARKS.md";
/// Where its plots go (it links them as `bench/<file>`).
const PLOTS: &str = "docs/bench";

/// One load, as `kcache bench` flags (the server address, duration and pinning are added).
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    about: &'static str,
    udp: bool,
    flags: &'static [&'static str],
}

/// The "Measure" loads: 100k keys of 16 B, 32 B values, uniform popularity; each at one
/// request in flight per connection and pipelined, plus 24-key multigets.
const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "tcp-90-10",
        about: "TCP, 90% get / 10% set, 8 connections, depth 1, closed loop",
        udp: false,
        flags: &["--conns", "8", "--depth", "1", "--get-ratio", "0.9"],
    },
    Scenario {
        name: "tcp-90-10-depth8",
        about: "TCP, 90% get / 10% set, 8 connections, 8 pipelined requests each, closed loop",
        udp: false,
        flags: &["--conns", "8", "--depth", "8", "--get-ratio", "0.9"],
    },
    Scenario {
        name: "udp-gets",
        about: "UDP, 100% get, 8 sockets, depth 1, closed loop (keys set over TCP first)",
        udp: true,
        flags: &["--conns", "8", "--depth", "1", "--get-ratio", "1"],
    },
    Scenario {
        name: "udp-gets-depth8",
        about: "UDP, 100% get, 8 sockets, 8 requests in flight each, closed loop",
        udp: true,
        flags: &["--conns", "8", "--depth", "8", "--get-ratio", "1"],
    },
    Scenario {
        name: "tcp-multiget-24",
        about: "TCP, gets of 24 keys each, 8 connections, depth 1, closed loop (ops = requests)",
        udp: false,
        flags: &[
            "--conns",
            "8",
            "--depth",
            "1",
            "--get-ratio",
            "1",
            "--multiget",
            "24",
        ],
    },
];
/// The rate sweep's load: TCP 90/10 over 8 connections, open loop (`--rate` is added per point).
const SWEEP: Scenario = Scenario {
    name: "sweep",
    about: "TCP, 90% get / 10% set, 8 connections, open loop at rising rates (Poisson arrivals)",
    udp: false,
    flags: &["--conns", "8", "--get-ratio", "0.9"],
};
/// Sweep rates: `SWEEP_STEPS` even steps up to `SWEEP_MAX` requests per second (above either
/// server's capacity here: kcache's p99 passed 10 ms near 800k ops/s by hand), each measured for
/// `SWEEP_SECS`.
const SWEEP_MAX: f64 = 900_000.0;
const SWEEP_STEPS: usize = 18;
const SWEEP_SECS: f64 = 3.0;
const SWEEP_WARMUP: f64 = 1.0;
/// Memory per item is measured at these item counts.
const MEMORY_ITEMS: [u64; 2] = [1_000_000, 10_000_000];

/// Scenarios that are not a `kcache bench` load on loopback: the hot-key herd (`kcache herd`),
/// the open-loop rate sweep, memory per item and the XDP fast path over the veth test bed.
const EXTRA: [&str; 4] = ["herd", "sweep", "memory", "xdp"];
/// Keys a later `--doc-from` file contributes to the first one's page: its sections.
const SECTION_KEYS: [&str; 8] = [
    "herd_markdown",
    "herd_runs",
    "sweep_markdown",
    "sweep",
    "memory_markdown",
    "memory",
    "xdp_markdown",
    "xdp",
];
const COMMON: [&str; 8] = [
    "--keys",
    "100000",
    "--key-size",
    "16",
    "--value-size",
    "32",
    "--dist",
    "uniform",
];

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// Runs of each scenario on each server; the table shows medians
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Run only this scenario (tcp-90-10, tcp-90-10-depth8, udp-gets, udp-gets-depth8,
    /// tcp-multiget-24, herd, sweep, memory, xdp)
    #[arg(long)]
    scenario: Option<String>,
    /// Worker threads of each server (-t)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Memory of each server in MB (-m)
    #[arg(long, default_value_t = 256)]
    memory_mb: usize,
    /// CPUs the servers are confined to (taskset list)
    #[arg(long, default_value = "1")]
    server_cpus: String,
    /// CPU the client runs on
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// Measured seconds per run
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds of traffic before each run (after setting every key)
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// A run starts once the machine's busy CPU over one second is below this percentage...
    #[arg(long, default_value_t = 20.0)]
    idle_below: f64,
    /// ...or after this many seconds of waiting, whatever the load (it is recorded either way)
    #[arg(long, default_value_t = 60)]
    idle_wait: u64,
    /// Run nothing: rewrite docs/BENCHMARKS.md from this results file of an earlier run; given
    /// again, later files add their sections (e.g. a full run, then a `--scenario xdp` run)
    #[arg(long, value_name = "FILE")]
    doc_from: Vec<PathBuf>,
}

/// Keys asked for by gets and hits over a whole client run (warm-up included), as the server's
/// `stats` counted them (get_hits + get_misses, get_hits) and as the client did.
#[derive(Debug, Clone, Copy, Serialize)]
struct StatsCheck {
    server_keys: u64,
    server_hits: u64,
    client_keys: u64,
    client_hits: u64,
    matches: bool,
    /// UDP requests whose reply never arrived: the server counted their keys, the client did
    /// not, so with single-key gets `server_keys - client_keys` must equal this.
    udp_lost: u64,
    /// The counts differ by exactly the lost UDP replies.
    explained_by_loss: bool,
}

/// One run's record in the results file.
#[derive(Debug, Serialize)]
struct Run {
    scenario: &'static str,
    server: &'static str,
    repeat: usize,
    idle: machine::Idle,
    /// The server's own count of the run's gets, against the client's.
    stats: StatsCheck,
    figures: table::Figures,
    report: Value,
}

pub(crate) fn run(a: &BenchArgs) -> Result<()> {
    if !a.doc_from.is_empty() {
        build_kcache()?;
        return write_doc(&merged(&a.doc_from)?);
    }
    if let Some(name) = &a.scenario {
        let all: Vec<&str> = SCENARIOS.iter().map(|s| s.name).chain(EXTRA).collect();
        ensure!(
            all.contains(&name.as_str()),
            "no scenario {name:?}; there are {all:?}"
        );
    }
    let want = |name: &str| a.scenario.as_deref().is_none_or(|s| s == name);
    let scenarios: Vec<Scenario> = SCENARIOS.iter().filter(|s| want(s.name)).copied().collect();
    ensure!(a.repeat >= 1, "--repeat must be at least 1");
    let started = Instant::now();
    // The commit measured is the one the binaries are built from, before anything else changes.
    let measured = commit()?;
    build_kcache()?;
    tools::apt_packages(&tools::SERVER_TOOLS)?;
    fs::create_dir_all(OUT_DIR).with_context(|| format!("creating {OUT_DIR}"))?;
    let machine = machine::Machine::read()?;
    // The loopback servers, unless only the XDP scenario (which starts its own) or memory runs.
    let loopback = !scenarios.is_empty() || want("sweep") || want("herd");
    let servers = if loopback {
        step::header("servers");
        vec![
            server::memcached(&a.server_cpus, a.threads, a.memory_mb)?,
            server::kcache(&a.server_cpus, a.threads, a.memory_mb)?,
        ]
    } else {
        Vec::new()
    };
    for s in &servers {
        println!(
            "{} pid {}: TCP {}, UDP {}",
            s.name,
            s.child.id(),
            s.tcp,
            s.udp
        );
    }
    let pinning = format!(
        "servers: taskset -c {} (kcache pins its {} worker(s) inside it); client: taskset -c {} \
         and its thread pinned to CPU {}",
        a.server_cpus, a.threads, a.client_cpu, a.client_cpu
    );
    println!("{pinning}");

    let mut runs = Vec::new();
    for repeat in 0..a.repeat {
        for sc in &scenarios {
            // memcached first on even repeats, kcache first on odd ones.
            let order = if repeat % 2 == 0 { [0, 1] } else { [1, 0] };
            for &i in &order {
                runs.push(run_one(a, sc, &servers[i], repeat)?);
            }
        }
    }
    let mut rows = Vec::new();
    for sc in &scenarios {
        for s in &servers {
            let mine: Vec<_> = runs
                .iter()
                .filter(|r| r.scenario == sc.name && r.server == s.name)
                .collect();
            let figures: Vec<_> = mine.iter().map(|r| &r.figures).collect();
            rows.push(table::Row {
                scenario: sc.name.into(),
                server: s.name.into(),
                runs: mine.len(),
                median: table::median(&figures),
            });
        }
    }
    let sweeps = if want("sweep") {
        step::header("open-loop rate sweep");
        let sw = sweep_all(a, &servers)?;
        println!("{}", sweep::markdown(&sw));
        Some(sw)
    } else {
        None
    };
    let herd = if want("herd") {
        step::header("hot-key herd");
        let (md, raw) = herd::run(&servers, a.repeat, a.client_cpu)?;
        println!("{md}");
        Some((md, raw))
    } else {
        None
    };
    drop(servers);
    let memory = if want("memory") {
        step::header("memory per item");
        let rows = memory::run(KCACHE, &MEMORY_ITEMS)?;
        let md = memory::markdown(&rows);
        println!("{md}");
        Some((md, rows))
    } else {
        None
    };
    let xdp = if want("xdp") {
        step::header("XDP fast path over the veth test bed");
        let (md, raw) = xdp::run(a, &measured, &machine.date)?;
        println!("{md}");
        Some((md, raw))
    } else {
        None
    };
    let took = started.elapsed().as_secs_f64();
    let md = table::markdown(&rows, a.duration);
    if !rows.is_empty() {
        step::header("medians");
        println!("{md}");
    }
    let agree = runs.iter().filter(|r| r.stats.matches).count();
    let lost = runs.iter().filter(|r| r.stats.explained_by_loss).count();
    let check = format!(
        "in {agree} of {} runs the server's own `get_hits`/`get_misses` equalled the client's \
         counts; in {lost} more they differed by exactly the UDP replies the client lost",
        runs.len()
    );
    if !runs.is_empty() {
        println!("stats check: {check}");
    }
    let path = PathBuf::from(OUT_DIR).join(format!("{}.json", machine.date.replace(':', "")));
    let command = std::iter::once("cargo xtask".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let mut doc = json!({
        "command": command,
        "commit": measured,
        "results_file": path.display().to_string(),
        "machine": machine,
        "pinning": pinning,
        "settings": {
            "repeat": a.repeat, "server_threads": a.threads, "memory_mb": a.memory_mb,
            "duration_s": a.duration, "warmup_s": a.warmup, "idle_below_pct": a.idle_below,
            "idle_wait_s": a.idle_wait,
        },
        "scenarios": scenarios.iter().map(|s| json!({"name": s.name, "about": s.about})).collect::<Vec<_>>(),
        "medians": rows,
        "stats_check": check,
        "markdown": md,
        "runs": runs,
        "took_s": took,
    });
    if let Some((md, raw)) = herd {
        doc["herd_markdown"] = md.into();
        doc["herd_runs"] = raw;
    }
    if let Some(sw) = sweeps {
        let about = format!(
            "{}. Each rate runs {SWEEP_SECS} s after {SWEEP_WARMUP} s of warm-up; {} sweeps per \
             server, medians per rate. A sweep stops after the first rate where fewer than 95% of \
             the offered requests per second are answered or p99 passes 10 ms (marked \
             \"saturated\" when any sweep stopped there). The client's one thread polls without \
             sleeping in open loop; it offered 1M ops/s to kcache by hand, so up to there the limit is the server.\n\n",
            SWEEP.about, a.repeat
        );
        doc["sweep_markdown"] = (about + &sweep::markdown(&sw)).into();
        doc["sweep"] = json!(sw
            .iter()
            .map(|(n, p)| json!({"server": n, "points": p}))
            .collect::<Vec<_>>());
        doc["sweep_about"] = SWEEP.about.into();
    }
    if let Some((md, rows)) = memory {
        doc["memory_markdown"] = md.into();
        doc["memory"] = json!(rows);
    }
    if let Some((md, raw)) = xdp {
        doc["xdp_markdown"] = md.into();
        doc["xdp"] = raw;
    }
    doc["curves"] = curves(&runs);
    let text = serde_json::to_string_pretty(&doc).context("encoding the results")?;
    fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    println!("results: {} ({took:.0} s in all)", path.display());
    if a.scenario.is_none() {
        write_doc(&doc)?;
    } else {
        println!(
            "{DOC} left as it is: it is only written by a run of every scenario. To add this \
             run's sections to the page of the run it was generated from: cargo xtask bench \
             --doc-from target/bench/<that run>.json --doc-from {}",
            path.display()
        );
    }
    Ok(())
}

/// For each load scenario and server, the latency percentile curve of the run with the median
/// p99: `{scenario: {server: [[percentile, µs], ...]}}`.
fn curves(runs: &[Run]) -> Value {
    let mut out = serde_json::Map::new();
    for r in runs {
        let entry = out.entry(r.scenario).or_insert_with(|| json!({}));
        if entry.get(r.server).is_some() {
            continue;
        }
        let mut mine: Vec<&Run> = runs
            .iter()
            .filter(|x| x.scenario == r.scenario && x.server == r.server)
            .collect();
        mine.sort_by(|x, y| {
            let p99 = |r: &Run| r.figures.get("p99_us").copied().unwrap_or(f64::NAN);
            p99(x).total_cmp(&p99(y))
        });
        if let Some(mid) = mine.get(mine.len() / 2) {
            entry[r.server] = mid.report["curve"].clone();
        }
    }
    Value::Object(out)
}

/// The first results file, with the sections ([`SECTION_KEYS`]) of each later one added or
/// replaced, and the files named in `merged_from`.
fn merged(files: &[PathBuf]) -> Result<Value> {
    let mut base: Option<Value> = None;
    for from in files {
        let text =
            fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
        let doc: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", from.display()))?;
        match &mut base {
            None => base = Some(doc),
            Some(b) => {
                for key in SECTION_KEYS {
                    if let Some(v) = doc.get(key) {
                        b[key] = v.clone();
                    }
                }
            }
        }
    }
    let mut doc = base.context("no --doc-from file")?;
    if files.len() > 1 {
        doc["merged_from"] = json!(files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>());
    }
    Ok(doc)
}

/// Writes [`DOC`] and its plots (into [`PLOTS`], drawn by `kcache plot`) from a results
/// document.
fn write_doc(doc: &Value) -> Result<()> {
    fs::create_dir_all(PLOTS).with_context(|| format!("creating {PLOTS}"))?;
    fs::create_dir_all(OUT_DIR).with_context(|| format!("creating {OUT_DIR}"))?;
    let mut plots = Vec::new();
    // Each series goes to a file of its own for `kcache plot`.
    let series_file = |name: &str, v: &Value| -> Result<String> {
        let path = PathBuf::from(OUT_DIR).join(format!("plot-{name}.json"));
        fs::write(&path, v.to_string()).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.display().to_string())
    };
    let mut draw = |kind: &str, file: String, title: String, series: Vec<String>| -> Result<()> {
        let out = Path::new(PLOTS).join(&file);
        let mut cmd = Command::new(KCACHE);
        cmd.args(["plot", kind, "--title", &title, "-o"])
            .arg(&out)
            .args(series);
        step::run(&format!("plot {}", out.display()), &mut cmd)?;
        plots.push(json!({"title": title, "path": format!("bench/{file}")}));
        Ok(())
    };
    for (scenario, servers) in doc["curves"].as_object().into_iter().flatten() {
        let mut series = Vec::new();
        // memcached first, so each server keeps its colour across plots (the map is sorted).
        let mut named: Vec<(&String, &Value)> = servers.as_object().into_iter().flatten().collect();
        named.sort_by_key(|(name, _)| name.as_str() != "memcached");
        for (server, curve) in named {
            let f = series_file(&format!("curve-{scenario}-{server}"), curve)?;
            series.push(format!("{server}={f}"));
        }
        let title = format!("{scenario}: latency by percentile (the run with the median p99)");
        draw("curve", format!("curve-{scenario}.svg"), title, series)?;
    }
    if let Some(sw) = doc["sweep"].as_array() {
        let mut series = Vec::new();
        for s in sw {
            let server = s["server"].as_str().unwrap_or("?");
            let f = series_file(&format!("sweep-{server}"), &s["points"])?;
            series.push(format!("{server}={f}"));
        }
        let title = "open-loop sweep: latency against throughput (TCP 90/10, 8 connections)";
        draw("sweep", "sweep.svg".into(), title.into(), series)?;
    }
    let mut doc = doc.clone();
    doc["plots"] = Value::Array(plots);
    fs::write(DOC, doc::markdown(&doc)).with_context(|| format!("writing {DOC}"))?;
    println!("wrote {DOC} and its plots in {PLOTS}");
    Ok(())
}

/// The release kcache the bench runs and plots with, its XDP object built first.
fn build_kcache() -> Result<()> {
    tools::ensure_build()?;
    ebpf::build()?;
    step::cargo(
        "build release",
        &["build", "--release", "-p", "cache-user", "--bin", "kcache"],
    )
}

/// The commit measured, with `-dirty` when the work tree has changes.
fn commit() -> Result<String> {
    let out = |args: &[&str]| -> Result<String> {
        let o = Command::new("git")
            .args(args)
            .output()
            .context("running git")?;
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let hash = out(&["rev-parse", "--short", "HEAD"])?;
    let dirty = !out(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Ok(if dirty { format!("{hash}-dirty") } else { hash })
}

/// `kcache bench` pinned as asked against `server` with `sc`'s load, for `duration` seconds after
/// `warmup` (without `--json`).
fn bench_command(
    a: &BenchArgs,
    server: &Server,
    sc: &Scenario,
    duration: f64,
    warmup: f64,
) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &a.client_cpu.to_string(), KCACHE, "bench", "-q"])
        .args(["--server", &format!("127.0.0.1:{}", server.tcp)])
        .args(["--cpus", &a.client_cpu.to_string()])
        .args(["--server-pid", &server.child.id().to_string()])
        .args([
            "--duration",
            &duration.to_string(),
            "--warmup",
            &warmup.to_string(),
        ])
        .args(COMMON)
        .args(sc.flags);
    if sc.udp {
        cmd.args(["--udp", "--udp-port", &server.udp.to_string()]);
    }
    cmd
}

/// The open-loop rate sweep: [`SWEEP`]'s load at rising rates on each server, `a.repeat` times,
/// medians per rate.
fn sweep_all(
    a: &BenchArgs,
    servers: &[Server],
) -> Result<Vec<(&'static str, Vec<sweep::SweepPoint>)>> {
    let rates = sweep::rates(SWEEP_MAX, SWEEP_STEPS);
    let mut out = Vec::new();
    for s in servers {
        let mut runs = Vec::new();
        for r in 0..a.repeat {
            let label = format!("{}-{r}", s.name);
            runs.push(sweep::run_sweep(
                &label,
                &rates,
                Path::new(OUT_DIR),
                || {
                    machine::wait_idle(a.idle_below, Duration::from_secs(a.idle_wait))?;
                    Ok(bench_command(a, s, &SWEEP, SWEEP_SECS, SWEEP_WARMUP))
                },
            )?);
        }
        out.push((s.name, sweep::medians(&runs)));
    }
    Ok(out)
}

/// Waits for an idle machine, runs `kcache bench` against `server` and reads its report.
fn run_one(a: &BenchArgs, sc: &Scenario, server: &Server, repeat: usize) -> Result<Run> {
    let name = format!(
        "{} on {} (run {} of {})",
        sc.name,
        server.name,
        repeat + 1,
        a.repeat
    );
    let idle = machine::wait_idle(a.idle_below, Duration::from_secs(a.idle_wait))?;
    println!("\n{name}: {idle}");
    let json =
        PathBuf::from(OUT_DIR).join(format!("run-{}-{}-{repeat}.json", sc.name, server.name));
    let mut cmd = bench_command(a, server, sc, a.duration, a.warmup);
    cmd.arg("--json").arg(&json);
    let before = server.stats()?;
    step::run(&name, &mut cmd)?;
    let after = server.stats()?;
    let text = fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let report: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let figures = table::figures(&report);
    let delta = |k: &str| {
        after
            .get(k)
            .unwrap_or(&0)
            .saturating_sub(*before.get(k).unwrap_or(&0))
    };
    let client = |k: &str| {
        report
            .pointer(&format!("/counts_all/{k}"))
            .and_then(Value::as_u64)
    };
    let (server_hits, server_keys) = (delta("get_hits"), delta("get_hits") + delta("get_misses"));
    let (client_hits, client_keys) = (client("hits").unwrap_or(0), client("get_keys").unwrap_or(0));
    let matches = (server_hits, server_keys) == (client_hits, client_keys);
    let udp_lost = client("udp_lost").unwrap_or(0);
    let single_key = !sc.flags.contains(&"--multiget");
    let explained_by_loss = !matches
        && single_key
        && server_keys.checked_sub(client_keys) == Some(udp_lost)
        && server_hits >= client_hits;
    let stats = StatsCheck {
        server_keys,
        server_hits,
        client_keys,
        client_hits,
        matches,
        udp_lost,
        explained_by_loss,
    };
    println!(
        "stats check: the server counted {server_hits} hits of {server_keys} keys asked, the \
         client {client_hits} of {client_keys}{}",
        match (matches, explained_by_loss) {
            (true, _) => String::new(),
            (false, true) => format!(": the difference is the {udp_lost} UDP replies lost"),
            (false, false) => ": MISMATCH".into(),
        }
    );
    Ok(Run {
        scenario: sc.name,
        server: server.name,
        repeat,
        idle,
        stats,
        figures,
        report,
    })
}
