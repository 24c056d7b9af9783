//! `capture batch` of 10,000 requests against the Optty emulator (real HTTP, SQLite ledger),
//! then the emulator's books against the ledger; beside it `capture run` once per request (a
//! sample of 200 requests, in sequence), the only way in before `serve` and `batch`.
//!
//! ```sh
//! cargo build --release -p capture-cli -p capture-plugin-optty && cargo bench -p capture-cli --bench batch
//! ```

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use capture_engine::AttemptState;
use capture_sandbox::{OpttyConfig, OpttyEmulator, OpttyOrder};
use common::{artifact, per_second, scratch};
use rust_decimal::Decimal;

const BATCH: usize = 10_000;
const RUNS: usize = 200;

fn request(order: &str) -> String {
    format!(
        r#"{{"platform":"optty","idempotency_key":"{order}-1","amount":"full","order":{{"id":"{order}","currency":"USD","amount":"10.00","payments":[{{"id":"pay-{order}","amount":"10.00","method":"afterpay"}}]}}}}"#
    )
}

fn config(dir: &std::path::Path, base_url: &str) -> std::path::PathBuf {
    let cfg = dir.join("capture.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{:?}]\n\n[platforms.optty]\nbase_url = {base_url:?}\ncredentials = {{ bearer_token = {{ env = \"BENCH_OPTTY\" }} }}\n",
            artifact("libcapture_plugin_optty.so").display().to_string()
        ),
    )
    .expect("config");
    cfg
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ten = Decimal::new(1000, 2);
    let mut demo = OpttyConfig::demo();
    for i in 0..BATCH + RUNS {
        demo.orders.push(OpttyOrder::new(format!("N-{i:05}"), "USD", ten, Decimal::ZERO, "afterpay"));
    }
    let emu = OpttyEmulator::start(demo).await.expect("emulator");
    let dir = scratch("batch");
    let file = dir.join("requests.ndjson");
    let mut text = String::new();
    for i in 0..BATCH {
        text.push_str(&request(&format!("N-{i:05}")));
        text.push('\n');
    }
    std::fs::write(&file, text).expect("requests");

    println!("capture batch vs capture run, Optty emulator on loopback, SQLite ledger");
    for concurrency in ["8", "32"] {
        let run_dir = scratch(&format!("batch-{concurrency}"));
        let cfg = config(&run_dir, &emu.base_url());
        // Back to the orders it started with, nothing captured.
        emu.reset();
        let started = Instant::now();
        let out = Command::new(artifact("capture"))
            .args(["batch", "--progress", "none", "--concurrency", concurrency, "--out"])
            .arg(run_dir.join("reports.ndjson"))
            .arg("--config")
            .arg(&cfg)
            .arg(&file)
            .env("BENCH_OPTTY", "sandbox-optty-token")
            .stdout(Stdio::null())
            .output()
            .expect("run batch");
        let elapsed = started.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The books against the ledger.
        let ledger = capture_engine::store::open(&run_dir.join("capture.db").display().to_string())
            .await
            .expect("ledger")
            .all()
            .await
            .expect("read");
        let captured = ledger.iter().filter(|a| a.state == AttemptState::Captured).count();
        let mut books = 0usize;
        let mut total = Decimal::ZERO;
        for i in 0..BATCH {
            let c = emu.captures(&format!("N-{i:05}"));
            assert_eq!(c.len(), 1, "N-{i:05} captured once");
            books += c.len();
            total += c[0].amount;
        }
        assert_eq!((ledger.len(), captured, books), (BATCH, BATCH, BATCH));
        println!(
            "capture batch --concurrency {concurrency:>2}: {BATCH} captures in {} ms, {} captures/s; books {books} captures, {total} USD = ledger {captured} captured",
            elapsed.as_millis(),
            per_second(BATCH as u64, elapsed)
        );
    }

    // One process per request.
    let run_dir = scratch("run");
    let cfg = config(&run_dir, &emu.base_url());
    let started = Instant::now();
    for i in BATCH..BATCH + RUNS {
        let req = run_dir.join("request.json");
        std::fs::write(&req, request(&format!("N-{i:05}"))).expect("request");
        let out = Command::new(artifact("capture"))
            .args(["run", "--config"])
            .arg(&cfg)
            .arg(&req)
            .env("BENCH_OPTTY", "sandbox-optty-token")
            .output()
            .expect("capture run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let elapsed = started.elapsed();
    println!(
        "capture run, one process per request: {RUNS} captures in {} ms, {} captures/s (10,000 would take about {} s)",
        elapsed.as_millis(),
        per_second(RUNS as u64, elapsed),
        elapsed.as_millis() * (BATCH as u128) / (RUNS as u128) / 1000
    );
    emu.shutdown().await;
}
