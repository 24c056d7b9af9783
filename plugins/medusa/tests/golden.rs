//! Golden fixtures: `fixtures/*.json`, each one exchange the connector must reproduce exactly,
//! checked by calling the [`Connector`] directly (no network, no plugin loading).
//!
//! A fixture holds one of:
//! - `{"call": CaptureCall, "request": HttpRequest}`: `build_capture` builds exactly that request;
//! - `{"call": CaptureCall, "error": ConnectorError}`: `build_capture` refuses with that error;
//! - `{"call": CaptureCall, "response": HttpResponse, "result": CaptureResult}`: `parse_capture`;
//! - `{"status": StatusCall, "request": HttpRequest}`: `build_status`;
//! - `{"status": StatusCall, "response": HttpResponse, "result": CaptureResult}`: `parse_status`.

use std::path::{Path, PathBuf};

use capture_connector_api::{
    CaptureCall, CaptureResult, Connector, ConnectorError, HttpRequest, HttpResponse, StatusCall,
};
use capture_plugin_medusa::Medusa;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn field<T: DeserializeOwned>(fixture: &Value, key: &str, file: &Path) -> T {
    let value = fixture.get(key).unwrap_or_else(|| panic!("{}: no `{key}`", file.display()));
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{}: `{key}`: {e}", file.display()))
}

/// Which function a fixture exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    BuildCapture,
    RefuseCapture,
    ParseCapture,
    BuildStatus,
    ParseStatus,
}

fn check(file: &Path) -> Kind {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let has = |k: &str| fixture.get(k).is_some();
    let connector = Medusa;
    let (kind, actual, expected) = if has("call") {
        let call: CaptureCall = field(&fixture, "call", file);
        if has("response") {
            let response: HttpResponse = field(&fixture, "response", file);
            let result: CaptureResult = field(&fixture, "result", file);
            let got = connector
                .parse_capture(&call, &response)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (Kind::ParseCapture, serde_json::to_value(got), serde_json::to_value(result))
        } else if has("error") {
            let error: ConnectorError = field(&fixture, "error", file);
            let got = match connector.build_capture(&call) {
                Ok(request) => panic!("{}: expected a refusal, built {request:?}", file.display()),
                Err(e) => e,
            };
            (Kind::RefuseCapture, serde_json::to_value(got), serde_json::to_value(error))
        } else {
            let request: HttpRequest = field(&fixture, "request", file);
            let got = connector.build_capture(&call).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (Kind::BuildCapture, serde_json::to_value(got), serde_json::to_value(request))
        }
    } else {
        let call: StatusCall = field(&fixture, "status", file);
        if has("response") {
            let response: HttpResponse = field(&fixture, "response", file);
            let result: CaptureResult = field(&fixture, "result", file);
            let got = connector
                .parse_status(&call, &response)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (Kind::ParseStatus, serde_json::to_value(got), serde_json::to_value(result))
        } else {
            let request: HttpRequest = field(&fixture, "request", file);
            let got = connector.build_status(&call).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (Kind::BuildStatus, serde_json::to_value(got), serde_json::to_value(request))
        }
    };
    let (actual, expected) = (actual.expect("serializes"), expected.expect("serializes"));
    assert_eq!(
        actual,
        expected,
        "{}: the connector's output differs from the fixture\n got: {}\nwant: {}",
        file.display(),
        actual,
        expected
    );
    kind
}

#[test]
fn every_fixture_matches_the_connector() {
    let files = fixtures();
    let mut kinds: Vec<Kind> = files.iter().map(|f| check(f)).collect();
    assert!(files.len() >= 20, "expected the full fixture set, found {}", files.len());
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [Kind::BuildCapture, Kind::RefuseCapture, Kind::ParseCapture, Kind::BuildStatus, Kind::ParseStatus],
        "every kind of fixture is present"
    );
}

#[test]
fn fixtures_cover_every_documented_status_code() {
    let mut statuses: Vec<u16> = fixtures()
        .iter()
        .filter_map(|f| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(f).ok()?).ok()?;
            v.get("call")?;
            u16::try_from(v.get("response")?.get("status")?.as_u64()?).ok()
        })
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    assert_eq!(statuses, [200, 400, 401, 404, 409, 422, 429, 500, 503]);
}
