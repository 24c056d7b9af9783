//! Wix end-to-end: the real Wix plugin from disk, real HTTP to the Wix emulator, one snapshot per
//! documented answer and per capability refusal, plus assertions on the outcome, the bytes on the
//! wire and the emulator's books.

use capture_core::{CaptureReport, Currency, FailureKind, Outcome};
use capture_engine::{Engine, RuleSet, StatusQuery};
use capture_sandbox::faults::Fault;
use capture_sandbox::wix::demo_ids::*;
use capture_sandbox::wix::{WixConfig, WixEmulator};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::{engine_on, sample, stable_url};

async fn demo() -> WixEmulator {
    WixEmulator::start(WixConfig::demo()).await.expect("the Wix emulator starts")
}

fn engine(emu: &WixEmulator) -> Engine {
    engine_on("wix", &emu.base_url(), &[], &[("api_key", TOKEN)], RuleSet::empty())
}

/// A capture request: `amount` is `"full"` or a decimal string; `payments` are the order's
/// `(id, authorized)`; `split` the per-payment amounts, if any.
fn request(
    order: &str,
    currency: &str,
    amount: &str,
    payments: &[(&str, &str)],
    split: &[(&str, &str)],
) -> Vec<u8> {
    let total =
        payments.iter().map(|(_, a)| capture_core::parse_decimal(a).expect("decimal")).sum::<Decimal>();
    let mut req = json!({
        "platform": "wix",
        "idempotency_key": format!("wix-{order}-{amount}"),
        "amount": amount,
        "order": {
            "id": order,
            "currency": currency,
            "amount": total.to_string(),
            "payments": payments.iter().map(|(id, a)| json!({"id": id, "amount": a})).collect::<Vec<_>>(),
        },
    });
    if !split.is_empty() {
        req["payments"] =
            split.iter().map(|(id, a)| json!({"payment_id": id, "amount": a})).collect::<Value>();
    }
    req.to_string().into_bytes()
}

/// Captures and returns the report with its snapshot text.
async fn run(emu: &WixEmulator, request: &[u8]) -> (String, CaptureReport) {
    let report = engine(emu).capture_json(request).await.expect("the request is valid");
    (stable_url(&report.to_json(), &emu.base_url()), report)
}

/// The body the engine sent.
fn sent(report: &CaptureReport) -> &str {
    report.exchanges.first().and_then(|e| e.request.body.as_deref()).expect("a request was sent")
}

fn failed(report: &CaptureReport) -> (FailureKind, bool, Option<&str>, &str, Option<u64>) {
    match &report.outcome {
        Outcome::Failed { kind, retryable, platform_code, message, retry_after_ms } => {
            (*kind, *retryable, platform_code.as_deref(), message.as_str(), *retry_after_ms)
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn money(amount: &str, currency: &str) -> capture_core::Money {
    capture_core::Money::parse(amount, Currency::from_code(currency).expect("currency")).expect("money")
}

fn captures_of(emu: &WixEmulator, order: &str, payment: usize) -> Vec<(Decimal, String)> {
    emu.order(order).expect("order").payments[payment]
        .captures
        .iter()
        .map(|c| (c.amount, c.status.clone()))
        .collect()
}

fn dec(text: &str) -> Decimal {
    capture_core::parse_decimal(text).expect("decimal")
}

#[tokio::test]
async fn both_payments_in_full_are_pending_with_no_amount_on_the_wire() {
    let emu = demo().await;
    let (json, report) = run(&emu, &sample("wix-full-capture.json")).await;
    insta::assert_snapshot!("wix_full_capture", json);
    assert_eq!(
        report.outcome,
        Outcome::Pending {
            amount: money("30.00", "USD"),
            platform_capture_id: Some(
                "ca000000-0000-4000-8000-000000000001,ca000000-0000-4000-8000-000000000002".into()
            ),
        }
    );
    assert_eq!(
        sent(&report),
        format!(
            r#"{{"orderId":"{USD_ORDER}","payments":[{{"paymentId":"{USD_PAYMENT_10}"}},{{"paymentId":"{USD_PAYMENT_20}"}}]}}"#
        )
    );
    let headers = &report.exchanges[0].request.headers;
    assert!(headers.iter().any(|h| h.name == "Authorization" && h.value == "[REDACTED]"));
    assert!(!report.to_json().contains(TOKEN), "the API key leaked into the report");
    assert_eq!(captures_of(&emu, USD_ORDER, 0), [(dec("10.00"), "PENDING".to_owned())]);
    assert_eq!(captures_of(&emu, USD_ORDER, 1), [(dec("20.00"), "PENDING".to_owned())]);
}

#[tokio::test]
async fn a_split_sends_the_partial_amount_only() {
    let emu = demo().await;
    let req = request(
        USD_ORDER,
        "USD",
        "15.00",
        &[(USD_PAYMENT_10, "10.00"), (USD_PAYMENT_20, "20.00")],
        &[(USD_PAYMENT_10, "10.00"), (USD_PAYMENT_20, "5.00")],
    );
    let (json, report) = run(&emu, &req).await;
    insta::assert_snapshot!("wix_partial_split", json);
    assert!(matches!(&report.outcome, Outcome::Pending { amount, .. } if *amount == money("15.00", "USD")));
    assert_eq!(
        sent(&report),
        format!(
            r#"{{"orderId":"{USD_ORDER}","payments":[{{"paymentId":"{USD_PAYMENT_10}"}},{{"paymentId":"{USD_PAYMENT_20}","amount":{{"amount":"5.00"}}}}]}}"#
        )
    );
    assert_eq!(captures_of(&emu, USD_ORDER, 1), [(dec("5.00"), "PENDING".to_owned())]);
}

#[tokio::test]
async fn already_captured_is_its_own_outcome() {
    let emu = demo().await;
    let (json, report) = run(&emu, &sample("wix-already-captured.json")).await;
    insta::assert_snapshot!("wix_already_captured", json);
    match &report.outcome {
        Outcome::AlreadyCaptured { platform_code, message } => {
            assert_eq!(platform_code.as_deref(), Some("PAYMENT_ALREADY_CAPTURED"));
            assert!(message.contains(CAPTURED_PAYMENT), "{message}");
        }
        other => panic!("expected already_captured, got {other:?}"),
    }
    assert_eq!(report.exchanges[0].response.as_ref().map(|r| r.status), Some(409));
    assert_eq!(captures_of(&emu, CAPTURED_ORDER, 0).len(), 1, "nothing new was captured");
}

/// A refusal that leaves the books as configured.
async fn refused(
    snapshot: &str,
    order: &str,
    payment: &str,
    authorized: &str,
) -> (CaptureReport, WixEmulator) {
    let emu = demo().await;
    let (json, report) = run(&emu, &request(order, "USD", "full", &[(payment, authorized)], &[])).await;
    insta::assert_snapshot!(snapshot, json);
    let configured = WixConfig::demo().orders.into_iter().find(|o| o.id == order);
    assert_eq!(emu.order(order), configured, "the emulator's books did not change");
    (report, emu)
}

#[tokio::test]
async fn a_voided_payment_is_409_invalid_state() {
    let (report, _emu) = refused("wix_voided", VOIDED_ORDER, VOIDED_PAYMENT, "12.00").await;
    let (kind, retryable, code, message, _) = failed(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidState, false, Some("PAYMENT_ALREADY_VOIDED")));
    assert!(message.contains("voided"), "{message}");
    assert_eq!(report.exchanges[0].response.as_ref().map(|r| r.status), Some(409));
}

#[tokio::test]
async fn a_payment_not_authorized_is_428_invalid_state() {
    let (report, _emu) =
        refused("wix_not_authorized", UNAUTHORIZED_ORDER, UNAUTHORIZED_PAYMENT, "40.00").await;
    let (kind, retryable, code, _, _) = failed(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidState, false, Some("PAYMENT_NOT_AUTHORIZED")));
    assert_eq!(report.exchanges[0].response.as_ref().map(|r| r.status), Some(428));
}

#[tokio::test]
async fn a_pending_capture_refuses_this_one_with_428_retryable() {
    // Another capture of the payment is settling: this request was not applied, so it is not this
    // capture's pending state (reading it so let the other capture be counted twice: the
    // simulator's seed 18). The same key may be sent again once the other settled.
    let (report, _emu) = refused("wix_pending_capture", PENDING_ORDER, PENDING_PAYMENT, "25.00").await;
    let (kind, retryable, code, _, _) = failed(&report);
    assert_eq!(
        (kind, retryable, code),
        (FailureKind::InvalidState, true, Some("PAYMENT_HAS_PENDING_CAPTURE"))
    );
    assert_eq!(report.exchanges[0].response.as_ref().map(|r| r.status), Some(428));
}

#[tokio::test]
async fn chargebacks_are_428_invalid_state() {
    let (report, _emu) = refused("wix_chargebacks", CHARGEBACK_ORDER, CHARGEBACK_PAYMENT, "30.00").await;
    let (kind, retryable, code, _, _) = failed(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidState, false, Some("ORDER_HAS_CHARGEBACKS")));
}

#[tokio::test]
async fn an_unknown_payment_is_404_not_found() {
    let (report, _emu) =
        refused("wix_unknown_payment", USD_ORDER, "00000000-0000-4000-8000-00000000beef", "10.00").await;
    let (kind, retryable, code, message, _) = failed(&report);
    assert_eq!((kind, retryable, code), (FailureKind::NotFound, false, Some("PAYMENT_NOT_FOUND")));
    assert!(message.contains("00000000-0000-4000-8000-00000000beef"), "{message}");
}

#[tokio::test]
async fn an_amount_above_what_wix_has_left_is_400_invalid_request() {
    // The host's snapshot does not know Wix already captured 40.00 of the 50.00.
    let emu = demo().await;
    let req = request(PARTLY_CAPTURED_ORDER, "USD", "20.00", &[(PARTLY_CAPTURED_PAYMENT, "50.00")], &[]);
    let (json, report) = run(&emu, &req).await;
    insta::assert_snapshot!("wix_invalid_amount", json);
    let (kind, retryable, code, message, _) = failed(&report);
    assert_eq!((kind, retryable, code), (FailureKind::InvalidRequest, false, Some("INVALID_AMOUNT")));
    assert!(message.contains("only 10.00 is left"), "{message}");
    assert!(sent(&report).contains(r#""amount":{"amount":"20.00"}"#));
    assert_eq!(captures_of(&emu, PARTLY_CAPTURED_ORDER, 0).len(), 1);
}

#[tokio::test]
async fn a_wrong_api_key_is_401_unauthorized() {
    let emu = demo().await;
    let engine = engine_on("wix", &emu.base_url(), &[], &[("api_key", "not-the-key")], RuleSet::empty());
    let report = engine.capture_json(&sample("wix-full-capture.json")).await.expect("valid");
    insta::assert_snapshot!("wix_unauthorized", stable_url(&report.to_json(), &emu.base_url()));
    let (kind, retryable, code, _, _) = failed(&report);
    assert_eq!((kind, retryable, code), (FailureKind::Unauthorized, false, Some("UNAUTHENTICATED")));
    assert!(!report.to_json().contains("not-the-key"));
    assert!(captures_of(&emu, USD_ORDER, 0).is_empty());
}

#[tokio::test]
async fn a_429_is_retryable_after_the_reset_hint() {
    let emu = demo().await;
    emu.faults().push([Fault::rate_limited(1500)]);
    let (json, report) = run(&emu, &sample("wix-full-capture.json")).await;
    insta::assert_snapshot!("wix_rate_limited", json);
    assert_eq!(
        failed(&report),
        (
            FailureKind::RateLimited,
            true,
            Some("RESOURCE_EXHAUSTED"),
            "Too many requests; try again later",
            Some(2000)
        )
    );
    assert!(captures_of(&emu, USD_ORDER, 0).is_empty());
}

#[tokio::test]
async fn a_503_is_not_retryable_blindly() {
    let emu = demo().await;
    emu.faults().push([Fault::status(503)]);
    let (json, report) = run(&emu, &sample("wix-full-capture.json")).await;
    insta::assert_snapshot!("wix_unavailable", json);
    let (kind, retryable, code, message, _) = failed(&report);
    assert_eq!((kind, retryable, code), (FailureKind::PlatformUnavailable, false, Some("UNAVAILABLE")));
    assert!(message.contains("read the order's transactions before capturing again"), "{message}");
    assert!(captures_of(&emu, USD_ORDER, 0).is_empty());
}

#[tokio::test]
async fn more_than_100_payments_are_refused_before_any_call() {
    let emu = demo().await;
    let ids: Vec<String> = (1..=101).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect();
    let payments: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "1.00")).collect();
    let order = "0000a000-0000-4000-8000-000000000101";
    let (json, report) = run(&emu, &request(order, "USD", "full", &payments, &[])).await;
    insta::assert_snapshot!("wix_too_many_payments", json);
    match &report.outcome {
        Outcome::Rejected { by, code, reason } => {
            assert_eq!((by.as_str(), code.as_str()), ("builtin:payments", "too_many_payments"));
            assert!(reason.contains("at most 100") && reason.contains("101"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(report.exchanges.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn an_order_id_that_is_not_a_guid_is_refused_by_the_connector() {
    let emu = demo().await;
    let (json, report) =
        run(&emu, &request("ORD-1001", "USD", "full", &[(USD_PAYMENT_10, "10.00")], &[])).await;
    insta::assert_snapshot!("wix_not_a_guid", json);
    let (kind, retryable, _, message, _) = failed(&report);
    assert_eq!((kind, retryable), (FailureKind::Connector, false));
    assert!(
        message.contains("orderId `ORD-1001` is not a GUID") && message.contains("nothing was sent"),
        "{message}"
    );
    assert!(report.exchanges.is_empty());
}

#[tokio::test]
async fn jpy_and_kwd_amounts_are_exact_decimal_strings() {
    let emu = demo().await;
    let (json, report) = run(&emu, &request(JPY_ORDER, "JPY", "1000", &[(JPY_PAYMENT, "1500")], &[])).await;
    insta::assert_snapshot!("wix_jpy", json);
    assert_eq!(
        sent(&report),
        format!(
            r#"{{"orderId":"{JPY_ORDER}","payments":[{{"paymentId":"{JPY_PAYMENT}","amount":{{"amount":"1000"}}}}]}}"#
        )
    );
    assert!(matches!(&report.outcome, Outcome::Pending { amount, .. } if *amount == money("1000", "JPY")));
    assert_eq!(captures_of(&emu, JPY_ORDER, 0), [(Decimal::new(1000, 0), "PENDING".to_owned())]);

    let (json, report) =
        run(&emu, &request(KWD_ORDER, "KWD", "12.250", &[(KWD_PAYMENT, "12.500")], &[])).await;
    insta::assert_snapshot!("wix_kwd", json);
    assert!(sent(&report).contains(r#""amount":{"amount":"12.250"}"#), "{}", sent(&report));
    assert!(
        matches!(&report.outcome, Outcome::Pending { amount, .. } if amount.to_decimal_string() == "12.250")
    );
    assert_eq!(captures_of(&emu, KWD_ORDER, 0), [(dec("12.250"), "PENDING".to_owned())]);
}

fn status_query(order: &str, payments: &[&str], capture_id: Option<&str>) -> StatusQuery {
    StatusQuery {
        platform: "wix".into(),
        order_id: order.into(),
        currency: Currency::from_code("USD").expect("USD"),
        payment_ids: payments.iter().map(|p| (*p).to_owned()).collect(),
        idempotency_key: None,
        platform_capture_id: capture_id.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_dropped_connection_is_unknown_and_the_status_query_resolves_it() {
    let emu = demo().await;
    emu.faults().push([Fault::drop_after_apply()]);
    let (json, report) = run(&emu, &sample("wix-full-capture.json")).await;
    insta::assert_snapshot!("wix_dropped_connection", json);
    let (kind, retryable, _, message, _) = failed(&report);
    assert_eq!((kind, retryable), (FailureKind::OutcomeUnknown, false));
    assert!(message.contains("read its state before retrying"), "{message}");
    assert!(report.exchanges[0].response.is_none());
    assert_eq!(captures_of(&emu, USD_ORDER, 0), [(dec("10.00"), "PENDING".to_owned())], "Wix did capture");
    assert_eq!(captures_of(&emu, USD_ORDER, 1), [(dec("20.00"), "PENDING".to_owned())]);

    // Reading the order's transactions tells what happened (the demo settles on the first read).
    let status = engine(&emu)
        .status(&status_query(USD_ORDER, &[USD_PAYMENT_10, USD_PAYMENT_20], None))
        .await
        .expect("status");
    insta::assert_snapshot!("wix_dropped_connection_status", stable_url(&status.to_json(), &emu.base_url()));
    assert!(
        matches!(&status.outcome, Outcome::Captured { amount, .. } if *amount == money("30.00", "USD")),
        "{:?}",
        status.outcome
    );
}

#[tokio::test]
async fn pending_then_captured_through_the_status_query() {
    let emu =
        WixEmulator::start(WixConfig { settle_after_reads: 2, ..WixConfig::demo() }).await.expect("starts");
    let report = engine(&emu).capture_json(&sample("wix-full-capture.json")).await.expect("valid");
    let Outcome::Pending { platform_capture_id: Some(ids), .. } = &report.outcome else {
        panic!("expected pending with capture ids, got {:?}", report.outcome);
    };
    let q = status_query(USD_ORDER, &[USD_PAYMENT_10, USD_PAYMENT_20], Some(ids));
    let first = engine(&emu).status(&q).await.expect("status");
    assert!(
        matches!(&first.outcome, Outcome::Pending { amount, .. } if *amount == money("30.00", "USD")),
        "{:?}",
        first.outcome
    );
    let second = engine(&emu).status(&q).await.expect("status");
    insta::assert_snapshot!("wix_status_settled", stable_url(&second.to_json(), &emu.base_url()));
    assert_eq!(
        second.outcome,
        Outcome::Captured { amount: money("30.00", "USD"), platform_capture_id: Some(ids.clone()) }
    );
    assert_eq!(second.exchanges[0].request.method, "GET");
    assert!(second.exchanges[0].request.url.ends_with(&format!("/ecom/v1/payments/orders/{USD_ORDER}")));
    assert_eq!(captures_of(&emu, USD_ORDER, 0), [(dec("10.00"), "SUCCEEDED".to_owned())]);
    assert_eq!(emu.order(USD_ORDER).expect("order").payments[0].status, "APPROVED");
}
