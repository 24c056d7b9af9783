//! The capture report: everything a run did, in order, byte-identical for identical inputs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decision::Decision;
use crate::money::Money;
use crate::outcome::Outcome;
use crate::time::Timestamp;

/// Version of the report's JSON shape.
pub const REPORT_SCHEMA: &str = "capture-report/1";

/// A pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Checks before anything is sent.
    PreValidate,
    /// Reserving, calling the platform, reading its answer.
    Capture,
    /// Observers of the outcome.
    PostCapture,
}

/// Who ran a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepSource {
    /// A check built into the engine.
    Builtin,
    /// A host hook written in Rust.
    Hook,
    /// A merchant rule written in Lua.
    Rule,
    /// The connector plugin.
    Connector,
    /// The engine's HTTP transport.
    Transport,
}

impl StepSource {
    /// The name as the report writes it (`builtin`, `hook`, `rule`, `connector`, `transport`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepSource::Builtin => "builtin",
            StepSource::Hook => "hook",
            StepSource::Rule => "rule",
            StepSource::Connector => "connector",
            StepSource::Transport => "transport",
        }
    }
}

/// One line of the report: one check, hook, rule or call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Step {
    /// The stage it ran in.
    pub stage: Stage,
    /// Who ran it.
    pub source: StepSource,
    /// Its name (`bounds`, the hook's name, the rule's name, `optty.build_capture`).
    pub name: String,
    /// Its version (a rule's content hash, a connector's version), if it has one.
    pub version: Option<String>,
    /// What it decided (pre-validate), or `ok` / `error` / `observed`.
    pub verdict: String,
    /// The decision, for pre-validate steps that decided something other than allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Human-readable detail.
    pub detail: Option<String>,
}

/// A header as recorded: secrets replaced by `[REDACTED]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordedHeader {
    /// Header name.
    pub name: String,
    /// Header value, redacted where it carried a credential.
    pub value: String,
}

/// The HTTP request as sent (redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers in the order sent.
    pub headers: Vec<RecordedHeader>,
    /// Body text exactly as sent.
    pub body: Option<String>,
}

/// The HTTP response as received (status and body; volatile headers such as Date are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordedResponse {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub body: String,
}

/// One HTTP exchange with the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Exchange {
    /// What was sent.
    pub request: RecordedRequest,
    /// What came back, if anything did.
    pub response: Option<RecordedResponse>,
}

/// The connector that handled the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConnectorRef {
    /// Connector id (`optty`).
    pub id: String,
    /// Connector version from its manifest.
    pub version: String,
}

/// The report of one capture run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CaptureReport {
    /// Report schema version.
    pub schema: &'static str,
    /// The engine's id for this capture (from the injected id generator).
    pub capture_id: String,
    /// When the run started (from the injected clock).
    pub started_at: Timestamp,
    /// Platform.
    pub platform: String,
    /// Order id.
    pub order_id: String,
    /// The caller's idempotency key.
    pub idempotency_key: String,
    /// What was asked: `"full"` or an amount.
    pub requested: Requested,
    /// The amount the pipeline settled on (after rules), if it got that far.
    pub amount: Option<Money>,
    /// Version (content hash) of the rule set that ran.
    pub rules_version: Option<String>,
    /// The connector, if one was used.
    pub connector: Option<ConnectorRef>,
    /// Every step in order.
    pub steps: Vec<Step>,
    /// HTTP exchanges with the platform, in order.
    pub exchanges: Vec<Exchange>,
    /// What happened.
    pub outcome: Outcome,
    /// Tags added by post-capture rules and hooks, sorted, unique.
    pub tags: Vec<String>,
    /// Notes added by rules and hooks, in order.
    pub notes: Vec<String>,
    /// Follow-up actions suggested by post-capture rules (e.g. `void_remaining`), with arguments.
    pub follow_ups: Vec<BTreeMap<String, String>>,
    /// What the host must look at although the capture went through (`amount_mismatch`: the
    /// platform reports another amount than the one asked for). Absent when there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Anomaly>,
}

/// Something about an outcome that the host must look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Anomaly {
    /// A stable code: `amount_mismatch`.
    pub code: String,
    /// What was seen, naming both figures.
    pub detail: String,
}

/// The requested amount as shown in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Requested {
    /// `"full"`.
    Full(FullMarker),
    /// An exact amount.
    Exact(Money),
}

/// Serializes as the string `"full"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullMarker;

#[cfg(feature = "schema")]
impl schemars::JsonSchema for FullMarker {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Full".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"const": "full", "description": "everything still capturable"})
    }
}

/// The JSON Schema of a capture report (`CaptureReport::to_json`).
#[cfg(feature = "schema")]
pub fn report_schema() -> schemars::Schema {
    schemars::schema_for!(CaptureReport)
}

/// The JSON Schema of a status report (`capture status`).
#[cfg(feature = "schema")]
pub fn status_report_schema() -> schemars::Schema {
    schemars::schema_for!(StatusReport)
}

impl Serialize for FullMarker {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("full")
    }
}

impl CaptureReport {
    /// The report as pretty JSON with a trailing newline: the canonical byte form.
    pub fn to_json(&self) -> String {
        // Serializing plain data structs to a String cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    }
}

/// Version of the status report's JSON shape.
pub const STATUS_SCHEMA: &str = "capture-status/1";

/// The report of one status query: what the platform says of an order's captures now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StatusReport {
    /// Status report schema version.
    pub schema: &'static str,
    /// Platform.
    pub platform: String,
    /// Order id.
    pub order_id: String,
    /// When the platform was asked (from the injected clock).
    pub checked_at: Timestamp,
    /// The connector that asked.
    pub connector: ConnectorRef,
    /// Every step in order.
    pub steps: Vec<Step>,
    /// The HTTP exchange(s).
    pub exchanges: Vec<Exchange>,
    /// What the platform says: captured (with the amount), pending, or failed.
    pub outcome: Outcome,
}

impl StatusReport {
    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod step_source_names {
    use super::StepSource;

    #[test]
    fn as_str_is_the_name_the_report_writes() {
        for s in [
            StepSource::Builtin,
            StepSource::Hook,
            StepSource::Rule,
            StepSource::Connector,
            StepSource::Transport,
        ] {
            assert_eq!(serde_json::to_string(&s).expect("serializes"), format!("\"{}\"", s.as_str()));
        }
    }
}
