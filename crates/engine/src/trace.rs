//! Traces (`tracing`): where the spans of a capture are made.
//!
//! - `capture` (fields `capture_id`, `platform`, `order`, `key`): one per [`Engine::capture`],
//!   around the whole pipeline;
//! - `stage` (`stage`): pre-validate, capture, post-capture, inside it;
//! - `plugin` (`connector`, `call`): each call into a connector plugin;
//! - `http` (`method`, `path`, `status`): each exchange with the platform, made by
//!   [`TracedTransport`] around whatever transport the engine has;
//! - `ledger` (`op`, `capture_id`, `to`, `state`): each ledger call, made by [`TracedStore`]
//!   around whatever store the engine has;
//! - one `step` event (`stage`, `source`, `name`, `verdict`) per line of the report.
//!
//! Fields are names, ids and states only: never a credential, a header value or a body. The
//! wrappers sit at the trait boundaries, so the capture stage's internals can change freely.
//!
//! [`Engine::capture`]: crate::Engine::capture

use std::sync::Arc;
use std::time::Duration;

use capture_connector_api::HttpResponse;
use capture_core::Timestamp;
use capture_store::{
    Attempt, AttemptState, AttemptUpdate, CaptureStore, Fence, LeaseGrant, NewAttempt, OrderRecord,
    Reservation, StoreError,
};
use tracing::Instrument;

use crate::transport::{OutgoingRequest, Transport, TransportError};

/// A transport that makes an `http` span around each exchange.
pub(crate) struct TracedTransport(pub(crate) Arc<dyn Transport>);

#[async_trait::async_trait]
impl Transport for TracedTransport {
    async fn send(
        &self,
        request: OutgoingRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        // The path only: no host (ports vary), no query (it may carry ids a platform wants private).
        let path = url_path(&request.url);
        let span = tracing::info_span!("http", method = %request.method, path = %path, status = tracing::field::Empty);
        let answer = self.0.send(request, timeout).instrument(span.clone()).await;
        match &answer {
            Ok(r) => {
                span.record("status", r.status);
            }
            Err(e) => {
                span.record("status", "none");
                tracing::info!(parent: &span, error = transport_error_kind(e), "no answer");
            }
        }
        answer
    }
}

fn transport_error_kind(e: &TransportError) -> &'static str {
    match e {
        TransportError::Connect(_) => "connect",
        TransportError::Invalid(_) => "invalid",
        _ => "lost",
    }
}

/// A store that makes a `ledger` span around each call.
#[derive(Debug)]
pub(crate) struct TracedStore(pub(crate) Arc<dyn CaptureStore>);

fn reservation(r: &Result<Reservation, StoreError>) -> &'static str {
    match r {
        Ok(Reservation::Reserved(_)) => "reserved",
        Ok(Reservation::Existing(_)) => "existing",
        Ok(Reservation::KeyConflict(_)) => "key_conflict",
        Ok(Reservation::OverBound { .. }) => "over_bound",
        Ok(Reservation::OrderBusy(_)) => "order_busy",
        Ok(Reservation::AuthorizationMismatch { .. }) => "authorization_mismatch",
        Err(_) => "error",
    }
}

#[async_trait::async_trait]
impl CaptureStore for TracedStore {
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError> {
        let span = tracing::info_span!("ledger", op = "reserve", capture_id = %new.id, state = tracing::field::Empty);
        let r = self.0.reserve(new).instrument(span.clone()).await;
        span.record("state", reservation(&r));
        r
    }

    async fn transition(
        &self,
        id: &str,
        fence: &Fence,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, StoreError> {
        let span = tracing::info_span!("ledger", op = "transition", capture_id = %id, to = to.as_str(), state = tracing::field::Empty);
        let r = self.0.transition(id, fence, from, to, update, now).instrument(span.clone()).await;
        span.record("state", r.as_ref().map(|a| a.state.as_str()).unwrap_or("refused"));
        r
    }

    async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<LeaseGrant, StoreError> {
        let span =
            tracing::info_span!("ledger", op = "take_lease", capture_id = %id, state = tracing::field::Empty);
        let r = self.0.take_lease(id, owner, lease_ms, min_age_ms, now).instrument(span.clone()).await;
        let state = match &r {
            Ok(LeaseGrant::Granted(_)) => "granted",
            Ok(LeaseGrant::Held { .. }) => "held",
            Ok(LeaseGrant::Final(_)) => "final",
            Err(_) => "error",
        };
        span.record("state", state);
        r
    }

    async fn order(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        self.0
            .order(merchant, platform, order_id)
            .instrument(tracing::info_span!("ledger", op = "order"))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        self.0.get(id).instrument(tracing::info_span!("ledger", op = "get", capture_id = %id)).await
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        self.0.by_key(merchant, platform, key).instrument(tracing::info_span!("ledger", op = "by_key")).await
    }

    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError> {
        self.0.unresolved().instrument(tracing::info_span!("ledger", op = "unresolved")).await
    }

    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.0
            .order_attempts(merchant, platform, order_id)
            .instrument(tracing::info_span!("ledger", op = "order_attempts"))
            .await
    }

    async fn all(&self) -> Result<Vec<Attempt>, StoreError> {
        self.0.all().instrument(tracing::info_span!("ledger", op = "all")).await
    }

    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}

/// A `plugin` span for one call into a connector.
pub(crate) fn plugin_span(connector: &str, call: &'static str) -> tracing::Span {
    tracing::info_span!("plugin", connector = %connector, call)
}

/// A `stage` span.
pub(crate) fn stage_span(stage: capture_core::Stage) -> tracing::Span {
    tracing::info_span!("stage", stage = crate::observe::stage_name(stage))
}

/// The `capture` span.
pub(crate) fn capture_span(req: &capture_core::CaptureRequest) -> tracing::Span {
    tracing::info_span!(
        "capture",
        capture_id = tracing::field::Empty,
        platform = %req.platform,
        order = %req.order.id,
        key = %req.idempotency_key
    )
}

/// The path of a URL the engine checked (`scheme://authority/path?query#fragment`, as the URL
/// parser writes it), read without parsing it again: the authority of a serialized URL holds no
/// `/`, `?` or `#` (they are percent-encoded), so the path runs from the first `/` after `://` to
/// the first `?` or `#`. `/` when there is no path.
fn url_path(url: &str) -> &str {
    let after = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = match after.find(['/', '?', '#']) {
        Some(at) if after.as_bytes()[at] == b'/' => &after[at..],
        _ => return "/",
    };
    rest.split(['?', '#']).next().unwrap_or("/")
}

#[cfg(test)]
mod url_path_tests {
    #[test]
    fn paths_of_serialized_urls() {
        for (url, path) in [
            ("http://127.0.0.1:9/orders/ORD%201/capture", "/orders/ORD%201/capture"),
            ("https://api.example.com/a/b?x=/y#z", "/a/b"),
            ("http://127.0.0.1:9/", "/"),
            ("http://127.0.0.1:9?q=/a", "/"),
            ("http://user:p%2Fw@host/p", "/p"),
        ] {
            assert_eq!(super::url_path(url), path, "{url}");
            let parsed = url::Url::parse(url).expect("url");
            assert_eq!(super::url_path(parsed.as_str()), parsed.path(), "{url}");
        }
    }
}
