//! `capture plugins new NAME`: a ready connector folder, built from the template, that compiles
//! on its own (its own workspace), passes `cargo test` (its golden fixtures and the robustness
//! checks, through `capture-connector-test`) and `capture plugins verify` at once.

use std::path::{Path, PathBuf};

use crate::{Exit, UsageError};

/// The template's source, copied into every new connector.
const TEMPLATE_LIB: &str = include_str!("../../../plugins/template/src/lib.rs");

/// The template's golden fixtures, copied as they are.
const TEMPLATE_FIXTURES: &[(&str, &str)] = &[
    (
        "capture-200-unreadable.json",
        include_str!("../../../plugins/template/fixtures/capture-200-unreadable.json"),
    ),
    ("capture-201-pending.json", include_str!("../../../plugins/template/fixtures/capture-201-pending.json")),
    (
        "capture-201-succeeded.json",
        include_str!("../../../plugins/template/fixtures/capture-201-succeeded.json"),
    ),
    (
        "capture-401-unauthorized.json",
        include_str!("../../../plugins/template/fixtures/capture-401-unauthorized.json"),
    ),
    (
        "capture-404-unknown-payment.json",
        include_str!("../../../plugins/template/fixtures/capture-404-unknown-payment.json"),
    ),
    (
        "capture-409-already-captured.json",
        include_str!("../../../plugins/template/fixtures/capture-409-already-captured.json"),
    ),
    ("capture-422-invalid.json", include_str!("../../../plugins/template/fixtures/capture-422-invalid.json")),
    (
        "capture-429-retry-after.json",
        include_str!("../../../plugins/template/fixtures/capture-429-retry-after.json"),
    ),
    (
        "capture-503-plain-text.json",
        include_str!("../../../plugins/template/fixtures/capture-503-plain-text.json"),
    ),
    (
        "capture-refused-two-payments.json",
        include_str!("../../../plugins/template/fixtures/capture-refused-two-payments.json"),
    ),
    (
        "capture-request-kwd-partial.json",
        include_str!("../../../plugins/template/fixtures/capture-request-kwd-partial.json"),
    ),
    ("capture-request-usd.json", include_str!("../../../plugins/template/fixtures/capture-request-usd.json")),
];

/// The SDK and harness folders of the tree this binary was built from (overridable with `--sdk`).
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../connector-api");

/// `acme-pay` -> `AcmePay`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The new connector's `src/lib.rs`: the template with its id, name and type renamed.
fn lib_rs(name: &str) -> String {
    let ty = camel(name);
    TEMPLATE_LIB
        .replacen(
            "//! The template connector: a minimal, working connector plugin to copy when you start a new one.",
            &format!("//! The `{name}` connector, made by `capture plugins new {name}` from the template. Replace the\n//! Example Pay requests and answers below with your platform's."),
            1,
        )
        .replace("id: \"template\".into()", &format!("id: \"{name}\".into()"))
        .replace("name: \"Example Pay (template)\".into()", &format!("name: \"{ty}\".into()"))
        .replace("pub struct Template;", &format!("pub struct {ty};"))
        .replace("export_connector!(Template);", &format!("export_connector!({ty});"))
        .replace("impl Connector for Template {", &format!("impl Connector for {ty} {{"))
        .replace("Template.", &format!("{ty}."))
        .replace("Template\n", &format!("{ty}\n"))
}

fn manifest(name: &str, sdk: &Path, harness: &Path) -> String {
    format!(
        r#"[package]
name = "{name}-connector"
version = "0.1.0"
edition = "2024"

[lib]
# cdylib: the plugin the engine loads; rlib: for the tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
capture-connector-api = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[dev-dependencies]
capture-connector-test = {{ path = {harness:?} }}

# Its own workspace, even when the folder sits inside another one.
[workspace]
"#,
        sdk = sdk.display().to_string(),
        harness = harness.display().to_string(),
    )
}

fn conformance_test(name: &str) -> String {
    let krate = format!("{}_connector", name.replace('-', "_"));
    let ty = camel(name);
    format!(
        r#"//! The golden fixtures of `fixtures/` and the robustness checks, in process (no engine needed).
//! `capture plugins verify` runs the same fixtures through the C ABI, with more checks.

#[test]
fn golden_fixtures_and_robustness() {{
    capture_connector_test::assert_conforms(&{krate}::{ty}, concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
}}
"#
    )
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name} connector

Made by `capture plugins new {name}` from the template (the made-up platform Example Pay).

```sh
cargo test                      # the golden fixtures and robustness checks, in process
cargo build                     # target/debug/lib{lib}_connector.so
capture plugins verify target/debug/lib{lib}_connector.so   # the conformance kit (reads fixtures/)
```

Then make it yours: the manifest (`id`, capabilities, `allowed_hosts`, credentials),
`build_capture` and `parse_capture` in `src/lib.rs`, and one fixture per documented request and
answer in `fixtures/` (the guide: plugins/README.md of the capture repository).
"#,
        lib = name.replace('-', "_")
    )
}

/// Writes the folder `DIR/NAME`.
pub(crate) fn run(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> anyhow::Result<u8> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(UsageError(format!(
            "NAME `{name}`: a connector id is lower-case letters, digits, `-` and `_`, starting with a letter"
        ))
        .into());
    }
    let sdk: PathBuf = match sdk {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(BUILT_SDK),
    };
    let sdk = sdk.canonicalize().map_err(|e| {
        UsageError(format!(
            "--sdk {}: {e}; give the folder of capture-connector-api (crates/connector-api of the capture repository)",
            sdk.display()
        ))
    })?;
    let harness = sdk.parent().map(|p| p.join("connector-test")).filter(|p| p.is_dir()).ok_or_else(|| {
        UsageError(format!(
            "{}: no connector-test folder beside the SDK (crates/connector-test)",
            sdk.display()
        ))
    })?;
    let target = dir.unwrap_or(Path::new(".")).join(name);
    if target.exists() {
        return Err(UsageError(format!(
            "{}: already exists; choose another NAME or --dir",
            target.display()
        ))
        .into());
    }
    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = target.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
    };
    write("Cargo.toml", &manifest(name, &sdk, &harness))?;
    write("src/lib.rs", &lib_rs(name))?;
    write("tests/conformance.rs", &conformance_test(name))?;
    write("README.md", &readme(name))?;
    for (file, text) in TEMPLATE_FIXTURES {
        write(&format!("fixtures/{file}"), text)?;
    }
    println!(
        "wrote {} (Cargo.toml, src/lib.rs, tests/conformance.rs, {} fixtures, README.md)",
        target.display(),
        TEMPLATE_FIXTURES.len()
    );
    println!(
        "next: cd {} && cargo test && cargo build && capture plugins verify target/debug/lib{}_connector.so",
        target.display(),
        name.replace('-', "_")
    );
    Ok(Exit::Ok.code())
}
