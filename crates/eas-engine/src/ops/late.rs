//! Ops whose integer parameter (axes, split sizes) arrives as their last input instead of an
//! attribute, as ONNX allows since opset 13/18. When that input is a constant, `declutter`
//! turns the node into the plain op; otherwise its output shapes are unknown until a plan
//! binds the parameter's value (value-keyed plans, `cpu::CpuModel`), and the CPU kernel is the
//! plain op's kernel built for that value.

use super::{Op, OpRegistry, Reduce, ReduceOp, Split, SplitSizes, Squeeze, Unsqueeze, de};
use crate::ir::{Dim, Fact, Graph, NodeId, Patch, Shape};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The op to build once the parameter is known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LateTemplate {
    /// `Reduce*` with `axes` from the input.
    Reduce {
        op: ReduceOp,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    /// `Squeeze` with `axes` from the input.
    Squeeze,
    /// `Unsqueeze` with `axes` from the input.
    Unsqueeze,
    /// `Split` along `axis` with sizes from the input, into `outputs` parts.
    Split { axis: i64, outputs: usize },
}

/// `template` applied to inputs `[..n-1]` with its parameter read from input `n-1` (an
/// integer vector).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LateParams {
    pub template: LateTemplate,
}

impl LateParams {
    /// The plain op for parameter values `p`.
    pub fn build(&self, p: Vec<i64>) -> Result<Box<dyn Op>> {
        Ok(match &self.template {
            LateTemplate::Reduce {
                op,
                keepdims,
                noop_with_empty_axes,
            } => Box::new(Reduce {
                op: *op,
                axes: p,
                keepdims: *keepdims,
                noop_with_empty_axes: *noop_with_empty_axes,
            }),
            LateTemplate::Squeeze => Box::new(Squeeze { axes: p }),
            LateTemplate::Unsqueeze => Box::new(Unsqueeze { axes: p }),
            LateTemplate::Split { axis, outputs } => {
                if p.len() != *outputs {
                    return Err(Error::shape(
                        "Split",
                        format!("{} split sizes for {outputs} outputs", p.len()),
                    ));
                }
                let sizes = p
                    .iter()
                    .map(|&v| {
                        usize::try_from(v)
                            .map_err(|_| Error::shape("Split", format!("negative split {v}")))
                    })
                    .collect::<Result<_>>()?;
                Box::new(Split {
                    axis: *axis,
                    sizes: SplitSizes::Sizes(sizes),
                })
            }
        })
    }

    /// The plain op when the parameter fact holds a value.
    pub fn resolve(&self, param: &Fact) -> Result<Option<Box<dyn Op>>> {
        match &param.konst {
            Some(t) if t.dtype().is_integer() => Ok(Some(self.build(t.to_i64_vec())?)),
            Some(t) => Err(Error::dtype(
                self.name(),
                format!("the parameter input must be integers, got {}", t.dtype()),
            )),
            None => Ok(None),
        }
    }
}

impl Op for LateParams {
    fn name(&self) -> &'static str {
        "LateParams"
    }
    fn infer(&self, inputs: &[&Fact]) -> Result<Vec<Fact>> {
        let Some((param, data)) = inputs.split_last() else {
            return Err(Error::shape(self.name(), "no inputs"));
        };
        if let Some(op) = self.resolve(param)? {
            return op.infer(data);
        }
        let x = data
            .first()
            .ok_or_else(|| Error::shape(self.name(), "no data input"))?;
        // Unknown sizes of the right rank where the rank follows from the parameter's length.
        let n = param.shape.as_known().and_then(|s| s.first().copied());
        let unknown = |rank: usize| Fact::new(x.dtype, Shape(vec![Dim::Unknown; rank]));
        let rank = |r: Option<usize>| {
            r.ok_or_else(|| {
                Error::shape(
                    self.name(),
                    "the parameter's length must be known at build time",
                )
            })
        };
        Ok(match &self.template {
            LateTemplate::Reduce { keepdims: true, .. } => vec![unknown(x.rank())],
            LateTemplate::Reduce { .. } | LateTemplate::Squeeze => {
                vec![unknown(rank(n.map(|n| x.rank().saturating_sub(n)))?)]
            }
            LateTemplate::Unsqueeze => vec![unknown(rank(n.map(|n| x.rank() + n))?)],
            LateTemplate::Split { outputs, .. } => vec![unknown(x.rank()); *outputs],
        })
    }
    fn declutter(&self, g: &Graph, n: NodeId) -> Result<Option<Patch>> {
        let node = g.node(n);
        let Some((&param, data)) = node.inputs.split_last() else {
            return Ok(None);
        };
        let Some(op) = self.resolve(g.fact(param))? else {
            return Ok(None);
        };
        let mut p = Patch::new();
        let ins: Vec<_> = data.iter().map(|&v| v.into()).collect();
        let k = p.add_node(format!("{}/resolved", node.name), op, &ins);
        for (slot, &o) in node.outputs.iter().enumerate() {
            p.substitute(o, Patch::out(k, slot));
        }
        p.remove(n);
        Ok(Some(p))
    }
    crate::op_common!();
}

pub(crate) fn register(r: &mut OpRegistry) {
    r.insert("LateParams", de::<LateParams>);
}
