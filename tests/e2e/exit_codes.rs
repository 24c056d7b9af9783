//! Every exit code the `capture --help` table documents, produced by the `capture` binary: one
//! row per case (the command line and the code it must exit with), and the README's table kept
//! equal to the binary's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capture_sandbox::bigcommerce::{BigCommerceConfig, BigCommerceEmulator};
use capture_sandbox::faults::Fault;
use capture_sandbox::medusa::{MedusaConfig, MedusaEmulator};
use capture_sandbox::wix::{WixConfig, WixEmulator};

use crate::plugins::scratch;
use crate::{artifact, emulator, plugin_file, repo};

const NOW: &str = "2026-11-21T09:00:00Z";

/// A configuration with the four connectors this table needs, each pointed at its emulator.
fn write_config(dir: &Path, optty: &str, bigcommerce: &str, wix: &str, medusa: &str) -> PathBuf {
    let plugins: Vec<String> = ["optty", "bigcommerce", "wix", "medusa", "fixture_misbehaving"]
        .iter()
        .map(|p| format!("{:?}", plugin_file(p).display().to_string()))
        .collect();
    let text = format!(
        r#"rules = {rules:?}
plugins = [{plugins}]

[platforms.optty]
base_url = {optty:?}
timeout_ms = 5000
credentials = {{ bearer_token = {{ env = "EXIT_OPTTY_TOKEN" }} }}

[platforms.bigcommerce]
base_url = {bigcommerce:?}
settings = {{ store_hash = "abc123" }}
credentials = {{ access_token = {{ env = "EXIT_BIGCOMMERCE_TOKEN" }} }}

[platforms.wix]
base_url = {wix:?}
credentials = {{ api_key = {{ env = "EXIT_WIX_TOKEN" }} }}

[platforms.medusa]
base_url = {medusa:?}
credentials = {{ api_token = {{ env = "EXIT_MEDUSA_TOKEN" }} }}

[platforms.misbehaving]
base_url = "http://127.0.0.1:9"
credentials = {{ bearer_token = {{ env = "EXIT_OPTTY_TOKEN" }} }}
"#,
        rules = repo().join("rules/demo").display().to_string(),
        plugins = plugins.join(", "),
    );
    let cfg = dir.join("capture.toml");
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

fn run(args: &[OsString], dir: &Path, with_credentials: bool) -> Output {
    let mut cmd = Command::new(artifact("capture"));
    cmd.args(args).current_dir(dir);
    if with_credentials {
        cmd.env("EXIT_OPTTY_TOKEN", crate::TOKEN)
            .env("EXIT_BIGCOMMERCE_TOKEN", "sandbox-bigcommerce-token")
            .env("EXIT_WIX_TOKEN", "sandbox-wix-token")
            .env("EXIT_MEDUSA_TOKEN", "sandbox-medusa-token");
    } else {
        cmd.env_remove("EXIT_OPTTY_TOKEN");
    }
    cmd.output().expect("run capture")
}

fn os(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_exit_code_is_produced() {
    let optty = emulator().await;
    let bigcommerce = BigCommerceEmulator::start(BigCommerceConfig::demo()).await.expect("start");
    let wix = WixEmulator::start(WixConfig::demo()).await.expect("start");
    let medusa = MedusaEmulator::start(MedusaConfig::demo()).await.expect("start");
    let dir = scratch("exit-codes-table");
    let cfg =
        write_config(&dir, &optty.base_url(), &bigcommerce.base_url(), &wix.base_url(), &medusa.base_url());
    // Medusa captures a payment in full: a snapshot understating it gets another amount.
    let understated = dir.join("understated.json");
    std::fs::write(&understated, br#"{"platform":"medusa","idempotency_key":"order_01-capture-1","amount":"full","order":{"id":"order_01","currency":"USD","amount":"110.00","payments":[{"id":"pay_01","amount":"110.00","method":"manual","partial_capture":false}]}}"#).expect("write");
    let request = |name: &str| repo().join("examples/requests").join(name);
    let bad_request = dir.join("bad.json");
    std::fs::write(&bad_request, br#"{"platform":"optty","idempotency_key":"k","amount":"1.234","order":{"id":"O","currency":"USD","amount":"5.00","payments":[{"id":"p","amount":"5.00"}]}}"#).expect("write");
    let panic_request = dir.join("panic.json");
    std::fs::write(&panic_request, br#"{"platform":"misbehaving","idempotency_key":"panic-1","amount":"full","description":"d","metadata":{"customer_orders":0},"order":{"id":"panic","currency":"USD","amount":"5.00","payments":[{"id":"p","amount":"5.00","method":"afterpay","partial_capture":true}]}}"#).expect("write");
    let broken_rules = dir.join("broken-rules");
    std::fs::create_dir_all(&broken_rules).expect("mkdir");
    std::fs::write(broken_rules.join("a.lua"), "return { name = 'a' ").expect("write");
    // A port that is taken, for the environment error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port().to_string();

    let run_req = |file: PathBuf| os(&[&"run", &"--now", &NOW, &"--config", &cfg, &file]);
    // (what, command line, credentials set, exit code). Captures that change the emulators'
    // books come in an order that keeps each one's precondition.
    let cases: Vec<(&str, Vec<OsString>, bool, u8)> = vec![
        ("a full capture", run_req(request("full-capture.json")), true, 0),
        ("a port in use", os(&[&"sandbox", &"--port", &taken_port]), true, 1),
        ("a missing request file", run_req(dir.join("nonexistent.json")), true, 2),
        (
            "a bad --now",
            os(&[&"run", &"--now", &"yesterday", &"--config", &cfg, &request("full-capture.json")]),
            true,
            2,
        ),
        ("a missing rule folder", os(&[&"rules", &"check", &dir.join("no-rules")]), true, 2),
        ("a missing orders file", os(&[&"sandbox", &"--orders", &dir.join("no-orders.json")]), true, 2),
        ("an unknown subcommand", os(&[&"capturez"]), true, 2),
        ("an invalid request", run_req(bad_request.clone()), true, 3),
        ("rejected by a rule", run_req(request("rejected-missing-tracking.json")), true, 4),
        ("held by a rule", run_req(request("held-large-order.json")), true, 5),
        ("refused by the platform", run_req(request("platform-unknown-order.json")), true, 6),
        ("pending at the platform", run_req(request("bigcommerce-full-capture.json")), true, 8),
        ("a missing credential", run_req(request("full-capture.json")), false, 9),
        ("already captured", run_req(request("wix-already-captured.json")), true, 10),
        ("captured, another amount than asked", run_req(understated.clone()), true, 11),
        (
            "verify finds a problem",
            os(&[&"plugins", &"verify", &plugin_file("fixture_misbehaving")]),
            true,
            20,
        ),
        ("a rule folder with a problem", os(&[&"rules", &"check", &broken_rules]), true, 20),
        ("a plugin panic before sending", run_req(panic_request.clone()), true, 21),
    ];
    let mut produced = std::collections::BTreeSet::new();
    for (what, args, credentials, code) in &cases {
        let out = run(args, &dir, *credentials);
        assert_eq!(
            out.status.code(),
            Some(i32::from(*code)),
            "{what}: capture {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        produced.insert(*code);
    }
    // 7: every send answered 503 (Optty's 5xx is retryable: the engine retries, then gives up).
    optty.faults().push((0..10).map(|_| Fault::status(503)));
    let out = run(&run_req(request("partial-capture.json")), &dir, true);
    assert_eq!(out.status.code(), Some(7), "retryable: {}", String::from_utf8_lossy(&out.stderr));
    produced.insert(7);
    optty.faults().clear();
    // 12: those 503s may hide a capture, so the attempt stays unknown and its lease live: at the
    // same time, reconcile cannot take it and says the order stays blocked.
    let out = run(&os(&[&"reconcile", &"--now", &NOW, &"--config", &cfg]), &dir, true);
    assert_eq!(out.status.code(), Some(12), "blocked: {}", String::from_utf8_lossy(&out.stdout));
    produced.insert(12);

    // Every code of the table was produced, and no other.
    let documented: std::collections::BTreeSet<u8> = help_table().iter().map(|(c, _)| *c).collect();
    assert_eq!(produced, documented, "produced codes vs. `capture --help`");
    drop(taken);
}

/// The `capture --help` table: (code, meaning).
fn help_table() -> Vec<(u8, String)> {
    let out = Command::new(artifact("capture")).arg("--help").output().expect("capture --help");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let table = text.split("Exit codes").nth(1).expect("an exit code table in --help").to_owned();
    table
        .lines()
        .filter_map(|l| {
            let (code, meaning) = l.trim().split_once("  ")?;
            Some((code.parse().ok()?, meaning.trim().to_owned()))
        })
        .collect()
}

#[test]
fn the_readme_table_is_the_binarys_table() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let rows: Vec<(u8, String)> = readme
        .split("### Exit codes")
        .nth(1)
        .expect("an exit code section")
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", code, meaning, ""] => Some((code.parse().ok()?, (*meaning).to_owned())),
                _ => None,
            }
        })
        .collect();
    assert_eq!(rows, help_table(), "README.md's exit code table differs from `capture --help`");
}
