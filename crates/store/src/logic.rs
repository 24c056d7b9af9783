//! What both backends share: the row codecs and the decisions of `reserve`, `transition` and
//! `take_lease`.
//!
//! A backend reads rows inside its transaction (the order's row locked: SQLite's `BEGIN
//! IMMEDIATE`, PostgreSQL's `SELECT … FOR UPDATE`), asks a `plan_*` function what to do, writes
//! the result and commits. The rules live here once, so SQLite and PostgreSQL cannot disagree
//! about them, and they are pure: no IO, no clock (time comes in as an argument).

use capture_core::{Currency, Money, Timestamp};

use crate::{
    Attempt, AttemptState, AttemptUpdate, Authorization, Fence, Lease, LeaseGrant, NewAttempt, OrderRecord,
    Reservation, StoreError,
};

/// A stored attempt (kept as a type of its own so the store can grow fields only it needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub attempt: Attempt,
}

/// An attempt row as the database holds it: integers and text only.
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
    pub state: String,
    pub resendable: bool,
    pub captured_minor: Option<i64>,
    pub anomaly: Option<String>,
    pub platform_capture_id: Option<String>,
    pub request: Option<String>,
    pub response: Option<String>,
    pub outcome: Option<String>,
    pub sends: i64,
    pub last_sent_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_token: i64,
    pub lease_at: i64,
    pub lease_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The attempt columns in [`RawRow`] order, for SELECT and INSERT statements of both backends.
pub(crate) const COLUMNS: &str = "id, merchant, platform, idempotency_key, fingerprint, order_id, payment_ids, \
     amount_minor, currency, state, resendable, captured_minor, anomaly, platform_capture_id, request, response, \
     outcome, sends, last_sent_at, lease_owner, lease_token, lease_at, lease_until, created_at, updated_at";

/// How many columns [`COLUMNS`] names.
pub(crate) const NCOLUMNS: usize = 25;

/// The order columns in [`RawOrder`] order.
pub(crate) const ORDER_COLUMNS: &str = "merchant, platform, order_id, currency, authorized_minor, payments, \
     external_minor, held_minor, in_flight, updated_at";

/// `a, b` -> `t.a, t.b`: columns of a join.
pub(crate) fn qualified(table: &str, columns: &str) -> String {
    columns.split(',').map(|c| format!("{table}.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

/// States `unresolved()` lists, as stored.
pub(crate) const UNRESOLVED_STATES: [AttemptState; 4] =
    [AttemptState::Reserved, AttemptState::Sent, AttemptState::Pending, AttemptState::Unknown];

/// An order row as the database holds it.
#[derive(Debug, Clone)]
pub(crate) struct RawOrder {
    pub merchant: String,
    pub platform: String,
    pub order_id: String,
    pub currency: String,
    pub authorized_minor: i64,
    /// JSON `[["pay-1", 1000], …]`, sorted by id.
    pub payments: String,
    pub external_minor: i64,
    pub held_minor: i64,
    pub in_flight: Option<String>,
    pub updated_at: i64,
}

fn time(v: i64, what: &str, corrupt: &dyn Fn(String) -> StoreError) -> Result<Timestamp, StoreError> {
    u64::try_from(v).map(Timestamp).map_err(|_| corrupt(format!("{what} {v} is negative")))
}

fn stamp(t: Timestamp, id: &str) -> Result<i64, StoreError> {
    i64::try_from(t.0).map_err(|_| StoreError::InvalidInput {
        id: id.to_owned(),
        message: format!("timestamp {} out of range", t.0),
    })
}

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
        let token = u64::try_from(self.lease_token)
            .map_err(|_| corrupt(format!("lease_token {}", self.lease_token)))?;
        let last_sent_at = self.last_sent_at.map(|v| time(v, "last_sent_at", &corrupt)).transpose()?;
        Ok(Stored {
            attempt: Attempt {
                merchant: self.merchant,
                platform: self.platform,
                idempotency_key: self.idempotency_key,
                fingerprint: self.fingerprint,
                order_id: self.order_id,
                payment_ids,
                amount: Money::from_minor(self.amount_minor, currency),
                state,
                resendable: self.resendable,
                captured: self.captured_minor.map(|m| Money::from_minor(m, currency)),
                anomaly: self.anomaly,
                platform_capture_id: self.platform_capture_id,
                request: self.request,
                response: self.response,
                outcome: self.outcome,
                sends,
                last_sent_at,
                lease: Lease {
                    owner: self.lease_owner,
                    token,
                    taken_at: time(self.lease_at, "lease_at", &corrupt)?,
                    until: time(self.lease_until, "lease_until", &corrupt)?,
                },
                created_at: time(self.created_at, "created_at", &corrupt)?,
                updated_at: time(self.updated_at, "updated_at", &corrupt)?,
                id,
            },
        })
    }

    pub(crate) fn encode(stored: &Stored) -> Result<RawRow, StoreError> {
        let a = &stored.attempt;
        let invalid = |message: String| StoreError::InvalidInput { id: a.id.clone(), message };
        let payment_ids =
            serde_json::to_string(&a.payment_ids).map_err(|e| invalid(format!("payment ids: {e}")))?;
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
            state: a.state.as_str().to_owned(),
            resendable: a.resendable,
            captured_minor: a.captured.map(|m| minor(m, &a.id)).transpose()?,
            anomaly: a.anomaly.clone(),
            platform_capture_id: a.platform_capture_id.clone(),
            request: a.request.clone(),
            response: a.response.clone(),
            outcome: a.outcome.clone(),
            sends: i64::from(a.sends),
            last_sent_at: a.last_sent_at.map(|t| stamp(t, &a.id)).transpose()?,
            lease_owner: a.lease.owner.clone(),
            lease_token: i64::try_from(a.lease.token)
                .map_err(|_| invalid("lease token out of range".into()))?,
            lease_at: stamp(a.lease.taken_at, &a.id)?,
            lease_until: stamp(a.lease.until, &a.id)?,
            created_at: stamp(a.created_at, &a.id)?,
            updated_at: stamp(a.updated_at, &a.id)?,
        })
    }
}

impl RawOrder {
    pub(crate) fn decode(self) -> Result<OrderRecord, StoreError> {
        let id = format!("order {}/{}", self.platform, self.order_id);
        let corrupt = |message: String| StoreError::Corrupt { id: id.clone(), message };
        let currency = Currency::from_code(&self.currency).map_err(|e| corrupt(e.to_string()))?;
        let payments: Vec<(String, i64)> = serde_json::from_str(&self.payments)
            .map_err(|e| corrupt(format!("payments `{}`: {e}", self.payments)))?;
        Ok(OrderRecord {
            merchant: self.merchant,
            platform: self.platform,
            order_id: self.order_id,
            authorization: Authorization {
                total: Money::from_minor(self.authorized_minor, currency),
                payments: payments.into_iter().map(|(p, m)| (p, Money::from_minor(m, currency))).collect(),
            },
            external: Money::from_minor(self.external_minor, currency),
            held: Money::from_minor(self.held_minor, currency),
            in_flight: self.in_flight,
        })
    }

    pub(crate) fn encode(o: &OrderRecord, now: Timestamp) -> Result<RawOrder, StoreError> {
        let id = format!("order {}/{}", o.platform, o.order_id);
        let payments: Vec<(String, i64)> = o
            .authorization
            .payments
            .iter()
            .map(|(p, m)| Ok((p.clone(), minor(*m, &id)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(RawOrder {
            merchant: o.merchant.clone(),
            platform: o.platform.clone(),
            order_id: o.order_id.clone(),
            currency: o.authorization.total.currency().code().to_owned(),
            authorized_minor: minor(o.authorization.total, &id)?,
            payments: serde_json::to_string(&payments)
                .map_err(|e| StoreError::InvalidInput { id: id.clone(), message: e.to_string() })?,
            external_minor: minor(o.external, &id)?,
            held_minor: minor(o.held, &id)?,
            in_flight: o.in_flight.clone(),
            updated_at: stamp(now, &id)?,
        })
    }
}

fn minor(m: Money, id: &str) -> Result<i64, StoreError> {
    m.to_minor().map_err(|e| StoreError::InvalidInput { id: id.to_owned(), message: e.to_string() })
}

fn overflow(id: &str) -> StoreError {
    StoreError::InvalidInput { id: id.to_owned(), message: "the amounts held overflow".to_owned() }
}

fn add(a: Money, b: Money, id: &str) -> Result<Money, StoreError> {
    a.checked_add(b).map_err(|_| overflow(id))
}

fn sub(a: Money, b: Money, id: &str) -> Result<Money, StoreError> {
    a.checked_sub(b).map_err(|_| overflow(id))
}

/// Checks a new attempt before touching the database: positive amount, one currency, amounts
/// representable in minor units, a sane lease.
pub(crate) fn validate(new: &NewAttempt) -> Result<(), StoreError> {
    let invalid = |message: String| StoreError::InvalidInput { id: new.id.clone(), message };
    let currency = new.amount.currency();
    if new.authorization.total.currency() != currency
        || new.external.currency() != currency
        || new.authorization.payments.iter().any(|(_, m)| m.currency() != currency)
    {
        return Err(invalid(format!(
            "amount {} and authorization {} are in different currencies",
            new.amount, new.authorization
        )));
    }
    if new.amount.is_negative() || new.amount.is_zero() {
        return Err(invalid(format!("amount {} is not positive", new.amount)));
    }
    minor(new.amount, &new.id)?;
    minor(new.authorization.total, &new.id)?;
    minor(new.external, &new.id)?;
    // A negative authorization or external capture would widen the bound (total - external).
    if new.authorization.total.is_negative()
        || new.external.is_negative()
        || new.authorization.payments.iter().any(|(_, m)| m.is_negative())
    {
        return Err(invalid(format!(
            "authorization {} or external captures {} is negative",
            new.authorization, new.external
        )));
    }
    if new.owner.is_empty() {
        return Err(invalid("the lease owner is empty".into()));
    }
    stamp(new.now, &new.id)?;
    stamp(Timestamp(new.now.0.saturating_add(new.lease_ms)), &new.id)?;
    Ok(())
}

/// The order row a first reservation records (held 0, nothing in flight).
pub(crate) fn first_order(new: &NewAttempt) -> OrderRecord {
    OrderRecord {
        merchant: new.merchant.clone(),
        platform: new.platform.clone(),
        order_id: new.order_id.clone(),
        authorization: new.authorization.clone(),
        external: new.external,
        held: Money::zero(new.amount.currency()),
        in_flight: None,
    }
}

/// What `reserve` does once it has read the rows.
#[derive(Debug)]
// Built and consumed once per call, on the stack: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Plan {
    /// Answer without writing (roll back).
    Answer(Reservation),
    /// Insert this attempt, write this order row, then answer `Reserved`.
    Insert { attempt: Stored, order: OrderRecord },
}

/// Decides a reservation, given the attempt recorded under the key (if any), the id's current
/// owner (if any), the order's row (the recorded one, or [`first_order`] for a new order) and
/// the attempt the row says is in flight (if any).
pub(crate) fn plan_reserve(
    new: &NewAttempt,
    by_key: Option<Stored>,
    id_owner: Option<String>,
    order: OrderRecord,
    busy: Option<Stored>,
) -> Result<Plan, StoreError> {
    if let Some(existing) = by_key {
        return Ok(Plan::Answer(if existing.attempt.fingerprint == new.fingerprint {
            Reservation::Existing(existing.attempt)
        } else {
            Reservation::KeyConflict(existing.attempt)
        }));
    }
    if let Some(existing_key) = id_owner {
        return Err(StoreError::DuplicateId { id: new.id.clone(), existing_key });
    }
    let currency = new.amount.currency();
    if order.authorization.total.currency() != currency {
        return Err(StoreError::InvalidInput {
            id: new.id.clone(),
            message: format!(
                "order {} is recorded in {}, this request is in {}",
                new.order_id,
                order.authorization.total.currency(),
                currency
            ),
        });
    }
    if order.authorization != new.authorization {
        return Ok(Plan::Answer(Reservation::AuthorizationMismatch {
            recorded: order.authorization,
            given: new.authorization.clone(),
        }));
    }
    if let Some(id) = &order.in_flight {
        return match busy {
            Some(b) => Ok(Plan::Answer(Reservation::OrderBusy(b.attempt))),
            None => Err(StoreError::Corrupt {
                id: id.clone(),
                message: format!("order {} names it in flight but it does not exist", new.order_id),
            }),
        };
    }
    let mut order = order;
    if new.external > order.external {
        order.external = new.external;
    }
    let bound = order.bound();
    let total = add(order.held, new.amount, &new.id)?;
    if total > bound {
        return Ok(Plan::Answer(Reservation::OverBound { held: order.held, bound }));
    }
    order.held = total;
    order.in_flight = Some(new.id.clone());
    let attempt = Attempt {
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
        captured: None,
        anomaly: None,
        platform_capture_id: None,
        request: None,
        response: None,
        outcome: None,
        sends: 0,
        last_sent_at: None,
        lease: Lease {
            owner: Some(new.owner.clone()),
            token: 1,
            taken_at: new.now,
            until: Timestamp(new.now.0.saturating_add(new.lease_ms)),
        },
        created_at: new.now,
        updated_at: new.now,
    };
    Ok(Plan::Insert { attempt: Stored { attempt }, order })
}

/// Decides a transition of `current` by the holder of `fence`, and the order row that follows.
pub(crate) fn plan_transition(
    current: Stored,
    order: OrderRecord,
    fence: &Fence,
    from: &[AttemptState],
    to: AttemptState,
    update: AttemptUpdate,
    now: Timestamp,
) -> Result<(Stored, OrderRecord), StoreError> {
    let a = &current.attempt;
    if a.lease.token != fence.token || a.lease.owner.as_deref() != Some(fence.owner.as_str()) {
        return Err(StoreError::LeaseLost {
            id: a.id.clone(),
            holder: a.lease.owner.clone(),
            token: a.lease.token,
            presented: fence.token,
        });
    }
    if !from.contains(&a.state) {
        return Err(StoreError::StateConflict { id: a.id.clone(), expected: from.to_vec(), found: a.state });
    }
    let resend_of_failure = a.state == AttemptState::Failed && to == AttemptState::Sent;
    if !crate::transition_allowed(a.state, to) || (resend_of_failure && !a.resendable) {
        return Err(StoreError::InvalidTransition { id: a.id.clone(), from: a.state, to });
    }
    stamp(now, &a.id)?;
    if let Some(c) = update.captured
        && c.currency() != a.amount.currency()
    {
        return Err(StoreError::InvalidInput {
            id: a.id.clone(),
            message: format!("captured {c} is not in the attempt's currency {}", a.amount.currency()),
        });
    }
    let old_held = a.held();
    let mut next = current.clone();
    let n = &mut next.attempt;
    n.state = to;
    // `resendable` describes the failure being recorded; it never carries over to another state.
    n.resendable = to == AttemptState::Failed && update.resendable == Some(true);
    if let Some(v) = update.captured {
        n.captured = Some(v);
    }
    if let Some(v) = update.anomaly {
        n.anomaly = Some(v);
    }
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
        n.last_sent_at = Some(now);
    }
    if to.in_flight() {
        if let Some(until) = update.renew_until {
            stamp(until, &n.id)?;
            n.lease.taken_at = now;
            n.lease.until = until;
        }
    } else {
        // Out of flight: nobody holds it any more (the token stays, so an old holder stays fenced).
        n.lease.owner = None;
        n.lease.until = now;
    }
    n.updated_at = now;
    let new_held = n.held();

    let mut order = order;
    let id = n.id.clone();
    let refused = |reason: String| StoreError::ResendRefused { id: id.clone(), reason };
    if to.in_flight() {
        match &order.in_flight {
            Some(other) if *other != id => {
                return Err(refused(format!("attempt {other} of order {} is in flight", order.order_id)));
            }
            _ => order.in_flight = Some(id.clone()),
        }
    } else if order.in_flight.as_deref() == Some(id.as_str()) {
        order.in_flight = None;
    }
    let held = add(sub(order.held, old_held, &id)?, new_held, &id)?;
    if old_held.is_zero() && !new_held.is_zero() && held > order.bound() {
        // A resend of a failed attempt must fit the bound again; a recorded over-capture is a
        // fact and is recorded whatever the bound says.
        return Err(refused(format!(
            "the order holds {} and {} more would exceed the bound {}",
            order.held,
            new_held,
            order.bound()
        )));
    }
    if held.is_negative() {
        return Err(StoreError::Corrupt {
            id: id.clone(),
            message: format!("order {} would hold {held}", order.order_id),
        });
    }
    order.held = held;
    Ok((next, order))
}

/// What `take_lease` does once it has read the attempt.
#[derive(Debug)]
// Built and consumed once per call, on the stack: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LeasePlan {
    /// Answer without writing.
    Answer(LeaseGrant),
    /// Write this attempt (new owner and token, or a clamped expiry), then answer.
    Write(Stored, LeaseGrant),
}

/// Decides a lease request for `current`.
///
/// The rule for a lease stamped in the future: no lease lasts longer than `lease_ms`, so a
/// recorded expiry more than `lease_ms` after `now` comes from a clock ahead of this one; it is
/// brought back to `now + lease_ms` (same owner, same token), so the attempt frees up within one
/// lease of this clock instead of never.
pub(crate) fn plan_take_lease(
    current: Stored,
    owner: &str,
    lease_ms: u64,
    min_age_ms: Option<u64>,
    now: Timestamp,
) -> Result<LeasePlan, StoreError> {
    let a = &current.attempt;
    // A resendable failure can be taken (to send it again); every other final state cannot.
    if a.state.is_final() && !(a.state == AttemptState::Failed && a.resendable) {
        return Ok(LeasePlan::Answer(LeaseGrant::Final(current.attempt)));
    }
    let until = Timestamp(now.0.saturating_add(lease_ms));
    stamp(until, &a.id)?;
    let free = a.lease.owner.is_none()
        || a.lease.until <= now
        || min_age_ms.is_some_and(|age| a.lease.taken_at.0.saturating_add(age) <= now.0);
    if !free {
        if a.lease.until > until {
            let mut next = current.clone();
            next.attempt.lease.until = until;
            let grant = LeaseGrant::Held { owner: a.lease.owner.clone(), until, clamped: true };
            return Ok(LeasePlan::Write(next, grant));
        }
        return Ok(LeasePlan::Answer(LeaseGrant::Held {
            owner: a.lease.owner.clone(),
            until: a.lease.until,
            clamped: false,
        }));
    }
    let mut next = current.clone();
    let n = &mut next.attempt;
    n.lease =
        Lease { owner: Some(owner.to_owned()), token: n.lease.token.saturating_add(1), taken_at: now, until };
    let grant = LeaseGrant::Granted(n.clone());
    Ok(LeasePlan::Write(next, grant))
}

#[cfg(test)]
#[path = "logic_proptests.rs"]
mod proptests;

#[cfg(test)]
mod column_counts {
    #[test]
    fn the_column_counts_match_the_column_lists() {
        assert_eq!(super::COLUMNS.split(',').count(), super::NCOLUMNS);
        assert_eq!(super::ORDER_COLUMNS.split(',').count(), 10);
    }
}
