//! The kernel interface: what a plan calls for each node.

use crate::dtype::{DType, Datum};
use crate::ir::Fact;
use crate::ops::Op;
use crate::tensor::{bytes_as, bytes_as_mut};
use crate::{Error, Result};
use std::fmt::Debug;

/// A read-only tensor in a plan: graph input, constant, or arena region.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn as_slice<T: Datum>(&self) -> Result<&'a [T]> {
        if T::DTYPE != self.dtype {
            return Err(Error::dtype(
                "kernel",
                format!("{} view read as {}", self.dtype, T::DTYPE),
            ));
        }
        Ok(bytes_as::<T>(self.bytes))
    }
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A writable output region.
#[derive(Debug)]
pub struct TensorViewMut<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a mut [u8],
}

impl TensorViewMut<'_> {
    pub fn as_slice_mut<T: Datum>(&mut self) -> Result<&mut [T]> {
        if T::DTYPE != self.dtype {
            return Err(Error::dtype(
                "kernel",
                format!("{} output written as {}", self.dtype, T::DTYPE),
            ));
        }
        Ok(bytes_as_mut::<T>(self.bytes))
    }
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Per-run context handed to kernels.
pub struct KernelCtx<'a> {
    /// 64-byte-aligned scratch of at least `Kernel::scratch_bytes` bytes.
    pub scratch: &'a mut [u8],
    /// Threads of the pool the kernel runs in (rayon calls inside `run` use that pool).
    pub threads: usize,
}

/// A node's computation, specialized at plan time to concrete shapes and dtypes (and, for
/// weights, to their values: packing happens in the builder, never per run).
pub trait Kernel: Send + Sync + Debug {
    /// Scratch the kernel needs per run (im2col buffers ...).
    fn scratch_bytes(&self) -> usize {
        0
    }
    /// Rough multiply-adds per run, for kernels whose work is not told by their tensors'
    /// sizes (a GEMM over a large constant weight with a small output). The planner runs a
    /// plan on the caller's thread when no step is worth splitting; `None`: judge by the sizes
    /// of the step's non-constant inputs and its outputs.
    fn work(&self) -> Option<usize> {
        None
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()>;
    /// Runs a step with string values, whose views hold u64 handles into `strings` (see
    /// `cpu::strings`). Kernels that only move elements keep this default; kernels that read
    /// or make strings (Cast, Equal) override it.
    fn run_strings(
        &self,
        ctx: &mut KernelCtx,
        _strings: &mut super::strings::StringTable,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        self.run(ctx, inputs, outputs)
    }
}

/// Builds a kernel for an op given concrete input facts (constants included, so weights can
/// be packed) and the inferred output facts.
pub type KernelBuilder =
    fn(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>>;

/// Concrete shape of a fact (plans only see concrete shapes).
pub(crate) fn concrete(f: &Fact) -> Result<Vec<usize>> {
    f.shape
        .as_known()
        .ok_or_else(|| Error::unsupported(format!("a shape not known at plan time: {:?}", f.shape)))
}

/// Downcasts the op a builder was registered for.
pub(crate) fn op_as<T: Op>(op: &dyn Op) -> Result<&T> {
    op.downcast_ref::<T>()
        .ok_or_else(|| Error::invalid(format!("kernel builder got op {}", op.name())))
}
