//! CPU kernels, one file per op family; each registers its builders.

use super::registry::KernelRegistry;

pub mod array;
pub mod binary;
pub mod conv;
pub mod deconv;
pub mod einsum;
pub mod fastmath;
pub mod index;
pub mod late;
pub mod loss;
pub mod math;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod tf_array;
pub mod unary;
pub mod winograd;

pub(crate) fn register_all(r: &mut KernelRegistry) {
    array::register(r);
    binary::register(r);
    conv::register(r);
    deconv::register(r);
    einsum::register(r);
    index::register(r);
    late::register(r);
    loss::register(r);
    math::register(r);
    matmul::register(r);
    norm::register(r);
    reduce::register(r);
    resize::register(r);
    rnn::register(r);
    unary::register(r);
    tf_array::register(r);
}

/// Work below this many elements runs on the calling thread (rayon overhead dominates).
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;
