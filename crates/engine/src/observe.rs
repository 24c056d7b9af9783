//! Watching the engine: an [`Observer`] the engine calls at a few fixed points of every capture
//! (the end of each stage, the end of the capture), and [`Metrics`], an observer that keeps
//! Prometheus counters and histograms and renders them in the text exposition format.
//!
//! The durations here come from the monotonic clock (`std::time::Instant`) and feed only
//! observers: they never reach a report, which stays byte-identical for identical inputs.
//! Observers see names, ids and outcomes, never a credential or a body.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use capture_core::{CaptureReport, FailureKind, Outcome, Stage, StepSource};

/// Called by the engine while it captures. Every method has an empty default.
pub trait Observer: Send + Sync {
    /// A stage of a capture on `platform` finished after `elapsed`.
    fn stage(&self, _platform: &str, _stage: Stage, _elapsed: Duration) {}

    /// A capture finished with this report after `elapsed` (all three stages).
    fn capture(&self, _report: &CaptureReport, _elapsed: Duration) {}
}

/// Histogram bucket upper bounds, in microseconds (1 ms .. 30 s).
const BUCKETS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];

/// A latency histogram: counts per bucket, the sum in whole microseconds (no float anywhere).
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; BUCKETS_US.len()],
    count: u64,
    sum_us: u128,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let us = d.as_micros();
        for (i, le) in BUCKETS_US.iter().enumerate() {
            if us <= u128::from(*le) {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum_us += us;
    }
}

/// Appends a line.
fn put(out: &mut String, line: String) {
    out.push_str(&line);
    out.push('\n');
}

/// Seconds as Prometheus text from whole microseconds: `1234567` -> `1.234567`.
fn seconds(us: u128) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// A counter's labels: (name, value) pairs in order.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Tables {
    /// (platform, outcome) -> count.
    captures: BTreeMap<(String, String), u64>,
    /// platform -> whole-capture latency.
    capture_latency: BTreeMap<String, Histogram>,
    /// (platform, stage) -> stage latency.
    stage_latency: BTreeMap<(String, &'static str), Histogram>,
    /// platform -> sends after the first (the engine's safe retries).
    retries: BTreeMap<String, u64>,
    /// platform -> rules that failed closed or errored.
    rule_failures: BTreeMap<String, u64>,
    /// platform -> connector plugin errors (a broken contract, an unreadable answer).
    plugin_errors: BTreeMap<String, u64>,
    /// (platform, kind) -> failed outcomes by kind.
    failures: BTreeMap<(String, String), u64>,
    /// Extra counters of the host (HTTP requests by route and status, reloads): name ->
    /// (help, labels -> count).
    extra: BTreeMap<&'static str, (&'static str, BTreeMap<Labels, u64>)>,
}

/// Prometheus metrics of the captures an engine ran. Give it to
/// [`EngineBuilder::observer`](crate::EngineBuilder::observer) and serve [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Metrics {
    tables: Mutex<Tables>,
    in_flight: AtomicI64,
}

/// Counts one capture in flight until dropped ([`Metrics::in_flight`]).
#[derive(Debug)]
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::PreValidate => "pre-validate",
        Stage::Capture => "capture",
        Stage::PostCapture => "post-capture",
    }
}

fn kind_name(kind: FailureKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Escapes a label value for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a capture in flight for as long as the guard lives.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Captures in flight now.
    pub fn in_flight_now(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Adds one to a host counter `name` (e.g. `capture_http_requests_total`) with these labels.
    pub fn count(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) {
        let key = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut t = self.tables();
        *t.extra.entry(name).or_insert_with(|| (help, BTreeMap::new())).1.entry(key).or_default() += 1;
    }

    /// The number of captures recorded for (platform, outcome status), for tests and summaries.
    pub fn captures(&self, platform: &str, outcome: &str) -> u64 {
        self.tables().captures.get(&(platform.to_owned(), outcome.to_owned())).copied().unwrap_or(0)
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let t = self.tables();
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, rows: Vec<(String, u64)>| {
            put(out, format!("# HELP {name} {help}\n# TYPE {name} counter"));
            for (labels, v) in rows {
                put(out, format!("{name}{{{labels}}} {v}"));
            }
        };
        counter(
            &mut out,
            "capture_captures_total",
            "Captures finished, by platform and outcome.",
            t.captures
                .iter()
                .map(|((p, o), v)| (format!("platform=\"{}\",outcome=\"{}\"", label(p), label(o)), *v))
                .collect(),
        );
        counter(
            &mut out,
            "capture_failures_total",
            "Failed captures, by platform and failure kind.",
            t.failures
                .iter()
                .map(|((p, k), v)| (format!("platform=\"{}\",kind=\"{}\"", label(p), label(k)), *v))
                .collect(),
        );
        let per_platform = |m: &BTreeMap<String, u64>| -> Vec<(String, u64)> {
            m.iter().map(|(p, v)| (format!("platform=\"{}\"", label(p)), *v)).collect()
        };
        counter(
            &mut out,
            "capture_ledger_retries_total",
            "Sends of an attempt after its first (safe retries: 429 after the reset hint, connection refused, deduplicated 5xx).",
            per_platform(&t.retries),
        );
        counter(
            &mut out,
            "capture_rule_failures_total",
            "Merchant rules that failed (failed closed in pre-validate, errored in post-capture).",
            per_platform(&t.rule_failures),
        );
        counter(
            &mut out,
            "capture_plugin_errors_total",
            "Connector plugin errors (a broken contract, an answer it could not read).",
            per_platform(&t.plugin_errors),
        );
        put(
            &mut out,
            format!(
                "# HELP capture_in_flight Captures running now.\n# TYPE capture_in_flight gauge\ncapture_in_flight {}",
                self.in_flight_now()
            ),
        );
        let histogram = |out: &mut String, name: &str, help: &str, rows: Vec<(String, &Histogram)>| {
            put(out, format!("# HELP {name} {help}\n# TYPE {name} histogram"));
            for (labels, h) in rows {
                for (le, n) in BUCKETS_US.iter().zip(h.buckets.iter()) {
                    put(out, format!("{name}_bucket{{{labels},le=\"{}\"}} {n}", seconds(u128::from(*le))));
                }
                put(out, format!("{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count));
                put(out, format!("{name}_sum{{{labels}}} {}", seconds(h.sum_us)));
                put(out, format!("{name}_count{{{labels}}} {}", h.count));
            }
        };
        histogram(
            &mut out,
            "capture_duration_seconds",
            "Latency of a whole capture (three stages), by platform.",
            t.capture_latency.iter().map(|(p, h)| (format!("platform=\"{}\"", label(p)), h)).collect(),
        );
        histogram(
            &mut out,
            "capture_stage_duration_seconds",
            "Latency of one stage of a capture, by platform and stage.",
            t.stage_latency
                .iter()
                .map(|((p, s), h)| (format!("platform=\"{}\",stage=\"{s}\"", label(p)), h))
                .collect(),
        );
        for (name, (help, rows)) in &t.extra {
            counter(
                &mut out,
                name,
                help,
                rows.iter()
                    .map(|(labels, v)| {
                        let text: Vec<String> =
                            labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
                        (text.join(","), *v)
                    })
                    .collect(),
            );
        }
        out
    }
}

impl Observer for Metrics {
    fn stage(&self, platform: &str, stage: Stage, elapsed: Duration) {
        self.tables()
            .stage_latency
            .entry((platform.to_owned(), stage_name(stage)))
            .or_default()
            .observe(elapsed);
    }

    fn capture(&self, report: &CaptureReport, elapsed: Duration) {
        let p = report.platform.clone();
        let mut t = self.tables();
        *t.captures.entry((p.clone(), report.outcome.status().to_owned())).or_default() += 1;
        if let Outcome::Failed { kind, .. } = &report.outcome {
            *t.failures.entry((p.clone(), kind_name(*kind))).or_default() += 1;
        }
        t.capture_latency.entry(p.clone()).or_default().observe(elapsed);
        let retries = report.steps.iter().filter(|s| s.name == "retry").count() as u64;
        let rule_failures = report
            .steps
            .iter()
            .filter(|s| {
                s.source == StepSource::Rule
                    && (s.verdict == "error"
                        || s.detail.as_deref().is_some_and(|d| d.starts_with("failed closed")))
            })
            .count() as u64;
        let plugin_errors =
            report.steps.iter().filter(|s| s.source == StepSource::Connector && s.verdict == "error").count()
                as u64;
        *t.retries.entry(p.clone()).or_default() += retries;
        *t.rule_failures.entry(p.clone()).or_default() += rule_failures;
        *t.plugin_errors.entry(p).or_default() += plugin_errors;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact_decimal_text() {
        assert_eq!(seconds(0), "0.000000");
        assert_eq!(seconds(1_234_567), "1.234567");
        assert_eq!(seconds(30_000_000), "30.000000");
    }

    #[test]
    fn histograms_are_cumulative_and_render_in_the_text_format() {
        let m = Metrics::new();
        m.stage("optty", Stage::Capture, Duration::from_millis(3));
        m.stage("optty", Stage::Capture, Duration::from_millis(40));
        m.count("capture_http_requests_total", "HTTP requests.", &[("route", "/healthz"), ("status", "200")]);
        let text = m.render();
        assert!(
            text.contains(
                r#"capture_stage_duration_seconds_bucket{platform="optty",stage="capture",le="0.002500"} 0"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"capture_stage_duration_seconds_bucket{platform="optty",stage="capture",le="0.005000"} 1"#
        ));
        assert!(text.contains(
            r#"capture_stage_duration_seconds_bucket{platform="optty",stage="capture",le="0.050000"} 2"#
        ));
        assert!(text.contains(
            r#"capture_stage_duration_seconds_bucket{platform="optty",stage="capture",le="+Inf"} 2"#
        ));
        assert!(
            text.contains(r#"capture_stage_duration_seconds_sum{platform="optty",stage="capture"} 0.043000"#)
        );
        assert!(text.contains(r#"capture_http_requests_total{route="/healthz",status="200"} 1"#));
        let guard = m.in_flight();
        assert!(m.render().contains("capture_in_flight 1"));
        drop(guard);
        assert!(m.render().contains("capture_in_flight 0"));
    }
}
