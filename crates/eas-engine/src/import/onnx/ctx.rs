//! What an op builder sees: the node, typed attribute getters, its inputs as graph values,
//! the opset version, and a way to add nodes.

use super::proto::{AttributeProto, NodeProto, attribute_type as at};
use super::tensor::tensor_from_proto;
use crate::ir::{Fact, Graph, ValueId};
use crate::ops::Op;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// Builder context for one ONNX node.
pub struct NodeCtx<'a> {
    pub graph: &'a mut Graph,
    pub node: &'a NodeProto,
    /// Inputs in order; `None` for omitted optional inputs ("").
    pub inputs: Vec<Option<ValueId>>,
    /// Version of the default (ai.onnx) opset.
    pub opset: i64,
    pub(crate) model_dir: Option<&'a Path>,
    added: usize,
}

/// Types an attribute can be read as.
pub trait AttrType: Sized {
    const EXPECTED: &'static str;
    fn read(a: &AttributeProto, ctx: &NodeCtx) -> Result<Self>;
    /// The attribute type codes that carry this Rust type.
    fn accepts(t: i32) -> bool;
}

fn infer_type(a: &AttributeProto) -> i32 {
    // Some old exporters leave `type` unset; guess from the populated field.
    if a.r#type != at::UNDEFINED {
        return a.r#type;
    }
    if !a.ints.is_empty() {
        at::INTS
    } else if !a.floats.is_empty() {
        at::FLOATS
    } else if a.t.is_some() {
        at::TENSOR
    } else if !a.s.is_empty() {
        at::STRING
    } else if a.f != 0.0 {
        at::FLOAT
    } else {
        at::INT
    }
}

impl AttrType for i64 {
    const EXPECTED: &'static str = "an int";
    fn read(a: &AttributeProto, _: &NodeCtx) -> Result<i64> {
        Ok(a.i)
    }
    fn accepts(t: i32) -> bool {
        t == at::INT
    }
}
impl AttrType for bool {
    const EXPECTED: &'static str = "an int (0 or 1)";
    fn read(a: &AttributeProto, ctx: &NodeCtx) -> Result<bool> {
        match a.i {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(ctx.err(format!("attribute {:?} must be 0 or 1, got {v}", a.name))),
        }
    }
    fn accepts(t: i32) -> bool {
        t == at::INT
    }
}
impl AttrType for usize {
    const EXPECTED: &'static str = "a non-negative int";
    fn read(a: &AttributeProto, ctx: &NodeCtx) -> Result<usize> {
        usize::try_from(a.i).map_err(|_| {
            ctx.err(format!(
                "attribute {:?} must be non-negative, got {}",
                a.name, a.i
            ))
        })
    }
    fn accepts(t: i32) -> bool {
        t == at::INT
    }
}
impl AttrType for f32 {
    const EXPECTED: &'static str = "a float";
    fn read(a: &AttributeProto, _: &NodeCtx) -> Result<f32> {
        Ok(a.f)
    }
    fn accepts(t: i32) -> bool {
        t == at::FLOAT
    }
}
impl AttrType for String {
    const EXPECTED: &'static str = "a string";
    fn read(a: &AttributeProto, ctx: &NodeCtx) -> Result<String> {
        String::from_utf8(a.s.clone())
            .map_err(|_| ctx.err(format!("attribute {:?} is not UTF-8", a.name)))
    }
    fn accepts(t: i32) -> bool {
        t == at::STRING
    }
}
impl AttrType for Vec<i64> {
    const EXPECTED: &'static str = "a list of ints";
    fn read(a: &AttributeProto, _: &NodeCtx) -> Result<Vec<i64>> {
        Ok(a.ints.clone())
    }
    fn accepts(t: i32) -> bool {
        t == at::INTS
    }
}
impl AttrType for Vec<usize> {
    const EXPECTED: &'static str = "a list of non-negative ints";
    fn read(a: &AttributeProto, ctx: &NodeCtx) -> Result<Vec<usize>> {
        a.ints
            .iter()
            .map(|&v| {
                usize::try_from(v).map_err(|_| {
                    ctx.err(format!(
                        "attribute {:?} must be non-negative, got {v}",
                        a.name
                    ))
                })
            })
            .collect()
    }
    fn accepts(t: i32) -> bool {
        t == at::INTS
    }
}
impl AttrType for Vec<f32> {
    const EXPECTED: &'static str = "a list of floats";
    fn read(a: &AttributeProto, _: &NodeCtx) -> Result<Vec<f32>> {
        Ok(a.floats.clone())
    }
    fn accepts(t: i32) -> bool {
        t == at::FLOATS
    }
}
impl AttrType for Tensor {
    const EXPECTED: &'static str = "a tensor";
    fn read(a: &AttributeProto, ctx: &NodeCtx) -> Result<Tensor> {
        let t =
            a.t.as_ref()
                .ok_or_else(|| ctx.err(format!("attribute {:?} has no tensor", a.name)))?;
        tensor_from_proto(t, ctx.model_dir)
    }
    fn accepts(t: i32) -> bool {
        t == at::TENSOR
    }
}

impl<'a> NodeCtx<'a> {
    pub(crate) fn new(
        graph: &'a mut Graph,
        node: &'a NodeProto,
        inputs: Vec<Option<ValueId>>,
        opset: i64,
        model_dir: Option<&'a Path>,
    ) -> Self {
        NodeCtx {
            graph,
            node,
            inputs,
            opset,
            model_dir,
            added: 0,
        }
    }

    /// A node-located import error.
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::Import {
            format: "ONNX",
            node: self.display_name(),
            msg: msg.into(),
        }
    }

    pub fn display_name(&self) -> String {
        if self.node.name.is_empty() {
            format!(
                "{} ({})",
                self.node.output.first().map_or("?", |s| s.as_str()),
                self.node.op_type
            )
        } else {
            format!("{} ({})", self.node.name, self.node.op_type)
        }
    }

    fn find_attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// An optional attribute of a given type (a type mismatch is an error).
    pub fn attr_opt<T: AttrType>(&self, name: &str) -> Result<Option<T>> {
        let Some(a) = self.find_attr(name) else {
            return Ok(None);
        };
        if !a.ref_attr_name.is_empty() {
            return Err(self.err(format!(
                "attribute {name:?} refers to a function attribute (functions are not supported)"
            )));
        }
        let t = infer_type(a);
        if !T::accepts(t) {
            return Err(self.err(format!(
                "attribute {name:?} must be {}, got type code {t}",
                T::EXPECTED
            )));
        }
        T::read(a, self).map(Some)
    }
    /// An attribute with a default.
    pub fn attr_or<T: AttrType>(&self, name: &str, default: T) -> Result<T> {
        Ok(self.attr_opt(name)?.unwrap_or(default))
    }
    /// A required attribute.
    pub fn attr<T: AttrType>(&self, name: &str) -> Result<T> {
        self.attr_opt(name)?
            .ok_or_else(|| self.err(format!("missing required attribute {name:?}")))
    }
    pub fn has_attr(&self, name: &str) -> bool {
        self.find_attr(name).is_some()
    }

    /// Required input `i`.
    pub fn input(&self, i: usize) -> Result<ValueId> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| self.err(format!("missing required input {i}")))
    }
    /// Optional input `i` (absent or "").
    pub fn opt_input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }
    pub fn fact(&self, v: ValueId) -> &Fact {
        self.graph.fact(v)
    }
    /// Integer contents of optional input `i`, which must be a build-time constant.
    pub fn const_ints(&self, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.opt_input(i) else {
            return Ok(None);
        };
        match self.graph.konst(v) {
            Some(t) if t.dtype().is_integer() => Ok(Some(t.to_i64_vec())),
            Some(t) => Err(self.err(format!("{what} must be integers, got {}", t.dtype()))),
            None => Err(Error::unsupported(format!(
                "{} with a computed (non-constant) {what} input (node {})",
                self.node.op_type,
                self.display_name()
            ))),
        }
    }
    /// Float contents of optional scalar input `i`, which must be a build-time constant.
    pub fn const_scalar(&self, i: usize, what: &str) -> Result<Option<f64>> {
        let Some(v) = self.opt_input(i) else {
            return Ok(None);
        };
        match self.graph.konst(v) {
            Some(t) if t.len() == 1 => Ok(Some(t.to_f64_vec()[0])),
            Some(_) => Err(self.err(format!("{what} must be a scalar"))),
            None => Err(Error::unsupported(format!(
                "{} with a computed {what} input (node {})",
                self.node.op_type,
                self.display_name()
            ))),
        }
    }

    /// Adds a node with one output.
    pub fn add(&mut self, op: impl Into<Box<dyn Op>>, inputs: &[ValueId]) -> Result<ValueId> {
        let name = self.fresh();
        let v = self.graph.add_node1(name, op, inputs)?;
        self.fold_small(&[v]);
        Ok(v)
    }
    /// Adds a node with several outputs.
    pub fn add_multi(
        &mut self,
        op: impl Into<Box<dyn Op>>,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>> {
        let name = self.fresh();
        let outs = self.graph.add_node(name, op, inputs)?;
        self.fold_small(&outs);
        Ok(outs)
    }

    /// Evaluates a just-added node whose inputs are all small constants (the shape
    /// arithmetic exporters emit: Shape -> Size -> Sub -> ConstantOfShape -> Concat), so that
    /// later builders that need constant shapes see them. Larger data is left to the
    /// constant-folding pass; a node without a CPU kernel is left as it is.
    fn fold_small(&mut self, outs: &[ValueId]) {
        const MAX_ELEMS: usize = 1024;
        let Some(&first) = outs.first() else { return };
        if outs.iter().all(|&v| self.graph.konst(v).is_some()) {
            return;
        }
        let Some((id, node)) = self.graph.producer(first) else {
            return;
        };
        let ins: Option<Vec<Tensor>> = node
            .inputs
            .iter()
            .map(|&v| {
                self.graph
                    .konst(v)
                    .filter(|t| t.len() <= MAX_ELEMS)
                    .cloned()
            })
            .collect();
        let Some(ins) = ins else { return };
        let small = outs.iter().all(|&v| {
            self.graph
                .fact(v)
                .shape
                .volume()
                .is_some_and(|n| n <= MAX_ELEMS)
        });
        if !small {
            return;
        }
        let Ok(tensors) = crate::cpu::eval_op(node.op.as_ref(), &ins) else {
            return;
        };
        for (&v, t) in outs.iter().zip(tensors) {
            self.graph.set_const(v, t);
        }
        self.graph.remove_node(id);
    }
    /// Adds a constant.
    pub fn konst(&mut self, t: Tensor) -> ValueId {
        let name = self.fresh();
        self.graph.add_const(name, t)
    }

    fn fresh(&mut self) -> String {
        let base = if self.node.name.is_empty() {
            self.node
                .output
                .first()
                .cloned()
                .unwrap_or_else(|| self.node.op_type.clone())
        } else {
            self.node.name.clone()
        };
        self.added += 1;
        if self.added == 1 {
            base
        } else {
            format!("{base}.{}", self.added)
        }
    }
}
