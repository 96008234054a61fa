//! The pictures of a bench run, drawn as SVG by the binary itself: latency by percentile
//! (log-scaled "nines" axis, as HdrHistogram plots show it), throughput over time, and for a
//! sweep, latency against throughput.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Latency (ms) against percentile, on an axis of nines: x = -log10(1 - q).
pub fn latency_percentiles(histogram: &Histogram<u64>, path: &Path) -> Result<(), String> {
    let points: Vec<(f64, f64)> = histogram
        .iter_quantiles(5)
        .filter(|step| step.quantile_iterated_to() < 1.0)
        .map(|step| {
            let nines = -(1.0 - step.quantile_iterated_to()).log10();
            (nines, step.value_iterated_to() as f64 / 1000.0)
        })
        .collect();
    let x_max = points
        .iter()
        .map(|p| p.0)
        .fold(1.0, f64::max)
        .ceil()
        .min(6.0);
    let chart = LineChart {
        caption: "commit latency by percentile",
        size: (900, 500),
        x_desc: "percentile",
        y_desc: "latency (ms)",
        x_max,
        x_labels: x_max as usize + 1,
        x_format: &|nines| format!("{:.4}%", (1.0 - 10f64.powf(-nines)) * 100.0),
    };
    chart.draw(&[Series::unlabelled(BLUE, &points)], path)
}

/// Commits per second in each sampling interval: `(seconds since start, commits/s)`.
pub fn throughput_over_time(samples: &[(f64, f64)], path: &Path) -> Result<(), String> {
    let chart = LineChart {
        caption: "throughput over time",
        size: (900, 400),
        x_desc: "seconds",
        y_desc: "commits/s",
        x_max: samples.last().map_or(1.0, |s| s.0).max(1.0),
        x_labels: 10,
        x_format: &|seconds| format!("{seconds:.1}"),
    };
    chart.draw(&[Series::unlabelled(RED, samples)], path)
}

/// A sweep: p50 and p99 latency (ms) against the achieved commits per second.
pub fn latency_against_throughput(
    p50: &[(f64, f64)],
    p99: &[(f64, f64)],
    path: &Path,
) -> Result<(), String> {
    let chart = LineChart {
        caption: "latency against throughput",
        size: (900, 500),
        x_desc: "commits/s",
        y_desc: "latency (ms)",
        x_max: p99.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05,
        x_labels: 10,
        x_format: &|rate| format!("{rate:.0}"),
    };
    let series = [
        Series {
            label: "p50",
            color: BLUE,
            points: p50,
        },
        Series {
            label: "p99",
            color: RED,
            points: p99,
        },
    ];
    chart.draw(&series, path)
}

/// One line of a chart; labelled lines get a legend entry.
struct Series<'a> {
    label: &'a str,
    color: RGBColor,
    points: &'a [(f64, f64)],
}

impl<'a> Series<'a> {
    fn unlabelled(color: RGBColor, points: &'a [(f64, f64)]) -> Series<'a> {
        Series {
            label: "",
            color,
            points,
        }
    }
}

/// Lines on linear axes from 0, drawn to an SVG file.
struct LineChart<'a> {
    caption: &'a str,
    size: (u32, u32),
    x_desc: &'a str,
    y_desc: &'a str,
    x_max: f64,
    x_labels: usize,
    x_format: &'a dyn Fn(&f64) -> String,
}

impl LineChart<'_> {
    fn draw(&self, series: &[Series<'_>], path: &Path) -> Result<(), String> {
        let y_max = series
            .iter()
            .flat_map(|line| line.points)
            .map(|p| p.1)
            .fold(0.1, f64::max)
            * 1.1;
        let root = SVGBackend::new(path, self.size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.caption, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..self.x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .x_labels(self.x_labels)
            .x_label_formatter(self.x_format)
            .draw()
            .map_err(|e| e.to_string())?;
        for line in series {
            let color = line.color;
            let drawn = chart
                .draw_series(LineSeries::new(line.points.iter().copied(), &color))
                .map_err(|e| e.to_string())?;
            if !line.label.is_empty() {
                drawn
                    .label(line.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
        }
        if series.iter().any(|line| !line.label.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())
    }
}
