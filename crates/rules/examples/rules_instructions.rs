//! A fixed amount of rules-stage work, for instruction counts under callgrind: `ITERATIONS`
//! pre-validate evaluations of `RULES` simple rules (the five kinds of
//! `crates/engine/benches/rules.rs`, the same request), or the same rules run by bare mlua
//! (`bare`: the rule functions called directly on a ctx table built once, no sandbox, no hook).
//!
//! Run it twice with two iteration counts and difference the totals, so that start-up (building
//! the state, loading the rules) cancels out:
//!
//! ```text
//! cargo build --release -p capture-rules --example rules_instructions
//! for n in 1000 2000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/rules_instructions sandbox 10 $n 2>&1 | grep 'refs:'
//! done   # (refs(2000) - refs(1000)) / 1000 = instructions per capture
//! ```
//!
//! `ITERATIONS` 0 only loads the rules (the start-up cost of a rule set).

use capture_core::{CaptureRequest, Decision, Money, Timestamp};
use capture_rules::{Limits, RuleContext, RuleSet};

/// The body of the `i`-th rule (the bench's five kinds in turn).
fn body(i: usize) -> String {
    match i % 5 {
        0 => format!("if ctx.amount.minor > capture.minor(\"{}000.00\") then return hold(\"large\") end", 5 + i),
        1 => "if ctx.metadata.blocked == true then return reject(\"blocked\", \"customer blocked\") end".to_owned(),
        2 => "if ctx.currency.code ~= \"USD\" and ctx.currency.code ~= \"EUR\" then return hold(\"currency\") end"
            .to_owned(),
        3 => "if #ctx.order.payments > 3 then return hold(\"many payments\") end".to_owned(),
        _ => "if ctx.shipping == nil and ctx.metadata.requires_shipping == true then return reject(\"no_tracking\", \"no tracking\") end"
            .to_owned(),
    }
}

fn sources(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let src = format!(
                "return {{ name = \"rule-{i:03}\", stage = \"pre-validate\", priority = {i},\n  decide = function(ctx)\n    {}\n    return allow()\n  end }}\n",
                body(i)
            );
            (format!("rule_{i:03}.lua"), src)
        })
        .collect()
}

fn request() -> CaptureRequest {
    CaptureRequest::from_json(
        br#"{"platform":"optty","idempotency_key":"bench-1","amount":"100.10",
             "description":"bench","metadata":{"requires_shipping":false,"customer_orders":4},
             "order":{"id":"ORD-B1","currency":"USD","amount":"120.00",
                      "payments":[{"id":"pay-b1","amount":"120.00","method":"afterpay","partial_capture":true}]}}"#,
    )
    .expect("valid request")
}

fn sandbox(n: usize, iterations: usize) {
    let set = RuleSet::from_sources(sources(n), Limits::default()).expect("rules load");
    let request = request();
    let amount = Money::parse("100.10", request.order.currency).expect("amount");
    let ctx =
        RuleContext { request: &request, amount, capturable: amount, now: Timestamp(1_790_000_000_000) };
    for _ in 0..iterations {
        let verdicts = set.decide(std::hint::black_box(&ctx));
        assert!(verdicts.iter().all(|v| v.decision == Decision::Allow && v.error.is_none()), "{verdicts:?}");
    }
}

/// The same rules in a bare Lua state: one ctx table, reused; `capture.minor` in Lua.
fn bare(n: usize, iterations: usize) {
    let lua = mlua::Lua::new();
    let setup = r#"
        allow = function() return { decision = "allow" } end
        hold = function(r) return { decision = "hold", reason = r } end
        reject = function(c, r) return { decision = "reject", code = c, reason = r } end
        capture = { minor = function(s) local a, b = s:match("^(%d+)%.(%d%d)$") return tonumber(a) * 100 + tonumber(b) end }
        ctx = {
          platform = "optty", idempotency_key = "bench-1", description = "bench",
          currency = { code = "USD", exponent = 2 }, amount = { value = "100.10", minor = 10010 },
          requested_full = false, capturable = { value = "100.10", minor = 10010 },
          order = { id = "ORD-B1", amount = { value = "120.00", minor = 12000 }, surcharge = { value = "0.00", minor = 0 },
                    payments = { { id = "pay-b1", amount = { value = "120.00", minor = 12000 }, method = "afterpay", partial_capture = true } },
                    captures = {} },
          metadata = { requires_shipping = false, customer_orders = 4 },
          now = { unix = 1790000000, rfc3339 = "2026-09-21T14:13:20.000Z" },
        }
    "#;
    lua.load(setup).exec().expect("setup");
    let mut fns = Vec::new();
    for (_, src) in sources(n) {
        let t: mlua::Table = lua.load(src).eval().expect("rule");
        fns.push(t.get::<mlua::Function>("decide").expect("decide"));
    }
    let run: mlua::Function = lua
        .load("return function(fns) local ctx = ctx for i = 1, #fns do local r = fns[i](ctx) if r.decision ~= 'allow' then error('not allowed') end end end")
        .eval()
        .expect("runner");
    let list = lua.create_sequence_from(fns).expect("list");
    for _ in 0..iterations {
        run.call::<()>(&list).expect("run");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: rules_instructions sandbox|bare RULES ITERATIONS";
    let (Some(mode), Some(n), Some(iterations)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (n, iterations): (usize, usize) = (n.parse().expect(usage), iterations.parse().expect(usage));
    match mode.as_str() {
        "sandbox" => sandbox(n, iterations),
        "bare" => bare(n, iterations),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
