//! The JSON messages that cross the ABI (schema version [`SCHEMA_VERSION`]).
//!
//! Amounts are decimal strings with exactly the currency's decimal places (`"100.10"`), never
//! JSON numbers, so no side ever parses money as a float.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the message schema. A plugin refuses a call with another schema.
pub const SCHEMA_VERSION: u32 = 1;

/// How a platform supports partial capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PartialCapture {
    /// Any amount up to what is capturable.
    Always,
    /// Only the full amount.
    Never,
    /// Depends on the payment method (the host's order snapshot says `partial_capture`).
    PerPaymentMethod,
}

/// How the platform encodes an amount in its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AmountEncoding {
    /// No amount is sent: the platform captures the full authorization.
    None,
    /// A JSON number in major units with at most 2 decimals.
    DecimalNumber2,
    /// An integer in minor units.
    MinorUnits,
    /// A decimal string.
    DecimalString,
}

/// What a connector's platform can do. The engine checks these before any call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Partial capture support.
    pub partial_capture: PartialCapture,
    /// Several payments in one call.
    pub multiple_payments_per_call: bool,
    /// The most payments one call may carry, if the platform sets a bound (Wix: 100).
    #[serde(default)]
    pub max_payments_per_call: Option<u32>,
    /// Captures may finish later (pending first).
    pub asynchronous: bool,
    /// Amount encoding on the wire.
    pub amount_encoding: AmountEncoding,
    /// Largest currency exponent the platform can express (2 refuses KWD).
    pub max_currency_exponent: u32,
    /// Whether the platform deduplicates by the request's idempotency key.
    pub idempotency_key: bool,
    /// Whether the connector can read a capture's state back (ABI 1.1 `build_status`).
    #[serde(default)]
    pub status_query: bool,
}

/// A connector's self-description, returned by the `manifest` function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Connector id, `[a-z0-9_-]+`; requests name it in `platform`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Connector version (semver).
    pub version: String,
    /// Message schema version it speaks.
    pub schema: u32,
    /// What the platform can do.
    pub capabilities: Capabilities,
    /// Hosts the connector may build URLs for (the configured base URL may also be loopback).
    pub allowed_hosts: Vec<String>,
    /// Names of the credentials it needs; the host resolves them, the plugin never sees them.
    pub credentials: Vec<String>,
    /// Names of the non-secret settings it reads from [`CaptureCall::settings`].
    pub settings: Vec<String>,
}

/// One payment to capture in this call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CallPayment {
    /// The platform's payment id.
    pub id: String,
    /// Amount to capture from it (decimal string, currency's places).
    pub amount: String,
    /// Its authorized amount.
    pub authorized: String,
    /// Payment method, if known.
    pub method: Option<String>,
}

/// Shipping details (all three or none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CallShipping {
    /// Carrier.
    pub company: String,
    /// Service level.
    pub method: String,
    /// Tracking number.
    pub tracking_number: String,
}

/// Host to plugin: build the capture request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptureCall {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The platform's base URL from the configuration, without a trailing slash.
    pub base_url: String,
    /// Non-secret settings from the configuration (e.g. `store_hash`).
    pub settings: BTreeMap<String, String>,
    /// The platform's order id.
    pub order_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The currency's exponent.
    pub currency_exponent: u32,
    /// Total amount to capture (decimal string).
    pub amount: String,
    /// True when the amount is everything still capturable.
    pub full: bool,
    /// Order amount (decimal string).
    pub order_amount: String,
    /// Surcharge (decimal string).
    pub surcharge: String,
    /// Payments to capture, with their amounts.
    pub payments: Vec<CallPayment>,
    /// The idempotency key; connectors of platforms with a capture reference send it there.
    pub idempotency_key: String,
    /// Optional note.
    pub description: Option<String>,
    /// Optional shipping details.
    pub shipping: Option<CallShipping>,
}

/// A header of the request to send. When `secret` names a credential, the host appends that
/// credential's value to `value` when sending, and records `value` + `[REDACTED]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value, or its prefix when `secret` is set (e.g. `Bearer `).
    pub value: String,
    /// Credential to append, by name from the manifest's `credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Plugin to host: the HTTP request to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// Absolute URL; its origin must be the configured base URL's.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Body text, sent byte for byte.
    pub body: Option<String>,
}

/// Host to plugin: the platform's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names, in order received.
    pub headers: Vec<(String, String)>,
    /// Body text (lossy UTF-8).
    pub body: String,
}

/// Host to plugin: parse this answer to that call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ParseCall {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The call that produced the request.
    pub call: CaptureCall,
    /// The answer.
    pub response: HttpResponse,
}

/// Host to plugin: build a request that reads the state of an order's captures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StatusCall {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The platform's base URL from the configuration, without a trailing slash.
    pub base_url: String,
    /// Non-secret settings from the configuration.
    pub settings: BTreeMap<String, String>,
    /// The platform's order id.
    pub order_id: String,
    /// ISO 4217 code of the order.
    pub currency: String,
    /// The currency's exponent.
    pub currency_exponent: u32,
    /// The payments whose captures to read (empty: all of the order's).
    pub payment_ids: Vec<String>,
    /// The idempotency key of the capture, if known.
    pub idempotency_key: Option<String>,
    /// The platform's capture id, if the capture call returned one.
    pub platform_capture_id: Option<String>,
}

/// Host to plugin: read this answer to that status query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StatusParseCall {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The query that produced the request.
    pub status: StatusCall,
    /// The answer.
    pub response: HttpResponse,
}

/// The canonical result of a platform's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// Money captured.
    Captured,
    /// Accepted, final state later.
    Pending,
    /// The platform says it was already captured; nothing new was captured.
    AlreadyCaptured,
    /// Not captured.
    Failed,
}

/// What kind of failure a `failed` result is; the engine's outcome and its retry decision follow
/// from it (plugins/README.md, "What the engine does with a failure"). On the wire, the
/// snake_case name; any other string is refused when the message is decoded, with the list of
/// these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The platform refused the request as invalid (400, 422).
    InvalidRequest,
    /// The credential was refused (401, 403).
    Unauthorized,
    /// The order or payment does not exist on the platform (404).
    NotFound,
    /// The payment is in a state that forbids the capture (409, 428, voided, canceled).
    InvalidState,
    /// The payment method, the issuer or the provider declined the capture.
    Declined,
    /// Too many requests (429).
    RateLimited,
    /// The platform is failing (5xx) or could not be reached.
    PlatformUnavailable,
    /// The request may or may not have been applied (a 2xx that cannot be read).
    OutcomeUnknown,
    /// An answer the connector cannot classify.
    Unknown,
}

impl FailureKind {
    /// Every kind, in the order above.
    pub const ALL: &'static [FailureKind] = &[
        FailureKind::InvalidRequest,
        FailureKind::Unauthorized,
        FailureKind::NotFound,
        FailureKind::InvalidState,
        FailureKind::Declined,
        FailureKind::RateLimited,
        FailureKind::PlatformUnavailable,
        FailureKind::OutcomeUnknown,
        FailureKind::Unknown,
    ];

    /// The wire name (`rate_limited`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidRequest => "invalid_request",
            FailureKind::Unauthorized => "unauthorized",
            FailureKind::NotFound => "not_found",
            FailureKind::InvalidState => "invalid_state",
            FailureKind::Declined => "declined",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::PlatformUnavailable => "platform_unavailable",
            FailureKind::OutcomeUnknown => "outcome_unknown",
            FailureKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FailureKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::str::FromStr for FailureKind {
    type Err = String;

    /// The kind with that wire name; an error listing the valid names otherwise.
    fn from_str(s: &str) -> Result<FailureKind, String> {
        FailureKind::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown failure kind `{s}`; the kinds are {}", names.join(", "))
        })
    }
}

/// Failure details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// What kind of failure (see [`FailureKind`]).
    pub kind: FailureKind,
    /// Whether sending the same request again is safe.
    pub retryable: bool,
    /// The platform's code (HTTP status or its own error code).
    pub platform_code: Option<String>,
    /// The platform's message.
    pub message: String,
    /// When a retry may be sent, if the platform said (429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Plugin to host: the outcome of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptureResult {
    /// Captured, pending or failed.
    pub status: ResultStatus,
    /// Amount captured (decimal string), for captured and pending.
    pub captured_amount: Option<String>,
    /// The platform's capture id.
    pub platform_capture_id: Option<String>,
    /// For failed.
    pub failure: Option<Failure>,
}

/// Plugin to host, with [`crate::abi::STATUS_ERROR`]: why the call was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectorError {
    /// Machine-readable code (`unsupported_currency`, `invalid_call`...).
    pub code: String,
    /// A sentence naming the problem.
    pub message: String,
}

impl ConnectorError {
    /// Makes an error.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ConnectorError {
        ConnectorError { code: code.into(), message: message.into() }
    }
}

impl std::fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ConnectorError {}
