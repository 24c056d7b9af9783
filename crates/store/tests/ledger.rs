//! The ledger's behaviour, written once and run on both backends (a SQLite file and a database on
//! a throwaway PostgreSQL server): reservations, replays, conflicts, bounds, the in-flight rule,
//! compare-and-set transitions under leases, listings and exact amounts; then the rules of the
//! order row: the first authorization wins, external captures only shrink the bound, leases and
//! their fencing tokens, the clamp of a lease stamped in the future, what AlreadyCaptured and an
//! over-capture hold, and the order's sums after every operation. The PostgreSQL tests run twice:
//! with the server's default isolation and with SERIALIZABLE as every transaction's default.

mod common;

use std::sync::Arc;

use capture_core::Timestamp;
use capture_store::{
    AttemptState, AttemptUpdate, Authorization, CaptureStore, Fence, LeaseGrant, Reservation, StoreError,
};
use common::*;

use AttemptState::*;

async fn reserve_then_replay_returns_the_recorded_attempt(fx: &Fixture) {
    let store = fx.store().await;
    let new = attempt("k-replay", "ord-1", money("100.10", "USD"), money("100.10", "USD"));
    let a = reserve_ok(&store, &new).await;
    assert_eq!((a.state, a.sends, a.resendable), (Reserved, 0, false));
    assert_eq!((a.created_at, a.updated_at), (Timestamp(T0), Timestamp(T0)));
    assert_eq!(a.payment_ids, ["pay-ord-1"]);
    assert_eq!(
        a.lease,
        capture_store::Lease {
            owner: Some(OWNER.into()),
            token: 1,
            taken_at: Timestamp(T0),
            until: Timestamp(T0 + LEASE_MS)
        }
    );
    assert_eq!((a.captured, a.anomaly.as_deref(), a.last_sent_at), (None, None, None));

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
    let captured =
        store.transition(&a.id, &fence(&a), &[Sent], Captured, update, Timestamp(T0 + 5)).await.unwrap();
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
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-1").await, 2500);
    assert_eq!(store.order(MERCHANT, PLATFORM, "ord-2").await.unwrap(), None, "a refusal records no order");
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
    let f = fence(&a);
    walk(&store, &a.id, &[Sent]).await;
    store
        .transition(&a.id, &f, &[Sent, Unknown], Unknown, AttemptUpdate::default(), Timestamp(T0 + 9))
        .await
        .unwrap();
    // A second task of the same holder that also saw it Sent loses.
    match store.transition(&a.id, &f, &[Sent], Failed, AttemptUpdate::default(), Timestamp(T0 + 9)).await {
        Err(StoreError::StateConflict { id, expected, found }) => {
            assert_eq!((id.as_str(), expected, found), ("cap-cas-a", vec![Sent], Unknown))
        }
        r => panic!("expected StateConflict, got {r:?}"),
    }
    // An empty `from` never matches.
    assert!(matches!(
        store.transition(&a.id, &f, &[], Captured, AttemptUpdate::default(), Timestamp(T0)).await,
        Err(StoreError::StateConflict { .. })
    ));
    let done =
        store.transition(&a.id, &f, &[Unknown], Captured, AttemptUpdate::default(), Timestamp(T0 + 9)).await;
    assert_eq!(done.unwrap().lease.owner, None, "out of flight: the lease is released");
    // The lease went with the move out of flight: the old fence no longer writes.
    match store.transition(&a.id, &f, &[Captured], Failed, AttemptUpdate::default(), Timestamp(T0 + 9)).await
    {
        Err(StoreError::LeaseLost { id, holder, token, presented }) => {
            assert_eq!((id.as_str(), holder, token, presented), ("cap-cas-a", None, 1, 1))
        }
        r => panic!("expected LeaseLost, got {r:?}"),
    }

    // 16 tasks of the holder race the same Sent -> next move: exactly one wins. The others see the
    // state moved (StateConflict) or, when the winner left flight, the lease gone (LeaseLost).
    let b = reserve_ok(&store, &attempt("cas-b", "ord-2", usd("10.00"), usd("10.00"))).await;
    let fb = fence(&b);
    walk(&store, &b.id, &[Sent]).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let (id, fb) = (b.id.clone(), fb.clone());
            tokio::spawn(async move {
                let to = [Captured, Failed, Unknown, Pending][i % 4];
                store
                    .transition(&id, &fb, &[Sent], to, AttemptUpdate::default(), Timestamp(T0 + i as u64))
                    .await
            })
        })
        .collect();
    let (mut won, mut conflicts, mut lost) = (Vec::new(), 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => won.push(a.state),
            Err(StoreError::StateConflict { found, .. }) => {
                assert_eq!(found, Unknown, "only a winner that stays in flight keeps the lease");
                conflicts += 1
            }
            Err(StoreError::LeaseLost { holder: None, token: 1, presented: 1, .. }) => lost += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    println!("[{}] CAS race: {won:?} won, {conflicts} StateConflict, {lost} LeaseLost", store.backend());
    assert_eq!((won.len(), conflicts + lost), (1, 15));
    assert_eq!(store.get(&b.id).await.unwrap().unwrap().state, won[0]);
    check_sums(&store, MERCHANT, PLATFORM, "ord-2").await;
}

async fn invalid_transitions_are_refused(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let a = reserve_ok(&store, &attempt("inv-a", "ord-1", usd("10.00"), usd("100.00"))).await;
    for to in [Captured, Pending, Unknown, AlreadyCaptured, Reserved] {
        match store
            .transition(&a.id, &fence(&a), &[Reserved], to, AttemptUpdate::default(), Timestamp(T0))
            .await
        {
            Err(StoreError::InvalidTransition { id, from, to: t }) => {
                assert_eq!((id, from, t), (a.id.clone(), Reserved, to))
            }
            r => panic!("Reserved -> {to}: expected InvalidTransition, got {r:?}"),
        }
    }
    assert_eq!(store.get(&a.id).await.unwrap().unwrap(), a, "refusals change nothing");

    // A failure that is not resendable stays failed: nobody can take its lease, the last
    // holder's fence no longer writes.
    walk(&store, &a.id, &[Sent, Failed]).await;
    assert!(matches!(
        store.take_lease(&a.id, OWNER, LEASE_MS, None, Timestamp(T0 + 2)).await.unwrap(),
        LeaseGrant::Final(f) if f.state == Failed
    ));
    assert!(matches!(
        store.transition(&a.id, &fence(&a), &[Failed], Sent, AttemptUpdate::default(), Timestamp(T0)).await,
        Err(StoreError::LeaseLost { holder: None, .. })
    ));
    assert_eq!(store.get(&a.id).await.unwrap().unwrap().state, Failed);

    // A resendable one may be leased and sent again (and counts the send).
    let b = reserve_ok(&store, &attempt("inv-b", "ord-2", usd("10.00"), usd("100.00"))).await;
    walk(&store, &b.id, &[Sent]).await;
    let failed = AttemptUpdate { resendable: Some(true), ..Default::default() };
    let b = store.transition(&b.id, &fence(&b), &[Sent], Failed, failed, Timestamp(T0 + 1)).await.unwrap();
    assert!(b.resendable);
    assert_eq!(b.lease.owner, None);
    let LeaseGrant::Granted(leased) =
        store.take_lease(&b.id, "engine-b", LEASE_MS, None, Timestamp(T0 + 2)).await.unwrap()
    else {
        panic!("a resendable failure can be leased for its resend")
    };
    assert_eq!((leased.lease.owner.as_deref(), leased.lease.token), (Some("engine-b"), 2));
    let resend = AttemptUpdate { count_send: true, ..Default::default() };
    let b =
        store.transition(&b.id, &fence(&leased), &[Failed], Sent, resend, Timestamp(T0 + 3)).await.unwrap();
    assert_eq!((b.state, b.sends, b.resendable, b.last_sent_at), (Sent, 2, false, Some(Timestamp(T0 + 3))));
    check_sums(&store, MERCHANT, PLATFORM, "ord-2").await;

    // Final states have no way out.
    let b = walk(&store, &b.id, &[Captured]).await;
    assert!(matches!(
        store.take_lease(&b.id, OWNER, LEASE_MS, Some(0), Timestamp(T0 + 999_999)).await.unwrap(),
        LeaseGrant::Final(_)
    ));
    for to in [Sent, Failed, Pending, Captured] {
        assert!(matches!(
            store
                .transition(&b.id, &fence(&leased), &[Captured], to, AttemptUpdate::default(), Timestamp(T0))
                .await,
            Err(StoreError::LeaseLost { .. })
        ));
    }
    assert_eq!(store.get(&b.id).await.unwrap().unwrap(), b);
    let nobody = Fence { owner: OWNER.into(), token: 1 };
    assert!(matches!(
        store.transition("cap-nope", &nobody, &[Sent], Captured, AttemptUpdate::default(), Timestamp(T0)).await,
        Err(StoreError::NotFound(id)) if id == "cap-nope"
    ));
    assert!(matches!(
        store.take_lease("cap-nope", OWNER, LEASE_MS, None, Timestamp(T0)).await,
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
    store.transition(&a.id, &fence(&a), &[Sent], Failed, retryable(), Timestamp(T0)).await.unwrap();
    let fa = fence_for(&store, &a.id, Timestamp(T0 + 1)).await;

    // While A is failed another attempt takes the order: A may not go back into flight.
    let b = reserve_ok(&store, &attempt("rs-b", "ord-1", usd("10.00"), bound)).await;
    match store.transition(&a.id, &fa, &[Failed], Sent, AttemptUpdate::default(), Timestamp(T0)).await {
        Err(StoreError::ResendRefused { id, reason }) => {
            assert_eq!(id, a.id);
            assert!(reason.contains("cap-rs-b") && reason.contains("in flight"), "{reason}");
        }
        r => panic!("expected ResendRefused (in flight), got {r:?}"),
    }
    // B captured the whole bound: still refused, now for the amount.
    walk(&store, &b.id, &[Sent, Captured]).await;
    match store.transition(&a.id, &fa, &[Failed], Sent, AttemptUpdate::default(), Timestamp(T0)).await {
        Err(StoreError::ResendRefused { reason, .. }) => {
            assert!(reason.contains("bound 10.00 USD"), "{reason}")
        }
        r => panic!("expected ResendRefused (bound), got {r:?}"),
    }
    assert_eq!(store.get(&a.id).await.unwrap().unwrap().state, Failed);
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-1").await, 1000);
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
            assert!(e.to_string().contains("recorded in USD, this request is in EUR"), "{e}")
        }
        r => panic!("expected InvalidInput, got {r:?}"),
    }
    // A snapshot with a negative external capture or authorization (it would widen the bound).
    let mut negative = attempt("ex-bad-4", "neg", money("1.00", "USD"), money("9.00", "USD"));
    negative.external = money("-5.00", "USD");
    let r = store.reserve(&negative).await;
    assert!(matches!(r, Err(StoreError::InvalidInput { .. })), "negative external: {r:?}");
    let mut negative = attempt("ex-bad-5", "neg", money("1.00", "USD"), money("-9.00", "USD"));
    negative.authorization = Authorization { total: money("-9.00", "USD"), payments: vec![] };
    assert!(
        matches!(store.reserve(&negative).await, Err(StoreError::InvalidInput { .. })),
        "negative authorization"
    );
    assert_eq!(store.all().await.unwrap().len(), 6);
    assert_eq!(store.order(MERCHANT, PLATFORM, "neg").await.unwrap(), None);
}

async fn updates_are_recorded(fx: &Fixture) {
    let store = fx.store().await;
    let a = reserve_ok(&store, &attempt("up-a", "ord-1", money("10.00", "USD"), money("10.00", "USD"))).await;
    let f = fence(&a);
    let sent = AttemptUpdate {
        request: Some(r#"{"url":"https://x/capture","authorization":"[redacted]"}"#.into()),
        count_send: true,
        ..Default::default()
    };
    let s = store.transition(&a.id, &f, &[Reserved], Sent, sent, Timestamp(T0 + 10)).await.unwrap();
    assert_eq!((s.sends, s.updated_at, s.created_at), (1, Timestamp(T0 + 10), Timestamp(T0)));
    assert_eq!(s.last_sent_at, Some(Timestamp(T0 + 10)));
    // The holder renews its lease as it goes (same token).
    let unknown = AttemptUpdate {
        response: Some(r#"{"status":503}"#.into()),
        renew_until: Some(Timestamp(T0 + 20 + LEASE_MS)),
        ..Default::default()
    };
    let u = store.transition(&a.id, &f, &[Sent], Unknown, unknown, Timestamp(T0 + 20)).await.unwrap();
    assert_eq!(
        (u.lease.owner.as_deref(), u.lease.token, u.lease.taken_at, u.lease.until),
        (Some(OWNER), 1, Timestamp(T0 + 20), Timestamp(T0 + 20 + LEASE_MS))
    );
    let resent = AttemptUpdate { count_send: true, ..Default::default() };
    store.transition(&a.id, &f, &[Unknown], Sent, resent, Timestamp(T0 + 30)).await.unwrap();
    let done = AttemptUpdate {
        platform_capture_id: Some("pc-77".into()),
        response: Some(r#"{"status":200}"#.into()),
        outcome: Some(r#"{"status":"captured","amount":{"amount":"10.00","currency":"USD"}}"#.into()),
        resendable: Some(true), // meaningless outside Failed: stored as false
        ..Default::default()
    };
    let c = store.transition(&a.id, &f, &[Sent], Captured, done, Timestamp(T0 + 40)).await.unwrap();
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
    assert_eq!(stored.last_sent_at, Some(Timestamp(T0 + 30)));
    assert_eq!((stored.lease.owner.as_deref(), stored.lease.token), (None, 1), "released, token kept");
    assert_eq!((stored.captured, stored.anomaly.as_deref()), (None, None));
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

// ---------------------------------------------------------------------------------------------
// The rules of schema v2: the order row, leases, what each state holds.

/// An authorization of two payments (given in either order: it is sorted).
fn two_payments(a: &str, b: &str) -> Authorization {
    Authorization::from_payments(
        vec![("pay-2".into(), money(b, "USD")), ("pay-1".into(), money(a, "USD"))],
        cur("USD"),
    )
}

async fn first_authorization_wins_and_a_disagreeing_one_is_refused(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let mut first = attempt("au-1", "ord-au", usd("10.00"), usd("100.00"));
    first.authorization = two_payments("60.00", "40.00");
    let a = reserve_ok(&store, &first).await;
    let row = store.order(MERCHANT, PLATFORM, "ord-au").await.unwrap().expect("order row");
    assert_eq!(row.authorization, first.authorization);
    assert_eq!(row.authorization.total, usd("100.00"));
    assert_eq!(row.authorization.payments[0].0, "pay-1", "sorted by payment id");
    assert_eq!(
        (row.bound(), row.held, row.in_flight.as_deref()),
        (usd("100.00"), usd("10.00"), Some("cap-au-1"))
    );

    // Other snapshots: another total, the same total split otherwise, another payment. Refused
    // before the in-flight check (A is still reserved), naming both, nothing recorded.
    let others = [
        two_payments("60.00", "50.00"),
        two_payments("50.00", "50.00"),
        Authorization::from_payments(vec![("pay-1".into(), usd("100.00"))], cur("USD")),
    ];
    for (i, given) in others.into_iter().enumerate() {
        let mut other = attempt(&format!("au-x{i}"), "ord-au", usd("1.00"), usd("100.00"));
        other.authorization = given.clone();
        match store.reserve(&other).await.unwrap() {
            Reservation::AuthorizationMismatch { recorded, given: g } => {
                assert_eq!((&recorded, &g), (&first.authorization, &given));
                let text = format!("{recorded} / {g}");
                assert!(text.contains("pay-1 60.00 USD") && text.contains("100.00 USD"), "{text}");
            }
            r => panic!("snapshot {i}: expected AuthorizationMismatch, got {r:?}"),
        }
        assert_eq!(store.by_key(MERCHANT, PLATFORM, &other.idempotency_key).await.unwrap(), None);
    }
    // A replay of the first request is still `Existing` (the key is checked first).
    let mut replay = first.clone();
    replay.authorization = two_payments("1.00", "1.00");
    assert!(matches!(store.reserve(&replay).await.unwrap(), Reservation::Existing(e) if e.id == a.id));

    // The same authorization again (payments listed the other way round) is accepted.
    walk(&store, &a.id, &[Sent, Captured]).await;
    let mut again = attempt("au-2", "ord-au", usd("90.00"), usd("100.00"));
    again.authorization = Authorization::from_payments(
        vec![("pay-1".into(), usd("60")), ("pay-2".into(), usd("40"))],
        cur("USD"),
    );
    reserve_ok(&store, &again).await;
    let row = store.order(MERCHANT, PLATFORM, "ord-au").await.unwrap().unwrap();
    assert_eq!(row.authorization, first.authorization, "the first snapshot stays recorded");
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-au").await, 10_000);
}

async fn external_captures_only_shrink_the_bound(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t: &str| money(t, "USD");
    let auth = usd("100.00");
    let with_external = |key: &str, amount: &str, external: &str| {
        let mut n = attempt(key, "ord-ext", usd(amount), auth);
        n.external = usd(external);
        n
    };
    // 30 captured elsewhere: the bound is 70.
    let a = reserve_ok(&store, &with_external("ext-a", "10.00", "30.00")).await;
    let row = store.order(MERCHANT, PLATFORM, "ord-ext").await.unwrap().unwrap();
    assert_eq!((row.external, row.bound()), (usd("30.00"), usd("70.00")));
    walk(&store, &a.id, &[Sent, Captured]).await;

    // A stale snapshot saying 20 does not give the 10 back: the largest seen counts.
    assert_eq!(
        store.reserve(&with_external("ext-b", "60.01", "20.00")).await.unwrap(),
        Reservation::OverBound { held: usd("10.00"), bound: usd("70.00") }
    );
    let b = reserve_ok(&store, &with_external("ext-c", "50.00", "0.00")).await;
    let row = store.order(MERCHANT, PLATFORM, "ord-ext").await.unwrap().unwrap();
    assert_eq!((row.external, row.bound(), row.held), (usd("30.00"), usd("70.00"), usd("60.00")));
    walk(&store, &b.id, &[Sent, Captured]).await;

    // More captured elsewhere (35): the bound shrinks to 65 and the next reservation is judged by it.
    assert_eq!(
        store.reserve(&with_external("ext-d", "5.01", "35.00")).await.unwrap(),
        Reservation::OverBound { held: usd("60.00"), bound: usd("65.00") }
    );
    reserve_ok(&store, &with_external("ext-e", "5.00", "35.00")).await;
    let row = store.order(MERCHANT, PLATFORM, "ord-ext").await.unwrap().unwrap();
    assert_eq!((row.external, row.bound(), row.held), (usd("35.00"), usd("65.00"), usd("65.00")));
    // Captured elsewhere beyond the authorization: the bound is zero, never negative.
    walk(&store, "cap-ext-e", &[Sent, Captured]).await;
    assert_eq!(
        store.reserve(&with_external("ext-f", "0.01", "150.00")).await.unwrap(),
        Reservation::OverBound { held: usd("65.00"), bound: usd("0.00") }
    );
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-ext").await, 6500);
}

async fn stale_fence_is_lease_lost_after_another_owner_took_over(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let a = reserve_ok(&store, &attempt("ll-a", "ord-ll", usd("10.00"), usd("10.00"))).await;
    let old = fence(&a);
    store
        .transition(
            &a.id,
            &old,
            &[Reserved],
            Sent,
            AttemptUpdate { count_send: true, ..Default::default() },
            Timestamp(T0 + 1),
        )
        .await
        .unwrap();
    // Engine A stalls past its lease; engine B takes the attempt over.
    let LeaseGrant::Granted(taken) =
        store.take_lease(&a.id, "engine-b", LEASE_MS, None, Timestamp(T0 + LEASE_MS)).await.unwrap()
    else {
        panic!("an expired lease is granted")
    };
    assert_eq!(
        taken.lease,
        capture_store::Lease {
            owner: Some("engine-b".into()),
            token: 2,
            taken_at: Timestamp(T0 + LEASE_MS),
            until: Timestamp(T0 + 2 * LEASE_MS)
        }
    );
    // A wakes up and records its answer: refused, naming the new holder.
    let answer = AttemptUpdate { platform_capture_id: Some("pc-a".into()), ..Default::default() };
    match store.transition(&a.id, &old, &[Sent], Captured, answer.clone(), Timestamp(T0 + LEASE_MS + 1)).await
    {
        Err(e @ StoreError::LeaseLost { .. }) => {
            let StoreError::LeaseLost { ref id, ref holder, token, presented } = e else { unreachable!() };
            assert_eq!(
                (id.as_str(), holder.as_deref(), token, presented),
                ("cap-ll-a", Some("engine-b"), 2, 1)
            );
            assert!(e.to_string().contains("held by engine-b"), "{e}");
        }
        r => panic!("expected LeaseLost, got {r:?}"),
    }
    // The right token under another owner's name is refused too.
    let forged = Fence { owner: OWNER.into(), token: 2 };
    assert!(matches!(
        store
            .transition(&a.id, &forged, &[Sent], Captured, answer.clone(), Timestamp(T0 + LEASE_MS + 1))
            .await,
        Err(StoreError::LeaseLost { token: 2, presented: 2, .. })
    ));
    let now = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (now.state, now.platform_capture_id.as_deref(), now.lease.token),
        (Sent, None, 2),
        "nothing written"
    );
    // B's fence writes.
    let done = store
        .transition(&a.id, &fence(&taken), &[Sent], Captured, answer, Timestamp(T0 + LEASE_MS + 2))
        .await;
    assert_eq!(done.unwrap().platform_capture_id.as_deref(), Some("pc-a"));
    check_sums(&store, MERCHANT, PLATFORM, "ord-ll").await;
}

async fn take_lease_waits_for_expiry_or_min_age(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let a = reserve_ok(&store, &attempt("tl-a", "ord-tl", usd("10.00"), usd("10.00"))).await;
    let held_by = |owner: &str, until: u64| LeaseGrant::Held {
        owner: Some(owner.to_owned()),
        until: Timestamp(until),
        clamped: false,
    };
    // Live: refused, saying by whom and until when (with or without a min age not yet reached).
    for (at, min_age) in [(T0 + 1_000, None), (T0 + 1_000, Some(5_000)), (T0 + LEASE_MS - 1, None)] {
        assert_eq!(
            store.take_lease(&a.id, "engine-b", LEASE_MS, min_age, Timestamp(at)).await.unwrap(),
            held_by(OWNER, T0 + LEASE_MS),
            "at +{} min_age {min_age:?}",
            at - T0
        );
    }
    // The operator's override: taken at least `min_age_ms` ago.
    let LeaseGrant::Granted(b) =
        store.take_lease(&a.id, "engine-b", LEASE_MS, Some(5_000), Timestamp(T0 + 5_000)).await.unwrap()
    else {
        panic!("min_age_ms reached: granted")
    };
    assert_eq!(
        (b.lease.owner.as_deref(), b.lease.token, b.lease.until),
        (Some("engine-b"), 2, Timestamp(T0 + 5_000 + LEASE_MS))
    );
    assert_eq!(b.state, Reserved, "a lease changes no state");
    assert_eq!(
        store.take_lease(&a.id, "engine-c", LEASE_MS, None, Timestamp(T0 + 6_000)).await.unwrap(),
        held_by("engine-b", T0 + 5_000 + LEASE_MS)
    );
    // Expired (its `until` reached): granted, the token grows again.
    let LeaseGrant::Granted(c) =
        store.take_lease(&a.id, "engine-c", LEASE_MS, None, Timestamp(T0 + 5_000 + LEASE_MS)).await.unwrap()
    else {
        panic!("expired: granted")
    };
    assert_eq!((c.lease.owner.as_deref(), c.lease.token), (Some("engine-c"), 3));
    assert_eq!(store.get(&a.id).await.unwrap().unwrap(), c);

    // Pending: nobody holds it; the janitor takes it and resolves it.
    walk(&store, &a.id, &[Sent, Pending]).await;
    let p = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!((p.lease.owner.clone(), p.lease.token), (None, 3));
    let LeaseGrant::Granted(j) =
        store.take_lease(&a.id, "janitor", LEASE_MS, None, Timestamp(T0 + 2)).await.unwrap()
    else {
        panic!("pending: granted")
    };
    assert_eq!(j.lease.token, 4);
    store
        .transition(&a.id, &fence(&j), &[Pending], Captured, AttemptUpdate::default(), Timestamp(T0 + 3))
        .await
        .unwrap();
    assert!(matches!(
        store.take_lease(&a.id, "engine-d", LEASE_MS, Some(0), Timestamp(T0 + 10 * LEASE_MS)).await.unwrap(),
        LeaseGrant::Final(f) if f.state == Captured && f.lease.token == 4
    ));
}

async fn lease_stamped_in_the_future_is_clamped(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    // Engine A's clock is a day ahead: its lease ends a day after ours.
    let day = 86_400_000;
    let mut new = attempt("cl-a", "ord-cl", usd("10.00"), usd("10.00"));
    new.now = Timestamp(T0 + day);
    let a = reserve_ok(&store, &new).await;
    assert_eq!(a.lease.until, Timestamp(T0 + day + LEASE_MS));
    // Asked at our T0: no lease lasts longer than LEASE_MS, so it is brought back to T0 + LEASE_MS.
    assert_eq!(
        store.take_lease(&a.id, "engine-b", LEASE_MS, None, Timestamp(T0)).await.unwrap(),
        LeaseGrant::Held { owner: Some(OWNER.into()), until: Timestamp(T0 + LEASE_MS), clamped: true }
    );
    let clamped = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (clamped.lease.owner.as_deref(), clamped.lease.token, clamped.lease.until),
        (Some(OWNER), 1, Timestamp(T0 + LEASE_MS)),
        "same holder, same token, the expiry clamped"
    );
    // Within it: held, no further clamp; the holder can still write.
    assert_eq!(
        store.take_lease(&a.id, "engine-b", LEASE_MS, None, Timestamp(T0 + 1_000)).await.unwrap(),
        LeaseGrant::Held { owner: Some(OWNER.into()), until: Timestamp(T0 + LEASE_MS), clamped: false }
    );
    // After it: free.
    let LeaseGrant::Granted(b) =
        store.take_lease(&a.id, "engine-b", LEASE_MS, None, Timestamp(T0 + LEASE_MS)).await.unwrap()
    else {
        panic!("the clamped lease frees up after LEASE_MS")
    };
    assert_eq!((b.lease.owner.as_deref(), b.lease.token), (Some("engine-b"), 2));
    assert!(matches!(
        store
            .transition(&a.id, &fence(&a), &[Reserved], Sent, AttemptUpdate::default(), Timestamp(T0 + day))
            .await,
        Err(StoreError::LeaseLost { token: 2, presented: 1, .. })
    ));
}

async fn already_captured_holds_its_amount_and_failed_frees_it(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let bound = usd("20.00");
    let a = reserve_ok(&store, &attempt("ac-a", "ord-ac", usd("10.00"), bound)).await;
    let a = walk(&store, &a.id, &[Sent, AlreadyCaptured]).await;
    assert_eq!(a.held(), usd("10.00"), "the platform holds it captured: it counts");
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-ac").await, 1000);
    let b = reserve_ok(&store, &attempt("ac-b", "ord-ac", usd("10.00"), bound)).await;
    assert_eq!(
        store.reserve(&attempt("ac-x", "ord-ac", usd("0.01"), bound)).await.unwrap(),
        Reservation::OrderBusy(b.clone())
    );
    let b = walk(&store, &b.id, &[Sent, Unknown, Failed]).await;
    assert_eq!(b.held(), usd("0.00"), "only Failed frees");
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-ac").await, 1000);
    let c = reserve_ok(&store, &attempt("ac-c", "ord-ac", usd("10.00"), bound)).await;
    walk(&store, &c.id, &[Sent, Unknown, AlreadyCaptured]).await;
    assert_eq!(
        store.reserve(&attempt("ac-d", "ord-ac", usd("0.01"), bound)).await.unwrap(),
        Reservation::OverBound { held: usd("20.00"), bound }
    );
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-ac").await, 2000);
}

async fn over_capture_counts_in_full_even_past_the_bound(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |t| money(t, "USD");
    let bound = usd("10.00");
    let a = reserve_ok(&store, &attempt("oc-a", "ord-oc", usd("8.00"), bound)).await;
    walk(&store, &a.id, &[Sent]).await;
    // The platform reports 12 captured for 8 asked: recorded (a fact), counted in full.
    let over = AttemptUpdate {
        captured: Some(usd("12.00")),
        anomaly: Some("amount_mismatch".into()),
        ..Default::default()
    };
    let a = store.transition(&a.id, &fence(&a), &[Sent], Captured, over, Timestamp(T0 + 2)).await.unwrap();
    assert_eq!(
        (a.captured, a.anomaly.as_deref(), a.held()),
        (Some(usd("12.00")), Some("amount_mismatch"), usd("12.00"))
    );
    assert_eq!(store.get(&a.id).await.unwrap().unwrap(), a);
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-oc").await, 1200);
    assert_eq!(
        store.reserve(&attempt("oc-b", "ord-oc", usd("0.01"), bound)).await.unwrap(),
        Reservation::OverBound { held: usd("12.00"), bound }
    );

    // Less captured than asked: the amount asked for still counts (the larger of the two).
    let under_bound = usd("50.00");
    let b = reserve_ok(&store, &attempt("oc-c", "ord-oc2", usd("20.00"), under_bound)).await;
    walk(&store, &b.id, &[Sent, Pending]).await;
    let f = fence_for(&store, &b.id, Timestamp(T0 + 3)).await;
    let under = AttemptUpdate { captured: Some(usd("15.00")), ..Default::default() };
    let b = store.transition(&b.id, &f, &[Pending], Captured, under, Timestamp(T0 + 4)).await.unwrap();
    assert_eq!((b.captured, b.held()), (Some(usd("15.00")), usd("20.00")));
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-oc2").await, 2000);

    // An over-capture through Pending, past the bound of a full order.
    let c = reserve_ok(&store, &attempt("oc-d", "ord-oc2", usd("30.00"), under_bound)).await;
    walk(&store, &c.id, &[Sent, Pending]).await;
    let f = fence_for(&store, &c.id, Timestamp(T0 + 5)).await;
    let over = AttemptUpdate { captured: Some(usd("45.00")), ..Default::default() };
    let c = store.transition(&c.id, &f, &[Pending], Captured, over, Timestamp(T0 + 6)).await.unwrap();
    assert_eq!(c.held(), usd("45.00"));
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-oc2").await, 6500);
    // A captured amount in another currency is refused.
    let d = reserve_ok(&store, &attempt("oc-e", "ord-oc3", usd("1.00"), usd("1.00"))).await;
    walk(&store, &d.id, &[Sent]).await;
    let wrong = AttemptUpdate { captured: Some(money("1.00", "EUR")), ..Default::default() };
    assert!(matches!(
        store.transition(&d.id, &fence(&d), &[Sent], Captured, wrong, Timestamp(T0 + 7)).await,
        Err(StoreError::InvalidInput { .. })
    ));
}

/// A small deterministic generator (no clock, no OS randomness): the same run every time.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A long mixed run over three orders (reservations of any size, every allowed and some
/// refused transition, leases taken over, over- and under-captures): after every operation each
/// order row's held equals Σ held() of its attempts and names the one in flight, and held stays
/// within the bound except by the recorded over-captures.
async fn order_sums_hold_after_every_operation(fx: &Fixture) {
    let store = fx.store().await;
    let usd = |minor: i64| capture_core::Money::from_minor(minor, cur("USD"));
    let orders = ["sum-0", "sum-1", "sum-2"];
    let bound = usd(10_000);
    let mut rng = Lcg(7);
    let mut ids: Vec<String> = Vec::new();
    let mut now = T0;
    let (mut reserved, mut moved, mut refused, mut leases) = (0, 0, 0, 0);
    for step in 0..150 {
        now += 1 + rng.next(LEASE_MS / 2);
        let op = rng.next(10);
        if op < 3 || ids.is_empty() {
            let order = orders[rng.next(3) as usize];
            let mut new = attempt(&format!("sum-k{step}"), order, usd(1 + rng.next(4_000) as i64), bound);
            new.now = Timestamp(now);
            match store.reserve(&new).await.unwrap() {
                Reservation::Reserved(_) => {
                    reserved += 1;
                    ids.push(new.id.clone())
                }
                Reservation::OverBound { .. } | Reservation::OrderBusy(_) => refused += 1,
                r => panic!("unexpected {r:?}"),
            }
        } else if op < 5 {
            let id = &ids[rng.next(ids.len() as u64) as usize];
            let owner = ["engine-a", "engine-b"][rng.next(2) as usize];
            if let LeaseGrant::Granted(_) =
                store.take_lease(id, owner, LEASE_MS, None, Timestamp(now)).await.unwrap()
            {
                leases += 1;
            }
        } else {
            let id = ids[rng.next(ids.len() as u64) as usize].clone();
            let a = store.get(&id).await.unwrap().unwrap();
            let to = capture_store::ALL_STATES[rng.next(7) as usize];
            let f = match a.fence() {
                Some(f) if rng.next(4) > 0 => f,
                _ => match store.take_lease(&id, OWNER, LEASE_MS, Some(0), Timestamp(now)).await.unwrap() {
                    LeaseGrant::Granted(g) => fence(&g),
                    _ => Fence { owner: OWNER.into(), token: a.lease.token },
                },
            };
            let captured = match rng.next(4) {
                0 => Some(usd(a.amount.to_minor().unwrap() + 1 + rng.next(2_000) as i64)),
                1 => Some(usd(1)),
                _ => None,
            };
            let update = AttemptUpdate {
                captured,
                resendable: Some(rng.next(2) == 0),
                count_send: to == Sent,
                ..Default::default()
            };
            match store.transition(&id, &f, &[a.state], to, update, Timestamp(now)).await {
                Ok(b) => {
                    assert!(
                        capture_store::transition_allowed(a.state, to),
                        "{} -> {to} went through",
                        a.state
                    );
                    assert_eq!(b.state, to);
                    moved += 1
                }
                Err(
                    StoreError::InvalidTransition { .. }
                    | StoreError::ResendRefused { .. }
                    | StoreError::LeaseLost { .. },
                ) => refused += 1,
                Err(e) => panic!("{id}: {} -> {to}: {e}", a.state),
            }
        }
        for order in orders {
            let held = check_sums(&store, MERCHANT, PLATFORM, order).await;
            let over: i64 = store
                .order_attempts(MERCHANT, PLATFORM, order)
                .await
                .unwrap()
                .iter()
                .map(|a| a.held().to_minor().unwrap() - a.amount.to_minor().unwrap())
                .filter(|&d| d > 0)
                .sum();
            assert!(
                held - over <= bound.to_minor().unwrap(),
                "{order}: held {held} (over-captures {over}) past the bound"
            );
        }
    }
    println!(
        "[{}] 150 operations: {reserved} reserved, {moved} transitions, {leases} leases taken, {refused} refused; sums checked after each",
        store.backend()
    );
    assert!(reserved > 0 && moved > 0 && leases > 0 && refused > 0);
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
                first_authorization_wins_and_a_disagreeing_one_is_refused,
                external_captures_only_shrink_the_bound,
                stale_fence_is_lease_lost_after_another_owner_took_over,
                take_lease_waits_for_expiry_or_min_age,
                lease_stamped_in_the_future_is_clamped,
                already_captured_holds_its_amount_and_failed_frees_it,
                over_capture_counts_in_full_even_past_the_bound,
                order_sums_hold_after_every_operation,
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
// The same suite with SERIALIZABLE as every transaction's default isolation.
backend_tests!(postgres_serializable, common::postgres_serializable, "postgres");

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
    assert_eq!(version, 2);
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
async fn postgres_writes_an_order_row_only_when_it_changes() {
    let fx = common::postgres().await;
    let store = fx.store().await;
    let usd = money("10.00", "USD");
    let a = reserve_ok(&store, &attempt("k-upd", "ord-upd", usd, usd)).await;
    let (client, conn) = tokio_postgres::connect(&fx.target, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = async || -> (i64, Option<String>) {
        let r = client
            .query_one("SELECT updated_at, in_flight FROM capture_orders WHERE order_id = 'ord-upd'", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let t0 = i64::try_from(T0).unwrap();
    assert_eq!(row().await, (t0, Some(a.id.clone())));
    // Reserved -> sent changes neither the sums nor the attempt in flight: the row stays.
    let sent = AttemptUpdate { request: Some("{}".into()), count_send: true, ..Default::default() };
    store
        .transition(&a.id, &fence(&a), &[AttemptState::Reserved], AttemptState::Sent, sent, Timestamp(T0 + 5))
        .await
        .unwrap();
    assert_eq!(row().await, (t0, Some(a.id.clone())));
    // Sent -> captured frees the order: the row is written.
    let done = AttemptUpdate { captured: Some(usd), ..Default::default() };
    store
        .transition(&a.id, &fence(&a), &[AttemptState::Sent], AttemptState::Captured, done, Timestamp(T0 + 9))
        .await
        .unwrap();
    assert_eq!(row().await, (t0 + 9, None));
    let order = store.order(MERCHANT, PLATFORM, "ord-upd").await.unwrap().unwrap();
    assert_eq!((order.held, order.in_flight), (usd, None));
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

#[tokio::test]
async fn both_backends_refuse_a_version_1_ledger() {
    let fx = common::sqlite().await;
    drop(fx.store().await);
    rusqlite::Connection::open(&fx.target)
        .unwrap()
        .execute("UPDATE capture_store_schema SET version = 1", [])
        .unwrap();
    match capture_store::open(&fx.target).await {
        Err(e @ StoreError::Open { .. }) => {
            assert!(e.to_string().contains("schema version 1, written by an older engine"), "{e}")
        }
        r => panic!("expected Open error, got {r:?}"),
    }
    let fx = common::postgres().await;
    drop(fx.store().await);
    let (client, conn) = tokio_postgres::connect(&fx.target, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.execute("UPDATE capture_store_schema SET version = 1", &[]).await.unwrap();
    match capture_store::open(&fx.target).await {
        Err(e @ StoreError::Open { .. }) => {
            assert!(e.to_string().contains("schema version 1, written by an older engine"), "{e}")
        }
        r => panic!("expected Open error, got {r:?}"),
    }
}

/// A call given up inside its transaction (its future dropped while it waits for a row lock, as
/// a caller's timeout does) must not leave that transaction open on a pooled client: it would
/// keep the order's row locked and a later call on that client would run inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_call_dropped_inside_its_transaction_leaves_no_transaction_open() {
    let fx = common::postgres().await;
    let store = fx.store().await;
    let usd = |t: &str| money(t, "USD");
    let first = reserve_ok(&store, &attempt("drop-0", "ord-drop", usd("5.00"), usd("20.00"))).await;
    walk(&store, &first.id, &[Sent, Captured]).await;

    let (locker, conn) = tokio_postgres::connect(&fx.target, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; SELECT 1 FROM capture_orders WHERE order_id = 'ord-drop' FOR UPDATE")
        .await
        .unwrap();
    let given_up = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        store.reserve(&attempt("drop-1", "ord-drop", usd("5.00"), usd("20.00"))),
    )
    .await;
    assert!(given_up.is_err(), "the reservation must have been waiting for the order's lock: {given_up:?}");
    locker.batch_execute("ROLLBACK").await.unwrap();

    // The order is not left locked by the abandoned transaction: a reservation of it goes
    // through (bounded only so that a regression fails instead of hanging).
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        store.reserve(&attempt("drop-2", "ord-drop", usd("5.00"), usd("20.00"))),
    )
    .await
    .expect("the order's row lock was released");
    assert!(matches!(again, Ok(Reservation::Reserved(_))), "{again:?}");
    // Every pooled client then commits its own calls: another session sees them all at once.
    for i in 0..40 {
        reserve_ok(
            &store,
            &attempt(&format!("after-{i}"), &format!("ord-after-{i}"), usd("1.00"), usd("1.00")),
        )
        .await;
    }
    let committed: i64 = locker
        .query_one("SELECT count(*) FROM capture_attempts WHERE idempotency_key LIKE 'after-%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(committed, 40);
    let abandoned: i64 = locker
        .query_one("SELECT count(*) FROM capture_attempts WHERE idempotency_key = 'drop-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(abandoned, 0, "the abandoned reservation was never committed");
}

/// `pool_size` in the URL bounds the clients a store opens: twenty reservations at once on a
/// store of two clients all go through, never on more than two server sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_size_in_the_url_bounds_the_sessions_and_every_call_goes_through() {
    let fx = common::postgres().await;
    let sep = if fx.target.contains('?') { '&' } else { '?' };
    let store = Arc::new(
        capture_store::PostgresStore::connect(&format!("{}{sep}pool_size=2", fx.target))
            .await
            .expect("pool_size is the engine's parameter, not the driver's"),
    );
    assert_eq!(store.pool_size(), 2);
    let usd = |t: &str| money(t, "USD");
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .reserve(&attempt(
                        &format!("pool-{i}"),
                        &format!("ord-pool-{i}"),
                        usd("1.00"),
                        usd("1.00"),
                    ))
                    .await
            })
        })
        .collect();
    for c in calls {
        assert!(matches!(c.await.unwrap(), Ok(Reservation::Reserved(_))));
    }
    let (watcher, conn) = tokio_postgres::connect(&fx.target, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let sessions: i64 = watcher
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((1..=2).contains(&sessions), "{sessions} sessions for a pool of 2");
    let bad = capture_store::PostgresStore::connect(&format!("{}{sep}pool_size=0", fx.target)).await;
    let err = bad.expect_err("pool_size=0").to_string();
    assert!(err.contains("pool_size") && err.contains("1 to 256"), "{err}");
}
