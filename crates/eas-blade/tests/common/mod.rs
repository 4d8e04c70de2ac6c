//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use eas_blade::{BenchBudget, OptimizeOptions, auxdata, config::ServiceDescription};
use sha2::{Digest, Sha256};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn example() -> PathBuf {
    root().join("fixtures/example")
}

/// A service description for the bundled example's plugin, with `model_path` and the items
/// replaced.
pub fn service(model_path: &str, model_info: serde_json::Value) -> ServiceDescription {
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(example().join("service.json")).unwrap()).unwrap();
    v["model_path"] = model_path.into();
    if model_info.is_null() {
        v["plugins"][0].as_object_mut().unwrap().remove("config");
    } else {
        v["plugins"][0]["config"]["model_info"] = model_info;
    }
    eas_blade::config::load(&v.to_string())
        .expect("valid description")
        .description
}

/// The example's items (frozen.pb with its inputs, outputs and test data).
pub fn example_items() -> serde_json::Value {
    serde_json::json!({"frozen.pb": {"optimization_level": "o1", "inputs": ["input_ids_a_1"],
        "outputs": ["l2_normalize"], "test_data": "test_data.npy"}})
}

/// Options for fast tests: a short measurement budget, one thread, a private cache.
pub fn fast_options(out: &Path, cache: Option<&Path>) -> OptimizeOptions {
    let mut o = OptimizeOptions::new(out);
    o.cache_dir = cache.map(Path::to_path_buf);
    o.threads = Some(1);
    o.bench = BenchBudget {
        time: Duration::from_millis(20),
        min_runs: 3,
        max_runs: 200,
        warmup: 1,
    };
    o
}

/// Content hash of a folder tree (relative names and bytes), to prove nothing changed.
pub fn tree_hash(dir: &Path) -> String {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.strip_prefix(dir).unwrap().to_string_lossy().as_bytes());
        h.update(fs::read(&f).unwrap());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The example's reference outputs (TensorFlow), per sample: output name -> values.
pub fn reference_outputs() -> Vec<Vec<(String, Vec<f64>)>> {
    let ds = auxdata::read_path(example().join("reference_outputs.npy")).unwrap();
    ds.samples
        .iter()
        .map(|s| {
            s.tensors()
                .into_iter()
                .map(|(n, t)| (n.unwrap().to_string(), t.to_f64_vec().unwrap()))
                .collect()
        })
        .collect()
}

/// Max |a - b| / max(1, max |b|): the accuracy gate's figure (infinite when `a` and `b`
/// cannot be compared, e.g. NaN in different places).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    eas_blade::accuracy::OutputAccuracy::compare(b, a, false).rel_abs_error
}

/// "9.35 ms" -> 9.35
pub fn ms(s: &str) -> f64 {
    s.strip_suffix(" ms").unwrap().parse().unwrap()
}
