//! End-to-end tests: the real Optty plugin loaded from disk, real HTTP over loopback to the
//! emulator, the real example rules, and insta snapshots of every capture report.
//!
//! The plugins and the `capture` binary must be built first: `cargo build --workspace`
//! (the README's test command does it).

mod abi;
mod bad_requests;
mod batch;
mod bigcommerce;
mod crash;
mod embedding;
mod exit_codes;
mod hostile;
mod ledger;
mod loader_attacks;
mod medusa;
mod plugin_kit;
mod plugins;
mod processes;
mod reconcile_on_start;
mod rules;
mod scenarios;
mod secrets;
mod serve;
mod serve_pg;
mod traces;
mod verify_isolation;
mod wix;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use capture_core::Timestamp;
use capture_engine::{Engine, FixedClock, PlatformSetup, Plugin, RuleLimits, RuleSet, Secret};
use capture_sandbox::{OpttyConfig, OpttyEmulator};

/// The demo emulator's bearer token (sandbox data).
pub const TOKEN: &str = "sandbox-optty-token";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The folder holding this build's artifacts (`target/debug`), found from the test executable
/// (`target/debug/deps/e2e-*`), so a custom CARGO_TARGET_DIR works too.
pub fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// A built artifact, with a message that says how to build it when it is missing.
pub fn artifact(name: &str) -> PathBuf {
    let p = artifacts().join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` before the tests", p.display());
    p
}

/// A plugin file of this build, by platform (`optty` -> `libcapture_plugin_optty.so`).
pub fn plugin_file(platform: &str) -> PathBuf {
    artifact(&format!(
        "{}capture_plugin_{platform}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// The Optty plugin file.
pub fn optty_plugin() -> PathBuf {
    plugin_file("optty")
}

/// An engine with one platform: its real plugin from disk, the given base URL, settings and
/// credentials, the given rules, and the fixed test clock.
pub fn engine_on(
    platform: &str,
    base_url: &str,
    settings: &[(&str, &str)],
    credentials: &[(&str, &str)],
    rules: RuleSet,
) -> Engine {
    let plugin = Plugin::load(&plugin_file(platform)).unwrap_or_else(|e| panic!("{e}"));
    let own = |pairs: &[(&str, &str)]| {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>()
    };
    Engine::builder()
        .without_ledger()
        .plugin(Arc::new(plugin))
        .expect("one plugin")
        .rules(rules)
        .clock(Arc::new(FixedClock(test_time())))
        .platform(
            platform,
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: base_url.to_owned(),
                timeout: Duration::from_secs(2),
                settings: own(settings),
                credentials: own(credentials).into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
            },
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An engine like [`engine_on`], with a capture ledger (and the fixed test clock).
pub fn engine_with_store(
    platform: &str,
    base_url: &str,
    settings: &[(&str, &str)],
    credentials: &[(&str, &str)],
    store: Arc<dyn capture_engine::CaptureStore>,
) -> Engine {
    engine_with_store_and_clock(
        platform,
        base_url,
        settings,
        credentials,
        store,
        Arc::new(FixedClock(test_time())),
    )
}

/// An engine like [`engine_with_store`] on the given clock. An engine that shares its ledger with
/// `capture` processes must use the real clock: leases expire by the clock, and the engines of one
/// ledger must keep their clocks within the documented skew bound (ARCHITECTURE.md, "Clock skew").
/// The fixed test clock is days behind the real one, so a process on the real clock would find
/// this engine's live leases expired and take its attempts over.
pub fn engine_with_store_and_clock(
    platform: &str,
    base_url: &str,
    settings: &[(&str, &str)],
    credentials: &[(&str, &str)],
    store: Arc<dyn capture_engine::CaptureStore>,
    clock: Arc<dyn capture_engine::Clock>,
) -> Engine {
    let plugin = Plugin::load(&plugin_file(platform)).unwrap_or_else(|e| panic!("{e}"));
    let own = |pairs: &[(&str, &str)]| {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>()
    };
    Engine::builder()
        .plugin(Arc::new(plugin))
        .expect("one plugin")
        .clock(clock)
        .store(store)
        .retry(capture_engine::RetryPolicy {
            max_sends: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(3),
        })
        .platform(
            platform,
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: base_url.to_owned(),
                timeout: Duration::from_secs(2),
                settings: own(settings),
                credentials: own(credentials).into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
            },
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh SQLite ledger in a scratch folder.
pub fn sqlite_store(name: &str) -> Arc<dyn capture_engine::CaptureStore> {
    let dir = plugins::scratch(name);
    Arc::new(capture_engine::store::SqliteStore::open(&dir.join("ledger.db")).expect("open SQLite ledger"))
}

/// A report's JSON with a base URL replaced by a stable placeholder, ready for a snapshot.
pub fn stable_url(json: &str, base_url: &str) -> String {
    json.replace(base_url, "http://127.0.0.1:[port]")
}

/// The fixed clock value of every test report.
pub fn test_time() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-21T09:00:00Z").expect("valid time")
}

/// An engine on the real plugin and the demo rules, pointed at `emulator`.
pub fn engine(emulator: &OpttyEmulator) -> Engine {
    engine_with_rules(
        emulator,
        RuleSet::load_dir(&repo().join("rules/demo"), RuleLimits::default()).expect("demo rules load"),
    )
}

/// Same, with a given rule set.
pub fn engine_with_rules(emulator: &OpttyEmulator, rules: RuleSet) -> Engine {
    let plugin = Plugin::load(&optty_plugin()).expect("the Optty plugin loads");
    Engine::builder()
        .without_ledger()
        .plugin(Arc::new(plugin))
        .expect("one plugin")
        .rules(rules)
        .clock(Arc::new(FixedClock(test_time())))
        .platform(
            "optty",
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: emulator.base_url(),
                timeout: Duration::from_secs(10),
                settings: BTreeMap::new(),
                credentials: BTreeMap::from([("bearer_token".to_owned(), Secret::new(TOKEN))]),
            },
        )
        .build()
        .expect("engine builds")
}

/// A demo emulator.
pub async fn emulator() -> OpttyEmulator {
    OpttyEmulator::start(OpttyConfig::demo()).await.expect("emulator starts")
}

/// The report JSON with the emulator's random port replaced, ready for a snapshot.
pub fn stable(json: &str, emulator: &OpttyEmulator) -> String {
    json.replace(&emulator.base_url(), "http://127.0.0.1:[port]")
}

/// A sample request from examples/requests.
pub fn sample(name: &str) -> Vec<u8> {
    let p = repo().join("examples/requests").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
