//! Element-wise unary ops (math and activations). Parameters are typed fields of the enum.

use super::{Op, OpRegistry, de, expect_inputs};
use crate::dtype::DType;
use crate::ir::Fact;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The element function of a `Unary` op.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    // numeric (ints too)
    Neg,
    Abs,
    Relu,
    Sign,
    // bool
    Not,
    // float
    Sqrt,
    Exp,
    Log,
    Reciprocal,
    Sin,
    Cos,
    Tan,
    Tanh,
    Sigmoid,
    Erf,
    Floor,
    Ceil,
    /// Round half to even (ONNX Round).
    Round,
    Softplus,
    Softsign,
    /// x * sigmoid(x)
    Swish,
    /// x * relu6(x + 3) / 6
    HardSwish,
    Gelu {
        tanh_approx: bool,
    },
    LeakyRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// Clip to [min, max] (bounds already in the input's dtype range).
    Clip {
        #[serde(with = "super::json_f64")]
        min: f64,
        #[serde(with = "super::json_f64")]
        max: f64,
    },
    IsNaN,
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        use UnaryOp::*;
        match self {
            Neg => "Neg",
            Abs => "Abs",
            Relu => "Relu",
            Sign => "Sign",
            Not => "Not",
            Sqrt => "Sqrt",
            Exp => "Exp",
            Log => "Log",
            Reciprocal => "Reciprocal",
            Sin => "Sin",
            Cos => "Cos",
            Tan => "Tan",
            Tanh => "Tanh",
            Sigmoid => "Sigmoid",
            Erf => "Erf",
            Floor => "Floor",
            Ceil => "Ceil",
            Round => "Round",
            Softplus => "Softplus",
            Softsign => "Softsign",
            Swish => "Swish",
            HardSwish => "HardSwish",
            Gelu { .. } => "Gelu",
            LeakyRelu { .. } => "LeakyRelu",
            Elu { .. } => "Elu",
            Selu { .. } => "Selu",
            HardSigmoid { .. } => "HardSigmoid",
            Clip { .. } => "Clip",
            IsNaN => "IsNaN",
        }
    }
    /// Accepts integer inputs too.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign | UnaryOp::Clip { .. }
        )
    }
    const NAMES: [&'static str; 29] = [
        "Neg",
        "Abs",
        "Relu",
        "Sign",
        "Not",
        "Sqrt",
        "Exp",
        "Log",
        "Reciprocal",
        "Sin",
        "Cos",
        "Tan",
        "Tanh",
        "Sigmoid",
        "Erf",
        "Floor",
        "Ceil",
        "Round",
        "Softplus",
        "Softsign",
        "Swish",
        "HardSwish",
        "Gelu",
        "LeakyRelu",
        "Elu",
        "Selu",
        "HardSigmoid",
        "Clip",
        "IsNaN",
    ];
}

/// `out = f(x)` element-wise, same shape; dtype kept (bool for IsNaN).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unary {
    pub op: UnaryOp,
}

impl Unary {
    pub fn new(op: UnaryOp) -> Unary {
        Unary { op }
    }
}

impl Op for Unary {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let ok = match self.op {
            UnaryOp::Not => x.dtype == DType::Bool,
            op if op.is_numeric() => x.dtype.is_numeric(),
            _ => x.dtype.is_float(),
        };
        if !ok {
            return Err(Error::dtype(
                self.name(),
                format!("does not accept {} input", x.dtype),
            ));
        }
        let dtype = if self.op == UnaryOp::IsNaN {
            DType::Bool
        } else {
            x.dtype
        };
        Ok(vec![Fact::new(dtype, x.shape.clone())])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    for n in UnaryOp::NAMES {
        r.insert(n, de::<Unary>);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_registered_and_round_trips() {
        let ops = [
            UnaryOp::Relu,
            UnaryOp::Gelu { tanh_approx: true },
            UnaryOp::Clip { min: 0.0, max: 6.0 },
            UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
        ];
        for op in ops {
            let u = Unary::new(op);
            let back = crate::ops::registry().build(u.name(), &u.attrs()).unwrap();
            assert_eq!(back.downcast_ref::<Unary>(), Some(&u));
        }
    }

    #[test]
    fn float_only_ops_reject_ints() {
        let f = Fact::known(DType::I32, &[2]);
        assert!(Unary::new(UnaryOp::Exp).infer(&[&f]).is_err());
        assert!(Unary::new(UnaryOp::Abs).infer(&[&f]).is_ok());
    }
}
