//! Exactly-once captures through the ledger: idempotent replays, key conflicts, bounds across
//! requests, safe retries, unknown outcomes resolved from the platform, concurrency, two
//! processes and crashes at each step of the state machine.

use std::sync::Arc;

use capture_core::{FailureKind, Outcome};
use capture_engine::{AttemptState, CaptureError, CaptureStore};
use capture_sandbox::faults::Fault;
use capture_sandbox::wix::{WixConfig, WixEmulator, demo_ids};
use rust_decimal::Decimal;

use crate::{TOKEN, emulator, engine_with_store, sample, sqlite_store};

fn optty(emu: &capture_sandbox::OpttyEmulator, store: Arc<dyn CaptureStore>) -> capture_engine::Engine {
    engine_with_store("optty", &emu.base_url(), &[], &[("bearer_token", TOKEN)], store)
}

fn request(key: &str, order: &str, amount: &str) -> Vec<u8> {
    format!(
        r#"{{"platform":"optty","idempotency_key":"{key}","amount":"{amount}",
            "order":{{"id":"{order}","currency":"USD","amount":"120.00",
                      "payments":[{{"id":"pay-{order}","amount":"120.00","method":"afterpay","partial_capture":true}}]}}}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn the_same_key_replays_the_recorded_outcome_without_calling_the_platform() {
    let emu = emulator().await;
    let store = sqlite_store("ledger-replay");
    let engine = optty(&emu, store.clone());
    let first = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(matches!(first.outcome, Outcome::Captured { .. }), "{:?}", first.outcome);
    let second = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert_eq!(second.outcome, first.outcome, "the recorded outcome comes back");
    assert!(second.exchanges.is_empty(), "nothing was sent the second time");
    assert!(second.steps.iter().any(|s| s.name == "ledger" && s.verdict == "replayed"));
    assert_eq!(emu.captures("ORD-1001").len(), 1);
    let attempts = store.all().await.expect("ledger");
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].state, attempts[0].sends), (AttemptState::Captured, 1));
}

#[tokio::test]
async fn the_same_key_for_another_amount_is_refused_naming_the_key() {
    let emu = emulator().await;
    let engine = optty(&emu, sqlite_store("ledger-conflict"));
    engine.capture_json(&request("k-1", "ORD-1001", "20.00")).await.expect("valid");
    let err = engine.capture_json(&request("k-1", "ORD-1001", "30.00")).await.expect_err("conflict");
    let CaptureError::Request(e) = &err else { panic!("{err:?}") };
    assert_eq!(e.field(), "idempotency_key");
    assert!(err.to_string().contains("was first used for order ORD-1001 and 20.00 USD"), "{err}");
    assert_eq!(emu.captures("ORD-1001").len(), 1);
}

#[tokio::test]
async fn the_ledger_bounds_captures_across_requests_with_stale_snapshots() {
    let emu = emulator().await;
    let engine = optty(&emu, sqlite_store("ledger-bound"));
    // Both requests carry the same snapshot (no earlier capture listed): only the ledger knows.
    let first = engine.capture_json(&request("k-a", "ORD-1001", "100.00")).await.expect("valid");
    assert!(matches!(first.outcome, Outcome::Captured { .. }));
    let second = engine.capture_json(&request("k-b", "ORD-1001", "50.00")).await.expect("valid");
    match &second.outcome {
        Outcome::Rejected { by, code, reason } => {
            assert_eq!((by.as_str(), code.as_str()), ("builtin:ledger", "amount_exceeds_capturable"));
            assert!(reason.contains("already holds 100.00 USD of the 120.00 USD"), "{reason}");
        }
        other => panic!("expected a ledger rejection, got {other:?}"),
    }
    assert!(second.exchanges.is_empty());
    let third = engine.capture_json(&request("k-c", "ORD-1001", "20.00")).await.expect("valid");
    assert!(matches!(third.outcome, Outcome::Captured { .. }), "{:?}", third.outcome);
    let total: Decimal = emu.captures("ORD-1001").iter().map(|c| c.amount).sum();
    assert_eq!(total, Decimal::new(12000, 2));
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_key_and_captures_once() {
    let emu = emulator().await;
    emu.faults().push([Fault::status(503), Fault::status(503)]);
    let store = sqlite_store("ledger-retry");
    let report = optty(&emu, store.clone()).capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
    assert_eq!(report.exchanges.len(), 3, "two 503s, then the capture");
    assert_eq!(report.steps.iter().filter(|s| s.name == "retry").count(), 2);
    assert_eq!(emu.captures("ORD-1001").len(), 1);
    assert_eq!(store.all().await.expect("ledger")[0].sends, 3);
}

#[tokio::test]
async fn a_429_waits_for_the_reset_hint_then_captures() {
    let emu = emulator().await;
    emu.faults().push([Fault::rate_limited(300)]);
    let report = optty(&emu, sqlite_store("ledger-429"))
        .capture_json(&sample("full-capture.json"))
        .await
        .expect("valid");
    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
    let wait =
        report.steps.iter().find(|s| s.name == "retry").and_then(|s| s.detail.clone()).unwrap_or_default();
    assert!(wait.contains("after 1000 ms"), "Optty's Retry-After is whole seconds: {wait}");
}

#[tokio::test]
async fn a_lost_answer_is_resolved_by_the_same_reference_and_never_captured_twice() {
    let emu = emulator().await;
    emu.faults().push([Fault::drop_after_apply()]);
    let store = sqlite_store("ledger-optty-unknown");
    let engine = optty(&emu, store.clone());
    let report = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    // The answer was lost; the same captureReference again learns the capture exists.
    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
    assert_eq!(emu.captures("ORD-1001").len(), 1, "captured once");
    let a = &store.all().await.expect("ledger")[0];
    assert_eq!(a.state, AttemptState::Captured);
    let again = engine.capture_json(&sample("full-capture.json")).await.expect("valid");
    assert!(again.exchanges.is_empty());
    assert_eq!(emu.captures("ORD-1001").len(), 1);
}

fn wix_request(key: &str) -> Vec<u8> {
    format!(
        r#"{{"platform":"wix","idempotency_key":"{key}","amount":"full",
            "order":{{"id":"{}","currency":"USD","amount":"30.00",
                      "payments":[{{"id":"{}","amount":"10.00"}},{{"id":"{}","amount":"20.00"}}]}}}}"#,
        demo_ids::USD_ORDER,
        demo_ids::USD_PAYMENT_10,
        demo_ids::USD_PAYMENT_20
    )
    .into_bytes()
}

#[tokio::test]
async fn a_lost_answer_on_a_platform_without_idempotency_is_resolved_by_reading_its_state() {
    let emu = WixEmulator::start(WixConfig::demo()).await.expect("wix");
    emu.faults().push([Fault::drop_after_apply()]);
    let store = sqlite_store("ledger-wix-unknown");
    let engine =
        engine_with_store("wix", &emu.base_url(), &[], &[("api_key", demo_ids::TOKEN)], store.clone());
    let report = engine.capture_json(&wix_request("wix-k1")).await.expect("valid");
    // Wix has no idempotency key: the engine read the order's transactions instead of resending.
    assert!(
        matches!(report.outcome, Outcome::Captured { .. } | Outcome::Pending { .. }),
        "{:?}",
        report.outcome
    );
    assert!(
        report
            .exchanges
            .iter()
            .all(|e| e.request.method == "GET" || e.request.url.ends_with("capture-authorized-payments"))
    );
    assert_eq!(report.exchanges.iter().filter(|e| e.request.method == "POST").count(), 1, "sent once");
    let a = &store.all().await.expect("ledger")[0];
    assert!(matches!(a.state, AttemptState::Captured | AttemptState::Pending), "{:?}", a.state);
}

#[tokio::test]
async fn another_capture_of_an_order_waits_while_one_is_unresolved() {
    let emu = emulator().await;
    let store = sqlite_store("ledger-busy");
    // An attempt another process marked sent, then died: its outcome is unknown.
    let usd = capture_core::Currency::from_code("USD").expect("USD");
    let amount = capture_core::Money::parse("120.00", usd).expect("money");
    let new = capture_engine::store::NewAttempt {
        id: "cap_crashed".into(),
        merchant: "default".into(),
        platform: "optty".into(),
        idempotency_key: "crashed-key".into(),
        fingerprint: "sha256:crashed".into(),
        order_id: "ORD-1001".into(),
        payment_ids: vec!["pay-ORD-1001".into()],
        amount,
        authorization: capture_engine::store::Authorization::from_payments(
            vec![("pay-ORD-1001".into(), amount)],
            usd,
        ),
        external: capture_core::Money::zero(usd),
        owner: "a-process-that-died".into(),
        lease_ms: 60_000,
        now: crate::test_time(),
    };
    let reserved = store.reserve(&new).await.expect("reserve");
    let capture_engine::store::Reservation::Reserved(reserved) = reserved else { panic!("{reserved:?}") };
    store
        .transition(
            "cap_crashed",
            &reserved.fence().expect("the reserver holds the lease"),
            &[AttemptState::Reserved],
            AttemptState::Sent,
            Default::default(),
            crate::test_time(),
        )
        .await
        .expect("sent");
    let report =
        optty(&emu, store.clone()).capture_json(&request("k-new", "ORD-1001", "10.00")).await.expect("valid");
    match &report.outcome {
        Outcome::Failed { kind: FailureKind::InvalidState, retryable: true, message, .. } => {
            assert!(message.contains("cap_crashed") && message.contains("must be resolved"), "{message}")
        }
        other => panic!("expected the order to be busy, got {other:?}"),
    }
    assert!(report.exchanges.is_empty(), "nothing sent while the order is unresolved");
    assert!(emu.captures("ORD-1001").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_capturing_one_order_never_exceed_it() {
    let emu = emulator().await;
    let store = sqlite_store("ledger-concurrent");
    let engine = Arc::new(optty(&emu, store.clone()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine
                .capture_json(&request(&format!("k-{i}"), "ORD-1001", "30.00"))
                .await
                .expect("valid")
                .outcome
        }));
    }
    let mut captured = 0;
    for t in tasks {
        if matches!(t.await.expect("task"), Outcome::Captured { .. }) {
            captured += 1;
        }
    }
    let total: Decimal = emu.captures("ORD-1001").iter().map(|c| c.amount).sum();
    println!("16 tasks, distinct keys: {captured} captured, {total} USD at the platform (bound 120.00)");
    assert!(total <= Decimal::new(12000, 2));
    assert_eq!(Decimal::from(captured) * Decimal::new(3000, 2), total, "every capture is accounted for");
    let attempts = store.all().await.expect("ledger");
    assert!(
        attempts
            .iter()
            .all(|a| !matches!(a.state, AttemptState::Sent | AttemptState::Unknown | AttemptState::Reserved))
    );

    // The same key from many tasks: one capture.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine.capture_json(&request("same-key", "ORD-1002", "10.00")).await.expect("valid").outcome
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    println!("16 tasks, one key: {} capture(s) at the platform", emu.captures("ORD-1002").len());
    assert_eq!(emu.captures("ORD-1002").len(), 1);
}
