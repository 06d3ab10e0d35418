//! worker binary: parse the environment, run until SIGINT/SIGTERM, map errors to exit codes.

use rr_common::cli::{self, Validate};

fn main() {
    // MQTT_BROKER is an alias of BROKER.
    if std::env::var_os("BROKER").is_none() {
        if let Some(b) = std::env::var_os("MQTT_BROKER") {
            std::env::set_var("BROKER", b);
        }
    }
    let cfg = match cli::parse_or_exit::<worker::config::Config>().validate() {
        Ok(cfg) => cfg,
        Err(e) => cli::config_exit(&e),
    };
    // One runtime thread unless TOKIO_WORKER_THREADS says otherwise: the worker's connections
    // are cheap, and a second thread mostly costs cross-thread wake-ups (measured in
    // benchmarks/README.md). Tokio's current-thread scheduler, which has no idle-worker
    // bookkeeping (its multi-threaded one with one worker wakes itself through its eventfd), except
    // with MODE=cpu: CPU_WORK runs in block_in_place, which hands the runtime to another thread,
    // so MODE=cpu still uses every core.
    let mut builder = if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        tokio::runtime::Builder::new_multi_thread()
    } else if cfg.mode == worker::config::Mode::Cpu {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(1);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    // COALESCE_US: each time the runtime's thread wakes, it may wait before it reads (see
    // worker::coalesce).
    let coalesce = (cfg.coalesce_us > 0).then(|| {
        // sleep the window, not the window plus the default 50 µs of timer slack
        if let Err(e) = nix::sys::prctl::set_timerslack(1_000) {
            tracing::debug!("timer slack stays at its default: {e}");
        }
        let c = std::sync::Arc::new(worker::coalesce::Coalesce::new(
            std::time::Duration::from_micros(cfg.coalesce_us),
        ));
        let hook = c.clone();
        builder.on_thread_unpark(move || hook.on_unpark());
        c
    });
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        cli::init_logging();
        let shutdown = cli::shutdown_on_signals();
        match worker::run(cfg, shutdown, coalesce).await {
            Ok(s) => {
                println!(
                    "worker done: received {} responded {} dropped {} invalid {} errors {} queued {}",
                    s.received, s.responded, s.dropped, s.invalid, s.errors, s.queue_depth + s.in_progress
                );
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
