//! `blade run` and `blade bench` on original models and on optimized output folders.

mod common;

use std::process::{Command, Output};

use common::*;
use eas_blade::auxdata;

fn blade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check_against_reference(out: &std::path::Path) {
    let got = auxdata::read_path(out).unwrap();
    let want = reference_outputs();
    assert_eq!(got.samples.len(), want.len());
    for (g, w) in got.samples.iter().zip(&want) {
        let g = g.tensors();
        assert_eq!(g.len(), w.len());
        for ((gn, gt), (wn, wv)) in g.iter().zip(w) {
            assert_eq!(gn.unwrap(), wn);
            let e = rel_err(&gt.to_f64_vec().unwrap(), wv);
            assert!(e <= 1e-4, "{wn}: {e}");
        }
    }
}

#[test]
fn run_writes_outputs_as_feed_dicts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = example().join("test_data.npy");
    let out = tmp.path().join("outputs.npy");
    let o = blade(&[
        "run",
        example().join("frozen.pb").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    check_against_reference(&out);

    // Without --out: a short summary per sample and output.
    let o = blade(&[
        "run",
        example().join("frozen.pb").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(s.lines().count(), 3, "{s}");
    assert!(
        s.starts_with("sample 0: l2_normalize float32 [1, 128]"),
        "{s}"
    );
}

#[test]
fn run_and_bench_take_an_optimized_output_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("opt");
    let desc = service(example().to_str().unwrap(), example_items());
    eas_blade::optimize(&desc, &fast_options(&out, None)).unwrap();
    let data = example().join("test_data.npy");
    for model in [out.clone(), out.join("model")] {
        let res = tmp.path().join("res.npy");
        let o = blade(&[
            "run",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            res.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        check_against_reference(&res);
    }
    let o = blade(&[
        "bench",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--threads",
        "1",
        "--runs",
        "7",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["median_ms", "p90_ms", "runs", "threads"]);
    assert_eq!(v["runs"], 7);
    assert_eq!(v["threads"], 1);
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["p90_ms"].as_f64().unwrap() >= v["median_ms"].as_f64().unwrap());

    // --peak-memory adds one key; --save-optimized writes an artifact that loads as is.
    let saved = tmp.path().join("saved");
    let o = blade(&[
        "bench",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--runs",
        "2",
        "--json",
        "--peak-memory",
        "--save-optimized",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    if cfg!(target_os = "linux") {
        assert!(v["peak_rss_mib"].as_f64().unwrap() > 1.0, "{v}");
    }
    let o = blade(&[
        "bench",
        saved.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--runs",
        "2",
        "--profile",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("time per run by op type"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_without_data_synthesizes_inputs() {
    let o = blade(&[
        "bench",
        example().join("frozen.pb").to_str().unwrap(),
        "--runs",
        "3",
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("median"));
}

#[test]
fn bad_models_and_data_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = example().join("test_data.npy");
    let cases: Vec<(String, String, &str)> = vec![
        (
            tmp.path().join("nope.onnx").display().to_string(),
            data.display().to_string(),
            "nope.onnx",
        ),
        (
            tmp.path().display().to_string(),
            data.display().to_string(),
            "neither an optimizer output folder",
        ),
        (
            example().join("frozen.pb").display().to_string(),
            example().join("service.json").display().to_string(),
            "service.json",
        ),
        (
            example().join("frozen.pb").display().to_string(),
            example()
                .join("reference_outputs.npy")
                .display()
                .to_string(),
            "not an input of the model",
        ),
    ];
    for (model, data, want) in cases {
        let o = blade(&["run", &model, "--data", &data]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains(want), "{model} {data}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
