//! SVG line charts of a bench's figures, written by the bench itself: no plotting service,
//! and a file that renders in a browser and on GitHub.

use std::fmt::Write as _;

/// One line: a name for the legend and its (x, y) points, in x order.
pub struct Series {
    pub name: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// One panel: its series share the y axis, from 0 to above the highest value.
pub struct Chart {
    pub title: &'static str,
    pub unit: &'static str,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 720.0;
const PANEL_HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The charts stacked, sharing the x axis, labelled `x_label`, from 0 to the largest x.
pub fn svg(x_label: &str, charts: &[Chart]) -> String {
    let height = PANEL_HEIGHT * charts.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let all = charts
        .iter()
        .flat_map(|c| &c.series)
        .flat_map(|s| &s.points);
    let x_max = nice_ceiling(all.map(|&(x, _)| x).fold(0.0, f64::max));
    for (n, chart) in charts.iter().enumerate() {
        panel(&mut out, chart, n as f64 * PANEL_HEIGHT, x_max, x_label);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, chart: &Chart, top: f64, x_max: f64, x_label: &str) {
    let values = chart.series.iter().flat_map(|s| &s.points);
    let y_max = nice_ceiling(values.map(|&(_, y)| y).fold(0.0, f64::max));
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, PANEL_HEIGHT - TOP - BOTTOM);
    let x_at = |x: f64| LEFT + x / x_max * plot_w;
    let y_at = |y: f64| top + TOP + plot_h - y / y_max * plot_h;
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"14\">{}</text>",
        top + 24.0,
        escape(chart.title)
    );
    for tick in 0..=5 {
        let (x, y) = (x_max * tick as f64 / 5.0, y_max * tick as f64 / 5.0);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y_at(y) + 4.0,
            label(y),
            x_at(x),
            top + TOP + plot_h + 16.0,
            label(x),
            y0 = y_at(y),
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        top + PANEL_HEIGHT - 12.0,
        escape(x_label),
        top + TOP + plot_h / 2.0,
        escape(chart.unit)
    );
    for (series, colour) in chart.series.iter().zip(COLOURS.iter().cycle()) {
        let path: Vec<String> = series
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_at(x), y_at(y)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for point in &path {
            let (x, y) = point.split_once(',').expect("formatted as x,y above");
            let _ = writeln!(
                out,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
    }
    for (n, (series, colour)) in chart.series.iter().zip(COLOURS.iter().cycle()).enumerate() {
        let y = top + TOP + 10.0 + 18.0 * n as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{0}\" x2=\"{1}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{colour}\" \
             stroke-width=\"2\"/><text x=\"{2}\" y=\"{3}\">{4}</text>",
            WIDTH - RIGHT + 12.0,
            WIDTH - RIGHT + 32.0,
            WIDTH - RIGHT + 38.0,
            y + 4.0,
            escape(series.name)
        );
    }
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `value` (1 for nothing).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|&nice| nice >= value)
        .unwrap_or(10.0 * power)
}

fn label(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_at_a_round_value_above_the_highest_point() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(4.2), 5.0);
        assert_eq!(nice_ceiling(9.7), 10.0);
        assert_eq!(nice_ceiling(37.0), 50.0);
    }

    #[test]
    fn every_series_is_a_line_with_its_points_and_a_legend_entry() {
        let chart = Chart {
            title: "p99 <ms>",
            unit: "ms",
            series: vec![
                Series {
                    name: "trace",
                    points: vec![(1.0, 1.5), (2.0, 1.8), (3.0, 2.0)],
                },
                Series {
                    name: "listing & more",
                    points: vec![(1.0, 3.0), (3.0, 4.0)],
                },
            ],
        };
        let svg = svg("messages (M)", &[chart]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains(">trace<") && svg.contains(">listing &amp; more<"));
        assert!(svg.contains("p99 &lt;ms&gt;"), "titles are escaped");
        // The highest point (4 ms) sits at the top of a 0–5 ms axis: 4/5 of the way up.
        let plot_h = PANEL_HEIGHT - TOP - BOTTOM;
        let top_y = TOP + plot_h - 0.8 * plot_h;
        assert!(svg.contains(&format!(",{top_y:.1}\"/>")), "{svg}");
    }
}
