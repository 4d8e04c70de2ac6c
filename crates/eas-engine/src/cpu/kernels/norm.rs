//! Normalization and softmax kernels: rows are contiguous when the normalized axis is the
//! last one (the transformer case), which gets a dedicated loop.

use super::{PAR_MIN_ELEMS, fastmath};
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum, Float};
use crate::ir::Fact;
use crate::ops::{
    Activation, BatchNorm, BatchNormTraining, ChannelAffine, LayerNorm, Op, Softmax, norm_axis,
};
use crate::{Error, Result};
use rayon::prelude::*;

#[derive(Debug)]
struct BatchNormKernel {
    dtype: DType,
    channels: usize,
    inner: usize,
    epsilon: f32,
}

fn batch_norm_t<T: Float>(k: &BatchNormKernel, inputs: &[TensorView], out: &mut [T]) -> Result<()> {
    let x = inputs[0].as_slice::<T>()?;
    let p: Vec<&[T]> = inputs[1..5]
        .iter()
        .map(|v| v.as_slice::<T>())
        .collect::<Result<_>>()?;
    if p.iter().any(|s| s.len() != k.channels) {
        return Err(Error::shape(
            "BatchNormalization",
            "parameter length differs from the channel count",
        ));
    }
    let (scale, bias, mean, var) = (p[0], p[1], p[2], p[3]);
    let inner = k.inner.max(1);
    for (i, (o, xi)) in out.chunks_mut(inner).zip(x.chunks(inner)).enumerate() {
        let c = i % k.channels;
        let a = Datum::to_f64(scale[c]) / (Datum::to_f64(var[c]) + k.epsilon as f64).sqrt();
        let b = Datum::to_f64(bias[c]) - Datum::to_f64(mean[c]) * a;
        let (a, b) = (<T as Datum>::from_f64(a), <T as Datum>::from_f64(b));
        for (o, &v) in o.iter_mut().zip(xi) {
            *o = v * a + b;
        }
    }
    Ok(())
}

impl Kernel for BatchNormKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_float!(self.dtype, T => batch_norm_t::<T>(self, inputs, outputs[0].as_slice_mut()?),
            else => Err(Error::dtype("BatchNormalization", format!("{}", self.dtype))))
    }
}

fn batch_norm(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let b = op_as::<BatchNorm>(op)?;
    let x = concrete(&inputs[0])?;
    Ok(Box::new(BatchNormKernel {
        dtype: inputs[0].dtype,
        channels: x[1],
        inner: x[2..].iter().product(),
        epsilon: b.epsilon,
    }))
}

#[derive(Debug)]
struct BatchNormTrainingKernel {
    dtype: DType,
    n: usize,
    channels: usize,
    inner: usize,
    epsilon: f32,
    momentum: f32,
}

fn batch_norm_training_t<T: Float>(
    k: &BatchNormTrainingKernel,
    inputs: &[TensorView],
    outputs: &mut [TensorViewMut],
) -> Result<()> {
    let x = inputs[0].as_slice::<T>()?;
    let p: Vec<&[T]> = inputs[1..5]
        .iter()
        .map(|v| v.as_slice::<T>())
        .collect::<Result<_>>()?;
    let (c, inner) = (k.channels, k.inner);
    if p.iter().any(|s| s.len() != c) || x.len() != k.n * c * inner || outputs.len() != 3 {
        return Err(Error::shape(
            "BatchNormalization",
            "parameter or output sizes differ from the channel count",
        ));
    }
    let count = (k.n * inner) as f64;
    // Per-channel batch mean and biased variance, in f64.
    let mut mean = vec![0f64; c];
    let mut var = vec![0f64; c];
    for (i, xi) in x.chunks(inner.max(1)).enumerate() {
        mean[i % c] += xi.iter().fold(0f64, |a, &v| a + Datum::to_f64(v));
    }
    mean.iter_mut().for_each(|m| *m /= count);
    for (i, xi) in x.chunks(inner.max(1)).enumerate() {
        let m = mean[i % c];
        var[i % c] += xi.iter().fold(0f64, |a, &v| {
            let d = Datum::to_f64(v) - m;
            a + d * d
        });
    }
    var.iter_mut().for_each(|v| *v /= count);
    let (scale, bias, in_mean, in_var) = (p[0], p[1], p[2], p[3]);
    let y = outputs[0].as_slice_mut::<T>()?;
    for (i, (o, xi)) in y
        .chunks_mut(inner.max(1))
        .zip(x.chunks(inner.max(1)))
        .enumerate()
    {
        let ch = i % c;
        let a = Datum::to_f64(scale[ch]) / (var[ch] + k.epsilon as f64).sqrt();
        let b = Datum::to_f64(bias[ch]) - mean[ch] * a;
        for (o, &v) in o.iter_mut().zip(xi) {
            *o = <T as Datum>::from_f64(Datum::to_f64(v) * a + b);
        }
    }
    let mo = k.momentum as f64;
    for (slot, (batch, old)) in [(1, (&mean, in_mean)), (2, (&var, in_var))] {
        for ((o, &b), &r) in outputs[slot]
            .as_slice_mut::<T>()?
            .iter_mut()
            .zip(batch)
            .zip(old)
        {
            *o = <T as Datum>::from_f64(Datum::to_f64(r) * mo + b * (1.0 - mo));
        }
    }
    Ok(())
}

impl Kernel for BatchNormTrainingKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_float!(self.dtype, T => batch_norm_training_t::<T>(self, inputs, outputs),
            else => Err(Error::dtype("BatchNormalization", format!("{}", self.dtype))))
    }
}

fn batch_norm_training(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let b = op_as::<BatchNormTraining>(op)?;
    let x = concrete(&inputs[0])?;
    Ok(Box::new(BatchNormTrainingKernel {
        dtype: inputs[0].dtype,
        n: x[0],
        channels: x[1],
        inner: x[2..].iter().product(),
        epsilon: b.epsilon,
        momentum: b.momentum,
    }))
}

#[derive(Debug)]
struct LayerNormKernel {
    dtype: DType,
    inner: usize,
    epsilon: f32,
}

fn layer_norm_t<T: Float + Send + Sync>(
    k: &LayerNormKernel,
    inputs: &[TensorView],
    out: &mut [T],
) -> Result<()> {
    let x = inputs[0].as_slice::<T>()?;
    let scale = inputs[1].as_slice::<T>()?;
    let bias = match inputs.get(2) {
        Some(b) => Some(b.as_slice::<T>()?),
        None => None,
    };
    let n = k.inner;
    if n == 0 {
        return Ok(());
    }
    let ok = |s: &[T]| s.len() == n || s.len() == 1;
    if !ok(scale) || bias.is_some_and(|b| !ok(b)) {
        return Err(Error::unsupported(
            "LayerNormalization scale/bias not of the normalized size",
        ));
    }
    let eps = k.epsilon as f64;
    let row = |o: &mut [T], xr: &[T]| {
        let mean = xr.iter().fold(0f64, |a, &v| a + Datum::to_f64(v)) / n as f64;
        let var = xr.iter().fold(0f64, |a, &v| {
            let d = Datum::to_f64(v) - mean;
            a + d * d
        }) / n as f64;
        let inv = <T as Datum>::from_f64(1.0 / (var + eps).sqrt());
        let m = <T as Datum>::from_f64(mean);
        for (j, (o, &v)) in o.iter_mut().zip(xr).enumerate() {
            let s = scale[if scale.len() == 1 { 0 } else { j }];
            let b = bias.map_or(T::ZERO, |b| b[if b.len() == 1 { 0 } else { j }]);
            *o = (v - m) * inv * s + b;
        }
    };
    if out.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(o, xr)| row(o, xr));
    } else {
        for (o, xr) in out.chunks_mut(n).zip(x.chunks(n)) {
            row(o, xr);
        }
    }
    Ok(())
}

/// f32 with full-length scale (and bias): the vectorized row kernel, rows in parallel only
/// when the tensor is large. Returns false when the case is not that one.
fn layer_norm_f32(
    k: &LayerNormKernel,
    inputs: &[TensorView],
    out: &mut TensorViewMut,
) -> Result<bool> {
    let n = k.inner;
    if k.dtype != DType::F32 || n == 0 {
        return Ok(false);
    }
    let x = inputs[0].as_slice::<f32>()?;
    let scale = inputs[1].as_slice::<f32>()?;
    let bias = match inputs.get(2) {
        Some(b) => Some(b.as_slice::<f32>()?),
        None => None,
    };
    if scale.len() != n || bias.is_some_and(|b| b.len() != n) {
        return Ok(false);
    }
    let out = out.as_slice_mut::<f32>()?;
    let eps = k.epsilon;
    if out.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
        let rows = (PAR_MIN_ELEMS / 4).div_ceil(n).max(1) * n;
        out.par_chunks_mut(rows)
            .zip(x.par_chunks(rows))
            .for_each(|(o, x)| fastmath::layer_norm_rows(x, o, scale, bias, eps));
    } else {
        fastmath::layer_norm_rows(x, out, scale, bias, eps);
    }
    Ok(true)
}

impl Kernel for LayerNormKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        if let [_, mean, inv] = outputs {
            crate::dispatch_float!(self.dtype, T => layer_norm_stats::<T>(self, inputs[0].as_slice()?, mean, inv)?,
                else => return Err(Error::dtype("LayerNormalization", format!("{}", self.dtype))));
        }
        if layer_norm_f32(self, inputs, &mut outputs[0])? {
            return Ok(());
        }
        crate::dispatch_float!(self.dtype, T => layer_norm_t::<T>(self, inputs, outputs[0].as_slice_mut()?),
            else => Err(Error::dtype("LayerNormalization", format!("{}", self.dtype))))
    }
}

/// The optional Mean and InvStdDev outputs, per row in f64 (as `layer_norm_t` computes
/// them), stored in the outputs' dtype.
fn layer_norm_stats<T: Float>(
    k: &LayerNormKernel,
    x: &[T],
    mean: &mut TensorViewMut,
    inv: &mut TensorViewMut,
) -> Result<()> {
    let n = k.inner;
    let rows = x.len().checked_div(n).unwrap_or(0);
    if mean.len() != rows || inv.len() != rows || mean.dtype != inv.dtype {
        return Err(Error::shape(
            "LayerNormalization",
            "Mean/InvStdDev do not have one element per row",
        ));
    }
    let eps = k.epsilon as f64;
    let stats: Vec<(f64, f64)> = x
        .chunks(n.max(1))
        .take(rows)
        .map(|xr| {
            let m = xr.iter().fold(0f64, |a, &v| a + Datum::to_f64(v)) / n as f64;
            let var = xr.iter().fold(0f64, |a, &v| {
                let d = Datum::to_f64(v) - m;
                a + d * d
            }) / n as f64;
            (m, 1.0 / (var + eps).sqrt())
        })
        .collect();
    crate::dispatch_float!(mean.dtype, U => {
        for (o, s) in mean.as_slice_mut::<U>()?.iter_mut().zip(&stats) {
            *o = <U as Datum>::from_f64(s.0);
        }
        for (o, s) in inv.as_slice_mut::<U>()?.iter_mut().zip(&stats) {
            *o = <U as Datum>::from_f64(s.1);
        }
        Ok(())
    }, else => Err(Error::dtype("LayerNormalization", format!("statistics in {}", mean.dtype))))
}

fn layer_norm(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let l = op_as::<LayerNorm>(op)?;
    let x = concrete(&inputs[0])?;
    let a = norm_axis("LayerNormalization", l.axis, x.len())?;
    Ok(Box::new(LayerNormKernel {
        dtype: inputs[0].dtype,
        inner: x[a..].iter().product(),
        epsilon: l.epsilon,
    }))
}

#[derive(Debug)]
struct SoftmaxKernel {
    dtype: DType,
    log: bool,
    axis_len: usize,
    inner: usize,
}

fn softmax_t<T: Float + Send + Sync>(k: &SoftmaxKernel, x: &[T], out: &mut [T]) {
    let (n, inner) = (k.axis_len, k.inner);
    if n == 0 || inner == 0 {
        return;
    }
    let block = n * inner;
    let run_block = |o: &mut [T], xb: &[T]| {
        for j in 0..inner {
            let at = |i: usize| i * inner + j;
            let mut mx = T::neg_infinity();
            for i in 0..n {
                let v = xb[at(i)];
                if v > mx {
                    mx = v;
                }
            }
            if mx == T::neg_infinity() {
                mx = T::ZERO;
            }
            let mut sum = T::ZERO;
            for i in 0..n {
                let e = (xb[at(i)] - mx).exp();
                o[at(i)] = e;
                sum = sum + e;
            }
            if k.log {
                let ls = sum.ln();
                for i in 0..n {
                    o[at(i)] = xb[at(i)] - mx - ls;
                }
            } else {
                let inv = T::ONE / sum;
                for i in 0..n {
                    o[at(i)] = o[at(i)] * inv;
                }
            }
        }
    };
    if out.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
        out.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(o, xb)| run_block(o, xb));
    } else {
        for (o, xb) in out.chunks_mut(block).zip(x.chunks(block)) {
            run_block(o, xb);
        }
    }
}

impl Kernel for SoftmaxKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        // Contiguous f32 rows (the usual last-axis case): the vectorized row kernel.
        if self.dtype == DType::F32 && self.inner == 1 && self.axis_len > 0 {
            let (x, out) = (
                inputs[0].as_slice::<f32>()?,
                outputs[0].as_slice_mut::<f32>()?,
            );
            let n = self.axis_len;
            let log = self.log;
            if out.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
                let rows = (PAR_MIN_ELEMS / 4).div_ceil(n).max(1) * n;
                out.par_chunks_mut(rows)
                    .zip(x.par_chunks(rows))
                    .for_each(|(o, x)| fastmath::softmax_rows(x, o, n, log));
            } else {
                fastmath::softmax_rows(x, out, n, log);
            }
            return Ok(());
        }
        crate::dispatch_float!(self.dtype, T => {
            softmax_t::<T>(self, inputs[0].as_slice()?, outputs[0].as_slice_mut()?);
            Ok(())
        }, else => Err(Error::dtype("Softmax", format!("{}", self.dtype))))
    }
}

fn softmax(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let s = op_as::<Softmax>(op)?;
    let x = concrete(&inputs[0])?;
    let a = norm_axis(s.name(), s.axis, x.len())?;
    let (axis_len, inner) = if s.coerce_2d {
        (x[a..].iter().product(), 1)
    } else {
        (x[a], x[a + 1..].iter().product())
    };
    Ok(Box::new(SoftmaxKernel {
        dtype: inputs[0].dtype,
        log: s.log,
        axis_len,
        inner,
    }))
}

/// `ChannelAffine`: runs of `inner` elements that share one channel's scale and shift
/// (NCHW-like); when `inner` is short (NHWC-like), rows of `channels * inner` elements
/// against scale and shift expanded to that length at plan time. The activation runs on
/// each finished run or row while it is in cache. Work splits over threads by whole runs.
#[derive(Debug)]
struct ChannelAffineKernel {
    act: Activation,
    channels: usize,
    inner: usize,
    /// Scale and shift per element of a `channels * inner` row (constant parameters with a
    /// short `inner`).
    expanded: Option<(Vec<f32>, Vec<f32>)>,
    avx512: bool,
}

/// Runs shorter than this take the expanded per-element parameters.
const AFFINE_MIN_RUN: usize = 64;

impl ChannelAffineKernel {
    /// Elements of one unit of work: a row (expanded) or a run.
    fn unit(&self) -> usize {
        if self.expanded.is_some() {
            self.channels * self.inner
        } else {
            self.inner
        }
    }

    /// `o = act(x * s + t)` for the units starting at unit `first`, with AVX-512 when the
    /// CPU has it (the loops are written to vectorize; the baseline target has SSE2 only).
    fn units(&self, first: usize, x: &[f32], o: &mut [f32], s: &[f32], t: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            #[target_feature(enable = "avx512f")]
            fn avx512(
                k: &ChannelAffineKernel,
                first: usize,
                x: &[f32],
                o: &mut [f32],
                s: &[f32],
                t: &[f32],
            ) {
                k.units_impl(first, x, o, s, t)
            }
            // SAFETY: the CPU has AVX-512F (checked when the kernel was built).
            return unsafe { avx512(self, first, x, o, s, t) };
        }
        self.units_impl(first, x, o, s, t)
    }

    #[inline(always)]
    fn units_impl(&self, first: usize, x: &[f32], o: &mut [f32], s: &[f32], t: &[f32]) {
        let n = self.unit();
        match &self.expanded {
            Some((s, t)) => {
                for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                    for (((o, &x), &s), &t) in o.iter_mut().zip(x).zip(s).zip(t) {
                        *o = x * s + t;
                    }
                    super::conv::apply_act(self.act, o);
                }
            }
            None => {
                for (k, (o, x)) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)).enumerate() {
                    let c = (first + k) % self.channels;
                    let (s, t) = (s[c], t[c]);
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = x * s + t;
                    }
                    super::conv::apply_act(self.act, o);
                }
            }
        }
    }
}

impl Kernel for ChannelAffineKernel {
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let x = inputs[0].as_slice::<f32>()?;
        let (s, t) = (inputs[1].as_slice::<f32>()?, inputs[2].as_slice::<f32>()?);
        let o = outputs[0].as_slice_mut::<f32>()?;
        let n = self.unit();
        if s.len() != self.channels || t.len() != self.channels || x.len() != o.len() {
            return Err(Error::shape(
                "ChannelAffine",
                "parameters or output mismatch",
            ));
        }
        if n == 0 || o.len() % n != 0 {
            return if o.is_empty() {
                Ok(())
            } else {
                Err(Error::shape("ChannelAffine", "input not whole rows"))
            };
        }
        if o.len() >= PAR_MIN_ELEMS && ctx.threads > 1 {
            let units = o.len() / n;
            let per = units.div_ceil(ctx.threads * 4).max(1) * n;
            o.par_chunks_mut(per)
                .zip(x.par_chunks(per))
                .enumerate()
                .for_each(|(i, (o, x))| self.units(i * per / n, x, o, s, t));
        } else {
            self.units(0, x, o, s, t);
        }
        Ok(())
    }
}

fn channel_affine(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let a = op_as::<ChannelAffine>(op)?;
    let x = concrete(&inputs[0])?;
    let channels = *x
        .get(a.axis)
        .ok_or_else(|| Error::shape("ChannelAffine", "axis out of range"))?;
    let inner: usize = x[a.axis + 1..].iter().product();
    // Expanded parameters need constants (which the fusing pass guarantees).
    let konst = |f: &Fact| {
        f.konst
            .as_ref()
            .and_then(|t| t.as_slice::<f32>().ok())
            .filter(|v| v.len() == channels)
            .map(|v| {
                v.iter()
                    .flat_map(|&p| std::iter::repeat_n(p, inner))
                    .collect::<Vec<f32>>()
            })
    };
    let expanded = match (inner < AFFINE_MIN_RUN, konst(&inputs[1]), konst(&inputs[2])) {
        (true, Some(s), Some(t)) => Some((s, t)),
        _ => None,
    };
    Ok(Box::new(ChannelAffineKernel {
        act: a.act,
        channels,
        inner,
        expanded,
        #[cfg(target_arch = "x86_64")]
        avx512: std::arch::is_x86_feature_detected!("avx512f"),
        #[cfg(not(target_arch = "x86_64"))]
        avx512: false,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<ChannelAffine>(channel_affine);
    r.insert::<BatchNorm>(batch_norm);
    r.insert::<BatchNormTraining>(batch_norm_training);
    r.insert::<LayerNorm>(layer_norm);
    r.insert::<Softmax>(softmax);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::{Tensor, assert_close};

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    #[test]
    fn softmax_and_log_softmax() {
        let x = t(&[2, 3], vec![1., 2., 3., 0., 0., 0.]);
        let e = |v: f32| v.exp();
        let s = e(1.) + e(2.) + e(3.);
        let y = &eval_op(
            &Softmax {
                axis: -1,
                log: false,
                coerce_2d: false,
            },
            std::slice::from_ref(&x),
        )
        .unwrap()[0];
        assert_close(
            y,
            &t(
                &[2, 3],
                vec![e(1.) / s, e(2.) / s, e(3.) / s, 1. / 3., 1. / 3., 1. / 3.],
            ),
            1e-6,
        );
        let y = &eval_op(
            &Softmax {
                axis: 1,
                log: true,
                coerce_2d: false,
            },
            std::slice::from_ref(&x),
        )
        .unwrap()[0];
        assert_close(
            y,
            &t(
                &[2, 3],
                vec![
                    1. - s.ln(),
                    2. - s.ln(),
                    3. - s.ln(),
                    -(3f32.ln()),
                    -(3f32.ln()),
                    -(3f32.ln()),
                ],
            ),
            1e-6,
        );
        // axis 0 (strided)
        let y = &eval_op(
            &Softmax {
                axis: 0,
                log: false,
                coerce_2d: false,
            },
            std::slice::from_ref(&x),
        )
        .unwrap()[0];
        let c = |a: f32| e(a) / (e(a) + 1.);
        assert_close(
            y,
            &t(
                &[2, 3],
                vec![c(1.), c(2.), c(3.), 1. - c(1.), 1. - c(2.), 1. - c(3.)],
            ),
            1e-6,
        );
        // opset < 13: flatten from axis 0
        let y = &eval_op(
            &Softmax {
                axis: 0,
                log: false,
                coerce_2d: true,
            },
            &[x],
        )
        .unwrap()[0];
        let tot = s + 3.;
        assert_close(
            y,
            &t(
                &[2, 3],
                vec![
                    e(1.) / tot,
                    e(2.) / tot,
                    e(3.) / tot,
                    1. / tot,
                    1. / tot,
                    1. / tot,
                ],
            ),
            1e-6,
        );
    }

    #[test]
    fn layer_norm_and_batch_norm() {
        let x = t(&[2, 2], vec![1., 3., -1., 1.]);
        let y = &eval_op(
            &LayerNorm {
                stats: None,
                axis: -1,
                epsilon: 0.0,
            },
            &[x.clone(), t(&[2], vec![2., 1.]), t(&[2], vec![0., 10.])],
        )
        .unwrap()[0];
        assert_close(y, &t(&[2, 2], vec![-2., 11., -2., 11.]), 1e-6);
        let x = t(&[1, 2, 2], vec![1., 2., 3., 4.]);
        let p = |a: f32, b: f32| t(&[2], vec![a, b]);
        let y = &eval_op(
            &BatchNorm { epsilon: 0.0 },
            &[x, p(2., 1.), p(1., 0.), p(1., 3.), p(4., 1.)],
        )
        .unwrap()[0];
        assert_close(y, &t(&[1, 2, 2], vec![1., 2., 0., 1.]), 1e-6);
    }

    #[test]
    fn layer_norm_stats_outputs() {
        // Rows of 3 from axis 1 of [2, 3]; stats in f64 stash dtype, shaped [2, 1].
        let x = t(&[2, 3], vec![1., 2., 6., -1., 0., 1.]);
        let (w, b) = (t(&[3], vec![1.; 3]), t(&[3], vec![0.; 3]));
        let ln = LayerNorm {
            axis: 1,
            epsilon: 0.5,
            stats: Some(DType::F64),
        };
        let r = eval_op(&ln, &[x.clone(), w.clone(), b.clone()]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[1].shape(), r[1].dtype()), (&[2usize, 1][..], DType::F64));
        let (m0, v0) = (3.0, (4.0 + 1.0 + 9.0) / 3.0);
        let (m1, v1) = (0.0, 2.0 / 3.0);
        assert_eq!(r[1].to_f64_vec(), vec![m0, m1]);
        let inv = r[2].to_f64_vec();
        assert!((inv[0] - 1.0 / (v0 + 0.5f64).sqrt()).abs() < 1e-12);
        assert!((inv[1] - 1.0 / (v1 + 0.5f64).sqrt()).abs() < 1e-12);
        // Y is the plain op's.
        let plain = LayerNorm { stats: None, ..ln };
        assert_close(&r[0], &eval_op(&plain, &[x, w, b]).unwrap()[0], 1e-6);
    }

    #[test]
    fn batch_norm_training_uses_batch_statistics() {
        // N=2, C=2, 2 elements per channel and image.
        let x = t(&[2, 2, 2], vec![1., 3., 10., 10., 5., 7., 20., 40.]);
        let p = |v: [f32; 2]| t(&[2], v.to_vec());
        let ins = [x, p([1., 2.]), p([0., 1.]), p([1., 1.]), p([4., 4.])];
        let r = eval_op(
            &BatchNormTraining {
                epsilon: 0.0,
                momentum: 0.9,
            },
            &ins,
        )
        .unwrap();
        // Channel 0: {1, 3, 5, 7}: mean 4, biased var 5; channel 1: {10, 10, 20, 40}: 20, 150.
        let (m, v) = ([4.0f64, 20.0], [5.0f64, 150.0]);
        let want_mean: Vec<f64> = (0..2).map(|c| 0.9 + 0.1 * m[c]).collect();
        let want_var: Vec<f64> = (0..2).map(|c| 0.9 * 4.0 + 0.1 * v[c]).collect();
        for (g, w) in r[1].to_f64_vec().iter().zip(&want_mean) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        for (g, w) in r[2].to_f64_vec().iter().zip(&want_var) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
        let y = r[0].to_f64_vec();
        let (sc, bi) = ([1.0, 2.0], [0.0, 1.0]);
        for (i, xv) in [1., 3., 10., 10., 5., 7., 20., 40.].iter().enumerate() {
            let c = (i / 2) % 2;
            let want = (xv - m[c]) / v[c].sqrt() * sc[c] + bi[c];
            assert!((y[i] - want).abs() < 1e-5, "{i}: {} vs {want}", y[i]);
        }
    }
}
