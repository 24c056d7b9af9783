//! `capture plugins inspect FILE` and `capture plugins verify FILE`: what a connector plugin
//! declares, and the conformance kit that tells its author what to fix.
//!
//! `verify` runs the conformance kit (the `capture-conformance` crate, which documents every
//! check) with each check in a child process: this binary re-executed as the hidden
//! `capture plugins run-check`, so a plugin that aborts or crashes fails that check instead of
//! ending the run. Exit status: 0 when no check fails, 20 (check failed) otherwise.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use capture_conformance::{Options, Report};
use capture_engine::Plugin;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::Exit;

/// Prints a line on standard output; a closed pipe (`| head`) is not an error worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// The `plugins` subcommands.
#[derive(Subcommand)]
pub(crate) enum PluginsCommand {
    /// Print what a plugin file declares: ABI version, manifest, capabilities, allowed hosts,
    /// credentials, whether it reads capture status, and the file's SHA-256 (for a pin).
    Inspect {
        /// The plugin file (a shared library).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance kit on a plugin: golden fixtures and robustness checks, with a
    /// PASS/FAIL report. Exit status 0 when every check passes, 20 otherwise.
    Verify {
        /// The plugin file (a shared library).
        file: PathBuf,
        /// The folder of golden fixtures (default: plugins/<manifest id>/fixtures, else fixtures/,
        /// in the current folder, if one exists; none: the golden check is skipped).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// How many threads call the plugin at once in the `threads` check.
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// How many build + parse calls each thread makes.
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// Seconds one check may run before it is stopped and fails.
        #[arg(long, default_value_t = 120)]
        check_timeout: u64,
        /// Run every check in this process instead of one child process per check (faster; a
        /// plugin that crashes then ends the run).
        #[arg(long)]
        in_process: bool,
        /// Print the report as JSON (the checks' structured results).
        #[arg(long)]
        json: bool,
    },
    /// Write a ready connector folder NAME (Cargo manifest, src/lib.rs from the template, golden
    /// fixtures, a conformance test) that builds on its own and passes `cargo test` and verify.
    New {
        /// The connector id (lower-case letters, digits, `-`, `_`).
        name: String,
        /// Where to create the folder (default: the current folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The capture-connector-api folder to depend on (default: the one this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run one conformance check and print its result as one JSON line (what `verify` runs in
    /// each child process).
    #[command(hide = true)]
    RunCheck {
        /// The plugin file.
        file: PathBuf,
        /// The check's name.
        #[arg(long)]
        check: String,
        /// As for verify.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// As for verify.
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// As for verify.
        #[arg(long, default_value_t = 100)]
        calls: usize,
    },
}

/// Runs a `plugins` subcommand and returns the exit code.
pub(crate) async fn run(command: PluginsCommand) -> anyhow::Result<u8> {
    match command {
        PluginsCommand::Inspect { file, json } => inspect(&file, json),
        PluginsCommand::Verify { file, fixtures, threads, calls, check_timeout, in_process, json } => {
            let options = Options {
                fixtures,
                threads: threads.max(1),
                calls: calls.max(1),
                check_timeout: Duration::from_secs(check_timeout.max(1)),
            };
            verify(&file, &options, in_process, json).await
        }
        PluginsCommand::New { name, dir, sdk } => {
            crate::plugins_new::run(&name, dir.as_deref(), sdk.as_deref())
        }
        PluginsCommand::RunCheck { file, check, fixtures, threads, calls } => {
            let options = Options { fixtures, threads, calls, ..Options::default() };
            let result = capture_conformance::run_check(&file, &check, &options).await;
            say!("{}", serde_json::to_string(&result)?);
            Ok(Exit::Ok.code())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// inspect

fn inspect(file: &Path, as_json: bool) -> anyhow::Result<u8> {
    let plugin = Plugin::load(file)?;
    let sha256 = capture_engine::sha256_file(file).with_context(|| format!("hashing {}", file.display()))?;
    let m = plugin.manifest();
    let (major, minor) = plugin.abi_version();
    // Health: one probe call (an empty object, which a connector refuses) under the call deadline;
    // a plugin that does not answer in time is marked unhealthy.
    let probe = plugin.call_raw(capture_engine::PluginFunction::BuildCapture, b"{}");
    let health = match plugin.unhealthy() {
        None => format!(
            "healthy (a probe call {} within the {} ms deadline)",
            if probe.is_ok() { "answered" } else { "was refused, as expected," },
            plugin.call_timeout().as_millis()
        ),
        Some(reason) => format!("unhealthy: {reason}"),
    };
    if as_json {
        let doc = json!({
            "file": file.display().to_string(),
            "sha256": sha256,
            "health": health,
            "abi": { "major": major, "minor": minor, "descriptor_size": plugin.descriptor_size() },
            "status_query_supported": plugin.supports_status(),
            "manifest": m,
        });
        say!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    let list = |items: &[String]| if items.is_empty() { "(none)".to_owned() } else { items.join(", ") };
    let caps = &m.capabilities;
    let mut out = String::new();
    let _ = writeln!(out, "file           {}", file.display());
    let _ = writeln!(out, "sha256         {sha256}");
    let _ = writeln!(
        out,
        "abi            {major}.{minor} (descriptor {} bytes; this engine loads {}.0 to {}.{})",
        plugin.descriptor_size(),
        capture_engine::connector_api::abi::ABI_MAJOR,
        capture_engine::connector_api::abi::ABI_MAJOR,
        capture_engine::connector_api::abi::ABI_MINOR
    );
    let _ = writeln!(out, "connector      {} ({}), version {}", m.id, m.name, m.version);
    let _ = writeln!(out, "message schema {}", m.schema);
    let _ = writeln!(out, "health         {health}");
    let status = match (plugin.supports_status(), plugin.abi_version().1) {
        (true, _) => "supported (build_status, parse_status)".to_owned(),
        (false, 0) => "not supported (ABI 1.0 descriptor)".to_owned(),
        (false, _) => "not supported (capabilities.status_query is false)".to_owned(),
    };
    let _ = writeln!(out, "status query   {status}");
    let caps_json = serde_json::to_value(caps)?;
    let mut first = true;
    if let Value::Object(fields) = caps_json {
        for (k, v) in fields {
            let label = if first { "capabilities" } else { "" };
            first = false;
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let _ = writeln!(out, "{label:<14} {k}: {v}");
        }
    }
    let _ = writeln!(out, "allowed hosts  {}", list(&m.allowed_hosts));
    let _ = writeln!(out, "credentials    {}", list(&m.credentials));
    let _ = writeln!(out, "settings       {}", list(&m.settings));
    let _ = writeln!(
        out,
        "pin it with    plugins = [{{ path = \"{}\", sha256 = \"{sha256}\" }}]",
        file.display()
    );
    say!("{}", out.trim_end());
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// verify

/// Runs the kit (each check in a child process unless `in_process`) and prints the report.
async fn verify(file: &Path, options: &Options, in_process: bool, as_json: bool) -> anyhow::Result<u8> {
    let report: Report = if in_process {
        capture_conformance::verify_in_process(file, options).await
    } else {
        let exe = std::env::current_exe().context("finding this executable to run the checks")?;
        let file = file.to_path_buf();
        let opts = options.clone();
        tokio::task::spawn_blocking(move || {
            capture_conformance::verify_isolated(&file, &opts, |check| {
                let mut cmd = std::process::Command::new(&exe);
                cmd.args(["plugins", "run-check"]).arg(&file).args(["--check", check]);
                if let Some(dir) = &opts.fixtures {
                    cmd.arg("--fixtures").arg(dir);
                }
                cmd.args(["--threads", &opts.threads.to_string(), "--calls", &opts.calls.to_string()]);
                cmd
            })
        })
        .await
        .context("running the checks")?
    };
    if as_json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!("{}", report.render().trim_end());
    }
    Ok(if report.passed() { Exit::Ok } else { Exit::CheckFailed }.code())
}
