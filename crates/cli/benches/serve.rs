//! `capture serve` over loopback, SQLite ledger, against a stateless fake Optty (it echoes every
//! capture as captured): captures per second and p50/p99 latency at concurrency 1, 8 and 64.
//! Every request is a new capture (its own key and order): three ledger transactions each.
//!
//! ```sh
//! cargo build --release -p capture-cli -p capture-plugin-optty && cargo bench -p capture-cli --bench serve
//! ```

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::routing::post;
use common::{Conn, artifact, ms, per_second, percentile, scratch};

const TOKEN: &str = "bench-token";

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

fn request(run: &str, i: usize) -> String {
    format!(
        r#"{{"platform":"optty","idempotency_key":"{run}-{i}","amount":"full","order":{{"id":"{run}-{i}","currency":"USD","amount":"10.00","payments":[{{"id":"p-{i}","amount":"10.00","method":"afterpay"}}]}}}}"#
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fake = axum::Router::new().route("/orders/{order}/capture", post(fake_capture));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake platform");
    let fake_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, fake).await });

    let dir = scratch("serve");
    let cfg = dir.join("capture.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{:?}]\n\n[platforms.optty]\nbase_url = \"http://{fake_addr}\"\ncredentials = {{ bearer_token = {{ env = \"BENCH_OPTTY\" }} }}\n",
            artifact("libcapture_plugin_optty.so").display().to_string()
        ),
    )
    .expect("config");
    let mut server = Command::new(artifact("capture"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env("CAPTURE_SERVE_TOKEN", TOKEN)
        .env("BENCH_OPTTY", "fake")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start capture serve");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr: std::net::SocketAddr =
        line.trim().trim_start_matches("capture serve listening on http://").parse().expect("address");

    println!("capture serve, SQLite ledger (WAL, synchronous=FULL), stateless fake Optty, loopback");
    println!(
        "{:>11} {:>9} {:>11} {:>12} {:>9} {:>9}",
        "concurrency", "captures", "duration", "captures/s", "p50 ms", "p99 ms"
    );
    for (concurrency, total) in [(1usize, 500usize), (8, 2000), (64, 4000)] {
        let run = format!("c{concurrency}");
        // Warm-up: connections and the ledger's first pages.
        let mut warm = Conn::open(addr).await;
        for i in 0..20 {
            let (s, b) = warm
                .request("POST", "/v1/captures", TOKEN, request(&format!("{run}-warm"), i).as_bytes())
                .await;
            assert_eq!(s, 200, "{b}");
        }
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..concurrency {
            let (next, run) = (next.clone(), run.clone());
            clients.push(tokio::spawn(async move {
                let mut conn = Conn::open(addr).await;
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break latencies;
                    }
                    let body = request(&run, i);
                    let t = Instant::now();
                    let (status, answer) = conn.request("POST", "/v1/captures", TOKEN, body.as_bytes()).await;
                    latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    assert_eq!(status, 200, "{answer}");
                }
            }));
        }
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.expect("client"));
        }
        let elapsed = started.elapsed();
        all.sort_unstable();
        println!(
            "{concurrency:>11} {total:>9} {:>9} ms {:>12} {:>9} {:>9}",
            elapsed.as_millis(),
            per_second(total as u64, elapsed),
            ms(percentile(&all, 50)),
            ms(percentile(&all, 99))
        );
    }
    let status = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status().expect("kill");
    assert!(status.success());
    let exit = server.wait().expect("wait");
    assert!(exit.success(), "capture serve exits 0 on SIGTERM: {exit:?}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
