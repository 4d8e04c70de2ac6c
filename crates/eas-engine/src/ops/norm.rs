//! Normalizations and softmax.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::ir::{Fact, Graph, NodeId, Patch};
use crate::tensor::Tensor;
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

    /// Folds into a preceding Conv with constant f32 weights: W' = W * s,
    /// b' = b * s + (beta - mean * s) with s = scale / sqrt(var + eps), when the Conv output
    /// feeds only this node (`passes::fold_affine` does the arithmetic and the checks).
    fn declutter(&self, g: &Graph, n: NodeId) -> Result<Option<Patch>> {
        let node = g.node(n);
        let Some((conv_id, _, _)) = crate::passes::fold_affine::sole_conv(g, node.inputs[0], n)
        else {
            return Ok(None);
        };
        let consts: Option<Vec<Vec<f64>>> = node.inputs[1..]
            .iter()
            .map(|&v| g.konst(v).map(Tensor::to_f64_vec))
            .collect();
        let Some(p) = consts else {
            return Ok(None);
        };
        let (scale, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
        let m = scale.len();
        if p.iter().any(|t| t.len() != m) {
            return Ok(None);
        }
        let s: Vec<f64> = (0..m)
            .map(|i| scale[i] / (var[i] + self.epsilon as f64).sqrt())
            .collect();
        let shift: Vec<f64> = (0..m).map(|i| beta[i] - mean[i] * s[i]).collect();
        crate::passes::fold_affine::fold_into_conv(g, conv_id, &s, &shift, n, node.outputs[0])
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
