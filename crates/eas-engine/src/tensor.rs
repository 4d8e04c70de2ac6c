//! Tensors: a dtype, a shape and 64-byte-aligned storage shared through an `Arc`, so cloning a
//! tensor (a weight used by many nodes, a constant in a plan) never copies its data.
//!
//! String tensors (ONNX STRING) keep the same storage, holding a canonical encoding: for each
//! element in row-major order, its length as a little-endian u64, then its bytes. Elements are
//! byte strings (ONNX promises no encoding; a model's invalid UTF-8 is kept, not refused), and
//! the encoding is validated whenever a tensor is made from outside bytes, so reading it back
//! never fails. One encoding per value keeps `as_bytes`, equality and hashing meaningful (CSE
//! and plan keys compare bytes), and zeroed storage is a tensor of empty strings, ONNX's
//! default string. Plans do not compute on this encoding: see `cpu::strings`.

use crate::dtype::{DType, Datum, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, I4, U4};
use crate::{Error, Result};
use std::fmt;
use std::sync::Arc;

/// One cache line; storage is a vector of these so every buffer is 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Block(pub(crate) [u8; 64]);

/// Aligned, zero-initialized bytes.
#[derive(Clone, Default)]
pub struct AlignedBytes {
    blocks: Vec<Block>,
    len: usize,
}

impl fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBytes({})", self.len)
    }
}

impl AlignedBytes {
    /// `len` zero bytes. Fails (never aborts) when the allocation is impossible.
    pub fn zeroed(len: usize) -> Result<Self> {
        let n = len.div_ceil(64);
        let mut blocks = Vec::new();
        blocks
            .try_reserve_exact(n)
            .map_err(|_| Error::invalid(format!("cannot allocate {len} bytes")))?;
        blocks.resize(n, Block([0; 64]));
        Ok(AlignedBytes { blocks, len })
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: blocks are plain bytes, contiguous, and hold at least `len` bytes.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr() as *const u8, self.len) }
    }
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr() as *mut u8, self.len) }
    }
    /// Grows (never shrinks) to at least `len` bytes; contents are unspecified afterwards.
    pub fn ensure_len(&mut self, len: usize) {
        if len > self.len {
            self.blocks.resize(len.div_ceil(64), Block([0; 64]));
            self.len = len;
        }
    }
}

/// Number of elements of a shape; `None` on overflow.
pub fn checked_volume(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// An n-dimensional array with shared, aligned storage.
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Arc<AlignedBytes>,
}

/// Checks that `bytes` is the encoding of exactly `n` strings (see the module doc).
fn check_strings(bytes: &[u8], n: usize) -> Result<()> {
    let mut it = StrIter { bytes, left: n };
    for _ in 0..n {
        if it.next().is_none() {
            return Err(Error::invalid(format!(
                "string tensor data does not hold {n} well-formed elements"
            )));
        }
    }
    if !it.bytes.is_empty() {
        return Err(Error::invalid(format!(
            "string tensor data has {} bytes past its {n} elements",
            it.bytes.len()
        )));
    }
    Ok(())
}

/// The elements of a string tensor's encoding, in order.
#[derive(Clone, Debug)]
pub struct StrIter<'a> {
    bytes: &'a [u8],
    left: usize,
}

impl<'a> Iterator for StrIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let (len, rest) = self.bytes.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if len > rest.len() {
            return None;
        }
        let (s, rest) = rest.split_at(len);
        self.bytes = rest;
        self.left -= 1;
        Some(s)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Builds the encoding of a string tensor element by element.
#[derive(Default)]
pub(crate) struct StrEncoder {
    buf: Vec<u8>,
    count: usize,
}

impl StrEncoder {
    pub(crate) fn push(&mut self, s: &[u8]) {
        self.buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(s);
        self.count += 1;
    }
    /// The tensor of the pushed elements; fails unless they fill `shape`.
    pub(crate) fn finish(self, shape: &[usize]) -> Result<Tensor> {
        if checked_volume(shape) != Some(self.count) {
            return Err(Error::invalid(format!(
                "shape {shape:?} does not hold {} strings",
                self.count
            )));
        }
        let mut data = AlignedBytes::zeroed(self.buf.len())?;
        data.as_bytes_mut().copy_from_slice(&self.buf);
        Ok(Tensor {
            dtype: DType::String,
            shape: shape.to_vec(),
            data: Arc::new(data),
        })
    }
}

fn check_len(dtype: DType, shape: &[usize]) -> Result<usize> {
    checked_volume(shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| Error::invalid(format!("tensor of shape {shape:?} is too large")))
}

impl Tensor {
    /// A zero-filled tensor (false for bool).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let len = check_len(dtype, shape)?;
        Ok(Tensor {
            dtype,
            shape: shape.to_vec(),
            data: Arc::new(AlignedBytes::zeroed(len)?),
        })
    }

    /// Takes a vector of elements; fails when the shape does not match its length.
    pub fn from_vec<T: Datum>(shape: &[usize], v: Vec<T>) -> Result<Tensor> {
        Self::from_slice(shape, &v)
    }

    pub fn from_slice<T: Datum>(shape: &[usize], v: &[T]) -> Result<Tensor> {
        let n = checked_volume(shape)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows")))?;
        if n != v.len() {
            return Err(Error::invalid(format!(
                "shape {shape:?} holds {n} elements, got {}",
                v.len()
            )));
        }
        let mut t = Tensor::zeros(T::DTYPE, shape)?;
        t.as_slice_mut::<T>()?.copy_from_slice(v);
        Ok(t)
    }

    /// A string tensor (`DType::String`) from its elements in row-major order; each element
    /// is a byte string (`&str`, `String`, `&[u8]`, `Vec<u8>` ...).
    pub fn from_strings<S: AsRef<[u8]>>(shape: &[usize], v: &[S]) -> Result<Tensor> {
        let mut e = StrEncoder::default();
        for s in v {
            e.push(s.as_ref());
        }
        e.finish(shape)
    }

    /// The elements of a string tensor, in row-major order; fails for other dtypes.
    pub fn strings(&self) -> Result<StrIter<'_>> {
        if self.dtype != DType::String {
            return Err(Error::dtype(
                "tensor",
                format!("asked for the strings of a {} tensor", self.dtype),
            ));
        }
        Ok(StrIter {
            bytes: self.as_bytes(),
            left: self.len(),
        })
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Datum>(v: T) -> Tensor {
        Tensor::from_slice(&[], &[v]).expect("a scalar always fits")
    }

    /// From little-endian raw bytes (ONNX raw_data, safetensors), one element per
    /// `dtype.size()` bytes. Bools are normalized to 0/1 and 4-bit integers to their low
    /// nibble (sign-extended for i4), so every stored byte is a valid element. For strings,
    /// `bytes` is the encoding described in the module doc, checked element by element.
    pub fn from_raw_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        if dtype == DType::String {
            let n = checked_volume(shape)
                .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows")))?;
            check_strings(bytes, n)?;
            let mut data = AlignedBytes::zeroed(bytes.len())?;
            data.as_bytes_mut().copy_from_slice(bytes);
            return Ok(Tensor {
                dtype,
                shape: shape.to_vec(),
                data: Arc::new(data),
            });
        }
        let len = check_len(dtype, shape)?;
        if len != bytes.len() {
            return Err(Error::invalid(format!(
                "{dtype} tensor of shape {shape:?} needs {len} bytes, got {}",
                bytes.len()
            )));
        }
        let mut data = AlignedBytes::zeroed(len)?;
        let dst = data.as_bytes_mut();
        match dtype {
            DType::Bool => {
                for (d, s) in dst.iter_mut().zip(bytes) {
                    *d = (*s != 0) as u8;
                }
            }
            DType::I4 => {
                for (d, s) in dst.iter_mut().zip(bytes) {
                    *d = I4::from_nibble(*s).0 as u8;
                }
            }
            DType::U4 => {
                for (d, s) in dst.iter_mut().zip(bytes) {
                    *d = U4::from_nibble(*s).0;
                }
            }
            _ => dst.copy_from_slice(bytes),
        }
        Ok(Tensor {
            dtype,
            shape: shape.to_vec(),
            data: Arc::new(data),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        if self.dtype == DType::String {
            // The shape was checked against the encoding when the tensor was made.
            return checked_volume(&self.shape).unwrap_or(0);
        }
        self.data.len() / self.dtype.size()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Raw little-endian bytes (for strings, their encoding: see the module doc).
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }
    /// Mutable bytes (copy-on-write when shared). Bool data must stay 0/1; string encodings
    /// must stay well-formed (callers rewrite string tensors whole instead).
    pub(crate) fn as_bytes_mut(&mut self) -> &mut [u8] {
        Arc::make_mut(&mut self.data).as_bytes_mut()
    }
    /// True when both tensors share the same storage (no copy was made).
    pub fn shares_storage_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// Typed view; fails on a dtype mismatch.
    pub fn as_slice<T: Datum>(&self) -> Result<&[T]> {
        if T::DTYPE != self.dtype {
            return Err(Error::dtype(
                "tensor",
                format!("asked for {} data of a {} tensor", T::DTYPE, self.dtype),
            ));
        }
        let bytes = self.data.as_bytes();
        // SAFETY: storage is 64-byte aligned, the dtype matches T, bools are kept 0/1.
        Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, self.len()) })
    }

    /// Mutable typed view (copy-on-write when shared).
    pub fn as_slice_mut<T: Datum>(&mut self) -> Result<&mut [T]> {
        if T::DTYPE != self.dtype {
            return Err(Error::dtype(
                "tensor",
                format!("asked for {} data of a {} tensor", T::DTYPE, self.dtype),
            ));
        }
        let n = self.len();
        let bytes = self.as_bytes_mut();
        // SAFETY: as in as_slice; T values written are valid for the dtype.
        Ok(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut T, n) })
    }

    /// The same data with another shape of equal volume (no copy).
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor> {
        if checked_volume(shape) != Some(self.len()) {
            return Err(Error::invalid(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        Ok(Tensor {
            dtype: self.dtype,
            shape: shape.to_vec(),
            data: self.data.clone(),
        })
    }

    /// Elements converted to f64 (tests, small shape tensors).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        crate::dispatch_any!(self.dtype, T => self
            .as_slice::<T>()
            .map(|s| s.iter().map(|x| x.to_f64()).collect())
            .unwrap_or_default())
    }

    /// Elements converted to i64 (shape tensors, indices).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        crate::dispatch_any!(self.dtype, T => self
            .as_slice::<T>()
            .map(|s| s.iter().map(|x| x.to_i64()).collect())
            .unwrap_or_default())
    }

    /// Converts to another dtype (ONNX Cast semantics: floats to ints truncate and saturate;
    /// float8 targets saturate, see `cast_with`).
    pub fn cast(&self, to: DType) -> Result<Tensor> {
        self.cast_with(to, true)
    }

    /// `cast` with ONNX Cast's `saturate` flag: when false, values beyond a float8 target's
    /// range become NaN (±inf for f8e5m2) instead of ±max. Other targets ignore it.
    ///
    /// Casts to and from strings print and parse numbers as `dtype::string` describes; a
    /// string that spells no number of the target type is an error.
    pub fn cast_with(&self, to: DType, saturate: bool) -> Result<Tensor> {
        if to == self.dtype {
            return Ok(self.clone());
        }
        if to == DType::String {
            let mut e = StrEncoder::default();
            crate::dispatch_any!(self.dtype, T => {
                crate::dtype::string::format_all(self.as_slice::<T>()?, |s| e.push(s.as_bytes()))
            });
            return e.finish(&self.shape);
        }
        if self.dtype == DType::String {
            let mut out = Tensor::zeros(to, &self.shape)?;
            let strings = self.strings()?;
            crate::dispatch_any!(to, T => {
                for (o, s) in out.as_slice_mut::<T>()?.iter_mut().zip(strings) {
                    *o = crate::dtype::string::parse::<T>(s)?;
                }
            });
            return Ok(out);
        }
        let mut out = Tensor::zeros(to, &self.shape)?;
        cast_slice_bytes_with(
            self.dtype,
            self.as_bytes(),
            to,
            out.as_bytes_mut(),
            saturate,
        );
        Ok(out)
    }
}

/// Element-wise conversion between two byte buffers of the given dtypes (same element
/// count), saturating float8 targets.
pub(crate) fn cast_slice_bytes(from: DType, src: &[u8], to: DType, dst: &mut [u8]) {
    cast_slice_bytes_with(from, src, to, dst, true)
}

/// `cast_slice_bytes` with ONNX Cast's `saturate` flag (see `Tensor::cast_with`). Neither
/// dtype may be a string (their elements are not fixed-size; `Tensor::cast_with` and the
/// Cast kernel convert strings).
/// Integer to integer goes through i64 (exact, wrapping like a C cast; 4-bit targets clamp);
/// anything involving a float goes through f64, which holds every source value exactly, so
/// each conversion rounds once (to nearest even for float targets).
pub(crate) fn cast_slice_bytes_with(
    from: DType,
    src: &[u8],
    to: DType,
    dst: &mut [u8],
    saturate: bool,
) {
    debug_assert!(
        !from.is_string() && !to.is_string(),
        "strings reach cast_slice_bytes"
    );
    if !saturate {
        // Only float8 targets distinguish; their encoder takes the flag directly.
        macro_rules! no_saturate {
            ($($dt:ident => $ty:ident),*) => {
                match to {
                    $(DType::$dt => {
                        let d: &mut [$ty] = bytes_as_mut::<$ty>(dst);
                        crate::dispatch_any!(from, A => {
                            for (o, i) in d.iter_mut().zip(bytes_as::<A>(src)) {
                                *o = $ty::from_f64_with(i.to_f64(), false);
                            }
                        });
                        return;
                    })*
                    _ => {}
                }
            };
        }
        no_saturate!(F8E4M3FN => F8E4M3FN, F8E4M3FNUZ => F8E4M3FNUZ,
            F8E5M2 => F8E5M2, F8E5M2FNUZ => F8E5M2FNUZ);
    }
    crate::dispatch_any!(from, A => {
        let s: &[A] = bytes_as::<A>(src);
        crate::dispatch_any!(to, B => {
            let d: &mut [B] = bytes_as_mut::<B>(dst);
            let int_exact = !A::DTYPE.is_float() && !B::DTYPE.is_float();
            if int_exact {
                for (o, i) in d.iter_mut().zip(s) { *o = B::from_i64(i.to_i64()); }
            } else {
                for (o, i) in d.iter_mut().zip(s) { *o = B::from_f64(i.to_f64()); }
            }
        })
    })
}

/// Reinterprets aligned bytes as elements. Callers guarantee alignment and dtype.
#[inline]
pub(crate) fn bytes_as<T: Datum>(b: &[u8]) -> &[T] {
    debug_assert_eq!(b.as_ptr() as usize % std::mem::align_of::<T>(), 0);
    // SAFETY: callers pass buffers from AlignedBytes / arenas with 64-byte aligned offsets,
    // holding data written as T.
    unsafe {
        std::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / std::mem::size_of::<T>())
    }
}

#[inline]
pub(crate) fn bytes_as_mut<T: Datum>(b: &mut [u8]) -> &mut [T] {
    debug_assert_eq!(b.as_ptr() as usize % std::mem::align_of::<T>(), 0);
    // SAFETY: as in bytes_as.
    unsafe {
        std::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut T, b.len() / std::mem::size_of::<T>())
    }
}

impl PartialEq for Tensor {
    /// Bit-exact equality (NaN payloads included), as load(save(g)) == g needs.
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype
            && self.shape == other.shape
            && self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?}", self.dtype, self.shape)?;
        if let Ok(s) = self.strings() {
            if self.len() <= 16 {
                let v: Vec<_> = s.map(String::from_utf8_lossy).collect();
                write!(f, " {v:?}")?;
            }
            return Ok(());
        }
        if self.len() <= 16 {
            write!(f, " {:?}", self.to_f64_vec())?;
        }
        Ok(())
    }
}

/// Test helper: panics unless `a` has the shape of the reference `b` and is within
/// `tol * (1 + max |b|)` of it (figures from `accuracy::OutputAccuracy`, the gate's metric;
/// values are compared as f64, so an f64 reference may check an f32 result).
#[track_caller]
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    if a.dtype() == DType::String || b.dtype() == DType::String {
        // Strings have no tolerance: equal element by element, or not.
        assert_eq!(a, b, "string tensors differ");
        return;
    }
    let m = crate::accuracy::OutputAccuracy::compare(
        &b.to_f64_vec(),
        &a.to_f64_vec(),
        !b.dtype().is_float(),
    );
    assert!(
        m.mismatch.is_none() && m.max_abs_error <= tol * (1.0 + m.max_abs_reference),
        "tensors differ: {m:?}\n  got      {a:?}\n  expected {b:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_storage() {
        let t = Tensor::from_vec(&[2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        let u = t.clone();
        assert!(t.shares_storage_with(&u));
        assert_eq!(t.as_slice::<f32>().unwrap().as_ptr() as usize % 64, 0);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        assert!(Tensor::from_vec(&[3], vec![1f32, 2.]).is_err());
        assert!(Tensor::zeros(DType::F32, &[usize::MAX, 4]).is_err());
        assert!(Tensor::from_raw_bytes(DType::I32, &[2], &[0u8; 7]).is_err());
    }

    #[test]
    fn cast_truncates_and_keeps_ints_exact() {
        let t = Tensor::from_vec(&[3], vec![1.7f32, -2.5, 300.0]).unwrap();
        assert_eq!(t.cast(DType::I32).unwrap().to_i64_vec(), vec![1, -2, 300]);
        let big = Tensor::from_vec(&[1], vec![(1i64 << 60) + 1]).unwrap();
        let back = big.cast(DType::I32).unwrap().cast(DType::I64).unwrap();
        assert_eq!(back.to_i64_vec(), vec![1]); // wraps like a C cast
        let b = Tensor::from_vec(&[2], vec![0.0f32, 2.0])
            .unwrap()
            .cast(DType::Bool)
            .unwrap();
        assert_eq!(b.as_slice::<bool>().unwrap(), &[false, true]);
    }

    #[test]
    fn mutation_copies_on_write() {
        let t = Tensor::from_vec(&[2], vec![1i64, 2]).unwrap();
        let mut u = t.clone();
        u.as_slice_mut::<i64>().unwrap()[0] = 9;
        assert_eq!(t.to_i64_vec(), vec![1, 2]);
        assert_eq!(u.to_i64_vec(), vec![9, 2]);
    }
}
