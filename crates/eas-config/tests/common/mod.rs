#![allow(dead_code)]

use std::path::PathBuf;

use eas_config::{Diagnostic, Severity};
use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(rel: &str) -> String {
    let p = root().join("fixtures").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn fixture_value(rel: &str) -> Value {
    serde_json::from_str(&fixture(rel)).unwrap()
}

/// Sets the value at a JSON pointer, creating the last key if its parent exists.
pub fn set(doc: &mut Value, pointer: &str, v: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let last = last.replace("~1", "/").replace("~0", "~");
    match doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent {parent}"))
    {
        Value::Object(m) => {
            m.insert(last, v);
        }
        Value::Array(a) => {
            let i: usize = last.parse().unwrap();
            if i == a.len() { a.push(v) } else { a[i] = v }
        }
        _ => panic!("parent {parent} is not a container"),
    }
}

pub fn remove(doc: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    doc.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(last)
        .unwrap();
}

/// The one diagnostic at `path` whose message contains `needle`, with that severity.
pub fn expect(diags: &[Diagnostic], severity: Severity, path: &str, needle: &str) -> Diagnostic {
    let hits: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.path == path && d.full_message().contains(needle))
        .collect();
    assert!(
        hits.len() == 1,
        "expected one {severity} at {path} containing {needle:?}, got:\n{}",
        render(diags)
    );
    assert_eq!(hits[0].severity, severity, "{}", hits[0]);
    hits[0].clone()
}

pub fn render(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect()
}
