//! The conformance kit for connector plugins, as a library: it loads a plugin the way the engine
//! does and runs checks that return structured results ([`CheckResult`]); `capture plugins
//! verify` only prints them.
//!
//! | check | what it asks of the plugin |
//! |---|---|
//! | `load` | the library loads: entry symbol, descriptor header, ABI version, functions, manifest |
//! | `panic-strategy` | a Rust plugin built with the SDK unwinds on panic (`panic = "abort"` would take the engine down with it); plugins not built with the SDK are skipped |
//! | `golden-fixtures` | every golden fixture of the folder (`--fixtures DIR`; default `plugins/<id>/fixtures`, else `fixtures/`; skipped when there is none) gives exactly the expected answer through the C ABI |
//! | `engine-request-checks` | what it builds for a loopback base URL passes the engine's own checks (origin, method, headers, declared credentials), run through a real engine whose transport sends nothing |
//! | `credentials-used` | every declared credential is used as a header's `secret` by some request it builds |
//! | `schema-mismatch` | a message with another `schema` version is refused with an error, not answered or crashed on |
//! | `garbage-input` | bytes that are not a valid message are refused with an error |
//! | `odd-answers` | unusual platform answers (empty, HTML, teapots, 5xx) are mapped to a valid result, never an error or a panic, and a non-2xx answer is never a capture |
//! | `captured-amount` | every `captured` answer it gives for a fixture's capture call captures exactly the amount the call asked for |
//! | `status-query` | a plugin that declares `status_query` answers `build_status` and `parse_status` (not `unsupported`); skipped when it declares none |
//! | `threads` | many threads calling build + parse at once get the answers one thread gets |
//!
//! [`verify_isolated`] runs each check in a child process (as clap-validator does): a plugin that
//! aborts, crashes or hangs fails that check, and the other checks still run. [`run_check`] is
//! what the child runs; [`verify_in_process`] runs them all in this process (a crash then ends it).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture_core::{Currency, Money};
use capture_engine::connector_api::{
    CallPayment, CaptureCall, CaptureResult, ConnectorError, HttpRequest, HttpResponse, Manifest, ParseCall,
    ResultStatus, SCHEMA_VERSION, StatusCall, StatusParseCall,
};
use capture_engine::{
    Engine, OutgoingRequest, PlatformSetup, Plugin, PluginCallError, PluginFunction, Secret, StatusQuery,
    Transport, TransportError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Every check, in the order they run.
pub const CHECKS: &[&str] = &[
    "load",
    "panic-strategy",
    "golden-fixtures",
    "engine-request-checks",
    "credentials-used",
    "schema-mismatch",
    "garbage-input",
    "odd-answers",
    "captured-amount",
    "status-query",
    "threads",
];

/// What became of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The plugin does what the check asks.
    Pass,
    /// It does not: see the details and the fix.
    Fail,
    /// The check does not apply (no fixtures, no status query, not built with the SDK).
    Skip,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    /// The check's name (one of [`CHECKS`]).
    pub name: String,
    /// Pass, fail or skip.
    pub verdict: Verdict,
    /// One line: what was checked, or what is wrong.
    pub summary: String,
    /// Each problem found (fixture names, calls, the differing fields).
    pub details: Vec<String>,
    /// How to fix it, for a failure.
    pub fix: Option<String>,
}

impl CheckResult {
    /// The check as `capture plugins verify` prints it: `PASS  name  summary`, the details, the fix.
    pub fn render(&self) -> String {
        let tag = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        };
        let mut out = format!("{tag}  {:<22} {}\n", self.name, self.summary);
        for d in &self.details {
            for (i, line) in d.lines().enumerate() {
                out.push_str(if i == 0 { "        - " } else { "          " });
                out.push_str(line);
                out.push('\n');
            }
        }
        if let Some(fix) = &self.fix {
            out.push_str(&format!("        fix: {fix}\n"));
        }
        out
    }
}

/// Everything a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The plugin file.
    pub file: String,
    /// One result per check that ran, in [`CHECKS`] order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// The checks that failed.
    pub fn failed(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| c.verdict == Verdict::Fail).collect()
    }

    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.failed().is_empty()
    }

    /// The whole report as `capture plugins verify` prints it, ending with the `result:` line.
    pub fn render(&self) -> String {
        let mut out = format!("capture plugins verify {}\n", self.file);
        for c in &self.checks {
            out.push_str(&c.render());
        }
        let failed: Vec<&str> = self.failed().iter().map(|c| c.name.as_str()).collect();
        let skipped = self.checks.iter().filter(|c| c.verdict == Verdict::Skip).count();
        let passed = self.checks.len() - failed.len() - skipped;
        if failed.is_empty() {
            out.push_str(&format!("\nresult: PASS ({passed} checks passed, {skipped} skipped)\n"));
        } else if self.checks.len() == 1 {
            out.push_str("\nresult: FAIL (1 check failed; nothing else can run until the plugin loads)\n");
        } else {
            out.push_str(&format!(
                "\nresult: FAIL ({} of {} checks failed: {}; {passed} passed, {skipped} skipped)\n",
                failed.len(),
                self.checks.len(),
                failed.join(", ")
            ));
        }
        out
    }
}

/// What a verification needs besides the plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The golden fixtures folder (`None`: `plugins/<id>/fixtures`, else `fixtures/`, in the
    /// current folder, if one exists).
    pub fixtures: Option<PathBuf>,
    /// Threads calling the plugin at once in the `threads` check.
    pub threads: usize,
    /// Build + parse calls per thread.
    pub calls: usize,
    /// How long one check may run in its child process before it is stopped and fails.
    pub check_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { fixtures: None, threads: 8, calls: 100, check_timeout: Duration::from_secs(120) }
    }
}

/// A check's internal form (static names and fixes).
#[derive(Debug)]
struct Check {
    name: &'static str,
    verdict: Verdict,
    summary: String,
    details: Vec<String>,
    fix: Option<&'static str>,
}

impl Check {
    fn pass(name: &'static str, summary: impl Into<String>) -> Check {
        Check { name, verdict: Verdict::Pass, summary: summary.into(), details: vec![], fix: None }
    }

    fn skip(name: &'static str, summary: impl Into<String>) -> Check {
        Check { name, verdict: Verdict::Skip, summary: summary.into(), details: vec![], fix: None }
    }

    fn fail(
        name: &'static str,
        summary: impl Into<String>,
        details: Vec<String>,
        fix: &'static str,
    ) -> Check {
        Check { name, verdict: Verdict::Fail, summary: summary.into(), details, fix: Some(fix) }
    }

    /// Pass when `problems` is empty, fail listing them otherwise.
    fn from_problems(
        name: &'static str,
        ok: impl Into<String>,
        failed: impl Into<String>,
        problems: Vec<String>,
        fix: &'static str,
    ) -> Check {
        if problems.is_empty() { Check::pass(name, ok) } else { Check::fail(name, failed, problems, fix) }
    }

    fn result(self) -> CheckResult {
        CheckResult {
            name: self.name.to_owned(),
            verdict: self.verdict,
            summary: self.summary,
            details: self.details,
            fix: self.fix.map(str::to_owned),
        }
    }
}

/// `n` and the noun, plural when `n` is not 1 (`1 request`, `3 requests`).
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

const LOAD_FIX: &str = "see \"The ABI\" in plugins/README.md; Rust plugins: `crate-type = [\"cdylib\"]` and \
     `export_connector!(YourType)`; C plugins: include capture_connector.h and export \
     `capture_connector_entry`";

/// Loads the plugin; a failure is the `load` check's result.
fn load(file: &Path) -> Result<(Arc<Plugin>, Check), Check> {
    match Plugin::load(file) {
        Ok(p) => {
            let plugin = Arc::new(p);
            let m = plugin.manifest().clone();
            let (major, minor) = plugin.abi_version();
            let check = Check::pass(
                "load",
                format!(
                    "ABI {major}.{minor}, connector `{}` {} (schema {}), status query {}",
                    m.id,
                    m.version,
                    m.schema,
                    if plugin.supports_status() { "supported" } else { "not supported" }
                ),
            );
            Ok((plugin, check))
        }
        Err(e) => Err(Check::fail("load", "the engine cannot load this file", vec![e.to_string()], LOAD_FIX)),
    }
}

/// Runs one check (by name, one of [`CHECKS`]) in this process. `load` is always run first; if
/// the plugin does not load, its failed `load` result is what comes back whatever was asked.
pub async fn run_check(file: &Path, name: &str, options: &Options) -> CheckResult {
    let (plugin, loaded) = match load(file) {
        Ok(p) => p,
        Err(failed) => return failed.result(),
    };
    let check = match name {
        "load" => loaded,
        "panic-strategy" => check_panic_strategy(file),
        other => {
            let m = plugin.manifest().clone();
            let golden = load_fixtures(options.fixtures.as_deref(), &m.id);
            let (fixture_check, docs) = match golden {
                Err(check) => (check, vec![]),
                Ok(None) => (
                    Check::skip(
                        "golden-fixtures",
                        format!(
                            "no folder plugins/{}/fixtures or fixtures/ here: pass --fixtures DIR to check golden \
                             request/answer pairs",
                            m.id
                        ),
                    ),
                    vec![],
                ),
                Ok(Some((dir, docs))) => (check_fixtures(&plugin, &dir, &docs), docs),
            };
            let samples = samples(&m, &docs);
            match other {
                "golden-fixtures" => fixture_check,
                "engine-request-checks" => check_engine_requests(&plugin, &samples).await,
                "credentials-used" => check_credentials(&plugin, &samples),
                "schema-mismatch" => check_schema_mismatch(&plugin, &samples),
                "garbage-input" => check_garbage(&plugin),
                "odd-answers" => check_odd_answers(&plugin, &samples),
                "captured-amount" => check_captured_amount(&plugin, &docs),
                "status-query" => check_status_query(&plugin, &samples),
                "threads" => check_threads(&plugin, &samples, options.threads.max(1), options.calls.max(1)),
                unknown => Check {
                    name: "load",
                    verdict: Verdict::Fail,
                    summary: format!("no check named `{unknown}` (checks: {})", CHECKS.join(", ")),
                    details: vec![],
                    fix: None,
                },
            }
        }
    };
    check.result()
}

/// Runs every check in this process. A plugin that aborts or crashes takes this process with it;
/// [`verify_isolated`] does not have that problem.
pub async fn verify_in_process(file: &Path, options: &Options) -> Report {
    let mut checks = Vec::new();
    for name in CHECKS {
        let result = run_check(file, name, options).await;
        let stop = result.name == "load" && result.verdict == Verdict::Fail;
        checks.push(result);
        if stop {
            break;
        }
    }
    Report { file: file.display().to_string(), checks }
}

/// What a child process that died tells about the plugin.
fn death(status: std::process::ExitStatus, stderr: &str) -> (String, Vec<String>) {
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal: Option<i32> = None;
    let summary = match signal {
        Some(6) => {
            "the plugin aborted the process (SIGABRT): a panic in a plugin built with panic = \"abort\", \
                    an abort(), or a panic while panicking"
                .to_owned()
        }
        Some(11) => "the plugin crashed the process (SIGSEGV): an invalid memory access".to_owned(),
        Some(7) => "the plugin crashed the process (SIGBUS): an invalid memory access".to_owned(),
        Some(9) => "the check was stopped (SIGKILL): it ran past its time limit".to_owned(),
        Some(n) => format!("the plugin killed the process with signal {n}"),
        None => format!("the check's process ended with {status} without a result"),
    };
    let tail: Vec<String> =
        stderr.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().map(str::to_owned).collect();
    (summary, if tail.is_empty() { vec![] } else { vec![tail.join("\n")] })
}

const CRASH_FIX: &str = "the engine cannot survive this either: build with `panic = \"unwind\"` (the default), \
     never call abort() or exit(), and check every pointer and buffer length you use";

/// Runs one check in a child process made by `child` (given the check's name; it must print the
/// check's [`CheckResult`] as one JSON line on standard output, as `run_check` returns it), and
/// turns a crash, an abort or a hang into that check's failure.
pub fn run_isolated(name: &str, mut child: Command, timeout: Duration) -> CheckResult {
    let failed = |summary: String, details: Vec<String>, fix: Option<&str>| CheckResult {
        name: name.to_owned(),
        verdict: Verdict::Fail,
        summary,
        details,
        fix: fix.map(str::to_owned),
    };
    child.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut process = match child.spawn() {
        Ok(p) => p,
        Err(e) => return failed(format!("the check's process could not start: {e}"), vec![], None),
    };
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                // A child killed mid-write leaves what it wrote; that is all there is to read.
                if std::io::Read::read_to_string(&mut p, &mut text).is_err() {
                    text.push_str("\n(output cut short)");
                }
            }
            text
        })
    };
    let out = drain(process.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err = drain(process.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let started = Instant::now();
    let status = loop {
        match process.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > timeout => {
                let killed = process.kill();
                let waited = process.wait();
                break Err(format!(
                    "the check ran past its time limit of {} s and was stopped ({})",
                    timeout.as_secs(),
                    match (killed, waited) {
                        (Ok(()), Ok(s)) => s.to_string(),
                        (Err(e), _) | (_, Err(e)) => e.to_string(),
                    }
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(format!("waiting for the check's process: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = match status {
        Ok(s) => s,
        Err(summary) => {
            return failed(
                summary,
                vec![],
                Some("a plugin call must return: no endless loop, no blocking IO"),
            );
        }
    };
    if status.success()
        && let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{'))
    {
        return match serde_json::from_str::<CheckResult>(line) {
            Ok(result) => result,
            Err(e) => failed(
                format!("the check's process printed an unreadable result: {e}"),
                vec![line.to_owned()],
                None,
            ),
        };
    }
    let (summary, details) = death(status, &stderr);
    failed(summary, details, Some(CRASH_FIX))
}

/// Runs every check, each in its own child process (see [`run_isolated`]); `child(name)` makes
/// the command for one check. Stops after `load` if the plugin does not load.
pub fn verify_isolated(file: &Path, options: &Options, child: impl Fn(&str) -> Command) -> Report {
    let mut checks = Vec::new();
    for name in CHECKS {
        let result = run_isolated(name, child(name), options.check_timeout);
        let stop = result.name == "load" && result.verdict == Verdict::Fail;
        checks.push(result);
        if stop {
            break;
        }
    }
    Report { file: file.display().to_string(), checks }
}

// ---------------------------------------------------------------------------------------------
// golden fixtures

/// A fixture file: its name and its JSON document.
struct Fixture {
    name: String,
    doc: Value,
}

/// The fixtures of `dir` (or of the default folder), `None` when there is no folder to read.
fn load_fixtures(dir: Option<&Path>, id: &str) -> Result<Option<(PathBuf, Vec<Fixture>)>, Check> {
    let fail = |summary: String, details: Vec<String>| Check {
        name: "golden-fixtures",
        verdict: Verdict::Fail,
        summary,
        details,
        fix: Some("every fixture is a JSON object of one of the shapes listed in plugins/README.md"),
    };
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            // In this repository, plugins/<id>/fixtures; in an author's own project, ./fixtures.
            let in_repo = Path::new("plugins").join(id).join("fixtures");
            let own = PathBuf::from("fixtures");
            match [in_repo, own].into_iter().find(|d| d.is_dir()) {
                Some(d) => d,
                None => return Ok(None),
            }
        }
    };
    let entries =
        std::fs::read_dir(&dir).map_err(|e| fail(format!("cannot read {}: {e}", dir.display()), vec![]))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(fail(format!("{} has no *.json fixture", dir.display()), vec![]));
    }
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        let name = f.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| format!("not JSON: {e}")))
        {
            Ok(doc) => docs.push(Fixture { name, doc }),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(fail(format!("unreadable fixtures in {}", dir.display()), problems));
    }
    Ok(Some((dir, docs)))
}

/// The shape of a fixture document, from its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    CaptureRequest,
    CaptureRefusal,
    CaptureAnswer,
    StatusRequest,
    StatusRefusal,
    StatusAnswer,
}

fn shape(doc: &Value) -> Option<Shape> {
    let keys: BTreeSet<&str> = doc.as_object()?.keys().map(String::as_str).collect();
    let is = |want: &[&str]| keys.len() == want.len() && want.iter().all(|k| keys.contains(k));
    [
        (&["call", "request"][..], Shape::CaptureRequest),
        (&["call", "error"][..], Shape::CaptureRefusal),
        (&["call", "response", "result"][..], Shape::CaptureAnswer),
        (&["status", "request"][..], Shape::StatusRequest),
        (&["status", "error"][..], Shape::StatusRefusal),
        (&["status", "response", "result"][..], Shape::StatusAnswer),
    ]
    .into_iter()
    .find(|(want, _)| is(want))
    .map(|(_, s)| s)
}

/// Reads the message `$name` of a fixture document as `$ty`.
macro_rules! field {
    ($doc:expr, $name:literal, $ty:ty) => {
        serde_json::from_value::<$ty>($doc[$name].clone())
            .map_err(|e| format!("`{}` is not a valid message: {e}", $name))
    };
}

/// A message as JSON, for comparisons (these messages always serialise).
macro_rules! json_of {
    ($value:expr) => {
        serde_json::to_value($value).unwrap_or(Value::Null)
    };
}

/// Where two JSON values differ (up to 6 paths), as `path: expected X, got Y` lines.
fn diff(expected: &Value, got: &Value) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        if out.len() >= 6 || a == b {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = Value::Null;
                    walk(&format!("{path}.{k}"), x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), p, q, out);
                }
            }
            _ => out.push(format!("`{}`: expected {a}, got {b}", if path.is_empty() { "." } else { path })),
        }
    }
    let mut out = Vec::new();
    walk("", expected, got, &mut out);
    out
}

/// Compares what the plugin answered with what the fixture expects (both as JSON).
fn compare(expected: Value, got: Result<Value, PluginCallError>) -> Result<(), String> {
    match got {
        Ok(got) if got == expected => Ok(()),
        Ok(got) => Err(diff(&expected, &got).join("\n")),
        Err(e) => Err(format!("expected {expected}\ngot the error: {e}")),
    }
}

fn compare_refusal(expected: &ConnectorError, got: Result<Value, PluginCallError>) -> Result<(), String> {
    match got {
        Err(PluginCallError::Refused(e)) if e == *expected => Ok(()),
        Err(PluginCallError::Refused(e)) => Err(format!(
            "expected the refusal {}: {}\ngot the refusal {}: {}",
            expected.code, expected.message, e.code, e.message
        )),
        Err(e) => Err(format!("expected the refusal {}: {}\ngot: {e}", expected.code, expected.message)),
        Ok(v) => {
            Err(format!("expected the refusal {}: {}\ngot an answer: {}", expected.code, expected.message, v))
        }
    }
}

fn run_fixture(plugin: &Plugin, doc: &Value) -> Result<(), String> {
    let needs_status = || {
        if plugin.supports_status() {
            Ok(())
        } else {
            Err("a status fixture, but the plugin has no status query (capabilities.status_query)".to_owned())
        }
    };
    match shape(doc) {
        Some(Shape::CaptureRequest) => {
            let call = field!(doc, "call", CaptureCall)?;
            let expected = json_of!(field!(doc, "request", HttpRequest)?);
            compare(expected, plugin.build_capture(&call).map(|r| json_of!(r)))
        }
        Some(Shape::CaptureRefusal) => {
            let call = field!(doc, "call", CaptureCall)?;
            compare_refusal(
                &field!(doc, "error", ConnectorError)?,
                plugin.build_capture(&call).map(|r| json_of!(r)),
            )
        }
        Some(Shape::CaptureAnswer) => {
            let call = field!(doc, "call", CaptureCall)?;
            let response = field!(doc, "response", HttpResponse)?;
            let expected = json_of!(field!(doc, "result", CaptureResult)?);
            let got = plugin.parse_capture(&ParseCall {
                schema: SCHEMA_VERSION,
                call: call.clone(),
                response: response.clone(),
            });
            compare(expected.clone(), got.map(|r| json_of!(r)))?;
            if plugin.uses_struct_messages() {
                // The engine's path for a 1.3 plugin: the same answer through the struct messages.
                let through = plugin
                    .build_capture_checked(&call, &[])
                    .and_then(|built| plugin.parse_built(built.into_parts().2, &response));
                compare(expected, through.map(|r| json_of!(r)))
                    .map_err(|e| format!("through the ABI 1.3 struct messages: {e}"))?;
            }
            Ok(())
        }
        Some(Shape::StatusRequest) => {
            needs_status()?;
            let call = field!(doc, "status", StatusCall)?;
            let expected = json_of!(field!(doc, "request", HttpRequest)?);
            compare(expected, plugin.build_status(&call).map(|r| json_of!(r)))
        }
        Some(Shape::StatusRefusal) => {
            needs_status()?;
            let call = field!(doc, "status", StatusCall)?;
            compare_refusal(
                &field!(doc, "error", ConnectorError)?,
                plugin.build_status(&call).map(|r| json_of!(r)),
            )
        }
        Some(Shape::StatusAnswer) => {
            needs_status()?;
            let status = field!(doc, "status", StatusCall)?;
            let response = field!(doc, "response", HttpResponse)?;
            let expected = json_of!(field!(doc, "result", CaptureResult)?);
            let got = plugin.parse_status(&StatusParseCall { schema: SCHEMA_VERSION, status, response });
            compare(expected, got.map(|r| json_of!(r)))
        }
        None => {
            let keys: Vec<&str> =
                doc.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            Err(format!("unknown fixture shape with keys {keys:?}"))
        }
    }
}

fn check_fixtures(plugin: &Plugin, dir: &Path, docs: &[Fixture]) -> Check {
    let mut problems = Vec::new();
    for f in docs {
        if let Err(p) = run_fixture(plugin, &f.doc) {
            problems.push(format!("{}:\n{p}", f.name));
        }
    }
    let total = docs.len();
    Check::from_problems(
        "golden-fixtures",
        format!("{total} fixtures in {} give the expected answers", dir.display()),
        format!("{} of {total} fixtures in {} differ", problems.len(), dir.display()),
        problems,
        "make the connector give the fixture's answer (or correct the fixture if the platform's \
         documentation says otherwise)",
    )
}

// ---------------------------------------------------------------------------------------------
// the sample calls every robustness check uses

struct Samples {
    /// Capture calls the plugin should build: the fixtures' (shape call + request), then a
    /// generic one made from the manifest.
    captures: Vec<(String, CaptureCall)>,
    /// Status calls of the fixtures (shape status + request).
    statuses: Vec<(String, StatusCall)>,
}

impl Samples {
    /// The first capture call (there is always the generic one).
    fn first(&self) -> Option<&CaptureCall> {
        self.captures.first().map(|(_, c)| c)
    }
}

/// A call any connector should accept: one payment, a full capture of 10 in USD (or JPY for a
/// connector without decimals), every declared setting set.
fn generic_call(m: &Manifest) -> CaptureCall {
    let (currency, exponent, amount) =
        if m.capabilities.max_currency_exponent >= 2 { ("USD", 2, "10.00") } else { ("JPY", 0, "10") };
    CaptureCall {
        schema: SCHEMA_VERSION,
        base_url: "http://127.0.0.1:9".into(),
        settings: m.settings.iter().map(|s| (s.clone(), "verify".to_owned())).collect(),
        order_id: "1001".into(),
        currency: currency.into(),
        currency_exponent: exponent,
        amount: amount.into(),
        full: true,
        order_amount: amount.into(),
        surcharge: if exponent == 2 { "0.00".into() } else { "0".into() },
        payments: vec![CallPayment {
            id: "pay-1001".into(),
            amount: amount.into(),
            authorized: amount.into(),
            method: Some("card".into()),
        }],
        idempotency_key: "verify-1001-capture-1".into(),
        description: None,
        shipping: None,
    }
}

fn samples(m: &Manifest, docs: &[Fixture]) -> Samples {
    let mut captures = Vec::new();
    let mut statuses = Vec::new();
    for f in docs {
        match shape(&f.doc) {
            Some(Shape::CaptureRequest) => {
                if let Ok(call) = field!(f.doc, "call", CaptureCall) {
                    captures.push((f.name.clone(), call));
                }
            }
            Some(Shape::StatusRequest) => {
                if let Ok(call) = field!(f.doc, "status", StatusCall) {
                    statuses.push((f.name.clone(), call));
                }
            }
            _ => {}
        }
    }
    captures.push(("a generic full capture".to_owned(), generic_call(m)));
    Samples { captures, statuses }
}

// ---------------------------------------------------------------------------------------------
// engine-request-checks

/// A transport that sends nothing: the engine's checks run before it, which is all this needs.
struct NoNetwork;

impl Transport for NoNetwork {
    fn send<'a, 'b>(
        &'a self,
        _request: OutgoingRequest,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async { Err(TransportError::Connect("capture plugins verify sends nothing".into())) })
    }
}

/// The loopback base URL the checks configure (nothing is ever sent to it).
const LOOPBACK: &str = "http://127.0.0.1:9";

fn engine_for(plugin: &Arc<Plugin>, settings: &BTreeMap<String, String>) -> anyhow::Result<Engine> {
    let m = plugin.manifest();
    let credentials = m.credentials.iter().map(|c| (c.clone(), Secret::new("verify-secret"))).collect();
    let engine = Engine::builder()
        .without_ledger()
        .plugin(plugin.clone())?
        .transport(Arc::new(NoNetwork))
        .platform(
            &m.id,
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: LOOPBACK.into(),
                timeout: Duration::from_secs(2),
                settings: settings.clone(),
                credentials,
            },
        )
        .build()?;
    Ok(engine)
}

/// The capture request (the engine's input) that makes the engine send `call` to the connector.
fn request_for(call: &CaptureCall, platform: &str) -> Value {
    json!({
        "platform": platform,
        "idempotency_key": call.idempotency_key,
        "amount": if call.full { "full".to_owned() } else { call.amount.clone() },
        "payments": if call.full {
            vec![]
        } else {
            call.payments.iter().map(|p| json!({ "payment_id": p.id, "amount": p.amount })).collect::<Vec<_>>()
        },
        "description": call.description,
        "shipping": call.shipping.as_ref().map(|s| json!({
            "company": s.company, "method": s.method, "tracking_number": s.tracking_number
        })),
        "order": {
            "id": call.order_id,
            "currency": call.currency,
            "amount": call.order_amount,
            "surcharge": call.surcharge,
            "payments": call.payments.iter().map(|p| json!({
                "id": p.id, "amount": p.authorized, "method": p.method, "partial_capture": true
            })).collect::<Vec<_>>(),
        },
    })
}

/// What the engine's step for the connector's build says: `Ok(true)` accepted, `Ok(false)` the
/// connector refused the call (not a request problem), `Err` the request or output was refused.
fn build_step(steps: &[capture_core::Step], name: &str) -> Option<Result<bool, String>> {
    let step = steps.iter().find(|s| s.name == name)?;
    let detail = step.detail.clone().unwrap_or_default();
    Some(match step.verdict.as_str() {
        "ok" => Ok(true),
        _ if detail.starts_with("connector refused:") => Ok(false),
        _ => Err(detail),
    })
}

async fn check_engine_requests(plugin: &Arc<Plugin>, samples: &Samples) -> Check {
    let id = plugin.manifest().id.clone();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut accepted = 0;
    for (name, call) in &samples.captures {
        let report = async {
            let engine = engine_for(plugin, &call.settings)?;
            let req = capture_core::CaptureRequest::from_json(request_for(call, &id).to_string().as_bytes())?;
            anyhow::Ok(engine.capture(req).await?)
        }
        .await;
        match report {
            Err(e) => notes.push(format!("{name}: could not be turned into a capture request: {e:#}")),
            Ok(report) => match build_step(&report.steps, &format!("{id}.build_capture")) {
                Some(Ok(true)) => accepted += 1,
                Some(Ok(false)) => notes.push(format!("{name}: the connector refused the call")),
                Some(Err(problem)) => problems.push(format!("{name}: {problem}")),
                None => notes.push(format!(
                    "{name}: the engine refused it before the connector ({})",
                    report.outcome.status()
                )),
            },
        }
    }
    for (name, call) in &samples.statuses {
        if !plugin.supports_status() {
            break;
        }
        let report = async {
            let engine = engine_for(plugin, &call.settings)?;
            let currency = Currency::from_code(&call.currency)?;
            let q = StatusQuery {
                platform: id.clone(),
                order_id: call.order_id.clone(),
                currency,
                payment_ids: call.payment_ids.clone(),
                idempotency_key: call.idempotency_key.clone(),
                platform_capture_id: call.platform_capture_id.clone(),
            };
            anyhow::Ok(engine.status(&q).await?)
        }
        .await;
        match report {
            Err(e) => notes.push(format!("{name}: could not be turned into a status query: {e:#}")),
            Ok(report) => match build_step(&report.steps, &format!("{id}.build_status")) {
                Some(Ok(true)) => accepted += 1,
                Some(Ok(false)) => notes.push(format!("{name}: the connector refused the status query")),
                Some(Err(problem)) => problems.push(format!("{name}: {problem}")),
                None => notes.push(format!("{name}: the engine did not call the connector")),
            },
        }
    }
    if problems.is_empty() && accepted == 0 {
        return Check {
            name: "engine-request-checks",
            verdict: Verdict::Fail,
            summary: "no sample call produced a request to check".into(),
            details: notes,
            fix: Some(
                "add a golden fixture {\"call\", \"request\"} whose call your connector accepts, or accept \
                 the generic call (a full capture of one payment of 10.00 USD, order id 1001)",
            ),
        };
    }
    Check::from_problems(
        "engine-request-checks",
        format!("{} built for base URL {LOOPBACK} pass the engine's checks", count(accepted, "request")),
        format!("{} refused by the engine's checks", count(problems.len(), "request")),
        problems,
        "build URLs from call.base_url (same scheme, host and port), use GET/POST/PUT/PATCH/DELETE, \
         header names of letters, digits, `-` and `_`, no CR/LF in values, and only credentials the \
         manifest declares",
    )
}

// ---------------------------------------------------------------------------------------------
// credentials-used

fn check_credentials(plugin: &Plugin, samples: &Samples) -> Check {
    let mut used = BTreeSet::new();
    let mut built = 0;
    let requests = samples
        .captures
        .iter()
        .map(|(_, c)| plugin.build_capture(&with_base(c)))
        .chain(samples.statuses.iter().map(|(_, s)| plugin.build_status(&with_status_base(s))));
    for r in requests.flatten() {
        built += 1;
        used.extend(r.headers.into_iter().filter_map(|h| h.secret));
    }
    let declared = &plugin.manifest().credentials;
    if built == 0 {
        return Check::skip("credentials-used", "no request could be built to look at");
    }
    let mut problems: Vec<String> = declared
        .iter()
        .filter(|c| !used.contains(*c))
        .map(|c| format!("credential `{c}` is declared, but no request uses it as a header's `secret`"))
        .collect();
    problems.extend(
        used.iter()
            .filter(|u| !declared.contains(u))
            .map(|u| format!("a request asks for credential `{u}`, which the manifest does not declare")),
    );
    Check::from_problems(
        "credentials-used",
        format!(
            "{} use every declared credential ({}) as a secret",
            count(built, "request"),
            declared.join(", ")
        ),
        "the manifest's credentials and the requests' secrets disagree".to_owned(),
        problems,
        "declare exactly the credentials the requests use (Header { secret: Some(\"name\") }): the \
         engine makes the operator configure every declared one",
    )
}

fn with_base(call: &CaptureCall) -> CaptureCall {
    CaptureCall { base_url: LOOPBACK.into(), ..call.clone() }
}

fn with_status_base(call: &StatusCall) -> StatusCall {
    StatusCall { base_url: LOOPBACK.into(), ..call.clone() }
}

// ---------------------------------------------------------------------------------------------
// schema-mismatch and garbage-input

/// What a raw call did with input it must refuse: `None` when it refused it properly.
fn misjudged(result: Result<Value, PluginCallError>) -> Option<String> {
    match result {
        Err(PluginCallError::Refused(_)) => None,
        Err(PluginCallError::Unsupported(_)) => None,
        Ok(v) => Some(format!("answered as if it were valid: {}", excerpt(&v.to_string()))),
        Err(e) => Some(format!("did not refuse it cleanly: {e}")),
    }
}

fn excerpt(s: &str) -> String {
    let head: String = s.chars().take(100).collect();
    if head.len() < s.len() { format!("{head}...") } else { head }
}

fn check_schema_mismatch(plugin: &Plugin, samples: &Samples) -> Check {
    let Some(call) = samples.first() else {
        return Check::skip("schema-mismatch", "no sample call");
    };
    let other = SCHEMA_VERSION + 98;
    let mut cases: Vec<(&str, PluginFunction, Value)> = Vec::new();
    let mut c = serde_json::to_value(with_base(call)).unwrap_or(Value::Null);
    c["schema"] = json!(other);
    cases.push(("build_capture", PluginFunction::BuildCapture, c));
    let p = json!({
        "schema": other,
        "call": with_base(call),
        "response": { "status": 200, "headers": [], "body": "{}" },
    });
    cases.push(("parse_capture", PluginFunction::ParseCapture, p));
    if plugin.supports_status() {
        let status = samples.statuses.first().map(|(_, s)| with_status_base(s));
        if let Some(s) = status {
            let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
            v["schema"] = json!(other);
            cases.push(("build_status", PluginFunction::BuildStatus, v));
            let p = json!({ "schema": other, "status": s, "response": { "status": 200, "headers": [], "body": "{}" } });
            cases.push(("parse_status", PluginFunction::ParseStatus, p));
        }
    }
    let problems: Vec<String> = cases
        .iter()
        .filter_map(|(name, f, input)| {
            misjudged(plugin.call_raw(*f, input.to_string().as_bytes()))
                .map(|p| format!("{name} got a message with \"schema\": {other} and {p}"))
        })
        .collect();
    Check::from_problems(
        "schema-mismatch",
        format!("messages with \"schema\": {other} are refused by {} functions", cases.len()),
        "a message of another schema version is not refused".to_owned(),
        problems,
        "refuse a message whose `schema` is not 1 with STATUS_ERROR and the code `schema_mismatch` \
         (export_connector! does it for you)",
    )
}

fn check_garbage(plugin: &Plugin) -> Check {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty input", vec![]),
        ("`not json`", b"not json".to_vec()),
        ("a truncated object", br#"{"schema":1,"order_id":"#.to_vec()),
        ("bytes that are not UTF-8", vec![0xff, 0xfe, b'{', b'}']),
        ("`null`", b"null".to_vec()),
        ("`[]`", b"[]".to_vec()),
        ("`{}`", b"{}".to_vec()),
        ("`{\"schema\":1}`", br#"{"schema":1}"#.to_vec()),
        ("10000 nested arrays", deep.into_bytes()),
    ];
    let mut functions = vec![
        ("build_capture", PluginFunction::BuildCapture),
        ("parse_capture", PluginFunction::ParseCapture),
    ];
    if plugin.supports_status() {
        functions.push(("build_status", PluginFunction::BuildStatus));
        functions.push(("parse_status", PluginFunction::ParseStatus));
    }
    let mut problems = Vec::new();
    for (fname, f) in &functions {
        for (what, bytes) in &inputs {
            if let Some(p) = misjudged(plugin.call_raw(*f, bytes)) {
                problems.push(format!("{fname} got {what} and {p}"));
            }
        }
    }
    Check::from_problems(
        "garbage-input",
        format!("{} malformed inputs are refused by {} functions", inputs.len(), functions.len()),
        format!("{} malformed inputs are not refused", problems.len()),
        problems,
        "decode the input strictly (valid UTF-8 JSON of the message, unknown fields refused) and \
         answer STATUS_ERROR with {\"code\": \"invalid_call\", \"message\": ...} when it is not",
    )
}

// ---------------------------------------------------------------------------------------------
// odd-answers

fn check_odd_answers(plugin: &Plugin, samples: &Samples) -> Check {
    let Some(call) = samples.first() else {
        return Check::skip("odd-answers", "no sample call");
    };
    let call = with_base(call);
    let answers: Vec<(u16, &str)> = vec![
        (200, ""),
        (200, "<html><body>OK</body></html>"),
        (204, ""),
        (302, ""),
        (418, "I'm a teapot"),
        (500, r#"{"message":{"deep":[1,{"x":null}]}}"#),
        (503, ""),
        (599, "\u{0}\u{1}binary"),
    ];
    let currency = Currency::from_code(&call.currency).ok();
    let mut problems = Vec::new();
    for (status, body) in &answers {
        let response = HttpResponse { status: *status, headers: vec![], body: (*body).into() };
        let what = format!("answer {status} {:?}", excerpt(body));
        let parsed = plugin.parse_capture(&ParseCall {
            schema: SCHEMA_VERSION,
            call: call.clone(),
            response: response.clone(),
        });
        if plugin.uses_struct_messages() {
            // The same answer through the 1.3 struct messages, as the engine reads it.
            let through = plugin
                .build_capture_checked(&call, &[])
                .and_then(|built| plugin.parse_built(built.into_parts().2, &response));
            if through.as_ref().ok() != parsed.as_ref().ok() {
                problems.push(format!(
                    "{what}: the JSON functions answer {parsed:?}, the struct messages {through:?}"
                ));
            }
        }
        match parsed {
            Err(PluginCallError::Refused(e)) => problems.push(format!(
                "{what}: refused with {}: {} (the engine then cannot record what came back)",
                e.code, e.message
            )),
            Err(e) => problems.push(format!("{what}: {e}")),
            Ok(r) => {
                if r.status == ResultStatus::Failed && r.failure.is_none() {
                    problems.push(format!("{what}: a `failed` result without `failure` details"));
                }
                let success = matches!(r.status, ResultStatus::Captured | ResultStatus::Pending);
                if success && !(200..300).contains(status) {
                    problems.push(format!(
                        "{what}: reported as {:?} although the platform did not answer 2xx",
                        r.status
                    ));
                }
                if let (Some(text), Some(cur)) = (&r.captured_amount, currency)
                    && let Err(e) = Money::parse(text, cur)
                {
                    problems.push(format!("{what}: captured_amount `{text}` is not an amount in {cur}: {e}"));
                }
            }
        }
    }
    Check::from_problems(
        "odd-answers",
        format!("{} unusual answers map to valid results", answers.len()),
        format!("{} unusual answers are mishandled", problems.len()),
        problems,
        "map every answer to a result: one you cannot classify is `failed` with kind `unknown` (or \
         `outcome_unknown` for an unreadable 2xx), never an error, and never a capture without a 2xx",
    )
}

// ---------------------------------------------------------------------------------------------
// threads

/// One build + parse, as comparable text.
fn round_trip(plugin: &Plugin, call: &CaptureCall) -> String {
    let built = plugin.build_capture(call);
    let response = HttpResponse { status: 200, headers: vec![], body: "{}".into() };
    let parsed = plugin.parse_capture(&ParseCall { schema: SCHEMA_VERSION, call: call.clone(), response });
    format!("{built:?}\n{parsed:?}")
}

fn check_threads(plugin: &Plugin, samples: &Samples, threads: usize, calls: usize) -> Check {
    let Some(call) = samples.first() else {
        return Check::skip("threads", "no sample call");
    };
    let call = with_base(call);
    let expected = round_trip(plugin, &call);
    let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut same = 0;
                    for _ in 0..calls {
                        let got = round_trip(plugin, &call);
                        if got != expected {
                            return Err(format!("expected\n{expected}\ngot\n{got}"));
                        }
                        same += 1;
                    }
                    Ok(same)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("the thread panicked".into()))).collect()
    });
    let mut problems: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    problems.truncate(2);
    let total: usize = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    Check::from_problems(
        "threads",
        format!("{threads} threads x {calls} build + parse calls at once: {total} identical answers"),
        "answers differ when the plugin is called from several threads at once".to_owned(),
        problems,
        "keep no mutable state between calls (or guard it): every function may be called from many \
         threads at once",
    )
}

// ---------------------------------------------------------------------------------------------
// panic-strategy

/// The symbol `export_connector!` defines: 1 for a build that unwinds on panic, 2 for
/// `panic = "abort"`.
const PANIC_SYMBOL: &[u8] = b"capture_connector_panic_strategy\0";

fn check_panic_strategy(file: &Path) -> Check {
    const NAME: &str = "panic-strategy";
    // SAFETY: the engine has loaded this very file already (it ran its initialisers); opening it
    // again only takes another reference, and the symbol read is a `u8` static the SDK defines.
    let library = match unsafe { libloading::Library::new(file) } {
        Ok(l) => l,
        Err(e) => return Check::skip(NAME, format!("cannot open the file again to read its symbols: {e}")),
    };
    // SAFETY: the symbol, when present, is the SDK's `static u8`.
    let value = unsafe { library.get::<*const u8>(PANIC_SYMBOL) }.ok().map(|s| {
        // SAFETY: it points to a static byte that lives as long as the library, which is open.
        unsafe { **s }
    });
    // The library stays loaded: the engine never unloads plugins, and neither does this.
    std::mem::forget(library);
    match value {
        Some(1) => {
            Check::pass(NAME, "built with panic = \"unwind\": a panic becomes an error the engine survives")
        }
        Some(2) => Check::fail(
            NAME,
            "built with panic = \"abort\": any panic in this plugin kills the engine's process",
            vec!["the SDK reports the build's panic strategy as `abort`".to_owned()],
            "remove `panic = \"abort\"` from the [profile] of the workspace that builds the plugin",
        ),
        Some(other) => Check::fail(
            NAME,
            format!("capture_connector_panic_strategy is {other}, neither 1 (unwind) nor 2 (abort)"),
            vec![],
            "define the symbol only through export_connector!",
        ),
        None => Check::skip(NAME, "not built with the Rust SDK (no capture_connector_panic_strategy symbol)"),
    }
}

// ---------------------------------------------------------------------------------------------
// captured-amount

fn check_captured_amount(plugin: &Plugin, docs: &[Fixture]) -> Check {
    const NAME: &str = "captured-amount";
    let mut checked = 0;
    let mut problems = Vec::new();
    for f in docs {
        if shape(&f.doc) != Some(Shape::CaptureAnswer) {
            continue;
        }
        let (Ok(call), Ok(response)) =
            (field!(f.doc, "call", CaptureCall), field!(f.doc, "response", HttpResponse))
        else {
            continue;
        };
        let Ok(result) =
            plugin.parse_capture(&ParseCall { schema: SCHEMA_VERSION, call: call.clone(), response })
        else {
            continue;
        };
        if result.status != ResultStatus::Captured {
            continue;
        }
        checked += 1;
        let same = match (&result.captured_amount, Currency::from_code(&call.currency)) {
            (Some(got), Ok(cur)) => {
                matches!((Money::parse(got, cur), Money::parse(&call.amount, cur)), (Ok(a), Ok(b)) if a == b)
            }
            _ => false,
        };
        if !same {
            problems.push(format!(
                "{}: the call asked for {} {} and the answer says captured {}",
                f.name,
                call.amount,
                call.currency,
                result.captured_amount.as_deref().unwrap_or("(no amount)")
            ));
        }
    }
    if checked == 0 {
        return Check::skip(
            NAME,
            "no fixture answer is `captured`: add a {call, response, result} fixture for a success",
        );
    }
    Check::from_problems(
        NAME,
        format!("captured answers report the amount asked for ({checked} checked)"),
        format!("{} of {checked} captured answers report another amount", problems.len()),
        problems,
        "report the amount the platform captured, in the call's currency; if the platform captured another \
         amount than asked, that is not a plain `captured` (the engine compares the two)",
    )
}

// ---------------------------------------------------------------------------------------------
// status-query

fn check_status_query(plugin: &Plugin, samples: &Samples) -> Check {
    const NAME: &str = "status-query";
    if !plugin.manifest().capabilities.status_query {
        return Check::skip(NAME, "the manifest declares no status query");
    }
    let mut statuses: Vec<(String, StatusCall)> =
        samples.statuses.iter().map(|(n, s)| (n.clone(), with_status_base(s))).collect();
    if let Some(call) = samples.first() {
        statuses.push((
            "a status query for the generic capture".to_owned(),
            StatusCall {
                schema: SCHEMA_VERSION,
                base_url: LOOPBACK.into(),
                settings: call.settings.clone(),
                order_id: call.order_id.clone(),
                currency: call.currency.clone(),
                currency_exponent: call.currency_exponent,
                payment_ids: call.payments.iter().map(|p| p.id.clone()).collect(),
                idempotency_key: Some(call.idempotency_key.clone()),
                platform_capture_id: None,
            },
        ));
    }
    fn unsupported<T>(r: &Result<T, PluginCallError>) -> Option<String> {
        match r {
            Err(PluginCallError::Refused(error)) if error.code == "unsupported" => {
                Some(error.message.clone())
            }
            _ => None,
        }
    }
    let mut problems = Vec::new();
    for (name, status) in &statuses {
        let built = plugin.build_status(status);
        if let Some(message) = unsupported(&built) {
            problems.push(format!("{name}: build_status answered `unsupported`: {message}"));
            continue;
        }
        let parse = StatusParseCall {
            schema: SCHEMA_VERSION,
            status: status.clone(),
            response: HttpResponse { status: 200, headers: vec![], body: "{}".into() },
        };
        let parsed = plugin.parse_status(&parse);
        if let Some(message) = unsupported(&parsed) {
            problems.push(format!("{name}: parse_status answered `unsupported`: {message}"));
        }
    }
    Check::from_problems(
        NAME,
        format!("build_status and parse_status answer ({} tried)", count(statuses.len(), "status call")),
        "the manifest declares a status query that answers `unsupported`",
        problems,
        "implement build_status and parse_status (see plugins/README.md), or set capabilities.status_query to false",
    )
}
