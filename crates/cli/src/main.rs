//! `capture`: the command-line front door of the capture engine.
//!
//! ```text
//! capture demo                                   # emulator + real plugin + example rules, no credentials
//! capture run --config capture.toml REQUEST.json # one capture, report as JSON on stdout
//! capture status --config capture.toml --platform bigcommerce ORDER  # what became of a capture
//! capture reconcile --config capture.toml       # resolve captures left unknown by a crash
//! capture rules check|test|eval|backtest DIR     # for merchants writing rules
//! capture sandbox --port 8080                    # the Optty emulator alone, for your own tries
//! capture plugins inspect FILE                   # what a connector plugin declares, its sha256
//! capture plugins verify FILE [--fixtures DIR]   # the conformance kit: PASS/FAIL per check
//! ```
//!
//! Exit codes (also in the README):
//! 0 captured, 1 internal error, 2 usage error, 3 invalid request (never sent), 4 rejected by checks
//! or rules, 5 held, 6 failed (platform refused; do not retry), 7 failed retryable or outcome
//! unknown (read the platform's state before retrying), 8 pending, 9 configuration or plugin error,
//! 10 already captured (the platform had captured it before; nothing new was captured).
//! `capture plugins verify` exits 0 when every check passes and 1 when one fails.

mod demo;
mod plugins_cmd;
mod rules_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use capture_core::{FailureKind, Outcome, Timestamp};
use capture_engine::{CaptureError, EngineBuilder, EngineConfig, EngineError, FixedClock};
use clap::{Parser, Subcommand};

/// Exit codes, documented in the README.
pub(crate) mod exit {
    pub(crate) const CAPTURED: u8 = 0;
    pub(crate) const INTERNAL: u8 = 1;
    pub(crate) const INVALID_REQUEST: u8 = 3;
    pub(crate) const REJECTED: u8 = 4;
    pub(crate) const HELD: u8 = 5;
    pub(crate) const FAILED: u8 = 6;
    pub(crate) const FAILED_RETRYABLE: u8 = 7;
    pub(crate) const PENDING: u8 = 8;
    pub(crate) const CONFIG: u8 = 9;
    pub(crate) const ALREADY_CAPTURED: u8 = 10;
    pub(crate) const AMOUNT_MISMATCH: u8 = 11;
    pub(crate) const BLOCKED: u8 = 12;
}

#[derive(Parser)]
#[command(name = "capture", version, about = "Capture the authorized payments of e-commerce orders")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the Optty emulator on loopback, load the real plugin from disk, apply the example
    /// rules and capture a handful of sample orders. Needs no credentials and no network.
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
    /// Run the Optty emulator in the foreground (loopback only) until interrupted.
    Sandbox {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
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

/// The exit code for an outcome.
/// The exit code of a capture report: the outcome's, except that a capture whose amount is not
/// the one asked for has its own code.
pub(crate) fn report_exit_code(report: &capture_core::CaptureReport) -> u8 {
    if report.anomalies.iter().any(|a| a.code == "amount_mismatch") {
        return exit::AMOUNT_MISMATCH;
    }
    exit_code(&report.outcome)
}

pub(crate) fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Captured { .. } => exit::CAPTURED,
        Outcome::Pending { .. } => exit::PENDING,
        Outcome::AlreadyCaptured { .. } => exit::ALREADY_CAPTURED,
        Outcome::Rejected { .. } => exit::REJECTED,
        Outcome::Held { .. } => exit::HELD,
        Outcome::Failed { retryable: true, .. }
        | Outcome::Failed { kind: FailureKind::OutcomeUnknown, .. } => exit::FAILED_RETRYABLE,
        Outcome::Failed { .. } => exit::FAILED,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
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
            Command::Sandbox { port } => sandbox(port).await,
            Command::Plugins { command } => plugins_cmd::run(command).await,
            Command::Rules { command } => rules_cmd::run(command),
        }
    });
    match code {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(classify(&e))
        }
    }
}

/// Maps an error to its exit code: configuration and plugin problems are 9, bad requests 3.
fn classify(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<EngineError>().is_some()
        || e.downcast_ref::<capture_engine::ConfigError>().is_some()
        || e.downcast_ref::<capture_engine::PluginLoadError>().is_some()
        || e.downcast_ref::<capture_engine::RulesError>().is_some()
        || e.downcast_ref::<capture_engine::store::StoreError>().is_some()
    {
        exit::CONFIG
    } else if e.downcast_ref::<CaptureError>().is_some()
        || e.downcast_ref::<capture_core::RequestError>().is_some()
    {
        exit::INVALID_REQUEST
    } else {
        exit::INTERNAL
    }
}

async fn run(config: &Path, now: Option<&str>, request: &Path) -> anyhow::Result<u8> {
    let body = if request == Path::new("-") {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)
            .context("reading the request from standard input")?;
        s
    } else {
        std::fs::read(request).with_context(|| format!("reading request {}", request.display()))?
    };
    // The request is validated before anything is loaded, so a bad request never costs a plugin load.
    let req = capture_core::CaptureRequest::from_json(&body)?;
    let engine = engine(config, now).await?;
    // On start: resolve what an earlier run left unresolved (a crash, a lost answer).
    match engine.reconcile(None).await {
        Err(e) => eprintln!("warning: reconciling on start failed: {e}"),
        Ok(done) => {
            for r in done.iter().filter(|r| r.before != r.after) {
                eprintln!(
                    "reconciled {} ({} {}): {} -> {}",
                    r.attempt,
                    r.platform,
                    r.order_id,
                    r.before.as_str(),
                    r.after.as_str()
                );
            }
        }
    }
    let report = engine.capture(req).await?;
    let code = report_exit_code(&report);
    print!("{}", report.to_json());
    if code != exit::CAPTURED {
        eprintln!("capture {}: {}", report.outcome.status(), demo::describe(&report.outcome));
    }
    Ok(code)
}

/// Builds the engine a configuration file describes, with its capture ledger.
async fn engine(config: &Path, now: Option<&str>) -> anyhow::Result<capture_engine::Engine> {
    let cfg = EngineConfig::load(config)?;
    let mut builder = EngineBuilder::from_config(&cfg)?;
    if let Some(now) = now {
        let t = Timestamp::parse_rfc3339(now).map_err(|e| anyhow::anyhow!("--now: {e}"))?;
        builder = builder.clock(Arc::new(FixedClock(t)));
    }
    let base = config.parent().unwrap_or(Path::new("."));
    let store = capture_engine::store::open(&cfg.store_target(base)?).await?;
    builder = builder.store(store).merchant(cfg.merchant.clone().unwrap_or_else(|| "default".to_owned()));
    // Test hook for the crash suite: abort at a step of the state machine.
    if let Ok(at) = std::env::var("CAPTURE_CRASH_AT") {
        let point = capture_engine::CrashPoint::parse(&at)
            .ok_or_else(|| anyhow::anyhow!("CAPTURE_CRASH_AT: `{at}` is not reserved, sent or answered"))?;
        builder = builder.crash_at(Some(point));
    }
    Ok(builder.build()?)
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
        println!(
            "{} {} {}: {} -> {}: {}",
            r.attempt,
            r.platform,
            r.order_id,
            r.before.as_str(),
            r.after.as_str(),
            r.detail
        );
        if r.blocking {
            blocking += 1;
            match r.frees_at {
                Some(t) => println!(
                    "  order {} stays blocked: its attempt is held until {}; reconcile again then",
                    r.order_id,
                    t.to_rfc3339()
                ),
                None => println!(
                    "  order {} stays blocked: the attempt could not be resolved; reconcile again later or check the platform",
                    r.order_id
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
    Ok(if blocking == 0 { exit::CAPTURED } else { exit::BLOCKED })
}

async fn status(config: &Path, now: Option<&str>, q: &capture_engine::StatusQuery) -> anyhow::Result<u8> {
    let report = engine(config, now).await?.status(q).await?;
    print!("{}", report.to_json());
    Ok(exit_code(&report.outcome))
}

async fn sandbox(port: u16) -> anyhow::Result<u8> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let emulator = capture_sandbox::OpttyEmulator::start_on(addr, capture_sandbox::OpttyConfig::demo())
        .await
        .with_context(|| format!("binding the Optty emulator to {addr}"))?;
    println!("Optty emulator listening on {}", emulator.base_url());
    println!("bearer token: sandbox-optty-token (demo data; control API under /_sandbox)");
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    emulator.shutdown().await;
    Ok(exit::CAPTURED)
}
