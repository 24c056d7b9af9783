//! The Wix eCommerce connector, as a plugin (`cdylib`) for the capture engine.
//!
//! Follows the Wix page "Capture Authorized Payments" (crates/sandbox/platforms/wix.md):
//!
//! - **Request**: `POST {base}/ecom/v1/order-billing/capture-authorized-payments` with
//!   `Content-Type` and `Accept: application/json`, `Authorization: <api key>` with **no** scheme
//!   prefix (credential `api_key`, appended by the host), and `wix-site-id: <site_id>` when the
//!   optional `site_id` setting is configured (API keys need it; OAuth tokens carry the site).
//! - **Body**: `{"orderId": <GUID>, "payments": [{"paymentId": <GUID>, "amount": {"amount": "<decimal>"}}]}`
//!   with 1 to 100 payments. `amount` is **omitted** for a payment captured in full (its amount equals
//!   its authorized amount: Wix then captures the full authorization) and **sent** for a partial
//!   one. Whether Wix accepts partial amounts is unverified (two pages disagree), so a full capture
//!   works under both readings and a partial one is never silently turned into a full one. Amounts
//!   are decimal strings written from the exact decimal (`"0.30"`, JPY `"1500"`, KWD `"12.500"`).
//!   Ids that are not GUIDs, an empty call or more than 100 payments are refused before any call.
//! - **Success** (200 `{orderTransactions: {orderId, payments, refunds}}`): Wix answers with all the
//!   order's transactions. For each payment of the call the connector reads the capture this call
//!   made: the newest entry of `regularPaymentDetails.authorizationDetails.captures[]` (by
//!   `createdDate`, the later entry on a tie), so earlier captures of the same payment are not
//!   counted again. Any `FAILED` -> `failed` (`invalid_state`, not retryable), else any `PENDING` ->
//!   `pending`, else all `SUCCEEDED` -> `captured`; `captured_amount` is the exact sum of those
//!   captures' `amount.amount`, as Wix reports it (if Wix captured something other than what was
//!   asked, the result says what Wix did). `platform_capture_id` is the capture ids joined with `,`.
//!   A 2xx the connector cannot read, or one without a capture for a payment of the call, is
//!   `outcome_unknown`: money may have moved.
//! - **Errors** (`{message, details: {applicationError: {code, description, data}}}` or
//!   `details.validationError.fieldViolations[]`): `PAYMENT_ALREADY_CAPTURED` -> `already_captured`
//!   and `PAYMENT_HAS_PENDING_CAPTURE` -> `invalid_state`, retryable (this request was refused while
//!   another capture settles; the same key may be sent again later); `INVALID_AMOUNT` and
//!   other 400s -> `invalid_request` (field violations are named); `PAYMENT_NOT_FOUND` / 404 ->
//!   `not_found`; `PAYMENT_ALREADY_VOIDED`, `PAYMENT_NOT_AUTHORIZED`, `ORDER_HAS_CHARGEBACKS` and other
//!   409/428 -> `invalid_state`; 401/403 -> `unauthorized`; 429 -> `rate_limited`, retryable, with
//!   `Retry-After` seconds as `retry_after_ms`; 500/502/503/504 -> `platform_unavailable`, **not**
//!   retryable: Wix has no idempotency key, so the order's transactions must be read first; anything
//!   else -> `unknown`. `platform_code` is Wix's application code when it sent one, else the status.
//! - **Status** (ABI 1.1): `GET {base}/ecom/v1/payments/orders/{orderId}` ("List Transactions For
//!   Single Order"), same headers without a body, read with the rules above for the query's payments
//!   (all payments with captures when it names none). When the query carries `platform_capture_id`
//!   (the ids a capture returned), exactly those captures are read; otherwise each payment's newest.
//!   A payment without a capture is `not_found` (nothing was captured), never retryable by itself.

use capture_connector_api::{
    AmountEncoding, Capabilities, CaptureCall, CaptureResult, Connector, ConnectorError, Failure,
    FailureKind, Header, HttpRequest, HttpResponse, Manifest, PartialCapture, ResultStatus, SCHEMA_VERSION,
    StatusCall, error_text, export_connector,
};
use capture_core::{Currency, Money};
use serde::Serialize;
use serde_json::Value;

mod transactions;

use transactions::{Selection, read_transactions};

/// The most payments one Wix capture call may carry (the page's `maxItems`).
pub const MAX_PAYMENTS: usize = 100;

/// The capture route, below the base URL.
const CAPTURE_PATH: &str = "/ecom/v1/order-billing/capture-authorized-payments";
/// The "List Transactions For Single Order" route prefix, below the base URL.
const TRANSACTIONS_PATH: &str = "/ecom/v1/payments/orders/";

/// The Wix eCommerce connector.
#[derive(Debug, Default)]
pub struct Wix;

export_connector!(Wix);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CaptureBody<'a> {
    order_id: &'a str,
    payments: Vec<PaymentCapture<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentCapture<'a> {
    payment_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<Price>,
}

#[derive(Serialize)]
struct Price {
    amount: String,
}

/// True for a GUID in its canonical text form: 8-4-4-4-12 hexadecimal digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8usize, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn require_guid(field: &str, value: &str) -> Result<(), ConnectorError> {
    if is_guid(value) {
        Ok(())
    } else {
        Err(ConnectorError::new(
            "invalid_call",
            format!("{field} `{value}` is not a GUID (Wix ids are 8-4-4-4-12 hexadecimal digits)"),
        ))
    }
}

fn currency_of(code: &str) -> Result<Currency, ConnectorError> {
    Currency::from_code(code).map_err(|e| ConnectorError::new("unsupported_currency", e.to_string()))
}

fn money(field: &str, text: &str, currency: Currency) -> Result<Money, ConnectorError> {
    Money::parse(text, currency).map_err(|e| ConnectorError::new("invalid_amount", format!("{field}: {e}")))
}

/// The headers of every Wix call: JSON, the API key without a prefix, the site id if configured.
fn headers(settings: &std::collections::BTreeMap<String, String>, with_body: bool) -> Vec<Header> {
    let mut headers = Vec::with_capacity(4);
    if with_body {
        headers.push(Header { name: "Content-Type".into(), value: "application/json".into(), secret: None });
    }
    headers.push(Header { name: "Accept".into(), value: "application/json".into(), secret: None });
    headers.push(Header {
        name: "Authorization".into(),
        value: String::new(),
        secret: Some("api_key".into()),
    });
    if let Some(site) = settings.get("site_id").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        headers.push(Header { name: "wix-site-id".into(), value: site.to_owned(), secret: None });
    }
    headers
}

/// Wix's error body, read leniently: the application code, and a message naming what went wrong.
struct WixError {
    code: Option<String>,
    message: String,
}

fn read_error(response: &HttpResponse) -> WixError {
    let Ok(body) = serde_json::from_str::<Value>(&response.body) else {
        let text = response.body.trim();
        let message = if text.is_empty() {
            format!("HTTP {} with an empty body", response.status)
        } else {
            text.to_owned()
        };
        return WixError { code: None, message };
    };
    let message = body.get("message").map(error_text).unwrap_or_default();
    let details = body.get("details");
    let app = details.and_then(|d| d.get("applicationError"));
    let code = app.and_then(|a| a.get("code")).map(error_text).filter(|c| !c.is_empty());
    let description = app.and_then(|a| a.get("description")).map(error_text).unwrap_or_default();
    let violations: Vec<String> = details
        .and_then(|d| d.get("validationError"))
        .and_then(|v| v.get("fieldViolations"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|fv| {
                    let field = fv.get("field").map(error_text).unwrap_or_default();
                    let description = fv.get("description").map(error_text).unwrap_or_default();
                    let rule = fv.get("violatedRule").map(error_text).unwrap_or_default();
                    match (description.is_empty(), rule.is_empty()) {
                        (false, false) => format!("{field}: {description} ({rule})"),
                        (false, true) => format!("{field}: {description}"),
                        (true, false) => format!("{field}: {rule}"),
                        (true, true) => field,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    if !message.is_empty() {
        parts.push(message);
    }
    if !description.is_empty() && !parts.iter().any(|p| p == &description) {
        parts.push(description);
    }
    if !violations.is_empty() {
        parts.push(format!("invalid fields: {}", violations.join("; ")));
    }
    let message = if parts.is_empty() { response.body.trim().to_owned() } else { parts.join(": ") };
    WixError { code, message }
}

/// Maps a non-2xx answer (capture or status route) to a result.
fn map_error(response: &HttpResponse) -> CaptureResult {
    let status = response.status;
    let WixError { code, message } = read_error(response);
    let platform_code = code.clone().unwrap_or_else(|| status.to_string());
    let fail = |kind: FailureKind, retryable: bool| {
        CaptureResult::failure(kind, retryable, platform_code.clone(), message.clone(), None)
    };
    match code.as_deref() {
        // Nothing new was captured, and nothing failed: the failure details only carry Wix's code
        // and message into the `already_captured` outcome.
        Some("PAYMENT_ALREADY_CAPTURED") => {
            return CaptureResult {
                status: ResultStatus::AlreadyCaptured,
                captured_amount: None,
                platform_capture_id: None,
                failure: Some(Failure {
                    kind: FailureKind::InvalidState,
                    retryable: false,
                    platform_code: Some(platform_code.clone()),
                    message: message.clone(),
                    retry_after_ms: None,
                }),
            };
        }
        // An earlier capture is still settling: this request was refused (nothing applied); the
        // same key may be sent again once that capture settled.
        Some("PAYMENT_HAS_PENDING_CAPTURE") => return fail(FailureKind::InvalidState, true),
        Some("INVALID_AMOUNT") => return fail(FailureKind::InvalidRequest, false),
        Some("PAYMENT_NOT_FOUND") => return fail(FailureKind::NotFound, false),
        Some("PAYMENT_ALREADY_VOIDED" | "PAYMENT_NOT_AUTHORIZED" | "ORDER_HAS_CHARGEBACKS") => {
            return fail(FailureKind::InvalidState, false);
        }
        _ => {}
    }
    match status {
        400 => fail(FailureKind::InvalidRequest, false),
        401 | 403 => fail(FailureKind::Unauthorized, false),
        404 => fail(FailureKind::NotFound, false),
        409 | 428 => fail(FailureKind::InvalidState, false),
        429 => CaptureResult::failure(
            FailureKind::RateLimited,
            true,
            platform_code,
            message,
            response.retry_after_ms(),
        ),
        500 | 502 | 503 | 504 => CaptureResult::failure(
            FailureKind::PlatformUnavailable,
            false,
            platform_code,
            format!(
                "{message} (Wix has no idempotency key: read the order's transactions before capturing again)"
            ),
            response.retry_after_ms(),
        ),
        _ => fail(FailureKind::Unknown, false),
    }
}

impl Wix {
    fn base(base_url: &str) -> &str {
        base_url.trim_end_matches('/')
    }
}

impl Connector for Wix {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "wix".into(),
            name: "Wix eCommerce".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema: SCHEMA_VERSION,
            capabilities: Capabilities {
                partial_capture: PartialCapture::Always,
                multiple_payments_per_call: true,
                max_payments_per_call: Some(MAX_PAYMENTS as u32),
                asynchronous: true,
                amount_encoding: AmountEncoding::DecimalString,
                max_currency_exponent: 3,
                idempotency_key: false,
                status_query: true,
            },
            allowed_hosts: vec!["www.wixapis.com".into()],
            credentials: vec!["api_key".into()],
            settings: vec!["site_id".into()],
        }
    }

    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
        require_guid("orderId", &call.order_id)?;
        if call.payments.is_empty() {
            return Err(ConnectorError::new(
                "invalid_call",
                "payments: the call names no payment; Wix captures 1 to 100 named payments",
            ));
        }
        if call.payments.len() > MAX_PAYMENTS {
            return Err(ConnectorError::new(
                "too_many_payments",
                format!(
                    "payments: Wix captures at most {MAX_PAYMENTS} payments per call; the call names {}",
                    call.payments.len()
                ),
            ));
        }
        let currency = currency_of(&call.currency)?;
        let mut total = Money::zero(currency);
        let mut payments = Vec::with_capacity(call.payments.len());
        for (i, p) in call.payments.iter().enumerate() {
            require_guid(&format!("payments[{i}].paymentId"), &p.id)?;
            if call.payments[..i].iter().any(|q| q.id.eq_ignore_ascii_case(&p.id)) {
                return Err(ConnectorError::new(
                    "invalid_call",
                    format!("payments[{i}].paymentId `{}` is listed twice", p.id),
                ));
            }
            let amount = money(&format!("payments[{i}].amount"), &p.amount, currency)?;
            let authorized = money(&format!("payments[{i}].authorized"), &p.authorized, currency)?;
            if amount.is_negative() || amount.is_zero() {
                return Err(ConnectorError::new(
                    "invalid_amount",
                    format!("payments[{i}].amount {amount} must be greater than zero"),
                ));
            }
            if amount > authorized {
                return Err(ConnectorError::new(
                    "invalid_amount",
                    format!(
                        "payments[{i}].amount {amount} exceeds payment {}'s authorized {authorized}",
                        p.id
                    ),
                ));
            }
            total = total
                .checked_add(amount)
                .map_err(|e| ConnectorError::new("invalid_amount", format!("payments: {e}")))?;
            // No amount means "the full authorized amount" to Wix: only send one for a partial capture.
            let amount = (amount != authorized).then(|| Price { amount: amount.to_decimal_string() });
            payments.push(PaymentCapture { payment_id: &p.id, amount });
        }
        let asked = money("amount", &call.amount, currency)?;
        if total != asked {
            return Err(ConnectorError::new(
                "invalid_call",
                format!("payments add up to {total} but the call's amount is {asked}"),
            ));
        }
        let body = serde_json::to_string(&CaptureBody { order_id: &call.order_id, payments })
            .map_err(|e| ConnectorError::new("serialize", e.to_string()))?;
        Ok(HttpRequest {
            method: "POST".into(),
            url: format!("{}{CAPTURE_PATH}", Self::base(&call.base_url)),
            headers: headers(&call.settings, true),
            body: Some(body),
        })
    }

    fn parse_capture(
        &self,
        call: &CaptureCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        if !(200..300).contains(&response.status) {
            return Ok(map_error(response));
        }
        let currency = currency_of(&call.currency)?;
        let ids: Vec<&str> = call.payments.iter().map(|p| p.id.as_str()).collect();
        Ok(read_transactions(response, &call.order_id, &ids, currency, Selection::NewestPerPayment, true))
    }

    fn build_status(&self, call: &StatusCall) -> Result<HttpRequest, ConnectorError> {
        require_guid("orderId", &call.order_id)?;
        for (i, id) in call.payment_ids.iter().enumerate() {
            require_guid(&format!("payment_ids[{i}]"), id)?;
        }
        currency_of(&call.currency)?;
        Ok(HttpRequest {
            method: "GET".into(),
            url: format!("{}{TRANSACTIONS_PATH}{}", Self::base(&call.base_url), call.order_id),
            headers: headers(&call.settings, false),
            body: None,
        })
    }

    fn parse_status(
        &self,
        call: &StatusCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        if !(200..300).contains(&response.status) {
            return Ok(map_error(response));
        }
        let currency = currency_of(&call.currency)?;
        let ids: Vec<&str> = call.payment_ids.iter().map(String::as_str).collect();
        let capture_ids: Vec<String> = call
            .platform_capture_id
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let selection =
            if capture_ids.is_empty() { Selection::NewestPerPayment } else { Selection::Ids(&capture_ids) };
        Ok(read_transactions(response, &call.order_id, &ids, currency, selection, false))
    }
}

#[cfg(test)]
mod tests;
