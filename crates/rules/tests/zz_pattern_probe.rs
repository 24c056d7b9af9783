use capture_core::{CaptureRequest, Money, Timestamp};
use capture_rules::{Limits, RuleContext, RuleSet};
#[test]
fn probe() {
    let req = CaptureRequest::from_json(
        br#"{"platform":"optty","idempotency_key":"k","amount":"1.00",
      "order":{"id":"o","currency":"USD","amount":"1.00","payments":[{"id":"p","amount":"1.00"}]}}"#,
    )
    .unwrap();
    let a = Money::parse("1.00", req.order.currency).unwrap();
    let ctx = RuleContext { request: &req, amount: a, capturable: a, now: Timestamp(0) };
    for n in [10, 14, 18] {
        let src = format!(
            "return {{ name='p', stage='pre-validate', decide=function(ctx) local s = string.rep('a', 40) local r = string.find(s, string.rep('a-', {n}) .. 'b') return allow() end }}"
        );
        let rules = RuleSet::from_sources(vec![("p.lua".into(), src)], Limits::default()).unwrap();
        let t = std::time::Instant::now();
        let v = rules.decide(&ctx);
        eprintln!("n={n}: {:?} {:?}", t.elapsed(), v[0].decision);
    }
}
