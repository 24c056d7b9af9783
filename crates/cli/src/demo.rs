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
use capture_engine::store::SqliteStore;
use capture_engine::{Engine, FixedClock, PlatformSetup, Plugin, RuleLimits, RuleSet, Secret, StatusQuery};
use capture_sandbox::bigcommerce::{BigCommerceConfig, BigCommerceEmulator};
use capture_sandbox::medusa::{MedusaConfig, MedusaEmulator};
use capture_sandbox::wix::{WixConfig, WixEmulator};
use capture_sandbox::{OpttyConfig, OpttyEmulator};

use crate::Exit;

struct Scenario {
    title: &'static str,
    request: &'static str,
    expect: &'static str,
}

/// A platform of the demo: its emulator, plugin and sandbox credentials.
struct DemoPlatform {
    id: &'static str,
    base_url: String,
    settings: &'static [(&'static str, &'static str)],
    credentials: &'static [(&'static str, &'static str)],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        title: "Optty: full capture",
        request: include_str!("../../../examples/requests/full-capture.json"),
        expect: "captured",
    },
    Scenario {
        title: "Optty: partial capture (50.1 read exactly)",
        request: include_str!("../../../examples/requests/partial-capture.json"),
        expect: "captured",
    },
    Scenario {
        title: "Optty: held by a rule",
        request: include_str!("../../../examples/requests/held-large-order.json"),
        expect: "held",
    },
    Scenario {
        title: "Optty: rejected by a rule",
        request: include_str!("../../../examples/requests/rejected-missing-tracking.json"),
        expect: "rejected",
    },
    Scenario {
        title: "Optty: rejected by the built-in bounds",
        request: include_str!("../../../examples/requests/over-capture.json"),
        expect: "rejected",
    },
    Scenario {
        title: "Optty: refused by the platform (400)",
        request: include_str!("../../../examples/requests/platform-refuses-partial.json"),
        expect: "failed",
    },
    Scenario {
        title: "Optty: refused by the platform (404)",
        request: include_str!("../../../examples/requests/platform-unknown-order.json"),
        expect: "failed",
    },
    Scenario {
        title: "BigCommerce: full capture (asynchronous)",
        request: include_str!("../../../examples/requests/bigcommerce-full-capture.json"),
        expect: "pending",
    },
    Scenario {
        title: "BigCommerce: partial refused before any call",
        request: include_str!("../../../examples/requests/bigcommerce-partial-refused.json"),
        expect: "rejected",
    },
    Scenario {
        title: "Medusa: payment captured (minor units)",
        request: include_str!("../../../examples/requests/medusa-full-capture.json"),
        expect: "captured",
    },
    Scenario {
        title: "Medusa: 200 but requires_action is a failure",
        request: include_str!("../../../examples/requests/medusa-requires-action.json"),
        expect: "failed",
    },
    Scenario {
        title: "Wix: two payments in one call",
        request: include_str!("../../../examples/requests/wix-full-capture.json"),
        expect: "pending",
    },
    Scenario {
        title: "Wix: PAYMENT_ALREADY_CAPTURED",
        request: include_str!("../../../examples/requests/wix-already-captured.json"),
        expect: "already_captured",
    },
];

/// A capture whose answer the emulator drops after applying it (the demo's unknown outcome).
const LOST_ANSWER: &str = r#"{"platform":"optty","idempotency_key":"ORD-1006-capture-2","amount":"50.00",
  "order":{"id":"ORD-1006","currency":"AUD","amount":"99.95","surcharge":"1.05",
           "payments":[{"id":"pay-1006","amount":"101.00","method":"humm","partial_capture":true}]}}"#;

/// The Wix demo order with two payments.
const WIX_ORDER: &str = capture_sandbox::wix::demo_ids::USD_ORDER;

/// An order id short enough for the table (GUIDs are cut to their first group).
fn short(order: &str) -> &str {
    if order.len() > 10 { order.split('-').next().unwrap_or(order) } else { order }
}

/// One line about an outcome for people (the engine's, [`capture_engine::describe_outcome`]),
/// control characters escaped (a platform's message or a rule's reason cannot clear the screen
/// or forge a line).
pub(crate) fn describe(outcome: &Outcome) -> String {
    capture_core::text::escape(&capture_engine::describe_outcome(outcome)).into_owned()
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
    let rule_set = RuleSet::load_dir(rules, RuleLimits::default())
        .map_err(capture_engine::EngineError::from)
        .with_context(|| {
            format!("loading the demo rule pack {} (run the demo from the repository root)", rules.display())
        })?;
    let optty = OpttyEmulator::start(OpttyConfig::demo()).await.context("starting the Optty emulator")?;
    let bigcommerce = BigCommerceEmulator::start(BigCommerceConfig::demo())
        .await
        .context("starting the BigCommerce emulator")?;
    let wix = WixEmulator::start(WixConfig::demo()).await.context("starting the Wix emulator")?;
    let medusa = MedusaEmulator::start(MedusaConfig::demo()).await.context("starting the Medusa emulator")?;
    let platforms = [
        DemoPlatform {
            id: "optty",
            base_url: optty.base_url(),
            settings: &[],
            credentials: &[("bearer_token", "sandbox-optty-token")],
        },
        DemoPlatform {
            id: "bigcommerce",
            base_url: bigcommerce.base_url(),
            settings: &[("store_hash", "abc123")],
            credentials: &[("access_token", "sandbox-bigcommerce-token")],
        },
        DemoPlatform {
            id: "medusa",
            base_url: medusa.base_url(),
            settings: &[],
            credentials: &[("api_token", "sandbox-medusa-token")],
        },
        DemoPlatform {
            id: "wix",
            base_url: wix.base_url(),
            settings: &[],
            credentials: &[("api_key", capture_sandbox::wix::demo_ids::TOKEN)],
        },
    ];

    println!(
        "capture demo: every platform is an emulator on loopback (real HTTP), every connector a shared library"
    );
    let mut builder = Engine::builder();
    for p in &platforms {
        let plugin = Plugin::load(&plugin_file(&plugin_dir, &format!("capture_plugin_{}", p.id)))?;
        let (major, minor) = plugin.abi_version();
        println!("  {:<12} {} (ABI {major}.{minor}) -> {}", p.id, plugin.path().display(), p.base_url);
        let own = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        builder = builder.plugin(Arc::new(plugin))?.platform(
            p.id,
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: p.base_url.clone(),
                timeout: std::time::Duration::from_secs(10),
                settings: own(p.settings),
                // Sandbox data of the emulators, not anyone's secret.
                credentials: own(p.credentials).into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
            },
        );
    }
    let rule_names: Vec<String> = rule_set.rules().iter().map(|r| r.name.clone()).collect();
    println!("  rules        {} [{}] version {}", rules.display(), rule_names.join(", "), rule_set.version());
    println!();
    // The ledger: every capture is reserved, recorded and resolved there (exactly once). The
    // demo keeps it in memory; `capture run` keeps it in a SQLite file or PostgreSQL.
    let ledger = SqliteStore::in_memory().context("opening the in-memory ledger")?;
    let engine = builder
        .store(Arc::new(ledger))
        .rules(rule_set)
        .clock(Arc::new(FixedClock(
            Timestamp::parse_rfc3339("2026-11-21T09:00:00Z").map_err(anyhow::Error::msg)?,
        )))
        .build()?;

    let mut reports: Vec<CaptureReport> = Vec::new();
    let mut surprises = 0;
    println!("  {:<46} {:<10} {:<16} detail", "scenario", "order", "outcome");
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
            "{mark} {:<46} {:<10} {:<16} {}",
            s.title,
            short(&report.order_id),
            status,
            describe(&report.outcome)
        );
        reports.push(report);
    }

    // Exactly once: the same key again replays the recorded outcome; a lost answer is resolved.
    let replay = engine.capture_json(SCENARIOS[0].request.as_bytes()).await?;
    let replayed = replay.exchanges.is_empty() && replay.outcome.status() == "captured";
    surprises += usize::from(!replayed);
    println!(
        "{} {:<46} {:<10} {:<16} {}",
        if replayed { " " } else { "!" },
        "Optty: same key again: replayed, nothing sent",
        short(&replay.order_id),
        replay.outcome.status(),
        describe(&replay.outcome)
    );
    optty.faults().push([capture_sandbox::faults::Fault::drop_after_apply()]);
    let lost = engine.capture_json(LOST_ANSWER.as_bytes()).await?;
    let recovered = lost.outcome.status() == "captured" && optty.captures("ORD-1006").len() == 1;
    surprises += usize::from(!recovered);
    println!(
        "{} {:<46} {:<10} {:<16} {}",
        if recovered { " " } else { "!" },
        "Optty: answer lost, resolved by the same key",
        short(&lost.order_id),
        lost.outcome.status(),
        describe(&lost.outcome)
    );
    reports.push(replay);
    reports.push(lost);

    // Asynchronous captures settle later: ask the platforms.
    let usd = capture_core::Currency::from_code("USD").map_err(anyhow::Error::msg)?;
    for (title, platform, order) in [
        ("BigCommerce: status query, the capture settled", "bigcommerce", "100"),
        ("Wix: status query, the captures settled", "wix", WIX_ORDER),
    ] {
        let q = StatusQuery {
            platform: platform.into(),
            order_id: order.into(),
            currency: usd,
            payment_ids: vec![],
            idempotency_key: None,
            platform_capture_id: None,
        };
        let status = engine.status(&q).await?;
        let mark = if status.outcome.status() == "captured" { " " } else { "!" };
        if mark == "!" {
            surprises += 1;
        }
        println!(
            "{mark} {title:<46} {:<10} {:<16} {}",
            short(order),
            status.outcome.status(),
            describe(&status.outcome)
        );
    }

    println!();
    println!("  the Optty emulator's books:");
    for order in ["ORD-1001", "ORD-1002", "ORD-1003", "ORD-1004", "ORD-1005", "ORD-1006"] {
        let captures = optty.captures(order);
        let list: Vec<String> = captures
            .iter()
            .map(|c| format!("{} {} ({})", c.capture_id, c.amount, c.capture_reference))
            .collect();
        println!("    {order}: {}", if list.is_empty() { "no capture".to_owned() } else { list.join(", ") });
    }
    println!(
        "  the BigCommerce emulator: order 100 is `{}`, order 101 is `{}`",
        bigcommerce.payment_status(100).unwrap_or_default(),
        bigcommerce.payment_status(101).unwrap_or_default()
    );
    if print_reports {
        for r in &reports {
            println!();
            print!("{}", r.to_json());
        }
    } else {
        println!();
        println!("  (add --reports to print every capture report as JSON)");
    }
    optty.shutdown().await;
    bigcommerce.shutdown().await;
    wix.shutdown().await;
    medusa.shutdown().await;
    if surprises > 0 {
        bail!("{surprises} scenario(s) did not end as expected (marked with !)");
    }
    Ok(Exit::Ok.code())
}
