//! Direct f32 convolution (AVX-512) for convs with very few input channels, like an image
//! model's stem (3 -> 32 channels, 3x3 stride 2 on 224x224). As im2col + GEMM such a conv
//! has a depth of only 27: the GEMM's tiles spend more time loading and storing than
//! multiplying, and the im2col buffer is 9x the input. Here each input channel is copied
//! once into zero-padded stride-phase blocks (`depthwise::Blocks`), so every tap of every
//! output is a fixed offset from the output's flat index, and a tile of 4 output channels
//! x up to 64 columns of one output row accumulates in 16 registers over all
//! `c * kh * kw` taps (each input vector loaded once for the 4 channels, each weight
//! broadcast once for the 4 vectors), then gets its epilogue (bias, residual, activation,
//! as `FusedConv` defines them) before one masked store.
//!
//! Each output sums `bias`, then the taps in the order ci, ki, kj; the im2col GEMM sums
//! the same products in its own order, so the two differ by rounding only.

use super::depthwise::Blocks;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use crate::dtype::DType;
use crate::ir::Fact;
use crate::ops::conv::{AxisGeom, geometry};
use crate::ops::{Activation, Conv};
use crate::{Error, Result};
use rayon::prelude::*;

/// Output channels per tile.
const MT: usize = 4;
/// Vectors (16 columns each) per tile.
const VT: usize = 4;
/// Input channels up to which this kernel is chosen.
const MAX_C: usize = 4;

/// The kernel. Built only on CPUs with AVX-512F, for constant f32 weights.
#[derive(Debug)]
pub(super) struct DirectConv {
    n: usize,
    c: usize,
    m: usize,
    h: AxisGeom,
    w: AxisGeom,
    b: Blocks,
    /// Elements per input channel's blocks (blocks + read slack).
    chan: usize,
    /// Offset of tap (ci, ki, kj) from an output's flat index.
    offs: Vec<usize>,
    /// Weights by channel tile: `[m / MT][c * kh * kw][MT]`, zero past `m`.
    wp: Vec<f32>,
    act: Activation,
    residual: bool,
}

/// The kernel for `c` when it is the kind this file is for: group 1, at most `MAX_C`
/// input channels, a kernel bigger than 1x1, output rows at least 16 wide, constant f32
/// weights, 2-D, and a CPU with AVX-512F.
pub(super) fn build(
    c: &Conv,
    inputs: &[Fact],
    act: Activation,
    residual: bool,
) -> Result<Option<DirectConv>> {
    #[cfg(target_arch = "x86_64")]
    if !is_x86_feature_detected!("avx512f") {
        return Ok(None);
    }
    #[cfg(not(target_arch = "x86_64"))]
    return Ok(None);
    let (Some(xf), Some(wf)) = (inputs.first(), inputs.get(1)) else {
        return Ok(None);
    };
    let Some(wt) = wf.konst.as_ref() else {
        return Ok(None);
    };
    if xf.dtype != DType::F32 || wf.dtype != DType::F32 || c.group.max(1) != 1 {
        return Ok(None);
    }
    let x = concrete(xf)?;
    let ws = concrete(wf)?;
    if x.len() != 4 || ws.len() != 4 || ws[1] != x[1] || x[1] == 0 || x[1] > MAX_C {
        return Ok(None);
    }
    let geo = geometry(
        "Conv",
        &x[2..],
        &ws[2..],
        &c.strides,
        &c.dilations,
        &c.padding,
        false,
    )?;
    let [h, w] = [geo[0], geo[1]];
    if h.kernel * w.kernel < 2 || w.output < 16 || h.output == 0 || ws[0] == 0 {
        return Ok(None);
    }
    if h.stride == 0 || w.stride == 0 || h.dilation == 0 || w.dilation == 0 {
        return Ok(None);
    }
    let (cc, m) = (x[1], ws[0]);
    let kk = h.kernel * w.kernel;
    let b = Blocks::new(h, w);
    // Masked loads read only valid columns, which lie inside the blocks: no slack needed
    // but a cache line between channels.
    let chan = (b.len() + 16).next_multiple_of(16);
    let offs = (0..cc)
        .flat_map(|ci| {
            (0..h.kernel).flat_map(move |ki| (0..w.kernel).map(move |kj| ci * chan + b.off(ki, kj)))
        })
        .collect();
    let wv = wt.as_slice::<f32>()?;
    if wv.len() != m * cc * kk {
        return Err(Error::invalid(format!(
            "Conv weights hold {} values, shape {ws:?} says {}",
            wv.len(),
            m * cc * kk
        )));
    }
    let tiles = m.div_ceil(MT);
    let mut wp = vec![0f32; tiles * cc * kk * MT];
    for mo in 0..m {
        for q in 0..cc * kk {
            wp[((mo / MT) * cc * kk + q) * MT + mo % MT] = wv[mo * cc * kk + q];
        }
    }
    Ok(Some(DirectConv {
        n: x[0],
        c: cc,
        m,
        h,
        w,
        b,
        chan,
        offs,
        wp,
        act,
        residual,
    }))
}

impl DirectConv {
    fn out_plane(&self) -> usize {
        self.h.output * self.w.output
    }
    fn run_f32(
        &self,
        threads: usize,
        scratch: &mut [f32],
        x: &[f32],
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<()> {
        let (c, m, op) = (self.c, self.m, self.out_plane());
        let ip = self.in_plane();
        let kk = self.offs.len() / c;
        let tiles = m.div_ceil(MT);
        // Zero bias for the padded channels of the last tile.
        let bias_of = |mo: usize| bias.map_or(0.0, |b| b.get(mo).copied().unwrap_or(0.0));
        for bi in 0..self.n {
            let xb = &x[bi * c * ip..][..c * ip];
            let buf = &mut scratch[..c * self.chan];
            for (ci, cb) in buf.chunks_exact_mut(self.chan).enumerate() {
                self.b.fill(&xb[ci * ip..][..ip], cb);
            }
            let buf = &*buf;
            let ob = &mut out[bi * m * op..][..m * op];
            let rb = res.map(|r| &r[bi * m * op..][..m * op]);
            // Channel tiles split over the threads: each task owns whole output planes.
            let work = op * c * kk * MT;
            let tasks = if threads > 1 && tiles > 1 && tiles * work >= 1 << 18 {
                tiles.min(threads * 2)
            } else {
                1
            };
            let per = tiles.div_ceil(tasks) * MT * op;
            let in_tile = super::conv::avx512::act_in_tile(self.act);
            let run = |t: usize, o: &mut [f32]| {
                let t0 = t * per / (MT * op);
                for (k, o) in o.chunks_mut(MT * op).enumerate() {
                    let tile = t0 + k;
                    let m0 = tile * MT;
                    let bv: [f32; MT] = std::array::from_fn(|i| bias_of(m0 + i));
                    let wt = &self.wp[tile * c * kk * MT..][..c * kk * MT];
                    let r = rb.map(|r| &r[m0 * op..][..o.len()]);
                    // SAFETY: `build` ran only on a CPU with AVX-512F.
                    unsafe { avx512::tile_planes(self, buf, wt, bv, r, o) };
                    // Activations the tile leaves out (exp, NaN bounds): after the residual.
                    if !in_tile {
                        super::conv::apply_act(self.act, o);
                    }
                }
            };
            if tasks <= 1 {
                run(0, ob);
            } else {
                ob.par_chunks_mut(per)
                    .enumerate()
                    .for_each(|(t, o)| run(t, o));
            }
        }
        Ok(())
    }
    fn in_plane(&self) -> usize {
        self.h.input * self.w.input
    }
}

impl Kernel for DirectConv {
    fn scratch_bytes(&self) -> usize {
        (self.c * self.chan * 4).next_multiple_of(64)
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let x = inputs[0].as_slice::<f32>()?;
        let bias = match inputs.get(2) {
            Some(b) => Some(b.as_slice::<f32>()?),
            None => None,
        };
        let res = if self.residual {
            Some(inputs[3].as_slice::<f32>()?)
        } else {
            None
        };
        let out = outputs[0].as_slice_mut::<f32>()?;
        let scratch = crate::tensor::bytes_as_mut::<f32>(ctx.scratch);
        let op = self.out_plane();
        let ip = self.in_plane();
        if x.len() < self.n * self.c * ip
            || out.len() < self.n * self.m * op
            || res.is_some_and(|r| r.len() < out.len())
            || bias.is_some_and(|b| b.len() < self.m)
            || scratch.len() < self.c * self.chan
        {
            return Err(Error::invalid("direct Conv: tensors smaller than planned"));
        }
        self.run_f32(ctx.threads, scratch, x, bias, res, out)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    //! Never called: the kernel is only built where AVX-512 exists.
    pub(super) unsafe fn tile_planes(
        _: &super::DirectConv,
        _: &[f32],
        _: &[f32],
        _: [f32; super::MT],
        _: Option<&[f32]>,
        _: &mut [f32],
    ) {
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{DirectConv, MT, VT};
    use crate::cpu::kernels::conv::avx512::{mask, vec_act};
    use std::arch::x86_64::*;

    /// The planes of one channel tile (`o`: up to MT output planes; fewer for the last
    /// tile), with the residual `res` of the same planes.
    #[target_feature(enable = "avx512f")]
    pub(super) fn tile_planes(
        k: &DirectConv,
        buf: &[f32],
        wt: &[f32],
        bias: [f32; MT],
        res: Option<&[f32]>,
        o: &mut [f32],
    ) {
        let (oh, ow, pl) = (k.h.output, k.w.output, k.b.pl);
        let op = oh * ow;
        let mc = o.len() / op;
        let q = k.offs.len();
        let max_off = k.offs.iter().copied().max().unwrap_or(0);
        // Valid lanes read at most flat index (oh - 1) * pl + ow - 1 plus a tap offset.
        assert!(buf.len() > (oh - 1) * pl + ow - 1 + max_off);
        assert!(wt.len() >= q * MT && (1..=MT).contains(&mc) && o.len() == mc * op);
        assert!(res.is_none_or(|r| r.len() >= o.len()));
        for oy in 0..oh {
            let mut ox = 0;
            while ox < ow {
                let n = (ow - ox).min(16 * VT);
                // SAFETY: asserted above; loads and stores are masked to the n columns.
                unsafe {
                    match n.div_ceil(16) {
                        4 => row_tile::<4>(k, buf, wt, bias, res, o, mc, oy, ox, n),
                        3 => row_tile::<3>(k, buf, wt, bias, res, o, mc, oy, ox, n),
                        2 => row_tile::<2>(k, buf, wt, bias, res, o, mc, oy, ox, n),
                        _ => row_tile::<1>(k, buf, wt, bias, res, o, mc, oy, ox, n),
                    }
                }
                ox += n;
            }
        }
    }

    /// MT channels x V vectors of output row `oy` from column `ox` (`n` valid columns).
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row_tile<const V: usize>(
        k: &DirectConv,
        buf: &[f32],
        wt: &[f32],
        bias: [f32; MT],
        res: Option<&[f32]>,
        o: &mut [f32],
        mc: usize,
        oy: usize,
        ox: usize,
        n: usize,
    ) {
        let masks: [__mmask16; V] = std::array::from_fn(|v| mask(n.saturating_sub(16 * v)));
        let mut acc: [[__m512; V]; MT] = std::array::from_fn(|i| [_mm512_set1_ps(bias[i]); V]);
        let f = oy * k.b.pl + ox;
        let bp = buf.as_ptr();
        let wp = wt.as_ptr();
        for (qi, &off) in k.offs.iter().enumerate() {
            // SAFETY: valid lanes inside buf (caller's asserts); qi * MT + MT <= wt.len().
            let xv: [__m512; V] = std::array::from_fn(|v| unsafe {
                _mm512_maskz_loadu_ps(masks[v], bp.add(f + 16 * v + off))
            });
            for (i, a) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(unsafe { *wp.add(qi * MT + i) });
                for v in 0..V {
                    a[v] = _mm512_fmadd_ps(xv[v], w, a[v]);
                }
            }
        }
        let (op, ow) = (k.h.output * k.w.output, k.w.output);
        for (i, a) in acc.iter().enumerate().take(mc) {
            for v in 0..V {
                let idx = i * op + oy * ow + ox + 16 * v;
                let mut x = a[v];
                if let Some(r) = res {
                    // SAFETY: valid lanes inside plane i of the residual.
                    x = _mm512_add_ps(x, unsafe {
                        _mm512_maskz_loadu_ps(masks[v], r.as_ptr().add(idx))
                    });
                }
                // `None` (exp, NaN bounds): the caller applies the activation.
                let x = vec_act(k.act, x).unwrap_or(x);
                // SAFETY: valid lanes inside plane i of o.
                unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr().add(idx), masks[v], x) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::cpu::registry::kernels;
    use crate::ops::{FusedConv, Padding};
    use crate::tensor::Tensor;

    fn lin(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) * s).collect()
    }

    /// f64 reference conv (group 1) with pads [top, left, bottom, right].
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        b: &[f32],
        s: [usize; 2],
        d: [usize; 2],
        p: [usize; 4],
    ) -> (Vec<f64>, [usize; 4]) {
        let [n, c, h, wd] = xs;
        let [m, _, kh, kw] = ws;
        let oh = (h + p[0] + p[2] - ((kh - 1) * d[0] + 1)) / s[0] + 1;
        let ow = (wd + p[1] + p[3] - ((kw - 1) * d[1] + 1)) / s[1] + 1;
        let mut out = vec![0f64; n * m * oh * ow];
        for bi in 0..n {
            for mo in 0..m {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut a = b[mo] as f64;
                        for ci in 0..c {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let iy = (oy * s[0] + ki * d[0]) as isize - p[0] as isize;
                                    let ix = (ox * s[1] + kj * d[1]) as isize - p[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        a += x[((bi * c + ci) * h + iy as usize) * wd + ix as usize]
                                            as f64
                                            * w[((mo * c + ci) * kh + ki) * kw + kj] as f64;
                                    }
                                }
                            }
                        }
                        out[((bi * m + mo) * oh + oy) * ow + ox] = a;
                    }
                }
            }
        }
        (out, [n, m, oh, ow])
    }

    fn has_avx512() -> bool {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// (x shape, m, kernel, strides, dilations, pads)
    type Case = (
        [usize; 4],
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 4],
    );

    /// Stems and other few-channel convs (strides, dilations, one-sided padding, channel
    /// counts that leave a partial tile, rows with a partial last vector), with residual
    /// and Relu6, match the f64 loop; the builder picks this kernel for them.
    #[test]
    fn matches_f64_reference() {
        if !has_avx512() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        // (xs, m, k, strides, dilations, pads)
        let cases: [Case; 6] = [
            ([1, 3, 36, 40], 32, [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]),
            ([2, 3, 17, 35], 6, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            ([1, 1, 9, 70], 5, [5, 5], [2, 3], [1, 1], [2, 2, 2, 2]),
            ([1, 4, 12, 33], 9, [3, 2], [1, 2], [2, 1], [1, 0, 2, 1]),
            ([1, 2, 7, 16], 4, [1, 3], [1, 1], [1, 1], [0, 1, 0, 1]),
            ([1, 3, 20, 130], 8, [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
        ];
        for (xs, m, k, s, d, p) in cases {
            let ws = [m, xs[1], k[0], k[1]];
            let x = lin(xs.iter().product(), 0.37);
            let w = lin(ws.iter().product(), 0.21);
            let b = lin(m, 0.5);
            let (want, os) = reference(&x, xs, &w, ws, &b, s, d, p);
            let r = lin(os.iter().product(), 0.9);
            let conv = Conv {
                strides: s.to_vec(),
                dilations: d.to_vec(),
                padding: Padding::Explicit(p.to_vec()),
                group: 1,
            };
            let op = FusedConv {
                conv: conv.clone(),
                act: Activation::Clip { min: 0.0, max: 6.0 },
                residual: true,
                post: None,
                channels_last: false,
            };
            let ins = [
                Tensor::from_vec(&xs, x).unwrap(),
                Tensor::from_vec(&ws, w).unwrap(),
                Tensor::from_vec(&[m], b).unwrap(),
                Tensor::from_vec(&os, r.clone()).unwrap(),
            ];
            let facts: Vec<Fact> = ins.iter().map(|t| Fact::konst(t.clone())).collect();
            let kb = kernels().get(&op).unwrap();
            let name = format!("{:?}", kb(&op, &facts, &[]).unwrap());
            assert!(name.starts_with("DirectConv"), "{xs:?} {k:?}: {name}");
            let got = eval_op(&op, &ins).unwrap().remove(0).to_f64_vec();
            let plain = eval_op(&conv, &ins[..3]).unwrap().remove(0).to_f64_vec();
            for (i, ((g, pl), e)) in got.iter().zip(&plain).zip(&want).enumerate() {
                let fused = (e + r[i] as f64).clamp(0.0, 6.0);
                assert!(
                    (g - fused).abs() <= 1e-4 * (1.0 + fused.abs()),
                    "{xs:?} at {i}: {g} vs {fused}"
                );
                assert!(
                    (pl - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{xs:?} at {i}: {pl} vs {e}"
                );
            }
        }
    }

    /// Two threads split the channel tiles and give the same bits as one.
    #[test]
    fn threads_split_channel_tiles_exactly() {
        if !has_avx512() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let (xs, ws) = ([1, 3, 64, 64], [30, 3, 3, 3]);
        let conv = Conv {
            strides: vec![2, 2],
            dilations: vec![1, 1],
            padding: Padding::Explicit(vec![1; 4]),
            group: 1,
        };
        let facts = [
            Fact::known(DType::F32, &xs),
            Fact::konst(Tensor::from_vec(&ws, lin(ws.iter().product(), 0.1)).unwrap()),
        ];
        let k = build(&conv, &facts, Activation::Relu, false)
            .unwrap()
            .unwrap();
        let x = lin(xs.iter().product(), 0.3);
        let b = lin(30, 0.2);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut scratch = vec![0f32; k.scratch_bytes() / 4];
            let mut out = vec![f32::NAN; 30 * 32 * 32];
            pool.install(|| k.run_f32(threads, &mut scratch, &x, Some(&b), None, &mut out))
                .unwrap();
            out
        };
        let (one, two) = (run(1), run(2));
        assert!(one.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert_eq!(one, two);
    }

    #[test]
    fn not_chosen_for_deep_pointwise_or_narrow_convs() {
        let pick = |xs: [usize; 4], ws: [usize; 4]| {
            let conv = Conv {
                strides: vec![1, 1],
                dilations: vec![1, 1],
                padding: Padding::Explicit(vec![0; 4]),
                group: 1,
            };
            let facts = [
                Fact::known(DType::F32, &xs),
                Fact::konst(Tensor::from_vec(&ws, vec![0.5f32; ws.iter().product()]).unwrap()),
            ];
            build(&conv, &facts, Activation::Identity, false)
                .unwrap()
                .is_some()
        };
        assert!(!pick([1, 16, 32, 32], [8, 16, 3, 3]));
        assert!(!pick([1, 3, 32, 32], [8, 3, 1, 1]));
        assert!(!pick([1, 3, 8, 8], [8, 3, 3, 3]));
        assert_eq!(pick([1, 3, 32, 32], [8, 3, 3, 3]), has_avx512());
    }
}
