//! The bench's plots, as SVG files, one colour per server (in the order given): latency against
//! percentile on the nines scale, and p50 and p99 against achieved throughput from a rate sweep.
//!
//! Drawn with plotters' SVG backend and none of its font features: text goes into the file as
//! `<text>` elements for the viewer to set, so no system font library is needed at build or run
//! time (label boxes are plotters' estimates). Latency axes are logarithmic: a p50 of 30 µs and a
//! p99.9999 of 5 ms both stay readable.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::{coord::types::RangedCoordf64, prelude::*};

/// One rate of an open-loop sweep: what `cargo xtask bench` records per rate (other fields it
/// records are ignored here).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub(crate) struct SweepPoint {
    /// Replies per second measured.
    pub(crate) achieved: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

const SIZE: (u32, u32) = (900, 560);
/// Series colours by position (memcached blue and kcache orange when given in that order).
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];
/// The most nines the percentile axis shows: 99.9999, as far as `kcache bench` reports.
const MAX_NINES: f64 = 6.0;
const FONT: &str = "sans-serif";

/// Latency against percentile, `series` being `(server, [(percentile, µs)])`, e.g. a report's
/// `curve`. Percentiles are placed by their nines: 90 one step from 0, 99 two steps, 99.9 three;
/// points at 100 (the maximum) or beyond six nines are left out.
pub(crate) fn percentile_curve(
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    path: &Path,
) -> Result<()> {
    let lines: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|&(name, points)| {
            let on_scale = points
                .iter()
                .filter(|&&(p, us)| (0.0..100.0).contains(&p) && us > 0.0)
                .map(|&(p, us)| (nines(p), us))
                .filter(|&(n, _)| n <= MAX_NINES + 1e-9)
                .collect();
            (name, on_scale)
        })
        .collect();
    let all = || lines.iter().flat_map(|(_, l)| l);
    // Whole nines, at least to 90; the small allowance keeps 99.9999 (5.9999…) at six.
    let x_max = all()
        .map(|&(n, _)| (n - 1e-6).ceil())
        .fold(1.0, f64::max)
        .min(MAX_NINES);
    let x = RangedCoordf64::from(0.0..x_max);
    let (lo, hi) = latency_bounds(all().map(|&(_, us)| us));
    let y = (lo..hi).log_scale().with_key_points(one_two_five(lo, hi));
    draw(path, title, x, y, |chart| {
        chart
            .configure_mesh()
            .x_desc("percentile")
            // One label per whole nine; no light lines between them, which would fall on
            // fractions of a nine.
            .x_labels(x_max as usize + 1)
            .light_line_style(TRANSPARENT)
            .y_desc("latency µs")
            .x_label_formatter(&|&n| nines_label(n))
            .y_label_formatter(&|&us| trim(us))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for (i, (name, points)) in lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.filled())
                });
        }
        Ok(())
    })
}

/// p99 (thick) and p50 (thin, lighter) against the throughput achieved, `series` being
/// `(server, sweep points)`, the points in the order they were run.
pub(crate) fn sweep(title: &str, series: &[(&str, &[SweepPoint])], path: &Path) -> Result<()> {
    let all = || series.iter().flat_map(|(_, points)| points.iter());
    let x_max = all().map(|p| p.achieved).fold(0.0, f64::max).max(1.0) * 1.05;
    let (lo, hi) = latency_bounds(all().flat_map(|p| [p.p50_us, p.p99_us]));
    let y = (lo..hi).log_scale().with_key_points(one_two_five(lo, hi));
    draw(path, title, RangedCoordf64::from(0.0..x_max), y, |chart| {
        chart
            .configure_mesh()
            .x_desc("achieved ops/s (open loop; the offered rate rises point by point)")
            .y_desc("latency µs")
            .x_label_formatter(&|&ops| number(ops))
            .light_line_style(TRANSPARENT)
            .y_label_formatter(&|&us| trim(us))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let lines: [SweepLine; 2] = [
                ("p99", colour.stroke_width(2), 3, |p| p.p99_us),
                ("p50", colour.mix(0.55).stroke_width(1), 2, |p| p.p50_us),
            ];
            for (which, style, dot, latency) in lines {
                let xy = points.iter().map(|p| (p.achieved, latency(p).max(lo)));
                chart
                    .draw_series(LineSeries::new(xy, style).point_size(dot))?
                    .label(format!("{name} {which}"))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 18, y + 5)], style.filled())
                    });
            }
        }
        Ok(())
    })
}

/// One line of a sweep plot: its name, style, dot size, and the latency it draws.
type SweepLine = (&'static str, ShapeStyle, u32, fn(&SweepPoint) -> f64);

type Chart<'a, X, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>;

/// A white chart of `title` over `x` and `y` at `path`: `body` draws the mesh and the series,
/// then the legend goes at the upper left and the file is written.
fn draw<X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    path: &Path,
    title: &str,
    x: X,
    y: Y,
    body: impl FnOnce(&mut Chart<'_, X, Y>) -> Result<()>,
) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let drawn = (|| -> Result<()> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(x, y)?;
        body(&mut chart)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
        root.present()?;
        Ok(())
    })();
    drawn.with_context(|| format!("drawing {}", path.display()))
}

/// Where percentile `p` (0 ≤ p < 100) falls on the nines scale: 0 → 0, 90 → 1, 99 → 2, …
fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).log10()
}

/// The percentile `n` whole nines up: 0, 90, 99, 99.9, …
fn nines_label(n: f64) -> String {
    if (n - n.round()).abs() > 1e-6 {
        return trim(100.0 - 100.0 * 10f64.powf(-n));
    }
    match n.round() as usize {
        0 => "0".into(),
        1 => "90".into(),
        2 => "99".into(),
        n => format!("99.{}", "9".repeat(n - 2)),
    }
}

/// Log-axis bounds around `values` (positive), on the 1-2-5 steps: 34–2100 gives 20–5000.
fn latency_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values
        .filter(|&v| v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if max == 0.0 {
        return (1.0, 1000.0);
    }
    let steps = one_two_five(min / 10.0, max * 10.0);
    let lo = steps.iter().rev().find(|&&s| s <= min).copied();
    let hi = steps.iter().find(|&&s| s >= max).copied();
    let (lo, hi) = (lo.unwrap_or(min), hi.unwrap_or(max));
    if hi > lo {
        (lo, hi)
    } else {
        (lo / 2.0, hi * 2.0)
    }
}

/// The 1-2-5 steps (…, 10, 20, 50, 100, …) from `lo` to `hi`, both included when on a step.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * decade;
            if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

/// An axis label: 0.5, 20, 5000, 50k, 1.5M.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

/// Up to two decimals, none when they are zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Checks that `svg` nests its tags properly under one `<svg>` (text is escaped by plotters,
    /// so `<` only opens tags) and returns the point count of each coloured `<polyline>` (a
    /// series), in order.
    fn polylines(svg: &str) -> Vec<usize> {
        let (mut open, mut lines, mut roots) = (Vec::new(), Vec::new(), 0);
        let mut rest = svg;
        while let Some(at) = rest.find('<') {
            let end = rest[at..]
                .find('>')
                .unwrap_or_else(|| panic!("unclosed tag"))
                + at;
            let tag = &rest[at + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name.trim()), "mismatched </{name}>");
                continue;
            }
            let name = tag.split_whitespace().next().unwrap_or_default();
            assert!(!open.is_empty() || roots == 0, "a second root <{name}>");
            roots += usize::from(open.is_empty());
            let attr = |a: &str| {
                let v = tag.split(&format!(" {a}=\"")).nth(1).unwrap_or_default();
                v.split('"').next().unwrap_or_default()
            };
            // Axes and ticks are black polylines too.
            if name == "polyline" && attr("stroke") != "#000000" {
                lines.push(attr("points").split_whitespace().count());
            }
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        assert_eq!(open, Vec::<&str>::new(), "tags left open");
        assert_eq!(roots, 1);
        lines
    }

    fn render(name: &str, draw: impl FnOnce(&Path) -> Result<()>) -> String {
        let path = std::env::temp_dir().join(format!("kcache-{name}-{}.svg", std::process::id()));
        draw(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let svg = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let _ = fs::remove_file(&path);
        svg
    }

    #[test]
    fn nines_scale() {
        // One step per nine; labels read as percentiles.
        for (p, n, label) in [
            (0.0, 0.0, "0"),
            (90.0, 1.0, "90"),
            (99.0, 2.0, "99"),
            (99.9, 3.0, "99.9"),
            (99.9999, 6.0, "99.9999"),
        ] {
            assert!((nines(p) - n).abs() < 1e-9, "{p}");
            assert_eq!(nines_label(n), label);
        }
    }

    #[test]
    fn axis_steps_and_labels() {
        assert_eq!(
            one_two_five(20.0, 5000.0),
            [20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        );
        // Bounds snap outwards to 1-2-5 steps; a single value still gets a range.
        assert_eq!(latency_bounds([34.0, 2100.0].into_iter()), (20.0, 5000.0));
        assert_eq!(latency_bounds([100.0].into_iter()), (50.0, 200.0));
        assert_eq!(latency_bounds(std::iter::empty()), (1.0, 1000.0));
        for (v, s) in [
            (0.5, "0.5"),
            (20.0, "20"),
            (5000.0, "5000"),
            (50_000.0, "50k"),
            (1.5e6, "1.5M"),
        ] {
            assert_eq!(number(v), s);
        }
    }

    #[test]
    fn percentile_plot() {
        // Two servers' curves from 0 to 99.9999, plus a max at 100 that the scale leaves out.
        let curve = |base: f64| -> Vec<(f64, f64)> {
            let mut c: Vec<_> = (0..=36)
                .map(|i| {
                    let p = 100.0 - 100.0 * 10f64.powf(-f64::from(i) / 6.0);
                    (p, base * (1.0 + f64::from(i)))
                })
                .collect();
            c.push((100.0, base * 100.0));
            c
        };
        let (m, k) = (curve(40.0), curve(30.0));
        let svg = render("curve", |path| {
            percentile_curve(
                "tcp-90-10: latency <by> percentile & server",
                &[("memcached", &m), ("kcache", &k)],
                path,
            )
        });
        // One polyline per server, with every point under 100.
        assert_eq!(polylines(&svg), [37, 37]);
        for text in [
            "memcached",
            "kcache",
            "99.9999",
            "latency µs",
            "&lt;by&gt;",
            "&amp;",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn sweep_plot() {
        let point = |_offered: f64, achieved: f64, p50_us: f64, p99_us: f64| SweepPoint {
            achieved,
            p50_us,
            p99_us,
        };
        let m = [
            point(5e4, 5e4, 30.0, 90.0),
            point(1e5, 9e4, 400.0, 15_000.0),
        ];
        let k = [
            point(5e4, 5e4, 25.0, 60.0),
            point(1e5, 1e5, 30.0, 80.0),
            point(1.5e5, 1.2e5, 900.0, 20_000.0),
        ];
        let svg = render("sweep", |path| {
            sweep(
                "tcp-90-10 sweep",
                &[("memcached", &m), ("kcache", &k)],
                path,
            )
        });
        // p99 and p50 for each server, a point per rate.
        assert_eq!(polylines(&svg), [2, 2, 3, 3]);
        for text in ["memcached p99", "kcache p50", "100k"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
