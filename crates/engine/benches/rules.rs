//! The merchant rules stage alone, on one core: `RuleSet::decide` with 1, 10 and 100 simple rules
//! (thresholds, metadata flags, currency checks: the kind merchants write), the context built once
//! per capture as the engine does. One iteration is one capture's pre-validate rules, so
//! criterion's `elem/s` is captures per second. Afterwards it prints the memory of one pooled Lua
//! state with each set loaded.
//!
//! ```text
//! cargo bench -p capture-engine --bench rules
//! ```
//!
//! The goal (issue 4) is 200,000 captures per second with 10 rules, about 5 µs per capture.
//!
//! Instruction counts of the same work, stable on a shared machine, come from
//! `crates/rules/examples/rules_instructions.rs` under callgrind (figures and commands in
//! `crates/rules/README.md`).

use capture_core::{CaptureRequest, Decision, Money, Timestamp};
use capture_engine::{RuleLimits, RuleSet};
use capture_rules::RuleContext;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// `n` simple rules, the same five kinds in turn.
fn rules(n: usize) -> RuleSet {
    let sources = (0..n)
        .map(|i| {
            let body = match i % 5 {
                0 => format!(
                    "if ctx.amount.minor > capture.minor(\"{}000.00\") then return hold(\"large\") end",
                    5 + i
                ),
                1 => "if ctx.metadata.blocked == true then return reject(\"blocked\", \"customer blocked\") end"
                    .to_owned(),
                2 => "if ctx.currency.code ~= \"USD\" and ctx.currency.code ~= \"EUR\" then return hold(\"currency\") end"
                    .to_owned(),
                3 => "if #ctx.order.payments > 3 then return hold(\"many payments\") end".to_owned(),
                _ => "if ctx.shipping == nil and ctx.metadata.requires_shipping == true then return reject(\"no_tracking\", \"no tracking\") end"
                    .to_owned(),
            };
            let src = format!(
                "return {{ name = \"rule-{i:03}\", stage = \"pre-validate\", priority = {i},\n  decide = function(ctx)\n    {body}\n    return allow()\n  end }}\n"
            );
            (format!("rule_{i:03}.lua"), src)
        })
        .collect();
    RuleSet::from_sources(sources, RuleLimits::default()).expect("bench rules load")
}

fn bench(c: &mut Criterion) {
    let request = CaptureRequest::from_json(
        br#"{"platform":"optty","idempotency_key":"bench-1","amount":"100.10",
             "description":"bench","metadata":{"requires_shipping":false,"customer_orders":4},
             "order":{"id":"ORD-B1","currency":"USD","amount":"120.00",
                      "payments":[{"id":"pay-b1","amount":"120.00","method":"afterpay","partial_capture":true}]}}"#,
    )
    .expect("valid request");
    let amount = Money::parse("100.10", request.order.currency).expect("amount");
    let ctx =
        RuleContext { request: &request, amount, capturable: amount, now: Timestamp(1_790_000_000_000) };

    let sets: Vec<(usize, RuleSet)> = [1, 10, 100].into_iter().map(|n| (n, rules(n))).collect();
    for (n, set) in &sets {
        let verdicts = set.decide(&ctx);
        assert_eq!(verdicts.len(), *n);
        assert!(verdicts.iter().all(|v| v.decision == Decision::Allow && v.error.is_none()), "{verdicts:?}");
    }

    let mut group = c.benchmark_group("rules_stage");
    group.throughput(Throughput::Elements(1));
    for (n, set) in &sets {
        group.bench_function(format!("decide_{n}_rules"), |b| {
            b.iter(|| set.decide(std::hint::black_box(&ctx)))
        });
    }
    group.finish();

    for (n, set) in &sets {
        match set.state_memory() {
            Ok(bytes) => println!(
                "memory per Lua state with {n:>3} rule(s) loaded: {bytes} bytes ({} KiB)",
                bytes / 1024
            ),
            Err(e) => println!("memory per Lua state with {n:>3} rule(s): cannot build a state: {e}"),
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
