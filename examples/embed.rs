//! Embedding the engine in a host application, with a host hook written in Rust.
//!
//! The host here is a fulfilment service: it knows which orders left the warehouse, and a hook
//! holds any capture of an order that has not shipped. The platform is the Optty emulator on
//! loopback; the connector is the real plugin from `target/debug`; the engine comes from a
//! configuration, so it has a capture ledger (exactly-once) without asking for one.
//!
//! ```text
//! cargo build --workspace && cargo run -p capture-examples --example embed
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use capture_core::{Decision, Outcome};
use capture_engine::{
    EngineBuilder, EngineConfig, Hook, HookContext, Observation, PlatformSetup, PluginEntry, Secret,
};
use capture_sandbox::{OpttyConfig, OpttyEmulator};

/// Holds captures of orders the warehouse has not shipped yet.
struct ShippedOnly {
    shipped: BTreeSet<String>,
}

#[async_trait]
impl Hook for ShippedOnly {
    fn name(&self) -> &str {
        "shipped-only"
    }

    async fn pre_validate(&self, ctx: &HookContext<'_>) -> Decision {
        if self.shipped.contains(&ctx.request.order.id) {
            Decision::Allow
        } else {
            Decision::Hold { reason: format!("order {} has not left the warehouse", ctx.request.order.id) }
        }
    }

    async fn post_capture(&self, _ctx: &HookContext<'_>, outcome: &Outcome) -> Observation {
        Observation { tags: vec![format!("fulfilment-{}", outcome.status())], notes: vec![] }
    }
}

fn plugin_path() -> anyhow::Result<PathBuf> {
    // target/debug/examples/embed -> target/debug
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(|p| p.parent()).context("locating the target folder")?;
    Ok(dir.join(format!(
        "{}capture_plugin_optty{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )))
}

fn request(order: &str, amount: &str) -> String {
    format!(
        r#"{{"platform":"optty","idempotency_key":"{order}-embed-1","amount":"full",
            "order":{{"id":"{order}","currency":"USD","amount":"{amount}",
                      "payments":[{{"id":"pay-{order}","amount":"{amount}","method":"afterpay"}}]}}}}"#
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = OpttyEmulator::start(OpttyConfig::demo()).await?;
    // What a `capture.toml` would hold: the plugin and the ledger. `from_config` opens the
    // ledger (here a SQLite file in a scratch folder; by default `capture.db` beside the
    // configuration file) and sets the merchant: every capture is exactly-once.
    let dir = std::env::temp_dir().join(format!("capture-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = EngineConfig {
        plugins: vec![PluginEntry::new(plugin_path()?)],
        merchant: Some("fulfilment".into()),
        base_dir: Some(dir.clone()),
        ..EngineConfig::default()
    };
    let engine = EngineBuilder::from_config(&config)
        .await?
        .hook(Arc::new(ShippedOnly { shipped: BTreeSet::from(["ORD-1001".to_owned()]) }))
        // A platform set up in code; a configuration file's `[platforms.optty]` does the same
        // with the credential read from an environment variable.
        .platform(
            "optty",
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: emulator.base_url(),
                timeout: Duration::from_secs(10),
                settings: BTreeMap::new(),
                credentials: BTreeMap::from([(
                    "bearer_token".to_owned(),
                    Secret::new("sandbox-optty-token"),
                )]),
            },
        )
        .build()?;
    anyhow::ensure!(engine.has_ledger(), "from_config opens the ledger");
    // Once, before the first capture: resolve what an earlier run left unresolved (a crash, a
    // lost answer), within the engine's bound; what lies beyond it waits for `capture reconcile`.
    let started = engine.reconcile_on_start().await.map_err(anyhow::Error::msg)?;
    println!("reconciled on start: {} attempt(s), {} left for later", started.examined.len(), started.left);

    let shipped = engine.capture_json(request("ORD-1001", "120.00").as_bytes()).await?;
    let waiting = engine.capture_json(request("ORD-1005", "45.00").as_bytes()).await?;
    // The host retries (its own answer was lost, say): the ledger replays, nothing is sent.
    let retried = engine.capture_json(request("ORD-1001", "120.00").as_bytes()).await?;
    for report in [&shipped, &waiting, &retried] {
        println!("{} -> {} {:?}", report.order_id, report.outcome.status(), report.tags);
    }
    anyhow::ensure!(matches!(shipped.outcome, Outcome::Captured { .. }), "ORD-1001 should be captured");
    anyhow::ensure!(matches!(waiting.outcome, Outcome::Held { .. }), "ORD-1005 should be held");
    anyhow::ensure!(emulator.captures("ORD-1005").is_empty(), "a held capture never reaches the platform");
    anyhow::ensure!(retried.exchanges.is_empty(), "a retried key is replayed from the ledger");
    anyhow::ensure!(emulator.captures("ORD-1001").len() == 1, "captured once");
    emulator.shutdown().await;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}
