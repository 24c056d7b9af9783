//! Injected time and ids: the pipeline never reads the system clock or a random source itself.

use std::time::{SystemTime, UNIX_EPOCH};

use capture_core::{CaptureRequest, Timestamp};
use sha2::{Digest, Sha256};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// A clock that always reads the same time (tests, replays, `--now`).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// A source of capture ids.
pub trait IdGenerator: Send + Sync {
    /// The id of the capture of `request`.
    fn capture_id(&self, request: &CaptureRequest) -> String;
}

/// Ids derived from the request: `cap_` and 16 hex digits of
/// SHA-256(platform, order id, idempotency key). The same request always gets the same id.
#[derive(Debug, Clone, Copy, Default)]
pub struct DerivedIds;

impl IdGenerator for DerivedIds {
    fn capture_id(&self, request: &CaptureRequest) -> String {
        let mut h = Sha256::new();
        for part in [&request.platform, &request.order.id, &request.idempotency_key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let mut id = String::with_capacity(4 + 16);
        id.push_str("cap_");
        push_hex(&mut id, &digest[..8]);
        id
    }
}

/// Appends `bytes` in lower-case hex (a table look-up per nibble, no formatting machinery).
fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn derived_ids_are_cap_and_the_first_16_hex_digits_of_the_hash() {
        let request = CaptureRequest::from_json(
            br#"{"platform":"optty","idempotency_key":"k1","amount":"full",
                 "order":{"id":"ORD-1","currency":"USD","amount":"10.00","payments":[{"id":"p1","amount":"10.00"}]}}"#,
        )
        .expect("request");
        let mut h = Sha256::new();
        h.update(b"optty\0ORD-1\0k1\0");
        let full = hex(&h.finalize());
        assert_eq!(DerivedIds.capture_id(&request), format!("cap_{}", &full[..16]));
    }
}
