//! Small helpers every connector needs, so authors do not write them again.

use crate::messages::{ConnectorError, HttpResponse};

/// Percent-encodes one URL path segment: RFC 3986 unreserved characters pass through, every
/// other byte becomes `%XX` (so an order id like `A/1 2` cannot change the path).
///
/// A segment that is empty or a dot segment (`.` or `..`) is refused with an `invalid_call`
/// error: URL parsers resolve `.`, `..` and their encoded forms (`%2e`, `%2E%2E`) as "this
/// folder" and "the parent folder", so an order id `..` would turn
/// `/orders/{id}/capture` into `/capture`, and an empty one `/orders//capture`. No encoding
/// survives every parser, so such an id cannot be sent in a path at all. The engine checks every
/// URL a connector builds for dot segments again.
///
/// ```
/// use capture_connector_api::encode_path_segment;
/// assert_eq!(encode_path_segment("ORD 1/2").unwrap(), "ORD%201%2F2");
/// assert_eq!(encode_path_segment("v1.2").unwrap(), "v1.2");
/// assert!(encode_path_segment("..").is_err());
/// ```
pub fn encode_path_segment(segment: &str) -> Result<String, ConnectorError> {
    use std::fmt::Write;
    if matches!(segment, "" | "." | "..") {
        return Err(ConnectorError::new(
            "invalid_call",
            format!(
                "`{segment}` cannot be a URL path segment: empty and dot segments (`.`, `..`) would \
                 change the path the request is sent to"
            ),
        ));
    }
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            write!(out, "%{b:02X}").unwrap_or(());
        }
    }
    Ok(out)
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
    }

    #[test]
    fn path_segments_never_change_the_path() {
        for (input, expected) in [
            ("a~b.c-d_e", Some("a~b.c-d_e")),
            ("é", Some("%C3%A9")),
            ("../x", Some("..%2Fx")),
            ("%2e%2e", Some("%252e%252e")),
            ("...", Some("...")),
            (".a", Some(".a")),
            ("", None),
            (".", None),
            ("..", None),
        ] {
            let got = encode_path_segment(input);
            match expected {
                Some(e) => assert_eq!(got.as_deref().ok(), Some(e), "{input:?}"),
                None => {
                    let err = got.expect_err(input);
                    assert_eq!(err.code, "invalid_call", "{input:?}");
                    assert!(err.message.contains("path segment"), "{input:?}: {err}");
                }
            }
        }
    }
}
