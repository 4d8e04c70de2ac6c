//! Element types and the in-memory tensor: dtype + shape + data in an `ndarray::ArrayD`.

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

use crate::error::{Error, Result};

/// The element types a tensor can hold. Names follow numpy (`bfloat16` as torch and ml_dtypes
/// call it; `str` for numpy unicode `<U..`, `bytes` for `|S..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
    Str,
    Bytes,
}

impl DType {
    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::Str,
        DType::Bytes,
    ];

    /// The numpy dtype name: `float32`, `int64`, `bool`, `bfloat16`, `str`, `bytes`, ...
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::Str => "str",
            DType::Bytes => "bytes",
        }
    }

    /// Parses a numpy dtype name (as [`DType::name`] writes it).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element of the fixed-size types; `None` for `str` and `bytes`.
    pub fn itemsize(self) -> Option<usize> {
        Some(match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
            DType::Str | DType::Bytes => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor: one variant per element type, each an `ndarray::ArrayD` (any layout; logical
/// order is what `iter()` gives).
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    Bool(ArrayD<bool>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    Str(ArrayD<String>),
    Bytes(ArrayD<Vec<u8>>),
}

/// Runs `$body` with `$a` bound to the inner array, whatever the element type.
macro_rules! with_array {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            Tensor::Bool($a) => $body,
            Tensor::I8($a) => $body,
            Tensor::I16($a) => $body,
            Tensor::I32($a) => $body,
            Tensor::I64($a) => $body,
            Tensor::U8($a) => $body,
            Tensor::U16($a) => $body,
            Tensor::U32($a) => $body,
            Tensor::U64($a) => $body,
            Tensor::F16($a) => $body,
            Tensor::BF16($a) => $body,
            Tensor::F32($a) => $body,
            Tensor::F64($a) => $body,
            Tensor::Str($a) => $body,
            Tensor::Bytes($a) => $body,
        }
    };
}

/// Runs `$num` for the numeric (and bool) variants, `$other` for strings and bytes.
macro_rules! with_numeric {
    ($t:expr, $a:ident => $num:expr, $other:expr) => {
        match $t {
            Tensor::Bool($a) => $num,
            Tensor::I8($a) => $num,
            Tensor::I16($a) => $num,
            Tensor::I32($a) => $num,
            Tensor::I64($a) => $num,
            Tensor::U8($a) => $num,
            Tensor::U16($a) => $num,
            Tensor::U32($a) => $num,
            Tensor::U64($a) => $num,
            Tensor::F16($a) => $num,
            Tensor::BF16($a) => $num,
            Tensor::F32($a) => $num,
            Tensor::F64($a) => $num,
            Tensor::Str(_) | Tensor::Bytes(_) => $other,
        }
    };
}

/// A numeric element: decoding from raw bytes and exact conversion through `Num`.
pub(crate) trait Elem: Copy + Default + 'static {
    const DTYPE: DType;
    const SIZE: usize;
    fn decode(b: &[u8], big_endian: bool) -> Self;
    fn encode_le(self, out: &mut Vec<u8>);
    fn to_num(self) -> Num;
    /// `None` where the value cannot be held exactly (out of range, a fraction for an int).
    fn from_num(n: Num) -> Option<Self>;
    fn wrap(a: ArrayD<Self>) -> Tensor;
}

/// An element widened without loss: every integer fits i128, every float f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    I(i128),
    F(f64),
}

impl Num {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

macro_rules! int_elem {
    ($t:ty, $variant:ident) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$variant;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn decode(b: &[u8], big_endian: bool) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::SIZE]);
                if big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }
            fn encode_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_num(self) -> Num {
                Num::I(self as i128)
            }
            fn from_num(n: Num) -> Option<Self> {
                match n {
                    Num::I(i) => <$t>::try_from(i).ok(),
                    Num::F(f) => {
                        if f.is_finite()
                            && f.fract() == 0.0
                            && f >= <$t>::MIN as f64
                            && f <= <$t>::MAX as f64
                        {
                            // in range and integral: `as` is exact here (MAX as f64 may round up
                            // by one ulp for 64-bit types; try_from on i128 catches that).
                            <$t>::try_from(f as i128).ok()
                        } else {
                            None
                        }
                    }
                }
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$variant(a)
            }
        }
    };
}
int_elem!(i8, I8);
int_elem!(i16, I16);
int_elem!(i32, I32);
int_elem!(i64, I64);
int_elem!(u8, U8);
int_elem!(u16, U16);
int_elem!(u32, U32);
int_elem!(u64, U64);

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    const SIZE: usize = 1;
    fn decode(b: &[u8], _: bool) -> Self {
        b[0] != 0
    }
    fn encode_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn to_num(self) -> Num {
        Num::I(self as i128)
    }
    fn from_num(n: Num) -> Option<Self> {
        match n {
            Num::I(0) => Some(false),
            Num::I(1) => Some(true),
            Num::F(0.0) => Some(false),
            Num::F(1.0) => Some(true),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<Self>) -> Tensor {
        Tensor::Bool(a)
    }
}

/// Floats: narrowing rounds to nearest (the usual float64 -> float32 feed), but overflow to
/// infinity and integers that do not survive the round trip are errors.
macro_rules! float_elem {
    ($t:ty, $variant:ident, $from_f64:expr, $to_f64:expr) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$variant;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn decode(b: &[u8], big_endian: bool) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::SIZE]);
                if big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }
            fn encode_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_num(self) -> Num {
                let f: fn($t) -> f64 = $to_f64;
                Num::F(f(self))
            }
            fn from_num(n: Num) -> Option<Self> {
                let from: fn(f64) -> $t = $from_f64;
                let to: fn($t) -> f64 = $to_f64;
                match n {
                    Num::F(f) => {
                        let v = from(f);
                        (f.is_finite() == to(v).is_finite() || f.is_nan()).then_some(v)
                    }
                    Num::I(i) => {
                        let v = from(i as f64);
                        (to(v).is_finite() && to(v) as i128 == i).then_some(v)
                    }
                }
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$variant(a)
            }
        }
    };
}
float_elem!(f32, F32, |f| f as f32, |v| v as f64);
float_elem!(f64, F64, |f| f, |v| v);
float_elem!(f16, F16, f16::from_f64, f16::to_f64);
float_elem!(bf16, BF16, bf16::from_f64, bf16::to_f64);

/// Sum, min and max of a numeric tensor as float64 (bool counts as 0/1). `min`/`max` are
/// `None` for an empty tensor; NaN propagates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

fn stats_of<T: Elem>(a: &ArrayD<T>) -> Stats {
    let mut sum = 0.0;
    let mut min: Option<f64> = None;
    let mut max: Option<f64> = None;
    for &x in a.iter() {
        let v = x.to_num().as_f64();
        sum += v;
        min = Some(match min {
            None => v,
            Some(m) if v.is_nan() || m.is_nan() => f64::NAN,
            Some(m) => m.min(v),
        });
        max = Some(match max {
            None => v,
            Some(m) if v.is_nan() || m.is_nan() => f64::NAN,
            Some(m) => m.max(v),
        });
    }
    Stats { sum, min, max }
}

fn convert_array<S: Elem, D: Elem>(a: &ArrayD<S>) -> Result<ArrayD<D>> {
    let mut bad = None;
    let out = a.map(|&x| match D::from_num(x.to_num()) {
        Some(v) => v,
        None => {
            if bad.is_none() {
                bad = Some(x.to_num());
            }
            D::default()
        }
    });
    match bad {
        None => Ok(out),
        Some(n) => Err(Error::Conversion {
            from: S::DTYPE.name(),
            to: D::DTYPE.name(),
            what: match n {
                Num::I(i) => format!("the value {i} does not fit"),
                Num::F(f) => format!("the value {f} cannot be held exactly"),
            },
        }),
    }
}

fn convert_to<D: Elem>(t: &Tensor) -> Result<ArrayD<D>> {
    with_numeric!(t, a => convert_array::<_, D>(a), Err(Error::Conversion {
        from: t.dtype().name(),
        to: D::DTYPE.name(),
        what: "strings and numbers do not convert into each other".into(),
    }))
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::Bool(_) => DType::Bool,
            Tensor::I8(_) => DType::I8,
            Tensor::I16(_) => DType::I16,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::U8(_) => DType::U8,
            Tensor::U16(_) => DType::U16,
            Tensor::U32(_) => DType::U32,
            Tensor::U64(_) => DType::U64,
            Tensor::F16(_) => DType::F16,
            Tensor::BF16(_) => DType::BF16,
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::Str(_) => DType::Str,
            Tensor::Bytes(_) => DType::Bytes,
        }
    }

    pub fn shape(&self) -> &[usize] {
        with_array!(self, a => a.shape())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_array!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum, min and max as float64; `None` for strings and bytes.
    pub fn stats(&self) -> Option<Stats> {
        with_numeric!(self, a => Some(stats_of(a)), None)
    }

    /// Elements in logical (C) order as float64; `None` for strings and bytes.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        with_numeric!(self, a => Some(a.iter().map(|x| x.to_num().as_f64()).collect()), None)
    }

    /// Converts to `target`. Integers and bools convert only where every value is held exactly;
    /// floats convert to integers only when integral and in range; narrowing floats round to
    /// nearest but must not overflow; strings convert only to bytes (UTF-8) and back.
    pub fn to_dtype(&self, target: DType) -> Result<Tensor> {
        if self.dtype() == target {
            return Ok(self.clone());
        }
        Ok(match target {
            DType::Bool => Tensor::Bool(convert_to(self)?),
            DType::I8 => Tensor::I8(convert_to(self)?),
            DType::I16 => Tensor::I16(convert_to(self)?),
            DType::I32 => Tensor::I32(convert_to(self)?),
            DType::I64 => Tensor::I64(convert_to(self)?),
            DType::U8 => Tensor::U8(convert_to(self)?),
            DType::U16 => Tensor::U16(convert_to(self)?),
            DType::U32 => Tensor::U32(convert_to(self)?),
            DType::U64 => Tensor::U64(convert_to(self)?),
            DType::F16 => Tensor::F16(convert_to(self)?),
            DType::BF16 => Tensor::BF16(convert_to(self)?),
            DType::F32 => Tensor::F32(convert_to(self)?),
            DType::F64 => Tensor::F64(convert_to(self)?),
            DType::Bytes => match self {
                Tensor::Str(a) => Tensor::Bytes(a.map(|s| s.as_bytes().to_vec())),
                _ => return Err(self.not_textual(target)),
            },
            DType::Str => match self {
                Tensor::Bytes(a) => {
                    let mut bad = false;
                    let out = a.map(|b| match std::str::from_utf8(b) {
                        Ok(s) => s.to_string(),
                        Err(_) => {
                            bad = true;
                            String::new()
                        }
                    });
                    if bad {
                        return Err(Error::Conversion {
                            from: "bytes",
                            to: "str",
                            what: "an element is not valid UTF-8".into(),
                        });
                    }
                    Tensor::Str(out)
                }
                _ => return Err(self.not_textual(target)),
            },
        })
    }

    fn not_textual(&self, target: DType) -> Error {
        Error::Conversion {
            from: self.dtype().name(),
            to: target.name(),
            what: "strings and numbers do not convert into each other".into(),
        }
    }

    /// Builds a tensor from raw element bytes (`bytes.len()` must be `shape` product times the
    /// itemsize; the caller checks it). `fortran` means column-major element order.
    pub(crate) fn from_raw(
        dtype: DType,
        itemsize: usize,
        big_endian: bool,
        shape: &[usize],
        fortran: bool,
        bytes: &[u8],
    ) -> std::result::Result<Tensor, String> {
        fn build<T: Elem>(
            shape: &[usize],
            fortran: bool,
            bytes: &[u8],
            big: bool,
        ) -> std::result::Result<Tensor, String> {
            let v: Vec<T> = bytes
                .chunks_exact(T::SIZE)
                .map(|c| T::decode(c, big))
                .collect();
            Ok(T::wrap(shaped(shape, fortran, v)?))
        }
        match dtype {
            DType::Bool => build::<bool>(shape, fortran, bytes, big_endian),
            DType::I8 => build::<i8>(shape, fortran, bytes, big_endian),
            DType::I16 => build::<i16>(shape, fortran, bytes, big_endian),
            DType::I32 => build::<i32>(shape, fortran, bytes, big_endian),
            DType::I64 => build::<i64>(shape, fortran, bytes, big_endian),
            DType::U8 => build::<u8>(shape, fortran, bytes, big_endian),
            DType::U16 => build::<u16>(shape, fortran, bytes, big_endian),
            DType::U32 => build::<u32>(shape, fortran, bytes, big_endian),
            DType::U64 => build::<u64>(shape, fortran, bytes, big_endian),
            DType::F16 => build::<f16>(shape, fortran, bytes, big_endian),
            DType::BF16 => build::<bf16>(shape, fortran, bytes, big_endian),
            DType::F32 => build::<f32>(shape, fortran, bytes, big_endian),
            DType::F64 => build::<f64>(shape, fortran, bytes, big_endian),
            DType::Bytes => {
                if itemsize == 0 {
                    let n = shape.iter().product::<usize>();
                    return Ok(Tensor::Bytes(shaped(shape, fortran, vec![Vec::new(); n])?));
                }
                let v = bytes
                    .chunks_exact(itemsize)
                    .map(|c| {
                        let end = c.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                        c[..end].to_vec()
                    })
                    .collect();
                Ok(Tensor::Bytes(shaped(shape, fortran, v)?))
            }
            DType::Str => {
                if !itemsize.is_multiple_of(4) {
                    return Err(format!(
                        "unicode itemsize {itemsize} is not a multiple of 4"
                    ));
                }
                if itemsize == 0 {
                    let n = shape.iter().product::<usize>();
                    return Ok(Tensor::Str(shaped(shape, fortran, vec![String::new(); n])?));
                }
                let mut v = Vec::with_capacity(bytes.len() / itemsize);
                for c in bytes.chunks_exact(itemsize) {
                    let mut s = String::new();
                    for u in c.chunks_exact(4) {
                        let cp = u32::decode(u, big_endian);
                        s.push(char::from_u32(cp).ok_or_else(|| {
                            format!("invalid unicode code point {cp:#x} in a string array")
                        })?);
                    }
                    // numpy strips trailing NULs from fixed-width strings
                    let trimmed = s.trim_end_matches('\0').len();
                    s.truncate(trimmed);
                    v.push(s);
                }
                Ok(Tensor::Str(shaped(shape, fortran, v)?))
            }
        }
    }

    /// Raw little-endian element bytes in C order, for the fixed-size dtypes.
    pub(crate) fn to_le_bytes(&self) -> Option<Vec<u8>> {
        fn enc<T: Elem>(a: &ArrayD<T>) -> Vec<u8> {
            let mut out = Vec::with_capacity(a.len() * T::SIZE);
            for &x in a.iter() {
                x.encode_le(&mut out);
            }
            out
        }
        with_numeric!(self, a => Some(enc(a)), None)
    }
}

pub(crate) fn shaped<T>(
    shape: &[usize],
    fortran: bool,
    v: Vec<T>,
) -> std::result::Result<ArrayD<T>, String> {
    let r = if fortran {
        ArrayD::from_shape_vec(IxDyn(shape).f(), v)
    } else {
        ArrayD::from_shape_vec(IxDyn(shape), v)
    };
    r.map_err(|e| format!("shape {shape:?} does not match the data: {e}"))
}

macro_rules! from_array {
    ($t:ty, $v:ident) => {
        impl From<ArrayD<$t>> for Tensor {
            fn from(a: ArrayD<$t>) -> Tensor {
                Tensor::$v(a)
            }
        }
    };
}
from_array!(bool, Bool);
from_array!(i8, I8);
from_array!(i16, I16);
from_array!(i32, I32);
from_array!(i64, I64);
from_array!(u8, U8);
from_array!(u16, U16);
from_array!(u32, U32);
from_array!(u64, U64);
from_array!(f16, F16);
from_array!(bf16, BF16);
from_array!(f32, F32);
from_array!(f64, F64);
from_array!(String, Str);
from_array!(Vec<u8>, Bytes);
