//! Embedding the engine in a host application, with a host hook written in Rust.
//!
//! The host here is a fulfilment service: it knows which orders left the warehouse, and a hook
//! holds any capture of an order that has not shipped. The platform is the Optty emulator on
//! loopback; the connector is the real plugin from `target/debug`.
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
use capture_engine::{Engine, Hook, HookContext, Observation, PlatformSetup, Plugin, Secret};
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
    let plugin = Plugin::load(&plugin_path()?)?;
    let engine = Engine::builder()
        .plugin(Arc::new(plugin))?
        .hook(Arc::new(ShippedOnly { shipped: BTreeSet::from(["ORD-1001".to_owned()]) }))
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

    let shipped = engine.capture_json(request("ORD-1001", "120.00").as_bytes()).await?;
    let waiting = engine.capture_json(request("ORD-1005", "45.00").as_bytes()).await?;
    for report in [&shipped, &waiting] {
        println!("{} -> {} {:?}", report.order_id, report.outcome.status(), report.tags);
    }
    anyhow::ensure!(matches!(shipped.outcome, Outcome::Captured { .. }), "ORD-1001 should be captured");
    anyhow::ensure!(matches!(waiting.outcome, Outcome::Held { .. }), "ORD-1005 should be held");
    anyhow::ensure!(emulator.captures("ORD-1005").is_empty(), "a held capture never reaches the platform");
    emulator.shutdown().await;
    Ok(())
}
