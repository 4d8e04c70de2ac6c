//! Tensors between the aux-data crate (what users feed, what `blade run` writes) and the
//! engine (what runs). Lives in the facade because config and aux data must not know the
//! engine.

use eas_auxdata::{DType as ADType, Tensor as ATensor, ndarray::ArrayD, ndarray::IxDyn};
use eas_engine::{DType as EDType, Tensor as ETensor};

/// The aux-data dtype that holds an engine dtype exactly (.npy has no float8 or 4-bit
/// types: they are held as f32, i8 and u8, their values unchanged).
pub fn aux_dtype(d: EDType) -> ADType {
    match d {
        EDType::F32 => ADType::F32,
        EDType::F16 => ADType::F16,
        EDType::BF16 => ADType::BF16,
        EDType::F64 => ADType::F64,
        EDType::I8 | EDType::I4 => ADType::I8,
        EDType::U8 | EDType::U4 => ADType::U8,
        EDType::I16 => ADType::I16,
        EDType::U16 => ADType::U16,
        EDType::I32 => ADType::I32,
        EDType::U32 => ADType::U32,
        EDType::I64 => ADType::I64,
        EDType::U64 => ADType::U64,
        EDType::Bool => ADType::Bool,
        EDType::F8E4M3FN | EDType::F8E4M3FNUZ | EDType::F8E5M2 | EDType::F8E5M2FNUZ => ADType::F32,
        // Engine strings are byte strings.
        EDType::String => ADType::Bytes,
    }
}

/// The engine dtype of an aux-data dtype, if the engine has it.
pub fn engine_dtype(d: ADType) -> Option<EDType> {
    Some(match d {
        ADType::F32 => EDType::F32,
        ADType::F16 => EDType::F16,
        ADType::BF16 => EDType::BF16,
        ADType::F64 => EDType::F64,
        ADType::I8 => EDType::I8,
        ADType::U8 => EDType::U8,
        ADType::I16 => EDType::I16,
        ADType::I32 => EDType::I32,
        ADType::I64 => EDType::I64,
        ADType::U16 => EDType::U16,
        ADType::U32 => EDType::U32,
        ADType::U64 => EDType::U64,
        ADType::Bool => EDType::Bool,
        ADType::Str | ADType::Bytes => return None,
    })
}

/// Why a conversion failed, for the caller to name the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertError(pub String);

fn contiguous<T: Clone>(a: &ArrayD<T>) -> Vec<T> {
    // `iter()` walks in logical (C) order whatever the memory layout.
    match a.as_slice() {
        Some(s) => s.to_vec(),
        None => a.iter().cloned().collect(),
    }
}

/// An aux-data tensor as an engine tensor of the same dtype (C order).
pub fn to_engine(t: &ATensor) -> Result<ETensor, ConvertError> {
    let shape = t.shape().to_vec();
    let r = match t {
        ATensor::F32(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::F64(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::F16(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::BF16(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::I8(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::U8(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::I16(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::I32(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::I64(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::U16(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::U32(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::U64(a) => ETensor::from_vec(&shape, contiguous(a)),
        ATensor::Bool(a) => ETensor::from_vec(&shape, contiguous(a)),
        other => {
            return Err(ConvertError(format!(
                "{} tensors are not supported by the engine",
                other.dtype()
            )));
        }
    };
    r.map_err(|e| ConvertError(e.to_string()))
}

fn array<T: eas_engine::Datum + Clone>(t: &ETensor) -> Result<ArrayD<T>, ConvertError> {
    let v = t
        .as_slice::<T>()
        .map_err(|e| ConvertError(e.to_string()))?
        .to_vec();
    ArrayD::from_shape_vec(IxDyn(t.shape()), v).map_err(|e| ConvertError(e.to_string()))
}

/// An engine tensor as an aux-data tensor of the same dtype (storage-only dtypes: of
/// `aux_dtype`'s holding type, values unchanged).
pub fn from_engine(t: &ETensor) -> Result<ATensor, ConvertError> {
    if t.dtype().is_storage_only() {
        let held = engine_dtype(aux_dtype(t.dtype())).expect("holding types are engine types");
        return from_engine(&t.cast(held).map_err(|e| ConvertError(e.to_string()))?);
    }
    Ok(match t.dtype() {
        EDType::F32 => ATensor::F32(array(t)?),
        EDType::F16 => ATensor::F16(array(t)?),
        EDType::BF16 => ATensor::BF16(array(t)?),
        EDType::F64 => ATensor::F64(array(t)?),
        EDType::I8 => ATensor::I8(array(t)?),
        EDType::U8 => ATensor::U8(array(t)?),
        EDType::I16 => ATensor::I16(array(t)?),
        EDType::I32 => ATensor::I32(array(t)?),
        EDType::I64 => ATensor::I64(array(t)?),
        EDType::U16 => ATensor::U16(array(t)?),
        EDType::U32 => ATensor::U32(array(t)?),
        EDType::U64 => ATensor::U64(array(t)?),
        EDType::Bool => ATensor::Bool(array(t)?),
        EDType::String => {
            let v: Vec<Vec<u8>> = t
                .strings()
                .map_err(|e| ConvertError(e.to_string()))?
                .map(<[u8]>::to_vec)
                .collect();
            ATensor::Bytes(
                ArrayD::from_shape_vec(IxDyn(t.shape()), v)
                    .map_err(|e| ConvertError(e.to_string()))?,
            )
        }
        other => {
            return Err(ConvertError(format!(
                "{other} tensors have no aux-data type"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eas_auxdata::ndarray::{Array2, ShapeBuilder};

    #[test]
    fn round_trip_every_engine_dtype() {
        for d in EDType::ALL {
            let e = ETensor::from_vec(&[2, 3], vec![1i64, 0, 3, 4, 0, 6])
                .unwrap()
                .cast(d)
                .unwrap();
            let a = from_engine(&e).unwrap();
            assert_eq!(a.dtype(), aux_dtype(d));
            assert_eq!(a.shape(), &[2, 3]);
            let back = to_engine(&a).unwrap();
            if d.is_storage_only() {
                // Held in a wider type: same values, cast back to the original bits.
                assert_eq!(back.to_f64_vec(), e.to_f64_vec(), "{d}");
                assert_eq!(back.cast(d).unwrap().as_bytes(), e.as_bytes(), "{d}");
                continue;
            }
            assert_eq!(back.dtype(), d);
            assert_eq!(back.as_bytes(), e.as_bytes(), "{d}");
        }
    }

    #[test]
    fn fortran_order_arrays_keep_logical_order() {
        let f = Array2::from_shape_vec((2, 2).f(), vec![1f32, 3., 2., 4.]).unwrap();
        let e = to_engine(&ATensor::F32(f.into_dyn())).unwrap();
        assert_eq!(e.as_slice::<f32>().unwrap(), &[1., 2., 3., 4.]);
    }

    #[test]
    fn strings_are_refused_wide_unsigned_kept() {
        let s = ATensor::Str(ArrayD::from_elem(IxDyn(&[1]), "a".to_string()));
        assert!(to_engine(&s).unwrap_err().0.contains("str"));
        assert_eq!(engine_dtype(ADType::Str), None);
        let u = ATensor::U64(ArrayD::from_elem(IxDyn(&[1]), u64::MAX));
        let e = to_engine(&u).unwrap();
        assert_eq!(e.as_slice::<u64>().unwrap(), &[u64::MAX]);
        assert_eq!(engine_dtype(ADType::U32), Some(EDType::U32));
    }
}
