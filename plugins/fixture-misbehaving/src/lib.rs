//! Test fixture: a connector plugin that breaks the ABI contract on request.
//!
//! A library is loaded once per process and never unloaded, so the misbehaviour is chosen per
//! call, from the input: the capture call's `order_id` names it. `build_capture` misbehaves for
//! the order ids below; `parse_capture` misbehaves the same way for `parse-<name>` (e.g.
//! `parse-panic`), after a normal `build_capture`. Any other order id gets a correct answer, in
//! the Optty protocol (so the fixture can capture against the Optty emulator):
//!
//! | order id | what the function does | what the engine must report |
//! |---|---|---|
//! | `panic` | panics (caught here, reported with `STATUS_PANIC` and the message) | a panic, with its message |
//! | `null-buffer` | returns `STATUS_OK` without writing the buffer | success with a null buffer |
//! | `null-with-length` | writes a null pointer with a length of 16 | null buffer with a length |
//! | `empty-buffer` | `STATUS_OK` with a non-null, empty buffer | success with an empty buffer |
//! | `not-utf8` | `STATUS_OK` with bytes that are not UTF-8 | not UTF-8 |
//! | `not-json` | `STATUS_OK` with text that is not JSON | not JSON |
//! | `wrong-schema` | JSON with a field the message does not have | schema mismatch, with the path |
//! | `huge` | 1 MiB + 1 byte | over the size cap |
//! | `bad-status-code` | returns 7 | unknown status code |
//! | `error-not-json` | `STATUS_ERROR` with text that is not an error JSON | unreadable error |
//! | `foreign-host` | a URL on `attacker.example` | host not in the allow-list |
//! | `other-origin` | a URL on `api.optty.com` (allowed) while the base URL is another | URL outside the base URL |
//! | `undeclared-secret` | a header asking for credential `api_key`, not in the manifest | undeclared credential |
//! | `header-injection` | a header value with CR LF | invalid header |
//! | `bad-method` | method `TRACE` | method not allowed |
//! | `slow` | sleeps 3 s, then answers correctly | over the call deadline: the plugin is unhealthy |
//! | `dot-segment` | a URL whose path has `/../` | a dot segment, nothing sent |
//! | `encoded-dot-segment` | a URL whose path has `/%2E%2e/` | a dot segment, nothing sent |
//! | `parse-long-id` | (parse) a captured result whose `platform_capture_id` is 300 bytes | over the id limit |
//! | `parse-long-message` | (parse) a failed result with a 5000-byte message | the message cut at 1000 bytes |
//! | `unnormalized-url` | the base URL with its scheme in capitals (`HTTP://`) | sent and recorded in its parsed form |
//!
//! The fixture also has two deliberate faults that `capture plugins verify` must catch: it ignores
//! the message `schema` version (a conformant plugin refuses another schema), and it exports an
//! ABI **1.0** descriptor (the smaller one, without the status functions), which makes it the
//! fixture for "an older minor loads, the host reads only what `struct_size` covers".
//!
//! It implements the raw `extern "C"` functions by hand (it cannot use `export_connector!`, which
//! would keep it from breaking the contract).

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use capture_connector_api::abi::{
    ABI_MAJOR, Buffer, CallFn, ConnectorDescriptor, DESCRIPTOR_SIZE_V1_0, DescriptorHeader, FreeFn, MAGIC,
    ManifestFn, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use serde_json::{Value, json};

/// The ABI 1.0 descriptor: the 1.1 one without `build_status` and `parse_status`.
#[repr(C)]
struct DescriptorV1_0 {
    header: DescriptorHeader,
    manifest: Option<ManifestFn>,
    build_capture: Option<CallFn>,
    parse_capture: Option<CallFn>,
    free_buffer: Option<FreeFn>,
}

const _: () = assert!(std::mem::size_of::<DescriptorV1_0>() == DESCRIPTOR_SIZE_V1_0);

static DESCRIPTOR: DescriptorV1_0 = DescriptorV1_0 {
    header: DescriptorHeader {
        magic: MAGIC,
        struct_size: DESCRIPTOR_SIZE_V1_0 as u32,
        abi_major: ABI_MAJOR,
        abi_minor: 0,
    },
    manifest: Some(manifest),
    build_capture: Some(build_capture),
    parse_capture: Some(parse_capture),
    free_buffer: Some(free_buffer),
};

/// The entry point, as the ABI names it. The host reads no field past `struct_size`, so handing
/// it the smaller 1.0 descriptor behind the 1.1 pointer type is what the ABI allows.
#[unsafe(no_mangle)]
pub extern "C" fn capture_connector_entry() -> *const ConnectorDescriptor {
    (&raw const DESCRIPTOR).cast()
}

/// What a call answers: a status code and the buffer to write (`None`: leave `out` untouched).
struct Answer {
    status: c_int,
    buffer: Option<Buffer>,
}

fn into_buffer(bytes: Vec<u8>) -> Buffer {
    let mut bytes = std::mem::ManuallyDrop::new(bytes);
    Buffer { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
}

fn answer(status: c_int, bytes: Vec<u8>) -> Answer {
    Answer { status, buffer: Some(into_buffer(bytes)) }
}

fn ok_json(value: &Value) -> Answer {
    answer(STATUS_OK, value.to_string().into_bytes())
}

fn refuse(code: &str, message: String) -> Answer {
    answer(STATUS_ERROR, json!({ "code": code, "message": message }).to_string().into_bytes())
}

/// Writes the answer to `out` and returns its status.
///
/// # Safety
/// `out` must be null or point to a writable `Buffer`.
unsafe fn deliver(out: *mut Buffer, a: Answer) -> c_int {
    if let Some(buffer) = a.buffer {
        if out.is_null() {
            // SAFETY: the buffer was made by `into_buffer` just now and never handed out.
            unsafe { free_buffer(buffer) };
        } else {
            // SAFETY: checked non-null; the caller guarantees it is writable.
            unsafe { out.write(buffer) };
        }
    }
    a.status
}

/// The input bytes as a slice.
///
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

/// The misbehaviour `name` asks for, or `None` for a correct answer.
fn misbehave(name: &str, base_url: &str) -> Option<Answer> {
    let request = |url: String, method: &str, headers: Value| json!({ "method": method, "url": url, "headers": headers, "body": null });
    let auth = json!([{ "name": "Authorization", "value": "Bearer ", "secret": "bearer_token" }]);
    Some(match name {
        // A crash no boundary can catch: what a `panic = "abort"` build does on any panic.
        "abort" => std::process::abort(),
        "panic" => {
            let caught = catch_unwind(AssertUnwindSafe(|| -> Answer {
                panic!("the fixture was told to panic (order `{name}`)")
            }));
            match caught {
                Ok(a) => a,
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "a panic without a message".to_owned());
                    answer(STATUS_PANIC, message.into_bytes())
                }
            }
        }
        "null-buffer" => Answer { status: STATUS_OK, buffer: None },
        "null-with-length" => {
            Answer { status: STATUS_OK, buffer: Some(Buffer { ptr: std::ptr::null_mut(), len: 16, cap: 0 }) }
        }
        "empty-buffer" => answer(STATUS_OK, Vec::with_capacity(8)),
        "not-utf8" => answer(STATUS_OK, vec![0xff, 0xfe, 0xfd, b'{', b'}']),
        "not-json" => answer(STATUS_OK, b"this is not JSON".to_vec()),
        "wrong-schema" => ok_json(&json!({
            "method": "POST", "url": format!("{base_url}/x"), "headers": [], "body": null, "verb": "POST"
        })),
        "huge" => answer(STATUS_OK, vec![b' '; (1 << 20) + 1]),
        "bad-status-code" => answer(7, b"{}".to_vec()),
        "error-not-json" => answer(STATUS_ERROR, b"oops".to_vec()),
        "foreign-host" => ok_json(&request("https://attacker.example/orders/x/capture".into(), "POST", auth)),
        "other-origin" => ok_json(&request("https://api.optty.com/orders/x/capture".into(), "POST", auth)),
        "undeclared-secret" => ok_json(&request(
            format!("{base_url}/orders/x/capture"),
            "POST",
            json!([{ "name": "X-Api-Key", "value": "", "secret": "api_key" }]),
        )),
        "header-injection" => ok_json(&request(
            format!("{base_url}/orders/x/capture"),
            "POST",
            json!([{ "name": "X-Note", "value": "a\r\nX-Injected: 1" }]),
        )),
        "bad-method" => ok_json(&request(format!("{base_url}/orders/x/capture"), "TRACE", auth)),
        "slow" => {
            std::thread::sleep(std::time::Duration::from_secs(3));
            return None;
        }
        "dot-segment" => ok_json(&request(format!("{base_url}/orders/../capture"), "POST", auth)),
        "long-id" => ok_json(&json!({
            "status": "captured", "captured_amount": null, "platform_capture_id": "x".repeat(300), "failure": null
        })),
        "long-message" => ok_json(&json!({
            "status": "failed", "captured_amount": null, "platform_capture_id": null,
            "failure": { "kind": "invalid_request", "retryable": false, "platform_code": "400",
                         "message": "m".repeat(5000), "retry_after_ms": null }
        })),
        "unnormalized-url" => ok_json(&request(
            format!("{}/orders/unnormalized-url/capture", base_url.replacen("http://", "HTTP://", 1)),
            "POST",
            auth,
        )),
        "encoded-dot-segment" => ok_json(&request(format!("{base_url}/orders/%2E%2e/capture"), "POST", auth)),
        _ => return None,
    })
}

fn text<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, Answer> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("invalid_call", format!("the call has no string at `{pointer}`")))
}

/// The correct build: Optty's capture request (amount as a JSON number from the decimal text).
fn build(call: &Value) -> Result<Answer, Answer> {
    let base = text(call, "/base_url")?.trim_end_matches('/');
    let order = text(call, "/order_id")?;
    let key = text(call, "/idempotency_key")?;
    let amount = text(call, "/amount")?;
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(refuse("invalid_amount", format!("amount `{amount}` is not a positive decimal")));
    }
    let segment: String = order
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let body = format!(r#"{{"captureReference":{},"amount":{amount}}}"#, Value::from(key));
    Ok(ok_json(&json!({
        "method": "POST",
        "url": format!("{base}/orders/{segment}/capture"),
        "headers": [
            { "name": "Content-Type", "value": "application/json" },
            { "name": "Authorization", "value": "Bearer ", "secret": "bearer_token" }
        ],
        "body": body,
    })))
}

/// The correct parse: 200/201 captured, the rest failed by status.
fn parse(doc: &Value) -> Result<Answer, Answer> {
    let status = doc.pointer("/response/status").and_then(Value::as_u64).unwrap_or(0);
    let body = text(doc, "/response/body")?;
    if status == 200 || status == 201 {
        let id = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|b| b.get("captureId").and_then(Value::as_str).map(str::to_owned));
        return Ok(ok_json(&json!({
            "status": "captured",
            "captured_amount": text(doc, "/call/amount")?,
            "platform_capture_id": id,
            "failure": null,
        })));
    }
    let (kind, retryable) = match status {
        400 | 422 => ("invalid_request", false),
        401 | 403 => ("unauthorized", false),
        404 => ("not_found", false),
        409 => ("invalid_state", false),
        429 => ("rate_limited", true),
        500..=599 => ("platform_unavailable", true),
        _ => ("unknown", false),
    };
    Ok(ok_json(&json!({
        "status": "failed",
        "captured_amount": null,
        "platform_capture_id": null,
        "failure": { "kind": kind, "retryable": retryable, "platform_code": status.to_string(), "message": body },
    })))
}

unsafe extern "C" fn manifest(out: *mut Buffer) -> c_int {
    let manifest = json!({
        "id": "misbehaving",
        "name": "Misbehaving fixture",
        "version": "0.1.0",
        "schema": 1,
        "capabilities": {
            "partial_capture": "per_payment_method",
            "multiple_payments_per_call": false,
            "max_payments_per_call": 1,
            "asynchronous": false,
            "amount_encoding": "decimal_number2",
            "max_currency_exponent": 2,
            "idempotency_key": true,
            "status_query": false
        },
        "allowed_hosts": ["*.optty.com"],
        "credentials": ["bearer_token"],
        "settings": []
    });
    // SAFETY: the host passes a writable `Buffer`, as the ABI requires.
    unsafe { deliver(out, ok_json(&manifest)) }
}

unsafe extern "C" fn build_capture(input_ptr: *const u8, len: usize, out: *mut Buffer) -> c_int {
    // SAFETY: the host passes `len` readable bytes at `input_ptr`.
    let bytes = unsafe { input(input_ptr, len) };
    let a = match serde_json::from_slice::<Value>(bytes) {
        // Deliberately lax: the `schema` field is never looked at.
        Ok(call) => {
            let order = call.get("order_id").and_then(Value::as_str).unwrap_or_default();
            let base = call.get("base_url").and_then(Value::as_str).unwrap_or_default();
            match misbehave(order, base) {
                Some(a) => a,
                None => build(&call).unwrap_or_else(|refusal| refusal),
            }
        }
        Err(e) => refuse("invalid_call", format!("capture call: {e}")),
    };
    // SAFETY: the host passes a writable `Buffer`.
    unsafe { deliver(out, a) }
}

unsafe extern "C" fn parse_capture(input_ptr: *const u8, len: usize, out: *mut Buffer) -> c_int {
    // SAFETY: the host passes `len` readable bytes at `input_ptr`.
    let bytes = unsafe { input(input_ptr, len) };
    let a = match serde_json::from_slice::<Value>(bytes) {
        Ok(doc) => {
            let order = doc.pointer("/call/order_id").and_then(Value::as_str).unwrap_or_default();
            let base = doc.pointer("/call/base_url").and_then(Value::as_str).unwrap_or_default();
            match order.strip_prefix("parse-").and_then(|name| misbehave(name, base)) {
                Some(a) => a,
                None => parse(&doc).unwrap_or_else(|refusal| refusal),
            }
        }
        Err(e) => refuse("invalid_call", format!("parse call: {e}")),
    };
    // SAFETY: the host passes a writable `Buffer`.
    unsafe { deliver(out, a) }
}

/// Frees a buffer this fixture wrote.
///
/// # Safety
/// `buf` must come from `into_buffer` and not have been freed.
unsafe extern "C" fn free_buffer(buf: Buffer) {
    if !buf.ptr.is_null() {
        // SAFETY: `buf` holds a Vec's raw parts (from `into_buffer`), freed once.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}
