//! Normalizations and softmax.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::ir::Fact;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Inference BatchNormalization: y = (x - mean) / sqrt(var + eps) * scale + bias, per
/// channel (axis 1). Inputs: x, scale, bias, mean, var.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    pub epsilon: f32,
}

impl Op for BatchNorm {
    fn name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 5, 5)?;
        let x = inputs[0];
        if x.rank() < 2 || !x.dtype.is_float() {
            return Err(Error::shape(
                self.name(),
                format!("needs float N,C,... input, got {:?}", x.shape),
            ));
        }
        for p in &inputs[1..] {
            if p.rank() != 1 || p.dtype != x.dtype {
                return Err(Error::shape(
                    self.name(),
                    format!("parameters must be 1-D {}, got {:?}", x.dtype, p),
                ));
            }
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    crate::op_common!();
}

/// LayerNormalization over axes [axis, rank): inputs x, scale, bias?.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerNorm {
    pub axis: i64,
    pub epsilon: f32,
}

impl Op for LayerNorm {
    fn name(&self) -> &'static str {
        "LayerNormalization"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 3)?;
        let x = inputs[0];
        norm_axis(self.name(), self.axis, x.rank())?;
        if !x.dtype.is_float() || inputs[1..].iter().any(|f| f.dtype != x.dtype) {
            return Err(Error::dtype(self.name(), "needs float inputs of one dtype"));
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    crate::op_common!();
}

/// Softmax / LogSoftmax along `axis`. `coerce_2d` is the opset < 13 meaning: normalize over
/// all axes from `axis` on, as one flattened axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Softmax {
    pub axis: i64,
    pub log: bool,
    pub coerce_2d: bool,
}

impl Op for Softmax {
    fn name(&self) -> &'static str {
        if self.log { "LogSoftmax" } else { "Softmax" }
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        norm_axis(self.name(), self.axis, x.rank())?;
        if !x.dtype.is_float() {
            return Err(Error::dtype(self.name(), format!("{} input", x.dtype)));
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("BatchNormalization", de::<BatchNorm>);
    r.insert("LayerNormalization", de::<LayerNorm>);
    r.insert("Softmax", de::<Softmax>);
    r.insert("LogSoftmax", de::<Softmax>);
}
