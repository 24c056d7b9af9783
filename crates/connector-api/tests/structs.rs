//! ABI 1.3's struct messages, by generators: any message viewed (or written) as its struct and
//! read back is the same message, whatever its strings hold (empty, control characters, NUL,
//! any Unicode); any bytes in a string field are either read back exactly (UTF-8) or refused
//! naming the field, never a panic.

use capture_connector_api::abi::{RawHttpRequest, Str};
use capture_connector_api::structs::{
    CallView, ResponseView, free_owned, read_call, read_request, read_response, read_result, request_out,
    result_out,
};
use capture_connector_api::{
    CallPayment, CallShipping, CaptureCall, CaptureResult, Failure, FailureKind, Header, HttpRequest,
    HttpResponse, ResultStatus,
};
use proptest::prelude::*;

const CAP: usize = 1 << 20;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[\\x00-\\x1f\\x7f]{0,4}", any::<String>()]
}

fn call() -> impl Strategy<Value = CaptureCall> {
    let payment = (text(), text(), text(), proptest::option::of(text()))
        .prop_map(|(id, amount, authorized, method)| CallPayment { id, amount, authorized, method });
    let shipping =
        proptest::option::of((text(), text(), text()).prop_map(|(company, method, tracking_number)| {
            CallShipping { company, method, tracking_number }
        }));
    (
        (any::<u32>(), text(), proptest::collection::btree_map(text(), text(), 0..4), text(), text()),
        (any::<u32>(), text(), any::<bool>(), text(), text()),
        (proptest::collection::vec(payment, 0..4), text(), proptest::option::of(text()), shipping),
    )
        .prop_map(
            |(
                (schema, base_url, settings, order_id, currency),
                (currency_exponent, amount, full, order_amount, surcharge),
                (payments, idempotency_key, description, shipping),
            )| CaptureCall {
                schema,
                base_url,
                settings,
                order_id,
                currency,
                currency_exponent,
                amount,
                full,
                order_amount,
                surcharge,
                payments,
                idempotency_key,
                description,
                shipping,
            },
        )
}

fn request() -> impl Strategy<Value = HttpRequest> {
    let header = (text(), text(), proptest::option::of(text())).prop_map(|(name, value, secret)| Header {
        name,
        value,
        secret,
    });
    (text(), text(), proptest::collection::vec(header, 0..8), proptest::option::of(text()))
        .prop_map(|(method, url, headers, body)| HttpRequest { method, url, headers, body })
}

fn result() -> impl Strategy<Value = CaptureResult> {
    let status = prop_oneof![
        Just(ResultStatus::Captured),
        Just(ResultStatus::Pending),
        Just(ResultStatus::AlreadyCaptured),
        Just(ResultStatus::Failed),
    ];
    let failure = (
        proptest::sample::select(FailureKind::ALL),
        any::<bool>(),
        proptest::option::of(text()),
        text(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(kind, retryable, platform_code, message, retry_after_ms)| Failure {
            kind,
            retryable,
            platform_code,
            message,
            retry_after_ms,
        });
    (status, proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(failure))
        .prop_map(|(status, captured_amount, platform_capture_id, failure)| CaptureResult {
            status,
            captured_amount,
            platform_capture_id,
            failure,
        })
}

proptest! {
    #[test]
    fn any_call_viewed_and_read_back_is_the_same_call(c in call()) {
        let view = CallView::new(&c);
        // SAFETY: the struct points into `c` and `view`, both alive.
        let back = unsafe { read_call(&view.raw(), CAP) };
        prop_assert_eq!(back, Ok(c));
    }

    #[test]
    fn any_request_written_and_read_back_is_the_same_request(r in request()) {
        let raw = request_out(r.clone());
        // SAFETY: written by `request_out`, read, then freed once.
        let back = unsafe { read_request(&raw, 64, CAP) };
        // SAFETY: as above.
        unsafe { free_owned(raw.owner) };
        prop_assert_eq!(back, Ok(r));
    }

    #[test]
    fn any_result_written_and_read_back_is_the_same_result(r in result()) {
        let raw = result_out(r.clone());
        // SAFETY: written by `result_out`, read, then freed once.
        let back = unsafe { read_result(&raw, CAP) };
        // SAFETY: as above.
        unsafe { free_owned(raw.owner) };
        prop_assert_eq!(back, Ok(r));
    }

    #[test]
    fn any_response_viewed_and_read_back_is_the_same_response(
        status in any::<u16>(),
        headers in proptest::collection::vec((text(), text()), 0..6),
        body in text(),
    ) {
        let response = HttpResponse { status, headers, body };
        let view = ResponseView::new(&response);
        // SAFETY: the struct points into `response` and `view`.
        let back = unsafe { read_response(&view.raw(), CAP) };
        prop_assert_eq!(back, Ok(response));
    }

    #[test]
    fn any_bytes_in_a_string_field_are_read_exactly_or_refused_naming_it(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        cap in 0usize..96,
    ) {
        let mut raw = RawHttpRequest::empty();
        raw.method = Str::of("POST");
        raw.url = Str { ptr: bytes.as_ptr(), len: bytes.len() };
        // SAFETY: every pointer is valid for its length.
        let got = unsafe { read_request(&raw, 64, cap) };
        match (std::str::from_utf8(&bytes), got) {
            (Ok(text), Ok(r)) => {
                prop_assert!(bytes.len() + 4 <= cap, "{} bytes read within a cap of {}", bytes.len() + 4, cap);
                prop_assert_eq!(r.url, text);
            }
            (_, Err(e)) => prop_assert!(e.starts_with("url: ") || e.starts_with("method: "), "{}", e),
            (Err(_), Ok(r)) => prop_assert!(false, "non-UTF-8 bytes read as {:?}", r.url),
        }
    }
}
