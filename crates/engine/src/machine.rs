//! The capture stage's state machine, pure: no IO, no clock, no sleep (time comes in as an
//! argument), as quinn-proto's connection is. Given what the ledger recorded of an attempt (a
//! [`View`]) and what just happened (an [`Event`]), [`step`] says what to record and what to do
//! next ([`Step`]). The driver (`driver.rs`) performs it: store writes, plugin calls, HTTP,
//! waits through the injected sleeper, and feeds every result back as the next event. Every
//! store write the driver makes is a compare-and-set under the attempt's lease; a refusal comes
//! back as [`Event::StoreRefused`] and is decided here like anything else.
//!
//! The rules, in one place:
//! - **Certain or not.** An attempt is recorded `failed` only when the platform certainly
//!   captured nothing: nothing left the engine, or the platform refused with a 4xx, or its state
//!   read back shows no capture once the in-flight window after the last send has passed.
//!   Everything else that is not a capture is `unknown`, and keeps its share of the bound.
//! - **Own key.** A platform that deduplicates by key answering "already used" to a key this
//!   attempt sent before is this attempt's own capture: `captured`. On a first send it is a
//!   capture the ledger did not make: `already_captured`, still held against the bound.
//! - **Over-reports.** A parsed amount other than the one asked for is recorded as captured with
//!   an `amount_mismatch` anomaly; the larger figure counts against the bound.
//! - **Leases.** Only the holder of an attempt's lease sends or resolves it; a live lease held by
//!   someone else means "busy until …", never a second sender.

use capture_core::{Anomaly, FailureKind, Money, Outcome, Timestamp};
use capture_store::{Attempt, AttemptState, StoreError};

/// What the machine needs to know of the attempt, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Its state.
    pub state: AttemptState,
    /// Failed and safe to send again.
    pub resendable: bool,
    /// How many times it was sent (the send being answered included).
    pub sends: u32,
    /// The amount asked for.
    pub amount: Money,
    /// When it was last marked sent.
    pub last_sent_at: Option<Timestamp>,
    /// Whether someone holds its lease, and until when.
    pub lease_until: Option<Timestamp>,
    /// The platform's capture id, once known.
    pub platform_capture_id: Option<String>,
}

impl View {
    /// The view of a recorded attempt.
    pub fn of(a: &Attempt) -> View {
        View {
            state: a.state,
            resendable: a.resendable,
            sends: a.sends,
            amount: a.amount,
            last_sent_at: a.last_sent_at,
            lease_until: a.lease.owner.as_ref().map(|_| a.lease.until),
            platform_capture_id: a.platform_capture_id.clone(),
        }
    }
}

/// Who is driving: a capture request (which can send the request it carries) or reconciliation
/// (which sends only what the ledger stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Engine::capture`.
    Capture,
    /// `Engine::reconcile`.
    Reconcile,
}

/// What the machine knows of the platform and the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// The platform applies a key at most once (Optty's `captureReference`): the same key may
    /// always be sent again.
    pub dedupes_by_key: bool,
    /// The connector can read a capture's state back.
    pub status_query: bool,
    /// The driver has the request to send (a capture, or a reconcile with the stored request).
    pub can_send: bool,
    /// Most sends of one attempt by one capture or reconcile run.
    pub max_sends: u32,
    /// Sends made so far by this run.
    pub run_sends: u32,
    /// How long after a send the platform may still apply it (every send's timeout and the waits
    /// between them): a lease lasts this long, and "not found" is conclusive only after it.
    pub window_ms: u64,
    /// The most two engine clocks sharing the ledger may disagree by: a "not found" read back
    /// is conclusive only once the window and this margin have passed since the last send.
    pub max_skew_ms: u64,
    /// Capture or reconcile.
    pub mode: Mode,
    /// The current time (the driver's clock).
    pub now: Timestamp,
}

/// What just happened.
#[derive(Debug)]
pub enum Event {
    /// A new attempt was reserved; its lease is ours.
    Reserved,
    /// The key was recorded before, for the same request.
    Existing,
    /// Reconciliation looks at this attempt.
    Reconcile,
    /// The lease is ours now (the view has its new token).
    LeaseGranted,
    /// Someone else holds the lease until `until`.
    LeaseHeld {
        /// When it frees up.
        until: Timestamp,
    },
    /// Nothing left the engine: the connector or the engine's checks refused, the ledger refused
    /// to mark it sent, or no connection could be made. `outcome` says why.
    NotSent(Outcome),
    /// The request left; this came back (a transport failure is an `outcome_unknown` failure with
    /// no status).
    Answer {
        /// The parsed outcome.
        outcome: Outcome,
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
    },
    /// Retry wait done: send again.
    RetryDue,
    /// The platform's state, read back.
    Status(Outcome),
    /// A store write was refused or failed. `answered`: what the platform answered, if it did.
    StoreRefused {
        /// The store's answer.
        error: StoreError,
        /// The platform's outcome, when the refused write was recording it.
        answered: Option<Outcome>,
    },
}

/// What to record (one compare-and-set from the view's state, under the lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The next state.
    pub to: AttemptState,
    /// For `failed`: a resend is safe.
    pub resendable: bool,
    /// The amount the platform reported, when it differs from the one asked for.
    pub captured: Option<Money>,
    /// The anomaly to record.
    pub anomaly: Option<Anomaly>,
    /// The outcome to record with it.
    pub outcome: Outcome,
}

/// What to do after recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Mark the attempt sent (from its state, renewing the lease) and send the capture.
    Send,
    /// Wait this long, then [`Event::RetryDue`].
    Wait {
        /// Milliseconds.
        ms_hint: Option<u64>,
    },
    /// Read the platform's state through the connector's status query.
    QueryStatus,
    /// Take the attempt's lease, then [`Event::LeaseGranted`] or [`Event::LeaseHeld`].
    TakeLease,
    /// Stop and report this outcome (with the anomaly, if any).
    Report(Outcome, Option<Anomaly>),
    /// Stop and report the outcome the ledger recorded.
    Replay,
}

/// The machine's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Record this first (skip when `None`).
    pub record: Option<Record>,
    /// Then do this.
    pub next: Next,
}

fn go(next: Next) -> Step {
    Step { record: None, next }
}

fn record(to: AttemptState, resendable: bool, outcome: Outcome, next: Next) -> Step {
    Step { record: Some(Record { to, resendable, captured: None, anomaly: None, outcome }), next }
}

fn unknown(message: String) -> Outcome {
    Outcome::Failed {
        kind: FailureKind::OutcomeUnknown,
        retryable: false,
        platform_code: None,
        message,
        retry_after_ms: None,
    }
}

fn busy(message: String) -> Outcome {
    Outcome::Failed {
        kind: FailureKind::InvalidState,
        retryable: true,
        platform_code: None,
        message,
        retry_after_ms: None,
    }
}

/// Whether a failure the platform answered certainly means nothing was captured: a 4xx refusal
/// the connector classified (a 5xx, an unreadable 2xx, an unclassified answer may hide an
/// applied capture).
pub fn certainly_not_captured(outcome: &Outcome, status: Option<u16>) -> bool {
    match outcome {
        Outcome::Failed { kind, .. } => {
            let refused = status.is_some_and(|s| (400..500).contains(&s));
            refused
                && !matches!(
                    kind,
                    FailureKind::OutcomeUnknown | FailureKind::PlatformUnavailable | FailureKind::Unknown
                )
        }
        _ => false,
    }
}

/// The anomaly of an outcome whose amount is not the one asked for (`amount_mismatch`). Only a
/// capture counts: a pending answer's amount is what the platform will settle, often not known
/// yet (BigCommerce reads 0.00 while it settles).
pub fn amount_anomaly(asked: Money, outcome: &Outcome) -> Option<Anomaly> {
    match outcome {
        Outcome::Captured { amount, .. } if *amount != asked => Some(Anomaly {
            code: "amount_mismatch".into(),
            detail: format!("asked the platform for {asked}, it reports {amount}"),
        }),
        _ => None,
    }
}

/// The record of a capture the platform reports, with the anomaly when its amount is not the one
/// asked for.
fn captured_record(to: AttemptState, view: &View, amount: Money, outcome: Outcome) -> Step {
    let anomaly = amount_anomaly(view.amount, &outcome);
    let captured = anomaly.as_ref().map(|_| amount);
    Step {
        record: Some(Record {
            to,
            resendable: false,
            captured,
            anomaly: anomaly.clone(),
            outcome: outcome.clone(),
        }),
        next: Next::Report(outcome, anomaly),
    }
}

/// The way forward for an attempt whose outcome is unknown (we hold its lease).
fn resolve(ctx: &Ctx) -> Next {
    if ctx.dedupes_by_key && ctx.can_send && ctx.run_sends < ctx.max_sends {
        return Next::Send;
    }
    if ctx.status_query {
        return Next::QueryStatus;
    }
    Next::Report(
        unknown(format!(
            "the outcome is unknown and the connector can neither read the platform's state nor resend the same key safely{}: check the platform by hand",
            if ctx.dedupes_by_key && !ctx.can_send { " (the request was not stored)" } else { "" }
        )),
        None,
    )
}

/// A status read as it concerns this attempt: a capture the platform lists whose ids are all
/// recorded by other attempts of the order is theirs, not this one's (a keyless platform's
/// status lists the payment's captures, whoever made them).
pub fn status_for(outcome: Outcome, claimed_by_others: &[String]) -> Outcome {
    let ids = match &outcome {
        Outcome::Captured { platform_capture_id: Some(ids), .. }
        | Outcome::Pending { platform_capture_id: Some(ids), .. } => ids.clone(),
        _ => return outcome,
    };
    let theirs = ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .all(|id| claimed_by_others.iter().any(|c| c.split(',').any(|o| o.trim() == id)));
    if !theirs {
        return outcome;
    }
    Outcome::Failed {
        kind: FailureKind::NotFound,
        retryable: false,
        platform_code: None,
        message: format!("the platform's captures ({ids}) are recorded for other attempts of the order"),
        retry_after_ms: None,
    }
}

/// When a "not found" read back becomes conclusive: the window after the last send.
fn conclusive_at(view: &View, ctx: &Ctx) -> Timestamp {
    Timestamp(
        view.last_sent_at.map_or(0, |t| t.0).saturating_add(ctx.window_ms).saturating_add(ctx.max_skew_ms),
    )
}

/// The machine: the next step for `view` after `event`.
pub fn step(view: &View, event: &Event, ctx: &Ctx) -> Step {
    use AttemptState as S;
    match event {
        Event::Reserved => go(Next::Send),
        Event::Existing => match view.state {
            S::Captured | S::AlreadyCaptured | S::Pending => go(Next::Replay),
            S::Failed if !view.resendable => go(Next::Replay),
            // A failure without effect: take it and send the same key again.
            S::Failed => go(Next::TakeLease),
            S::Reserved | S::Sent | S::Unknown => match view.lease_until {
                Some(until) if until > ctx.now && until.0 - ctx.now.0 <= ctx.window_ms => go(Next::Report(
                    busy(format!(
                        "an attempt with this key is being sent by another task or process; it is theirs until {} (ask again then)",
                        until.to_rfc3339()
                    )),
                    None,
                )),
                _ => go(Next::TakeLease),
            },
        },
        Event::Reconcile => go(Next::TakeLease),
        Event::LeaseHeld { until } => go(Next::Report(
            busy(format!(
                "another task or process holds this attempt until {} (ask again then)",
                until.to_rfc3339()
            )),
            None,
        )),
        Event::LeaseGranted => match view.state {
            S::Reserved if ctx.mode == Mode::Capture && ctx.can_send => go(Next::Send),
            S::Reserved => record(
                S::Failed,
                true,
                busy("reserved but never sent (its process stopped): released, the same key may be sent again".into()),
                Next::Report(
                    busy("reserved but never sent: released (nothing was sent); the same key may be sent again".into()),
                    None,
                ),
            ),
            S::Failed if view.resendable && ctx.can_send => go(Next::Send),
            S::Failed | S::Captured | S::AlreadyCaptured => go(Next::Replay),
            // Sent and never answered (its sender stopped or lost the answer): unknown first.
            S::Sent => {
                let next = resolve(ctx);
                record(S::Unknown, false, unknown("sent, answer never recorded".into()), next)
            }
            S::Unknown => go(resolve(ctx)),
            S::Pending if ctx.status_query => go(Next::QueryStatus),
            S::Pending => go(Next::Replay),
        },
        // A failure's lease was released when it was recorded: take it again before resending.
        Event::RetryDue if view.state == S::Failed => go(Next::TakeLease),
        Event::RetryDue => go(Next::Send),
        Event::NotSent(outcome) => {
            let retryable = matches!(outcome, Outcome::Failed { retryable: true, .. });
            match view.state {
                // Marked sent, then no connection: nothing reached the platform.
                S::Sent => {
                    let next = if retryable && ctx.run_sends < ctx.max_sends {
                        Next::Wait { ms_hint: retry_hint(outcome) }
                    } else {
                        Next::Report((*outcome).clone(), None)
                    };
                    record(S::Failed, retryable, (*outcome).clone(), next)
                }
                S::Reserved => record(S::Failed, false, (*outcome).clone(), Next::Report((*outcome).clone(), None)),
                // A resend that did not leave: the state stays what it was.
                S::Unknown => go(Next::Report(
                    unknown(format!("the outcome is still unknown; the resend did not leave: {}", describe(outcome))),
                    None,
                )),
                _ => go(Next::Report((*outcome).clone(), None)),
            }
        }
        Event::Answer { outcome, status } => answer(view, outcome, *status, ctx),
        Event::Status(outcome) => status_read(view, outcome, ctx),
        Event::StoreRefused { error, answered } => {
            let why = match error {
                StoreError::LeaseLost { .. } => {
                    "another task or process took this attempt over and resolves it".to_owned()
                }
                other => other.to_string(),
            };
            match answered {
                // The platform answered, the ledger would not record it: report the truth, the
                // attempt stays unresolved in the ledger for its new owner or reconciliation.
                Some(o @ (Outcome::Captured { .. } | Outcome::Pending { .. })) => go(Next::Report(o.clone(), None)),
                Some(_) => go(Next::Report(
                    unknown(format!("the platform answered but the ledger refused the record ({why}); it stays unresolved")),
                    None,
                )),
                None if view.state == S::Reserved || view.state == S::Failed => go(Next::Report(
                    busy(format!("the ledger refused ({why}); nothing was sent")),
                    None,
                )),
                None => go(Next::Report(unknown(format!("the ledger refused ({why}); the outcome stays unknown")), None)),
            }
        }
    }
}

fn retry_hint(outcome: &Outcome) -> Option<u64> {
    match outcome {
        Outcome::Failed { retry_after_ms, .. } => *retry_after_ms,
        _ => None,
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { message, .. } => message.clone(),
        other => other.status().to_owned(),
    }
}

fn answer(view: &View, outcome: &Outcome, status: Option<u16>, ctx: &Ctx) -> Step {
    use AttemptState as S;
    match outcome {
        Outcome::Captured { amount, .. } => captured_record(S::Captured, view, *amount, outcome.clone()),
        Outcome::Pending { amount, .. } => captured_record(S::Pending, view, *amount, outcome.clone()),
        Outcome::AlreadyCaptured { .. } if ctx.dedupes_by_key => {
            // The key is unique in the ledger, so a platform that deduplicates by key and says
            // this key was used before is speaking of this attempt: an earlier send of it (or a
            // duplicate delivery of this one) went through.
            let ours = Outcome::Captured {
                amount: view.amount,
                platform_capture_id: view.platform_capture_id.clone(),
            };
            record(S::Captured, false, ours.clone(), Next::Report(ours, None))
        }
        Outcome::AlreadyCaptured { .. } if view.sends > 1 => {
            // Sent before, without a key: the capture found may be ours; read the state.
            let next = if ctx.status_query { Next::QueryStatus } else { Next::Report(outcome.clone(), None) };
            if ctx.status_query {
                record(S::Unknown, false, unknown("already captured after an earlier send".into()), next)
            } else {
                record(S::AlreadyCaptured, false, outcome.clone(), next)
            }
        }
        Outcome::AlreadyCaptured { .. } => {
            record(S::AlreadyCaptured, false, outcome.clone(), Next::Report(outcome.clone(), None))
        }
        Outcome::Failed { retryable, .. } if certainly_not_captured(outcome, status) => {
            let next = if *retryable && ctx.run_sends < ctx.max_sends {
                Next::Wait { ms_hint: retry_hint(outcome) }
            } else {
                Next::Report(outcome.clone(), None)
            };
            record(S::Failed, *retryable, outcome.clone(), next)
        }
        Outcome::Failed { .. } => {
            // May have been applied: unknown, keeps its share of the bound.
            let next = if ctx.dedupes_by_key && ctx.can_send && ctx.run_sends < ctx.max_sends {
                Next::Wait { ms_hint: retry_hint(outcome) }
            } else if ctx.status_query {
                Next::QueryStatus
            } else {
                Next::Report(
                    unknown(format!("the platform may have applied the capture: {}", describe(outcome))),
                    None,
                )
            };
            let to_report =
                unknown(format!("the platform may have applied the capture: {}", describe(outcome)));
            match next {
                Next::Report(..) => {
                    record(S::Unknown, false, to_report.clone(), Next::Report(to_report, None))
                }
                n => record(S::Unknown, false, to_report, n),
            }
        }
        // Refusals never come back from a platform; recorded as unknown to be safe.
        Outcome::Rejected { .. } | Outcome::Held { .. } => {
            let o = unknown("the connector answered a refusal after the request left".into());
            record(S::Unknown, false, o.clone(), Next::Report(o, None))
        }
    }
}

fn status_read(view: &View, outcome: &Outcome, ctx: &Ctx) -> Step {
    use AttemptState as S;
    match outcome {
        Outcome::Captured { amount, .. } => captured_record(S::Captured, view, *amount, outcome.clone()),
        Outcome::AlreadyCaptured { .. } => {
            let ours = Outcome::Captured {
                amount: view.amount,
                platform_capture_id: view.platform_capture_id.clone(),
            };
            record(S::Captured, false, ours.clone(), Next::Report(ours, None))
        }
        Outcome::Pending { amount, .. } => captured_record(S::Pending, view, *amount, outcome.clone()),
        Outcome::Failed { kind: FailureKind::NotFound, .. } if view.state == S::Pending => {
            go(Next::Report(Outcome::Pending { amount: view.amount, platform_capture_id: None }, None))
        }
        Outcome::Failed { kind: FailureKind::NotFound, .. } if view.platform_capture_id.is_some() => {
            // The platform named this capture when it answered: a read that does not list it lags.
            go(Next::Report(
                unknown("the platform's state does not list the capture it reported yet (a lagging read): still unknown".into()),
                None,
            ))
        }
        Outcome::Failed { kind: FailureKind::NotFound, .. } => {
            let at = conclusive_at(view, ctx);
            if ctx.now >= at {
                // Nothing at the platform, and nothing sent can still arrive: certainly failed.
                record(S::Failed, true, outcome.clone(), Next::Report(outcome.clone(), None))
            } else {
                go(Next::Report(
                    unknown(format!(
                        "the platform shows no capture yet, but the last send may still be applied until {}: still unknown (capture reconcile then)",
                        at.to_rfc3339()
                    )),
                    None,
                ))
            }
        }
        Outcome::Failed { kind: FailureKind::InvalidState, platform_code: Some(_), .. } => {
            record(S::Failed, false, outcome.clone(), Next::Report(outcome.clone(), None))
        }
        Outcome::Failed { .. } | Outcome::Rejected { .. } | Outcome::Held { .. } => {
            let o = if view.state == S::Pending {
                Outcome::Pending { amount: view.amount, platform_capture_id: None }
            } else {
                unknown(format!("the platform's state could not be read: {}", describe(outcome)))
            };
            go(Next::Report(o, None))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The machine as a table: (view, event, context) -> (what is recorded, what comes next).
    use capture_core::Currency;

    use super::*;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::from_code("USD").unwrap())
    }

    fn view(state: AttemptState, sends: u32) -> View {
        View {
            state,
            resendable: false,
            sends,
            amount: usd(12_000),
            last_sent_at: Some(Timestamp(1_000)),
            lease_until: Some(Timestamp(61_000)),
            platform_capture_id: None,
        }
    }

    fn ctx(dedupes_by_key: bool, status_query: bool, now: u64) -> Ctx {
        Ctx {
            dedupes_by_key,
            status_query,
            can_send: true,
            max_sends: 3,
            run_sends: 1,
            window_ms: 60_000,
            max_skew_ms: 0,
            mode: Mode::Capture,
            now: Timestamp(now),
        }
    }

    fn failed(kind: FailureKind, retryable: bool) -> Outcome {
        Outcome::Failed { kind, retryable, platform_code: None, message: "m".into(), retry_after_ms: None }
    }

    /// What a step comes to, in short: the state recorded (if any) and the next action's name.
    fn short(s: &Step) -> (Option<AttemptState>, &'static str) {
        let next = match &s.next {
            Next::Send => "send",
            Next::Wait { .. } => "wait",
            Next::QueryStatus => "status",
            Next::TakeLease => "lease",
            Next::Report(..) => "report",
            Next::Replay => "replay",
        };
        (s.record.as_ref().map(|r| r.to), next)
    }

    #[allow(clippy::type_complexity)]
    fn check(cases: &[(&str, View, Event, Ctx, (Option<AttemptState>, &str))]) {
        for (name, v, e, c, expected) in cases {
            let got = step(v, e, c);
            assert_eq!(short(&got), *expected, "{name}: {got:?}");
        }
    }

    #[test]
    fn the_transition_table() {
        use AttemptState as S;
        let captured = Outcome::Captured { amount: usd(12_000), platform_capture_id: Some("c1".into()) };
        let already =
            Outcome::AlreadyCaptured { platform_code: None, message: "reference already used".into() };
        let unavailable = failed(FailureKind::PlatformUnavailable, true);
        let refused = failed(FailureKind::InvalidRequest, false);
        let limited = failed(FailureKind::RateLimited, true);
        let lost = failed(FailureKind::OutcomeUnknown, false);
        let not_found = failed(FailureKind::NotFound, false);
        let mut resendable = view(S::Failed, 1);
        resendable.resendable = true;
        resendable.lease_until = None;
        let mut stale = view(S::Sent, 1);
        stale.lease_until = Some(Timestamp(500));
        let mut skewed = view(S::Sent, 1);
        skewed.lease_until = Some(Timestamp(10_000_000));
        check(&[
            (
                "a new reservation is sent",
                view(S::Reserved, 0),
                Event::Reserved,
                ctx(true, false, 1_000),
                (None, "send"),
            ),
            (
                "a 2xx capture is recorded",
                view(S::Sent, 1),
                Event::Answer { outcome: captured.clone(), status: Some(200) },
                ctx(true, false, 1_000),
                (Some(S::Captured), "report"),
            ),
            (
                "a 4xx refusal is certain",
                view(S::Sent, 1),
                Event::Answer { outcome: refused.clone(), status: Some(400) },
                ctx(true, false, 1_000),
                (Some(S::Failed), "report"),
            ),
            (
                "a 429 is certain and retried",
                view(S::Sent, 1),
                Event::Answer { outcome: limited, status: Some(429) },
                ctx(true, false, 1_000),
                (Some(S::Failed), "wait"),
            ),
            (
                "a 5xx may hide a capture: unknown, same key again",
                view(S::Sent, 1),
                Event::Answer { outcome: unavailable.clone(), status: Some(500) },
                ctx(true, false, 1_000),
                (Some(S::Unknown), "wait"),
            ),
            (
                "a 5xx without a key: unknown, read the state",
                view(S::Sent, 1),
                Event::Answer { outcome: unavailable.clone(), status: Some(503) },
                ctx(false, true, 1_000),
                (Some(S::Unknown), "status"),
            ),
            (
                "a 5xx with no way to resolve stays unknown",
                view(S::Sent, 1),
                Event::Answer { outcome: unavailable, status: Some(503) },
                ctx(false, false, 1_000),
                (Some(S::Unknown), "report"),
            ),
            (
                "a 4xx-looking kind on a 5xx status is not certain",
                view(S::Sent, 1),
                Event::Answer { outcome: refused.clone(), status: Some(502) },
                ctx(false, true, 1_000),
                (Some(S::Unknown), "status"),
            ),
            (
                "a lost answer is unknown",
                view(S::Sent, 1),
                Event::Answer { outcome: lost, status: None },
                ctx(false, true, 1_000),
                (Some(S::Unknown), "status"),
            ),
            (
                "'already used' on a resend of our key is ours",
                view(S::Sent, 2),
                Event::Answer { outcome: already.clone(), status: Some(409) },
                ctx(true, false, 1_000),
                (Some(S::Captured), "report"),
            ),
            (
                "'already used' on a first send is still our key (unique in the ledger): a duplicate delivery",
                view(S::Sent, 1),
                Event::Answer { outcome: already.clone(), status: Some(409) },
                ctx(true, false, 1_000),
                (Some(S::Captured), "report"),
            ),
            (
                "'already captured' on a keyless first send is someone else's",
                view(S::Sent, 1),
                Event::Answer { outcome: already.clone(), status: Some(409) },
                ctx(false, false, 1_000),
                (Some(S::AlreadyCaptured), "report"),
            ),
            (
                "'already captured' after our earlier keyless send: read the state",
                view(S::Sent, 2),
                Event::Answer { outcome: already, status: Some(409) },
                ctx(false, true, 1_000),
                (Some(S::Unknown), "status"),
            ),
            (
                "no connection after marking sent: certain, retried",
                view(S::Sent, 1),
                Event::NotSent(failed(FailureKind::PlatformUnavailable, true)),
                ctx(true, false, 1_000),
                (Some(S::Failed), "wait"),
            ),
            (
                "a connector refusal releases the reservation",
                view(S::Reserved, 0),
                Event::NotSent(failed(FailureKind::Connector, false)),
                ctx(true, false, 1_000),
                (Some(S::Failed), "report"),
            ),
            (
                "a status 'captured' resolves",
                view(S::Unknown, 1),
                Event::Status(captured),
                ctx(false, true, 1_000),
                (Some(S::Captured), "report"),
            ),
            (
                "'not found' inside the window is not conclusive",
                view(S::Unknown, 1),
                Event::Status(not_found.clone()),
                ctx(false, true, 30_000),
                (None, "report"),
            ),
            (
                "'not found' after the window is a certain failure",
                view(S::Unknown, 1),
                Event::Status(not_found),
                ctx(false, true, 61_000),
                (Some(S::Failed), "report"),
            ),
            (
                "a replay of a final attempt sends nothing",
                view(S::Captured, 1),
                Event::Existing,
                ctx(true, false, 1_000),
                (None, "replay"),
            ),
            (
                "a replay of a live attempt is busy",
                view(S::Sent, 1),
                Event::Existing,
                ctx(true, false, 1_000),
                (None, "report"),
            ),
            (
                "a replay of an abandoned attempt takes it over",
                stale.clone(),
                Event::Existing,
                ctx(true, false, 1_000),
                (None, "lease"),
            ),
            (
                "a lease stamped beyond any lease is taken (and clamped by the store)",
                skewed,
                Event::Existing,
                ctx(true, false, 1_000),
                (None, "lease"),
            ),
            (
                "a resendable failure is taken again",
                resendable.clone(),
                Event::Existing,
                ctx(true, false, 1_000),
                (None, "lease"),
            ),
            (
                "taken: a resendable failure is sent",
                resendable.clone(),
                Event::LeaseGranted,
                ctx(true, false, 1_000),
                (None, "send"),
            ),
            (
                "a retry of a failure takes the lease first",
                resendable,
                Event::RetryDue,
                ctx(true, false, 1_000),
                (None, "lease"),
            ),
            (
                "taken: sent and never answered becomes unknown, same key again",
                stale.clone(),
                Event::LeaseGranted,
                ctx(true, false, 1_000),
                (Some(S::Unknown), "send"),
            ),
            (
                "taken: sent and never answered, keyless: read the state",
                stale,
                Event::LeaseGranted,
                ctx(false, true, 1_000),
                (Some(S::Unknown), "status"),
            ),
            (
                "held by another: busy",
                view(S::Unknown, 1),
                Event::LeaseHeld { until: Timestamp(9_000) },
                ctx(true, false, 1_000),
                (None, "report"),
            ),
        ]);
        let mut rec = ctx(true, false, 1_000);
        rec.mode = Mode::Reconcile;
        rec.can_send = false;
        check(&[
            ("reconcile takes the lease first", view(S::Sent, 1), Event::Reconcile, rec, (None, "lease")),
            (
                "reconcile releases a reservation never sent",
                view(S::Reserved, 0),
                Event::LeaseGranted,
                rec,
                (Some(S::Failed), "report"),
            ),
            (
                "reconcile without the stored request cannot resend",
                view(S::Unknown, 1),
                Event::LeaseGranted,
                rec,
                (None, "report"),
            ),
        ]);
    }

    #[test]
    fn an_over_report_is_recorded_with_an_anomaly_and_counts_in_full() {
        let v = view(AttemptState::Sent, 1);
        let o = Outcome::Captured { amount: usd(99_900), platform_capture_id: None };
        let s = step(&v, &Event::Answer { outcome: o, status: Some(200) }, &ctx(true, false, 1_000));
        let r = s.record.expect("recorded");
        assert_eq!(r.to, AttemptState::Captured);
        assert_eq!(r.captured, Some(usd(99_900)));
        assert_eq!(r.anomaly.as_ref().map(|a| a.code.as_str()), Some("amount_mismatch"));
        match s.next {
            Next::Report(Outcome::Captured { amount, .. }, Some(a)) => {
                assert_eq!(amount, usd(99_900));
                assert!(a.detail.contains("120.00") && a.detail.contains("999.00"), "{}", a.detail);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_store_write_is_always_reported() {
        let lost =
            StoreError::LeaseLost { id: "cap".into(), holder: Some("b".into()), token: 3, presented: 2 };
        let captured = Outcome::Captured { amount: usd(12_000), platform_capture_id: None };
        // The platform captured but the record was refused: the report tells the truth.
        let s = step(
            &view(AttemptState::Sent, 1),
            &Event::StoreRefused { error: lost, answered: Some(captured.clone()) },
            &ctx(true, false, 1_000),
        );
        assert_eq!(s, Step { record: None, next: Next::Report(captured, None) });
        // Refused before anything was sent: a retryable failure that says nothing was sent.
        let conflict = StoreError::StateConflict {
            id: "cap".into(),
            expected: vec![AttemptState::Reserved],
            found: AttemptState::Failed,
        };
        let s = step(
            &view(AttemptState::Reserved, 0),
            &Event::StoreRefused { error: conflict, answered: None },
            &ctx(true, false, 1_000),
        );
        match s.next {
            Next::Report(Outcome::Failed { retryable: true, message, .. }, None) => {
                assert!(message.contains("nothing was sent"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
