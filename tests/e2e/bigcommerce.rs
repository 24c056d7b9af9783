//! BigCommerce end to end: the real `bigcommerce` plugin from disk, real HTTP over loopback to the
//! BigCommerce emulator, no rules, and an insta snapshot of every report.
//!
//! One scenario per status code the capture page documents (201, 400, 404, 422, 502, 503, 504)
//! plus 401 and 429, the refusals before any call (partial capture, a non-integer order id, a
//! missing store hash), JPY and KWD captures (no amount on the wire), a dropped connection, and
//! the status query (ABI 1.1) that settles an asynchronous or unknown capture.

use capture_core::{CaptureReport, FailureKind, Outcome, StatusReport};
use capture_engine::{Engine, RuleSet, StatusQuery};
use capture_sandbox::bigcommerce::{BigCommerceConfig, BigCommerceEmulator};
use capture_sandbox::faults::Fault;
use rust_decimal::Decimal;

use crate::{engine_on, sample, stable_url};

/// The demo emulator's access token (sandbox data).
const TOKEN: &str = "sandbox-bigcommerce-token";

/// What a 5xx on a capture says: no blind retry without an idempotency key.
const READ_FIRST: &str = "read the order's transactions before retrying";

async fn emulator() -> BigCommerceEmulator {
    BigCommerceEmulator::start(BigCommerceConfig::demo()).await.expect("the emulator starts")
}

fn engine_with(emu: &BigCommerceEmulator, settings: &[(&str, &str)], token: &str) -> Engine {
    engine_on("bigcommerce", &emu.base_url(), settings, &[("access_token", token)], RuleSet::empty())
}

fn engine(emu: &BigCommerceEmulator) -> Engine {
    engine_with(emu, &[("store_hash", "abc123")], TOKEN)
}

/// A capture request for a one-payment order; `amount` is JSON (`"full"` quoted, or a number).
fn request(order: &str, currency: &str, total: &str, amount: &str) -> Vec<u8> {
    format!(
        r#"{{"platform":"bigcommerce","idempotency_key":"bc-{order}-capture-1","amount":{amount},
            "order":{{"id":"{order}","currency":"{currency}","amount":"{total}",
                      "payments":[{{"id":"bc-{order}-card","amount":"{total}","method":"credit_card"}}]}}}}"#
    )
    .into_bytes()
}

fn full(order: &str, currency: &str, total: &str) -> Vec<u8> {
    request(order, currency, total, r#""full""#)
}

async fn capture(engine: &Engine, emu: &BigCommerceEmulator, body: &[u8]) -> (String, CaptureReport) {
    let report = engine.capture_json(body).await.expect("the request is valid");
    (stable_url(&report.to_json(), &emu.base_url()), report)
}

fn query(order: &str, currency: &str) -> StatusQuery {
    StatusQuery {
        platform: "bigcommerce".into(),
        order_id: order.into(),
        currency: capture_core::Currency::from_code(currency).expect("a currency"),
        payment_ids: vec![],
        idempotency_key: None,
        platform_capture_id: None,
    }
}

async fn status(
    engine: &Engine,
    emu: &BigCommerceEmulator,
    order: &str,
    currency: &str,
) -> (String, StatusReport) {
    let report = engine.status(&query(order, currency)).await.expect("the query is valid");
    (stable_url(&report.to_json(), &emu.base_url()), report)
}

/// The failure's fields, or a panic naming the outcome.
fn failed(outcome: &Outcome) -> (FailureKind, bool, Option<&str>, &str, Option<u64>) {
    match outcome {
        Outcome::Failed { kind, retryable, platform_code, message, retry_after_ms } => {
            (*kind, *retryable, platform_code.as_deref(), message.as_str(), *retry_after_ms)
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn pending_amount(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pending { amount, platform_capture_id: None } => format!("{amount}"),
        other => panic!("expected pending, got {other:?}"),
    }
}

/// The emulator's books for an order are as the demo started them.
fn untouched(emu: &BigCommerceEmulator, order: u64) {
    assert_eq!(emu.payment_status(order).as_deref(), Some("authorized"));
    assert_eq!(emu.transactions(order).len(), 1, "only the authorization");
}

#[tokio::test]
async fn full_capture_is_pending_until_the_platform_settles() {
    let emu = emulator().await;
    let (json, report) = capture(&engine(&emu), &emu, &sample("bigcommerce-full-capture.json")).await;
    insta::assert_snapshot!("bigcommerce_full_capture", json);
    assert_eq!(pending_amount(&report.outcome), "120.00 USD");
    assert_eq!(report.exchanges.len(), 1);
    let exchange = &report.exchanges[0];
    assert_eq!(exchange.request.method, "POST");
    assert!(exchange.request.url.ends_with("/stores/abc123/v3/orders/100/payment_actions/capture"));
    assert_eq!(exchange.request.body.as_deref(), Some("{}"));
    assert_eq!(exchange.response.as_ref().map(|r| (r.status, r.body.as_str())), Some((201, "{}")));
    assert!(json.contains(r#""value": "[REDACTED]""#), "the token is redacted");
    assert!(!json.contains(TOKEN), "the access token leaked into the report");
    assert_eq!(emu.payment_status(100).as_deref(), Some("capture pending"));
    let pending = emu.transactions(100).pop().expect("a pending transaction");
    assert_eq!((pending.event.as_str(), pending.amount), ("pending", Decimal::new(12000, 2)));
}

#[tokio::test]
async fn a_400_is_an_invalid_request_and_nothing_is_applied() {
    let emu = emulator().await;
    emu.faults().push([Fault::status(400)]);
    let (json, report) = capture(&engine(&emu), &emu, &full("100", "USD", "120.00")).await;
    insta::assert_snapshot!("bigcommerce_400_bad_request", json);
    assert_eq!(
        failed(&report.outcome),
        (FailureKind::InvalidRequest, false, Some("400"), "Bad Request", None)
    );
    untouched(&emu, 100);
}

#[tokio::test]
async fn a_404_unknown_order_is_not_found() {
    let emu = emulator().await;
    let (json, report) = capture(&engine(&emu), &emu, &full("999", "USD", "10.00")).await;
    insta::assert_snapshot!("bigcommerce_404_unknown_order", json);
    assert_eq!(
        failed(&report.outcome),
        (FailureKind::NotFound, false, Some("404"), "Order 999 not found", None)
    );
}

#[tokio::test]
async fn a_422_for_an_order_already_captured_is_invalid_state() {
    let emu = emulator().await;
    let (json, report) = capture(&engine(&emu), &emu, &full("103", "USD", "50.00")).await;
    insta::assert_snapshot!("bigcommerce_422_already_captured", json);
    let (kind, retryable, code, message, _) = failed(&report.outcome);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidState, false, Some("422")));
    assert!(message.contains("payment_status is 'captured'"), "{message}");
    assert_eq!(emu.payment_status(103).as_deref(), Some("captured"));
    assert_eq!(emu.transactions(103).len(), 2, "nothing new recorded");
}

/// 502, 503 and 504 before anything applied: unavailable, and no blind retry.
async fn gateway_error(code: u16) -> (String, CaptureReport) {
    let emu = emulator().await;
    emu.faults().push([Fault::status(code)]);
    let (json, report) = capture(&engine(&emu), &emu, &full("100", "USD", "120.00")).await;
    let (kind, retryable, platform_code, message, _) = failed(&report.outcome);
    assert_eq!((kind, retryable), (FailureKind::PlatformUnavailable, false), "{code}");
    assert_eq!(platform_code, Some(code.to_string().as_str()));
    assert!(message.ends_with(READ_FIRST), "{message}");
    untouched(&emu, 100);
    (json, report)
}

#[tokio::test]
async fn a_502_is_unavailable_and_not_retryable_blindly() {
    let (json, _) = gateway_error(502).await;
    insta::assert_snapshot!("bigcommerce_502_bad_gateway", json);
}

#[tokio::test]
async fn a_503_is_unavailable_and_not_retryable_blindly() {
    let (json, _) = gateway_error(503).await;
    insta::assert_snapshot!("bigcommerce_503_service_unavailable", json);
}

#[tokio::test]
async fn a_504_is_unavailable_and_not_retryable_blindly() {
    let (json, _) = gateway_error(504).await;
    insta::assert_snapshot!("bigcommerce_504_gateway_timeout", json);
}

#[tokio::test]
async fn a_429_is_retryable_after_the_reset_hint() {
    let emu = emulator().await;
    emu.faults().push([Fault::rate_limited(1500)]);
    let (json, report) = capture(&engine(&emu), &emu, &full("100", "USD", "120.00")).await;
    insta::assert_snapshot!("bigcommerce_429_rate_limited", json);
    // X-Rate-Limit-Time-Reset-Ms (1500) wins over X-Retry-After (2 s).
    assert_eq!(
        failed(&report.outcome),
        (FailureKind::RateLimited, true, Some("429"), "Too Many Requests", Some(1500))
    );
    untouched(&emu, 100);
}

#[tokio::test]
async fn a_401_for_a_wrong_token_is_unauthorized() {
    let emu = emulator().await;
    let engine = engine_with(&emu, &[("store_hash", "abc123")], "not-the-token");
    let (json, report) = capture(&engine, &emu, &full("100", "USD", "120.00")).await;
    insta::assert_snapshot!("bigcommerce_401_wrong_token", json);
    let (kind, retryable, code, _, _) = failed(&report.outcome);
    assert_eq!((kind, retryable, code), (FailureKind::Unauthorized, false, Some("401")));
    assert!(!json.contains("not-the-token"), "the wrong token leaked into the report");
    untouched(&emu, 100);
}

#[tokio::test]
async fn a_partial_amount_is_refused_before_any_call() {
    let emu = emulator().await;
    let (json, report) = capture(&engine(&emu), &emu, &sample("bigcommerce-partial-refused.json")).await;
    insta::assert_snapshot!("bigcommerce_partial_refused", json);
    match &report.outcome {
        Outcome::Rejected { by, code, reason } => {
            assert_eq!(
                (by.as_str(), code.as_str()),
                ("builtin:partial_capture", "partial_capture_unsupported")
            );
            assert!(reason.contains("10.00 USD"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(report.exchanges.is_empty(), "nothing was sent");
    untouched(&emu, 101);
}

#[tokio::test]
async fn a_non_integer_order_id_is_refused_by_the_connector_before_sending() {
    let emu = emulator().await;
    let (json, report) = capture(&engine(&emu), &emu, &full("ORD-100", "USD", "120.00")).await;
    insta::assert_snapshot!("bigcommerce_non_integer_order_id", json);
    let (kind, retryable, code, message, _) = failed(&report.outcome);
    assert_eq!((kind, retryable, code), (FailureKind::Connector, false, None));
    assert!(message.contains("order_id `ORD-100` is not a positive integer"), "{message}");
    assert!(message.contains("nothing was sent"), "{message}");
    assert!(report.exchanges.is_empty());
    untouched(&emu, 100);
}

#[tokio::test]
async fn a_missing_store_hash_is_refused_by_the_connector_before_sending() {
    let emu = emulator().await;
    let engine = engine_with(&emu, &[], TOKEN);
    let (json, report) = capture(&engine, &emu, &full("100", "USD", "120.00")).await;
    insta::assert_snapshot!("bigcommerce_missing_store_hash", json);
    let (kind, _, _, message, _) = failed(&report.outcome);
    assert_eq!(kind, FailureKind::Connector);
    assert!(message.contains("setting `store_hash` is missing"), "{message}");
    assert!(report.exchanges.is_empty());
    untouched(&emu, 100);
}

#[tokio::test]
async fn a_jpy_order_is_captured_with_no_amount_on_the_wire() {
    let emu = emulator().await;
    let (json, report) = capture(&engine(&emu), &emu, &full("102", "JPY", "15000")).await;
    insta::assert_snapshot!("bigcommerce_jpy_capture", json);
    assert_eq!(pending_amount(&report.outcome), "15000 JPY");
    assert_eq!(report.exchanges[0].request.body.as_deref(), Some("{}"));
    assert!(!report.exchanges[0].request.url.contains("15000"));
    assert_eq!(emu.payment_status(102).as_deref(), Some("capture pending"));
}

#[tokio::test]
async fn a_kwd_order_is_captured_with_no_amount_on_the_wire() {
    let emu = emulator().await;
    let (json, report) = capture(&engine(&emu), &emu, &full("104", "KWD", "12.500")).await;
    insta::assert_snapshot!("bigcommerce_kwd_capture", json);
    assert_eq!(pending_amount(&report.outcome), "12.500 KWD");
    assert_eq!(report.exchanges[0].request.body.as_deref(), Some("{}"));
    assert_eq!(emu.payment_status(104).as_deref(), Some("capture pending"));
}

#[tokio::test]
async fn several_payments_are_captured_in_one_call() {
    let emu = emulator().await;
    let body = br#"{"platform":"bigcommerce","idempotency_key":"bc-100-split","amount":"full",
        "order":{"id":"100","currency":"USD","amount":"120.00",
                 "payments":[{"id":"card","amount":"70.00"},{"id":"gift","amount":"50.00"}]}}"#;
    let (_, report) = capture(&engine(&emu), &emu, body).await;
    assert_eq!(pending_amount(&report.outcome), "120.00 USD");
    assert_eq!(report.exchanges.len(), 1, "one call, naming no payment");
    assert_eq!(report.exchanges[0].request.body.as_deref(), Some("{}"));
}

#[tokio::test]
async fn a_dropped_connection_after_apply_is_an_unknown_outcome_the_status_query_resolves() {
    let emu = emulator().await;
    emu.faults().push([Fault::drop_after_apply()]);
    let engine = engine(&emu);
    let (_, report) = capture(&engine, &emu, &full("100", "USD", "120.00")).await;
    let (kind, retryable, code, message, _) = failed(&report.outcome);
    assert_eq!((kind, retryable, code), (FailureKind::OutcomeUnknown, false, None));
    assert!(message.contains("read its state before retrying"), "{message}");
    assert_eq!(report.exchanges.len(), 1);
    assert!(report.exchanges[0].response.is_none(), "no answer was recorded");
    assert_eq!(emu.payment_status(100).as_deref(), Some("capture pending"), "the capture was applied");

    // Reading the transactions tells what happened; a blind retry would only meet a 422.
    let (_, report) = status(&engine, &emu, "100", "USD").await;
    assert!(
        matches!(&report.outcome, Outcome::Captured { amount, .. } if amount.to_string() == "120.00 USD")
    );
    let (_, retry) = capture(&engine, &emu, &full("100", "USD", "120.00")).await;
    assert_eq!(failed(&retry.outcome).0, FailureKind::InvalidState);
    assert_eq!(emu.transactions(100).iter().filter(|t| t.event == "capture").count(), 1, "captured once");
}

#[tokio::test]
async fn a_502_after_apply_is_resolved_by_the_status_query() {
    let emu = emulator().await;
    emu.faults().push([Fault::status_after_apply(502)]);
    let engine = engine(&emu);
    let (_, report) = capture(&engine, &emu, &full("104", "KWD", "12.500")).await;
    assert_eq!(failed(&report.outcome).0, FailureKind::PlatformUnavailable);
    assert!(!failed(&report.outcome).1, "a 502 is not retried blindly");
    assert_eq!(emu.payment_status(104).as_deref(), Some("capture pending"), "yet the capture went through");
    let (_, report) = status(&engine, &emu, "104", "KWD").await;
    assert!(
        matches!(&report.outcome, Outcome::Captured { amount, .. } if amount.to_string() == "12.500 KWD")
    );
}

#[tokio::test]
async fn status_after_a_capture_is_captured_once_settled() {
    let emu = emulator().await;
    let engine = engine(&emu);
    let (_, report) = capture(&engine, &emu, &sample("bigcommerce-full-capture.json")).await;
    assert_eq!(pending_amount(&report.outcome), "120.00 USD");
    let (json, report) = status(&engine, &emu, "100", "USD").await;
    insta::assert_snapshot!("bigcommerce_status_captured", json);
    match &report.outcome {
        Outcome::Captured { amount, platform_capture_id } => {
            assert_eq!(amount.to_string(), "120.00 USD");
            assert_eq!(platform_capture_id.as_deref(), Some("8"));
        }
        other => panic!("expected captured, got {other:?}"),
    }
    let exchange = &report.exchanges[0];
    assert_eq!(exchange.request.method, "GET");
    assert!(exchange.request.url.ends_with("/stores/abc123/v3/orders/100/transactions"));
    assert_eq!(exchange.request.body, None);
    assert_eq!(emu.payment_status(100).as_deref(), Some("captured"));
}

#[tokio::test]
async fn status_is_pending_until_the_configured_reads() {
    let config = BigCommerceConfig { settle_after_reads: 2, ..BigCommerceConfig::demo() };
    let emu = BigCommerceEmulator::start(config).await.expect("the emulator starts");
    let engine = engine(&emu);
    capture(&engine, &emu, &full("102", "JPY", "15000")).await;
    let (json, report) = status(&engine, &emu, "102", "JPY").await;
    insta::assert_snapshot!("bigcommerce_status_pending", json);
    assert_eq!(pending_amount(&report.outcome), "15000 JPY");
    let (_, report) = status(&engine, &emu, "102", "JPY").await;
    assert!(matches!(&report.outcome, Outcome::Captured { amount, .. } if amount.to_string() == "15000 JPY"));
}

#[tokio::test]
async fn status_of_a_declined_capture_is_invalid_state() {
    let emu = emulator().await;
    emu.decline_on_settle(101);
    let engine = engine(&emu);
    capture(&engine, &emu, &full("101", "USD", "80.00")).await;
    let (json, report) = status(&engine, &emu, "101", "USD").await;
    insta::assert_snapshot!("bigcommerce_status_declined", json);
    let (kind, retryable, code, _, _) = failed(&report.outcome);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidState, false, Some("200")));
    assert_eq!(emu.payment_status(101).as_deref(), Some("declined"));
}

#[tokio::test]
async fn status_of_an_unknown_order_is_not_found() {
    let emu = emulator().await;
    let (_, report) = status(&engine(&emu), &emu, "999", "USD").await;
    assert_eq!(
        failed(&report.outcome),
        (FailureKind::NotFound, false, Some("404"), "Order 999 not found", None)
    );
}
