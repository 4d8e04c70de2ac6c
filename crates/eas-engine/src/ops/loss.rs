//! Losses: negative log-likelihood (SoftmaxCrossEntropyLoss is LogSoftmax + this).

use super::{Op, OpRegistry, de, expect_inputs};
use crate::dtype::DType;
use crate::ir::{Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How per-element losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossReduction {
    None,
    Sum,
    /// Sum divided by the total weight of the elements not ignored.
    Mean,
}

/// `loss[n, d..] = -input[n, target[n, d..], d..] * weight[target]`, zero where the target
/// is `ignore_index`. Inputs: log-probabilities [N, C, d..], targets [N, d..] (int),
/// optional weights [C].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NllLoss {
    pub reduction: LossReduction,
    pub ignore_index: Option<i64>,
}

impl Op for NllLoss {
    fn name(&self) -> &'static str {
        "NegativeLogLikelihoodLoss"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 3)?;
        let (x, t) = (inputs[0], inputs[1]);
        if !x.dtype.is_float() || !matches!(t.dtype, DType::I32 | DType::I64) {
            return Err(Error::dtype(self.name(), "float input and integer targets"));
        }
        if x.rank() < 2 || t.rank() + 1 != x.rank() {
            return Err(Error::shape(
                self.name(),
                format!("input {:?} and target {:?}", x.shape, t.shape),
            ));
        }
        if let Some(w) = inputs.get(2)
            && (w.rank() != 1 || w.dtype != x.dtype)
        {
            return Err(Error::shape(
                self.name(),
                "weights must be [C] of the input dtype",
            ));
        }
        let shape = match self.reduction {
            LossReduction::None => {
                let mut d = vec![x.shape.dims()[0].clone()];
                d.extend_from_slice(&x.shape.dims()[2..]);
                Shape(d)
            }
            _ => Shape(vec![]),
        };
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("NegativeLogLikelihoodLoss", de::<NllLoss>);
}
