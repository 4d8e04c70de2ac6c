//! Element-wise unary kernels. Float functions are written once over `Float` (f16/bf16
//! compute through f32 via `half`); the op is matched once per run, outside the loop.

use super::{PAR_MIN_ELEMS, fastmath};
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, op_as};
use crate::cpu::registry::KernelRegistry;
use crate::dtype::{DType, Float, Num};
use crate::ir::Fact;
use crate::ops::{Op, Unary, UnaryOp};
use crate::{Error, Result};
use rayon::prelude::*;

/// Applies `f` element-wise, in parallel chunks for large tensors.
pub(crate) fn map<A: Copy + Sync, B: Send>(x: &[A], o: &mut [B], f: impl Fn(A) -> B + Sync) {
    if o.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
        let n = PAR_MIN_ELEMS / 4;
        o.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(|(o, x)| {
            for (o, &v) in o.iter_mut().zip(x) {
                *o = f(v);
            }
        });
    } else {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = f(v);
        }
    }
}

/// Applies a slice function (one of `fastmath`'s), in parallel chunks for large tensors.
fn map_slices(x: &[f32], o: &mut [f32], f: SliceFn) {
    if o.len() >= PAR_MIN_ELEMS && super::pool_threads() > 1 {
        let n = PAR_MIN_ELEMS / 4;
        o.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(o, x)| f(x, o));
    } else {
        f(x, o);
    }
}

/// A slice-to-slice f32 function.
type SliceFn = fn(&[f32], &mut [f32]);

/// The vectorized f32 kernel of `op`, when there is one (see `fastmath` for accuracy).
fn fast_f32(op: UnaryOp) -> Option<SliceFn> {
    Some(match op {
        UnaryOp::Exp => fastmath::exp,
        UnaryOp::Erf => fastmath::erf,
        UnaryOp::Gelu { tanh_approx: false } => fastmath::gelu,
        UnaryOp::Sigmoid => fastmath::sigmoid,
        UnaryOp::Swish => fastmath::swish,
        UnaryOp::HardSwish => fastmath::hard_swish,
        _ => return None,
    })
}

#[inline]
fn sigmoid<T: Float>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

#[inline]
fn round_half_even<T: Float>(x: T) -> T {
    let r = x.round();
    let two = T::ONE + T::ONE;
    if num_traits::Float::abs(x - x.trunc()) == T::ONE / two {
        two * (x / two).round()
    } else {
        r
    }
}

fn float_map<T: Float>(op: UnaryOp, x: &[T], o: &mut [T]) {
    let c = |v: f64| T::from_f64(v);
    match op {
        UnaryOp::Sqrt => map(x, o, |v| v.sqrt()),
        UnaryOp::Exp => map(x, o, |v| v.exp()),
        UnaryOp::Log => map(x, o, |v| v.ln()),
        UnaryOp::Reciprocal => map(x, o, |v| v.recip()),
        UnaryOp::Sin => map(x, o, |v| v.sin()),
        UnaryOp::Cos => map(x, o, |v| v.cos()),
        UnaryOp::Tan => map(x, o, |v| v.tan()),
        UnaryOp::Tanh => map(x, o, |v| v.tanh()),
        UnaryOp::Sigmoid => map(x, o, sigmoid),
        UnaryOp::Erf => map(x, o, Float::erf),
        UnaryOp::Floor => map(x, o, |v| v.floor()),
        UnaryOp::Ceil => map(x, o, |v| v.ceil()),
        UnaryOp::Round => map(x, o, round_half_even),
        UnaryOp::Softplus => map(x, o, |v| {
            // log(1 + e^x) without overflow for large x.
            if v > c(20.0) { v } else { v.exp().ln_1p() }
        }),
        UnaryOp::Softsign => map(x, o, |v| v / (T::ONE + num_traits::Float::abs(v))),
        UnaryOp::Swish => map(x, o, |v| v * sigmoid(v)),
        UnaryOp::HardSwish => map(x, o, |v| v * (v + c(3.0)).max(T::ZERO).min(c(6.0)) / c(6.0)),
        UnaryOp::Gelu { tanh_approx: false } => {
            let r = c(std::f64::consts::FRAC_1_SQRT_2);
            map(x, o, |v| c(0.5) * v * (T::ONE + (v * r).erf()))
        }
        UnaryOp::Gelu { tanh_approx: true } => {
            let k = c((2.0 / std::f64::consts::PI).sqrt());
            map(x, o, |v| {
                c(0.5) * v * (T::ONE + (k * (v + c(0.044715) * v * v * v)).tanh())
            })
        }
        UnaryOp::LeakyRelu { alpha } => {
            let a = c(alpha as f64);
            map(x, o, |v| if v < T::ZERO { a * v } else { v })
        }
        UnaryOp::Elu { alpha } => {
            let a = c(alpha as f64);
            map(x, o, |v| {
                if v < T::ZERO {
                    a * (v.exp() - T::ONE)
                } else {
                    v
                }
            })
        }
        UnaryOp::Selu { alpha, gamma } => {
            let (a, g) = (c(alpha as f64), c(gamma as f64));
            map(x, o, |v| {
                if v <= T::ZERO {
                    g * (a * v.exp() - a)
                } else {
                    g * v
                }
            })
        }
        UnaryOp::HardSigmoid { alpha, beta } => {
            let (a, b) = (c(alpha as f64), c(beta as f64));
            map(x, o, |v| (a * v + b).max(T::ZERO).min(T::ONE))
        }
        _ => unreachable!("numeric ops are handled by numeric_map"),
    }
}

fn numeric_map<T: Num>(op: UnaryOp, x: &[T], o: &mut [T]) {
    match op {
        UnaryOp::Neg => map(x, o, |v| v.negate()),
        UnaryOp::Abs => map(x, o, |v| v.absolute()),
        UnaryOp::Relu => map(x, o, |v| {
            // NaN stays NaN.
            if v > T::ZERO || v.is_nan_() {
                v
            } else {
                T::ZERO
            }
        }),
        UnaryOp::Sign => map(x, o, |v| {
            if v > T::ZERO {
                T::ONE
            } else if v < T::ZERO {
                T::ONE.negate()
            } else {
                v
            }
        }),
        UnaryOp::Clip { min, max } => {
            let (lo, hi) = (T::from_f64(min), T::from_f64(max));
            map(x, o, |v| {
                if v.is_nan_() {
                    v
                } else {
                    v.maximum(lo).minimum(hi)
                }
            })
        }
        _ => unreachable!("float ops are handled by float_map"),
    }
}

#[derive(Debug)]
struct UnaryKernel {
    op: UnaryOp,
    dtype: DType,
}

impl Kernel for UnaryKernel {
    fn run(
        &self,
        _: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let (x, out) = (&inputs[0], &mut outputs[0]);
        match self.op {
            UnaryOp::Not => {
                map(x.as_slice::<bool>()?, out.as_slice_mut::<bool>()?, |v| !v);
                Ok(())
            }
            UnaryOp::IsNaN => crate::dispatch_float!(self.dtype, T => {
                map(x.as_slice::<T>()?, out.as_slice_mut::<bool>()?, |v| v.is_nan());
                Ok(())
            }, else => Err(Error::dtype("IsNaN", format!("{} input", self.dtype)))),
            op if op.is_numeric() => crate::dispatch_numeric!(self.dtype, T => {
                numeric_map::<T>(op, x.as_slice::<T>()?, out.as_slice_mut::<T>()?);
                Ok(())
            }, else => Err(Error::dtype(op.name(), "bool input"))),
            op if self.dtype == DType::F32 && fast_f32(op).is_some() => {
                let f = fast_f32(op).expect("checked");
                map_slices(x.as_slice::<f32>()?, out.as_slice_mut::<f32>()?, f);
                Ok(())
            }
            op => crate::dispatch_float!(self.dtype, T => {
                float_map::<T>(op, x.as_slice::<T>()?, out.as_slice_mut::<T>()?);
                Ok(())
            }, else => Err(Error::dtype(op.name(), format!("{} input", self.dtype)))),
        }
    }
}

fn build(op: &dyn Op, inputs: &[Fact], _: &[Fact]) -> Result<Box<dyn Kernel>> {
    let op = op_as::<Unary>(op)?;
    Ok(Box::new(UnaryKernel {
        op: op.op,
        dtype: inputs[0].dtype,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.insert::<Unary>(build);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::eval_op;
    use crate::tensor::{Tensor, assert_close};

    fn run(op: UnaryOp, x: &[f32]) -> Vec<f32> {
        let t = Tensor::from_vec(&[x.len()], x.to_vec()).unwrap();
        eval_op(&Unary::new(op), &[t]).unwrap()[0]
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_close(
            &Tensor::from_slice(&[a.len()], a).unwrap(),
            &Tensor::from_slice(&[b.len()], b).unwrap(),
            1e-6,
        );
    }

    #[test]
    fn activations_on_hand_computed_values() {
        close(&run(UnaryOp::Relu, &[-1., 0., 2.]), &[0., 0., 2.]);
        close(&run(UnaryOp::Sigmoid, &[0., 2.]), &[0.5, 0.880_797_1]);
        close(&run(UnaryOp::Tanh, &[0.5]), &[0.462_117_16]);
        close(
            &run(UnaryOp::Erf, &[0.5, -1.0]),
            &[0.520_499_9, -0.842_700_8],
        );
        close(
            &run(UnaryOp::Gelu { tanh_approx: false }, &[1.0, -1.0]),
            &[0.841_344_7, -0.158_655_26],
        );
        close(
            &run(UnaryOp::Gelu { tanh_approx: true }, &[1.0]),
            &[0.841_192],
        );
        close(
            &run(
                UnaryOp::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                &[-3., 0., 1., 3.],
            ),
            &[0., 0.5, 0.7, 1.],
        );
        close(&run(UnaryOp::HardSwish, &[-4., 1., 4.]), &[0., 4. / 6., 4.]);
        close(
            &run(UnaryOp::LeakyRelu { alpha: 0.1 }, &[-2., 3.]),
            &[-0.2, 3.],
        );
        close(
            &run(UnaryOp::Clip { min: 0.0, max: 6.0 }, &[-1., 3., 7.]),
            &[0., 3., 6.],
        );
        close(
            &run(UnaryOp::Round, &[0.5, 1.5, 2.5, -0.5, 2.4]),
            &[0., 2., 2., -0., 2.],
        );
        close(
            &run(UnaryOp::Softplus, &[0., 100.]),
            &[std::f32::consts::LN_2, 100.],
        );
        close(&run(UnaryOp::Sqrt, &[4., 9.]), &[2., 3.]);
        close(&run(UnaryOp::Reciprocal, &[4.]), &[0.25]);
    }

    #[test]
    fn integer_abs_neg_and_not() {
        let t = Tensor::from_vec(&[3], vec![-3i32, 0, 5]).unwrap();
        let a = &eval_op(&Unary::new(UnaryOp::Abs), std::slice::from_ref(&t)).unwrap()[0];
        assert_eq!(a.to_i64_vec(), vec![3, 0, 5]);
        let n = &eval_op(&Unary::new(UnaryOp::Neg), &[t]).unwrap()[0];
        assert_eq!(n.to_i64_vec(), vec![3, 0, -5]);
        let b = Tensor::from_vec(&[2], vec![true, false]).unwrap();
        let nb = &eval_op(&Unary::new(UnaryOp::Not), &[b]).unwrap()[0];
        assert_eq!(nb.as_slice::<bool>().unwrap(), &[false, true]);
    }

    #[test]
    fn f16_goes_through_f32() {
        let x = Tensor::from_vec(
            &[2],
            vec![half::f16::from_f32(0.0), half::f16::from_f32(1.0)],
        )
        .unwrap();
        let y = &eval_op(&Unary::new(UnaryOp::Exp), &[x]).unwrap()[0];
        let v = y.to_f64_vec();
        assert_eq!(v[0], 1.0);
        assert!((v[1] - std::f64::consts::E).abs() < 2e-3);
    }
}
