//! Host hooks: Rust code of the embedding application that takes part in the pipeline.

use async_trait::async_trait;
use capture_core::{CaptureRequest, Decision, Money, Outcome, Timestamp};

/// What a hook sees.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    /// The request.
    pub request: &'a CaptureRequest,
    /// The amount the pipeline intends to capture.
    pub amount: Money,
    /// What the order still allows.
    pub capturable: Money,
    /// The injected clock's value for this capture.
    pub now: Timestamp,
}

/// What a post-capture hook adds to the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// Tags.
    pub tags: Vec<String>,
    /// Notes.
    pub notes: Vec<String>,
}

/// A host hook. Hooks of a stage run in order of (priority, name); their pre-validate decisions
/// merge with the built-in checks and the merchant's rules (reject > hold > adjust > allow).
#[async_trait]
pub trait Hook: Send + Sync {
    /// A unique name, shown in reports.
    fn name(&self) -> &str;

    /// Lower runs first. Default 0.
    fn priority(&self) -> i64 {
        0
    }

    /// A version shown in reports. Default none.
    fn version(&self) -> Option<String> {
        None
    }

    /// Decides before the platform is called. Default: allow.
    async fn pre_validate(&self, _ctx: &HookContext<'_>) -> Decision {
        Decision::Allow
    }

    /// Observes the outcome; cannot change it. Default: nothing.
    async fn post_capture(&self, _ctx: &HookContext<'_>, _outcome: &Outcome) -> Observation {
        Observation::default()
    }
}
