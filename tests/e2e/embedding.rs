//! Safe by default for a host that embeds the engine: `EngineBuilder::from_config` opens the
//! configured ledger (SQLite `capture.db` beside the configuration by default) and sets the
//! merchant; an engine without a ledger must be asked for and its reports say so; a missing
//! credential fails only its own platform's captures, naming the variable.

use capture_core::Outcome;
use capture_engine::{CaptureError, Engine, EngineBuilder, EngineConfig};

use crate::plugins::scratch;
use crate::{TOKEN, emulator, optty_plugin, sample};

const UNSET: &str = "CAPTURE_E2E_EMBED_NEVER_SET";

fn write_config(dir: &std::path::Path, base_url: &str, var: &str) -> std::path::PathBuf {
    let cfg = dir.join("capture.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{:?}]\nmerchant = \"acme\"\n\n[platforms.optty]\nbase_url = {base_url:?}\ncredentials = {{ bearer_token = {{ env = {var:?} }} }}\n",
            optty_plugin().display().to_string()
        ),
    )
    .expect("write config");
    cfg
}

/// The Optty platform set up in code, its credential given (replacing the configured one).
fn optty_in_code(base_url: &str) -> capture_engine::PlatformSetup {
    capture_engine::PlatformSetup {
        allowed_hosts: Vec::new(),
        base_url: base_url.to_owned(),
        timeout: std::time::Duration::from_secs(5),
        settings: Default::default(),
        credentials: [("bearer_token".to_owned(), capture_engine::Secret::new(TOKEN))].into(),
    }
}

#[tokio::test]
async fn from_config_opens_the_ledger_beside_the_configuration_and_sets_the_merchant() {
    let emu = emulator().await;
    let dir = scratch("embed-ledger");
    // The variable is set by nobody (the test process's environment is shared by its threads).
    let cfg = EngineConfig::load(&write_config(&dir, &emu.base_url(), UNSET)).expect("config");
    let engine = EngineBuilder::from_config(&cfg).await.expect("builds").build().expect("engine");
    assert!(engine.has_ledger(), "a ledger without asking");
    assert_eq!(engine.merchant(), "acme");
    assert!(dir.join("capture.db").exists(), "capture.db beside capture.toml");

    // The credential is missing: this platform's captures are refused naming the variable, and
    // nothing is sent or recorded.
    let err = engine.capture_json(&sample("full-capture.json")).await.expect_err("no credential");
    assert!(matches!(&err, CaptureError::MissingCredential { var, .. } if var == UNSET), "{err:?}");
    assert!(err.to_string().contains(UNSET) && err.to_string().contains("nothing was sent"), "{err}");
    assert!(engine.ready("optty").is_err());
    assert!(emu.captures("ORD-1001").is_empty());
    assert!(engine.ledger().expect("ledger").all().await.expect("read").is_empty());
}

#[tokio::test]
async fn a_credential_given_in_code_captures_once_on_the_configured_ledger() {
    let emu = emulator().await;
    let dir = scratch("embed-capture");
    // The credential's variable is unset; the host sets the platform up in code instead, which
    // replaces the configured one.
    let cfg = EngineConfig::load(&write_config(&dir, &emu.base_url(), UNSET)).expect("config");
    let engine = EngineBuilder::from_config(&cfg)
        .await
        .expect("builds")
        .platform("optty", optty_in_code(&emu.base_url()))
        .build()
        .expect("engine");
    let first = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(matches!(first.outcome, Outcome::Captured { .. }), "{:?}", first.outcome);
    let again = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(again.exchanges.is_empty(), "replayed from the ledger");
    assert_eq!(emu.captures("ORD-1001").len(), 1);
    let attempts = engine.ledger().expect("ledger").all().await.expect("read");
    assert_eq!((attempts.len(), attempts[0].merchant.as_str()), (1, "acme"));
}

#[tokio::test]
async fn an_engine_without_a_ledger_must_be_asked_for_and_its_reports_say_so() {
    let emu = emulator().await;
    let plugin = std::sync::Arc::new(capture_engine::Plugin::load(&optty_plugin()).expect("plugin"));
    let setup = capture_engine::PlatformSetup {
        allowed_hosts: Vec::new(),
        base_url: emu.base_url(),
        timeout: std::time::Duration::from_secs(5),
        settings: Default::default(),
        credentials: [("bearer_token".to_owned(), capture_engine::Secret::new(TOKEN))].into(),
    };
    let err = Engine::builder()
        .plugin(plugin.clone())
        .expect("plugin")
        .platform("optty", setup.clone())
        .build()
        .expect_err("no ledger, not asked");
    let msg = err.to_string();
    assert!(msg.contains("`store`") && msg.contains("without_ledger"), "{msg}");
    let engine = Engine::builder()
        .without_ledger()
        .plugin(plugin)
        .expect("plugin")
        .platform("optty", setup)
        .build()
        .expect("asked for");
    assert!(!engine.has_ledger());
    let report = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    let step = report.steps.iter().find(|s| s.name == "ledger").expect("a ledger step");
    assert_eq!(step.verdict, "none");
    assert!(step.detail.as_deref().is_some_and(|d| d.contains("no capture ledger")), "{step:?}");
}

/// Start-up builds no more Lua than the first capture needs: the configured rules are loaded
/// into one Lua state, the first capture runs on that state, and a second capture in sequence
/// builds none either.
#[tokio::test]
async fn start_up_builds_one_lua_state_and_the_first_capture_runs_on_it() {
    let emu = emulator().await;
    let dir = scratch("embed-lua-states");
    let cfg = write_config(&dir, &emu.base_url(), UNSET);
    let rules = crate::repo().join("rules/demo");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, format!("rules = {:?}\n{text}", rules.display().to_string())).expect("write");
    let cfg = EngineConfig::load(&cfg).expect("config");
    let engine = EngineBuilder::from_config(&cfg)
        .await
        .expect("builds")
        .platform("optty", optty_in_code(&emu.base_url()))
        .build()
        .expect("engine");
    let set = engine.rule_set();
    assert!(!set.rules().is_empty(), "the repository's rules are loaded");
    assert_eq!(set.states_built(), 1, "loading builds one state");
    let report = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(report.steps.iter().any(|s| s.source.as_str() == "rule"), "the rules ran: {:?}", report.steps);
    let again = engine.capture_json(&sample("partial-capture.json")).await.expect("valid");
    assert!(!again.steps.is_empty());
    assert_eq!(set.states_built(), 1, "the captures ran on the state built at load");
}
