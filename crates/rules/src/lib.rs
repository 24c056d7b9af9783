//! `capture-rules`: merchant capture rules written in sandboxed Lua 5.4.
//!
//! A rule is one `*.lua` file in a folder. It returns a table:
//!
//! ```lua
//! return {
//!   name = "hold-large-orders",   -- required, unique in the folder, [a-z0-9_-]+
//!   stage = "pre-validate",       -- required: "pre-validate" or "post-capture"
//!   priority = 100,               -- optional integer, default 0; lower runs first
//!   decide = function(ctx)        -- pre-validate rules; post-capture rules have `observe`
//!     if ctx.amount.minor > capture.minor("2000.00") then
//!       return hold("orders over 2000 need review")
//!     end
//!     return allow()
//!   end,
//! }
//! ```
//!
//! Pre-validate rules return a decision: `allow()`, `reject(code, reason)`, `hold(reason)` or
//! `adjust(amount)` (a decimal string such as `"150.00"` or integer minor units such as `15000`;
//! never a float). Each constructor returns a plain table (`{decision = "hold", reason = "..."}`)
//! that may also carry `tags` and `notes` lists and a `follow_ups` list. Post-capture rules
//! (`observe = function(ctx) ... end`) return `nil` or
//! `observe_result{ tags = {...}, notes = {...}, follow_ups = { {action = "void_remaining"} } }`.
//!
//! # What rule code can use
//!
//! The `table`, `string` (without `string.dump`), `math` (without `math.random` and
//! `math.randomseed`) and `utf8` libraries; `assert`, `error`, `ipairs`, `next`, `pairs`, `pcall`,
//! `rawequal`, `rawget`, `rawlen`, `select`, `tonumber`, `tostring`, `type`, `xpcall`,
//! `setmetatable`, `getmetatable`, a no-op `print`; the decision constructors; `observe_result`;
//! and `capture.minor(decimal_string)`, which converts a decimal string to integer minor units of
//! the capture's currency exactly (`Money::parse`) and raises an error for a bad amount. There is
//! no `load`, `require`, `dofile`, `os`, `io`, `package`, `debug`, `coroutine` or
//! `collectgarbage`, and the name `_ENV` is refused at load (a rule cannot read or replace its
//! environment).
//!
//! `setmetatable` refuses `__gc` (it would run outside the rule's call) and `__close` (Lua runs
//! a to-be-closed variable's handler without calling hooks while an error from the budget hook
//! unwinds, so a loop there would never end), and installs a private copy of the metatable, so
//! neither can be added afterwards; `getmetatable` still returns the table given (unless it sets
//! `__metatable`). Metatables of ctx and of the libraries cannot be replaced.
//!
//! Library functions that loop in C, where the instruction budget cannot see them, are bounded
//! by the same number: `string.find`/`match`/`gmatch`/`gsub` refuse a pattern whose worst case
//! on the given subject (start positions × backtracking quantifiers) is over
//! [`Limits::instructions`] steps ("pattern too complex", plain finds are never refused), and
//! `table.sort`/`move`/`insert`/`remove`/`concat`/`unpack` refuse ranges that large. Work a C
//! function does is charged to the budget ([`Limits::instructions`]): `string.rep` by its count
//! or output before it runs (`string.rep("", math.maxinteger)` spends the budget instead of
//! looping for ever in C), the functions that build strings by their output. A wall-clock
//! deadline per rule call ([`Limits::time`]) is the last line of defence.
//!
//! Globals and library tables are read-only (`x = 1` raises "globals are read-only: use local
//! variables"); rules use locals. No state survives from one capture to the next, whichever
//! pooled Lua state serves it: a rule's `decide`/`observe` function whose only upvalue is its
//! read-only environment (it uses no file-level local) can hold nothing, and is kept from loading
//! and called directly ([`RuleInfo::stateless`]); a function that uses file-level locals (a
//! counter, a table, a helper) has its file run again before every call, so those start fresh.
//! The real library tables never reach rule code (`pairs(string)` iterates without handing
//! out the table).
//!
//! # Determinism
//!
//! The same inputs give the same verdicts in any process: there is no clock but `ctx.now` and no
//! random numbers; `pairs` iterates in a fixed order (numbers ascending, then strings in byte
//! order, then `false`, `true`; a table with other keys is an error) instead of Lua's hash order,
//! which is seeded per process; `tostring` of a table, function or coroutine drops the address
//! (`"table"`), `string.format` formats such values the same way and refuses `%p`; tables
//! handed back are converted with sorted keys.
//!
//! # Results
//!
//! At most 64 `tags`, `notes` and `follow_ups` each; a tag, a reject code or a follow-up key at
//! most 100 bytes; a reason, a note or a follow-up value at most 1000 bytes; at most 16 fields in
//! a follow-up. More fails the rule (closed). Error messages in verdicts are cut to 1000 bytes.
//!
//! # The `ctx` table
//!
//! Built once per [`RuleSet::decide`] / [`RuleSet::observe`] call and shared by every rule of the
//! stage, so rules must not modify it, and cannot: every level is a read-only view (writes raise
//! "ctx is read-only"; `pairs`, `ipairs` and `#` work; `next` and `rawget` see an empty table).
//! Each pooled state keeps its ctx tables and fills every field again for each call.
//! Money is never a float: each amount is `{ value = "100.10", minor = 10010 }`.
//!
//! | field | content |
//! | --- | --- |
//! | `platform`, `idempotency_key`, `description` | strings (`description` may be nil) |
//! | `currency` | `{ code = "USD", exponent = 2 }` |
//! | `amount` | what the pipeline intends to capture (a "full" request resolved to the capturable amount) |
//! | `requested_full` | boolean |
//! | `capturable` | what may still be captured |
//! | `order` | `{ id, amount, surcharge, payments = { {id, amount, method, partial_capture}, ... }, captures = { {reference, payment_id, amount}, ... } }` |
//! | `shipping` | nil or `{ company, method, tracking_number }` |
//! | `metadata` | string keys to string, integer or boolean values |
//! | `now` | `{ unix = <seconds>, rfc3339 = "2026-11-21T10:00:00.000Z" }`, the injected clock |
//! | `outcome` | post-capture only: `{ status, kind, message, amount, ... }` (see below) |
//!
//! `ctx.outcome.status` is `captured`, `pending`, `rejected`, `held` or `failed`; `amount` (and
//! `platform_capture_id`) are set for captured and pending outcomes; `by`, `code` and `message`
//! for rejected and held ones; `kind` (`invalid_request`, `outcome_unknown`, ...), `retryable`,
//! `code` (the platform's code) and `message` for failed ones.
//!
//! # Evaluation
//!
//! Rules run in a total order: stage, then priority ascending, then name. A rule that raises an
//! error, spends more than [`Limits::instructions`] VM instructions in one call, passes
//! [`Limits::memory_bytes`], or returns something that is not a valid decision **fails closed**:
//! its verdict is `Decision::Hold { reason: "rule `NAME` failed (FILE:LINE): MESSAGE" }` with
//! `error: Some(MESSAGE)` (post-capture rules too). The other rules still run. A blown budget or
//! memory limit cannot be hidden by the script's own `pcall`.
//!
//! A stage is one call into Lua: it fills the ctx and calls every rule in turn, each under a
//! fresh instruction budget and in its own protected call; results other than a plain `allow()`
//! (or `nil` from `observe`) are handed to Rust as each rule returns.
//!
//! Tags come back sorted and unique, notes in the order given, follow-ups as `BTreeMap`s
//! (string, integer and boolean values, as strings; each needs an `action`).
//!
//! # Rust API
//!
//! [`RuleSet::load_dir`] / [`RuleSet::from_sources`] load and validate every file (compiled as
//! Lua *text* only: bytecode is refused), [`RuleSet::version`] and [`RuleSet::rules`] describe the
//! set, [`RuleSet::decide`] and [`RuleSet::observe`] evaluate it (verdicts borrow the rules'
//! names from the set), and [`check::check_dir`] reports every problem of a folder with its
//! file and line. A [`RuleSet`] is `Send + Sync`: it keeps a pool of prepared Lua states, one
//! per concurrent evaluation ([`RuleSet::state_memory`] measures one).
//!
//! ```
//! use capture_core::{CaptureRequest, Decision, Money, Timestamp};
//! use capture_rules::{Limits, RuleContext, RuleSet};
//!
//! let rule = r#"
//!   return {
//!     name = "hold-large-orders",
//!     stage = "pre-validate",
//!     decide = function(ctx)
//!       if ctx.amount.minor > capture.minor("2000.00") then
//!         return hold("orders over 2000 need review")
//!       end
//!       return allow()
//!     end,
//!   }
//! "#;
//! let rules = RuleSet::from_sources(vec![("hold_large.lua".into(), rule.into())], Limits::default())?;
//! assert_eq!(rules.rules()[0].name, "hold-large-orders");
//!
//! let request = CaptureRequest::from_json(br#"{
//!     "platform": "optty", "idempotency_key": "ord-1-cap-1", "amount": "2500.00",
//!     "order": {"id": "ord-1", "currency": "USD", "amount": "2500.00",
//!               "payments": [{"id": "pay-1", "amount": "2500.00"}]}
//! }"#).unwrap();
//! let amount = Money::parse("2500.00", request.order.currency).unwrap();
//! let ctx = RuleContext {
//!     request: &request,
//!     amount,
//!     capturable: amount,
//!     now: Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap(),
//! };
//! let verdicts = rules.decide(&ctx);
//! assert_eq!(verdicts[0].decision, Decision::Hold { reason: "orders over 2000 need review".into() });
//! assert_eq!(verdicts[0].error, None);
//! # Ok::<(), capture_rules::RulesError>(())
//! ```
#![warn(missing_docs)]

pub mod check;
mod context;
mod convert;
mod error;
mod sandbox;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use capture_core::{CaptureRequest, Decision, Money, Outcome, Timestamp};
use sha2::{Digest, Sha256};

pub use error::RulesError;
use sandbox::{Source, State};

/// How many idle Lua states a [`RuleSet`] keeps for reuse.
const MAX_POOLED_STATES: usize = 64;

/// Resource limits for rule code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit of each Lua state, in bytes (`0` disables it; don't).
    pub memory_bytes: usize,
    /// VM instructions one rule call may run (checked every 1000 instructions). Library
    /// functions that do their work in C are charged for it: `string.rep` by its count or its
    /// output, whichever is larger, before it runs; `string.format`, `table.concat`,
    /// `string.gsub`, `upper`, `lower`, `reverse` and `utf8.char` by their output (one
    /// instruction per [`CHARGE_BYTES`] bytes).
    pub instructions: u64,
    /// Wall-clock time one rule call may take (the file's top level at load, or one `decide` or
    /// `observe`), checked with the instruction budget: the last line of defence should work
    /// inside a C function still escape the budget. Over it the rule fails closed like any
    /// other failure ("time limit exceeded").
    pub time: std::time::Duration,
}

/// The longest rule name, in bytes (names are `[a-z0-9_-]`).
pub const MAX_RULE_NAME: usize = 64;

/// Output bytes of a C library function charged as one VM instruction.
pub const CHARGE_BYTES: u64 = 64;

impl Default for Limits {
    /// 16 MiB, 1 000 000 instructions and 1 second per rule call.
    fn default() -> Limits {
        Limits {
            memory_bytes: 16 * 1024 * 1024,
            instructions: 1_000_000,
            time: std::time::Duration::from_secs(1),
        }
    }
}

/// The stage a rule runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleStage {
    /// Before anything is sent: `decide(ctx)` returns a decision.
    PreValidate,
    /// After the outcome is known: `observe(ctx)` returns tags, notes and follow-ups.
    PostCapture,
}

impl RuleStage {
    /// The name rule files use: `pre-validate` or `post-capture`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStage::PreValidate => "pre-validate",
            RuleStage::PostCapture => "post-capture",
        }
    }
}

impl fmt::Display for RuleStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<RuleStage> for capture_core::Stage {
    fn from(s: RuleStage) -> capture_core::Stage {
        match s {
            RuleStage::PreValidate => capture_core::Stage::PreValidate,
            RuleStage::PostCapture => capture_core::Stage::PostCapture,
        }
    }
}

/// A loaded rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule's `name`.
    pub name: String,
    /// The file name only, e.g. `hold_large.lua`.
    pub file: String,
    /// The rule's `stage`.
    pub stage: RuleStage,
    /// The rule's `priority` (default 0; lower runs first).
    pub priority: i64,
    /// `sha256:` and the first 16 hex digits of the SHA-256 of the file's content.
    pub hash: String,
    /// `true` when the rule's function uses no file-level local (no upvalue but its read-only
    /// environment): it is kept from loading and called directly. `false` when it does (a
    /// helper function, a constant table, a counter...): its file then runs again before every
    /// call so that no value survives from one capture to the next, which costs about a
    /// microsecond per rule.
    pub stateless: bool,
}

/// What rules see of one capture.
#[derive(Debug, Clone, Copy)]
pub struct RuleContext<'a> {
    /// The capture request.
    pub request: &'a CaptureRequest,
    /// The amount the pipeline intends to capture (a "full" request resolved to `capturable`).
    pub amount: Money,
    /// What may still be captured.
    pub capturable: Money,
    /// The injected clock value.
    pub now: Timestamp,
}

/// One rule's answer for one capture. Its names borrow from the [`RuleSet`] that made it
/// (copying them for every rule of every capture was a tenth of the cost of a small rule);
/// [`RuleVerdict::into_owned`] makes a verdict that outlives the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVerdict<'a> {
    /// The rule's name.
    pub rule: Cow<'a, str>,
    /// The rule's file name.
    pub file: Cow<'a, str>,
    /// The rule file's content hash (see [`RuleInfo::hash`]).
    pub hash: Cow<'a, str>,
    /// The decision; `Allow` for a post-capture rule that worked; the fail-closed
    /// `Hold` for any rule that failed.
    pub decision: Decision,
    /// Tags, sorted and unique.
    pub tags: Vec<String>,
    /// Notes, in the order the rule gave them.
    pub notes: Vec<String>,
    /// Follow-up requests (each has an `action`).
    pub follow_ups: Vec<BTreeMap<String, String>>,
    /// Why the rule failed, if it did (the message of the `Hold` reason).
    pub error: Option<String>,
}

impl RuleVerdict<'_> {
    /// The same verdict, owning its names.
    pub fn into_owned(self) -> RuleVerdict<'static> {
        RuleVerdict {
            rule: Cow::Owned(self.rule.into_owned()),
            file: Cow::Owned(self.file.into_owned()),
            hash: Cow::Owned(self.hash.into_owned()),
            decision: self.decision,
            tags: self.tags,
            notes: self.notes,
            follow_ups: self.follow_ups,
            error: self.error,
        }
    }
}

/// A loaded, validated set of rules. `Send + Sync`; evaluations may run concurrently.
pub struct RuleSet {
    limits: Limits,
    version: String,
    /// In evaluation order.
    rules: Vec<RuleInfo>,
    /// Same order as `rules`.
    sources: Vec<Source>,
    /// `rules[..pre]` are pre-validate rules, the rest post-capture.
    pre: usize,
    /// Idle prepared states; their chunks are in evaluation order.
    pool: Mutex<Vec<State>>,
    /// Lua states built to evaluate rules, the one built at load included.
    built: AtomicUsize,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("version", &self.version)
            .field("limits", &self.limits)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn sha256_hex16(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(7 + 16);
    out.push_str("sha256:");
    for b in digest.iter().take(8) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// The name and content of every `*.lua` file of `dir` (other entries are skipped).
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, RulesError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RulesError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_none_or(|e| e != "lua") || !path.is_file() {
            continue;
        }
        let Some(file) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            return Err(RulesError::Invalid { file, message: "the file name is not UTF-8".into() });
        };
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        files.push((file, bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

impl RuleSet {
    /// Loads every `*.lua` file of `dir` (other files are ignored), in file-name order.
    /// A missing or unreadable folder is [`RulesError::Io`] naming the path.
    pub fn load_dir(dir: &Path, limits: Limits) -> Result<RuleSet, RulesError> {
        let mut sources = Vec::new();
        for (file, bytes) in read_dir(dir)? {
            if bytes.first() == Some(&0x1b) {
                return Err(RulesError::BytecodeRefused { file });
            }
            let text = String::from_utf8(bytes).map_err(|_| RulesError::Invalid {
                file: file.clone(),
                message: "the file is not UTF-8 text".into(),
            })?;
            sources.push((file, text));
        }
        RuleSet::from_sources(sources, limits)
    }

    /// Loads rules from `(file name, source)` pairs; the file names play the part of the files'
    /// names in a folder (they name the rules in errors and verdicts and order the version hash).
    pub fn from_sources(sources: Vec<(String, String)>, limits: Limits) -> Result<RuleSet, RulesError> {
        let mut sources: Vec<Source> =
            sources.into_iter().map(|(file, text)| Source { file, text }).collect();
        sources.sort_by(|a, b| a.file.cmp(&b.file));
        if let Some(w) = sources.windows(2).find(|w| w[0].file == w[1].file) {
            return Err(RulesError::Invalid {
                file: w[1].file.clone(),
                message: "the file name is given twice".into(),
            });
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(sources.len() * 4);
        for s in &sources {
            parts.extend([s.file.as_bytes(), b"\0", s.text.as_bytes(), b"\0"]);
        }
        let version = sha256_hex16(&parts);
        if sources.is_empty() {
            return Ok(RuleSet { version, ..RuleSet::empty_with(limits) });
        }

        let (mut state, declared) = State::build(&sources, limits)?;
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (d, s) in declared.iter().zip(&sources) {
            if let Some(first) = seen.insert(&d.name, &s.file) {
                return Err(RulesError::Invalid {
                    file: s.file.clone(),
                    message: format!("duplicate rule name `{}` (also in {first})", d.name),
                });
            }
        }
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&declared[a], &declared[b]);
            (x.stage, x.priority, &x.name).cmp(&(y.stage, y.priority, &y.name))
        });
        let rules: Vec<RuleInfo> = order
            .iter()
            .map(|&i| RuleInfo {
                name: declared[i].name.clone(),
                file: sources[i].file.clone(),
                stage: declared[i].stage,
                priority: declared[i].priority,
                hash: sha256_hex16(&[sources[i].text.as_bytes()]),
                stateless: declared[i].stateless,
            })
            .collect();
        let pre = rules.iter().take_while(|r| r.stage == RuleStage::PreValidate).count();
        state.reorder(&order)?;
        let sources = order.iter().map(|&i| sources[i].clone()).collect();
        // The state that declared the rules is the first capture's: the pool starts with it.
        Ok(RuleSet {
            limits,
            version,
            rules,
            sources,
            pre,
            pool: Mutex::new(vec![state]),
            built: AtomicUsize::new(1),
        })
    }

    fn empty_with(limits: Limits) -> RuleSet {
        RuleSet {
            limits,
            version: sha256_hex16(&[]),
            rules: Vec::new(),
            sources: Vec::new(),
            pre: 0,
            pool: Mutex::new(Vec::new()),
            built: AtomicUsize::new(0),
        }
    }

    /// A set without rules (its version is the hash of nothing, `sha256:e3b0c44298fc1c14`).
    pub fn empty() -> RuleSet {
        RuleSet::empty_with(Limits::default())
    }

    /// `sha256:` and 16 hex digits of the SHA-256 over each file's name, a NUL byte, its content
    /// and a NUL byte, in file-name order. Changes whenever a file, its name, or the set changes.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The rules in evaluation order: stage, then priority, then name.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// The limits every rule call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many Lua states this set has built to evaluate rules, the one built at load included
    /// (a set without rules builds none). Loading builds exactly one, to declare the rules, and
    /// keeps it for the first evaluation: one capture at a time never builds another. Each
    /// evaluation running while every pooled state is busy builds one more (the pool keeps up to
    /// 64 idle). [`RuleSet::state_memory`]'s measuring state is not counted.
    pub fn states_built(&self) -> usize {
        self.built.load(Ordering::Relaxed)
    }

    /// The memory, in bytes, of one Lua state as the pool keeps it: the sandbox with every rule
    /// of the set loaded, after a full garbage collection. Builds a fresh state to measure it.
    pub fn state_memory(&self) -> Result<usize, RulesError> {
        let state = State::build(&self.sources, self.limits)?.0;
        let _ = state.lua().gc_collect();
        Ok(state.lua().used_memory())
    }

    /// Runs every pre-validate rule, in order; one verdict per rule.
    pub fn decide(&self, ctx: &RuleContext<'_>) -> Vec<RuleVerdict<'_>> {
        self.evaluate(0..self.pre, ctx, None)
    }

    /// Runs every post-capture rule, in order, with `ctx.outcome` set from `outcome`.
    pub fn observe(&self, ctx: &RuleContext<'_>, outcome: &Outcome) -> Vec<RuleVerdict<'_>> {
        self.evaluate(self.pre..self.rules.len(), ctx, Some(outcome))
    }

    fn take_state(&self) -> Result<State, RulesError> {
        let pooled = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match pooled {
            Some(s) => Ok(s),
            None => {
                self.built.fetch_add(1, Ordering::Relaxed);
                State::build(&self.sources, self.limits).map(|(s, _)| s)
            }
        }
    }

    fn give_state(&self, state: State) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < MAX_POOLED_STATES {
            pool.push(state);
        }
    }

    fn failed(rule: &RuleInfo, line: Option<u32>, message: String) -> RuleVerdict<'_> {
        let at = match line {
            Some(l) => format!("{}:{l}", rule.file),
            None => rule.file.clone(),
        };
        RuleVerdict {
            rule: Cow::Borrowed(&rule.name),
            file: Cow::Borrowed(&rule.file),
            hash: Cow::Borrowed(&rule.hash),
            decision: Decision::Hold { reason: format!("rule `{}` failed ({at}): {message}", rule.name) },
            tags: Vec::new(),
            notes: Vec::new(),
            follow_ups: Vec::new(),
            error: Some(message),
        }
    }

    fn evaluate<'s>(
        &'s self,
        range: Range<usize>,
        ctx: &RuleContext<'_>,
        outcome: Option<&Outcome>,
    ) -> Vec<RuleVerdict<'s>> {
        let Some(rules) = self.rules.get(range.clone()) else { return Vec::new() };
        if rules.is_empty() {
            return Vec::new();
        }
        let all_failed =
            |message: String| rules.iter().map(|r| RuleSet::failed(r, None, message.clone())).collect();
        let state = match self.take_state() {
            Ok(s) => s,
            Err(e) => return all_failed(format!("cannot prepare the rules: {e}")),
        };
        let cur = ctx.request.order.currency;
        let stage = if outcome.is_some() { RuleStage::PostCapture } else { RuleStage::PreValidate };
        let verdict = |rule: &'s RuleInfo, p: convert::Parts| RuleVerdict {
            rule: Cow::Borrowed(&rule.name),
            file: Cow::Borrowed(&rule.file),
            hash: Cow::Borrowed(&rule.hash),
            decision: p.decision,
            tags: p.tags,
            notes: p.notes,
            follow_ups: p.follow_ups,
            error: None,
        };
        // Every rule allowed unless told otherwise.
        let mut verdicts: Vec<RuleVerdict<'s>> =
            rules.iter().map(|r| verdict(r, convert::plain_allow())).collect();
        let mut delivered = vec![false; rules.len()];
        let start = range.start;
        let progress = context::Fill::new(ctx, outcome).and_then(|fill| {
            state.evaluate(range, stage, cur, &fill, |index, result| {
                let k = index.wrapping_sub(start);
                if let (Some(rule), Some(slot)) = (rules.get(k), verdicts.get_mut(k)) {
                    *slot = match result {
                        Ok(p) => verdict(rule, p),
                        Err(f) => RuleSet::failed(rule, f.line, f.message),
                    };
                    delivered[k] = true;
                }
            })
        });
        self.give_state(state);
        let progress = match progress {
            Ok(p) => p,
            Err(message) => return all_failed(format!("cannot build ctx: {message}")),
        };
        if let Some(stopped) = progress.stopped {
            let message = format!("not evaluated: the rules stage stopped: {stopped}");
            for (k, rule) in rules.iter().enumerate() {
                if start + k >= progress.reached && !delivered[k] {
                    verdicts[k] = RuleSet::failed(rule, None, message.clone());
                }
            }
        }
        verdicts
    }
}
