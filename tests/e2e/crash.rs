//! Crash tests: the `capture` process dies (abort, as abrupt as SIGKILL) at each step of the
//! state machine; after `capture reconcile` and the same request again, the platform's books and
//! the ledger agree: captured exactly once, nothing lost. Also two processes at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capture_engine::{AttemptState, CaptureStore};
use capture_sandbox::wix::{WixConfig, WixEmulator, demo_ids};
use rust_decimal::Decimal;

use crate::plugins::scratch;
use crate::{TOKEN, artifact, emulator, plugin_file};

const POINTS: [&str; 3] = ["reserved", "sent", "answered"];

fn config(
    dir: &Path,
    platform: &str,
    base_url: &str,
    credential: (&str, &str),
    store: Option<&str>,
) -> PathBuf {
    let cfg = dir.join("capture.toml");
    let store = store.map(|s| format!("store = {s:?}\n")).unwrap_or_default();
    let text = format!(
        "{store}plugins = [{plugin:?}]\n\n[platforms.{platform}]\nbase_url = {base_url:?}\ntimeout_ms = 3000\ncredentials = {{ {} = {{ env = \"CAPTURE_E2E_CREDENTIAL\" }} }}\n",
        credential.0,
        plugin = plugin_file(platform).display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

fn capture(cfg: &Path, request: &Path, credential: &str, crash_at: Option<&str>) -> Output {
    let mut cmd = Command::new(artifact("capture"));
    cmd.args(["run", "--config"]).arg(cfg).arg(request).env("CAPTURE_E2E_CREDENTIAL", credential);
    if let Some(point) = crash_at {
        cmd.env("CAPTURE_CRASH_AT", point);
    }
    cmd.output().expect("run capture")
}

/// Reconciles as an operator would once the crashed process's in-flight window has passed: with
/// the clock an hour ahead, so that a platform showing no capture is conclusive (inside the
/// window it is not: the crashed process's request could still arrive).
fn reconcile(cfg: &Path, credential: &str) -> Output {
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
        + 3_600_000;
    let later = capture_core::Timestamp(u64::try_from(later).expect("ms fit u64")).to_rfc3339();
    Command::new(artifact("capture"))
        .args(["reconcile", "--now", &later, "--abandoned-after", "0", "--config"])
        .arg(cfg)
        .env("CAPTURE_E2E_CREDENTIAL", credential)
        .output()
        .expect("run capture reconcile")
}

async fn ledger(target: &str) -> Vec<capture_engine::store::Attempt> {
    capture_engine::store::open(target).await.expect("open ledger").all().await.expect("read ledger")
}

fn text(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Crashes a capture at `point`, reconciles, captures again; returns what the ledger holds.
async fn crash_and_recover(
    cfg: &Path,
    request: &Path,
    credential: &str,
    point: &str,
    target: &str,
) -> Vec<capture_engine::store::Attempt> {
    let crashed = capture(cfg, request, credential, Some(point));
    assert_eq!(crashed.status.code(), None, "the process must die at `{point}`: {}", text(&crashed));
    let rec = reconcile(cfg, credential);
    assert!(matches!(rec.status.code(), Some(0) | Some(7)), "reconcile after `{point}`: {}", text(&rec));
    let again = capture(cfg, request, credential, None);
    assert!(matches!(again.status.code(), Some(0) | Some(8)), "capture after `{point}`: {}", text(&again));
    let attempts = ledger(target).await;
    assert_eq!(attempts.len(), 1, "one attempt for one key after `{point}`: {attempts:?}");
    assert!(
        matches!(attempts[0].state, AttemptState::Captured | AttemptState::Pending),
        "after `{point}` the attempt is {:?}",
        attempts[0].state
    );
    attempts
}

async fn optty_crash_suite(backend: &str, store: impl Fn(&Path, &str) -> (Option<String>, String)) {
    for point in POINTS {
        let emu = emulator().await;
        let dir = scratch(&format!("crash-optty-{backend}-{point}"));
        let (configured, target) = store(&dir, point);
        let cfg = config(&dir, "optty", &emu.base_url(), ("bearer_token", TOKEN), configured.as_deref());
        let request = crate::repo().join("examples/requests/full-capture.json");
        let attempts = crash_and_recover(&cfg, &request, TOKEN, point, &target).await;
        let books = emu.captures("ORD-1001");
        println!(
            "optty crash at {point}: platform holds {} capture(s), ledger says {:?}",
            books.len(),
            attempts[0].state
        );
        assert_eq!(books.len(), 1, "captured exactly once after a crash at `{point}`");
        assert_eq!(books[0].amount, Decimal::new(12000, 2));
        assert_eq!(attempts[0].amount.amount(), books[0].amount, "ledger and platform agree");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optty_crashes_at_every_step_recover_exactly_once_on_sqlite() {
    optty_crash_suite("sqlite", |dir, _| (None, dir.join("capture.db").display().to_string())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wix_crashes_at_every_step_recover_exactly_once_on_sqlite() {
    for point in POINTS {
        let emu = WixEmulator::start(WixConfig::demo()).await.expect("wix");
        let dir = scratch(&format!("crash-wix-{point}"));
        let cfg = config(&dir, "wix", &emu.base_url(), ("api_key", demo_ids::TOKEN), None);
        let request = crate::repo().join("examples/requests/wix-full-capture.json");
        let attempts = crash_and_recover(
            &cfg,
            &request,
            demo_ids::TOKEN,
            point,
            &dir.join("capture.db").display().to_string(),
        )
        .await;
        let order = emu.order(demo_ids::USD_ORDER).expect("order");
        let captures: Vec<Decimal> =
            order.payments.iter().flat_map(|p| p.captures.iter().map(|c| c.amount)).collect();
        println!("wix crash at {point}: platform holds {captures:?}, ledger says {:?}", attempts[0].state);
        assert_eq!(captures.len(), 2, "each payment captured exactly once after a crash at `{point}`");
        assert_eq!(captures.iter().copied().sum::<Decimal>(), attempts[0].amount.amount());
    }
}

/// A crash after marking sent leaves the order blocked for the in-flight window: reconcile says
/// so, names when it frees up and exits 12 (blocked), instead of 0 as if all were well; a new key
/// for the order is refused as busy meanwhile and names that time too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_order_is_reported_by_reconcile_with_when_it_frees_up() {
    let emu = WixEmulator::start(WixConfig::demo()).await.expect("wix");
    let dir = scratch("crash-wix-blocked");
    let cfg = config(&dir, "wix", &emu.base_url(), ("api_key", demo_ids::TOKEN), None);
    let request = crate::repo().join("examples/requests/wix-full-capture.json");
    let crashed = capture(&cfg, &request, demo_ids::TOKEN, Some("sent"));
    assert_eq!(crashed.status.code(), None, "the process must die: {}", text(&crashed));
    let rec = Command::new(artifact("capture"))
        .args(["reconcile", "--config"])
        .arg(&cfg)
        .env("CAPTURE_E2E_CREDENTIAL", demo_ids::TOKEN)
        .output()
        .expect("run capture reconcile");
    let out = text(&rec);
    assert_eq!(rec.status.code(), Some(12), "{out}");
    assert!(out.contains("stays blocked") && out.contains("held until"), "{out}");
    assert!(out.contains("1 still block their order"), "{out}");
    // Inside the window nothing was concluded: the platform holds nothing, the attempt is open.
    let attempts = ledger(&dir.join("capture.db").display().to_string()).await;
    assert!(matches!(attempts[0].state, AttemptState::Sent | AttemptState::Unknown), "{attempts:?}");
    let order = emu.order(demo_ids::USD_ORDER).expect("order");
    assert!(order.payments.iter().all(|p| p.captures.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_capturing_the_same_orders_capture_each_once() {
    let emu = emulator().await;
    let dir = scratch("two-processes-at-once");
    let cfg = config(&dir, "optty", &emu.base_url(), ("bearer_token", TOKEN), None);
    let requests: Vec<PathBuf> = ["full-capture.json", "partial-capture.json"]
        .iter()
        .map(|r| crate::repo().join("examples/requests").join(r))
        .collect();
    let spawn = || {
        let mut children = Vec::new();
        for r in &requests {
            for _ in 0..2 {
                children.push(
                    Command::new(artifact("capture"))
                        .args(["run", "--config"])
                        .arg(&cfg)
                        .arg(r)
                        .env("CAPTURE_E2E_CREDENTIAL", TOKEN)
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .expect("spawn capture"),
                );
            }
        }
        children
    };
    let mut outputs = Vec::new();
    for child in spawn() {
        outputs.push(child.wait_with_output().expect("wait"));
    }
    let attempts = ledger(&dir.join("capture.db").display().to_string()).await;
    let one = emu.captures("ORD-1001").len();
    let two = emu.captures("ORD-1002").len();
    println!(
        "4 processes, 2 keys: platform holds {one} + {two} capture(s); ledger {} attempt(s); exit codes {:?}",
        attempts.len(),
        outputs.iter().map(|o| o.status.code()).collect::<Vec<_>>()
    );
    assert_eq!((one, two), (1, 1), "each key captured exactly once");
    assert_eq!(attempts.len(), 2);
    // A process that lost the race either replayed the outcome or was told the key is in flight.
    for o in &outputs {
        assert!(matches!(o.status.code(), Some(0) | Some(7)), "{}", text(o));
    }
}

/// A fresh database on a throwaway PostgreSQL server (or `CAPTURE_TEST_POSTGRES_URL`); fails,
/// never skips, when PostgreSQL is not installed.
async fn postgres() -> String {
    capture_store::testing::throwaway_postgres().await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optty_crashes_at_every_step_recover_exactly_once_on_postgres() {
    let mut urls = Vec::new();
    for _ in POINTS {
        urls.push(postgres().await);
    }
    let urls = std::sync::Mutex::new(urls);
    optty_crash_suite("postgres", |_, _| {
        let url = urls.lock().expect("urls").pop().expect("a database per point");
        (Some(url.clone()), url)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_and_two_processes_share_one_postgres_ledger() {
    let url = postgres().await;
    let emu = emulator().await;
    // Two engine processes (the `capture` binary) and this process's tasks, on one ledger.
    let dir = scratch("pg-shared");
    let cfg = config(&dir, "optty", &emu.base_url(), ("bearer_token", TOKEN), Some(&url));
    let request = crate::repo().join("examples/requests/full-capture.json");
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(artifact("capture"))
                .args(["run", "--config"])
                .arg(&cfg)
                .arg(&request)
                .env("CAPTURE_E2E_CREDENTIAL", TOKEN)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let store: std::sync::Arc<dyn CaptureStore> = capture_engine::store::open(&url).await.expect("ledger");
    // The real clock, as the two processes have: on the fixed test clock this engine's live
    // leases would look days expired to them, and their reconcile-on-start would take over.
    let engine = std::sync::Arc::new(crate::engine_with_store_and_clock(
        "optty",
        &emu.base_url(),
        &[],
        &[("bearer_token", TOKEN)],
        store.clone(),
        std::sync::Arc::new(capture_engine::SystemClock),
    ));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!(
                r#"{{"platform":"optty","idempotency_key":"pg-{i}","amount":"30.00",
                    "order":{{"id":"ORD-1002","currency":"USD","amount":"80.00","surcharge":"2.50",
                              "payments":[{{"id":"pay-1002","amount":"82.50","method":"afterpay","partial_capture":true}}]}}}}"#
            );
            engine.capture_json(body.as_bytes()).await.expect("valid").outcome
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("task"));
    }
    let captured = outcomes.iter().filter(|o| matches!(o, capture_core::Outcome::Captured { .. })).count();
    let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    let held: Decimal = emu.captures("ORD-1002").iter().map(|c| c.amount).sum();
    println!(
        "postgres: 2 processes on one key -> {} capture(s); 8 tasks on ORD-1002 -> {held} USD captured (bound 82.50)",
        emu.captures("ORD-1001").len(),
    );
    let children_said = || outputs.iter().map(text).collect::<Vec<_>>().join("\n");
    for o in &outputs {
        assert!(matches!(o.status.code(), Some(0) | Some(7)), "{}", text(o));
    }
    assert_eq!(emu.captures("ORD-1001").len(), 1, "one key, two processes: one capture");
    assert!(held <= Decimal::new(8250, 2), "never more than authorized");
    assert!(held >= Decimal::new(3000, 2), "a capture of 30.00 fits and lands: {outcomes:?}");
    // A reported capture is at the platform; a capture whose answer was late (the engine's 2 s
    // timeout on a loaded machine) may be there too without the task knowing.
    assert!(
        Decimal::from(captured) * Decimal::new(3000, 2) <= held,
        "every reported capture is at the platform"
    );
    // Whatever stayed open (an answer lost to a timeout), the operator's reconcile after the
    // window resolves; then the ledger and the platform's books agree to the cent.
    let rec = reconcile(&cfg, TOKEN);
    assert!(rec.status.success(), "reconcile: {}", text(&rec));
    let attempts = store.all().await.expect("ledger");
    let open: Vec<_> = attempts.iter().filter(|a| a.state.in_flight()).collect();
    assert!(open.is_empty(), "every attempt ends resolved: {open:#?}\n{}", children_said());
    let ledger_held: Decimal =
        attempts.iter().filter(|a| a.order_id == "ORD-1002").map(|a| a.held().amount()).sum();
    assert_eq!(ledger_held, held, "the ledger holds what the platform's books show: {outcomes:?}");
}

/// Twenty captures die right after being marked sent; then four `capture reconcile` processes
/// run at once. Each attempt's lease lets one reconciler at a time resend it (a reconciler whose
/// lease was taken over is refused by the ledger instead of overwriting the other's record), so
/// every capture ends `captured` in the ledger, once at the platform, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_reconcilers_lose_no_capture() {
    let emu = emulator().await;
    let dir = scratch("crash-concurrent-reconcilers");
    let cfg = config(&dir, "optty", &emu.base_url(), ("bearer_token", TOKEN), None);
    const N: usize = 20;
    for i in 0..N {
        let order = format!("REC-{i:03}");
        emu.add_order(capture_sandbox::OpttyOrder::new(
            order.clone(),
            "USD",
            Decimal::new(1000, 2),
            Decimal::ZERO,
            "afterpay",
        ));
        let body = serde_json::json!({
            "platform": "optty",
            "idempotency_key": format!("{order}-capture-1"),
            "amount": "full",
            "order": {"id": order, "currency": "USD", "amount": "10.00",
                      "payments": [{"id": format!("pay-{i}"), "amount": "10.00", "method": "afterpay", "partial_capture": true}]},
        });
        let path = dir.join(format!("request-{i}.json"));
        std::fs::write(&path, body.to_string()).expect("write request");
        let crashed = capture(&cfg, &path, TOKEN, Some("sent"));
        assert_eq!(crashed.status.code(), None, "the process must die: {}", text(&crashed));
    }
    let reconcilers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(artifact("capture"))
                .args(["reconcile", "--abandoned-after", "0", "--config"])
                .arg(&cfg)
                .env("CAPTURE_E2E_CREDENTIAL", TOKEN)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn reconcile")
        })
        .collect();
    for r in reconcilers {
        let out = r.wait_with_output().expect("wait");
        assert!(matches!(out.status.code(), Some(0) | Some(12)), "{}", text(&out));
    }
    // Whatever the interleaving, one more reconcile finishes anything a takeover left open.
    let last = reconcile(&cfg, TOKEN);
    assert_eq!(last.status.code(), Some(0), "{}", text(&last));
    let attempts = ledger(&dir.join("capture.db").display().to_string()).await;
    assert_eq!(attempts.len(), N);
    for a in &attempts {
        assert_eq!(a.state, AttemptState::Captured, "{} is {:?}: {:?}", a.id, a.state, a.outcome);
        let books = emu.captures(&a.order_id);
        assert_eq!(books.len(), 1, "{} captured once at the platform", a.order_id);
        assert_eq!(books[0].amount, a.amount.amount());
    }
}
