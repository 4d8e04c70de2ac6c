//! TensorProto -> Tensor, including external data confined to the model directory.

use super::proto::{TensorProto, data_type as dt};
use crate::dtype::DType;
use crate::tensor::{Tensor, checked_volume};
use crate::{Error, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// ONNX element type -> DType.
pub fn dtype_from_onnx(t: i32) -> Result<DType> {
    Ok(match t {
        dt::FLOAT => DType::F32,
        dt::UINT8 => DType::U8,
        dt::INT8 => DType::I8,
        dt::INT16 => DType::I16,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        dt::BOOL => DType::Bool,
        dt::FLOAT16 => DType::F16,
        dt::DOUBLE => DType::F64,
        dt::BFLOAT16 => DType::BF16,
        dt::STRING => return Err(Error::unsupported("string tensors")),
        dt::UINT16 | dt::UINT32 | dt::UINT64 => {
            return Err(Error::unsupported(format!(
                "ONNX element type {t} (unsigned 16/32/64-bit)"
            )));
        }
        other => return Err(Error::unsupported(format!("ONNX element type {other}"))),
    })
}

/// DType -> ONNX element type.
pub fn dtype_to_onnx(d: DType) -> i32 {
    match d {
        DType::F32 => dt::FLOAT,
        DType::U8 => dt::UINT8,
        DType::I8 => dt::INT8,
        DType::I16 => dt::INT16,
        DType::I32 => dt::INT32,
        DType::I64 => dt::INT64,
        DType::Bool => dt::BOOL,
        DType::F16 => dt::FLOAT16,
        DType::F64 => dt::DOUBLE,
        DType::BF16 => dt::BFLOAT16,
    }
}

fn shape_of(t: &TensorProto) -> Result<Vec<usize>> {
    t.dims
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| Error::invalid(format!("tensor {:?} has negative dim {d}", t.name)))
        })
        .collect()
}

/// Reads an external-data file region. The location must be a relative path inside
/// `model_dir` (no `..`, no absolute path, no symlink escaping it).
fn io(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: p.to_path_buf(),
        source,
    }
}

fn read_external(t: &TensorProto, model_dir: Option<&Path>, expected: usize) -> Result<Vec<u8>> {
    let dir = model_dir.ok_or_else(|| {
        Error::invalid(format!(
            "tensor {:?} uses external data, which needs the model to be loaded from a file",
            t.name
        ))
    })?;
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.as_str())
    };
    let loc = get("location").ok_or_else(|| {
        Error::invalid(format!(
            "tensor {:?}: external data without a location",
            t.name
        ))
    })?;
    let rel = Path::new(loc);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::invalid(format!(
            "tensor {:?}: external data location {loc:?} must stay inside the model directory",
            t.name
        )));
    }
    let base = dir.canonicalize().map_err(io(dir))?;
    let path = base.join(rel);
    let real = path.canonicalize().map_err(io(&path))?;
    if !real.starts_with(&base) {
        return Err(Error::invalid(format!(
            "tensor {:?}: external data {loc:?} resolves outside the model directory",
            t.name
        )));
    }
    let num = |k: &str| -> Result<Option<u64>> {
        get(k)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::invalid(format!("tensor {:?}: bad external {k} {v:?}", t.name))
                })
            })
            .transpose()
    };
    let offset = num("offset")?.unwrap_or(0);
    let length = num("length")?.unwrap_or(expected as u64);
    if length != expected as u64 {
        return Err(Error::invalid(format!(
            "tensor {:?}: external length {length} but shape needs {expected} bytes",
            t.name
        )));
    }
    let mut f = std::fs::File::open(&real).map_err(io(&real))?;
    let size = f.metadata().map_err(io(&real))?.len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(Error::invalid(format!(
            "tensor {:?}: external region {offset}+{length} exceeds {loc:?} ({size} bytes)",
            t.name
        )));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io(&real))?;
    let mut buf = vec![0u8; expected];
    f.read_exact(&mut buf).map_err(io(&real))?;
    Ok(buf)
}

/// Converts a TensorProto. `model_dir` enables external data.
pub fn tensor_from_proto(t: &TensorProto, model_dir: Option<&Path>) -> Result<Tensor> {
    let dtype = dtype_from_onnx(t.data_type).map_err(|e| match e {
        Error::Unsupported { what } => Error::unsupported(format!("{what} (tensor {:?})", t.name)),
        e => e,
    })?;
    let shape = shape_of(t)?;
    let n = checked_volume(&shape)
        .ok_or_else(|| Error::invalid(format!("tensor {:?} shape overflows", t.name)))?;
    let bytes_len = n
        .checked_mul(dtype.size())
        .ok_or_else(|| Error::invalid("tensor too large"))?;
    if t.data_location == 1 {
        let raw = read_external(t, model_dir, bytes_len)?;
        return Tensor::from_raw_bytes(dtype, &shape, &raw);
    }
    if !t.raw_data.is_empty() || n == 0 {
        return Tensor::from_raw_bytes(dtype, &shape, if n == 0 { &[] } else { &t.raw_data });
    }
    let count_err = |have: usize| {
        Error::invalid(format!(
            "tensor {:?}: shape {shape:?} needs {n} values, found {have}",
            t.name
        ))
    };
    match dtype {
        DType::F32 => {
            if t.float_data.len() != n {
                return Err(count_err(t.float_data.len()));
            }
            Tensor::from_slice(&shape, &t.float_data)
        }
        DType::F64 => {
            if t.double_data.len() != n {
                return Err(count_err(t.double_data.len()));
            }
            Tensor::from_slice(&shape, &t.double_data)
        }
        DType::I64 => {
            if t.int64_data.len() != n {
                return Err(count_err(t.int64_data.len()));
            }
            Tensor::from_slice(&shape, &t.int64_data)
        }
        _ => {
            // int32_data carries i32 and every narrower type (f16/bf16 as bit patterns).
            if t.int32_data.len() != n {
                return Err(count_err(t.int32_data.len()));
            }
            let v = &t.int32_data;
            match dtype {
                DType::I32 => Tensor::from_slice(&shape, v),
                DType::I16 => {
                    Tensor::from_vec(&shape, v.iter().map(|&x| x as i16).collect::<Vec<_>>())
                }
                DType::I8 => {
                    Tensor::from_vec(&shape, v.iter().map(|&x| x as i8).collect::<Vec<_>>())
                }
                DType::U8 => {
                    Tensor::from_vec(&shape, v.iter().map(|&x| x as u8).collect::<Vec<_>>())
                }
                DType::Bool => {
                    Tensor::from_vec(&shape, v.iter().map(|&x| x != 0).collect::<Vec<_>>())
                }
                DType::F16 => Tensor::from_vec(
                    &shape,
                    v.iter()
                        .map(|&x| half::f16::from_bits(x as u16))
                        .collect::<Vec<_>>(),
                ),
                DType::BF16 => Tensor::from_vec(
                    &shape,
                    v.iter()
                        .map(|&x| half::bf16::from_bits(x as u16))
                        .collect::<Vec<_>>(),
                ),
                _ => Err(Error::invalid(format!("tensor {:?}: no data", t.name))),
            }
        }
    }
}

/// Tensor -> TensorProto (raw_data), for tests and writers.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: dtype_to_onnx(t.dtype()),
        name: name.to_string(),
        raw_data: t.as_bytes().to_vec(),
        ..Default::default()
    }
}
