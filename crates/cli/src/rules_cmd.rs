//! `capture rules ...`: tooling for merchants' rule folders (rules/README.md is the guide).
//!
//! ```text
//! capture rules check DIR                       # every problem, with file and line; exit 0/20
//! capture rules test DIR                        # the cases in DIR/tests/*.json; exit 0/20
//! capture rules eval DIR CASE.json              # every verdict of one case, as JSON
//! capture rules backtest DIR --reports FILE     # recorded captures under this rule set
//! ```
//!
//! A *case* (a file of `DIR/tests/`, or the file `eval` reads) is a JSON object:
//!
//! ```json
//! {
//!   "name": "holds an order over 2,000 EUR",
//!   "request": { "platform": "optty", "idempotency_key": "...", "amount": "full", "order": { ... } },
//!   "now": "2026-11-21T10:00:00Z",
//!   "outcome": { "status": "captured" },
//!   "expect": { "decision": "hold", "by": "hold-large-orders", "reason_contains": "review" }
//! }
//! ```
//!
//! `request` is a capture request as `capture run` reads it (examples/requests/*.json). `now`
//! (default `2026-01-01T00:00:00Z`) is the capture's clock. Without `outcome` the pre-validate
//! rules run; with one (`status` captured, pending, held, rejected, failed or already_captured,
//! plus that outcome's fields) the post-capture rules run. `expect` (required by `test`) may
//! hold `decision` (allow, hold, reject or adjust: the merged decision, reject > hold > adjust >
//! allow), `by` (the rule that decided), `reason_contains`, `code`, `amount`, `tags` (all tags
//! of the stage, exactly), `notes_contain`, `follow_ups` (exactly) and `error_contains` (a rule
//! must have failed with this; without it no rule may fail). Unknown fields are refused.
//!
//! Only the merchant's rules run, not the engine's built-in checks against the order and the
//! connector (an adjusted amount is not checked again here).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use capture_core::{CaptureRequest, Decision, FailureKind, Money, Outcome, RequestedAmount, Timestamp};
use capture_engine::Merged;
use capture_rules::check::check_dir;
use capture_rules::{Limits, RuleContext, RuleSet, RuleStage, RuleVerdict};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::{CheckError, Exit, UsageError};

/// Prints a line of text for people on standard output, control characters escaped (a rule's
/// reason or name cannot clear the screen or forge a line); a closed pipe (`| head`) is not an
/// error worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stdout().lock(), "{}", capture_core::text::escape(&line));
    }};
}

/// Prints JSON on standard output as it is (JSON escapes control characters itself).
macro_rules! say_json {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// The clock of a case that does not say.
const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

/// The `rules` subcommands.
#[derive(Subcommand)]
pub(crate) enum RulesCommand {
    /// Check a rule folder: syntax, each file's rule table (name, stage, priority, decide or
    /// observe), unknown fields, duplicate names. Prints every problem with its file and line.
    /// Exit status 0 when the folder loads, 20 (check failed) otherwise.
    Check {
        /// The rule folder (its `*.lua` files).
        dir: PathBuf,
    },
    /// Run the test cases of a rule folder (`DIR/tests/*.json`, see rules/README.md) and show
    /// what differs for each failing one. Exit status 0 when every case passes, 20 (check failed) otherwise.
    Test {
        /// The rule folder.
        dir: PathBuf,
    },
    /// Evaluate a rule folder on one case (the format of a test case; `expect` is not needed)
    /// and print the merged decision and every rule's verdict as JSON.
    Eval {
        /// The rule folder.
        dir: PathBuf,
        /// The case file (JSON).
        case: PathBuf,
    },
    /// Run a rule folder against recorded captures and print how many would now be allowed,
    /// held, rejected or adjusted, and which, next to what was recorded.
    Backtest {
        /// The rule folder.
        dir: PathBuf,
        /// Recorded captures: JSON lines, a JSON array or JSON objects one after the other. Each
        /// is `{"request": ..., "report": ...}` (a request and the report `capture run` printed
        /// for it), a capture request alone, or a report alone (then its request must be in
        /// `--requests`, found by platform and idempotency key).
        #[arg(long)]
        reports: Option<PathBuf>,
        /// Capture requests (same file formats), for reports recorded without their request.
        #[arg(long)]
        requests: Option<PathBuf>,
        /// The clock for captures without a report (default: each report's `started_at`, else
        /// 2026-01-01T00:00:00Z).
        #[arg(long)]
        now: Option<String>,
    },
}

/// Runs a `rules` subcommand; the result is the exit status.
pub(crate) fn run(command: RulesCommand) -> anyhow::Result<u8> {
    let dir = match &command {
        RulesCommand::Check { dir }
        | RulesCommand::Test { dir }
        | RulesCommand::Eval { dir, .. }
        | RulesCommand::Backtest { dir, .. } => dir,
    };
    if !dir.is_dir() {
        return Err(UsageError(format!("{}: no such rule folder", dir.display())).into());
    }
    match command {
        RulesCommand::Check { dir } => check(&dir),
        RulesCommand::Test { dir } => test(&dir),
        RulesCommand::Eval { dir, case } => eval(&dir, &case),
        RulesCommand::Backtest { dir, reports, requests, now } => {
            backtest(&dir, reports.as_deref(), requests.as_deref(), now.as_deref())
        }
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn check(dir: &Path) -> anyhow::Result<u8> {
    let checked = check_dir(dir, Limits::default())?;
    for p in &checked.problems {
        say!("{}", p);
    }
    for n in &checked.notes {
        say!("{}", n);
    }
    match &checked.rules {
        Some(rules) => {
            say!(
                "{}: {} ({}), no problem",
                dir.display(),
                count(rules.rules().len(), "rule"),
                rules.version()
            );
            for r in rules.rules() {
                say!(
                    "  {:<13} {:>6}  {:<28} {:<28} {}",
                    r.stage.as_str(),
                    r.priority,
                    r.name,
                    r.file,
                    r.hash
                );
            }
            Ok(Exit::Ok.code())
        }
        None => {
            say!("{}: {}", dir.display(), count(checked.problems.len(), "problem"));
            Ok(Exit::CheckFailed.code())
        }
    }
}

/// Loads a rule folder for `test`, `eval` and `backtest`, with `check`'s messages on failure.
fn load(dir: &Path) -> anyhow::Result<RuleSet> {
    let checked = check_dir(dir, Limits::default())?;
    match checked.rules {
        Some(rules) => Ok(rules),
        None => {
            let lines: Vec<String> = checked.problems.iter().map(|p| p.to_string()).collect();
            Err(CheckError(format!(
                "{} does not load ({}):\n  {}",
                dir.display(),
                count(lines.len(), "problem"),
                lines.join("\n  ")
            ))
            .into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

/// A parsed case.
struct Case {
    name: String,
    request: CaptureRequest,
    now: Timestamp,
    outcome: Option<Outcome>,
    expect: Option<Expect>,
}

/// What a case expects.
#[derive(Default)]
struct Expect {
    decision: Option<String>,
    by: Option<String>,
    reason_contains: Option<String>,
    code: Option<String>,
    amount: Option<String>,
    tags: Option<Vec<String>>,
    notes_contain: Vec<String>,
    follow_ups: Option<Vec<BTreeMap<String, String>>>,
    error_contains: Option<String>,
}

fn refuse_unknown(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> anyhow::Result<()> {
    let unknown: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        bail!("{what} has unknown field(s) {} (allowed: {})", unknown.join(", "), allowed.join(", "))
    }
}

fn string_field(obj: &Map<String, Value>, key: &str, what: &str) -> anyhow::Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("{what}.{key} must be a string, not {other}"),
    }
}

fn strings_field(obj: &Map<String, Value>, key: &str, what: &str) -> anyhow::Result<Option<Vec<String>>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("{what}.{key} must hold strings, not {v}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Some),
        Some(other) => bail!("{what}.{key} must be a list of strings, not {other}"),
    }
}

/// A JSON scalar as the text a follow-up value has (strings as they are, numbers and booleans
/// written out).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_expect(v: &Value) -> anyhow::Result<Expect> {
    let Value::Object(obj) = v else {
        bail!("`expect` must be an object such as {{\"decision\": \"hold\"}}")
    };
    refuse_unknown(
        obj,
        &[
            "decision",
            "by",
            "reason_contains",
            "code",
            "amount",
            "tags",
            "notes_contain",
            "follow_ups",
            "error_contains",
        ],
        "`expect`",
    )?;
    let decision = string_field(obj, "decision", "expect")?;
    if let Some(d) = &decision
        && !["allow", "hold", "reject", "adjust"].contains(&d.as_str())
    {
        bail!("expect.decision must be allow, hold, reject or adjust, not {d:?}");
    }
    let follow_ups = match obj.get("follow_ups") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| {
                    let Value::Object(fields) = item else {
                        bail!(
                            "expect.follow_ups must hold objects such as {{\"action\": \"void_remaining\"}}"
                        )
                    };
                    fields
                        .iter()
                        .map(|(k, v)| {
                            scalar_text(v).map(|t| (k.clone(), t)).ok_or_else(|| {
                                anyhow!("expect.follow_ups: `{k}` must be a string, number or boolean")
                            })
                        })
                        .collect()
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        Some(other) => bail!("expect.follow_ups must be a list, not {other}"),
    };
    Ok(Expect {
        decision,
        by: string_field(obj, "by", "expect")?,
        reason_contains: string_field(obj, "reason_contains", "expect")?,
        code: string_field(obj, "code", "expect")?,
        amount: match obj.get("amount") {
            None | Some(Value::Null) => None,
            Some(v) => Some(scalar_text(v).ok_or_else(|| anyhow!("expect.amount must be a decimal string"))?),
        },
        tags: strings_field(obj, "tags", "expect")?,
        notes_contain: strings_field(obj, "notes_contain", "expect")?.unwrap_or_default(),
        follow_ups,
        error_contains: string_field(obj, "error_contains", "expect")?,
    })
}

/// `outcome` of a case: what the platform did, for post-capture rules.
fn parse_outcome(v: &Value, request: &CaptureRequest) -> anyhow::Result<Outcome> {
    let Value::Object(obj) = v else {
        bail!("`outcome` must be an object such as {{\"status\": \"captured\"}}")
    };
    let status =
        string_field(obj, "status", "outcome")?.ok_or_else(|| anyhow!("`outcome` needs a `status`"))?;
    let text = |key: &str| string_field(obj, key, "outcome");
    let required = |key: &str| -> anyhow::Result<String> {
        text(key)?.ok_or_else(|| anyhow!("a `{status}` outcome needs `{key}`"))
    };
    let cur = request.order.currency;
    let amount = || -> anyhow::Result<Money> {
        match obj.get("amount") {
            None | Some(Value::Null) => Ok(intended_amount(request)),
            Some(v) => {
                let t = scalar_text(v).ok_or_else(|| anyhow!("outcome.amount must be a decimal string"))?;
                Money::parse(&t, cur).map_err(|e| anyhow!("outcome.amount: {e}"))
            }
        }
    };
    let allowed: &[&str] = match status.as_str() {
        "captured" | "pending" => &["status", "amount", "platform_capture_id"],
        "held" => &["status", "by", "reason"],
        "rejected" => &["status", "by", "code", "reason"],
        "failed" => &["status", "kind", "retryable", "code", "message"],
        "already_captured" => &["status", "code", "message"],
        other => bail!(
            "outcome.status must be captured, pending, held, rejected, failed or already_captured, not {other:?}"
        ),
    };
    refuse_unknown(obj, allowed, "`outcome`")?;
    Ok(match status.as_str() {
        "captured" => {
            Outcome::Captured { amount: amount()?, platform_capture_id: text("platform_capture_id")? }
        }
        "pending" => {
            Outcome::Pending { amount: amount()?, platform_capture_id: text("platform_capture_id")? }
        }
        "held" => Outcome::Held { by: required("by")?, reason: required("reason")? },
        "rejected" => {
            Outcome::Rejected { by: required("by")?, code: required("code")?, reason: required("reason")? }
        }
        "failed" => Outcome::Failed {
            kind: match obj.get("kind") {
                None => FailureKind::Unknown,
                Some(k) => serde_json::from_value(k.clone()).map_err(|e| anyhow!("outcome.kind: {e}"))?,
            },
            retryable: obj.get("retryable").and_then(Value::as_bool).unwrap_or(false),
            platform_code: text("code")?,
            message: text("message")?.unwrap_or_default(),
            retry_after_ms: None,
        },
        _ => Outcome::AlreadyCaptured {
            platform_code: text("code")?,
            message: text("message")?.unwrap_or_default(),
        },
    })
}

fn parse_now(text: &str, what: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(text).map_err(|e| anyhow!("{what}: {e}"))
}

fn parse_request(v: &Value, what: &str) -> anyhow::Result<CaptureRequest> {
    let bytes = serde_json::to_vec(v)?;
    CaptureRequest::from_json(&bytes).map_err(|e| anyhow!("{what}: {e}"))
}

fn parse_case(path: &Path, need_expect: bool) -> anyhow::Result<Case> {
    let text = std::fs::read(path).map_err(|e| UsageError(format!("reading {}: {e}", path.display())))?;
    let value: Value =
        serde_json::from_slice(&text).map_err(|e| anyhow!("{}: not JSON: {e}", path.display()))?;
    let inner = || -> anyhow::Result<Case> {
        let Value::Object(obj) = &value else { bail!("a case is a JSON object with `request` and `expect`") };
        refuse_unknown(obj, &["name", "request", "now", "outcome", "expect"], "the case")?;
        let name = string_field(obj, "name", "case")?.unwrap_or_else(|| {
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
        });
        let request = parse_request(
            obj.get("request").ok_or_else(|| anyhow!("the case needs a `request`"))?,
            "request",
        )?;
        let now = parse_now(string_field(obj, "now", "case")?.as_deref().unwrap_or(DEFAULT_NOW), "now")?;
        let outcome = obj.get("outcome").map(|o| parse_outcome(o, &request)).transpose()?;
        let expect = match obj.get("expect") {
            Some(e) => Some(parse_expect(e)?),
            None if need_expect => bail!("the case needs an `expect`, e.g. {{\"decision\": \"allow\"}}"),
            None => None,
        };
        Ok(Case { name, request, now, outcome, expect })
    };
    inner().map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The amount the pipeline intends to capture: a "full" request resolved to the capturable amount.
fn intended_amount(req: &CaptureRequest) -> Money {
    match req.amount {
        RequestedAmount::Full => capturable(req),
        RequestedAmount::Exact(m) => m,
    }
}

fn capturable(req: &CaptureRequest) -> Money {
    req.order.capturable().unwrap_or_else(|_| Money::zero(req.order.currency))
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// One stage of a rule set on one capture, merged by the engine's own merge
/// ([`capture_engine::Merged`]).
struct Evaluated<'r> {
    stage: RuleStage,
    verdicts: Vec<RuleVerdict<'r>>,
    merged: Merged,
}

fn evaluate<'r>(
    rules: &'r RuleSet,
    req: &CaptureRequest,
    now: Timestamp,
    outcome: Option<&Outcome>,
) -> Evaluated<'r> {
    let ctx = RuleContext { request: req, amount: intended_amount(req), capturable: capturable(req), now };
    match outcome {
        None => {
            let verdicts = rules.decide(&ctx);
            let merged = Merged::of_rules(&verdicts);
            Evaluated { stage: RuleStage::PreValidate, verdicts, merged }
        }
        Some(o) => {
            let verdicts = rules.observe(&ctx, o);
            let merged = Merged::of_observations(&verdicts);
            Evaluated { stage: RuleStage::PostCapture, verdicts, merged }
        }
    }
}

fn decision_json(d: &Decision) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

fn evaluated_json(rules: &RuleSet, e: &Evaluated<'_>) -> Value {
    json!({
        "rules_version": rules.version(),
        "stage": e.stage.as_str(),
        "decision": decision_json(&e.merged.decision),
        "by": e.merged.by,
        "tags": e.merged.tags,
        "notes": e.merged.notes,
        "follow_ups": e.merged.follow_ups,
        "verdicts": e.verdicts.iter().map(|v| json!({
            "rule": v.rule,
            "file": v.file,
            "hash": v.hash,
            "decision": decision_json(&v.decision),
            "tags": v.tags,
            "notes": v.notes,
            "follow_ups": v.follow_ups,
            "error": v.error,
        })).collect::<Vec<_>>(),
    })
}

fn eval(dir: &Path, case: &Path) -> anyhow::Result<u8> {
    let rules = load(dir)?;
    let c = parse_case(case, false)?;
    let e = evaluate(&rules, &c.request, c.now, c.outcome.as_ref());
    say_json!("{}", serde_json::to_string_pretty(&evaluated_json(&rules, &e))?);
    Ok(0)
}

/// One line about a decision: `hold: reason`, `reject (code): reason`, `adjust to 150.00 USD`,
/// with the rule that made it when given (`hold by big-orders: reason`).
fn describe_by(d: &Decision, by: Option<&str>) -> String {
    let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
    match d {
        Decision::Allow => format!("allow{by}"),
        Decision::Hold { reason } => format!("hold{by}: {reason}"),
        Decision::Reject { code, reason } => format!("reject ({code}){by}: {reason}"),
        Decision::Adjust { amount } => format!("adjust to {amount}{by}"),
    }
}

fn describe(d: &Decision) -> String {
    describe_by(d, None)
}

// ---------------------------------------------------------------------------------------------
// test

/// What differs between a case's expectations and the evaluation, one entry per field.
fn differences(x: &Expect, e: &Evaluated<'_>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut differ = |field: &str, want: String, got: String| {
        if want != got {
            out.push((field.to_owned(), want, got));
        }
    };
    let m = &e.merged;
    if let Some(d) = &x.decision
        && d != m.decision.verdict()
    {
        let by = m.by.as_ref().map(|b| format!(" (by {b})")).unwrap_or_default();
        differ("decision", d.clone(), format!("{}{by}", m.decision.verdict()));
    }
    if let Some(by) = &x.by {
        differ("by", by.clone(), m.by.clone().unwrap_or_else(|| "(no rule: every rule allowed)".into()));
    }
    let (reason, code, amount) = match &m.decision {
        Decision::Hold { reason } => (Some(reason.as_str()), None, None),
        Decision::Reject { code, reason } => (Some(reason.as_str()), Some(code.as_str()), None),
        Decision::Adjust { amount } => (None, None, Some(amount.to_decimal_string())),
        Decision::Allow => (None, None, None),
    };
    if let Some(want) = &x.reason_contains {
        let got = reason.unwrap_or("(no reason)");
        if !got.contains(want.as_str()) {
            out.push(("reason".into(), format!("containing {want:?}"), format!("{got:?}")));
        }
    }
    if let Some(want) = &x.code {
        out.extend(
            (code != Some(want.as_str()))
                .then(|| ("code".into(), want.clone(), code.unwrap_or("(not a reject)").to_owned())),
        );
    }
    if let Some(want) = &x.amount {
        let got = amount.clone().unwrap_or_else(|| "(not an adjust)".into());
        if got != *want {
            out.push(("amount".into(), want.clone(), got));
        }
    }
    if let Some(want) = &x.tags {
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        let got: BTreeSet<&str> = m.tags.iter().map(String::as_str).collect();
        if want != got {
            out.push(("tags".into(), format!("{want:?}"), format!("{got:?}")));
        }
    }
    for want in &x.notes_contain {
        if !m.notes.iter().any(|n| n.contains(want.as_str())) {
            out.push(("notes".into(), format!("one containing {want:?}"), format!("{:?}", m.notes)));
        }
    }
    if let Some(want) = &x.follow_ups
        && *want != m.follow_ups
    {
        out.push(("follow_ups".into(), format!("{want:?}"), format!("{:?}", m.follow_ups)));
    }
    let errors: Vec<String> =
        e.verdicts.iter().filter_map(|v| v.error.as_ref().map(|err| format!("{}: {err}", v.rule))).collect();
    match &x.error_contains {
        Some(want) => {
            if !errors.iter().any(|err| err.contains(want.as_str())) {
                out.push(("error".into(), format!("a rule failing with {want:?}"), format!("{errors:?}")));
            }
        }
        None => {
            if !errors.is_empty() {
                out.push(("error".into(), "no rule failing".into(), errors.join("; ")));
            }
        }
    }
    out
}

fn test(dir: &Path) -> anyhow::Result<u8> {
    let rules = load(dir)?;
    let tests = dir.join("tests");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&tests) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", tests.display())),
    };
    files.sort();
    say!(
        "{}: {} ({}), {}",
        dir.display(),
        count(rules.rules().len(), "rule"),
        rules.version(),
        count(files.len(), "case")
    );
    if files.is_empty() {
        say!("no test cases: add JSON files to {} (see rules/README.md)", tests.display());
        return Ok(Exit::CheckFailed.code());
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let shown = file.strip_prefix(dir).unwrap_or(file).display().to_string();
        let case = match parse_case(file, true) {
            Ok(c) => c,
            Err(e) => {
                say!("FAIL  {e:#}");
                failed += 1;
                continue;
            }
        };
        let e = evaluate(&rules, &case.request, case.now, case.outcome.as_ref());
        let diffs = case.expect.as_ref().map(|x| differences(x, &e)).unwrap_or_default();
        if diffs.is_empty() {
            say!("PASS  {} ({shown})", case.name);
            passed += 1;
            continue;
        }
        failed += 1;
        say!("FAIL  {} ({shown})", case.name);
        for (field, want, got) in &diffs {
            say!("      {field:<10} expected: {want}");
            say!("      {:<10}      got: {got}", "");
        }
        say!("      {} rules:", e.stage.as_str());
        for v in &e.verdicts {
            let extra = [
                (!v.tags.is_empty()).then(|| format!("tags {:?}", v.tags)),
                (!v.notes.is_empty()).then(|| format!("notes {:?}", v.notes)),
                (!v.follow_ups.is_empty()).then(|| format!("follow-ups {:?}", v.follow_ups)),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            let what = if e.stage == RuleStage::PostCapture && v.error.is_none() {
                "observed".to_owned()
            } else {
                describe(&v.decision)
            };
            say!(
                "        {:<28} {what}{}",
                v.rule,
                if extra.is_empty() { String::new() } else { format!(" ({extra})") }
            );
        }
    }
    say!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { Exit::Ok } else { Exit::CheckFailed }.code())
}

// ---------------------------------------------------------------------------------------------
// backtest

/// Every JSON value of a file: JSON lines, one array, or values one after the other.
fn json_values(path: &Path) -> anyhow::Result<Vec<Value>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>() {
        values.push(v.map_err(|e| anyhow!("{}: not JSON: {e}", path.display()))?);
    }
    if let [Value::Array(items)] = values.as_slice() {
        return Ok(items.clone());
    }
    Ok(values)
}

/// A recorded capture: its request, and the report if there is one.
struct Recorded {
    request: CaptureRequest,
    report: Option<Value>,
}

fn key_of(v: &Value) -> Option<(String, String)> {
    Some((v.get("platform")?.as_str()?.to_owned(), v.get("idempotency_key")?.as_str()?.to_owned()))
}

fn is_report(v: &Value) -> bool {
    v.get("schema").and_then(Value::as_str).is_some_and(|s| s.starts_with("capture-report/"))
}

fn recorded(reports: Option<&Path>, requests: Option<&Path>) -> anyhow::Result<Vec<Recorded>> {
    let mut out = Vec::new();
    let mut loose_reports = Vec::new();
    let mut loose_requests: BTreeMap<(String, String), CaptureRequest> = BTreeMap::new();
    for (path, values) in [reports, requests].into_iter().flatten().map(|p| (p, json_values(p))) {
        for (i, v) in values?.into_iter().enumerate() {
            let what = format!("{} entry {}", path.display(), i + 1);
            if let Some(req) = v.get("request") {
                let request = parse_request(req, &what)?;
                out.push(Recorded { request, report: v.get("report").cloned() });
            } else if is_report(&v) {
                loose_reports.push((what, v));
            } else {
                let request = parse_request(&v, &what)?;
                let key = (request.platform.clone(), request.idempotency_key.clone());
                loose_requests.insert(key, request);
            }
        }
    }
    for (what, report) in loose_reports {
        let key = key_of(&report)
            .ok_or_else(|| anyhow!("{what}: a report without platform and idempotency_key"))?;
        let request = loose_requests.remove(&key).ok_or_else(|| {
            anyhow!(
                "{what}: the report of {} {} has no recorded request; give its request with --requests, \
                 or record captures as {{\"request\": ..., \"report\": ...}}",
                key.0,
                key.1
            )
        })?;
        out.push(Recorded { request, report: Some(report) });
    }
    out.extend(loose_requests.into_values().map(|request| Recorded { request, report: None }));
    Ok(out)
}

/// What the rules decided when the report was made: `allow`, `hold`, `reject` or `adjust`, and by
/// whom when it was not the merchant's rules.
fn recorded_decision(report: &Value) -> (String, Option<String>) {
    let outcome = report.get("outcome");
    let status = outcome.and_then(|o| o.get("status")).and_then(Value::as_str).unwrap_or("unknown");
    let by = outcome.and_then(|o| o.get("by")).and_then(Value::as_str).map(str::to_owned);
    let adjusted = report.get("steps").and_then(Value::as_array).is_some_and(|steps| {
        steps.iter().any(|s| s.get("name").and_then(Value::as_str) == Some("adjusted_amount"))
    });
    let kind = match status {
        "held" => "hold",
        "rejected" => "reject",
        _ if adjusted => "adjust",
        _ => "allow",
    };
    (kind.to_owned(), by.filter(|b| !b.starts_with("rule:")))
}

fn backtest(
    dir: &Path,
    reports: Option<&Path>,
    requests: Option<&Path>,
    now: Option<&str>,
) -> anyhow::Result<u8> {
    if reports.is_none() && requests.is_none() {
        bail!("give the recorded captures with --reports FILE (and/or --requests FILE)");
    }
    let rules = load(dir)?;
    let fixed_now = now.map(|n| parse_now(n, "--now")).transpose()?;
    let captures = recorded(reports, requests)?;
    say!("{} ({}) on {}:", dir.display(), rules.version(), count(captures.len(), "recorded capture"));
    let mut totals: BTreeMap<&str, usize> =
        ["allow", "hold", "reject", "adjust"].into_iter().map(|k| (k, 0)).collect();
    let mut changed = 0;
    for c in &captures {
        let started = c
            .report
            .as_ref()
            .and_then(|r| r.get("started_at"))
            .and_then(Value::as_str)
            .map(|t| parse_now(t, "report started_at"))
            .transpose()?;
        let now = fixed_now.or(started).map_or_else(|| parse_now(DEFAULT_NOW, "now"), Ok)?;
        let e = evaluate(&rules, &c.request, now, None);
        let kind = e.merged.decision.verdict();
        *totals.entry(kind).or_default() += 1;
        let decided = describe_by(&e.merged.decision, e.merged.by.as_deref());
        let was = match &c.report {
            Some(report) => {
                let (before, by) = recorded_decision(report);
                let status = report.pointer("/outcome/status").and_then(Value::as_str).unwrap_or("unknown");
                let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
                let mark = if before != kind {
                    changed += 1;
                    "  CHANGED"
                } else {
                    ""
                };
                format!("  (was {status}{by}){mark}")
            }
            None => String::new(),
        };
        say!("  {} {} {}: {decided}{was}", c.request.platform, c.request.order.id, c.request.idempotency_key);
    }
    say!(
        "would now be: {} allowed, {} held, {} rejected, {} adjusted",
        totals["allow"],
        totals["hold"],
        totals["reject"],
        totals["adjust"]
    );
    let with_report = captures.iter().filter(|c| c.report.is_some()).count();
    if with_report > 0 {
        say!("{} of {with_report} differ from what was recorded", changed);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CaptureRequest {
        CaptureRequest::from_json(
            br#"{"platform": "optty", "idempotency_key": "k", "amount": "full",
                 "order": {"id": "o", "currency": "EUR", "amount": "2500.00",
                           "payments": [{"id": "p", "amount": "2500.00"}]}}"#,
        )
        .expect("request")
    }

    #[test]
    fn outcomes_are_read_with_their_fields() {
        let r = req();
        let o = parse_outcome(&json!({"status": "captured"}), &r).expect("captured");
        assert_eq!(
            o,
            Outcome::Captured {
                amount: Money::parse("2500.00", r.order.currency).unwrap(),
                platform_capture_id: None
            }
        );
        let o = parse_outcome(&json!({"status": "held", "by": "rule:x", "reason": "r"}), &r).expect("held");
        assert_eq!(o, Outcome::Held { by: "rule:x".into(), reason: "r".into() });
        let err = parse_outcome(&json!({"status": "held", "by": "x"}), &r).unwrap_err();
        assert_eq!(err.to_string(), "a `held` outcome needs `reason`");
        let err = parse_outcome(&json!({"status": "captured", "amout": "1"}), &r).unwrap_err();
        assert!(err.to_string().contains("unknown field(s) amout"), "{err}");
        let o = parse_outcome(&json!({"status": "failed", "kind": "rate_limited", "retryable": true}), &r)
            .unwrap();
        assert!(
            matches!(o, Outcome::Failed { kind: FailureKind::RateLimited, retryable: true, .. }),
            "{o:?}"
        );
    }

    #[test]
    fn expectations_refuse_typos() {
        let err = parse_expect(&json!({"decison": "hold"})).err().expect("refused");
        assert!(err.to_string().starts_with("`expect` has unknown field(s) decison"), "{err}");
        let err = parse_expect(&json!({"decision": "review"})).err().expect("refused");
        assert_eq!(err.to_string(), "expect.decision must be allow, hold, reject or adjust, not \"review\"");
        let x =
            parse_expect(&json!({"follow_ups": [{"action": "void", "count": 2, "now": true}]})).expect("ok");
        let f = x.follow_ups.expect("follow-ups");
        assert_eq!(f[0].get("count").map(String::as_str), Some("2"));
        assert_eq!(f[0].get("now").map(String::as_str), Some("true"));
    }

    #[test]
    fn recorded_decisions_follow_the_outcome() {
        let held = json!({"outcome": {"status": "held", "by": "rule:big", "reason": "x"}});
        assert_eq!(recorded_decision(&held), ("hold".to_owned(), None));
        let rejected = json!({"outcome": {"status": "rejected", "by": "builtin:bounds"}});
        assert_eq!(recorded_decision(&rejected), ("reject".to_owned(), Some("builtin:bounds".to_owned())));
        let adjusted = json!({"outcome": {"status": "captured"}, "steps": [{"name": "adjusted_amount"}]});
        assert_eq!(recorded_decision(&adjusted).0, "adjust");
        assert_eq!(recorded_decision(&json!({"outcome": {"status": "failed"}})).0, "allow");
    }
}
