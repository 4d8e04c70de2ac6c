//! Data-movement kernels.

use crate::Result;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut};
use crate::cpu::registry::KernelRegistry;
use crate::ir::Fact;
use crate::ops::{Identity, Op};

/// Copies input 0 to output 0 (plans could alias instead; copying keeps lifetimes simple).
#[derive(Debug)]
pub struct CopyKernel;

impl Kernel for CopyKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        outputs[0].bytes.copy_from_slice(inputs[0].bytes);
        Ok(())
    }
}

fn copy(_: &dyn Op, _: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(CopyKernel))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Identity>(copy);
}
