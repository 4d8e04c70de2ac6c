//! Patches: small graph edits proposed by op hooks and passes, applied by the driver.
//! A patch adds constants and nodes, substitutes values, and removes nodes; anything it
//! leaves unused is cleaned up by dead-code elimination.

use super::graph::Graph;
use super::ids::{NodeId, ValueId};
use crate::ops::Op;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// A value as a patch sees it: existing, or created by the patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PValue {
    Old(ValueId),
    /// Output `slot` of the patch's node `node` (index into the patch's node list).
    New {
        node: usize,
        slot: usize,
    },
    /// The patch's constant number `i`.
    Const(usize),
}

impl From<ValueId> for PValue {
    fn from(v: ValueId) -> PValue {
        PValue::Old(v)
    }
}

/// An edit: new constants and nodes, value substitutions, removed nodes.
#[derive(Debug, Default)]
pub struct Patch {
    consts: Vec<(String, Tensor)>,
    nodes: Vec<(String, Box<dyn Op>, Vec<PValue>)>,
    subs: Vec<(ValueId, PValue)>,
    removed: Vec<NodeId>,
}

impl Patch {
    pub fn new() -> Patch {
        Patch::default()
    }
    /// Replaces every use of `old` by `new` (the common one-line patch).
    pub fn replace(old: ValueId, new: impl Into<PValue>) -> Patch {
        let mut p = Patch::new();
        p.substitute(old, new);
        p
    }
    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> PValue {
        self.consts.push((name.into(), t));
        PValue::Const(self.consts.len() - 1)
    }
    /// Adds a node; returns its index for `out`.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: impl Into<Box<dyn Op>>,
        inputs: &[PValue],
    ) -> usize {
        self.nodes.push((name.into(), op.into(), inputs.to_vec()));
        self.nodes.len() - 1
    }
    /// Output `slot` of patch node `node`.
    pub fn out(node: usize, slot: usize) -> PValue {
        PValue::New { node, slot }
    }
    pub fn substitute(&mut self, old: ValueId, new: impl Into<PValue>) {
        self.subs.push((old, new.into()));
    }
    pub fn remove(&mut self, n: NodeId) {
        self.removed.push(n);
    }
    pub fn is_empty(&self) -> bool {
        self.consts.is_empty()
            && self.nodes.is_empty()
            && self.subs.is_empty()
            && self.removed.is_empty()
    }

    /// Applies the patch. New nodes are inferred; a substitution must keep the dtype and
    /// must not make a known dim different.
    pub fn apply(self, g: &mut Graph) -> Result<()> {
        let consts: Vec<ValueId> = self
            .consts
            .into_iter()
            .map(|(name, t)| {
                let name = g.fresh_name(&name);
                g.add_const(name, t)
            })
            .collect();
        let mut new_outs: Vec<Vec<ValueId>> = Vec::with_capacity(self.nodes.len());
        let resolve = |p: PValue, new_outs: &[Vec<ValueId>]| -> Result<ValueId> {
            match p {
                PValue::Old(v) => Ok(v),
                PValue::Const(i) => consts
                    .get(i)
                    .copied()
                    .ok_or_else(|| Error::invalid("patch: bad const index")),
                PValue::New { node, slot } => new_outs
                    .get(node)
                    .and_then(|o| o.get(slot))
                    .copied()
                    .ok_or_else(|| Error::invalid("patch: bad node reference")),
            }
        };
        for (name, op, inputs) in self.nodes {
            let ins = inputs
                .into_iter()
                .map(|p| resolve(p, &new_outs))
                .collect::<Result<Vec<_>>>()?;
            let name = g.fresh_name(&name);
            new_outs.push(g.add_node(name, op, &ins)?);
        }
        for (old, new) in self.subs {
            let new = resolve(new, &new_outs)?;
            let (fo, fnew) = (g.fact(old), g.fact(new));
            let compatible = fo.dtype == fnew.dtype
                && fo.shape.rank() == fnew.shape.rank()
                && fo.shape.dims().iter().zip(fnew.shape.dims()).all(|(a, b)| {
                    a == b
                        || matches!(a, crate::ir::Dim::Unknown)
                        || matches!(b, crate::ir::Dim::Unknown)
                });
            if !compatible {
                return Err(Error::Verify {
                    pass: None,
                    msg: format!("patch substitutes {old} ({fo:?}) by {new} ({fnew:?})"),
                });
            }
            g.replace_uses(old, new);
        }
        for n in self.removed {
            g.remove_node(n);
        }
        Ok(())
    }
}
