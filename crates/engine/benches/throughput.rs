//! What the ledger costs a busy engine: one engine process capturing at concurrency 64 (64 tokio
//! tasks on 2 worker threads) against an instant platform on a real loopback socket (a fake Optty
//! that answers every capture as captured, on its own thread), the Optty plugin loaded from disk,
//! no rules. Side by side in one run, rounds interleaved: the same engine without a ledger (the
//! reference), with the SQLite ledger on a file (WAL, `synchronous=FULL`, group commit) and,
//! when PostgreSQL is installed, on a throwaway PostgreSQL server (fsync and synchronous_commit
//! on). Every capture is a new order and key: three durable ledger writes each. Prints the median
//! captures/s of each variant and its ratio to the reference, and the SQLite store's captures per
//! commit.
//!
//! ```text
//! cargo build --release -p capture-plugin-optty && cargo bench -p capture-engine --bench throughput
//! ```
//! `THROUGHPUT_CAPTURES` (default 4000) sets the captures per round, `THROUGHPUT_ROUNDS` (default 5)
//! the rounds, `THROUGHPUT_CONCURRENCY` (default 64) the tasks, `THROUGHPUT_ONLY` (`none`,
//! `sqlite` or `postgres`) runs one variant alone (for a profile under callgrind).

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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: bench");
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
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
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
    if wanted("postgres") {
        match rt.block_on(capture_store::testing::throwaway_postgres()) {
            Ok(url) => {
                let pg = rt.block_on(capture_store::open(&url)).expect("postgres ledger");
                variants.push(Variant {
                    name: "PostgreSQL ledger (fsync on)",
                    engine: Arc::new(engine(&plugin, &base_url, Some(pg))),
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
}
