//! The `ctx` table rules receive, built once per `decide`/`observe` call.
//!
//! Creating tables through the Lua C API costs a lock and a registry reference per call, so the
//! context is handed over as two flat sequences, strings and scalars (integers and booleans),
//! and the prelude's `make_ctx` fills the state's read-only ctx tables from them, in the same Lua
//! call that then runs the rules. Each sequence is read in the order it was written:
//! [`Encoder::encode`] and `make_ctx` in `prelude.lua` must read and write the same fields in the
//! same order.

use std::fmt::Write as _;
use std::ops::Range;

use capture_core::{MetadataValue, Money, Outcome, RequestedAmount};
use mlua::{IntoLua, Lua, Table, Value};

use crate::RuleContext;

/// A string of the sequence: borrowed from the request, or made here (a range of `buf`).
enum Text<'a> {
    Borrowed(Option<&'a str>),
    Made(Range<usize>),
}

/// An integer or a boolean (nil where absent).
enum Scalar {
    Int(i64),
    Bool(Option<bool>),
}

impl IntoLua for Scalar {
    fn into_lua(self, _: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Scalar::Int(i) => Value::Integer(i),
            Scalar::Bool(Some(b)) => Value::Boolean(b),
            Scalar::Bool(None) => Value::Nil,
        })
    }
}

/// The two sequences `make_ctx` reads, in order.
pub(crate) struct Encoder<'a> {
    texts: Vec<Text<'a>>,
    /// The strings made here (decimal amounts, the clock, the failure kind), one after the other.
    buf: String,
    scalars: Vec<Scalar>,
}

impl<'a> Encoder<'a> {
    fn s(&mut self, v: Option<&'a str>) {
        self.texts.push(Text::Borrowed(v));
    }

    /// Adds a string made here.
    fn own(&mut self, v: Option<&str>) {
        match v {
            None => self.texts.push(Text::Borrowed(None)),
            Some(v) => {
                let start = self.buf.len();
                self.buf.push_str(v);
                self.texts.push(Text::Made(start..self.buf.len()));
            }
        }
    }

    fn int(&mut self, i: i64) {
        self.scalars.push(Scalar::Int(i));
    }

    fn bool(&mut self, b: Option<bool>) {
        self.scalars.push(Scalar::Bool(b));
    }

    /// The decimal text, then the minor units.
    fn money(&mut self, m: Money) -> Result<(), String> {
        let minor = m.to_minor().map_err(|e| format!("cannot hand {m} to rules: {e}"))?;
        let start = self.buf.len();
        // Writing to a String cannot fail; the text is `Money::to_decimal_string`'s.
        let _ = write!(self.buf, "{}", m.amount());
        self.texts.push(Text::Made(start..self.buf.len()));
        self.int(minor);
        Ok(())
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.int(i64::try_from(n).map_err(|_| format!("{n} items are too many"))?);
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
            texts: Vec::with_capacity(24 + 4 * n),
            buf: String::with_capacity(64 + 12 * n),
            scalars: Vec::with_capacity(16 + 3 * n),
        };
        e.s(Some(&req.platform));
        e.s(Some(&req.idempotency_key));
        e.s(req.description.as_deref());
        e.s(Some(cur.code()));
        e.int(i64::from(cur.exponent()));
        e.money(ctx.amount)?;
        e.bool(Some(matches!(req.amount, RequestedAmount::Full)));
        e.money(ctx.capturable)?;

        e.s(Some(&order.id));
        e.money(order.amount)?;
        e.money(order.surcharge)?;
        e.count(order.payments.len())?;
        for p in &order.payments {
            e.s(Some(&p.id));
            e.money(p.amount)?;
            e.s(p.method.as_deref());
            e.bool(p.partial_capture);
        }
        e.count(order.captures.len())?;
        for c in &order.captures {
            e.s(Some(&c.reference));
            e.s(c.payment_id.as_deref());
            e.money(c.amount)?;
        }

        e.bool(Some(req.shipping.is_some()));
        if let Some(s) = &req.shipping {
            e.s(Some(&s.company));
            e.s(Some(&s.method));
            e.s(Some(&s.tracking_number));
        }

        e.count(req.metadata.len())?;
        for (k, v) in &req.metadata {
            e.s(Some(k));
            // 0: a string follows; 1: a scalar follows.
            match v {
                MetadataValue::Text(t) => {
                    e.int(0);
                    e.s(Some(t));
                }
                MetadataValue::Integer(i) => {
                    e.int(1);
                    e.int(*i);
                }
                MetadataValue::Bool(b) => {
                    e.int(1);
                    e.bool(Some(*b));
                }
            }
        }

        let unix = i64::try_from(ctx.now.unix_seconds())
            .map_err(|_| format!("ctx.now {} is out of range", ctx.now.0))?;
        e.int(unix);
        e.own(Some(&ctx.now.to_rfc3339()));

        e.bool(Some(outcome.is_some()));
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
        self.bool(retryable);
        self.bool(Some(amount.is_some()));
        if let Some(m) = amount {
            self.money(m)?;
        }
        Ok(())
    }

    /// The two sequences as Lua tables (one C-API call each).
    pub(crate) fn into_tables(self, lua: &Lua) -> mlua::Result<(Table, Table)> {
        let buf = &self.buf;
        let texts = self.texts.into_iter().map(|t| match t {
            Text::Borrowed(s) => s,
            Text::Made(r) => buf.get(r),
        });
        Ok((lua.create_sequence_from(texts)?, lua.create_sequence_from(self.scalars)?))
    }
}
