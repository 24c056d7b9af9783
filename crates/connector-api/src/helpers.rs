//! Small helpers every connector needs, so authors do not write them again.

use crate::messages::HttpResponse;

/// Percent-encodes one URL path segment: RFC 3986 unreserved characters pass through, every
/// other byte becomes `%XX` (so an order id like `A/1 2` cannot change the path).
///
/// ```
/// assert_eq!(capture_connector_api::encode_path_segment("ORD 1/2"), "ORD%201%2F2");
/// ```
pub fn encode_path_segment(segment: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl HttpResponse {
    /// The first header with this name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }

    /// `Retry-After` in whole seconds, as milliseconds (an HTTP date is ignored).
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(|s| s.saturating_mul(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_hints() {
        let r = HttpResponse {
            status: 429,
            headers: vec![("Retry-After".into(), " 2 ".into()), ("x-a".into(), "1".into())],
            body: String::new(),
        };
        assert_eq!(r.header("retry-after"), Some("2"));
        assert_eq!(r.retry_after_ms(), Some(2000));
        assert_eq!(r.header("missing"), None);
        assert_eq!(encode_path_segment("a~b.c-d_e"), "a~b.c-d_e");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }
}
