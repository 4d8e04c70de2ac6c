//! Reductions. Reduced axes that form one contiguous block run as outer x reduced x inner;
//! any other set is first permuted (into scratch) so the reduced axes are last.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::array::{StridedCopy, contiguous_strides};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Num};
use crate::ir::Fact;
use crate::ops::{ArgReduce, Op, Reduce, ReduceOp, norm_axis};
use crate::{Error, Result};

#[derive(Debug)]
struct ReduceKernel {
    op: ReduceOp,
    dtype: DType,
    outer: usize,
    red: usize,
    inner: usize,
    permute: Option<StridedCopy>,
}

/// Float sums over a non-last axis (a channels-last global pool is a Mean over H and W):
/// whole rows accumulate in an f64 buffer, a chunk of the output row at a time, in the same
/// order of `i` per element as the per-column loop below, so the same bits. Returns false
/// for the ops it does not take.
fn f64_rowwise<T: Num>(
    op: ReduceOp,
    x: &[T],
    out: &mut [T],
    outer: usize,
    red: usize,
    inner: usize,
) -> bool {
    let n = red as f64;
    // Closures, not fn pointers: each op gets its own inlined, vectorized loop.
    let d = (x, out, outer, red, inner);
    match op {
        ReduceOp::Sum => f64_rows(d, |v| v, |s| s),
        ReduceOp::Mean => f64_rows(d, |v| v, |s| s / n),
        ReduceOp::SumSquare => f64_rows(d, |v| v * v, |s| s),
        ReduceOp::L1 => f64_rows(d, f64::abs, |s| s),
        ReduceOp::L2 => f64_rows(d, |v| v * v, f64::sqrt),
        ReduceOp::LogSum => f64_rows(d, |v| v, f64::ln),
        _ => return false,
    }
    true
}

#[inline(always)]
fn f64_rows<T: Num>(
    (x, out, outer, red, inner): (&[T], &mut [T], usize, usize, usize),
    map: impl Fn(f64) -> f64,
    fin: impl Fn(f64) -> f64,
) {
    // `Iterator::sum`'s start value for f64 (the per-column loop's).
    let zero: f64 = std::iter::empty::<f64>().sum();
    const CHUNK: usize = 256;
    let mut acc = [0f64; CHUNK];
    for o in 0..outer {
        for j0 in (0..inner).step_by(CHUNK) {
            let n = CHUNK.min(inner - j0);
            let acc = &mut acc[..n];
            acc.fill(zero);
            for i in 0..red {
                let xr = &x[(o * red + i) * inner + j0..][..n];
                for (a, &v) in acc.iter_mut().zip(xr) {
                    *a += map(v.to_f64());
                }
            }
            for (d, &a) in out[o * inner + j0..][..n].iter_mut().zip(acc.iter()) {
                *d = T::from_f64(fin(a));
            }
        }
    }
}

fn reduce_t<T: Num>(op: ReduceOp, x: &[T], out: &mut [T], outer: usize, red: usize, inner: usize) {
    // Order-exact reductions over a non-last axis: fold whole contiguous rows into the output
    // row (the loop runs over `inner` and vectorizes) instead of striding down each column.
    // Same accumulator start and the same order of `i` per element, so the same bits.
    let rowwise = match op {
        ReduceOp::Max | ReduceOp::Min | ReduceOp::Prod => true,
        ReduceOp::Sum => !T::DTYPE.is_float(),
        _ => false,
    };
    if rowwise && inner > 1 {
        let init = match op {
            ReduceOp::Max => T::lowest(),
            ReduceOp::Min => T::highest(),
            ReduceOp::Prod => T::ONE,
            _ => T::ZERO,
        };
        for o in 0..outer {
            let acc = &mut out[o * inner..][..inner];
            acc.fill(init);
            for i in 0..red {
                let xr = &x[(o * red + i) * inner..][..inner];
                let pairs = acc.iter_mut().zip(xr);
                match op {
                    ReduceOp::Max => pairs.for_each(|(a, &v)| *a = a.maximum(v)),
                    ReduceOp::Min => pairs.for_each(|(a, &v)| *a = a.minimum(v)),
                    ReduceOp::Prod => pairs.for_each(|(a, &v)| *a = a.mul(v)),
                    _ => pairs.for_each(|(a, &v)| *a = a.add(v)),
                }
            }
        }
        return;
    }
    if inner > 1 && T::DTYPE.is_float() && f64_rowwise(op, x, out, outer, red, inner) {
        return;
    }
    for o in 0..outer {
        for j in 0..inner {
            let at = |i: usize| x[(o * red + i) * inner + j];
            let v = match op {
                ReduceOp::Max | ReduceOp::Min => {
                    let mut acc = if op == ReduceOp::Max {
                        T::lowest()
                    } else {
                        T::highest()
                    };
                    for i in 0..red {
                        acc = if op == ReduceOp::Max {
                            acc.maximum(at(i))
                        } else {
                            acc.minimum(at(i))
                        };
                    }
                    acc
                }
                ReduceOp::Prod => (0..red).fold(T::ONE, |a, i| a.mul(at(i))),
                _ if !T::DTYPE.is_float() && matches!(op, ReduceOp::Sum) => {
                    (0..red).fold(T::ZERO, |a, i| a.add(at(i)))
                }
                _ => {
                    // Float-style reductions accumulate in f64.
                    let f = |i: usize| at(i).to_f64();
                    let r = match op {
                        ReduceOp::Sum => (0..red).map(f).sum::<f64>(),
                        ReduceOp::Mean => (0..red).map(f).sum::<f64>() / red as f64,
                        ReduceOp::SumSquare => (0..red).map(|i| f(i) * f(i)).sum(),
                        ReduceOp::L1 => (0..red).map(|i| f(i).abs()).sum(),
                        ReduceOp::L2 => (0..red).map(|i| f(i) * f(i)).sum::<f64>().sqrt(),
                        ReduceOp::LogSum => (0..red).map(f).sum::<f64>().ln(),
                        ReduceOp::LogSumExp => {
                            let m = (0..red).map(f).fold(f64::NEG_INFINITY, f64::max);
                            let m = if m.is_finite() { m } else { 0.0 };
                            m + (0..red).map(|i| (f(i) - m).exp()).sum::<f64>().ln()
                        }
                        _ => unreachable!(),
                    };
                    T::from_f64(r)
                }
            };
            out[o * inner + j] = v;
        }
    }
}

impl Kernel for ReduceKernel {
    fn scratch_bytes(&self) -> usize {
        if self.permute.is_some() {
            self.outer * self.red * self.inner * self.dtype.size()
        } else {
            0
        }
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let n = self.outer * self.red * self.inner * self.dtype.size();
        let src: &[u8] = match &self.permute {
            Some(p) => {
                let buf = &mut ctx.scratch[..n];
                p.run_bytes(self.dtype, inputs[0].bytes, buf);
                buf
            }
            None => inputs[0].bytes,
        };
        if self.dtype == DType::Bool {
            // Bools are bytes 0/1: their max/min as u8 is Or/And (the op allows only those).
            let out = crate::tensor::bytes_as_mut::<u8>(outputs[0].bytes);
            reduce_t::<u8>(self.op, src, out, self.outer, self.red, self.inner);
            return Ok(());
        }
        crate::dispatch_numeric!(self.dtype, T => {
            reduce_t::<T>(self.op, crate::tensor::bytes_as::<T>(src), outputs[0].as_slice_mut::<T>()?, self.outer, self.red, self.inner);
            Ok(())
        }, else => Err(Error::dtype(self.op.name(), "bool")))
    }
}

fn reduce(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let r = op_as::<Reduce>(op)?;
    let x = concrete(&inputs[0])?;
    let axes = r.resolved_axes(x.len())?;
    let dtype = inputs[0].dtype;
    let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if axes.is_empty() {
        // noop_with_empty_axes: identity.
        return Ok(Box::new(ReduceKernel {
            op: ReduceOp::Sum,
            dtype,
            outer: x.iter().product(),
            red: 1,
            inner: 1,
            permute: None,
        }));
    }
    if contiguous {
        let (a, b) = (axes[0], axes[axes.len() - 1] + 1);
        return Ok(Box::new(ReduceKernel {
            op: r.op,
            dtype,
            outer: x[..a].iter().product(),
            red: x[a..b].iter().product(),
            inner: x[b..].iter().product(),
            permute: None,
        }));
    }
    let kept: Vec<usize> = (0..x.len()).filter(|i| !axes.contains(i)).collect();
    let perm: Vec<usize> = kept.iter().chain(&axes).copied().collect();
    let cs = contiguous_strides(&x);
    let shape: Vec<usize> = perm.iter().map(|&p| x[p]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| cs[p]).collect();
    Ok(Box::new(ReduceKernel {
        op: r.op,
        dtype,
        outer: kept.iter().map(|&i| x[i]).product(),
        red: axes.iter().map(|&i| x[i]).product(),
        inner: 1,
        permute: Some(StridedCopy::new(0, &shape, &strides)),
    }))
}

#[derive(Debug)]
struct ArgKernel {
    dtype: DType,
    max: bool,
    last: bool,
    outer: usize,
    red: usize,
    inner: usize,
}

fn arg_t<T: Num>(k: &ArgKernel, x: &[T], out: &mut [i64]) {
    for o in 0..k.outer {
        for j in 0..k.inner {
            let mut best = 0usize;
            for i in 1..k.red {
                let (v, b) = (
                    x[(o * k.red + i) * k.inner + j],
                    x[(o * k.red + best) * k.inner + j],
                );
                let better = if k.max {
                    v > b || (k.last && v == b)
                } else {
                    v < b || (k.last && v == b)
                };
                if better {
                    best = i;
                }
            }
            out[o * k.inner + j] = best as i64;
        }
    }
}

impl Kernel for ArgKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        if self.red == 0 {
            return Err(Error::shape("ArgMax", "empty axis"));
        }
        crate::dispatch_numeric!(self.dtype, T => {
            arg_t::<T>(self, inputs[0].as_slice()?, outputs[0].as_slice_mut()?);
            Ok(())
        }, else => Err(Error::dtype("ArgMax", "bool")))
    }
}

fn arg_reduce(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let r = op_as::<ArgReduce>(op)?;
    let x = concrete(&inputs[0])?;
    let a = norm_axis(r.name(), r.axis, x.len())?;
    Ok(Box::new(ArgKernel {
        dtype: inputs[0].dtype,
        max: r.max,
        last: r.select_last_index,
        outer: x[..a].iter().product(),
        red: x[a],
        inner: x[a + 1..].iter().product(),
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Reduce>(reduce);
    r.insert::<ArgReduce>(arg_reduce);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::Tensor;

    fn x() -> Tensor {
        Tensor::from_vec(&[2, 3, 2], (0..12).map(|v| v as f32).collect()).unwrap()
    }
    fn red(op: ReduceOp, axes: Vec<i64>, keepdims: bool) -> Tensor {
        eval_op(
            &Reduce {
                op,
                axes,
                keepdims,
                noop_with_empty_axes: false,
            },
            &[x()],
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn reductions_on_hand_cases() {
        let s = red(ReduceOp::Sum, vec![1], false);
        assert_eq!(
            (s.shape(), s.to_f64_vec()),
            (&[2usize, 2][..], vec![6., 9., 24., 27.])
        );
        let m = red(ReduceOp::Mean, vec![-1], true);
        assert_eq!(
            (m.shape(), m.to_f64_vec()),
            (&[2usize, 3, 1][..], vec![0.5, 2.5, 4.5, 6.5, 8.5, 10.5])
        );
        let mx = red(ReduceOp::Max, vec![0, 2], false); // non-contiguous axes
        assert_eq!(mx.to_f64_vec(), vec![7., 9., 11.]);
        let mn = red(ReduceOp::Min, vec![], false);
        assert_eq!((mn.rank(), mn.to_f64_vec()), (0, vec![0.]));
        let p = red(ReduceOp::Prod, vec![2], false);
        assert_eq!(p.to_f64_vec(), vec![0., 6., 20., 42., 72., 110.]);
        let l2 = red(ReduceOp::L2, vec![1, 2], false);
        assert!((l2.to_f64_vec()[0] - 55f64.sqrt()).abs() < 1e-5);
        let lse = red(ReduceOp::LogSumExp, vec![2], false);
        assert!((lse.to_f64_vec()[0] - (1f64 + 1f64.exp()).ln()).abs() < 1e-6);
    }

    #[test]
    fn middle_axis_rowwise_matches_column_folds() {
        use crate::dtype::Num;
        // [outer 2, red 3, inner 5], with a NaN, infinities and integer wrap-around.
        let (outer, red, inner) = (2, 3, 5);
        let xf: Vec<f32> = (0..30)
            .map(|i| match i {
                7 => f32::NAN,
                11 => f32::INFINITY,
                23 => f32::NEG_INFINITY,
                _ => ((i * 37 % 11) as f32 - 5.0) * 0.75,
            })
            .collect();
        let xi: Vec<i32> = (0..30).map(|i| (i * 7919 % 2001) * 1_000_003 - 9).collect();
        fn column<T: Num>(
            op: ReduceOp,
            x: &[T],
            o: usize,
            j: usize,
            red: usize,
            inner: usize,
        ) -> T {
            let mut acc = match op {
                ReduceOp::Max => T::lowest(),
                ReduceOp::Min => T::highest(),
                ReduceOp::Prod => T::ONE,
                _ => T::ZERO,
            };
            for i in 0..red {
                let v = x[(o * red + i) * inner + j];
                acc = match op {
                    ReduceOp::Max => acc.maximum(v),
                    ReduceOp::Min => acc.minimum(v),
                    ReduceOp::Prod => acc.mul(v),
                    _ => acc.add(v),
                };
            }
            acc
        }
        for op in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod] {
            let mut got = vec![0f32; outer * inner];
            reduce_t(op, &xf, &mut got, outer, red, inner);
            for (k, g) in got.iter().enumerate() {
                let want = column(op, &xf, k / inner, k % inner, red, inner);
                assert_eq!(g.to_bits(), want.to_bits(), "{op:?} at {k}");
            }
        }
        for op in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod, ReduceOp::Sum] {
            let mut got = vec![0i32; outer * inner];
            reduce_t(op, &xi, &mut got, outer, red, inner);
            for (k, g) in got.iter().enumerate() {
                assert_eq!(
                    *g,
                    column(op, &xi, k / inner, k % inner, red, inner),
                    "{op:?}"
                );
            }
        }
    }

    /// The f64 row path (float sums over a non-last axis, more than one chunk wide) gives
    /// the per-column f64 fold's bits.
    #[test]
    fn float_sums_over_a_middle_axis_match_the_f64_column_fold() {
        let (outer, red, inner) = (2, 7, 300);
        let x: Vec<f32> = (0..outer * red * inner)
            .map(|i| match i {
                5 => f32::NAN,
                901 => f32::INFINITY,
                _ => ((i * 7919 % 1013) as f32 - 500.0) * 1e-3,
            })
            .collect();
        for op in [
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::SumSquare,
            ReduceOp::L1,
            ReduceOp::L2,
            ReduceOp::LogSum,
        ] {
            let mut got = vec![0f32; outer * inner];
            reduce_t(op, &x, &mut got, outer, red, inner);
            for (k, g) in got.iter().enumerate() {
                let (o, j) = (k / inner, k % inner);
                let col: Vec<f32> = (0..red).map(|i| x[(o * red + i) * inner + j]).collect();
                let mut want = [0f32];
                reduce_t(op, &col, &mut want, 1, red, 1);
                assert_eq!(
                    g.to_bits(),
                    want[0].to_bits(),
                    "{op:?} at {k}: {g} vs {}",
                    want[0]
                );
            }
        }
    }

    #[test]
    fn argmax_argmin() {
        let t = Tensor::from_vec(&[2, 3], vec![1f32, 5., 5., 7., 0., 7.]).unwrap();
        let a = &eval_op(
            &ArgReduce {
                max: true,
                axis: 1,
                keepdims: false,
                select_last_index: false,
            },
            std::slice::from_ref(&t),
        )
        .unwrap()[0];
        assert_eq!(a.to_i64_vec(), vec![1, 0]);
        let a = &eval_op(
            &ArgReduce {
                max: true,
                axis: 1,
                keepdims: true,
                select_last_index: true,
            },
            std::slice::from_ref(&t),
        )
        .unwrap()[0];
        assert_eq!((a.shape(), a.to_i64_vec()), (&[2usize, 1][..], vec![2, 2]));
        let a = &eval_op(
            &ArgReduce {
                max: false,
                axis: 0,
                keepdims: false,
                select_last_index: false,
            },
            &[t],
        )
        .unwrap()[0];
        assert_eq!(a.to_i64_vec(), vec![0, 1, 0]);
    }

    #[test]
    fn bool_max_and_min_are_or_and() {
        let x = Tensor::from_vec(&[3, 2], vec![true, true, true, false, false, false]).unwrap();
        let run = |op| {
            let r = Reduce {
                op,
                axes: vec![1],
                keepdims: false,
                noop_with_empty_axes: false,
            };
            eval_op(&r, std::slice::from_ref(&x)).unwrap().remove(0)
        };
        assert_eq!(
            run(ReduceOp::Max).as_slice::<bool>().unwrap(),
            &[true, true, false]
        );
        assert_eq!(
            run(ReduceOp::Min).as_slice::<bool>().unwrap(),
            &[true, false, false]
        );
        let sum = Reduce {
            op: ReduceOp::Sum,
            axes: vec![1],
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert!(eval_op(&sum, std::slice::from_ref(&x)).is_err());
    }
}
