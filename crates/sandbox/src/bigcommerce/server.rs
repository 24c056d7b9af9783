//! The HTTP side: routes, handlers, fault handling and BigCommerce-shaped JSON responses.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{BigCommerceTransaction, Refusal, Shared};
use crate::emulator::lock;
use crate::faults::{self, Fault, FaultKind, FaultPlan};

/// The `type` of every BigCommerce error body.
pub(super) const ERROR_TYPE: &str =
    "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes";

/// The request quota and window the 429 headers announce.
const QUOTA: u64 = 150;
const WINDOW_MS: u64 = 30_000;

/// Shared by every handler.
#[derive(Clone)]
struct App {
    state: Shared,
    faults: FaultPlan,
}

/// The emulator's routes over the shared state, with the fault control routes merged in.
pub(super) fn router(state: Shared, faults: FaultPlan) -> Router {
    let app = App { state, faults: faults.clone() };
    Router::new()
        .route(
            "/stores/{store_hash}/v3/orders/{order_id}/payment_actions/capture",
            post(capture).fallback(method_not_allowed),
        )
        .route(
            "/stores/{store_hash}/v3/orders/{order_id}/transactions",
            get(transactions).fallback(method_not_allowed),
        )
        .route("/_sandbox/orders/{order_id}", get(sandbox_order).fallback(method_not_allowed))
        .with_state(app)
        .fallback(route_not_found)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], Body::from(body.to_string())).into_response()
}

/// `{"status","title","type"}`.
fn error(status: StatusCode, title: impl Into<String>) -> Response {
    json_response(status, &json!({"status": status.as_u16(), "title": title.into(), "type": ERROR_TYPE}))
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

async fn route_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Route not found")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, reason(StatusCode::METHOD_NOT_ALLOWED))
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "Unauthorized: the X-Auth-Token is missing or not valid for this store")
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::StoreNotFound(hash) => error(StatusCode::NOT_FOUND, format!("Store {hash} not found")),
        Refusal::OrderNotFound(id) => error(StatusCode::NOT_FOUND, format!("Order {id} not found")),
        Refusal::NotCapturable(status) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({
                "status": 422,
                "title": "The order's payment cannot be captured in its current state",
                "type": ERROR_TYPE,
                "errors": {
                    "payment_status": format!(
                        "payment_status is '{status}'; only 'authorized' payments can be captured"
                    ),
                },
            }),
        ),
    }
}

fn token(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-auth-token").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The answer of a fault that shows instead of (or after) the capture.
fn fault_response(fault: &Fault) -> Response {
    match fault.kind {
        FaultKind::RateLimited => {
            let reset_ms = fault.reset_ms.unwrap_or(1000);
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, reason(StatusCode::TOO_MANY_REQUESTS));
            let headers = response.headers_mut();
            for (name, value) in [
                ("x-rate-limit-requests-left", 0),
                ("x-rate-limit-time-reset-ms", reset_ms),
                ("x-rate-limit-requests-quota", QUOTA),
                ("x-rate-limit-time-window-ms", WINDOW_MS),
                ("x-retry-after", reset_ms.div_ceil(1000)),
            ] {
                headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
            }
            response
        }
        _ => {
            let status = fault
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, fault.message.clone().unwrap_or_else(|| reason(status).to_owned()))
        }
    }
}

/// The capture itself: token, store, order, body, state; applies it on success.
fn apply_capture(app: &App, store_hash: &str, order_id: &str, headers: &HeaderMap, body: &Bytes) -> Response {
    let mut state = lock(&app.state);
    if !state.token_known(token(headers)) {
        return unauthorized();
    }
    let id = match state.find(store_hash, order_id) {
        Ok(id) => id,
        Err(r) => return refusal(r),
    };
    let object = body.iter().all(u8::is_ascii_whitespace)
        || matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_)));
    if !object {
        return error(StatusCode::BAD_REQUEST, "The request body must be a JSON object");
    }
    match state.capture(id) {
        Ok(()) => json_response(StatusCode::CREATED, &json!({})),
        Err(r) => refusal(r),
    }
}

/// `POST /stores/{store_hash}/v3/orders/{order_id}/payment_actions/capture`.
async fn capture(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path((store_hash, order_id))) = path else {
        return route_not_found().await;
    };
    let fault = app.faults.next();
    if let Some(f) = fault.as_ref().filter(|f| !f.applies()) {
        return fault_response(f);
    }
    let body = match body {
        Ok(bytes) => bytes,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    // The lock is released inside `apply_capture`, before any await.
    let answer = apply_capture(&app, &store_hash, &order_id, &headers, &body);
    match fault {
        None => answer,
        Some(f) => match f.kind {
            FaultKind::Delay => {
                faults::wait(&f).await;
                answer
            }
            FaultKind::DropAfterApply => faults::dropped_connection(),
            FaultKind::Status | FaultKind::RateLimited => fault_response(&f),
        },
    }
}

/// `GET /stores/{store_hash}/v3/orders/{order_id}/transactions`.
async fn transactions(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((store_hash, order_id))) = path else {
        return route_not_found().await;
    };
    let list = {
        let mut state = lock(&app.state);
        if !state.token_known(token(&headers)) {
            return unauthorized();
        }
        match state.find(&store_hash, &order_id) {
            Ok(id) => state.read_transactions(id),
            Err(r) => return refusal(r),
        }
    };
    if list.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let count = list.len();
    let data: Vec<Value> = list.iter().map(BigCommerceTransaction::to_json).collect();
    json_response(
        StatusCode::OK,
        &json!({
            "data": data,
            "meta": {
                "pagination": {
                    "total": count,
                    "count": count,
                    "per_page": count.max(50),
                    "current_page": 1,
                    "total_pages": 1,
                    "links": {"current": format!("?page=1&limit={}", count.max(50))},
                },
            },
        }),
    )
}

/// `GET /_sandbox/orders/{order_id}`.
async fn sandbox_order(State(app): State<App>, path: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(order_id)) = path else {
        return route_not_found().await;
    };
    let shown =
        order_id.parse::<u64>().ok().and_then(|id| lock(&app.state).orders.get(&id).map(|b| b.to_json()));
    match shown {
        Some(body) => json_response(StatusCode::OK, &body),
        None => error(StatusCode::NOT_FOUND, format!("Order {order_id} not found")),
    }
}
