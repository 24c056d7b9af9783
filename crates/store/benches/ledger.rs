//! Recorded captures per second: one capture is `reserve` + transition to Sent + transition to
//! Captured (three committed transactions, each writing the attempt and its order row), each on a
//! new order and key, under the reserving owner's lease.
//!
//! * criterion, one process: on a SQLite file (WAL, `synchronous=FULL`) and on PostgreSQL (a
//!   throwaway server from `capture_store::testing`, fsync on), one capture at a time and 8 at a
//!   time (8 tokio tasks sharing the store);
//! * then, outside criterion, one and two OS processes (this binary run again as workers), each
//!   recording captures one at a time for a few seconds on the same file or database.
//!
//! ```text
//! cargo bench -p capture-store --bench ledger
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capture_core::{Currency, Money, Timestamp};
use capture_store::testing::{TempDir, throwaway_postgres};
use capture_store::{AttemptState, AttemptUpdate, Authorization, CaptureStore, NewAttempt, Reservation};
use criterion::{Criterion, Throughput, criterion_group};

const WORKER_TARGET_ENV: &str = "CAPTURE_STORE_BENCH_WORKER_TARGET";
const WORKER_BARRIER_ENV: &str = "CAPTURE_STORE_BENCH_WORKER_BARRIER";
const WORKER_SECONDS_ENV: &str = "CAPTURE_STORE_BENCH_WORKER_SECONDS";

static SEQ: AtomicU64 = AtomicU64::new(0);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Records one capture on a new order: reserve, Sent, Captured.
async fn record_one(store: &dyn CaptureStore, tag: &str) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let usd = Currency::from_code("USD").expect("USD");
    let amount = Money::from_minor(10_010, usd);
    let order = format!("ord-{tag}-{n}");
    let key = format!("key-{tag}-{n}");
    let payments = vec![(format!("pay-{n}"), amount)];
    let new = NewAttempt {
        id: format!("cap-{tag}-{n}"),
        merchant: "bench".into(),
        platform: "optty".into(),
        idempotency_key: key,
        fingerprint: capture_store::fingerprint("optty", &order, &amount, &payments),
        order_id: order,
        payment_ids: vec![payments[0].0.clone()],
        amount,
        authorization: Authorization::from_payments(payments.clone(), usd),
        external: Money::zero(usd),
        owner: format!("bench-{tag}"),
        lease_ms: 30_000,
        now: Timestamp(1_790_000_000_000 + n),
    };
    let Reservation::Reserved(a) = store.reserve(&new).await.expect("reserve") else {
        panic!("not reserved")
    };
    let sent = AttemptUpdate {
        request: Some(
            r#"{"method":"POST","url":"https://sandbox/captures","body":{"amount":"100.10"}}"#.into(),
        ),
        count_send: true,
        ..Default::default()
    };
    let fence = a.fence().expect("the reserving owner holds the lease");
    store
        .transition(&a.id, &fence, &[AttemptState::Reserved], AttemptState::Sent, sent, new.now)
        .await
        .expect("sent");
    let done = AttemptUpdate {
        platform_capture_id: Some(format!("pc-{n}")),
        response: Some(r#"{"status":200,"body":{"captureId":"pc"}}"#.into()),
        outcome: Some(r#"{"status":"captured","amount":{"amount":"100.10","currency":"USD"}}"#.into()),
        ..Default::default()
    };
    store
        .transition(&a.id, &fence, &[AttemptState::Sent], AttemptState::Captured, done, new.now)
        .await
        .expect("captured");
}

/// The stores under test: a SQLite file and a PostgreSQL database, each fresh.
struct Targets {
    sqlite: String,
    postgres: String,
    _dir: TempDir,
}

fn targets(rt: &tokio::runtime::Runtime) -> Targets {
    let dir = TempDir::new("bench").expect("temp dir");
    let sqlite = dir.path().join("ledger.db").display().to_string();
    let postgres = rt.block_on(throwaway_postgres()).expect("PostgreSQL for the benchmark");
    Targets { sqlite, postgres, _dir: dir }
}

fn record_captures(c: &mut Criterion) {
    let rt = runtime();
    let t = targets(&rt);
    let mut group = c.benchmark_group("record_capture");
    group.sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    for (name, target) in [("sqlite_file_wal", &t.sqlite), ("postgres", &t.postgres)] {
        let store: Arc<dyn CaptureStore> = rt.block_on(capture_store::open(target)).expect("open");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/sequential"), |b| {
            b.iter(|| rt.block_on(record_one(&*store, "s")))
        });
        group.throughput(Throughput::Elements(8));
        group.bench_function(format!("{name}/8_tasks"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..8)
                        .map(|_| {
                            let store = Arc::clone(&store);
                            tokio::spawn(async move { record_one(&*store, "c").await })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("task");
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record_captures);

/// A worker process: opens the target, waits for the go, records captures one at a time for the
/// given seconds, prints how many.
fn worker(target: String) {
    let barrier = PathBuf::from(std::env::var(WORKER_BARRIER_ENV).expect("barrier"));
    let seconds: u64 = std::env::var(WORKER_SECONDS_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = runtime();
    rt.block_on(async {
        let store = capture_store::open(&target).await.expect("open");
        let tag = format!("w{}", std::process::id());
        std::fs::write(barrier.join(format!("ready-{}", std::process::id())), b"").expect("ready");
        while !barrier.join("go").exists() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut n = 0u64;
        while Instant::now() < end {
            record_one(&*store, &tag).await;
            n += 1;
        }
        println!("BENCH_WORKER_COUNT {n}");
    });
}

/// Runs `processes` workers on `target` for `seconds`; returns captures per second (all together).
fn run_workers(target: &str, processes: usize, seconds: u64) -> u64 {
    let barrier = TempDir::new("bench-barrier").expect("temp dir");
    let exe = std::env::current_exe().expect("current exe");
    let children: Vec<_> = (0..processes)
        .map(|_| {
            std::process::Command::new(&exe)
                .env(WORKER_TARGET_ENV, target)
                .env(WORKER_BARRIER_ENV, barrier.path())
                .env(WORKER_SECONDS_ENV, seconds.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(barrier.path()).map(|d| d.count()).unwrap_or(0) < processes {
        assert!(Instant::now() < deadline, "workers did not get ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(barrier.path().join("go"), b"").expect("go");
    let mut total = 0u64;
    for child in children {
        let out = child.wait_with_output().expect("worker");
        assert!(out.status.success(), "worker failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("BENCH_WORKER_COUNT "))
            .and_then(|n| n.trim().parse().ok())
            .expect("worker count");
        total += n;
    }
    total / seconds
}

fn processes_figures(quick: bool) {
    let rt = runtime();
    let t = targets(&rt);
    let seconds = if quick { 1 } else { 5 };
    println!("\nrecorded captures per second, sequential in each process, {seconds} s per run:");
    for (name, target) in [("sqlite_file_wal", &t.sqlite), ("postgres", &t.postgres)] {
        // Create the schema before the workers race to.
        drop(rt.block_on(capture_store::open(target)).expect("open"));
        let one = run_workers(target, 1, seconds);
        let two = run_workers(target, 2, seconds);
        println!("  {name:<16} 1 process: {one:>6}/s   2 processes: {two:>6}/s (together)");
    }
}

fn main() {
    if let Ok(target) = std::env::var(WORKER_TARGET_ENV) {
        worker(target);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this binary with `--test` (or without `--bench`): run once, fast.
    let quick = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    benches();
    Criterion::default().configure_from_args().final_summary();
    if filters.is_empty() || filters.iter().any(|f| "processes".contains(f.as_str())) {
        processes_figures(quick);
    }
}
