//! String values in plans.
//!
//! A string cannot live in the byte arena: its size is not known from its shape. Inside a
//! plan a string tensor is therefore a vector of u64 handles (`DType::String.size()` bytes
//! each, placed in the arena like any value), and the strings themselves live in a
//! `StringTable` made for each run that has string values: it borrows the strings of string
//! inputs and constants (seeded into their handle buffers when the run starts) and owns the
//! ones kernels make (Cast to string). Data-movement kernels copy handles as 8-byte
//! elements without knowing they are strings; kernels that read or make strings (Cast,
//! Equal) override `Kernel::run_strings` to reach the table. Handle 0 is the empty string,
//! so zeroed memory reads as ONNX's default string, and a handle out of range is an error,
//! never undefined behavior.
//!
//! The no-allocation-in-steady-state guarantee is for numeric plans: a plan with string
//! values allocates its table (and the strings Cast makes) per run.

use crate::tensor::{StrEncoder, Tensor, bytes_as, bytes_as_mut};
use crate::{Error, Result};
use std::borrow::Cow;

/// The strings of one run (or one constant-folding evaluation), by handle.
#[derive(Debug)]
pub struct StringTable<'a> {
    /// The strings of handles 1, 2, ...; handle 0 is the empty string. A new table holds no
    /// allocation, so numeric plans (which never push) allocate nothing for it.
    items: Vec<Cow<'a, [u8]>>,
}

impl Default for StringTable<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> StringTable<'a> {
    /// A table holding only handle 0, the empty string.
    pub fn new() -> Self {
        StringTable { items: Vec::new() }
    }

    /// The string of a handle; an unknown handle is an error.
    pub fn get(&self, h: u64) -> Result<&[u8]> {
        if h == 0 {
            return Ok(&[]);
        }
        usize::try_from(h - 1)
            .ok()
            .and_then(|i| self.items.get(i))
            .map(|s| s.as_ref())
            .ok_or_else(|| Error::invalid(format!("string handle {h} is not in this run's table")))
    }

    /// Adds a string, returning its handle.
    pub fn push(&mut self, s: Cow<'a, [u8]>) -> u64 {
        if s.is_empty() {
            return 0;
        }
        self.items.push(s);
        self.items.len() as u64
    }

    /// Adds the elements of a string tensor (borrowed, not copied) and writes their handles
    /// into `handles` (`t.len()` u64s as bytes).
    pub fn seed(&mut self, t: &'a Tensor, handles: &mut [u8]) -> Result<()> {
        let out = bytes_as_mut::<u64>(handles);
        if out.len() != t.len() {
            return Err(Error::invalid(format!(
                "{} string handles for a tensor of {} elements",
                out.len(),
                t.len()
            )));
        }
        for (o, s) in out.iter_mut().zip(t.strings()?) {
            *o = self.push(Cow::Borrowed(s));
        }
        Ok(())
    }

    /// The string tensor of shape `shape` whose handles are `handles`.
    pub fn tensor(&self, handles: &[u8], shape: &[usize]) -> Result<Tensor> {
        let mut e = StrEncoder::default();
        for &h in bytes_as::<u64>(handles) {
            e.push(self.get(h)?);
        }
        e.finish(shape)
    }
}

/// Handles of a string view's bytes (8-byte aligned: plan buffers are 64-byte aligned).
pub(crate) fn handles(bytes: &[u8]) -> &[u64] {
    bytes_as::<u64>(bytes)
}

/// Mutable handles of a string output's bytes.
pub(crate) fn handles_mut(bytes: &mut [u8]) -> &mut [u64] {
    bytes_as_mut::<u64>(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::AlignedBytes;

    #[test]
    fn seeds_and_reads_back_a_tensor() {
        let t = Tensor::from_strings(&[3], &["a", "", "ccc"]).unwrap();
        let mut table = StringTable::new();
        let mut h = AlignedBytes::zeroed(24).unwrap();
        table.seed(&t, h.as_bytes_mut()).unwrap();
        assert_eq!(handles(h.as_bytes())[1], 0, "empty strings are handle 0");
        assert_eq!(table.tensor(h.as_bytes(), &[3]).unwrap(), t);
        assert!(table.get(99).is_err());
        assert_eq!(table.get(2).unwrap(), b"ccc", "empty strings take no slot");
        let zeros = AlignedBytes::zeroed(16).unwrap();
        let empty = table.tensor(zeros.as_bytes(), &[2]).unwrap();
        assert_eq!(empty, Tensor::from_strings(&[2], &["", ""]).unwrap());
    }
}
