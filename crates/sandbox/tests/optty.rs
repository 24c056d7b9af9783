//! The Optty emulator over real HTTP on loopback, with a tiny HTTP/1.1 client.

use std::net::SocketAddr;

use capture_sandbox::client::{self, Reply};
use capture_sandbox::{OpttyConfig, OpttyEmulator, OpttyOrder};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const TOKEN: &str = "sandbox-optty-token";

/// Sends one request through the shared test client.
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    client::send(addr, method, path, headers, body).await.expect("exchange")
}

/// `POST /orders/{order}/capture` with the demo token and a JSON body.
async fn capture(emu: &OpttyEmulator, order: &str, body: &str) -> Reply {
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    send(emu.addr(), "POST", &format!("/orders/{order}/capture"), &headers, body).await
}

async fn demo() -> OpttyEmulator {
    OpttyEmulator::start(OpttyConfig::demo()).await.expect("start the emulator")
}

fn dec(text: &str) -> Decimal {
    capture_core::parse_decimal(text).unwrap()
}

/// The success body, its amount parsed from text: with `arbitrary_precision`, `json!(120.00)` would
/// go through a float and read `120.0`.
fn success(reference: &str, id: &str, amount: &str) -> Value {
    let text =
        format!(r#"{{"captureReference":"{reference}","captureId":"{id}","capturedAmount":{amount}}}"#);
    serde_json::from_str(&text).unwrap()
}

fn validation_error(messages: &[&str]) -> Value {
    json!({"statusCode": 400, "message": messages, "error": "Bad Request"})
}

#[tokio::test]
async fn full_capture_returns_200_with_the_exact_amount_text() {
    let emu = demo().await;
    assert!(emu.base_url().starts_with("http://127.0.0.1:"));

    let r =
        capture(&emu, "ORD-1001", r#"{"captureReference":"c-1","description":"ship it","amount":120}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, success("c-1", "cap_ORD-1001_1", "120.00"));
    assert!(r.text.contains(r#""capturedAmount":120.00"#), "{}", r.text);

    // Amount plus surcharge, sent with one decimal, answered with two.
    let r = capture(&emu, "ORD-1002", r#"{"captureReference":"c-2","amount":82.5}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(r#""capturedAmount":82.50"#), "{}", r.text);
    assert!(r.text.contains(r#""captureId":"cap_ORD-1002_1""#), "{}", r.text);

    let books = emu.captures("ORD-1001");
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].capture_reference, "c-1");
    assert_eq!(books[0].capture_id, "cap_ORD-1001_1");
    assert_eq!(books[0].amount.to_string(), "120.00");
    assert_eq!(books[0].description.as_deref(), Some("ship it"));
    assert_eq!(books[0].shipping_info, None);
    emu.shutdown().await;
}

#[tokio::test]
async fn trailing_zeros_are_not_extra_decimals() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1005", r#"{"captureReference":"z-1","amount":45.000}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(r#""capturedAmount":45.00"#), "{}", r.text);
}

#[tokio::test]
async fn partial_captures_up_to_the_total_then_one_cent_more_is_refused() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1003", r#"{"captureReference":"p-1","amount":1000.1}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, success("p-1", "cap_ORD-1003_1", "1000.10"));

    let r = capture(&emu, "ORD-1003", r#"{"captureReference":"p-2","amount":1499.90}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, success("p-2", "cap_ORD-1003_2", "1499.90"));

    let r = capture(&emu, "ORD-1003", r#"{"captureReference":"p-3","amount":0.01}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"statusCode":400,"message":"Capture amount exceeds the remaining authorized amount of 0.00"})
    );

    let amounts: Vec<Decimal> = emu.captures("ORD-1003").iter().map(|c| c.amount).collect();
    assert_eq!(amounts, [dec("1000.10"), dec("1499.90")]);
}

#[tokio::test]
async fn over_capture_names_the_remaining_amount() {
    let emu = demo().await;
    // AUD 99.95 + 1.05 surcharge, humm supports partial capture.
    let r = capture(&emu, "ORD-1006", r#"{"captureReference":"h-1","amount":50.5}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = capture(&emu, "ORD-1006", r#"{"captureReference":"h-2","amount":50.51}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"statusCode":400,"message":"Capture amount exceeds the remaining authorized amount of 50.50"})
    );
}

#[tokio::test]
async fn partial_capture_is_refused_for_klarna_pay_in_full() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1004", r#"{"captureReference":"k-1","amount":30}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"statusCode":400,"message":"Partial capture is not supported for payment method klarna-pay-in-full"})
    );
    assert!(emu.captures("ORD-1004").is_empty());

    let r = capture(&emu, "ORD-1004", r#"{"captureReference":"k-2","amount":60.00}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, success("k-2", "cap_ORD-1004_1", "60.00"));
}

#[tokio::test]
async fn three_decimals_are_refused_naming_amount() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"d-1","amount":120.001}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        validation_error(&["amount must be a number conforming to the specified constraints"])
    );
    assert!(emu.captures("ORD-1001").is_empty());
}

#[tokio::test]
async fn amount_as_a_string_is_refused() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"s-1","amount":"120.00"}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        validation_error(&[
            "amount must not be less than 0",
            "amount must be a number conforming to the specified constraints"
        ])
    );
}

#[tokio::test]
async fn negative_amount_is_refused() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"n-1","amount":-1}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json, validation_error(&["amount must not be less than 0"]));
}

#[tokio::test]
async fn malformed_json_is_refused() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"m-1","amount":}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["statusCode"], 400);
    assert_eq!(r.json["error"], "Bad Request");
    let messages = r.json["message"].as_array().expect("a list of messages");
    assert_eq!(messages.len(), 1);
    assert!(messages[0].as_str().unwrap().starts_with("Body must be valid JSON"), "{}", r.text);
    assert!(emu.captures("ORD-1001").is_empty());

    // Body parsing is Express middleware: it runs before the auth guard, so no token still gives 400.
    let json_only = [("Content-Type", "application/json")];
    let r = send(emu.addr(), "POST", "/orders/ORD-1001/capture", &json_only, "{oops").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "Bad Request");
}

#[tokio::test]
async fn missing_capture_reference_is_refused() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1001", r#"{"amount":120}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        validation_error(&["captureReference should not be empty", "captureReference must be a string"])
    );

    // Without a JSON content type the body is ignored, as Express does: both required fields are missing.
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "text/plain")];
    let body = r#"{"captureReference":"x","amount":120}"#;
    let r = send(emu.addr(), "POST", "/orders/ORD-1001/capture", &headers, body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        validation_error(&[
            "captureReference should not be empty",
            "captureReference must be a string",
            "amount must not be less than 0",
            "amount must be a number conforming to the specified constraints"
        ])
    );
}

#[tokio::test]
async fn incomplete_shipping_info_names_the_missing_field() {
    let emu = demo().await;
    let r = capture(
        &emu,
        "ORD-1001",
        r#"{"captureReference":"s-1","amount":120,"shippingInfo":{"shippingCompany":"UPS","shippingMethod":"Ground"}}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json, validation_error(&["shippingInfo.trackingNumber must be a string"]));
    assert!(emu.captures("ORD-1001").is_empty());

    let r = capture(
        &emu,
        "ORD-1001",
        r#"{"captureReference":"s-2","amount":120,
            "shippingInfo":{"shippingCompany":"UPS","shippingMethod":"Ground","trackingNumber":"1Z999"}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let books = emu.captures("ORD-1001");
    assert_eq!(
        books[0].shipping_info,
        Some(json!({"shippingCompany":"UPS","shippingMethod":"Ground","trackingNumber":"1Z999"}))
    );
}

#[tokio::test]
async fn duplicate_capture_reference_is_refused_and_not_recorded() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1003", r#"{"captureReference":"dup","amount":100}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = capture(&emu, "ORD-1003", r#"{"captureReference":"dup","amount":100}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json, json!({"statusCode":400,"message":"captureReference dup has already been used"}));
    assert_eq!(emu.captures("ORD-1003").len(), 1);

    // Unique per merchant: not reusable on another order either.
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"dup","amount":120}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["message"], "captureReference dup has already been used");
    assert!(emu.captures("ORD-1001").is_empty());
}

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    let emu = demo().await;
    let body = r#"{"captureReference":"a-1","amount":120}"#;
    let unauthorized = json!({"statusCode":401,"message":"Unauthorized"});

    let json_only = [("Content-Type", "application/json")];
    let r = send(emu.addr(), "POST", "/orders/ORD-1001/capture", &json_only, body).await;
    assert_eq!((r.status, &r.json), (401, &unauthorized));

    let wrong = [("Authorization", "Bearer not-a-token"), ("Content-Type", "application/json")];
    let r = send(emu.addr(), "POST", "/orders/ORD-1001/capture", &wrong, body).await;
    assert_eq!((r.status, &r.json), (401, &unauthorized));

    let no_scheme = [("Authorization", TOKEN), ("Content-Type", "application/json")];
    let r = send(emu.addr(), "POST", "/orders/ORD-1001/capture", &no_scheme, body).await;
    assert_eq!((r.status, &r.json), (401, &unauthorized));

    // The guard runs before validation: an invalid body without a token is still 401.
    let r = send(emu.addr(), "POST", "/orders/ORD-1001/capture", &json_only, "{}").await;
    assert_eq!((r.status, &r.json), (401, &unauthorized));

    assert!(emu.captures("ORD-1001").is_empty());
}

#[tokio::test]
async fn unknown_order_is_404() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-9999", r#"{"captureReference":"u-1","amount":1}"#).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json, json!({"statusCode":404,"message":"Order ORD-9999 not found"}));
}

#[tokio::test]
async fn other_routes_are_404_cannot() {
    let emu = demo().await;
    let r = send(emu.addr(), "GET", "/orders/ORD-1001/capture", &[], "").await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json, json!({"statusCode":404,"message":"Cannot GET /orders/ORD-1001/capture"}));

    let r = send(emu.addr(), "POST", "/orders/ORD-1001/refund", &[], "{}").await;
    assert_eq!(r.json, json!({"statusCode":404,"message":"Cannot POST /orders/ORD-1001/refund"}));
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn reset_restores_the_starting_state() {
    let emu = demo().await;
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"r-1","amount":120}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    emu.add_order(OpttyOrder::new("ORD-EXTRA", "USD", dec("5"), Decimal::ZERO, "zip"));
    assert!(emu.order("ORD-EXTRA").is_some());

    let r = send(emu.addr(), "POST", "/_sandbox/reset", &[], "").await;
    assert_eq!(r.status, 204);
    assert!(r.text.is_empty());
    assert!(emu.captures("ORD-1001").is_empty());
    let r = send(emu.addr(), "GET", "/_sandbox/orders/ORD-EXTRA", &[], "").await;
    assert_eq!((r.status, r.json), (404, json!({"statusCode":404,"message":"Order ORD-EXTRA not found"})));

    // The same reference is usable again and ids restart at 1.
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"r-1","amount":120}"#).await;
    assert_eq!(r.json, success("r-1", "cap_ORD-1001_1", "120.00"));

    // The Rust handle resets too.
    emu.reset();
    assert!(emu.captures("ORD-1001").is_empty());
}

#[tokio::test]
async fn control_api_adds_orders_and_shows_the_books() {
    let emu = demo().await;
    let body = r#"{"orderReference":"ORD-2001","currency":"eur","amount":"100.00","surcharge":1.5,
                   "paymentMethod":"laybuy"}"#;
    let r = send(emu.addr(), "POST", "/_sandbox/orders", &[("Content-Type", "application/json")], body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let fresh = json!({"orderReference":"ORD-2001","currency":"EUR","amount":"100.00","surcharge":"1.50",
        "paymentMethod":"laybuy","captured":"0.00","remaining":"101.50","captures":[]});
    assert_eq!(r.json, fresh);
    assert_eq!(
        emu.order("ORD-2001"),
        Some(OpttyOrder::new("ORD-2001", "EUR", dec("100.00"), dec("1.50"), "laybuy"))
    );

    let r =
        capture(&emu, "ORD-2001", r#"{"captureReference":"e-1","amount":101.5,"description":"all"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(r#""capturedAmount":101.50"#), "{}", r.text);

    let r = send(emu.addr(), "GET", "/_sandbox/orders/ORD-2001", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"orderReference":"ORD-2001","currency":"EUR","amount":"100.00","surcharge":"1.50",
            "paymentMethod":"laybuy","captured":"101.50","remaining":"0.00","captures":[
                {"captureReference":"e-1","captureId":"cap_ORD-2001_1","amount":"101.50",
                 "description":"all","shippingInfo":null}]})
    );
    assert_eq!(emu.captures("ORD-2001")[0].amount, dec("101.50"));

    // Replacing the order discards its captures.
    let r = send(emu.addr(), "POST", "/_sandbox/orders", &[], body).await;
    assert_eq!((r.status, r.json), (201, fresh));

    // Bad orders are refused with the reasons.
    let bad = r#"{"orderReference":"ORD-2002","currency":"USD","amount":"1.001","paymentMethod":"afterpay"}"#;
    let r = send(emu.addr(), "POST", "/_sandbox/orders", &[], bad).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"statusCode":400,"message":[
            "amount must be a non-negative decimal with at most 2 decimal places, as a string or a number"]})
    );
    assert_eq!(emu.order("ORD-2002"), None);
}

#[tokio::test]
async fn two_emulators_are_independent_and_shutdown_closes_the_port() {
    let one = demo().await;
    let two = demo().await;
    assert_ne!(one.addr(), two.addr());
    let r = capture(&one, "ORD-1001", r#"{"captureReference":"i-1","amount":120}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(two.captures("ORD-1001").is_empty());

    let addr = one.addr();
    one.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the port should be closed after shutdown");

    let addr = two.addr();
    drop(two);
    tokio::task::yield_now().await;
    let mut closed = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(closed, "dropping the handle should stop the server");
}

#[tokio::test]
async fn start_on_a_given_address() {
    let emu = OpttyEmulator::start_on("127.0.0.1:0".parse().unwrap(), OpttyConfig::default()).await.unwrap();
    assert_eq!(emu.base_url(), format!("http://{}", emu.addr()));
    // No tokens configured: every capture is unauthorized.
    let r = capture(&emu, "ORD-1001", r#"{"captureReference":"x","amount":1}"#).await;
    assert_eq!(r.status, 401);
}
