//! Emulator of the Optty Merchant API capture endpoint, on a loopback HTTP port.
//!
//! # The capture endpoint (the contract: crates/sandbox/platforms/optty.md, from Optty's "capture an order" page)
//!
//! `POST /orders/{orderReference}/capture` with `Authorization: Bearer <token>` and a JSON body
//! `{captureReference, description?, amount, shippingInfo?}`. Optty runs NestJS, so the emulator
//! answers the way a NestJS application does, in the same order:
//!
//! 1. **Body parsing** (Express `body-parser`, which runs before any guard): a body sent as
//!    `application/json` that is not JSON, or whose top level is a bare string, number, boolean or
//!    `null`, is refused with `400 {"statusCode":400,"message":["Body must be valid JSON: ..."],
//!    "error":"Bad Request"}`. Real NestJS sends that message as a string; the emulator sends a
//!    one-element list like every other validation failure (connectors must accept both shapes).
//!    A body sent without a JSON `Content-Type` is ignored (read as `{}`), as Express does, so it
//!    then fails validation naming the required fields. An empty body is `{}` too.
//! 2. **Authentication** (the guard): the bearer token must be one of [`OpttyConfig::tokens`];
//!    otherwise `401 {"statusCode":401,"message":"Unauthorized"}`. The scheme `Bearer` is
//!    case-insensitive, as in `passport-jwt`.
//! 3. **Validation** (`ValidationPipe` with `class-validator`): every failure is listed, in the
//!    order of the DTO's fields, in `400 {"statusCode":400,"message":[...],"error":"Bad Request"}`.
//!    The messages are class-validator's:
//!    - `captureReference should not be empty`, `captureReference must be a string`;
//!    - `description must be a string`;
//!    - `amount must not be less than 0`,
//!      `amount must be a number conforming to the specified constraints` (not a JSON number, e.g.
//!      `"100.00"`; more than 2 decimal places, counted as JavaScript does, so `100.100` is fine;
//!      out of range);
//!    - `shippingInfo.shippingCompany must be a string` (likewise `shippingMethod`,
//!      `trackingNumber`), `nested property shippingInfo must be either object or array` for a
//!      scalar, `shippingInfo must be an object` for an array.
//!
//!    Unknown properties are dropped silently (`whitelist: true`); `null` counts as absent for the
//!    optional fields. The amount is read from the JSON number's exact text (serde_json's
//!    `arbitrary_precision`), never through a float.
//! 4. **The order**: unknown `orderReference` -> `404 {"statusCode":404,"message":"Order <ref> not
//!    found"}`. Every order is visible to every configured token.
//! 5. **Business rules**, checked in this order, each `400 {"statusCode":400,"message":"<sentence>"}`:
//!    - `captureReference <ref> has already been used`: the reference was already accepted for this
//!      merchant. The documentation says "unique per merchant and transaction"; the emulator takes
//!      the stricter reading (unique across all of the merchant's orders). A repeated reference is
//!      refused even when the rest of the request is identical: there is no idempotent replay, and
//!      nothing is recorded twice.
//!    - `Capture amount exceeds the remaining authorized amount of <remaining>` when the captures so
//!      far plus this one would exceed order amount + surcharge; `<remaining>` has 2 places
//!      (`0.00`), no currency.
//!    - `Partial capture is not supported for payment method <method>` when the amount is not
//!      exactly the remaining amount (order amount + surcharge - captured so far) and the payment
//!      method does not support partial capture (see [`PAYMENT_METHODS`]).
//!
//!    A capture of `0` is allowed where the rules allow it (the documented minimum is 0).
//! 6. **Success**: `200 {"captureReference":"<ref>","captureId":"<id>","capturedAmount":<number>}`;
//!    `capturedAmount` is a JSON number with exactly 2 decimal places (`120.00`), written from the
//!    decimal's text, never a float. `captureId` is deterministic: `cap_<orderReference>_<n>` with
//!    `n` counting the order's accepted captures from 1. The capture is final at once (the real
//!    platform may settle later; the emulator has no pending state).
//!
//! Any other method or path answers `404 {"statusCode":404,"message":"Cannot <METHOD> <path>"}`.
//! Amounts are 2-decimal values in the order's currency; the currency is kept but not checked
//! against anything (the request carries none).
//!
//! # Payment methods
//!
//! Optty does not publish which payment methods support partial capture. The emulator's table
//! ([`PAYMENT_METHODS`]): `afterpay`, `zip`, `humm`, `latitude` do; `klarna-pay-in-full`,
//! `openpay`, `laybuy` do not. A method not in the table (possible only through
//! [`OpttyEmulator::add_order`]) is treated as not supporting partial capture.
//!
//! # Sandbox control API (no authentication: bind to loopback only)
//!
//! - `POST /_sandbox/reset` -> `204`: back to the orders the emulator was started with, no captures.
//! - `POST /_sandbox/orders` with `{"orderReference", "currency", "amount", "surcharge"?,
//!   "paymentMethod"}` -> `201` and the order as `GET` shows it. Amounts are decimal strings or JSON
//!   numbers, `>= 0`, at most 2 places; `surcharge` defaults to `0.00`; the currency must be an ISO
//!   4217 code (stored upper-case); the payment method must be in [`PAYMENT_METHODS`]. An existing
//!   order with the same reference is replaced and its captures are discarded. Errors:
//!   `400 {"statusCode":400,"message":[...]}`.
//! - `GET /_sandbox/orders/{ref}` -> `200 {"orderReference", "currency", "amount", "surcharge",
//!   "paymentMethod", "captured", "remaining", "captures":[{"captureReference", "captureId",
//!   "amount", "description", "shippingInfo"}]}` with every amount a 2-place decimal string;
//!   unknown -> `404`.

mod server;
mod validation;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use rust_decimal::Decimal;

use crate::emulator::{self, Emulator, Platform};
use crate::faults::FaultPlan;

/// Payment methods the emulator knows, with whether each supports partial capture.
///
/// The real list is not public; this is the emulator's choice (see the module documentation).
pub const PAYMENT_METHODS: &[(&str, bool)] = &[
    ("afterpay", true),
    ("zip", true),
    ("humm", true),
    ("latitude", true),
    ("klarna-pay-in-full", false),
    ("openpay", false),
    ("laybuy", false),
];

/// Whether `payment_method` supports partial capture in the emulator (unknown methods do not).
pub fn supports_partial_capture(payment_method: &str) -> bool {
    PAYMENT_METHODS.iter().any(|(m, partial)| *m == payment_method && *partial)
}

/// An authorized order waiting to be captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpttyOrder {
    /// Optty's order reference, the `{orderReference}` of the capture path.
    pub reference: String,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
    /// The order amount (2 decimal places).
    pub amount: Decimal,
    /// The surcharge; a full capture is `amount + surcharge`.
    pub surcharge: Decimal,
    /// The payment method, e.g. `afterpay` (see [`PAYMENT_METHODS`]).
    pub payment_method: String,
}

impl OpttyOrder {
    /// An order; `amount` and `surcharge` are decimals with at most 2 places.
    pub fn new(
        reference: impl Into<String>,
        currency: impl Into<String>,
        amount: Decimal,
        surcharge: Decimal,
        payment_method: impl Into<String>,
    ) -> OpttyOrder {
        OpttyOrder {
            reference: reference.into(),
            currency: currency.into(),
            amount,
            surcharge,
            payment_method: payment_method.into(),
        }
    }

    /// `amount + surcharge`, the most that can be captured in total (`None` on overflow).
    pub fn total(&self) -> Option<Decimal> {
        self.amount.checked_add(self.surcharge)
    }
}

/// What the emulator starts with (and returns to on reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpttyConfig {
    /// Accepted bearer tokens, each with the merchant id it authenticates.
    pub tokens: Vec<(String, String)>,
    /// The authorized orders.
    pub orders: Vec<OpttyOrder>,
}

impl OpttyConfig {
    /// The demo merchant `m_demo` with token `sandbox-optty-token` and six orders:
    ///
    /// | reference | currency | amount  | surcharge | payment method       |
    /// |-----------|----------|---------|-----------|----------------------|
    /// | ORD-1001  | USD      | 120.00  | 0.00      | afterpay             |
    /// | ORD-1002  | USD      | 80.00   | 2.50      | afterpay             |
    /// | ORD-1003  | USD      | 2500.00 | 0.00      | afterpay             |
    /// | ORD-1004  | USD      | 60.00   | 0.00      | klarna-pay-in-full   |
    /// | ORD-1005  | USD      | 45.00   | 0.00      | zip                  |
    /// | ORD-1006  | AUD      | 99.95   | 1.05      | humm                 |
    pub fn demo() -> OpttyConfig {
        let cents = |c: i64| Decimal::new(c, 2);
        let order =
            |r: &str, cur: &str, a: i64, s: i64, m: &str| OpttyOrder::new(r, cur, cents(a), cents(s), m);
        OpttyConfig {
            tokens: vec![("sandbox-optty-token".to_owned(), "m_demo".to_owned())],
            orders: vec![
                order("ORD-1001", "USD", 12000, 0, "afterpay"),
                order("ORD-1002", "USD", 8000, 250, "afterpay"),
                order("ORD-1003", "USD", 250000, 0, "afterpay"),
                order("ORD-1004", "USD", 6000, 0, "klarna-pay-in-full"),
                order("ORD-1005", "USD", 4500, 0, "zip"),
                order("ORD-1006", "AUD", 9995, 105, "humm"),
            ],
        }
    }
}

/// One capture the emulator accepted (its books).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCapture {
    /// The merchant's `captureReference`.
    pub capture_reference: String,
    /// The id the emulator returned, `cap_<orderReference>_<n>`.
    pub capture_id: String,
    /// The captured amount, 2 decimal places.
    pub amount: Decimal,
    /// The request's `description`, if any.
    pub description: Option<String>,
    /// The request's `shippingInfo` (its three fields only), if any.
    pub shipping_info: Option<serde_json::Value>,
}

/// Why a capture was refused after validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CaptureError {
    #[error("Order {0} not found")]
    OrderNotFound(String),
    #[error("captureReference {0} has already been used")]
    ReferenceUsed(String),
    #[error("Capture amount exceeds the remaining authorized amount of {}", two_places(*.0))]
    ExceedsRemaining(Decimal),
    #[error("Partial capture is not supported for payment method {0}")]
    PartialNotSupported(String),
}

/// A validated capture request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CaptureRequest {
    capture_reference: String,
    description: Option<String>,
    amount: Decimal,
    shipping_info: Option<serde_json::Value>,
}

/// An order and the captures accepted against it.
#[derive(Debug, Clone)]
struct Booked {
    order: OpttyOrder,
    /// `(merchant id, capture)`, in the order accepted.
    captures: Vec<(String, RecordedCapture)>,
}

impl Booked {
    fn captured(&self) -> Decimal {
        self.captures.iter().fold(Decimal::ZERO, |sum, (_, c)| sum.saturating_add(c.amount))
    }

    fn remaining(&self) -> Decimal {
        self.order.total().unwrap_or(Decimal::MAX).saturating_sub(self.captured())
    }
}

/// The Optty emulator's books: orders, their captures, and the references already used.
/// Opaque; read them through [`OpttyEmulator`] or the control API.
#[derive(Debug)]
pub struct State {
    config: OpttyConfig,
    orders: BTreeMap<String, Booked>,
    /// Every `(merchant, captureReference)` accepted, so the uniqueness check is a lookup.
    references: BTreeSet<(String, String)>,
    faults: FaultPlan,
}

impl Platform for State {
    const NAME: &'static str = "optty";
    const FAULT_CODES: bool = false;

    fn reset(&mut self) {
        self.faults.clear();
        self.orders.clear();
        self.references.clear();
        for order in self.config.orders.clone() {
            self.put_order(order);
        }
    }
}

impl State {
    fn new(config: OpttyConfig, faults: FaultPlan) -> State {
        let mut state = State { config, orders: BTreeMap::new(), references: BTreeSet::new(), faults };
        state.reset();
        state
    }

    fn put_order(&mut self, mut order: OpttyOrder) {
        order.amount = two_places(order.amount);
        order.surcharge = two_places(order.surcharge);
        let replaced = self.orders.insert(order.reference.clone(), Booked { order, captures: Vec::new() });
        // The replaced order's captures are discarded, and with them their references.
        for (merchant, capture) in replaced.map(|b| b.captures).unwrap_or_default() {
            self.references.remove(&(merchant, capture.capture_reference));
        }
    }

    fn merchant_for_token(&self, token: &str) -> Option<String> {
        self.config.tokens.iter().find(|(t, _)| t == token).map(|(_, m)| m.clone())
    }

    fn capture(
        &mut self,
        merchant: &str,
        order_reference: &str,
        request: CaptureRequest,
    ) -> Result<RecordedCapture, CaptureError> {
        if !self.orders.contains_key(order_reference) {
            return Err(CaptureError::OrderNotFound(order_reference.to_owned()));
        }
        let key = (merchant.to_owned(), request.capture_reference.clone());
        if self.references.contains(&key) {
            return Err(CaptureError::ReferenceUsed(request.capture_reference));
        }
        let booked = self
            .orders
            .get_mut(order_reference)
            .ok_or_else(|| CaptureError::OrderNotFound(order_reference.to_owned()))?;
        let remaining = booked.remaining();
        if request.amount > remaining {
            return Err(CaptureError::ExceedsRemaining(remaining));
        }
        if request.amount != remaining && !supports_partial_capture(&booked.order.payment_method) {
            return Err(CaptureError::PartialNotSupported(booked.order.payment_method.clone()));
        }
        let capture = RecordedCapture {
            capture_id: format!("cap_{}_{}", order_reference, booked.captures.len().saturating_add(1)),
            capture_reference: request.capture_reference,
            amount: two_places(request.amount),
            description: request.description,
            shipping_info: request.shipping_info,
        };
        booked.captures.push((merchant.to_owned(), capture.clone()));
        self.references.insert(key);
        Ok(capture)
    }
}

/// `amount` with at least 2 decimal places (`100.1` -> `100.10`), and `-0` as `0.00`.
fn two_places(amount: Decimal) -> Decimal {
    let mut amount = if amount.is_zero() { Decimal::ZERO } else { amount };
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount
}

type Shared = emulator::Shared<State>;

/// A running Optty emulator: an HTTP server task on a loopback port, and a handle on its books
/// (the shared scaffold, [`Emulator`], with the Optty books).
pub type OpttyEmulator = Emulator<State>;

impl Emulator<State> {
    /// Starts the emulator on `127.0.0.1` and a free port.
    pub async fn start(config: OpttyConfig) -> std::io::Result<OpttyEmulator> {
        OpttyEmulator::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts the emulator on `addr` (port 0 picks a free port). Keep it on loopback: the control
    /// API has no authentication.
    pub async fn start_on(addr: SocketAddr, config: OpttyConfig) -> std::io::Result<OpttyEmulator> {
        let faults = FaultPlan::default();
        let state = State::new(config, faults.clone());
        Emulator::serve(addr, state, faults, |state, _| server::router(state)).await
    }

    /// The captures accepted for an order, in order (empty for an unknown order).
    pub fn captures(&self, order_reference: &str) -> Vec<RecordedCapture> {
        self.books()
            .orders
            .get(order_reference)
            .map(|b| b.captures.iter().map(|(_, c)| c.clone()).collect())
            .unwrap_or_default()
    }

    /// The order with that reference, as currently known.
    pub fn order(&self, order_reference: &str) -> Option<OpttyOrder> {
        self.books().orders.get(order_reference).map(|b| b.order.clone())
    }

    /// Adds an order, or replaces the one with the same reference (discarding its captures).
    /// Amounts with fewer than 2 places are shown with 2. Lasts until the next reset.
    pub fn add_order(&self, order: OpttyOrder) {
        self.books().put_order(order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reference: &str, cents: i64) -> CaptureRequest {
        CaptureRequest {
            capture_reference: reference.to_owned(),
            description: None,
            amount: Decimal::new(cents, 2),
            shipping_info: None,
        }
    }

    /// The `(merchant, captureReference)` pairs the books hold, found by scanning every order.
    fn scanned(state: &State) -> BTreeSet<(String, String)> {
        state
            .orders
            .values()
            .flat_map(|b| b.captures.iter().map(|(m, c)| (m.clone(), c.capture_reference.clone())))
            .collect()
    }

    fn many_orders(n: usize) -> State {
        let orders = (0..n)
            .map(|i| {
                OpttyOrder::new(format!("ORD-{i}"), "USD", Decimal::new(10_000, 2), Decimal::ZERO, "zip")
            })
            .collect();
        let config = OpttyConfig { tokens: vec![("t".into(), "m_1".into())], orders };
        State::new(config, FaultPlan::default())
    }

    #[test]
    fn the_reference_index_holds_every_accepted_reference_and_only_those() {
        let mut state = many_orders(2_000);
        for i in 0..2_000 {
            let order = format!("ORD-{i}");
            state.capture("m_1", &order, request(&format!("ref-{i}-a"), 4_000)).expect("first capture");
            state.capture("m_1", &order, request(&format!("ref-{i}-b"), 1_000)).expect("second capture");
        }
        assert_eq!(state.references.len(), 4_000);
        assert_eq!(state.references, scanned(&state));
        // A reference is unique per merchant, across orders; another merchant may use it.
        let used = state.capture("m_1", "ORD-7", request("ref-1999-b", 100));
        assert_eq!(used, Err(CaptureError::ReferenceUsed("ref-1999-b".into())));
        state.capture("m_2", "ORD-7", request("ref-1999-b", 100)).expect("another merchant's reference");
        // A refused capture (amount over what remains) leaves the index as it was.
        let over = state.capture("m_1", "ORD-8", request("ref-new", 1_000_000));
        assert!(matches!(over, Err(CaptureError::ExceedsRemaining(_))), "{over:?}");
        assert_eq!(state.references, scanned(&state));
        // Replacing an order drops its captures and frees their references.
        state.put_order(OpttyOrder::new("ORD-3", "USD", Decimal::new(500, 2), Decimal::ZERO, "zip"));
        assert_eq!(state.references, scanned(&state));
        state.capture("m_1", "ORD-4", request("ref-3-a", 100)).expect("a freed reference is usable again");
        assert_eq!(state.references, scanned(&state));
        state.reset();
        assert!(state.references.is_empty());
        assert_eq!(state.references, scanned(&state));
    }

    #[test]
    fn the_uniqueness_check_reads_the_index_not_the_orders() {
        let mut state = many_orders(3);
        state.capture("m_1", "ORD-0", request("r-1", 100)).expect("capture");
        // Take the capture out of the books behind the index's back: a check that scanned the
        // orders would now accept the reference again; the index still refuses it.
        state.orders.get_mut("ORD-0").expect("order").captures.clear();
        let again = state.capture("m_1", "ORD-1", request("r-1", 100));
        assert_eq!(again, Err(CaptureError::ReferenceUsed("r-1".into())));
    }
}
