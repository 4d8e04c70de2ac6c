//! Writers: what we write reads back the same here, and (when a Python is named by
//! EAS_AUXDATA_NUMPY_PYTHON / EAS_AUXDATA_TORCH_PYTHON, see scripts/auxdata/regen.sh) in real
//! numpy and torch.

use std::path::{Path, PathBuf};
use std::process::Command;

use eas_auxdata::{Dataset, Error, Sample, Tensor, read_path, write_npy_feed_dicts, write_pth};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use serde_json::Value;

fn arr<T: Clone>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn numeric_tensors() -> Vec<Tensor> {
    vec![
        arr(&[2, 2], vec![true, false, false, true]).into(),
        arr(&[3], vec![-128i8, 0, 127]).into(),
        arr(&[3], vec![-32768i16, 1, 32767]).into(),
        arr(&[2], vec![i32::MIN, i32::MAX]).into(),
        arr(&[2], vec![i64::MIN, i64::MAX]).into(),
        arr(&[2], vec![0u8, 255]).into(),
        arr(&[2], vec![0u16, 65535]).into(),
        arr(&[2], vec![0u32, u32::MAX]).into(),
        arr(&[2], vec![0u64, u64::MAX]).into(),
        arr(&[2], vec![f16::from_f32(0.5), f16::from_f32(-65504.0)]).into(),
        arr(
            &[1, 2, 3],
            vec![0.1f32, 2.0, -3.5, 1e30, f32::MIN_POSITIVE, 0.0],
        )
        .into(),
        arr(&[], vec![std::f64::consts::PI]).into(),
        arr(&[0, 4], Vec::<f32>::new()).into(),
        // Fortran-ordered in memory: written in logical order
        Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[2, 3]).f(), vec![1f32, 2., 3., 4., 5., 6.]).unwrap(),
        ),
    ]
}

fn feed_dataset() -> Dataset {
    let mut samples = Vec::new();
    for i in 0..3 {
        let mut feeds: Vec<(String, Tensor)> = numeric_tensors()
            .into_iter()
            .enumerate()
            .map(|(k, t)| (format!("feed_{k}:0"), t))
            .collect();
        feeds.push((
            "text:0".into(),
            arr(&[2], vec!["héllo".to_string(), format!("{i}")]).into(),
        ));
        feeds.push((
            "raw:0".into(),
            arr(&[2], vec![b"ab".to_vec(), vec![]]).into(),
        ));
        samples.push(Sample::Named(feeds));
    }
    samples.push(Sample::Positional(vec![arr(&[2], vec![1i64, 2]).into()]));
    Dataset { samples }
}

fn tuple_dataset() -> Dataset {
    let mut t = numeric_tensors();
    t.push(arr(&[2], vec![bf16::from_f32(1.5), bf16::from_f32(-2.0)]).into());
    Dataset {
        samples: vec![
            Sample::Positional(t),
            Sample::Positional(vec![arr(&[], vec![0.5f32]).into()]),
            Sample::Named(vec![("ids".into(), arr(&[3], vec![1i64, 2, 3]).into())]),
        ],
    }
}

fn no_temp_files_left(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp-"), "temporary file {n} left behind");
    }
}

#[test]
fn npy_feed_dicts_read_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("calib.npy");
    let ds = feed_dataset();
    write_npy_feed_dicts(&p, &ds).unwrap();
    assert_eq!(read_path(&p).unwrap(), ds);
    no_temp_files_left(dir.path());
}

#[test]
fn pth_tuples_read_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("calib.pth");
    let ds = tuple_dataset();
    write_pth(&p, &ds).unwrap();
    assert_eq!(read_path(&p).unwrap(), ds);
    no_temp_files_left(dir.path());
}

#[test]
fn writes_replace_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pth");
    std::fs::write(&p, b"old").unwrap();
    write_pth(&p, &tuple_dataset()).unwrap();
    assert_eq!(read_path(&p).unwrap(), tuple_dataset());
}

#[test]
fn unwritable_content_is_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bf: Tensor = arr(&[1], vec![bf16::from_f32(1.0)]).into();
    let ds = Dataset {
        samples: vec![Sample::Named(vec![("x".into(), bf)])],
    };
    let p = dir.path().join("a.npy");
    let e = write_npy_feed_dicts(&p, &ds).unwrap_err();
    assert!(
        matches!(e, Error::Write { .. }) && e.to_string().contains("bfloat16"),
        "{e}"
    );
    assert!(!p.exists());
    let s: Tensor = arr(&[1], vec!["a".to_string()]).into();
    let ds = Dataset {
        samples: vec![Sample::Positional(vec![s])],
    };
    let p = dir.path().join("a.pth");
    let e = write_pth(&p, &ds).unwrap_err();
    assert!(
        matches!(e, Error::Write { .. }) && e.to_string().contains("str"),
        "{e}"
    );
    assert!(!p.exists());
    let e = write_pth(dir.path().join("no/such/dir/a.pth"), &tuple_dataset()).unwrap_err();
    assert!(matches!(e, Error::Write { .. }), "{e}");
    no_temp_files_left(dir.path());
}

fn python(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "skipped: set {var} to a Python with the package (scripts/auxdata/regen.sh does)"
            );
            None
        }
    }
}

/// Runs scripts/auxdata/roundtrip.py and compares its view of the file with ours.
fn python_sees_the_same(py: &Path, kind: &str, file: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/auxdata/roundtrip.py");
    let out = Command::new(py)
        .arg(script)
        .arg(kind)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = read_path(file).unwrap();
    let samples = theirs["samples"].as_array().unwrap();
    assert_eq!(samples.len(), ours.samples.len());
    for (s, es) in ours.samples.iter().zip(samples) {
        let ets = es["tensors"].as_array().unwrap();
        assert_eq!(s.len(), ets.len());
        for ((name, t), et) in s.tensors().into_iter().zip(ets) {
            assert_eq!(name, et["name"].as_str());
            assert_eq!(t.dtype().name(), et["dtype"].as_str().unwrap(), "{name:?}");
            let shape: Vec<usize> = et["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), shape.as_slice(), "{name:?}");
            if let Some(st) = t.stats() {
                let sum: f64 = match &et["sum"] {
                    Value::String(s) => s.parse().unwrap(),
                    v => v.as_f64().unwrap(),
                };
                assert!(
                    (st.sum - sum).abs() <= 1e-9 * (1.0 + sum.abs()),
                    "{name:?}: {} vs {sum}",
                    st.sum
                );
            }
        }
    }
}

#[test]
fn real_numpy_reads_our_npy() {
    let Some(py) = python("EAS_AUXDATA_NUMPY_PYTHON") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("calib.npy");
    write_npy_feed_dicts(&p, &feed_dataset()).unwrap();
    python_sees_the_same(&py, "npy", &p);
}

#[test]
fn real_torch_reads_our_pth() {
    let Some(py) = python("EAS_AUXDATA_TORCH_PYTHON") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("calib.pth");
    write_pth(&p, &tuple_dataset()).unwrap();
    python_sees_the_same(&py, "torch", &p);
}
