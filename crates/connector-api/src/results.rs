//! Builders for the results every connector returns, and the text helpers they all need, so that
//! connectors do not each write them again.
//!
//! ```
//! use capture_connector_api::{CaptureResult, FailureKind, ResultStatus, error_text};
//!
//! let ok = CaptureResult::captured("120.00", Some("cap_1".into()));
//! assert_eq!(ok.status, ResultStatus::Captured);
//!
//! let body: serde_json::Value = serde_json::from_str(r#"{"message": ["amount must be a number", "x"]}"#).unwrap();
//! let limited = CaptureResult::failure(FailureKind::RateLimited, true, 429, error_text(&body["message"]), Some(2000));
//! let failure = limited.failure.unwrap();
//! assert_eq!((failure.kind, failure.message.as_str()), (FailureKind::RateLimited, "amount must be a number; x"));
//! ```

use serde_json::Value;

use crate::messages::{CaptureResult, Failure, FailureKind, HttpResponse, ResultStatus};

impl CaptureResult {
    /// Money captured: `amount` as a decimal string in the call's currency.
    pub fn captured(amount: impl Into<String>, platform_capture_id: Option<String>) -> CaptureResult {
        CaptureResult {
            status: ResultStatus::Captured,
            captured_amount: Some(amount.into()),
            platform_capture_id,
            failure: None,
        }
    }

    /// Accepted by the platform; its final state comes later (read by a status query).
    pub fn pending(amount: impl Into<String>, platform_capture_id: Option<String>) -> CaptureResult {
        CaptureResult {
            status: ResultStatus::Pending,
            captured_amount: Some(amount.into()),
            platform_capture_id,
            failure: None,
        }
    }

    /// Not captured: the kind, whether the same request may be sent again, the platform's code
    /// (an HTTP status such as `429`, or its own code such as `PAYMENT_NOT_FOUND`), its message,
    /// and when a retry may be sent (a 429's hint).
    pub fn failure(
        kind: FailureKind,
        retryable: bool,
        platform_code: impl ToString,
        message: String,
        retry_after_ms: Option<u64>,
    ) -> CaptureResult {
        CaptureResult {
            status: ResultStatus::Failed,
            captured_amount: None,
            platform_capture_id: None,
            failure: Some(Failure {
                kind,
                retryable,
                platform_code: Some(platform_code.to_string()),
                message,
                retry_after_ms,
            }),
        }
    }
}

/// The text of a JSON error field, whatever its shape: a string as it is, a list of strings
/// joined with `; ` (NestJS sends validation messages as a list), `null` as nothing, anything
/// else as its JSON text.
pub fn error_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            items.iter().map(error_text).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("; ")
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The body of an answer as a message: the trimmed text, or `HTTP <status>` when it is empty.
pub fn body_text(response: &HttpResponse) -> String {
    let raw = response.body.trim();
    if raw.is_empty() { format!("HTTP {}", response.status) } else { raw.to_owned() }
}

impl HttpResponse {
    /// A reset hint in milliseconds from a header holding milliseconds, else from one holding
    /// seconds (BigCommerce: `X-Rate-Limit-Time-Reset-Ms`, else `X-Retry-After`).
    pub fn reset_hint_ms(&self, millis_header: &str, seconds_header: &str) -> Option<u64> {
        self.header(millis_header).and_then(|v| v.parse::<u64>().ok()).or_else(|| {
            self.header(seconds_header).and_then(|v| v.parse::<u64>().ok()).map(|s| s.saturating_mul(1000))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_texts() {
        let pending = CaptureResult::pending("1.250", None);
        assert_eq!(
            (pending.status, pending.captured_amount.as_deref()),
            (ResultStatus::Pending, Some("1.250"))
        );
        let failed =
            CaptureResult::failure(FailureKind::Declined, false, "card_declined", "declined".into(), None);
        let f = failed.failure.expect("failure");
        assert_eq!((f.kind, f.platform_code.as_deref()), (FailureKind::Declined, Some("card_declined")));
        assert_eq!(error_text(&serde_json::json!(null)), "");
        assert_eq!(error_text(&serde_json::json!(12)), "12");
        assert_eq!(error_text(&serde_json::json!(["a", null, "b"])), "a; b");
        let r = HttpResponse {
            status: 502,
            headers: vec![("X-Retry-After".into(), "3".into())],
            body: "  ".into(),
        };
        assert_eq!(body_text(&r), "HTTP 502");
        assert_eq!(r.reset_hint_ms("x-rate-limit-time-reset-ms", "x-retry-after"), Some(3000));
    }

    #[test]
    fn unknown_kinds_are_refused_naming_the_valid_ones() {
        let error = serde_json::from_str::<Failure>(
            r#"{"kind": "card_declined", "retryable": false, "platform_code": null, "message": "m"}"#,
        )
        .expect_err("an unknown kind");
        assert!(
            error.to_string().contains("unknown variant `card_declined`, expected one of `invalid_request`"),
            "{error}"
        );
        let parsed: Result<FailureKind, String> = "nope".parse();
        assert_eq!(
            parsed,
            Err("unknown failure kind `nope`; the kinds are invalid_request, unauthorized, not_found, invalid_state, declined, rate_limited, platform_unavailable, outcome_unknown, unknown".to_owned())
        );
        assert_eq!("declined".parse::<FailureKind>(), Ok(FailureKind::Declined));
    }
}
