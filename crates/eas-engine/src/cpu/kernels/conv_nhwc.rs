//! Channels-last (NHWC) 2-D convolutions, as `passes::ChannelsLast` makes them: depthwise
//! convs go to `depthwise_nhwc`; every group-1 conv is a GEMM with the output pixels as rows
//! (`out[pixels x M] = col[pixels x K] * w[K x M]`, K = kh*kw*C in (ky, kx, c) order), so a
//! 1x1 conv multiplies the input itself and other kernels build `col` a block of rows at a
//! time.

use crate::cpu::kernel::Kernel;
use crate::ir::Fact;
use crate::ops::FusedConv;
use crate::{Error, Result};

/// The kernel for a channels-last `FusedConv`.
pub(super) fn build(f: &FusedConv, inputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    if let Some(k) = super::depthwise_nhwc::build(f, inputs)? {
        return Ok(k);
    }
    Err(Error::unsupported(format!(
        "channels-last FusedConv (group {}) on {:?}",
        f.conv.group, inputs[0].shape
    )))
}
