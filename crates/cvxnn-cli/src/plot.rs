//! path.svg: the regularization path in two stacked panels sharing a log-scale lambda axis:
//! train/validation/test metric on top, neurons below, the recommended lambda marked in both.
//! Plotters' SVG backend writes text as `<text>` elements, so no font library is needed.

use anyhow::{anyhow, Result};
use cvxnn::path::PathReport;
use plotters::prelude::*;

use crate::path::metric;

/// Lowest R^2 drawn: the zero network's R^2 on uncentred targets can be far below 0 and would
/// flatten the rest of the curve; lower values are drawn at this level.
const R2_FLOOR: f64 = -1.0;

/// The SVG text of the path plot.
pub fn path_svg(r: &PathReport, title: &str) -> Result<String> {
    let mut svg = String::new();
    draw(r, title, &mut svg).map_err(|e| anyhow!("{e}"))?;
    Ok(svg)
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(r: &PathReport, title: &str, svg: &mut String) -> DrawResult {
    let lambdas: Vec<f64> = r.rows.iter().map(|row| row.lambda).collect();
    let hi = lambdas.iter().cloned().fold(f64::MIN, f64::max);
    let lo = lambdas.iter().cloned().fold(f64::MAX, f64::min);
    let x_range = (lo / 1.5..hi * 1.5).log_scale();
    let name = r.rows.first().map_or("r2", |row| metric(&row.validation).0);
    let clip = |v: f64| if name == "r2" { v.max(R2_FLOOR) } else { v };
    let series = |pick: &dyn Fn(usize) -> Option<f64>| -> Vec<(f64, f64)> {
        (0..r.rows.len())
            .filter_map(|k| pick(k).map(|v| (lambdas[k], clip(v))))
            .collect()
    };
    let train = series(&|k| metric(&r.rows[k].train).1);
    let valid = series(&|k| metric(&r.rows[k].validation).1);
    let test = series(&|k| r.rows[k].test.as_ref().and_then(|t| metric(t).1));
    let all: Vec<f64> = train
        .iter()
        .chain(&valid)
        .chain(&test)
        .map(|p| p.1)
        .collect();
    let (mut y_lo, mut y_hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if all.is_empty() {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    let pad = ((y_hi - y_lo) * 0.08).max(1e-3);
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    let rec = r.recommended_lambda;

    let root = SVGBackend::with_string(svg, (900, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&format!("Regularization path: {title}"), ("sans-serif", 20))?;
    let (upper, lower) = root.split_vertically(400);

    let mut top = ChartBuilder::on(&upper)
        .caption(
            format!(
                "{name} against lambda (recommended lambda {rec:.2e}: best {})",
                r.selection
            ),
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), y_lo..y_hi)?;
    top.configure_mesh()
        .x_desc("lambda (log scale)")
        .y_desc(if name == "r2" {
            "R^2 (values below -1 drawn at -1)".to_string()
        } else {
            name.to_string()
        })
        .x_label_formatter(&|v| format!("{v:.0e}"))
        // Without the snap a label just below zero prints as -0.00.
        .y_label_formatter(&|v| format!("{:.2}", if v.abs() < 5e-3 { 0.0 } else { *v }))
        .draw()?;
    let lines = [
        (&train, BLUE.mix(0.5), "train"),
        (&valid, GREEN.to_rgba(), "validation"),
        (&test, MAGENTA.to_rgba(), "test"),
    ];
    for (points, color, label) in lines {
        if points.is_empty() {
            continue;
        }
        top.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        top.draw_series(PointSeries::of_element(
            points.iter().copied(),
            3,
            color.filled(),
            &|c, s, st| Circle::new(c, s, st),
        ))?;
    }
    top.draw_series(LineSeries::new(
        [(rec, y_lo), (rec, y_hi)],
        RED.stroke_width(1),
    ))?
    .label("recommended")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    top.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let neurons: Vec<(f64, f64)> = r
        .rows
        .iter()
        .map(|row| (row.lambda, row.neurons as f64))
        .collect();
    let n_hi = neurons.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut bottom = ChartBuilder::on(&lower)
        .caption(
            "neurons (non-zero groups) against lambda",
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, 0.0..n_hi)?;
    bottom
        .configure_mesh()
        .x_desc("lambda (log scale)")
        .y_desc("neurons")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    bottom.draw_series(LineSeries::new(
        neurons.iter().copied(),
        BLACK.stroke_width(2),
    ))?;
    bottom.draw_series(PointSeries::of_element(
        neurons.iter().copied(),
        3,
        BLACK.filled(),
        &|c, s, st| Circle::new(c, s, st),
    ))?;
    bottom.draw_series(LineSeries::new(
        [(rec, 0.0), (rec, n_hi)],
        RED.stroke_width(1),
    ))?;
    root.present()?;
    Ok(())
}
