//! The HTTP side: routes, authentication, body validation, faults and Wix-shaped JSON.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use capture_core::parse_decimal;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::state::{
    AUTHORIZED_DATE, AppError, CREATED_DATE, CaptureRequest, State as Books, at_places, exponent,
};
use super::{Shared, WixOrder};
use crate::emulator::{self, lock};
use crate::faults::{self, Fault, FaultKind};

/// The most payments one capture may carry.
const MAX_PAYMENTS: usize = 100;

/// The emulator's routes over the shared state.
pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/ecom/v1/order-billing/capture-authorized-payments", post(capture).fallback(not_found))
        .route("/ecom/v1/payments/orders/{order_id}", get(transactions).fallback(not_found))
        .route("/_sandbox/orders/{order_id}", get(sandbox_order).fallback(not_found))
        .fallback(not_found)
        .with_state(state)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    emulator::json_response(status, "application/json", body)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `{"message", "details": {"applicationError": {"code", "description", "data"}}}`.
fn app_error(error: &AppError) -> Response {
    json_response(
        status_code(error.status),
        &json!({
            "message": error.description,
            "details": {"applicationError": {
                "code": error.code,
                "description": error.description,
                "data": error.data,
            }},
        }),
    )
}

/// One entry of `fieldViolations`.
#[derive(Debug, Clone, PartialEq)]
struct Violation {
    field: String,
    description: String,
    rule: &'static str,
    data: Option<Value>,
}

fn violation(
    field: impl Into<String>,
    description: &str,
    rule: &'static str,
    data: Option<Value>,
) -> Violation {
    Violation { field: field.into(), description: description.to_owned(), rule, data }
}

/// `400 {"message", "details": {"validationError": {"fieldViolations": [...]}}}`.
fn validation_error(violations: &[Violation]) -> Response {
    let message =
        violations.iter().map(|v| format!("{} {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
    let list: Vec<Value> = violations
        .iter()
        .map(|v| {
            let mut entry = json!({"field": v.field, "description": v.description, "violatedRule": v.rule});
            if let (Some(data), Some(obj)) = (&v.data, entry.as_object_mut()) {
                obj.insert("data".to_owned(), data.clone());
            }
            entry
        })
        .collect();
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"message": message, "details": {"validationError": {"fieldViolations": list}}}),
    )
}

/// A 4xx/5xx with only a message.
fn plain_error(status: StatusCode, message: String) -> Response {
    json_response(status, &json!({"message": message, "details": {}}))
}

async fn not_found(method: Method, uri: Uri) -> Response {
    plain_error(StatusCode::NOT_FOUND, format!("Not Found: {method} {}", uri.path()))
}

fn unauthenticated() -> Response {
    app_error(&AppError {
        status: 401,
        code: "UNAUTHENTICATED".to_owned(),
        description: "The Authorization header is missing or is not a valid API key or token".to_owned(),
        data: json!({}),
    })
}

fn authenticated(state: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|value| lock(state).is_token(value.trim()))
}

/// True for a GUID in its text form: 8-4-4-4-12 hexadecimal digits.
pub(crate) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8usize, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn guid_field(obj: &Map<String, Value>, key: &str, field: &str, out: &mut Vec<Violation>) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            out.push(violation(field, "is required", "REQUIRED_FIELD", None));
            None
        }
        Some(Value::String(s)) if is_guid(s) => Some(s.clone()),
        Some(_) => {
            out.push(violation(field, "must be a valid GUID", "FORMAT", Some(json!({"type": "GUID"}))));
            None
        }
    }
}

/// Validates the capture body, listing every violation.
fn validate(body: &Value) -> Result<CaptureRequest, Vec<Violation>> {
    let empty = Map::new();
    let obj = body.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    let order_id = guid_field(obj, "orderId", "orderId", &mut out);
    let mut payments = Vec::new();
    match obj.get("payments") {
        None | Some(Value::Null) => out.push(violation("payments", "is required", "REQUIRED_FIELD", None)),
        Some(Value::Array(list)) if list.is_empty() => out.push(violation(
            "payments",
            "must have at least 1 element",
            "MIN_SIZE",
            Some(json!({"threshold": 1})),
        )),
        Some(Value::Array(list)) if list.len() > MAX_PAYMENTS => out.push(violation(
            "payments",
            "must have at most 100 elements",
            "MAX_SIZE",
            Some(json!({"threshold": MAX_PAYMENTS})),
        )),
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let Some(p) = item.as_object() else {
                    out.push(violation(format!("payments[{i}]"), "must be an object", "FORMAT", None));
                    continue;
                };
                let id = guid_field(p, "paymentId", &format!("payments[{i}].paymentId"), &mut out);
                if let Some(id) = &id
                    && payments
                        .iter()
                        .any(|(seen, _): &(String, Option<Decimal>)| seen.eq_ignore_ascii_case(id))
                {
                    out.push(violation(format!("payments[{i}].paymentId"), "is listed twice", "OTHER", None));
                }
                let amount = match p.get("amount") {
                    None | Some(Value::Null) => Some(None),
                    Some(Value::Object(price)) => match price.get("amount") {
                        Some(Value::String(text)) => match parse_decimal(text) {
                            Ok(d) => Some(Some(d)),
                            Err(_) => {
                                out.push(violation(
                                    format!("payments[{i}].amount.amount"),
                                    "must be a decimal value",
                                    "FORMAT",
                                    Some(json!({"type": "DECIMAL_VALUE"})),
                                ));
                                None
                            }
                        },
                        None | Some(Value::Null) => {
                            out.push(violation(
                                format!("payments[{i}].amount.amount"),
                                "is required",
                                "REQUIRED_FIELD",
                                None,
                            ));
                            None
                        }
                        Some(_) => {
                            out.push(violation(
                                format!("payments[{i}].amount.amount"),
                                "must be a decimal value",
                                "FORMAT",
                                Some(json!({"type": "DECIMAL_VALUE"})),
                            ));
                            None
                        }
                    },
                    Some(_) => {
                        out.push(violation(
                            format!("payments[{i}].amount"),
                            "must be an object",
                            "FORMAT",
                            None,
                        ));
                        None
                    }
                };
                if let (Some(id), Some(amount)) = (id, amount) {
                    payments.push((id, amount));
                }
            }
        }
        Some(_) => out.push(violation("payments", "must be an array", "FORMAT", None)),
    }
    match order_id {
        Some(order_id) if out.is_empty() => Ok(CaptureRequest { order_id, payments }),
        _ => Err(out),
    }
}

/// `formattedAmount`: the currency's symbol (or code) and the amount with grouped thousands.
fn formatted(amount: Decimal, currency: &str) -> String {
    let text = amount.abs().to_string();
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text.as_str(), None),
    };
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if let Some(f) = frac {
        grouped.push('.');
        grouped.push_str(f);
    }
    let sign = if amount.is_sign_negative() && !amount.is_zero() { "-" } else { "" };
    match currency.to_ascii_uppercase().as_str() {
        "USD" => format!("{sign}${grouped}"),
        "EUR" => format!("{sign}€{grouped}"),
        "GBP" => format!("{sign}£{grouped}"),
        "JPY" => format!("{sign}¥{grouped}"),
        other => format!("{sign}{other} {grouped}"),
    }
}

fn price(amount: Decimal, currency: &str) -> Value {
    let amount = at_places(amount, exponent(currency));
    json!({"amount": amount.to_string(), "formattedAmount": formatted(amount, currency)})
}

/// `{"orderTransactions": {...}}` in the shape of Wix's documentation.
fn transactions_json(books: &Books, order: &WixOrder) -> Value {
    let cur = order.currency.as_str();
    let payments: Vec<Value> = order
        .payments
        .iter()
        .map(|p| {
            let captures: Vec<Value> = p
                .captures
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "status": c.status,
                        "amount": price(c.amount, cur),
                        "createdDate": books.capture_date(&c.id),
                    })
                })
                .collect();
            let updated =
                p.captures.iter().map(|c| books.capture_date(&c.id)).max().unwrap_or(AUTHORIZED_DATE);
            let mut details = json!({
                "paymentMethod": "Credit/Debit Cards",
                "offlinePayment": false,
                "status": p.status,
                "savedPaymentMethod": false,
                "creditCardDetails": {"lastFourDigits": "1111", "brand": "visa"},
            });
            // A payment not yet authorized has no authorization details.
            if !p.status.eq_ignore_ascii_case("PENDING")
                && let Some(obj) = details.as_object_mut()
            {
                obj.insert(
                    "authorizationDetails".to_owned(),
                    json!({"delayedCapture": true, "authorizedDate": AUTHORIZED_DATE, "captures": captures}),
                );
            }
            json!({
                "id": p.id,
                "regularPaymentDetails": details,
                "createdDate": CREATED_DATE,
                "updatedDate": updated,
                "amount": price(p.amount, cur),
                "refundDisabled": false,
            })
        })
        .collect();
    json!({"orderTransactions": {"orderId": order.id, "payments": payments, "refunds": []}})
}

/// The answer a fault stands for, in Wix's shape: 429 with `Retry-After` (whole seconds, rounded
/// up), other statuses with the standard code for the status.
fn fault_response(fault: &Fault) -> Response {
    if fault.kind == FaultKind::RateLimited {
        let seconds = fault.reset_ms.unwrap_or(1000).div_ceil(1000);
        let mut response = app_error(&AppError {
            status: 429,
            code: "RESOURCE_EXHAUSTED".to_owned(),
            description: "Too many requests; try again later".to_owned(),
            data: json!({}),
        });
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let status = fault.status.unwrap_or(500);
    let default_code = match status {
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    let code = fault.code.clone().unwrap_or_else(|| default_code.to_owned());
    let description = fault.message.clone().unwrap_or_else(|| {
        known_description(&code)
            .unwrap_or_else(|| status_code(status).canonical_reason().unwrap_or("Error"))
            .to_owned()
    });
    app_error(&AppError { status, code, description, data: json!({}) })
}

/// What Wix says for each application code the capture route documents (used by a fault that
/// names the code but no message).
fn known_description(code: &str) -> Option<&'static str> {
    Some(match code {
        "PAYMENT_NOT_FOUND" => "Payment not found",
        "ORDER_HAS_CHARGEBACKS" => "The order has chargebacks; its payments cannot be captured",
        "PAYMENT_ALREADY_VOIDED" => "The payment is voided",
        "PAYMENT_HAS_PENDING_CAPTURE" => "The payment has a capture still pending",
        "PAYMENT_ALREADY_CAPTURED" => "The payment is already captured",
        "PAYMENT_NOT_AUTHORIZED" => "The payment is not authorized",
        "INVALID_AMOUNT" => "Invalid amount",
        _ => return None,
    })
}

/// `POST /ecom/v1/order-billing/capture-authorized-payments`.
async fn capture(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !authenticated(&state, &headers) {
        return unauthenticated();
    }
    let body = match body {
        Ok(bytes) => bytes,
        Err(rejection) => return plain_error(rejection.status(), rejection.body_text()),
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: the body must be a JSON object".into(),
            );
        }
        Err(e) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                format!("Bad Request: the body is not valid JSON: {e}"),
            );
        }
    };
    let request = match validate(&body) {
        Ok(r) => r,
        Err(violations) => return validation_error(&violations),
    };
    // Injected faults: those that stand in for the platform's answer come before the capture.
    let fault = lock(&state).faults.next();
    if let Some(f) = fault.as_ref().filter(|f| !f.applies()) {
        return fault_response(f);
    }
    // The business rules and the answer, under one lock released before any await.
    let response = {
        let mut books = lock(&state);
        match books.capture(&request) {
            Ok(()) => match books.order(&request.order_id) {
                Some(order) => json_response(StatusCode::OK, &transactions_json(&books, order)),
                None => plain_error(StatusCode::INTERNAL_SERVER_ERROR, "the order vanished".into()),
            },
            Err(e) => app_error(&e),
        }
    };
    match fault {
        Some(f) if f.kind == FaultKind::Delay => {
            faults::wait(&f).await;
            response
        }
        Some(f) if f.kind == FaultKind::DropAfterApply => faults::dropped_connection(),
        Some(f) => fault_response(&f),
        None => response,
    }
}

/// `GET /ecom/v1/payments/orders/{orderId}`: one read (it may settle pending captures).
async fn transactions(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(order_id)) = path else {
        return not_found(method, uri).await;
    };
    if !authenticated(&state, &headers) {
        return unauthenticated();
    }
    if !is_guid(&order_id) {
        return validation_error(&[violation(
            "orderId",
            "must be a valid GUID",
            "FORMAT",
            Some(json!({"type": "GUID"})),
        )]);
    }
    let mut books = lock(&state);
    match books.read(&order_id) {
        Some(order) => json_response(StatusCode::OK, &transactions_json(&books, &order)),
        None => app_error(&AppError {
            status: 404,
            code: "ORDER_NOT_FOUND".to_owned(),
            description: format!("Order {order_id} not found"),
            data: json!({"orderId": order_id}),
        }),
    }
}

/// `GET /_sandbox/orders/{id}`: the books, without counting a read.
async fn sandbox_order(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(order_id)) = path else {
        return not_found(method, uri).await;
    };
    let books = lock(&state);
    let Some(order) = books.order(&order_id) else {
        return plain_error(StatusCode::NOT_FOUND, format!("Order {order_id} not found"));
    };
    let places = exponent(&order.currency);
    let payments: Vec<Value> = order
        .payments
        .iter()
        .map(|p| {
            let captured = p
                .captures
                .iter()
                .filter(|c| !c.status.eq_ignore_ascii_case("FAILED"))
                .fold(Decimal::ZERO, |sum, c| sum.saturating_add(c.amount));
            let remaining = p.amount.saturating_sub(captured).max(Decimal::ZERO);
            let captures: Vec<Value> = p
                .captures
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "amount": at_places(c.amount, places).to_string(),
                        "status": c.status,
                        "createdDate": books.capture_date(&c.id),
                    })
                })
                .collect();
            json!({
                "id": p.id,
                "amount": at_places(p.amount, places).to_string(),
                "status": p.status,
                "captured": at_places(captured, places).to_string(),
                "remaining": at_places(remaining, places).to_string(),
                "captures": captures,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"id": order.id, "currency": order.currency, "chargebacks": order.chargebacks, "payments": payments}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "3545c2f2-7768-4e6e-b64b-dcc11dc7a7f9";

    fn parsed(text: &str) -> Result<CaptureRequest, Vec<Violation>> {
        validate(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn wix_validation_lists_every_violation() {
        let v = parsed(r#"{"orderId":"ORD-1","payments":[{"paymentId":"p"},{"amount":{"amount":12}}]}"#)
            .unwrap_err();
        let fields: Vec<(&str, &str)> = v.iter().map(|v| (v.field.as_str(), v.rule)).collect();
        assert_eq!(
            fields,
            [
                ("orderId", "FORMAT"),
                ("payments[0].paymentId", "FORMAT"),
                ("payments[1].paymentId", "REQUIRED_FIELD"),
                ("payments[1].amount.amount", "FORMAT"),
            ]
        );
        let v = parsed(&format!(r#"{{"orderId":"{G}","payments":[]}}"#)).unwrap_err();
        assert_eq!((v[0].field.as_str(), v[0].rule), ("payments", "MIN_SIZE"));
        let v = parsed("{}").unwrap_err();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn wix_validation_reads_amounts_exactly() {
        let r = parsed(&format!(
            r#"{{"orderId":"{G}","payments":[{{"paymentId":"{G}","amount":{{"amount":"0.30"}}}}]}}"#
        ))
        .unwrap();
        assert_eq!(r.payments, [(G.to_owned(), Some(Decimal::new(30, 2)))]);
        let r = parsed(&format!(r#"{{"orderId":"{G}","payments":[{{"paymentId":"{G}"}}]}}"#)).unwrap();
        assert_eq!(r.payments, [(G.to_owned(), None)]);
        let v = parsed(&format!(
            r#"{{"orderId":"{G}","payments":[{{"paymentId":"{G}","amount":{{"amount":"1e3"}}}}]}}"#
        ))
        .unwrap_err();
        assert_eq!(v[0].field, "payments[0].amount.amount");
    }

    #[test]
    fn wix_formatted_amounts() {
        assert_eq!(formatted(Decimal::new(123456, 2), "USD"), "$1,234.56");
        assert_eq!(formatted(Decimal::new(1500, 0), "JPY"), "¥1,500");
        assert_eq!(formatted(Decimal::new(12500, 3), "KWD"), "KWD 12.500");
        assert_eq!(formatted(Decimal::new(100, 2), "EUR"), "€1.00");
    }
}
