//! Ops with TensorFlow semantics that no general engine op expresses exactly:
//! - `TfStridedSlice`: TF's begin/end/ellipsis/new-axis/shrink masks are resolved against the
//!   input shape at run time (an ellipsis spans however many axes the input has, shrink axes
//!   drop dims, out-of-range bounds clamp per TF's rules); ONNX Slice has none of these.
//! - `TfOneHot`: TF gives an all-off row for a negative (or >= depth) index, where ONNX OneHot
//!   wraps negative indices around; TF also takes on/off values as separate scalars.
//!
//! TF ops that do map onto general ops are built from them by the importer: Cumsum -> CumSum,
//! ArgMax -> ArgReduce (+ Cast for int32), Select/SelectV2 -> Where (+ Reshape of TF1's rank-1
//! condition), ResizeBilinear/ResizeNearestNeighbor -> Resize over the NHWC H/W axes,
//! Conv2DBackpropInput -> ConvTranspose between NHWC<->NCHW transposes.
//! Kernels of the two remaining ops are in `cpu/kernels/tf_array.rs`.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

// ---- StridedSlice -------------------------------------------------------------------------

/// TF `StridedSlice` with constant `begin`/`end`/`strides` and the masks as TF defines them
/// (tensorflow/core/util/strided_slice_op.cc): bit i of a mask refers to entry i of the
/// sparse spec; an ellipsis expands to full ranges; new axes insert size-1 dims; shrink axes
/// take one index and drop the dim. Out-of-range bounds clamp; out-of-range shrink indices
/// are errors.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TfStridedSlice {
    pub begin: Vec<i64>,
    pub end: Vec<i64>,
    pub strides: Vec<i64>,
    pub begin_mask: i64,
    pub end_mask: i64,
    pub ellipsis_mask: i64,
    pub new_axis_mask: i64,
    pub shrink_axis_mask: i64,
}

/// One dense (input) axis of a canonical strided slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AxisSpec {
    /// `begin`, `end`, `stride` as given, with their mask bits; resolved once the dim is known.
    Range {
        begin: i64,
        end: i64,
        stride: i64,
        begin_masked: bool,
        end_masked: bool,
    },
    /// One index; the dim is dropped.
    Shrink(i64),
}

/// The dense spec: one entry per input axis, and the output dims as a list of "input axis i"
/// or "new axis".
#[derive(Clone, Debug)]
pub(crate) struct DenseSpec {
    pub axes: Vec<AxisSpec>,
    /// `Some(i)`: output dim from input axis i (not shrunk); `None`: a new size-1 axis.
    pub out: Vec<Option<usize>>,
}

/// A resolved axis: `len` elements starting at `start`, `step` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

impl TfStridedSlice {
    fn bit(mask: i64, i: usize) -> bool {
        i < 64 && (mask >> i) & 1 == 1
    }

    /// Expands the sparse spec against the input rank.
    pub(crate) fn dense(&self, rank: usize) -> Result<DenseSpec> {
        let n = self.begin.len();
        if self.end.len() != n || self.strides.len() != n {
            return Err(Error::shape(
                "StridedSlice",
                format!(
                    "begin/end/strides lengths differ: {}, {}, {}",
                    n,
                    self.end.len(),
                    self.strides.len()
                ),
            ));
        }
        if n > 64 {
            return Err(Error::shape("StridedSlice", "more than 64 slice entries"));
        }
        let mut ellipsis_seen = false;
        let mut new_after_ellipsis = 0usize;
        for i in 0..n {
            if ellipsis_seen
                && Self::bit(self.new_axis_mask, i)
                && !Self::bit(self.ellipsis_mask, i)
            {
                new_after_ellipsis += 1;
            }
            if Self::bit(self.ellipsis_mask, i) {
                if ellipsis_seen {
                    return Err(Error::shape("StridedSlice", "more than one ellipsis"));
                }
                ellipsis_seen = true;
            }
        }
        // Without an ellipsis, TF appends one: unmentioned trailing axes are kept whole.
        let (sparse_n, ellipsis_mask) = if ellipsis_seen {
            (n, self.ellipsis_mask)
        } else {
            (n + 1, self.ellipsis_mask | (1 << n))
        };
        let mut axes = Vec::with_capacity(rank);
        let mut out = Vec::new();
        for i in 0..sparse_n {
            if Self::bit(ellipsis_mask, i) {
                let next = (rank + i + 1 + new_after_ellipsis)
                    .saturating_sub(sparse_n)
                    .min(rank);
                while axes.len() < next {
                    out.push(Some(axes.len()));
                    axes.push(AxisSpec::Range {
                        begin: 0,
                        end: 0,
                        stride: 1,
                        begin_masked: true,
                        end_masked: true,
                    });
                }
            } else if Self::bit(self.new_axis_mask, i) {
                out.push(None);
            } else {
                if axes.len() >= rank {
                    return Err(Error::shape(
                        "StridedSlice",
                        format!("the slice indexes more axes than the input's rank {rank}"),
                    ));
                }
                if self.strides[i] == 0 {
                    return Err(Error::shape("StridedSlice", "a stride is 0"));
                }
                if Self::bit(self.shrink_axis_mask, i) {
                    if self.strides[i] < 0 {
                        return Err(Error::shape(
                            "StridedSlice",
                            "a shrink axis has a negative stride",
                        ));
                    }
                    axes.push(AxisSpec::Shrink(self.begin[i]));
                } else {
                    out.push(Some(axes.len()));
                    axes.push(AxisSpec::Range {
                        begin: self.begin[i],
                        end: self.end[i],
                        stride: self.strides[i],
                        begin_masked: Self::bit(self.begin_mask, i),
                        end_masked: Self::bit(self.end_mask, i),
                    });
                }
            }
        }
        // Any axes left (can only happen with an explicit ellipsis earlier) are kept whole.
        while axes.len() < rank {
            out.push(Some(axes.len()));
            axes.push(AxisSpec::Range {
                begin: 0,
                end: 0,
                stride: 1,
                begin_masked: true,
                end_masked: true,
            });
        }
        Ok(DenseSpec { axes, out })
    }
}

impl AxisSpec {
    /// Resolves against a concrete dim, TF's canonicalization.
    pub(crate) fn resolve(&self, d: usize) -> Result<Resolved> {
        let di = d as i64;
        match *self {
            AxisSpec::Shrink(x) => {
                let f = if x < 0 { di + x } else { x };
                if f < 0 || f >= di {
                    return Err(Error::shape(
                        "StridedSlice",
                        format!("index {x} is out of range for a dim of size {d}"),
                    ));
                }
                Ok(Resolved {
                    start: f,
                    step: 1,
                    len: 1,
                })
            }
            AxisSpec::Range {
                begin,
                end,
                stride,
                begin_masked,
                end_masked,
            } => {
                let (lo, hi) = if stride > 0 { (0, di) } else { (-1, di - 1) };
                let canon = |x: i64| -> i64 {
                    let f = if x < 0 { di + x } else { x };
                    f.clamp(lo, hi)
                };
                let b = if begin_masked {
                    if stride > 0 { lo.max(0) } else { hi }
                } else {
                    canon(begin)
                };
                let e = if end_masked {
                    if stride > 0 { hi } else { lo }
                } else {
                    canon(end)
                };
                // i128: strides and bounds come from the file and may be extreme.
                let (b2, e2, s2) = (b as i128, e as i128, stride as i128);
                let len = if stride > 0 {
                    if e2 > b2 { (e2 - b2 + s2 - 1) / s2 } else { 0 }
                } else if b2 > e2 {
                    (b2 - e2 - s2 - 1) / (-s2)
                } else {
                    0
                };
                let len = len as usize; // <= di, which is a usize
                Ok(Resolved {
                    start: b,
                    // A step never taken is normalized, so offsets stay within the tensor.
                    step: if len <= 1 { 1 } else { stride },
                    len,
                })
            }
        }
    }

    /// True when this axis keeps the whole dim in order, whatever its size.
    fn is_full(&self) -> bool {
        matches!(
            *self,
            AxisSpec::Range {
                stride: 1,
                begin_masked: true,
                end_masked: true,
                ..
            } | AxisSpec::Range {
                begin: 0,
                stride: 1,
                end_masked: true,
                ..
            }
        )
    }
}

/// Resolves a dense spec against a concrete input shape: per-axis ranges and the output shape.
pub(crate) fn resolve_strided(
    spec: &DenseSpec,
    shape: &[usize],
) -> Result<(Vec<Resolved>, Vec<usize>)> {
    let r: Vec<Resolved> = spec
        .axes
        .iter()
        .zip(shape)
        .map(|(a, &d)| a.resolve(d))
        .collect::<Result<_>>()?;
    let out = spec.out.iter().map(|o| o.map_or(1, |i| r[i].len)).collect();
    Ok((r, out))
}

impl Op for TfStridedSlice {
    fn name(&self) -> &'static str {
        "TfStridedSlice"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        let spec = self.dense(x.rank())?;
        let dims = x.shape.dims();
        let mut resolved = Vec::with_capacity(dims.len());
        for (a, d) in spec.axes.iter().zip(dims) {
            resolved.push(match d.known() {
                Some(k) => Some(a.resolve(k)?),
                None => None,
            });
        }
        let out: Vec<Dim> = spec
            .out
            .iter()
            .map(|o| match o {
                None => Dim::Known(1),
                Some(i) => match (&resolved[*i], spec.axes[*i].is_full()) {
                    (Some(r), _) => Dim::Known(r.len),
                    (None, true) => dims[*i].clone(),
                    (None, false) => Dim::Unknown,
                },
            })
            .collect();
        let mut fact = Fact::new(x.dtype, Shape(out.clone()));
        // Slicing a shape vector (Shape(x)[0] ...) keeps its elements, symbolic ones included.
        if let (Some(vals), 1, Some(r)) = (&x.dims, x.rank(), resolved.first().cloned().flatten()) {
            let picked: Vec<Dim> = (0..r.len)
                .map(|k| {
                    vals.get((r.start + k as i64 * r.step) as usize)
                        .cloned()
                        .unwrap_or(Dim::Unknown)
                })
                .collect();
            let rank0 = out.is_empty();
            if rank0 || out.len() == 1 {
                fact = Fact::from_dims(x.dtype, picked, rank0);
            }
        }
        Ok(vec![fact])
    }
    crate::op_common!();
}

// ---- OneHot -------------------------------------------------------------------------------

/// TF `OneHot(indices, depth, on_value, off_value)` with `depth` constant: inputs are
/// indices (any integer type), on value and off value (scalars of the output dtype). The
/// new axis of size `depth` goes at `axis` (-1 = last). Indices outside [0, depth) give rows
/// of off values (unlike ONNX OneHot, which wraps negative indices).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TfOneHot {
    pub depth: usize,
    pub axis: i64,
}

impl TfOneHot {
    pub(crate) fn axis_for(&self, indices_rank: usize) -> Result<usize> {
        if self.axis == -1 {
            Ok(indices_rank)
        } else {
            norm_axis("OneHot", self.axis, indices_rank + 1)
        }
    }
}

impl Op for TfOneHot {
    fn name(&self) -> &'static str {
        "TfOneHot"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 3, 3)?;
        if !inputs[0].dtype.is_integer() {
            return Err(Error::dtype(
                "OneHot",
                format!("indices are {}", inputs[0].dtype),
            ));
        }
        if inputs[1].dtype != inputs[2].dtype || inputs[1].rank() != 0 || inputs[2].rank() != 0 {
            return Err(Error::dtype(
                "OneHot",
                "on_value and off_value must be scalars of one dtype",
            ));
        }
        let mut dims = inputs[0].shape.dims().to_vec();
        let a = self.axis_for(dims.len())?;
        dims.insert(a, Dim::Known(self.depth));
        Ok(vec![Fact::new(inputs[1].dtype, Shape(dims))])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("TfStridedSlice", de::<TfStridedSlice>);
    r.insert("TfOneHot", de::<TfOneHot>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn ss(begin: Vec<i64>, end: Vec<i64>, strides: Vec<i64>) -> TfStridedSlice {
        TfStridedSlice {
            begin,
            end,
            strides,
            begin_mask: 0,
            end_mask: 0,
            ellipsis_mask: 0,
            new_axis_mask: 0,
            shrink_axis_mask: 0,
        }
    }

    #[test]
    fn extreme_bounds_and_strides_clamp_without_overflow() {
        for (b, e, s) in [
            (i64::MIN, i64::MAX, i64::MAX),
            (i64::MAX, i64::MIN, i64::MIN),
            (i64::MIN, i64::MIN, -1),
            (0, i64::MAX, 3),
        ] {
            let spec = ss(vec![b], vec![e], vec![s]).dense(1).unwrap();
            let (r, out) = resolve_strided(&spec, &[7]).unwrap();
            assert!(out[0] <= 7, "{b} {e} {s}: {out:?}");
            if r[0].len > 1 {
                assert!(r[0].step.unsigned_abs() < 7);
            }
        }
        // From one end to the other, both ways.
        let spec = ss(vec![0], vec![i64::MAX], vec![1]).dense(1).unwrap();
        assert_eq!(resolve_strided(&spec, &[5]).unwrap().1, [5]);
        let spec = ss(vec![-1], vec![i64::MIN], vec![-1]).dense(1).unwrap();
        assert_eq!(resolve_strided(&spec, &[5]).unwrap().1, [5]);
    }

    #[test]
    fn malformed_specs_are_errors() {
        assert!(
            ss(vec![0], vec![1], vec![0]).dense(1).is_err(),
            "zero stride"
        );
        assert!(
            ss(vec![0, 0], vec![1, 1], vec![1, 1]).dense(1).is_err(),
            "more axes than rank"
        );
        assert!(
            ss(vec![0], vec![1, 2], vec![1]).dense(2).is_err(),
            "lengths differ"
        );
        let mut two_ellipses = ss(vec![0, 0], vec![0, 0], vec![1, 1]);
        two_ellipses.ellipsis_mask = 3;
        assert!(two_ellipses.dense(3).is_err());
        let mut shrink = ss(vec![9], vec![10], vec![1]);
        shrink.shrink_axis_mask = 1;
        let spec = shrink.dense(1).unwrap();
        assert!(
            resolve_strided(&spec, &[4]).is_err(),
            "shrink index out of range"
        );
    }

    #[test]
    fn symbolic_dims_survive_full_slices_and_shape_vectors_keep_their_symbols() {
        let x = Fact::new(DType::F32, Shape(vec![Dim::sym("n"), Dim::Known(6)]));
        let mut op = ss(vec![0, 1], vec![0, 5], vec![1, 2]);
        op.begin_mask = 1;
        op.end_mask = 1;
        let out = op.infer(&[&x]).unwrap();
        assert_eq!(out[0].shape, Shape(vec![Dim::sym("n"), Dim::Known(2)]));
        // Shape(x)[0] with shrink: a rank-0 value carrying the symbol.
        let shape_vec = Fact::from_dims(DType::I32, vec![Dim::sym("n"), Dim::Known(6)], false);
        let mut first = ss(vec![0], vec![1], vec![1]);
        first.shrink_axis_mask = 1;
        let out = first.infer(&[&shape_vec]).unwrap();
        assert_eq!(out[0].rank(), 0);
        assert_eq!(out[0].dims, Some(vec![Dim::sym("n")]));
    }
}
