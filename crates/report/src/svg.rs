//! The charts, as inline SVG: bars (grouped, horizontal, columns) and lines. Each mark
//! carries a `<title>` with its figure, which a browser shows on hover without a script.

use crate::esc;

/// One labelled figure.
#[derive(Debug, Clone)]
pub struct Bar {
    /// What the bar is.
    pub label: String,
    /// Its length.
    pub value: f64,
}

/// One line of (x, y) points, and its dashed continuation.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// The points, x ascending.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed after the points.
    pub forecast: Vec<(f64, f64)>,
}

const COLORS: [&str; 4] = ["#3366cc", "#dc7633", "#28a745", "#8e44ad"];
const W: f64 = 900.0;

/// A chart with nothing to draw yet: it says so, in the chart's own frame.
pub fn empty(why: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"empty\" viewBox=\"0 0 {W} 60\" width=\"{W}\" height=\"60\">\
         <text x=\"10\" y=\"35\" font-size=\"14\" fill=\"#888\">{}</text></svg>",
        esc(why)
    )
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn num(v: f64) -> String {
    if v.abs() >= 1.0e6 {
        format!("{:.1}M", v / 1.0e6)
    } else if v.abs() >= 1.0e4 {
        format!("{:.0}k", v / 1.0e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Bars per category, one per group (`rows`, `new ids`), side by side, with a legend.
pub fn grouped_bars(categories: &[String], groups: &[(&str, Vec<f64>)]) -> String {
    if categories.is_empty() {
        return empty("no runs yet");
    }
    let (h, top, bottom, left) = (260.0, 30.0, 70.0, 60.0);
    let max = nice_max(
        groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max),
    );
    let slot = (W - left - 10.0) / categories.len() as f64;
    let bar = (slot * 0.8 / groups.len() as f64).max(1.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let mut s = frame(h);
    axis(&mut s, left, top, h - bottom, max);
    for (g, (name, values)) in groups.iter().enumerate() {
        let color = COLORS[g % COLORS.len()];
        s.push_str(&format!(
            "<rect x=\"{}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"17\" font-size=\"12\">{}</text>",
            left + g as f64 * 110.0,
            left + g as f64 * 110.0 + 14.0,
            esc(name)
        ));
        for (i, v) in values.iter().enumerate() {
            let x = left + i as f64 * slot + slot * 0.1 + g as f64 * bar;
            s.push_str(&format!(
                "<rect class=\"mark\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {} {}</title></rect>",
                y(*v),
                (y(0.0) - y(*v)).max(0.0),
                esc(&categories[i]),
                num(*v),
                esc(name)
            ));
        }
    }
    // Category labels, thinned to about 20.
    let every = categories.len().div_ceil(20);
    for (i, c) in categories
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
    {
        let x = left + i as f64 * slot + slot / 2.0;
        s.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" transform=\"rotate(35 {x:.1} {:.1})\">{}</text>",
            h - bottom + 14.0,
            h - bottom + 14.0,
            esc(c)
        ));
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars, one per label, longest first as given.
pub fn hbars(bars: &[Bar]) -> String {
    if bars.is_empty() {
        return empty("nothing yet");
    }
    let row = 22.0;
    let h = 10.0 + row * bars.len() as f64;
    let left = 260.0;
    let max = nice_max(bars.iter().map(|b| b.value).fold(0.0, f64::max));
    let mut s = frame(h);
    for (i, b) in bars.iter().enumerate() {
        let y = 5.0 + i as f64 * row;
        let w = ((W - left - 80.0) * b.value / max).max(1.0);
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <rect class=\"mark\" x=\"{left}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            left - 6.0,
            y + 14.0,
            esc(&b.label),
            row - 6.0,
            COLORS[0],
            esc(&b.label),
            num(b.value),
            left + w + 4.0,
            y + 14.0,
            num(b.value)
        ));
    }
    s.push_str("</svg>");
    s
}

/// Vertical bars in the order given (a histogram's buckets).
pub fn columns(bars: &[Bar]) -> String {
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    grouped_bars(&labels, &[("jobs", bars.iter().map(|b| b.value).collect())])
}

/// Lines over time (x in seconds since the epoch), each with its dashed forecast.
pub fn lines(series: &[Series]) -> String {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().chain(s.forecast.iter()).copied())
        .collect();
    if all.is_empty() {
        return empty("no balance reported yet");
    }
    let (h, top, bottom, left) = (260.0, 30.0, 40.0, 60.0);
    let x0 = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x1 = all
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max)
        .max(x0 + 3600.0);
    let max = nice_max(all.iter().map(|p| p.1).fold(0.0, f64::max));
    let px = |x: f64| left + (W - left - 20.0) * (x - x0) / (x1 - x0);
    let py = |y: f64| top + (h - top - bottom) * (1.0 - y.max(0.0) / max);
    let mut s = frame(h);
    axis(&mut s, left, top, h - bottom, max);
    let days = (x1 - x0) / 86_400.0;
    s.push_str(&format!(
        "<text x=\"{left}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">+{days:.1} days</text>",
        h - 12.0,
        "first balance",
        W - 20.0,
        h - 12.0
    ));
    for (i, line) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        s.push_str(&format!(
            "<rect x=\"{}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"17\" font-size=\"12\">{}</text>",
            left + i as f64 * 110.0,
            left + i as f64 * 110.0 + 14.0,
            esc(&line.name)
        ));
        let path = |pts: &[(f64, f64)]| {
            pts.iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !line.points.is_empty() {
            s.push_str(&format!(
                "<polyline class=\"mark\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                path(&line.points)
            ));
            for (x, y) in &line.points {
                s.push_str(&format!(
                    "<circle class=\"mark\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {}</title></circle>",
                    px(*x),
                    py(*y),
                    esc(&line.name),
                    num(*y)
                ));
            }
        }
        if line.forecast.len() > 1 {
            s.push_str(&format!(
                "<polyline class=\"mark forecast\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"6 4\" points=\"{}\"/>",
                path(&line.forecast)
            ));
        }
    }
    s.push_str("</svg>");
    s
}

fn frame(h: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\">"
    )
}

fn axis(s: &mut String, left: f64, top: f64, bottom: f64, max: f64) {
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{W}\" y2=\"{bottom}\" stroke=\"#999\"/>"
    ));
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = bottom - (bottom - top) * k as f64 / 4.0;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            y + 3.0,
            num(v)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_a_round_maximum_and_carry_their_figures() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(230.0), 250.0);
        assert_eq!(nice_max(1001.0), 2000.0);
        let svg = hbars(&[
            Bar {
                label: "US <1>".into(),
                value: 150.0,
            },
            Bar {
                label: "DE".into(),
                value: 50.0,
            },
        ]);
        assert_eq!(svg.matches("class=\"mark\"").count(), 2);
        assert!(svg.contains("US &lt;1&gt;: 150"));
        let svg = grouped_bars(
            &["a".into(), "b".into()],
            &[("rows", vec![1.0, 2.0]), ("new", vec![0.0, 1.0])],
        );
        assert_eq!(svg.matches("<rect class=\"mark\"").count(), 4);
        assert!(lines(&[]).contains("no balance reported yet"));
    }
}
