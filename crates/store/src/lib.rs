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
//! use capture_store::{
//!     AttemptState, AttemptUpdate, Authorization, CaptureStore, LeaseGrant, NewAttempt, Reservation, SqliteStore,
//! };
//!
//! let store = SqliteStore::in_memory()?; // or capture_store::open("ledger.db" / "postgres://…")
//! let usd = Currency::from_code("USD").unwrap();
//! let amount = Money::parse("100.10", usd).unwrap();
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
//!     // The order's authorization as the platform's snapshot states it: the first one is recorded.
//!     authorization: Authorization::from_payments(payments.clone(), usd),
//!     external: Money::zero(usd), // captured outside this ledger
//!     owner: "engine-1".into(),   // this engine instance holds the attempt's lease
//!     lease_ms: 30_000,
//!     now: Timestamp(1_790_000_000_000),
//! };
//! let Reservation::Reserved(a) = store.reserve(&new).await? else { unreachable!() };
//! // Every write presents the lease's fence (owner and token).
//! let fence = a.fence().unwrap();
//! let send = AttemptUpdate { count_send: true, ..Default::default() };
//! store.transition(&a.id, &fence, &[AttemptState::Reserved], AttemptState::Sent, send, new.now).await?;
//! // The platform timed out: unknown until its state has been read.
//! store.transition(&a.id, &fence, &[AttemptState::Sent], AttemptState::Unknown, Default::default(), new.now).await?;
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
//! // Another instance may take the attempt over once the lease has expired; the first one's
//! // fence is then refused (`StoreError::LeaseLost`).
//! let later = Timestamp(new.now.0 + 30_000);
//! let LeaseGrant::Granted(taken) = store.take_lease(&a.id, "janitor", 30_000, None, later).await? else {
//!     unreachable!()
//! };
//! assert_eq!(taken.lease.token, 2);
//! let stale = store.transition(&a.id, &fence, &[AttemptState::Unknown], AttemptState::Captured, Default::default(), later);
//! assert!(matches!(stale.await, Err(capture_store::StoreError::LeaseLost { .. })));
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
//! | the order's first authorization is kept; a disagreeing snapshot is refused | the order row (`capture_orders`) is written by the first reservation and compared by every later one, inside `BEGIN IMMEDIATE` | the order row is created with `INSERT … ON CONFLICT DO NOTHING` and locked with `SELECT … FOR UPDATE` |
//! | Σ held amounts of an order ≤ its bound (authorization − external captures, the largest seen) | the order row keeps the running held sum; read and written with the attempt in one `BEGIN IMMEDIATE` transaction: SQLite's single writer lock serializes every writer, in this process and in others sharing the file | the order row's lock (no advisory lock): every writer of the same (merchant, platform, order) is serialized across processes; READ COMMITTED statements taken after the lock see every earlier commit, and under REPEATABLE READ or SERIALIZABLE a lost race is a serialization failure that is retried |
//! | at most one attempt of an order in flight | the order row names it, same transaction as the bound | same transaction and lock |
//! | only the lease holder writes an attempt | every transition compares the caller's [`Fence`] with the attempt's lease inside the transaction ([`StoreError::LeaseLost`]); [`CaptureStore::take_lease`] grows the token | same, the attempt row locked `FOR UPDATE` |
//! | a state moves only along the machine, once | compare-and-set: the row is re-read inside `BEGIN IMMEDIATE`, its state checked against `from` and [`transition_allowed`] | compare-and-set: `SELECT … FOR UPDATE` on the row, then on the order row, inside a transaction |
//! | a resend (Failed → Sent) respects the bound and the in-flight rule | re-checked against the order row, in the same transaction | the same, under the order row's lock |
//! | amounts are exact | integer minor units (`BIGINT`) plus the currency code; no float anywhere | same |
//!
//! Serialization failures, deadlocks and unique violations on PostgreSQL are retried a few times
//! (reads too: under SERIALIZABLE even a lone SELECT can fail with one);
//! SQLite waits up to 10 s for another process's write lock (a busy handler polling every millisecond,
//! so that a waiting process gets its turn rather than backing off while another keeps writing).
//!
//! # Schema
//!
//! Version 2: two tables, `capture_orders` (one row per merchant, platform and order: the
//! authorization, external captures, the held sum and the attempt in flight) and
//! `capture_attempts` (each with its lease: owner, token, taken at, until), created on open
//! (`CREATE TABLE IF NOT EXISTS`), plus `capture_store_schema(version)`: a store written by another
//! schema version (a newer one, or version 1 without order rows and leases) is refused.
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

/// Who may write an attempt in flight: the holder of its lease. Every grant increases `token`
/// (a fencing token), so a holder whose lease was taken over is refused by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder (an engine instance's owner id), `None` when nobody holds it (final and
    /// pending attempts).
    pub owner: Option<String>,
    /// The fencing token of the current (or last) grant; starts at 1 when reserved.
    pub token: u64,
    /// When the lease was granted or last renewed (the granter's clock).
    pub taken_at: Timestamp,
    /// When it expires (the granter's clock).
    pub until: Timestamp,
}

/// What a writer presents with every transition: its owner id and the token it was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The owner id the lease was granted to.
    pub owner: String,
    /// The token it was granted.
    pub token: u64,
}

impl Attempt {
    /// The fence of the lease as recorded (for the holder that was just granted it).
    pub fn fence(&self) -> Option<Fence> {
        self.lease.owner.as_ref().map(|owner| Fence { owner: owner.clone(), token: self.lease.token })
    }

    /// What this attempt counts against its order's bound: nothing when it certainly captured
    /// nothing (`Failed`), otherwise the larger of the amount asked for and the amount the
    /// platform reported (an over-report counts in full).
    pub fn held(&self) -> Money {
        if !self.state.holds_amount() {
            return Money::zero(self.amount.currency());
        }
        match self.captured {
            Some(c) if c > self.amount => c,
            _ => self.amount,
        }
    }
}

/// An order's authorization as the first request for it stated it: the ledger keeps it, and a
/// later request whose snapshot disagrees is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The authorized total (the sum of the payments).
    pub total: Money,
    /// Each payment's authorized amount, sorted by payment id.
    pub payments: Vec<(String, Money)>,
}

impl Authorization {
    /// An authorization from its payments (sorted here; the total is their sum).
    pub fn from_payments(
        mut payments: Vec<(String, Money)>,
        currency: capture_core::Currency,
    ) -> Authorization {
        payments.sort_by(|a, b| a.0.cmp(&b.0));
        let total = payments
            .iter()
            .try_fold(Money::zero(currency), |acc, (_, m)| acc.checked_add(*m))
            .unwrap_or(Money::zero(currency));
        Authorization { total, payments }
    }
}

impl std::fmt::Display for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.total)?;
        if !self.payments.is_empty() {
            f.write_str(" (")?;
            for (i, (id, m)) in self.payments.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{id} {m}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// An order as the ledger keeps it: the authorization recorded first, the captures made outside
/// the ledger, and the running sums every reservation and transition keeps up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    /// The merchant.
    pub merchant: String,
    /// The platform.
    pub platform: String,
    /// The platform's order id.
    pub order_id: String,
    /// The authorization recorded by the first request.
    pub authorization: Authorization,
    /// Captures the snapshots listed that this ledger did not make (the largest sum seen).
    pub external: Money,
    /// Σ [`Attempt::held`] over the order's attempts.
    pub held: Money,
    /// The attempt in flight (reserved, sent or unknown), if any.
    pub in_flight: Option<String>,
}

impl OrderRecord {
    /// The most the ledger may hold: the authorization minus the captures made elsewhere.
    pub fn bound(&self) -> Money {
        let b = self.authorization.total.checked_sub(self.external).unwrap_or(self.authorization.total);
        if b.is_negative() { Money::zero(b.currency()) } else { b }
    }
}

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
    /// The amount the platform reported captured, when it differs from `amount`.
    pub captured: Option<Money>,
    /// Something about the outcome the host must look at (`amount_mismatch`).
    pub anomaly: Option<String>,
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
    /// When it was last marked sent (the sender's clock).
    pub last_sent_at: Option<Timestamp>,
    /// Who may write it while it is in flight.
    pub lease: Lease,
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
    /// The amount to capture (positive, same currency as the authorization).
    pub amount: Money,
    /// The order's authorization as this request's snapshot states it. The first reservation of
    /// an order records it; later ones must agree.
    pub authorization: Authorization,
    /// Captures the snapshot lists that this ledger did not make.
    pub external: Money,
    /// The reserving engine instance: it holds the attempt's lease (token 1).
    pub owner: String,
    /// How long the lease lasts, in milliseconds of the engine's clock.
    pub lease_ms: u64,
    /// The engine's clock.
    pub now: Timestamp,
}

/// The answer of [`CaptureStore::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// A new attempt, state Reserved, its lease held by the reserving owner.
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
        /// The bound: the recorded authorization minus captures made elsewhere.
        bound: Money,
    },
    /// Another attempt of the same order is in flight (reserved, sent or unknown): wait for it.
    /// Checked before the bound, since that attempt may still fail and free its amount.
    OrderBusy(Attempt),
    /// The snapshot's authorization is not the one the ledger recorded for the order.
    AuthorizationMismatch {
        /// What the first request recorded.
        recorded: Authorization,
        /// What this request states.
        given: Authorization,
    },
}

/// The answer of [`CaptureStore::take_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseGrant {
    /// The lease is the caller's: the attempt with its new token.
    Granted(Attempt),
    /// Someone else holds it until `until`. `clamped`: the recorded expiry lay further ahead than
    /// any lease can last (a clock ahead of this one), and was brought back to `until`.
    Held {
        /// The holder.
        owner: Option<String>,
        /// When it frees up (this caller's clock).
        until: Timestamp,
        /// The recorded expiry was clamped.
        clamped: bool,
    },
    /// The attempt is final (or pending with nobody able to hold it): nothing to lease.
    Final(Attempt),
}

/// What a transition records besides the state. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AttemptUpdate {
    /// For a move to Failed: whether a resend is safe. Any other move stores `false`.
    pub resendable: Option<bool>,
    /// The amount the platform reported, when it differs from the amount asked for.
    pub captured: Option<Money>,
    /// An anomaly to record (`amount_mismatch`).
    pub anomaly: Option<String>,
    /// The platform's capture id.
    pub platform_capture_id: Option<String>,
    /// The redacted request (JSON text).
    pub request: Option<String>,
    /// The response (JSON text).
    pub response: Option<String>,
    /// The canonical outcome (JSON text).
    pub outcome: Option<String>,
    /// Count one more send (`sends += 1`, `last_sent_at = now`).
    pub count_send: bool,
    /// Renew the holder's lease until this time (same token).
    pub renew_until: Option<Timestamp>,
}

/// The ledger. Both backends give the same answers; see the crate docs for how each enforces the
/// invariants.
#[async_trait::async_trait]
pub trait CaptureStore: Send + Sync + std::fmt::Debug {
    /// Atomically, in one transaction on the order's row: the key is unique per (merchant,
    /// platform); the order's authorization is the recorded one (or is recorded now); no other
    /// attempt of the order is in flight; the order's held sum plus the new amount is within its
    /// bound. Then the attempt is inserted, its lease granted to `new.owner` (token 1), and the
    /// order's sums updated.
    ///
    /// Order of the answers: a recorded key gives `Existing` or `KeyConflict`; then an id used by
    /// another key is [`StoreError::DuplicateId`]; then `AuthorizationMismatch`; then
    /// `OrderBusy`; then `OverBound`; else `Reserved`.
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError>;

    /// Compare-and-set under a lease: moves attempt `id` to `to` only if the caller's `fence`
    /// matches the attempt's lease (else [`StoreError::LeaseLost`]), its current state is in
    /// `from` (else [`StoreError::StateConflict`]) and the move is allowed (else
    /// [`StoreError::InvalidTransition`]); applies `update`, keeps the order's sums, sets
    /// updated_at = now. A move out of flight releases the lease. A resend (Failed -> Sent) that
    /// would break the bound or the in-flight rule gives [`StoreError::ResendRefused`].
    async fn transition(
        &self,
        id: &str,
        fence: &Fence,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, StoreError>;

    /// Takes the lease of a non-final attempt for `owner` until `now + lease_ms` (the token
    /// grows by one) if nobody holds it, it expired, or it was taken at least `min_age_ms` ago
    /// (an operator's override). A recorded expiry more than `lease_ms` ahead of `now` is
    /// clamped to `now + lease_ms` (see the crate docs: clock skew).
    async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<LeaseGrant, StoreError>;

    /// The attempt with this id.
    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError>;

    /// The attempt recorded under this key.
    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError>;

    /// The order's record, if any attempt was ever reserved for it.
    async fn order(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError>;

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
