//! Which charts a report gets, built from its data: rates, latency, in-flight, worker pool and
//! active clients over time (from `timeline`), deliveries/loss/connections for fan-out, the
//! percentile distribution on a nines axis (from the histograms) and capacity steps. A chart
//! whose data the report lacks is left out with a note saying why, never drawn empty.

use super::charts::{self, Chart, Legend, Mark, Series, XAxis};
use super::hist;
use super::load::LoadedReport;
use super::timeline::{self, Row};
use serde_json::Value;

/// Timeline charts draw at most this many points per line; longer runs fold into buckets.
pub const MAX_POINTS: usize = 1500;

/// A chart to draw, or a part of the report that is absent and why.
pub enum Figure {
    Chart {
        chart: Box<Chart>,
        caption: String,
    },
    Absent {
        id: &'static str,
        title: String,
        why: String,
    },
}

/// Every figure of a report, in page order.
pub fn figures(r: &LoadedReport) -> Vec<Figure> {
    let mut out = Vec::new();
    let rows = timeline::rows(r);
    if rows.is_empty() {
        out.push(Figure::Absent {
            id: "chart-rates",
            title: "Over time".into(),
            why: "this report has no `timeline` (per-second rows), so there are no charts over \
                  time; the totals and the percentile distribution below cover the whole run"
                .into(),
        });
    } else {
        over_time(r, &rows, &mut out);
    }
    out.push(nines(r));
    if let Some(f) = capacity(r) {
        out.push(f);
    }
    out
}

fn col(rows: &[Row], name: &str, scale: f64) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| r.get(name).map(|v| (r.t, v * scale)))
        .collect()
}

fn has(rows: &[Row], name: &str) -> bool {
    rows.iter().any(|r| r.get(name).is_some())
}

fn push(out: &mut Vec<Figure>, chart: Chart, caption: String) {
    if chart.points() > 0 {
        out.push(Figure::Chart {
            chart: Box::new(chart),
            caption,
        });
    }
}

fn over_time(r: &LoadedReport, all: &[Row], out: &mut Vec<Figure>) {
    let per = all.len().div_ceil(MAX_POINTS).max(1);
    let rows = timeline::fold(all, per);
    let each = if per > 1 {
        format!(" Each point covers {per} s (counts: mean per second; percentiles and levels: the bucket's highest).")
    } else {
        String::new()
    };
    let warm: Vec<f64> = rows.iter().filter(|r| r.warmup).map(|r| r.t).collect();
    let shade = warm.iter().copied().fold(None, |a: Option<(f64, f64)>, t| {
        Some(a.map_or((t, t + per as f64), |(x, y)| {
            (x.min(t), y.max(t + per as f64))
        }))
    });
    let warm_note = if shade.is_some() {
        " The grey band is the warm-up (not in the totals)."
    } else {
        ""
    };
    let merged =
        r.value.get("timeline_percentiles").and_then(Value::as_str) == Some("max_of_instances");
    let fanout = r.scenario() == "fanout";
    let x = "seconds since start";
    let mut marks = Vec::new();
    let mut legend = Vec::new();
    for (name, label, color) in [
        ("disconnects", "disconnects", charts::PURPLE),
        ("reconnects", "reconnect", charts::RED),
        ("publish_errors", "publish errors", charts::ORANGE),
    ] {
        let at: Vec<f64> = rows
            .iter()
            .filter(|r| r.get(name).unwrap_or(0.0) > 0.0)
            .map(|r| r.t)
            .collect();
        if !at.is_empty() {
            legend.push((label.to_string(), color));
            marks.extend(at.into_iter().map(|x| Mark {
                x,
                color,
                bold: false,
            }));
        }
    }
    let marked = |c: &mut Chart| {
        c.marks = marks.clone();
        c.mark_legend = legend.clone();
        c.shade = shade;
    };

    let mut c = Chart::new(
        "chart-rates",
        if fanout {
            "Publishes per second"
        } else {
            "Requests per second"
        },
        x,
        "per second",
    );
    c.series.push(Series::new(
        "offered",
        charts::GREY,
        col(&rows, "offered", 1.0),
    ));
    c.series
        .push(Series::new("sent", charts::BLUE, col(&rows, "sent", 1.0)));
    if fanout {
        c.series.push(Series::new(
            "published",
            charts::BLUE,
            col(&rows, "published", 1.0),
        ));
    } else {
        c.series.push(Series::new(
            "matched",
            charts::GREEN,
            col(&rows, "matched", 1.0),
        ));
        c.series.push(Series::new(
            "timeouts",
            charts::RED,
            col(&rows, "timeouts", 1.0),
        ));
    }
    c.series.retain(|s| !s.points.is_empty());
    c.legend = Legend::LowerRight;
    marked(&mut c);
    push(
        out,
        c,
        format!(
            "{}, per second of the run; vertical lines mark seconds with {}.{warm_note}{each}",
            if fanout {
                "Messages published (by second of publication)"
            } else {
                "Offered load against what was sent, matched and timed out"
            },
            if fanout {
                "disconnects, reconnects or publish errors"
            } else {
                "reconnects or publish errors"
            }
        ),
    );

    if fanout {
        let mut c = Chart::new(
            "chart-deliveries",
            "Deliveries and loss per second",
            x,
            "per second",
        );
        c.series.push(Series::new(
            "received",
            charts::GREEN,
            col(&rows, "received", 1.0),
        ));
        c.series
            .push(Series::new("lost", charts::RED, col(&rows, "lost", 1.0)));
        c.series.retain(|s| !s.points.is_empty());
        c.legend = Legend::MiddleRight;
        marked(&mut c);
        push(out, c, format!("Deliveries to subscribers and deliveries lost (sequence gaps; the tail that never arrived in the window's last second), by second of publication.{warm_note}{each}"));
        let mut c = Chart::new(
            "chart-connections",
            "Subscriber connections",
            x,
            "connections",
        );
        c.series.push(Series::new(
            "connections",
            charts::PURPLE,
            col(&rows, "connections", 1.0),
        ));
        c.legend = Legend::MiddleRight;
        marked(&mut c);
        push(
            out,
            c,
            format!("WebSocket subscriber connections up at the end of each second; vertical lines mark seconds with disconnects or reconnects.{each}"),
        );
    }

    let mut c = Chart::new("chart-latency", "Latency per second", x, "milliseconds");
    for (name, label, color) in [
        ("p50_us", "p50", charts::GREEN),
        ("p90_us", "p90", charts::BLUE),
        ("p99_us", "p99", charts::ORANGE),
        ("max_us", "max", charts::RED),
        ("lag_p99_us", "schedule lag p99", charts::GREY),
    ] {
        let pts = col(&rows, name, 1e-3);
        if !pts.is_empty() {
            c.series.push(Series::new(label, color, pts));
        }
    }
    c.y_log = wide(&c);
    let log = c.y_log;
    marked(&mut c);
    push(out, c, format!(
        "Percentiles of the {} that arrived in each second{}, from the scheduled send time; schedule lag is how late the generator itself sent.{}{warm_note}{each}",
        if fanout { "deliveries" } else { "answers" },
        if merged { " (merged fleet: the highest instance's value per second, an upper bound)" } else { "" },
        if log { " Logarithmic scale." } else { "" },
    ));

    let mut c = Chart::new("chart-inflight", "Requests in flight", x, "requests");
    c.series.push(Series::new(
        "inflight",
        charts::PURPLE,
        col(&rows, "inflight", 1.0),
    ));
    marked(&mut c);
    push(
        out,
        c,
        format!("Requests sent and not yet resolved, at the end of each second.{each}"),
    );

    if has(&rows, "worker_pool") {
        let mut c = Chart::new("chart-workers", "Worker pool size", x, "workers");
        c.series.push(Series::new(
            "worker pool",
            charts::BROWN,
            col(&rows, "worker_pool", 1.0),
        ));
        c.shade = shade;
        push(
            out,
            c,
            format!("The responders' pool size as polled from WORKER_STATS_URLS.{each}"),
        );
    }
    let clients = col(&rows, "active_clients", 1.0);
    let varies = clients.windows(2).any(|w| w[0].1 != w[1].1);
    if varies {
        let mut c = Chart::new("chart-clients", "Active virtual clients", x, "clients");
        c.series
            .push(Series::new("active clients", charts::TEAL, clients));
        c.shade = shade;
        push(
            out,
            c,
            format!("Virtual clients sending, as the load profile (STAGES) moves them.{each}"),
        );
    }
}

/// Whether a chart's values span enough decades to need a logarithmic axis.
fn wide(c: &Chart) -> bool {
    let ys = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| *y > 0.0);
    let (lo, hi) = ys.fold((f64::MAX, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    hi > 0.0 && hi / lo > 50.0
}

fn nines(r: &LoadedReport) -> Figure {
    let mut c = Chart::new(
        "chart-percentiles",
        "Latency by percentile",
        "percentile",
        "milliseconds",
    );
    c.x_axis = XAxis::Nines;
    let to_ms = |pts: Vec<(f64, u64)>| pts.into_iter().map(|(x, v)| (x, v as f64 / 1e3)).collect();
    let lat = hist::nines_points(&r.latency);
    if lat.is_empty() {
        return Figure::Absent {
            id: "chart-percentiles",
            title: "Latency by percentile".into(),
            why: "no latency was recorded (nothing matched in the measured window)".into(),
        };
    }
    c.series
        .push(Series::new("latency", charts::BLUE, to_ms(lat)));
    let lag = hist::nines_points(&r.schedule_lag);
    if !lag.is_empty() {
        c.series
            .push(Series::new("schedule lag", charts::GREY, to_ms(lag)));
    }
    c.y_log = wide(&c);
    let caption = format!(
        "The whole measured window's latency distribution ({} samples) as HdrHistogram plots it: \
         each step right is ten times rarer (90%, 99%, 99.9%, ...), up to the maximum.{}",
        r.latency.len(),
        if c.y_log { " Logarithmic scale." } else { "" }
    );
    Figure::Chart {
        chart: Box::new(c),
        caption,
    }
}

fn num(v: &Value, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| v.get(*n).and_then(Value::as_f64))
}

fn capacity(r: &LoadedReport) -> Option<Figure> {
    let cap = r.value.get("capacity")?;
    let steps = cap
        .get("steps")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if steps.is_empty() {
        return Some(Figure::Absent {
            id: "chart-capacity",
            title: "Capacity steps".into(),
            why: "the capacity object has no steps".into(),
        });
    }
    let mut pts: Vec<(f64, &Value)> = steps
        .iter()
        .filter_map(|s| num(s, &["offered", "offered_rate", "rate"]).map(|x| (x, s)))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut c = Chart::new(
        "chart-capacity",
        "Capacity steps",
        "offered rate (req/s)",
        "milliseconds",
    );
    for (names, label, color) in [
        (&["p50_us", "p50"][..], "p50", charts::GREEN),
        (&["p99_us", "p99"][..], "p99", charts::ORANGE),
        (&["p999_us", "p999"][..], "p99.9", charts::RED),
    ] {
        let line: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|(x, s)| num(s, names).map(|v| (*x, v / 1e3)))
            .collect();
        if !line.is_empty() {
            let mut s = Series::new(label, color, line);
            s.dots = true;
            c.series.push(s);
        }
    }
    let matches: Vec<(f64, f64)> = pts
        .iter()
        .filter_map(|(x, s)| num(s, &["match_rate", "match"]).map(|m| (*x, m)))
        .collect();
    if !matches.is_empty() {
        let lo = matches.iter().map(|p| p.1).fold(1.0, f64::min);
        let floor = ((lo - 0.001).max(0.0) * 1000.0).floor() / 1000.0;
        c.y2 = Some(("match rate".into(), floor, 1.0));
        let mut s = Series::new("match rate", charts::BLUE, matches);
        s.secondary = true;
        s.dots = true;
        c.series.push(s);
    }
    let cfg = r.value.get("config");
    if let Some(slo) = cfg.and_then(|c| num(c, &["SLO_P99_MS"])) {
        c.hlines
            .push((format!("SLO p99 {slo} ms"), slo, charts::ORANGE));
    }
    if let Some(rate) = num(cap, &["rate"]) {
        c.marks.push(Mark {
            x: rate,
            color: charts::PURPLE,
            bold: true,
        });
        c.mark_legend
            .push((format!("capacity {rate:.0} req/s"), charts::PURPLE));
    }
    c.y_log = wide(&c);
    let n = steps.len();
    let bound = cap.get("lower_bound").and_then(Value::as_bool) == Some(true);
    let caption =
        format!(
        "Each of the {n} steps held one offered rate: latency percentiles (left) and match rate \
         (right) against it; the purple line is the capacity found{}.",
        if bound { " (a lower bound: the generator was the limit)" } else { "" }
    );
    Some(Figure::Chart {
        chart: Box::new(c),
        caption,
    })
}
