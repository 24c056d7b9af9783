//! `capture batch` of 10,000 requests across the four emulators (Optty, BigCommerce, Medusa and
//! Wix, 2,500 orders each, interleaved; real HTTP over loopback, one SQLite ledger), three runs
//! at `--concurrency 8` and three at 32, each followed by the emulators' books against the
//! ledger (every order captured once, for its amount, on the platform and in the ledger). Beside
//! it, the same kind of requests through `capture run`, one process per request, the only way in
//! before `serve` and `batch`: a sample of 300 (75 per platform) in sequence, as captures/s.
//!
//! ```sh
//! cargo build --release -p capture-cli -p capture-plugin-optty -p capture-plugin-bigcommerce \
//!     -p capture-plugin-medusa -p capture-plugin-wix && cargo bench -p capture-cli --bench batch
//! ```
//!
//! The emulators run in this process (their books are read directly). The Optty emulator checks
//! a capture's `captureReference` against every order it holds, so its cost grows with its order
//! count; this benchmark measures the whole system as it is.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capture_engine::AttemptState;
use capture_sandbox::bigcommerce::{BigCommerceConfig, BigCommerceEmulator, BigCommerceOrder};
use capture_sandbox::medusa::{MedusaConfig, MedusaEmulator, MedusaOrder, MedusaPayment};
use capture_sandbox::wix::{WixConfig, WixEmulator, WixOrder, WixPayment};
use capture_sandbox::{OpttyConfig, OpttyEmulator, OpttyOrder};
use common::{artifact, per_second, scratch};
use rust_decimal::Decimal;

const PLATFORMS: [&str; 4] = ["optty", "bigcommerce", "medusa", "wix"];
/// Orders per platform in the batch.
const PER_PLATFORM: usize = 2_500;
const BATCH: usize = PER_PLATFORM * PLATFORMS.len();
/// `capture run` sample, per platform.
const RUNS_PER_PLATFORM: usize = 75;
const RUNS: usize = RUNS_PER_PLATFORM * PLATFORMS.len();
/// Orders each emulator holds: the batch's, then the sample's.
const ORDERS: usize = PER_PLATFORM + RUNS_PER_PLATFORM;
const REPEATS: usize = 3;

/// The order id of the `i`-th order of a platform, as the platform names it.
fn order_id(platform: &str, i: usize) -> String {
    match platform {
        "optty" => format!("N-{i:05}"),
        "bigcommerce" => (10_000 + i).to_string(),
        "medusa" => format!("order_n{i:05}"),
        _ => format!("9a000000-0000-4000-8000-{i:012}"),
    }
}

fn payment_id(platform: &str, i: usize) -> String {
    match platform {
        "optty" => format!("pay-N-{i:05}"),
        "bigcommerce" => format!("bc-{}-card", 10_000 + i),
        "medusa" => format!("pay_n{i:05}"),
        _ => format!("9b000000-0000-4000-8000-{i:012}"),
    }
}

/// A full capture of 10.00 USD of the `i`-th order of a platform.
fn request(platform: &str, i: usize) -> String {
    let method = match platform {
        "optty" => r#""method":"afterpay""#,
        "bigcommerce" => r#""method":"credit_card","partial_capture":false"#,
        "medusa" => r#""method":"manual","partial_capture":false"#,
        _ => r#""method":"card""#,
    };
    let order = order_id(platform, i);
    format!(
        r#"{{"platform":"{platform}","idempotency_key":"{order}-1","amount":"full","order":{{"id":"{order}","currency":"USD","amount":"10.00","payments":[{{"id":"{}","amount":"10.00",{method}}}]}}}}"#,
        payment_id(platform, i)
    )
}

struct Emulators {
    optty: OpttyEmulator,
    bigcommerce: BigCommerceEmulator,
    medusa: MedusaEmulator,
    wix: WixEmulator,
}

impl Emulators {
    async fn start() -> Emulators {
        let ten = Decimal::new(1000, 2);
        let mut optty = OpttyConfig::demo();
        let mut bigcommerce = BigCommerceConfig::demo();
        // Settles at once (the capture is `captured` in the first answer's books).
        bigcommerce.settle_after_reads = 0;
        let mut medusa = MedusaConfig::demo();
        let mut wix = WixConfig::demo();
        wix.settle_after_reads = 0;
        for i in 0..ORDERS {
            optty.orders.push(OpttyOrder::new(order_id("optty", i), "USD", ten, Decimal::ZERO, "afterpay"));
            bigcommerce.orders.push(BigCommerceOrder::new(10_000 + i as u64, "USD", ten, "authorized"));
            let (o, p) = (order_id("medusa", i), payment_id("medusa", i));
            medusa.payments.push(MedusaPayment::new(&p, &o, 1000, "usd"));
            medusa.orders.push(MedusaOrder::new(&o, &[p.as_str()]));
            wix.orders.push(WixOrder {
                id: order_id("wix", i),
                currency: "USD".into(),
                payments: vec![WixPayment {
                    id: payment_id("wix", i),
                    amount: ten,
                    status: "AUTHORIZED".into(),
                    captures: Vec::new(),
                }],
                chargebacks: false,
            });
        }
        Emulators {
            optty: OpttyEmulator::start(optty).await.expect("Optty emulator"),
            bigcommerce: BigCommerceEmulator::start(bigcommerce).await.expect("BigCommerce emulator"),
            medusa: MedusaEmulator::start(medusa).await.expect("Medusa emulator"),
            wix: WixEmulator::start(wix).await.expect("Wix emulator"),
        }
    }

    /// Back to the orders they started with, nothing captured.
    fn reset(&self) {
        self.optty.reset();
        self.bigcommerce.reset();
        self.medusa.reset();
        self.wix.reset();
    }

    /// What the platform's books hold for the `i`-th order: the amounts of its captures.
    fn captures(&self, platform: &str, i: usize) -> Vec<Decimal> {
        let order = order_id(platform, i);
        match platform {
            "optty" => self.optty.captures(&order).iter().map(|c| c.amount).collect(),
            // A capture is its `pending` transaction (then settled as `capture`).
            "bigcommerce" => self
                .bigcommerce
                .transactions(10_000 + i as u64)
                .iter()
                .filter(|t| t.event == "pending" && t.status == "ok")
                .map(|t| t.amount)
                .collect(),
            "medusa" => self
                .medusa
                .payment(&payment_id("medusa", i))
                .filter(|p| p.captured_at.is_some())
                .map(|p| Decimal::new(p.amount, 2))
                .into_iter()
                .collect(),
            _ => self
                .wix
                .order(&order)
                .map(|o| {
                    o.payments
                        .iter()
                        .flat_map(|p| p.captures.iter())
                        .filter(|c| c.status != "FAILED")
                        .map(|c| c.amount)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn config(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let plugin = |p: &str| artifact(&format!("libcapture_plugin_{p}.so")).display().to_string();
        let cfg = dir.join("capture.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"plugins = [{:?}, {:?}, {:?}, {:?}]

[platforms.optty]
base_url = {:?}
credentials = {{ bearer_token = {{ env = "BENCH_OPTTY" }} }}

[platforms.bigcommerce]
base_url = {:?}
settings = {{ store_hash = "abc123" }}
credentials = {{ access_token = {{ env = "BENCH_BIGCOMMERCE" }} }}

[platforms.medusa]
base_url = {:?}
credentials = {{ api_token = {{ env = "BENCH_MEDUSA" }} }}

[platforms.wix]
base_url = {:?}
credentials = {{ api_key = {{ env = "BENCH_WIX" }} }}
"#,
                plugin("optty"),
                plugin("bigcommerce"),
                plugin("medusa"),
                plugin("wix"),
                self.optty.base_url(),
                self.bigcommerce.base_url(),
                self.medusa.base_url(),
                self.wix.base_url(),
            ),
        )
        .expect("config");
        cfg
    }
}

/// The emulators' sandbox credentials (sandbox data, nobody's secret).
fn credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("BENCH_OPTTY", "sandbox-optty-token")
        .env("BENCH_BIGCOMMERCE", "sandbox-bigcommerce-token")
        .env("BENCH_MEDUSA", "sandbox-medusa-token")
        .env("BENCH_WIX", capture_sandbox::wix::demo_ids::TOKEN)
}

/// The books of orders `range` of every platform against the ledger: one attempt per order,
/// captured (or pending at the platform) for 10.00 USD, and one capture of 10.00 in the books.
/// Returns (captures in the books, their total).
async fn check_books(
    emus: &Emulators,
    ledger: &std::path::Path,
    range: std::ops::Range<usize>,
) -> (usize, Decimal) {
    let ten = Decimal::new(1000, 2);
    let attempts = capture_engine::store::open(&ledger.display().to_string())
        .await
        .expect("ledger")
        .all()
        .await
        .expect("read the ledger");
    assert_eq!(attempts.len(), range.len() * PLATFORMS.len(), "one attempt per request");
    let mut by_order = std::collections::BTreeMap::new();
    for a in &attempts {
        assert!(by_order.insert((a.platform.clone(), a.order_id.clone()), a).is_none(), "one per order");
    }
    let (mut books, mut total) = (0, Decimal::ZERO);
    for platform in PLATFORMS {
        for i in range.clone() {
            let captures = emus.captures(platform, i);
            assert_eq!(captures, [ten], "{platform} order {i}: captured once, 10.00, in the books");
            let a = by_order.get(&(platform.to_owned(), order_id(platform, i))).expect("in the ledger");
            assert!(
                matches!(a.state, AttemptState::Captured | AttemptState::Pending),
                "{platform} order {i}: {:?}",
                a.state
            );
            assert_eq!(a.amount.amount(), ten, "{platform} order {i}: the ledger's amount");
            books += captures.len();
            total += captures[0];
        }
    }
    (books, total)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let emus = Emulators::start().await;
    let dir = scratch("batch");
    let file = dir.join("requests.ndjson");
    let mut text = String::new();
    for i in 0..PER_PLATFORM {
        for platform in PLATFORMS {
            text.push_str(&request(platform, i));
            text.push('\n');
        }
    }
    std::fs::write(&file, text).expect("requests");

    println!(
        "capture batch vs capture run: {BATCH} requests over the Optty, BigCommerce, Medusa and Wix emulators on loopback, SQLite ledger"
    );
    for concurrency in ["8", "32"] {
        let mut times = Vec::new();
        for run in 1..=REPEATS {
            let run_dir = scratch(&format!("batch-{concurrency}-{run}"));
            let cfg = emus.config(&run_dir);
            emus.reset();
            let started = Instant::now();
            let out = credentials(
                Command::new(artifact("capture"))
                    .args(["batch", "--progress", "none", "--concurrency", concurrency, "--out"])
                    .arg(run_dir.join("reports.ndjson"))
                    .arg("--config")
                    .arg(&cfg)
                    .arg(&file),
            )
            .stdout(Stdio::null())
            .output()
            .expect("run batch");
            let elapsed = started.elapsed();
            let summary = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{summary}");
            let (books, total) = check_books(&emus, &run_dir.join("capture.db"), 0..PER_PLATFORM).await;
            println!(
                "  capture batch --concurrency {concurrency:>2}, run {run}: {BATCH} in {} ms, {} captures/s; books {books} captures, {total} USD = the ledger",
                elapsed.as_millis(),
                per_second(BATCH as u64, elapsed)
            );
            times.push(elapsed);
        }
        let m = median(times);
        println!(
            "capture batch --concurrency {concurrency:>2}: median of {REPEATS}: {BATCH} captures in {} ms, {} captures/s",
            m.as_millis(),
            per_second(BATCH as u64, m)
        );
    }

    // One process per request: the sample's orders (fresh ones), interleaved like the batch.
    let run_dir = scratch("run");
    let cfg = emus.config(&run_dir);
    emus.reset();
    let started = Instant::now();
    for i in PER_PLATFORM..ORDERS {
        for platform in PLATFORMS {
            let req = run_dir.join("request.json");
            std::fs::write(&req, request(platform, i)).expect("request");
            let out =
                credentials(Command::new(artifact("capture")).args(["run", "--config"]).arg(&cfg).arg(&req))
                    .output()
                    .expect("capture run");
            // 0 captured, 8 pending at the platform.
            assert!(matches!(out.status.code(), Some(0 | 8)), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let elapsed = started.elapsed();
    let (books, total) = check_books(&emus, &run_dir.join("capture.db"), PER_PLATFORM..ORDERS).await;
    println!(
        "capture run, one process per request, a sample of {RUNS} ({RUNS_PER_PLATFORM} per platform) in sequence: {} ms, {} captures/s (10,000 would take about {} s); books {books} captures, {total} USD = the ledger",
        elapsed.as_millis(),
        per_second(RUNS as u64, elapsed),
        elapsed.as_millis() * (BATCH as u128) / (RUNS as u128) / 1000
    );
    emus.optty.shutdown().await;
    emus.bigcommerce.shutdown().await;
    emus.medusa.shutdown().await;
    emus.wix.shutdown().await;
}
