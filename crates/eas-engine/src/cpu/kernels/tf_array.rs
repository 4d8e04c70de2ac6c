//! CPU kernels of the TensorFlow-semantics ops in `ops/tf_array.rs`. Data movement is done on
//! element bytes, so one kernel serves every dtype.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::tf_array::{
    Resolved, TfConvTranspose, TfOneHot, TfResize, TfStridedSlice, resolve_strided,
};
use crate::{Error, Result};

fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Visits every index of `dims` in row-major order, keeping one running offset per operand
/// (`steps[k][axis]` = how far operand k moves when `axis` advances by one).
fn odometer(dims: &[usize], starts: &[i64], steps: &[Vec<i64>], mut f: impl FnMut(&[i64])) {
    if dims.contains(&0) {
        return;
    }
    let n = dims.len();
    let mut idx = vec![0usize; n];
    let mut off: Vec<i64> = starts.to_vec();
    loop {
        f(&off);
        let mut a = n;
        loop {
            if a == 0 {
                return;
            }
            a -= 1;
            idx[a] += 1;
            for (o, s) in off.iter_mut().zip(steps) {
                *o += s[a];
            }
            if idx[a] < dims[a] {
                break;
            }
            for (o, s) in off.iter_mut().zip(steps) {
                *o -= s[a] * dims[a] as i64;
            }
            idx[a] = 0;
        }
    }
}

// ---- StridedSlice -------------------------------------------------------------------------

#[derive(Debug)]
struct StridedSliceK {
    esize: usize,
    lens: Vec<usize>,
    start: i64,
    steps: Vec<i64>,
}

impl Kernel for StridedSliceK {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (x, o) = (inputs[0].bytes, &mut *outputs[0].bytes);
        let e = self.esize;
        let mut k = 0usize;
        odometer(
            &self.lens,
            &[self.start],
            std::slice::from_ref(&self.steps),
            |off| {
                let s = off[0] as usize * e;
                o[k * e..(k + 1) * e].copy_from_slice(&x[s..s + e]);
                k += 1;
            },
        );
        Ok(())
    }
}

fn build_strided(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<TfStridedSlice>(op)?;
    let shape = concrete(&inputs[0])?;
    let spec = op.dense(shape.len())?;
    let (res, _) = resolve_strided(&spec, &shape)?;
    let st = strides_of(&shape);
    let start = res.iter().zip(&st).map(|(r, &s)| r.start * s as i64).sum();
    Ok(Box::new(StridedSliceK {
        esize: inputs[0].dtype.size(),
        lens: res.iter().map(|r: &Resolved| r.len).collect(),
        start,
        steps: res
            .iter()
            .zip(&st)
            .map(|(r, &s)| r.step * s as i64)
            .collect(),
    }))
}

// ---- OneHot -------------------------------------------------------------------------------

#[derive(Debug)]
struct OneHotK {
    outer: usize,
    depth: usize,
    inner: usize,
    esize: usize,
    idx: DType,
}

impl Kernel for OneHotK {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let idx: Vec<i64> = crate::dispatch_any!(self.idx, T => {
            inputs[0].as_slice::<T>()?.iter().map(|v| Datum::to_i64(*v)).collect()
        });
        let (on, off) = (inputs[1].bytes, inputs[2].bytes);
        let e = self.esize;
        let o = &mut *outputs[0].bytes;
        for a in 0..self.outer {
            for d in 0..self.depth {
                for i in 0..self.inner {
                    let hit = idx[a * self.inner + i] == d as i64;
                    let k = ((a * self.depth + d) * self.inner + i) * e;
                    o[k..k + e].copy_from_slice(if hit { on } else { off });
                }
            }
        }
        Ok(())
    }
}

fn build_onehot(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<TfOneHot>(op)?;
    let shape = concrete(&inputs[0])?;
    let a = op.axis_for(shape.len())?;
    Ok(Box::new(OneHotK {
        outer: shape[..a].iter().product(),
        depth: op.depth,
        inner: shape[a..].iter().product(),
        esize: inputs[1].dtype.size(),
        idx: inputs[0].dtype,
    }))
}

// ---- Resize -------------------------------------------------------------------------------

/// Per output coordinate: the two source indices and the weight of the upper one (nearest:
/// lower = upper, weight 0).
fn resize_axis(op: &TfResize, input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = op.scale(input, output);
    let last = input as i64 - 1;
    (0..output)
        .map(|i| {
            if op.bilinear {
                let x = if op.half_pixel_centers {
                    (i as f32 + 0.5) * scale - 0.5
                } else {
                    i as f32 * scale
                };
                let f = x.floor();
                let lo = (f as i64).max(0).min(last) as usize;
                let hi = (x.ceil() as i64).min(last).max(0) as usize;
                (lo, hi, x - f)
            } else {
                let x = if op.half_pixel_centers {
                    (i as f32 + 0.5) * scale
                } else {
                    i as f32 * scale
                };
                let j = if op.align_corners {
                    x.round()
                } else {
                    x.floor()
                } as i64;
                let j = j.min(last).max(0) as usize;
                (j, j, 0.0)
            }
        })
        .collect()
}

#[derive(Debug)]
struct ResizeK {
    n: usize,
    c: usize,
    in_hw: (usize, usize),
    ys: Vec<(usize, usize, f32)>,
    xs: Vec<(usize, usize, f32)>,
}

impl Kernel for ResizeK {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let x = inputs[0].as_slice::<f32>()?;
        let o = outputs[0].as_slice_mut::<f32>()?;
        let (h, w) = self.in_hw;
        let c = self.c;
        let mut k = 0;
        for n in 0..self.n {
            let img = &x[n * h * w * c..(n + 1) * h * w * c];
            for &(y0, y1, fy) in &self.ys {
                for &(x0, x1, fx) in &self.xs {
                    for ch in 0..c {
                        let p = |y: usize, xx: usize| img[(y * w + xx) * c + ch];
                        let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * fx;
                        let bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * fx;
                        o[k] = top + (bottom - top) * fy;
                        k += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

fn build_resize(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<TfResize>(op)?;
    let s = concrete(&inputs[0])?;
    if s[1] == 0 || s[2] == 0 {
        return Err(Error::shape("Resize", "empty input image"));
    }
    Ok(Box::new(ResizeK {
        n: s[0],
        c: s[3],
        in_hw: (s[1], s[2]),
        ys: resize_axis(op, s[1], op.height),
        xs: resize_axis(op, s[2], op.width),
    }))
}

// ---- Conv2DBackpropInput ------------------------------------------------------------------

#[derive(Debug)]
struct ConvTransposeK {
    op: TfConvTranspose,
    dy: [usize; 4],
    w: [usize; 4],
}

impl Kernel for ConvTransposeK {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (dy, w) = (inputs[0].as_slice::<f32>()?, inputs[1].as_slice::<f32>()?);
        let o = outputs[0].as_slice_mut::<f32>()?;
        o.fill(0.0);
        let [n, oh, ow, co] = self.dy;
        let [kh, kw, ci, _] = self.w;
        let (h, wd) = (self.op.height as i64, self.op.width as i64);
        let (s, d, p) = (self.op.strides, self.op.dilations, self.op.pad);
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = &dy[((b * oh + oy) * ow + ox) * co..][..co];
                    for ky in 0..kh {
                        let y = (oy * s[0] + ky * d[0]) as i64 - p[0] as i64;
                        if y < 0 || y >= h {
                            continue;
                        }
                        for kx in 0..kw {
                            let x = (ox * s[1] + kx * d[1]) as i64 - p[1] as i64;
                            if x < 0 || x >= wd {
                                continue;
                            }
                            let out = &mut o
                                [((b * h as usize + y as usize) * wd as usize + x as usize) * ci..]
                                [..ci];
                            let wk = &w[(ky * kw + kx) * ci * co..][..ci * co];
                            for (c, acc) in out.iter_mut().enumerate() {
                                let row = &wk[c * co..][..co];
                                *acc += row.iter().zip(g).map(|(a, b)| a * b).sum::<f32>();
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn build_conv_transpose(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<TfConvTranspose>(op)?;
    let four = |v: Vec<usize>| -> Result<[usize; 4]> {
        <[usize; 4]>::try_from(v)
            .map_err(|_| Error::shape("Conv2DBackpropInput", "needs 4-D operands"))
    };
    Ok(Box::new(ConvTransposeK {
        op: op.clone(),
        dy: four(concrete(&inputs[0])?)?,
        w: four(concrete(&inputs[1])?)?,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<TfConvTranspose>(build_conv_transpose);
    r.insert::<TfResize>(build_resize);
    r.insert::<TfStridedSlice>(build_strided);
    r.insert::<TfOneHot>(build_onehot);
}
