//! Every control-API call documented in crates/sandbox/README.md works as written: this starts
//! `capture sandbox --platform all --port 0`, runs each `sh` block of the README in order (with
//! `sh -e`, the emulators' URLs in `$OPTTY`, `$BIGCOMMERCE`, `$MEDUSA`, `$WIX`), and compares the
//! output of every block followed by a `json` block with that block, as JSON values.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Kills the sandbox when the test ends, however it ends.
struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.0.kill().is_ok() {
            // Reap it; its exit status after a kill says nothing.
            let status = self.0.wait();
            assert!(status.is_ok() || std::thread::panicking(), "waiting for the sandbox: {status:?}");
        }
    }
}

/// The fenced blocks of a Markdown text: (language, body).
fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(lang)) => current = Some((lang.trim().to_owned(), String::new())),
            (Some(_), Some("")) => out.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// Starts the four emulators and returns them with their base URLs, by platform.
fn start() -> (Sandbox, Vec<(String, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capture"))
        .args(["sandbox", "--platform", "all", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start capture sandbox");
    let stdout = child.stdout.take().expect("piped stdout");
    let sandbox = Sandbox(child);
    let mut urls = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the sandbox's output");
        if line.starts_with("ready") {
            return (sandbox, urls);
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [name, url, ..] = fields.as_slice()
            && url.starts_with("http://")
        {
            urls.push((name.to_ascii_uppercase(), (*url).to_owned()));
        }
    }
    panic!("capture sandbox ended before printing `ready`; URLs so far: {urls:?}");
}

/// Every JSON value in `text` (several curl outputs may follow each other).
fn values(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"))
}

#[test]
fn every_documented_control_api_call_works_as_written() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox/README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("read crates/sandbox/README.md");
    let (_sandbox, urls) = start();
    let names: Vec<&str> = urls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["OPTTY", "BIGCOMMERCE", "MEDUSA", "WIX"], "the sandbox's output");

    let blocks = blocks(&readme);
    let mut ran = 0;
    let mut compared = 0;
    for (i, (lang, script)) in blocks.iter().enumerate() {
        if lang != "sh" {
            continue;
        }
        let out = Command::new("sh")
            .arg("-e")
            .arg("-c")
            .arg(script)
            .envs(urls.iter().map(|(n, u)| (n.as_str(), u.as_str())))
            .output()
            .expect("run sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README block failed ({}):\n{script}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
        if let Some((next, expected)) = blocks.get(i + 1)
            && next == "json"
        {
            let got = values(&stdout);
            let want = values(expected);
            assert_eq!(
                got, want,
                "README block:\n{script}\nprinted:\n{stdout}\nbut the README shows:\n{expected}"
            );
            compared += 1;
        }
    }
    // The README documents at least: reset, a capture, four books, an order, the request log,
    // four platforms' faults, the queue, a refusal, clearing: keep this in step when it grows.
    assert!(ran >= 15 && compared >= 12, "only {ran} sh blocks ran and {compared} outputs were compared");
}
