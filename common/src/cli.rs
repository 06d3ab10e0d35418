//! Binary-edge helpers: environment configuration parsed once with clap and validated once
//! (invalid values exit 2 with one line naming the variable, the value and what is accepted),
//! the HTTP endpoint options both binaries share, logging, the shutdown signal, process facts.

use clap::{Args, CommandFactory, Parser};
use std::net::{IpAddr, SocketAddr};
use tokio_util::sync::CancellationToken;

/// Exit status for invalid configuration.
pub const EXIT_CONFIG: i32 = 2;
/// Exit status when the broker cannot be reached or refuses us at start-up.
pub const EXIT_CONNECT: i32 = 3;

/// A configuration error: which variable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            var,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A configuration that passed its checks. Only [`Validate::validate`] makes one, so a function
/// that takes a `Valid<C>` can never be handed an unchecked configuration. Read-only: it
/// dereferences to the configuration it holds.
#[derive(Clone, Debug)]
pub struct Valid<C>(C);

impl<C> Valid<C> {
    /// The checked configuration, given back for changes (which then need checking again).
    pub fn into_inner(self) -> C {
        self.0
    }
}

impl<C> std::ops::Deref for Valid<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.0
    }
}

/// A configuration with checks clap cannot express (ranges, combinations, files).
pub trait Validate: Sized {
    /// Every check, naming the variable of the first that fails.
    fn check(&self) -> Result<(), ConfigError>;

    /// Checks and wraps: the only way to a [`Valid`].
    fn validate(self) -> Result<Valid<Self>, ConfigError> {
        self.check()?;
        Ok(Valid(self))
    }
}

/// Where the HTTP endpoints (`/metrics`, `/stats`, `/health`, `/ready`) listen; both binaries
/// flatten it with their own default port.
#[derive(Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpOptions<const DEFAULT_PORT: u16> {
    /// Port of the HTTP endpoints (/metrics, /stats, /health, /ready); 0 = any free port
    #[arg(
        long,
        env = "METRICS_PORT",
        default_value_t = DEFAULT_PORT,
        value_name = "METRICS_PORT"
    )]
    pub metrics_port: u16,
    /// Address the HTTP endpoints bind to
    #[arg(
        long,
        env = "METRICS_ADDR",
        default_value = "0.0.0.0",
        value_name = "METRICS_ADDR"
    )]
    pub metrics_addr: IpAddr,
}

impl<const P: u16> HttpOptions<P> {
    /// The socket address to bind.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.metrics_addr, self.metrics_port)
    }

    /// Settings for reports, typed.
    pub fn describe(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("METRICS_PORT", self.metrics_port.into()),
            ("METRICS_ADDR", self.metrics_addr.to_string().into()),
        ]
    }
}

/// Parses `T` from the environment and arguments. `--help`/`--version` print and exit 0;
/// any invalid value prints one line naming the variable (see [`parse_error_line`]) and exits 2.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    std::process::exit(0)
                }
                _ => {
                    eprintln!("error: {}", parse_error_line::<T>(&e));
                    std::process::exit(EXIT_CONFIG)
                }
            }
        }
    }
}

/// One line for a clap error, in the words of the environment: `invalid VIRTUAL_CLIENTS: 'abc'
/// is not accepted: invalid digit found in string (expected a whole number)`, `invalid MODE:
/// 'bogus' is not accepted (accepted: health, sleep, cpu)`. Errors that concern no single
/// argument keep clap's first line.
pub fn parse_error_line<T: CommandFactory>(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let ctx = |k: ContextKind| e.get(k);
    let invalid_arg = match ctx(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let value = match ctx(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let var = invalid_arg.as_deref().and_then(|spec| env_of::<T>(spec));
    match (var, value) {
        (Some(var), Some(value)) => {
            let mut line = format!("invalid {var}: '{value}' is not accepted");
            if let Some(ContextValue::Strings(valid)) = ctx(ContextKind::ValidValue) {
                line.push_str(&format!(" (accepted: {})", valid.join(", ")));
            } else if let Some(src) = std::error::Error::source(e) {
                let why = src.to_string();
                line.push_str(&format!(": {why}"));
                if let Some(hint) = accepted_hint(&why) {
                    line.push_str(&format!(" ({hint})"));
                }
            }
            line
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid configuration")
                .trim();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        }
    }
}

/// The environment variable of the argument clap names as `--flag <VALUE>` (or `--flag`).
fn env_of<T: CommandFactory>(spec: &str) -> Option<String> {
    let long = spec
        .split_whitespace()
        .next()?
        .trim_start_matches("--")
        .split('=')
        .next()?;
    let cmd = T::command();
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
    Some(arg.get_env()?.to_string_lossy().into_owned())
}

/// What a value of the failing type looks like, from the parser's message.
fn accepted_hint(why: &str) -> Option<&'static str> {
    if why.contains("digit") || why.contains("empty string") || why.contains("too large") {
        Some("expected a whole number")
    } else if why.contains("float") {
        Some("expected a number")
    } else if why.contains("IP address") {
        Some("expected an IP address such as 0.0.0.0 or ::1")
    } else {
        None
    }
}

/// Prints a semantic configuration error as one line and exits 2.
pub fn config_exit(e: &ConfigError) -> ! {
    eprintln!("error: {e}");
    std::process::exit(EXIT_CONFIG)
}

/// Whether stderr takes ANSI colour: only a terminal does, and `NO_COLOR` (any non-empty value)
/// turns it off there too; redirected logs stay plain text.
pub fn stderr_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logging to stderr, `RUST_LOG` or `info`; coloured only on a terminal ([`stderr_colour`]).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_colour())
        .with_target(false)
        .try_init();
}

/// A token cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// The machine's host name (default instance id).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Resident set size of this process in bytes (Linux), 0 where unknown.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Open-file limit of this process (soft), if known.
pub fn open_file_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
}

/// Topic names must be valid UTF-8 without wildcards or NUL; used for ids that go into topics.
pub fn check_topic_segment(var: &'static str, s: &str) -> Result<(), ConfigError> {
    if s.is_empty() || s.contains(['+', '#', '/', '\0']) || s.len() > 128 {
        return Err(ConfigError::new(
            var,
            format!("'{s}' must be 1-128 characters without '/', '+', '#'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[derive(Copy, Clone, Debug, ValueEnum)]
    enum Mode {
        Health,
        Sleep,
    }

    #[derive(Parser, Debug)]
    struct T {
        #[arg(long, env = "T_CLIENTS", default_value_t = 1)]
        clients: u32,
        #[arg(long, env = "T_MODE", value_enum, default_value = "health")]
        mode: Mode,
        #[arg(long, env = "T_FLAG", default_value_t = false, action = clap::ArgAction::Set)]
        flag: bool,
        #[arg(long, env = "T_QOS", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        qos: u8,
        #[command(flatten)]
        http: HttpOptions<8123>,
    }

    fn line(args: &[&str]) -> String {
        let e = T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .expect_err("invalid");
        parse_error_line::<T>(&e)
    }

    #[test]
    fn errors_name_the_variable_the_value_and_what_is_accepted() {
        let l = line(&["--clients=abc"]);
        assert!(
            l.starts_with("invalid T_CLIENTS: 'abc' is not accepted"),
            "{l}"
        );
        assert!(l.contains("whole number"), "{l}");
        assert!(!l.contains("--clients"), "{l}");
        let l = line(&["--mode=bogus"]);
        assert_eq!(
            l,
            "invalid T_MODE: 'bogus' is not accepted (accepted: health, sleep)"
        );
        let l = line(&["--flag=maybe"]);
        assert_eq!(
            l,
            "invalid T_FLAG: 'maybe' is not accepted (accepted: true, false)"
        );
        let l = line(&["--qos=2"]);
        assert!(
            l.starts_with("invalid T_QOS: '2' is not accepted: 2 is not in 0..=1"),
            "{l}"
        );
        let l = line(&["--metrics-addr=x"]);
        assert!(l.starts_with("invalid METRICS_ADDR: 'x'"), "{l}");
        assert!(l.contains("IP address"), "{l}");
        assert!(!l.contains('\n'), "{l}");
    }

    #[test]
    fn http_options_take_the_binary_default_port() {
        let t = T::try_parse_from(["t"]).expect("defaults");
        assert_eq!(t.http.metrics_port, 8123);
        assert_eq!(t.http.socket().to_string(), "0.0.0.0:8123");
    }

    struct Even(u32);
    impl Validate for Even {
        fn check(&self) -> Result<(), ConfigError> {
            if self.0.is_multiple_of(2) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    "EVEN",
                    format!("'{}' must be even", self.0),
                ))
            }
        }
    }

    #[test]
    fn only_checked_configurations_become_valid() {
        assert_eq!(Even(2).validate().map(|v| v.0 .0).ok(), Some(2));
        let e = Even(3).validate().map(|_| ()).unwrap_err();
        assert_eq!(e.to_string(), "invalid EVEN: '3' must be even");
    }
}
