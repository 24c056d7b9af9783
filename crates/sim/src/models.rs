//! In-memory models of the platforms, answering the HTTP requests the real connectors build, in
//! each platform's format, and keeping books: every capture each one applied.
//!
//! | model | route(s) | what it enforces |
//! |---|---|---|
//! | Optty | `POST /orders/{id}/capture` | a `captureReference` is applied once (400 "already been used"); the amount must fit what remains of the authorization |
//! | BigCommerce | `POST …/orders/{id}/payment_actions/capture`, `GET …/orders/{id}/transactions` | asynchronous: 201 `{}`, the capture settles after N reads of the transactions; a second capture is a 422; no key |
//! | Medusa | `POST /admin/payments/{id}/capture`, `POST /admin/orders/{id}/capture`, `GET` of both | captures each payment in full; an already captured payment answers 200 unchanged (idempotent); no key |
//! | Wix | `POST /ecom/v1/order-billing/capture-authorized-payments`, `GET /ecom/v1/payments/orders/{id}` | captures are PENDING and settle after N reads; a payment with a pending capture is refused (428), a fully captured one is 409, more than remains 400; no key |
//! | permissive (template connector) | `POST /v1/payments/{id}/captures` | nothing: any amount is applied; only its `Idempotency-Key` replays the first answer, as the connector's contract says |
//!
//! The models know the true authorization of every order, whatever snapshot a request carries.

use std::collections::BTreeMap;
use std::str::FromStr;

use capture_core::{Currency, Money};
use capture_engine::OutgoingRequest;
use capture_engine::connector_api::HttpResponse;
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// The platforms the simulator models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlatformKind {
    /// Optty: deduplicates by `captureReference`, checks the remaining amount.
    Optty,
    /// BigCommerce: asynchronous capture, no key, status through transactions.
    BigCommerce,
    /// Medusa v1: full captures, idempotent 200 on an already captured payment.
    Medusa,
    /// Wix: PENDING captures that settle after N reads.
    Wix,
    /// The template connector's Example Pay, modelled as a platform that enforces nothing.
    Permissive,
}

impl PlatformKind {
    /// Every platform, in the order `--platform all` cycles through them.
    pub const ALL: [PlatformKind; 5] = [
        PlatformKind::Optty,
        PlatformKind::BigCommerce,
        PlatformKind::Medusa,
        PlatformKind::Wix,
        PlatformKind::Permissive,
    ];

    /// The simulator's name of the platform.
    pub fn name(self) -> &'static str {
        match self {
            PlatformKind::Optty => "optty",
            PlatformKind::BigCommerce => "bigcommerce",
            PlatformKind::Medusa => "medusa",
            PlatformKind::Wix => "wix",
            PlatformKind::Permissive => "permissive",
        }
    }

    /// Parses a name of [`PlatformKind::name`] (`template` is accepted for the permissive one).
    pub fn parse(s: &str) -> Option<PlatformKind> {
        match s {
            "optty" => Some(PlatformKind::Optty),
            "bigcommerce" => Some(PlatformKind::BigCommerce),
            "medusa" => Some(PlatformKind::Medusa),
            "wix" => Some(PlatformKind::Wix),
            "permissive" | "template" => Some(PlatformKind::Permissive),
            _ => None,
        }
    }

    /// The connector id (and plugin file stem) that speaks to it.
    pub fn connector(self) -> &'static str {
        match self {
            PlatformKind::Permissive => "template",
            other => other.name(),
        }
    }

    /// The base URL configured for it (never contacted: the transport is the model).
    pub fn base_url(self) -> &'static str {
        match self {
            PlatformKind::Optty => "https://api.optty.com",
            PlatformKind::BigCommerce => "https://api.bigcommerce.com",
            PlatformKind::Medusa => "http://127.0.0.1:9000",
            PlatformKind::Wix => "https://www.wixapis.com",
            PlatformKind::Permissive => "https://api.example-pay.test",
        }
    }

    /// The credential the connector's manifest declares.
    pub fn credential(self) -> &'static str {
        match self {
            PlatformKind::Optty => "bearer_token",
            PlatformKind::BigCommerce => "access_token",
            PlatformKind::Medusa => "api_token",
            PlatformKind::Wix | PlatformKind::Permissive => "api_key",
        }
    }

    /// The connector's settings.
    pub fn settings(self) -> BTreeMap<String, String> {
        match self {
            PlatformKind::BigCommerce => BTreeMap::from([("store_hash".to_owned(), "simstore".to_owned())]),
            _ => BTreeMap::new(),
        }
    }

    /// Whether the wire carries the idempotency key (so a capture is attributed by it).
    pub fn keyed(self) -> bool {
        matches!(self, PlatformKind::Optty | PlatformKind::Permissive)
    }

    /// Whether partial captures are possible.
    pub fn partial(self) -> bool {
        matches!(self, PlatformKind::Optty | PlatformKind::Wix | PlatformKind::Permissive)
    }

    /// The most payments an order of this platform gets in a history.
    pub fn max_payments(self) -> u64 {
        match self {
            PlatformKind::Medusa | PlatformKind::Wix => 2,
            _ => 1,
        }
    }
}

/// The currency of every history.
pub fn usd() -> Currency {
    Currency::from_code("USD").unwrap_or_else(|e| panic!("USD is in the ISO table: {e}"))
}

/// One capture a model applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The order.
    pub order: String,
    /// The idempotency key it was made under: the wire's key on keyed platforms, otherwise the
    /// key of the capture task that sent it (None when a reconciler sent it).
    pub key: Option<String>,
    /// The amount applied.
    pub amount: Money,
    /// Which process sent it.
    pub by: String,
    /// The amount was made to differ from the one asked (the `amount_mismatch` fault).
    pub mismatched: bool,
}

#[derive(Debug, Clone)]
struct ModelCapture {
    id: String,
    amount: Money,
    /// Reads of the order's state before the capture settles (0: settled).
    reads_left: u32,
    seq: u64,
}

#[derive(Debug, Clone)]
struct ModelPayment {
    id: String,
    authorized: Money,
    captures: Vec<ModelCapture>,
}

impl ModelPayment {
    fn captured(&self) -> Money {
        self.captures
            .iter()
            .fold(Money::zero(self.authorized.currency()), |acc, c| acc.checked_add(c.amount).unwrap_or(acc))
    }

    fn remaining(&self) -> Money {
        let left = self.authorized.checked_sub(self.captured()).unwrap_or(self.authorized);
        if left.is_negative() { Money::zero(left.currency()) } else { left }
    }
}

#[derive(Debug, Clone)]
struct ModelOrder {
    id: String,
    payments: Vec<ModelPayment>,
    /// Keys seen (Optty references, Example Pay idempotency keys) and the first answer's body.
    keys: BTreeMap<String, String>,
}

/// A platform's state.
#[derive(Debug, Clone)]
pub struct Model {
    kind: PlatformKind,
    orders: Vec<ModelOrder>,
    settle_reads: u32,
    seq: u64,
}

/// How one request is delivered to the model.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The capture task's key (attribution on platforms whose wire has no key).
    pub task_key: Option<String>,
    /// The sending process.
    pub by: String,
    /// Apply a different amount than asked (minor units, kept within the authorization).
    pub mismatch: Option<i64>,
    /// Answer a read from the state as of this many applied captures ago.
    pub lag: usize,
}

/// A platform model with its books and its past states (for lagging reads).
#[derive(Debug)]
pub struct World {
    /// The current state.
    pub model: Model,
    past: Vec<Model>,
    /// Every capture applied, in order.
    pub books: Vec<Applied>,
}

fn answer(status: u16, body: String) -> HttpResponse {
    HttpResponse { status, headers: vec![("content-type".into(), "application/json".into())], body }
}

fn money_text(text: &str) -> Option<Money> {
    Decimal::from_str(text).ok().and_then(|d| Money::new(d, usd()).ok())
}

fn number(m: Money) -> Value {
    serde_json::Number::from_str(&m.to_decimal_string()).map(Value::Number).unwrap_or(Value::Null)
}

impl World {
    /// A platform whose orders are `orders` (id, payments (id, authorized)); asynchronous
    /// captures settle after `settle_reads` reads.
    pub fn new(kind: PlatformKind, orders: &[(String, Vec<(String, Money)>)], settle_reads: u32) -> World {
        let orders = orders
            .iter()
            .map(|(id, payments)| ModelOrder {
                id: id.clone(),
                payments: payments
                    .iter()
                    .map(|(pid, a)| ModelPayment { id: pid.clone(), authorized: *a, captures: Vec::new() })
                    .collect(),
                keys: BTreeMap::new(),
            })
            .collect();
        World { model: Model { kind, orders, settle_reads, seq: 0 }, past: Vec::new(), books: Vec::new() }
    }

    /// The authorized total of an order, as the platform knows it.
    pub fn authorized(&self, order: &str) -> Option<Money> {
        let o = self.model.orders.iter().find(|o| o.id == order)?;
        o.payments.iter().try_fold(Money::zero(usd()), |acc, p| acc.checked_add(p.authorized).ok())
    }

    /// Whether a capture of the order is still settling at the platform.
    pub fn pending(&self, order: &str) -> bool {
        self.model
            .orders
            .iter()
            .filter(|o| o.id == order)
            .flat_map(|o| &o.payments)
            .flat_map(|p| &p.captures)
            .any(|c| c.reads_left > 0)
    }

    /// Handles one request.
    pub fn handle(&mut self, req: &OutgoingRequest, d: &Delivery) -> HttpResponse {
        let Some(path) = req.url.strip_prefix(self.model.kind.base_url()) else {
            return answer(404, json!({"message": format!("no route {}", req.url)}).to_string());
        };
        let path = path.to_owned();
        if req.method == "GET" {
            if d.lag > 0 && !self.past.is_empty() {
                let i = self.past.len().saturating_sub(d.lag);
                let mut old = self.past[i].clone();
                return old.read(&path, false);
            }
            return self.model.read(&path, true);
        }
        let before = self.model.clone();
        let (resp, applied) = self.model.write(&path, req, d);
        if !applied.is_empty() {
            self.past.push(before);
            self.books.extend(applied);
        }
        resp
    }
}

fn header<'a>(req: &'a OutgoingRequest, name: &str) -> Option<&'a str> {
    req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

impl Model {
    fn order_mut(&mut self, id: &str) -> Option<&mut ModelOrder> {
        self.orders.iter_mut().find(|o| o.id == id)
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A capture of `asked` changed by the mismatch fault, kept within `room` and above zero.
    fn applied_amount(asked: Money, room: Money, mismatch: Option<i64>) -> Money {
        let Some(delta) = mismatch else { return asked };
        let (Ok(a), Ok(r)) = (asked.to_minor(), room.to_minor()) else { return asked };
        let target = a.saturating_add(delta).clamp(1, r.max(1));
        Money::from_minor(target, asked.currency())
    }

    fn write(&mut self, path: &str, req: &OutgoingRequest, d: &Delivery) -> (HttpResponse, Vec<Applied>) {
        let body: Value =
            req.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (self.kind, parts.as_slice()) {
            (PlatformKind::Optty, ["orders", id, "capture"]) => self.optty_capture(id, &body, d),
            (PlatformKind::BigCommerce, ["stores", _, "v3", "orders", id, "payment_actions", "capture"]) => {
                self.bigcommerce_capture(id, d)
            }
            (PlatformKind::Medusa, ["admin", "payments", pid, "capture"]) => {
                self.medusa_capture(None, Some(pid), d)
            }
            (PlatformKind::Medusa, ["admin", "orders", oid, "capture"]) => {
                self.medusa_capture(Some(oid), None, d)
            }
            (PlatformKind::Wix, ["ecom", "v1", "order-billing", "capture-authorized-payments"]) => {
                self.wix_capture(&body, d)
            }
            (PlatformKind::Permissive, ["v1", "payments", pid, "captures"]) => {
                let key = header(req, "Idempotency-Key").map(str::to_owned);
                self.permissive_capture(pid, key, &body, d)
            }
            _ => (answer(404, json!({"message": format!("no route POST {path}")}).to_string()), Vec::new()),
        }
    }

    fn read(&mut self, path: &str, progress: bool) -> HttpResponse {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (self.kind, parts.as_slice()) {
            (PlatformKind::BigCommerce, ["stores", _, "v3", "orders", id, "transactions"]) => {
                let id = (*id).to_owned();
                if progress {
                    self.settle(&id);
                }
                self.bigcommerce_transactions(&id)
            }
            (PlatformKind::Medusa, ["admin", "payments", pid]) => match self.medusa_payment_json(pid) {
                Some(p) => answer(200, json!({ "payment": p }).to_string()),
                None => answer(404, json!({"type": "not_found", "message": "Payment not found"}).to_string()),
            },
            (PlatformKind::Medusa, ["admin", "orders", oid]) => match self.medusa_order_json(oid) {
                Some(o) => answer(200, json!({ "order": o }).to_string()),
                None => answer(404, json!({"type": "not_found", "message": "Order not found"}).to_string()),
            },
            (PlatformKind::Wix, ["ecom", "v1", "payments", "orders", id]) => {
                let id = (*id).to_owned();
                if progress {
                    self.settle(&id);
                }
                match self.wix_transactions(&id) {
                    Some(t) => answer(200, t),
                    None => wix_error(404, "PAYMENT_NOT_FOUND", "order not found"),
                }
            }
            _ => answer(404, json!({"message": format!("no route GET {path}")}).to_string()),
        }
    }

    /// One read of an order's state: pending captures get one read closer to settling.
    fn settle(&mut self, order: &str) {
        if let Some(o) = self.order_mut(order) {
            for c in o.payments.iter_mut().flat_map(|p| p.captures.iter_mut()) {
                c.reads_left = c.reads_left.saturating_sub(1);
            }
        }
    }

    fn optty_capture(&mut self, id: &str, body: &Value, d: &Delivery) -> (HttpResponse, Vec<Applied>) {
        let reference = body.get("captureReference").and_then(Value::as_str).unwrap_or("").to_owned();
        let asked = body.get("amount").map(Value::to_string).and_then(|t| money_text(&t));
        let seq = self.next();
        let Some(order) = self.order_mut(id) else {
            return (
                answer(404, json!({"statusCode": 404, "message": "order not found"}).to_string()),
                Vec::new(),
            );
        };
        let Some(asked) = asked else {
            return (
                answer(400, json!({"statusCode": 400, "message": "amount is invalid"}).to_string()),
                Vec::new(),
            );
        };
        if order.keys.contains_key(&reference) {
            let msg = format!("captureReference {reference} has already been used");
            return (answer(400, json!({"statusCode": 400, "message": msg}).to_string()), Vec::new());
        }
        let Some(p) = order.payments.first_mut() else {
            return (
                answer(409, json!({"statusCode": 409, "message": "no payment"}).to_string()),
                Vec::new(),
            );
        };
        let room = p.remaining();
        if asked > room {
            let msg = format!("amount {asked} exceeds the capturable amount {room}");
            return (answer(400, json!({"statusCode": 400, "message": msg}).to_string()), Vec::new());
        }
        let amount = Self::applied_amount(asked, room, d.mismatch);
        let cap_id = format!("optty-cap-{seq}");
        p.captures.push(ModelCapture { id: cap_id.clone(), amount, reads_left: 0, seq });
        let body =
            json!({"captureReference": reference, "captureId": cap_id, "capturedAmount": number(amount)})
                .to_string();
        order.keys.insert(reference.clone(), body.clone());
        let applied = Applied {
            order: id.to_owned(),
            key: Some(reference),
            amount,
            by: d.by.clone(),
            mismatched: d.mismatch.is_some(),
        };
        (answer(200, body), vec![applied])
    }

    fn bigcommerce_capture(&mut self, id: &str, d: &Delivery) -> (HttpResponse, Vec<Applied>) {
        let seq = self.next();
        let settle = self.settle_reads;
        let Some(order) = self.order_mut(id) else {
            let body = json!({"status": 404, "title": "The requested resource was not found", "type": "about:blank"});
            return (answer(404, body.to_string()), Vec::new());
        };
        if order.payments.iter().any(|p| !p.captures.is_empty()) {
            let body = json!({"status": 422, "title": "The order payment has already been captured", "type": "about:blank"});
            return (answer(422, body.to_string()), Vec::new());
        }
        let mut total = Money::zero(usd());
        for p in &mut order.payments {
            let amount = p.authorized;
            total = total.checked_add(amount).unwrap_or(total);
            p.captures.push(ModelCapture { id: format!("{seq}"), amount, reads_left: settle, seq });
        }
        let applied = Applied {
            order: id.to_owned(),
            key: d.task_key.clone(),
            amount: total,
            by: d.by.clone(),
            mismatched: d.mismatch.is_some(),
        };
        (answer(201, "{}".to_owned()), vec![applied])
    }

    fn bigcommerce_transactions(&self, id: &str) -> HttpResponse {
        let Some(order) = self.orders.iter().find(|o| o.id == id) else {
            return answer(404, json!({"status": 404, "title": "not found"}).to_string());
        };
        let mut data = Vec::new();
        for p in &order.payments {
            data.push(json!({"id": format!("auth-{}", p.id), "event": "authorization", "status": "ok", "amount": number(p.authorized)}));
            for c in &p.captures {
                let status = if c.reads_left == 0 { "ok" } else { "pending" };
                data.push(json!({"id": c.id.clone(), "event": "capture", "status": status, "amount": number(c.amount)}));
            }
        }
        answer(200, json!({"data": data, "meta": {}}).to_string())
    }

    fn medusa_payment_value(p: &ModelPayment, order: &str) -> Value {
        let captured = !p.captures.is_empty();
        let amount = p.captures.first().map_or(p.authorized, |c| c.amount);
        json!({
            "id": p.id, "order_id": order, "amount": amount.to_minor().unwrap_or(0), "currency_code": "usd",
            "captured_at": if captured { Value::String("2026-11-21T09:00:00.000Z".into()) } else { Value::Null },
            "canceled_at": Value::Null,
        })
    }

    fn medusa_payment_json(&self, pid: &str) -> Option<Value> {
        self.orders.iter().find_map(|o| {
            o.payments.iter().find(|p| p.id == pid).map(|p| Self::medusa_payment_value(p, &o.id))
        })
    }

    fn medusa_order_json(&self, oid: &str) -> Option<Value> {
        let o = self.orders.iter().find(|o| o.id == oid)?;
        let all = o.payments.iter().all(|p| !p.captures.is_empty());
        let payments: Vec<Value> = o.payments.iter().map(|p| Self::medusa_payment_value(p, &o.id)).collect();
        Some(json!({
            "id": o.id, "status": "pending", "payment_status": if all { "captured" } else { "awaiting" },
            "payments": payments,
        }))
    }

    fn medusa_capture(
        &mut self,
        oid: Option<&str>,
        pid: Option<&str>,
        d: &Delivery,
    ) -> (HttpResponse, Vec<Applied>) {
        let seq = self.next();
        let found = self.orders.iter().position(|o| match (oid, pid) {
            (Some(oid), _) => o.id == oid,
            (None, Some(pid)) => o.payments.iter().any(|p| p.id == pid),
            (None, None) => false,
        });
        let Some(i) = found else {
            return (
                answer(404, json!({"type": "not_found", "message": "not found"}).to_string()),
                Vec::new(),
            );
        };
        let order = &mut self.orders[i];
        let mut total = Money::zero(usd());
        for p in order.payments.iter_mut().filter(|p| pid.is_none_or(|id| p.id == id)) {
            if p.captures.is_empty() {
                // Medusa v1 captures the payment in full, whatever the host's snapshot says.
                let amount = p.authorized;
                p.captures.push(ModelCapture { id: p.id.clone(), amount, reads_left: 0, seq });
                total = total.checked_add(amount).unwrap_or(total);
            }
        }
        let order_id = order.id.clone();
        let body = match pid {
            Some(pid) => json!({ "payment": self.medusa_payment_json(pid) }),
            None => json!({ "order": self.medusa_order_json(&order_id) }),
        };
        let applied = if total.is_zero() {
            Vec::new()
        } else {
            vec![Applied {
                order: order_id,
                key: d.task_key.clone(),
                amount: total,
                by: d.by.clone(),
                mismatched: d.mismatch.is_some(),
            }]
        };
        (answer(200, body.to_string()), applied)
    }

    fn wix_transactions(&self, id: &str) -> Option<String> {
        let o = self.orders.iter().find(|o| o.id == id)?;
        let payments: Vec<Value> = o
            .payments
            .iter()
            .map(|p| {
                let captures: Vec<Value> = p
                    .captures
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id, "status": if c.reads_left == 0 { "SUCCEEDED" } else { "PENDING" },
                            "amount": {"amount": c.amount.to_decimal_string()},
                            "createdDate": format!("2026-11-21T09:00:00.{:09}Z", c.seq),
                        })
                    })
                    .collect();
                json!({
                    "id": p.id,
                    "regularPaymentDetails": {"status": "AUTHORIZED", "authorizationDetails": {"delayedCapture": true, "captures": captures}},
                    "amount": {"amount": p.authorized.to_decimal_string()},
                })
            })
            .collect();
        Some(json!({"orderTransactions": {"orderId": o.id, "payments": payments, "refunds": []}}).to_string())
    }

    fn wix_capture(&mut self, body: &Value, d: &Delivery) -> (HttpResponse, Vec<Applied>) {
        let seq = self.next();
        let settle = self.settle_reads;
        let order_id = body.get("orderId").and_then(Value::as_str).unwrap_or("").to_owned();
        let asks: Vec<(String, Option<Money>)> = body
            .get("payments")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let id = p.get("paymentId").and_then(Value::as_str).unwrap_or("").to_owned();
                        let amount = p.pointer("/amount/amount").and_then(Value::as_str).and_then(money_text);
                        (id, amount)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(order) = self.order_mut(&order_id) else {
            return (wix_error(404, "PAYMENT_NOT_FOUND", "order not found"), Vec::new());
        };
        // Check every payment first: Wix applies a call entirely or not at all.
        let mut plan = Vec::new();
        for (pid, amount) in &asks {
            let Some(i) = order.payments.iter().position(|p| p.id.eq_ignore_ascii_case(pid)) else {
                return (
                    wix_error(404, "PAYMENT_NOT_FOUND", &format!("payment {pid} not found")),
                    Vec::new(),
                );
            };
            let p = &order.payments[i];
            if p.captures.iter().any(|c| c.reads_left > 0) {
                return (
                    wix_error(
                        428,
                        "PAYMENT_HAS_PENDING_CAPTURE",
                        &format!("Payment {pid} has a pending capture"),
                    ),
                    Vec::new(),
                );
            }
            let room = p.remaining();
            if room.is_zero() {
                return (
                    wix_error(409, "PAYMENT_ALREADY_CAPTURED", &format!("Payment {pid} is already captured")),
                    Vec::new(),
                );
            }
            let amount = amount.unwrap_or(room);
            if amount > room {
                return (
                    wix_error(400, "INVALID_AMOUNT", &format!("amount {amount} exceeds {room}")),
                    Vec::new(),
                );
            }
            plan.push((i, amount, room));
        }
        let mut total = Money::zero(usd());
        for (n, (i, amount, room)) in plan.into_iter().enumerate() {
            let amount = if n == 0 { Self::applied_amount(amount, room, d.mismatch) } else { amount };
            let p = &mut order.payments[i];
            let cap_id = format!("0000{seq:04}-0000-4000-8000-{:012}", n);
            p.captures.push(ModelCapture { id: cap_id, amount, reads_left: settle, seq });
            total = total.checked_add(amount).unwrap_or(total);
        }
        let body = self.wix_transactions(&order_id).unwrap_or_default();
        let applied = Applied {
            order: order_id,
            key: d.task_key.clone(),
            amount: total,
            by: d.by.clone(),
            mismatched: d.mismatch.is_some(),
        };
        (answer(200, body), vec![applied])
    }

    fn permissive_capture(
        &mut self,
        pid: &str,
        key: Option<String>,
        body: &Value,
        d: &Delivery,
    ) -> (HttpResponse, Vec<Applied>) {
        let seq = self.next();
        let asked = body.get("amount").and_then(Value::as_str).and_then(money_text);
        let Some(order) = self.orders.iter_mut().find(|o| o.payments.iter().any(|p| p.id == pid)) else {
            return (
                answer(404, json!({"code": "not_found", "message": "no such payment"}).to_string()),
                Vec::new(),
            );
        };
        if let Some(k) = &key
            && let Some(first) = order.keys.get(k)
        {
            return (answer(201, first.clone()), Vec::new());
        }
        let Some(asked) = asked else {
            return (answer(422, json!({"code": "invalid", "message": "amount"}).to_string()), Vec::new());
        };
        let Some(p) = order.payments.iter_mut().find(|p| p.id == pid) else {
            return (
                answer(404, json!({"code": "not_found", "message": "no such payment"}).to_string()),
                Vec::new(),
            );
        };
        // It enforces nothing: any amount is applied. A mismatch stays within what remains.
        let amount = if d.mismatch.is_some() && p.remaining() > asked {
            Self::applied_amount(asked, p.remaining(), d.mismatch)
        } else {
            asked
        };
        let cap_id = format!("exp-cap-{seq}");
        p.captures.push(ModelCapture { id: cap_id.clone(), amount, reads_left: 0, seq });
        let answer_body =
            json!({"id": cap_id, "status": "succeeded", "amount": amount.to_decimal_string()}).to_string();
        if let Some(k) = &key {
            order.keys.insert(k.clone(), answer_body.clone());
        }
        let order_id = order.id.clone();
        let applied = Applied {
            order: order_id,
            key: key.or_else(|| d.task_key.clone()),
            amount,
            by: d.by.clone(),
            mismatched: d.mismatch.is_some(),
        };
        (answer(201, answer_body), vec![applied])
    }
}

fn wix_error(status: u16, code: &str, message: &str) -> HttpResponse {
    answer(
        status,
        json!({"message": message, "details": {"applicationError": {"code": code, "description": message, "data": {}}}})
            .to_string(),
    )
}

/// A 5xx answer every connector reads as `platform_unavailable`.
pub fn unavailable(status: u16) -> HttpResponse {
    answer(status, json!({"statusCode": status, "status": status, "title": "Service Unavailable", "message": "Service Unavailable", "type": "unexpected_state"}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(kind: PlatformKind, path: &str, body: &str, headers: &[(&str, &str)]) -> OutgoingRequest {
        OutgoingRequest {
            method: "POST".into(),
            url: format!("{}{path}", kind.base_url()),
            headers: headers.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(),
            body: Some(body.into()),
        }
    }

    fn get(kind: PlatformKind, path: &str) -> OutgoingRequest {
        OutgoingRequest {
            method: "GET".into(),
            url: format!("{}{path}", kind.base_url()),
            headers: vec![],
            body: None,
        }
    }

    fn world(kind: PlatformKind, order: &str, payments: &[(&str, i64)], settle: u32) -> World {
        let p = payments.iter().map(|(id, c)| ((*id).to_owned(), Money::from_minor(*c, usd()))).collect();
        World::new(kind, &[(order.to_owned(), p)], settle)
    }

    #[test]
    fn optty_applies_a_reference_once_and_checks_what_remains() {
        let k = PlatformKind::Optty;
        let mut w = world(k, "ORD-1", &[("pay-1", 10_000)], 0);
        let d = Delivery::default();
        let r = w.handle(
            &post(k, "/orders/ORD-1/capture", r#"{"captureReference":"k1","amount":60.00}"#, &[]),
            &d,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let again = w.handle(
            &post(k, "/orders/ORD-1/capture", r#"{"captureReference":"k1","amount":60.00}"#, &[]),
            &d,
        );
        assert_eq!(again.status, 400);
        assert!(again.body.contains("captureReference k1 has already been used"), "{}", again.body);
        let over = w.handle(
            &post(k, "/orders/ORD-1/capture", r#"{"captureReference":"k2","amount":60.00}"#, &[]),
            &d,
        );
        assert_eq!(over.status, 400, "{}", over.body);
        assert_eq!(w.books.len(), 1);
        assert_eq!(w.books[0].amount, Money::from_minor(6_000, usd()));
    }

    #[test]
    fn wix_captures_settle_after_reads_and_lagging_reads_show_the_past() {
        let k = PlatformKind::Wix;
        let (order, pay) = ("3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9", "496aaea1-4e2f-4cb1-9522-6b85f49b91e2");
        let mut w = world(k, order, &[(pay, 1_000)], 2);
        let body = format!(r#"{{"orderId":"{order}","payments":[{{"paymentId":"{pay}"}}]}}"#);
        let d = Delivery::default();
        let r = w.handle(&post(k, "/ecom/v1/order-billing/capture-authorized-payments", &body, &[]), &d);
        assert!(r.body.contains("PENDING"), "{}", r.body);
        let busy = w.handle(&post(k, "/ecom/v1/order-billing/capture-authorized-payments", &body, &[]), &d);
        assert_eq!(busy.status, 428, "{}", busy.body);
        let path = format!("/ecom/v1/payments/orders/{order}");
        let lagging = w.handle(&get(k, &path), &Delivery { lag: 1, ..Delivery::default() });
        assert!(!lagging.body.contains("PENDING") && !lagging.body.contains("SUCCEEDED"), "{}", lagging.body);
        assert!(w.handle(&get(k, &path), &d).body.contains("PENDING"));
        assert!(w.handle(&get(k, &path), &d).body.contains("SUCCEEDED"));
        assert!(!w.pending(order));
        let done = w.handle(&post(k, "/ecom/v1/order-billing/capture-authorized-payments", &body, &[]), &d);
        assert_eq!(done.status, 409, "{}", done.body);
        assert_eq!(w.books.len(), 1);
    }

    #[test]
    fn medusa_answers_an_already_captured_payment_unchanged() {
        let k = PlatformKind::Medusa;
        let mut w = world(k, "order_01", &[("pay_01", 1_010)], 0);
        let d = Delivery::default();
        let first = w.handle(&post(k, "/admin/payments/pay_01/capture", "", &[]), &d);
        let second = w.handle(&post(k, "/admin/payments/pay_01/capture", "", &[]), &d);
        assert_eq!((first.status, second.status), (200, 200));
        assert_eq!(first.body, second.body);
        assert!(first.body.contains("\"amount\":1010"), "{}", first.body);
        assert_eq!(w.books.len(), 1);
    }

    #[test]
    fn bigcommerce_captures_once_and_reads_pending_then_ok() {
        let k = PlatformKind::BigCommerce;
        let mut w = world(k, "100", &[("pay-0", 4_500)], 1);
        let d = Delivery::default();
        let path = "/stores/simstore/v3/orders/100/payment_actions/capture";
        assert_eq!(w.handle(&post(k, path, "{}", &[]), &d).status, 201);
        assert_eq!(w.handle(&post(k, path, "{}", &[]), &d).status, 422);
        let tx = w.handle(&get(k, "/stores/simstore/v3/orders/100/transactions"), &d);
        assert!(
            tx.body.contains(r#""event":"capture""#) && tx.body.contains(r#""status":"ok""#),
            "{}",
            tx.body
        );
        assert_eq!(w.books.len(), 1);
    }

    #[test]
    fn the_permissive_platform_enforces_nothing_but_its_key() {
        let k = PlatformKind::Permissive;
        let mut w = world(k, "ex-order-0", &[("pay-0", 1_000)], 0);
        let d = Delivery::default();
        let big = r#"{"amount":"500.00","currency":"USD","reference":"k1"}"#;
        let r = w.handle(&post(k, "/v1/payments/pay-0/captures", big, &[("Idempotency-Key", "k1")]), &d);
        assert_eq!(r.status, 201, "{}", r.body);
        let replay = w.handle(&post(k, "/v1/payments/pay-0/captures", big, &[("Idempotency-Key", "k1")]), &d);
        assert_eq!(replay.body, r.body);
        assert_eq!(w.books.len(), 1);
        assert_eq!(w.books[0].amount, Money::from_minor(50_000, usd()), "more than authorized, applied");
    }
}
