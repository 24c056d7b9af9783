//! What a rule returned, turned into Rust values. Only raw table access (no metamethods run);
//! Lua iteration order never reaches an output.

use std::collections::BTreeMap;

use capture_core::{Currency, Decision, Money};
use mlua::Value;

use crate::sandbox::{Returned, describe};

/// A rule's answer before it becomes a [`RuleVerdict`](crate::RuleVerdict).
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) decision: Decision,
    pub(crate) tags: Vec<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) follow_ups: Vec<BTreeMap<String, String>>,
}

const CONSTRUCTORS: &str = "allow(), reject(code, reason), hold(reason) or adjust(amount)";

/// Most entries in `tags`, `notes` or `follow_ups`.
pub(crate) const MAX_ITEMS: usize = 64;
/// Most fields in one follow-up.
pub(crate) const MAX_FIELDS: usize = 16;
/// Longest tag, reject code or follow-up key, in bytes.
pub(crate) const MAX_NAME: usize = 100;
/// Longest reason, note or follow-up value, in bytes.
pub(crate) const MAX_TEXT: usize = 1000;

/// What a plain `allow()` (or nothing, from `observe`) becomes.
pub(crate) fn plain_allow() -> Parts {
    Parts { decision: Decision::Allow, tags: Vec::new(), notes: Vec::new(), follow_ups: Vec::new() }
}

/// True for the marker `take_apart` (prelude) returns for a plain allow.
fn is_plain_allow(r: &Returned) -> bool {
    matches!(r[0], Value::Integer(0))
}

fn lua_err(e: &mlua::Error) -> String {
    e.to_string()
}

fn text(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => s.to_str().map(|s| s.to_owned()).map_err(|_| format!("{what} is not UTF-8 text")),
        other => Err(format!("{what} must be a string, not {}", describe(other))),
    }
}

/// [`text`] of at most `max` bytes.
fn short_text(v: &Value, what: &str, max: usize) -> Result<String, String> {
    if let Value::String(s) = v {
        let len = s.as_bytes().len();
        if len > max {
            return Err(format!("{what} is {len} bytes long; at most {max} are allowed"));
        }
    }
    text(v, what)
}

/// The values of a sequence `{v1, v2, ...}`; refuses holes and non-integer keys.
fn sequence(v: &Value, what: &str) -> Result<Vec<Value>, String> {
    let t = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Table(t) => t,
        other => return Err(format!("{what} must be a list {{...}}, not {}", describe(other))),
    };
    let len = t.raw_len();
    if len > MAX_ITEMS {
        return Err(format!("{what} has {len} entries; at most {MAX_ITEMS} are allowed"));
    }
    let mut count = 0usize;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| lua_err(&e))?;
        let in_range = matches!(k, Value::Integer(i) if i >= 1 && usize::try_from(i).is_ok_and(|i| i <= len));
        if !in_range {
            return Err(format!("{what} must be a list {{...}} without holes or named fields"));
        }
        count += 1;
    }
    if count != len {
        return Err(format!("{what} must be a list {{...}} without holes"));
    }
    (1..=len).map(|i| t.raw_get::<Value>(i).map_err(|e| lua_err(&e))).collect()
}

fn strings(v: &Value, what: &str, max: usize) -> Result<Vec<String>, String> {
    sequence(v, what)?
        .iter()
        .enumerate()
        .map(|(i, s)| short_text(s, &format!("{what}[{}]", i + 1), max))
        .collect()
}

fn follow_ups(v: &Value) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut out = Vec::new();
    for (i, item) in sequence(v, "follow_ups")?.into_iter().enumerate() {
        let what = format!("follow_ups[{}]", i + 1);
        let Value::Table(t) = item else {
            return Err(format!(
                "{what} must be a table such as {{ action = \"void_remaining\" }}, not {}",
                describe(&item)
            ));
        };
        let mut map = BTreeMap::new();
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| lua_err(&e))?;
            if map.len() == MAX_FIELDS {
                return Err(format!("{what} has more than {MAX_FIELDS} fields"));
            }
            let key = match &k {
                Value::String(_) => short_text(&k, &format!("a key of {what}"), MAX_NAME)?,
                other => return Err(format!("{what} has a key that is not a string ({})", describe(other))),
            };
            let value = match &v {
                Value::String(_) => short_text(&v, &format!("{what}.{key}"), MAX_TEXT)?,
                Value::Integer(n) => n.to_string(),
                Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "{what}.{key} must be a string, integer or boolean, not {}",
                        describe(other)
                    ));
                }
            };
            map.insert(key, value);
        }
        if map.get("action").is_none_or(|a| a.is_empty()) {
            return Err(format!("{what} needs an `action`, e.g. {{ action = \"void_remaining\" }}"));
        }
        out.push(map);
    }
    Ok(out)
}

/// Tags (sorted, unique), notes (in order) and follow-ups of a result table.
fn extras(decision: Decision, tags: &Value, notes: &Value, follow_ups: &Value) -> Result<Parts, String> {
    let mut tags = strings(tags, "tags", MAX_NAME)?;
    if let Some(empty) = tags.iter().position(String::is_empty) {
        return Err(format!("tags[{}] is empty", empty + 1));
    }
    tags.sort();
    tags.dedup();
    let notes = strings(notes, "notes", MAX_TEXT)?;
    let follow_ups = self::follow_ups(follow_ups)?;
    Ok(Parts { decision, tags, notes, follow_ups })
}

/// The amount of an adjust: a decimal string or integer minor units, never a float.
fn adjust_amount(v: &Value, cur: Currency) -> Result<Money, String> {
    match v {
        Value::String(_) => {
            let s = text(v, "adjust amount")?;
            Money::parse(&s, cur).map_err(|e| format!("adjust amount: {e}"))
        }
        Value::Integer(minor) => Ok(Money::from_minor(*minor, cur)),
        Value::Number(n) => Err(format!(
            "adjust amount {n} is a float; use a decimal string such as \"150.00\" or integer minor units"
        )),
        Value::Nil => Err("adjust needs an `amount`".into()),
        other => Err(format!(
            "adjust amount must be a decimal string or integer minor units, not {}",
            describe(other)
        )),
    }
}

/// A rule's result as `take_apart` (prelude) splits it: `[true, unknown keys, decision, code,
/// reason, amount, tags, notes, follow_ups]` for a table, `[false, value, ...]` otherwise.
struct Fields {
    unknown: Value,
    decision: Value,
    code: Value,
    reason: Value,
    amount: Value,
    tags: Value,
    notes: Value,
    follow_ups: Value,
}

fn fields(r: Returned) -> Result<Fields, Value> {
    let [is_table, unknown, decision, code, reason, amount, tags, notes, follow_ups] = r;
    if matches!(is_table, Value::Boolean(true)) {
        Ok(Fields { unknown, decision, code, reason, amount, tags, notes, follow_ups })
    } else {
        Err(unknown)
    }
}

fn refuse_unknown(unknown: &Value, allowed: &str, what: &str) -> Result<(), String> {
    match unknown {
        Value::Nil => Ok(()),
        v => Err(format!("{what} has unknown field(s) {} (allowed: {allowed})", text(v, "the key list")?)),
    }
}

/// A pre-validate rule's return value.
pub(crate) fn decision(r: Returned, cur: Currency) -> Result<Parts, String> {
    if is_plain_allow(&r) {
        return Ok(plain_allow());
    }
    let f = match fields(r) {
        Ok(f) => f,
        Err(Value::Nil) => return Err(format!("decide returned nothing; return {CONSTRUCTORS}")),
        Err(other) => {
            return Err(format!(
                "decide returned {}, not a decision; return {CONSTRUCTORS}",
                describe(&other)
            ));
        }
    };
    refuse_unknown(
        &f.unknown,
        "decision, code, reason, amount, tags, notes, follow_ups",
        "the decision table",
    )?;
    let kind = match &f.decision {
        Value::Nil => return Err(format!("the returned table has no `decision`; return {CONSTRUCTORS}")),
        other => text(other, "`decision`")?,
    };
    let decision = match kind.as_str() {
        "allow" => Decision::Allow,
        "reject" => Decision::Reject {
            code: short_text(&f.code, "reject code", MAX_NAME)?,
            reason: short_text(&f.reason, "reject reason", MAX_TEXT)?,
        },
        "hold" => Decision::Hold { reason: short_text(&f.reason, "hold reason", MAX_TEXT)? },
        "adjust" => Decision::Adjust { amount: adjust_amount(&f.amount, cur)? },
        other => return Err(format!("unknown decision `{other}`; return {CONSTRUCTORS}")),
    };
    extras(decision, &f.tags, &f.notes, &f.follow_ups)
}

/// A post-capture rule's return value: nil or `{ tags = ..., notes = ..., follow_ups = ... }`.
pub(crate) fn observation(r: Returned) -> Result<Parts, String> {
    if is_plain_allow(&r) {
        return Ok(plain_allow());
    }
    let f = match fields(r) {
        Ok(f) => f,
        Err(Value::Nil) => return Ok(plain_allow()),
        Err(other) => {
            return Err(format!(
                "observe returned {}; return nil or observe_result{{ tags = ..., notes = ..., follow_ups = ... }}",
                describe(&other)
            ));
        }
    };
    match &f.decision {
        Value::Nil => {}
        v if text(v, "`decision`").is_ok_and(|d| d == "allow") => {}
        _ => return Err("post-capture rules cannot decide; return nil or observe_result{...}".into()),
    }
    refuse_unknown(&f.unknown, "decision, tags, notes, follow_ups", "the observe result")?;
    extras(Decision::Allow, &f.tags, &f.notes, &f.follow_ups)
}
