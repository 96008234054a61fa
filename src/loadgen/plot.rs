//! The two pictures of a bench run, drawn as SVG by the binary itself: latency by percentile
//! (log-scaled "nines" axis, as HdrHistogram plots show it) and throughput over time.

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
    let y_max = points.iter().map(|p| p.1).fold(0.1, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("commit latency by percentile", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .x_labels(x_max as usize + 1)
        .y_desc("latency (ms)")
        .x_label_formatter(&|nines| format!("{:.4}%", (1.0 - 10f64.powf(-nines)) * 100.0))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Commits per second in each sampling interval: `(seconds since start, commits/s)`.
pub fn throughput_over_time(samples: &[(f64, f64)], path: &Path) -> Result<(), String> {
    let x_max = samples.last().map_or(1.0, |s| s.0).max(1.0);
    let y_max = samples.iter().map(|s| s.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("throughput over time", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("commits/s")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(samples.iter().copied(), &RED))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
