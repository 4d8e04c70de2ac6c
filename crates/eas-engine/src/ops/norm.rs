//! Normalizations and softmax.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::dtype::DType;
use crate::ir::{Fact, Graph, NodeId, Patch};
use crate::ops::Conv;
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

    /// Folds into a preceding Conv with constant weights: W' = W * s, b' = (b - mean) * s + beta
    /// with s = scale / sqrt(var + eps), when the Conv output feeds only this node.
    fn declutter(&self, g: &Graph, n: NodeId) -> Result<Option<Patch>> {
        let node = g.node(n);
        let Some((conv_id, conv_node)) = g.producer(node.inputs[0]) else {
            return Ok(None);
        };
        let Some(conv) = conv_node.op.downcast_ref::<Conv>() else {
            return Ok(None);
        };
        let consts: Option<Vec<&Tensor>> = node.inputs[1..].iter().map(|&v| g.konst(v)).collect();
        let (Some(p), Some(w)) = (consts, g.konst(conv_node.inputs[1])) else {
            return Ok(None);
        };
        let bias = match conv_node.inputs.get(2) {
            Some(&b) => match g.konst(b) {
                Some(t) => Some(t),
                None => return Ok(None),
            },
            None => None,
        };
        if w.dtype() != DType::F32 || g.outputs().iter().any(|o| o.value == node.inputs[0]) {
            return Ok(None);
        }
        let single_use = g
            .nodes()
            .filter(|(_, m)| m.inputs.contains(&node.inputs[0]))
            .count()
            == 1;
        let m = w.shape()[0];
        if !single_use || p.iter().any(|t| t.len() != m) || bias.is_some_and(|b| b.len() != m) {
            return Ok(None);
        }
        let v = |t: &Tensor| t.to_f64_vec();
        let (scale, beta, mean, var) = (v(p[0]), v(p[1]), v(p[2]), v(p[3]));
        let b0 = bias.map_or(vec![0.0; m], v);
        let s: Vec<f64> = (0..m)
            .map(|i| scale[i] / (var[i] + self.epsilon as f64).sqrt())
            .collect();
        let per = w.len() / m.max(1);
        let wv = w.as_slice::<f32>()?;
        let new_w: Vec<f32> = wv
            .iter()
            .enumerate()
            .map(|(i, &x)| (x as f64 * s[i / per]) as f32)
            .collect();
        let new_b: Vec<f32> = (0..m)
            .map(|i| ((b0[i] - mean[i]) * s[i] + beta[i]) as f32)
            .collect();
        let mut patch = Patch::new();
        let pw = patch.add_const(
            format!("{}.w", conv_node.name),
            Tensor::from_vec(w.shape(), new_w)?,
        );
        let pb = patch.add_const(
            format!("{}.b", conv_node.name),
            Tensor::from_vec(&[m], new_b)?,
        );
        let k = patch.add_node(
            conv_node.name.clone(),
            conv.clone(),
            &[conv_node.inputs[0].into(), pw, pb],
        );
        patch.substitute(node.outputs[0], Patch::out(k, 0));
        patch.remove(n);
        patch.remove(conv_id);
        Ok(Some(patch))
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
