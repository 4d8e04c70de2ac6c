//! `LateParams`: the plain op's kernel, built once the plan knows the parameter's value.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, op_as};
use crate::cpu::registry::{KernelRegistry, kernels};
use crate::ir::Fact;
use crate::ops::{LateParams, Op};
use crate::{Error, Result};

/// Runs `inner` on the data inputs; the parameter input is already baked into it.
#[derive(Debug)]
struct DataInputsOnly {
    inner: Box<dyn Kernel>,
    data_inputs: usize,
}

impl Kernel for DataInputsOnly {
    fn scratch_bytes(&self) -> usize {
        self.inner.scratch_bytes()
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        self.inner.run(ctx, &inputs[..self.data_inputs], outputs)
    }
}

fn late(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let l = op_as::<LateParams>(op)?;
    let (param, data) = inputs
        .split_last()
        .ok_or_else(|| Error::invalid("LateParams without inputs"))?;
    let plain = l.resolve(param)?.ok_or_else(|| {
        Error::unsupported("LateParams whose parameter is not known when planning")
    })?;
    let builder = kernels()
        .get(plain.as_ref())
        .ok_or_else(|| Error::unsupported(format!("no CPU kernel for {}", plain.name())))?;
    Ok(Box::new(DataInputsOnly {
        inner: builder(plain.as_ref(), data, outputs)?,
        data_inputs: data.len(),
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<LateParams>(late);
}
