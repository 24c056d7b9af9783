//! The Wix emulator over real HTTP on loopback, with a tiny HTTP/1.1 client.

mod wix {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use capture_sandbox::client::{self, Reply};
    use capture_sandbox::faults::Fault;
    use capture_sandbox::wix::demo_ids::*;
    use capture_sandbox::wix::{WixConfig, WixEmulator, WixOrder, WixPayment};
    use rust_decimal::Decimal;
    use serde_json::{Value, json};

    const CAPTURE: &str = "/ecom/v1/order-billing/capture-authorized-payments";

    /// Sends one request and returns every byte the server sent, as text.
    async fn send_raw(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> String {
        let raw = client::send_raw(addr, method, path, headers, body).await.expect("exchange");
        String::from_utf8(raw).expect("utf-8 response")
    }

    /// Sends one request through the shared test client.
    async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        client::send(addr, method, path, headers, body).await.expect("exchange")
    }

    /// `POST` the capture route with the demo token.
    async fn capture(emu: &WixEmulator, body: &str) -> Reply {
        let headers = [("Authorization", TOKEN), ("Content-Type", "application/json")];
        send(emu.addr(), "POST", CAPTURE, &headers, body).await
    }

    /// `GET` the order's transactions with the demo token.
    async fn read(emu: &WixEmulator, order: &str) -> Reply {
        send(emu.addr(), "GET", &format!("/ecom/v1/payments/orders/{order}"), &[("Authorization", TOKEN)], "")
            .await
    }

    fn body(order: &str, payments: &[(&str, Option<&str>)]) -> String {
        let payments: Vec<Value> = payments
            .iter()
            .map(|(id, amount)| match amount {
                Some(a) => json!({"paymentId": id, "amount": {"amount": a}}),
                None => json!({"paymentId": id}),
            })
            .collect();
        json!({"orderId": order, "payments": payments}).to_string()
    }

    async fn demo() -> WixEmulator {
        WixEmulator::start(WixConfig::demo()).await.expect("start the emulator")
    }

    fn dec(text: &str) -> Decimal {
        capture_core::parse_decimal(text).unwrap()
    }

    /// The payment's entry in an `orderTransactions` answer.
    fn payment<'a>(reply: &'a Reply, id: &str) -> &'a Value {
        reply.json["orderTransactions"]["payments"]
            .as_array()
            .and_then(|list| list.iter().find(|p| p["id"] == id))
            .unwrap_or_else(|| panic!("payment {id} in {}", reply.text))
    }

    fn captures(reply: &Reply, id: &str) -> Vec<Value> {
        payment(reply, id)["regularPaymentDetails"]["authorizationDetails"]["captures"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn app_error(code: &str, description: &str, data: Value) -> Value {
        json!({"message": description, "details": {"applicationError": {"code": code, "description": description, "data": data}}})
    }

    // ---- success ----

    #[tokio::test]
    async fn wix_full_capture_without_amounts_records_pending_captures() {
        let emu = demo().await;
        assert!(emu.base_url().starts_with("http://127.0.0.1:"));
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None), (USD_PAYMENT_20, None)])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.head.contains("content-type: application/json"), "{}", r.head);
        assert_eq!(r.json["orderTransactions"]["orderId"], USD_ORDER);
        assert_eq!(r.json["orderTransactions"]["refunds"], json!([]));
        assert_eq!(
            captures(&r, USD_PAYMENT_10),
            [json!({"id": "ca000000-0000-4000-8000-000000000001", "status": "PENDING",
                    "amount": {"amount": "10.00", "formattedAmount": "$10.00"},
                    "createdDate": "2026-01-02T09:00:01.000Z"})]
        );
        assert_eq!(
            captures(&r, USD_PAYMENT_20),
            [json!({"id": "ca000000-0000-4000-8000-000000000002", "status": "PENDING",
                    "amount": {"amount": "20.00", "formattedAmount": "$20.00"},
                    "createdDate": "2026-01-02T09:00:02.000Z"})]
        );
        let p = payment(&r, USD_PAYMENT_10);
        assert_eq!(p["regularPaymentDetails"]["status"], "AUTHORIZED");
        assert_eq!(p["amount"], json!({"amount": "10.00", "formattedAmount": "$10.00"}));
        assert_eq!(p["regularPaymentDetails"]["authorizationDetails"]["delayedCapture"], true);

        let books = emu.order(USD_ORDER).expect("order");
        assert_eq!(books.payments[0].captures.len(), 1);
        assert_eq!(books.payments[0].captures[0].amount, dec("10.00"));
        assert_eq!(books.payments[0].captures[0].status, "PENDING");
        assert_eq!(books.payments[1].captures[0].amount, dec("20.00"));
        emu.shutdown().await;
    }

    #[tokio::test]
    async fn wix_partial_captures_then_the_rest_then_already_captured() {
        let emu = demo().await;
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, Some("4.5"))])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            captures(&r, USD_PAYMENT_10)[0]["amount"],
            json!({"amount": "4.50", "formattedAmount": "$4.50"})
        );
        assert!(captures(&r, USD_PAYMENT_20).is_empty(), "the other payment is untouched");

        // While the first capture is pending, another is refused.
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None)])).await;
        assert_eq!(r.status, 428, "{}", r.text);
        assert_eq!(r.json["details"]["applicationError"]["code"], "PAYMENT_HAS_PENDING_CAPTURE");

        // One read settles it (demo: settle after 1 read); the payment is APPROVED.
        let r = read(&emu, USD_ORDER).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(captures(&r, USD_PAYMENT_10)[0]["status"], "SUCCEEDED");
        assert_eq!(payment(&r, USD_PAYMENT_10)["regularPaymentDetails"]["status"], "APPROVED");

        // No amount: what is left (5.50).
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None)])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let list = captures(&r, USD_PAYMENT_10);
        assert_eq!(list.len(), 2);
        assert_eq!(list[1]["amount"]["amount"], "5.50");
        assert_eq!(list[1]["status"], "PENDING");
        read(&emu, USD_ORDER).await;

        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None)])).await;
        assert_eq!(r.status, 409, "{}", r.text);
        assert_eq!(
            r.json,
            app_error(
                "PAYMENT_ALREADY_CAPTURED",
                &format!("Payment {USD_PAYMENT_10} is already captured"),
                json!({"orderId": USD_ORDER, "paymentId": USD_PAYMENT_10})
            )
        );
        let amounts: Vec<Decimal> =
            emu.order(USD_ORDER).unwrap().payments[0].captures.iter().map(|c| c.amount).collect();
        assert_eq!(amounts, [dec("4.50"), dec("5.50")]);
    }

    #[tokio::test]
    async fn wix_zero_and_three_decimal_currencies_keep_their_text() {
        let emu = demo().await;
        let r = capture(&emu, &body(JPY_ORDER, &[(JPY_PAYMENT, Some("1500.5"))])).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json["details"]["applicationError"]["code"], "INVALID_AMOUNT");
        assert!(r.json["message"].as_str().unwrap().contains("JPY allows 0 decimal places"), "{}", r.text);

        let r = capture(&emu, &body(JPY_ORDER, &[(JPY_PAYMENT, Some("1000"))])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            captures(&r, JPY_PAYMENT)[0]["amount"],
            json!({"amount": "1000", "formattedAmount": "¥1,000"})
        );
        assert_eq!(
            payment(&r, JPY_PAYMENT)["amount"],
            json!({"amount": "1500", "formattedAmount": "¥1,500"})
        );

        let r = capture(&emu, &body(KWD_ORDER, &[(KWD_PAYMENT, Some("12.5001"))])).await;
        assert_eq!(r.status, 400, "{}", r.text);
        let r = capture(&emu, &body(KWD_ORDER, &[(KWD_PAYMENT, Some("12.250"))])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            captures(&r, KWD_PAYMENT)[0]["amount"],
            json!({"amount": "12.250", "formattedAmount": "KWD 12.250"})
        );
        assert_eq!(payment(&r, KWD_PAYMENT)["amount"]["amount"], "12.500");
        assert_eq!(emu.order(KWD_ORDER).unwrap().payments[0].captures[0].amount, dec("12.250"));
    }

    #[tokio::test]
    async fn wix_settle_after_zero_reads_succeeds_at_once() {
        let emu = WixEmulator::start(WixConfig { settle_after_reads: 0, ..WixConfig::demo() }).await.unwrap();
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_20, None)])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(captures(&r, USD_PAYMENT_20)[0]["status"], "SUCCEEDED");
        assert_eq!(payment(&r, USD_PAYMENT_20)["regularPaymentDetails"]["status"], "APPROVED");
    }

    // ---- refusals ----

    #[tokio::test]
    async fn wix_every_documented_refusal() {
        let emu = demo().await;
        let ids = |order: &str, payment: &str| json!({"orderId": order, "paymentId": payment});
        for (order, pay, amount, status, code, description) in [
            (
                CAPTURED_ORDER,
                CAPTURED_PAYMENT,
                None,
                409,
                "PAYMENT_ALREADY_CAPTURED",
                format!("Payment {CAPTURED_PAYMENT} is already captured"),
            ),
            (
                VOIDED_ORDER,
                VOIDED_PAYMENT,
                None,
                409,
                "PAYMENT_ALREADY_VOIDED",
                format!("Payment {VOIDED_PAYMENT} is voided"),
            ),
            (
                PENDING_ORDER,
                PENDING_PAYMENT,
                None,
                428,
                "PAYMENT_HAS_PENDING_CAPTURE",
                format!("Payment {PENDING_PAYMENT} has a capture still pending"),
            ),
            (
                UNAUTHORIZED_ORDER,
                UNAUTHORIZED_PAYMENT,
                None,
                428,
                "PAYMENT_NOT_AUTHORIZED",
                format!("Payment {UNAUTHORIZED_PAYMENT} is not authorized (status PENDING)"),
            ),
            (
                USD_ORDER,
                CAPTURED_PAYMENT,
                None,
                404,
                "PAYMENT_NOT_FOUND",
                format!("Payment {CAPTURED_PAYMENT} not found in order {USD_ORDER}"),
            ),
        ] {
            let r = capture(&emu, &body(order, &[(pay, amount)])).await;
            assert_eq!(r.status, status, "{code}: {}", r.text);
            assert_eq!(r.json, app_error(code, &description, ids(order, pay)), "{code}");
        }
        let r = capture(&emu, &body(CHARGEBACK_ORDER, &[(CHARGEBACK_PAYMENT, None)])).await;
        assert_eq!(r.status, 428, "{}", r.text);
        assert_eq!(
            r.json,
            app_error(
                "ORDER_HAS_CHARGEBACKS",
                &format!("Order {CHARGEBACK_ORDER} has chargebacks; its payments cannot be captured"),
                json!({"orderId": CHARGEBACK_ORDER})
            )
        );
        let unknown = "00000000-0000-4000-8000-00000000dead";
        let r = capture(&emu, &body(unknown, &[(USD_PAYMENT_10, None)])).await;
        assert_eq!(r.status, 404, "{}", r.text);
        assert_eq!(r.json["details"]["applicationError"]["code"], "PAYMENT_NOT_FOUND");
        assert_eq!(r.json["message"], format!("Order {unknown} not found"));
        // Nothing was recorded anywhere: every order is as configured.
        for configured in WixConfig::demo().orders {
            assert_eq!(emu.order(&configured.id).as_ref(), Some(&configured), "{}", configured.id);
        }
    }

    #[tokio::test]
    async fn wix_invalid_amounts() {
        let emu = demo().await;
        let pay = PARTLY_CAPTURED_PAYMENT;
        let r = capture(&emu, &body(PARTLY_CAPTURED_ORDER, &[(pay, Some("20.00"))])).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.json,
            app_error(
                "INVALID_AMOUNT",
                &format!("Invalid amount 20.00 for payment {pay}: only 10.00 is left to capture"),
                json!({"orderId": PARTLY_CAPTURED_ORDER, "paymentId": pay, "amount": "20.00"})
            )
        );
        for amount in ["0", "-1.00", "1.001"] {
            let r = capture(&emu, &body(PARTLY_CAPTURED_ORDER, &[(pay, Some(amount))])).await;
            assert_eq!(r.status, 400, "{amount}: {}", r.text);
            assert_eq!(r.json["details"]["applicationError"]["code"], "INVALID_AMOUNT", "{amount}");
        }
        // Exactly what is left is fine.
        let r = capture(&emu, &body(PARTLY_CAPTURED_ORDER, &[(pay, Some("10"))])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(captures(&r, pay).len(), 2);
    }

    #[tokio::test]
    async fn wix_all_payments_or_none() {
        let emu = demo().await;
        let good = "11111111-2222-4333-8444-555555555551";
        let voided = "11111111-2222-4333-8444-555555555552";
        let order = "11111111-2222-4333-8444-555555555550";
        let p = |id: &str, status: &str| WixPayment {
            id: id.into(),
            amount: dec("5.00"),
            status: status.into(),
            captures: vec![],
        };
        emu.add_order(WixOrder {
            id: order.into(),
            currency: "EUR".into(),
            payments: vec![p(good, "AUTHORIZED"), p(voided, "VOIDED")],
            chargebacks: false,
        });
        let r = capture(&emu, &body(order, &[(good, None), (voided, None)])).await;
        assert_eq!(r.status, 409, "{}", r.text);
        assert!(emu.order(order).unwrap().payments.iter().all(|p| p.captures.is_empty()));
        let r = capture(&emu, &body(order, &[(good, None)])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(captures(&r, good)[0]["amount"]["formattedAmount"], "€5.00");
    }

    #[tokio::test]
    async fn wix_authorization_is_the_bare_token() {
        let emu = demo().await;
        let b = body(USD_ORDER, &[(USD_PAYMENT_10, None)]);
        let bearer = format!("Bearer {TOKEN}");
        for headers in [vec![], vec![("Authorization", "wrong")], vec![("Authorization", bearer.as_str())]] {
            let r = send(emu.addr(), "POST", CAPTURE, &headers, &b).await;
            assert_eq!(r.status, 401, "{headers:?}: {}", r.text);
            assert_eq!(r.json["details"]["applicationError"]["code"], "UNAUTHENTICATED");
            let r =
                send(emu.addr(), "GET", &format!("/ecom/v1/payments/orders/{USD_ORDER}"), &headers, "").await;
            assert_eq!(r.status, 401, "{}", r.text);
        }
        // The site id header is accepted.
        let headers = [("Authorization", TOKEN), ("wix-site-id", "9f8e7d6c-0000-4000-8000-000000000001")];
        let r = send(emu.addr(), "POST", CAPTURE, &headers, &b).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(emu.order(USD_ORDER).unwrap().payments[0].captures.len(), 1);
    }

    #[tokio::test]
    async fn wix_validation_errors_list_field_violations() {
        let emu = demo().await;
        let r =
            capture(&emu, r#"{"orderId":"ORD-1","payments":[{"paymentId":"p-1","amount":{"amount":10}}]}"#)
                .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.json,
            json!({
                "message": "orderId must be a valid GUID; payments[0].paymentId must be a valid GUID; payments[0].amount.amount must be a decimal value",
                "details": {"validationError": {"fieldViolations": [
                    {"field": "orderId", "description": "must be a valid GUID", "violatedRule": "FORMAT", "data": {"type": "GUID"}},
                    {"field": "payments[0].paymentId", "description": "must be a valid GUID", "violatedRule": "FORMAT", "data": {"type": "GUID"}},
                    {"field": "payments[0].amount.amount", "description": "must be a decimal value", "violatedRule": "FORMAT", "data": {"type": "DECIMAL_VALUE"}},
                ]}}
            })
        );
        let many: Vec<(String, Option<&str>)> =
            (0..101).map(|i| (format!("00000000-0000-4000-8000-{i:012}"), None)).collect();
        let many: Vec<(&str, Option<&str>)> = many.iter().map(|(id, a)| (id.as_str(), *a)).collect();
        let r = capture(&emu, &body(USD_ORDER, &many)).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.json["details"]["validationError"]["fieldViolations"],
            json!([{"field": "payments", "description": "must have at most 100 elements", "violatedRule": "MAX_SIZE", "data": {"threshold": 100}}])
        );
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None), (USD_PAYMENT_10, None)])).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json["details"]["validationError"]["fieldViolations"][0]["violatedRule"], "OTHER");
        let r = capture(&emu, "not json").await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.json["message"].as_str().unwrap().starts_with("Bad Request: the body is not valid JSON"));
        assert_eq!(r.json["details"], json!({}));
        assert!(emu.order(USD_ORDER).unwrap().payments.iter().all(|p| p.captures.is_empty()));
    }

    // ---- the transactions route ----

    #[tokio::test]
    async fn wix_reads_count_until_captures_settle() {
        let emu = WixEmulator::start(WixConfig { settle_after_reads: 2, ..WixConfig::demo() }).await.unwrap();
        let r =
            capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None), (USD_PAYMENT_20, Some("5.00"))])).await;
        assert_eq!(r.status, 200, "{}", r.text);
        // The control API does not count as a read.
        let r = send(emu.addr(), "GET", &format!("/_sandbox/orders/{USD_ORDER}"), &[], "").await;
        assert_eq!(r.json["payments"][0]["captures"][0]["status"], "PENDING");

        let first = read(&emu, USD_ORDER).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(captures(&first, USD_PAYMENT_10)[0]["status"], "PENDING");
        assert_eq!(payment(&first, USD_PAYMENT_10)["regularPaymentDetails"]["status"], "AUTHORIZED");
        let second = read(&emu, USD_ORDER).await;
        assert_eq!(captures(&second, USD_PAYMENT_10)[0]["status"], "SUCCEEDED");
        assert_eq!(captures(&second, USD_PAYMENT_20)[0]["status"], "SUCCEEDED");
        assert_eq!(captures(&second, USD_PAYMENT_20)[0]["amount"]["amount"], "5.00");
        assert_eq!(payment(&second, USD_PAYMENT_10)["regularPaymentDetails"]["status"], "APPROVED");
        assert_eq!(emu.order(USD_ORDER).unwrap().payments[1].status, "APPROVED");
        // Same shape as the capture answer.
        assert_eq!(second.json["orderTransactions"]["orderId"], USD_ORDER);
    }

    #[tokio::test]
    async fn wix_transactions_route_errors() {
        let emu = demo().await;
        let r = read(&emu, "ORD-1").await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json["details"]["validationError"]["fieldViolations"][0]["field"], "orderId");
        let unknown = "00000000-0000-4000-8000-00000000dead";
        let r = read(&emu, unknown).await;
        assert_eq!(r.status, 404, "{}", r.text);
        assert_eq!(
            r.json,
            app_error("ORDER_NOT_FOUND", &format!("Order {unknown} not found"), json!({"orderId": unknown}))
        );
        // A payment not yet authorized has no authorization details.
        let r = read(&emu, UNAUTHORIZED_ORDER).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            payment(&r, UNAUTHORIZED_PAYMENT)["regularPaymentDetails"].get("authorizationDetails").is_none()
        );
        // The demo's pending capture settles on the first read.
        let r = read(&emu, PENDING_ORDER).await;
        assert_eq!(captures(&r, PENDING_PAYMENT)[0]["id"], PENDING_CAPTURE);
        assert_eq!(captures(&r, PENDING_PAYMENT)[0]["status"], "SUCCEEDED");
    }

    // ---- faults ----

    #[tokio::test]
    async fn wix_fault_503_applies_nothing() {
        let emu = demo().await;
        emu.faults().push([Fault::status(503)]);
        let b = body(USD_ORDER, &[(USD_PAYMENT_10, None)]);
        let r = capture(&emu, &b).await;
        assert_eq!(r.status, 503, "{}", r.text);
        assert_eq!(r.json, app_error("UNAVAILABLE", "Service Unavailable", json!({})));
        assert!(emu.order(USD_ORDER).unwrap().payments[0].captures.is_empty());
        // The fault was used up.
        assert_eq!(capture(&emu, &b).await.status, 200);
    }

    #[tokio::test]
    async fn wix_fault_429_sends_retry_after() {
        let emu = demo().await;
        emu.faults().push([Fault::rate_limited(1500)]);
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None)])).await;
        assert_eq!(r.status, 429, "{}", r.text);
        assert!(r.head.contains("retry-after: 2"), "{}", r.head);
        assert_eq!(r.json["details"]["applicationError"]["code"], "RESOURCE_EXHAUSTED");
        assert!(emu.order(USD_ORDER).unwrap().payments[0].captures.is_empty());
    }

    #[tokio::test]
    async fn wix_faults_after_apply() {
        let emu = demo().await;
        emu.faults().push([Fault::status_after_apply(502)]);
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, None)])).await;
        assert_eq!(r.status, 502, "{}", r.text);
        assert_eq!(r.json["details"]["applicationError"]["code"], "UNKNOWN");
        assert_eq!(emu.order(USD_ORDER).unwrap().payments[0].captures.len(), 1, "applied before the 502");

        emu.faults().push([Fault::delay(300)]);
        let started = Instant::now();
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_20, None)])).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(captures(&r, USD_PAYMENT_20).len(), 1);

        emu.faults().push([Fault::drop_after_apply()]);
        let headers = [("Authorization", TOKEN), ("Content-Type", "application/json")];
        let raw =
            send_raw(emu.addr(), "POST", CAPTURE, &headers, &body(KWD_ORDER, &[(KWD_PAYMENT, None)])).await;
        assert!(!raw.contains("orderTransactions"), "no answer arrives: {raw}");
        let books = emu.order(KWD_ORDER).unwrap();
        assert_eq!(books.payments[0].captures.len(), 1, "the capture was applied");
        assert_eq!(books.payments[0].captures[0].amount, dec("12.500"));
    }

    // ---- control API ----

    #[tokio::test]
    async fn wix_control_api() {
        let emu = demo().await;
        assert_eq!(capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_10, Some("3.00"))])).await.status, 200);
        let r = send(emu.addr(), "GET", &format!("/_sandbox/orders/{USD_ORDER}"), &[], "").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.json["payments"][0],
            json!({"id": USD_PAYMENT_10, "amount": "10.00", "status": "AUTHORIZED", "captured": "3.00", "remaining": "7.00",
                   "captures": [{"id": "ca000000-0000-4000-8000-000000000001", "amount": "3.00", "status": "PENDING", "createdDate": "2026-01-02T09:00:01.000Z"}]})
        );
        assert_eq!(r.json["currency"], "USD");
        assert_eq!(r.json["chargebacks"], false);
        let r = send(emu.addr(), "GET", "/_sandbox/orders/nope", &[], "").await;
        assert_eq!(r.status, 404);

        // Faults through HTTP.
        let r =
            send(emu.addr(), "POST", "/_sandbox/faults", &[], r#"[{"kind":"status","status":500}]"#).await;
        assert_eq!(r.status, 204);
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_20, None)])).await;
        assert_eq!(
            (r.status, r.json["details"]["applicationError"]["code"].as_str()),
            (500, Some("INTERNAL"))
        );

        // Reset: the books, the capture counter and the fault queue.
        emu.faults().push([Fault::status(503)]);
        let r = send(emu.addr(), "POST", "/_sandbox/reset", &[], "").await;
        assert_eq!(r.status, 204);
        assert_eq!(emu.order(USD_ORDER), WixConfig::demo().orders.into_iter().find(|o| o.id == USD_ORDER));
        let r = capture(&emu, &body(USD_ORDER, &[(USD_PAYMENT_20, None)])).await;
        assert_eq!(r.status, 200, "the queued fault was cleared: {}", r.text);
        assert_eq!(captures(&r, USD_PAYMENT_20)[0]["id"], "ca000000-0000-4000-8000-000000000001");
        emu.reset();
        assert!(emu.order(USD_ORDER).unwrap().payments[1].captures.is_empty());

        let r = send(emu.addr(), "GET", "/ecom/v1/elsewhere", &[], "").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json, json!({"message": "Not Found: GET /ecom/v1/elsewhere", "details": {}}));
        let r = send(emu.addr(), "GET", CAPTURE, &[("Authorization", TOKEN)], "").await;
        assert_eq!(r.status, 404);
    }
}
