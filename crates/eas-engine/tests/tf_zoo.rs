//! Every zoo model with a GraphDef (benches/zoo/build_zoo.py, in the cache dir) imports, runs
//! on the CPU backend and matches TensorFlow's outputs (and ONNX Runtime's, on the tf2onnx
//! conversion) within 1e-4 of their magnitude.
//! Needs EAS_ZOO_DIR=<cache>/models; without it the test says it was skipped.

mod tf_common;

use serde_json::Value;
use std::path::Path;
use tf_common::{import, read_npy, rel_to_magnitude, run};

fn check_model(dir: &Path) -> Result<String, String> {
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
    let mut worst = 0f64;
    let mut worst_ort = 0f64;
    for (k, s) in m["samples"].as_array().unwrap().iter().enumerate() {
        let imp = import(&pb, &ins, &outs).map_err(|e| e.to_string())?;
        let feeds = ins
            .iter()
            .map(|n| read_npy(&dir.join(s["inputs"][n].as_str().unwrap())))
            .collect::<Result<Vec<_>, _>>()?;
        let got = run(imp, feeds).map_err(|e| format!("sample {k}: {e}"))?;
        for (o, g) in outs.iter().zip(&got) {
            let want = read_npy(&dir.join(s["tf"][o].as_str().unwrap()))?;
            let err = rel_to_magnitude(g, &want).map_err(|e| format!("sample {k} {o}: {e}"))?;
            if err > 1e-4 {
                return Err(format!("sample {k} {o}: error {err:.2e} of magnitude"));
            }
            worst = worst.max(err);
            // The ONNX conversion of the same model, run by ONNX Runtime, agrees too.
            if let Some(f) = s["ort"][o].as_str() {
                let ort = read_npy(&dir.join(f))?;
                let e =
                    rel_to_magnitude(g, &ort).map_err(|e| format!("sample {k} {o} vs ORT: {e}"))?;
                if e > 1e-4 {
                    return Err(format!(
                        "sample {k} {o}: error {e:.2e} of magnitude vs ONNX Runtime"
                    ));
                }
                worst_ort = worst_ort.max(e);
            }
        }
    }
    // The engine's own ONNX import of the tf2onnx conversion agrees with its GraphDef import.
    let mut worst_onnx = None;
    if let Some(f) = m["files"]["onnx"].as_str() {
        let mut w = 0f64;
        for (k, s) in m["samples"].as_array().unwrap().iter().enumerate() {
            let g = match eas_engine::import::onnx::load_file(&dir.join(f)) {
                Ok(g) => g,
                Err(e) => {
                    println!("  (engine ONNX import of {f} not compared: {e})");
                    break;
                }
            };
            let feeds = ins
                .iter()
                .map(|n| read_npy(&dir.join(s["inputs"][n].as_str().unwrap())))
                .collect::<Result<Vec<_>, _>>()?;
            let onnx_out =
                eas_engine::cpu::CpuModel::new(g, eas_engine::cpu::CpuOptions { threads: Some(1) })
                    .and_then(|m| m.run(&feeds))
                    .map_err(|e| format!("sample {k}: engine on {f}: {e}"))?;
            let imp = import(&pb, &ins, &outs).map_err(|e| e.to_string())?;
            let tf_out = run(imp, feeds).map_err(|e| e.to_string())?;
            for (o, (a, b)) in outs.iter().zip(onnx_out.iter().zip(&tf_out)) {
                let e = rel_to_magnitude(a, b)
                    .map_err(|e| format!("sample {k} {o} ONNX vs GraphDef: {e}"))?;
                if e > 1e-4 {
                    return Err(format!(
                        "sample {k} {o}: ONNX and GraphDef imports differ by {e:.2e} of magnitude"
                    ));
                }
                w = w.max(e);
            }
            worst_onnx = Some(w);
        }
    }
    let onnx = worst_onnx.map_or("not compared".to_string(), |w| format!("{w:.2e}"));
    Ok(format!(
        "worst error {worst:.2e} of magnitude vs TensorFlow, {worst_ort:.2e} vs ONNX Runtime, \
         engine ONNX vs GraphDef {onnx}"
    ))
}

#[test]
fn zoo_graphdefs_match_tensorflow() {
    let Some(root) = std::env::var_os("EAS_ZOO_DIR") else {
        println!("skipped: EAS_ZOO_DIR not set (build the zoo with benches/zoo/build_zoo.py)");
        return;
    };
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("EAS_ZOO_DIR is not a directory")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            std::fs::read_to_string(p.join("manifest.json"))
                .map(|s| s.contains("\"graphdef\""))
                .unwrap_or(false)
        })
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no zoo model with a GraphDef under {}",
        Path::new(&root).display()
    );
    let mut failed = Vec::new();
    for d in &dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        match check_model(d) {
            Ok(s) => println!("{name}: ok, {s}"),
            Err(e) => {
                println!("{name}: FAILED: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
