//! Channels-last (NHWC) 2-D convolutions, as `passes::ChannelsLast` makes them: depthwise
//! convs go to `depthwise_nhwc`; every group-1 conv is a GEMM with the output pixels as rows
//! (`out[pixels x M] = col[pixels x K] * w[K x M]`, K = kh*kw*C in (ky, kx, c) order), so a
//! 1x1 stride-1 conv multiplies the input itself and other convs build `col` a block of
//! rows at a time (a block fits in L2 beside the GEMM's packing buffers). Bias (per
//! column), residual, activation and the post map all run in the GEMM's store. Convs with
//! few outputs, few input channels or little depth skip the GEMM ([`DirectNhwc`]).

use super::conv::{apply_act, gemm_act};
use crate::cpu::gemm as sg;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use crate::dtype::DType;
use crate::ir::Fact;
use crate::ops::conv::{AxisGeom, geometry};
use crate::ops::{Activation, FusedConv};
use crate::{Error, Result};
use rayon::prelude::*;

/// The kernel for a channels-last `FusedConv`.
pub(super) fn build(f: &FusedConv, inputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    if let Some(k) = super::depthwise_nhwc::build(f, inputs)? {
        return Ok(k);
    }
    let (g, b) = NhwcConv::new(f, inputs)?;
    if (g.c <= STEM_MAX_C && g.m <= STEM_MAX_M && !g.direct)
        || (g.m <= NARROW_MAX_M && g.k() * g.m.next_multiple_of(16) <= NARROW_MAX_W)
        || (g.k() <= SHALLOW_MAX_K && g.m <= SHALLOW_MAX_M)
    {
        return Ok(Box::new(DirectNhwc::new(g, &b)));
    }
    Ok(Box::new(GemmConv::new(g, &b)?))
}

/// Bytes of one im2col row block (a quarter of a Zen 4 L2: the GEMM packs its B panels and
/// an A block beside it).
const COL_BLOCK_BYTES: usize = 256 << 10;

/// A group-1 NHWC conv as its kernels see it: shapes, geometry, epilogue.
#[derive(Debug)]
struct NhwcConv {
    n: usize,
    c: usize,
    m: usize,
    h: AxisGeom,
    w: AxisGeom,
    act: Activation,
    residual: bool,
    post: Option<(f32, f32)>,
    /// 1x1, stride 1, no padding: the input is the A operand as it is.
    direct: bool,
    /// Per output column: the taps `kx in [lo, hi)` that read inside the input row, and
    /// the input column of tap 0 (may be negative).
    xspan: Vec<(u32, u32, isize)>,
}

/// A group-1 NHWC conv as one GEMM over the output pixels.
#[derive(Debug)]
struct GemmConv {
    g: NhwcConv,
    /// Weights as the `K x M` B operand, packed at plan time.
    packed: sg::PackedB,
    /// im2col path: output pixels per block.
    rows: usize,
    /// Threads the scratch was sized for.
    threads: usize,
}

impl NhwcConv {
    /// The conv, and its weights as the `K x M` matrix the kernels multiply.
    fn new(f: &FusedConv, inputs: &[Fact]) -> Result<(NhwcConv, Vec<f32>)> {
        let x = concrete(&inputs[0])?;
        let wf = &inputs[1];
        let ws = concrete(wf)?;
        if inputs[0].dtype != DType::F32 || x.len() != 4 || ws.len() != 4 || f.conv.group != 1 {
            return Err(Error::unsupported(format!(
                "channels-last FusedConv on {:?} {} with weights {ws:?}, group {} (f32 2-D, group 1 or depthwise only)",
                x, inputs[0].dtype, f.conv.group
            )));
        }
        let Some(wt) = wf.konst.as_ref() else {
            return Err(Error::unsupported(
                "channels-last FusedConv with weights that are not constant",
            ));
        };
        let (n, ih, iw, c) = (x[0], x[1], x[2], x[3]);
        let (m, kh, kw) = (ws[0], ws[2], ws[3]);
        if ws[1] != c {
            return Err(Error::shape(
                "FusedConv",
                format!("weights {ws:?} for {c} input channels"),
            ));
        }
        let geo = geometry(
            "FusedConv",
            &[ih, iw],
            &[kh, kw],
            &f.conv.strides,
            &f.conv.dilations,
            &f.conv.padding,
            false,
        )?;
        let (h, w) = (geo[0], geo[1]);
        // B[(ky*kw + kx)*C + c][m] = W[m][c][ky][kx].
        let wv = wt.as_slice::<f32>()?;
        let k = kh * kw * c;
        let mut b = vec![0f32; k * m];
        for mi in 0..m {
            for ci in 0..c {
                for ky in 0..kh {
                    for kx in 0..kw {
                        b[((ky * kw + kx) * c + ci) * m + mi] =
                            wv[((mi * c + ci) * kh + ky) * kw + kx];
                    }
                }
            }
        }
        let direct = kh == 1
            && kw == 1
            && h.stride == 1
            && w.stride == 1
            && h.pad_begin + h.pad_end + w.pad_begin + w.pad_end == 0;
        let xspan = (0..w.output)
            .map(|ox| {
                let ix0 = (ox * w.stride) as isize - w.pad_begin as isize;
                let d = w.dilation as isize;
                let lo = (((-ix0).max(0) + d - 1) / d).min(w.kernel as isize);
                let hi = ((w.input as isize - ix0 + d - 1) / d).clamp(0, w.kernel as isize);
                (lo as u32, hi.max(lo) as u32, ix0)
            })
            .collect();
        Ok((
            NhwcConv {
                n,
                c,
                m,
                h,
                w,
                act: f.act,
                residual: f.residual,
                post: f.post.map(|p| (p.scale, p.shift)),
                direct,
                xspan,
            },
            b,
        ))
    }

    fn k(&self) -> usize {
        self.h.kernel * self.w.kernel * self.c
    }
    fn pixels(&self) -> usize {
        self.n * self.h.output * self.w.output
    }
}

impl GemmConv {
    /// Packs `b`, the `K x M` weights.
    fn new(g: NhwcConv, b: &[f32]) -> Result<GemmConv> {
        let k = g.k();
        let packed = sg::PackedB::new(b, k, g.m, g.m, 1)?;
        let rows = (COL_BLOCK_BYTES / (4 * k.max(1))).clamp(sg::MR, 4096) / sg::MR * sg::MR;
        Ok(GemmConv {
            g,
            packed,
            rows,
            threads: super::pool_threads(),
        })
    }
    fn blocks(&self) -> usize {
        self.g.pixels().div_ceil(self.rows)
    }
    /// Tasks that each take whole im2col blocks (one-thread GEMMs); 1: blocks one after
    /// another, each GEMM split over the threads.
    fn tasks(&self, threads: usize) -> usize {
        let b = self.blocks();
        if b >= 2 * threads { threads.max(1) } else { 1 }
    }
    fn col_bytes(&self) -> usize {
        (self.rows * self.g.k() * 4).next_multiple_of(64)
    }
    /// Scratch of one task: its column block, then the GEMM's packing buffers.
    fn task_bytes(&self, gemm_threads: usize) -> usize {
        self.col_bytes()
            + sg::scratch_bytes(self.rows, self.g.m, self.g.k(), false, true, gemm_threads)
    }

    /// Rows `[p0, p1)` of the im2col matrix (pixel p = (n, oy, ox); columns (ky, kx, c)),
    /// padding taps zero. A run of taps inside the row is one copy: with dilation 1, the kx
    /// taps of one ky are `kw * C` contiguous floats.
    fn im2col(&self, x: &[f32], col: &mut [f32], p0: usize, p1: usize) {
        let (h, w, c) = (self.g.h, self.g.w, self.g.c);
        let (ow, oh) = (w.output, h.output);
        let k = self.g.k();
        let row_len = w.kernel * c;
        // Pixel coordinates advance incrementally: three divisions per pixel cost more than
        // an image stem's whole row copy.
        let (mut img, mut oy, mut ox) = (p0 / (oh * ow), (p0 / ow) % oh, p0 % ow);
        for row in col[..(p1 - p0) * k].chunks_exact_mut(k) {
            let (lo, hi, ix0) = self.g.xspan[ox];
            let (lo, hi) = (lo as usize, hi as usize);
            for ky in 0..h.kernel {
                let dst = &mut row[ky * row_len..][..row_len];
                let iy = (oy * h.stride + ky * h.dilation) as isize - h.pad_begin as isize;
                if iy < 0 || iy >= h.input as isize || lo >= hi {
                    dst.fill(0.0);
                    continue;
                }
                let src_row = &x[(img * h.input + iy as usize) * w.input * c..][..w.input * c];
                if lo > 0 {
                    dst[..lo * c].fill(0.0);
                }
                if hi < w.kernel {
                    dst[hi * c..].fill(0.0);
                }
                if w.dilation == 1 {
                    let ix = (ix0 + lo as isize) as usize;
                    copy(
                        &mut dst[lo * c..hi * c],
                        &src_row[ix * c..][..(hi - lo) * c],
                    );
                } else {
                    for kx in lo..hi {
                        let ix = (ix0 + (kx * w.dilation) as isize) as usize;
                        copy(&mut dst[kx * c..][..c], &src_row[ix * c..][..c]);
                    }
                }
            }
            ox += 1;
            if ox == ow {
                ox = 0;
                oy += 1;
                if oy == oh {
                    oy = 0;
                    img += 1;
                }
            }
        }
    }

    fn run_f32(
        &self,
        ctx: &mut KernelCtx,
        x: &[f32],
        bias: &[f32],
        res: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<()> {
        let (m, k, pixels) = (self.g.m, self.g.k(), self.g.pixels());
        let act = self.g.act;
        let map = move |o: &mut [f32]| apply_act(act, o);
        let map: &(dyn Fn(&mut [f32]) + Sync) = &map;
        let ep = sg::Epilogue {
            bias: sg::Bias::Col(bias),
            act: gemm_act(act).unwrap_or(sg::Activation::Map(map)),
            post: self.g.post,
            ..sg::Epilogue::default()
        };
        let threads = ctx.threads.clamp(1, self.threads.max(1));
        if self.g.direct {
            let ep = sg::Epilogue {
                residual: res.map(|r| (r, m)),
                ..ep
            };
            // SAFETY: x is the pixels x C input, out the pixels x M output (checked by the
            // plan against the facts), disjoint.
            return unsafe {
                sg::sgemm(
                    pixels,
                    m,
                    k,
                    sg::Operand::Strided(sg::Strided {
                        ptr: x.as_ptr(),
                        rs: k as isize,
                        cs: 1,
                    }),
                    sg::Operand::Packed(&self.packed),
                    out.as_mut_ptr(),
                    m as isize,
                    &ep,
                    ctx.scratch,
                    threads,
                )
            };
        }
        let nblocks = self.blocks();
        let tasks = self.tasks(threads);
        let gemm_threads = if tasks > 1 { 1 } else { threads };
        let per = self.task_bytes(gemm_threads);
        let dst = SendPtr(out.as_mut_ptr());
        let task = |ti: usize, buf: &mut [u8]| -> Result<()> {
            let (cs, gs) = buf.split_at_mut(self.col_bytes());
            let col = crate::tensor::bytes_as_mut::<f32>(cs);
            for bi in (nblocks * ti / tasks)..(nblocks * (ti + 1) / tasks) {
                let (p0, p1) = (bi * self.rows, ((bi + 1) * self.rows).min(pixels));
                self.im2col(x, col, p0, p1);
                let ep = sg::Epilogue {
                    residual: res.map(|r| (&r[p0 * m..], m)),
                    ..ep
                };
                // SAFETY: col holds the (p1-p0) x K block; the destination is rows
                // [p0, p1) of the pixels x M output, which no other task writes.
                unsafe {
                    sg::sgemm(
                        p1 - p0,
                        m,
                        k,
                        sg::Operand::Strided(sg::Strided {
                            ptr: col.as_ptr(),
                            rs: k as isize,
                            cs: 1,
                        }),
                        sg::Operand::Packed(&self.packed),
                        dst.get().add(p0 * m),
                        m as isize,
                        &ep,
                        gs,
                        gemm_threads,
                    )?
                };
            }
            Ok(())
        };
        let scratch = &mut ctx.scratch[..per * tasks];
        if tasks <= 1 {
            task(0, scratch)
        } else {
            scratch
                .par_chunks_mut(per)
                .enumerate()
                .try_for_each(|(ti, buf)| task(ti, buf))
        }
    }
}

/// Convs with few outputs or few taps, straight from the NHWC input, no im2col, no
/// packing: per output pixel, `M` outputs in `M/16` vectors accumulate `x[tap] * w[tap]`
/// over all `kh*kw*C` taps (broadcast input, weight vectors from L1), 4 pixels at a time.
/// Taken by image stems (3x3/2 from RGB: im2col spent more on building 27-float rows than
/// the GEMM on multiplying them), convs to at most 32 channels (the GEMM computes 32-wide
/// tiles and packs its input) and shallow convs (depth <= 32, up to 96 outputs).
/// Bias starts the sums; residual, activation and post run in registers before the store
/// (exp activations and NaN clip bounds: over each finished output row).
#[derive(Debug)]
struct DirectNhwc {
    g: NhwcConv,
    /// `[tap (ky, kx, c)][M rounded up to 16]`.
    w: Vec<f32>,
    mp: usize,
    /// Output columns `[lo, hi)` whose taps all read inside the input row.
    interior: (usize, usize),
    avx512: bool,
}

/// Input channels up to which [`DirectNhwc`] runs a conv.
const STEM_MAX_C: usize = 4;
/// Output channels up to which [`DirectNhwc`] runs a conv (4 vectors per pixel).
const STEM_MAX_M: usize = 64;
/// Any conv with at most this many outputs also runs direct (MobileNetV2's projections to
/// 16, 24 and 32 channels): the GEMM would compute 32-column tiles and pack its input.
const NARROW_MAX_M: usize = 32;
/// ... when its weights (floats, outputs rounded up to 16) stay in L1.
const NARROW_MAX_W: usize = 8192;
/// And convs this shallow (MobileNetV2's first expand, 16 -> 96 over 112x112), up to
/// [`SHALLOW_MAX_M`] outputs: a GEMM tile does 16-32 depth steps between stores.
const SHALLOW_MAX_K: usize = 32;
const SHALLOW_MAX_M: usize = 96;

impl DirectNhwc {
    /// `b`: the weights as `[tap][M]`.
    fn new(g: NhwcConv, b: &[f32]) -> DirectNhwc {
        let mp = g.m.next_multiple_of(16);
        let taps = g.k();
        let mut w = vec![0f32; taps * mp];
        for t in 0..taps {
            w[t * mp..][..g.m].copy_from_slice(&b[t * g.m..][..g.m]);
        }
        let (mut lo, mut hi) = (g.w.output, 0);
        for (ox, &(l, h, _)) in g.xspan.iter().enumerate() {
            if l == 0 && h as usize == g.w.kernel {
                lo = lo.min(ox);
                hi = hi.max(ox + 1);
            }
        }
        DirectNhwc {
            g,
            w,
            mp,
            interior: (lo, hi),
            avx512: avx512(),
        }
    }

    /// One output pixel with every tap checked (edges, and CPUs without AVX-512).
    fn pixel(&self, x: &[f32], bias: &[f32], img: usize, oy: usize, ox: usize, o: &mut [f32]) {
        let (h, w, c, m) = (self.g.h, self.g.w, self.g.c, self.g.m);
        o.copy_from_slice(&bias[..m]);
        for ky in 0..h.kernel {
            let iy = (oy * h.stride + ky * h.dilation) as isize - h.pad_begin as isize;
            if iy < 0 || iy >= h.input as isize {
                continue;
            }
            for kx in 0..w.kernel {
                let ix = (ox * w.stride + kx * w.dilation) as isize - w.pad_begin as isize;
                if ix < 0 || ix >= w.input as isize {
                    continue;
                }
                let src = ((img * h.input + iy as usize) * w.input + ix as usize) * c;
                for ci in 0..c {
                    let v = x[src + ci];
                    let wt = &self.w[((ky * w.kernel + kx) * c + ci) * self.mp..][..m];
                    for (a, &k) in o.iter_mut().zip(wt) {
                        *a += v * k;
                    }
                }
            }
        }
    }

    /// Whether the AVX-512 tiles apply the epilogue in registers (else `run` maps each
    /// finished row: exp activations, NaN clip bounds, CPUs without AVX-512).
    fn epilogue_in_tile(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            return super::conv::avx512::act_in_tile(self.g.act);
        }
        false
    }

    /// Residual, activation and post on finished outputs `o` (`res`: the same outputs of
    /// the residual).
    fn epilogue(&self, res: Option<&[f32]>, o: &mut [f32]) {
        if let Some(res) = res {
            for (v, &q) in o.iter_mut().zip(res) {
                *v += q;
            }
        }
        apply_act(self.g.act, o);
        if let Some((scale, shift)) = self.g.post {
            super::conv::apply_post(crate::ops::PostAffine { scale, shift }, o);
        }
    }

    /// Output row `oy` of image `img` (`o`: its `ow * M` outputs; `res`: the residual's),
    /// the epilogue included.
    fn row(
        &self,
        x: &[f32],
        bias: &[f32],
        (img, oy): (usize, usize),
        res: Option<&[f32]>,
        o: &mut [f32],
    ) {
        let (w, m) = (self.g.w, self.g.m);
        let (lo, hi) = self.interior;
        let edge = |ox: usize, o: &mut [f32]| {
            self.pixel(x, bias, img, oy, ox, &mut o[ox * m..][..m]);
            if self.epilogue_in_tile() {
                self.epilogue(res.map(|r| &r[ox * m..][..m]), &mut o[ox * m..][..m]);
            }
        };
        #[cfg(target_arch = "x86_64")]
        if self.avx512 && lo < hi {
            for ox in 0..lo {
                edge(ox, o);
            }
            // SAFETY: AVX-512F is present (`avx512`); columns [lo, hi) read inside the row.
            let done = unsafe {
                match self.mp / 16 {
                    1 => self.row_avx512::<1>(x, bias, img, oy, (lo, hi), res, o),
                    2 => self.row_avx512::<2>(x, bias, img, oy, (lo, hi), res, o),
                    3 => self.row_avx512::<3>(x, bias, img, oy, (lo, hi), res, o),
                    4 => self.row_avx512::<4>(x, bias, img, oy, (lo, hi), res, o),
                    5 => self.row_avx512::<5>(x, bias, img, oy, (lo, hi), res, o),
                    _ => self.row_avx512::<6>(x, bias, img, oy, (lo, hi), res, o),
                }
            };
            for ox in done..w.output {
                edge(ox, o);
            }
        } else {
            for ox in 0..w.output {
                edge(ox, o);
            }
        }
        if !self.epilogue_in_tile() {
            self.epilogue(res, o);
        }
    }

    /// Columns `[lo, lo + 4k)` of the row (the largest such range inside `[lo, hi)`), in
    /// blocks of 4 pixels x `NV` vectors; returns where it stopped.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row_avx512<const NV: usize>(
        &self,
        x: &[f32],
        bias: &[f32],
        img: usize,
        oy: usize,
        (lo, hi): (usize, usize),
        res: Option<&[f32]>,
        o: &mut [f32],
    ) -> usize {
        use std::arch::x86_64::*;
        /// The epilogue in registers (residual row, then activation, then post).
        #[derive(Clone, Copy)]
        struct Epi<'a> {
            res: Option<&'a [f32]>,
            post: Option<(__m512, __m512)>,
        }
        let epi = self.epilogue_in_tile().then(|| Epi {
            res,
            post: self
                .g
                .post
                .map(|(s, t)| (_mm512_set1_ps(s), _mm512_set1_ps(t))),
        });
        const P: usize = 4;
        let (h, w, c, m) = (self.g.h, self.g.w, self.g.c, self.g.m);
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, b) in bv.iter_mut().enumerate() {
            let n = m.saturating_sub(v * 16).min(16);
            // SAFETY: n lanes of bias from v*16 are in bounds.
            *b = unsafe {
                _mm512_maskz_loadu_ps(super::conv::avx512::mask(n), bias.as_ptr().add(v * 16))
            };
        }
        let mut ox = lo;
        while ox + P <= hi {
            let mut acc = [[_mm512_setzero_ps(); NV]; P];
            for a in acc.iter_mut() {
                *a = bv;
            }
            for ky in 0..h.kernel {
                let iy = (oy * h.stride + ky * h.dilation) as isize - h.pad_begin as isize;
                if iy < 0 || iy >= h.input as isize {
                    continue;
                }
                let row = (img * h.input + iy as usize) * w.input;
                for kx in 0..w.kernel {
                    let ix0 = ox * w.stride + kx * w.dilation - w.pad_begin;
                    let base = (row + ix0) * c;
                    let wt = ((ky * w.kernel + kx) * c) * self.mp;
                    for ci in 0..c {
                        // SAFETY: interior columns: every tap is inside the input; weights
                        // hold taps * mp floats.
                        unsafe {
                            let mut wv = [_mm512_setzero_ps(); NV];
                            for (v, wv) in wv.iter_mut().enumerate() {
                                *wv = _mm512_loadu_ps(
                                    self.w.as_ptr().add(wt + ci * self.mp + v * 16),
                                );
                            }
                            for (p, a) in acc.iter_mut().enumerate() {
                                let xv =
                                    _mm512_set1_ps(*x.get_unchecked(base + p * w.stride * c + ci));
                                for v in 0..NV {
                                    a[v] = _mm512_fmadd_ps(xv, wv[v], a[v]);
                                }
                            }
                        }
                    }
                }
            }
            for (p, a) in acc.iter().enumerate() {
                let at = (ox + p) * m;
                let dst = &mut o[at..][..m];
                for (v, &a) in a.iter().enumerate() {
                    let n = m.saturating_sub(v * 16).min(16);
                    let k = super::conv::avx512::mask(n);
                    let mut a = a;
                    if let Some(e) = epi {
                        // SAFETY: n lanes from v*16 lie inside this pixel's m outputs (the
                        // residual row has the output's layout).
                        unsafe {
                            if let Some(r) = e.res {
                                a = _mm512_add_ps(
                                    a,
                                    _mm512_maskz_loadu_ps(k, r.as_ptr().add(at + v * 16)),
                                );
                            }
                            a = super::conv::avx512::vec_act(self.g.act, a).unwrap_or(a);
                            if let Some((scale, shift)) = e.post {
                                a = _mm512_add_ps(_mm512_mul_ps(a, scale), shift);
                            }
                        }
                    }
                    // SAFETY: as above.
                    unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(v * 16), k, a) };
                }
            }
            ox += P;
        }
        ox
    }
}

#[cfg(test)]
thread_local! {
    /// Tests force the portable stem path with this (read when a kernel is built).
    static FORCE_PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    #[cfg(test)]
    if FORCE_PORTABLE.with(|f| f.get()) {
        return false;
    }
    is_x86_feature_detected!("avx512f")
}
#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> bool {
    false
}

impl Kernel for DirectNhwc {
    fn work(&self) -> Option<usize> {
        Some(self.g.pixels() * self.g.m * self.g.k())
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let x = inputs[0].as_slice::<f32>()?;
        let bias = inputs[2].as_slice::<f32>()?;
        let res = if self.g.residual {
            Some(inputs[3].as_slice::<f32>()?)
        } else {
            None
        };
        let out = outputs[0].as_slice_mut::<f32>()?;
        let (oh, row_len) = (self.g.h.output, self.g.w.output * self.g.m);
        let one = |r: usize, o: &mut [f32]| {
            let res = res.map(|res| &res[r * row_len..][..row_len]);
            self.row(x, bias, (r / oh, r % oh), res, o);
        };
        let rows = out.len() / row_len.max(1);
        if ctx.threads > 1 && rows > 1 {
            out.par_chunks_mut(row_len)
                .enumerate()
                .for_each(|(r, o)| one(r, o));
        } else {
            for (r, o) in out.chunks_mut(row_len).enumerate().take(rows) {
                one(r, o);
            }
        }
        Ok(())
    }
}

/// `dst.copy_from_slice(src)`, without a memcpy call for short runs: an image stem's
/// im2col row is three runs of 9 floats (3x3 taps of 3 channels), and the call cost more
/// than the copy.
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    if dst.len() <= 16 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// The output pointer shared by tasks that write disjoint rows.
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint row ranges (see `run_f32`).
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

impl Kernel for GemmConv {
    fn scratch_bytes(&self) -> usize {
        let t = self.threads.max(1);
        if self.g.direct {
            return sg::scratch_bytes(self.g.pixels(), self.g.m, self.g.k(), false, true, t);
        }
        let tasks = self.tasks(t);
        let gemm_threads = if tasks > 1 { 1 } else { t };
        tasks * self.task_bytes(gemm_threads)
    }
    fn work(&self) -> Option<usize> {
        Some(self.g.pixels() * self.g.m * self.g.k())
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let res = if self.g.residual {
            Some(inputs[3].as_slice::<f32>()?)
        } else {
            None
        };
        self.run_f32(
            ctx,
            inputs[0].as_slice()?,
            inputs[2].as_slice()?,
            res,
            outputs[0].as_slice_mut()?,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::eval_op;
    use crate::ops::{Activation, Conv, FusedConv, Padding, PostAffine};
    use crate::tensor::Tensor;

    fn lin(n: usize, s: f32, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 13 % 17) as f32 - 8.0) * s)
            .collect()
    }

    fn permute(t: &Tensor, perm: [usize; 4]) -> Tensor {
        eval_op(
            &crate::ops::Transpose {
                perm: perm.to_vec(),
            },
            std::slice::from_ref(t),
        )
        .unwrap()
        .remove(0)
    }

    /// The channels-last conv equals the NCHW one on transposed data, for every path
    /// (direct 1x1, im2col with and without blocks, strided, dilated, padded).
    #[test]
    fn matches_the_nchw_conv() {
        /// (NCHW input, weights, stride, dilation, padding)
        type Case = (&'static [usize], &'static [usize], usize, usize, Padding);
        let cases: &[Case] = &[
            // (NCHW input, weights, stride, dilation, padding)
            (&[1, 16, 9, 11], &[24, 16, 1, 1], 1, 1, Padding::Valid),
            (&[2, 5, 7, 6], &[7, 5, 1, 1], 2, 1, Padding::Valid),
            (
                &[1, 3, 33, 35],
                &[32, 3, 3, 3],
                2,
                1,
                Padding::Explicit(vec![1, 1, 1, 1]),
            ),
            (&[1, 3, 20, 20], &[8, 3, 3, 3], 2, 1, Padding::SameUpper),
            (
                &[1, 6, 10, 9],
                &[5, 6, 3, 2],
                1,
                2,
                Padding::Explicit(vec![2, 0, 1, 3]),
            ),
            (
                &[1, 64, 40, 40],
                &[40, 64, 3, 3],
                1,
                1,
                Padding::Explicit(vec![1, 1, 1, 1]),
            ),
            (
                &[1, 4, 2, 2],
                &[3, 4, 5, 5],
                1,
                1,
                Padding::Explicit(vec![2, 2, 2, 2]),
            ),
            // The GEMM on the input itself (1x1, more than 32 outputs, deep).
            (&[1, 48, 5, 6], &[40, 48, 1, 1], 1, 1, Padding::Valid),
            // Shallow convs run direct: 6 and 5 vectors of outputs.
            (&[1, 16, 9, 10], &[96, 16, 1, 1], 1, 1, Padding::Valid),
            (
                &[1, 8, 6, 7],
                &[72, 8, 2, 2],
                1,
                1,
                Padding::Explicit(vec![0, 1, 1, 0]),
            ),
            // Stems (the direct path): 4 vectors of outputs, 3 with a masked tail, dilation,
            // two images.
            (
                &[1, 3, 17, 23],
                &[64, 3, 3, 3],
                2,
                1,
                Padding::Explicit(vec![0, 1, 1, 0]),
            ),
            (
                &[2, 2, 12, 14],
                &[40, 2, 3, 3],
                1,
                2,
                Padding::Explicit(vec![2, 2, 2, 2]),
            ),
        ];
        for ((xs, ws, s, d, pad), portable) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
            for (act, residual, post) in [
                (Activation::Identity, false, None),
                (Activation::Clip { min: 0.0, max: 6.0 }, true, None),
                (
                    Activation::Swish,
                    false,
                    Some(PostAffine {
                        scale: 0.5,
                        shift: 0.25,
                    }),
                ),
                // In the direct path's registers: residual, activation, post.
                (
                    Activation::HardSwish,
                    true,
                    Some(PostAffine {
                        scale: -1.5,
                        shift: 0.125,
                    }),
                ),
            ] {
                let mut op = FusedConv {
                    conv: Conv {
                        strides: vec![*s, *s],
                        dilations: vec![*d, *d],
                        padding: pad.clone(),
                        group: 1,
                    },
                    act,
                    residual: false,
                    post,
                    channels_last: false,
                };
                let x = Tensor::from_vec(xs, lin(xs.iter().product(), 0.1, 1)).unwrap();
                let w = Tensor::from_vec(ws, lin(ws.iter().product(), 0.05, 2)).unwrap();
                let b = Tensor::from_vec(&[ws[0]], lin(ws[0], 0.3, 3)).unwrap();
                let plain = eval_op(&op, &[x.clone(), w.clone(), b.clone()])
                    .unwrap()
                    .remove(0);
                let mut ins = vec![x, w, b];
                if residual {
                    op.residual = true;
                    let r = Tensor::from_vec(plain.shape(), lin(plain.len(), 0.2, 4)).unwrap();
                    ins.push(r);
                }
                let want = eval_op(&op, &ins).unwrap().remove(0);
                ins[0] = permute(&ins[0], [0, 2, 3, 1]);
                if residual {
                    ins[3] = permute(&ins[3], [0, 2, 3, 1]);
                }
                op.channels_last = true;
                for threads in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    // Set on the pool's thread, where the kernel is built.
                    let got = pool
                        .install(|| {
                            super::FORCE_PORTABLE.with(|f| f.set(portable));
                            eval_op(&op, &ins)
                        })
                        .unwrap()
                        .remove(0);
                    let got = permute(&got, [0, 3, 1, 2]);
                    assert_eq!(got.shape(), want.shape());
                    let (g, w) = (
                        got.as_slice::<f32>().unwrap(),
                        want.as_slice::<f32>().unwrap(),
                    );
                    // Sums run in another order: bound the error by the output's scale.
                    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
                    for (i, (a, b)) in g.iter().zip(w).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale,
                            "{xs:?} {ws:?} s{s} d{d} {pad:?} {act:?} res {residual} t{threads} portable {portable}: [{i}] {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn non_constant_weights_and_groups_are_refused() {
        use crate::ir::Fact;
        let op = FusedConv {
            conv: Conv {
                strides: vec![1, 1],
                dilations: vec![1, 1],
                padding: Padding::Valid,
                group: 1,
            },
            act: Activation::Identity,
            residual: false,
            post: None,
            channels_last: true,
        };
        let f = |d: &[usize]| Fact::known(crate::dtype::DType::F32, d);
        let e = super::build(&op, &[f(&[1, 4, 4, 2]), f(&[3, 2, 1, 1]), f(&[3])]).unwrap_err();
        assert!(e.to_string().contains("not constant"), "{e}");
        let grouped = FusedConv {
            conv: Conv {
                group: 2,
                ..op.conv.clone()
            },
            ..op
        };
        let w = Fact::konst(Tensor::from_vec(&[4, 1, 1, 1], vec![1f32; 4]).unwrap());
        assert!(super::build(&grouped, &[f(&[1, 4, 4, 2]), w, f(&[4])]).is_err());
    }
}
