//! `capture`: the command-line front door of the capture engine.
//!
//! ```text
//! capture demo                                   # emulator + real plugin + example rules, no credentials
//! capture run --config capture.toml REQUEST.json # one capture, report as JSON on stdout
//! capture status --config capture.toml --platform bigcommerce ORDER  # what became of a capture
//! capture reconcile --config capture.toml       # resolve captures left unknown by a crash
//! capture rules check|test|eval|backtest DIR     # for merchants writing rules
//! capture sandbox --platform all --port 0        # the four emulators, for your own tries
//! capture plugins inspect FILE                   # what a connector plugin declares, its sha256
//! capture plugins verify FILE [--fixtures DIR]   # the conformance kit: PASS/FAIL per check
//! ```
//!
//! Exit codes: one table for every command, [`Exit`] (printed by `capture --help`, copied in
//! the README; a test keeps the two equal).

mod batch;
mod demo;
mod plugins_cmd;
mod plugins_new;
mod rules_cmd;
mod sandbox_cmd;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use capture_core::{FailureKind, Outcome, Timestamp};
use capture_engine::{CaptureError, EngineBuilder, EngineConfig, EngineError, FixedClock};
use clap::{Parser, Subcommand};

/// Defines [`Exit`] and its table from one list: each row is one line, `Name = code: "meaning"`.
macro_rules! exit_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal : $meaning:literal,)*) => {
        /// Every exit code of every `capture` command. The README's table and `capture --help`
        /// are generated from these rows (a test compares them); add a code by adding a row.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Exit {
            $($(#[$doc])* $name,)*
        }

        impl Exit {
            /// Every code, in the table's order.
            pub(crate) const ALL: &[Exit] = &[$(Exit::$name,)*];

            /// The process exit status.
            pub(crate) fn code(self) -> u8 {
                match self { $(Exit::$name => $code,)* }
            }

            /// What the code means, as the table says it.
            pub(crate) fn meaning(self) -> &'static str {
                match self { $(Exit::$name => $meaning,)* }
            }
        }
    };
}

exit_codes! {
    Ok = 0: "success: captured (`run`); every check passed (`plugins verify`, `rules check`, `rules test`); the command did what it was asked",
    Internal = 1: "internal or environment error, not the input's fault (a port in use, an I/O error, a bug)",
    Usage = 2: "usage error: a bad command line, a missing or unreadable input file (request, case, orders file, rule folder), a bad `--now`",
    InvalidRequest = 3: "invalid request: malformed JSON or an invalid field; nothing was sent",
    Rejected = 4: "rejected by the built-in checks or a rule; nothing was sent",
    Held = 5: "held by a hook or rule; nothing was sent",
    Failed = 6: "failed: the platform refused (do not retry as is)",
    FailedRetryable = 7: "failed but retryable, or outcome unknown (read the platform's state before retrying)",
    Pending = 8: "pending at the platform",
    Config = 9: "configuration or plugin load error (missing file, wrong ABI, missing credential)",
    AlreadyCaptured = 10: "already captured: the platform had captured it before; nothing new was captured",
    AmountMismatch = 11: "captured, but the platform reports another amount than the one asked for (`amount_mismatch` in the report's `anomalies`; the ledger counts the larger figure)",
    Blocked = 12: "`reconcile`: an order stays blocked by an attempt it could not resolve yet (each is printed with when it frees up)",
    // 13-19: reserved for new capture outcomes.
    CheckFailed = 20: "a check failed: `plugins verify`, `rules check` or `rules test` found a problem",
    NotSent = 21: "refused before anything was sent: the connector refused the call or failed (error, panic, invalid output); the platform never saw it",
}

/// The table as `capture --help` prints it.
fn exit_table() -> String {
    let mut out = String::from("Exit codes (the same for every command):\n");
    for e in Exit::ALL {
        out.push_str(&format!("  {:>2}  {}\n", e.code(), e.meaning()));
    }
    out.push_str("  (13-19 are reserved for new capture outcomes)");
    out
}

#[derive(Parser)]
#[command(
    name = "capture",
    version,
    about = "Capture the authorized payments of e-commerce orders",
    after_help = exit_table()
)]
struct Cli {
    /// Log lines (traces of captures, filtered by RUST_LOG, e.g. `RUST_LOG=capture_engine=info`;
    /// default `warn`) on standard error: `pretty` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

/// Installs the log subscriber: RUST_LOG (default `warn`), to standard error.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
    if let Err(e) = installed {
        eprintln!("warning: no log output: {e}");
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start the four platform emulators on loopback, load the real plugins from disk, apply the
    /// example rules and capture sample orders on every platform. Needs no credentials and no
    /// network.
    Demo {
        /// Folder holding the connector plugins (default: the folder of this executable).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// The rule pack to apply.
        #[arg(long, default_value = "rules/demo")]
        rules: PathBuf,
        /// Print every report as JSON after the summary.
        #[arg(long)]
        reports: bool,
    },
    /// Capture one request and print its report as JSON.
    Run {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Fix the clock (RFC 3339), for reproducible reports.
        #[arg(long)]
        now: Option<String>,
        /// The request (JSON file, or `-` for standard input).
        request: PathBuf,
    },
    /// Ask the platform what became of an order's captures (asynchronous captures, outcomes left
    /// unknown) and print the status report as JSON.
    Status {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The platform (connector id).
        #[arg(long)]
        platform: String,
        /// The order currency (ISO 4217).
        #[arg(long, default_value = "USD")]
        currency: String,
        /// A payment id to read (repeat for several; none: all of the order's).
        #[arg(long = "payment")]
        payments: Vec<String>,
        /// The platform's capture id, if the capture returned one.
        #[arg(long)]
        capture_id: Option<String>,
        /// The capture's idempotency key.
        #[arg(long)]
        key: Option<String>,
        /// Fix the clock (RFC 3339), for reproducible reports.
        #[arg(long)]
        now: Option<String>,
        /// The platform's order id.
        order: String,
    },
    /// Resolve every capture left sent, pending or unknown in the ledger (after a crash, a
    /// timeout or a dropped connection) by reading the platforms' state.
    Reconcile {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Take over attempts whose lease was taken at least this long ago (seconds), even if it
        /// has not expired (the holder is known to be dead). Safe: the old holder is fenced off
        /// and a "not found" still counts only after the in-flight window. Default: only
        /// expired leases.
        #[arg(long)]
        abandoned_after: Option<u64>,
        /// Fix the clock (RFC 3339).
        #[arg(long)]
        now: Option<String>,
    },
    /// Serve the engine over HTTP (JSON) for hosts in any language, until SIGTERM: captures,
    /// recorded captures by key, status queries, reconcile, health, Prometheus metrics.
    Serve {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value_t = serve::default_listen())]
        listen: std::net::SocketAddr,
        /// Environment variable holding the API's bearer token.
        #[arg(long, default_value = "CAPTURE_SERVE_TOKEN")]
        token_env: String,
        /// Serve without a token (allowed only on a loopback address).
        #[arg(long)]
        insecure_no_auth: bool,
        /// Largest request body, in bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        max_body: usize,
        /// How long a client may take to send a request's headers, in milliseconds (a client
        /// that holds a connection open without finishing them is cut off).
        #[arg(long, default_value_t = 10_000)]
        header_timeout_ms: u64,
        /// How long a client may take to send a request body, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        body_timeout_ms: u64,
        /// How long to wait for a capture before answering 504 `in_progress` (the capture goes
        /// on and is recorded), in milliseconds.
        #[arg(long, default_value_t = 60_000)]
        capture_timeout_ms: u64,
        /// Fix the clock (RFC 3339), for reproducible reports.
        #[arg(long)]
        now: Option<String>,
    },
    /// Capture every request of an NDJSON file (one request per line), several at once, within
    /// each platform's rate budget; resumable: run the same file again after a crash.
    Batch {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Captures running at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Write the reports (NDJSON, one per line) here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// On start (the engine's bounded reconcile-on-start policy), take over what an earlier
        /// run left sent or reserved if older than this (seconds). 0 when no other process
        /// shares the ledger (a rerun after a crash).
        #[arg(long, default_value_t = 60)]
        abandoned_after: u64,
        /// Progress: `auto` (a bar on a terminal, lines otherwise), `bar`, `lines` or `none`.
        #[arg(long, default_value = "auto")]
        progress: batch::Progress,
        /// Fix the clock (RFC 3339), for reproducible reports.
        #[arg(long)]
        now: Option<String>,
        /// The requests (NDJSON file, or `-` for standard input).
        requests: PathBuf,
    },
    /// Run platform emulators in the foreground (loopback only) until interrupted; prints each
    /// one's base URL and token, then `ready`. Control API: crates/sandbox/README.md.
    Sandbox {
        /// Which emulator (`all`: the four, on consecutive ports from --port).
        #[arg(long, value_enum, default_value = "optty")]
        platform: sandbox_cmd::Which,
        /// Port on 127.0.0.1 (0 picks a free one for each).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// A JSON file of orders to start with instead of the demo data (see crates/sandbox/README.md).
        #[arg(long)]
        orders: Option<PathBuf>,
    },
    /// Inspect a connector plugin file, or verify it against the conformance kit.
    Plugins {
        #[command(subcommand)]
        command: plugins_cmd::PluginsCommand,
    },
    /// Check, test, evaluate and backtest a folder of merchant rules (rules/README.md).
    Rules {
        #[command(subcommand)]
        command: rules_cmd::RulesCommand,
    },
}

/// The exit code of a capture report: the outcome's, except that a capture whose amount is not
/// the one asked for has its own code.
pub(crate) fn report_exit_code(report: &capture_core::CaptureReport) -> u8 {
    if report.anomalies.iter().any(|a| a.code == "amount_mismatch") {
        return Exit::AmountMismatch.code();
    }
    exit_code(&report.outcome, !report.exchanges.is_empty())
}

/// The exit code for an outcome; `sent` says whether any request reached the platform.
pub(crate) fn exit_code(outcome: &Outcome, sent: bool) -> u8 {
    match outcome {
        Outcome::Captured { .. } => Exit::Ok,
        Outcome::Pending { .. } => Exit::Pending,
        Outcome::AlreadyCaptured { .. } => Exit::AlreadyCaptured,
        Outcome::Rejected { .. } => Exit::Rejected,
        Outcome::Held { .. } => Exit::Held,
        Outcome::Failed { kind: FailureKind::Connector, .. } if !sent => Exit::NotSent,
        Outcome::Failed { retryable: true, .. }
        | Outcome::Failed { kind: FailureKind::OutcomeUnknown, .. } => Exit::FailedRetryable,
        Outcome::Failed { .. } => Exit::Failed,
    }
    .code()
}

/// A problem with the command's input (a file that cannot be read, a bad `--now`): exit 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A check that failed where the command cannot go on (a rule folder that does not load): exit 20.
#[derive(Debug)]
pub(crate) struct CheckError(pub(crate) String);

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckError {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Internal.code());
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Demo { plugins, rules, reports } => demo::run(plugins, &rules, reports).await,
            Command::Run { config, now, request } => run(&config, now.as_deref(), &request).await,
            Command::Status { config, platform, currency, payments, capture_id, key, now, order } => {
                let currency = capture_core::Currency::from_code(&currency).map_err(|e| {
                    capture_core::RequestError::Invalid { field: "--currency".into(), problem: e.to_string() }
                });
                match currency {
                    Ok(currency) => {
                        let q = capture_engine::StatusQuery {
                            platform,
                            order_id: order,
                            currency,
                            payment_ids: payments,
                            idempotency_key: key,
                            platform_capture_id: capture_id,
                        };
                        status(&config, now.as_deref(), &q).await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Command::Reconcile { config, abandoned_after, now } => {
                reconcile(&config, now.as_deref(), abandoned_after).await
            }
            Command::Sandbox { platform, port, orders } => {
                sandbox_cmd::run(platform, port, orders.as_deref()).await
            }
            Command::Serve {
                config,
                listen,
                token_env,
                insecure_no_auth,
                max_body,
                header_timeout_ms,
                body_timeout_ms,
                capture_timeout_ms,
                now,
            } => {
                let opts = serve::Options {
                    config,
                    listen,
                    token_env,
                    insecure_no_auth,
                    max_body,
                    header_timeout: std::time::Duration::from_millis(header_timeout_ms),
                    body_timeout: std::time::Duration::from_millis(body_timeout_ms),
                    capture_timeout: std::time::Duration::from_millis(capture_timeout_ms),
                };
                serve::run(opts, now.as_deref()).await
            }
            Command::Batch { config, concurrency, out, abandoned_after, progress, now, requests } => {
                let opts = batch::Options {
                    config,
                    concurrency,
                    out,
                    abandoned_after: std::time::Duration::from_secs(abandoned_after),
                    progress,
                    requests,
                };
                batch::run(opts, now.as_deref()).await
            }
            Command::Plugins { command } => plugins_cmd::run(command).await,
            Command::Rules { command } => rules_cmd::run(command),
        }
    });
    match code {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("error: {}", capture_core::text::escape(&format!("{e:#}")));
            ExitCode::from(classify(&e))
        }
    }
}

/// Maps an error to its exit code: usage problems 2, bad requests 3, configuration and plugin
/// problems 9, anything else 1.
fn classify(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<UsageError>().is_some() {
        Exit::Usage.code()
    } else if e.downcast_ref::<CheckError>().is_some() {
        Exit::CheckFailed.code()
    } else if e.downcast_ref::<EngineError>().is_some()
        || e.downcast_ref::<capture_engine::ConfigError>().is_some()
        || e.downcast_ref::<capture_engine::PluginLoadError>().is_some()
        || e.downcast_ref::<capture_engine::RulesError>().is_some()
        || e.downcast_ref::<capture_engine::store::StoreError>().is_some()
        || matches!(e.downcast_ref::<CaptureError>(), Some(CaptureError::MissingCredential { .. }))
    {
        Exit::Config.code()
    } else if e.downcast_ref::<CaptureError>().is_some()
        || e.downcast_ref::<capture_core::RequestError>().is_some()
    {
        Exit::InvalidRequest.code()
    } else {
        Exit::Internal.code()
    }
}

async fn run(config: &Path, now: Option<&str>, request: &Path) -> anyhow::Result<u8> {
    let body = if request == Path::new("-") {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)
            .map_err(|e| UsageError(format!("reading the request from standard input: {e}")))?;
        s
    } else {
        std::fs::read(request)
            .map_err(|e| UsageError(format!("reading request {}: {e}", request.display())))?
    };
    // The request is validated before anything is loaded, so a bad request never costs a plugin load.
    let req = capture_core::CaptureRequest::from_json(&body)?;
    let engine = engine(config, now).await?;
    reconcile_on_start(&engine, "capture run").await;
    let report = engine.capture(req).await?;
    let code = report_exit_code(&report);
    print!("{}", report.to_json());
    if code != Exit::Ok.code() {
        eprintln!("capture {}: {}", report.outcome.status(), demo::describe(&report.outcome));
    }
    Ok(code)
}

/// Builds the engine a configuration file describes, with its capture ledger.
pub(crate) async fn engine(config: &Path, now: Option<&str>) -> anyhow::Result<capture_engine::Engine> {
    let cfg = EngineConfig::load(config)?;
    Ok(builder(&cfg, now).await?.build()?)
}

/// The builder of the engine a loaded configuration describes (its ledger and merchant
/// included, the engine's default reconcile-on-start policy), with `--now` and the crash
/// suite's test hook applied.
pub(crate) async fn builder(cfg: &EngineConfig, now: Option<&str>) -> anyhow::Result<EngineBuilder> {
    let mut builder = EngineBuilder::from_config(cfg).await?;
    if let Some(now) = now {
        let t = Timestamp::parse_rfc3339(now).map_err(|e| UsageError(format!("--now: {e}")))?;
        builder = builder.clock(Arc::new(FixedClock(t)));
    }
    // Test hook for the crash suite: abort at a step of the state machine.
    if let Ok(at) = std::env::var("CAPTURE_CRASH_AT") {
        let point = capture_engine::CrashPoint::parse(&at)
            .ok_or_else(|| anyhow::anyhow!("CAPTURE_CRASH_AT: `{at}` is not reserved, sent or answered"))?;
        builder = builder.crash_at(Some(point));
    }
    Ok(builder)
}

/// Runs the engine's reconcile-on-start policy ([`capture_engine::Engine::reconcile_on_start`])
/// and says on standard error what it changed, what it could not resolve, what its bound left
/// for later, and that it failed if it did: nothing of it goes unreported. The command goes on
/// either way (its own captures go through the ledger, which keeps them exactly-once).
pub(crate) async fn reconcile_on_start(engine: &capture_engine::Engine, who: &str) {
    let say = |line: String| eprintln!("{}", capture_core::text::escape(&line));
    match engine.reconcile_on_start().await {
        Err(e) => say(format!(
            "warning: {who}: reconciling on start failed: {e}; what the ledger holds unresolved stays for `capture reconcile`"
        )),
        Ok(done) => {
            for r in &done.examined {
                if r.before != r.after {
                    say(format!(
                        "{who}: reconciled {} ({} {}): {} -> {}",
                        r.attempt,
                        r.platform,
                        r.order_id,
                        r.before.as_str(),
                        r.after.as_str()
                    ));
                }
                if r.blocking {
                    let what =
                        format!("{} ({} {}) stays {}", r.attempt, r.platform, r.order_id, r.after.as_str());
                    say(match r.frees_at {
                        // Another live process holds it: in flight there, not stuck.
                        Some(t) => format!("{who}: on start, {what}: held until {}", t.to_rfc3339()),
                        None => format!("warning: {who}: on start, {what}, not resolved: {}", r.detail),
                    });
                }
            }
            if done.left > 0 {
                let bound = match done.stopped_by {
                    Some(capture_engine::ReconcileBound::Duration) => "its time bound",
                    _ => "its bound on attempts",
                };
                say(format!(
                    "{who}: reconcile on start stopped at {bound} after {} attempt(s); {} more unresolved wait in the ledger for `capture reconcile`",
                    done.examined.len(),
                    done.left
                ));
            }
        }
    }
}

async fn reconcile(config: &Path, now: Option<&str>, abandoned_after: Option<u64>) -> anyhow::Result<u8> {
    let engine = engine(config, now).await?;
    let done = engine
        .reconcile(abandoned_after.map(std::time::Duration::from_secs))
        .await
        .map_err(|e| anyhow::anyhow!("reconcile: {e}"))?;
    let mut blocking = 0;
    let mut pending = 0;
    for r in &done {
        let line = format!(
            "{} {} {}: {} -> {}: {}",
            r.attempt,
            r.platform,
            r.order_id,
            r.before.as_str(),
            r.after.as_str(),
            r.detail
        );
        println!("{}", capture_core::text::escape(&line));
        if r.blocking {
            blocking += 1;
            match r.frees_at {
                Some(t) => println!(
                    "  order {} stays blocked: its attempt is held until {}; reconcile again then",
                    capture_core::text::escape(&r.order_id),
                    t.to_rfc3339()
                ),
                None => println!(
                    "  order {} stays blocked: the attempt could not be resolved; reconcile again later or check the platform",
                    capture_core::text::escape(&r.order_id)
                ),
            }
        } else if r.after == capture_engine::AttemptState::Pending {
            pending += 1;
        }
    }
    println!(
        "{} attempt(s) examined, {blocking} still block their order, {pending} pending at the platform",
        done.len()
    );
    Ok(if blocking == 0 { Exit::Ok } else { Exit::Blocked }.code())
}

async fn status(config: &Path, now: Option<&str>, q: &capture_engine::StatusQuery) -> anyhow::Result<u8> {
    let report = engine(config, now).await?.status(q).await?;
    print!("{}", report.to_json());
    Ok(exit_code(&report.outcome, !report.exchanges.is_empty()))
}
