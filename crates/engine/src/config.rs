//! The configuration file (TOML): plugins, rules folder, platforms, credentials.
//!
//! ```toml
//! rules = "rules/demo"                         # optional; relative to this file
//! plugins = ["target/debug/libcapture_plugin_optty.so"]
//! plugin_dir = "target/debug"                  # optional: every lib*.so in it
//!
//! [platforms.optty]
//! base_url = "http://127.0.0.1:8080"
//! timeout_ms = 10000                           # optional, default 10000
//! settings = {}                                # optional, non-secret connector settings
//! credentials = { bearer_token = { env = "OPTTY_TOKEN" } }
//! ```
//!
//! Credentials are only ever named by environment variable; their values never appear in a
//! report, a log line or an error message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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

/// Where a credential comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSource {
    /// The environment variable that holds it.
    pub env: String,
}

/// One platform's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// The engine's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The merchant's rules folder.
    #[serde(default)]
    pub rules: Option<PathBuf>,
    /// Plugin files.
    #[serde(default)]
    pub plugins: Vec<PathBuf>,
    /// A folder whose `lib*.so` files are all loaded as plugins.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// Platforms by connector id.
    #[serde(default)]
    pub platforms: BTreeMap<String, PlatformConfig>,
}

impl EngineConfig {
    /// Reads a configuration file; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<EngineConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg = EngineConfig::parse(&text)
            .map_err(|message| ConfigError::Parse { path: path.into(), message })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Parses TOML text (paths stay as written).
    pub fn parse(text: &str) -> Result<EngineConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
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
        self.plugins.iter_mut().for_each(fix);
    }

    /// All plugin files: the explicit ones, then the `lib*.so` files of `plugin_dir`, sorted.
    pub fn plugin_files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut files = self.plugins.clone();
        if let Some(dir) = &self.plugin_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::Invalid {
                key: "plugin_dir".into(),
                problem: format!("{}: {e}", dir.display()),
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("lib") && name.ends_with(std::env::consts::DLL_SUFFIX)
                })
                .collect();
            found.sort();
            files.extend(found.into_iter().filter(|f| !self.plugins.contains(f)));
        }
        Ok(files)
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
    fn unknown_keys_are_named() {
        let e = EngineConfig::parse("rulez = 1").unwrap_err();
        assert!(e.contains("rulez"), "{e}");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret([REDACTED])");
    }
}
