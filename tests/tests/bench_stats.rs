//! `kcache bench` against a live server: the gets, keys and hits it counts over a whole run
//! (warm-up included) must be exactly what the server's own `stats` counted, over TCP and UDP, so
//! its hit rate is the server's. The key space starts empty and sets fill it during the run, so the
//! hit rate is neither 0 nor 1 and a miss counted as a hit (or the reverse) shows. The run's
//! `--plot` must come out as an SVG with its latency curve.

use std::{collections::HashMap, process::Command, time::Duration};

use anyhow::{ensure, Context, Result};
use kcache_tests::{kcache, tools, Config, Server, Target};

/// The server's `stats` as name → value.
fn stats(server: &Server) -> Result<HashMap<String, u64>> {
    let reply = server.connect()?.call(b"stats\r\n")?;
    let text = String::from_utf8_lossy(&reply);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("STAT ")?.split(' ');
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect())
}

fn check(udp: bool, multiget: &str) -> Result<()> {
    let target = Target::from_env();
    let config = if udp {
        Config::default().udp()
    } else {
        Config::default()
    };
    let server = Server::start(target, &config)?;
    let json = std::env::temp_dir().join(format!(
        "kcache-bench-stats-{}-{udp}-{multiget}.json",
        std::process::id()
    ));
    let svg = json.with_extension("svg");
    let before = stats(&server)?;
    let mut cmd = Command::new(kcache::bin()?);
    cmd.args(["bench", "-q", "--no-populate", "--keys", "2000"])
        .args(["--get-ratio", "0.7", "--delete-ratio", "0.05"])
        .args(["--multiget", multiget, "--conns", "4", "--depth", "2"])
        .args(["--duration", "1", "--warmup", "0.5"])
        .args(["--server", &server.addr().to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg);
    if udp {
        cmd.args([
            "--udp",
            "--udp-port",
            &server.udp_addr()?.port().to_string(),
        ]);
    }
    let out = tools::run_bounded(&mut cmd, Duration::from_secs(60))?;
    ensure!(
        out.status.success(),
        "kcache bench failed: {}\n{}",
        out.status,
        out.stderr
    );
    let after = stats(&server)?;
    let text = std::fs::read_to_string(&json);
    let plot = std::fs::read_to_string(&svg);
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&svg);
    let plot = plot.context("kcache bench --plot wrote no file")?;
    ensure!(
        plot.starts_with("<svg") && plot.contains("<polyline") && plot.contains("latency"),
        "not a latency plot: {}",
        &plot[..plot.len().min(300)]
    );
    let report: serde_json::Value = serde_json::from_str(&text?)?;
    let client = |k: &str| {
        report["counts_all"][k]
            .as_u64()
            .with_context(|| format!("counts_all.{k} missing in {report}"))
    };
    let delta = |k: &str| after[k] - before[k];
    let what = format!("{target} udp={udp} multiget={multiget}");
    // Every reply must have come back (a lost UDP datagram would make the counts differ for a
    // reason the test is not about).
    ensure!(
        client("udp_lost")? == 0 && client("unanswered")? == 0 && client("errors")? == 0,
        "{what}: lost, unanswered or error replies: {report}"
    );
    let (keys, hits) = (client("get_keys")?, client("hits")?);
    ensure!(
        hits > 0 && hits < keys,
        "{what}: the run should both hit and miss (hits {hits} of {keys})"
    );
    ensure!(
        (delta("get_hits"), delta("get_hits") + delta("get_misses")) == (hits, keys),
        "{what}: server counted {} hits of {} keys, the client {hits} of {keys}",
        delta("get_hits"),
        delta("get_hits") + delta("get_misses")
    );
    ensure!(
        delta("cmd_get") == keys,
        "{what}: cmd_get {}",
        delta("cmd_get")
    );
    // The report's hit rate is the measured window's, so it is only checked for range here.
    let rate = report["hit_rate"].as_f64().context("hit_rate")?;
    ensure!((0.0..=1.0).contains(&rate), "{what}: hit rate {rate}");
    Ok(())
}

#[test]
fn tcp_counts_match_the_servers_stats() -> Result<()> {
    check(false, "1")
}

#[test]
fn tcp_multiget_counts_match_the_servers_stats() -> Result<()> {
    check(false, "5")
}

#[test]
fn udp_counts_match_the_servers_stats() -> Result<()> {
    check(true, "1")
}
