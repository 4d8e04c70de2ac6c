//! A convolution with its epilogue fused in: bias, an optional residual add, an activation
//! and an optional scalar affine map, applied while the output is still in cache. Made by
//! `passes::FuseConv` from `Conv -> [Add] -> activation -> [Mul] -> [Add]` chains; never
//! produced by importers.

use super::{Conv, Op, OpRegistry, UnaryOp, de, expect_inputs};
use crate::ir::{Dim, Fact};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The element function applied last. Each variant computes exactly what the `Unary`
/// op of the same name (or, for `HardSwish`, the ONNX decomposition
/// `x * Clip(x + 3, 0, 6) / 6`) computes, so fusing changes no bit of the result.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    Identity,
    Relu,
    /// Clip to [min, max] (Relu6 is `Clip { min: 0, max: 6 }`).
    Clip {
        #[serde(with = "super::json_f64")]
        min: f64,
        #[serde(with = "super::json_f64")]
        max: f64,
    },
    LeakyRelu {
        alpha: f32,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// x * relu6(x + 3) / 6
    HardSwish,
    Sigmoid,
    /// x * sigmoid(x)
    Swish,
}

impl Activation {
    /// The activation a unary op computes, when it is one the fused kernel supports.
    pub fn from_unary(op: UnaryOp) -> Option<Activation> {
        Some(match op {
            UnaryOp::Relu => Activation::Relu,
            UnaryOp::Clip { min, max } => Activation::Clip { min, max },
            UnaryOp::LeakyRelu { alpha } => Activation::LeakyRelu { alpha },
            UnaryOp::HardSigmoid { alpha, beta } => Activation::HardSigmoid { alpha, beta },
            UnaryOp::HardSwish => Activation::HardSwish,
            UnaryOp::Sigmoid => Activation::Sigmoid,
            UnaryOp::Swish => Activation::Swish,
            _ => return None,
        })
    }
}

/// `v * scale + shift` on every output after the activation: a multiply then an add, each
/// rounded, exactly the unfused `Mul` by a scalar and `Add` of a scalar (PP-LCNetV3's
/// learnable affine block `w0 * act(x) + w1`). A lone `Mul` is `shift = -0.0` and a lone
/// `Add` is `scale = 1.0`, both of which change no bit. f32 outputs only.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PostAffine {
    pub scale: f32,
    pub shift: f32,
}

/// `post(act(conv(x, w) + bias [+ residual]))`. Inputs: x, w, bias [M] (always present;
/// the pass adds zeros for a conv without one), and, when `residual`, a tensor of the
/// output's exact shape. Same layout, attributes and output as `conv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedConv {
    pub conv: Conv,
    pub act: Activation,
    pub residual: bool,
    /// Applied after `act`; absent from artifacts written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<PostAffine>,
}

impl Op for FusedConv {
    fn name(&self) -> &'static str {
        "FusedConv"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        let n = 3 + usize::from(self.residual);
        expect_inputs(self.name(), inputs, n, n)?;
        let out = self.conv.infer(&inputs[..3])?;
        if let Some(p) = self.post
            && (out[0].dtype != crate::dtype::DType::F32
                || !p.scale.is_finite()
                || !p.shift.is_finite())
        {
            return Err(Error::shape(
                self.name(),
                format!(
                    "a post affine map ({} * v + {}) needs finite constants and an f32 output, not {}",
                    p.scale, p.shift, out[0].dtype
                ),
            ));
        }
        if self.residual {
            let (r, o) = (inputs[3], &out[0]);
            let same =
                r.dtype == o.dtype
                    && r.rank() == o.rank()
                    && r.shape.dims().iter().zip(o.shape.dims()).all(|(a, b)| {
                        a == b || matches!(a, Dim::Unknown) || matches!(b, Dim::Unknown)
                    });
            if !same {
                return Err(Error::shape(
                    self.name(),
                    format!(
                        "residual {:?} {} must match the output {:?} {}",
                        r.shape, r.dtype, o.shape, o.dtype
                    ),
                ));
            }
        }
        Ok(out)
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("FusedConv", de::<FusedConv>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Padding, registry};

    #[test]
    fn round_trips_through_the_registry() {
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::Clip {
                min: f64::NEG_INFINITY,
                max: 6.0,
            },
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Activation::HardSwish,
            Activation::Sigmoid,
            Activation::Swish,
        ] {
            let op = FusedConv {
                conv: Conv {
                    strides: vec![2, 1],
                    dilations: vec![1, 1],
                    padding: Padding::Explicit(vec![1, 2, 1, 2]),
                    group: 4,
                },
                act,
                residual: true,
                post: None,
            };
            let back = registry().build(op.name(), &op.attrs()).unwrap();
            assert_eq!(back.downcast_ref::<FusedConv>(), Some(&op));
            let op = FusedConv {
                post: Some(PostAffine {
                    scale: 0.5,
                    shift: -0.0,
                }),
                ..op
            };
            let back = registry().build(op.name(), &op.attrs()).unwrap();
            assert_eq!(back.downcast_ref::<FusedConv>(), Some(&op));
        }
    }
}
