//! The layout passes on real NHWC CNNs: after `passes::default_o1()` the TensorFlow ResNet50
//! and MobileNetV2 GraphDefs keep almost none of the importer's NHWC<->NCHW transposes, no
//! Pad and no batch-norm Mul, and still match TensorFlow's outputs.
//! Needs EAS_ZOO_DIR=<cache>/models; without it the test says it was skipped.

mod tf_common;

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::passes;
use serde_json::Value;
use std::path::Path;
use tf_common::{import, read_npy, rel_to_magnitude};

fn check(dir: &Path) -> Result<String, String> {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let names = |k: &str| -> Vec<String> {
        m[k].as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (ins, outs) = (names("inputs"), names("outputs"));
    let pb = dir.join(m["files"]["graphdef"].as_str().unwrap());
    let mut g = import(&pb, &ins, &outs).map_err(|e| e.to_string())?.graph;
    let before = g.op_histogram();
    passes::optimize(&mut g, &passes::default_o1()).map_err(|e| format!("o1: {e}"))?;
    let after = g.op_histogram();
    let count =
        |h: &std::collections::HashMap<&str, usize>, k: &str| h.get(k).copied().unwrap_or(0);
    let (t0, t1) = (count(&before, "Transpose"), count(&after, "Transpose"));
    let (p0, p1) = (count(&before, "Pad"), count(&after, "Pad"));
    let (m0, m1) = (count(&before, "Mul"), count(&after, "Mul"));
    if t1 > 4 || p1 != 0 || m1 != 0 {
        return Err(format!(
            "after o1: {t1} Transpose (of {t0}), {p1} Pad (of {p0}), {m1} Mul (of {m0})"
        ));
    }
    let s0 = &m["samples"][0];
    let feeds = ins
        .iter()
        .map(|n| read_npy(&dir.join(s0["inputs"][n].as_str().unwrap())))
        .collect::<Result<Vec<_>, _>>()?;
    let got = CpuModel::new(g, CpuOptions { threads: Some(1) })
        .and_then(|m| m.run(&feeds))
        .map_err(|e| format!("optimized: {e}"))?;
    let mut worst = 0f64;
    for (o, g) in outs.iter().zip(&got) {
        let want = read_npy(&dir.join(s0["tf"][o].as_str().unwrap()))?;
        let e = rel_to_magnitude(g, &want).map_err(|e| format!("{o}: {e}"))?;
        if e > 1e-4 {
            return Err(format!("{o}: error {e:.2e} of magnitude vs TensorFlow"));
        }
        worst = worst.max(e);
    }
    Ok(format!(
        "Transpose {t0} -> {t1}, Pad {p0} -> {p1}, Mul {m0} -> {m1}, worst error {worst:.2e}"
    ))
}

#[test]
fn nhwc_cnns_lose_their_layout_noise() {
    let Some(root) = std::env::var_os("EAS_ZOO_DIR") else {
        println!("skipped: EAS_ZOO_DIR not set (ResNet50 and MobileNetV2 layout checks)");
        return;
    };
    let mut failed = Vec::new();
    for name in ["resnet50", "mobilenetv2"] {
        let d = Path::new(&root).join(name);
        if !d.join("manifest.json").exists() {
            failed.push(format!("{name}: not in {}", d.display()));
            continue;
        }
        match check(&d) {
            Ok(s) => println!("{name}: ok, {s}"),
            Err(e) => {
                println!("{name}: FAILED: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
