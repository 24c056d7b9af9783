//! One prepared Lua state: the sandbox, the instruction budget, the compiled rule files.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use capture_core::{Currency, Money};
use mlua::chunk::ChunkMode;
use mlua::debug::Debug;
use mlua::{
    Function, HookTriggers, LightUserData, Lua, LuaOptions, LuaString, StdLib, Table, Value, VmState, ffi,
};

use crate::context::Fill;
use crate::convert::{self, Parts};
use crate::{Limits, RuleStage, RulesError};

/// Text of the error the hook raises once the budget is spent.
pub(crate) const BUDGET_MESSAGE: &str = "instruction budget exceeded";
/// Text of the error the hook raises once a rule call has run longer than its time limit.
pub(crate) const TIME_MESSAGE: &str = "time limit exceeded";
/// Lua's own message for a failed allocation (`LUA_ERRMEM`).
const LUA_MEMORY_MESSAGE: &[u8] = b"not enough memory";
/// The hook runs at most every this many VM instructions.
const HOOK_STEP: u64 = 1000;
const PRELUDE: &str = include_str!("prelude.lua");
/// The same prelude compiled by `build.rs` (the same vendored Lua, debug information kept):
/// loading it costs a fraction of parsing the text, which was most of building a state.
const PRELUDE_BYTECODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prelude.luac"));
/// The prelude's chunk name as Lua shows it in error positions.
const PRELUDE_NAME: &str = "capture-rules prelude";

/// Instruction counting for the current rule call, shared with the hook.
struct Budget {
    limit: u64,
    /// Wall-clock time per rule call.
    time: std::time::Duration,
    /// What `started` counts from.
    base: std::time::Instant,
    /// When the current rule call began, in nanoseconds after `base`.
    started: AtomicU64,
    /// Sticky like `exceeded`: the budget ran out because of the time limit.
    timed_out: AtomicBool,
    /// The state's memory limit (for messages).
    memory_bytes: usize,
    step: u64,
    used: AtomicU64,
    /// Sticky until the next [`Budget::reset`]: once set, the hook errors on every trigger and
    /// the sandbox's pcall/xpcall re-raise.
    exceeded: AtomicBool,
    /// Sticky memory-limit flag, set when a memory error is seen by pcall/xpcall.
    memory: AtomicBool,
    /// Where the budget ran out: (chunk short name, line).
    at: Mutex<Option<(Option<String>, Option<usize>)>>,
    /// The addresses of the prelude's `run_stage`, `batch` and `entry_slot` (0 until they
    /// exist). The hook never raises while one of these functions itself runs: they are the loop
    /// between rule calls and the making of ctx tables before the first rule (a few
    /// instructions per rule; every error of a rule leaves them at once), and the next `begin`
    /// resets the budget.
    exempt: [AtomicUsize; 3],
    /// The rule `run_stage` called last (1-based; 0 before the first).
    current: AtomicUsize,
}

impl Budget {
    fn new(limit: u64, memory_bytes: usize, time: std::time::Duration) -> Budget {
        Budget {
            limit,
            time,
            base: std::time::Instant::now(),
            started: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            memory_bytes,
            step: limit.clamp(1, HOOK_STEP),
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            memory: AtomicBool::new(false),
            at: Mutex::new(None),
            exempt: [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)],
            current: AtomicUsize::new(0),
        }
    }

    fn reset(&self) {
        self.used.store(0, Relaxed);
        self.exceeded.store(false, Relaxed);
        self.timed_out.store(false, Relaxed);
        self.memory.store(false, Relaxed);
        self.started.store(self.nanos(), Relaxed);
    }

    /// Nanoseconds since `base` (saturating: 584 years).
    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn late(&self) -> bool {
        let elapsed = self.nanos().saturating_sub(self.started.load(Relaxed));
        u128::from(elapsed) > self.time.as_nanos()
    }

    /// Charges `n` instructions of work done in C; false once the budget is spent.
    fn charge(&self, n: u64) -> bool {
        let used = self.used.fetch_add(n, Relaxed).saturating_add(n);
        if used > self.limit || self.exceeded.load(Relaxed) {
            self.exceeded.store(true, Relaxed);
            return false;
        }
        true
    }

    /// The message of a spent budget.
    fn message(&self) -> String {
        if self.timed_out.load(Relaxed) {
            format!("{TIME_MESSAGE} ({} ms)", self.time.as_millis())
        } else {
            format!("{BUDGET_MESSAGE} ({} instructions)", self.limit)
        }
    }

    fn on_hook(&self, debug: &Debug<'_>) -> mlua::Result<VmState> {
        let used = self.used.fetch_add(self.step, Relaxed).saturating_add(self.step);
        let late = !self.exceeded.load(Relaxed) && used <= self.limit && self.late();
        if late {
            self.timed_out.store(true, Relaxed);
        }
        if used > self.limit || late || self.exceeded.load(Relaxed) {
            let running = debug.function().to_pointer() as usize;
            if self.exempt.iter().any(|f| f.load(Relaxed) == running) {
                return Ok(VmState::Continue);
            }
            if !self.exceeded.swap(true, Relaxed) {
                let src = debug.source().short_src.map(|s| s.into_owned());
                let line = debug.current_line();
                *self.at.lock().unwrap_or_else(PoisonError::into_inner) = Some((src, line));
            }
            return Err(mlua::Error::runtime(if self.timed_out.load(Relaxed) {
                TIME_MESSAGE
            } else {
                BUDGET_MESSAGE
            }));
        }
        Ok(VmState::Continue)
    }

    /// Called by the sandbox's pcall/xpcall with the error they caught: notes memory errors and
    /// says whether the error must be raised again.
    fn is_fatal(&self, err: &Value) -> bool {
        let memory = match err {
            Value::String(s) => *s.as_bytes() == *LUA_MEMORY_MESSAGE,
            Value::Error(e) => is_memory_error(e),
            _ => false,
        };
        if memory {
            self.memory.store(true, Relaxed);
        }
        self.exceeded.load(Relaxed) || self.memory.load(Relaxed)
    }

    /// The line in `file` where the budget ran out, if it ran out in that file's code.
    fn line_in(&self, file: &str) -> Option<u32> {
        let at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        match &*at {
            Some((Some(src), Some(line))) if src == file => u32::try_from(*line).ok(),
            _ => None,
        }
    }
}

fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// Text of an mlua error, without a stack traceback.
fn error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(s) => s.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::WithContext { cause, .. } => error_text(cause),
        other => other.to_string(),
    }
}

/// Splits `file.lua:7: boom` into `(Some(7), "boom")`; drops a trailing stack traceback.
///
/// A position inside the prelude (a constructor such as `adjust(10.5)` called in tail position,
/// whose caller's frame Lua no longer has) is dropped: the line is then unknown.
pub(crate) fn split_location(file: &str, message: &str) -> (Option<u32>, String) {
    let message = message.split("\nstack traceback:").next().unwrap_or(message).trim_end();
    let located = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?.strip_prefix(':')?;
        let (digits, tail) = rest.split_once(':')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((digits.parse::<u32>().ok(), tail.trim_start().to_owned()))
    };
    if let Some(found) = located(file) {
        return found;
    }
    if let Some((_, tail)) = located(PRELUDE_NAME) {
        return (None, tail);
    }
    (None, message.to_owned())
}

/// Why a rule call failed: the line in the rule's file (if known) and the message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) line: Option<u32>,
    pub(crate) message: String,
}

/// What `run` returned after its ok flag: the rule table when loading; when calling a rule,
/// `is_table` and then either the non-table value or `unknown keys, decision, code, reason,
/// amount, tags, notes, follow_ups` (see `take_apart` in `prelude.lua`).
pub(crate) type Returned = [Value; 9];

/// What follows the ok flag of `run`'s `xpcall`: [`Returned`], or the error value first.
type RunResultTail = (Value, Value, Value, Value, Value, Value, Value, Value, Value);

/// Where `deliver` (called from `run_stage`) puts the results of one stage evaluation.
#[derive(Default)]
struct Sink {
    /// The file of each rule, in evaluation order (index = Lua index - 1).
    files: Vec<String>,
    /// The stage being evaluated.
    observe: bool,
    /// The currency of the capture being evaluated.
    currency: Option<Currency>,
    /// (rule index, result) for every rule whose result was not a plain allow.
    results: Vec<(usize, Result<Parts, Failure>)>,
}

/// How far a stage evaluation went.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Rules before this index ran; a rule from here on without a delivered result did not.
    pub(crate) reached: usize,
    /// Why the evaluation stopped early.
    pub(crate) stopped: Option<String>,
}

/// What a rule file's table declares.
pub(crate) struct Declared {
    pub(crate) name: String,
    pub(crate) stage: RuleStage,
    pub(crate) priority: i64,
    /// Whether the rule's function is called directly (see `State::stateless`).
    pub(crate) stateless: bool,
}

/// A rule's code in one state.
#[derive(Clone)]
struct Entry {
    /// The compiled file.
    chunk: Function,
    /// The rule's stage.
    stage: RuleStage,
    /// The rule's decide/observe function, when it can hold no state between calls (see
    /// `State::stateless`): called directly, without running the file again.
    fast: Option<Function>,
}

/// A rule file as loaded: its name and source text.
#[derive(Clone)]
pub(crate) struct Source {
    pub(crate) file: String,
    pub(crate) text: String,
}

/// A prepared Lua state. Used by one thread at a time (the pool hands it out).
pub(crate) struct State {
    lua: Lua,
    budget: Arc<Budget>,
    sink: Arc<Mutex<Sink>>,
    new_env: Function,
    run: Function,
    run_stage: Function,
    rerun: Function,
    /// `"decide"` and `"observe"`, made once (pushing a Rust string costs a protected call).
    decide: LuaString,
    observe: LuaString,
    /// Compiled rule files, in the order of the sources the state was built from.
    entries: Vec<Entry>,
    /// What `run_stage` calls for each rule, a Lua sequence in the order of `entries`: the
    /// rule's function (stateless rules), or one that runs its file again first (`rerun`).
    targets: Table,
}

/// Installs the instruction-budget hook (every [`Budget::step`] VM instructions).
fn install_hook(lua: &Lua, budget: &Arc<Budget>) -> mlua::Result<()> {
    let step = u32::try_from(budget.step).unwrap_or(1000);
    let budget = Arc::clone(budget);
    lua.set_hook(HookTriggers::new().every_nth_instruction(step), move |_, debug| budget.on_hook(debug))
}

/// `begin(budget, i)`, a Lua C function the prelude's `batch` calls before rule `i`: a fresh
/// instruction budget and wall-clock start for that rule call. A plain C function (no mlua
/// callback: those cost a protected call, a lock and a boxed closure call each, which was a
/// tenth of a small rule's cost).
///
/// # Safety
/// Called by Lua only, with the light userdata of a live [`Budget`] (the prelude keeps it, and
/// `begin`, as locals no rule can reach).
unsafe extern "C-unwind" fn begin(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: the contract above; `lua_tointegerx` accepts a null `isnum`.
    unsafe {
        let budget = ffi::lua_touserdata(l, 1) as *const Budget;
        let i = ffi::lua_tointegerx(l, 2, std::ptr::null_mut());
        if let Some(budget) = budget.as_ref() {
            budget.reset();
            budget.current.store(usize::try_from(i).unwrap_or(0), Relaxed);
        }
    }
    0
}

/// `plain(r, observe)`, a Lua C function: true if `r` is exactly `{ decision = "allow" }` (one
/// key, read raw, no metamethod runs), or `nil` when `observe` is true; and, second, true if `r`
/// is such a table without a metatable (`allow()` may hand it out again). What `batch` calls
/// for every rule's result instead of `type`, `next` and `next` again.
///
/// # Safety
/// Called by Lua only, with two arguments.
unsafe extern "C-unwind" fn plain(l: *mut ffi::lua_State) -> c_int {
    /// True if the value at `idx` is the string `text` (no conversion of numbers).
    ///
    /// # Safety
    /// `l` is a valid Lua state and `idx` a valid index.
    unsafe fn is_text(l: *mut ffi::lua_State, idx: c_int, text: &[u8]) -> bool {
        // SAFETY: the caller's contract; the value is a string, so `lua_tolstring` does not
        // convert it, and the bytes stay valid while it is on the stack.
        unsafe {
            if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
                return false;
            }
            let mut len = 0usize;
            let p = ffi::lua_tolstring(l, idx, &mut len);
            !p.is_null() && std::slice::from_raw_parts(p.cast::<u8>(), len) == text
        }
    }
    // SAFETY: the contract above; `lua_next` on a table with the key it just returned cannot
    // raise; 3 stack slots are checked.
    let (yes, spare) = unsafe {
        match ffi::lua_type(l, 1) {
            ffi::LUA_TNIL => (ffi::lua_toboolean(l, 2) != 0, false),
            ffi::LUA_TTABLE => {
                ffi::luaL_checkstack(l, 3, std::ptr::null());
                ffi::lua_settop(l, 1);
                ffi::lua_pushnil(l);
                let yes = if ffi::lua_next(l, 1) == 0 {
                    false
                } else if is_text(l, 2, b"decision") && is_text(l, 3, b"allow") {
                    ffi::lua_settop(l, 2);
                    ffi::lua_next(l, 1) == 0
                } else {
                    false
                };
                ffi::lua_settop(l, 1);
                // `lua_getmetatable` pushes nothing when there is none.
                (yes, yes && ffi::lua_getmetatable(l, 1) == 0)
            }
            _ => (false, false),
        }
    };
    // SAFETY: two free slots remain (at most 2 values are on the stack of the 3 checked).
    unsafe {
        ffi::lua_settop(l, 1);
        ffi::lua_pushboolean(l, c_int::from(yes));
        ffi::lua_pushboolean(l, c_int::from(spare));
    }
    2
}

/// The prelude as a function: its bytecode from `build.rs`, or its text should the bytecode not
/// load (a Lua built differently; it never happens with the vendored one).
fn load_prelude(lua: &Lua) -> mlua::Result<Function> {
    let name = format!("={PRELUDE_NAME}");
    lua.load(PRELUDE_BYTECODE)
        .set_name(name.as_str())
        .set_mode(ChunkMode::Binary)
        .into_function()
        .or_else(|_| lua.load(PRELUDE).set_name(name).set_mode(ChunkMode::Text).into_function())
}

fn sandbox_err(e: mlua::Error) -> RulesError {
    RulesError::Sandbox { message: error_text(&e) }
}

impl State {
    /// A fresh sandbox without rules.
    pub(crate) fn new(limits: Limits) -> Result<State, RulesError> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8;
        let lua = Lua::new_with(libs, LuaOptions::default()).map_err(sandbox_err)?;
        lua.set_memory_limit(limits.memory_bytes).map_err(sandbox_err)?;
        let budget = Arc::new(Budget::new(limits.instructions, limits.memory_bytes, limits.time));
        let sink = Arc::new(Mutex::new(Sink::default()));
        let minor_sink = Arc::clone(&sink);
        let raw_minor = lua
            .create_function(move |_, v: Value| {
                let currency = minor_sink.lock().unwrap_or_else(PoisonError::into_inner).currency;
                raw_minor(currency, v)
            })
            .map_err(sandbox_err)?;
        let fatal_budget = Arc::clone(&budget);
        let is_fatal =
            lua.create_function(move |_, e: Value| Ok(fatal_budget.is_fatal(&e))).map_err(sandbox_err)?;
        // SAFETY: `begin` and `fill` are C functions following Lua's calling convention.
        let (begin, fill, plain) = unsafe {
            (
                lua.create_c_function(begin).map_err(sandbox_err)?,
                lua.create_c_function(crate::context::fill).map_err(sandbox_err)?,
                lua.create_c_function(plain).map_err(sandbox_err)?,
            )
        };
        // The budget outlives the Lua state: the hook (owned by the state) holds it too.
        let budget_ptr = Value::LightUserData(LightUserData(Arc::as_ptr(&budget) as *mut c_void));
        let (deliver_sink, deliver_budget) = (Arc::clone(&sink), Arc::clone(&budget));
        let deliver = lua
            .create_function(move |lua, (i, ok, rest): (Option<usize>, bool, RunResultTail)| {
                let i = i.unwrap_or_else(|| deliver_budget.current.load(Relaxed));
                let mut sink = deliver_sink.lock().unwrap_or_else(PoisonError::into_inner);
                let index = i.saturating_sub(1);
                let file = sink.files.get(index).cloned().unwrap_or_default();
                let result = settle(lua, &deliver_budget, &file, Ok((ok, rest)))
                    .and_then(|returned| convert_returned(returned, sink.observe, sink.currency));
                sink.results.push((index, result));
                Ok(i)
            })
            .map_err(sandbox_err)?;
        let raw_metatable = lua.create_function(|_, t: Table| Ok(t.metatable())).map_err(sandbox_err)?;
        let charge_budget = Arc::clone(&budget);
        let charge = lua
            .create_function(move |_, n: i64| {
                if charge_budget.charge(u64::try_from(n).unwrap_or(0)) {
                    Ok(())
                } else {
                    Err(mlua::Error::runtime(BUDGET_MESSAGE))
                }
            })
            .map_err(sandbox_err)?;
        let raw_set_metatable = lua
            .create_function(|_, (t, mt): (Table, Option<Table>)| t.set_metatable(mt))
            .map_err(sandbox_err)?;
        type Helpers = (Function, Function, Function, Function, Function, Function);
        let (new_env, run, run_stage, batch, rerun, entry_slot): Helpers = load_prelude(&lua)
            .map_err(sandbox_err)?
            .call((
                raw_minor,
                is_fatal,
                i64::try_from(limits.instructions).unwrap_or(i64::MAX),
                begin,
                deliver,
                raw_metatable,
                raw_set_metatable,
                fill,
                charge,
                i64::try_from(crate::CHARGE_BYTES).unwrap_or(64),
                budget_ptr,
                plain,
            ))
            .map_err(sandbox_err)?;
        // The prelude (the sandbox's own code, its loops bounded) runs before the budget hook
        // is installed: the hook is for rule code.
        install_hook(&lua, &budget).map_err(sandbox_err)?;
        budget.exempt[0].store(run_stage.to_pointer() as usize, Relaxed);
        budget.exempt[1].store(batch.to_pointer() as usize, Relaxed);
        budget.exempt[2].store(entry_slot.to_pointer() as usize, Relaxed);
        let decide = lua.create_string("decide").map_err(sandbox_err)?;
        let observe = lua.create_string("observe").map_err(sandbox_err)?;
        let targets = lua.create_table().map_err(sandbox_err)?;
        Ok(State {
            lua,
            budget,
            sink,
            new_env,
            run,
            run_stage,
            rerun,
            decide,
            observe,
            entries: Vec::new(),
            targets,
        })
    }

    /// A sandbox with every source compiled and checked, rules in the order of `sources`.
    pub(crate) fn build(sources: &[Source], limits: Limits) -> Result<(State, Vec<Declared>), RulesError> {
        let mut state = State::new(limits)?;
        let mut declared = Vec::with_capacity(sources.len());
        for src in sources {
            let (chunk, env) = state.compile(src)?;
            let (d, f) = state.declare(&src.file, &chunk)?;
            let fast = State::stateless(&f, &env).then_some(f);
            state.entries.push(Entry { chunk, stage: d.stage, fast: fast.clone() });
            declared.push(Declared { stateless: fast.is_some(), ..d });
            state.sink_lock().files.push(src.file.clone());
        }
        state.index_entries()?;
        Ok((state, declared))
    }

    /// The results sink, locked.
    fn sink_lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills `targets` from `entries`.
    fn index_entries(&mut self) -> Result<(), RulesError> {
        let targets = self.lua.create_table().map_err(sandbox_err)?;
        for (i, e) in self.entries.iter().enumerate() {
            let target = match &e.fast {
                Some(f) => f.clone(),
                None => {
                    let method = match e.stage {
                        RuleStage::PreValidate => &self.decide,
                        RuleStage::PostCapture => &self.observe,
                    };
                    self.rerun.call::<Function>((&e.chunk, method)).map_err(sandbox_err)?
                }
            };
            targets.raw_set(i + 1, target).map_err(sandbox_err)?;
        }
        self.targets = targets;
        Ok(())
    }

    /// True if `f` can keep nothing from one call to the next: a Lua function whose only
    /// upvalue, if it has one, is `env` (the rule's read-only environment; `compile` refuses
    /// files that name `_ENV`, so no code can replace it). A function with other upvalues
    /// (file-level locals: counters, tables, helper functions) could write them, so its file is
    /// run again for every call instead.
    fn stateless(f: &Function, env: &Table) -> bool {
        match f.info().num_upvalues {
            0 => true,
            1 => f.environment().is_some_and(|e| e.to_pointer() == env.to_pointer()),
            _ => false,
        }
    }

    /// Puts the rules in a new order: `order[i]` is the old index of the new i-th rule.
    pub(crate) fn reorder(&mut self, order: &[usize]) -> Result<(), RulesError> {
        let old = std::mem::take(&mut self.entries);
        self.entries = order.iter().filter_map(|&i| old.get(i).cloned()).collect();
        let mut sink = self.sink_lock();
        let files = std::mem::take(&mut sink.files);
        sink.files = order.iter().filter_map(|&i| files.get(i).cloned()).collect();
        drop(sink);
        self.index_entries()
    }

    pub(crate) fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Compiles one file as a text chunk with its own read-only environment (returned too).
    fn compile(&self, src: &Source) -> Result<(Function, Table), RulesError> {
        let file = &src.file;
        if src.text.as_bytes().first() == Some(&0x1b) {
            return Err(RulesError::BytecodeRefused { file: file.clone() });
        }
        if let Some(at) = src.text.find("_ENV") {
            let line = src.text[..at].bytes().filter(|&b| b == b'\n').count() + 1;
            return Err(RulesError::Invalid {
                file: file.clone(),
                message: format!(
                    "line {line}: the name `_ENV` is reserved (a rule cannot read or replace its environment)"
                ),
            });
        }
        let invalid = |e: mlua::Error| RulesError::Invalid { file: file.clone(), message: error_text(&e) };
        let env: Table = self.new_env.call(()).map_err(invalid)?;
        let chunk = self
            .lua
            .load(src.text.as_str())
            .set_name(format!("={file}"))
            .set_mode(ChunkMode::Text)
            .set_environment(env.clone())
            .into_function()
            .map_err(|e| match e {
                mlua::Error::SyntaxError { message, .. } => {
                    let (line, message) = split_location(file, &message);
                    RulesError::Syntax { file: file.clone(), line, message }
                }
                other => invalid(other),
            })?;
        Ok((chunk, env))
    }

    /// Runs the file once and validates the table it returns; also returns its decide (or
    /// observe) function.
    fn declare(&self, file: &str, chunk: &Function) -> Result<(Declared, Function), RulesError> {
        let invalid = |message: String| RulesError::Invalid { file: file.to_owned(), message };
        let [value, ..] = self.call(chunk, file).map_err(|f| {
            invalid(match f.line {
                Some(line) => format!("running the file failed at line {line}: {}", f.message),
                None => format!("running the file failed: {}", f.message),
            })
        })?;
        let Value::Table(t) = value else {
            return Err(invalid(format!(
                "the file must return a rule table {{ name = ..., stage = ..., ... }}, not {}",
                describe(&value)
            )));
        };
        let mut unknown = Vec::new();
        for pair in t.pairs::<Value, Value>() {
            let (k, _) = pair.map_err(|e| invalid(error_text(&e)))?;
            match &k {
                Value::String(s)
                    if matches!(
                        &*s.as_bytes(),
                        b"name" | b"stage" | b"priority" | b"decide" | b"observe"
                    ) => {}
                Value::String(s) => unknown.push(format!("`{}`", s.to_string_lossy())),
                other => unknown.push(format!("a {} key", other.type_name())),
            }
        }
        if !unknown.is_empty() {
            unknown.sort();
            return Err(invalid(format!(
                "unknown field(s) {} (a rule table has name, stage, priority and decide or observe)",
                unknown.join(", ")
            )));
        }
        let name = match t.raw_get::<Value>("name").map_err(|e| invalid(error_text(&e)))? {
            Value::Nil => return Err(invalid("missing `name`".into())),
            Value::String(s) => {
                s.to_str().map(|s| s.to_owned()).map_err(|_| invalid("`name` is not UTF-8".into()))?
            }
            other => return Err(invalid(format!("`name` must be a string, not {}", describe(&other)))),
        };
        if name.len() > crate::MAX_RULE_NAME {
            return Err(invalid(format!(
                "`name` is {} bytes; the limit is {} bytes",
                name.len(),
                crate::MAX_RULE_NAME
            )));
        }
        if name.is_empty() || !name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')) {
            return Err(invalid(format!("bad name `{name}`: use lower-case letters, digits, `_` and `-`")));
        }
        let stage = match t.raw_get::<Value>("stage").map_err(|e| invalid(error_text(&e)))? {
            Value::Nil => return Err(invalid(format!("rule `{name}`: missing `stage`"))),
            Value::String(s) if *s.as_bytes() == *b"pre-validate" => RuleStage::PreValidate,
            Value::String(s) if *s.as_bytes() == *b"post-capture" => RuleStage::PostCapture,
            other => {
                return Err(invalid(format!(
                    "rule `{name}`: bad stage {} (expected \"pre-validate\" or \"post-capture\")",
                    describe(&other)
                )));
            }
        };
        let priority = match t.raw_get::<Value>("priority").map_err(|e| invalid(error_text(&e)))? {
            Value::Nil => 0,
            Value::Integer(i) => i,
            other => {
                return Err(invalid(format!(
                    "rule `{name}`: bad priority {} (expected an integer such as 100)",
                    describe(&other)
                )));
            }
        };
        let (wanted, other) = match stage {
            RuleStage::PreValidate => ("decide", "observe"),
            RuleStage::PostCapture => ("observe", "decide"),
        };
        let f = match t.raw_get::<Value>(wanted).map_err(|e| invalid(error_text(&e)))? {
            Value::Function(f) => f,
            other => {
                return Err(invalid(format!(
                    "rule `{name}`: a {} rule needs `{wanted} = function(ctx) ... end` (found {})",
                    stage.as_str(),
                    describe(&other)
                )));
            }
        };
        if !t.raw_get::<Value>(other).map_err(|e| invalid(error_text(&e)))?.is_nil() {
            return Err(invalid(format!(
                "rule `{name}`: a {} rule has `{wanted}`, not `{other}`",
                stage.as_str()
            )));
        }
        Ok((Declared { name, stage, priority, stateless: false }, f))
    }

    /// Evaluates the rules `range` (indexes into the state's rules, all of one stage) with the
    /// ctx `fill` describes: one call into Lua, in which Rust fills the state's read-only ctx
    /// tables (`context::fill`) and the prelude calls every rule under its own budget (see
    /// `run_stage` in the prelude). `result` gets (rule index, result) for every rule whose
    /// result was not a plain allow; the others returned a plain allow, except those from
    /// [`Progress::reached`] on. `Err` when no rule could run (the ctx could not be built).
    pub(crate) fn evaluate(
        &self,
        range: std::ops::Range<usize>,
        stage: RuleStage,
        currency: Currency,
        fill: &Fill<'_>,
        mut result: impl FnMut(usize, Result<Parts, Failure>),
    ) -> Result<Progress, String> {
        let observe = stage == RuleStage::PostCapture;
        {
            let mut sink = self.sink_lock();
            sink.observe = observe;
            sink.currency = Some(currency);
            sink.results.clear();
        }
        self.budget.reset();
        self.budget.current.store(0, Relaxed);
        let method = if observe { &self.observe } else { &self.decide };
        // Read by `context::fill` during the call only.
        let fill = Value::LightUserData(LightUserData(fill as *const Fill<'_> as *mut c_void));
        let outcome = self.run_stage.call::<Option<LuaString>>((
            &self.targets,
            method,
            range.start + 1,
            range.end,
            fill,
        ));
        for (index, r) in self.sink_lock().results.drain(..) {
            result(index, r);
        }
        match outcome {
            Ok(None) => Ok(Progress { reached: range.end, stopped: None }),
            Ok(Some(message)) => {
                if self.budget.exceeded.load(Relaxed) {
                    return Err(format!("{BUDGET_MESSAGE} while building ctx"));
                }
                Err(message.to_string_lossy())
            }
            // The loop itself failed (it never should: every rule call is protected). The rule
            // it had begun, if it delivered nothing, and every later one did not run.
            Err(e) => Ok(Progress {
                reached: self.budget.current.load(Relaxed).saturating_sub(1),
                stopped: Some(clip(error_text(&e))),
            }),
        }
    }

    /// Runs a rule file's chunk in a protected call under a fresh instruction budget (loading).
    fn call(&self, chunk: &Function, file: &str) -> Result<Returned, Failure> {
        self.budget.reset();
        let result = self.run.call::<(bool, RunResultTail)>(chunk);
        settle(&self.lua, &self.budget, file, result)
    }
}

/// What one rule call produced: `run`'s (or `run_stage`'s) xpcall flag and values, or the error
/// of the call itself. Budget and memory failures win over whatever the script returned (a
/// script's pcall cannot hide them).
fn settle(
    lua: &Lua,
    budget: &Budget,
    file: &str,
    result: mlua::Result<(bool, RunResultTail)>,
) -> Result<Returned, Failure> {
    if budget.exceeded.load(Relaxed) {
        return Err(Failure { line: budget.line_in(file), message: budget.message() });
    }
    let memory = budget.memory.load(Relaxed)
        || match &result {
            Ok((false, (Value::String(s), ..))) => *s.as_bytes() == *LUA_MEMORY_MESSAGE,
            Ok((false, (Value::Error(e), ..))) => is_memory_error(e),
            Err(e) => is_memory_error(e),
            Ok(_) => false,
        };
    if memory {
        // Free what the rule left behind before the next rule runs.
        let _ = lua.gc_collect();
        return Err(Failure {
            line: None,
            message: format!("memory limit exceeded ({} bytes)", budget.memory_bytes),
        });
    }
    let text = match result {
        Ok((true, (a, b, c, d, e, f, g, h, i))) => return Ok([a, b, c, d, e, f, g, h, i]),
        Ok((false, (Value::String(s), ..))) => s.to_string_lossy(),
        Ok((false, (Value::Error(e), ..))) => error_text(&e),
        Ok((false, (other, ..))) => format!("(error object is a {} value)", other.type_name()),
        Err(e) => error_text(&e),
    };
    let (line, message) = split_location(file, &text);
    Err(Failure { line, message: clip(message) })
}

/// A rule's returned values as a decision (pre-validate) or an observation (post-capture).
fn convert_returned(r: Returned, observe: bool, currency: Option<Currency>) -> Result<Parts, Failure> {
    let parts = match (observe, currency) {
        (true, _) => convert::observation(r),
        (false, Some(cur)) => convert::decision(r, cur),
        (false, None) => Err("internal error: no capture currency".to_owned()),
    };
    parts.map_err(|message| Failure { line: None, message: clip(message) })
}

/// The longest error message a verdict carries, in bytes; longer ones are cut (at a character
/// boundary) and end with `…`.
pub(crate) const MAX_MESSAGE: usize = 1000;

/// `message`, cut to [`MAX_MESSAGE`] bytes.
pub(crate) fn clip(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// `capture.minor` (Rust half): a decimal string in the capture's currency to minor units.
/// Returns `minor` or `nil, message`; the Lua half raises the message at the caller's line.
fn raw_minor(currency: Option<Currency>, v: Value) -> mlua::Result<(Option<i64>, Option<String>)> {
    let Some(cur) = currency else {
        return Ok((
            None,
            Some("only available while a capture is evaluated (inside decide/observe)".into()),
        ));
    };
    let text = match &v {
        Value::String(s) => match s.to_str() {
            Ok(s) => s.to_owned(),
            Err(_) => return Ok((None, Some("the amount is not UTF-8 text".into()))),
        },
        other => {
            return Ok((
                None,
                Some(format!("expected a decimal string such as \"150.00\", got {}", describe(other))),
            ));
        }
    };
    match Money::parse(&text, cur).and_then(Money::to_minor) {
        Ok(m) => Ok((Some(m), None)),
        Err(e) => Ok((None, Some(e.to_string()))),
    }
}

/// A short description of a Lua value for messages, without addresses.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Number(n) => format!("the float {n}"),
        Value::String(s) => {
            let text = s.to_string_lossy();
            if text.chars().count() > 40 {
                format!("a string of {} bytes", text.len())
            } else {
                format!("the string {text:?}")
            }
        }
        other => format!("a {}", other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_loads_from_its_bytecode() {
        // The bytecode path is the one every state takes (the text is only a fallback).
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8,
            LuaOptions::default(),
        )
        .unwrap();
        let f = lua.load(PRELUDE_BYTECODE).set_mode(ChunkMode::Binary).into_function().unwrap();
        assert_eq!(f.info().source.as_deref(), Some(format!("={PRELUDE_NAME}").as_str()));
        assert!(PRELUDE_BYTECODE.len() > 1000 && PRELUDE_BYTECODE[0] == 0x1b);
    }

    #[test]
    fn locations_are_split_off_messages() {
        assert_eq!(split_location("r.lua", "r.lua:7: boom"), (Some(7), "boom".to_owned()));
        assert_eq!(
            split_location("r.lua", "r.lua:12: boom\nstack traceback:\n\t[C]: in ?"),
            (Some(12), "boom".to_owned())
        );
        assert_eq!(split_location("r.lua", "other.lua:7: boom"), (None, "other.lua:7: boom".to_owned()));
        assert_eq!(split_location("r.lua", "r.lua: no line"), (None, "r.lua: no line".to_owned()));
        assert_eq!(split_location("r.lua", "boom"), (None, "boom".to_owned()));
        assert_eq!(
            split_location("r.lua", "capture-rules prelude:120: adjust: bad"),
            (None, "adjust: bad".to_owned())
        );
    }
}
