//! Shared by the integration tests: fixtures for both backends and attempt builders.
#![allow(dead_code)]

use std::sync::Arc;

use capture_core::{Currency, Money, Timestamp};
use capture_store::testing::{NOT_INSTALLED, TempDir, throwaway_postgres};
use capture_store::{Attempt, AttemptState, AttemptUpdate, CaptureStore, NewAttempt, Reservation};

/// A store target (a SQLite file path or a PostgreSQL URL) and what keeps it alive.
#[derive(Debug)]
pub struct Fixture {
    pub target: String,
    _dir: Option<TempDir>,
}

impl Fixture {
    /// Opens the target through `capture_store::open`, as the engine does.
    pub async fn store(&self) -> Arc<dyn CaptureStore> {
        capture_store::open(&self.target).await.unwrap_or_else(|e| panic!("opening {}: {e}", self.target))
    }
}

/// A fresh SQLite file in its own temp dir.
pub async fn sqlite() -> Fixture {
    let dir = TempDir::new("sqlite").expect("temp dir");
    let target = dir.path().join("ledger.db").display().to_string();
    Fixture { target, _dir: Some(dir) }
}

/// A fresh database on the throwaway PostgreSQL server (or `CAPTURE_TEST_POSTGRES_URL`).
/// Fails (never skips) when PostgreSQL is not installed.
pub async fn postgres() -> Fixture {
    let url = throwaway_postgres().await.unwrap_or_else(|e| {
        if e == NOT_INSTALLED {
            panic!("{NOT_INSTALLED}");
        }
        panic!("starting a throwaway PostgreSQL: {e}")
    });
    Fixture { target: url, _dir: None }
}

pub fn cur(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

pub fn money(text: &str, code: &str) -> Money {
    Money::parse(text, cur(code)).unwrap()
}

pub const MERCHANT: &str = "m1";
pub const PLATFORM: &str = "optty";
pub const T0: u64 = 1_790_000_000_000;

/// An attempt of MERCHANT on PLATFORM with id `cap-<key>`, one payment `pay-<order>`.
pub fn attempt(key: &str, order: &str, amount: Money, bound: Money) -> NewAttempt {
    let payments = vec![(format!("pay-{order}"), amount)];
    NewAttempt {
        id: format!("cap-{key}"),
        merchant: MERCHANT.into(),
        platform: PLATFORM.into(),
        idempotency_key: key.into(),
        fingerprint: capture_store::fingerprint(PLATFORM, order, &amount, &payments),
        order_id: order.into(),
        payment_ids: payments.into_iter().map(|(id, _)| id).collect(),
        amount,
        bound,
        now: Timestamp(T0),
    }
}

/// Reserves and insists on `Reserved`.
pub async fn reserve_ok(store: &Arc<dyn CaptureStore>, new: &NewAttempt) -> Attempt {
    match store.reserve(new).await.unwrap() {
        Reservation::Reserved(a) => a,
        other => panic!("expected Reserved for {}, got {other:?}", new.idempotency_key),
    }
}

/// Moves an attempt along a path of states, one transition each.
pub async fn walk(store: &Arc<dyn CaptureStore>, id: &str, path: &[AttemptState]) -> Attempt {
    let mut current = store.get(id).await.unwrap().expect("attempt exists");
    for &to in path {
        let update = AttemptUpdate {
            count_send: to == AttemptState::Sent,
            resendable: (to == AttemptState::Failed).then_some(false),
            ..AttemptUpdate::default()
        };
        current = store
            .transition(id, &[current.state], to, update, Timestamp(T0 + 1))
            .await
            .unwrap_or_else(|e| panic!("{id}: {} -> {to}: {e}", current.state));
    }
    current
}

/// Sum of held amounts of an order, in minor units.
pub fn held_minor(attempts: &[Attempt]) -> i64 {
    attempts.iter().filter(|a| a.state.holds_amount()).map(|a| a.amount.to_minor().unwrap()).sum()
}
