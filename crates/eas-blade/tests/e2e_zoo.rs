//! End to end over the model zoo (benches/zoo/build_zoo.py, docs/zoo.md): every model, as a
//! frozen GraphDef and as ONNX, optimized at o1 on cpu with its test data; the optimized
//! model's outputs must stay within 1e-4 (relative to magnitude) of TensorFlow's.
//!
//! Gated: set EAS_ZOO_DIR to a built zoo (the folder holding `models/`, or `models/` itself);
//! EAS_ZOO_MODELS=a,b limits the models. Without it the test prints that it was skipped.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use eas_blade::{Model, auxdata, feeds::names_match, optimize};

fn zoo_models() -> Option<Vec<PathBuf>> {
    let dir = PathBuf::from(std::env::var_os("EAS_ZOO_DIR")?);
    let models = if dir.join("models").is_dir() {
        dir.join("models")
    } else {
        dir
    };
    let only: Option<Vec<String>> = std::env::var("EAS_ZOO_MODELS")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut v: Vec<PathBuf> = std::fs::read_dir(&models)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .filter(|p| {
            only.as_ref().is_none_or(|o| {
                o.iter()
                    .any(|n| p.file_name().unwrap().to_string_lossy() == n.as_str())
            })
        })
        .collect();
    v.sort();
    Some(v)
}

/// Outputs are compared with TensorFlow's, or ONNX Runtime's for models without a GraphDef.
/// `renames` maps the reference's output names to the model's (the zoo's `onnx_names`).
fn check(
    dir: &Path,
    file: &str,
    items: serde_json::Value,
    reference: &str,
    renames: &serde_json::Value,
) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let desc = service(dir.to_str().unwrap(), serde_json::json!({ file: items }));
    let report = optimize(&desc, &fast_options(&out, None))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
    for o in &report.accuracy.outputs {
        report.accuracy.bound.check(&o.figures).unwrap();
    }
    let model = Model::load(&out).unwrap();
    let data = auxdata::read_path(dir.join("test_data.npy")).unwrap();
    let want = auxdata::read_path(dir.join(reference)).unwrap();
    let mut worst = 0f64;
    for (s, w) in data.samples.iter().zip(&want.samples) {
        let got = model.run_sample(s).unwrap();
        for (wn, wt) in w.tensors() {
            let wn = wn.unwrap();
            let model_name = renames[wn].as_str().unwrap_or(wn);
            let (_, gt) = got
                .iter()
                .find(|(n, _)| names_match(n, model_name))
                .unwrap_or_else(|| panic!("{file}: no output {wn} in {got:?}"));
            let e = rel_err(&gt.to_f64_vec().unwrap(), &wt.to_f64_vec().unwrap());
            worst = worst.max(e);
            assert!(
                e <= 1e-4,
                "{}/{file} {wn}: {e} vs {reference}",
                dir.display()
            );
        }
    }
    eprintln!(
        "{}/{file}: {} -> {} (x{}), worst {worst:.2e} vs {reference}, {:.1} s",
        dir.file_name().unwrap().to_string_lossy(),
        report.overall.baseline,
        report.overall.optimized,
        report.overall.speedup,
        report.measurements.optimize_seconds
    );
}

#[test]
fn zoo_models_optimize_within_the_bound() {
    let Some(models) = zoo_models() else {
        eprintln!("skipped: set EAS_ZOO_DIR to a built zoo (benches/zoo/build_zoo.py) to run");
        return;
    };
    assert!(!models.is_empty(), "no models in EAS_ZOO_DIR");
    for dir in models {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let names = |k: &str| -> Vec<String> {
            m[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x["name"].as_str().unwrap().to_string())
                .collect()
        };
        let files = &m["files"];
        let test_data = files["test_data"].as_str().unwrap_or("test_data.npy");
        let reference = files["reference_tf"]
            .as_str()
            .or(files["reference_ort"].as_str())
            .expect("a reference");
        let mut checked = 0;
        if let Some(pb) = files["graphdef"].as_str() {
            checked += 1;
            check(
                &dir,
                pb,
                serde_json::json!({"inputs": names("inputs"), "outputs": names("outputs"),
                    "test_data": test_data}),
                reference,
                &serde_json::Value::Null,
            );
        }
        if let Some(onnx) = files["onnx"].as_str() {
            checked += 1;
            check(
                &dir,
                onnx,
                serde_json::json!({"test_data": test_data}),
                reference,
                &m["onnx_names"]["outputs"],
            );
        }
        assert!(
            checked > 0,
            "{}: the manifest names no model file",
            dir.display()
        );
    }
}
