//! The Acme Pay connector: a plugin built outside the engine's workspace.
//!
//! Acme Pay is a made-up platform whose API counts money in minor units:
//! - `POST {base_url}/captures` with `Acme-Key: <acme_key>` and the body
//!   `{"payment_id", "amount_minor", "currency", "idempotency_key"}`, `amount_minor` an integer
//!   (12034 for 120.34 USD, 1500 for 1500 JPY, 12500 for 12.500 KWD);
//! - `200 {"capture": {"id", "state": "captured" | "processing", "amount_minor"}}`;
//! - errors `{"error": {"type", "message"}}` with 400, 401, 404, 409, 429 or 5xx.
//!
//! Amounts go from the call's decimal string to minor units and back as text and integers, never
//! through a float.

use capture_connector_api::{
    AmountEncoding, Capabilities, CaptureCall, CaptureResult, Connector, ConnectorError, FailureKind, Header,
    HttpRequest, HttpResponse, Manifest, PartialCapture, ResultStatus, SCHEMA_VERSION, export_connector,
};
use serde::{Deserialize, Serialize};

/// The connector (stateless: callable from many threads at once).
#[derive(Debug, Default)]
pub struct Acme;

export_connector!(Acme);

const CREDENTIAL: &str = "acme_key";

#[derive(Serialize)]
struct Body<'a> {
    payment_id: &'a str,
    amount_minor: u64,
    currency: &'a str,
    idempotency_key: &'a str,
}

#[derive(Deserialize)]
struct Answer {
    capture: CaptureAnswer,
}

#[derive(Deserialize)]
struct CaptureAnswer {
    id: String,
    state: String,
    amount_minor: u64,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// `"120.34"` with 2 places -> 12034. The call's amounts always have exactly `places` decimals.
fn to_minor(amount: &str, places: u32) -> Result<u64, ConnectorError> {
    let bad = || {
        ConnectorError::new(
            "invalid_amount",
            format!("amount `{amount}` is not a decimal with {places} places"),
        )
    };
    let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if int.is_empty()
        || frac.len() != places as usize
        || !format!("{int}{frac}").bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    format!("{int}{frac}").parse::<u64>().map_err(|_| bad())
}

/// 12034 with 2 places -> `"120.34"`.
fn from_minor(minor: u64, places: u32) -> String {
    let digits = format!("{minor:0width$}", width = places as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - places as usize);
    if places == 0 { int.to_owned() } else { format!("{int}.{frac}") }
}

impl Connector for Acme {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "acme".into(),
            name: "Acme Pay".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema: SCHEMA_VERSION,
            capabilities: Capabilities {
                partial_capture: PartialCapture::Always,
                multiple_payments_per_call: false,
                max_payments_per_call: Some(1),
                asynchronous: true,
                amount_encoding: AmountEncoding::MinorUnits,
                max_currency_exponent: 3,
                idempotency_key: true,
                status_query: false,
            },
            allowed_hosts: vec!["api.acme-pay.test".into()],
            credentials: vec![CREDENTIAL.into()],
            settings: vec![],
        }
    }

    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
        let [payment] = call.payments.as_slice() else {
            return Err(ConnectorError::new(
                "unsupported_payments",
                format!(
                    "Acme Pay captures exactly one payment per call; the call names {}",
                    call.payments.len()
                ),
            ));
        };
        let body = Body {
            payment_id: &payment.id,
            amount_minor: to_minor(&payment.amount, call.currency_exponent)?,
            currency: &call.currency,
            idempotency_key: &call.idempotency_key,
        };
        Ok(HttpRequest {
            method: "POST".into(),
            url: format!("{}/captures", call.base_url),
            headers: vec![
                Header { name: "Content-Type".into(), value: "application/json".into(), secret: None },
                Header { name: "Acme-Key".into(), value: String::new(), secret: Some(CREDENTIAL.into()) },
            ],
            body: Some(
                serde_json::to_string(&body).map_err(|e| ConnectorError::new("serialize", e.to_string()))?,
            ),
        })
    }

    fn parse_capture(
        &self,
        call: &CaptureCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        let status = response.status;
        if (200..300).contains(&status) {
            let unreadable = || {
                CaptureResult::failure(
                    FailureKind::OutcomeUnknown,
                    false,
                    status,
                    format!("unreadable answer: {}", response.body),
                    None,
                )
            };
            let Ok(Answer { capture }) = serde_json::from_str::<Answer>(&response.body) else {
                return Ok(unreadable());
            };
            let result_status = match capture.state.as_str() {
                "captured" => ResultStatus::Captured,
                "processing" => ResultStatus::Pending,
                _ => return Ok(unreadable()),
            };
            return Ok(CaptureResult {
                status: result_status,
                captured_amount: Some(from_minor(capture.amount_minor, call.currency_exponent)),
                platform_capture_id: Some(capture.id),
                failure: None,
            });
        }
        let message = serde_json::from_str::<ErrorAnswer>(&response.body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| response.body.trim().to_owned());
        Ok(match status {
            400 | 422 => CaptureResult::failure(FailureKind::InvalidRequest, false, status, message, None),
            401 | 403 => CaptureResult::failure(FailureKind::Unauthorized, false, status, message, None),
            404 => CaptureResult::failure(FailureKind::NotFound, false, status, message, None),
            409 => CaptureResult::failure(FailureKind::InvalidState, false, status, message, None),
            429 => CaptureResult::failure(FailureKind::RateLimited, true, status, message, None),
            500..=599 => {
                CaptureResult::failure(FailureKind::PlatformUnavailable, true, status, message, None)
            }
            _ => CaptureResult::failure(FailureKind::Unknown, false, status, message, None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_without_floats() {
        assert_eq!(to_minor("120.34", 2).unwrap(), 12034);
        assert_eq!(to_minor("0.05", 2).unwrap(), 5);
        assert_eq!(to_minor("1500", 0).unwrap(), 1500);
        assert_eq!(to_minor("12.500", 3).unwrap(), 12500);
        assert!(to_minor("1.5", 2).is_err());
        assert!(to_minor("-1.00", 2).is_err());
        assert_eq!(from_minor(12034, 2), "120.34");
        assert_eq!(from_minor(5, 2), "0.05");
        assert_eq!(from_minor(1500, 0), "1500");
        assert_eq!(from_minor(12500, 3), "12.500");
    }
}
