//! The checked-in schemas and references are what the Rust types give today. A type that changed
//! without `UPDATE_SCHEMAS=1 cargo test -p capture-schemas` fails here, naming the file.

use std::path::Path;

fn check(path: &Path, want: &str, stale: &mut Vec<String>) {
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the folder");
        }
        std::fs::write(path, want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(have) if have == want => {}
        Ok(_) => stale.push(format!("{} differs from the Rust types", path.display())),
        Err(e) => stale.push(format!("{}: {e}", path.display())),
    }
}

#[test]
fn the_checked_in_schemas_and_references_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (stem, what, schema) in capture_schemas::all() {
        let json = format!("{}\n", serde_json::to_string_pretty(&schema).expect("a schema is JSON"));
        check(&root.join("schemas").join(format!("{stem}.schema.json")), &json, &mut stale);
        check(
            &root.join("reference").join(format!("{stem}.md")),
            &capture_schemas::reference(stem, what, &schema),
            &mut stale,
        );
    }
    assert!(
        stale.is_empty(),
        "stale schemas (regenerate with `UPDATE_SCHEMAS=1 cargo test -p capture-schemas` and commit them):\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn the_request_schema_names_every_documented_field() {
    let schemas = capture_schemas::all();
    let request = &schemas.iter().find(|(s, _, _)| *s == "capture-request").expect("the request").2;
    let fields: Vec<&String> = request["properties"].as_object().expect("properties").keys().collect();
    assert_eq!(
        fields,
        ["amount", "description", "idempotency_key", "metadata", "order", "payments", "platform", "shipping"]
    );
    let order = &request["$defs"]["Order"]["properties"];
    for field in ["id", "currency", "amount", "surcharge", "payments", "captures"] {
        assert!(order.get(field).is_some(), "order.{field} is missing from the schema");
    }
    assert_eq!(request["additionalProperties"], serde_json::json!(false), "unknown fields are refused");
    let result = &schemas.iter().find(|(s, _, _)| *s == "capture-result").expect("the result").2;
    let kinds = &result["$defs"]["FailureKind"];
    assert!(kinds.to_string().contains("declined"), "{kinds}");
}
