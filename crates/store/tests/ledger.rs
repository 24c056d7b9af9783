//! The ledger's behaviour, written once and run on both backends (a SQLite file and a database on
//! a throwaway PostgreSQL server): reservations, replays, conflicts, bounds, the in-flight rule,
//! compare-and-set transitions, listings and exact amounts.

mod common;

use std::sync::Arc;

use capture_core::Timestamp;
use capture_store::{AttemptState, AttemptUpdate, CaptureStore, Reservation, StoreError};
use common::*;

use AttemptState::*;

async fn reserve_then_replay_returns_the_recorded_attempt(fx: &Fixture) {
    let store = fx.store().await;
    let new = attempt("k-replay", "ord-1", money("100.10", "USD"), money("100.10", "USD"));
    let a = reserve_ok(&store, &new).await;
    assert_eq!((a.state, a.sends, a.resendable), (Reserved, 0, false));
    assert_eq!((a.created_at, a.updated_at), (Timestamp(T0), Timestamp(T0)));
    assert_eq!(a.payment_ids, ["pay-ord-1"]);

    // The same request again: the same attempt, unchanged, nothing new recorded.
    let mut later = new.clone();
    later.now = Timestamp(T0 + 60_000);
    assert_eq!(store.reserve(&later).await.unwrap(), Reservation::Existing(a.clone()));

    // After it was captured, a replay returns the recorded outcome.
    let update = AttemptUpdate {
        outcome: Some(r#"{"status":"captured"}"#.into()),
        platform_capture_id: Some("pc-1".into()),
        ..Default::default()
    };
    walk(&store, &a.id, &[Sent]).await;
    let captured = store.transition(&a.id, &[Sent], Captured, update, Timestamp(T0 + 5)).await.unwrap();
    let Reservation::Existing(replayed) = store.reserve(&later).await.unwrap() else {
        panic!("expected Existing")
    };
    assert_eq!(replayed, captured);
    assert_eq!(replayed.outcome.as_deref(), Some(r#"{"status":"captured"}"#));
    assert_eq!(store.get(&a.id).await.unwrap(), Some(captured.clone()));
    assert_eq!(store.by_key(MERCHANT, PLATFORM, "k-replay").await.unwrap(), Some(captured));
    assert_eq!(store.all().await.unwrap().len(), 1);
}

async fn key_reused_for_something_else_conflicts(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let first = reserve_ok(&store, &attempt("k-1", "ord-1", usd("10.00"), usd("50.00"))).await;
    walk(&store, &first.id, &[Sent, Captured]).await;

    // Another amount, another order: refused, naming the attempt the key belongs to.
    for other in [
        attempt("k-1", "ord-1", usd("11.00"), usd("50.00")),
        attempt("k-1", "ord-2", usd("10.00"), usd("50.00")),
    ] {
        match store.reserve(&other).await.unwrap() {
            Reservation::KeyConflict(a) => {
                assert_eq!((a.id.as_str(), a.order_id.as_str(), a.state), ("cap-k-1", "ord-1", Captured))
            }
            r => panic!("expected KeyConflict, got {r:?}"),
        }
    }

    // Keys are per (merchant, platform): the same key elsewhere is a new attempt.
    let mut other_merchant = attempt("k-1", "ord-1", usd("10.00"), usd("50.00"));
    other_merchant.merchant = "m2".into();
    other_merchant.id = "cap-m2-k-1".into();
    reserve_ok(&store, &other_merchant).await;
    let mut other_platform = attempt("k-1", "ord-1", usd("10.00"), usd("50.00"));
    other_platform.platform = "wix".into();
    other_platform.id = "cap-wix-k-1".into();
    reserve_ok(&store, &other_platform).await;

    // An id already used by another key is refused, not overwritten.
    let mut dup = attempt("k-2", "ord-9", usd("1.00"), usd("50.00"));
    dup.id = first.id.clone();
    match store.reserve(&dup).await {
        Err(StoreError::DuplicateId { id, existing_key }) => {
            assert_eq!((id.as_str(), existing_key.as_str()), ("cap-k-1", "k-1"))
        }
        r => panic!("expected DuplicateId, got {r:?}"),
    }
    assert_eq!(store.all().await.unwrap().len(), 3);
}

async fn over_bound_is_refused_naming_held_and_bound(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let bound = usd("25.00");
    let a = reserve_ok(&store, &attempt("ob-a", "ord-1", usd("10.00"), bound)).await;
    walk(&store, &a.id, &[Sent, Captured]).await;
    let b = reserve_ok(&store, &attempt("ob-b", "ord-1", usd("10.00"), bound)).await;
    walk(&store, &b.id, &[Sent, Pending]).await;

    let refused = store.reserve(&attempt("ob-c", "ord-1", usd("5.01"), bound)).await.unwrap();
    assert_eq!(refused, Reservation::OverBound { held: usd("20.00"), bound });
    assert_eq!(store.by_key(MERCHANT, PLATFORM, "ob-c").await.unwrap(), None, "nothing recorded");

    // Exactly up to the bound is fine.
    let d = reserve_ok(&store, &attempt("ob-d", "ord-1", usd("5.00"), bound)).await;
    // A failure frees its amount.
    walk(&store, &d.id, &[Failed]).await;
    let e = reserve_ok(&store, &attempt("ob-e", "ord-1", usd("5.00"), bound)).await;
    walk(&store, &e.id, &[Sent, Captured]).await;
    assert_eq!(
        store.reserve(&attempt("ob-f", "ord-1", usd("0.01"), bound)).await.unwrap(),
        Reservation::OverBound { held: usd("25.00"), bound }
    );
    // An amount larger than the bound on a fresh order.
    assert_eq!(
        store.reserve(&attempt("ob-g", "ord-2", usd("30.00"), bound)).await.unwrap(),
        Reservation::OverBound { held: usd("0.00"), bound }
    );
    let order = store.order_attempts(MERCHANT, PLATFORM, "ord-1").await.unwrap();
    assert_eq!(held_minor(&order), 2500);
}

async fn order_busy_while_in_flight_then_released(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let bound = usd("100.00");
    // (path to an in-flight state, path to a final state from there)
    let cases: [(&[AttemptState], &[AttemptState]); 3] =
        [(&[], &[Failed]), (&[Sent], &[Captured]), (&[Sent, Unknown], &[AlreadyCaptured])];
    for (i, (to_flight, to_final)) in cases.iter().enumerate() {
        let order = format!("busy-{i}");
        let a = reserve_ok(&store, &attempt(&format!("busy-{i}-a"), &order, usd("10.00"), bound)).await;
        let a = if to_flight.is_empty() { a } else { walk(&store, &a.id, to_flight).await };
        assert!(a.state.in_flight());
        let b = attempt(&format!("busy-{i}-b"), &order, usd("10.00"), bound);
        match store.reserve(&b).await.unwrap() {
            Reservation::OrderBusy(blocking) => {
                assert_eq!((blocking.id, blocking.state), (a.id.clone(), a.state))
            }
            r => panic!("expected OrderBusy while {} is {}, got {r:?}", a.id, a.state),
        }
        // Another order is not blocked.
        reserve_ok(
            &store,
            &attempt(&format!("busy-{i}-other"), &format!("{order}-other"), usd("1.00"), bound),
        )
        .await;
        let a = walk(&store, &a.id, to_final).await;
        assert!(a.state.is_final());
        let b = reserve_ok(&store, &b).await;
        assert_eq!(b.state, Reserved);
    }
    // Pending holds the amount but does not block.
    let p = reserve_ok(&store, &attempt("busy-p-a", "busy-p", usd("10.00"), bound)).await;
    walk(&store, &p.id, &[Sent, Pending]).await;
    reserve_ok(&store, &attempt("busy-p-b", "busy-p", usd("10.00"), bound)).await;
}

async fn transitions_are_compare_and_set(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let a = reserve_ok(&store, &attempt("cas-a", "ord-1", usd("10.00"), usd("10.00"))).await;
    walk(&store, &a.id, &[Sent]).await;
    store
        .transition(&a.id, &[Sent, Unknown], Captured, AttemptUpdate::default(), Timestamp(T0 + 9))
        .await
        .unwrap();
    // A second process that also saw it Sent loses.
    match store.transition(&a.id, &[Sent], Failed, AttemptUpdate::default(), Timestamp(T0 + 9)).await {
        Err(StoreError::StateConflict { id, expected, found }) => {
            assert_eq!((id.as_str(), expected, found), ("cap-cas-a", vec![Sent], Captured))
        }
        r => panic!("expected StateConflict, got {r:?}"),
    }
    // An empty `from` never matches.
    assert!(matches!(
        store.transition(&a.id, &[], Captured, AttemptUpdate::default(), Timestamp(T0)).await,
        Err(StoreError::StateConflict { .. })
    ));

    // 16 tasks race the same Sent -> final move: exactly one wins.
    let b = reserve_ok(&store, &attempt("cas-b", "ord-2", usd("10.00"), usd("10.00"))).await;
    walk(&store, &b.id, &[Sent]).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let id = b.id.clone();
            tokio::spawn(async move {
                let to = [Captured, Failed, Unknown, Pending][i % 4];
                store.transition(&id, &[Sent], to, AttemptUpdate::default(), Timestamp(T0 + i as u64)).await
            })
        })
        .collect();
    let (mut won, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::StateConflict { found, .. }) => {
                assert_ne!(found, Sent);
                conflicts += 1
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    println!("[{}] CAS race: {won} won, {conflicts} StateConflict", store.backend());
    assert_eq!((won, conflicts), (1, 15));
}

async fn invalid_transitions_are_refused(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let a = reserve_ok(&store, &attempt("inv-a", "ord-1", usd("10.00"), usd("100.00"))).await;
    for to in [Captured, Pending, Unknown, AlreadyCaptured, Reserved] {
        match store.transition(&a.id, &[Reserved], to, AttemptUpdate::default(), Timestamp(T0)).await {
            Err(StoreError::InvalidTransition { id, from, to: t }) => {
                assert_eq!((id, from, t), (a.id.clone(), Reserved, to))
            }
            r => panic!("Reserved -> {to}: expected InvalidTransition, got {r:?}"),
        }
    }
    assert_eq!(store.get(&a.id).await.unwrap().unwrap().state, Reserved, "refusals change nothing");

    // A failure that is not resendable stays failed.
    walk(&store, &a.id, &[Sent, Failed]).await;
    assert!(matches!(
        store.transition(&a.id, &[Failed], Sent, AttemptUpdate::default(), Timestamp(T0)).await,
        Err(StoreError::InvalidTransition { from: Failed, to: Sent, .. })
    ));

    // A resendable one may be sent again (and counts the send).
    let b = reserve_ok(&store, &attempt("inv-b", "ord-2", usd("10.00"), usd("100.00"))).await;
    walk(&store, &b.id, &[Sent]).await;
    let failed = AttemptUpdate { resendable: Some(true), ..Default::default() };
    let b = store.transition(&b.id, &[Sent], Failed, failed, Timestamp(T0 + 1)).await.unwrap();
    assert!(b.resendable);
    let resend = AttemptUpdate { count_send: true, ..Default::default() };
    let b = store.transition(&b.id, &[Failed], Sent, resend, Timestamp(T0 + 2)).await.unwrap();
    assert_eq!((b.state, b.sends, b.resendable), (Sent, 2, false));

    // Final states have no way out.
    let b = walk(&store, &b.id, &[Captured]).await;
    for to in [Sent, Failed, Pending, Captured] {
        assert!(matches!(
            store.transition(&b.id, &[Captured], to, AttemptUpdate::default(), Timestamp(T0)).await,
            Err(StoreError::InvalidTransition { .. })
        ));
    }
    assert!(matches!(
        store.transition("cap-nope", &[Sent], Captured, AttemptUpdate::default(), Timestamp(T0)).await,
        Err(StoreError::NotFound(id)) if id == "cap-nope"
    ));
}

async fn resend_of_a_failure_rechecks_the_order(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let bound = usd("10.00");
    let retryable = || AttemptUpdate { resendable: Some(true), ..Default::default() };
    let a = reserve_ok(&store, &attempt("rs-a", "ord-1", usd("10.00"), bound)).await;
    walk(&store, &a.id, &[Sent]).await;
    store.transition(&a.id, &[Sent], Failed, retryable(), Timestamp(T0)).await.unwrap();

    // While A is failed another attempt takes the order: A may not go back into flight.
    let b = reserve_ok(&store, &attempt("rs-b", "ord-1", usd("10.00"), bound)).await;
    match store.transition(&a.id, &[Failed], Sent, AttemptUpdate::default(), Timestamp(T0)).await {
        Err(StoreError::ResendRefused { id, reason }) => {
            assert_eq!(id, a.id);
            assert!(reason.contains("cap-rs-b") && reason.contains("reserved"), "{reason}");
        }
        r => panic!("expected ResendRefused (in flight), got {r:?}"),
    }
    // B captured the whole bound: still refused, now for the amount.
    walk(&store, &b.id, &[Sent, Captured]).await;
    match store.transition(&a.id, &[Failed], Sent, AttemptUpdate::default(), Timestamp(T0)).await {
        Err(StoreError::ResendRefused { reason, .. }) => {
            assert!(reason.contains("bound 10.00 USD"), "{reason}")
        }
        r => panic!("expected ResendRefused (bound), got {r:?}"),
    }
    assert_eq!(store.get(&a.id).await.unwrap().unwrap().state, Failed);
    assert_eq!(held_minor(&store.order_attempts(MERCHANT, PLATFORM, "ord-1").await.unwrap()), 1000);
}

async fn unresolved_lists_exactly_the_open_states_oldest_first(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let paths: [(AttemptState, &[AttemptState]); 7] = [
        (Reserved, &[]),
        (Sent, &[Sent]),
        (Captured, &[Sent, Captured]),
        (Pending, &[Sent, Pending]),
        (Failed, &[Sent, Failed]),
        (Unknown, &[Sent, Unknown]),
        (AlreadyCaptured, &[Sent, AlreadyCaptured]),
    ];
    // Created newest first, so "oldest first" is not the insertion order.
    for (i, (state, path)) in paths.iter().enumerate() {
        let mut new = attempt(&format!("un-{state}"), &format!("ord-{state}"), usd("1.00"), usd("1.00"));
        new.now = Timestamp(T0 + 1000 - i as u64);
        let a = reserve_ok(&store, &new).await;
        assert_eq!(walk(&store, &a.id, path).await.state, *state);
    }
    let open: Vec<(AttemptState, Timestamp)> =
        store.unresolved().await.unwrap().into_iter().map(|a| (a.state, a.created_at)).collect();
    assert_eq!(
        open,
        [
            (Unknown, Timestamp(T0 + 995)),
            (Pending, Timestamp(T0 + 997)),
            (Sent, Timestamp(T0 + 999)),
            (Reserved, Timestamp(T0 + 1000)),
        ]
    );
    let all: Vec<AttemptState> = store.all().await.unwrap().into_iter().map(|a| a.state).collect();
    assert_eq!(all, [AlreadyCaptured, Unknown, Failed, Pending, Captured, Sent, Reserved]);
}

async fn amounts_are_exact_in_usd_jpy_and_kwd(fx: &Fixture) {
    let store = fx.store().await;
    // 0.10 + 0.20 == 0.30 exactly (in floats it is not).
    let bound = money("0.30", "USD");
    reserve_ok(&store, &attempt("ex-usd-1", "usd", money("0.10", "USD"), bound)).await;
    walk(&store, "cap-ex-usd-1", &[Sent, Captured]).await;
    let b = reserve_ok(&store, &attempt("ex-usd-2", "usd", money("0.20", "USD"), bound)).await;
    assert_eq!(b.amount.to_decimal_string(), "0.20");
    walk(&store, &b.id, &[Sent, Captured]).await;
    assert_eq!(
        store.reserve(&attempt("ex-usd-3", "usd", money("0.01", "USD"), bound)).await.unwrap(),
        Reservation::OverBound { held: money("0.30", "USD"), bound }
    );

    let jpy = reserve_ok(&store, &attempt("ex-jpy", "jpy", money("1500", "JPY"), money("1500", "JPY"))).await;
    walk(&store, &jpy.id, &[Sent, Captured]).await;
    assert_eq!(
        store.reserve(&attempt("ex-jpy-2", "jpy", money("1", "JPY"), money("1500", "JPY"))).await.unwrap(),
        Reservation::OverBound { held: money("1500", "JPY"), bound: money("1500", "JPY") }
    );

    let kwd_bound = money("3.750", "KWD");
    for i in 0..3 {
        let a = reserve_ok(&store, &attempt(&format!("ex-kwd-{i}"), "kwd", money("1.250", "KWD"), kwd_bound))
            .await;
        walk(&store, &a.id, &[Sent, Captured]).await;
    }
    assert_eq!(
        store.reserve(&attempt("ex-kwd-3", "kwd", money("0.001", "KWD"), kwd_bound)).await.unwrap(),
        Reservation::OverBound { held: money("3.750", "KWD"), bound: kwd_bound }
    );

    // Read back: the same Money, the currency's own decimal places.
    let got: Vec<String> = store.all().await.unwrap().iter().map(|a| a.amount.to_string()).collect();
    assert_eq!(got, ["0.10 USD", "0.20 USD", "1500 JPY", "1.250 KWD", "1.250 KWD", "1.250 KWD"]);

    // Malformed attempts are refused before anything is written.
    let mismatch = attempt("ex-bad-1", "bad", money("1.00", "USD"), money("1.00", "EUR"));
    assert!(matches!(store.reserve(&mismatch).await, Err(StoreError::InvalidInput { .. })));
    let zero = attempt("ex-bad-2", "bad", money("0.00", "USD"), money("1.00", "USD"));
    assert!(matches!(store.reserve(&zero).await, Err(StoreError::InvalidInput { .. })));
    let other_currency = attempt("ex-bad-3", "usd", money("0.01", "EUR"), money("9.00", "EUR"));
    match store.reserve(&other_currency).await {
        Err(e @ StoreError::InvalidInput { .. }) => {
            assert!(e.to_string().contains("in USD, this one is in EUR"), "{e}")
        }
        r => panic!("expected InvalidInput, got {r:?}"),
    }
    assert_eq!(store.all().await.unwrap().len(), 6);
}

async fn updates_are_recorded(fx: &Fixture) {
    let store = fx.store().await;
    let a = reserve_ok(&store, &attempt("up-a", "ord-1", money("10.00", "USD"), money("10.00", "USD"))).await;
    let sent = AttemptUpdate {
        request: Some(r#"{"url":"https://x/capture","authorization":"[redacted]"}"#.into()),
        count_send: true,
        ..Default::default()
    };
    let s = store.transition(&a.id, &[Reserved], Sent, sent, Timestamp(T0 + 10)).await.unwrap();
    assert_eq!((s.sends, s.updated_at, s.created_at), (1, Timestamp(T0 + 10), Timestamp(T0)));
    let unknown = AttemptUpdate { response: Some(r#"{"status":503}"#.into()), ..Default::default() };
    store.transition(&a.id, &[Sent], Unknown, unknown, Timestamp(T0 + 20)).await.unwrap();
    let resent = AttemptUpdate { count_send: true, ..Default::default() };
    store.transition(&a.id, &[Unknown], Sent, resent, Timestamp(T0 + 30)).await.unwrap();
    let done = AttemptUpdate {
        platform_capture_id: Some("pc-77".into()),
        response: Some(r#"{"status":200}"#.into()),
        outcome: Some(r#"{"status":"captured","amount":{"amount":"10.00","currency":"USD"}}"#.into()),
        resendable: Some(true), // meaningless outside Failed: stored as false
        ..Default::default()
    };
    let c = store.transition(&a.id, &[Sent], Captured, done, Timestamp(T0 + 40)).await.unwrap();
    let stored = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(stored, c);
    assert_eq!(
        stored.request.as_deref(),
        Some(r#"{"url":"https://x/capture","authorization":"[redacted]"}"#)
    );
    assert_eq!(stored.response.as_deref(), Some(r#"{"status":200}"#));
    assert_eq!(stored.platform_capture_id.as_deref(), Some("pc-77"));
    assert!(stored.outcome.as_deref().unwrap().contains("captured"));
    assert_eq!(
        (stored.state, stored.sends, stored.resendable, stored.updated_at),
        (Captured, 2, false, Timestamp(T0 + 40))
    );
}

async fn listings_and_reopening(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    for (i, key) in ["l-1", "l-2", "l-3"].iter().enumerate() {
        let mut new = attempt(key, "ord-1", usd("1.00"), usd("10.00"));
        new.now = Timestamp(T0 + i as u64);
        let a = reserve_ok(&store, &new).await;
        walk(&store, &a.id, &[Sent, Captured]).await;
    }
    reserve_ok(&store, &attempt("l-x", "ord-2", usd("1.00"), usd("10.00"))).await;
    let keys = |v: Vec<capture_store::Attempt>| v.into_iter().map(|a| a.idempotency_key).collect::<Vec<_>>();
    assert_eq!(keys(store.order_attempts(MERCHANT, PLATFORM, "ord-1").await.unwrap()), ["l-1", "l-2", "l-3"]);
    assert!(store.order_attempts("m2", PLATFORM, "ord-1").await.unwrap().is_empty());
    assert_eq!(store.by_key(MERCHANT, PLATFORM, "l-none").await.unwrap(), None);
    assert_eq!(store.get("cap-none").await.unwrap(), None);
    let before = store.all().await.unwrap();
    drop(store);

    // A new process (a new store on the same target) sees everything, and the rules still hold.
    let again = fx.store().await;
    assert_eq!(again.all().await.unwrap(), before);
    assert!(matches!(
        again.reserve(&attempt("l-y", "ord-2", usd("1.00"), usd("10.00"))).await.unwrap(),
        Reservation::OrderBusy(a) if a.idempotency_key == "l-x"
    ));
    println!("[{}] {} attempts survived reopening", again.backend(), before.len());
}

macro_rules! backend_tests {
    ($backend:ident, $fixture:path, $name_in_store:literal) => {
        mod $backend {
            use super::*;

            backend_tests!(@each $fixture, $name_in_store,
                reserve_then_replay_returns_the_recorded_attempt,
                key_reused_for_something_else_conflicts,
                over_bound_is_refused_naming_held_and_bound,
                order_busy_while_in_flight_then_released,
                transitions_are_compare_and_set,
                invalid_transitions_are_refused,
                resend_of_a_failure_rechecks_the_order,
                unresolved_lists_exactly_the_open_states_oldest_first,
                amounts_are_exact_in_usd_jpy_and_kwd,
                updates_are_recorded,
                listings_and_reopening,
            );
        }
    };
    (@each $fixture:path, $name_in_store:literal, $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fx = $fixture().await;
                assert_eq!(fx.store().await.backend(), $name_in_store);
                super::$name(&fx).await;
            }
        )*
    };
}

backend_tests!(sqlite, common::sqlite, "sqlite");
backend_tests!(postgres, common::postgres, "postgres");

#[tokio::test]
async fn sqlite_in_memory_works_too() {
    let store: Arc<dyn CaptureStore> = Arc::new(capture_store::SqliteStore::in_memory().unwrap());
    let a = reserve_ok(&store, &attempt("mem-1", "ord-1", money("5.00", "EUR"), money("5.00", "EUR"))).await;
    walk(&store, &a.id, &[Sent, Captured]).await;
    assert_eq!(store.all().await.unwrap().len(), 1);
    assert!(store.unresolved().await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_file_is_in_wal_mode() {
    let fx = common::sqlite().await;
    let _store = fx.store().await;
    let conn = rusqlite::Connection::open(&fx.target).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn.query_row("SELECT version FROM capture_store_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 1);
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema() {
    let fx = common::sqlite().await;
    drop(fx.store().await);
    rusqlite::Connection::open(&fx.target)
        .unwrap()
        .execute("UPDATE capture_store_schema SET version = 99", [])
        .unwrap();
    match capture_store::open(&fx.target).await {
        Err(e @ StoreError::Open { .. }) => assert!(e.to_string().contains("schema version 99"), "{e}"),
        r => panic!("expected Open error, got {r:?}"),
    }
}

#[tokio::test]
async fn postgres_refuses_a_newer_schema() {
    let fx = common::postgres().await;
    drop(fx.store().await);
    let (client, conn) = tokio_postgres::connect(&fx.target, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.execute("UPDATE capture_store_schema SET version = 99", &[]).await.unwrap();
    match capture_store::open(&fx.target).await {
        Err(e @ StoreError::Open { .. }) => assert!(e.to_string().contains("schema version 99"), "{e}"),
        r => panic!("expected Open error, got {r:?}"),
    }
}

#[tokio::test]
async fn postgres_errors_never_show_the_password() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    for url in [
        "postgres://capture:hunter2-secret@127.0.0.1:1/ledger",
        "postgresql://capture:hunter2-secret@127.0.0.1:1/ledger?connect_timeout=2",
        "postgres://127.0.0.1:1/ledger?user=capture&password=hunter2-secret",
    ] {
        let err = capture_store::open(url).await.expect_err("nothing listens on port 1");
        let text = format!("{err} / {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
        println!("refused as expected: {err}");
    }
    // Debug of a live store shows the URL redacted.
    // (The throwaway server trusts loopback, so any password is accepted; an external server from
    // CAPTURE_TEST_POSTGRES_URL brings its own URL, possibly with a password, which must not show.)
    let fx = common::postgres().await;
    let (url, secret) = match std::env::var(capture_store::testing::POSTGRES_URL_ENV) {
        Ok(_) => {
            let (_, rest) = fx.target.split_once("://").unwrap();
            let userinfo = &rest[..rest.rfind('@').unwrap_or(0)];
            (fx.target.clone(), userinfo.split_once(':').map(|(_, p)| p.to_owned()))
        }
        Err(_) => (
            fx.target.replacen("postgres@", "postgres:trust-ignores-this@", 1),
            Some("trust-ignores-this".into()),
        ),
    };
    let store = capture_store::open(&url).await.unwrap();
    let debug = format!("{store:?}");
    if let Some(secret) = secret {
        assert!(!debug.contains(&secret) && debug.contains("***"), "{debug}");
    }
    println!("{debug}");
}
