//! The JSON Schemas of the formats the engine reads and writes and the plugins exchange, derived from the
//! Rust types with schemars, and a field reference (Markdown) made from each.
//!
//! The checked-in copies are `schemas/*.schema.json` and `reference/*.md` beside this crate;
//! `cargo test -p capture-schemas` fails when a type changed and they were not regenerated.
//! Regenerate with:
//!
//! ```text
//! UPDATE_SCHEMAS=1 cargo test -p capture-schemas
//! ```

use capture_connector_api::{
    CaptureCall, CaptureResult, ConnectorError, HttpRequest, HttpResponse, Manifest, ParseCall, StatusCall,
    StatusParseCall,
};
use serde_json::Value;

/// Every format: (file stem, what it is, its schema).
pub fn all() -> Vec<(&'static str, &'static str, Value)> {
    let v = |s: schemars::Schema| s.to_value();
    vec![
        (
            "capture-request",
            "the capture request a host sends (`capture run REQUEST.json`, `Engine::capture_json`)",
            v(capture_core::request::request_schema()),
        ),
        (
            "config",
            "the engine's configuration file (`capture.toml`, in TOML; `EngineConfig::load`)",
            v(capture_engine::config_schema()),
        ),
        (
            "capture-report",
            "the capture report (`capture run`'s standard output, `CaptureReport::to_json`)",
            v(capture_core::report::report_schema()),
        ),
        (
            "status-report",
            "the status report (`capture status`'s standard output)",
            v(capture_core::report::status_report_schema()),
        ),
        (
            "manifest",
            "plugin to host: what a connector declares (`manifest()`)",
            v(schemars::schema_for!(Manifest)),
        ),
        (
            "capture-call",
            "host to plugin: build the capture request for this call (`build_capture`)",
            v(schemars::schema_for!(CaptureCall)),
        ),
        (
            "http-request",
            "plugin to host: the HTTP request to send (`build_capture`, `build_status`)",
            v(schemars::schema_for!(HttpRequest)),
        ),
        (
            "http-response",
            "the platform's HTTP answer, as the host hands it to the plugin",
            v(schemars::schema_for!(HttpResponse)),
        ),
        (
            "parse-call",
            "host to plugin: read this answer to that call (`parse_capture`)",
            v(schemars::schema_for!(ParseCall)),
        ),
        (
            "status-call",
            "host to plugin: build the status query (`build_status`)",
            v(schemars::schema_for!(StatusCall)),
        ),
        (
            "status-parse-call",
            "host to plugin: read the status answer (`parse_status`)",
            v(schemars::schema_for!(StatusParseCall)),
        ),
        (
            "capture-result",
            "plugin to host: the canonical result (`parse_capture`, `parse_status`)",
            v(schemars::schema_for!(CaptureResult)),
        ),
        (
            "connector-error",
            "plugin to host: a refusal (error status)",
            v(schemars::schema_for!(ConnectorError)),
        ),
    ]
}

/// A short type name for a property schema.
fn type_of(p: &Value) -> String {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_ascii_lowercase());
    }
    if let Some(c) = p.get("const") {
        return format!("`{c}`");
    }
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        return values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(" \\| ");
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = p.get(key).and_then(Value::as_array) {
            return list.iter().map(type_of).collect::<Vec<_>>().join(" or ");
        }
    }
    match p.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!("array of {}", p.get("items").map(type_of).unwrap_or_else(|| "values".into()))
        }
        Some(Value::String(t))
            if t == "object" && p.get("additionalProperties").is_some_and(Value::is_object) =>
        {
            format!("map of {}", p.get("additionalProperties").map(type_of).unwrap_or_default())
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        _ => "any".into(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

/// The table of one object schema's fields.
fn table(out: &mut String, title: &str, s: &Value) {
    out.push_str(&format!("\n## {title}\n\n"));
    if let Some(d) = s.get("description").and_then(Value::as_str) {
        out.push_str(&format!("{}\n\n", one_line(d)));
    }
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        out.push_str(&format!("Type: {}.\n", type_of(s)));
        return;
    };
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
    for (name, p) in props {
        let req = if required.contains(&name.as_str()) { "yes" } else { "no" };
        let desc = p.get("description").and_then(Value::as_str).map(one_line).unwrap_or_default();
        out.push_str(&format!("| `{name}` | {} | {req} | {desc} |\n", type_of(p)));
    }
    if s.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push_str("\nUnknown fields are refused.\n");
    }
}

/// The Markdown field reference of one schema: the root object, then every definition.
pub fn reference(stem: &str, what: &str, schema: &Value) -> String {
    let title = schema.get("title").and_then(Value::as_str).unwrap_or(stem);
    let mut out = format!(
        "# {title}\n\n{what}. Generated from the Rust types with `UPDATE_SCHEMAS=1 cargo test -p capture-schemas`; the\nschema is [`../schemas/{stem}.schema.json`](../schemas/{stem}.schema.json).\n"
    );
    table(&mut out, title, schema);
    if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
        for (name, def) in defs {
            table(&mut out, name, def);
        }
    }
    out
}
