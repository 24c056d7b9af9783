-- capture-rules sandbox prelude.
--
-- Runs once per Lua state, with the state's real globals, before any rule is loaded. It hardens the
-- standard library tables, builds the sandbox globals rule code sees (through each rule's own
-- read-only environment), and returns the helpers the Rust side keeps. Rule code never sees this
-- chunk's locals.
--
-- Arguments (from Rust):
--   raw_minor(text) -> minor | nil, message   decimal string to minor units of the capture's currency
--   is_fatal(err)   -> boolean                true once the instruction budget or the memory limit
--                                             was hit in the current rule call (sticky)
--   step_limit      integer                   most steps a C library loop may risk (pattern
--                                             matching, table.sort, table.move...): the
--                                             instruction budget
--   begin(budget, i)                          a fresh instruction budget for rule i (a C
--                                             function; `budget` is the light userdata below)
--   deliver(i, ok, ...) -> i                  hands Rust the results of rule i (only when they
--                                             are not a plain allow); i nil: the rule begun
--                                             last, whose index it returns
--   raw_metatable(t) -> table                 t's metatable, even a protected one
--   raw_set_metatable(t, mt)                  sets it (even over a protected one)
--   fill(f, slots)  -> currency code          fills the ctx data tables `slots` (CTX_SLOTS)
--                                             from the capture `f` points at (a C function,
--                                             context.rs)
--   charge(n)                                 charges n instructions of work done in C (raises
--                                             the budget error once the budget is spent)
--   charge_bytes    integer                   output bytes charged as one instruction
--   budget          light userdata            the state's budget, for begin
--   plain(r, observe) -> boolean, boolean     r is a plain allow: exactly { decision = "allow" }
--                                             (raw access), or nil when observe; and r is such
--                                             a table without a metatable (a C function)
local raw_minor, is_fatal, step_limit, begin, deliver, raw_metatable, raw_set_metatable, fill, charge, charge_bytes, budget, plain = ...

local type, error, next, rawget, rawlen, tostring = type, error, next, rawget, rawlen, tostring
local getmetatable, select, raw_pairs = getmetatable, select, pairs
local raw_setmetatable, raw_pcall, raw_xpcall = setmetatable, pcall, xpcall
local table_sort, table_concat = table.sort, table.concat
local math_type = math.type

-- Harden the real library tables. They stay reachable from rule code only as the string
-- metatable's __index (`("x"):upper()`), which is why the removal happens here and not only in
-- the sandbox copies.
string.dump = nil
math.random = nil
math.randomseed = nil
getmetatable("").__metatable = false

-- Pattern matching runs in C, where the instruction budget cannot see it, and Lua patterns can
-- backtrack for a very long time: ("a"):rep(40):find(("a-"):rep(10) .. "b") runs for minutes.
-- find, match, gmatch and gsub therefore estimate the worst case first (start positions x
-- C(n + k, k) for k backtracking quantifiers, x 2 per backtracking `?`, x n per `%b` or back
-- reference, on a subject of n bytes; a quantifier at the end of the pattern does not
-- backtrack) and refuse a call whose worst case is over `step_limit`. Plain finds are linear
-- and never refused.
local string_byte = string.byte
local raw_find, raw_match, raw_gmatch, raw_gsub = string.find, string.match, string.gmatch, string.gsub

-- Index just past the set `[...]` that starts at p[i] (Lua's classEnd).
local function set_end(p, i)
  i = i + 1
  if string_byte(p, i) == 94 then -- ^
    i = i + 1
  end
  repeat
    local c = string_byte(p, i)
    if c == nil then
      return i -- malformed: the real function reports it
    end
    i = i + 1
    if c == 37 then -- %
      i = i + 1
    end
  until string_byte(p, i) == 93 -- ]
  return i + 1
end

local function pattern_work(n, p, anchorable, cap)
  local len, i = #p, 1
  local work = n + 1 -- start positions
  if anchorable and string_byte(p, 1) == 94 then
    work, i = 1, 2
  end
  local k, pending_k, pending_q = 0, 0, 0
  while i <= len do
    local c = string_byte(p, i)
    local kind = nil -- "single": a one-character class that may take a quantifier; "scan": linear
    if c == 40 or c == 41 or (c == 36 and i == len) then -- ( ) and a final $
      i = i + 1
    elseif c == 37 then -- %
      local d = string_byte(p, i + 1)
      if d == 98 then -- %bxy
        i, kind = i + 4, "scan"
      elseif d == 102 then -- %f[set]
        i = set_end(p, i + 2)
      elseif d ~= nil and d >= 48 and d <= 57 then -- back reference %0-%9
        i, kind = i + 2, "scan"
      else
        i, kind = i + 2, "single"
      end
    elseif c == 91 then -- [set]
      i, kind = set_end(p, i), "single"
    else
      i, kind = i + 1, "single"
    end
    if kind ~= nil then
      -- Something follows the pending quantifiers, so they may backtrack.
      k, pending_k = k + pending_k, 0
      while pending_q > 0 and work <= cap do
        work, pending_q = work * 2, pending_q - 1
      end
      pending_q = 0
      if kind == "scan" then
        work = work * (n + 1)
      else
        local q = string_byte(p, i)
        if q == 42 or q == 43 or q == 45 then -- * + -
          pending_k, i = pending_k + 1, i + 1
        elseif q == 63 then -- ?
          pending_q, i = pending_q + 1, i + 1
        end
      end
      if work > cap then
        return work
      end
    end
  end
  for j = 1, k do -- work * C(n + k, k), exactly, stopping once over the cap
    work = work * (n + j) // j
    if work > cap then
      return work
    end
  end
  return work
end

local function check_pattern(s, p, anchorable, fname)
  local n = type(s) == "string" and #s or 32 -- a number subject is at most ~24 bytes
  if type(p) == "number" then
    p = tostring(p)
  end
  if type(p) == "string" then
    local work = pattern_work(n, p, anchorable, step_limit)
    if work > step_limit then
      error(fname .. ": pattern too complex for a subject of " .. n .. " bytes (its worst case is over "
        .. step_limit .. " steps); use a plain find, a shorter subject or fewer repetitions", 3)
    end
    -- The matching runs in C: its worst case is charged to the budget.
    charge(work)
  end
end

string.find = function(s, p, init, plain)
  if not plain then
    check_pattern(s, p, true, "string.find")
  end
  return raw_find(s, p, init, plain)
end
string.match = function(s, p, init)
  check_pattern(s, p, true, "string.match")
  return raw_match(s, p, init)
end
string.gmatch = function(s, p, init)
  check_pattern(s, p, false, "string.gmatch")
  return raw_gmatch(s, p, init)
end
string.gsub = function(s, p, repl, n)
  check_pattern(s, p, true, "string.gsub")
  return raw_gsub(s, p, repl, n)
end

-- Determinism: the text of a table, function or coroutine is its address ("table: 0x55d5..."),
-- which differs from one process to the next. tostring drops the address ("table"), and
-- string.format refuses %p and formats such values the same way.
local raw_format = string.format
local ADDRESSED = { table = true, ["function"] = true, thread = true, userdata = true }
local function safe_tostring(v)
  local s = tostring(v)
  if ADDRESSED[type(v)] and type(s) == "string" then
    local head = raw_match(s, "^(.-): 0x%x+$")
    if head ~= nil then
      return head
    end
  end
  return s
end
local function format_args(n, a, ...)
  if n == 0 then
    return
  end
  if ADDRESSED[type(a)] then
    a = safe_tostring(a)
  end
  return a, format_args(n - 1, ...)
end
-- True if `fmt` has a %p directive. A loop in Lua (not a pattern), so the budget sees it.
local function has_pointer_directive(fmt)
  local i = 1
  while true do
    i = raw_find(fmt, "%", i, true)
    if i == nil then
      return false
    end
    local j = i + 1
    local c = string_byte(fmt, j)
    if c == 37 then -- %%
      i = j + 1
    else
      -- flags, width and precision: - + space # 0-9 .
      while c == 45 or c == 43 or c == 32 or c == 35 or c == 46 or (c ~= nil and c >= 48 and c <= 57) do
        j = j + 1
        c = string_byte(fmt, j)
      end
      if c == 112 then -- p
        return true
      end
      i = j
    end
  end
end
string.format = function(fmt, ...)
  if type(fmt) == "string" and has_pointer_directive(fmt) then
    error("string.format: %p is not allowed in rules (addresses differ from one run to the next)", 2)
  end
  local n = select("#", ...)
  if n > 250 then
    error("string.format: too many arguments", 2)
  end
  local r = raw_format(fmt, format_args(n, ...))
  charge(#r // charge_bytes)
  return r
end

-- The table library also loops in C over ranges and lengths a rule controls
-- (`table.move({}, 1, 1e15, 1, {})` moves nils for ever without allocating anything; `#t` may
-- come from __len). Ranges over `step_limit` elements (and sorts over that many steps) are
-- refused; building a table that big would already spend the instruction budget.
local math_tointeger = math.tointeger
local raw_sort, raw_move, raw_insert, raw_remove = table.sort, table.move, table.insert, table.remove
local raw_concat, raw_unpack = table.concat, table.unpack

local function check_range(first, last, fname)
  first, last = math_tointeger(first), math_tointeger(last)
  if first ~= nil and last ~= nil and last >= first then
    local span = last - first -- wraps below zero for spans over maxinteger
    if span < 0 or span >= step_limit then
      error(fname .. ": a range of more than " .. step_limit .. " elements is not allowed in rules", 3)
    end
  end
end
local function length(t)
  if type(t) == "table" then
    return #t
  end
  return nil
end

table.sort = function(t, comp)
  local n = length(t)
  if n ~= nil and n > 1 then
    local steps, m = 0, n
    while m > 1 and steps <= step_limit do -- about n * log2(n) comparisons
      steps, m = steps + n, m // 2
    end
    if steps > step_limit then
      error("table.sort: sorting " .. n .. " elements is over the step limit of " .. step_limit, 2)
    end
  end
  return raw_sort(t, comp)
end
table.move = function(a1, f, e, t, a2)
  check_range(f, e, "table.move")
  return raw_move(a1, f, e, t, a2)
end
table.insert = function(t, ...)
  check_range(1, length(t), "table.insert")
  return raw_insert(t, ...)
end
table.remove = function(t, ...)
  check_range(1, length(t), "table.remove")
  return raw_remove(t, ...)
end
table.concat = function(t, sep, i, j)
  check_range(i or 1, j or length(t), "table.concat")
  local r = raw_concat(t, sep, i, j)
  charge(#r // charge_bytes)
  return r
end

-- Work done in C is charged to the instruction budget, which otherwise sees one instruction per
-- call: string.rep by its output, or by its count when it builds nothing (with an
-- empty string, `string.rep("", math.maxinteger)` loops in C for ever while producing nothing);
-- the functions that build strings by their output, after they ran (each call's output is
-- bounded by the memory limit, a loop of them by the budget).
local raw_rep, tonumber_ = string.rep, tonumber
local function text_len(v)
  local t = type(v)
  if t == "string" then
    return #v
  elseif t == "number" then
    return 24 -- a number becomes at most ~24 bytes of text
  end
  return 0
end
string.rep = function(s, n, sep)
  if sep == nil and type(s) == "string" and #s > 0 then -- the common case, kept short
    local r = raw_rep(s, n)
    charge(#r // charge_bytes)
    return r
  end
  local count = n
  if type(count) == "string" then
    count = tonumber_(count)
  end
  count = math_tointeger(count)
  if count ~= nil and count > 0 then
    if text_len(s) + text_len(sep) == 0 then
      -- Nothing is built: charged by its count, before the loop runs.
      charge(count // charge_bytes + 1)
    else
      -- The result is allocated first (a size over the memory limit fails there), then filled:
      -- charged by its size, which is at least the count.
      local r = raw_rep(s, n, sep)
      charge(#r // charge_bytes)
      return r
    end
  end
  return raw_rep(s, n, sep)
end
local function charged(name, raw)
  string[name] = function(s, ...)
    local r = raw(s, ...)
    charge(#r // charge_bytes)
    return r
  end
end
charged("upper", string.upper)
charged("lower", string.lower)
charged("reverse", string.reverse)
local checked_gsub = string.gsub
string.gsub = function(s, p, repl, n)
  local r, k = checked_gsub(s, p, repl, n)
  if type(r) == "string" then
    charge(#r // charge_bytes)
  end
  return r, k
end
local raw_utf8_char = utf8.char
utf8.char = function(...)
  local r = raw_utf8_char(...)
  charge(#r // charge_bytes)
  return r
end
table.unpack = function(t, i, j)
  check_range(i or 1, j or length(t), "table.unpack")
  return raw_unpack(t, i, j)
end

local function read_only(message)
  return function()
    error(message, 2)
  end
end

-- A fixed order for keys: numbers (ascending), then strings (byte order), then false, true.
-- Lua's own `next` order depends on string hashes, which are seeded differently in every process.
-- Writes to ctx views raise this (it also marks a metatable as a ctx view's, see safe_pairs).
local ctx_ro = read_only("ctx is read-only: copy values into local variables")

local KEY_RANK = { number = 1, string = 2, boolean = 3 }
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return KEY_RANK[ta] < KEY_RANK[tb]
  end
  if ta == "boolean" then
    return b and not a
  end
  return a < b
end
local guarded_sort = table.sort
local function sorted_keys(t, fname)
  local keys, n = {}, 0
  for k in next, t do
    if KEY_RANK[type(k)] == nil then
      error(fname .. ": a table with " .. type(k) .. " keys has no fixed order; use string or number keys", 3)
    end
    n = n + 1
    keys[n] = k
  end
  guarded_sort(keys, key_less) -- refuses sizes over the step limit
  return keys
end

-- Iterates `keys` in order over `t` (raw reads), giving each value through `wrap` (if any).
-- The iterator ignores its arguments, so what `pairs` returns never hands out `t` itself.
local function ordered(t, keys, wrap)
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k == nil then
      return nil
    end
    local v = rawget(t, k)
    if wrap ~= nil and type(v) == "table" then
      v = wrap(v)
    end
    return k, v
  end
end

-- pairs for rule code: tables without a metatable (the rule's own) and ctx views iterate in
-- the fixed key order; anything else with a metatable (library tables, the rule's own
-- metatables) goes through Lua's pairs and its __pairs.
local function safe_pairs(t)
  if type(t) == "table" then
    local mt = getmetatable(t)
    if mt == nil then
      return ordered(t, sorted_keys(t, "pairs"), nil), nil, nil
    elseif mt == false then
      local real = raw_metatable(t)
      if real.__newindex == ctx_ro then
        local data = real.__index
        return ordered(data, sorted_keys(data, "pairs"), nil), nil, nil
      end
    end
  end
  return raw_pairs(t)
end

-- Read-only proxies of the library tables (made once per state): reads go to the real table
-- (__index), writes raise, `#` and `pairs` see the real table's content (never the table itself:
-- a rule holding the real table could change it for every later rule and capture). `rawset` is
-- not available to rule code, so a proxy cannot be filled behind its back.
local function proxy(t, newindex)
  return raw_setmetatable({}, {
    __index = t,
    __newindex = newindex,
    __len = function()
      return rawlen(t)
    end,
    __pairs = function()
      return ordered(t, sorted_keys(t, "pairs"), nil), nil, nil
    end,
    __metatable = false,
  })
end

-- Error values that reach text: strings as they are, anything else by its type (never by an
-- address such as `table: 0x55...`, which would differ between runs).
local function plain_error(e)
  local t = type(e)
  if t == "string" then
    return e
  elseif t == "number" or t == "userdata" then
    return tostring(e)
  end
  return "(error object is a " .. t .. " value)"
end

-- pcall / xpcall that cannot swallow a blown instruction budget or memory limit: such an error
-- is raised again, and an xpcall message handler never sees it.
local function after_pcall(ok, ...)
  if ok then
    return ok, ...
  end
  local e = ...
  if is_fatal(e) then
    error(e, 0)
  end
  if type(e) == "userdata" then
    e = tostring(e)
  end
  return false, e
end
local function safe_pcall(f, ...)
  return after_pcall(raw_pcall(f, ...))
end
local function safe_xpcall(f, handler, ...)
  if type(handler) ~= "function" then
    error("bad argument #2 to 'xpcall' (function expected, got " .. type(handler) .. ")", 2)
  end
  return after_pcall(raw_xpcall(f, function(e)
    if is_fatal(e) then
      return e
    end
    if type(e) == "userdata" then
      e = tostring(e)
    end
    return handler(e)
  end, ...))
end

-- setmetatable for rule code. Two metamethods run where the instruction budget cannot stop
-- them: __gc (at collection time, outside any rule call) and __close (a to-be-closed variable,
-- or a generic for's closing value, closed while an error from the budget hook unwinds: Lua
-- runs it without calling hooks, so a loop there would never end). Both are refused, and so
-- that neither can be added afterwards, the metatable installed is a private copy of `mt`
-- (rule code never gets hold of it): changes to `mt` after the call have no effect.
-- getmetatable still returns `mt` itself (the copy's __metatable), unless `mt` sets its own
-- __metatable. Metatables of the sandbox (ctx, libraries) and ones protected by the rule's
-- own __metatable cannot be replaced.
local copies = raw_setmetatable({}, { __mode = "k" }) -- copy -> "free" or "protected"
local function safe_setmetatable(t, mt)
  if type(t) ~= "table" then
    error("bad argument #1 to 'setmetatable' (table expected, got " .. type(t) .. ")", 2)
  end
  if mt ~= nil and type(mt) ~= "table" then
    error("bad argument #2 to 'setmetatable' (nil or table expected)", 2)
  end
  local current = raw_metatable(t)
  if current ~= nil and copies[current] ~= "free" then
    error("cannot change a protected metatable", 2)
  end
  if mt == nil then
    raw_set_metatable(t, nil)
    return t
  end
  local copy = {}
  for k, v in next, mt do
    copy[k] = v
  end
  if copy.__gc ~= nil then
    error("__gc metamethods are not allowed in rules", 2)
  end
  if copy.__close ~= nil then
    error("__close metamethods are not allowed in rules", 2)
  end
  if copy.__metatable == nil then
    copy.__metatable = mt
    copies[copy] = "free"
  else
    copies[copy] = "protected"
  end
  raw_set_metatable(t, copy)
  return t
end

-- capture.minor("150.00") -> 15000 in the capture's currency, exactly (Money::parse in Rust).
-- Results are memoised per currency: a pure function of (currency, text), so the memo is not
-- state a rule could observe; it is bounded and only ever holds successful conversions.
local MINOR_MEMO_MAX = 256
local minor_memo, minor_memo_size = {}, 0
local current_currency = nil -- set by run_stage for the capture being evaluated
local function to_minor(text)
  if current_currency == nil or type(text) ~= "string" then
    return raw_minor(text)
  end
  local memo = minor_memo[current_currency]
  local m = memo and memo[text]
  if m ~= nil then
    return m
  end
  local err
  m, err = raw_minor(text)
  if m ~= nil then
    if minor_memo_size >= MINOR_MEMO_MAX then
      minor_memo, minor_memo_size, memo = {}, 0, nil
    end
    if memo == nil then
      memo = {}
      minor_memo[current_currency] = memo
    end
    memo[text] = m
    minor_memo_size = minor_memo_size + 1
  end
  return m, err
end
local function minor(text)
  -- The memo first: most calls are a rule's constant amounts, already converted.
  local memo = minor_memo[current_currency]
  if memo ~= nil then
    local m = memo[text]
    if m ~= nil then
      return m
    end
  end
  local m, err = to_minor(text)
  if m == nil then
    error("capture.minor: " .. err, 2)
  end
  return m
end

-- Decision constructors: plain tables the Rust side validates again.
local function want_string(v, what, fname)
  if type(v) ~= "string" then
    error(fname .. ": " .. what .. " must be a string, got " .. type(v), 3)
  end
end
-- A plain allow table a rule returned, handed out again by the next allow() (see batch): most
-- rules return allow(), and making, then collecting, a table for each was a tenth of a small
-- rule set's cost. Rules cannot tell: only a table that came back exactly
-- { decision = "allow" } (raw) with no metatable is kept, after its rule call ended (nothing
-- of a rule call survives it), and it is handed out at most once at a time.
local spare_allow = nil
local function allow()
  local t = spare_allow
  if t ~= nil then
    spare_allow = nil
    return t
  end
  return { decision = "allow" }
end
local function reject(code, reason)
  want_string(code, "code", "reject")
  want_string(reason, "reason", "reject")
  return { decision = "reject", code = code, reason = reason }
end
local function hold(reason)
  want_string(reason, "reason", "hold")
  return { decision = "hold", reason = reason }
end
local function adjust(amount)
  local t = type(amount)
  if t == "number" and math_type(amount) == "float" then
    error("adjust: amount " .. tostring(amount)
      .. " is a float; use a decimal string such as \"150.00\" or integer minor units", 2)
  elseif t == "string" then
    local m, err = to_minor(amount)
    if m == nil then
      error("adjust: " .. err, 2)
    end
  elseif t ~= "number" then
    error("adjust: amount must be a decimal string or integer minor units, got " .. t, 2)
  end
  return { decision = "adjust", amount = amount }
end

local OBSERVE_KEYS = { tags = true, notes = true, follow_ups = true }
local function observe_result(t)
  if type(t) ~= "table" then
    error("observe_result: expected a table such as { tags = {...} }, got " .. type(t), 2)
  end
  local bad = {}
  for k in next, t do
    if not OBSERVE_KEYS[k] then
      bad[#bad + 1] = type(k) == "string" and ("`" .. k .. "`") or ("a " .. type(k) .. " key")
    end
  end
  if #bad > 0 then
    table_sort(bad)
    error("observe_result: unknown field(s) " .. table_concat(bad, ", ")
      .. " (expected tags, notes, follow_ups)", 2)
  end
  return { tags = t.tags, notes = t.notes, follow_ups = t.follow_ups }
end

local lib_ro = read_only("library tables are read-only")
local S = {
  assert = assert,
  error = error,
  ipairs = ipairs,
  next = next,
  pairs = safe_pairs,
  pcall = safe_pcall,
  rawequal = rawequal,
  rawget = rawget,
  rawlen = rawlen,
  select = select,
  tonumber = tonumber,
  tostring = safe_tostring,
  type = type,
  xpcall = safe_xpcall,
  setmetatable = safe_setmetatable,
  getmetatable = getmetatable,
  print = function() end,
  _VERSION = _VERSION,
  string = proxy(string, lib_ro),
  table = proxy(table, lib_ro),
  math = proxy(math, lib_ro),
  utf8 = proxy(utf8, lib_ro),
  capture = proxy({ minor = minor }, lib_ro),
  allow = allow,
  reject = reject,
  hold = hold,
  adjust = adjust,
  observe_result = observe_result,
}

-- Each rule file gets its own empty environment that reads the sandbox globals and refuses writes.
local env_mt = {
  __index = S,
  __newindex = read_only("globals are read-only: use local variables"),
  __metatable = false,
}
local function new_env()
  return raw_setmetatable({}, env_mt)
end

-- ctx: data tables filled by Rust (`fill`, context.rs) through the C API, straight from the
-- capture: no intermediate encoding, no Lua code copying fields.
--
-- Rules see read-only views of the ctx tables: an empty table whose metatable reads the data
-- table (`__index` is the table itself, so a field read runs no function) and refuses writes
-- (`__newindex = ctx_ro`). A view's data holds views, never a writable table. `pairs`
-- (safe_pairs: the fixed key order, finding the data through `raw_metatable`, which ignores
-- `__metatable`), `ipairs` and `#` (the two lists have `__len`) work; `next` and `rawget` see
-- an empty table.
--
-- The tables are made once per state and filled again for every evaluation: building some
-- forty tables per capture was most of the cost of a small rule set. Rules cannot tell: they
-- cannot write the tables, and cannot keep a reference from one capture to the next (no
-- global, upvalue or table of theirs survives a capture). `fill` therefore sets every field
-- of every table it shows on each call, nil included, so nothing of an earlier capture remains.
-- A data table and its view (and the view's metatable).
local function slot()
  local data = {}
  local mt = { __index = data, __newindex = ctx_ro, __metatable = false }
  return data, raw_setmetatable({}, mt), mt
end

local root, root_view = slot()
local currency, currency_view = slot()
local amount, amount_view = slot()
local capturable, capturable_view = slot()
local order, order_view = slot()
local order_amount, order_amount_view = slot()
local surcharge, surcharge_view = slot()
local payments, payments_view, payments_mt = slot()
local captures, captures_view, captures_mt = slot()
local shipping, shipping_view = slot()
local _, metadata_view, metadata_mt = slot()
local now, now_view = slot()
local outcome, outcome_view = slot()
local outcome_amount, outcome_amount_view = slot()
order.amount, order.surcharge, order.payments, order.captures =
  order_amount_view, surcharge_view, payments_view, captures_view
root.currency, root.amount, root.capturable = currency_view, amount_view, capturable_view
root.order, root.metadata, root.now = order_view, metadata_view, now_view

-- One table per list entry, made when a capture first has that many entries: [n] = { data,
-- view, amount data }. `fill` calls this (an exempt function: see run_stage) for a new entry.
local payment_slots, capture_slots = {}, {}
local function entry_slot(slots, n)
  local data, view = slot()
  local money, money_view = slot()
  data.amount = money_view
  local e = { data, view, money }
  slots[n] = e
  return e
end
-- `fill` keeps each list a proper sequence (entries past the capture's count are nil), so its
-- raw length is the count.
payments_mt.__len = function()
  return rawlen(payments)
end
captures_mt.__len = function()
  return rawlen(captures)
end

-- The data tables `fill` writes, in the order of `context::slots` (context.rs).
local CTX_SLOTS = {
  root, currency, amount, capturable, order, order_amount, surcharge, payments, captures, shipping,
  shipping_view, now, outcome, outcome_view, outcome_amount, outcome_amount_view, metadata_mt,
  payment_slots, capture_slots, entry_slot,
}

-- What a rule returned, taken apart here with raw access (no metamethod of the rule's table
-- runs) so that the Rust side needs no further calls into Lua for the usual results.
local RESULT_KEYS = {
  decide = { decision = true, code = true, reason = true, amount = true, tags = true, notes = true, follow_ups = true },
  observe = { decision = true, tags = true, notes = true, follow_ups = true },
}
local function unknown_keys(t, allowed)
  local bad
  for k in next, t do
    if not allowed[k] then
      bad = bad or {}
      bad[#bad + 1] = type(k) == "string" and ("`" .. k .. "`") or ("a " .. type(k) .. " key")
    end
  end
  if bad then
    table_sort(bad)
    return table_concat(bad, ", ")
  end
  return nil
end
-- A result table taken apart with raw access (no metamethod of the rule's table runs), so that
-- Rust needs no further calls into Lua for the usual results: true, then the unknown keys and
-- the fields convert.rs reads.
local function take_apart(method, r)
  local unknown = unknown_keys(r, RESULT_KEYS[method])
  if getmetatable(r) == nil then
    -- No metatable: plain reads are raw reads (and cheaper than rawget calls).
    return true, unknown, r.decision, r.code, r.reason, r.amount, r.tags, r.notes, r.follow_ups
  end
  return true, unknown, rawget(r, "decision"), rawget(r, "code"), rawget(r, "reason"), rawget(r, "amount"),
    rawget(r, "tags"), rawget(r, "notes"), rawget(r, "follow_ups")
end

-- Loading a rule file: runs its chunk and returns what it returns (checked by Rust).
local function load_rule(chunk)
  return chunk()
end
local function run(chunk)
  return raw_xpcall(load_rule, plain_error, chunk)
end

-- A rule whose function uses file-level locals, as run_stage calls it: its file's chunk is run
-- again for every call (fresh upvalues every time, so file-level locals never carry state from
-- one capture to the next), then the new rule table's `method` function is called.
local function rerun(chunk, method)
  return function(ctx)
    local rule = chunk()
    if type(rule) ~= "table" then
      error("the file no longer returns a rule table", 0)
    end
    local f = rawget(rule, method)
    if type(f) ~= "function" then
      error("the rule has no `" .. method .. "` function", 0)
    end
    return f(ctx)
  end
end

-- Calls rules i..last of `targets` in order with `ctx`, each after begin(i) (a fresh budget).
-- `targets[i]` is the rule's decide/observe function itself, kept from loading, or (see rerun)
-- a function that runs the rule's file again first. The loader keeps a function only when it
-- can hold no state: its one upvalue (if any) is the rule's read-only environment, and no rule
-- file may name `_ENV` to replace it.
--
-- A plain `{ decision = "allow" }` (what allow() returns), or nil from an observe function, is
-- the usual result and costs one C call (plain); any other result goes to Rust (deliver). An error
-- leaves this function: run_stage reports it for the rule begun last and carries on after it.
local function batch(targets, method, ctx, first, last)
  local observe = method == "observe"
  for i = first, last do
    begin(budget, i)
    local r = targets[i](ctx)
    -- plain(r, observe): r is exactly { decision = "allow" } (raw access), or nil from observe;
    -- spare: r is such a table without a metatable, which allow() may hand out again.
    local yes, spare = plain(r, observe)
    if spare then
      spare_allow = r
    elseif not yes then
      if type(r) == "table" then
        deliver(i, true, take_apart(method, r))
      else
        deliver(i, true, false, r)
      end
    end
  end
end

-- One stage of one capture, the one call Rust makes per stage: fills ctx (`fill`: Rust
-- writes the tables), then runs rules first..last (batch). A rule that raises is reported
-- (deliver with no index: Rust knows the rule begun last, and returns its index) and the next
-- one starts in a fresh protected call. Returns nil, or the message of an error building ctx.
--
-- The budget hook never raises in run_stage, batch or entry_slot themselves (Rust exempts
-- them): their own few instructions between two rules, or before the first, cannot make a rule
-- fail, and the next begin resets the budget. Rule code, and the prelude functions it calls,
-- are never exempt.
local function run_stage(targets, method, first, last, f)
  local built, code = raw_xpcall(fill, plain_error, f, CTX_SLOTS)
  if not built then
    return plain_error(code)
  end
  current_currency = code -- what capture.minor memoises under
  local ctx = root_view
  local i = first
  while i <= last do
    local ok, e = raw_xpcall(batch, plain_error, targets, method, ctx, i, last)
    if ok then
      return nil
    end
    i = deliver(nil, false, e) + 1
  end
  return nil
end

return new_env, run, run_stage, batch, rerun, entry_slot
