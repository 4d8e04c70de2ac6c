//! CPU kernels, one file per op family; each registers its builders.

use super::registry::KernelRegistry;

pub mod array;
pub mod binary;
pub mod conv;
pub mod conv_nd;
pub mod conv_nhwc;
pub mod deconv;
pub mod depthwise;
pub mod depthwise_nhwc;
pub mod direct_conv;
pub mod einsum;
pub mod fastmath;
pub mod index;
pub mod late;
pub mod loss;
pub mod math;
pub mod matmul;
pub mod norm;
pub mod pool_nd;
pub mod pool_nhwc;
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
    pool_nd::register(r);
    reduce::register(r);
    resize::register(r);
    rnn::register(r);
    unary::register(r);
    tf_array::register(r);
}

/// Work below this many elements runs on the calling thread (rayon overhead dominates).
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

thread_local! {
    /// Set while a plan runs on the caller's own thread (see [`run_inline`]).
    static INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Threads a kernel may split its work over: the engine pool's size, or 1 while the plan runs
/// inline on the caller's thread. Kernels ask this instead of `rayon::current_num_threads()`,
/// which on a thread outside every pool answers for rayon's global pool.
pub(crate) fn pool_threads() -> usize {
    if INLINE.get() {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `f` on the calling thread with kernels told to stay sequential. A plan that would not
/// split its work anyway runs this way: handing a run to the pool and waiting for it costs
/// ~13 us (two thread wake-ups), more than a whole small model (Wide&Deep: 10 us).
pub(crate) fn run_inline<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            INLINE.set(self.0);
        }
    }
    let _reset = Reset(INLINE.replace(true));
    f()
}

#[cfg(test)]
mod tests {
    use super::{pool_threads, run_inline};

    #[test]
    fn run_inline_keeps_kernels_sequential_and_restores_the_flag() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            assert_eq!(pool_threads(), 2);
            run_inline(|| {
                assert_eq!(pool_threads(), 1);
                run_inline(|| assert_eq!(pool_threads(), 1));
                assert_eq!(pool_threads(), 1);
            });
            assert_eq!(pool_threads(), 2);
            // A panicking run (a bug) must not leave the worker thread marked inline.
            let r = std::panic::catch_unwind(|| run_inline(|| panic!("kernel bug")));
            assert!(r.is_err());
            assert_eq!(pool_threads(), 2);
        });
    }
}
