//! Unit tests: requests, money in minor units, and every status mapping.

use capture_connector_api::{CallPayment, Failure};

use super::*;

const BASE: &str = "http://127.0.0.1:9";

fn pay(id: &str, amount: &str) -> CallPayment {
    CallPayment {
        id: id.into(),
        amount: amount.into(),
        authorized: amount.into(),
        method: Some("manual".into()),
    }
}

fn call(currency: &str, exponent: u32, payments: Vec<CallPayment>) -> CaptureCall {
    let amount = payments.first().map(|p| p.amount.clone()).unwrap_or_default();
    CaptureCall {
        schema: SCHEMA_VERSION,
        base_url: BASE.into(),
        settings: Default::default(),
        order_id: "order_01".into(),
        currency: currency.into(),
        currency_exponent: exponent,
        amount: amount.clone(),
        full: true,
        order_amount: amount,
        surcharge: "0".into(),
        payments,
        idempotency_key: "key-1".into(),
        description: None,
        shipping: None,
    }
}

fn usd(payments: Vec<CallPayment>) -> CaptureCall {
    call("USD", 2, payments)
}

fn resp(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.into() }
}

fn payment_json(id: &str, amount: i64, currency: &str, captured_at: Option<&str>) -> String {
    let captured = captured_at.map_or("null".to_owned(), |t| format!("\"{t}\""));
    format!(
        r#"{{"id":"{id}","swap_id":null,"cart_id":null,"order_id":"order_01","amount":{amount},"amount_refunded":0,"provider_id":"manual","captured_at":{captured},"canceled_at":null,"created_at":"2026-11-20T12:00:00.000Z","updated_at":"2026-11-21T09:00:00.000Z","currency_code":"{currency}","data":{{}},"idempotency_key":null,"metadata":null}}"#
    )
}

fn payment_body(id: &str, amount: i64, currency: &str, captured_at: Option<&str>) -> String {
    format!(r#"{{"payment":{}}}"#, payment_json(id, amount, currency, captured_at))
}

const AT: Option<&str> = Some("2026-11-21T09:00:00.000Z");

fn failure_of(r: &CaptureResult) -> &Failure {
    assert_eq!(r.status, ResultStatus::Failed, "{r:?}");
    r.failure.as_ref().expect("a failed result has details")
}

fn status_call(payment_ids: &[&str]) -> StatusCall {
    StatusCall {
        schema: SCHEMA_VERSION,
        base_url: BASE.into(),
        settings: Default::default(),
        order_id: "order_02".into(),
        currency: "USD".into(),
        currency_exponent: 2,
        payment_ids: payment_ids.iter().map(|s| (*s).to_owned()).collect(),
        idempotency_key: None,
        platform_capture_id: None,
    }
}

#[test]
fn manifest_declares_the_capabilities() {
    let m = Medusa.manifest();
    assert_eq!(m.id, "medusa");
    assert_eq!(m.schema, SCHEMA_VERSION);
    let c = &m.capabilities;
    assert_eq!(c.partial_capture, PartialCapture::Never);
    assert!(c.multiple_payments_per_call);
    assert_eq!(c.max_payments_per_call, None);
    assert!(!c.asynchronous);
    assert_eq!(c.amount_encoding, AmountEncoding::MinorUnits);
    assert_eq!(c.max_currency_exponent, 3);
    assert!(!c.idempotency_key);
    assert!(c.status_query);
    assert!(m.allowed_hosts.is_empty());
    assert_eq!(m.credentials, vec!["api_token".to_owned()]);
    assert!(m.settings.is_empty());
}

#[test]
fn one_payment_goes_to_the_payment_route_without_a_body() {
    let r = Medusa.build_capture(&usd(vec![pay("pay_01", "120.00")])).unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, "http://127.0.0.1:9/admin/payments/pay_01/capture");
    assert_eq!(r.body, None);
    assert_eq!(
        r.headers,
        vec![
            Header { name: "Accept".into(), value: "application/json".into(), secret: None },
            Header {
                name: "x-medusa-access-token".into(),
                value: String::new(),
                secret: Some("api_token".into())
            },
        ]
    );
}

#[test]
fn several_payments_go_to_the_order_route() {
    let mut c = usd(vec![pay("pay_02a", "50.00"), pay("pay_02b", "25.00")]);
    c.order_id = "order_02".into();
    c.amount = "75.00".into();
    let r = Medusa.build_capture(&c).unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, "http://127.0.0.1:9/admin/orders/order_02/capture");
    assert_eq!(r.body, None);
    assert_eq!(r.headers[1].secret.as_deref(), Some("api_token"));
}

#[test]
fn path_segments_are_percent_encoded() {
    let mut c = usd(vec![pay("pay 1/2?x", "1.00")]);
    c.base_url = format!("{BASE}/");
    let r = Medusa.build_capture(&c).unwrap();
    assert_eq!(r.url, "http://127.0.0.1:9/admin/payments/pay%201%2F2%3Fx/capture");
    let mut c = usd(vec![pay("a", "1.00"), pay("b", "1.00")]);
    c.order_id = "ord/é".into();
    assert_eq!(Medusa.build_capture(&c).unwrap().url, "http://127.0.0.1:9/admin/orders/ord%2F%C3%A9/capture");
}

#[test]
fn refuses_partial_captures_naming_the_payment_and_amounts() {
    let mut c = usd(vec![pay("pay_01", "120.00")]);
    c.full = false;
    let e = Medusa.build_capture(&c).unwrap_err();
    assert_eq!(e.code, "partial_capture_unsupported");
    assert!(e.message.contains("order_01") && e.message.contains("120.00"), "{e}");

    let mut short = pay("pay_02a", "40.00");
    short.authorized = "50.00".into();
    let e = Medusa.build_capture(&usd(vec![short, pay("pay_02b", "25.00")])).unwrap_err();
    assert_eq!(e.code, "partial_capture_unsupported");
    assert!(e.message.contains("pay_02a"), "{e}");
    assert!(e.message.contains("50.00 USD") && e.message.contains("40.00 USD"), "{e}");
}

#[test]
fn refuses_calls_it_cannot_express() {
    let e = Medusa.build_capture(&usd(vec![])).unwrap_err();
    assert_eq!(e.code, "invalid_call");
    let mut c = usd(vec![pay("a", "1.00"), pay("b", "1.00")]);
    c.order_id.clear();
    assert_eq!(Medusa.build_capture(&c).unwrap_err().code, "invalid_call");
    let e = Medusa.build_capture(&call("XXX", 2, vec![pay("a", "1.00")])).unwrap_err();
    assert_eq!(e.code, "unsupported_currency");
    // The host's exponent must agree with ISO 4217.
    let e = Medusa.build_capture(&call("JPY", 2, vec![pay("a", "1")])).unwrap_err();
    assert_eq!(e.code, "invalid_call");
    let e = Medusa.build_capture(&usd(vec![pay("a", "1.5x")])).unwrap_err();
    assert_eq!(e.code, "invalid_amount");
}

#[test]
fn captured_payment_amounts_are_minor_units_in_each_exponent() {
    for (currency, exponent, code, minor, expected) in [
        ("USD", 2, "usd", 12000, "120.00"),
        ("USD", 2, "usd", 1, "0.01"),
        ("JPY", 0, "jpy", 15000, "15000"),
        ("KWD", 3, "kwd", 12500, "12.500"),
        ("KWD", 3, "kwd", 1, "0.001"),
    ] {
        let c = call(currency, exponent, vec![pay("pay_01", expected)]);
        let r = Medusa.parse_capture(&c, &resp(200, &payment_body("pay_01", minor, code, AT))).unwrap();
        assert_eq!(r.status, ResultStatus::Captured, "{currency}");
        assert_eq!(r.captured_amount.as_deref(), Some(expected), "{currency} {minor}");
        assert_eq!(r.platform_capture_id.as_deref(), Some("pay_01"));
        assert_eq!(r.failure, None);
    }
}

#[test]
fn an_already_captured_payment_reads_as_captured() {
    // Medusa answers 200 with the payment unchanged; the connector cannot tell it apart.
    let c = usd(vec![pay("pay_07", "40.00")]);
    let body = payment_body("pay_07", 4000, "usd", Some("2026-11-20T08:00:00.000Z"));
    let r = Medusa.parse_capture(&c, &resp(200, &body)).unwrap();
    assert_eq!(r.status, ResultStatus::Captured);
    assert_eq!(r.captured_amount.as_deref(), Some("40.00"));
}

#[test]
fn a_200_payment_without_captured_at_is_not_a_success() {
    let c = usd(vec![pay("pay_01", "120.00")]);
    let r = Medusa.parse_capture(&c, &resp(200, &payment_body("pay_01", 12000, "usd", None))).unwrap();
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.retryable), ("unknown", false));
    assert!(f.message.contains("not captured"), "{}", f.message);
}

#[test]
fn a_payment_answer_that_contradicts_the_call_cannot_be_read() {
    let c = usd(vec![pay("pay_01", "120.00")]);
    let e = Medusa.parse_capture(&c, &resp(200, &payment_body("pay_01", 12000, "jpy", AT))).unwrap_err();
    assert_eq!(e.code, "invalid_response");
    assert!(e.message.contains("jpy"), "{e}");
    let e = Medusa.parse_capture(&c, &resp(200, &payment_body("pay_99", 12000, "usd", AT))).unwrap_err();
    assert!(e.message.contains("pay_99"), "{e}");
    // A fractional amount is not minor units.
    let e = Medusa.parse_capture(&c, &resp(200, r#"{"payment":{"id":"pay_01","amount":120.5}}"#));
    assert_eq!(failure_of(&e.unwrap()).kind, "outcome_unknown");
}

#[test]
fn an_unreadable_success_is_an_unknown_outcome() {
    let c = usd(vec![pay("pay_01", "120.00")]);
    for body in ["", "<html>ok</html>", r#"{"something":"else"}"#] {
        let r = Medusa.parse_capture(&c, &resp(200, body)).unwrap();
        let f = failure_of(&r);
        assert_eq!((f.kind.as_str(), f.retryable), ("outcome_unknown", false), "{body}");
        assert!(f.message.contains("payment pay_01"), "{}", f.message);
    }
}

fn order_call() -> CaptureCall {
    let mut c = usd(vec![pay("pay_02a", "50.00"), pay("pay_02b", "25.00")]);
    c.order_id = "order_02".into();
    c.amount = "75.00".into();
    c
}

fn order_body(payment_status: &str, payments: &[String]) -> String {
    format!(
        r#"{{"order":{{"id":"order_02","status":"pending","payment_status":"{payment_status}","payments":[{}]}}}}"#,
        payments.join(",")
    )
}

#[test]
fn a_captured_order_sums_the_call_payments() {
    let body = order_body(
        "captured",
        &[
            payment_json("pay_02a", 5000, "usd", AT),
            payment_json("pay_02b", 2500, "usd", AT),
            // Captured earlier and not part of this call: not counted.
            payment_json("pay_02z", 999, "usd", Some("2026-11-01T00:00:00.000Z")),
        ],
    );
    let r = Medusa.parse_capture(&order_call(), &resp(200, &body)).unwrap();
    assert_eq!(r.status, ResultStatus::Captured);
    assert_eq!(r.captured_amount.as_deref(), Some("75.00"));
    assert_eq!(r.failure, None);

    // Without a payments list, the order status alone says captured; the engine uses the call amount.
    let r = Medusa
        .parse_capture(
            &order_call(),
            &resp(200, r#"{"order":{"id":"order_02","payment_status":"captured"}}"#),
        )
        .unwrap();
    assert_eq!((r.status, r.captured_amount), (ResultStatus::Captured, None));
}

#[test]
fn requires_action_is_a_failure_despite_the_200() {
    let body = order_body(
        "requires_action",
        &[payment_json("pay_02a", 5000, "usd", AT), payment_json("pay_02b", 2500, "usd", None)],
    );
    let r = Medusa.parse_capture(&order_call(), &resp(200, &body)).unwrap();
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.retryable), ("invalid_state", false));
    assert_eq!(f.platform_code.as_deref(), Some("200"));
    assert!(f.message.contains("requires_action"), "{}", f.message);
    assert!(f.message.contains("captured: pay_02a; not captured: pay_02b"), "{}", f.message);
    assert_eq!(r.captured_amount, None);
}

#[test]
fn other_order_statuses() {
    let none = [payment_json("pay_02a", 5000, "usd", None), payment_json("pay_02b", 2500, "usd", None)];
    for (payment_status, expected) in [
        ("awaiting", ResultStatus::Pending),
        ("not_paid", ResultStatus::Pending),
        ("canceled", ResultStatus::Failed),
        ("refunded", ResultStatus::Failed),
    ] {
        let r = Medusa.parse_capture(&order_call(), &resp(200, &order_body(payment_status, &none))).unwrap();
        assert_eq!(r.status, expected, "{payment_status}");
    }
    let canceled = Medusa.parse_capture(&order_call(), &resp(200, &order_body("canceled", &none))).unwrap();
    assert_eq!(failure_of(&canceled).kind, "invalid_state");
    let refunded = Medusa.parse_capture(&order_call(), &resp(200, &order_body("refunded", &none))).unwrap();
    assert_eq!(failure_of(&refunded).kind, "unknown");
    // "captured" while a payment has no captured_at contradicts itself.
    let odd = Medusa.parse_capture(&order_call(), &resp(200, &order_body("captured", &none))).unwrap();
    assert_eq!(failure_of(&odd).kind, "outcome_unknown");
    // A payment of the call missing from the answer.
    let missing = order_body("captured", &[payment_json("pay_02a", 5000, "usd", AT)]);
    let e = Medusa.parse_capture(&order_call(), &resp(200, &missing)).unwrap_err();
    assert!(e.message.contains("pay_02b"), "{e}");
}

#[test]
fn maps_every_error_status() {
    let c = usd(vec![pay("pay_01", "120.00")]);
    let medusa = |t: &str, m: &str| format!(r#"{{"type":"{t}","message":"{m}"}}"#);
    let cases = [
        (400, medusa("not_allowed", "A canceled order cannot capture payment"), "invalid_request", false),
        (401, "Unauthorized".to_owned(), "unauthorized", false),
        (403, "Forbidden".to_owned(), "unauthorized", false),
        (404, medusa("not_found", "Payment with id pay_01 was not found"), "not_found", false),
        (
            409,
            medusa("invalid_state_error", "The request conflicted with another request."),
            "invalid_state",
            true,
        ),
        (
            422,
            r#"{"type":"duplicate_error","code":"invalid_request_error","message":"dup"}"#.to_owned(),
            "invalid_request",
            false,
        ),
        (429, "Too many requests".to_owned(), "rate_limited", true),
        (500, medusa("unexpected_state", "Failed to capture Payment pay_01"), "platform_unavailable", false),
        (502, "Bad Gateway".to_owned(), "platform_unavailable", false),
        (503, "".to_owned(), "platform_unavailable", false),
        (504, "<html>Gateway Timeout</html>".to_owned(), "platform_unavailable", false),
        (501, "Not Implemented".to_owned(), "unknown", false),
        (302, "".to_owned(), "unknown", false),
        (418, medusa("teapot", "short and stout"), "unknown", false),
    ];
    for (status, body, kind, retryable) in cases {
        let r = Medusa.parse_capture(&c, &resp(status, &body)).unwrap();
        let f = failure_of(&r);
        assert_eq!((f.kind.as_str(), f.retryable), (kind, retryable), "status {status}");
        assert_eq!(f.platform_code, Some(status.to_string()));
        if status >= 500 {
            assert!(f.message.contains("read payment pay_01's captured_at"), "{status}: {}", f.message);
        }
    }
    let f = Medusa
        .parse_capture(&c, &resp(404, &medusa("not_found", "Payment with id pay_01 was not found")))
        .unwrap();
    assert_eq!(failure_of(&f).message, "not_found: Payment with id pay_01 was not found");
    let f = Medusa.parse_capture(&c, &resp(401, "Unauthorized")).unwrap();
    assert_eq!(failure_of(&f).message, "Unauthorized");
    let f = Medusa
        .parse_capture(&c, &resp(500, &medusa("unexpected_state", "Failed to capture Payment pay_01")))
        .unwrap();
    assert!(failure_of(&f).message.starts_with(
        "unexpected_state: Failed to capture Payment pay_01 (the payment provider may have captured"
    ));
    let f = Medusa.parse_capture(&order_call(), &resp(503, "down")).unwrap();
    assert!(failure_of(&f).message.contains("GET /admin/orders/order_02"), "{:?}", f.failure);
    let f =
        Medusa.parse_capture(&c, &resp(422, r#"{"code":"invalid_request_error","message":"dup"}"#)).unwrap();
    assert_eq!(failure_of(&f).message, "invalid_request_error: dup");
}

#[test]
fn rate_limits_carry_the_retry_after_hint() {
    let c = usd(vec![pay("pay_01", "120.00")]);
    let mut r = resp(429, "Too many requests, please try again later.");
    r.headers = vec![("retry-after".into(), "2".into())];
    let f = Medusa.parse_capture(&c, &r).unwrap();
    assert_eq!(failure_of(&f).retry_after_ms, Some(2000));
    r.headers = vec![("Retry-After".into(), "Wed, 21 Oct 2026 07:28:00 GMT".into())];
    assert_eq!(failure_of(&Medusa.parse_capture(&c, &r).unwrap()).retry_after_ms, None);
}

#[test]
fn long_error_bodies_are_clipped() {
    let c = usd(vec![pay("pay_01", "120.00")]);
    let page = "x".repeat(5000);
    let f = Medusa.parse_capture(&c, &resp(502, &page)).unwrap();
    let message = &failure_of(&f).message;
    assert!(message.starts_with(&format!("{}...", "x".repeat(300))), "{message}");
    assert!(message.len() < 600);
}

#[test]
fn status_reads_one_payment_or_the_order() {
    let r = Medusa.build_status(&status_call(&["pay_02a"])).unwrap();
    assert_eq!((r.method.as_str(), r.url.as_str()), ("GET", "http://127.0.0.1:9/admin/payments/pay_02a"));
    assert_eq!(r.body, None);
    assert_eq!(r.headers[1].secret.as_deref(), Some("api_token"));
    for ids in [&[][..], &["pay_02a", "pay_02b"][..]] {
        let r = Medusa.build_status(&status_call(ids)).unwrap();
        assert_eq!((r.method.as_str(), r.url.as_str()), ("GET", "http://127.0.0.1:9/admin/orders/order_02"));
    }
    let mut c = status_call(&[]);
    c.order_id.clear();
    assert_eq!(Medusa.build_status(&c).unwrap_err().code, "invalid_call");
}

#[test]
fn status_of_a_payment() {
    let q = status_call(&["pay_02a"]);
    let r = Medusa.parse_status(&q, &resp(200, &payment_body("pay_02a", 5000, "usd", AT))).unwrap();
    assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Captured, Some("50.00")));
    // Not captured: Medusa captures synchronously, so there is no capture to wait for.
    let r = Medusa.parse_status(&q, &resp(200, &payment_body("pay_02a", 5000, "usd", None))).unwrap();
    assert_eq!(failure_of(&r).kind, "not_found");
    let canceled = payment_body("pay_02a", 5000, "usd", None)
        .replace(r#""canceled_at":null"#, r#""canceled_at":"2026-11-20T13:00:00.000Z""#);
    let r = Medusa.parse_status(&q, &resp(200, &canceled)).unwrap();
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.retryable), ("invalid_state", false));
    assert!(f.message.contains("canceled"), "{}", f.message);
    let r = Medusa
        .parse_status(
            &q,
            &resp(404, r#"{"type":"not_found","message":"Payment with id pay_02a was not found"}"#),
        )
        .unwrap();
    assert_eq!(failure_of(&r).kind, "not_found");
    assert_eq!(Medusa.parse_status(&q, &resp(200, "{}")).unwrap_err().code, "invalid_response");
}

#[test]
fn status_of_an_order() {
    let all = status_call(&[]);
    let both = [payment_json("pay_02a", 5000, "usd", AT), payment_json("pay_02b", 2500, "usd", AT)];
    let r = Medusa.parse_status(&all, &resp(200, &order_body("captured", &both))).unwrap();
    assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Captured, Some("75.00")));

    // Only the named payments count.
    let one_named = status_call(&["pay_02a", "pay_02b"]);
    let half = [payment_json("pay_02a", 5000, "usd", AT), payment_json("pay_02b", 2500, "usd", None)];
    let r = Medusa.parse_status(&one_named, &resp(200, &order_body("awaiting", &half))).unwrap();
    assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Captured, Some("50.00")));

    let none = [payment_json("pay_02a", 5000, "usd", None), payment_json("pay_02b", 2500, "usd", None)];
    let r = Medusa.parse_status(&all, &resp(200, &order_body("awaiting", &none))).unwrap();
    assert_eq!(failure_of(&r).kind, "not_found");

    let r = Medusa.parse_status(&all, &resp(200, &order_body("requires_action", &none))).unwrap();
    assert_eq!(failure_of(&r).kind, "invalid_state");
    let r = Medusa.parse_status(&all, &resp(200, &order_body("canceled", &none))).unwrap();
    assert_eq!(failure_of(&r).kind, "invalid_state");

    let e = Medusa.parse_status(&all, &resp(200, r#"{"order":{"payment_status":"awaiting","payments":[]}}"#));
    assert_eq!(e.unwrap_err().code, "invalid_response");
}
