//! The platform side of a capture: what the connector builds is checked, the secrets are added,
//! the request is sent through the transport and the answer handed back to the connector. No
//! decision about the ledger is made here; the driver (`driver.rs`) makes them through the
//! machine (`machine.rs`).

use capture_connector_api::{
    CallPayment, CallShipping, CaptureCall, CaptureResult, HttpResponse, ResultStatus, SCHEMA_VERSION,
    StatusCall, StatusParseCall,
};
use capture_core::{
    CaptureRequest, ConnectorRef, Exchange, FailureKind, Money, Outcome, RecordedHeader, RecordedRequest,
    RecordedResponse, RequestError, STATUS_SCHEMA, Stage, StatusReport, StepSource,
};
use capture_store::{Attempt, AttemptState, AttemptUpdate, CaptureStore, Fence, StoreError};

use crate::engine::{CaptureError, Engine, Platform, Run, StatusQuery, target_payments};
use crate::plugin::PluginCallError;
use crate::policy::CrashPoint;
use crate::transport::{OutgoingRequest, TransportError};

/// The point where the ledger records that the request is about to leave: a compare-and-set to
/// `sent` under the attempt's lease, renewing it, with the request stored for reconciliation.
pub(crate) struct Gate<'a> {
    pub(crate) store: &'a dyn CaptureStore,
    pub(crate) fence: &'a Fence,
    /// The canonical request in its wire form (JSON text), stored with the attempt so
    /// reconciliation can resend it (to a platform that deduplicates by key) without its caller.
    pub(crate) wire: &'a str,
    pub(crate) attempt: &'a str,
    pub(crate) from: AttemptState,
    pub(crate) renew_until: capture_core::Timestamp,
    pub(crate) now: capture_core::Timestamp,
}

/// The text the ledger keeps of a request about to leave:
/// `{"capture_request": <wire form>, "http": <the request as sent, secrets redacted>}`,
/// written straight into one string (no value tree in between).
fn stored_request(wire: &str, recorded: &RecordedRequest) -> String {
    // Serializing a struct of strings cannot fail; were it to, the entry would be `null` and the
    // text still JSON.
    let http = serde_json::to_string(recorded).unwrap_or_else(|_| "null".into());
    let mut text = String::with_capacity(wire.len() + http.len() + 30);
    text.push_str("{\"capture_request\":");
    text.push_str(wire);
    text.push_str(",\"http\":");
    text.push_str(&http);
    text.push('}');
    text
}

/// What became of one send.
#[derive(Debug)]
pub(crate) enum CallResult {
    /// Nothing left the engine (the connector or the checks refused, or no connection).
    NotSent(Outcome),
    /// The ledger refused to mark the attempt sent: nothing left.
    Refused(StoreError),
    /// The request left; this is what came back (`status` is `None` when no answer did).
    Left {
        /// The parsed outcome (an `outcome_unknown` failure for a lost answer).
        outcome: Outcome,
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
    },
}

impl CallResult {
    /// The outcome to show when no ledger decides (an engine without a ledger, status queries).
    pub(crate) fn into_outcome(self) -> Outcome {
        match self {
            CallResult::NotSent(o) | CallResult::Left { outcome: o, .. } => o,
            CallResult::Refused(e) => Outcome::Failed {
                kind: FailureKind::InvalidState,
                retryable: true,
                platform_code: None,
                message: format!("the ledger did not let the attempt be sent: {e} (nothing was sent)"),
                retry_after_ms: None,
            },
        }
    }
}

fn redact(req: &capture_connector_api::HttpRequest) -> RecordedRequest {
    RecordedRequest {
        method: req.method.clone(),
        url: req.url.clone(),
        headers: req
            .headers
            .iter()
            .map(|h| RecordedHeader {
                name: h.name.clone(),
                value: if h.secret.is_some() { format!("{}[REDACTED]", h.value) } else { h.value.clone() },
            })
            .collect(),
        body: req.body.clone(),
    }
}

fn failure_kind(kind: capture_connector_api::FailureKind) -> FailureKind {
    use capture_connector_api::FailureKind as Wire;
    match kind {
        Wire::InvalidRequest => FailureKind::InvalidRequest,
        Wire::Unauthorized => FailureKind::Unauthorized,
        Wire::NotFound => FailureKind::NotFound,
        Wire::InvalidState => FailureKind::InvalidState,
        Wire::Declined => FailureKind::Declined,
        Wire::RateLimited => FailureKind::RateLimited,
        Wire::PlatformUnavailable => FailureKind::PlatformUnavailable,
        Wire::OutcomeUnknown => FailureKind::OutcomeUnknown,
        Wire::Unknown => FailureKind::Unknown,
    }
}

fn connector_failure(message: String) -> Outcome {
    Outcome::Failed {
        kind: FailureKind::Connector,
        retryable: false,
        platform_code: None,
        message,
        retry_after_ms: None,
    }
}

impl Engine {
    /// Asks the platform what became of an order's captures (for asynchronous captures and for
    /// outcomes left unknown), through the connector's status query (ABI 1.1).
    pub async fn status(&self, q: &StatusQuery) -> Result<StatusReport, CaptureError> {
        let platform = self.platform(&q.platform)?;
        let plugin = &platform.plugin;
        let manifest = plugin.manifest();
        if !plugin.supports_status() {
            return Err(RequestError::Invalid {
                field: "platform".into(),
                problem: format!("connector `{}` cannot read a capture's state", manifest.id),
            }
            .into());
        }
        let mut run = Run::default();
        let call = StatusCall {
            schema: SCHEMA_VERSION,
            base_url: platform.setup.base_url.trim_end_matches('/').to_owned(),
            settings: platform.setup.settings.clone(),
            order_id: q.order_id.clone(),
            currency: q.currency.code().into(),
            currency_exponent: q.currency.exponent(),
            payment_ids: q.payment_ids.clone(),
            idempotency_key: q.idempotency_key.clone(),
            platform_capture_id: q.platform_capture_id.clone(),
        };
        let build_step = format!("{}.build_status", manifest.id);
        let parse_step = format!("{}.parse_status", manifest.id);
        let version = Some(manifest.version.clone());
        let built = crate::trace::plugin_span(&manifest.id, "build_status")
            .in_scope(|| plugin.build_status_allowing(&call, &platform.setup.allowed_hosts))
            .map(|request| (request, None));
        let outcome = match self
            .exchange(platform, Stage::Capture, &build_step, built, &mut run, None, &mut None)
            .await
        {
            Err(result) => result.into_outcome(),
            Ok(response) => {
                let status = response.status;
                let parsed = crate::trace::plugin_span(&manifest.id, "parse_status")
                    .in_scope(|| {
                        plugin.parse_status(&StatusParseCall {
                            schema: SCHEMA_VERSION,
                            status: call,
                            response,
                        })
                    })
                    .map_err(|e| e.to_string())
                    .and_then(|r| self.outcome_of(r, q.currency, None));
                match parsed {
                    Ok(o) => {
                        run.step(
                            Stage::Capture,
                            StepSource::Connector,
                            &parse_step,
                            version,
                            o.status(),
                            None,
                        );
                        o
                    }
                    Err(problem) => {
                        run.step(
                            Stage::Capture,
                            StepSource::Connector,
                            &parse_step,
                            version,
                            "error",
                            Some(problem.clone()),
                        );
                        Self::unreadable(status, problem)
                    }
                }
            }
        };
        Ok(self.scrubber.status_report(StatusReport {
            schema: STATUS_SCHEMA,
            platform: q.platform.clone(),
            order_id: q.order_id.clone(),
            checked_at: self.clock.now(),
            connector: ConnectorRef { id: manifest.id.clone(), version: manifest.version.clone() },
            steps: run.steps,
            exchanges: run.exchanges,
            outcome,
        }))
    }

    pub(crate) async fn call_platform(
        &self,
        platform: &Platform,
        req: &CaptureRequest,
        amount: Money,
        run: &mut Run,
        gate: Option<&Gate<'_>>,
        sent: &mut Option<Attempt>,
    ) -> CallResult {
        let plugin = &platform.plugin;
        let manifest = plugin.manifest();
        let build_step = format!("{}.build_capture", manifest.id);
        let parse_step = format!("{}.parse_capture", manifest.id);
        let version = Some(manifest.version.clone());
        let capturable = req.order.capturable().unwrap_or(amount);
        let call = CaptureCall {
            schema: SCHEMA_VERSION,
            base_url: platform.setup.base_url.trim_end_matches('/').to_owned(),
            settings: platform.setup.settings.clone(),
            order_id: req.order.id.clone(),
            currency: req.order.currency.code().into(),
            currency_exponent: req.order.currency.exponent(),
            amount: amount.to_decimal_string(),
            full: amount == capturable,
            order_amount: req.order.amount.to_decimal_string(),
            surcharge: req.order.surcharge.to_decimal_string(),
            payments: target_payments(req, amount)
                .into_iter()
                .map(|(p, m)| CallPayment {
                    id: p.id.clone(),
                    amount: m.to_decimal_string(),
                    authorized: p.amount.to_decimal_string(),
                    method: p.method.clone(),
                })
                .collect(),
            idempotency_key: req.idempotency_key.clone(),
            description: req.description.clone(),
            shipping: req.shipping.as_ref().map(|s| CallShipping {
                company: s.company.clone(),
                method: s.method.clone(),
                tracking_number: s.tracking_number.clone(),
            }),
        };
        // The call is encoded once (a JSON plugin's parse message carries the same bytes; a
        // struct plugin keeps the call it read), and moves to the plugin's worker as it is.
        let (built, sent_call) = match crate::trace::plugin_span(&manifest.id, "build_capture")
            .in_scope(|| plugin.build_capture_checked_owned(call, &platform.setup.allowed_hosts))
        {
            Ok(b) => {
                let (request, url, sent_call) = b.into_parts();
                (Ok((request, Some(url))), Some(sent_call))
            }
            Err(e) => (Err(e), None),
        };
        let response =
            match self.exchange(platform, Stage::Capture, &build_step, built, run, gate, sent).await {
                Ok(r) => r,
                Err(result) => return result,
            };
        let status = response.status;
        // `exchange` sends nothing, and returns above, when the build failed: `sent_call` is set.
        let parsed = crate::trace::plugin_span(&manifest.id, "parse_capture").in_scope(|| match sent_call {
            Some(c) => plugin.parse_built_owned(c, response),
            None => Err(PluginCallError::Unsupported("reading an answer to a request that was not built")),
        });
        let outcome = match parsed {
            Ok(result) => match self.outcome_of(result, amount.currency(), Some(amount)) {
                Ok(outcome) => {
                    run.step(
                        Stage::Capture,
                        StepSource::Connector,
                        &parse_step,
                        version,
                        outcome.status(),
                        None,
                    );
                    outcome
                }
                Err(problem) => {
                    run.step(
                        Stage::Capture,
                        StepSource::Connector,
                        &parse_step,
                        version,
                        "error",
                        Some(problem.clone()),
                    );
                    Self::unreadable(status, problem)
                }
            },
            Err(e) => {
                run.step(
                    Stage::Capture,
                    StepSource::Connector,
                    &parse_step,
                    version,
                    "error",
                    Some(e.to_string()),
                );
                Self::unreadable(status, e.to_string())
            }
        };
        CallResult::Left { outcome, status: Some(status) }
    }

    /// Checks what the connector built, adds the secrets, sends it and records the exchange.
    /// Every failure on the way comes back as the outcome to report.
    #[allow(
        clippy::too_many_arguments,
        reason = "the gate and its result travel together only on capture sends"
    )]
    async fn exchange(
        &self,
        platform: &Platform,
        stage: Stage,
        build_step: &str,
        built: Result<(capture_connector_api::HttpRequest, Option<url::Url>), PluginCallError>,
        run: &mut Run,
        gate: Option<&Gate<'_>>,
        sent: &mut Option<Attempt>,
    ) -> Result<HttpResponse, CallResult> {
        let version = Some(platform.plugin.manifest().version.clone());
        let (http, parsed_url) = match built {
            Ok(h) => h,
            Err(e) => {
                run.step(stage, StepSource::Connector, build_step, version, "error", Some(e.to_string()));
                return Err(CallResult::NotSent(connector_failure(format!("{e} (nothing was sent)"))));
            }
        };
        let outgoing = match self.check_request(platform, &http, parsed_url) {
            Ok(o) => o,
            Err(problem) => {
                let msg = format!("connector built an unacceptable request: {problem} (nothing was sent)");
                run.step(stage, StepSource::Connector, build_step, version, "error", Some(msg.clone()));
                return Err(CallResult::NotSent(connector_failure(msg)));
            }
        };
        run.step(
            stage,
            StepSource::Connector,
            build_step,
            version.clone(),
            "ok",
            Some(format!("{} {}", outgoing.method, outgoing.url)),
        );
        // Recorded as sent: the URL in its parsed form, which is what the transport sends.
        let recorded = RecordedRequest { url: outgoing.url.clone(), ..redact(&http) };
        if let Some(g) = gate {
            // The ledger learns the request is leaving before it leaves: a crash from here on
            // leaves the attempt in `sent`, which reconciliation resolves from the platform.
            let update = AttemptUpdate {
                request: Some(stored_request(g.wire, &recorded)),
                count_send: true,
                ..AttemptUpdate::default()
            };
            let update = AttemptUpdate { renew_until: Some(g.renew_until), ..update };
            match g.store.transition(g.attempt, g.fence, &[g.from], AttemptState::Sent, update, g.now).await {
                Ok(a) => *sent = Some(a),
                Err(e) => {
                    run.step(stage, StepSource::Builtin, "ledger", None, "refused", Some(e.to_string()));
                    return Err(CallResult::Refused(e));
                }
            }
            self.crash_point(CrashPoint::Sent);
        }
        let response = match self.transport.send(outgoing, platform.setup.timeout).await {
            Ok(r) => r,
            Err(e) => {
                run.step(stage, StepSource::Transport, "http", None, "error", Some(e.to_string()));
                run.exchanges.push(Exchange { request: recorded, response: None });
                return Err(match e {
                    TransportError::Connect(m) => CallResult::NotSent(Outcome::Failed {
                        kind: FailureKind::PlatformUnavailable,
                        retryable: true,
                        platform_code: None,
                        message: format!("could not connect, nothing was sent: {m}"),
                        retry_after_ms: None,
                    }),
                    TransportError::Invalid(m) => {
                        CallResult::NotSent(connector_failure(format!("request could not be sent: {m}")))
                    }
                    other => CallResult::Left {
                        outcome: Outcome::Failed {
                            kind: FailureKind::OutcomeUnknown,
                            retryable: false,
                            platform_code: None,
                            message: format!(
                                "{other}: the platform may have applied the request; read its state before retrying"
                            ),
                            retry_after_ms: None,
                        },
                        status: None,
                    },
                });
            }
        };
        run.step(
            stage,
            StepSource::Transport,
            "http",
            None,
            "ok",
            Some(format!("status {}", response.status)),
        );
        run.exchanges.push(Exchange {
            request: recorded,
            response: Some(RecordedResponse { status: response.status, body: response.body.clone() }),
        });
        Ok(response)
    }

    /// The platform answered but its answer could not be read: if it might have been a success,
    /// the outcome is unknown, never a failure that invites a blind retry.
    fn unreadable(status: u16, problem: String) -> Outcome {
        Outcome::Failed {
            kind: if (200..300).contains(&status) {
                FailureKind::OutcomeUnknown
            } else {
                FailureKind::Connector
            },
            retryable: false,
            platform_code: Some(status.to_string()),
            message: format!("the platform answered {status} but the connector could not read it: {problem}"),
            retry_after_ms: None,
        }
    }

    fn outcome_of(
        &self,
        result: CaptureResult,
        currency: capture_core::Currency,
        requested: Option<Money>,
    ) -> Result<Outcome, String> {
        let captured = |r: &CaptureResult| -> Result<Money, String> {
            match &r.captured_amount {
                None => requested.ok_or_else(|| "captured_amount is missing".to_owned()),
                Some(text) => Money::parse(text, currency).map_err(|e| format!("captured_amount: {e}")),
            }
        };
        Ok(match result.status {
            ResultStatus::Captured => Outcome::Captured {
                amount: captured(&result)?,
                platform_capture_id: result.platform_capture_id,
            },
            ResultStatus::Pending => Outcome::Pending {
                amount: captured(&result)?,
                platform_capture_id: result.platform_capture_id,
            },
            ResultStatus::Failed => {
                let f = result.failure.ok_or("a failed result without failure details")?;
                Outcome::Failed {
                    kind: failure_kind(f.kind),
                    retryable: f.retryable,
                    platform_code: f.platform_code,
                    message: f.message,
                    retry_after_ms: f.retry_after_ms,
                }
            }
            ResultStatus::AlreadyCaptured => {
                let (platform_code, message) = match result.failure {
                    Some(f) => (f.platform_code, f.message),
                    None => (None, "the platform reports the payment as already captured".to_owned()),
                };
                Outcome::AlreadyCaptured { platform_code, message }
            }
        })
    }

    /// Validates what the connector built and resolves its secrets.
    fn check_request(
        &self,
        platform: &Platform,
        http: &capture_connector_api::HttpRequest,
        parsed: Option<url::Url>,
    ) -> Result<OutgoingRequest, String> {
        if !matches!(http.method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(format!("method `{}` is not allowed", http.method));
        }
        // Parsed once: by the plugin's host check when it ran, otherwise here.
        let url = match parsed {
            Some(url) => url,
            None => url::Url::parse(&http.url).map_err(|e| format!("url `{}`: {e}", http.url))?,
        };
        if url.origin() != platform.origin {
            return Err(format!(
                "url `{}` is outside the configured base URL {}",
                http.url, platform.setup.base_url
            ));
        }
        if http.body.as_ref().is_some_and(|b| b.len() > crate::plugin::MAX_PLUGIN_OUTPUT) {
            return Err("body exceeds the size cap".into());
        }
        let mut headers = Vec::with_capacity(http.headers.len());
        for h in &http.headers {
            let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
            if h.name.is_empty()
                || !h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                || bad(&h.value)
            {
                return Err(format!("header `{}` is not a valid header", h.name));
            }
            let value = match &h.secret {
                None => h.value.clone(),
                Some(name) => {
                    if !platform.plugin.manifest().credentials.contains(name) {
                        return Err(format!(
                            "header `{}` asks for credential `{name}`, which the manifest does not declare",
                            h.name
                        ));
                    }
                    let secret = platform
                        .setup
                        .credentials
                        .get(name)
                        .ok_or_else(|| format!("credential `{name}` is not configured"))?;
                    format!("{}{}", h.value, secret.expose())
                }
            };
            headers.push((h.name.clone(), value));
        }
        Ok(OutgoingRequest {
            method: http.method.clone(),
            // The parsed URL's text, moved out (no formatting).
            url: String::from(url),
            headers,
            body: http.body.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_request_is_the_wire_form_and_the_request_as_sent() {
        let req = CaptureRequest::from_json(
            br#"{"platform":"optty","idempotency_key":"k\"1\\","amount":"10.00","description":"</script> \u00e9",
                "order":{"id":"O1","currency":"USD","amount":"100.00","payments":[{"id":"p1","amount":"100.00"}]}}"#,
        )
        .expect("request");
        let recorded = RecordedRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:1/orders/O1/capture?x=\"y\"".into(),
            headers: vec![RecordedHeader { name: "authorization".into(), value: "[redacted]".into() }],
            body: Some("{\"amount\":\"10.00\"}".into()),
        };
        let text = stored_request(&req.to_wire_string(), &recorded);
        let value: serde_json::Value = serde_json::from_str(&text).expect("the stored text is JSON");
        // The same document the value tree `{"capture_request": wire, "http": recorded}` was.
        let tree = serde_json::json!({ "capture_request": req.to_wire_json(), "http": &recorded });
        assert_eq!(value, tree);
        let wire = value.get("capture_request").expect("capture_request").to_string();
        assert_eq!(CaptureRequest::from_json(wire.as_bytes()).expect("reads back"), req);
    }
}
