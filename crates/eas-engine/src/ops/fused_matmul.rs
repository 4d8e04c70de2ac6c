//! MatMul with its bias, residual and activation fused (made by `passes::FuseMatMul`).

use super::{Op, OpRegistry, UnaryOp, de, expect_inputs};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// `act(MatMul(A, B) + bias [+ residual])`.
///
/// Inputs: A `[.., m, k]` (rank >= 2), B `[k, n]`, bias `[n]` (added along the last axis),
/// and optionally a residual with exactly the output's shape `[.., m, n]`. The activation,
/// when present, is one of [`FusedMatMul::supports`]. f32 only: the fusion exists for the CPU
/// GEMM's epilogue (the bias and residual are added while each output tile is in registers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedMatMul {
    pub activation: Option<UnaryOp>,
}

impl FusedMatMul {
    /// Activations the fused op applies (the rest stay separate ops).
    pub fn supports(op: UnaryOp) -> bool {
        use UnaryOp::*;
        matches!(
            op,
            Relu | LeakyRelu { .. }
                | Clip { .. }
                | Sigmoid
                | Tanh
                | Gelu { .. }
                | Swish
                | HardSwish
                | Elu { .. }
        )
    }
}

impl Op for FusedMatMul {
    fn name(&self) -> &'static str {
        "FusedMatMul"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 4)?;
        let (a, b, bias) = (inputs[0], inputs[1], inputs[2]);
        if inputs.iter().any(|f| f.dtype != DType::F32) {
            return Err(Error::dtype(self.name(), "every input must be f32"));
        }
        if let Some(act) = self.activation
            && !FusedMatMul::supports(act)
        {
            return Err(Error::invalid(format!(
                "FusedMatMul: activation {} is not supported",
                act.name()
            )));
        }
        if a.rank() < 2 || b.rank() != 2 || bias.rank() != 1 {
            return Err(Error::shape(
                self.name(),
                format!(
                    "wants A of rank >= 2, B [k, n], bias [n]; got {:?}, {:?}, {:?}",
                    a.shape, b.shape, bias.shape
                ),
            ));
        }
        let (ad, bd) = (a.shape.dims(), b.shape.dims());
        let known_differ =
            |x: &Dim, y: &Dim| matches!((x.known(), y.known()), (Some(p), Some(q)) if p != q);
        if known_differ(&ad[ad.len() - 1], &bd[0]) || known_differ(&bd[1], &bias.shape.dims()[0]) {
            return Err(Error::shape(
                self.name(),
                format!(
                    "A {:?}, B {:?} and bias {:?} do not chain",
                    a.shape, b.shape, bias.shape
                ),
            ));
        }
        let mut out = ad[..ad.len() - 1].to_vec();
        out.push(bd[1].clone());
        let out = Shape(out);
        if let Some(r) = inputs.get(3)
            && r.shape.rank() != out.rank()
        {
            return Err(Error::shape(
                self.name(),
                format!("residual {:?} is not the output's shape {out:?}", r.shape),
            ));
        }
        if let (Some(r), Some(o)) = (
            inputs.get(3).and_then(|r| r.shape.as_known()),
            out.as_known(),
        ) && r != o
        {
            return Err(Error::shape(
                self.name(),
                format!("residual {r:?} is not the output's shape {o:?}"),
            ));
        }
        Ok(vec![Fact::new(DType::F32, out)])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("FusedMatMul", de::<FusedMatMul>);
}
