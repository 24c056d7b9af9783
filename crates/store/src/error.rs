//! Typed store errors.

use crate::AttemptState;

/// What went wrong in the store. Messages never contain a PostgreSQL password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be opened or its schema created.
    #[error("cannot open the capture store {target}: {message}")]
    Open {
        /// The file or URL (password redacted).
        target: String,
        /// Why.
        message: String,
    },
    /// The database refused or failed an operation (connection lost, disk full, lock timeout).
    #[error("capture store: {0}")]
    Database(String),
    /// Compare-and-set failed: the attempt is not in a state the caller expected (another task or
    /// process moved it).
    #[error("attempt {id} is {found}, expected {}: another task or process moved it", states(.expected))]
    StateConflict {
        /// The attempt.
        id: String,
        /// The states the caller expected.
        expected: Vec<AttemptState>,
        /// The state it is in.
        found: AttemptState,
    },
    /// The state machine does not allow this transition (or a failed attempt that is not
    /// resendable was asked to be sent again).
    #[error("attempt {id}: {from} -> {to} is not an allowed transition")]
    InvalidTransition {
        /// The attempt.
        id: String,
        /// Its current state.
        from: AttemptState,
        /// The state asked for.
        to: AttemptState,
    },
    /// The caller's lease was taken over (or never held): the store refuses its write. Another
    /// task or process owns the attempt now; the caller must not act on it any further.
    #[error("attempt {id}: the lease presented (token {presented}) is not the current one (token {token}, held by {}): another task or process took the attempt over", holder.as_deref().unwrap_or("nobody"))]
    LeaseLost {
        /// The attempt.
        id: String,
        /// Who holds it now.
        holder: Option<String>,
        /// The current token.
        token: u64,
        /// The token the caller presented.
        presented: u64,
    },
    /// No attempt with this id.
    #[error("no capture attempt `{0}`")]
    NotFound(String),
    /// A stored row cannot be read back (unknown state, currency or malformed JSON).
    #[error("attempt {id} is corrupt in the store: {message}")]
    Corrupt {
        /// The attempt.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The new attempt is malformed: a non-positive amount, an amount and bound in different
    /// currencies, an amount out of range, or an order whose attempts are in another currency.
    #[error("invalid capture attempt {id}: {message}")]
    InvalidInput {
        /// The attempt.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// `reserve` was given an attempt id that is already used by another idempotency key.
    #[error("attempt id `{id}` is already used by idempotency key `{existing_key}`")]
    DuplicateId {
        /// The id.
        id: String,
        /// The key it is recorded under.
        existing_key: String,
    },
    /// A resend of a failed attempt (Failed -> Sent) was refused because it would break an
    /// invariant `reserve` enforces: another attempt of the order is in flight, or the amounts
    /// held for the order plus this one would exceed its bound.
    #[error("attempt {id} cannot be sent again: {reason}")]
    ResendRefused {
        /// The attempt.
        id: String,
        /// Why.
        reason: String,
    },
}

fn states(list: &[AttemptState]) -> String {
    match list {
        [] => "no state (empty `from`)".to_owned(),
        [one] => one.as_str().to_owned(),
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            format!("one of {}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_states() {
        let e = StoreError::StateConflict {
            id: "cap_1".into(),
            expected: vec![AttemptState::Sent, AttemptState::Unknown],
            found: AttemptState::Captured,
        };
        assert_eq!(
            e.to_string(),
            "attempt cap_1 is captured, expected one of sent, unknown: another task or process moved it"
        );
        let e = StoreError::InvalidTransition {
            id: "cap_1".into(),
            from: AttemptState::Reserved,
            to: AttemptState::Captured,
        };
        assert_eq!(e.to_string(), "attempt cap_1: reserved -> captured is not an allowed transition");
    }
}
