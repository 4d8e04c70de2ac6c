//! Kernels of the index-driven ops (`ops::index`). Pure data movement works on element
//! bytes (any dtype); arithmetic goes through the dtype dispatch macros.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum, Num};
use crate::ir::Fact;
use crate::ops::index::{
    Compress, CumSum, EyeLike, GatherNd, Hardmax, OneHot, ScatterElements, ScatterNd,
    ScatterReduction, TopK, Trilu,
};
use crate::ops::{Op, norm_axis};
use crate::{Error, Result};

/// (outer, axis size, inner) of a shape split at `axis`.
pub(crate) fn axis_split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Row-major strides.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Integer input elements as i64 (indices, axes, k).
pub(crate) fn ints(v: &TensorView) -> Result<Vec<i64>> {
    match v.dtype {
        DType::I64 => Ok(v.as_slice::<i64>()?.to_vec()),
        DType::I32 => Ok(v.as_slice::<i32>()?.iter().map(|&x| x as i64).collect()),
        d => Err(Error::dtype("index", format!("{d} indices"))),
    }
}

/// Resolves a possibly negative index into `0..n`.
fn resolve(op: &str, i: i64, n: usize) -> Result<usize> {
    let j = if i < 0 { i + n as i64 } else { i };
    if j < 0 || j >= n as i64 {
        return Err(Error::bad_input(format!(
            "{op}: index {i} out of range for axis of size {n}"
        )));
    }
    Ok(j as usize)
}

// ---- TopK ----

#[derive(Debug)]
struct TopKKernel {
    dtype: DType,
    largest: bool,
    outer: usize,
    n: usize,
    inner: usize,
    k: usize,
}

fn topk_typed<T: Num>(kr: &TopKKernel, x: &[T], vals: &mut [T], idx: &mut [i64]) {
    let (n, inner, k) = (kr.n, kr.inner, kr.k);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for o in 0..kr.outer {
        for i in 0..inner {
            let at = |j: usize| x[(o * n + j) * inner + i];
            order.clear();
            order.extend(0..n);
            // Stable sort: equal values keep the lower index first. NaN counts as largest.
            let key = |a: T, b: T| {
                a.partial_cmp(&b)
                    .unwrap_or_else(|| a.is_nan_().cmp(&b.is_nan_()))
            };
            if kr.largest {
                order.sort_by(|&a, &b| key(at(b), at(a)));
            } else {
                order.sort_by(|&a, &b| key(at(a), at(b)));
            }
            for (r, &j) in order[..k].iter().enumerate() {
                vals[(o * k + r) * inner + i] = at(j);
                idx[(o * k + r) * inner + i] = j as i64;
            }
        }
    }
}

impl Kernel for TopKKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (v, i) = outputs.split_at_mut(1);
        crate::dispatch_numeric!(self.dtype, T => {
            topk_typed::<T>(self, inputs[0].as_slice::<T>()?, v[0].as_slice_mut::<T>()?, i[0].as_slice_mut::<i64>()?);
            Ok(())
        }, else => Err(Error::dtype("TopK", "bool input")))
    }
}

fn topk(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<TopK>(op)?;
    let shape = concrete(&inputs[0])?;
    let a = norm_axis("TopK", op.axis, shape.len())?;
    let (outer, n, inner) = axis_split(&shape, a);
    let k = concrete(&outputs[0])?[a];
    Ok(Box::new(TopKKernel {
        dtype: inputs[0].dtype,
        largest: op.largest,
        outer,
        n,
        inner,
        k,
    }))
}

// ---- CumSum ----

#[derive(Debug)]
struct CumSumKernel {
    op: CumSum,
    dtype: DType,
    shape: Vec<usize>,
}

fn cumsum_typed<T: Num>(op: &CumSum, x: &[T], o: &mut [T], outer: usize, n: usize, inner: usize) {
    for b in 0..outer {
        for i in 0..inner {
            let mut acc = T::ZERO;
            for s in 0..n {
                let j = if op.reverse { n - 1 - s } else { s };
                let at = (b * n + j) * inner + i;
                if op.exclusive {
                    o[at] = acc;
                    acc = acc.add(x[at]);
                } else {
                    acc = acc.add(x[at]);
                    o[at] = acc;
                }
            }
        }
    }
}

impl Kernel for CumSumKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let axis = *ints(&inputs[1])?
            .first()
            .ok_or_else(|| Error::bad_input("CumSum: empty axis"))?;
        let a = norm_axis("CumSum", axis, self.shape.len())?;
        let (outer, n, inner) = axis_split(&self.shape, a);
        crate::dispatch_numeric!(self.dtype, T => {
            cumsum_typed::<T>(&self.op, inputs[0].as_slice::<T>()?, outputs[0].as_slice_mut::<T>()?, outer, n, inner);
            Ok(())
        }, else => Err(Error::dtype("CumSum", "bool input")))
    }
}

fn cumsum(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(CumSumKernel {
        op: op_as::<CumSum>(op)?.clone(),
        dtype: inputs[0].dtype,
        shape: concrete(&inputs[0])?,
    }))
}

// ---- Trilu ----

#[derive(Debug)]
struct TriluKernel {
    upper: bool,
    dtype: DType,
    rows: usize,
    cols: usize,
}

fn trilu_typed<T: Datum>(kr: &TriluKernel, k: i64, x: &[T], o: &mut [T]) {
    let (r, c) = (kr.rows, kr.cols);
    for (xs, os) in x.chunks(r * c).zip(o.chunks_mut(r * c)) {
        for i in 0..r {
            for j in 0..c {
                let d = j as i64 - i as i64;
                let keep = if kr.upper { d >= k } else { d <= k };
                os[i * c + j] = if keep { xs[i * c + j] } else { T::default() };
            }
        }
    }
}

impl Kernel for TriluKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let k = match inputs.get(1) {
            Some(v) => ints(v)?.first().copied().unwrap_or(0),
            None => 0,
        };
        if self.rows * self.cols == 0 {
            return Ok(());
        }
        crate::dispatch_any!(self.dtype, T => {
            trilu_typed::<T>(self, k, inputs[0].as_slice::<T>()?, outputs[0].as_slice_mut::<T>()?);
            Ok(())
        })
    }
}

fn trilu(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let s = concrete(&inputs[0])?;
    Ok(Box::new(TriluKernel {
        upper: op_as::<Trilu>(op)?.upper,
        dtype: inputs[0].dtype,
        rows: s[s.len() - 2],
        cols: s[s.len() - 1],
    }))
}

// ---- Hardmax ----

#[derive(Debug)]
struct HardmaxKernel {
    dtype: DType,
    outer: usize,
    n: usize,
    inner: usize,
}

impl Kernel for HardmaxKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (outer, n, inner) = (self.outer, self.n, self.inner);
        crate::dispatch_float!(self.dtype, T => {
            let x = inputs[0].as_slice::<T>()?;
            let o = outputs[0].as_slice_mut::<T>()?;
            o.fill(T::ZERO);
            for b in 0..outer {
                for i in 0..inner {
                    let mut best = 0;
                    for j in 1..n {
                        if x[(b * n + j) * inner + i] > x[(b * n + best) * inner + i] {
                            best = j;
                        }
                    }
                    if n > 0 {
                        o[(b * n + best) * inner + i] = T::ONE;
                    }
                }
            }
            Ok(())
        }, else => Err(Error::dtype("Hardmax", "non-float input")))
    }
}

fn hardmax(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let s = concrete(&inputs[0])?;
    let a = norm_axis("Hardmax", op_as::<Hardmax>(op)?.axis, s.len())?;
    let (outer, n, inner) = axis_split(&s, a);
    Ok(Box::new(HardmaxKernel {
        dtype: inputs[0].dtype,
        outer,
        n,
        inner,
    }))
}

// ---- OneHot ----

#[derive(Debug)]
struct OneHotKernel {
    ind_dtype: DType,
    val_dtype: DType,
    outer: usize,
    depth: usize,
    inner: usize,
}

impl Kernel for OneHotKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let ind: Vec<i64> = crate::dispatch_numeric!(self.ind_dtype, T => {
            inputs[0].as_slice::<T>()?.iter().map(|v| v.to_f64() as i64).collect()
        }, else => return Err(Error::dtype("OneHot", "bool indices")));
        let (outer, depth, inner) = (self.outer, self.depth, self.inner);
        crate::dispatch_any!(self.val_dtype, T => {
            let vals = inputs[2].as_slice::<T>()?;
            let (off, on) = (vals[0], vals[1]);
            let o = outputs[0].as_slice_mut::<T>()?;
            o.fill(off);
            for b in 0..outer {
                for i in 0..inner {
                    let mut j = ind[b * inner + i];
                    if j < 0 {
                        j += depth as i64;
                    }
                    if (0..depth as i64).contains(&j) {
                        o[(b * depth + j as usize) * inner + i] = on;
                    }
                }
            }
            Ok(())
        })
    }
}

fn one_hot(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let out = concrete(&outputs[0])?;
    let a = norm_axis("OneHot", op_as::<OneHot>(op)?.axis, out.len())?;
    let (outer, depth, inner) = axis_split(&out, a);
    Ok(Box::new(OneHotKernel {
        ind_dtype: inputs[0].dtype,
        val_dtype: inputs[2].dtype,
        outer,
        depth,
        inner,
    }))
}

// ---- EyeLike ----

#[derive(Debug)]
struct EyeLikeKernel {
    k: i64,
    dtype: DType,
    rows: usize,
    cols: usize,
}

impl Kernel for EyeLikeKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        _: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_any!(self.dtype, T => {
            let o = outputs[0].as_slice_mut::<T>()?;
            o.fill(T::default());
            for i in 0..self.rows {
                let j = i as i64 + self.k;
                if (0..self.cols as i64).contains(&j) {
                    o[i * self.cols + j as usize] = T::from_f64(1.0);
                }
            }
            Ok(())
        })
    }
}

fn eye_like(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let s = concrete(&inputs[0])?;
    Ok(Box::new(EyeLikeKernel {
        k: op_as::<EyeLike>(op)?.k,
        dtype: outputs[0].dtype,
        rows: s[0],
        cols: s[1],
    }))
}

// ---- Compress ----

#[derive(Debug)]
struct CompressKernel {
    esize: usize,
    outer: usize,
    n: usize,
    inner: usize,
    out_n: usize,
}

impl Kernel for CompressKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let cond = inputs[1].as_slice::<bool>()?;
        let kept: Vec<usize> = (0..self.n.min(cond.len())).filter(|&j| cond[j]).collect();
        if kept.len() != self.out_n {
            return Err(Error::bad_input(
                "Compress: condition changed since planning",
            ));
        }
        let row = self.inner * self.esize;
        let (x, o) = (inputs[0].bytes, &mut *outputs[0].bytes);
        for b in 0..self.outer {
            for (r, &j) in kept.iter().enumerate() {
                let src = (b * self.n + j) * row;
                let dst = (b * self.out_n + r) * row;
                o[dst..dst + row].copy_from_slice(&x[src..src + row]);
            }
        }
        Ok(())
    }
}

fn compress(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let mut s = concrete(&inputs[0])?;
    let a = match op_as::<Compress>(op)?.axis {
        None => {
            s = vec![s.iter().product()];
            0
        }
        Some(a) => norm_axis("Compress", a, s.len())?,
    };
    let (outer, n, inner) = axis_split(&s, a);
    let out = concrete(&outputs[0])?;
    Ok(Box::new(CompressKernel {
        esize: inputs[0].dtype.size(),
        outer,
        n,
        inner,
        out_n: out[a.min(out.len() - 1)],
    }))
}

// ---- GatherND ----

#[derive(Debug)]
struct GatherNdKernel {
    esize: usize,
    data: Vec<usize>,
    batch: usize,
    /// Index tuples per batch.
    per_batch: usize,
    last: usize,
    batch_dims: usize,
}

impl Kernel for GatherNdKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let ind = ints(&inputs[1])?;
        let b = self.batch_dims;
        let sub = &self.data[b..];
        let st = strides(sub);
        let slice: usize = self.data[b + self.last..].iter().product::<usize>() * self.esize;
        let batch_len: usize = sub.iter().product::<usize>() * self.esize;
        let (x, o) = (inputs[0].bytes, &mut *outputs[0].bytes);
        let mut dst = 0;
        for bi in 0..self.batch {
            for t in 0..self.per_batch {
                let tuple = &ind[(bi * self.per_batch + t) * self.last..][..self.last];
                let mut off = 0;
                for (j, &i) in tuple.iter().enumerate() {
                    off += resolve("GatherND", i, sub[j])? * st[j];
                }
                let src = bi * batch_len + off * self.esize;
                o[dst..dst + slice].copy_from_slice(&x[src..src + slice]);
                dst += slice;
            }
        }
        Ok(())
    }
}

fn gather_nd(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let b = op_as::<GatherNd>(op)?.batch_dims;
    let data = concrete(&inputs[0])?;
    let ind = concrete(&inputs[1])?;
    let last = *ind.last().unwrap_or(&0);
    let batch: usize = data[..b].iter().product();
    let per_batch = ind[b..ind.len() - 1].iter().product();
    Ok(Box::new(GatherNdKernel {
        esize: inputs[0].dtype.size(),
        data,
        batch,
        per_batch,
        last,
        batch_dims: b,
    }))
}

// ---- ScatterND / ScatterElements ----

fn combine<T: Num>(r: ScatterReduction, a: T, b: T) -> T {
    match r {
        ScatterReduction::None => b,
        ScatterReduction::Add => a.add(b),
        ScatterReduction::Mul => a.mul(b),
        ScatterReduction::Max => a.maximum(b),
        ScatterReduction::Min => a.minimum(b),
    }
}

/// Applies `(dst element offset, src element offset, count)` writes to `out`.
fn apply_writes(
    red: ScatterReduction,
    dtype: DType,
    upd: &TensorView,
    out: &mut TensorViewMut,
    writes: &[(usize, usize, usize)],
) -> Result<()> {
    if red == ScatterReduction::None {
        let es = dtype.size();
        for &(d, s, n) in writes {
            out.bytes[d * es..(d + n) * es].copy_from_slice(&upd.bytes[s * es..(s + n) * es]);
        }
        return Ok(());
    }
    crate::dispatch_numeric!(dtype, T => {
        let u = upd.as_slice::<T>()?;
        let o = out.as_slice_mut::<T>()?;
        for &(d, s, n) in writes {
            for k in 0..n {
                o[d + k] = combine(red, o[d + k], u[s + k]);
            }
        }
        Ok(())
    }, else => Err(Error::dtype("Scatter", "reduction on bool data")))
}

#[derive(Debug)]
struct ScatterNdKernel {
    red: ScatterReduction,
    dtype: DType,
    data: Vec<usize>,
    last: usize,
    tuples: usize,
}

impl Kernel for ScatterNdKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        outputs[0].bytes.copy_from_slice(inputs[0].bytes);
        let ind = ints(&inputs[1])?;
        let st = strides(&self.data);
        let slice: usize = self.data[self.last..].iter().product();
        let mut writes = Vec::with_capacity(self.tuples);
        for t in 0..self.tuples {
            let mut off = 0;
            for j in 0..self.last {
                off += resolve("ScatterND", ind[t * self.last + j], self.data[j])? * st[j];
            }
            writes.push((off, t * slice, slice));
        }
        apply_writes(self.red, self.dtype, &inputs[2], &mut outputs[0], &writes)
    }
}

fn scatter_nd(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let data = concrete(&inputs[0])?;
    let ind = concrete(&inputs[1])?;
    let upd = concrete(&inputs[2])?;
    let last = *ind.last().unwrap_or(&0);
    let tuples: usize = ind[..ind.len().saturating_sub(1)].iter().product();
    let want: Vec<usize> = ind[..ind.len().saturating_sub(1)]
        .iter()
        .chain(&data[last.min(data.len())..])
        .copied()
        .collect();
    if last > data.len() || upd != want {
        return Err(Error::shape(
            "ScatterND",
            format!("data {data:?}, indices {ind:?}, updates {upd:?}"),
        ));
    }
    Ok(Box::new(ScatterNdKernel {
        red: op_as::<ScatterNd>(op)?.reduction,
        dtype: inputs[0].dtype,
        data,
        last,
        tuples,
    }))
}

#[derive(Debug)]
struct ScatterElementsKernel {
    red: ScatterReduction,
    dtype: DType,
    data: Vec<usize>,
    ind: Vec<usize>,
    axis: usize,
}

impl Kernel for ScatterElementsKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        outputs[0].bytes.copy_from_slice(inputs[0].bytes);
        let ind = ints(&inputs[1])?;
        let (ds, is) = (strides(&self.data), strides(&self.ind));
        let mut writes = Vec::with_capacity(ind.len());
        for (p, &i) in ind.iter().enumerate() {
            let mut off = 0;
            for d in 0..self.ind.len() {
                let c = (p / is[d]) % self.ind[d];
                let c = if d == self.axis {
                    resolve("ScatterElements", i, self.data[d])?
                } else {
                    c
                };
                off += c * ds[d];
            }
            writes.push((off, p, 1));
        }
        apply_writes(self.red, self.dtype, &inputs[2], &mut outputs[0], &writes)
    }
}

fn scatter_elements(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<ScatterElements>(op)?;
    let data = concrete(&inputs[0])?;
    let ind = concrete(&inputs[1])?;
    if concrete(&inputs[2])? != ind || ind.iter().zip(&data).any(|(i, d)| i > d) {
        return Err(Error::shape(
            "ScatterElements",
            format!("indices {ind:?} vs updates/data {data:?}"),
        ));
    }
    Ok(Box::new(ScatterElementsKernel {
        red: op.reduction,
        dtype: inputs[0].dtype,
        axis: norm_axis("ScatterElements", op.axis, data.len())?,
        data,
        ind,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<TopK>(topk);
    r.insert::<CumSum>(cumsum);
    r.insert::<Trilu>(trilu);
    r.insert::<Hardmax>(hardmax);
    r.insert::<OneHot>(one_hot);
    r.insert::<EyeLike>(eye_like);
    r.insert::<Compress>(compress);
    r.insert::<GatherNd>(gather_nd);
    // Both copy rows of `esize` bytes: string handles move like any 8-byte element.
    r.allow_strings::<Compress>();
    r.allow_strings::<GatherNd>();
    r.insert::<ScatterNd>(scatter_nd);
    r.insert::<ScatterElements>(scatter_elements);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::Tensor;

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec()).unwrap()
    }
    fn i(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec()).unwrap()
    }

    #[test]
    fn topk_largest_and_smallest_with_ties() {
        let x = f(&[2, 4], &[1., 3., 3., 2., 5., 4., 6., 0.]);
        let op = TopK {
            axis: 1,
            largest: true,
            sorted: true,
        };
        let o = eval_op(&op, &[x.clone(), i(&[1], &[2])]).unwrap();
        assert_eq!(o[0].to_f64_vec(), vec![3., 3., 6., 5.]);
        assert_eq!(o[1].to_i64_vec(), vec![1, 2, 2, 0]);
        let small = TopK {
            largest: false,
            ..op
        };
        let o = eval_op(&small, &[x, i(&[1], &[1])]).unwrap();
        assert_eq!(o[0].to_f64_vec(), vec![1., 0.]);
        assert_eq!(o[1].to_i64_vec(), vec![0, 3]);
    }

    #[test]
    fn cumsum_modes() {
        let x = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let run = |exclusive, reverse, axis: i64| {
            eval_op(
                &CumSum { exclusive, reverse },
                &[x.clone(), Tensor::scalar(axis)],
            )
            .unwrap()[0]
                .to_f64_vec()
        };
        assert_eq!(run(false, false, 1), vec![1., 3., 6., 4., 9., 15.]);
        assert_eq!(run(true, false, 1), vec![0., 1., 3., 0., 4., 9.]);
        assert_eq!(run(false, true, -1), vec![6., 5., 3., 15., 11., 6.]);
        assert_eq!(run(false, false, 0), vec![1., 2., 3., 5., 7., 9.]);
    }

    #[test]
    fn trilu_hardmax_onehot_eyelike() {
        let x = f(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let u = eval_op(&Trilu { upper: true }, std::slice::from_ref(&x)).unwrap();
        assert_eq!(u[0].to_f64_vec(), vec![1., 2., 3., 0., 5., 6., 0., 0., 9.]);
        let l = eval_op(&Trilu { upper: false }, &[x.clone(), Tensor::scalar(-1i64)]).unwrap();
        assert_eq!(l[0].to_f64_vec(), vec![0., 0., 0., 4., 0., 0., 7., 8., 0.]);
        let h = eval_op(
            &Hardmax { axis: 1 },
            &[f(&[2, 3], &[1., 5., 5., -1., -2., -3.])],
        )
        .unwrap();
        assert_eq!(h[0].to_f64_vec(), vec![0., 1., 0., 1., 0., 0.]);
        let oh = eval_op(
            &OneHot { axis: -1 },
            &[
                i(&[3], &[0, 2, -1]),
                Tensor::scalar(3i64),
                f(&[2], &[0., 7.]),
            ],
        )
        .unwrap();
        assert_eq!(oh[0].shape(), &[3, 3]);
        assert_eq!(oh[0].to_f64_vec(), vec![7., 0., 0., 0., 0., 7., 0., 0., 7.]);
        let e = eval_op(&EyeLike { k: 1, dtype: None }, &[f(&[2, 3], &[0.; 6])]).unwrap();
        assert_eq!(e[0].to_f64_vec(), vec![0., 1., 0., 0., 0., 1.]);
    }

    #[test]
    fn gather_and_scatter_nd() {
        let data = f(&[2, 2], &[0., 1., 2., 3.]);
        let g = eval_op(
            &GatherNd { batch_dims: 0 },
            &[data.clone(), i(&[2, 2], &[0, 0, 1, 1])],
        )
        .unwrap();
        assert_eq!(g[0].to_f64_vec(), vec![0., 3.]);
        let rows = eval_op(
            &GatherNd { batch_dims: 0 },
            &[data.clone(), i(&[2, 1], &[1, 0])],
        )
        .unwrap();
        assert_eq!(rows[0].to_f64_vec(), vec![2., 3., 0., 1.]);
        let s = eval_op(
            &ScatterNd {
                reduction: ScatterReduction::Add,
            },
            &[data.clone(), i(&[1, 1], &[1]), f(&[1, 2], &[10., 20.])],
        )
        .unwrap();
        assert_eq!(s[0].to_f64_vec(), vec![0., 1., 12., 23.]);
        let bad = eval_op(
            &ScatterNd {
                reduction: ScatterReduction::None,
            },
            &[data, i(&[1, 1], &[5]), f(&[1, 2], &[10., 20.])],
        );
        assert!(bad.is_err());
    }

    #[test]
    fn scatter_elements_along_axis() {
        let data = f(&[3, 3], &[0.; 9]);
        let ind = i(&[2, 3], &[1, 0, 2, 0, 2, 1]);
        let upd = f(&[2, 3], &[1.0, 1.1, 1.2, 2.0, 2.1, 2.2]);
        let o = eval_op(
            &ScatterElements {
                axis: 0,
                reduction: ScatterReduction::None,
            },
            &[data, ind, upd],
        )
        .unwrap();
        let want = [2.0, 1.1, 0.0, 1.0, 0.0, 2.2, 0.0, 2.1, 1.2];
        for (a, b) in o[0].to_f64_vec().iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn compress_keeps_selected_slices() {
        let x = f(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        let c = Tensor::from_vec(&[3], vec![false, true, true]).unwrap();
        let o = eval_op(&Compress { axis: Some(0) }, &[x.clone(), c.clone()]).unwrap();
        assert_eq!(o[0].to_f64_vec(), vec![3., 4., 5., 6.]);
        let flat = eval_op(&Compress { axis: None }, &[x, c]).unwrap();
        assert_eq!(flat[0].to_f64_vec(), vec![2., 3.]);
    }
}
