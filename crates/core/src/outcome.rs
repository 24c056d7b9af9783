//! Outcomes: what happened to a capture request.

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Why a capture failed, in one taxonomy for every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// The payment method, the issuer or the provider declined the capture.
    Declined,
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// A flat form of [`Outcome`] for storage: every field optional, no tagged enum, so it reads back
/// through serde_json's `arbitrary_precision` unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    /// `captured`, `pending`, `already_captured`, `rejected`, `held` or `failed`.
    pub status: String,
    /// Captured or pending amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The platform's capture id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_capture_id: Option<String>,
    /// Who rejected or held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Rejection code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Reason or message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Failure kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    /// Failure retryable flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// The platform's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_code: Option<String>,
    /// Retry hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl From<&Outcome> for OutcomeRecord {
    fn from(o: &Outcome) -> OutcomeRecord {
        let status = o.status().to_owned();
        match o.clone() {
            Outcome::Captured { amount, platform_capture_id }
            | Outcome::Pending { amount, platform_capture_id } => OutcomeRecord {
                status,
                amount: Some(amount),
                platform_capture_id,
                ..OutcomeRecord::default()
            },
            Outcome::AlreadyCaptured { platform_code, message } => {
                OutcomeRecord { status, platform_code, message: Some(message), ..OutcomeRecord::default() }
            }
            Outcome::Rejected { by, code, reason } => OutcomeRecord {
                status,
                by: Some(by),
                code: Some(code),
                message: Some(reason),
                ..OutcomeRecord::default()
            },
            Outcome::Held { by, reason } => {
                OutcomeRecord { status, by: Some(by), message: Some(reason), ..OutcomeRecord::default() }
            }
            Outcome::Failed { kind, retryable, platform_code, message, retry_after_ms } => OutcomeRecord {
                status,
                kind: Some(kind),
                retryable: Some(retryable),
                platform_code,
                message: Some(message),
                retry_after_ms,
                ..OutcomeRecord::default()
            },
        }
    }
}

impl TryFrom<OutcomeRecord> for Outcome {
    type Error = String;

    fn try_from(r: OutcomeRecord) -> Result<Outcome, String> {
        let missing = |f: &str| format!("stored `{}` outcome has no `{f}`", r.status);
        Ok(match r.status.as_str() {
            "captured" => Outcome::Captured {
                amount: r.amount.ok_or_else(|| missing("amount"))?,
                platform_capture_id: r.platform_capture_id,
            },
            "pending" => Outcome::Pending {
                amount: r.amount.ok_or_else(|| missing("amount"))?,
                platform_capture_id: r.platform_capture_id,
            },
            "already_captured" => Outcome::AlreadyCaptured {
                platform_code: r.platform_code,
                message: r.message.unwrap_or_default(),
            },
            "rejected" => Outcome::Rejected {
                by: r.by.unwrap_or_default(),
                code: r.code.unwrap_or_default(),
                reason: r.message.unwrap_or_default(),
            },
            "held" => Outcome::Held { by: r.by.unwrap_or_default(), reason: r.message.unwrap_or_default() },
            "failed" => Outcome::Failed {
                kind: r.kind.ok_or_else(|| missing("kind"))?,
                retryable: r.retryable.unwrap_or(false),
                platform_code: r.platform_code,
                message: r.message.unwrap_or_default(),
                retry_after_ms: r.retry_after_ms,
            },
            other => return Err(format!("unknown stored outcome status `{other}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;

    #[test]
    fn records_round_trip_through_json() {
        let usd = Currency::from_code("USD").unwrap();
        for o in [
            Outcome::Captured {
                amount: Money::from_minor(10010, usd),
                platform_capture_id: Some("c1".into()),
            },
            Outcome::Failed {
                kind: FailureKind::RateLimited,
                retryable: true,
                platform_code: Some("429".into()),
                message: "slow".into(),
                retry_after_ms: Some(1500),
            },
            Outcome::AlreadyCaptured { platform_code: None, message: "done".into() },
        ] {
            let json = serde_json::to_string(&OutcomeRecord::from(&o)).unwrap();
            let back: OutcomeRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(Outcome::try_from(back).unwrap(), o);
        }
    }
}
