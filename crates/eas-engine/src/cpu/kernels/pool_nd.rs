//! Generic N-d pools: any number of spatial axes, MaxPool on every numeric type, and
//! MaxPool's Indices output. The 1-D/2-D float pools keep their fast padded-row kernels in
//! `conv.rs`, which hands everything else here.
//!
//! Each output element walks the in-bounds taps of its window (per axis, precomputed at
//! plan time), so the cost is output size x window size, as for the direct 2-D kernel.

use super::PAR_MIN_ELEMS;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Float, Num};
use crate::ir::Fact;
use crate::ops::conv::{AxisGeom, geometry};
use crate::ops::{LpPool, MaxPoolWithIndices, Op, Pool, PoolKind};
use crate::{Error, Result};
use rayon::prelude::*;

/// A pool over `planes` (N x C) planes of `geo.len()` spatial axes.
#[derive(Debug)]
pub(crate) struct PoolNd {
    dtype: DType,
    kind: PoolKind,
    planes: usize,
    in_dims: Vec<usize>,
    out_dims: Vec<usize>,
    /// `taps[axis][o]`: the input coordinates of output position `o`'s window along `axis`
    /// that lie inside the input, in window order.
    taps: Vec<Vec<Vec<usize>>>,
    /// count_include_pad: every window position counts, also those past the end padding
    /// in ceil mode (ONNX's reference pads the input up to the last window; the 2-D kernel
    /// in `conv.rs` follows PyTorch/ONNX Runtime there and leaves those out).
    include_pad: bool,
    /// Window volume: the divisor with `include_pad`.
    window: usize,
    /// `Some(column_major)` when the kernel also writes argmax indices (output 1).
    indices: Option<bool>,
    /// LpPool's p: the kernel computes (sum |x|^p)^(1/p) instead of `kind`.
    lp: Option<u32>,
}

fn axis_taps(a: &AxisGeom) -> Vec<Vec<usize>> {
    (0..a.output)
        .map(|o| {
            (0..a.kernel)
                .filter_map(|k| {
                    let i = (o * a.stride + k * a.dilation) as isize - a.pad_begin as isize;
                    (i >= 0 && (i as usize) < a.input).then_some(i as usize)
                })
                .collect()
        })
        .collect()
}

impl PoolNd {
    /// Plans `p` on input fact `x`; `indices` as in [`PoolNd::indices`].
    pub(crate) fn new(p: &Pool, x: &Fact, indices: Option<bool>) -> Result<PoolNd> {
        let shape = concrete(x)?;
        if shape.len() < 2 {
            return Err(Error::shape(
                p.name(),
                format!("input {shape:?} has no N, C"),
            ));
        }
        let geo = geometry(
            p.name(),
            &shape[2..],
            &p.kernel,
            &p.strides,
            &p.dilations,
            &p.padding,
            p.ceil_mode,
        )?;
        let taps = geo.iter().map(axis_taps).collect();
        Ok(PoolNd {
            dtype: x.dtype,
            kind: p.kind,
            planes: shape[..2].iter().product(),
            in_dims: shape[2..].to_vec(),
            out_dims: geo.iter().map(|g| g.output).collect(),
            taps,
            window: p.kernel.iter().product(),
            include_pad: matches!(
                p.kind,
                PoolKind::Avg {
                    count_include_pad: true
                }
            ),
            indices,
            lp: None,
        })
    }

    fn in_plane(&self) -> usize {
        self.in_dims.iter().product()
    }
    fn out_plane(&self) -> usize {
        self.out_dims.iter().product()
    }

    /// Calls `f(row_major, column_major)` with the in-plane offsets of every in-bounds tap
    /// of output position `opos`, in window order (last axis fastest).
    fn for_taps(&self, opos: &[usize], kpos: &mut [usize], mut f: impl FnMut(usize, usize)) {
        let nd = opos.len();
        let lists: Vec<&[usize]> = (0..nd).map(|d| &self.taps[d][opos[d]][..]).collect();
        if lists.iter().any(|l| l.is_empty()) {
            return;
        }
        kpos.fill(0);
        loop {
            let (mut rm, mut cm) = (0usize, 0usize);
            let mut cstride = 1;
            for d in 0..nd {
                rm = rm * self.in_dims[d] + lists[d][kpos[d]];
                cm += lists[d][kpos[d]] * cstride;
                cstride *= self.in_dims[d];
            }
            f(rm, cm);
            let mut d = nd;
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                kpos[d] += 1;
                if kpos[d] < lists[d].len() {
                    break;
                }
                kpos[d] = 0;
            }
        }
    }

    /// One plane: `plane` is its index in N x C (for the indices' offset).
    fn plane<T: Num>(&self, plane: usize, x: &[T], y: &mut [T], mut ind: Option<&mut [i64]>) {
        let nd = self.out_dims.len();
        let mut opos = vec![0usize; nd];
        let mut kpos = vec![0usize; nd];
        let base = (plane * self.in_plane()) as i64;
        for (i, yo) in y.iter_mut().enumerate() {
            match self.kind {
                PoolKind::Max => {
                    let mut best = T::lowest();
                    let mut arg: Option<usize> = None;
                    let col = self.indices == Some(true);
                    self.for_taps(&opos, &mut kpos, |rm, cm| {
                        let v = x[rm];
                        let take = match arg {
                            None => true,
                            // A NaN wins (and stays): `>` is false against it.
                            Some(_) => !best.is_nan_() && (v > best || v.is_nan_()),
                        };
                        if take {
                            best = v;
                            arg = Some(if col { cm } else { rm });
                        }
                    });
                    *yo = best;
                    if let Some(ind) = ind.as_deref_mut() {
                        ind[i] = base + arg.unwrap_or(0) as i64;
                    }
                }
                _ if self.lp.is_some() => {
                    let p = self.lp.unwrap_or(2) as i32;
                    let mut sum = 0f64;
                    self.for_taps(&opos, &mut kpos, |rm, _| {
                        sum += x[rm].to_f64().abs().powi(p);
                    });
                    *yo = T::from_f64(sum.powf(1.0 / p as f64));
                }
                PoolKind::Avg { .. } => {
                    let mut sum = 0f64;
                    let mut n = 0usize;
                    self.for_taps(&opos, &mut kpos, |rm, _| {
                        sum += x[rm].to_f64();
                        n += 1;
                    });
                    if self.include_pad {
                        n = self.window;
                    }
                    *yo = if n == 0 {
                        T::ZERO
                    } else {
                        T::from_f64(sum / n as f64)
                    };
                }
            }
            // Next output position, last axis fastest.
            for d in (0..nd).rev() {
                opos[d] += 1;
                if opos[d] < self.out_dims[d] {
                    break;
                }
                opos[d] = 0;
            }
        }
    }

    fn run_t<T: Num>(&self, x: &[T], y: &mut [T], ind: Option<&mut [i64]>) -> Result<()> {
        let (ip, op) = (self.in_plane(), self.out_plane());
        if x.len() != self.planes * ip || y.len() != self.planes * op {
            return Err(Error::shape("Pool", "buffer sizes differ from the plan"));
        }
        if op == 0 {
            return Ok(());
        }
        let window: usize = self
            .taps
            .iter()
            .map(|t| t.first().map_or(1, |w| w.len().max(1)))
            .product();
        let par = y.len() * window >= PAR_MIN_ELEMS && self.planes > 1 && super::pool_threads() > 1;
        match ind {
            Some(ind) => {
                let it = y.par_chunks_mut(op).zip(ind.par_chunks_mut(op)).enumerate();
                let f = |(p, (yp, ip_)): (usize, (&mut [T], &mut [i64]))| {
                    self.plane(p, &x[p * ip..][..ip], yp, Some(ip_))
                };
                if par {
                    it.for_each(f);
                } else {
                    y.chunks_mut(op)
                        .zip(ind.chunks_mut(op))
                        .enumerate()
                        .for_each(f);
                }
            }
            None => {
                let f = |(p, yp): (usize, &mut [T])| self.plane(p, &x[p * ip..][..ip], yp, None);
                if par {
                    y.par_chunks_mut(op).enumerate().for_each(f);
                } else {
                    y.chunks_mut(op).enumerate().for_each(f);
                }
            }
        }
        Ok(())
    }
}

impl Kernel for PoolNd {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (y, rest) = outputs
            .split_first_mut()
            .ok_or_else(|| Error::invalid("Pool without outputs"))?;
        let ind = match (self.indices, rest.first_mut()) {
            (Some(_), Some(o)) => Some(o.as_slice_mut::<i64>()?),
            (Some(_), None) => return Err(Error::invalid("MaxPool indices output missing")),
            (None, _) => None,
        };
        if self.lp.is_some() {
            return crate::dispatch_float!(self.dtype, T => {
                avg_t::<T>(self, inputs[0].as_slice()?, y.as_slice_mut()?)
            }, else => Err(Error::dtype("LpPool", format!("{} input", self.dtype))));
        }
        match self.kind {
            PoolKind::Max => crate::dispatch_numeric!(self.dtype, T => {
                self.run_t::<T>(inputs[0].as_slice()?, y.as_slice_mut()?, ind)
            }, else => Err(Error::dtype("MaxPool", format!("{} input", self.dtype)))),
            PoolKind::Avg { .. } => crate::dispatch_float!(self.dtype, T => {
                avg_t::<T>(self, inputs[0].as_slice()?, y.as_slice_mut()?)
            }, else => Err(Error::dtype("AveragePool", format!("{} input", self.dtype)))),
        }
    }
}

/// Averages only exist for floats; the bound keeps integer averages from compiling.
fn avg_t<T: Float>(k: &PoolNd, x: &[T], y: &mut [T]) -> Result<()> {
    k.run_t::<T>(x, y, None)
}

/// Builds the N-d pool kernel (`conv.rs`'s `pool` builder hands over what its 2-D kernel
/// does not cover).
pub(crate) fn pool(p: &Pool, inputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(PoolNd::new(p, &inputs[0], None)?))
}

fn max_pool_with_indices(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let m = crate::cpu::kernel::op_as::<MaxPoolWithIndices>(op)?;
    Ok(Box::new(PoolNd::new(
        &m.pool,
        &inputs[0],
        Some(m.column_major),
    )?))
}

fn lp_pool(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let l = crate::cpu::kernel::op_as::<LpPool>(op)?;
    if l.p == 0 {
        return Err(Error::shape("LpPool", "p must be at least 1"));
    }
    let mut k = PoolNd::new(&l.pool, &inputs[0], None)?;
    k.lp = Some(l.p);
    Ok(Box::new(k))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<MaxPoolWithIndices>(max_pool_with_indices);
    r.insert::<LpPool>(lp_pool);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::Padding;
    use crate::tensor::{AlignedBytes, Tensor, assert_close};

    /// Runs a kernel directly on `inputs` into outputs of the given facts.
    pub(crate) fn run_kernel(
        k: &dyn Kernel,
        inputs: &[Tensor],
        outs: &[(DType, Vec<usize>)],
    ) -> Vec<Tensor> {
        let mut out: Vec<Tensor> = outs
            .iter()
            .map(|(d, s)| Tensor::zeros(*d, s).unwrap())
            .collect();
        let mut scratch = AlignedBytes::zeroed(k.scratch_bytes()).unwrap();
        let views: Vec<TensorView> = inputs
            .iter()
            .map(|t| TensorView {
                dtype: t.dtype(),
                shape: t.shape(),
                bytes: t.as_bytes(),
            })
            .collect();
        let shapes: Vec<Vec<usize>> = out.iter().map(|t| t.shape().to_vec()).collect();
        let mut outv: Vec<TensorViewMut> = out
            .iter_mut()
            .zip(&shapes)
            .map(|(t, s)| TensorViewMut {
                dtype: t.dtype(),
                shape: s,
                bytes: t.as_bytes_mut(),
            })
            .collect();
        let mut ctx = KernelCtx {
            scratch: scratch.as_bytes_mut(),
            threads: 1,
        };
        k.run(&mut ctx, &views, &mut outv).unwrap();
        drop(outv);
        out
    }

    pub(crate) fn lin(n: usize, s: f32) -> Vec<f32> {
        // Distinct values in a scrambled order, so maxima move around.
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * s).collect()
    }

    /// Naive 3-D pool over [N, C, D, H, W] in f64, straight from the definitions.
    fn reference3(x: &Tensor, p: &Pool) -> (Tensor, Vec<i64>) {
        let s = x.shape();
        let xv = x.to_f64_vec();
        let geo = geometry(
            "ref",
            &s[2..],
            &p.kernel,
            &p.strides,
            &p.dilations,
            &p.padding,
            p.ceil_mode,
        )
        .unwrap();
        let planes = s[0] * s[1];
        let inp = s[2] * s[3] * s[4];
        let (od, oh, ow) = (geo[0].output, geo[1].output, geo[2].output);
        let mut out = Vec::new();
        let mut idx = Vec::new();
        for pl in 0..planes {
            for z in 0..od {
                for y in 0..oh {
                    for xo in 0..ow {
                        let (mut best, mut arg, mut sum, mut n, mut padded) =
                            (f64::NEG_INFINITY, 0usize, 0.0, 0usize, 0usize);
                        for kz in 0..p.kernel[0] {
                            for ky in 0..p.kernel[1] {
                                for kx in 0..p.kernel[2] {
                                    let o = [z, y, xo];
                                    let k = [kz, ky, kx];
                                    let c: Vec<isize> = (0..3)
                                        .map(|d| {
                                            (o[d] * geo[d].stride + k[d] * geo[d].dilation) as isize
                                                - geo[d].pad_begin as isize
                                        })
                                        .collect();
                                    padded += 1;
                                    if (0..3).any(|d| c[d] < 0 || c[d] >= s[d + 2] as isize) {
                                        continue;
                                    }
                                    let off = (c[0] as usize * s[3] + c[1] as usize) * s[4]
                                        + c[2] as usize;
                                    let v = xv[pl * inp + off];
                                    if v > best {
                                        best = v;
                                        arg = pl * inp + off;
                                    }
                                    sum += v;
                                    n += 1;
                                }
                            }
                        }
                        match p.kind {
                            PoolKind::Max => out.push(best),
                            PoolKind::Avg { count_include_pad } => {
                                out.push(sum / if count_include_pad { padded } else { n } as f64)
                            }
                        }
                        idx.push(arg as i64);
                    }
                }
            }
        }
        let t = Tensor::from_vec(&[s[0], s[1], od, oh, ow], out).unwrap();
        (t.cast(x.dtype()).unwrap(), idx)
    }

    fn pool3(kind: PoolKind, padding: Padding, ceil_mode: bool, dil: usize) -> Pool {
        Pool {
            kind,
            kernel: vec![2, 3, 2],
            strides: vec![2, 1, 2],
            dilations: vec![dil; 3],
            padding,
            ceil_mode,
            channels_last: false,
        }
    }

    #[test]
    fn pool_3d_matches_reference() {
        let x = Tensor::from_vec(&[2, 3, 5, 6, 7], lin(2 * 3 * 5 * 6 * 7, 0.25)).unwrap();
        for kind in [
            PoolKind::Max,
            PoolKind::Avg {
                count_include_pad: false,
            },
            PoolKind::Avg {
                count_include_pad: true,
            },
        ] {
            for padding in [
                Padding::Valid,
                Padding::Explicit(vec![1, 1, 0, 1, 0, 1]),
                Padding::SameUpper,
            ] {
                for (ceil, dil) in [(false, 1), (true, 1), (false, 2), (true, 2)] {
                    let p = pool3(kind, padding.clone(), ceil, dil);
                    let got = &eval_op(&p, std::slice::from_ref(&x)).unwrap()[0];
                    let (want, want_idx) = reference3(&x, &p);
                    assert_close(got, &want, 1e-6);
                    if kind == PoolKind::Max {
                        let m = MaxPoolWithIndices {
                            pool: p.clone(),
                            column_major: false,
                        };
                        let r = eval_op(&m, std::slice::from_ref(&x)).unwrap();
                        assert_eq!(r[1].to_i64_vec(), want_idx, "{p:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn integer_max_pool_and_column_major_indices() {
        let v: Vec<u8> = (0..2 * 25).map(|i| (i * 37 % 101) as u8).collect();
        let x = Tensor::from_vec(&[2, 1, 5, 5], v.clone()).unwrap();
        let p = Pool {
            kind: PoolKind::Max,
            kernel: vec![2, 2],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            padding: Padding::Valid,
            ceil_mode: false,
            channels_last: false,
        };
        let m = MaxPoolWithIndices {
            pool: p.clone(),
            column_major: true,
        };
        let r = eval_op(&m, std::slice::from_ref(&x)).unwrap();
        assert_eq!(r[0].dtype(), DType::U8);
        let y = r[0].as_slice::<u8>().unwrap();
        let ind = r[1].to_i64_vec();
        for pl in 0..2 {
            for oy in 0..2 {
                for ox in 0..2 {
                    let o = pl * 4 + oy * 2 + ox;
                    let (mut best, mut at) = (0u8, (0, 0));
                    for ky in 0..2 {
                        for kx in 0..2 {
                            let (iy, ix) = (oy * 2 + ky, ox * 2 + kx);
                            let val = v[pl * 25 + iy * 5 + ix];
                            if (ky, kx) == (0, 0) || val > best {
                                best = val;
                                at = (iy, ix);
                            }
                        }
                    }
                    assert_eq!(y[o], best);
                    // Column-major within the plane, plus the plane's offset.
                    assert_eq!(ind[o], (pl * 25 + at.1 * 5 + at.0) as i64);
                }
            }
        }
        // The plain op on u8 agrees.
        let plain = &eval_op(&p, &[x]).unwrap()[0];
        assert_eq!(plain.as_slice::<u8>().unwrap(), y);
    }

    #[test]
    fn two_d_equals_the_2d_kernel() {
        let x = Tensor::from_vec(&[2, 3, 9, 8], lin(2 * 3 * 9 * 8, 0.5)).unwrap();
        for kind in [
            PoolKind::Max,
            PoolKind::Avg {
                count_include_pad: false,
            },
            PoolKind::Avg {
                count_include_pad: true,
            },
        ] {
            for (padding, ceil) in [
                (Padding::Explicit(vec![1, 0, 1, 2]), false),
                (Padding::SameLower, false),
                (Padding::Valid, true),
            ] {
                // The kernels differ on purpose there (see `PoolNd::include_pad`).
                if ceil
                    && kind
                        == (PoolKind::Avg {
                            count_include_pad: true,
                        })
                {
                    continue;
                }
                let p = Pool {
                    kind,
                    kernel: vec![3, 2],
                    strides: vec![2, 2],
                    dilations: vec![1, 2],
                    padding,
                    ceil_mode: ceil,
                    channels_last: false,
                };
                let fast = &eval_op(&p, std::slice::from_ref(&x)).unwrap()[0];
                let f = Fact::konst(x.clone());
                let k = PoolNd::new(&p, &f, None).unwrap();
                let nd = &run_kernel(
                    &k,
                    std::slice::from_ref(&x),
                    &[(DType::F32, fast.shape().to_vec())],
                )[0];
                assert_close(nd, fast, 1e-6);
            }
        }
    }

    #[test]
    fn lp_pool_is_the_p_norm_of_the_window() {
        let x = Tensor::from_vec(&[1, 1, 4], vec![3f32, -4., 1., 2.]).unwrap();
        let pool = Pool {
            kind: PoolKind::Avg {
                count_include_pad: false,
            },
            kernel: vec![2],
            strides: vec![2],
            dilations: vec![1],
            padding: Padding::Explicit(vec![1, 1]),
            ceil_mode: false,
            channels_last: false,
        };
        let y = &eval_op(
            &LpPool {
                pool: pool.clone(),
                p: 2,
            },
            std::slice::from_ref(&x),
        )
        .unwrap()[0];
        // Windows (pad, 3), (-4, 1), (2, pad).
        let want = Tensor::from_vec(&[1, 1, 3], vec![3f32, 17f32.sqrt(), 2.]).unwrap();
        assert_close(y, &want, 1e-6);
        let y = &eval_op(&LpPool { pool, p: 1 }, &[x]).unwrap()[0];
        assert_close(
            y,
            &Tensor::from_vec(&[1, 1, 3], vec![3f32, 5., 2.]).unwrap(),
            1e-6,
        );
    }
}
