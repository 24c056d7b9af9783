//! `capture-fuzz`: the bodies of the fuzz targets, one function per target.
//!
//! Each function takes the fuzzer's bytes and must neither panic nor hang, whatever they are;
//! where a property holds for every accepted input it is asserted (a parsed request survives its
//! wire form unchanged, a refused input names its problem). Two users:
//!
//! - `libfuzzer/` (its own workspace, not built by `cargo build --workspace`): one libFuzzer
//!   binary per target, `cargo fuzz`-style (`crates/fuzz/README.md` says how to run them);
//! - `tests/corpus.rs`: every file of `corpus/<target>/` replayed as an ordinary test, so CI
//!   exercises the targets without a fuzzer.
//!
//! ```
//! capture_fuzz::run("request", br#"{"platform":"optty"}"#);
//! ```
#![warn(missing_docs)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use capture_core::CaptureRequest;
use capture_engine::plugin::fuzz;
use capture_engine::{EngineConfig, Plugin, PluginFunction};

/// The targets, by name (the corpus folder and the libFuzzer binary have the same names).
pub const TARGETS: &[&str] = &[
    "request",
    "config",
    "plugin_output",
    "manifest",
    "elf",
    "url",
    "rule_decision",
    "connector_optty",
    "connector_bigcommerce",
    "connector_medusa",
    "connector_wix",
];

/// Runs target `name` on `data`. Panics on an unknown name (and wherever a target finds a bug).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "request" => request(data),
        "config" => config(data),
        "plugin_output" => plugin_output(data),
        "manifest" => manifest(data),
        "elf" => elf(data),
        "url" => url(data),
        "rule_decision" => rule_decision(data),
        "connector_optty" => connector("optty", data),
        "connector_bigcommerce" => connector("bigcommerce", data),
        "connector_medusa" => connector("medusa", data),
        "connector_wix" => connector("wix", data),
        other => panic!("no fuzz target `{other}`"),
    }
}

/// Request parsing and validation: an accepted request reads back the same from its wire form.
pub fn request(data: &[u8]) {
    match CaptureRequest::from_json(data) {
        Ok(req) => {
            let wire = req.to_wire_json().to_string();
            let again = CaptureRequest::from_json(wire.as_bytes())
                .unwrap_or_else(|e| panic!("the wire form of an accepted request is refused: {e}\n{wire}"));
            assert_eq!(again, req, "the wire form changes the request");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The TOML configuration: parse, then the checks that need no file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = EngineConfig::parse(text)
        && let Err(e) = cfg.check()
    {
        assert!(e.to_string().starts_with("invalid configuration"), "{e}");
    }
}

/// The plugin output decoder: the first byte is the status code, the rest the buffer (no byte:
/// a null buffer).
pub fn plugin_output(data: &[u8]) {
    let (status, bytes) = match data.split_first() {
        Some((s, rest)) => (i32::from(*s % 4), Some(rest)),
        None => (0, None),
    };
    for result in fuzz::decode_output(status, bytes) {
        if let Err(e) = result {
            assert!(
                e.to_string().contains("fuzz.so") || e.to_string().starts_with("connector refused"),
                "{e}"
            );
        }
    }
}

/// Manifest decoding and validation.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = fuzz::manifest(data) {
        assert!(!m.id.is_empty() && m.id.len() <= 64, "an accepted manifest has a valid id");
    }
}

/// The loader's ELF checks (not a library, truncated, the entry symbol's type).
pub fn elf(data: &[u8]) {
    if let Err(problem) = fuzz::elf(data) {
        assert!(!problem.is_empty());
    }
}

/// The URL check of a built request: an accepted URL has no dot segment once parsed either.
pub fn url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if fuzz::url_path_problem(text).is_none()
        && let Some((_, rest)) = text.split_once("://")
        && let Some(at) = rest.find('/')
    {
        let path = rest[at..].split(['?', '#']).next().unwrap_or("");
        assert!(!path.split('/').any(|s| s == ".." || s == "."), "{text}");
    }
}

/// The Lua decision conversion: the bytes are the expression a rule's `decide` returns.
pub fn rule_decision(data: &[u8]) {
    let Ok(expr) = std::str::from_utf8(data) else { return };
    if expr.contains("_ENV") {
        return; // refused at load, by name
    }
    let source = format!(
        "return {{ name = 'fuzz', stage = 'pre-validate', decide = function(ctx)\n return ({expr}\n) end }}"
    );
    let limits = capture_rules::Limits { instructions: 20_000, ..capture_rules::Limits::default() };
    let Ok(rules) = capture_rules::RuleSet::from_sources(vec![("fuzz.lua".into(), source)], limits) else {
        return;
    };
    let req = sample_request();
    let amount = match req.amount {
        capture_core::RequestedAmount::Exact(m) => m,
        capture_core::RequestedAmount::Full => req.order.amount,
    };
    let ctx = capture_rules::RuleContext { request: &req, amount, capturable: req.order.amount, now: now() };
    for v in rules.decide(&ctx) {
        // A failed rule fails closed: a hold that names it.
        if let Some(e) = &v.error {
            assert!(
                matches!(&v.decision, capture_core::Decision::Hold { reason } if reason.contains("fuzz")),
                "{e}"
            );
        }
    }
}

fn sample_request() -> CaptureRequest {
    CaptureRequest::from_json(
        br#"{"platform":"optty","idempotency_key":"k1","amount":"10.00","metadata":{"n":1},
            "order":{"id":"O1","currency":"USD","amount":"100.00","payments":[{"id":"p1","amount":"100.00"}]}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn now() -> capture_core::Timestamp {
    capture_core::Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap_or_else(|e| panic!("{e}"))
}

/// Where the plugins are: `CAPTURE_FUZZ_PLUGINS`, else this workspace's `target/debug`.
fn plugins_dir() -> PathBuf {
    std::env::var_os("CAPTURE_FUZZ_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug"))
}

/// A connector's `parse_capture` (first byte even) or `parse_status` (odd) through the C ABI, on
/// the rest of the bytes.
pub fn connector(platform: &str, data: &[u8]) {
    /// The plugins loaded so far, by platform (each is loaded once per process).
    type Loaded = Vec<(String, Arc<Plugin>)>;
    static LOADED: Mutex<Loaded> = Mutex::new(Vec::new());
    let plugin = {
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        match loaded.iter().find(|(p, _)| p == platform) {
            Some((_, plugin)) => Arc::clone(plugin),
            None => {
                let file = plugins_dir().join(format!("libcapture_plugin_{platform}.so"));
                let plugin =
                    Arc::new(Plugin::load(&file).unwrap_or_else(|e| {
                        panic!("{e} (build the plugins first: cargo build --workspace)")
                    }));
                loaded.push((platform.to_owned(), Arc::clone(&plugin)));
                plugin
            }
        }
    };
    let Some((selector, input)) = data.split_first() else { return };
    let function = if selector % 2 == 0 { PluginFunction::ParseCapture } else { PluginFunction::ParseStatus };
    match plugin.call_raw(function, input) {
        Ok(_) => {}
        Err(
            capture_engine::PluginCallError::Refused(_) | capture_engine::PluginCallError::Unsupported(_),
        ) => {}
        Err(e) => panic!("connector {platform} broke the contract on fuzz input: {e}"),
    }
}
