use capture_core::{CaptureRequest, Money, Timestamp};
use capture_rules::{Limits, RuleContext, RuleSet};
fn main() {
    let src = r#"return { name = 'r', stage = 'pre-validate', decide = function(ctx)
      local _, real = pairs(string)
      real.count = (real.count or 0) + 1
      return hold(tostring(real.count) .. tostring(("x").count))
    end }"#;
    let rules = RuleSet::from_sources(vec![("r.lua".into(), src.into())], Limits::default()).unwrap();
    let request = CaptureRequest::from_json(br#"{"platform":"optty","idempotency_key":"k","amount":"1.00","order":{"id":"o","currency":"USD","amount":"1.00","payments":[{"id":"p","amount":"1.00"}]}}"#).unwrap();
    let amount = Money::parse("1.00", request.order.currency).unwrap();
    let ctx = RuleContext { request: &request, amount, capturable: amount, now: Timestamp(0) };
    for _ in 0..3 { println!("{:?}", rules.decide(&ctx)[0].decision); }
}
