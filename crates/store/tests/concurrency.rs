//! Concurrency on both backends: many tokio tasks in one process, and two OS processes (this test
//! binary runs itself as a worker) hammering the same SQLite file and the same PostgreSQL
//! database with the same keys. Afterwards: no key reserved twice, no order over its bound, every
//! attempt accounted for, every order row's held equal to Σ held() of its attempts. PostgreSQL
//! runs twice: with the server's default isolation and with SERIALIZABLE as every transaction's
//! default (lost races are then serialization failures the store retries). The counts checked are
//! printed (run with `--nocapture` to see them).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use capture_core::Money;
use capture_store::{AttemptState, AttemptUpdate, CaptureStore, LeaseGrant, Reservation, StoreError};
use common::*;

/// How often a task may find its order busy before the test calls it starved (each try waits
/// 1-3 ms, so this is minutes of waiting).
const MAX_BUSY_TRIES: usize = 100_000;

use AttemptState::*;

const TASKS: usize = 32;

/// How a task that reserved drives its attempt, by key number: most end held (captured, pending,
/// or captured after an unknown), some fail (which frees their amount for others).
fn path_for(k: usize) -> &'static [AttemptState] {
    if k % 5 == 4 {
        &[Sent, Failed]
    } else {
        match k % 3 {
            0 => &[Sent, Captured],
            1 => &[Sent, Unknown, Captured],
            _ => &[Sent, Pending],
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Counts {
    reserved: Vec<String>,
    existing: usize,
    over_bound: usize,
    busy_retries: usize,
}

/// Reserves `key` until the answer is final (not OrderBusy), then drives a reserved attempt to
/// its end state. Panics on any error: none is expected.
async fn reserve_and_drive(
    store: Arc<dyn CaptureStore>,
    key: String,
    order: String,
    k: usize,
    amount: Money,
    bound: Money,
) -> Counts {
    let new = attempt(&key, &order, amount, bound);
    let mut counts = Counts::default();
    loop {
        match store.reserve(&new).await.unwrap_or_else(|e| panic!("reserve {key}: {e}")) {
            Reservation::Reserved(a) => {
                walk(&store, &a.id, path_for(k)).await;
                counts.reserved.push(key);
                return counts;
            }
            Reservation::Existing(a) => {
                assert_eq!(a.idempotency_key, key);
                counts.existing += 1;
                return counts;
            }
            Reservation::OverBound { held, bound: b } => {
                assert_eq!(b, bound);
                assert!(
                    held.checked_add(amount).unwrap() > bound,
                    "refused although {held} + {amount} fits {bound}"
                );
                counts.over_bound += 1;
                return counts;
            }
            Reservation::OrderBusy(_) => {
                counts.busy_retries += 1;
                // A guard against a livelock, counted in tries rather than time (no timing
                // assertion): each try waits a few milliseconds for another task's attempt.
                assert!(counts.busy_retries < MAX_BUSY_TRIES, "{key} starved behind busy orders");
                tokio::time::sleep(Duration::from_millis(1 + (k % 3) as u64)).await;
            }
            Reservation::KeyConflict(a) => panic!("{key}: unexpected conflict with {a:?}"),
            r @ Reservation::AuthorizationMismatch { .. } => panic!("{key}: unexpected {r:?}"),
        }
    }
}

fn merge(all: &mut Counts, one: Counts) {
    all.reserved.extend(one.reserved);
    all.existing += one.existing;
    all.over_bound += one.over_bound;
    all.busy_retries += one.busy_retries;
}

/// 32 tasks, distinct keys, one order, reserving only (nothing resolves): the first reservation
/// makes the order busy, so exactly one is reserved and the other 31 are told to wait.
async fn distinct_keys_only_one_in_flight(fx: &Fixture) {
    let store = fx.store().await;
    let (amount, bound) = (money("10.00", "USD"), money("50.00", "USD"));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store.reserve(&attempt(&format!("one-{i}"), "ord-1", amount, bound)).await.unwrap()
            })
        })
        .collect();
    let (mut reserved, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Reservation::Reserved(_) => reserved += 1,
            Reservation::OrderBusy(a) => {
                assert_eq!(a.state, Reserved);
                busy += 1
            }
            r => panic!("unexpected {r:?}"),
        }
    }
    println!("[{}] {TASKS} tasks, reserve only: {reserved} Reserved, {busy} OrderBusy", store.backend());
    assert_eq!((reserved, busy), (1, TASKS - 1));
    assert_eq!(store.all().await.unwrap().len(), 1);
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-1").await, 1000);
}

/// 32 tasks, distinct keys, one order whose bound fits N = 5 attempts; each task retries while the
/// order is busy and drives what it reserved to its end. Exactly N end up held, the rest are
/// OverBound, and a watcher never sees the order over its bound.
async fn distinct_keys_bound_fits_n(fx: &Fixture) {
    const N: i64 = 5;
    let store = fx.store().await;
    let (amount, bound) = (money("12.34", "USD"), Money::from_minor(1234 * N, cur("USD")));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        tokio::spawn(async move {
            let mut looks = 0u32;
            while !done.load(Ordering::Relaxed) {
                let held = held_minor(&store.order_attempts(MERCHANT, PLATFORM, "ord-n").await.unwrap());
                assert!(held <= 1234 * N, "held {held} over the bound");
                if let Some(row) = store.order(MERCHANT, PLATFORM, "ord-n").await.unwrap() {
                    let row_held = row.held.to_minor().unwrap();
                    assert!(row_held <= 1234 * N, "the order row holds {row_held}, over the bound");
                }
                looks += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            looks
        })
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|k| {
            let store = Arc::clone(&store);
            tokio::spawn(reserve_and_drive(store, format!("n-{k}"), "ord-n".into(), k, amount, bound))
        })
        .collect();
    let mut total = Counts::default();
    for t in tasks {
        merge(&mut total, t.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let looks = watcher.await.unwrap();

    let attempts = store.order_attempts(MERCHANT, PLATFORM, "ord-n").await.unwrap();
    let held: Vec<_> = attempts.iter().filter(|a| a.state.holds_amount()).collect();
    let failed = attempts.iter().filter(|a| a.state == Failed).count();
    println!(
        "[{}] {TASKS} tasks, bound fits {N}: {} reserved ({} held, {failed} failed), {} OverBound, {} busy retries, \
         {looks} watcher looks, held {} of bound {bound}",
        store.backend(),
        total.reserved.len(),
        held.len(),
        total.over_bound,
        total.busy_retries,
        Money::from_minor(held_minor(&attempts), cur("USD")),
    );
    assert_eq!(held.len() as i64, N, "exactly N attempts hold the bound");
    assert_eq!(held_minor(&attempts), 1234 * N);
    assert_eq!(total.reserved.len(), held.len() + failed);
    assert_eq!(total.reserved.len() + total.over_bound, TASKS);
    assert_eq!(attempts.len(), total.reserved.len(), "every attempt accounted for");
    assert!(attempts.iter().all(|a| !a.state.in_flight()));
    assert_eq!(check_sums(&store, MERCHANT, PLATFORM, "ord-n").await, 1234 * N);
    assert!(looks > 0);
}

/// 32 tasks with the SAME key: exactly one Reserved, 31 Existing (the same attempt).
async fn same_key_reserved_once(fx: &Fixture) {
    let store = fx.store().await;
    let (amount, bound) = (money("10.00", "USD"), money("50.00", "USD"));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(
                async move { store.reserve(&attempt("same", "ord-1", amount, bound)).await.unwrap() },
            )
        })
        .collect();
    let (mut reserved, mut existing) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Reservation::Reserved(a) => {
                assert_eq!(a.id, "cap-same");
                reserved += 1
            }
            Reservation::Existing(a) => {
                assert_eq!((a.id.as_str(), a.state), ("cap-same", Reserved));
                existing += 1
            }
            r => panic!("unexpected {r:?}"),
        }
    }
    println!("[{}] {TASKS} tasks, same key: {reserved} Reserved, {existing} Existing", store.backend());
    assert_eq!((reserved, existing), (1, TASKS - 1));
    assert_eq!(store.all().await.unwrap().len(), 1);
}

/// 32 tasks with the same key but two different orders (so two different order locks on
/// PostgreSQL: only the UNIQUE constraint and the retry stand between them): exactly one
/// Reserved; the tasks for the winner's order get Existing, the others KeyConflict.
async fn same_key_two_orders(fx: &Fixture) {
    let store = fx.store().await;
    let (amount, bound) = (money("10.00", "USD"), money("50.00", "USD"));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = Arc::clone(&store);
            let order = format!("ord-{}", i % 2);
            tokio::spawn(async move {
                let r = store.reserve(&attempt("shared", &order, amount, bound)).await;
                (order, r.unwrap_or_else(|e| panic!("reserve: {e}")))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let winners: Vec<_> = answers.iter().filter(|(_, r)| matches!(r, Reservation::Reserved(_))).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let won = winners[0].0.clone();
    let (mut existing, mut conflicts) = (0, 0);
    for (order, r) in &answers {
        match r {
            Reservation::Reserved(_) => {}
            Reservation::Existing(a) if *order == won && a.order_id == won => existing += 1,
            Reservation::KeyConflict(a) if *order != won && a.order_id == won => conflicts += 1,
            r => panic!("task for {order} (winner {won}) got {r:?}"),
        }
    }
    println!(
        "[{}] {TASKS} tasks, one key, two orders: 1 Reserved, {existing} Existing, {conflicts} KeyConflict",
        store.backend()
    );
    assert_eq!((existing, conflicts), (TASKS / 2 - 1, TASKS / 2));
    assert_eq!(store.all().await.unwrap().len(), 1);
}

/// Reserves as engine `k` until the answer is final; a reserved attempt is sent, then taken over
/// by a rival (an operator's override, `min_age_ms` 0): the first holder's next write is
/// `LeaseLost`, and the rival drives the attempt to its end. True if it reserved.
async fn reserve_send_and_lose_to_a_rival(
    store: Arc<dyn CaptureStore>,
    k: usize,
    order: String,
    amount: Money,
    bound: Money,
) -> bool {
    let mut new = attempt(&format!("{order}-k{k}"), &order, amount, bound);
    new.owner = format!("engine-{k}");
    let mut tries = 0usize;
    let a = loop {
        match store.reserve(&new).await.unwrap() {
            Reservation::Reserved(a) => break a,
            Reservation::OverBound { held, .. } => {
                assert!(held.checked_add(amount).unwrap() > bound, "refused although {held} + {amount} fits");
                return false;
            }
            Reservation::OrderBusy(_) => {
                tries += 1;
                assert!(tries < MAX_BUSY_TRIES, "{} starved", new.id);
                tokio::time::sleep(Duration::from_millis(1 + (k % 3) as u64)).await;
            }
            r => panic!("{}: unexpected {r:?}", new.id),
        }
    };
    let mine = a.fence().unwrap();
    let send = AttemptUpdate { count_send: true, ..Default::default() };
    store.transition(&a.id, &mine, &[Reserved], Sent, send, new.now).await.unwrap();
    let rival = format!("rival-{k}");
    let LeaseGrant::Granted(taken) =
        store.take_lease(&a.id, &rival, LEASE_MS, Some(0), new.now).await.unwrap()
    else {
        panic!("{}: min_age_ms 0 always grants", a.id)
    };
    assert_eq!(taken.lease.token, 2);
    match store.transition(&a.id, &mine, &[Sent], Captured, AttemptUpdate::default(), new.now).await {
        Err(StoreError::LeaseLost { holder, token: 2, presented: 1, .. }) => assert_eq!(holder, Some(rival)),
        r => panic!("{}: the displaced holder wrote: {r:?}", a.id),
    }
    let theirs = taken.fence().unwrap();
    let mut state = Sent;
    for &to in path_for(k).iter().skip(1) {
        let update = AttemptUpdate { resendable: (to == Failed).then_some(false), ..Default::default() };
        state = store.transition(&a.id, &theirs, &[state], to, update, new.now).await.unwrap().state;
    }
    true
}

/// 48 tasks over 4 orders (each bound fits 3 attempts), each reserving as its own engine
/// instance, retrying while its order is busy, every attempt taken over by a rival halfway. A
/// watcher never sees an order row over its bound; at the end each order holds exactly its bound
/// and its row agrees with its attempts.
async fn many_orders_many_tasks_with_takeovers(fx: &Fixture) {
    const ORDERS: usize = 4;
    const FITS: i64 = 3;
    let store = fx.store().await;
    let usd = cur("USD");
    let (amount, bound) = (Money::from_minor(AMOUNT_MINOR, usd), Money::from_minor(AMOUNT_MINOR * FITS, usd));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        tokio::spawn(async move {
            let mut looks = 0u32;
            while !done.load(Ordering::Relaxed) {
                for o in 0..ORDERS {
                    if let Some(row) = store.order(MERCHANT, PLATFORM, &format!("tk-{o}")).await.unwrap() {
                        assert!(row.held <= bound, "tk-{o} holds {} over its bound {bound}", row.held);
                    }
                }
                looks += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            looks
        })
    };
    let tasks: Vec<_> = (0..48)
        .map(|k| {
            let store = Arc::clone(&store);
            tokio::spawn(reserve_send_and_lose_to_a_rival(
                store,
                k,
                format!("tk-{}", k % ORDERS),
                amount,
                bound,
            ))
        })
        .collect();
    let mut reserved = 0;
    for t in tasks {
        reserved += usize::from(t.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let looks = watcher.await.unwrap();
    let all = store.all().await.unwrap();
    assert_eq!(all.len(), reserved, "every attempt accounted for");
    for o in 0..ORDERS {
        let order = format!("tk-{o}");
        assert_eq!(check_sums(&store, MERCHANT, PLATFORM, &order).await, AMOUNT_MINOR * FITS, "{order}");
    }
    assert!(all.iter().all(|a| !a.state.in_flight() && a.lease.token == 2));
    println!(
        "[{}] 48 tasks, {ORDERS} orders, a takeover per attempt: {reserved} reserved, {} OverBound, {looks} watcher looks",
        store.backend(),
        48 - reserved
    );
    assert!(looks > 0);
}

macro_rules! backend_tests {
    ($backend:ident, $fixture:path, [$($name:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fx = $fixture().await;
                    super::$name(&fx).await;
                }
            )*
        }
    };
}

backend_tests!(
    sqlite,
    crate::common::sqlite,
    [
        distinct_keys_only_one_in_flight,
        distinct_keys_bound_fits_n,
        same_key_reserved_once,
        same_key_two_orders,
        many_orders_many_tasks_with_takeovers
    ]
);
backend_tests!(
    postgres,
    crate::common::postgres,
    [
        distinct_keys_only_one_in_flight,
        distinct_keys_bound_fits_n,
        same_key_reserved_once,
        same_key_two_orders,
        many_orders_many_tasks_with_takeovers
    ]
);
backend_tests!(
    postgres_serializable,
    crate::common::postgres_serializable,
    [
        distinct_keys_only_one_in_flight,
        distinct_keys_bound_fits_n,
        same_key_reserved_once,
        same_key_two_orders,
        many_orders_many_tasks_with_takeovers
    ]
);

// ---------------------------------------------------------------------------------------------
// Two OS processes.

/// Tells a child process to act as the worker: the store target it hammers.
const WORKER_TARGET_ENV: &str = "CAPTURE_STORE_WORKER_TARGET";
/// The directory where parent and child meet (`ready`, `go` files).
const WORKER_BARRIER_ENV: &str = "CAPTURE_STORE_WORKER_BARRIER";

const ORDERS: usize = 6;
const KEYS_PER_ORDER: usize = 10;
/// Attempts each order's bound fits.
const FITS: i64 = 4;
const AMOUNT_MINOR: i64 = 1234;

/// Every (order, key) of the workload, each in its own task; both processes run the same keys.
async fn hammer(store: Arc<dyn CaptureStore>) -> Counts {
    let usd = cur("USD");
    let (amount, bound) = (Money::from_minor(AMOUNT_MINOR, usd), Money::from_minor(AMOUNT_MINOR * FITS, usd));
    let mut tasks = Vec::new();
    for o in 0..ORDERS {
        for k in 0..KEYS_PER_ORDER {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(reserve_and_drive(
                store,
                format!("p-{o}-{k}"),
                format!("ord-{o}"),
                k,
                amount,
                bound,
            )));
        }
    }
    let mut total = Counts::default();
    for t in tasks {
        merge(&mut total, t.await.unwrap());
    }
    total
}

async fn wait_for(file: &Path, patience: Duration, mut also: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + patience;
    while !file.exists() {
        if let Some(why) = also() {
            panic!("waiting for {}: {why}", file.display());
        }
        assert!(Instant::now() < deadline, "timed out waiting for {}", file.display());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The child's side: open the store, say ready, wait for go, hammer, report.
async fn worker(target: String, barrier: PathBuf) {
    let store = capture_store::open(&target).await.unwrap();
    std::fs::write(barrier.join("ready"), b"").unwrap();
    wait_for(&barrier.join("go"), Duration::from_secs(120), || None).await;
    let counts = hammer(store).await;
    println!(
        "WORKER_COUNTS {} {} {} {}",
        counts.reserved.len(),
        counts.existing,
        counts.over_bound,
        counts.busy_retries
    );
    println!("WORKER_RESERVED {}", counts.reserved.join(","));
}

/// If this process is the worker child, runs the worker and returns true.
async fn run_as_worker() -> bool {
    match (std::env::var(WORKER_TARGET_ENV), std::env::var(WORKER_BARRIER_ENV)) {
        (Ok(target), Ok(barrier)) => {
            worker(target, PathBuf::from(barrier)).await;
            true
        }
        _ => false,
    }
}

async fn two_processes(fx: &Fixture, test_name: &str) {
    let barrier = capture_store::testing::TempDir::new("barrier").unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(&exe)
        .args(["--exact", test_name, "--nocapture"])
        .env(WORKER_TARGET_ENV, &fx.target)
        .env(WORKER_BARRIER_ENV, barrier.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let store = fx.store().await;
    // Start together: the child has opened the store (and created the schema if it was first).
    wait_for(&barrier.path().join("ready"), Duration::from_secs(120), || {
        child.try_wait().ok().flatten().map(|status| format!("the worker exited early ({status})"))
    })
    .await;
    std::fs::write(barrier.path().join("go"), b"").unwrap();
    let mine = hammer(Arc::clone(&store)).await;
    let out =
        tokio::time::timeout(Duration::from_secs(300), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "worker failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag} in the worker's output:\n{stdout}"))
            .trim()
            .to_owned()
    };
    let nums: Vec<usize> = line("WORKER_COUNTS").split(' ').map(|n| n.parse().unwrap()).collect();
    let theirs_reserved: BTreeSet<String> =
        line("WORKER_RESERVED").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    assert_eq!(theirs_reserved.len(), nums[0]);
    let mine_reserved: BTreeSet<String> = mine.reserved.iter().cloned().collect();

    // No key reserved by both processes, nor twice by one.
    assert_eq!(mine_reserved.len(), mine.reserved.len());
    let twice: Vec<_> = mine_reserved.intersection(&theirs_reserved).collect();
    assert!(twice.is_empty(), "keys reserved by both processes: {twice:?}");

    // Every attempt in the ledger was reserved by exactly one of them, and vice versa.
    let all = store.all().await.unwrap();
    let in_ledger: BTreeSet<String> = all.iter().map(|a| a.idempotency_key.clone()).collect();
    assert_eq!(in_ledger.len(), all.len(), "a key appears twice in the ledger");
    let union: BTreeSet<String> = mine_reserved.union(&theirs_reserved).cloned().collect();
    assert_eq!(in_ledger, union, "every attempt accounted for");

    // Every order: held within the bound, and exactly FITS attempts hold it (there were more keys
    // than fit, and an OverBound answer only comes once the bound is full).
    let mut per_order: BTreeMap<&str, (i64, usize, usize)> = BTreeMap::new();
    for a in &all {
        assert!(!a.state.in_flight(), "{} left {}", a.id, a.state);
        let e = per_order.entry(a.order_id.as_str()).or_default();
        if a.state.holds_amount() {
            e.0 += a.amount.to_minor().unwrap();
            e.1 += 1;
        } else {
            e.2 += 1;
        }
    }
    assert_eq!(per_order.len(), ORDERS);
    for order in per_order.keys() {
        check_sums(&store, MERCHANT, PLATFORM, order).await;
    }
    for (order, (held, n_held, n_failed)) in &per_order {
        assert!(*held <= AMOUNT_MINOR * FITS, "{order} holds {held} over its bound");
        assert_eq!((*held, *n_held as i64), (AMOUNT_MINOR * FITS, FITS), "{order} ({n_failed} failed)");
    }
    let answers = mine.reserved.len() + mine.existing + mine.over_bound + nums[0] + nums[1] + nums[2];
    assert_eq!(answers, 2 * ORDERS * KEYS_PER_ORDER, "one final answer per key per process");
    println!(
        "[{}] two processes x {} keys ({ORDERS} orders, bound fits {FITS}): reserved parent {} + child {} = {} attempts \
         in the ledger, {} distinct keys, 0 reserved twice; Existing {}+{}, OverBound {}+{}, busy retries {}+{}; \
         every order holds exactly {} of its bound {}",
        store.backend(),
        ORDERS * KEYS_PER_ORDER,
        mine.reserved.len(),
        nums[0],
        all.len(),
        in_ledger.len(),
        mine.existing,
        nums[1],
        mine.over_bound,
        nums[2],
        mine.busy_retries,
        nums[3],
        Money::from_minor(AMOUNT_MINOR * FITS, cur("USD")),
        Money::from_minor(AMOUNT_MINOR * FITS, cur("USD")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_sqlite() {
    if run_as_worker().await {
        return;
    }
    let fx = common::sqlite().await;
    two_processes(&fx, "two_processes_sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_postgres() {
    if run_as_worker().await {
        return;
    }
    let fx = common::postgres().await;
    two_processes(&fx, "two_processes_postgres").await;
}

/// The two-process scenario on a database whose default isolation is SERIALIZABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_postgres_serializable() {
    if run_as_worker().await {
        return;
    }
    let fx = common::postgres_serializable().await;
    two_processes(&fx, "two_processes_postgres_serializable").await;
}
