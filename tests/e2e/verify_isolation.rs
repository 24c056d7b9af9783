//! `capture plugins verify` runs each check in a child process: a plugin that aborts fails the
//! checks that made it abort, the others still run, and a `panic = "abort"` build is named. Also
//! the two checks on what a connector answers: a declared status query that says `unsupported`,
//! and a capture of another amount than asked.

use std::path::{Path, PathBuf};
use std::process::Command;

use capture_conformance::{Options, Verdict};
use serde_json::{Value, json};

use crate::plugins::scratch;
use crate::{artifact, artifacts, plugin_file, repo};

fn verify(file: &Path, fixtures: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = Command::new(artifact("capture"));
    cmd.args(["plugins", "verify"]).arg(file).current_dir(repo());
    if let Some(dir) = fixtures {
        cmd.arg("--fixtures").arg(dir);
    }
    let out = cmd.output().expect("run capture plugins verify");
    (
        out.status.code(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// A golden fixture for the misbehaving plugin whose order id makes it `abort()`.
fn abort_fixtures(dir: &Path) -> PathBuf {
    let fixtures = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).expect("mkdir");
    let good = repo().join("plugins/template/fixtures/capture-request-usd.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(good).expect("read")).expect("json");
    doc["call"]["order_id"] = json!("abort");
    std::fs::write(fixtures.join("abort.json"), doc.to_string()).expect("write");
    fixtures
}

#[test]
fn an_aborting_plugin_fails_its_checks_and_the_others_still_run() {
    let dir = scratch("verify-abort");
    let (code, text) = verify(&plugin_file("fixture_misbehaving"), Some(&abort_fixtures(&dir)));
    assert_eq!(code, Some(20), "{text}");
    assert!(
        text.contains("FAIL  golden-fixtures        the plugin aborted the process (SIGABRT)"),
        "the abort is the golden check's failure:\n{text}"
    );
    // Checks that do not call build_capture with that order still ran to their own verdict.
    assert!(text.contains("FAIL  schema-mismatch"), "{text}");
    assert!(text.contains("garbage-input"), "{text}");
    assert!(text.contains("result: FAIL"), "the validator survived to its result line:\n{text}");
}

#[test]
fn the_library_reports_a_crash_as_a_structured_failure() {
    let dir = scratch("verify-abort-lib");
    let fixtures = abort_fixtures(&dir);
    let file = plugin_file("fixture_misbehaving");
    let options = Options { fixtures: Some(fixtures.clone()), ..Options::default() };
    let report = capture_conformance::verify_isolated(&file, &options, |check| {
        let mut cmd = Command::new(artifact("capture"));
        cmd.args(["plugins", "run-check"])
            .arg(&file)
            .args(["--check", check])
            .arg("--fixtures")
            .arg(&fixtures);
        cmd
    });
    let golden = report.checks.iter().find(|c| c.name == "golden-fixtures").expect("the golden check ran");
    assert_eq!(golden.verdict, Verdict::Fail);
    assert!(golden.summary.contains("SIGABRT"), "{golden:?}");
    assert!(golden.fix.as_deref().is_some_and(|f| f.contains("panic = \"unwind\"")), "{golden:?}");
    assert_eq!(report.checks.len(), capture_conformance::CHECKS.len(), "every check has a result");
    assert!(!report.passed());
}

/// Builds examples/external-connector with `panic = "abort"` (its own target folder).
fn abort_build() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let project = repo().join("examples/external-connector");
    let target = artifacts().parent().expect("target/").join("external-panic-abort");
    let out = Command::new(&cargo)
        .args(["build", "--locked", "--config", "profile.dev.panic=\"abort\"", "--manifest-path"])
        .arg(project.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the panic = \"abort\" fixture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join(format!(
        "{}acme_capture_connector{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

#[test]
fn a_panic_abort_build_is_a_failed_check() {
    let lib = abort_build();
    let (code, text) = verify(&lib, Some(&repo().join("examples/external-connector/fixtures")));
    assert_eq!(code, Some(20), "{text}");
    assert!(
        text.contains("FAIL  panic-strategy         built with panic = \"abort\": any panic in this plugin kills the engine's process"),
        "{text}"
    );
    // Everything else about it is fine.
    assert!(text.contains("result: FAIL (1 of "), "{text}");
}

#[test]
fn a_declared_status_query_that_answers_unsupported_fails() {
    let (code, text) = verify(&plugin_file("fixture_status_unsupported"), None);
    assert_eq!(code, Some(20), "{text}");
    assert!(
        text.contains(
            "FAIL  status-query           the manifest declares a status query that answers `unsupported`"
        ),
        "{text}"
    );
    assert!(text.contains("build_status answered `unsupported`"), "{text}");
    assert!(text.contains("result: FAIL (1 of "), "only that check fails:\n{text}");
    // A plugin that declares none skips the check; those that declare one answer.
    let (_, text) = verify(&plugin_file("template"), None);
    assert!(text.contains("SKIP  status-query           the manifest declares no status query"), "{text}");
    for platform in ["bigcommerce", "medusa", "wix"] {
        let (code, text) = verify(&plugin_file(platform), None);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("PASS  status-query"), "{platform}: {text}");
    }
}

#[test]
fn a_captured_amount_other_than_asked_fails() {
    // A fixture that asks for 50.00 of the template's capture and gets the platform's answer for
    // the full 120.00: the connector reports 120.00 captured, which is not what was asked.
    let dir = scratch("verify-amount");
    let fixtures = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).expect("mkdir");
    let answers = std::fs::read_dir(repo().join("plugins/template/fixtures")).expect("template fixtures");
    let mut written = 0;
    for entry in answers {
        let path = entry.expect("entry").path();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        if doc.get("response").is_some() && doc["result"]["status"] == "captured" {
            let mut doc = doc;
            let asked = "1.00";
            doc["call"]["amount"] = json!(asked);
            doc["call"]["full"] = json!(false);
            if let Some(p) = doc["call"]["payments"].get_mut(0) {
                p["amount"] = json!(asked);
            }
            std::fs::write(fixtures.join("other-amount.json"), doc.to_string()).expect("write");
            written += 1;
            break;
        }
    }
    assert_eq!(written, 1, "the template has a captured answer fixture");
    let (code, text) = verify(&plugin_file("template"), Some(&fixtures));
    assert_eq!(code, Some(20), "{text}");
    assert!(text.contains("FAIL  captured-amount"), "{text}");
    assert!(text.contains("other-amount.json: the call asked for 1.00"), "{text}");
}
