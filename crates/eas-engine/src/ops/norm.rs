//! Normalizations and softmax.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Graph, NodeId, Patch, Shape};
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

/// Training-mode BatchNormalization (ONNX `training_mode = 1`): normalizes with the batch's
/// own per-channel mean and (biased) variance over every axis but 1. Inputs x, scale, bias,
/// input_mean, input_var; outputs y, running_mean = input_mean * momentum + mean *
/// (1 - momentum) and running_var likewise from the batch variance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormTraining {
    pub epsilon: f32,
    pub momentum: f32,
}

impl Op for BatchNormTraining {
    fn name(&self) -> &'static str {
        "BatchNormTraining"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        let y = BatchNorm {
            epsilon: self.epsilon,
        }
        .infer(inputs)?
        .remove(0);
        let c = Fact::new(y.dtype, Shape(vec![y.shape.dims()[1].clone()]));
        Ok(vec![y, c.clone(), c])
    }
    crate::op_common!();
}

/// LayerNormalization over axes [axis, rank): inputs x, scale, bias?. With `stats`, two
/// more outputs of that dtype (ONNX's stash type): Mean and InvStdDev = 1 / sqrt(var + eps)
/// of each normalized row, shaped like x with the normalized axes set to 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerNorm {
    pub axis: i64,
    pub epsilon: f32,
    #[serde(default)]
    pub stats: Option<DType>,
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
        let y = Fact::new(x.dtype, x.shape.clone());
        match self.stats {
            None => Ok(vec![y]),
            Some(d) if d.is_float() => {
                let a = norm_axis(self.name(), self.axis, x.rank())?;
                let mut s = x.shape.dims().to_vec();
                s[a..].fill(Dim::Known(1));
                let st = Fact::new(d, Shape(s));
                Ok(vec![y, st.clone(), st])
            }
            Some(d) => Err(Error::dtype(self.name(), format!("statistics in {d}"))),
        }
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
    r.insert("BatchNormTraining", de::<BatchNormTraining>);
    r.insert("LayerNormalization", de::<LayerNorm>);
    r.insert("Softmax", de::<Softmax>);
    r.insert("LogSoftmax", de::<Softmax>);
}
