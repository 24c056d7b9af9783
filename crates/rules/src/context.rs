//! The `ctx` table rules receive, filled once per `decide`/`observe` call.
//!
//! Each pooled state keeps its ctx tables (data tables behind read-only views, made by the
//! prelude) and Rust fills them directly through the Lua C API: `run_stage` (prelude) calls
//! [`fill`], a plain C function, with a light userdata pointing at a [`Fill`] and the list of
//! the state's data tables ([`slots`] names their positions; `CTX_SLOTS` in `prelude.lua` must
//! list them in the same order). Nothing is encoded in between: no intermediate sequences, no
//! Lua code that copies them, no Rust callback through mlua.
//!
//! [`fill`] runs inside `run_stage`'s protected call. A Lua error there (an allocation over the
//! memory limit) unwinds with `longjmp` across its Rust frames, so those frames hold nothing
//! that needs dropping (plain-old frames: references, integers, a stack buffer) and nothing in
//! them can panic: every value that could fail (a money amount that does not fit in an `i64`, a
//! clock out of range, a currency mismatch) is checked by [`Fill::new`] first, in ordinary Rust.

use std::ffi::{CStr, c_int};

use capture_core::{MetadataValue, Money, Outcome, RequestedAmount};
use mlua::ffi;

use crate::RuleContext;

/// Positions (1-based) of the ctx data tables in the list `run_stage` hands to [`fill`].
pub(crate) mod slots {
    pub(crate) const ROOT: i64 = 1;
    pub(crate) const CURRENCY: i64 = 2;
    pub(crate) const AMOUNT: i64 = 3;
    pub(crate) const CAPTURABLE: i64 = 4;
    pub(crate) const ORDER: i64 = 5;
    pub(crate) const ORDER_AMOUNT: i64 = 6;
    pub(crate) const SURCHARGE: i64 = 7;
    pub(crate) const PAYMENTS: i64 = 8;
    pub(crate) const CAPTURES: i64 = 9;
    pub(crate) const SHIPPING: i64 = 10;
    pub(crate) const SHIPPING_VIEW: i64 = 11;
    pub(crate) const NOW: i64 = 12;
    pub(crate) const OUTCOME: i64 = 13;
    pub(crate) const OUTCOME_VIEW: i64 = 14;
    pub(crate) const OUTCOME_AMOUNT: i64 = 15;
    pub(crate) const OUTCOME_AMOUNT_VIEW: i64 = 16;
    pub(crate) const METADATA_MT: i64 = 17;
    pub(crate) const PAYMENT_SLOTS: i64 = 18;
    pub(crate) const CAPTURE_SLOTS: i64 = 19;
    /// `entry_slot(slots, n)`: the `{data, view, amount data}` of list entry `n`, made on first use.
    pub(crate) const ENTRY_SLOT: i64 = 20;
}

/// Everything [`fill`] writes, checked beforehand so that filling cannot fail in Rust.
pub(crate) struct Fill<'a> {
    ctx: &'a RuleContext<'a>,
    outcome: Option<&'a Outcome>,
    /// `ctx.now.unix`, checked to fit.
    unix: i64,
    /// `ctx.now.rfc3339`.
    rfc3339: String,
    /// `ctx.outcome.kind` of a failed outcome (its serde name).
    kind: Option<String>,
}

/// The minor units of `m`, or the message of a ctx that cannot be built.
fn minor(m: Money) -> Result<i64, String> {
    m.to_minor().map_err(|e| format!("cannot hand {m} to rules: {e}"))
}

impl<'a> Fill<'a> {
    /// Checks every value [`fill`] needs (amounts in minor units, the clock, the currencies) and
    /// makes the few strings Rust has to make (the clock's text, a failure's kind).
    pub(crate) fn new(ctx: &'a RuleContext<'a>, outcome: Option<&'a Outcome>) -> Result<Fill<'a>, String> {
        let req = ctx.request;
        let order = &req.order;
        let cur = order.currency;
        for (what, m) in [("amount", ctx.amount), ("capturable", ctx.capturable)] {
            if m.currency() != cur {
                return Err(format!("ctx.{what} is in {} but the order is in {cur}", m.currency()));
            }
        }
        for m in [ctx.amount, ctx.capturable, order.amount, order.surcharge] {
            minor(m)?;
        }
        for p in &order.payments {
            minor(p.amount)?;
        }
        for c in &order.captures {
            minor(c.amount)?;
        }
        let mut kind = None;
        match outcome {
            Some(Outcome::Captured { amount, .. } | Outcome::Pending { amount, .. }) => {
                minor(*amount)?;
            }
            Some(Outcome::Failed { kind: k, .. }) => {
                kind = Some(
                    serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "unknown".to_owned()),
                );
            }
            _ => {}
        }
        let unix = i64::try_from(ctx.now.unix_seconds())
            .map_err(|_| format!("ctx.now {} is out of range", ctx.now.0))?;
        Ok(Fill { ctx, outcome, unix, rfc3339: ctx.now.to_rfc3339(), kind })
    }
}

// The C-API helpers below push onto or set fields of the table at stack index `t`.

/// Pushes a string (`nil` for `None`).
///
/// # Safety
/// `l` is a valid Lua state with a free stack slot.
unsafe fn push_str(l: *mut ffi::lua_State, s: Option<&[u8]>) {
    // SAFETY: the caller's contract; the pointer and length describe `s`.
    unsafe {
        match s {
            Some(s) => {
                ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len());
            }
            None => ffi::lua_pushnil(l),
        }
    }
}

/// `t[key] = s` (raw: the data tables have no metatable).
///
/// # Safety
/// `l` is a valid Lua state with two free stack slots; `t` is an absolute index of a table.
unsafe fn set_str(l: *mut ffi::lua_State, t: c_int, key: &CStr, s: Option<&str>) {
    // SAFETY: the caller's contract.
    unsafe {
        push_str(l, s.map(str::as_bytes));
        ffi::lua_setfield(l, t, key.as_ptr());
    }
}

/// `t[key] = i`.
///
/// # Safety
/// As [`set_str`].
unsafe fn set_int(l: *mut ffi::lua_State, t: c_int, key: &CStr, i: i64) {
    // SAFETY: the caller's contract.
    unsafe {
        ffi::lua_pushinteger(l, i);
        ffi::lua_setfield(l, t, key.as_ptr());
    }
}

/// `t[key] = b` (`nil` for `None`).
///
/// # Safety
/// As [`set_str`].
unsafe fn set_bool(l: *mut ffi::lua_State, t: c_int, key: &CStr, b: Option<bool>) {
    // SAFETY: the caller's contract.
    unsafe {
        match b {
            Some(b) => ffi::lua_pushboolean(l, c_int::from(b)),
            None => ffi::lua_pushnil(l),
        }
        ffi::lua_setfield(l, t, key.as_ptr());
    }
}

/// `t.value, t.minor = text, minor` of `m` (checked by [`Fill::new`]).
///
/// # Safety
/// As [`set_str`].
unsafe fn set_money(l: *mut ffi::lua_State, t: c_int, m: Money) {
    let mut buf = [0u8; 64];
    // SAFETY: the caller's contract.
    unsafe {
        push_str(l, Some(m.write_decimal(&mut buf).as_bytes()));
        ffi::lua_setfield(l, t, c"value".as_ptr());
        set_int(l, t, c"minor", m.to_minor().unwrap_or(0));
    }
}

/// Pushes `D[slot]` and returns its absolute index.
///
/// # Safety
/// `l` is a valid Lua state with a free stack slot; `d` is an absolute index of a table.
unsafe fn push_slot(l: *mut ffi::lua_State, d: c_int, slot: i64) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        ffi::lua_rawgeti(l, d, slot);
        ffi::lua_gettop(l)
    }
}

/// Sets list `list` (absolute index) to `count` entries, filling each entry's data tables
/// (`{data, view, amount data}` from `entry_slot`, whose view becomes the list's item) with
/// `each`, and clears the entries of an earlier, longer list.
///
/// # Safety
/// `l` is a valid Lua state; `d` and `list` are absolute indexes of tables; `slots` is the
/// position of the entry slots in `d`.
unsafe fn fill_list<T>(
    l: *mut ffi::lua_State,
    d: c_int,
    list: c_int,
    slots: i64,
    items: &[T],
    each: impl Fn(c_int, c_int, &T),
) {
    // SAFETY: the caller's contract; every push below is popped again before the next item.
    unsafe {
        let slots_at = push_slot(l, d, slots);
        let mut n: i64 = 0;
        for item in items {
            n += 1;
            if ffi::lua_rawgeti(l, slots_at, n) != ffi::LUA_TTABLE {
                ffi::lua_settop(l, slots_at);
                ffi::lua_rawgeti(l, d, slots::ENTRY_SLOT);
                ffi::lua_pushvalue(l, slots_at);
                ffi::lua_pushinteger(l, n);
                ffi::lua_call(l, 2, 1);
            }
            let entry = ffi::lua_gettop(l);
            ffi::lua_rawgeti(l, entry, 1);
            ffi::lua_rawgeti(l, entry, 3);
            each(entry + 1, entry + 2, item);
            ffi::lua_rawgeti(l, entry, 2);
            ffi::lua_rawseti(l, list, n);
            ffi::lua_settop(l, slots_at);
        }
        let old = i64::try_from(ffi::lua_rawlen(l, list)).unwrap_or(0);
        for k in n + 1..=old {
            ffi::lua_pushnil(l);
            ffi::lua_rawseti(l, list, k);
        }
        ffi::lua_settop(l, slots_at - 1);
    }
}

/// `fill(f, D)`, a Lua C function: fills the state's ctx data tables (the sequence `D`, see
/// [`slots`]) from the [`Fill`] the light userdata `f` points at; returns the capture's currency
/// code (what `capture.minor` memoises under).
///
/// # Safety
/// Called by Lua only, from `run_stage`, with `f` pointing at a live [`Fill`] and `D` the
/// state's slot list; see the module comment for why its frames may be unwound by `longjmp`.
pub(crate) unsafe extern "C-unwind" fn fill(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: `run_stage` passes a light userdata made from `&Fill` by `State::evaluate`, which
    // outlives the call; the prelude never hands `fill` or the pointer to rule code.
    let f = unsafe { &*(ffi::lua_touserdata(l, 1) as *const Fill<'_>) };
    // SAFETY: the contract of this function: argument 2 is the slot list. 24 slots cover the
    // deepest use below (the list, six tables, a key and a value, an entry and its tables).
    unsafe {
        ffi::luaL_checkstack(l, 24, std::ptr::null());
        fill_all(l, 2, f);
        push_str(l, Some(f.ctx.request.order.currency.code().as_bytes()));
    }
    1
}

/// The body of [`fill`].
///
/// # Safety
/// As [`fill`]; `d` is the absolute index of the slot list.
unsafe fn fill_all(l: *mut ffi::lua_State, d: c_int, f: &Fill<'_>) {
    let ctx = f.ctx;
    let req = ctx.request;
    let order = &req.order;
    let cur = order.currency;
    // SAFETY: the contract of `fill`; each block pops what it pushed.
    unsafe {
        let root = push_slot(l, d, slots::ROOT);
        set_str(l, root, c"platform", Some(&req.platform));
        set_str(l, root, c"idempotency_key", Some(&req.idempotency_key));
        set_str(l, root, c"description", req.description.as_deref());
        set_bool(l, root, c"requested_full", Some(matches!(req.amount, RequestedAmount::Full)));

        let t = push_slot(l, d, slots::CURRENCY);
        set_str(l, t, c"code", Some(cur.code()));
        set_int(l, t, c"exponent", i64::from(cur.exponent()));
        let t = push_slot(l, d, slots::AMOUNT);
        set_money(l, t, ctx.amount);
        let t = push_slot(l, d, slots::CAPTURABLE);
        set_money(l, t, ctx.capturable);
        let t = push_slot(l, d, slots::ORDER);
        set_str(l, t, c"id", Some(&order.id));
        let t = push_slot(l, d, slots::ORDER_AMOUNT);
        set_money(l, t, order.amount);
        let t = push_slot(l, d, slots::SURCHARGE);
        set_money(l, t, order.surcharge);
        ffi::lua_settop(l, root);

        let list = push_slot(l, d, slots::PAYMENTS);
        fill_list(l, d, list, slots::PAYMENT_SLOTS, &order.payments, |data, money, p| {
            set_str(l, data, c"id", Some(&p.id));
            set_str(l, data, c"method", p.method.as_deref());
            set_bool(l, data, c"partial_capture", p.partial_capture);
            set_money(l, money, p.amount);
        });
        ffi::lua_settop(l, root);
        let list = push_slot(l, d, slots::CAPTURES);
        fill_list(l, d, list, slots::CAPTURE_SLOTS, &order.captures, |data, money, c| {
            set_str(l, data, c"reference", Some(&c.reference));
            set_str(l, data, c"payment_id", c.payment_id.as_deref());
            set_money(l, money, c.amount);
        });
        ffi::lua_settop(l, root);

        match &req.shipping {
            Some(s) => {
                let t = push_slot(l, d, slots::SHIPPING);
                set_str(l, t, c"company", Some(&s.company));
                set_str(l, t, c"method", Some(&s.method));
                set_str(l, t, c"tracking_number", Some(&s.tracking_number));
                ffi::lua_rawgeti(l, d, slots::SHIPPING_VIEW);
            }
            None => ffi::lua_pushnil(l),
        }
        ffi::lua_setfield(l, root, c"shipping".as_ptr());
        ffi::lua_settop(l, root);

        // A new table: its keys differ from one capture to the next.
        let mt = push_slot(l, d, slots::METADATA_MT);
        ffi::lua_createtable(l, 0, c_int::try_from(req.metadata.len()).unwrap_or(0));
        let t = ffi::lua_gettop(l);
        for (k, v) in &req.metadata {
            push_str(l, Some(k.as_bytes()));
            match v {
                MetadataValue::Text(s) => push_str(l, Some(s.as_bytes())),
                MetadataValue::Integer(i) => ffi::lua_pushinteger(l, *i),
                MetadataValue::Bool(b) => ffi::lua_pushboolean(l, c_int::from(*b)),
            }
            ffi::lua_rawset(l, t);
        }
        ffi::lua_setfield(l, mt, c"__index".as_ptr());
        ffi::lua_settop(l, root);

        let t = push_slot(l, d, slots::NOW);
        set_int(l, t, c"unix", f.unix);
        set_str(l, t, c"rfc3339", Some(&f.rfc3339));
        ffi::lua_settop(l, root);

        match f.outcome {
            Some(o) => {
                fill_outcome(l, d, o, f.kind.as_deref());
                ffi::lua_rawgeti(l, d, slots::OUTCOME_VIEW);
            }
            None => ffi::lua_pushnil(l),
        }
        ffi::lua_setfield(l, root, c"outcome".as_ptr());
        ffi::lua_settop(l, root - 1);
    }
}

/// Fills `ctx.outcome`: status, kind, message, by, code, platform_capture_id, retryable, amount.
///
/// # Safety
/// As [`fill_all`].
unsafe fn fill_outcome(l: *mut ffi::lua_State, d: c_int, o: &Outcome, kind: Option<&str>) {
    let (message, by, code, capture_id, retryable, amount) = match o {
        Outcome::Captured { amount, platform_capture_id }
        | Outcome::Pending { amount, platform_capture_id } => {
            (None, None, None, platform_capture_id.as_deref(), None, Some(*amount))
        }
        Outcome::Rejected { by, code, reason } => {
            (Some(reason.as_str()), Some(by.as_str()), Some(code.as_str()), None, None, None)
        }
        Outcome::Held { by, reason } => (Some(reason.as_str()), Some(by.as_str()), None, None, None, None),
        Outcome::AlreadyCaptured { platform_code, message } => {
            (Some(message.as_str()), None, platform_code.as_deref(), None, None, None)
        }
        Outcome::Failed { retryable, platform_code, message, .. } => {
            (Some(message.as_str()), None, platform_code.as_deref(), None, Some(*retryable), None)
        }
    };
    // SAFETY: the contract of `fill_all`; the caller resets the stack afterwards.
    unsafe {
        let t = push_slot(l, d, slots::OUTCOME);
        set_str(l, t, c"status", Some(o.status()));
        set_str(l, t, c"kind", kind);
        set_str(l, t, c"message", message);
        set_str(l, t, c"by", by);
        set_str(l, t, c"code", code);
        set_str(l, t, c"platform_capture_id", capture_id);
        set_bool(l, t, c"retryable", retryable);
        match amount {
            Some(m) => {
                let a = push_slot(l, d, slots::OUTCOME_AMOUNT);
                set_money(l, a, m);
                ffi::lua_rawgeti(l, d, slots::OUTCOME_AMOUNT_VIEW);
            }
            None => ffi::lua_pushnil(l),
        }
        ffi::lua_setfield(l, t, c"amount".as_ptr());
    }
}
