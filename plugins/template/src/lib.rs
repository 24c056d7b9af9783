//! The template connector: a minimal, working connector plugin to copy when you start a new one.
//!
//! It speaks **Example Pay**, a made-up but typical payments API, so that every part of a real
//! connector is here and small. Copy this folder, rename the crate, change the manifest and the
//! two functions, rewrite `fixtures/`, and run `capture plugins verify` (see plugins/README.md,
//! "From an empty folder to a verified plugin").
//!
//! # The platform (Example Pay)
//! - `POST {base_url}/v1/payments/{payment_id}/captures`, one payment per call, any amount up to
//!   what is authorized (partial capture always allowed).
//! - Headers: `Authorization: Bearer <api_key>` (the credential `api_key`: the engine appends it,
//!   the plugin never sees it) and `Idempotency-Key: <the request's idempotency key>`.
//! - Body: `{"amount": "12.34", "currency": "USD", "reference": "<idempotency key>"}`, the amount a
//!   decimal string with the currency's places.
//! - Answers: `201 {"id", "status": "succeeded" | "pending", "amount"}`; `409 {"code":
//!   "already_captured"}`; other errors `{"code", "message"}` with 400, 401, 403, 404, 409, 422,
//!   429 (with `Retry-After` in seconds) or 5xx.
//!
//! # The mapping
//! | answer | result |
//! |---|---|
//! | 2xx `succeeded` | `captured` (amount from the answer) |
//! | 2xx `pending` | `pending` |
//! | 2xx unreadable | `failed`, `outcome_unknown` (money may have moved: read the state first) |
//! | 409 `already_captured` | `already_captured` |
//! | 400, 422 | `invalid_request` |
//! | 401, 403 | `unauthorized` |
//! | 404 | `not_found` |
//! | other 409 | `invalid_state` |
//! | 429 | `rate_limited`, retryable, `retry_after_ms` from `Retry-After` |
//! | 5xx | `platform_unavailable`, retryable (the idempotency key makes a retry safe) |
//! | anything else | `unknown` |

use capture_connector_api::{
    AmountEncoding, Capabilities, CaptureCall, CaptureResult, Connector, ConnectorError, Failure,
    FailureKind, Header, HttpRequest, HttpResponse, Manifest, PartialCapture, ResultStatus, SCHEMA_VERSION,
    export_connector,
};
use serde::{Deserialize, Serialize};

/// The connector. It holds no state: the engine may call it from many threads at once.
#[derive(Debug, Default)]
pub struct Template;

// Generates the `capture_connector_entry` symbol, the ABI descriptor and the panic guards.
export_connector!(Template);

/// The name of the one credential, as the manifest declares it and the configuration names it.
pub const CREDENTIAL: &str = "api_key";

#[derive(Serialize)]
struct CaptureBody<'a> {
    amount: &'a str,
    currency: &'a str,
    reference: &'a str,
}

#[derive(Deserialize)]
struct CaptureAnswer {
    id: Option<String>,
    status: String,
    amount: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorAnswer {
    code: Option<String>,
    message: Option<String>,
}

impl Connector for Template {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "template".into(),
            name: "Example Pay (template)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema: SCHEMA_VERSION,
            capabilities: Capabilities {
                partial_capture: PartialCapture::Always,
                multiple_payments_per_call: false,
                max_payments_per_call: Some(1),
                asynchronous: true,
                amount_encoding: AmountEncoding::DecimalString,
                max_currency_exponent: 3,
                idempotency_key: true,
                // No status query: `build_status` and `parse_status` keep their defaults.
                status_query: false,
            },
            allowed_hosts: vec!["api.example-pay.test".into()],
            credentials: vec![CREDENTIAL.into()],
            settings: vec![],
        }
    }

    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
        // Refuse what the platform cannot express, naming the field and the value.
        let payment = match call.payments.as_slice() {
            [one] => one,
            [] => return Err(ConnectorError::new("invalid_call", "the call names no payment to capture")),
            many => {
                return Err(ConnectorError::new(
                    "unsupported_payments",
                    format!("Example Pay captures one payment per call; the call names {}", many.len()),
                ));
            }
        };
        if call.idempotency_key.is_empty() {
            return Err(ConnectorError::new("invalid_call", "idempotency_key is empty"));
        }
        // The amount arrives as a decimal string with the currency's places: send it as it is.
        let body = CaptureBody {
            amount: &payment.amount,
            currency: &call.currency,
            reference: &call.idempotency_key,
        };
        let body =
            serde_json::to_string(&body).map_err(|e| ConnectorError::new("serialize", e.to_string()))?;
        Ok(HttpRequest {
            method: "POST".into(),
            // Always under the configured base URL: the engine refuses any other origin.
            url: format!(
                "{}/v1/payments/{}/captures",
                call.base_url,
                capture_connector_api::encode_path_segment(&payment.id)?
            ),
            headers: vec![
                Header { name: "Accept".into(), value: "application/json".into(), secret: None },
                Header { name: "Content-Type".into(), value: "application/json".into(), secret: None },
                Header { name: "Idempotency-Key".into(), value: call.idempotency_key.clone(), secret: None },
                // The credential: the engine appends its value and records `Bearer [REDACTED]`.
                Header {
                    name: "Authorization".into(),
                    value: "Bearer ".into(),
                    secret: Some(CREDENTIAL.into()),
                },
            ],
            body: Some(body),
        })
    }

    fn parse_capture(
        &self,
        call: &CaptureCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        let status = response.status;
        if (200..300).contains(&status) {
            // A 2xx we cannot read may still have moved money: outcome_unknown, never a plain failure.
            let unreadable = |why: &str| {
                CaptureResult::failure(
                    FailureKind::OutcomeUnknown,
                    false,
                    status,
                    format!("{why}: {}", response.body),
                    None,
                )
            };
            let Ok(answer) = serde_json::from_str::<CaptureAnswer>(&response.body) else {
                return Ok(unreadable("unreadable success body"));
            };
            let result_status = match answer.status.as_str() {
                "succeeded" => ResultStatus::Captured,
                "pending" => ResultStatus::Pending,
                _ => return Ok(unreadable("unknown capture status")),
            };
            return Ok(CaptureResult {
                status: result_status,
                captured_amount: Some(answer.amount.unwrap_or_else(|| call.amount.clone())),
                platform_capture_id: answer.id,
                failure: None,
            });
        }
        let error: ErrorAnswer = serde_json::from_str(&response.body).unwrap_or_default();
        let message = error.message.unwrap_or_else(|| response.body.trim().to_owned());
        if status == 409 && error.code.as_deref() == Some("already_captured") {
            return Ok(CaptureResult {
                status: ResultStatus::AlreadyCaptured,
                captured_amount: None,
                platform_capture_id: None,
                failure: Some(Failure {
                    kind: FailureKind::InvalidState,
                    retryable: false,
                    platform_code: Some("409".into()),
                    message,
                    retry_after_ms: None,
                }),
            });
        }
        let retry_after_ms = response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .map(|seconds| seconds.saturating_mul(1000));
        // An answer we cannot classify is a `failed` result of kind `unknown`, not an error, so the
        // engine records what came back.
        Ok(match status {
            400 | 422 => CaptureResult::failure(FailureKind::InvalidRequest, false, status, message, None),
            401 | 403 => CaptureResult::failure(FailureKind::Unauthorized, false, status, message, None),
            404 => CaptureResult::failure(FailureKind::NotFound, false, status, message, None),
            409 => CaptureResult::failure(FailureKind::InvalidState, false, status, message, None),
            429 => CaptureResult::failure(FailureKind::RateLimited, true, status, message, retry_after_ms),
            500..=599 => CaptureResult::failure(
                FailureKind::PlatformUnavailable,
                true,
                status,
                message,
                retry_after_ms,
            ),
            _ => CaptureResult::failure(FailureKind::Unknown, false, status, message, None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_connector_api::CallPayment;

    fn call() -> CaptureCall {
        CaptureCall {
            schema: SCHEMA_VERSION,
            base_url: "https://api.example-pay.test".into(),
            settings: Default::default(),
            order_id: "order-1".into(),
            currency: "USD".into(),
            currency_exponent: 2,
            amount: "12.34".into(),
            full: true,
            order_amount: "12.34".into(),
            surcharge: "0.00".into(),
            payments: vec![CallPayment {
                id: "pay 1".into(),
                amount: "12.34".into(),
                authorized: "12.34".into(),
                method: None,
            }],
            idempotency_key: "key-1".into(),
            description: None,
            shipping: None,
        }
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, headers: vec![], body: body.into() }
    }

    #[test]
    fn builds_the_documented_request() {
        let r = Template.build_capture(&call()).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "https://api.example-pay.test/v1/payments/pay%201/captures");
        assert_eq!(r.body.as_deref(), Some(r#"{"amount":"12.34","currency":"USD","reference":"key-1"}"#));
        let auth = r.headers.iter().find(|h| h.name == "Authorization").unwrap();
        assert_eq!((auth.value.as_str(), auth.secret.as_deref()), ("Bearer ", Some(CREDENTIAL)));
    }

    #[test]
    fn refuses_several_payments_naming_the_count() {
        let mut c = call();
        c.payments.push(c.payments[0].clone());
        let e = Template.build_capture(&c).unwrap_err();
        assert_eq!(e.code, "unsupported_payments");
        assert!(e.message.contains("names 2"), "{e}");
    }

    #[test]
    fn maps_the_answers() {
        let ok = Template
            .parse_capture(&call(), &answer(201, r#"{"id":"cap_1","status":"succeeded","amount":"12.34"}"#));
        let ok = ok.unwrap();
        assert_eq!((ok.status, ok.platform_capture_id.as_deref()), (ResultStatus::Captured, Some("cap_1")));
        let pending = Template.parse_capture(&call(), &answer(201, r#"{"status":"pending"}"#)).unwrap();
        assert_eq!(
            (pending.status, pending.captured_amount.as_deref()),
            (ResultStatus::Pending, Some("12.34"))
        );
        let unknown = Template.parse_capture(&call(), &answer(200, "<html>")).unwrap();
        assert_eq!(unknown.failure.unwrap().kind, "outcome_unknown");
        let twice =
            Template.parse_capture(&call(), &answer(409, r#"{"code":"already_captured","message":"done"}"#));
        assert_eq!(twice.unwrap().status, ResultStatus::AlreadyCaptured);
        for (status, kind, retryable) in [
            (400, "invalid_request", false),
            (401, "unauthorized", false),
            (404, "not_found", false),
            (409, "invalid_state", false),
            (429, "rate_limited", true),
            (503, "platform_unavailable", true),
            (302, "unknown", false),
        ] {
            let f = Template
                .parse_capture(&call(), &answer(status, r#"{"message":"m"}"#))
                .unwrap()
                .failure
                .unwrap();
            assert_eq!(
                (f.kind.as_str(), f.retryable, f.message.as_str()),
                (kind, retryable, "m"),
                "{status}"
            );
        }
    }

    #[test]
    fn reads_retry_after_in_seconds() {
        let mut r = answer(429, "slow down");
        r.headers.push(("retry-after".into(), "3".into()));
        let f = Template.parse_capture(&call(), &r).unwrap().failure.unwrap();
        assert_eq!((f.retry_after_ms, f.message.as_str()), (Some(3000), "slow down"));
    }
}
