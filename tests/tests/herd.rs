//! `kcache herd` against a live server: a herd of clients misses one freshly deleted key at once.
//! With memcached 1.6's meta leases exactly one of them fills it each round; without, several do
//! (Meta's "Scaling Memcache at Facebook", §3.2.1). Runs against memcached too, whose leases
//! kcache's must match.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{ensure, Context, Result};
use kcache_tests::{kcache, tools, Config, Server, Target};

const CLIENTS: u32 = 20;
const ROUNDS: usize = 5;
/// Long enough that, without leases, clients released together all miss before the first fill.
const BACKEND_MS: &str = "20";

#[test]
fn leases_fill_once_per_round() -> Result<()> {
    let fills = herd("lease")?;
    ensure!(
        fills == vec![1; ROUNDS],
        "lease mode: want exactly one backend fill per round, got {fills:?}"
    );
    Ok(())
}

#[test]
fn without_leases_the_herd_fills_many_times() -> Result<()> {
    let fills = herd("plain")?;
    ensure!(fills.len() == ROUNDS, "plain mode: {fills:?}");
    ensure!(
        fills.iter().all(|&f| (1..=CLIENTS).contains(&f)),
        "plain mode: each round fills 1 to {CLIENTS} times, got {fills:?}"
    );
    let total: u32 = fills.iter().sum();
    ensure!(
        total > ROUNDS as u32,
        "plain mode: want more than one fill per round in all, got {fills:?}"
    );
    Ok(())
}

/// Runs `kcache herd --mode <mode>` against a server of its own; returns the fills per round.
fn herd(mode: &str) -> Result<Vec<u32>> {
    let server = Server::start(Target::from_env(), &Config::default())?;
    let json = Scratch(
        std::env::temp_dir().join(format!("kcache-herd-{}-{mode}.json", std::process::id())),
    );
    let out = tools::run_bounded(
        Command::new(kcache::bin()?)
            .arg("herd")
            .args(["--server", &server.addr().to_string(), "--mode", mode])
            .args(["--clients", &CLIENTS.to_string()])
            .args(["--rounds", &ROUNDS.to_string()])
            .args(["--backend-ms", BACKEND_MS])
            .arg("--json")
            .arg(&json.0),
        Duration::from_secs(30),
    )?;
    let context = || {
        format!(
            "{}: kcache herd --mode {mode} exited {}\n--- stdout\n{}--- stderr\n{}--- server log\n{}",
            server.target(),
            out.status,
            out.stdout,
            out.stderr,
            server.log()
        )
    };
    ensure!(out.status.success(), "{}", context());
    let text = std::fs::read_to_string(&json.0)
        .with_context(|| format!("reading {}\n{}", json.0.display(), context()))?;
    numbers(&text, "fills_per_round").with_context(|| format!("{text}\n{}", context()))
}

/// The array of numbers under `"<field>":` in a JSON document (this crate has no JSON parser).
fn numbers(json: &str, field: &str) -> Option<Vec<u32>> {
    let start = json.find(&format!("\"{field}\":"))?;
    let rest = json[start..].split_once('[')?.1;
    let list = rest.split_once(']')?.0;
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().ok())
        .collect()
}

/// A file removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // It may never have been written.
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn numbers_are_read_from_the_report() {
    let cases: &[(&str, Option<Vec<u32>>)] = &[
        // Pretty-printed, as `--json` writes it.
        (
            "{\n  \"fills_per_round\": [\n    1,\n    12\n  ],\n  \"x\": [9]\n}",
            Some(vec![1, 12]),
        ),
        // Compact and empty.
        ("{\"fills_per_round\":[]}", Some(vec![])),
        // Missing.
        ("{\"fills\": [1]}", None),
        // Not numbers.
        ("{\"fills_per_round\": [\"a\"]}", None),
    ];
    for (json, want) in cases {
        assert_eq!(numbers(json, "fills_per_round"), *want, "{json}");
    }
}
