//! The Optty connector, as a plugin (`cdylib`) for the capture engine.
//!
//! Follows the Optty Merchant API page `POST /orders/{orderReference}/capture` (crates/sandbox/platforms/optty.md):
//! - `Authorization: Bearer <JWT>` (credential `bearer_token`, appended by the host);
//! - body `{captureReference, description?, amount, shippingInfo?}` in that order, where
//!   `captureReference` is the request's idempotency key (unique per merchant and transaction) and
//!   `amount` is a JSON number with at most 2 decimals, written from the exact decimal text;
//! - `shippingInfo` is all three of `shippingCompany`, `shippingMethod`, `trackingNumber`, or absent;
//! - 3-decimal currencies (KWD, BHD...) cannot be expressed and are refused before any call;
//! - one payment per order: partial capture depends on the payment method.
//!
//! Answers: 200 `{captureReference, captureId, capturedAmount}` (references may be numbers or
//! strings) is `captured`; 400 `invalid_request`, 401/403 `unauthorized`, 404 `not_found`,
//! 409 `invalid_state` (none retryable); a 400 saying the request's `captureReference` was already
//! used is `already_captured` (the reference was applied before: how a retry after a lost answer
//! learns the capture went through); 429 `rate_limited` and 5xx `platform_unavailable` are
//! retryable because the same `captureReference` cannot capture twice. Anything else is `unknown`.

use capture_connector_api::{
    AmountEncoding, Capabilities, CaptureCall, CaptureResult, Connector, ConnectorError, Failure,
    FailureKind, Header, HttpRequest, HttpResponse, Manifest, PartialCapture, ResultStatus, SCHEMA_VERSION,
    error_text, export_connector,
};
use capture_core::{Currency, ExactDecimal, Money};
use serde::{Deserialize, Serialize};

/// The Optty connector.
#[derive(Debug, Default)]
pub struct Optty;

export_connector!(Optty);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CaptureBody<'a> {
    capture_reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    amount: serde_json::Number,
    #[serde(skip_serializing_if = "Option::is_none")]
    shipping_info: Option<ShippingInfo<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShippingInfo<'a> {
    shipping_company: &'a str,
    shipping_method: &'a str,
    tracking_number: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuccessBody {
    capture_reference: Option<serde_json::Value>,
    capture_id: Option<serde_json::Value>,
    captured_amount: Option<ExactDecimal>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<serde_json::Value>,
}

/// Whether a 400 message says this capture reference was used before. Optty documents the
/// reference as unique per merchant and transaction but not the wording of the refusal; this
/// matches a message that names the reference and says it was already used.
fn reference_already_used(message: &str, reference: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains(&reference.to_ascii_lowercase())
        && m.contains("already")
        && (m.contains("used") || m.contains("exists"))
}

impl Optty {
    fn amount(call: &CaptureCall) -> Result<(Money, serde_json::Number), ConnectorError> {
        let currency = Currency::from_code(&call.currency)
            .map_err(|e| ConnectorError::new("unsupported_currency", e.to_string()))?;
        if currency.exponent() > 2 {
            return Err(ConnectorError::new(
                "unsupported_currency",
                format!(
                    "currency {currency} has {} decimal places; Optty amounts allow at most 2",
                    currency.exponent()
                ),
            ));
        }
        let money = Money::parse(&call.amount, currency)
            .map_err(|e| ConnectorError::new("invalid_amount", format!("amount: {e}")))?;
        if money.is_negative() {
            return Err(ConnectorError::new("invalid_amount", format!("amount: {money} is negative")));
        }
        // The decimal text is a valid JSON number (strict grammar), so no float is involved.
        let number: serde_json::Number = money
            .to_decimal_string()
            .parse()
            .map_err(|e| ConnectorError::new("invalid_amount", format!("amount: {e}")))?;
        Ok((money, number))
    }
}

impl Connector for Optty {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "optty".into(),
            name: "Optty".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema: SCHEMA_VERSION,
            capabilities: Capabilities {
                partial_capture: PartialCapture::PerPaymentMethod,
                multiple_payments_per_call: false,
                max_payments_per_call: Some(1),
                asynchronous: false,
                amount_encoding: AmountEncoding::DecimalNumber2,
                max_currency_exponent: 2,
                idempotency_key: true,
                status_query: false,
            },
            allowed_hosts: vec!["*.optty.com".into()],
            credentials: vec!["bearer_token".into()],
            settings: vec![],
        }
    }

    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
        if call.payments.len() > 1 {
            return Err(ConnectorError::new(
                "unsupported_payments",
                format!("Optty captures one payment per order; the call names {}", call.payments.len()),
            ));
        }
        if call.order_id.is_empty() {
            return Err(ConnectorError::new("invalid_call", "order_id is empty"));
        }
        if call.idempotency_key.is_empty() {
            return Err(ConnectorError::new(
                "invalid_call",
                "idempotency_key is empty: it is Optty's captureReference",
            ));
        }
        let (_, amount) = Self::amount(call)?;
        let body = CaptureBody {
            capture_reference: &call.idempotency_key,
            description: call.description.as_deref(),
            amount,
            shipping_info: call.shipping.as_ref().map(|s| ShippingInfo {
                shipping_company: &s.company,
                shipping_method: &s.method,
                tracking_number: &s.tracking_number,
            }),
        };
        let body =
            serde_json::to_string(&body).map_err(|e| ConnectorError::new("serialize", e.to_string()))?;
        Ok(HttpRequest {
            method: "POST".into(),
            url: format!(
                "{}/orders/{}/capture",
                call.base_url.trim_end_matches('/'),
                capture_connector_api::encode_path_segment(&call.order_id)?
            ),
            headers: vec![
                Header { name: "Accept".into(), value: "application/json".into(), secret: None },
                Header { name: "Content-Type".into(), value: "application/json".into(), secret: None },
                Header {
                    name: "Authorization".into(),
                    value: "Bearer ".into(),
                    secret: Some("bearer_token".into()),
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
        if status == 200 || status == 201 {
            let Ok(body) = serde_json::from_str::<SuccessBody>(&response.body) else {
                return Ok(CaptureResult::failure(
                    FailureKind::OutcomeUnknown,
                    false,
                    status,
                    format!("unreadable success body: {}", response.body),
                    None,
                ));
            };
            let (requested, _) = Self::amount(call)?;
            let captured = match body.captured_amount {
                Some(d) => Money::new(d.0, requested.currency())
                    .map_err(|e| ConnectorError::new("invalid_response", format!("capturedAmount: {e}")))?,
                None => requested,
            };
            let id = body.capture_id.or(body.capture_reference).map(|v| error_text(&v));
            return Ok(CaptureResult {
                status: ResultStatus::Captured,
                captured_amount: Some(captured.to_decimal_string()),
                platform_capture_id: id,
                failure: None,
            });
        }
        let parsed: Option<ErrorBody> = serde_json::from_str(&response.body).ok();
        let message = parsed
            .as_ref()
            .and_then(|b| b.message.as_ref().map(error_text))
            .unwrap_or_else(|| response.body.trim().to_owned());
        let retry_after_ms = response.retry_after_ms();
        Ok(match status {
            // The same captureReference again: Optty applies a reference once, so the capture it
            // names exists already (this is how a retry after a lost answer learns it went through).
            400 if reference_already_used(&message, &call.idempotency_key) => CaptureResult {
                status: ResultStatus::AlreadyCaptured,
                captured_amount: None,
                platform_capture_id: None,
                failure: Some(Failure {
                    kind: FailureKind::InvalidRequest,
                    retryable: false,
                    platform_code: Some(status.to_string()),
                    message,
                    retry_after_ms: None,
                }),
            },
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
    use capture_connector_api::CallShipping;

    fn call(amount: &str, currency: &str) -> CaptureCall {
        CaptureCall {
            schema: SCHEMA_VERSION,
            base_url: "http://127.0.0.1:9".into(),
            settings: Default::default(),
            order_id: "ORD 1/2".into(),
            currency: currency.into(),
            currency_exponent: 2,
            amount: amount.into(),
            full: false,
            order_amount: amount.into(),
            surcharge: "0.00".into(),
            payments: vec![],
            idempotency_key: "key-1".into(),
            description: None,
            shipping: None,
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, headers: vec![], body: body.into() }
    }

    #[test]
    fn builds_the_documented_request() {
        let mut c = call("100.10", "USD");
        c.description = Some("Please capture this order".into());
        c.shipping = Some(CallShipping {
            company: "DHL".into(),
            method: "Express".into(),
            tracking_number: "T1".into(),
        });
        let r = Optty.build_capture(&c).unwrap();
        assert_eq!(r.url, "http://127.0.0.1:9/orders/ORD%201%2F2/capture");
        assert_eq!(
            r.body.as_deref(),
            Some(
                r#"{"captureReference":"key-1","description":"Please capture this order","amount":100.10,"shippingInfo":{"shippingCompany":"DHL","shippingMethod":"Express","trackingNumber":"T1"}}"#
            )
        );
        assert_eq!(r.headers[2].secret.as_deref(), Some("bearer_token"));
        assert_eq!(r.headers[2].value, "Bearer ");
    }

    #[test]
    fn exact_amounts_on_the_wire() {
        // 0.1 + 0.2 style amounts and a 0-decimal currency keep their exact text.
        assert!(
            Optty.build_capture(&call("0.30", "USD")).unwrap().body.unwrap().contains(r#""amount":0.30"#)
        );
        let jpy = Optty.build_capture(&call("1500", "JPY")).unwrap();
        assert_eq!(jpy.body.as_deref(), Some(r#"{"captureReference":"key-1","amount":1500}"#));
    }

    #[test]
    fn a_used_reference_is_already_captured() {
        let c = call("100.00", "USD");
        let r = Optty
            .parse_capture(
                &c,
                &resp(400, r#"{"statusCode":400,"message":"captureReference key-1 has already been used"}"#),
            )
            .unwrap();
        assert_eq!(r.status, ResultStatus::AlreadyCaptured);
        let other = Optty
            .parse_capture(
                &c,
                &resp(400, r#"{"statusCode":400,"message":"captureReference other has already been used"}"#),
            )
            .unwrap();
        assert_eq!(other.status, ResultStatus::Failed);
    }

    #[test]
    fn refuses_three_decimal_currencies() {
        let e = Optty.build_capture(&call("1.000", "KWD")).unwrap_err();
        assert_eq!(e.code, "unsupported_currency");
        assert!(e.message.contains("KWD"), "{e}");
    }

    #[test]
    fn maps_documented_answers() {
        let c = call("100.00", "USD");
        let ok = Optty
            .parse_capture(
                &c,
                &resp(
                    200,
                    r#"{"captureReference":"key-1","capturedAmount":100,"captureId":"LatEHAuPtpN2HSrTMK-1"}"#,
                ),
            )
            .unwrap();
        assert_eq!(ok.status, ResultStatus::Captured);
        assert_eq!(ok.captured_amount.as_deref(), Some("100.00"));
        assert_eq!(ok.platform_capture_id.as_deref(), Some("LatEHAuPtpN2HSrTMK-1"));
        let numeric = Optty
            .parse_capture(&c, &resp(200, r#"{"captureReference":1,"capturedAmount":99.5,"captureId":42}"#))
            .unwrap();
        assert_eq!(numeric.platform_capture_id.as_deref(), Some("42"));
        assert_eq!(numeric.captured_amount.as_deref(), Some("99.50"));
        for (status, kind, retryable) in [
            (400, "invalid_request", false),
            (401, "unauthorized", false),
            (404, "not_found", false),
            (429, "rate_limited", true),
            (503, "platform_unavailable", true),
            (418, "unknown", false),
        ] {
            let r =
                Optty.parse_capture(&c, &resp(status, r#"{"statusCode":0,"message":["a","b"]}"#)).unwrap();
            let f = r.failure.unwrap();
            assert_eq!((f.kind.as_str(), f.retryable), (kind, retryable), "status {status}");
            assert_eq!(f.message, "a; b");
        }
    }
}
