//! The hot-key herd beside the load scenarios: `kcache herd` against each server, in lease and
//! plain mode, 50 clients x 20 rounds and a 5 ms backend, repeated; medians in a markdown table.

use std::{fmt::Write as _, fs, path::Path, path::PathBuf, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{server::Server, KCACHE, OUT_DIR};
use crate::step;

/// The figures of one herd run: total fills, median fills per round, time to value p50 and p99
/// in µs, requests, server CPU seconds.
type Figures = [f64; 6];
/// /proc counts CPU time in USER_HZ ticks, 100 a second on Linux.
const USER_HZ: f64 = 100.0;

/// Runs the herd `repeat` times per server and mode; returns the markdown table and the runs.
pub(super) fn run(servers: &[Server], repeat: usize, client_cpu: usize) -> Result<(String, Value)> {
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for mode in ["lease", "plain"] {
        for s in servers {
            let mut runs: Vec<Figures> = Vec::new();
            for r in 0..repeat {
                let json = PathBuf::from(OUT_DIR).join(format!("herd-{mode}-{}-{r}.json", s.name));
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &client_cpu.to_string()]);
                let herd = herd_command(KCACHE, s.tcp, mode, &json);
                cmd.arg(herd.get_program()).args(herd.get_args());
                let cpu0 = cpu_s(s.child.id())?;
                step::run(
                    &format!("herd {mode} on {} (run {} of {repeat})", s.name, r + 1),
                    &mut cmd,
                )?;
                let cpu = cpu_s(s.child.id())? - cpu0;
                let text = fs::read_to_string(&json)
                    .with_context(|| format!("reading {}", json.display()))?;
                let report: Value = serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", json.display()))?;
                let f = |ptr: &str| {
                    report
                        .pointer(ptr)
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN)
                };
                runs.push([
                    f("/fills_total"),
                    f("/fills/p50"),
                    f("/time_to_value_us/p50"),
                    f("/time_to_value_us/p99"),
                    f("/requests_total"),
                    cpu,
                ]);
                raw.push(
                    serde_json::json!({"server": s.name, "mode": mode, "repeat": r,
                    "server_cpu_s": cpu, "report": report}),
                );
            }
            rows.push((mode, s.name, median(&runs), runs.len()));
        }
    }
    Ok((table(&rows), Value::Array(raw)))
}

/// Each figure's median over the runs.
fn median(runs: &[Figures]) -> Figures {
    std::array::from_fn(|i| super::table::middle(runs.iter().map(|r| r[i])).unwrap_or(f64::NAN))
}

fn table(rows: &[(&str, &str, Figures, usize)]) -> String {
    let mut md = String::from(
        "50 clients miss on one key at once, 20 rounds per run, a 5 ms backend; `lease` uses \
         memcached 1.6's meta leases (`mg <key> v c t N30`: one `W` winner fills, `Z` waiters \
         ask again every 1 ms), `plain` does get / miss / fill / set. Medians of the runs.\n\n\
         | mode | server | runs | backend fills (20 rounds) | fills per round | time to value p50 ms \
         | p99 ms | requests | server CPU s |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (mode, server, f, n) in rows {
        let _ = writeln!(
            md,
            "| {mode} | {server} | {n} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.3} |",
            f[0],
            f[1],
            f[2] / 1000.0,
            f[3] / 1000.0,
            f[4],
            f[5]
        );
    }
    for mode in ["lease", "plain"] {
        let of = |server: &str| {
            rows.iter()
                .find(|r| r.0 == mode && r.1 == server)
                .map(|r| r.2)
        };
        if let (Some(k), Some(m)) = (of("kcache"), of("memcached")) {
            let _ = writeln!(
                md,
                "| {mode} | **kcache / memcached** | | **{:.2}×** | | **{:.2}×** | **{:.2}×** | \
                 **{:.2}×** | **{:.2}×** |",
                k[0] / m[0],
                k[2] / m[2],
                k[3] / m[3],
                k[4] / m[4],
                k[5] / m[5]
            );
        }
    }
    md
}

/// The process's user + system CPU seconds so far, from /proc.
fn cpu_s(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are
    // fields 14 and 15, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((ticks(14) + ticks(15)) / USER_HZ)
}

/// The herd's size, as `kcache herd` flags (its defaults, spelled out so the results say them).
const HERD_FLAGS: [&str; 6] = ["--clients", "50", "--rounds", "20", "--backend-ms", "5"];

/// `kcache herd` against the server on 127.0.0.1:`server_tcp_port` in `mode` (`lease` or
/// `plain`), writing its JSON report to `json`. The caller adds pinning (e.g. by running it under
/// `taskset`) and runs it.
pub(super) fn herd_command(
    kcache_bin: &str,
    server_tcp_port: u16,
    mode: &str,
    json: &Path,
) -> Command {
    let mut cmd = Command::new(kcache_bin);
    cmd.arg("herd")
        .args(["--server", &format!("127.0.0.1:{server_tcp_port}")])
        .args(["--mode", mode])
        .args(HERD_FLAGS)
        .arg("--json")
        .arg(json);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let cmd = herd_command("target/release/kcache", 21311, "lease", Path::new("h.json"));
        assert_eq!(cmd.get_program(), "target/release/kcache");
        let args: Vec<_> = cmd.get_args().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            args.join(" "),
            "herd --server 127.0.0.1:21311 --mode lease --clients 50 --rounds 20 \
             --backend-ms 5 --json h.json"
        );
    }
}
