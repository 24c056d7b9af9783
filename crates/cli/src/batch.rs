//! `capture batch`: every request of an NDJSON file through one engine, `--concurrency` at once,
//! each platform within its rate budget (`rate = { per_second, burst }` in its `[platforms.*]`
//! table: a token bucket shared by the whole batch, paused by a platform's 429 reset hint).
//!
//! Reports go to `--out` (or standard output) as NDJSON, one per line in the order they finish; a
//! line that is not a valid request gives `{"line": N, "error": {...}}` instead. Progress goes to
//! standard error: a bar (indicatif) on a terminal, a plain line every two seconds otherwise. A summary ends
//! the run: outcomes by platform, captured amounts per currency, duration, captures per second,
//! retries and replays.
//!
//! Resumable: every capture goes through the ledger, so running the same file again replays
//! what is final (nothing sent) and resolves what was left unknown. On start the batch runs the
//! engine's bounded reconcile-on-start policy, taking over what an earlier run left sent or
//! reserved if older than `--abandoned-after`.
//! Ctrl-C stops starting captures, lets the running ones finish and record, writes their
//! reports and the summary, and exits 130.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use capture_core::{CaptureReport, CaptureRequest, FailureKind, Outcome};
use capture_engine::{EngineConfig, RateBudget};
use rust_decimal::Decimal;
use tokio::sync::Semaphore;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// A bar, redrawn in place.
    Bar,
    /// A plain line every two seconds.
    Lines,
    /// Nothing until the summary.
    None,
}

/// How `capture batch` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// Captures at once.
    pub concurrency: usize,
    /// Where the reports go (standard output if `None`).
    pub out: Option<PathBuf>,
    /// Reconcile on start what is older than this.
    pub abandoned_after: Duration,
    /// Progress display.
    pub progress: Progress,
    /// The NDJSON file, or `-`.
    pub requests: PathBuf,
}

/// A token bucket in the GCRA form: `tat` is the theoretical arrival time of the next request,
/// as a duration since the batch started. Pure (the caller passes the time), so it is tested
/// without a clock.
#[derive(Debug, Clone)]
pub struct Bucket {
    interval: Duration,
    /// How far ahead of `tat` a request may go: (burst - 1) intervals.
    tolerance: Duration,
    tat: Duration,
}

impl Bucket {
    /// A bucket for this budget.
    pub fn new(budget: RateBudget) -> Bucket {
        let per_second = budget.per_second.max(1);
        let burst = budget.burst.unwrap_or(per_second).max(1);
        let interval = Duration::from_nanos(1_000_000_000 / u64::from(per_second));
        Bucket { interval, tolerance: interval.saturating_mul(burst - 1), tat: Duration::ZERO }
    }

    /// Takes a token at `now`: how long to wait before sending.
    pub fn take(&mut self, now: Duration) -> Duration {
        let start = self.tat.max(now);
        let earliest = start.saturating_sub(self.tolerance);
        let wait = earliest.saturating_sub(now);
        self.tat = start + self.interval;
        wait
    }

    /// The platform asked for a pause (429 with a reset hint): nothing is sent before `until`.
    pub fn pause_until(&mut self, until: Duration) {
        self.tat = self.tat.max(until + self.tolerance);
    }
}

/// What the batch counts as it goes, and prints at the end.
#[derive(Debug, Default)]
pub struct Summary {
    /// (platform, outcome) -> count.
    pub outcomes: BTreeMap<(String, String), u64>,
    /// currency -> captured amount (Decimal, exact).
    pub captured: BTreeMap<String, Decimal>,
    /// Lines that were not valid requests (or were refused before any capture).
    pub invalid: u64,
    /// Sends after the first (the engine's safe retries).
    pub retries: u64,
    /// Requests answered from the ledger (an earlier run had finished them).
    pub replayed: u64,
    /// Requests done (reports and invalid lines).
    pub done: u64,
    /// Failed retryably or unknown: running the file again may finish them.
    pub unfinished: u64,
    /// Refused for good: failed at the platform, rejected or held.
    pub refused: u64,
}

impl Summary {
    /// Counts one report.
    pub fn add(&mut self, report: &CaptureReport) {
        *self.outcomes.entry((report.platform.clone(), report.outcome.status().to_owned())).or_default() += 1;
        if let Outcome::Captured { amount, .. } = &report.outcome {
            *self.captured.entry(amount.currency().code().to_owned()).or_default() += amount.amount();
        }
        self.retries += report.steps.iter().filter(|s| s.name == "retry").count() as u64;
        if report.steps.iter().any(|s| s.name == "ledger" && s.verdict == "replayed") {
            self.replayed += 1;
        }
        use crate::Exit;
        let code = crate::report_exit_code(report);
        let done = [Exit::Ok, Exit::Pending, Exit::AlreadyCaptured, Exit::AmountMismatch];
        if done.iter().any(|e| e.code() == code) {
        } else if code == Exit::FailedRetryable.code() {
            self.unfinished += 1;
        } else {
            self.refused += 1;
        }
        self.done += 1;
    }

    fn count(&self, outcome: &str) -> u64 {
        self.outcomes.iter().filter(|((_, o), _)| o == outcome).map(|(_, n)| n).sum()
    }

    /// One line for the progress display.
    pub fn line(&self, total: u64, elapsed: Duration) -> String {
        format!("{}/{total} done: {}", self.done, self.counts(elapsed))
    }

    /// The outcomes so far and the rate, for the line and beside the bar.
    fn counts(&self, elapsed: Duration) -> String {
        format!(
            "{} captured, {} pending, {} failed, {} rejected or held, {} invalid; {}/s",
            self.count("captured") + self.count("already_captured"),
            self.count("pending"),
            self.count("failed"),
            self.count("rejected") + self.count("held"),
            self.invalid,
            rate(self.done, elapsed)
        )
    }

    /// The closing summary, several lines.
    pub fn render(&self, total: u64, elapsed: Duration, interrupted: bool) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "batch {}: {} of {total} request(s) in {} ms, {} captures/s; {} retries, {} replayed from the ledger, {} invalid line(s)\n",
            if interrupted { "interrupted" } else { "done" },
            self.done,
            elapsed.as_millis(),
            rate(self.done, elapsed),
            self.retries,
            self.replayed,
            self.invalid
        ));
        let mut platforms: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for ((p, o), n) in &self.outcomes {
            platforms.entry(p).or_default().push((o, *n));
        }
        for (p, rows) in platforms {
            let cells: Vec<String> = rows.iter().map(|(o, n)| format!("{o} {n}")).collect();
            out.push_str(&format!("  {p:<12} {}\n", cells.join(", ")));
        }
        for (currency, amount) in &self.captured {
            out.push_str(&format!("  captured     {amount} {currency}\n"));
        }
        out
    }
}

/// Requests per second with one decimal, from integers (no float).
fn rate(n: u64, elapsed: Duration) -> String {
    let micros = elapsed.as_micros().max(1);
    let r = Decimal::from(n) * Decimal::from(1_000_000u64) / Decimal::from(micros as u64);
    r.round_dp(1).to_string()
}

/// The wait the platform asked for, if this report met a 429: the final outcome's hint, or the
/// wait of the engine's retry after a 429.
fn rate_limit_hint(report: &CaptureReport) -> Option<Duration> {
    if let Outcome::Failed { kind: FailureKind::RateLimited, retry_after_ms, .. } = &report.outcome {
        return Some(Duration::from_millis(retry_after_ms.unwrap_or(1000)));
    }
    let limited = report.exchanges.iter().any(|e| e.response.as_ref().is_some_and(|r| r.status == 429));
    if !limited {
        return None;
    }
    report
        .steps
        .iter()
        .filter(|s| s.name == "retry")
        .filter_map(|s| s.detail.as_deref())
        .filter_map(|d| d.split("after ").nth(1)?.strip_suffix(" ms")?.parse::<u64>().ok())
        .max()
        .map(Duration::from_millis)
}

fn read_requests(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading requests from standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Writes report lines, to a file or standard output.
struct Sink(Box<dyn Write + Send>);

impl Sink {
    fn line(&mut self, text: &str) -> anyhow::Result<()> {
        self.0.write_all(text.as_bytes()).context("writing a report")?;
        self.0.write_all(b"\n").context("writing a report")?;
        Ok(())
    }
}

/// What progress display a `--progress` choice gives, on a terminal or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Bar,
    Lines,
    Nothing,
}

fn shown(p: Progress, stderr_is_terminal: bool) -> Shown {
    match (p, stderr_is_terminal) {
        (Progress::Bar, _) | (Progress::Auto, true) => Shown::Bar,
        (Progress::Lines, _) | (Progress::Auto, false) => Shown::Lines,
        (Progress::None, _) => Shown::Nothing,
    }
}

/// Progress on standard error.
enum Display {
    /// indicatif's bar, redrawn in place (at most 20 times a second; drawn only on a terminal).
    Bar(indicatif::ProgressBar),
    /// A plain line every two seconds, for logs and pipes.
    Lines {
        last: Instant,
    },
    None,
}

impl Display {
    fn new(p: Progress, total: u64) -> Display {
        match shown(p, std::io::stderr().is_terminal()) {
            Shown::Bar => {
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(total),
                    indicatif::ProgressDrawTarget::stderr(),
                );
                // The template is a constant: a mistake in it is a bug the tests see at once.
                // `wide_msg` is cut to the terminal's width: a narrow terminal never wraps the line.
                if let Ok(style) =
                    indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} {wide_msg}")
                {
                    bar.set_style(style.progress_chars("#>-"));
                }
                Display::Bar(bar)
            }
            Shown::Lines => Display::Lines { last: Instant::now() },
            Shown::Nothing => Display::None,
        }
    }

    fn tick(&mut self, s: &Summary, total: u64, started: Instant, force: bool) {
        match self {
            Display::Bar(bar) => {
                bar.set_message(s.counts(started.elapsed()));
                bar.set_position(s.done);
            }
            Display::Lines { last } => {
                if !force && last.elapsed() < Duration::from_secs(2) {
                    return;
                }
                *last = Instant::now();
                eprintln!("batch: {}", s.line(total, started.elapsed()));
            }
            Display::None => {}
        }
    }

    /// A line of its own on standard error (above the bar, if one is drawn).
    fn say(&self, text: &str) {
        match self {
            Display::Bar(bar) => bar.suspend(|| eprintln!("{text}")),
            _ => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish();
            // The bar's line stays; the summary goes below it.
            if !bar.is_hidden() {
                eprintln!();
            }
        }
    }
}

/// Runs the batch; returns the exit code: 0 when every request ended captured, already captured
/// or pending; 7 when some failed retryably or are unknown (run the file again); otherwise 6
/// when some were refused (failed at the platform, rejected, held, invalid lines); 130 when
/// interrupted.
pub async fn run(opts: Options, now: Option<&str>) -> anyhow::Result<u8> {
    let text = read_requests(&opts.requests)?;
    let cfg = EngineConfig::load(&opts.config)?;
    // Parse every line first: a bad line costs nothing, and the platforms used are known.
    let mut lines: Vec<(usize, Result<CaptureRequest, capture_core::RequestError>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines.push((i + 1, CaptureRequest::from_json(line.as_bytes())));
    }
    // The configuration's reconcile-on-start policy, taking over what an earlier run left older
    // than `--abandoned-after`.
    let policy = capture_engine::ReconcileOnStart {
        takeover_after: Some(opts.abandoned_after),
        ..cfg.reconcile_on_start_policy()
    };
    let engine = Arc::new(crate::builder(&cfg, now).await?.reconcile_on_start(policy).build()?);
    // Credentials of the platforms this batch uses, and only those, before anything is sent.
    let mut used: Vec<&str> =
        lines.iter().filter_map(|(_, r)| r.as_ref().ok().map(|r| r.platform.as_str())).collect();
    used.sort_unstable();
    used.dedup();
    for p in &used {
        if let Err(e @ capture_engine::CaptureError::MissingCredential { .. }) = engine.ready(p) {
            return Err(e.into());
        }
    }
    crate::reconcile_on_start(&engine, "batch").await;

    let started = Instant::now();
    let buckets: Arc<Mutex<BTreeMap<String, Bucket>>> = Arc::new(Mutex::new(
        cfg.platforms.iter().filter_map(|(id, p)| p.rate.map(|r| (id.clone(), Bucket::new(r)))).collect(),
    ));
    let sink: Box<dyn Write + Send> = match &opts.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let sink = Arc::new(Mutex::new(Sink(sink)));
    let summary = Arc::new(Mutex::new(Summary::default()));
    let total = lines.len() as u64;
    let mut display = Display::new(opts.progress, total);
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut first_error: Option<anyhow::Error> = None;

    for (line_no, parsed) in lines {
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                let doc = serde_json::json!({ "line": line_no, "error": { "field": e.field(), "message": e.to_string() } });
                lock(&sink).line(&doc.to_string())?;
                let mut s = lock(&summary);
                s.invalid += 1;
                s.done += 1;
                continue;
            }
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.context("the batch's slots")?,
            _ = &mut ctrl_c => { interrupted = true; break; }
        };
        // Collect what finished meanwhile (errors surface early).
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done.context("a capture task")? {
                first_error.get_or_insert(e);
            }
        }
        display.tick(&lock(&summary), total, started, false);
        let (engine, buckets, sink, summary) =
            (engine.clone(), buckets.clone(), sink.clone(), summary.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let wait = lock(&buckets).get_mut(&request.platform).map(|b| b.take(started.elapsed()));
            if let Some(w) = wait.filter(|w| !w.is_zero()) {
                tokio::time::sleep(w).await;
            }
            let platform = request.platform.clone();
            let line = match engine.capture(request).await {
                Ok(report) => {
                    if let Some(hint) = rate_limit_hint(&report)
                        && let Some(b) = lock(&buckets).get_mut(&platform)
                    {
                        b.pause_until(started.elapsed() + hint);
                    }
                    let text = serde_json::to_string(&report).context("encoding a report")?;
                    lock(&summary).add(&report);
                    text
                }
                Err(e) => {
                    let mut s = lock(&summary);
                    s.invalid += 1;
                    s.done += 1;
                    let field = match &e {
                        capture_engine::CaptureError::Request(r) => Some(r.field().to_owned()),
                        _ => None,
                    };
                    serde_json::json!({ "line": line_no, "error": { "field": field, "message": e.to_string() } })
                        .to_string()
                }
            };
            lock(&sink).line(&line)
        });
    }
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => break,
                Some(done) => {
                    if let Err(e) = done.context("a capture task")? {
                        first_error.get_or_insert(e);
                    }
                    display.tick(&lock(&summary), total, started, false);
                }
            },
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                display.say(&format!("batch: interrupted: letting {} running capture(s) finish and record", tasks.len()));
            }
        }
    }
    display.tick(&lock(&summary), total, started, true);
    display.finish();
    {
        let mut s = lock(&sink);
        s.0.flush().context("writing the reports")?;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let s = lock(&summary);
    eprint!("{}", s.render(total, started.elapsed(), interrupted));
    if interrupted {
        return Ok(130);
    }
    Ok(if s.unfinished > 0 {
        crate::Exit::FailedRetryable.code()
    } else if s.refused > 0 || s.invalid > 0 {
        crate::Exit::Failed.code()
    } else {
        crate::Exit::Ok.code()
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_bucket_spaces_requests_after_the_burst() {
        let mut b = Bucket::new(RateBudget { per_second: 5, burst: Some(2) });
        // Two at once (the burst), then one every 200 ms.
        assert_eq!(b.take(ms(0)), ms(0));
        assert_eq!(b.take(ms(0)), ms(0));
        assert_eq!(b.take(ms(0)), ms(200));
        assert_eq!(b.take(ms(0)), ms(400));
        // After an idle second the burst is back.
        assert_eq!(b.take(ms(2000)), ms(0));
        assert_eq!(b.take(ms(2000)), ms(0));
        assert_eq!(b.take(ms(2000)), ms(200));
    }

    #[test]
    fn a_reset_hint_pauses_the_whole_bucket() {
        let mut b = Bucket::new(RateBudget { per_second: 10, burst: None });
        assert_eq!(b.take(ms(0)), ms(0));
        b.pause_until(ms(1500));
        assert_eq!(b.take(ms(100)), ms(1400), "nothing before the reset");
        assert_eq!(b.take(ms(100)), ms(1500));
    }

    /// A report of a capture that met the given answers, with the given engine retries and outcome.
    fn report(statuses: &[u16], retry_waits_ms: &[u64], outcome: Outcome) -> CaptureReport {
        use capture_core::report::{Exchange, RecordedRequest, RecordedResponse, Requested};
        let step = |name: &str, detail: String| capture_core::Step {
            stage: capture_core::Stage::Capture,
            source: capture_core::StepSource::Builtin,
            name: name.into(),
            version: None,
            verdict: "ok".into(),
            decision: None,
            detail: Some(detail),
        };
        CaptureReport {
            schema: capture_core::REPORT_SCHEMA,
            capture_id: "c".into(),
            started_at: capture_core::Timestamp(0),
            platform: "optty".into(),
            order_id: "o".into(),
            idempotency_key: "k".into(),
            requested: Requested::Full(capture_core::report::FullMarker),
            amount: None,
            rules_version: None,
            connector: None,
            steps: retry_waits_ms
                .iter()
                .enumerate()
                .map(|(i, ms)| step("retry", format!("send {} of at most 3 after {ms} ms", i + 2)))
                .collect(),
            exchanges: statuses
                .iter()
                .map(|s| Exchange {
                    request: RecordedRequest {
                        method: "POST".into(),
                        url: "http://127.0.0.1:9/".into(),
                        headers: Vec::new(),
                        body: None,
                    },
                    response: Some(RecordedResponse { status: *s, body: String::new() }),
                })
                .collect(),
            outcome,
            tags: Vec::new(),
            notes: Vec::new(),
            follow_ups: Vec::new(),
            anomalies: Vec::new(),
        }
    }

    #[test]
    fn a_429_pauses_the_platform_for_its_hint_whether_retried_or_final() {
        let usd = capture_core::Currency::from_code("USD").expect("USD");
        let captured =
            Outcome::Captured { amount: capture_core::Money::zero(usd), platform_capture_id: None };
        // The engine waited out a 429 (its retry step says how long), then captured.
        assert_eq!(rate_limit_hint(&report(&[429, 200], &[1500], captured.clone())), Some(ms(1500)));
        // The final outcome is the 429, with the platform's hint (or a second without one).
        let limited = |hint| Outcome::Failed {
            kind: FailureKind::RateLimited,
            retryable: true,
            platform_code: None,
            message: String::new(),
            retry_after_ms: hint,
        };
        assert_eq!(rate_limit_hint(&report(&[429], &[], limited(Some(700)))), Some(ms(700)));
        assert_eq!(rate_limit_hint(&report(&[429], &[], limited(None))), Some(ms(1000)));
        // A retry after a 5xx is no rate limit: the bucket is left alone.
        assert_eq!(rate_limit_hint(&report(&[503, 200], &[200], captured)), None);
        // And the pause holds the whole bucket back by the hint.
        let mut b = Bucket::new(RateBudget { per_second: 100, burst: None });
        b.pause_until(ms(10) + ms(1500));
        assert_eq!(b.take(ms(10)), ms(1500));
    }

    #[test]
    fn a_terminal_gets_the_bar_anything_else_plain_lines() {
        assert_eq!(shown(Progress::Auto, true), Shown::Bar);
        assert_eq!(shown(Progress::Auto, false), Shown::Lines);
        assert_eq!(shown(Progress::Lines, true), Shown::Lines);
        assert_eq!(shown(Progress::Bar, false), Shown::Bar);
        assert_eq!(shown(Progress::None, true), Shown::Nothing);
    }

    #[test]
    fn rates_are_decimal_without_float() {
        assert_eq!(rate(10_000, Duration::from_millis(3_000)), "3333.3");
        assert_eq!(rate(0, Duration::ZERO), "0");
    }
}
