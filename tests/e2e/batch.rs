//! `capture batch` as a real process: reports as NDJSON, the summary, exit codes, and a batch
//! SIGKILLed halfway then run again: every order captured exactly once, the ledger and the
//! emulator's books equal; a platform answering 429 with a reset hint waited out, every order
//! captured once. (The rate budget's token bucket itself is tested without a clock in the CLI's
//! unit tests.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use capture_engine::AttemptState;
use capture_sandbox::OpttyOrder;
use capture_sandbox::faults::Fault;
use rust_decimal::Decimal;

use crate::plugins::scratch;
use crate::{TOKEN, artifact, emulator, optty_plugin, sample};

const OPTTY_ENV: &str = "CAPTURE_E2E_BATCH_OPTTY";

/// A configuration without rules for the Optty emulator, its ledger `capture.db` beside it.
fn config(dir: &Path, base_url: &str, rate: Option<&str>) -> PathBuf {
    let cfg = dir.join("capture.toml");
    let rate = rate.map(|r| format!("rate = {r}\n")).unwrap_or_default();
    let text = format!(
        "plugins = [{plugin:?}]\n\n[platforms.optty]\nbase_url = {base_url:?}\ntimeout_ms = 5000\n{rate}credentials = {{ bearer_token = {{ env = {OPTTY_ENV:?} }} }}\n",
        plugin = optty_plugin().display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

fn batch(cfg: &Path, requests: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(artifact("capture"));
    cmd.args(["batch", "--progress", "lines", "--concurrency", "2", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(extra)
        .arg(requests)
        .env(OPTTY_ENV, TOKEN);
    cmd
}

fn one_line(json: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(json).expect("JSON");
    v.to_string()
}

fn text(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read reports")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_ndjson_reports_and_a_summary_and_replays_when_run_again() {
    let emu = emulator().await;
    let dir = scratch("batch-summary");
    let cfg = config(&dir, &emu.base_url(), Some("{ per_second = 50, burst = 5 }"));
    let requests = dir.join("requests.ndjson");
    let partial = String::from_utf8(sample("partial-capture.json")).expect("UTF-8");
    std::fs::write(
        &requests,
        format!(
            "{}\n\n{}\n{}\n{{\"platform\":\"optty\",\"amount\":3}}\n",
            one_line(&sample("full-capture.json")),
            one_line(partial.as_bytes()),
            one_line(&sample("platform-unknown-order.json")),
        ),
    )
    .expect("write requests");
    let out = dir.join("reports.ndjson");
    let first = batch(&cfg, &requests, &out, &[]).output().expect("run batch");
    // A refused capture (unknown order) and an invalid line: exit 6.
    assert_eq!(first.status.code(), Some(6), "{}", text(&first));
    let stderr = String::from_utf8_lossy(&first.stderr);
    for needle in [
        "batch done: 4 of 4 request(s)",
        "0 retries, 0 replayed from the ledger, 1 invalid line(s)",
        "optty        captured 2, failed 1",
        "captured     170.10 USD",
    ] {
        assert!(stderr.contains(needle), "summary lacks `{needle}`:\n{stderr}");
    }
    let reports = lines(&out);
    assert_eq!(reports.len(), 4);
    let invalid: Vec<_> = reports.iter().filter(|r| r.get("error").is_some()).collect();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0]["line"], 5, "the line number of the file, blank lines counted");
    assert_eq!(reports.iter().filter(|r| r["outcome"]["status"] == "captured").count(), 2);

    // The same file again: what is final (two captures, one refusal) is replayed from the
    // ledger, nothing is sent.
    let out2 = dir.join("reports-2.ndjson");
    let again = batch(&cfg, &requests, &out2, &[]).output().expect("run batch");
    assert_eq!(again.status.code(), Some(6), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("3 replayed from the ledger"),
        "{}",
        text(&again)
    );
    assert_eq!(emu.captures("ORD-1001").len(), 1);
    assert_eq!(emu.captures("ORD-1002").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_on_a_pipe_is_plain_lines_never_the_bar() {
    let emu = emulator().await;
    let dir = scratch("batch-progress");
    let cfg = config(&dir, &emu.base_url(), None);
    let requests = dir.join("requests.ndjson");
    std::fs::write(&requests, format!("{}\n", one_line(&sample("full-capture.json")))).expect("write");
    // `--progress auto` (the default) with standard error a pipe, as in CI or a log file.
    let out = Command::new(artifact("capture"))
        .args(["batch", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("reports.ndjson"))
        .arg(&requests)
        .env(OPTTY_ENV, TOKEN)
        .output()
        .expect("run batch");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("batch: 1/1 done: 1 captured"), "{stderr}");
    assert!(!stderr.contains('\r') && !stderr.contains("[#"), "no bar drawn on a pipe: {stderr:?}");
}

#[test]
fn a_batch_demands_only_the_credentials_of_the_platforms_it_uses() {
    let dir = scratch("batch-credentials");
    // The batch uses Optty, whose credential is missing: refused before anything is sent.
    let cfg = config(&dir, "http://127.0.0.1:9", None);
    let requests = dir.join("requests.ndjson");
    std::fs::write(&requests, format!("{}\n", one_line(&sample("full-capture.json")))).expect("write");
    let out = Command::new(artifact("capture"))
        .args(["batch", "--config"])
        .arg(&cfg)
        .arg(&requests)
        .env_remove(OPTTY_ENV)
        .output()
        .expect("run batch");
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(OPTTY_ENV) && stderr.contains("nothing was sent"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_halfway_resumes_and_captures_every_order_exactly_once() {
    const ORDERS: usize = 30;
    let emu = emulator().await;
    let ten = Decimal::new(1000, 2);
    let mut requests = String::new();
    for i in 0..ORDERS {
        let order = format!("B-{i:03}");
        emu.add_order(OpttyOrder::new(&order, "USD", ten, Decimal::ZERO, "afterpay"));
        requests.push_str(&format!(
            r#"{{"platform":"optty","idempotency_key":"{order}-1","amount":"full","order":{{"id":"{order}","currency":"USD","amount":"10.00","payments":[{{"id":"pay-{order}","amount":"10.00","method":"afterpay"}}]}}}}"#
        ));
        requests.push('\n');
    }
    // Each capture is applied, then answered 200 ms late: the batch is slow enough to be killed.
    emu.faults().push((0..ORDERS).map(|_| Fault::delay(200)));
    let dir = scratch("batch-resume");
    let cfg = config(&dir, &emu.base_url(), None);
    let file = dir.join("requests.ndjson");
    std::fs::write(&file, requests).expect("write requests");
    let ledger = dir.join("capture.db").display().to_string();

    let mut child = batch(&cfg, &file, &dir.join("first.ndjson"), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start batch");
    // Kill it once a few captures are recorded (and others are in flight).
    loop {
        let attempts = capture_engine::store::open(&ledger).await.expect("ledger").all().await.expect("read");
        if attempts.iter().filter(|a| a.state == AttemptState::Captured).count() >= 6 {
            break;
        }
        assert!(child.try_wait().expect("poll batch").is_none(), "the batch ended before it was killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL the batch");
    assert!(child.wait().expect("reap").code().is_none(), "killed by a signal");
    let killed = capture_engine::store::open(&ledger).await.expect("ledger").all().await.expect("read");
    assert!(killed.len() < ORDERS, "killed halfway: {} attempts", killed.len());

    // Run the same file again (nothing else shares the ledger: take over at once).
    emu.faults().clear();
    let out = dir.join("second.ndjson");
    let second = batch(&cfg, &file, &out, &["--abandoned-after", "0"]).output().expect("rerun batch");
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let reports = lines(&out);
    assert_eq!(reports.len(), ORDERS);
    assert!(reports.iter().all(|r| r["outcome"]["status"] == "captured"), "{reports:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("batch done: {ORDERS} of {ORDERS}")), "{stderr}");
    assert!(stderr.contains("captured     300.00 USD"), "{stderr}");

    // The books: every order captured once, for its amount; the ledger says the same.
    let attempts = capture_engine::store::open(&ledger).await.expect("ledger").all().await.expect("read");
    assert_eq!(attempts.len(), ORDERS, "one attempt per key");
    for i in 0..ORDERS {
        let order = format!("B-{i:03}");
        let books = emu.captures(&order);
        assert_eq!(books.len(), 1, "{order} captured exactly once: {books:?}");
        assert_eq!(books[0].amount, ten);
        let a = attempts.iter().find(|a| a.order_id == order).expect("an attempt");
        assert_eq!(a.state, AttemptState::Captured, "{order}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_batch_cleanly_every_started_capture_recorded() {
    const ORDERS: usize = 20;
    let emu = emulator().await;
    let ten = Decimal::new(1000, 2);
    let mut requests = String::new();
    for i in 0..ORDERS {
        let order = format!("I-{i:03}");
        emu.add_order(OpttyOrder::new(&order, "USD", ten, Decimal::ZERO, "afterpay"));
        requests.push_str(&format!(
            r#"{{"platform":"optty","idempotency_key":"{order}-1","amount":"full","order":{{"id":"{order}","currency":"USD","amount":"10.00","payments":[{{"id":"pay-{order}","amount":"10.00","method":"afterpay"}}]}}}}"#
        ));
        requests.push('\n');
    }
    emu.faults().push((0..ORDERS).map(|_| Fault::delay(300)));
    let dir = scratch("batch-ctrl-c");
    let cfg = config(&dir, &emu.base_url(), None);
    let file = dir.join("requests.ndjson");
    std::fs::write(&file, requests).expect("write requests");
    let ledger = dir.join("capture.db").display().to_string();
    let out = dir.join("reports.ndjson");
    let child =
        batch(&cfg, &file, &out, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start");
    loop {
        let attempts = capture_engine::store::open(&ledger).await.expect("ledger").all().await.expect("read");
        if attempts.iter().filter(|a| a.state == AttemptState::Captured).count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().expect("kill -INT");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("batch interrupted"), "{}", text(&output));
    let attempts = capture_engine::store::open(&ledger).await.expect("ledger").all().await.expect("read");
    assert!(attempts.len() < ORDERS, "stopped before the end: {}", attempts.len());
    assert!(
        attempts.iter().all(|a| a.state == AttemptState::Captured),
        "every capture it started finished and was recorded: {attempts:?}"
    );
    assert_eq!(lines(&out).len(), attempts.len(), "a report for each");
}

/// A platform that answers 429 with a reset hint: the batch (its rate budget on) waits the hint
/// out, retries, and captures every order exactly once; the summary counts the retries, and
/// the reports show the two 429s met before the captures (which capture meets which depends on
/// timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_platform_is_waited_out_and_every_order_captured_once() {
    let emu = emulator().await;
    let dir = scratch("batch-rate-limited");
    let cfg = config(&dir, &emu.base_url(), Some("{ per_second = 50, burst = 2 }"));
    let requests = dir.join("requests.ndjson");
    std::fs::write(
        &requests,
        format!(
            "{}\n{}\n",
            one_line(&sample("full-capture.json")),
            one_line(&sample("partial-capture.json"))
        ),
    )
    .expect("write requests");
    emu.faults().push([Fault::rate_limited(300), Fault::rate_limited(300)]);
    let out = dir.join("reports.ndjson");
    let run = batch(&cfg, &requests, &out, &[]).output().expect("run batch");
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("batch done: 2 of 2 request(s)"), "{stderr}");
    assert!(stderr.contains("2 retries, 0 replayed"), "one resend per 429: {stderr}");
    assert!(stderr.contains("optty        captured 2"), "{stderr}");
    let reports = lines(&out);
    assert_eq!(reports.len(), 2);
    let mut limited = 0;
    for r in &reports {
        assert_eq!(r["outcome"]["status"], "captured", "{r}");
        let statuses: Vec<u64> = r["exchanges"]
            .as_array()
            .expect("exchanges")
            .iter()
            .map(|e| e["response"]["status"].as_u64().expect("a status"))
            .collect();
        // Which capture meets which 429 depends on timing; that each ends in its capture does not.
        assert_eq!(statuses.last(), Some(&200), "{r}");
        assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 429), "{r}");
        limited += statuses.len() - 1;
    }
    assert_eq!(limited, 2, "both 429s were met and answered: {reports:?}");
    assert!(emu.faults().queued().is_empty(), "both 429s were met");
    assert_eq!(emu.captures("ORD-1001").len(), 1, "captured once despite the 429");
    assert_eq!(emu.captures("ORD-1002").len(), 1, "captured once despite the 429");
}
