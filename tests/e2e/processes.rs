//! The `capture` binary in separate processes: byte-identical reports, documented exit codes.

use std::path::Path;
use std::process::{Command, Output};

use crate::plugins::scratch;
use crate::{artifact, emulator, optty_plugin, repo, sample};

const NOW: &str = "2026-11-21T09:00:00Z";
const TOKEN_VAR: &str = "CAPTURE_E2E_OPTTY_TOKEN";

fn write_config(dir: &Path, base_url: &str) -> std::path::PathBuf {
    let cfg = dir.join("capture.toml");
    let text = format!(
        "rules = {rules:?}\nplugins = [{plugin:?}]\n\n[platforms.optty]\nbase_url = {base_url:?}\ntimeout_ms = 5000\ncredentials = {{ bearer_token = {{ env = {TOKEN_VAR:?} }} }}\n",
        rules = repo().join("rules/demo").display().to_string(),
        plugin = optty_plugin().display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

fn capture_run(cfg: &Path, request: &str) -> Output {
    Command::new(artifact("capture"))
        .args(["run", "--now", NOW, "--config"])
        .arg(cfg)
        .arg(repo().join("examples/requests").join(request))
        .env(TOKEN_VAR, crate::TOKEN)
        .output()
        .expect("run capture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_capture_in_two_processes_gives_byte_identical_reports() {
    let emu = emulator().await;
    // Each process gets a fresh ledger (capture.db next to its configuration), so the second is
    // a new capture, not a replay of the first.
    let cfg1 = write_config(&scratch("two-processes-1"), &emu.base_url());
    let cfg2 = write_config(&scratch("two-processes-2"), &emu.base_url());

    let first = capture_run(&cfg1, "partial-capture.json");
    assert_eq!(first.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(emu.captures("ORD-1002").len(), 1);

    emu.reset();
    let second = capture_run(&cfg2, "partial-capture.json");
    assert_eq!(second.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&second.stderr));
    assert!(!first.stdout.is_empty());
    assert_eq!(first.stdout, second.stdout, "reports differ between processes");

    // A third process on the first ledger replays the recorded outcome and sends nothing.
    let replay = capture_run(&cfg1, "partial-capture.json");
    assert_eq!(replay.status.code(), Some(0));
    let replayed: serde_json::Value = serde_json::from_slice(&replay.stdout).expect("JSON report");
    assert_eq!(replayed["exchanges"].as_array().map(Vec::len), Some(0));
    assert_eq!(emu.captures("ORD-1002").len(), 1);

    // And the in-process engine, on the same emulator and a fresh ledger, writes the very same bytes.
    emu.reset();
    let store = std::sync::Arc::new(
        capture_engine::store::SqliteStore::open(&scratch("two-processes-3").join("capture.db"))
            .expect("ledger"),
    );
    let plugin = capture_engine::Plugin::load(&optty_plugin()).expect("plugin");
    let engine = capture_engine::Engine::builder()
        .plugin(std::sync::Arc::new(plugin))
        .expect("plugin")
        .rules(
            capture_engine::RuleSet::load_dir(&repo().join("rules/demo"), Default::default()).expect("rules"),
        )
        .clock(std::sync::Arc::new(capture_engine::FixedClock(crate::test_time())))
        .store(store)
        .platform(
            "optty",
            capture_engine::PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: emu.base_url(),
                timeout: std::time::Duration::from_secs(5),
                settings: Default::default(),
                credentials: [("bearer_token".to_owned(), capture_engine::Secret::new(crate::TOKEN))].into(),
            },
        )
        .build()
        .expect("engine");
    let report = engine.capture_json(&sample("partial-capture.json")).await.expect("valid");
    assert_eq!(String::from_utf8_lossy(&first.stdout), report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_the_outcome() {
    let emu = emulator().await;
    let dir = scratch("exit-codes");
    let cfg = write_config(&dir, &emu.base_url());
    for (request, code) in [
        ("full-capture.json", 0),
        ("rejected-missing-tracking.json", 4),
        ("held-large-order.json", 5),
        ("platform-unknown-order.json", 6),
    ] {
        let out = capture_run(&cfg, request);
        assert_eq!(out.status.code(), Some(code), "{request}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report on stdout");
        assert_eq!(report["schema"], "capture-report/1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_exits_3_naming_the_field() {
    let dir = scratch("bad-request");
    let cfg = write_config(&dir, "http://127.0.0.1:9");
    let req = dir.join("bad.json");
    std::fs::write(&req, br#"{"platform":"optty","idempotency_key":"k","amount":"1.234","order":{"id":"O","currency":"USD","amount":"5.00","payments":[{"id":"p","amount":"5.00"}]}}"#).expect("write");
    let out = Command::new(artifact("capture"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(&req)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid field `amount`: 1.234 has 3 decimal places but USD allows 2"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_credential_exits_9_naming_the_variable() {
    let dir = scratch("no-credential");
    let cfg = write_config(&dir, "http://127.0.0.1:9");
    let out = Command::new(artifact("capture"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg(repo().join("examples/requests/full-capture.json"))
        .env_remove(TOKEN_VAR)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(9));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(TOKEN_VAR), "{stderr}");
}

#[test]
fn the_demo_runs_every_scenario() {
    let out = Command::new(artifact("capture")).arg("demo").current_dir(repo()).output().expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "full capture",
        "held by a rule",
        "rejected by a rule",
        "refused by the platform (400)",
        "ORD-1001: cap_ORD-1001_1 120.00",
        "BigCommerce: status query, the capture settled",
        "Medusa: 200 but requires_action is a failure",
        "Wix: PAYMENT_ALREADY_CAPTURED",
        "same key again: replayed, nothing sent",
        "answer lost, resolved by the same key",
    ] {
        assert!(stdout.contains(needle), "demo output lacks `{needle}`:\n{stdout}");
    }
}
