//! Golden fixtures: `plugins/wix/fixtures/*.json`, each a pair the connector must reproduce
//! exactly, with no network:
//!
//! - `{"call": CaptureCall, "request": HttpRequest}`: `build_capture(call) == request`;
//! - `{"call": CaptureCall, "response": HttpResponse, "result": CaptureResult}`:
//!   `parse_capture(call, response) == result`;
//! - `{"status": StatusCall, "request": HttpRequest}` and
//!   `{"status": StatusCall, "response": HttpResponse, "result": CaptureResult}`: the same for the
//!   status query.
//!
//! `parse-seed-sample-pending.json` carries the Wix page's sample answer verbatim.

use std::path::{Path, PathBuf};

use capture_connector_api::{CaptureCall, CaptureResult, Connector, HttpRequest, HttpResponse, StatusCall};
use capture_plugin_wix::Wix;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    call: Option<CaptureCall>,
    status: Option<StatusCall>,
    request: Option<HttpRequest>,
    response: Option<HttpResponse>,
    result: Option<CaptureResult>,
}

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

/// Checks one fixture; returns which function it exercised.
fn check(path: &Path) -> &'static str {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f: Fixture = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.display();
    match (f.call, f.status, f.request, f.response, f.result) {
        (Some(call), None, Some(request), None, None) => {
            let built = Wix.build_capture(&call).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(built, request, "{name}");
            "build_capture"
        }
        (Some(call), None, None, Some(response), Some(result)) => {
            let parsed = Wix.parse_capture(&call, &response).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed, result, "{name}");
            "parse_capture"
        }
        (None, Some(status), Some(request), None, None) => {
            let built = Wix.build_status(&status).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(built, request, "{name}");
            "build_status"
        }
        (None, Some(status), None, Some(response), Some(result)) => {
            let parsed = Wix.parse_status(&status, &response).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed, result, "{name}");
            "parse_status"
        }
        _ => panic!("{name}: not one of the four fixture shapes"),
    }
}

#[test]
fn every_fixture_matches() {
    let files = fixtures();
    let kinds: Vec<&str> = files.iter().map(|p| check(p)).collect();
    for kind in ["build_capture", "parse_capture", "build_status", "parse_status"] {
        assert!(kinds.contains(&kind), "no fixture exercises {kind}");
    }
    assert!(files.len() >= 10, "only {} fixtures", files.len());
}

#[test]
fn the_seed_sample_is_pending_with_its_capture_id() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/parse-seed-sample-pending.json");
    let text = std::fs::read_to_string(&path).expect("seed fixture");
    // The sample answer is kept verbatim, spaces and all.
    assert!(text.contains(r#"\"amount\": \"1\""#), "the seed's amount text is kept as Wix wrote it");
    assert_eq!(check(&path), "parse_capture");
}
