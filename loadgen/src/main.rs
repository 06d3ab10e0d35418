//! loadgen binary: parse and check the environment, run the scenario, print and write the
//! report, and map errors to exit codes (2 configuration, 3 broker unreachable or refusing, 99
//! a THRESHOLDS condition failed).

use loadgen::capacity::thresholds::EXIT_THRESHOLDS;
use loadgen::config::{Config, Scenario};
use rr_common::cli::{self, Validate};
use tokio::runtime::{Builder, Runtime};

/// rr, pub and capacity runs on one thread (tokio's current-thread scheduler) unless
/// TOKIO_WORKER_THREADS asks for a multi-threaded runtime: the lanes and connections hand each
/// other work all the time, and on another thread every hand-off is a wake-up (a context switch,
/// expensive on these machines), while one thread keeps up with the broker (benchmarks/README.md,
/// "What moves the numbers"). Fan-out (many WebSocket connections) uses every core.
fn runtime(cfg: &Config) -> std::io::Result<Runtime> {
    if cfg.scenario != Scenario::Fanout && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread().enable_all().build()
    }
}

fn main() {
    // `loadgen report|merge|compare ...`: the report tools, not a load run
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = loadgen::reporting::cli::dispatch(&args) {
        std::process::exit(code);
    }
    let cfg = match cli::parse_or_exit::<Config>().validate() {
        Ok(cfg) => cfg,
        Err(e) => cli::config_exit(&e),
    };
    let rt = match runtime(&cfg) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        cli::init_logging();
        let shutdown = cli::shutdown_on_signals();
        match loadgen::run(&cfg, shutdown).await {
            Ok(report) => {
                print!("{}", report.text());
                if let Some(path) = &cfg.report_json {
                    if let Err(e) = report.write_json(path) {
                        eprintln!("error: cannot write REPORT_JSON {}: {e}", path.display());
                        return 1;
                    }
                    eprintln!("report written to {}", path.display());
                }
                if let Some(path) = &cfg.report_html {
                    let base = cfg.report_baseline.as_deref();
                    if let Err(e) = loadgen::reporting::run::write_html(&report, path, base) {
                        eprintln!("error: cannot write REPORT_HTML: {e}");
                        return 1;
                    }
                    eprintln!("HTML report written to {}", path.display());
                }
                if report.sections.thresholds_failed() {
                    eprintln!("a threshold failed (THRESHOLDS): exit status {EXIT_THRESHOLDS}");
                    return EXIT_THRESHOLDS;
                }
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                e.exit_code()
            }
        }
    });
    std::process::exit(code);
}
