//! How a stage's decisions add up: the one merge the pipeline makes (reject > hold > adjust >
//! allow, the first among equals, naming who decided) and the one collection of the rules' tags,
//! notes and follow-ups. Public so that tools evaluating rules without an engine
//! (`capture rules test|eval|backtest`) merge exactly as a capture does.

use std::collections::{BTreeMap, BTreeSet};

use capture_core::{Decision, Outcome};
use capture_rules::RuleVerdict;

/// What a stage's decisions and rule verdicts add up to so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The merged decision: the highest precedence seen (reject > hold > adjust > allow); among
    /// equals, the first one.
    pub decision: Decision,
    /// Who made it (the name given to [`Merged::decide`]); `None` while everything allowed.
    pub by: Option<String>,
    /// Every tag, sorted, once.
    pub tags: BTreeSet<String>,
    /// Every note, in order, each prefixed with its rule's name (`rule: note`).
    pub notes: Vec<String>,
    /// Every follow-up, in order.
    pub follow_ups: Vec<BTreeMap<String, String>>,
}

impl Default for Merged {
    fn default() -> Self {
        Merged {
            decision: Decision::Allow,
            by: None,
            tags: BTreeSet::new(),
            notes: Vec::new(),
            follow_ups: Vec::new(),
        }
    }
}

impl Merged {
    /// Takes one decision, made by `by`, in the stage's order.
    pub fn decide(&mut self, by: &str, d: &Decision) {
        if d.precedence() > self.decision.precedence() {
            self.decision = d.clone();
            self.by = Some(by.to_owned());
        }
    }

    /// Takes a rule verdict's tags, notes and follow-ups (not its decision).
    pub fn collect(&mut self, v: &RuleVerdict<'_>) {
        self.tags.extend(v.tags.iter().cloned());
        self.notes.extend(v.notes.iter().map(|n| format!("{}: {n}", v.rule)));
        self.follow_ups.extend(v.follow_ups.iter().cloned());
    }

    /// The pre-validate verdicts of a rule set alone, as the engine merges them (each rule
    /// decides under its own name; tags, notes and follow-ups collected).
    pub fn of_rules(verdicts: &[RuleVerdict<'_>]) -> Merged {
        let mut m = Merged::default();
        for v in verdicts {
            m.decide(&v.rule, &v.decision);
            m.collect(v);
        }
        m
    }

    /// The post-capture verdicts of a rule set: they never decide (a failed rule's hold is only
    /// its error); tags, notes and follow-ups collected.
    pub fn of_observations(verdicts: &[RuleVerdict<'_>]) -> Merged {
        let mut m = Merged::default();
        for v in verdicts {
            m.collect(v);
        }
        m
    }
}

/// One line about an outcome for people, to follow its status (`capture captured: 120.00 USD
/// captured (id c-1)`, `reconciled ... -> failed: NotFound (404): ...`). Not escaped: a caller
/// printing it to a terminal escapes it (`capture_core::text::escape`).
pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Captured { amount, platform_capture_id } => {
            format!("{amount} captured (id {})", platform_capture_id.as_deref().unwrap_or("-"))
        }
        Outcome::Pending { amount, .. } => format!("{amount} pending at the platform"),
        Outcome::Rejected { by, reason, .. } => format!("by {by}: {reason}"),
        Outcome::Held { by, reason } => format!("by {by}: {reason}"),
        Outcome::AlreadyCaptured { platform_code, message } => {
            format!("already captured ({}): {message}", platform_code.as_deref().unwrap_or("-"))
        }
        Outcome::Failed { kind, platform_code, message, retryable, retry_after_ms } => format!(
            "{kind:?} ({}){}{}: {message}",
            platform_code.as_deref().unwrap_or("no answer"),
            if *retryable { ", retryable" } else { "" },
            retry_after_ms.map(|ms| format!(" after {ms} ms")).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use capture_core::{Currency, Money, merge};

    use super::*;

    fn verdict(rule: &'static str, decision: Decision, tags: &[&str]) -> RuleVerdict<'static> {
        RuleVerdict {
            rule: Cow::Borrowed(rule),
            file: Cow::Borrowed("f.lua"),
            hash: Cow::Borrowed("h"),
            decision,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            notes: vec![format!("{rule} says hi")],
            follow_ups: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn the_merge_is_core_merge_and_names_the_first_of_the_winners() {
        let usd = Currency::from_code("USD").expect("USD");
        let adjust = Decision::Adjust { amount: Money::from_minor(100, usd) };
        let hold = |r: &str| Decision::Hold { reason: r.into() };
        let verdicts = vec![
            verdict("a", Decision::Allow, &["z"]),
            verdict("b", adjust.clone(), &["y", "z"]),
            verdict("c", hold("first"), &[]),
            verdict("d", hold("second"), &["x"]),
        ];
        let m = Merged::of_rules(&verdicts);
        assert_eq!(m.decision, merge(verdicts.iter().map(|v| &v.decision)));
        assert_eq!((m.decision, m.by.as_deref()), (hold("first"), Some("c")));
        assert_eq!(m.tags.into_iter().collect::<Vec<_>>(), ["x", "y", "z"]);
        assert_eq!(m.notes[1], "b: b says hi");
        let allowed = Merged::of_rules(&verdicts[..1]);
        assert_eq!((allowed.decision, allowed.by), (Decision::Allow, None));
        let observed = Merged::of_observations(&verdicts);
        assert_eq!((observed.decision, observed.by, observed.notes.len()), (Decision::Allow, None, 4));
    }
}
