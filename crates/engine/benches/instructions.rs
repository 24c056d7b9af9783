//! Instructions per capture under callgrind, each path beside its reference: counts that stay
//! stable on a shared, noisy machine where times vary by ±40%.
//!
//! ```text
//! cargo build --release -p capture-plugin-optty && cargo bench -p capture-engine --bench instructions
//! ```
//!
//! (`.ci/instructions` runs exactly that.) Without `--bench` (as `cargo test --benches` runs it)
//! every case runs a few times as a smoke test, without valgrind.
//!
//! How a figure is made: this binary runs itself under `valgrind --tool=callgrind` once per case
//! and iteration count, `--run CASE N`: the case is set up (engine, plugin, Lua, ledger), warmed up
//! by a few iterations, then runs `N` more. Each case runs twice, with `N1` and `N2` iterations;
//! `(instructions(N2) - instructions(N1)) / (N2 - N1)` is the count per iteration, the set-up and
//! the process start cancelling out. Instructions of every thread are counted (the plugin's
//! calls run on its worker thread).
//!
//! The cases, each beside its reference:
//! - `pipeline`: what `benches/pipeline.rs` does (pre-parsed request, built-in checks, 10 Lua
//!   rules, Optty through the C ABI from the real `.so` on disk, canned HTTP answer, no ledger),
//!   against `baseline`: a hand-written Rust capture doing the same work (same request, same
//!   checks, the 10 rules as Rust closures, the same Optty request body and headers built, the
//!   URL checked against the platform's origin, the secret added, the same answer parsed into an
//!   outcome, a report of the 14 steps). `pipeline_json` / `baseline_json`: the same from the
//!   request's JSON bytes.
//! - `rules`: `RuleSet::decide` with the same 10 rules, against `bare_mlua`: mlua running the
//!   same 10 rule sources with one context table built once and reused.
//! - `abi`: Optty `build_capture` + `parse_capture` through the C ABI (`Plugin::load_with`, the
//!   hand-off to the worker thread without its spin, which callgrind would count as work), as the
//!   engine calls them, against `linked`: the same connector linked statically (the `Connector`
//!   trait). `abi_floor`: the least a binary ABI could cost, linked statically plus the copies
//!   such an ABI cannot avoid and the host's URL check (see the case).
//! - `ledger`: `reserve` + transition to sent + transition to captured on a SQLite store on a
//!   file (WAL, `synchronous=FULL`, as in production), against `bare_sqlite`: the same three
//!   transactions (an order row and an attempt row inserted, then each updated twice) with
//!   prepared statements on bare rusqlite, on a file in the same mode. (An fsync counts as one
//!   system call here: these are the CPU's instructions, not the disk's time.)
//!
//! Environment: `CAPTURE_INSTR_CASES=pipeline,abi` runs only those (with their references);
//! `CAPTURE_INSTR_N1` / `CAPTURE_INSTR_N2` change the iteration counts (default 50 / 250).

// Ratios of instruction counts for the printout, never money: the float ban is for amounts.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use capture_connector_api::{
    CallPayment, CallShipping, CaptureCall, Connector, HttpResponse, ParseCall, SCHEMA_VERSION,
};
use capture_core::{CaptureRequest, Money, Outcome, Timestamp};
use capture_engine::{
    Engine, FixedClock, LoadOptions, OutgoingRequest, PlatformSetup, Plugin, RuleLimits, RuleSet, Secret,
    Transport, TransportError,
};

const NOW: Timestamp = Timestamp(1_790_000_000_000);

const REQUEST: &[u8] = br#"{"platform":"optty","idempotency_key":"bench-1","amount":"100.10",
     "description":"bench","metadata":{"requires_shipping":false},
     "order":{"id":"ORD-B1","currency":"USD","amount":"120.00",
              "payments":[{"id":"pay-b1","amount":"120.00","method":"afterpay","partial_capture":true}]}}"#;

const ANSWER: &str = r#"{"captureReference":"bench-1","capturedAmount":100.10,"captureId":"cap_bench_1"}"#;

/// Answers every request with Optty's documented 200 body, in memory.
struct Canned;

#[async_trait]
impl Transport for Canned {
    async fn send(
        &self,
        _request: OutgoingRequest,
        _timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        Ok(canned())
    }
}

fn canned() -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: ANSWER.into(),
    }
}

fn plugin_path() -> PathBuf {
    // target/release/deps/instructions-* -> target/release
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

/// The ten rule sources of `benches/pipeline.rs`: thresholds, metadata flags, currency checks.
fn rule_sources() -> Vec<(String, String)> {
    (0..10)
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
        .collect()
}

fn ten_rules() -> RuleSet {
    RuleSet::from_sources(rule_sources(), RuleLimits::default()).expect("bench rules load")
}

fn request() -> CaptureRequest {
    CaptureRequest::from_json(REQUEST).expect("valid request")
}

/// The plugin as the engine loads it, but with no spin in the hand-off to its worker thread:
/// under callgrind (threads serialised) a spinning caller polls until valgrind switches threads,
/// and those polls, waiting rather than work, were about 8k instructions per capture.
fn plugin() -> Plugin {
    Plugin::load_with(&plugin_path(), &LoadOptions::default().spin(Duration::ZERO)).expect("plugin loads")
}

fn engine() -> Engine {
    let plugin = plugin();
    Engine::builder()
        .without_ledger()
        .plugin(Arc::new(plugin))
        .expect("plugin")
        .rules(ten_rules())
        .transport(Arc::new(Canned))
        .clock(Arc::new(FixedClock(NOW)))
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
        .expect("engine")
}

/// The hand-written capture: the pipeline's work for this request, in plain Rust.
mod baseline {
    use capture_core::{CaptureRequest, Currency, Decision, ExactDecimal, MetadataValue, Money, Outcome};
    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    /// What the baseline reports: the capture id, each step's name and verdict, the outcome.
    #[derive(Debug)]
    pub struct Report {
        pub capture_id: String,
        pub steps: Vec<(&'static str, &'static str)>,
        pub outcome: Outcome,
        pub request: Sent,
    }

    /// The request as it would leave: method, URL, headers with the secret added, body.
    #[derive(Debug)]
    pub struct Sent {
        pub url: String,
        pub headers: Vec<(&'static str, String)>,
        pub body: String,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct CaptureBody<'a> {
        capture_reference: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
        amount: serde_json::Number,
        #[serde(skip_serializing_if = "Option::is_none")]
        shipping_info: Option<ShippingInfo<'a>>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ShippingInfo<'a> {
        shipping_company: &'a str,
        shipping_method: &'a str,
        tracking_number: &'a str,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SuccessBody {
        capture_reference: Option<serde_json::Value>,
        capture_id: Option<serde_json::Value>,
        captured_amount: Option<ExactDecimal>,
    }

    type Rule = fn(&CaptureRequest, Money) -> Decision;

    fn meta_true(req: &CaptureRequest, key: &str) -> bool {
        matches!(req.metadata.get(key), Some(MetadataValue::Bool(true)))
    }

    /// The ten rules of the bench, as closures.
    pub fn rules() -> Vec<(&'static str, Rule)> {
        fn threshold(i: i64) -> impl Fn(&CaptureRequest, Money) -> Decision {
            move |_, amount| {
                let limit = Money::from_minor((5 + i) * 100_000, amount.currency());
                if amount > limit { Decision::Hold { reason: "large".into() } } else { Decision::Allow }
            }
        }
        let blocked: Rule = |req, _| {
            if meta_true(req, "blocked") {
                Decision::Reject { code: "blocked".into(), reason: "customer blocked".into() }
            } else {
                Decision::Allow
            }
        };
        let currency: Rule = |req, _| {
            let code = req.order.currency.code();
            if code != "USD" && code != "EUR" {
                Decision::Hold { reason: "currency".into() }
            } else {
                Decision::Allow
            }
        };
        let payments: Rule = |req, _| {
            if req.order.payments.len() > 3 {
                Decision::Hold { reason: "many payments".into() }
            } else {
                Decision::Allow
            }
        };
        let shipping: Rule = |req, _| {
            if req.shipping.is_none() && meta_true(req, "requires_shipping") {
                Decision::Reject { code: "no_tracking".into(), reason: "no tracking".into() }
            } else {
                Decision::Allow
            }
        };
        let t0: Rule = |r, a| threshold(0)(r, a);
        let t5: Rule = |r, a| threshold(5)(r, a);
        vec![
            ("rule-00", t0),
            ("rule-01", blocked),
            ("rule-02", currency),
            ("rule-03", payments),
            ("rule-04", shipping),
            ("rule-05", t5),
            ("rule-06", blocked),
            ("rule-07", currency),
            ("rule-08", payments),
            ("rule-09", shipping),
        ]
    }

    fn hex16(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(20);
        s.push_str("cap_");
        for b in &bytes[..8] {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        s
    }

    /// One capture: id, built-in checks, rules, the Optty request, the answer read.
    pub fn capture(
        req: &CaptureRequest,
        rules: &[(&'static str, Rule)],
        base_url: &str,
        token: &str,
        answer: &dyn Fn() -> (u16, String),
    ) -> Report {
        let mut h = Sha256::new();
        for part in [&req.platform, &req.order.id, &req.idempotency_key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let capture_id = hex16(&h.finalize());
        let mut steps = Vec::with_capacity(16);
        let cur = req.order.currency;
        let capturable = req.order.capturable().unwrap_or_else(|_| Money::zero(cur));
        let amount = match req.amount {
            capture_core::RequestedAmount::Full => capturable,
            capture_core::RequestedAmount::Exact(m) => m,
        };
        // Built-in checks: currency exponent, bounds, partial capture, payments per call.
        let refuse = |steps, why: &str| Report {
            capture_id: capture_id.clone(),
            steps,
            outcome: Outcome::Rejected { by: "builtin".into(), code: why.into(), reason: why.into() },
            request: Sent { url: String::new(), headers: Vec::new(), body: String::new() },
        };
        if cur.exponent() > 2 {
            return refuse(steps, "unsupported_currency");
        }
        steps.push(("currency", "allow"));
        if amount.currency() != cur || amount.is_negative() || amount.is_zero() || amount > capturable {
            return refuse(steps, "bounds");
        }
        steps.push(("bounds", "allow"));
        // The payments the amount is taken from, each up to what it still allows.
        let mut left = amount;
        let mut targets = Vec::with_capacity(1);
        for p in &req.order.payments {
            if left.is_zero() {
                break;
            }
            let room = req.order.payment_capturable(p).unwrap_or(p.amount);
            if room.is_zero() {
                continue;
            }
            let take = if room < left { room } else { left };
            targets.push((p, take));
            left = left.checked_sub(take).unwrap_or(left);
        }
        if amount < capturable && targets.iter().any(|(p, _)| p.partial_capture == Some(false)) {
            return refuse(steps, "partial_capture_unsupported");
        }
        steps.push(("partial_capture", "allow"));
        if targets.len() > 1 {
            return refuse(steps, "too_many_payments");
        }
        steps.push(("payments", "allow"));
        for (name, rule) in rules {
            let d = rule(req, amount);
            if d != Decision::Allow {
                return refuse(steps, name);
            }
            steps.push((name, "allow"));
        }
        // The Optty request.
        if Currency::from_code(cur.code()).is_err() || req.idempotency_key.is_empty() {
            return refuse(steps, "invalid_call");
        }
        let number: serde_json::Number = amount.to_decimal_string().parse().expect("a JSON number");
        let body = serde_json::to_string(&CaptureBody {
            capture_reference: &req.idempotency_key,
            description: req.description.as_deref(),
            amount: number,
            shipping_info: req.shipping.as_ref().map(|s| ShippingInfo {
                shipping_company: &s.company,
                shipping_method: &s.method,
                tracking_number: &s.tracking_number,
            }),
        })
        .expect("body");
        let segment = capture_connector_api::encode_path_segment(&req.order.id).expect("order id");
        let url = format!("{}/orders/{segment}/capture", base_url.trim_end_matches('/'));
        if !url.starts_with(base_url) || url.bytes().any(|b| b <= b' ' || b == b'\\') {
            return refuse(steps, "url");
        }
        let headers = vec![
            ("Accept", "application/json".to_owned()),
            ("Content-Type", "application/json".to_owned()),
            ("Authorization", format!("Bearer {token}")),
        ];
        steps.push(("optty.build_capture", "built"));
        // The answer.
        let (status, text) = answer();
        let outcome = if status == 200 || status == 201 {
            match serde_json::from_str::<SuccessBody>(&text) {
                Ok(b) => {
                    let captured =
                        b.captured_amount.and_then(|d| Money::new(d.0, cur).ok()).unwrap_or(amount);
                    let id = b.capture_id.or(b.capture_reference).map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    });
                    Outcome::Captured { amount: captured, platform_capture_id: id }
                }
                Err(_) => Outcome::Failed {
                    kind: capture_core::FailureKind::OutcomeUnknown,
                    retryable: false,
                    platform_code: Some(status.to_string()),
                    message: "unreadable success body".into(),
                    retry_after_ms: None,
                },
            }
        } else {
            Outcome::Failed {
                kind: capture_core::FailureKind::Unknown,
                retryable: false,
                platform_code: Some(status.to_string()),
                message: text,
                retry_after_ms: None,
            }
        };
        steps.push(("optty.parse_capture", "captured"));
        Report { capture_id, steps, outcome, request: Sent { url, headers, body } }
    }
}

/// The bare mlua reference: the same rule sources in one plain Lua state, one context table built
/// once and reused, each rule's `decide` called per capture.
struct BareLua {
    _lua: mlua::Lua,
    ctx: mlua::Table,
    allow: mlua::Table,
    decide: Vec<mlua::Function>,
}

impl BareLua {
    fn new() -> BareLua {
        let lua = mlua::Lua::new();
        lua.load(
            r#"
            capture = { minor = function(s)
                local whole, frac = string.match(s, "^(%d+)%.(%d%d)$")
                return tonumber(whole) * 100 + tonumber(frac)
            end }
            local ALLOW = { decision = "allow" }
            function allow() return ALLOW end
            function hold(reason) return { decision = "hold", reason = reason } end
            function reject(code, reason) return { decision = "reject", code = code, reason = reason } end
            "#,
        )
        .exec()
        .expect("prelude");
        let decide = rule_sources()
            .into_iter()
            .map(|(name, src)| {
                let rule: mlua::Table = lua.load(src).set_name(name).eval().expect("rule");
                rule.get::<mlua::Function>("decide").expect("decide")
            })
            .collect();
        let ctx: mlua::Table = lua
            .load(
                r#"return {
                    amount = { minor = 10010, currency = "USD", text = "100.10" },
                    capturable = { minor = 12000, currency = "USD", text = "120.00" },
                    currency = { code = "USD", exponent = 2 },
                    metadata = { requires_shipping = false },
                    order = { id = "ORD-B1", payments = { { id = "pay-b1", method = "afterpay" } } },
                    idempotency_key = "bench-1",
                    description = "bench",
                }"#,
            )
            .eval()
            .expect("ctx");
        let allow: mlua::Table = lua.load("return allow()").eval().expect("allow");
        BareLua { _lua: lua, ctx, allow, decide }
    }

    fn run(&self) -> usize {
        let mut allowed = 0;
        for f in &self.decide {
            let v: mlua::Table = f.call(&self.ctx).expect("decide");
            if v == self.allow {
                allowed += 1;
            }
        }
        allowed
    }
}

/// The ABI case's call (as `benches/abi.rs`): one payment, a description and shipping details.
fn abi_call() -> CaptureCall {
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

fn abi_response() -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
        body:
            r#"{"captureReference":"ORD-1002-capture-1","captureId":"cap_ORD-1002_1","capturedAmount":50.10}"#
                .into(),
    }
}

mod ledger {
    use capture_core::{Currency, Money, Timestamp};
    use capture_store::{AttemptState, AttemptUpdate, Authorization, CaptureStore, NewAttempt, Reservation};

    pub const REQUEST: &str =
        r#"{"method":"POST","url":"https://sandbox/captures","body":{"amount":"100.10"}}"#;
    pub const RESPONSE: &str = r#"{"status":200,"body":{"captureId":"pc"}}"#;
    pub const OUTCOME: &str = r#"{"status":"captured","amount":{"amount":"100.10","currency":"USD"}}"#;

    /// Records capture `n` on a new order: reserve, sent, captured (as `capture-store`'s bench).
    pub async fn record(store: &dyn CaptureStore, n: u64) {
        let usd = Currency::from_code("USD").expect("USD");
        let amount = Money::from_minor(10_010, usd);
        let order = format!("ord-{n}");
        let payments = vec![(format!("pay-{n}"), amount)];
        let new = NewAttempt {
            id: format!("cap-{n}"),
            merchant: "bench".into(),
            platform: "optty".into(),
            idempotency_key: format!("key-{n}"),
            fingerprint: capture_store::fingerprint("optty", &order, &amount, &payments),
            order_id: order,
            payment_ids: vec![payments[0].0.clone()],
            amount,
            authorization: Authorization::from_payments(payments.clone(), usd),
            external: Money::zero(usd),
            owner: "bench".into(),
            lease_ms: 30_000,
            now: Timestamp(1_790_000_000_000 + n),
        };
        let Reservation::Reserved(a) = store.reserve(&new).await.expect("reserve") else {
            panic!("not reserved")
        };
        let fence = a.fence().expect("the reserving owner holds the lease");
        let sent = AttemptUpdate { request: Some(REQUEST.into()), count_send: true, ..Default::default() };
        store
            .transition(&a.id, &fence, &[AttemptState::Reserved], AttemptState::Sent, sent, new.now)
            .await
            .expect("sent");
        let done = AttemptUpdate {
            platform_capture_id: Some(format!("pc-{n}")),
            response: Some(RESPONSE.into()),
            outcome: Some(OUTCOME.into()),
            ..Default::default()
        };
        store
            .transition(&a.id, &fence, &[AttemptState::Sent], AttemptState::Captured, done, new.now)
            .await
            .expect("captured");
    }

    /// The same three transactions on bare rusqlite: an order and an attempt inserted, then the
    /// attempt updated to sent and to captured, each with its order row, prepared statements.
    pub struct Bare(rusqlite::Connection);

    impl Bare {
        pub fn new(path: &std::path::Path) -> Bare {
            let c = rusqlite::Connection::open(path).expect("sqlite");
            let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).expect("WAL");
            assert_eq!(mode, "wal");
            c.pragma_update(None, "synchronous", "FULL").expect("pragma");
            c.execute_batch(
                "CREATE TABLE orders (merchant TEXT NOT NULL, platform TEXT NOT NULL, order_id TEXT NOT NULL,
                    currency TEXT NOT NULL, authorized_minor INTEGER NOT NULL, payments TEXT NOT NULL,
                    held_minor INTEGER NOT NULL, in_flight TEXT, updated_at INTEGER NOT NULL,
                    PRIMARY KEY (merchant, platform, order_id));
                 CREATE TABLE attempts (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                    merchant TEXT NOT NULL, platform TEXT NOT NULL, idempotency_key TEXT NOT NULL,
                    fingerprint TEXT NOT NULL, order_id TEXT NOT NULL, payment_ids TEXT NOT NULL,
                    amount_minor INTEGER NOT NULL, currency TEXT NOT NULL, state TEXT NOT NULL,
                    platform_capture_id TEXT, request TEXT, response TEXT, outcome TEXT,
                    sends INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_token INTEGER NOT NULL,
                    lease_until INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                    UNIQUE (merchant, platform, idempotency_key));",
            )
            .expect("schema");
            Bare(c)
        }

        pub fn record(&mut self, n: u64) {
            let order = format!("ord-{n}");
            let id = format!("cap-{n}");
            let now = 1_790_000_000_000 + i64::try_from(n).unwrap_or(0);
            let tx = self.0.transaction().expect("tx");
            tx.prepare_cached(
                "INSERT INTO orders VALUES ('bench', 'optty', ?1, 'USD', 10010, ?2, 10010, ?3, ?4)",
            )
            .expect("prepare")
            .execute(rusqlite::params![order, format!("[[\"pay-{n}\",10010]]"), id, now])
            .expect("order");
            tx.prepare_cached(
                "INSERT INTO attempts (id, merchant, platform, idempotency_key, fingerprint, order_id,
                    payment_ids, amount_minor, currency, state, lease_owner, lease_token, lease_until, updated_at)
                 VALUES (?1, 'bench', 'optty', ?2, ?3, ?4, ?5, 10010, 'USD', 'reserved', 'bench', 1, ?6, ?6)",
            )
            .expect("prepare")
            .execute(rusqlite::params![
                id,
                format!("key-{n}"),
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                order,
                format!("[\"pay-{n}\"]"),
                now
            ])
            .expect("attempt");
            tx.commit().expect("commit");
            for (from, to, request, response, outcome) in [
                ("reserved", "sent", Some(REQUEST), None, None),
                ("captured_from_sent", "captured", None, Some(RESPONSE), Some(OUTCOME)),
            ] {
                let from = if from == "captured_from_sent" { "sent" } else { from };
                let tx = self.0.transaction().expect("tx");
                let changed = tx
                    .prepare_cached(
                        "UPDATE attempts SET state = ?3, request = COALESCE(?4, request),
                            response = COALESCE(?5, response), outcome = COALESCE(?6, outcome),
                            platform_capture_id = COALESCE(?7, platform_capture_id),
                            sends = sends + (?3 = 'sent'), updated_at = ?8
                         WHERE id = ?1 AND state = ?2 AND lease_token = 1",
                    )
                    .expect("prepare")
                    .execute(rusqlite::params![
                        id,
                        from,
                        to,
                        request,
                        response,
                        outcome,
                        (to == "captured").then(|| format!("pc-{n}")),
                        now
                    ])
                    .expect("update");
                assert_eq!(changed, 1);
                tx.prepare_cached(
                    "UPDATE orders SET in_flight = CASE WHEN ?2 = 'captured' THEN NULL ELSE in_flight END,
                        updated_at = ?3 WHERE merchant = 'bench' AND platform = 'optty' AND order_id = ?1",
                )
                .expect("prepare")
                .execute(rusqlite::params![order, to, now])
                .expect("order update");
                tx.commit().expect("commit");
            }
        }
    }
}

/// Sets up `case` and returns one iteration of it.
fn setup(case: &str) -> Box<dyn FnMut()> {
    let rt = || tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match case {
        "pipeline" | "pipeline_json" => {
            let engine = engine();
            let rt = rt();
            let request = request();
            let check = rt.block_on(engine.capture(request.clone())).expect("captures");
            assert!(matches!(check.outcome, Outcome::Captured { .. }), "{:?}", check.outcome);
            assert_eq!(check.steps.iter().filter(|s| s.source == capture_core::StepSource::Rule).count(), 10);
            if case == "pipeline" {
                Box::new(move || {
                    black_box(rt.block_on(engine.capture(black_box(request.clone()))).expect("captures"));
                })
            } else {
                Box::new(move || {
                    black_box(rt.block_on(engine.capture_json(black_box(REQUEST))).expect("captures"));
                })
            }
        }
        "baseline" | "baseline_json" => {
            let rules = baseline::rules();
            let request = request();
            let answer = || (200u16, canned().body);
            let r = baseline::capture(&request, &rules, "http://127.0.0.1:9", "bench-token", &answer);
            assert!(matches!(r.outcome, Outcome::Captured { .. }), "{r:?}");
            assert_eq!(r.steps.len(), 16, "{r:?}");
            assert!(r.capture_id.starts_with("cap_") && r.capture_id.len() == 20, "{r:?}");
            assert_eq!(r.request.url, "http://127.0.0.1:9/orders/ORD-B1/capture");
            assert_eq!(r.request.headers.len(), 3);
            assert_eq!(
                r.request.body,
                r#"{"captureReference":"bench-1","description":"bench","amount":100.10}"#
            );
            let json = case == "baseline_json";
            Box::new(move || {
                let parsed;
                let req = if json {
                    parsed = CaptureRequest::from_json(black_box(REQUEST)).expect("valid");
                    &parsed
                } else {
                    // The pipeline case hands the engine a clone: so does the baseline.
                    parsed = black_box(&request).clone();
                    &parsed
                };
                black_box(baseline::capture(req, &rules, "http://127.0.0.1:9", "bench-token", &answer));
            })
        }
        "rules" => {
            let rules = ten_rules();
            let request = request();
            let amount = Money::parse("100.10", request.order.currency).expect("amount");
            Box::new(move || {
                let ctx =
                    capture_rules::RuleContext { request: &request, amount, capturable: amount, now: NOW };
                let v = rules.decide(black_box(&ctx));
                assert_eq!(v.len(), 10);
                black_box(v);
            })
        }
        "bare_mlua" => {
            let lua = BareLua::new();
            assert_eq!(lua.run(), 10);
            Box::new(move || {
                black_box(lua.run());
            })
        }
        "abi" | "abi_json" => {
            // `abi`: ABI 1.3 struct messages; `abi_json`: the same plugin kept on its JSON
            // functions (ABI 1.2 per-call context), as a 1.2 plugin is called.
            let structs = case == "abi";
            let plugin = Plugin::load_with(
                &plugin_path(),
                &LoadOptions::default().spin(Duration::ZERO).struct_messages(structs),
            )
            .expect("plugin loads");
            assert_eq!(plugin.uses_struct_messages(), structs);
            let (call, response) = (abi_call(), abi_response());
            let parse = ParseCall { schema: SCHEMA_VERSION, call: call.clone(), response: response.clone() };
            assert_eq!(
                plugin.parse_capture(&parse).ok(),
                capture_plugin_optty::Optty.parse_capture(&call, &response).ok()
            );
            let built = plugin.build_capture_checked(&call, &[]).expect("builds");
            assert_eq!(
                plugin.parse_built(built.into_parts().2, &response).ok(),
                plugin.parse_capture(&parse).ok()
            );
            // As the engine calls it: the call built once, the URL parsed once, by the checks. The
            // borrowed methods: the struct path copies the call and the answer for the worker
            // (the engine hands over its own, `build_capture_checked_owned`), counted here.
            Box::new(move || {
                let built = plugin.build_capture_checked(black_box(&call), &[]).expect("builds");
                let (request, url, sent) = built.into_parts();
                let result = plugin.parse_built(sent, black_box(&response)).expect("parses");
                black_box((request, url, result));
            })
        }
        "linked" => {
            let (call, response) = (abi_call(), abi_response());
            let optty = capture_plugin_optty::Optty;
            Box::new(move || {
                let request = optty.build_capture(black_box(&call)).expect("builds");
                let result = optty.parse_capture(black_box(&call), black_box(&response)).expect("parses");
                black_box((request, result));
            })
        }
        "abi_floor" => {
            // The least a binary ABI (a `#[repr(C)]` call of borrowed string slices in, the answers
            // as slices of the plugin's out) could cost: the connector's own work, the copy the SDK
            // makes of the borrowed call into the owned `CaptureCall` its trait takes (once: a
            // per-call context keeps it for the parse), the host's copies of the two answers out
            // of the plugin's buffers, and the host's URL check (one parse). Not counted: the two
            // hand-offs to the plugin's worker thread (the deadline), measured apart.
            let (call, response) = (abi_call(), abi_response());
            let optty = capture_plugin_optty::Optty;
            Box::new(move || {
                let owned = black_box(&call).clone();
                let request = optty.build_capture(&owned).expect("builds");
                let url = url::Url::parse(&request.url).expect("url");
                assert!(url.host_str().is_some());
                let request = black_box(&request).clone();
                let result = optty.parse_capture(&owned, black_box(&response)).expect("parses");
                let result = black_box(&result).clone();
                black_box((request, url, result));
            })
        }
        "ledger" => {
            let rt = rt();
            let dir = capture_store::testing::TempDir::new("instr-ledger").expect("temp dir");
            let store: Arc<dyn capture_store::CaptureStore> =
                Arc::new(capture_store::SqliteStore::open(&dir.path().join("ledger.db")).expect("store"));
            let mut n = 0u64;
            Box::new(move || {
                n += 1;
                rt.block_on(ledger::record(&*store, n));
                let _alive = &dir; // the closure owns the directory; it goes with the case
            })
        }
        "bare_sqlite" => {
            let dir = capture_store::testing::TempDir::new("instr-bare").expect("temp dir");
            let mut bare = ledger::Bare::new(&dir.path().join("bare.db"));
            let mut n = 0u64;
            Box::new(move || {
                n += 1;
                bare.record(n);
                let _alive = &dir; // the closure owns the directory; it goes with the case
            })
        }
        other => panic!("unknown case `{other}`"),
    }
}

/// Runs `case` `n` times after set-up and a warm-up of 10 iterations.
fn run(case: &str, n: u64) {
    let mut f = setup(case);
    for _ in 0..10 {
        f();
    }
    for _ in 0..n {
        f();
    }
}

/// (case, reference, what the figure is).
const PAIRS: &[(&str, &str, &str)] = &[
    (
        "pipeline",
        "baseline",
        "pipeline, pre-parsed request (10 rules, Optty via ABI, canned HTTP, no ledger)",
    ),
    ("pipeline_json", "baseline_json", "pipeline from JSON bytes"),
    ("rules", "bare_mlua", "rules stage, 10 rules (RuleSet::decide vs bare mlua, reused context)"),
    ("abi", "linked", "Optty build + parse (C ABI 1.3 struct messages vs linked statically)"),
    ("abi_json", "linked", "Optty build + parse (C ABI, JSON messages, as a 1.2 plugin, vs linked)"),
    ("abi_floor", "linked", "the least a binary ABI could cost (copies and URL check only)"),
    ("ledger", "bare_sqlite", "ledger: reserve + sent + captured, SQLite file, WAL (store vs bare rusqlite)"),
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Instructions of one run of `case` with `n` iterations under callgrind.
fn instructions(exe: &Path, dir: &Path, case: &str, n: u64) -> u64 {
    let out = dir.join(format!("callgrind.{case}.{n}"));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--quiet")
        .arg(exe)
        .args(["--run", case, &n.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run valgrind (is it installed?): {e}"));
    assert!(status.success(), "valgrind on `{case}` x{n} failed: {status}");
    let text = std::fs::read_to_string(&out).expect("callgrind output");
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no instruction total in {}", out.display()));
    let _ = std::fs::remove_file(&out);
    total
}

fn per_iteration(exe: &Path, dir: &Path, case: &str, n1: u64, n2: u64) -> f64 {
    let (a, b) = (instructions(exe, dir, case, n1), instructions(exe, dir, case, n2));
    (b.saturating_sub(a)) as f64 / (n2 - n1) as f64
}

fn report() {
    let exe = std::env::current_exe().expect("current exe");
    let (n1, n2) = (env_u64("CAPTURE_INSTR_N1", 50), env_u64("CAPTURE_INSTR_N2", 250));
    assert!(n2 > n1, "CAPTURE_INSTR_N2 must exceed CAPTURE_INSTR_N1");
    let only = std::env::var("CAPTURE_INSTR_CASES").ok();
    let dir = std::env::temp_dir().join(format!("capture-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("instructions per iteration under callgrind ((I({n2}) - I({n1})) / {}), one run:", n2 - n1);
    println!("{:<16} {:>11}   {:<14} {:>11}   {:>6}", "case", "instr", "reference", "instr", "ratio");
    for (case, reference, what) in PAIRS {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|c| c == *case)) {
            continue;
        }
        let a = per_iteration(&exe, &dir, case, n1, n2);
        let b = per_iteration(&exe, &dir, reference, n1, n2);
        println!(
            "{case:<16} {:>10.1}k   {reference:<14} {:>10.1}k   {:>5.1}x   {what}",
            a / 1000.0,
            b / 1000.0,
            a / b
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--run") {
        let case = args.get(at + 1).expect("--run CASE N");
        let n = args.get(at + 2).and_then(|n| n.parse().ok()).expect("--run CASE N");
        run(case, n);
        return;
    }
    if args.iter().any(|a| a == "--bench") {
        report();
    } else {
        // `cargo test --benches`: every case a few times, no valgrind.
        for (case, reference, _) in PAIRS {
            run(case, 2);
            run(reference, 2);
        }
    }
}
