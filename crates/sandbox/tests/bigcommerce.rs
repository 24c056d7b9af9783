//! The BigCommerce emulator over real HTTP on loopback, with a tiny HTTP/1.1 client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use capture_sandbox::bigcommerce::{BigCommerceConfig, BigCommerceEmulator, BigCommerceOrder};
use capture_sandbox::client::{self, Reply};
use capture_sandbox::faults::Fault;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const TOKEN: &str = "sandbox-bigcommerce-token";
const TYPE: &str = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes";

/// Sends one request and returns every byte the server sent.
async fn send_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    client::send_raw(addr, method, path, headers, body).await.expect("exchange")
}

/// Sends one request through the shared test client.
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    client::send(addr, method, path, headers, body).await.expect("exchange")
}

fn capture_path(order: &str) -> String {
    format!("/stores/abc123/v3/orders/{order}/payment_actions/capture")
}

fn transactions_path(order: &str) -> String {
    format!("/stores/abc123/v3/orders/{order}/transactions")
}

const JSON_HEADERS: [(&str, &str); 3] =
    [("X-Auth-Token", TOKEN), ("Accept", "application/json"), ("Content-Type", "application/json")];

/// The documented capture: `POST ... {}` with the demo token.
async fn capture(emu: &BigCommerceEmulator, order: &str) -> Reply {
    send(emu.addr(), "POST", &capture_path(order), &JSON_HEADERS, "{}").await
}

async fn read_transactions(emu: &BigCommerceEmulator, order: &str) -> Reply {
    send(
        emu.addr(),
        "GET",
        &transactions_path(order),
        &[("X-Auth-Token", TOKEN), ("Accept", "application/json")],
        "",
    )
    .await
}

async fn start(config: BigCommerceConfig) -> BigCommerceEmulator {
    BigCommerceEmulator::start(config).await.expect("start the emulator")
}

async fn demo() -> BigCommerceEmulator {
    start(BigCommerceConfig::demo()).await
}

fn error_body(status: u16, title: &str) -> Value {
    json!({"status": status, "title": title, "type": TYPE})
}

/// The events of the order's transactions as `(event, status)`.
fn events(emu: &BigCommerceEmulator, order: u64) -> Vec<(String, String)> {
    emu.transactions(order).into_iter().map(|t| (t.event, t.status)).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

/// Every test sits in this module so that `cargo test -p capture-sandbox bigcommerce` selects them.
mod bigcommerce {
    use super::*;

    #[tokio::test]
    async fn a_capture_answers_201_empty_and_goes_pending() {
        let emu = demo().await;
        assert!(emu.base_url().starts_with("http://127.0.0.1:"));
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));

        let r = capture(&emu, "100").await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.text, "{}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(emu.payment_status(100).as_deref(), Some("capture pending"));
        assert_eq!(events(&emu, 100), pairs(&[("authorization", "ok"), ("pending", "ok")]));
        let pending = &emu.transactions(100)[1];
        assert_eq!(pending.amount, Decimal::new(12000, 2));
        assert_eq!(pending.reference_transaction_id, Some(1));
        // Nothing else moved.
        assert_eq!(emu.payment_status(101).as_deref(), Some("authorized"));
        emu.shutdown().await;
    }

    #[tokio::test]
    async fn the_first_transactions_read_settles_the_capture() {
        let emu = demo().await;
        assert_eq!(capture(&emu, "100").await.status, 201);
        let r = read_transactions(&emu, "100").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(emu.payment_status(100).as_deref(), Some("captured"));
        let data = r.json["data"].as_array().expect("a data list");
        let listed: Vec<(&str, &str)> = data
            .iter()
            .map(|t| (t["event"].as_str().unwrap_or(""), t["status"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(listed, [("authorization", "ok"), ("pending", "ok"), ("capture", "ok")]);
        assert_eq!(data[2]["id"], 8);
        assert_eq!(data[2]["order_id"], 100);
        assert_eq!(data[2]["reference_transaction_id"], 1);
        assert_eq!(data[2]["currency"], "USD");
        // The amount is the decimal's text as a JSON number, never a float's rendering.
        assert!(r.text.contains(r#""amount":120.00,"#), "{}", r.text);
        assert_eq!(
            r.json["meta"]["pagination"],
            json!({"total":3,"count":3,"per_page":50,"current_page":1,"total_pages":1,
                   "links":{"current":"?page=1&limit=50"}})
        );
        // Settled once: a later read adds nothing, a second capture is refused.
        assert_eq!(read_transactions(&emu, "100").await.json["data"].as_array().map(Vec::len), Some(3));
        assert_eq!(capture(&emu, "100").await.status, 422);
    }

    #[tokio::test]
    async fn settlement_waits_for_the_configured_number_of_reads() {
        let emu = start(BigCommerceConfig { settle_after_reads: 3, ..BigCommerceConfig::demo() }).await;
        assert_eq!(capture(&emu, "101").await.status, 201);
        for _ in 0..2 {
            let r = read_transactions(&emu, "101").await;
            assert_eq!(r.json["data"].as_array().map(Vec::len), Some(2), "{}", r.text);
            assert_eq!(emu.payment_status(101).as_deref(), Some("capture pending"));
        }
        let r = read_transactions(&emu, "101").await;
        assert_eq!(r.json["data"][2]["event"], "capture");
        assert_eq!(emu.payment_status(101).as_deref(), Some("captured"));
    }

    #[tokio::test]
    async fn zero_reads_settles_at_once() {
        let emu = start(BigCommerceConfig { settle_after_reads: 0, ..BigCommerceConfig::demo() }).await;
        let r = capture(&emu, "100").await;
        assert_eq!((r.status, r.text.as_str()), (201, "{}"));
        assert_eq!(emu.payment_status(100).as_deref(), Some("captured"));
        assert_eq!(
            events(&emu, 100),
            pairs(&[("authorization", "ok"), ("pending", "ok"), ("capture", "ok")])
        );
    }

    #[tokio::test]
    async fn jpy_and_kwd_amounts_keep_their_places() {
        let emu = demo().await;
        for (order, amount) in [("102", r#""amount":15000,"#), ("104", r#""amount":12.500,"#)] {
            assert_eq!(capture(&emu, order).await.status, 201);
            let r = read_transactions(&emu, order).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.text.matches(amount).count(), 3, "{}", r.text);
        }
        assert_eq!(emu.transactions(104)[2].amount.to_string(), "12.500");
        assert_eq!(emu.transactions(104)[2].currency, "KWD");
    }

    #[tokio::test]
    async fn a_declined_settlement_records_a_capture_error() {
        let emu = demo().await;
        emu.decline_on_settle(101);
        assert_eq!(capture(&emu, "101").await.status, 201);
        let r = read_transactions(&emu, "101").await;
        assert_eq!(r.json["data"][2]["event"], "capture");
        assert_eq!(r.json["data"][2]["status"], "error");
        assert_eq!(emu.payment_status(101).as_deref(), Some("declined"));
    }

    #[tokio::test]
    async fn a_missing_or_wrong_token_is_401() {
        let emu = demo().await;
        let expected =
            error_body(401, "Unauthorized: the X-Auth-Token is missing or not valid for this store");
        let r = send(emu.addr(), "POST", &capture_path("100"), &[("Content-Type", "application/json")], "{}")
            .await;
        assert_eq!((r.status, &r.json), (401, &expected));
        let r = send(emu.addr(), "POST", &capture_path("100"), &[("X-Auth-Token", "wrong")], "{}").await;
        assert_eq!((r.status, &r.json), (401, &expected));
        let r = send(emu.addr(), "GET", &transactions_path("100"), &[("X-Auth-Token", "wrong")], "").await;
        assert_eq!((r.status, &r.json), (401, &expected));
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));
    }

    #[tokio::test]
    async fn a_wrong_store_or_unknown_order_is_404() {
        let emu = demo().await;
        let r = send(
            emu.addr(),
            "POST",
            "/stores/zzz999/v3/orders/100/payment_actions/capture",
            &JSON_HEADERS,
            "{}",
        )
        .await;
        assert_eq!((r.status, r.json), (404, error_body(404, "Store zzz999 not found")));
        for order in ["999", "ORD-100", "0100", "-1"] {
            let r = capture(&emu, order).await;
            assert_eq!(
                (r.status, &r.json),
                (404, &error_body(404, &format!("Order {order} not found"))),
                "{order}"
            );
            let r = read_transactions(&emu, order).await;
            assert_eq!(r.status, 404, "{order}");
        }
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));
    }

    #[tokio::test]
    async fn an_order_that_is_not_authorized_is_422_with_errors() {
        let emu = demo().await;
        let r = capture(&emu, "103").await;
        assert_eq!(r.status, 422, "{}", r.text);
        assert_eq!(
            r.json,
            json!({
                "status": 422,
                "title": "The order's payment cannot be captured in its current state",
                "type": TYPE,
                "errors": {"payment_status": "payment_status is 'captured'; only 'authorized' payments can be captured"}
            })
        );
        assert_eq!(events(&emu, 103), pairs(&[("authorization", "ok"), ("capture", "ok")]));
        // A second capture while the first is pending is refused too: nothing is captured twice.
        assert_eq!(capture(&emu, "100").await.status, 201);
        let r = capture(&emu, "100").await;
        assert_eq!(r.status, 422);
        assert_eq!(
            r.json["errors"]["payment_status"],
            "payment_status is 'capture pending'; only 'authorized' payments can be captured"
        );
        assert_eq!(emu.transactions(100).len(), 2);
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_json_object_is_400_and_an_empty_one_is_fine() {
        let emu = demo().await;
        for body in ["{", "[]", "12", "\"x\""] {
            let r = send(emu.addr(), "POST", &capture_path("100"), &JSON_HEADERS, body).await;
            assert_eq!(
                (r.status, &r.json),
                (400, &error_body(400, "The request body must be a JSON object")),
                "{body}"
            );
        }
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));
        let r = send(emu.addr(), "POST", &capture_path("100"), &[("X-Auth-Token", TOKEN)], "").await;
        assert_eq!(r.status, 201);
    }

    #[tokio::test]
    async fn an_order_without_transactions_lists_204() {
        let config = BigCommerceConfig {
            orders: vec![BigCommerceOrder::new(200, "EUR", Decimal::new(995, 2), "pending")],
            ..BigCommerceConfig::demo()
        };
        let emu = start(config).await;
        let r = read_transactions(&emu, "200").await;
        assert_eq!((r.status, r.text.as_str()), (204, ""));
        let r = capture(&emu, "200").await;
        assert_eq!(r.status, 422);
        assert!(emu.transactions(200).is_empty());
    }

    #[tokio::test]
    async fn a_status_fault_answers_before_anything_is_applied() {
        let emu = demo().await;
        emu.faults().push([Fault::status(503), Fault::status(400)]);
        let r = capture(&emu, "100").await;
        assert_eq!((r.status, r.json), (503, error_body(503, "Service Unavailable")));
        // Even an unauthenticated request sees the gateway's answer.
        let r = send(emu.addr(), "POST", &capture_path("100"), &[], "{}").await;
        assert_eq!((r.status, r.json), (400, error_body(400, "Bad Request")));
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));
        assert_eq!(capture(&emu, "100").await.status, 201, "the queue is empty again");
    }

    #[tokio::test]
    async fn an_applied_status_fault_hides_a_capture_that_happened() {
        let emu = demo().await;
        emu.faults().push([Fault::status_after_apply(504)]);
        let r = capture(&emu, "100").await;
        assert_eq!((r.status, r.json), (504, error_body(504, "Gateway Timeout")));
        assert_eq!(emu.payment_status(100).as_deref(), Some("capture pending"));
        // Transactions reads take no fault.
        emu.faults().push([Fault::status(502)]);
        assert_eq!(read_transactions(&emu, "100").await.status, 200);
        assert_eq!(capture(&emu, "101").await.status, 502);
    }

    #[tokio::test]
    async fn rate_limited_answers_429_with_the_reset_headers() {
        let emu = demo().await;
        emu.faults().push([Fault::rate_limited(1500)]);
        let r = capture(&emu, "100").await;
        assert_eq!((r.status, &r.json), (429, &error_body(429, "Too Many Requests")));
        assert_eq!(r.header("x-rate-limit-requests-left"), Some("0"));
        assert_eq!(r.header("x-rate-limit-time-reset-ms"), Some("1500"));
        assert_eq!(r.header("x-rate-limit-requests-quota"), Some("150"));
        assert_eq!(r.header("x-rate-limit-time-window-ms"), Some("30000"));
        assert_eq!(r.header("x-retry-after"), Some("2"));
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));
    }

    #[tokio::test]
    async fn drop_after_apply_cuts_the_connection_after_the_capture() {
        let emu = demo().await;
        emu.faults().push([Fault::drop_after_apply()]);
        let raw = send_raw(emu.addr(), "POST", &capture_path("104"), &JSON_HEADERS, "{}").await;
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.contains("\r\n0\r\n\r\n") && !raw.contains("{}"), "a complete answer arrived: {raw}");
        assert_eq!(emu.payment_status(104).as_deref(), Some("capture pending"));
    }

    #[tokio::test]
    async fn delay_applies_then_answers_late() {
        let emu = demo().await;
        emu.faults().push([Fault::delay(300)]);
        let started = Instant::now();
        let r = capture(&emu, "100").await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!((r.status, r.text.as_str()), (201, "{}"));
        assert_eq!(emu.payment_status(100).as_deref(), Some("capture pending"));
    }

    #[tokio::test]
    async fn the_control_api_queues_faults_shows_orders_and_resets() {
        let emu = demo().await;
        let r =
            send(emu.addr(), "POST", "/_sandbox/faults", &[], r#"[{"kind":"status","status":502}]"#).await;
        assert_eq!(r.status, 204);
        assert_eq!(capture(&emu, "100").await.status, 502);
        let r =
            send(emu.addr(), "POST", "/_sandbox/faults", &[], r#"[{"kind":"status","status":500}]"#).await;
        assert_eq!(r.status, 204);
        assert_eq!(send(emu.addr(), "DELETE", "/_sandbox/faults", &[], "").await.status, 204);
        assert_eq!(capture(&emu, "100").await.status, 201);

        let r = send(emu.addr(), "GET", "/_sandbox/orders/100", &[], "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json["id"], 100);
        assert_eq!(r.json["currency"], "USD");
        assert_eq!(r.json["total"], "120.00");
        assert_eq!(r.json["payment_status"], "capture pending");
        assert_eq!(r.json["transaction_reads"], 0);
        assert_eq!(r.json["transactions"][1]["event"], "pending");
        assert_eq!(r.json["transactions"][1]["gateway_transaction_id"], "sandbox-7");
        assert_eq!(
            emu.payment_status(100).as_deref(),
            Some("capture pending"),
            "the control API does not settle"
        );
        let r = send(emu.addr(), "GET", "/_sandbox/orders/42", &[], "").await;
        assert_eq!((r.status, r.json), (404, error_body(404, "Order 42 not found")));

        emu.faults().push([Fault::status(503)]);
        emu.decline_on_settle(101);
        assert_eq!(send(emu.addr(), "POST", "/_sandbox/reset", &[], "").await.status, 204);
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));
        assert_eq!(emu.transactions(100).len(), 1);
        assert_eq!(capture(&emu, "101").await.status, 201, "reset clears the faults");
        read_transactions(&emu, "101").await;
        assert_eq!(emu.payment_status(101).as_deref(), Some("captured"), "reset clears the declines");

        emu.reset();
        assert_eq!(emu.payment_status(101).as_deref(), Some("authorized"));
    }

    #[tokio::test]
    async fn other_routes_and_methods_are_refused() {
        let emu = demo().await;
        let r = send(emu.addr(), "GET", "/stores/abc123/v3/orders", &[("X-Auth-Token", TOKEN)], "").await;
        assert_eq!((r.status, r.json), (404, error_body(404, "Route not found")));
        let r = send(emu.addr(), "GET", &capture_path("100"), &[("X-Auth-Token", TOKEN)], "").await;
        assert_eq!((r.status, r.json), (405, error_body(405, "Method Not Allowed")));
        let r = send(emu.addr(), "POST", &transactions_path("100"), &JSON_HEADERS, "{}").await;
        assert_eq!(r.status, 405);
        assert_eq!(emu.payment_status(100).as_deref(), Some("authorized"));
    }

    #[tokio::test]
    async fn shutdown_closes_the_port() {
        let emu = demo().await;
        let addr = emu.addr();
        emu.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
