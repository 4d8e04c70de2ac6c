//! 2-D max / average pools on channels-last (NHWC) data (`Pool { channels_last: true }`):
//! every window tap is a contiguous run of channels, so the channels fill the vector lanes
//! whatever the plane size or stride.
//!
//! An output pixel's taps are the kernel positions inside the image (rows, then columns, in
//! kernel order); positions in the padding are skipped rather than read from a padded copy:
//! skipping a padded `-inf` (max) or `0` (sum starting at `+0`) leaves every result bit for
//! bit what the NCHW kernel, which reads them, computes. So a max follows
//! `v > acc || v.is_nan()` over the window's order (a NaN wins), and an average is the sum in
//! window order divided by the same per-output count (`conv::window_counts`, 0 -> 0).
//! f32 runs 64 channels per register block under AVX-512 (then 16, then a masked tail);
//! other CPUs and float types run auto-vectorized loops over blocks of channels. Output rows
//! (n, oy) are split over the pool's threads.

use super::PAR_MIN_ELEMS;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use crate::dtype::{DType, Datum, Float};
use crate::ir::Fact;
use crate::ops::conv::{AxisGeom, geometry};
use crate::ops::{Op, Pool, PoolKind};
use crate::{Error, Result};
use rayon::prelude::*;

/// A channels-last 2-D pool planned for one input shape.
#[derive(Debug)]
pub(crate) struct PoolNhwc {
    dtype: DType,
    max: bool,
    n: usize,
    c: usize,
    /// Height and width geometry (input, kernel, stride, dilation, padding, output).
    h: AxisGeom,
    w: AxisGeom,
    /// Average divisors per axis: output (oy, ox) divides by rows[oy] * cols[ox].
    rows: Vec<usize>,
    cols: Vec<usize>,
    avx512: bool,
}

/// Plans `p` (channels-last, 2-D, float) on the NHWC input `x`; `avx512` allows the f32
/// AVX-512 path where the CPU has it.
pub(crate) fn plan(p: &Pool, x: &Fact, avx512: bool) -> Result<PoolNhwc> {
    let name = p.name();
    let d = concrete(x)?;
    if d.len() != 4 || p.kernel.len() != 2 || !x.dtype.is_float() {
        return Err(Error::unsupported(format!(
            "{name} channels-last on {:?} {} with kernel {:?} (2-D float pools only)",
            d, x.dtype, p.kernel
        )));
    }
    let geo = geometry(
        name,
        &d[1..3],
        &p.kernel,
        &p.strides,
        &p.dilations,
        &p.padding,
        p.ceil_mode,
    )?;
    let (h, w) = (geo[0], geo[1]);
    let include_pad = matches!(
        p.kind,
        PoolKind::Avg {
            count_include_pad: true
        }
    );
    #[cfg(target_arch = "x86_64")]
    let avx512 = avx512 && x.dtype == DType::F32 && is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    Ok(PoolNhwc {
        dtype: x.dtype,
        max: p.kind == PoolKind::Max,
        n: d[0],
        c: d[3],
        h,
        w,
        rows: super::conv::window_counts(&h, include_pad),
        cols: super::conv::window_counts(&w, include_pad),
        avx512,
    })
}

/// Kernel positions `k0..k1` of a window starting at input index `i0` (may be negative)
/// that fall inside `0..len`, at dilation `d`.
#[inline]
fn inside(i0: isize, k: usize, d: usize, len: usize) -> (usize, usize) {
    let mut k0 = 0;
    while k0 < k && i0 + (k0 * d) as isize <= -1 {
        k0 += 1;
    }
    let mut k1 = k;
    while k1 > k0 && i0 + ((k1 - 1) * d) as isize >= len as isize {
        k1 -= 1;
    }
    (k0, k1)
}

/// Channels per portable block (the accumulators live in one stack array).
const CB: usize = 64;

impl PoolNhwc {
    fn row_len(&self) -> usize {
        self.w.output * self.c
    }
    fn in_len(&self) -> usize {
        self.n * self.h.input * self.w.input * self.c
    }

    /// The window of output (oy, ox): its rows `ky0..ky1`, columns `kx0..kx1` inside the
    /// image, and the input pixel index (iy * iw + ix) of kernel position (0, 0) (which may
    /// lie outside: only positions inside are ever read).
    #[inline]
    fn window(&self, oy: usize, ox: usize) -> (usize, usize, usize, usize, isize) {
        let iy0 = (oy * self.h.stride) as isize - self.h.pad_begin as isize;
        let ix0 = (ox * self.w.stride) as isize - self.w.pad_begin as isize;
        let (ky0, ky1) = inside(iy0, self.h.kernel, self.h.dilation, self.h.input);
        let (kx0, kx1) = inside(ix0, self.w.kernel, self.w.dilation, self.w.input);
        (ky0, ky1, kx0, kx1, iy0 * self.w.input as isize + ix0)
    }

    /// Output rows `r0..` (flat over n, oy) into `o` (whole rows).
    fn rows_t<T: Float>(&self, x: &[T], r0: usize, o: &mut [T]) {
        let rl = self.row_len();
        let img_len = self.h.input * self.w.input * self.c;
        for (i, orow) in o.chunks_exact_mut(rl).enumerate() {
            let row = r0 + i;
            let (b, oy) = (row / self.h.output, row % self.h.output);
            let img = &x[b * img_len..][..img_len];
            #[cfg(target_arch = "x86_64")]
            if self.avx512
                && let (Some(img), Some(orow)) =
                    (super::conv::as_f32(img), super::conv::as_f32_mut(orow))
            {
                // SAFETY: `avx512` is only set where the CPU has AVX-512F (`plan`).
                unsafe { avx512::row(self, img, oy, orow) };
                continue;
            }
            if self.max {
                self.row_portable::<T, true>(img, oy, orow);
            } else {
                self.row_portable::<T, false>(img, oy, orow);
            }
        }
    }

    /// One output row, portable loops over blocks of `CB` channels.
    fn row_portable<T: Float, const MAX: bool>(&self, img: &[T], oy: usize, orow: &mut [T]) {
        let c = self.c;
        let init = if MAX { T::neg_infinity() } else { T::ZERO };
        for (ox, pix) in orow.chunks_exact_mut(c).enumerate() {
            let (ky0, ky1, kx0, kx1, p0) = self.window(oy, ox);
            for (cb, out) in pix.chunks_mut(CB).enumerate() {
                let nb = out.len();
                let mut acc = [init; CB];
                for ky in ky0..ky1 {
                    for kx in kx0..kx1 {
                        let p = p0
                            + (ky * self.h.dilation * self.w.input + kx * self.w.dilation) as isize;
                        let src = &img[p as usize * c + cb * CB..][..nb];
                        for (a, &v) in acc.iter_mut().zip(src) {
                            *a = if MAX {
                                if v > *a || v.is_nan() { v } else { *a }
                            } else {
                                *a + v
                            };
                        }
                    }
                }
                if MAX {
                    out.copy_from_slice(&acc[..nb]);
                } else {
                    let d = self.rows[oy] * self.cols[ox];
                    let dv = <T as Datum>::from_f64(d as f64);
                    for (o, &a) in out.iter_mut().zip(&acc) {
                        *o = if d == 0 { T::ZERO } else { a / dv };
                    }
                }
            }
        }
    }

    fn run_t<T: Float + Send + Sync>(&self, threads: usize, x: &[T], o: &mut [T]) {
        let rl = self.row_len();
        let rows = self.n * self.h.output;
        if rl == 0 || rows == 0 {
            return;
        }
        let work = o.len() * self.h.kernel * self.w.kernel;
        if threads <= 1 || work < PAR_MIN_ELEMS * 4 || rows < 2 {
            self.rows_t(x, 0, o);
            return;
        }
        // A few tasks per thread so rows of unequal cost (borders) even out.
        let per = rows.div_ceil(threads * 4).max(1);
        o.par_chunks_mut(per * rl)
            .enumerate()
            .for_each(|(t, chunk)| self.rows_t(x, t * per, chunk));
    }
}

impl Kernel for PoolNhwc {
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let name = if self.max { "MaxPool" } else { "AveragePool" };
        if inputs.len() != 1 || outputs.len() != 1 {
            return Err(Error::shape(name, "takes 1 input and 1 output"));
        }
        let threads = ctx.threads;
        crate::dispatch_float!(self.dtype, T => {
            let x = inputs[0].as_slice::<T>()?;
            let o = outputs[0].as_slice_mut::<T>()?;
            if x.len() != self.in_len() || o.len() != self.n * self.h.output * self.row_len() {
                return Err(Error::shape(
                    name,
                    format!("planned for {} inputs and {} outputs, got {} and {}",
                        self.in_len(), self.n * self.h.output * self.row_len(), x.len(), o.len()),
                ));
            }
            self.run_t::<T>(threads, x, o);
            Ok(())
        }, else => Err(Error::dtype(name, format!("{}", self.dtype))))
    }
}

/// The kernel builder's entry for channels-last pools (`conv.rs`'s `pool` hands them over).
pub(crate) fn build(p: &Pool, inputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(plan(p, &inputs[0], true)?))
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::PoolNhwc;
    use crate::cpu::kernels::conv::avx512::mask;
    use crate::cpu::kernels::conv::pool_avx512::{max_end, max_init, max_tap};
    use std::arch::x86_64::*;

    /// `V` vectors of channels from `c0` (the last one masked by `last`) of the output
    /// pixel whose window is `win` (`PoolNhwc::window`): taps in window order, then the
    /// divisor for averages; stored at `out[c0..]` (`out` is the pixel's C channels).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn block<const V: usize, const MAX: bool>(
        k: &PoolNhwc,
        img: &[f32],
        win: (usize, usize, usize, usize, isize),
        div: f32,
        c0: usize,
        last: __mmask16,
        out: &mut [f32],
    ) {
        let (ky0, ky1, kx0, kx1, p0) = win;
        let c = k.c;
        debug_assert!(c0 + 16 * (V - 1) + (last.count_ones() as usize) <= c);
        let mut mx = [max_init(); V];
        let mut sum = [_mm512_setzero_ps(); V];
        for ky in ky0..ky1 {
            let prow = p0 + (ky * k.h.dilation * k.w.input) as isize;
            for kx in kx0..kx1 {
                // Inside the image: 0 <= p < ih * iw (window()).
                let p = (prow + (kx * k.w.dilation) as isize) as usize;
                let src = img[p * c + c0..].as_ptr();
                for j in 0..V {
                    let m = if j + 1 == V { last } else { 0xffff };
                    // SAFETY: the masked lanes are channels c0 + 16j.. < c of pixel p
                    // (debug_assert above), inside `img`.
                    let v = unsafe { _mm512_maskz_loadu_ps(m, src.add(16 * j)) };
                    if MAX {
                        mx[j] = max_tap(mx[j], v);
                    } else {
                        sum[j] = _mm512_add_ps(sum[j], v);
                    }
                }
            }
        }
        let dst = out[c0..].as_mut_ptr();
        for j in 0..V {
            let m = if j + 1 == V { last } else { 0xffff };
            let r = if MAX {
                max_end(mx[j])
            } else if div == 0.0 {
                _mm512_setzero_ps()
            } else {
                _mm512_div_ps(sum[j], _mm512_set1_ps(div))
            };
            // SAFETY: as for the loads: lanes c0 + 16j.. < c of the pixel's channels.
            unsafe { _mm512_mask_storeu_ps(dst.add(16 * j), m, r) };
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn row_impl<const MAX: bool>(k: &PoolNhwc, img: &[f32], oy: usize, orow: &mut [f32]) {
        let c = k.c;
        for (ox, out) in orow.chunks_exact_mut(c).enumerate() {
            let win = k.window(oy, ox);
            // The divisor as the NCHW kernel makes it (usize -> f64 -> f32).
            let div = if MAX {
                1.0
            } else {
                (k.rows[oy] * k.cols[ox]) as f64 as f32
            };
            let mut c0 = 0;
            while c0 + 64 <= c {
                block::<4, MAX>(k, img, win, div, c0, 0xffff, out);
                c0 += 64;
            }
            while c0 < c {
                let n = (c - c0).min(32);
                if n > 16 {
                    block::<2, MAX>(k, img, win, div, c0, mask(n - 16), out);
                } else {
                    block::<1, MAX>(k, img, win, div, c0, mask(n), out);
                }
                c0 += n;
            }
        }
    }

    /// One output row (oy) of one NHWC image (`img`, whole) into `orow` (whole).
    #[target_feature(enable = "avx512f")]
    pub(super) fn row(k: &PoolNhwc, img: &[f32], oy: usize, orow: &mut [f32]) {
        debug_assert_eq!(img.len(), k.h.input * k.w.input * k.c);
        debug_assert_eq!(orow.len(), k.w.output * k.c);
        if k.max {
            row_impl::<true>(k, img, oy, orow)
        } else {
            row_impl::<false>(k, img, oy, orow)
        }
    }
}

/// Forces the portable path (tests).
#[cfg(test)]
pub(crate) fn plan_portable(p: &Pool, x: &Fact) -> Result<PoolNhwc> {
    plan(p, x, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::Padding;
    use crate::tensor::Tensor;

    const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
    const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

    /// `t` ([a, b, c, d], f32) with its axes permuted by `perm`.
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

    /// Values with repeats, both zero signs, and (with `nan`) a few NaNs.
    fn data(n: usize, nan: bool) -> Vec<f32> {
        (0..n)
            .map(|i| match i * 7919 % 53 {
                0 if nan => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                r => (r as f32 - 26.0) * 0.37,
            })
            .collect()
    }

    fn pool(kind: PoolKind, k: usize, s: usize, padding: Padding, ceil_mode: bool) -> Pool {
        Pool {
            kind,
            kernel: vec![k, k],
            strides: vec![s, s],
            dilations: vec![1, 1],
            padding,
            ceil_mode,
            channels_last: false,
        }
    }

    /// Naive f64 pool over NHWC `x` straight from the definition (taps in window order).
    fn reference(p: &Pool, x: &Tensor) -> Tensor {
        let s = x.shape();
        let (n, h, w, c) = (s[0], s[1], s[2], s[3]);
        let v = x.as_slice::<f32>().unwrap();
        let geo = geometry(
            "ref",
            &[h, w],
            &p.kernel,
            &p.strides,
            &p.dilations,
            &p.padding,
            p.ceil_mode,
        )
        .unwrap();
        let (gh, gw) = (geo[0], geo[1]);
        let include = matches!(
            p.kind,
            PoolKind::Avg {
                count_include_pad: true
            }
        );
        let mut out = Vec::new();
        for b in 0..n {
            for oy in 0..gh.output {
                for ox in 0..gw.output {
                    for ch in 0..c {
                        let (mut m, mut sum, mut cnt) = (f64::NEG_INFINITY, 0.0, 0usize);
                        let mut nan = false;
                        for ky in 0..gh.kernel {
                            let iy = (oy * gh.stride + ky * gh.dilation) as isize
                                - gh.pad_begin as isize;
                            for kx in 0..gw.kernel {
                                let ix = (ox * gw.stride + kx * gw.dilation) as isize
                                    - gw.pad_begin as isize;
                                let inside =
                                    iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                                let in_pads = iy < (h + gh.pad_end) as isize
                                    && ix < (w + gw.pad_end) as isize;
                                if inside {
                                    let val = v[((b * h + iy as usize) * w + ix as usize) * c + ch]
                                        as f64;
                                    nan |= val.is_nan();
                                    m = m.max(val);
                                    sum += val;
                                }
                                if inside || (include && in_pads) {
                                    cnt += 1;
                                }
                            }
                        }
                        out.push(match p.kind {
                            PoolKind::Max if nan => f32::NAN,
                            PoolKind::Max => m as f32,
                            _ if cnt == 0 => 0.0,
                            _ => (sum / cnt as f64) as f32,
                        });
                    }
                }
            }
        }
        Tensor::from_vec(&[n, gh.output, gw.output, c], out).unwrap()
    }

    /// Same values, bit for bit (any NaN matches any NaN).
    fn same_bits(a: &Tensor, b: &Tensor, what: &str) {
        assert_eq!(a.shape(), b.shape(), "{what}");
        for (i, (x, y)) in a
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(b.as_slice::<f32>().unwrap())
            .enumerate()
        {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{what}: element {i}: {x} vs {y}"
            );
        }
    }

    fn run(k: &PoolNhwc, x: &Tensor, shape: &[usize]) -> Tensor {
        let mut out = Tensor::zeros(DType::F32, shape).unwrap();
        let mut outs = [TensorViewMut {
            dtype: DType::F32,
            shape,
            bytes: out.as_bytes_mut(),
        }];
        let ins = [TensorView {
            dtype: DType::F32,
            shape: x.shape(),
            bytes: x.as_bytes(),
        }];
        let mut ctx = KernelCtx {
            scratch: &mut [],
            threads: crate::cpu::kernels::pool_threads(),
        };
        k.run(&mut ctx, &ins, &mut outs).unwrap();
        out
    }

    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    /// The channels-last pool (as the registry builds it, then the portable and AVX-512
    /// paths forced; 1 and 2 threads) against the NCHW kernel on the transposed input, bit
    /// for bit, and against the f64 reference.
    fn check(p: &Pool, nhwc: [usize; 4], nan: bool) {
        let x = Tensor::from_vec(&nhwc, data(nhwc.iter().product(), nan)).unwrap();
        let want = permute(&eval_op(p, &[permute(&x, TO_NCHW)]).unwrap()[0], TO_NHWC);
        let reference = reference(p, &x);
        for (i, (a, b)) in want
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(reference.as_slice::<f32>().unwrap())
            .enumerate()
        {
            assert!(
                a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{p:?} {nhwc:?}: NCHW kernel vs reference at {i}: {a} vs {b}"
            );
        }
        let cl = Pool {
            channels_last: true,
            ..p.clone()
        };
        let what = format!("{p:?} on {nhwc:?}");
        for threads in [1, 2] {
            in_pool(threads, || {
                let got = eval_op(&cl, std::slice::from_ref(&x)).unwrap().remove(0);
                same_bits(&got, &want, &what);
                let fact = Fact::konst(x.clone());
                let k = plan_portable(&cl, &fact).unwrap();
                assert!(!k.avx512);
                same_bits(&run(&k, &x, want.shape()), &want, &what);
                let k = plan(&cl, &fact, true).unwrap();
                if !k.avx512 {
                    eprintln!("skipped the AVX-512 path: not on this CPU");
                    return;
                }
                same_bits(&run(&k, &x, want.shape()), &want, &what);
            });
        }
    }

    fn kinds() -> [PoolKind; 3] {
        [
            PoolKind::Max,
            PoolKind::Avg {
                count_include_pad: false,
            },
            PoolKind::Avg {
                count_include_pad: true,
            },
        ]
    }

    #[test]
    fn kernels_strides_and_paddings_match_the_nchw_pool() {
        for kind in kinds() {
            for (k, s) in [(2, 2), (3, 1), (3, 2), (5, 1), (5, 2)] {
                for padding in [
                    Padding::Valid,
                    Padding::SameUpper,
                    Padding::Explicit(vec![0, 1, 2, 0]),
                ] {
                    let p = pool(kind, k, s, padding, false);
                    // Channels around the block sizes: masked tails, 16/32/64 blocks.
                    for c in [3, 16, 37, 64, 90] {
                        check(&p, [1, 9, 8, c], kind == PoolKind::Max);
                    }
                }
            }
        }
    }

    #[test]
    fn ceil_mode_dilation_batches_and_big_planes_match() {
        for kind in kinds() {
            for padding in [Padding::Valid, Padding::Explicit(vec![1, 0, 1, 2])] {
                check(
                    &pool(kind, 3, 2, padding.clone(), true),
                    [2, 10, 11, 20],
                    true,
                );
                check(&pool(kind, 2, 2, padding, true), [1, 7, 9, 33], false);
            }
            let dil = Pool {
                dilations: vec![2, 1],
                ..pool(kind, 3, 1, Padding::Explicit(vec![2, 1, 2, 1]), false)
            };
            check(&dil, [2, 9, 9, 17], true);
            // Windows wholly in the padding (divisor 0 without count_include_pad).
            check(
                &pool(kind, 2, 3, Padding::Explicit(vec![2, 2, 2, 2]), false),
                [1, 4, 4, 5],
                false,
            );
            // Enough work to split rows over two threads.
            check(
                &pool(kind, 3, 1, Padding::SameUpper, false),
                [1, 25, 25, 96],
                true,
            );
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let p = Pool {
            channels_last: true,
            ..pool(PoolKind::Max, 3, 1, Padding::Valid, false)
        };
        let x = Tensor::from_vec(&[1, 2, 2, 3], data(12, false)).unwrap();
        assert!(eval_op(&p, &[x]).is_err(), "window larger than the input");
        let p3 = Pool {
            kernel: vec![1, 1, 1],
            strides: vec![1, 1, 1],
            dilations: vec![1, 1, 1],
            ..p
        };
        let x = Tensor::from_vec(&[1, 2, 2, 2, 3], data(24, false)).unwrap();
        assert!(eval_op(&p3, &[x]).is_err(), "3-D channels-last pool");
    }
}
