//! TensorProto -> Tensor, including external data confined to the model directory.

use super::proto::{TensorProto, data_type as dt};
use crate::dtype::{DType, nibble_at, pack_nibbles};
use crate::tensor::{Tensor, checked_volume};
use crate::{Error, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// ONNX element type <-> DType, one table for both directions.
const DTYPES: [(i32, DType); 20] = [
    (dt::FLOAT, DType::F32),
    (dt::UINT8, DType::U8),
    (dt::INT8, DType::I8),
    (dt::UINT16, DType::U16),
    (dt::INT16, DType::I16),
    (dt::INT32, DType::I32),
    (dt::INT64, DType::I64),
    (dt::BOOL, DType::Bool),
    (dt::FLOAT16, DType::F16),
    (dt::DOUBLE, DType::F64),
    (dt::UINT32, DType::U32),
    (dt::UINT64, DType::U64),
    (dt::BFLOAT16, DType::BF16),
    (dt::FLOAT8E4M3FN, DType::F8E4M3FN),
    (dt::FLOAT8E4M3FNUZ, DType::F8E4M3FNUZ),
    (dt::FLOAT8E5M2, DType::F8E5M2),
    (dt::FLOAT8E5M2FNUZ, DType::F8E5M2FNUZ),
    (dt::UINT4, DType::U4),
    (dt::INT4, DType::I4),
    (dt::STRING, DType::String),
];

/// ONNX element type -> DType.
pub fn dtype_from_onnx(t: i32) -> Result<DType> {
    if let Some(&(_, d)) = DTYPES.iter().find(|(o, _)| *o == t) {
        return Ok(d);
    }
    Err(Error::unsupported(match t {
        dt::COMPLEX64 | dt::COMPLEX128 => format!("complex tensors (ONNX element type {t})"),
        other => format!("ONNX element type {other}"),
    }))
}

/// DType -> ONNX element type.
pub fn dtype_to_onnx(d: DType) -> i32 {
    DTYPES
        .iter()
        .find(|(_, x)| *x == d)
        .map(|&(o, _)| o)
        .expect("every DType has an ONNX element type")
}

/// Bytes a tensor of `n` elements takes in raw_data: 4-bit types pack two per byte.
fn stored_len(dtype: DType, n: usize) -> Option<usize> {
    match dtype {
        DType::I4 | DType::U4 => Some(n.div_ceil(2)),
        _ => n.checked_mul(dtype.size()),
    }
}

/// Unpacks ONNX's 4-bit layout (two per byte, low nibble first) to one element per byte.
fn unpack_4bit(dtype: DType, shape: &[usize], n: usize, packed: &[u8]) -> Result<Tensor> {
    let bytes: Vec<u8> = (0..n).map(|i| nibble_at(packed, i)).collect();
    // from_raw_bytes sign-extends i4 nibbles.
    Tensor::from_raw_bytes(dtype, shape, &bytes)
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
    if dtype == DType::String {
        return strings_from_proto(t, &shape, n);
    }
    let bytes_len = stored_len(dtype, n).ok_or_else(|| Error::invalid("tensor too large"))?;
    let four_bit = matches!(dtype, DType::I4 | DType::U4);
    let from_raw = |raw: &[u8]| {
        if four_bit {
            if raw.len() != bytes_len {
                return Err(Error::invalid(format!(
                    "tensor {:?}: {dtype} shape {shape:?} packs into {bytes_len} bytes, got {}",
                    t.name,
                    raw.len()
                )));
            }
            unpack_4bit(dtype, &shape, n, raw)
        } else {
            Tensor::from_raw_bytes(dtype, &shape, raw)
        }
    };
    if t.data_location == 1 {
        let raw = read_external(t, model_dir, bytes_len)?;
        return from_raw(&raw);
    }
    if !t.raw_data.is_empty() || n == 0 {
        return from_raw(if n == 0 { &[] } else { &t.raw_data });
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
        DType::U64 | DType::U32 => {
            // uint64_data carries both.
            if t.uint64_data.len() != n {
                return Err(count_err(t.uint64_data.len()));
            }
            Tensor::from_slice(&shape, &t.uint64_data)?.cast(dtype)
        }
        DType::I4 | DType::U4 => {
            // int32_data holds the packed bytes, one per entry.
            if t.int32_data.len() != bytes_len {
                return Err(count_err(2 * t.int32_data.len()));
            }
            let packed: Vec<u8> = t.int32_data.iter().map(|&x| x as u8).collect();
            unpack_4bit(dtype, &shape, n, &packed)
        }
        _ => {
            // int32_data carries i32 and every narrower type (f16/bf16/float8 as bit
            // patterns).
            if t.int32_data.len() != n {
                return Err(count_err(t.int32_data.len()));
            }
            let v = &t.int32_data;
            match dtype {
                DType::U16 => {
                    Tensor::from_vec(&shape, v.iter().map(|&x| x as u16).collect::<Vec<_>>())
                }
                DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ => {
                    let bytes: Vec<u8> = v.iter().map(|&x| x as u8).collect();
                    Tensor::from_raw_bytes(dtype, &shape, &bytes)
                }
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

/// A STRING TensorProto: its elements are in `string_data`, as bytes (ONNX allows neither
/// raw_data nor external data for strings). Bytes are kept as they are, UTF-8 or not.
fn strings_from_proto(t: &TensorProto, shape: &[usize], n: usize) -> Result<Tensor> {
    if t.data_location == 1 || !t.raw_data.is_empty() {
        return Err(Error::invalid(format!(
            "string tensor {:?} must keep its elements in string_data (not raw or external data)",
            t.name
        )));
    }
    if t.string_data.len() != n {
        return Err(Error::invalid(format!(
            "tensor {:?}: shape {shape:?} needs {n} strings, found {}",
            t.name,
            t.string_data.len()
        )));
    }
    Tensor::from_strings(shape, &t.string_data)
}

/// Tensor -> TensorProto (raw_data; 4-bit types packed two per byte; strings in
/// string_data), for tests and writers.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    if let Ok(strings) = t.strings() {
        return TensorProto {
            dims: t.shape().iter().map(|&d| d as i64).collect(),
            data_type: dt::STRING,
            name: name.to_string(),
            string_data: strings.map(<[u8]>::to_vec).collect(),
            ..Default::default()
        };
    }
    let raw_data = match t.dtype() {
        DType::I4 | DType::U4 => pack_nibbles(t.as_bytes().iter().copied()),
        _ => t.as_bytes().to_vec(),
    };
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: dtype_to_onnx(t.dtype()),
        name: name.to_string(),
        raw_data,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{F8E4M3FN, I4, U4};

    fn proto(data_type: i32, dims: &[i64]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type,
            name: "t".into(),
            ..Default::default()
        }
    }

    #[test]
    fn int4_unpacks_low_nibble_first_from_raw_and_int32_data() {
        // 3 elements: 0x21 -> [1, 2], 0x0F -> [-1 (i4) / 15 (u4)], high nibble is padding.
        let mut p = proto(dt::INT4, &[3]);
        p.raw_data = vec![0x21, 0xFF];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.as_slice::<I4>().unwrap(), &[I4(1), I4(2), I4(-1)]);
        let mut p = proto(dt::UINT4, &[3]);
        p.int32_data = vec![0x21, 0x0F];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.as_slice::<U4>().unwrap(), &[U4(1), U4(2), U4(15)]);
        // Packed length must match the shape.
        p.int32_data = vec![0x21];
        assert!(tensor_from_proto(&p, None).is_err());
        let mut p = proto(dt::INT4, &[3]);
        p.raw_data = vec![0x21, 0xFF, 0];
        assert!(tensor_from_proto(&p, None).is_err());
    }

    #[test]
    fn every_dtype_round_trips_through_a_proto() {
        for d in DType::ALL {
            let t = Tensor::from_vec(&[5], vec![0i64, 1, -2, 3, 7])
                .unwrap()
                .cast(d)
                .unwrap();
            let p = tensor_to_proto("t", &t);
            if matches!(d, DType::I4 | DType::U4) {
                assert_eq!(p.raw_data.len(), 3, "{d} packs two per byte");
            }
            assert_eq!(tensor_from_proto(&p, None).unwrap(), t, "{d}");
            assert_eq!(dtype_from_onnx(dtype_to_onnx(d)).unwrap(), d);
        }
    }

    #[test]
    fn strings_come_from_string_data_as_bytes() {
        let mut p = proto(dt::STRING, &[2, 2]);
        p.string_data = vec![b"a".to_vec(), vec![], b"\xff\xfe".to_vec(), b"NaN".to_vec()];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.dtype(), DType::String);
        let got: Vec<&[u8]> = t.strings().unwrap().collect();
        assert_eq!(got, [&b"a"[..], b"", b"\xff\xfe", b"NaN"]);
        assert_eq!(
            tensor_from_proto(&tensor_to_proto("t", &t), None).unwrap(),
            t
        );
        // Wrong counts and raw_data are refused, not guessed at.
        p.string_data.pop();
        assert!(
            tensor_from_proto(&p, None)
                .unwrap_err()
                .to_string()
                .contains("needs 4 strings")
        );
        let mut p = proto(dt::STRING, &[1]);
        p.raw_data = vec![1, 2];
        assert!(tensor_from_proto(&p, None).is_err());
        let empty = tensor_from_proto(&proto(dt::STRING, &[0, 3]), None).unwrap();
        assert_eq!((empty.len(), empty.shape()), (0, &[0usize, 3][..]));
    }

    #[test]
    fn typed_fields_of_the_new_dtypes() {
        let mut p = proto(dt::UINT64, &[2]);
        p.uint64_data = vec![u64::MAX, 3];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.as_slice::<u64>().unwrap(), &[u64::MAX, 3]);
        let mut p = proto(dt::UINT32, &[1]);
        p.uint64_data = vec![u32::MAX as u64];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.as_slice::<u32>().unwrap(), &[u32::MAX]);
        let mut p = proto(dt::UINT16, &[1]);
        p.int32_data = vec![65535];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.as_slice::<u16>().unwrap(), &[65535]);
        // float8 values are bit patterns in int32_data.
        let mut p = proto(dt::FLOAT8E4M3FN, &[2]);
        p.int32_data = vec![0x38, 0xFE];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.to_f64_vec(), vec![1.0, -448.0]);
        assert_eq!(t.as_slice::<F8E4M3FN>().unwrap()[1].to_bits(), 0xFE);
        // Complex numbers are refused by name.
        let e = tensor_from_proto(&proto(dt::COMPLEX64, &[1]), None).unwrap_err();
        assert!(e.to_string().contains("complex"), "{e}");
    }
}
