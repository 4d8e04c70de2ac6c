//! Broadcasting binary kernels. The broadcast is analysed once at plan time: dims are
//! coalesced so the inner loop is as long as possible and is one of four contiguous
//! patterns (both contiguous, one scalar, both scalar) that the compiler vectorizes.

use super::PAR_MIN_ELEMS;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Num};
use crate::ir::Fact;
use crate::ops::{BinOp, Binary, Op};
use crate::{Error, Result};
use rayon::prelude::*;

/// Coalesced broadcast iteration: `out[..]` rows of `inner` elements; row `r`'s inputs start
/// at offsets computed from `outer_shape` and the input strides.
#[derive(Clone, Debug, PartialEq)]
pub struct BroadcastPlan {
    pub outer_shape: Vec<usize>,
    pub a_outer: Vec<usize>,
    pub b_outer: Vec<usize>,
    pub inner: usize,
    /// Inner stride: 1 (contiguous) or 0 (broadcast scalar).
    pub a_inner: usize,
    pub b_inner: usize,
}

fn strides_for(shape: &[usize], out_rank: usize) -> Vec<usize> {
    // Right-aligned strides, 0 on broadcast dims.
    let mut s = vec![0usize; out_rank];
    let mut acc = 1usize;
    for i in (0..shape.len()).rev() {
        let o = out_rank - shape.len() + i;
        s[o] = if shape[i] == 1 { 0 } else { acc };
        acc *= shape[i];
    }
    s
}

impl BroadcastPlan {
    pub fn new(a: &[usize], b: &[usize], out: &[usize]) -> BroadcastPlan {
        let r = out.len();
        let (sa, sb) = (strides_for(a, r), strides_for(b, r));
        // Drop size-1 dims, then merge a dim into the next when both inputs allow it.
        let mut dims: Vec<(usize, usize, usize)> = (0..r)
            .filter(|&i| out[i] != 1)
            .map(|i| (out[i], sa[i], sb[i]))
            .collect();
        let mut i = dims.len();
        while i >= 2 {
            let (d1, a1, b1) = dims[i - 1];
            let (d0, a0, b0) = dims[i - 2];
            if a0 == a1 * d1 && b0 == b1 * d1 {
                dims[i - 2] = (d0 * d1, a1, b1);
                dims.remove(i - 1);
            }
            i -= 1;
        }
        let (inner, a_inner, b_inner) = dims.pop().unwrap_or((1, 1, 1));
        // A size-1 inner dim is contiguous either way.
        let (a_inner, b_inner) = if inner == 1 {
            (1, 1)
        } else {
            (a_inner.min(1), b_inner.min(1))
        };
        BroadcastPlan {
            outer_shape: dims.iter().map(|d| d.0).collect(),
            a_outer: dims.iter().map(|d| d.1).collect(),
            b_outer: dims.iter().map(|d| d.2).collect(),
            inner,
            a_inner,
            b_inner,
        }
    }

    fn rows(&self) -> usize {
        self.outer_shape.iter().product()
    }

    #[inline]
    fn row_offsets(&self, mut r: usize) -> (usize, usize) {
        let (mut oa, mut ob) = (0, 0);
        for i in (0..self.outer_shape.len()).rev() {
            let d = self.outer_shape[i];
            let k = r % d;
            r /= d;
            oa += k * self.a_outer[i];
            ob += k * self.b_outer[i];
        }
        (oa, ob)
    }

    /// `out[i] = f(a[..], b[..])` over the broadcast, in parallel for large outputs.
    pub fn apply<A, B, C, F>(&self, a: &[A], b: &[B], out: &mut [C], f: F)
    where
        A: Copy + Sync,
        B: Copy + Sync,
        C: Send,
        F: Fn(A, B) -> C + Sync,
    {
        let inner = self.inner;
        if inner == 0 || out.is_empty() {
            return;
        }
        let row = |r: usize, o: &mut [C]| {
            let (oa, ob) = self.row_offsets(r);
            match (self.a_inner, self.b_inner) {
                (1, 1) => {
                    for ((o, &x), &y) in
                        o.iter_mut().zip(&a[oa..oa + inner]).zip(&b[ob..ob + inner])
                    {
                        *o = f(x, y);
                    }
                }
                (1, 0) => {
                    let y = b[ob];
                    for (o, &x) in o.iter_mut().zip(&a[oa..oa + inner]) {
                        *o = f(x, y);
                    }
                }
                (0, 1) => {
                    let x = a[oa];
                    for (o, &y) in o.iter_mut().zip(&b[ob..ob + inner]) {
                        *o = f(x, y);
                    }
                }
                _ => {
                    let (x, y) = (a[oa], b[ob]);
                    for o in o.iter_mut() {
                        *o = f(x, y);
                    }
                }
            }
        };
        if out.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
            // Rows in chunks of about PAR_MIN_ELEMS / 4 elements.
            let rows_per = (PAR_MIN_ELEMS / 4).div_ceil(inner).max(1);
            if self.rows() > 1 {
                out.par_chunks_mut(rows_per * inner)
                    .enumerate()
                    .for_each(|(c, chunk)| {
                        for (k, o) in chunk.chunks_mut(inner).enumerate() {
                            row(c * rows_per + k, o);
                        }
                    });
                return;
            }
            if self.a_inner == 1 && self.b_inner == 1 {
                let n = PAR_MIN_ELEMS / 4;
                out.par_chunks_mut(n).enumerate().for_each(|(c, o)| {
                    let s = c * n;
                    for ((o, &x), &y) in o.iter_mut().zip(&a[s..]).zip(&b[s..]) {
                        *o = f(x, y);
                    }
                });
                return;
            }
        }
        for (r, o) in out.chunks_mut(inner).enumerate() {
            row(r, o);
        }
    }
}

#[derive(Debug)]
struct BinaryKernel {
    op: BinOp,
    dtype: DType,
    plan: BroadcastPlan,
}

fn arith<T: Num>(op: BinOp, p: &BroadcastPlan, a: &[T], b: &[T], o: &mut [T]) {
    match op {
        BinOp::Add => p.apply(a, b, o, |x, y| x.add(y)),
        BinOp::Sub => p.apply(a, b, o, |x, y| x.sub(y)),
        BinOp::Mul => p.apply(a, b, o, |x, y| x.mul(y)),
        BinOp::Div => p.apply(a, b, o, |x, y| x.div(y)),
        BinOp::Pow => p.apply(a, b, o, |x, y| x.pow(y)),
        BinOp::Max => p.apply(a, b, o, |x, y| x.maximum(y)),
        BinOp::Min => p.apply(a, b, o, |x, y| x.minimum(y)),
        BinOp::Mod => p.apply(a, b, o, |x, y| x.modulo(y)),
        BinOp::Fmod => p.apply(a, b, o, |x, y| x.fmod(y)),
        _ => unreachable!("not arithmetic"),
    }
}

fn compare<T: PartialOrd + Copy + Sync>(
    op: BinOp,
    p: &BroadcastPlan,
    a: &[T],
    b: &[T],
    o: &mut [bool],
) {
    match op {
        BinOp::Equal => p.apply(a, b, o, |x, y| x == y),
        BinOp::Less => p.apply(a, b, o, |x, y| x < y),
        BinOp::LessOrEqual => p.apply(a, b, o, |x, y| x <= y),
        BinOp::Greater => p.apply(a, b, o, |x, y| x > y),
        BinOp::GreaterOrEqual => p.apply(a, b, o, |x, y| x >= y),
        _ => unreachable!("not a comparison"),
    }
}

impl Kernel for BinaryKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let out = &mut outputs[0];
        let op = self.op;
        if op.is_logic() {
            let (x, y, o) = (
                a.as_slice::<bool>()?,
                b.as_slice::<bool>()?,
                out.as_slice_mut::<bool>()?,
            );
            match op {
                BinOp::And => self.plan.apply(x, y, o, |p, q| p & q),
                BinOp::Or => self.plan.apply(x, y, o, |p, q| p | q),
                _ => self.plan.apply(x, y, o, |p, q| p ^ q),
            }
            return Ok(());
        }
        if op.is_comparison() {
            let o = out.as_slice_mut::<bool>()?;
            return crate::dispatch_any!(self.dtype, T => {
                compare::<T>(op, &self.plan, a.as_slice::<T>()?, b.as_slice::<T>()?, o);
                Ok(())
            });
        }
        crate::dispatch_numeric!(self.dtype, T => {
            arith::<T>(op, &self.plan, a.as_slice::<T>()?, b.as_slice::<T>()?, out.as_slice_mut::<T>()?);
            Ok(())
        }, else => Err(Error::dtype(op.name(), "bool arithmetic")))
    }
}

/// Equal on strings: byte-for-byte equality of the strings behind the handles.
#[derive(Debug)]
struct StringEqualKernel {
    plan: BroadcastPlan,
}

impl Kernel for StringEqualKernel {
    fn run(&self, _: &mut KernelCtx, _: &[TensorView], _: &mut [TensorViewMut]) -> Result<()> {
        Err(Error::invalid("Equal of strings runs with a string table"))
    }
    fn run_strings(
        &self,
        _: &mut KernelCtx,
        strings: &mut crate::cpu::StringTable,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        use crate::cpu::strings::handles;
        let (a, b) = (handles(inputs[0].bytes), handles(inputs[1].bytes));
        // Check every handle first, so the comparison below cannot meet a bad one.
        for &h in a.iter().chain(b) {
            strings.get(h)?;
        }
        let strings = &*strings;
        let o = outputs[0].as_slice_mut::<bool>()?;
        self.plan
            .apply(a, b, o, |x, y| strings.get(x).ok() == strings.get(y).ok());
        Ok(())
    }
}

fn build(op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<Binary>(op)?;
    let plan = BroadcastPlan::new(
        &concrete(&inputs[0])?,
        &concrete(&inputs[1])?,
        &concrete(&outputs[0])?,
    );
    if inputs.iter().any(|f| f.dtype.is_string()) {
        if op.op != BinOp::Equal {
            return Err(Error::dtype(
                op.op.name(),
                format!(
                    "{} does not take string tensors (of the binary ops only Equal does)",
                    op.op.name()
                ),
            ));
        }
        return Ok(Box::new(StringEqualKernel { plan }));
    }
    Ok(Box::new(BinaryKernel {
        op: op.op,
        dtype: inputs[0].dtype,
        plan,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Binary>(build);
    // Equal compares strings; `build` refuses them for every other binary op.
    r.allow_strings::<Binary>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::Tensor;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec()).unwrap()
    }

    #[test]
    fn coalesces_channel_broadcast() {
        let p = BroadcastPlan::new(&[2, 3, 4, 5], &[1, 3, 1, 1], &[2, 3, 4, 5]);
        assert_eq!((p.inner, p.a_inner, p.b_inner), (20, 1, 0));
        assert_eq!(p.outer_shape, vec![2, 3]);
        let q = BroadcastPlan::new(&[6, 7], &[6, 7], &[6, 7]);
        assert_eq!((q.inner, q.outer_shape.len()), (42, 0));
    }

    #[test]
    fn add_broadcasts_like_numpy() {
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t(&[3], &[10., 20., 30.]);
        let c = &eval_op(&Binary::new(BinOp::Add), &[a.clone(), b]).unwrap()[0];
        assert_eq!(
            c.as_slice::<f32>().unwrap(),
            &[11., 22., 33., 14., 25., 36.]
        );
        let col = t(&[2, 1], &[100., 200.]);
        let d = &eval_op(&Binary::new(BinOp::Sub), &[a, col]).unwrap()[0];
        assert_eq!(
            d.as_slice::<f32>().unwrap(),
            &[-99., -98., -97., -196., -195., -194.]
        );
    }

    #[test]
    fn outer_product_broadcast() {
        let a = t(&[3, 1], &[1., 2., 3.]);
        let b = t(&[1, 2], &[10., 100.]);
        let c = &eval_op(&Binary::new(BinOp::Mul), &[a, b]).unwrap()[0];
        assert_eq!(c.shape(), &[3, 2]);
        assert_eq!(
            c.as_slice::<f32>().unwrap(),
            &[10., 100., 20., 200., 30., 300.]
        );
    }

    #[test]
    fn every_arith_op_on_small_case() {
        let a = t(&[4], &[1., -2., 3., 8.]);
        let b = t(&[4], &[2., 4., -3., 3.]);
        let cases: [(BinOp, [f32; 4]); 9] = [
            (BinOp::Add, [3., 2., 0., 11.]),
            (BinOp::Sub, [-1., -6., 6., 5.]),
            (BinOp::Mul, [2., -8., -9., 24.]),
            (BinOp::Div, [0.5, -0.5, -1., 8. / 3.]),
            (BinOp::Pow, [1., 16., 1. / 27., 512.]),
            (BinOp::Max, [2., 4., 3., 8.]),
            (BinOp::Min, [1., -2., -3., 3.]),
            (BinOp::Mod, [1., 2., 0., 2.]),
            (BinOp::Fmod, [1., -2., 0., 2.]),
        ];
        for (op, want) in cases {
            let c = &eval_op(&Binary::new(op), &[a.clone(), b.clone()]).unwrap()[0];
            crate::tensor::assert_close(c, &t(&[4], &want), 1e-6);
        }
    }

    #[test]
    fn comparisons_and_logic_give_bools() {
        let a = Tensor::from_vec(&[3], vec![1i64, 5, 3]).unwrap();
        let b = Tensor::scalar(3i64);
        let lt = &eval_op(&Binary::new(BinOp::Less), &[a.clone(), b.clone()]).unwrap()[0];
        assert_eq!(lt.as_slice::<bool>().unwrap(), &[true, false, false]);
        let eq = &eval_op(&Binary::new(BinOp::Equal), &[a.clone(), b.clone()]).unwrap()[0];
        assert_eq!(eq.as_slice::<bool>().unwrap(), &[false, false, true]);
        let gt = &eval_op(&Binary::new(BinOp::Greater), &[a, b]).unwrap()[0];
        let and = &eval_op(&Binary::new(BinOp::And), &[lt.clone(), gt.clone()]).unwrap()[0];
        assert_eq!(and.as_slice::<bool>().unwrap(), &[false, false, false]);
        let or = &eval_op(&Binary::new(BinOp::Or), &[lt.clone(), gt.clone()]).unwrap()[0];
        assert_eq!(or.as_slice::<bool>().unwrap(), &[true, true, false]);
    }

    #[test]
    fn integer_division_by_zero_is_not_a_panic() {
        let a = Tensor::from_vec(&[2], vec![7i32, -7]).unwrap();
        let b = Tensor::from_vec(&[2], vec![0i32, 2]).unwrap();
        let c = &eval_op(&Binary::new(BinOp::Div), &[a, b]).unwrap()[0];
        assert_eq!(c.to_i64_vec(), vec![0, -3]);
    }

    #[test]
    fn large_parallel_add_matches_serial_formula() {
        let n = 3 * PAR_MIN_ELEMS + 17;
        let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let out = &eval_op(
            &Binary::new(BinOp::Add),
            &[
                Tensor::from_vec(&[n], a).unwrap(),
                Tensor::from_vec(&[n], b).unwrap(),
            ],
        )
        .unwrap()[0];
        let o = out.as_slice::<f32>().unwrap();
        assert!((0..n).all(|i| o[i] == i as f32 + (i % 7) as f32));
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let r = eval_op(
            &Binary::new(BinOp::Add),
            &[t(&[2], &[1., 2.]), t(&[3], &[1., 2., 3.])],
        );
        assert!(matches!(r, Err(Error::Shape { .. })));
        let r = eval_op(
            &Binary::new(BinOp::Add),
            &[t(&[2], &[1., 2.]), Tensor::scalar(1i32)],
        );
        assert!(matches!(r, Err(Error::DType { .. })));
    }
}
