//! A convolution with its epilogue fused in: bias, an optional residual add, an activation
//! and an optional scalar affine map, applied while the output is still in cache. Made by
//! `passes::FuseConv` from `Conv -> [Add] -> activation -> [Mul] -> [Add]` chains; never
//! produced by importers. Also `ChannelAffine`, the same epilogue without the conv (a batch
//! norm and activation that no conv absorbs), made by `passes::FuseChannelAffine`.

use super::{Conv, Op, OpRegistry, UnaryOp, de, expect_inputs};
use crate::dtype::DType;
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
/// output's exact shape. Same layout, attributes and output as `conv`, except that with
/// `channels_last` the input, residual and output are NHWC (2-D convs only; the weights
/// stay `[M, C/group, kh, kw]`), as `passes::ChannelsLast` makes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedConv {
    pub conv: Conv,
    pub act: Activation,
    pub residual: bool,
    /// Applied after `act`; absent from artifacts written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<PostAffine>,
    /// Input, residual and output in NHWC instead of NCHW; absent (false) from artifacts
    /// written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub channels_last: bool,
}

/// NHWC -> NCHW of a rank-4 fact (and back with `to_nhwc`).
fn permuted(f: &Fact, perm: [usize; 4]) -> Fact {
    let d = f.shape.dims();
    Fact::new(
        f.dtype,
        crate::ir::Shape(perm.iter().map(|&i| d[i].clone()).collect()),
    )
}
const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

impl Op for FusedConv {
    fn name(&self) -> &'static str {
        "FusedConv"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        let n = 3 + usize::from(self.residual);
        expect_inputs(self.name(), inputs, n, n)?;
        let out = if self.channels_last {
            if inputs[0].rank() != 4 {
                return Err(Error::shape(
                    self.name(),
                    format!(
                        "channels_last needs an NHWC input, not {:?}",
                        inputs[0].shape
                    ),
                ));
            }
            let x = permuted(inputs[0], TO_NCHW);
            let out = self.conv.infer(&[&x, inputs[1], inputs[2]])?;
            vec![permuted(&out[0], TO_NHWC)]
        } else {
            self.conv.infer(&inputs[..3])?
        };
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

/// `act(x * scale + shift)`, `scale` and `shift` ([C] f32, C = the size of `axis` of `x`)
/// varying along one axis: a batch norm that no conv absorbs, with the activation after it
/// (DenseNet's BN-ReLU before each conv), in one pass instead of Mul, Add and the
/// activation. A multiply, then an add, each rounded, then the activation as `FusedConv`
/// applies it: the unfused graph's result bit for bit (a missing Mul is `scale = 1`, a
/// missing Add `shift = -0.0`; neither changes a bit). Inputs: x (f32), scale, shift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelAffine {
    pub axis: usize,
    pub act: Activation,
}

impl Op for ChannelAffine {
    fn name(&self) -> &'static str {
        "ChannelAffine"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 3)?;
        let x = inputs[0];
        let c = x.shape.dims().get(self.axis).cloned();
        let params_ok = inputs[1..].iter().all(|p| {
            p.dtype == DType::F32
                && p.rank() == 1
                && c.as_ref()
                    .is_some_and(|c| matches!(c, Dim::Unknown) || p.shape.dims()[0] == *c)
        });
        if x.dtype != DType::F32 || !params_ok {
            return Err(Error::shape(
                self.name(),
                format!(
                    "needs an f32 input with axis {} and [C] f32 scale and shift, not {:?} {} / {:?} / {:?}",
                    self.axis, x.shape, x.dtype, inputs[1].shape, inputs[2].shape
                ),
            ));
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("FusedConv", de::<FusedConv>);
    r.insert("ChannelAffine", de::<ChannelAffine>);
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
                channels_last: false,
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
            let op = FusedConv {
                channels_last: true,
                ..op
            };
            let back = registry().build(op.name(), &op.attrs()).unwrap();
            assert_eq!(back.downcast_ref::<FusedConv>(), Some(&op));
        }
    }

    #[test]
    fn channels_last_reads_and_writes_nhwc() {
        use crate::dtype::DType;
        use crate::ir::Shape;
        let k = |d: &[usize]| {
            Fact::new(
                DType::F32,
                Shape(d.iter().map(|&v| Dim::Known(v)).collect()),
            )
        };
        let op = FusedConv {
            conv: Conv {
                strides: vec![2, 2],
                dilations: vec![1, 1],
                padding: Padding::Explicit(vec![1, 1, 1, 1]),
                group: 1,
            },
            act: Activation::Relu,
            residual: true,
            post: None,
            channels_last: true,
        };
        let (x, w, b) = (k(&[1, 10, 12, 3]), k(&[8, 3, 3, 3]), k(&[8]));
        let out = op.infer(&[&x, &w, &b, &k(&[1, 5, 6, 8])]).unwrap();
        assert_eq!(out[0].shape.as_known().unwrap(), vec![1, 5, 6, 8]);
        // An NCHW-shaped residual is refused.
        assert!(op.infer(&[&x, &w, &b, &k(&[1, 8, 5, 6])]).is_err());
        // Artifacts written before the field existed read as NCHW.
        let mut attrs = op.attrs();
        attrs.as_object_mut().unwrap().remove("channels_last");
        let old = registry().build("FusedConv", &attrs).unwrap();
        assert!(!old.downcast_ref::<FusedConv>().unwrap().channels_last);
    }
}
