//! Resize (and the older Upsample): nearest / linear / cubic interpolation over any axes,
//! with ONNX's coordinate transformation modes.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Interpolation of a `Resize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

/// How an output coordinate maps back to an input coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    /// Uses the `roi` input: [starts..., ends...] as fractions of the input.
    TfCropAndResize,
}

/// Rounding of the nearest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// How `sizes` are honoured when they would change the aspect ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Whether input 1 holds scale factors (f32) or output sizes (i64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeTarget {
    Scales,
    Sizes,
}

/// Resizes `x` (input 0) to the scales or sizes of input 1, over `axes` (all when `None`).
/// Input 2, only with `TfCropAndResize`, is the roi.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    pub cubic_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
    pub antialias: bool,
    pub axes: Option<Vec<i64>>,
    pub aspect: AspectPolicy,
    pub target: ResizeTarget,
}

impl Resize {
    /// Axes resized, normalized.
    pub fn axes_for(&self, rank: usize) -> Result<Vec<usize>> {
        match &self.axes {
            None => Ok((0..rank).collect()),
            Some(a) => a.iter().map(|&x| norm_axis("Resize", x, rank)).collect(),
        }
    }

    /// Output sizes and per-axis scale factors (over all axes) from the target values.
    pub fn resolve(&self, input: &[usize], target: &[f64]) -> Result<(Vec<usize>, Vec<f64>)> {
        let axes = self.axes_for(input.len())?;
        if target.len() != axes.len() {
            return Err(Error::shape(
                "Resize",
                format!(
                    "{} {:?} for {} axes",
                    if self.target == ResizeTarget::Scales {
                        "scales"
                    } else {
                        "sizes"
                    },
                    target,
                    axes.len()
                ),
            ));
        }
        let mut out = input.to_vec();
        let mut scales = vec![1.0f64; input.len()];
        match self.target {
            ResizeTarget::Scales => {
                for (&a, &s) in axes.iter().zip(target) {
                    if !(s > 0.0 && s.is_finite()) {
                        return Err(Error::shape("Resize", format!("bad scale {s}")));
                    }
                    let o = (input[a] as f64 * s).floor();
                    if o > 1e9 {
                        return Err(Error::shape("Resize", format!("output size {o} too large")));
                    }
                    out[a] = o as usize;
                    scales[a] = s;
                }
            }
            ResizeTarget::Sizes => {
                if target.iter().any(|&s| !(0.0..1e9).contains(&s)) {
                    return Err(Error::shape("Resize", format!("bad sizes {target:?}")));
                }
                let ratios = axes
                    .iter()
                    .zip(target)
                    .map(|(&a, &s)| s / input[a].max(1) as f64);
                let common = match self.aspect {
                    AspectPolicy::Stretch => None,
                    AspectPolicy::NotLarger => Some(ratios.clone().fold(f64::INFINITY, f64::min)),
                    AspectPolicy::NotSmaller => Some(ratios.clone().fold(0.0, f64::max)),
                };
                for ((&a, &s), r) in axes.iter().zip(target).zip(ratios) {
                    match common {
                        None => {
                            out[a] = s as usize;
                            scales[a] = r;
                        }
                        Some(c) => {
                            out[a] = (c * input[a] as f64).round() as usize;
                            scales[a] = c;
                        }
                    }
                }
            }
        }
        Ok((out, scales))
    }
}

impl Op for Resize {
    fn name(&self) -> &'static str {
        "Resize"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 3)?;
        let (x, t) = (inputs[0], inputs[1]);
        let ok_t = match self.target {
            ResizeTarget::Scales => t.dtype.is_float(),
            ResizeTarget::Sizes => matches!(t.dtype, DType::I64 | DType::I32),
        };
        if !ok_t || t.rank() != 1 {
            return Err(Error::dtype(
                self.name(),
                format!("bad {:?} input {:?} {}", self.target, t.shape, t.dtype),
            ));
        }
        if x.dtype == DType::Bool {
            return Err(Error::dtype(self.name(), "bool input"));
        }
        let axes = self.axes_for(x.rank())?;
        let mut dims = x.shape.0.clone();
        match (&t.konst, x.shape.as_known()) {
            (Some(k), Some(known)) => {
                let (out, _) = self.resolve(&known, &k.to_f64_vec())?;
                dims = out.into_iter().map(Dim::Known).collect();
            }
            _ => {
                let sized =
                    self.target == ResizeTarget::Sizes && self.aspect == AspectPolicy::Stretch;
                for (i, &a) in axes.iter().enumerate() {
                    dims[a] = match (&t.dims, sized) {
                        (Some(d), true) if d.len() == axes.len() => d[i].clone(),
                        _ => Dim::Unknown,
                    };
                }
            }
        }
        Ok(vec![Fact::new(x.dtype, Shape(dims))])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("Resize", de::<Resize>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    fn op(target: ResizeTarget, aspect: AspectPolicy) -> Resize {
        Resize {
            mode: ResizeMode::Linear,
            coord: CoordMode::HalfPixel,
            nearest: NearestMode::RoundPreferFloor,
            cubic_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: None,
            aspect,
            target,
        }
    }

    #[test]
    fn output_shape_from_scales_and_sizes() {
        let x = Fact::known(DType::F32, &[1, 1, 4, 6]);
        let s = Fact::konst(Tensor::from_vec(&[4], vec![1f32, 1., 0.6, 1.5]).unwrap());
        let o = op(ResizeTarget::Scales, AspectPolicy::Stretch)
            .infer(&[&x, &s])
            .unwrap();
        assert_eq!(o[0].shape, Shape::known(&[1, 1, 2, 9]));
        let sz = Fact::konst(Tensor::from_vec(&[2], vec![8i64, 8]).unwrap());
        let mut r = op(ResizeTarget::Sizes, AspectPolicy::NotLarger);
        r.axes = Some(vec![2, 3]);
        assert_eq!(
            r.infer(&[&x, &sz]).unwrap()[0].shape,
            Shape::known(&[1, 1, 5, 8])
        );
    }
}
