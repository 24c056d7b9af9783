//! Every demo scenario through the real plugin and a real socket, snapshotted.

use capture_core::Outcome;
use rust_decimal::Decimal;

use crate::{emulator, engine, sample, stable};

async fn run(name: &str) -> (String, capture_core::CaptureReport, capture_sandbox::OpttyEmulator) {
    let emu = emulator().await;
    let report = engine(&emu).capture_json(&sample(name)).await.expect("request is valid");
    (stable(&report.to_json(), &emu), report, emu)
}

#[tokio::test]
async fn full_capture() {
    let (json, report, emu) = run("full-capture.json").await;
    insta::assert_snapshot!("full_capture", json);
    assert!(matches!(report.outcome, Outcome::Captured { .. }));
    let books = emu.captures("ORD-1001");
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].amount, Decimal::new(12000, 2));
    assert_eq!(books[0].capture_reference, "ORD-1001-capture-1");
    assert_eq!(report.tags, vec!["first-time-customer".to_owned()]);
}

#[tokio::test]
async fn partial_capture_reads_the_json_number_exactly() {
    let (json, report, emu) = run("partial-capture.json").await;
    insta::assert_snapshot!("partial_capture", json);
    let body = report.exchanges[0].request.body.as_deref().unwrap_or("");
    assert!(body.contains(r#""amount":50.10"#), "{body}");
    assert!(body.contains(r#""shippingInfo":{"shippingCompany":"DHL""#), "{body}");
    assert_eq!(emu.captures("ORD-1002")[0].amount, Decimal::new(5010, 2));
}

#[tokio::test]
async fn held_by_a_rule_never_reaches_the_platform() {
    let (json, report, emu) = run("held-large-order.json").await;
    insta::assert_snapshot!("held_large_order", json);
    assert!(matches!(&report.outcome, Outcome::Held { by, .. } if by == "rule:hold-large-orders"));
    assert!(report.exchanges.is_empty());
    assert!(emu.captures("ORD-1003").is_empty());
}

#[tokio::test]
async fn rejected_by_a_rule_never_reaches_the_platform() {
    let (json, report, emu) = run("rejected-missing-tracking.json").await;
    insta::assert_snapshot!("rejected_missing_tracking", json);
    assert!(matches!(&report.outcome, Outcome::Rejected { code, .. } if code == "no_tracking"));
    assert!(emu.captures("ORD-1005").is_empty());
}

#[tokio::test]
async fn over_capture_is_rejected_by_the_builtin_bounds() {
    let (json, report, emu) = run("over-capture.json").await;
    insta::assert_snapshot!("over_capture", json);
    assert!(
        matches!(&report.outcome, Outcome::Rejected { by, code, .. } if by == "builtin:bounds" && code == "amount_exceeds_capturable")
    );
    assert!(emu.captures("ORD-1006").is_empty());
}

#[tokio::test]
async fn platform_refuses_a_partial_capture_of_a_full_only_method() {
    let (json, report, emu) = run("platform-refuses-partial.json").await;
    insta::assert_snapshot!("platform_refuses_partial", json);
    match &report.outcome {
        Outcome::Failed { kind, retryable, platform_code, message, .. } => {
            assert_eq!(*kind, capture_core::FailureKind::InvalidRequest);
            assert!(!retryable);
            assert_eq!(platform_code.as_deref(), Some("400"));
            assert!(message.contains("klarna-pay-in-full"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(emu.captures("ORD-1004").is_empty());
}

#[tokio::test]
async fn platform_does_not_know_the_order() {
    let (json, report, _emu) = run("platform-unknown-order.json").await;
    insta::assert_snapshot!("platform_unknown_order", json);
    assert!(matches!(&report.outcome, Outcome::Failed { kind: capture_core::FailureKind::NotFound, .. }));
}

#[tokio::test]
async fn the_secret_never_reaches_the_report() {
    let emu = emulator().await;
    let report = engine(&emu).capture_json(&sample("full-capture.json")).await.expect("valid");
    let json = report.to_json();
    assert!(!json.contains(crate::TOKEN), "the bearer token leaked into the report");
    assert!(json.contains("Bearer [REDACTED]"));
}

#[tokio::test]
async fn a_wrong_credential_is_unauthorized() {
    let emu = emulator().await;
    let plugin = capture_engine::Plugin::load(&crate::optty_plugin()).expect("loads");
    let engine = capture_engine::Engine::builder()
        .plugin(std::sync::Arc::new(plugin))
        .expect("plugin")
        .platform(
            "optty",
            capture_engine::PlatformSetup {
                base_url: emu.base_url(),
                timeout: std::time::Duration::from_secs(5),
                settings: Default::default(),
                credentials: [("bearer_token".to_owned(), capture_engine::Secret::new("wrong"))].into(),
            },
        )
        .build()
        .expect("builds");
    let report = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(
        matches!(&report.outcome, Outcome::Failed { kind: capture_core::FailureKind::Unauthorized, .. }),
        "{:?}",
        report.outcome
    );
    assert!(emu.captures("ORD-1001").is_empty());
}

#[tokio::test]
async fn the_same_idempotency_key_cannot_capture_twice() {
    let emu = emulator().await;
    let engine = engine(&emu);
    let first = engine.capture_json(&sample("partial-capture.json")).await.expect("valid");
    assert!(matches!(first.outcome, Outcome::Captured { .. }));
    let second = engine.capture_json(&sample("partial-capture.json")).await.expect("valid");
    assert!(matches!(second.outcome, Outcome::Failed { .. }), "{:?}", second.outcome);
    assert_eq!(emu.captures("ORD-1002").len(), 1, "the platform captured once");
}

#[tokio::test]
async fn an_unreachable_platform_is_a_retryable_failure_with_nothing_sent() {
    let emu = emulator().await;
    let engine = engine(&emu);
    emu.shutdown().await;
    let report = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(
        matches!(
            &report.outcome,
            Outcome::Failed { kind: capture_core::FailureKind::PlatformUnavailable, retryable: true, .. }
        ),
        "{:?}",
        report.outcome
    );
}
