//! The cost of the C ABI: the Optty connector called through it (the real plugin file, loaded with
//! `Plugin::load` as the engine loads it: JSON in, JSON out, validated) and linked statically (the
//! same code called through the `Connector` trait, no serialisation). One iteration is what one
//! capture costs the connector: `build_capture` + `parse_capture`.
//!
//! ```text
//! cargo build --release -p capture-plugin-optty && cargo bench -p capture-engine --bench abi
//! ```
//!
//! After criterion's figures it prints a summary: both medians and the overhead in percent.

// Timings only, never money: the workspace's float ban is for amounts.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capture_connector_api::{
    CallPayment, CallShipping, CaptureCall, Connector, HttpResponse, ParseCall, SCHEMA_VERSION,
};
use capture_engine::Plugin;
use capture_plugin_optty::Optty;
use criterion::Criterion;

fn plugin_path() -> PathBuf {
    // target/release/deps/abi-* -> target/release
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

/// A typical capture: one payment, a description and shipping details.
fn call() -> CaptureCall {
    CaptureCall {
        schema: SCHEMA_VERSION,
        base_url: "http://127.0.0.1:8080".into(),
        settings: BTreeMap::new(),
        order_id: "ORD-1002".into(),
        currency: "USD".into(),
        currency_exponent: 2,
        amount: "50.10".into(),
        full: false,
        order_amount: "80.00".into(),
        surcharge: "2.50".into(),
        payments: vec![CallPayment {
            id: "pay-1002".into(),
            amount: "50.10".into(),
            authorized: "82.50".into(),
            method: Some("afterpay".into()),
        }],
        idempotency_key: "ORD-1002-capture-1".into(),
        description: Some("First parcel shipped".into()),
        shipping: Some(CallShipping {
            company: "DHL".into(),
            method: "Express".into(),
            tracking_number: "JD014600003SE".into(),
        }),
    }
}

fn response() -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
        body:
            r#"{"captureReference":"ORD-1002-capture-1","captureId":"cap_ORD-1002_1","capturedAmount":50.10}"#
                .into(),
    }
}

/// One capture's worth of connector work, linked statically.
fn linked(call: &CaptureCall, response: &HttpResponse) {
    let request = Optty.build_capture(black_box(call)).expect("builds");
    let result = Optty.parse_capture(black_box(call), black_box(response)).expect("parses");
    black_box((request, result));
}

/// The same through the C ABI, as the engine calls it: the call encoded once, the URL parsed
/// once by the host check, the parse handed the plugin's per-call context (ABI 1.2) and the answer.
fn through_abi(plugin: &Plugin, call: &CaptureCall, response: &HttpResponse) {
    let (request, url, sent) =
        plugin.build_capture_checked(black_box(call), &[]).expect("builds").into_parts();
    let result = plugin.parse_built(sent, black_box(response)).expect("parses");
    black_box((request, url, result));
}

fn bench(c: &mut Criterion, plugin: &Plugin) {
    let call = call();
    let response = response();
    let parse = ParseCall { schema: SCHEMA_VERSION, call: call.clone(), response: response.clone() };
    // Both paths give the same answers: the comparison is of the same work.
    assert_eq!(plugin.build_capture(&call).ok(), Optty.build_capture(&call).ok());
    assert_eq!(plugin.parse_capture(&parse).ok(), Optty.parse_capture(&call, &response).ok());
    let mut group = c.benchmark_group("optty build+parse per capture");
    group.bench_function("linked statically (Connector trait)", |b| b.iter(|| linked(&call, &response)));
    group.bench_function("through the C ABI (Plugin::load)", |b| {
        b.iter(|| through_abi(plugin, &call, &response))
    });
    group.finish();
}

/// Median time per iteration of `f` over `rounds` rounds of `n` iterations.
fn median_ns(rounds: usize, n: u32, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn summary(plugin: &Plugin) {
    let call = call();
    let response = response();
    let parse = ParseCall { schema: SCHEMA_VERSION, call: call.clone(), response: response.clone() };
    // Warm up both paths, then interleave their rounds so that neither gets a quieter machine.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        linked(&call, &response);
        through_abi(plugin, &call, &response);
    }
    let mut statics = Vec::new();
    let mut abis = Vec::new();
    for _ in 0..15 {
        statics.push(median_ns(1, 20_000, || linked(&call, &response)));
        abis.push(median_ns(1, 20_000, || through_abi(plugin, &call, &response)));
    }
    statics.sort_by(f64::total_cmp);
    abis.sort_by(f64::total_cmp);
    let (s, a) = (statics[statics.len() / 2], abis[abis.len() / 2]);
    println!();
    println!("ABI overhead, Optty build + parse per capture (medians of 15 x 20000 iterations):");
    println!("  linked statically : {:>8.0} ns", s);
    println!("  through the C ABI : {:>8.0} ns", a);
    println!("  overhead          : {:>8.0} ns = {:.0}% of the static figure", a - s, (a - s) / s * 100.0);

    // Where the overhead goes: the JSON each message costs on each side, measured alone.
    let request = Optty.build_capture(&call).expect("builds");
    let result = Optty.parse_capture(&call, &response).expect("parses");
    let call_json = serde_json::to_vec(&call).expect("json");
    let parse_json = serde_json::to_vec(&parse).expect("json");
    let request_json = serde_json::to_vec(&request).expect("json");
    let result_json = serde_json::to_vec(&result).expect("json");
    let parts: [(&str, f64); 9] = [
        (
            "host encodes CaptureCall",
            median_ns(9, 20_000, || drop(black_box(serde_json::to_vec(black_box(&call))))),
        ),
        (
            "plugin decodes CaptureCall",
            median_ns(9, 20_000, || {
                drop(black_box(serde_json::from_slice::<CaptureCall>(black_box(&call_json))))
            }),
        ),
        (
            "plugin encodes HttpRequest",
            median_ns(9, 20_000, || drop(black_box(serde_json::to_vec(black_box(&request))))),
        ),
        (
            "host decodes HttpRequest",
            median_ns(9, 20_000, || {
                drop(black_box(serde_json::from_slice::<capture_connector_api::HttpRequest>(black_box(
                    &request_json,
                ))))
            }),
        ),
        (
            "host checks the URL's host",
            median_ns(9, 20_000, || drop(black_box(url::Url::parse(black_box(&request.url))))),
        ),
        (
            "host encodes ParseCall",
            median_ns(9, 20_000, || drop(black_box(serde_json::to_vec(black_box(&parse))))),
        ),
        (
            "plugin decodes ParseCall",
            median_ns(9, 20_000, || {
                drop(black_box(serde_json::from_slice::<ParseCall>(black_box(&parse_json))))
            }),
        ),
        (
            "plugin encodes CaptureResult",
            median_ns(9, 20_000, || drop(black_box(serde_json::to_vec(black_box(&result))))),
        ),
        (
            "host decodes CaptureResult",
            median_ns(9, 20_000, || {
                drop(black_box(serde_json::from_slice::<capture_connector_api::CaptureResult>(black_box(
                    &result_json,
                ))))
            }),
        ),
    ];
    println!("  of which, measured alone:");
    for (what, ns) in &parts {
        println!("    {what:<30} {ns:>6.0} ns");
    }
    let total: f64 = parts.iter().map(|(_, ns)| ns).sum();
    println!(
        "    {:<30} {total:>6.0} ns ({} + {} message bytes in, {} + {} out)",
        "total",
        call_json.len(),
        parse_json.len(),
        request_json.len(),
        result_json.len()
    );
}

fn main() {
    let plugin = Plugin::load(&plugin_path()).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &plugin);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` runs each benchmark once, without it.
    if std::env::args().any(|a| a == "--bench") {
        summary(&plugin);
    }
}
