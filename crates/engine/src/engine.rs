//! The engine and its pipeline: pre-validate -> capture -> post-capture.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use capture_connector_api::{Manifest, PartialCapture};
use capture_core::{
    CaptureReport, CaptureRequest, ConnectorRef, Decision, Exchange, Money, Outcome, REPORT_SCHEMA,
    RequestError, Requested, RequestedAmount, Stage, Step, StepSource,
};
use capture_rules::{RuleContext, RuleSet};

use crate::clock::{Clock, DerivedIds, IdGenerator, SystemClock};
use crate::config::{ConfigError, EngineConfig, Secret};
use crate::driver::ReconcileOnStart;
use crate::hooks::{Hook, HookContext};
use crate::merged::Merged;
use crate::plugin::{Plugin, PluginLoadError, host_allowed, is_loopback};
use crate::policy::{CrashPoint, Random, RetryPolicy, SeededRandom, Sleeper, TokioSleeper};
use crate::scrub::{ScrubbedStore, Scrubber};
use crate::transport::{HttpTransport, Transport, TransportError};
use capture_store::CaptureStore;

/// Errors building an engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginLoadError),
    /// The rules could not be loaded.
    #[error("rules: {0}")]
    Rules(#[from] capture_rules::RulesError),
    /// The HTTP transport could not be set up.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The configured capture ledger could not be opened.
    #[error("ledger: {0}")]
    Store(#[from] capture_store::StoreError),
}

/// Errors of one capture that prevent a report: the request itself is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The request is malformed or names something the engine does not have.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The request's platform is configured but one of its credentials is not set. Credentials
    /// are demanded only for the platforms a request uses; nothing was sent.
    #[error(
        "platform `{platform}` credential `{credential}`: environment variable {var} is not set (nothing was sent)"
    )]
    MissingCredential {
        /// The platform.
        platform: String,
        /// The credential's name.
        credential: String,
        /// The environment variable that should hold it.
        var: String,
    },
}

/// A status query: which order's captures to read back from which platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    /// The platform (connector id).
    pub platform: String,
    /// The platform's order id.
    pub order_id: String,
    /// The order currency.
    pub currency: capture_core::Currency,
    /// The payments to read (empty: all of the order's).
    pub payment_ids: Vec<String>,
    /// The capture's idempotency key, if known.
    pub idempotency_key: Option<String>,
    /// The platform's capture id, if known.
    pub platform_capture_id: Option<String>,
}

/// A platform the engine can capture on: its connector and its settings.
#[derive(Debug, Clone)]
pub struct PlatformSetup {
    /// Base URL of the platform's API.
    pub base_url: String,
    /// Timeout for one HTTP exchange.
    pub timeout: Duration,
    /// Non-secret settings for the connector.
    pub settings: BTreeMap<String, String>,
    /// Credentials by name.
    pub credentials: BTreeMap<String, Secret>,
    /// Hosts the operator allows for this platform beyond the connector's own allow-list (a
    /// self-hosted platform such as Medusa on the merchant's domain). Usually empty.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Platform {
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) setup: PlatformSetup,
    pub(crate) origin: url::Origin,
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    plugins: Vec<Arc<Plugin>>,
    platforms: BTreeMap<String, PlatformSetup>,
    rules: Arc<RuleSet>,
    hooks: Vec<Arc<dyn Hook>>,
    transport: Option<Arc<dyn Transport>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    store: Option<Arc<dyn CaptureStore>>,
    without_ledger: bool,
    /// Platforms whose credentials were not set when the configuration was read:
    /// (credential, variable). A capture on one of them is refused naming the variable.
    missing_credentials: BTreeMap<String, (String, String)>,
    merchant: String,
    retry: RetryPolicy,
    random: Arc<dyn Random>,
    sleeper: Arc<dyn Sleeper>,
    owner: Option<String>,
    max_clock_skew: Duration,
    crash_at: Option<CrashPoint>,
    observer: Option<Arc<dyn crate::observe::Observer>>,
    reconcile_on_start: ReconcileOnStart,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder").field("platforms", &self.platforms.keys()).finish_non_exhaustive()
    }
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            plugins: Vec::new(),
            platforms: BTreeMap::new(),
            rules: Arc::new(RuleSet::empty()),
            hooks: Vec::new(),
            transport: None,
            clock: Arc::new(SystemClock),
            ids: Arc::new(DerivedIds),
            store: None,
            without_ledger: false,
            missing_credentials: BTreeMap::new(),
            merchant: "default".to_owned(),
            retry: RetryPolicy::default(),
            random: Arc::new(SeededRandom::new(0x5eed)),
            sleeper: Arc::new(TokioSleeper),
            owner: None,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            crash_at: None,
            observer: None,
            reconcile_on_start: ReconcileOnStart::DEFAULT,
        }
    }
}

fn invalid(key: String, problem: String) -> EngineError {
    EngineError::Config(ConfigError::Invalid { key, problem })
}

impl EngineBuilder {
    /// Loads what a configuration file names: plugins, rules, platforms, their credentials, the
    /// merchant and the capture ledger (`store`; by default the SQLite file `capture.db` in the
    /// configuration's folder), which it opens (creating a SQLite file if missing).
    ///
    /// A credential whose environment variable is not set does not fail here: a capture or a
    /// status query on that platform is refused with [`CaptureError::MissingCredential`], so a
    /// host needs only the credentials of the platforms it uses.
    pub async fn from_config(config: &EngineConfig) -> Result<EngineBuilder, EngineError> {
        let mut b = EngineBuilder::default();
        for entry in config.plugin_entries()? {
            b = b.plugin(Arc::new(Plugin::load_with(&entry.path, &config.load_options(&entry))?))?;
        }
        if let Some(dir) = &config.rules {
            b = b.rules(RuleSet::load_dir(dir, capture_rules::Limits::default())?);
        }
        for (id, p) in &config.platforms {
            let (credentials, missing) = match p.resolve_credentials(id) {
                Ok(c) => (c, None),
                Err(ConfigError::MissingCredential { credential, var, .. }) => {
                    (BTreeMap::new(), Some((credential, var)))
                }
                Err(e) => return Err(e.into()),
            };
            b = b.platform(
                id,
                PlatformSetup {
                    base_url: p.base_url.clone(),
                    timeout: Duration::from_millis(p.timeout_ms),
                    settings: p.settings.clone(),
                    credentials,
                    allowed_hosts: p.allowed_hosts.clone(),
                },
            );
            if let Some(m) = missing {
                b.missing_credentials.insert(id.clone(), m);
            }
        }
        let base = config.base_dir.clone().unwrap_or_else(|| std::path::PathBuf::from("."));
        let store = capture_store::open(&config.store_target(&base)?).await?;
        Ok(b.store(store)
            .merchant(config.merchant.clone().unwrap_or_else(|| "default".to_owned()))
            .reconcile_on_start(config.reconcile_on_start_policy()))
    }

    /// Adds a loaded plugin; refuses a second plugin with the same connector id.
    pub fn plugin(mut self, plugin: Arc<Plugin>) -> Result<Self, EngineError> {
        if let Some(other) = self.plugins.iter().find(|p| p.manifest().id == plugin.manifest().id) {
            return Err(invalid(
                "plugins".into(),
                format!(
                    "{} and {} both provide connector `{}`",
                    other.path().display(),
                    plugin.path().display(),
                    plugin.manifest().id
                ),
            ));
        }
        self.plugins.push(plugin);
        Ok(self)
    }

    /// Configures a platform (its id is the connector id); replaces one of the same id, e.g.
    /// from the configuration file, credentials included.
    pub fn platform(mut self, id: &str, setup: PlatformSetup) -> Self {
        self.missing_credentials.remove(id);
        self.platforms.insert(id.to_owned(), setup);
        self
    }

    /// Sets the merchant's rules.
    pub fn rules(mut self, rules: RuleSet) -> Self {
        self.rules = Arc::new(rules);
        self
    }

    /// Adds a host hook.
    pub fn hook(mut self, hook: Arc<dyn Hook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Replaces the HTTP transport (default: [`HttpTransport`]).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Replaces the clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the id generator (default: [`DerivedIds`]).
    pub fn ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = ids;
        self
    }

    /// Uses a capture ledger: every capture is reserved, recorded and resolved there (exactly once).
    pub fn store(mut self, store: Arc<dyn CaptureStore>) -> Self {
        self.store = Some(store);
        self.without_ledger = false;
        self
    }

    /// Builds an engine with no capture ledger, on purpose: nothing records what was sent, so
    /// the same idempotency key may capture twice on a platform that does not deduplicate it,
    /// and an answer lost to a timeout is not resolved later. For tests, benchmarks and tools
    /// that send nothing. Each report says so (a `ledger` step with the verdict `none`).
    /// Without this or [`EngineBuilder::store`], [`EngineBuilder::build`] refuses.
    pub fn without_ledger(mut self) -> Self {
        self.store = None;
        self.without_ledger = true;
        self
    }

    /// The merchant this engine captures for (idempotency keys are unique per merchant and platform).
    pub fn merchant(mut self, merchant: impl Into<String>) -> Self {
        self.merchant = merchant.into();
        self
    }

    /// Replaces the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the random source of retry jitter (default: seeded, reproducible).
    pub fn random(mut self, random: Arc<dyn Random>) -> Self {
        self.random = random;
        self
    }

    /// Replaces the sleeper every retry wait goes through (default: tokio's timer).
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The owner id this engine holds attempt leases under (default: unique per engine built in
    /// this process: `pid-<pid>-<n>`). Two engines sharing a ledger must have different ids.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Watches every capture: stage and capture latencies, outcomes (e.g. [`crate::Metrics`]).
    pub fn observer(mut self, observer: Arc<dyn crate::observe::Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The most the clocks of the engines sharing this ledger may disagree by (default 5
    /// minutes): a platform answering "no such capture" is believed only once the in-flight
    /// window and this margin have passed since the last send.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// The reconcile-on-start policy: how much of what the ledger holds unresolved
    /// [`Engine::reconcile_on_start`] resolves (default [`ReconcileOnStart::DEFAULT`]: at most
    /// 100 attempts and 10 seconds, expired leases only; [`ReconcileOnStart::OFF`] for none).
    pub fn reconcile_on_start(mut self, policy: ReconcileOnStart) -> Self {
        self.reconcile_on_start = policy;
        self
    }

    /// Test hook: abort the process at this point of every capture (crash tests).
    pub fn crash_at(mut self, at: Option<CrashPoint>) -> Self {
        self.crash_at = at;
        self
    }

    /// Checks that every platform has a plugin, its credentials and an allowed base URL, and
    /// that the engine has a ledger ([`EngineBuilder::store`]) or was asked to go without one
    /// ([`EngineBuilder::without_ledger`]).
    pub fn build(self) -> Result<Engine, EngineError> {
        if self.store.is_none() && !self.without_ledger {
            return Err(invalid(
                "store".into(),
                "no capture ledger: give one (EngineBuilder::store, or EngineBuilder::from_config, which opens the configured one) or ask for an engine without exactly-once captures (EngineBuilder::without_ledger)".into(),
            ));
        }
        let mut platforms = BTreeMap::new();
        for (id, setup) in self.platforms {
            let key = |k: &str| format!("platforms.{id}.{k}");
            let Some(plugin) = self.plugins.iter().find(|p| p.manifest().id == id) else {
                let loaded: Vec<String> = self
                    .plugins
                    .iter()
                    .map(|p| format!("{} ({})", p.manifest().id, p.path().display()))
                    .collect();
                return Err(invalid(
                    format!("platforms.{id}"),
                    format!("no loaded plugin provides connector `{id}`; loaded: [{}]", loaded.join(", ")),
                ));
            };
            let manifest = plugin.manifest();
            let base = url::Url::parse(&setup.base_url)
                .map_err(|e| invalid(key("base_url"), format!("`{}`: {e}", setup.base_url)))?;
            if !matches!(base.scheme(), "http" | "https") {
                return Err(invalid(
                    key("base_url"),
                    format!("scheme `{}` is not http or https", base.scheme()),
                ));
            }
            crate::config::check_base_url(&key("base_url"), &base)?;
            let host = base.host().ok_or_else(|| invalid(key("base_url"), "has no host".into()))?;
            let host_text = host.to_string();
            if !is_loopback(&host)
                && !host_allowed(&host_text, &manifest.allowed_hosts)
                && !host_allowed(&host_text, &setup.allowed_hosts)
            {
                return Err(invalid(
                    key("base_url"),
                    format!(
                        "host `{host}` is not loopback, not in the connector's allowed hosts {:?}, and not in this platform's `allowed_hosts` {:?}",
                        manifest.allowed_hosts, setup.allowed_hosts
                    ),
                ));
            }
            for name in &manifest.credentials {
                if !setup.credentials.contains_key(name) && !self.missing_credentials.contains_key(&id) {
                    return Err(invalid(
                        key("credentials"),
                        format!("connector `{id}` needs credential `{name}`"),
                    ));
                }
            }
            let origin = base.origin();
            platforms.insert(id, Platform { plugin: plugin.clone(), setup, origin });
        }
        let transport: Arc<dyn Transport> = match self.transport {
            Some(t) => t,
            None => Arc::new(HttpTransport::new()?),
        };
        // The `http` and `ledger` spans are made at these two trait boundaries (crate::trace).
        let transport: Arc<dyn Transport> = Arc::new(crate::trace::TracedTransport(transport));
        let mut hooks = self.hooks;
        hooks.sort_by(|a, b| (a.priority(), a.name()).cmp(&(b.priority(), b.name())));
        let scrubber =
            Scrubber::new(platforms.values().flat_map(|p: &Platform| p.setup.credentials.values()));
        let store = self.store.map(|s| {
            let traced = Arc::new(crate::trace::TracedStore(s)) as Arc<dyn CaptureStore>;
            Arc::new(ScrubbedStore::new(traced, scrubber.clone())) as Arc<dyn CaptureStore>
        });
        Ok(Engine {
            scrubber,
            platforms,
            rules: RwLock::new(self.rules),
            hooks,
            transport,
            clock: self.clock,
            ids: self.ids,
            store,
            missing_credentials: self.missing_credentials,
            merchant: self.merchant,
            retry: self.retry,
            random: self.random,
            sleeper: self.sleeper,
            owner: self.owner.unwrap_or_else(default_owner),
            max_clock_skew: self.max_clock_skew,
            crash_at: self.crash_at,
            observer: self.observer,
            reconcile_on_start: self.reconcile_on_start,
        })
    }
}

/// The default of [`EngineBuilder::max_clock_skew`].
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// An owner id unique to this engine among the engines built in this process, and to this
/// process among live processes (the pid).
fn default_owner() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("pid-{}-{n}", std::process::id())
}

/// The capture engine. Share it (`Arc`) across tasks; every method takes `&self`.
pub struct Engine {
    pub(crate) platforms: BTreeMap<String, Platform>,
    /// The rule set in use. A capture takes the `Arc` once and uses that set for both stages,
    /// so [`Engine::swap_rules`] never splits a capture between two versions.
    rules: RwLock<Arc<RuleSet>>,
    hooks: Vec<Arc<dyn Hook>>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    pub(crate) store: Option<Arc<dyn CaptureStore>>,
    missing_credentials: BTreeMap<String, (String, String)>,
    pub(crate) merchant: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) random: Arc<dyn Random>,
    pub(crate) sleeper: Arc<dyn Sleeper>,
    pub(crate) owner: String,
    pub(crate) max_clock_skew: Duration,
    pub(crate) crash_at: Option<CrashPoint>,
    observer: Option<Arc<dyn crate::observe::Observer>>,
    /// What [`Engine::reconcile_on_start`] examines.
    pub(crate) reconcile_on_start: ReconcileOnStart,
    /// Every configured secret, scrubbed from what leaves the engine (`scrub`).
    pub(crate) scrubber: Scrubber,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("platforms", &self.platforms.keys())
            .field("rules_version", &self.rules_version())
            .finish_non_exhaustive()
    }
}

/// What the pipeline accumulates for the report.
#[derive(Default)]
pub(crate) struct Run {
    pub(crate) steps: Vec<Step>,
    pub(crate) exchanges: Vec<Exchange>,
    /// The pre-validate decision so far, and every stage's tags, notes and follow-ups.
    merged: Merged,
    /// The span of the stage running, parent of the `step` events.
    stage_span: Option<tracing::Span>,
}

impl Run {
    pub(crate) fn step(
        &mut self,
        stage: Stage,
        source: StepSource,
        name: &str,
        version: Option<String>,
        verdict: &str,
        detail: Option<String>,
    ) {
        self.steps.push(Step {
            stage,
            source,
            name: name.into(),
            version,
            verdict: verdict.into(),
            decision: None,
            detail,
        });
        self.traced();
    }

    /// A `step` event for the step just added: names and verdicts, never the detail.
    fn traced(&self) {
        let Some(s) = self.steps.last() else { return };
        let stage = crate::observe::stage_name(s.stage);
        // No allocation: this runs for every step of every capture, traced or not.
        let source = s.source.as_str();
        match &self.stage_span {
            Some(span) => {
                tracing::info!(parent: span, stage, source, name = %s.name, verdict = %s.verdict, "step")
            }
            None => tracing::info!(stage, source, name = %s.name, verdict = %s.verdict, "step"),
        }
    }

    fn decision(
        &mut self,
        source: StepSource,
        name: &str,
        version: Option<String>,
        d: &Decision,
        detail: Option<String>,
    ) {
        // The decision itself carries the reason; `detail` is for what it does not say (errors).
        self.steps.push(Step {
            stage: Stage::PreValidate,
            source,
            name: name.into(),
            version,
            verdict: d.verdict().into(),
            decision: (*d != Decision::Allow).then(|| d.clone()),
            detail,
        });
        self.traced();
    }
}

/// The built-in checks of an amount against the order and the connector's capabilities.
/// Returns the first failing check as (check name, reject decision).
fn builtin_checks(req: &CaptureRequest, amount: Money, manifest: &Manifest) -> Vec<(&'static str, Decision)> {
    let reject = |code: &str, reason: String| Decision::Reject { code: code.into(), reason };
    let mut out = Vec::new();
    let caps = &manifest.capabilities;
    let cur = req.order.currency;
    out.push((
        "currency",
        if cur.exponent() > caps.max_currency_exponent {
            reject(
                "unsupported_currency",
                format!(
                    "{cur} has {} decimal places; {} amounts allow at most {}",
                    cur.exponent(),
                    manifest.name,
                    caps.max_currency_exponent
                ),
            )
        } else {
            Decision::Allow
        },
    ));
    let bounds = (|| -> Result<Decision, capture_core::MoneyError> {
        if amount.currency() != cur {
            return Ok(reject("currency_mismatch", format!("amount {amount} is not in the order currency {cur}")));
        }
        if amount.is_negative() || amount.is_zero() {
            return Ok(reject("invalid_amount", format!("amount {amount} must be greater than zero")));
        }
        let capturable = req.order.capturable()?;
        if amount > capturable {
            return Ok(reject(
                "amount_exceeds_capturable",
                format!(
                    "amount {amount} exceeds what is capturable: {capturable} (authorized {} minus captured {})",
                    req.order.authorized_total()?,
                    req.order.captured_total()?
                ),
            ));
        }
        for (i, p) in req.payments.iter().enumerate() {
            if let Some(auth) = req.order.payments.iter().find(|a| a.id == p.payment_id) {
                let left = req.order.payment_capturable(auth)?;
                if p.amount > left {
                    return Ok(reject(
                        "amount_exceeds_capturable",
                        format!("payments[{i}].amount {} exceeds what payment {} still allows: {left}", p.amount, p.payment_id),
                    ));
                }
            }
        }
        Ok(Decision::Allow)
    })()
    .unwrap_or_else(|e| reject("invalid_amount", e.to_string()));
    out.push(("bounds", bounds));

    let capturable = req.order.capturable().unwrap_or(amount);
    let partial = amount < capturable;
    let targets = target_payments(req, amount);
    let partial_check = if !partial {
        Decision::Allow
    } else {
        match caps.partial_capture {
            PartialCapture::Always => Decision::Allow,
            PartialCapture::Never => reject(
                "partial_capture_unsupported",
                format!("{} captures only the full amount ({capturable}); {amount} was asked", manifest.name),
            ),
            PartialCapture::PerPaymentMethod => {
                match targets.iter().find(|(p, _)| p.partial_capture == Some(false)) {
                    Some((p, _)) => reject(
                        "partial_capture_unsupported",
                        format!(
                            "payment {} ({}) does not allow partial capture; {amount} of {capturable} was asked",
                            p.id,
                            p.method.as_deref().unwrap_or("unknown method")
                        ),
                    ),
                    None => Decision::Allow,
                }
            }
        }
    };
    out.push(("partial_capture", partial_check));
    let too_many = caps.max_payments_per_call.is_some_and(|max| targets.len() > max as usize);
    let payments_check = if too_many {
        reject(
            "too_many_payments",
            format!(
                "{} captures at most {} payments per call; this capture spans {}",
                manifest.name,
                caps.max_payments_per_call.unwrap_or(0),
                targets.len()
            ),
        )
    } else if !caps.multiple_payments_per_call && targets.len() > 1 {
        reject(
            "multiple_payments_unsupported",
            format!(
                "{} captures one payment per call; this capture spans {} payments",
                manifest.name,
                targets.len()
            ),
        )
    } else {
        Decision::Allow
    };
    out.push(("payments", payments_check));
    out
}

/// The payments this capture takes money from, with amounts: the request's split if it gave one,
/// otherwise the order's payments in order, each up to what it still allows.
pub(crate) fn target_payments(
    req: &CaptureRequest,
    amount: Money,
) -> Vec<(&capture_core::AuthorizedPayment, Money)> {
    if !req.payments.is_empty() {
        return req
            .payments
            .iter()
            .filter_map(|p| req.order.payments.iter().find(|a| a.id == p.payment_id).map(|a| (a, p.amount)))
            .collect();
    }
    let mut left = amount;
    let mut out = Vec::new();
    for p in &req.order.payments {
        if left.is_zero() {
            break;
        }
        let room = req.order.payment_capturable(p).unwrap_or(p.amount);
        if room.is_zero() {
            continue;
        }
        let take = if room < left { room } else { left };
        out.push((p, take));
        left = left.checked_sub(take).unwrap_or(left);
    }
    out
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Version (content hash) of the rule set in use.
    pub fn rules_version(&self) -> String {
        self.current_rules().version().to_owned()
    }

    /// The rule set in use: its rules, version and limits, and how many Lua states it has built
    /// ([`RuleSet::states_built`]). Captures that start after a [`Engine::swap_rules`] use
    /// another set; this one stays valid for whoever holds it.
    pub fn rule_set(&self) -> Arc<RuleSet> {
        self.current_rules()
    }

    /// The rule set in use (a lock held only to clone the `Arc`).
    fn current_rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.rules.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the rule set while the engine runs and returns the version it replaced.
    /// Captures already running finish with the set they started with (both stages); every
    /// capture that starts afterwards uses `rules`. Each report's `rules_version` names the set
    /// that decided it.
    pub fn swap_rules(&self, rules: RuleSet) -> String {
        let new = Arc::new(rules);
        let old = std::mem::replace(&mut *self.rules.write().unwrap_or_else(PoisonError::into_inner), new);
        old.version().to_owned()
    }

    /// The scrubber of every configured secret: what the engine applies to its reports, ledger
    /// columns and messages, for hosts that print engine text of their own.
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    /// The manifests of the configured platforms' connectors.
    pub fn connectors(&self) -> impl Iterator<Item = (&str, &Plugin)> {
        self.platforms.iter().map(|(id, p)| (id.as_str(), p.plugin.as_ref()))
    }

    pub(crate) fn platform(&self, id: &str) -> Result<&Platform, CaptureError> {
        self.ready(id)?;
        self.platforms.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.platforms.keys().map(String::as_str).collect();
            RequestError::Invalid {
                field: "platform".into(),
                problem: format!("`{id}` is not a configured platform (configured: {})", known.join(", ")),
            }
            .into()
        })
    }

    /// Whether a capture on `platform` can be attempted: the platform is configured and its
    /// credentials are set. A host (or `capture batch`) can check the platforms it will use
    /// before it starts.
    pub fn ready(&self, platform: &str) -> Result<(), CaptureError> {
        if let Some((credential, var)) = self.missing_credentials.get(platform) {
            return Err(CaptureError::MissingCredential {
                platform: platform.to_owned(),
                credential: credential.clone(),
                var: var.clone(),
            });
        }
        if !self.platforms.contains_key(platform) {
            let known: Vec<&str> = self.platforms.keys().map(String::as_str).collect();
            return Err(RequestError::Invalid {
                field: "platform".into(),
                problem: format!(
                    "`{platform}` is not a configured platform (configured: {})",
                    known.join(", ")
                ),
            }
            .into());
        }
        Ok(())
    }

    /// Whether this engine records captures in a ledger (see [`EngineBuilder::without_ledger`]).
    pub fn has_ledger(&self) -> bool {
        self.store.is_some()
    }

    /// The capture ledger, if the engine has one (read-only uses: a recorded attempt by key).
    pub fn ledger(&self) -> Option<&Arc<dyn CaptureStore>> {
        self.store.as_ref()
    }

    /// The merchant this engine captures for.
    pub fn merchant(&self) -> &str {
        &self.merchant
    }

    /// Parses a JSON request and captures it.
    pub async fn capture_json(&self, json: &[u8]) -> Result<CaptureReport, CaptureError> {
        let request = CaptureRequest::from_json(json)?;
        self.capture(request).await
    }

    /// Runs the pipeline for one request and returns its report. Every failure after the request
    /// was accepted is an outcome in the report, not an error.
    pub async fn capture(&self, req: CaptureRequest) -> Result<CaptureReport, CaptureError> {
        let span = crate::trace::capture_span(&req);
        tracing::Instrument::instrument(self.capture_in(req, span.clone()), span).await
    }

    async fn capture_in(
        &self,
        req: CaptureRequest,
        span: tracing::Span,
    ) -> Result<CaptureReport, CaptureError> {
        use tracing::Instrument;
        // The id, once: a host's id generator need not be pure.
        let capture_id = self.ids.capture_id(&req);
        span.record("capture_id", capture_id.as_str());
        let platform = self.platform(&req.platform)?;
        let manifest = platform.plugin.manifest();
        let now = self.clock.now();
        // Monotonic time for observers only; never in the report.
        let started = std::time::Instant::now();
        let mut stage_started = started;
        let mut stage_done = |stage: Stage| {
            if let Some(o) = &self.observer {
                o.stage(&req.platform, stage, stage_started.elapsed());
            }
            stage_started = std::time::Instant::now();
        };
        // One rule set for the whole capture, whatever `swap_rules` does meanwhile.
        let rules = self.current_rules();
        let mut run =
            Run { stage_span: Some(crate::trace::stage_span(Stage::PreValidate)), ..Run::default() };
        let pre_span = run.stage_span.clone().unwrap_or_else(tracing::Span::none);
        let cur = req.order.currency;
        let capturable = req.order.capturable().unwrap_or_else(|_| Money::zero(cur));
        let mut amount = match req.amount {
            RequestedAmount::Full => capturable,
            RequestedAmount::Exact(m) => m,
        };

        // ---- pre-validate ----
        let outcome = 'pre: {
            if req.amount == RequestedAmount::Full && capturable.is_zero() {
                let d = Decision::Reject {
                    code: "nothing_to_capture".into(),
                    reason: format!("order {} has nothing left to capture", req.order.id),
                };
                run.decision(StepSource::Builtin, "bounds", None, &d, None);
                break 'pre Some(self.refusal("builtin:bounds", &d));
            }
            for (name, d) in builtin_checks(&req, amount, manifest) {
                run.decision(StepSource::Builtin, name, None, &d, None);
                if matches!(d, Decision::Reject { .. }) {
                    break 'pre Some(self.refusal(&format!("builtin:{name}"), &d));
                }
            }
            let ctx = HookContext { request: &req, amount, capturable, now };
            for hook in &self.hooks {
                let d = hook.pre_validate(&ctx).instrument(pre_span.clone()).await;
                run.decision(StepSource::Hook, hook.name(), hook.version(), &d, None);
                run.merged.decide(&format!("hook:{}", hook.name()), &d);
            }
            let verdicts =
                pre_span.in_scope(|| rules.decide(&RuleContext { request: &req, amount, capturable, now }));
            for v in &verdicts {
                run.decision(
                    StepSource::Rule,
                    &v.rule,
                    Some(v.hash.to_string()),
                    &v.decision,
                    v.error.clone().map(|e| format!("failed closed: {e}")),
                );
                run.merged.decide(&format!("rule:{}", v.rule), &v.decision);
                run.merged.collect(v);
            }
            let merged = run.merged.decision.clone();
            let by = run.merged.by.clone().unwrap_or_default();
            match &merged {
                Decision::Allow => None,
                Decision::Reject { .. } | Decision::Hold { .. } => Some(self.refusal(&by, &merged)),
                Decision::Adjust { amount: adjusted } => {
                    // An adjusted amount goes through the built-in checks again.
                    let adjusted = *adjusted;
                    let checks = builtin_checks(&req, adjusted, manifest);
                    if let Some((name, Decision::Reject { code, reason })) =
                        checks.into_iter().find(|(_, d)| matches!(d, Decision::Reject { .. }))
                    {
                        let d = Decision::Reject {
                            code,
                            reason: format!(
                                "{by} adjusted the amount to {adjusted}, which fails `{name}`: {reason}"
                            ),
                        };
                        run.decision(StepSource::Builtin, name, None, &d, None);
                        break 'pre Some(self.refusal(&format!("builtin:{name}"), &d));
                    }
                    run.step(
                        Stage::PreValidate,
                        StepSource::Builtin,
                        "adjusted_amount",
                        None,
                        "allow",
                        Some(format!("{by} set the amount to {adjusted}; built-in checks pass")),
                    );
                    amount = adjusted;
                    None
                }
            }
        };

        stage_done(Stage::PreValidate);

        // ---- capture ----
        let (outcome, anomaly) = match outcome {
            Some(o) => (o, None),
            None => {
                let stage = crate::trace::stage_span(Stage::Capture);
                run.stage_span = Some(stage.clone());
                if self.store.is_none() {
                    run.step(
                        Stage::Capture,
                        StepSource::Builtin,
                        "ledger",
                        None,
                        "none",
                        Some("no capture ledger (built without_ledger): the key is not recorded, a replay may capture again and a lost answer is not resolved later".into()),
                    );
                }
                self.capture_stage(platform, &req, amount, &capture_id, &mut run).instrument(stage).await?
            }
        };

        stage_done(Stage::Capture);

        // ---- post-capture ----
        let post_span = crate::trace::stage_span(Stage::PostCapture);
        run.stage_span = Some(post_span.clone());
        let ctx = HookContext { request: &req, amount, capturable, now };
        for hook in &self.hooks {
            let obs = hook.post_capture(&ctx, &outcome).instrument(post_span.clone()).await;
            run.step(Stage::PostCapture, StepSource::Hook, hook.name(), hook.version(), "observed", None);
            run.merged.tags.extend(obs.tags);
            run.merged.notes.extend(obs.notes);
        }
        let observed = post_span
            .in_scope(|| rules.observe(&RuleContext { request: &req, amount, capturable, now }, &outcome));
        for v in observed {
            let verdict = if v.error.is_some() { "error" } else { "observed" };
            run.step(
                Stage::PostCapture,
                StepSource::Rule,
                &v.rule,
                Some(v.hash.to_string()),
                verdict,
                v.error.clone(),
            );
            run.merged.collect(&v);
        }

        stage_done(Stage::PostCapture);
        let reached_amount = !matches!(outcome, Outcome::Rejected { .. });
        let report = self.scrubber.report(CaptureReport {
            schema: REPORT_SCHEMA,
            capture_id,
            started_at: now,
            platform: req.platform.clone(),
            order_id: req.order.id.clone(),
            idempotency_key: req.idempotency_key.clone(),
            requested: match req.amount {
                RequestedAmount::Full => Requested::Full(capture_core::report::FullMarker),
                RequestedAmount::Exact(m) => Requested::Exact(m),
            },
            amount: reached_amount.then_some(amount),
            rules_version: Some(rules.version().to_owned()),
            connector: Some(ConnectorRef { id: manifest.id.clone(), version: manifest.version.clone() }),
            steps: run.steps,
            exchanges: run.exchanges,
            outcome,
            tags: run.merged.tags.into_iter().collect(),
            notes: run.merged.notes,
            follow_ups: run.merged.follow_ups,
            anomalies: anomaly.into_iter().collect(),
        });
        if let Some(o) = &self.observer {
            o.capture(&report, started.elapsed());
        }
        Ok(report)
    }

    fn refusal(&self, by: &str, d: &Decision) -> Outcome {
        match d {
            Decision::Hold { reason } => Outcome::Held { by: by.into(), reason: reason.clone() },
            Decision::Reject { code, reason } => {
                Outcome::Rejected { by: by.into(), code: code.clone(), reason: reason.clone() }
            }
            other => Outcome::Rejected {
                by: by.into(),
                code: "internal".into(),
                reason: format!("unexpected refusal {other:?}"),
            },
        }
    }
}
