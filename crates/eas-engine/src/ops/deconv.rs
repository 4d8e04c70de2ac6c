//! ConvTranspose (transposed convolution, "deconvolution"), N-d, NCHW layout.

use super::{Op, OpRegistry, de, expect_inputs};
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Padding of a `ConvTranspose`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeconvPadding {
    /// Begin pads for every spatial axis, then end pads.
    Explicit(Vec<usize>),
    /// Output = input * stride (or `output_shape`); the odd pad goes at the end.
    SameUpper,
    /// As `SameUpper`, the odd pad at the beginning.
    SameLower,
}

/// Transposed convolution: weights [C, M/group, k...], optional bias [M].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvTranspose {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub output_padding: Vec<usize>,
    pub padding: DeconvPadding,
    /// Requested spatial output size (ONNX `output_shape`).
    pub output_shape: Option<Vec<usize>>,
    pub group: usize,
}

/// Resolved geometry of one spatial axis; `pad_begin` may be negative when an explicit
/// `output_shape` asks for more than the natural size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeconvAxis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: i64,
    pub output: usize,
}

impl ConvTranspose {
    /// Per-axis geometry from input spatial sizes and kernel sizes (ONNX reference rules).
    pub fn geometry(&self, input: &[usize], kernel: &[usize]) -> Result<Vec<DeconvAxis>> {
        let n = input.len();
        let get = |v: &[usize], i: usize, d: usize| v.get(i).copied().unwrap_or(d);
        if kernel.len() != n
            || self.strides.len() > n
            || self.output_shape.as_ref().is_some_and(|o| o.len() != n)
        {
            return Err(Error::shape(
                "ConvTranspose",
                format!("kernel {kernel:?} / attributes do not match {n} spatial axes"),
            ));
        }
        (0..n)
            .map(|i| {
                let (x, k) = (input[i] as i64, kernel[i] as i64);
                let s = get(&self.strides, i, 1) as i64;
                let d = get(&self.dilations, i, 1) as i64;
                let op = get(&self.output_padding, i, 0) as i64;
                if s == 0 || d == 0 || k == 0 || x == 0 {
                    return Err(Error::shape(
                        "ConvTranspose",
                        "zero size, stride or dilation",
                    ));
                }
                let natural = s * (x - 1) + op + (k - 1) * d + 1;
                let (pb, out) = match &self.padding {
                    DeconvPadding::Explicit(p) => {
                        if p.len() != 2 * n {
                            return Err(Error::shape("ConvTranspose", format!("pads {p:?}")));
                        }
                        let out = match &self.output_shape {
                            Some(o) => o[i] as i64,
                            None => natural - p[i] as i64 - p[i + n] as i64,
                        };
                        (p[i] as i64, out)
                    }
                    same => {
                        let out = match &self.output_shape {
                            Some(o) => o[i] as i64,
                            None => x * s,
                        };
                        let total = natural - out;
                        let half = total.div_euclid(2);
                        let pb = if *same == DeconvPadding::SameUpper {
                            half
                        } else {
                            total - half
                        };
                        (pb, out)
                    }
                };
                if out <= 0 || out > 1 << 30 {
                    return Err(Error::shape("ConvTranspose", format!("output size {out}")));
                }
                Ok(DeconvAxis {
                    input: x as usize,
                    kernel: k as usize,
                    stride: s as usize,
                    dilation: d as usize,
                    pad_begin: pb,
                    output: out as usize,
                })
            })
            .collect()
    }
}

impl Op for ConvTranspose {
    fn name(&self) -> &'static str {
        "ConvTranspose"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 3)?;
        let (x, w) = (inputs[0], inputs[1]);
        if x.dtype != w.dtype || !x.dtype.is_float() {
            return Err(Error::dtype(self.name(), "needs float inputs of one dtype"));
        }
        let r = x.rank();
        if r < 3 || w.rank() != r {
            return Err(Error::shape(
                self.name(),
                format!("input {:?} and weights {:?}", x.shape, w.shape),
            ));
        }
        let g = self.group.max(1);
        let wd = w.shape.dims();
        if let (Some(c), Some(wc)) = (x.shape.dims()[1].known(), wd[0].known())
            && c != wc
        {
            return Err(Error::shape(
                self.name(),
                format!("{c} channels, weights for {wc}"),
            ));
        }
        if let Some(c) = x.shape.dims()[1].known()
            && c % g != 0
        {
            return Err(Error::shape(
                self.name(),
                format!("{c} channels, group {g}"),
            ));
        }
        let m = wd[1].mul(&Dim::Known(g));
        let mut out = vec![x.shape.dims()[0].clone(), m];
        let spatial: Option<Vec<usize>> = x.shape.dims()[2..].iter().map(Dim::known).collect();
        let kernel: Option<Vec<usize>> = wd[2..].iter().map(Dim::known).collect();
        match (spatial, kernel) {
            (Some(sp), Some(k)) => {
                out.extend(self.geometry(&sp, &k)?.iter().map(|a| Dim::Known(a.output)))
            }
            _ => out.extend(std::iter::repeat_n(Dim::Unknown, r - 2)),
        }
        Ok(vec![Fact::new(x.dtype, Shape(out))])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("ConvTranspose", de::<ConvTranspose>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn output_sizes() {
        let op = ConvTranspose {
            strides: vec![3, 2],
            dilations: vec![],
            output_padding: vec![1, 1],
            padding: DeconvPadding::Explicit(vec![0, 0, 0, 0]),
            output_shape: None,
            group: 1,
        };
        let x = Fact::known(DType::F32, &[1, 1, 3, 3]);
        let w = Fact::known(DType::F32, &[1, 2, 3, 3]);
        // ONNX test_convtranspose_pad: [1, 2, 10, 8].
        assert_eq!(
            op.infer(&[&x, &w]).unwrap()[0].shape,
            Shape::known(&[1, 2, 10, 8])
        );
        let same = ConvTranspose {
            padding: DeconvPadding::SameUpper,
            output_padding: vec![],
            strides: vec![2, 2],
            ..op
        };
        assert_eq!(
            same.infer(&[&x, &w]).unwrap()[0].shape,
            Shape::known(&[1, 2, 6, 6])
        );
    }
}
