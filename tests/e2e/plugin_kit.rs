//! The plugin SDK as a product: `capture plugins new` writes a connector folder that builds on its
//! own, passes `cargo test` (the in-process harness) and `capture plugins verify` at once; the SDK
//! crate builds when copied out of the repository. Both build out of the workspace, with cargo
//! `--offline` (the registry cache of the workspace's own build) and one shared target folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::plugins::scratch;
use crate::{artifact, artifacts, repo};

fn cargo(args: &[&str], manifest: &Path) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(args)
        .arg("--offline")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo")
}

/// The target folder shared by the builds out of the workspace.
fn target() -> PathBuf {
    artifacts().parent().expect("target/").join("external")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn plugins_new_writes_a_connector_that_tests_builds_and_verifies() {
    let dir = scratch("plugins-new");
    let out = Command::new(artifact("capture"))
        .args(["plugins", "new", "acme"])
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let project = dir.join("acme");
    for file in
        ["Cargo.toml", "src/lib.rs", "tests/conformance.rs", "README.md", "fixtures/capture-request-usd.json"]
    {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("read");
    assert!(manifest.contains("\n[workspace]\n"), "its own workspace:\n{manifest}");

    let tested = cargo(&["test"], &project.join("Cargo.toml"));
    assert!(tested.status.success(), "cargo test in the new folder:\n{}", text(&tested));
    assert!(text(&tested).contains("golden_fixtures_and_robustness ... ok"), "{}", text(&tested));
    let built = cargo(&["build"], &project.join("Cargo.toml"));
    assert!(built.status.success(), "cargo build:\n{}", text(&built));

    let lib = target().join("debug").join(format!(
        "{}acme_connector{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    // From inside the folder, as the README says: verify finds fixtures/ by itself.
    let verified = Command::new(artifact("capture"))
        .args(["plugins", "verify"])
        .arg(&lib)
        .current_dir(&project)
        .output()
        .expect("run");
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(text(&verified).contains("PASS  golden-fixtures        12 fixtures"), "{}", text(&verified));
    assert!(text(&verified).contains("connector `acme`"), "{}", text(&verified));
}

#[test]
fn plugins_new_refuses_a_bad_name_and_an_existing_folder() {
    let dir = scratch("plugins-new-refusals");
    for (name, expected) in [
        ("Acme", "NAME `Acme`: a connector id is lower-case letters"),
        ("9acme", "NAME `9acme`: a connector id is lower-case letters"),
    ] {
        let out = Command::new(artifact("capture"))
            .args(["plugins", "new", name])
            .arg("--dir")
            .arg(&dir)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
    }
    std::fs::create_dir_all(dir.join("taken")).expect("mkdir");
    let out = Command::new(artifact("capture"))
        .args(["plugins", "new", "taken"])
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
}

#[test]
fn the_sdk_builds_when_copied_out_of_the_repository() {
    let dir = scratch("sdk-copy");
    let sdk = repo().join("crates/connector-api");
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).expect("read");
    assert!(!manifest.contains(".workspace = true") && !manifest.contains("workspace = true"), "{manifest}");
    let copy = dir.join("capture-connector-api");
    copy_dir(&sdk, &copy);
    let built = cargo(&["build"], &copy.join("Cargo.toml"));
    assert!(built.status.success(), "the copied SDK does not build on its own:\n{}", text(&built));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}
