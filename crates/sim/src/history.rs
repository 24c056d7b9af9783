//! One history: its plan drawn from the seed, the processes running it, quiescence, and the
//! invariants checked at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use capture_core::{CaptureReport, Money, Outcome};
use capture_engine::{Engine, PlatformSetup, Reconciled, RetryPolicy, Secret, SeededRandom, TokioSleeper};
use capture_store::{Attempt, AttemptState, CaptureStore};

use crate::faults::{Counts, Fault, FaultPlan};
use crate::models::{PlatformKind, World, usd};
use crate::rng::Rng;
use crate::wrappers::{
    Exec, Proc, Reconciling, Shared, SimClock, SimStore, SimTransport, TASK, TaskCtx, lock,
};
use crate::{Env, Options};

/// The merchant of every history.
pub const MERCHANT: &str = "sim-merchant";
/// The platform timeout configured in every engine.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The `takeover_after` of the quiescence reconciles: none, leases expire as time passes.
pub const QUIESCENCE_TAKEOVER_AFTER: Option<Duration> = None;

/// What one history did and found.
#[derive(Debug, Clone)]
pub struct HistoryReport {
    /// The seed.
    pub seed: u64,
    /// Its platform.
    pub platform: PlatformKind,
    /// Faults injected.
    pub counts: Counts,
    /// Broken invariants, each a line starting with its letter.
    pub violations: Vec<String>,
    /// The trace (empty unless asked for).
    pub trace: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Snapshot {
    True,
    /// Every payment (and the order amount) multiplied.
    Inflated(i64),
    /// The first payment (and the order amount) smaller by this many cents.
    Deflated(i64),
    /// The payments multiplied, the order amount true.
    Inconsistent(i64),
}

#[derive(Debug, Clone)]
struct CapturePlan {
    order: usize,
    key: String,
    /// None: "full".
    amount: Option<Money>,
    snapshot: Snapshot,
}

#[derive(Debug, Clone)]
enum TaskPlan {
    Capture(CapturePlan),
    /// `takeover_after`: None waits for leases to expire; Some(0) takes every lease over.
    Reconcile(Option<Duration>),
}

#[derive(Debug, Clone)]
struct ProcPlan {
    tasks: Vec<TaskPlan>,
    restart: Option<Vec<TaskPlan>>,
}

#[derive(Debug)]
struct Plan {
    kind: PlatformKind,
    orders: Vec<(String, Vec<(String, Money)>)>,
    procs: Vec<ProcPlan>,
    faults: FaultPlan,
    settle_reads: u32,
}

fn guid(seed: u64, a: u64, b: u64) -> String {
    let mut r = Rng::new(seed ^ 0x6a1d, a * 1000 + b);
    let x = r.next_u64();
    let y = r.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        y >> 52,
        y & 0xffff_ffff_ffff
    )
}

fn draw_plan(seed: u64, platform: Option<PlatformKind>) -> Plan {
    let mut r = Rng::new(seed, 0);
    let kind = platform.unwrap_or(PlatformKind::ALL[usize::try_from(seed % 5).unwrap_or(0)]);
    let n_orders = r.range(1, 2);
    let mut orders = Vec::new();
    for o in 0..n_orders {
        let id = match kind {
            PlatformKind::Optty => format!("ORD-{}", 1001 + o),
            PlatformKind::BigCommerce => format!("{}", 100 + o),
            PlatformKind::Medusa => format!("order_{o:02}"),
            PlatformKind::Wix => guid(seed, o, 0),
            PlatformKind::Permissive => format!("ex-order-{o}"),
        };
        let n_pay = r.range(1, kind.max_payments());
        let payments: Vec<(String, Money)> = (0..n_pay)
            .map(|p| {
                let pid = match kind {
                    PlatformKind::Optty => format!("pay-{}-{p}", 1001 + o),
                    PlatformKind::Medusa => format!("pay_{o:02}_{p}"),
                    PlatformKind::Wix => guid(seed, o, p + 1),
                    _ => format!("pay-{o}-{p}"),
                };
                let cents =
                    i64::try_from(r.range(10, 200) * 100 + *r.pick(&[0, 0, 50, 99, 1])).unwrap_or(1000);
                (pid, Money::from_minor(cents, usd()))
            })
            .collect();
        orders.push((id, payments));
    }
    let faults = FaultPlan::draw(&mut r);
    let mut keys = 0u64;
    let mut made: Vec<CapturePlan> = Vec::new();
    let mut procs = Vec::new();
    let snapshot_faults = r.chance(350);
    for _ in 0..r.range(2, 4) {
        let mut tasks = Vec::new();
        for _ in 0..r.range(1, 3) {
            if r.chance(250) {
                tasks.push(TaskPlan::Reconcile(*r.pick(&[
                    Some(Duration::ZERO),
                    Some(Duration::ZERO),
                    None,
                    Some(Duration::from_secs(60)),
                    Some(Duration::from_secs(600)),
                ])));
                continue;
            }
            if !made.is_empty() && r.chance(200) {
                let again = r.pick(&made).clone();
                tasks.push(TaskPlan::Capture(again));
                continue;
            }
            let order = usize::try_from(r.below(n_orders)).unwrap_or(0);
            let total = orders[order].1.iter().fold(0i64, |acc, (_, m)| acc + m.to_minor().unwrap_or(0));
            let amount = if kind.partial() && r.chance(650) {
                let cents = match r.below(4) {
                    0 => total,
                    1 => total / 2,
                    _ => i64::try_from(r.range(1, u64::try_from(total).unwrap_or(1))).unwrap_or(1),
                };
                Some(Money::from_minor(cents.max(1), usd()))
            } else {
                None
            };
            let snapshot = if snapshot_faults && r.chance(400) {
                match r.below(3) {
                    0 => Snapshot::Inflated(i64::try_from(r.range(2, 6)).unwrap_or(2)),
                    1 => Snapshot::Deflated(i64::try_from(r.range(1, 300)).unwrap_or(1)),
                    _ => Snapshot::Inconsistent(i64::try_from(r.range(2, 10)).unwrap_or(2)),
                }
            } else {
                Snapshot::True
            };
            keys += 1;
            let c = CapturePlan { order, key: format!("key-{keys}"), amount, snapshot };
            made.push(c.clone());
            tasks.push(TaskPlan::Capture(c));
        }
        let restart = r.chance(800).then(|| {
            let mut t = vec![TaskPlan::Reconcile(*r.pick(&[
                Some(Duration::ZERO),
                None,
                Some(Duration::from_secs(60)),
            ]))];
            if r.chance(500) {
                t.extend(tasks.iter().filter(|t| matches!(t, TaskPlan::Capture(_))).cloned());
            }
            t
        });
        procs.push(ProcPlan { tasks, restart });
    }
    let settle_reads = u32::try_from(r.below(4)).unwrap_or(0);
    Plan { kind, orders, procs, faults, settle_reads }
}

fn request_json(plan: &Plan, c: &CapturePlan) -> Vec<u8> {
    let (order_id, payments) = &plan.orders[c.order];
    let minor = |m: &Money| m.to_minor().unwrap_or(0);
    let mut pays: Vec<(String, i64)> = payments.iter().map(|(id, m)| (id.clone(), minor(m))).collect();
    let total: i64 = pays.iter().map(|(_, m)| m).sum();
    let mut order_amount = total;
    match c.snapshot {
        Snapshot::True => {}
        Snapshot::Inflated(f) => {
            pays.iter_mut().for_each(|(_, m)| *m *= f);
            order_amount *= f;
        }
        Snapshot::Deflated(d) => {
            let d = d.min(pays[0].1 - 1).max(0);
            pays[0].1 -= d;
            order_amount -= d;
        }
        Snapshot::Inconsistent(f) => pays.iter_mut().for_each(|(_, m)| *m *= f),
    }
    let text = |m: i64| Money::from_minor(m, usd()).to_decimal_string();
    let payments: Vec<serde_json::Value> = pays
        .iter()
        .map(|(id, m)| match plan.kind {
            PlatformKind::Optty => serde_json::json!({"id": id, "amount": text(*m), "method": "afterpay", "partial_capture": true}),
            _ => serde_json::json!({"id": id, "amount": text(*m)}),
        })
        .collect();
    let amount = match c.amount {
        None => "full".to_owned(),
        Some(m) => m.to_decimal_string(),
    };
    serde_json::json!({
        "platform": plan.kind.connector(),
        "idempotency_key": c.key,
        "amount": amount,
        "order": {"id": order_id, "currency": "USD", "amount": text(order_amount), "payments": payments},
    })
    .to_string()
    .into_bytes()
}

fn engine_for(
    env: &Env,
    kind: PlatformKind,
    proc: &Arc<Proc>,
    store: &Arc<dyn CaptureStore>,
    exec: &Exec,
    seed: u64,
) -> Engine {
    let plugin = env.plugin(kind);
    let setup = PlatformSetup {
        base_url: kind.base_url().to_owned(),
        timeout: TIMEOUT,
        settings: kind.settings(),
        credentials: BTreeMap::from([(kind.credential().to_owned(), Secret::new("sim-secret"))]),
        allowed_hosts: Vec::new(),
    };
    let sim_store = SimStore { inner: Arc::clone(store), proc: Arc::clone(proc), exec: exec.clone() };
    let builder = match Engine::builder().plugin(plugin) {
        Ok(b) => b,
        Err(e) => panic!("the simulator's engine does not take its plugin: {e}"),
    };
    let built = builder
        .store(Arc::new(sim_store))
        .transport(Arc::new(SimTransport(Arc::clone(proc))))
        .clock(Arc::new(SimClock(Arc::clone(proc))))
        .random(Arc::new(SeededRandom::new(seed)))
        .retry(RetryPolicy::default())
        .merchant(MERCHANT)
        .owner(proc.name.clone())
        .sleeper(Arc::new(TokioSleeper))
        .platform(kind.connector(), setup)
        .build();
    match built {
        Ok(e) => e,
        Err(e) => panic!("the simulator's engine does not build: {e}"),
    }
}

/// The in-flight window of the engine's default retry policy with [`TIMEOUT`].
pub fn window_ms() -> u64 {
    let p = RetryPolicy::default();
    let per =
        u64::try_from(TIMEOUT.as_millis()).unwrap_or(0) + u64::try_from(p.max_delay.as_millis()).unwrap_or(0);
    per * u64::from(p.max_sends.max(1))
}

/// What a capture task's report must say when the ledger refused a write: the error, in a step
/// (`error` or `refused`, or any step naming it) or in the outcome.
fn report_mentions_ledger_error(report: &CaptureReport) -> bool {
    let names = |text: &str| text.contains(crate::wrappers::INJECTED_STORE_ERROR);
    report.steps.iter().any(|s| s.verdict == "error" || s.detail.as_deref().is_some_and(names))
        || matches!(&report.outcome, Outcome::Failed { message, .. } if names(message) || message.contains("ledger"))
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Captured { amount, .. } => format!("captured {amount}"),
        Outcome::Pending { amount, .. } => format!("pending {amount}"),
        Outcome::AlreadyCaptured { .. } => "already_captured".into(),
        Outcome::Rejected { code, .. } => format!("rejected {code}"),
        Outcome::Held { .. } => "held".into(),
        Outcome::Failed { kind, message, .. } => {
            format!("failed {kind:?}: {}", message.chars().take(140).collect::<String>())
        }
    }
}

async fn run_tasks(
    proc: Arc<Proc>,
    engine: Arc<Engine>,
    plan: Arc<Plan>,
    tasks: Vec<TaskPlan>,
    violations: Arc<std::sync::Mutex<Vec<String>>>,
) {
    for t in tasks {
        match t {
            TaskPlan::Capture(c) => {
                let json = request_json(&plan, &c);
                if c.snapshot != Snapshot::True {
                    proc.shared.count(match c.snapshot {
                        Snapshot::Inflated(_) => Fault::InflatedSnapshot,
                        Snapshot::Deflated(_) => Fault::DeflatedSnapshot,
                        _ => Fault::InconsistentSnapshot,
                    });
                }
                let key = c.key.clone();
                proc.shared.log(&proc.name, || {
                    format!("capture {key} {:?} of {} ({:?})", c.amount, plan.orders[c.order].0, c.snapshot)
                });
                let ctx = TaskCtx { key: Some(c.key.clone()), ..TaskCtx::default() };
                let (result, errors) = TASK
                    .scope(ctx, async {
                        let r = engine.capture_json(&json).await;
                        (r, TASK.with(|t| t.store_errors.get()))
                    })
                    .await;
                match result {
                    Ok(report) => {
                        proc.shared
                            .log(&proc.name, || format!("capture {key} => {}", describe(&report.outcome)));
                        if errors > 0 && !report_mentions_ledger_error(&report) {
                            lock(&violations).push(format!(
                                "(e) swallowed error: capture {key} by {} got {errors} store write error(s) and its report neither has an error step nor says so: {}",
                                proc.name,
                                describe(&report.outcome)
                            ));
                        }
                    }
                    Err(e) => proc.shared.log(&proc.name, || format!("capture {key} => refused: {e}")),
                }
            }
            TaskPlan::Reconcile(after) => {
                proc.shared.log(&proc.name, || format!("reconcile (take over after {after:?})"));
                let _guard = Reconciling::enter(Arc::clone(&proc.shared));
                let r = TASK.scope(TaskCtx::default(), engine.reconcile(after)).await;
                proc.shared.log(&proc.name, || match &r {
                    Ok(done) => format!("reconcile => {}", summarize(done)),
                    Err(e) => format!("reconcile => error {e}"),
                });
            }
        }
    }
}

fn summarize(done: &[Reconciled]) -> String {
    let parts: Vec<String> = done
        .iter()
        .map(|r| {
            format!(
                "{} {}->{} ({})",
                r.attempt,
                r.before,
                r.after,
                r.detail.chars().take(100).collect::<String>()
            )
        })
        .collect();
    format!("[{}]", parts.join("; "))
}

/// Whether reconcile reported this attempt as still unresolved: blocking its order (what
/// `capture reconcile` prints with when it frees up, and exits 12 for) or pending at the platform.
fn reported_unresolved(r: &Reconciled) -> bool {
    r.blocking || r.after == AttemptState::Pending
}

/// What the processes of one history share.
struct Hist<'a> {
    env: &'a Env,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    store: Arc<dyn CaptureStore>,
    exec: Exec,
    seed: u64,
    violations: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Hist<'_> {
    /// Starts a process running `tasks`.
    fn spawn(
        &self,
        name: String,
        stream: u64,
        tasks: Vec<TaskPlan>,
    ) -> (Arc<Proc>, tokio::task::JoinHandle<()>) {
        let proc =
            Arc::new(Proc::new(name, self.seed, stream, self.plan.faults.clone(), Arc::clone(&self.shared)));
        let engine = Arc::new(engine_for(
            self.env,
            self.plan.kind,
            &proc,
            &self.store,
            &self.exec,
            self.seed ^ stream,
        ));
        let run =
            run_tasks(Arc::clone(&proc), engine, Arc::clone(&self.plan), tasks, Arc::clone(&self.violations));
        let h = tokio::spawn(run);
        lock(&proc.tasks).push(h.abort_handle());
        (proc, h)
    }
}

/// Runs one history on the current (paused, single-threaded) runtime.
pub async fn history(
    env: &Env,
    seed: u64,
    opts: &Options,
    store: Arc<dyn CaptureStore>,
    exec: Exec,
) -> HistoryReport {
    let plan = Arc::new(draw_plan(seed, opts.platform));
    let world = World::new(plan.kind, &plan.orders, plan.settle_reads);
    let shared = Arc::new(Shared {
        world: std::sync::Mutex::new(world),
        counts: std::sync::Mutex::new(Counts::default()),
        trace: opts.verbose.then(|| std::sync::Mutex::new(Vec::new())),
        start: tokio::time::Instant::now(),
        reconciling: std::sync::Mutex::new(0),
        kind: plan.kind,
        window_ms: window_ms(),
    });
    shared.log("sim", || {
        format!(
            "seed {seed} platform {} orders {:?} faults {:?} settle after {} reads",
            plan.kind.name(),
            plan.orders,
            plan.faults,
            plan.settle_reads
        )
    });
    let violations = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hist = Hist {
        env,
        plan: Arc::clone(&plan),
        shared: Arc::clone(&shared),
        store: Arc::clone(&store),
        exec: exec.clone(),
        seed,
        violations: Arc::clone(&violations),
    };
    let mut running = Vec::new();
    for (i, p) in plan.procs.iter().enumerate() {
        let n = i as u64 + 1;
        let spawned = hist.spawn(format!("p{n}"), n, p.tasks.clone());
        running.push((i, spawned));
    }
    let replays =
        plan.procs.iter().flat_map(|p| &p.tasks).filter(|t| matches!(t, TaskPlan::Capture(_))).count();
    let distinct: std::collections::BTreeSet<&str> = plan
        .procs
        .iter()
        .flat_map(|p| &p.tasks)
        .filter_map(|t| match t {
            TaskPlan::Capture(c) => Some(c.key.as_str()),
            TaskPlan::Reconcile(_) => None,
        })
        .collect();
    for _ in distinct.len()..replays {
        shared.count(Fault::ReplayedRequest);
    }
    // Phase 1: every process runs; some die.
    let mut restarts = Vec::new();
    for (i, (proc, h)) in running {
        match h.await {
            Ok(()) => {}
            Err(e) if e.is_cancelled() && proc.crashed.load(Ordering::SeqCst) => {
                if let Some(tasks) = plan.procs[i].restart.clone() {
                    restarts.push((i, tasks));
                }
            }
            Err(e) => lock(&violations).push(format!("(panic) process {} failed: {e}", proc.name)),
        }
    }
    // Phase 2: crashed processes restart, reconcile and may replay their requests, concurrently.
    let mut running = Vec::new();
    for (i, tasks) in restarts {
        shared.count(Fault::Restart);
        let n = i as u64 + 1;
        let spawned = hist.spawn(format!("p{n}'"), 100 + n, tasks);
        running.push(spawned);
    }
    for (proc, h) in running {
        match h.await {
            Ok(()) => {}
            Err(e) if e.is_cancelled() && proc.crashed.load(Ordering::SeqCst) => {}
            Err(e) => lock(&violations).push(format!("(panic) process {} failed: {e}", proc.name)),
        }
    }
    // Quiescence: no more faults; time passes beyond every in-flight window; reconcile until
    // nothing is left unresolved or nothing changes any more.
    let q = Arc::new(Proc::new("q".into(), seed, 999, FaultPlan::none(), Arc::clone(&shared)));
    let engine = engine_for(env, plan.kind, &q, &store, &exec, seed ^ 999);
    let mut last: Vec<Reconciled> = Vec::new();
    for round in 0..12 {
        tokio::time::sleep(Duration::from_millis(2 * shared.window_ms)).await;
        let r = TASK.scope(TaskCtx::default(), engine.reconcile(QUIESCENCE_TAKEOVER_AFTER)).await;
        match r {
            Ok(done) => {
                shared.log("q", || format!("quiescence reconcile {round} => {}", summarize(&done)));
                let stop = done.is_empty();
                last = done;
                if stop {
                    break;
                }
            }
            Err(e) => {
                lock(&violations).push(format!("(d) quiescence reconcile failed: {e}"));
                break;
            }
        }
    }
    let ledger = match exec_store(&store, &exec, |s| Box::pin(async move { s.all().await })) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            lock(&violations).push(format!("(ledger) store.all() failed: {e}"));
            Vec::new()
        }
        Err(e) => {
            lock(&violations).push(format!("(ledger) store.all() failed: {e}"));
            Vec::new()
        }
    };
    // The ledger trusts the first snapshot of an order (issue 9, item 3): when that one lied,
    // the engine had no true authorization to hold the platform to, and (a) is not its to keep.
    let mut misled = Vec::new();
    for (order, _) in &plan.orders {
        let (o, platform) = (order.clone(), plan.kind.connector().to_owned());
        let recorded = exec_store(&store, &exec, move |s| {
            Box::pin(async move { s.order(MERCHANT, &platform, &o).await })
        });
        let truth = lock(&shared.world).authorized(order);
        if let Ok(Ok(Some(r))) = recorded
            && Some(r.authorization.total) != truth
        {
            shared.count(Fault::WrongFirstSnapshot);
            shared.log("sim", || format!("order {order}: the ledger recorded the first snapshot's authorization {} (the platform's is {truth:?})", r.authorization.total));
            misled.push(order.clone());
        }
    }
    let mut found = std::mem::take(&mut *lock(&violations));
    found.extend(check(&plan, &lock(&shared.world), &ledger, &last, &misled));
    let counts = lock(&shared.counts).clone();
    let trace = shared.trace.as_ref().map(|t| std::mem::take(&mut *lock(t))).unwrap_or_default();
    let mut trace = trace;
    if opts.verbose {
        trace.push("ledger at the end:".into());
        for a in &ledger {
            trace.push(format!(
                "  {} key={} order={} {} {} sends={} outcome={}",
                a.id,
                a.idempotency_key,
                a.order_id,
                a.amount,
                a.state,
                a.sends,
                a.outcome.as_deref().unwrap_or("-")
            ));
        }
        trace.push("platform books:".into());
        for b in &lock(&shared.world).books {
            trace.push(format!("  order={} key={:?} {} by {}", b.order, b.key, b.amount, b.by));
        }
    }
    HistoryReport { seed, platform: plan.kind, counts, violations: found, trace }
}

fn exec_store<T: Send + 'static>(
    store: &Arc<dyn CaptureStore>,
    exec: &Exec,
    f: impl FnOnce(Arc<dyn CaptureStore>) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>,
) -> Result<T, String> {
    let fut = f(Arc::clone(store));
    match exec {
        Exec::Here => Ok(crate::wrappers::block_on(fut)),
        Exec::Side(h) => crate::wrappers::block_on(h.spawn(fut)).map_err(|e| format!("side runtime: {e}")),
    }
}

/// The ledger's figure for what an attempt captured: what the platform reported, else the
/// amount asked for.
fn ledger_amount(a: &Attempt) -> Money {
    a.captured.unwrap_or(a.amount)
}

/// The invariants, against the platform's books and the ledger after quiescence.
fn check(
    plan: &Plan,
    world: &World,
    ledger: &[Attempt],
    last: &[Reconciled],
    misled: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let ours: Vec<&Attempt> = ledger.iter().filter(|a| a.merchant == MERCHANT).collect();
    // (a) per order, captured at the platform <= authorized.
    for (order, _) in &plan.orders {
        let captured = world
            .books
            .iter()
            .filter(|b| &b.order == order)
            .fold(Money::zero(usd()), |acc, b| acc.checked_add(b.amount).unwrap_or(acc));
        let authorized = world.authorized(order).unwrap_or(Money::zero(usd()));
        if captured > authorized && !misled.contains(order) {
            out.push(format!(
                "(a) order {order}: the platform captured {captured} of {authorized} authorized"
            ));
        }
    }
    // (b) no key captured twice.
    let mut per_key: BTreeMap<&str, Vec<Money>> = BTreeMap::new();
    for b in &world.books {
        if let Some(k) = &b.key {
            per_key.entry(k.as_str()).or_default().push(b.amount);
        }
    }
    for (k, amounts) in &per_key {
        if amounts.len() > 1 {
            out.push(format!("(b) key {k} captured {} times at the platform: {amounts:?}", amounts.len()));
        }
    }
    // (c) every platform capture is in the ledger as captured with its amount, and every ledger
    // capture is at the platform.
    let mut unmatched_ledger: Vec<&Attempt> =
        ours.iter().copied().filter(|a| a.state == AttemptState::Captured).collect();
    let mut unattributed: Vec<&crate::models::Applied> = Vec::new();
    for b in &world.books {
        let Some(k) = &b.key else {
            unattributed.push(b);
            continue;
        };
        match ours.iter().find(|a| &a.idempotency_key == k) {
            None => out.push(format!("(c) the platform captured {} for key {k} (order {}) and the ledger has no attempt with that key", b.amount, b.order)),
            // A keyless platform answering "already captured" (the network delivered the request
            // twice) cannot say whose capture it holds: the ledger records it as
            // `already_captured`, held against the bound with its amount. That is accounted for.
            Some(a)
                if a.state == AttemptState::AlreadyCaptured
                    && !matches!(plan.kind, PlatformKind::Optty | PlatformKind::Permissive)
                    && (ledger_amount(a) == b.amount || misled.contains(&b.order)) => {}
            Some(a) if a.state != AttemptState::Captured => out.push(format!(
                "(c) the platform captured {} for key {k} (order {}) but the ledger has attempt {} {} ({})",
                b.amount,
                b.order,
                a.id,
                a.state,
                a.outcome.as_deref().unwrap_or("no outcome")
            )),
            Some(a) => {
                // The one amount no engine can learn: a platform without a status read captured
                // another amount than asked, and its answer (the only place that amount appears)
                // was lost or could not be recorded. Counted, not a violation.
                let unknowable = b.mismatched
                    && matches!(plan.kind, PlatformKind::Optty | PlatformKind::Permissive)
                    && a.anomaly.is_none()
                    && a.captured.is_none();
                if ledger_amount(a) != b.amount && !unknowable {
                    out.push(format!("(c) the platform captured {} for key {k} but the ledger records {} for attempt {}", b.amount, ledger_amount(a), a.id));
                }
                unmatched_ledger.retain(|x| x.id != a.id);
            }
        }
    }
    for b in unattributed {
        match unmatched_ledger.iter().position(|a| a.order_id == b.order && ledger_amount(a) == b.amount) {
            Some(i) => {
                unmatched_ledger.remove(i);
            }
            None => out.push(format!("(c) the platform captured {} on order {} (sent by {} outside any capture) and no captured ledger attempt matches it", b.amount, b.order, b.by)),
        }
    }
    for a in unmatched_ledger {
        out.push(format!("(c) the ledger says attempt {} (key {}, order {}) captured {} and the platform has no such capture", a.id, a.idempotency_key, a.order_id, ledger_amount(a)));
    }
    // (d) nothing stays unresolved without reconcile saying so.
    for a in &ours {
        if matches!(
            a.state,
            AttemptState::Reserved | AttemptState::Sent | AttemptState::Unknown | AttemptState::Pending
        ) {
            let said = last.iter().find(|r| r.attempt == a.id);
            if a.state == AttemptState::Pending && !world.pending(&a.order_id) {
                out.push(format!(
                    "(d) attempt {} (key {}, order {}) is still pending after quiescence, and the platform has nothing pending on the order ({})",
                    a.id,
                    a.idempotency_key,
                    a.order_id,
                    said.map_or("not listed".to_owned(), |r| format!("{} -> {}: {}", r.before, r.after, r.detail))
                ));
            } else if !said.is_some_and(reported_unresolved) {
                out.push(format!(
                    "(d) attempt {} (key {}, order {}) is still {} after quiescence and reconcile does not report it as unresolved ({})",
                    a.id,
                    a.idempotency_key,
                    a.order_id,
                    a.state,
                    said.map_or("not listed".to_owned(), |r| format!("{} -> {}: {}", r.before, r.after, r.detail))
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The checker itself: each invariant fires on a ledger and books that break it, and stays
    //! quiet on ones that keep it.

    use super::*;
    use capture_core::Timestamp;
    use capture_store::Lease;

    use crate::models::Applied;

    fn usd_cents(c: i64) -> Money {
        Money::from_minor(c, usd())
    }

    fn plan() -> Plan {
        Plan {
            kind: PlatformKind::Permissive,
            orders: vec![("o1".into(), vec![("pay-1".into(), usd_cents(10_000))])],
            procs: Vec::new(),
            faults: FaultPlan::none(),
            settle_reads: 0,
        }
    }

    fn world(books: &[(&str, i64)]) -> World {
        let p = plan();
        let mut w = World::new(p.kind, &p.orders, 0);
        for (key, cents) in books {
            w.books.push(Applied {
                order: "o1".into(),
                key: Some((*key).into()),
                amount: usd_cents(*cents),
                by: "p1".into(),
                mismatched: false,
            });
        }
        w
    }

    fn attempt(key: &str, cents: i64, state: AttemptState) -> Attempt {
        Attempt {
            id: format!("cap_{key}"),
            merchant: MERCHANT.into(),
            platform: "template".into(),
            idempotency_key: key.into(),
            fingerprint: String::new(),
            order_id: "o1".into(),
            payment_ids: vec!["pay-1".into()],
            amount: usd_cents(cents),
            state,
            resendable: false,
            captured: None,
            anomaly: None,
            platform_capture_id: None,
            request: None,
            response: None,
            outcome: None,
            sends: 1,
            last_sent_at: None,
            lease: Lease { owner: None, token: 1, taken_at: Timestamp(0), until: Timestamp(0) },
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn reconciled(a: &Attempt, blocking: bool) -> Reconciled {
        Reconciled {
            attempt: a.id.clone(),
            platform: a.platform.clone(),
            order_id: a.order_id.clone(),
            before: a.state,
            after: a.state,
            detail: String::new(),
            blocking,
            frees_at: None,
        }
    }

    fn letters(v: &[String]) -> Vec<&str> {
        v.iter().map(|s| &s[..3]).collect()
    }

    #[test]
    fn a_consistent_history_breaks_nothing() {
        let ledger =
            [attempt("k1", 6_000, AttemptState::Captured), attempt("k2", 4_000, AttemptState::Captured)];
        let v = check(&plan(), &world(&[("k1", 6_000), ("k2", 4_000)]), &ledger, &[], &[]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn over_capture_is_a() {
        let ledger =
            [attempt("k1", 6_000, AttemptState::Captured), attempt("k2", 6_000, AttemptState::Captured)];
        let v = check(&plan(), &world(&[("k1", 6_000), ("k2", 6_000)]), &ledger, &[], &[]);
        assert_eq!(letters(&v), ["(a)"], "{v:?}");
        // Unless the ledger was told another authorization by the order's first snapshot.
        let v = check(&plan(), &world(&[("k1", 6_000), ("k2", 6_000)]), &ledger, &[], &["o1".into()]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_key_captured_twice_is_b() {
        let ledger = [attempt("k1", 3_000, AttemptState::Captured)];
        let v = check(&plan(), &world(&[("k1", 3_000), ("k1", 3_000)]), &ledger, &[], &[]);
        assert_eq!(letters(&v), ["(b)"], "{v:?}");
    }

    #[test]
    fn lost_wrong_or_phantom_captures_are_c() {
        let failed = [attempt("k1", 3_000, AttemptState::Failed)];
        let v = check(&plan(), &world(&[("k1", 3_000)]), &failed, &[], &[]);
        assert_eq!(letters(&v), ["(c)"], "lost: {v:?}");
        assert!(v[0].contains("failed"), "{v:?}");
        let missing = check(&plan(), &world(&[("k1", 3_000)]), &[], &[], &[]);
        assert_eq!(letters(&missing), ["(c)"], "no attempt: {missing:?}");
        let mut wrong = attempt("k1", 3_000, AttemptState::Captured);
        let v = check(&plan(), &world(&[("k1", 3_100)]), std::slice::from_ref(&wrong), &[], &[]);
        assert_eq!(letters(&v), ["(c)"], "amount: {v:?}");
        // The ledger's own figure of what the platform reported counts.
        wrong.captured = Some(usd_cents(3_100));
        assert!(check(&plan(), &world(&[("k1", 3_100)]), &[wrong], &[], &[]).is_empty());
        let phantom = [attempt("k1", 3_000, AttemptState::Captured)];
        let v = check(&plan(), &world(&[]), &phantom, &[], &[]);
        assert_eq!(letters(&v), ["(c)"], "phantom: {v:?}");
        assert!(v[0].contains("no such capture"), "{v:?}");
    }

    #[test]
    fn an_unreported_attempt_in_flight_is_d() {
        let sent = attempt("k1", 3_000, AttemptState::Sent);
        let quiet = reconciled(&sent, false);
        let v = check(&plan(), &world(&[]), std::slice::from_ref(&sent), &[quiet], &[]);
        assert_eq!(letters(&v), ["(d)"], "{v:?}");
        let reported = reconciled(&sent, true);
        assert!(check(&plan(), &world(&[]), std::slice::from_ref(&sent), &[reported], &[]).is_empty());
        // Pending while the platform has nothing pending: (d) whatever reconcile says.
        let pending = attempt("k2", 3_000, AttemptState::Pending);
        let said = reconciled(&pending, false);
        let v = check(&plan(), &world(&[]), &[pending], &[said], &[]);
        assert_eq!(letters(&v), ["(d)"], "{v:?}");
    }
}
