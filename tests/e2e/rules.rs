//! Merchant rules end to end: the packs in rules/ through `capture rules check` and `capture
//! rules test`, the CLI's messages, byte-identical output in fresh processes, follow-ups in the
//! report of a real capture, backtests, and swapping the rule set while captures run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use capture_core::{CaptureRequest, Outcome, StepSource};
use capture_engine::{RuleLimits, RuleSet};

use crate::{artifact, emulator, engine, engine_with_rules, repo, sample, stable};

fn capture(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(artifact("capture"));
    for a in args {
        cmd.arg(a);
    }
    cmd.current_dir(repo()).output().expect("capture runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A scratch folder for this test, empty.
fn scratch(name: &str) -> PathBuf {
    crate::plugins::scratch(&format!("rules-{name}"))
}

fn write(dir: &Path, file: &str, content: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&path, content).expect("write");
}

/// Every folder of rules/ that holds rules.
fn packs() -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = std::fs::read_dir(repo().join("rules"))
        .expect("rules/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    packs.sort();
    packs
}

#[test]
fn every_pack_in_rules_checks_and_passes_its_tests() {
    let packs = packs();
    let names: Vec<String> =
        packs.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    for wanted in
        ["demo", "hold-large-orders", "require-tracking", "capture-shipped", "tag-first-time-customer"]
    {
        assert!(names.iter().any(|n| n == wanted), "rules/{wanted} is missing: {names:?}");
    }
    for pack in &packs {
        let out = capture(&[&"rules", &"check", pack]);
        assert_eq!(out.status.code(), Some(0), "check {}:\n{}", pack.display(), text(&out));
        assert!(text(&out).contains("no problem"), "{}", text(&out));
        let out = capture(&[&"rules", &"test", pack]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(0), "test {}:\n{shown}", pack.display());
        let passed = shown.lines().filter(|l| l.starts_with("PASS  ")).count();
        assert!(passed >= 3, "{}: only {passed} cases\n{shown}", pack.display());
        assert!(shown.contains(&format!("{passed} passed, 0 failed")), "{shown}");
    }
}

#[test]
fn check_names_file_and_line_and_test_shows_the_difference() {
    let dir = scratch("broken");
    write(
        &dir,
        "a_good.lua",
        "return { name = 'good', stage = 'pre-validate', decide = function(ctx) return allow() end }\n",
    );
    write(
        &dir,
        "b_typo.lua",
        "return {\n  name = 'typo',\n  stage = 'pre-validate',\n  priorty = 1,\n  decide = function(ctx) return allow() end,\n}\n",
    );
    write(&dir, "c_syntax.lua", "return {\n  name = 'c'\n  stage = 'pre-validate',\n}\n");
    let out = capture(&[&"rules", &"check", &dir]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(20), "{shown}");
    assert!(shown.contains("b_typo.lua:4: unknown field(s) `priorty`"), "{shown}");
    assert!(
        shown.contains("c_syntax.lua:3: syntax error: '}' expected (to close '{' at line 1) near 'stage'"),
        "{shown}"
    );
    assert!(shown.contains(": 2 problems"), "{shown}");
    // `test` refuses a pack that does not load, with the same messages.
    let out = capture(&[&"rules", &"test", &dir]);
    assert_eq!(out.status.code(), Some(20));
    assert!(text(&out).contains("b_typo.lua:4: unknown field(s)"), "{}", text(&out));

    // A failing case: what differs, then what every rule answered.
    let dir = scratch("failing");
    write(
        &dir,
        "hold.lua",
        "return { name = 'big', stage = 'pre-validate', decide = function(ctx)\n  if ctx.amount.minor > 100000 then return hold('big one') end\n  return allow()\nend }\n",
    );
    let request = String::from_utf8(sample("held-large-order.json")).expect("utf-8");
    write(
        &dir,
        "tests/a.json",
        &format!(
            r#"{{"name": "wrong on purpose", "request": {request}, "expect": {{"decision": "reject", "code": "x", "tags": ["t"]}}}}"#
        ),
    );
    write(
        &dir,
        "tests/b.json",
        &format!(
            r#"{{"request": {request}, "expect": {{"decision": "hold", "by": "big", "reason_contains": "big one"}}}}"#
        ),
    );
    write(&dir, "tests/c.json", &format!(r#"{{"request": {request}, "expect": {{"decison": "hold"}}}}"#));
    let out = capture(&[&"rules", &"test", &dir]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(20), "{shown}");
    let expected = "\
FAIL  wrong on purpose (tests/a.json)
      decision   expected: reject
                      got: hold (by big)
      code       expected: x
                      got: (not a reject)
      tags       expected: {\"t\"}
                      got: {}
      pre-validate rules:
        big                          hold: big one
PASS  b (tests/b.json)
";
    assert!(shown.contains(expected), "{shown}");
    assert!(shown.contains("tests/c.json: `expect` has unknown field(s) decison"), "{shown}");
    assert!(shown.contains("1 passed, 2 failed"), "{shown}");
}

/// The same case through `capture rules eval` in 100 fresh processes: the same bytes every time,
/// with rules that iterate tables, print tables and fail.
#[test]
fn the_same_case_gives_byte_identical_output_in_100_processes() {
    let dir = scratch("determinism");
    write(
        &dir,
        "a_walk.lua",
        "return { name = 'walk', stage = 'pre-validate', decide = function(ctx)
           local seen = {}
           for k, v in pairs(ctx.metadata) do seen[#seen + 1] = k .. '=' .. tostring(v) end
           local mine = { zeta = 1, alpha = 2, [10] = 'x', [2] = 'y', beta = {} }
           for k, v in pairs(mine) do seen[#seen + 1] = tostring(k) .. ':' .. tostring(v) end
           local d = allow()
           d.tags = { 'b-tag', 'a-tag', 'b-tag' }
           d.notes = { table.concat(seen, ' '), string.format('%s %q %5.2f', {}, 'x\\n', 1 / 3) }
           return d
         end }",
    );
    write(
        &dir,
        "b_fail.lua",
        "return { name = 'fail', stage = 'pre-validate', decide = function(ctx) error({}) end }",
    );
    write(
        &dir,
        "c_adjust.lua",
        "return { name = 'adjust', stage = 'pre-validate', decide = function(ctx) return adjust(capture.minor('99.99')) end }",
    );
    let request = r#"{"platform": "optty", "idempotency_key": "d-1", "amount": "120.00",
        "metadata": {"zulu": 1, "alpha": "a", "mike": true, "echo": "e", "kilo": 0},
        "order": {"id": "D-1", "currency": "USD", "amount": "120.00",
                  "payments": [{"id": "p", "amount": "120.00", "method": "afterpay"}]}}"#;
    write(&dir, "case.json", &format!(r#"{{"request": {request}, "now": "2026-11-21T10:00:00Z"}}"#));
    let started = std::time::Instant::now();
    let first = capture(&[&"rules", &"eval", &dir, &dir.join("case.json")]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let shown = String::from_utf8(first.stdout.clone()).expect("utf-8");
    assert!(
        shown.contains("alpha=a echo=e kilo=0 mike=true zulu=1 2:y 10:x alpha:2 beta:table zeta:1"),
        "{shown}"
    );
    assert!(shown.contains("table \\\"x\\\\\\n\\\"  0.33"), "{shown}");
    assert!(shown.contains("\"error\": \"(error object is a table value)\""), "{shown}");
    assert!(shown.contains("\"tags\": [\n    \"a-tag\",\n    \"b-tag\"\n  ]"), "{shown}");
    for run in 1..100 {
        let again = capture(&[&"rules", &"eval", &dir, &dir.join("case.json")]);
        assert_eq!(again.status.code(), Some(0));
        assert!(
            again.stdout == first.stdout,
            "run {run} differs:\n{}\n---\n{shown}",
            String::from_utf8_lossy(&again.stdout)
        );
    }
    eprintln!("100 runs of `rules eval` in {:?}", started.elapsed());
}

/// Rules from several packs in one set.
fn packs_set(names: &[&str]) -> RuleSet {
    let mut sources = Vec::new();
    for name in names {
        let dir = repo().join("rules").join(name);
        for entry in std::fs::read_dir(&dir).expect("pack") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "lua") {
                let file = path.file_name().expect("name").to_string_lossy().into_owned();
                sources.push((file, std::fs::read_to_string(&path).expect("read")));
            }
        }
    }
    RuleSet::from_sources(sources, RuleLimits::default()).expect("packs load together")
}

#[tokio::test]
async fn post_capture_follow_ups_and_tags_reach_the_report() {
    let emu = emulator().await;
    let rules = packs_set(&["require-tracking", "tag-first-time-customer", "void-remaining"]);
    let version = rules.version().to_owned();
    let engine = engine_with_rules(&emu, rules);
    let request = br#"{
        "platform": "optty", "idempotency_key": "ORD-1002-final", "amount": "50.00",
        "description": "Final parcel",
        "shipping": {"company": "DHL", "method": "Express", "tracking_number": "JD014600003SE"},
        "metadata": {"final_shipment": true, "customer_orders": 0},
        "order": {"id": "ORD-1002", "currency": "USD", "amount": "80.00", "surcharge": "2.50",
                  "payments": [{"id": "pay-1002", "amount": "82.50", "method": "afterpay", "partial_capture": true}]}
    }"#;
    let report = engine.capture_json(request).await.expect("valid request");
    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
    assert_eq!(report.rules_version.as_deref(), Some(version.as_str()));
    assert_eq!(report.tags, ["authorization-remainder", "first-time-customer"]);
    assert_eq!(report.follow_ups.len(), 1);
    let f: Vec<(&str, &str)> = report.follow_ups[0].iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        f,
        [("action", "void_remaining"), ("amount_minor", "3250"), ("currency", "USD"), ("order", "ORD-1002")]
    );
    assert!(
        report.notes.iter().any(|n| n == "require-tracking: shipped with DHL, tracking JD014600003SE"),
        "{:?}",
        report.notes
    );
    let post: Vec<(&str, &str)> = report
        .steps
        .iter()
        .filter(|s| s.source == StepSource::Rule && s.stage == capture_core::Stage::PostCapture)
        .map(|s| (s.name.as_str(), s.verdict.as_str()))
        .collect();
    assert_eq!(post, [("tag-first-time-customer", "observed"), ("void-remaining", "observed")]);
    insta::assert_snapshot!("follow_ups_reach_the_report", stable(&report.to_json(), &emu));
}

/// Recorded captures of the demo (requests and the reports the engine made for them), backtested
/// with another pack through the CLI.
#[tokio::test]
async fn backtest_compares_a_new_rule_set_with_recorded_captures() {
    let emu = emulator().await;
    let engine = engine(&emu);
    let dir = scratch("backtest");
    let mut lines = String::new();
    for name in [
        "full-capture.json",
        "partial-capture.json",
        "held-large-order.json",
        "rejected-missing-tracking.json",
        "over-capture.json",
    ] {
        let body = sample(name);
        let request: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let report = engine.capture_json(&body).await.expect("valid request");
        let report: serde_json::Value = serde_json::from_str(&report.to_json()).expect("report json");
        lines.push_str(&serde_json::json!({ "request": request, "report": report }).to_string());
        lines.push('\n');
    }
    write(&dir, "recorded.jsonl", &lines);
    let out = capture(&[
        &"rules",
        &"backtest",
        &"rules/require-tracking",
        &"--reports",
        &dir.join("recorded.jsonl"),
    ]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    insta::assert_snapshot!("backtest_require_tracking", shown);
    assert!(shown.contains("would now be: 1 allowed, 0 held, 4 rejected, 0 adjusted"), "{shown}");
    assert!(shown.contains("2 of 5 differ from what was recorded"), "{shown}");
    // A report alone needs its request.
    let report_only: String = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            format!("{}\n", v["report"])
        })
        .collect();
    write(&dir, "reports.jsonl", &report_only);
    let out = capture(&[&"rules", &"backtest", &"rules/demo", &"--reports", &dir.join("reports.jsonl")]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("has no recorded request; give its request with --requests"),
        "{}",
        text(&out)
    );
    // ... which --requests gives.
    let requests: String = [
        "full-capture.json",
        "partial-capture.json",
        "held-large-order.json",
        "rejected-missing-tracking.json",
        "over-capture.json",
    ]
    .iter()
    .map(|n| String::from_utf8(sample(n)).expect("utf-8"))
    .collect();
    write(&dir, "requests.json", &requests);
    let out = capture(&[
        &"rules",
        &"backtest",
        &"rules/demo",
        &"--reports",
        &dir.join("reports.jsonl"),
        &"--requests",
        &dir.join("requests.json"),
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("would now be: 3 allowed, 1 held, 1 rejected, 0 adjusted"), "{shown}");
    // The demo rules decided these captures: nothing differs but what the built-in checks refused.
    assert!(shown.contains("1 of 5 differ from what was recorded"), "{shown}");
    assert!(shown.contains("(was rejected by builtin:bounds)  CHANGED"), "{shown}");
}

/// A rule set that holds every capture with its own letter, and tags it after.
fn lettered(letter: &str) -> RuleSet {
    let pre = format!(
        "return {{ name = 'gate-{letter}', stage = 'pre-validate', decide = function(ctx) return hold('set {letter}') end }}"
    );
    let post = format!(
        "return {{ name = 'tag-{letter}', stage = 'post-capture', observe = function(ctx) return observe_result({{ tags = {{ 'set-{letter}' }} }}) end }}"
    );
    RuleSet::from_sources(
        vec![(format!("gate_{letter}.lua"), pre), (format!("tag_{letter}.lua"), post)],
        RuleLimits::default(),
    )
    .expect("loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_sets_swap_atomically_while_captures_run() {
    let emu = emulator().await;
    let (a, b) = (lettered("a"), lettered("b"));
    let (va, vb) = (a.version().to_owned(), b.version().to_owned());
    assert_ne!(va, vb);
    let engine = Arc::new(engine_with_rules(&emu, a));
    assert_eq!(engine.rules_version(), va);
    let request = CaptureRequest::from_json(&sample("full-capture.json")).expect("valid");

    // Captures run on both workers while another task swaps the set back and forth until they
    // are done (an even number of times, so that A is in place at the end).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let engine = Arc::clone(&engine);
        let done = Arc::clone(&done);
        let (va, vb) = (va.clone(), vb.clone());
        tokio::spawn(async move {
            let mut swaps = 0u32;
            while swaps < 20 || !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(engine.swap_rules(lettered("b")), va);
                tokio::task::yield_now().await;
                assert_eq!(engine.swap_rules(lettered("a")), vb);
                tokio::task::yield_now().await;
                swaps += 2;
            }
            swaps
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let engine = Arc::clone(&engine);
        let request = request.clone();
        let (va, vb) = (va.clone(), vb.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            for _ in 0..40 {
                let report = engine.capture(request.clone()).await.expect("captures");
                let version = report.rules_version.clone().expect("a version");
                let letter = match version.as_str() {
                    v if v == va => "a",
                    v if v == vb => "b",
                    other => panic!("unknown version {other}"),
                };
                // One set for the whole capture: the hold, the rule steps and the tag agree.
                assert_eq!(report.tags, [format!("set-{letter}")], "{version}");
                let held_by = match &report.outcome {
                    Outcome::Held { by, reason } => {
                        assert_eq!(reason, &format!("set {letter}"));
                        by.clone()
                    }
                    other => panic!("{other:?}"),
                };
                assert_eq!(held_by, format!("rule:gate-{letter}"));
                let rules: Vec<&str> = report
                    .steps
                    .iter()
                    .filter(|s| s.source == StepSource::Rule)
                    .map(|s| s.name.as_str())
                    .collect();
                assert_eq!(rules, [format!("gate-{letter}"), format!("tag-{letter}")]);
                seen.insert(version);
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    let mut versions = BTreeSet::new();
    for t in tasks {
        versions.extend(t.await.expect("capture task"));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.await.expect("swapper");
    assert!(swaps >= 20, "{swaps} swaps");
    assert_eq!(versions, BTreeSet::from([va.clone(), vb.clone()]), "captures saw both sets");
    // After an even number of swaps the engine is back on A; one more swap moves it to B for
    // every capture that starts afterwards.
    assert_eq!(engine.rules_version(), va);
    assert_eq!(engine.swap_rules(lettered("b")), va);
    let report = engine.capture(request).await.expect("captures");
    assert_eq!(report.rules_version.as_deref(), Some(vb.as_str()));
    assert_eq!(report.tags, ["set-b"]);
    assert!(emu.captures("ORD-1001").is_empty(), "every capture was held");
}
