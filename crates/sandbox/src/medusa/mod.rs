//! Emulator of the Medusa admin API v1 capture endpoints, on a loopback HTTP port.
//!
//! # The contract (crates/sandbox/platforms/medusa.md, from the Medusa v1 admin API reference)
//!
//! - `POST /admin/payments/{id}/capture`: captures one payment in full (no body is read).
//! - `POST /admin/orders/{id}/capture`: captures every payment of the order not captured yet.
//! - `GET /admin/payments/{id}` and `GET /admin/orders/{id}`: read them back (status queries).
//!
//! Every admin route needs `x-medusa-access-token: <token>` or `Authorization: Bearer <token>`
//! with one of [`MedusaConfig::tokens`]; otherwise `401` with the plain-text body `Unauthorized`,
//! as Medusa v1's passport middleware answers.
//!
//! Answers (`Content-Type: application/json; charset=utf-8` unless said otherwise):
//! - unknown payment or order: `404 {"type":"not_found","message":"Payment with id pay_x was not
//!   found"}` (`Order with id ... was not found` for orders);
//! - an already captured payment: `200 {"payment":{...}}` with the payment **unchanged**
//!   (idempotent, as Medusa v1's `PaymentService.capture` returns early when `captured_at` is set);
//!   this check comes first;
//! - a canceled payment: `400 {"type":"not_allowed","message":"Payment pay_x is canceled and
//!   cannot be captured"}`; a payment of a canceled order, or the order route on a canceled order:
//!   `400 {"type":"not_allowed","message":"A canceled order cannot capture payment"}` (Medusa's
//!   wording);
//! - success: `200 {"payment":{id, swap_id, cart_id, order_id, amount, amount_refunded,
//!   provider_id, captured_at, canceled_at, created_at, updated_at, currency_code, data,
//!   idempotency_key, metadata}}`, every field the API reference lists as required; `amount` is an integer
//!   in the currency's minor unit, `currency_code` lower-case, `provider_id` `manual`;
//! - the order route: `200 {"order":{id, status, payment_status, currency_code, payments:[...]}}`
//!   with `payment_status` `captured` when every payment is captured.
//!
//! # `requires_action` orders (a provider that refuses)
//! [`MedusaOrder::requires_action`] models an order whose payment provider refuses to capture.
//! Like Medusa v1's `OrderService.capturePayment`, the order route then answers **200** with
//! `payment_status: "requires_action"` and captures nothing. The payment route on one of its
//! payments answers what `PaymentService.capture` throws when the provider fails:
//! `500 {"type":"unexpected_state","message":"Failed to capture Payment pay_x"}`. A canceled
//! payment in an order that is not canceled makes the order route answer `requires_action` too
//! (its provider cannot capture it); the order's other payments are captured.
//!
//! # Deterministic time
//! Timestamps never come from the wall clock, so reports are reproducible: payments are created
//! at `2026-11-20T12:00:00.000Z`, canceled ones at `2026-11-20T13:00:00.000Z`, and the n-th
//! capture since start or reset (counting from 0) happens at `2026-11-21T09:00:00.000Z` plus n
//! seconds. `updated_at` is the latest of those for the payment.
//!
//! # Order `payment_status` on `GET`
//! `canceled` for a canceled order; `captured` when every payment is captured; `requires_action`
//! after the order route failed on it; `awaiting` otherwise (also when some payments were captured
//! one by one through the payment route: v1 does not update the order there).
//!
//! # Faults ([`crate::faults`])
//! Each capture request (either route) that passes authentication takes the next queued fault:
//! - `status`: that status with Medusa's body for it, not applied (unless `applied`): `400
//!   {"type":"invalid_data",...}`, `401` plain `Unauthorized`, `404 not_found`, `409
//!   {"type":"invalid_state_error","message":"The request conflicted with another request. ..."}`,
//!   `422 {"type":"duplicate_error","code":"invalid_request_error",...}` (the shape of the API reference's
//!   422 example), `429` as `rate_limited`, `500 {"type":"unexpected_state","message":"Failed to
//!   capture Payment pay_x"}`, `502`/`503`/`504` with a plain-text reason phrase (a proxy in front
//!   of Medusa answers those), anything else `{"type":"unknown_error","code":"unknown_error",
//!   "message":"An unknown error occurred."}`. For the order route `pay_x` is the order's first
//!   payment not captured yet;
//! - `rate_limited`: `429` plain text `Too many requests, please try again later.` with
//!   `Retry-After` = `reset_ms` rounded up to whole seconds (default 1 s); not applied (Medusa v1 has
//!   no rate limiter of its own: this is what `express-rate-limit` in front of it sends);
//! - `delay`: applied, then answered after `delay_ms`;
//! - `drop_after_apply`: applied, then the connection is dropped without an answer.
//!
//! # Sandbox control API (no authentication: bind to loopback only)
//! - `POST /_sandbox/reset` -> `204`: back to the configured payments and orders, the clock to
//!   its start, and the fault queue cleared.
//! - `GET /_sandbox/payments/{id}` -> `200` and the payment object as Medusa shows it; `GET
//!   /_sandbox/orders/{id}` -> `200` and the order object; unknown -> `404`.
//! - `POST /_sandbox/faults` (a JSON list of faults) and `DELETE /_sandbox/faults`.
//!
//! Any other path answers `404` with the plain-text body `Cannot <METHOD> <path>` (Express).

mod server;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Value, json};

use crate::emulator::{self, Emulator, Platform};
use crate::faults::FaultPlan;

/// When every payment was created.
pub const CREATED_AT: &str = "2026-11-20T12:00:00.000Z";
/// When every canceled payment was canceled.
pub const CANCELED_AT: &str = "2026-11-20T13:00:00.000Z";
/// The first capture's time; each later capture is one second later.
pub const FIRST_CAPTURE_AT: &str = "2026-11-21T09:00:00.000Z";

/// A Medusa payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedusaPayment {
    /// `pay_...`.
    pub id: String,
    /// The order it belongs to.
    pub order_id: String,
    /// Integer amount in the currency's minor unit (cents, yen, fils).
    pub amount: i64,
    /// Lower-case ISO 4217 code, e.g. `usd`.
    pub currency_code: String,
    /// When it was captured, if it was.
    pub captured_at: Option<String>,
    /// Whether it was canceled (it cannot be captured).
    pub canceled: bool,
}

impl MedusaPayment {
    /// An authorized payment, not captured, not canceled.
    pub fn new(id: &str, order_id: &str, amount: i64, currency_code: &str) -> MedusaPayment {
        MedusaPayment {
            id: id.to_owned(),
            order_id: order_id.to_owned(),
            amount,
            currency_code: currency_code.to_ascii_lowercase(),
            captured_at: None,
            canceled: false,
        }
    }

    /// The payment as Medusa's API shows it (every field the API reference marks as required).
    pub fn to_json(&self) -> Value {
        let canceled_at = self.canceled.then_some(CANCELED_AT);
        let updated_at = self.captured_at.as_deref().or(canceled_at).unwrap_or(CREATED_AT);
        json!({
            "id": self.id,
            "swap_id": null,
            "cart_id": null,
            "order_id": self.order_id,
            "amount": self.amount,
            "amount_refunded": 0,
            "provider_id": "manual",
            "captured_at": self.captured_at,
            "canceled_at": canceled_at,
            "created_at": CREATED_AT,
            "updated_at": updated_at,
            "currency_code": self.currency_code,
            "data": {},
            "idempotency_key": null,
            "metadata": null,
        })
    }
}

/// A Medusa order and its payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedusaOrder {
    /// `order_...`.
    pub id: String,
    /// Its payments, by id (ids not in [`MedusaConfig::payments`] are ignored).
    pub payment_ids: Vec<String>,
    /// Whether it was canceled.
    pub canceled: bool,
    /// Its payment provider refuses captures: the order route answers 200 with `payment_status`
    /// `requires_action`, the payment route 500 `unexpected_state` (see the module docs).
    pub requires_action: bool,
}

impl MedusaOrder {
    /// An order with these payments, not canceled.
    pub fn new(id: &str, payment_ids: &[&str]) -> MedusaOrder {
        MedusaOrder {
            id: id.to_owned(),
            payment_ids: payment_ids.iter().map(|p| (*p).to_owned()).collect(),
            canceled: false,
            requires_action: false,
        }
    }
}

/// What the emulator starts with (and returns to on reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MedusaConfig {
    /// Accepted API tokens (`x-medusa-access-token` or `Authorization: Bearer`).
    pub tokens: Vec<String>,
    /// The payments.
    pub payments: Vec<MedusaPayment>,
    /// The orders.
    pub orders: Vec<MedusaOrder>,
}

impl MedusaConfig {
    /// The demo store: token `sandbox-medusa-token` and
    ///
    /// | order    | payments (minor units)                 | notes                               |
    /// |----------|----------------------------------------|-------------------------------------|
    /// | order_01 | pay_01 usd 12000                       |                                     |
    /// | order_02 | pay_02a usd 5000, pay_02b usd 2500     | two payments: the order route       |
    /// | order_03 | pay_03 usd 1000 (canceled)             | canceled order                      |
    /// | order_04 | pay_04 jpy 15000                       | exponent 0                          |
    /// | order_05 | pay_05 usd 3000, pay_05b usd 2000      | requires_action (provider refuses)  |
    /// | order_06 | pay_06 kwd 12500                       | exponent 3                          |
    /// | order_07 | pay_07 usd 4000, captured 2026-11-20T14:00:00.000Z | already captured        |
    ///
    /// order_05 has two payments so that a full capture of it goes through the order route, which
    /// is where `requires_action` shows.
    pub fn demo() -> MedusaConfig {
        let p = MedusaPayment::new;
        let mut canceled = p("pay_03", "order_03", 1000, "usd");
        canceled.canceled = true;
        let mut captured = p("pay_07", "order_07", 4000, "usd");
        captured.captured_at = Some("2026-11-20T14:00:00.000Z".to_owned());
        let o = MedusaOrder::new;
        MedusaConfig {
            tokens: vec!["sandbox-medusa-token".to_owned()],
            payments: vec![
                p("pay_01", "order_01", 12000, "usd"),
                p("pay_02a", "order_02", 5000, "usd"),
                p("pay_02b", "order_02", 2500, "usd"),
                canceled,
                p("pay_04", "order_04", 15000, "jpy"),
                p("pay_05", "order_05", 3000, "usd"),
                p("pay_05b", "order_05", 2000, "usd"),
                p("pay_06", "order_06", 12500, "kwd"),
                captured,
            ],
            orders: vec![
                o("order_01", &["pay_01"]),
                o("order_02", &["pay_02a", "pay_02b"]),
                MedusaOrder { canceled: true, ..o("order_03", &["pay_03"]) },
                o("order_04", &["pay_04"]),
                MedusaOrder { requires_action: true, ..o("order_05", &["pay_05", "pay_05b"]) },
                o("order_06", &["pay_06"]),
                o("order_07", &["pay_07"]),
            ],
        }
    }
}

/// Why a capture was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// 404 with this message.
    NotFound(String),
    /// 400 `not_allowed` with this message.
    NotAllowed(String),
    /// 500 `unexpected_state`: the provider failed for this payment.
    ProviderFailed(String),
}

/// An order and what the emulator remembers of it.
#[derive(Debug, Clone)]
struct Booked {
    order: MedusaOrder,
    /// The order route failed on it (it shows `requires_action` until reset).
    capture_failed: bool,
}

/// The Medusa emulator's books. Opaque; read them through [`MedusaEmulator`] or the control API.
#[derive(Debug)]
pub struct State {
    config: MedusaConfig,
    payments: BTreeMap<String, MedusaPayment>,
    orders: BTreeMap<String, Booked>,
    /// Captures applied since start or reset (the deterministic clock).
    captures: u64,
}

impl Platform for State {
    const NAME: &'static str = "medusa";
    const FAULT_CODES: bool = true;

    fn reset(&mut self) {
        self.restart();
    }
}

impl State {
    fn new(config: MedusaConfig) -> State {
        let mut state = State { config, payments: BTreeMap::new(), orders: BTreeMap::new(), captures: 0 };
        state.reset();
        state
    }

    fn restart(&mut self) {
        self.payments = self.config.payments.iter().map(|p| (p.id.clone(), p.clone())).collect();
        self.orders = self
            .config
            .orders
            .iter()
            .map(|o| (o.id.clone(), Booked { order: o.clone(), capture_failed: false }))
            .collect();
        self.captures = 0;
    }

    fn token_known(&self, token: &str) -> bool {
        self.config.tokens.iter().any(|t| t == token)
    }

    /// The next capture time: [`FIRST_CAPTURE_AT`] plus one second per earlier capture.
    fn tick(&mut self) -> String {
        let seconds = (9 * 3600 + self.captures) % 86_400;
        self.captures = self.captures.saturating_add(1);
        format!("2026-11-21T{:02}:{:02}:{:02}.000Z", seconds / 3600, seconds / 60 % 60, seconds % 60)
    }

    fn order_payments(&self, order: &MedusaOrder) -> Vec<&MedusaPayment> {
        order.payment_ids.iter().filter_map(|id| self.payments.get(id)).collect()
    }

    /// The payment id a fault's message names: the given payment, or the order's first payment
    /// not captured yet (its first payment, or the order id, when there is none).
    fn fault_subject(&self, route: &Route) -> String {
        match route {
            Route::Payment(id) => id.clone(),
            Route::Order(id) => {
                let Some(booked) = self.orders.get(id) else { return id.clone() };
                let payments = self.order_payments(&booked.order);
                payments
                    .iter()
                    .find(|p| p.captured_at.is_none())
                    .or(payments.first())
                    .map_or_else(|| id.clone(), |p| p.id.clone())
            }
        }
    }

    fn capture_payment(&mut self, id: &str) -> Result<MedusaPayment, Refusal> {
        let Some(payment) = self.payments.get(id) else {
            return Err(Refusal::NotFound(format!("Payment with id {id} was not found")));
        };
        if payment.captured_at.is_some() {
            return Ok(payment.clone());
        }
        if payment.canceled {
            return Err(Refusal::NotAllowed(format!("Payment {id} is canceled and cannot be captured")));
        }
        if let Some(booked) = self.orders.get(&payment.order_id) {
            if booked.order.canceled {
                return Err(Refusal::NotAllowed("A canceled order cannot capture payment".to_owned()));
            }
            if booked.order.requires_action {
                return Err(Refusal::ProviderFailed(id.to_owned()));
            }
        }
        let at = self.tick();
        let payment = self
            .payments
            .get_mut(id)
            .ok_or_else(|| Refusal::NotFound(format!("Payment with id {id} was not found")))?;
        payment.captured_at = Some(at);
        Ok(payment.clone())
    }

    fn capture_order(&mut self, id: &str) -> Result<Value, Refusal> {
        let Some(booked) = self.orders.get(id) else {
            return Err(Refusal::NotFound(format!("Order with id {id} was not found")));
        };
        if booked.order.canceled {
            return Err(Refusal::NotAllowed("A canceled order cannot capture payment".to_owned()));
        }
        let order = booked.order.clone();
        let mut failed = false;
        for pid in &order.payment_ids {
            let capturable = match self.payments.get(pid) {
                None => continue,
                Some(p) if p.captured_at.is_some() => continue,
                Some(p) => !p.canceled && !order.requires_action,
            };
            if !capturable {
                failed = true;
                continue;
            }
            let at = self.tick();
            if let Some(p) = self.payments.get_mut(pid) {
                p.captured_at = Some(at);
            }
        }
        if let Some(booked) = self.orders.get_mut(id) {
            booked.capture_failed = failed;
        }
        self.order_json(id).ok_or_else(|| Refusal::NotFound(format!("Order with id {id} was not found")))
    }

    /// The order as Medusa shows it (a subset of its many fields), with its payments.
    fn order_json(&self, id: &str) -> Option<Value> {
        let booked = self.orders.get(id)?;
        let payments = self.order_payments(&booked.order);
        let all_captured = !payments.is_empty() && payments.iter().all(|p| p.captured_at.is_some());
        let payment_status = if booked.order.canceled {
            "canceled"
        } else if all_captured {
            "captured"
        } else if booked.capture_failed {
            "requires_action"
        } else {
            "awaiting"
        };
        Some(json!({
            "id": booked.order.id,
            "status": if booked.order.canceled { "canceled" } else { "pending" },
            "payment_status": payment_status,
            "currency_code": payments.first().map(|p| p.currency_code.clone()),
            "payments": payments.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
        }))
    }
}

/// Which capture route a request took.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Payment(String),
    Order(String),
}

type Shared = emulator::Shared<State>;

/// A running Medusa emulator: an HTTP server on a loopback port, and a handle on its books (the
/// shared scaffold, [`Emulator`], with the Medusa books).
pub type MedusaEmulator = Emulator<State>;

impl Emulator<State> {
    /// Starts the emulator on `127.0.0.1` and a free port.
    pub async fn start(config: MedusaConfig) -> std::io::Result<MedusaEmulator> {
        MedusaEmulator::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts the emulator on `addr` (port 0 picks a free port). Keep it on loopback: the control
    /// API has no authentication.
    pub async fn start_on(addr: SocketAddr, config: MedusaConfig) -> std::io::Result<MedusaEmulator> {
        Emulator::serve(addr, State::new(config), FaultPlan::default(), server::router).await
    }

    /// The payment with that id, as currently known.
    pub fn payment(&self, id: &str) -> Option<MedusaPayment> {
        self.books().payments.get(id).cloned()
    }

    /// The order with that id.
    pub fn order(&self, id: &str) -> Option<MedusaOrder> {
        self.books().orders.get(id).map(|b| b.order.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_counts_seconds_from_the_first_capture() {
        let mut state = State::new(MedusaConfig::demo());
        assert_eq!(state.tick(), FIRST_CAPTURE_AT);
        assert_eq!(state.tick(), "2026-11-21T09:00:01.000Z");
        state.captures = 61;
        assert_eq!(state.tick(), "2026-11-21T09:01:01.000Z");
        state.reset();
        assert_eq!(state.tick(), FIRST_CAPTURE_AT);
    }

    #[test]
    fn the_demo_is_consistent() {
        let config = MedusaConfig::demo();
        for order in &config.orders {
            for id in &order.payment_ids {
                let p = config.payments.iter().find(|p| &p.id == id).expect("the payment exists");
                assert_eq!(p.order_id, order.id);
            }
        }
        assert_eq!(
            config.payments.iter().map(|p| p.order_id.as_str()).filter(|o| *o == "order_02").count(),
            2
        );
    }

    #[test]
    fn a_requires_action_order_captures_nothing() {
        let mut state = State::new(MedusaConfig::demo());
        let order = state.capture_order("order_05").expect("200");
        assert_eq!(order["payment_status"], "requires_action");
        assert!(state.payments["pay_05"].captured_at.is_none());
        assert_eq!(state.capture_payment("pay_05"), Err(Refusal::ProviderFailed("pay_05".into())));
        assert_eq!(state.captures, 0);
    }
}
