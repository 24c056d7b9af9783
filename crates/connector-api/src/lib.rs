//! `capture-connector-api`: the boundary between the capture engine and connector plugins.
//!
//! A connector is a shared library (`cdylib`) that turns a canonical capture call into an HTTP
//! request description and the platform's HTTP answer into a canonical result. It does no IO:
//! the host owns the network, TLS, timeouts, retries, secrets and redaction (sans-IO).
//!
//! # For plugin authors
//! Implement [`Connector`] and export it; you write no `unsafe` code:
//!
//! ```
//! use capture_connector_api::*;
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Connector for Echo {
//!     fn manifest(&self) -> Manifest {
//!         Manifest {
//!             id: "echo".into(), name: "Echo".into(), version: "0.1.0".into(), schema: SCHEMA_VERSION,
//!             capabilities: Capabilities {
//!                 partial_capture: PartialCapture::Always, multiple_payments_per_call: false,
//!                 max_payments_per_call: None,
//!                 asynchronous: false, amount_encoding: AmountEncoding::DecimalString,
//!                 max_currency_exponent: 3, idempotency_key: true, status_query: false,
//!             },
//!             allowed_hosts: vec!["echo.example".into()], credentials: vec!["token".into()], settings: vec![],
//!         }
//!     }
//!     fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError> {
//!         Ok(HttpRequest {
//!             method: "POST".into(),
//!             url: format!("{}/capture/{}", call.base_url, call.order_id),
//!             headers: vec![Header { name: "Authorization".into(), value: "Bearer ".into(), secret: Some("token".into()) }],
//!             body: Some(format!(r#"{{"amount":"{}"}}"#, call.amount)),
//!         })
//!     }
//!     fn parse_capture(&self, call: &CaptureCall, r: &HttpResponse) -> Result<CaptureResult, ConnectorError> {
//!         Ok(CaptureResult { status: ResultStatus::Captured, captured_amount: Some(call.amount.clone()),
//!                            platform_capture_id: None, failure: None })
//!     }
//! }
//!
//! export_connector!(Echo);
//! ```
//!
//! # The ABI specification (version 1.3)
//!
//! This section is normative. A C header that mirrors it exactly is
//! `examples/c-connector/capture_connector.h` (the tests compile it and compare every size and
//! offset with [`abi`]); `plugins/README.md` is the author's guide.
//!
//! ## Entry symbol
//! The library exports one C symbol, `capture_connector_entry` ([`abi::ENTRY_SYMBOL`]): an
//! `extern "C"` function without arguments that returns a pointer to a descriptor
//! ([`abi::EntryFn`]). The descriptor must live as long as the library (static storage). The host
//! opens the library with `RTLD_NOW | RTLD_LOCAL` (every symbol resolved at load time, none
//! shared with other plugins), calls the entry function once, and **never unloads** the library.
//!
//! ## Descriptor layout
//! [`abi::ConnectorDescriptor`] is `#[repr(C)]`; every function pointer is nullable
//! (`Option<fn>`, a plain pointer in C). Offsets on a 64-bit target (on 32-bit the pointers are 4
//! bytes and start at 12):
//!
//! | offset | field | type | since |
//! |---|---|---|---|
//! | 0 | `header.magic` | `u32`, [`abi::MAGIC`] = `0x43415054` (`"CAPT"`) | 1.0 |
//! | 4 | `header.struct_size` | `u32`: the descriptor's size as the plugin built it | 1.0 |
//! | 8 | `header.abi_major` | `u16` | 1.0 |
//! | 10 | `header.abi_minor` | `u16` | 1.0 |
//! | 16 | `manifest` | `fn(out: *mut Buffer) -> c_int`, required | 1.0 |
//! | 24 | `build_capture` | `fn(input: *const u8, len: usize, out: *mut Buffer) -> c_int`, required | 1.0 |
//! | 32 | `parse_capture` | same, required | 1.0 |
//! | 40 | `free_buffer` | `fn(buf: Buffer)` (by value), required | 1.0 |
//! | 48 | `build_status` | same as `build_capture`; null: no status query | 1.1 |
//! | 56 | `parse_status` | same; null: no status query | 1.1 |
//! | 64 | `build_capture_with` | `fn(input, len, out, context: *mut *mut c_void) -> c_int`; null: not used | 1.2 |
//! | 72 | `parse_capture_with` | `fn(context: *mut c_void, input, len, out) -> c_int`; null: not used | 1.2 |
//! | 80 | `free_context` | `fn(context: *mut c_void)`; null: not used | 1.2 |
//! | 88 | `build_capture_struct` | [`abi::BuildStructFn`]: `fn(call: *const RawCaptureCall, out: *mut RawHttpRequest, context: *mut *mut c_void, error: *mut Buffer) -> c_int`; null: not used | 1.3 |
//! | 96 | `parse_capture_struct` | [`abi::ParseStructFn`]: `fn(context, response: *const RawHttpResponse, out: *mut RawCaptureResult, error: *mut Buffer) -> c_int`; null: not used | 1.3 |
//! | 104 | `free_output` | `fn(owner: *mut c_void)`; null: not used | 1.3 |
//!
//! The 1.0 descriptor ends at `free_buffer`: [`abi::DESCRIPTOR_SIZE_V1_0`] = 48 bytes on 64-bit;
//! the 1.1 descriptor is [`abi::DESCRIPTOR_SIZE_V1_1`] = 64 bytes, the 1.2 descriptor
//! [`abi::DESCRIPTOR_SIZE_V1_2`] = 88 bytes, the 1.3 descriptor [`abi::DESCRIPTOR_SIZE_V1_3`] =
//! 112 bytes. [`abi::Buffer`] is
//! `{ ptr: *mut u8, len: usize, cap: usize }`.
//!
//! ## Versions
//! Like PostgreSQL's magic block and SQLite's append-only routine table: a minor version only
//! appends fields at the end of the descriptor; anything else is a new major.
//! - The host reads the 12-byte header first and nothing else until it has checked it: the magic
//!   must be [`abi::MAGIC`]; `abi_major` must equal the host's [`abi::ABI_MAJOR`]; an `abi_minor`
//!   newer than the host's [`abi::ABI_MINOR`] is refused (the host cannot know what the plugin
//!   expects of it); `struct_size` must be at least [`abi::DESCRIPTOR_SIZE_V1_0`].
//! - An older minor is loaded, and the host reads **only the fields that `struct_size` covers**: a
//!   1.0 plugin has no status functions, whatever lies after its descriptor in memory.
//! - The required functions must not be null. A manifest that declares
//!   `capabilities.status_query` needs both status functions.
//!
//! ## Calls and buffer ownership
//! - The input is one JSON message: `len` bytes at `input`, UTF-8, **not** NUL-terminated, owned by
//!   the host and valid only during the call. The plugin must not keep the pointer.
//! - The plugin writes its answer into `*out` as a [`abi::Buffer`] it allocated however it likes,
//!   and returns a status code. The host reads `len` bytes at `ptr`, then hands the buffer back,
//!   unchanged, to **the same plugin's** `free_buffer`, exactly once (also for an error, a panic
//!   message, or output the host refuses). A null `ptr` is an empty buffer and is not freed.
//! - The largest output the host accepts is 1 MiB (`capture_engine::MAX_PLUGIN_OUTPUT`).
//!
//! ## Status codes
//! | code | name | `*out` holds |
//! |---|---|---|
//! | 0 | [`abi::STATUS_OK`] | the answer: JSON of the function's output message |
//! | 1 | [`abi::STATUS_ERROR`] | a [`ConnectorError`] as JSON: `{"code": "...", "message": "..."}` |
//! | 2 | [`abi::STATUS_PANIC`] | UTF-8 text: what went wrong inside the plugin |
//!
//! Any other code, a success with a null or empty buffer, an error without a readable
//! [`ConnectorError`], a null `ptr` with a non-zero `len`, output over the cap, output that is not
//! UTF-8 JSON of the expected message (unknown fields are refused), and a built request whose URL
//! host is neither loopback nor in the manifest's `allowed_hosts` are contract violations: the host
//! reports them as errors that name the plugin file, sends nothing, and goes on serving every
//! other connector.
//!
//! Error codes a connector uses in [`ConnectorError::code`] (machine-readable, `snake_case`):
//! `invalid_call` (the message is not one it can read), `schema_mismatch` (another
//! [`SCHEMA_VERSION`]), `unsupported` (a function it does not implement), and its own refusals
//! such as `unsupported_currency`, `unsupported_payments`, `partial_capture_unsupported`,
//! `invalid_amount`. The message is a sentence naming the field and the value.
//!
//! ## Messages
//! JSON, message schema [`SCHEMA_VERSION`] (1), carried in every call's `schema` field; a
//! connector refuses a message of another schema with `schema_mismatch`. Unknown fields are
//! refused on both sides. Amounts are decimal strings with exactly the currency's places
//! (`"100.10"`, `"1500"` for JPY, `"1.250"` for KWD), never floats.
//!
//! | function | input | output |
//! |---|---|---|
//! | `manifest` | none | [`Manifest`] |
//! | `build_capture` | [`CaptureCall`] | [`HttpRequest`] |
//! | `parse_capture` | [`ParseCall`] (the call and the platform's [`HttpResponse`]) | [`CaptureResult`] |
//! | `build_status` (1.1) | [`StatusCall`] | [`HttpRequest`] |
//! | `parse_status` (1.1) | [`StatusParseCall`] | [`CaptureResult`] |
//! | `build_capture_with` (1.2) | [`CaptureCall`] | [`HttpRequest`], and a context |
//! | `parse_capture_with` (1.2) | the context and [`HttpResponse`] | [`CaptureResult`] |
//! | `build_capture_struct` (1.3) | [`abi::RawCaptureCall`] | [`abi::RawHttpRequest`], and a context |
//! | `parse_capture_struct` (1.3) | the context and [`abi::RawHttpResponse`] | [`abi::RawCaptureResult`] |
//!
//! ## The per-call context (1.2, optional)
//! A connector may keep what it read of a [`CaptureCall`] for the parse of its answer, so that
//! the host does not send the call a second time and the connector does not decode it again (the
//! host's `ParseCall` repeats the whole call: for the Optty connector, 12k of the 106k
//! instructions a capture cost through the ABI; see ARCHITECTURE.md, "Performance"). The three 1.2 functions
//! are all set or all null; a plugin with them null (every 1.0 and 1.1 plugin, and a 1.2 plugin
//! that does not want them) is called with `build_capture` and `parse_capture` as before.
//! - `build_capture_with` is `build_capture` with one more argument: on [`abi::STATUS_OK`] the
//!   plugin writes into `*context` an opaque value of its own (typically a pointer to what it
//!   keeps; null is allowed). On any other status the host ignores `*context`.
//! - The host hands each context back exactly once: to `parse_capture_with` with the platform's
//!   answer (the [`HttpResponse`] JSON alone, no `schema` field), which consumes it whatever
//!   status it returns, or, when no answer is parsed (the request was refused by the host's
//!   checks, never sent, or got no answer), to `free_context`. A context may be handed back on
//!   another thread than the one that made it.
//! - The host still calls `build_capture` and `parse_capture` for tools (`capture plugins
//!   verify`), so a 1.2 plugin implements both ways. The SDK does all of this for a Rust
//!   [`Connector`]: the context is the decoded call, boxed.
//!
//! ## Struct messages (1.3, optional)
//! The capture's four messages as C structs instead of JSON: the host passes a
//! [`abi::RawCaptureCall`] (and later a [`abi::RawHttpResponse`]) of borrowed strings that the
//! plugin reads in place, and the plugin answers with a [`abi::RawHttpRequest`] (a
//! [`abi::RawCaptureResult`]) whose strings point into its own memory. No message is encoded or
//! decoded; each side copies what it keeps. For the Optty connector this takes build + parse
//! through the ABI from 91k to 56k instructions (ARCHITECTURE.md, "Performance").
//! - The three functions are all set or all null, and only with the three 1.2 functions (the
//!   struct build's context is released by `free_context` when no parse consumes it). A host
//!   uses them when they are set; the JSON functions stay required, for tools and for hosts that
//!   turn structs off. A plugin without them (every 1.0 to 1.2 plugin) is called with JSON.
//! - Strings ([`abi::Str`]) are `(ptr, len)`, UTF-8, not NUL-terminated. In a required field a
//!   null `ptr` is the empty string; in an optional field (`description`, a payment's `method`,
//!   a header's `secret`, the request `body`, the result's `captured_amount`,
//!   `platform_capture_id`, `platform_code`) a null `ptr` is absent. A null `ptr` with a non-zero
//!   `len` is refused. Lists are a pointer and a count (null only for 0, at most 1024 entries; a
//!   request at most 64 headers); `shipping` is a pointer, null for none. Settings are sorted by
//!   name, each once. Flags are `u32` 0 or 1; codes out of range are refused.
//! - Input structs start with `struct_size`, the size the host was built with: a later minor may
//!   append fields, and a plugin reads none past it.
//! - On [`abi::STATUS_OK`] the plugin fills `*out` (and, for the build, `*context`). On
//!   [`abi::STATUS_ERROR`] or [`abi::STATUS_PANIC`] it writes `*error` exactly as a 1.x function
//!   writes its out buffer (a [`ConnectorError`] as JSON, or the panic's text), freed by
//!   `free_buffer`. Whatever the status, the host hands a non-null `out.owner` back to
//!   `free_output` once, after copying what it needs, and a non-null `*error` to `free_buffer`.
//! - The host checks everything it reads: every pointer and length, UTF-8, counts, codes, the
//!   1 MiB cap on the bytes of one answer; a broken answer is a refused call naming the field
//!   (`headers[2].name: not UTF-8 ...`), nothing is sent. [`structs`] holds the readers and
//!   writers both sides use; the SDK exports the three functions for every Rust [`Connector`].
//!
//! The manifest is validated at load: `id` of `[a-z0-9_-]` (the platform name in requests;
//! two loaded plugins may not share one), a semantic `version`, `schema` = 1, consistent
//! capabilities, `allowed_hosts` entries that are host names or `*.domain` wildcards (no scheme,
//! port or path), and `credentials` and `settings` names of `[a-z0-9_]`.
//!
//! ## Secrets and hosts
//! The plugin never sees a credential: a [`Header`] names one in `secret` (it must be declared in
//! the manifest's `credentials`), and the host appends its value when sending and records
//! `[REDACTED]`. A built URL must have the configured base URL's origin, and its host must be
//! loopback or match the manifest's `allowed_hosts`.
//!
//! ## Threads
//! Every function, of every plugin, may be called from many threads at once, with no
//! synchronisation by the host. A plugin keeps no unsynchronised mutable state (the SDK's
//! [`Connector`] is `Send + Sync` and takes `&self`).
//!
//! ## Panics and crashes
//! The SDK wraps every exported body in `catch_unwind` and reports a panic with
//! [`abi::STATUS_PANIC`] and its message. **A plugin built with `panic = "abort"` takes the host
//! process down on any panic** (nothing can catch it); neither can the host survive a crash, an
//! `abort()`, a C++ exception or a `longjmp` across the boundary, or memory corruption. Build
//! Rust plugins with `panic = "unwind"` (the default), and never let an exception leave a C
//! function.
//!
//! ## Integrity
//! The operator may pin each plugin file to its SHA-256 in the engine's configuration
//! (`plugins = [{ path = "...", sha256 = "..." }]`); a file with another hash is refused before
//! it is opened. `capture plugins inspect FILE` prints the hash; `capture plugins verify FILE` runs
//! the conformance kit.
#![warn(missing_docs)]

pub mod abi;
mod helpers;
mod messages;
mod results;
mod sdk;
pub mod structs;

pub use helpers::encode_path_segment;
pub use messages::{
    AmountEncoding, CallPayment, CallShipping, Capabilities, CaptureCall, CaptureResult, ConnectorError,
    Failure, FailureKind, Header, HttpRequest, HttpResponse, Manifest, ParseCall, PartialCapture,
    ResultStatus, SCHEMA_VERSION, StatusCall, StatusParseCall,
};
pub use results::{body_text, error_text};
#[doc(hidden)]
pub use sdk::__private;
pub use sdk::Connector;
