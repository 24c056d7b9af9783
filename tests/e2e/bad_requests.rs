//! Bad requests get a clear error naming the field, and never reach the platform.

use capture_engine::CaptureError;

use crate::{emulator, engine};

fn request(amount: &str, currency: &str) -> Vec<u8> {
    format!(
        r#"{{"platform":"optty","idempotency_key":"bad-1","amount":{amount},
            "order":{{"id":"ORD-1001","currency":"{currency}","amount":"120.00",
                      "payments":[{{"id":"pay-1001","amount":"120.00"}}]}}}}"#
    )
    .into_bytes()
}

/// (case, request, field named in the error, words the message must contain)
fn cases() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    vec![
        ("malformed JSON", b"{\"platform\": \"optty\",".to_vec(), ".", "EOF"),
        ("negative amount", request("-5.00", "USD"), "amount", "negative"),
        (
            "three decimals for USD",
            request("\"10.005\"", "USD"),
            "amount",
            "3 decimal places but USD allows 2",
        ),
        ("unknown currency", request("10", "ABC"), "order.currency", "unknown currency `ABC`"),
        ("amount as text", request("\"ten\"", "USD"), "amount", "not a decimal"),
        ("unknown platform", other_platform(request("10", "USD")), "platform", "not a configured platform"),
    ]
}

fn other_platform(body: Vec<u8>) -> Vec<u8> {
    String::from_utf8(body).expect("utf8").replace("\"optty\"", "\"shopify\"").into_bytes()
}

#[tokio::test]
async fn bad_requests_name_the_field_and_send_nothing() {
    let emu = emulator().await;
    let engine = engine(&emu);
    for (case, body, field, words) in cases() {
        let err = engine.capture_json(&body).await.expect_err(case);
        let CaptureError::Request(req) = &err else { panic!("{case}: unexpected {err:?}") };
        assert_eq!(req.field(), field, "{case}: {err}");
        assert!(err.to_string().contains(words), "{case}: `{err}` should mention `{words}`");
    }
    assert!(emu.captures("ORD-1001").is_empty(), "no bad request reached the platform");
}

#[tokio::test]
async fn capture_above_the_authorized_amount_is_rejected_before_the_platform() {
    let emu = emulator().await;
    let report = engine(&emu).capture_json(&request("120.01", "USD")).await.expect("well-formed");
    match &report.outcome {
        capture_core::Outcome::Rejected { by, code, reason } => {
            assert_eq!((by.as_str(), code.as_str()), ("builtin:bounds", "amount_exceeds_capturable"));
            assert!(reason.contains("amount 120.01 USD exceeds what is capturable: 120.00 USD"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(report.exchanges.is_empty());
    assert!(emu.captures("ORD-1001").is_empty());
}
