//! Fault injection shared by every emulator, and the loopback server they run on.
//!
//! A test (or a person, through `POST /_sandbox/faults`) queues faults; each request to a
//! platform's capture route takes the next one. Faults:
//!
//! | kind | effect |
//! |---|---|
//! | `status` | answer `status` (500, 502, 503, 504, ...) with the platform's error body; the capture is **not** applied, unless `applied` is true (a gateway error after the platform applied it) |
//! | `rate_limited` | answer 429 with the platform's reset headers (`reset_ms`); not applied |
//! | `delay` | apply the capture, then answer after `delay_ms` (longer than the client's timeout: the client sees no answer although the capture happened) |
//! | `drop_after_apply` | apply the capture, then drop the connection without an answer |
//!
//! A `status` fault answers with the platform's own error body for that status. Two optional
//! fields choose what it says, so a fault can stand for any documented error:
//!
//! - `code`: the platform's application error code. Wix puts it in
//!   `details.applicationError.code` (e.g. `PAYMENT_HAS_PENDING_CAPTURE` with status 428), Medusa
//!   in `type` (e.g. `not_allowed`). Optty and BigCommerce errors carry no such code, and their
//!   emulators refuse a fault that names one (`400`, naming the fault and the field).
//! - `message`: the error's text (Optty `message`, BigCommerce `title`, Medusa `message`, Wix
//!   `description` and `message`).
//!
//! JSON: `[{"kind":"status","status":503}, {"kind":"rate_limited","reset_ms":1500},
//! {"kind":"delay","delay_ms":3000}, {"kind":"drop_after_apply"},
//! {"kind":"status","status":428,"code":"PAYMENT_HAS_PENDING_CAPTURE"}]`. `DELETE /_sandbox/faults`
//! clears the queue. The routes are served by [`crate::emulator`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer an error status.
    Status,
    /// Answer 429 with reset headers.
    RateLimited,
    /// Apply, then answer late.
    Delay,
    /// Apply, then drop the connection.
    DropAfterApply,
}

/// One queued fault (a flat struct, so numbers parse whatever serde_json's features).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What it does.
    pub kind: FaultKind,
    /// For `status`: the status code.
    #[serde(default)]
    pub status: Option<u16>,
    /// For `status`: whether the capture was applied before the error (default false).
    #[serde(default)]
    pub applied: bool,
    /// For `rate_limited`: milliseconds until the window resets.
    #[serde(default)]
    pub reset_ms: Option<u64>,
    /// For `delay`: milliseconds to wait before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// For `status`: the platform's application error code (Wix, Medusa; see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For `status`: the error's text instead of the platform's default for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Fault {
    /// An error status, not applied.
    pub fn status(status: u16) -> Fault {
        Fault {
            kind: FaultKind::Status,
            status: Some(status),
            applied: false,
            reset_ms: None,
            delay_ms: None,
            code: None,
            message: None,
        }
    }

    /// An error status with the platform's application error code (Wix, Medusa).
    pub fn status_with_code(status: u16, code: impl Into<String>) -> Fault {
        Fault { code: Some(code.into()), ..Fault::status(status) }
    }

    /// An error status after the capture was applied.
    pub fn status_after_apply(status: u16) -> Fault {
        Fault { applied: true, ..Fault::status(status) }
    }

    /// 429 with a reset hint.
    pub fn rate_limited(reset_ms: u64) -> Fault {
        Fault {
            kind: FaultKind::RateLimited,
            status: Some(429),
            applied: false,
            reset_ms: Some(reset_ms),
            ..Fault::status(429)
        }
    }

    /// Apply, then answer after `delay_ms`.
    pub fn delay(delay_ms: u64) -> Fault {
        Fault {
            kind: FaultKind::Delay,
            status: None,
            applied: true,
            delay_ms: Some(delay_ms),
            ..Fault::status(0)
        }
    }

    /// Apply, then drop the connection.
    pub fn drop_after_apply() -> Fault {
        Fault { kind: FaultKind::DropAfterApply, status: None, applied: true, ..Fault::status(0) }
    }

    /// Whether the platform applies the capture before this fault shows.
    pub fn applies(&self) -> bool {
        match self.kind {
            FaultKind::Status => self.applied,
            FaultKind::RateLimited => false,
            FaultKind::Delay | FaultKind::DropAfterApply => true,
        }
    }
}

/// A queue of faults, shared by an emulator's handlers and its control route.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan(Arc<Mutex<VecDeque<Fault>>>);

impl FaultPlan {
    /// Queues faults, in order.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend(faults);
    }

    /// Takes the next fault, if any.
    pub fn next(&self) -> Option<Fault> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }

    /// The faults still queued, next first.
    pub fn queued(&self) -> Vec<Fault> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// Clears the queue.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Waits out a `delay` fault.
pub async fn wait(fault: &Fault) {
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A body that fails on its first read: hyper aborts the connection, and the client sees the
/// connection drop with no complete answer.
struct Broken;

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "fault: drop_after_apply",
        ))))
    }
}

/// Marks a response whose connection is dropped (the request log records no status for it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dropped;

/// The response for `drop_after_apply`: the connection is cut before an answer is complete.
pub fn dropped_connection() -> Response {
    let mut response = Response::new(Body::new(Broken));
    response.extensions_mut().insert(Dropped);
    response
}

/// A running HTTP server on loopback: the emulators' shared start/stop.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free one) and serves `router` on a tokio task.
    pub async fn start(addr: SocketAddr, router: Router) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.await;
            };
            let _ = axum::serve(listener, router).with_graceful_shutdown(signal).await;
        });
        Ok(Server { addr, stop: Some(stop), task: Some(task) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish (up to 5 seconds).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
