//! Kernel of `ops::math`: one element-wise map, computed in f64 and stored in the input's
//! dtype (these ops are rare in hot paths; accuracy matters more than speed).

use super::unary::map;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Datum};
use crate::ir::Fact;
use crate::ops::Op;
use crate::ops::math::{Math, MathOp};
use crate::{Error, Result};

#[derive(Debug)]
struct MathKernel {
    op: MathOp,
    dtype: DType,
}

impl Kernel for MathKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let op = self.op;
        crate::dispatch_numeric!(self.dtype, T => {
            map(inputs[0].as_slice::<T>()?, outputs[0].as_slice_mut::<T>()?, |v: T| {
                T::from_f64(op.apply(v.to_f64()))
            });
            Ok(())
        }, else => Err(Error::dtype(op.name(), "bool input")))
    }
}

fn build(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(MathKernel {
        op: op_as::<Math>(op)?.op,
        dtype: inputs[0].dtype,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Math>(build);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::Tensor;

    fn run(op: MathOp, x: &[f32]) -> Vec<f64> {
        let t = Tensor::from_vec(&[x.len()], x.to_vec()).unwrap();
        eval_op(&Math { op }, &[t]).unwrap()[0].to_f64_vec()
    }

    #[test]
    fn hand_checked_values() {
        let close = |a: Vec<f64>, b: &[f64]| {
            assert!(
                a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6),
                "{a:?} vs {b:?}"
            )
        };
        close(
            run(MathOp::Acos, &[1.0, 0.0]),
            &[0.0, std::f64::consts::FRAC_PI_2],
        );
        close(run(MathOp::Sinh, &[1.0]), &[1.175_201_2]);
        close(run(MathOp::Mish, &[1.0]), &[0.865_098_4]);
        close(
            run(MathOp::Celu { alpha: 2.0 }, &[-2.0, 3.0]),
            &[2.0 * ((-1f64).exp() - 1.0), 3.0],
        );
        close(
            run(MathOp::ThresholdedRelu { alpha: 1.0 }, &[0.5, 2.0]),
            &[0.0, 2.0],
        );
        close(
            run(
                MathOp::Shrink {
                    lambd: 1.5,
                    bias: 0.5,
                },
                &[-2.0, 0.0, 2.0],
            ),
            &[-1.5, 0.0, 1.5],
        );
        let ints = Tensor::from_vec(&[2], vec![-5i32, 5]).unwrap();
        let s = eval_op(
            &Math {
                op: MathOp::Shrink {
                    lambd: 1.0,
                    bias: 1.0,
                },
            },
            &[ints],
        )
        .unwrap();
        assert_eq!(s[0].to_i64_vec(), vec![-4, 4]);
    }
}
