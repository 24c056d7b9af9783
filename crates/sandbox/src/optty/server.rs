//! The HTTP side: routes, handlers and NestJS-shaped JSON responses.

use std::str::FromStr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Number, Value, json};

use super::validation::{parse_json_body, validate_capture, validate_order};
use super::{Booked, CaptureError, Shared, two_places};
use crate::emulator::{self, lock};
use crate::faults::{self, Fault, FaultKind};

/// The emulator's routes over the shared state.
pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/orders/{order_reference}/capture", post(capture).fallback(not_found))
        .route("/_sandbox/orders", post(put_order).fallback(not_found))
        .route("/_sandbox/orders/{order_reference}", get(get_order).fallback(not_found))
        .fallback(not_found)
        .with_state(state)
}

/// A JSON response, `Content-Type: application/json; charset=utf-8` as Express sends it.
fn json_response(status: StatusCode, body: &Value) -> Response {
    emulator::json_response(status, "application/json; charset=utf-8", body)
}

/// `{"statusCode":<code>,"message":"<message>"}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({"statusCode": status.as_u16(), "message": message.into()}))
}

/// NestJS's `ValidationPipe` failure: the messages as a list, plus `"error":"Bad Request"`.
fn bad_request_list(messages: Vec<String>) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"statusCode": 400, "message": messages, "error": "Bad Request"}),
    )
}

/// A decimal amount as a JSON number with exactly its text (no float on the way).
fn json_number(amount: rust_decimal::Decimal) -> Value {
    let text = two_places(amount).to_string();
    Number::from_str(&text).map(Value::Number).unwrap_or(Value::String(text))
}

/// Express's `Cannot <METHOD> <path>` 404.
async fn not_found(method: Method, uri: Uri) -> Response {
    let path = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    error(StatusCode::NOT_FOUND, format!("Cannot {method} {path}"))
}

/// The response for a body that could not be read (too large, cut short).
fn unreadable_body(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "request entity too large".to_owned()
    } else {
        rejection.body_text()
    };
    error(status, message)
}

/// The merchant the request's `Authorization: Bearer <token>` authenticates, if any.
fn authenticate(state: &Shared, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    lock(state).merchant_for_token(token.trim())
}

/// `POST /orders/{orderReference}/capture`.
async fn capture(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(order_reference)) = path else {
        return not_found(method, uri).await;
    };
    // 1. body-parser (Express middleware, before any guard).
    let body = match body {
        Ok(bytes) => bytes,
        Err(rejection) => return unreadable_body(rejection),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = match parse_json_body(content_type, &body) {
        Ok(value) => value,
        Err(message) => return bad_request_list(vec![message]),
    };
    // 2. The auth guard.
    let Some(merchant) = authenticate(&state, &headers) else {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    // 3. ValidationPipe.
    let request = match validate_capture(&body) {
        Ok(request) => request,
        Err(messages) => return bad_request_list(messages),
    };
    // Injected faults: those that stand in for the platform's answer come before the capture.
    let fault = lock(&state).faults.next();
    if let Some(f) = fault.as_ref().filter(|f| !f.applies()) {
        return fault_response(f);
    }
    // 4, 5. The order and the business rules (the lock is released before any await).
    let result = lock(&state).capture(&merchant, &order_reference, request);
    let response = match result {
        Ok(capture) => json_response(
            StatusCode::OK,
            &json!({
                "captureReference": capture.capture_reference,
                "captureId": capture.capture_id,
                "capturedAmount": json_number(capture.amount),
            }),
        ),
        Err(e @ CaptureError::OrderNotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Faults that show after the capture was applied.
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

/// The answer a fault stands for, in NestJS's shape: 429 from its throttler with `Retry-After`
/// (whole seconds, rounded up), other statuses with their reason phrase.
fn fault_response(fault: &Fault) -> Response {
    let status =
        fault.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if fault.kind == FaultKind::RateLimited {
        let seconds = fault.reset_ms.unwrap_or(1000).div_ceil(1000);
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "ThrottlerException: Too Many Requests");
        if let Ok(v) = header::HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let message =
        fault.message.clone().unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_owned());
    error(status, message)
}

/// The order and its books as the control API shows them (every amount a 2-place string).
fn order_json(booked: &Booked) -> Value {
    let order = &booked.order;
    let captures: Vec<Value> = booked
        .captures
        .iter()
        .map(|(_, c)| {
            json!({
                "captureReference": c.capture_reference,
                "captureId": c.capture_id,
                "amount": two_places(c.amount).to_string(),
                "description": c.description,
                "shippingInfo": c.shipping_info,
            })
        })
        .collect();
    json!({
        "orderReference": order.reference,
        "currency": order.currency,
        "amount": two_places(order.amount).to_string(),
        "surcharge": two_places(order.surcharge).to_string(),
        "paymentMethod": order.payment_method,
        "captured": two_places(booked.captured()).to_string(),
        "remaining": two_places(booked.remaining()).to_string(),
        "captures": captures,
    })
}

/// `POST /_sandbox/orders`: add or replace an order.
async fn put_order(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(bytes) => bytes,
        Err(rejection) => return unreadable_body(rejection),
    };
    // The control API reads JSON whatever the content type says.
    let body = match parse_json_body(Some("application/json"), &body) {
        Ok(value) => value,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let order = match validate_order(&body) {
        Ok(order) => order,
        Err(messages) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({"statusCode": 400, "message": messages}));
        }
    };
    let reference = order.reference.clone();
    let shown = {
        let mut state = lock(&state);
        state.put_order(order);
        state.orders.get(&reference).map(order_json)
    };
    match shown {
        Some(body) => json_response(StatusCode::CREATED, &body),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "the order was not stored"),
    }
}

/// `GET /_sandbox/orders/{ref}`.
async fn get_order(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(order_reference)) = path else {
        return not_found(method, uri).await;
    };
    let shown = lock(&state).orders.get(&order_reference).map(order_json);
    match shown {
        Some(body) => json_response(StatusCode::OK, &body),
        None => error(StatusCode::NOT_FOUND, format!("Order {order_reference} not found")),
    }
}
