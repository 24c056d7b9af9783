//! The per-attempt state machine.

use std::fmt;

/// Where a capture attempt is in its life. See the crate docs for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Recorded in the ledger; nothing sent to the platform yet.
    Reserved,
    /// The request was (or is being) sent; no answer recorded yet.
    Sent,
    /// The platform captured the money.
    Captured,
    /// The platform accepted the capture; its final state comes later.
    Pending,
    /// The capture failed (see `resendable` for whether a resend is safe).
    Failed,
    /// The request may or may not have been applied (5xx, timeout, dropped connection): the
    /// platform's state must be read before anything is sent again.
    Unknown,
    /// The platform says the payment was already captured; nothing new was captured by this attempt.
    AlreadyCaptured,
}

/// Every state, in declaration order (for tables and tests).
pub const ALL_STATES: [AttemptState; 7] = [
    AttemptState::Reserved,
    AttemptState::Sent,
    AttemptState::Captured,
    AttemptState::Pending,
    AttemptState::Failed,
    AttemptState::Unknown,
    AttemptState::AlreadyCaptured,
];

impl AttemptState {
    /// The name stored in the database and shown in messages (`reserved`, `already_captured`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Reserved => "reserved",
            AttemptState::Sent => "sent",
            AttemptState::Captured => "captured",
            AttemptState::Pending => "pending",
            AttemptState::Failed => "failed",
            AttemptState::Unknown => "unknown",
            AttemptState::AlreadyCaptured => "already_captured",
        }
    }

    /// Parses the stored name (the inverse of [`AttemptState::as_str`]).
    pub fn parse(text: &str) -> Option<AttemptState> {
        ALL_STATES.into_iter().find(|s| s.as_str() == text)
    }

    /// Captured, Failed and AlreadyCaptured: nothing more will happen on the platform for this
    /// attempt (a retryable failure may still be resent, see [`transition_allowed`]).
    pub fn is_final(self) -> bool {
        matches!(self, AttemptState::Captured | AttemptState::Failed | AttemptState::AlreadyCaptured)
    }

    /// Every state but Failed: the platform may hold (or holds) the money, so the amount counts
    /// against the order's bound. Failed means the platform certainly captured nothing.
    pub fn holds_amount(self) -> bool {
        !matches!(self, AttemptState::Failed)
    }

    /// Reserved, Sent and Unknown: the platform's answer is not known yet, so no other attempt of
    /// the same order may start.
    pub fn in_flight(self) -> bool {
        matches!(self, AttemptState::Reserved | AttemptState::Sent | AttemptState::Unknown)
    }
}

impl fmt::Display for AttemptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Allowed transitions (the state machine): Reserved->Sent, Reserved->Failed (nothing sent);
/// Sent->{Captured,Pending,Failed,Unknown,AlreadyCaptured}; Unknown->{Captured,Pending,Failed,AlreadyCaptured,Sent
/// (resend with the same key after the platform's state showed nothing applied)};
/// Pending->{Captured,Failed,Pending}; Failed->Sent only when the failure was retryable and nothing
/// was applied (the attempt's `resendable` flag, which the store checks in
/// [`CaptureStore::transition`](crate::CaptureStore::transition); this table only says the edge exists).
pub fn transition_allowed(from: AttemptState, to: AttemptState) -> bool {
    use AttemptState::*;
    match from {
        Reserved => matches!(to, Sent | Failed),
        Sent => matches!(to, Captured | Pending | Failed | Unknown | AlreadyCaptured),
        Unknown => matches!(to, Captured | Pending | Failed | AlreadyCaptured | Sent),
        Pending => matches!(to, Captured | Failed | Pending),
        Failed => matches!(to, Sent),
        Captured | AlreadyCaptured => false,
    }
}

#[cfg(test)]
mod tests {
    use super::AttemptState::*;
    use super::*;

    /// The whole 7x7 table, written out: every pair not listed here must be refused.
    const ALLOWED: &[(AttemptState, AttemptState)] = &[
        (Reserved, Sent),
        (Reserved, Failed),
        (Sent, Captured),
        (Sent, Pending),
        (Sent, Failed),
        (Sent, Unknown),
        (Sent, AlreadyCaptured),
        (Unknown, Captured),
        (Unknown, Pending),
        (Unknown, Failed),
        (Unknown, AlreadyCaptured),
        (Unknown, Sent),
        (Pending, Captured),
        (Pending, Failed),
        (Pending, Pending),
        (Failed, Sent),
    ];

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        let mut checked = 0;
        for from in ALL_STATES {
            for to in ALL_STATES {
                let expected = ALLOWED.contains(&(from, to));
                assert_eq!(transition_allowed(from, to), expected, "{from} -> {to}");
                checked += 1;
            }
        }
        assert_eq!(checked, 49);
        println!("transition table: {checked} pairs checked, {} allowed", ALLOWED.len());
    }

    #[test]
    fn final_states_have_no_way_out_except_a_resend() {
        for s in [Captured, AlreadyCaptured] {
            assert!(ALL_STATES.iter().all(|&to| !transition_allowed(s, to)), "{s}");
        }
        assert_eq!(ALL_STATES.iter().filter(|&&to| transition_allowed(Failed, to)).count(), 1);
        // Nothing goes back to Reserved: a reservation is only ever made by `reserve`.
        assert!(ALL_STATES.iter().all(|&from| !transition_allowed(from, Reserved)));
    }

    #[test]
    fn predicates() {
        let finals: Vec<_> = ALL_STATES.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [Captured, Failed, AlreadyCaptured]);
        let holds: Vec<_> = ALL_STATES.into_iter().filter(|s| s.holds_amount()).collect();
        assert_eq!(holds, [Reserved, Sent, Captured, Pending, Unknown, AlreadyCaptured]);
        let flying: Vec<_> = ALL_STATES.into_iter().filter(|s| s.in_flight()).collect();
        assert_eq!(flying, [Reserved, Sent, Unknown]);
        // In flight implies held: an attempt the platform may apply always counts against the bound.
        assert!(ALL_STATES.into_iter().all(|s| !s.in_flight() || s.holds_amount()));
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in ALL_STATES {
            assert_eq!(AttemptState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
            let back: AttemptState = serde_json::from_str(&format!("\"{s}\"")).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(AttemptState::parse("Captured"), None);
    }
}
