//! Element-wise float functions beyond the core `Unary` set: inverse trigonometric and
//! hyperbolic functions and the rarer activations (Mish, Celu, ThresholdedRelu, Shrink).

use super::{Op, OpRegistry, de, expect_inputs};
use crate::ir::Fact;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The element function of a `Math` op.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum MathOp {
    Acos,
    Asin,
    Atan,
    Acosh,
    Asinh,
    Atanh,
    Cosh,
    Sinh,
    /// x * tanh(softplus(x))
    Mish,
    /// max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    Celu {
        alpha: f32,
    },
    /// x when x > alpha, else 0
    ThresholdedRelu {
        alpha: f32,
    },
    /// x - bias when x > lambd, x + bias when x < -lambd, else 0 (numeric inputs)
    Shrink {
        lambd: f32,
        bias: f32,
    },
}

impl MathOp {
    pub fn name(self) -> &'static str {
        match self {
            MathOp::Acos => "Acos",
            MathOp::Asin => "Asin",
            MathOp::Atan => "Atan",
            MathOp::Acosh => "Acosh",
            MathOp::Asinh => "Asinh",
            MathOp::Atanh => "Atanh",
            MathOp::Cosh => "Cosh",
            MathOp::Sinh => "Sinh",
            MathOp::Mish => "Mish",
            MathOp::Celu { .. } => "Celu",
            MathOp::ThresholdedRelu { .. } => "ThresholdedRelu",
            MathOp::Shrink { .. } => "Shrink",
        }
    }
    pub const NAMES: [&'static str; 12] = [
        "Acos",
        "Asin",
        "Atan",
        "Acosh",
        "Asinh",
        "Atanh",
        "Cosh",
        "Sinh",
        "Mish",
        "Celu",
        "ThresholdedRelu",
        "Shrink",
    ];

    /// The function on one value (computed in f64).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            MathOp::Acos => x.acos(),
            MathOp::Asin => x.asin(),
            MathOp::Atan => x.atan(),
            MathOp::Acosh => x.acosh(),
            MathOp::Asinh => x.asinh(),
            MathOp::Atanh => x.atanh(),
            MathOp::Cosh => x.cosh(),
            MathOp::Sinh => x.sinh(),
            MathOp::Mish => {
                let sp = if x > 20.0 { x } else { x.exp().ln_1p() };
                x * sp.tanh()
            }
            MathOp::Celu { alpha } => {
                let a = alpha as f64;
                x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0)
            }
            MathOp::ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    x
                } else {
                    0.0
                }
            }
            MathOp::Shrink { lambd, bias } => {
                let (l, b) = (lambd as f64, bias as f64);
                if x < -l {
                    x + b
                } else if x > l {
                    x - b
                } else {
                    0.0
                }
            }
        }
    }
}

/// `out = f(x)` element-wise; float inputs (Shrink: any numeric input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Math {
    pub op: MathOp,
}

impl Op for Math {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let ok = match self.op {
            MathOp::Shrink { .. } => x.dtype.is_numeric(),
            _ => x.dtype.is_float(),
        };
        if !ok {
            return Err(Error::dtype(
                self.name(),
                format!("does not accept {} input", x.dtype),
            ));
        }
        Ok(vec![x.without_value()])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    for n in MathOp::NAMES {
        r.insert(n, de::<Math>);
    }
}
