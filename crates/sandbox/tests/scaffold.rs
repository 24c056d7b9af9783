//! What the four emulators share: the request log, the fault queue's control routes and checks,
//! application codes in faults, and reset.

use capture_sandbox::bigcommerce::{BigCommerceConfig, BigCommerceEmulator};
use capture_sandbox::client::{self, Reply};
use capture_sandbox::faults::Fault;
use capture_sandbox::medusa::{MedusaConfig, MedusaEmulator};
use capture_sandbox::wix::demo_ids::{TOKEN as WIX_TOKEN, USD_ORDER, USD_PAYMENT_10};
use capture_sandbox::wix::{WixConfig, WixEmulator};
use capture_sandbox::{OpttyConfig, OpttyEmulator, OpttyOrder};
use rust_decimal::Decimal;
use serde_json::{Value, json};

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    client::send(addr, method, path, headers, body).await.expect("exchange")
}

async fn optty_capture(emu: &OpttyEmulator, order: &str, reference: &str, amount: &str) -> Reply {
    let body = format!(r#"{{"captureReference":"{reference}","amount":{amount}}}"#);
    let headers = [("Authorization", "Bearer sandbox-optty-token"), ("Content-Type", "application/json")];
    send(emu.addr(), "POST", &format!("/orders/{order}/capture"), &headers, &body).await
}

async fn wix_capture(emu: &WixEmulator) -> Reply {
    let body = json!({"orderId": USD_ORDER, "payments": [{"paymentId": USD_PAYMENT_10}]}).to_string();
    let headers = [("Authorization", WIX_TOKEN), ("Content-Type", "application/json")];
    send(emu.addr(), "POST", "/ecom/v1/order-billing/capture-authorized-payments", &headers, &body).await
}

#[tokio::test]
async fn the_request_log_shows_what_reached_the_platform_with_credentials_redacted() {
    let emu = OpttyEmulator::start(OpttyConfig::demo()).await.expect("start");
    let reply = optty_capture(&emu, "ORD-1001", "log-1", "120.00").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    emu.faults().push([Fault::drop_after_apply()]);
    // Without a token the guard refuses before the fault is taken.
    let refused = send(emu.addr(), "POST", "/orders/ORD-1005/capture", &[], "").await;
    assert_eq!(refused.status, 401);
    // Control routes are not logged.
    let log = send(emu.addr(), "GET", "/_sandbox/requests", &[], "").await;
    let entries = log.json["requests"].as_array().expect("a list").clone();
    assert_eq!(entries.len(), 2, "{}", log.text);
    assert_eq!(entries[0]["seq"], 1);
    assert_eq!(entries[0]["method"], "POST");
    assert_eq!(entries[0]["path"], "/orders/ORD-1001/capture");
    assert_eq!(entries[0]["headers"]["authorization"], "[REDACTED]");
    assert_eq!(entries[0]["body"], r#"{"captureReference":"log-1","amount":120.00}"#);
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[1]["status"], 401);
    assert_eq!(emu.requests().len(), 2, "the handle reads the same log");

    // A dropped connection has no status.
    let headers = [("Authorization", "Bearer sandbox-optty-token"), ("Content-Type", "application/json")];
    let raw = client::send_raw(
        emu.addr(),
        "POST",
        "/orders/ORD-1005/capture",
        &headers,
        r#"{"captureReference":"log-2","amount":45.00}"#,
    )
    .await
    .unwrap_or_default();
    assert!(!String::from_utf8_lossy(&raw).contains("captureId"), "the answer was dropped");
    let last = emu.requests().pop().expect("logged");
    assert_eq!((last.status, last.dropped), (None, true));

    let cleared = send(emu.addr(), "DELETE", "/_sandbox/requests", &[], "").await;
    assert_eq!(cleared.status, 204);
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn wix_faults_answer_the_documented_application_codes() {
    let emu = WixEmulator::start(WixConfig::demo()).await.expect("start");
    for (status, code, description) in [
        (428, "PAYMENT_HAS_PENDING_CAPTURE", "The payment has a capture still pending"),
        (409, "PAYMENT_ALREADY_CAPTURED", "The payment is already captured"),
        (428, "ORDER_HAS_CHARGEBACKS", "The order has chargebacks; its payments cannot be captured"),
        (409, "PAYMENT_ALREADY_VOIDED", "The payment is voided"),
    ] {
        emu.faults().push([Fault::status_with_code(status, code)]);
        let reply = wix_capture(&emu).await;
        assert_eq!(reply.status, status, "{code}");
        assert_eq!(
            reply.json,
            json!({"message": description, "details": {"applicationError": {"code": code, "description": description, "data": {}}}}),
            "{code}"
        );
    }
    // Without a code, the status's generic code; with a message, that text.
    emu.faults().push([Fault { message: Some("try later".into()), ..Fault::status(503) }]);
    let reply = wix_capture(&emu).await;
    assert_eq!(reply.json["details"]["applicationError"]["code"], "UNAVAILABLE");
    assert_eq!(reply.json["message"], "try later");
    // Nothing was captured by a fault that does not apply.
    let order = emu.order(USD_ORDER).expect("order");
    assert!(order.payments[0].captures.is_empty());
}

#[tokio::test]
async fn medusa_and_bigcommerce_faults_carry_their_text() {
    let medusa = MedusaEmulator::start(MedusaConfig::demo()).await.expect("start");
    let body = r#"[{"kind":"status","status":400,"code":"not_allowed","message":"nope"}]"#;
    assert_eq!(send(medusa.addr(), "POST", "/_sandbox/faults", &[], body).await.status, 204);
    let reply = send(
        medusa.addr(),
        "POST",
        "/admin/payments/pay_01/capture",
        &[("x-medusa-access-token", "sandbox-medusa-token")],
        "",
    )
    .await;
    assert_eq!((reply.status, reply.json.clone()), (400, json!({"type": "not_allowed", "message": "nope"})));

    let bc = BigCommerceEmulator::start(BigCommerceConfig::demo()).await.expect("start");
    let body = r#"[{"kind":"status","status":422,"message":"declined"}]"#;
    assert_eq!(send(bc.addr(), "POST", "/_sandbox/faults", &[], body).await.status, 204);
    let reply = send(
        bc.addr(),
        "POST",
        "/stores/abc123/v3/orders/100/payment_actions/capture",
        &[("X-Auth-Token", "sandbox-bigcommerce-token")],
        "{}",
    )
    .await;
    assert_eq!((reply.status, reply.json["title"].clone()), (422, Value::from("declined")));
}

/// Each fault list the control API must refuse, and the error it gives.
#[tokio::test]
async fn the_fault_route_refuses_what_the_platform_cannot_say() {
    let optty = OpttyEmulator::start(OpttyConfig::demo()).await.expect("start");
    let bc = BigCommerceEmulator::start(BigCommerceConfig::demo()).await.expect("start");
    let cases = [
        (
            optty.addr(),
            r#"[{"kind":"status","status":409,"code":"X"}]"#,
            "faults[0].code: optty errors carry no application error code; set `message` instead",
        ),
        (
            bc.addr(),
            r#"[{"kind":"status","status":409},{"kind":"status","status":409,"code":"X"}]"#,
            "faults[1].code: bigcommerce errors carry no application error code; set `message` instead",
        ),
        (
            optty.addr(),
            r#"[{"kind":"status","status":200}]"#,
            "faults[0].status: 200 is not an error status (400-599)",
        ),
        (
            optty.addr(),
            r#"[{"kind":"delay","delay_ms":5,"message":"m"}]"#,
            "faults[0].message: only a `status` fault says what the error is",
        ),
    ];
    for (addr, body, error) in cases {
        let reply = send(addr, "POST", "/_sandbox/faults", &[], body).await;
        assert_eq!((reply.status, reply.json.clone()), (400, json!({ "error": error })), "{body}");
    }
    let reply = send(optty.addr(), "POST", "/_sandbox/faults", &[], "[{\"kind\":\"boom\"}]").await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json["error"].as_str().is_some_and(|e| e.starts_with("faults: unknown variant `boom`")),
        "{}",
        reply.text
    );
    assert!(
        optty.faults().queued().is_empty() && bc.faults().queued().is_empty(),
        "nothing refused was queued"
    );
}

#[tokio::test]
async fn reset_empties_the_books_the_faults_and_the_log() {
    let emu = OpttyEmulator::start(OpttyConfig::demo()).await.expect("start");
    assert_eq!(optty_capture(&emu, "ORD-1001", "r-1", "120.00").await.status, 200);
    emu.faults().push([Fault::status(500)]);
    let reply = send(emu.addr(), "POST", "/_sandbox/reset", &[], "").await;
    assert_eq!(reply.status, 204);
    assert!(emu.captures("ORD-1001").is_empty());
    assert!(emu.faults().queued().is_empty());
    assert!(emu.requests().is_empty());
    // The reference is free again after a reset.
    assert_eq!(optty_capture(&emu, "ORD-1001", "r-1", "120.00").await.status, 200);
}

#[tokio::test]
async fn optty_references_stay_unique_across_orders_and_free_when_an_order_is_replaced() {
    let emu = OpttyEmulator::start(OpttyConfig::demo()).await.expect("start");
    assert_eq!(optty_capture(&emu, "ORD-1003", "ref-a", "10.00").await.status, 200);
    let again = optty_capture(&emu, "ORD-1005", "ref-a", "45.00").await;
    assert_eq!(
        (again.status, again.json["message"].clone()),
        (400, json!("captureReference ref-a has already been used"))
    );
    // Replacing ORD-1003 discards its captures, and with them the reference.
    emu.add_order(OpttyOrder::new("ORD-1003", "USD", Decimal::new(5000, 2), Decimal::ZERO, "afterpay"));
    assert_eq!(optty_capture(&emu, "ORD-1005", "ref-a", "45.00").await.status, 200);
}
