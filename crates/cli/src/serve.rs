//! `capture serve`: the engine as a long-running HTTP JSON service, for hosts in any language.
//!
//! Routes (documented in `openapi.json` beside this file, served at `/v1/openapi.json`):
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/captures` | a capture request; the report as the answer, its HTTP status from the outcome |
//! | `GET /v1/captures/{platform}/{key}` | what the ledger recorded under an idempotency key |
//! | `POST /v1/status` | ask the platform what became of an order's captures |
//! | `POST /v1/reconcile` | resolve what the ledger holds unresolved |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (ledger reachable, not draining) |
//! | `GET /metrics` | Prometheus text format |
//!
//! Every route but `/healthz`, `/readyz` and `/v1/openapi.json` needs `Authorization: Bearer
//! <token>`, the token read from an environment variable (`--token-env`, default
//! `CAPTURE_SERVE_TOKEN`). Without one the server refuses to start, unless it listens on loopback
//! and `--insecure-no-auth` is given.
//!
//! A capture runs in its own task: a client that disconnects or times out never cancels it
//! halfway (the ledger would have to resolve it later); its outcome is recorded and can be read
//! with `GET /v1/captures/{platform}/{key}` or by posting the same request again. On SIGTERM
//! the server stops accepting connections, answers what it is serving, waits for every capture
//! task, then exits 0. On SIGHUP it reloads the rules folder and swaps the rule set atomically
//! (a capture running keeps the set it started with); a folder that does not load leaves the
//! old set in place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use capture_core::{CaptureRequest, FailureKind, Outcome, RequestError};
use capture_engine::{CaptureError, Engine, EngineConfig, Metrics, StatusQuery};
use serde::Deserialize;
use tokio::sync::Semaphore;

/// The OpenAPI document of this API (kept true by the tests against the routes).
pub const OPENAPI: &str = include_str!("openapi.json");

/// Most captures running at once; more wait for a slot.
const MAX_CAPTURES: u32 = 1024;

/// Routes that need no token: they say nothing about captures.
const OPEN_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/v1/openapi.json"];

/// How `capture serve` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The environment variable holding the API token.
    pub token_env: String,
    /// Run without a token (loopback only).
    pub insecure_no_auth: bool,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// How long a client may take to send a request's headers (from its first byte, or from
    /// the previous answer on a kept-alive connection); then the connection is closed.
    pub header_timeout: Duration,
    /// How long a client may take to send its body.
    pub body_timeout: Duration,
    /// How long a capture may take before the answer is 504 (the capture goes on).
    pub capture_timeout: Duration,
}

/// What every handler shares.
struct App {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    token: Option<String>,
    draining: AtomicBool,
    /// One permit per capture task; shutdown waits until it holds them all.
    captures: Arc<Semaphore>,
    max_body: usize,
    body_timeout: Duration,
    capture_timeout: Duration,
}

/// A JSON error answer: `{"error": {"kind": ..., "message": ..., "field": ...}}`.
fn error(status: StatusCode, kind: &str, message: &str, field: Option<&str>) -> Response {
    let mut e = serde_json::json!({ "kind": kind, "message": message });
    if let Some(f) = field {
        e["field"] = serde_json::Value::String(f.to_owned());
    }
    json(status, format!("{}\n", serde_json::json!({ "error": e })))
}

fn json(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The HTTP status of an outcome (README, "capture serve"):
/// captured and already captured 200, pending 202, rejected 422, held 423, failed and
/// retryable 503 (with `Retry-After` when the platform gave a hint), outcome unknown 504, any
/// other failure 502.
pub fn http_status(outcome: &Outcome) -> StatusCode {
    match outcome {
        Outcome::Captured { .. } | Outcome::AlreadyCaptured { .. } => StatusCode::OK,
        Outcome::Pending { .. } => StatusCode::ACCEPTED,
        Outcome::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Outcome::Held { .. } => StatusCode::LOCKED,
        Outcome::Failed { kind: FailureKind::OutcomeUnknown, .. } => StatusCode::GATEWAY_TIMEOUT,
        Outcome::Failed { retryable: true, .. } => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Failed { .. } => StatusCode::BAD_GATEWAY,
    }
}

fn outcome_response(outcome: &Outcome, body: String) -> Response {
    let mut r = json(http_status(outcome), body);
    if let Ok(v) = HeaderValue::from_str(outcome.status()) {
        r.headers_mut().insert("capture-outcome", v);
    }
    if let Outcome::Failed { retryable: true, retry_after_ms: Some(ms), .. } = outcome {
        let secs = ms.div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

fn request_error(e: &RequestError) -> Response {
    match e {
        RequestError::Malformed { path, .. } => {
            error(StatusCode::BAD_REQUEST, "malformed_request", &e.to_string(), Some(path))
        }
        RequestError::Invalid { field, .. } if field == "idempotency_key" => {
            error(StatusCode::CONFLICT, "idempotency_key_conflict", &e.to_string(), Some(field))
        }
        other => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            &other.to_string(),
            Some(other.field()),
        ),
    }
}

fn capture_error(e: &CaptureError) -> Response {
    match e {
        CaptureError::Request(r) => request_error(r),
        CaptureError::MissingCredential { .. } => {
            error(StatusCode::SERVICE_UNAVAILABLE, "missing_credential", &e.to_string(), None)
        }
        other => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &other.to_string(), None),
    }
}

/// Compares two tokens in time that depends only on their lengths.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Authentication and the request counter, around every route.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let open = OPEN_ROUTES.contains(&route.as_str());
    let allowed = open
        || match &app.token {
            None => true,
            Some(token) => req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|given| same_token(given.as_bytes(), token.as_bytes())),
        };
    let response = if allowed {
        let span = tracing::info_span!("request", method = %method, route = %route);
        tracing::Instrument::instrument(next.run(req), span).await
    } else {
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required", None);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    };
    app.metrics.count(
        "capture_http_requests_total",
        "HTTP requests served, by method, route and status.",
        &[("method", &method), ("route", &route), ("status", response.status().as_str())],
    );
    response
}

/// Reads the body within the size limit and the body timeout.
async fn body(app: &App, body: Body) -> Result<axum::body::Bytes, Response> {
    match tokio::time::timeout(app.body_timeout, axum::body::to_bytes(body, app.max_body)).await {
        Err(_) => {
            Err(error(StatusCode::REQUEST_TIMEOUT, "body_timeout", "the request body came too slowly", None))
        }
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the request body exceeds {} bytes (or could not be read)", app.max_body),
            None,
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

async fn post_capture(State(app): State<Arc<App>>, req: Request) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining", "the server is shutting down", None);
    }
    let bytes = match body(&app, req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request = match CaptureRequest::from_json(&bytes) {
        Ok(r) => r,
        Err(e) => return request_error(&e),
    };
    if let Err(e) = app.engine.ready(&request.platform) {
        return capture_error(&e);
    }
    let Ok(permit) = app.captures.clone().acquire_owned().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining", "the server is shutting down", None);
    };
    let (engine, metrics) = (app.engine.clone(), app.metrics.clone());
    let (platform, key) = (request.platform.clone(), request.idempotency_key.clone());
    // Its own task: never cancelled by a client that goes away; shutdown waits for its permit.
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _permit = permit;
            let _in_flight = metrics.in_flight();
            engine.capture(request).await
        },
        tracing::Span::current(),
    ));
    match tokio::time::timeout(app.capture_timeout, task).await {
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "in_progress",
            &format!(
                "the capture is still running; read GET /v1/captures/{platform}/{key} or post the same request again later"
            ),
            None,
        ),
        Ok(Err(join)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &join.to_string(), None),
        Ok(Ok(Err(e))) => capture_error(&e),
        Ok(Ok(Ok(report))) => outcome_response(&report.outcome, report.to_json()),
    }
}

async fn get_capture(
    State(app): State<Arc<App>>,
    axum::extract::Path((platform, key)): axum::extract::Path<(String, String)>,
) -> Response {
    let Some(store) = app.engine.ledger() else {
        return error(StatusCode::NOT_FOUND, "no_ledger", "this engine has no capture ledger", None);
    };
    let attempt = match store.by_key(app.engine.merchant(), &platform, &key).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no capture with key `{key}` on platform `{platform}`"),
                None,
            );
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "ledger", &e.to_string(), None),
    };
    let outcome: serde_json::Value = attempt
        .outcome
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(serde_json::Value::Null);
    let doc = serde_json::json!({
        "capture_id": attempt.id,
        "platform": attempt.platform,
        "order_id": attempt.order_id,
        "idempotency_key": attempt.idempotency_key,
        "state": attempt.state.as_str(),
        "amount": attempt.amount,
        "payment_ids": attempt.payment_ids,
        "platform_capture_id": attempt.platform_capture_id,
        "sends": attempt.sends,
        "created_at": attempt.created_at,
        "updated_at": attempt.updated_at,
        "outcome": outcome,
    });
    json(StatusCode::OK, format!("{doc:#}\n"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    platform: String,
    order_id: String,
    currency: String,
    #[serde(default)]
    payment_ids: Vec<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    platform_capture_id: Option<String>,
}

async fn post_status(State(app): State<Arc<App>>, req: Request) -> Response {
    let bytes = match body(&app, req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let q: StatusBody = match serde_json::from_slice(&bytes) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_request", &e.to_string(), None),
    };
    let currency = match capture_core::Currency::from_code(&q.currency) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &e.to_string(),
                Some("currency"),
            );
        }
    };
    let query = StatusQuery {
        platform: q.platform,
        order_id: q.order_id,
        currency,
        payment_ids: q.payment_ids,
        idempotency_key: q.idempotency_key,
        platform_capture_id: q.platform_capture_id,
    };
    match app.engine.status(&query).await {
        Ok(report) => outcome_response(&report.outcome, report.to_json()),
        Err(e) => capture_error(&e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    #[serde(default)]
    abandoned_after_s: Option<u64>,
}

async fn post_reconcile(State(app): State<Arc<App>>, req: Request) -> Response {
    let bytes = match body(&app, req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b: ReconcileBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReconcileBody::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_request", &e.to_string(), None),
        }
    };
    let after = b.abandoned_after_s.map(Duration::from_secs);
    match app.engine.reconcile(after).await {
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "ledger", &e, None),
        Ok(done) => {
            let unresolved = done.iter().filter(|r| r.blocking).count();
            let attempts: Vec<serde_json::Value> = done
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "capture_id": r.attempt, "platform": r.platform, "order_id": r.order_id,
                        "before": r.before.as_str(), "after": r.after.as_str(), "detail": r.detail,
                        "frees_at": r.frees_at.map(|t| t.to_rfc3339()),
                    })
                })
                .collect();
            let doc =
                serde_json::json!({ "examined": done.len(), "unresolved": unresolved, "attempts": attempts });
            json(StatusCode::OK, format!("{doc:#}\n"))
        }
    }
}

async fn healthz() -> Response {
    json(StatusCode::OK, "{\"status\":\"ok\"}\n".into())
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining", "the server is shutting down", None);
    }
    if let Some(store) = app.engine.ledger()
        && let Err(e) = store.by_key(app.engine.merchant(), "", "").await
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "ledger", &e.to_string(), None);
    }
    json(StatusCode::OK, "{\"status\":\"ready\"}\n".into())
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut r = (StatusCode::OK, app.metrics.render()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

async fn openapi() -> Response {
    json(StatusCode::OK, OPENAPI.to_owned())
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/captures", post(post_capture))
        .route("/v1/captures/{platform}/{key}", get(get_capture))
        .route("/v1/status", post(post_status))
        .route("/v1/reconcile", post(post_reconcile))
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        // The handlers read bodies themselves, within `max_body`.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

/// Reloads the rules folder on every SIGHUP.
fn reload_on_sighup(
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    rules: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(dir) = &rules else {
                eprintln!("capture serve: SIGHUP: no rules folder is configured; nothing to reload");
                continue;
            };
            let loaded = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    capture_engine::RuleSet::load_dir(&dir, Default::default())
                })
                .await
            };
            let result = match loaded {
                Ok(Ok(set)) => {
                    let new = set.version().to_owned();
                    let old = engine.swap_rules(set);
                    eprintln!("capture serve: rules reloaded from {}: {old} -> {new}", dir.display());
                    "ok"
                }
                Ok(Err(e)) => {
                    eprintln!(
                        "capture serve: rules in {} not reloaded, the old set stays: {e}",
                        dir.display()
                    );
                    "error"
                }
                Err(e) => {
                    eprintln!("capture serve: rules reload failed: {e}");
                    "error"
                }
            };
            metrics.count(
                "capture_rules_reloads_total",
                "Rule reloads on SIGHUP, by result.",
                &[("result", result)],
            );
        }
    });
    Ok(())
}

/// The token the API demands, or why the server must not start.
fn token(opts: &Options) -> anyhow::Result<Option<String>> {
    match std::env::var(&opts.token_env) {
        Ok(t) if !t.is_empty() => Ok(Some(t)),
        _ if opts.insecure_no_auth && opts.listen.ip().is_loopback() => Ok(None),
        _ if opts.insecure_no_auth => anyhow::bail!(
            "--insecure-no-auth is allowed only on a loopback address; {} is not one: set {} to a token",
            opts.listen.ip(),
            opts.token_env
        ),
        _ => anyhow::bail!(
            "no API token: set the environment variable {} (clients send `Authorization: Bearer <token>`), or, on a loopback address only, pass --insecure-no-auth",
            opts.token_env
        ),
    }
}

/// Runs the server until SIGTERM or Ctrl-C; returns the exit code.
pub async fn run(opts: Options, now: Option<&str>) -> anyhow::Result<u8> {
    let token = token(&opts).map_err(|e| capture_engine::ConfigError::Invalid {
        key: format!("environment variable {}", opts.token_env),
        problem: e.to_string(),
    })?;
    let cfg = EngineConfig::load(&opts.config)?;
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(crate::builder(&cfg, now).await?.observer(metrics.clone()).build()?);
    // Before listening: a restarted server first resolves (within the engine's bound) what it or
    // another process left in flight.
    crate::reconcile_on_start(&engine, "capture serve").await;
    let app = Arc::new(App {
        engine: engine.clone(),
        metrics: metrics.clone(),
        token,
        draining: AtomicBool::new(false),
        captures: Arc::new(Semaphore::new(MAX_CAPTURES as usize)),
        max_body: opts.max_body,
        body_timeout: opts.body_timeout,
        capture_timeout: opts.capture_timeout,
    });
    reload_on_sighup(engine.clone(), metrics, cfg.rules.clone())?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    // The line a supervisor (or a test) waits for.
    println!("capture serve listening on http://{addr}");
    eprintln!(
        "capture serve: config {}, ledger {}, platforms [{}], auth {}",
        opts.config.display(),
        if engine.has_ledger() { "on" } else { "off" },
        engine.connectors().map(|(id, _)| id).collect::<Vec<_>>().join(", "),
        if app.token.is_some() { "bearer token" } else { "none (loopback, --insecure-no-auth)" }
    );
    let draining = app.clone();
    let shutdown = async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("capture serve: cannot install the SIGTERM handler: {e}");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    eprintln!("capture serve: cannot wait for Ctrl-C: {e}");
                }
            }
        }
        draining.draining.store(true, Ordering::SeqCst);
        eprintln!("capture serve: stopping: no new connections; finishing the captures in flight");
    };
    serve_connections(listener, router(app.clone()), opts.header_timeout, shutdown).await;
    // Captures whose client went away are still running: wait for every one.
    let all = app.captures.acquire_many(MAX_CAPTURES).await.context("waiting for the captures in flight")?;
    drop(all);
    eprintln!("capture serve: stopped; every capture finished and recorded");
    Ok(crate::Exit::Ok.code())
}

/// Accepts connections until `shutdown` resolves, each served by hyper's HTTP/1 connection with
/// a timer, so that its header-read timeout applies (a client that opens a connection and never
/// finishes its headers is cut off); then stops accepting and waits for every connection to
/// finish what it is answering (idle kept-alive connections close at once). This is
/// `axum::serve` with the one setting it does not expose.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: passing; do not spin.
                    eprintln!("capture serve: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A connection cut off (header timeout, a client gone) is that client's business.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The default listen address.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8088))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_a_documented_status() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let responses = &doc["paths"]["/v1/captures"]["post"]["responses"];
        let usd = capture_core::Currency::from_code("USD").expect("USD");
        let failed = |kind, retryable| Outcome::Failed {
            kind,
            retryable,
            platform_code: None,
            message: String::new(),
            retry_after_ms: None,
        };
        for (o, code) in [
            (Outcome::Captured { amount: capture_core::Money::zero(usd), platform_capture_id: None }, 200),
            (Outcome::Pending { amount: capture_core::Money::zero(usd), platform_capture_id: None }, 202),
            (Outcome::AlreadyCaptured { platform_code: None, message: String::new() }, 200),
            (Outcome::Rejected { by: String::new(), code: String::new(), reason: String::new() }, 422),
            (Outcome::Held { by: String::new(), reason: String::new() }, 423),
            (failed(FailureKind::RateLimited, true), 503),
            (failed(FailureKind::OutcomeUnknown, false), 504),
            (failed(FailureKind::InvalidRequest, false), 502),
        ] {
            assert_eq!(http_status(&o).as_u16(), code, "{o:?}");
            assert!(
                responses.get(code.to_string()).is_some(),
                "openapi.json lacks {code} for POST /v1/captures"
            );
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abc", b"abd"));
        assert!(!same_token(b"abc", b"abcd"));
        assert!(!same_token(b"", b"a"));
    }
}
