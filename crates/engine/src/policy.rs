//! The engine's policies, pure or injectable: where crash tests stop the process, the random
//! source of retry jitter, the retry policy (a pure function of the send count and the hint), and
//! the sleeper every wait goes through (so the simulator and tests never sleep on the real clock).

use std::sync::Mutex;
use std::time::Duration;

/// Waits. Injected so that retries and backoff never sleep on the real clock in tests and the
/// simulator.
#[async_trait::async_trait]
pub trait Sleeper: Send + Sync {
    /// Waits for `d`.
    async fn sleep(&self, d: Duration);
}

/// The real sleeper: `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[async_trait::async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// Where the engine stops dead (`std::process::abort`) for crash tests: right after the
/// reservation, right after marking the attempt sent (before the request leaves), or right after
/// the platform answered (before the outcome is recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the reservation is committed.
    Reserved,
    /// After the attempt is marked sent, before the request leaves.
    Sent,
    /// After the platform answered, before the outcome is recorded.
    Answered,
}

impl CrashPoint {
    /// Parses `reserved`, `sent` or `answered`.
    pub fn parse(s: &str) -> Option<CrashPoint> {
        match s {
            "reserved" => Some(CrashPoint::Reserved),
            "sent" => Some(CrashPoint::Sent),
            "answered" => Some(CrashPoint::Answered),
            _ => None,
        }
    }
}

/// A source of random numbers for retry jitter; injected so tests stay deterministic.
pub trait Random: Send + Sync {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;
}

/// SplitMix64: small, fast, good enough for jitter; seeded, so a run is reproducible.
#[derive(Debug)]
pub struct SeededRandom(Mutex<u64>);

impl SeededRandom {
    /// A generator with this seed.
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom(Mutex::new(seed))
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        let mut state = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// When and how often the engine sends a capture again by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most sends of one attempt (the first included).
    pub max_sends: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Longest wait, including a platform's reset hint.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_sends: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before send number `sends + 1`: the platform's hint if it gave one, otherwise
    /// `base * 2^(sends-1)` plus up to 50 % jitter; never more than `max_delay`.
    pub fn delay(&self, sends: u32, hint_ms: Option<u64>, random: &dyn Random) -> Duration {
        let cap = self.max_delay;
        if let Some(ms) = hint_ms {
            return Duration::from_millis(ms).min(cap);
        }
        let exp = self.base_delay.saturating_mul(1u32 << sends.saturating_sub(1).min(16));
        let half = u64::try_from(exp.as_millis() / 2).unwrap_or(u64::MAX).max(1);
        let jitter = Duration::from_millis(random.next_u64() % half);
        exp.saturating_add(jitter).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_hints() {
        let r = SeededRandom::new(7);
        let p = RetryPolicy::default();
        let d1 = p.delay(1, None, &r);
        let d2 = p.delay(2, None, &r);
        assert!(d1 >= Duration::from_millis(200) && d1 < Duration::from_millis(300), "{d1:?}");
        assert!(d2 >= Duration::from_millis(400) && d2 < Duration::from_millis(600), "{d2:?}");
        assert_eq!(p.delay(1, Some(1500), &r), Duration::from_millis(1500));
        assert_eq!(p.delay(1, Some(60_000), &r), Duration::from_secs(10));
        // Seeded: the same sequence every time.
        let (a, b) = (SeededRandom::new(1), SeededRandom::new(1));
        assert_eq!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
    }
}
