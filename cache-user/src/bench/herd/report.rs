//! What a herd run measured: the JSON report `--json` writes and the summary it prints.

use std::fmt;

use serde::Serialize;

use super::{Mode, Plan, Round};

/// Smallest, median, 99th percentile and largest of a sample (nearest rank).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Spread {
    min: u64,
    p50: u64,
    p99: u64,
    max: u64,
}

impl Spread {
    pub(super) fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        let rank = |p: usize| {
            let i = (values.len() * p).div_ceil(100).saturating_sub(1);
            values.get(i).copied().unwrap_or(0)
        };
        Self {
            min: rank(0),
            p50: rank(50),
            p99: rank(99),
            max: rank(100),
        }
    }
}

/// A run's results: the JSON document `--json` writes, and the human summary.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    server: String,
    mode: Mode,
    clients: usize,
    rounds: usize,
    backend_ms: u64,
    key: String,
    value_size: usize,
    /// Backend fills in each round: 1 with working leases, up to `clients` without.
    fills_per_round: Vec<u32>,
    fills: Spread,
    fills_total: u64,
    /// Lease fills refused by the server (the key changed under the lease).
    fills_refused: u64,
    /// Requests sent in each round (the delete not counted).
    requests_per_round: Vec<u32>,
    requests_total: u64,
    /// Each client's time from the round's release to having the value, over every round.
    time_to_value_us: Spread,
    /// Time from the release until every client of a round had the value.
    round_us: Spread,
    round_us_per_round: Vec<u64>,
}

impl Report {
    pub(super) fn new(plan: &Plan, rounds: &[Round]) -> Self {
        let sum = |f: fn(&Round) -> u32| rounds.iter().map(|r| u64::from(f(r))).sum();
        let each = |f: fn(&Round) -> u32| rounds.iter().map(f).collect::<Vec<_>>();
        Self {
            server: plan.addr.to_string(),
            mode: plan.mode,
            clients: plan.clients,
            rounds: plan.rounds,
            backend_ms: plan.backend.as_millis() as u64,
            key: plan.key.clone(),
            value_size: plan.value.len(),
            fills_per_round: each(|r| r.fills),
            fills: Spread::of(rounds.iter().map(|r| u64::from(r.fills)).collect()),
            fills_total: sum(|r| r.fills),
            fills_refused: sum(|r| r.refused),
            requests_per_round: each(|r| r.requests),
            requests_total: sum(|r| r.requests),
            time_to_value_us: Spread::of(
                rounds.iter().flat_map(|r| r.to_value_us.clone()).collect(),
            ),
            round_us: Spread::of(rounds.iter().map(|r| r.all_us).collect()),
            round_us_per_round: rounds.iter().map(|r| r.all_us).collect(),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        let mode = match self.mode {
            Mode::Lease => "lease",
            Mode::Plain => "plain",
        };
        writeln!(
            f,
            "kcache herd: {mode} mode, {} clients x {} rounds against {}, backend {} ms, key {} \
             ({} B values)",
            self.clients, self.rounds, self.server, self.backend_ms, self.key, self.value_size
        )?;
        let fl = &self.fills;
        writeln!(
            f,
            "  backend fills  {} in all; per round min {} median {} max {} ({} refused)",
            self.fills_total, fl.min, fl.p50, fl.max, self.fills_refused
        )?;
        let t = &self.time_to_value_us;
        writeln!(
            f,
            "  time to value  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (each client)",
            ms(t.p50),
            ms(t.p99),
            ms(t.max)
        )?;
        let r = &self.round_us;
        writeln!(
            f,
            "  whole round    median {:.2} ms  max {:.2} ms (until every client had it)",
            ms(r.p50),
            ms(r.max)
        )?;
        writeln!(
            f,
            "  requests       {} in all, {:.1} per client per round",
            self.requests_total,
            self.requests_total as f64 / (self.clients * self.rounds) as f64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        // Nearest rank: the median of 1..=10 is 5, its p99 10.
        let s = Spread::of((1..=10).rev().collect());
        assert_eq!((s.min, s.p50, s.p99, s.max), (1, 5, 10, 10));
        // One value is every percentile.
        let s = Spread::of(vec![7]);
        assert_eq!((s.min, s.p50, s.p99, s.max), (7, 7, 7, 7));
        // Nothing measured.
        let s = Spread::of(Vec::new());
        assert_eq!((s.min, s.max), (0, 0));
    }
}
