//! The transformer fusions (passes::FuseLayerNorm, FuseGelu, FuseActivations) on the zoo's
//! real exports: after `passes::default_o1()`, MiniLM (TF frozen GraphDef and its tf2onnx
//! ONNX) has 13 LayerNormalization and 6 Gelu nodes and no decomposed pieces left, and
//! PP-OCRv4 rec (paddle2onnx) has 5 LayerNormalization, 28 HardSwish and 7 Swish; the
//! optimized graphs still match the framework references (within 1e-4 of magnitude, as in
//! tf_zoo.rs) and the unoptimized engine (within 1e-5 of magnitude).
//! Needs EAS_ZOO_DIR=<cache>/models; without it the test says it was skipped.

mod tf_common;

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::{Graph, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use tf_common::{import, read_npy, rel_to_magnitude};

fn names(m: &Value, k: &str) -> Vec<String> {
    m[k].as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// Runs with the feeds in the manifest's input order (the exports keep it; tf2onnx names
/// them `name:0`).
fn run(g: Graph, feeds: &[Tensor]) -> Result<Vec<Tensor>, String> {
    let m = CpuModel::new(g, CpuOptions { threads: Some(1) }).map_err(|e| e.to_string())?;
    m.run(feeds).map_err(|e| e.to_string())
}

/// Optimizes, checks the op counts, and compares on every sample.
fn check(
    dir: &Path,
    load: &dyn Fn() -> Result<Graph, String>,
    reference: &str,
    want_ops: &[(&str, usize)],
    gone: &[&str],
) -> Result<String, String> {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let (ins, outs) = (names(&m, "inputs"), names(&m, "outputs"));
    let mut g = load()?;
    eas_engine::passes::optimize(&mut g, &eas_engine::passes::default_o1())
        .map_err(|e| format!("o1: {e}"))?;
    let mut h: HashMap<&str, usize> = g.op_histogram();
    // An activation fused into a conv epilogue (FuseConv, after these passes) still counts.
    for (_, node) in g.nodes() {
        if let Some(fc) = node.op.downcast_ref::<eas_engine::ops::FusedConv>() {
            let act = match fc.act {
                eas_engine::ops::Activation::HardSwish => "HardSwish",
                eas_engine::ops::Activation::Swish => "Swish",
                _ => continue,
            };
            *h.entry(act).or_default() += 1;
        }
    }
    for (op, n) in want_ops {
        if h.get(op).copied().unwrap_or(0) != *n {
            return Err(format!("want {n} {op}, got ops {h:?}"));
        }
    }
    for op in gone {
        if h.contains_key(op) {
            return Err(format!("{op} left after fusion: {h:?}"));
        }
    }
    let (mut worst_ref, mut worst_self) = (0f64, 0f64);
    for (k, s) in m["samples"].as_array().unwrap().iter().enumerate() {
        let feeds = ins
            .iter()
            .map(|n| read_npy(&dir.join(s["inputs"][n].as_str().unwrap())))
            .collect::<Result<Vec<_>, String>>()?;
        let got = run(g.clone(), &feeds).map_err(|e| format!("sample {k} optimized: {e}"))?;
        let plain = run(load()?, &feeds).map_err(|e| format!("sample {k} plain: {e}"))?;
        for (i, o) in outs.iter().enumerate() {
            let want = read_npy(&dir.join(s[reference][o].as_str().unwrap()))?;
            let e = rel_to_magnitude(&got[i], &want).map_err(|e| format!("sample {k} {o}: {e}"))?;
            if e > 1e-4 {
                return Err(format!(
                    "sample {k} {o}: error {e:.2e} of magnitude vs {reference}"
                ));
            }
            worst_ref = worst_ref.max(e);
            let e = rel_to_magnitude(&got[i], &plain[i])
                .map_err(|e| format!("sample {k} {o} vs unoptimized: {e}"))?;
            if e > 1e-5 {
                return Err(format!(
                    "sample {k} {o}: {e:.2e} of magnitude vs unoptimized"
                ));
            }
            worst_self = worst_self.max(e);
        }
    }
    Ok(format!(
        "worst {worst_ref:.2e} vs {reference}, {worst_self:.2e} vs unoptimized"
    ))
}

#[test]
fn zoo_transformer_fusions() {
    let Some(root) = std::env::var_os("EAS_ZOO_DIR") else {
        println!("skipped: EAS_ZOO_DIR not set (build the zoo with benches/zoo/build_zoo.py)");
        return;
    };
    let root = Path::new(&root);
    let minilm = root.join("minilm");
    let ppocr = root.join("ppocr_v4_rec");
    let onnx = |p: std::path::PathBuf| {
        move || eas_engine::import::onnx::load_file(&p).map_err(|e| e.to_string())
    };
    let bert_ops = [("LayerNormalization", 13), ("Gelu", 6)];
    let bert_gone = ["Erf", "ReduceMean", "GlobalAveragePool", "Pow"];
    let mut failed = Vec::new();
    let mut report = |name: &str, r: Result<String, String>| match r {
        Ok(s) => println!("{name}: ok, {s}"),
        Err(e) => {
            println!("{name}: FAILED: {e}");
            failed.push(format!("{name}: {e}"));
        }
    };
    if minilm.is_dir() {
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(minilm.join("manifest.json")).unwrap())
                .unwrap();
        let (ins, outs) = (names(&m, "inputs"), names(&m, "outputs"));
        let pb = minilm.join("frozen.pb");
        let tf = || {
            import(&pb, &ins, &outs)
                .map(|i| i.graph)
                .map_err(|e| e.to_string())
        };
        report(
            "minilm/frozen.pb",
            check(&minilm, &tf, "tf", &bert_ops, &bert_gone),
        );
        report(
            "minilm/model.onnx",
            check(
                &minilm,
                &onnx(minilm.join("model.onnx")),
                "ort",
                &bert_ops,
                &bert_gone,
            ),
        );
    } else {
        println!("minilm: not in the zoo, skipped");
    }
    if ppocr.is_dir() {
        report(
            "ppocr_v4_rec/model.onnx",
            check(
                &ppocr,
                &onnx(ppocr.join("model.onnx")),
                "ort",
                &[("LayerNormalization", 5), ("HardSwish", 28), ("Swish", 7)],
                // No ReduceMean check here: the squeeze-excite blocks' global pools run
                // channels-last, as keepdims ReduceMeans.
                &["Clip", "Div", "Pow", "Sigmoid"],
            ),
        );
    } else {
        println!("ppocr_v4_rec: not in the zoo, skipped");
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
