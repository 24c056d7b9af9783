//! The template's golden fixtures and the robustness checks, in process, through the SDK's test
//! harness (what `capture plugins new` gives every new connector).

#[test]
fn golden_fixtures_and_robustness() {
    capture_connector_test::assert_conforms(
        &capture_plugin_template::Template,
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"),
    );
}

#[test]
fn a_wrong_fixture_is_named_with_the_field_that_differs() {
    let dir = std::env::temp_dir().join(format!("capture-template-wrong-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/capture-request-usd.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(good).expect("read")).expect("json");
    doc["request"]["method"] = serde_json::json!("PUT");
    std::fs::write(dir.join("wrong.json"), doc.to_string()).expect("write");
    let problems =
        capture_connector_test::golden(&capture_plugin_template::Template, &dir).expect_err("differs");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].subject, "wrong.json");
    assert_eq!(problems[0].what, r#"`.method`: expected "PUT", got "POST""#);
}
