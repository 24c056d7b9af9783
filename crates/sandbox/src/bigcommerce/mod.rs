//! Emulator of BigCommerce's "Capture Order Payment" and "List Transactions" endpoints, on a
//! loopback HTTP port.
//!
//! # The contract (crates/sandbox/platforms/bigcommerce.md, from BigCommerce's "Capture Order Payment" page)
//!
//! `POST /stores/{store_hash}/v3/orders/{order_id}/payment_actions/capture` with
//! `X-Auth-Token: <access_token>` and the body `{}` captures the order's whole authorized payment,
//! asynchronously: the answer is `201 {}`, the order's `payment_status` becomes `capture pending`
//! and the payment request is scheduled. `GET /stores/{store_hash}/v3/orders/{order_id}/transactions`
//! lists the order's transactions: `200 {"data":[...],"meta":{"pagination":{...}}}`, or `204` with
//! no body when there are none. Errors are `{"status","title","type"}`; a 422 adds
//! `"errors":{field: message}`. `type` is always
//! `https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes`.
//!
//! # Checks, in order (both routes)
//! 1. **Token**: `X-Auth-Token` must be one of [`BigCommerceConfig::tokens`], else `401`
//!    (title `Unauthorized: the X-Auth-Token is missing or not valid for this store`). A token
//!    unknown to every store cannot name one, so this comes before the store check.
//! 2. **Store**: the `{store_hash}` must be [`BigCommerceConfig::store_hash`] (compared exactly),
//!    else `404` (title `Store <hash> not found`).
//! 3. **Order**: `{order_id}` must be a canonical positive integer (`100`, not `0100` or `ORD-1`)
//!    naming a known order, else `404` (title `Order <id> not found`): an id that is not an integer
//!    names no order.
//! 4. **Body** (capture only): empty, or a JSON object whose fields are ignored (the documented
//!    body is `{}`); anything else is `400` (title `The request body must be a JSON object`).
//!    `Content-Type` and `Accept` are not enforced (the page says `Accept` defaults to JSON).
//! 5. **State** (capture only): only an order whose `payment_status` is `authorized` can be
//!    captured; any other is `422` with title `The order's payment cannot be captured in its
//!    current state` and `errors.payment_status` naming the status, e.g.
//!    `payment_status is 'captured'; only 'authorized' payments can be captured`. A second capture
//!    of the same order is therefore a 422 (`capture pending` or `captured`): nothing is captured twice.
//!
//! # Transactions and settlement (choices the documentation leaves open)
//! - The emulator starts each order with the transactions its `payment_status` implies:
//!   `authorized` has an `authorization` (status `ok`) for the total; `captured` has that plus a
//!   `capture` (`ok`); `capture pending` has that plus a `pending` (`ok`); any other status has
//!   none (its transactions answer is `204`).
//! - A successful capture records a `pending` transaction (status `ok`, the order total) that
//!   refers to the authorization, and sets `payment_status` to `capture pending`.
//! - Each transactions read of an order in `capture pending` counts; the read that brings the
//!   count to [`BigCommerceConfig::settle_after_reads`] settles the capture before answering: a
//!   `capture` transaction is recorded (status `ok`, the order total) and `payment_status`
//!   becomes `captured`. With `settle_after_reads` 0 the capture settles at once, inside the
//!   capture request (the answer is still `201 {}`). [`BigCommerceEmulator::decline_on_settle`]
//!   makes an order's settlement fail instead: the `capture` transaction has status `error` and
//!   `payment_status` becomes `declined`.
//! - Transaction ids count from 1 across the store, in the order created (the configured
//!   orders' initial transactions first). Amounts are JSON numbers written from the decimal's
//!   text with the currency's places (`120.00`, `15000`, `12.500`), never through a float. Every
//!   transaction has `method` `credit_card`, `gateway` `testgateway`, `gateway_transaction_id`
//!   `sandbox-<id>`, `test` true, `offline` false, `fraud_review` false and the fixed
//!   `date_created` [`DATE_CREATED`] (a sandbox has no business reading the clock: reports stay
//!   stable).
//! - The list is never paged: one page holds every transaction (`per_page` is 50 or the count if
//!   larger); `page`/`limit` query parameters are ignored.
//!
//! # Faults (see [`crate::faults`])
//! Each capture request takes the next queued fault; transactions reads take none. A fault that
//! does not apply (`status` without `applied`, `rate_limited`) answers at once, before any check,
//! as BigCommerce's gateway would: `status` with the error body and the status's reason phrase as
//! title; `rate_limited` with `429`, `X-Rate-Limit-Requests-Left: 0`,
//! `X-Rate-Limit-Time-Reset-Ms: <reset_ms>` (1000 if unset), `X-Rate-Limit-Requests-Quota: 150`,
//! `X-Rate-Limit-Time-Window-Ms: 30000` and `X-Retry-After` (the reset in whole seconds, rounded
//! up). A fault that applies runs the capture first, then: `status` with `applied` answers the
//! error status instead of the capture's answer (whatever that was, as a gateway error hides the
//! origin's answer); `delay` answers the capture's own answer after `delay_ms`;
//! `drop_after_apply` drops the connection.
//!
//! # Sandbox control API (no authentication: bind to loopback only)
//! - `POST /_sandbox/reset` -> `204`: the configured orders and their initial transactions, no
//!   queued faults, no declines, read counts at zero.
//! - `POST /_sandbox/faults` (a JSON list of faults) and `DELETE /_sandbox/faults` -> `204`.
//! - `GET /_sandbox/orders/{id}` -> `200 {"id","currency","total","payment_status",
//!   "transaction_reads","transactions":[...]}` (`total` a decimal string; the transactions as the
//!   API lists them; reading it does not count as a transactions read); unknown -> `404`.
//!
//! Any other path answers `404` (title `Route not found`); a known path with another method `405`.

mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

use capture_core::Currency;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::emulator::{self, Emulator, Platform};
use crate::faults::FaultPlan;

/// The `date_created` of every transaction the emulator records.
pub const DATE_CREATED: &str = "2026-01-01T00:00:00+00:00";

/// An order of the store, with its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigCommerceOrder {
    /// The order id (BigCommerce ids are integers).
    pub id: u64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
    /// The order total, which is what a capture takes.
    pub total: Decimal,
    /// The order's `payment_status`: `authorized`, `captured`, `capture pending`, `declined`,
    /// `void`, ... (see the module documentation for what each starts with).
    pub payment_status: String,
}

impl BigCommerceOrder {
    /// An order.
    pub fn new(
        id: u64,
        currency: impl Into<String>,
        total: Decimal,
        payment_status: impl Into<String>,
    ) -> BigCommerceOrder {
        BigCommerceOrder { id, currency: currency.into(), total, payment_status: payment_status.into() }
    }
}

/// What the emulator starts with (and returns to on reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BigCommerceConfig {
    /// The store's hash, the `{store_hash}` of every path.
    pub store_hash: String,
    /// Accepted `X-Auth-Token` values.
    pub tokens: Vec<String>,
    /// The orders.
    pub orders: Vec<BigCommerceOrder>,
    /// A `capture pending` order settles on this many transactions reads (0: at once).
    pub settle_after_reads: u32,
}

impl BigCommerceConfig {
    /// Store `abc123`, token `sandbox-bigcommerce-token`, settling on the first read, and:
    ///
    /// | id  | currency | total  | payment_status |
    /// |-----|----------|--------|----------------|
    /// | 100 | USD      | 120.00 | authorized     |
    /// | 101 | USD      | 80.00  | authorized     |
    /// | 102 | JPY      | 15000  | authorized     |
    /// | 103 | USD      | 50.00  | captured       |
    /// | 104 | KWD      | 12.500 | authorized     |
    pub fn demo() -> BigCommerceConfig {
        BigCommerceConfig {
            store_hash: "abc123".to_owned(),
            tokens: vec!["sandbox-bigcommerce-token".to_owned()],
            orders: vec![
                BigCommerceOrder::new(100, "USD", Decimal::new(12000, 2), "authorized"),
                BigCommerceOrder::new(101, "USD", Decimal::new(8000, 2), "authorized"),
                BigCommerceOrder::new(102, "JPY", Decimal::new(15000, 0), "authorized"),
                BigCommerceOrder::new(103, "USD", Decimal::new(5000, 2), "captured"),
                BigCommerceOrder::new(104, "KWD", Decimal::new(12500, 3), "authorized"),
            ],
            settle_after_reads: 1,
        }
    }
}

/// One transaction of an order, as the emulator's books hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigCommerceTransaction {
    /// Transaction id, unique in the store.
    pub id: u64,
    /// The order it belongs to.
    pub order_id: u64,
    /// `authorization`, `pending`, `capture`...
    pub event: String,
    /// `ok` or `error`.
    pub status: String,
    /// The amount, with the currency's places.
    pub amount: Decimal,
    /// ISO 4217 code.
    pub currency: String,
    /// The transaction this one follows (a capture's authorization), if any.
    pub reference_transaction_id: Option<u64>,
}

impl BigCommerceTransaction {
    /// The transaction as the API lists it.
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "order_id": self.order_id,
            "event": self.event,
            "method": "credit_card",
            "amount": json_number(self.amount),
            "currency": self.currency,
            "gateway": "testgateway",
            "gateway_transaction_id": format!("sandbox-{}", self.id),
            "date_created": DATE_CREATED,
            "test": true,
            "status": self.status,
            "fraud_review": false,
            "reference_transaction_id": self.reference_transaction_id,
            "offline": false,
        })
    }
}

/// A decimal as a JSON number with exactly its text (no float on the way).
fn json_number(amount: Decimal) -> Value {
    let text = amount.to_string();
    serde_json::Number::from_str(&text).map(Value::Number).unwrap_or(Value::String(text))
}

/// `amount` with exactly the currency's places when the currency is known (`120` USD -> `120.00`).
fn in_currency(amount: Decimal, currency: &str) -> Decimal {
    let mut amount = amount;
    if let Ok(c) = Currency::from_code(currency) {
        amount.rescale(c.exponent());
    }
    amount
}

/// Why a capture was refused after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    StoreNotFound(String),
    OrderNotFound(String),
    NotCapturable(String),
}

/// An order and its books.
#[derive(Debug, Clone)]
struct Booked {
    order: BigCommerceOrder,
    transactions: Vec<BigCommerceTransaction>,
    /// Transactions reads since the capture went pending.
    reads: u32,
}

impl Booked {
    fn to_json(&self) -> Value {
        json!({
            "id": self.order.id,
            "currency": self.order.currency,
            "total": self.order.total.to_string(),
            "payment_status": self.order.payment_status,
            "transaction_reads": self.reads,
            "transactions": self.transactions.iter().map(BigCommerceTransaction::to_json).collect::<Vec<_>>(),
        })
    }
}

/// The BigCommerce emulator's books. Opaque; read them through [`BigCommerceEmulator`] or the control API.
#[derive(Debug)]
pub struct State {
    config: BigCommerceConfig,
    orders: BTreeMap<u64, Booked>,
    next_id: u64,
    declines: BTreeSet<u64>,
}

impl Platform for State {
    const NAME: &'static str = "bigcommerce";
    const FAULT_CODES: bool = false;

    fn reset(&mut self) {
        self.restart();
    }
}

impl State {
    fn new(config: BigCommerceConfig) -> State {
        let mut state = State { config, orders: BTreeMap::new(), next_id: 1, declines: BTreeSet::new() };
        state.reset();
        state
    }

    fn restart(&mut self) {
        self.orders.clear();
        self.declines.clear();
        self.next_id = 1;
        for order in self.config.orders.clone() {
            let mut order = order;
            order.total = in_currency(order.total, &order.currency);
            let mut booked = Booked { order, transactions: Vec::new(), reads: 0 };
            let status = booked.order.payment_status.clone();
            if matches!(status.as_str(), "authorized" | "captured" | "capture pending") {
                let auth = self.record(&mut booked, "authorization", "ok", None);
                match status.as_str() {
                    "captured" => {
                        self.record(&mut booked, "capture", "ok", Some(auth));
                    }
                    "capture pending" => {
                        self.record(&mut booked, "pending", "ok", Some(auth));
                    }
                    _ => {}
                }
            }
            self.orders.insert(booked.order.id, booked);
        }
    }

    /// Records a transaction for the order's total; returns its id.
    fn record(&mut self, booked: &mut Booked, event: &str, status: &str, reference: Option<u64>) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        booked.transactions.push(BigCommerceTransaction {
            id,
            order_id: booked.order.id,
            event: event.to_owned(),
            status: status.to_owned(),
            amount: booked.order.total,
            currency: booked.order.currency.clone(),
            reference_transaction_id: reference,
        });
        id
    }

    fn token_known(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.config.tokens.iter().any(|known| known == t))
    }

    /// Checks the store and the order; returns the order id.
    fn find(&self, store_hash: &str, order_id: &str) -> Result<u64, Refusal> {
        if store_hash != self.config.store_hash {
            return Err(Refusal::StoreNotFound(store_hash.to_owned()));
        }
        let canonical = !order_id.is_empty()
            && order_id.bytes().all(|b| b.is_ascii_digit())
            && !order_id.starts_with('0');
        canonical
            .then(|| order_id.parse::<u64>().ok())
            .flatten()
            .filter(|id| self.orders.contains_key(id))
            .ok_or_else(|| Refusal::OrderNotFound(order_id.to_owned()))
    }

    /// Captures an authorized order: `capture pending` and a `pending` transaction.
    fn capture(&mut self, id: u64) -> Result<(), Refusal> {
        let settle_now = self.config.settle_after_reads == 0;
        let mut booked = self.orders.remove(&id).ok_or_else(|| Refusal::OrderNotFound(id.to_string()))?;
        let result = if booked.order.payment_status == "authorized" {
            let auth = booked.transactions.iter().rev().find(|t| t.event == "authorization").map(|t| t.id);
            self.record(&mut booked, "pending", "ok", auth);
            booked.order.payment_status = "capture pending".to_owned();
            booked.reads = 0;
            if settle_now {
                self.settle(&mut booked);
            }
            Ok(())
        } else {
            Err(Refusal::NotCapturable(booked.order.payment_status.clone()))
        };
        self.orders.insert(id, booked);
        result
    }

    /// The pending capture's final state: captured, or declined for the orders asked to decline.
    fn settle(&mut self, booked: &mut Booked) {
        let auth = booked.transactions.iter().rev().find(|t| t.event == "authorization").map(|t| t.id);
        if self.declines.contains(&booked.order.id) {
            self.record(booked, "capture", "error", auth);
            booked.order.payment_status = "declined".to_owned();
        } else {
            self.record(booked, "capture", "ok", auth);
            booked.order.payment_status = "captured".to_owned();
        }
    }

    /// A transactions read: counts for a pending capture, settles it on the configured read.
    fn read_transactions(&mut self, id: u64) -> Vec<BigCommerceTransaction> {
        let Some(mut booked) = self.orders.remove(&id) else {
            return Vec::new();
        };
        if booked.order.payment_status == "capture pending" {
            booked.reads = booked.reads.saturating_add(1);
            if booked.reads >= self.config.settle_after_reads {
                self.settle(&mut booked);
            }
        }
        let list = booked.transactions.clone();
        self.orders.insert(id, booked);
        list
    }
}

type Shared = emulator::Shared<State>;

/// A running BigCommerce emulator: an HTTP server on a loopback port, and a handle on its books (the
/// shared scaffold, [`Emulator`], with the BigCommerce books).
pub type BigCommerceEmulator = Emulator<State>;

impl Emulator<State> {
    /// Starts the emulator on `127.0.0.1` and a free port.
    pub async fn start(config: BigCommerceConfig) -> std::io::Result<BigCommerceEmulator> {
        BigCommerceEmulator::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts the emulator on `addr` (port 0 picks a free port). Keep it on loopback: the control
    /// API has no authentication.
    pub async fn start_on(
        addr: SocketAddr,
        config: BigCommerceConfig,
    ) -> std::io::Result<BigCommerceEmulator> {
        Emulator::serve(addr, State::new(config), FaultPlan::default(), server::router).await
    }

    /// The order's `payment_status` now (`None` for an unknown order). Does not count as a read.
    pub fn payment_status(&self, order_id: u64) -> Option<String> {
        self.books().orders.get(&order_id).map(|b| b.order.payment_status.clone())
    }

    /// The order's transactions, oldest first (empty for an unknown order). Does not count as a
    /// read.
    pub fn transactions(&self, order_id: u64) -> Vec<BigCommerceTransaction> {
        self.books().orders.get(&order_id).map(|b| b.transactions.clone()).unwrap_or_default()
    }

    /// Makes the order's pending capture settle as declined (until the next reset).
    pub fn decline_on_settle(&self, order_id: u64) {
        self.books().declines.insert(order_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_orders_start_with_their_transactions() {
        let state = State::new(BigCommerceConfig::demo());
        let events = |id: u64| -> Vec<(u64, String, String)> {
            state.orders[&id].transactions.iter().map(|t| (t.id, t.event.clone(), t.status.clone())).collect()
        };
        assert_eq!(events(100), [(1, "authorization".to_owned(), "ok".to_owned())]);
        assert_eq!(
            events(103),
            [(4, "authorization".to_owned(), "ok".to_owned()), (5, "capture".to_owned(), "ok".to_owned())]
        );
        assert_eq!(state.orders[&104].order.total.to_string(), "12.500");
        assert_eq!(state.orders[&102].transactions[0].amount.to_string(), "15000");
    }

    #[test]
    fn a_capture_settles_on_the_configured_read() {
        let mut config = BigCommerceConfig::demo();
        config.settle_after_reads = 2;
        let mut state = State::new(config);
        assert_eq!(state.capture(100), Ok(()));
        assert_eq!(state.orders[&100].order.payment_status, "capture pending");
        assert_eq!(state.capture(100), Err(Refusal::NotCapturable("capture pending".to_owned())));
        assert_eq!(state.read_transactions(100).len(), 2);
        assert_eq!(state.orders[&100].order.payment_status, "capture pending");
        let after = state.read_transactions(100);
        assert_eq!(after.last().map(|t| (t.event.as_str(), t.status.as_str())), Some(("capture", "ok")));
        assert_eq!(after.last().and_then(|t| t.reference_transaction_id), Some(1));
        assert_eq!(state.orders[&100].order.payment_status, "captured");
    }

    #[test]
    fn zero_reads_settles_inside_the_capture_and_declines_are_errors() {
        let mut config = BigCommerceConfig::demo();
        config.settle_after_reads = 0;
        let mut state = State::new(config);
        state.declines.insert(101);
        assert_eq!(state.capture(100), Ok(()));
        assert_eq!(state.orders[&100].order.payment_status, "captured");
        assert_eq!(state.capture(101), Ok(()));
        assert_eq!(state.orders[&101].order.payment_status, "declined");
        assert_eq!(state.orders[&101].transactions.last().map(|t| t.status.as_str()), Some("error"));
    }

    #[test]
    fn order_ids_must_be_canonical_integers_of_the_store() {
        let state = State::new(BigCommerceConfig::demo());
        assert_eq!(state.find("abc123", "100"), Ok(100));
        for bad in ["0100", "+100", "ORD-1", "", "999", "100.0"] {
            assert_eq!(state.find("abc123", bad), Err(Refusal::OrderNotFound(bad.to_owned())), "{bad}");
        }
        assert_eq!(state.find("ABC123", "100"), Err(Refusal::StoreNotFound("ABC123".to_owned())));
    }

    #[test]
    fn amounts_are_json_numbers_with_the_exact_text() {
        assert_eq!(json_number(Decimal::new(12000, 2)).to_string(), "120.00");
        assert_eq!(json_number(Decimal::new(12500, 3)).to_string(), "12.500");
        assert_eq!(in_currency(Decimal::new(120, 0), "USD").to_string(), "120.00");
    }
}
