//! The XDP scenario's figures per run, and its section of docs/BENCHMARKS.md: medians per
//! server, ratios to memcached, the targets met or not, the cost per hit, every run.

use std::fmt::Write as _;

use serde_json::Value;

use super::{
    cost::{Cost, Costs, COST_COMMAND, COST_RUNS},
    ABOUT, PRIME_SECS, TARGET_HIT_NS, TARGET_RATIO, TARGET_SHARE,
};
use crate::bench::table::{self, middle, Figures};

/// A run's figures from the client's report, the server's counter deltas over the measured
/// window and /proc/stat's softirq seconds over it.
pub(super) fn figures(report: &Value, delta: &Value, softirq_s: f64) -> Figures {
    let num = |ptr: &str| report.pointer(ptr).and_then(Value::as_f64);
    let stat = |k: &str| delta.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    // The loopback scenarios' figures, and what this one adds.
    let mut f = table::figures(report);
    let mut put = |k: &'static str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            f.insert(k, v);
        }
    };
    let ops = num("/counts/ops");
    let machine = num("/cpu/machine_busy_s");
    let server = num("/cpu/server_s");
    put("steal_s", num("/cpu/steal_s"));
    put("machine_cpu_s", machine);
    put("softirq_s", Some(softirq_s));
    put("ops_per_server_cpu_s", ops.zip(server).map(|(o, s)| o / s));
    put(
        "ops_per_machine_cpu_s",
        ops.zip(machine).map(|(o, m)| o / m),
    );
    // Every get the client sent in the process's life (it measured all of it: no warm-up): the
    // answered ones and the lost ones.
    let sent = num("/counts_all/get_keys").zip(num("/counts_all/udp_lost"));
    let sent = sent.map(|(k, l)| k + l);
    put("gets_sent", sent);
    // kcache's get_hits already include the keys XDP answered (`xdp_hit_keys`), as memcached's
    // counters would if it had answered them itself.
    let in_xdp = stat("xdp_hit_keys");
    put("server_keys", Some(stat("get_hits") + stat("get_misses")));
    if delta.get("xdp_hot_slots").is_some() {
        put("xdp_hit_keys", Some(in_xdp));
        put("xdp_share", sent.filter(|&s| s > 0.0).map(|s| in_xdp / s));
        put("xdp_hot_slots", Some(stat("xdp_hot_slots")));
    }
    if delta.get("event_loop_max_us").is_some() {
        put("event_loop_max_us", Some(stat("event_loop_max_us")));
        put("flush_loop_max_us", Some(stat("flush_loop_max_us")));
    }
    f
}

/// One line for the console.
pub(super) fn summary(f: &Figures) -> String {
    let g = |k: &str| f.get(k).copied().unwrap_or(f64::NAN);
    let mut s = format!(
        "{:.0} ops/s, p99 {:.1} µs, {:.0} UDP lost, server CPU {:.2} s, machine busy {:.2} s, \
         {:.0} ops per machine CPU-s",
        g("ops_per_sec"),
        g("p99_us"),
        g("udp_lost"),
        g("server_cpu_s"),
        g("machine_cpu_s"),
        g("ops_per_machine_cpu_s")
    );
    if let Some(share) = f.get("xdp_share") {
        let _ = write!(
            s,
            ", {:.1}% of gets answered in XDP, {:.0} hot slots",
            share * 100.0,
            g("xdp_hot_slots")
        );
    }
    s
}

/// What the section says about the run besides its figures.
#[derive(Debug)]
pub(super) struct Facts<'a> {
    pub(super) date: &'a str,
    pub(super) commit: &'a str,
    pub(super) pinning: &'a str,
    pub(super) duration_s: f64,
    pub(super) repeat: usize,
}

/// A server's figure in every run, by repeat: `(repeat, value)`.
fn series(runs: &Value, server: &str, key: &str) -> Vec<(u64, f64)> {
    runs.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["server"] == server)
        .filter_map(|r| Some((r["repeat"].as_u64()?, r["figures"][key].as_f64()?)))
        .collect()
}

/// The server's figure over memcached's in the same repeat, each repeat.
fn ratios(runs: &Value, server: &str, key: &str) -> Vec<f64> {
    let base = series(runs, "memcached", key);
    series(runs, server, key)
        .into_iter()
        .filter_map(|(rep, v)| {
            let b = base.iter().find(|(r, _)| *r == rep)?.1;
            (b != 0.0).then_some(v / b)
        })
        .collect()
}

fn list(xs: &[f64], fmt: impl Fn(f64) -> String) -> String {
    xs.iter().map(|&x| fmt(x)).collect::<Vec<_>>().join(", ")
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**not met**"
    }
}

/// The section (without its `## XDP fast path` heading, which the page adds).
pub(super) fn markdown(facts: &Facts<'_>, runs: &Value, costs: &Costs) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Measured by `cargo xtask bench --scenario xdp` (as root; it brings the test bed of \
         `cargo xtask testbed up` up and takes it down after) on {} (UTC) at commit `{}`; the \
         cost per hit by `{COST_COMMAND}`, {COST_RUNS} times.\n\n\
         - **Load**: {ABOUT}. Client in netns `kc-cli`, server on 10.77.0.1 (TCP and UDP on one \
         port) in `kc-srv`, over the veth pair; kcache+xdp is kcache with `--xdp kc-srv0` \
         (default HOT table sizes), the others answer every get in user space.\n\
         - **Each run**: the server started fresh; every key set over TCP, then {PRIME_SECS} s \
         of the load unmeasured (kcache's promotion into the XDP tables settles), then {} s \
         measured with another seed; the server's `stats` read before and after the measured \
         client process, which measures its whole life (no warm-up of its own).\n\
         - **Pinning**: {}.\n\
         - **Repeats**: {} per server, the order rotated each repeat; medians; each ratio is the \
         median of the per-repeat ratios to that repeat's memcached run. A run during which \
         other work took over {} CPU s per second is run again (up to {} times; the quietest \
         kept): \"attempts\" in the table of every run.\n\
         - **CPU**: \"server CPU s\" is the server process's own time. XDP runs in the softirq \
         of the CPU that sent the packet (on a veth the client's), and this kernel (no \
         `CONFIG_IRQ_TIME_ACCOUNTING`) charges softirq time to whichever task it interrupted, \
         mostly the client, so the server's CPU alone flatters kcache+xdp: ops per machine \
         CPU-second (all CPUs' busy time from /proc/stat over the window) is the fair \
         comparison. \"softirq s\" is what /proc/stat's softirq column recorded: ticks that \
         landed in softirq, which also count in the interrupted task's time.\n\
         - **Loop turns** (kcache): `event_loop_max_us`, the longest event-loop turn (wake-up to \
         the next wait) of any shard over the measured window (`stats reset` just before it); \
         then `stats reset`, a `flush_all` of the tables the load filled, and the longest turn \
         over it.\n",
        facts.date,
        facts.commit,
        facts.duration_s,
        facts.pinning,
        facts.repeat,
        super::NOISY_OTHER_PER_S,
        super::ATTEMPTS
    );
    let servers: Vec<&str> = {
        let mut s: Vec<&str> = runs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["server"].as_str())
            .collect();
        s.sort_by_key(|n| super::SERVERS.iter().position(|x| x == n));
        s.dedup();
        s
    };
    let med = |server: &str, key: &str| middle(series(runs, server, key).into_iter().map(|x| x.1));
    let cell = |v: Option<f64>, d: usize| v.map_or_else(|| "-".into(), |v| format!("{v:.d$}"));
    let times = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("**{v:.2}×**"));
    md.push_str(
        "| server | runs | ops/s | × memcached | p50 µs | p99 µs | p99.9 µs | UDP lost | \
         server CPU s | machine busy CPU s | softirq s | ops per server CPU-s | ops per machine \
         CPU-s | × memcached per machine CPU-s | gets answered in XDP | XDP hot slots | longest loop turn µs | over a flush_all µs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in &servers {
        let n = series(runs, s, "ops_per_sec").len();
        let ratio = |k: &str| {
            (*s != "memcached")
                .then(|| middle(ratios(runs, s, k)))
                .flatten()
        };
        let share = med(s, "xdp_share").map(|v| format!("{:.1}%", v * 100.0));
        let _ = writeln!(
            md,
            "| {s} | {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} \
             | {} |",
            cell(med(s, "ops_per_sec"), 0),
            times(ratio("ops_per_sec")),
            cell(med(s, "p50_us"), 1),
            cell(med(s, "p99_us"), 1),
            cell(med(s, "p999_us"), 1),
            cell(med(s, "udp_lost"), 0),
            cell(med(s, "server_cpu_s"), 2),
            cell(med(s, "machine_cpu_s"), 2),
            cell(med(s, "softirq_s"), 2),
            cell(med(s, "ops_per_server_cpu_s"), 0),
            cell(med(s, "ops_per_machine_cpu_s"), 0),
            times(ratio("ops_per_machine_cpu_s")),
            share.unwrap_or_else(|| "-".into()),
            cell(med(s, "xdp_hot_slots"), 0),
            cell(med(s, "event_loop_max_us"), 0),
            cell(med(s, "flush_loop_max_us"), 0),
        );
    }
    md.push_str("\n### The issue's targets\n\n");
    let shares: Vec<f64> = series(runs, "kcache+xdp", "xdp_share")
        .iter()
        .map(|x| x.1)
        .collect();
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    match middle(shares.iter().copied()) {
        Some(m) => {
            let _ = writeln!(
                md,
                "- At least {:.0}% of UDP gets answered in XDP (default map size, Zipf 0.99 over \
                 1M keys): median {} (runs: {}): {}",
                TARGET_SHARE * 100.0,
                pct(m),
                list(&shares, pct),
                verdict(m >= TARGET_SHARE)
            );
        }
        None => md.push_str("- Share of gets answered in XDP: not measured\n"),
    }
    let r = ratios(runs, "kcache+xdp", "ops_per_sec");
    let x = |v: f64| format!("{v:.2}×");
    match middle(r.iter().copied()) {
        Some(m) => {
            let _ = writeln!(
                md,
                "- At least {TARGET_RATIO:.0}× memcached's throughput: median {} (runs: {}): {}",
                x(m),
                list(&r, x),
                verdict(m >= TARGET_RATIO)
            );
        }
        None => md.push_str("- Throughput against memcached: not measured\n"),
    }
    let ns = |v: f64| format!("{v:.1} ns");
    let hits: Vec<f64> = costs.runs.iter().map(|c| c.hit_ns).collect();
    let allow_hit = costs.median(|c| c.allow_hit_ns);
    match costs.median(|c| Some(c.hit_ns)) {
        Some(m) => {
            let _ = writeln!(
                md,
                "- At most {TARGET_HIT_NS:.0} ns per hit: median {} without a source allowlist \
                 (runs: {}), {} with one (a server's default): {}",
                ns(m),
                list(&hits, ns),
                allow_hit.map_or_else(|| "not measured".into(), ns),
                verdict(m <= TARGET_HIT_NS && allow_hit.is_none_or(|a| a <= TARGET_HIT_NS))
            );
        }
        None => md.push_str("- Cost per hit: not measured\n"),
    }
    let _ = writeln!(
        md,
        "\n### Cost per packet of the XDP program\n\n`{COST_COMMAND}`: {}.\n\n\
         | run | hit ns | miss ns | hit ns, allowlist on | miss ns, allowlist on |\n\
         |---|---:|---:|---:|---:|",
        costs.how
    );
    let row = |label: String, c: [Option<f64>; 4]| {
        format!(
            "| {label} | {} | {} | {} | {} |\n",
            cell(c[0], 1),
            cell(c[1], 1),
            cell(c[2], 1),
            cell(c[3], 1)
        )
    };
    let fields = |c: &Cost| {
        [
            Some(c.hit_ns),
            Some(c.miss_ns),
            c.allow_hit_ns,
            c.allow_miss_ns,
        ]
    };
    for (i, c) in costs.runs.iter().enumerate() {
        md.push_str(&row((i + 1).to_string(), fields(c)));
    }
    md.push_str(&row(
        "**median**".into(),
        [
            costs.median(|c| Some(c.hit_ns)),
            costs.median(|c| Some(c.miss_ns)),
            allow_hit,
            costs.median(|c| c.allow_miss_ns),
        ],
    ));
    md.push_str(&every_run(runs));
    md
}

/// The table of every measured run.
fn every_run(runs: &Value) -> String {
    let mut md = String::from(
        "\n### Every run\n\n\"server keys\" counts the keys the server saw asked for \
         (`get_hits` + `get_misses`, which include the keys answered in XDP) against the gets the \
         client sent (answered + lost).\n\n\
         | repeat | server | attempts | machine busy before % | ops/s | p99 µs | UDP lost | server CPU s | \
         client CPU s | other CPU s | machine busy CPU s | softirq s | gets sent | server keys | \
         in XDP | hot slots |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs.as_array().into_iter().flatten() {
        let f = &r["figures"];
        let g = |k: &str, d: usize| {
            f[k].as_f64()
                .map_or_else(|| "-".into(), |v| format!("{v:.d$}"))
        };
        let share = f["xdp_share"]
            .as_f64()
            .map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {share} | {} |",
            r["repeat"].as_u64().map_or(0, |x| x + 1),
            r["server"].as_str().unwrap_or("?"),
            r["attempts"].as_u64().unwrap_or(1),
            r["idle"]["busy_pct"].as_f64().unwrap_or(f64::NAN),
            g("ops_per_sec", 0),
            g("p99_us", 1),
            g("udp_lost", 0),
            g("server_cpu_s", 2),
            g("client_cpu_s", 2),
            g("other_cpu_s", 2),
            g("machine_cpu_s", 2),
            g("softirq_s", 2),
            g("gets_sent", 0),
            g("server_keys", 0),
            g("xdp_hot_slots", 0),
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(server: &str, repeat: u64, ops: f64, share: Option<f64>) -> Value {
        let mut f = json!({"ops_per_sec": ops, "ops_per_machine_cpu_s": ops / 2.0});
        if let Some(s) = share {
            f["xdp_share"] = s.into();
        }
        json!({"server": server, "repeat": repeat, "idle": {"busy_pct": 1.0}, "figures": f})
    }

    #[test]
    fn figures_from_a_run() {
        let report = json!({
            "ops_per_sec": 100.0, "counts": {"ops": 1000.0, "udp_lost": 2},
            "counts_all": {"get_keys": 998, "udp_lost": 2},
            "cpu": {"server_s": 4.0, "machine_busy_s": 10.0},
        });
        // 800 keys answered in XDP, 200 by the engine: get_hits holds both.
        let delta = json!({"xdp_hit_keys": 800, "get_hits": 1000, "xdp_hot_slots": 5});
        let f = figures(&report, &delta, 0.5);
        assert_eq!(f.get("ops_per_machine_cpu_s"), Some(&100.0));
        assert_eq!(f.get("ops_per_server_cpu_s"), Some(&250.0));
        // Sent = answered + lost; the server's keys are its get counters (XDP's included).
        assert_eq!(f.get("gets_sent"), Some(&1000.0));
        assert_eq!(f.get("server_keys"), Some(&1000.0));
        assert_eq!(f.get("xdp_share"), Some(&0.8));
        // Without XDP counters there is no share.
        let f = figures(&report, &json!({"get_hits": 1000}), 0.0);
        assert_eq!(f.get("xdp_share"), None);
    }

    #[test]
    fn section_with_ratios_and_verdicts() {
        let runs = json!([
            run("memcached", 0, 100.0, None),
            run("kcache+xdp", 0, 300.0, Some(0.7)),
            run("memcached", 1, 200.0, None),
            run("kcache+xdp", 1, 1000.0, Some(0.9)),
        ]);
        let costs = Costs {
            runs: vec![Cost {
                hit_ns: 150.0,
                miss_ns: 80.0,
                allow_hit_ns: Some(170.0),
                allow_miss_ns: None,
            }],
            how: "stats".into(),
        };
        let facts = Facts {
            date: "D",
            commit: "C",
            pinning: "P",
            duration_s: 10.0,
            repeat: 2,
        };
        let md = markdown(&facts, &runs, &costs);
        for want in [
            // Per-repeat ratios 3× and 5×, median 4×; shares 70% and 90%, median 80%.
            "| kcache+xdp | 2 | 650 | **4.00×** |",
            "median 80.0% (runs: 70.0%, 90.0%): **met**",
            "median 4.00× (runs: 3.00×, 5.00×): **met**",
            "median 150.0 ns without a source allowlist (runs: 150.0 ns), 170.0 ns with one",
            "| **median** | 150.0 | 80.0 | 170.0 | - |",
            "| 2 | kcache+xdp | 1 | 1.0 | 1000 |",
        ] {
            assert!(md.contains(want), "{want:?} missing from\n{md}");
        }
        assert!(md.contains("): **not met**"), "{md}");
        // memcached first, and no ratio to itself.
        assert!(md.contains("| memcached | 2 | 150 | - |"), "{md}");
    }
}
