//! Helpers shared by the TensorFlow importer tests: a plain-.npy reader, running an imported
//! graph on the CPU backend, and output comparison.
#![allow(dead_code)]

use eas_engine::cpu::{CpuModel, CpuOptions};
use eas_engine::import::tf::{self, TfImport, TfOptions};
use eas_engine::{DType, Tensor};
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads a plain (non-object) .npy array: versions 1-3, little-endian, C order.
pub fn read_npy(path: &Path) -> Result<Tensor, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not an .npy file", path.display()));
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("npy version {v}")),
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).map_err(|e| e.to_string())?;
    let field = |key: &str| -> Result<&str, String> {
        let i = header.find(key).ok_or(format!("no {key} in {header}"))? + key.len();
        Ok(header[i..].trim_start_matches([':', ' ']))
    };
    let descr = field("'descr'")?;
    let descr = &descr[1..descr[1..].find('\'').ok_or("descr")? + 1];
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<f2" => DType::F16,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "<i2" => DType::I16,
        "|i1" => DType::I8,
        "|u1" => DType::U8,
        "|b1" => DType::Bool,
        d => return Err(format!("{}: dtype {d} not handled", path.display())),
    };
    if field("'fortran_order'")?.starts_with("True") {
        return Err("fortran order".into());
    }
    let shp = field("'shape'")?;
    let shp = &shp[1..shp.find(')').ok_or("shape")?];
    let shape: Vec<usize> = shp
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| format!("shape {s}: {e}")))
        .collect::<Result<_, _>>()?;
    Tensor::from_raw_bytes(dtype, &shape, &b[start + hlen..]).map_err(|e| e.to_string())
}

/// Imports a GraphDef with explicit feeds and fetches.
pub fn import(pb: &Path, inputs: &[String], outputs: &[String]) -> eas_engine::Result<TfImport> {
    tf::load_file(
        pb,
        &TfOptions {
            inputs: Some(inputs.to_vec()),
            outputs: Some(outputs.to_vec()),
            ..Default::default()
        },
    )
}

/// Runs an imported graph on the CPU backend (inputs in graph-input order).
pub fn run(imp: TfImport, inputs: Vec<Tensor>) -> eas_engine::Result<Vec<Tensor>> {
    let m = CpuModel::new(imp.graph, CpuOptions { threads: Some(1) })?;
    m.run(&inputs)
}

/// Compares an output with TF's: same dtype and shape; floats within `rel` of the larger of
/// |reference| and `floor` element-wise; everything else exact. Returns the worst error.
pub fn compare(got: &Tensor, want: &Tensor, rel: f64, floor: f64) -> Result<f64, String> {
    if got.dtype() != want.dtype() {
        return Err(format!("dtype {} vs TF's {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} vs TF's {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst = 0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if a.is_nan() && b.is_nan() {
            continue;
        }
        let err = (a - b).abs();
        let tol = if want.dtype().is_float() {
            rel * b.abs().max(floor)
        } else {
            0.0
        };
        if err.is_nan() || err > tol {
            return Err(format!(
                "element {i}: {a} vs TF's {b} (error {err:.3e}, tolerance {tol:.3e})"
            ));
        }
        worst = worst.max(err / b.abs().max(floor));
    }
    Ok(worst)
}

/// max |got - want| / max |want|: the error relative to the output's magnitude.
pub fn rel_to_magnitude(got: &Tensor, want: &Tensor) -> Result<f64, String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} vs TF's {:?}",
            got.shape(),
            want.shape()
        ));
    }
    // The gate's figures (eas_engine::accuracy), here relative to the magnitude itself
    // rather than to max(1, magnitude).
    let m =
        eas_engine::accuracy::OutputAccuracy::compare(&want.to_f64_vec(), &got.to_f64_vec(), false);
    if let Some(why) = m.mismatch {
        return Err(why);
    }
    Ok(m.max_abs_error / m.max_abs_reference.max(1e-30))
}
