//! `capture-engine`: the embeddable payment-capture engine.
//!
//! A host hands the [`Engine`] a [`capture_core::CaptureRequest`]; the engine runs the pipeline
//! and returns a [`capture_core::CaptureReport`] that is byte-identical for identical inputs:
//!
//! 1. **pre-validate**: built-in checks (currency exponent, amount bounds against the order and
//!    earlier captures, the connector's capabilities), then host [`Hook`]s, then the merchant's
//!    Lua rules; decisions merge as reject > hold > adjust > allow. A rejected or held request
//!    never reaches the platform; an adjusted amount is checked again.
//! 2. **capture**: the connector plugin (a shared library, see [`Plugin`]) builds the HTTP request,
//!    the engine checks it (origin, method, headers, declared credentials), adds the secrets, sends
//!    it through the [`Transport`] with a timeout, and the plugin reads the answer.
//! 3. **post-capture**: hooks and rules observe the outcome (tags, notes, follow-ups).
//!
//! Time and ids are injected ([`Clock`], [`IdGenerator`]), so a run depends only on its inputs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use capture_engine::{EngineBuilder, EngineConfig};
//! let config = EngineConfig::load("capture.toml".as_ref())?;
//! // Opens the configured ledger (`capture.db` beside the file by default) and sets the merchant.
//! let engine = EngineBuilder::from_config(&config).await?.build()?;
//! let report = engine.capture_json(br#"{"platform":"optty","idempotency_key":"k1","amount":"full",
//!     "order":{"id":"ORD-1","currency":"USD","amount":"10.00","payments":[{"id":"p1","amount":"10.00"}]}}"#).await?;
//! println!("{}", report.to_json());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod clock;
mod config;
mod driver;
mod elf;
mod engine;
mod hooks;
mod io;
pub mod machine;
mod merged;
pub mod observe;
pub mod plugin;
mod policy;
pub mod scrub;
mod trace;
mod transport;

pub use clock::{Clock, DerivedIds, FixedClock, IdGenerator, SystemClock};
#[cfg(feature = "schema")]
pub use config::config_schema;
pub use config::{
    ConfigError, CredentialSource, EngineConfig, PlatformConfig, PluginEntry, RateBudget,
    ReconcileOnStartConfig, Secret,
};
pub use driver::{ReconcileBound, ReconcileOnStart, Reconciled, StartReconciled};
pub use engine::{
    CaptureError, DEFAULT_MAX_CLOCK_SKEW, Engine, EngineBuilder, EngineError, PlatformSetup, StatusQuery,
};
pub use hooks::{Hook, HookContext, Observation};
pub use merged::{Merged, describe_outcome};
pub use observe::{Metrics, Observer};
pub use plugin::{
    BuiltCall, BuiltCapture, DEFAULT_CALL_TIMEOUT, DEFAULT_SPIN, LoadOptions, MAX_PLUGIN_OUTPUT, MAX_SPIN,
    Plugin, PluginCallError, PluginFunction, PluginLoadError, sha256_file, verify_sha256,
};
pub use policy::{CrashPoint, Random, RetryPolicy, SeededRandom, Sleeper, TokioSleeper};
pub use scrub::{ScrubbedStore, Scrubber};
pub use transport::{HttpTransport, OutgoingRequest, Transport, TransportError};

pub use capture_rules::{Limits as RuleLimits, RuleSet, RulesError};
pub use capture_store::{self as store, AttemptState, CaptureStore};

/// The connector ABI and its JSON messages ([`Plugin`]'s calls take and return them), re-exported
/// so that a host or a conformance tool needs no second dependency.
pub use capture_connector_api as connector_api;
