//! Property tests of the pure rules in `logic.rs`, against an in-memory model of the two tables
//! (attempts and orders) that applies each plan exactly as the backends do: any sequence of
//! reservations, transitions and lease requests, with arbitrary amounts, authorizations, external
//! captures, states, fences and times (going backwards too), keeps
//!
//! * every order's `held` equal to Σ [`Attempt::held`] of its attempts;
//! * `held` within the bound, except by recorded over-captures (captured beyond the amount asked);
//! * at most one attempt of an order in flight, and the order row naming exactly that one;
//! * every attempt's lease token never decreasing, and strictly increasing with each grant;
//! * every transition that went through allowed by [`transition_allowed`] (a resend of a failure
//!   only when it was resendable), from a state the caller named, under the current fence.

use std::collections::BTreeMap;

use capture_core::{Currency, Money, Timestamp};
use proptest::prelude::*;

use super::{LeasePlan, Plan, Stored, first_order, plan_reserve, plan_take_lease, plan_transition, validate};
use crate::{
    ALL_STATES, AttemptState, AttemptUpdate, Authorization, Fence, LeaseGrant, NewAttempt, OrderRecord,
    Reservation, StoreError, transition_allowed,
};

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn m(minor: i64) -> Money {
    Money::from_minor(minor, usd())
}

/// The snapshots requests state: three different authorizations (one of them the same total as
/// another, split otherwise).
fn authorization(choice: u8) -> Authorization {
    let payments = match choice % 3 {
        0 => vec![("pay-1".to_owned(), m(10_000))],
        1 => vec![("pay-2".to_owned(), m(4_000)), ("pay-1".to_owned(), m(6_000))],
        _ => vec![("pay-1".to_owned(), m(5_000))],
    };
    Authorization::from_payments(payments, usd())
}

#[derive(Debug, Clone)]
enum FenceChoice {
    /// The holder's fence (or, nobody holding it, the last token under some owner's name).
    Current,
    /// The holder's name with the token before.
    Stale,
    /// The current token under another name.
    Intruder,
    /// Anything.
    Arbitrary(u8, u64),
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        order: u8,
        key: u8,
        /// Use the id of the next key (so an id may already belong to another key).
        shifted_id: bool,
        amount: i64,
        auth: u8,
        external: i64,
        owner: u8,
        lease_ms: u64,
        now: u64,
    },
    Transition {
        attempt: usize,
        fence: FenceChoice,
        /// A bit mask over ALL_STATES.
        from: u8,
        to: usize,
        captured: Option<i64>,
        resendable: Option<bool>,
        count_send: bool,
        renew: Option<u64>,
        now: u64,
    },
    TakeLease {
        attempt: usize,
        owner: u8,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: u64,
    },
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..400_000, 1 => Just(u64::MAX), 1 => (i64::MAX as u64 - 10)..=(i64::MAX as u64)]
}

fn op() -> impl Strategy<Value = Op> {
    let reserve =
        (
            0u8..3,
            0u8..10,
            prop::bool::weighted(0.1),
            prop_oneof![9 => 1i64..6_000, 1 => -100i64..=0, 1 => 6_000i64..20_000],
            prop_oneof![8 => Just(0u8), 2 => 1u8..3],
            prop_oneof![6 => Just(0i64), 3 => 0i64..6_000, 1 => 6_000i64..12_000],
            0u8..3,
            0u64..100_000,
            time(),
        )
            .prop_map(|(order, key, shifted_id, amount, auth, external, owner, lease_ms, now)| {
                Op::Reserve { order, key, shifted_id, amount, auth, external, owner, lease_ms, now }
            });
    let fence = prop_oneof![
        6 => Just(FenceChoice::Current),
        1 => Just(FenceChoice::Stale),
        1 => Just(FenceChoice::Intruder),
        1 => (0u8..3, 0u64..6).prop_map(|(o, t)| FenceChoice::Arbitrary(o, t)),
    ];
    let transition = (
        0usize..64,
        fence,
        prop_oneof![3 => Just(0xffu8), 1 => any::<u8>()],
        0usize..ALL_STATES.len(),
        prop_oneof![3 => Just(None), 1 => (1i64..15_000).prop_map(Some)],
        prop::option::of(any::<bool>()),
        any::<bool>(),
        prop::option::of(time()),
        time(),
    )
        .prop_map(|(attempt, fence, from, to, captured, resendable, count_send, renew, now)| {
            Op::Transition { attempt, fence, from, to, captured, resendable, count_send, renew, now }
        });
    let lease = (0usize..64, 0u8..3, 0u64..100_000, prop::option::of(0u64..200_000), time()).prop_map(
        |(attempt, owner, lease_ms, min_age_ms, now)| Op::TakeLease {
            attempt,
            owner,
            lease_ms,
            min_age_ms,
            now,
        },
    );
    prop_oneof![3 => reserve, 5 => transition, 2 => lease]
}

fn owner(n: u8) -> String {
    format!("engine-{n}")
}

/// The two tables, in memory, and what the checks remember.
#[derive(Debug, Default)]
struct Model {
    /// Attempts in insertion order.
    attempts: Vec<Stored>,
    orders: BTreeMap<String, OrderRecord>,
    /// The highest lease token each attempt ever had.
    tokens: BTreeMap<String, u64>,
    /// What happened, for the coverage check.
    reserved: usize,
    moved: usize,
    granted: usize,
    clamped: usize,
    resent: usize,
    over_captured: usize,
    refused: usize,
}

impl Model {
    fn find(&self, id: &str) -> Option<&Stored> {
        self.attempts.iter().find(|s| s.attempt.id == id)
    }

    fn put(&mut self, next: Stored) {
        let slot = self.attempts.iter_mut().find(|s| s.attempt.id == next.attempt.id).expect("exists");
        *slot = next;
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Reserve { order, key, shifted_id, amount, auth, external, owner: o, lease_ms, now } => {
                let order_id = format!("ord-{order}");
                let id_key = if *shifted_id { key + 1 } else { *key };
                let new = NewAttempt {
                    id: format!("cap-{id_key}"),
                    merchant: "m1".into(),
                    platform: "optty".into(),
                    idempotency_key: format!("k{key}"),
                    fingerprint: format!("{order_id}/{amount}"),
                    order_id: order_id.clone(),
                    payment_ids: vec!["pay-1".into()],
                    amount: m(*amount),
                    authorization: authorization(*auth),
                    external: m(*external),
                    owner: owner(*o),
                    lease_ms: *lease_ms,
                    now: Timestamp(*now),
                };
                if validate(&new).is_err() {
                    return;
                }
                let by_key =
                    self.attempts.iter().find(|s| s.attempt.idempotency_key == new.idempotency_key).cloned();
                let id_owner = self.find(&new.id).map(|s| s.attempt.idempotency_key.clone());
                let recorded = self.orders.get(&order_id).cloned();
                let row = recorded.clone().unwrap_or_else(|| first_order(&new));
                let busy = row.in_flight.as_deref().and_then(|id| self.find(id)).cloned();
                match plan_reserve(&new, by_key.clone(), id_owner.clone(), row.clone(), busy) {
                    Ok(Plan::Insert { attempt, order }) => {
                        assert!(by_key.is_none() && id_owner.is_none());
                        assert_eq!(order.authorization, row.authorization, "the first authorization stays");
                        assert!(order.external >= row.external, "external only grows");
                        assert!(order.held <= order.bound(), "a reservation fits the bound");
                        let a = &attempt.attempt;
                        assert_eq!(
                            (a.state, a.lease.token, a.lease.owner.as_deref()),
                            (AttemptState::Reserved, 1, Some(new.owner.as_str()))
                        );
                        self.tokens.insert(a.id.clone(), 1);
                        self.attempts.push(attempt);
                        self.orders.insert(order_id, order);
                        self.reserved += 1;
                    }
                    Ok(Plan::Answer(answer)) => match answer {
                        Reservation::Existing(a) => assert_eq!(a.fingerprint, new.fingerprint),
                        Reservation::KeyConflict(a) => assert_ne!(a.fingerprint, new.fingerprint),
                        Reservation::AuthorizationMismatch { recorded: r, given } => {
                            assert_ne!(r, given);
                            assert_eq!(Some(&r), recorded.as_ref().map(|o| &o.authorization));
                        }
                        Reservation::OrderBusy(a) => {
                            assert!(a.state.in_flight());
                            assert_eq!(Some(&a.id), row.in_flight.as_ref());
                        }
                        Reservation::OverBound { held, bound } => {
                            assert_eq!(held, row.held);
                            assert!(held.checked_add(new.amount).unwrap() > bound);
                            assert!(bound <= row.bound(), "the bound only shrinks");
                        }
                        Reservation::Reserved(_) => panic!("an answer without a write is never Reserved"),
                    },
                    Err(StoreError::DuplicateId { .. }) => assert!(id_owner.is_some()),
                    Err(StoreError::InvalidInput { .. }) => {}
                    Err(e) => panic!("reserve: unexpected {e}"),
                }
            }
            Op::Transition { attempt, fence, from, to, captured, resendable, count_send, renew, now } => {
                if self.attempts.is_empty() {
                    return;
                }
                let current = self.attempts[attempt % self.attempts.len()].clone();
                let a = &current.attempt;
                let lease = &a.lease;
                let fence = match fence {
                    FenceChoice::Current => {
                        Fence { owner: lease.owner.clone().unwrap_or_else(|| owner(0)), token: lease.token }
                    }
                    FenceChoice::Stale => Fence {
                        owner: lease.owner.clone().unwrap_or_else(|| owner(0)),
                        token: lease.token.saturating_sub(1),
                    },
                    FenceChoice::Intruder => Fence { owner: "intruder".into(), token: lease.token },
                    FenceChoice::Arbitrary(o, t) => Fence { owner: owner(*o), token: *t },
                };
                let from: Vec<AttemptState> = ALL_STATES
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| from & (1 << i) != 0)
                    .map(|(_, s)| *s)
                    .collect();
                let to = ALL_STATES[*to];
                let update = AttemptUpdate {
                    resendable: *resendable,
                    captured: captured.map(m),
                    count_send: *count_send,
                    renew_until: renew.map(Timestamp),
                    ..Default::default()
                };
                let order = self.orders[&a.order_id].clone();
                let fenced =
                    lease.owner.as_deref() == Some(fence.owner.as_str()) && lease.token == fence.token;
                match plan_transition(current.clone(), order, &fence, &from, to, update, Timestamp(*now)) {
                    Ok((next, order)) => {
                        assert!(fenced, "written without the current fence: {fence:?} vs {lease:?}");
                        assert!(from.contains(&a.state), "{} not in {from:?}", a.state);
                        assert!(transition_allowed(a.state, to), "{} -> {to} went through", a.state);
                        if a.state == AttemptState::Failed {
                            assert!(a.resendable, "a failure that was not resendable was sent again");
                        }
                        let n = &next.attempt;
                        assert_eq!(
                            (n.state, n.lease.token),
                            (to, lease.token),
                            "a transition keeps the token"
                        );
                        assert!(!n.resendable || to == AttemptState::Failed);
                        if !to.in_flight() {
                            assert_eq!(n.lease.owner, None, "out of flight: released");
                        }
                        self.resent += usize::from(a.state == AttemptState::Failed);
                        self.over_captured += usize::from(n.held() > n.amount && a.held() <= a.amount);
                        self.put(next);
                        self.orders.insert(order.order_id.clone(), order);
                        self.moved += 1;
                    }
                    Err(StoreError::LeaseLost { token, presented, .. }) => {
                        assert!(!fenced);
                        assert_eq!((token, presented), (lease.token, fence.token));
                    }
                    Err(StoreError::StateConflict { found, .. }) => {
                        assert!(fenced && !from.contains(&found));
                    }
                    Err(StoreError::InvalidTransition { from: f, to: t, .. }) => {
                        assert!(fenced && from.contains(&f));
                        assert!(!transition_allowed(f, t) || (f == AttemptState::Failed && !a.resendable));
                    }
                    Err(StoreError::ResendRefused { .. }) => {
                        assert!(fenced);
                        self.refused += 1;
                    }
                    Err(StoreError::InvalidInput { .. }) => assert!(fenced),
                    Err(e) => panic!("transition: unexpected {e}"),
                }
            }
            Op::TakeLease { attempt, owner: o, lease_ms, min_age_ms, now } => {
                if self.attempts.is_empty() {
                    return;
                }
                let current = self.attempts[attempt % self.attempts.len()].clone();
                let before = current.attempt.lease.clone();
                let state = current.attempt.state;
                let resendable = current.attempt.resendable;
                let who = owner(*o);
                match plan_take_lease(current, &who, *lease_ms, *min_age_ms, Timestamp(*now)) {
                    Ok(LeasePlan::Answer(LeaseGrant::Final(a))) => {
                        assert!(state.is_final() && !(state == AttemptState::Failed && resendable));
                        assert_eq!(a.lease, before);
                    }
                    Ok(LeasePlan::Answer(LeaseGrant::Held { owner, until, clamped })) => {
                        assert!(!clamped);
                        assert_eq!((owner, until), (before.owner.clone(), before.until));
                        assert!(before.owner.is_some() && before.until > Timestamp(*now));
                    }
                    Ok(LeasePlan::Answer(LeaseGrant::Granted(_))) => panic!("a grant is always written"),
                    Ok(LeasePlan::Write(next, grant)) => {
                        let n = next.attempt.lease.clone();
                        match grant {
                            LeaseGrant::Granted(g) => {
                                assert_eq!(g, next.attempt);
                                assert_eq!(n.owner.as_deref(), Some(who.as_str()));
                                assert_eq!(n.token, before.token + 1, "each grant: the next token");
                                assert_eq!(
                                    (n.taken_at, n.until),
                                    (Timestamp(*now), Timestamp(now + lease_ms))
                                );
                                self.granted += 1;
                            }
                            LeaseGrant::Held { owner, until, clamped } => {
                                assert!(clamped, "a Held answer writes only a clamp");
                                assert_eq!(
                                    (&owner, n.token, &n.owner),
                                    (&before.owner, before.token, &before.owner)
                                );
                                assert_eq!(until, Timestamp(now + lease_ms));
                                assert!(n.until == until && before.until > until);
                                self.clamped += 1;
                            }
                            LeaseGrant::Final(_) => panic!("a Final answer writes nothing"),
                        }
                        self.put(next);
                    }
                    Err(StoreError::InvalidInput { .. }) => {}
                    Err(e) => panic!("take_lease: unexpected {e}"),
                }
            }
        }
    }

    fn check(&mut self) {
        for (id, order) in &self.orders {
            let attempts: Vec<_> =
                self.attempts.iter().map(|s| &s.attempt).filter(|a| &a.order_id == id).collect();
            let held = attempts.iter().try_fold(m(0), |acc, a| acc.checked_add(a.held())).unwrap();
            assert_eq!(order.held, held, "{id}: the row's held vs Σ held() of {attempts:?}");
            let over = attempts
                .iter()
                .map(|a| a.held().checked_sub(a.amount).unwrap())
                .filter(|d| !d.is_negative())
                .try_fold(m(0), |acc, d| acc.checked_add(d))
                .unwrap();
            assert!(
                held.checked_sub(over).unwrap() <= order.bound(),
                "{id}: held {held} (over-captures {over}) past the bound {}",
                order.bound()
            );
            let flying: Vec<&str> =
                attempts.iter().filter(|a| a.state.in_flight()).map(|a| a.id.as_str()).collect();
            assert!(flying.len() <= 1, "{id}: several in flight: {flying:?}");
            assert_eq!(order.in_flight.as_deref(), flying.first().copied(), "{id}: in_flight");
        }
        for s in &self.attempts {
            let a = &s.attempt;
            let seen = self.tokens.entry(a.id.clone()).or_insert(a.lease.token);
            assert!(a.lease.token >= *seen, "{}: token went back from {seen} to {}", a.id, a.lease.token);
            *seen = a.lease.token;
            assert!(!a.resendable || a.state == AttemptState::Failed);
            if a.state.in_flight() {
                assert!(a.lease.owner.is_some(), "{} is {} with nobody holding it", a.id, a.state);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_keeps_the_ledger_invariants(ops in prop::collection::vec(op(), 1..80)) {
        let mut model = Model::default();
        for op in &ops {
            model.apply(op);
            model.check();
        }
    }
}

/// The generator reaches every kind of outcome (otherwise the property above proves little):
/// one fixed seed, many sequences, counted.
#[test]
fn the_generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let strategy = prop::collection::vec(op(), 40..80);
    let mut total = Model::default();
    for _ in 0..200 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::default();
        for op in &ops {
            model.apply(op);
            model.check();
        }
        total.reserved += model.reserved;
        total.moved += model.moved;
        total.granted += model.granted;
        total.clamped += model.clamped;
        total.resent += model.resent;
        total.over_captured += model.over_captured;
        total.refused += model.refused;
    }
    println!(
        "200 sequences: {} reservations, {} transitions ({} resends of a failure, {} over-captures), {} resends \
         refused, {} leases granted, {} clamped",
        total.reserved,
        total.moved,
        total.resent,
        total.over_captured,
        total.refused,
        total.granted,
        total.clamped
    );
    for (what, n) in [
        ("reservations", total.reserved),
        ("transitions", total.moved),
        ("resends", total.resent),
        ("over-captures", total.over_captured),
        ("refused resends", total.refused),
        ("grants", total.granted),
        ("clamps", total.clamped),
    ] {
        assert!(n > 0, "the generator never produced {what}");
    }
}
