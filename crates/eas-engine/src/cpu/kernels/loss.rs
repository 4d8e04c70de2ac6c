//! Loss kernels, accumulated in f64.

use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete, op_as};
use crate::cpu::kernels::index::ints;
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::loss::{LossReduction, NllLoss};
use crate::{Error, Result};

#[derive(Debug)]
struct NllKernel {
    op: NllLoss,
    dtype: DType,
    n: usize,
    c: usize,
    inner: usize,
}

impl Kernel for NllKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (n, c, inner) = (self.n, self.c, self.inner);
        let tgt = ints(&inputs[1])?;
        crate::dispatch_float!(self.dtype, T => {
            let x = inputs[0].as_slice::<T>()?;
            let w: Option<&[T]> = match inputs.get(2) { Some(v) => Some(v.as_slice::<T>()?), None => None };
            let mut losses = vec![0f64; n * inner];
            let (mut total, mut wsum) = (0f64, 0f64);
            for b in 0..n {
                for i in 0..inner {
                    let t = tgt[b * inner + i];
                    if Some(t) == self.op.ignore_index {
                        continue;
                    }
                    if t < 0 || t as usize >= c {
                        return Err(Error::bad_input(format!(
                            "NegativeLogLikelihoodLoss: target {t} outside 0..{c}"
                        )));
                    }
                    let t = t as usize;
                    let wt = w.map_or(1.0, |w| w[t].to_f64());
                    let l = -x[(b * c + t) * inner + i].to_f64() * wt;
                    losses[b * inner + i] = l;
                    total += l;
                    wsum += wt;
                }
            }
            let o = outputs[0].as_slice_mut::<T>()?;
            match self.op.reduction {
                LossReduction::None => {
                    for (d, s) in o.iter_mut().zip(losses) {
                        *d = T::from_f64(s);
                    }
                }
                LossReduction::Sum => o[0] = T::from_f64(total),
                LossReduction::Mean => o[0] = T::from_f64(total / wsum),
            }
            Ok(())
        }, else => Err(Error::dtype("NegativeLogLikelihoodLoss", "non-float input")))
    }
}

fn nll(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let s = concrete(&inputs[0])?;
    Ok(Box::new(NllKernel {
        op: op_as::<NllLoss>(op)?.clone(),
        dtype: inputs[0].dtype,
        n: s[0],
        c: s[1],
        inner: s[2..].iter().product(),
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<NllLoss>(nll);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::Tensor;

    #[test]
    fn nll_reductions_weights_and_ignore() {
        let x = Tensor::from_vec(&[2, 3], vec![-1f32, -2., -3., -4., -5., -6.]).unwrap();
        let t = Tensor::from_vec(&[2], vec![2i64, 0]).unwrap();
        let w = Tensor::from_vec(&[3], vec![1f32, 1., 2.]).unwrap();
        let run = |reduction, ignore_index, with_w: bool| {
            let mut ins = vec![x.clone(), t.clone()];
            if with_w {
                ins.push(w.clone());
            }
            eval_op(
                &NllLoss {
                    reduction,
                    ignore_index,
                },
                &ins,
            )
            .unwrap()[0]
                .to_f64_vec()
        };
        assert_eq!(run(LossReduction::None, None, false), vec![3., 4.]);
        assert_eq!(run(LossReduction::Sum, None, true), vec![10.]);
        assert!((run(LossReduction::Mean, None, true)[0] - 10. / 3.).abs() < 1e-6);
        assert_eq!(run(LossReduction::Mean, Some(0), false), vec![3.]);
        let bad = Tensor::from_vec(&[2], vec![3i64, 0]).unwrap();
        let r = eval_op(
            &NllLoss {
                reduction: LossReduction::Sum,
                ignore_index: None,
            },
            &[x, bad],
        );
        assert!(r.is_err());
    }
}
