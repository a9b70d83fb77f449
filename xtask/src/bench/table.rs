//! From the client's JSON reports to medians and a markdown table.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;
use serde_json::Value;

/// The figures taken from each run: name, and where `kcache bench --json` puts it.
const FIGURES: [(&str, &str); 11] = [
    ("ops_per_sec", "/ops_per_sec"),
    ("p50_us", "/latency_us/p50"),
    ("p99_us", "/latency_us/p99"),
    ("p999_us", "/latency_us/p999"),
    ("server_cpu_s", "/cpu/server_s"),
    ("ops_per_server_cpu_s", "/ops_per_server_cpu_s"),
    ("client_cpu_s", "/cpu/client_s"),
    ("other_cpu_s", "/cpu/other_s"),
    ("hit_rate", "/hit_rate"),
    ("errors", "/counts/errors"),
    ("udp_lost", "/counts/udp_lost"),
];

/// A run's figures by name (absent when the report has none, e.g. hit rate without gets).
pub(crate) type Figures = BTreeMap<&'static str, f64>;

pub(crate) fn figures(report: &Value) -> Figures {
    FIGURES
        .iter()
        .filter_map(|&(name, ptr)| Some((name, report.pointer(ptr)?.as_f64()?)))
        .collect()
}

/// The medians of one scenario on one server.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) server: String,
    pub(crate) runs: usize,
    pub(crate) median: Figures,
}

/// Each figure's median over `runs`; a figure no run has stays absent.
pub(crate) fn median(runs: &[&Figures]) -> Figures {
    FIGURES
        .iter()
        .filter_map(|&(name, _)| {
            let xs = runs.iter().filter_map(|f| f.get(name).copied());
            Some((name, middle(xs)?))
        })
        .collect()
}

/// The median of `xs`: the middle value, or the mean of the middle two; None when empty.
pub(crate) fn middle(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut xs: Vec<f64> = xs.into_iter().collect();
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    match xs.len() {
        0 => None,
        n if n % 2 == 1 => Some(xs[m]),
        _ => Some((xs[m - 1] + xs[m]) / 2.0),
    }
}

/// Table columns: heading, figure, decimals.
const COLUMNS: [(&str, &str, usize); 9] = [
    ("ops/s", "ops_per_sec", 0),
    ("p50 µs", "p50_us", 1),
    ("p99 µs", "p99_us", 1),
    ("p99.9 µs", "p999_us", 1),
    ("server CPU s", "server_cpu_s", 2),
    ("ops per server CPU-s", "ops_per_server_cpu_s", 0),
    ("client CPU s", "client_cpu_s", 2),
    ("other CPU s", "other_cpu_s", 2),
    ("hit rate", "hit_rate", 4),
];

/// A markdown table of `rows`, with a kcache/memcached ratio row under each scenario.
pub(crate) fn markdown(rows: &[Row], duration_s: f64) -> String {
    let mut t = String::from("| scenario | server | runs |");
    for (head, ..) in COLUMNS {
        let _ = write!(t, " {head} |");
    }
    t.push_str(" errors + UDP lost |\n|---|---|---|");
    t.push_str(&"---:|".repeat(COLUMNS.len() + 1));
    t.push('\n');
    let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let of = |server: &str| {
            rows.iter()
                .find(|r| r.scenario == scenario && r.server == server)
        };
        for row in rows.iter().filter(|r| r.scenario == scenario) {
            let _ = write!(t, "| {scenario} | {} | {} |", row.server, row.runs);
            for (_, name, decimals) in COLUMNS {
                match row.median.get(name) {
                    Some(v) => {
                        let _ = write!(t, " {v:.decimals$} |");
                    }
                    None => t.push_str(" - |"),
                }
            }
            let bad = row.median.get("errors").unwrap_or(&0.0)
                + row.median.get("udp_lost").unwrap_or(&0.0);
            // Per run, not per second: the medians of counts over a `duration_s` window.
            let _ = writeln!(t, " {bad:.0} in {duration_s} s |");
        }
        if let (Some(k), Some(m)) = (of("kcache"), of("memcached")) {
            let _ = write!(t, "| {scenario} | **kcache / memcached** | |");
            for (_, name, _) in COLUMNS {
                match (k.median.get(name), m.median.get(name)) {
                    (Some(a), Some(b)) if *b != 0.0 => {
                        let _ = write!(t, " **{:.2}×** |", a / b);
                    }
                    _ => t.push_str(" - |"),
                }
            }
            t.push_str(" |\n");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_table() {
        let runs: Vec<Figures> = [3.0, 1.0, 2.0]
            .iter()
            .map(|&x| Figures::from([("ops_per_sec", x * 100.0), ("p99_us", x)]))
            .collect();
        let m = median(&runs.iter().collect::<Vec<_>>());
        // Odd count: the middle value; absent figures stay absent.
        assert_eq!(m.get("ops_per_sec"), Some(&200.0));
        assert_eq!(m.get("server_cpu_s"), None);
        // Even count: the mean of the middle two.
        let m = median(&runs[..2].iter().collect::<Vec<_>>());
        assert_eq!(m.get("p99_us"), Some(&2.0));

        let row = |server: &str, ops: f64| Row {
            scenario: "tcp".into(),
            server: server.into(),
            runs: 3,
            median: Figures::from([("ops_per_sec", ops)]),
        };
        let t = markdown(&[row("memcached", 100.0), row("kcache", 150.0)], 10.0);
        assert!(t.contains("| tcp | memcached | 3 | 100 |"), "{t}");
        assert!(
            t.contains("| tcp | **kcache / memcached** | | **1.50×** |"),
            "{t}"
        );
        // Header, rule, two servers, one ratio row.
        assert_eq!(t.lines().count(), 5, "{t}");
    }

    #[test]
    fn figures_from_a_report() {
        let report = serde_json::json!({
            "ops_per_sec": 5.0, "latency_us": {"p50": 1.5}, "cpu": {"server_s": null}, "hit_rate": 1.0
        });
        let f = figures(&report);
        assert_eq!(f.get("ops_per_sec"), Some(&5.0));
        assert_eq!(f.get("p50_us"), Some(&1.5));
        // null and missing figures are absent.
        assert_eq!(f.get("server_cpu_s"), None);
        assert_eq!(f.get("errors"), None);
    }
}
