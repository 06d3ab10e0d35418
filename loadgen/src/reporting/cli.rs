//! The report subcommands of the loadgen binary: `loadgen report` (HTML from a JSON report),
//! `loadgen merge` (one exact report from several instances' files or live `/report` URLs)
//! and `loadgen compare` (two runs side by side, `--fail-on` rules). Exit status: 0 done,
//! 2 bad arguments or unusable input (one line saying which), 1 an output cannot be written,
//! 99 a `--fail-on` rule failed.

use super::compare::{self, Comparison, RuleResult};
use super::html::{self, Baseline};
use super::load::{LoadedReport, ReportError};
use super::merge;
use super::{charts, figures};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status when a regression rule fails (as for THRESHOLDS).
pub const EXIT_REGRESSION: i32 = 99;
const EXIT_ARGS: i32 = 2;

/// The subcommand names, as `loadgen --help` lists them.
pub const HELP: &str = "\
Subcommands (reports; `loadgen SUBCOMMAND --help` for each):
  loadgen report REPORT.json -o REPORT.html [--charts DIR]   the self-contained HTML report (and each chart as SVG)
  loadgen merge FILE|URL... -o merged.json      one exact report of several instances (and its HTML)
  loadgen compare BASE.json NEW.json [--fail-on \"p99>+10%,match<-0.001\"]   exit 99 on a regression";

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "loadgen report tools", after_help = HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Writes the self-contained HTML report of a JSON report (REPORT_JSON, merge output).
    Report {
        /// The JSON report.
        input: PathBuf,
        /// Where to write the HTML (default: the input with .html).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// A baseline report to compare with; the comparison is embedded in the page.
        #[arg(long, env = "REPORT_BASELINE")]
        baseline: Option<PathBuf>,
        /// Regression rules against the baseline (syntax: see `loadgen compare --help`); a
        /// failed rule is marked in the page and exits 99.
        #[arg(long, requires = "baseline")]
        fail_on: Option<String>,
        /// Also write each chart as DIR/<chart id>.svg (e.g. chart-capacity.svg: rate against
        /// p50/p99/match of a capacity search).
        #[arg(long, value_name = "DIR")]
        charts: Option<PathBuf>,
    },
    /// Merges several instances' reports into one: books summed, histograms merged exactly,
    /// timelines lined up on wall-clock seconds, one row per instance; writes JSON and HTML.
    Merge {
        /// Report files, or http://HOST:PORT URLs of running loadgens (path /report assumed).
        #[arg(required = true)]
        sources: Vec<String>,
        /// The merged JSON report.
        #[arg(short, long, default_value = "merged.json")]
        output: PathBuf,
        /// The merged HTML report (default: the output with .html).
        #[arg(long)]
        html: Option<PathBuf>,
        /// Seconds to wait for each URL.
        #[arg(long, default_value_t = 10)]
        timeout_s: u64,
    },
    /// Compares two runs side by side; `--fail-on` turns regressions into exit status 99.
    #[command(after_help = FAIL_ON_HELP)]
    Compare {
        /// The baseline report (file or URL).
        base: String,
        /// The new report (file or URL).
        new: String,
        /// Comma-separated rules, e.g. "p99>+10%,match<-0.001" (see below).
        #[arg(long)]
        fail_on: Option<String>,
        /// Also write the new run's HTML report with the comparison embedded.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

const FAIL_ON_HELP: &str = "\
--fail-on rules, comma-separated, each METRIC OP LIMIT:
  OP `>` fails when the change (new - base) is above LIMIT; `<` when it is below LIMIT.
  LIMIT is relative with % (p99>+10%: new p99 more than 10% above base; from a base of 0 any
  increase is +inf%), or absolute in the metric's unit: latencies take us, ms or s (p99>+2ms),
  counts are counts (timeouts>+0), rates per second (achieved<-100), match a fraction
  (match<-0.001).
  METRIC: offered achieved matched_rate match p50 p90 p99 p999 max mean lag_p99 sent matched
          timeouts late skipped publish_errors reconnects
Exit status: 0 no rule failed, 99 a rule failed, 2 bad arguments or unusable reports.";

/// Runs a subcommand if `args[1]` names one; `None` when the arguments are not a subcommand
/// (the binary then runs a load scenario).
pub fn dispatch(args: &[OsString]) -> Option<i32> {
    let first = args.get(1)?.to_str()?;
    if !matches!(first, "report" | "merge" | "compare") {
        return None;
    }
    Some(match Cli::try_parse_from(args) {
        Ok(cli) => run(cli.cmd),
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    })
}

fn fail(e: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("error: {e}");
    code
}

fn run(cmd: Cmd) -> i32 {
    let result = match cmd {
        Cmd::Report {
            input,
            output,
            baseline,
            fail_on,
            charts,
        } => report(&input, output, baseline.as_deref(), fail_on.as_deref())
            .and_then(|code| write_charts(&input, charts.as_deref()).map(|()| code)),
        Cmd::Merge {
            sources,
            output,
            html,
            timeout_s,
        } => merge_cmd(&sources, &output, html, Duration::from_secs(timeout_s)),
        Cmd::Compare {
            base,
            new,
            fail_on,
            html,
        } => compare_cmd(&base, &new, fail_on.as_deref(), html),
    };
    result.unwrap_or_else(|(msg, code)| fail(msg, code))
}

type CmdResult = Result<i32, (String, i32)>;

fn bad(e: impl std::fmt::Display) -> (String, i32) {
    (e.to_string(), EXIT_ARGS)
}

fn with_ext(p: &Path, ext: &str) -> PathBuf {
    p.with_extension(ext)
}

fn write(path: &Path, text: &str) -> Result<(), (String, i32)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| (format!("cannot create {}: {e}", dir.display()), 1))?;
    }
    std::fs::write(path, text).map_err(|e| (format!("cannot write {}: {e}", path.display()), 1))
}

fn rules(fail_on: Option<&str>) -> Result<Vec<compare::Rule>, (String, i32)> {
    fail_on
        .map(compare::parse_rules)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| bad(format!("invalid --fail-on {e}")))
}

fn verdict(results: &[RuleResult]) -> i32 {
    if results.iter().any(|r| r.failed) {
        EXIT_REGRESSION
    } else {
        0
    }
}

fn report(
    input: &Path,
    output: Option<PathBuf>,
    baseline: Option<&Path>,
    fail_on: Option<&str>,
) -> CmdResult {
    let rules = rules(fail_on)?;
    let r = LoadedReport::from_file(input).map_err(bad)?;
    let out = output.unwrap_or_else(|| with_ext(input, "html"));
    let (page, code) = page_with_baseline(&r, baseline, &rules).map_err(bad)?;
    write(&out, &page)?;
    eprintln!("HTML report written to {}", out.display());
    Ok(code)
}

/// Writes every chart of the report at `input` as `dir/<chart id>.svg` (nothing without `dir`).
fn write_charts(input: &Path, dir: Option<&Path>) -> Result<(), (String, i32)> {
    let Some(dir) = dir else { return Ok(()) };
    let r = LoadedReport::from_file(input).map_err(bad)?;
    for f in figures::figures(&r) {
        if let figures::Figure::Chart { chart, .. } = f {
            let svg = charts::svg(&chart).map_err(|e| (e, 1))?;
            let path = dir.join(format!("{}.svg", chart.id));
            write(&path, &svg)?;
            eprintln!("chart written to {}", path.display());
        }
    }
    Ok(())
}

/// The HTML page of a report, with the comparison against `baseline` embedded when given, and
/// the exit status its rules imply (0 or 99). Used by `loadgen report` and REPORT_BASELINE.
pub fn page_with_baseline(
    r: &LoadedReport,
    baseline: Option<&Path>,
    rules: &[compare::Rule],
) -> Result<(String, i32), ReportError> {
    let Some(path) = baseline else {
        return Ok((html::render(r, None), 0));
    };
    let base = LoadedReport::from_file(path)?;
    let cmp = Comparison::of(&base, r);
    let results = compare::check(&cmp, rules);
    let page = html::render(
        r,
        Some(&Baseline {
            comparison: &cmp,
            rules: &results,
        }),
    );
    Ok((page, verdict(&results)))
}

/// Reads a report from a file or an http:// URL (a running loadgen's `/report`).
pub fn load_source(source: &str, timeout: Duration) -> Result<LoadedReport, ReportError> {
    let Some(rest) = source.strip_prefix("http://") else {
        if source.contains("://") {
            return Err(ReportError::Io {
                source_name: source.into(),
                error: "only files and http:// URLs are read".into(),
            });
        }
        return LoadedReport::from_file(Path::new(source));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) if i + 1 < rest.len() => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], "/report"),
        None => (rest, "/report"),
    };
    let io = |error: String| ReportError::Io {
        source_name: source.into(),
        error,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io(e.to_string()))?;
    let (status, body) = rt
        .block_on(rr_common::http::get(hostport, path, timeout))
        .map_err(|e| io(e.to_string()))?;
    if status != 200 {
        return Err(io(format!("HTTP status {status}")));
    }
    LoadedReport::from_text(source, &body)
}

fn merge_cmd(
    sources: &[String],
    output: &Path,
    html_out: Option<PathBuf>,
    timeout: Duration,
) -> CmdResult {
    let reports = sources
        .iter()
        .map(|s| load_source(s, timeout))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let merged = merge::merge(&reports).map_err(bad)?;
    let text = serde_json::to_string_pretty(&Value::Object(merged.clone())).map_err(bad)? + "\n";
    write(output, &text)?;
    let loaded = LoadedReport::from_value(&output.display().to_string(), Value::Object(merged))
        .map_err(bad)?;
    let html_path = html_out.unwrap_or_else(|| with_ext(output, "html"));
    write(&html_path, &html::render(&loaded, None))?;
    print!("{}", summary_text(&loaded, reports.len()));
    eprintln!(
        "merged report written to {} and {}",
        output.display(),
        html_path.display()
    );
    Ok(0)
}

fn summary_text(m: &LoadedReport, n: usize) -> String {
    let l = m.value.get("latency_us").cloned().unwrap_or(Value::Null);
    format!(
        "merged {n} reports ({}): sent {} {} {} {} {:.5}\n\
         latency (us): p50 {} p90 {} p99 {} p99.9 {} max {}\n",
        m.scenario(),
        m.u64("sent"),
        if m.is_fanout() { "received" } else { "matched" },
        m.resolved_ok(),
        m.ratio_name(),
        m.ratio(),
        l["p50"],
        l["p90"],
        l["p99"],
        l["p999"],
        l["max"],
    )
}

fn compare_cmd(
    base: &str,
    new: &str,
    fail_on: Option<&str>,
    html_out: Option<PathBuf>,
) -> CmdResult {
    let rules = rules(fail_on)?;
    let timeout = Duration::from_secs(10);
    let b = load_source(base, timeout).map_err(bad)?;
    let n = load_source(new, timeout).map_err(bad)?;
    let cmp = Comparison::of(&b, &n);
    let results = compare::check(&cmp, &rules);
    print!("{}", cmp.text());
    if !results.is_empty() {
        print!("\n{}", compare::rules_text(&results));
    }
    if let Some(path) = html_out {
        let page = html::render(
            &n,
            Some(&Baseline {
                comparison: &cmp,
                rules: &results,
            }),
        );
        write(&path, &page)?;
        eprintln!("HTML report written to {}", path.display());
    }
    let code = verdict(&results);
    if code == EXIT_REGRESSION {
        eprintln!(
            "regression: {} of {} rules failed",
            results.iter().filter(|r| r.failed).count(),
            results.len()
        );
    }
    Ok(code)
}
