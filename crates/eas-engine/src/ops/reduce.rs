//! Reductions.

use super::{Op, OpRegistry, de, expect_inputs, norm_axis};
use crate::dtype::DType;
use crate::ir::{Dim, Fact, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    SumSquare,
    L1,
    L2,
    LogSum,
    LogSumExp,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "ReduceSum",
            ReduceOp::Mean => "ReduceMean",
            ReduceOp::Max => "ReduceMax",
            ReduceOp::Min => "ReduceMin",
            ReduceOp::Prod => "ReduceProd",
            ReduceOp::SumSquare => "ReduceSumSquare",
            ReduceOp::L1 => "ReduceL1",
            ReduceOp::L2 => "ReduceL2",
            ReduceOp::LogSum => "ReduceLogSum",
            ReduceOp::LogSumExp => "ReduceLogSumExp",
        }
    }
    pub const ALL: [ReduceOp; 10] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Prod,
        ReduceOp::SumSquare,
        ReduceOp::L1,
        ReduceOp::L2,
        ReduceOp::LogSum,
        ReduceOp::LogSumExp,
    ];
}

/// Reduces `axes` (all axes when empty, unless `noop_with_empty_axes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reduce {
    pub op: ReduceOp,
    pub axes: Vec<i64>,
    pub keepdims: bool,
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    /// Normalized, sorted, deduplicated axes for a rank.
    pub fn resolved_axes(&self, rank: usize) -> Result<Vec<usize>> {
        if self.axes.is_empty() {
            return Ok(if self.noop_with_empty_axes {
                vec![]
            } else {
                (0..rank).collect()
            });
        }
        let mut a = self
            .axes
            .iter()
            .map(|&x| norm_axis(self.op.name(), x, rank))
            .collect::<Result<Vec<_>>>()?;
        a.sort_unstable();
        a.dedup();
        Ok(a)
    }
}

pub(crate) fn reduced_shape(x: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    Shape(
        x.dims()
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
                (true, true) => Some(Dim::Known(1)),
                (true, false) => None,
                _ => Some(d.clone()),
            })
            .collect(),
    )
}

impl Op for Reduce {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        // Max/Min of bools are Or/And (ONNX allows bool for ReduceMax/ReduceMin).
        let bool_ok = matches!(self.op, ReduceOp::Max | ReduceOp::Min);
        if !(x.dtype.is_numeric() || x.dtype == DType::Bool && bool_ok) {
            return Err(Error::dtype(self.name(), "bool input"));
        }
        let axes = self.resolved_axes(x.rank())?;
        Ok(vec![Fact::new(
            x.dtype,
            reduced_shape(&x.shape, &axes, self.keepdims),
        )])
    }
    fn is_identity(&self, inputs: &[&Fact]) -> bool {
        self.axes.is_empty() && self.noop_with_empty_axes && !inputs.is_empty()
    }
    crate::op_common!();
}

/// ArgMax / ArgMin along one axis; i64 output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArgReduce {
    pub max: bool,
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}

impl Op for ArgReduce {
    fn name(&self) -> &'static str {
        if self.max { "ArgMax" } else { "ArgMin" }
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        expect_inputs(self.name(), inputs, 1, 1)?;
        let x = inputs[0];
        if !x.dtype.is_numeric() {
            return Err(Error::dtype(self.name(), "bool input"));
        }
        let a = norm_axis(self.name(), self.axis, x.rank())?;
        Ok(vec![Fact::new(
            DType::I64,
            reduced_shape(&x.shape, &[a], self.keepdims),
        )])
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    for op in ReduceOp::ALL {
        r.insert(op.name(), de::<Reduce>);
    }
    r.insert("ArgMax", de::<ArgReduce>);
    r.insert("ArgMin", de::<ArgReduce>);
}
