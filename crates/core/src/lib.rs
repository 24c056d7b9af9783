//! `capture-core`: the canonical model of the capture engine.
//!
//! Money ([`Money`]: an exact `rust_decimal::Decimal` plus an ISO 4217 [`Currency`] with its
//! exponent), the order snapshot, the capture request, decisions, outcomes and the report.
//!
//! This crate is pure: it does no IO, never reads a clock and draws no random numbers.
//!
//! ```
//! use capture_core::{CaptureRequest, RequestedAmount};
//! let req = CaptureRequest::from_json(br#"{
//!     "platform": "optty", "idempotency_key": "ord-1-cap-1", "amount": 100.1,
//!     "order": {"id": "ord-1", "currency": "USD", "amount": "100.10",
//!               "payments": [{"id": "pay-1", "amount": "100.10"}]}
//! }"#).unwrap();
//! let RequestedAmount::Exact(m) = req.amount else { unreachable!() };
//! assert_eq!(m.to_decimal_string(), "100.10");
//! assert_eq!(m.to_minor().unwrap(), 10010);
//! ```
#![warn(missing_docs)]

pub mod decision;
pub mod money;
pub mod outcome;
pub mod report;
pub mod request;
pub mod time;

pub use decision::{Decision, merge};
pub use money::{Currency, ExactDecimal, Money, MoneyError, parse_decimal};
pub use outcome::{FailureKind, Outcome, OutcomeRecord};
pub use report::{
    Anomaly, CaptureReport, ConnectorRef, Exchange, REPORT_SCHEMA, RecordedHeader, RecordedRequest,
    RecordedResponse, Requested, STATUS_SCHEMA, Stage, StatusReport, Step, StepSource,
};
pub use request::{
    AuthorizedPayment, CaptureRequest, EarlierCapture, MetadataValue, OrderSnapshot, PaymentAmount,
    RequestError, RequestedAmount, ShippingInfo,
};
pub use time::Timestamp;
