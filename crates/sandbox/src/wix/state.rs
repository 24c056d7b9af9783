//! The books: orders, their payments and captures, and Wix's business rules for a capture.

use std::collections::BTreeMap;

use capture_core::Currency;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{WixCapture, WixConfig, WixOrder};
use crate::emulator::Platform;
use crate::faults::FaultPlan;

/// When the demo payments were created and authorized (fixed, never the wall clock).
pub(super) const CREATED_DATE: &str = "2026-01-01T10:00:00.000Z";
/// When the demo payments were authorized.
pub(super) const AUTHORIZED_DATE: &str = "2026-01-01T10:00:05.000Z";
/// The `createdDate` of captures given in the configuration (earlier than any new one).
pub(super) const CONFIGURED_CAPTURE_DATE: &str = "2026-01-01T12:00:00.000Z";

/// A validated capture request: the order, and each payment with the amount asked (`None`: all
/// that is left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CaptureRequest {
    pub(super) order_id: String,
    pub(super) payments: Vec<(String, Option<Decimal>)>,
}

/// A refusal in Wix's `applicationError` shape.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AppError {
    pub(super) status: u16,
    pub(super) code: String,
    pub(super) description: String,
    pub(super) data: Value,
}

impl AppError {
    fn new(status: u16, code: &'static str, description: String, data: Value) -> AppError {
        AppError { status, code: code.to_owned(), description, data }
    }
}

/// The places of `currency` (2 for a code the engine does not know).
pub(super) fn exponent(currency: &str) -> u32 {
    Currency::from_code(currency).map(Currency::exponent).unwrap_or(2)
}

/// `amount` shown with exactly `places` decimals (`10` -> `10.00`, `12.5` KWD -> `12.500`).
pub(super) fn at_places(amount: Decimal, places: u32) -> Decimal {
    let mut amount = if amount.is_zero() { Decimal::ZERO } else { amount };
    amount.rescale(places);
    amount
}

fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The Wix emulator's books: orders, payments, captures, read counts. Opaque; read them through
/// [`super::WixEmulator`] or the control API.
#[derive(Debug)]
pub struct State {
    config: WixConfig,
    orders: Vec<WixOrder>,
    /// Reads seen by each pending capture, by capture id.
    reads: BTreeMap<String, u32>,
    /// `createdDate` of each capture made since the last reset, by capture id.
    dates: BTreeMap<String, String>,
    /// Captures made since the last reset.
    counter: u64,
    pub(super) faults: FaultPlan,
}

impl Platform for State {
    const NAME: &'static str = "wix";
    const FAULT_CODES: bool = true;

    fn reset(&mut self) {
        self.faults.clear();
        self.reads.clear();
        self.dates.clear();
        self.counter = 0;
        self.orders.clear();
        for order in self.config.orders.clone() {
            self.put_order(order);
        }
    }
}

impl State {
    pub(super) fn new(config: WixConfig, faults: FaultPlan) -> State {
        let mut state = State {
            config,
            orders: Vec::new(),
            reads: BTreeMap::new(),
            dates: BTreeMap::new(),
            counter: 0,
            faults,
        };
        state.reset();
        state
    }

    pub(super) fn put_order(&mut self, mut order: WixOrder) {
        let places = exponent(&order.currency);
        for p in &mut order.payments {
            p.amount = at_places(p.amount, places);
            for c in &mut p.captures {
                c.amount = at_places(c.amount, places);
            }
        }
        self.orders.retain(|o| !same_id(&o.id, &order.id));
        self.orders.push(order);
    }

    pub(super) fn is_token(&self, value: &str) -> bool {
        self.config.tokens.iter().any(|t| t == value)
    }

    pub(super) fn order(&self, id: &str) -> Option<&WixOrder> {
        self.orders.iter().find(|o| same_id(&o.id, id))
    }

    /// A capture's `createdDate`.
    pub(super) fn capture_date(&self, capture_id: &str) -> &str {
        self.dates.get(capture_id).map_or(CONFIGURED_CAPTURE_DATE, String::as_str)
    }

    /// Applies a capture, all payments or none.
    pub(super) fn capture(&mut self, request: &CaptureRequest) -> Result<(), AppError> {
        let order_id = request.order_id.as_str();
        let not_found = |payment_id: &str, what: String| {
            AppError::new(
                404,
                "PAYMENT_NOT_FOUND",
                what,
                json!({"orderId": order_id, "paymentId": payment_id}),
            )
        };
        let first = request.payments.first().map_or("", |(id, _)| id.as_str());
        let Some(order) = self.orders.iter().find(|o| same_id(&o.id, order_id)) else {
            return Err(not_found(first, format!("Order {order_id} not found")));
        };
        for (payment_id, _) in &request.payments {
            if !order.payments.iter().any(|p| same_id(&p.id, payment_id)) {
                return Err(not_found(
                    payment_id,
                    format!("Payment {payment_id} not found in order {order_id}"),
                ));
            }
        }
        if order.chargebacks {
            return Err(AppError::new(
                428,
                "ORDER_HAS_CHARGEBACKS",
                format!("Order {order_id} has chargebacks; its payments cannot be captured"),
                json!({"orderId": order_id}),
            ));
        }
        let places = exponent(&order.currency);
        let mut plan: Vec<(String, Decimal)> = Vec::with_capacity(request.payments.len());
        for (payment_id, asked) in &request.payments {
            let Some(p) = order.payments.iter().find(|p| same_id(&p.id, payment_id)) else {
                return Err(not_found(
                    payment_id,
                    format!("Payment {payment_id} not found in order {order_id}"),
                ));
            };
            let data = json!({"orderId": order_id, "paymentId": p.id});
            let status = p.status.to_ascii_uppercase();
            if status == "VOIDED" {
                return Err(AppError::new(
                    409,
                    "PAYMENT_ALREADY_VOIDED",
                    format!("Payment {} is voided", p.id),
                    data,
                ));
            }
            if p.captures.iter().any(|c| c.status.eq_ignore_ascii_case("PENDING")) {
                return Err(AppError::new(
                    428,
                    "PAYMENT_HAS_PENDING_CAPTURE",
                    format!("Payment {} has a capture still pending", p.id),
                    data,
                ));
            }
            let captured = p
                .captures
                .iter()
                .filter(|c| !c.status.eq_ignore_ascii_case("FAILED"))
                .fold(Decimal::ZERO, |sum, c| sum.saturating_add(c.amount));
            let left = p.amount.saturating_sub(captured);
            if left <= Decimal::ZERO {
                return Err(AppError::new(
                    409,
                    "PAYMENT_ALREADY_CAPTURED",
                    format!("Payment {} is already captured", p.id),
                    data,
                ));
            }
            if status != "AUTHORIZED" && status != "APPROVED" {
                return Err(AppError::new(
                    428,
                    "PAYMENT_NOT_AUTHORIZED",
                    format!("Payment {} is not authorized (status {})", p.id, p.status),
                    data,
                ));
            }
            let amount = match asked {
                None => left,
                Some(a) => {
                    let invalid = |why: String| {
                        AppError::new(
                            400,
                            "INVALID_AMOUNT",
                            format!("Invalid amount {a} for payment {}: {why}", p.id),
                            json!({"orderId": order_id, "paymentId": p.id, "amount": a.to_string()}),
                        )
                    };
                    if a.normalize().scale() > places {
                        return Err(invalid(format!("{} allows {places} decimal places", order.currency)));
                    }
                    if *a <= Decimal::ZERO {
                        return Err(invalid("it must be greater than 0".to_owned()));
                    }
                    if *a > left {
                        return Err(invalid(format!("only {} is left to capture", at_places(left, places))));
                    }
                    *a
                }
            };
            plan.push((p.id.clone(), at_places(amount, places)));
        }

        // Every payment passed: apply.
        let settle_now = self.config.settle_after_reads == 0;
        let mut made = Vec::with_capacity(plan.len());
        for (payment_id, amount) in plan {
            self.counter = self.counter.saturating_add(1);
            let n = self.counter;
            let id = format!("ca000000-0000-4000-8000-{n:012}");
            let date =
                format!("2026-01-02T{:02}:{:02}:{:02}.000Z", 9 + (n / 3600) % 15, (n / 60) % 60, n % 60);
            self.dates.insert(id.clone(), date);
            made.push((
                payment_id,
                WixCapture {
                    id,
                    amount,
                    status: if settle_now { "SUCCEEDED" } else { "PENDING" }.to_owned(),
                },
            ));
        }
        let order = self
            .orders
            .iter_mut()
            .find(|o| same_id(&o.id, order_id))
            .ok_or_else(|| not_found(first, format!("Order {order_id} not found")))?;
        for (payment_id, capture) in made {
            if let Some(p) = order.payments.iter_mut().find(|p| p.id == payment_id) {
                p.captures.push(capture);
                if settle_now {
                    p.status = "APPROVED".to_owned();
                }
            }
        }
        Ok(())
    }

    /// One read of the order's transactions: pending captures that have now been read enough
    /// times settle. Returns the order as answered.
    pub(super) fn read(&mut self, order_id: &str) -> Option<WixOrder> {
        let settle_after = self.config.settle_after_reads;
        let order = self.orders.iter_mut().find(|o| same_id(&o.id, order_id))?;
        for p in &mut order.payments {
            let mut settled = false;
            for c in p.captures.iter_mut().filter(|c| c.status.eq_ignore_ascii_case("PENDING")) {
                let reads = self.reads.entry(c.id.clone()).or_insert(0);
                *reads = reads.saturating_add(1);
                if *reads >= settle_after {
                    c.status = "SUCCEEDED".to_owned();
                    settled = true;
                }
            }
            if settled && !p.captures.iter().any(|c| c.status.eq_ignore_ascii_case("PENDING")) {
                p.status = "APPROVED".to_owned();
            }
        }
        Some(order.clone())
    }
}
