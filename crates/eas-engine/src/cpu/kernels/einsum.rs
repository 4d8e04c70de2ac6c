//! Einsum kernel: a direct loop over output positions and summed labels, with per-input
//! strides per label (repeated labels add their strides: diagonals; broadcast dims get 0).

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::index::strides;
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Num};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::einsum::{Axis, Einsum};
use crate::{Error, Result};

#[derive(Debug)]
struct EinsumKernel {
    dtype: DType,
    /// Sizes of output labels, then of summed labels.
    out_sizes: Vec<usize>,
    sum_sizes: Vec<usize>,
    /// Per input: stride of each output label, then of each summed label.
    out_strides: Vec<Vec<usize>>,
    sum_strides: Vec<Vec<usize>>,
}

fn run_typed<T: Num>(kr: &EinsumKernel, ins: &[&[T]], o: &mut [T]) {
    let n_in = ins.len();
    let mut oidx = vec![0usize; kr.out_sizes.len()];
    let mut sidx = vec![0usize; kr.sum_sizes.len()];
    let sum_total: usize = kr.sum_sizes.iter().product();
    let mut base = vec![0usize; n_in];
    for slot in o.iter_mut() {
        for (j, b) in base.iter_mut().enumerate() {
            *b = oidx
                .iter()
                .zip(&kr.out_strides[j])
                .map(|(i, s)| i * s)
                .sum();
        }
        let mut acc = T::ZERO;
        sidx.fill(0);
        for _ in 0..sum_total {
            let mut p = T::ONE;
            for j in 0..n_in {
                let off: usize = base[j]
                    + sidx
                        .iter()
                        .zip(&kr.sum_strides[j])
                        .map(|(i, s)| i * s)
                        .sum::<usize>();
                p = p.mul(ins[j][off]);
            }
            acc = acc.add(p);
            for d in (0..sidx.len()).rev() {
                sidx[d] += 1;
                if sidx[d] < kr.sum_sizes[d] {
                    break;
                }
                sidx[d] = 0;
            }
        }
        *slot = acc;
        for d in (0..oidx.len()).rev() {
            oidx[d] += 1;
            if oidx[d] < kr.out_sizes[d] {
                break;
            }
            oidx[d] = 0;
        }
    }
}

impl Kernel for EinsumKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        crate::dispatch_numeric!(self.dtype, T => {
            let ins: Vec<&[T]> = inputs.iter().map(|v| v.as_slice::<T>()).collect::<Result<_>>()?;
            run_typed::<T>(self, &ins, outputs[0].as_slice_mut::<T>()?);
            Ok(())
        }, else => Err(Error::dtype("Einsum", "bool input")))
    }
}

fn einsum(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<Einsum>(op)?;
    let shapes: Vec<Vec<usize>> = inputs.iter().map(concrete).collect::<Result<_>>()?;
    let ranks: Vec<usize> = shapes.iter().map(Vec::len).collect();
    let (ins, out) = op.expand(&ranks)?;
    let mut size: std::collections::BTreeMap<Axis, usize> = Default::default();
    for (axes, s) in ins.iter().zip(&shapes) {
        for (a, &d) in axes.iter().zip(s) {
            let e = size.entry(*a).or_insert(d);
            if *e == 1 {
                *e = d;
            }
        }
    }
    let summed: Vec<Axis> = size.keys().filter(|a| !out.contains(a)).copied().collect();
    let stride_of = |j: usize, a: &Axis| -> usize {
        let st = strides(&shapes[j]);
        ins[j]
            .iter()
            .enumerate()
            .filter(|(k, b)| *b == a && shapes[j][*k] != 1)
            .map(|(k, _)| st[k])
            .sum()
    };
    Ok(Box::new(EinsumKernel {
        dtype: inputs[0].dtype,
        out_sizes: out
            .iter()
            .map(|a| size.get(a).copied().unwrap_or(1))
            .collect(),
        sum_sizes: summed.iter().map(|a| size[a]).collect(),
        out_strides: (0..ins.len())
            .map(|j| out.iter().map(|a| stride_of(j, a)).collect())
            .collect(),
        sum_strides: (0..ins.len())
            .map(|j| summed.iter().map(|a| stride_of(j, a)).collect())
            .collect(),
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Einsum>(einsum);
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
    fn matmul_transpose_trace_and_batch_diagonal() {
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let mm = Einsum::parse("ij,jk->ik").unwrap();
        let o = &eval_op(&mm, &[a.clone(), b]).unwrap()[0];
        assert_eq!(o.to_f64_vec(), vec![4., 5., 10., 11.]);
        let tr = Einsum::parse("ij->ji").unwrap();
        assert_eq!(
            eval_op(&tr, std::slice::from_ref(&a)).unwrap()[0].to_f64_vec(),
            vec![1., 4., 2., 5., 3., 6.]
        );
        let sum = Einsum::parse("ij->").unwrap();
        assert_eq!(eval_op(&sum, &[a]).unwrap()[0].to_f64_vec(), vec![21.]);
        let sq = t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let diag = Einsum::parse("...ii->...i").unwrap();
        assert_eq!(
            eval_op(&diag, std::slice::from_ref(&sq)).unwrap()[0].to_f64_vec(),
            vec![1., 4., 5., 8.]
        );
        let trace = Einsum::parse("ii").unwrap();
        let m = t(&[2, 2], &[1., 2., 3., 4.]);
        assert_eq!(eval_op(&trace, &[m]).unwrap()[0].to_f64_vec(), vec![5.]);
    }

    #[test]
    fn batched_matmul_with_broadcast_ellipsis() {
        let a = t(&[2, 1, 2], &[1., 2., 3., 4.]);
        let b = t(&[2, 1], &[10., 100.]);
        let e = Einsum::parse("...ij,jk->...ik").unwrap();
        let o = &eval_op(&e, &[a, b]).unwrap()[0];
        assert_eq!(o.shape(), &[2, 1, 1]);
        assert_eq!(o.to_f64_vec(), vec![210., 430.]);
    }
}
