//! Depthwise 2-D convolution on channels-last (NHWC) data: every tap is one vector of
//! channels, so small planes (7x7, 14x14) and strided convs vectorize fully.
//!
//! Weights are packed once as `[kh * kw][C rounded up to 16]` (zeros past C). An output row
//! `(n, oy)` is cut into tiles of up to 8 output pixels; for each block of 16 channels a
//! tile keeps its 8 accumulators in registers over every tap of the rows inside the image
//! (rows in the padding are skipped for the whole output row). For 3x3 kernels at
//! horizontal stride 1 or 2 each input pixel of a kernel row is loaded once and feeds every
//! (pixel, tap) pair that reads it (10 loads for 24 multiply-adds at stride 1), with the
//! row's 3 weight vectors in registers; other geometries load per tap. Tiles wholly inside
//! the image skip bounds checks; border tiles skip out-of-image pixels. The epilogue (bias
//! as the accumulators' start, residual, activation, post affine) runs in registers before
//! one masked store, or, for activations that need `exp`, over the finished output row
//! while it is in L1. Output rows are split over the pool's threads when the conv is large.
//!
//! Each output sums `bias`, then the taps (kernel rows in order; within a row, input pixels
//! left to right): the same products as the NCHW kernels in another order, so results
//! agree to rounding (not bit for bit).

use super::PAR_MIN_ELEMS;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use crate::dtype::DType;
use crate::ir::Fact;
use crate::ops::conv::geometry;
use crate::ops::{Activation, FusedConv, PostAffine};
use crate::tensor::Tensor;
use crate::{Error, Result};
use rayon::prelude::*;

/// Output pixels per register tile.
const XT: usize = 8;

/// Which specialized tile a conv's horizontal geometry takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Taps {
    /// 3 wide, stride 1, dilation 1.
    K3S1,
    /// 3 wide, stride 2, dilation 1.
    K3S2,
    /// 5 wide, stride 1, dilation 1 (EfficientNet, MobileNetV3, PP-LCNet).
    K5S1,
    /// 5 wide, stride 2, dilation 1.
    K5S2,
    /// Anything else (loads per tap).
    Any,
}

/// A channels-last depthwise conv planned for one input shape, weights packed.
#[derive(Debug)]
struct DwNhwc {
    n: usize,
    ih: usize,
    iw: usize,
    c: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pad_t: usize,
    pad_l: usize,
    /// C rounded up to 16: the packed weights' row length.
    cp: usize,
    /// `[kh * kw][cp]`, in a tensor for its 64-byte alignment (every weight vector load
    /// within one cache line).
    w: Tensor,
    act: Activation,
    residual: bool,
    post: Option<PostAffine>,
    /// Output columns `[ox_lo, ox_hi)` read no padding column at any tap.
    ox_lo: usize,
    ox_hi: usize,
    taps: Taps,
    /// Hand-written AVX-512 tiles (else the portable loop).
    avx512: bool,
}

/// The kernel for a channels-last depthwise `FusedConv` (f32, group == C == M), or `None`
/// when `f` is not one. Errors when it is one but its weights are not constant (they are
/// packed here) or its inputs do not fit the conv.
pub(super) fn build(f: &FusedConv, inputs: &[Fact]) -> Result<Option<Box<dyn Kernel>>> {
    #[cfg(target_arch = "x86_64")]
    let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    Ok(plan(f, inputs, avx512)?.map(|k| Box::new(k) as Box<dyn Kernel>))
}

fn plan(f: &FusedConv, inputs: &[Fact], avx512: bool) -> Result<Option<DwNhwc>> {
    let (Some(x), Some(wf)) = (inputs.first(), inputs.get(1)) else {
        return Ok(None);
    };
    if !f.channels_last || x.dtype != DType::F32 || x.rank() != 4 || wf.rank() != 4 {
        return Ok(None);
    }
    let c = match x.shape.dims()[3].known() {
        Some(c) => c,
        None => return Ok(None),
    };
    let wd = wf.shape.dims();
    let depthwise = f.conv.group == c
        && wd[0].known() == Some(c)
        && wd[1].known() == Some(1)
        && wf.dtype == DType::F32;
    if !depthwise || c == 0 {
        return Ok(None);
    }
    let name = "FusedConv";
    let want = 3 + usize::from(f.residual);
    if inputs.len() != want {
        return Err(Error::shape(
            name,
            format!("takes {want} inputs, got {}", inputs.len()),
        ));
    }
    let xs = concrete(x)?;
    let ws = concrete(wf)?;
    let (kh, kw) = (ws[2], ws[3]);
    let geo = geometry(
        name,
        &xs[1..3],
        &[kh, kw],
        &f.conv.strides,
        &f.conv.dilations,
        &f.conv.padding,
        false,
    )?;
    let (gh, gw) = (geo[0], geo[1]);
    // Every size the kernel multiplies out must fit (no wrapped index on absurd shapes).
    let os = [xs[0], gh.output, gw.output, c];
    if crate::tensor::checked_volume(&xs).is_none() || crate::tensor::checked_volume(&os).is_none()
    {
        return Err(Error::shape(
            name,
            format!("input {xs:?} or output {os:?} is too large"),
        ));
    }
    let b = &inputs[2];
    if b.rank() != 1 || b.shape.dims()[0].known() != Some(c) || b.dtype != DType::F32 {
        return Err(Error::shape(
            name,
            format!("bias {:?} {} must be [{c}] f32", b.shape, b.dtype),
        ));
    }
    let wt = wf.konst.as_ref().ok_or_else(|| {
        Error::unsupported("a channels-last depthwise conv with non-constant weights")
    })?;
    let wv = wt.as_slice::<f32>()?;
    let cp = c.div_ceil(16) * 16;
    let taps = kh * kw;
    if wv.len() != c * taps {
        return Err(Error::shape(
            name,
            format!("weights hold {} values, not {c} x {kh} x {kw}", wv.len()),
        ));
    }
    let mut w = vec![0f32; taps * cp];
    for ch in 0..c {
        for t in 0..taps {
            w[t * cp + ch] = wv[ch * taps + t];
        }
    }
    // Interior columns: ox * sw >= pad_l and ox * sw - pad_l + (kw - 1) * dw < iw.
    let (sw, dw, pad_l) = (gw.stride, gw.dilation, gw.pad_begin);
    let ox_lo = pad_l.div_ceil(sw).min(gw.output);
    let ext = (kw - 1) * dw + 1;
    let ox_hi = if gw.input + pad_l >= ext {
        ((gw.input + pad_l - ext) / sw + 1).min(gw.output)
    } else {
        0
    }
    .max(ox_lo);
    let kind = match (kw, sw, dw) {
        (3, 1, 1) => Taps::K3S1,
        (3, 2, 1) => Taps::K3S2,
        (5, 1, 1) => Taps::K5S1,
        (5, 2, 1) => Taps::K5S2,
        _ => Taps::Any,
    };
    Ok(Some(DwNhwc {
        n: xs[0],
        ih: gh.input,
        iw: gw.input,
        c,
        oh: gh.output,
        ow: gw.output,
        kh,
        kw,
        sh: gh.stride,
        sw,
        dh: gh.dilation,
        dw,
        pad_t: gh.pad_begin,
        pad_l,
        cp,
        w: Tensor::from_vec(&[taps * cp], w)?,
        act: f.act,
        residual: f.residual,
        post: f.post,
        ox_lo,
        ox_hi,
        taps: kind,
        avx512,
    }))
}

impl DwNhwc {
    fn weights(&self) -> &[f32] {
        crate::tensor::bytes_as::<f32>(self.w.as_bytes())
    }
    fn row_len(&self) -> usize {
        self.ow * self.c
    }
    fn out_len(&self) -> usize {
        self.n * self.oh * self.row_len()
    }
    /// Kernel rows of output row `oy` inside the image: `ky0..ky1`, and the input row of
    /// kernel row 0 (may be negative).
    fn ky_range(&self, oy: usize) -> (usize, usize, isize) {
        let iy0 = (oy * self.sh) as isize - self.pad_t as isize;
        let dh = self.dh as isize;
        let mut ky0 = 0;
        while ky0 < self.kh && iy0 + ky0 as isize * dh < 0 {
            ky0 += 1;
        }
        let mut ky1 = self.kh;
        while ky1 > ky0 && iy0 + (ky1 - 1) as isize * dh >= self.ih as isize {
            ky1 -= 1;
        }
        (ky0, ky1, iy0)
    }

    /// Output rows `r0..` (flat over n, oy) into `o` (whole rows), reading the whole input
    /// `x`, `bias` [C] and the matching rows of `res`.
    fn rows(&self, x: &[f32], bias: &[f32], res: Option<&[f32]>, r0: usize, o: &mut [f32]) {
        let rl = self.row_len();
        for (i, orow) in o.chunks_exact_mut(rl).enumerate() {
            let rrow = res.map(|r| &r[i * rl..][..rl]);
            let row = r0 + i;
            let (b, oy) = (row / self.oh, row % self.oh);
            let img = &x[b * self.ih * self.iw * self.c..][..self.ih * self.iw * self.c];
            #[cfg(target_arch = "x86_64")]
            if self.avx512 {
                // SAFETY: `avx512` is only set where the CPU has AVX-512F (`build`).
                let done = unsafe { avx512::row(self, img, bias, rrow, oy, orow) };
                if !done {
                    self.finish_row(orow);
                }
                continue;
            }
            self.row_portable(img, bias, rrow, oy, orow);
            self.finish_row(orow);
        }
    }

    /// Activation and post map over a finished row (when the tiles did not apply them).
    fn finish_row(&self, orow: &mut [f32]) {
        super::conv::apply_act(self.act, orow);
        if let Some(p) = self.post {
            super::conv::apply_post(p, orow);
        }
    }

    /// One output row, portable: bias, taps, residual (activation left to the caller).
    fn row_portable(
        &self,
        img: &[f32],
        bias: &[f32],
        res: Option<&[f32]>,
        oy: usize,
        orow: &mut [f32],
    ) {
        let (c, cp) = (self.c, self.cp);
        let (ky0, ky1, iy0) = self.ky_range(oy);
        let w = self.weights();
        for (ox, pix) in orow.chunks_exact_mut(c).enumerate() {
            pix.copy_from_slice(bias);
            let ix0 = (ox * self.sw) as isize - self.pad_l as isize;
            for ky in ky0..ky1 {
                let iy = (iy0 + (ky * self.dh) as isize) as usize;
                for kx in 0..self.kw {
                    let ix = ix0 + (kx * self.dw) as isize;
                    if ix < 0 || ix as usize >= self.iw {
                        continue;
                    }
                    let xp = &img[(iy * self.iw + ix as usize) * c..][..c];
                    let wp = &w[(ky * self.kw + kx) * cp..][..c];
                    for ((o, &xv), &wv) in pix.iter_mut().zip(xp).zip(wp) {
                        *o += xv * wv;
                    }
                }
            }
            if let Some(r) = res {
                for (o, &rv) in pix.iter_mut().zip(&r[ox * c..][..c]) {
                    *o += rv;
                }
            }
        }
    }
}

impl Kernel for DwNhwc {
    fn run(
        &self,
        _ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let name = "FusedConv";
        let want = 3 + usize::from(self.residual);
        if inputs.len() != want || outputs.len() != 1 {
            return Err(Error::shape(
                name,
                format!(
                    "takes {want} inputs and 1 output, got {} and {}",
                    inputs.len(),
                    outputs.len()
                ),
            ));
        }
        let x = inputs[0].as_slice::<f32>()?;
        let bias = inputs[2].as_slice::<f32>()?;
        let res = if self.residual {
            Some(inputs[3].as_slice::<f32>()?)
        } else {
            None
        };
        let out_len = self.out_len();
        let o = outputs[0].as_slice_mut::<f32>()?;
        let x_len = self.n * self.ih * self.iw * self.c;
        if x.len() != x_len
            || bias.len() != self.c
            || o.len() != out_len
            || res.is_some_and(|r| r.len() != out_len)
        {
            return Err(Error::shape(
                name,
                format!(
                    "planned for {x_len} inputs, {} bias and {out_len} outputs, got {}, {} and {}",
                    self.c,
                    x.len(),
                    bias.len(),
                    o.len()
                ),
            ));
        }
        let rl = self.row_len();
        let rows = self.n * self.oh;
        if rl == 0 || rows == 0 {
            return Ok(());
        }
        let threads = super::pool_threads();
        if threads <= 1 || out_len * self.kh * self.kw < PAR_MIN_ELEMS * 9 || rows < 2 {
            self.rows(x, bias, res, 0, o);
            return Ok(());
        }
        // A few tasks per thread so rows of unequal cost (borders) even out.
        let per = rows.div_ceil(threads * 4).max(1);
        o.par_chunks_mut(per * rl)
            .enumerate()
            .for_each(|(t, chunk)| {
                let r0 = t * per;
                let res = res.map(|r| &r[r0 * rl..][..chunk.len()]);
                self.rows(x, bias, res, r0, chunk);
            });
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{DwNhwc, Taps, XT};
    use crate::cpu::kernels::conv::avx512::{act_in_tile, mask, vec_act};
    use crate::ops::{Activation, PostAffine};
    use std::arch::x86_64::*;

    /// What one tile needs besides the plan.
    struct Tile {
        img: *const f32,
        bias: *const f32,
        res: Option<*const f32>,
        out: *mut f32,
        ky0: usize,
        ky1: usize,
        iy0: isize,
        /// First output column of the tile.
        ox: usize,
        epi: Epi,
    }

    /// The activation as the tiles apply it, constants already broadcast.
    #[derive(Clone, Copy)]
    enum VAct {
        /// Not in registers: the caller maps the finished row (exp, NaN clip bounds).
        Later,
        Identity,
        Relu,
        /// [lo, hi] as `min(hi, max(lo, v))`: `max_ps(a, b)` is `a > b ? a : b`, so this
        /// is `vec_act`'s `v < lo -> lo`, `v > hi -> hi` in 2 instructions instead of 4,
        /// NaN kept (the second operand) and -0 left alone, as the Clip op does.
        Clip(__m512, __m512),
        Other(Activation),
    }

    /// Activation then post affine (scale, shift), set up once per row.
    #[derive(Clone, Copy)]
    struct Epi {
        act: VAct,
        post: Option<(__m512, __m512)>,
    }

    impl Epi {
        #[target_feature(enable = "avx512f")]
        fn new(act: Activation, post: Option<PostAffine>) -> Epi {
            let act = if !act_in_tile(act) {
                VAct::Later
            } else {
                match act {
                    Activation::Identity => VAct::Identity,
                    Activation::Relu => VAct::Relu,
                    Activation::Clip { min, max } => {
                        VAct::Clip(_mm512_set1_ps(min as f32), _mm512_set1_ps(max as f32))
                    }
                    a => VAct::Other(a),
                }
            };
            let post = post.map(|p| (_mm512_set1_ps(p.scale), _mm512_set1_ps(p.shift)));
            Epi { act, post }
        }
        fn in_regs(&self) -> bool {
            !matches!(self.act, VAct::Later)
        }
        /// The activation then the post map (a multiply then an add, each rounded: the
        /// unfused ops' bits).
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn apply(&self, v: __m512) -> __m512 {
            let v = match self.act {
                VAct::Later => return v,
                VAct::Identity => v,
                VAct::Relu => {
                    let zero = _mm512_setzero_ps();
                    _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, zero), zero)
                }
                VAct::Clip(lo, hi) => _mm512_min_ps(hi, _mm512_max_ps(lo, v)),
                VAct::Other(a) => vec_act(a, v).unwrap_or(v),
            };
            match self.post {
                Some((scale, shift)) => _mm512_add_ps(_mm512_mul_ps(v, scale), shift),
                None => v,
            }
        }
    }

    /// One output row. Returns whether the activation and post were applied (else the
    /// caller applies them to `orow`).
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn row(
        k: &DwNhwc,
        img: &[f32],
        bias: &[f32],
        res: Option<&[f32]>,
        oy: usize,
        orow: &mut [f32],
    ) -> bool {
        assert!(
            img.len() >= k.ih * k.iw * k.c
                && bias.len() >= k.c
                && orow.len() >= k.ow * k.c
                && res.is_none_or(|r| r.len() >= k.ow * k.c)
                && k.weights().len() >= k.kh * k.kw * k.cp
        );
        let (ky0, ky1, iy0) = k.ky_range(oy);
        let epi = Epi::new(k.act, k.post);
        let mut t = Tile {
            img: img.as_ptr(),
            bias: bias.as_ptr(),
            res: res.map(|r| r.as_ptr()),
            out: orow.as_mut_ptr(),
            ky0,
            ky1,
            iy0,
            ox: 0,
            epi,
        };
        while t.ox < k.ow {
            let nx = (k.ow - t.ox).min(XT);
            let check = t.ox < k.ox_lo || t.ox + nx > k.ox_hi;
            // SAFETY: the tile reads input rows iy0 + ky * dh for ky in ky0..ky1 (inside
            // the image by `ky_range`), columns inside the image (checked tiles test each,
            // unchecked ones lie in [ox_lo, ox_hi)), channels < C (masks), packed weights
            // < kh * kw * cp, and writes output columns ox..ox + nx < ow (all asserted).
            unsafe { dispatch(k, &t, nx, check) };
            t.ox += nx;
        }
        epi.in_regs()
    }

    /// Picks the tile instance for `nx` pixels.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn dispatch(k: &DwNhwc, t: &Tile, nx: usize, check: bool) {
        // `by_nx!(f, A, B, @ C, D)` calls `f::<A, B, nx, C, D>`; `by_nx!(f, C, D)` `f::<nx, C, D>`.
        macro_rules! by_nx {
            ($f:ident, $($pre:literal),+, @ $($args:tt)*) => {
                match nx {
                    8 => $f::<$($pre,)+ 8, $($args)*>(k, t),
                    7 => $f::<$($pre,)+ 7, $($args)*>(k, t),
                    6 => $f::<$($pre,)+ 6, $($args)*>(k, t),
                    5 => $f::<$($pre,)+ 5, $($args)*>(k, t),
                    4 => $f::<$($pre,)+ 4, $($args)*>(k, t),
                    3 => $f::<$($pre,)+ 3, $($args)*>(k, t),
                    2 => $f::<$($pre,)+ 2, $($args)*>(k, t),
                    _ => $f::<$($pre,)+ 1, $($args)*>(k, t),
                }
            };
            ($f:ident, $($args:tt)*) => {
                match nx {
                    8 => $f::<8, $($args)*>(k, t),
                    7 => $f::<7, $($args)*>(k, t),
                    6 => $f::<6, $($args)*>(k, t),
                    5 => $f::<5, $($args)*>(k, t),
                    4 => $f::<4, $($args)*>(k, t),
                    3 => $f::<3, $($args)*>(k, t),
                    2 => $f::<2, $($args)*>(k, t),
                    _ => $f::<1, $($args)*>(k, t),
                }
            };
        }
        // SAFETY: forwarded from `row`.
        unsafe {
            match (k.taps, check) {
                (Taps::K3S1, false) => by_nx!(tile_k, 3, 17, @ 1, false),
                (Taps::K3S1, true) => by_nx!(tile_k, 3, 17, @ 1, true),
                (Taps::K3S2, false) => by_nx!(tile_k, 3, 17, @ 2, false),
                (Taps::K3S2, true) => by_nx!(tile_k, 3, 17, @ 2, true),
                (Taps::K5S1, false) => by_nx!(tile_k, 5, 19, @ 1, false),
                (Taps::K5S1, true) => by_nx!(tile_k, 5, 19, @ 1, true),
                (Taps::K5S2, false) => by_nx!(tile_k, 5, 19, @ 2, false),
                (Taps::K5S2, true) => by_nx!(tile_k, 5, 19, @ 2, true),
                (Taps::Any, false) => by_nx!(tile_any, false),
                (Taps::Any, true) => by_nx!(tile_any, true),
            }
        }
    }

    /// Residual, activation, post and the masked store of a tile's finished accumulators
    /// (a macro, not a function: a call would pass the accumulators through memory).
    macro_rules! store {
        ($k:expr, $t:expr, $acc:expr, $cb:expr, $m:expr) => {
            for (j, a) in $acc.iter().enumerate() {
                let idx = ($t.ox + j) * $k.c + $cb;
                let mut v = *a;
                if let Some(r) = $t.res {
                    // SAFETY: idx + valid lanes inside the residual row (asserted by `row`).
                    v = _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps($m, r.add(idx)) });
                }
                v = $t.epi.apply(v);
                // SAFETY: idx + valid lanes inside the output row.
                unsafe { _mm512_mask_storeu_ps($t.out.add(idx), $m, v) };
            }
        };
    }

    #[cfg(test)]
    #[test]
    fn epilogue_matches_apply_act_and_post_bit_for_bit() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let vals: [f32; 16] = [
            f32::NAN,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -3.0,
            3.0,
            6.0,
            6.5,
            -0.5,
            -0.75,
            1e-40,
            -1e-40,
            2.5,
            -7.0,
            0.25,
        ];
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::Clip { min: 0.0, max: 6.0 },
            Activation::Clip {
                min: -0.5,
                max: f64::INFINITY,
            },
            Activation::Clip {
                min: f64::NEG_INFINITY,
                max: 0.0,
            },
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Activation::HardSwish,
        ];
        let post = PostAffine {
            scale: -1.5,
            shift: 0.25,
        };
        for act in acts {
            for p in [None, Some(post)] {
                let mut want = vals;
                crate::cpu::kernels::conv::apply_act(act, &mut want);
                if let Some(p) = p {
                    crate::cpu::kernels::conv::apply_post(p, &mut want);
                }
                let mut got = [0f32; 16];
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe {
                    let e = Epi::new(act, p);
                    assert!(e.in_regs());
                    let v = e.apply(_mm512_loadu_ps(vals.as_ptr()));
                    _mm512_storeu_ps(got.as_mut_ptr(), v);
                }
                for i in 0..16 {
                    assert_eq!(
                        got[i].to_bits(),
                        want[i].to_bits(),
                        "{act:?} {p:?} on {}: {} != {}",
                        vals[i],
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }

    /// `N` pixels of a `K`-wide kernel (3 or 5) at horizontal stride `SW` (1 or 2), dilation
    /// 1: each input pixel of a kernel row is loaded once into a register and feeds every
    /// output `j` and tap `kx` with `j * SW + kx == q`. `SPAN` = (XT - 1) * 2 + K, the widest
    /// row span (a parameter because array lengths cannot be computed from `K`; each width
    /// gets exactly its own registers). At K = 5, stride 2, the span, 8 accumulators and 5
    /// weights exceed the 32 registers and some pixels spill. `CHECK`: pixels outside the
    /// image read 0.
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    unsafe fn tile_k<
        const K: usize,
        const SPAN: usize,
        const N: usize,
        const SW: usize,
        const CHECK: bool,
    >(
        k: &DwNhwc,
        t: &Tile,
    ) {
        let (c, cp, iw) = (k.c, k.cp, k.iw as isize);
        let span = (N - 1) * SW + K;
        debug_assert!(span <= SPAN && SPAN == (XT - 1) * 2 + K);
        let ix0 = (t.ox * SW) as isize - k.pad_l as isize;
        let mut cb = 0;
        while cb < c {
            let m = mask(c - cb);
            // SAFETY (all loads/stores): see `row`.
            let b = unsafe { _mm512_maskz_loadu_ps(m, t.bias.add(cb)) };
            let mut acc = [b; N];
            for ky in t.ky0..t.ky1 {
                let iy = (t.iy0 + (ky * k.dh) as isize) as usize;
                let xrow = unsafe { t.img.add(iy * k.iw * c + cb) };
                let wrow = unsafe { k.weights().as_ptr().add(ky * K * cp + cb) };
                let w: [__m512; K] =
                    std::array::from_fn(|kx| unsafe { _mm512_loadu_ps(wrow.add(kx * cp)) });
                // The row's input pixels, each loaded once (zero outside the image) ...
                let mut xs = [_mm512_setzero_ps(); SPAN];
                for (q, xv) in xs.iter_mut().enumerate().take(span) {
                    let ix = ix0 + q as isize;
                    if !CHECK || (ix >= 0 && ix < iw) {
                        *xv = unsafe { _mm512_maskz_loadu_ps(m, xrow.offset(ix * c as isize)) };
                    }
                }
                // ... then tap by tap over all N outputs: N independent FMA chains.
                for (kx, wv) in w.iter().enumerate() {
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(xs[j * SW + kx], *wv, *a);
                    }
                }
            }
            store!(k, t, acc, cb, m);
            cb += 16;
        }
    }

    /// `N` pixels of any kernel width, stride and dilation: one load per pixel and tap.
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    unsafe fn tile_any<const N: usize, const CHECK: bool>(k: &DwNhwc, t: &Tile) {
        let (c, cp, iw) = (k.c, k.cp, k.iw as isize);
        let ix0 = (t.ox * k.sw) as isize - k.pad_l as isize;
        let mut cb = 0;
        while cb < c {
            let m = mask(c - cb);
            // SAFETY (all loads/stores): see `row`.
            let b = unsafe { _mm512_maskz_loadu_ps(m, t.bias.add(cb)) };
            let mut acc = [b; N];
            for ky in t.ky0..t.ky1 {
                let iy = (t.iy0 + (ky * k.dh) as isize) as usize;
                let xrow = unsafe { t.img.add(iy * k.iw * c + cb) };
                for kx in 0..k.kw {
                    let wv = unsafe {
                        _mm512_loadu_ps(k.weights().as_ptr().add((ky * k.kw + kx) * cp + cb))
                    };
                    for (j, a) in acc.iter_mut().enumerate() {
                        let ix = ix0 + (j * k.sw + kx * k.dw) as isize;
                        if CHECK && (ix < 0 || ix >= iw) {
                            continue;
                        }
                        let xv = unsafe { _mm512_maskz_loadu_ps(m, xrow.offset(ix * c as isize)) };
                        *a = _mm512_fmadd_ps(xv, wv, *a);
                    }
                }
            }
            store!(k, t, acc, cb, m);
            cb += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::{Conv, Padding};
    use crate::tensor::{Tensor, assert_close};

    /// One conv to check: NHWC input dims, kernel, strides, dilations, padding.
    #[derive(Clone, Debug)]
    struct Case {
        x: [usize; 4],
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
        pad: Padding,
        act: Activation,
        residual: bool,
        post: Option<PostAffine>,
    }

    fn case(c: usize, hw: usize, s: usize) -> Case {
        Case {
            x: [1, hw, hw, c],
            k: [3, 3],
            s: [s, s],
            d: [1, 1],
            pad: Padding::Explicit(vec![1; 4]),
            act: Activation::Clip { min: 0.0, max: 6.0 },
            residual: false,
            post: None,
        }
    }

    fn lin(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) * s).collect()
    }

    /// `t` ([a, b, c, d]) with its axes permuted by `perm`.
    fn permute(t: &Tensor, perm: [usize; 4]) -> Tensor {
        let s = t.shape();
        let v = t.as_slice::<f32>().unwrap();
        let os: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
        let stride = [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1];
        let mut out = Vec::with_capacity(v.len());
        for a in 0..os[0] {
            for b in 0..os[1] {
                for c in 0..os[2] {
                    for d in 0..os[3] {
                        let i = [a, b, c, d];
                        let mut src = 0;
                        for (k, &p) in perm.iter().enumerate() {
                            src += i[k] * stride[p];
                        }
                        out.push(v[src]);
                    }
                }
            }
        }
        Tensor::from_vec(&os, out).unwrap()
    }
    const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
    const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

    fn op(cs: &Case, channels_last: bool) -> FusedConv {
        FusedConv {
            conv: Conv {
                strides: cs.s.to_vec(),
                dilations: cs.d.to_vec(),
                padding: cs.pad.clone(),
                group: cs.x[3],
            },
            act: cs.act,
            residual: cs.residual,
            post: cs.post,
            channels_last,
        }
    }

    /// Runs a planned kernel directly (to pick the portable or the AVX-512 path).
    fn run(k: &DwNhwc, ins: &[Tensor], out_shape: &[usize]) -> Result<Tensor> {
        let views: Vec<TensorView> = ins
            .iter()
            .map(|t| TensorView {
                dtype: t.dtype(),
                shape: t.shape(),
                bytes: t.as_bytes(),
            })
            .collect();
        let mut out = Tensor::zeros(DType::F32, out_shape)?;
        let mut outs = [TensorViewMut {
            dtype: DType::F32,
            shape: out_shape,
            bytes: out.as_bytes_mut(),
        }];
        let mut ctx = KernelCtx {
            scratch: &mut [],
            threads: 1,
        };
        k.run(&mut ctx, &views, &mut outs)?;
        Ok(out)
    }

    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    fn avx512() -> bool {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The NHWC kernel (as the registry picks it, then the portable and AVX-512 paths
    /// forced, at 1 and 2 threads) against the NCHW FusedConv on transposed tensors.
    fn check(cs: &Case) {
        let [n, h, w, c] = cs.x;
        let xn = Tensor::from_vec(&cs.x, lin(n * h * w * c, 0.37)).unwrap();
        let ws = [c, 1, cs.k[0], cs.k[1]];
        let wt = Tensor::from_vec(&ws, lin(ws.iter().product(), 0.21)).unwrap();
        let bt = Tensor::from_vec(&[c], lin(c, 0.5)).unwrap();
        let mut nchw = vec![permute(&xn, TO_NCHW), wt.clone(), bt.clone()];
        let mut nhwc = vec![xn, wt, bt];
        let plain = FusedConv {
            residual: false,
            ..op(cs, false)
        };
        let probe = eval_op(&plain, &nchw).unwrap().remove(0);
        if cs.residual {
            let r = Tensor::from_vec(probe.shape(), lin(probe.len(), 0.9)).unwrap();
            nhwc.push(permute(&r, TO_NHWC));
            nchw.push(r);
        }
        let want = permute(&eval_op(&op(cs, false), &nchw).unwrap()[0], TO_NHWC);
        let fop = op(cs, true);
        for threads in [1, 2] {
            in_pool(threads, || {
                let got = eval_op(&fop, &nhwc).unwrap().remove(0);
                assert_close(&got, &want, 1e-5);
                let facts: Vec<Fact> = nhwc.iter().cloned().map(Fact::konst).collect();
                for simd in [false, true] {
                    if simd && !avx512() {
                        eprintln!("skipped: no AVX-512 on this CPU");
                        continue;
                    }
                    let k = plan(&fop, &facts, simd).unwrap().expect("a depthwise plan");
                    let got = run(&k, &nhwc, want.shape()).unwrap();
                    assert_close(&got, &want, 1e-5);
                }
            });
        }
    }

    #[test]
    fn mobilenet_v2_shapes_match_the_nchw_conv() {
        for (c, hw, s) in [
            (32, 112, 1),
            (96, 112, 2),
            (144, 56, 1),
            (144, 56, 2),
            (192, 28, 2),
            (576, 14, 2),
            (960, 7, 1),
        ] {
            check(&case(c, hw, s));
        }
    }

    #[test]
    fn odd_channels_kernels_pads_and_batches_match() {
        let base = case(17, 13, 1);
        let mut cases = vec![
            case(3, 9, 1),
            case(17, 13, 2),
            case(40, 10, 1),
            case(40, 11, 2),
            Case {
                k: [5, 5],
                pad: Padding::Explicit(vec![2; 4]),
                ..case(20, 12, 1)
            },
            Case {
                k: [5, 5],
                pad: Padding::Explicit(vec![2; 4]),
                ..case(33, 15, 2)
            },
            // The 5-wide tiles at their edges: asymmetric SAME padding at stride 2, no
            // padding, and a dilated 5x5 (the per-tap path).
            Case {
                k: [5, 5],
                pad: Padding::SameUpper,
                s: [2, 2],
                ..case(24, 14, 2)
            },
            Case {
                k: [5, 5],
                pad: Padding::Valid,
                ..case(40, 11, 1)
            },
            Case {
                k: [5, 5],
                d: [2, 2],
                pad: Padding::Explicit(vec![4; 4]),
                ..case(16, 13, 1)
            },
            Case {
                d: [2, 2],
                pad: Padding::Explicit(vec![2; 4]),
                ..base.clone()
            },
            Case {
                d: [1, 2],
                s: [2, 1],
                ..base.clone()
            },
            Case {
                pad: Padding::Explicit(vec![0, 2, 1, 0]),
                ..base.clone()
            },
            Case {
                pad: Padding::SameUpper,
                s: [2, 2],
                ..case(24, 14, 2)
            },
            Case {
                pad: Padding::SameLower,
                ..case(5, 8, 1)
            },
            Case {
                pad: Padding::Valid,
                ..case(18, 9, 1)
            },
            Case {
                x: [2, 9, 11, 17],
                residual: true,
                ..base.clone()
            },
            Case {
                k: [1, 3],
                s: [1, 3],
                pad: Padding::Explicit(vec![0, 1, 0, 1]),
                ..case(16, 7, 1)
            },
            // 1x1 output: every tap of a 3x3 kernel over a 3x3 input, none in the padding,
            // and a 2x2 input whose single output reads mostly padding.
            Case {
                pad: Padding::Valid,
                ..case(19, 3, 1)
            },
            Case {
                s: [2, 2],
                ..case(19, 2, 2)
            },
            // Rows wider than a tile with a kernel wider than the padding.
            Case {
                k: [3, 7],
                pad: Padding::Explicit(vec![1, 1, 1, 1]),
                ..case(16, 30, 1)
            },
        ];
        cases.push(Case {
            post: Some(PostAffine {
                scale: 0.5,
                shift: -1.25,
            }),
            residual: true,
            ..base.clone()
        });
        for cs in &cases {
            check(cs);
        }
    }

    #[test]
    fn every_activation_with_residual_and_post_matches() {
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::Clip { min: 0.0, max: 6.0 },
            Activation::Clip {
                min: -0.5,
                max: f64::INFINITY,
            },
            Activation::Clip {
                min: f64::NAN,
                max: 1.0,
            },
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Activation::HardSwish,
            Activation::Sigmoid,
            Activation::Swish,
        ];
        for act in acts {
            for (residual, post) in [
                (false, None),
                (
                    true,
                    Some(PostAffine {
                        scale: -1.5,
                        shift: 0.25,
                    }),
                ),
            ] {
                for s in [1, 2] {
                    check(&Case {
                        act,
                        residual,
                        post,
                        ..case(21, 10, s)
                    });
                }
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors_or_not_this_kernel() {
        let cs = case(8, 6, 1);
        let fop = op(&cs, true);
        let x = Fact::known(DType::F32, &[1, 6, 6, 8]);
        let w = Fact::konst(Tensor::from_vec(&[8, 1, 3, 3], lin(72, 0.1)).unwrap());
        let b = Fact::konst(Tensor::from_vec(&[8], lin(8, 0.1)).unwrap());
        assert!(
            plan(&fop, &[x.clone(), w.clone(), b.clone()], false)
                .unwrap()
                .is_some()
        );
        // Weights known only at run time.
        let wvar = Fact::known(DType::F32, &[8, 1, 3, 3]);
        let e = plan(&fop, &[x.clone(), wvar, b.clone()], false).unwrap_err();
        assert!(e.to_string().contains("non-constant weights"), "{e}");
        // Not this kernel: NCHW, rank 3, group 1, f64.
        assert!(
            plan(&op(&cs, false), &[x.clone(), w.clone(), b.clone()], false)
                .unwrap()
                .is_none()
        );
        let x3 = Fact::known(DType::F32, &[6, 6, 8]);
        assert!(
            plan(&fop, &[x3, w.clone(), b.clone()], false)
                .unwrap()
                .is_none()
        );
        let g1 = FusedConv {
            conv: Conv {
                group: 1,
                ..fop.conv.clone()
            },
            ..fop.clone()
        };
        assert!(
            plan(&g1, &[x.clone(), w.clone(), b.clone()], false)
                .unwrap()
                .is_none()
        );
        let x64 = Fact::known(DType::F64, &[1, 6, 6, 8]);
        assert!(
            plan(&fop, &[x64, w.clone(), b.clone()], false)
                .unwrap()
                .is_none()
        );
        // Missing or misshapen inputs.
        assert!(plan(&fop, &[x.clone(), w.clone()], false).is_err());
        let b4 = Fact::konst(Tensor::from_vec(&[4], lin(4, 0.1)).unwrap());
        assert!(plan(&fop, &[x.clone(), w.clone(), b4], false).is_err());
        let big = FusedConv {
            conv: Conv {
                padding: Padding::Valid,
                ..fop.conv.clone()
            },
            ..fop.clone()
        };
        let x2 = Fact::known(DType::F32, &[1, 2, 6, 8]);
        assert!(plan(&big, &[x2, w.clone(), b.clone()], false).is_err());
        let huge = Fact::known(DType::F32, &[1 << 40, 1 << 20, 6, 8]);
        assert!(plan(&fop, &[huge, w.clone(), b.clone()], false).is_err());
        // Run-time views of the wrong size.
        let k = plan(&fop, &[x, w, b], false).unwrap().unwrap();
        let short = [
            Tensor::from_vec(&[1, 5, 6, 8], lin(240, 0.1)).unwrap(),
            Tensor::from_vec(&[8, 1, 3, 3], lin(72, 0.1)).unwrap(),
            Tensor::from_vec(&[8], lin(8, 0.1)).unwrap(),
        ];
        assert!(run(&k, &short, &[1, 6, 6, 8]).is_err());
        assert!(run(&k, &short[..2], &[1, 6, 6, 8]).is_err());
    }
}
