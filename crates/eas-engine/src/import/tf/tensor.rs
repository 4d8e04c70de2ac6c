//! TensorProto / DataType / TensorShapeProto to engine types.

use super::proto::{DataType, TensorProto, TensorShapeProto, dtype_name};
use crate::dtype::DType;
use crate::ir::{Dim, Shape};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Largest constant a TensorProto may expand to from a few repeated values (TF writes
/// `tf.zeros([n])` as one value + shape): 1 GiB of elements. Raw contents are bounded by the
/// file size anyway.
const MAX_SPLAT_ELEMENTS: usize = 1 << 28;

/// The engine dtype of a TF DataType number, or a clear error.
pub fn dtype(t: i32, what: &str) -> Result<DType> {
    Ok(match DataType::try_from(t) {
        Ok(DataType::DtFloat) => DType::F32,
        Ok(DataType::DtDouble) => DType::F64,
        Ok(DataType::DtHalf) => DType::F16,
        Ok(DataType::DtBfloat16) => DType::BF16,
        Ok(DataType::DtInt32) => DType::I32,
        Ok(DataType::DtInt64) => DType::I64,
        Ok(DataType::DtInt16) => DType::I16,
        Ok(DataType::DtInt8) => DType::I8,
        Ok(DataType::DtUint8) => DType::U8,
        Ok(DataType::DtBool) => DType::Bool,
        _ => {
            return Err(Error::unsupported(format!(
                "{what}: TensorFlow dtype {} is not supported",
                dtype_name(t)
            )));
        }
    })
}

/// A TensorShapeProto as an engine shape; unknown dims become symbols `prefix:axis`.
/// `None` for unknown rank.
pub fn shape(s: &TensorShapeProto, prefix: &str) -> Result<Option<Shape>> {
    if s.unknown_rank {
        return Ok(None);
    }
    let mut dims = Vec::with_capacity(s.dim.len());
    for (i, d) in s.dim.iter().enumerate() {
        dims.push(match d.size {
            -1 => Dim::sym(&format!("{prefix}:{i}")),
            n if n >= 0 => {
                Dim::Known(usize::try_from(n).map_err(|_| Error::invalid("dim too large"))?)
            }
            n => {
                return Err(Error::invalid(format!(
                    "{prefix}: dimension {i} has size {n}"
                )));
            }
        });
    }
    Ok(Some(Shape(dims)))
}

fn known_shape(t: &TensorProto, what: &str) -> Result<Vec<usize>> {
    let Some(s) = &t.tensor_shape else {
        return Ok(vec![]);
    };
    if s.unknown_rank {
        return Err(Error::invalid(format!("{what}: constant of unknown rank")));
    }
    s.dim
        .iter()
        .map(|d| {
            usize::try_from(d.size)
                .map_err(|_| Error::invalid(format!("{what}: constant with dim {}", d.size)))
        })
        .collect()
}

/// Decodes a TensorProto (raw `tensor_content`, or typed values with TF's "repeat the last
/// value" rule).
pub fn tensor(t: &TensorProto, what: &str) -> Result<Tensor> {
    let dt = dtype(t.dtype, what)?;
    let shape = known_shape(t, what)?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("{what}: constant shape {shape:?} overflows")))?;
    if !t.tensor_content.is_empty() {
        if Some(t.tensor_content.len()) != n.checked_mul(dt.size()) {
            return Err(Error::invalid(format!(
                "{what}: constant {} {shape:?} has {} bytes of content, expected {}",
                dt.name(),
                t.tensor_content.len(),
                n.saturating_mul(dt.size())
            )));
        }
        return Tensor::from_raw_bytes(dt, &shape, &t.tensor_content);
    }
    fn splat<T: Copy>(vals: &[T], n: usize, zero: T, what: &str) -> Result<Vec<T>> {
        if vals.len() > n {
            return Err(Error::invalid(format!(
                "{what}: {} values for {n} elements",
                vals.len()
            )));
        }
        if n > MAX_SPLAT_ELEMENTS && vals.len() < n {
            return Err(Error::invalid(format!(
                "{what}: constant of {n} elements from {} values is too large",
                vals.len()
            )));
        }
        let mut v = vals.to_vec();
        let last = vals.last().copied().unwrap_or(zero);
        v.resize(n, last);
        Ok(v)
    }
    let s = shape.as_slice();
    match dt {
        DType::F32 => Tensor::from_vec(s, splat(&t.float_val, n, 0.0, what)?),
        DType::F64 => Tensor::from_vec(s, splat(&t.double_val, n, 0.0, what)?),
        DType::I32 => Tensor::from_vec(s, splat(&t.int_val, n, 0, what)?),
        DType::I64 => Tensor::from_vec(s, splat(&t.int64_val, n, 0, what)?),
        DType::Bool => Tensor::from_vec(s, splat(&t.bool_val, n, false, what)?),
        DType::I16 | DType::I8 | DType::U8 => {
            let v = splat(&t.int_val, n, 0, what)?;
            Tensor::from_vec(s, v)?.cast(dt)
        }
        DType::F16 | DType::BF16 => {
            let v = splat(&t.half_val, n, 0, what)?;
            let bytes: Vec<u8> = v.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect();
            Tensor::from_raw_bytes(dt, s, &bytes)
        }
        // `dtype` maps no TensorFlow type to these.
        other => Err(Error::unsupported(format!(
            "TensorFlow constant of dtype {other}"
        ))),
    }
}
