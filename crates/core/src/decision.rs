//! What hooks and rules decide, and how their decisions merge.

use serde::Serialize;

use crate::money::Money;

/// A pre-validation verdict from a built-in check, a host hook or a merchant rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Never capture this request.
    Reject {
        /// A short machine-readable code (`amount_exceeds_capturable`).
        code: String,
        /// A sentence for people.
        reason: String,
    },
    /// Do not capture now; a person or a later run decides.
    Hold {
        /// Why.
        reason: String,
    },
    /// Capture a different amount (validated again by the built-in checks).
    Adjust {
        /// The new amount.
        amount: Money,
    },
}

impl Decision {
    /// Precedence when merging: reject > hold > adjust > allow.
    pub fn precedence(&self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::Adjust { .. } => 1,
            Decision::Hold { .. } => 2,
            Decision::Reject { .. } => 3,
        }
    }

    /// Short name of the verdict (`allow`, `reject`, `hold`, `adjust`).
    pub fn verdict(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Reject { .. } => "reject",
            Decision::Hold { .. } => "hold",
            Decision::Adjust { .. } => "adjust",
        }
    }
}

/// Merges decisions in order: the highest precedence wins; among equals, the first one
/// (decisions arrive in the stage's total order, so the result is deterministic).
pub fn merge<'a>(decisions: impl IntoIterator<Item = &'a Decision>) -> Decision {
    let mut best = Decision::Allow;
    for d in decisions {
        if d.precedence() > best.precedence() {
            best = d.clone();
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_beats_hold_beats_adjust_beats_allow() {
        let usd = crate::Currency::from_code("USD").unwrap();
        let adjust = Decision::Adjust { amount: Money::from_minor(100, usd) };
        let hold = Decision::Hold { reason: "review".into() };
        let hold2 = Decision::Hold { reason: "second".into() };
        let reject = Decision::Reject { code: "no".into(), reason: "never".into() };
        assert_eq!(merge([&Decision::Allow, &adjust]), adjust);
        assert_eq!(merge([&adjust, &hold, &Decision::Allow]), hold);
        assert_eq!(merge([&hold, &hold2]), hold, "first among equals wins");
        assert_eq!(merge([&reject, &hold, &adjust]), reject);
        assert_eq!(merge([]), Decision::Allow);
    }
}
