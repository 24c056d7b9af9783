//! The BigCommerce connector, as a plugin (`cdylib`) for the capture engine.
//!
//! Follows the BigCommerce page "Capture Order Payment" (the facts, with the public pages they
//! come from: crates/sandbox/platforms/bigcommerce.md).
//!
//! # Capture
//! `POST {base}/stores/{store_hash}/v3/orders/{order_id}/payment_actions/capture` with
//! `Accept: application/json`, `Content-Type: application/json`, `X-Auth-Token: <access_token>`
//! (credential `access_token`, appended by the host) and the body `{}`, byte for byte.
//!
//! - The call names no amount and no payment: BigCommerce captures the order's whole authorized
//!   payment. Partial capture is refused (the engine's built-in check refuses it first; the
//!   connector refuses a call whose `full` is false too). Any currency works, since no amount is
//!   sent.
//! - `store_hash` comes from the settings and must be `[A-Za-z0-9]+`; `order_id` must be a positive
//!   integer written in canonical decimal (`100`, not `0100`, `+100`, `1e2` or `ORD-100`). Both are
//!   refused before anything is sent, with a message naming the field and its value.
//!
//! # Answers to a capture
//! | status | result | retryable |
//! |---|---|---|
//! | 201 (body `{}`, any JSON object, or empty) | `pending` with the call's amount: the payment request is scheduled and `payment_status` becomes `capture pending` | - |
//! | 201 with a body that is not a JSON object, any other 2xx | `failed` `outcome_unknown` | no: read the transactions |
//! | 400 | `invalid_request` | no |
//! | 401, 403 | `unauthorized` | no |
//! | 404 | `not_found` | no |
//! | 422 | `invalid_state` when the answer speaks of the order's state (see below), else `invalid_request` | no |
//! | 429 | `rate_limited`, `retry_after_ms` from `X-Rate-Limit-Time-Reset-Ms` (or `X-Retry-After` seconds x 1000) | yes |
//! | 500, 502, 503, 504 (any 5xx) | `platform_unavailable` | **no**: BigCommerce has no idempotency key, so the capture may have gone through; read the order's transactions before retrying |
//! | anything else | `unknown` | no |
//!
//! The 422 rule: the body is always `{}`, so a 422 cannot be about a field the connector sent; it is
//! `invalid_state` when the `title`, a key of `errors` or a message of `errors` contains (ignoring
//! case) one of [`STATE_WORDS`] (`state`, `status`, `already`, `captured`, `pending`, `void`,
//! `refund`, `declin`), and `invalid_request` otherwise. Neither is retryable.
//!
//! Error bodies are `{status, title, type}` (422 adds `errors: {field: message}`); the failure
//! message is the `title` followed by `field: message` pairs, or the raw body when it is not JSON.
//!
//! # Status (ABI 1.1)
//! `GET {base}/stores/{store_hash}/v3/orders/{order_id}/transactions` with `Accept` and
//! `X-Auth-Token`, no body. 200 `{data: [{event, status, amount, ...}], meta: {...}}` or 204 (no
//! transactions), read as follows, first match wins:
//!
//! 1. any `capture` transaction with status `ok`: `captured`, `captured_amount` the sum of every
//!    ok capture's `amount` (read exactly from the JSON number, rescaled to the currency),
//!    `platform_capture_id` the id of the last ok capture;
//! 2. a `capture` with status `error`: `failed`, `invalid_state`, not retryable (declined);
//! 3. a `void` with status `ok`: `failed`, `invalid_state`, not retryable (the authorization is gone);
//! 4. otherwise (a `pending` transaction, only an authorization, or none yet: BigCommerce records
//!    the capture asynchronously): `pending`, `captured_amount` the sum of the `pending`
//!    transactions' amounts, or zero when there are none.
//!
//! Only the first page of transactions is read. Errors map as for a capture, except that every
//! 5xx is retryable: reading transactions changes nothing. An unreadable 2xx is `outcome_unknown`
//! (retryable, for the same reason).

use capture_connector_api::{
    AmountEncoding, Capabilities, CaptureCall, CaptureResult, Connector, ConnectorError, FailureKind, Header,
    HttpRequest, HttpResponse, Manifest, PartialCapture, ResultStatus, SCHEMA_VERSION, StatusCall,
    error_text, export_connector,
};
use capture_core::{Currency, ExactDecimal, Money};
use serde::Deserialize;

/// The BigCommerce connector.
#[derive(Debug, Default)]
pub struct BigCommerce;

export_connector!(BigCommerce);

/// The credential the `X-Auth-Token` header carries.
pub const CREDENTIAL: &str = "access_token";

/// The setting naming the store.
pub const STORE_HASH: &str = "store_hash";

/// Words that make a 422 an `invalid_state` (matched ignoring case in the title and `errors`).
pub const STATE_WORDS: &[&str] =
    &["state", "status", "already", "captured", "pending", "void", "refund", "declin"];

/// The hint every failure that might hide an applied capture carries.
const READ_FIRST: &str = "BigCommerce has no idempotency key: read the order's transactions before retrying";

/// BigCommerce's error body; 422 adds `errors`.
#[derive(Deserialize)]
struct ErrorBody {
    title: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<serde_json::Value>,
}

/// The transactions list.
#[derive(Deserialize)]
struct Transactions {
    data: Vec<Transaction>,
}

/// One transaction; only what the status mapping reads.
#[derive(Deserialize)]
struct Transaction {
    #[serde(default)]
    id: Option<serde_json::Value>,
    event: String,
    status: String,
    #[serde(default)]
    amount: Option<ExactDecimal>,
}

/// `store_hash` from the settings: present and `[A-Za-z0-9]+`.
fn store_hash(settings: &std::collections::BTreeMap<String, String>) -> Result<&str, ConnectorError> {
    let Some(hash) = settings.get(STORE_HASH) else {
        return Err(ConnectorError::new(
            "missing_setting",
            format!("setting `{STORE_HASH}` is missing: BigCommerce URLs name the store"),
        ));
    };
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ConnectorError::new(
            "invalid_setting",
            format!(
                "setting `{STORE_HASH}` is `{hash}`; a BigCommerce store hash is letters and digits only"
            ),
        ));
    }
    Ok(hash)
}

/// The order id as BigCommerce writes it: a positive integer in canonical decimal.
fn order_id(id: &str) -> Result<u64, ConnectorError> {
    let refuse = || {
        ConnectorError::new(
            "invalid_order_id",
            format!(
                "order_id `{id}` is not a positive integer; BigCommerce order ids are integers such as 100"
            ),
        )
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.starts_with('0') {
        return Err(refuse());
    }
    id.parse::<u64>().map_err(|_| refuse())
}

fn header(name: &str, value: &str) -> Header {
    Header { name: name.into(), value: value.into(), secret: None }
}

fn auth_header() -> Header {
    Header { name: "X-Auth-Token".into(), value: String::new(), secret: Some(CREDENTIAL.into()) }
}

/// The error's title and `errors` pairs as one message (the raw body when it is not JSON).
fn error_message(response: &HttpResponse) -> (String, bool) {
    let Ok(body) = serde_json::from_str::<ErrorBody>(&response.body) else {
        let raw = response.body.trim();
        let message = if raw.is_empty() { format!("HTTP {}", response.status) } else { raw.to_owned() };
        return (message, false);
    };
    let mut parts = Vec::new();
    if let Some(title) = body.title.as_ref().map(error_text) {
        parts.push(title);
    }
    if let Some(serde_json::Value::Object(errors)) = &body.errors {
        for (field, message) in errors {
            parts.push(format!("{field}: {}", error_text(message)));
        }
    }
    let message = if parts.is_empty() { format!("HTTP {}", response.status) } else { parts.join("; ") };
    let lower = message.to_ascii_lowercase();
    let about_state = STATE_WORDS.iter().any(|w| lower.contains(w));
    (message, about_state)
}

/// Whether an error message says the payment was captured already ("The order payment has
/// already been captured").
fn already_captured(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already") && m.contains("captured")
}

/// The mapping of a non-2xx answer, shared by capture and status. `read_only` requests may be
/// retried after a 5xx; a capture may not, blindly.
fn map_error(response: &HttpResponse, read_only: bool) -> CaptureResult {
    let status = response.status;
    let (message, about_state) = error_message(response);
    match status {
        400 => CaptureResult::failure(FailureKind::InvalidRequest, false, status, message, None),
        401 | 403 => CaptureResult::failure(FailureKind::Unauthorized, false, status, message, None),
        404 => CaptureResult::failure(FailureKind::NotFound, false, status, message, None),
        // The payment is captured already: the platform holds the money (whose capture it is, no
        // answer of a keyless platform can say; the engine reads the state back).
        422 if !read_only && already_captured(&message) => CaptureResult {
            status: ResultStatus::AlreadyCaptured,
            ..CaptureResult::failure(FailureKind::InvalidState, false, status, message, None)
        },
        422 if about_state => CaptureResult::failure(FailureKind::InvalidState, false, status, message, None),
        422 => CaptureResult::failure(FailureKind::InvalidRequest, false, status, message, None),
        429 => CaptureResult::failure(
            FailureKind::RateLimited,
            true,
            status,
            message,
            response.reset_hint_ms("x-rate-limit-time-reset-ms", "x-retry-after"),
        ),
        500..=599 if read_only => {
            CaptureResult::failure(FailureKind::PlatformUnavailable, true, status, message, None)
        }
        500..=599 => CaptureResult::failure(
            FailureKind::PlatformUnavailable,
            false,
            status,
            format!("{message}; {READ_FIRST}"),
            None,
        ),
        _ => CaptureResult::failure(FailureKind::Unknown, false, status, message, None),
    }
}

fn currency_of(code: &str) -> Result<Currency, ConnectorError> {
    Currency::from_code(code).map_err(|e| ConnectorError::new("unsupported_currency", e.to_string()))
}

/// Sums transaction amounts exactly in `currency`.
fn sum<'a>(
    currency: Currency,
    mut transactions: impl Iterator<Item = &'a Transaction>,
) -> Result<Money, ConnectorError> {
    transactions.try_fold(Money::zero(currency), |acc, t| {
        let amount = t.amount.map(|d| d.0).ok_or_else(|| {
            ConnectorError::new("invalid_response", format!("{} transaction has no amount", t.event))
        })?;
        let money = Money::new(amount, currency)
            .map_err(|e| ConnectorError::new("invalid_response", format!("transaction amount: {e}")))?;
        acc.checked_add(money).map_err(|e| ConnectorError::new("invalid_response", e.to_string()))
    })
}

impl Connector for BigCommerce {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "bigcommerce".into(),
            name: "BigCommerce".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema: SCHEMA_VERSION,
            capabilities: Capabilities {
                partial_capture: PartialCapture::Never,
                // The call names no payment: it captures the order's payment, however many.
                multiple_payments_per_call: true,
                max_payments_per_call: None,
                asynchronous: true,
                amount_encoding: AmountEncoding::None,
                // No amount is sent, so any currency can be captured.
                max_currency_exponent: 3,
                idempotency_key: false,
                status_query: true,
            },
            allowed_hosts: vec!["api.bigcommerce.com".into()],
            credentials: vec![CREDENTIAL.into()],
            settings: vec![STORE_HASH.into()],
        }
    }

    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
        if !call.full {
            return Err(ConnectorError::new(
                "partial_capture_unsupported",
                format!(
                    "amount {} {} is not the full capturable amount; BigCommerce captures only the whole authorized payment",
                    call.amount, call.currency
                ),
            ));
        }
        let hash = store_hash(&call.settings)?;
        let id = order_id(&call.order_id)?;
        Ok(HttpRequest {
            method: "POST".into(),
            url: format!(
                "{}/stores/{hash}/v3/orders/{id}/payment_actions/capture",
                call.base_url.trim_end_matches('/')
            ),
            headers: vec![
                header("Accept", "application/json"),
                header("Content-Type", "application/json"),
                auth_header(),
            ],
            body: Some("{}".into()),
        })
    }

    fn parse_capture(
        &self,
        call: &CaptureCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        let status = response.status;
        if !(200..300).contains(&status) {
            return Ok(map_error(response, false));
        }
        let body = response.body.trim();
        let readable = body.is_empty()
            || matches!(serde_json::from_str::<serde_json::Value>(body), Ok(serde_json::Value::Object(_)));
        if status != 201 || !readable {
            return Ok(CaptureResult::failure(
                FailureKind::OutcomeUnknown,
                false,
                status,
                format!(
                    "BigCommerce answers a capture with 201 {{}}; got {status} `{body}`: the capture may have been scheduled; {READ_FIRST}"
                ),
                None,
            ));
        }
        let currency = currency_of(&call.currency)?;
        let amount = Money::parse(&call.amount, currency)
            .map_err(|e| ConnectorError::new("invalid_amount", format!("amount: {e}")))?;
        Ok(CaptureResult {
            status: ResultStatus::Pending,
            captured_amount: Some(amount.to_decimal_string()),
            platform_capture_id: None,
            failure: None,
        })
    }

    fn build_status(&self, call: &StatusCall) -> Result<HttpRequest, ConnectorError> {
        let hash = store_hash(&call.settings)?;
        let id = order_id(&call.order_id)?;
        Ok(HttpRequest {
            method: "GET".into(),
            url: format!("{}/stores/{hash}/v3/orders/{id}/transactions", call.base_url.trim_end_matches('/')),
            headers: vec![header("Accept", "application/json"), auth_header()],
            body: None,
        })
    }

    fn parse_status(
        &self,
        call: &StatusCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        let status = response.status;
        if !(200..300).contains(&status) {
            return Ok(map_error(response, true));
        }
        let currency = currency_of(&call.currency)?;
        let transactions = match status {
            204 => Vec::new(),
            200 => match serde_json::from_str::<Transactions>(&response.body) {
                Ok(t) => t.data,
                Err(e) => {
                    return Ok(CaptureResult::failure(
                        FailureKind::OutcomeUnknown,
                        true,
                        status,
                        format!("unreadable transactions ({e}): the capture's state is unknown"),
                        None,
                    ));
                }
            },
            _ => {
                return Ok(CaptureResult::failure(
                    FailureKind::OutcomeUnknown,
                    true,
                    status,
                    format!("BigCommerce lists transactions with 200 or 204; got {status}"),
                    None,
                ));
            }
        };
        let is = |t: &&Transaction, event: &str, state: &str| {
            t.event.eq_ignore_ascii_case(event) && t.status.eq_ignore_ascii_case(state)
        };
        let captured: Vec<&Transaction> = transactions.iter().filter(|t| is(t, "capture", "ok")).collect();
        if let Some(last) = captured.last() {
            let amount = sum(currency, captured.iter().copied())?;
            return Ok(CaptureResult {
                status: ResultStatus::Captured,
                captured_amount: Some(amount.to_decimal_string()),
                platform_capture_id: last.id.as_ref().map(error_text),
                failure: None,
            });
        }
        if transactions.iter().any(|t| is(&t, "capture", "error")) {
            return Ok(CaptureResult::failure(
                FailureKind::InvalidState,
                false,
                status,
                "the capture transaction failed (status error): the payment was not captured".into(),
                None,
            ));
        }
        if transactions.iter().any(|t| is(&t, "void", "ok")) {
            return Ok(CaptureResult::failure(
                FailureKind::InvalidState,
                false,
                status,
                "the authorization was voided: the payment cannot be captured".into(),
                None,
            ));
        }
        // A capture in flight is a `pending` transaction (or a `capture` one still `pending`).
        let pendings: Vec<&Transaction> = transactions
            .iter()
            .filter(|t| t.event.eq_ignore_ascii_case("pending") || is(t, "capture", "pending"))
            .collect();
        if pendings.is_empty() {
            return Ok(CaptureResult::failure(
                FailureKind::NotFound,
                false,
                status,
                "no capture transaction, pending or done: the payment is not captured".into(),
                None,
            ));
        }
        let pending = sum(currency, pendings.iter().copied())?;
        Ok(CaptureResult {
            status: ResultStatus::Pending,
            captured_amount: Some(pending.to_decimal_string()),
            platform_capture_id: None,
            failure: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(order_id: &str, amount: &str, currency: &str, full: bool) -> CaptureCall {
        CaptureCall {
            schema: SCHEMA_VERSION,
            base_url: "https://api.bigcommerce.com/".into(),
            settings: [(STORE_HASH.to_owned(), "abc123".to_owned())].into(),
            order_id: order_id.into(),
            currency: currency.into(),
            currency_exponent: currency_of(currency).unwrap().exponent(),
            amount: amount.into(),
            full,
            order_amount: amount.into(),
            surcharge: "0".into(),
            payments: vec![],
            idempotency_key: "key-1".into(),
            description: Some("ignored".into()),
            shipping: None,
        }
    }

    fn status_call(order_id: &str, currency: &str) -> StatusCall {
        StatusCall {
            schema: SCHEMA_VERSION,
            base_url: "http://127.0.0.1:9".into(),
            settings: [(STORE_HASH.to_owned(), "abc123".to_owned())].into(),
            order_id: order_id.into(),
            currency: currency.into(),
            currency_exponent: currency_of(currency).unwrap().exponent(),
            payment_ids: vec![],
            idempotency_key: None,
            platform_capture_id: None,
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, headers: vec![], body: body.into() }
    }

    fn failure_of(r: &CaptureResult) -> (&str, bool, Option<&str>) {
        let f = r.failure.as_ref().expect("a failure");
        (f.kind.as_str(), f.retryable, f.platform_code.as_deref())
    }

    #[test]
    fn manifest_declares_what_bigcommerce_can_do() {
        let m = BigCommerce.manifest();
        assert_eq!(m.id, "bigcommerce");
        assert_eq!(m.capabilities.partial_capture, PartialCapture::Never);
        assert!(m.capabilities.multiple_payments_per_call);
        assert_eq!(m.capabilities.max_payments_per_call, None);
        assert!(m.capabilities.asynchronous);
        assert_eq!(m.capabilities.amount_encoding, AmountEncoding::None);
        assert_eq!(m.capabilities.max_currency_exponent, 3);
        assert!(!m.capabilities.idempotency_key);
        assert!(m.capabilities.status_query);
        assert_eq!(m.allowed_hosts, ["api.bigcommerce.com"]);
        assert_eq!(m.credentials, [CREDENTIAL]);
        assert_eq!(m.settings, [STORE_HASH]);
    }

    #[test]
    fn builds_the_documented_request() {
        let r = BigCommerce.build_capture(&call("100", "120.00", "USD", true)).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "https://api.bigcommerce.com/stores/abc123/v3/orders/100/payment_actions/capture");
        assert_eq!(
            r.headers,
            vec![
                Header { name: "Accept".into(), value: "application/json".into(), secret: None },
                Header { name: "Content-Type".into(), value: "application/json".into(), secret: None },
                Header {
                    name: "X-Auth-Token".into(),
                    value: String::new(),
                    secret: Some("access_token".into())
                },
            ]
        );
        assert_eq!(r.body.as_deref(), Some("{}"));
    }

    #[test]
    fn no_amount_reaches_the_wire_whatever_the_currency() {
        for (amount, currency) in [("15000", "JPY"), ("12.500", "KWD"), ("0.30", "USD")] {
            let r = BigCommerce.build_capture(&call("104", amount, currency, true)).unwrap();
            assert_eq!(r.body.as_deref(), Some("{}"), "{currency}");
            assert!(!r.url.contains(amount), "{}", r.url);
        }
    }

    #[test]
    fn refuses_an_order_id_that_is_not_a_positive_integer() {
        for bad in
            ["ORD-100", "", "0", "0100", "+100", "-1", "1e2", "10.0", " 100", "99999999999999999999999"]
        {
            let e = BigCommerce.build_capture(&call(bad, "1.00", "USD", true)).unwrap_err();
            assert_eq!(e.code, "invalid_order_id", "{bad}");
            assert!(e.message.contains("order_id") && e.message.contains(&format!("`{bad}`")), "{e}");
            let e = BigCommerce.build_status(&status_call(bad, "USD")).unwrap_err();
            assert_eq!(e.code, "invalid_order_id", "{bad}");
        }
    }

    #[test]
    fn refuses_a_partial_capture() {
        let e = BigCommerce.build_capture(&call("101", "10.00", "USD", false)).unwrap_err();
        assert_eq!(e.code, "partial_capture_unsupported");
        assert!(e.message.contains("10.00 USD"), "{e}");
    }

    #[test]
    fn refuses_a_missing_or_malformed_store_hash() {
        let mut c = call("100", "1.00", "USD", true);
        c.settings.clear();
        let e = BigCommerce.build_capture(&c).unwrap_err();
        assert_eq!(e.code, "missing_setting");
        assert!(e.message.contains("store_hash"), "{e}");
        for bad in ["", "abc/123", "abc 123", "../x"] {
            c.settings.insert(STORE_HASH.into(), bad.into());
            let e = BigCommerce.build_capture(&c).unwrap_err();
            assert_eq!(e.code, "invalid_setting", "{bad}");
            assert!(e.message.contains("store_hash") && e.message.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn created_is_pending_with_the_full_amount() {
        for body in ["{}", "", " {} \n", r#"{"unexpected":true}"#] {
            let r = BigCommerce.parse_capture(&call("104", "12.500", "KWD", true), &resp(201, body)).unwrap();
            assert_eq!(r.status, ResultStatus::Pending, "{body:?}");
            assert_eq!(r.captured_amount.as_deref(), Some("12.500"));
            assert_eq!(r.failure, None);
        }
    }

    #[test]
    fn an_unexpected_success_is_an_unknown_outcome() {
        let c = call("100", "120.00", "USD", true);
        for (status, body) in [(200, "{}"), (202, "{}"), (204, ""), (201, "<html>"), (201, "[]")] {
            let r = BigCommerce.parse_capture(&c, &resp(status, body)).unwrap();
            assert_eq!(r.status, ResultStatus::Failed);
            assert_eq!(failure_of(&r).0, "outcome_unknown", "{status} {body}");
            assert!(!failure_of(&r).1);
            assert!(r.failure.unwrap().message.contains("read the order's transactions"));
        }
    }

    #[test]
    fn maps_every_documented_error() {
        let c = call("100", "120.00", "USD", true);
        let body = |s: u16, title: &str| {
            format!(
                r#"{{"status":{s},"title":"{title}","type":"https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"}}"#
            )
        };
        for (status, kind, retryable) in [
            (400, "invalid_request", false),
            (401, "unauthorized", false),
            (403, "unauthorized", false),
            (404, "not_found", false),
            (429, "rate_limited", true),
            (500, "platform_unavailable", false),
            (502, "platform_unavailable", false),
            (503, "platform_unavailable", false),
            (504, "platform_unavailable", false),
            (409, "unknown", false),
            (418, "unknown", false),
            (301, "unknown", false),
        ] {
            let r = BigCommerce.parse_capture(&c, &resp(status, &body(status, "Some Title"))).unwrap();
            let code = status.to_string();
            assert_eq!(failure_of(&r), (kind, retryable, Some(code.as_str())), "status {status}");
            let message = r.failure.unwrap().message;
            assert!(message.starts_with("Some Title"), "{message}");
            if (500..600).contains(&status) {
                assert!(message.ends_with(READ_FIRST), "{message}");
            }
        }
    }

    #[test]
    fn a_422_about_the_order_state_is_invalid_state() {
        let c = call("103", "50.00", "USD", true);
        let state = r#"{"status":422,"title":"The order's payment cannot be captured in its current state","type":"t",
            "errors":{"payment_status":"Order 103 has payment_status captured; only authorized payments can be captured"}}"#;
        let r = BigCommerce.parse_capture(&c, &resp(422, state)).unwrap();
        assert_eq!(failure_of(&r), ("invalid_state", false, Some("422")));
        assert_eq!(
            r.failure.unwrap().message,
            "The order's payment cannot be captured in its current state; payment_status: Order 103 has payment_status captured; only authorized payments can be captured"
        );
        // Found in `errors` alone, ignoring case.
        let r = BigCommerce
            .parse_capture(
                &c,
                &resp(422, r#"{"status":422,"title":"Unprocessable","errors":{"order":"ALREADY paid"}}"#),
            )
            .unwrap();
        assert_eq!(failure_of(&r).0, "invalid_state");
        // Nothing about the state: the request itself was refused.
        let r = BigCommerce
            .parse_capture(
                &c,
                &resp(
                    422,
                    r#"{"status":422,"title":"Unprocessable Entity","errors":{"body":"must be an object"}}"#,
                ),
            )
            .unwrap();
        assert_eq!(failure_of(&r), ("invalid_request", false, Some("422")));
        assert_eq!(r.failure.unwrap().message, "Unprocessable Entity; body: must be an object");
    }

    #[test]
    fn rate_limits_carry_the_reset_hint() {
        let c = call("100", "120.00", "USD", true);
        let mut r = resp(429, r#"{"status":429,"title":"Too many requests","type":"t"}"#);
        r.headers = vec![
            ("x-rate-limit-requests-left".into(), "0".into()),
            ("x-rate-limit-time-reset-ms".into(), "1500".into()),
            ("x-retry-after".into(), "9".into()),
        ];
        assert_eq!(BigCommerce.parse_capture(&c, &r).unwrap().failure.unwrap().retry_after_ms, Some(1500));
        r.headers = vec![("X-Retry-After".into(), "2".into())];
        assert_eq!(BigCommerce.parse_capture(&c, &r).unwrap().failure.unwrap().retry_after_ms, Some(2000));
        r.headers = vec![];
        let f = BigCommerce.parse_capture(&c, &r).unwrap().failure.unwrap();
        assert_eq!((f.kind.as_str(), f.retryable, f.retry_after_ms), ("rate_limited", true, None));
    }

    #[test]
    fn a_body_that_is_not_json_becomes_the_message() {
        let c = call("100", "120.00", "USD", true);
        let r = BigCommerce.parse_capture(&c, &resp(502, "<html>Bad Gateway</html>\n")).unwrap();
        assert!(r.failure.unwrap().message.starts_with("<html>Bad Gateway</html>; "));
        let r = BigCommerce.parse_capture(&c, &resp(503, "")).unwrap();
        assert!(r.failure.unwrap().message.starts_with("HTTP 503; "));
    }

    #[test]
    fn builds_the_status_request() {
        let r = BigCommerce.build_status(&status_call("100", "USD")).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.url, "http://127.0.0.1:9/stores/abc123/v3/orders/100/transactions");
        assert_eq!(
            r.headers,
            vec![
                Header { name: "Accept".into(), value: "application/json".into(), secret: None },
                Header {
                    name: "X-Auth-Token".into(),
                    value: String::new(),
                    secret: Some("access_token".into())
                },
            ]
        );
        assert_eq!(r.body, None);
        let mut c = status_call("100", "USD");
        c.settings.clear();
        assert_eq!(BigCommerce.build_status(&c).unwrap_err().code, "missing_setting");
    }

    fn list(transactions: &str) -> HttpResponse {
        resp(
            200,
            &format!(
                r#"{{"data":[{transactions}],"meta":{{"pagination":{{"total":1,"count":1,"per_page":50,"current_page":1,"total_pages":1}}}}}}"#
            ),
        )
    }

    const AUTH: &str = r#"{"id":1,"event":"authorization","status":"ok","amount":120.00,"currency":"USD"}"#;

    #[test]
    fn status_ok_captures_are_captured_with_their_exact_sum() {
        let c = status_call("104", "KWD");
        let r = BigCommerce
            .parse_status(
                &c,
                &list(
                    r#"{"id":1,"event":"authorization","status":"ok","amount":12.500},
                         {"id":2,"event":"pending","status":"ok","amount":12.500},
                         {"id":3,"event":"capture","status":"ok","amount":12.5}"#,
                ),
            )
            .unwrap();
        assert_eq!(r.status, ResultStatus::Captured);
        assert_eq!(r.captured_amount.as_deref(), Some("12.500"));
        assert_eq!(r.platform_capture_id.as_deref(), Some("3"));

        // Two captures add up exactly (0.1 + 0.2 is 0.30, not 0.30000000000000004).
        let r = BigCommerce
            .parse_status(
                &status_call("100", "USD"),
                &list(
                    r#"{"id":7,"event":"capture","status":"ok","amount":0.1},
                         {"id":"8","event":"capture","status":"ok","amount":"0.2"},
                         {"id":9,"event":"capture","status":"error","amount":5}"#,
                ),
            )
            .unwrap();
        assert_eq!(r.status, ResultStatus::Captured);
        assert_eq!(r.captured_amount.as_deref(), Some("0.30"));
        assert_eq!(r.platform_capture_id.as_deref(), Some("8"));
    }

    #[test]
    fn status_pending_is_pending_and_nothing_is_not_found() {
        let c = status_call("100", "USD");
        let r = BigCommerce
            .parse_status(
                &c,
                &list(&format!(r#"{AUTH},{{"id":2,"event":"pending","status":"ok","amount":120}}"#)),
            )
            .unwrap();
        assert_eq!((r.status, r.captured_amount.as_deref()), (ResultStatus::Pending, Some("120.00")));
        // No capture transaction at all, pending or done: nothing was captured (and nothing is on
        // its way), so the engine may conclude once its in-flight window has passed.
        for (call, answer) in
            [(&c, list(AUTH)), (&c, resp(204, "")), (&status_call("102", "JPY"), resp(204, ""))]
        {
            let r = BigCommerce.parse_status(call, &answer).unwrap();
            assert_eq!(r.status, ResultStatus::Failed);
            assert_eq!(r.failure.as_ref().map(|f| f.kind), Some(FailureKind::NotFound));
        }
    }

    #[test]
    fn status_a_failed_capture_or_a_void_is_invalid_state() {
        let c = status_call("100", "USD");
        let r = BigCommerce
            .parse_status(
                &c,
                &list(&format!(r#"{AUTH},{{"id":2,"event":"capture","status":"error","amount":120}}"#)),
            )
            .unwrap();
        assert_eq!(failure_of(&r), ("invalid_state", false, Some("200")));
        let r = BigCommerce
            .parse_status(
                &c,
                &list(&format!(r#"{AUTH},{{"id":2,"event":"void","status":"ok","amount":120}}"#)),
            )
            .unwrap();
        assert_eq!(failure_of(&r).0, "invalid_state");
        assert!(r.failure.unwrap().message.contains("voided"));
    }

    #[test]
    fn status_errors_map_as_for_capture_but_reads_may_be_retried() {
        let c = status_call("100", "USD");
        for (status, kind, retryable) in [
            (401, "unauthorized", false),
            (404, "not_found", false),
            (429, "rate_limited", true),
            (500, "platform_unavailable", true),
            (503, "platform_unavailable", true),
        ] {
            let r = BigCommerce
                .parse_status(&c, &resp(status, r#"{"status":0,"title":"T","type":"t"}"#))
                .unwrap();
            assert_eq!((failure_of(&r).0, failure_of(&r).1), (kind, retryable), "{status}");
            assert_eq!(r.failure.unwrap().message, "T");
        }
        for (status, body) in [(200, "{}"), (200, "not json"), (202, "")] {
            let r = BigCommerce.parse_status(&c, &resp(status, body)).unwrap();
            assert_eq!((failure_of(&r).0, failure_of(&r).1), ("outcome_unknown", true), "{status} {body}");
        }
    }

    #[test]
    fn status_amounts_with_too_many_places_are_refused() {
        let e = BigCommerce
            .parse_status(
                &status_call("100", "USD"),
                &list(r#"{"id":1,"event":"capture","status":"ok","amount":1.005}"#),
            )
            .unwrap_err();
        assert_eq!(e.code, "invalid_response");
        let e = BigCommerce
            .parse_status(&status_call("100", "USD"), &list(r#"{"id":1,"event":"capture","status":"ok"}"#))
            .unwrap_err();
        assert!(e.message.contains("no amount"), "{e}");
    }
}
