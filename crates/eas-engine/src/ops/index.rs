//! Index-driven ops: selection (TopK, Hardmax, OneHot, Trilu, EyeLike, Compress), scans
//! (CumSum) and index gathers/scatters (GatherND, ScatterND, ScatterElements).

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

fn int_input(op: &str, f: &Fact, what: &str) -> Result<()> {
    if matches!(f.dtype, DType::I32 | DType::I64) {
        Ok(())
    } else {
        Err(Error::dtype(
            op,
            format!("{what} must be int32 or int64, got {}", f.dtype),
        ))
    }
}

/// Value of a constant scalar (or one-element) integer input, when known at build time.
fn konst_scalar(f: &Fact) -> Option<i64> {
    let k = f.konst.as_ref()?;
    (k.len() == 1).then(|| k.to_i64_vec()[0])
}

/// The `k` largest (or smallest) elements along `axis`, with their i64 indices. Ties keep
/// the lower index first. Inputs: x, k (one-element int64). Outputs: values, indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    pub axis: i64,
    pub largest: bool,
    pub sorted: bool,
}

impl Op for TopK {
    fn name(&self) -> &'static str {
        "TopK"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let x = inputs[0];
        if !x.dtype.is_numeric() {
            return Err(Error::dtype(self.name(), "bool input"));
        }
        int_input(self.name(), inputs[1], "k")?;
        let a = norm_axis(self.name(), self.axis, x.rank())?;
        let mut d = x.shape.0.clone();
        d[a] = match konst_scalar(inputs[1]) {
            Some(k) => {
                let k = usize::try_from(k)
                    .map_err(|_| Error::shape(self.name(), format!("negative k {k}")))?;
                if let Some(n) = d[a].known()
                    && k > n
                {
                    return Err(Error::shape(
                        self.name(),
                        format!("k = {k} exceeds axis size {n}"),
                    ));
                }
                Dim::Known(k)
            }
            None => Dim::Unknown,
        };
        Ok(vec![
            Fact::new(x.dtype, Shape(d.clone())),
            Fact::new(DType::I64, Shape(d)),
        ])
    }
    crate::op_common!();
}

/// Inclusive (or exclusive) running sum along an axis given as input 1 (a scalar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CumSum {
    pub exclusive: bool,
    pub reverse: bool,
}

impl Op for CumSum {
    fn name(&self) -> &'static str {
        "CumSum"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        if !inputs[0].dtype.is_numeric() {
            return Err(Error::dtype(self.name(), "bool input"));
        }
        int_input(self.name(), inputs[1], "axis")?;
        if let Some(a) = konst_scalar(inputs[1]) {
            norm_axis(self.name(), a, inputs[0].rank())?;
        }
        Ok(vec![inputs[0].without_value()])
    }
    crate::op_common!();
}

/// Keeps the upper (or lower) triangle of the last two axes, shifted by the optional
/// diagonal offset input `k`; zeroes the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trilu {
    pub upper: bool,
}

impl Op for Trilu {
    fn name(&self) -> &'static str {
        "Trilu"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 2)?;
        if inputs[0].rank() < 2 {
            return Err(Error::shape(self.name(), "input rank below 2"));
        }
        if let Some(k) = inputs.get(1) {
            int_input(self.name(), k, "k")?;
        }
        Ok(vec![inputs[0].without_value()])
    }
    crate::op_common!();
}

/// 1 at the first maximum along `axis`, 0 elsewhere (float input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hardmax {
    pub axis: i64,
}

impl Op for Hardmax {
    fn name(&self) -> &'static str {
        "Hardmax"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        if !inputs[0].dtype.is_float() {
            return Err(Error::dtype(self.name(), "needs a float input"));
        }
        norm_axis(self.name(), self.axis, inputs[0].rank())?;
        Ok(vec![inputs[0].without_value()])
    }
    crate::op_common!();
}

/// One-hot encoding: inputs indices, depth (scalar), values [off, on]; a new axis of size
/// `depth` at `axis`. Negative indices count from the end; out-of-range ones give all "off".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneHot {
    pub axis: i64,
}

impl Op for OneHot {
    fn name(&self) -> &'static str {
        "OneHot"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 3)?;
        let (ind, depth, vals) = (inputs[0], inputs[1], inputs[2]);
        if !ind.dtype.is_numeric() || !depth.dtype.is_numeric() {
            return Err(Error::dtype(
                self.name(),
                "indices and depth must be numeric",
            ));
        }
        if vals.shape.volume().is_some_and(|v| v != 2) {
            return Err(Error::shape(self.name(), "values must hold [off, on]"));
        }
        let r = ind.rank() + 1;
        let a = norm_axis(self.name(), self.axis, r)?;
        let d = match depth.konst.as_ref().filter(|k| k.len() == 1) {
            Some(k) => {
                let v = k.to_f64_vec()[0];
                if !(1.0..1e9).contains(&v) {
                    return Err(Error::shape(self.name(), format!("bad depth {v}")));
                }
                Dim::Known(v as usize)
            }
            None => Dim::Unknown,
        };
        let mut dims = ind.shape.0.clone();
        dims.insert(a, d);
        Ok(vec![Fact::new(vals.dtype, Shape(dims))])
    }
    crate::op_common!();
}

/// A 2-D tensor shaped like the input with ones on the diagonal shifted by `k`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EyeLike {
    pub k: i64,
    /// Output dtype; the input's when `None`.
    pub dtype: Option<DType>,
}

impl Op for EyeLike {
    fn name(&self) -> &'static str {
        "EyeLike"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        if inputs[0].rank() != 2 {
            return Err(Error::shape(self.name(), "input must be 2-D"));
        }
        Ok(vec![Fact::new(
            self.dtype.unwrap_or(inputs[0].dtype),
            inputs[0].shape.clone(),
        )])
    }
    crate::op_common!();
}

/// Keeps the slices along `axis` (the flattened input when `None`) where the bool
/// condition is true. The output size depends on the condition's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compress {
    pub axis: Option<i64>,
}

impl Op for Compress {
    fn name(&self) -> &'static str {
        "Compress"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (x, c) = (inputs[0], inputs[1]);
        if c.dtype != DType::Bool || c.rank() != 1 {
            return Err(Error::dtype(self.name(), "condition must be a 1-D bool"));
        }
        let kept = c.konst.as_ref().map(|k| {
            let v = k.to_i64_vec();
            v.iter().filter(|&&b| b != 0).count()
        });
        let size = kept.map_or(Dim::Unknown, Dim::Known);
        let dims = match self.axis {
            None => vec![size],
            Some(a) => {
                let a = norm_axis(self.name(), a, x.rank())?;
                let mut d = x.shape.0.clone();
                d[a] = size;
                d
            }
        };
        Ok(vec![Fact::new(x.dtype, Shape(dims))])
    }
    crate::op_common!();
}

/// Gathers slices of `data` addressed by the last axis of `indices` (ONNX GatherND).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatherNd {
    pub batch_dims: usize,
}

impl Op for GatherNd {
    fn name(&self) -> &'static str {
        "GatherND"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (x, ind) = (inputs[0], inputs[1]);
        int_input(self.name(), ind, "indices")?;
        let b = self.batch_dims;
        let last = ind
            .shape
            .0
            .last()
            .and_then(Dim::known)
            .ok_or_else(|| Error::shape(self.name(), "indices need a known last axis"))?;
        if ind.rank() <= b || x.rank() < b + last {
            return Err(Error::shape(
                self.name(),
                format!(
                    "data {:?} / indices {:?} / batch_dims {b}",
                    x.shape, ind.shape
                ),
            ));
        }
        let mut d = ind.shape.0[..ind.rank() - 1].to_vec();
        d.extend_from_slice(&x.shape.0[b + last..]);
        Ok(vec![Fact::new(x.dtype, Shape(d))])
    }
    crate::op_common!();
}

/// How scattered updates combine with what is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScatterReduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

/// Copy of `data` with slices addressed by `indices`' last axis replaced by `updates`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScatterNd {
    pub reduction: ScatterReduction,
}

impl Op for ScatterNd {
    fn name(&self) -> &'static str {
        "ScatterND"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 3)?;
        int_input(self.name(), inputs[1], "indices")?;
        if inputs[2].dtype != inputs[0].dtype {
            return Err(Error::dtype(self.name(), "updates must have data's dtype"));
        }
        Ok(vec![inputs[0].without_value()])
    }
    crate::op_common!();
}

/// Copy of `data` with `data[.., indices[i], ..] = updates[i]` along `axis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScatterElements {
    pub axis: i64,
    pub reduction: ScatterReduction,
}

impl Op for ScatterElements {
    fn name(&self) -> &'static str {
        "ScatterElements"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 3)?;
        int_input(self.name(), inputs[1], "indices")?;
        let (x, ind, upd) = (inputs[0], inputs[1], inputs[2]);
        if upd.dtype != x.dtype {
            return Err(Error::dtype(self.name(), "updates must have data's dtype"));
        }
        if ind.rank() != x.rank() || upd.rank() != x.rank() {
            return Err(Error::shape(
                self.name(),
                "data, indices and updates ranks differ",
            ));
        }
        norm_axis(self.name(), self.axis, x.rank())?;
        Ok(vec![x.without_value()])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("TopK", de::<TopK>);
    r.insert("CumSum", de::<CumSum>);
    r.insert("Trilu", de::<Trilu>);
    r.insert("Hardmax", de::<Hardmax>);
    r.insert("OneHot", de::<OneHot>);
    r.insert("EyeLike", de::<EyeLike>);
    r.insert("Compress", de::<Compress>);
    r.insert("GatherND", de::<GatherNd>);
    r.insert("ScatterND", de::<ScatterNd>);
    r.insert("ScatterElements", de::<ScatterElements>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn topk_shape_follows_constant_k() {
        let x = Fact::known(DType::F32, &[3, 4]);
        let k = Fact::konst(Tensor::from_vec(&[1], vec![2i64]).unwrap());
        let op = TopK {
            axis: -1,
            largest: true,
            sorted: true,
        };
        let o = op.infer(&[&x, &k]).unwrap();
        assert_eq!(o[0].shape, Shape::known(&[3, 2]));
        assert_eq!(o[1].dtype, DType::I64);
        let big = Fact::konst(Tensor::from_vec(&[1], vec![5i64]).unwrap());
        assert!(op.infer(&[&x, &big]).is_err());
    }

    #[test]
    fn gather_nd_shape() {
        let x = Fact::known(DType::F32, &[2, 3, 4]);
        let i = Fact::known(DType::I64, &[5, 2]);
        let o = GatherNd { batch_dims: 0 }.infer(&[&x, &i]).unwrap();
        assert_eq!(o[0].shape, Shape::known(&[5, 4]));
    }
}
