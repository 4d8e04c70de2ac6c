//! Portable microkernel (any CPU): the same tile and packing as the AVX-512 one, written so
//! LLVM vectorizes the `NR`-wide inner loop for whatever vector ISA the build targets.

use super::{Act, MR, NR, TileStore};

/// Computes one `R x NR` tile over `kc` depths and stores it through `st`.
///
/// # Safety
/// `a` must hold `kc*MR` floats, `b` `kc*NR` floats; `st`'s pointers must address an
/// `R x st.cols` tile (and bias/residual of the same extent).
pub(crate) unsafe fn kernel<const R: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    st: &TileStore,
) {
    // SAFETY: extents are the caller's contract.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[0f32; NR]; R];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = ap[r];
            for (x, &bv) in acc.iter_mut().zip(bp) {
                *x += av * bv;
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: row r of the tile, `st.cols` valid columns (caller's contract).
        unsafe {
            let crow = std::slice::from_raw_parts_mut(st.c.offset(r as isize * st.c_rs), st.cols);
            for (j, c) in crow.iter_mut().enumerate() {
                let mut v = acc[j] * st.alpha;
                if let Some(s) = st.add_dst {
                    v += s * *c;
                }
                if st.last {
                    if !st.bias_row.is_null() {
                        v += *st.bias_row.add(r);
                    }
                    if !st.bias_col.is_null() {
                        v += *st.bias_col.add(j);
                    }
                    if !st.res.is_null() {
                        v += *st.res.offset(r as isize * st.res_rs).add(j);
                    }
                    v = match st.act {
                        Act::None => v,
                        Act::Relu => {
                            if v < 0.0 {
                                0.0
                            } else {
                                v
                            }
                        }
                        Act::Clip(lo, hi) if !v.is_nan() => v.max(lo).min(hi),
                        Act::Clip(..) => v,
                        Act::LeakyRelu(al) => {
                            if v < 0.0 {
                                al * v
                            } else {
                                v
                            }
                        }
                        // f32::max returns the non-NaN operand, like the AVX-512 max
                        // (clamp would keep a NaN).
                        #[allow(clippy::manual_clamp)]
                        Act::HardSigmoid(al, be) => (al * v + be).max(0.0).min(1.0),
                        #[allow(clippy::manual_clamp)]
                        Act::HardSwish => v * (v + 3.0).max(0.0).min(6.0) / 6.0,
                    };
                    if let Some((scale, shift)) = st.post {
                        v = v * scale + shift;
                    }
                }
                *c = v;
            }
        }
    }
}
