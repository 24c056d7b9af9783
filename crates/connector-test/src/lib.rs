//! A test harness for connector authors: runs a connector's golden fixtures and robustness checks
//! under `cargo test`, in process (no shared library, no engine), calling the `Connector` trait
//! directly. `capture plugins verify` runs the same fixtures through the C ABI and more checks;
//! this is the fast loop while writing the connector.
//!
//! ```text
//! // tests/conformance.rs of a connector crate whose connector is `MyConnector`
//! #[test]
//! fn golden_fixtures_and_robustness() {
//!     capture_connector_test::assert_conforms(&my_connector::MyConnector, concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
//! }
//! ```
//!
//! Fixture files are the same JSON the conformance kit reads (plugins/README.md, "The
//! conformance kit"): `{"call", "request"}`, `{"call", "error"}`, `{"call", "response",
//! "result"}`, and the `status` forms.

use std::path::Path;

use capture_connector_api::{
    CaptureCall, CaptureResult, Connector, ConnectorError, HttpRequest, HttpResponse, ResultStatus,
    StatusCall,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What went wrong in one fixture or check, naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The fixture file, or the robustness check.
    pub subject: String,
    /// What differs or what is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.what)
    }
}

fn field<T: DeserializeOwned>(doc: &Value, key: &str) -> Result<T, String> {
    let value = doc.get(key).cloned().ok_or_else(|| format!("no `{key}`"))?;
    serde_json::from_value(value).map_err(|e| format!("`{key}` is not a valid message: {e}"))
}

fn keys(doc: &Value) -> Vec<&str> {
    let mut k: Vec<&str> =
        doc.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    k.sort_unstable();
    k
}

/// Where two JSON values differ, as `path: expected X, got Y` (up to 6).
fn diff(expected: &Value, got: &Value) -> String {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
                names.sort();
                names.dedup();
                for n in names {
                    walk(
                        &format!("{path}.{n}"),
                        x.get(n).unwrap_or(&Value::Null),
                        y.get(n).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), p, q, out);
                }
            }
            _ if a != b => {
                out.push(format!("`{}`: expected {a}, got {b}", if path.is_empty() { "." } else { path }))
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", expected, got, &mut out);
    out.truncate(6);
    out.join("; ")
}

fn same<T: serde::Serialize>(expected: Value, got: &T) -> Result<(), String> {
    let got = serde_json::to_value(got).map_err(|e| e.to_string())?;
    if got == expected { Ok(()) } else { Err(diff(&expected, &got)) }
}

fn run_fixture<C: Connector>(connector: &C, doc: &Value) -> Result<(), String> {
    match keys(doc).as_slice() {
        ["call", "request"] => {
            let call: CaptureCall = field(doc, "call")?;
            let built = connector.build_capture(&call).map_err(|e| format!("refused: {e}"))?;
            same(doc["request"].clone(), &built)
        }
        ["call", "error"] => {
            let call: CaptureCall = field(doc, "call")?;
            let expected: ConnectorError = field(doc, "error")?;
            match connector.build_capture(&call) {
                Ok(r) => Err(format!("expected the refusal `{expected}`, got a request to {}", r.url)),
                Err(e) if e.code == expected.code && e.message == expected.message => Ok(()),
                Err(e) => Err(format!("expected the refusal `{expected}`, got `{e}`")),
            }
        }
        ["call", "response", "result"] => {
            let call: CaptureCall = field(doc, "call")?;
            let response: HttpResponse = field(doc, "response")?;
            let got = connector.parse_capture(&call, &response).map_err(|e| format!("refused: {e}"))?;
            same(doc["result"].clone(), &got)
        }
        ["request", "status"] => {
            let status: StatusCall = field(doc, "status")?;
            let built = connector.build_status(&status).map_err(|e| format!("refused: {e}"))?;
            same(doc["request"].clone(), &built)
        }
        ["error", "status"] => {
            let status: StatusCall = field(doc, "status")?;
            let expected: ConnectorError = field(doc, "error")?;
            match connector.build_status(&status) {
                Ok(r) => Err(format!("expected the refusal `{expected}`, got a request to {}", r.url)),
                Err(e) if e.code == expected.code && e.message == expected.message => Ok(()),
                Err(e) => Err(format!("expected the refusal `{expected}`, got `{e}`")),
            }
        }
        ["response", "result", "status"] => {
            let status: StatusCall = field(doc, "status")?;
            let response: HttpResponse = field(doc, "response")?;
            let got = connector.parse_status(&status, &response).map_err(|e| format!("refused: {e}"))?;
            same(doc["result"].clone(), &got)
        }
        other => Err(format!("keys {other:?} are not one of the fixture shapes (plugins/README.md)")),
    }
}

/// Runs every `*.json` fixture of `dir`; returns how many held, or every problem.
pub fn golden<C: Connector>(connector: &C, dir: impl AsRef<Path>) -> Result<usize, Vec<Problem>> {
    let dir = dir.as_ref();
    let problem = |subject: &str, what: String| Problem { subject: subject.to_owned(), what };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![problem(&dir.display().to_string(), format!("cannot read the fixtures folder: {e}"))]
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(vec![problem(&dir.display().to_string(), "no *.json fixture".to_owned())]);
    }
    let mut problems = Vec::new();
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let result = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Value>(&text).map_err(|e| format!("not JSON: {e}")))
            .and_then(|doc| run_fixture(connector, &doc));
        if let Err(what) = result {
            problems.push(problem(&name, what));
        }
    }
    if problems.is_empty() { Ok(files.len()) } else { Err(problems) }
}

/// Unusual platform answers every connector must map to a valid result: never an error, never a
/// capture without a 2xx, never a failure without details.
pub fn odd_answers<C: Connector>(connector: &C, call: &CaptureCall) -> Vec<Problem> {
    let answers: [(u16, &str); 8] = [
        (200, ""),
        (200, "<html>ok</html>"),
        (204, ""),
        (302, ""),
        (418, "I'm a teapot"),
        (500, "{}"),
        (503, "<html>busy</html>"),
        (502, "\u{1}\u{2}binary"),
    ];
    let mut problems = Vec::new();
    for (status, body) in answers {
        let response = HttpResponse { status, headers: vec![], body: body.to_owned() };
        let subject = format!("odd answer {status} {body:?}");
        match connector.parse_capture(call, &response) {
            Err(e) => problems.push(Problem { subject, what: format!("an error instead of a result: {e}") }),
            Ok(CaptureResult { status: ResultStatus::Captured, .. }) if !(200..300).contains(&status) => {
                problems.push(Problem { subject, what: "a capture without a 2xx answer".to_owned() })
            }
            Ok(CaptureResult { status: ResultStatus::Failed, failure: None, .. }) => {
                problems.push(Problem { subject, what: "a failed result without failure details".to_owned() })
            }
            Ok(_) => {}
        }
    }
    problems
}

/// The capture calls of the fixtures (`{"call", ...}`), to run robustness checks with.
fn fixture_calls(dir: &Path) -> Vec<CaptureCall> {
    let mut calls = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Ok(doc) = serde_json::from_str::<Value>(&text)
            && let Ok(call) = field::<CaptureCall>(&doc, "call")
        {
            calls.push(call);
        }
    }
    calls
}

/// Runs the golden fixtures of `dir` and the robustness checks on the fixtures' capture calls;
/// panics with every problem, one per line, so `cargo test` shows what to fix.
pub fn assert_conforms<C: Connector>(connector: &C, dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    let mut problems = match golden(connector, dir) {
        Ok(_) => Vec::new(),
        Err(p) => p,
    };
    let manifest = connector.manifest();
    if manifest.id.is_empty() {
        problems.push(Problem { subject: "manifest".into(), what: "`id` is empty".into() });
    }
    for call in fixture_calls(dir).iter().take(3) {
        problems.extend(odd_answers(connector, call));
        // What it builds must start with the call's base URL (the engine refuses anything else).
        if let Ok(HttpRequest { url, .. }) = connector.build_capture(call)
            && !url.starts_with(&call.base_url)
        {
            problems.push(Problem {
                subject: format!("build_capture for order {}", call.order_id),
                what: format!("the URL {url} does not start with the call's base_url {}", call.base_url),
            });
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    );
}
