//! Secrets never leave the engine (issue 10, findings 4 and 5), whatever put them in a text:
//! canary credentials on every path (a normal capture, a 401, a platform echoing the token in a
//! 400 body in three encodings, a password in `base_url`, a status query, reconciliation, the
//! ledger file), after ActiveMerchant's scrubbing tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use capture_engine::connector_api::HttpResponse;
use capture_engine::{
    Engine, FixedClock, OutgoingRequest, PlatformSetup, Plugin, Secret, Transport, TransportError,
};

use crate::plugins::scratch;
use crate::{artifact, emulator, optty_plugin, plugin_file, repo, test_time};

/// The canary credential: characters that percent-encoding and JSON change, too.
const CANARY: &str = "CANARY/tok+en=7f3a 9c\"2e";

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() { char::from(A[((n >> shift) & 63) as usize]) } else { '=' });
        }
    }
    out
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form of the canary a text must not contain.
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("json");
    vec![secret.to_owned(), json[1..json.len() - 1].to_owned(), base64(secret.as_bytes()), percent(secret)]
}

fn assert_clean(what: &str, text: &str, secret: &str) {
    for form in forms(secret) {
        assert!(!text.contains(&form), "{what} holds the secret as `{form}`:\n{text}");
    }
}

/// A platform that answers every request with `status` and a body echoing the credential it
/// received (the header's value after `Bearer `, or the whole value), as is, base64- and
/// percent-encoded.
struct Echo {
    status: u16,
}

#[async_trait]
impl Transport for Echo {
    async fn send(&self, request: OutgoingRequest, _: Duration) -> Result<HttpResponse, TransportError> {
        let secret = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("x-auth-token"))
            .map(|(_, v)| v.trim_start_matches("Bearer ").to_owned())
            .unwrap_or_default();
        let message = format!(
            "token {secret} is not valid (base64 {}, url {})",
            base64(secret.as_bytes()),
            percent(&secret)
        );
        let body = serde_json::json!({
            "statusCode": self.status, "message": message, "title": message, "status": self.status,
        });
        Ok(HttpResponse { status: self.status, headers: Vec::new(), body: body.to_string() })
    }
}

/// An engine on `platform`'s real plugin with the canary credential, a transport and a ledger.
fn engine(
    platform: &str,
    credential: &str,
    transport: Arc<dyn Transport>,
    store: Option<Arc<dyn capture_engine::CaptureStore>>,
) -> Engine {
    let plugin = Plugin::load(&plugin_file(platform)).unwrap_or_else(|e| panic!("{e}"));
    let mut b = Engine::builder()
        .plugin(Arc::new(plugin))
        .expect("one plugin")
        .clock(Arc::new(FixedClock(test_time())))
        .transport(transport)
        .retry(capture_engine::RetryPolicy {
            max_sends: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        })
        .platform(
            platform,
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: "http://127.0.0.1:9".into(),
                timeout: Duration::from_secs(2),
                settings: BTreeMap::from([("store_hash".to_owned(), "abc123".to_owned())]),
                credentials: BTreeMap::from([(credential.to_owned(), Secret::new(CANARY))]),
            },
        );
    b = match store {
        Some(s) => b.store(s),
        None => b.without_ledger(),
    };
    b.build().unwrap_or_else(|e| panic!("{e}"))
}

fn request(platform: &str, order: &str, key: &str) -> Vec<u8> {
    serde_json::json!({
        "platform": platform, "idempotency_key": key, "amount": "full",
        "order": { "id": order, "currency": "USD", "amount": "20.00",
                   "payments": [{ "id": format!("pay-{order}"), "amount": "20.00" }] }
    })
    .to_string()
    .into_bytes()
}

/// Every file of a folder (the SQLite ledger and its journal), as text.
fn folder_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    text
}

#[tokio::test]
async fn a_secret_echoed_by_the_platform_is_scrubbed_from_the_report_and_the_ledger_file() {
    let dir = scratch("secrets-echo");
    let store: Arc<dyn capture_engine::CaptureStore> =
        Arc::new(capture_engine::store::SqliteStore::open(&dir.join("ledger.db")).expect("ledger"));
    let engine = engine("optty", "bearer_token", Arc::new(Echo { status: 400 }), Some(store.clone()));
    let report = engine.capture_json(&request("optty", "ORD-E1", "echo-1")).await.expect("valid");
    let json = report.to_json();
    // The echo went through (the body and the outcome carry the message), scrubbed.
    assert!(json.contains("token [REDACTED] is not valid (base64 [REDACTED], url [REDACTED])"), "{json}");
    assert_clean("the report", &json, CANARY);
    let attempts = store.all().await.expect("attempts");
    assert!(!attempts.is_empty());
    for a in &attempts {
        let columns = format!("{:?} {:?} {:?}", a.request, a.response, a.outcome);
        assert_clean("a ledger row", &columns, CANARY);
    }
    assert_clean("the ledger file", &folder_text(&dir), CANARY);
    assert!(folder_text(&dir).contains("[REDACTED]"), "the ledger recorded the scrubbed echo");
}

#[tokio::test]
async fn a_secret_echoed_in_a_status_answer_is_scrubbed() {
    let engine = engine("bigcommerce", "access_token", Arc::new(Echo { status: 401 }), None);
    let q = capture_engine::StatusQuery {
        platform: "bigcommerce".into(),
        order_id: "100".into(),
        currency: capture_core::Currency::from_code("USD").expect("USD"),
        payment_ids: vec![],
        idempotency_key: None,
        platform_capture_id: None,
    };
    let report = engine.status(&q).await.expect("a status report");
    let json = report.to_json();
    assert!(json.contains("[REDACTED]"), "{json}");
    assert_clean("the status report", &json, CANARY);
}

/// A transport that never answers in time: the outcome is unknown.
struct Silent;

#[async_trait]
impl Transport for Silent {
    async fn send(&self, _: OutgoingRequest, timeout: Duration) -> Result<HttpResponse, TransportError> {
        Err(TransportError::Timeout(u64::try_from(timeout.as_millis()).unwrap_or(0)))
    }
}

#[tokio::test]
async fn a_secret_echoed_while_reconciling_is_scrubbed_from_the_details_and_the_ledger() {
    let dir = scratch("secrets-reconcile");
    let store: Arc<dyn capture_engine::CaptureStore> =
        Arc::new(capture_engine::store::SqliteStore::open(&dir.join("ledger.db")).expect("ledger"));
    let first = engine("optty", "bearer_token", Arc::new(Silent), Some(store.clone()));
    let report = first.capture_json(&request("optty", "ORD-R1", "reconcile-1")).await.expect("valid");
    assert_eq!(report.outcome.status(), "failed", "{}", report.to_json());
    let later = engine("optty", "bearer_token", Arc::new(Echo { status: 400 }), Some(store.clone()));
    let done = later.reconcile(Some(Duration::from_secs(0))).await.expect("reconcile");
    assert!(!done.is_empty(), "the unknown attempt is examined");
    let details: Vec<&str> = done.iter().map(|r| r.detail.as_str()).collect();
    let text = details.join("\n");
    assert!(text.contains("[REDACTED]"), "the echo reached the details: {text}");
    assert_clean("the reconciliation details", &text, CANARY);
    assert_clean("the ledger file", &folder_text(&dir), CANARY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_and_a_normal_capture_leave_no_trace_of_the_token() {
    let emu = emulator().await;
    // In a separate process: report, standard error and ledger file, for a 401 (the canary is
    // the wrong token) and a normal capture (the right one).
    for (name, token, code) in [("secrets-401", CANARY, 6), ("secrets-normal", crate::TOKEN, 0)] {
        let dir = scratch(name);
        let cfg = format!(
            "plugins = [{:?}]\n[platforms.optty]\nbase_url = {:?}\ncredentials = {{ bearer_token = {{ env = \"CAPTURE_E2E_CANARY\" }} }}\n",
            optty_plugin().display().to_string(),
            emu.base_url()
        );
        std::fs::write(dir.join("capture.toml"), cfg).expect("config");
        let out = Command::new(artifact("capture"))
            .args(["run", "--config"])
            .arg(dir.join("capture.toml"))
            .arg(repo().join("examples/requests/full-capture.json"))
            .env("CAPTURE_E2E_CANARY", token)
            .output()
            .expect("run");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{name}: {stderr}");
        assert_clean(&format!("{name}: the report"), &stdout, token);
        assert_clean(&format!("{name}: standard error"), &stderr, token);
        assert_clean(&format!("{name}: the ledger file"), &folder_text(&dir), token);
        assert!(stdout.contains("Bearer [REDACTED]"), "{name}: {stdout}");
    }
}

#[test]
fn a_password_in_base_url_is_refused_without_repeating_it() {
    let cfg = capture_engine::EngineConfig::parse(
        "[platforms.optty]\nbase_url = \"http://user:CANARY-PASS@127.0.0.1:9\"\n",
    )
    .expect("valid TOML");
    let err = cfg.check().expect_err("userinfo is refused");
    let text = err.to_string();
    assert!(text.contains("`platforms.optty.base_url`"), "{text}");
    assert!(
        text.contains("credentials never go in the URL: put them in the platform's `credentials` table"),
        "{text}"
    );
    assert!(!text.contains("CANARY-PASS"), "{text}");
    // And for a host that builds the engine itself.
    let plugin = Plugin::load(&optty_plugin()).expect("loads");
    let err = Engine::builder()
        .without_ledger()
        .plugin(Arc::new(plugin))
        .expect("one plugin")
        .platform(
            "optty",
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: "http://user:CANARY-PASS@127.0.0.1:9".into(),
                timeout: Duration::from_secs(1),
                settings: BTreeMap::new(),
                credentials: BTreeMap::from([("bearer_token".to_owned(), Secret::new("x-token"))]),
            },
        )
        .build()
        .expect_err("userinfo is refused");
    let text = err.to_string();
    assert!(text.contains("credentials never go in the URL") && !text.contains("CANARY-PASS"), "{text}");
}
