//! The hostile-script suite: one table of scripts that try to stop, slow down, escape or poison
//! the engine, each with the failure it must end in.
//!
//! Every case is loaded next to a well-behaved sentinel rule and evaluated for three captures in
//! a row (two different orders). Each time the hostile rule must be **contained** (the call
//! returns within a few seconds, the sentinel still decides as it always does, the next capture
//! works), **named** (its verdict's reason starts with "rule `hostile` failed (hostile.lua") and
//! **fail closed** (its decision is a hold, and the reason contains the expected text). Reasons
//! stay short whatever the script raised. Cases marked for both stages run as post-capture rules
//! too. Files the loader refuses outright (they never reach a capture) are the `Refused` cases.

use std::time::{Duration, Instant};

use capture_core::{CaptureRequest, Decision, Money, Outcome, Timestamp};
use capture_rules::{Limits, RuleContext, RuleSet, RuleVerdict};

/// What a hostile file must end in.
enum Expect {
    /// Loads, and every evaluation fails closed with a reason containing the text.
    Hold(&'static str),
    /// Loads, and fails closed with the text as pre-validate and as post-capture rule.
    HoldBoth(&'static str),
    /// The loader refuses the file with an error naming it and containing the text.
    Refused(&'static str),
}
use Expect::{Hold, HoldBoth, Refused};

struct Case {
    name: &'static str,
    /// `Body`: the body of the rule's function; `File`: the whole file.
    source: Source,
    expect: Expect,
}

enum Source {
    Body(&'static str),
    File(&'static str),
}
use Source::{Body, File};

fn case(name: &'static str, source: Source, expect: Expect) -> Case {
    Case { name, source, expect }
}

/// The hostile cases: (name, script, expected failure).
fn cases() -> Vec<Case> {
    vec![
        // ---- loops and CPU ----
        case("endless while", Body("while true do end"), HoldBoth("instruction budget exceeded")),
        case("endless repeat", Body("repeat until false"), HoldBoth("instruction budget exceeded")),
        case("endless goto", Body("::top:: goto top"), HoldBoth("instruction budget exceeded")),
        case(
            "endless tail calls",
            Body("local function f() return f() end return f()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "unbounded recursion",
            Body("local function f(n) return f(n + 1) + 1 end return f(1)"),
            HoldBoth("memory limit exceeded"),
        ),
        case(
            "recursive __index",
            Body("local t = setmetatable({}, { __index = function(t, k) return t[k] end }) return hold(t.x)"),
            HoldBoth("stack overflow"),
        ),
        case(
            "pcall around an endless loop",
            Body("pcall(function() while true do end end) return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "pcall retried in a loop",
            Body("for i = 1, 1e9 do pcall(pcall, function() while true do end end) end return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "xpcall handler that loops",
            Body("xpcall(function() error('x') end, function() while true do end end) return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "xpcall handler swallowing the budget",
            Body(
                "local ok = xpcall(function() while true do end end, function(e) return 'swallowed' end) return allow()",
            ),
            HoldBoth("instruction budget exceeded"),
        ),
        // A __close handler runs while an error unwinds, where Lua calls no hooks: none may exist.
        case(
            "__close handler that loops",
            Body(
                "do local x <close> = setmetatable({}, { __close = function() while true do end end }) end return allow()",
            ),
            HoldBoth("__close metamethods are not allowed"),
        ),
        case(
            "__close handler run by the budget error",
            Body(
                "local x <close> = setmetatable({}, { __close = function() while true do end end })
                 while true do end",
            ),
            HoldBoth("__close metamethods are not allowed"),
        ),
        case(
            "__close added to the metatable afterwards",
            Body(
                "local mt = {} local t = setmetatable({}, mt)
                 mt.__close = function() while true do end end
                 local x <close> = t
                 while true do end",
            ),
            HoldBoth("non-closable value"),
        ),
        case(
            "the closing value of a generic for",
            Body(
                "for _ in function() return nil end, nil, nil, setmetatable({}, { __close = function() while true do end end }) do end
                 return allow()",
            ),
            HoldBoth("__close metamethods are not allowed"),
        ),
        case(
            "sort comparator that loops",
            Body("table.sort({ 3, 2, 1 }, function(a, b) while true do end end) return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "gsub replacement that loops",
            Body("local s = ('aaa'):gsub('a', function() while true do end end) return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "busy loop in library calls",
            Body("for i = 1, 1e9 do local _ = string.find('abc', 'b') end return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        // ---- memory ----
        case(
            "memory bomb",
            Body("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end"),
            HoldBoth("memory limit exceeded"),
        ),
        case("huge string.rep", Body("local s = string.rep('x', 1 << 30) return allow()"), HoldBoth("memory limit exceeded")),
        case(
            "huge string.rep with a separator",
            Body("local s = ('x'):rep(1e8, ',') return allow()"),
            HoldBoth("memory limit exceeded"),
        ),
        case(
            "doubling concatenation",
            Body("local s = 'x' while true do s = s .. s end"),
            HoldBoth("memory limit exceeded"),
        ),
        case(
            "pcall around a memory bomb",
            Body("pcall(string.rep, 'x', 1 << 30) return allow()"),
            HoldBoth("memory limit exceeded"),
        ),
        // ---- C loops the budget cannot see ----
        case(
            "catastrophic pattern",
            Body("local r = string.find(string.rep('a', 40), string.rep('a-', 10) .. 'b') return allow()"),
            HoldBoth("pattern too complex"),
        ),
        case(
            "catastrophic pattern through a method",
            Body("local r = (string.rep('a', 40)):match(string.rep('a*', 10) .. 'b') return allow()"),
            HoldBoth("pattern too complex"),
        ),
        case(
            "gsub over a huge subject",
            Body("local r = string.rep('x', 5000000):gsub('y', 'z') return allow()"),
            HoldBoth("pattern too complex"),
        ),
        case(
            "table.move over a huge range",
            Body("table.move({}, 1, 1e15, 1, {}) return allow()"),
            HoldBoth("is not allowed in rules"),
        ),
        case(
            "table.unpack over a huge range",
            Body("local r = table.unpack({}, 1, 1e8) return allow()"),
            HoldBoth("is not allowed in rules"),
        ),
        case(
            "addresses through string.format",
            Body("return hold(string.format('%p', {}))"),
            Hold("%p is not allowed in rules"),
        ),
        // ---- reaching outside ----
        case("os", Body("os.execute('id') return allow()"), HoldBoth("global 'os'")),
        case("io", Body("io.open('/etc/passwd') return allow()"), HoldBoth("global 'io'")),
        case("require", Body("require('os') return allow()"), HoldBoth("global 'require'")),
        case("load", Body("load('return 1')() return allow()"), HoldBoth("global 'load'")),
        case("dofile", Body("dofile('/etc/passwd') return allow()"), HoldBoth("global 'dofile'")),
        case("loadfile", Body("loadfile('/etc/passwd') return allow()"), HoldBoth("global 'loadfile'")),
        case("bytecode through string.dump", Body("local b = string.dump(allow) return allow()"), HoldBoth("field 'dump'")),
        case(
            "bytecode through a string method",
            Body("local b = (''):dump() return allow()"),
            HoldBoth("method 'dump'"),
        ),
        case("debug", Body("debug.sethook() return allow()"), HoldBoth("global 'debug'")),
        case("package", Body("package.loadlib('libc.so.6', 'system') return allow()"), HoldBoth("global 'package'")),
        case("collectgarbage", Body("collectgarbage('stop') return allow()"), HoldBoth("global 'collectgarbage'")),
        case(
            "a coroutine that never ends",
            Body("local co = coroutine.wrap(function() while true do coroutine.yield() end end) co() return allow()"),
            HoldBoth("global 'coroutine'"),
        ),
        case("rawset", Body("rawset(ctx, 'amount', 1) return allow()"), HoldBoth("global 'rawset'")),
        case("setfenv", Body("setfenv(1, {}) return allow()"), HoldBoth("global 'setfenv'")),
        case("math.random", Body("return adjust(math.random(1, 100))"), Hold("field 'random'")),
        case(
            "the string metatable",
            Body("local lib = getmetatable('').__index lib.leak = 1 return allow()"),
            HoldBoth("index a boolean value"),
        ),
        // ---- state that would survive a capture, or reach other rules ----
        case("global write", Body("counter = (counter or 0) + 1 return allow()"), HoldBoth("globals are read-only")),
        case(
            "replacing a decision constructor",
            Body("allow = function() return hold('hijacked') end return allow()"),
            HoldBoth("globals are read-only"),
        ),
        case("library write", Body("string.leak = 1 return allow()"), HoldBoth("library tables are read-only")),
        case(
            "poisoning capture.minor",
            Body("capture.minor = function() return 0 end return allow()"),
            HoldBoth("library tables are read-only"),
        ),
        case(
            "the real string table through pairs",
            Body("local _, real = pairs(string) real.leak = (real.leak or 0) + 1 return allow()"),
            HoldBoth("index a nil value"),
        ),
        case(
            "the real capture table through pairs",
            Body("local _, real = pairs(capture) real.minor = function() return 0 end return allow()"),
            HoldBoth("index a nil value"),
        ),
        case("writing ctx", Body("ctx.amount.minor = 1 return allow()"), HoldBoth("ctx is read-only")),
        case(
            "writing ctx through pairs",
            Body("for _, p in pairs(ctx.order) do if type(p) == 'table' then p.x = 1 end end return allow()"),
            HoldBoth("ctx is read-only"),
        ),
        case("replacing ctx's metatable", Body("setmetatable(ctx, {}) return allow()"), HoldBoth("protected metatable")),
        case(
            "replacing a library's metatable",
            Body("setmetatable(string, {}) return allow()"),
            HoldBoth("protected metatable"),
        ),
        case(
            "a finalizer",
            Body("setmetatable({}, { __gc = function() end }) return allow()"),
            HoldBoth("__gc metamethods are not allowed"),
        ),
        case(
            "a file-level counter",
            File(
                "local calls = 0
                 return { name = 'hostile', stage = 'pre-validate', decide = function(ctx)
                   calls = calls + 1
                   error('call number ' .. calls)
                 end }",
            ),
            Hold("call number 1"),
        ),
        case(
            "a file-level table",
            File(
                "local seen = {}
                 return { name = 'hostile', stage = 'pre-validate', decide = function(ctx)
                   seen[#seen + 1] = ctx.order.id
                   error('seen ' .. #seen)
                 end }",
            ),
            Hold("seen 1"),
        ),
        case(
            "a helper closure with state",
            File(
                "local function counter() local n = 0 return function() n = n + 1 return n end end
                 local next_id = counter()
                 return { name = 'hostile', stage = 'pre-validate', decide = function(ctx)
                   error('id ' .. next_id())
                 end }",
            ),
            Hold("id 1"),
        ),
        case(
            "replacing _ENV inside decide",
            File(
                "return { name = 'hostile', stage = 'pre-validate', decide = function(ctx)
                   local h, prev = hold, n
                   _ENV = { n = (prev or 0) + 1 }
                   return h('leaked')
                 end }",
            ),
            Refused("the name `_ENV` is reserved"),
        ),
        case(
            "a writable _ENV for the file",
            File(
                "local _ENV = setmetatable({}, { __index = _ENV })
                 return { name = 'hostile', stage = 'pre-validate', decide = function(ctx) n = (n or 0) + 1 return allow() end }",
            ),
            Refused("line 1: the name `_ENV` is reserved"),
        ),
        case(
            "precompiled bytecode",
            File("\x1bLuaT\x00\x19\r\n\x1a\n\x04\x08\x08"),
            Refused("precompiled Lua bytecode"),
        ),
        case("running forever while loading", File("while true do end"), Refused("instruction budget exceeded")),
        // ---- errors that are not strings ----
        case("an error that is a table", Body("error({ code = 1 })"), HoldBoth("(error object is a table value)")),
        case(
            "an error with __tostring",
            Body("error(setmetatable({}, { __tostring = function() while true do end end }))"),
            HoldBoth("(error object is a table value)"),
        ),
        case("an error that is nil", Body("error()"), HoldBoth("(error object is a nil value)")),
        case("a gigantic error message", Body("error(string.rep('x', 1e6))"), HoldBoth("xxxxxxxx…")),
        case(
            "an error pretending to be another file",
            Body("error('other.lua:1: it was not me', 0)"),
            HoldBoth("other.lua:1: it was not me"),
        ),
        // ---- gigantic or strange return values ----
        case("a gigantic reason", Body("return hold(string.rep('x', 100000))"), Hold("is 100000 bytes long")),
        case(
            "thousands of tags",
            Body("local d = allow() d.tags = {} for i = 1, 10000 do d.tags[i] = 't' .. i end return d"),
            HoldBoth("at most 64"),
        ),
        case(
            "a gigantic note",
            Body("local d = allow() d.notes = { string.rep('n', 1e6) } return d"),
            HoldBoth("bytes long"),
        ),
        case(
            "a follow-up with hundreds of fields",
            Body(
                "local f = { action = 'void_remaining' } for i = 1, 500 do f['k' .. i] = i end
                 return { decision = 'allow', follow_ups = { f } }",
            ),
            HoldBoth("more than 16 fields"),
        ),
        case(
            "a follow-up holding a table",
            Body("return { decision = 'allow', follow_ups = { { action = 'x', deep = { { {} } } } } }"),
            HoldBoth("must be a string, integer or boolean"),
        ),
        case(
            "a result with a million keys",
            Body("local r = { decision = 'allow' } for i = 1, 1e7 do r[i] = i end return r"),
            HoldBoth("exceeded"),
        ),
        case("a function as the decision", Body("return function() end"), Hold("not a decision")),
        case(
            "a decision hidden behind __index",
            Body("return setmetatable({}, { __index = { decision = 'allow' } })"),
            Hold("no `decision`"),
        ),
        case("a float amount", Body("return adjust(1.5)"), Hold("is a float")),
        case("a NaN amount", Body("return { decision = 'adjust', amount = 0/0 }"), Hold("is a float")),
        // ---- work done inside C functions is charged (issue 10, finding 6) ----
        case(
            "string.rep of the empty string, maxinteger times",
            Body("local s = string.rep('', math.maxinteger) return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "string.rep of the empty string with an empty separator",
            Body("local s = (''):rep(math.maxinteger, '') return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "string.rep with the count as text",
            Body("local s = string.rep('', '9223372036854775807') return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "string.rep of the empty string 1e8 times",
            Body("local s = string.rep('', 1e8) return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "pcall around an empty string.rep",
            Body("pcall(string.rep, '', math.maxinteger) return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "a megabyte string.rep in a loop",
            Body("for i = 1, 1e9 do local s = ('x'):rep(1e6) end return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "upper of a big string in a loop",
            Body("local s = ('x'):rep(1e6) for i = 1, 1e9 do local u = s:upper() end return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "table.concat of a big table in a loop",
            Body(
                "local t = {} for i = 1, 1000 do t[i] = ('x'):rep(1000) end
                 for i = 1, 1e9 do local s = table.concat(t) end return allow()",
            ),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "string.format of a big string in a loop",
            Body("local s = ('x'):rep(1e6) for i = 1, 1e9 do local f = string.format('%s%s', s, s) end return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "gsub that doubles a big string in a loop",
            Body("local s = ('x'):rep(1e5) for i = 1, 1e9 do local r = s:gsub('x', 'yy') end return allow()"),
            HoldBoth("instruction budget exceeded"),
        ),
        case(
            "a format width over 99",
            Body("return hold(string.format('%100d', 1))"),
            HoldBoth("invalid conversion"),
        ),
        case(
            "string.rep of the empty string at file level",
            File("local s = string.rep('', math.maxinteger) return { name = 'hostile', stage = 'pre-validate', decide = function() return allow() end }"),
            Refused("instruction budget exceeded"),
        ),
        // ---- names are bounded (issue 10, finding 8) ----
        case(
            "a rule name of 1 MiB",
            File("return { name = string.rep('a', 1 << 20), stage = 'pre-validate', decide = function() return allow() end }"),
            Refused("the limit is 64 bytes"),
        ),
    ]
}

fn request(id: &str, amount: &str) -> CaptureRequest {
    let json = format!(
        r#"{{"platform": "optty", "idempotency_key": "{id}-cap-1", "amount": "{amount}",
            "metadata": {{"customer_orders": 3}},
            "order": {{"id": "{id}", "currency": "USD", "amount": "500.00",
                      "payments": [{{"id": "pay-{id}", "amount": "500.00", "method": "afterpay"}}]}}}}"#
    );
    CaptureRequest::from_json(json.as_bytes()).expect("valid request")
}

const SENTINEL: &str = "return { name = 'sentinel', stage = 'pre-validate', priority = 100,
  decide = function(ctx) return hold('sentinel ' .. ctx.order.id .. ' ' .. ctx.amount.value) end }";
const SENTINEL_POST: &str = "return { name = 'sentinel-post', stage = 'post-capture', priority = 100,
  observe = function(ctx) return observe_result{ tags = { 'seen-' .. ctx.order.id } } end }";

fn source(c: &Case, stage: &str) -> String {
    match c.source {
        File(text) => text.to_owned(),
        Body(body) => {
            let f = if stage == "pre-validate" { "decide" } else { "observe" };
            format!(
                "return {{ name = 'hostile', stage = '{stage}', priority = 1,\n  {f} = function(ctx)\n    {body}\n  end }}\n"
            )
        }
    }
}

/// Checks a hostile verdict: contained, named, failed closed with `needle` in the reason.
fn assert_failed_closed(name: &str, stage: &str, v: &RuleVerdict<'_>, needle: &str) {
    assert_eq!(v.rule, "hostile", "{name} ({stage}): verdict order {v:?}");
    let Decision::Hold { reason } = &v.decision else {
        panic!("{name} ({stage}): expected a fail-closed hold, got {v:?}")
    };
    assert!(
        reason.starts_with("rule `hostile` failed (hostile.lua"),
        "{name} ({stage}): not named: {reason}"
    );
    assert!(reason.contains(needle), "{name} ({stage}): {reason:?} should contain {needle:?}");
    assert!(reason.len() <= 1200, "{name} ({stage}): a reason of {} bytes", reason.len());
    let error = v.error.as_deref().unwrap_or_else(|| panic!("{name} ({stage}): no error in {v:?}"));
    assert!(reason.ends_with(error), "{name} ({stage}): {reason:?} does not end with {error:?}");
    assert!(v.tags.is_empty() && v.notes.is_empty() && v.follow_ups.is_empty(), "{name}: {v:?}");
}

#[test]
fn every_hostile_script_is_contained_named_and_fails_closed() {
    let cases = cases();
    assert!(cases.len() >= 25, "the suite has {} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");

    let captures = [request("ord-A", "100.10"), request("ord-B", "20.00"), request("ord-A", "100.10")];
    let now = Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").expect("valid time");
    let started = Instant::now();
    let mut refused = 0;
    let mut evaluated = 0;
    for c in &cases {
        let case_started = Instant::now();
        let stages: &[&str] = match c.expect {
            Refused(_) | Hold(_) => &["pre-validate"],
            HoldBoth(_) => &["pre-validate", "post-capture"],
        };
        for &stage in stages {
            let files = vec![
                ("hostile.lua".to_owned(), source(c, stage)),
                ("sentinel.lua".to_owned(), SENTINEL.to_owned()),
                ("sentinel_post.lua".to_owned(), SENTINEL_POST.to_owned()),
            ];
            // The budget and memory limits as shipped; the wall-clock limit (tested on its own in
            // tests/rules.rs) far away, so which limit stops a case never depends on how fast or
            // loaded the machine is.
            let limits = Limits { time: Duration::from_secs(600), ..Limits::default() };
            let loaded = RuleSet::from_sources(files, limits);
            let needle = match c.expect {
                Refused(needle) => {
                    let err = loaded.err().unwrap_or_else(|| panic!("{}: the loader accepted it", c.name));
                    let text = err.to_string();
                    assert!(text.contains("hostile.lua"), "{}: not named: {text}", c.name);
                    assert!(text.contains(needle), "{}: {text:?} should contain {needle:?}", c.name);
                    refused += 1;
                    continue;
                }
                Hold(needle) | HoldBoth(needle) => needle,
            };
            let rules = loaded.unwrap_or_else(|e| panic!("{}: does not load: {e}", c.name));
            for req in &captures {
                let amount = match req.amount {
                    capture_core::RequestedAmount::Exact(m) => m,
                    capture_core::RequestedAmount::Full => panic!("exact amounts only"),
                };
                let ctx = RuleContext { request: req, amount, capturable: amount, now };
                let outcome = Outcome::Captured { amount, platform_capture_id: Some("pc".into()) };
                let pre = rules.decide(&ctx);
                let post = rules.observe(&ctx, &outcome);
                let (hostile, sentinel) = if stage == "pre-validate" {
                    assert_eq!(pre.len(), 2, "{}: {pre:?}", c.name);
                    (&pre[0], &pre[1])
                } else {
                    assert_eq!(post.len(), 2, "{}: {post:?}", c.name);
                    (&post[0], &pre[0])
                };
                assert_failed_closed(c.name, stage, hostile, needle);
                // The other rules carry on, with this capture's data.
                let expected = format!("sentinel {} {}", req.order.id, Money::to_decimal_string(amount));
                assert_eq!(
                    sentinel.decision,
                    Decision::Hold { reason: expected },
                    "{}: {sentinel:?}",
                    c.name
                );
                let post_sentinel = post.iter().find(|v| v.rule == "sentinel-post").expect("post sentinel");
                assert_eq!(post_sentinel.tags, [format!("seen-{}", req.order.id)], "{}", c.name);
                assert_eq!(post_sentinel.error, None, "{}", c.name);
                evaluated += 1;
            }
        }
        // How long a case took is printed, never asserted (a loaded machine is slow, not wrong);
        // a case that is not contained never returns and fails the run by its time limit.
        println!("{}: {:?}", c.name, case_started.elapsed());
    }
    assert!(refused >= 4 && evaluated >= 3 * 60, "{refused} refused, {evaluated} evaluations");
    println!("the suite took {:?}", started.elapsed());
}

/// A rule set whose hostile rule blew its budget or memory serves captures from two threads at
/// once, and neither thread sees the other's failure or data.
#[test]
fn hostile_rules_do_not_disturb_parallel_captures() {
    let files = vec![
        (
            "a_bomb.lua".to_owned(),
            "return { name = 'bomb', stage = 'pre-validate', priority = 1, decide = function(ctx)
            if ctx.order.id == 'ord-A' then local s = string.rep('x', 1 << 30) end
            while ctx.order.id == 'ord-B' do end
            return allow()
          end }"
                .to_owned(),
        ),
        ("b_echo.lua".to_owned(), SENTINEL.to_owned()),
    ];
    let rules = RuleSet::from_sources(files, Limits::default()).expect("loads");
    let now = Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").expect("valid time");
    std::thread::scope(|s| {
        for (id, needle) in
            [("ord-A", "memory limit exceeded"), ("ord-B", "instruction budget exceeded"), ("ord-C", "")]
        {
            let rules = &rules;
            s.spawn(move || {
                let req = request(id, "10.00");
                let amount = Money::parse("10.00", req.order.currency).expect("amount");
                for _ in 0..4 {
                    let v = rules.decide(&RuleContext { request: &req, amount, capturable: amount, now });
                    if needle.is_empty() {
                        assert_eq!(v[0].decision, Decision::Allow, "{id}: {v:?}");
                    } else {
                        let Decision::Hold { reason } = &v[0].decision else { panic!("{id}: {v:?}") };
                        assert!(reason.contains(needle), "{id}: {reason}");
                    }
                    assert_eq!(v[1].decision, Decision::Hold { reason: format!("sentinel {id} 10.00") });
                }
            });
        }
    });
}
