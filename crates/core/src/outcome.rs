//! Outcomes: what happened to a capture request.

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Why a capture failed, in one taxonomy for every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The platform refused the request as invalid (400, 422).
    InvalidRequest,
    /// The credential was refused (401, 403).
    Unauthorized,
    /// The order or payment does not exist on the platform (404).
    NotFound,
    /// The payment is in a state that forbids the capture (409, 428).
    InvalidState,
    /// Too many requests (429).
    RateLimited,
    /// The platform is failing (5xx).
    PlatformUnavailable,
    /// The request may or may not have been applied (timeout, dropped connection): re-read the
    /// platform's state before sending anything again.
    OutcomeUnknown,
    /// The connector plugin failed (error code, panic, invalid output).
    Connector,
    /// An answer the connector could not classify.
    Unknown,
}

/// The canonical outcome of one capture request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The platform captured the money.
    Captured {
        /// The amount captured.
        amount: Money,
        /// The platform's capture id, if it gave one.
        platform_capture_id: Option<String>,
    },
    /// The platform accepted the capture; its final state comes later.
    Pending {
        /// The amount asked for.
        amount: Money,
        /// The platform's capture id, if it gave one.
        platform_capture_id: Option<String>,
    },
    /// The platform says the payment was already captured (Wix `PAYMENT_ALREADY_CAPTURED`, Medusa
    /// 200 on a captured payment): nothing new was captured by this request.
    AlreadyCaptured {
        /// The platform's code.
        platform_code: Option<String>,
        /// The platform's message.
        message: String,
    },
    /// A built-in check, hook or rule rejected the request; the platform was not called.
    Rejected {
        /// Who rejected (`builtin:bounds`, `hook:stock`, `rule:hold-large-orders`).
        by: String,
        /// Machine-readable code.
        code: String,
        /// Why.
        reason: String,
    },
    /// A hook or rule held the request for review; the platform was not called.
    Held {
        /// Who held it.
        by: String,
        /// Why.
        reason: String,
    },
    /// The capture failed.
    Failed {
        /// What kind of failure.
        kind: FailureKind,
        /// Whether sending the same request again is safe and may succeed.
        retryable: bool,
        /// The platform's status code or error code.
        platform_code: Option<String>,
        /// The platform's or engine's message.
        message: String,
        /// When a retry may be sent, if the platform said (429 reset hints).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl Outcome {
    /// Short status name (`captured`, `pending`, `rejected`, `held`, `failed`).
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Captured { .. } => "captured",
            Outcome::Pending { .. } => "pending",
            Outcome::AlreadyCaptured { .. } => "already_captured",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Held { .. } => "held",
            Outcome::Failed { .. } => "failed",
        }
    }
}
