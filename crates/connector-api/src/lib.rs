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
//! # The ABI (version 1.1)
//! - **Entry symbol.** The library exports `capture_connector_entry` ([`abi::ENTRY_SYMBOL`]), an
//!   `extern "C"` function with no arguments returning `*const ConnectorDescriptor` to static data.
//! - **Descriptor.** [`abi::ConnectorDescriptor`] is `#[repr(C)]`: a [`abi::DescriptorHeader`]
//!   (`magic` = `"CAPT"`, `struct_size`, `abi_major`, `abi_minor`), then nullable function
//!   pointers `manifest`, `build_capture`, `parse_capture`, `free_buffer` (1.0), then
//!   `build_status`, `parse_status` (1.1). Later minors only append fields.
//! - **Versions.** The host checks the header before anything else: the magic must match and
//!   `abi_major` must equal the host's; a newer minor than the host's is refused; an older minor is
//!   loaded and the host reads only the fields that `struct_size` covers. `struct_size` must be at
//!   least the 1.0 size.
//! - **Calls.** `build_capture` and `parse_capture` take a UTF-8 JSON message (pointer and length,
//!   owned by the host, valid for the call) and write a [`abi::Buffer`] owned by the plugin. The
//!   return status is [`abi::STATUS_OK`] (result JSON), [`abi::STATUS_ERROR`] (a
//!   [`ConnectorError`] as JSON) or [`abi::STATUS_PANIC`] (the panic message as text). The host
//!   gives every written buffer back to the same plugin's `free_buffer`, exactly once.
//! - **Messages.** JSON, schema [`SCHEMA_VERSION`]: [`CaptureCall`] → [`HttpRequest`];
//!   [`ParseCall`] → [`CaptureResult`]; [`StatusCall`] → [`HttpRequest`];
//!   [`StatusParseCall`] → [`CaptureResult`]; `manifest` → [`Manifest`]. Amounts are decimal
//!   strings.
//! - **Secrets.** The plugin never sees a credential: a [`Header`] names one in `secret`, and the
//!   host appends its value when sending and records `[REDACTED]`.
//! - **Threads.** Every function may be called from many threads at once.
//! - **Panics.** The SDK wraps every exported body in `catch_unwind`. A plugin built with
//!   `panic = "abort"` takes the host process down with it: build plugins with `panic = "unwind"`.
//! - **Lifetime.** The host never unloads a library.
#![warn(missing_docs)]

pub mod abi;
mod messages;
mod sdk;

pub use messages::{
    AmountEncoding, CallPayment, CallShipping, Capabilities, CaptureCall, CaptureResult, ConnectorError,
    Failure, Header, HttpRequest, HttpResponse, Manifest, ParseCall, PartialCapture, ResultStatus,
    SCHEMA_VERSION, StatusCall, StatusParseCall,
};
#[doc(hidden)]
pub use sdk::__private;
pub use sdk::Connector;
