//! What both backends share: the row codec and the decisions of `reserve` and `transition`.
//!
//! A backend reads rows inside its transaction (after taking its lock), asks [`plan_reserve`] or
//! [`plan_transition`] what to do, writes the result and commits. The rules live here once, so
//! SQLite and PostgreSQL cannot disagree about them.

use capture_core::{Currency, Money, Timestamp};

use crate::{Attempt, AttemptState, AttemptUpdate, NewAttempt, Reservation, StoreError};

/// An attempt with what only the store needs: the bound recorded when it was reserved (used to
/// re-check a resend of a failed attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub attempt: Attempt,
    pub bound_minor: i64,
}

/// A row as the database holds it: integers and text only.
#[derive(Debug, Clone)]
pub(crate) struct RawRow {
    pub id: String,
    pub merchant: String,
    pub platform: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub order_id: String,
    pub payment_ids: String,
    pub amount_minor: i64,
    pub currency: String,
    pub bound_minor: i64,
    pub state: String,
    pub resendable: bool,
    pub platform_capture_id: Option<String>,
    pub request: Option<String>,
    pub response: Option<String>,
    pub outcome: Option<String>,
    pub sends: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns in [`RawRow`] order, for SELECT and INSERT statements of both backends.
pub(crate) const COLUMNS: &str = "id, merchant, platform, idempotency_key, fingerprint, order_id, payment_ids, \
     amount_minor, currency, bound_minor, state, resendable, platform_capture_id, request, response, outcome, \
     sends, created_at, updated_at";

/// States `unresolved()` lists, as stored.
pub(crate) const UNRESOLVED_STATES: [AttemptState; 4] =
    [AttemptState::Reserved, AttemptState::Sent, AttemptState::Pending, AttemptState::Unknown];

impl RawRow {
    pub(crate) fn decode(self) -> Result<Stored, StoreError> {
        let id = self.id;
        let corrupt = |message: String| StoreError::Corrupt { id: id.clone(), message };
        let state = AttemptState::parse(&self.state)
            .ok_or_else(|| corrupt(format!("unknown state `{}`", self.state)))?;
        let currency = Currency::from_code(&self.currency).map_err(|e| corrupt(e.to_string()))?;
        let payment_ids: Vec<String> = serde_json::from_str(&self.payment_ids)
            .map_err(|e| corrupt(format!("payment_ids `{}`: {e}", self.payment_ids)))?;
        let sends = u32::try_from(self.sends).map_err(|_| corrupt(format!("sends {}", self.sends)))?;
        let time = |v: i64, what: &str| {
            u64::try_from(v).map(Timestamp).map_err(|_| corrupt(format!("{what} {v} is negative")))
        };
        let created_at = time(self.created_at, "created_at")?;
        let updated_at = time(self.updated_at, "updated_at")?;
        Ok(Stored {
            attempt: Attempt {
                id,
                merchant: self.merchant,
                platform: self.platform,
                idempotency_key: self.idempotency_key,
                fingerprint: self.fingerprint,
                order_id: self.order_id,
                payment_ids,
                amount: Money::from_minor(self.amount_minor, currency),
                state,
                resendable: self.resendable,
                platform_capture_id: self.platform_capture_id,
                request: self.request,
                response: self.response,
                outcome: self.outcome,
                sends,
                created_at,
                updated_at,
            },
            bound_minor: self.bound_minor,
        })
    }

    pub(crate) fn encode(stored: &Stored) -> Result<RawRow, StoreError> {
        let a = &stored.attempt;
        let invalid = |message: String| StoreError::InvalidInput { id: a.id.clone(), message };
        let payment_ids =
            serde_json::to_string(&a.payment_ids).map_err(|e| invalid(format!("payment ids: {e}")))?;
        let time =
            |t: Timestamp| i64::try_from(t.0).map_err(|_| invalid(format!("timestamp {} out of range", t.0)));
        Ok(RawRow {
            id: a.id.clone(),
            merchant: a.merchant.clone(),
            platform: a.platform.clone(),
            idempotency_key: a.idempotency_key.clone(),
            fingerprint: a.fingerprint.clone(),
            order_id: a.order_id.clone(),
            payment_ids,
            amount_minor: minor(a.amount, &a.id)?,
            currency: a.amount.currency().code().to_owned(),
            bound_minor: stored.bound_minor,
            state: a.state.as_str().to_owned(),
            resendable: a.resendable,
            platform_capture_id: a.platform_capture_id.clone(),
            request: a.request.clone(),
            response: a.response.clone(),
            outcome: a.outcome.clone(),
            sends: i64::from(a.sends),
            created_at: time(a.created_at)?,
            updated_at: time(a.updated_at)?,
        })
    }
}

fn minor(m: Money, id: &str) -> Result<i64, StoreError> {
    m.to_minor().map_err(|e| StoreError::InvalidInput { id: id.to_owned(), message: e.to_string() })
}

/// What `reserve` does once it has read the rows.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Answer without writing.
    Answer(Reservation),
    /// Insert this row, then answer `Reserved`.
    Insert(Stored),
}

/// Checks a new attempt before touching the database: positive amount, same currency as the
/// bound, both representable in minor units.
pub(crate) fn validate(new: &NewAttempt) -> Result<(), StoreError> {
    let invalid = |message: String| StoreError::InvalidInput { id: new.id.clone(), message };
    if new.amount.currency() != new.bound.currency() {
        return Err(invalid(format!(
            "amount {} and bound {} are in different currencies",
            new.amount, new.bound
        )));
    }
    if new.amount.is_negative() || new.amount.is_zero() {
        return Err(invalid(format!("amount {} is not positive", new.amount)));
    }
    minor(new.amount, &new.id)?;
    minor(new.bound, &new.id)?;
    i64::try_from(new.now.0).map_err(|_| invalid(format!("timestamp {} out of range", new.now.0)))?;
    Ok(())
}

/// The answer for a key already recorded: the same attempt (same fingerprint) or a conflict.
pub(crate) fn plan_existing_key(new: &NewAttempt, existing: Stored) -> Reservation {
    if existing.attempt.fingerprint == new.fingerprint {
        Reservation::Existing(existing.attempt)
    } else {
        Reservation::KeyConflict(existing.attempt)
    }
}

/// Decides a reservation for a key not recorded yet, given the id's current owner (if any) and
/// every attempt of the same (merchant, platform, order), oldest first.
///
/// Order of the checks: the id must be free; another attempt in flight makes the order busy (it
/// may still fail and free its amount, so the bound is judged only when nothing is in flight);
/// then held + amount must not exceed the bound.
pub(crate) fn plan_new(
    new: &NewAttempt,
    id_owner: Option<String>,
    order: &[Stored],
) -> Result<Plan, StoreError> {
    if let Some(existing_key) = id_owner {
        return Err(StoreError::DuplicateId { id: new.id.clone(), existing_key });
    }
    let currency = new.amount.currency();
    if let Some(other) = order.iter().find(|s| s.attempt.amount.currency() != currency) {
        return Err(StoreError::InvalidInput {
            id: new.id.clone(),
            message: format!(
                "order {} already has attempt {} in {}, this one is in {}",
                new.order_id,
                other.attempt.id,
                other.attempt.amount.currency(),
                currency
            ),
        });
    }
    if let Some(busy) = order.iter().find(|s| s.attempt.state.in_flight()) {
        return Ok(Plan::Answer(Reservation::OrderBusy(busy.attempt.clone())));
    }
    let held = held_minor(order, None, &new.id)?;
    let amount = minor(new.amount, &new.id)?;
    let bound = minor(new.bound, &new.id)?;
    let total = held.checked_add(amount).ok_or_else(|| overflow(&new.id))?;
    if total > bound {
        return Ok(Plan::Answer(Reservation::OverBound {
            held: Money::from_minor(held, currency),
            bound: new.bound,
        }));
    }
    Ok(Plan::Insert(Stored {
        attempt: Attempt {
            id: new.id.clone(),
            merchant: new.merchant.clone(),
            platform: new.platform.clone(),
            idempotency_key: new.idempotency_key.clone(),
            fingerprint: new.fingerprint.clone(),
            order_id: new.order_id.clone(),
            payment_ids: new.payment_ids.clone(),
            amount: new.amount,
            state: AttemptState::Reserved,
            resendable: false,
            platform_capture_id: None,
            request: None,
            response: None,
            outcome: None,
            sends: 0,
            created_at: new.now,
            updated_at: new.now,
        },
        bound_minor: bound,
    }))
}

fn overflow(id: &str) -> StoreError {
    StoreError::InvalidInput { id: id.to_owned(), message: "the amounts held overflow".to_owned() }
}

/// Sum of the amounts held by the order's attempts, in minor units, leaving out `except`.
fn held_minor(order: &[Stored], except: Option<&str>, id: &str) -> Result<i64, StoreError> {
    order
        .iter()
        .filter(|s| s.attempt.state.holds_amount() && Some(s.attempt.id.as_str()) != except)
        .try_fold(0i64, |acc, s| {
            acc.checked_add(minor(s.attempt.amount, &s.attempt.id)?).ok_or_else(|| overflow(id))
        })
}

/// Decides a transition of `current`. Returns the row to write and whether the move needs the
/// order's other attempts checked ([`check_resend`]) first.
pub(crate) fn plan_transition(
    current: Stored,
    from: &[AttemptState],
    to: AttemptState,
    update: AttemptUpdate,
    now: Timestamp,
) -> Result<(Stored, bool), StoreError> {
    let a = &current.attempt;
    if !from.contains(&a.state) {
        return Err(StoreError::StateConflict { id: a.id.clone(), expected: from.to_vec(), found: a.state });
    }
    let resend_of_failure = a.state == AttemptState::Failed && to == AttemptState::Sent;
    if !crate::transition_allowed(a.state, to) || (resend_of_failure && !a.resendable) {
        return Err(StoreError::InvalidTransition { id: a.id.clone(), from: a.state, to });
    }
    i64::try_from(now.0).map_err(|_| StoreError::InvalidInput {
        id: a.id.clone(),
        message: format!("timestamp {} out of range", now.0),
    })?;
    // Leaving a state that neither holds an amount nor blocks the order for one that does: the
    // invariants `reserve` enforced must be checked again against the order's current attempts.
    let needs_check =
        (!a.state.holds_amount() && to.holds_amount()) || (!a.state.in_flight() && to.in_flight());
    let mut next = current;
    let n = &mut next.attempt;
    n.state = to;
    // `resendable` describes the failure being recorded; it never carries over to another state.
    n.resendable = to == AttemptState::Failed && update.resendable == Some(true);
    if let Some(v) = update.platform_capture_id {
        n.platform_capture_id = Some(v);
    }
    if let Some(v) = update.request {
        n.request = Some(v);
    }
    if let Some(v) = update.response {
        n.response = Some(v);
    }
    if let Some(v) = update.outcome {
        n.outcome = Some(v);
    }
    if update.count_send {
        n.sends = n.sends.saturating_add(1);
    }
    n.updated_at = now;
    Ok((next, needs_check))
}

/// For a move back into flight (a resend of a failed attempt): no other attempt of the order may
/// be in flight, and what the others hold plus this amount must fit the bound recorded when this
/// attempt was reserved.
pub(crate) fn check_resend(next: &Stored, order: &[Stored]) -> Result<(), StoreError> {
    let a = &next.attempt;
    let refused = |reason: String| StoreError::ResendRefused { id: a.id.clone(), reason };
    if let Some(busy) = order.iter().find(|s| s.attempt.id != a.id && s.attempt.state.in_flight()) {
        return Err(refused(format!(
            "attempt {} of order {} is {}",
            busy.attempt.id, a.order_id, busy.attempt.state
        )));
    }
    let held = held_minor(order, Some(&a.id), &a.id)?;
    let total = held.checked_add(minor(a.amount, &a.id)?).ok_or_else(|| overflow(&a.id))?;
    if total > next.bound_minor {
        let currency = a.amount.currency();
        return Err(refused(format!(
            "the order holds {} and {} more would exceed the bound {}",
            Money::from_minor(held, currency),
            a.amount,
            Money::from_minor(next.bound_minor, currency)
        )));
    }
    Ok(())
}
