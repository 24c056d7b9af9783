//! `capture demo`: the whole product on embedded defaults, with real parts and no credentials.
//!
//! The Optty emulator runs on a loopback port, the Optty connector is loaded from its shared
//! library on disk, the example rule pack from `rules/demo` decides, and the sample requests of
//! `examples/requests/` (embedded in the binary) are captured over real HTTP. Each scenario states
//! the outcome it expects; the demo exits non-zero if one differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use capture_core::{CaptureReport, Outcome, Timestamp};
use capture_engine::{Engine, FixedClock, PlatformSetup, Plugin, RuleLimits, RuleSet, Secret};
use capture_sandbox::{OpttyConfig, OpttyEmulator};

use crate::exit;

/// The emulator's demo token: public sandbox data, not a secret of anyone's.
const DEMO_TOKEN: &str = "sandbox-optty-token";

struct Scenario {
    title: &'static str,
    request: &'static str,
    expect: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        title: "full capture",
        request: include_str!("../../../examples/requests/full-capture.json"),
        expect: "captured",
    },
    Scenario {
        title: "partial capture (50.1 read exactly)",
        request: include_str!("../../../examples/requests/partial-capture.json"),
        expect: "captured",
    },
    Scenario {
        title: "held by a rule",
        request: include_str!("../../../examples/requests/held-large-order.json"),
        expect: "held",
    },
    Scenario {
        title: "rejected by a rule",
        request: include_str!("../../../examples/requests/rejected-missing-tracking.json"),
        expect: "rejected",
    },
    Scenario {
        title: "rejected by the built-in bounds",
        request: include_str!("../../../examples/requests/over-capture.json"),
        expect: "rejected",
    },
    Scenario {
        title: "refused by the platform (400)",
        request: include_str!("../../../examples/requests/platform-refuses-partial.json"),
        expect: "failed",
    },
    Scenario {
        title: "refused by the platform (404)",
        request: include_str!("../../../examples/requests/platform-unknown-order.json"),
        expect: "failed",
    },
];

/// One line about an outcome.
pub(crate) fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Captured { amount, platform_capture_id } => {
            format!("{amount} captured (id {})", platform_capture_id.as_deref().unwrap_or("-"))
        }
        Outcome::Pending { amount, .. } => format!("{amount} pending at the platform"),
        Outcome::Rejected { by, reason, .. } => format!("by {by}: {reason}"),
        Outcome::Held { by, reason } => format!("by {by}: {reason}"),
        Outcome::AlreadyCaptured { platform_code, message } => {
            format!("already captured ({}): {message}", platform_code.as_deref().unwrap_or("-"))
        }
        Outcome::Failed { kind, platform_code, message, retryable, retry_after_ms } => format!(
            "{kind:?} ({}){}{}: {message}",
            platform_code.as_deref().unwrap_or("no answer"),
            if *retryable { ", retryable" } else { "" },
            retry_after_ms.map(|ms| format!(" after {ms} ms")).unwrap_or_default()
        ),
    }
}

fn plugin_file(dir: &Path, crate_name: &str) -> PathBuf {
    dir.join(format!("{}{crate_name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

pub(crate) async fn run(plugins: Option<PathBuf>, rules: &Path, print_reports: bool) -> anyhow::Result<u8> {
    let plugin_dir = match plugins {
        Some(d) => d,
        None => std::env::current_exe()
            .context("locating the capture executable")?
            .parent()
            .map(Path::to_path_buf)
            .context("the executable has no parent folder")?,
    };
    let plugin = Plugin::load(&plugin_file(&plugin_dir, "capture_plugin_optty"))?;
    let rule_set = RuleSet::load_dir(rules, RuleLimits::default())
        .map_err(capture_engine::EngineError::from)
        .with_context(|| {
            format!("loading the demo rule pack {} (run the demo from the repository root)", rules.display())
        })?;
    let emulator = OpttyEmulator::start(OpttyConfig::demo()).await.context("starting the Optty emulator")?;

    println!("capture demo");
    println!("  platform  Optty emulator on {} (real HTTP over loopback)", emulator.base_url());
    println!(
        "  connector {} {} from {} (ABI {}.{})",
        plugin.manifest().id,
        plugin.manifest().version,
        plugin.path().display(),
        plugin.abi_version().0,
        plugin.abi_version().1
    );
    let rule_names: Vec<String> = rule_set.rules().iter().map(|r| r.name.clone()).collect();
    println!("  rules     {} [{}] version {}", rules.display(), rule_names.join(", "), rule_set.version());
    println!();

    let engine = Engine::builder()
        .plugin(Arc::new(plugin))?
        .rules(rule_set)
        .clock(Arc::new(FixedClock(
            Timestamp::parse_rfc3339("2026-11-21T09:00:00Z").map_err(anyhow::Error::msg)?,
        )))
        .platform(
            "optty",
            PlatformSetup {
                base_url: emulator.base_url(),
                timeout: std::time::Duration::from_secs(10),
                settings: BTreeMap::new(),
                credentials: BTreeMap::from([("bearer_token".to_owned(), Secret::new(DEMO_TOKEN))]),
            },
        )
        .build()?;

    let mut reports: Vec<CaptureReport> = Vec::new();
    let mut surprises = 0;
    println!("  {:<38} {:<10} {:<10} detail", "scenario", "order", "outcome");
    for s in SCENARIOS {
        let report = engine
            .capture_json(s.request.as_bytes())
            .await
            .with_context(|| format!("scenario `{}`", s.title))?;
        let status = report.outcome.status();
        let mark = if status == s.expect { " " } else { "!" };
        if status != s.expect {
            surprises += 1;
        }
        println!(
            "{mark} {:<38} {:<10} {:<10} {}",
            s.title,
            report.order_id,
            status,
            describe(&report.outcome)
        );
        reports.push(report);
    }
    println!();
    println!("  the emulator's books:");
    for order in ["ORD-1001", "ORD-1002", "ORD-1003", "ORD-1004", "ORD-1005", "ORD-1006"] {
        let captures = emulator.captures(order);
        let list: Vec<String> = captures
            .iter()
            .map(|c| format!("{} {} ({})", c.capture_id, c.amount, c.capture_reference))
            .collect();
        println!("    {order}: {}", if list.is_empty() { "no capture".to_owned() } else { list.join(", ") });
    }
    if print_reports {
        for r in &reports {
            println!();
            print!("{}", r.to_json());
        }
    } else {
        println!();
        println!("  (add --reports to print every capture report as JSON)");
    }
    emulator.shutdown().await;
    if surprises > 0 {
        bail!("{surprises} scenario(s) did not end as expected (marked with !)");
    }
    Ok(exit::CAPTURED)
}
