//! The capture stage's driver: performs what the machine (`machine.rs`) decides — store writes
//! under the attempt's lease, plugin calls and HTTP (`io.rs`), waits through the injected
//! [`Sleeper`](crate::Sleeper) — and feeds every result back to it as the next event. It makes no
//! decision of its own: every answer, including a refused compare-and-set, goes through
//! [`machine::step`].

use std::time::Duration;

use capture_core::{
    Anomaly, CaptureRequest, FailureKind, Money, Outcome, OutcomeRecord, RequestError, Stage, StepSource,
    Timestamp,
};
use capture_store::{
    Attempt, AttemptState, AttemptUpdate, Authorization, CaptureStore, Fence, LeaseGrant, NewAttempt,
    Reservation, StoreError, fingerprint,
};

use crate::engine::{CaptureError, Engine, Platform, Run, StatusQuery, target_payments};
use crate::io::{CallResult, Gate};
use crate::machine::{self, Ctx, Event, Mode, Next, View};
use crate::policy::CrashPoint;

/// The most steps one drive takes: every path of the machine ends well before; this is the
/// guard against a loop the machine should never make.
const MAX_STEPS: u32 = 64;

/// What reconciliation did to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The attempt.
    pub attempt: String,
    /// The platform.
    pub platform: String,
    /// The platform's order id.
    pub order_id: String,
    /// State before.
    pub before: AttemptState,
    /// State after.
    pub after: AttemptState,
    /// What happened.
    pub detail: String,
    /// The attempt still blocks its order (reserved, sent or unknown).
    pub blocking: bool,
    /// When another holder's lease on it ends, if one holds it (after that, reconcile again).
    pub frees_at: Option<Timestamp>,
}

/// The engine's reconcile-on-start policy: how much of what the ledger holds unresolved a
/// process resolves when it starts ([`crate::EngineBuilder::reconcile_on_start`],
/// [`Engine::reconcile_on_start`]). A bound keeps a start quick after a bad day (thousands of
/// attempts left unknown): the rest waits, untouched, for `capture reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileOnStart {
    /// At most this many attempts are examined, oldest first (0: none; the start only counts
    /// what waits).
    pub max_attempts: usize,
    /// No attempt is started once this much time has passed since the pass began (an attempt
    /// started is finished).
    pub max_duration: Duration,
    /// Take over attempts whose lease was taken at least this long ago even if it has not
    /// expired (their holder is known to be dead); `None`: only free or expired leases.
    pub takeover_after: Option<Duration>,
}

impl ReconcileOnStart {
    /// The default: at most 100 attempts and 10 seconds, expired leases only.
    pub const DEFAULT: ReconcileOnStart =
        ReconcileOnStart { max_attempts: 100, max_duration: Duration::from_secs(10), takeover_after: None };

    /// No reconciliation on start (what waits is still counted).
    pub const OFF: ReconcileOnStart =
        ReconcileOnStart { max_attempts: 0, max_duration: Duration::ZERO, takeover_after: None };
}

impl Default for ReconcileOnStart {
    fn default() -> Self {
        ReconcileOnStart::DEFAULT
    }
}

/// Which bound of [`ReconcileOnStart`] ended a pass early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileBound {
    /// `max_attempts` were examined.
    Attempts,
    /// `max_duration` passed.
    Duration,
}

/// What [`Engine::reconcile_on_start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "report what reconciling on start did, and what it left"]
pub struct StartReconciled {
    /// The attempts examined, oldest first, with what became of each (those still `blocking`
    /// could not be resolved yet).
    pub examined: Vec<Reconciled>,
    /// Unresolved attempts of this merchant the bound left unexamined: still in the ledger, as
    /// they were, for a later reconcile.
    pub left: usize,
    /// The bound that ended the pass, if one did.
    pub stopped_by: Option<ReconcileBound>,
}

fn record_json(outcome: &Outcome) -> Option<String> {
    serde_json::to_string(&OutcomeRecord::from(outcome)).ok()
}

fn recorded_outcome(a: &Attempt) -> Outcome {
    let parsed = a
        .outcome
        .as_deref()
        .ok_or_else(|| format!("attempt {} has no recorded outcome", a.id))
        .and_then(|text| {
            serde_json::from_str::<OutcomeRecord>(text).map_err(|e| format!("attempt {}: {e}", a.id))
        })
        .and_then(Outcome::try_from);
    match parsed {
        Ok(o) => o,
        Err(message) => ledger_failure(message),
    }
}

fn recorded_anomaly(a: &Attempt) -> Option<Anomaly> {
    let code = a.anomaly.clone()?;
    let detail = match a.captured {
        Some(c) => format!("asked the platform for {}, it reports {c} (recorded)", a.amount),
        None => "recorded with the attempt".to_owned(),
    };
    Some(Anomaly { code, detail })
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

fn platform_capture_id(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Captured { platform_capture_id, .. } | Outcome::Pending { platform_capture_id, .. } => {
            platform_capture_id.clone()
        }
        _ => None,
    }
}

/// The canonical request stored with an attempt when it was sent.
fn stored_request(a: &Attempt) -> Option<CaptureRequest> {
    let stored: serde_json::Value = serde_json::from_str(a.request.as_deref()?).ok()?;
    CaptureRequest::from_json(stored.get("capture_request")?.to_string().as_bytes()).ok()
}

/// One drive: the attempt, what the driver may do with it, and where its result goes.
struct Drive<'a> {
    store: &'a dyn CaptureStore,
    platform: &'a Platform,
    req: Option<&'a CaptureRequest>,
    mode: Mode,
    takeover_after: Option<u64>,
}

impl Engine {
    pub(crate) fn crash_point(&self, at: CrashPoint) {
        if self.crash_at == Some(at) {
            // A test hook: die as a SIGKILL would, with nothing flushed and no destructor run.
            std::process::abort();
        }
    }

    /// How long an attempt belongs to the process that reserved or sent it (its lease), and how
    /// long after a send the platform may still apply it: every send it may make, each up to the
    /// platform's timeout, and the waits between them.
    pub(crate) fn window_ms(&self, platform: &Platform) -> u64 {
        let sends = u64::from(self.retry.max_sends.max(1));
        let per_send = u64::try_from(platform.setup.timeout.as_millis()).unwrap_or(u64::MAX);
        let waits = u64::try_from(self.retry.max_delay.as_millis()).unwrap_or(u64::MAX);
        per_send.saturating_add(waits).saturating_mul(sends)
    }

    /// Captures the snapshot lists that this ledger did not make (they shrink the bound).
    async fn external_captures(
        &self,
        store: &dyn CaptureStore,
        req: &CaptureRequest,
    ) -> Result<Money, String> {
        // Most snapshots list no earlier capture: no need to read the order's attempts then.
        if req.order.captures.is_empty() {
            return Ok(Money::zero(req.order.currency));
        }
        let ours = store
            .order_attempts(&self.merchant, &req.platform, &req.order.id)
            .await
            .map_err(|e| e.to_string())?;
        let mut external = Money::zero(req.order.currency);
        for c in &req.order.captures {
            if !ours.iter().any(|a| {
                a.idempotency_key == c.reference || a.platform_capture_id.as_deref() == Some(&c.reference)
            }) {
                external = external.checked_add(c.amount).map_err(|e| e.to_string())?;
            }
        }
        Ok(external)
    }

    /// The capture stage with the ledger: reserve, then drive the attempt through the machine.
    /// Without a ledger, one send and its outcome.
    pub(crate) async fn capture_stage(
        &self,
        platform: &Platform,
        req: &CaptureRequest,
        amount: Money,
        capture_id: &str,
        run: &mut Run,
    ) -> Result<(Outcome, Option<Anomaly>), CaptureError> {
        let Some(store) = self.store.as_deref() else {
            let outcome =
                self.call_platform(platform, req, amount, run, None, &mut None).await.into_outcome();
            let anomaly = machine::amount_anomaly(amount, &outcome);
            return Ok((outcome, anomaly));
        };
        let now = self.clock.now();
        let step = |run: &mut Run, verdict: &str, detail: String| {
            run.step(Stage::Capture, StepSource::Builtin, "ledger", None, verdict, Some(detail));
        };
        let external = match self.external_captures(store, req).await {
            Ok(e) => e,
            Err(e) => {
                step(run, "error", e.clone());
                return Ok((
                    ledger_failure(format!("the ledger could not be read: {e} (nothing was sent)")),
                    None,
                ));
            }
        };
        let payments: Vec<(String, Money)> =
            target_payments(req, amount).into_iter().map(|(p, m)| (p.id.clone(), m)).collect();
        let authorization = Authorization::from_payments(
            req.order.payments.iter().map(|p| (p.id.clone(), p.amount)).collect(),
            req.order.currency,
        );
        let window = self.window_ms(platform);
        let new = NewAttempt {
            id: capture_id.to_owned(),
            merchant: self.merchant.clone(),
            platform: req.platform.clone(),
            idempotency_key: req.idempotency_key.clone(),
            fingerprint: fingerprint(&req.platform, &req.order.id, &amount, &payments),
            order_id: req.order.id.clone(),
            payment_ids: payments.iter().map(|(id, _)| id.clone()).collect(),
            amount,
            authorization,
            external,
            owner: self.owner.clone(),
            lease_ms: window,
            now,
        };
        let drive = Drive { store, platform, req: Some(req), mode: Mode::Capture, takeover_after: None };
        let (attempt, fence, event) = match store.reserve(&new).await {
            Err(e) => {
                step(run, "error", e.to_string());
                return Ok((
                    ledger_failure(format!("the ledger refused the reservation: {e} (nothing was sent)")),
                    None,
                ));
            }
            Ok(Reservation::Reserved(a)) => {
                step(run, "reserved", format!("attempt {} holds {amount}", a.id));
                self.crash_point(CrashPoint::Reserved);
                let fence = a.fence();
                (a, fence, Event::Reserved)
            }
            Ok(Reservation::Existing(a)) => {
                step(run, "existing", format!("attempt {} with this key is {}", a.id, a.state.as_str()));
                (a, None, Event::Existing)
            }
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
            Ok(Reservation::AuthorizationMismatch { recorded, given }) => {
                return Err(RequestError::Invalid {
                    field: "order.payments".into(),
                    problem: format!(
                        "the ledger recorded the authorization of order {} as {recorded}; this request's snapshot states {given}. \
                         An authorization does not change between captures: fix the snapshot",
                        req.order.id
                    ),
                }
                .into());
            }
            Ok(Reservation::OverBound { held, bound }) => {
                step(run, "over_bound", format!("held {held}, bound {bound}"));
                return Ok((
                    Outcome::Rejected {
                        by: "builtin:ledger".into(),
                        code: "amount_exceeds_capturable".into(),
                        reason: format!(
                            "the ledger already holds {held} of the {bound} order {} allows; {amount} more would exceed it",
                            req.order.id
                        ),
                    },
                    None,
                ));
            }
            Ok(Reservation::OrderBusy(a)) => {
                step(run, "busy", format!("attempt {} of the order is {}", a.id, a.state.as_str()));
                let frees = match a.lease.owner {
                    Some(_) if a.lease.until > now => format!(
                        "; its holder has it until {}, then `capture reconcile` resolves it",
                        a.lease.until.to_rfc3339()
                    ),
                    _ => "; run `capture reconcile` to resolve it".to_owned(),
                };
                return Ok((
                    ledger_failure(format!(
                        "capture {} of order {} is {}: it must be resolved before another capture is sent{frees}",
                        a.id,
                        req.order.id,
                        a.state.as_str()
                    )),
                    None,
                ));
            }
        };
        let (outcome, anomaly, _) = self.drive(&drive, attempt, fence, event, run).await;
        Ok((outcome, anomaly))
    }

    /// Runs the machine on one attempt until it reports. Returns the outcome to report, its
    /// anomaly and the attempt as last recorded.
    async fn drive(
        &self,
        d: &Drive<'_>,
        mut attempt: Attempt,
        mut fence: Option<Fence>,
        first: Event,
        run: &mut Run,
    ) -> (Outcome, Option<Anomaly>, Attempt) {
        let plugin = &d.platform.plugin;
        let window = self.window_ms(d.platform);
        let mut event = first;
        let mut last_answer: Option<Outcome> = None;
        let mut run_sends = 0u32;
        for _ in 0..MAX_STEPS {
            let now = self.clock.now();
            let ctx = Ctx {
                dedupes_by_key: plugin.manifest().capabilities.idempotency_key,
                status_query: plugin.supports_status(),
                can_send: d.req.is_some(),
                max_sends: self.retry.max_sends.max(1),
                run_sends,
                window_ms: window,
                max_skew_ms: u64::try_from(self.max_clock_skew.as_millis()).unwrap_or(u64::MAX),
                mode: d.mode,
                now,
            };
            let step = machine::step(&View::of(&attempt), &event, &ctx);
            if let Some(rec) = step.record {
                let response = run
                    .exchanges
                    .last()
                    .and_then(|e| e.response.as_ref())
                    .and_then(|r| serde_json::to_string(r).ok());
                let update = AttemptUpdate {
                    resendable: Some(rec.resendable),
                    captured: rec.captured,
                    anomaly: rec.anomaly.as_ref().map(|a| a.code.clone()),
                    platform_capture_id: platform_capture_id(&rec.outcome),
                    response: if last_answer.is_some() { response } else { None },
                    outcome: record_json(&rec.outcome),
                    ..AttemptUpdate::default()
                };
                let written = match &fence {
                    Some(f) => {
                        d.store.transition(&attempt.id, f, &[attempt.state], rec.to, update, now).await
                    }
                    None => Err(StoreError::LeaseLost {
                        id: attempt.id.clone(),
                        holder: attempt.lease.owner.clone(),
                        token: attempt.lease.token,
                        presented: 0,
                    }),
                };
                match written {
                    Ok(a) => {
                        run.step(
                            Stage::Capture,
                            StepSource::Builtin,
                            "ledger",
                            None,
                            rec.to.as_str(),
                            Some(format!("attempt {} recorded", a.id)),
                        );
                        attempt = a;
                    }
                    Err(error) => {
                        run.step(
                            Stage::Capture,
                            StepSource::Builtin,
                            "ledger",
                            None,
                            "error",
                            Some(error.to_string()),
                        );
                        event = Event::StoreRefused { error, answered: last_answer.clone() };
                        continue;
                    }
                }
            }
            event = match step.next {
                Next::Report(outcome, anomaly) => return (outcome, anomaly, attempt),
                Next::Replay => {
                    run.step(
                        Stage::Capture,
                        StepSource::Builtin,
                        "ledger",
                        None,
                        "replayed",
                        Some(format!(
                            "attempt {} is {}: its recorded outcome, nothing sent",
                            attempt.id,
                            attempt.state.as_str()
                        )),
                    );
                    return (recorded_outcome(&attempt), recorded_anomaly(&attempt), attempt);
                }
                Next::TakeLease => {
                    match d.store.take_lease(&attempt.id, &self.owner, window, d.takeover_after, now).await {
                        Ok(LeaseGrant::Granted(a)) => {
                            fence = a.fence();
                            attempt = a;
                            Event::LeaseGranted
                        }
                        Ok(LeaseGrant::Held { until, clamped, .. }) => {
                            if clamped {
                                run.step(
                                    Stage::Capture,
                                    StepSource::Builtin,
                                    "ledger",
                                    None,
                                    "lease_clamped",
                                    Some(format!(
                                        "attempt {}: its lease was stamped further ahead than a lease lasts (a clock ahead of this one); it now ends at {}",
                                        attempt.id,
                                        until.to_rfc3339()
                                    )),
                                );
                            }
                            Event::LeaseHeld { until }
                        }
                        Ok(LeaseGrant::Final(a)) => {
                            attempt = a;
                            Event::Existing
                        }
                        Err(error) => Event::StoreRefused { error, answered: None },
                    }
                }
                Next::Send => {
                    let (Some(req), Some(f)) = (d.req, fence.clone()) else {
                        return (
                            ledger_failure(format!("attempt {}: nothing to send it with", attempt.id)),
                            None,
                            attempt,
                        );
                    };
                    let wire = req.to_wire_string();
                    let gate = Gate {
                        store: d.store,
                        fence: &f,
                        wire: &wire,
                        attempt: &attempt.id,
                        from: attempt.state,
                        renew_until: Timestamp(now.0.saturating_add(window)),
                        now,
                    };
                    let mut sent = None;
                    let result = self
                        .call_platform(d.platform, req, attempt.amount, run, Some(&gate), &mut sent)
                        .await;
                    if let Some(a) = sent {
                        attempt = a;
                        run_sends += 1;
                    }
                    match result {
                        CallResult::NotSent(o) => Event::NotSent(o),
                        CallResult::Refused(error) => Event::StoreRefused { error, answered: None },
                        CallResult::Left { outcome, status } => {
                            self.crash_point(CrashPoint::Answered);
                            last_answer = Some(outcome.clone());
                            Event::Answer { outcome, status }
                        }
                    }
                }
                Next::Wait { ms_hint } => {
                    let wait = self.retry.delay(attempt.sends.max(1), ms_hint, self.random.as_ref());
                    run.step(
                        Stage::Capture,
                        StepSource::Builtin,
                        "retry",
                        None,
                        "wait",
                        Some(format!(
                            "send {} of at most {} after {} ms",
                            run_sends + 1,
                            self.retry.max_sends,
                            wait.as_millis()
                        )),
                    );
                    self.sleeper.sleep(wait).await;
                    Event::RetryDue
                }
                Next::QueryStatus => {
                    let q = StatusQuery {
                        platform: attempt.platform.clone(),
                        order_id: attempt.order_id.clone(),
                        currency: attempt.amount.currency(),
                        payment_ids: attempt.payment_ids.clone(),
                        idempotency_key: Some(attempt.idempotency_key.clone()),
                        platform_capture_id: attempt.platform_capture_id.clone(),
                    };
                    match self.status(&q).await {
                        Ok(report) => {
                            run.steps.extend(report.steps);
                            run.exchanges.extend(report.exchanges);
                            // The capture ids other attempts of the order recorded (a failed
                            // read leaves the list empty: the status is then taken as it is).
                            let claimed: Vec<String> = match d
                                .store
                                .order_attempts(&attempt.merchant, &attempt.platform, &attempt.order_id)
                                .await
                            {
                                Ok(all) => all
                                    .into_iter()
                                    .filter(|a| a.id != attempt.id && a.state.holds_amount())
                                    .filter_map(|a| a.platform_capture_id)
                                    .collect(),
                                Err(_) => Vec::new(),
                            };
                            Event::Status(machine::status_for(report.outcome, &claimed))
                        }
                        Err(e) => Event::Status(Outcome::Failed {
                            kind: FailureKind::Connector,
                            retryable: false,
                            platform_code: None,
                            message: e.to_string(),
                            retry_after_ms: None,
                        }),
                    }
                }
            };
        }
        (
            Outcome::Failed {
                kind: FailureKind::OutcomeUnknown,
                retryable: false,
                platform_code: None,
                message: format!(
                    "attempt {}: gave up after {MAX_STEPS} steps; it stays unresolved",
                    attempt.id
                ),
                retry_after_ms: None,
            },
            None,
            attempt,
        )
    }

    /// Resolves every attempt left in reserved, sent, pending or unknown whose lease is free
    /// (expired, released, or — with `takeover_after` — taken at least that long ago): a reserved
    /// one never sent is released, a sent or unknown one is resolved from the platform's state or
    /// by sending the same key to a platform that deduplicates by key, a pending one is read
    /// again. What it cannot resolve is listed with when it frees up. Unbounded: every
    /// unresolved attempt of this merchant (see [`Engine::reconcile_on_start`] for the bounded
    /// pass a process makes when it starts).
    pub async fn reconcile(&self, takeover_after: Option<Duration>) -> Result<Vec<Reconciled>, String> {
        Ok(self.reconcile_within(takeover_after, usize::MAX, None).await?.examined)
    }

    /// The engine's reconcile-on-start policy ([`crate::EngineBuilder::reconcile_on_start`]; by
    /// default [`ReconcileOnStart::DEFAULT`]): the same work as [`Engine::reconcile`], oldest
    /// attempt first, but at most `max_attempts` attempts, and none started once `max_duration`
    /// has passed (one started is finished: each is bounded by its in-flight window). The
    /// attempts beyond the bound are not touched: they stay in the ledger as they were, for a
    /// later reconcile (the next start, `capture reconcile`, `POST /v1/reconcile`), and
    /// [`StartReconciled::left`] counts them. `capture run`, `capture serve` and `capture batch`
    /// call it once before their first capture.
    ///
    /// An engine without a ledger has nothing to reconcile (an empty answer). An error (the
    /// ledger could not list its attempts) is returned, never swallowed: the caller reports it.
    pub async fn reconcile_on_start(&self) -> Result<StartReconciled, String> {
        if self.store.is_none() {
            return Ok(StartReconciled { examined: Vec::new(), left: 0, stopped_by: None });
        }
        let p = self.reconcile_on_start;
        self.reconcile_within(p.takeover_after, p.max_attempts, Some(p.max_duration)).await
    }

    async fn reconcile_within(
        &self,
        takeover_after: Option<Duration>,
        max_attempts: usize,
        max_duration: Option<Duration>,
    ) -> Result<StartReconciled, String> {
        let Some(store) = self.store.as_deref() else {
            return Err("no capture ledger is configured".into());
        };
        // Monotonic time, for the bound only (never in a report or the ledger).
        // A bound too far to be a point in time (`max_duration_ms` near u64::MAX) is no bound.
        let deadline = max_duration.and_then(|d| tokio::time::Instant::now().checked_add(d));
        let takeover_after = takeover_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mine: Vec<Attempt> = store
            .unresolved()
            .await
            .map_err(|e| self.scrubber.scrub(&e.to_string()).into_owned())?
            .into_iter()
            .filter(|a| a.merchant == self.merchant)
            .collect();
        let total = mine.len();
        let mut out = Vec::new();
        let mut stopped_by = None;
        for a in mine {
            if out.len() >= max_attempts {
                stopped_by = Some(ReconcileBound::Attempts);
                break;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                stopped_by = Some(ReconcileBound::Duration);
                break;
            }
            let before = a.state;
            let Some(platform) = self.platforms.get(&a.platform) else {
                out.push(Reconciled {
                    attempt: a.id.clone(),
                    platform: a.platform.clone(),
                    order_id: a.order_id.clone(),
                    before,
                    after: before,
                    detail: format!("platform `{}` is not configured here", a.platform),
                    blocking: before.in_flight(),
                    frees_at: None,
                });
                continue;
            };
            let req = stored_request(&a);
            let drive = Drive { store, platform, req: req.as_ref(), mode: Mode::Reconcile, takeover_after };
            let mut run = Run::default();
            let (outcome, _, after) = self.drive(&drive, a.clone(), None, Event::Reconcile, &mut run).await;
            let now = self.clock.now();
            let frees_at =
                (after.lease.owner.is_some() && after.lease.until > now && after.state.in_flight())
                    .then_some(after.lease.until);
            out.push(Reconciled {
                attempt: a.id.clone(),
                platform: a.platform.clone(),
                order_id: a.order_id.clone(),
                before,
                after: after.state,
                detail: self.scrubber.scrub(&crate::merged::describe_outcome(&outcome)).into_owned(),
                blocking: after.state.in_flight(),
                frees_at,
            });
        }
        let left = total - out.len();
        Ok(StartReconciled { examined: out, left, stopped_by })
    }
}
