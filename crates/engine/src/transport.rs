//! The HTTP transport: the only place the engine touches the network.

use std::time::Duration;

use async_trait::async_trait;
use capture_connector_api::HttpResponse;

/// The largest response body the engine reads.
pub const MAX_RESPONSE_BODY: usize = 1 << 20;

/// An HTTP request ready to send: secrets already resolved. Never logged or recorded as is.
#[derive(Clone)]
pub struct OutgoingRequest {
    /// Method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers, with credentials in clear.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<String>,
}

impl std::fmt::Debug for OutgoingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may carry credentials: show names only.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OutgoingRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be made: the request was not sent.
    #[error("could not connect: {0}")]
    Connect(String),
    /// No complete answer within the timeout: the platform may have applied the request.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The connection failed after the request may have been sent.
    #[error("connection failed: {0}")]
    Io(String),
    /// The request could not be built (bad method, header or URL).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Sends one request and returns the answer. Implementations must not retry by themselves.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends `request`, waiting at most `timeout` for the whole answer.
    async fn send(&self, request: OutgoingRequest, timeout: Duration)
    -> Result<HttpResponse, TransportError>;
}

/// The real transport: reqwest over tokio (HTTP/1.1, connection pooling, no proxy, no redirects).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A transport with a connection pool.
    pub fn new() -> Result<HttpTransport, TransportError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TransportError::Invalid(e.to_string()))?;
        Ok(HttpTransport { client })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(
        &self,
        request: OutgoingRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| TransportError::Invalid(format!("method `{}`", request.method)))?;
        let mut builder = self.client.request(method, &request.url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                TransportError::Timeout(millis)
            } else if e.is_connect() {
                TransportError::Connect(e.to_string())
            } else if e.is_builder() {
                TransportError::Invalid(e.to_string())
            } else {
                TransportError::Io(e.to_string())
            }
        };
        let response = builder.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let bytes = response.bytes().await.map_err(classify)?;
        let body = if bytes.len() > MAX_RESPONSE_BODY {
            format!("[body of {} bytes exceeds the {MAX_RESPONSE_BODY}-byte cap]", bytes.len())
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Ok(HttpResponse { status, headers, body })
    }
}
