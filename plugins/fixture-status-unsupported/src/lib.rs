//! Test fixture for `capture plugins verify`: a connector whose manifest declares
//! `status_query` while `build_status` and `parse_status` keep the SDK's defaults, which refuse
//! with `unsupported`. The engine would read back an unknown outcome through it and get nothing;
//! the conformance kit's `status-query` check must fail on it. Its captures are correct.

use capture_connector_api::*;

/// The fixture connector.
#[derive(Debug, Default)]
pub struct StatusUnsupported;

impl Connector for StatusUnsupported {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "status-unsupported".into(),
            name: "Fixture: status query declared, not implemented".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema: SCHEMA_VERSION,
            capabilities: Capabilities {
                partial_capture: PartialCapture::Always,
                multiple_payments_per_call: false,
                max_payments_per_call: Some(1),
                asynchronous: false,
                amount_encoding: AmountEncoding::DecimalString,
                max_currency_exponent: 3,
                idempotency_key: true,
                // Declared, but build_status and parse_status are not implemented.
                status_query: true,
            },
            allowed_hosts: vec![],
            credentials: vec!["api_key".into()],
            settings: vec![],
        }
    }

    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
        Ok(HttpRequest {
            method: "POST".into(),
            url: format!("{}/captures", call.base_url),
            headers: vec![Header {
                name: "Authorization".into(),
                value: "Key ".into(),
                secret: Some("api_key".into()),
            }],
            body: Some(format!(r#"{{"amount":"{}"}}"#, call.amount)),
        })
    }

    fn parse_capture(
        &self,
        call: &CaptureCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        Ok(if (200..300).contains(&response.status) {
            CaptureResult::captured(call.amount.clone(), None)
        } else {
            let message = format!("status {}", response.status);
            CaptureResult::failure(FailureKind::Unknown, false, response.status, message, None)
        })
    }
}

export_connector!(StatusUnsupported);
