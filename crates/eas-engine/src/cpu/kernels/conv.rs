//! Convolution and pooling kernels. 1-D inputs run as 2-D with height 1. f32 and f64.
//!
//! - Conv: 1x1 stride-1 convs run as one gemm per group on the input planes; other convs
//!   as im2col + gemm (large im2col matrices a block of output rows at a time; deep convs
//!   over small planes transposed, the plane on the GEMM's rows); depthwise convs (group == C, any multiplier) as a direct stencil
//!   over the input plane copied into zero-bordered rows split by stride phase, so every
//!   tap is a contiguous run (AVX-512 register tiles for f32 where the CPU has it,
//!   auto-vectorized loops elsewhere). Planes run in parallel.
//! - `FusedConv` runs the same kernel and applies its epilogue (bias, residual add,
//!   activation) to each output row or plane right after it is computed, while it is in
//!   cache. Each epilogue step is computed exactly as the unfused op computes it.
//! - Max/average pools use the same padded-row scheme (fill -inf for max).

use super::PAR_MIN_ELEMS;
use crate::cpu::gemm as sg;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::matmul::{GemmShape, gemm_float};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum, Float, Num};
use crate::ir::Fact;
use crate::ops::conv::{AxisGeom, geometry};
use crate::ops::{Activation, Conv, FusedConv, GlobalPool, Op, Pool, PoolKind, PostAffine};
use crate::{Error, Result};
use rayon::prelude::*;

/// 2-D geometry (1-D promoted with a unit height axis).
#[derive(Clone, Copy, Debug)]
struct Geom2 {
    h: AxisGeom,
    w: AxisGeom,
}

fn unit_axis() -> AxisGeom {
    AxisGeom {
        input: 1,
        kernel: 1,
        stride: 1,
        dilation: 1,
        pad_begin: 0,
        pad_end: 0,
        output: 1,
    }
}

fn geom2(geo: &[AxisGeom], op: &str) -> Result<Geom2> {
    match geo {
        [w] => Ok(Geom2 {
            h: unit_axis(),
            w: *w,
        }),
        [h, w] => Ok(Geom2 { h: *h, w: *w }),
        _ => Err(Error::unsupported(format!(
            "{op} with {} spatial axes on CPU",
            geo.len()
        ))),
    }
}

/// Vector code this CPU can run, detected once per kernel build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    /// Portable code (whatever the compile target allows).
    Base,
    /// AVX2 + FMA: auto-vectorized loops with fused multiply-add.
    Fma,
    /// AVX-512F: hand-written f32 tiles, auto-vectorized loops otherwise.
    Avx512,
}

#[cfg(test)]
thread_local! {
    /// Tests force the portable paths with this.
    static FORCE_SIMD: std::cell::Cell<Option<Simd>> = const { std::cell::Cell::new(None) };
}

impl Simd {
    fn detect() -> Simd {
        #[cfg(test)]
        if let Some(s) = FORCE_SIMD.with(|f| f.get()) {
            return s;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Simd::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Simd::Fma;
            }
        }
        Simd::Base
    }
}

/// `a * b + c`, fused when the caller was compiled with FMA.
#[inline(always)]
fn madd<T: Float, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Reinterprets a slice of `T` as f32 when `T` is f32.
#[inline]
pub(super) fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32.
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) })
}
#[inline]
pub(super) fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32.
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) })
}

// ---- epilogue: activation (and residual), exactly as the unfused ops compute them ----

/// Applies `act` in place; each arm is the `Unary` kernel's expression.
#[inline(always)]
pub(super) fn apply_act<T: Float>(act: Activation, o: &mut [T]) {
    let c = |v: f64| <T as Datum>::from_f64(v);
    let zero = <T as Num>::ZERO;
    let one = <T as Num>::ONE;
    match act {
        Activation::Identity => {}
        Activation::Relu => {
            for v in o {
                *v = if *v > zero || v.is_nan() { *v } else { zero };
            }
        }
        Activation::Clip { min, max } => {
            let (lo, hi) = (c(min), c(max));
            for v in o {
                if !v.is_nan() {
                    *v = Num::minimum(Num::maximum(*v, lo), hi);
                }
            }
        }
        Activation::LeakyRelu { alpha } => {
            let a = c(alpha as f64);
            for v in o {
                *v = if *v < zero { a * *v } else { *v };
            }
        }
        Activation::HardSigmoid { alpha, beta } => {
            let (a, b) = (c(alpha as f64), c(beta as f64));
            for v in o {
                *v = num_traits::Float::min(num_traits::Float::max(a * *v + b, zero), one);
            }
        }
        Activation::HardSwish => {
            let (three, six) = (c(3.0), c(6.0));
            for v in o {
                *v = *v * num_traits::Float::min(num_traits::Float::max(*v + three, zero), six)
                    / six;
            }
        }
        Activation::Sigmoid => match as_f32_mut(o) {
            // The unfused f32 Sigmoid kernel's vectorized function (libm exp per element
            // made a Swish epilogue 6x the cost of the conv itself).
            Some(o) => super::fastmath::sigmoid_inplace(o),
            None => {
                for v in o {
                    *v = one / (one + (-*v).exp());
                }
            }
        },
        Activation::Swish => match as_f32_mut(o) {
            Some(o) => super::fastmath::swish_inplace(o),
            None => {
                for v in o {
                    *v = *v * (one / (one + (-*v).exp()));
                }
            }
        },
    }
}

/// `o = act(o [+ bias] [+ res])`, adds in that order (the unfused graph's order).
#[inline(always)]
pub(super) fn epilogue_impl<T: Float>(
    act: Activation,
    bias: Option<T>,
    res: Option<&[T]>,
    o: &mut [T],
) {
    if let Some(b) = bias {
        for v in o.iter_mut() {
            *v = *v + b;
        }
    }
    if let Some(r) = res {
        for (v, &r) in o.iter_mut().zip(r) {
            *v = *v + r;
        }
    }
    apply_act(act, o);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn epilogue_avx512<T: Float>(act: Activation, bias: Option<T>, res: Option<&[T]>, o: &mut [T]) {
    epilogue_impl(act, bias, res, o)
}

fn epilogue<T: Float>(
    simd: Simd,
    act: Activation,
    bias: Option<T>,
    res: Option<&[T]>,
    o: &mut [T],
) {
    if bias.is_none() && res.is_none() && act == Activation::Identity {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: the CPU has AVX-512F (Simd::detect).
        return unsafe { epilogue_avx512(act, bias, res, o) };
    }
    let _ = simd;
    epilogue_impl(act, bias, res, o)
}

/// `act` as the GEMM store computes it in registers (the same expressions as
/// `apply_act`); `None` for what needs `apply_act` itself (exp, NaN clip bounds).
pub(super) fn gemm_act(act: Activation) -> Option<sg::Activation<'static>> {
    Some(match act {
        Activation::Identity => sg::Activation::None,
        Activation::Relu => sg::Activation::Relu,
        Activation::Clip { min, max } => {
            let (lo, hi) = (min as f32, max as f32);
            if lo.is_nan() || hi.is_nan() {
                return None;
            }
            sg::Activation::Clip(lo, hi)
        }
        Activation::LeakyRelu { alpha } => sg::Activation::LeakyRelu(alpha),
        Activation::HardSigmoid { alpha, beta } => sg::Activation::HardSigmoid(alpha, beta),
        Activation::HardSwish => sg::Activation::HardSwish,
        Activation::Sigmoid | Activation::Swish => return None,
    })
}

/// A fused conv's kernel followed by its `PostAffine` map, for the paths whose store does
/// not apply it (depthwise, Winograd, N-d, transposed pointwise): one pass over the output
/// while it is still warm, instead of the unfused Mul and Add steps.
#[derive(Debug)]
struct WithPost {
    inner: Box<dyn Kernel>,
    post: PostAffine,
}

impl Kernel for WithPost {
    fn scratch_bytes(&self) -> usize {
        self.inner.scratch_bytes()
    }
    fn work(&self) -> Option<usize> {
        self.inner.work()
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        self.inner.run(ctx, inputs, outputs)?;
        apply_post(self.post, outputs[0].as_slice_mut::<f32>()?);
        Ok(())
    }
}

/// `v = v * scale + shift`, a multiply then an add (the unfused Mul and Add).
pub(super) fn apply_post(p: PostAffine, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Simd::detect() == Simd::Avx512 {
        #[target_feature(enable = "avx512f")]
        fn go(p: PostAffine, o: &mut [f32]) {
            for v in o {
                *v = *v * p.scale + p.shift;
            }
        }
        // SAFETY: the CPU has AVX-512F (Simd::detect).
        return unsafe { go(p, o) };
    }
    for v in o {
        *v = *v * p.scale + p.shift;
    }
}

// ---- padded, phase-split rows (depthwise conv and pools) ----

/// One input plane copied into rows with the horizontal padding materialized and split
/// into `sw` stride phases: phase p of row y holds padded[y][j * sw + p]. The input of
/// output column ox at tap offset t (= kj * dilation) is then phase t % sw at index
/// ox + t / sw: a contiguous run for every stride. Row `ih` is all fill; rows outside the
/// input read it.
#[derive(Clone, Debug)]
struct PhaseRows {
    ih: usize,
    iw: usize,
    pad_l: usize,
    sw: usize,
    /// Phase length.
    pl: usize,
    /// Offset of each horizontal tap kj within a row (phase start + index).
    taps: Vec<usize>,
}

/// Output columns per portable register tile; the scratch has this much slack past the
/// last row so full tiles can always be read (the extra lanes are never stored).
const TW: usize = 32;

impl PhaseRows {
    fn new(g: &Geom2) -> PhaseRows {
        let w = g.w;
        let ek = (w.kernel - 1) * w.dilation + 1;
        // Pools in ceil mode may read past the end padding: cover every window.
        let pw = (w.pad_begin + w.input + w.pad_end).max((w.output.max(1) - 1) * w.stride + ek);
        let (sw, pl) = (w.stride, pw.div_ceil(w.stride));
        PhaseRows {
            ih: g.h.input,
            iw: w.input,
            pad_l: w.pad_begin,
            sw,
            pl,
            taps: (0..w.kernel)
                .map(|kj| {
                    let t = kj * w.dilation;
                    (t % sw) * pl + t / sw
                })
                .collect(),
        }
    }
    /// Rows plus the fill row.
    fn len(&self) -> usize {
        (self.ih + 1) * self.sw * self.pl
    }
    /// Scratch length: rows plus tile slack.
    fn scratch_len(&self) -> usize {
        self.len() + TW
    }
    /// Start of row `iy` (the fill row when outside the input).
    #[inline(always)]
    fn row(&self, iy: isize) -> usize {
        let r = if iy >= 0 && (iy as usize) < self.ih {
            iy as usize
        } else {
            self.ih
        };
        r * self.sw * self.pl
    }
    fn fill<T: Copy>(&self, x: &[T], fill: T, buf: &mut [T]) {
        let (sw, pl, iw, pad_l) = (self.sw, self.pl, self.iw, self.pad_l);
        for (y, rows) in buf[..self.len()].chunks_mut(sw * pl).enumerate() {
            if y == self.ih {
                rows.fill(fill);
                break;
            }
            let src = &x[y * iw..][..iw];
            if sw == 1 {
                rows[..pad_l].fill(fill);
                rows[pad_l..pad_l + iw].copy_from_slice(src);
                rows[pad_l + iw..].fill(fill);
            } else if sw == 2 {
                // De-interleave column pairs: even columns go to phase pad_l % 2.
                rows.fill(fill);
                let (a, b) = rows.split_at_mut(pl);
                let (ev, od) = if pad_l % 2 == 0 { (a, b) } else { (b, a) };
                let pairs = iw / 2;
                let ev = &mut ev[pad_l / 2..][..pairs + iw % 2];
                let od = &mut od[pad_l.div_ceil(2)..][..pairs];
                for ((e, o), c) in ev.iter_mut().zip(od.iter_mut()).zip(src.chunks_exact(2)) {
                    *e = c[0];
                    *o = c[1];
                }
                if iw % 2 == 1 {
                    ev[pairs] = src[iw - 1];
                }
            } else {
                rows.fill(fill);
                for p in 0..sw {
                    // First input column landing in phase p, and its index there.
                    let xx0 = (p + sw - pad_l % sw) % sw;
                    let j0 = (xx0 + pad_l) / sw;
                    let src = src.get(xx0..).unwrap_or(&[]);
                    for (d, &v) in rows[p * pl + j0..].iter_mut().zip(src.iter().step_by(sw)) {
                        *d = v;
                    }
                }
            }
        }
    }

    /// [`PhaseRows::fill`], with the AVX-512 copies for f32 rows of stride 1 and 2.
    fn fill_simd<T: Float + 'static>(&self, simd: Simd, x: &[T], fill: T, buf: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if simd == Simd::Avx512
            && self.sw <= 2
            && let (Some(xf), Some(b)) = (as_f32(x), as_f32_mut(buf))
        {
            let f = fill.to_f32();
            // SAFETY: the CPU has AVX-512F (Simd::detect).
            unsafe {
                if self.sw == 1 {
                    pool_avx512::fill_s1(self, xf, f, b)
                } else {
                    pool_avx512::fill_s2(self, xf, f, b)
                }
            };
            return;
        }
        let _ = simd;
        self.fill(x, fill, buf)
    }
}

/// Splits `planes` planes of `plane` elements (each `work` flops) into tasks for the
/// pool's threads; 1 = run on the calling thread.
fn plane_tasks(threads: usize, planes: usize, work: usize) -> usize {
    const MIN_TASK_WORK: usize = 1 << 16;
    if threads <= 1 || planes <= 1 {
        return 1;
    }
    let by_work = (planes * work / MIN_TASK_WORK).max(1);
    by_work.min(planes).min(threads * 4)
}

/// Runs `f(first_plane, planes_out, scratch)` over `out` split into plane ranges, in
/// parallel when `tasks > 1`; each task gets its own `scratch_len` elements of `scratch`
/// (from the plan's per-run scratch: no allocation), filled with `fill` first. Fewer tasks
/// run when `scratch` holds less than `tasks` shares.
#[allow(clippy::too_many_arguments)]
fn for_planes<T: Float + Send + Sync>(
    out: &mut [T],
    plane: usize,
    tasks: usize,
    scratch: &mut [T],
    scratch_len: usize,
    fill: T,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) {
    let planes = out.len() / plane.max(1);
    if plane == 0 || planes == 0 || scratch_len == 0 {
        return;
    }
    let tasks = tasks.min(scratch.len() / scratch_len).max(1);
    if tasks <= 1 {
        let buf = &mut scratch[..scratch_len];
        buf.fill(fill);
        f(0, out, buf);
        return;
    }
    let per = planes.div_ceil(tasks);
    out.par_chunks_mut(per * plane)
        .zip(scratch.par_chunks_mut(scratch_len))
        .enumerate()
        .for_each(|(t, (o, buf))| {
            buf.fill(fill);
            f(t * per, o, buf);
        });
}

/// Scratch bytes for `for_planes` at the pool's thread count (plan time).
fn planes_scratch_bytes(tasks: usize, scratch_len: usize, elem: usize) -> usize {
    (tasks.max(1) * scratch_len * elem).next_multiple_of(64)
}

// ---- depthwise ----

/// One depthwise output plane: `o = conv(plane) + bias`, portable loops (one pass over
/// the output row per tap).
#[inline(always)]
fn dw_plane_impl<T: Float, const FMA: bool>(
    g: &Geom2,
    pr: &PhaseRows,
    buf: &[T],
    wk: &[T],
    bias: T,
    o: &mut [T],
) {
    let (hg, wg) = (g.h, g.w);
    let ow = wg.output;
    for (oy, orow) in o.chunks_exact_mut(ow).enumerate() {
        for ox in (0..ow).step_by(TW) {
            let mut acc = [bias; TW];
            for ki in 0..hg.kernel {
                let iy = (oy * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
                if iy < 0 || iy as usize >= hg.input {
                    continue;
                }
                let base = pr.row(iy) + ox;
                for (kj, &t) in pr.taps.iter().enumerate() {
                    let src: &[T; TW] = buf[base + t..][..TW].try_into().expect("TW");
                    let w = wk[ki * wg.kernel + kj];
                    for (a, &s) in acc.iter_mut().zip(src) {
                        *a = madd::<T, FMA>(s, w, *a);
                    }
                }
            }
            let n = (ow - ox).min(TW);
            orow[ox..ox + n].copy_from_slice(&acc[..n]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dw_plane_fma<T: Float>(g: &Geom2, pr: &PhaseRows, buf: &[T], wk: &[T], bias: T, o: &mut [T]) {
    dw_plane_impl::<T, true>(g, pr, buf, wk, bias, o)
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    //! f32 AVX-512 tiles: up to 4 output rows x 16 columns accumulate in registers over
    //! every tap, then get the epilogue and one masked store.
    use super::{Geom2, PhaseRows};
    use crate::ops::Activation;
    use std::arch::x86_64::*;

    /// The mask of the first `n` of 16 lanes (all 16 for `n >= 16`).
    #[inline(always)]
    pub(in crate::cpu::kernels) fn mask(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// The activation on 16 lanes, or `None` when it needs the scalar path (exp).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) fn vec_act(act: Activation, v: __m512) -> Option<__m512> {
        let zero = _mm512_setzero_ps();
        Some(match act {
            Activation::Identity => v,
            Activation::Relu => {
                _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, zero), zero)
            }
            Activation::Clip { min, max } => {
                let (lo, hi) = (min as f32, max as f32);
                if lo.is_nan() || hi.is_nan() {
                    return None;
                }
                let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
                let t = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, lo), lo);
                _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(t, hi), hi)
            }
            Activation::LeakyRelu { alpha } => _mm512_mask_mov_ps(
                v,
                _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero),
                _mm512_mul_ps(_mm512_set1_ps(alpha), v),
            ),
            Activation::HardSigmoid { alpha, beta } => {
                let t = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_set1_ps(alpha), v),
                    _mm512_set1_ps(beta),
                );
                // max_ps returns its second operand when the first is NaN, like f32::max.
                _mm512_min_ps(_mm512_max_ps(t, zero), _mm512_set1_ps(1.0))
            }
            Activation::HardSwish => {
                let six = _mm512_set1_ps(6.0);
                let t = _mm512_add_ps(v, _mm512_set1_ps(3.0));
                let t = _mm512_min_ps(_mm512_max_ps(t, zero), six);
                _mm512_div_ps(_mm512_mul_ps(v, t), six)
            }
            Activation::Sigmoid | Activation::Swish => return None,
        })
    }

    /// Whether `vec_act` handles `act`.
    pub(crate) fn act_in_tile(act: Activation) -> bool {
        match act {
            Activation::Clip { min, max } => !(min as f32).is_nan() && !(max as f32).is_nan(),
            Activation::Sigmoid | Activation::Swish => false,
            _ => true,
        }
    }

    /// One depthwise plane. Applies the residual and, when `act_in_tile(act)`, the
    /// activation; otherwise the caller applies it.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dw_plane(
        g: &Geom2,
        pr: &PhaseRows,
        buf: &[f32],
        wk: &[f32],
        bias: f32,
        act: Activation,
        res: Option<&[f32]>,
        o: &mut [f32],
    ) {
        let (oh, ow) = (g.h.output, g.w.output);
        assert!(o.len() >= oh * ow && buf.len() >= pr.len() && wk.len() >= g.h.kernel * g.w.kernel);
        assert!(pr.taps.len() == g.w.kernel);
        assert!(res.is_none_or(|r| r.len() >= oh * ow));
        let mut oy = 0;
        while oy < oh {
            let nr = (oh - oy).min(4);
            let mut ox = 0;
            while ox < ow {
                let n = (ow - ox).min(16);
                let m = mask(n);
                // SAFETY: bounds asserted above; every load and store is masked to the
                // valid lanes, which lie inside the row (see PhaseRows).
                unsafe {
                    match nr {
                        4 => tile::<4>(g, pr, buf, wk, bias, act, res, o, oy, ox, m),
                        3 => tile::<3>(g, pr, buf, wk, bias, act, res, o, oy, ox, m),
                        2 => tile::<2>(g, pr, buf, wk, bias, act, res, o, oy, ox, m),
                        _ => tile::<1>(g, pr, buf, wk, bias, act, res, o, oy, ox, m),
                    }
                }
                ox += n;
            }
            oy += nr;
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize>(
        g: &Geom2,
        pr: &PhaseRows,
        buf: &[f32],
        wk: &[f32],
        bias: f32,
        act: Activation,
        res: Option<&[f32]>,
        o: &mut [f32],
        oy: usize,
        ox: usize,
        m: __mmask16,
    ) {
        let (hg, wg) = (g.h, g.w);
        let bp = buf.as_ptr();
        let mut acc = [_mm512_set1_ps(bias); R];
        for ki in 0..hg.kernel {
            let mut rows = [0usize; R];
            for (r, row) in rows.iter_mut().enumerate() {
                let iy = ((oy + r) * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
                *row = pr.row(iy) + ox;
            }
            for (kj, &off) in pr.taps.iter().enumerate() {
                // SAFETY: ki * kw + kj < kh * kw (asserted by the caller).
                let w = _mm512_set1_ps(unsafe { *wk.get_unchecked(ki * wg.kernel + kj) });
                for r in 0..R {
                    // SAFETY: valid lanes index inside buf (caller's contract).
                    let x = unsafe { _mm512_maskz_loadu_ps(m, bp.add(rows[r] + off)) };
                    acc[r] = _mm512_fmadd_ps(x, w, acc[r]);
                }
            }
        }
        let ow = wg.output;
        for (r, a) in acc.iter().enumerate() {
            let idx = (oy + r) * ow + ox;
            let mut v = *a;
            if let Some(res) = res {
                // SAFETY: idx + valid lanes < oh * ow <= res.len().
                v = _mm512_add_ps(v, unsafe {
                    _mm512_maskz_loadu_ps(m, res.as_ptr().add(idx))
                });
            }
            let v = vec_act(act, v).unwrap_or(v);
            // SAFETY: as for res.
            unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr().add(idx), m, v) };
        }
    }
}

// ---- Conv / FusedConv ----

#[derive(Debug)]
struct ConvKernel {
    dtype: DType,
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    g: Geom2,
    has_bias: bool,
    /// Pointwise conv: the input plane is the im2col matrix.
    pointwise: bool,
    depthwise: bool,
    /// Fused epilogue (`FusedConv`); Identity / false for a plain Conv.
    act: Activation,
    /// Input 3 is added to the output before the activation.
    residual: bool,
    /// Applied after the activation in the packed GEMM's store (`post_in_store`); the
    /// builder wraps the other paths in `WithPost` instead.
    post: Option<PostAffine>,
    simd: Simd,
    /// f32 weights packed once at plan time, one per group (empty: pack per call).
    packed_w: Vec<sg::PackedA>,
    /// Deep convs over small planes (7x7, 14x14) run transposed,
    /// `out^T[plane x m] = col^T w^T` (col: the im2col matrix, or the input for a pointwise
    /// conv), with these weights: the plane is then the GEMM's row dimension (12-row tiles)
    /// instead of its column dimension (32-column panels, of which 49 columns fill only
    /// 77%). Group 1 only.
    packed_wt: Option<sg::PackedB>,
    /// Large im2col matrices are built and multiplied a block of output rows at a time (see
    /// [`ColBlocks`]); `None`: the whole matrix at once.
    blocks: Option<ColBlocks>,
    /// Scratch the packed GEMM needs after the im2col buffer (transposed: the `out^T`
    /// buffer first).
    gemm_scratch: usize,
    /// Depthwise: per-task padded-row buffers (`for_planes`).
    planes_scratch: usize,
}

/// Column blocks of a blocked im2col conv: the im2col matrix of a ResNet stem (7x7 taps of 3
/// channels over 112x112 outputs) is 7.4 MB, so building it whole writes it out to memory and
/// the GEMM's packing reads it back; a block of output rows fits L2 instead. Each task takes
/// whole blocks (im2col, then a one-thread GEMM into its columns of the output) with scratch
/// of its own.
#[derive(Clone, Copy, Debug)]
struct ColBlocks {
    /// Output rows per block.
    rows: usize,
    /// Tasks the scratch was sized for.
    tasks: usize,
    /// Scratch bytes of one task: its column block, then its GEMM packing buffers.
    col_bytes: usize,
    gemm_bytes: usize,
}

/// Bytes of an im2col column block (half of a Zen 4 L2: the GEMM's packed B block of the
/// same size sits beside it).
const COL_BLOCK_BYTES: usize = 256 << 10;

impl ConvKernel {
    /// Whether every run goes through the packed GEMM with its epilogue in the store (f32
    /// weights packed at plan time, not transposed, a non-empty depth), which then
    /// applies `post` too.
    fn post_in_store(&self) -> bool {
        !self.depthwise
            && self.packed_wt.is_none()
            && self.packed_w.len() == self.group
            && self.col_rows() > 0
    }

    /// im2col buffer bytes, rounded so the GEMM's scratch after it starts aligned.
    fn col_bytes(&self) -> usize {
        if self.pointwise || self.depthwise || self.blocks.is_some() {
            0
        } else {
            (self.col_rows() * self.out_plane() * self.dtype.size()).next_multiple_of(64)
        }
    }
    fn col_rows(&self) -> usize {
        (self.c / self.group) * self.g.h.kernel * self.g.w.kernel
    }
    fn out_plane(&self) -> usize {
        self.g.h.output * self.g.w.output
    }

    #[allow(clippy::too_many_arguments)]
    fn run_t<T: Float + Send + Sync + 'static>(
        &self,
        ctx: &mut KernelCtx,
        x: &[T],
        w: &[T],
        bias: Option<&[T]>,
        res: Option<&[T]>,
        out: &mut [T],
    ) -> Result<()> {
        if self.depthwise {
            self.run_depthwise(ctx.threads, ctx.scratch, x, w, bias, res, out);
            return Ok(());
        }
        if let Some(wt) = &self.packed_wt
            && let (Some(x), Some(out)) = (as_f32(x), as_f32_mut(out))
        {
            let bias = bias.and_then(as_f32);
            let res = res.and_then(as_f32);
            return self.run_transposed(ctx, wt, x, bias, res, out);
        }
        if let Some(cb) = self.blocks
            && let (Some(x), Some(out)) = (as_f32(x), as_f32_mut(out))
        {
            let bias = bias.and_then(as_f32);
            let res = res.and_then(as_f32);
            return self.run_blocked(ctx, cb, x, bias, res, out);
        }
        let (ih, iw) = (self.g.h.input, self.g.w.input);
        let in_plane = ih * iw;
        let op = self.out_plane();
        let cpg = self.c / self.group;
        let mpg = self.m / self.group;
        let kk = self.col_rows();
        if op == 0 {
            return Ok(());
        }
        let (col_scratch, gemm_scratch) = ctx.scratch.split_at_mut(self.col_bytes());
        let col: &mut [T] = if self.pointwise {
            &mut []
        } else {
            let bytes = &mut col_scratch[..kk * op * std::mem::size_of::<T>()];
            crate::tensor::bytes_as_mut::<T>(bytes)
        };
        for b in 0..self.n {
            for g in 0..self.group {
                let xg = &x[(b * self.c + g * cpg) * in_plane..][..cpg * in_plane];
                let rhs: &[T] = if self.pointwise {
                    xg
                } else {
                    im2col(xg, col, cpg, self.g);
                    col
                };
                let first = (b * self.m + g * mpg) * op;
                let dst = &mut out[first..][..mpg * op];
                let wg_ = &w[g * mpg * kk..][..mpg * kk];
                let s = GemmShape {
                    m: mpg,
                    n: op,
                    k: kk,
                    a_rs: kk as isize,
                    a_cs: 1,
                    b_rs: op as isize,
                    b_cs: 1,
                    dst_rs: op as isize,
                };
                let res = res.map(|r| &r[first..][..mpg * op]);
                // The packed f32 GEMM applies bias, residual and activation in its store,
                // while each tile is in registers: no second pass over the output.
                let mut in_store = false;
                if kk == 0 {
                    dst.fill(T::ZERO);
                } else if let Some(pw) = self.packed_w.get(g) {
                    // Packed weights exist only for f32 kernels, so T is f32 here.
                    debug_assert_eq!(std::any::TypeId::of::<T>(), std::any::TypeId::of::<f32>());
                    let act = self.act;
                    let map = move |o: &mut [f32]| apply_act(act, o);
                    let ep = sg::Epilogue {
                        bias: match bias.and_then(as_f32) {
                            Some(bv) => sg::Bias::Row(&bv[g * mpg..]),
                            None => sg::Bias::None,
                        },
                        residual: res.and_then(as_f32).map(|r| (r, op)),
                        act: gemm_act(act).unwrap_or(sg::Activation::Map(&map)),
                        post: self.post.map(|p| (p.scale, p.shift)),
                        ..sg::Epilogue::default()
                    };
                    in_store = true;
                    // SAFETY: rhs is a kk x op row-major matrix, dst an mpg x op one; T = f32.
                    unsafe {
                        sg::sgemm(
                            mpg,
                            op,
                            kk,
                            sg::Operand::Packed(pw),
                            sg::Operand::Strided(sg::Strided {
                                ptr: rhs.as_ptr() as *const f32,
                                rs: op as isize,
                                cs: 1,
                            }),
                            dst.as_mut_ptr() as *mut f32,
                            op as isize,
                            &ep,
                            &mut gemm_scratch[..self.gemm_scratch],
                            ctx.threads,
                        )?
                    };
                } else {
                    // SAFETY: slices above have exactly the extents the shape describes.
                    unsafe {
                        gemm_float(
                            s,
                            dst.as_mut_ptr(),
                            wg_.as_ptr(),
                            rhs.as_ptr(),
                            false,
                            T::ZERO,
                            T::ONE,
                            ctx.threads,
                        )
                    };
                }
                if in_store {
                    continue;
                }
                // Bias, residual and activation per output-channel row, right after the
                // gemm.
                let row = |c: usize, o: &mut [T]| {
                    let bv = bias.map(|bv| bv[(g * mpg + c) % self.m]);
                    epilogue(self.simd, self.act, bv, res.map(|r| &r[c * op..][..op]), o);
                };
                let tasks = plane_tasks(ctx.threads, mpg, op);
                if tasks <= 1 {
                    dst.chunks_mut(op).enumerate().for_each(|(c, o)| row(c, o));
                } else {
                    dst.par_chunks_mut(op)
                        .with_min_len(mpg.div_ceil(tasks))
                        .enumerate()
                        .for_each(|(c, o)| row(c, o));
                }
            }
        }
        Ok(())
    }

    /// im2col conv a block of output rows at a time ([`ColBlocks`]); f32 with packed weights.
    fn run_blocked(
        &self,
        ctx: &mut KernelCtx,
        cb: ColBlocks,
        x: &[f32],
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<()> {
        let (op, ow, oh) = (self.out_plane(), self.g.w.output, self.g.h.output);
        let in_plane = self.g.h.input * self.g.w.input;
        let (cpg, mpg, kk) = (self.c / self.group, self.m / self.group, self.col_rows());
        let nblocks = oh.div_ceil(cb.rows);
        let tasks = ctx.threads.clamp(1, cb.tasks).min(nblocks);
        let per = cb.col_bytes + cb.gemm_bytes;
        let scratch = &mut ctx.scratch[..per * tasks];
        let act = self.act;
        let map = move |o: &mut [f32]| apply_act(act, o);
        let map: &(dyn Fn(&mut [f32]) + Sync) = &map;
        let dst = SendPtr(out.as_mut_ptr());
        // One image and group at a time; the tasks split its blocks.
        for b in 0..self.n {
            for g in 0..self.group {
                let xg = &x[(b * self.c + g * cpg) * in_plane..][..cpg * in_plane];
                let first = (b * self.m + g * mpg) * op;
                let res = res.map(|r| &r[first..][..mpg * op]);
                let ep_base = sg::Epilogue {
                    bias: match bias {
                        Some(bv) => sg::Bias::Row(&bv[g * mpg..]),
                        None => sg::Bias::None,
                    },
                    act: gemm_act(act).unwrap_or(sg::Activation::Map(map)),
                    ..sg::Epilogue::default()
                };
                let pw = &self.packed_w[g];
                let task = |ti: usize, buf: &mut [u8]| -> Result<()> {
                    let (cs, gs) = buf.split_at_mut(cb.col_bytes);
                    let col = crate::tensor::bytes_as_mut::<f32>(cs);
                    for bi in (nblocks * ti / tasks)..(nblocks * (ti + 1) / tasks) {
                        let (oy0, oy1) = (bi * cb.rows, ((bi + 1) * cb.rows).min(oh));
                        let (j0, cols) = (oy0 * ow, (oy1 - oy0) * ow);
                        im2col_rows(xg, col, cpg, self.g, oy0, oy1, false);
                        let ep = sg::Epilogue {
                            residual: res.map(|r| (&r[j0..], op)),
                            ..ep_base
                        };
                        // SAFETY: col holds the kk x cols block; the destination is columns
                        // [j0, j0+cols) of this group's mpg x op output, which no other task
                        // writes.
                        unsafe {
                            sg::sgemm(
                                mpg,
                                cols,
                                kk,
                                sg::Operand::Packed(pw),
                                sg::Operand::Strided(sg::Strided {
                                    ptr: col.as_ptr(),
                                    rs: cols as isize,
                                    cs: 1,
                                }),
                                dst.get().add(first + j0),
                                op as isize,
                                &ep,
                                gs,
                                1,
                            )?
                        };
                    }
                    Ok(())
                };
                if tasks <= 1 {
                    task(0, &mut scratch[..per])?;
                } else {
                    scratch
                        .par_chunks_mut(per)
                        .enumerate()
                        .try_for_each(|(ti, buf)| task(ti, buf))?;
                }
            }
        }
        Ok(())
    }

    /// Bytes of the `out^T` buffer of the transposed pointwise path (64-byte rounded).
    fn t_bytes(&self) -> usize {
        (self.out_plane() * self.m * 4).next_multiple_of(64)
    }

    /// Conv as `t = col^T w^T + bias` (plane x m, in scratch; col is the im2col matrix, or
    /// the input of a pointwise conv), then transposed into `out` with the residual and
    /// activation applied per output row. The GEMM sums each output over the same depths in
    /// the same order as the untransposed one, so the result is bit for bit the same.
    fn run_transposed(
        &self,
        ctx: &mut KernelCtx,
        wt: &sg::PackedB,
        x: &[f32],
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<()> {
        let (op, m, c, kk) = (self.out_plane(), self.m, self.c, self.col_rows());
        let in_plane = self.g.h.input * self.g.w.input;
        let (col_s, rest) = ctx.scratch.split_at_mut(self.col_bytes());
        let (tb, gs) = rest[..self.gemm_scratch].split_at_mut(self.t_bytes());
        let t = crate::tensor::bytes_as_mut::<f32>(tb);
        let col = crate::tensor::bytes_as_mut::<f32>(col_s);
        let ep = sg::Epilogue {
            bias: bias.map_or(sg::Bias::None, sg::Bias::Col),
            ..sg::Epilogue::default()
        };
        for b in 0..self.n {
            let xb = &x[b * c * in_plane..][..c * in_plane];
            let rhs: &[f32] = if self.pointwise {
                xb
            } else {
                im2col(xb, col, c, self.g);
                &col[..kk * op]
            };
            // SAFETY: col^T is op x kk with element (s, r) at rhs[r*op + s]; t holds op x m.
            unsafe {
                sg::sgemm(
                    op,
                    m,
                    kk,
                    sg::Operand::Strided(sg::Strided {
                        ptr: rhs.as_ptr(),
                        rs: 1,
                        cs: op as isize,
                    }),
                    sg::Operand::Packed(wt),
                    t.as_mut_ptr(),
                    m as isize,
                    &ep,
                    gs,
                    ctx.threads,
                )?
            };
            let ob = &mut out[b * m * op..][..m * op];
            let rb = res.map(|r| &r[b * m * op..][..m * op]);
            let t = &t[..op * m];
            // Blocks of 16 output channels: contiguous 16-float reads of t, 16 rows written.
            const CB: usize = 16;
            let block = |bi: usize, o: &mut [f32]| {
                let c0 = bi * CB;
                let rows = o.len() / op;
                for s in 0..op {
                    let src = &t[s * m + c0..][..rows];
                    for (j, &v) in src.iter().enumerate() {
                        o[j * op + s] = v;
                    }
                }
                for (j, orow) in o.chunks_exact_mut(op).enumerate() {
                    let r = rb.map(|r| &r[(c0 + j) * op..][..op]);
                    epilogue(self.simd, self.act, None, r, orow);
                }
            };
            let tasks = plane_tasks(ctx.threads, m.div_ceil(CB), CB * op * 4);
            if tasks <= 1 {
                ob.chunks_mut(CB * op)
                    .enumerate()
                    .for_each(|(bi, o)| block(bi, o));
            } else {
                ob.par_chunks_mut(CB * op)
                    .enumerate()
                    .for_each(|(bi, o)| block(bi, o));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_depthwise<T: Float + Send + Sync + 'static>(
        &self,
        threads: usize,
        scratch: &mut [u8],
        x: &[T],
        w: &[T],
        bias: Option<&[T]>,
        res: Option<&[T]>,
        out: &mut [T],
    ) {
        let g = self.g;
        let pr = PhaseRows::new(&g);
        let op = self.out_plane();
        let in_plane = g.h.input * g.w.input;
        let kk = g.h.kernel * g.w.kernel;
        let mult = self.m / self.c;
        let tasks = plane_tasks(threads, self.n * self.m, op * kk);
        let scratch = crate::tensor::bytes_as_mut::<T>(scratch);
        // f32 3x3 on AVX-512: the phase-block kernel (depthwise.rs).
        if let (Some(d3), Some(x), Some(w), Some(out), Some(scratch)) = (
            self.dw3(),
            as_f32(x),
            as_f32(w),
            as_f32_mut(out),
            as_f32_mut(scratch),
        ) {
            let res = res.and_then(as_f32);
            let bias = bias.and_then(as_f32);
            for_planes(
                out,
                op,
                tasks,
                scratch,
                d3.scratch_len(),
                0.0,
                |first, o, buf| {
                    for (k, o) in o.chunks_mut(op).enumerate() {
                        let pi = first + k;
                        let (b, ch) = (pi / self.m, pi % self.m);
                        let xin = &x[(b * self.c + ch / mult) * in_plane..][..in_plane];
                        let bv = bias.map_or(0.0, |b| b[ch]);
                        let r = res.map(|r| &r[pi * op..][..op]);
                        d3.plane(xin, &w[ch * kk..][..kk], bv, self.act, r, buf, o);
                        if !avx512::act_in_tile(self.act) {
                            epilogue(self.simd, self.act, None, None, o);
                        }
                    }
                },
            );
            return;
        }
        for_planes(
            out,
            op,
            tasks,
            scratch,
            pr.scratch_len(),
            T::ZERO,
            |first, o, buf| {
                for (k, o) in o.chunks_mut(op).enumerate() {
                    let pi = first + k;
                    let (b, ch) = (pi / self.m, pi % self.m);
                    let xin = &x[(b * self.c + ch / mult) * in_plane..][..in_plane];
                    pr.fill_simd(self.simd, xin, T::ZERO, buf);
                    let bv = bias.map_or(T::ZERO, |b| b[ch]);
                    let wk = &w[ch * kk..][..kk];
                    let r = res.map(|r| &r[pi * op..][..op]);
                    self.dw_plane(&pr, buf, wk, bv, r, o);
                }
            },
        );
    }

    /// The AVX-512 3x3 depthwise plan, when this kernel can use it.
    fn dw3(&self) -> Option<super::depthwise::Dw3> {
        if self.simd != Simd::Avx512 || self.dtype != DType::F32 {
            return None;
        }
        super::depthwise::Dw3::new(self.g.h, self.g.w)
    }

    /// One depthwise plane with its epilogue.
    fn dw_plane<T: Float + 'static>(
        &self,
        pr: &PhaseRows,
        buf: &[T],
        wk: &[T],
        bias: T,
        res: Option<&[T]>,
        o: &mut [T],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.simd == Simd::Avx512
            && let (Some(buf), Some(wk), Some(o)) = (as_f32(buf), as_f32(wk), as_f32_mut(o))
        {
            let res = res.and_then(as_f32);
            let bias = <f32 as Datum>::from_f64(Datum::to_f64(bias));
            // SAFETY: the CPU has AVX-512F (Simd::detect).
            unsafe { avx512::dw_plane(&self.g, pr, buf, wk, bias, self.act, res, o) };
            if !avx512::act_in_tile(self.act) {
                epilogue(self.simd, self.act, None, None, o);
            }
            return;
        }
        match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (Simd::detect).
            Simd::Fma | Simd::Avx512 => unsafe { dw_plane_fma(&self.g, pr, buf, wk, bias, o) },
            _ => dw_plane_impl::<T, false>(&self.g, pr, buf, wk, bias, o),
        }
        epilogue(self.simd, self.act, None, res, o);
    }
}

/// A raw output pointer tasks share; each writes only its own columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: see the type doc: tasks write disjoint elements.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// col[(ci*kh + ki)*kw + kj][oy*ow + ox] = x[ci][oy*sh - ph + ki*dh][ox*sw - pw + kj*dw] (0 outside).
fn im2col<T: Float + Send + Sync>(x: &[T], col: &mut [T], c: usize, g: Geom2) {
    im2col_rows(x, col, c, g, 0, g.h.output, super::pool_threads() > 1);
}

/// The columns of output rows `[oy0, oy1)` of the im2col matrix: col is then
/// `c*kh*kw x (oy1-oy0)*ow`, column `(oy-oy0)*ow + ox`. `par`: rows may be filled in parallel.
fn im2col_rows<T: Float + Send + Sync>(
    x: &[T],
    col: &mut [T],
    c: usize,
    g: Geom2,
    oy0: usize,
    oy1: usize,
    par: bool,
) {
    let (hg, wg) = (g.h, g.w);
    let (ih, iw, ow, kh, kw) = (hg.input, wg.input, wg.output, hg.kernel, wg.kernel);
    let op = (oy1 - oy0) * ow;
    let fill_row = |r: usize, dst: &mut [T]| {
        let ci = r / (kh * kw);
        let ki = (r / kw) % kh;
        let kj = r % kw;
        let plane = &x[ci * ih * iw..][..ih * iw];
        for oy in oy0..oy1 {
            let iy = (oy * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
            let drow = &mut dst[(oy - oy0) * ow..][..ow];
            if iy < 0 || iy >= ih as isize {
                drow.fill(T::ZERO);
                continue;
            }
            let srow = &plane[iy as usize * iw..][..iw];
            let off = (kj * wg.dilation) as isize - wg.pad_begin as isize;
            // Outputs ox in [lo, hi) read inside the row (0 <= ox*stride + off < iw); the
            // padding on either side is zero. No per-element bounds test: with SAME padding
            // every tap but the centre one has a padded edge, and tiny convs (TextCNN's
            // Conv1d) spent a quarter of their run in that test.
            let s = wg.stride as isize;
            let lo = ((-off).max(0) + s - 1) / s;
            let hi = ((iw as isize - off).max(0) + s - 1) / s;
            let (lo, hi) = (lo.min(ow as isize) as usize, hi.min(ow as isize) as usize);
            let hi = hi.max(lo);
            drow[..lo].fill(T::ZERO);
            drow[hi..].fill(T::ZERO);
            if lo == hi {
                // Every tap of this row falls in the padding (`first` would lie outside it).
                continue;
            }
            let first = (lo as isize * s + off) as usize;
            if wg.stride == 1 {
                drow[lo..hi].copy_from_slice(&srow[first..first + (hi - lo)]);
            } else {
                for (d, &v) in drow[lo..hi]
                    .iter_mut()
                    .zip(srow[first..].iter().step_by(wg.stride))
                {
                    *d = v;
                }
            }
        }
    };
    let rows = c * kh * kw;
    let col = &mut col[..rows * op];
    if rows * op >= PAR_MIN_ELEMS && par {
        col.par_chunks_mut(op)
            .enumerate()
            .for_each(|(r, d)| fill_row(r, d));
    } else {
        for (r, d) in col.chunks_mut(op).enumerate() {
            fill_row(r, d);
        }
    }
}

impl Kernel for ConvKernel {
    fn scratch_bytes(&self) -> usize {
        let blocks = self
            .blocks
            .map_or(0, |b| b.tasks * (b.col_bytes + b.gemm_bytes));
        self.col_bytes() + self.gemm_scratch + self.planes_scratch + blocks
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        fn go<T: Float + Send + Sync + 'static>(
            k: &ConvKernel,
            ctx: &mut KernelCtx,
            inputs: &[TensorView],
            outputs: &mut [TensorViewMut],
        ) -> Result<()> {
            let bias = if k.has_bias {
                Some(inputs[2].as_slice::<T>()?)
            } else {
                None
            };
            let res = if k.residual {
                Some(inputs[3].as_slice::<T>()?)
            } else {
                None
            };
            k.run_t::<T>(
                ctx,
                inputs[0].as_slice()?,
                inputs[1].as_slice()?,
                bias,
                res,
                outputs[0].as_slice_mut()?,
            )
        }
        match self.dtype {
            DType::F32 => go::<f32>(self, ctx, inputs, outputs),
            DType::F64 => go::<f64>(self, ctx, inputs, outputs),
            d => Err(Error::unsupported(format!("Conv on {d} tensors on CPU"))),
        }
    }
}

fn conv_kernel(c: &Conv, inputs: &[Fact]) -> Result<ConvKernel> {
    let x = concrete(&inputs[0])?;
    let w = concrete(&inputs[1])?;
    let geo = geometry(
        "Conv",
        &x[2..],
        &w[2..],
        &c.strides,
        &c.dilations,
        &c.padding,
        false,
    )?;
    let g = geom2(&geo, "Conv")?;
    let group = c.group.max(1);
    let pointwise = g.h.kernel == 1
        && g.w.kernel == 1
        && g.h.stride == 1
        && g.w.stride == 1
        && g.h.pad_begin + g.h.pad_end + g.w.pad_begin + g.w.pad_end == 0;
    let depthwise = group > 1 && group == x[1] && w[1] == 1;
    let mut k = ConvKernel {
        dtype: inputs[0].dtype,
        n: x[0],
        c: x[1],
        m: w[0],
        group,
        g,
        has_bias: inputs.len() > 2,
        pointwise,
        depthwise,
        act: Activation::Identity,
        residual: false,
        post: None,
        simd: Simd::detect(),
        packed_w: Vec::new(),
        packed_wt: None,
        blocks: None,
        gemm_scratch: 0,
        planes_scratch: 0,
    };
    if k.depthwise {
        let g = k.g;
        let kk = g.h.kernel * g.w.kernel;
        let tasks = plane_tasks(super::pool_threads(), k.n * k.m, k.out_plane() * kk);
        let len = match k.dw3() {
            Some(d3) => d3.scratch_len(),
            None => PhaseRows::new(&g).scratch_len(),
        };
        k.planes_scratch = planes_scratch_bytes(tasks, len, k.dtype.size());
    }
    // Constant f32 weights: pack them for the GEMM once, here, instead of on every call.
    if let (DType::F32, false, Some(wt)) = (k.dtype, k.depthwise, inputs[1].konst.as_ref()) {
        let (mpg, kk, op) = (k.m / k.group, k.col_rows(), k.out_plane());
        let threads = super::pool_threads();
        if mpg > 0
            && kk > 0
            && op > 0
            && k.group == 1
            && kk >= TRANSPOSE_MIN_DEPTH
            && transpose_pays(op, mpg)
        {
            let wv = wt.as_slice::<f32>()?;
            // w^T (kk x m): element (ci, mo) at w[mo*kk + ci].
            k.packed_wt = Some(sg::PackedB::new(wv, kk, mpg, 1, kk)?);
            k.gemm_scratch = k.t_bytes() + sg::scratch_bytes(op, mpg, kk, false, true, threads);
        } else if mpg > 0 && kk > 0 && op > 0 {
            let wv = wt.as_slice::<f32>()?;
            k.packed_w = (0..k.group)
                .map(|g| sg::PackedA::new(&wv[g * mpg * kk..][..mpg * kk], mpg, kk, kk, 1))
                .collect::<Result<_>>()?;
            k.blocks = col_blocks(&k, threads);
            k.gemm_scratch = match k.blocks {
                Some(_) => 0,
                None => sg::scratch_bytes(mpg, op, kk, true, false, threads),
            };
        }
    }
    Ok(k)
}

/// Column blocks for an im2col conv whose im2col matrix is over [`COL_BLOCK_BYTES`] (f32, packed
/// weights); `None`: build it whole. The block count is a multiple of the tasks so they
/// finish together.
fn col_blocks(k: &ConvKernel, threads: usize) -> Option<ColBlocks> {
    let (kk, oh, ow) = (k.col_rows(), k.g.h.output, k.g.w.output);
    let total = kk * oh * ow * 4;
    if k.pointwise || k.depthwise || total <= COL_BLOCK_BYTES || oh < 2 {
        return None;
    }
    let tasks = threads.clamp(1, oh);
    // The most output rows a block can hold, then the count at most that large, at least
    // half of it, that fills the GEMM's 32-column panels best (4 rows of 112 are 14 panels).
    let most = (COL_BLOCK_BYTES / (kk * ow * 4)).clamp(1, oh);
    let fill = |r: usize| (r * ow) as f64 / (r * ow).next_multiple_of(sg::NR) as f64;
    let rows = (most.div_ceil(2)..=most)
        .max_by(|&a, &b| fill(a).total_cmp(&fill(b)))
        .unwrap_or(most);
    let cols = rows * ow;
    // Every block streams the packed weights again: worth it only while that costs less
    // than writing the whole matrix out and reading it back (the stem's weights are 37 KB;
    // a 256->512 strided 1x1's 512 KB weights times 4 blocks measured 30% slower).
    let weights = (k.m / k.group) * kk * 4;
    if weights * oh.div_ceil(rows) >= total {
        return None;
    }
    Some(ColBlocks {
        rows,
        tasks,
        col_bytes: (kk * cols * 4).next_multiple_of(64),
        gemm_bytes: sg::scratch_bytes(k.m / k.group, cols, kk, true, false, 1).next_multiple_of(64),
    })
}

/// Whether a pointwise conv with `plane` outputs per channel and `m` channels wastes
/// clearly less of its tiles transposed (plane in 12-row tiles, m in 32-column panels)
/// than as usual (m in 12-row tiles, plane in 32-column panels).
fn transpose_pays(plane: usize, m: usize) -> bool {
    let fill = |n: usize, w: usize| n as f64 / n.next_multiple_of(w) as f64;
    let usual = fill(m, sg::MR) * fill(plane, sg::NR);
    let transposed = fill(plane, sg::MR) * fill(m, sg::NR);
    transposed > usual + 0.05
}

/// Depth from which the transposed path pays for its transpose (a pass over the output):
/// measured on Zen 4, 960->160 and 576->96 channels gain 7-12%, 160->960 and 320->1280
/// lose 15-25% (their output is large and each output sums few products).
const TRANSPOSE_MIN_DEPTH: usize = 512;

fn conv(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let c = op_as::<Conv>(op)?;
    // 3-D and higher: the generic N-d kernel.
    if inputs[0].rank() > 4 {
        return super::conv_nd::build(c, inputs, Activation::Identity, false);
    }
    if let Some(k) = super::winograd::build(c, inputs, Activation::Identity, false)? {
        return Ok(Box::new(k));
    }
    if let Some(k) = super::direct_conv::build(c, inputs, Activation::Identity, false)? {
        return Ok(Box::new(k));
    }
    Ok(Box::new(conv_kernel(c, inputs)?))
}

fn fused_conv(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let f = op_as::<FusedConv>(op)?;
    if f.channels_last {
        // Epilogue, residual and post all inside (the NHWC paths are new; no WithPost).
        return super::conv_nhwc::build(f, inputs);
    }
    if inputs[0].rank() > 4 {
        let k = super::conv_nd::build(&f.conv, inputs, f.act, f.residual)?;
        return Ok(with_post(k, f.post));
    }
    if let Some(k) = super::winograd::build(&f.conv, inputs, f.act, f.residual)? {
        return Ok(with_post(Box::new(k), f.post));
    }
    if let Some(k) = super::direct_conv::build(&f.conv, inputs, f.act, f.residual)? {
        return Ok(with_post(Box::new(k), f.post));
    }
    let mut k = conv_kernel(&f.conv, &inputs[..3])?;
    k.act = f.act;
    k.residual = f.residual;
    Ok(match f.post {
        Some(p) if k.post_in_store() => {
            k.post = Some(p);
            Box::new(k)
        }
        post => with_post(Box::new(k), post),
    })
}

fn with_post(inner: Box<dyn Kernel>, post: Option<PostAffine>) -> Box<dyn Kernel> {
    match post {
        Some(post) => Box::new(WithPost { inner, post }),
        None => inner,
    }
}

// ---- pools ----

#[derive(Debug)]
struct PoolKernel {
    dtype: DType,
    kind: PoolKind,
    g: Geom2,
    /// Average divisor of every output pixel: the window's valid positions (or, with
    /// count_include_pad, its positions inside the explicit padding); 0 makes the output 0.
    /// Small integers, exact in every float type.
    divs: Vec<f32>,
    simd: Simd,
    /// Per-task padded-row buffers (`for_planes`), from the plan's scratch.
    planes_scratch: usize,
}

/// Per-output window counts along one axis: positions inside the input, or (with
/// `include_pad`) inside the explicitly padded area (positions past it, in ceil mode,
/// never count).
pub(super) fn window_counts(a: &AxisGeom, include_pad: bool) -> Vec<usize> {
    (0..a.output)
        .map(|o| {
            (0..a.kernel)
                .filter(|k| {
                    let i = (o * a.stride + k * a.dilation) as isize - a.pad_begin as isize;
                    if include_pad {
                        i < (a.input + a.pad_end) as isize
                    } else {
                        i >= 0 && i < a.input as isize
                    }
                })
                .count()
        })
        .collect()
}

/// One pooled plane from its padded rows; the same order of operations as the per-
/// element reference (taps in row-major order; NaN wins a max).
#[inline(always)]
fn pool_plane_impl<T: Float>(k: &PoolKernel, pr: &PhaseRows, buf: &[T], o: &mut [T]) {
    if k.kind == PoolKind::Max {
        pool_tiles::<T, true>(k, pr, buf, o)
    } else {
        pool_tiles::<T, false>(k, pr, buf, o);
        for (a, &d) in o.iter_mut().zip(&k.divs) {
            *a = if d == 0.0 {
                T::ZERO
            } else {
                *a / <T as Datum>::from_f64(d as f64)
            };
        }
    }
}

/// Max (or sum) over the window of every output, `TW` columns at a time in registers.
#[inline(always)]
fn pool_tiles<T: Float, const MAX: bool>(k: &PoolKernel, pr: &PhaseRows, buf: &[T], o: &mut [T]) {
    let (hg, wg) = (k.g.h, k.g.w);
    let ow = wg.output;
    let init = if MAX { T::neg_infinity() } else { T::ZERO };
    for (oy, orow) in o.chunks_exact_mut(ow).enumerate() {
        for ox in (0..ow).step_by(TW) {
            let mut acc = [init; TW];
            for ki in 0..hg.kernel {
                let iy = (oy * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
                if iy < 0 || iy as usize >= hg.input {
                    continue;
                }
                let base = pr.row(iy) + ox;
                for &t in &pr.taps {
                    let src: &[T; TW] = buf[base + t..][..TW].try_into().expect("TW");
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a = if MAX {
                            if v > *a || v.is_nan() { v } else { *a }
                        } else {
                            *a + v
                        };
                    }
                }
            }
            let n = (ow - ox).min(TW);
            orow[ox..ox + n].copy_from_slice(&acc[..n]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn pool_plane_avx512<T: Float>(k: &PoolKernel, pr: &PhaseRows, buf: &[T], o: &mut [T]) {
    pool_plane_impl(k, pr, buf, o)
}

#[cfg(target_arch = "x86_64")]
pub(super) mod pool_avx512 {
    //! f32 pool planes: tiles of output rows x columns accumulate in registers over the
    //! window's taps (contiguous runs of the padded phase rows), in the portable kernel's
    //! order and with its max rule, so results are bit for bit the same. The running max
    //! helpers serve the channels-last kernel too.
    use super::{PhaseRows, PoolKernel, PoolKind};
    use crate::cpu::kernels::conv::avx512::mask;
    use std::arch::x86_64::*;

    /// A running max with the portable rule (`v` when `v > acc` or `v` is NaN, else `acc`)
    /// as two short chains: `acc` takes `v` only when `v > acc` (never a NaN), `nan` keeps
    /// the last NaN seen; [`max_end`] puts that NaN where there was one. Bit for bit the
    /// portable result (its first NaN is replaced by each later NaN only).
    #[derive(Clone, Copy)]
    pub(in crate::cpu::kernels) struct MaxAcc {
        acc: __m512,
        nan: __m512,
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::cpu::kernels) fn max_init() -> MaxAcc {
        MaxAcc {
            acc: _mm512_set1_ps(f32::NEG_INFINITY),
            nan: _mm512_setzero_ps(),
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::cpu::kernels) fn max_tap(m: MaxAcc, v: __m512) -> MaxAcc {
        // max_ps(a, b) = a > b ? a : b: ties keep acc, a NaN v never enters acc.
        MaxAcc {
            acc: _mm512_max_ps(v, m.acc),
            nan: _mm512_mask_mov_ps(m.nan, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v), v),
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::cpu::kernels) fn max_end(m: MaxAcc) -> __m512 {
        _mm512_mask_mov_ps(
            m.acc,
            _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(m.nan, m.nan),
            m.nan,
        )
    }

    /// Output columns `ox..ox + n` (n <= 16 * V) of output rows `oy..oy + R`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn tile<const R: usize, const V: usize, const MAX: bool>(
        k: &PoolKernel,
        pr: &PhaseRows,
        buf: &[f32],
        oy: usize,
        ox: usize,
        n: usize,
        o: &mut [f32],
    ) {
        let hg = k.g.h;
        let ow = k.g.w.output;
        let mut mx = [[max_init(); V]; R];
        let mut sum = [[_mm512_setzero_ps(); V]; R];
        // The furthest any load of a tile row reads past the row's start.
        let reach = pr.taps.iter().max().copied().unwrap_or(0) + ox + 16 * V;
        for ki in 0..hg.kernel {
            // Start of each tile row's input row, or None in the vertical padding.
            let mut rows = [None; R];
            for (r, b) in rows.iter_mut().enumerate() {
                let iy = ((oy + r) * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
                if iy >= 0 && (iy as usize) < hg.input {
                    let base = pr.row(iy);
                    // Up to 15 columns past the row end: inside the scratch's TW slack.
                    assert!(base + reach <= buf.len());
                    // SAFETY: in bounds (just checked).
                    *b = Some(unsafe { buf.as_ptr().add(base + ox) });
                }
            }
            for &t in &pr.taps {
                for r in 0..R {
                    let Some(src) = rows[r] else { continue };
                    for j in 0..V {
                        // SAFETY: t + ox + 16 * (j + 1) <= reach, checked above.
                        let v = unsafe { _mm512_loadu_ps(src.add(t + 16 * j)) };
                        if MAX {
                            mx[r][j] = max_tap(mx[r][j], v);
                        } else {
                            sum[r][j] = _mm512_add_ps(sum[r][j], v);
                        }
                    }
                }
            }
        }
        for r in 0..R {
            let row = (oy + r) * ow;
            for j in 0..V {
                let c0 = ox + 16 * j;
                if c0 >= ox + n {
                    break;
                }
                let m = mask(ox + n - c0);
                let v = if MAX {
                    max_end(mx[r][j])
                } else {
                    // SAFETY: masked lanes are columns c0.. < ox + n <= ow of this row.
                    let d = unsafe { _mm512_maskz_loadu_ps(m, k.divs.as_ptr().add(row + c0)) };
                    let zero = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(d, _mm512_setzero_ps());
                    _mm512_maskz_div_ps(!zero, sum[r][j], d)
                };
                // SAFETY: as above, inside the plane.
                unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr().add(row + c0), m, v) };
            }
        }
    }

    /// `PhaseRows::fill` for stride-1 f32 rows, with masked vector copies (a small plane's
    /// rows are too short for `memcpy` calls to pay).
    #[target_feature(enable = "avx512f")]
    pub(super) fn fill_s1(pr: &PhaseRows, x: &[f32], fill: f32, buf: &mut [f32]) {
        let (pl, iw, pad_l) = (pr.pl, pr.iw, pr.pad_l);
        debug_assert_eq!(pr.sw, 1);
        assert!(x.len() >= pr.ih * iw && buf.len() >= pr.len() && pad_l + iw <= pl);
        let f = _mm512_set1_ps(fill);
        let b = buf.as_mut_ptr();
        for y in 0..=pr.ih {
            let row = y * pl;
            let mut i = 0;
            while i < pl {
                // SAFETY: lanes i.. < pl of row y <= ih: inside buf[..pr.len()].
                unsafe { _mm512_mask_storeu_ps(b.add(row + i), mask(pl - i), f) };
                i += 16;
            }
            if y == pr.ih {
                break;
            }
            let mut i = 0;
            while i < iw {
                let m = mask(iw - i);
                // SAFETY: lanes i.. < iw of input row y, stored at pad_l + i.. < pl.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(y * iw + i));
                    _mm512_mask_storeu_ps(b.add(row + pad_l + i), m, v);
                }
                i += 16;
            }
        }
    }

    /// `PhaseRows::fill` for stride-2 f32 rows: 32 input columns at a time split into their
    /// even and odd columns with two permutes (the portable loop moves one pair at a time;
    /// this copy is most of a 3x3/2 max pool's time over a 112x112 plane).
    #[target_feature(enable = "avx512f")]
    pub(super) fn fill_s2(pr: &PhaseRows, x: &[f32], fill: f32, buf: &mut [f32]) {
        let (pl, iw, pad_l) = (pr.pl, pr.iw, pr.pad_l);
        debug_assert_eq!(pr.sw, 2);
        // Input column xx sits at padded column pad_l + xx: even xx in phase pad_l % 2 from
        // index pad_l / 2, odd xx in the other phase from index (pad_l + 1) / 2.
        let (ev0, od0) = if pad_l % 2 == 0 { (0, pl) } else { (pl, 0) };
        let (ev0, od0) = (ev0 + pad_l / 2, od0 + pad_l.div_ceil(2));
        assert!(x.len() >= pr.ih * iw && buf.len() >= pr.len());
        assert!(ev0 + iw.div_ceil(2) <= 2 * pl && od0 + iw / 2 <= 2 * pl);
        let f = _mm512_set1_ps(fill);
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let b = buf.as_mut_ptr();
        for y in 0..=pr.ih {
            let row = y * 2 * pl;
            let mut i = 0;
            while i < 2 * pl {
                // SAFETY: lanes i.. < 2 * pl of row y <= ih: inside buf[..pr.len()].
                unsafe { _mm512_mask_storeu_ps(b.add(row + i), mask(2 * pl - i), f) };
                i += 16;
            }
            if y == pr.ih {
                break;
            }
            let src = &x[y * iw..][..iw];
            let mut c = 0;
            while c < iw {
                let n = (iw - c).min(32);
                // SAFETY: lanes c.. < iw of the row (masked); the phase runs end inside the
                // row (asserted above): evens c/2 + (n+1)/2 <= (iw+1)/2, odds likewise.
                unsafe {
                    let lo = _mm512_maskz_loadu_ps(mask(n), src.as_ptr().add(c));
                    let hi = _mm512_maskz_loadu_ps(
                        mask(n.saturating_sub(16)),
                        src.as_ptr().wrapping_add(c + 16),
                    );
                    let e = _mm512_permutex2var_ps(lo, evens, hi);
                    let o = _mm512_permutex2var_ps(lo, odds, hi);
                    _mm512_mask_storeu_ps(b.add(row + ev0 + c / 2), mask(n.div_ceil(2)), e);
                    _mm512_mask_storeu_ps(b.add(row + od0 + c / 2), mask(n / 2), o);
                }
                c += 32;
            }
        }
    }

    /// One pooled f32 plane from its padded rows (`buf`, with `TW` slack past them): 4
    /// output rows at a time where a row is at most 32 columns (independent accumulator
    /// chains), else rows of 64-column blocks.
    #[target_feature(enable = "avx512f")]
    pub(super) fn plane(k: &PoolKernel, pr: &PhaseRows, buf: &[f32], o: &mut [f32]) {
        let (oh, ow) = (k.g.h.output, k.g.w.output);
        debug_assert_eq!(o.len(), oh * ow);
        let max = k.kind == PoolKind::Max;
        let mut oy = 0;
        if ow <= 32 {
            while oy + 4 <= oh {
                match (ow > 16, max) {
                    (false, true) => tile::<4, 1, true>(k, pr, buf, oy, 0, ow, o),
                    (true, true) => tile::<4, 2, true>(k, pr, buf, oy, 0, ow, o),
                    (false, false) => tile::<4, 1, false>(k, pr, buf, oy, 0, ow, o),
                    (true, false) => tile::<4, 2, false>(k, pr, buf, oy, 0, ow, o),
                }
                oy += 4;
            }
        }
        for oy in oy..oh {
            let mut ox = 0;
            while ox < ow {
                let n = (ow - ox).min(64);
                match (n.div_ceil(16), max) {
                    (1, true) => tile::<1, 1, true>(k, pr, buf, oy, ox, n, o),
                    (2, true) => tile::<1, 2, true>(k, pr, buf, oy, ox, n, o),
                    (3, true) => tile::<1, 3, true>(k, pr, buf, oy, ox, n, o),
                    (_, true) => tile::<1, 4, true>(k, pr, buf, oy, ox, n, o),
                    (1, false) => tile::<1, 1, false>(k, pr, buf, oy, ox, n, o),
                    (2, false) => tile::<1, 2, false>(k, pr, buf, oy, ox, n, o),
                    (3, false) => tile::<1, 3, false>(k, pr, buf, oy, ox, n, o),
                    (_, false) => tile::<1, 4, false>(k, pr, buf, oy, ox, n, o),
                }
                ox += n;
            }
        }
    }
}

impl PoolKernel {
    fn run_t<T: Float + Send + Sync + 'static>(
        &self,
        threads: usize,
        scratch: &mut [u8],
        x: &[T],
        out: &mut [T],
    ) {
        let pr = PhaseRows::new(&self.g);
        let (ih, iw) = (self.g.h.input, self.g.w.input);
        let op = self.g.h.output * self.g.w.output;
        let fill = if self.kind == PoolKind::Max {
            T::neg_infinity()
        } else {
            T::ZERO
        };
        let taps = self.g.h.kernel * self.g.w.kernel;
        let tasks = plane_tasks(threads, out.len() / op.max(1), op * taps);
        let scratch = crate::tensor::bytes_as_mut::<T>(scratch);
        for_planes(
            out,
            op,
            tasks,
            scratch,
            pr.scratch_len(),
            fill,
            |first, o, buf| {
                for (k, o) in o.chunks_mut(op).enumerate() {
                    let xp = &x[(first + k) * ih * iw..][..ih * iw];
                    #[cfg(target_arch = "x86_64")]
                    if self.simd == Simd::Avx512 {
                        pr.fill_simd(self.simd, xp, fill, buf);
                        if let Some(o) = as_f32_mut(o) {
                            let b = as_f32(buf).expect("f32 like its output");
                            // SAFETY: the CPU has AVX-512F (Simd::detect).
                            unsafe { pool_avx512::plane(self, &pr, b, o) };
                        } else {
                            // SAFETY: the CPU has AVX-512F (Simd::detect).
                            unsafe { pool_plane_avx512(self, &pr, buf, o) };
                        }
                        continue;
                    }
                    pr.fill(xp, fill, buf);
                    pool_plane_impl(self, &pr, buf, o);
                }
            },
        );
    }
}

impl Kernel for PoolKernel {
    fn scratch_bytes(&self) -> usize {
        self.planes_scratch
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let threads = ctx.threads;
        let scratch = &mut *ctx.scratch;
        crate::dispatch_float!(self.dtype, T => {
            self.run_t::<T>(threads, scratch, inputs[0].as_slice()?, outputs[0].as_slice_mut()?);
            Ok(())
        }, else => Err(Error::dtype("Pool", format!("{}", self.dtype))))
    }
}

fn pool(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let p = op_as::<Pool>(op)?;
    if p.channels_last {
        return super::pool_nhwc::build(p, inputs);
    }
    let x = concrete(&inputs[0])?;
    let geo = geometry(
        p.name(),
        &x[2..],
        &p.kernel,
        &p.strides,
        &p.dilations,
        &p.padding,
        p.ceil_mode,
    )?;
    // 3-D and higher pools, integer MaxPool: the generic N-d kernel.
    if geo.len() > 2 || !inputs[0].dtype.is_float() {
        return super::pool_nd::pool(p, inputs);
    }
    let g = geom2(&geo, p.name())?;
    let include_pad = matches!(
        p.kind,
        PoolKind::Avg {
            count_include_pad: true
        }
    );
    let op = g.h.output * g.w.output;
    let planes = x[..2].iter().product::<usize>();
    let tasks = plane_tasks(super::pool_threads(), planes, op * g.h.kernel * g.w.kernel);
    let dtype = inputs[0].dtype;
    let (rows, cols) = if p.kind == PoolKind::Max {
        (vec![], vec![])
    } else {
        (
            window_counts(&g.h, include_pad),
            window_counts(&g.w, include_pad),
        )
    };
    let divs = rows
        .iter()
        .flat_map(|&r| cols.iter().map(move |&c| (r * c) as f32))
        .collect();
    Ok(Box::new(PoolKernel {
        dtype,
        kind: p.kind,
        g,
        divs,
        simd: Simd::detect(),
        planes_scratch: planes_scratch_bytes(tasks, PhaseRows::new(&g).scratch_len(), dtype.size()),
    }))
}

// ---- global pools ----

#[derive(Debug)]
struct GlobalPoolKernel {
    dtype: DType,
    max: bool,
    plane: usize,
    simd: Simd,
}

/// `v` when it is larger than `a` or NaN (NaN propagates), else `a`: the max rule of the
/// unfused reduction.
#[inline(always)]
fn max_pick<T: Float>(a: T, v: T) -> T {
    if v > a || v.is_nan() { v } else { a }
}

/// Lanes of independent accumulators: the plane is folded 16 (max) or 8 (f64 sum) values at
/// a time, so the loop vectorizes and no single dependency chain bounds it (a sequential
/// f64 sum is one 4-cycle add per element).
const MAX_LANES: usize = 16;
const SUM_LANES: usize = 8;

/// The plane's maximum. The same value as a sequential fold; only when the maximum is a
/// zero present with both signs may the sign differ (`max` does not order -0 and +0).
#[inline(always)]
fn plane_max<T: Float>(p: &[T]) -> T {
    let mut acc = [T::neg_infinity(); MAX_LANES];
    let mut chunks = p.chunks_exact(MAX_LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = max_pick(*a, v);
        }
    }
    let m = acc.iter().fold(T::neg_infinity(), |m, &a| max_pick(m, a));
    chunks.remainder().iter().fold(m, |m, &v| max_pick(m, v))
}

/// The plane's sum in f64 (lanes, then the lanes pairwise): a different order than a
/// sequential f64 sum, so the f32 mean may differ from it in the last bit in rare
/// double-rounding ties.
#[inline(always)]
fn plane_sum<T: Float>(p: &[T]) -> f64 {
    let mut acc = [0f64; SUM_LANES];
    let mut chunks = p.chunks_exact(SUM_LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += Datum::to_f64(v);
        }
    }
    let s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    chunks
        .remainder()
        .iter()
        .fold(s, |s, &v| s + Datum::to_f64(v))
}

#[inline(always)]
fn global_impl<T: Float>(max: bool, plane: usize, x: &[T], out: &mut [T]) {
    for (o, p) in out.iter_mut().zip(x.chunks(plane)) {
        *o = if max {
            plane_max(p)
        } else {
            <T as Datum>::from_f64(plane_sum(p) / plane as f64)
        };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn global_avx512<T: Float>(max: bool, plane: usize, x: &[T], out: &mut [T]) {
    global_impl(max, plane, x, out)
}

fn global_t<T: Float>(simd: Simd, max: bool, plane: usize, x: &[T], out: &mut [T]) {
    if plane == 0 {
        out.fill(T::nan());
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: the CPU has AVX-512F (Simd::detect).
        return unsafe { global_avx512(max, plane, x, out) };
    }
    let _ = simd;
    global_impl(max, plane, x, out)
}

impl Kernel for GlobalPoolKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_float!(self.dtype, T => {
            global_t::<T>(self.simd, self.max, self.plane, inputs[0].as_slice()?, outputs[0].as_slice_mut()?);
            Ok(())
        }, else => Err(Error::dtype("GlobalPool", format!("{}", self.dtype))))
    }
}

fn global_pool(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let p = op_as::<GlobalPool>(op)?;
    let x = concrete(&inputs[0])?;
    Ok(Box::new(GlobalPoolKernel {
        dtype: inputs[0].dtype,
        max: p.max,
        plane: x[2..].iter().product(),
        simd: Simd::detect(),
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Conv>(conv);
    r.insert::<FusedConv>(fused_conv);
    r.insert::<Pool>(pool);
    r.insert::<GlobalPool>(global_pool);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::{BinOp, Binary, Padding, Unary, UnaryOp};
    use crate::tensor::{Tensor, assert_close};

    /// Direct reference convolution (NCHW, groups, dilation, explicit pads
    /// [top, left, bottom, right]).
    #[allow(clippy::too_many_arguments)]
    fn reference_hw(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        b: Option<&[f32]>,
        s: [usize; 2],
        d: [usize; 2],
        p: [usize; 4],
        g: usize,
    ) -> (Vec<f32>, [usize; 4]) {
        let [n, c, h, wd] = xs;
        let [m, cg, kh, kw] = ws;
        let oh = (h + p[0] + p[2] - ((kh - 1) * d[0] + 1)) / s[0] + 1;
        let ow = (wd + p[1] + p[3] - ((kw - 1) * d[1] + 1)) / s[1] + 1;
        let mut out = vec![0f32; n * m * oh * ow];
        let mpg = m / g;
        for bi in 0..n {
            for mo in 0..m {
                let gi = mo / mpg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        // f64 sums: a reference free of the kernels' rounding.
                        let mut acc = b.map_or(0.0, |b| b[mo] as f64);
                        for ci in 0..cg {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let iy = (oy * s[0] + ki * d[0]) as isize - p[0] as isize;
                                    let ix = (ox * s[1] + kj * d[1]) as isize - p[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        let cin = gi * cg + ci;
                                        acc += x
                                            [((bi * c + cin) * h + iy as usize) * wd + ix as usize]
                                            as f64
                                            * w[((mo * cg + ci) * kh + ki) * kw + kj] as f64;
                                    }
                                }
                            }
                        }
                        out[((bi * m + mo) * oh + oy) * ow + ox] = acc as f32;
                    }
                }
            }
        }
        (out, [n, m, oh, ow])
    }

    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        b: Option<&[f32]>,
        s: usize,
        d: usize,
        p: usize,
        g: usize,
    ) -> (Vec<f32>, [usize; 4]) {
        reference_hw(x, xs, w, ws, b, [s, s], [d, d], [p; 4], g)
    }

    /// Runs `f` once per vector level this CPU has, portable code first.
    fn each_simd(f: impl Fn(Simd)) {
        let real = Simd::detect();
        let mut levels = vec![Simd::Base];
        if real != Simd::Base {
            levels.push(Simd::Fma);
        }
        if real == Simd::Avx512 {
            levels.push(Simd::Avx512);
        }
        for l in levels {
            FORCE_SIMD.with(|c| c.set(Some(l)));
            f(l);
            FORCE_SIMD.with(|c| c.set(None));
        }
    }

    fn to_f64(t: &Tensor) -> Tensor {
        Tensor::from_vec(t.shape(), t.to_f64_vec()).unwrap()
    }

    fn lin(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) * s).collect()
    }

    #[test]
    fn conv_variants_match_reference() {
        // (c, m, group, k, stride, dilation, pad)
        let cases = [
            (3, 4, 1, 3, 1, 1, 1),
            (4, 6, 2, 3, 2, 1, 0),
            (4, 4, 4, 3, 1, 1, 1), // depthwise
            (4, 8, 4, 3, 2, 2, 2), // depthwise multiplier 2 (grouped path)
            (5, 3, 1, 1, 1, 1, 0), // pointwise
            (3, 2, 1, 2, 1, 2, 1), // dilation
            (3, 4, 1, 3, 2, 1, 1), // im2col: stride 2 with padded edges
            (2, 3, 1, 4, 3, 2, 2), // im2col: stride 3, dilation 2, padded edges
            (2, 2, 1, 2, 2, 1, 3), // im2col: whole rows in the padding
        ];
        for (c, m, g, k, s, d, p) in cases {
            let xs = [2, c, 7, 6];
            let ws = [m, c / g, k, k];
            let x = lin(xs.iter().product(), 0.1);
            let w = lin(ws.iter().product(), 0.05);
            let b = lin(m, 0.3);
            let (want, os) = reference(&x, xs, &w, ws, Some(&b), s, d, p, g);
            let op = Conv {
                strides: vec![s, s],
                dilations: vec![d, d],
                padding: Padding::Explicit(vec![p; 4]),
                group: g,
            };
            let got = &eval_op(
                &op,
                &[
                    Tensor::from_vec(&xs, x).unwrap(),
                    Tensor::from_vec(&ws, w).unwrap(),
                    Tensor::from_vec(&[m], b).unwrap(),
                ],
            )
            .unwrap()[0];
            assert_close(got, &Tensor::from_vec(&os, want).unwrap(), 1e-5);
        }
    }

    #[test]
    fn im2col_rows_wholly_in_the_padding() {
        // Inputs smaller than the kernel, padded on one side or both: some taps read only
        // padding on some output rows and columns (the span to copy is empty and may start
        // past the end of the row: SAME_UPPER-style end-only padding).
        let cases = [
            (1, 1, 3, 2, [2, 2, 2, 2]),
            (2, 3, 2, 3, [2, 2, 2, 2]),
            (1, 2, 3, 1, [2, 2, 2, 2]),
            (1, 1, 3, 1, [0, 0, 2, 2]),
            (2, 1, 3, 2, [0, 0, 1, 2]),
        ];
        for (h, w, k, s, p) in cases {
            let (c, m) = (2, 3);
            let xs = [1, c, h, w];
            let ws = [m, c, k, k];
            let x = lin(xs.iter().product(), 0.1);
            let wv = lin(ws.iter().product(), 0.05);
            let (want, os) = reference_hw(&x, xs, &wv, ws, None, [s, s], [1, 1], p, 1);
            let op = Conv {
                strides: vec![s, s],
                dilations: vec![1, 1],
                padding: Padding::Explicit(p.to_vec()),
                group: 1,
            };
            let got = &eval_op(
                &op,
                &[
                    Tensor::from_vec(&xs, x).unwrap(),
                    Tensor::from_vec(&ws, wv).unwrap(),
                ],
            )
            .unwrap()[0];
            assert_close(got, &Tensor::from_vec(&os, want).unwrap(), 1e-5);
        }
    }

    #[test]
    fn conv1d_runs_as_2d() {
        let x = Tensor::from_vec(&[1, 1, 5], vec![1f32, 2., 3., 4., 5.]).unwrap();
        let w = Tensor::from_vec(&[1, 1, 2], vec![1f32, -1.]).unwrap();
        let op = Conv {
            strides: vec![1],
            dilations: vec![1],
            padding: Padding::Valid,
            group: 1,
        };
        let y = &eval_op(&op, &[x, w]).unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-1., -1., -1., -1.]);
    }

    #[test]
    fn pools() {
        let x = Tensor::from_vec(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
        let mx = Pool {
            kind: PoolKind::Max,
            kernel: vec![2, 2],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::Valid,
            ceil_mode: false,
            channels_last: false,
        };
        assert_eq!(
            eval_op(&mx, std::slice::from_ref(&x)).unwrap()[0]
                .as_slice::<f32>()
                .unwrap(),
            &[5., 6., 8., 9.]
        );
        let avg = Pool {
            kind: PoolKind::Avg {
                count_include_pad: false,
            },
            kernel: vec![3, 3],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            padding: Padding::Explicit(vec![1, 1, 1, 1]),
            ceil_mode: false,
            channels_last: false,
        };
        // corners average the 4 valid cells
        assert_eq!(
            eval_op(&avg, std::slice::from_ref(&x)).unwrap()[0]
                .as_slice::<f32>()
                .unwrap(),
            &[3., 4., 6., 7.]
        );
        let avg_inc = Pool {
            kind: PoolKind::Avg {
                count_include_pad: true,
            },
            ..avg
        };
        assert_eq!(
            eval_op(&avg_inc, std::slice::from_ref(&x)).unwrap()[0]
                .as_slice::<f32>()
                .unwrap(),
            &[12. / 9., 16. / 9., 24. / 9., 28. / 9.]
        );
        let ceil = Pool {
            kind: PoolKind::Max,
            kernel: vec![2, 2],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            padding: Padding::Valid,
            ceil_mode: true,
            channels_last: false,
        };
        assert_eq!(
            eval_op(&ceil, std::slice::from_ref(&x)).unwrap()[0]
                .as_slice::<f32>()
                .unwrap(),
            &[5., 6., 8., 9.]
        );
        let gap = &eval_op(&GlobalPool { max: false }, std::slice::from_ref(&x)).unwrap()[0];
        assert_eq!(
            (gap.shape(), gap.as_slice::<f32>().unwrap()),
            (&[1usize, 1, 1, 1][..], &[5f32][..])
        );
        let gmp = &eval_op(&GlobalPool { max: true }, &[x]).unwrap()[0];
        assert_eq!(gmp.as_slice::<f32>().unwrap(), &[9.]);
    }

    /// Global pools on planes of every length around the lane counts, both ISAs: the max
    /// equals a sequential fold (NaN included), the mean the f64 sequential sum's mean
    /// within one f32 rounding.
    #[test]
    fn global_pools_match_a_sequential_fold() {
        for simd in [Simd::Base, Simd::detect()] {
            for plane in [1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 2048] {
                let c = 3;
                let mut x: Vec<f32> = (0..c * plane)
                    .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.013)
                    .collect();
                // A NaN in the last channel's plane.
                x[2 * plane + plane / 2] = f32::NAN;
                let (mut gmax, mut gavg) = (vec![0f32; c], vec![0f32; c]);
                global_t(simd, true, plane, &x, &mut gmax);
                global_t(simd, false, plane, &x, &mut gavg);
                for (ch, p) in x.chunks(plane).enumerate() {
                    let want = p.iter().copied().fold(f32::NEG_INFINITY, |a, v| {
                        if v > a || v.is_nan() { v } else { a }
                    });
                    assert_eq!(gmax[ch].to_bits(), want.to_bits(), "{simd:?} {plane} {ch}");
                    let mean = (p.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32;
                    if mean.is_nan() {
                        assert!(gavg[ch].is_nan());
                    } else {
                        assert!(
                            (gavg[ch] - mean).abs() <= mean.abs() * f32::EPSILON,
                            "{simd:?} {plane} {ch}: {} vs {mean}",
                            gavg[ch]
                        );
                    }
                }
            }
        }
    }

    type DwCase = (
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        usize,
        usize,
    );

    #[test]
    fn depthwise_fast_paths_match_reference() {
        // (c, multiplier, kh, kw, [sh, sw], [dh, dw], [top, left, bottom, right], h, w)
        let cases: [DwCase; 10] = [
            (3, 1, 3, 3, [1, 1], [1, 1], [1, 1, 1, 1], 7, 9),
            // 5x5/2 (EfficientNet, MobileNetV3) through the stride-2 row copy, odd left pad.
            (3, 1, 5, 5, [2, 2], [1, 1], [2, 1, 2, 2], 13, 41),
            (4, 1, 3, 3, [2, 2], [1, 1], [1, 1, 1, 1], 9, 37),
            (2, 1, 5, 5, [1, 1], [1, 1], [2, 2, 2, 2], 6, 21),
            (3, 1, 5, 5, [2, 1], [1, 1], [2, 2, 2, 2], 12, 18),
            (2, 2, 3, 3, [1, 2], [2, 1], [2, 0, 1, 3], 8, 11),
            (2, 3, 3, 5, [3, 3], [1, 2], [0, 3, 2, 1], 10, 23),
            (5, 1, 3, 3, [2, 2], [1, 1], [0, 0, 1, 1], 11, 5),
            (2, 1, 1, 7, [1, 1], [1, 1], [0, 3, 0, 3], 1, 40),
            (1, 1, 3, 3, [1, 1], [1, 1], [0, 0, 0, 0], 3, 3),
        ];
        each_simd(|simd| {
            for (c, mult, kh, kw, st, dil, p, h, w) in cases {
                let m = c * mult;
                let xs = [2, c, h, w];
                let ws = [m, 1, kh, kw];
                let x = lin(xs.iter().product(), 0.1);
                let wv = lin(ws.iter().product(), 0.05);
                let b = lin(m, 0.3);
                let (want, os) = reference_hw(&x, xs, &wv, ws, Some(&b), st, dil, p, c);
                let want = Tensor::from_vec(&os, want).unwrap();
                let op = Conv {
                    strides: st.to_vec(),
                    dilations: dil.to_vec(),
                    padding: Padding::Explicit(p.to_vec()),
                    group: c,
                };
                let ins = [
                    Tensor::from_vec(&xs, x).unwrap(),
                    Tensor::from_vec(&ws, wv).unwrap(),
                    Tensor::from_vec(&[m], b).unwrap(),
                ];
                let got = &eval_op(&op, &ins).unwrap()[0];
                assert_close(got, &want, 1e-5);
                // f64 runs the portable path of the same level.
                let ins64: Vec<Tensor> = ins.iter().map(to_f64).collect();
                let got = &eval_op(&op, &ins64).unwrap()[0];
                assert_close(got, &to_f64(&want), 1e-5);
                let _ = simd;
            }
        });
    }

    fn acts() -> Vec<Activation> {
        vec![
            Activation::Identity,
            Activation::Relu,
            Activation::Clip { min: 0.0, max: 6.0 },
            Activation::Clip {
                min: -0.5,
                max: f64::INFINITY,
            },
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Activation::HardSwish,
            Activation::Sigmoid,
            Activation::Swish,
        ]
    }

    fn unary_of(a: Activation) -> Option<UnaryOp> {
        Some(match a {
            Activation::Identity => return None,
            Activation::Relu => UnaryOp::Relu,
            Activation::Clip { min, max } => UnaryOp::Clip { min, max },
            Activation::LeakyRelu { alpha } => UnaryOp::LeakyRelu { alpha },
            Activation::HardSigmoid { alpha, beta } => UnaryOp::HardSigmoid { alpha, beta },
            Activation::HardSwish => UnaryOp::HardSwish,
            Activation::Sigmoid => UnaryOp::Sigmoid,
            Activation::Swish => UnaryOp::Swish,
        })
    }

    /// FusedConv equals Conv -> [Add residual] -> activation run op by op, bit for bit,
    /// on every conv path (depthwise, pointwise, im2col, grouped), with and without
    /// residual, on every vector level.
    #[test]
    fn fused_conv_equals_unfused_ops() {
        // (c, m, group, k, stride, pad)
        let convs = [
            (4, 4, 4, 3, 1, 1),
            (3, 6, 3, 5, 2, 2),
            (5, 7, 1, 1, 1, 0),
            (3, 4, 1, 3, 2, 1),
            (4, 6, 2, 3, 1, 1),
        ];
        each_simd(|_| {
            for cv in convs {
                fused_equals_unfused([2, cv.0, 9, 19], cv);
            }
            // A stem: the direct few-channel kernel (direct_conv.rs) on AVX-512.
            fused_equals_unfused([1, 3, 12, 40], (3, 6, 1, 3, 2, 1));
        });
    }

    /// The transposed pointwise path (small plane, deep input) is taken and gives the
    /// unfused result, with and without residual, for every activation.
    #[test]
    fn transposed_pointwise_equals_unfused_ops() {
        let (xs, cv) = ([2, 520, 7, 7], (520, 64, 1, 1, 1, 0));
        let x = Fact::known(DType::F32, &xs);
        let w = Fact::konst(Tensor::from_vec(&[64, 520, 1, 1], lin(64 * 520, 0.01)).unwrap());
        let conv = Conv {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::Explicit(vec![0; 4]),
            group: 1,
        };
        let k = conv_kernel(&conv, &[x, w]).unwrap();
        assert!(k.packed_wt.is_some(), "transposed path not chosen");
        // The plain Conv takes the same path: check it against the direct loop first.
        let ws = [64, 520, 1, 1];
        let (xv, wv, bv) = (lin(2 * 520 * 49, 0.1), lin(64 * 520, 0.01), lin(64, 0.3));
        let (want, os) = reference(&xv, xs, &wv, ws, Some(&bv), 1, 1, 0, 1);
        let got = &eval_op(
            &conv,
            &[
                Tensor::from_vec(&xs, xv).unwrap(),
                Tensor::from_vec(&ws, wv).unwrap(),
                Tensor::from_vec(&[64], bv).unwrap(),
            ],
        )
        .unwrap()[0];
        assert_close(got, &Tensor::from_vec(&os, want).unwrap(), 1e-5);
        each_simd(|_| fused_equals_unfused(xs, cv));
    }

    /// Runs `f` in a pool of `threads` threads (kernels are planned inside it too).
    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    /// Plans `conv` with constant weights and checks it against the f64 reference loop (and
    /// `FusedConv` against the unfused ops) at 1 and 2 threads; `pick` asserts which path the
    /// kernel took.
    fn path_matches_reference(
        xs: [usize; 4],
        cv: (usize, usize, usize, usize, usize, usize),
        pick: impl Fn(&ConvKernel) -> bool + Sync,
    ) {
        let (c, m, g, k, s, p) = cv;
        let ws = [m, c / g, k, k];
        let conv = Conv {
            strides: vec![s, s],
            dilations: vec![1, 1],
            padding: Padding::Explicit(vec![p; 4]),
            group: g,
        };
        let (xv, wv, bv) = (
            lin(xs.iter().product(), 0.1),
            lin(ws.iter().product(), 0.01),
            lin(m, 0.3),
        );
        let (want, os) = reference(&xv, xs, &wv, ws, Some(&bv), s, 1, p, g);
        let want = Tensor::from_vec(&os, want).unwrap();
        for threads in [1, 2] {
            in_pool(threads, || {
                let x = Fact::known(DType::F32, &xs);
                let w = Fact::konst(Tensor::from_vec(&ws, wv.clone()).unwrap());
                let kern = conv_kernel(&conv, &[x, w]).unwrap();
                assert!(
                    pick(&kern),
                    "{cv:?}: path not chosen: blocks {:?}, transposed {}",
                    kern.blocks,
                    kern.packed_wt.is_some()
                );
                let got = &eval_op(
                    &conv,
                    &[
                        Tensor::from_vec(&xs, xv.clone()).unwrap(),
                        Tensor::from_vec(&ws, wv.clone()).unwrap(),
                        Tensor::from_vec(&[m], bv.clone()).unwrap(),
                    ],
                )
                .unwrap()[0];
                assert_close(got, &want, 1e-5);
                fused_equals_unfused(xs, cv);
            });
        }
    }

    #[test]
    fn blocked_im2col_matches_reference() {
        // A stem-like 7x7/2 conv whose im2col matrix (147 x 460 floats) exceeds one block,
        // with an output height the blocks do not divide, and a strided 1x1 whose blocks
        // are whole 32-column panels.
        path_matches_reference([1, 3, 40, 46], (3, 8, 1, 7, 2, 3), |k| k.blocks.is_some());
        path_matches_reference([1, 130, 56, 56], (130, 14, 1, 1, 2, 0), |k| {
            k.blocks.is_some_and(|b| b.rows < 28)
        });
        path_matches_reference([1, 2, 3, 200], (2, 5, 1, 3, 1, 1), |k| k.blocks.is_none());
    }

    #[test]
    fn transposed_im2col_matches_reference() {
        // Deep 3x3 and strided 1x1 convs over 7x7 outputs take the transposed GEMM.
        path_matches_reference([1, 64, 7, 7], (64, 64, 1, 3, 1, 1), |k| {
            k.packed_wt.is_some()
        });
        path_matches_reference([2, 520, 14, 13], (520, 64, 1, 1, 2, 0), |k| {
            k.packed_wt.is_some()
        });
    }

    fn fused_equals_unfused(xs: [usize; 4], cv: (usize, usize, usize, usize, usize, usize)) {
        {
            {
                let (c, m, g, k, s, p) = cv;
                let ws = [m, c / g, k, k];
                // Values around 0 so every activation branch is taken.
                let x = lin(xs.iter().product(), 0.37);
                let w = lin(ws.iter().product(), 0.21);
                let b = lin(m, 0.5);
                let conv = Conv {
                    strides: vec![s, s],
                    dilations: vec![1, 1],
                    padding: Padding::Explicit(vec![p; 4]),
                    group: g,
                };
                let ins = vec![
                    Tensor::from_vec(&xs, x).unwrap(),
                    Tensor::from_vec(&ws, w).unwrap(),
                    Tensor::from_vec(&[m], b).unwrap(),
                ];
                let y = eval_op(&conv, &ins).unwrap().remove(0);
                let res = Tensor::from_vec(y.shape(), lin(y.len(), 0.9)).unwrap();
                for residual in [false, true] {
                    let sum = if residual {
                        eval_op(&Binary::new(BinOp::Add), &[y.clone(), res.clone()])
                            .unwrap()
                            .remove(0)
                    } else {
                        y.clone()
                    };
                    for act in acts() {
                        let want = match unary_of(act) {
                            Some(u) => eval_op(&Unary::new(u), std::slice::from_ref(&sum))
                                .unwrap()
                                .remove(0),
                            None => sum.clone(),
                        };
                        let op = FusedConv {
                            conv: conv.clone(),
                            act,
                            residual,
                            post: None,
                            channels_last: false,
                        };
                        let mut fins = ins.clone();
                        if residual {
                            fins.push(res.clone());
                        }
                        let got = eval_op(&op, &fins).unwrap().remove(0);
                        // Exact for the piecewise-linear activations; the transcendental
                        // ones (sigmoid, swish, hardswish) may round differently from the
                        // vectorized unfused kernels (fastmath.rs).
                        let exact = matches!(
                            act,
                            Activation::Identity | Activation::Relu | Activation::Clip { .. }
                        );
                        if exact {
                            assert_eq!(
                                got.as_slice::<f32>().unwrap(),
                                want.as_slice::<f32>().unwrap(),
                                "{act:?} residual {residual} conv {:?}",
                                (c, m, g, k, s, p)
                            );
                        } else {
                            assert_close(&got, &want, 1e-6);
                        }
                    }
                }
            }
        }
    }

    /// The post affine map on every conv path (packed GEMM store, transposed pointwise,
    /// depthwise, Winograd, N-d, direct few-channel), with and without a residual: bit for bit the fused conv
    /// without it followed by `v * s` and `+ t` in f32.
    #[test]
    fn fused_conv_post_affine_matches_mul_then_add_on_every_path() {
        let vals = |n: usize, s: f32| -> Vec<f32> {
            (0..n).map(|i| ((i * 29 % 31) as f32 - 15.0) * s).collect()
        };
        // (x shape, w shape, group, pads): 3x3 im2col, pointwise, transposed pointwise
        // (depth >= 512, 7x7 plane), depthwise 5x5, 3x3 stride 1 (Winograd when it pays),
        // 3-D, depthwise 3x3 (depthwise.rs), a 3-channel stem (direct_conv.rs).
        let cases: [(Vec<usize>, Vec<usize>, usize, usize); 8] = [
            (vec![1, 16, 12, 20], vec![16, 1, 3, 3], 16, 1),
            (vec![1, 3, 20, 24], vec![8, 3, 3, 3], 1, 1),
            (vec![1, 8, 9, 10], vec![16, 8, 3, 3], 1, 0),
            (vec![1, 24, 6, 20], vec![40, 24, 1, 1], 1, 0),
            (vec![1, 512, 7, 7], vec![96, 512, 1, 1], 1, 0),
            (vec![1, 16, 12, 20], vec![16, 1, 5, 5], 16, 2),
            (vec![1, 32, 16, 16], vec![32, 32, 3, 3], 1, 1),
            (vec![1, 4, 5, 6, 7], vec![8, 4, 3, 3, 3], 1, 1),
        ];
        let post = PostAffine {
            scale: 0.8125,
            shift: -0.3,
        };
        for (xs, ws, group, pad) in cases {
            let rank = xs.len();
            let m = ws[0];
            let x = Tensor::from_vec(&xs, vals(xs.iter().product(), 0.07)).unwrap();
            let w = Tensor::from_vec(&ws, vals(ws.iter().product(), 0.05)).unwrap();
            let b = Tensor::from_vec(&[m], vals(m, 0.1)).unwrap();
            let conv = Conv {
                strides: vec![1; rank - 2],
                dilations: vec![1; rank - 2],
                padding: Padding::Explicit(vec![pad; 2 * (rank - 2)]),
                group,
            };
            for (act, residual) in [
                (Activation::HardSwish, false),
                (Activation::Relu, true),
                (Activation::Swish, false),
            ] {
                let plain = FusedConv {
                    conv: conv.clone(),
                    act,
                    residual,
                    post: None,
                    channels_last: false,
                };
                let mut ins = vec![x.clone(), w.clone(), b.clone()];
                if residual {
                    let z = eval_op(&conv, &ins).unwrap().remove(0);
                    ins.push(Tensor::from_vec(z.shape(), vals(z.len(), 0.02)).unwrap());
                }
                let want: Vec<f32> = eval_op(&plain, &ins).unwrap()[0]
                    .as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .map(|&v| v * post.scale + post.shift)
                    .collect();
                let fused = FusedConv {
                    post: Some(post),
                    channels_last: false,
                    ..plain
                };
                let got = eval_op(&fused, &ins).unwrap().remove(0);
                assert_eq!(
                    got.as_slice::<f32>().unwrap(),
                    &want[..],
                    "{xs:?} {ws:?} {act:?} residual {residual}"
                );
            }
        }
    }

    #[test]
    fn fused_conv_rejects_a_mismatched_residual() {
        let op = FusedConv {
            conv: Conv {
                strides: vec![1, 1],
                dilations: vec![1, 1],
                padding: Padding::Valid,
                group: 1,
            },
            act: Activation::Relu,
            residual: true,
            post: None,
            channels_last: false,
        };
        let ins = [
            Tensor::from_vec(&[1, 1, 3, 3], vec![1f32; 9]).unwrap(),
            Tensor::from_vec(&[1, 1, 1, 1], vec![1f32]).unwrap(),
            Tensor::from_vec(&[1], vec![0f32]).unwrap(),
            Tensor::from_vec(&[1, 1, 3, 1], vec![1f32; 3]).unwrap(),
        ];
        assert!(eval_op(&op, &ins).is_err());
    }

    /// Per-element reference pool (the kernel's former loop).
    fn reference_pool(x: &Tensor, p: &Pool) -> Tensor {
        let sh = x.shape();
        let geo = geometry(
            "t",
            &sh[2..],
            &p.kernel,
            &p.strides,
            &p.dilations,
            &p.padding,
            p.ceil_mode,
        )
        .unwrap();
        let (hg, wg) = (geo[0], geo[1]);
        let xv = x.as_slice::<f32>().unwrap();
        let (ih, iw) = (hg.input, wg.input);
        let mut out = Vec::new();
        for pl in 0..sh[0] * sh[1] {
            for oy in 0..hg.output {
                for ox in 0..wg.output {
                    let (mut acc, mut n, mut padded_n) = (
                        if p.kind == PoolKind::Max {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        },
                        0usize,
                        0usize,
                    );
                    for ki in 0..hg.kernel {
                        let iy =
                            (oy * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
                        for kj in 0..wg.kernel {
                            let ix = (ox * wg.stride + kj * wg.dilation) as isize
                                - wg.pad_begin as isize;
                            if iy < (ih + hg.pad_end) as isize && ix < (iw + wg.pad_end) as isize {
                                padded_n += 1;
                            }
                            if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                                continue;
                            }
                            let v = xv[pl * ih * iw + iy as usize * iw + ix as usize];
                            n += 1;
                            acc = match p.kind {
                                PoolKind::Max => {
                                    if v > acc || v.is_nan() {
                                        v
                                    } else {
                                        acc
                                    }
                                }
                                PoolKind::Avg { .. } => acc + v,
                            };
                        }
                    }
                    out.push(match p.kind {
                        PoolKind::Max => acc,
                        PoolKind::Avg { count_include_pad } => {
                            let d = if count_include_pad { padded_n } else { n };
                            if d == 0 { 0.0 } else { acc / d as f32 }
                        }
                    });
                }
            }
        }
        Tensor::from_vec(&[sh[0], sh[1], hg.output, wg.output], out).unwrap()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn stride_two_fill_matches_the_portable_one() {
        if Simd::detect() != Simd::Avx512 {
            println!("skipped: no AVX-512F on this CPU");
            return;
        }
        // Widths around the 32-column step, both pad parities, ceil-mode slack past the end.
        for iw in [1, 2, 5, 16, 31, 32, 33, 47, 64, 112, 163] {
            for pad_l in 0..4 {
                for pad_r in [0, 1, 3] {
                    let pr = PhaseRows {
                        ih: 3,
                        iw,
                        pad_l,
                        sw: 2,
                        pl: (pad_l + iw + pad_r).div_ceil(2),
                        taps: vec![0],
                    };
                    let x = lin(3 * iw, 0.7);
                    let mut want = vec![9.0f32; pr.scratch_len()];
                    let mut got = want.clone();
                    pr.fill(&x, -1.5, &mut want);
                    // SAFETY: AVX-512F detected above.
                    unsafe { pool_avx512::fill_s2(&pr, &x, -1.5, &mut got) };
                    assert_eq!(got, want, "iw {iw} pad {pad_l} {pad_r}");
                }
            }
        }
    }

    #[test]
    fn pool_fast_paths_match_reference() {
        let kinds = [
            PoolKind::Max,
            PoolKind::Avg {
                count_include_pad: false,
            },
            PoolKind::Avg {
                count_include_pad: true,
            },
        ];
        // (kernel, strides, dilations, pads, ceil, h, w)
        let cases = [
            ([3, 3], [2, 2], [1, 1], vec![1, 1, 1, 1], false, 11, 12),
            ([3, 3], [2, 2], [1, 1], vec![0, 0, 0, 0], true, 10, 47),
            ([2, 2], [2, 2], [1, 1], vec![0, 0, 0, 0], false, 8, 8),
            ([3, 2], [1, 3], [2, 1], vec![2, 0, 1, 1], true, 9, 13),
            ([5, 5], [1, 1], [1, 1], vec![2, 2, 2, 2], false, 6, 35),
            ([2, 3], [3, 2], [1, 1], vec![1, 2, 0, 1], true, 7, 9),
            // Rows of more than one 64-column AVX-512 block, and a partial last block.
            ([3, 3], [1, 1], [1, 1], vec![1, 1, 1, 1], false, 4, 70),
            ([3, 3], [2, 2], [1, 1], vec![0, 1, 0, 1], true, 5, 163),
        ];
        each_simd(|_| {
            for kind in kinds {
                for (k, s, d, p, ceil, h, w) in cases.clone() {
                    let mut xv = lin(3 * h * w, 0.3);
                    xv[5] = f32::NAN;
                    let x = Tensor::from_vec(&[1, 3, h, w], xv).unwrap();
                    let op = Pool {
                        kind,
                        kernel: k.to_vec(),
                        strides: s.to_vec(),
                        dilations: d.to_vec(),
                        padding: Padding::Explicit(p),
                        ceil_mode: ceil,
                        channels_last: false,
                    };
                    let got = eval_op(&op, std::slice::from_ref(&x)).unwrap().remove(0);
                    let want = reference_pool(&x, &op);
                    assert_eq!(got.shape(), want.shape());
                    for (a, b) in got
                        .as_slice::<f32>()
                        .unwrap()
                        .iter()
                        .zip(want.as_slice::<f32>().unwrap())
                    {
                        assert!(a == b || (a.is_nan() && b.is_nan()), "{op:?}: {a} vs {b}");
                    }
                }
            }
        });
    }
}
