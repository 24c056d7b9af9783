//! Unit tests: the request built byte for byte, refusals, and every answer mapping.

use std::collections::BTreeMap;

use capture_connector_api::CallPayment;

use super::*;

const ORDER: &str = "3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9";
const P1: &str = "496aaea1-4e2f-4cb1-9522-6b85f49b91e2";
const P2: &str = "23af2de7-b24d-41d5-8d27-cf925d378d32";

fn pay(id: &str, amount: &str, authorized: &str) -> CallPayment {
    CallPayment { id: id.into(), amount: amount.into(), authorized: authorized.into(), method: None }
}

fn call(currency: &str, amount: &str, payments: Vec<CallPayment>) -> CaptureCall {
    CaptureCall {
        schema: SCHEMA_VERSION,
        base_url: "http://127.0.0.1:9".into(),
        settings: BTreeMap::new(),
        order_id: ORDER.into(),
        currency: currency.into(),
        currency_exponent: Currency::from_code(currency).map(Currency::exponent).unwrap_or(2),
        amount: amount.into(),
        full: false,
        order_amount: amount.into(),
        surcharge: "0.00".into(),
        payments,
        idempotency_key: "key-1".into(),
        description: None,
        shipping: None,
    }
}

fn usd_both_full() -> CaptureCall {
    let mut c = call("USD", "30.00", vec![pay(P1, "10.00", "10.00"), pay(P2, "20.00", "20.00")]);
    c.full = true;
    c
}

fn status_call(payment_ids: &[&str], capture_id: Option<&str>) -> StatusCall {
    StatusCall {
        schema: SCHEMA_VERSION,
        base_url: "http://127.0.0.1:9/".into(),
        settings: BTreeMap::new(),
        order_id: ORDER.into(),
        currency: "USD".into(),
        currency_exponent: 2,
        payment_ids: payment_ids.iter().map(|s| (*s).to_owned()).collect(),
        idempotency_key: None,
        platform_capture_id: capture_id.map(str::to_owned),
    }
}

fn resp(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.into() }
}

/// A payment of an `orderTransactions` answer with captures `(id, status, amount, createdDate)`.
fn payment(id: &str, captures: &[(&str, &str, &str, &str)]) -> String {
    let captures: Vec<String> = captures
        .iter()
        .map(|(cid, status, amount, date)| {
            format!(
                r#"{{"status":"{status}","amount":{{"amount":"{amount}","formattedAmount":"${amount}"}},"createdDate":"{date}","id":"{cid}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"id":"{id}","regularPaymentDetails":{{"offlinePayment":false,"status":"AUTHORIZED","authorizationDetails":{{"delayedCapture":true,"captures":[{}]}}}},"amount":{{"amount":"10.00"}}}}"#,
        captures.join(",")
    )
}

fn transactions(payments: &[String]) -> String {
    format!(
        r#"{{"orderTransactions":{{"orderId":"{ORDER}","payments":[{}],"refunds":[]}}}}"#,
        payments.join(",")
    )
}

fn app_error(code: &str) -> String {
    format!(
        r#"{{"message":"{code} happened","details":{{"applicationError":{{"code":"{code}","description":"about {code}","data":{{}}}}}}}}"#
    )
}

fn failure_of(r: &CaptureResult) -> &Failure {
    r.failure.as_ref().expect("a failure")
}

// ---- manifest ----

#[test]
fn manifest_declares_the_wix_capabilities() {
    let m = Wix.manifest();
    assert_eq!(m.id, "wix");
    assert_eq!(m.schema, SCHEMA_VERSION);
    let c = &m.capabilities;
    assert_eq!(c.partial_capture, PartialCapture::Always);
    assert!(c.multiple_payments_per_call);
    assert_eq!(c.max_payments_per_call, Some(100));
    assert!(c.asynchronous);
    assert_eq!(c.amount_encoding, AmountEncoding::DecimalString);
    assert_eq!(c.max_currency_exponent, 3);
    assert!(!c.idempotency_key);
    assert!(c.status_query);
    assert_eq!(m.allowed_hosts, ["www.wixapis.com"]);
    assert_eq!(m.credentials, ["api_key"]);
    assert_eq!(m.settings, ["site_id"]);
}

// ---- build ----

#[test]
fn full_payments_omit_the_amount() {
    let r = Wix.build_capture(&usd_both_full()).unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, "http://127.0.0.1:9/ecom/v1/order-billing/capture-authorized-payments");
    assert_eq!(
        r.body.as_deref(),
        Some(
            r#"{"orderId":"3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9","payments":[{"paymentId":"496aaea1-4e2f-4cb1-9522-6b85f49b91e2"},{"paymentId":"23af2de7-b24d-41d5-8d27-cf925d378d32"}]}"#
        )
    );
    let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["Content-Type", "Accept", "Authorization"]);
    let auth = &r.headers[2];
    assert_eq!(auth.value, "", "Wix takes the key with no scheme prefix");
    assert_eq!(auth.secret.as_deref(), Some("api_key"));
    assert!(r.headers.iter().all(|h| h.name != "wix-site-id"));
}

#[test]
fn a_partial_payment_sends_its_amount_and_a_full_one_does_not() {
    let c = call("USD", "15.00", vec![pay(P1, "10.00", "10.00"), pay(P2, "5.00", "20.00")]);
    let r = Wix.build_capture(&c).unwrap();
    assert_eq!(
        r.body.as_deref(),
        Some(
            r#"{"orderId":"3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9","payments":[{"paymentId":"496aaea1-4e2f-4cb1-9522-6b85f49b91e2"},{"paymentId":"23af2de7-b24d-41d5-8d27-cf925d378d32","amount":{"amount":"5.00"}}]}"#
        )
    );
}

#[test]
fn the_site_id_setting_adds_its_header() {
    let mut c = usd_both_full();
    c.settings.insert("site_id".into(), "9f8e7d6c-0000-4000-8000-000000000001".into());
    let r = Wix.build_capture(&c).unwrap();
    let site = r.headers.iter().find(|h| h.name == "wix-site-id").expect("site header");
    assert_eq!(site.value, "9f8e7d6c-0000-4000-8000-000000000001");
    assert_eq!(site.secret, None);
    // An empty setting sends nothing.
    c.settings.insert("site_id".into(), "  ".into());
    assert!(Wix.build_capture(&c).unwrap().headers.iter().all(|h| h.name != "wix-site-id"));
}

#[test]
fn exact_decimal_strings_on_the_wire() {
    // 0.1 + 0.2 is exactly 0.30 in USD.
    let usd = Currency::from_code("USD").unwrap();
    let sum = Money::parse("0.1", usd).unwrap().checked_add(Money::parse("0.2", usd).unwrap()).unwrap();
    let c = call("USD", &sum.to_decimal_string(), vec![pay(P1, &sum.to_decimal_string(), "10.00")]);
    let body = Wix.build_capture(&c).unwrap().body.unwrap();
    assert!(body.contains(r#""amount":{"amount":"0.30"}"#), "{body}");

    let jpy = call("JPY", "1500", vec![pay(P1, "1500", "2000")]);
    let body = Wix.build_capture(&jpy).unwrap().body.unwrap();
    assert!(body.contains(r#""amount":{"amount":"1500"}"#), "{body}");

    let kwd = call("KWD", "12.500", vec![pay(P1, "12.500", "20.000")]);
    let body = Wix.build_capture(&kwd).unwrap().body.unwrap();
    assert!(body.contains(r#""amount":{"amount":"12.500"}"#), "{body}");
}

#[test]
fn ids_that_are_not_guids_are_refused_naming_field_and_value() {
    let mut c = usd_both_full();
    c.order_id = "ORD-1001".into();
    let e = Wix.build_capture(&c).unwrap_err();
    assert_eq!(e.code, "invalid_call");
    assert!(e.message.contains("orderId `ORD-1001`"), "{e}");

    let mut c = usd_both_full();
    c.payments[1].id = "23af2de7-b24d-41d5-8d27-cf925d378d3".into(); // 11 digits in the last group
    let e = Wix.build_capture(&c).unwrap_err();
    assert!(e.message.contains("payments[1].paymentId `23af2de7-b24d-41d5-8d27-cf925d378d3`"), "{e}");

    for bad in [
        "",
        "3545c2f27768-4e6e-b64b-dcc11dc7a7f9",
        "3545c2f2-7768-4e6e-b64b-dcc11dc7a7fg",
        "{3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9}",
    ] {
        assert!(!is_guid(bad), "{bad}");
    }
    assert!(is_guid("3545C2F2-7768-4E6E-B64B-DCC11DC7A7F9"));
}

#[test]
fn one_to_a_hundred_payments() {
    let payments: Vec<CallPayment> =
        (0..101).map(|i| pay(&format!("00000000-0000-4000-8000-{i:012}"), "1.00", "1.00")).collect();
    let c = call("USD", "101.00", payments.clone());
    let e = Wix.build_capture(&c).unwrap_err();
    assert_eq!(e.code, "too_many_payments");
    assert!(e.message.contains("at most 100") && e.message.contains("101"), "{e}");

    let c = call("USD", "100.00", payments[..100].to_vec());
    let body = Wix.build_capture(&c).unwrap().body.unwrap();
    assert_eq!(body.matches("paymentId").count(), 100);

    let e = Wix.build_capture(&call("USD", "0.00", vec![])).unwrap_err();
    assert_eq!(e.code, "invalid_call");
    assert!(e.message.contains("no payment"), "{e}");
}

#[test]
fn inconsistent_amounts_are_refused_before_any_call() {
    let e = Wix.build_capture(&call("USD", "11.00", vec![pay(P1, "11.00", "10.00")])).unwrap_err();
    assert_eq!(e.code, "invalid_amount");
    assert!(e.message.contains("exceeds"), "{e}");

    let e = Wix.build_capture(&call("USD", "0.00", vec![pay(P1, "0.00", "10.00")])).unwrap_err();
    assert_eq!(e.code, "invalid_amount");

    let e = Wix.build_capture(&call("USD", "30.00", vec![pay(P1, "10.00", "10.00")])).unwrap_err();
    assert_eq!(e.code, "invalid_call");
    assert!(e.message.contains("add up to 10.00 USD"), "{e}");

    let e = Wix.build_capture(&call("USD", "1.005", vec![pay(P1, "1.005", "10.00")])).unwrap_err();
    assert_eq!(e.code, "invalid_amount", "{e}");

    let e = Wix
        .build_capture(&call("USD", "20.00", vec![pay(P1, "10.00", "10.00"), pay(P1, "10.00", "10.00")]))
        .unwrap_err();
    assert!(e.message.contains("listed twice"), "{e}");

    let e = Wix.build_capture(&call("XXX", "1.00", vec![pay(P1, "1.00", "1.00")])).unwrap_err();
    assert_eq!(e.code, "unsupported_currency");
}

// ---- parse: success ----

#[test]
fn all_succeeded_is_captured_with_the_exact_sum() {
    let body = transactions(&[
        payment(P1, &[("c-1", "SUCCEEDED", "10", "2024-12-25T08:51:51.167Z")]),
        payment(P2, &[("c-2", "SUCCEEDED", "20.0", "2024-12-25T08:51:51.167Z")]),
    ]);
    let r = Wix.parse_capture(&usd_both_full(), &resp(200, &body)).unwrap();
    assert_eq!(r.status, ResultStatus::Captured);
    assert_eq!(r.captured_amount.as_deref(), Some("30.00"));
    assert_eq!(r.platform_capture_id.as_deref(), Some("c-1,c-2"));
    assert_eq!(r.failure, None);
}

#[test]
fn any_pending_is_pending() {
    let body = transactions(&[
        payment(P1, &[("c-1", "SUCCEEDED", "10.00", "2024-12-25T08:51:51.167Z")]),
        payment(P2, &[("c-2", "PENDING", "20.00", "2024-12-25T08:51:51.167Z")]),
    ]);
    let r = Wix.parse_capture(&usd_both_full(), &resp(200, &body)).unwrap();
    assert_eq!(r.status, ResultStatus::Pending);
    assert_eq!(r.captured_amount.as_deref(), Some("30.00"));
}

#[test]
fn any_failed_is_a_failure_that_names_what_was_accepted() {
    let body = transactions(&[
        payment(P1, &[("c-1", "PENDING", "10.00", "2024-12-25T08:51:51.167Z")]),
        payment(P2, &[("c-2", "FAILED", "20.00", "2024-12-25T08:51:51.167Z")]),
    ]);
    let r = Wix.parse_capture(&usd_both_full(), &resp(200, &body)).unwrap();
    assert_eq!(r.status, ResultStatus::Failed);
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.retryable), ("invalid_state", false));
    assert!(f.message.contains("capture c-2 of payment 23af2de7"), "{}", f.message);
    assert!(f.message.contains("accepted for 10.00 USD"), "{}", f.message);
}

#[test]
fn only_the_newest_capture_of_a_payment_is_this_calls() {
    // An earlier partial capture (SUCCEEDED) and an earlier FAILED one do not count again.
    let c = call("USD", "4.00", vec![pay(P1, "4.00", "10.00")]);
    let body = transactions(&[payment(
        P1,
        &[
            ("new", "PENDING", "4.00", "2024-12-26T08:00:00.000Z"),
            ("old", "SUCCEEDED", "6.00", "2024-12-25T08:00:00.000Z"),
            ("older", "FAILED", "6.00", "2024-12-24T08:00:00.000Z"),
        ],
    )]);
    let r = Wix.parse_capture(&c, &resp(200, &body)).unwrap();
    assert_eq!(r.status, ResultStatus::Pending);
    assert_eq!(r.captured_amount.as_deref(), Some("4.00"));
    assert_eq!(r.platform_capture_id.as_deref(), Some("new"));
}

#[test]
fn a_capture_other_than_asked_is_reported_as_wix_made_it() {
    // A partial amount silently captured in full shows as the full amount, never as the request.
    let c = call("USD", "5.00", vec![pay(P1, "5.00", "10.00")]);
    let body = transactions(&[payment(P1, &[("c-1", "PENDING", "10.00", "2024-12-25T08:51:51.167Z")])]);
    let r = Wix.parse_capture(&c, &resp(200, &body)).unwrap();
    assert_eq!(r.captured_amount.as_deref(), Some("10.00"));
}

#[test]
fn an_unreadable_or_incomplete_success_is_an_unknown_outcome() {
    for body in [
        "not json".to_owned(),
        "{}".to_owned(),
        transactions(&[payment(P1, &[("c-1", "PENDING", "10.00", "2024-12-25T08:51:51.167Z")])]),
        transactions(&[payment(P1, &[("c-1", "PENDING", "10.00", "d")]), payment(P2, &[])]),
        transactions(&[
            payment(P1, &[("c-1", "PENDING", "10.001", "d")]),
            payment(P2, &[("c-2", "PENDING", "1", "d")]),
        ]),
        transactions(&[
            payment(P1, &[("c-1", "WEIRD", "10.00", "d")]),
            payment(P2, &[("c-2", "PENDING", "1", "d")]),
        ]),
        transactions(&[
            payment(P1, &[("c-1", "PENDING", "10.00", "d")]),
            payment(P2, &[("c-2", "PENDING", "20.00", "d")]),
        ])
        .replace(ORDER, "00000000-0000-4000-8000-000000000000"),
    ] {
        let r = Wix.parse_capture(&usd_both_full(), &resp(200, &body)).unwrap();
        let f = failure_of(&r);
        assert_eq!((f.kind.as_str(), f.retryable), ("outcome_unknown", false), "{body}");
        assert!(f.message.contains("read the order's transactions"), "{}", f.message);
    }
}

// ---- parse: errors ----

#[test]
fn every_documented_error_code_maps() {
    let c = usd_both_full();
    for (status, code, kind) in [
        (400, "INVALID_AMOUNT", "invalid_request"),
        (404, "PAYMENT_NOT_FOUND", "not_found"),
        (409, "PAYMENT_ALREADY_VOIDED", "invalid_state"),
        (428, "PAYMENT_NOT_AUTHORIZED", "invalid_state"),
        (428, "ORDER_HAS_CHARGEBACKS", "invalid_state"),
    ] {
        let r = Wix.parse_capture(&c, &resp(status, &app_error(code))).unwrap();
        assert_eq!(r.status, ResultStatus::Failed, "{code}");
        let f = failure_of(&r);
        assert_eq!((f.kind.as_str(), f.retryable), (kind, false), "{code}");
        assert_eq!(f.platform_code.as_deref(), Some(code));
        assert_eq!(f.message, format!("{code} happened: about {code}"));
    }
}

#[test]
fn already_captured_is_not_a_failure_and_a_pending_capture_refuses_this_one() {
    let c = usd_both_full();
    let r = Wix.parse_capture(&c, &resp(409, &app_error("PAYMENT_ALREADY_CAPTURED"))).unwrap();
    assert_eq!(r.status, ResultStatus::AlreadyCaptured);
    assert_eq!(failure_of(&r).platform_code.as_deref(), Some("PAYMENT_ALREADY_CAPTURED"));

    // Another capture is settling: this request was not applied. Reading it as this capture's
    // pending state would let that other capture be counted twice (the simulator's seed 18).
    let r = Wix.parse_capture(&c, &resp(428, &app_error("PAYMENT_HAS_PENDING_CAPTURE"))).unwrap();
    assert_eq!(r.status, ResultStatus::Failed);
    let f = failure_of(&r);
    assert_eq!(f.platform_code.as_deref(), Some("PAYMENT_HAS_PENDING_CAPTURE"));
    assert!(f.retryable, "the same key may be sent again once the other capture settled");
}

#[test]
fn validation_errors_name_the_fields() {
    let body = r#"{"message":"INVALID_ARGUMENT","details":{"validationError":{"fieldViolations":[{"field":"orderId","description":"must be a valid GUID","violatedRule":"FORMAT","data":{"type":"GUID"}},{"field":"payments","description":"must have at most 100 elements","violatedRule":"MAX_SIZE"}]}}}"#;
    let r = Wix.parse_capture(&usd_both_full(), &resp(400, body)).unwrap();
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.platform_code.as_deref()), ("invalid_request", Some("400")));
    assert_eq!(
        f.message,
        "INVALID_ARGUMENT: invalid fields: orderId: must be a valid GUID (FORMAT); payments: must have at most 100 elements (MAX_SIZE)"
    );
}

#[test]
fn statuses_without_a_known_code() {
    let c = usd_both_full();
    let body = r#"{"message":"nope","details":{}}"#;
    for (status, kind, retryable) in [
        (400, "invalid_request", false),
        (401, "unauthorized", false),
        (403, "unauthorized", false),
        (404, "not_found", false),
        (409, "invalid_state", false),
        (428, "invalid_state", false),
        (429, "rate_limited", true),
        (500, "platform_unavailable", false),
        (502, "platform_unavailable", false),
        (503, "platform_unavailable", false),
        (504, "platform_unavailable", false),
        (501, "unknown", false),
        (418, "unknown", false),
        (302, "unknown", false),
    ] {
        let r = Wix.parse_capture(&c, &resp(status, body)).unwrap();
        let f = failure_of(&r);
        assert_eq!((f.kind.as_str(), f.retryable), (kind, retryable), "status {status}");
        assert_eq!(f.platform_code, Some(status.to_string()));
        assert!(f.message.starts_with("nope"), "{}", f.message);
    }
}

#[test]
fn a_429_reads_retry_after_and_a_5xx_says_to_read_first() {
    let c = usd_both_full();
    let mut r429 = resp(429, &app_error("RESOURCE_EXHAUSTED"));
    r429.headers.push(("retry-after".into(), "2".into()));
    let f = failure_of(&Wix.parse_capture(&c, &r429).unwrap()).clone();
    assert_eq!((f.kind.as_str(), f.retryable, f.retry_after_ms), ("rate_limited", true, Some(2000)));
    assert_eq!(f.platform_code.as_deref(), Some("RESOURCE_EXHAUSTED"));
    let f = failure_of(&Wix.parse_capture(&c, &resp(429, "")).unwrap()).clone();
    assert_eq!((f.retry_after_ms, f.message.as_str()), (None, "HTTP 429 with an empty body"));

    let r = Wix.parse_capture(&c, &resp(503, "<html>Service Unavailable</html>")).unwrap();
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.retryable), ("platform_unavailable", false));
    assert!(f.message.starts_with("<html>Service Unavailable</html>"), "{}", f.message);
    assert!(f.message.contains("read the order's transactions before capturing again"), "{}", f.message);
}

// ---- status ----

#[test]
fn status_reads_the_orders_transactions() {
    let r = Wix.build_status(&status_call(&[P1], None)).unwrap();
    assert_eq!(r.method, "GET");
    assert_eq!(r.url, "http://127.0.0.1:9/ecom/v1/payments/orders/3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9");
    assert_eq!(r.body, None);
    let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["Accept", "Authorization"]);
    assert_eq!(r.headers[1].secret.as_deref(), Some("api_key"));

    let mut bad = status_call(&[], None);
    bad.order_id = "ORD-1".into();
    assert!(Wix.build_status(&bad).unwrap_err().message.contains("orderId `ORD-1`"));
    let e = Wix.build_status(&status_call(&["p-1"], None)).unwrap_err();
    assert!(e.message.contains("payment_ids[0] `p-1`"), "{e}");
}

#[test]
fn status_maps_pending_then_captured() {
    let pending = transactions(&[
        payment(P1, &[("c-1", "PENDING", "10.00", "2024-12-25T08:51:51.167Z")]),
        payment(P2, &[]),
    ]);
    let r = Wix.parse_status(&status_call(&[P1], None), &resp(200, &pending)).unwrap();
    assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Pending, Some("10.00")));

    let settled = pending.replace("PENDING", "SUCCEEDED");
    let r = Wix.parse_status(&status_call(&[P1], None), &resp(200, &settled)).unwrap();
    assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Captured, Some("10.00")));
    assert_eq!(r.platform_capture_id.as_deref(), Some("c-1"));

    // No payment ids: every payment with a capture.
    let r = Wix.parse_status(&status_call(&[], None), &resp(200, &settled)).unwrap();
    assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Captured, Some("10.00")));
}

#[test]
fn status_by_capture_id_reads_exactly_those_captures() {
    let body = transactions(&[
        payment(
            P1,
            &[
                ("c-1", "SUCCEEDED", "4.00", "2024-12-25T08:00:00.000Z"),
                ("c-3", "PENDING", "6.00", "2024-12-26T08:00:00.000Z"),
            ],
        ),
        payment(P2, &[("c-2", "SUCCEEDED", "20.00", "2024-12-25T08:00:00.000Z")]),
    ]);
    let r = Wix.parse_status(&status_call(&[], Some("c-1, c-2")), &resp(200, &body)).unwrap();
    assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Captured, Some("24.00")));
    assert_eq!(r.platform_capture_id.as_deref(), Some("c-1,c-2"));

    let r = Wix.parse_status(&status_call(&[], Some("c-9")), &resp(200, &body)).unwrap();
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.retryable), ("not_found", false));
    assert!(f.message.contains("capture c-9"), "{}", f.message);
}

#[test]
fn status_without_a_capture_is_not_found() {
    let body = transactions(&[payment(P1, &[]), payment(P2, &[])]);
    let r = Wix.parse_status(&status_call(&[P1], None), &resp(200, &body)).unwrap();
    let f = failure_of(&r);
    assert_eq!((f.kind.as_str(), f.retryable), ("not_found", false));
    assert!(
        f.message.contains("payment 496aaea1-4e2f-4cb1-9522-6b85f49b91e2 has no capture"),
        "{}",
        f.message
    );
    let r = Wix.parse_status(&status_call(&[], None), &resp(200, &body)).unwrap();
    assert!(failure_of(&r).message.contains("has no capture"));
    let r = Wix
        .parse_status(&status_call(&["00000000-0000-4000-8000-000000000000"], None), &resp(200, &body))
        .unwrap();
    assert_eq!(failure_of(&r).kind, "not_found");

    let r = Wix.parse_status(&status_call(&[], None), &resp(404, &app_error("ORDER_NOT_FOUND"))).unwrap();
    assert_eq!(
        (failure_of(&r).kind.as_str(), failure_of(&r).platform_code.as_deref()),
        ("not_found", Some("ORDER_NOT_FOUND"))
    );
    let r = Wix.parse_status(&status_call(&[], None), &resp(401, "")).unwrap();
    assert_eq!(failure_of(&r).kind, "unauthorized");
}
