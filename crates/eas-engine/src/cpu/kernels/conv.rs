//! Convolution (im2col + gemm; 1x1 convs skip im2col; depthwise runs a direct loop) and
//! pooling kernels. 1-D inputs run as 2-D with height 1. f32 and f64.

use super::PAR_MIN_ELEMS;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::matmul::{GemmShape, gemm_float};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum, Float};
use crate::ir::Fact;
use crate::ops::conv::{AxisGeom, geometry};
use crate::ops::{Conv, GlobalPool, Op, Pool, PoolKind};
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
}

impl ConvKernel {
    fn col_rows(&self) -> usize {
        (self.c / self.group) * self.g.h.kernel * self.g.w.kernel
    }
    fn out_plane(&self) -> usize {
        self.g.h.output * self.g.w.output
    }

    fn run_t<T: Float + Send + Sync + 'static>(
        &self,
        ctx: &mut KernelCtx,
        x: &[T],
        w: &[T],
        bias: Option<&[T]>,
        out: &mut [T],
    ) -> Result<()> {
        let (hg, wg) = (self.g.h, self.g.w);
        let (ih, iw, oh, ow) = (hg.input, wg.input, hg.output, wg.output);
        let in_plane = ih * iw;
        let op = self.out_plane();
        let cpg = self.c / self.group;
        let mpg = self.m / self.group;
        let kk = self.col_rows();
        // Output starts as the bias (or zero) so gemm can accumulate into it.
        for (i, o) in out.chunks_mut(op).enumerate() {
            let v = bias.map_or(T::ZERO, |b| b[i % self.m]);
            o.fill(v);
        }
        if self.depthwise {
            let (kh, kw) = (hg.kernel, wg.kernel);
            let planes = out
                .par_chunks_mut(op)
                .with_min_len((PAR_MIN_ELEMS / op.max(1)).max(1));
            planes.enumerate().for_each(|(pi, o)| {
                let ch = pi % self.m;
                let ci = ch / mpg;
                let xin = &x[(pi / self.m * self.c + ci) * in_plane..][..in_plane];
                let wk = &w[ch * kh * kw..][..kh * kw];
                for oy in 0..oh {
                    for ki in 0..kh {
                        let iy =
                            (oy * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
                        if iy < 0 || iy >= ih as isize {
                            continue;
                        }
                        let row = &xin[iy as usize * iw..][..iw];
                        let orow = &mut o[oy * ow..][..ow];
                        for kj in 0..kw {
                            let wv = wk[ki * kw + kj];
                            let off = (kj * wg.dilation) as isize - wg.pad_begin as isize;
                            for (ox, ov) in orow.iter_mut().enumerate() {
                                let ix = (ox * wg.stride) as isize + off;
                                if ix >= 0 && (ix as usize) < iw {
                                    *ov = *ov + wv * row[ix as usize];
                                }
                            }
                        }
                    }
                }
            });
            return Ok(());
        }
        let col: &mut [T] = if self.pointwise {
            &mut []
        } else {
            let bytes = &mut ctx.scratch[..kk * op * std::mem::size_of::<T>()];
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
                let dst = &mut out[(b * self.m + g * mpg) * op..][..mpg * op];
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
                // SAFETY: slices above have exactly the extents the shape describes.
                unsafe {
                    gemm_float(
                        s,
                        dst.as_mut_ptr(),
                        wg_.as_ptr(),
                        rhs.as_ptr(),
                        true,
                        T::ONE,
                        T::ONE,
                        ctx.threads,
                    )
                };
            }
        }
        Ok(())
    }
}

/// col[(ci*kh + ki)*kw + kj][oy*ow + ox] = x[ci][oy*sh - ph + ki*dh][ox*sw - pw + kj*dw] (0 outside).
fn im2col<T: Float + Send + Sync>(x: &[T], col: &mut [T], c: usize, g: Geom2) {
    let (hg, wg) = (g.h, g.w);
    let (ih, iw, oh, ow, kh, kw) = (
        hg.input, wg.input, hg.output, wg.output, hg.kernel, wg.kernel,
    );
    let op = oh * ow;
    let fill_row = |r: usize, dst: &mut [T]| {
        let ci = r / (kh * kw);
        let ki = (r / kw) % kh;
        let kj = r % kw;
        let plane = &x[ci * ih * iw..][..ih * iw];
        for oy in 0..oh {
            let iy = (oy * hg.stride + ki * hg.dilation) as isize - hg.pad_begin as isize;
            let drow = &mut dst[oy * ow..][..ow];
            if iy < 0 || iy >= ih as isize {
                drow.fill(T::ZERO);
                continue;
            }
            let srow = &plane[iy as usize * iw..][..iw];
            let off = (kj * wg.dilation) as isize - wg.pad_begin as isize;
            if wg.stride == 1 && off >= 0 && off as usize + ow <= iw {
                drow.copy_from_slice(&srow[off as usize..off as usize + ow]);
            } else {
                for (ox, d) in drow.iter_mut().enumerate() {
                    let ix = (ox * wg.stride) as isize + off;
                    *d = if ix >= 0 && (ix as usize) < iw {
                        srow[ix as usize]
                    } else {
                        T::ZERO
                    };
                }
            }
        }
    };
    let rows = c * kh * kw;
    let col = &mut col[..rows * op];
    if rows * op >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1 {
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
        if self.pointwise || self.depthwise {
            0
        } else {
            self.col_rows() * self.out_plane() * self.dtype.size()
        }
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        match self.dtype {
            DType::F32 => {
                let bias = if self.has_bias {
                    Some(inputs[2].as_slice::<f32>()?)
                } else {
                    None
                };
                self.run_t::<f32>(
                    ctx,
                    inputs[0].as_slice()?,
                    inputs[1].as_slice()?,
                    bias,
                    outputs[0].as_slice_mut()?,
                )
            }
            DType::F64 => {
                let bias = if self.has_bias {
                    Some(inputs[2].as_slice::<f64>()?)
                } else {
                    None
                };
                self.run_t::<f64>(
                    ctx,
                    inputs[0].as_slice()?,
                    inputs[1].as_slice()?,
                    bias,
                    outputs[0].as_slice_mut()?,
                )
            }
            d => Err(Error::unsupported(format!("Conv on {d} tensors on CPU"))),
        }
    }
}

fn conv(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let c = op_as::<Conv>(op)?;
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
    Ok(Box::new(ConvKernel {
        dtype: inputs[0].dtype,
        n: x[0],
        c: x[1],
        m: w[0],
        group,
        g,
        has_bias: inputs.len() > 2,
        pointwise,
        depthwise,
    }))
}

#[derive(Debug)]
struct PoolKernel {
    dtype: DType,
    kind: PoolKind,
    g: Geom2,
}

impl PoolKernel {
    fn run_t<T: Float + Send + Sync>(&self, x: &[T], out: &mut [T]) {
        let (hg, wg) = (self.g.h, self.g.w);
        let (ih, iw, oh, ow) = (hg.input, wg.input, hg.output, wg.output);
        let plane = |p: usize, o: &mut [T]| {
            let xin = &x[p * ih * iw..][..ih * iw];
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut acc, mut n, mut padded_n) = (
                        if self.kind == PoolKind::Max {
                            T::neg_infinity()
                        } else {
                            T::ZERO
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
                            // Positions inside the explicitly padded area count for
                            // count_include_pad; positions past it (ceil_mode) never do.
                            if iy < (ih + hg.pad_end) as isize && ix < (iw + wg.pad_end) as isize {
                                padded_n += 1;
                            }
                            if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                                continue;
                            }
                            let v = xin[iy as usize * iw + ix as usize];
                            n += 1;
                            acc = match self.kind {
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
                    o[oy * ow + ox] = match self.kind {
                        PoolKind::Max => acc,
                        PoolKind::Avg { count_include_pad } => {
                            let d = if count_include_pad { padded_n } else { n };
                            if d == 0 {
                                T::ZERO
                            } else {
                                acc / <T as Datum>::from_f64(d as f64)
                            }
                        }
                    };
                }
            }
        };
        let op = oh * ow;
        if op == 0 {
            return;
        }
        out.par_chunks_mut(op)
            .with_min_len((PAR_MIN_ELEMS / op).max(1))
            .enumerate()
            .for_each(|(p, o)| plane(p, o));
    }
}

impl Kernel for PoolKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_float!(self.dtype, T => {
            self.run_t::<T>(inputs[0].as_slice()?, outputs[0].as_slice_mut()?);
            Ok(())
        }, else => Err(Error::dtype("Pool", format!("{}", self.dtype))))
    }
}

fn pool(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let p = op_as::<Pool>(op)?;
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
    Ok(Box::new(PoolKernel {
        dtype: inputs[0].dtype,
        kind: p.kind,
        g: geom2(&geo, p.name())?,
    }))
}

#[derive(Debug)]
struct GlobalPoolKernel {
    dtype: DType,
    max: bool,
    plane: usize,
}

fn global_t<T: Float>(max: bool, plane: usize, x: &[T], out: &mut [T]) {
    if plane == 0 {
        out.fill(T::nan());
        return;
    }
    for (o, p) in out.iter_mut().zip(x.chunks(plane)) {
        *o = if max {
            p.iter().copied().fold(
                T::neg_infinity(),
                |a, v| if v > a || v.is_nan() { v } else { a },
            )
        } else {
            let s = p.iter().fold(0f64, |a, &v| a + Datum::to_f64(v));
            <T as Datum>::from_f64(s / plane as f64)
        };
    }
}

impl Kernel for GlobalPoolKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_float!(self.dtype, T => {
            global_t::<T>(self.max, self.plane, inputs[0].as_slice()?, outputs[0].as_slice_mut()?);
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
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Conv>(conv);
    r.insert::<Pool>(pool);
    r.insert::<GlobalPool>(global_pool);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::ops::Padding;
    use crate::tensor::{Tensor, assert_close};

    /// Direct reference convolution (NCHW, groups, dilation, explicit pads).
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
        let [n, c, h, wd] = xs;
        let [m, cg, kh, kw] = ws;
        let oh = (h + 2 * p - ((kh - 1) * d + 1)) / s + 1;
        let ow = (wd + 2 * p - ((kw - 1) * d + 1)) / s + 1;
        let mut out = vec![0f32; n * m * oh * ow];
        let mpg = m / g;
        for bi in 0..n {
            for mo in 0..m {
                let gi = mo / mpg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b.map_or(0.0, |b| b[mo]);
                        for ci in 0..cg {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let iy = (oy * s + ki * d) as isize - p as isize;
                                    let ix = (ox * s + kj * d) as isize - p as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        let cin = gi * cg + ci;
                                        acc += x
                                            [((bi * c + cin) * h + iy as usize) * wd + ix as usize]
                                            * w[((mo * cg + ci) * kh + ki) * kw + kj];
                                    }
                                }
                            }
                        }
                        out[((bi * m + mo) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        let _ = c;
        (out, [n, m, oh, ow])
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
}
