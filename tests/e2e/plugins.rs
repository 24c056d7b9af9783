//! The connector really is a shared library on disk, and the loader refuses what it must.

use std::path::PathBuf;
use std::process::Command;

use capture_engine::{Plugin, PluginLoadError};

use crate::{artifact, optty_plugin, repo};

/// A fresh empty folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capture-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn the_optty_plugin_loads_with_its_manifest() {
    let p = Plugin::load(&optty_plugin()).expect("loads");
    let m = p.manifest();
    assert_eq!((m.id.as_str(), m.schema), ("optty", 1));
    assert_eq!(m.credentials, vec!["bearer_token".to_owned()]);
    assert_eq!(m.capabilities.max_currency_exponent, 2);
    assert_eq!(p.abi_version(), (1, 3));
    assert!(p.uses_struct_messages(), "the SDK exports the 1.3 struct messages");
}

#[test]
fn a_removed_plugin_is_named() {
    let dir = scratch("removed");
    let copy = dir.join(optty_plugin().file_name().expect("file name"));
    std::fs::copy(optty_plugin(), &copy).expect("copy plugin");
    assert!(Plugin::load(&copy).is_ok());
    std::fs::remove_file(&copy).expect("remove plugin");
    let err = Plugin::load(&copy).expect_err("missing file");
    assert!(matches!(err, PluginLoadError::NotFound { .. }));
    assert!(err.to_string().contains(&copy.display().to_string()), "{err}");
}

#[test]
fn the_demo_fails_naming_the_missing_plugin_file() {
    let dir = scratch("demo-no-plugin");
    let out = Command::new(artifact("capture"))
        .args(["demo", "--plugins"])
        .arg(&dir)
        .current_dir(repo())
        .output()
        .expect("run capture demo");
    assert_eq!(out.status.code(), Some(9), "exit code for a plugin error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = dir.join(optty_plugin().file_name().expect("name"));
    assert!(stderr.contains(&expected.display().to_string()), "stderr should name the file: {stderr}");
    assert!(stderr.contains("no such file"), "{stderr}");
}

#[test]
fn another_abi_major_is_refused_with_a_clear_message() {
    let fixture = artifact(&format!(
        "{}capture_plugin_fixture_abi_major{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let err = Plugin::load(&fixture).expect_err("ABI 2 must be refused");
    assert!(matches!(err, PluginLoadError::AbiVersion { major: 2, minor: 0, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("built for connector ABI 2.0, this engine loads ABI 1.0 to 1.3"), "{msg}");
    assert!(msg.contains(&fixture.display().to_string()), "{msg}");
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = scratch("not-a-library");
    let fake = dir.join("libfake.so");
    std::fs::write(&fake, b"this is not an ELF file").expect("write");
    let err = Plugin::load(&fake).expect_err("not a library");
    assert!(matches!(err, PluginLoadError::NotALibrary { .. }), "{err:?}");
    assert!(err.to_string().contains("libfake.so"), "{err}");
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    // The rules crate's test binary is not a plugin; any shared library without the symbol will do.
    // libc is on every Linux machine this runs on.
    let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib/libc.so.6"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("a libc to load");
    let err = Plugin::load(&libc).expect_err("libc is no connector");
    assert!(matches!(err, PluginLoadError::MissingEntry { .. }), "{err:?}");
}

#[test]
fn a_self_hosted_platform_needs_its_host_allowed_by_the_operator() {
    let setup = |allowed: Vec<String>| capture_engine::PlatformSetup {
        allowed_hosts: allowed,
        base_url: "https://medusa.shop.example".into(),
        timeout: std::time::Duration::from_secs(5),
        settings: Default::default(),
        credentials: [("api_token".to_owned(), capture_engine::Secret::new("t"))].into(),
    };
    let build = |allowed: Vec<String>| {
        let plugin = Plugin::load(&crate::plugin_file("medusa")).expect("medusa loads");
        capture_engine::Engine::builder()
            .without_ledger()
            .plugin(std::sync::Arc::new(plugin))
            .expect("plugin")
            .platform("medusa", setup(allowed))
            .build()
            .map_err(|e| e.to_string())
    };
    let err = build(vec![]).expect_err("a foreign host is refused");
    assert!(err.contains("`medusa.shop.example` is not loopback"), "{err}");
    assert!(build(vec!["medusa.shop.example".into()]).is_ok(), "the operator allowed it");
}
