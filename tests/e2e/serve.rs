//! `capture serve` as a real process: authentication, the body limit, the header, body and
//! capture timeouts, the HTTP status of every outcome, the recorded capture by key, metrics, the OpenAPI document against the routes,
//! refusal to start without a token, graceful shutdown on SIGTERM mid-capture, rules reloaded
//! on SIGHUP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capture_engine::AttemptState;
use capture_sandbox::faults::Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::plugins::scratch;
use crate::{TOKEN, artifact, emulator, optty_plugin, repo, sample};

pub const API_TOKEN: &str = "e2e-serve-token";
const TOKEN_ENV: &str = "CAPTURE_E2E_SERVE_TOKEN";
const OPTTY_ENV: &str = "CAPTURE_E2E_SERVE_OPTTY";

/// A configuration for the Optty emulator at `base_url`, with the demo rules (copied, so a test
/// may change them) and a ledger `store` (default: `capture.db` beside it).
pub fn config(dir: &Path, base_url: &str, store: Option<&str>) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules folder");
    for entry in std::fs::read_dir(repo().join("rules/demo")).expect("demo rules") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "lua") {
            std::fs::copy(&p, rules.join(p.file_name().expect("name"))).expect("copy rule");
        }
    }
    let store = store.map(|s| format!("store = {s:?}\n")).unwrap_or_default();
    let cfg = dir.join("capture.toml");
    let text = format!(
        "{store}rules = \"rules\"\nplugins = [{plugin:?}]\n\n[platforms.optty]\nbase_url = {base_url:?}\ntimeout_ms = 5000\ncredentials = {{ bearer_token = {{ env = {OPTTY_ENV:?} }} }}\n",
        plugin = optty_plugin().display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

/// A running `capture serve`; killed when dropped (if it still runs).
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `capture serve --config cfg --listen 127.0.0.1:0 [extra]` and waits for its
    /// "listening" line.
    pub fn start(cfg: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(artifact("capture"))
            .args(["serve", "--listen", "127.0.0.1:0", "--token-env", TOKEN_ENV, "--config"])
            .arg(cfg)
            .args(extra)
            .env(TOKEN_ENV, API_TOKEN)
            .env(OPTTY_ENV, TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start capture serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                sink.lock().expect("stderr buffer").push_str(&format!("{line}\n"));
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("capture serve listening on http://")
            .unwrap_or_else(|| {
                panic!("unexpected first line `{line}`; stderr: {}", stderr.lock().expect("stderr"))
            })
            .parse()
            .expect("an address");
        Server { child, addr, stderr }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.expect("run kill").success(), "kill -{name}");
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The test's own child, by its id.
            let _kill = self.child.kill();
            let _reaped = self.child.wait();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 exchange over a fresh connection (`Connection: close`), no client library.
pub async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
    try_http(addr, method, path, token, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Same; a refused or dropped connection is an error, not a panic.
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Answer, String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    s.write_all(body).await.map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("answer: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("status line: `{head}`"))?;
    Ok(Answer { status, headers: head.to_ascii_lowercase(), body: body.to_owned() })
}

pub async fn capture(addr: SocketAddr, body: &[u8]) -> Answer {
    http(addr, "POST", "/v1/captures", Some(API_TOKEN), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_authenticates_limits_bodies_and_maps_outcomes_to_statuses() {
    let emu = emulator().await;
    let dir = scratch("serve-api");
    let cfg = config(&dir, &emu.base_url(), None);
    let server = Server::start(&cfg, &["--max-body", "4096"]);
    let addr = server.addr;

    // Open routes need no token; the API does.
    assert_eq!(http(addr, "GET", "/healthz", None, b"").await.status, 200);
    assert_eq!(http(addr, "GET", "/readyz", None, b"").await.status, 200);
    let body = sample("full-capture.json");
    let none = http(addr, "POST", "/v1/captures", None, &body).await;
    assert_eq!(none.status, 401, "{none:?}");
    assert!(none.headers.contains("www-authenticate: bearer"), "{none:?}");
    assert_eq!(http(addr, "POST", "/v1/captures", Some("wrong"), &body).await.status, 401);
    assert_eq!(http(addr, "GET", "/metrics", None, b"").await.status, 401);
    assert!(emu.captures("ORD-1001").is_empty(), "nothing was captured without a token");

    // The body limit.
    let big = format!(r#"{{"platform":"optty","pad":"{}"}}"#, "x".repeat(5000));
    let too_big = capture(addr, big.as_bytes()).await;
    assert_eq!(too_big.status, 413, "{too_big:?}");
    assert_eq!(too_big.json()["error"]["kind"], "body_too_large");

    // Bad requests name the field; nothing is sent.
    let malformed = capture(addr, b"{not json").await;
    assert_eq!(
        (malformed.status, malformed.json()["error"]["kind"].clone()),
        (400, "malformed_request".into())
    );
    let invalid = capture(
        addr,
        br#"{"platform":"optty","idempotency_key":"k","amount":"1.234","order":{"id":"O","currency":"USD","amount":"5.00","payments":[{"id":"p","amount":"5.00"}]}}"#,
    )
    .await;
    assert_eq!(invalid.status, 422, "{invalid:?}");
    assert_eq!(invalid.json()["error"]["field"], "amount");

    // Each outcome with its status; the report is the body.
    for (request, status, outcome) in [
        ("full-capture.json", 200, "captured"),
        ("rejected-missing-tracking.json", 422, "rejected"),
        ("held-large-order.json", 423, "held"),
        ("platform-unknown-order.json", 502, "failed"),
    ] {
        let a = capture(addr, &sample(request)).await;
        assert_eq!(a.status, status, "{request}: {a:?}");
        let report = a.json();
        assert_eq!(report["schema"], "capture-report/1", "{request}");
        assert_eq!(report["outcome"]["status"], outcome, "{request}");
        assert!(a.headers.contains(&format!("capture-outcome: {outcome}")), "{request}: {a:?}");
    }
    // A retried call with the same key is safe: replayed from the ledger, nothing sent.
    let again = capture(addr, &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["exchanges"].as_array().map(Vec::len), Some(0), "{again:?}");
    assert_eq!(emu.captures("ORD-1001").len(), 1, "captured once");
    // The same key for another amount is a conflict.
    let other = String::from_utf8(body.clone()).expect("UTF-8").replace("\"full\"", "\"10.00\"");
    assert_eq!(capture(addr, other.as_bytes()).await.status, 409);

    // What the ledger recorded, by key.
    let recorded = http(addr, "GET", "/v1/captures/optty/ORD-1001-capture-1", Some(API_TOKEN), b"").await;
    assert_eq!(recorded.status, 200, "{recorded:?}");
    let r = recorded.json();
    assert_eq!((r["state"].as_str(), r["order_id"].as_str()), (Some("captured"), Some("ORD-1001")));
    assert_eq!(r["amount"]["amount"], "120.00");
    assert_eq!(r["outcome"]["status"], "captured");
    assert_eq!(http(addr, "GET", "/v1/captures/optty/no-such-key", Some(API_TOKEN), b"").await.status, 404);

    // Status query (Optty's connector has none: refused naming the field) and reconcile.
    let status = http(
        addr,
        "POST",
        "/v1/status",
        Some(API_TOKEN),
        br#"{"platform":"optty","order_id":"ORD-1001","currency":"USD","idempotency_key":"ORD-1001-capture-1"}"#,
    )
    .await;
    assert_eq!(
        (status.status, status.json()["error"]["field"].clone()),
        (422, "platform".into()),
        "{status:?}"
    );
    let rec = http(addr, "POST", "/v1/reconcile", Some(API_TOKEN), b"").await;
    assert_eq!((rec.status, rec.json()["unresolved"].as_u64()), (200, Some(0)), "{rec:?}");

    // Metrics: outcomes by platform, stage latencies, HTTP requests; no secret anywhere.
    let metrics = http(addr, "GET", "/metrics", Some(API_TOKEN), b"").await;
    assert_eq!(metrics.status, 200);
    for line in [
        r#"capture_captures_total{platform="optty",outcome="captured"} 2"#,
        r#"capture_captures_total{platform="optty",outcome="held"} 1"#,
        r#"capture_captures_total{platform="optty",outcome="rejected"} 1"#,
        r#"capture_failures_total{platform="optty",kind="not_found"} 1"#,
        r#"capture_stage_duration_seconds_count{platform="optty",stage="pre-validate"} 6"#,
        r#"capture_stage_duration_seconds_count{platform="optty",stage="post-capture"} 5"#,
        r#"capture_duration_seconds_count{platform="optty"} 5"#,
        r#"capture_http_requests_total{method="POST",route="/v1/captures",status="401"} 2"#,
        "capture_in_flight 0",
    ] {
        assert!(metrics.body.contains(line), "metrics lack `{line}`:\n{}", metrics.body);
    }
    for secret in [TOKEN, API_TOKEN] {
        assert!(!metrics.body.contains(secret) && !server.stderr().contains(secret), "a secret leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let dir = scratch("serve-openapi");
    let cfg = config(&dir, "http://127.0.0.1:9", None);
    let server = Server::start(&cfg, &[]);
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("crates/cli/src/openapi.json")).expect("read"),
    )
    .expect("JSON");
    let served = http(server.addr, "GET", "/v1/openapi.json", None, b"").await;
    assert_eq!(served.json(), doc, "the server serves the checked-in document");
    let paths = doc["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 8);
    for (path, ops) in paths {
        let concrete = path.replace("{platform}", "optty").replace("{key}", "k");
        for (method, op) in ops.as_object().expect("operations") {
            let method = method.to_ascii_uppercase();
            let body: &[u8] = if method == "POST" { b"{}" } else { b"" };
            let a = http(server.addr, &method, &concrete, Some(API_TOKEN), body).await;
            assert!(
                a.status != 405 && !(a.status == 404 && a.body.is_empty()),
                "{method} {path} is not routed: {a:?}"
            );
            let documented = op["responses"].as_object().expect("responses");
            assert!(
                documented.contains_key(&a.status.to_string()),
                "{method} {path} answered {} undocumented",
                a.status
            );
            // Every route but the open ones needs the token.
            let open = op.get("security").is_some_and(|s| s.as_array().is_some_and(Vec::is_empty));
            let anonymous = http(server.addr, &method, &concrete, None, body).await;
            assert_eq!(anonymous.status == 401, !open, "{method} {path}: {anonymous:?}");
        }
    }
    // And what is not documented is not served.
    assert_eq!(http(server.addr, "GET", "/v1/nothing", Some(API_TOKEN), b"").await.status, 404);
    assert_eq!(http(server.addr, "DELETE", "/v1/captures", Some(API_TOKEN), b"").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cuts_off_slow_headers_and_slow_bodies_and_answers_a_long_capture_with_504() {
    let emu = emulator().await;
    // The platform applies the capture and answers after 1.5 s.
    emu.faults().push([Fault::delay(1500)]);
    let dir = scratch("serve-timeouts");
    let cfg = config(&dir, &emu.base_url(), None);
    let server = Server::start(
        &cfg,
        &["--header-timeout-ms", "300", "--body-timeout-ms", "300", "--capture-timeout-ms", "200"],
    );
    let addr = server.addr;
    // A guard, not a measure: a server without a header timeout would hold these for ever.
    let guard = Duration::from_secs(60);

    // Slow loris: a request line and a header, never the blank line that ends the headers.
    let mut loris = tokio::net::TcpStream::connect(addr).await.expect("connect");
    loris.write_all(b"POST /v1/captures HTTP/1.1\r\nHost: capture\r\n").await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(guard, loris.read_to_end(&mut answer))
        .await
        .expect("the server cuts off a client that never finishes its headers");
    // Closed, with hyper's 408 or without an answer (a reset counts as closed too).
    let text = String::from_utf8_lossy(&answer);
    assert!(read.is_err() || answer.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    // Meanwhile the server serves everyone else.
    assert_eq!(http(addr, "GET", "/healthz", None, b"").await.status, 200);

    // A body slower than --body-timeout-ms: 408, nothing captured.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/captures HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"platform\""
    );
    slow.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(guard, slow.read_to_end(&mut answer))
        .await
        .expect("the server answers a slow body")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");

    // A capture longer than --capture-timeout-ms: 504 `in_progress`; it goes on and is recorded.
    let long = capture(addr, &sample("full-capture.json")).await;
    assert_eq!(long.status, 504, "{long:?}");
    assert_eq!(long.json()["error"]["kind"], "in_progress");
    let mut recorded = None;
    for _ in 0..1200 {
        let r = http(addr, "GET", "/v1/captures/optty/ORD-1001-capture-1", Some(API_TOKEN), b"").await;
        if r.status == 200 && r.json()["state"] == "captured" {
            recorded = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recorded = recorded.unwrap_or_else(|| panic!("never recorded; stderr: {}", server.stderr()));
    assert_eq!(recorded.json()["outcome"]["status"], "captured");
    assert_eq!(emu.captures("ORD-1001").len(), 1, "captured once");
}

#[test]
fn serve_refuses_to_start_without_a_token_unless_on_loopback_and_asked() {
    let dir = scratch("serve-no-token");
    let cfg = config(&dir, "http://127.0.0.1:9", None);
    let run = |listen: &str, extra: &[&str]| {
        Command::new(artifact("capture"))
            .args(["serve", "--listen", listen, "--token-env", TOKEN_ENV, "--config"])
            .arg(&cfg)
            .args(extra)
            .env_remove(TOKEN_ENV)
            .output()
            .expect("run capture serve")
    };
    let out = run("127.0.0.1:0", &[]);
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(TOKEN_ENV), "{out:?}");
    let out = run("0.0.0.0:0", &["--insecure-no-auth"]);
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only on a loopback address"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_capture_finishes_and_records_it_then_exits_0() {
    let emu = emulator().await;
    // The platform applies the capture and answers after 1.5 s.
    emu.faults().push([Fault::delay(1500)]);
    let dir = scratch("serve-sigterm");
    let cfg = config(&dir, &emu.base_url(), None);
    let mut server = Server::start(&cfg, &[]);
    let addr = server.addr;
    let pending = tokio::spawn(async move { capture(addr, &sample("full-capture.json")).await });
    // Wait until the capture is in flight (the server says so), then ask it to stop.
    loop {
        let m = http(addr, "GET", "/metrics", Some(API_TOKEN), b"").await;
        if m.body.contains("capture_in_flight 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("TERM");
    let answer = pending.await.expect("the client task");
    assert_eq!(answer.status, 200, "the capture in flight is answered: {answer:?}");
    assert_eq!(answer.json()["outcome"]["status"], "captured");
    let status = tokio::task::spawn_blocking(move || {
        let s = server.child.wait().expect("wait for capture serve");
        (s, server.stderr())
    })
    .await
    .expect("join");
    assert_eq!(status.0.code(), Some(0), "stderr: {}", status.1);
    assert!(status.1.contains("every capture finished and recorded"), "{}", status.1);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
    let attempts = capture_engine::store::open(&dir.join("capture.db").display().to_string())
        .await
        .expect("ledger")
        .all()
        .await
        .expect("read");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, AttemptState::Captured, "recorded before the process left");
    assert_eq!(emu.captures("ORD-1001").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_atomically_and_keeps_them_when_broken() {
    let emu = emulator().await;
    let dir = scratch("serve-sighup");
    let cfg = config(&dir, &emu.base_url(), None);
    let server = Server::start(&cfg, &[]);
    let version = |a: &Answer| a.json()["rules_version"].as_str().map(str::to_owned);
    let before = capture(server.addr, &sample("held-large-order.json")).await;
    assert_eq!(before.status, 423, "{before:?}");
    // A new rule that rejects everything, then SIGHUP.
    std::fs::write(
        dir.join("rules/zz-reject-all.lua"),
        "return { name = \"reject-all\", stage = \"pre-validate\", priority = 1,\n  decide = function(ctx) return reject(\"closed\", \"closed for the night\") end }\n",
    )
    .expect("write rule");
    server.signal("HUP");
    let reloaded = loop {
        let m = http(server.addr, "GET", "/metrics", Some(API_TOKEN), b"").await;
        if m.body.contains(r#"capture_rules_reloads_total{result="ok"} 1"#) {
            break m;
        }
        assert!(!m.body.contains(r#"result="error""#), "reload failed: {}", server.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reloaded.status == 200);
    let after = capture(server.addr, &sample("full-capture.json")).await;
    assert_eq!(after.status, 422, "{after:?}");
    assert_ne!(version(&after), version(&before), "a new rule set decided");
    // A broken rule: the reload is refused and the last good set stays.
    std::fs::write(dir.join("rules/zz-broken.lua"), "return {").expect("write rule");
    server.signal("HUP");
    loop {
        let m = http(server.addr, "GET", "/metrics", Some(API_TOKEN), b"").await;
        if m.body.contains(r#"capture_rules_reloads_total{result="error"} 1"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let still = capture(server.addr, &sample("partial-capture.json")).await;
    assert_eq!(version(&still), version(&after), "{}", server.stderr());
    assert!(emu.captures("ORD-1001").is_empty() && emu.captures("ORD-1002").is_empty());
}
