//! Medusa end-to-end: the real Medusa plugin from disk, real HTTP to the Medusa emulator, one
//! snapshotted report per documented status code and per capability refusal, plus checks of the
//! outcome and of the emulator's books (minor units, `captured_at`).

use capture_core::{CaptureReport, Currency, FailureKind, Money, Outcome, StatusReport};
use capture_engine::{Engine, RuleSet, StatusQuery};
use capture_sandbox::faults::Fault;
use capture_sandbox::medusa::{FIRST_CAPTURE_AT, MedusaConfig, MedusaEmulator};
use serde_json::json;

use crate::{engine_on, sample, stable_url};

/// The demo emulator's API token (sandbox data).
const TOKEN: &str = "sandbox-medusa-token";

async fn emulator() -> MedusaEmulator {
    MedusaEmulator::start(MedusaConfig::demo()).await.expect("emulator starts")
}

fn engine_with(emu: &MedusaEmulator, token: &str) -> Engine {
    engine_on("medusa", &emu.base_url(), &[], &[("api_token", token)], RuleSet::empty())
}

fn engine(emu: &MedusaEmulator) -> Engine {
    engine_with(emu, TOKEN)
}

/// A capture request for `order` with these `(payment id, authorized amount)`s; `amount` is
/// `"full"` or a decimal string.
fn request(order: &str, currency: &str, payments: &[(&str, &str)], amount: &str) -> Vec<u8> {
    let total = payments
        .iter()
        .map(|(_, a)| Money::parse(a, Currency::from_code(currency).expect("currency")).expect("amount"))
        .reduce(|a, b| a.checked_add(b).expect("same currency"))
        .expect("at least one payment");
    let payments: Vec<_> = payments
        .iter()
        .map(|(id, a)| json!({"id": id, "amount": a, "method": "manual", "partial_capture": false}))
        .collect();
    serde_json::to_vec(&json!({
        "platform": "medusa",
        "idempotency_key": format!("{order}-capture-1"),
        "amount": amount,
        "order": {"id": order, "currency": currency, "amount": total.to_decimal_string(), "payments": payments},
    }))
    .expect("serializes")
}

/// Captures `body` and returns the report and its stable JSON.
async fn capture(emu: &MedusaEmulator, engine: &Engine, body: &[u8]) -> (CaptureReport, String) {
    let report = engine.capture_json(body).await.expect("the request is valid");
    let json = stable_url(&report.to_json(), &emu.base_url());
    (report, json)
}

fn usd(text: &str) -> Money {
    Money::parse(text, Currency::from_code("USD").expect("USD")).expect("amount")
}

fn captured_at(emu: &MedusaEmulator, id: &str) -> Option<String> {
    emu.payment(id).expect("known payment").captured_at
}

/// The failure of a report, or a panic naming what it was instead.
fn failure(report: &CaptureReport) -> (FailureKind, bool, Option<&str>, &str) {
    match &report.outcome {
        Outcome::Failed { kind, retryable, platform_code, message, .. } => {
            (*kind, *retryable, platform_code.as_deref(), message.as_str())
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn full_capture_of_one_payment() {
    let emu = emulator().await;
    let (report, json) = capture(&emu, &engine(&emu), &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_full_capture", json);
    assert_eq!(
        report.outcome,
        Outcome::Captured { amount: usd("120.00"), platform_capture_id: Some("pay_01".into()) }
    );
    let request = &report.exchanges[0].request;
    assert_eq!(request.url, format!("{}/admin/payments/pay_01/capture", emu.base_url()));
    assert_eq!(request.body, None, "Medusa v1 captures with no body");
    assert!(json.contains("\"value\": \"[REDACTED]\""), "the token header is redacted");
    assert!(!json.contains(TOKEN), "the API token leaked into the report");
    assert_eq!(captured_at(&emu, "pay_01").as_deref(), Some(FIRST_CAPTURE_AT));
}

#[tokio::test]
async fn two_payments_go_through_the_order_route() {
    let emu = emulator().await;
    let body = request("order_02", "USD", &[("pay_02a", "50.00"), ("pay_02b", "25.00")], "full");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_order_route", json);
    assert_eq!(report.outcome, Outcome::Captured { amount: usd("75.00"), platform_capture_id: None });
    assert_eq!(report.exchanges[0].request.url, format!("{}/admin/orders/order_02/capture", emu.base_url()));
    assert_eq!(captured_at(&emu, "pay_02a").as_deref(), Some(FIRST_CAPTURE_AT));
    assert_eq!(captured_at(&emu, "pay_02b").as_deref(), Some("2026-11-21T09:00:01.000Z"));
}

#[tokio::test]
async fn a_canceled_payment_is_400_not_allowed() {
    let emu = emulator().await;
    let body = request("order_03", "USD", &[("pay_03", "10.00")], "full");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_canceled_400", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidRequest, false, Some("400")));
    assert_eq!(message, "not_allowed: Payment pay_03 is canceled and cannot be captured");
    assert_eq!(captured_at(&emu, "pay_03"), None);
}

#[tokio::test]
async fn an_unknown_payment_is_404() {
    let emu = emulator().await;
    let body = request("order_x", "USD", &[("pay_x", "10.00")], "full");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_unknown_404", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::NotFound, false, Some("404")));
    assert_eq!(message, "not_found: Payment with id pay_x was not found");
}

#[tokio::test]
async fn a_wrong_token_is_401() {
    let emu = emulator().await;
    let (report, json) =
        capture(&emu, &engine_with(&emu, "wrong-token"), &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_wrong_token_401", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!(
        (kind, retryable, code, message),
        (FailureKind::Unauthorized, false, Some("401"), "Unauthorized")
    );
    assert!(!json.contains("wrong-token"), "the credential leaked into the report");
    assert_eq!(captured_at(&emu, "pay_01"), None);
}

#[tokio::test]
async fn a_409_conflict_is_retryable_and_the_retry_captures() {
    let emu = emulator().await;
    emu.faults().push([Fault::status(409)]);
    let engine = engine(&emu);
    let (report, json) = capture(&emu, &engine, &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_conflict_409", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidState, true, Some("409")));
    assert!(message.starts_with("invalid_state_error: The request conflicted"), "{message}");
    assert_eq!(captured_at(&emu, "pay_01"), None, "a conflict captures nothing");
    let (again, _) = capture(&emu, &engine, &sample("medusa-full-capture.json")).await;
    assert!(matches!(again.outcome, Outcome::Captured { .. }), "{:?}", again.outcome);
    assert_eq!(captured_at(&emu, "pay_01").as_deref(), Some(FIRST_CAPTURE_AT));
}

#[tokio::test]
async fn a_422_is_an_invalid_request() {
    let emu = emulator().await;
    emu.faults().push([Fault::status(422)]);
    let (report, json) = capture(&emu, &engine(&emu), &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_invalid_request_422", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidRequest, false, Some("422")));
    assert_eq!(message, "duplicate_error: A capture of Payment pay_01 already exists");
    assert_eq!(captured_at(&emu, "pay_01"), None);
}

#[tokio::test]
async fn a_500_provider_failure_says_to_read_captured_at_first() {
    let emu = emulator().await;
    emu.faults().push([Fault::status(500)]);
    let (report, json) = capture(&emu, &engine(&emu), &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_provider_failed_500", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::PlatformUnavailable, false, Some("500")));
    assert!(message.starts_with("unexpected_state: Failed to capture Payment pay_01"), "{message}");
    assert!(message.contains("read payment pay_01's captured_at"), "{message}");
    assert_eq!(captured_at(&emu, "pay_01"), None);
}

#[tokio::test]
async fn a_503_gateway_error_is_not_blindly_retryable() {
    let emu = emulator().await;
    emu.faults().push([Fault::status_after_apply(503)]);
    let (report, json) = capture(&emu, &engine(&emu), &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_gateway_503", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::PlatformUnavailable, false, Some("503")));
    assert!(message.starts_with("Service Unavailable (the payment provider may have captured"), "{message}");
    // Here the capture was applied before the gateway failed: exactly why a blind retry is wrong.
    assert_eq!(captured_at(&emu, "pay_01").as_deref(), Some(FIRST_CAPTURE_AT));
}

#[tokio::test]
async fn a_429_is_retryable_after_the_hint() {
    let emu = emulator().await;
    emu.faults().push([Fault::rate_limited(1500)]);
    let (report, json) = capture(&emu, &engine(&emu), &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_rate_limited_429", json);
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
    assert_eq!(captured_at(&emu, "pay_01"), None);
}

#[tokio::test]
async fn requires_action_is_a_failure_despite_the_200() {
    let emu = emulator().await;
    let (report, json) = capture(&emu, &engine(&emu), &sample("medusa-requires-action.json")).await;
    insta::assert_snapshot!("medusa_requires_action", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidState, false, Some("200")));
    assert!(message.contains("payment_status requires_action"), "{message}");
    assert!(message.contains("captured: none; not captured: pay_05, pay_05b"), "{message}");
    assert_eq!(report.exchanges[0].request.url, format!("{}/admin/orders/order_05/capture", emu.base_url()));
    assert_eq!(captured_at(&emu, "pay_05"), None);
    assert_eq!(captured_at(&emu, "pay_05b"), None);
}

#[tokio::test]
async fn an_already_captured_payment_reads_as_captured() {
    // Medusa answers 200 with the payment unchanged; one answer cannot tell it from a fresh
    // capture, so the connector reports `captured` (documented in the plugin).
    let emu = emulator().await;
    let body = request("order_07", "USD", &[("pay_07", "40.00")], "full");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_already_captured", json);
    assert_eq!(
        report.outcome,
        Outcome::Captured { amount: usd("40.00"), platform_capture_id: Some("pay_07".into()) }
    );
    assert_eq!(captured_at(&emu, "pay_07").as_deref(), Some("2026-11-20T14:00:00.000Z"), "unchanged");
}

#[tokio::test]
async fn a_partial_amount_is_refused_before_anything_is_sent() {
    let emu = emulator().await;
    let body = request("order_01", "USD", &[("pay_01", "120.00")], "60.00");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_partial_refused", json);
    match &report.outcome {
        Outcome::Rejected { by, code, reason } => {
            assert_eq!(
                (by.as_str(), code.as_str()),
                ("builtin:partial_capture", "partial_capture_unsupported")
            );
            assert!(reason.contains("Medusa captures only the full amount"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(report.exchanges.is_empty(), "nothing was sent");
    assert_eq!(captured_at(&emu, "pay_01"), None);
}

#[tokio::test]
async fn a_partly_captured_payment_is_refused_by_the_connector() {
    // The order total is captured in full, but pay_02a had 10.00 captured elsewhere: Medusa v1 can
    // only capture a payment in full, so the connector refuses and nothing is sent.
    let emu = emulator().await;
    let body = serde_json::to_vec(&json!({
        "platform": "medusa",
        "idempotency_key": "order_02-capture-2",
        "amount": "full",
        "order": {
            "id": "order_02", "currency": "USD", "amount": "75.00",
            "payments": [
                {"id": "pay_02a", "amount": "50.00", "method": "manual"},
                {"id": "pay_02b", "amount": "25.00", "method": "manual"},
            ],
            "captures": [{"reference": "earlier-1", "payment_id": "pay_02a", "amount": "10.00"}],
        },
    }))
    .expect("serializes");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_partly_captured_payment_refused", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::Connector, false, None));
    assert!(
        message.contains("captures payment pay_02a in full (50.00 USD); 40.00 USD was asked"),
        "{message}"
    );
    assert!(message.contains("nothing was sent"), "{message}");
    assert!(report.exchanges.is_empty());
    assert_eq!(captured_at(&emu, "pay_02a"), None);
}

#[tokio::test]
async fn jpy_is_captured_in_whole_yen() {
    let emu = emulator().await;
    let body = request("order_04", "JPY", &[("pay_04", "15000")], "full");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_jpy", json);
    let jpy = Currency::from_code("JPY").expect("JPY");
    assert_eq!(
        report.outcome,
        Outcome::Captured {
            amount: Money::from_minor(15000, jpy),
            platform_capture_id: Some("pay_04".into())
        }
    );
    let books = emu.payment("pay_04").expect("known");
    assert_eq!((books.amount, books.currency_code.as_str()), (15000, "jpy"));
    assert!(books.captured_at.is_some());
}

#[tokio::test]
async fn kwd_is_captured_in_fils() {
    let emu = emulator().await;
    let body = request("order_06", "KWD", &[("pay_06", "12.500")], "full");
    let (report, json) = capture(&emu, &engine(&emu), &body).await;
    insta::assert_snapshot!("medusa_kwd", json);
    let kwd = Currency::from_code("KWD").expect("KWD");
    assert_eq!(
        report.outcome,
        Outcome::Captured {
            amount: Money::from_minor(12500, kwd),
            platform_capture_id: Some("pay_06".into())
        }
    );
    assert!(json.contains("\"amount\": \"12.500\""), "three decimals in the report");
    let books = emu.payment("pay_06").expect("known");
    assert_eq!((books.amount, books.currency_code.as_str()), (12500, "kwd"));
    assert!(books.captured_at.is_some());
}

#[tokio::test]
async fn a_dropped_connection_after_apply_is_unknown_until_the_status_query_settles_it() {
    let emu = emulator().await;
    emu.faults().push([Fault::drop_after_apply()]);
    let engine = engine(&emu);
    let (report, json) = capture(&emu, &engine, &sample("medusa-full-capture.json")).await;
    insta::assert_snapshot!("medusa_dropped_after_apply", json);
    let (kind, retryable, code, message) = failure(&report);
    assert_eq!((kind, retryable, code), (FailureKind::OutcomeUnknown, false, None));
    assert!(message.contains("read its state before retrying"), "{message}");
    assert_eq!(captured_at(&emu, "pay_01").as_deref(), Some(FIRST_CAPTURE_AT), "Medusa did capture");

    // Reconciliation: the status query reads captured_at back.
    let status = engine.status(&query("order_01", &["pay_01"])).await.expect("Medusa has a status query");
    assert_eq!(
        status.outcome,
        Outcome::Captured { amount: usd("120.00"), platform_capture_id: Some("pay_01".into()) }
    );
}

mod status {
    //! `Engine::status` through the connector's status query (ABI 1.1).

    use super::*;

    pub(super) async fn run(emu: &MedusaEmulator, q: &StatusQuery) -> (StatusReport, String) {
        let report = engine(emu).status(q).await.expect("Medusa has a status query");
        let json = stable_url(&report.to_json(), &emu.base_url());
        (report, json)
    }

    #[tokio::test]
    async fn a_payment_not_captured_yet_is_pending() {
        let emu = emulator().await;
        let (report, json) = run(&emu, &query("order_01", &["pay_01"])).await;
        insta::assert_snapshot!("medusa_status_not_captured", json);
        assert_eq!(
            report.outcome,
            Outcome::Pending { amount: usd("120.00"), platform_capture_id: Some("pay_01".into()) }
        );
        assert_eq!(report.exchanges[0].request.method, "GET");
        assert_eq!(report.exchanges[0].request.url, format!("{}/admin/payments/pay_01", emu.base_url()));
    }

    #[tokio::test]
    async fn an_order_captured_through_the_order_route() {
        let emu = emulator().await;
        let body = request("order_02", "USD", &[("pay_02a", "50.00"), ("pay_02b", "25.00")], "full");
        capture(&emu, &engine(&emu), &body).await;
        let (report, json) = run(&emu, &query("order_02", &[])).await;
        insta::assert_snapshot!("medusa_status_order_captured", json);
        assert_eq!(report.outcome, Outcome::Captured { amount: usd("75.00"), platform_capture_id: None });
        assert_eq!(report.exchanges[0].request.url, format!("{}/admin/orders/order_02", emu.base_url()));
    }

    #[tokio::test]
    async fn a_requires_action_order_reads_as_failed() {
        let emu = emulator().await;
        capture(&emu, &engine(&emu), &sample("medusa-requires-action.json")).await;
        let (report, _) = run(&emu, &query("order_05", &["pay_05", "pay_05b"])).await;
        assert!(
            matches!(
                &report.outcome,
                Outcome::Failed { kind: FailureKind::InvalidState, retryable: false, .. }
            ),
            "{:?}",
            report.outcome
        );
    }

    #[tokio::test]
    async fn an_unknown_payment_is_not_found() {
        let emu = emulator().await;
        let (report, _) = run(&emu, &query("order_x", &["pay_x"])).await;
        assert!(
            matches!(&report.outcome, Outcome::Failed { kind: FailureKind::NotFound, platform_code: Some(c), .. } if c == "404"),
            "{:?}",
            report.outcome
        );
    }
}

fn query(order: &str, payment_ids: &[&str]) -> StatusQuery {
    StatusQuery {
        platform: "medusa".into(),
        order_id: order.into(),
        currency: Currency::from_code("USD").expect("USD"),
        payment_ids: payment_ids.iter().map(|p| (*p).to_owned()).collect(),
        idempotency_key: None,
        platform_capture_id: None,
    }
}

/// The platform captures another amount than the one asked for (Medusa captures a payment in
/// full, and the snapshot understated it): the report says captured, names both figures in an
/// `amount_mismatch` anomaly, and the ledger records the larger figure against the bound.
#[tokio::test]
async fn a_capture_of_another_amount_is_an_amount_mismatch_anomaly() {
    let emu = emulator().await;
    let body = request("order_01", "USD", &[("pay_01", "110.00")], "full");
    let store = crate::sqlite_store("medusa-over-report");
    let engine =
        crate::engine_with_store("medusa", &emu.base_url(), &[], &[("api_token", TOKEN)], store.clone());
    let report = engine.capture_json(&body).await.expect("valid");
    assert!(
        matches!(report.outcome, Outcome::Captured { amount, .. } if amount == usd("120.00")),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.anomalies.len(), 1, "{:?}", report.anomalies);
    assert_eq!(report.anomalies[0].code, "amount_mismatch");
    assert!(report.anomalies[0].detail.contains("110.00") && report.anomalies[0].detail.contains("120.00"));
    assert!(report.to_json().contains("\"anomalies\""));
    let a = &store.all().await.expect("ledger")[0];
    assert_eq!(a.captured, Some(usd("120.00")));
    assert_eq!(a.anomaly.as_deref(), Some("amount_mismatch"));
    assert_eq!(a.held(), usd("120.00"), "the larger figure counts against the bound");
}
