//! The benchmark's charts, each written as SVG and PNG with `plotters`:
//! records/s and MB/s against message size (LinkedIn's two figures),
//! throughput over a run that keeps adding stored data, and the end-to-end
//! latency percentile curve. One run draws one line per chart; `bench
//! compare` draws both runs on the same axes.
//!
//! PNG text is drawn by `ab_glyph` from a TrueType file (no fontconfig), so a
//! host without one gets the data files and a warning instead of charts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::linkedin::{END_TO_END_ROW, Row, STORED_ROW, SWEEP_PREFIX};

const WIDTH_PX: u32 = 900;
const HEIGHT_PX: u32 = 520;
const FONT: &str = "sans-serif";
/// Debian's fonts-dejavu-core first (ci/test installs it), then common alternatives.
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const COLORS: &[RGBColor] = &[RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44)];
/// The latency curve's x axis ends at 99.99%; the maximum is in the table.
const NINES_MAX: f64 = 4.0;

type Points = Vec<(f64, f64)>;

pub struct Series {
    pub label: String,
    pub points: Points,
}

pub struct Chart {
    /// File name without extension.
    pub stem: &'static str,
    pub title: String,
    pub x_desc: &'static str,
    pub y_desc: &'static str,
    pub x_format: fn(&f64) -> String,
    pub y_format: fn(&f64) -> String,
    pub series: Vec<Series>,
}

/// Registers the first TrueType font found; an error names what to install.
fn font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONT_FILES
                .iter()
                .find_map(|path| std::fs::read(path).ok())
                .ok_or("no TrueType font found (apt-get install fonts-dejavu-core)")?;
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| "the font file is not valid".to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Writes `<stem>.svg` and `<stem>.png` for every chart that has data.
pub fn write(dir: &Path, charts: &[Chart]) -> anyhow::Result<Vec<PathBuf>> {
    font()?;
    let mut written = Vec::new();
    for chart in charts.iter().filter(|c| c.series.iter().any(|s| !s.points.is_empty())) {
        let svg = dir.join(format!("{}.svg", chart.stem));
        draw(SVGBackend::new(&svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area(), chart)
            .with_context(|| format!("drawing {}", svg.display()))?;
        let png = dir.join(format!("{}.png", chart.stem));
        draw(
            BitMapBackend::new(&png, (WIDTH_PX, HEIGHT_PX)).into_drawing_area(),
            chart,
        )
        .with_context(|| format!("drawing {}", png.display()))?;
        written.extend([svg, png]);
    }
    Ok(written)
}

/// The x and y ranges covering every point, y from zero with headroom.
fn ranges(chart: &Chart) -> anyhow::Result<(std::ops::Range<f64>, std::ops::Range<f64>)> {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0f64);
    for (x, y) in points {
        (x_min, x_max, y_max) = (x_min.min(*x), x_max.max(*x), y_max.max(*y));
    }
    if x_min > x_max {
        bail!("no points");
    }
    let pad = ((x_max - x_min) * 0.05).max(0.5);
    Ok((x_min - pad..x_max + pad, 0.0..(y_max * 1.1).max(1e-9)))
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let failed = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    let (x_range, y_range) = ranges(chart)?;
    root.fill(&WHITE).map_err(failed)?;
    let mut plot = ChartBuilder::on(&root)
        .caption(&chart.title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range, y_range)
        .map_err(failed)?;
    plot.configure_mesh()
        .x_desc(chart.x_desc)
        .y_desc(chart.y_desc)
        .x_label_formatter(&chart.x_format)
        .y_label_formatter(&chart.y_format)
        .label_style((FONT, 14))
        .draw()
        .map_err(failed)?;
    for (i, series) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        plot.draw_series(LineSeries::new(series.points.iter().copied(), color.stroke_width(2)))
            .map_err(failed)?
            .label(&series.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        plot.draw_series(series.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(failed)?;
    }
    plot.configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(failed)?;
    root.present().map_err(failed)?;
    Ok(())
}

fn si(v: &f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e3 => format!("{:.0}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

fn plain(v: &f64) -> String {
    format!("{v:.1}")
}

/// Log axes label only their powers of ten.
fn is_whole(x: f64) -> bool {
    (x - x.round()).abs() < 0.01
}

/// x is log10(bytes).
fn size_label(x: &f64) -> String {
    if !is_whole(*x) {
        return String::new();
    }
    let bytes = 10f64.powf(x.round());
    match bytes {
        b if b >= 1e3 => format!("{:.0} KB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// x is the number of nines: 1 = 90%, 2 = 99%, 3 = 99.9%.
fn nines_label(x: &f64) -> String {
    if !is_whole(*x) && (x - nines(0.5)).abs() > 0.01 {
        return String::new();
    }
    let percent = format!("{:.3}", 100.0 * (1.0 - 10f64.powf(-x)));
    format!("{}%", percent.trim_end_matches('0').trim_end_matches('.'))
}

fn nines(quantile: f64) -> f64 {
    (-(1.0 - quantile).log10()).min(NINES_MAX)
}

/// A sweep row's record size; results.json files older than `size_bytes` name it only.
fn sweep_size(row: &Row) -> usize {
    if row.size_bytes > 0 {
        return row.size_bytes;
    }
    let digits = row.name.trim_start_matches(SWEEP_PREFIX).trim_end_matches(" B");
    digits.parse().unwrap_or(0)
}

/// The charts for one or more runs, each labelled, one line per run.
pub fn charts(runs: &[(&str, &[Row])]) -> Vec<Chart> {
    let sweep = |run: &[Row], value: fn(&Row) -> f64| -> Vec<(f64, f64)> {
        run.iter()
            .filter(|r| r.status == "ok" && r.name.starts_with(SWEEP_PREFIX))
            .map(|r| ((sweep_size(r).max(1) as f64).log10(), value(r)))
            .collect()
    };
    let series = |points: &dyn Fn(&[Row]) -> Points| -> Vec<Series> {
        runs.iter()
            .map(|(label, rows)| Series {
                label: label.to_string(),
                points: points(rows),
            })
            .collect()
    };
    let find = |rows: &[Row], name: &str| rows.iter().find(|r| r.name == name && r.status == "ok").cloned();
    vec![
        Chart {
            stem: "records-per-second-by-size",
            title: "Producer records/s by message size".into(),
            x_desc: "message size",
            y_desc: "records/s",
            x_format: size_label,
            y_format: si,
            series: series(&|rows| sweep(rows, |r| r.records_per_second)),
        },
        Chart {
            stem: "mb-per-second-by-size",
            title: "Producer MB/s by message size".into(),
            x_desc: "message size",
            y_desc: "MB/s (payload)",
            x_format: size_label,
            y_format: plain,
            series: series(&|rows| sweep(rows, |r| r.mb_per_second)),
        },
        Chart {
            stem: "throughput-over-stored-data",
            title: "Producer throughput as stored data grows".into(),
            x_desc: "seconds into the run",
            y_desc: "records/s",
            x_format: |x| format!("{x:.0}"),
            y_format: si,
            series: series(&|rows| {
                find(rows, STORED_ROW).map_or_else(Vec::new, |r| {
                    r.per_second
                        .iter()
                        .enumerate()
                        .map(|(s, n)| (s as f64 + 1.0, *n as f64))
                        .collect()
                })
            }),
        },
        Chart {
            stem: "end-to-end-latency",
            title: "End-to-end latency at 100k records/s".into(),
            x_desc: "percentile",
            y_desc: "milliseconds",
            x_format: nines_label,
            y_format: |y| format!("{y:.2}"),
            series: series(&|rows| {
                find(rows, END_TO_END_ROW).map_or_else(Vec::new, |r| {
                    r.latency_curve_us
                        .iter()
                        .filter(|(q, _)| *q < 1.0)
                        .map(|(q, us)| (nines(*q), *us as f64 / 1000.0))
                        .collect()
                })
            }),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_read_as_sizes_and_percentiles() {
        assert_eq!(size_label(&1.0), "10 B");
        assert_eq!(size_label(&5.0), "100 KB");
        assert_eq!(size_label(&1.5), "", "only powers of ten are labelled");
        assert_eq!(nines_label(&nines(0.5)), "50%");
        assert_eq!(nines_label(&nines(0.99)), "99%");
        assert_eq!(nines_label(&nines(0.999)), "99.9%");
        assert_eq!(nines_label(&nines(0.9999)), "99.99%");
        assert_eq!(nines(1.0), NINES_MAX);
        assert_eq!(si(&2_500_000.0), "2.5M");
    }
}
