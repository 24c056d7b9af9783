//! The whole pipeline on one core: built-in checks, 10 Lua rules, the Optty connector called
//! through the C ABI (the real plugin loaded from disk), and a canned in-process HTTP answer
//! (no sockets), so the figure is the engine's own cost per capture. Beside it, the same capture
//! with the SQLite ledger (in memory: the store's work without the disk's fsync; every iteration
//! a new order and key) and over a real loopback socket (a fake Optty on its own thread, the
//! engine's HTTP client; no ledger), so what the ledger and the socket add shows side by side.
//!
//! ```text
//! cargo build --release -p capture-plugin-optty && cargo bench -p capture-engine --bench pipeline
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use capture_connector_api::HttpResponse;
use capture_core::{CaptureRequest, Outcome, Timestamp};
use capture_engine::{
    Engine, FixedClock, OutgoingRequest, PlatformSetup, Plugin, RuleLimits, RuleSet, Secret, Transport,
    TransportError,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Answers every request with Optty's documented 200 body, in memory.
struct Canned;

#[async_trait]
impl Transport for Canned {
    async fn send(
        &self,
        _request: OutgoingRequest,
        _timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"captureReference":"bench-1","capturedAmount":100.10,"captureId":"cap_bench_1"}"#
                .into(),
        })
    }
}

fn plugin_path() -> PathBuf {
    // target/release/deps/pipeline-* -> target/release
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

/// Ten simple rules of the kind merchants write: thresholds, metadata flags, currency checks.
fn ten_rules() -> RuleSet {
    let sources = (0..10)
        .map(|i| {
            let body = match i % 5 {
                0 => format!("if ctx.amount.minor > capture.minor(\"{}000.00\") then return hold(\"large\") end", 5 + i),
                1 => "if ctx.metadata.blocked == true then return reject(\"blocked\", \"customer blocked\") end".to_owned(),
                2 => "if ctx.currency.code ~= \"USD\" and ctx.currency.code ~= \"EUR\" then return hold(\"currency\") end".to_owned(),
                3 => "if #ctx.order.payments > 3 then return hold(\"many payments\") end".to_owned(),
                _ => "if ctx.shipping == nil and ctx.metadata.requires_shipping == true then return reject(\"no_tracking\", \"no tracking\") end".to_owned(),
            };
            let src = format!(
                "return {{ name = \"rule-{i:02}\", stage = \"pre-validate\", priority = {i},\n  decide = function(ctx)\n    {body}\n    return allow()\n  end }}\n"
            );
            (format!("rule_{i:02}.lua"), src)
        })
        .collect();
    RuleSet::from_sources(sources, RuleLimits::default()).expect("bench rules load")
}

fn bench(c: &mut Criterion) {
    let plugin = Plugin::load(&plugin_path()).expect("plugin loads");
    let engine = Engine::builder()
        .without_ledger()
        .plugin(Arc::new(plugin))
        .expect("plugin")
        .rules(ten_rules())
        .transport(Arc::new(Canned))
        .clock(Arc::new(FixedClock(Timestamp(1_790_000_000_000))))
        .platform(
            "optty",
            PlatformSetup {
                allowed_hosts: Vec::new(),
                base_url: "http://127.0.0.1:9".into(),
                timeout: Duration::from_secs(10),
                settings: BTreeMap::new(),
                credentials: BTreeMap::from([("bearer_token".into(), Secret::new("bench-token"))]),
            },
        )
        .build()
        .expect("engine");
    let request = CaptureRequest::from_json(
        br#"{"platform":"optty","idempotency_key":"bench-1","amount":"100.10",
             "description":"bench","metadata":{"requires_shipping":false},
             "order":{"id":"ORD-B1","currency":"USD","amount":"120.00",
                      "payments":[{"id":"pay-b1","amount":"120.00","method":"afterpay","partial_capture":true}]}}"#,
    )
    .expect("valid request");
    // One core: a current-thread runtime, nothing else scheduled.
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let check = rt.block_on(engine.capture(request.clone())).expect("captures");
    assert!(matches!(check.outcome, Outcome::Captured { .. }), "{:?}", check.outcome);
    assert_eq!(check.steps.iter().filter(|s| s.source == capture_core::StepSource::Rule).count(), 10);

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("optty_abi_10_rules_canned_http", |b| {
        b.iter(|| rt.block_on(engine.capture(std::hint::black_box(request.clone()))).expect("captures"))
    });

    // The parts, to see where a capture's time goes.
    let rules = ten_rules();
    let amount = capture_core::Money::parse("100.10", request.order.currency).expect("amount");
    let ctx = capture_rules::RuleContext {
        request: &request,
        amount,
        capturable: amount,
        now: Timestamp(1_790_000_000_000),
    };
    group.bench_function("rules_stage_10_rules", |b| b.iter(|| rules.decide(std::hint::black_box(&ctx))));

    let plugin = Plugin::load(&plugin_path()).expect("plugin loads");
    let call = capture_connector_api::CaptureCall {
        schema: capture_connector_api::SCHEMA_VERSION,
        base_url: "http://127.0.0.1:9".into(),
        settings: BTreeMap::new(),
        order_id: "ORD-B1".into(),
        currency: "USD".into(),
        currency_exponent: 2,
        amount: "100.10".into(),
        full: false,
        order_amount: "120.00".into(),
        surcharge: "0.00".into(),
        payments: vec![],
        idempotency_key: "bench-1".into(),
        description: Some("bench".into()),
        shipping: None,
    };
    let answer = rt.block_on(Canned.send(
        OutgoingRequest { method: "POST".into(), url: String::new(), headers: vec![], body: None },
        Duration::from_secs(1),
    ));
    let parse = capture_connector_api::ParseCall {
        schema: capture_connector_api::SCHEMA_VERSION,
        call: call.clone(),
        response: answer.expect("canned"),
    };
    group.bench_function("connector_abi_build_and_parse", |b| {
        b.iter(|| {
            let req = plugin.build_capture(std::hint::black_box(&call)).expect("build");
            let res = plugin.parse_capture(std::hint::black_box(&parse)).expect("parse");
            (req, res)
        })
    });

    // With the ledger: every iteration a new order and key (a replay would not capture).
    let ledger = Engine::builder()
        .store(Arc::new(capture_engine::store::SqliteStore::in_memory().expect("ledger")))
        .merchant("bench")
        .plugin(Arc::new(Plugin::load(&plugin_path()).expect("plugin loads")))
        .expect("plugin")
        .rules(ten_rules())
        .transport(Arc::new(Canned))
        .platform("optty", optty_setup("http://127.0.0.1:9"))
        .build()
        .expect("engine");
    let mut n = 0u64;
    let mut fresh = || {
        n += 1;
        let mut r = request.clone();
        r.idempotency_key = format!("bench-ledger-{n}");
        r.order.id = format!("ORD-L{n}");
        r
    };
    let check = rt.block_on(ledger.capture(fresh())).expect("captures");
    assert!(matches!(check.outcome, Outcome::Captured { .. }), "{:?}", check.outcome);
    group.bench_function("optty_abi_10_rules_canned_http_sqlite_ledger_in_memory", |b| {
        b.iter(|| rt.block_on(ledger.capture(std::hint::black_box(fresh()))).expect("captures"))
    });

    // Over a real loopback socket, no ledger.
    let socket = Engine::builder()
        .without_ledger()
        .plugin(Arc::new(Plugin::load(&plugin_path()).expect("plugin loads")))
        .expect("plugin")
        .rules(ten_rules())
        .platform("optty", optty_setup(&format!("http://{}", fake_platform())))
        .build()
        .expect("engine");
    // Sockets and timeouts need tokio's IO and time drivers (the runtime above has none).
    let net = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let check = net.block_on(socket.capture(request.clone())).expect("captures");
    assert!(matches!(check.outcome, Outcome::Captured { .. }), "{:?}", check.outcome);
    group.bench_function("optty_abi_10_rules_loopback_http", |b| {
        b.iter(|| net.block_on(socket.capture(std::hint::black_box(request.clone()))).expect("captures"))
    });
    group.finish();
}

fn optty_setup(base_url: &str) -> PlatformSetup {
    PlatformSetup {
        allowed_hosts: Vec::new(),
        base_url: base_url.into(),
        timeout: Duration::from_secs(10),
        settings: BTreeMap::new(),
        credentials: BTreeMap::from([("bearer_token".into(), Secret::new("bench-token"))]),
    }
}

/// Optty's answer to any capture, from a fake platform on a loopback socket (its own thread).
fn fake_platform() -> std::net::SocketAddr {
    async fn capture(body: String) -> String {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        serde_json::json!({
            "captureReference": v["captureReference"],
            "capturedAmount": v["amount"],
            "captureId": "cap_bench_1",
        })
        .to_string()
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route("/orders/{order}/capture", axum::routing::post(capture));
            axum::serve(listener, app).await.expect("fake platform");
        });
    });
    addr
}

criterion_group!(benches, bench);
criterion_main!(benches);
