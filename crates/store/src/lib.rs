//! `capture-store`: the capture ledger. Every capture attempt is recorded here before anything is
//! sent to a platform, and every answer after; the ledger is what makes a capture exactly-once.
//!
//! Two backends implement one trait, [`CaptureStore`]:
//!
//! * [`SqliteStore`]: the embedded default, one file, no server (WAL journal, `synchronous=FULL`).
//! * [`PostgresStore`]: for several engine processes sharing one ledger.
//!
//! [`open`] picks one from a configuration value: a `postgres://` or `postgresql://` URL opens
//! PostgreSQL, anything else is a SQLite file path.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), capture_store::StoreError> {
//! use capture_core::{Currency, Money, Timestamp};
//! use capture_store::{AttemptState, AttemptUpdate, CaptureStore, NewAttempt, Reservation, SqliteStore};
//!
//! let store = SqliteStore::in_memory()?; // or capture_store::open("ledger.db" / "postgres://…")
//! let amount = Money::parse("100.10", Currency::from_code("USD").unwrap()).unwrap();
//! let payments = vec![("pay-1".to_owned(), amount)];
//! let new = NewAttempt {
//!     id: "cap_1".into(),
//!     merchant: "m1".into(),
//!     platform: "optty".into(),
//!     idempotency_key: "ord-1-cap-1".into(),
//!     fingerprint: capture_store::fingerprint("optty", "ord-1", &amount, &payments),
//!     order_id: "ord-1".into(),
//!     payment_ids: vec!["pay-1".into()],
//!     amount,
//!     bound: amount, // authorized minus what was captured elsewhere
//!     now: Timestamp(1_790_000_000_000),
//! };
//! let Reservation::Reserved(a) = store.reserve(&new).await? else { unreachable!() };
//! let send = AttemptUpdate { count_send: true, ..Default::default() };
//! store.transition(&a.id, &[AttemptState::Reserved], AttemptState::Sent, send, new.now).await?;
//! // The platform timed out: unknown until its state has been read.
//! store.transition(&a.id, &[AttemptState::Sent], AttemptState::Unknown, Default::default(), new.now).await?;
//!
//! // Replaying the request returns the recorded attempt; nothing is sent again.
//! assert!(matches!(store.reserve(&new).await?, Reservation::Existing(a) if a.state == AttemptState::Unknown));
//! // Another capture of the same order waits until this one is resolved.
//! let mut other = new.clone();
//! other.id = "cap_2".into();
//! other.idempotency_key = "ord-1-cap-2".into();
//! assert!(matches!(store.reserve(&other).await?, Reservation::OrderBusy(_)));
//! // The janitor's work list.
//! assert_eq!(store.unresolved().await?.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # The state machine (one per attempt)
//!
//! ```text
//!  reserve() ─▶ Reserved ─────────────── nothing sent ──────────────────┐
//!                  │                                                    ▼
//!                  │ send                     resend (only if      ┌────────┐
//!                  ▼                          `resendable`)        │ Failed │ final
//!      ┌──────▶  Sent  ◀───────────────────────────────────────────┤        │
//!      │           │                                               └────────┘
//!      │           ├── 2xx ─────────────────▶ Captured  final           ▲ ▲
//!      │           ├── accepted, async ─────▶ Pending ──▶ Captured      │ │
//!      │           │                            │  ▲ ──▶ Failed ────────┘ │
//!      │           │                            └──┘ still pending        │
//!      │           ├── 4xx, refused ──────────────────────────────────────┤
//!      │           ├── "already captured" ──▶ AlreadyCaptured  final      │
//!      │           └── 5xx, timeout, ───────▶ Unknown                     │
//!      │               dropped connection        │ read the platform's state
//!      │                                         ├──▶ Captured | Pending | AlreadyCaptured
//!      │                                         ├──▶ Failed ─────────────┘
//!      └──────── nothing applied: resend ────────┘
//! ```
//!
//! Exactly ([`transition_allowed`]):
//!
//! | from       | to                                                     |
//! |------------|--------------------------------------------------------|
//! | `Reserved` | `Sent`, `Failed` (nothing sent)                        |
//! | `Sent`     | `Captured`, `Pending`, `Failed`, `Unknown`, `AlreadyCaptured` |
//! | `Unknown`  | `Captured`, `Pending`, `Failed`, `AlreadyCaptured`, `Sent` (resend with the same key after the platform's state showed nothing applied) |
//! | `Pending`  | `Captured`, `Failed`, `Pending`                        |
//! | `Failed`   | `Sent`, only if the attempt is `resendable` (a retryable failure where nothing was applied) |
//! | `Captured`, `AlreadyCaptured` | nothing                             |
//!
//! Which states count ([`AttemptState`]): *held* (counted against the order's bound) are
//! Reserved, Sent, Pending, Unknown and Captured; *in flight* (blocking any other attempt of the
//! same order) are Reserved, Sent and Unknown; *final* are Captured, Failed and AlreadyCaptured.
//!
//! # Invariants the store enforces, and how
//!
//! | invariant | SQLite | PostgreSQL |
//! |---|---|---|
//! | an idempotency key is used once per (merchant, platform) | `UNIQUE(merchant, platform, idempotency_key)`, checked inside `BEGIN IMMEDIATE` | the same UNIQUE constraint; a violation by a concurrent insert rolls the transaction back and `reserve` retries, then answers `Existing`/`KeyConflict` |
//! | a key replayed for another order or amount is refused | the fingerprint stored with the key is compared ([`Reservation::KeyConflict`]) | same |
//! | Σ held amounts of an order ≤ its bound | read and insert in one `BEGIN IMMEDIATE` transaction: SQLite's single writer lock serializes every writer, in this process and in others sharing the file | read and insert in one transaction holding `pg_advisory_xact_lock(<order key>)`: every writer of the same (merchant, platform, order) is serialized across processes; READ COMMITTED statements taken after the lock see every earlier commit |
//! | at most one attempt of an order in flight | same transaction as the bound | same transaction and lock |
//! | a state moves only along the machine, once | compare-and-set: the row is re-read inside `BEGIN IMMEDIATE`, its state checked against `from` and [`transition_allowed`] | compare-and-set: `SELECT … FOR UPDATE` on the row inside a transaction |
//! | a resend (Failed → Sent) respects the bound and the in-flight rule | re-checked against the order's attempts and the bound recorded at reservation, in the same transaction | the same, under the order's advisory lock |
//! | amounts are exact | integer minor units (`BIGINT`) plus the currency code; no float anywhere | same |
//!
//! Serialization failures, deadlocks and unique violations on PostgreSQL are retried a few times;
//! SQLite waits up to 10 s for another process's write lock (a busy handler polling every millisecond,
//! so that a waiting process gets its turn rather than backing off while another keeps writing).
//!
//! # Schema
//!
//! One table, `capture_attempts`, created on open (`CREATE TABLE IF NOT EXISTS`), plus
//! `capture_store_schema(version)`: a store written by a newer schema version is refused.
//! Timestamps are `BIGINT` milliseconds (from the engine's injected clock, never read here),
//! amounts `BIGINT` minor units plus a `TEXT` currency, payment ids JSON text.
//!
//! # Test support
//!
//! With the `testing` feature, [`testing::throwaway_postgres`] starts a private PostgreSQL server
//! for the test process and hands out a fresh database per call.

use std::path::PathBuf;
use std::sync::Arc;

use capture_core::{Money, Timestamp};
use sha2::{Digest, Sha256};

mod error;
mod logic;
mod postgres;
mod redact;
mod sqlite;
mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use redact::redact_target;
pub use sqlite::SqliteStore;
pub use state::{ALL_STATES, AttemptState, transition_allowed};

/// One capture attempt as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The engine's capture id (unique).
    pub id: String,
    /// The merchant.
    pub merchant: String,
    /// The platform (connector) name.
    pub platform: String,
    /// The idempotency key (unique per merchant and platform).
    pub idempotency_key: String,
    /// What the key was first used for (see [`fingerprint`]).
    pub fingerprint: String,
    /// The platform's order id.
    pub order_id: String,
    /// The payments captured.
    pub payment_ids: Vec<String>,
    /// The amount asked for.
    pub amount: Money,
    /// Where the attempt is.
    pub state: AttemptState,
    /// The recorded failure is retryable and nothing was applied: a resend is safe. Only ever
    /// true in [`AttemptState::Failed`].
    pub resendable: bool,
    /// The platform's capture id, once known.
    pub platform_capture_id: Option<String>,
    /// The redacted request as recorded (JSON text).
    pub request: Option<String>,
    /// The response as recorded (JSON text).
    pub response: Option<String>,
    /// The canonical outcome (JSON text).
    pub outcome: Option<String>,
    /// How many times it was sent.
    pub sends: u32,
    /// When it was reserved (the engine's clock).
    pub created_at: Timestamp,
    /// When it last changed (the engine's clock).
    pub updated_at: Timestamp,
}

/// What [`CaptureStore::reserve`] records.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// The engine's capture id (unique).
    pub id: String,
    /// The merchant.
    pub merchant: String,
    /// The platform.
    pub platform: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// See [`fingerprint`].
    pub fingerprint: String,
    /// The order.
    pub order_id: String,
    /// The payments.
    pub payment_ids: Vec<String>,
    /// The amount to capture (positive, same currency as `bound`).
    pub amount: Money,
    /// The most the ledger may hold for this (merchant, platform, order): authorized (plus
    /// surcharge where allowed) minus captures made outside this ledger.
    pub bound: Money,
    /// The engine's clock.
    pub now: Timestamp,
}

/// The answer of [`CaptureStore::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// A new attempt, state Reserved.
    Reserved(Attempt),
    /// The key was used before with the same fingerprint: here is that attempt, unchanged.
    Existing(Attempt),
    /// The key was used before for something else (another order or amount).
    KeyConflict(Attempt),
    /// Reserving would make the amounts held for the order exceed the bound. `held` is what the
    /// order's attempts held before this reservation (the new amount not included).
    OverBound {
        /// Held by the order's attempts already.
        held: Money,
        /// The bound given.
        bound: Money,
    },
    /// Another attempt of the same order is in flight (reserved, sent or unknown): wait for it.
    /// Checked before the bound, since that attempt may still fail and free its amount.
    OrderBusy(Attempt),
}

/// What a transition records besides the state. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AttemptUpdate {
    /// For a move to Failed: whether a resend is safe. Any other move stores `false`.
    pub resendable: Option<bool>,
    /// The platform's capture id.
    pub platform_capture_id: Option<String>,
    /// The redacted request (JSON text).
    pub request: Option<String>,
    /// The response (JSON text).
    pub response: Option<String>,
    /// The canonical outcome (JSON text).
    pub outcome: Option<String>,
    /// Count one more send (`sends += 1`).
    pub count_send: bool,
}

/// The ledger. Both backends give the same answers; see the crate docs for how each enforces the
/// invariants.
#[async_trait::async_trait]
pub trait CaptureStore: Send + Sync + std::fmt::Debug {
    /// Atomically: the key is unique per (merchant, platform); the sum of amounts of attempts of the
    /// (merchant, platform, order) whose state holds_amount, plus the new amount, is <= bound; and no
    /// other attempt of the order is in flight. All checked and inserted in ONE transaction, safe
    /// against other tasks and other OS processes sharing the database.
    ///
    /// Order of the answers: a recorded key gives `Existing` or `KeyConflict`; then an id used by
    /// another key is [`StoreError::DuplicateId`]; then `OrderBusy`; then `OverBound`; else `Reserved`.
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError>;

    /// Compare-and-set: moves attempt `id` from its current state to `to` only if the current state is in `from`
    /// and transition_allowed(current, to); applies `update`; sets updated_at = now. Returns the new attempt.
    /// A state that does not match gives StoreError::StateConflict { id, expected, found } (another process moved it).
    ///
    /// A disallowed move (or Failed -> Sent on an attempt that is not `resendable`) gives
    /// [`StoreError::InvalidTransition`]; a resend that would break the bound or the in-flight
    /// rule gives [`StoreError::ResendRefused`]; an unknown id [`StoreError::NotFound`].
    async fn transition(
        &self,
        id: &str,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, StoreError>;

    /// The attempt with this id.
    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError>;

    /// The attempt recorded under this key.
    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError>;

    /// Attempts left in Reserved, Sent, Pending or Unknown, oldest first.
    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError>;

    /// All attempts of an order, oldest first.
    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError>;

    /// Every attempt (for reports and tests), oldest first.
    async fn all(&self) -> Result<Vec<Attempt>, StoreError>;

    /// The backend's name ("sqlite", "postgres").
    fn backend(&self) -> &'static str;
}

/// Opens what a configuration names: a `postgres://` or `postgresql://` URL -> PostgresStore,
/// anything else a SQLite file path (created if missing).
pub async fn open(target: &str) -> Result<Arc<dyn CaptureStore>, StoreError> {
    let trimmed = target.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(trimmed).await?));
    }
    if trimmed.is_empty() {
        return Err(StoreError::Open { target: String::new(), message: "no store path or URL given".into() });
    }
    let path = PathBuf::from(trimmed);
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
        .await
        .map_err(|e| StoreError::Open { target: trimmed.to_owned(), message: e.to_string() })??;
    Ok(Arc::new(store))
}

/// What an idempotency key is used for: `"sha256:"` and the hex SHA-256 of the platform, order,
/// currency, amount and the payments (sorted, so their order does not matter). Each field is
/// length-prefixed, so no two different inputs share an encoding.
pub fn fingerprint(platform: &str, order_id: &str, amount: &Money, payments: &[(String, Money)]) -> String {
    let mut sorted: Vec<(&str, String)> = payments
        .iter()
        .map(|(id, m)| (id.as_str(), format!("{} {}", m.to_decimal_string(), m.currency())))
        .collect();
    sorted.sort();
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"capture-store fingerprint v1");
    field(platform.as_bytes());
    field(order_id.as_bytes());
    field(amount.currency().code().as_bytes());
    field(amount.to_decimal_string().as_bytes());
    field(&(sorted.len() as u64).to_be_bytes());
    for (id, m) in &sorted {
        field(id.as_bytes());
        field(m.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.iter() {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use capture_core::Currency;

    use super::*;

    fn usd(text: &str) -> Money {
        Money::parse(text, Currency::from_code("USD").unwrap()).unwrap()
    }

    #[test]
    fn fingerprint_ignores_payment_order_and_sees_every_field() {
        let p = |id: &str, a: &str| (id.to_owned(), usd(a));
        let base = fingerprint("optty", "ord-1", &usd("30.00"), &[p("pay-1", "10.00"), p("pay-2", "20.00")]);
        assert!(base.starts_with("sha256:") && base.len() == 7 + 64, "{base}");
        assert_eq!(
            base,
            fingerprint("optty", "ord-1", &usd("30.00"), &[p("pay-2", "20.00"), p("pay-1", "10.00")])
        );
        // 30 and 30.00 are the same money.
        assert_eq!(base, fingerprint("optty", "ord-1", &usd("30"), &[p("pay-2", "20"), p("pay-1", "10")]));
        let others = [
            fingerprint("wix", "ord-1", &usd("30.00"), &[p("pay-1", "10.00"), p("pay-2", "20.00")]),
            fingerprint("optty", "ord-2", &usd("30.00"), &[p("pay-1", "10.00"), p("pay-2", "20.00")]),
            fingerprint("optty", "ord-1", &usd("30.01"), &[p("pay-1", "10.00"), p("pay-2", "20.00")]),
            fingerprint("optty", "ord-1", &usd("30.00"), &[p("pay-1", "20.00"), p("pay-2", "10.00")]),
            fingerprint("optty", "ord-1", &usd("30.00"), &[p("pay-1", "10.00")]),
            fingerprint("optty", "ord-", &usd("30.00"), &[p("1pay-1", "10.00"), p("pay-2", "20.00")]),
            fingerprint(
                "optty",
                "ord-1",
                &Money::parse("30.00", Currency::from_code("EUR").unwrap()).unwrap(),
                &[p("pay-1", "10.00"), p("pay-2", "20.00")],
            ),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&base, o, "variant {i}");
        }
    }
}
