//! The HTTP side: routes, authentication, fault injection and Medusa-shaped answers.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Refusal, Route, Shared};
use crate::emulator::lock;
use crate::faults::{self, Fault, FaultKind, FaultPlan};

/// Shared by every handler.
#[derive(Debug, Clone)]
struct App {
    state: Shared,
    faults: FaultPlan,
}

/// The emulator's routes over the shared state, with the fault routes merged in.
pub(super) fn router(state: Shared, faults: FaultPlan) -> Router {
    let app = App { state, faults: faults.clone() };
    Router::new()
        .route("/admin/payments/{id}/capture", post(capture_payment).fallback(not_found))
        .route("/admin/orders/{id}/capture", post(capture_order).fallback(not_found))
        .route("/admin/payments/{id}", get(get_payment).fallback(not_found))
        .route("/admin/orders/{id}", get(get_order).fallback(not_found))
        .route("/_sandbox/payments/{id}", get(sandbox_payment).fallback(not_found))
        .route("/_sandbox/orders/{id}", get(sandbox_order).fallback(not_found))
        .with_state(app)
        .fallback(not_found)
}

/// JSON as Express sends it.
fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], Body::from(body.to_string()))
        .into_response()
}

fn text_response(status: StatusCode, text: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text.to_owned()).into_response()
}

/// Medusa's error body `{type, message}`.
fn medusa_error(status: StatusCode, kind: &str, message: &str) -> Response {
    json_response(status, &json!({"type": kind, "message": message}))
}

/// Passport's answer to a request without a valid token.
fn unauthorized() -> Response {
    text_response(StatusCode::UNAUTHORIZED, "Unauthorized")
}

/// Express's `Cannot <METHOD> <path>` 404.
async fn not_found(method: Method, uri: Uri) -> Response {
    text_response(StatusCode::NOT_FOUND, &format!("Cannot {method} {}", uri.path()))
}

/// Whether the request carries a known token (`x-medusa-access-token` or `Authorization: Bearer`).
fn authenticated(app: &App, headers: &HeaderMap) -> bool {
    let state = lock(&app.state);
    let api_token = headers
        .get("x-medusa-access-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| state.token_known(t.trim()));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, t)| scheme.eq_ignore_ascii_case("bearer") && state.token_known(t.trim()));
    api_token || bearer
}

/// `Retry-After` seconds for a reset hint: rounded up, 1 second when there is none.
fn retry_after_seconds(reset_ms: Option<u64>) -> u64 {
    reset_ms.map_or(1, |ms| ms.div_ceil(1000))
}

fn rate_limited(reset_ms: Option<u64>) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::RETRY_AFTER, retry_after_seconds(reset_ms).to_string()),
        ],
        "Too many requests, please try again later.",
    )
        .into_response()
}

/// The answer for a `status` fault: Medusa's body for that status (see the module docs), or
/// `{"type": <code>, "message": <message>}` when the fault names either.
fn fault_status(fault: &Fault, payment_id: &str) -> Response {
    let status = fault.status.unwrap_or(500);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if fault.code.is_some() || fault.message.is_some() {
        let kind = fault.code.clone().unwrap_or_else(|| {
            match status {
                400 => "invalid_data",
                404 => "not_found",
                409 => "invalid_state_error",
                422 => "duplicate_error",
                500 => "unexpected_state",
                _ => "unknown_error",
            }
            .to_owned()
        });
        let message = fault.message.clone().unwrap_or_else(|| "An unknown error occurred.".to_owned());
        return medusa_error(code, &kind, &message);
    }
    match status {
        400 => medusa_error(code, "invalid_data", &format!("Payment {payment_id} could not be captured")),
        401 => unauthorized(),
        404 => medusa_error(code, "not_found", &format!("Payment with id {payment_id} was not found")),
        409 => medusa_error(
            code,
            "invalid_state_error",
            "The request conflicted with another request. You may retry the request with the provided \
             Idempotency-Key.",
        ),
        422 => json_response(
            code,
            &json!({
                "type": "duplicate_error",
                "code": "invalid_request_error",
                "message": format!("A capture of Payment {payment_id} already exists"),
            }),
        ),
        429 => rate_limited(None),
        500 => medusa_error(code, "unexpected_state", &format!("Failed to capture Payment {payment_id}")),
        502..=504 => text_response(code, code.canonical_reason().unwrap_or("Gateway Error")),
        _ => json_response(
            code,
            &json!({"type": "unknown_error", "code": "unknown_error", "message": "An unknown error occurred."}),
        ),
    }
}

/// The answer for a refused capture.
fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::NotFound(m) => medusa_error(StatusCode::NOT_FOUND, "not_found", &m),
        Refusal::NotAllowed(m) => medusa_error(StatusCode::BAD_REQUEST, "not_allowed", &m),
        Refusal::ProviderFailed(id) => medusa_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_state",
            &format!("Failed to capture Payment {id}"),
        ),
    }
}

/// Applies a capture under the next fault, if any.
async fn capture(app: &App, headers: &HeaderMap, route: Route) -> Response {
    if !authenticated(app, headers) {
        return unauthorized();
    }
    let fault: Option<Fault> = app.faults.next();
    if let Some(f) = &fault
        && !f.applies()
    {
        return match f.kind {
            FaultKind::RateLimited => rate_limited(f.reset_ms),
            _ => {
                let subject = lock(&app.state).fault_subject(&route);
                fault_status(f, &subject)
            }
        };
    }
    // The lock is released before any await.
    let (answer, subject) = {
        let mut state = lock(&app.state);
        let subject = state.fault_subject(&route);
        let answer = match &route {
            Route::Payment(id) => state.capture_payment(id).map(|p| json!({"payment": p.to_json()})),
            Route::Order(id) => state.capture_order(id).map(|o| json!({"order": o})),
        };
        (answer, subject)
    };
    match fault {
        Some(f) if f.kind == FaultKind::DropAfterApply => return faults::dropped_connection(),
        Some(f) if f.kind == FaultKind::Delay => faults::wait(&f).await,
        Some(f) if f.kind == FaultKind::Status => return fault_status(&f, &subject),
        _ => {}
    }
    match answer {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(r) => refusal(r),
    }
}

/// `POST /admin/payments/{id}/capture`.
async fn capture_payment(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    match path {
        Ok(Path(id)) => capture(&app, &headers, Route::Payment(id)).await,
        Err(_) => not_found(method, uri).await,
    }
}

/// `POST /admin/orders/{id}/capture`.
async fn capture_order(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    match path {
        Ok(Path(id)) => capture(&app, &headers, Route::Order(id)).await,
        Err(_) => not_found(method, uri).await,
    }
}

fn payment_json(app: &App, id: &str) -> Option<Value> {
    lock(&app.state).payments.get(id).map(super::MedusaPayment::to_json)
}

fn order_json(app: &App, id: &str) -> Option<Value> {
    lock(&app.state).order_json(id)
}

/// `GET /admin/payments/{id}`.
async fn get_payment(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = path else { return not_found(method, uri).await };
    if !authenticated(&app, &headers) {
        return unauthorized();
    }
    match payment_json(&app, &id) {
        Some(p) => json_response(StatusCode::OK, &json!({"payment": p})),
        None => refusal(Refusal::NotFound(format!("Payment with id {id} was not found"))),
    }
}

/// `GET /admin/orders/{id}`.
async fn get_order(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = path else { return not_found(method, uri).await };
    if !authenticated(&app, &headers) {
        return unauthorized();
    }
    match order_json(&app, &id) {
        Some(o) => json_response(StatusCode::OK, &json!({"order": o})),
        None => refusal(Refusal::NotFound(format!("Order with id {id} was not found"))),
    }
}

/// `GET /_sandbox/payments/{id}`.
async fn sandbox_payment(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = path else { return not_found(method, uri).await };
    match payment_json(&app, &id) {
        Some(p) => json_response(StatusCode::OK, &p),
        None => refusal(Refusal::NotFound(format!("Payment with id {id} was not found"))),
    }
}

/// `GET /_sandbox/orders/{id}`.
async fn sandbox_order(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = path else { return not_found(method, uri).await };
    match order_json(&app, &id) {
        Some(o) => json_response(StatusCode::OK, &o),
        None => refusal(Refusal::NotFound(format!("Order with id {id} was not found"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(None), 1);
        assert_eq!(retry_after_seconds(Some(0)), 0);
        assert_eq!(retry_after_seconds(Some(1)), 1);
        assert_eq!(retry_after_seconds(Some(1500)), 2);
        assert_eq!(retry_after_seconds(Some(2000)), 2);
    }
}
