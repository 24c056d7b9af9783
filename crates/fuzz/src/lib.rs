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
    "struct_output",
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
        "struct_output" => struct_output(data),
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

/// Request parsing and validation: an accepted request reads back the same from its wire form,
/// and the wire text written straight (what the ledger stores) is the value tree's text.
pub fn request(data: &[u8]) {
    match CaptureRequest::from_json(data) {
        Ok(req) => {
            let wire = req.to_wire_json().to_string();
            assert_eq!(req.to_wire_string(), wire, "the wire text is not the wire value's text");
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

/// Reads fuzz bytes one field at a time; zero when they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| (n << 8) | u64::from(self.byte()))
    }
}

/// A string of a struct message made from fuzz bytes: null (with a length 0 or not), or a slice
/// of `pool` (so every pointer is valid: a wild pointer is out of any host's reach to check).
fn fuzz_str(b: &mut Bytes<'_>, pool: &[u8]) -> capture_engine::connector_api::abi::Str {
    use capture_engine::connector_api::abi::Str;
    let (kind, at, len) = (b.byte(), usize::from(b.byte()), usize::from(b.byte()));
    match kind % 8 {
        0 => Str::NULL,
        1 => Str { ptr: std::ptr::null(), len: len.max(1) },
        _ if pool.is_empty() => Str::of(""),
        _ => {
            let at = at % pool.len();
            let len = len.min(pool.len() - at);
            Str { ptr: pool[at..].as_ptr(), len }
        }
    }
}

/// ABI 1.3's struct readers on structs built from fuzz bytes (a request or a result as a plugin
/// would write it): no panic; an accepted struct written again by the SDK's writer reads back the
/// same; a refusal names a field of the struct.
pub fn struct_output(data: &[u8]) {
    use capture_engine::connector_api::abi::{RawCaptureResult, RawHeader, RawHttpRequest};
    use capture_engine::connector_api::structs;
    let (pool, fields) = data.split_at(data.len() / 2);
    let mut b = Bytes(fields);
    let named = |e: &str, fields: &[&str]| fields.iter().any(|f| e.starts_with(f));
    if b.byte() % 2 == 0 {
        let count = usize::from(b.byte() % 72);
        let headers: Vec<RawHeader> = (0..count)
            .map(|_| RawHeader {
                name: fuzz_str(&mut b, pool),
                value: fuzz_str(&mut b, pool),
                secret: fuzz_str(&mut b, pool),
            })
            .collect();
        let null_list = b.byte() % 16 == 0;
        let raw = RawHttpRequest {
            owner: std::ptr::null_mut(),
            method: fuzz_str(&mut b, pool),
            url: fuzz_str(&mut b, pool),
            body: fuzz_str(&mut b, pool),
            headers: if null_list || headers.is_empty() { std::ptr::null() } else { headers.as_ptr() },
            headers_len: count,
        };
        let cap = usize::from(b.byte()) * 8;
        // SAFETY: every pointer is null or a slice of `pool`, or `headers`, with its count.
        match unsafe { structs::read_request(&raw, 64, cap) } {
            Ok(request) => {
                let again = structs::request_out(request.clone());
                // SAFETY: written by `request_out`, read, then freed once.
                let back = unsafe { structs::read_request(&again, 64, usize::MAX) };
                // SAFETY: as above.
                unsafe { structs::free_owned(again.owner) };
                assert_eq!(back.as_ref(), Ok(&request), "a request read back differently");
            }
            Err(e) => assert!(named(&e, &["headers", "method: ", "url: ", "body: "]), "{e}"),
        }
    } else {
        let raw = RawCaptureResult {
            owner: std::ptr::null_mut(),
            status: u32::from(b.byte() % 6),
            has_failure: u32::from(b.byte() % 3),
            failure_kind: u32::from(b.byte() % 11),
            retryable: u32::from(b.byte() % 3),
            has_retry_after: u32::from(b.byte() % 3),
            reserved: u32::from(b.byte() % 17 == 0),
            retry_after_ms: b.u64(),
            captured_amount: fuzz_str(&mut b, pool),
            platform_capture_id: fuzz_str(&mut b, pool),
            platform_code: fuzz_str(&mut b, pool),
            message: fuzz_str(&mut b, pool),
        };
        let cap = usize::from(b.byte()) * 8;
        // SAFETY: every pointer is null or a slice of `pool`.
        match unsafe { structs::read_result(&raw, cap) } {
            Ok(result) => {
                let again = structs::result_out(result.clone());
                // SAFETY: written by `result_out`, read, then freed once.
                let back = unsafe { structs::read_result(&again, usize::MAX) };
                // SAFETY: as above.
                unsafe { structs::free_owned(again.owner) };
                assert_eq!(back.as_ref(), Ok(&result), "a result read back differently");
            }
            Err(e) => assert!(
                named(
                    &e,
                    &[
                        "status: ",
                        "has_failure: ",
                        "failure_kind: ",
                        "retryable: ",
                        "has_retry_after: ",
                        "reserved: ",
                        "captured_amount: ",
                        "platform_capture_id: ",
                        "platform_code: ",
                        "message: ",
                    ]
                ),
                "{e}"
            ),
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
    // A parse call the engine could make: the JSON functions and the ABI 1.3 struct messages
    // (the engine's path) must give the same result.
    if function == PluginFunction::ParseCapture
        && let Ok(parse) = serde_json::from_slice::<capture_engine::connector_api::ParseCall>(input)
        && let Ok(built) = plugin.build_capture_checked(&parse.call, &[])
    {
        let through_structs = plugin.parse_built(built.into_parts().2, &parse.response);
        let through_json = plugin.parse_capture(&parse);
        assert_eq!(
            through_json.ok(),
            through_structs.ok(),
            "connector {platform}: the JSON and struct paths read the same answer differently"
        );
    }
}
