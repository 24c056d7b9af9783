//! The engine's reconcile-on-start policy (`EngineBuilder::reconcile_on_start`,
//! `Engine::reconcile_on_start`): bounded by attempts and by time, oldest first; what lies
//! beyond the bound stays in the ledger untouched for a later reconcile; a failure is returned,
//! never swallowed; `capture run` reports what it did and what it left.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use capture_core::{Currency, Money, Timestamp};
use capture_engine::store::{
    Attempt, AttemptUpdate, Authorization, Fence, LeaseGrant, NewAttempt, OrderRecord, Reservation,
    StoreError,
};
use capture_engine::{
    AttemptState, CaptureStore, Engine, FixedClock, PlatformSetup, Plugin, ReconcileBound, ReconcileOnStart,
    Secret,
};

use crate::plugins::scratch;
use crate::{TOKEN, artifact, optty_plugin, sqlite_store, test_time};

/// Reserves `n` attempts (orders R-0..R-n) for `merchant`, each leased to a process that died
/// an hour before the test clock: reserved, never sent, their leases long expired.
async fn leave_reserved(store: &dyn CaptureStore, merchant: &str, n: usize) {
    let usd = Currency::from_code("USD").expect("USD");
    let amount = Money::parse("10.00", usd).expect("amount");
    for i in 0..n {
        let order = format!("R-{i}");
        let payments = vec![(format!("pay-{order}"), amount)];
        let new = NewAttempt {
            id: format!("cap-{merchant}-{i}"),
            merchant: merchant.into(),
            platform: "optty".into(),
            idempotency_key: format!("{order}-1"),
            fingerprint: capture_engine::store::fingerprint("optty", &order, &amount, &payments),
            order_id: order.clone(),
            payment_ids: vec![format!("pay-{order}")],
            amount,
            authorization: Authorization::from_payments(payments, usd),
            external: Money::zero(usd),
            owner: "a-dead-process".into(),
            lease_ms: 1_000,
            // One second apart: the ledger's "oldest first" is this order.
            now: Timestamp(test_time().0 - 3_600_000 + 1_000 * i as u64),
        };
        let reserved = store.reserve(&new).await.expect("reserve");
        assert!(matches!(reserved, Reservation::Reserved(_)), "{reserved:?}");
    }
}

/// An engine on the Optty plugin (its platform never called: a reserved attempt is released
/// without a send), the ledger given, the test clock, this policy.
fn engine(store: Arc<dyn CaptureStore>, policy: ReconcileOnStart) -> Engine {
    let plugin = Plugin::load(&optty_plugin()).expect("the Optty plugin loads");
    Engine::builder()
        .plugin(Arc::new(plugin))
        .expect("one plugin")
        .clock(Arc::new(FixedClock(test_time())))
        .store(store)
        .reconcile_on_start(policy)
        .platform(
            "optty",
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: "http://127.0.0.1:9".into(),
                timeout: Duration::from_secs(2),
                settings: BTreeMap::new(),
                credentials: BTreeMap::from([("bearer_token".to_owned(), Secret::new(TOKEN))]),
            },
        )
        .build()
        .expect("engine builds")
}

fn ids(attempts: &[Attempt]) -> Vec<&str> {
    attempts.iter().map(|a| a.id.as_str()).collect()
}

#[tokio::test]
async fn the_default_policy_is_documented_and_bounded() {
    assert_eq!(ReconcileOnStart::default(), ReconcileOnStart::DEFAULT);
    let d = ReconcileOnStart::DEFAULT;
    assert_eq!((d.max_attempts, d.max_duration, d.takeover_after), (100, Duration::from_secs(10), None));
}

#[tokio::test]
async fn the_bound_on_attempts_is_honoured_and_the_rest_waits_untouched_for_a_later_reconcile() {
    let store = sqlite_store("reconcile-on-start-attempts");
    leave_reserved(store.as_ref(), "default", 5).await;
    // Another merchant's attempt is neither examined nor counted.
    leave_reserved(store.as_ref(), "someone-else", 1).await;
    let policy = ReconcileOnStart { max_attempts: 2, ..ReconcileOnStart::DEFAULT };
    let e = engine(store.clone(), policy);

    let done = e.reconcile_on_start().await.expect("reconcile on start");
    let examined: Vec<&str> = done.examined.iter().map(|r| r.attempt.as_str()).collect();
    assert_eq!(examined, ["cap-default-0", "cap-default-1"], "the two oldest");
    assert!(
        done.examined.iter().all(|r| r.before == AttemptState::Reserved && r.after == AttemptState::Failed)
    );
    assert!(done.examined.iter().all(|r| !r.blocking), "{:?}", done.examined);
    assert_eq!((done.left, done.stopped_by), (3, Some(ReconcileBound::Attempts)));

    // Beyond the bound: exactly as they were (state, lease holder, token): nothing lost.
    let waiting: Vec<Attempt> = store
        .unresolved()
        .await
        .expect("unresolved")
        .into_iter()
        .filter(|a| a.merchant == "default")
        .collect();
    assert_eq!(ids(&waiting), ["cap-default-2", "cap-default-3", "cap-default-4"]);
    for a in &waiting {
        assert_eq!(a.state, AttemptState::Reserved, "{a:?}");
        assert_eq!((a.lease.owner.as_deref(), a.lease.token), (Some("a-dead-process"), 1), "{a:?}");
    }

    // A later reconcile (here the unbounded one, as `capture reconcile` runs it) takes the rest.
    let rest = e.reconcile(None).await.expect("reconcile");
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|r| r.after == AttemptState::Failed), "{rest:?}");
    let again = e.reconcile_on_start().await.expect("reconcile on start");
    assert_eq!((again.examined.len(), again.left, again.stopped_by), (0, 0, None));
    let other = store.unresolved().await.expect("unresolved");
    assert_eq!(ids(&other), ["cap-someone-else-0"], "the other merchant's attempt is not this engine's");

    // OFF examines nothing and still counts what waits.
    let store = sqlite_store("reconcile-on-start-off");
    leave_reserved(store.as_ref(), "default", 2).await;
    let off = engine(store.clone(), ReconcileOnStart::OFF).reconcile_on_start().await.expect("off");
    assert_eq!((off.examined.len(), off.left, off.stopped_by), (0, 2, Some(ReconcileBound::Attempts)));
    assert_eq!(store.unresolved().await.expect("unresolved").len(), 2);
}

/// A ledger whose lease takeovers each take one second (of tokio's clock: the test pauses it,
/// so the second is exact and instant), or whose listing fails.
#[derive(Debug)]
struct Ledger {
    inner: Arc<dyn CaptureStore>,
    slow_takeover: bool,
    listing_fails: bool,
}

#[async_trait::async_trait]
impl CaptureStore for Ledger {
    async fn reserve(&self, new: &NewAttempt) -> Result<Reservation, StoreError> {
        self.inner.reserve(new).await
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
        self.inner.transition(id, fence, from, to, update, now).await
    }

    async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: u64,
        min_age_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<LeaseGrant, StoreError> {
        if self.slow_takeover {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.inner.take_lease(id, owner, lease_ms, min_age_ms, now).await
    }

    async fn get(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        self.inner.get(id).await
    }

    async fn by_key(&self, merchant: &str, platform: &str, key: &str) -> Result<Option<Attempt>, StoreError> {
        self.inner.by_key(merchant, platform, key).await
    }

    async fn order(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        self.inner.order(merchant, platform, order_id).await
    }

    async fn unresolved(&self) -> Result<Vec<Attempt>, StoreError> {
        if self.listing_fails {
            return Err(StoreError::Database("disk I/O error (injected by the test)".into()));
        }
        self.inner.unresolved().await
    }

    async fn order_attempts(
        &self,
        merchant: &str,
        platform: &str,
        order_id: &str,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.inner.order_attempts(merchant, platform, order_id).await
    }

    async fn all(&self) -> Result<Vec<Attempt>, StoreError> {
        self.inner.all().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[tokio::test(start_paused = true)]
async fn the_bound_on_time_is_honoured_between_attempts() {
    let inner = sqlite_store("reconcile-on-start-time");
    leave_reserved(inner.as_ref(), "default", 5).await;
    let store = Arc::new(Ledger { inner: inner.clone(), slow_takeover: true, listing_fails: false });
    // Each attempt takes one (paused-clock) second; none is started after 2.5 s: the ones
    // started at 0, 1 and 2 s are done, the two others wait.
    let policy = ReconcileOnStart { max_duration: Duration::from_millis(2_500), ..ReconcileOnStart::DEFAULT };
    let done = engine(store, policy).reconcile_on_start().await.expect("reconcile on start");
    assert_eq!(done.examined.len(), 3, "{:?}", done.examined);
    assert_eq!((done.left, done.stopped_by), (2, Some(ReconcileBound::Duration)));
    let waiting = inner.unresolved().await.expect("unresolved");
    assert_eq!(ids(&waiting), ["cap-default-3", "cap-default-4"]);
    assert!(waiting.iter().all(|a| a.state == AttemptState::Reserved && a.lease.token == 1));
}

#[tokio::test]
async fn a_failing_reconcile_is_returned_never_an_empty_success() {
    let inner = sqlite_store("reconcile-on-start-fails");
    leave_reserved(inner.as_ref(), "default", 1).await;
    let store = Arc::new(Ledger { inner: inner.clone(), slow_takeover: false, listing_fails: true });
    let err = engine(store, ReconcileOnStart::DEFAULT).reconcile_on_start().await.expect_err("must fail");
    assert!(err.contains("disk I/O error"), "{err}");
    assert_eq!(inner.unresolved().await.expect("unresolved").len(), 1, "still there for a later reconcile");
}

#[test]
fn capture_run_reports_what_it_reconciled_on_start_and_what_it_could_not() {
    let dir = scratch("reconcile-on-start-run");
    let ledger = dir.join("capture.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = capture_engine::store::open(&ledger.display().to_string()).await.expect("ledger");
        leave_reserved(store.as_ref(), "default", 1).await;
        // An attempt on a platform this configuration does not have: it cannot be resolved here.
        let usd = Currency::from_code("USD").expect("USD");
        let amount = Money::parse("5.00", usd).expect("amount");
        let payments = vec![("w-pay".to_owned(), amount)];
        let wix = NewAttempt {
            id: "cap-wix".into(),
            merchant: "default".into(),
            platform: "wix".into(),
            idempotency_key: "w-1".into(),
            fingerprint: capture_engine::store::fingerprint("wix", "W-1", &amount, &payments),
            order_id: "W-1".into(),
            payment_ids: vec!["w-pay".into()],
            amount,
            authorization: Authorization::from_payments(payments, usd),
            external: Money::zero(usd),
            owner: "a-dead-process".into(),
            lease_ms: 1_000,
            now: Timestamp(test_time().0 - 3_600_000),
        };
        assert!(matches!(store.reserve(&wix).await.expect("reserve"), Reservation::Reserved(_)));
    });
    let stderr = run_rejected_request(&dir, "");
    assert!(
        stderr.contains("capture run: reconciled cap-default-0 (optty R-0): reserved -> failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: capture run: on start, cap-wix (wix W-1) stays reserved, not resolved: platform `wix` is not configured here"),
        "{stderr}"
    );
}

/// The bounds come from the configuration too (`[reconcile_on_start]`): every key read, an
/// unknown one refused by name, and `capture run` honouring `max_attempts` (here 1 of 3).
#[test]
fn the_configuration_file_sets_the_bounds_and_capture_run_honours_them() {
    let parse = capture_engine::EngineConfig::parse;
    let parsed =
        parse("[reconcile_on_start]\nmax_attempts = 7\nmax_duration_ms = 2500\ntakeover_after_s = 600\n")
            .expect("valid");
    assert_eq!(
        parsed.reconcile_on_start_policy(),
        ReconcileOnStart {
            max_attempts: 7,
            max_duration: Duration::from_millis(2500),
            takeover_after: Some(Duration::from_secs(600))
        }
    );
    let partial = parse("reconcile_on_start = { max_attempts = 0 }").expect("valid");
    assert_eq!(
        partial.reconcile_on_start_policy(),
        ReconcileOnStart { max_attempts: 0, ..ReconcileOnStart::DEFAULT }
    );
    let none = parse("").expect("valid");
    assert_eq!(none.reconcile_on_start_policy(), ReconcileOnStart::DEFAULT);
    let err = parse("[reconcile_on_start]\nmax_atempts = 1\n").expect_err("a misspelt key");
    assert!(err.contains("max_atempts"), "{err}");

    let dir = scratch("reconcile-on-start-config");
    let ledger = dir.join("capture.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = capture_engine::store::open(&ledger.display().to_string()).await.expect("ledger");
        leave_reserved(store.as_ref(), "default", 3).await;
    });
    let stderr = run_rejected_request(&dir, "[reconcile_on_start]\nmax_attempts = 1\n");
    assert!(
        stderr.contains("capture run: reconciled cap-default-0 (optty R-0): reserved -> failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped at its bound on attempts after 1 attempt(s); 2 more unresolved wait"),
        "{stderr}"
    );
    let left = rt.block_on(async {
        let store = capture_engine::store::open(&ledger.display().to_string()).await.expect("ledger");
        store.unresolved().await.expect("unresolved")
    });
    assert_eq!(ids(&left), ["cap-default-1", "cap-default-2"], "the bound left these untouched");
}

/// Runs `capture run` with a configuration for Optty (`extra` TOML before its platform table)
/// on the ledger `capture.db` of `dir`, with a request the built-in checks reject (Optty takes
/// two decimals, KWD has three): nothing is sent, the run is about its start. Returns stderr.
fn run_rejected_request(dir: &std::path::Path, extra: &str) -> String {
    let cfg = dir.join("capture.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{:?}]\n\n{extra}\n[platforms.optty]\nbase_url = \"http://127.0.0.1:9\"\ncredentials = {{ bearer_token = {{ env = \"CAPTURE_E2E_ROS_OPTTY\" }} }}\n",
            optty_plugin().display().to_string()
        ),
    )
    .expect("config");
    let request = dir.join("request.json");
    std::fs::write(
        &request,
        r#"{"platform":"optty","idempotency_key":"Z-1","amount":"full","order":{"id":"Z","currency":"KWD","amount":"12.500","payments":[{"id":"p","amount":"12.500"}]}}"#,
    )
    .expect("request");
    let out = Command::new(artifact("capture"))
        .args(["run", "--now", &test_time().to_rfc3339(), "--config"])
        .arg(&cfg)
        .arg(&request)
        .env("CAPTURE_E2E_ROS_OPTTY", TOKEN)
        .output()
        .expect("capture run");
    assert_eq!(out.status.code(), Some(4), "rejected, nothing sent: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A time bound too far to be a point in time (from a configuration) is no bound, not a panic.
#[tokio::test]
async fn a_time_bound_beyond_any_instant_is_no_bound() {
    let store = sqlite_store("reconcile-on-start-huge-bound");
    leave_reserved(store.as_ref(), "default", 2).await;
    let policy = capture_engine::EngineConfig::parse(
        "reconcile_on_start = { max_duration_ms = 18446744073709551615 }",
    )
    .expect("valid")
    .reconcile_on_start_policy();
    assert_eq!(policy.max_duration, Duration::from_millis(u64::MAX));
    let done = engine(store, policy).reconcile_on_start().await.expect("reconcile on start");
    assert_eq!((done.examined.len(), done.left, done.stopped_by), (2, 0, None));
}
