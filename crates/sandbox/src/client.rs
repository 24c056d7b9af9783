//! A tiny HTTP/1.1 client for the emulators' tests and tools: one request per connection
//! (`Connection: close`), the raw bytes kept, so a test sees exactly what the emulator sent
//! (including a connection dropped half-way). Not a general HTTP client: no TLS, no chunked
//! bodies, no redirects.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use capture_sandbox::{OpttyConfig, OpttyEmulator, client};
//!
//! let emulator = OpttyEmulator::start(OpttyConfig::demo()).await?;
//! let reply = client::send(emulator.addr(), "GET", "/_sandbox/requests", &[], "").await?;
//! assert_eq!(reply.status, 200);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The status line and headers, lower-cased (for `contains` checks).
    pub head: String,
    /// Header names (lower case) and values, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub text: String,
    /// The body as JSON; `Null` when it is empty or not JSON.
    pub json: Value,
}

impl Reply {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one request and returns every byte the server sent before closing (a connection reset
/// after some bytes keeps what arrived).
pub async fn send_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(_) => Ok(raw),
        Err(_) if !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// Sends one request and parses the whole (non-chunked) response.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Reply> {
    let raw = send_raw(addr, method, path, headers, body).await?;
    parse(&raw)
}

/// Parses a complete response (status line, headers, body).
pub fn parse(raw: &[u8]) -> io::Result<Reply> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let raw = std::str::from_utf8(raw).map_err(|_| invalid("the response is not UTF-8"))?;
    let (head, text) = raw.split_once("\r\n\r\n").ok_or_else(|| invalid("no end of the headers"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        return Err(invalid("a chunked body (this client reads only bodies with a length)"));
    }
    let json = serde_json::from_str(text).unwrap_or(Value::Null);
    Ok(Reply { status, head: head.to_ascii_lowercase(), headers, text: text.to_owned(), json })
}
