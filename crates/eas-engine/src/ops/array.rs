//! Data-movement and shape ops. Ops whose parameters may be computed in the graph (Reshape's
//! shape, Slice's starts, Expand's shape...) take them as inputs, as ONNX does: inference
//! reads them from constant or symbolic facts, and plans see them as constants.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, MAX_DIMS_VALUE, Shape, broadcast_shapes};
#[cfg(test)]
use crate::tensor::Tensor;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Integer elements of a constant fact.
pub(crate) fn const_i64(f: &Fact) -> Option<Vec<i64>> {
    f.konst
        .as_ref()
        .filter(|t| t.dtype().is_integer())
        .map(|t| t.to_i64_vec())
}

/// Elements of a shape-describing fact as dims (constant or symbolic).
pub(crate) fn dims_of(f: &Fact) -> Option<Vec<Dim>> {
    f.dims.clone()
}

fn shape_err(op: &str, msg: impl Into<String>) -> Error {
    Error::shape(op, msg)
}

/// Output equals input (ONNX Identity, Dropout in inference).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity;

impl Op for Identity {
    fn name(&self) -> &'static str {
        "Identity"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        Ok(vec![inputs[0].clone()])
    }
    fn is_identity(&self, _: &[&Fact]) -> bool {
        true
    }
    crate::op_common!();
}

/// Symbolic product bookkeeping for reshape: known factor and symbols.
fn split_volume(dims: &[Dim]) -> Option<(usize, Vec<String>)> {
    let mut k = 1usize;
    let mut syms = Vec::new();
    for d in dims {
        match d {
            Dim::Known(v) => k = k.checked_mul(*v)?,
            Dim::Sym(s) => syms.push(s.clone()),
            Dim::Unknown => return None,
        }
    }
    Some((k, syms))
}

/// Resolves a reshape target (with at most one unknown/-1 entry) against an input shape.
pub(crate) fn reshape_dims(op: &str, input: &Shape, target: &[Dim]) -> Result<Shape> {
    let unknown: Vec<usize> = (0..target.len())
        .filter(|&i| target[i] == Dim::Unknown)
        .collect();
    if unknown.is_empty() {
        if let (Some(a), Some(b)) = (input.volume(), Shape(target.to_vec()).volume())
            && a != b
        {
            return Err(shape_err(
                op,
                format!("cannot reshape {input:?} ({a} elements) to {target:?} ({b})"),
            ));
        }
        return Ok(Shape(target.to_vec()));
    }
    let mut out = target.to_vec();
    if unknown.len() == 1 {
        let rest: Vec<Dim> = target
            .iter()
            .filter(|d| **d != Dim::Unknown)
            .cloned()
            .collect();
        if let (Some((ki, mut si)), Some((kt, st))) =
            (split_volume(input.dims()), split_volume(&rest))
        {
            let mut ok = true;
            for s in st {
                match si.iter().position(|x| *x == s) {
                    Some(p) => {
                        si.remove(p);
                    }
                    None => ok = false,
                }
            }
            if ok && kt != 0 && ki % kt == 0 {
                let q = ki / kt;
                out[unknown[0]] = match (q, si.len()) {
                    (q, 0) => Dim::Known(q),
                    (1, 1) => Dim::Sym(si[0].clone()),
                    _ => Dim::Unknown,
                };
            } else if ok && si.is_empty() && kt != 0 && ki % kt != 0 {
                return Err(shape_err(
                    op,
                    format!("cannot reshape {input:?} to {target:?}"),
                ));
            }
        }
    }
    Ok(Shape(out))
}

/// Reshape(data, shape): ONNX semantics (-1 infers one dim; 0 copies the input dim unless
/// `allowzero`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reshape {
    pub allowzero: bool,
}

impl Op for Reshape {
    fn name(&self) -> &'static str {
        "Reshape"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (x, s) = (inputs[0], inputs[1]);
        if s.rank() != 1 {
            return Err(shape_err(self.name(), "shape input must be 1-D"));
        }
        let target: Vec<Dim> = if let Some(v) = const_i64(s) {
            if v.iter().filter(|&&d| d == -1).count() > 1 || v.iter().any(|&d| d < -1) {
                return Err(shape_err(
                    self.name(),
                    format!("invalid target shape {v:?}"),
                ));
            }
            v.iter()
                .enumerate()
                .map(|(i, &d)| match d {
                    -1 => Ok(Dim::Unknown),
                    0 if !self.allowzero => x
                        .shape
                        .dims()
                        .get(i)
                        .cloned()
                        .ok_or_else(|| shape_err("Reshape", "0 refers past the input rank")),
                    d => Ok(Dim::Known(d as usize)),
                })
                .collect::<Result<_>>()?
        } else if let Some(d) = dims_of(s) {
            d.iter()
                .enumerate()
                .map(|(i, d)| match d {
                    Dim::Known(0) if !self.allowzero => {
                        x.shape.dims().get(i).cloned().unwrap_or(Dim::Unknown)
                    }
                    d => d.clone(),
                })
                .collect()
        } else {
            let n = s.shape.dims()[0].known().ok_or_else(|| {
                Error::unsupported("Reshape with a target shape of unknown length")
            })?;
            vec![Dim::Unknown; n]
        };
        let shape = reshape_dims(self.name(), &x.shape, &target)?;
        Ok(vec![keep_dims_value(x, Fact::new(x.dtype, shape))])
    }
    fn is_identity(&self, inputs: &[&Fact]) -> bool {
        inputs.len() == 2 && {
            let out = self.infer(inputs).ok();
            out.is_some_and(|o| {
                o[0].shape == inputs[0].shape
                    && inputs[0]
                        .shape
                        .0
                        .iter()
                        .filter(|d| **d == Dim::Unknown)
                        .count()
                        == 0
            })
        }
    }
    crate::op_common!();
}

/// Data movement that keeps the element order keeps a shape tensor's value.
fn keep_dims_value(x: &Fact, mut out: Fact) -> Fact {
    if let Some(d) = &x.dims
        && out.shape.volume() == Some(d.len())
        && out.rank() <= 1
    {
        out = Fact::from_dims(x.dtype, d.clone(), out.rank() == 0);
    }
    out
}

/// Flatten to 2-D at `axis`: [d0*..*d(axis-1), d(axis)*..].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flatten {
    pub axis: i64,
}

impl Op for Flatten {
    fn name(&self) -> &'static str {
        "Flatten"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let r = x.rank() as i64;
        let a = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if a < 0 || a > r {
            return Err(shape_err(
                self.name(),
                format!("axis {} out of range for rank {r}", self.axis),
            ));
        }
        let prod = |ds: &[Dim]| ds.iter().fold(Dim::Known(1), |acc, d| acc.mul(d));
        let (a, b) = x.shape.dims().split_at(a as usize);
        Ok(vec![Fact::new(x.dtype, Shape(vec![prod(a), prod(b)]))])
    }
    crate::op_common!();
}

/// Removes size-1 axes (all of them when `axes` is empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Squeeze {
    pub axes: Vec<i64>,
}

impl Op for Squeeze {
    fn name(&self) -> &'static str {
        "Squeeze"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let r = x.rank();
        let dims = x.shape.dims();
        let drop: Vec<usize> = if self.axes.is_empty() {
            (0..r).filter(|&i| dims[i].is_one()).collect()
        } else {
            let mut v = Vec::new();
            for &a in &self.axes {
                let a = norm_axis(self.name(), a, r)?;
                if dims[a] != Dim::Known(1) && dims[a].known().is_some() {
                    return Err(shape_err(
                        self.name(),
                        format!("axis {a} has size {:?}, not 1", dims[a]),
                    ));
                }
                v.push(a);
            }
            v
        };
        let shape = Shape(
            (0..r)
                .filter(|i| !drop.contains(i))
                .map(|i| dims[i].clone())
                .collect(),
        );
        Ok(vec![keep_dims_value(x, Fact::new(x.dtype, shape))])
    }
    fn is_identity(&self, inputs: &[&Fact]) -> bool {
        self.infer(inputs)
            .is_ok_and(|o| o[0].shape == inputs[0].shape)
    }
    crate::op_common!();
}

/// Inserts size-1 axes at `axes` (positions in the output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unsqueeze {
    pub axes: Vec<i64>,
}

impl Op for Unsqueeze {
    fn name(&self) -> &'static str {
        "Unsqueeze"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let r = x.rank() + self.axes.len();
        let mut axes = self
            .axes
            .iter()
            .map(|&a| norm_axis(self.name(), a, r))
            .collect::<Result<Vec<_>>>()?;
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(shape_err(self.name(), "repeated axis"));
        }
        let mut src = x.shape.dims().iter();
        let shape = Shape(
            (0..r)
                .map(|i| {
                    if axes.contains(&i) {
                        Dim::Known(1)
                    } else {
                        src.next().cloned().unwrap_or(Dim::Known(1))
                    }
                })
                .collect(),
        );
        Ok(vec![keep_dims_value(x, Fact::new(x.dtype, shape))])
    }
    crate::op_common!();
}

/// Permutes axes: output axis i is input axis perm[i].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

impl Op for Transpose {
    fn name(&self) -> &'static str {
        "Transpose"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let mut seen = self.perm.clone();
        seen.sort_unstable();
        if self.perm.len() != x.rank() || seen != (0..x.rank()).collect::<Vec<_>>() {
            return Err(shape_err(
                self.name(),
                format!("perm {:?} invalid for rank {}", self.perm, x.rank()),
            ));
        }
        let d = x.shape.dims();
        Ok(vec![Fact::new(
            x.dtype,
            Shape(self.perm.iter().map(|&p| d[p].clone()).collect()),
        )])
    }
    fn is_identity(&self, _: &[&Fact]) -> bool {
        self.perm.iter().enumerate().all(|(i, &p)| i == p)
    }
    crate::op_common!();
}

/// Concatenates inputs along `axis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Concat {
    pub axis: i64,
}

impl Op for Concat {
    fn name(&self) -> &'static str {
        "Concat"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        if inputs.is_empty() {
            return Err(shape_err(self.name(), "needs at least one input"));
        }
        let x = inputs[0];
        let r = x.rank();
        let a = norm_axis(self.name(), self.axis, r)?;
        let mut total = Dim::Known(0);
        for f in inputs {
            if f.dtype != x.dtype {
                return Err(Error::dtype(
                    self.name(),
                    format!("mixed dtypes {} and {}", x.dtype, f.dtype),
                ));
            }
            if f.rank() != r {
                return Err(shape_err(
                    self.name(),
                    format!("ranks differ: {:?} vs {:?}", x.shape, f.shape),
                ));
            }
            for (i, (p, q)) in x.shape.dims().iter().zip(f.shape.dims()).enumerate() {
                if i != a && p != q && p.known().is_some() && q.known().is_some() {
                    return Err(shape_err(
                        self.name(),
                        format!("shapes {:?} and {:?} differ off axis {a}", x.shape, f.shape),
                    ));
                }
            }
            total = match (&total, &f.shape.dims()[a]) {
                (Dim::Known(p), Dim::Known(q)) => Dim::Known(p + q),
                (Dim::Known(0), d) => d.clone(),
                (d, Dim::Known(0)) => d.clone(),
                _ => Dim::Unknown,
            };
        }
        let mut shape = x.shape.clone();
        shape.0[a] = total;
        let out = Fact::new(x.dtype, shape);
        // Shape vectors: concatenate their (symbolic) values.
        if r == 1 && inputs.iter().all(|f| f.dims.is_some()) {
            let d: Vec<Dim> = inputs
                .iter()
                .flat_map(|f| f.dims.clone().unwrap_or_default())
                .collect();
            if d.len() <= MAX_DIMS_VALUE {
                return Ok(vec![Fact::from_dims(x.dtype, d, false)]);
            }
        }
        Ok(vec![out])
    }
    crate::op_common!();
}

/// Splits along `axis` into pieces of the given sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub axis: i64,
    /// Either explicit sizes or `n` equal parts (the last may be smaller, opset 18).
    pub sizes: SplitSizes,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SplitSizes {
    Sizes(Vec<usize>),
    Equal(usize),
}

impl Split {
    pub(crate) fn resolve(&self, dim: usize) -> Result<Vec<usize>> {
        match &self.sizes {
            SplitSizes::Sizes(s) => {
                if s.iter().sum::<usize>() != dim {
                    return Err(shape_err(
                        "Split",
                        format!("sizes {s:?} do not add up to {dim}"),
                    ));
                }
                Ok(s.clone())
            }
            SplitSizes::Equal(n) => {
                if *n == 0 {
                    return Err(shape_err("Split", "zero outputs"));
                }
                let chunk = dim.div_ceil(*n);
                Ok((0..*n)
                    .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                    .collect())
            }
        }
    }
}

impl Op for Split {
    fn name(&self) -> &'static str {
        "Split"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let a = norm_axis(self.name(), self.axis, x.rank())?;
        let n = match &self.sizes {
            SplitSizes::Sizes(s) => s.len(),
            SplitSizes::Equal(n) => *n,
        };
        let sizes: Vec<Dim> = match x.shape.dims()[a].known() {
            Some(d) => self.resolve(d)?.into_iter().map(Dim::Known).collect(),
            None => match &self.sizes {
                SplitSizes::Sizes(s) => s.iter().map(|&d| Dim::Known(d)).collect(),
                SplitSizes::Equal(_) => vec![Dim::Unknown; n],
            },
        };
        Ok(sizes
            .into_iter()
            .map(|d| {
                let mut s = x.shape.clone();
                s.0[a] = d;
                Fact::new(x.dtype, s)
            })
            .collect())
    }
    crate::op_common!();
}

/// Slice(data, starts, ends, axes?, steps?) with ONNX clamping rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slice;

/// One resolved axis of a slice: first index, step, count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SliceAxis {
    pub start: usize,
    pub step: i64,
    pub len: usize,
}

pub(crate) fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> Result<SliceAxis> {
    if step == 0 {
        return Err(shape_err("Slice", "step 0"));
    }
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (norm(start), norm(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(-1, d - 1), e.clamp(-1, d - 1))
    };
    let len = if step > 0 {
        if e > s { (e - s + step - 1) / step } else { 0 }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    Ok(SliceAxis {
        start: if len == 0 { 0 } else { s as usize },
        step,
        len: len as usize,
    })
}

/// Slice parameters (axes normalized), when constant.
/// (axis, start, end, step) per sliced axis.
pub(crate) type SliceParams = Vec<(usize, i64, i64, i64)>;

pub(crate) fn slice_params(inputs: &[&Fact]) -> Result<Option<SliceParams>> {
    let x = inputs[0];
    let (Some(starts), Some(ends)) = (const_i64(inputs[1]), const_i64(inputs[2])) else {
        return Ok(None);
    };
    let axes = match inputs.get(3) {
        Some(f) => match const_i64(f) {
            Some(a) => a,
            None => return Ok(None),
        },
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match inputs.get(4) {
        Some(f) => match const_i64(f) {
            Some(s) => s,
            None => return Ok(None),
        },
        None => vec![1; starts.len()],
    };
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(shape_err("Slice", "starts/ends/axes/steps lengths differ"));
    }
    let mut out = Vec::new();
    for i in 0..starts.len() {
        let a = norm_axis("Slice", axes[i], x.rank())?;
        if out.iter().any(|p: &(usize, i64, i64, i64)| p.0 == a) {
            return Err(shape_err("Slice", "repeated axis"));
        }
        out.push((a, starts[i], ends[i], steps[i]));
    }
    Ok(Some(out))
}

impl Op for Slice {
    fn name(&self) -> &'static str {
        "Slice"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 5)?;
        let x = inputs[0];
        let mut shape = x.shape.clone();
        match slice_params(inputs)? {
            None => {
                // Unknown parameters: every axis they may touch is unknown.
                let n = inputs[1].shape.dims().first().and_then(Dim::known);
                let axes = inputs.get(3).and_then(|f| const_i64(f));
                match axes {
                    Some(a) => {
                        for ax in a {
                            let ax = norm_axis(self.name(), ax, x.rank())?;
                            shape.0[ax] = Dim::Unknown;
                        }
                    }
                    None => {
                        for d in shape.0.iter_mut().take(n.unwrap_or(usize::MAX)) {
                            *d = Dim::Unknown;
                        }
                    }
                }
                return Ok(vec![Fact::new(x.dtype, shape)]);
            }
            Some(params) => {
                for &(a, s, e, st) in &params {
                    shape.0[a] = match &x.shape.0[a] {
                        Dim::Known(d) => Dim::Known(slice_axis(*d, s, e, st)?.len),
                        d if s == 0 && st == 1 && e >= i32::MAX as i64 => d.clone(),
                        _ => Dim::Unknown,
                    };
                }
                // Slicing a shape vector keeps its (symbolic) values.
                if let (Some(d), [(0, s, e, st)]) = (&x.dims, params.as_slice()) {
                    let ax = slice_axis(d.len(), *s, *e, *st)?;
                    let v: Vec<Dim> = (0..ax.len)
                        .map(|i| d[(ax.start as i64 + i as i64 * ax.step) as usize].clone())
                        .collect();
                    return Ok(vec![Fact::from_dims(x.dtype, v, false)]);
                }
            }
        }
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    crate::op_common!();
}

/// Gather(data, indices) along `axis`; negative indices count from the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gather {
    pub axis: i64,
}

impl Op for Gather {
    fn name(&self) -> &'static str {
        "Gather"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (x, idx) = (inputs[0], inputs[1]);
        if !matches!(idx.dtype, DType::I32 | DType::I64) {
            return Err(Error::dtype(
                self.name(),
                format!("indices must be i32 or i64, got {}", idx.dtype),
            ));
        }
        let a = norm_axis(self.name(), self.axis, x.rank())?;
        let d = x.shape.dims();
        let shape = Shape(
            d[..a]
                .iter()
                .chain(idx.shape.dims())
                .chain(&d[a + 1..])
                .cloned()
                .collect(),
        );
        if let (Some(vals), Some(i)) = (&x.dims, const_i64(idx))
            && x.rank() == 1
        {
            let n = vals.len() as i64;
            let picked: Option<Vec<Dim>> = i
                .iter()
                .map(|&k| {
                    let k = if k < 0 { k + n } else { k };
                    (0..n).contains(&k).then(|| vals[k as usize].clone())
                })
                .collect();
            if let Some(p) = picked {
                return Ok(vec![Fact::from_dims(x.dtype, p, idx.rank() == 0)]);
            }
        }
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    crate::op_common!();
}

/// GatherElements(data, indices) along `axis`: out has the indices' shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatherElements {
    pub axis: i64,
}

impl Op for GatherElements {
    fn name(&self) -> &'static str {
        "GatherElements"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (x, idx) = (inputs[0], inputs[1]);
        if !matches!(idx.dtype, DType::I32 | DType::I64) || idx.rank() != x.rank() {
            return Err(shape_err(
                self.name(),
                "indices must be i32/i64 of the data's rank",
            ));
        }
        norm_axis(self.name(), self.axis, x.rank())?;
        Ok(vec![Fact::new(x.dtype, idx.shape.clone())])
    }
    crate::op_common!();
}

/// The input's shape as an i64 vector, dims [start, end).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShapeOf {
    pub start: i64,
    pub end: Option<i64>,
}

impl ShapeOf {
    pub(crate) fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let n = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (n(self.start), n(self.end.unwrap_or(r)));
        (s, e.max(s))
    }
}

impl Op for ShapeOf {
    fn name(&self) -> &'static str {
        "Shape"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let (s, e) = self.range(x.rank());
        Ok(vec![Fact::from_dims(
            DType::I64,
            x.shape.dims()[s..e].to_vec(),
            false,
        )])
    }
    crate::op_common!();
}

/// A tensor of the given shape filled with one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstantOfShape {
    pub dtype: DType,
    #[serde(with = "super::json_f64")]
    pub value: f64,
}

impl Op for ConstantOfShape {
    fn name(&self) -> &'static str {
        "ConstantOfShape"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let s = inputs[0];
        let dims = if let Some(v) = const_i64(s) {
            if v.iter().any(|&d| d < 0) {
                return Err(shape_err(self.name(), format!("negative dim in {v:?}")));
            }
            v.into_iter().map(|d| Dim::Known(d as usize)).collect()
        } else if let Some(d) = dims_of(s) {
            d
        } else {
            vec![Dim::Unknown; s.shape.dims().first().and_then(Dim::known).unwrap_or(0)]
        };
        Ok(vec![Fact::new(self.dtype, Shape(dims))])
    }
    fn inflates(&self) -> bool {
        true
    }
    crate::op_common!();
}

/// Element type conversion (ONNX Cast; `Tensor::cast_with` states the rounding rules).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cast {
    pub to: DType,
    /// ONNX `saturate`: float8 targets clamp out-of-range values to ±max (true) or make
    /// them NaN/±inf (false). Other targets ignore it.
    #[serde(default = "yes")]
    pub saturate: bool,
}

fn yes() -> bool {
    true
}

impl Cast {
    /// A saturating cast to `to` (the ONNX default).
    pub fn new(to: DType) -> Self {
        Cast { to, saturate: true }
    }
}

impl Op for Cast {
    fn name(&self) -> &'static str {
        "Cast"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        // 4-bit targets clamp, so values (shape arithmetic) only survive wider integers.
        if let Some(d) = &x.dims
            && self.to.is_integer()
            && !self.to.is_storage_only()
        {
            return Ok(vec![Fact::from_dims(self.to, d.clone(), x.rank() == 0)]);
        }
        Ok(vec![Fact::new(self.to, x.shape.clone())])
    }
    fn is_identity(&self, inputs: &[&Fact]) -> bool {
        inputs[0].dtype == self.to
    }
    crate::op_common!();
}

/// Where(cond, x, y) with three-way broadcasting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Where;

impl Op for Where {
    fn name(&self) -> &'static str {
        "Where"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 3)?;
        let (c, x, y) = (inputs[0], inputs[1], inputs[2]);
        if c.dtype != DType::Bool || x.dtype != y.dtype {
            return Err(Error::dtype(
                self.name(),
                format!(
                    "needs (bool, T, T), got ({}, {}, {})",
                    c.dtype, x.dtype, y.dtype
                ),
            ));
        }
        let s = broadcast_shapes(&c.shape, &x.shape).and_then(|s| broadcast_shapes(&s, &y.shape));
        Ok(vec![Fact::new(
            x.dtype,
            s.map_err(|m| shape_err(self.name(), m))?,
        )])
    }
    crate::op_common!();
}

/// Expand(data, shape): broadcast to `shape` (numpy rules, both ways).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Expand;

impl Op for Expand {
    fn name(&self) -> &'static str {
        "Expand"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (x, s) = (inputs[0], inputs[1]);
        let target = if let Some(v) = const_i64(s) {
            Shape(
                v.into_iter()
                    .map(|d| {
                        if d < 0 {
                            Dim::Unknown
                        } else {
                            Dim::Known(d as usize)
                        }
                    })
                    .collect(),
            )
        } else if let Some(d) = dims_of(s) {
            Shape(d)
        } else {
            Shape(vec![
                Dim::Unknown;
                s.shape.dims().first().and_then(Dim::known).unwrap_or(0)
            ])
        };
        let out = broadcast_shapes(&x.shape, &target).map_err(|m| shape_err(self.name(), m))?;
        Ok(vec![Fact::new(x.dtype, out)])
    }
    fn is_identity(&self, inputs: &[&Fact]) -> bool {
        self.infer(inputs)
            .is_ok_and(|o| o[0].shape == inputs[0].shape && inputs[0].shape.is_known())
    }
    fn inflates(&self) -> bool {
        true
    }
    crate::op_common!();
}

/// Tile(data, repeats).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tile;

impl Op for Tile {
    fn name(&self) -> &'static str {
        "Tile"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        let (x, r) = (inputs[0], inputs[1]);
        let shape = match const_i64(r) {
            Some(rep) => {
                if rep.len() != x.rank() || rep.iter().any(|&v| v < 0) {
                    return Err(shape_err(
                        self.name(),
                        format!("repeats {rep:?} invalid for rank {}", x.rank()),
                    ));
                }
                Shape(
                    x.shape
                        .dims()
                        .iter()
                        .zip(&rep)
                        .map(|(d, &k)| d.mul(&Dim::Known(k as usize)))
                        .collect(),
                )
            }
            None => Shape(vec![Dim::Unknown; x.rank()]),
        };
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    fn inflates(&self) -> bool {
        true
    }
    crate::op_common!();
}

/// Range(start, limit, delta): scalars of one numeric dtype.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Range;

pub(crate) fn range_len(start: f64, limit: f64, delta: f64) -> Result<usize> {
    if delta == 0.0 || !delta.is_finite() || !start.is_finite() || !limit.is_finite() {
        return Err(shape_err("Range", "delta must be finite and non-zero"));
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if n > (1u64 << 40) as f64 {
        return Err(shape_err("Range", format!("{n} elements is too many")));
    }
    Ok(n as usize)
}

impl Op for Range {
    fn name(&self) -> &'static str {
        "Range"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 3)?;
        let dt = inputs[0].dtype;
        if inputs.iter().any(|f| f.dtype != dt || f.rank() != 0) || !dt.is_numeric() {
            return Err(Error::dtype(
                self.name(),
                "needs three numeric scalars of one dtype",
            ));
        }
        let vals: Option<Vec<f64>> = inputs
            .iter()
            .map(|f| f.konst.as_ref().map(|t| t.to_f64_vec()[0]))
            .collect();
        let dim = match vals {
            Some(v) => Dim::Known(range_len(v[0], v[1], v[2])?),
            None => {
                // Common exporter pattern: Range(0, Shape(x)[i], 1).
                match (
                    &inputs[1].dims,
                    inputs[0].konst.as_ref(),
                    inputs[2].konst.as_ref(),
                ) {
                    (Some(l), Some(s), Some(d))
                        if s.to_f64_vec()[0] == 0.0 && d.to_f64_vec()[0] == 1.0 =>
                    {
                        l[0].clone()
                    }
                    _ => Dim::Unknown,
                }
            }
        };
        Ok(vec![Fact::new(dt, Shape(vec![dim]))])
    }
    crate::op_common!();
}

/// Padding mode of `Pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// Pad(data, pads, constant_value?): pads = [begin_0.., end_0..] over all axes (the importer
/// expands ONNX's `axes` input). Negative pads crop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pad {
    pub mode: PadMode,
}

impl Op for Pad {
    fn name(&self) -> &'static str {
        "Pad"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 3)?;
        let x = inputs[0];
        if let Some(v) = inputs.get(2)
            && v.dtype != x.dtype
        {
            return Err(Error::dtype(
                self.name(),
                "constant_value dtype differs from data",
            ));
        }
        let shape = match const_i64(inputs[1]) {
            Some(p) => {
                let r = x.rank();
                if p.len() != 2 * r {
                    return Err(shape_err(
                        self.name(),
                        format!("pads {p:?} must have 2 x rank {r} entries"),
                    ));
                }
                Shape(
                    x.shape
                        .dims()
                        .iter()
                        .enumerate()
                        .map(|(i, d)| match d {
                            Dim::Known(k) => {
                                let n = *k as i64 + p[i] + p[i + r];
                                if n < 0 {
                                    Err(shape_err("Pad", "pads crop below zero"))
                                } else {
                                    Ok(Dim::Known(n as usize))
                                }
                            }
                            d if p[i] == 0 && p[i + r] == 0 => Ok(d.clone()),
                            _ => Ok(Dim::Unknown),
                        })
                        .collect::<Result<_>>()?,
                )
            }
            None => Shape(vec![Dim::Unknown; x.rank()]),
        };
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    fn is_identity(&self, inputs: &[&Fact]) -> bool {
        const_i64(inputs[1]).is_some_and(|p| p.iter().all(|&v| v == 0))
    }
    crate::op_common!();
}

/// ONNX Pad's `axes` input resolved: inputs pads [begin.., end..] for the listed axes and
/// the axes (negative counts from the end); output the int64 pads over all `rank` axes
/// (0 on the others), as `Pad` takes them. A node of its own so that computed axes or pads
/// become known when a value-keyed plan folds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PadsForAxes {
    pub rank: usize,
}

impl PadsForAxes {
    /// The full pads for `pads` given on `axes`.
    pub fn expand(&self, pads: &[i64], axes: &[i64]) -> Result<Vec<i64>> {
        let r = self.rank;
        if pads.len() != 2 * axes.len() {
            return Err(shape_err(
                "Pad",
                format!("pads {pads:?} need 2 entries per axis of {axes:?}"),
            ));
        }
        let mut full = vec![0i64; 2 * r];
        let mut seen = vec![false; r];
        for (k, &a) in axes.iter().enumerate() {
            let a = norm_axis("Pad", a, r)?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(shape_err(
                    "Pad",
                    format!("axis {a} given twice in {axes:?}"),
                ));
            }
            full[a] = pads[k];
            full[a + r] = pads[k + axes.len()];
        }
        Ok(full)
    }
}

impl Op for PadsForAxes {
    fn name(&self) -> &'static str {
        "PadsForAxes"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 2, 2)?;
        if inputs
            .iter()
            .any(|f| !f.dtype.is_integer() || f.rank() != 1)
        {
            return Err(Error::dtype(
                self.name(),
                "pads and axes must be 1-D integers",
            ));
        }
        let out = Shape(vec![Dim::Known(2 * self.rank)]);
        if let (Some(p), Some(a)) = (const_i64(inputs[0]), const_i64(inputs[1])) {
            self.expand(&p, &a)?;
        }
        Ok(vec![Fact::new(DType::I64, out)])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("PadsForAxes", de::<PadsForAxes>);
    r.insert("Identity", de::<Identity>);
    r.insert("Reshape", de::<Reshape>);
    r.insert("Flatten", de::<Flatten>);
    r.insert("Squeeze", de::<Squeeze>);
    r.insert("Unsqueeze", de::<Unsqueeze>);
    r.insert("Transpose", de::<Transpose>);
    r.insert("Concat", de::<Concat>);
    r.insert("Split", de::<Split>);
    r.insert("Slice", de::<Slice>);
    r.insert("Gather", de::<Gather>);
    r.insert("GatherElements", de::<GatherElements>);
    r.insert("Shape", de::<ShapeOf>);
    r.insert("ConstantOfShape", de::<ConstantOfShape>);
    r.insert("Cast", de::<Cast>);
    r.insert("Where", de::<Where>);
    r.insert("Expand", de::<Expand>);
    r.insert("Tile", de::<Tile>);
    r.insert("Range", de::<Range>);
    r.insert("Pad", de::<Pad>);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Dim {
        Dim::sym(s)
    }

    #[test]
    fn reshape_keeps_symbolic_batch() {
        let x = Fact::new(
            DType::F32,
            Shape(vec![sym("N"), Dim::Known(128), Dim::Known(768)]),
        );
        let t = Fact::konst(Tensor::from_vec(&[3], vec![0i64, -1, 64]).unwrap());
        let out = Reshape::default().infer(&[&x, &t]).unwrap();
        assert_eq!(
            out[0].shape,
            Shape(vec![sym("N"), Dim::Known(1536), Dim::Known(64)])
        );
        let t = Fact::konst(Tensor::from_vec(&[2], vec![-1i64, 768]).unwrap());
        let out = Reshape::default().infer(&[&x, &t]).unwrap();
        assert_eq!(out[0].shape, Shape(vec![Dim::Unknown, Dim::Known(768)]));
        let bad = Fact::konst(Tensor::from_vec(&[2], vec![7i64, -1]).unwrap());
        let k = Fact::known(DType::F32, &[2, 5]);
        assert!(Reshape::default().infer(&[&k, &bad]).is_err());
    }

    #[test]
    fn shape_gather_concat_reshape_chain_is_symbolic() {
        // Reshape(x, Concat(Gather(Shape(x), 0), [768]))
        let x = Fact::new(
            DType::F32,
            Shape(vec![sym("B"), Dim::Known(2), Dim::Known(384)]),
        );
        let s = ShapeOf::default().infer(&[&x]).unwrap().remove(0);
        assert_eq!(s.dims, Some(vec![sym("B"), Dim::Known(2), Dim::Known(384)]));
        let zero = Fact::konst(Tensor::scalar(0i64));
        let b = Gather { axis: 0 }.infer(&[&s, &zero]).unwrap().remove(0);
        assert_eq!((b.rank(), b.dims.clone()), (0, Some(vec![sym("B")])));
        let axes0 = Unsqueeze { axes: vec![0] }.infer(&[&b]).unwrap().remove(0);
        let c768 = Fact::konst(Tensor::from_vec(&[1], vec![768i64]).unwrap());
        let cat = Concat { axis: 0 }
            .infer(&[&axes0, &c768])
            .unwrap()
            .remove(0);
        assert_eq!(cat.dims, Some(vec![sym("B"), Dim::Known(768)]));
        let r = Reshape::default().infer(&[&x, &cat]).unwrap().remove(0);
        assert_eq!(r.shape, Shape(vec![sym("B"), Dim::Known(768)]));
    }

    #[test]
    fn slice_axis_clamps_like_onnx() {
        assert_eq!(
            slice_axis(10, 2, 1000, 1).unwrap(),
            SliceAxis {
                start: 2,
                step: 1,
                len: 8
            }
        );
        assert_eq!(slice_axis(10, -1, -1000, -1).unwrap().len, 10);
        assert_eq!(
            slice_axis(10, -3, -1, 1).unwrap(),
            SliceAxis {
                start: 7,
                step: 1,
                len: 2
            }
        );
        assert_eq!(slice_axis(10, 0, 10, 3).unwrap().len, 4);
        assert_eq!(
            slice_axis(5, 4, 0, -2).unwrap(),
            SliceAxis {
                start: 4,
                step: -2,
                len: 2
            }
        );
        assert!(slice_axis(5, 0, 1, 0).is_err());
    }

    #[test]
    fn split_equal_and_sizes() {
        let s = Split {
            axis: 0,
            sizes: SplitSizes::Equal(3),
        };
        assert_eq!(s.resolve(7).unwrap(), vec![3, 3, 1]);
        let s = Split {
            axis: 0,
            sizes: SplitSizes::Sizes(vec![2, 3]),
        };
        assert!(s.resolve(6).is_err());
    }
}
