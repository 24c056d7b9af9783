//! Loading connector plugins from shared libraries, and calling them safely.
//!
//! The loader refuses an ELF file cut short (a half-copied library: the dynamic loader would map
//! it and the process would die of SIGBUS on first touch), opens the library with
//! `RTLD_NOW | RTLD_LOCAL` (every symbol resolved at load, none leaking into other plugins),
//! checks the descriptor header (magic, ABI major, minor, size)
//! before reading anything else, reads only the descriptor fields the plugin's `struct_size`
//! covers, validates the manifest, and never unloads the library.
//!
//! Every byte a plugin hands back is validated before the engine uses it: a known status code, a
//! non-null buffer for a success, the 1 MiB size cap ([`MAX_PLUGIN_OUTPUT`]), UTF-8, JSON of the
//! expected message schema (unknown fields refused), and for a built request a URL whose host is
//! loopback or in the manifest's `allowed_hosts`. A caught panic comes back with its message.
//! Every failure is a typed error that names the plugin file.
//!
//! A plugin may be pinned to the SHA-256 of its file ([`Plugin::load_pinned`], or `sha256` in the
//! configuration): a file whose hash differs is refused before the dynamic loader sees it.
//!
//! **Exactly the file that was checked is loaded.** The loader opens the path once, refuses
//! anything but a regular file (a directory, a FIFO, a socket or a device is
//! [`PluginLoadError::NotAFile`], judged on the open file, opened without blocking), reads at
//! offsets only what the checks look at (the ELF header, the truncation check, the entry
//! symbol's type in `.dynsym`; the whole file for a pin's hash), then hands the dynamic loader
//! that same open file (`/proc/self/fd/N`; an absolute canonical path where `/proc` is
//! missing). A bare file name never goes through the library search path (`LD_LIBRARY_PATH`).
//! Every error the dynamic loader reports carries its own reason (`dlerror`).
//!
//! **Every call has a deadline.** Calls run on a worker thread of the plugin's own and the caller
//! waits at most the call timeout ([`DEFAULT_CALL_TIMEOUT`], `plugin_call_timeout_ms` in the
//! configuration). A call that overruns is [`PluginCallError::Timeout`] (its capture fails with
//! nothing sent) and the plugin is marked unhealthy ([`Plugin::unhealthy`]): the stuck thread
//! cannot be stopped, so every later call fails at once ([`PluginCallError::Unhealthy`]) until
//! the process restarts.

use std::ffi::c_int;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use capture_connector_api::abi::{
    ABI_MAJOR, ABI_MINOR, Buffer, BuildStructFn, BuildWithContextFn, CallFn, DESCRIPTOR_SIZE_V1_0,
    DESCRIPTOR_SIZE_V1_1, DESCRIPTOR_SIZE_V1_2, DESCRIPTOR_SIZE_V1_3, DescriptorHeader, ENTRY_SYMBOL,
    EntryFn, FreeContextFn, FreeFn, FreeOutputFn, MAGIC, ManifestFn, ParseStructFn, ParseWithContextFn,
    RawCaptureResult, RawHttpRequest, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use capture_connector_api::structs::{CallView, ResponseView};
use capture_connector_api::{
    CaptureCall, CaptureResult, ConnectorError, HttpRequest, HttpResponse, Manifest, ParseCall,
    SCHEMA_VERSION, StatusCall, StatusParseCall,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The largest buffer a plugin may return (manifest, request or result).
pub const MAX_PLUGIN_OUTPUT: usize = 1 << 20;
/// The longest URL a plugin may build, in bytes.
pub const MAX_URL: usize = 8 * 1024;
/// The most headers a built request may have.
pub const MAX_HEADERS: usize = 64;
/// The longest id a result may carry (`platform_capture_id`), in bytes.
pub const MAX_RESULT_ID: usize = 255;
/// The longest text a result may carry (`failure.message`; `kind`, `platform_code` and
/// `captured_amount`: 100), in bytes; longer texts are cut, ending with `…`.
pub const MAX_RESULT_TEXT: usize = 1000;

/// The longest connector name a manifest may declare, in bytes.
pub const MAX_MANIFEST_NAME: usize = 100;
/// The largest plugin file the loader reads.
pub const MAX_PLUGIN_FILE: u64 = 512 << 20;
/// How long one plugin call may take before it fails and the plugin is marked unhealthy.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long, by default, a caller and the plugin's worker thread spin before they sleep.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// The longest spin [`LoadOptions::spin`] accepts (a longer one is cut to it).
pub const MAX_SPIN: Duration = Duration::from_millis(1);

/// How to load a plugin: an optional SHA-256 pin, the deadline of its calls and how long the
/// hand-off to its worker thread spins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The SHA-256 the file must have (hex, either case).
    pub sha256: Option<String>,
    /// The deadline of every call (the manifest's at load included).
    pub call_timeout: Duration,
    /// How long a caller polls for its answer, and the idle worker for its next call, before
    /// sleeping ([`DEFAULT_SPIN`], at most [`MAX_SPIN`]).
    pub spin: Duration,
    /// Whether a capture uses the plugin's ABI 1.3 struct messages when it has them (the
    /// default); `false` keeps every call on JSON, for comparing the two paths.
    pub struct_messages: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            sha256: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            spin: DEFAULT_SPIN,
            struct_messages: true,
        }
    }
}

impl LoadOptions {
    /// Pins the file to this SHA-256.
    pub fn sha256(mut self, sha256: impl Into<String>) -> LoadOptions {
        self.sha256 = Some(sha256.into());
        self
    }

    /// Sets the deadline of every call.
    pub fn call_timeout(mut self, timeout: Duration) -> LoadOptions {
        self.call_timeout = timeout;
        self
    }

    /// Sets how long the hand-off to the worker thread spins before sleeping (cut to
    /// [`MAX_SPIN`]). Spinning saves a thread wake-up per call where waking a parked thread costs
    /// more than the call (virtual machines); `Duration::ZERO` never spins, for hosts that would
    /// rather not burn a core's idle time, and for instruction counts that leave out waiting.
    pub fn spin(mut self, spin: Duration) -> LoadOptions {
        self.spin = spin.min(MAX_SPIN);
        self
    }

    /// Whether captures use the plugin's ABI 1.3 struct messages when it has them (default
    /// `true`); with `false` every call goes through the JSON functions.
    pub fn struct_messages(mut self, on: bool) -> LoadOptions {
        self.struct_messages = on;
        self
    }
}

/// Why a plugin could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginLoadError {
    /// No file at the path.
    #[error("connector plugin {path}: no such file (build it with `cargo build --workspace`)")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file could not be opened or read (to check it, or its pinned hash), or its worker
    /// thread could not be started.
    #[error("connector plugin {path}: cannot read the file: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file's SHA-256 is not the one the configuration pins.
    #[error(
        "connector plugin {path}: sha256 mismatch: the configuration pins {expected}, the file has {actual}; refusing to load it"
    )]
    Sha256Mismatch {
        /// The path.
        path: PathBuf,
        /// The pinned hash (lower-case hex).
        expected: String,
        /// The file's hash (lower-case hex).
        actual: String,
    },
    /// The file is an ELF library cut short: a segment the loader would map lies past its end
    /// (a half-copied file). Mapping it would crash the process on first touch, so it is refused
    /// before the dynamic loader sees it.
    #[error(
        "connector plugin {path}: the file is truncated: it is {size} bytes but its program headers need {needed} (was it copied completely?)"
    )]
    Truncated {
        /// The path.
        path: PathBuf,
        /// The file's size.
        size: u64,
        /// The size its loadable segments need.
        needed: u64,
    },
    /// The path is not a regular file: a directory, a FIFO, a socket or a device.
    #[error("connector plugin {path}: is {kind}, not a library file")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The file is not a shared library at all: empty, text, not ELF, an executable or an object
    /// file. Both the loader's check and the dynamic loader's own reason are given.
    #[error("connector plugin {path}: not a shared library: {reason} (dynamic loader: {loader})")]
    NotALibrary {
        /// The path.
        path: PathBuf,
        /// What the file is.
        reason: String,
        /// The dynamic loader's message (`dlerror`).
        loader: String,
    },
    /// The dynamic loader refused the file (wrong architecture, missing dependencies or symbols).
    #[error("connector plugin {path}: cannot be loaded as a shared library: {message}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The loader's message (`dlerror`).
        message: String,
    },
    /// The library does not export `capture_connector_entry`.
    #[error(
        "connector plugin {path}: no `capture_connector_entry` symbol: not a capture connector ({loader})"
    )]
    MissingEntry {
        /// The path.
        path: PathBuf,
        /// The dynamic loader's message (`dlerror`).
        loader: String,
    },
    /// The library exports `capture_connector_entry`, but not as a function (a data object, for
    /// example): calling it would crash the host, so it is never called.
    #[error(
        "connector plugin {path}: `capture_connector_entry` is {kind}, not a function; refusing to call it"
    )]
    EntryNotFunction {
        /// The path.
        path: PathBuf,
        /// What the symbol is.
        kind: &'static str,
    },
    /// The entry function returned a null pointer.
    #[error("connector plugin {path}: the entry function returned no descriptor")]
    NullDescriptor {
        /// The path.
        path: PathBuf,
    },
    /// The descriptor does not start with the magic number.
    #[error("connector plugin {path}: descriptor has magic {found:#010x}, expected {MAGIC:#010x}")]
    BadMagic {
        /// The path.
        path: PathBuf,
        /// What it had.
        found: u32,
    },
    /// The ABI version is not one this host can load.
    #[error(
        "connector plugin {path}: built for connector ABI {major}.{minor}, this engine loads ABI {ABI_MAJOR}.0 to {ABI_MAJOR}.{ABI_MINOR}; {hint}"
    )]
    AbiVersion {
        /// The path.
        path: PathBuf,
        /// The plugin's major.
        major: u16,
        /// The plugin's minor.
        minor: u16,
        /// What to do.
        hint: &'static str,
    },
    /// The descriptor is smaller than its version requires.
    #[error(
        "connector plugin {path}: descriptor is {size} bytes, ABI {ABI_MAJOR}.0 needs at least {DESCRIPTOR_SIZE_V1_0}"
    )]
    DescriptorTooSmall {
        /// The path.
        path: PathBuf,
        /// Its declared size.
        size: u32,
    },
    /// A required function pointer is null.
    #[error("connector plugin {path}: descriptor function `{function}` is null")]
    MissingFunction {
        /// The path.
        path: PathBuf,
        /// Which function.
        function: &'static str,
    },
    /// The entry or manifest function failed (panic, error status, broken buffer, over the call
    /// deadline).
    #[error("connector plugin {path}: the entry or manifest function failed: {source}")]
    Manifest {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        source: PluginCallError,
    },
    /// The manifest is not valid: wrong schema, unknown field, or a value the engine refuses.
    #[error("connector plugin {path}: invalid manifest: {problem}")]
    InvalidManifest {
        /// The path.
        path: PathBuf,
        /// What is wrong, naming the field.
        problem: String,
    },
}

/// Why a call into a plugin failed. Every variant but [`PluginCallError::Refused`] (the
/// connector's own answer) and [`PluginCallError::Unsupported`] is a broken contract, and names
/// the plugin by its file name (not its full path, so that reports are the same wherever the
/// library is installed; [`Plugin::path`] has the full path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginCallError {
    /// The connector refused the call with its own error.
    #[error("connector refused: {0}")]
    Refused(ConnectorError),
    /// The connector panicked (caught at the boundary); the message is the panic's.
    #[error("connector plugin {file} panicked: {message}")]
    Panicked {
        /// The plugin's file name.
        file: String,
        /// The panic message.
        message: String,
    },
    /// The plugin broke the ABI contract (null buffer with a success status, unknown status code,
    /// oversized output, an error status without a readable error).
    #[error("connector plugin {file} broke the ABI contract: {problem}")]
    Contract {
        /// The plugin's file name.
        file: String,
        /// What it did.
        problem: String,
    },
    /// The plugin does not provide this function (older ABI minor or capability not declared).
    #[error("connector does not support the {0}")]
    Unsupported(&'static str),
    /// The plugin's output is not valid UTF-8 JSON of the expected message schema.
    #[error("connector plugin {file} returned invalid output: {problem}")]
    InvalidOutput {
        /// The plugin's file name.
        file: String,
        /// What is wrong, with the JSON path when the schema does not match.
        problem: String,
    },
    /// The call did not return within the plugin's call timeout. The plugin is now unhealthy.
    #[error(
        "connector plugin {file} did not return from {function} within {ms} ms; it is marked unhealthy and every later call fails at once"
    )]
    Timeout {
        /// The plugin's file name.
        file: String,
        /// The function called.
        function: &'static str,
        /// The timeout, in milliseconds.
        ms: u64,
    },
    /// The plugin is unhealthy (an earlier call overran its deadline): the call was not made.
    #[error("connector plugin {file} is unhealthy: {reason}; the call was not made (restart the engine)")]
    Unhealthy {
        /// The plugin's file name.
        file: String,
        /// Why.
        reason: String,
    },
    /// The plugin built a request for a host that is neither loopback nor in its manifest's
    /// `allowed_hosts`.
    #[error(
        "connector plugin {file} built a request for `{url}`: host `{host}` is not loopback and not in the manifest's allowed hosts {allowed:?}"
    )]
    ForeignHost {
        /// The plugin's file name.
        file: String,
        /// The URL it built.
        url: String,
        /// Its host.
        host: String,
        /// The manifest's allow-list.
        allowed: Vec<String>,
    },
}

/// A capture request a plugin built and the host checked ([`Plugin::build_capture_checked`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct BuiltCapture {
    /// The request, as the plugin built it.
    pub request: HttpRequest,
    /// Its URL, parsed once by the checks.
    pub url: url::Url,
    call: BuiltCall,
}

impl BuiltCapture {
    /// Splits off what [`Plugin::parse_built`] needs from the request.
    pub fn into_parts(self) -> (HttpRequest, url::Url, BuiltCall) {
        (self.request, self.url, self.call)
    }
}

/// What reading the answer to a [`BuiltCapture`] needs (for [`Plugin::parse_built`]): the call's
/// JSON as it was sent, or a 1.2 plugin's per-call context. Dropped without a parse, it hands the
/// context back to the plugin (`free_context`, on the plugin's worker thread, without waiting).
#[derive(Debug)]
pub struct BuiltCall(CallState);

enum CallState {
    Sent(Vec<u8>),
    /// `structs`: the context was made by the 1.3 struct build, and is parsed by its struct parse.
    Context {
        context: usize,
        free: FreeContextFn,
        jobs: mpsc::Sender<Job>,
        structs: bool,
    },
    Done,
}

impl std::fmt::Debug for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallState::Sent(bytes) => write!(f, "Sent({} bytes)", bytes.len()),
            CallState::Context { context, .. } => write!(f, "Context({context:#x})"),
            CallState::Done => f.write_str("Done"),
        }
    }
}

impl Drop for BuiltCall {
    fn drop(&mut self) {
        if let CallState::Context { context, free, jobs, .. } =
            std::mem::replace(&mut self.0, CallState::Done)
            && context != 0
        {
            // A stuck worker never runs it: the context leaks with the stuck call. A worker that
            // has ended refuses it: nothing can free the context then, and it leaks with it (no
            // capture state depends on it).
            let freeing = jobs.send(Box::new(move || {
                // SAFETY: a context of this plugin's, handed back exactly once.
                unsafe { free(context as *mut std::ffi::c_void) }
            }));
            if let Err(refused) = freeing {
                drop(refused);
            }
        }
    }
}

/// A context a build made, on its way back from the worker to the caller: handed back to the
/// plugin if nobody takes it. A caller whose deadline passed has stopped waiting, so the answer
/// it would have read is dropped on the worker when the late build ends; the context goes back
/// to the plugin then instead of leaking.
struct Made {
    /// The context's address (the plugin allows it to cross threads); 0 for none.
    context: usize,
    free: FreeContextFn,
}

impl Made {
    fn new(context: *mut std::ffi::c_void, free: FreeContextFn) -> Made {
        Made { context: context as usize, free }
    }

    /// The context, now the caller's to hand back.
    fn keep(mut self) -> usize {
        std::mem::take(&mut self.context)
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if self.context != 0 {
            // SAFETY: a context of this plugin's that nobody kept, handed back exactly once.
            unsafe { (self.free)(self.context as *mut std::ffi::c_void) }
        }
    }
}

/// The [`ParseCall`] JSON of an encoded call and an answer: what `serde_json` writes for
/// `ParseCall { schema, call, response }`, with the call's bytes copied instead of encoded again.
fn parse_message(call: &[u8], response: &HttpResponse) -> Result<Vec<u8>, serde_json::Error> {
    const HEAD: &[u8] = b"{\"schema\":";
    let mut bytes = Vec::with_capacity(call.len() + response.body.len() + 256);
    bytes.extend_from_slice(HEAD);
    serde_json::to_writer(&mut bytes, &SCHEMA_VERSION)?;
    bytes.extend_from_slice(b",\"call\":");
    bytes.extend_from_slice(call);
    bytes.extend_from_slice(b",\"response\":");
    serde_json::to_writer(&mut bytes, response)?;
    bytes.push(b'}');
    Ok(bytes)
}

/// A function of the descriptor that takes a JSON message, for [`Plugin::call_raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginFunction {
    /// `build_capture`: [`CaptureCall`] in, [`HttpRequest`] out.
    BuildCapture,
    /// `parse_capture`: [`ParseCall`] in, [`CaptureResult`] out.
    ParseCapture,
    /// `build_status` (ABI 1.1): [`StatusCall`] in, [`HttpRequest`] out.
    BuildStatus,
    /// `parse_status` (ABI 1.1): [`StatusParseCall`] in, [`CaptureResult`] out.
    ParseStatus,
}

/// A loaded connector plugin. Cheap to share (`Arc`); safe to call from many threads.
#[derive(Debug)]
pub struct Plugin {
    path: PathBuf,
    file: String,
    manifest: Manifest,
    abi: (u16, u16),
    descriptor_size: u32,
    build_capture: CallFn,
    parse_capture: CallFn,
    free_buffer: FreeFn,
    /// ABI 1.1; `None` for a 1.0 plugin or one that does not read status.
    build_status: Option<CallFn>,
    parse_status: Option<CallFn>,
    /// ABI 1.2, all three or none: the per-call context.
    with_context: Option<(BuildWithContextFn, ParseWithContextFn, FreeContextFn)>,
    /// ABI 1.3, all three or none (and only with the 1.2 three): captures as struct messages.
    structs: Option<(BuildStructFn, ParseStructFn, FreeOutputFn)>,
    worker: Worker,
}

/// A job for a plugin's worker thread.
type Job = Box<dyn FnOnce() + Send>;

/// Where a job's answer is left for its caller: (the answer, whether the job has finished).
type AnswerSlot<O> = (Mutex<(Option<Result<O, PluginCallError>>, bool)>, Condvar);

/// The thread a plugin's calls run on, and the plugin's health.
struct Worker {
    file: String,
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
    /// How long a caller polls for its answer before it sleeps.
    spin: Duration,
    /// Why the plugin is unhealthy; `None` while it is healthy.
    unhealthy: Mutex<Option<String>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("timeout", &self.timeout)
            .field("unhealthy", &self.unhealthy())
            .finish_non_exhaustive()
    }
}

/// The worker's next job: taken at once if queued, else waited for spinning up to `spin`, then
/// asleep; `None` once the plugin (every sender) is gone.
fn next_job(queue: &mpsc::Receiver<Job>, spin: Duration) -> Option<Job> {
    if spin.is_zero() {
        return queue.recv().ok();
    }
    let spin_until = Instant::now() + spin;
    loop {
        match queue.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if Instant::now() < spin_until => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return queue.recv().ok(),
        }
    }
}

impl Worker {
    fn start(file: &str, timeout: Duration, spin: Duration) -> std::io::Result<Worker> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name(format!("plugin {file}")).spawn(move || {
            while let Some(job) = next_job(&queue, spin) {
                job();
            }
        })?;
        Ok(Worker { file: file.to_owned(), jobs, timeout, spin, unhealthy: Mutex::new(None) })
    }

    fn unhealthy(&self) -> Option<String> {
        self.unhealthy.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn mark_unhealthy(&self, reason: String) {
        self.unhealthy.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(reason);
    }

    /// Runs `job` on the worker thread and waits for it at most the timeout.
    fn run<O: Send + 'static>(
        &self,
        function: &'static str,
        job: impl FnOnce() -> Result<O, PluginCallError> + Send + 'static,
    ) -> Result<O, PluginCallError> {
        if let Some(reason) = self.unhealthy() {
            return Err(PluginCallError::Unhealthy { file: self.file.clone(), reason });
        }
        // The answer's slot: a mutex and a condition variable (one plain allocation; a channel
        // per call costs an aligned allocation and more). `None` until the job has run; a job
        // that panicked out of the plugin's wrapper, or a worker gone, leaves it `None` and
        // marks it `dropped`.
        let slot: Arc<AnswerSlot<O>> = Arc::new((Mutex::new((None, false)), Condvar::new()));
        let theirs = Arc::clone(&slot);
        let sent = self.jobs.send(Box::new(move || {
            // Filled even if the job unwinds (the guard marks it dropped), so the caller never
            // waits out its deadline for a job that is gone.
            struct Fill<'a, O>(&'a AnswerSlot<O>, Option<Result<O, PluginCallError>>);
            impl<O> Drop for Fill<'_, O> {
                fn drop(&mut self) {
                    let (lock, ready) = self.0;
                    let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    *state = (self.1.take(), true);
                    ready.notify_one();
                }
            }
            let mut fill = Fill(&theirs, None);
            fill.1 = Some(job());
        }));
        let gone = || "its worker thread has ended".to_owned();
        if sent.is_err() {
            self.mark_unhealthy(gone());
            return Err(PluginCallError::Unhealthy { file: self.file.clone(), reason: gone() });
        }
        let (lock, ready) = &*slot;
        // A plugin call takes tens of microseconds; waking a thread parked on an idle virtual CPU
        // can take longer than that. So both sides spin briefly before they sleep: the deadline
        // is the timeout plus at most the spin. Each turn yields the CPU: when every core is busy
        // (captures at high concurrency), the thread that must answer gets to run instead of
        // waiting behind the spinner; on an idle core the yield returns at once.
        let spin_until = Instant::now() + self.spin;
        while !self.spin.is_zero() && Instant::now() < spin_until {
            if lock.try_lock().is_ok_and(|s| s.1) {
                break;
            }
            std::thread::yield_now();
        }
        let state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut state, waited) = ready
            .wait_timeout_while(state, self.timeout, |(_, done)| !*done)
            .unwrap_or_else(PoisonError::into_inner);
        match state.0.take() {
            Some(r) => r,
            None if waited.timed_out() && !state.1 => {
                let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
                self.mark_unhealthy(format!("{function} did not return within {ms} ms"));
                Err(PluginCallError::Timeout { file: self.file.clone(), function, ms })
            }
            None => {
                self.mark_unhealthy(gone());
                Err(PluginCallError::Unhealthy { file: self.file.clone(), reason: gone() })
            }
        }
    }
}

// SAFETY: the function pointers point into a library that is never unloaded, and the ABI requires
// every plugin function to be callable from many threads at once.
unsafe impl Send for Plugin {}
// SAFETY: as above; `Plugin` holds no interior mutability.
unsafe impl Sync for Plugin {}

/// The SHA-256 of a file, as 64 lower-case hex digits.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
    }
    Ok(crate::clock::hex(&hasher.finalize()))
}

/// Checks a file against a pinned SHA-256 (hex, either case) before it is loaded.
///
/// The pin detects a wrong, stale or altered file. It is checked on the file as it is when the
/// engine starts; whoever can replace the file between this check and the load could as well
/// edit the configuration, so it is no defence against them.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), PluginLoadError> {
    if !path.is_file() {
        return Err(PluginLoadError::NotFound { path: path.to_path_buf() });
    }
    let actual =
        sha256_file(path).map_err(|source| PluginLoadError::Read { path: path.to_path_buf(), source })?;
    let expected = expected.trim().to_ascii_lowercase();
    if actual == expected {
        Ok(())
    } else {
        Err(PluginLoadError::Sha256Mismatch { path: path.to_path_buf(), expected, actual })
    }
}

impl Plugin {
    /// Loads a plugin from a shared library file (no pin, the default call timeout).
    pub fn load(path: &Path) -> Result<Plugin, PluginLoadError> {
        Plugin::load_with(path, &LoadOptions::default())
    }

    /// Loads a plugin: opens the path once, checks the bytes read from that open file (the pin,
    /// the ELF checks) and has the dynamic loader load that same file (see the module docs).
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Plugin, PluginLoadError> {
        let path_buf = path.to_path_buf();
        let (file_handle, size) = open_exactly(path)?;
        if let Some(pin) = &options.sha256 {
            let actual = sha256_open(&file_handle, size)
                .map_err(|source| PluginLoadError::Read { path: path_buf.clone(), source })?;
            let expected = pin.trim().to_ascii_lowercase();
            if actual != expected {
                return Err(PluginLoadError::Sha256Mismatch { path: path_buf, expected, actual });
            }
        }
        let file = file_name(path);
        let symbol = &ENTRY_SYMBOL[..ENTRY_SYMBOL.len() - 1];
        let inspected = crate::elf::inspect_bytes(&crate::elf::FileBytes::new(&file_handle, size), symbol);
        match inspected {
            Ok(_) => {}
            Err(crate::elf::ElfProblem::NotALibrary(reason)) => {
                // The dynamic loader's own reason too: it refuses such a file before mapping it.
                let loader = match dlopen_exact(file_handle, path) {
                    Err((_, message)) => message,
                    // Never unloaded, never called.
                    Ok((lib, _)) => {
                        std::mem::forget(lib);
                        "it loaded the file all the same".to_owned()
                    }
                };
                return Err(PluginLoadError::NotALibrary { path: path_buf, reason, loader });
            }
            Err(crate::elf::ElfProblem::Truncated { size, needed }) => {
                return Err(PluginLoadError::Truncated { path: path_buf, size, needed });
            }
            Err(crate::elf::ElfProblem::EntryNotFunction { kind }) => {
                return Err(PluginLoadError::EntryNotFunction { path: path_buf, kind });
            }
        }
        let (lib, loader_path) = dlopen_exact(file_handle, path)
            .map_err(|(_, message)| PluginLoadError::Open { path: path_buf.clone(), message })?;
        // SAFETY: the symbol's type is the documented entry function type; `.dynsym` says it is
        // a function (checked above when the table is readable).
        let entry: EntryFn = match unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL) } {
            Ok(sym) => *sym,
            Err(e) => {
                return Err(PluginLoadError::MissingEntry {
                    path: path_buf,
                    loader: loader_message(&e, &loader_path, path),
                });
            }
        };
        // The dynamic loader's own word on what the symbol is, whatever the section headers said
        // (a library stripped of them, which the loader still loads, hides `.dynsym`'s types from
        // the ELF checks): data called as code would crash the host.
        if let Some(kind) = loaded_symbol_not_a_function(entry as *const std::ffi::c_void) {
            std::mem::forget(lib);
            return Err(PluginLoadError::EntryNotFunction { path: path_buf, kind });
        }
        // Never unload: function pointers and static data stay valid for the life of the process.
        std::mem::forget(lib);
        let worker = Worker::start(&file, options.call_timeout, options.spin.min(MAX_SPIN))
            .map_err(|source| PluginLoadError::Read { path: path_buf.clone(), source })?;
        // The entry function runs under the deadline too. The pointer crosses threads as an
        // address: it points into the library's static data, valid for the life of the process.
        let address = worker.run("capture_connector_entry", move || {
            // SAFETY: calling the documented entry function, which takes no arguments; `.dynsym`
            // says the symbol is a function.
            Ok(unsafe { entry() } as usize)
        });
        let desc = match address {
            Ok(a) => a as *const capture_connector_api::abi::ConnectorDescriptor,
            Err(source) => return Err(PluginLoadError::Manifest { path: path_buf, source }),
        };
        if desc.is_null() {
            return Err(PluginLoadError::NullDescriptor { path: path_buf });
        }
        // SAFETY: every descriptor, whatever its version, starts with the header.
        let header: DescriptorHeader = unsafe { std::ptr::read(desc.cast::<DescriptorHeader>()) };
        if header.magic != MAGIC {
            return Err(PluginLoadError::BadMagic { path: path_buf, found: header.magic });
        }
        let (major, minor) = (header.abi_major, header.abi_minor);
        if major != ABI_MAJOR {
            let hint = "rebuild the plugin against this engine's capture-connector-api";
            return Err(PluginLoadError::AbiVersion { path: path_buf, major, minor, hint });
        }
        if minor > ABI_MINOR {
            let hint = "the plugin is newer than this engine: upgrade the engine or rebuild the plugin";
            return Err(PluginLoadError::AbiVersion { path: path_buf, major, minor, hint });
        }
        if (header.struct_size as usize) < DESCRIPTOR_SIZE_V1_0 {
            return Err(PluginLoadError::DescriptorTooSmall { path: path_buf, size: header.struct_size });
        }
        // Read field by field, never past what the plugin's `struct_size` covers: a 1.0 plugin's
        // descriptor ends at `free_buffer`.
        let missing = |function| PluginLoadError::MissingFunction { path: path_buf.clone(), function };
        // SAFETY: the header says the descriptor is at least the 1.0 size; these fields lie in it.
        let (manifest, build, parse, free) =
            unsafe { ((*desc).manifest, (*desc).build_capture, (*desc).parse_capture, (*desc).free_buffer) };
        let manifest_fn: ManifestFn = manifest.ok_or_else(|| missing("manifest"))?;
        let build_capture = build.ok_or_else(|| missing("build_capture"))?;
        let parse_capture = parse.ok_or_else(|| missing("parse_capture"))?;
        let free_buffer = free.ok_or_else(|| missing("free_buffer"))?;
        let (build_status, parse_status) =
            if minor >= 1 && header.struct_size as usize >= DESCRIPTOR_SIZE_V1_1 {
                // SAFETY: a 1.1 descriptor of at least the 1.1 size has these fields.
                unsafe { ((*desc).build_status, (*desc).parse_status) }
            } else {
                (None, None)
            };
        // The three functions of a minor come together (a context made must have a way back,
        // a struct answer a way to be freed): all set or all null, the first null one named.
        let with_context = if minor >= 2 && header.struct_size as usize >= DESCRIPTOR_SIZE_V1_2 {
            // SAFETY: a 1.2 descriptor of at least the 1.2 size has these fields.
            let fields =
                unsafe { ((*desc).build_capture_with, (*desc).parse_capture_with, (*desc).free_context) };
            all_or_none(fields, ["build_capture_with", "parse_capture_with", "free_context"])
                .map_err(missing)?
        } else {
            None
        };
        let structs = if minor >= 3 && header.struct_size as usize >= DESCRIPTOR_SIZE_V1_3 {
            // SAFETY: a 1.3 descriptor of at least the 1.3 size has these fields.
            let fields =
                unsafe { ((*desc).build_capture_struct, (*desc).parse_capture_struct, (*desc).free_output) };
            let structs =
                all_or_none(fields, ["build_capture_struct", "parse_capture_struct", "free_output"])
                    .map_err(missing)?;
            // The struct build's contexts are released by the 1.2 `free_context`.
            if structs.is_some() && with_context.is_none() {
                return Err(missing("free_context"));
            }
            structs
        } else {
            None
        };
        let structs = structs.filter(|_| options.struct_messages);

        let manifest_file = file.clone();
        let manifest = worker.run("manifest", move || {
            let mut out = Buffer::empty();
            // SAFETY: `out` is a valid, writable buffer, as the ABI requires.
            let status = unsafe { manifest_fn(&mut out) };
            take_output::<Manifest>(&manifest_file, status, out, free_buffer)
        });
        let manifest = match manifest {
            Ok(m) => m,
            Err(PluginCallError::InvalidOutput { problem, .. }) => {
                return Err(PluginLoadError::InvalidManifest { path: path_buf, problem });
            }
            Err(source) => return Err(PluginLoadError::Manifest { path: path_buf, source }),
        };
        if let Err(problem) = validate_manifest(&manifest) {
            return Err(PluginLoadError::InvalidManifest { path: path_buf, problem });
        }
        if manifest.capabilities.status_query && (build_status.is_none() || parse_status.is_none()) {
            let problem = format!(
                "capabilities.status_query is true, but the ABI {major}.{minor} descriptor has no \
                 build_status/parse_status function (they need ABI 1.1 and non-null pointers)"
            );
            return Err(PluginLoadError::InvalidManifest { path: path_buf, problem });
        }
        Ok(Plugin {
            path: path_buf,
            file,
            manifest,
            abi: (major, minor),
            descriptor_size: header.struct_size,
            build_capture,
            parse_capture,
            free_buffer,
            build_status,
            parse_status,
            with_context,
            structs,
            worker,
        })
    }

    /// Loads a plugin after checking that its file's SHA-256 is `sha256` (hex): a mismatch is
    /// [`PluginLoadError::Sha256Mismatch`] and the dynamic loader never sees the file. The bytes
    /// hashed are the bytes loaded (see [`Plugin::load_with`]).
    pub fn load_pinned(path: &Path, sha256: &str) -> Result<Plugin, PluginLoadError> {
        Plugin::load_with(path, &LoadOptions::default().sha256(sha256))
    }

    /// Why the plugin is unhealthy (a call overran its deadline), or `None` while it is healthy.
    /// An unhealthy plugin's calls fail at once with [`PluginCallError::Unhealthy`].
    pub fn unhealthy(&self) -> Option<String> {
        self.worker.unhealthy()
    }

    /// The deadline of each call.
    pub fn call_timeout(&self) -> Duration {
        self.worker.timeout
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name, as call errors name it.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plugin's ABI version (major, minor).
    pub fn abi_version(&self) -> (u16, u16) {
        self.abi
    }

    /// The descriptor's `struct_size`, as the plugin declared it.
    pub fn descriptor_size(&self) -> u32 {
        self.descriptor_size
    }

    /// Asks the connector to build the capture request. The URL's host must be loopback or in the
    /// manifest's `allowed_hosts` ([`PluginCallError::ForeignHost`] otherwise).
    pub fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, PluginCallError> {
        self.build_capture_allowing(call, &[])
    }

    /// Like [`Plugin::build_capture`], also accepting hosts the operator allowed for this
    /// platform (a self-hosted platform such as Medusa lives on the merchant's own domain).
    pub fn build_capture_allowing(
        &self,
        call: &CaptureCall,
        extra: &[String],
    ) -> Result<HttpRequest, PluginCallError> {
        self.build_capture_checked(call, extra).map(|built| built.request)
    }

    /// Like [`Plugin::build_capture_allowing`], and keeps what reading the answer needs: the URL
    /// as the checks parsed it (so nothing parses it again) and the call's JSON (so the parse
    /// message carries those bytes again instead of encoding the call a second time; see
    /// [`Plugin::parse_built`]).
    pub fn build_capture_checked(
        &self,
        call: &CaptureCall,
        extra: &[String],
    ) -> Result<BuiltCapture, PluginCallError> {
        self.build_checked(Cow::Borrowed(call), extra)
    }

    /// Like [`Plugin::build_capture_checked`], taking the call by value: with ABI 1.3 struct
    /// messages the call crosses to the plugin's worker thread as it is, not copied.
    pub fn build_capture_checked_owned(
        &self,
        call: CaptureCall,
        extra: &[String],
    ) -> Result<BuiltCapture, PluginCallError> {
        self.build_checked(Cow::Owned(call), extra)
    }

    /// Whether captures go through the plugin's ABI 1.3 struct messages (it has them and the
    /// load options did not turn them off).
    pub fn uses_struct_messages(&self) -> bool {
        self.structs.is_some()
    }

    fn build_checked(
        &self,
        call: Cow<'_, CaptureCall>,
        extra: &[String],
    ) -> Result<BuiltCapture, PluginCallError> {
        if let (Some((build_struct, _, free_output)), Some((_, _, free_context))) =
            (self.structs, self.with_context)
        {
            // The call moves to the worker (a call the deadline abandons must not point into the
            // caller's memory) and comes back with the answer, to be freed on the thread that
            // made it (the allocator's per-thread caches then stay balanced).
            let call = call.into_owned();
            let (file, free) = (self.file.clone(), self.free_buffer);
            let (request, context, call) = self.worker.run("build_capture", move || {
                let view = CallView::new(&call);
                let raw = view.raw();
                let mut out = RawHttpRequest::empty();
                let mut context: *mut std::ffi::c_void = std::ptr::null_mut();
                let mut error = Buffer::empty();
                // SAFETY: `raw` points into `call` and `view`, alive for the call; `out`,
                // `context` and `error` are writable, as the ABI requires.
                let status = unsafe { build_struct(&raw, &mut out, &mut context, &mut error) };
                let context = if status == STATUS_OK { context } else { std::ptr::null_mut() };
                let read = take_struct(&file, status, error, free, out.owner, free_output, || {
                    // SAFETY: the plugin keeps what `out` points to until its owner is freed,
                    // which `take_struct` does after this read.
                    unsafe {
                        capture_connector_api::structs::read_request(&out, MAX_HEADERS, MAX_PLUGIN_OUTPUT)
                    }
                });
                drop(view);
                match read {
                    Ok(request) => Ok((request, Made::new(context, free_context), call)),
                    Err(e) => {
                        if !context.is_null() {
                            // SAFETY: a context this call made, handed back once.
                            unsafe { free_context(context) };
                        }
                        Err(e)
                    }
                }
            })?;
            drop(call);
            let call = BuiltCall(CallState::Context {
                context: context.keep(),
                free: free_context,
                jobs: self.worker.jobs.clone(),
                structs: true,
            });
            // A refused URL drops `call`, which releases the context.
            let url = self.check_host(&request, extra)?;
            return Ok(BuiltCapture { request, url, call });
        }
        let bytes = self.encode(&*call)?;
        if let Some((build_with, _, free_context)) = self.with_context {
            let (file, free) = (self.file.clone(), self.free_buffer);
            let (request, context) = self.worker.run("build_capture", move || {
                let mut out = Buffer::empty();
                let mut context: *mut std::ffi::c_void = std::ptr::null_mut();
                // SAFETY: `bytes` is valid for the call, `out` and `context` are writable, as the
                // ABI requires.
                let status = unsafe { build_with(bytes.as_ptr(), bytes.len(), &mut out, &mut context) };
                let context = if status == STATUS_OK { context } else { std::ptr::null_mut() };
                match take_output::<HttpRequest>(&file, status, out, free) {
                    // The pointer crosses threads as an address; the plugin allows it (ABI 1.2).
                    Ok(request) => Ok((request, Made::new(context, free_context))),
                    Err(e) => {
                        if !context.is_null() {
                            // SAFETY: a context this call made, handed back once.
                            unsafe { free_context(context) };
                        }
                        Err(e)
                    }
                }
            })?;
            let call = BuiltCall(CallState::Context {
                context: context.keep(),
                free: free_context,
                jobs: self.worker.jobs.clone(),
                structs: false,
            });
            // A refused URL drops `call`, which releases the context.
            let url = self.check_host(&request, extra)?;
            return Ok(BuiltCapture { request, url, call });
        }
        // The input comes back from the worker with the answer: kept for the parse message.
        let (file, free, f) = (self.file.clone(), self.free_buffer, self.build_capture);
        let (request, bytes) = self.worker.run("build_capture", move || {
            let mut out = Buffer::empty();
            // SAFETY: `bytes` is valid for the call and `out` is writable, as the ABI requires.
            let status = unsafe { f(bytes.as_ptr(), bytes.len(), &mut out) };
            take_output::<HttpRequest>(&file, status, out, free).map(|request| (request, bytes))
        })?;
        let url = self.check_host(&request, extra)?;
        Ok(BuiltCapture { request, url, call: BuiltCall(CallState::Sent(bytes)) })
    }

    /// Asks the connector to read the answer to a request [`Plugin::build_capture_checked`]
    /// built: the same as [`Plugin::parse_capture`] with the [`ParseCall`] of that call and
    /// `response`, byte for byte, without encoding the call again.
    ///
    /// With a 1.2 plugin's per-call context, only `response` is sent (`parse_capture_with`).
    pub fn parse_built(
        &self,
        built: BuiltCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, PluginCallError> {
        self.parse_built_cow(built, Cow::Borrowed(response))
    }

    /// Like [`Plugin::parse_built`], taking the answer by value: with ABI 1.3 struct messages it
    /// crosses to the plugin's worker thread as it is, not copied.
    pub fn parse_built_owned(
        &self,
        built: BuiltCall,
        response: HttpResponse,
    ) -> Result<CaptureResult, PluginCallError> {
        self.parse_built_cow(built, Cow::Owned(response))
    }

    fn parse_built_cow(
        &self,
        built: BuiltCall,
        response: Cow<'_, HttpResponse>,
    ) -> Result<CaptureResult, PluginCallError> {
        // A context this plugin cannot parse (another plugin's, or made by the struct build of a
        // load that had struct messages on) is refused with the call left whole: dropping it
        // hands the context back to the plugin that made it.
        if let CallState::Context { free, structs, .. } = &built.0 {
            let ours = self.with_context.is_some_and(|(_, _, f)| std::ptr::fn_addr_eq(f, *free));
            if !ours {
                return Err(PluginCallError::Unsupported("reading an answer to a call another plugin built"));
            }
            if *structs && self.structs.is_none() {
                return Err(PluginCallError::Unsupported("struct messages"));
            }
        }
        let mut built = built;
        match std::mem::replace(&mut built.0, CallState::Done) {
            CallState::Sent(call) => {
                let bytes = parse_message(&call, &response).map_err(|e| self.encode_error(&e))?;
                self.call_bytes("parse_capture", self.parse_capture, bytes).and_then(|r| self.bounded(r))
            }
            CallState::Context { context, structs: true, .. } => {
                let Some((_, parse_struct, free_output)) = self.structs else {
                    return Err(PluginCallError::Unsupported("struct messages"));
                };
                let response = response.into_owned();
                let (file, free) = (self.file.clone(), self.free_buffer);
                // The answer comes back with the result, to be freed on this thread (as the call).
                let (result, response) = self.worker.run("parse_capture", move || {
                    let view = ResponseView::new(&response);
                    let raw = view.raw();
                    let mut out = RawCaptureResult::empty();
                    let mut error = Buffer::empty();
                    // SAFETY: the context this plugin's `build_capture_struct` made, handed
                    // back exactly once (consumed whatever the status); `raw` points into
                    // `response` and `view`, alive for the call; `out` and `error` are
                    // writable.
                    let status =
                        unsafe { parse_struct(context as *mut std::ffi::c_void, &raw, &mut out, &mut error) };
                    let result = take_struct(&file, status, error, free, out.owner, free_output, || {
                        // SAFETY: as for the request: read before `take_struct` frees the owner.
                        unsafe { capture_connector_api::structs::read_result(&out, MAX_PLUGIN_OUTPUT) }
                    });
                    drop(view);
                    Ok((result, response))
                })?;
                drop(response);
                result.and_then(|r| self.bounded(r))
            }
            CallState::Context { context, .. } => {
                let Some((_, parse_with, _)) = self.with_context else {
                    return Err(PluginCallError::Unsupported("per-call context"));
                };
                let bytes = self.encode(&*response)?;
                let (file, free) = (self.file.clone(), self.free_buffer);
                self.worker
                    .run("parse_capture", move || {
                        let mut out = Buffer::empty();
                        // SAFETY: the context this plugin's `build_capture_with` made, handed back
                        // exactly once (consumed whatever the status); `bytes` is valid for the
                        // call and `out` is writable.
                        let status = unsafe {
                            parse_with(
                                context as *mut std::ffi::c_void,
                                bytes.as_ptr(),
                                bytes.len(),
                                &mut out,
                            )
                        };
                        take_output(&file, status, out, free)
                    })
                    .and_then(|r| self.bounded(r))
            }
            CallState::Done => Err(PluginCallError::Unsupported("parsing a call twice")),
        }
    }

    /// Asks the connector to read the platform's answer. The result's texts are bounded
    /// ([`MAX_RESULT_ID`], [`MAX_RESULT_TEXT`]).
    pub fn parse_capture(&self, call: &ParseCall) -> Result<CaptureResult, PluginCallError> {
        self.call("parse_capture", self.parse_capture, call).and_then(|r| self.bounded(r))
    }

    /// Whether the plugin can read a capture's state (ABI 1.1 and `capabilities.status_query`).
    pub fn supports_status(&self) -> bool {
        self.build_status.is_some() && self.parse_status.is_some() && self.manifest.capabilities.status_query
    }

    /// Asks the connector to build a status query (same host rule as [`Plugin::build_capture`]).
    pub fn build_status(&self, call: &StatusCall) -> Result<HttpRequest, PluginCallError> {
        self.build_status_allowing(call, &[])
    }

    /// Like [`Plugin::build_status`], also accepting hosts the operator allowed.
    pub fn build_status_allowing(
        &self,
        call: &StatusCall,
        extra: &[String],
    ) -> Result<HttpRequest, PluginCallError> {
        match (self.supports_status(), self.build_status) {
            (true, Some(f)) => {
                let request: HttpRequest = self.call("build_status", f, call)?;
                self.check_host(&request, extra)?;
                Ok(request)
            }
            _ => Err(PluginCallError::Unsupported("status query")),
        }
    }

    /// Asks the connector to read a status answer.
    pub fn parse_status(&self, call: &StatusParseCall) -> Result<CaptureResult, PluginCallError> {
        match (self.supports_status(), self.parse_status) {
            (true, Some(f)) => self.call("parse_status", f, call).and_then(|r| self.bounded(r)),
            _ => Err(PluginCallError::Unsupported("status query")),
        }
    }

    /// Calls a function with raw input bytes and returns its output as JSON, validated like every
    /// output (status, buffer, size cap, UTF-8, JSON) but not against a message schema. For
    /// conformance tools that must send what the engine never would (garbage, another schema);
    /// the engine itself uses the typed methods. The status functions are called whenever the
    /// descriptor has them, whatever the manifest declares.
    pub fn call_raw(
        &self,
        function: PluginFunction,
        input: &[u8],
    ) -> Result<serde_json::Value, PluginCallError> {
        let (name, f) = match function {
            PluginFunction::BuildCapture => ("build_capture", self.build_capture),
            PluginFunction::ParseCapture => ("parse_capture", self.parse_capture),
            PluginFunction::BuildStatus => {
                ("build_status", self.build_status.ok_or(PluginCallError::Unsupported("status query"))?)
            }
            PluginFunction::ParseStatus => {
                ("parse_status", self.parse_status.ok_or(PluginCallError::Unsupported("status query"))?)
            }
        };
        self.call_bytes(name, f, input.to_vec())
    }

    fn call<I: Serialize, O: DeserializeOwned + Send + 'static>(
        &self,
        function: &'static str,
        f: CallFn,
        input: &I,
    ) -> Result<O, PluginCallError> {
        let bytes = self.encode(input)?;
        self.call_bytes(function, f, bytes)
    }

    fn encode<I: Serialize>(&self, input: &I) -> Result<Vec<u8>, PluginCallError> {
        let mut bytes = Vec::with_capacity(1024);
        serde_json::to_writer(&mut bytes, input).map_err(|e| self.encode_error(&e))?;
        Ok(bytes)
    }

    fn encode_error(&self, e: &serde_json::Error) -> PluginCallError {
        PluginCallError::Contract {
            file: self.file.clone(),
            problem: format!("the host could not encode the call: {e}"),
        }
    }

    /// Calls `f` on the plugin's worker thread, under the deadline.
    fn call_bytes<O: DeserializeOwned + Send + 'static>(
        &self,
        function: &'static str,
        f: CallFn,
        bytes: Vec<u8>,
    ) -> Result<O, PluginCallError> {
        let (file, free) = (self.file.clone(), self.free_buffer);
        self.worker.run(function, move || {
            let mut out = Buffer::empty();
            // SAFETY: `bytes` is valid for the call and `out` is writable, as the ABI requires.
            let status = unsafe { f(bytes.as_ptr(), bytes.len(), &mut out) };
            take_output(&file, status, out, free)
        })
    }

    /// A result with its texts within the limits: an id over its limit or with a control
    /// character is refused, long texts are cut.
    fn bounded(&self, mut r: CaptureResult) -> Result<CaptureResult, PluginCallError> {
        let invalid = |problem: String| PluginCallError::InvalidOutput { file: self.file.clone(), problem };
        if let Some(id) = &r.platform_capture_id {
            if id.len() > MAX_RESULT_ID {
                return Err(invalid(format!(
                    "platform_capture_id is {} bytes; the limit is {MAX_RESULT_ID}",
                    id.len()
                )));
            }
            if let Some(c) = id.chars().find(|c| capture_core::limits::is_forbidden_char(*c)) {
                return Err(invalid(format!(
                    "platform_capture_id contains the control character {}",
                    capture_core::limits::describe_char(c)
                )));
            }
        }
        if let Some(a) = &mut r.captured_amount {
            clip(a, 100);
        }
        if let Some(f) = &mut r.failure {
            clip(&mut f.message, MAX_RESULT_TEXT);
            if let Some(code) = &mut f.platform_code {
                clip(code, 100);
            }
        }
        Ok(r)
    }

    /// The manifest's allow-list, checked on every request the plugin builds (the engine also
    /// checks that the URL's origin is the configured base URL's).
    fn check_host(&self, request: &HttpRequest, extra: &[String]) -> Result<url::Url, PluginCallError> {
        let invalid = |problem: String| PluginCallError::InvalidOutput { file: self.file.clone(), problem };
        if request.url.len() > MAX_URL {
            return Err(invalid(format!("url is {} bytes; the limit is {MAX_URL}", request.url.len())));
        }
        if request.headers.len() > MAX_HEADERS {
            return Err(invalid(format!(
                "the request has {} headers; the limit is {MAX_HEADERS}",
                request.headers.len()
            )));
        }
        if let Some(problem) = url_path_problem(&request.url) {
            return Err(invalid(format!("url `{}` {problem}", request.url)));
        }
        let url = url::Url::parse(&request.url)
            .map_err(|e| invalid(format!("url `{}` is not an absolute URL: {e}", request.url)))?;
        let host = url.host().ok_or_else(|| invalid(format!("url `{}` has no host", request.url)))?;
        // The host as the URL writes it (brackets around IPv6), borrowed: no copy on this path.
        let host_text = url.host_str().unwrap_or_default();
        if is_loopback(&host)
            || host_allowed(host_text, &self.manifest.allowed_hosts)
            || host_allowed(host_text, extra)
        {
            return Ok(url);
        }
        Err(PluginCallError::ForeignHost {
            file: self.file.clone(),
            url: request.url.clone(),
            host: host.to_string(),
            allowed: self.manifest.allowed_hosts.clone(),
        })
    }
}

/// Opens `path` once, refuses anything but a regular file, and reads it whole. The open file is
/// returned too: the dynamic loader is handed that same file.
fn open_exactly(path: &Path) -> Result<(std::fs::File, u64), PluginLoadError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let path_buf = path.to_path_buf();
    let read_err = |source: std::io::Error| PluginLoadError::Read { path: path.to_path_buf(), source };
    let kind_of = |t: std::fs::FileType| -> Option<&'static str> {
        if t.is_file() {
            None
        } else if t.is_dir() {
            Some("a directory")
        } else if t.is_fifo() {
            Some("a FIFO (named pipe)")
        } else if t.is_socket() {
            Some("a socket")
        } else if t.is_block_device() || t.is_char_device() {
            Some("a device")
        } else {
            Some("not a regular file")
        }
    };
    // Opened without blocking (a FIFO opened for reading would wait for a writer; no effect on a
    // regular file), then judged by what was opened: a check of the path before opening it could
    // be answered by another file than the one opened (a path swapped for a FIFO in between).
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PluginLoadError::NotFound { path: path_buf });
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(PluginLoadError::NotAFile { path: path_buf, kind });
    }
    if meta.len() > MAX_PLUGIN_FILE {
        return Err(PluginLoadError::NotALibrary {
            path: path_buf,
            reason: format!("the file is {} bytes, over the {MAX_PLUGIN_FILE}-byte limit", meta.len()),
            loader: "not asked".into(),
        });
    }
    let size = meta.len();
    Ok((file, size))
}

/// What the symbol at `address` is when it is not a function, by the symbol table entry the
/// dynamic loader itself resolved (`dladdr1` with `RTLD_DL_SYMENT`); `None` for a function (or
/// an indirect function). An address the loader cannot name is not a function it exported.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn loaded_symbol_not_a_function(address: *const std::ffi::c_void) -> Option<&'static str> {
    const RTLD_DL_SYMENT: libc::c_int = 1;
    // SAFETY: an all-zero Dl_info is a valid value of the plain C struct dladdr1 fills.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut entry: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: dladdr1 only reads the loader's tables; `info` and `entry` are writable.
    let found = unsafe { libc::dladdr1(address, &mut info, &mut entry, RTLD_DL_SYMENT) };
    if found == 0 || entry.is_null() {
        return Some("an address the dynamic loader names no symbol for");
    }
    // SAFETY: with RTLD_DL_SYMENT, `entry` points at the loader's ElfW(Sym) for the symbol.
    let st_info = unsafe {
        if cfg!(target_pointer_width = "64") {
            (*entry.cast::<libc::Elf64_Sym>()).st_info
        } else {
            (*entry.cast::<libc::Elf32_Sym>()).st_info
        }
    };
    match st_info & 0xf {
        2 | 10 => None, // STT_FUNC, STT_GNU_IFUNC
        0 => Some("a symbol without a type"),
        1 => Some("a data object"),
        3 => Some("a section"),
        4 => Some("a file name"),
        5 => Some("a common block"),
        6 => Some("thread-local data"),
        _ => Some("not a function"),
    }
}

/// Elsewhere only the ELF checks' reading of `.dynsym` stands.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn loaded_symbol_not_a_function(_address: *const std::ffi::c_void) -> Option<&'static str> {
    None
}

/// The SHA-256 (hex) of the first `size` bytes of the open `file`, read at offsets in 64 KiB
/// pieces; a file cut short meanwhile is an error, never a fault.
fn sha256_open(file: &std::fs::File, size: u64) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    while at < size {
        let want = usize::try_from((size - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file was cut short while it was read: {at} of {size} bytes"),
            ));
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(crate::clock::hex(&hasher.finalize()))
}

/// The files handed to the dynamic loader, by (device, inode), kept open for the life of the
/// process like the libraries themselves: the loader knows a library by the name it was given
/// (`/proc/self/fd/N`) and would hand a later load of that name the library it already has, so N
/// must never be reused for another file. One open file per distinct library file.
static OPENED: Mutex<std::collections::BTreeMap<(u64, u64), std::fs::File>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Has the dynamic loader load exactly `file` (the open file whose bytes were checked), never a
/// bare name looked up in the library search path. Returns the library and the name the loader
/// was given, or the error and the loader's message.
fn dlopen_exact(
    file: std::fs::File,
    path: &Path,
) -> Result<(libloading::os::unix::Library, PathBuf), (libloading::Error, String)> {
    use std::os::unix::fs::MetadataExt;
    let key = file.metadata().map(|m| (m.dev(), m.ino())).unwrap_or((0, 0));
    let mut opened = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
    // The same file loaded before: its open file (and the loader's library) again.
    let fresh = !opened.contains_key(&key);
    let held = opened.entry(key).or_insert(file);
    let name = loader_path(held, path);
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: loading a library runs its initialisers; plugins are trusted native code chosen by
    // the operator's configuration, as documented in the ABI specification. The file is a
    // regular file, checked not to be truncated.
    match unsafe { libloading::os::unix::Library::open(Some(&name), flags) } {
        Ok(lib) => Ok((lib, name)),
        Err(e) => {
            if fresh {
                // The loader keeps nothing of a file it refused: the number may be reused.
                opened.remove(&key);
            }
            let message = loader_message(&e, &name, path);
            Err((e, message))
        }
    }
}

/// The name the dynamic loader gets for an open file: `/proc/self/fd/N` (that very file, whatever
/// happens to the path meanwhile), or where `/proc` is missing the canonical absolute path. Never
/// a bare name, which `dlopen` would look up in the library search path.
fn loader_path(file: &std::fs::File, path: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    if by_fd.exists() {
        return by_fd;
    }
    match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(_) if path.is_absolute() => path.to_path_buf(),
        Err(_) => Path::new(".").join(path),
    }
}

/// The dynamic loader's message: libloading's error and its source (the `dlerror` text), with
/// the name the loader was given (`/proc/self/fd/N`) replaced by the plugin's path.
fn loader_message(e: &libloading::Error, given: &Path, path: &Path) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.replace(&given.display().to_string(), &path.display().to_string())
}

/// What is wrong with the path of a URL a connector built, if anything: a dot segment (`.`,
/// `..`, or an encoded form such as `%2e%2E`), which URL parsers resolve so that the request
/// would go to another path than the one written; a backslash (read as `/` by parsers of http
/// URLs); or a control character or space (which parsers drop or refuse).
pub(crate) fn url_path_problem(raw: &str) -> Option<String> {
    if let Some(c) = raw.chars().find(|c| c.is_control() || *c == ' ') {
        return Some(format!("contains the character U+{:04X}", u32::from(c)));
    }
    if raw.contains('\\') {
        return Some("contains a backslash".into());
    }
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let path = match after_scheme.find('/') {
        Some(at) => &after_scheme[at..],
        None => return None,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    for segment in path.split('/') {
        if is_dot_segment(segment) {
            return Some(format!(
                "has the dot segment `{segment}` in its path: it would be sent to another path than the one written"
            ));
        }
    }
    None
}

/// `.` or `..`, each dot possibly written `%2e` or `%2E` (what URL parsers resolve), read without
/// allocating.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if let [b'.', tail @ ..] = rest {
            rest = tail;
        } else if let [b'%', b'2', b'e' | b'E', tail @ ..] = rest {
            rest = tail;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

/// Cuts `text` to at most `max` bytes (at a character boundary), ending with `…`.
fn clip(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// True for hosts that can only be this machine.
pub(crate) fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// `host` matches an entry of `allowed`: exactly, or as a subdomain of a `*.suffix` entry.
pub(crate) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|pattern| match pattern.strip_prefix("*.") {
        Some(suffix) => {
            // `head.` + suffix, case-insensitively, with a non-empty head.
            let Some(split) = host.len().checked_sub(suffix.len()) else { return false };
            host.is_char_boundary(split) && {
                let (head, tail) = host.split_at(split);
                tail.eq_ignore_ascii_case(suffix) && head.len() > 1 && head.ends_with('.')
            }
        }
        None => host.eq_ignore_ascii_case(pattern),
    })
}

/// Reads the plugin's output, frees it with the plugin's own free function (exactly once,
/// whatever the outcome), and decodes it.
fn take_output<O: DeserializeOwned>(
    file: &str,
    status: c_int,
    out: Buffer,
    free: FreeFn,
) -> Result<O, PluginCallError> {
    let contract = |problem: String| PluginCallError::Contract { file: file.to_owned(), problem };
    if out.ptr.is_null() {
        if out.len != 0 {
            return Err(contract(format!("null buffer pointer with length {}", out.len)));
        }
        return decode(file, status, None);
    }
    if out.len > MAX_PLUGIN_OUTPUT {
        let len = out.len;
        // SAFETY: the buffer came from this plugin and is given back exactly once.
        unsafe { free(out) };
        return Err(contract(format!("output of {len} bytes exceeds the {MAX_PLUGIN_OUTPUT}-byte cap")));
    }
    // SAFETY: the plugin wrote `len` bytes at `ptr` (checked non-null) and keeps them until freed.
    let bytes = unsafe { std::slice::from_raw_parts(out.ptr, out.len) };
    // Decoded straight from the plugin's buffer (owned output, no borrow survives), then freed.
    let result = decode(file, status, Some(bytes));
    // SAFETY: the buffer came from this plugin and is given back exactly once; `bytes` is dead.
    unsafe { free(out) };
    result
}

/// Three descriptor functions that come together: all three, none, or the name of the first
/// null one.
fn all_or_none<A, B, C>(
    fields: (Option<A>, Option<B>, Option<C>),
    names: [&'static str; 3],
) -> Result<Option<(A, B, C)>, &'static str> {
    match fields {
        (Some(a), Some(b), Some(c)) => Ok(Some((a, b, c))),
        (None, None, None) => Ok(None),
        (None, _, _) => Err(names[0]),
        (_, None, _) => Err(names[1]),
        (_, _, None) => Err(names[2]),
    }
}

/// Reads a struct answer (ABI 1.3): on success with `read`, otherwise the error buffer as a 1.x
/// function's out buffer. Whatever the status, a non-null error buffer goes back to `free` and
/// a non-null `owner` to `free_output`, each exactly once, after the read.
fn take_struct<O>(
    file: &str,
    status: c_int,
    error: Buffer,
    free: FreeFn,
    owner: *mut std::ffi::c_void,
    free_output: FreeOutputFn,
    read: impl FnOnce() -> Result<O, String>,
) -> Result<O, PluginCallError> {
    let result = if status == STATUS_OK {
        let read =
            read().map_err(|problem| PluginCallError::InvalidOutput { file: file.to_owned(), problem });
        if !error.ptr.is_null() {
            // SAFETY: a buffer this plugin wrote, given back once.
            unsafe { free(error) };
        }
        read
    } else {
        match take_output::<serde::de::IgnoredAny>(file, status, error, free) {
            Err(e) => Err(e),
            Ok(_) => Err(PluginCallError::Contract {
                file: file.to_owned(),
                problem: format!("status {status} read as a success"),
            }),
        }
    };
    if !owner.is_null() {
        // SAFETY: the owner of this call's answer, given back once, after the read.
        unsafe { free_output(owner) };
    }
    result
}

/// Interprets a status and its buffer (`None`: a null buffer).
fn decode<O: DeserializeOwned>(
    file: &str,
    status: c_int,
    bytes: Option<&[u8]>,
) -> Result<O, PluginCallError> {
    let contract = |problem: String| PluginCallError::Contract { file: file.to_owned(), problem };
    let invalid = |problem: String| PluginCallError::InvalidOutput { file: file.to_owned(), problem };
    match status {
        STATUS_OK => {
            let bytes = match bytes {
                None => {
                    return Err(contract("success status with a null buffer: the result is missing".into()));
                }
                Some([]) => return Err(contract("success status with an empty buffer".into())),
                Some(b) => b,
            };
            // UTF-8 checked once, here: reading from a `str`, serde_json does not check it again.
            let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
            serde_json::from_str(text).map_err(|e| invalid(describe_json_error::<O>(bytes, &e)))
        }
        STATUS_ERROR => match bytes {
            None | Some([]) => Err(contract("error status without an error message".into())),
            Some(b) => match serde_json::from_slice::<ConnectorError>(b) {
                Ok(err) => Err(PluginCallError::Refused(err)),
                Err(e) => Err(contract(format!(
                    "error status with a buffer that is not a {{\"code\", \"message\"}} JSON object ({e}): {}",
                    excerpt(b)
                ))),
            },
        },
        STATUS_PANIC => {
            let message = match bytes {
                None | Some([]) => "(no message)".to_owned(),
                Some(b) => String::from_utf8_lossy(b).into_owned(),
            };
            Err(PluginCallError::Panicked { file: file.to_owned(), message })
        }
        other => Err(contract(format!("unknown status code {other} (0 = ok, 1 = error, 2 = panic)"))),
    }
}

/// A decoding error in words: not JSON at all, or JSON that does not match the message, with the
/// path of the offending field (decoded again on this slow path only).
fn describe_json_error<O: DeserializeOwned>(bytes: &[u8], e: &serde_json::Error) -> String {
    let message = std::any::type_name::<O>().rsplit("::").next().unwrap_or("message");
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not JSON ({e}): {}", excerpt(bytes))
        }
        _ => {
            let de = &mut serde_json::Deserializer::from_slice(bytes);
            match serde_path_to_error::deserialize::<_, O>(de) {
                Err(err) => {
                    format!("does not match the {message} schema at `{}`: {}", err.path(), err.inner())
                }
                Ok(_) => format!("does not match the {message} schema: {e}"),
            }
        }
    }
}

/// The first 120 characters of some output, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(120).collect();
    if chars.next().is_some() { format!("{head}...") } else { head }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `MAJOR.MINOR.PATCH` with optional `-pre` and `+build` parts (semver's shape).
fn valid_semver(v: &str) -> bool {
    let ident = |s: &str| {
        s.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let (core, build) = match v.split_once('+') {
        Some((core, build)) => (core, Some(build)),
        None => (v, None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (core, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(ident)
        && build.is_none_or(ident)
}

/// A host name (`api.example.com`, `localhost`, `127.0.0.1`) or a `*.` wildcard over a domain of
/// at least two labels (`*.example.com`). No scheme, port, path or user.
fn host_pattern_problem(pattern: &str) -> Option<&'static str> {
    let (wildcard, name) = match pattern.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    if name.is_empty() || name.len() > 253 {
        return Some("is not a host name");
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !labels.iter().all(label_ok) {
        return Some("is not a host name (letters, digits, `-` and dots only: no scheme, port or path)");
    }
    if wildcard && labels.len() < 2 {
        return Some("is too broad: a wildcard must cover a domain such as `*.example.com`");
    }
    None
}

/// Checks a manifest's values; the problem names the field.
fn validate_manifest(m: &Manifest) -> Result<(), String> {
    if m.id.is_empty()
        || m.id.len() > 64
        || !m.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(format!("id `{}` must be 1 to 64 characters of [a-z0-9_-]", m.id));
    }
    if m.name.trim().is_empty() {
        return Err("name is empty".into());
    }
    if m.name.len() > MAX_MANIFEST_NAME {
        return Err(format!("name is {} bytes; the limit is {MAX_MANIFEST_NAME}", m.name.len()));
    }
    if let Some(c) = m.name.chars().find(|c| capture_core::limits::is_forbidden_char(*c)) {
        return Err(format!(
            "name contains the control or formatting character {}",
            capture_core::limits::describe_char(c)
        ));
    }
    if !valid_semver(&m.version) {
        return Err(format!("version `{}` is not a semantic version such as 1.2.3", m.version));
    }
    if m.schema != SCHEMA_VERSION {
        return Err(format!("message schema {} is not supported (engine speaks {SCHEMA_VERSION})", m.schema));
    }
    let caps = &m.capabilities;
    if caps.max_currency_exponent > 4 {
        return Err(format!(
            "capabilities.max_currency_exponent {} is out of range (0 to 4)",
            caps.max_currency_exponent
        ));
    }
    match caps.max_payments_per_call {
        Some(0) => {
            return Err("capabilities.max_payments_per_call is 0: a call carries at least one payment".into());
        }
        Some(n) if n > 1 && !caps.multiple_payments_per_call => {
            return Err(format!(
                "capabilities.max_payments_per_call is {n} but multiple_payments_per_call is false"
            ));
        }
        _ => {}
    }
    for (i, host) in m.allowed_hosts.iter().enumerate() {
        if let Some(problem) = host_pattern_problem(host) {
            return Err(format!("allowed_hosts[{i}] `{host}` {problem}"));
        }
    }
    for (field, names) in [("credentials", &m.credentials), ("settings", &m.settings)] {
        for (i, name) in names.iter().enumerate() {
            if !valid_name(name) {
                return Err(format!("{field}[{i}] `{name}` must be non-empty [a-z0-9_]"));
            }
            if names[..i].contains(name) {
                return Err(format!("{field}[{i}] `{name}` is listed twice"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        for ok in ["api.example.com", "*.optty.com", "localhost", "127.0.0.1", "a-b.c"] {
            assert_eq!(host_pattern_problem(ok), None, "{ok}");
        }
        for bad in
            ["", "*", "*.com", "https://x.com", "x.com:443", "x.com/path", "-x.com", "a..b", "*.", "x y"]
        {
            assert!(host_pattern_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let allowed = vec!["*.optty.com".to_owned(), "api.bigcommerce.com".to_owned()];
        assert!(host_allowed("api.optty.com", &allowed));
        assert!(host_allowed("API.Optty.com", &allowed));
        assert!(!host_allowed("optty.com", &allowed));
        assert!(!host_allowed("evil-optty.com", &allowed));
        assert!(!host_allowed("optty.com.evil.example", &allowed));
        assert!(host_allowed("api.bigcommerce.com", &allowed));
        assert!(!host_allowed("x.api.bigcommerce.com", &allowed));
    }

    #[test]
    fn built_urls_with_dot_segments_are_refused() {
        for (url, problem) in [
            ("http://127.0.0.1:1/orders/ORD-1/capture", None),
            ("http://127.0.0.1:1/orders/v1.2/capture", None),
            ("http://127.0.0.1:1/orders/...", None),
            ("http://127.0.0.1:1/a?next=../b#../c", None),
            ("http://127.0.0.1:1", None),
            ("http://127.0.0.1:1/orders/../capture", Some("dot segment `..`")),
            ("http://127.0.0.1:1/orders/./capture", Some("dot segment `.`")),
            ("http://127.0.0.1:1/orders/%2e%2E/capture", Some("dot segment `%2e%2E`")),
            ("http://127.0.0.1:1/orders/.%2e", Some("dot segment `.%2e`")),
            ("http://127.0.0.1:1/orders\\..\\capture", Some("backslash")),
            ("http://127.0.0.1:1/orders/.\t./capture", Some("U+0009")),
            ("http://127.0.0.1:1/orders/a b", Some("U+0020")),
        ] {
            let got = url_path_problem(url);
            match problem {
                None => assert_eq!(got, None, "{url}"),
                Some(p) => assert!(got.as_deref().is_some_and(|g| g.contains(p)), "{url}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_call_over_its_deadline_marks_the_plugin_unhealthy_and_later_calls_fail_at_once() {
        let worker = Worker::start("libslow.so", Duration::from_millis(50), DEFAULT_SPIN).unwrap();
        assert_eq!(worker.run("build_capture", || Ok(1)), Ok(1));
        let (release, wait) = mpsc::channel::<()>();
        let stuck = worker.run("build_capture", move || {
            // Stuck until the test lets it go (it never returns before its deadline).
            wait.recv().unwrap_or(());
            Ok(2)
        });
        assert_eq!(
            stuck,
            Err(PluginCallError::Timeout { file: "libslow.so".into(), function: "build_capture", ms: 50 })
        );
        assert_eq!(worker.unhealthy().as_deref(), Some("build_capture did not return within 50 ms"));
        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&called);
        let later = worker.run("parse_capture", move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(3)
        });
        assert!(matches!(later, Err(PluginCallError::Unhealthy { .. })), "{later:?}");
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst), "an unhealthy plugin is not called");
        release.send(()).unwrap_or(());
    }

    #[test]
    fn the_parse_message_is_the_parse_calls_json_byte_for_byte() {
        let call = CaptureCall {
            schema: SCHEMA_VERSION,
            base_url: "http://127.0.0.1:9".into(),
            settings: [("store".to_owned(), "s\"1".to_owned())].into(),
            order_id: "ORD \u{e9}/1".into(),
            currency: "USD".into(),
            currency_exponent: 2,
            amount: "1.00".into(),
            full: true,
            order_amount: "1.00".into(),
            surcharge: "0.00".into(),
            payments: vec![],
            idempotency_key: "k".into(),
            description: Some("line\nbreak".into()),
            shipping: None,
        };
        let response = HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"a":"\u0001"}"#.into(),
        };
        let encoded = serde_json::to_vec(&call).unwrap();
        let whole = ParseCall { schema: SCHEMA_VERSION, call, response: response.clone() };
        assert_eq!(parse_message(&encoded, &response).unwrap(), serde_json::to_vec(&whole).unwrap());
    }

    #[test]
    fn a_job_that_unwinds_on_the_worker_answers_unhealthy_instead_of_leaving_its_caller_waiting() {
        let worker = Worker::start("libunwinds.so", Duration::from_secs(600), Duration::ZERO).unwrap();
        let r: Result<(), _> = worker.run("build_capture", || panic!("a fault outside the plugin's wrapper"));
        assert_eq!(
            r,
            Err(PluginCallError::Unhealthy {
                file: "libunwinds.so".into(),
                reason: "its worker thread has ended".into()
            })
        );
        assert_eq!(worker.unhealthy().as_deref(), Some("its worker thread has ended"));
    }

    #[test]
    fn semantic_versions() {
        for ok in ["0.1.0", "1.2.3-beta.1", "1.0.0+build.5", "10.20.30-rc-1+x"] {
            assert!(valid_semver(ok), "{ok}");
        }
        for bad in ["", "1", "1.2", "1.2.x", "v1.2.3", "1.2.3-", "1.2.3+", "1..3"] {
            assert!(!valid_semver(bad), "{bad}");
        }
    }

    #[test]
    fn output_decoding_names_the_problem() {
        let ok: Result<ConnectorError, _> =
            decode("libx.so", STATUS_OK, Some(br#"{"code":"a","message":"b"}"#));
        assert!(ok.is_ok());
        let e = decode::<HttpRequest>("libx.so", STATUS_OK, Some(b"\xff\xfe")).unwrap_err();
        assert!(e.to_string().contains("libx.so returned invalid output: not UTF-8"), "{e}");
        let e = decode::<HttpRequest>("libx.so", STATUS_OK, Some(b"hello")).unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = decode::<HttpRequest>(
            "libx.so",
            STATUS_OK,
            Some(br#"{"method":"GET","url":"http://x","headers":[{"name":"A","value":1}],"body":null}"#),
        )
        .unwrap_err();
        assert!(e.to_string().contains("HttpRequest schema at `headers[0].value`"), "{e}");
        let e = decode::<HttpRequest>("libx.so", STATUS_OK, None).unwrap_err();
        assert!(e.to_string().contains("success status with a null buffer"), "{e}");
        let e = decode::<HttpRequest>("libx.so", 7, Some(b"{}")).unwrap_err();
        assert!(e.to_string().contains("unknown status code 7"), "{e}");
        let e = decode::<HttpRequest>("libx.so", STATUS_ERROR, Some(b"nope")).unwrap_err();
        assert!(matches!(e, PluginCallError::Contract { .. }), "{e}");
        let e = decode::<HttpRequest>("libx.so", STATUS_PANIC, Some(b"boom")).unwrap_err();
        assert_eq!(e.to_string(), "connector plugin libx.so panicked: boom");
    }
}

/// Entry points for the fuzz targets (`crates/fuzz`): the loader's checks on bytes, without a
/// library. Not part of the engine's API.
#[doc(hidden)]
pub mod fuzz {
    use super::*;

    /// Decodes `bytes` as a plugin's output with `status`, as each of the four messages.
    pub fn decode_output(status: c_int, bytes: Option<&[u8]>) -> Vec<Result<(), PluginCallError>> {
        vec![
            decode::<HttpRequest>("fuzz.so", status, bytes).map(|_| ()),
            decode::<CaptureResult>("fuzz.so", status, bytes).map(|_| ()),
            decode::<Manifest>("fuzz.so", status, bytes).map(|_| ()),
            decode::<ConnectorError>("fuzz.so", status, bytes).map(|_| ()),
        ]
    }

    /// Decodes `bytes` as a manifest and validates it; `Ok` for a manifest the loader accepts.
    pub fn manifest(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = decode("fuzz.so", STATUS_OK, Some(bytes)).map_err(|e| e.to_string())?;
        validate_manifest(&m)?;
        Ok(m)
    }

    /// The ELF checks of a file's bytes; `Ok` when the dynamic loader would be asked.
    pub fn elf(bytes: &[u8]) -> Result<(), String> {
        let symbol = &ENTRY_SYMBOL[..ENTRY_SYMBOL.len() - 1];
        crate::elf::inspect(bytes, symbol).map(|_| ()).map_err(|e| format!("{e:?}"))
    }

    /// The URL check of a request a plugin built.
    pub fn url_path_problem(url: &str) -> Option<String> {
        super::url_path_problem(url)
    }
}
