//! The scaffold the four emulators share: the running handle ([`Emulator`]), the `/_sandbox`
//! control routes every platform answers the same way, the request log, and the JSON helpers.
//!
//! A platform supplies only what is its own: its books (a type implementing [`Platform`]) and
//! the router of its API (its rules, its bodies, its codes). Everything that is not the
//! platform's is here, so the platforms' rules stay independent of each other and of the
//! connectors that talk to them.
//!
//! # Control routes (every emulator; no authentication: bind to loopback only)
//!
//! | route | answer |
//! |---|---|
//! | `POST /_sandbox/reset` | `204`: the configured orders again, no captures, no queued faults, an empty request log |
//! | `POST /_sandbox/faults` (a JSON list of [`Fault`]s) | `204`: queued after those already queued; `400 {"error"}` naming the fault and the field |
//! | `GET /_sandbox/faults` | `200 {"faults":[...]}`: the faults still queued, next first |
//! | `DELETE /_sandbox/faults` | `204`: the queue emptied |
//! | `GET /_sandbox/requests` | `200 {"requests":[...]}`: every request to the platform's routes since start or reset, oldest first (see [`LoggedRequest`]) |
//! | `DELETE /_sandbox/requests` | `204`: the log emptied |
//!
//! The platforms add their own `/_sandbox/orders/...` routes (see each module).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::faults::{Dropped, Fault, FaultKind, FaultPlan, Server};

/// What a platform's books provide to the shared scaffold.
pub trait Platform: std::fmt::Debug + Send + 'static {
    /// The platform's name, as `capture sandbox --platform` spells it.
    const NAME: &'static str;
    /// Whether the platform's error bodies carry an application error code a fault may set
    /// ([`Fault::code`]).
    const FAULT_CODES: bool;
    /// Back to the configured orders, with no captures and no state left from earlier requests.
    fn reset(&mut self);
}

/// The books behind one mutex, shared by the server and the handle.
pub(crate) type Shared<B> = Arc<Mutex<B>>;

/// Locks the books (a panic in another handler does not make them unreadable).
pub(crate) fn lock<B>(state: &Shared<B>) -> MutexGuard<'_, B> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A JSON answer with the given `Content-Type`.
pub(crate) fn json_response(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], Body::from(body.to_string())).into_response()
}

/// How many requests the log keeps (the oldest are dropped first).
pub const LOG_CAPACITY: usize = 1000;
/// How many bytes of a request body the log keeps.
pub const LOG_BODY_BYTES: usize = 64 * 1024;
/// Request bodies larger than this are refused before they reach the platform's routes.
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Headers whose values the log does not show (they carry the credentials).
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-auth-token", "x-medusa-access-token"];

/// One request the platform's routes received, as `GET /_sandbox/requests` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    /// 1 for the first request since start or reset.
    pub seq: u64,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    /// Header names (lower case) and values; repeated headers joined with `, `; credential
    /// headers (`authorization`, `x-auth-token`, `x-medusa-access-token`) show `[REDACTED]`.
    pub headers: BTreeMap<String, String>,
    /// The body as text (invalid UTF-8 replaced), at most [`LOG_BODY_BYTES`] bytes.
    pub body: String,
    /// Whether the body was longer than what `body` shows.
    pub body_truncated: bool,
    /// The status answered; `null` while the answer is pending (a `delay` fault) and when the
    /// connection was dropped.
    pub status: Option<u16>,
    /// Whether the connection was dropped without an answer (a `drop_after_apply` fault).
    pub dropped: bool,
}

#[derive(Debug, Default)]
struct LogInner {
    next_seq: u64,
    entries: VecDeque<LoggedRequest>,
}

/// The requests an emulator received (shared by the middleware, the control route and the handle).
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<LogInner>>);

impl RequestLog {
    fn inner(&self) -> MutexGuard<'_, LogInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every request logged since start or reset, oldest first.
    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.inner().entries.iter().cloned().collect()
    }

    /// Empties the log; numbering starts again at 1.
    pub fn clear(&self) {
        let mut inner = self.inner();
        inner.entries.clear();
        inner.next_seq = 0;
    }

    fn push(&self, mut entry: LoggedRequest) -> u64 {
        let mut inner = self.inner();
        inner.next_seq = inner.next_seq.saturating_add(1);
        entry.seq = inner.next_seq;
        if inner.entries.len() >= LOG_CAPACITY {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
        inner.next_seq
    }

    fn answered(&self, seq: u64, status: Option<u16>, dropped: bool) {
        let mut inner = self.inner();
        if let Some(entry) = inner.entries.iter_mut().find(|e| e.seq == seq) {
            entry.status = status;
            entry.dropped = dropped;
        }
    }
}

/// The middleware that logs every request outside `/_sandbox`.
async fn record(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_sandbox") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("request body unreadable: {e}")).into_response();
        }
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let shown = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            "[REDACTED]".to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        headers.entry(name.as_str().to_owned()).and_modify(|v| *v = format!("{v}, {shown}")).or_insert(shown);
    }
    let shown = &bytes[..bytes.len().min(LOG_BODY_BYTES)];
    let seq = log.push(LoggedRequest {
        seq: 0,
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers,
        body: String::from_utf8_lossy(shown).into_owned(),
        body_truncated: bytes.len() > LOG_BODY_BYTES,
        status: None,
        dropped: false,
    });
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if response.extensions().get::<Dropped>().is_some() {
        log.answered(seq, None, true);
    } else {
        log.answered(seq, Some(response.status().as_u16()), false);
    }
    response
}

/// Checks a fault list posted to the control API; the error names the fault and the field.
fn check_faults<B: Platform>(faults: &[Fault]) -> Result<(), String> {
    for (i, f) in faults.iter().enumerate() {
        if f.kind == FaultKind::Status
            && let Some(status) = f.status
            && !(400..=599).contains(&status)
        {
            return Err(format!("faults[{i}].status: {status} is not an error status (400-599)"));
        }
        for (field, set) in [("code", f.code.is_some()), ("message", f.message.is_some())] {
            if set && f.kind != FaultKind::Status {
                return Err(format!("faults[{i}].{field}: only a `status` fault says what the error is"));
            }
        }
        if f.code.is_some() && !B::FAULT_CODES {
            return Err(format!(
                "faults[{i}].code: {} errors carry no application error code; set `message` instead",
                B::NAME
            ));
        }
    }
    Ok(())
}

fn control_error(message: String) -> Response {
    json_response(StatusCode::BAD_REQUEST, "application/json", &json!({ "error": message }))
}

/// What the control routes act on.
#[derive(Debug)]
struct Control<B> {
    state: Shared<B>,
    faults: FaultPlan,
    log: RequestLog,
}

impl<B> Clone for Control<B> {
    fn clone(&self) -> Self {
        Control { state: Arc::clone(&self.state), faults: self.faults.clone(), log: self.log.clone() }
    }
}

fn control_routes<B: Platform>(control: Control<B>) -> Router {
    async fn reset<B: Platform>(State(c): State<Control<B>>) -> StatusCode {
        lock(&c.state).reset();
        c.faults.clear();
        c.log.clear();
        StatusCode::NO_CONTENT
    }
    async fn add_faults<B: Platform>(State(c): State<Control<B>>, body: Bytes) -> Response {
        let faults = match serde_json::from_slice::<Vec<Fault>>(&body) {
            Ok(faults) => faults,
            Err(e) => return control_error(format!("faults: {e}")),
        };
        if let Err(message) = check_faults::<B>(&faults) {
            return control_error(message);
        }
        c.faults.push(faults);
        StatusCode::NO_CONTENT.into_response()
    }
    async fn list_faults<B: Platform>(State(c): State<Control<B>>) -> Response {
        json_response(StatusCode::OK, "application/json", &json!({ "faults": c.faults.queued() }))
    }
    async fn clear_faults<B: Platform>(State(c): State<Control<B>>) -> StatusCode {
        c.faults.clear();
        StatusCode::NO_CONTENT
    }
    async fn requests<B: Platform>(State(c): State<Control<B>>) -> Response {
        json_response(StatusCode::OK, "application/json", &json!({ "requests": c.log.entries() }))
    }
    async fn clear_requests<B: Platform>(State(c): State<Control<B>>) -> StatusCode {
        c.log.clear();
        StatusCode::NO_CONTENT
    }
    Router::new()
        .route("/_sandbox/reset", post(reset::<B>))
        .route("/_sandbox/faults", post(add_faults::<B>).get(list_faults::<B>).delete(clear_faults::<B>))
        .route("/_sandbox/requests", get(requests::<B>).delete(clear_requests::<B>))
        .with_state(control)
}

/// A running emulator: an HTTP server task on a loopback port, and a handle on its books, its
/// fault queue and its request log. Each platform module names its own
/// (`OpttyEmulator = Emulator<optty::State>`, ...) and adds its `start` and its readers.
///
/// Dropping the handle stops the server; [`Emulator::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Emulator<B: Platform> {
    server: Server,
    state: Shared<B>,
    faults: FaultPlan,
    log: RequestLog,
}

impl<B: Platform> Emulator<B> {
    /// Serves the platform's routes (built by `router` over the books and the fault queue), the
    /// control routes and the request log on `addr` (port 0 picks a free port).
    pub(crate) async fn serve(
        addr: SocketAddr,
        books: B,
        faults: FaultPlan,
        router: impl FnOnce(Shared<B>, FaultPlan) -> Router,
    ) -> std::io::Result<Emulator<B>> {
        let state: Shared<B> = Arc::new(Mutex::new(books));
        let log = RequestLog::default();
        let control = Control { state: Arc::clone(&state), faults: faults.clone(), log: log.clone() };
        let app = control_routes(control)
            .merge(router(Arc::clone(&state), faults.clone()))
            .layer(middleware::from_fn_with_state(log.clone(), record));
        let server = Server::start(addr, app).await?;
        Ok(Emulator { server, state, faults, log })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The fault queue the platform's capture routes take from (see [`crate::faults`]).
    pub fn faults(&self) -> &FaultPlan {
        &self.faults
    }

    /// Every request the platform's routes received since start or reset, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.entries()
    }

    /// Back to the configured orders: no captures, no queued faults, an empty request log.
    pub fn reset(&self) {
        lock(&self.state).reset();
        self.faults.clear();
        self.log.clear();
    }

    /// The books, locked (for the platform modules' readers).
    pub(crate) fn books(&self) -> MutexGuard<'_, B> {
        lock(&self.state)
    }

    /// Stops accepting connections, lets requests in flight finish (up to 5 seconds), then returns.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
