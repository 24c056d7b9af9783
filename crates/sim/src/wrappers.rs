//! What an engine process sees of the world: a store, a transport and a clock, each a wrapper
//! that injects the history's faults and hands control back to the scheduler a seeded number of
//! times around every call, so the interleaving of processes comes from the seed.
//!
//! Every store call runs to completion before the wrapper returns (the real store's own
//! `spawn_blocking` or PostgreSQL round trips are waited for on the spot), so no background
//! thread can reorder two calls: the order of store calls is exactly the order of the tasks'
//! turns on the single-threaded runtime.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use capture_core::Timestamp;
use capture_engine::connector_api::HttpResponse;
use capture_engine::{Clock, OutgoingRequest, Transport, TransportError};
use capture_store::{
    Attempt, AttemptState, AttemptUpdate, CaptureStore, Fence, LeaseGrant, NewAttempt, OrderRecord,
    Reservation, StoreError,
};

use crate::faults::{Counts, Fault, FaultPlan};
use crate::models::{Delivery, PlatformKind, World, unavailable};
use crate::rng::Rng;

/// The message of an injected store write error.
pub const INJECTED_STORE_ERROR: &str = "sim: injected store error (connection lost), nothing written";

/// The virtual time of every history starts here (2026-11-21T09:00:00Z).
pub const EPOCH_MS: u64 = 1_795_251_600_000;

/// Locks a mutex, ignoring poisoning (a panicking task is reported as such by the driver).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread, blocking it (no other task runs meanwhile).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    // Outside tokio's cooperative budget: a task out of budget would otherwise spin here.
    let mut fut = std::pin::pin!(tokio::task::unconstrained(fut));
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// What the whole history shares: the platform, the counts, the trace.
#[derive(Debug)]
pub struct Shared {
    /// The platform model.
    pub world: Mutex<World>,
    /// Faults injected so far.
    pub counts: Mutex<Counts>,
    /// The trace, when asked for.
    pub trace: Option<Mutex<Vec<String>>>,
    /// Virtual time zero.
    pub start: tokio::time::Instant,
    /// Reconciles running now.
    pub reconciling: Mutex<u32>,
    /// The platform.
    pub kind: PlatformKind,
    /// The in-flight window of an attempt (every send, timeout and wait), in ms.
    pub window_ms: u64,
}

impl Shared {
    /// Milliseconds of virtual time since the start.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from((tokio::time::Instant::now() - self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// Adds a line to the trace (if tracing).
    pub fn log(&self, who: &str, what: impl FnOnce() -> String) {
        if let Some(t) = &self.trace {
            let ms = self.elapsed_ms();
            lock(t).push(format!("[{:>5}.{:03}s] {who}: {}", ms / 1000, ms % 1000, what()));
        }
    }

    /// Counts a fault.
    pub fn count(&self, f: Fault) {
        lock(&self.counts).add(f);
    }
}

tokio::task_local! {
    /// The capture or reconcile a call belongs to.
    pub static TASK: TaskCtx;
}

/// Per capture (or reconcile) task: its key, and the store errors it was handed.
#[derive(Debug, Default)]
pub struct TaskCtx {
    /// The capture's idempotency key (None for a reconcile).
    pub key: Option<String>,
    /// Injected store write errors returned to this task.
    pub store_errors: Cell<u32>,
}

/// The farthest a simulated process's clock strays from the shared virtual time: half the
/// engine's default bound on the skew between two clocks.
const MAX_OFFSET_MS: i64 = 150_000;

/// One simulated engine process.
#[derive(Debug)]
pub struct Proc {
    /// Its name in the trace (`p1`, `p1'` after a restart, `q` for quiescence).
    pub name: String,
    /// Dead: its task is aborted and every later call of its wrappers never returns.
    pub crashed: AtomicBool,
    offset_ms: Mutex<i64>,
    rng: Mutex<Rng>,
    faults: FaultPlan,
    /// The tasks to abort when it dies.
    pub tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The history.
    pub shared: Arc<Shared>,
}

impl Proc {
    /// A process with its own generator stream, faults and a clock at the shared time.
    pub fn new(name: String, seed: u64, stream: u64, faults: FaultPlan, shared: Arc<Shared>) -> Proc {
        Proc {
            name,
            crashed: AtomicBool::new(false),
            offset_ms: Mutex::new(0),
            rng: Mutex::new(Rng::new(seed, stream)),
            faults,
            tasks: Mutex::new(Vec::new()),
            shared,
        }
    }

    fn rng(&self) -> MutexGuard<'_, Rng> {
        lock(&self.rng)
    }

    /// The process's clock: the shared virtual time plus its own skew.
    pub fn now(&self) -> Timestamp {
        let base = i64::try_from(EPOCH_MS + self.shared.elapsed_ms()).unwrap_or(i64::MAX);
        Timestamp(u64::try_from(base.saturating_add(*lock(&self.offset_ms)).max(0)).unwrap_or(0))
    }

    /// Dies here: marks the process dead, aborts its tasks, never returns.
    pub async fn die<T>(&self, at: &str) -> T {
        self.crashed.store(true, Ordering::SeqCst);
        self.shared.log(&self.name, || format!("CRASH {at}"));
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
        std::future::pending::<T>().await
    }

    /// Around every call: a seeded number of turns given to other tasks, maybe a clock jump.
    async fn turn(&self) {
        if self.crashed.load(Ordering::SeqCst) {
            return self.die("(already dead)").await;
        }
        let (yields, jump) = {
            let mut r = self.rng();
            let yields = r.below(4);
            let jump = if !self.faults.clock.is_empty() && r.chance(self.faults.clock_rate) {
                let kind = *r.pick(&self.faults.clock);
                // Jumps of 1 s to 2.5 min, and a clock never more than 2.5 min from true time: two
                // clocks then disagree by at most the engine's documented bound (5 min,
                // `DEFAULT_MAX_CLOCK_SKEW`), the assumption its leases and "not found" rule need.
                let ms = match kind {
                    Fault::ClockJumpForward => i64::try_from(r.range(1_000, 150_000)).unwrap_or(0),
                    _ => -i64::try_from(r.range(1_000, 150_000)).unwrap_or(0),
                };
                Some((kind, ms))
            } else {
                None
            };
            (yields, jump)
        };
        if let Some((kind, ms)) = jump {
            let mut offset = lock(&self.offset_ms);
            *offset = (*offset + ms).clamp(-MAX_OFFSET_MS, MAX_OFFSET_MS);
            drop(offset);
            self.shared.count(kind);
            self.shared.log(&self.name, || format!("clock jumps {ms:+} ms"));
        }
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
    }

    fn store_fault(&self) -> Option<Fault> {
        let mut r = self.rng();
        (!self.faults.store.is_empty() && r.chance(self.faults.store_rate))
            .then(|| *r.pick(&self.faults.store))
    }

    fn send_fault(&self, read: bool) -> Option<Fault> {
        let mut r = self.rng();
        if read && r.chance(self.faults.lag_rate) {
            return Some(Fault::LaggingStatusRead);
        }
        if self.faults.send.is_empty() || !r.chance(self.faults.send_rate) {
            return None;
        }
        let f = *r.pick(&self.faults.send);
        // Wix has no key and takes repeated partial captures: a request the network delivers
        // twice is two captures, which no engine can tell from one. Not injected there.
        if f == Fault::DuplicateDelivery && !read && self.shared.kind == PlatformKind::Wix {
            return None;
        }
        // A read changes nothing: it can fail or be slow, not be "applied".
        Some(match (read, f) {
            (true, Fault::CrashAfterSend | Fault::DuplicateDelivery | Fault::AmountMismatch) => {
                Fault::LostAnswer
            }
            (_, f) => f,
        })
    }
}

/// How the real store is called.
#[derive(Debug, Clone)]
pub enum Exec {
    /// On this thread (SQLite: its blocking pool call is waited for on the spot).
    Here,
    /// On another runtime (PostgreSQL: its connections live there), waited for on the spot.
    Side(tokio::runtime::Handle),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The store as a process sees it.
#[derive(Debug)]
pub struct SimStore {
    /// The real store, shared by every process of the history.
    pub inner: Arc<dyn CaptureStore>,
    /// The process.
    pub proc: Arc<Proc>,
    /// How to call `inner`.
    pub exec: Exec,
}

impl SimStore {
    fn exec<T: Send + 'static>(&self, f: impl FnOnce(Arc<dyn CaptureStore>) -> BoxFuture<T>) -> T {
        let fut = f(Arc::clone(&self.inner));
        match &self.exec {
            Exec::Here => block_on(fut),
            Exec::Side(h) => match block_on(h.spawn(fut)) {
                Ok(v) => v,
                Err(e) => panic!("the store's task on the side runtime failed: {e}"),
            },
        }
    }

    /// A write: maybe crash before, maybe fail, maybe crash after.
    async fn write<T: Send + 'static>(
        &self,
        what: String,
        f: impl FnOnce(Arc<dyn CaptureStore>) -> BoxFuture<Result<T, StoreError>>,
        show: impl Fn(&T) -> String,
    ) -> Result<T, StoreError> {
        let p = &self.proc;
        p.turn().await;
        let fault = p.store_fault();
        match fault {
            Some(Fault::CrashBeforeStoreWrite) => {
                p.shared.count(Fault::CrashBeforeStoreWrite);
                return p.die(&format!("before {what}")).await;
            }
            Some(Fault::StoreWriteError) => {
                p.shared.count(Fault::StoreWriteError);
                p.shared.log(&p.name, || format!("{what} -> injected store error"));
                if TASK.try_with(|t| t.store_errors.set(t.store_errors.get() + 1)).is_err() {
                    p.shared.log(&p.name, || "store error outside a task".to_owned());
                }
                return Err(StoreError::Database(
                    "sim: injected store error (connection lost), nothing written".into(),
                ));
            }
            _ => {}
        }
        let r = self.exec(f);
        p.shared.log(&p.name, || match &r {
            Ok(v) => format!("{what} -> {}", show(v)),
            Err(e) => format!("{what} -> error: {e}"),
        });
        if fault == Some(Fault::CrashAfterStoreWrite) {
            p.shared.count(Fault::CrashAfterStoreWrite);
            return p.die(&format!("after {what}")).await;
        }
        p.turn().await;
        r
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(Arc<dyn CaptureStore>) -> BoxFuture<T>) -> T {
        self.proc.turn().await;
        let r = self.exec(f);
        self.proc.turn().await;
        r
    }
}

fn reservation(r: &Reservation) -> String {
    match r {
        Reservation::Reserved(a) => format!("reserved {} {}", a.id, a.amount),
        Reservation::Existing(a) => format!("existing {} {}", a.id, a.state),
        Reservation::KeyConflict(a) => format!("key conflict with {}", a.id),
        Reservation::OverBound { held, bound } => format!("over bound: held {held}, bound {bound}"),
        Reservation::OrderBusy(a) => format!("order busy: {} is {}", a.id, a.state),
        Reservation::AuthorizationMismatch { recorded, given } => {
            format!("authorization mismatch: recorded {recorded:?}, given {given:?}")
        }
    }
}

#[async_trait::async_trait]
impl CaptureStore for SimStore {
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError> {
        let n = new.clone();
        let what = format!("reserve {} key={} {} by {}", new.id, new.idempotency_key, new.amount, new.owner);
        self.write(what, move |s| Box::pin(async move { s.reserve(&n).await }), reservation).await
    }

    async fn transition(
        &self,
        id: &str,
        fence: &Fence,
        from: &[AttemptState],
        to: AttemptState,
        update: AttemptUpdate,
        now: Timestamp,
    ) -> Result<Attempt, StoreError> {
        let (i, fe, f) = (id.to_owned(), fence.clone(), from.to_vec());
        let what = format!("transition {id} {from:?} -> {to} (fence {} #{})", fence.owner, fence.token);
        self.write(
            what,
            move |s| Box::pin(async move { s.transition(&i, &fe, &f, to, update, now).await }),
            |a: &Attempt| format!("ok ({})", a.state),
        )
        .await
    }

    async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<LeaseGrant, StoreError> {
        let (i, o) = (id.to_owned(), owner.to_owned());
        let what = format!("take_lease {id} for {owner} ({lease_ms} ms, takeover after {min_age_ms:?})");
        self.write(
            what,
            move |s| Box::pin(async move { s.take_lease(&i, &o, lease_ms, min_age_ms, now).await }),
            |g: &LeaseGrant| match g {
                LeaseGrant::Granted(a) => format!("granted #{}", a.lease.token),
                LeaseGrant::Held { owner, until, clamped } => {
                    format!("held by {owner:?} until {} (clamped {clamped})", until.0)
                }
                LeaseGrant::Final(a) => format!("final ({})", a.state),
            },
        )
        .await
    }

    async fn order(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        let (m, p, o) = (merchant.to_owned(), platform.to_owned(), order_id.to_owned());
        self.read(move |s| Box::pin(async move { s.order(&m, &p, &o).await })).await
    }

    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        let i = id.to_owned();
        self.read(move |s| Box::pin(async move { s.get(&i).await })).await
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        let (m, p, k) = (merchant.to_owned(), platform.to_owned(), key.to_owned());
        self.read(move |s| Box::pin(async move { s.by_key(&m, &p, &k).await })).await
    }

    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError> {
        self.read(|s| Box::pin(async move { s.unresolved().await })).await
    }

    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        let (m, p, o) = (merchant.to_owned(), platform.to_owned(), order_id.to_owned());
        self.read(move |s| Box::pin(async move { s.order_attempts(&m, &p, &o).await })).await
    }

    async fn all(&self) -> Result<Vec<Attempt>, StoreError> {
        self.read(|s| Box::pin(async move { s.all().await })).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// The process's clock.
#[derive(Debug)]
pub struct SimClock(pub Arc<Proc>);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

/// The network between a process and the platform model.
#[derive(Debug)]
pub struct SimTransport(pub Arc<Proc>);

impl SimTransport {
    fn deliver(&self, req: &OutgoingRequest, mismatch: Option<i64>, lag: usize) -> HttpResponse {
        let p = &self.0;
        let d = Delivery {
            task_key: TASK.try_with(|t| t.key.clone()).ok().flatten(),
            by: p.name.clone(),
            mismatch,
            lag,
        };
        let before = lock(&p.shared.world).books.len();
        let resp = lock(&p.shared.world).handle(req, &d);
        let after = lock(&p.shared.world).books.len();
        p.shared.log(&p.name, || {
            let applied = if after > before { " APPLIED" } else { "" };
            let body = req.body.as_deref().unwrap_or("");
            format!(
                "{} {} {body} => {} {}{applied}",
                req.method,
                req.url,
                resp.status,
                resp.body.chars().take(160).collect::<String>()
            )
        });
        resp
    }
}

#[async_trait::async_trait]
impl Transport for SimTransport {
    async fn send(
        &self,
        request: OutgoingRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let p = &self.0;
        p.turn().await;
        let read = request.method == "GET";
        let fault = p.send_fault(read);
        if let Some(f) = fault {
            p.shared.count(f);
            p.shared.log(&p.name, || format!("fault {} on {} {}", f.name(), request.method, request.url));
        }
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let result = match fault {
            None => Ok(self.deliver(&request, None, 0)),
            Some(Fault::CrashBeforeSend) => return p.die("before send").await,
            Some(Fault::CrashAfterSend) => {
                self.deliver(&request, None, 0);
                return p.die("after send").await;
            }
            Some(Fault::LostAnswer) => {
                self.deliver(&request, None, 0);
                Err(TransportError::Io("connection reset by peer".into()))
            }
            Some(Fault::Status5xxApplied) => {
                self.deliver(&request, None, 0);
                let status = *p.rng().pick(&[500, 502, 503]);
                Ok(unavailable(status))
            }
            Some(Fault::Status5xxNotApplied) => Ok(unavailable(503)),
            Some(Fault::TimeoutApplied) => {
                self.deliver(&request, None, 0);
                tokio::time::sleep(timeout).await;
                Err(TransportError::Timeout(timeout_ms))
            }
            Some(Fault::TimeoutNotApplied) => {
                tokio::time::sleep(timeout).await;
                Err(TransportError::Timeout(timeout_ms))
            }
            Some(Fault::DuplicateDelivery) => {
                let first = self.deliver(&request, None, 0);
                let second = self.deliver(&request, None, 0);
                Ok(if p.rng().chance(500) { first } else { second })
            }
            Some(Fault::SlowAnswer) => {
                let r = self.deliver(&request, None, 0);
                let extra = p.rng().range(1_000, 120_000);
                tokio::time::sleep(Duration::from_millis(p.shared.window_ms + extra)).await;
                Ok(r)
            }
            Some(Fault::AmountMismatch) => {
                let delta = {
                    let mut r = p.rng();
                    let d = i64::try_from(r.range(1, 500)).unwrap_or(1);
                    if r.chance(500) { d } else { -d }
                };
                Ok(self.deliver(&request, Some(delta), 0))
            }
            Some(Fault::LaggingStatusRead) => {
                let lag = usize::try_from(p.rng().range(1, 3)).unwrap_or(1);
                Ok(self.deliver(&request, None, lag))
            }
            Some(other) => {
                p.shared.log(&p.name, || format!("fault {} does not apply to a send", other.name()));
                Ok(self.deliver(&request, None, 0))
            }
        };
        p.turn().await;
        result
    }
}

/// Counts a reconcile while it runs (and whether another one was running when it started).
#[derive(Debug)]
pub struct Reconciling(pub Arc<Shared>);

impl Reconciling {
    /// Enters; counts [`Fault::ConcurrentReconcile`] when another reconcile is running.
    pub fn enter(shared: Arc<Shared>) -> Reconciling {
        let mut n = lock(&shared.reconciling);
        if *n > 0 {
            shared.count(Fault::ConcurrentReconcile);
        }
        *n += 1;
        drop(n);
        Reconciling(shared)
    }
}

impl Drop for Reconciling {
    fn drop(&mut self) {
        let mut n = lock(&self.0.reconciling);
        *n = n.saturating_sub(1);
    }
}
