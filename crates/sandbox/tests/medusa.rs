//! The Medusa emulator over real HTTP on loopback, with a tiny HTTP/1.1 client.

/// Inside a module so that `cargo test -p capture-sandbox medusa` selects every test here.
mod medusa {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use capture_sandbox::client::{self, Reply};
    use capture_sandbox::faults::Fault;
    use capture_sandbox::medusa::{
        CANCELED_AT, CREATED_AT, FIRST_CAPTURE_AT, MedusaConfig, MedusaEmulator, MedusaOrder, MedusaPayment,
    };
    use serde_json::{Value, json};

    const TOKEN: &str = "sandbox-medusa-token";

    /// Sends one request (no body) through the shared test client.
    async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        client::send(addr, method, path, headers, "").await.expect("exchange")
    }

    async fn post(emu: &MedusaEmulator, path: &str) -> Reply {
        send(emu.addr(), "POST", path, &[("x-medusa-access-token", TOKEN)]).await
    }

    async fn get(emu: &MedusaEmulator, path: &str) -> Reply {
        send(emu.addr(), "GET", path, &[("x-medusa-access-token", TOKEN)]).await
    }

    async fn capture_payment(emu: &MedusaEmulator, id: &str) -> Reply {
        post(emu, &format!("/admin/payments/{id}/capture")).await
    }

    async fn capture_order(emu: &MedusaEmulator, id: &str) -> Reply {
        post(emu, &format!("/admin/orders/{id}/capture")).await
    }

    async fn demo() -> MedusaEmulator {
        MedusaEmulator::start(MedusaConfig::demo()).await.expect("start the emulator")
    }

    /// The payment object Medusa shows, with every required field.
    fn payment(id: &str, order: &str, amount: i64, currency: &str, captured_at: Option<&str>) -> Value {
        json!({
            "id": id, "swap_id": null, "cart_id": null, "order_id": order, "amount": amount,
            "amount_refunded": 0, "provider_id": "manual", "captured_at": captured_at, "canceled_at": null,
            "created_at": CREATED_AT, "updated_at": captured_at.unwrap_or(CREATED_AT), "currency_code": currency,
            "data": {}, "idempotency_key": null, "metadata": null,
        })
    }

    fn captured_at(emu: &MedusaEmulator, id: &str) -> Option<String> {
        emu.payment(id).expect("known payment").captured_at
    }

    #[tokio::test]
    async fn capturing_a_payment_answers_the_whole_payment_in_minor_units() {
        let emu = demo().await;
        assert!(emu.base_url().starts_with("http://127.0.0.1:"));
        assert_eq!(captured_at(&emu, "pay_01"), None);
        let r = capture_payment(&emu, "pay_01").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(
            r.json,
            json!({"payment": payment("pay_01", "order_01", 12000, "usd", Some(FIRST_CAPTURE_AT))})
        );
        assert!(r.text.contains(r#""amount":12000,"#), "an integer on the wire: {}", r.text);
        assert_eq!(captured_at(&emu, "pay_01").as_deref(), Some(FIRST_CAPTURE_AT));
    }

    #[tokio::test]
    async fn bearer_auth_works_too() {
        let emu = demo().await;
        let auth = format!("Bearer {TOKEN}");
        let r = send(emu.addr(), "POST", "/admin/payments/pay_01/capture", &[("Authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    #[tokio::test]
    async fn jpy_and_kwd_amounts_are_integers_in_their_minor_unit() {
        let emu = demo().await;
        let r = capture_payment(&emu, "pay_04").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["payment"]["amount"], json!(15000));
        assert_eq!(r.json["payment"]["currency_code"], "jpy");
        let r = capture_payment(&emu, "pay_06").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["payment"]["amount"], json!(12500));
        assert_eq!(r.json["payment"]["currency_code"], "kwd");
        // The second capture is one second later on the emulator's clock.
        assert_eq!(r.json["payment"]["captured_at"], "2026-11-21T09:00:01.000Z");
        assert_eq!(emu.payment("pay_06").map(|p| p.amount), Some(12500));
    }

    #[tokio::test]
    async fn capturing_a_captured_payment_answers_it_unchanged() {
        let emu = demo().await;
        let r = capture_payment(&emu, "pay_07").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.json,
            json!({"payment": payment("pay_07", "order_07", 4000, "usd", Some("2026-11-20T14:00:00.000Z"))})
        );

        let first = capture_payment(&emu, "pay_01").await;
        let second = capture_payment(&emu, "pay_01").await;
        assert_eq!((first.status, second.status), (200, 200));
        assert_eq!(first.text, second.text, "the second answer is the payment unchanged");
        // No capture happened the second time: the next one takes the next second.
        let r = capture_payment(&emu, "pay_04").await;
        assert_eq!(r.json["payment"]["captured_at"], "2026-11-21T09:00:01.000Z");
    }

    #[tokio::test]
    async fn the_order_route_captures_every_payment() {
        let emu = demo().await;
        let r = capture_order(&emu, "order_02").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.json,
            json!({"order": {
                "id": "order_02", "status": "pending", "payment_status": "captured", "currency_code": "usd",
                "payments": [
                    payment("pay_02a", "order_02", 5000, "usd", Some(FIRST_CAPTURE_AT)),
                    payment("pay_02b", "order_02", 2500, "usd", Some("2026-11-21T09:00:01.000Z")),
                ],
            }})
        );
        assert!(captured_at(&emu, "pay_02a").is_some() && captured_at(&emu, "pay_02b").is_some());
        // Again: nothing left to capture, still 200 captured, timestamps unchanged.
        let again = capture_order(&emu, "order_02").await;
        assert_eq!(again.text, r.text);
    }

    #[tokio::test]
    async fn the_order_route_captures_what_is_left() {
        let emu = demo().await;
        assert_eq!(capture_payment(&emu, "pay_02b").await.status, 200);
        let shown = get(&emu, "/admin/orders/order_02").await;
        assert_eq!(
            shown.json["order"]["payment_status"], "awaiting",
            "the payment route leaves the order as is"
        );
        let r = capture_order(&emu, "order_02").await;
        assert_eq!(r.json["order"]["payment_status"], "captured");
        assert_eq!(r.json["order"]["payments"][0]["captured_at"], "2026-11-21T09:00:01.000Z");
        assert_eq!(r.json["order"]["payments"][1]["captured_at"], FIRST_CAPTURE_AT);
    }

    #[tokio::test]
    async fn requires_action_answers_200_and_captures_nothing() {
        let emu = demo().await;
        let r = capture_order(&emu, "order_05").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["order"]["payment_status"], "requires_action");
        assert_eq!(r.json["order"]["payments"][0]["captured_at"], Value::Null);
        assert_eq!(r.json["order"]["payments"][1]["captured_at"], Value::Null);
        assert_eq!(captured_at(&emu, "pay_05"), None);
        assert_eq!(captured_at(&emu, "pay_05b"), None);
        let shown = get(&emu, "/admin/orders/order_05").await;
        assert_eq!(shown.json["order"]["payment_status"], "requires_action");

        // The payment route: what PaymentService.capture throws when the provider fails.
        let r = capture_payment(&emu, "pay_05").await;
        assert_eq!(r.status, 500, "{}", r.text);
        assert_eq!(
            r.json,
            json!({"type": "unexpected_state", "message": "Failed to capture Payment pay_05"})
        );
        assert_eq!(captured_at(&emu, "pay_05"), None);
    }

    #[tokio::test]
    async fn canceled_payments_and_orders_are_400_not_allowed() {
        let emu = demo().await;
        let r = capture_payment(&emu, "pay_03").await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.json,
            json!({"type": "not_allowed", "message": "Payment pay_03 is canceled and cannot be captured"})
        );
        let r = capture_order(&emu, "order_03").await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.json,
            json!({"type": "not_allowed", "message": "A canceled order cannot capture payment"})
        );
        let shown = get(&emu, "/admin/payments/pay_03").await;
        assert_eq!(shown.json["payment"]["canceled_at"], CANCELED_AT);
        assert_eq!(shown.json["payment"]["captured_at"], Value::Null);
        assert_eq!(get(&emu, "/admin/orders/order_03").await.json["order"]["payment_status"], "canceled");

        // A live payment of a canceled order.
        let mut config = MedusaConfig::demo();
        config.payments.push(MedusaPayment::new("pay_03b", "order_03", 500, "USD"));
        let emu = MedusaEmulator::start(config).await.expect("start");
        let r = capture_payment(&emu, "pay_03b").await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json["message"], "A canceled order cannot capture payment");
        assert_eq!(emu.payment("pay_03b").map(|p| p.currency_code), Some("usd".to_owned()));
    }

    #[tokio::test]
    async fn a_canceled_payment_in_a_live_order_makes_it_require_action() {
        let mut config = MedusaConfig::demo();
        let mut canceled = MedusaPayment::new("pay_08b", "order_08", 100, "usd");
        canceled.canceled = true;
        config.payments.extend([MedusaPayment::new("pay_08a", "order_08", 900, "usd"), canceled]);
        config.orders.push(MedusaOrder::new("order_08", &["pay_08a", "pay_08b"]));
        let emu = MedusaEmulator::start(config).await.expect("start");
        let r = capture_order(&emu, "order_08").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["order"]["payment_status"], "requires_action");
        assert_eq!(
            captured_at(&emu, "pay_08a").as_deref(),
            Some(FIRST_CAPTURE_AT),
            "the other payment is captured"
        );
        assert_eq!(captured_at(&emu, "pay_08b"), None);
        assert_eq!(emu.order("order_08").map(|o| o.payment_ids.len()), Some(2));
    }

    #[tokio::test]
    async fn unknown_payments_and_orders_are_404() {
        let emu = demo().await;
        let r = capture_payment(&emu, "pay_x").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json, json!({"type": "not_found", "message": "Payment with id pay_x was not found"}));
        let r = capture_order(&emu, "order_x").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json, json!({"type": "not_found", "message": "Order with id order_x was not found"}));
        assert_eq!(get(&emu, "/admin/payments/pay_x").await.status, 404);
        assert_eq!(
            get(&emu, "/admin/orders/order_x").await.json["message"],
            "Order with id order_x was not found"
        );
    }

    #[tokio::test]
    async fn a_missing_or_wrong_token_is_401_plain_text_and_takes_no_fault() {
        let emu = demo().await;
        emu.faults().push([Fault::status(500)]);
        for headers in [
            &[][..],
            &[("x-medusa-access-token", "wrong")][..],
            &[("Authorization", "Bearer wrong")][..],
            &[("Authorization", TOKEN)][..],
        ] {
            let r = send(emu.addr(), "POST", "/admin/payments/pay_01/capture", headers).await;
            assert_eq!(r.status, 401, "{headers:?}");
            assert_eq!(r.text, "Unauthorized");
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        }
        assert_eq!(send(emu.addr(), "GET", "/admin/payments/pay_01", &[]).await.status, 401);
        assert_eq!(send(emu.addr(), "GET", "/admin/orders/order_01", &[]).await.status, 401);
        assert_eq!(captured_at(&emu, "pay_01"), None);
        // The queued fault is still there for the first authenticated capture.
        assert_eq!(capture_payment(&emu, "pay_01").await.status, 500);
    }

    #[tokio::test]
    async fn status_faults_answer_medusa_bodies_without_capturing() {
        let emu = demo().await;
        let conflict = "The request conflicted with another request. You may retry the request with the provided Idempotency-Key.";
        let cases = [
            (400, json!({"type": "invalid_data", "message": "Payment pay_01 could not be captured"})),
            (404, json!({"type": "not_found", "message": "Payment with id pay_01 was not found"})),
            (409, json!({"type": "invalid_state_error", "message": conflict})),
            (
                422,
                json!({"type": "duplicate_error", "code": "invalid_request_error", "message": "A capture of Payment pay_01 already exists"}),
            ),
            (500, json!({"type": "unexpected_state", "message": "Failed to capture Payment pay_01"})),
            (
                418,
                json!({"type": "unknown_error", "code": "unknown_error", "message": "An unknown error occurred."}),
            ),
        ];
        for (status, body) in cases {
            emu.faults().push([Fault::status(status)]);
            let r = capture_payment(&emu, "pay_01").await;
            assert_eq!(r.status, status, "{}", r.text);
            assert_eq!(r.json, body, "status {status}");
        }
        for (status, text) in [
            (401, "Unauthorized"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
        ] {
            emu.faults().push([Fault::status(status)]);
            let r = capture_payment(&emu, "pay_01").await;
            assert_eq!((r.status, r.text.as_str()), (status, text));
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        }
        assert_eq!(captured_at(&emu, "pay_01"), None, "no fault applied the capture");
        // The queue is empty again: the next capture goes through.
        assert_eq!(capture_payment(&emu, "pay_01").await.status, 200);
    }

    #[tokio::test]
    async fn order_route_faults_name_the_first_payment_left() {
        let emu = demo().await;
        assert_eq!(capture_payment(&emu, "pay_02a").await.status, 200);
        emu.faults().push([Fault::status(500)]);
        let r = capture_order(&emu, "order_02").await;
        assert_eq!(r.status, 500);
        assert_eq!(r.json["message"], "Failed to capture Payment pay_02b");
        assert_eq!(captured_at(&emu, "pay_02b"), None);
    }

    #[tokio::test]
    async fn a_gateway_error_after_apply_captured_the_payment() {
        let emu = demo().await;
        emu.faults().push([Fault::status_after_apply(502)]);
        let r = capture_payment(&emu, "pay_01").await;
        assert_eq!((r.status, r.text.as_str()), (502, "Bad Gateway"));
        assert_eq!(captured_at(&emu, "pay_01").as_deref(), Some(FIRST_CAPTURE_AT));
    }

    #[tokio::test]
    async fn rate_limited_is_429_with_retry_after_seconds() {
        let emu = demo().await;
        emu.faults().push([Fault::rate_limited(1500), Fault::status(429)]);
        let r = capture_payment(&emu, "pay_01").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("2"));
        assert_eq!(r.text, "Too many requests, please try again later.");
        let r = capture_order(&emu, "order_02").await;
        assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
        assert_eq!(captured_at(&emu, "pay_01"), None);
        assert_eq!(captured_at(&emu, "pay_02a"), None);
    }

    #[tokio::test]
    async fn drop_after_apply_cuts_the_connection_but_captures() {
        let emu = demo().await;
        emu.faults().push([Fault::drop_after_apply()]);
        let raw = client::send_raw(
            emu.addr(),
            "POST",
            "/admin/payments/pay_01/capture",
            &[("x-medusa-access-token", TOKEN)],
            "",
        )
        .await
        .unwrap_or_default();
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.contains("\"payment\""), "no answer body should arrive: {raw}");
        assert_eq!(captured_at(&emu, "pay_01").as_deref(), Some(FIRST_CAPTURE_AT));
    }

    #[tokio::test]
    async fn delay_applies_then_answers_late() {
        let emu = demo().await;
        emu.faults().push([Fault::delay(300)]);
        let started = Instant::now();
        let r = capture_order(&emu, "order_02").await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["order"]["payment_status"], "captured");
    }

    #[tokio::test]
    async fn faults_through_the_control_api() {
        let emu = demo().await;
        let body = r#"[{"kind":"status","status":409},{"kind":"status","status":503}]"#;
        let raw = client::send_raw(
            emu.addr(),
            "POST",
            "/_sandbox/faults",
            &[("Content-Type", "application/json")],
            body,
        )
        .await
        .expect("exchange");
        assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 204"));
        assert_eq!(capture_payment(&emu, "pay_01").await.status, 409);
        assert_eq!(send(emu.addr(), "DELETE", "/_sandbox/faults", &[]).await.status, 204);
        assert_eq!(capture_payment(&emu, "pay_01").await.status, 200, "the 503 was cleared");
    }

    #[tokio::test]
    async fn reading_payments_and_orders_back() {
        let emu = demo().await;
        let r = get(&emu, "/admin/payments/pay_01").await;
        assert_eq!(r.json, json!({"payment": payment("pay_01", "order_01", 12000, "usd", None)}));
        let r = get(&emu, "/admin/orders/order_02").await;
        assert_eq!(r.json["order"]["payment_status"], "awaiting");
        assert_eq!(r.json["order"]["payments"].as_array().map(Vec::len), Some(2));
        capture_payment(&emu, "pay_01").await;
        let r = get(&emu, "/admin/payments/pay_01").await;
        assert_eq!(r.json["payment"]["captured_at"], FIRST_CAPTURE_AT);
        assert_eq!(get(&emu, "/admin/orders/order_01").await.json["order"]["payment_status"], "captured");
        // A status read takes no fault.
        emu.faults().push([Fault::status(500)]);
        assert_eq!(get(&emu, "/admin/payments/pay_01").await.status, 200);
        assert_eq!(capture_payment(&emu, "pay_04").await.status, 500);
    }

    #[tokio::test]
    async fn reset_restores_payments_clock_and_faults() {
        let emu = demo().await;
        capture_order(&emu, "order_02").await;
        capture_order(&emu, "order_05").await;
        emu.faults().push([Fault::status(503)]);
        let r = send(emu.addr(), "POST", "/_sandbox/reset", &[]).await;
        assert_eq!(r.status, 204);
        assert_eq!(captured_at(&emu, "pay_02a"), None);
        assert_eq!(get(&emu, "/admin/orders/order_05").await.json["order"]["payment_status"], "awaiting");
        let r = capture_payment(&emu, "pay_01").await;
        assert_eq!(r.status, 200, "the fault was cleared");
        assert_eq!(r.json["payment"]["captured_at"], FIRST_CAPTURE_AT, "the clock restarted");
        emu.reset();
        assert_eq!(captured_at(&emu, "pay_01"), None);
        assert_eq!(captured_at(&emu, "pay_07").as_deref(), Some("2026-11-20T14:00:00.000Z"));
    }

    #[tokio::test]
    async fn the_control_api_shows_payments_and_orders() {
        let emu = demo().await;
        let r = send(emu.addr(), "GET", "/_sandbox/payments/pay_06", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json, payment("pay_06", "order_06", 12500, "kwd", None));
        let r = send(emu.addr(), "GET", "/_sandbox/orders/order_06", &[]).await;
        assert_eq!(r.json["id"], "order_06");
        assert_eq!(send(emu.addr(), "GET", "/_sandbox/payments/nope", &[]).await.status, 404);
    }

    #[tokio::test]
    async fn other_routes_and_methods_are_404_cannot() {
        let emu = demo().await;
        let r =
            send(emu.addr(), "GET", "/admin/payments/pay_01/capture", &[("x-medusa-access-token", TOKEN)])
                .await;
        assert_eq!((r.status, r.text.as_str()), (404, "Cannot GET /admin/payments/pay_01/capture"));
        let r = send(emu.addr(), "POST", "/store/carts", &[]).await;
        assert_eq!((r.status, r.text.as_str()), (404, "Cannot POST /store/carts"));
        assert_eq!(captured_at(&emu, "pay_01"), None);
    }

    #[tokio::test]
    async fn percent_encoded_ids_are_decoded() {
        let mut config = MedusaConfig::demo();
        config.payments.push(MedusaPayment::new("pay 1/2", "order_01", 100, "usd"));
        let emu = MedusaEmulator::start(config).await.expect("start");
        let r = capture_payment(&emu, "pay%201%2F2").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["payment"]["id"], "pay 1/2");
    }

    #[tokio::test]
    async fn shutdown_closes_the_port_and_emulators_are_independent() {
        let one = demo().await;
        let two = MedusaEmulator::start_on("127.0.0.1:0".parse().expect("addr"), MedusaConfig::default())
            .await
            .expect("start");
        assert_ne!(one.addr(), two.addr());
        assert_eq!(capture_payment(&one, "pay_01").await.status, 200);
        assert_eq!(capture_payment(&two, "pay_01").await.status, 401, "no tokens configured");
        let addr = one.addr();
        one.shutdown().await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the port should be closed after shutdown"
        );
        two.shutdown().await;
    }
}
