//! Emulator of the Wix eCommerce capture endpoint and of the order transactions read-back, on a
//! loopback HTTP port.
//!
//! # The contract (crates/sandbox/platforms/wix.md, from Wix's "Capture Authorized Payments" page)
//!
//! `POST /ecom/v1/order-billing/capture-authorized-payments` with `Authorization: <token>` (no
//! scheme prefix) and `{"orderId": <GUID>, "payments": [{"paymentId": <GUID>, "amount"?: {"amount":
//! "<decimal>"}}]}`. The emulator answers in this order:
//!
//! 1. **Authentication**: the `Authorization` header must equal one of [`WixConfig::tokens`]
//!    exactly (`Bearer <token>` is refused, as Wix takes API keys and OAuth tokens bare) ->
//!    `401 {"message", "details": {"applicationError": {"code": "UNAUTHENTICATED", ...}}}`.
//!    `wix-site-id` is accepted and ignored (every order is visible to every token).
//! 2. **Body validation** -> `400 {"message", "details": {"validationError": {"fieldViolations":
//!    [{"field", "description", "violatedRule", "data"?}]}}}`, every violation listed: `orderId`
//!    missing (`REQUIRED_FIELD`) or not a GUID (`FORMAT`); `payments` missing (`REQUIRED_FIELD`),
//!    empty (`MIN_SIZE`) or longer than 100 (`MAX_SIZE`); each `payments[i].paymentId` missing or not
//!    a GUID, or listed twice (`OTHER`); `payments[i].amount` not an object, or its `amount` not a
//!    decimal string (`FORMAT`; a JSON number is refused too: Wix amounts are strings). A body that is
//!    not a JSON object is `400 {"message": "...", "details": {}}`.
//! 3. **Faults**: the request takes the next queued fault, if any (see [`crate::faults`]): `status`
//!    and `rate_limited` answer in Wix's error shape without applying anything (unless `applied`);
//!    `delay` and `drop_after_apply` apply the capture first. Requests refused by 1 or 2 take none.
//! 4. **Business rules**, all payments checked before any is captured (all or nothing), in order:
//!    unknown order or payment -> `404 PAYMENT_NOT_FOUND`; order with chargebacks ->
//!    `428 ORDER_HAS_CHARGEBACKS`; then per payment, in request order: `VOIDED` ->
//!    `409 PAYMENT_ALREADY_VOIDED`; a `PENDING` capture -> `428 PAYMENT_HAS_PENDING_CAPTURE`;
//!    nothing left (captures that are not `FAILED` reach the amount) -> `409 PAYMENT_ALREADY_CAPTURED`;
//!    a status other than `AUTHORIZED` or `APPROVED` -> `428 PAYMENT_NOT_AUTHORIZED`; an amount with
//!    more places than the currency, `<= 0`, or above what is left -> `400 INVALID_AMOUNT`. Errors
//!    are `{"message", "details": {"applicationError": {"code", "description", "data"}}}` with
//!    `data` naming the order and payment.
//! 5. **Success**: each payment gets a capture with status `PENDING` (or `SUCCEEDED` at once when
//!    [`WixConfig::settle_after_reads`] is 0) for the amount asked, or for what is left when no
//!    amount was sent. Partial amounts are **accepted** (the documentation is ambiguous; the
//!    emulator takes the permissive reading, and the connector works under both). The answer is
//!    `200 {"orderTransactions": {"orderId", "payments": [...], "refunds": []}}` with every payment
//!    of the order in the documentation's shape: `id`, `regularPaymentDetails` (`status`,
//!    `authorizationDetails.captures[]` with `id`, `status`, `amount`, `createdDate`), `amount`,
//!    `createdDate`, `updatedDate`, `refundDisabled`. Amounts are `{"amount": "<decimal string with
//!    the currency's places>", "formattedAmount": "$10.00"}` (real Wix may trim: `"1"`, `"2.0"`;
//!    the connector's fixtures cover that). Capture ids are GUID-shaped but counted, not random
//!    (`ca000000-0000-4000-8000-000000000001`, ...); dates are fixed, never the wall clock, and
//!    later captures have later `createdDate`s.
//!
//! `GET /ecom/v1/payments/orders/{orderId}` ("List Transactions For Single Order") needs the same
//! authentication, refuses a non-GUID id with a validation error and an unknown order with
//! `404 ORDER_NOT_FOUND`, and answers the same `orderTransactions` shape. **Each read counts**: a
//! `PENDING` capture that has been read [`WixConfig::settle_after_reads`] times becomes `SUCCEEDED`
//! (in the answer to that read), and a payment left without pending captures becomes `APPROVED`.
//! Faults do not apply to reads.
//!
//! Any other route answers `404 {"message": "Not Found: <METHOD> <path>", "details": {}}`.
//!
//! # Sandbox control API (no authentication: bind to loopback only)
//!
//! - `POST /_sandbox/reset` -> `204`: back to the configured orders, capture counter at 0, read
//!   counts and faults cleared.
//! - `POST /_sandbox/faults` / `DELETE /_sandbox/faults`: queue or clear faults.
//! - `GET /_sandbox/orders/{id}` -> `200 {"id", "currency", "chargebacks", "payments": [{"id",
//!   "amount", "status", "captured", "remaining", "captures": [{"id", "amount", "status",
//!   "createdDate"}]}]}` (amounts as decimal strings); unknown -> `404`. Does not count as a read.

mod server;
mod state;

use std::net::{Ipv4Addr, SocketAddr};

use rust_decimal::Decimal;

use crate::emulator::{self, Emulator};
use crate::faults::FaultPlan;
pub(crate) use server::is_guid;
pub use state::State;

/// The demo data's ids (GUIDs), for tests and demos.
pub mod demo_ids {
    /// The demo token.
    pub const TOKEN: &str = "sandbox-wix-token";
    /// USD order with two authorized payments, [`USD_PAYMENT_10`] and [`USD_PAYMENT_20`].
    /// (The ids are those of Wix's sample answer.)
    pub const USD_ORDER: &str = "3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9";
    /// USD 10.00, authorized.
    pub const USD_PAYMENT_10: &str = "496aaea1-4e2f-4cb1-9522-6b85f49b91e2";
    /// USD 20.00, authorized.
    pub const USD_PAYMENT_20: &str = "23af2de7-b24d-41d5-8d27-cf925d378d32";
    /// JPY order, one payment of 1500.
    pub const JPY_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e01";
    /// JPY 1500, authorized.
    pub const JPY_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e11";
    /// KWD order, one payment of 12.500.
    pub const KWD_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e02";
    /// KWD 12.500, authorized.
    pub const KWD_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e12";
    /// USD order whose payment is already captured in full.
    pub const CAPTURED_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e03";
    /// USD 15.00, `APPROVED`, one `SUCCEEDED` capture of 15.00.
    pub const CAPTURED_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e13";
    /// USD order whose payment was voided.
    pub const VOIDED_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e04";
    /// USD 12.00, `VOIDED`.
    pub const VOIDED_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e14";
    /// USD order with chargebacks.
    pub const CHARGEBACK_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e05";
    /// USD 30.00, authorized.
    pub const CHARGEBACK_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e15";
    /// USD order whose payment has a capture still pending.
    pub const PENDING_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e06";
    /// USD 25.00, authorized, one `PENDING` capture of 25.00.
    pub const PENDING_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e16";
    /// The id of that pending capture.
    pub const PENDING_CAPTURE: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e26";
    /// USD order whose payment is not authorized yet.
    pub const UNAUTHORIZED_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e07";
    /// USD 40.00, status `PENDING` (not authorized).
    pub const UNAUTHORIZED_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e17";
    /// USD order partly captured already.
    pub const PARTLY_CAPTURED_ORDER: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e08";
    /// USD 50.00, authorized, one `SUCCEEDED` capture of 40.00 (10.00 left).
    pub const PARTLY_CAPTURED_PAYMENT: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e18";
    /// The id of that earlier capture.
    pub const PARTLY_CAPTURED_CAPTURE: &str = "b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e28";
}

/// One capture of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WixCapture {
    /// The capture's GUID.
    pub id: String,
    /// The amount captured (the currency's places).
    pub amount: Decimal,
    /// `PENDING`, `SUCCEEDED` or `FAILED`.
    pub status: String,
}

/// A payment of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WixPayment {
    /// The payment's GUID.
    pub id: String,
    /// The authorized amount.
    pub amount: Decimal,
    /// Wix's payment status: `AUTHORIZED` (capturable), `APPROVED` (captured), `VOIDED`, `PENDING`
    /// (not authorized yet), `DECLINED`, `CANCELED`...
    pub status: String,
    /// Its captures, oldest first.
    pub captures: Vec<WixCapture>,
}

/// An order and its payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WixOrder {
    /// The order's GUID.
    pub id: String,
    /// ISO 4217 code; its exponent bounds the amounts' places (an unknown code allows 2).
    pub currency: String,
    /// Its payments.
    pub payments: Vec<WixPayment>,
    /// Whether the order has chargebacks (no capture is then allowed).
    pub chargebacks: bool,
}

/// What the emulator starts with (and returns to on reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WixConfig {
    /// Accepted `Authorization` values (API keys or tokens, no prefix).
    pub tokens: Vec<String>,
    /// The orders.
    pub orders: Vec<WixOrder>,
    /// How many reads of the transactions route a `PENDING` capture takes to become `SUCCEEDED`
    /// (0: captures succeed at once).
    pub settle_after_reads: u32,
}

fn authorized(id: &str, cents: i64) -> WixPayment {
    WixPayment {
        id: id.into(),
        amount: Decimal::new(cents, 2),
        status: "AUTHORIZED".into(),
        captures: vec![],
    }
}

fn order(id: &str, currency: &str, payments: Vec<WixPayment>) -> WixOrder {
    WixOrder { id: id.into(), currency: currency.into(), payments, chargebacks: false }
}

impl WixConfig {
    /// The demo site: token `sandbox-wix-token`, captures settling after 1 read, and these orders
    /// (ids in [`demo_ids`]):
    ///
    /// | order | currency | payments |
    /// |---|---|---|
    /// | `USD_ORDER` | USD | 10.00 and 20.00, both `AUTHORIZED` |
    /// | `JPY_ORDER` | JPY | 1500 `AUTHORIZED` |
    /// | `KWD_ORDER` | KWD | 12.500 `AUTHORIZED` |
    /// | `CAPTURED_ORDER` | USD | 15.00 `APPROVED`, captured in full (`SUCCEEDED`) |
    /// | `VOIDED_ORDER` | USD | 12.00 `VOIDED` |
    /// | `CHARGEBACK_ORDER` | USD | 30.00 `AUTHORIZED`, the order has chargebacks |
    /// | `PENDING_ORDER` | USD | 25.00 `AUTHORIZED` with a `PENDING` capture of 25.00 |
    /// | `UNAUTHORIZED_ORDER` | USD | 40.00 `PENDING` (not authorized) |
    /// | `PARTLY_CAPTURED_ORDER` | USD | 50.00 `AUTHORIZED`, 40.00 captured (`SUCCEEDED`) |
    pub fn demo() -> WixConfig {
        use demo_ids::*;
        let capture = |id: &str, cents: i64, status: &str| WixCapture {
            id: id.into(),
            amount: Decimal::new(cents, 2),
            status: status.into(),
        };
        WixConfig {
            tokens: vec![TOKEN.to_owned()],
            settle_after_reads: 1,
            orders: vec![
                order(
                    USD_ORDER,
                    "USD",
                    vec![authorized(USD_PAYMENT_10, 1000), authorized(USD_PAYMENT_20, 2000)],
                ),
                order(
                    JPY_ORDER,
                    "JPY",
                    vec![WixPayment { amount: Decimal::new(1500, 0), ..authorized(JPY_PAYMENT, 0) }],
                ),
                order(
                    KWD_ORDER,
                    "KWD",
                    vec![WixPayment { amount: Decimal::new(12500, 3), ..authorized(KWD_PAYMENT, 0) }],
                ),
                order(
                    CAPTURED_ORDER,
                    "USD",
                    vec![WixPayment {
                        status: "APPROVED".into(),
                        captures: vec![capture("b7e1c2d3-4a5b-4c6d-8e7f-0a1b2c3d4e23", 1500, "SUCCEEDED")],
                        ..authorized(CAPTURED_PAYMENT, 1500)
                    }],
                ),
                order(
                    VOIDED_ORDER,
                    "USD",
                    vec![WixPayment { status: "VOIDED".into(), ..authorized(VOIDED_PAYMENT, 1200) }],
                ),
                WixOrder {
                    chargebacks: true,
                    ..order(CHARGEBACK_ORDER, "USD", vec![authorized(CHARGEBACK_PAYMENT, 3000)])
                },
                order(
                    PENDING_ORDER,
                    "USD",
                    vec![WixPayment {
                        captures: vec![capture(PENDING_CAPTURE, 2500, "PENDING")],
                        ..authorized(PENDING_PAYMENT, 2500)
                    }],
                ),
                order(
                    UNAUTHORIZED_ORDER,
                    "USD",
                    vec![WixPayment { status: "PENDING".into(), ..authorized(UNAUTHORIZED_PAYMENT, 4000) }],
                ),
                order(
                    PARTLY_CAPTURED_ORDER,
                    "USD",
                    vec![WixPayment {
                        captures: vec![capture(PARTLY_CAPTURED_CAPTURE, 4000, "SUCCEEDED")],
                        ..authorized(PARTLY_CAPTURED_PAYMENT, 5000)
                    }],
                ),
            ],
        }
    }
}

type Shared = emulator::Shared<State>;

/// A running Wix emulator: an HTTP server task on a loopback port, and a handle on its books (the
/// shared scaffold, [`Emulator`], with the Wix books).
pub type WixEmulator = Emulator<State>;

impl Emulator<State> {
    /// Starts the emulator on `127.0.0.1` and a free port.
    pub async fn start(config: WixConfig) -> std::io::Result<WixEmulator> {
        WixEmulator::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts the emulator on `addr` (port 0 picks a free port). Keep it on loopback: the control
    /// API has no authentication.
    pub async fn start_on(addr: SocketAddr, config: WixConfig) -> std::io::Result<WixEmulator> {
        let faults = FaultPlan::default();
        let state = State::new(config, faults.clone());
        Emulator::serve(addr, state, faults, |state, _| server::router(state)).await
    }

    /// The order with that id (GUIDs compare case-insensitively), as the books show it now. Does
    /// not count as a read.
    pub fn order(&self, id: &str) -> Option<WixOrder> {
        self.books().order(id).cloned()
    }

    /// Adds an order, or replaces the one with the same id. Lasts until the next reset.
    pub fn add_order(&self, order: WixOrder) {
        self.books().put_order(order);
    }
}
