//! The `ctx` table rules receive: built once per `decide`/`observe` call, then frozen.

use capture_core::{MetadataValue, Money, Outcome};
use mlua::{Lua, Table, Value};

use crate::RuleContext;

type R<T> = mlua::Result<T>;

fn money(lua: &Lua, m: Money) -> R<Table> {
    let t = lua.create_table_with_capacity(0, 2)?;
    t.raw_set("value", m.to_decimal_string())?;
    let minor = m.to_minor().map_err(|e| mlua::Error::runtime(format!("cannot hand {m} to rules: {e}")))?;
    t.raw_set("minor", minor)?;
    Ok(t)
}

fn opt_money(lua: &Lua, m: Option<Money>) -> R<Value> {
    m.map(|m| money(lua, m).map(Value::Table)).transpose().map(Option::unwrap_or_default)
}

/// The raw (still writable) ctx table. `outcome` is given for post-capture rules.
pub(crate) fn build(lua: &Lua, ctx: &RuleContext<'_>, outcome: Option<&Outcome>) -> R<Table> {
    let req = ctx.request;
    let order = &req.order;
    let cur = order.currency;
    for (what, m) in [("amount", ctx.amount), ("capturable", ctx.capturable)] {
        if m.currency() != cur {
            return Err(mlua::Error::runtime(format!(
                "ctx.{what} is in {} but the order is in {cur}",
                m.currency()
            )));
        }
    }

    let t = lua.create_table_with_capacity(0, 14)?;
    t.raw_set("platform", req.platform.as_str())?;
    t.raw_set("idempotency_key", req.idempotency_key.as_str())?;
    t.raw_set("description", req.description.as_deref())?;

    let currency = lua.create_table_with_capacity(0, 2)?;
    currency.raw_set("code", cur.code())?;
    currency.raw_set("exponent", i64::from(cur.exponent()))?;
    t.raw_set("currency", currency)?;

    t.raw_set("amount", money(lua, ctx.amount)?)?;
    t.raw_set("requested_full", matches!(req.amount, capture_core::RequestedAmount::Full))?;
    t.raw_set("capturable", money(lua, ctx.capturable)?)?;

    let o = lua.create_table_with_capacity(0, 5)?;
    o.raw_set("id", order.id.as_str())?;
    o.raw_set("amount", money(lua, order.amount)?)?;
    o.raw_set("surcharge", money(lua, order.surcharge)?)?;
    let payments = lua.create_table_with_capacity(order.payments.len(), 0)?;
    for p in &order.payments {
        let pt = lua.create_table_with_capacity(0, 4)?;
        pt.raw_set("id", p.id.as_str())?;
        pt.raw_set("amount", money(lua, p.amount)?)?;
        pt.raw_set("method", p.method.as_deref())?;
        pt.raw_set("partial_capture", p.partial_capture)?;
        payments.raw_push(pt)?;
    }
    o.raw_set("payments", payments)?;
    let captures = lua.create_table_with_capacity(order.captures.len(), 0)?;
    for c in &order.captures {
        let ct = lua.create_table_with_capacity(0, 3)?;
        ct.raw_set("reference", c.reference.as_str())?;
        ct.raw_set("payment_id", c.payment_id.as_deref())?;
        ct.raw_set("amount", money(lua, c.amount)?)?;
        captures.raw_push(ct)?;
    }
    o.raw_set("captures", captures)?;
    t.raw_set("order", o)?;

    if let Some(s) = &req.shipping {
        let st = lua.create_table_with_capacity(0, 3)?;
        st.raw_set("company", s.company.as_str())?;
        st.raw_set("method", s.method.as_str())?;
        st.raw_set("tracking_number", s.tracking_number.as_str())?;
        t.raw_set("shipping", st)?;
    }

    let meta = lua.create_table_with_capacity(0, req.metadata.len())?;
    for (k, v) in &req.metadata {
        match v {
            MetadataValue::Text(s) => meta.raw_set(k.as_str(), s.as_str())?,
            MetadataValue::Integer(i) => meta.raw_set(k.as_str(), *i)?,
            MetadataValue::Bool(b) => meta.raw_set(k.as_str(), *b)?,
        }
    }
    t.raw_set("metadata", meta)?;

    let now = lua.create_table_with_capacity(0, 2)?;
    let unix = i64::try_from(ctx.now.unix_seconds())
        .map_err(|_| mlua::Error::runtime(format!("ctx.now {} is out of range", ctx.now.0)))?;
    now.raw_set("unix", unix)?;
    now.raw_set("rfc3339", ctx.now.to_rfc3339())?;
    t.raw_set("now", now)?;

    if let Some(outcome) = outcome {
        t.raw_set("outcome", outcome_table(lua, outcome)?)?;
    }
    Ok(t)
}

fn outcome_table(lua: &Lua, outcome: &Outcome) -> R<Table> {
    let t = lua.create_table_with_capacity(0, 8)?;
    t.raw_set("status", outcome.status())?;
    match outcome {
        Outcome::Captured { amount, platform_capture_id }
        | Outcome::Pending { amount, platform_capture_id } => {
            t.raw_set("amount", opt_money(lua, Some(*amount))?)?;
            t.raw_set("platform_capture_id", platform_capture_id.as_deref())?;
        }
        Outcome::Rejected { by, code, reason } => {
            t.raw_set("by", by.as_str())?;
            t.raw_set("code", code.as_str())?;
            t.raw_set("message", reason.as_str())?;
        }
        Outcome::Held { by, reason } => {
            t.raw_set("by", by.as_str())?;
            t.raw_set("message", reason.as_str())?;
        }
        Outcome::Failed { kind, retryable, platform_code, message } => {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            t.raw_set("kind", kind)?;
            t.raw_set("retryable", *retryable)?;
            t.raw_set("code", platform_code.as_deref())?;
            t.raw_set("message", message.as_str())?;
        }
    }
    Ok(t)
}
