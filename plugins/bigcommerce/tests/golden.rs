//! Golden fixtures: `fixtures/*.json` pairs of a call and what the connector must make of it,
//! checked by calling the [`Connector`] directly (no network, no plugin loading).
//!
//! Shapes (every message is the ABI's JSON, so unknown fields are refused):
//! - `{"call": CaptureCall, "request": HttpRequest}`: what `build_capture` builds;
//! - `{"call": CaptureCall, "error": ConnectorError}`: what `build_capture` refuses;
//! - `{"call": CaptureCall, "response": HttpResponse, "result": CaptureResult}`: `parse_capture`;
//! - `{"status": StatusCall, "request": HttpRequest}`: what `build_status` builds;
//! - `{"status": StatusCall, "response": HttpResponse, "result": CaptureResult}`: `parse_status`.

use std::path::{Path, PathBuf};

use capture_connector_api::{
    CaptureCall, CaptureResult, Connector, ConnectorError, HttpRequest, HttpResponse, StatusCall,
};
use capture_plugin_bigcommerce::BigCommerce;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn field<T: DeserializeOwned>(doc: &Value, name: &str, file: &Path) -> T {
    serde_json::from_value(doc[name].clone())
        .unwrap_or_else(|e| panic!("{}: `{name}` is not a valid message: {e}", file.display()))
}

/// Checks one fixture and returns its shape's name.
fn check(file: &Path) -> &'static str {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let keys: Vec<&str> = doc.as_object().expect("a JSON object").keys().map(String::as_str).collect();
    let has = |k: &str| keys.contains(&k);
    let name = file.display();
    match (has("call"), has("status"), has("request"), has("error"), has("response")) {
        (true, false, true, false, false) => {
            let call: CaptureCall = field(&doc, "call", file);
            let built = BigCommerce.build_capture(&call).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(built, field::<HttpRequest>(&doc, "request", file), "{name}");
            "capture request"
        }
        (true, false, false, true, false) => {
            let call: CaptureCall = field(&doc, "call", file);
            let refused = BigCommerce.build_capture(&call).expect_err(&format!("{name}: must be refused"));
            assert_eq!(refused, field::<ConnectorError>(&doc, "error", file), "{name}");
            "capture refusal"
        }
        (true, false, false, false, true) => {
            let call: CaptureCall = field(&doc, "call", file);
            let response: HttpResponse = field(&doc, "response", file);
            let parsed =
                BigCommerce.parse_capture(&call, &response).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed, field::<CaptureResult>(&doc, "result", file), "{name}");
            "capture answer"
        }
        (false, true, true, false, false) => {
            let call: StatusCall = field(&doc, "status", file);
            let built = BigCommerce.build_status(&call).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(built, field::<HttpRequest>(&doc, "request", file), "{name}");
            "status request"
        }
        (false, true, false, false, true) => {
            let call: StatusCall = field(&doc, "status", file);
            let response: HttpResponse = field(&doc, "response", file);
            let parsed = BigCommerce.parse_status(&call, &response).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed, field::<CaptureResult>(&doc, "result", file), "{name}");
            "status answer"
        }
        _ => panic!("{name}: unknown fixture shape with keys {keys:?}"),
    }
}

#[test]
fn every_fixture_holds() {
    let files = fixtures();
    let shapes: Vec<&str> = files.iter().map(|f| check(f)).collect();
    for shape in ["capture request", "capture refusal", "capture answer", "status request", "status answer"] {
        assert!(shapes.contains(&shape), "no fixture of shape `{shape}`");
    }
    assert!(files.len() >= 20, "{} fixtures", files.len());
}

#[test]
fn every_documented_capture_status_has_a_fixture() {
    let names: Vec<String> =
        fixtures().iter().filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    for code in ["201", "400", "404", "422", "502", "503", "504"] {
        assert!(
            names.iter().any(|n| n.starts_with(&format!("capture-{code}-"))),
            "no fixture for capture status {code}"
        );
    }
}
