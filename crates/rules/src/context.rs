//! The `ctx` table rules receive, built once per `decide`/`observe` call.
//!
//! Creating tables through the Lua C API costs a lock and a registry reference per call, so the
//! context is handed over as four flat sequences (borrowed strings, owned strings, integers,
//! booleans) and the prelude's `make_ctx` builds the nested read-only tables in one Lua call.
//! [`Encoder`] and `make_ctx` in `prelude.lua` must read and write the same fields in the same
//! order.

use std::fmt::Write as _;
use std::ops::Range;

use capture_core::{MetadataValue, Money, Outcome, RequestedAmount};
use mlua::{Lua, Table};

use crate::RuleContext;

/// The four sequences `make_ctx` reads, in order.
pub(crate) struct Encoder<'a> {
    /// Strings borrowed from the request (nil where absent).
    strs: Vec<Option<&'a str>>,
    /// Strings made here (decimal amounts, the clock, the failure kind), as ranges of `buf`.
    owned: Vec<Option<Range<usize>>>,
    buf: String,
    ints: Vec<i64>,
    bools: Vec<Option<bool>>,
}

impl<'a> Encoder<'a> {
    fn s(&mut self, v: Option<&'a str>) {
        self.strs.push(v);
    }

    /// Adds a string made here.
    fn own(&mut self, v: Option<&str>) {
        self.owned.push(v.map(|v| {
            let start = self.buf.len();
            self.buf.push_str(v);
            start..self.buf.len()
        }));
    }

    fn money(&mut self, m: Money) -> Result<(), String> {
        let minor = m.to_minor().map_err(|e| format!("cannot hand {m} to rules: {e}"))?;
        let start = self.buf.len();
        // Writing to a String cannot fail; the text is `Money::to_decimal_string`'s.
        let _ = write!(self.buf, "{}", m.amount());
        self.owned.push(Some(start..self.buf.len()));
        self.ints.push(minor);
        Ok(())
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.ints.push(i64::try_from(n).map_err(|_| format!("{n} items are too many"))?);
        Ok(())
    }

    /// Encodes everything `ctx` shows; `outcome` for post-capture rules.
    pub(crate) fn encode(ctx: &RuleContext<'a>, outcome: Option<&'a Outcome>) -> Result<Encoder<'a>, String> {
        let req = ctx.request;
        let order = &req.order;
        let cur = order.currency;
        for (what, m) in [("amount", ctx.amount), ("capturable", ctx.capturable)] {
            if m.currency() != cur {
                return Err(format!("ctx.{what} is in {} but the order is in {cur}", m.currency()));
            }
        }
        // Sized for the usual capture, so that the vectors rarely grow.
        let n = order.payments.len() + order.captures.len() + req.metadata.len();
        let mut e = Encoder {
            strs: Vec::with_capacity(16 + 3 * n),
            owned: Vec::with_capacity(8 + n),
            buf: String::with_capacity(64 + 12 * n),
            ints: Vec::with_capacity(12 + 2 * n),
            bools: Vec::with_capacity(6 + n),
        };
        e.s(Some(&req.platform));
        e.s(Some(&req.idempotency_key));
        e.s(req.description.as_deref());
        e.s(Some(cur.code()));
        e.ints.push(i64::from(cur.exponent()));
        e.money(ctx.amount)?;
        e.bools.push(Some(matches!(req.amount, RequestedAmount::Full)));
        e.money(ctx.capturable)?;

        e.s(Some(&order.id));
        e.money(order.amount)?;
        e.money(order.surcharge)?;
        e.count(order.payments.len())?;
        for p in &order.payments {
            e.s(Some(&p.id));
            e.money(p.amount)?;
            e.s(p.method.as_deref());
            e.bools.push(p.partial_capture);
        }
        e.count(order.captures.len())?;
        for c in &order.captures {
            e.s(Some(&c.reference));
            e.s(c.payment_id.as_deref());
            e.money(c.amount)?;
        }

        e.bools.push(Some(req.shipping.is_some()));
        if let Some(s) = &req.shipping {
            e.s(Some(&s.company));
            e.s(Some(&s.method));
            e.s(Some(&s.tracking_number));
        }

        e.count(req.metadata.len())?;
        for (k, v) in &req.metadata {
            e.s(Some(k));
            match v {
                MetadataValue::Text(t) => {
                    e.ints.push(0);
                    e.s(Some(t));
                }
                MetadataValue::Integer(i) => {
                    e.ints.push(1);
                    e.ints.push(*i);
                }
                MetadataValue::Bool(b) => {
                    e.ints.push(2);
                    e.bools.push(Some(*b));
                }
            }
        }

        let unix = i64::try_from(ctx.now.unix_seconds())
            .map_err(|_| format!("ctx.now {} is out of range", ctx.now.0))?;
        e.ints.push(unix);
        e.own(Some(&ctx.now.to_rfc3339()));

        e.bools.push(Some(outcome.is_some()));
        if let Some(o) = outcome {
            e.encode_outcome(o)?;
        }
        Ok(e)
    }

    /// status, kind, message, by, code, platform_capture_id, retryable, amount.
    fn encode_outcome(&mut self, o: &'a Outcome) -> Result<(), String> {
        let (kind, message, by, code, capture_id, retryable, amount) = match o {
            Outcome::Captured { amount, platform_capture_id }
            | Outcome::Pending { amount, platform_capture_id } => {
                (None, None, None, None, platform_capture_id.as_deref(), None, Some(*amount))
            }
            Outcome::Rejected { by, code, reason } => {
                (None, Some(reason.as_str()), Some(by.as_str()), Some(code.as_str()), None, None, None)
            }
            Outcome::Held { by, reason } => {
                (None, Some(reason.as_str()), Some(by.as_str()), None, None, None, None)
            }
            Outcome::AlreadyCaptured { platform_code, message } => {
                (None, Some(message.as_str()), None, platform_code.as_deref(), None, None, None)
            }
            Outcome::Failed { kind, retryable, platform_code, message, .. } => {
                let kind = serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned());
                (
                    Some(kind),
                    Some(message.as_str()),
                    None,
                    platform_code.as_deref(),
                    None,
                    Some(*retryable),
                    None,
                )
            }
        };
        self.s(Some(o.status()));
        self.own(kind.as_deref());
        self.s(message);
        self.s(by);
        self.s(code);
        self.s(capture_id);
        self.bools.push(retryable);
        self.bools.push(Some(amount.is_some()));
        if let Some(m) = amount {
            self.money(m)?;
        }
        Ok(())
    }

    /// The four sequences as Lua tables (one C-API call each).
    pub(crate) fn into_tables(self, lua: &Lua) -> mlua::Result<(Table, Table, Table, Table)> {
        let buf = &self.buf;
        let owned = self.owned.into_iter().map(|r| r.and_then(|r| buf.get(r)));
        Ok((
            lua.create_sequence_from(self.strs)?,
            lua.create_sequence_from(owned)?,
            lua.create_sequence_from(self.ints)?,
            lua.create_sequence_from(self.bools)?,
        ))
    }
}
