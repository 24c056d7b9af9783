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
local raw_minor, is_fatal = ...

local type, error, next, rawget, rawlen, tostring = type, error, next, rawget, rawlen, tostring
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

local function read_only(message)
  return function()
    error(message, 2)
  end
end

-- Read-only proxies: reads go to the real table (__index), writes raise, `#` and `pairs` see the
-- real table. `rawset` is not available to rule code, so a proxy cannot be filled behind its back.
local REAL = raw_setmetatable({}, { __mode = "k" })
local function proxy_len(p)
  return rawlen(REAL[p])
end
local function proxy_pairs(p)
  return next, REAL[p], nil
end
local function proxy(t, newindex)
  local p = {}
  REAL[p] = t
  return raw_setmetatable(p, {
    __index = t,
    __newindex = newindex,
    __len = proxy_len,
    __pairs = proxy_pairs,
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

-- Finalizers would run at garbage-collection time, outside the rule call that created them.
local function safe_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc metamethods are not allowed in rules", 2)
  end
  return raw_setmetatable(t, mt)
end

-- capture.minor("150.00") -> 15000 in the capture's currency, exactly.
local function minor(text)
  local m, err = raw_minor(text)
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
local function allow()
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
    local m, err = raw_minor(amount)
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
  pairs = pairs,
  pcall = safe_pcall,
  rawequal = rawequal,
  rawget = rawget,
  rawlen = rawlen,
  select = select,
  tonumber = tonumber,
  tostring = tostring,
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

-- ctx: the Rust side builds plain nested tables; this turns every level into a read-only proxy.
local ctx_ro = read_only("ctx is read-only: copy values into local variables")
local function freeze(t)
  for k, v in next, t do
    if type(v) == "table" then
      t[k] = freeze(v)
    end
  end
  return proxy(t, ctx_ro)
end

-- The one entry point Rust calls: runs a rule file's compiled chunk (fresh upvalues every time,
-- so file-level locals never carry state from one capture to the next), then, with a method
-- name, calls rule[method](...). Returns ok, value like pcall; error values are plain strings.
local function invoke(chunk, method, ...)
  local rule = chunk()
  if method == nil then
    return rule
  end
  if type(rule) ~= "table" then
    error("the file no longer returns a rule table", 0)
  end
  local f = rawget(rule, method)
  if type(f) ~= "function" then
    error("the rule has no `" .. method .. "` function", 0)
  end
  return (f(...))
end
local function run(chunk, method, ...)
  return raw_xpcall(invoke, plain_error, chunk, method, ...)
end

return new_env, freeze, run
