use capture_core::{CaptureRequest, Money, Timestamp};
use capture_rules::{Limits, RuleContext, RuleSet};
use std::time::Instant;
fn main() {
    let req = CaptureRequest::from_json(
        br#"{"platform":"optty","idempotency_key":"k","amount":"100.10","metadata":{"a":1,"b":"x"},
      "order":{"id":"o","currency":"USD","amount":"100.10","payments":[{"id":"p","amount":"100.10"}]}}"#,
    )
    .unwrap();
    let amount = Money::parse("100.10", req.order.currency).unwrap();
    let ctx = RuleContext { request: &req, amount, capturable: amount, now: Timestamp(1_700_000_000_000) };
    for n in [1usize, 10] {
        let sources = (0..n).map(|i| (format!("r{i:02}.lua"), format!(
            "return {{ name = \"r{i}\", stage = \"pre-validate\", priority = {i}, decide = function(ctx)\n if ctx.amount.minor > capture.minor(\"2000.00\") then return hold(\"large\") end\n if ctx.metadata.blocked == true then return reject(\"b\", \"c\") end\n return allow() end }}"))).collect();
        let rules = RuleSet::from_sources(sources, Limits::default()).unwrap();
        for _ in 0..1000 {
            rules.decide(&ctx);
        }
        let iters = 20000;
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(rules.decide(&ctx));
        }
        let per = t.elapsed() / iters;
        println!("{n} rules: {per:?} per decide, {:?} per rule", per / n as u32);
    }
}
