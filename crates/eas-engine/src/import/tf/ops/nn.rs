//! Neural-network ops: convolutions, pools, normalization, matmul, softmax, reductions.

use super::Builder;
use std::collections::HashMap;

pub(super) fn register(_r: &mut HashMap<&'static str, Builder>) {}
