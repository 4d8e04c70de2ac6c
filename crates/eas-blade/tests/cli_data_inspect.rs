//! `blade data inspect`: the exact JSON shape, file order, and errors on stderr with exit 1.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/auxdata")
        .join(name)
}

fn inspect_json(file: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(["data", "inspect", "--json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The expected files carry an extra "head" per tensor for the library tests; the CLI prints
/// exactly the other keys.
fn expected_cli(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    for s in v["samples"].as_array_mut().unwrap() {
        for t in s["tensors"].as_array_mut().unwrap() {
            t.as_object_mut().unwrap().remove("head");
        }
    }
    v
}

fn assert_same(got: &Value, want: &Value) {
    let gs = got["samples"].as_array().unwrap();
    let ws = want["samples"].as_array().unwrap();
    assert_eq!(gs.len(), ws.len());
    for (g, w) in gs.iter().zip(ws) {
        let gt = g["tensors"].as_array().unwrap();
        let wt = w["tensors"].as_array().unwrap();
        assert_eq!(gt.len(), wt.len());
        for (g, w) in gt.iter().zip(wt) {
            let keys: Vec<&str> = g.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["name", "index", "dtype", "shape", "sum", "min", "max"]
            );
            for k in ["name", "index", "dtype", "shape"] {
                assert_eq!(g[k], w[k], "{k}");
            }
            for k in ["sum", "min", "max"] {
                match (g[k].as_f64(), w[k].as_f64()) {
                    (Some(a), Some(b)) => {
                        assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{k}: {a} vs {b}")
                    }
                    _ => assert_eq!(g[k], w[k], "{k}"),
                }
            }
        }
    }
}

#[test]
fn feed_dicts_keep_file_order() {
    let got = inspect_json(&fixture("numpy2/feed_dicts.npy"));
    assert_same(&got, &expected_cli("numpy2/feed_dicts.npy"));
    let names: Vec<&str> = got["samples"][0]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names[..3],
        ["image_placeholder:0", "threshold_placeholder:0", "ids:0"]
    );
    assert_eq!(got["samples"][0]["tensors"][4]["dtype"], "str");
    assert!(got["samples"][0]["tensors"][4]["sum"].is_null());
}

#[test]
fn plain_npy_is_one_unnamed_tensor() {
    let got = inspect_json(&fixture("numpy1/fortran_f4.npy"));
    assert_same(&got, &expected_cli("numpy1/fortran_f4.npy"));
    let t = &got["samples"][0]["tensors"][0];
    assert!(t["name"].is_null());
    assert_eq!(t["index"], 0);
    assert_eq!(t["shape"], serde_json::json!([3, 4]));
}

#[test]
fn npz_is_one_sample_one_tensor_per_key() {
    let got = inspect_json(&fixture("numpy2/deflated.npz"));
    assert_same(&got, &expected_cli("numpy2/deflated.npz"));
    assert_eq!(got["samples"].as_array().unwrap().len(), 1);
    assert_eq!(got["samples"][0]["tensors"][1]["name"], "idx");
}

#[test]
fn pth_tuples_are_positional() {
    for f in [
        "torch/spec_tuples.pth",
        "torch/views_shared.pth",
        "torch/all_dtypes.pth",
    ] {
        let got = inspect_json(&fixture(f));
        assert_same(&got, &expected_cli(f));
    }
    let got = inspect_json(&fixture("torch/all_dtypes.pth"));
    assert_eq!(got["samples"][0]["tensors"][3]["dtype"], "bfloat16");
}

#[test]
fn errors_go_to_stderr_with_exit_1() {
    for f in [
        "bad/forbidden_os_system.npy",
        "bad/dotdot.npz",
        "bad/random.bin",
        "does/not/exist.npy",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_blade"))
            .args(["data", "inspect", "--json"])
            .arg(fixture(f))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{f}");
        assert!(out.stdout.is_empty(), "{f}: nothing on stdout");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{f}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(["data", "inspect"])
        .arg(fixture("bad/forbidden_os_system.npy"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("posix.system"));
}

#[test]
fn human_output_mentions_small_calibration_sets() {
    let out = Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(["data", "inspect"])
        .arg(fixture("torch/spec_tuples.pth"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("3 sample(s)"), "{s}");
    assert!(s.contains("more than 100"), "{s}");
}

#[test]
fn a_closed_pipe_is_not_a_crash() {
    use eas_blade::auxdata::{Dataset, Sample, Tensor};
    // ~1 MB of JSON: more than a pipe buffers, so the write meets the closed pipe
    let t: Tensor = ndarray_scalar(1.5);
    let ds = Dataset {
        samples: vec![Sample::Positional(vec![t]); 5000],
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("many.pth");
    eas_blade::auxdata::write_pth(&p, &ds).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(["data", "inspect", "--json"])
        .arg(&p)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

fn ndarray_scalar(v: f32) -> eas_blade::auxdata::Tensor {
    use eas_blade::auxdata::ndarray::{ArrayD, IxDyn};
    eas_blade::auxdata::Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v))
}
