//! The configuration file (TOML): plugins, rules folder, platforms, credentials.
//!
//! ```toml
//! rules = "rules/demo"                         # optional; relative to this file
//! plugins = ["target/debug/libcapture_plugin_optty.so"]
//! plugin_dir = "target/debug"                  # optional: every lib*.so in it
//! plugin_call_timeout_ms = 2000                # optional: the deadline of one plugin call
//! reconcile_on_start = { max_attempts = 100, max_duration_ms = 10000 }  # optional bounds
//! # or pin a plugin to the SHA-256 of its file (`capture plugins inspect FILE` prints it):
//! # plugins = [{ path = "plugins/libacme.so", sha256 = "9f86d081884c7d65...(64 hex digits)" }]
//!
//! [platforms.optty]
//! base_url = "http://127.0.0.1:8080"
//! timeout_ms = 10000                           # optional, default 10000
//! settings = {}                                # optional, non-secret connector settings
//! credentials = { bearer_token = { env = "OPTTY_TOKEN" } }
//! ```
//!
//! Credentials are only ever named by environment variable; their values never appear in a
//! report, a log line or an error message (the engine scrubs them, see `crate::scrub`). A
//! `base_url` with a user name or password is refused ([`EngineConfig::check`]).
//!
//! A plugin entry is a path, or a table `{ path, sha256 }`: a pinned file whose SHA-256 differs
//! is refused before it is loaded ([`ConfigError::Plugin`] with
//! [`PluginLoadError::Sha256Mismatch`], naming the file and both hashes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Error as _, MapAccess, Visitor};

use crate::plugin::{PluginLoadError, verify_sha256};

/// A secret value (a credential). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the transport only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// Errors reading the configuration. Each names the file, the key or the variable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid configuration {path}: {message}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A value is wrong.
    #[error("invalid configuration: `{key}`: {problem}")]
    Invalid {
        /// The key, e.g. `platforms.optty.base_url`.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A plugin file fails its `sha256` pin (or cannot be read to check it).
    #[error(transparent)]
    Plugin(#[from] PluginLoadError),
    /// A credential's environment variable is not set.
    #[error("platform `{platform}` credential `{credential}`: environment variable {var} is not set")]
    MissingCredential {
        /// The platform.
        platform: String,
        /// The credential's name.
        credential: String,
        /// The variable.
        var: String,
    },
}

/// Refuses a base URL that carries a user name or a password (`https://user:pass@host`): it
/// would be recorded in reports and the ledger, and sent as an `Authorization` header of its
/// own beside the connector's. The problem says where credentials go instead; the URL itself is
/// not repeated (it holds the password).
pub(crate) fn check_base_url(key: &str, base: &url::Url) -> Result<(), ConfigError> {
    if base.username().is_empty() && base.password().is_none() {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        problem: format!(
            "the URL has {} in it (`{}://USER{}@{}`); credentials never go in the URL: \
             put them in the platform's `credentials` table, each read from an environment \
             variable (e.g. `credentials = {{ bearer_token = {{ env = \"OPTTY_TOKEN\" }} }}`)",
            if base.password().is_some() { "a user name and password" } else { "a user name" },
            base.scheme(),
            if base.password().is_some() { ":PASSWORD" } else { "" },
            base.host_str().unwrap_or("host"),
        ),
    })
}

/// Where a credential comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CredentialSource {
    /// The environment variable that holds it.
    pub env: String,
}

/// One platform's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Base URL of the platform's API (the emulator's, or the real one).
    pub base_url: String,
    /// Timeout for one HTTP exchange, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Non-secret settings handed to the connector (e.g. `store_hash`).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Credentials by name, from environment variables.
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialSource>,
    /// Hosts allowed for this platform beyond the connector's allow-list (self-hosted
    /// platforms such as Medusa: `allowed_hosts = ["shop.example.com"]`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How fast a batch may call this platform (`capture batch`): a token bucket shared by
    /// the whole batch. `None`: no limit beyond the batch's concurrency.
    #[serde(default)]
    pub rate: Option<RateBudget>,
}

/// A platform's rate budget: `per_second` captures per second on average, bursts of up to
/// `burst` (default: `per_second`).
///
/// ```toml
/// [platforms.optty]
/// rate = { per_second = 20, burst = 5 }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RateBudget {
    /// Captures per second, on average (at least 1).
    pub per_second: u32,
    /// Most captures started at once after an idle spell (default: `per_second`).
    #[serde(default)]
    pub burst: Option<u32>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// A plugin file of the configuration, optionally pinned to its SHA-256.
///
/// In TOML, either a path (`"target/debug/libx.so"`) or a table
/// `{ path = "target/debug/libx.so", sha256 = "<64 hex digits>" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEntry {
    /// The library file.
    pub path: PathBuf,
    /// The SHA-256 its content must have (64 lower-case hex digits), if pinned.
    pub sha256: Option<String>,
}

impl PluginEntry {
    /// An unpinned entry.
    pub fn new(path: impl Into<PathBuf>) -> PluginEntry {
        PluginEntry { path: path.into(), sha256: None }
    }
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct PinnedPlugin {
    /// The library file (relative to the configuration file).
    path: PathBuf,
    /// The SHA-256 its content must have (64 hexadecimal digits; `capture plugins inspect` prints it).
    #[serde(default)]
    sha256: Option<String>,
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for PluginEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PluginEntry".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let pinned = generator.subschema_for::<PinnedPlugin>();
        schemars::json_schema!({
            "description": "A plugin file: a path, or a table `{ path, sha256 }` that pins its SHA-256",
            "anyOf": [{"type": "string"}, pinned]
        })
    }
}

/// The JSON Schema of the configuration file (TOML's data model: `capture.toml`).
#[cfg(feature = "schema")]
pub fn config_schema() -> schemars::Schema {
    schemars::schema_for!(EngineConfig)
}

impl<'de> Deserialize<'de> for PluginEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PluginEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a plugin file path, or a table { path = \"...\", sha256 = \"...\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PluginEntry, E> {
                Ok(PluginEntry::new(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PluginEntry, A::Error> {
                let raw = PinnedPlugin::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let sha256 = match raw.sha256 {
                    None => None,
                    Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        Some(h.to_ascii_lowercase())
                    }
                    Some(h) => {
                        return Err(A::Error::custom(format!(
                            "plugin {}: sha256 `{h}` is not 64 hexadecimal digits",
                            raw.path.display()
                        )));
                    }
                };
                Ok(PluginEntry { path: raw.path, sha256 })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[reconcile_on_start]`: the bounds of [`crate::ReconcileOnStart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReconcileOnStartConfig {
    /// At most this many attempts are examined, oldest first (default 100; 0: none, what waits
    /// is only counted).
    #[serde(default)]
    pub max_attempts: Option<usize>,
    /// No attempt is started once this many milliseconds have passed since the pass began
    /// (default 10000; an attempt started is finished).
    #[serde(default)]
    pub max_duration_ms: Option<u64>,
    /// Also take over attempts whose lease was taken at least this many seconds ago, expired or
    /// not (their holder is known to be dead). Default: only free or expired leases.
    #[serde(default)]
    pub takeover_after_s: Option<u64>,
}

/// The engine's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The merchant's rules folder.
    #[serde(default)]
    pub rules: Option<PathBuf>,
    /// Plugin files, each optionally pinned to its SHA-256.
    #[serde(default)]
    pub plugins: Vec<PluginEntry>,
    /// A folder whose `lib*.so` files are all loaded as plugins.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// Platforms by connector id.
    #[serde(default)]
    pub platforms: BTreeMap<String, PlatformConfig>,
    /// The capture ledger: a SQLite file (relative to this file; default `capture.db`), a
    /// `postgres://` URL without a password, or `env:VAR` to read the URL (password included)
    /// from an environment variable.
    #[serde(default)]
    pub store: Option<String>,
    /// The merchant this engine captures for (default `default`).
    #[serde(default)]
    pub merchant: Option<String>,
    /// The deadline of one plugin call, in milliseconds (default 2000): a call that overruns
    /// fails its capture and marks the plugin unhealthy.
    #[serde(default)]
    pub plugin_call_timeout_ms: Option<u64>,
    /// How much of what the ledger holds unresolved a starting engine resolves (`capture run`,
    /// `serve` and `batch` before their first capture); absent keys keep the defaults.
    #[serde(default)]
    pub reconcile_on_start: Option<ReconcileOnStartConfig>,
    /// The folder the file was read from ([`EngineConfig::load`] sets it): a relative or default
    /// SQLite ledger lives there. `None` (a configuration built in code): the current directory.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl EngineConfig {
    /// The ledger target: a PostgreSQL URL, or the SQLite file made absolute against `base`.
    pub fn store_target(&self, base: &Path) -> Result<String, ConfigError> {
        Ok(match &self.store {
            Some(s) if s.starts_with("env:") => {
                let var = &s[4..];
                std::env::var(var).map_err(|_| ConfigError::Invalid {
                    key: "store".into(),
                    problem: format!("environment variable {var} is not set"),
                })?
            }
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => s.clone(),
            Some(s) => {
                let p = Path::new(s);
                if p.is_relative() { base.join(p).display().to_string() } else { s.clone() }
            }
            None => base.join("capture.db").display().to_string(),
        })
    }

    /// Reads a configuration file; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<EngineConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg = EngineConfig::parse(&text)
            .map_err(|message| ConfigError::Parse { path: path.into(), message })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.check()?;
        cfg.base_dir = Some(base.to_path_buf());
        Ok(cfg)
    }

    /// Checks what can be checked without loading anything: every platform's `base_url` parses
    /// and carries no credentials.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (id, p) in &self.platforms {
            let key = format!("platforms.{id}.base_url");
            let base = url::Url::parse(&p.base_url).map_err(|e| ConfigError::Invalid {
                key: key.clone(),
                problem: format!("not an absolute URL: {e}"),
            })?;
            check_base_url(&key, &base)?;
        }
        Ok(())
    }

    /// Parses TOML text (paths stay as written).
    pub fn parse(text: &str) -> Result<EngineConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        // A configuration named without a folder (`capture.toml`) has the empty parent: its
        // files are relative to `.`, written out so that a plugin's path is never a bare name.
        let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(r) = self.rules.as_mut() {
            fix(r);
        }
        if let Some(d) = self.plugin_dir.as_mut() {
            fix(d);
        }
        self.plugins.iter_mut().for_each(|e| fix(&mut e.path));
    }

    /// The reconcile-on-start policy this configuration sets: [`crate::ReconcileOnStart::DEFAULT`]
    /// with each key of `[reconcile_on_start]` that is given.
    pub fn reconcile_on_start_policy(&self) -> crate::ReconcileOnStart {
        let mut policy = crate::ReconcileOnStart::DEFAULT;
        if let Some(c) = self.reconcile_on_start {
            if let Some(n) = c.max_attempts {
                policy.max_attempts = n;
            }
            if let Some(ms) = c.max_duration_ms {
                policy.max_duration = std::time::Duration::from_millis(ms);
            }
            if let Some(s) = c.takeover_after_s {
                policy.takeover_after = Some(std::time::Duration::from_secs(s));
            }
        }
        policy
    }

    /// How every plugin is loaded for this configuration, per entry (pin and call timeout).
    pub fn load_options(&self, entry: &PluginEntry) -> crate::plugin::LoadOptions {
        let mut options = crate::plugin::LoadOptions::default();
        if let Some(ms) = self.plugin_call_timeout_ms {
            options = options.call_timeout(std::time::Duration::from_millis(ms));
        }
        match &entry.sha256 {
            Some(pin) => options.sha256(pin.clone()),
            None => options,
        }
    }

    /// All plugin entries: the explicit ones (with their pins), then the `lib*.so` files of
    /// `plugin_dir`, sorted. Nothing is read here: the loader checks each pin on the bytes it
    /// loads ([`crate::Plugin::load_with`]).
    pub fn plugin_entries(&self) -> Result<Vec<PluginEntry>, ConfigError> {
        let mut entries = self.plugins.clone();
        if let Some(dir) = &self.plugin_dir {
            let listed = std::fs::read_dir(dir).map_err(|e| ConfigError::Invalid {
                key: "plugin_dir".into(),
                problem: format!("{}: {e}", dir.display()),
            })?;
            let mut found: Vec<PathBuf> = listed
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("lib") && name.ends_with(std::env::consts::DLL_SUFFIX)
                })
                .collect();
            found.sort();
            for f in found {
                if !entries.iter().any(|e| e.path == f) {
                    entries.push(PluginEntry::new(f));
                }
            }
        }
        Ok(entries)
    }

    /// All plugin files, as [`EngineConfig::plugin_entries`] lists them, every pin checked.
    ///
    /// Every pinned file is hashed here, before anything is loaded: a file whose SHA-256 is not
    /// its pin is [`ConfigError::Plugin`] ([`PluginLoadError::Sha256Mismatch`]). For listing and
    /// checking only: loading goes through [`crate::Plugin::load_with`], which hashes the very
    /// bytes it loads.
    pub fn plugin_files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let entries = self.plugin_entries()?;
        for entry in &entries {
            if let Some(pin) = &entry.sha256 {
                verify_sha256(&entry.path, pin)?;
            }
        }
        Ok(entries.into_iter().map(|e| e.path).collect())
    }
}

impl PlatformConfig {
    /// Reads every credential from its environment variable.
    pub fn resolve_credentials(&self, platform: &str) -> Result<BTreeMap<String, Secret>, ConfigError> {
        self.credentials
            .iter()
            .map(|(name, src)| match std::env::var(&src.env) {
                Ok(v) if !v.is_empty() => Ok((name.clone(), Secret::new(v))),
                _ => Err(ConfigError::MissingCredential {
                    platform: platform.into(),
                    credential: name.clone(),
                    var: src.env.clone(),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let cfg = EngineConfig::parse(
            r#"
            rules = "rules/demo"
            plugins = ["a.so"]
            [platforms.optty]
            base_url = "http://127.0.0.1:1"
            credentials = { bearer_token = { env = "X" } }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.platforms["optty"].timeout_ms, 10_000);
        assert_eq!(cfg.platforms["optty"].credentials["bearer_token"].env, "X");
    }

    #[test]
    fn plugins_are_paths_or_pinned_tables() {
        let pin = "AB".repeat(32);
        let cfg = EngineConfig::parse(&format!(
            r#"plugins = ["a.so", {{ path = "b.so", sha256 = "{pin}" }}, {{ path = "c.so" }}]"#
        ))
        .unwrap();
        assert_eq!(
            cfg.plugins,
            vec![
                PluginEntry::new("a.so"),
                PluginEntry { path: "b.so".into(), sha256: Some("ab".repeat(32)) },
                PluginEntry::new("c.so"),
            ]
        );
        let e = EngineConfig::parse(r#"plugins = [{ path = "b.so", sha256 = "abc" }]"#).unwrap_err();
        assert!(e.contains("b.so: sha256 `abc` is not 64 hexadecimal digits"), "{e}");
        let e = EngineConfig::parse(r#"plugins = [{ path = "b.so", sha = "abc" }]"#).unwrap_err();
        assert!(e.contains("unknown field `sha`"), "{e}");
    }

    #[test]
    fn a_pinned_file_with_another_hash_is_refused() {
        let dir = std::env::temp_dir().join(format!("capture-config-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("libpinned.so");
        std::fs::write(&file, b"abc").unwrap();
        // SHA-256("abc").
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let mut cfg = EngineConfig {
            plugins: vec![PluginEntry { path: file.clone(), sha256: Some(good.into()) }],
            ..EngineConfig::default()
        };
        assert_eq!(cfg.plugin_files().unwrap(), vec![file.clone()]);
        let bad = "0".repeat(64);
        cfg.plugins[0].sha256 = Some(bad.clone());
        let e = cfg.plugin_files().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Plugin(PluginLoadError::Sha256Mismatch { path, expected, actual })
                if *path == file && *expected == bad && actual == good),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&file.display().to_string()) && text.contains(good) && text.contains(&bad),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = EngineConfig::parse("rulez = 1").unwrap_err();
        assert!(e.contains("rulez"), "{e}");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret([REDACTED])");
    }
}
