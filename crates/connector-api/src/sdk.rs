//! The safe side for plugin authors: implement [`Connector`], then `export_connector!(MyType)`.

use crate::messages::{
    CaptureCall, CaptureResult, ConnectorError, HttpRequest, HttpResponse, Manifest, StatusCall,
};

/// A connector: turns a canonical capture call into an HTTP request description, and the
/// platform's HTTP answer into a canonical result. It does no IO (the host owns the network,
/// secrets, timeouts and retries) and must be callable from many threads at once.
///
/// | method | required | default |
/// |---|---|---|
/// | [`Connector::manifest`] | yes | |
/// | [`Connector::build_capture`] | yes | |
/// | [`Connector::parse_capture`] | yes | |
/// | [`Connector::build_status`] | no | refuses with code `unsupported` |
/// | [`Connector::parse_status`] | no | refuses with code `unsupported` |
///
/// What [`export_connector!`](crate::export_connector) does around these methods, so you do not
/// have to: it creates one instance with `Default` on first use and shares it between threads,
/// decodes every message strictly (unknown fields refused, code `invalid_call`), refuses another
/// message schema (code `schema_mismatch`), encodes your answer, turns `Err(ConnectorError)` into
/// the error status, and catches a panic into the panic status with its message.
///
/// Rules of the road: never parse an amount into a float (amounts are exact decimal strings);
/// build URLs from `call.base_url`; put credentials in headers by name (`Header::secret`), never
/// by value; refuse early, with a message naming the field and the value, what the platform
/// cannot express.
pub trait Connector: Default + Send + Sync + 'static {
    /// The manifest: id, version, capabilities, allowed hosts, credentials and settings. Called
    /// once, when the host loads the plugin; the host validates it (see the crate docs) and
    /// refuses to load a plugin whose manifest is invalid.
    fn manifest(&self) -> Manifest;

    /// Builds the capture request. Refuse what the platform cannot express with an error whose
    /// message names the field and value (`currency KWD has 3 decimals; Optty accepts 2`).
    fn build_capture(&self, call: &CaptureCall) -> Result<HttpRequest, ConnectorError>;

    /// Maps the platform's answer to a canonical result. An answer it cannot classify should be
    /// a `failed` result of kind `unknown` (not an error), so the host records what came back.
    fn parse_capture(
        &self,
        call: &CaptureCall,
        response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError>;

    /// Builds a request that reads the state of the order's captures (for asynchronous platforms
    /// and for resolving an unknown outcome). Default: refuses with code `unsupported`; implement
    /// it together with [`Connector::parse_status`] and set `capabilities.status_query`, which is
    /// what tells the host to call them.
    fn build_status(&self, _call: &StatusCall) -> Result<HttpRequest, ConnectorError> {
        Err(ConnectorError::new("unsupported", "this connector cannot read a capture's state"))
    }

    /// Maps the answer to a status query: `captured` (with the amount captured so far),
    /// `pending`, or `failed`. Default: unsupported.
    fn parse_status(
        &self,
        _call: &StatusCall,
        _response: &HttpResponse,
    ) -> Result<CaptureResult, ConnectorError> {
        Err(ConnectorError::new("unsupported", "this connector cannot read a capture's state"))
    }
}

/// Exports a [`Connector`] type (which must implement `Default`) as a plugin: generates the
/// `capture_connector_entry` symbol and an ABI 1.3 descriptor (with the status functions, which
/// answer `unsupported` unless you implement them; the 1.2 per-call context: the decoded call
/// is kept for the parse of its answer, so the host does not send it twice; and the 1.3 struct
/// messages, which a 1.3 host uses instead of JSON for the capture: the call and the answers
/// cross as C structs of borrowed strings, read and checked by [`crate::structs`]). The plugin crate needs
/// `crate-type = ["cdylib"]` (add `"rlib"` to test it directly). Use it once per library.
///
/// The generated functions catch panics; that only works with `panic = "unwind"` (the default):
/// do not set `panic = "abort"` in the profile you build the plugin with.
///
/// ```text
/// #[derive(Default)]
/// struct MyConnector;
/// impl capture_connector_api::Connector for MyConnector { /* ... */ }
/// capture_connector_api::export_connector!(MyConnector);
/// ```
#[macro_export]
macro_rules! export_connector {
    ($ty:ty) => {
        const _: () = {
            fn __instance() -> &'static $ty {
                static INSTANCE: ::std::sync::OnceLock<$ty> = ::std::sync::OnceLock::new();
                INSTANCE.get_or_init(<$ty as ::core::default::Default>::default)
            }

            unsafe extern "C" fn __manifest(out: *mut $crate::abi::Buffer) -> ::std::ffi::c_int {
                // SAFETY: the host passes a valid, writable `Buffer` as the ABI requires.
                unsafe { $crate::__private::manifest(__instance, out) }
            }

            unsafe extern "C" fn __build_capture(
                input: *const u8,
                len: usize,
                out: *mut $crate::abi::Buffer,
            ) -> ::std::ffi::c_int {
                // SAFETY: the host passes `len` readable bytes at `input` and a writable `out`.
                unsafe { $crate::__private::build_capture(__instance, input, len, out) }
            }

            unsafe extern "C" fn __parse_capture(
                input: *const u8,
                len: usize,
                out: *mut $crate::abi::Buffer,
            ) -> ::std::ffi::c_int {
                // SAFETY: the host passes `len` readable bytes at `input` and a writable `out`.
                unsafe { $crate::__private::parse_capture(__instance, input, len, out) }
            }

            unsafe extern "C" fn __build_status(
                input: *const u8,
                len: usize,
                out: *mut $crate::abi::Buffer,
            ) -> ::std::ffi::c_int {
                // SAFETY: the host passes `len` readable bytes at `input` and a writable `out`.
                unsafe { $crate::__private::build_status(__instance, input, len, out) }
            }

            unsafe extern "C" fn __parse_status(
                input: *const u8,
                len: usize,
                out: *mut $crate::abi::Buffer,
            ) -> ::std::ffi::c_int {
                // SAFETY: the host passes `len` readable bytes at `input` and a writable `out`.
                unsafe { $crate::__private::parse_status(__instance, input, len, out) }
            }

            unsafe extern "C" fn __build_capture_with(
                input: *const u8,
                len: usize,
                out: *mut $crate::abi::Buffer,
                context: *mut *mut ::std::ffi::c_void,
            ) -> ::std::ffi::c_int {
                // SAFETY: the host passes `len` readable bytes at `input`, a writable `out` and a
                // writable `context`.
                unsafe { $crate::__private::build_capture_with(__instance, input, len, out, context) }
            }

            unsafe extern "C" fn __parse_capture_with(
                context: *mut ::std::ffi::c_void,
                input: *const u8,
                len: usize,
                out: *mut $crate::abi::Buffer,
            ) -> ::std::ffi::c_int {
                // SAFETY: `context` came from `__build_capture_with` and is handed back once; the
                // host passes `len` readable bytes at `input` and a writable `out`.
                unsafe { $crate::__private::parse_capture_with(__instance, context, input, len, out) }
            }

            unsafe extern "C" fn __build_capture_struct(
                call: *const $crate::abi::RawCaptureCall,
                out: *mut $crate::abi::RawHttpRequest,
                context: *mut *mut ::std::ffi::c_void,
                error: *mut $crate::abi::Buffer,
            ) -> ::std::ffi::c_int {
                // SAFETY: the host passes a valid call and writable `out`, `context` and `error`.
                unsafe { $crate::__private::build_capture_struct(__instance, call, out, context, error) }
            }

            unsafe extern "C" fn __parse_capture_struct(
                context: *mut ::std::ffi::c_void,
                response: *const $crate::abi::RawHttpResponse,
                out: *mut $crate::abi::RawCaptureResult,
                error: *mut $crate::abi::Buffer,
            ) -> ::std::ffi::c_int {
                // SAFETY: `context` came from `__build_capture_struct` and is handed back once; the
                // host passes a valid response and writable `out` and `error`.
                unsafe { $crate::__private::parse_capture_struct(__instance, context, response, out, error) }
            }

            static DESCRIPTOR: $crate::abi::ConnectorDescriptor = $crate::abi::ConnectorDescriptor {
                header: $crate::abi::DescriptorHeader {
                    magic: $crate::abi::MAGIC,
                    struct_size: ::core::mem::size_of::<$crate::abi::ConnectorDescriptor>() as u32,
                    abi_major: $crate::abi::ABI_MAJOR,
                    abi_minor: $crate::abi::ABI_MINOR,
                },
                manifest: Some(__manifest),
                build_capture: Some(__build_capture),
                parse_capture: Some(__parse_capture),
                free_buffer: Some($crate::__private::free_buffer),
                build_status: Some(__build_status),
                parse_status: Some(__parse_status),
                build_capture_with: Some(__build_capture_with),
                parse_capture_with: Some(__parse_capture_with),
                free_context: Some($crate::__private::free_context),
                build_capture_struct: Some(__build_capture_struct),
                parse_capture_struct: Some(__parse_capture_struct),
                free_output: Some($crate::__private::free_output),
            };

            /// The build's panic strategy, read by `capture plugins verify`: 1 when a panic unwinds
            /// (the SDK turns it into the panic status), 2 for `panic = "abort"` (a panic kills the
            /// host). Not part of the ABI: the engine never reads it.
            #[unsafe(no_mangle)]
            #[allow(non_upper_case_globals)]
            pub static capture_connector_panic_strategy: u8 = if cfg!(panic = "unwind") { 1 } else { 2 };

            /// The plugin's entry point (see `capture_connector_api::abi`).
            #[unsafe(no_mangle)]
            pub extern "C" fn capture_connector_entry() -> *const $crate::abi::ConnectorDescriptor {
                &DESCRIPTOR
            }
        };
    };
}

/// Implementation details of [`export_connector!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::any::Any;
    use std::ffi::c_int;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use serde::Serialize;

    use super::Connector;
    use crate::abi::{Buffer, STATUS_ERROR, STATUS_OK, STATUS_PANIC};
    use crate::messages::{
        CaptureCall, ConnectorError, HttpResponse, ParseCall, SCHEMA_VERSION, StatusCall, StatusParseCall,
    };

    fn panic_message(payload: &(dyn Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_owned()
        }
    }

    fn into_buffer(bytes: Vec<u8>) -> Buffer {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Buffer { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
    }

    fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ConnectorError> {
        // One allocation for a typical answer (a request with its body, a result).
        let mut bytes = Vec::with_capacity(1024);
        serde_json::to_writer(&mut bytes, value)
            .map_err(|e| ConnectorError::new("serialize", e.to_string()))?;
        Ok(bytes)
    }

    /// Runs `body` under `catch_unwind` and writes its result to `out`.
    ///
    /// # Safety
    /// `out` must be null or point to a writable `Buffer`.
    unsafe fn run(out: *mut Buffer, body: impl FnOnce() -> Result<Vec<u8>, ConnectorError>) -> c_int {
        if out.is_null() {
            return STATUS_ERROR;
        }
        let (status, bytes) = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(bytes)) => (STATUS_OK, bytes),
            Ok(Err(err)) => (STATUS_ERROR, serde_json::to_vec(&err).unwrap_or_default()),
            Err(payload) => (STATUS_PANIC, panic_message(payload.as_ref()).into_bytes()),
        };
        // SAFETY: checked non-null above; the caller guarantees it is writable.
        unsafe { out.write(into_buffer(bytes)) };
        status
    }

    /// # Safety
    /// `input` must point to `len` readable bytes (or be null with `len == 0`).
    unsafe fn input<'a>(input: *const u8, len: usize) -> &'a [u8] {
        if input.is_null() || len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees `len` readable bytes at `input`.
            unsafe { std::slice::from_raw_parts(input, len) }
        }
    }

    fn check_schema(schema: u32) -> Result<(), ConnectorError> {
        if schema == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(ConnectorError::new(
                "schema_mismatch",
                format!("message schema {schema} is not supported; this connector speaks {SCHEMA_VERSION}"),
            ))
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ConnectorError> {
        // UTF-8 checked once for the whole message; read from a `str`, serde_json does not check
        // each string again.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ConnectorError::new("invalid_call", format!("{what}: not UTF-8: {e}")))?;
        serde_json::from_str(text).map_err(|e| ConnectorError::new("invalid_call", format!("{what}: {e}")))
    }

    /// # Safety
    /// `out` must point to a writable `Buffer`.
    pub unsafe fn manifest<C: Connector>(instance: fn() -> &'static C, out: *mut Buffer) -> c_int {
        // SAFETY: forwarded from the caller.
        unsafe { run(out, || json(&instance().manifest())) }
    }

    /// Decodes a message, checks its schema, runs `body` and writes its answer: the one path every
    /// call function takes.
    ///
    /// # Safety
    /// `input` must point to `len` readable bytes and `out` to a writable `Buffer`.
    unsafe fn handle<M: serde::de::DeserializeOwned, O: Serialize>(
        input_ptr: *const u8,
        len: usize,
        out: *mut Buffer,
        what: &str,
        schema: impl FnOnce(&M) -> u32,
        body: impl FnOnce(M) -> Result<O, ConnectorError>,
    ) -> c_int {
        // SAFETY: forwarded from the caller.
        let bytes = unsafe { input(input_ptr, len) };
        // SAFETY: forwarded from the caller.
        unsafe {
            run(out, || {
                let message: M = decode(bytes, what)?;
                check_schema(schema(&message))?;
                json(&body(message)?)
            })
        }
    }

    /// # Safety
    /// `input` must point to `len` readable bytes and `out` to a writable `Buffer`.
    pub unsafe fn build_capture<C: Connector>(
        instance: fn() -> &'static C,
        input_ptr: *const u8,
        len: usize,
        out: *mut Buffer,
    ) -> c_int {
        // SAFETY: forwarded from the caller.
        unsafe {
            handle(
                input_ptr,
                len,
                out,
                "capture call",
                |m: &CaptureCall| m.schema,
                |m| instance().build_capture(&m),
            )
        }
    }

    /// # Safety
    /// `input` must point to `len` readable bytes and `out` to a writable `Buffer`.
    pub unsafe fn parse_capture<C: Connector>(
        instance: fn() -> &'static C,
        input_ptr: *const u8,
        len: usize,
        out: *mut Buffer,
    ) -> c_int {
        // SAFETY: forwarded from the caller.
        unsafe {
            handle(
                input_ptr,
                len,
                out,
                "parse call",
                |m: &ParseCall| m.schema,
                |m| instance().parse_capture(&m.call, &m.response),
            )
        }
    }

    /// # Safety
    /// `input` must point to `len` readable bytes and `out` to a writable `Buffer`.
    pub unsafe fn build_status<C: Connector>(
        instance: fn() -> &'static C,
        input_ptr: *const u8,
        len: usize,
        out: *mut Buffer,
    ) -> c_int {
        // SAFETY: forwarded from the caller.
        unsafe {
            handle(
                input_ptr,
                len,
                out,
                "status call",
                |m: &StatusCall| m.schema,
                |m| instance().build_status(&m),
            )
        }
    }

    /// # Safety
    /// `input` must point to `len` readable bytes and `out` to a writable `Buffer`.
    pub unsafe fn parse_status<C: Connector>(
        instance: fn() -> &'static C,
        input_ptr: *const u8,
        len: usize,
        out: *mut Buffer,
    ) -> c_int {
        // SAFETY: forwarded from the caller.
        unsafe {
            handle(
                input_ptr,
                len,
                out,
                "status parse call",
                |m: &StatusParseCall| m.schema,
                |m| instance().parse_status(&m.status, &m.response),
            )
        }
    }

    /// `build_capture`, keeping the decoded call (boxed) as the context of its parse.
    ///
    /// # Safety
    /// `input` must point to `len` readable bytes, `out` to a writable `Buffer` and `context` to
    /// a writable pointer.
    pub unsafe fn build_capture_with<C: Connector>(
        instance: fn() -> &'static C,
        input_ptr: *const u8,
        len: usize,
        out: *mut Buffer,
        context: *mut *mut std::ffi::c_void,
    ) -> c_int {
        if context.is_null() {
            return STATUS_ERROR;
        }
        let mut kept: Option<Box<CaptureCall>> = None;
        // SAFETY: forwarded from the caller.
        let status = unsafe {
            handle(
                input_ptr,
                len,
                out,
                "capture call",
                |m: &CaptureCall| m.schema,
                |m| {
                    let request = instance().build_capture(&m)?;
                    kept = Some(Box::new(m));
                    Ok(request)
                },
            )
        };
        let ptr = match kept {
            Some(call) if status == STATUS_OK => Box::into_raw(call).cast::<std::ffi::c_void>(),
            _ => std::ptr::null_mut(),
        };
        // SAFETY: checked non-null above; the caller guarantees it is writable.
        unsafe { context.write(ptr) };
        status
    }

    /// `parse_capture` with the call `build_capture_with` kept; consumes the context.
    ///
    /// # Safety
    /// `context` must come from `build_capture_with` of this plugin and not have been handed back
    /// before; `input` must point to `len` readable bytes and `out` to a writable `Buffer`.
    pub unsafe fn parse_capture_with<C: Connector>(
        instance: fn() -> &'static C,
        context: *mut std::ffi::c_void,
        input_ptr: *const u8,
        len: usize,
        out: *mut Buffer,
    ) -> c_int {
        if context.is_null() {
            // SAFETY: forwarded from the caller.
            return unsafe {
                run(out, || Err(ConnectorError::new("invalid_call", "parse_capture_with without a context")))
            };
        }
        // SAFETY: the context is a `Box<CaptureCall>` from `build_capture_with`, handed back once.
        let call = unsafe { Box::from_raw(context.cast::<CaptureCall>()) };
        // SAFETY: forwarded from the caller.
        unsafe {
            handle(
                input_ptr,
                len,
                out,
                "capture response",
                |_: &HttpResponse| SCHEMA_VERSION,
                |response| instance().parse_capture(&call, &response),
            )
        }
    }

    /// Most bytes of strings and lists the SDK reads from one struct message of the host's.
    const MAX_STRUCT_INPUT: usize = 64 << 20;

    /// Runs `body` under `catch_unwind`; its error or panic is written to `error` (as a 1.x
    /// function writes its out buffer) and its status returned.
    ///
    /// # Safety
    /// `error` must be null or point to a writable `Buffer`.
    unsafe fn run_struct<T>(
        error: *mut Buffer,
        body: impl FnOnce() -> Result<T, ConnectorError>,
    ) -> Result<T, c_int> {
        if error.is_null() {
            return Err(STATUS_ERROR);
        }
        let (status, bytes) = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(value)) => {
                // SAFETY: checked non-null above; the caller guarantees it is writable.
                unsafe { error.write(Buffer::empty()) };
                return Ok(value);
            }
            Ok(Err(err)) => (STATUS_ERROR, serde_json::to_vec(&err).unwrap_or_default()),
            Err(payload) => (STATUS_PANIC, panic_message(payload.as_ref()).into_bytes()),
        };
        // SAFETY: checked non-null above; the caller guarantees it is writable.
        unsafe { error.write(into_buffer(bytes)) };
        Err(status)
    }

    /// `build_capture` with struct messages (ABI 1.3): the call is copied out of the host's struct
    /// once and kept (boxed) as the context of its parse, as in `build_capture_with`.
    ///
    /// # Safety
    /// `call` must be null or a valid call struct; `out`, `context` and `error` must be null or
    /// writable.
    pub unsafe fn build_capture_struct<C: Connector>(
        instance: fn() -> &'static C,
        call: *const crate::abi::RawCaptureCall,
        out: *mut crate::abi::RawHttpRequest,
        context: *mut *mut std::ffi::c_void,
        error: *mut Buffer,
    ) -> c_int {
        if out.is_null() || context.is_null() {
            return STATUS_ERROR;
        }
        // SAFETY: checked non-null; the caller guarantees they are writable.
        unsafe {
            out.write(crate::abi::RawHttpRequest::empty());
            context.write(std::ptr::null_mut());
        }
        // SAFETY: forwarded from the caller.
        let built = unsafe {
            run_struct(error, || {
                // SAFETY: forwarded from the caller.
                let call = crate::structs::read_call(call, MAX_STRUCT_INPUT)
                    .map_err(|e| ConnectorError::new("invalid_call", format!("capture call: {e}")))?;
                check_schema(call.schema)?;
                let request = instance().build_capture(&call)?;
                Ok((crate::structs::request_out(request), Box::new(call)))
            })
        };
        match built {
            Ok((request, call)) => {
                // SAFETY: checked non-null above; the caller guarantees they are writable.
                unsafe {
                    out.write(request);
                    context.write(Box::into_raw(call).cast::<std::ffi::c_void>());
                }
                STATUS_OK
            }
            Err(status) => status,
        }
    }

    /// `parse_capture` with struct messages and the call `build_capture_struct` kept; consumes the
    /// context.
    ///
    /// # Safety
    /// `context` must come from `build_capture_struct` of this plugin and not have been handed
    /// back before; `response` must be null or a valid response struct; `out` and `error` must be
    /// null or writable.
    pub unsafe fn parse_capture_struct<C: Connector>(
        instance: fn() -> &'static C,
        context: *mut std::ffi::c_void,
        response: *const crate::abi::RawHttpResponse,
        out: *mut crate::abi::RawCaptureResult,
        error: *mut Buffer,
    ) -> c_int {
        // Taken first: consumed whatever happens next.
        let call = (!context.is_null()).then(|| {
            // SAFETY: a `Box<CaptureCall>` from `build_capture_struct`, handed back once.
            unsafe { Box::from_raw(context.cast::<CaptureCall>()) }
        });
        if out.is_null() {
            return STATUS_ERROR;
        }
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { out.write(crate::abi::RawCaptureResult::empty()) };
        // SAFETY: forwarded from the caller.
        let parsed = unsafe {
            run_struct(error, || {
                let call = call.ok_or_else(|| {
                    ConnectorError::new("invalid_call", "parse_capture_struct without a context")
                })?;
                // SAFETY: forwarded from the caller.
                let response = crate::structs::read_response(response, MAX_STRUCT_INPUT)
                    .map_err(|e| ConnectorError::new("invalid_call", format!("capture response: {e}")))?;
                instance().parse_capture(&call, &response).map(crate::structs::result_out)
            })
        };
        match parsed {
            Ok(result) => {
                // SAFETY: checked non-null above; the caller guarantees it is writable.
                unsafe { out.write(result) };
                STATUS_OK
            }
            Err(status) => status,
        }
    }

    /// Frees what a struct answer's `owner` holds.
    ///
    /// # Safety
    /// `owner` must be null or the owner of a struct answer of this plugin, not freed before.
    pub unsafe extern "C" fn free_output(owner: *mut std::ffi::c_void) {
        // SAFETY: forwarded from the caller.
        unsafe { crate::structs::free_owned(owner) }
    }

    /// Releases a context no parse consumed.
    ///
    /// # Safety
    /// `context` must come from `build_capture_with` of this plugin and not have been handed back
    /// before (null is ignored).
    pub unsafe extern "C" fn free_context(context: *mut std::ffi::c_void) {
        if !context.is_null() {
            // SAFETY: a `Box<CaptureCall>` from `build_capture_with`, handed back once.
            drop(unsafe { Box::from_raw(context.cast::<CaptureCall>()) });
        }
    }

    /// Frees a buffer written by `run`.
    ///
    /// # Safety
    /// `buf` must be a buffer this plugin wrote and has not freed.
    pub unsafe extern "C" fn free_buffer(buf: Buffer) {
        if !buf.ptr.is_null() {
            // SAFETY: `buf` came from `into_buffer` (a Vec's raw parts) and is freed once.
            drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
        }
    }
}
