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
        .without_ledger()
        .plugin(std::sync::Arc::new(plugin))
        .expect("plugin")
        .platform(
            "optty",
            capture_engine::PlatformSetup {
                allowed_hosts: Vec::new(),
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
    assert!(matches!(second.outcome, Outcome::AlreadyCaptured { .. }), "{:?}", second.outcome);
    assert_eq!(emu.captures("ORD-1002").len(), 1, "the platform captured once");
}

#[tokio::test]
async fn an_unreachable_platform_is_a_retryable_failure_with_nothing_sent() {
    // Port 1 on loopback: nothing listens there (a freed emulator port could be taken by another
    // test's emulator meanwhile).
    let engine = crate::engine_on(
        "optty",
        "http://127.0.0.1:1",
        &[],
        &[("bearer_token", crate::TOKEN)],
        capture_engine::RuleSet::empty(),
    );
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

mod faults {
    use capture_core::{FailureKind, Outcome};
    use capture_sandbox::faults::Fault;

    use crate::{emulator, engine, engine_on, sample};

    #[tokio::test]
    async fn a_503_is_retryable_because_the_capture_reference_dedupes() {
        let emu = emulator().await;
        emu.faults().push([Fault::status(503)]);
        let report = engine(&emu).capture_json(&sample("full-capture.json")).await.expect("valid");
        assert!(
            matches!(&report.outcome, Outcome::Failed { kind: FailureKind::PlatformUnavailable, retryable: true, platform_code: Some(c), .. } if c == "503"),
            "{:?}",
            report.outcome
        );
        assert!(emu.captures("ORD-1001").is_empty(), "a 503 before the capture applied nothing");
        // The retry with the same key goes through once.
        let again = engine(&emu).capture_json(&sample("full-capture.json")).await.expect("valid");
        assert!(matches!(again.outcome, Outcome::Captured { .. }), "{:?}", again.outcome);
        assert_eq!(emu.captures("ORD-1001").len(), 1);
    }

    #[tokio::test]
    async fn a_429_carries_the_reset_hint() {
        let emu = emulator().await;
        emu.faults().push([Fault::rate_limited(1500)]);
        let report = engine(&emu).capture_json(&sample("full-capture.json")).await.expect("valid");
        assert!(
            matches!(
                &report.outcome,
                Outcome::Failed {
                    kind: FailureKind::RateLimited,
                    retryable: true,
                    retry_after_ms: Some(2000),
                    ..
                }
            ),
            "{:?}",
            report.outcome
        );
        assert!(emu.captures("ORD-1001").is_empty());
    }

    #[tokio::test]
    async fn a_dropped_connection_after_apply_is_an_unknown_outcome_not_a_failure() {
        let emu = emulator().await;
        emu.faults().push([Fault::drop_after_apply()]);
        let report = engine(&emu).capture_json(&sample("full-capture.json")).await.expect("valid");
        assert!(
            matches!(
                &report.outcome,
                Outcome::Failed { kind: FailureKind::OutcomeUnknown, retryable: false, .. }
            ),
            "{:?}",
            report.outcome
        );
        assert_eq!(emu.captures("ORD-1001").len(), 1, "the platform did capture");
    }

    #[tokio::test]
    async fn a_slow_answer_past_the_timeout_is_an_unknown_outcome() {
        let emu = emulator().await;
        emu.faults().push([Fault::delay(3_000)]);
        let engine = engine_on(
            "optty",
            &emu.base_url(),
            &[],
            &[("bearer_token", crate::TOKEN)],
            capture_engine::RuleSet::empty(),
        );
        let report = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
        match &report.outcome {
            Outcome::Failed { kind: FailureKind::OutcomeUnknown, message, .. } => {
                assert!(message.contains("no answer within 2000 ms"), "{message}")
            }
            other => panic!("expected an unknown outcome, got {other:?}"),
        }
        assert_eq!(emu.captures("ORD-1001").len(), 1, "the platform did capture");
    }

    #[tokio::test]
    async fn optty_has_no_status_query() {
        let emu = emulator().await;
        let q = capture_engine::StatusQuery {
            platform: "optty".into(),
            order_id: "ORD-1001".into(),
            currency: capture_core::Currency::from_code("USD").expect("USD"),
            payment_ids: vec![],
            idempotency_key: None,
            platform_capture_id: None,
        };
        let err = engine(&emu).status(&q).await.expect_err("Optty documents no status route");
        assert!(err.to_string().contains("cannot read a capture's state"), "{err}");
    }
}
