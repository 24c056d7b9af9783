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

/// A 5xx after the platform applied the capture (and two more 5xx on the retries) leaves the
/// attempt unknown, holding its share of the bound: a second key for the order is refused while
/// it is open, reconciliation resends the same key, the platform's "already used" is read as this
/// attempt's own capture, and the order never gets more than was authorized.
#[tokio::test]
async fn a_5xx_after_apply_is_unknown_and_is_resolved_as_our_own_capture() {
    let emu = emulator().await;
    emu.faults().push([Fault::status_after_apply(500), Fault::status(503), Fault::status(503)]);
    let store = sqlite_store("ledger-5xx-applied");
    let engine = optty(&emu, store.clone());
    let first = engine.capture_json(&request("K1", "ORD-1001", "60.00")).await.expect("valid");
    assert!(
        matches!(first.outcome, Outcome::Failed { kind: FailureKind::OutcomeUnknown, .. }),
        "{:?}",
        first.outcome
    );
    assert_eq!(emu.captures("ORD-1001").len(), 1, "the first send was applied");
    let a = store.by_key("default", "optty", "K1").await.expect("ledger").expect("attempt");
    assert_eq!(a.state, AttemptState::Unknown, "not failed: the platform may hold it (it does)");
    // Another key for the order waits: nothing is sent while K1 is open.
    let second = engine.capture_json(&request("K2", "ORD-1001", "60.00")).await.expect("valid");
    assert!(second.exchanges.is_empty(), "{:?}", second.outcome);
    // Reconciliation resends K1; Optty answers "already used": that is K1's own capture.
    let done = engine.reconcile(Some(std::time::Duration::ZERO)).await.expect("reconcile");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].after, AttemptState::Captured, "{done:?}");
    assert!(!done[0].blocking);
    let replay = engine.capture_json(&request("K1", "ORD-1001", "60.00")).await.expect("valid");
    assert!(matches!(replay.outcome, Outcome::Captured { .. }), "{:?}", replay.outcome);
    // K2 fits the rest; a third capture would exceed what was authorized and is refused.
    let second = engine.capture_json(&request("K2", "ORD-1001", "60.00")).await.expect("valid");
    assert!(matches!(second.outcome, Outcome::Captured { .. }), "{:?}", second.outcome);
    let third = engine.capture_json(&request("K3", "ORD-1001", "0.01")).await.expect("valid");
    assert!(matches!(third.outcome, Outcome::Rejected { .. }), "{:?}", third.outcome);
    let total: Decimal = emu.captures("ORD-1001").iter().map(|c| c.amount).sum();
    assert_eq!(total, Decimal::new(12000, 2), "never more than the 120.00 authorized");
}

/// The authorization is the ledger's, not each request's: after the first request recorded a
/// 120.00 authorization, a snapshot stating 600.00 for the same order is refused naming both.
#[tokio::test]
async fn a_snapshot_that_disagrees_with_the_recorded_authorization_is_refused() {
    let emu = emulator().await;
    let store = sqlite_store("ledger-authorization");
    let engine = optty(&emu, store.clone());
    let first = engine.capture_json(&request("A1", "ORD-1002", "120.00")).await.expect("valid");
    assert!(first.exchanges.len() <= 1);
    let inflated = String::from_utf8(request("A2", "ORD-1002", "500.00"))
        .expect("utf-8")
        .replace("\"120.00\"", "\"600.00\"");
    match engine.capture_json(inflated.as_bytes()).await {
        Err(CaptureError::Request(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("order.payments") && text.contains("120.00") && text.contains("600.00"),
                "{text}"
            );
        }
        other => panic!("expected the snapshot to be refused, got {other:?}"),
    }
    assert!(emu.captures("ORD-1002").len() <= 1, "nothing more was sent");
    // A snapshot whose payments exceed the order amount plus surcharge is refused at parsing.
    let inconsistent = String::from_utf8(request("A3", "ORD-1003", "900.00"))
        .expect("utf-8")
        .replace("\"amount\":\"120.00\",\n", "\"amount\":\"10.00\",\n")
        .replace(
            "\"id\":\"pay-ORD-1003\",\"amount\":\"120.00\"",
            "\"id\":\"pay-ORD-1003\",\"amount\":\"1000.00\"",
        );
    match engine.capture_json(inconsistent.as_bytes()).await {
        Err(CaptureError::Request(e)) => assert!(e.to_string().contains("order.payments"), "{e}"),
        other => panic!("expected an inconsistent snapshot to be refused, got {other:?}"),
    }
}
