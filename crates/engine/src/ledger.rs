//! Exactly-once captures: the engine's side of the capture ledger (`capture-store`).
//!
//! Every capture that passed pre-validation is first **reserved** in the ledger (the idempotency
//! key is unique per merchant and platform; the amounts held for the order stay within what was
//! authorized; no other attempt of the order is in flight), then marked **sent** just before the
//! request leaves, then recorded as **captured**, **pending**, **failed** or **unknown**.
//!
//! - The same key with the same request replays the recorded outcome; with another order or
//!   amount it is refused.
//! - An unknown outcome (timeout, dropped connection, a 5xx from a platform without idempotency)
//!   is resolved by reading the platform's state (the connector's status query) or, where the
//!   platform deduplicates by key (Optty's `captureReference`), by sending the same key again.
//!   Nothing new is sent for an order while one of its attempts is unresolved.
//! - Retries happen only where the connector says they are safe (429 after its reset hint,
//!   connection refused), with exponential backoff and jitter from the injected [`Random`].
//! - [`Engine::reconcile`] resolves every attempt left in sent, pending or unknown (and
//!   abandoned reservations), on start and on demand.

use std::sync::Mutex;
use std::time::Duration;

use capture_core::{
    CaptureRequest, FailureKind, Money, Outcome, OutcomeRecord, RequestError, Stage, StepSource,
};
use capture_store::{
    Attempt, AttemptState, AttemptUpdate, CaptureStore, NewAttempt, Reservation, fingerprint,
};

use crate::engine::{CaptureError, Engine, Platform, Run, StatusQuery, target_payments};

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

/// What reconciliation did to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The attempt.
    pub attempt: String,
    /// Platform and order.
    pub platform: String,
    /// The platform's order id.
    pub order_id: String,
    /// State before.
    pub before: AttemptState,
    /// State after.
    pub after: AttemptState,
    /// What happened.
    pub detail: String,
}

/// The ledger state an outcome leaves an attempt in, and whether sending again is safe.
fn state_of(outcome: &Outcome, idempotent_platform: bool) -> (AttemptState, bool) {
    match outcome {
        Outcome::Captured { .. } => (AttemptState::Captured, false),
        Outcome::Pending { .. } => (AttemptState::Pending, false),
        Outcome::AlreadyCaptured { .. } => (AttemptState::AlreadyCaptured, false),
        Outcome::Failed { kind: FailureKind::OutcomeUnknown, .. } => (AttemptState::Unknown, false),
        // A 5xx may hide an applied capture, unless the platform deduplicates by key.
        Outcome::Failed { kind: FailureKind::PlatformUnavailable, retryable, .. } => {
            if *retryable || idempotent_platform {
                (AttemptState::Failed, true)
            } else {
                (AttemptState::Unknown, false)
            }
        }
        Outcome::Failed { retryable, .. } => (AttemptState::Failed, *retryable),
        // Not reached for a sent attempt; recorded as a final failure to be safe.
        Outcome::Rejected { .. } | Outcome::Held { .. } => (AttemptState::Failed, false),
    }
}

fn record(outcome: &Outcome) -> Option<String> {
    serde_json::to_string(&OutcomeRecord::from(outcome)).ok()
}

fn recorded_outcome(a: &Attempt) -> Result<Outcome, String> {
    let text = a.outcome.as_deref().ok_or_else(|| format!("attempt {} has no recorded outcome", a.id))?;
    let rec: OutcomeRecord = serde_json::from_str(text).map_err(|e| format!("attempt {}: {e}", a.id))?;
    Outcome::try_from(rec)
}

fn ledger_failure(message: String) -> Outcome {
    Outcome::Failed {
        kind: FailureKind::InvalidState,
        retryable: true,
        platform_code: None,
        message,
        retry_after_ms: None,
    }
}

/// The point in a capture where the ledger records that the request is about to leave.
pub(crate) struct Gate<'a> {
    pub(crate) store: &'a dyn CaptureStore,
    /// The canonical request in its wire form, stored with the attempt so reconciliation can
    /// resolve it without its caller.
    pub(crate) wire: &'a serde_json::Value,
    pub(crate) attempt: &'a str,
    pub(crate) from: &'a [AttemptState],
    pub(crate) now: capture_core::Timestamp,
}

impl Engine {
    pub(crate) fn crash_point(&self, at: CrashPoint) {
        if self.crash_at == Some(at) {
            // A test hook: die as a SIGKILL would, with nothing flushed and no destructor run.
            std::process::abort();
        }
    }

    /// How long an attempt in `sent` belongs to the process that sent it: every send it may
    /// make, each up to the platform's timeout, and the waits between them.
    fn in_flight_window(&self, platform: &Platform) -> u64 {
        let sends = u64::from(self.retry.max_sends.max(1));
        let per_send = u64::try_from(platform.setup.timeout.as_millis()).unwrap_or(u64::MAX);
        let waits = u64::try_from(self.retry.max_delay.as_millis()).unwrap_or(u64::MAX);
        per_send.saturating_add(waits).saturating_mul(sends)
    }

    /// The most the ledger may hold for this order: the authorized total minus captures the
    /// snapshot lists that this ledger did not make.
    async fn bound(&self, store: &dyn CaptureStore, req: &CaptureRequest) -> Result<Money, String> {
        let ours = store
            .order_attempts(&self.merchant, &req.platform, &req.order.id)
            .await
            .map_err(|e| e.to_string())?;
        let mut bound = req.order.authorized_total().map_err(|e| e.to_string())?;
        for c in &req.order.captures {
            if !ours.iter().any(|a| {
                a.idempotency_key == c.reference || a.platform_capture_id.as_deref() == Some(&c.reference)
            }) {
                bound = bound.checked_sub(c.amount).map_err(|e| e.to_string())?;
            }
        }
        Ok(if bound.is_negative() { Money::zero(req.order.currency) } else { bound })
    }

    /// The capture stage with the ledger: reserve, send (with safe retries), record, resolve.
    pub(crate) async fn capture_with_ledger(
        &self,
        platform: &Platform,
        req: &CaptureRequest,
        amount: Money,
        capture_id: &str,
        run: &mut Run,
    ) -> Result<Outcome, CaptureError> {
        let Some(store) = self.store.as_deref() else {
            return Ok(self.call_platform(platform, req, amount, run, None).await);
        };
        let now = self.clock.now();
        let bound = match self.bound(store, req).await {
            Ok(b) => b,
            Err(e) => {
                return Ok(ledger_failure(format!("the ledger could not be read: {e} (nothing was sent)")));
            }
        };
        let payments: Vec<(String, Money)> =
            target_payments(req, amount).into_iter().map(|(p, m)| (p.id.clone(), m)).collect();
        let new = NewAttempt {
            id: capture_id.to_owned(),
            merchant: self.merchant.clone(),
            platform: req.platform.clone(),
            idempotency_key: req.idempotency_key.clone(),
            fingerprint: fingerprint(&req.platform, &req.order.id, &amount, &payments),
            order_id: req.order.id.clone(),
            payment_ids: payments.iter().map(|(id, _)| id.clone()).collect(),
            amount,
            bound,
            now,
        };
        let step = |run: &mut Run, verdict: &str, detail: String| {
            run.step(Stage::Capture, StepSource::Builtin, "ledger", None, verdict, Some(detail));
        };
        let attempt = match store.reserve(&new).await {
            Err(e) => {
                step(run, "error", e.to_string());
                return Ok(ledger_failure(format!(
                    "the ledger refused the reservation: {e} (nothing was sent)"
                )));
            }
            Ok(Reservation::Reserved(a)) => {
                step(run, "reserved", format!("attempt {} holds {amount} of {bound}", a.id));
                self.crash_point(CrashPoint::Reserved);
                a
            }
            Ok(Reservation::Existing(a)) => match a.state {
                AttemptState::Failed if a.resendable => {
                    step(run, "resend", format!("attempt {} failed without effect; sending it again", a.id));
                    a
                }
                AttemptState::Captured
                | AttemptState::Pending
                | AttemptState::AlreadyCaptured
                | AttemptState::Failed => {
                    step(
                        run,
                        "replayed",
                        format!(
                            "attempt {} is {}: its recorded outcome, nothing sent",
                            a.id,
                            a.state.as_str()
                        ),
                    );
                    return Ok(recorded_outcome(&a).unwrap_or_else(ledger_failure));
                }
                AttemptState::Sent
                    if now.0.saturating_sub(a.updated_at.0) < self.in_flight_window(platform) =>
                {
                    // Another task or process is sending it right now: never race its answer.
                    step(run, "busy", format!("attempt {} is being sent", a.id));
                    return Ok(ledger_failure(format!(
                        "attempt {} with this key is being sent by another task or process; ask again later",
                        a.id
                    )));
                }
                AttemptState::Sent | AttemptState::Unknown => {
                    step(
                        run,
                        "resolving",
                        format!(
                            "attempt {} is {}: reading the platform's state first",
                            a.id,
                            a.state.as_str()
                        ),
                    );
                    return Ok(self.resolve(store, platform, Some(req), &a, run).await.1);
                }
                AttemptState::Reserved => {
                    step(run, "busy", format!("attempt {} is being sent", a.id));
                    return Ok(ledger_failure(format!(
                        "attempt {} with this key is being sent by another task or process; ask again later",
                        a.id
                    )));
                }
            },
            Ok(Reservation::KeyConflict(a)) => {
                return Err(RequestError::Invalid {
                    field: "idempotency_key".into(),
                    problem: format!(
                        "`{}` was first used for order {} and {} (attempt {}); this request is for order {} and {amount}",
                        req.idempotency_key, a.order_id, a.amount, a.id, req.order.id
                    ),
                }
                .into());
            }
            Ok(Reservation::OverBound { held, bound }) => {
                step(run, "over_bound", format!("held {held}, bound {bound}"));
                return Ok(Outcome::Rejected {
                    by: "builtin:ledger".into(),
                    code: "amount_exceeds_capturable".into(),
                    reason: format!(
                        "the ledger already holds {held} of the {bound} order {} allows; {amount} more would exceed it",
                        req.order.id
                    ),
                });
            }
            Ok(Reservation::OrderBusy(a)) => {
                step(run, "busy", format!("attempt {} of the order is {}", a.id, a.state.as_str()));
                return Ok(ledger_failure(format!(
                    "capture {} of order {} is {}: it must be resolved before another capture is sent (capture reconcile)",
                    a.id,
                    req.order.id,
                    a.state.as_str()
                )));
            }
        };
        Ok(self.send_attempt(store, platform, req, amount, attempt, run).await)
    }

    /// Sends a reserved (or resendable) attempt, retrying where safe, and records each outcome.
    async fn send_attempt(
        &self,
        store: &dyn CaptureStore,
        platform: &Platform,
        req: &CaptureRequest,
        amount: Money,
        mut attempt: Attempt,
        run: &mut Run,
    ) -> Outcome {
        let idempotent = platform.plugin.manifest().capabilities.idempotency_key;
        loop {
            let from = [attempt.state];
            let wire = req.to_wire_json();
            let gate = Gate { store, wire: &wire, attempt: &attempt.id, from: &from, now: self.clock.now() };
            let outcome = self.call_platform(platform, req, amount, run, Some(&gate)).await;
            let sent =
                store.get(&attempt.id).await.ok().flatten().is_some_and(|a| a.state == AttemptState::Sent);
            if !sent {
                // Nothing left: the connector refused or the ledger refused before sending.
                if attempt.state == AttemptState::Reserved {
                    let update = AttemptUpdate {
                        outcome: record(&outcome),
                        resendable: Some(false),
                        ..AttemptUpdate::default()
                    };
                    let _ = store
                        .transition(
                            &attempt.id,
                            &[AttemptState::Reserved],
                            AttemptState::Failed,
                            update,
                            self.clock.now(),
                        )
                        .await;
                }
                return outcome;
            }
            self.crash_point(CrashPoint::Answered);
            let (state, resendable) = state_of(&outcome, idempotent);
            let response = run
                .exchanges
                .last()
                .and_then(|e| e.response.as_ref())
                .and_then(|r| serde_json::to_string(r).ok());
            let update = AttemptUpdate {
                resendable: Some(resendable),
                platform_capture_id: platform_capture_id(&outcome),
                response,
                outcome: record(&outcome),
                ..AttemptUpdate::default()
            };
            attempt = match store
                .transition(&attempt.id, &[AttemptState::Sent], state, update, self.clock.now())
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    run.step(
                        Stage::Capture,
                        StepSource::Builtin,
                        "ledger",
                        None,
                        "error",
                        Some(e.to_string()),
                    );
                    return outcome;
                }
            };
            run.step(
                Stage::Capture,
                StepSource::Builtin,
                "ledger",
                None,
                state.as_str(),
                Some(format!("attempt {} recorded", attempt.id)),
            );
            if state == AttemptState::Unknown {
                return self.resolve(store, platform, Some(req), &attempt, run).await.1;
            }
            let hint = match &outcome {
                Outcome::Failed { retry_after_ms, .. } => *retry_after_ms,
                _ => None,
            };
            if state == AttemptState::Failed && resendable && attempt.sends < self.retry.max_sends {
                let wait = self.retry.delay(attempt.sends, hint, self.random.as_ref());
                run.step(
                    Stage::Capture,
                    StepSource::Builtin,
                    "retry",
                    None,
                    "wait",
                    Some(format!(
                        "send {} of at most {} after {} ms",
                        attempt.sends + 1,
                        self.retry.max_sends,
                        wait.as_millis()
                    )),
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return outcome;
        }
    }

    /// Resolves an attempt left in sent, unknown or pending: reads the platform's state through
    /// the connector's status query, or, for a platform that deduplicates by key, sends the same
    /// key again. Returns the state reached and the outcome to report.
    async fn resolve(
        &self,
        store: &dyn CaptureStore,
        platform: &Platform,
        req: Option<&CaptureRequest>,
        a: &Attempt,
        run: &mut Run,
    ) -> (AttemptState, Outcome) {
        let plugin = &platform.plugin;
        let now = self.clock.now();
        if plugin.supports_status() {
            let q = StatusQuery {
                platform: a.platform.clone(),
                order_id: a.order_id.clone(),
                currency: a.amount.currency(),
                payment_ids: a.payment_ids.clone(),
                idempotency_key: Some(a.idempotency_key.clone()),
                platform_capture_id: a.platform_capture_id.clone(),
            };
            let outcome = match self.status(&q).await {
                Ok(report) => {
                    run.steps.extend(report.steps);
                    run.exchanges.extend(report.exchanges);
                    report.outcome
                }
                Err(e) => ledger_failure(e.to_string()),
            };
            let (to, resendable) = match &outcome {
                Outcome::Captured { .. } | Outcome::AlreadyCaptured { .. } => (AttemptState::Captured, false),
                Outcome::Pending { .. } => (AttemptState::Pending, false),
                // The platform has no capture of it: nothing was applied; the key may be sent again.
                Outcome::Failed { kind: FailureKind::NotFound, .. } => (AttemptState::Failed, true),
                Outcome::Failed { kind: FailureKind::InvalidState, platform_code: Some(_), .. } => {
                    (AttemptState::Failed, false)
                }
                // The platform could not be read: still unknown.
                _ => (a.state, false),
            };
            let outcome = match (&outcome, to) {
                (Outcome::AlreadyCaptured { .. }, AttemptState::Captured) => {
                    Outcome::Captured { amount: a.amount, platform_capture_id: a.platform_capture_id.clone() }
                }
                _ => outcome,
            };
            if to != a.state {
                let update = AttemptUpdate {
                    resendable: Some(resendable),
                    outcome: record(&outcome),
                    ..AttemptUpdate::default()
                };
                if let Err(e) = store.transition(&a.id, &[a.state], to, update, now).await {
                    run.step(
                        Stage::Capture,
                        StepSource::Builtin,
                        "ledger",
                        None,
                        "error",
                        Some(e.to_string()),
                    );
                    return (a.state, outcome);
                }
                run.step(
                    Stage::Capture,
                    StepSource::Builtin,
                    "ledger",
                    None,
                    to.as_str(),
                    Some(format!("attempt {} resolved from the platform's state", a.id)),
                );
            }
            let outcome = if to == AttemptState::Unknown || to == AttemptState::Sent {
                Outcome::Failed {
                    kind: FailureKind::OutcomeUnknown,
                    retryable: false,
                    platform_code: None,
                    message: format!(
                        "attempt {} is still unresolved: the platform's state could not be read; run `capture reconcile` later",
                        a.id
                    ),
                    retry_after_ms: None,
                }
            } else {
                outcome
            };
            return (to, outcome);
        }
        if plugin.manifest().capabilities.idempotency_key
            && let Some(req) = req
        {
            // Same key again: the platform applies it at most once.
            run.step(
                Stage::Capture,
                StepSource::Builtin,
                "ledger",
                None,
                "resend",
                Some(format!("attempt {}: same key again, the platform deduplicates it", a.id)),
            );
            if a.state == AttemptState::Sent {
                // Sent and never answered (a crash, a lost answer): unknown first, then asked again.
                let _ = store
                    .transition(
                        &a.id,
                        &[AttemptState::Sent],
                        AttemptState::Unknown,
                        AttemptUpdate::default(),
                        now,
                    )
                    .await;
            }
            let wire = req.to_wire_json();
            let gate = Gate { store, wire: &wire, attempt: &a.id, from: &[AttemptState::Unknown], now };
            let outcome = self.call_platform(platform, req, a.amount, run, Some(&gate)).await;
            let outcome = match outcome {
                // Our own earlier send went through.
                Outcome::AlreadyCaptured { .. } => {
                    Outcome::Captured { amount: a.amount, platform_capture_id: a.platform_capture_id.clone() }
                }
                o => o,
            };
            let (state, resendable) = state_of(&outcome, true);
            let update = AttemptUpdate {
                resendable: Some(resendable),
                outcome: record(&outcome),
                platform_capture_id: platform_capture_id(&outcome),
                ..AttemptUpdate::default()
            };
            let state = match store.transition(&a.id, &[AttemptState::Sent], state, update, now).await {
                Ok(x) => x.state,
                Err(_) => a.state,
            };
            return (state, outcome);
        }
        (
            a.state,
            Outcome::Failed {
                kind: FailureKind::OutcomeUnknown,
                retryable: false,
                platform_code: None,
                message: format!(
                    "attempt {} is {} and connector `{}` can neither read the platform's state nor resend safely: check the platform by hand",
                    a.id,
                    a.state.as_str(),
                    plugin.manifest().id
                ),
                retry_after_ms: None,
            },
        )
    }

    /// Resolves every attempt left in sent, pending or unknown, and releases reservations older
    /// than `abandoned_after` that were never sent (a crash between reserving and sending).
    pub async fn reconcile(&self, abandoned_after: Duration) -> Result<Vec<Reconciled>, String> {
        let Some(store) = self.store.as_deref() else {
            return Err("no capture ledger is configured".into());
        };
        let now = self.clock.now();
        let mut out = Vec::new();
        for a in store.unresolved().await.map_err(|e| e.to_string())? {
            if a.merchant != self.merchant {
                continue;
            }
            let mut run = Run::default();
            let (after, detail) = match a.state {
                AttemptState::Reserved => {
                    let age = now.0.saturating_sub(a.updated_at.0);
                    if u128::from(age) < abandoned_after.as_millis() {
                        (a.state, "reserved moments ago: left to its process".to_owned())
                    } else {
                        let outcome = ledger_failure(format!(
                            "attempt {} was reserved but never sent (the process stopped); released",
                            a.id
                        ));
                        let update = AttemptUpdate {
                            resendable: Some(true),
                            outcome: record(&outcome),
                            ..AttemptUpdate::default()
                        };
                        match store
                            .transition(&a.id, &[AttemptState::Reserved], AttemptState::Failed, update, now)
                            .await
                        {
                            Ok(x) => {
                                (x.state, "never sent: released (the same key may be sent again)".to_owned())
                            }
                            Err(e) => (a.state, e.to_string()),
                        }
                    }
                }
                AttemptState::Sent
                    if u128::from(now.0.saturating_sub(a.updated_at.0)) < abandoned_after.as_millis() =>
                {
                    (a.state, "sent moments ago: left to its process".to_owned())
                }
                _ => match self.platforms.get(&a.platform) {
                    None => (a.state, format!("platform `{}` is not configured here", a.platform)),
                    Some(platform) => {
                        // The request stored with the attempt lets a deduplicating platform be
                        // asked again with the same key.
                        let req = stored_request(&a);
                        let (state, outcome) =
                            self.resolve(store, platform, req.as_ref(), &a, &mut run).await;
                        (state, crate::engine::describe_outcome(&outcome))
                    }
                },
            };
            out.push(Reconciled {
                attempt: a.id.clone(),
                platform: a.platform.clone(),
                order_id: a.order_id.clone(),
                before: a.state,
                after,
                detail: self.scrubber.scrub(&detail).into_owned(),
            });
        }
        Ok(out)
    }
}

/// The canonical request stored with an attempt when it was sent.
fn stored_request(a: &Attempt) -> Option<CaptureRequest> {
    let stored: serde_json::Value = serde_json::from_str(a.request.as_deref()?).ok()?;
    CaptureRequest::from_json(stored.get("capture_request")?.to_string().as_bytes()).ok()
}

fn platform_capture_id(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Captured { platform_capture_id, .. } | Outcome::Pending { platform_capture_id, .. } => {
            platform_capture_id.clone()
        }
        _ => None,
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

    #[test]
    fn unknown_is_never_resendable() {
        let usd = capture_core::Currency::from_code("USD").unwrap();
        let unavailable = |retryable| Outcome::Failed {
            kind: FailureKind::PlatformUnavailable,
            retryable,
            platform_code: Some("503".into()),
            message: String::new(),
            retry_after_ms: None,
        };
        assert_eq!(state_of(&unavailable(false), false), (AttemptState::Unknown, false));
        assert_eq!(state_of(&unavailable(false), true), (AttemptState::Failed, true));
        assert_eq!(
            state_of(
                &Outcome::Captured { amount: Money::from_minor(1, usd), platform_capture_id: None },
                false
            ),
            (AttemptState::Captured, false)
        );
    }
}
