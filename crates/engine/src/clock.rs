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
        format!("cap_{}", &hex(&h.finalize())[..16])
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
