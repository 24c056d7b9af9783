//! ABI hardening end to end: every way a plugin can be wrong, each refused with a typed error that
//! names the plugin file and the problem, while the engine keeps serving the other connectors; a
//! connector written in C and one built outside the workspace, both loaded and verified; the
//! conformance kit (`capture plugins verify`) and `capture plugins inspect`.
//!
//! Fixtures: `plugins/fixture-misbehaving` (a Rust plugin that misbehaves per call, chosen by the
//! order id, and exports an ABI 1.0 descriptor), `plugins/fixture-misbehaving/c/descriptors.c`
//! (descriptors that are wrong at load time, one library per fault, compiled here with the system
//! C compiler), `plugins/fixture-abi-major` (ABI 2.0), `examples/c-connector` and
//! `examples/external-connector`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use capture_core::Outcome;
use capture_engine::connector_api::abi::{
    DESCRIPTOR_SIZE_V1_0, DESCRIPTOR_SIZE_V1_1, DESCRIPTOR_SIZE_V1_2, DESCRIPTOR_SIZE_V1_3,
};
use capture_engine::connector_api::{
    CallPayment, CaptureCall, HttpResponse, ParseCall, SCHEMA_VERSION, StatusCall,
};
use capture_engine::{
    Engine, EngineBuilder, EngineConfig, EngineError, FixedClock, PlatformSetup, Plugin, PluginCallError,
    PluginEntry, PluginLoadError, Secret,
};
use capture_sandbox::OpttyEmulator;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::plugins::scratch;
use crate::{TOKEN, artifact, artifacts, emulator, optty_plugin, plugin_file, repo, test_time};

// ---------------------------------------------------------------------------------------------
// helpers

/// The misbehaving fixture plugin.
fn misbehaving() -> PathBuf {
    plugin_file("fixture_misbehaving")
}

/// The system C compiler (`$CC`, else `cc`).
fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_owned())
}

/// Runs the C compiler; never skips: a missing compiler fails the test with what to install.
fn cc(args: &[&std::ffi::OsStr]) {
    let cc = c_compiler();
    let out = Command::new(&cc).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run the C compiler `{cc}` ({e}): install gcc or clang (CI installs gcc), or set CC. \
             The C connector tests prove the ABI is language-neutral; they never skip."
        )
    });
    assert!(out.status.success(), "`{cc}` failed on {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Compiles C `sources` into a shared library `name` in `dir`, against the ABI header.
fn c_library(dir: &Path, name: &str, sources: &[PathBuf], defines: &[&str]) -> PathBuf {
    let out = dir.join(format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    let include = repo().join("examples/c-connector");
    let mut args: Vec<std::ffi::OsString> =
        ["-std=c11", "-Wall", "-Wextra", "-O1", "-shared", "-fPIC", "-I"].iter().map(Into::into).collect();
    args.push(include.into());
    args.extend(defines.iter().map(|d| format!("-D{d}").into()));
    args.push("-o".into());
    args.push(out.clone().into());
    args.extend(sources.iter().map(|s| s.clone().into()));
    cc(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    out
}

/// A descriptor fixture library with one fault (`FIXTURE_*`), or none.
pub(crate) fn descriptor_fixture(dir: &Path, define: Option<&str>) -> PathBuf {
    let source = repo().join("plugins/fixture-misbehaving/c/descriptors.c");
    let name = define.map_or_else(|| "descriptor_valid".to_owned(), str::to_ascii_lowercase);
    c_library(dir, &name, &[source], define.as_slice())
}

/// The C connector of examples/c-connector, built into `dir`.
fn c_connector(dir: &Path) -> PathBuf {
    c_library(dir, "capture_c_connector", &[repo().join("examples/c-connector/connector.c")], &[])
}

/// The `capture` binary, run from the repository root.
fn capture(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(artifact("capture")).args(args).current_dir(repo()).output().expect("run capture")
}

fn verify(file: &Path, fixtures: Option<&Path>) -> (Option<i32>, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["plugins".as_ref(), "verify".as_ref(), file.as_os_str()];
    if let Some(dir) = fixtures {
        args.push("--fixtures".as_ref());
        args.push(dir.as_os_str());
    }
    let out = capture(&args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn assert_verify_passes(file: &Path, fixtures: Option<&Path>) -> String {
    let (code, text) = verify(file, fixtures);
    assert_eq!(code, Some(0), "verify must pass on {}:\n{text}", file.display());
    assert!(text.contains("result: PASS"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    text
}

/// An engine holding `plugins`, each platform (id, base URL) with the Optty demo token.
pub(crate) fn engine_with(plugins: Vec<Arc<Plugin>>, platforms: &[(&str, &str)]) -> Engine {
    let mut b = Engine::builder().without_ledger().clock(Arc::new(FixedClock(test_time())));
    for p in plugins {
        b = b.plugin(p).unwrap_or_else(|e| panic!("{e}"));
    }
    for (id, base_url) in platforms {
        b = b.platform(
            id,
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: (*base_url).to_owned(),
                timeout: Duration::from_secs(5),
                settings: BTreeMap::new(),
                credentials: BTreeMap::from([("bearer_token".to_owned(), Secret::new(TOKEN))]),
            },
        );
    }
    b.build().unwrap_or_else(|e| panic!("{e}"))
}

/// A capture request for `platform`: the full amount of one payment of `amount` USD.
pub(crate) fn request(platform: &str, order: &str, amount: &str, key: &str) -> Vec<u8> {
    json!({
        "platform": platform,
        "idempotency_key": key,
        "amount": "full",
        "order": {
            "id": order, "currency": "USD", "amount": amount,
            "payments": [{ "id": format!("pay-{order}"), "amount": amount, "method": "afterpay", "partial_capture": true }]
        }
    })
    .to_string()
    .into_bytes()
}

/// The Optty connector still captures a full order against a fresh emulator: the process, the
/// loader and the other plugins survived whatever failed before.
async fn optty_still_captures() {
    let emu = emulator().await;
    let plugin = Arc::new(Plugin::load(&optty_plugin()).expect("the Optty plugin still loads"));
    let engine = engine_with(vec![plugin], &[("optty", &emu.base_url())]);
    let report =
        engine.capture_json(&request("optty", "ORD-1001", "120.00", "still-serving")).await.expect("valid");
    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
    assert_eq!(emu.captures("ORD-1001").len(), 1);
}

fn call(order_id: &str, base_url: &str) -> CaptureCall {
    CaptureCall {
        schema: SCHEMA_VERSION,
        base_url: base_url.into(),
        settings: BTreeMap::new(),
        order_id: order_id.into(),
        currency: "USD".into(),
        currency_exponent: 2,
        amount: "120.00".into(),
        full: true,
        order_amount: "120.00".into(),
        surcharge: "0.00".into(),
        payments: vec![CallPayment {
            id: "pay-1".into(),
            amount: "120.00".into(),
            authorized: "120.00".into(),
            method: Some("afterpay".into()),
        }],
        idempotency_key: format!("{order_id}-key"),
        description: Some("threads".into()),
        shipping: None,
    }
}

fn assert_names(err: &impl std::fmt::Display, path: &Path, problem: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "the error must name the file {}: {msg}",
        path.display()
    );
    assert!(msg.contains(problem), "the error must say `{problem}`: {msg}");
}

// ---------------------------------------------------------------------------------------------
// load-time failures

#[tokio::test]
async fn files_that_are_not_plugin_libraries_are_refused_by_name() {
    let dir = scratch("abi-not-libraries");
    let text = dir.join("libtext.so");
    std::fs::write(&text, "this is not an ELF file").expect("write");
    let empty = dir.join("libempty.so");
    std::fs::write(&empty, b"").expect("write");
    let truncated = dir.join("libtruncated.so");
    let optty = std::fs::read(optty_plugin()).expect("read the Optty plugin");
    std::fs::write(&truncated, &optty[..4096]).expect("write");
    // Typed, with the dynamic loader's own reason (issue 10: it used to say "dlopen failed").
    for (file, reason, loader) in [
        (&text, "it is a text file, not an ELF shared library", "file too short"),
        (&empty, "the file is empty", "file too short"),
    ] {
        let err = Plugin::load(file).expect_err("not a library");
        assert!(matches!(err, PluginLoadError::NotALibrary { .. }), "{err:?}");
        assert_names(&err, file, &format!("not a shared library: {reason} (dynamic loader: dlopen failed: "));
        assert!(err.to_string().contains(loader), "{err}");
    }
    // A half-copied library: the dynamic loader would map it and the process would die of SIGBUS
    // on first touch; the loader refuses it first.
    let err = Plugin::load(&truncated).expect_err("truncated");
    assert!(matches!(err, PluginLoadError::Truncated { size: 4096, .. }), "{err:?}");
    assert_names(&err, &truncated, "the file is truncated: it is 4096 bytes");
    let no_entry = descriptor_fixture(&dir, Some("FIXTURE_NO_ENTRY"));
    let err = Plugin::load(&no_entry).expect_err("no entry symbol");
    assert!(matches!(err, PluginLoadError::MissingEntry { .. }), "{err:?}");
    assert_names(&err, &no_entry, "no `capture_connector_entry` symbol");
    optty_still_captures().await;
}

#[test]
fn the_descriptor_fixture_without_a_fault_loads() {
    // Proof that each failure below comes from its one fault, not from the fixture itself.
    let dir = scratch("abi-descriptor-valid");
    let file = descriptor_fixture(&dir, None);
    let p = Plugin::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.manifest().id, "descriptor_fixture");
    assert_eq!((p.abi_version(), p.descriptor_size() as usize), ((1, 3), DESCRIPTOR_SIZE_V1_3));
    assert!(!p.uses_struct_messages(), "a 1.3 descriptor whose struct functions are NULL uses JSON");
    let refused = p.build_capture(&call("x", "https://api.example.com")).expect_err("refuses every call");
    assert!(matches!(refused, PluginCallError::Refused(ref e) if e.code == "unsupported"), "{refused:?}");
}

#[test]
fn a_1_1_descriptor_loads_and_its_calls_go_through_the_1_0_functions() {
    let dir = scratch("abi-descriptor-1-1");
    let file = descriptor_fixture(&dir, Some("FIXTURE_MINOR_1_1"));
    let p = Plugin::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.abi_version(), p.descriptor_size() as usize), ((1, 1), DESCRIPTOR_SIZE_V1_1));
    let refused =
        p.build_capture_checked(&call("x", "https://api.example.com"), &[]).expect_err("refuses every call");
    assert!(matches!(refused, PluginCallError::Refused(ref e) if e.code == "unsupported"), "{refused:?}");
}

#[test]
fn a_1_2_descriptor_loads_and_its_calls_go_through_the_json_functions() {
    // Its 1.3 fields, past its struct_size, hold functions that abort: never read, never called.
    let dir = scratch("abi-descriptor-1-2");
    let file = descriptor_fixture(&dir, Some("FIXTURE_MINOR_1_2"));
    let p = Plugin::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.abi_version(), p.descriptor_size() as usize), ((1, 2), DESCRIPTOR_SIZE_V1_2));
    assert!(!p.uses_struct_messages());
    let refused =
        p.build_capture_checked(&call("x", "https://api.example.com"), &[]).expect_err("refuses every call");
    assert!(matches!(refused, PluginCallError::Refused(ref e) if e.code == "unsupported"), "{refused:?}");
    assert_eq!(p.unhealthy(), None);
}

#[test]
fn the_shipped_rust_plugins_are_abi_1_3_and_capture_through_struct_messages() {
    for platform in ["optty", "bigcommerce", "medusa", "wix", "template"] {
        let p = Plugin::load(&plugin_file(platform)).unwrap_or_else(|e| panic!("{platform}: {e}"));
        assert_eq!(
            (p.abi_version(), p.descriptor_size() as usize),
            ((1, 3), DESCRIPTOR_SIZE_V1_3),
            "{platform}"
        );
        assert!(p.uses_struct_messages(), "{platform}");
        let off = Plugin::load_with(
            &plugin_file(platform),
            &capture_engine::LoadOptions::default().struct_messages(false),
        )
        .unwrap_or_else(|e| panic!("{platform}: {e}"));
        assert!(!off.uses_struct_messages(), "{platform}: turned off by the load options");
    }
}

#[test]
fn a_call_built_through_struct_messages_is_not_parsed_by_a_load_without_them_nor_by_another_plugin() {
    let with = Plugin::load(&optty_plugin()).unwrap_or_else(|e| panic!("{e}"));
    let without =
        Plugin::load_with(&optty_plugin(), &capture_engine::LoadOptions::default().struct_messages(false))
            .unwrap_or_else(|e| panic!("{e}"));
    let other = Plugin::load(&plugin_file("bigcommerce")).unwrap_or_else(|e| panic!("{e}"));
    let c = call("ORD-1001", "http://127.0.0.1:9");
    let answer = HttpResponse { status: 200, headers: vec![], body: "{}".into() };
    let (_, _, sent) = with.build_capture_checked(&c, &[]).expect("builds").into_parts();
    let err = without.parse_built(sent, &answer).expect_err("a struct context without the struct parse");
    assert_eq!(err, PluginCallError::Unsupported("struct messages"));
    let (_, _, sent) = with.build_capture_checked(&c, &[]).expect("builds").into_parts();
    let err = other.parse_built(sent, &answer).expect_err("another library's context");
    assert_eq!(err, PluginCallError::Unsupported("reading an answer to a call another plugin built"));
    // The refused calls were handed back whole (their contexts freed by the plugin that made
    // them); every plugin is still healthy and the next capture parses.
    let (_, _, sent) = with.build_capture_checked(&c, &[]).expect("builds").into_parts();
    assert!(with.parse_built(sent, &answer).is_ok());
    assert_eq!((with.unhealthy(), without.unhealthy(), other.unhealthy()), (None, None, None));
}

#[test]
fn per_call_contexts_go_back_once_to_the_parse_or_when_dropped_and_answers_match_the_1_0_path() {
    // Through the 1.3 struct messages (the default) and through the 1.2 JSON context functions.
    for structs in [true, false] {
        let options = capture_engine::LoadOptions::default().struct_messages(structs);
        let p = Plugin::load_with(&optty_plugin(), &options).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.abi_version(), p.descriptor_size() as usize), ((1, 3), DESCRIPTOR_SIZE_V1_3));
        assert_eq!(p.uses_struct_messages(), structs);
        contexts_go_back_once(&p);
    }
}

fn contexts_go_back_once(p: &Plugin) {
    let c = call("ORD-1001", "http://127.0.0.1:9");
    let answer = HttpResponse {
        status: 200,
        headers: vec![],
        body: r#"{"captureReference":"ORD-1001-key","captureId":"cap_1","capturedAmount":120}"#.into(),
    };
    // Contexts made and released unparsed (a request refused, not sent or unanswered), many times.
    for _ in 0..500 {
        drop(p.build_capture_checked(&c, &[]).expect("builds"));
    }
    // One refused by the host check after the plugin made its context: released too.
    let foreign = call("ORD-1001", "https://evil.example.com");
    let err = p.build_capture_checked(&foreign, &[]).expect_err("a foreign host");
    assert!(matches!(err, PluginCallError::ForeignHost { .. }), "{err:?}");
    // Parsed through the context: the same request and result as through build/parse_capture.
    let (request, url, sent) = p.build_capture_checked(&c, &[]).expect("builds").into_parts();
    assert_eq!(Some(&request), p.build_capture(&c).ok().as_ref());
    assert_eq!(url.as_str(), "http://127.0.0.1:9/orders/ORD-1001/capture");
    let through_context = p.parse_built(sent, &answer).expect("parses");
    let whole = ParseCall { schema: SCHEMA_VERSION, call: c.clone(), response: answer.clone() };
    assert_eq!(Some(through_context), p.parse_capture(&whole).ok());
    assert_eq!(p.unhealthy(), None);
}

#[test]
fn a_1_2_descriptor_with_only_part_of_the_context_functions_is_refused() {
    let dir = scratch("abi-descriptor-context-partial");
    let file = descriptor_fixture(&dir, Some("FIXTURE_CONTEXT_PARTIAL"));
    let err = Plugin::load(&file).expect_err("a context without a way back");
    assert!(
        matches!(err, PluginLoadError::MissingFunction { function: "parse_capture_with", .. }),
        "{err:?}"
    );
    assert_names(&err, &file, "descriptor function `parse_capture_with` is null");
}

#[test]
fn a_1_3_descriptor_with_only_part_of_the_struct_functions_is_refused() {
    let dir = scratch("abi-descriptor-struct-partial");
    let file = descriptor_fixture(&dir, Some("FIXTURE_STRUCT_PARTIAL"));
    let err = Plugin::load(&file).expect_err("a struct answer without a way to read or free it");
    assert!(
        matches!(err, PluginLoadError::MissingFunction { function: "parse_capture_struct", .. }),
        "{err:?}"
    );
    assert_names(&err, &file, "descriptor function `parse_capture_struct` is null");
}

#[test]
fn a_1_3_descriptor_with_the_struct_functions_but_not_the_context_ones_is_refused() {
    // The struct build's contexts go back through the 1.2 free_context, which it lacks.
    let dir = scratch("abi-descriptor-struct-without-context");
    let file = descriptor_fixture(&dir, Some("FIXTURE_STRUCT_WITHOUT_CONTEXT"));
    let err = Plugin::load(&file).expect_err("struct contexts without a way back");
    assert!(matches!(err, PluginLoadError::MissingFunction { function: "free_context", .. }), "{err:?}");
    assert_names(&err, &file, "descriptor function `free_context` is null");
}

#[tokio::test]
async fn abi_versions_a_major_or_a_newer_minor_are_refused() {
    let major = plugin_file("fixture_abi_major");
    let err = Plugin::load(&major).expect_err("ABI 2.0");
    assert!(matches!(err, PluginLoadError::AbiVersion { major: 2, minor: 0, .. }), "{err:?}");
    assert_names(&err, &major, "built for connector ABI 2.0, this engine loads ABI 1.0 to 1.3");

    let dir = scratch("abi-minor-next");
    let minor = descriptor_fixture(&dir, Some("FIXTURE_MINOR_NEXT"));
    let err = Plugin::load(&minor).expect_err("ABI 1.4");
    assert!(matches!(err, PluginLoadError::AbiVersion { major: 1, minor: 4, .. }), "{err:?}");
    assert_names(&err, &minor, "built for connector ABI 1.4");
    assert_names(&err, &minor, "the plugin is newer than this engine");
    optty_still_captures().await;
}

#[tokio::test]
async fn broken_descriptors_are_refused_naming_file_and_problem() {
    let dir = scratch("abi-broken-descriptors");
    type Is = fn(&PluginLoadError) -> bool;
    let cases: [(&str, Is, &str); 4] = [
        (
            "FIXTURE_BAD_MAGIC",
            |e| matches!(e, PluginLoadError::BadMagic { found: 0xDEAD_BEEF, .. }),
            "descriptor has magic 0xdeadbeef, expected 0x43415054",
        ),
        (
            "FIXTURE_NULL_DESCRIPTOR",
            |e| matches!(e, PluginLoadError::NullDescriptor { .. }),
            "the entry function returned no descriptor",
        ),
        (
            "FIXTURE_TOO_SMALL",
            |e| matches!(e, PluginLoadError::DescriptorTooSmall { size: 8, .. }),
            "descriptor is 8 bytes",
        ),
        (
            "FIXTURE_NULL_FUNCTION",
            |e| matches!(e, PluginLoadError::MissingFunction { function: "parse_capture", .. }),
            "descriptor function `parse_capture` is null",
        ),
    ];
    for (define, is, problem) in cases {
        let file = descriptor_fixture(&dir, Some(define));
        let err = Plugin::load(&file).expect_err(define);
        assert!(is(&err), "{define}: {err:?}");
        assert_names(&err, &file, problem);
    }
    optty_still_captures().await;
}

#[tokio::test]
async fn invalid_manifests_are_refused_naming_the_field() {
    let dir = scratch("abi-bad-manifests");
    let cases = [
        ("FIXTURE_MANIFEST_UNKNOWN_FIELD", "unknown field `homepage`"),
        ("FIXTURE_MANIFEST_BAD_CREDENTIAL", "credentials[0] `Bearer-Token` must be non-empty [a-z0-9_]"),
        ("FIXTURE_MANIFEST_BAD_HOST", "allowed_hosts[0] `https://api.example.com/v1` is not a host name"),
        ("FIXTURE_MANIFEST_BAD_VERSION", "version `latest` is not a semantic version"),
        ("FIXTURE_MANIFEST_STATUS_WITHOUT_FUNCTIONS", "capabilities.status_query is true"),
    ];
    for (define, problem) in cases {
        let file = descriptor_fixture(&dir, Some(define));
        let err = Plugin::load(&file).expect_err(define);
        assert!(matches!(err, PluginLoadError::InvalidManifest { .. }), "{define}: {err:?}");
        assert_names(&err, &file, "invalid manifest");
        assert_names(&err, &file, problem);
    }
    let file = descriptor_fixture(&dir, Some("FIXTURE_MANIFEST_NULL_BUFFER"));
    let err = Plugin::load(&file).expect_err("manifest without a buffer");
    assert!(
        matches!(&err, PluginLoadError::Manifest { source: PluginCallError::Contract { .. }, .. }),
        "{err:?}"
    );
    assert_names(&err, &file, "success status with a null buffer");
    optty_still_captures().await;
}

#[tokio::test]
async fn an_older_minor_with_the_smaller_descriptor_loads_and_captures() {
    let file = misbehaving();
    let p = Arc::new(Plugin::load(&file).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(p.abi_version(), (1, 0));
    assert_eq!(p.descriptor_size() as usize, DESCRIPTOR_SIZE_V1_0);
    const { assert!(DESCRIPTOR_SIZE_V1_0 < DESCRIPTOR_SIZE_V1_1) };
    assert!(!p.supports_status());
    let status = StatusCall {
        schema: SCHEMA_VERSION,
        base_url: "http://127.0.0.1:9".into(),
        settings: BTreeMap::new(),
        order_id: "ORD-1001".into(),
        currency: "USD".into(),
        currency_exponent: 2,
        payment_ids: vec![],
        idempotency_key: None,
        platform_capture_id: None,
    };
    assert_eq!(p.build_status(&status), Err(PluginCallError::Unsupported("status query")));

    let emu = emulator().await;
    let engine = engine_with(vec![p], &[("misbehaving", &emu.base_url())]);
    let report = engine
        .capture_json(&request("misbehaving", "ORD-1001", "120.00", "old-minor-1"))
        .await
        .expect("valid");
    match &report.outcome {
        Outcome::Captured { amount, platform_capture_id } => {
            assert_eq!(amount.to_string(), "120.00 USD");
            assert_eq!(platform_capture_id.as_deref(), Some("cap_ORD-1001_1"));
        }
        other => panic!("expected a capture, got {other:?}"),
    }
    assert_eq!(emu.captures("ORD-1001")[0].amount, Decimal::new(12000, 2));
}

#[tokio::test]
async fn two_plugins_with_the_same_id_are_refused_naming_both_files() {
    let dir = scratch("abi-duplicate-id");
    let copy = dir.join("libcapture_plugin_optty_copy.so");
    std::fs::copy(optty_plugin(), &copy).expect("copy");
    let first = Arc::new(Plugin::load(&optty_plugin()).expect("loads"));
    let second = Arc::new(Plugin::load(&copy).expect("the copy loads on its own"));
    let err = Engine::builder().plugin(first).expect("one").plugin(second).expect_err("same id twice");
    let msg = err.to_string();
    for part in [optty_plugin().display().to_string(), copy.display().to_string(), "connector `optty`".into()]
    {
        assert!(msg.contains(&part), "`{part}` missing from: {msg}");
    }
    // The same through a configuration file.
    let cfg = EngineConfig {
        plugins: vec![PluginEntry::new(optty_plugin()), PluginEntry::new(&copy)],
        ..EngineConfig::default()
    };
    let err = EngineBuilder::from_config(&cfg).await.expect_err("same id twice");
    assert!(err.to_string().contains(&copy.display().to_string()), "{err}");
    optty_still_captures().await;
}

#[tokio::test]
async fn a_sha256_pin_refuses_another_file_naming_both_hashes() {
    let file = optty_plugin();
    let actual = capture_engine::sha256_file(&file).expect("hash");
    let ledger = scratch("abi-pin").join("capture.db").display().to_string();
    let pinned = |sha256: &str| EngineConfig {
        plugins: vec![PluginEntry { path: file.clone(), sha256: Some(sha256.to_owned()) }],
        store: Some(ledger.clone()),
        ..EngineConfig::default()
    };
    EngineBuilder::from_config(&pinned(&actual)).await.unwrap_or_else(|e| panic!("the right pin loads: {e}"));
    let wrong = "0123456789abcdef".repeat(4);
    let err = EngineBuilder::from_config(&pinned(&wrong)).await.expect_err("a wrong pin");
    assert!(
        matches!(
            &err,
            EngineError::Plugin(PluginLoadError::Sha256Mismatch { expected, actual: a, .. })
                if *expected == wrong && *a == actual
        ),
        "{err:?}"
    );
    assert_names(&err, &file, &format!("the configuration pins {wrong}, the file has {actual}"));
    // The same for a host that loads plugins itself, and from TOML.
    let err = Plugin::load_pinned(&file, &wrong).expect_err("a wrong pin");
    assert!(matches!(err, PluginLoadError::Sha256Mismatch { .. }), "{err:?}");
    let cfg = EngineConfig::parse(&format!(
        r#"plugins = [{{ path = "{}", sha256 = "{}" }}]"#,
        file.display(),
        actual.to_uppercase()
    ))
    .expect("valid TOML");
    assert_eq!(cfg.plugin_files().expect("the pin holds, whatever the case of its hex"), vec![file.clone()]);
    optty_still_captures().await;
}

// ---------------------------------------------------------------------------------------------
// call-time failures

#[test]
fn every_misbehaviour_is_a_typed_error_naming_the_file() {
    let file = misbehaving();
    let p = Plugin::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let name = p.file_name().to_owned();
    assert_eq!(name, file.file_name().and_then(|n| n.to_str()).expect("utf-8 name"));
    let base = "http://127.0.0.1:9";
    type Is = fn(&PluginCallError) -> bool;
    let cases: [(&str, Is, &str); 11] = [
        (
            "panic",
            |e| matches!(e, PluginCallError::Panicked { .. }),
            "panicked: the fixture was told to panic (order `panic`)",
        ),
        (
            "null-buffer",
            |e| matches!(e, PluginCallError::Contract { .. }),
            "success status with a null buffer",
        ),
        (
            "null-with-length",
            |e| matches!(e, PluginCallError::Contract { .. }),
            "null buffer pointer with length 16",
        ),
        (
            "empty-buffer",
            |e| matches!(e, PluginCallError::Contract { .. }),
            "success status with an empty buffer",
        ),
        ("not-utf8", |e| matches!(e, PluginCallError::InvalidOutput { .. }), "not UTF-8"),
        ("not-json", |e| matches!(e, PluginCallError::InvalidOutput { .. }), "not JSON"),
        (
            "wrong-schema",
            |e| matches!(e, PluginCallError::InvalidOutput { .. }),
            "does not match the HttpRequest schema",
        ),
        (
            "huge",
            |e| matches!(e, PluginCallError::Contract { .. }),
            "output of 1048577 bytes exceeds the 1048576-byte cap",
        ),
        ("bad-status-code", |e| matches!(e, PluginCallError::Contract { .. }), "unknown status code 7"),
        (
            "error-not-json",
            |e| matches!(e, PluginCallError::Contract { .. }),
            "error status with a buffer that is not",
        ),
        (
            "foreign-host",
            |e| matches!(e, PluginCallError::ForeignHost { host, .. } if host == "attacker.example"),
            "host `attacker.example` is not loopback and not in the manifest's allowed hosts",
        ),
    ];
    for (order, is, problem) in cases {
        let err = p.build_capture(&call(order, base)).expect_err(order);
        assert!(is(&err), "{order}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("connector plugin {name}")),
            "{order}: the error must name the file: {msg}"
        );
        assert!(msg.contains(problem), "{order}: `{problem}` missing from: {msg}");
    }
    // parse_capture misbehaves the same way for `parse-<name>`.
    let response = HttpResponse { status: 200, headers: vec![], body: "{}".into() };
    let parse = |order: &str| {
        p.parse_capture(&ParseCall {
            schema: SCHEMA_VERSION,
            call: call(order, base),
            response: response.clone(),
        })
    };
    let err = parse("parse-panic").expect_err("panic");
    assert!(
        matches!(&err, PluginCallError::Panicked { message, .. } if message.contains("told to panic")),
        "{err:?}"
    );
    let err = parse("parse-not-utf8").expect_err("not UTF-8");
    assert!(matches!(err, PluginCallError::InvalidOutput { .. }), "{err:?}");
    // And after all that, the same plugin still answers correctly.
    let built = p.build_capture(&call("ORD-1", base)).expect("a correct call");
    assert_eq!(built.url, "http://127.0.0.1:9/orders/ORD-1/capture");
    assert_eq!(parse("ORD-1").expect("a correct parse").captured_amount.as_deref(), Some("120.00"));
}

/// What a struct fixture (`FIXTURE_STRUCT_*` of descriptors.c) made and got back, read from its
/// exported counters in the library the plugin loader loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handed {
    outputs_made: u32,
    outputs_freed: u32,
    contexts_made: u32,
    contexts_freed: u32,
    bad_frees: u32,
}

impl Handed {
    /// Reads the counters of the already loaded library `file`.
    fn of(file: &Path) -> Handed {
        use std::ffi::{CString, c_char, c_int, c_void};
        use std::os::unix::ffi::OsStrExt;
        use std::sync::atomic::{AtomicU32, Ordering};
        // The dynamic loader's own functions (in the C library, which every test binary links).
        unsafe extern "C" {
            fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
            fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        }
        const RTLD_NOW: c_int = 2;
        const RTLD_NOLOAD: c_int = 4;
        let name = CString::new(file.as_os_str().as_bytes()).expect("a path without NUL");
        // SAFETY: with RTLD_NOLOAD nothing is loaded (no initialiser runs): the dynamic loader
        // returns the library it already has for that file (it knows a file by device and inode,
        // whatever name the plugin loader gave it), or null.
        let lib = unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_NOLOAD) };
        assert!(!lib.is_null(), "{} is not loaded", file.display());
        let read = |symbol: &str| {
            let symbol = CString::new(symbol).expect("no NUL");
            // SAFETY: a symbol lookup in a loaded library.
            let at = unsafe { dlsym(lib, symbol.as_ptr()) };
            assert!(!at.is_null(), "{} exports no {symbol:?}", file.display());
            // SAFETY: the fixture's `atomic_uint` globals: 4 aligned bytes, alive as long as the
            // library (never unloaded), only ever accessed atomically.
            unsafe { &*at.cast::<AtomicU32>() }.load(Ordering::SeqCst)
        };
        Handed {
            outputs_made: read("fixture_outputs_made"),
            outputs_freed: read("fixture_outputs_freed"),
            contexts_made: read("fixture_contexts_made"),
            contexts_freed: read("fixture_contexts_freed"),
            bad_frees: read("fixture_bad_frees"),
        }
    }

    /// Every answer's owner and every context went back exactly once.
    fn assert_balanced(self, outputs: u32, contexts: u32) {
        assert_eq!(
            self,
            Handed {
                outputs_made: outputs,
                outputs_freed: outputs,
                contexts_made: contexts,
                contexts_freed: contexts,
                bad_frees: 0
            }
        );
    }
}

/// A struct fixture (`FIXTURE_STRUCT_*`), loaded: a 1.3 plugin whose captures use its structs.
fn struct_fixture(define: &str) -> (PathBuf, Plugin) {
    let dir = scratch(&format!("abi-{}", define.to_ascii_lowercase()));
    let file = descriptor_fixture(&dir, Some(define));
    let p = Plugin::load(&file).unwrap_or_else(|e| panic!("{define}: {e}"));
    assert_eq!((p.abi_version(), p.descriptor_size() as usize), ((1, 3), DESCRIPTOR_SIZE_V1_3));
    assert!(p.uses_struct_messages(), "{define}");
    Handed::of(&file).assert_balanced(0, 0);
    (file, p)
}

/// A struct build that returns CAPTURE_STATUS_OK with a request the host cannot read: refused as
/// invalid output naming the field, the request's owner and the context each handed back once,
/// twice in a row, and the plugin still healthy.
fn struct_request_refused(define: &str, problem: &str) {
    let (file, p) = struct_fixture(define);
    for round in 1..=2 {
        let err = p.build_capture_checked(&call("ORD-1", "http://127.0.0.1:9"), &[]).expect_err(define);
        assert!(matches!(err, PluginCallError::InvalidOutput { .. }), "{define}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("connector plugin {} returned invalid output", p.file_name())),
            "{msg}"
        );
        assert!(msg.contains(problem), "{define}: `{problem}` missing from: {msg}");
        Handed::of(&file).assert_balanced(round, round);
    }
    assert_eq!(p.unhealthy(), None);
}

#[test]
fn a_struct_request_whose_url_is_not_utf8_is_refused_and_handed_back() {
    struct_request_refused("FIXTURE_STRUCT_URL_NOT_UTF8", "url: not UTF-8 (");
}

#[test]
fn a_struct_string_with_a_null_pointer_and_a_length_is_refused_and_handed_back() {
    struct_request_refused("FIXTURE_STRUCT_NULL_WITH_LENGTH", "headers[0].name: null pointer with length 3");
}

#[test]
fn a_struct_request_with_more_headers_than_the_limit_is_refused_and_handed_back() {
    struct_request_refused("FIXTURE_STRUCT_TOO_MANY_HEADERS", "headers: 65 entries; the limit is 64");
}

#[test]
fn a_struct_result_with_an_unknown_status_code_is_refused_and_handed_back() {
    let (file, p) = struct_fixture("FIXTURE_STRUCT_BAD_RESULT_STATUS");
    let answer = HttpResponse { status: 200, headers: vec![], body: "{}".into() };
    // The build is valid: read, checked (loopback), its owner freed at once, the context kept.
    let (request, url, sent) =
        p.build_capture_checked(&call("ORD-1", "http://127.0.0.1:9"), &[]).expect("builds").into_parts();
    assert_eq!((request.method.as_str(), url.as_str(), request.body), ("POST", "http://127.0.0.1:9/x", None));
    assert_eq!(request.headers.len(), 1);
    let handed = Handed::of(&file);
    assert_eq!(
        (handed.outputs_made, handed.outputs_freed, handed.contexts_made, handed.contexts_freed),
        (1, 1, 1, 0)
    );
    // The parse consumes the context and answers status 7: refused naming the field, its owner freed.
    let err = p.parse_built(sent, &answer).expect_err("status 7");
    assert!(matches!(err, PluginCallError::InvalidOutput { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("connector plugin {} returned invalid output", p.file_name())), "{msg}");
    assert!(
        msg.contains("status: unknown code 7 (0 captured, 1 pending, 2 already captured, 3 failed)"),
        "{msg}"
    );
    Handed::of(&file).assert_balanced(2, 1);
    // A built call dropped unparsed: its context goes back through free_context (queued on the
    // plugin's worker, which runs calls in order: the next call waits for it).
    drop(p.build_capture_checked(&call("ORD-2", "http://127.0.0.1:9"), &[]).expect("builds"));
    let (_, _, sent) =
        p.build_capture_checked(&call("ORD-3", "http://127.0.0.1:9"), &[]).expect("builds").into_parts();
    let err = p.parse_built(sent, &answer).expect_err("status 7 again");
    assert!(matches!(err, PluginCallError::InvalidOutput { .. }), "{err:?}");
    Handed::of(&file).assert_balanced(5, 3);
    assert_eq!(p.unhealthy(), None);
}

#[test]
fn a_struct_build_past_its_deadline_times_out_and_its_late_answer_is_handed_back() {
    let dir = scratch("abi-fixture_struct_slow");
    let file = descriptor_fixture(&dir, Some("FIXTURE_STRUCT_SLOW"));
    let options = capture_engine::LoadOptions::default().call_timeout(std::time::Duration::from_millis(100));
    let p = Plugin::load_with(&file, &options).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.uses_struct_messages());
    let c = call("ORD-1", "http://127.0.0.1:9");
    let err = p.build_capture_checked(&c, &[]).expect_err("past the deadline");
    assert!(matches!(err, PluginCallError::Timeout { function: "build_capture", ms: 100, .. }), "{err:?}");
    let again = p.build_capture_checked(&c, &[]).expect_err("unhealthy");
    assert!(matches!(again, PluginCallError::Unhealthy { .. }), "{again:?}");
    // The late build ends on the worker, with the call it owns (nothing of the caller's is read
    // after the caller gave up): its answer is read and its owner freed, and the context nobody
    // took goes back to the plugin instead of leaking.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let handed = Handed::of(&file);
        if handed.contexts_freed == 1 || std::time::Instant::now() > deadline {
            handed.assert_balanced(1, 1);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_engine_reports_each_misbehaviour_sends_nothing_and_keeps_serving() {
    let emu = emulator().await;
    let bad = Arc::new(Plugin::load(&misbehaving()).unwrap_or_else(|e| panic!("{e}")));
    let optty = Arc::new(Plugin::load(&optty_plugin()).expect("loads"));
    let file = bad.file_name().to_owned();
    let engine =
        engine_with(vec![bad, optty], &[("misbehaving", &emu.base_url()), ("optty", &emu.base_url())]);
    let cases = [
        ("panic", "panicked: the fixture was told to panic"),
        ("null-buffer", "success status with a null buffer"),
        ("not-utf8", "not UTF-8"),
        ("not-json", "not JSON"),
        ("wrong-schema", "does not match the HttpRequest schema"),
        ("huge", "exceeds the 1048576-byte cap"),
        ("bad-status-code", "unknown status code 7"),
        ("foreign-host", "host `attacker.example` is not loopback and not in the manifest's allowed hosts"),
        ("other-origin", "url `https://api.optty.com/orders/x/capture` is outside the configured base URL"),
        ("undeclared-secret", "asks for credential `api_key`, which the manifest does not declare"),
        ("header-injection", "header `X-Note` is not a valid header"),
        ("bad-method", "method `TRACE` is not allowed"),
    ];
    for (order, problem) in cases {
        let report =
            engine.capture_json(&request("misbehaving", order, "10.00", order)).await.expect("valid");
        match &report.outcome {
            Outcome::Failed { kind, retryable, message, .. } => {
                assert_eq!(*kind, capture_core::FailureKind::Connector, "{order}");
                assert!(!retryable, "{order}");
                assert!(message.contains(problem), "{order}: `{problem}` missing from: {message}");
                assert!(message.ends_with("(nothing was sent)"), "{order}: {message}");
            }
            other => panic!("{order}: expected a connector failure, got {other:?}"),
        }
        assert!(report.exchanges.is_empty(), "{order}: nothing may be sent");
        let step =
            report.steps.iter().find(|s| s.name == "misbehaving.build_capture").expect("the build step");
        assert_eq!(step.verdict, "error", "{order}");
    }
    // The contract violations name the plugin file in the report.
    let report =
        engine.capture_json(&request("misbehaving", "huge", "10.00", "huge-2")).await.expect("valid");
    assert!(report.to_json().contains(&format!("connector plugin {file} broke the ABI contract")));
    // A panic while reading the answer: the request was sent, the answer is reported unreadable.
    let report =
        engine.capture_json(&request("misbehaving", "parse-panic", "10.00", "pp")).await.expect("valid");
    match &report.outcome {
        Outcome::Failed { message, .. } => assert!(message.contains("panicked"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(report.exchanges.len(), 1);
    assert!(emu.captures("ORD-1001").is_empty(), "no misbehaviour captured anything");

    // The same engine keeps serving: Optty captures, and the misbehaving plugin, asked properly, too.
    let report =
        engine.capture_json(&request("optty", "ORD-1001", "120.00", "after-1")).await.expect("valid");
    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
    let report =
        engine.capture_json(&request("misbehaving", "ORD-1005", "45.00", "after-2")).await.expect("valid");
    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
    assert_eq!((emu.captures("ORD-1001").len(), emu.captures("ORD-1005").len()), (1, 1));
}

#[test]
fn many_threads_call_one_plugin_at_once_and_agree() {
    // With the default spin, without any (every hand-off sleeps), and with a longer one than the
    // loader allows (cut to MAX_SPIN).
    for spin in [capture_engine::DEFAULT_SPIN, Duration::ZERO, Duration::from_secs(5)] {
        let options = capture_engine::LoadOptions::default().spin(spin);
        assert!(options.spin <= capture_engine::MAX_SPIN);
        let p = Plugin::load_with(&optty_plugin(), &options).expect("loads");
        threads_agree(&p);
    }
}

fn threads_agree(p: &Plugin) {
    let response = HttpResponse {
        status: 200,
        headers: vec![],
        body: r#"{"captureReference":"k","captureId":"cap_1","capturedAmount":120.00}"#.into(),
    };
    let round = |order: &str| {
        let c = call(order, "http://127.0.0.1:9");
        let built = p.build_capture(&c).expect("builds");
        let parsed =
            p.parse_capture(&ParseCall { schema: SCHEMA_VERSION, call: c, response: response.clone() });
        (built, parsed.expect("parses"))
    };
    let expected: Vec<_> = (0..8).map(|t| round(&format!("ORD-{t}"))).collect();
    let results: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (round, expected) = (&round, &expected);
                s.spawn(move || {
                    for i in 0..200 {
                        assert_eq!(round(&format!("ORD-{t}")), expected[t], "thread {t}, call {i}");
                    }
                    200
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("no thread panicked")).collect()
    });
    assert_eq!(results.iter().sum::<usize>(), 1600);
    assert_ne!(expected[0], expected[1], "each thread had its own call");
}

// ---------------------------------------------------------------------------------------------
// the C connector

#[test]
fn the_c_header_mirrors_the_rust_abi() {
    use capture_engine::connector_api::abi::*;
    use std::mem::{align_of, offset_of, size_of};
    // Each row: a C expression and what Rust says it is; the C program prints every expression.
    macro_rules! size {
        ($c:literal, $rust:ty) => {
            [
                (concat!("sizeof(", $c, ")"), size_of::<$rust>() as u64),
                (concat!("_Alignof(", $c, ")"), align_of::<$rust>() as u64),
            ]
        };
    }
    macro_rules! at {
        ($c:literal, $rust:ty, $($field:ident),+) => {
            [$((concat!("offsetof(", $c, ", ", stringify!($field), ")"), offset_of!($rust, $field) as u64)),+]
        };
    }
    let rows: Vec<(&str, u64)> = [
        &size!("capture_descriptor_header", DescriptorHeader)[..],
        &at!("capture_descriptor_header", DescriptorHeader, magic, struct_size, abi_major, abi_minor),
        &size!("capture_buffer", Buffer),
        &at!("capture_buffer", Buffer, ptr, len, cap),
        &size!("capture_connector_descriptor", ConnectorDescriptor),
        &at!(
            "capture_connector_descriptor",
            ConnectorDescriptor,
            manifest,
            build_capture,
            parse_capture,
            free_buffer,
            build_status,
            parse_status,
            build_capture_with,
            parse_capture_with,
            free_context,
            build_capture_struct,
            parse_capture_struct,
            free_output
        ),
        &[
            ("CAPTURE_DESCRIPTOR_SIZE_V1_0", DESCRIPTOR_SIZE_V1_0 as u64),
            ("CAPTURE_DESCRIPTOR_SIZE_V1_1", DESCRIPTOR_SIZE_V1_1 as u64),
            ("CAPTURE_DESCRIPTOR_SIZE_V1_2", DESCRIPTOR_SIZE_V1_2 as u64),
            ("CAPTURE_DESCRIPTOR_SIZE_V1_3", DESCRIPTOR_SIZE_V1_3 as u64),
            ("CAPTURE_MAGIC", u64::from(MAGIC)),
            ("CAPTURE_ABI_MAJOR", u64::from(ABI_MAJOR)),
            ("CAPTURE_ABI_MINOR", u64::from(ABI_MINOR)),
            ("CAPTURE_STATUS_OK", STATUS_OK as u64),
            ("CAPTURE_STATUS_ERROR", STATUS_ERROR as u64),
            ("CAPTURE_STATUS_PANIC", STATUS_PANIC as u64),
            ("CAPTURE_SCHEMA_VERSION", u64::from(SCHEMA_VERSION)),
            ("CAPTURE_MAX_OUTPUT", capture_engine::MAX_PLUGIN_OUTPUT as u64),
            ("CAPTURE_RESULT_CAPTURED", u64::from(RESULT_CAPTURED)),
            ("CAPTURE_RESULT_PENDING", u64::from(RESULT_PENDING)),
            ("CAPTURE_RESULT_ALREADY_CAPTURED", u64::from(RESULT_ALREADY_CAPTURED)),
            ("CAPTURE_RESULT_FAILED", u64::from(RESULT_FAILED)),
        ],
        // ABI 1.3: the struct messages.
        &size!("capture_str", Str),
        &at!("capture_str", Str, ptr, len),
        &size!("capture_pair", Pair),
        &at!("capture_pair", Pair, name, value),
        &size!("capture_raw_payment", RawPayment),
        &at!("capture_raw_payment", RawPayment, id, amount, authorized, method),
        &size!("capture_raw_shipping", RawShipping),
        &at!("capture_raw_shipping", RawShipping, company, method, tracking_number),
        &size!("capture_raw_capture_call", RawCaptureCall),
        &at!(
            "capture_raw_capture_call",
            RawCaptureCall,
            struct_size,
            schema,
            currency_exponent,
            full,
            base_url,
            order_id,
            currency,
            amount,
            order_amount,
            surcharge,
            idempotency_key,
            description,
            settings,
            settings_len,
            payments,
            payments_len,
            shipping
        ),
        &size!("capture_raw_header", RawHeader),
        &at!("capture_raw_header", RawHeader, name, value, secret),
        &size!("capture_raw_http_request", RawHttpRequest),
        &at!("capture_raw_http_request", RawHttpRequest, owner, method, url, body, headers, headers_len),
        &size!("capture_raw_http_response", RawHttpResponse),
        &at!("capture_raw_http_response", RawHttpResponse, struct_size, status, body, headers, headers_len),
        &size!("capture_raw_capture_result", RawCaptureResult),
        &at!(
            "capture_raw_capture_result",
            RawCaptureResult,
            owner,
            status,
            has_failure,
            failure_kind,
            retryable,
            has_retry_after,
            reserved,
            retry_after_ms,
            captured_amount,
            platform_capture_id,
            platform_code,
            message
        ),
    ]
    .concat();
    let dir = scratch("abi-c-layout");
    let source = dir.join("layout.c");
    let prints: String = rows
        .iter()
        .map(|(expr, _)| format!("    printf(\"%llu\\n\", (unsigned long long)({expr}));\n"))
        .collect();
    std::fs::write(
        &source,
        format!("#include <stdio.h>\n#include \"capture_connector.h\"\nint main(void) {{\n{prints}    return 0;\n}}\n"),
    )
    .expect("write");
    let exe = dir.join("layout");
    let include = repo().join("examples/c-connector");
    cc(&[
        "-std=c11".as_ref(),
        "-Wall".as_ref(),
        "-I".as_ref(),
        include.as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
        source.as_os_str(),
    ]);
    let out = Command::new(&exe).output().expect("run the layout program");
    assert!(out.status.success(), "the layout program failed: {out:?}");
    let c: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(c.len(), rows.len(), "one line per expression: {c:?}");
    let differ: Vec<String> = rows
        .iter()
        .zip(&c)
        .filter(|((_, rust), c)| rust.to_string() != **c)
        .map(|((expr, rust), c)| format!("{expr}: C {c}, Rust {rust}"))
        .collect();
    assert!(
        differ.is_empty(),
        "capture_connector.h and capture_connector_api::abi disagree:\n{}",
        differ.join("\n")
    );
    // The 1.3 descriptor and structs as the Rust unit tests give them on 64-bit targets.
    if cfg!(target_pointer_width = "64") {
        let value = |expr: &str| rows.iter().find(|(e, _)| *e == expr).map(|(_, v)| *v);
        for (expr, expected) in [
            ("CAPTURE_DESCRIPTOR_SIZE_V1_2", 88),
            ("CAPTURE_DESCRIPTOR_SIZE_V1_3", 112),
            ("sizeof(capture_raw_capture_call)", 184),
            ("sizeof(capture_raw_http_request)", 72),
            ("sizeof(capture_raw_http_response)", 40),
            ("sizeof(capture_raw_capture_result)", 104),
        ] {
            assert_eq!(value(expr), Some(expected), "{expr}");
        }
    }
}

/// Runs `sample` through an engine on `plugin` (as platform `id`) against a fresh emulator;
/// returns the report and the emulator.
async fn run_on(plugin: &Path, id: &str, sample: &str) -> (capture_core::CaptureReport, OpttyEmulator) {
    let emu = emulator().await;
    let p = Arc::new(Plugin::load(plugin).unwrap_or_else(|e| panic!("{e}")));
    let engine = engine_with(vec![p], &[(id, &emu.base_url())]);
    let mut req: Value = serde_json::from_slice(&crate::sample(sample)).expect("sample JSON");
    req["platform"] = json!(id);
    let report = engine.capture_json(req.to_string().as_bytes()).await.expect("valid");
    (report, emu)
}

#[tokio::test]
async fn the_c_connector_captures_end_to_end_like_the_rust_one() {
    let dir = scratch("abi-c-connector");
    let c = c_connector(&dir);
    let p = Plugin::load(&c).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.manifest().id.as_str(), p.abi_version()), ("optty_c", (1, 3)));
    assert_eq!(p.descriptor_size() as usize, DESCRIPTOR_SIZE_V1_3);
    // A 1.3 descriptor whose struct functions are NULL: every capture goes through JSON.
    assert!(!p.uses_struct_messages());

    let (report, emu) = run_on(&c, "optty_c", "full-capture.json").await;
    match &report.outcome {
        Outcome::Captured { amount, platform_capture_id } => {
            assert_eq!(amount.to_string(), "120.00 USD");
            assert_eq!(platform_capture_id.as_deref(), Some("cap_ORD-1001_1"));
        }
        other => panic!("expected a capture, got {other:?}"),
    }
    let books = emu.captures("ORD-1001");
    assert_eq!((books.len(), books[0].capture_reference.as_str()), (1, "ORD-1001-capture-1"));
    assert_eq!(books[0].amount, Decimal::new(12000, 2));

    // Every Optty sample gives the same exchanges and outcome through C as through Rust.
    for sample in [
        "full-capture.json",
        "partial-capture.json",
        "platform-refuses-partial.json",
        "platform-unknown-order.json",
    ] {
        let (from_c, emu_c) = run_on(&c, "optty_c", sample).await;
        let (from_rust, emu_rust) = run_on(&optty_plugin(), "optty", sample).await;
        let exchanges = |r: &capture_core::CaptureReport, emu: &OpttyEmulator| {
            serde_json::to_string(&r.exchanges).expect("json").replace(&emu.base_url(), "BASE")
        };
        assert_eq!(exchanges(&from_c, &emu_c), exchanges(&from_rust, &emu_rust), "{sample}: exchanges");
        assert_eq!(from_c.outcome, from_rust.outcome, "{sample}: outcome");
    }
}

// ---------------------------------------------------------------------------------------------
// the out-of-workspace connector

/// Builds examples/external-connector as its own project: own workspace, own Cargo.lock, own
/// target folder (`target/external`), the connector API by path only.
fn external_connector() -> PathBuf {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let project = repo().join("examples/external-connector");
    let target = artifacts().parent().expect("target/").join("external");
    let out = Command::new(&cargo)
        .arg("build")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "building examples/external-connector failed (if its Cargo.lock is stale: \
         cargo update --manifest-path examples/external-connector/Cargo.toml):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join(format!(
        "{}acme_capture_connector{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

#[test]
fn a_connector_built_outside_the_workspace_loads_and_verifies() {
    let project = repo().join("examples/external-connector");
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("its Cargo.toml");
    assert!(manifest.contains("\n[workspace]\n"), "it is its own workspace");
    assert!(manifest.contains(r#"capture-connector-api = { path = "../../crates/connector-api" }"#));
    assert!(project.join("Cargo.lock").is_file(), "it has its own Cargo.lock");
    let root = std::fs::read_to_string(repo().join("Cargo.toml")).expect("the root manifest");
    assert!(root.contains(r#"exclude = ["examples/external-connector"]"#));

    let lib = external_connector();
    let p = Plugin::load(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.manifest().id.as_str(), p.abi_version()), ("acme", (1, 3)));
    assert!(p.uses_struct_messages(), "the SDK exports the 1.3 struct messages");
    let built = p.build_capture(&call("A-1", "https://api.acme-pay.test")).expect("builds");
    assert_eq!(built.url, "https://api.acme-pay.test/captures");
    assert!(built.body.as_deref().is_some_and(|b| b.contains(r#""amount_minor":12000"#)), "{built:?}");
    assert_verify_passes(&lib, Some(&project.join("fixtures")));
}

// ---------------------------------------------------------------------------------------------
// the conformance kit and inspect

#[test]
fn verify_passes_on_the_shipped_connectors() {
    let text = assert_verify_passes(&optty_plugin(), None);
    assert!(text.contains("SKIP  golden-fixtures"), "Optty has no fixtures folder of its own: {text}");
    for platform in ["bigcommerce", "medusa", "wix"] {
        let text = assert_verify_passes(&plugin_file(platform), None);
        assert!(
            text.contains(&format!("fixtures in plugins/{platform}/fixtures give the expected answers")),
            "{text}"
        );
    }
    let text = assert_verify_passes(&plugin_file("template"), None);
    assert!(text.contains("fixtures in plugins/template/fixtures give the expected answers"), "{text}");
    for check in [
        "load",
        "engine-request-checks",
        "credentials-used",
        "schema-mismatch",
        "garbage-input",
        "odd-answers",
        "threads",
    ] {
        assert!(text.contains(&format!("PASS  {check}")), "{check}: {text}");
    }
}

#[test]
fn verify_passes_on_the_c_connector_and_the_rust_one_agrees_with_its_fixtures() {
    let dir = scratch("abi-c-verify");
    let fixtures = repo().join("examples/c-connector/fixtures");
    let text = assert_verify_passes(&c_connector(&dir), Some(&fixtures));
    assert!(text.contains("17 fixtures in"), "{text}");
    // The C connector's golden fixtures are the Rust Optty connector's answers too.
    assert_verify_passes(&optty_plugin(), Some(&fixtures));
}

#[test]
fn verify_fails_on_the_misbehaving_plugin_naming_the_check() {
    let (code, text) = verify(&misbehaving(), None);
    assert_eq!(code, Some(20), "{text}");
    assert!(text.contains("FAIL  schema-mismatch"), "{text}");
    assert!(
        text.contains("build_capture got a message with \"schema\": 99 and answered as if it were valid"),
        "{text}"
    );
    assert!(text.contains("fix: refuse a message whose `schema` is not 1"), "{text}");
    assert!(text.contains("result: FAIL"), "{text}");
    assert!(text.contains("PASS  load"), "{text}");
}

#[test]
fn verify_fails_on_a_plugin_that_does_not_load_and_on_wrong_fixtures() {
    let dir = scratch("abi-verify-failures");
    let (code, text) = verify(&descriptor_fixture(&dir, Some("FIXTURE_MINOR_NEXT")), None);
    assert_eq!(code, Some(20), "{text}");
    assert!(text.contains("FAIL  load") && text.contains("built for connector ABI 1.4"), "{text}");

    // A fixture the connector does not honour is named, with the differing field.
    let fixtures = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).expect("mkdir");
    let good = repo().join("plugins/template/fixtures/capture-request-usd.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(good).expect("read")).expect("json");
    doc["request"]["method"] = json!("PUT");
    std::fs::write(fixtures.join("wrong.json"), doc.to_string()).expect("write");
    let (code, text) = verify(&plugin_file("template"), Some(&fixtures));
    assert_eq!(code, Some(20), "{text}");
    assert!(text.contains("FAIL  golden-fixtures"), "{text}");
    assert!(
        text.contains("wrong.json") && text.contains(r#"`.method`: expected "PUT", got "POST""#),
        "{text}"
    );
}

#[test]
fn inspect_prints_manifest_abi_capabilities_and_hash() {
    let file = optty_plugin();
    let out = capture(&["plugins".as_ref(), "inspect".as_ref(), file.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let sha = capture_engine::sha256_file(&file).expect("hash");
    for part in [
        format!("sha256         {sha}"),
        format!("abi            1.3 (descriptor {DESCRIPTOR_SIZE_V1_3} bytes"),
        "connector      optty (Optty)".into(),
        "status query   not supported".into(),
        "max_currency_exponent: 2".into(),
        "allowed hosts  *.optty.com".into(),
        "credentials    bearer_token".into(),
    ] {
        assert!(text.contains(&part), "`{part}` missing from:\n{text}");
    }
    let out =
        capture(&["plugins".as_ref(), "inspect".as_ref(), "--json".as_ref(), misbehaving().as_os_str()]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["abi"], json!({ "major": 1, "minor": 0, "descriptor_size": DESCRIPTOR_SIZE_V1_0 }));
    assert_eq!(doc["manifest"]["id"], "misbehaving");
    assert_eq!(doc["status_query_supported"], false);

    let dir = scratch("abi-inspect-bad");
    let bad = descriptor_fixture(&dir, Some("FIXTURE_BAD_MAGIC"));
    let out = capture(&["plugins".as_ref(), "inspect".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(9), "a plugin error exits 9");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&bad.display().to_string()) && stderr.contains("magic"), "{stderr}");
}
