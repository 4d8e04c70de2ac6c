//! The committed schema (docs/service.schema.json) is the generated one, and the spec's
//! examples conform to it. Re-bless with `BLESS=1 cargo test -p eas-config --test schema`.

mod common;

use serde_json::{Value, json};

#[test]
fn committed_schema_is_fresh() {
    let path = common::root().join("docs/service.schema.json");
    let now = eas_config::schema_text();
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == now,
        "docs/service.schema.json is stale: run `BLESS=1 cargo test -p eas-config --test schema`"
    );
}

/// A small JSON Schema checker for the keywords schemars emits here (type, properties,
/// required, additionalProperties, items, $ref, anyOf/oneOf, enum, minimum). Returns the paths
/// that fail.
fn check(schema: &Value, root: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(s) = schema.as_object() else { return };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = root
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}"));
        check(target, root, v, path, errs);
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            _ => false,
        });
        if !ok {
            errs.push(format!("{path}: type {types:?}"));
            return;
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errs.push(format!("{path}: const {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!("{path}: enum"));
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errs.push(format!("{path}: minimum {min}"));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let passing = alts
                .iter()
                .filter(|a| {
                    let mut e = Vec::new();
                    check(a, root, v, path, &mut e);
                    e.is_empty()
                })
                .count();
            if passing == 0 || (key == "oneOf" && passing > 1) {
                errs.push(format!("{path}: {key} ({passing} alternatives match)"));
            }
        }
    }
    if let Value::Object(m) = v {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !m.contains_key(r.as_str().unwrap()) {
                errs.push(format!("{path}: required {r}"));
            }
        }
        for (k, val) in m {
            let p = format!("{path}/{k}");
            match props.and_then(|ps| ps.get(k)) {
                Some(ps) => check(ps, root, val, &p, errs),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => errs.push(format!("{p}: additional property")),
                    Some(ap @ Value::Object(_)) => check(ap, root, val, &p, errs),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(a), Some(items)) = (v, s.get("items")) {
        for (i, it) in a.iter().enumerate() {
            check(items, root, it, &format!("{path}/{i}"), errs);
        }
    }
}

fn schema_errors(doc: &Value) -> Vec<String> {
    let schema = eas_config::schema();
    let mut errs = Vec::new();
    check(&schema, &schema, doc, "", &mut errs);
    errs
}

#[test]
fn spec_examples_conform_to_the_schema() {
    for f in [
        "spec/without_plugin.json",
        "spec/basic.json",
        "spec/advanced.json",
        "spec/extra_keys.json",
        "spec/extra_keys_tf.json",
        "example/service.json",
    ] {
        let errs = schema_errors(&common::fixture_value(f));
        assert!(errs.is_empty(), "{f}: {errs:?}");
    }
}

#[test]
fn schema_checker_rejects_what_the_schema_forbids() {
    // Guards the checker above against passing everything.
    let mut doc = common::fixture_value("spec/advanced.json");
    common::set(&mut doc, "/plugins/0/gpu", json!("one"));
    common::set(&mut doc, "/metadata/instance", json!(0));
    common::set(
        &mut doc,
        "/plugins/0/config/model_info/frozen.pb/optimization_level",
        json!("o3"),
    );
    common::remove(&mut doc, "/plugins/0/command");
    let errs = schema_errors(&doc);
    for needle in [
        "/plugins/0/gpu",
        "/metadata/instance",
        "optimization_level",
        "required \"command\"",
    ] {
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "{needle} not in {errs:?}"
        );
    }
}
