//! What the ledger costs a busy engine: one engine process capturing at concurrency 64 (64 tokio
//! tasks on 2 worker threads) against an instant platform on a real loopback socket (a fake Optty
//! that answers every capture as captured, on its own thread), the Optty plugin loaded from disk,
//! no rules. Side by side in one run, rounds interleaved: the same engine without a ledger (the
//! reference), with the SQLite ledger on a file (WAL, `synchronous=FULL`, group commit) and,
//! when PostgreSQL is installed, on a throwaway PostgreSQL server (fsync and synchronous_commit
//! on), once with the store's default 16 clients and once with `pool_size=32`. Every capture is a new order and key: three durable ledger writes each. Prints the median
//! captures/s of each variant and its ratio to the reference, and the SQLite store's captures per
//! commit.
//!
//! ```text
//! cargo build --release -p capture-plugin-optty && cargo bench -p capture-engine --bench throughput
//! ```
//! Then, on PostgreSQL, two engine processes (this binary again, as workers, each at half the
//! concurrency, their pools 16 clients each) capture on one database at once, beside its
//! reference: `pgbench` (fsync and synchronous_commit on, the same server) running a custom
//! script of the same statements a capture makes (the reservation's and the two transitions'
//! reads and writes, in three transactions) with as many clients as the engines have
//! connections (32), prepared statements. Both print captures (script runs) per second.
//!
//! `THROUGHPUT_CAPTURES` (default 4000) sets the captures per round, `THROUGHPUT_ROUNDS` (default 5)
//! the rounds, `THROUGHPUT_CONCURRENCY` (default 64) the tasks, `THROUGHPUT_ONLY` (`none`,
//! `sqlite` or `postgres`, or a comma-separated list such as `none,sqlite`) runs only those
//! variants (one alone for a profile under callgrind; the first one run is the reference).

// Timing statistics, never money.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use capture_core::{CaptureRequest, Outcome};
use capture_engine::store::SqliteStore;
use capture_engine::{CaptureStore, Engine, PlatformSetup, Plugin, Secret};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn plugin_path() -> PathBuf {
    // target/release/deps/throughput-* -> target/release
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf();
    let p = dir.join(format!(
        "{}capture_plugin_optty{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release -p capture-plugin-optty` first",
        p.display()
    );
    p
}

/// Optty's answer to any capture: captured, the reference and amount echoed.
async fn fake_capture(body: String) -> String {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    serde_json::json!({
        "captureReference": v["captureReference"],
        "capturedAmount": v["amount"],
        "captureId": "fake-capture",
    })
    .to_string()
}

/// Starts the fake platform on its own thread and runtime; returns its address.
fn fake_platform() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route("/orders/{order}/capture", post(fake_capture));
            axum::serve(listener, app).await.expect("fake platform");
        });
    });
    addr
}

fn engine(plugin: &Arc<Plugin>, base_url: &str, store: Option<Arc<dyn CaptureStore>>) -> Engine {
    let builder = Engine::builder().plugin(Arc::clone(plugin)).expect("plugin").platform(
        "optty",
        PlatformSetup {
            allowed_hosts: Vec::new(),
            base_url: base_url.into(),
            timeout: Duration::from_secs(10),
            settings: BTreeMap::new(),
            credentials: BTreeMap::from([("bearer_token".into(), Secret::new("bench-token"))]),
        },
    );
    match store {
        Some(store) => builder.store(store).merchant("bench"),
        None => builder.without_ledger(),
    }
    .build()
    .expect("engine")
}

fn request(run: &str, i: usize) -> CaptureRequest {
    CaptureRequest::from_json(
        format!(
            r#"{{"platform":"optty","idempotency_key":"{run}-{i}","amount":"full","order":{{"id":"{run}-{i}","currency":"USD","amount":"10.00","payments":[{{"id":"p-{i}","amount":"10.00","method":"afterpay"}}]}}}}"#
        )
        .as_bytes(),
    )
    .expect("request")
}

/// Captures `total` new orders with `concurrency` tasks; returns captures per second.
async fn round(engine: &Arc<Engine>, run: &str, total: usize, concurrency: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (engine, next, run) = (Arc::clone(engine), Arc::clone(&next), run.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let report = engine.capture(request(&run, i)).await.expect("capture");
                    assert!(matches!(report.outcome, Outcome::Captured { .. }), "{:?}", report.outcome);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Variant {
    name: &'static str,
    engine: Arc<Engine>,
    sqlite: Option<Arc<SqliteStore>>,
    rates: Vec<f64>,
}

const WORKER_URL_ENV: &str = "THROUGHPUT_WORKER_POSTGRES";
const WORKER_RUN_ENV: &str = "THROUGHPUT_WORKER_RUN";

/// A worker process: captures `total` new orders on the PostgreSQL ledger at `URL` and prints
/// `elapsed_seconds captures`.
fn worker(url: &str, run: &str, total: usize, concurrency: usize) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let base_url = format!("http://{}", fake_platform());
    let plugin = Arc::new(Plugin::load(&plugin_path()).expect("plugin loads"));
    let pg = rt.block_on(capture_store::open(url)).expect("postgres ledger");
    let engine = Arc::new(engine(&plugin, &base_url, Some(pg)));
    rt.block_on(round(&engine, &format!("{run}-warm"), 100, concurrency));
    let started = Instant::now();
    rt.block_on(round(&engine, run, total, concurrency));
    println!("{} {total}", started.elapsed().as_secs_f64());
}

/// Two worker processes at once on one database: captures per second of both together.
fn two_processes(url: &str, run: &str, total: usize, concurrency: usize) -> f64 {
    let exe = std::env::current_exe().expect("exe");
    let children: Vec<_> = (0..2)
        .map(|w| {
            std::process::Command::new(&exe)
                .env(WORKER_URL_ENV, url)
                .env(WORKER_RUN_ENV, format!("{run}w{w}"))
                .env("THROUGHPUT_CAPTURES", (total / 2).to_string())
                .env("THROUGHPUT_CONCURRENCY", (concurrency / 2).max(1).to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("worker")
        })
        .collect();
    let mut slowest = 0.0f64;
    let mut captures = 0usize;
    for child in children {
        let out = child.wait_with_output().expect("worker output");
        assert!(out.status.success(), "a worker failed: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let secs: f64 = fields.next().and_then(|f| f.parse().ok()).expect("elapsed");
        let n: usize = fields.next().and_then(|f| f.parse().ok()).expect("count");
        slowest = slowest.max(secs);
        captures += n;
    }
    captures as f64 / slowest
}

/// The pgbench script: a capture's statements, as the PostgreSQL store sends them.
fn pgbench_script() -> String {
    let order = "'bench-' || :client_id || '-' || :n";
    let cap = "'cap-' || :client_id || '-' || :n";
    let attempt_cols = "id, merchant, platform, idempotency_key, fingerprint, order_id, payment_ids, amount_minor, \
        currency, state, resendable, captured_minor, anomaly, platform_capture_id, request, response, outcome, sends, \
        last_sent_at, lease_owner, lease_token, lease_at, lease_until, created_at, updated_at";
    let order_cols = "merchant, platform, order_id, currency, authorized_minor, payments, external_minor, held_minor, \
        in_flight, updated_at";
    let request = r#"'{"method":"POST","url":"http://127.0.0.1:1/orders/bench/capture","headers":[["content-type","application/json"]],"body":{"amount":"10.00","captureReference":"bench","currency":"USD"}}'"#;
    let response = r#"'{"status":200,"headers":[["content-type","application/json"]],"body":{"captureReference":"bench","capturedAmount":"10.00","captureId":"fake-capture"}}'"#;
    // A transition writes the order row only when it changed: sent leaves it, captured writes it.
    let transition = |state: &str, extra: &str, order_changes: bool| {
        let order_update = if order_changes {
            format!(
                "UPDATE capture_orders SET external_minor = 0, held_minor = 1000, in_flight = NULL, updated_at = 2 \
                 WHERE merchant = 'bench' AND platform = 'optty' AND order_id = {order};\n"
            )
        } else {
            String::new()
        };
        format!(
            "BEGIN;\n\
             SELECT a.id, a.state, a.lease_token, o.held_minor, o.in_flight FROM capture_attempts a JOIN capture_orders o \
             ON o.merchant = a.merchant AND o.platform = a.platform AND o.order_id = a.order_id WHERE a.id = {cap} FOR UPDATE;\n\
             UPDATE capture_attempts SET state = '{state}', {extra} updated_at = 2 WHERE id = {cap};\n\
             {order_update}\
             COMMIT;\n"
        )
    };
    format!(
        "\\set n random(1, 1000000000000000)\n\
         BEGIN;\n\
         INSERT INTO capture_orders ({order_cols}) VALUES ('bench', 'optty', {order}, 'USD', 1000, \
         '[[\"p-1\",{{\"amount\":\"10.00\",\"currency\":\"USD\"}}]]', 0, 0, NULL, 1) ON CONFLICT DO NOTHING;\n\
         SELECT {order_cols} FROM capture_orders WHERE merchant = 'bench' AND platform = 'optty' AND order_id = {order} FOR UPDATE;\n\
         SELECT {attempt_cols} FROM capture_attempts WHERE merchant = 'bench' AND platform = 'optty' AND idempotency_key = {order};\n\
         SELECT idempotency_key FROM capture_attempts WHERE id = {cap};\n\
         SELECT {attempt_cols} FROM capture_attempts WHERE id = (SELECT in_flight FROM capture_orders \
         WHERE merchant = 'bench' AND platform = 'optty' AND order_id = {order});\n\
         INSERT INTO capture_attempts ({attempt_cols}) VALUES ({cap}, 'bench', 'optty', {order}, 'fp', {order}, '[\"p-1\"]', \
         1000, 'USD', 'reserved', FALSE, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 'bench', 1, 1, 30001, 1, 1);\n\
         UPDATE capture_orders SET external_minor = 0, held_minor = 1000, in_flight = {cap}, updated_at = 1 \
         WHERE merchant = 'bench' AND platform = 'optty' AND order_id = {order};\n\
         COMMIT;\n{}{}",
        transition("sent", &format!("request = {request}, sends = 1, last_sent_at = 2,"), false),
        transition(
            "captured",
            &format!("response = {response}, platform_capture_id = 'fake-capture', captured_minor = 1000,"),
            true
        ),
    )
}

/// pgbench's transactions (script runs) per second with `clients` clients for `seconds`.
fn pgbench(url: &str, script: &std::path::Path, clients: usize, seconds: u32) -> Result<f64, String> {
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(script)
        .arg(url)
        .output()
        .map_err(|e| format!("running pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("pgbench failed: {}{}", text, String::from_utf8_lossy(&out.stderr)));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench's output: {text}"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: bench");
        return;
    }
    if let (Ok(url), Ok(run)) = (std::env::var(WORKER_URL_ENV), std::env::var(WORKER_RUN_ENV)) {
        worker(&url, &run, env_or("THROUGHPUT_CAPTURES", 2000), env_or("THROUGHPUT_CONCURRENCY", 32));
        return;
    }
    let total = env_or("THROUGHPUT_CAPTURES", 4000);
    let rounds = env_or("THROUGHPUT_ROUNDS", 5);
    let concurrency = env_or("THROUGHPUT_CONCURRENCY", 64);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let base_url = format!("http://{}", fake_platform());
    let plugin = Arc::new(Plugin::load(&plugin_path()).expect("plugin loads"));
    let dir = capture_store::testing::TempDir::new("throughput").expect("temp dir");

    let only = std::env::var("THROUGHPUT_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|o| o.trim() == name));
    let mut variants = Vec::new();
    if wanted("none") {
        variants.push(Variant {
            name: "no ledger (reference)",
            engine: Arc::new(engine(&plugin, &base_url, None)),
            sqlite: None,
            rates: vec![],
        });
    }
    if wanted("sqlite") {
        let sqlite = Arc::new(SqliteStore::open(&dir.path().join("capture.db")).expect("sqlite ledger"));
        variants.push(Variant {
            name: "SQLite ledger (file, synchronous=FULL)",
            engine: Arc::new(engine(&plugin, &base_url, Some(sqlite.clone() as Arc<dyn CaptureStore>))),
            sqlite: Some(sqlite),
            rates: vec![],
        });
    }
    let mut pg_url = None;
    if wanted("postgres") {
        match rt.block_on(capture_store::testing::throwaway_postgres()) {
            Ok(url) => {
                pg_url = Some(url.clone());
                let pg = rt.block_on(capture_store::open(&url)).expect("postgres ledger");
                variants.push(Variant {
                    name: "PostgreSQL ledger (fsync on), 16 clients",
                    engine: Arc::new(engine(&plugin, &base_url, Some(pg))),
                    sqlite: None,
                    rates: vec![],
                });
                // The same with as many clients as two processes have together.
                let wide = rt
                    .block_on(capture_store::open(&format!("{url}?pool_size=32")))
                    .expect("postgres ledger");
                variants.push(Variant {
                    name: "PostgreSQL ledger, pool_size=32",
                    engine: Arc::new(engine(&plugin, &base_url, Some(wide))),
                    sqlite: None,
                    rates: vec![],
                });
            }
            Err(e) => eprintln!("PostgreSQL variant skipped: {e}"),
        }
    }

    // Warm up every variant (connections, prepared statements, page cache).
    for (n, v) in variants.iter_mut().enumerate() {
        rt.block_on(round(&v.engine, &format!("warm{n}"), 200, concurrency));
    }
    for r in 0..rounds {
        for (n, v) in variants.iter_mut().enumerate() {
            let rate = rt.block_on(round(&v.engine, &format!("r{r}v{n}"), total, concurrency));
            v.rates.push(rate);
        }
    }
    println!(
        "one engine process, concurrency {concurrency}, {total} captures per round, median of {rounds} rounds (captures/s):"
    );
    let reference = median(variants[0].rates.clone());
    // (With THROUGHPUT_ONLY the first variant run is its own reference.)
    for v in &variants {
        let m = median(v.rates.clone());
        let per_commit = v.sqlite.as_ref().map(|s| {
            // Three writes per capture; warm-up included.
            let writes = 3 * (rounds * total + 200);
            format!(", {:.1} ledger writes per commit", writes as f64 / s.commits().max(1) as f64)
        });
        println!(
            "  {:<42} {:>8.0}/s  {:>5.1}% of the reference{}",
            v.name,
            m,
            100.0 * m / reference,
            per_commit.unwrap_or_default()
        );
    }

    let Some(url) = pg_url else { return };
    let script = dir.path().join("capture.pgbench");
    std::fs::write(&script, pgbench_script()).expect("pgbench script");
    let (mut engines, mut references) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        engines.push(two_processes(&url, &format!("p{r}"), total, concurrency));
        match pgbench(&url, &script, 32, 5) {
            Ok(tps) => references.push(tps),
            Err(e) => {
                eprintln!("pgbench reference skipped: {e}");
                break;
            }
        }
    }
    let e = median(engines);
    println!(
        "PostgreSQL, two engine processes at concurrency {} each, median of {rounds} rounds:",
        concurrency / 2
    );
    if references.is_empty() {
        println!("  engines {e:>8.0} captures/s (no pgbench reference)");
    } else {
        let p = median(references);
        println!("  pgbench, the same statements, 32 clients (reference) {p:>8.0} captures/s  100.0%");
        println!(
            "  two engine processes                                  {e:>8.0} captures/s  {:>5.1}%",
            100.0 * e / p
        );
    }
}
