//! Shared by the integration tests: fixtures for both backends (and PostgreSQL with SERIALIZABLE
//! as every transaction's default isolation), attempt builders and the order-sum check.
#![allow(dead_code)]

use std::sync::Arc;

use capture_core::{Currency, Money, Timestamp};
use capture_store::testing::{NOT_INSTALLED, TempDir, throwaway_postgres};
use capture_store::{
    Attempt, AttemptState, AttemptUpdate, Authorization, CaptureStore, Fence, LeaseGrant, NewAttempt,
    Reservation,
};

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

/// A fresh database whose default transaction isolation is SERIALIZABLE (`ALTER DATABASE … SET
/// default_transaction_isolation`): every transaction of the store runs serializable, so lost
/// races show up as serialization failures (40001) the store must retry. Checked on a new
/// connection before it is handed out.
pub async fn postgres_serializable() -> Fixture {
    let fx = postgres().await;
    let db = fx.target.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    // Set while connected to it: it applies to every session opened afterwards.
    let (client, conn) = tokio_postgres::connect(&fx.target, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("ALTER DATABASE {db} SET default_transaction_isolation = 'serializable'"))
        .await
        .unwrap();
    drop(client);
    let (client, conn) = tokio_postgres::connect(&fx.target, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let level: String = client.query_one("SHOW transaction_isolation", &[]).await.unwrap().get(0);
    assert_eq!(level, "serializable", "{db}");
    fx
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
/// The engine instance the tests reserve as.
pub const OWNER: &str = "engine-a";
/// How long the tests' leases last.
pub const LEASE_MS: u64 = 30_000;

/// The authorization of `order` in the tests: one payment `pay-<order>` of `total`.
pub fn authorization(order: &str, total: Money) -> Authorization {
    Authorization::from_payments(vec![(format!("pay-{order}"), total)], total.currency())
}

/// An attempt of MERCHANT on PLATFORM with id `cap-<key>`, one payment `pay-<order>` authorized
/// for `bound` (nothing captured elsewhere, so `bound` is the order's bound), reserved by OWNER.
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
        authorization: authorization(order, bound),
        external: Money::zero(bound.currency()),
        owner: OWNER.into(),
        lease_ms: LEASE_MS,
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

/// The fence of an attempt's current holder.
pub fn fence(a: &Attempt) -> Fence {
    a.fence().unwrap_or_else(|| panic!("{} ({}) has no lease holder", a.id, a.state))
}

/// The fence to write `id` with: its holder's, or (nobody holds it: pending, a resendable
/// failure) a lease taken now by OWNER.
pub async fn fence_for(store: &Arc<dyn CaptureStore>, id: &str, now: Timestamp) -> Fence {
    let a = store.get(id).await.unwrap().expect("attempt exists");
    if let Some(f) = a.fence() {
        return f;
    }
    match store.take_lease(id, OWNER, LEASE_MS, None, now).await.unwrap() {
        LeaseGrant::Granted(a) => fence(&a),
        other => panic!("{id}: expected a lease, got {other:?}"),
    }
}

/// Moves an attempt along a path of states, one transition each, under its lease.
pub async fn walk(store: &Arc<dyn CaptureStore>, id: &str, path: &[AttemptState]) -> Attempt {
    let mut current = store.get(id).await.unwrap().expect("attempt exists");
    for &to in path {
        let update = AttemptUpdate {
            count_send: to == AttemptState::Sent,
            resendable: (to == AttemptState::Failed).then_some(false),
            ..AttemptUpdate::default()
        };
        let f = fence_for(store, id, Timestamp(T0 + 1)).await;
        current = store
            .transition(id, &f, &[current.state], to, update, Timestamp(T0 + 1))
            .await
            .unwrap_or_else(|e| panic!("{id}: {} -> {to}: {e}", current.state));
    }
    current
}

/// Sum of [`Attempt::held`] of some attempts, in minor units.
pub fn held_minor(attempts: &[Attempt]) -> i64 {
    attempts.iter().map(|a| a.held().to_minor().unwrap()).sum()
}

/// The order row agrees with its attempts: `held` is Σ `held()`, `in_flight` names the one
/// attempt in flight (or none), and there is at most one. Returns the row's held, minor units.
pub async fn check_sums(store: &Arc<dyn CaptureStore>, merchant: &str, platform: &str, order: &str) -> i64 {
    let attempts = store.order_attempts(merchant, platform, order).await.unwrap();
    let Some(row) = store.order(merchant, platform, order).await.unwrap() else {
        assert!(attempts.is_empty(), "{order}: attempts but no order row");
        return 0;
    };
    let held = row.held.to_minor().unwrap();
    assert_eq!(held, held_minor(&attempts), "{order}: order row held vs Σ held() of {attempts:?}");
    let flying: Vec<&str> = attempts.iter().filter(|a| a.state.in_flight()).map(|a| a.id.as_str()).collect();
    assert!(flying.len() <= 1, "{order}: several in flight: {flying:?}");
    assert_eq!(row.in_flight.as_deref(), flying.first().copied(), "{order}: in_flight");
    held
}
