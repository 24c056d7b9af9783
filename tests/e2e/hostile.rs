//! The hostile-input table (issue 10): requests, configurations, rules and plugins built to
//! break the engine, each with what it must end in. Tests as data: every case goes through one
//! [`check`]; the cases that need a live platform share one Optty emulator.
//!
//! Requests, configurations and rules go through the `capture` binary in a separate process (the
//! exit code and the output are what a caller sees); plugin files through [`Plugin::load`];
//! plugin calls through an engine on the misbehaving fixture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use capture_core::{FailureKind, Outcome};
use capture_engine::{LoadOptions, Plugin, PluginLoadError};
use capture_sandbox::OpttyEmulator;

use crate::plugins::scratch;
use crate::{TOKEN, artifact, emulator, optty_plugin, plugin_file, repo};

const TOKEN_VAR: &str = "CAPTURE_E2E_HOSTILE_TOKEN";

/// What goes in.
enum Input {
    /// A request body given to `capture run` (the Optty platform on the emulator).
    Request(Vec<u8>),
    /// A configuration file (`{base}` is the emulator's URL, `{plugin}` the Optty plugin) and a
    /// valid request.
    Config(String),
    /// A rule file put in a folder with one test case that expects `allow`; `capture rules test`.
    RuleTest(&'static str),
    /// A rule file alone; `capture rules check`.
    RuleCheck(String),
    /// A plugin file made in a scratch folder; `Plugin::load`.
    PluginFile(fn(&Path) -> PathBuf),
    /// A capture on the misbehaving fixture of this order id (call deadline 500 ms).
    FixtureCall(&'static str),
}

/// What must come out.
enum Expect {
    /// The process exits with this code; its standard error (or output) contains the text and the
    /// emulator received no capture.
    Exit(i32, &'static str),
    /// The process output contains the text, has no raw control character (ESC, CR, NUL), and no
    /// line of it starts with `PASS  forged`.
    EscapedOutput(&'static str),
    /// `Plugin::load` fails with this error (the variant's name) and text.
    LoadError(&'static str, &'static str),
    /// The capture fails as a connector failure with nothing sent, its message containing the text.
    ConnectorFailure(&'static str),
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

fn case(name: &'static str, input: Input, expect: Expect) -> Case {
    Case { name, input, expect }
}

/// A valid request for the emulator's demo order ORD-1001, with `edit` applied to its text.
fn request(edit: impl Fn(String) -> String) -> Input {
    let text = r#"{"platform":"optty","idempotency_key":"hostile-1","amount":"10.00",
        "order":{"id":"ORD-1001","currency":"USD","amount":"120.00",
                 "payments":[{"id":"pay-1001","amount":"120.00"}]}}"#;
    Input::Request(edit(text.to_owned()).into_bytes())
}

fn order_id(id: &str) -> impl Fn(String) -> String + '_ {
    move |t| t.replace(r#""id":"ORD-1001""#, &format!(r#""id":{}"#, serde_json::Value::String(id.into())))
}

fn key(k: &str) -> impl Fn(String) -> String + '_ {
    move |t| t.replace(r#""hostile-1""#, &serde_json::Value::String(k.into()).to_string())
}

fn top(extra: &str) -> impl Fn(String) -> String + '_ {
    move |t| t.replacen('{', &format!("{{{extra},"), 1)
}

const CONFIG_TAIL: &str = "\n[platforms.optty]\nbase_url = \"{base}\"\ncredentials = { bearer_token = { env = \"CAPTURE_E2E_HOSTILE_TOKEN\" } }\n";

fn config(head: &str, base: &str) -> Input {
    Input::Config(format!("{head}\n{}", CONFIG_TAIL.replace("{base}", base)))
}

fn rule_returning(body: &'static str) -> Input {
    Input::RuleTest(body)
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let plugins = "plugins = [\"{plugin}\"]";
    vec![
        // ---- requests: trailing input (finding 3) ----
        case(
            "trailing garbage",
            request(|t| format!("{t}this is not JSON {{{{{{")),
            Exit(3, "input continues after the request document"),
        ),
        case("two concatenated documents", request(|t| format!("{t}{t}")), Exit(3, "exactly one JSON document")),
        case("a number after the document", request(|t| format!("{t}\n42\n")), Exit(3, "trailing characters")),
        // ---- requests: path traversal through ids (finding 2) ----
        case("order id `..`", request(order_id("..")), Exit(21, "dot segments")),
        case("order id `.`", request(order_id(".")), Exit(21, "dot segments")),
        // ---- requests: sizes and characters (finding 8) ----
        case("order id of 10 MB", request(order_id(&"a".repeat(10_000_000))), Exit(3, "limit is 1048576 bytes")),
        case("order id of 256 bytes", request(order_id(&"a".repeat(256))), Exit(3, "`order.id`: is 256 bytes; the limit is 255")),
        case("order id with CR LF", request(order_id("ORD\r\nX-Injected: 1")), Exit(3, "`order.id`: contains the control")),
        case("order id with an ANSI escape", request(order_id("\u{1b}[2J")), Exit(3, "U+001B")),
        case("key with NUL", request(key("k\u{0}1")), Exit(3, "`idempotency_key`: character U+0000")),
        case("key with CR LF", request(key("k\r\n1")), Exit(3, "`idempotency_key`: character U+000D")),
        case("key with a right-to-left override", request(key("k\u{202e}1")), Exit(3, "U+202E")),
        case("key with a zero-width space", request(key("k\u{200b}1")), Exit(3, "U+200B")),
        case("key with a space", request(key("k 1")), Exit(3, "U+0020")),
        case("key of 256 bytes", request(key(&"k".repeat(256))), Exit(3, "limit is 255 bytes")),
        case("description of 1001 bytes", request(|t| top(&format!(r#""description":"{}""#, "d".repeat(1001)))(t)), Exit(3, "`description`: is 1001 bytes")),
        case(
            "65 metadata keys",
            request(|t| {
                let keys: Vec<String> = (0..65).map(|i| format!(r#""k{i}":1"#)).collect();
                top(&format!(r#""metadata":{{{}}}"#, keys.join(",")))(t)
            }),
            Exit(3, "`metadata`: has 65 entries; the limit is 64"),
        ),
        case("nested metadata", request(|t| top(r#""metadata":{"a":{"b":1}}"#)(t)), Exit(3, "depth of 1")),
        case("metadata value of 1025 bytes", request(|t| top(&format!(r#""metadata":{{"a":"{}"}}"#, "v".repeat(1025)))(t)), Exit(3, "limit is 1024")),
        case("a 251st payment", request(|t| {
            let p: Vec<String> = (0..251).map(|i| format!(r#"{{"payment_id":"p{i}","amount":"1.00"}}"#)).collect();
            top(&format!(r#""payments":[{}]"#, p.join(",")))(t)
        }), Exit(3, "`payments`: has 251 entries; the limit is 250")),
        // ---- configurations (finding 4 and more) ----
        case(
            "a password in base_url",
            Input::Config(format!("{plugins}\n{}", CONFIG_TAIL.replace("{base}", "http://user:CANARY-PASSWORD@127.0.0.1:9"))),
            Exit(9, "credentials never go in the URL"),
        ),
        case(
            "a user name in base_url",
            Input::Config(format!("{plugins}\n{}", CONFIG_TAIL.replace("{base}", "http://operator@127.0.0.1:9"))),
            Exit(9, "has a user name in it"),
        ),
        case("a base_url that is not a URL", config(plugins, "not a url"), Exit(9, "not an absolute URL")),
        case("a plugin that is a directory", config("plugins = [\"/tmp\"]", "http://127.0.0.1:9"), Exit(9, "is a directory, not a library file")),
        case("a plugin that is a text file", config("plugins = [\"/etc/passwd\"]", "http://127.0.0.1:9"), Exit(9, "not a shared library")),
        case("an unknown key", config("plugins = []\nplugin_timeout = 1", "http://127.0.0.1:9"), Exit(9, "unknown field `plugin_timeout`")),
        // ---- rules: freezing (finding 6) and forging output (finding 7) ----
        case(
            "string.rep of the empty string, maxinteger times",
            rule_returning("local s = string.rep('', math.maxinteger) return allow()"),
            EscapedOutput("instruction budget exceeded"),
        ),
        case(
            "a reason that clears the screen and forges a line",
            rule_returning("return hold('\\27[2J\\27[H\\r\\nPASS  forged test line')"),
            EscapedOutput("\\u{1b}[2J\\u{1b}[H\\r\\nPASS  forged test line"),
        ),
        case(
            "a reject code with NUL and a bidi override",
            rule_returning("return reject('c\\0\\u{202E}x', 'r')"),
            EscapedOutput("c\\0\\u{202e}x"),
        ),
        case(
            "an error message with C1 controls",
            rule_returning("error('\\u{9B}31mred')"),
            EscapedOutput("\\u{9b}31mred"),
        ),
        case(
            "string.rep of the empty string at file level",
            Input::RuleCheck(
                "local s = string.rep('', math.maxinteger)\nreturn { name = 'freeze', stage = 'pre-validate', decide = function() return allow() end }".into(),
            ),
            Exit(20, "instruction budget exceeded"),
        ),
        case(
            "a rule name of 1 MiB",
            Input::RuleCheck(format!(
                "return {{ name = '{}', stage = 'pre-validate', decide = function() return allow() end }}",
                "a".repeat(1 << 20)
            )),
            Exit(20, "the limit is 64 bytes"),
        ),
        // ---- plugin files (finding 9) ----
        case("a directory", Input::PluginFile(|d| d.to_path_buf()), LoadError("NotAFile", "is a directory")),
        case("a FIFO", Input::PluginFile(fifo), LoadError("NotAFile", "is a FIFO (named pipe)")),
        case(
            "a text file",
            Input::PluginFile(|d| write(d, "libtext.so", b"#!/bin/sh\necho not a library\n")),
            LoadError("NotALibrary", "text file, not an ELF shared library (dynamic loader: dlopen failed: "),
        ),
        case(
            "an empty file",
            Input::PluginFile(|d| write(d, "libempty.so", b"")),
            LoadError("NotALibrary", "the file is empty (dynamic loader: dlopen failed: "),
        ),
        case(
            "random bytes",
            Input::PluginFile(|d| write(d, "librandom.so", &(0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<_>>())),
            LoadError("NotALibrary", "invalid ELF header"),
        ),
        case(
            "an executable",
            Input::PluginFile(|d| {
                let exe = std::fs::read("/bin/true").expect("/bin/true");
                write(d, "libexe.so", &exe)
            }),
            LoadError("", "connector plugin"),
        ),
        case(
            "the entry symbol as data",
            Input::PluginFile(|d| crate::abi::descriptor_fixture(d, Some("FIXTURE_ENTRY_DATA"))),
            LoadError("EntryNotFunction", "`capture_connector_entry` is a data object, not a function"),
        ),
        case(
            "no entry symbol: the loader's reason",
            Input::PluginFile(|d| crate::abi::descriptor_fixture(d, Some("FIXTURE_NO_ENTRY"))),
            LoadError("MissingEntry", "undefined symbol: capture_connector_entry"),
        ),
        // ---- plugin calls (findings 2 and 9) ----
        case("a call over its deadline", Input::FixtureCall("slow"), ConnectorFailure("did not return from build_capture within 500 ms")),
        case("a URL with `/../`", Input::FixtureCall("dot-segment"), ConnectorFailure("has the dot segment `..`")),
        case("a URL with `/%2E%2e/`", Input::FixtureCall("encoded-dot-segment"), ConnectorFailure("has the dot segment `%2E%2e`")),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn fifo(dir: &Path) -> PathBuf {
    let p = dir.join("libfifo.so");
    let status = Command::new("mkfifo").arg(&p).status().expect("mkfifo");
    assert!(status.success(), "mkfifo failed");
    p
}

/// Runs the capture binary; stdout and stderr together.
fn run(args: &[&std::ffi::OsStr], dir: &Path) -> (Option<i32>, String) {
    let out: Output = Command::new(artifact("capture"))
        .args(args)
        .current_dir(dir)
        .env(TOKEN_VAR, TOKEN)
        .output()
        .expect("run capture");
    (
        out.status.code(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// Feeds one case in and checks what comes out.
async fn check(c: &Case, emu: &OpttyEmulator, index: usize) {
    let dir = scratch(&format!("hostile-{index}"));
    let name = c.name;
    let plugin = optty_plugin().display().to_string();
    let outcome: Result<(Option<i32>, String), Result<Plugin, PluginLoadError>> = match &c.input {
        Input::Request(body) => {
            let cfg = dir.join("capture.toml");
            let text = format!("plugins = [{plugin:?}]\n{}", CONFIG_TAIL.replace("{base}", &emu.base_url()));
            std::fs::write(&cfg, text).expect("config");
            let req = dir.join("request.json");
            std::fs::write(&req, body).expect("request");
            Ok(run(&["run".as_ref(), "--config".as_ref(), cfg.as_os_str(), req.as_os_str()], &dir))
        }
        Input::Config(text) => {
            let cfg = dir.join("capture.toml");
            std::fs::write(&cfg, text.replace("{plugin}", &plugin)).expect("config");
            let req = repo().join("examples/requests/full-capture.json");
            Ok(run(&["run".as_ref(), "--config".as_ref(), cfg.as_os_str(), req.as_os_str()], &dir))
        }
        Input::RuleTest(body) => {
            let rule = format!(
                "return {{ name = 'hostile', stage = 'pre-validate', decide = function(ctx)\n  {body}\nend }}\n"
            );
            std::fs::write(dir.join("hostile.lua"), rule).expect("rule");
            std::fs::create_dir_all(dir.join("tests")).expect("tests dir");
            let case = r#"{"name": "hostile is allowed", "request": {"platform":"optty","idempotency_key":"k1","amount":"10.00",
                "order":{"id":"O1","currency":"USD","amount":"100.00","payments":[{"id":"p1","amount":"100.00"}]}},
                "expect": {"decision": "allow"}}"#;
            std::fs::write(dir.join("tests/case.json"), case).expect("case");
            Ok(run(&["rules".as_ref(), "test".as_ref(), dir.as_os_str()], &dir))
        }
        Input::RuleCheck(text) => {
            std::fs::write(dir.join("hostile.lua"), text).expect("rule");
            Ok(run(&["rules".as_ref(), "check".as_ref(), dir.as_os_str()], &dir))
        }
        Input::PluginFile(make) => Err(Plugin::load(&make(&dir))),
        Input::FixtureCall(order) => {
            let bad = Plugin::load_with(
                &plugin_file("fixture_misbehaving"),
                &LoadOptions::default().call_timeout(Duration::from_millis(500)),
            )
            .expect("the fixture loads");
            let bad = Arc::new(bad);
            let engine = crate::abi::engine_with(vec![bad.clone()], &[("misbehaving", &emu.base_url())]);
            let report = engine
                .capture_json(&crate::abi::request("misbehaving", order, "10.00", order))
                .await
                .expect("a valid request");
            let Expect::ConnectorFailure(words) = c.expect else {
                panic!("{name}: a fixture call expects a failure")
            };
            match &report.outcome {
                Outcome::Failed { kind: FailureKind::Connector, message, .. } => {
                    assert!(message.contains(words), "{name}: `{words}` missing from {message}");
                    assert!(message.ends_with("(nothing was sent)"), "{name}: {message}");
                }
                other => panic!("{name}: expected a connector failure, got {other:?}"),
            }
            assert!(report.exchanges.is_empty(), "{name}: nothing may be sent");
            if *order == "slow" {
                // Unhealthy from now on: the next call fails at once, without calling the plugin.
                let reason = bad.unhealthy().expect("the plugin is marked unhealthy");
                assert!(reason.contains("build_capture did not return within 500 ms"), "{reason}");
                let again = engine
                    .capture_json(&crate::abi::request("misbehaving", "ORD-1001", "10.00", "after-slow"))
                    .await
                    .expect("valid");
                let text = again.to_json();
                assert!(text.contains("is unhealthy: build_capture did not return within 500 ms"), "{text}");
                assert!(again.exchanges.is_empty());
            }
            return;
        }
    };
    match (&c.expect, outcome) {
        (Expect::Exit(code, words), Ok((got, text))) => {
            assert_eq!(got, Some(*code), "{name}: exit code; output:\n{}", capture_core::text::escape(&text));
            assert!(
                text.contains(words),
                "{name}: `{words}` missing from:\n{}",
                capture_core::text::escape(&text)
            );
            assert!(!text.contains("CANARY-PASSWORD"), "{name}: the password leaked: {text}");
        }
        (Expect::EscapedOutput(words), Ok((_, text))) => {
            assert!(
                text.contains(words),
                "{name}: `{words}` missing from:\n{}",
                capture_core::text::escape(&text)
            );
            for raw in ['\u{1b}', '\r', '\0', '\u{9b}', '\u{202e}'] {
                assert!(
                    !text.contains(raw),
                    "{name}: raw {raw:?} in:\n{}",
                    capture_core::text::escape(&text)
                );
            }
            assert!(!text.lines().any(|l| l.starts_with("PASS  forged")), "{name}: a forged line:\n{text}");
        }
        (Expect::LoadError(variant, words), Err(result)) => {
            let err = result.expect_err(name);
            let debug = format!("{err:?}");
            assert!(debug.starts_with(variant), "{name}: expected {variant}, got {debug}");
            let text = err.to_string();
            assert!(text.contains(words), "{name}: `{words}` missing from {text}");
        }
        _ => panic!("{name}: the input and the expectation do not go together"),
    }
    assert!(emu.captures("ORD-1001").is_empty(), "{name}: nothing may be captured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_input_is_refused_contained_or_escaped() {
    let emu = emulator().await;
    let cases = cases();
    for (i, c) in cases.iter().enumerate() {
        check(c, &emu, i).await;
    }
    // As many cases again as the issue's findings, across requests, configs, rules and plugins.
    assert!(cases.len() >= 40, "{}", cases.len());
}

/// Finding 1: a bare plugin name in a pinned entry opens the file beside the configuration, the
/// one that was hashed, never a library of that name on `LD_LIBRARY_PATH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_bare_plugin_name_loads_the_hashed_file_not_one_on_the_library_path() {
    let emu = emulator().await;
    let dir = scratch("hostile-bare-name");
    let elsewhere = scratch("hostile-bare-name-elsewhere");
    std::fs::copy(optty_plugin(), dir.join("libmyoptty.so")).expect("copy");
    // Another library of the same name on the library path: the misbehaving fixture (id `misbehaving`).
    std::fs::copy(plugin_file("fixture_misbehaving"), elsewhere.join("libmyoptty.so")).expect("copy");
    let pin = capture_engine::sha256_file(&optty_plugin()).expect("hash");
    let cfg = format!(
        "plugins = [{{ path = \"libmyoptty.so\", sha256 = \"{pin}\" }}]\n{}",
        CONFIG_TAIL.replace("{base}", &emu.base_url())
    );
    std::fs::write(dir.join("capture.toml"), cfg).expect("config");
    let req = repo().join("examples/requests/full-capture.json");
    let out = Command::new(artifact("capture"))
        .args(["run", "--config", "capture.toml"])
        .arg(&req)
        .current_dir(&dir)
        .env("LD_LIBRARY_PATH", &elsewhere)
        .env(TOKEN_VAR, TOKEN)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["connector"]["id"], "optty", "{report}");
}

/// Finding 2, the record: the URL in the report is the one sent (its parsed form), not the text
/// the connector wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_url_is_the_url_sent() {
    let emu = emulator().await;
    let bad = Arc::new(Plugin::load(&plugin_file("fixture_misbehaving")).expect("the fixture loads"));
    let engine = crate::abi::engine_with(vec![bad], &[("misbehaving", &emu.base_url())]);
    let order = "unnormalized-url";
    let report =
        engine.capture_json(&crate::abi::request("misbehaving", order, "10.00", order)).await.expect("valid");
    let sent = format!("{}/orders/unnormalized-url/capture", emu.base_url());
    assert_eq!(report.exchanges.len(), 1, "{}", report.to_json());
    assert_eq!(report.exchanges[0].request.url, sent);
    let step = report.steps.iter().find(|s| s.name == "misbehaving.build_capture").expect("build step");
    assert_eq!(step.detail.as_deref(), Some(format!("POST {sent}").as_str()));
}

/// `capture plugins inspect` says whether the plugin answers within its deadline.
#[test]
fn inspect_shows_the_plugins_health() {
    let (code, text) = run(&["plugins".as_ref(), "inspect".as_ref(), optty_plugin().as_os_str()], &repo());
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "health         healthy (a probe call was refused, as expected, within the 2000 ms deadline)"
        ),
        "{text}"
    );
}

/// Finding 7 on `capture run`: a rule's hold reason reaches standard error escaped, while the JSON
/// report keeps it exactly (JSON escapes it its own way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_run_escapes_a_forged_reason_on_standard_error() {
    let emu = emulator().await;
    let dir = scratch("hostile-run-stderr");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(
        rules.join("forge.lua"),
        "return { name = 'forge', stage = 'pre-validate', decide = function(ctx)\n  return hold('\\27[2J\\r\\nPASS  forged')\nend }\n",
    )
    .expect("rule");
    let cfg = format!(
        "rules = \"rules\"\nplugins = [{:?}]\n{}",
        optty_plugin().display().to_string(),
        CONFIG_TAIL.replace("{base}", &emu.base_url())
    );
    std::fs::write(dir.join("capture.toml"), cfg).expect("config");
    let out = Command::new(artifact("capture"))
        .args(["run", "--config"])
        .arg(dir.join("capture.toml"))
        .arg(repo().join("examples/requests/full-capture.json"))
        .env(TOKEN_VAR, TOKEN)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("\\u{1b}[2J\\r\\nPASS  forged"), "{stderr}");
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\r'), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["outcome"]["reason"], "\u{1b}[2J\r\nPASS  forged", "{report}");
}

/// Plugin outputs are bounded (LIMITS.md): an id over its limit is refused, a long message cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_results_are_bounded() {
    let emu = emulator().await;
    let bad = Arc::new(Plugin::load(&plugin_file("fixture_misbehaving")).expect("the fixture loads"));
    let engine = crate::abi::engine_with(vec![bad], &[("misbehaving", &emu.base_url())]);
    let report = engine
        .capture_json(&crate::abi::request("misbehaving", "parse-long-id", "10.00", "long-id"))
        .await
        .expect("valid");
    let text = report.to_json();
    assert!(text.contains("platform_capture_id is 300 bytes; the limit is 255"), "{text}");
    assert_eq!(report.outcome.status(), "failed", "{text}");
    let report = engine
        .capture_json(&crate::abi::request("misbehaving", "parse-long-message", "10.00", "long-message"))
        .await
        .expect("valid");
    match &report.outcome {
        Outcome::Failed { message, .. } => {
            assert_eq!(message.len(), 1000 + '…'.len_utf8(), "{message}");
            assert!(message.ends_with('…'));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
