//! ABI 1.3's messages as C structs: the owned messages viewed as structs (borrowing), and structs
//! read back into owned messages (checking every pointer, length, UTF-8 string and code).
//!
//! Both sides use this module: the host views its [`CaptureCall`] and [`HttpResponse`] and reads
//! the plugin's [`RawHttpRequest`] and [`RawCaptureResult`]; the SDK reads the host's structs and
//! writes its answers. A struct is never trusted: a null pointer with a length, a string that is
//! not UTF-8, a count over its limit, a status or kind code out of range are refused with a
//! problem naming the field (`headers[2].name: not UTF-8 ...`).

use std::collections::BTreeMap;
use std::ffi::c_void;

use crate::abi::{
    Pair, RESULT_ALREADY_CAPTURED, RESULT_CAPTURED, RESULT_FAILED, RESULT_PENDING, RawCaptureCall,
    RawCaptureResult, RawHeader, RawHttpRequest, RawHttpResponse, RawPayment, RawShipping, Str,
};
use crate::messages::{
    CallPayment, CallShipping, CaptureCall, CaptureResult, Failure, FailureKind, Header, HttpRequest,
    HttpResponse, ResultStatus,
};

/// Where a problem is: `url`, `headers[2].name`.
#[derive(Debug, Clone, Copy)]
struct Field {
    list: Option<(&'static str, usize)>,
    name: &'static str,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.list {
            Some((list, i)) if self.name.is_empty() => write!(f, "{list}[{i}]"),
            Some((list, i)) => write!(f, "{list}[{i}].{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

const fn field(name: &'static str) -> Field {
    Field { list: None, name }
}

const fn item(list: &'static str, i: usize, name: &'static str) -> Field {
    Field { list: Some((list, i)), name }
}

/// Reads strings and lists out of the other side's structs, within a byte budget.
struct Reader {
    left: usize,
    cap: usize,
}

impl Reader {
    fn new(cap: usize) -> Reader {
        Reader { left: cap, cap }
    }

    fn spend(&mut self, bytes: usize, at: Field) -> Result<(), String> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            format!("{at}: the strings and lists exceed the {}-byte cap of a message", self.cap)
        })?;
        Ok(())
    }

    /// A required string (null with length 0 is empty).
    ///
    /// # Safety
    /// A non-null `s.ptr` must point to `s.len` readable bytes that outlive `'a`.
    unsafe fn str<'a>(&mut self, s: Str, at: Field) -> Result<&'a str, String> {
        if s.ptr.is_null() {
            if s.len != 0 {
                return Err(format!("{at}: null pointer with length {}", s.len));
            }
            return Ok("");
        }
        self.spend(s.len, at)?;
        // SAFETY: non-null, and the caller guarantees `len` readable bytes for `'a`.
        let bytes = unsafe { std::slice::from_raw_parts(s.ptr, s.len) };
        std::str::from_utf8(bytes).map_err(|e| format!("{at}: not UTF-8 ({e})"))
    }

    /// An optional string (null is absent).
    ///
    /// # Safety
    /// As [`Reader::str`].
    unsafe fn opt<'a>(&mut self, s: Str, at: Field) -> Result<Option<&'a str>, String> {
        if s.ptr.is_null() {
            if s.len != 0 {
                return Err(format!(
                    "{at}: null pointer with length {} (absent strings have length 0)",
                    s.len
                ));
            }
            return Ok(None);
        }
        // SAFETY: forwarded.
        unsafe { self.str(s, at) }.map(Some)
    }

    /// A list of `len` structs at `ptr`, at most `max` of them.
    ///
    /// # Safety
    /// A non-null `ptr` must point to `len` readable, initialised `T` that outlive `'a`.
    unsafe fn list<'a, T>(
        &mut self,
        ptr: *const T,
        len: usize,
        max: usize,
        at: Field,
    ) -> Result<&'a [T], String> {
        if len > max {
            return Err(format!("{at}: {len} entries; the limit is {max}"));
        }
        if ptr.is_null() {
            if len != 0 {
                return Err(format!("{at}: null pointer with {len} entries"));
            }
            return Ok(&[]);
        }
        if !ptr.is_aligned() {
            return Err(format!("{at}: misaligned pointer {ptr:p}"));
        }
        self.spend(len.saturating_mul(size_of::<T>()), at)?;
        // SAFETY: non-null, aligned, and the caller guarantees `len` readable `T` for `'a`.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }
}

/// A [`CaptureCall`] viewed as a [`RawCaptureCall`]: [`CallView::raw`] points into the call and
/// into this view, so both must outlive the raw struct's use.
#[derive(Debug)]
pub struct CallView<'a> {
    call: &'a CaptureCall,
    settings: Vec<Pair>,
    payments: Vec<RawPayment>,
    shipping: Option<RawShipping>,
}

impl<'a> CallView<'a> {
    /// Views `call` (two allocations: the settings and the payments lists).
    pub fn new(call: &'a CaptureCall) -> CallView<'a> {
        CallView {
            call,
            settings: call
                .settings
                .iter()
                .map(|(k, v)| Pair { name: Str::of(k), value: Str::of(v) })
                .collect(),
            payments: call
                .payments
                .iter()
                .map(|p| RawPayment {
                    id: Str::of(&p.id),
                    amount: Str::of(&p.amount),
                    authorized: Str::of(&p.authorized),
                    method: Str::of_opt(p.method.as_deref()),
                })
                .collect(),
            shipping: call.shipping.as_ref().map(|s| RawShipping {
                company: Str::of(&s.company),
                method: Str::of(&s.method),
                tracking_number: Str::of(&s.tracking_number),
            }),
        }
    }

    /// The struct, valid while `self` is borrowed.
    pub fn raw(&self) -> RawCaptureCall {
        let c = self.call;
        RawCaptureCall {
            struct_size: size_of::<RawCaptureCall>() as u32,
            schema: c.schema,
            currency_exponent: c.currency_exponent,
            full: u32::from(c.full),
            base_url: Str::of(&c.base_url),
            order_id: Str::of(&c.order_id),
            currency: Str::of(&c.currency),
            amount: Str::of(&c.amount),
            order_amount: Str::of(&c.order_amount),
            surcharge: Str::of(&c.surcharge),
            idempotency_key: Str::of(&c.idempotency_key),
            description: Str::of_opt(c.description.as_deref()),
            settings: if self.settings.is_empty() { std::ptr::null() } else { self.settings.as_ptr() },
            settings_len: self.settings.len(),
            payments: if self.payments.is_empty() { std::ptr::null() } else { self.payments.as_ptr() },
            payments_len: self.payments.len(),
            shipping: self.shipping.as_ref().map_or(std::ptr::null(), |s| s as *const RawShipping),
        }
    }
}

/// An input struct of the host's whose first field is its `struct_size` (`u32`): refused when
/// null or smaller than this build's `T` (an older host's), borrowed otherwise.
///
/// # Safety
/// `raw` must be null or point to a readable struct of at least its `struct_size` bytes.
unsafe fn sized<'a, T>(raw: *const T, what: &str) -> Result<&'a T, String> {
    if raw.is_null() {
        return Err(format!("null {what}"));
    }
    // SAFETY: non-null; only the leading `u32` is read before the size is checked.
    let size = unsafe { raw.cast::<u32>().read_unaligned() } as usize;
    if size < size_of::<T>() {
        return Err(format!("the {what} struct is {size} bytes; this connector needs {}", size_of::<T>()));
    }
    // SAFETY: readable and, as `struct_size` says, whole.
    Ok(unsafe { &*raw })
}

/// The code of a failure kind in [`RawCaptureResult::failure_kind`]: its index in
/// [`FailureKind::ALL`], by an exhaustive match (a new kind does not compile until it has one).
fn kind_code(kind: FailureKind) -> u32 {
    match kind {
        FailureKind::InvalidRequest => 0,
        FailureKind::Unauthorized => 1,
        FailureKind::NotFound => 2,
        FailureKind::InvalidState => 3,
        FailureKind::Declined => 4,
        FailureKind::RateLimited => 5,
        FailureKind::PlatformUnavailable => 6,
        FailureKind::OutcomeUnknown => 7,
        FailureKind::Unknown => 8,
    }
}

/// Most settings, payments or headers a struct message may carry.
pub const MAX_LIST: usize = 1024;

/// Reads the host's call (the SDK's side). `cap` bounds the bytes read.
///
/// # Safety
/// `raw` must be null or point to a readable `RawCaptureCall` of at least its first two fields,
/// whose pointers are valid as the ABI says, for the duration of the call.
pub unsafe fn read_call(raw: *const RawCaptureCall, cap: usize) -> Result<CaptureCall, String> {
    // SAFETY: forwarded; `struct_size` is the call struct's first field.
    let raw = unsafe { sized(raw, "call") }?;
    let mut r = Reader::new(cap);
    // SAFETY: for every read below, the caller guarantees the struct's pointers as the ABI says.
    unsafe {
        let mut settings = BTreeMap::new();
        for (i, p) in r.list(raw.settings, raw.settings_len, MAX_LIST, field("settings"))?.iter().enumerate()
        {
            let name = r.str(p.name, item("settings", i, "name"))?;
            let value = r.str(p.value, item("settings", i, "value"))?;
            if settings.insert(name.to_owned(), value.to_owned()).is_some() {
                return Err(format!("settings[{i}].name: `{name}` is given twice"));
            }
        }
        let mut payments = Vec::with_capacity(raw.payments_len.min(MAX_LIST));
        for (i, p) in r.list(raw.payments, raw.payments_len, MAX_LIST, field("payments"))?.iter().enumerate()
        {
            payments.push(CallPayment {
                id: r.str(p.id, item("payments", i, "id"))?.to_owned(),
                amount: r.str(p.amount, item("payments", i, "amount"))?.to_owned(),
                authorized: r.str(p.authorized, item("payments", i, "authorized"))?.to_owned(),
                method: r.opt(p.method, item("payments", i, "method"))?.map(str::to_owned),
            });
        }
        let shipping =
            match r.list(raw.shipping, usize::from(!raw.shipping.is_null()), 1, field("shipping"))? {
                [s] => Some(CallShipping {
                    company: r.str(s.company, field("shipping.company"))?.to_owned(),
                    method: r.str(s.method, field("shipping.method"))?.to_owned(),
                    tracking_number: r.str(s.tracking_number, field("shipping.tracking_number"))?.to_owned(),
                }),
                _ => None,
            };
        let full = match raw.full {
            0 => false,
            1 => true,
            other => return Err(format!("full: {other} is neither 0 nor 1")),
        };
        Ok(CaptureCall {
            schema: raw.schema,
            base_url: r.str(raw.base_url, field("base_url"))?.to_owned(),
            settings,
            order_id: r.str(raw.order_id, field("order_id"))?.to_owned(),
            currency: r.str(raw.currency, field("currency"))?.to_owned(),
            currency_exponent: raw.currency_exponent,
            amount: r.str(raw.amount, field("amount"))?.to_owned(),
            full,
            order_amount: r.str(raw.order_amount, field("order_amount"))?.to_owned(),
            surcharge: r.str(raw.surcharge, field("surcharge"))?.to_owned(),
            payments,
            idempotency_key: r.str(raw.idempotency_key, field("idempotency_key"))?.to_owned(),
            description: r.opt(raw.description, field("description"))?.map(str::to_owned),
            shipping,
        })
    }
}

/// What a struct answer's `owner` holds: the owned message its pointers point into.
#[derive(Debug)]
pub enum Owned {
    /// A request and its headers as structs.
    Request(HttpRequest, Vec<RawHeader>),
    /// A result.
    Result(CaptureResult),
}

/// A built request as the struct the SDK writes; its `owner` is a `Box<Owned>` for [`free_owned`].
pub fn request_out(request: HttpRequest) -> RawHttpRequest {
    let mut owned = Box::new(Owned::Request(request, Vec::new()));
    let Owned::Request(request, headers) = &mut *owned else { unreachable!("just made") };
    *headers = request
        .headers
        .iter()
        .map(|h| RawHeader {
            name: Str::of(&h.name),
            value: Str::of(&h.value),
            secret: Str::of_opt(h.secret.as_deref()),
        })
        .collect();
    let raw = RawHttpRequest {
        owner: std::ptr::null_mut(),
        method: Str::of(&request.method),
        url: Str::of(&request.url),
        body: Str::of_opt(request.body.as_deref()),
        headers: if headers.is_empty() { std::ptr::null() } else { headers.as_ptr() },
        headers_len: headers.len(),
    };
    // The strings and the header list live in heap memory the box owns: moving the box (into a
    // raw pointer) moves none of them.
    RawHttpRequest { owner: Box::into_raw(owned).cast::<c_void>(), ..raw }
}

/// A result as the struct the SDK writes; its `owner` is a `Box<Owned>` for [`free_owned`].
pub fn result_out(result: CaptureResult) -> RawCaptureResult {
    let owned = Box::new(Owned::Result(result));
    let Owned::Result(r) = &*owned else { unreachable!("just made") };
    let status = match r.status {
        ResultStatus::Captured => RESULT_CAPTURED,
        ResultStatus::Pending => RESULT_PENDING,
        ResultStatus::AlreadyCaptured => RESULT_ALREADY_CAPTURED,
        ResultStatus::Failed => RESULT_FAILED,
    };
    let mut raw = RawCaptureResult {
        status,
        captured_amount: Str::of_opt(r.captured_amount.as_deref()),
        platform_capture_id: Str::of_opt(r.platform_capture_id.as_deref()),
        ..RawCaptureResult::empty()
    };
    if let Some(f) = &r.failure {
        raw.has_failure = 1;
        raw.failure_kind = kind_code(f.kind);
        raw.retryable = u32::from(f.retryable);
        raw.platform_code = Str::of_opt(f.platform_code.as_deref());
        raw.message = Str::of(&f.message);
        if let Some(ms) = f.retry_after_ms {
            raw.has_retry_after = 1;
            raw.retry_after_ms = ms;
        }
    }
    RawCaptureResult { owner: Box::into_raw(owned).cast::<c_void>(), ..raw }
}

/// Frees an `owner` that [`request_out`] or [`result_out`] made (null is ignored).
///
/// # Safety
/// `owner` must be null or come from one of those functions and not have been freed.
pub unsafe fn free_owned(owner: *mut c_void) {
    if !owner.is_null() {
        // SAFETY: a `Box<Owned>` from `request_out` / `result_out`, freed once.
        drop(unsafe { Box::from_raw(owner.cast::<Owned>()) });
    }
}

/// Reads the plugin's request (the host's side), at most `max_headers` headers and `cap` bytes.
///
/// # Safety
/// The struct's pointers must be valid as the ABI says until its owner is freed.
pub unsafe fn read_request(
    raw: &RawHttpRequest,
    max_headers: usize,
    cap: usize,
) -> Result<HttpRequest, String> {
    let mut r = Reader::new(cap);
    // SAFETY: for every read below, the caller guarantees the struct's pointers as the ABI says.
    unsafe {
        let list = r.list(raw.headers, raw.headers_len, max_headers, field("headers"))?;
        let mut headers = Vec::with_capacity(list.len());
        for (i, h) in list.iter().enumerate() {
            headers.push(Header {
                name: r.str(h.name, item("headers", i, "name"))?.to_owned(),
                value: r.str(h.value, item("headers", i, "value"))?.to_owned(),
                secret: r.opt(h.secret, item("headers", i, "secret"))?.map(str::to_owned),
            });
        }
        Ok(HttpRequest {
            method: r.str(raw.method, field("method"))?.to_owned(),
            url: r.str(raw.url, field("url"))?.to_owned(),
            headers,
            body: r.opt(raw.body, field("body"))?.map(str::to_owned),
        })
    }
}

/// An [`HttpResponse`] viewed as a [`RawHttpResponse`] (one allocation: the header list).
#[derive(Debug)]
pub struct ResponseView<'a> {
    response: &'a HttpResponse,
    headers: Vec<Pair>,
}

impl<'a> ResponseView<'a> {
    /// Views `response`.
    pub fn new(response: &'a HttpResponse) -> ResponseView<'a> {
        ResponseView {
            response,
            headers: response
                .headers
                .iter()
                .map(|(n, v)| Pair { name: Str::of(n), value: Str::of(v) })
                .collect(),
        }
    }

    /// The struct, valid while `self` is borrowed.
    pub fn raw(&self) -> RawHttpResponse {
        RawHttpResponse {
            struct_size: size_of::<RawHttpResponse>() as u32,
            status: u32::from(self.response.status),
            body: Str::of(&self.response.body),
            headers: if self.headers.is_empty() { std::ptr::null() } else { self.headers.as_ptr() },
            headers_len: self.headers.len(),
        }
    }
}

/// Reads the host's response (the SDK's side).
///
/// # Safety
/// As [`read_call`], for a `RawHttpResponse`.
pub unsafe fn read_response(raw: *const RawHttpResponse, cap: usize) -> Result<HttpResponse, String> {
    // SAFETY: forwarded; `struct_size` is the response struct's first field.
    let raw = unsafe { sized(raw, "response") }?;
    let status =
        u16::try_from(raw.status).map_err(|_| format!("status: {} is not an HTTP status", raw.status))?;
    let mut r = Reader::new(cap);
    // SAFETY: for every read below, the caller guarantees the struct's pointers as the ABI says.
    unsafe {
        let list = r.list(raw.headers, raw.headers_len, MAX_LIST, field("headers"))?;
        let mut headers = Vec::with_capacity(list.len());
        for (i, h) in list.iter().enumerate() {
            headers.push((
                r.str(h.name, item("headers", i, "name"))?.to_owned(),
                r.str(h.value, item("headers", i, "value"))?.to_owned(),
            ));
        }
        Ok(HttpResponse { status, headers, body: r.str(raw.body, field("body"))?.to_owned() })
    }
}

/// Reads the plugin's result (the host's side), at most `cap` bytes.
///
/// # Safety
/// The struct's pointers must be valid as the ABI says until its owner is freed.
pub unsafe fn read_result(raw: &RawCaptureResult, cap: usize) -> Result<CaptureResult, String> {
    let status = match raw.status {
        RESULT_CAPTURED => ResultStatus::Captured,
        RESULT_PENDING => ResultStatus::Pending,
        RESULT_ALREADY_CAPTURED => ResultStatus::AlreadyCaptured,
        RESULT_FAILED => ResultStatus::Failed,
        other => {
            return Err(format!(
                "status: unknown code {other} ({RESULT_CAPTURED} captured, {RESULT_PENDING} pending, \
                 {RESULT_ALREADY_CAPTURED} already captured, {RESULT_FAILED} failed)"
            ));
        }
    };
    if raw.reserved != 0 {
        return Err(format!("reserved: {} where 0 is required", raw.reserved));
    }
    let flag = |value: u32, at: &str| match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(format!("{at}: {other} is neither 0 nor 1")),
    };
    let mut r = Reader::new(cap);
    // SAFETY: for every read below, the caller guarantees the struct's pointers as the ABI says.
    unsafe {
        let failure = if flag(raw.has_failure, "has_failure")? {
            let kind = *FailureKind::ALL.get(raw.failure_kind as usize).ok_or_else(|| {
                format!(
                    "failure_kind: {} is not a kind (0 to {})",
                    raw.failure_kind,
                    FailureKind::ALL.len() - 1
                )
            })?;
            Some(Failure {
                kind,
                retryable: flag(raw.retryable, "retryable")?,
                platform_code: r.opt(raw.platform_code, field("platform_code"))?.map(str::to_owned),
                message: r.str(raw.message, field("message"))?.to_owned(),
                retry_after_ms: flag(raw.has_retry_after, "has_retry_after")?.then_some(raw.retry_after_ms),
            })
        } else {
            None
        };
        Ok(CaptureResult {
            status,
            captured_amount: r.opt(raw.captured_amount, field("captured_amount"))?.map(str::to_owned),
            platform_capture_id: r
                .opt(raw.platform_capture_id, field("platform_capture_id"))?
                .map(str::to_owned),
            failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::SCHEMA_VERSION;

    fn call() -> CaptureCall {
        CaptureCall {
            schema: SCHEMA_VERSION,
            base_url: "https://api.example.com".into(),
            settings: [("region".to_owned(), "eu".to_owned()), ("store".to_owned(), String::new())].into(),
            order_id: "ORD-1".into(),
            currency: "USD".into(),
            currency_exponent: 2,
            amount: "10.00".into(),
            full: true,
            order_amount: "10.00".into(),
            surcharge: "0.00".into(),
            payments: vec![
                CallPayment {
                    id: "p1".into(),
                    amount: "10.00".into(),
                    authorized: "10.00".into(),
                    method: None,
                },
                CallPayment {
                    id: "p2".into(),
                    amount: "0.00".into(),
                    authorized: "5.00".into(),
                    method: Some(String::new()),
                },
            ],
            idempotency_key: "k-\u{e9}".into(),
            description: Some(String::new()),
            shipping: Some(CallShipping {
                company: "UPS".into(),
                method: "".into(),
                tracking_number: "1Z".into(),
            }),
        }
    }

    #[test]
    fn a_call_viewed_and_read_back_is_the_same_call_empty_and_absent_strings_kept_apart() {
        let c = call();
        let view = CallView::new(&c);
        let raw = view.raw();
        // SAFETY: `raw` points into `c` and `view`, both alive.
        let back = unsafe { read_call(&raw, 1 << 20) }.expect("reads");
        assert_eq!(back, c);
        let mut bare = call();
        (bare.description, bare.shipping, bare.settings, bare.payments) =
            (None, None, BTreeMap::new(), vec![]);
        let view = CallView::new(&bare);
        // SAFETY: as above.
        assert_eq!(unsafe { read_call(&view.raw(), 1 << 20) }.expect("reads"), bare);
    }

    #[test]
    fn requests_and_results_written_and_read_back_are_the_same() {
        let request = HttpRequest {
            method: "POST".into(),
            url: "https://api.example.com/x".into(),
            headers: vec![
                Header { name: "A".into(), value: "Bearer ".into(), secret: Some("token".into()) },
                Header { name: "B".into(), value: String::new(), secret: None },
            ],
            body: Some(String::new()),
        };
        let raw = request_out(request.clone());
        // SAFETY: `raw` came from `request_out`; freed once below.
        unsafe {
            assert_eq!(read_request(&raw, 64, 1 << 20).expect("reads"), request);
            free_owned(raw.owner);
        }
        for result in [
            CaptureResult {
                status: ResultStatus::Captured,
                captured_amount: Some("1.00".into()),
                platform_capture_id: None,
                failure: None,
            },
            CaptureResult {
                status: ResultStatus::Failed,
                captured_amount: None,
                platform_capture_id: Some(String::new()),
                failure: Some(Failure {
                    kind: FailureKind::RateLimited,
                    retryable: true,
                    platform_code: None,
                    message: "slow down".into(),
                    retry_after_ms: Some(0),
                }),
            },
        ] {
            let raw = result_out(result.clone());
            // SAFETY: as above.
            unsafe {
                assert_eq!(read_result(&raw, 1 << 20).expect("reads"), result);
                free_owned(raw.owner);
            }
        }
        let response =
            HttpResponse { status: 201, headers: vec![("a".into(), "b".into())], body: "{}".into() };
        let view = ResponseView::new(&response);
        // SAFETY: points into `response` and `view`.
        assert_eq!(unsafe { read_response(&view.raw(), 1 << 20) }.expect("reads"), response);
    }

    #[test]
    fn every_kind_code_is_its_index_in_the_list_of_kinds() {
        for (i, kind) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(kind_code(*kind) as usize, i, "{kind}");
        }
    }

    #[test]
    fn broken_structs_are_refused_naming_the_field() {
        let bad = [0xffu8, 0xfe];
        let mut raw = RawHttpRequest::empty();
        raw.method = Str::of("POST");
        raw.url = Str { ptr: bad.as_ptr(), len: 2 };
        // SAFETY: every pointer is valid or null.
        let e = unsafe { read_request(&raw, 8, 1 << 20) }.expect_err("not UTF-8");
        assert!(e.starts_with("url: not UTF-8"), "{e}");
        raw.url = Str { ptr: std::ptr::null(), len: 3 };
        // SAFETY: as above.
        let e = unsafe { read_request(&raw, 8, 1 << 20) }.expect_err("null with a length");
        assert_eq!(e, "url: null pointer with length 3");
        raw.url = Str::of("https://x");
        let headers =
            [RawHeader { name: Str::of("A"), value: Str { ptr: bad.as_ptr(), len: 1 }, secret: Str::NULL }];
        (raw.headers, raw.headers_len) = (headers.as_ptr(), 1);
        // SAFETY: as above.
        let e = unsafe { read_request(&raw, 8, 1 << 20) }.expect_err("not UTF-8");
        assert!(e.starts_with("headers[0].value: not UTF-8"), "{e}");
        raw.headers_len = 9;
        // SAFETY: the count is refused before the list is read.
        let e = unsafe { read_request(&raw, 8, 1 << 20) }.expect_err("too many");
        assert_eq!(e, "headers: 9 entries; the limit is 8");
        (raw.headers, raw.headers_len) = (std::ptr::null(), 2);
        // SAFETY: a null list is refused before it is read.
        let e = unsafe { read_request(&raw, 8, 1 << 20) }.expect_err("null list");
        assert_eq!(e, "headers: null pointer with 2 entries");
        (raw.headers, raw.headers_len) = (std::ptr::null(), 0);
        let long = "x".repeat(100);
        raw.body = Str::of(&long);
        // SAFETY: valid pointers; the budget runs out first.
        let e = unsafe { read_request(&raw, 8, 64) }.expect_err("over the cap");
        assert!(e.contains("exceed the 64-byte cap"), "{e}");

        let mut result = RawCaptureResult::empty();
        // SAFETY: no pointer is read before the status is refused.
        let e = unsafe { read_result(&result, 1 << 20) }.expect_err("status");
        assert!(e.starts_with("status: unknown code 4294967295"), "{e}");
        result.status = RESULT_FAILED;
        (result.has_failure, result.failure_kind) = (1, 9);
        // SAFETY: as above.
        let e = unsafe { read_result(&result, 1 << 20) }.expect_err("kind");
        assert_eq!(e, "failure_kind: 9 is not a kind (0 to 8)");
        result.reserved = 1;
        // SAFETY: as above.
        let e = unsafe { read_result(&result, 1 << 20) }.expect_err("reserved");
        assert_eq!(e, "reserved: 1 where 0 is required");
        result.reserved = 0;
        (result.failure_kind, result.retryable) = (0, 2);
        // SAFETY: as above.
        let e = unsafe { read_result(&result, 1 << 20) }.expect_err("flag");
        assert_eq!(e, "retryable: 2 is neither 0 nor 1");

        let c = call();
        let view = CallView::new(&c);
        let mut raw = view.raw();
        raw.struct_size = 8;
        // SAFETY: only the size is read.
        let e = unsafe { read_call(&raw, 1 << 20) }.expect_err("short");
        assert!(e.starts_with("the call struct is 8 bytes"), "{e}");
        let dup =
            [Pair { name: Str::of("a"), value: Str::NULL }, Pair { name: Str::of("a"), value: Str::NULL }];
        let mut raw = view.raw();
        (raw.settings, raw.settings_len) = (dup.as_ptr(), 2);
        // SAFETY: valid pointers.
        let e = unsafe { read_call(&raw, 1 << 20) }.expect_err("duplicate");
        assert_eq!(e, "settings[1].name: `a` is given twice");
        // SAFETY: null is refused.
        assert_eq!(unsafe { read_call(std::ptr::null(), 1) }.expect_err("null"), "null call");
    }
}
