//! `kcache plot`: SVG plots from `kcache bench` reports and rate sweeps, several servers (or runs)
//! on one chart. `kcache bench --plot` draws its own run the same way, and `cargo xtask bench`
//! draws the side-by-side plots of `docs/BENCHMARKS.md` with this command.

use std::{fs, path::PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::Value;

pub(crate) use self::draw::percentile_curve;
use self::draw::SweepPoint;

mod draw;

pub(crate) const PLOT_AFTER_HELP: &str = "\
Each series is NAME=FILE. For `curve`, FILE is a `kcache bench --json` report (its `curve`: latency
by percentile) or a JSON array of [percentile, µs] pairs. For `sweep`, FILE is a JSON array of
points with `achieved` (ops/s), `p50_us` and `p99_us`, or an object holding one as `points`.
Series are coloured in the order given.";

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// Latency against percentile, on the nines scale.
    Curve,
    /// p50 and p99 latency against achieved throughput, from an open-loop rate sweep.
    Sweep,
}

/// `kcache plot` flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct PlotArgs {
    /// The kind of plot
    #[arg(value_enum)]
    kind: Kind,
    /// SVG file to write
    #[arg(short = 'o', long, value_name = "FILE")]
    out: PathBuf,
    /// Title over the chart
    #[arg(long, default_value = "")]
    title: String,
    /// Series as NAME=FILE, one per line on the chart
    #[arg(required = true, value_name = "NAME=FILE")]
    series: Vec<String>,
}

/// Runs `kcache plot`.
pub(crate) fn run(a: &PlotArgs) -> Result<()> {
    let mut named = Vec::new();
    for s in &a.series {
        let Some((name, file)) = s.split_once('=') else {
            bail!("series {s:?} is not NAME=FILE");
        };
        let text = fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {file}"))?;
        named.push((name, file, v));
    }
    match a.kind {
        Kind::Curve => {
            let lines = named
                .iter()
                .map(|(name, file, v)| Ok((*name, curve_of(v).with_context(|| file.to_string())?)))
                .collect::<Result<Vec<_>>>()?;
            let series: Vec<(&str, &[(f64, f64)])> =
                lines.iter().map(|(n, c)| (*n, c.as_slice())).collect();
            percentile_curve(&a.title, &series, &a.out)
        }
        Kind::Sweep => {
            let lines = named
                .iter()
                .map(|(name, file, v)| {
                    let points = v.get("points").unwrap_or(v).clone();
                    let points: Vec<SweepPoint> = serde_json::from_value(points)
                        .with_context(|| format!("{file}: not a list of sweep points"))?;
                    Ok((*name, points))
                })
                .collect::<Result<Vec<_>>>()?;
            let series: Vec<(&str, &[SweepPoint])> =
                lines.iter().map(|(n, p)| (*n, p.as_slice())).collect();
            draw::sweep(&a.title, &series, &a.out)
        }
    }
}

/// The `[percentile, µs]` pairs of a report's `curve`, or of a bare array of them.
fn curve_of(v: &Value) -> Result<Vec<(f64, f64)>> {
    let list = v.get("curve").unwrap_or(v);
    let Some(items) = list.as_array() else {
        bail!("no curve: neither a report with `curve` nor an array of pairs");
    };
    items
        .iter()
        .map(|p| {
            match (
                p.get(0).and_then(Value::as_f64),
                p.get(1).and_then(Value::as_f64),
            ) {
                (Some(pct), Some(us)) => Ok((pct, us)),
                _ => bail!("{p} is not a [percentile, µs] pair"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn curves_come_from_reports_or_bare_arrays() {
        let want = vec![(50.0, 30.5), (99.0, 120.0)];
        let pairs = json!([[50.0, 30.5], [99.0, 120.0]]);
        assert_eq!(curve_of(&json!({"curve": pairs})).ok(), Some(want.clone()));
        assert_eq!(curve_of(&pairs).ok(), Some(want));
        assert!(curve_of(&json!({"ops": 1})).is_err());
        assert!(curve_of(&json!([[50.0]])).is_err());
    }

    #[test]
    fn the_command_writes_one_line_per_series() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("kcache-plot-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        fs::write(
            &a,
            r#"{"curve": [[0, 10], [50, 20], [99, 80], [99.9, 200]]}"#,
        )?;
        fs::write(&b, "[[0, 12], [50, 25], [99, 90]]")?;
        let out = dir.join("c.svg");
        let args = PlotArgs {
            kind: Kind::Curve,
            out: out.clone(),
            title: "t".into(),
            series: vec![format!("x={}", a.display()), format!("y={}", b.display())],
        };
        run(&args)?;
        let svg = fs::read_to_string(&out)?;
        let _ = fs::remove_dir_all(&dir);
        for text in ["<svg", "x", "y"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Two coloured series (axes and ticks are black).
        let coloured = svg
            .matches("<polyline")
            .zip(svg.split("<polyline").skip(1))
            .filter(|(_, rest)| !rest.split('>').next().unwrap_or("").contains("#000000"))
            .count();
        assert_eq!(coloured, 2, "{svg}");
        Ok(())
    }
}
