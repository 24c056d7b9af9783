//! The C ABI: the entry symbol, the descriptor and the buffers. See the crate docs for the rules.

use std::ffi::{c_int, c_void};

/// Major ABI version. A host loads only plugins with the same major.
pub const ABI_MAJOR: u16 = 1;
/// Minor ABI version. Minors only append fields to [`ConnectorDescriptor`].
pub const ABI_MINOR: u16 = 3;
/// `"CAPT"` in ASCII, the first field of every descriptor: tells a descriptor from garbage.
pub const MAGIC: u32 = 0x4341_5054;
/// Name of the function every plugin exports (NUL-terminated for `dlsym`).
pub const ENTRY_SYMBOL: &[u8] = b"capture_connector_entry\0";

/// The call succeeded; the out buffer holds the result JSON.
pub const STATUS_OK: c_int = 0;
/// The connector refused the call; the out buffer holds `{"code": ..., "message": ...}`.
pub const STATUS_ERROR: c_int = 1;
/// The connector panicked; the out buffer holds the panic message as UTF-8 text.
pub const STATUS_PANIC: c_int = 2;

/// The plugin's entry function: returns a pointer to a descriptor that lives as long as the
/// library is loaded (a `static`). Never null for a well-formed plugin.
pub type EntryFn = unsafe extern "C" fn() -> *const ConnectorDescriptor;

/// A byte buffer allocated by the plugin and handed to the host. The host reads `len` bytes at
/// `ptr` and gives the buffer back, unchanged, to the plugin's `free_buffer`.
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    /// Start of the bytes; null for an empty buffer.
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocation capacity, for the plugin's own bookkeeping.
    pub cap: usize,
}

impl Buffer {
    /// An empty buffer (null pointer): what the host passes for the plugin to fill.
    pub const fn empty() -> Buffer {
        Buffer { ptr: std::ptr::null_mut(), len: 0, cap: 0 }
    }
}

/// The fixed head of every descriptor, whatever its minor version: read first, checked first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DescriptorHeader {
    /// Always [`MAGIC`].
    pub magic: u32,
    /// `size_of::<ConnectorDescriptor>()` as the plugin was built: the host reads no field past it.
    pub struct_size: u32,
    /// The plugin's [`ABI_MAJOR`].
    pub abi_major: u16,
    /// The plugin's [`ABI_MINOR`].
    pub abi_minor: u16,
}

/// Writes the plugin's manifest JSON into `out`.
pub type ManifestFn = unsafe extern "C" fn(out: *mut Buffer) -> c_int;
/// Takes a JSON message (`len` bytes at `input`) and writes a JSON answer into `out`.
pub type CallFn = unsafe extern "C" fn(input: *const u8, len: usize, out: *mut Buffer) -> c_int;
/// Frees a buffer the plugin wrote.
pub type FreeFn = unsafe extern "C" fn(buf: Buffer);
/// 1.2: like [`CallFn`] for `build_capture`, and on [`STATUS_OK`] also writes into `*context` an
/// opaque value of the plugin's own (a pointer to what it keeps of the call; null is allowed).
pub type BuildWithContextFn =
    unsafe extern "C" fn(input: *const u8, len: usize, out: *mut Buffer, context: *mut *mut c_void) -> c_int;
/// 1.2: reads the answer (an [`crate::HttpResponse`], JSON) to the request built with `context`,
/// and writes a [`crate::CaptureResult`]. Consumes `context`, whatever the status returned.
pub type ParseWithContextFn =
    unsafe extern "C" fn(context: *mut c_void, input: *const u8, len: usize, out: *mut Buffer) -> c_int;
/// 1.2: releases a context that no parse consumed (the request was not sent, or no answer came).
pub type FreeContextFn = unsafe extern "C" fn(context: *mut c_void);

/// 1.3: a UTF-8 string owned by the side that wrote it: `len` bytes at `ptr`, **not**
/// NUL-terminated. In a required field a null `ptr` is the empty string (and `len` must be 0). In
/// an optional field (the docs say which) a null `ptr` is "absent" and any other pointer "present",
/// also with `len` 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    /// Start of the bytes.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Str {
    /// The empty required string, or an absent optional one.
    pub const NULL: Str = Str { ptr: std::ptr::null(), len: 0 };

    /// Borrows `s` (a dangling but non-null pointer when empty: present, not absent).
    pub fn of(s: &str) -> Str {
        Str { ptr: s.as_ptr(), len: s.len() }
    }

    /// Borrows an optional string: null when absent.
    pub fn of_opt(s: Option<&str>) -> Str {
        s.map_or(Str::NULL, Str::of)
    }
}

/// 1.3: a name and a value: a setting of a [`RawCaptureCall`], a header of a [`RawHttpResponse`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    /// The name.
    pub name: Str,
    /// The value.
    pub value: Str,
}

/// 1.3: [`crate::CallPayment`] as a struct.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawPayment {
    /// The payment's id.
    pub id: Str,
    /// Amount to capture from it.
    pub amount: Str,
    /// Amount authorized on it.
    pub authorized: Str,
    /// Optional: the payment method.
    pub method: Str,
}

/// 1.3: [`crate::CallShipping`] as a struct.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawShipping {
    /// Carrier.
    pub company: Str,
    /// Shipping method.
    pub method: Str,
    /// Tracking number.
    pub tracking_number: Str,
}

/// 1.3: [`crate::CaptureCall`] as a struct the host fills and owns, valid during the call only.
/// Settings are sorted by name, each name once; `settings` / `payments` may be null only when
/// their count is 0; a null `shipping` is "no shipping".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawCaptureCall {
    /// `size_of::<RawCaptureCall>()` as the host was built: a later minor may append fields.
    pub struct_size: u32,
    /// [`crate::SCHEMA_VERSION`].
    pub schema: u32,
    /// Decimal places of the currency.
    pub currency_exponent: u32,
    /// 1 when the amount is the whole capturable amount, else 0.
    pub full: u32,
    /// The platform's base URL, no trailing slash.
    pub base_url: Str,
    /// The order's id.
    pub order_id: Str,
    /// ISO 4217 code.
    pub currency: Str,
    /// Amount to capture.
    pub amount: Str,
    /// The order's amount.
    pub order_amount: Str,
    /// The order's surcharge.
    pub surcharge: Str,
    /// The idempotency key.
    pub idempotency_key: Str,
    /// Optional: the description.
    pub description: Str,
    /// The settings, `settings_len` of them.
    pub settings: *const Pair,
    /// How many settings.
    pub settings_len: usize,
    /// The payments, `payments_len` of them.
    pub payments: *const RawPayment,
    /// How many payments.
    pub payments_len: usize,
    /// Optional: the shipping details.
    pub shipping: *const RawShipping,
}

/// 1.3: [`crate::Header`] as a struct.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawHeader {
    /// Header name.
    pub name: Str,
    /// Value (the prefix when `secret` is present).
    pub value: Str,
    /// Optional: the credential the host appends to `value`.
    pub secret: Str,
}

/// 1.3: [`crate::HttpRequest`] as a struct the plugin writes; every pointer into memory the
/// plugin keeps until the host hands `owner` to `free_output`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawHttpRequest {
    /// What the host gives back to `free_output` (null: nothing to free).
    pub owner: *mut c_void,
    /// HTTP method.
    pub method: Str,
    /// Absolute URL.
    pub url: Str,
    /// Optional: the body.
    pub body: Str,
    /// The headers, `headers_len` of them.
    pub headers: *const RawHeader,
    /// How many headers.
    pub headers_len: usize,
}

impl RawHttpRequest {
    /// What the host passes for the plugin to fill.
    pub const fn empty() -> RawHttpRequest {
        RawHttpRequest {
            owner: std::ptr::null_mut(),
            method: Str::NULL,
            url: Str::NULL,
            body: Str::NULL,
            headers: std::ptr::null(),
            headers_len: 0,
        }
    }
}

/// 1.3: [`crate::HttpResponse`] as a struct the host fills and owns, valid during the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawHttpResponse {
    /// `size_of::<RawHttpResponse>()` as the host was built.
    pub struct_size: u32,
    /// HTTP status (100 to 599).
    pub status: u32,
    /// The body.
    pub body: Str,
    /// The headers, `headers_len` of them.
    pub headers: *const Pair,
    /// How many headers.
    pub headers_len: usize,
}

/// 1.3, [`RawCaptureResult::status`]: [`crate::ResultStatus::Captured`].
pub const RESULT_CAPTURED: u32 = 0;
/// 1.3: [`crate::ResultStatus::Pending`].
pub const RESULT_PENDING: u32 = 1;
/// 1.3: [`crate::ResultStatus::AlreadyCaptured`].
pub const RESULT_ALREADY_CAPTURED: u32 = 2;
/// 1.3: [`crate::ResultStatus::Failed`].
pub const RESULT_FAILED: u32 = 3;

/// 1.3: [`crate::CaptureResult`] as a struct the plugin writes; pointers as in
/// [`RawHttpRequest`]. `failure_kind` is the kind's index in [`crate::FailureKind::ALL`]; the
/// failure fields are read only when `has_failure` is 1, `retry_after_ms` only when
/// `has_retry_after` is 1.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawCaptureResult {
    /// What the host gives back to `free_output` (null: nothing to free).
    pub owner: *mut c_void,
    /// One of the `RESULT_*` codes.
    pub status: u32,
    /// 1 when the result has a failure, else 0.
    pub has_failure: u32,
    /// The failure's kind, an index in [`crate::FailureKind::ALL`].
    pub failure_kind: u32,
    /// 1 when sending the same request again is safe, else 0.
    pub retryable: u32,
    /// 1 when `retry_after_ms` is set, else 0.
    pub has_retry_after: u32,
    /// Always 0 (keeps `retry_after_ms` aligned the same way in every compiler).
    pub reserved: u32,
    /// When a retry may be sent.
    pub retry_after_ms: u64,
    /// Optional: the amount captured.
    pub captured_amount: Str,
    /// Optional: the platform's capture id.
    pub platform_capture_id: Str,
    /// Optional: the platform's code.
    pub platform_code: Str,
    /// The failure's message.
    pub message: Str,
}

impl RawCaptureResult {
    /// What the host passes for the plugin to fill.
    pub const fn empty() -> RawCaptureResult {
        RawCaptureResult {
            owner: std::ptr::null_mut(),
            status: u32::MAX,
            has_failure: 0,
            failure_kind: 0,
            retryable: 0,
            has_retry_after: 0,
            reserved: 0,
            retry_after_ms: 0,
            captured_amount: Str::NULL,
            platform_capture_id: Str::NULL,
            platform_code: Str::NULL,
            message: Str::NULL,
        }
    }
}

/// 1.3: `build_capture` with structs. Reads `*call` (the host's, valid during the call). On
/// [`STATUS_OK`] writes `*out` and `*context` (as 1.2's `build_capture_with`: what the parse of
/// the answer needs, released by `free_context` if no parse consumes it). On [`STATUS_ERROR`] or
/// [`STATUS_PANIC`] writes `*error` as a 1.x function writes its out buffer (a
/// [`crate::ConnectorError`] as JSON, or the panic's text), freed by `free_buffer`.
pub type BuildStructFn = unsafe extern "C" fn(
    call: *const RawCaptureCall,
    out: *mut RawHttpRequest,
    context: *mut *mut c_void,
    error: *mut Buffer,
) -> c_int;
/// 1.3: reads `*response` (the host's, valid during the call) with the `context` of the build;
/// consumes the context whatever the status. On [`STATUS_OK`] writes `*out`; otherwise `*error`.
pub type ParseStructFn = unsafe extern "C" fn(
    context: *mut c_void,
    response: *const RawHttpResponse,
    out: *mut RawCaptureResult,
    error: *mut Buffer,
) -> c_int;
/// 1.3: releases what a struct answer's `owner` holds (null is ignored).
pub type FreeOutputFn = unsafe extern "C" fn(owner: *mut c_void);

/// The versioned descriptor (ABI 1.3). Fields are only ever appended, in later minors:
/// 1.0 ends with `free_buffer`; 1.1 appends `build_status` and `parse_status`; 1.2 appends
/// `build_capture_with`, `parse_capture_with` and `free_context` (all three or none); 1.3 appends
/// `build_capture_struct`, `parse_capture_struct` and `free_output` (all three or none, and only
/// with the 1.2 three, whose `free_context` releases their contexts).
#[repr(C)]
#[derive(Debug)]
pub struct ConnectorDescriptor {
    /// Magic, size and version.
    pub header: DescriptorHeader,
    /// Manifest: [`crate::Manifest`] as JSON.
    pub manifest: Option<ManifestFn>,
    /// [`crate::CaptureCall`] in, [`crate::HttpRequest`] out.
    pub build_capture: Option<CallFn>,
    /// [`crate::ParseCall`] in, [`crate::CaptureResult`] out.
    pub parse_capture: Option<CallFn>,
    /// Frees every buffer the other functions wrote.
    pub free_buffer: Option<FreeFn>,
    /// 1.1: [`crate::StatusCall`] in, [`crate::HttpRequest`] out (null: no status query).
    pub build_status: Option<CallFn>,
    /// 1.1: [`crate::StatusParseCall`] in, [`crate::CaptureResult`] out (null: no status query).
    pub parse_status: Option<CallFn>,
    /// 1.2: [`crate::CaptureCall`] in, [`crate::HttpRequest`] out, and a context kept for the
    /// parse (null: the host uses `build_capture` and `parse_capture`).
    pub build_capture_with: Option<BuildWithContextFn>,
    /// 1.2: the context and [`crate::HttpResponse`] in, [`crate::CaptureResult`] out: the call
    /// is not sent again.
    pub parse_capture_with: Option<ParseWithContextFn>,
    /// 1.2: releases a context no parse consumed.
    pub free_context: Option<FreeContextFn>,
    /// 1.3: [`RawCaptureCall`] in, [`RawHttpRequest`] out, and a context kept for the parse
    /// (null: the host uses the JSON functions).
    pub build_capture_struct: Option<BuildStructFn>,
    /// 1.3: the context and a [`RawHttpResponse`] in, [`RawCaptureResult`] out.
    pub parse_capture_struct: Option<ParseStructFn>,
    /// 1.3: releases a struct answer's `owner`.
    pub free_output: Option<FreeOutputFn>,
}

/// Size of the 1.0 descriptor (up to `free_buffer`): the smallest a host of this major accepts.
pub const DESCRIPTOR_SIZE_V1_0: usize = std::mem::offset_of!(ConnectorDescriptor, build_status);
/// Size of the 1.1 descriptor (up to `parse_status`).
pub const DESCRIPTOR_SIZE_V1_1: usize = std::mem::offset_of!(ConnectorDescriptor, build_capture_with);
/// Size of the 1.2 descriptor (up to `free_context`).
pub const DESCRIPTOR_SIZE_V1_2: usize = std::mem::offset_of!(ConnectorDescriptor, build_capture_struct);
/// Size of the 1.3 descriptor.
pub const DESCRIPTOR_SIZE_V1_3: usize = std::mem::size_of::<ConnectorDescriptor>();

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn the_header_is_twelve_bytes_and_the_pointers_follow_it() {
        assert_eq!(size_of::<DescriptorHeader>(), 12);
        assert_eq!(offset_of!(DescriptorHeader, struct_size), 4);
        assert_eq!(offset_of!(DescriptorHeader, abi_major), 8);
        assert_eq!(offset_of!(DescriptorHeader, abi_minor), 10);
        let ptr = size_of::<usize>();
        let first = if ptr == 8 { 16 } else { 12 };
        assert_eq!(offset_of!(ConnectorDescriptor, manifest), first);
        assert_eq!(DESCRIPTOR_SIZE_V1_0, first + 4 * ptr);
        assert_eq!(DESCRIPTOR_SIZE_V1_1, first + 6 * ptr);
        assert_eq!(DESCRIPTOR_SIZE_V1_2, first + 9 * ptr);
        assert_eq!(DESCRIPTOR_SIZE_V1_3, first + 12 * ptr);
        assert_eq!(size_of::<Buffer>(), 3 * ptr);
        // Nullable function pointers are plain pointers (the niche of `Option<fn>`).
        assert_eq!(size_of::<Option<CallFn>>(), ptr);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn sizes_on_64_bit_targets() {
        assert_eq!(
            (DESCRIPTOR_SIZE_V1_0, DESCRIPTOR_SIZE_V1_1, DESCRIPTOR_SIZE_V1_2, DESCRIPTOR_SIZE_V1_3),
            (48, 64, 88, 112)
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn struct_message_layouts_on_64_bit_targets() {
        assert_eq!(size_of::<Str>(), 16);
        assert_eq!(size_of::<Pair>(), 32);
        assert_eq!(size_of::<RawPayment>(), 64);
        assert_eq!(size_of::<RawShipping>(), 48);
        assert_eq!(size_of::<RawHeader>(), 48);
        assert_eq!(offset_of!(RawCaptureCall, base_url), 16);
        assert_eq!(offset_of!(RawCaptureCall, description), 128);
        assert_eq!(offset_of!(RawCaptureCall, settings), 144);
        assert_eq!(offset_of!(RawCaptureCall, shipping), 176);
        assert_eq!(size_of::<RawCaptureCall>(), 184);
        assert_eq!(offset_of!(RawHttpRequest, method), 8);
        assert_eq!(offset_of!(RawHttpRequest, headers), 56);
        assert_eq!(size_of::<RawHttpRequest>(), 72);
        assert_eq!(offset_of!(RawHttpResponse, body), 8);
        assert_eq!(size_of::<RawHttpResponse>(), 40);
        assert_eq!(offset_of!(RawCaptureResult, status), 8);
        assert_eq!(offset_of!(RawCaptureResult, retry_after_ms), 32);
        assert_eq!(offset_of!(RawCaptureResult, message), 88);
        assert_eq!(size_of::<RawCaptureResult>(), 104);
    }

    #[test]
    fn the_magic_spells_capt() {
        assert_eq!(MAGIC.to_be_bytes(), *b"CAPT");
        assert_eq!(ENTRY_SYMBOL, b"capture_connector_entry\0");
    }
}
