//! The fault kinds the simulator injects, the per-history plan that chooses them, and their counts.

use std::collections::BTreeMap;

use crate::rng::Rng;

/// Every kind of fault (and adversarial input) a history may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The process dies just before a store write (the write does not happen).
    CrashBeforeStoreWrite,
    /// The process dies just after a store write (committed, but the caller never learns it).
    CrashAfterStoreWrite,
    /// The process dies just before a request leaves.
    CrashBeforeSend,
    /// The process dies just after the platform applied the request.
    CrashAfterSend,
    /// The platform applied the request; the answer is lost (connection reset).
    LostAnswer,
    /// The platform applied the request and answered a 5xx anyway.
    Status5xxApplied,
    /// The platform answered a 5xx without applying.
    Status5xxNotApplied,
    /// The platform applied the request; no answer within the timeout.
    TimeoutApplied,
    /// No answer within the timeout; nothing applied.
    TimeoutNotApplied,
    /// The network delivered the request twice.
    DuplicateDelivery,
    /// The answer arrives after the attempt's in-flight window (the process was frozen).
    SlowAnswer,
    /// A status read answered from the platform's state as of an earlier point.
    LaggingStatusRead,
    /// The store refused a write with an error (connection lost), nothing written.
    StoreWriteError,
    /// The process's clock jumps forward (1 to 24 hours).
    ClockJumpForward,
    /// The process's clock jumps back (1 to 60 minutes).
    ClockJumpBack,
    /// The platform applied a different amount than asked (and says so).
    AmountMismatch,
    /// The host's snapshot claims more authorized than the platform holds.
    InflatedSnapshot,
    /// The host's snapshot claims less authorized than the platform holds.
    DeflatedSnapshot,
    /// The host's snapshot lists payments larger than the order amount.
    InconsistentSnapshot,
    /// The host sends the same request (same key) again, from the same or another process.
    ReplayedRequest,
    /// A reconcile started while another one was running.
    ConcurrentReconcile,
    /// A crashed process was restarted (it reconciles and may replay its requests).
    Restart,
    /// The first snapshot of an order (the one the ledger records) lied about the authorization.
    WrongFirstSnapshot,
}

impl Fault {
    /// Every kind, in report order.
    pub const ALL: [Fault; 23] = [
        Fault::CrashBeforeStoreWrite,
        Fault::CrashAfterStoreWrite,
        Fault::CrashBeforeSend,
        Fault::CrashAfterSend,
        Fault::LostAnswer,
        Fault::Status5xxApplied,
        Fault::Status5xxNotApplied,
        Fault::TimeoutApplied,
        Fault::TimeoutNotApplied,
        Fault::DuplicateDelivery,
        Fault::SlowAnswer,
        Fault::LaggingStatusRead,
        Fault::StoreWriteError,
        Fault::ClockJumpForward,
        Fault::ClockJumpBack,
        Fault::AmountMismatch,
        Fault::InflatedSnapshot,
        Fault::DeflatedSnapshot,
        Fault::InconsistentSnapshot,
        Fault::ReplayedRequest,
        Fault::ConcurrentReconcile,
        Fault::Restart,
        Fault::WrongFirstSnapshot,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::CrashBeforeStoreWrite => "crash_before_store_write",
            Fault::CrashAfterStoreWrite => "crash_after_store_write",
            Fault::CrashBeforeSend => "crash_before_send",
            Fault::CrashAfterSend => "crash_after_send",
            Fault::LostAnswer => "lost_answer_after_apply",
            Fault::Status5xxApplied => "5xx_applied",
            Fault::Status5xxNotApplied => "5xx_not_applied",
            Fault::TimeoutApplied => "timeout_applied",
            Fault::TimeoutNotApplied => "timeout_not_applied",
            Fault::DuplicateDelivery => "duplicate_delivery",
            Fault::SlowAnswer => "slow_answer_past_lease",
            Fault::LaggingStatusRead => "lagging_status_read",
            Fault::StoreWriteError => "store_write_error",
            Fault::ClockJumpForward => "clock_jump_forward",
            Fault::ClockJumpBack => "clock_jump_back",
            Fault::AmountMismatch => "amount_mismatch",
            Fault::InflatedSnapshot => "inflated_snapshot",
            Fault::DeflatedSnapshot => "deflated_snapshot",
            Fault::InconsistentSnapshot => "inconsistent_snapshot",
            Fault::ReplayedRequest => "replayed_request",
            Fault::ConcurrentReconcile => "concurrent_reconcile",
            Fault::Restart => "restart",
            Fault::WrongFirstSnapshot => "wrong_first_snapshot",
        }
    }

    /// Parses [`Fault::name`].
    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// How many of each fault a run injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<Fault, u64>);

impl Counts {
    /// One more `f`.
    pub fn add(&mut self, f: Fault) {
        *self.0.entry(f).or_insert(0) += 1;
    }

    /// Adds another run's counts.
    pub fn merge(&mut self, other: &Counts) {
        for (f, n) in &other.0 {
            *self.0.entry(*f).or_insert(0) += n;
        }
    }

    /// The count of `f`.
    pub fn get(&self, f: Fault) -> u64 {
        self.0.get(&f).copied().unwrap_or(0)
    }

    /// Every kind with its count, zeros included, one per line.
    pub fn table(&self) -> String {
        Fault::ALL.iter().map(|f| format!("  {:<26} {:>9}\n", f.name(), self.get(*f))).collect()
    }
}

/// Which faults a history injects and how often (per mille of the calls where each applies).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Faults of sends.
    pub send: Vec<Fault>,
    /// Per mille of sends that get one of `send`.
    pub send_rate: u64,
    /// Faults of store writes.
    pub store: Vec<Fault>,
    /// Per mille of store writes that get one of `store`.
    pub store_rate: u64,
    /// Per mille of wrapper calls where the process's clock jumps.
    pub clock_rate: u64,
    /// Clock jumps enabled.
    pub clock: Vec<Fault>,
    /// Per mille of status reads that lag.
    pub lag_rate: u64,
}

impl FaultPlan {
    /// No faults (the quiescence phase).
    pub fn none() -> FaultPlan {
        FaultPlan {
            send: vec![],
            send_rate: 0,
            store: vec![],
            store_rate: 0,
            clock_rate: 0,
            clock: vec![],
            lag_rate: 0,
        }
    }

    /// A plan drawn from the history's generator: a random subset of the kinds, at one of a
    /// few intensities (a fifth of the histories inject nothing into sends or store writes).
    pub fn draw(rng: &mut Rng) -> FaultPlan {
        let subset = |rng: &mut Rng, kinds: &[Fault]| -> Vec<Fault> {
            let chosen: Vec<Fault> = kinds.iter().copied().filter(|_| rng.chance(450)).collect();
            if chosen.is_empty() { vec![*rng.pick(kinds)] } else { chosen }
        };
        let send = subset(
            rng,
            &[
                Fault::CrashBeforeSend,
                Fault::CrashAfterSend,
                Fault::LostAnswer,
                Fault::Status5xxApplied,
                Fault::Status5xxNotApplied,
                Fault::TimeoutApplied,
                Fault::TimeoutNotApplied,
                Fault::DuplicateDelivery,
                Fault::SlowAnswer,
                Fault::AmountMismatch,
            ],
        );
        let store =
            subset(rng, &[Fault::CrashBeforeStoreWrite, Fault::CrashAfterStoreWrite, Fault::StoreWriteError]);
        let clock = subset(rng, &[Fault::ClockJumpForward, Fault::ClockJumpBack]);
        let rates = [0, 80, 200, 400];
        FaultPlan {
            send,
            send_rate: *rng.pick(&rates),
            store,
            store_rate: *rng.pick(&[0, 0, 30, 80, 150]),
            clock_rate: *rng.pick(&[0, 0, 20, 60]),
            clock,
            lag_rate: *rng.pick(&[0, 300, 600]),
        }
    }
}
