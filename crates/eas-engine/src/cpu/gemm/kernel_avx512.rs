//! AVX-512 microkernel: `R x 32` tile (R <= MR) in `2R` zmm accumulators, one broadcast of A
//! and two loads of B per depth step. Zen 4 issues one 512-bit FMA per cycle (two 256-bit
//! halves) with 4-cycle latency, so 24 independent accumulators (R = 12) keep the pipe full
//! with loads to spare. The store applies the epilogue while the tile is in registers.

use super::{Act, MR, NR, TileStore};
use std::arch::x86_64::*;

/// Computes one tile over `kc` depths and stores it through `st`.
///
/// # Safety
/// The CPU must support AVX-512F; `a` must hold `kc*MR` floats, `b` `kc*NR` floats; `st`'s
/// pointers must address an `R x st.cols` tile (and bias/residual of the same extent).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn kernel<const R: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    st: &TileStore,
) {
    // SAFETY: extents are the caller's contract; AVX-512F is enabled for this function.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let (mut a, mut b) = (a, b);
        let mut p = 0;
        while p + 2 <= kc {
            // Two depths per iteration: fewer loop branches between FMA groups.
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r));
                acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
            }
            let b0 = _mm512_loadu_ps(b.add(NR));
            let b1 = _mm512_loadu_ps(b.add(NR + 16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(MR + r));
                acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
            }
            a = a.add(2 * MR);
            b = b.add(2 * NR);
            p += 2;
        }
        if p < kc {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r));
                acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
            }
        }
        store(&acc, st);
    }
}

#[inline(always)]
fn col_mask(cols: usize) -> __mmask16 {
    if cols >= 16 {
        0xffff
    } else {
        ((1u32 << cols) - 1) as __mmask16
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn store<const R: usize>(acc: &[[__m512; 2]; R], st: &TileStore) {
    // SAFETY: see `kernel`; masked loads/stores touch only the tile's valid columns.
    unsafe {
        let masks = [col_mask(st.cols), col_mask(st.cols.saturating_sub(16))];
        let alpha = _mm512_set1_ps(st.alpha);
        let zero = _mm512_setzero_ps();
        for (r, acc) in acc.iter().enumerate() {
            let crow = st.c.offset(r as isize * st.c_rs);
            for (h, &mask) in masks.iter().enumerate() {
                if mask == 0 {
                    continue;
                }
                let off = h * 16;
                let mut v = acc[h];
                if st.alpha != 1.0 {
                    v = _mm512_mul_ps(v, alpha);
                }
                if let Some(s) = st.add_dst {
                    let old = _mm512_maskz_loadu_ps(mask, crow.add(off));
                    v = if s == 1.0 {
                        _mm512_add_ps(v, old)
                    } else {
                        _mm512_fmadd_ps(old, _mm512_set1_ps(s), v)
                    };
                }
                if st.last {
                    if !st.bias_row.is_null() {
                        v = _mm512_add_ps(v, _mm512_set1_ps(*st.bias_row.add(r)));
                    }
                    if !st.bias_col.is_null() {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, st.bias_col.add(off)));
                    }
                    if !st.res.is_null() {
                        let rp = st.res.offset(r as isize * st.res_rs).add(off);
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, rp));
                    }
                    v = match st.act {
                        Act::None => v,
                        // max(0, v) returns v when v is NaN, like the Relu kernel.
                        Act::Relu => _mm512_max_ps(zero, v),
                        Act::Clip(lo, hi) => {
                            _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v))
                        }
                        Act::LeakyRelu(al) => {
                            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero);
                            _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(al))
                        }
                        Act::HardSigmoid(al, be) => {
                            // Multiply then add (no FMA), like the scalar expression;
                            // max_ps returns its second operand (0) when the first is NaN.
                            let t = _mm512_add_ps(
                                _mm512_mul_ps(_mm512_set1_ps(al), v),
                                _mm512_set1_ps(be),
                            );
                            _mm512_min_ps(_mm512_max_ps(t, zero), _mm512_set1_ps(1.0))
                        }
                        Act::HardSwish => {
                            let six = _mm512_set1_ps(6.0);
                            let t = _mm512_add_ps(v, _mm512_set1_ps(3.0));
                            let t = _mm512_min_ps(_mm512_max_ps(t, zero), six);
                            _mm512_div_ps(_mm512_mul_ps(v, t), six)
                        }
                    };
                    if let Some((scale, shift)) = st.post {
                        // Multiply then add (no FMA): the unfused Mul and Add round twice.
                        v = _mm512_add_ps(
                            _mm512_mul_ps(v, _mm512_set1_ps(scale)),
                            _mm512_set1_ps(shift),
                        );
                    }
                }
                _mm512_mask_storeu_ps(crow.add(off), mask, v);
            }
        }
    }
}
