//! Server-side SVG charts drawn with `plotters` (its SVG backend only: no fonts, no bitmaps, no
//! JavaScript): one description type for every chart of the report (lines over time, the
//! percentile distribution on a nines axis, capacity steps with a second axis) and one renderer.

use plotters::coord::Shift;
use plotters::prelude::*;

pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub const GREEN: RGBColor = RGBColor(44, 160, 44);
pub const RED: RGBColor = RGBColor(214, 39, 40);
pub const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub const GREY: RGBColor = RGBColor(127, 127, 127);
pub const BROWN: RGBColor = RGBColor(140, 86, 75);
pub const TEAL: RGBColor = RGBColor(23, 190, 207);

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// Drawn against the secondary (right) axis.
    pub secondary: bool,
    /// Points are also marked (for sparse series such as capacity steps).
    pub dots: bool,
}

impl Series {
    pub fn new(name: &str, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.to_string(),
            color,
            points,
            secondary: false,
            dots: false,
        }
    }
}

/// How the x axis is labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    /// Plain numbers (seconds, request rates).
    Linear,
    /// x = log10(1 / (1 − q)): labelled 0%, 90%, 99%, 99.9%, ... (HdrHistogram's plot).
    Nines,
}

/// A vertical mark at x (a reconnect, a publish error, the capacity found).
#[derive(Clone, Debug)]
pub struct Mark {
    pub x: f64,
    pub color: RGBColor,
    /// A result (the capacity found) rather than an event: drawn bold.
    pub bold: bool,
}

/// Everything needed to draw one chart.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Element id in the page (`chart-…`), used by tests and links.
    pub id: &'static str,
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_axis: XAxis,
    pub y_log: bool,
    pub series: Vec<Series>,
    /// Right axis: description and range, for series marked `secondary`.
    pub y2: Option<(String, f64, f64)>,
    /// Vertical marks, with a legend entry per distinct colour (name, colour).
    pub marks: Vec<Mark>,
    pub mark_legend: Vec<(String, RGBColor)>,
    /// Horizontal reference lines (an SLO), with their legend name.
    pub hlines: Vec<(String, f64, RGBColor)>,
    /// A shaded x range (the warm-up).
    pub shade: Option<(f64, f64)>,
    /// Where the legend goes (away from where the lines usually are).
    pub legend: Legend,
}

/// Legend corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legend {
    UpperLeft,
    LowerLeft,
    LowerRight,
    MiddleRight,
}

impl Chart {
    pub fn new(id: &'static str, title: &str, x_desc: &str, y_desc: &str) -> Self {
        Chart {
            id,
            title: title.to_string(),
            x_desc: x_desc.to_string(),
            y_desc: y_desc.to_string(),
            x_axis: XAxis::Linear,
            y_log: false,
            series: Vec::new(),
            y2: None,
            marks: Vec::new(),
            mark_legend: Vec::new(),
            hlines: Vec::new(),
            shade: None,
            legend: Legend::UpperLeft,
        }
    }

    /// Number of data points drawn (what tests check to know a chart has data).
    pub fn points(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

pub const WIDTH: u32 = 1100;
pub const HEIGHT: u32 = 340;

/// Draws the chart as an SVG document (the string starts with `<svg`).
pub fn svg(chart: &Chart) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart).map_err(|e| format!("chart {}: {e}", chart.id))?;
        root.present()
            .map_err(|e| format!("chart {}: {e}", chart.id))?;
    }
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn nines_label(x: f64) -> String {
    let k = x.round();
    if (x - k).abs() > 1e-6 || k < 0.0 {
        return String::new();
    }
    match k as u32 {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
    }
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        let t = format!("{v:.4}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn draw(root: &DrawingArea<SVGBackend, Shift>, c: &Chart) -> DrawResult {
    root.fill(&WHITE)?;
    let every = c.series.iter().flat_map(|s| s.points.iter().copied());
    let primary: Vec<(f64, f64)> = c
        .series
        .iter()
        .filter(|s| !s.secondary)
        .flat_map(|s| s.points.iter().copied())
        .chain(c.hlines.iter().map(|(_, y, _)| (f64::NAN, *y)))
        .collect();
    let finite = |v: f64| v.is_finite().then_some(v);
    let xs: Vec<f64> = every
        .filter_map(|(x, _)| finite(x))
        .chain(c.marks.iter().filter_map(|m| finite(m.x)))
        .collect();
    let (mut x0, mut x1) = min_max(xs.iter().copied()).unwrap_or((0.0, 1.0));
    if c.x_axis == XAxis::Nines {
        x0 = 0.0;
        x1 = x1.ceil().max(1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let ys = primary.iter().filter_map(|(_, y)| finite(*y));
    let log_low = min_max(ys.clone().filter(|y| *y > 0.0));
    let log = c.y_log && log_low.is_some();
    let (y0, y1) = if log {
        let (lo, hi) = log_low.unwrap_or((1.0, 10.0));
        (lo / 1.5, (hi * 1.5).max(lo * 2.0))
    } else {
        let (lo, hi) = min_max(ys).unwrap_or((0.0, 1.0));
        let lo = lo.min(0.0);
        (lo, if hi <= lo { lo + 1.0 } else { hi * 1.05 })
    };
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&c.title, ("sans-serif", 18))
        .margin(10)
        .margin_right(if c.y2.is_some() { 10 } else { 36 })
        .x_label_area_size(40)
        .y_label_area_size(64)
        .right_y_label_area_size(if c.y2.is_some() { 64 } else { 0 });
    let legend_at = match c.legend {
        Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
        Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
        Legend::MiddleRight => SeriesLabelPosition::MiddleRight,
    };
    let x_fmt = |x: &f64| match c.x_axis {
        XAxis::Nines => nines_label(*x),
        XAxis::Linear => short(*x),
    };
    let x_labels = match c.x_axis {
        XAxis::Nines => (x1 - x0) as usize + 1,
        XAxis::Linear => 10,
    };
    // the four coordinate combinations (linear/log, with/without a right axis) are distinct
    // types in plotters; one macro draws the same content on each
    macro_rules! body {
        ($chart:expr) => {{
            let chart = &mut $chart;
            chart
                .configure_mesh()
                .x_desc(c.x_desc.as_str())
                .y_desc(c.y_desc.as_str())
                .x_labels(x_labels)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|y| short(*y))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            if let Some((a, b)) = c.shade {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(a.max(x0), y0), (b.min(x1), y1)],
                    GREY.mix(0.12).filled(),
                )))?;
            }
            for m in &c.marks {
                let style = if m.bold {
                    m.color.stroke_width(2)
                } else {
                    m.color.mix(0.35).stroke_width(1)
                };
                chart.draw_series(LineSeries::new([(m.x, y0), (m.x, y1)], style))?;
            }
            for (name, color) in &c.mark_legend {
                let col = *color;
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x + 8, y - 7), (x + 8, y + 7)], col.stroke_width(2))
                    });
            }
            for (name, y, color) in &c.hlines {
                let col = *color;
                chart
                    .draw_series(LineSeries::new(
                        [(x0, *y), (x1, *y)],
                        col.mix(0.7).stroke_width(1),
                    ))?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col));
            }
            for s in c.series.iter().filter(|s| !s.secondary) {
                let col = s.color;
                let pts = s.points.iter().copied().filter(|(_, y)| !log || *y > 0.0);
                chart
                    .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                    });
                if s.dots {
                    chart.draw_series(pts.map(|p| Circle::new(p, 3, col.filled())))?;
                }
            }
        }};
    }
    macro_rules! secondary {
        ($chart:expr, $desc:expr) => {{
            let chart = &mut $chart;
            chart
                .configure_secondary_axes()
                .y_desc($desc)
                .y_label_formatter(&|y| short(*y))
                .draw()?;
            for s in c.series.iter().filter(|s| s.secondary) {
                let col = s.color;
                chart
                    .draw_secondary_series(LineSeries::new(
                        s.points.iter().copied(),
                        col.stroke_width(2),
                    ))?
                    .label(format!("{} (right axis)", s.name))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                    });
                if s.dots {
                    chart.draw_secondary_series(
                        s.points.iter().map(|p| Circle::new(*p, 3, col.filled())),
                    )?;
                }
            }
        }};
    }
    macro_rules! legend {
        ($chart:expr) => {
            $chart
                .configure_series_labels()
                .position(legend_at.clone())
                .background_style(WHITE.mix(0.8))
                .border_style(GREY)
                .draw()?
        };
    }
    let xr = x0..x1;
    match (&c.y2, log) {
        (None, false) => {
            let mut ch = builder.build_cartesian_2d(xr, y0..y1)?;
            body!(ch);
            legend!(ch);
        }
        (None, true) => {
            let mut ch = builder.build_cartesian_2d(xr, (y0..y1).log_scale())?;
            body!(ch);
            legend!(ch);
        }
        (Some((desc, a, b)), false) => {
            let b = if b > a { *b } else { a + 1.0 };
            let mut ch = builder
                .build_cartesian_2d(xr.clone(), y0..y1)?
                .set_secondary_coord(xr, *a..b);
            secondary!(ch, desc.as_str());
            body!(ch);
            legend!(ch);
        }
        (Some((desc, a, b)), true) => {
            let b = if b > a { *b } else { a + 1.0 };
            let mut ch = builder
                .build_cartesian_2d(xr.clone(), (y0..y1).log_scale())?
                .set_secondary_coord(xr, *a..b);
            secondary!(ch, desc.as_str());
            body!(ch);
            legend!(ch);
        }
    }
    Ok(())
}

fn min_max(it: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    it.fold(None, |acc, v| {
        Some(match acc {
            None => (v, v),
            Some((a, b)) => (a.min(v), b.max(v)),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text elements' contents.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .map(|(_, r)| r.split('<').next().unwrap_or("").trim().to_string())
            })
            .collect()
    }

    #[test]
    fn a_line_chart_is_an_svg_with_its_lines_and_labels() {
        let mut c = Chart::new("chart-t", "Rates", "seconds", "per second");
        c.series.push(Series::new(
            "sent",
            BLUE,
            (0..60).map(|t| (t as f64, 1000.0)).collect(),
        ));
        c.series.push(Series::new(
            "matched",
            GREEN,
            (0..60).map(|t| (t as f64, 990.0)).collect(),
        ));
        c.marks.push(Mark {
            x: 30.0,
            color: RED,
            bold: false,
        });
        c.mark_legend.push(("reconnect".into(), RED));
        c.shade = Some((0.0, 5.0));
        let s = svg(&c).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..80]);
        assert!(s.matches("<polyline").count() >= 3, "two lines and a mark");
        let t = texts(&s);
        for want in ["Rates", "matched", "reconnect", "seconds", "per second"] {
            assert!(t.iter().any(|x| x == want), "no text {want} in {t:?}");
        }
        assert_eq!(c.points(), 120);
    }

    #[test]
    fn nines_axis_is_labelled_in_nines_and_log_and_dual_axes_draw() {
        let mut c = Chart::new("chart-n", "Latency by percentile", "percentile", "ms");
        c.x_axis = XAxis::Nines;
        c.y_log = true;
        c.series.push(Series::new(
            "latency",
            BLUE,
            vec![(0.0, 1.0), (2.0, 5.0), (3.3, 40.0)],
        ));
        let s = svg(&c).unwrap();
        let t = texts(&s);
        for l in ["0%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(t.iter().any(|x| x == l), "no {l} label in {t:?}");
        }
        let mut d = Chart::new("chart-c", "Capacity", "offered", "ms");
        d.y2 = Some(("match".into(), 0.9, 1.0));
        d.series
            .push(Series::new("p99", RED, vec![(1000.0, 3.0), (1500.0, 9.0)]));
        let mut m = Series::new("match", GREEN, vec![(1000.0, 1.0), (1500.0, 0.95)]);
        m.secondary = true;
        m.dots = true;
        d.series.push(m);
        d.hlines.push(("SLO p99".into(), 50.0, ORANGE));
        let s = svg(&d).unwrap();
        let t = texts(&s);
        assert!(
            t.iter().any(|x| x == "match (right axis)") && t.iter().any(|x| x == "SLO p99"),
            "{t:?}"
        );
        assert!(s.matches("<circle").count() >= 2);
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let c = Chart::new("chart-e", "Nothing", "s", "n");
        assert!(svg(&c).unwrap().starts_with("<svg"));
    }
}
