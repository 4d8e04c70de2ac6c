//! Channels-last (NHWC) 2-D convolutions, as `passes::ChannelsLast` makes them: depthwise
//! convs go to `depthwise_nhwc`; every group-1 conv is a GEMM with the output pixels as rows
//! (`out[pixels x M] = col[pixels x K] * w[K x M]`, K = kh*kw*C in (ky, kx, c) order), so a
//! 1x1 stride-1 conv multiplies the input itself and other convs build `col` a block of
//! rows at a time (a block fits in L2 beside the GEMM's packing buffers). Bias (per
//! column), residual, activation and the post map all run in the GEMM's store.

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
    Ok(Box::new(GemmConv::new(f, inputs)?))
}

/// Bytes of one im2col row block (a quarter of a Zen 4 L2: the GEMM packs its B panels and
/// an A block beside it).
const COL_BLOCK_BYTES: usize = 256 << 10;

/// A group-1 NHWC conv as one GEMM over the output pixels.
#[derive(Debug)]
struct GemmConv {
    n: usize,
    c: usize,
    m: usize,
    h: AxisGeom,
    w: AxisGeom,
    /// Weights as the `K x M` B operand, packed at plan time.
    packed: sg::PackedB,
    act: Activation,
    residual: bool,
    post: Option<(f32, f32)>,
    /// 1x1, stride 1, no padding: the input is the A operand as it is.
    direct: bool,
    /// im2col path: output pixels per block.
    rows: usize,
    /// Threads the scratch was sized for.
    threads: usize,
}

impl GemmConv {
    fn new(f: &FusedConv, inputs: &[Fact]) -> Result<GemmConv> {
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
        let packed = sg::PackedB::new(&b, k, m, m, 1)?;
        let direct = kh == 1
            && kw == 1
            && h.stride == 1
            && w.stride == 1
            && h.pad_begin + h.pad_end + w.pad_begin + w.pad_end == 0;
        let rows = (COL_BLOCK_BYTES / (4 * k.max(1))).clamp(sg::MR, 4096) / sg::MR * sg::MR;
        Ok(GemmConv {
            n,
            c,
            m,
            h,
            w,
            packed,
            act: f.act,
            residual: f.residual,
            post: f.post.map(|p| (p.scale, p.shift)),
            direct,
            rows,
            threads: super::pool_threads(),
        })
    }

    fn k(&self) -> usize {
        self.h.kernel * self.w.kernel * self.c
    }
    fn pixels(&self) -> usize {
        self.n * self.h.output * self.w.output
    }
    fn blocks(&self) -> usize {
        self.pixels().div_ceil(self.rows)
    }
    /// Tasks that each take whole im2col blocks (one-thread GEMMs); 1: blocks one after
    /// another, each GEMM split over the threads.
    fn tasks(&self, threads: usize) -> usize {
        let b = self.blocks();
        if b >= 2 * threads { threads.max(1) } else { 1 }
    }
    fn col_bytes(&self) -> usize {
        (self.rows * self.k() * 4).next_multiple_of(64)
    }
    /// Scratch of one task: its column block, then the GEMM's packing buffers.
    fn task_bytes(&self, gemm_threads: usize) -> usize {
        self.col_bytes() + sg::scratch_bytes(self.rows, self.m, self.k(), false, true, gemm_threads)
    }

    /// Rows `[p0, p1)` of the im2col matrix (pixel p = (n, oy, ox); columns (ky, kx, c)),
    /// padding taps zero. A run of taps inside the row is one copy: with dilation 1, the kx
    /// taps of one ky are `kw * C` contiguous floats.
    fn im2col(&self, x: &[f32], col: &mut [f32], p0: usize, p1: usize) {
        let (h, w, c) = (self.h, self.w, self.c);
        let (ow, oh) = (w.output, h.output);
        let k = self.k();
        for p in p0..p1 {
            let row = &mut col[(p - p0) * k..][..k];
            let (img, oy, ox) = (p / (oh * ow), (p / ow) % oh, p % ow);
            let ix0 = (ox * w.stride) as isize - w.pad_begin as isize;
            // kx in [lo, hi) read inside the image row.
            let d = w.dilation as isize;
            let lo = ((-ix0).max(0) + d - 1) / d;
            let hi = ((w.input as isize - ix0 + d - 1) / d).clamp(0, w.kernel as isize);
            let (lo, hi) = (lo.min(w.kernel as isize) as usize, hi as usize);
            for ky in 0..h.kernel {
                let dst = &mut row[ky * w.kernel * c..][..w.kernel * c];
                let iy = (oy * h.stride + ky * h.dilation) as isize - h.pad_begin as isize;
                if iy < 0 || iy >= h.input as isize || lo >= hi {
                    dst.fill(0.0);
                    continue;
                }
                let src_row = &x[(img * h.input + iy as usize) * w.input * c..][..w.input * c];
                dst[..lo * c].fill(0.0);
                dst[hi * c..].fill(0.0);
                if w.dilation == 1 {
                    let ix = (ix0 + lo as isize) as usize;
                    dst[lo * c..hi * c].copy_from_slice(&src_row[ix * c..][..(hi - lo) * c]);
                } else {
                    for kx in lo..hi {
                        let ix = (ix0 + (kx * w.dilation) as isize) as usize;
                        dst[kx * c..][..c].copy_from_slice(&src_row[ix * c..][..c]);
                    }
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
        let (m, k, pixels) = (self.m, self.k(), self.pixels());
        let act = self.act;
        let map = move |o: &mut [f32]| apply_act(act, o);
        let map: &(dyn Fn(&mut [f32]) + Sync) = &map;
        let ep = sg::Epilogue {
            bias: sg::Bias::Col(bias),
            act: gemm_act(act).unwrap_or(sg::Activation::Map(map)),
            post: self.post,
            ..sg::Epilogue::default()
        };
        let threads = ctx.threads.clamp(1, self.threads.max(1));
        if self.direct {
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
        if self.direct {
            return sg::scratch_bytes(self.pixels(), self.m, self.k(), false, true, t);
        }
        let tasks = self.tasks(t);
        let gemm_threads = if tasks > 1 { 1 } else { t };
        tasks * self.task_bytes(gemm_threads)
    }
    fn work(&self) -> Option<usize> {
        Some(self.pixels() * self.m * self.k())
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let res = if self.residual {
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
        let cases: &[(&[usize], &[usize], usize, usize, Padding)] = &[
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
        ];
        for (xs, ws, s, d, pad) in cases {
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
                    let got = pool.install(|| eval_op(&op, &ins)).unwrap().remove(0);
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
                            "{xs:?} {ws:?} s{s} d{d} {pad:?} {act:?} res {residual} t{threads}: [{i}] {a} vs {b}"
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
