//! The Medusa connector (admin API v1), as a plugin (`cdylib`) for the capture engine.
//!
//! Follows the Medusa admin API page "Capture a Payment" (the facts, with the public pages they
//! come from: crates/sandbox/platforms/medusa.md).
//!
//! # Requests
//! - One payment in the call: `POST {base}/admin/payments/{payment_id}/capture`.
//! - Several payments (the engine only sends several when the capture is full, so they are all
//!   of the order's capturable payments): `POST {base}/admin/orders/{order_id}/capture`, which
//!   captures every payment of the order that is not captured yet.
//! - No body: Medusa v1 always captures a payment in full, so no amount goes on the wire. Headers
//!   `Accept: application/json` and `x-medusa-access-token: <api_token>` (the credential, appended
//!   by the host). Path segments are percent-encoded.
//! - A partial capture (`full == false`, or a payment whose amount is not its authorized amount,
//!   e.g. after an earlier partial capture elsewhere) is refused before anything is sent.
//!
//! # Answers
//! - 200 `{payment}`: `captured_at` set is `captured`, for `payment.amount` (an integer in the
//!   currency's minor unit: cents for USD, yen for JPY, fils for KWD). Medusa answers an already
//!   captured payment with 200 and the payment unchanged: one answer cannot tell that apart from
//!   a fresh capture, so it is reported as `captured` too (the money is captured either way; this
//!   request may not be what captured it). 200 with `captured_at` null (which v1 never sends) is
//!   `failed`/`unknown`, not retryable.
//! - 200 `{order}`: `payment_status` `captured` is `captured` for the sum of the call's payments;
//!   `requires_action` is a **failure** although the status is 200 (`invalid_state`, not
//!   retryable: a payment provider refused, and some payments may have been captured, which the
//!   message lists); `canceled` is `invalid_state`; `not_paid` and `awaiting` (which v1 never
//!   answers to a capture) are `pending`, so the engine reads the state back instead of reporting
//!   success or inviting a blind retry; anything else is `unknown`.
//! - Errors have the body `{type, message, code?}` (v1 answers 401 with the plain text
//!   `Unauthorized`): 400 and 422 `invalid_request`; 401 and 403 `unauthorized`; 404 `not_found`;
//!   409 `invalid_state`, **retryable** (Medusa's "the request conflicted with another request":
//!   nothing was captured); 429 `rate_limited`, retryable after `Retry-After` seconds; 500 (e.g.
//!   `unexpected_state` "Failed to capture Payment ...": the provider failed) and 502, 503, 504
//!   `platform_unavailable`, **not** retryable: the provider may have captured the money before
//!   the error, so read the payment's `captured_at` first (the message says so). Anything else is
//!   `unknown`; a 2xx that cannot be read is `outcome_unknown`.
//!
//! # Status (ABI 1.1)
//! One payment id: `GET {base}/admin/payments/{id}`; none or several: `GET {base}/admin/orders/{id}`
//! (the order lists its payments; only the named ones count when ids are given). Captured payments
//! are `captured` with the amount captured so far; a payment that is not captured is
//! `failed`/`not_found` (Medusa captures synchronously: there is no capture in flight to wait
//! for, so the engine may conclude nothing was captured once its in-flight window has passed); a canceled payment, or an
//! order in `requires_action`, is `failed`/`invalid_state`. Errors map as above.
//!
//! # Hosts
//! Medusa is self-hosted, so the manifest allows no public host: the configured base URL must be
//! loopback (a local Medusa, or a tunnel or proxy to it). A store on its own domain needs the
//! engine to accept an operator-configured host for this platform (the engine has no such
//! setting yet; a connector setting could not widen the manifest's static allow-list).

use capture_connector_api::{
    AmountEncoding, Capabilities, CaptureCall, CaptureResult, Connector, ConnectorError, FailureKind, Header,
    HttpRequest, HttpResponse, Manifest, PartialCapture, ResultStatus, SCHEMA_VERSION, StatusCall,
    error_text, export_connector,
};
use capture_core::{Currency, Money};
use serde::Deserialize;

/// The Medusa connector.
#[derive(Debug, Default)]
pub struct Medusa;

export_connector!(Medusa);

/// The credential the manifest declares; the host appends it to the token header.
pub const CREDENTIAL: &str = "api_token";
/// Medusa v1's API token header.
pub const TOKEN_HEADER: &str = "x-medusa-access-token";
/// The longest platform message kept in a failure (a gateway may answer a whole HTML page).
const MAX_MESSAGE: usize = 300;

/// A Medusa payment, as much of it as the connector reads.
#[derive(Debug, Deserialize)]
struct Payment {
    id: String,
    /// Integer, in the currency's minor unit.
    amount: i64,
    #[serde(default)]
    currency_code: Option<String>,
    #[serde(default)]
    captured_at: Option<String>,
    #[serde(default)]
    canceled_at: Option<String>,
}

/// A Medusa order, as much of it as the connector reads.
#[derive(Debug, Deserialize)]
struct Order {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    payments: Option<Vec<Payment>>,
}

/// A 2xx body: `{payment}` or `{order}`.
#[derive(Debug, Deserialize)]
struct SuccessBody {
    #[serde(default)]
    payment: Option<Payment>,
    #[serde(default)]
    order: Option<Order>,
}

/// Medusa's error body `{type, message, code?}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<String>,
}

fn headers() -> Vec<Header> {
    vec![
        Header { name: "Accept".into(), value: "application/json".into(), secret: None },
        Header { name: TOKEN_HEADER.into(), value: String::new(), secret: Some(CREDENTIAL.into()) },
    ]
}

fn request(method: &str, url: String) -> HttpRequest {
    HttpRequest { method: method.into(), url, headers: headers(), body: None }
}

/// The call's currency, checked against the exponent the host sent.
fn currency(code: &str, exponent: u32) -> Result<Currency, ConnectorError> {
    let currency =
        Currency::from_code(code).map_err(|e| ConnectorError::new("unsupported_currency", e.to_string()))?;
    if currency.exponent() != exponent {
        return Err(ConnectorError::new(
            "invalid_call",
            format!("currency {currency} has exponent {}, the call says {exponent}", currency.exponent()),
        ));
    }
    Ok(currency)
}

fn success(status: ResultStatus, amount: Money, id: Option<String>) -> CaptureResult {
    CaptureResult {
        status,
        captured_amount: Some(amount.to_decimal_string()),
        platform_capture_id: id,
        failure: None,
    }
}

/// At most [`MAX_MESSAGE`] characters of `text`, trimmed.
fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `type: message` from Medusa's error body, or the body text (401 is plain `Unauthorized`).
fn error_message(body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { kind, message: Some(message), code }) => {
            let message = clip(&error_text(&message));
            let kind = kind.or(code);
            match kind {
                Some(kind) if !kind.is_empty() => format!("{kind}: {message}"),
                _ => message,
            }
        }
        _ if body.trim().is_empty() => "(empty body)".to_owned(),
        _ => clip(body),
    }
}

/// A non-2xx answer, for the capture and the status routes alike. `subject` names what to read
/// back before a retry (`payment pay_1`, `order order_1`).
fn error_result(response: &HttpResponse, subject: &str, read_back: &str) -> CaptureResult {
    let status = response.status;
    let message = error_message(&response.body);
    let code = status.to_string();
    let read_first = |m: String| {
        format!(
            "{m} (the payment provider may have captured before the error: read {subject}'s captured_at \
             with {read_back} before capturing again)"
        )
    };
    match status {
        400 | 422 => CaptureResult::failure(FailureKind::InvalidRequest, false, code, message, None),
        401 | 403 => CaptureResult::failure(FailureKind::Unauthorized, false, code, message, None),
        404 => CaptureResult::failure(FailureKind::NotFound, false, code, message, None),
        409 => CaptureResult::failure(
            FailureKind::InvalidState,
            true,
            code,
            format!("{message} (a conflicting request was in progress; nothing was captured, retry)"),
            None,
        ),
        429 => {
            CaptureResult::failure(FailureKind::RateLimited, true, code, message, response.retry_after_ms())
        }
        500 | 502 | 503 | 504 => {
            CaptureResult::failure(FailureKind::PlatformUnavailable, false, code, read_first(message), None)
        }
        500..=599 => CaptureResult::failure(FailureKind::Unknown, false, code, read_first(message), None),
        _ => CaptureResult::failure(FailureKind::Unknown, false, code, message, None),
    }
}

/// A payment of an answer in the call's currency, as money.
fn payment_money(p: &Payment, currency: Currency) -> Result<Money, ConnectorError> {
    if let Some(code) = &p.currency_code
        && !code.eq_ignore_ascii_case(currency.code())
    {
        return Err(ConnectorError::new(
            "invalid_response",
            format!("payment {} is in `{code}` but the call is in {currency}", p.id),
        ));
    }
    if p.amount < 0 {
        return Err(ConnectorError::new(
            "invalid_response",
            format!("payment {} has a negative amount {}", p.id, p.amount),
        ));
    }
    Ok(Money::from_minor(p.amount, currency))
}

fn sum(payments: &[&Payment], currency: Currency) -> Result<Money, ConnectorError> {
    payments.iter().try_fold(Money::zero(currency), |acc, p| {
        acc.checked_add(payment_money(p, currency)?)
            .map_err(|e| ConnectorError::new("invalid_response", format!("amounts: {e}")))
    })
}

/// The payments split into (captured, not captured).
fn split<'a>(payments: &[&'a Payment]) -> (Vec<&'a Payment>, Vec<&'a Payment>) {
    payments.iter().partition(|p| p.captured_at.is_some())
}

fn ids(payments: &[&Payment]) -> String {
    if payments.is_empty() {
        "none".to_owned()
    } else {
        payments.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// The payments of `order` that `wanted` names, in `wanted`'s order (all of them when `wanted`
/// is empty). A named payment missing from the answer is an error: the answer cannot be read.
fn named<'a>(
    order: &'a [Payment],
    wanted: &[&str],
    order_id: &str,
) -> Result<Vec<&'a Payment>, ConnectorError> {
    if wanted.is_empty() {
        return Ok(order.iter().collect());
    }
    wanted
        .iter()
        .map(|id| {
            order.iter().find(|p| p.id == *id).ok_or_else(|| {
                ConnectorError::new(
                    "invalid_response",
                    format!("order {order_id}'s answer does not list payment {id}"),
                )
            })
        })
        .collect()
}

impl Medusa {
    /// Refuses what Medusa v1 cannot do: it captures each payment in full.
    fn check_full(call: &CaptureCall, currency: Currency) -> Result<(), ConnectorError> {
        let money = |what: &str, text: &str| {
            Money::parse(text, currency)
                .map_err(|e| ConnectorError::new("invalid_amount", format!("{what}: {e}")))
        };
        if !call.full {
            return Err(ConnectorError::new(
                "partial_capture_unsupported",
                format!(
                    "Medusa v1 captures payments in full; {} {currency} of order {} is a partial capture",
                    call.amount, call.order_id
                ),
            ));
        }
        for p in &call.payments {
            let amount = money(&format!("payment {} amount", p.id), &p.amount)?;
            let authorized = money(&format!("payment {} authorized", p.id), &p.authorized)?;
            if amount != authorized {
                return Err(ConnectorError::new(
                    "partial_capture_unsupported",
                    format!("Medusa v1 captures payment {} in full ({authorized}); {amount} was asked", p.id),
                ));
            }
        }
        Ok(())
    }

    fn parse_payment(
        p: &Payment,
        expected_id: Option<&str>,
        currency: Currency,
        status_query: bool,
        code: String,
    ) -> Result<CaptureResult, ConnectorError> {
        if let Some(id) = expected_id
            && p.id != id
        {
            return Err(ConnectorError::new(
                "invalid_response",
                format!("the answer is about payment {}, not {id}", p.id),
            ));
        }
        let amount = payment_money(p, currency)?;
        if p.captured_at.is_some() {
            return Ok(success(ResultStatus::Captured, amount, Some(p.id.clone())));
        }
        if let Some(at) = &p.canceled_at {
            return Ok(CaptureResult::failure(
                FailureKind::InvalidState,
                false,
                code,
                format!("payment {} was canceled at {at}; it cannot be captured", p.id),
                None,
            ));
        }
        if status_query {
            // Medusa captures synchronously: a payment without `captured_at` holds no capture.
            return Ok(CaptureResult::failure(
                FailureKind::NotFound,
                false,
                code,
                format!("payment {} is not captured", p.id),
                None,
            ));
        }
        Ok(CaptureResult::failure(
            FailureKind::Unknown,
            false,
            code,
            format!(
                "Medusa answered the capture of payment {} without captured_at: it is not captured; \
                 read the payment before capturing again",
                p.id
            ),
            None,
        ))
    }

    fn parse_order(
        order: &Order,
        order_id: &str,
        wanted: &[&str],
        currency: Currency,
        status_query: bool,
        code: String,
    ) -> Result<CaptureResult, ConnectorError> {
        let payment_status = order.payment_status.as_deref().unwrap_or("");
        // An absent or empty list says nothing about the payments.
        let payments = match order.payments.as_deref() {
            Some(list) if !list.is_empty() => Some(named(list, wanted, order_id)?),
            _ => None,
        };
        if payment_status == "requires_action" {
            let detail = match &payments {
                Some(ps) => {
                    let (done, not) = split(ps);
                    format!("; captured: {}; not captured: {}", ids(&done), ids(&not))
                }
                None => String::new(),
            };
            return Ok(CaptureResult::failure(
                FailureKind::InvalidState,
                false,
                code,
                format!(
                    "Medusa answered 200 but order {order_id} has payment_status requires_action: a payment \
                     provider refused the capture{detail}; resolve it in Medusa, then read the payments"
                ),
                None,
            ));
        }
        let Some(payments) = payments else {
            // Without the payments only the order status speaks.
            return Ok(match payment_status {
                "captured" => CaptureResult {
                    status: ResultStatus::Captured,
                    captured_amount: None,
                    platform_capture_id: None,
                    failure: None,
                },
                _ if status_query => {
                    return Err(ConnectorError::new(
                        "invalid_response",
                        format!(
                            "order {order_id}'s answer lists no payments (payment_status `{payment_status}`)"
                        ),
                    ));
                }
                other => Self::other_order_status(other, order, order_id, code),
            });
        };
        let (done, not) = split(&payments);
        if not.is_empty() {
            return Ok(success(ResultStatus::Captured, sum(&done, currency)?, None));
        }
        if status_query {
            if !done.is_empty() {
                // Some captured, some not: the amount captured so far.
                return Ok(success(ResultStatus::Captured, sum(&done, currency)?, None));
            }
            if order.status.as_deref() == Some("canceled") || payment_status == "canceled" {
                return Ok(Self::other_order_status("canceled", order, order_id, code));
            }
            if let Some(p) = not.iter().find(|p| p.canceled_at.is_some()) {
                return Ok(CaptureResult::failure(
                    FailureKind::InvalidState,
                    false,
                    code,
                    format!("payment {} of order {order_id} was canceled; it cannot be captured", p.id),
                    None,
                ));
            }
            // Medusa captures synchronously: no payment with `captured_at` means no capture.
            return Ok(CaptureResult::failure(
                FailureKind::NotFound,
                false,
                code,
                format!("no payment of order {order_id} is captured ({})", ids(&not)),
                None,
            ));
        }
        if payment_status == "captured" {
            // The order says captured but a payment does not: the answer contradicts itself.
            return Ok(CaptureResult::failure(
                FailureKind::OutcomeUnknown,
                false,
                code,
                format!(
                    "order {order_id} says captured but payments {} have no captured_at; read the payments",
                    ids(&not)
                ),
                None,
            ));
        }
        Ok(Self::other_order_status(payment_status, order, order_id, code))
    }

    /// An order answer whose `payment_status` is neither `captured` nor `requires_action`.
    fn other_order_status(
        payment_status: &str,
        order: &Order,
        order_id: &str,
        code: String,
    ) -> CaptureResult {
        match payment_status {
            "canceled" => CaptureResult::failure(
                FailureKind::InvalidState,
                false,
                code,
                format!("order {order_id} is canceled (status {:?}); it cannot be captured", order.status),
                None,
            ),
            "not_paid" | "awaiting" => CaptureResult {
                // Not captured yet, and not refused: let a status query settle it.
                status: ResultStatus::Pending,
                captured_amount: None,
                platform_capture_id: None,
                failure: None,
            },
            other => CaptureResult::failure(
                FailureKind::Unknown,
                false,
                code,
                format!(
                    "order {order_id} answered payment_status `{other}` to a capture; read the order before \
                     capturing again"
                ),
                None,
            ),
        }
    }
}

impl Connector for Medusa {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "medusa".into(),
            name: "Medusa".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema: SCHEMA_VERSION,
            capabilities: Capabilities {
                partial_capture: PartialCapture::Never,
                multiple_payments_per_call: true,
                max_payments_per_call: None,
                asynchronous: false,
                amount_encoding: AmountEncoding::MinorUnits,
                max_currency_exponent: 3,
                idempotency_key: false,
                status_query: true,
            },
            // Self-hosted: no public host; the configured base URL must be loopback.
            allowed_hosts: vec![],
            credentials: vec![CREDENTIAL.into()],
            settings: vec![],
        }
    }

    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
        let currency = currency(&call.currency, call.currency_exponent)?;
        let base = call.base_url.trim_end_matches('/');
        let url = match call.payments.as_slice() {
            [] => {
                return Err(ConnectorError::new(
                    "invalid_call",
                    format!("the call names no payment of order {}; Medusa captures payments", call.order_id),
                ));
            }
            [one] => {
                if one.id.is_empty() {
                    return Err(ConnectorError::new("invalid_call", "payments[0].id is empty"));
                }
                format!(
                    "{base}/admin/payments/{}/capture",
                    capture_connector_api::encode_path_segment(&one.id)?
                )
            }
            _ => {
                if call.order_id.is_empty() {
                    return Err(ConnectorError::new(
                        "invalid_call",
                        "order_id is empty: several payments are captured through the order",
                    ));
                }
                format!(
                    "{base}/admin/orders/{}/capture",
                    capture_connector_api::encode_path_segment(&call.order_id)?
                )
            }
        };
        Self::check_full(call, currency)?;
        Ok(request("POST", url))
    }

    fn parse_capture(
        &self,
        call: &CaptureCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        let currency = currency(&call.currency, call.currency_exponent)?;
        let single = match call.payments.as_slice() {
            [one] => Some(one.id.as_str()),
            _ => None,
        };
        let subject = match single {
            Some(id) => format!("payment {id}"),
            None => format!("order {}'s payments", call.order_id),
        };
        let read_back = match single {
            Some(id) => format!("GET /admin/payments/{id}"),
            None => format!("GET /admin/orders/{}", call.order_id),
        };
        let status = response.status;
        if !(200..300).contains(&status) {
            return Ok(error_result(response, &subject, &read_back));
        }
        let unreadable = |why: String| {
            CaptureResult::failure(
                FailureKind::OutcomeUnknown,
                false,
                status.to_string(),
                format!(
                    "unreadable success body ({why}): {}; read {subject} before capturing again",
                    clip(&response.body)
                ),
                None,
            )
        };
        let body = match serde_json::from_str::<SuccessBody>(&response.body) {
            Ok(b) => b,
            Err(e) => return Ok(unreadable(e.to_string())),
        };
        match (body.payment, body.order) {
            (Some(p), _) => Self::parse_payment(&p, single, currency, false, status.to_string()),
            (None, Some(order)) => {
                let wanted: Vec<&str> = call.payments.iter().map(|p| p.id.as_str()).collect();
                Self::parse_order(&order, &call.order_id, &wanted, currency, false, status.to_string())
            }
            (None, None) => Ok(unreadable("neither `payment` nor `order`".into())),
        }
    }

    fn build_status(&self, call: &StatusCall) -> Result<HttpRequest, ConnectorError> {
        currency(&call.currency, call.currency_exponent)?;
        let base = call.base_url.trim_end_matches('/');
        let url = match call.payment_ids.as_slice() {
            [one] if !one.is_empty() => {
                format!("{base}/admin/payments/{}", capture_connector_api::encode_path_segment(one)?)
            }
            _ if call.order_id.is_empty() => {
                return Err(ConnectorError::new(
                    "invalid_call",
                    "order_id is empty and the call names no single payment to read",
                ));
            }
            _ => {
                format!("{base}/admin/orders/{}", capture_connector_api::encode_path_segment(&call.order_id)?)
            }
        };
        Ok(request("GET", url))
    }

    fn parse_status(
        &self,
        call: &StatusCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        let currency = currency(&call.currency, call.currency_exponent)?;
        let single = match call.payment_ids.as_slice() {
            [one] if !one.is_empty() => Some(one.as_str()),
            _ => None,
        };
        let status = response.status;
        if !(200..300).contains(&status) {
            let (subject, read_back) = match single {
                Some(id) => (format!("payment {id}"), format!("GET /admin/payments/{id}")),
                None => (
                    format!("order {}'s payments", call.order_id),
                    format!("GET /admin/orders/{}", call.order_id),
                ),
            };
            return Ok(error_result(response, &subject, &read_back));
        }
        let body = serde_json::from_str::<SuccessBody>(&response.body)
            .map_err(|e| ConnectorError::new("invalid_response", format!("status answer: {e}")))?;
        match (body.payment, body.order) {
            (Some(p), _) => Self::parse_payment(&p, single, currency, true, status.to_string()),
            (None, Some(order)) => {
                let wanted: Vec<&str> = call.payment_ids.iter().map(String::as_str).collect();
                Self::parse_order(&order, &call.order_id, &wanted, currency, true, status.to_string())
            }
            (None, None) => Err(ConnectorError::new(
                "invalid_response",
                "the status answer has neither `payment` nor `order`",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
