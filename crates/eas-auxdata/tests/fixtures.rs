//! Every committed fixture made by real numpy 1.x, numpy 2.x and torch reads back as Python
//! described it in `<file>.expected.json` (scripts/auxdata/gen_fixtures.py).

use std::path::{Path, PathBuf};

use eas_auxdata::{Dataset, read_path};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/auxdata")
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        other => panic!("not a number: {other}"),
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a.is_nan() && b.is_nan() => true,
        (Some(a), Some(b)) if a.is_infinite() || b.is_infinite() => a == b,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs())),
        _ => false,
    }
}

fn check(file: &Path, ds: &Dataset, expected: &Value) {
    let samples = expected["samples"].as_array().unwrap();
    assert_eq!(
        ds.samples.len(),
        samples.len(),
        "{}: sample count",
        file.display()
    );
    for (si, (s, es)) in ds.samples.iter().zip(samples).enumerate() {
        let ets = es["tensors"].as_array().unwrap();
        let ts = s.tensors();
        assert_eq!(
            ts.len(),
            ets.len(),
            "{} sample {si}: tensor count",
            file.display()
        );
        for (ti, ((name, t), et)) in ts.iter().zip(ets).enumerate() {
            let at = format!("{} sample {si} tensor {ti}", file.display());
            assert_eq!(*name, et["name"].as_str(), "{at}: name");
            assert_eq!(
                t.dtype().name(),
                et["dtype"].as_str().unwrap(),
                "{at}: dtype"
            );
            let shape: Vec<usize> = et["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), shape.as_slice(), "{at}: shape");
            match t.stats() {
                None => assert!(et["sum"].is_null(), "{at}: strings have no sum"),
                Some(st) => {
                    assert!(
                        close(Some(st.sum), num(&et["sum"])),
                        "{at}: sum {} vs {}",
                        st.sum,
                        et["sum"]
                    );
                    assert!(
                        close(st.min, num(&et["min"])),
                        "{at}: min {:?} vs {}",
                        st.min,
                        et["min"]
                    );
                    assert!(
                        close(st.max, num(&et["max"])),
                        "{at}: max {:?} vs {}",
                        st.max,
                        et["max"]
                    );
                    let head: Vec<f64> = t.to_f64_vec().unwrap().into_iter().take(8).collect();
                    let ehead: Vec<Option<f64>> =
                        et["head"].as_array().unwrap().iter().map(num).collect();
                    assert_eq!(head.len(), ehead.len(), "{at}: head length");
                    for (a, b) in head.iter().zip(&ehead) {
                        assert!(close(Some(*a), *b), "{at}: head {head:?} vs {ehead:?}");
                    }
                }
            }
        }
    }
}

fn check_dir(dir: &str, min_files: usize) {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(data) = name.strip_suffix(".expected.json") else {
            continue;
        };
        let file = p.with_file_name(data);
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let ds = read_path(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        check(&file, &ds, &expected);
        n += 1;
    }
    assert!(n >= min_files, "{dir}: only {n} fixtures found");
}

#[test]
fn numpy1_fixtures() {
    check_dir("numpy1", 30);
}

#[test]
fn numpy2_fixtures() {
    check_dir("numpy2", 30);
}

#[test]
fn torch_fixtures() {
    check_dir("torch", 12);
}

#[test]
fn numpy_module_names_differ_between_versions() {
    // the fixtures really exercise both spellings of numpy's core module
    let one = std::fs::read(fixtures().join("numpy1/feed_dicts.npy")).unwrap();
    let two = std::fs::read(fixtures().join("numpy2/feed_dicts.npy")).unwrap();
    let has = |b: &[u8], s: &str| b.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has(&one, "numpy.core.multiarray") && !has(&one, "numpy._core"));
    assert!(has(&two, "numpy._core.multiarray"));
}
