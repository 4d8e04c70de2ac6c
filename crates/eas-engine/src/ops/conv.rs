//! Convolution and pooling geometry, and the Conv op.

use super::{Op, OpRegistry, de, expect_inputs};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How spatial padding is chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    /// Begin pads for every spatial axis, then end pads.
    Explicit(Vec<usize>),
    /// Output = ceil(input / stride); extra pad at the end.
    SameUpper,
    /// Output = ceil(input / stride); extra pad at the beginning.
    SameLower,
    Valid,
}

/// Geometry of one spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisGeom {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub output: usize,
}

/// Resolves padding and output sizes. `ceil_mode` is for pools.
pub fn geometry(
    op: &str,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    padding: &Padding,
    ceil_mode: bool,
) -> Result<Vec<AxisGeom>> {
    let n = input.len();
    if kernel.len() != n || strides.len() != n || dilations.len() != n {
        return Err(Error::shape(
            op,
            format!(
                "kernel {kernel:?}/strides {strides:?}/dilations {dilations:?} do not match {n} spatial axes"
            ),
        ));
    }
    if let Padding::Explicit(p) = padding
        && p.len() != 2 * n
    {
        return Err(Error::shape(
            op,
            format!("pads {p:?} need {} entries", 2 * n),
        ));
    }
    (0..n)
        .map(|i| {
            let (x, k, s, d) = (input[i], kernel[i], strides[i], dilations[i]);
            if s == 0 || d == 0 || k == 0 {
                return Err(Error::shape(op, "zero kernel, stride or dilation"));
            }
            let ek = (k - 1)
                .checked_mul(d)
                .and_then(|v| v.checked_add(1))
                .ok_or_else(|| Error::shape(op, "kernel too large"))?;
            let (pb, pe) = match padding {
                Padding::Explicit(p) => (p[i], p[i + n]),
                Padding::Valid => (0, 0),
                Padding::SameUpper | Padding::SameLower => {
                    let out = x.div_ceil(s);
                    let total = ((out.max(1) - 1) * s + ek).saturating_sub(x);
                    if *padding == Padding::SameUpper {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    }
                }
            };
            let padded = x + pb + pe;
            if padded < ek {
                return Err(Error::shape(
                    op,
                    format!("kernel extent {ek} exceeds padded input {padded}"),
                ));
            }
            let span = padded - ek;
            let mut out = if ceil_mode {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            };
            // A last window that starts inside the end padding is dropped (ONNX / PyTorch).
            if ceil_mode && (out - 1) * s >= x + pb {
                out -= 1;
            }
            Ok(AxisGeom {
                input: x,
                kernel: k,
                stride: s,
                dilation: d,
                pad_begin: pb,
                pad_end: pe,
                output: out,
            })
        })
        .collect()
}

/// N-d convolution (NCHW layout, weights [M, C/group, k...]), optional bias [M].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: Padding,
    pub group: usize,
}

impl Op for Conv {
    fn name(&self) -> &'static str {
        "Conv"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 3)?;
        let (x, w) = (inputs[0], inputs[1]);
        if x.dtype != w.dtype || !x.dtype.is_float() {
            return Err(Error::dtype(
                self.name(),
                format!(
                    "needs float inputs of one dtype, got {} and {}",
                    x.dtype, w.dtype
                ),
            ));
        }
        let r = x.rank();
        if r < 3 || w.rank() != r {
            return Err(Error::shape(
                self.name(),
                format!("input {:?} and weights {:?} ranks", x.shape, w.shape),
            ));
        }
        let wd = w.shape.dims();
        let m = wd[0].clone();
        let kernel: Option<Vec<usize>> = wd[2..].iter().map(Dim::known).collect();
        let kernel = kernel.ok_or_else(|| Error::unsupported("Conv with symbolic kernel size"))?;
        let g = self.group.max(1);
        if let (Some(c), Some(wc)) = (x.shape.dims()[1].known(), wd[1].known())
            && (c % g != 0 || c / g != wc)
        {
            return Err(Error::shape(
                self.name(),
                format!("{c} input channels, group {g}, weights expect {wc} per group"),
            ));
        }
        if let Some(mm) = m.known()
            && mm % g != 0
        {
            return Err(Error::shape(
                self.name(),
                format!("{mm} output channels not divisible by group {g}"),
            ));
        }
        if let Some(b) = inputs.get(2)
            && (b.rank() != 1 || !(b.shape.dims()[0] == m || b.shape.dims()[0].known().is_none()))
        {
            return Err(Error::shape(
                self.name(),
                format!("bias {:?} must be [{m:?}]", b.shape),
            ));
        }
        let mut out = vec![x.shape.dims()[0].clone(), m];
        let spatial: Option<Vec<usize>> = x.shape.dims()[2..].iter().map(Dim::known).collect();
        match spatial {
            Some(sp) => {
                let geo = geometry(
                    self.name(),
                    &sp,
                    &kernel,
                    &self.strides,
                    &self.dilations,
                    &self.padding,
                    false,
                )?;
                out.extend(geo.iter().map(|g| Dim::Known(g.output)));
            }
            None => out.extend(std::iter::repeat_n(Dim::Unknown, r - 2)),
        }
        Ok(vec![Fact::new(x.dtype, Shape(out))])
    }
    crate::op_common!();
}

/// Pooling kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    Max,
    Avg { count_include_pad: bool },
}

/// MaxPool / AveragePool over the spatial axes of NCHW input (N, C, D1, ...), or with
/// `channels_last` of NHWC input (2-D pools only, as `passes::TransposeOpt` makes them when
/// it sinks a channels-last region's NHWC -> NCHW transpose through the pool). A max takes
/// a NaN in its window; an average divides by the window's valid positions, or with
/// `count_include_pad` by those inside the explicit padding (never the positions past it
/// that `ceil_mode` adds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: Padding,
    pub ceil_mode: bool,
    /// Input and output in NHWC instead of NCHW; absent (false) from artifacts written
    /// before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub channels_last: bool,
}

impl Op for Pool {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "MaxPool",
            PoolKind::Avg { .. } => "AveragePool",
        }
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        // MaxPool takes any numeric type (ONNX: float types, int8 and uint8); averages
        // need floats.
        let dtype_ok = match self.kind {
            PoolKind::Max => x.dtype != DType::Bool,
            PoolKind::Avg { .. } => x.dtype.is_float(),
        };
        if x.rank() != self.kernel.len() + 2 || !dtype_ok {
            return Err(Error::shape(
                self.name(),
                format!(
                    "input {:?} {} vs kernel {:?}",
                    x.shape, x.dtype, self.kernel
                ),
            ));
        }
        if self.channels_last && self.kernel.len() != 2 {
            return Err(Error::shape(
                self.name(),
                format!(
                    "channels_last needs a 2-D pool over NHWC input, not kernel {:?}",
                    self.kernel
                ),
            ));
        }
        let d = x.shape.dims();
        // The spatial axes, and where the channels axis sits.
        let (sp_dims, c_axis) = if self.channels_last {
            (&d[1..3], 3)
        } else {
            (&d[2..], 1)
        };
        let mut out = vec![d[0].clone()];
        if !self.channels_last {
            out.push(d[c_axis].clone());
        }
        let spatial: Option<Vec<usize>> = sp_dims.iter().map(Dim::known).collect();
        match spatial {
            Some(sp) => {
                let geo = geometry(
                    self.name(),
                    &sp,
                    &self.kernel,
                    &self.strides,
                    &self.dilations,
                    &self.padding,
                    self.ceil_mode,
                )?;
                out.extend(geo.iter().map(|g| Dim::Known(g.output)));
            }
            None => out.extend(std::iter::repeat_n(Dim::Unknown, self.kernel.len())),
        }
        if self.channels_last {
            out.push(d[c_axis].clone());
        }
        Ok(vec![Fact::new(x.dtype, Shape(out))])
    }
    crate::op_common!();
}

/// MaxPool with its second output, Indices: for each output element the flat index
/// (int64) of the input element it took, counted over the whole input N x C x D1 x ... (the
/// plane offset included, as ONNX specifies). `column_major` is ONNX `storage_order = 1`:
/// the index within a plane counts the spatial axes column-major (first axis fastest).
/// Ties keep the first maximum in window order; a NaN wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaxPoolWithIndices {
    /// The pool; its kind must be `PoolKind::Max`.
    pub pool: Pool,
    pub column_major: bool,
}

impl Op for MaxPoolWithIndices {
    fn name(&self) -> &'static str {
        "MaxPoolWithIndices"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        if self.pool.kind != PoolKind::Max {
            return Err(Error::invalid("MaxPoolWithIndices holds an average pool"));
        }
        if self.pool.channels_last {
            return Err(Error::unsupported("MaxPoolWithIndices on NHWC input"));
        }
        let y = self.pool.infer(inputs)?.remove(0);
        let ind = Fact::new(DType::I64, y.shape.clone());
        Ok(vec![y, ind])
    }
    crate::op_common!();
}

/// LpPool: y = (sum over the window of |x|^p)^(1/p); padding contributes nothing. `pool`
/// gives the geometry (its kind is not used).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LpPool {
    pub pool: Pool,
    pub p: u32,
}

impl Op for LpPool {
    fn name(&self) -> &'static str {
        "LpPool"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        if !inputs.first().is_some_and(|x| x.dtype.is_float()) {
            return Err(Error::dtype(self.name(), "needs a float input"));
        }
        if self.pool.channels_last {
            return Err(Error::unsupported("LpPool on NHWC input"));
        }
        self.pool.infer(inputs)
    }
    crate::op_common!();
}

/// GlobalAveragePool / GlobalMaxPool: reduce all spatial axes to 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalPool {
    pub max: bool,
}

impl Op for GlobalPool {
    fn name(&self) -> &'static str {
        if self.max {
            "GlobalMaxPool"
        } else {
            "GlobalAveragePool"
        }
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        if x.rank() < 3 || !x.dtype.is_float() {
            return Err(Error::shape(
                self.name(),
                format!("needs float NC... input, got {:?}", x.shape),
            ));
        }
        let mut d = x.shape.0.clone();
        for v in d.iter_mut().skip(2) {
            *v = Dim::Known(1);
        }
        Ok(vec![Fact::new(x.dtype, Shape(d))])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("Conv", de::<Conv>);
    r.insert("MaxPool", de::<Pool>);
    r.insert("AveragePool", de::<Pool>);
    r.insert("MaxPoolWithIndices", de::<MaxPoolWithIndices>);
    r.insert("LpPool", de::<LpPool>);
    r.insert("GlobalAveragePool", de::<GlobalPool>);
    r.insert("GlobalMaxPool", de::<GlobalPool>);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Artifacts written before `channels_last` existed load as NCHW pools; NCHW pools
    /// serialize without the field; a channels-last pool round-trips and infers NHWC.
    #[test]
    fn pool_channels_last_field_is_optional_and_infers_nhwc() {
        let old = serde_json::json!({
            "kind": "Max",
            "kernel": [3, 3],
            "strides": [2, 2],
            "dilations": [1, 1],
            "padding": "SameUpper",
            "ceil_mode": false
        });
        let reg = super::super::registry();
        let op = reg.build("MaxPool", &old).unwrap();
        let p = op.downcast_ref::<Pool>().unwrap().clone();
        assert!(!p.channels_last);
        assert_eq!(p.attrs(), old);
        let cl = Pool {
            channels_last: true,
            ..p.clone()
        };
        assert_eq!(cl.attrs()["channels_last"], true);
        let back = reg.build("MaxPool", &cl.attrs()).unwrap();
        assert_eq!(back.downcast_ref::<Pool>(), Some(&cl));
        let x = Fact::known(DType::F32, &[2, 9, 7, 5]);
        let y = cl.infer(&[&x]).unwrap().remove(0);
        assert_eq!(y.shape, Fact::known(DType::F32, &[2, 5, 4, 5]).shape);
        let x = Fact::known(DType::F32, &[2, 5, 9, 7]);
        let y = p.infer(&[&x]).unwrap().remove(0);
        assert_eq!(y.shape, Fact::known(DType::F32, &[2, 5, 5, 4]).shape);
        let three = Pool {
            kernel: vec![1, 1, 1],
            strides: vec![1, 1, 1],
            dilations: vec![1, 1, 1],
            ..cl
        };
        assert!(
            three
                .infer(&[&Fact::known(DType::F32, &[1, 2, 2, 2, 3])])
                .is_err()
        );
    }

    #[test]
    fn same_padding_and_ceil_mode() {
        let g = geometry("t", &[7], &[3], &[2], &[1], &Padding::SameUpper, false).unwrap()[0];
        assert_eq!((g.output, g.pad_begin, g.pad_end), (4, 1, 1));
        let g = geometry("t", &[8], &[3], &[2], &[1], &Padding::SameUpper, false).unwrap()[0];
        assert_eq!((g.output, g.pad_begin, g.pad_end), (4, 0, 1));
        let g = geometry("t", &[8], &[3], &[2], &[1], &Padding::SameLower, false).unwrap()[0];
        assert_eq!((g.pad_begin, g.pad_end), (1, 0));
        let g = geometry("t", &[6], &[3], &[2], &[1], &Padding::Valid, true).unwrap()[0];
        assert_eq!(g.output, 3);
        let g = geometry(
            "t",
            &[5],
            &[3],
            &[1],
            &[2],
            &Padding::Explicit(vec![2, 2]),
            false,
        )
        .unwrap()[0];
        assert_eq!(g.output, 5);
        assert!(geometry("t", &[2], &[5], &[1], &[1], &Padding::Valid, false).is_err());
    }
}
